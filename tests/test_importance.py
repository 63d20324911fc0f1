import math

import pytest
import torch

from rlteach import importance as imp
from tests.conftest import DEVICES


def draws(gen, shape, target, proposal, device="cpu"):
    """x ~ N(proposal) with log p(x), log q(x)."""
    x = proposal[0] + proposal[1] * torch.randn(shape, generator=gen, dtype=torch.float64)
    return x.to(device), imp.gaussian_logpdf(x, *target).to(device), imp.gaussian_logpdf(x, *proposal).to(device)


@pytest.mark.parametrize("device", DEVICES)
def test_ordinary_is_is_unbiased_within_four_standard_errors(gen, device):
    """E_q[w f] = E_p[f]: for f(x) = x², p = N(0.5, 1), E_p[f] = 1.25."""
    x, lp, lq = draws(gen, (200_000,), (0.5, 1.0), (0.0, 1.3), device)
    estimate = imp.ordinary_is(x**2, lp, lq)
    stderr = (imp.importance_weights(lp, lq) * x**2).std() / math.sqrt(x.numel())
    assert abs(estimate.item() - 1.25) < 4 * stderr.item()
    assert estimate.device.type == device


def test_ordinary_is_is_unbiased_at_small_n_too(gen):
    """The mean of 20 000 estimates from n = 4 draws each is E_p[f] within 4 standard errors."""
    x, lp, lq = draws(gen, (20_000, 4), (1.0, 1.0), (0.0, 1.5))
    estimates = imp.ordinary_is(x, lp, lq)
    stderr = estimates.std() / math.sqrt(estimates.numel())
    assert abs(estimates.mean().item() - 1.0) < 4 * stderr.item()


def test_weighted_is_is_biased_at_small_n_and_consistent(gen):
    """With f(x) = x, p = N(1, 1), q = N(0, 1): WIS with n = 2 misses E_p[f] = 1 by far more
    than 4 standard errors; the bias shrinks with n and n = 100 000 lands within 0.02."""
    x2, lp2, lq2 = draws(gen, (20_000, 2), (1.0, 1.0), (0.0, 1.0))
    small = imp.weighted_is(x2, lp2, lq2)
    bias_small = small.mean().item() - 1.0
    assert abs(bias_small) > 4 * (small.std() / math.sqrt(small.numel())).item()
    x64, lp64, lq64 = draws(gen, (20_000, 64), (1.0, 1.0), (0.0, 1.0))
    bias_64 = imp.weighted_is(x64, lp64, lq64).mean().item() - 1.0
    assert abs(bias_64) < abs(bias_small) / 4
    xl, lpl, lql = draws(gen, (100_000,), (1.0, 1.0), (0.0, 1.0))
    assert imp.weighted_is(xl, lpl, lql).item() == pytest.approx(1.0, abs=0.02)


def test_weighted_is_of_one_draw_is_f_of_that_draw(gen):
    x, lp, lq = draws(gen, (5, 1), (2.0, 1.0), (0.0, 1.0))
    torch.testing.assert_close(imp.weighted_is(x, lp, lq), x[:, 0], rtol=0, atol=0)


def test_weighted_is_needs_the_densities_only_up_to_constants(gen):
    x, lp, lq = draws(gen, (100,), (0.5, 1.0), (0.0, 1.0))
    torch.testing.assert_close(imp.weighted_is(x, lp + 3.7, lq - 12.0), imp.weighted_is(x, lp, lq), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_ess_lies_in_one_to_n_and_is_n_for_identical_distributions(gen, device):
    _, lp, lq = draws(gen, (50, 30), (1.0, 0.7), (0.0, 1.0), device)
    ess = imp.effective_sample_size(lp, lq)
    assert ess.shape == (50,)
    assert bool((ess >= 1 - 1e-12).all()) and bool((ess <= 30 + 1e-12).all())
    torch.testing.assert_close(imp.effective_sample_size(lq, lq), torch.full((50,), 30.0, dtype=torch.float64, device=device))


def test_ess_is_one_when_a_single_weight_dominates():
    lp = torch.tensor([0.0, -800.0, -900.0, -1000.0], dtype=torch.float64)
    assert imp.effective_sample_size(lp, torch.zeros(4, dtype=torch.float64)).item() == pytest.approx(1.0, abs=1e-12)


def test_ess_matches_its_naive_formula_where_that_is_safe(gen):
    _, lp, lq = draws(gen, (40,), (0.3, 1.0), (0.0, 1.2))
    w = lp.exp() / lq.exp()
    assert imp.effective_sample_size(lp, lq).item() == pytest.approx((w.sum() ** 2 / (w**2).sum()).item(), rel=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_ratios_of_identical_policies_are_exactly_one(gen, device):
    logp = torch.log_softmax(torch.randn((64, 5), generator=gen), dim=-1).to(device)
    assert torch.equal(imp.importance_weights(logp, logp.clone()), torch.ones_like(logp))


def test_weights_do_not_underflow_for_log_probabilities_near_minus_1000(gen):
    _, lp, lq = draws(gen, (100,), (0.5, 1.0), (0.0, 1.0))
    shifted = imp.importance_weights(lp - 1000.0, lq - 1000.0)
    naive = (lp - 1000.0).exp() / (lq - 1000.0).exp()
    assert bool(naive.isnan().all())  # the naive form is 0/0
    torch.testing.assert_close(shifted, (lp - lq).exp(), rtol=1e-9, atol=0)
    torch.testing.assert_close(imp.effective_sample_size(lp - 1000.0, lq - 1000.0), imp.effective_sample_size(lp, lq), rtol=1e-9, atol=0)
    torch.testing.assert_close(imp.weighted_is(lp, lp - 1000.0, lq - 1000.0), imp.weighted_is(lp, lp, lq), rtol=1e-9, atol=0)


def test_weights_from_probabilities_match_the_log_form(gen):
    p = torch.rand(10, generator=gen, dtype=torch.float64) + 0.01
    q = torch.rand(10, generator=gen, dtype=torch.float64) + 0.01
    torch.testing.assert_close(imp.importance_weights_from_probs(p, q), imp.importance_weights(p.log(), q.log()))


def test_a_target_probability_of_zero_gives_weight_zero():
    w = imp.importance_weights(torch.tensor([float("-inf"), 0.0]), torch.tensor([-1.0, -1.0]))
    torch.testing.assert_close(w, torch.tensor([0.0, math.e]))


@pytest.mark.parametrize("call, match", [
    (lambda: imp.importance_weights(torch.zeros(3), torch.zeros(4)), "mismatched shapes"),
    (lambda: imp.ordinary_is(torch.zeros(3), torch.zeros(3), torch.zeros(2)), "mismatched shapes"),
    (lambda: imp.weighted_is(torch.zeros(2), torch.zeros(3), torch.zeros(3)), "mismatched shapes"),
    (lambda: imp.importance_weights(torch.zeros(2), torch.tensor([0.0, float("-inf")])), "zero probability"),
    (lambda: imp.importance_weights(torch.tensor([float("nan"), 0.0]), torch.zeros(2)), "NaN"),
    (lambda: imp.weighted_is(torch.tensor([1.0, float("nan")]), torch.zeros(2), torch.zeros(2)), "fx contains NaN"),
    (lambda: imp.importance_weights_from_probs(torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.0])), "p_proposal is 0"),
    (lambda: imp.importance_weights_from_probs(torch.tensor([0.5, 0.5]), torch.tensor([-0.5, 1.5])), "p_proposal is negative"),
    (lambda: imp.importance_weights_from_probs(torch.tensor([-0.1, 0.5]), torch.tensor([0.5, 0.5])), "p_target is negative"),
    (lambda: imp.effective_sample_size(torch.zeros(0), torch.zeros(0)), "empty sample"),
    (lambda: imp.per_decision_is(torch.zeros(3), torch.zeros(3), torch.zeros(3), 0.9), r"shape \(T, N\)"),
    (lambda: imp.per_decision_is(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2), 1.5), "gamma"),
])
def test_bad_input_gets_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def bandit_rollouts(gen, T, N, pi, beta):
    """N trajectories of T steps where each step picks one of 3 actions from β; reward = action mean + noise."""
    actions = torch.multinomial(beta, T * N, replacement=True, generator=gen).reshape(T, N)
    means = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    rewards = means[actions] + 0.1 * torch.randn((T, N), generator=gen, dtype=torch.float64)
    return rewards, pi.log()[actions], beta.log()[actions], (pi * means).sum()


def test_per_decision_and_trajectory_is_are_unbiased_and_per_decision_has_less_variance(gen):
    """Both estimate Σ_t γ^t E_π[r] within 4 standard errors; per-decision's variance is smaller."""
    pi = torch.tensor([0.2, 0.2, 0.6], dtype=torch.float64)
    beta = torch.tensor([0.4, 0.3, 0.3], dtype=torch.float64)
    gamma, T = 0.9, 5
    rewards, logp, logp_behavior, mean_reward = bandit_rollouts(gen, T, 100_000, pi, beta)
    truth = (mean_reward * gamma ** torch.arange(T, dtype=torch.float64)).sum().item()
    pdis = imp.per_decision_is(rewards, logp, logp_behavior, gamma)
    tis = imp.trajectory_is(rewards, logp, logp_behavior, gamma)
    for estimates in (pdis, tis):
        assert abs(estimates.mean().item() - truth) < 4 * (estimates.std() / math.sqrt(estimates.numel())).item()
    assert pdis.var().item() < 0.5 * tis.var().item()


def test_per_decision_is_with_equal_policies_is_the_discounted_return(gen):
    rewards = torch.randn((6, 3), generator=gen, dtype=torch.float64)
    logp = torch.log(torch.rand((6, 3), generator=gen, dtype=torch.float64))
    discounts = 0.8 ** torch.arange(6, dtype=torch.float64).unsqueeze(-1)
    expected = (discounts * rewards).sum(dim=0)
    torch.testing.assert_close(imp.per_decision_is(rewards, logp, logp.clone(), 0.8), expected)
    torch.testing.assert_close(imp.trajectory_is(rewards, logp, logp.clone(), 0.8), expected)


def test_per_decision_is_matches_a_loop_over_steps(gen):
    rewards = torch.randn((7, 4), generator=gen, dtype=torch.float64)
    logp = torch.log(torch.rand((7, 4), generator=gen, dtype=torch.float64))
    logp_behavior = torch.log(torch.rand((7, 4), generator=gen, dtype=torch.float64))
    expected = torch.zeros(4, dtype=torch.float64)
    rho = torch.ones(4, dtype=torch.float64)
    for t in range(7):
        rho = rho * (logp[t] - logp_behavior[t]).exp()
        expected += 0.95**t * rho * rewards[t]
    torch.testing.assert_close(imp.per_decision_is(rewards, logp, logp_behavior, 0.95), expected)


@pytest.mark.parametrize("device", DEVICES)
def test_off_policy_pg_loss_has_the_lecture_gradient(gen, device):
    """∇ loss = −(1/B) Σ ρ Q ∇ ln π, and no gradient reaches β or Q."""
    logits = torch.randn((16, 4), generator=gen, dtype=torch.float64).to(device).requires_grad_()
    behavior_logits = torch.randn((16, 4), generator=gen, dtype=torch.float64).to(device).requires_grad_()
    actions = torch.randint(0, 4, (16,), generator=gen).to(device)
    q_values = torch.randn(16, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    logp = torch.log_softmax(logits, -1).gather(1, actions[:, None]).squeeze(1)
    logp_behavior = torch.log_softmax(behavior_logits, -1).gather(1, actions[:, None]).squeeze(1)
    imp.off_policy_pg_loss(logp, logp_behavior, q_values).backward(retain_graph=True)
    rho = (logp - logp_behavior).exp().detach()
    expected = torch.zeros_like(logits)
    for i in range(16):
        (grad_logp,) = torch.autograd.grad(logp[i], logits, retain_graph=True)
        expected -= rho[i] * q_values[i].detach() * grad_logp / 16
    torch.testing.assert_close(logits.grad, expected)
    assert behavior_logits.grad is None and q_values.grad is None


def test_gaussian_logpdf_integrates_to_one_and_has_its_mean():
    x = torch.linspace(-12.0, 14.0, 200_001, dtype=torch.float64)
    density = imp.gaussian_logpdf(x, 1.0, 2.0).exp()
    dx = x[1] - x[0]
    assert (density.sum() * dx).item() == pytest.approx(1.0, abs=1e-9)
    assert (x * density).sum().mul(dx).item() == pytest.approx(1.0, abs=1e-9)


def test_numpy_inputs_are_accepted(rng):
    lp, lq = rng.normal(size=10), rng.normal(size=10)
    torch.testing.assert_close(imp.importance_weights(lp, lq), torch.as_tensor(lp - lq).exp())


def test_self_normalized_weights_sum_to_one_and_are_w_over_its_sum(gen):
    _, lp, lq = draws(gen, (3, 20), (0.5, 1.0), (0.0, 1.0))
    normalized = imp.self_normalized_weights(lp - 1000.0, lq)
    torch.testing.assert_close(normalized.sum(-1), torch.ones(3, dtype=torch.float64))
    w = imp.importance_weights(lp, lq)
    torch.testing.assert_close(normalized, w / w.sum(-1, keepdim=True))
