"""Lecture 07's figures of RLHF's closed-form optimum against β: the numbers they draw and read out
are those of rlteach.rlhf.optimum_summary, and the β slider widget follows its slider."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from rlteach import rlhf, viz
from rlteach.widgets import RLHFBetaExplorer

TASK = rlhf.TokenTask(3, 3)  # 3 + 9 + 27 = 39 responses


@pytest.fixture(scope="module")
def arrays():
    """log π_ref, r̂ that ignores repeats, u that penalises them, and the repeat counts, over all 39 responses."""
    y = rlhf.all_responses(TASK)
    g = torch.Generator().manual_seed(0)
    ref_logp = torch.log_softmax(torch.randn(len(y), generator=g, dtype=torch.float64), 0)
    repeats = viz.repeat_counts(y, TASK)
    base = torch.randn(len(y), generator=g, dtype=torch.float64)
    reward = base + 0.5 * repeats  # overrates repeats
    utility = base - 3.0 * repeats
    return y, ref_logp, reward, utility, repeats


def test_repeat_counts_counts_words_equal_to_the_one_before():
    eos = TASK.eos
    tokens = torch.tensor([[0, eos, eos], [1, 1, eos], [2, 2, 2], [0, 1, 0], [2, 1, 1]])
    assert viz.repeat_counts(tokens, TASK).tolist() == [0, 1, 2, 0, 1]
    with pytest.raises(ValueError, match="empty"):  # EOS first: an empty response
        viz.repeat_counts(torch.tensor([[eos, eos, eos]]), TASK)


def test_the_point_is_optimum_summary_at_that_beta(arrays):
    y, ref_logp, reward, utility, repeats = arrays
    for beta in (0.05, 0.5, 4.0):
        p = viz.rlhf_beta_point(ref_logp, reward, utility, repeats, beta)
        s = rlhf.optimum_summary(ref_logp, reward, utility, torch.tensor([beta], dtype=torch.float64))
        assert (p.reward, p.utility, p.kl) == (float(s.reward[0]), float(s.utility[0]), float(s.kl[0]))
        star = rlhf.optimal_policy_logp(ref_logp, reward, beta).exp()
        for k in range(3):
            assert p.opt_mass[k] == pytest.approx(float(star[repeats == k].sum()), abs=1e-14)
            assert p.ref_mass[k] == pytest.approx(float(ref_logp.exp()[repeats == k].sum()), abs=1e-14)
        assert p.ref_reward == pytest.approx(float((ref_logp.exp() * reward).sum()), abs=1e-14)
        assert p.ref_utility == pytest.approx(float((ref_logp.exp() * utility).sum()), abs=1e-14)
        assert p.opt_mass.sum() == pytest.approx(1.0, abs=1e-12)
    assert viz.rlhf_beta_point(ref_logp, reward, utility, repeats, 1e6).kl == pytest.approx(0.0, abs=1e-9)  # β → ∞: π_ref


def test_bad_point_arguments_are_rejected(arrays):
    _, ref_logp, reward, utility, repeats = arrays
    with pytest.raises(ValueError, match="β > 0"):
        viz.rlhf_beta_point(ref_logp, reward, utility, repeats, 0.0)
    with pytest.raises(ValueError, match="one shape"):
        viz.rlhf_beta_point(ref_logp, reward[:-1], utility, repeats, 0.5)


def test_utility_peak_and_the_overoptimization_figure(arrays):
    _, ref_logp, reward, utility, repeats = arrays
    betas = torch.logspace(-2, 1, 31, dtype=torch.float64)
    s = rlhf.optimum_summary(ref_logp, reward, utility, betas)
    i = int(s.utility.argmax())
    assert viz.utility_peak(s) == (float(betas[i]), float(s.utility[i]))
    assert 0 < i < len(betas) - 1, "this reward overrates repeats: E[u] rises, then falls"
    point = viz.rlhf_beta_point(ref_logp, reward, utility, repeats, 0.02)
    fig = Figure()
    ax_r, ax_kl = fig.subplots(1, 2)
    viz.draw_overoptimization((ax_r, ax_kl), s, point=point, trained={0.5: (1.0, 0.2, 0.3)})
    lines = {line.get_label(): line for line in ax_r.get_lines()}
    np.testing.assert_array_equal(lines[r"learned reward $E_{\pi^*}[\hat r]$"].get_ydata(), s.reward.numpy())
    np.testing.assert_array_equal(lines[r"true utility $E_{\pi^*}[u]$"].get_xdata(), betas.numpy())
    np.testing.assert_array_equal(lines[r"true utility $E_{\pi^*}[u]$"].get_ydata(), s.utility.numpy())
    peak = [line for label, line in lines.items() if label.startswith("E[u] peaks")]
    assert list(peak[0].get_xdata()) == [float(betas[i])] * 2
    assert lines[f"β = 0.02: E[u] = {point.utility:.3g}"].get_ydata()[0] == point.utility
    assert lines["PPO-trained: E[u]"].get_ydata()[0] == 0.2
    kl_lines = {line.get_label(): line for line in ax_kl.get_lines()}
    np.testing.assert_array_equal(kl_lines[r"KL$(\pi^*_\beta\,\|\,\pi_{ref})$"].get_ydata(), s.kl.numpy())
    assert ax_r.get_xscale() == ax_kl.get_xscale() == "log" and ax_kl.get_yscale() == "log"
    assert f"Below β = {float(betas[i]):.3g}" in ax_r.get_title() and ax_r.get_xlabel() and ax_kl.get_ylabel()
    ax = Figure().add_subplot()
    viz.draw_repeat_mass(ax, point)
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, np.concatenate([point.ref_mass, point.opt_mass]), rtol=0, atol=0)
    assert f"{point.opt_mass[1:].sum():.1%}" in ax.get_title()


def test_the_readout_reports_the_point_and_the_reference(arrays):
    _, ref_logp, reward, utility, repeats = arrays
    s = rlhf.optimum_summary(ref_logp, reward, utility, torch.logspace(-2, 1, 31, dtype=torch.float64))
    p = viz.rlhf_beta_point(ref_logp, reward, utility, repeats, 0.01)
    html = viz.rlhf_beta_readout(p, s)
    assert f"<tr><td>π*_β</td><td>{p.reward:.3f}</td><td>{p.utility:.3f}</td><td>{p.kl:.3f}</td>" in html
    assert f"<tr><td>π_ref</td><td>{p.ref_reward:.3f}</td><td>{p.ref_utility:.3f}</td><td>0</td>" in html
    assert "past the peak" in html
    assert "at or above the peak" in viz.rlhf_beta_readout(viz.rlhf_beta_point(ref_logp, reward, utility, repeats, 5.0), s)


@pytest.mark.slow  # renders a three-panel figure per slider move (2 s)
def test_the_explorer_follows_its_slider(arrays):
    _, ref_logp, reward, utility, repeats = arrays
    w = RLHFBetaExplorer(ref_logp, reward, utility, repeats)
    assert w.point.beta == pytest.approx(0.5)
    grid = torch.logspace(-2, 1, 61, dtype=torch.float64)
    s = rlhf.optimum_summary(ref_logp, reward, utility, grid)
    torch.testing.assert_close(w.summary.utility, s.utility, rtol=0, atol=0)
    w.beta_slider.value = 0.02
    at = rlhf.optimum_summary(ref_logp, reward, utility, torch.tensor([w.beta_slider.value], dtype=torch.float64))
    assert (w.point.reward, w.point.utility, w.point.kl) == (float(at.reward[0]), float(at.utility[0]), float(at.kl[0]))
    assert f"<td>{float(at.reward[0]):.3f}</td><td>{float(at.utility[0]):.3f}</td><td>{float(at.kl[0]):.3f}</td>" in w.readout.value
    assert w.point.reward > s.reward[-1] and w.point.utility < viz.utility_peak(s)[1]  # small β: r̂ high, u past its peak
    assert len(w.figure.axes) == 3 and w.image.value[:8] == b"\x89PNG\r\n\x1a\n"  # the figure, shown as a PNG
    with pytest.raises(ValueError, match="slider's range"):
        RLHFBetaExplorer(ref_logp, reward, utility, repeats, beta=20.0)
