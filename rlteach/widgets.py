"""Interactive figures for the lectures (ipywidgets). Each widget wires sliders to a
plain computation in a math module and a drawing function in :mod:`rlteach.viz`; the
``update`` it exposes is what a slider calls, so tests can drive it without a browser."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from rlteach.importance import GaussianISExperiment, gaussian_is_experiment
from rlteach.viz import ProxScene, draw_is_experiment, draw_prox_scene, prox_scene


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


FUNCTION_CHOICES: tuple[tuple[str, str], ...] = (
    ("‖x‖₁ (soft thresholding)", "l1"),
    ("½ xᵀAx + bᵀx (quadratic)", "quadratic"),
    ("‖x‖₂ (block soft thresholding)", "l2"),
    ("indicator of the set", "indicator"),
)
SET_CHOICES: tuple[tuple[str, str], ...] = (
    ("box", "box"),
    ("ℓ2 ball", "l2_ball"),
    ("ℓ1 ball", "l1_ball"),
    ("simplex", "simplex"),
    ("half-space", "halfspace"),
)
# The parameters of each set and of the quadratic, chosen so that every shape sits inside the view.
DEFAULT_SET_PARAMS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "box": MappingProxyType({"lower": (-1.5, -1.0), "upper": (1.0, 1.5)}),
    "l2_ball": MappingProxyType({"radius": 1.25}),
    "l1_ball": MappingProxyType({"radius": 1.5}),
    "simplex": MappingProxyType({"total": 1.0}),
    "halfspace": MappingProxyType({"a": (1.0, 2.0), "b": 1.0}),
})
DEFAULT_QUADRATIC: Mapping[str, Any] = MappingProxyType({"A": ((2.0, 0.9), (0.9, 1.0)), "b": (-0.5, 0.0)})


@dataclass
class ProxExplorer:
    """The proximal operator evaluated on a grid of points and at one highlighted point.

    A slider for the step λ (log scale), a dropdown for f (ℓ1 norm, a quadratic, ℓ2 norm,
    or the indicator of a set), a dropdown for the set (used by the indicator), and two
    sliders for the highlighted point v. Every change calls :meth:`update`, which
    recomputes the :class:`~rlteach.viz.ProxScene` with :func:`~rlteach.viz.prox_scene`
    and redraws it with :func:`~rlteach.viz.draw_prox_scene`.
    """

    function: str = "l1"  # a value of FUNCTION_CHOICES
    set_name: str = "box"  # a value of SET_CHOICES
    lam: float = 1.0  # λ, in [0.01, 10]; a power 10^(0.02 k) so that the log slider shows it exactly
    point: tuple[float, float] = (2.0, 1.0)  # the highlighted v, inside the view
    extent: float = 2.5  # the view is [-extent, extent]²
    num: int = 7  # grid points per side
    set_params: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: DEFAULT_SET_PARAMS)
    quadratic: Mapping[str, Any] = field(default_factory=lambda: DEFAULT_QUADRATIC)

    def __post_init__(self) -> None:
        functions = [value for _, value in FUNCTION_CHOICES]
        if self.function not in functions:
            raise ValueError(f"unknown function {self.function!r}; valid choices: {', '.join(functions)}")
        sets = [value for _, value in SET_CHOICES if value in self.set_params]
        if self.set_name not in sets:
            raise ValueError(f"unknown set {self.set_name!r}; valid choices: {', '.join(sets)}")
        if not 0.01 <= self.lam <= 10.0:
            raise ValueError(f"lam must lie in [0.01, 10] (the slider's range), got {self.lam}")
        if not all(abs(float(c)) <= self.extent for c in self.point):
            raise ValueError(f"point {self.point} must lie in the view [-{self.extent}, {self.extent}]²")
        self.lam_slider = widgets.FloatLogSlider(value=self.lam, base=10, min=-2, max=1, step=0.02, description="λ",
                                                 readout_format=".3g", continuous_update=True)
        self.function_dropdown = widgets.Dropdown(options=FUNCTION_CHOICES, value=self.function, description="f")
        self.set_dropdown = widgets.Dropdown(options=[c for c in SET_CHOICES if c[1] in self.set_params],
                                             value=self.set_name, description="set C")
        self.x_slider = widgets.FloatSlider(value=float(self.point[0]), min=-self.extent, max=self.extent, step=0.05,
                                            description="v₁", continuous_update=True)
        self.y_slider = widgets.FloatSlider(value=float(self.point[1]), min=-self.extent, max=self.extent, step=0.05,
                                            description="v₂", continuous_update=True)
        self.output = widgets.Output()
        with plt.ioff():
            self.figure: Figure = plt.figure(figsize=(8.6, 5.4))
        self.scene: ProxScene | None = None
        for control in self.controls:
            control.observe(lambda _change: self.update(), names="value")
        self.update()

    @property
    def controls(self) -> tuple[widgets.ValueWidget, ...]:
        """The widgets whose value the figure follows: λ, f, C, v₁, v₂."""
        return (self.lam_slider, self.function_dropdown, self.set_dropdown, self.x_slider, self.y_slider)

    @property
    def prox_name(self) -> str:
        """The name :func:`rlteach.prox.prox_of` gets: the function, or the set for the indicator."""
        function = self.function_dropdown.value
        return self.set_dropdown.value if function == "indicator" else function

    @property
    def prox_params(self) -> dict[str, Any]:
        """The parameters of the chosen function or set."""
        function = self.function_dropdown.value
        if function == "indicator":
            return dict(self.set_params[self.set_dropdown.value])
        return dict(self.quadratic) if function == "quadratic" else {}

    def update(self) -> ProxScene:
        """Recompute the scene for the widgets' values and redraw the figure."""
        self.set_dropdown.disabled = self.function_dropdown.value != "indicator"
        point = (self.x_slider.value, self.y_slider.value)
        self.scene = prox_scene(self.prox_name, self.lam_slider.value, point, extent=self.extent, num=self.num,
                                **self.prox_params)
        self.figure.clear()
        ax = self.figure.add_subplot()
        draw_prox_scene(ax, self.scene)
        self.figure.subplots_adjust(left=0.08, right=0.68, bottom=0.1, top=0.92)
        self.output.clear_output(wait=True)
        with self.output:
            from IPython.display import display

            display(self.figure)
        return self.scene

    def widget(self) -> widgets.Widget:
        """The controls above the figure, ready to display."""
        return widgets.VBox([
            widgets.HBox([self.function_dropdown, self.set_dropdown, self.lam_slider]),
            widgets.HBox([self.x_slider, self.y_slider]),
            self.output,
        ])
