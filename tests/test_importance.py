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


def test_per_decision_is_can_have_more_variance_than_trajectory_is(gen):
    """A deposit of 10 paid at t = 0 and refunded with the last reward at T − 1: the return is the
    last reward alone, which trajectory IS weights once; per-decision IS weights the deposit by ρ₀ and
    the refund by ρ_{0:T−1}, which no longer cancel. Both stay unbiased; per-decision's sd is > 3× larger."""
    pi = torch.tensor([0.2, 0.2, 0.6], dtype=torch.float64)
    beta = torch.full((3,), 1 / 3, dtype=torch.float64)
    T, N = 8, 20_000
    rewards, logp, logp_behavior, mean_reward = bandit_rollouts(gen, T, N, pi, beta)
    deposit = torch.zeros_like(rewards)
    deposit[0], deposit[-1] = -10.0, 10.0 + rewards[-1]
    pdis = imp.per_decision_is(deposit, logp, logp_behavior, 1.0)
    tis = imp.trajectory_is(deposit, logp, logp_behavior, 1.0)
    for estimates in (pdis, tis):
        assert abs(estimates.mean().item() - mean_reward.item()) < 4 * estimates.std().item() / math.sqrt(N)
    assert pdis.std().item() > 3 * tis.std().item()


# ---------------------------------------------------------------- Gaussian theory and summaries


def quadrature_moments(mp, sp, mq, sq, upper=math.inf):
    """E_q[w² x^k 1{x ≤ upper}], k = 0, 1, 2, by the trapezoid rule on a fine grid (an independent reference)."""
    x = torch.linspace(-40.0, min(upper, 40.0), 200_001, dtype=torch.float64)  # the grid ends at upper
    w2q = (2 * imp.gaussian_logpdf(x, mp, sp) - imp.gaussian_logpdf(x, mq, sq)).exp()  # p²/q
    return [float(torch.trapezoid(w2q * x**k, x)) for k in range(3)]


@pytest.mark.parametrize("case", [(1.0, 1.0, 0.0, 1.5, math.inf), (0.5, 2.0, -1.0, 1.8, 1.0), (3.0, 1.0, 0.0, 1.0, 4.3)])
def test_gaussian_weight_moments_match_quadrature(case):
    """The closed form of E_q[w² x^k] (k = 0, 1, 2), full and restricted to x ≤ upper, equals the trapezoid rule."""
    expected = quadrature_moments(*case)
    np_moments = imp.gaussian_weight_moments(*case)
    for got, want in zip(np_moments, expected):
        assert got == pytest.approx(want, rel=1e-7, abs=1e-10)


def test_gaussian_weight_moments_for_equal_widths_and_for_a_too_narrow_proposal():
    """σ_p = σ_q = 1, shift Δ: E_q[w²] = e^{Δ²}, E_q[w²x²] = e^{Δ²}(1 + 4Δ²); σ_q ≤ σ_p/√2: infinite."""
    for shift in (0.5, 1.0, 3.0):
        w2, _, w2x2 = imp.gaussian_weight_moments(shift, 1.0, 0.0, 1.0)
        assert w2 == pytest.approx(math.exp(shift**2), rel=1e-12)
        assert w2x2 == pytest.approx(math.exp(shift**2) * (1 + 4 * shift**2), rel=1e-12)
    assert imp.gaussian_weight_moments(0.0, 1.0, 0.0, 1.0 / math.sqrt(2)).w2 == math.inf  # the boundary itself
    assert imp.gaussian_weight_moments(0.0, 1.0, 0.0, 0.72).w2 < math.inf
    theory = imp.gaussian_is_theory(1.0, 1.0, 0.0, 0.3, n=100)
    assert theory.ordinary_sd == math.inf and theory.n_eff == 0.0
    theory = imp.gaussian_is_theory(3.0, 1.0, 0.0, 1.0, n=100)
    assert theory.n_eff == pytest.approx(100 / math.exp(9.0), rel=1e-12)
    assert theory.ordinary_sd == pytest.approx(math.sqrt((math.exp(9.0) * 37 - 9) / 100), rel=1e-12)
    assert theory.weighted_bias == pytest.approx(-3 * math.exp(9.0) / 100, rel=1e-12)


def test_gaussian_is_theory_predicts_the_spread_and_the_weighted_bias():
    """Over 10 000 repeats of n = 50 (p = N(1, 1), q = N(0, 1.2²)), the ordinary sd is within 8% of theory,
    the ordinary mean within 4 se of the truth, and the weighted bias within 30% of −E_q[w²(x − μ)]/n."""
    theory = imp.gaussian_is_theory(1.0, 1.0, 0.0, 1.2, n=50)
    result = imp.gaussian_is_experiment(1.0, 1.0, 0.0, 1.2, n=50, repeats=10_000, seed=3)
    ordinary = imp.estimator_summary(result.ordinary, 1.0)
    weighted = imp.estimator_summary(result.weighted, 1.0)
    assert ordinary.sd == pytest.approx(theory.ordinary_sd, rel=0.08)
    assert abs(ordinary.bias) < 4 * ordinary.stderr
    assert weighted.bias == pytest.approx(theory.weighted_bias, rel=0.3)
    assert abs(weighted.bias) > 4 * weighted.stderr  # a visible bias


def test_estimator_summary_by_hand():
    """Estimates 1, 2, 3, 6 of a truth 2: mean 3, sd √(14/3), bias 1, RMSE √(1 + 0 + 1 + 16)/2."""
    s = imp.estimator_summary(torch.tensor([1.0, 2.0, 3.0, 6.0]), 2.0)
    assert (s.mean, s.bias) == (3.0, 1.0)
    assert s.sd == pytest.approx(math.sqrt(14 / 3), rel=1e-12)
    assert s.stderr == pytest.approx(math.sqrt(14 / 3) / 2, rel=1e-12)
    assert s.rmse == pytest.approx(math.sqrt(18 / 4), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2 repeats"):
        imp.estimator_summary(torch.tensor([1.0]), 0.0)


# ------------------------------------------------------------ optimal proposal, rare events


def test_the_optimal_proposal_gives_a_zero_variance_estimate_of_a_rare_event(gen):
    """f = 1{x > 4}, p = N(0, 1): draws of q* = p restricted to x > 4 all exceed 4, their mean is
    φ(4)/Φ(−4) within 4 se, and every w f equals P(x > 4) = Φ(−4) to rounding."""
    t = 4.0
    tail = torch.special.ndtr(torch.tensor(-t, dtype=torch.float64))
    x = imp.gaussian_tail_draws(t, (20_000,), gen)
    assert bool((x > t).all())
    mean = math.exp(-t * t / 2) / math.sqrt(2 * math.pi) / tail.item()  # E[x | x > t] = φ(t)/Φ(−t)
    assert abs(x.mean().item() - mean) < 4 * x.std().item() / math.sqrt(x.numel())
    fx = (x > t).to(torch.float64)
    logp = imp.gaussian_logpdf(x, 0.0, 1.0)
    logq = imp.optimal_proposal_logpdf(fx, logp, tail.log().item())
    w_f = imp.importance_weights(logp, logq) * fx
    torch.testing.assert_close(w_f, torch.full_like(w_f, tail.item()), rtol=1e-12, atol=0)
    assert imp.optimal_proposal_logpdf(torch.zeros(2), torch.zeros(2), 0.0).eq(-math.inf).all()


def test_optimal_proposal_is_normalized_on_a_grid():
    """∫ |f| p / E_p|f| = 1 for f(x) = x² − 1 under N(0, 1), where E_p|f| is found by quadrature."""
    x = torch.linspace(-12.0, 12.0, 240_001, dtype=torch.float64)
    dx = (x[1] - x[0]).item()
    logp, fx = imp.gaussian_logpdf(x, 0.0, 1.0), x**2 - 1
    norm = float((fx.abs() * logp.exp()).sum() * dx)
    density = imp.optimal_proposal_logpdf(fx, logp, math.log(norm)).exp()
    assert float(density.sum() * dx) == pytest.approx(1.0, rel=1e-9)


# ------------------------------------------------------------------- running estimates, Ex. 5.5


def test_running_estimates_are_the_estimates_of_each_prefix(gen):
    x, lp, lq = draws(gen, (3, 40), (1.0, 1.0), (0.0, 1.3))
    run = imp.running_estimates(x, lp, lq)
    assert run.ordinary.shape == run.weighted.shape == (3, 40)
    for k in (1, 7, 40):
        torch.testing.assert_close(run.ordinary[:, k - 1], imp.ordinary_is(x[:, :k], lp[:, :k], lq[:, :k]))
        torch.testing.assert_close(run.weighted[:, k - 1], imp.weighted_is(x[:, :k], lp[:, :k], lq[:, :k]))


def test_running_weighted_estimate_is_nan_before_the_first_nonzero_weight():
    lp = torch.tensor([-math.inf, -math.inf, 0.0, 0.0], dtype=torch.float64)
    run = imp.running_estimates(torch.tensor([5.0, 5.0, 1.0, 3.0], dtype=torch.float64), lp, torch.zeros(4, dtype=torch.float64))
    assert bool(run.weighted[:2].isnan().all())
    torch.testing.assert_close(run.weighted[2:], torch.tensor([1.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(run.ordinary, torch.tensor([0.0, 0.0, 1 / 3, 1.0], dtype=torch.float64))


def test_one_state_episodes_follow_sutton_and_barto_example_5_5():
    """K ~ Geometric(0.55), the left exit ends 1/11 of the episodes (±4 se); the ratio is 2^K there and 0
    elsewhere; the second moment of ρG over episodes of at most 4 steps is 0.2 Σ_{k≤4} 1.8^{k−1} (±4 se);
    weighted IS is exactly 1 once an episode has a nonzero ratio."""
    ep = imp.one_state_episodes((100_000,), seed=4)
    n = ep.steps.numel()
    for value, p in (((ep.steps == 1).double().mean().item(), 0.55), (ep.returns.mean().item(), 1 / 11)):
        assert abs(value - p) < 4 * math.sqrt(p * (1 - p) / n)
    rho = imp.importance_weights(ep.logp_target, ep.logp_behavior)
    torch.testing.assert_close(rho, torch.where(ep.returns > 0, 2.0**ep.steps, torch.zeros_like(rho)))
    sq = (rho * ep.returns) ** 2 * (ep.steps <= 4)
    expected = 0.2 * sum(1.8 ** (k - 1) for k in range(1, 5))
    assert abs(sq.mean().item() - expected) < 4 * sq.std().item() / math.sqrt(n)
    assert imp.weighted_is(ep.returns, ep.logp_target, ep.logp_behavior).item() == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------- truncated and clipped ratios


def test_truncated_ratio_is_the_minimum_and_never_overflows():
    log_ratio = torch.tensor([-1.0, 0.0, 0.5, 2.0, 1000.0], dtype=torch.float64)
    torch.testing.assert_close(imp.truncated_ratio(log_ratio, 1.0), torch.tensor([math.exp(-1), 1, 1, 1, 1.0], dtype=torch.float64))
    torch.testing.assert_close(imp.truncated_ratio(log_ratio[:4], math.inf), log_ratio[:4].exp())
    assert imp.truncated_ratio(log_ratio, 3.0)[-1].item() == pytest.approx(3.0, rel=1e-15)
    with pytest.raises(ValueError, match="must be > 0"):
        imp.truncated_ratio(log_ratio, 0.0)


def test_truncated_is_trades_bias_for_a_bounded_variance(gen):
    """c = ∞ is ordinary IS; over 2000 repeats (p = N(2, 1), q = N(0, 1), n = 100) the sd falls and the
    bias grows (beyond 4 se) as c goes from 100 to 3, and every estimate with c = 3 is at most 3 max|f|."""
    x, lp, lq = draws(gen, (2000, 100), (2.0, 1.0), (0.0, 1.0))
    torch.testing.assert_close(imp.truncated_is(x, lp, lq, math.inf), imp.ordinary_is(x, lp, lq))
    loose, tight = (imp.estimator_summary(imp.truncated_is(x, lp, lq, c), 2.0) for c in (100.0, 3.0))
    assert tight.sd < loose.sd / 2
    assert tight.bias < -4 * tight.stderr and abs(tight.bias) > abs(loose.bias)
    assert bool((imp.truncated_is(x, lp, lq, 3.0).abs() <= 3.0 * x.abs().amax(-1)).all())


def test_clipped_ratio_and_the_clipped_objective_by_hand():
    """ε = 0.2: clip(r) ∈ [0.8, 1.2]; min(rÂ, clip(r)Â) is flat above 1.2 for Â > 0 and below 0.8 for Â < 0."""
    r = torch.tensor([0.5, 0.9, 1.0, 1.1, 1.5], dtype=torch.float64)
    torch.testing.assert_close(imp.clipped_ratio(r.log(), 0.2), torch.tensor([0.8, 0.9, 1.0, 1.1, 1.2], dtype=torch.float64))
    torch.testing.assert_close(imp.clipped_objective(r, torch.ones(5, dtype=torch.float64), 0.2),
                               torch.tensor([0.5, 0.9, 1.0, 1.1, 1.2], dtype=torch.float64))
    torch.testing.assert_close(imp.clipped_objective(r, -torch.ones(5, dtype=torch.float64), 0.2),
                               torch.tensor([-0.8, -0.9, -1.0, -1.1, -1.5], dtype=torch.float64))
    ratio = torch.tensor([1.5, 0.5, 1.5, 0.5], dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64)
    imp.clipped_objective(ratio, adv, 0.2).sum().backward()
    torch.testing.assert_close(ratio.grad, torch.tensor([0.0, 0.0, -1.0, 1.0], dtype=torch.float64))  # flat where clipped
    with pytest.raises(ValueError, match="ε lies in"):
        imp.clipped_ratio(r.log(), 1.5)
