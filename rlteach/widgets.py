"""Interactive figures for the lectures (ipywidgets). Each widget wires sliders to a
plain computation in a math module and a drawing function in :mod:`rlteach.viz`; the
``update`` it exposes is what a slider calls, so tests can drive it without a browser."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure

from rlteach.importance import (
    GaussianISExperiment,
    ISTheory,
    estimator_summary,
    gaussian_is_experiment,
    gaussian_is_theory,
)
from rlteach.viz import (
    ProxScene,
    StepComparison,
    draw_is_experiment,
    draw_prox_scene,
    draw_step_comparison,
    explorer_title,
    format_number,
    prox_readout,
    prox_scene,
    step_comparison,
)


@dataclass
class ImportanceSamplingExplorer:
    """Sliders for the proposal's mean and width and the sample size; the figure shows
    p, q, the weight p/q and the spread of the ordinary and weighted estimates, and a
    readout below the sliders sets what the repeats measured beside what theory says
    (:func:`~rlteach.importance.gaussian_is_theory`): the mean ESS of a batch against
    n/E_q[w²], the sd of the ordinary estimate over the repeats against its exact value,
    and the error of the weighted estimate. A width at or below σ_p/√2 gives
    E_q[w²] = ∞, which no finite batch shows."""

    target: tuple[float, float] = (1.0, 1.0)
    proposal: tuple[float, float] = (0.0, 1.0)  # the sliders' starting mean and width
    repeats: int = 400
    seed: int = 0

    def __post_init__(self) -> None:
        self.proposal_mean = widgets.FloatSlider(value=self.proposal[0], min=-3.0, max=4.0, step=0.1,
                                                 description="q mean", continuous_update=False)
        self.proposal_std = widgets.FloatSlider(value=self.proposal[1], min=0.3, max=3.0, step=0.1,
                                                description="q width", continuous_update=False)
        self.n = widgets.IntSlider(value=100, min=2, max=1000, step=1, description="n draws", continuous_update=False)
        self.readout = widgets.HTML()
        self.output = widgets.Output()
        self.figure = Figure(figsize=(10, 4.8))  # not a pyplot figure: only the widget ever shows it
        self.result: GaussianISExperiment | None = None
        self.theory: ISTheory | None = None
        for slider in (self.proposal_mean, self.proposal_std, self.n):
            slider.observe(lambda _change: self.update(), names="value")
        self.update()

    def readout_text(self) -> str:
        """What the readout shows: measured over the repeats, and exact (or first-order) theory."""
        assert self.result is not None and self.theory is not None
        result, theory = self.result, self.theory
        ordinary = estimator_summary(result.ordinary, result.truth)
        weighted = estimator_summary(result.weighted, result.truth)
        second = "∞ (q is too narrow: σ_q ≤ σ_p/√2)" if math.isinf(theory.second_moment) else f"{theory.second_moment:.4g}"
        return (f"E_q[w²] = {second}; n/E_q[w²] = {theory.n_eff:.3g} against a mean ESS of "
                f"{result.ess.mean().item():.1f} of n = {result.n}. "
                f"Ordinary: sd over {len(result.ordinary)} repeats {ordinary.sd:.3g}, exact {format_number(theory.ordinary_sd)}, "
                f"bias {ordinary.bias:+.3g} ± {ordinary.stderr:.2g}. "
                f"Weighted: bias {weighted.bias:+.3g} ± {weighted.stderr:.2g}, sd {weighted.sd:.3g}, "
                f"RMSE {weighted.rmse:.3g}.")

    def update(self) -> GaussianISExperiment:
        """Recompute the experiment for the sliders' values and redraw the figure and the readout."""
        proposal = (self.proposal_mean.value, self.proposal_std.value)
        self.result = gaussian_is_experiment(*self.target, *proposal, n=self.n.value, repeats=self.repeats, seed=self.seed)
        self.theory = gaussian_is_theory(*self.target, *proposal, n=self.n.value)
        draw_is_experiment(self.figure, self.result, self.target, proposal, theory=self.theory)
        self.readout.value = self.readout_text()
        self.output.clear_output(wait=True)
        with self.output:
            from IPython.display import display

            display(self.figure)
        return self.result

    def widget(self) -> widgets.Widget:
        """The sliders and the readout above the figure, ready to display."""
        return widgets.VBox([widgets.HBox([self.proposal_mean, self.proposal_std, self.n]), self.readout, self.output])


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
    ("ℓ∞ ball", "linf_ball"),
    ("simplex", "simplex"),
    ("half-space", "halfspace"),
)
# The parameters of each set and of the quadratic, chosen so that every shape sits inside the view.
DEFAULT_SET_PARAMS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "box": MappingProxyType({"lower": (-1.5, -1.0), "upper": (1.0, 1.5)}),
    "l2_ball": MappingProxyType({"radius": 1.25}),
    "l1_ball": MappingProxyType({"radius": 1.5}),
    "linf_ball": MappingProxyType({"radius": 1.0}),
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
    and redraws it with :func:`~rlteach.viz.draw_prox_scene`. For a function (not an
    indicator) it overlays ``steps`` explicit (sub)gradient steps x − λ∇f(x)
    and as many prox steps from v (:func:`~rlteach.viz.step_comparison`): for the quadratic
    the explicit ones diverge once λ > 2/L while the prox steps converge for every λ. A
    readout (:func:`~rlteach.viz.prox_readout`) shows f(v), f(prox), ‖prox − v‖ and where
    both kinds of steps end.
    """

    function: str = "l1"  # a value of FUNCTION_CHOICES
    set_name: str = "box"  # a value of SET_CHOICES
    lam: float = 1.0  # λ, in [0.01, 10]; a power 10^(0.02 k) so that the log slider shows it exactly
    point: tuple[float, float] = (2.0, 1.0)  # the highlighted v, inside the view
    extent: float = 2.5  # the view is [-extent, extent]²
    num: int = 7  # grid points per side
    set_params: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: DEFAULT_SET_PARAMS)
    quadratic: Mapping[str, Any] = field(default_factory=lambda: DEFAULT_QUADRATIC)
    steps: int = 8  # explicit and prox steps overlaid from v

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
        self.readout = widgets.HTML()
        self.output = widgets.Output()
        self.figure = Figure(figsize=(8.6, 5.4))  # not a pyplot figure: only the widget ever shows it
        self.scene: ProxScene | None = None
        self.comparison: StepComparison | None = None
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
        is_set = self.function_dropdown.value == "indicator"
        self.comparison = None if is_set else step_comparison(self.prox_name, self.lam_slider.value, point,
                                                              steps=self.steps, **self.prox_params)
        self.figure.clear()
        ax = self.figure.add_subplot()
        if self.comparison is not None:
            draw_step_comparison(ax, self.comparison)
        draw_prox_scene(ax, self.scene, mark_zeros=not is_set, title=explorer_title(self.scene, self.comparison))
        self.figure.subplots_adjust(left=0.08, right=0.62, bottom=0.1, top=0.92)
        self.readout.value = prox_readout(self.scene, self.comparison, **self.prox_params)
        self.output.clear_output(wait=True)
        with self.output:
            from IPython.display import display

            display(self.figure)
        return self.scene

    def widget(self) -> widgets.Widget:
        """The controls and the readout above the figure, ready to display."""
        return widgets.VBox([
            widgets.HBox([self.function_dropdown, self.set_dropdown, self.lam_slider]),
            widgets.HBox([self.x_slider, self.y_slider]),
            self.readout,
            self.output,
        ])
