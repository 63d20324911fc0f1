"""Interactive figures for the lectures (ipywidgets). Each widget wires sliders to a
plain computation in a math module and a drawing function in :mod:`rlteach.viz`; the
``update`` it exposes is what a slider calls, so tests can drive it without a browser."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure

from rlteach.importance import (
    GaussianISExperiment,
    ISTheory,
    estimator_summary,
    gaussian_is_experiment,
    gaussian_is_theory,
)
from rlteach.viz import (
    AdvantageTradeoff,
    BetaPoint,
    BimodalFitScene,
    ClipScene,
    GaussianKLScene,
    MirrorStepScene,
    ProxScene,
    SimplexBallScene,
    StepComparison,
    TrustRegionScene,
    advantage_readout,
    advantage_tradeoff,
    bimodal_fit_scene,
    draw_advantage_tradeoff,
    draw_bimodal_fit,
    draw_gaussian_kl,
    draw_is_experiment,
    draw_mirror_step,
    draw_overoptimization,
    draw_ppo_clip,
    draw_prox_scene,
    draw_repeat_mass,
    draw_simplex_balls,
    draw_step_comparison,
    draw_trust_region_scene,
    explorer_title,
    format_number,
    gaussian_kl_scene,
    kl_direction_readout,
    mirror_readout,
    mirror_step_scene,
    ppo_clip_readout,
    ppo_clip_scene,
    prox_readout,
    prox_scene,
    rlhf_beta_point,
    rlhf_beta_readout,
    simplex_ball_readout,
    simplex_ball_scene,
    step_comparison,
    trust_region_readout,
    trust_region_scene,
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


# ------------------------------------------------------------------ lecture 03: trust regions and KL

TRUST_REGION_PROBLEMS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "definite": MappingProxyType({"g": (1.2, -0.2), "H": ((0.8, -0.9), (-0.9, 2.6))}),
    "indefinite": MappingProxyType({"g": (1.2, -0.2), "H": ((0.8, -0.9), (-0.9, -0.6))}),
})
TRUST_REGION_CHOICES: tuple[tuple[str, str], ...] = (("H positive definite", "definite"), ("H indefinite", "indefinite"))


def _show(output: widgets.Output, figure: Figure) -> None:
    output.clear_output(wait=True)
    with output:
        from IPython.display import display

        display(figure)


@dataclass
class TrustRegionExplorer:
    """The trust-region subproblem min gᵀp + ½pᵀHp s.t. ‖p‖ ≤ ρ in the plane, solved four ways.

    A log slider for the radius ρ and a dropdown for the model (H positive definite or
    indefinite). Every change recomputes a :class:`~rlteach.viz.TrustRegionScene`
    (:func:`~rlteach.viz.trust_region_scene`) and redraws it: the exact step, the Cauchy point,
    the dogleg step (only for H ≻ 0), Steihaug-CG, and the prox step of λ = 1/μ(ρ) on top of the
    exact one. The readout (:func:`~rlteach.viz.trust_region_readout`) gives μ, λ and each
    step's model decrease with its share of the exact step's.
    """

    radius: float = 1.0  # ρ in [0.03, 4], on the slider's grid 10^(0.02 k)
    problem: str = "definite"  # a value of TRUST_REGION_CHOICES
    extent: float = 3.0  # the view is [-extent, extent]²
    problems: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: TRUST_REGION_PROBLEMS)

    def __post_init__(self) -> None:
        if self.problem not in self.problems:
            raise ValueError(f"unknown problem {self.problem!r}; valid choices: {', '.join(self.problems)}")
        if not 0.03 <= self.radius <= 4.0:
            raise ValueError(f"radius must lie in [0.03, 4] (the slider's range), got {self.radius}")
        self.radius_slider = widgets.FloatLogSlider(value=self.radius, base=10, min=-1.52, max=0.6, step=0.02,
                                                    description="ρ", readout_format=".3g", continuous_update=True)
        self.problem_dropdown = widgets.Dropdown(options=[c for c in TRUST_REGION_CHOICES if c[1] in self.problems],
                                                 value=self.problem, description="model")
        self.readout = widgets.HTML()
        self.output = widgets.Output()
        self.figure = Figure(figsize=(10.5, 5.6))
        self.scene: TrustRegionScene | None = None
        for control in (self.radius_slider, self.problem_dropdown):
            control.observe(lambda _change: self.update(), names="value")
        self.update()

    def update(self) -> TrustRegionScene:
        """Solve the subproblem for the widgets' values and redraw the figure and the readout."""
        params = self.problems[self.problem_dropdown.value]
        self.scene = trust_region_scene(params["g"], params["H"], self.radius_slider.value, extent=self.extent)
        self.figure.clear()
        draw_trust_region_scene(self.figure.add_subplot(), self.scene)
        self.figure.subplots_adjust(left=0.07, right=0.58, bottom=0.1, top=0.92)
        self.readout.value = trust_region_readout(self.scene)
        _show(self.output, self.figure)
        return self.scene

    def widget(self) -> widgets.Widget:
        """The controls and the readout above the figure, ready to display."""
        return widgets.VBox([widgets.HBox([self.problem_dropdown, self.radius_slider]), self.readout, self.output])


@dataclass
class KLDirectionExplorer:
    """Forward against reverse KL. Left: p = N(0, 1) fixed and q = N(μ_q, σ_q²) from two sliders,
    with both KLs and their integrands (:func:`~rlteach.viz.gaussian_kl_scene`). Right: a target of
    two modes whose separation is a third slider, with the best Gaussian in each direction
    (:func:`~rlteach.viz.bimodal_fit_scene`). The readout
    (:func:`~rlteach.viz.kl_direction_readout`) gives both KLs, both fits and the mass each fit
    puts between the modes."""

    mean_q: float = 1.0
    std_q: float = 0.6
    separation: float = 4.0
    mode_std: float = 0.6

    def __post_init__(self) -> None:
        self.mean_slider = widgets.FloatSlider(value=self.mean_q, min=-3.0, max=3.0, step=0.1, description="q mean",
                                               continuous_update=False)
        self.std_slider = widgets.FloatSlider(value=self.std_q, min=0.2, max=3.0, step=0.05, description="q width",
                                              continuous_update=False)
        self.separation_slider = widgets.FloatSlider(value=self.separation, min=0.0, max=6.0, step=0.1,
                                                     description="modes apart", continuous_update=False)
        self.readout = widgets.HTML()
        self.output = widgets.Output()
        self.figure = Figure(figsize=(12, 4.6))
        self.gaussians: GaussianKLScene | None = None
        self.bimodal: BimodalFitScene | None = None
        for slider in (self.mean_slider, self.std_slider, self.separation_slider):
            slider.observe(lambda _change: self.update(), names="value")
        self.update()

    def update(self) -> BimodalFitScene:
        """Recompute both scenes for the sliders' values and redraw."""
        self.gaussians = gaussian_kl_scene(0.0, 1.0, self.mean_slider.value, self.std_slider.value, xlim=(-5.0, 5.0))
        self.bimodal = bimodal_fit_scene(self.separation_slider.value, self.mode_std)
        self.figure.clear()
        left, right = self.figure.subplots(1, 2)
        draw_gaussian_kl(left, self.gaussians)
        draw_bimodal_fit(right, self.bimodal)
        self.figure.tight_layout()
        self.readout.value = kl_direction_readout(self.gaussians, self.bimodal)
        _show(self.output, self.figure)
        return self.bimodal

    def widget(self) -> widgets.Widget:
        return widgets.VBox([widgets.HBox([self.mean_slider, self.std_slider, self.separation_slider]), self.readout,
                             self.output])


@dataclass
class KLBallExplorer:
    """A KL ball around a policy π over 3 actions, on the simplex, beside the Euclidean ball.

    Sliders for δ (log scale) and for the logits of actions 1 and 2 (action 3's logit is 0);
    the figure (:func:`~rlteach.viz.draw_simplex_balls`) shows {q : KL(π‖q) ≤ δ}, its quadratic
    approximation and the Euclidean ball of radius √(2δ/3); the readout
    (:func:`~rlteach.viz.simplex_ball_readout`) gives each action's range of probabilities in
    each ball and the KL that the Euclidean circle reaches."""

    max_kl: float = 0.05  # δ in [0.001, 1], on the slider's grid 10^(0.02 k)
    logits: tuple[float, float] = (1.5, 0.3)

    def __post_init__(self) -> None:
        if not 1e-3 <= self.max_kl <= 1.0:
            raise ValueError(f"max_kl must lie in [0.001, 1] (the slider's range), got {self.max_kl}")
        self.kl_slider = widgets.FloatLogSlider(value=self.max_kl, base=10, min=-3, max=0, step=0.02, description="δ",
                                                readout_format=".3g", continuous_update=False)
        self.logit_sliders = tuple(widgets.FloatSlider(value=float(v), min=-3.0, max=3.0, step=0.1,
                                                       description=f"logit {i + 1}", continuous_update=False)
                                   for i, v in enumerate(self.logits))
        self.readout = widgets.HTML()
        self.output = widgets.Output()
        self.figure = Figure(figsize=(9.5, 4.8))
        self.scene: SimplexBallScene | None = None
        for slider in (self.kl_slider, *self.logit_sliders):
            slider.observe(lambda _change: self.update(), names="value")
        self.update()

    @property
    def probs(self) -> tuple[float, float, float]:
        """π = softmax(logit 1, logit 2, 0)."""
        p = torch.softmax(torch.tensor([s.value for s in self.logit_sliders] + [0.0], dtype=torch.float64), -1)
        return (float(p[0]), float(p[1]), float(p[2]))

    def update(self) -> SimplexBallScene:
        """Recompute the balls for the sliders' values and redraw."""
        self.scene = simplex_ball_scene(self.probs, self.kl_slider.value)
        self.figure.clear()
        draw_simplex_balls(self.figure.add_subplot(), self.scene)
        self.figure.subplots_adjust(left=0.02, right=0.55, bottom=0.03, top=0.9)
        self.readout.value = simplex_ball_readout(self.scene)
        _show(self.output, self.figure)
        return self.scene

    def widget(self) -> widgets.Widget:
        return widgets.VBox([widgets.HBox([self.kl_slider, *self.logit_sliders]), self.readout, self.output])


@dataclass
class MirrorStepExplorer:
    """The KL-penalised step argmin ⟨g, x⟩ + KL(x‖v)/λ (mirror descent) beside the Euclidean prox
    Π_Δ(v − λg) of lecture 02, on 3 actions, with a log slider for λ
    (:func:`~rlteach.viz.mirror_step_scene`). The readout (:func:`~rlteach.viz.mirror_readout`)
    sets the KL step's KL(v‖x⁺) beside ½‖x⁺ − v‖²_F (δ ≈ ρ²/2 in the Fisher norm) and the
    Euclidean step's ρ²/2 beside its KL, infinite once it zeros an action."""

    lam: float = 1.0  # λ in [0.01, 10], on the slider's grid 10^(0.02 k)
    v: tuple[float, float, float] = (0.5, 0.3, 0.2)
    g: tuple[float, float, float] = (0.5, -0.2, -1.0)  # minus the advantages of the three actions

    def __post_init__(self) -> None:
        if not 0.01 <= self.lam <= 10.0:
            raise ValueError(f"lam must lie in [0.01, 10] (the slider's range), got {self.lam}")
        self.lam_slider = widgets.FloatLogSlider(value=self.lam, base=10, min=-2, max=1, step=0.02, description="λ",
                                                 readout_format=".3g", continuous_update=True)
        self.readout = widgets.HTML()
        self.output = widgets.Output()
        self.figure = Figure(figsize=(10, 4.8))
        self.scene: MirrorStepScene | None = None
        self.lam_slider.observe(lambda _change: self.update(), names="value")
        self.update()

    def update(self) -> MirrorStepScene:
        """Recompute both steps for the slider's λ and redraw."""
        self.scene = mirror_step_scene(self.v, self.g, self.lam_slider.value)
        self.figure.clear()
        draw_mirror_step(self.figure.add_subplot(), self.scene)
        self.figure.subplots_adjust(left=0.02, right=0.55, bottom=0.03, top=0.9)
        self.readout.value = mirror_readout(self.scene)
        _show(self.output, self.figure)
        return self.scene

    def widget(self) -> widgets.Widget:
        return widgets.VBox([self.lam_slider, self.readout, self.output])


CRITIC_CHOICES: tuple[tuple[str, float], ...] = (("exact critic V̂ = V", 0.0), ("critic off by ~0.1", 0.1),
                                                  ("critic off by ~0.3", 0.3))


@dataclass
class AdvantageExplorer:
    """Bias against variance of advantage estimates on a random walk whose values are exact.

    Sliders for λ of GAE(γ, λ) and n of TD(n), a dropdown for the critic's error. A change of
    the critic recomputes an :class:`~rlteach.viz.AdvantageTradeoff`
    (:func:`~rlteach.viz.advantage_tradeoff`, about a second); the sliders move the marks of
    :func:`~rlteach.viz.draw_advantage_tradeoff` and the readout
    (:func:`~rlteach.viz.advantage_readout`) of bias and variance, each with its standard error.
    """

    gae_lambda: float = 0.95
    n: int = 3
    critic_noise: float = 0.3  # a value of CRITIC_CHOICES
    repeats: int = 6

    def __post_init__(self) -> None:
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"gae_lambda must lie in [0, 1], got {self.gae_lambda}")
        if not 1 <= self.n <= 12:
            raise ValueError(f"n must lie in 1 … 12 (the slider's range), got {self.n}")
        if self.critic_noise not in dict(CRITIC_CHOICES).values():
            raise ValueError(f"critic_noise must be one of {[v for _, v in CRITIC_CHOICES]}, got {self.critic_noise}")
        self.lambda_slider = widgets.FloatSlider(value=self.gae_lambda, min=0.0, max=1.0, step=0.05, description="λ",
                                                 readout_format=".2f", continuous_update=True)
        self.n_slider = widgets.IntSlider(value=self.n, min=1, max=12, step=1, description="n", continuous_update=True)
        self.critic_dropdown = widgets.Dropdown(options=list(CRITIC_CHOICES), value=self.critic_noise, description="critic")
        self.readout = widgets.HTML()
        self.output = widgets.Output()
        self.figure = Figure(figsize=(13, 4.6))
        self.scene: AdvantageTradeoff | None = None
        self._noise: float | None = None
        for control in (self.lambda_slider, self.n_slider, self.critic_dropdown):
            control.observe(lambda _change: self.update(), names="value")
        self.update()

    def update(self) -> AdvantageTradeoff:
        """Recompute the measurements if the critic changed; redraw the marks and the readout."""
        noise = float(self.critic_dropdown.value)
        if self.scene is None or noise != self._noise:
            self.scene = advantage_tradeoff(noise, repeats=self.repeats)
            self._noise = noise
        self.figure.clear()
        axes = self.figure.subplots(1, 2)
        draw_advantage_tradeoff(axes, self.scene, self.lambda_slider.value, self.n_slider.value)
        self.figure.tight_layout()
        self.readout.value = advantage_readout(self.scene, self.lambda_slider.value, self.n_slider.value)
        _show(self.output, self.figure)
        return self.scene

    def widget(self) -> widgets.Widget:
        return widgets.VBox([widgets.HBox([self.critic_dropdown, self.lambda_slider, self.n_slider]), self.readout,
                             self.output])


@dataclass
class PPOClipExplorer:
    """PPO's clipped surrogate of one sample against its ratio r, for Â > 0 and Â < 0 side by side.

    A slider for ε and one for a marked ratio r. Every change recomputes both
    :class:`~rlteach.viz.ClipScene` (:func:`~rlteach.viz.ppo_clip_scene`) and redraws them with
    :func:`~rlteach.viz.draw_ppo_clip`: L^CPI, the clipped term, their min L^CLIP, the grey
    region where dL^CLIP/dr = 0 and the red gap L^CPI − L^CLIP. The readout
    (:func:`~rlteach.viz.ppo_clip_readout`) gives, at the marked r, both surrogates, both slopes
    and which term the min takes. The r slider's grid (0.03 + 0.05 k) never lands on a kink
    1 ± ε of the ε slider's grid (multiples of 0.05).
    """

    clip_eps: float = 0.2  # ε in [0.05, 0.5]
    ratio: float = 1.33  # the marked r in [0.03, 1.98]
    adv: float = 1.0  # |Â|; the panels show +adv and −adv
    r_max: float = 2.0

    def __post_init__(self) -> None:
        if not 0.05 <= self.clip_eps <= 0.5:
            raise ValueError(f"clip_eps must lie in [0.05, 0.5] (the slider's range), got {self.clip_eps}")
        if not 0.03 <= self.ratio <= 1.98:
            raise ValueError(f"ratio must lie in [0.03, 1.98] (the slider's range), got {self.ratio}")
        if not (math.isfinite(self.adv) and self.adv > 0):
            raise ValueError(f"adv must be a finite |Â| > 0, got {self.adv}")
        self.eps_slider = widgets.FloatSlider(value=self.clip_eps, min=0.05, max=0.5, step=0.05, description="ε",
                                              readout_format=".2f", continuous_update=True)
        self.ratio_slider = widgets.FloatSlider(value=self.ratio, min=0.03, max=1.98, step=0.05, description="r",
                                                readout_format=".2f", continuous_update=True)
        self.readout = widgets.HTML()
        self.output = widgets.Output()
        self.figure = Figure(figsize=(12, 4.6))
        self.scenes: tuple[ClipScene, ClipScene] | None = None
        for slider in (self.eps_slider, self.ratio_slider):
            slider.observe(lambda _change: self.update(), names="value")
        self.update()

    def update(self) -> tuple[ClipScene, ClipScene]:
        """Recompute both scenes for the sliders' values and redraw the figure and the readout."""
        eps, ratio = float(self.eps_slider.value), float(self.ratio_slider.value)
        self.scenes = (ppo_clip_scene(self.adv, eps, r_max=self.r_max), ppo_clip_scene(-self.adv, eps, r_max=self.r_max))
        self.figure.clear()
        for ax, scene in zip(self.figure.subplots(1, 2), self.scenes, strict=True):
            draw_ppo_clip(ax, scene, marker=ratio)
        self.figure.tight_layout()
        self.readout.value = ppo_clip_readout(self.scenes, ratio)
        _show(self.output, self.figure)
        return self.scenes

    def widget(self) -> widgets.Widget:
        """The sliders and the readout above the figure, ready to display."""
        return widgets.VBox([widgets.HBox([self.eps_slider, self.ratio_slider]), self.readout, self.output])


@dataclass
class RLHFBetaExplorer:
    r"""The KL-regularised optimum :math:`\pi^*_\beta \propto \pi_{ref}\,e^{\hat r/\beta}` of RLHF, with a slider over β.

    Built from the enumerable task's arrays over every response: ``ref_logp``
    (:math:`\log\pi_{ref}`), ``reward`` (the learned :math:`\hat r`), ``utility`` (the hidden
    :math:`u`) and ``repeats`` (:func:`~rlteach.viz.repeat_counts`). The curves over β are
    computed once (:func:`rlteach.rlhf.optimum_summary` on ``betas``); each move of the log
    slider recomputes the point at β (:func:`~rlteach.viz.rlhf_beta_point`), redraws
    :func:`~rlteach.viz.draw_overoptimization` with the point marked and
    :func:`~rlteach.viz.draw_repeat_mass`, and the readout
    (:func:`~rlteach.viz.rlhf_beta_readout`) gives E[r̂], E[u] and KL(π*‖π_ref) at β beside π_ref's.
    """

    ref_logp: torch.Tensor
    reward: torch.Tensor
    utility: torch.Tensor
    repeats: torch.Tensor
    beta: float = 0.5  # in [0.01, 10], on the slider's grid 10^(0.05 k)
    betas: torch.Tensor | None = None  # the curves' grid; 61 points log-spaced on [0.01, 10] by default

    def __post_init__(self) -> None:
        from rlteach.rlhf import optimum_summary

        if not 0.01 <= self.beta <= 10.0:
            raise ValueError(f"beta must lie in [0.01, 10] (the slider's range), got {self.beta}")
        dtype = self.ref_logp.dtype
        grid = torch.logspace(-2, 1, 61, dtype=dtype) if self.betas is None else self.betas.to(dtype)
        self.summary = optimum_summary(self.ref_logp, self.reward.to(dtype), self.utility.to(dtype), grid)
        self.beta_slider = widgets.FloatLogSlider(value=self.beta, base=10, min=-2, max=1, step=0.05, description="β",
                                                  readout_format=".3g", continuous_update=False)
        self.readout = widgets.HTML()
        self.image = widgets.Image(format="png")  # the figure as a PNG: no Output widget to route display messages
        self.figure = Figure(figsize=(15, 5.4))
        self.point: BetaPoint | None = None
        self.beta_slider.observe(lambda _change: self.update(), names="value")
        self.update()

    def update(self) -> BetaPoint:
        """Recompute the optimum at the slider's β and redraw the figure and the readout."""
        self.point = rlhf_beta_point(self.ref_logp, self.reward, self.utility, self.repeats,
                                     float(self.beta_slider.value))
        self.figure.clear()
        ax_r, ax_kl, ax_mass = self.figure.subplots(1, 3, gridspec_kw={"width_ratios": (1.3, 1.0, 1.0)})
        draw_overoptimization((ax_r, ax_kl), self.summary, point=self.point)
        draw_repeat_mass(ax_mass, self.point)
        self.figure.tight_layout()
        self.readout.value = rlhf_beta_readout(self.point, self.summary)
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=80)
        self.image.value = buffer.getvalue()
        return self.point

    def widget(self) -> widgets.Widget:
        """The slider and the readout above the figure, ready to display."""
        return widgets.VBox([self.beta_slider, self.readout, self.image])


@dataclass
class SimToRealExplorer:
    """The sim-to-real gap with a slider: return on a "real" system against how far its parameter is shifted.

    ``bands[parameter][controller]`` holds :class:`~rlteach.viz.ShiftBand` s computed beforehand
    (:func:`rlteach.sim2real.shift_curve` per seed, pooled by :func:`~rlteach.viz.pool_shift_curves`);
    ``nominal[parameter]`` is the simulator's value. A dropdown picks the parameter, a slider
    the "real" system on its grid; every change redraws :func:`~rlteach.viz.draw_shift_curves`
    with that system marked and the readout (:func:`~rlteach.viz.shift_readout`) gives each
    controller's mean return there. :meth:`update` returns those numbers.
    """

    bands: Mapping[str, Mapping[str, Any]]  # parameter → controller → rlteach.viz.ShiftBand
    nominal: Mapping[str, float]
    parameter: str | None = None  # the first of ``bands`` by default
    value: float | None = None  # on the parameter's grid; its nominal value by default
    labels: Mapping[str, str] = field(default_factory=dict)  # parameter → x-axis label

    def __post_init__(self) -> None:
        if not self.bands:
            raise ValueError("SimToRealExplorer: no bands")
        parameter = self.parameter or next(iter(self.bands))
        if parameter not in self.bands:
            raise ValueError(f"parameter {parameter!r} not in {list(self.bands)}")
        self.parameter_menu = widgets.Dropdown(options=list(self.bands), value=parameter, description="shift")
        self.value_slider = widgets.SelectionSlider(options=self._grid(parameter), description="real value",
                                                    continuous_update=False)
        self.value_slider.value = self._on_grid(parameter, self.value if self.value is not None
                                                else self.nominal.get(parameter, self._grid(parameter)[0]))
        self.readout = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.figure = Figure(figsize=(8, 4.4))
        self.returns: dict[str, tuple[float, float]] = {}
        self._switching = False
        self.parameter_menu.observe(lambda _change: self._switch(), names="value")
        self.value_slider.observe(lambda _change: None if self._switching else self.update(), names="value")
        self.update()

    def _grid(self, parameter: str) -> list[float]:
        return [float(v) for v in next(iter(self.bands[parameter].values())).values]

    def _on_grid(self, parameter: str, value: float) -> float:
        grid = self._grid(parameter)
        return min(grid, key=lambda v: abs(v - value))

    def _switch(self) -> None:
        parameter = str(self.parameter_menu.value)
        self._switching = True
        try:
            self.value_slider.options = self._grid(parameter)
            self.value_slider.value = self._on_grid(parameter, self.nominal.get(parameter, self._grid(parameter)[0]))
        finally:
            self._switching = False
        self.update()

    def update(self) -> dict[str, tuple[float, float]]:
        """Read the mean return (and its s.e.) of every controller at the slider's system; redraw figure and readout."""
        from rlteach.viz import draw_shift_curves, shift_readout  # lecture 08's, imported where used

        parameter, value = str(self.parameter_menu.value), float(self.value_slider.value)
        bands = self.bands[parameter]
        self.returns = {}
        for label, band in bands.items():
            distances = [abs(float(v) - value) for v in band.values]
            j = distances.index(min(distances))
            self.returns[label] = (float(band.mean[j]), float(band.stderr[j]))
        self.figure.clear()
        ax = self.figure.subplots()
        draw_shift_curves(ax, bands, xlabel=self.labels.get(parameter, parameter),
                          title=f"On the system with {parameter} = {value:g}: "
                                + ", ".join(f"{k} {m:.0f}" for k, (m, _) in self.returns.items()),
                          nominal=self.nominal.get(parameter), marker=value)
        self.figure.tight_layout()
        self.readout.value = shift_readout(bands, value)
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=80)
        self.image.value = buffer.getvalue()
        return self.returns

    def widget(self) -> widgets.Widget:
        """The dropdown, the slider and the readout above the figure, ready to display."""
        return widgets.VBox([widgets.HBox([self.parameter_menu, self.value_slider]), self.readout, self.image])
