"""Interactive figures for the lectures (ipywidgets). Each widget wires sliders to a
plain computation in a math module and a drawing function in :mod:`rlteach.viz`; the
``update`` it exposes is what a slider calls, so tests can drive it without a browser."""

from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from rlteach.importance import GaussianISExperiment, gaussian_is_experiment
from rlteach.viz import draw_is_experiment


@dataclass
class ImportanceSamplingExplorer:
    """Sliders for the proposal's mean and width and the sample size; the figure shows
    p, q, the weight p/q and the spread of the ordinary and weighted estimates."""

    target: tuple[float, float] = (1.0, 1.0)
    repeats: int = 400
    seed: int = 0

    def __post_init__(self) -> None:
        self.proposal_mean = widgets.FloatSlider(value=0.0, min=-3.0, max=4.0, step=0.1, description="q mean",
                                                 continuous_update=False)
        self.proposal_std = widgets.FloatSlider(value=1.0, min=0.3, max=3.0, step=0.1, description="q width",
                                                continuous_update=False)
        self.n = widgets.IntSlider(value=100, min=2, max=1000, step=1, description="n draws", continuous_update=False)
        self.output = widgets.Output()
        with plt.ioff():
            self.figure: Figure = plt.figure(figsize=(10, 3.6))
        self.result: GaussianISExperiment | None = None
        for slider in (self.proposal_mean, self.proposal_std, self.n):
            slider.observe(lambda _change: self.update(), names="value")
        self.update()

    def update(self) -> GaussianISExperiment:
        """Recompute the experiment for the sliders' values and redraw the figure."""
        proposal = (self.proposal_mean.value, self.proposal_std.value)
        self.result = gaussian_is_experiment(*self.target, *proposal, n=self.n.value, repeats=self.repeats, seed=self.seed)
        draw_is_experiment(self.figure, self.result, self.target, proposal)
        self.output.clear_output(wait=True)
        with self.output:
            from IPython.display import display

            display(self.figure)
        return self.result

    def widget(self) -> widgets.Widget:
        """The sliders above the figure, ready to display."""
        return widgets.VBox([widgets.HBox([self.proposal_mean, self.proposal_std, self.n]), self.output])
