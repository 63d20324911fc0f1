"""The Bradley-Terry model, its losses, Plackett-Luce rankings and DPO (rlteach.preferences):
identities, hand computations, Monte Carlo frequencies within k standard errors, and clear errors."""

import math

import pytest
import torch

from rlteach.preferences import (
    DPOStats,
    bradley_terry_loss,
    bradley_terry_prob,
    dpo_loss,
    pairwise_accuracy,
    ranking_pairs,
    sample_preferences,
    sample_rankings,
)
from tests.conftest import DEVICES

F64 = torch.float64


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------------------------------
# Bradley-Terry probabilities and loss
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_bradley_terry_probabilities_of_a_pair_sum_to_one(gen, device):
    """P(i ≻ j) + P(j ≻ i) = 1, and P(i ≻ j) = p_i / (p_i + p_j) with p = e^s where that does not overflow."""
    s_i = (3 * torch.randn(50, generator=gen, dtype=F64)).to(device)
    s_j = (3 * torch.randn(50, generator=gen, dtype=F64)).to(device)
    p_ij, p_ji = bradley_terry_prob(s_i, s_j), bradley_terry_prob(s_j, s_i)
    assert p_ij.shape == (50,) and p_ij.device.type == device
    torch.testing.assert_close(p_ij + p_ji, torch.ones_like(p_ij), rtol=0, atol=1e-15)
    torch.testing.assert_close(p_ij, s_i.exp() / (s_i.exp() + s_j.exp()), rtol=1e-13, atol=0)
    big = bradley_terry_prob(torch.tensor([1000.0, -1000.0]), torch.tensor([999.0, -1000.0]))
    torch.testing.assert_close(big, torch.tensor([sigmoid(1.0), 0.5]))  # e^1000 = inf would give nan


def test_bradley_terry_depends_only_on_score_differences(gen):
    s_i, s_j = torch.randn(20, generator=gen, dtype=F64), torch.randn(20, generator=gen, dtype=F64)
    torch.testing.assert_close(bradley_terry_prob(s_i + 7.5, s_j + 7.5), bradley_terry_prob(s_i, s_j))
    torch.testing.assert_close(bradley_terry_loss(s_i - 3.0, s_j - 3.0), bradley_terry_loss(s_i, s_j))


@pytest.mark.parametrize("device", DEVICES)
def test_bradley_terry_loss_matches_a_hand_computation(device):
    """Margins Δ = (1, −2, 0): L = −(log σ(1) + log σ(−2) + log ½)/3."""
    chosen = torch.tensor([2.0, -1.0, 0.5], dtype=F64, device=device)
    rejected = torch.tensor([1.0, 1.0, 0.5], dtype=F64, device=device)
    expected = -(math.log(sigmoid(1.0)) + math.log(sigmoid(-2.0)) + math.log(0.5)) / 3
    assert float(bradley_terry_loss(chosen, rejected)) == pytest.approx(expected, rel=1e-14)
    assert float(bradley_terry_loss(chosen, rejected)) == pytest.approx(1.0444456263737136, rel=1e-14)


def test_bradley_terry_loss_is_stable_at_huge_margins():
    """Margin −1000: loss 1000 (log σ(−1000) = −1000 to float precision), where log(sigmoid(·)) gives inf.
    Margin +1000: loss 0. Gradients stay finite: −(1 − σ(Δ)) = −1 and 0."""
    for dtype in (torch.float32, F64):
        chosen = torch.tensor([0.0, 1000.0], dtype=dtype, requires_grad=True)
        rejected = torch.tensor([1000.0, 0.0], dtype=dtype)
        lose = bradley_terry_loss(chosen[:1], rejected[:1])
        win = bradley_terry_loss(chosen[1:], rejected[1:])
        assert math.isfinite(float(lose.detach())) and float(lose.detach()) == 1000.0
        assert float(win.detach()) == 0.0
        (lose + win).backward()
        assert chosen.grad is not None
        torch.testing.assert_close(chosen.grad, torch.tensor([-1.0, 0.0], dtype=dtype))
        naive = -torch.log(torch.sigmoid(chosen.detach()[:1] - rejected[:1]))
        assert float(naive) == math.inf  # the unstable form this loss avoids


def test_bradley_terry_loss_gradient_on_two_items():
    """Two items, one pair: ∂L/∂s_w = −(1 − σ(Δ)), ∂L/∂s_l = +(1 − σ(Δ)); over B pairs each is divided by B."""
    scores = torch.tensor([0.7, -0.4], dtype=F64, requires_grad=True)
    bradley_terry_loss(scores[:1], scores[1:]).backward()
    g = 1 - sigmoid(1.1)
    assert scores.grad is not None
    torch.testing.assert_close(scores.grad, torch.tensor([-g, g], dtype=F64), rtol=1e-14, atol=0)
    chosen = torch.tensor([0.7, 2.0, -1.0], dtype=F64, requires_grad=True)
    rejected = torch.tensor([-0.4, 2.5, 1.0], dtype=F64, requires_grad=True)
    bradley_terry_loss(chosen, rejected).backward()
    expected = -(1 - torch.sigmoid(chosen.detach() - rejected.detach())) / 3
    assert chosen.grad is not None and rejected.grad is not None
    torch.testing.assert_close(chosen.grad, expected, rtol=1e-14, atol=0)
    torch.testing.assert_close(rejected.grad, -expected, rtol=1e-14, atol=0)


def test_linear_reward_model_gradient_on_two_items(gen):
    """r̂(y) = x(y)·w on two items: ∇_w L = −(1 − σ(Δ))(x_w − x_l); one gradient step raises P(w ≻ l)."""
    x = torch.randn(2, 5, generator=gen, dtype=F64)
    w = torch.randn(5, generator=gen, dtype=F64, requires_grad=True)
    scores = x @ w
    loss = bradley_terry_loss(scores[:1], scores[1:])
    loss.backward()
    delta = float((x[0] - x[1]) @ w.detach())
    assert w.grad is not None
    torch.testing.assert_close(w.grad, -(1 - sigmoid(delta)) * (x[0] - x[1]), rtol=1e-13, atol=0)
    stepped = w.detach() - 0.1 * w.grad
    assert float(bradley_terry_prob(x[:1] @ stepped, x[1:] @ stepped)) > sigmoid(delta)


def test_pairwise_accuracy_counts_ties_as_one_half():
    acc = pairwise_accuracy(torch.tensor([1.0, 0.0, 2.0, 3.0]), torch.tensor([0.0, 1.0, 2.0, -1.0]))
    assert float(acc) == pytest.approx((1 + 0 + 0.5 + 1) / 4)


@pytest.mark.parametrize(("args", "error", "match"), [
    ((torch.zeros(3), torch.zeros(4)), ValueError, "mismatched shapes"),
    ((torch.zeros(0), torch.zeros(0)), ValueError, "empty"),
    ((torch.tensor([0.0, float("nan")]), torch.zeros(2)), ValueError, "NaN"),
    ((torch.zeros(2), torch.tensor([float("nan"), 0.0])), ValueError, "NaN"),
    (("a", torch.zeros(1)), TypeError, "expected a tensor"),
    ((torch.zeros(2, dtype=torch.complex64), torch.zeros(2)), TypeError, "real numbers"),
])
@pytest.mark.parametrize("fn", [bradley_terry_prob, bradley_terry_loss, pairwise_accuracy])
def test_bad_pairs_raise_clear_errors(fn, args, error, match):
    with pytest.raises(error, match=match):
        fn(*args)


# ---------------------------------------------------------------------------------------
# Simulated labellers: pairs and k-wise rankings
# ---------------------------------------------------------------------------------------


def test_sample_preferences_follow_the_bradley_terry_probability():
    """Frequency of 'a preferred' within 4 standard errors of σ(s_a − s_b), for three margins."""
    n = 20_000
    margins = torch.tensor([-1.5, 0.0, 2.0], dtype=F64)
    a = margins.repeat_interleave(n)
    wins = sample_preferences(a, torch.zeros_like(a), torch.Generator().manual_seed(1))
    assert wins.dtype == torch.bool and wins.shape == (3 * n,)
    freq = wins.view(3, n).double().mean(1)
    p = torch.sigmoid(margins)
    assert bool(((freq - p).abs() < 4 * (p * (1 - p) / n).sqrt()).all()), (freq, p)


def test_sample_rankings_order_pairs_with_the_bradley_terry_probability():
    """Plackett-Luce by Gumbel sorting: each pair i, j ordered i first with probability σ(s_i − s_j),
    and the top item drawn with probability softmax(s)_i; both within 4 standard errors."""
    n, scores = 20_000, torch.tensor([1.0, 0.0, -0.5, 2.0], dtype=F64)
    ranking = sample_rankings(scores.expand(n, -1), torch.Generator().manual_seed(2))
    assert ranking.shape == (n, 4) and ranking.dtype == torch.int64
    assert bool((ranking.sort(1).values == torch.arange(4)).all())  # each row a permutation
    position = ranking.argsort(1)  # position[b, i]: the place of item i in ranking b
    for i in range(4):
        for j in range(i + 1, 4):
            freq = float((position[:, i] < position[:, j]).double().mean())
            p = sigmoid(float(scores[i] - scores[j]))
            assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / n), (i, j, freq, p)
    top = torch.bincount(ranking[:, 0], minlength=4).double() / n
    p_top = torch.softmax(scores, 0)
    assert bool(((top - p_top).abs() < 4 * (p_top * (1 - p_top) / n).sqrt()).all()), (top, p_top)


def test_sample_rankings_are_seeded():
    scores = torch.randn(10, 5, generator=torch.Generator().manual_seed(0))
    first = sample_rankings(scores, torch.Generator().manual_seed(3))
    assert torch.equal(first, sample_rankings(scores, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, sample_rankings(scores, torch.Generator().manual_seed(4)))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_ranking_pairs_lists_every_implied_pair_once(k):
    """k(k−1)/2 pairs per ranking, each chosen ranked above its rejected, every unordered pair once."""
    ranking = torch.stack([torch.randperm(k, generator=torch.Generator().manual_seed(b)) for b in range(6)])
    chosen, rejected = ranking_pairs(ranking)
    assert chosen.shape == rejected.shape == (6, k * (k - 1) // 2)
    position = ranking.argsort(1)
    assert bool((position.gather(1, chosen) < position.gather(1, rejected)).all())
    for b in range(6):
        pairs = {frozenset((int(c), int(r))) for c, r in zip(chosen[b], rejected[b], strict=True)}
        assert len(pairs) == k * (k - 1) // 2


def test_ranking_pairs_of_a_known_ranking():
    chosen, rejected = ranking_pairs(torch.tensor([[2, 0, 1]]))
    assert chosen.tolist() == [[2, 2, 0]] and rejected.tolist() == [[0, 1, 1]]


@pytest.mark.parametrize(("fn", "arg", "error", "match"), [
    (sample_rankings, torch.zeros(5), ValueError, "expected shape"),
    (sample_rankings, torch.zeros(5, 1), ValueError, "k ≥ 2"),
    (sample_rankings, torch.zeros(0, 3), ValueError, "B ≥ 1"),
    (sample_rankings, torch.tensor([[0.0, float("nan")]]), ValueError, "NaN"),
    (ranking_pairs, torch.zeros(3, dtype=torch.int64), ValueError, "k ≥ 2"),
    (ranking_pairs, torch.zeros(3, 1, dtype=torch.int64), ValueError, "k ≥ 2"),
    (ranking_pairs, torch.zeros(3, 2), TypeError, "int64"),
])
def test_bad_rankings_raise_clear_errors(fn, arg, error, match):
    with pytest.raises(error, match=match):
        fn(arg, torch.Generator()) if fn is sample_rankings else fn(arg)


# ---------------------------------------------------------------------------------------
# DPO
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_dpo_loss_is_bradley_terry_on_beta_log_ratios(gen, device):
    """L_DPO = bradley_terry_loss(β(logπ_w − logπ_ref,w), β(logπ_l − logπ_ref,l)); stats are the margin and accuracy."""
    lp_w, lp_l, ref_w, ref_l = (-3 * torch.rand(40, generator=gen, dtype=F64).to(device) for _ in range(4))
    beta = 0.3
    loss, stats = dpo_loss(lp_w, lp_l, ref_w, ref_l, beta)
    assert isinstance(stats, DPOStats) and loss.shape == ()
    margin = beta * ((lp_w - ref_w) - (lp_l - ref_l))
    torch.testing.assert_close(loss, bradley_terry_loss(beta * (lp_w - ref_w), beta * (lp_l - ref_l)), rtol=1e-14, atol=0)
    torch.testing.assert_close(stats.reward_margin, margin.mean())
    torch.testing.assert_close(stats.accuracy, (margin > 0).double().mean())


def test_dpo_loss_at_the_reference_is_log_two_and_ref_is_detached(gen):
    """π = π_ref: every implicit reward is 0, the loss is log 2; no gradient reaches the reference log-probs."""
    ref_w, ref_l = -torch.rand(8, generator=gen, dtype=F64), -torch.rand(8, generator=gen, dtype=F64)
    lp_w, lp_l = ref_w.clone().requires_grad_(True), ref_l.clone().requires_grad_(True)
    ref_w.requires_grad_(True)
    loss, stats = dpo_loss(lp_w, lp_l, ref_w, ref_l, beta=0.1)
    assert float(loss.detach()) == pytest.approx(math.log(2), rel=1e-14)
    assert float(stats.reward_margin) == 0.0 and float(stats.accuracy) == 0.0
    loss.backward()
    assert ref_w.grad is None
    assert lp_w.grad is not None
    torch.testing.assert_close(lp_w.grad, torch.full((8,), -0.1 * 0.5 / 8, dtype=F64))  # −β(1 − σ(0))/B


@pytest.mark.parametrize(("args", "error", "match"), [
    ((torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3), 0.0), ValueError, "beta"),
    ((torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3), "0.1"), TypeError, "beta"),
    ((torch.zeros(3), torch.zeros(4), torch.zeros(3), torch.zeros(4), 0.1), ValueError, "mismatched shapes"),
    ((torch.zeros(3), torch.zeros(3), torch.zeros(2), torch.zeros(2), 0.1), ValueError, "mismatched shapes"),
    ((torch.zeros(0), torch.zeros(0), torch.zeros(0), torch.zeros(0), 0.1), ValueError, "empty"),
    ((torch.zeros(2), torch.zeros(2), torch.tensor([0.0, float("nan")]), torch.zeros(2), 0.1), ValueError, "NaN"),
])
def test_dpo_loss_raises_clear_errors(args, error, match):
    with pytest.raises(error, match=match):
        dpo_loss(*args)
