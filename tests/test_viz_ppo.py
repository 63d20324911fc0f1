"""Lecture 06's figure of PPO's clipped surrogate: the curves it draws are the formulas, the
flat region is where the maths says, and the slider widget follows its sliders."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure

from rlteach import viz
from rlteach.widgets import PPOClipExplorer


@pytest.mark.parametrize("adv", [1.0, -1.0, 2.5, -0.3])
@pytest.mark.parametrize("clip_eps", [0.1, 0.2, 0.35])
def test_clip_scene_is_the_formula(adv, clip_eps):
    """L^CPI = rÂ, the clipped term = clip(r, 1−ε, 1+ε)Â and L^CLIP = their min, on the default grid."""
    s = viz.ppo_clip_scene(adv, clip_eps)
    r = np.linspace(0.0, 2.0, 401)
    np.testing.assert_allclose(s.ratio, r, rtol=0, atol=0)
    np.testing.assert_allclose(s.cpi, r * adv, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(s.clipped, np.clip(r, 1 - clip_eps, 1 + clip_eps) * adv, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(s.clip, np.minimum(r * adv, np.clip(r, 1 - clip_eps, 1 + clip_eps) * adv),
                               rtol=1e-15, atol=1e-15)
    assert bool(np.all(s.clip <= s.cpi)), "L^CLIP is a lower bound of L^CPI"


@pytest.mark.parametrize("clip_eps", [0.1, 0.2, 0.3])
def test_the_gradient_is_zero_exactly_beyond_the_clip_on_the_helpful_side(clip_eps):
    """Â > 0: dL^CLIP/dr = 0 for r > 1 + ε and Â elsewhere; Â < 0: 0 for r < 1 − ε and Â elsewhere
    (grid points chosen off the kinks)."""
    r = np.arange(0.013, 3.0, 0.05)  # never exactly 1 ± ε
    pos, neg = viz.ppo_clip_scene(2.0, clip_eps, ratio=r), viz.ppo_clip_scene(-2.0, clip_eps, ratio=r)
    np.testing.assert_array_equal(pos.flat, r > 1 + clip_eps)
    np.testing.assert_array_equal(neg.flat, r < 1 - clip_eps)
    np.testing.assert_array_equal(pos.grad, np.where(r > 1 + clip_eps, 0.0, 2.0))
    np.testing.assert_array_equal(neg.grad, np.where(r < 1 - clip_eps, 0.0, -2.0))


def test_flat_intervals_and_the_branch_the_min_takes():
    s = viz.ppo_clip_scene(1.0, 0.2)  # grid step 0.005: the flat run starts at the first point past 1.2
    assert viz.flat_intervals(s.ratio, s.flat) == [(pytest.approx(1.205), 2.0)]
    s_neg = viz.ppo_clip_scene(-1.0, 0.2)
    assert viz.flat_intervals(s_neg.ratio, s_neg.flat) == [(0.0, pytest.approx(0.795))]
    assert viz.flat_intervals(np.arange(5.0), np.array([True, False, True, True, False])) == [(0.0, 0.0), (2.0, 3.0)]
    p = viz.ppo_clip_scene(1.0, 0.2, ratio=[0.5, 1.0, 1.5])
    assert [viz.clip_branch(p, i) for i in range(3)] == ["unclipped", "both", "clipped"]
    n = viz.ppo_clip_scene(-1.0, 0.2, ratio=[0.5, 1.0, 1.5])
    assert [viz.clip_branch(n, i) for i in range(3)] == ["clipped", "both", "unclipped"]


def test_bad_scene_arguments_are_rejected():
    with pytest.raises(ValueError, match="nonzero advantage"):
        viz.ppo_clip_scene(0.0, 0.2)
    with pytest.raises(ValueError, match="ε > 0"):
        viz.ppo_clip_scene(1.0, 0.0)
    with pytest.raises(ValueError, match="ratios ≥ 0"):
        viz.ppo_clip_scene(1.0, 0.2, ratio=[-0.1, 1.0])


def test_draw_ppo_clip_draws_the_scene_and_shades_the_flat_region():
    s = viz.ppo_clip_scene(1.0, 0.25)
    ax = Figure().add_subplot()
    viz.draw_ppo_clip(ax, s, marker=1.5)
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_array_equal(lines["$L^{CLIP}$ = min of the two"].get_ydata(), s.clip)
    np.testing.assert_array_equal(lines[r"$L^{CPI} = r\hat{A}$"].get_ydata(), s.cpi)
    spans = [p for p in ax.patches if p.get_label().startswith("$dL^{CLIP}/dr = 0$")]
    assert len(spans) == 1
    x0, x1 = spans[0].get_x(), spans[0].get_x() + spans[0].get_width()
    assert x0 == pytest.approx(1.255) and x1 == pytest.approx(2.0)
    marked = [line for line in ax.get_lines() if list(line.get_xdata()) == [1.5]]
    assert sorted(float(line.get_ydata()[0]) for line in marked) == pytest.approx([1.25, 1.5])  # L^CLIP, L^CPI
    assert "r > 1 + ε = 1.25" in ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    assert len(ax.get_legend().get_texts()) == 5


def test_the_readout_reports_both_slopes_and_the_branch():
    scenes = (viz.ppo_clip_scene(1.0, 0.2), viz.ppo_clip_scene(-1.0, 0.2))
    html = viz.ppo_clip_readout(scenes, 1.33)
    assert "<td>Â = +1</td><td>+1.330</td><td>+1.200</td><td>0.130</td><td>+1</td><td>+0</td><td>clipped</td>" in html
    assert "<td>Â = -1</td><td>-1.330</td><td>-1.330</td><td>0.000</td><td>-1</td><td>-1</td><td>unclipped</td>" in html


def test_the_explorer_follows_its_sliders():
    w = PPOClipExplorer()
    pos, neg = w.scenes
    assert (pos.adv, neg.adv, pos.clip_eps) == (1.0, -1.0, 0.2)
    w.eps_slider.value = 0.4
    pos, neg = w.scenes
    assert pos.clip_eps == neg.clip_eps == pytest.approx(0.4)
    step = 0.005  # the grid's spacing; a grid point on the kink itself may round to either side
    assert 1.4 <= viz.flat_intervals(pos.ratio, pos.flat)[0][0] <= 1.4 + step + 1e-12
    assert 0.6 - step - 1e-12 <= viz.flat_intervals(neg.ratio, neg.flat)[-1][1] <= 0.6
    w.ratio_slider.value = 0.48
    assert "r = 0.48" in w.readout.value and "ε = 0.40" in w.readout.value
    assert len(w.figure.axes) == 2
    with pytest.raises(ValueError, match="slider's range"):
        PPOClipExplorer(clip_eps=0.9)
