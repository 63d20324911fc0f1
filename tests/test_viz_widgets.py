import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib._pylab_helpers import Gcf
from matplotlib.quiver import Quiver

from rlteach import importance as imp
from rlteach import kl, viz
from rlteach import projections as S
from rlteach import prox as P
from rlteach import trust_region as tr
from rlteach.viz import draw_is_experiment, source_markdown
from rlteach.widgets import (
    DEFAULT_QUADRATIC,
    DEFAULT_SET_PARAMS,
    TRUST_REGION_PROBLEMS,
    ImportanceSamplingExplorer,
    KLBallExplorer,
    KLDirectionExplorer,
    MirrorStepExplorer,
    ProxExplorer,
    TrustRegionExplorer,
)


def test_experiment_estimates_are_centred_on_the_truth():
    result = imp.gaussian_is_experiment(1.0, 1.0, 0.0, 1.0, n=200, repeats=300, seed=1)
    assert result.ordinary.shape == result.weighted.shape == result.ess.shape == (300,)
    se = result.ordinary.std() / 300**0.5
    assert abs(result.ordinary.mean().item() - 1.0) < 4 * se.item()
    assert result.n == 200 and bool((result.ess <= 200).all())


def test_the_ordinary_estimate_spreads_as_the_proposal_moves_away():
    """For f(x) = x, p = N(Δ, 1), q = N(0, 1): Var_q[w x] = e^{Δ²}(1 + 4Δ²) − Δ², so the sd of the
    n-draw estimate is sqrt(that / n). At Δ = 0.5 the spread over 2000 repeats matches it within
    10%; at Δ = 1.5 (heavy-tailed weights, exact sd 0.48 against 0.07) it is several times larger."""
    spreads = [imp.gaussian_is_experiment(shift, 1.0, 0.0, 1.0, n=400, repeats=2000, seed=2).ordinary.std().item()
               for shift in (0.5, 1.5)]
    exact = math.sqrt((math.exp(0.25) * 2.0 - 0.25) / 400)
    assert spreads[0] == pytest.approx(exact, rel=0.1)
    assert spreads[1] > 4 * spreads[0]


def test_bad_experiment_parameters_are_rejected():
    with pytest.raises(ValueError, match="standard deviations must be positive"):
        imp.gaussian_is_experiment(0.0, 1.0, 0.0, 0.0, n=10, repeats=10)
    with pytest.raises(ValueError, match="n >= 1"):
        imp.gaussian_is_experiment(0.0, 1.0, 0.0, 1.0, n=0, repeats=10)


@pytest.mark.slow
def test_draw_is_experiment_draws_every_estimate_and_says_how_many_lie_outside_the_view():
    """Δ = 2: heavy tails. Every axis and curve is labelled; the bars of each histogram hold all 300 estimates;
    the legend counts those piled into the edge bins and gives the exact sd next to the measured one."""
    result = imp.gaussian_is_experiment(2.0, 1.0, 0.0, 1.2, n=100, repeats=300, seed=1)
    theory = imp.gaussian_is_theory(2.0, 1.0, 0.0, 1.2, n=100)
    view = viz.histogram_view([result.ordinary.numpy(), result.weighted.numpy()])
    assert view.below[0] + view.above[0] > 0  # the ordinary estimates have a tail beyond the view
    fig = plt.figure()
    left, right = draw_is_experiment(fig, result, (2.0, 1.0), (0.0, 1.2), theory=theory)
    assert [line.get_label() for line in left.get_lines()] == ["target p = N(2, 1²)", "proposal q = N(0, 1.2²)"]
    assert "weight p/q (right axis)" in [t.get_text() for t in left.get_legend().get_texts()]  # the twin axis' curve too
    assert left.get_xlabel() and left.get_ylabel() and right.get_xlabel() == "estimate of E_p[x]"
    assert right.get_ylabel() == "repeats"
    assert right.get_title() == f"300 repeats: mean ESS {result.ess.mean().item():.1f} of n = 100"
    assert right.get_lines()[0].get_xdata()[0] == 2.0
    ordinary_bars, weighted_bars = right.containers
    assert sum(bar.get_height() for bar in ordinary_bars) == 300
    assert sum(bar.get_height() for bar in weighted_bars) == 300
    texts = [t.get_text() for t in right.get_legend().get_texts()]
    outside = view.below[0] + view.above[0]
    assert f"{outside} piled into the edge bins" in texts[0] and f"(exact {theory.ordinary_sd:.3g})" in texts[0]
    plt.close(fig)


def test_histogram_view_counts_what_lies_outside():
    view = viz.histogram_view([np.r_[np.zeros(98), -50.0, 100.0]], bins=10, coverage=0.96)
    assert (view.below, view.above, view.largest) == ((1,), (1,), (100.0,))
    assert len(view.edges) == 11 and view.edges[0] <= 0.0 <= view.edges[-1]


def test_draw_curves_labels_every_axis_and_curve():
    fig = plt.figure()
    ax = viz.draw_curves(fig.add_subplot(), np.arange(3), {"a": [1, 2, 3], "b": [3, 2, 1]}, xlabel="x", ylabel="y",
                         title="t", styles={"b": {"linestyle": "--"}}, logy=True)
    assert [line.get_label() for line in ax.get_lines()] == ["a", "b"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title(), ax.get_yscale()) == ("x", "y", "t", "log")
    assert ax.get_lines()[1].get_linestyle() == "--"
    plt.close(fig)


def test_draw_running_estimates_draws_every_run_through_its_own_values():
    runs = np.cumsum(np.ones((3, 1000)), axis=-1) / np.arange(1, 1001)  # all ones
    runs[1] *= 2
    fig = plt.figure()
    ax = viz.draw_running_estimates(fig.add_subplot(), {"ordinary": runs}, truth=1.0, points=50)
    lines = ax.get_lines()
    assert len(lines) == 4 and lines[0].get_label() == "truth 1"  # the truth, then 3 runs
    k = lines[2].get_xdata()
    np.testing.assert_array_equal(lines[2].get_ydata(), runs[1][k - 1])
    assert k[0] == 1 and k[-1] == 1000 and ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["truth 1", "ordinary"]  # one entry per estimator
    plt.close(fig)


@pytest.mark.slow
def test_moving_the_slider_recomputes_and_redraws():
    explorer = ImportanceSamplingExplorer(repeats=50)
    before = explorer.result
    explorer.proposal_mean.value = 3.0
    after = explorer.result
    assert after is not before
    expected = imp.gaussian_is_experiment(1.0, 1.0, 3.0, 1.0, n=100, repeats=50, seed=0)
    torch.testing.assert_close(after.ess, expected.ess)
    assert after.ess.mean() < before.ess.mean()
    assert f"mean ESS {expected.ess.mean().item():.1f}" in explorer.figure.axes[1].get_title()
    plt.close(explorer.figure)


def test_source_markdown_shows_the_library_code_of_an_ungraded_function():
    text = source_markdown(imp.gaussian_is_experiment)
    assert text.startswith("```python\ndef gaussian_is_experiment(") and text.endswith("```")
    assert "ordinary=ordinary_is(x, logp_target, logp_proposal)" in text


# ------------------------------------------------------------------ proximal operators

SETS_2D = {  # the sets of rlteach.prox in the plane, with parameters for each
    "box": {"lower": np.array([-1.0, -0.5]), "upper": np.array([1.5, 1.0])},
    "l2_ball": {"radius": 1.2, "center": np.array([0.3, -0.2])},
    "l1_ball": {"radius": 1.5},
    "linf_ball": {"radius": 0.8, "center": np.array([-0.5, 0.5])},
    "simplex": {"total": 1.5},
    "halfspace": {"a": np.array([1.0, 2.0]), "b": 1.0},
    "affine": {"A": np.array([[1.0, -1.0]]), "b": np.array([0.5])},
}
FUNCTIONS_2D = {"l1": {}, "quadratic": {"A": np.array([[2.0, 0.9], [0.9, 1.0]]), "b": np.array([-0.5, 0.0])}, "l2": {}}
assert set(SETS_2D) | set(FUNCTIONS_2D) == set(P.PROX_NAMES + S.SET_NAMES)


def feasibility_gap(set_name: str, x: np.ndarray, **params) -> np.ndarray:
    """How far each row of x (m, 2) violates the set's defining inequalities, from the formulas (0 when feasible)."""
    if set_name == "box":
        return np.maximum(params["lower"] - x, 0).max(-1) + np.maximum(x - params["upper"], 0).max(-1)
    if set_name in ("l2_ball", "l1_ball", "linf_ball"):
        order = {"l2_ball": 2, "l1_ball": 1, "linf_ball": np.inf}[set_name]
        return np.maximum(np.linalg.norm(x - params.get("center", 0.0), ord=order, axis=-1) - params["radius"], 0)
    if set_name == "simplex":
        return np.maximum(-x, 0).max(-1) + np.abs(x.sum(-1) - params["total"])
    if set_name == "halfspace":
        return np.maximum(x @ params["a"] - params["b"], 0)
    return np.abs(x @ params["A"].T - params["b"]).max(-1)


def lines_by_label(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines()}


def only_quiver(ax) -> Quiver:
    quivers = [c for c in ax.collections if isinstance(c, Quiver)]
    assert len(quivers) == 1
    return quivers[0]


def test_point_grid_spans_the_square_row_by_row():
    grid = viz.point_grid(2.0, 5)
    assert grid.shape == (25, 2)
    np.testing.assert_array_equal(grid[:5, 0], [-2.0, -1.0, 0.0, 1.0, 2.0])
    np.testing.assert_array_equal(grid[:5, 1], [-2.0] * 5)
    np.testing.assert_array_equal(grid[-1], [2.0, 2.0])
    np.testing.assert_array_equal(viz.point_grid(3.0, 1), [[0.0, 0.0]])


@pytest.mark.parametrize("name", list(FUNCTIONS_2D) + list(SETS_2D))
def test_prox_field_is_exactly_what_rlteach_prox_computes(name, rng):
    params = {**FUNCTIONS_2D, **SETS_2D}[name]
    points = rng.normal(scale=2.0, size=(30, 2))
    field = viz.prox_field(name, 0.7, points, **params)
    np.testing.assert_array_equal(field.v, points)
    np.testing.assert_array_equal(field.x, P.prox_of(name, points, 0.7, **params))
    for i in (0, 17):  # one point at a time, through the named operator itself
        np.testing.assert_allclose(field.x[i], P.prox_of(name, points[i], 0.7, **params), rtol=0, atol=1e-12)


@pytest.mark.parametrize("set_name", list(SETS_2D))
def test_the_red_points_of_an_indicator_are_feasible_and_do_not_depend_on_lam(set_name):
    params = SETS_2D[set_name]
    points = viz.point_grid(3.0, 9)
    small, large = (viz.prox_field(set_name, lam, points, **params) for lam in (0.01, 10.0))
    assert feasibility_gap(set_name, small.x, **params).max() <= 1e-12
    np.testing.assert_array_equal(small.x, large.x)
    np.testing.assert_array_equal(small.x, S.project_onto(set_name, points, **params))
    inside = feasibility_gap(set_name, points, **params) == 0  # points of C stay where they are
    np.testing.assert_array_equal(small.x[inside], points[inside])
    assert (~inside).sum() > 0


def test_function_values_follow_the_formulas():
    x = np.array([[1.0, -2.0], [0.0, 0.5]])
    np.testing.assert_allclose(viz.function_values("l1", x), [3.0, 0.5])
    np.testing.assert_allclose(viz.function_values("l2", x), [5**0.5, 0.5])
    A, b = FUNCTIONS_2D["quadratic"]["A"], FUNCTIONS_2D["quadratic"]["b"]
    # ½xᵀAx + bᵀx at (1, −2): ½(2 − 3.6 + 4) − 0.5 = 0.7; at (0, 0.5): ½·0.25 = 0.125
    np.testing.assert_allclose(viz.function_values("quadratic", x, A=A, b=b), [0.7, 0.125])
    np.testing.assert_allclose(viz.function_values("quadratic", x), [2.5, 0.125])  # A = I, b = 0


def test_level_grid_is_f_on_the_grid_with_rows_along_the_second_coordinate():
    levels = viz.level_grid("quadratic", 2.0, num=5, **FUNCTIONS_2D["quadratic"])
    assert levels.xs.shape == levels.ys.shape == (5,) and levels.values.shape == (5, 5)
    i, j = 1, 4  # values[i, j] = f(xs[j], ys[i])
    expected = viz.function_values("quadratic", np.array([levels.xs[j], levels.ys[i]]), **FUNCTIONS_2D["quadratic"])
    assert levels.values[i, j] == pytest.approx(float(expected), abs=1e-12)


@pytest.mark.parametrize("set_name", list(SETS_2D))
def test_set_outline_lies_in_the_set_and_its_boundary_on_the_boundary(set_name):
    params = SETS_2D[set_name]
    outline = viz.set_outline(set_name, 3.0, **params)
    assert outline.boundary.ndim == 2 and outline.boundary.shape[1] == 2 and len(outline.boundary) >= 2
    for points in (outline.region, outline.boundary):
        if len(points):
            assert feasibility_gap(set_name, points, **params).max() <= 1e-12
            np.testing.assert_allclose(S.project_onto(set_name, points, **params), points, atol=1e-12)
    # a boundary point moved a little outward leaves the set (it was on the boundary, not inside)
    mid = outline.boundary[len(outline.boundary) // 4]
    inner = np.array([-3.0, -3.0]) if set_name == "halfspace" else np.asarray(params.get("center", [0.0, 0.0]))
    if set_name in ("simplex", "affine"):
        assert len(outline.region) == 0  # no area: the boundary is the set itself
    else:
        assert feasibility_gap(set_name, (mid + 1e-3 * (mid - inner))[None], **params)[0] > 0


def test_set_outline_shapes():
    box = viz.set_outline("box", 3.0, lower=[-1.0, -0.5], upper=[1.5, 1.0])
    np.testing.assert_array_equal(box.region, [[-1.0, -0.5], [1.5, -0.5], [1.5, 1.0], [-1.0, 1.0]])
    np.testing.assert_array_equal(box.boundary[0], box.boundary[-1])  # closed
    circle = viz.set_outline("l2_ball", radius=2.0, center=[1.0, 0.0])
    np.testing.assert_allclose(np.linalg.norm(circle.boundary - [1.0, 0.0], axis=-1), 2.0)
    diamond = viz.set_outline("l1_ball", radius=1.5)
    np.testing.assert_array_equal(diamond.region, [[1.5, 0.0], [0.0, 1.5], [-1.5, 0.0], [0.0, -1.5]])
    np.testing.assert_array_equal(viz.set_outline("simplex", total=2.0).boundary, [[2.0, 0.0], [0.0, 2.0]])
    half = viz.set_outline("halfspace", 2.0, a=[0.0, 1.0], b=0.5)  # y ≤ 0.5 inside [−2, 2]²
    np.testing.assert_allclose(sorted(half.region.tolist()), [[-2.0, -2.0], [-2.0, 0.5], [2.0, -2.0], [2.0, 0.5]])
    np.testing.assert_allclose(sorted(half.boundary.tolist()), [[-2.0, 0.5], [2.0, 0.5]])
    point = viz.set_outline("affine", A=[[1.0, 1.0], [1.0, -1.0]], b=[2.0, 0.0])
    np.testing.assert_allclose(point.boundary, [[1.0, 1.0]])
    open_box = viz.set_outline("box", 2.0, lower=[-np.inf, 0.0], upper=[np.inf, 1.0])  # cut to the view
    np.testing.assert_array_equal(open_box.region[:, 0], [-2.0, 2.0, 2.0, -2.0])


def test_prox_scene_holds_the_grid_the_point_and_the_path():
    params = FUNCTIONS_2D["quadratic"]
    scene = viz.prox_scene("quadratic", 0.8, (2.0, -1.0), extent=2.0, num=5, path_steps=11, **params)
    np.testing.assert_array_equal(scene.field.v, viz.point_grid(2.0, 5))
    np.testing.assert_array_equal(scene.field.x, P.prox_of("quadratic", scene.field.v, 0.8, **params))
    np.testing.assert_array_equal(scene.point.v, [[2.0, -1.0]])
    np.testing.assert_allclose(scene.point.x[0], P.prox_quadratic(np.array([2.0, -1.0]), 0.8, **params), atol=1e-12)
    assert scene.path.shape == (11, 2)
    np.testing.assert_allclose(scene.path[0], [2.0, -1.0], atol=1e-12)  # μ = 0: the point itself
    np.testing.assert_allclose(scene.path[-1], scene.point.x[0], atol=1e-12)  # μ = λ: its prox
    np.testing.assert_allclose(scene.path[5], P.prox_quadratic(np.array([2.0, -1.0]), 0.4, **params), atol=1e-12)
    assert scene.outline is None and scene.levels.values.shape == (161, 161)
    assert scene.levels.xs[-1] == pytest.approx((1 + viz.VIEW_MARGIN) * 2.0)
    box = viz.prox_scene("box", 0.8, (2.0, -1.0), extent=2.0, **SETS_2D["box"])
    assert box.levels is None and box.outline is not None
    np.testing.assert_array_equal(box.point.x, [[1.5, -0.5]])


def test_draw_prox_scene_draws_arrows_from_each_v_to_its_prox():
    scene = viz.prox_scene("l1", 0.5, (2.0, 1.0), extent=2.5, num=7)
    fig = plt.figure()
    ax = viz.draw_prox_scene(fig.add_subplot(), scene)
    quiver = only_quiver(ax)
    np.testing.assert_array_equal(quiver.get_offsets(), scene.field.v)  # arrows start at the blue points
    np.testing.assert_allclose(np.stack([quiver.U, quiver.V], -1), scene.field.x - scene.field.v)  # and end at red
    assert (quiver.scale, quiver.scale_units, quiver.angles) == (1.0, "xy", "xy")  # drawn at true length
    lines = lines_by_label(ax)
    np.testing.assert_array_equal(np.stack(lines["points v"].get_data(), -1), scene.field.v)
    np.testing.assert_array_equal(np.stack(lines[r"$\mathrm{prox}_{\lambda f}(v)$"].get_data(), -1), scene.field.x)
    np.testing.assert_array_equal(np.ravel(lines["highlighted v"].get_data()), [2.0, 1.0])
    np.testing.assert_array_equal(np.ravel(lines["highlighted prox"].get_data()), [1.5, 0.5])  # soft threshold by ½
    np.testing.assert_array_equal(np.stack(lines["path as λ grows"].get_data(), -1), scene.path)
    arrow = ax.texts[0]
    assert arrow.xy == (1.5, 0.5) and arrow.xyann == (2.0, 1.0)  # the bold arrow points from v to prox(v)
    assert ax.get_title() == r"$f(x) = \|x\|_1$,  λ = 0.5"
    assert ax.get_xlim() == pytest.approx((-2.875, 2.875))
    plt.close(fig)


def test_draw_prox_scene_shades_the_set_for_an_indicator():
    params = SETS_2D["halfspace"]
    scene = viz.prox_scene("halfspace", 0.3, (1.0, 2.0), **params)
    fig = plt.figure()
    ax = viz.draw_prox_scene(fig.add_subplot(), scene)
    assert len(ax.patches) == 1
    np.testing.assert_allclose(ax.patches[0].get_xy()[:-1], scene.outline.region)  # the shaded half-space
    np.testing.assert_allclose(np.stack(lines_by_label(ax)["C = half-space"].get_data(), -1), scene.outline.boundary)
    assert "prox = projection" in ax.get_title()
    plt.close(fig)


def test_draw_objective_gaps_draws_each_curve_and_its_bound():
    gaps = {"ISTA": np.array([1.0, 0.4, 0.2, 0.0]), "FISTA": np.array([1.0, 0.2, 0.05, 1e-3])}
    bounds = {"ISTA bound": np.array([4.0, 2.0, 4 / 3, 1.0]), "FISTA bound": np.array([2.0, 0.9, 0.5, 0.3])}
    fig = plt.figure()
    ax = viz.draw_objective_gaps(fig.add_subplot(), gaps, bounds=bounds)
    lines = lines_by_label(ax)
    np.testing.assert_array_equal(lines["ISTA"].get_xdata(), [1, 2, 3, 4])
    np.testing.assert_array_equal(lines["ISTA"].get_ydata(), [1.0, 0.4, 0.2, np.nan])  # a zero gap is not drawn
    np.testing.assert_array_equal(lines["FISTA"].get_ydata(), gaps["FISTA"])
    np.testing.assert_array_equal(lines["FISTA bound"].get_ydata(), bounds["FISTA bound"])
    assert lines["FISTA bound"].get_color() == lines["FISTA"].get_color() and lines["FISTA bound"].get_linestyle() == "--"
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(gaps) + list(bounds)
    plt.close(fig)


def test_draw_iterates_draws_each_path_and_circles_its_end():
    fig = plt.figure()
    paths = {"a": np.array([[0.0, 0.0], [1.0, 2.0]]), "b": np.array([[1.0, 1.0], [0.5, 0.5], [0.0, 3.0]])}
    ax = viz.draw_iterates(fig.add_subplot(), paths, colors={"b": "black"}, linewidths={"a": 5.0})
    line_a, end_a, line_b, end_b = ax.get_lines()
    assert (line_a.get_label(), line_b.get_label()) == ("a", "b")
    np.testing.assert_array_equal(np.stack(line_b.get_data(), -1), paths["b"])
    np.testing.assert_array_equal(np.ravel(end_a.get_data()), [1.0, 2.0])
    np.testing.assert_array_equal(np.ravel(end_b.get_data()), [0.0, 3.0])
    assert (line_a.get_linewidth(), line_b.get_linewidth(), line_b.get_color()) == (5.0, 1.3, "black")
    plt.close(fig)


def explorer_state(explorer: ProxExplorer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the figure shows: the quiver's arrows (m, 2), the highlighted v and prox (2,) each."""
    ax = explorer.figure.axes[0]
    quiver = only_quiver(ax)
    lines = lines_by_label(ax)
    return (np.stack([quiver.U, quiver.V], -1), np.ravel(lines["highlighted v"].get_data()),
            np.ravel(lines["highlighted prox"].get_data()))


def test_the_lam_slider_recomputes_and_redraws():
    explorer = ProxExplorer(function="l1", lam=0.5, point=(2.0, 1.0))
    arrows_before, _, prox_before = explorer_state(explorer)
    np.testing.assert_array_equal(prox_before, [1.5, 0.5])
    explorer.lam_slider.value = 2.0
    assert explorer.scene.lam == pytest.approx(2.0)
    np.testing.assert_array_equal(explorer.scene.field.x, P.prox_l1(viz.point_grid(2.5, 7), explorer.scene.lam))
    arrows, v, prox = explorer_state(explorer)
    np.testing.assert_allclose(prox, P.prox_l1(np.array([2.0, 1.0]), explorer.scene.lam))
    np.testing.assert_allclose(prox, [0.0, 0.0], atol=1e-12)  # λ = 2 ≥ |v_i|: thresholded to zero
    np.testing.assert_array_equal(v, [2.0, 1.0])
    assert np.abs(arrows).sum() > np.abs(arrows_before).sum()  # longer steps
    assert "λ = 2" in explorer.figure.axes[0].get_title()
    plt.close(explorer.figure)


def test_the_function_dropdown_switches_the_operator():
    explorer = ProxExplorer(function="l1", lam=0.5, point=(2.0, 1.0))
    assert explorer.set_dropdown.disabled
    explorer.function_dropdown.value = "quadratic"
    assert explorer.scene.name == "quadratic" and explorer.scene.levels is not None
    expected = P.prox_quadratic(np.array([2.0, 1.0]), 0.5, **DEFAULT_QUADRATIC)
    _, _, prox = explorer_state(explorer)
    np.testing.assert_allclose(prox, expected, atol=1e-12)
    explorer.function_dropdown.value = "indicator"
    assert not explorer.set_dropdown.disabled
    assert explorer.scene.name == "box" and explorer.scene.outline is not None
    _, _, prox = explorer_state(explorer)
    np.testing.assert_array_equal(prox, S.project_box(np.array([2.0, 1.0]), **DEFAULT_SET_PARAMS["box"]))
    np.testing.assert_array_equal(prox, [1.0, 1.0])
    assert len(explorer.figure.axes[0].patches) == 1  # the box is shaded
    plt.close(explorer.figure)


@pytest.mark.parametrize("set_name", ["box", "l2_ball", "l1_ball", "linf_ball", "simplex", "halfspace"])
def test_the_set_dropdown_switches_the_set_and_every_red_point_is_feasible(set_name):
    explorer = ProxExplorer(function="indicator", set_name="box" if set_name != "box" else "l2_ball")
    explorer.set_dropdown.value = set_name
    params = {k: v if np.isscalar(v) else np.asarray(v, dtype=float) for k, v in DEFAULT_SET_PARAMS[set_name].items()}
    scene = explorer.scene
    assert scene.name == set_name
    assert feasibility_gap(set_name, scene.field.x, **params).max() <= 1e-12
    np.testing.assert_array_equal(scene.point.x, S.project_onto(set_name, scene.point.v, **params))
    ax = explorer.figure.axes[0]
    np.testing.assert_allclose(np.stack(lines_by_label(ax)[f"C = {viz.SET_LABELS[set_name]}"].get_data(), -1),
                               scene.outline.boundary)
    arrows, _, _ = explorer_state(explorer)
    np.testing.assert_allclose(arrows, scene.field.x - scene.field.v)
    plt.close(explorer.figure)


def test_the_point_sliders_move_the_highlighted_point():
    explorer = ProxExplorer(function="indicator", set_name="l2_ball", point=(2.0, 1.0))
    arrows_before, _, _ = explorer_state(explorer)
    explorer.x_slider.value = -2.0
    explorer.y_slider.value = 0.0
    arrows, v, prox = explorer_state(explorer)
    np.testing.assert_array_equal(v, [-2.0, 0.0])
    np.testing.assert_allclose(prox, [-1.25, 0.0])  # onto the circle of radius 1.25
    np.testing.assert_array_equal(arrows, arrows_before)  # the grid does not move
    explorer.x_slider.value = 0.5  # inside the ball: the projection is the point itself
    _, v, prox = explorer_state(explorer)
    np.testing.assert_array_equal(v, prox)
    plt.close(explorer.figure)


def test_the_explorer_widget_holds_every_control():
    explorer = ProxExplorer()
    box = explorer.widget()
    shown = [child for row in box.children[:2] for child in row.children]
    assert set(shown) == set(explorer.controls)
    assert box.children[2] is explorer.readout and box.children[3] is explorer.output
    assert [value for _, value in explorer.function_dropdown.options] == ["l1", "quadratic", "l2", "indicator"]
    assert [value for _, value in explorer.set_dropdown.options] == ["box", "l2_ball", "l1_ball", "linf_ball",
                                                                     "simplex", "halfspace"]
    plt.close(explorer.figure)


def test_bad_names_and_values_are_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="unknown function or set name 'l3'; valid names: l1, quadratic"):
        viz.prox_field("l3", 0.5, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="unknown function or set name 'ball'"):
        viz.prox_scene("ball", 0.5, (0.0, 0.0))
    with pytest.raises(ValueError, match="unknown set name 'disc'; valid names: box, l2_ball"):
        viz.set_outline("disc")
    with pytest.raises(ValueError, match="'box' is a set: its indicator has no level sets"):
        viz.level_grid("box", 2.0)
    with pytest.raises(ValueError, match="unexpected parameters for 'l1': radius"):
        viz.function_values("l1", np.zeros(2), radius=1.0)
    with pytest.raises(ValueError, match="point must have shape"):
        viz.prox_scene("l1", 0.5, (0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="lam must be >= 0"):
        viz.prox_scene("l1", -0.5, (0.0, 0.0))
    with pytest.raises(ValueError, match="the box is empty"):
        viz.set_outline("box", 2.0, lower=[5.0, 0.0], upper=[4.0, 1.0])
    with pytest.raises(ValueError, match="half-space needs its parameters a"):
        viz.set_outline("halfspace")
    with pytest.raises(ValueError, match="unknown function 'huber'; valid choices: l1, quadratic, l2, indicator"):
        ProxExplorer(function="huber")
    with pytest.raises(ValueError, match="unknown set 'affine'; valid choices: box, l2_ball"):
        ProxExplorer(set_name="affine")
    with pytest.raises(ValueError, match="lam must lie in"):
        ProxExplorer(lam=100.0)


def test_draw_level_sets_draws_the_requested_heights():
    levels = viz.level_grid("l2", 2.0, num=41)
    fig = plt.figure()
    ax = viz.draw_level_sets(fig.add_subplot(), levels, heights=[1.5, 0.5])
    (contours,) = [c for c in ax.collections if hasattr(c, "levels")]
    np.testing.assert_array_equal(contours.levels, [0.5, 1.5])  # sorted
    ax = viz.draw_level_sets(fig.add_subplot(), levels, count=4)
    (contours,) = [c for c in ax.collections if hasattr(c, "levels")]
    np.testing.assert_allclose(contours.levels, np.linspace(0.0, 8**0.5, 6)[1:-1])  # strictly between min and max
    plt.close(fig)


# ------------------------------------------------- explicit against implicit steps, readouts


def test_sent_to_zero_finds_the_points_that_soft_thresholding_puts_on_an_axis():
    field = viz.prox_field("l1", 1.0, np.array([[2.0, 0.5], [0.0, 3.0], [2.0, 2.0], [0.3, -0.2]]))
    np.testing.assert_array_equal(viz.sent_to_zero(field), [True, False, False, True])  # (0, 3) was on the axis already


def test_draw_prox_scene_rings_the_points_sent_onto_an_axis_and_draws_the_path_above_the_arrow():
    scene = viz.prox_scene("l1", 1.0, (2.2, 0.5), extent=2.5, num=7)
    fig = plt.figure()
    ax = viz.draw_prox_scene(fig.add_subplot(), scene, mark_zeros=True)
    rings = lines_by_label(ax)["sent exactly onto an axis"]
    np.testing.assert_array_equal(np.stack(rings.get_data(), -1), scene.field.x[viz.sent_to_zero(scene.field)])
    assert len(rings.get_xdata()) > 0 and (np.stack(rings.get_data(), -1) == 0).any(axis=-1).all()
    path = lines_by_label(ax)["path as λ grows"]
    assert path.get_zorder() > ax.texts[0].get_zorder()  # drawn on top of the bold arrow
    np.testing.assert_allclose(scene.path[-1], [1.2, 0.0], atol=1e-12)  # the path bends onto the axis at μ = 0.5
    quadratic = viz.prox_scene("quadratic", 1.0, (2.0, 1.0), **DEFAULT_QUADRATIC)
    ax2 = viz.draw_prox_scene(fig.add_subplot(), quadratic, mark_zeros=True)
    assert "sent exactly onto an axis" not in lines_by_label(ax2)  # none: no legend entry
    plt.close(fig)


def test_step_comparison_explicit_steps_diverge_beyond_two_over_l_and_prox_steps_never_do():
    """Quadratic: L = λ_max(A); the explicit error factor I − λA has spectral radius > 1 iff λ > 2/L."""
    A, b = np.array(DEFAULT_QUADRATIC["A"]), np.array(DEFAULT_QUADRATIC["b"])
    L = np.linalg.eigvalsh(A).max()
    f_min = float(P.value_of("quadratic", np.linalg.solve(A, -b), A=A, b=b))
    for lam, diverges in ((0.95 * 2 / L, False), (1.05 * 2 / L, True), (5.0, True)):
        steps = viz.step_comparison("quadratic", lam, (2.0, 1.0), steps=60, A=A, b=b)
        assert steps.lipschitz == pytest.approx(L)
        assert steps.explicit.shape == steps.implicit.shape == (61, 2)
        assert (steps.f_explicit[-1] > 10.0) == diverges
        assert steps.f_implicit[-1] == pytest.approx(f_min, abs=1e-6)
    x = np.array([2.0, 1.0])
    for _ in range(3):  # the explicit path follows x ← x − λ(Ax + b)
        x = x - 0.5 * (A @ x + b)
    np.testing.assert_allclose(viz.step_comparison("quadratic", 0.5, (2.0, 1.0), steps=3, A=A, b=b).explicit[-1], x)
    l1 = viz.step_comparison("l1", 0.3, (1.0, -0.45), steps=4)
    np.testing.assert_allclose(l1.explicit[-1], [-0.2, 0.15], atol=1e-12)  # subgradient steps overshoot 0
    np.testing.assert_allclose(l1.implicit[-1], [0.0, 0.0], atol=1e-12)  # prox steps stop at 0 exactly
    with pytest.raises(ValueError, match="no explicit step"):
        viz.step_comparison("box", 0.5, (0.0, 0.0))


def test_prox_readout_and_explorer_title_report_the_numbers_that_move():
    scene = viz.prox_scene("l1", 1.0, (2.0, 1.0))
    text = viz.prox_readout(scene, viz.step_comparison("l1", 1.0, (2.0, 1.0), steps=4))
    assert text.startswith("λ = 1: f(v) = 3, f(prox) = 1, ‖prox − v‖ = 1.41")
    assert "After 4 steps" in text
    A, b = DEFAULT_QUADRATIC["A"], DEFAULT_QUADRATIC["b"]
    quad = viz.prox_scene("quadratic", 1.0, (2.0, 1.0), A=A, b=b)
    comparison = viz.step_comparison("quadratic", 1.0, (2.0, 1.0), A=A, b=b)
    assert "the explicit step diverges (λ > 2/L = 0.791)" in viz.prox_readout(quad, comparison, A=A, b=b)
    assert viz.explorer_title(quad, comparison).endswith("explicit steps diverge (2/L = 0.79)")
    assert viz.explorer_title(scene).endswith(f"{viz.sent_to_zero(scene.field).sum()} of 49 points land on an axis")
    box = viz.prox_scene("box", 1.0, (2.0, 1.0), **DEFAULT_SET_PARAMS["box"])
    assert "v ∉ C: ‖Π_C(v) − v‖ = 1 = dist(v, C)" in viz.prox_readout(box)


def test_the_prox_explorer_overlays_both_kinds_of_steps_and_updates_its_readout():
    explorer = ProxExplorer(function="quadratic", lam=0.5, point=(2.0, 1.0))
    assert "is stable" in explorer.readout.value
    labels = lines_by_label(explorer.figure.axes[0])
    assert {"8 explicit steps x − λ∇f(x)", "8 prox steps"} <= set(labels)
    np.testing.assert_allclose(np.stack(labels["8 prox steps"].get_data(), -1), explorer.comparison.implicit)
    explorer.lam_slider.value = 2.0
    assert "diverges" in explorer.readout.value and "diverge" in explorer.figure.axes[0].get_title()
    explorer.function_dropdown.value = "indicator"
    explorer.set_dropdown.value = "linf_ball"
    assert explorer.comparison is None and "8 prox steps" not in lines_by_label(explorer.figure.axes[0])
    np.testing.assert_array_equal(explorer.scene.point.x, [[1.0, 1.0]])  # onto the ℓ∞ ball of radius 1
    assert "dist(v, C)" in explorer.readout.value
    plt.close(explorer.figure)


def test_the_importance_sampling_explorer_reads_out_theory_beside_the_repeats():
    """The widget's narrow setting (width 0.3 < 1/√2): E_q[w²] = ∞ in the readout, beside the mean ESS of the
    repeats; a finite exact sd is printed as a number."""
    narrow = ImportanceSamplingExplorer(proposal=(0.0, 0.3), repeats=50)
    assert narrow.proposal_std.value == 0.3 and narrow.theory.second_moment == math.inf
    assert "E_q[w²] = ∞" in narrow.readout.value and f"mean ESS of {narrow.result.ess.mean().item():.1f}" in narrow.readout.value
    assert all(m.canvas.figure is not narrow.figure for m in Gcf.get_all_fig_managers())  # not pyplot's to show
    box = narrow.widget()
    assert box.children[1] is narrow.readout and box.children[2] is narrow.output
    narrow.theory = imp.gaussian_is_theory(1.0, 1.0, 0.0, 1.0, n=100)  # a finite exact sd is printed as a number
    assert f"exact {narrow.theory.ordinary_sd:.3g}," in narrow.readout_text()


# ------------------------------------------------------------------ trust regions and KL (lecture 03)

DEFINITE, INDEFINITE = TRUST_REGION_PROBLEMS["definite"], TRUST_REGION_PROBLEMS["indefinite"]


def test_level_grid_of_evaluates_any_function_row_by_row():
    levels = viz.level_grid_of(lambda p: p[..., 0] + 10 * p[..., 1], (0.0, 1.0), (-2.0, 2.0), num=5)
    np.testing.assert_array_equal(levels.xs, np.linspace(0, 1, 5))
    assert levels.values[3, 1] == levels.xs[1] + 10 * levels.ys[3]
    with pytest.raises(ValueError, match="empty range"):
        viz.level_grid_of(lambda p: p[..., 0], (1.0, 0.0), (0.0, 1.0))


@pytest.mark.parametrize("radius", [0.3, 1.5, 5.0])
def test_trust_region_scene_holds_every_step_and_the_prox_step_is_the_exact_step(radius):
    """Each step is what rlteach.trust_region computes; ‖p‖ ≤ ρ; the model decreases in the order
    exact ≤ dogleg ≤ Cauchy; the prox step of λ = 1/μ equals the exact step; the path ends at Newton."""
    g, H = torch.tensor(DEFINITE["g"], dtype=torch.float64), torch.tensor(DEFINITE["H"], dtype=torch.float64)
    scene = viz.trust_region_scene(DEFINITE["g"], DEFINITE["H"], radius, extent=3.0)
    np.testing.assert_array_equal(scene.exact, tr.solve_exact(g, H, radius).step.numpy())
    np.testing.assert_array_equal(scene.dogleg, tr.dogleg(g, H, radius).step.numpy())
    np.testing.assert_array_equal(scene.cauchy, tr.cauchy_point(g, H, radius).step.numpy())
    for p in (scene.exact, scene.dogleg, scene.cauchy, scene.steihaug):
        assert np.linalg.norm(p) <= radius * (1 + 1e-12)
    assert scene.model["exact"] <= scene.model["dogleg"] + 1e-12 <= scene.model["Cauchy"] + 2e-12
    np.testing.assert_allclose(scene.prox, scene.exact, atol=1e-12)
    assert scene.lam == (math.inf if scene.mu == 0 else 1 / scene.mu)
    np.testing.assert_allclose(scene.path[-1], -np.linalg.solve(np.array(DEFINITE["H"]), np.array(DEFINITE["g"])), atol=1e-12)
    np.testing.assert_allclose(scene.corners, tr.dogleg_path(g, H).numpy())


def test_the_indefinite_scene_has_no_dogleg_and_its_exact_step_sits_on_the_boundary():
    scene = viz.trust_region_scene(INDEFINITE["g"], INDEFINITE["H"], 0.5, extent=3.0)
    assert scene.dogleg is None and scene.corners is None and "dogleg" not in scene.model
    assert np.linalg.norm(scene.exact) == pytest.approx(0.5, rel=1e-10) and scene.mu > 0
    assert "dogleg: undefined (H is not positive definite)" in viz.trust_region_readout(scene)


def test_draw_trust_region_scene_labels_every_step_with_its_model_value():
    scene = viz.trust_region_scene(DEFINITE["g"], DEFINITE["H"], 1.5, extent=3.0)
    fig = plt.figure()
    ax = viz.draw_trust_region_scene(fig.add_subplot(), scene)
    lines = lines_by_label(ax)
    for name in ("exact", "dogleg", "Steihaug-CG", "Cauchy"):
        (line,) = [line for label, line in lines.items() if label.startswith(f"{name}: m = ")]
        np.testing.assert_allclose(np.ravel(line.get_data()), getattr(scene, {"Steihaug-CG": "steihaug",
                                                                             "Cauchy": "cauchy"}.get(name, name)))
        assert f"{scene.model[name]:.4g}" in line.get_label()
    circle = np.stack(lines["trust region ‖p‖ ≤ ρ = 1.5"].get_data(), -1)
    np.testing.assert_allclose(np.linalg.norm(circle, axis=-1), 1.5)
    assert "λ = 1/μ" in ax.get_title() and ax.get_xlabel() == "$p_1$" and ax.get_legend() is not None
    plt.close(fig)


def test_trust_region_readout_gives_mu_lambda_and_the_share_of_each_step():
    scene = viz.trust_region_scene(DEFINITE["g"], DEFINITE["H"], 1.5, extent=3.0)
    text = viz.trust_region_readout(scene)
    share = 100 * scene.model["Cauchy"] / scene.model["exact"]
    assert f"μ = {scene.mu:.4g}" in text and f"Cauchy {-scene.model['Cauchy']:.4g} ({share:.1f}%)" in text
    inside = viz.trust_region_scene(DEFINITE["g"], DEFINITE["H"], 3.5, extent=3.0)
    assert "μ = 0, λ = 1/μ = ∞" in viz.trust_region_readout(inside)


def test_gaussian_kl_scene_integrands_integrate_to_the_closed_forms():
    """∫ p log(p/q) = KL(p‖q) and ∫ q log(q/p) = KL(q‖p) over [−12, 12] (trapezoid rule, 1e-6), and the two differ."""
    scene = viz.gaussian_kl_scene(0.0, 1.0, 1.0, 0.6, xlim=(-12.0, 12.0), num=4001)
    assert np.trapezoid(scene.forward_integrand, scene.x) == pytest.approx(scene.forward, rel=1e-6)
    assert np.trapezoid(scene.reverse_integrand, scene.x) == pytest.approx(scene.reverse, rel=1e-6)
    expected = math.log(0.6) + (1 + 1) / (2 * 0.36) - 0.5
    assert scene.forward == pytest.approx(expected, rel=1e-12) and scene.reverse < scene.forward
    fig = plt.figure()
    ax = viz.draw_gaussian_kl(fig.add_subplot(), scene)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"p log(p/q): area KL(p‖q) = {scene.forward:.3g}" in texts and len(texts) == 4
    plt.close(fig)


def test_bimodal_fits_cover_and_seek_and_the_readout_counts_the_gap_mass():
    scene = viz.bimodal_fit_scene(4.0)
    assert abs(scene.forward.mean) < 0.06 and scene.forward.std > 1.5
    assert abs(abs(scene.reverse.mean) - 2.0) < 0.06 and scene.reverse.std < 0.8
    assert scene.gap_mass["forward"] > 10 * scene.gap_mass["reverse"]
    assert np.trapezoid(scene.target, scene.x) == pytest.approx(1.0, abs=1e-3)
    text = viz.kl_direction_readout(viz.gaussian_kl_scene(0.0, 1.0, 1.0, 0.6), scene)
    assert f"{100 * scene.gap_mass['forward']:.1f}%" in text
    fig = plt.figure()
    ax = viz.draw_bimodal_fit(fig.add_subplot(), scene)
    assert len(ax.get_legend().get_texts()) == 3 and ax.get_ylabel() == "density"
    plt.close(fig)


def test_simplex_xy_sends_each_action_to_its_corner():
    np.testing.assert_allclose(viz.simplex_xy(np.eye(3)), viz.SIMPLEX_CORNERS)
    np.testing.assert_allclose(viz.simplex_xy(np.full(3, 1 / 3)), viz.SIMPLEX_CORNERS.mean(0))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3\)"):
        viz.simplex_xy(np.ones(4))


def test_the_kl_ball_scene_stays_inside_while_the_euclidean_ball_leaves_near_an_edge():
    """Near the uniform policy all three balls are inside and the Euclidean circle's KL is close to δ;
    at π = (0.66, 0.2, 0.14), δ = 0.05 the Euclidean ball gets a negative probability, the KL ball none."""
    centre = viz.simplex_ball_scene(np.full(3, 1 / 3), 0.01)
    assert np.isfinite(centre.kl_on_euclidean) and centre.kl_on_euclidean == pytest.approx(0.01, rel=0.1)
    edge = viz.simplex_ball_scene((0.66, 0.2, 0.14), 0.05)
    assert edge.kl_on_euclidean == math.inf and edge.ranges["Euclidean"][2, 0] < 0 < edge.ranges["KL"][2, 0]
    p = torch.tensor(edge.probs)
    torch.testing.assert_close(kl.categorical_kl(p.log().expand(len(edge.kl_ball), 3), torch.tensor(edge.kl_ball).log()),
                               torch.full((len(edge.kl_ball),), 0.05, dtype=torch.float64), rtol=1e-8, atol=0)
    text = viz.simplex_ball_readout(edge)
    assert "leaves the simplex" in text and f"[{edge.ranges['KL'][2, 0]:.3f}," in text
    fig = plt.figure()
    ax = viz.draw_simplex_balls(fig.add_subplot(), edge)
    assert "leaves the simplex" in ax.get_title() and len(ax.get_legend().get_texts()) == 5
    plt.close(fig)


def test_the_mirror_step_scene_is_the_kl_prox_beside_the_euclidean_prox():
    """x⁺ = kl_prox_linear, x^E = project_simplex(v − λg); KL(v‖x⁺)/(½‖x⁺ − v‖²_F) → 1 as λ → 0;
    at λ = 1 the Euclidean step zeros an action and its KL is infinite."""
    v, g = (0.5, 0.3, 0.2), (0.5, -0.2, -1.0)
    scene = viz.mirror_step_scene(v, g, 1.0)
    vt, gt = torch.tensor(v, dtype=torch.float64), torch.tensor(g, dtype=torch.float64)
    np.testing.assert_array_equal(scene.kl_step, P.kl_prox_linear(vt, gt, 1.0).numpy())
    np.testing.assert_array_equal(scene.euclidean_step, S.project_simplex(vt - gt).numpy())
    assert scene.stats["zeroed"] == 1 and scene.stats["kl_euclidean"] == math.inf
    ratios = [viz.mirror_step_scene(v, g, lam).stats for lam in (0.3, 0.03, 0.003)]
    gaps = [abs(s["kl_old_new"] / s["half_fisher"] - 1) for s in ratios]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 2e-3
    assert scene.kl_path.shape == scene.euclidean_path.shape == (120, 3)
    np.testing.assert_allclose(scene.kl_path[0], v)
    assert "∞ (an action was set to 0)" in viz.mirror_readout(scene)
    fig = plt.figure()
    ax = viz.draw_mirror_step(fig.add_subplot(), scene)
    assert "zeros 1 action," in ax.get_title()
    plt.close(fig)


def test_the_trust_region_explorer_follows_its_slider_and_dropdown():
    explorer = TrustRegionExplorer()
    explorer.radius_slider.value = 0.1
    assert explorer.scene.radius == pytest.approx(0.1) and np.linalg.norm(explorer.scene.exact) == pytest.approx(0.1)
    assert f"ρ = {explorer.scene.radius:.3g}" in explorer.readout.value
    explorer.problem_dropdown.value = "indefinite"
    assert explorer.scene.dogleg is None and "undefined" in explorer.readout.value
    assert explorer.figure.axes[0].get_title().startswith(f"ρ = {explorer.scene.radius:.3g}")
    box = explorer.widget()
    assert explorer.readout in box.children and explorer.output in box.children
    with pytest.raises(ValueError, match="radius must lie in"):
        TrustRegionExplorer(radius=10.0)
    plt.close(explorer.figure)


@pytest.mark.slow
def test_the_kl_direction_explorer_follows_its_sliders():
    explorer = KLDirectionExplorer()
    explorer.std_slider.value = 2.0
    assert explorer.gaussians.params == (0.0, 1.0, 1.0, 2.0)
    assert explorer.gaussians.forward < explorer.gaussians.reverse  # a wide q: now KL(p‖q) is the small one
    explorer.separation_slider.value = 0.0
    assert explorer.bimodal.forward.std == pytest.approx(explorer.bimodal.reverse.std, abs=0.06)  # one mode: both agree
    assert f"KL(p‖q) = {explorer.gaussians.forward:.4g}" in explorer.readout.value
    assert len(explorer.figure.axes) == 2
    plt.close(explorer.figure)


def test_the_kl_ball_explorer_follows_its_sliders():
    explorer = KLBallExplorer()
    explorer.logit_sliders[0].value = 0.0
    explorer.logit_sliders[1].value = 0.0
    np.testing.assert_allclose(explorer.scene.probs, np.full(3, 1 / 3))
    explorer.kl_slider.value = 0.1
    assert explorer.scene.max_kl == pytest.approx(0.1) and "δ = 0.1" in explorer.readout.value
    with pytest.raises(ValueError, match="max_kl must lie in"):
        KLBallExplorer(max_kl=2.0)
    plt.close(explorer.figure)


def test_the_mirror_step_explorer_follows_its_slider():
    explorer = MirrorStepExplorer()
    explorer.lam_slider.value = 0.1
    assert explorer.scene.lam == pytest.approx(0.1) and explorer.scene.stats["zeroed"] == 0
    assert "both steps keep every action" in explorer.figure.axes[0].get_title()
    explorer.lam_slider.value = 5.0
    assert explorer.scene.stats["zeroed"] >= 1 and "KL(v‖x^E) = ∞" in explorer.readout.value
    with pytest.raises(ValueError, match="lam must lie in"):
        MirrorStepExplorer(lam=0.0)
    plt.close(explorer.figure)


# --------------------------------------------------------------------- lecture 04: advantages, curves


def _small_tradeoff(noise: float) -> "viz.AdvantageTradeoff":
    return viz.advantage_tradeoff(noise, lambdas=(0.0, 0.5, 1.0), ns=(1, 4, 64), num_steps=64, num_envs=32, repeats=3)


def test_the_advantage_tradeoff_trades_the_critics_bias_for_variance():
    """With a noisy critic GAE's bias falls and its variance rises from λ = 0 to λ = 1; GAE(0) is TD(1)
    and GAE(1) is TD(T) on the same rollouts; with the exact critic the bias is the sampling floor."""
    noisy = _small_tradeoff(0.3)
    assert noisy.gae_bias.shape == noisy.gae_variance.shape == (3,) and noisy.td_bias.shape == (3,)
    assert noisy.gae_bias[0] > 5 * noisy.gae_bias[-1] and noisy.gae_bias[0] > 0.1
    assert noisy.gae_variance[0] < noisy.gae_variance[1] < noisy.gae_variance[2]
    np.testing.assert_allclose(noisy.gae_bias[0], noisy.td_bias[0], rtol=1e-9)
    np.testing.assert_allclose(noisy.gae_variance[-1], noisy.td_variance[-1], rtol=1e-9, atol=1e-12)
    assert np.all(noisy.gae_bias_se > 0) and noisy.repeats == 3 and noisy.samples == 64 * 32
    exact = _small_tradeoff(0.0)
    assert exact.critic_error == 0.0 and exact.gae_bias.max() < 0.05


def test_the_advantage_readout_and_figure_show_the_marked_lambda_and_n():
    scene = _small_tradeoff(0.3)
    text = viz.advantage_readout(scene, 0.5, 4)
    assert "GAE(λ = 0.50)" in text and "TD(n = 4)" in text and f"{scene.gae_bias[1]:.3f}" in text
    fig, axes = plt.subplots(1, 2)
    viz.draw_advantage_tradeoff(axes, scene, 0.5, 4)
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
        assert len(ax.get_legend().get_texts()) == 3
    assert "λ = 0.50" in axes[0].get_title() and "n = 4" in axes[1].get_title()
    plt.close(fig)


def test_rolling_mean_averages_the_last_window_values():
    np.testing.assert_allclose(viz.rolling_mean([1.0, 2.0, 3.0, 4.0, 5.0], 2), [1.0, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(viz.rolling_mean([2.0, 4.0, 9.0], 10), [2.0, 3.0, 5.0])
    with pytest.raises(ValueError):
        viz.rolling_mean([1.0], 0)


def test_learning_curves_have_a_legend_entry_per_curve_and_the_reference():
    fig, ax = plt.subplots()
    x = np.arange(5.0)
    viz.draw_learning_curves(ax, {"run a": (x, x), "run b": (x, 2 * x)}, raw={"episodes": (x, x + 1)},
                             reference=(3.0, "target"), xlabel="steps", ylabel="return", title="it learns")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["episodes", "run a", "run b", "target"]
    assert ax.get_xlabel() == "steps" and ax.get_title() == "it learns"
    plt.close(fig)


def test_the_advantage_explorer_follows_its_sliders_and_recomputes_for_a_new_critic():
    from rlteach.widgets import AdvantageExplorer

    explorer = AdvantageExplorer(gae_lambda=0.0, n=1, critic_noise=0.3, repeats=2)
    first = explorer.scene
    assert "GAE(λ = 0.00)" in explorer.readout.value
    explorer.lambda_slider.value = 0.9
    explorer.n_slider.value = 5
    assert explorer.scene is first and "GAE(λ = 0.90)" in explorer.readout.value and "TD(n = 5)" in explorer.readout.value
    explorer.critic_dropdown.value = 0.0
    assert explorer.scene is not first and explorer.scene.critic_error == 0.0
    with pytest.raises(ValueError):
        AdvantageExplorer(critic_noise=0.2)
