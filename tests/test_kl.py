import itertools
import math

import pytest
import torch
from torch.distributions import Categorical, Independent, Normal, kl_divergence

from rlteach import kl
from tests.conftest import DEVICES

F64 = torch.float64


def series_k3(log_ratio: torch.Tensor) -> torch.Tensor:
    """e^l − 1 − l by its Taylor series through l¹¹ in float64 (remainder < 1e-16 relative for |l| ≤ 0.1)."""
    ell = log_ratio.double()
    return ell**2 * sum(ell**k / math.factorial(k + 2) for k in range(10))


@pytest.mark.parametrize("device", DEVICES)
def test_categorical_kl_matches_torch_distributions(gen, device):
    """Σ_k p_k(log p_k − log q_k) from logits equals kl_divergence(Categorical, Categorical)."""
    a = (3 * torch.randn((5, 3, 7), generator=gen, dtype=F64)).to(device)
    b = (3 * torch.randn((5, 3, 7), generator=gen, dtype=F64)).to(device)
    out = kl.categorical_kl(a, b)
    assert out.shape == (5, 3) and out.device.type == device
    torch.testing.assert_close(out, kl_divergence(Categorical(logits=a), Categorical(logits=b)), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("device", DEVICES)
def test_gaussian_kl_matches_torch_distributions(gen, device):
    """The closed form for diagonal Gaussians equals kl_divergence of Independent(Normal) over the last dim."""
    mp, lp, mq, lq = (torch.randn((4, 6, 3), generator=gen, dtype=F64).to(device) for _ in range(4))
    out = kl.gaussian_kl(mp, lp, mq, lq)
    expected = kl_divergence(Independent(Normal(mp, lp.exp()), 1), Independent(Normal(mq, lq.exp()), 1))
    assert out.shape == (4, 6) and out.device.type == device
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-14)


def test_kl_of_identical_distributions_is_exactly_zero(gen):
    logits = 5 * torch.randn((10, 4), generator=gen)
    mean, log_std = torch.randn((10, 2), generator=gen), torch.randn((10, 2), generator=gen)
    assert torch.equal(kl.categorical_kl(logits, logits.clone()), torch.zeros(10))
    assert torch.equal(kl.gaussian_kl(mean, log_std, mean, log_std), torch.zeros(10))
    torch.testing.assert_close(kl.categorical_kl(logits, logits + 3.0), torch.zeros(10), rtol=0, atol=1e-6)  # up to a constant


def test_gaussian_kl_keeps_its_precision_for_nearly_equal_widths():
    """Δ = log σ_p − log σ_q = 1e-9 gives KL = ½(e^{2Δ} − 1 − 2Δ) ≈ Δ² = 1e-18, which the textbook
    form log(σ_q/σ_p) + σ_p²/(2σ_q²) − ½ loses to rounding; the two agree where nothing cancels."""
    lq = torch.tensor([0.3], dtype=F64)
    lp = lq + 1e-9
    zero = torch.zeros(1, dtype=F64)
    stable = kl.gaussian_kl(zero, lp, zero, lq)
    assert float(stable) == pytest.approx(1e-18, rel=1e-6)
    naive = (lq - lp) + (2 * lp).exp() / (2 * (2 * lq).exp()) - 0.5
    assert abs(float(naive) - 1e-18) >= 0.5e-18  # wrong by 50% or more: pure rounding
    mp, lp2, mq, lq2 = (torch.tensor([v], dtype=F64) for v in (0.4, -0.2, -1.0, 0.5))
    textbook = (lq2 - lp2) + ((2 * lp2).exp() + (mp - mq) ** 2) / (2 * (2 * lq2).exp()) - 0.5
    torch.testing.assert_close(kl.gaussian_kl(mp, lp2, mq, lq2), textbook.sum(), rtol=1e-13, atol=0)


def test_zero_probabilities_follow_the_conventions():
    """0·log(0/q) = 0 (finite, no NaN in gradients); p > 0 where q = 0 gives +inf."""
    p = torch.tensor([0.0, float("-inf"), 1.0], dtype=F64, requires_grad=True)
    q = torch.tensor([0.5, 0.0, 0.0], dtype=F64, requires_grad=True)
    value = kl.categorical_kl(p, q)
    probs_p = torch.softmax(p.detach(), -1)
    expected = (probs_p[[0, 2]] * (probs_p[[0, 2]].log() - torch.log_softmax(q.detach(), -1)[[0, 2]])).sum()
    torch.testing.assert_close(value, expected)
    value.backward()
    assert p.grad is not None and q.grad is not None
    assert bool(torch.isfinite(p.grad).all()) and bool(torch.isfinite(q.grad).all())
    infinite = kl.categorical_kl(torch.zeros(3), torch.tensor([0.0, float("-inf"), 0.0]))
    assert float(infinite) == math.inf


def test_forward_and_reverse_kl_swap_the_arguments(gen):
    """forward_kl(target, model) = KL(target‖model); reverse_kl(target, model) = KL(model‖target)."""
    t, m = torch.randn((3, 5), generator=gen), torch.randn((3, 5), generator=gen)
    torch.testing.assert_close(kl.forward_kl(t, m), kl.categorical_kl(t, m), rtol=0, atol=0)
    torch.testing.assert_close(kl.reverse_kl(t, m), kl.categorical_kl(m, t), rtol=0, atol=0)
    assert float((kl.forward_kl(t, m) - kl.reverse_kl(t, m)).abs().max()) > 1e-3  # not symmetric


def test_forward_kl_covers_modes_and_reverse_kl_seeks_one():
    """Fit a one-bump model (a discretised Gaussian) to a two-bump target over 41 bins by grid
    search: the forward-KL fit is wide and centred between the modes; the reverse-KL fit is
    narrow and sits on one mode."""
    x = torch.linspace(-5.0, 5.0, 41, dtype=F64)
    target = torch.logsumexp(torch.stack((-0.5 * ((x + 2.5) / 0.6) ** 2, -0.5 * ((x - 2.5) / 0.6) ** 2)), dim=0)
    centers = torch.linspace(-4.0, 4.0, 81, dtype=F64)
    widths = torch.linspace(0.3, 4.0, 38, dtype=F64)
    model = -0.5 * ((x - centers[:, None, None]) / widths[None, :, None]) ** 2  # (centre, width, bin) logits
    target_b = target.expand_as(model)
    forward = kl.forward_kl(target_b, model)
    reverse = kl.reverse_kl(target_b, model)
    fc, fw = divmod(int(forward.argmin()), len(widths))
    rc, rw = divmod(int(reverse.argmin()), len(widths))
    assert abs(float(centers[fc])) <= 0.1 and float(widths[fw]) > 2.0  # covers both modes
    assert abs(abs(float(centers[rc])) - 2.5) <= 0.1 and float(widths[rw]) < 1.0  # seeks one


def categorical_pair(gen, t=1.0, K=6):
    a = torch.randn(K, generator=gen, dtype=F64)
    u = torch.randn(K, generator=gen, dtype=F64)
    return torch.log_softmax(a, -1), torch.log_softmax(a + t * u, -1)


def test_k1_and_k3_are_unbiased_within_four_standard_errors(gen):
    """For x ~ p: mean of −log r and of (r − 1) − log r is KL(p‖q) within 4 standard errors."""
    logp, logq = categorical_pair(gen, t=0.7)
    x = torch.multinomial(logp.exp(), 200_000, replacement=True, generator=gen)
    log_ratio = logq[x] - logp[x]
    exact = float(kl.categorical_kl(logp, logq))
    for estimator in (kl.kl_k1, kl.kl_k3):
        samples = estimator(log_ratio)
        stderr = float(samples.std()) / math.sqrt(samples.numel())
        assert abs(float(samples.mean()) - exact) < 4 * stderr
    assert float(kl.kl_k1(log_ratio).min()) < 0  # k1 is often negative; k3 never is
    assert float(kl.kl_k3(log_ratio).min()) >= 0


def test_k2_and_k3_approach_the_exact_kl_as_the_distributions_get_close(gen):
    """Exact expectations under p (sums over the categories, no sampling): E_p[k3] = KL at every
    distance; E_p[k2]'s relative bias shrinks like the distance; the relative spread of k1 blows up
    as q → p while k3's stays bounded."""
    a = torch.randn(6, generator=gen, dtype=F64)
    u = torch.randn(6, generator=gen, dtype=F64)
    logp = torch.log_softmax(a, -1)
    biases, spread_k1, spread_k3 = [], [], []
    for t in (1.0, 0.3, 0.1, 0.03, 0.01):
        logq = torch.log_softmax(a + t * u, -1)
        p, log_ratio = logp.exp(), logq - logp
        exact = float(kl.categorical_kl(logp, logq))
        expect = {name: float((p * f(log_ratio)).sum()) for name, f in (("k1", kl.kl_k1), ("k2", kl.kl_k2), ("k3", kl.kl_k3))}
        assert expect["k1"] == pytest.approx(exact, rel=1e-10)
        assert expect["k3"] == pytest.approx(exact, rel=1e-10)
        biases.append(abs(expect["k2"] - exact) / exact)
        spread_k1.append(math.sqrt(float((p * kl.kl_k1(log_ratio) ** 2).sum()) - exact**2) / exact)
        spread_k3.append(math.sqrt(float((p * kl.kl_k3(log_ratio) ** 2).sum()) - exact**2) / exact)
    assert all(b1 > b2 for b1, b2 in itertools.pairwise(biases))
    assert biases[-1] < 0.01 and biases[-2] / biases[-1] == pytest.approx(3.0, rel=0.2)  # O(t)
    assert spread_k1[-1] > 100 and max(spread_k3) < 5


def test_k3_is_never_negative():
    """(r − 1) − log r ≥ 0 for log-ratios from −80 to 80 and at ±1e-30, in float32 and float64;
    the naive form with exp goes negative near r = 1."""
    for dtype in (torch.float32, torch.float64):
        ell = torch.cat((torch.linspace(-80.0, 80.0, 20_001, dtype=dtype), torch.tensor([1e-30, -1e-30, 0.0], dtype=dtype)))
        k3 = kl.kl_k3(ell)
        assert bool((k3 >= 0).all()) and bool(torch.isfinite(k3).all())
    ell = torch.tensor([1e-10, -1e-6, 1e-4], dtype=torch.float32)
    assert float(((ell.exp() - 1) - ell).min()) < 0


def test_k3_is_accurate_near_ratio_one_in_float32():
    """At float32 log-ratios ±1e-10 … ±1e-1, k3 matches the float64 Taylor expansion
    l²/2 + l³/6 + … to float32 precision (rtol 1e-6), where expm1(l) − l returns 0 at 1e-10."""
    mags = torch.logspace(-10, -1, 40, dtype=F64)
    ell = torch.cat((mags, -mags)).float()
    torch.testing.assert_close(kl.kl_k3(ell).double(), series_k3(ell), rtol=1e-6, atol=0)
    torch.testing.assert_close(kl.kl_k3(ell.double()), series_k3(ell), rtol=1e-13, atol=0)
    assert float(torch.expm1(ell[:1]) - ell[:1]) == 0.0  # the cancellation the series avoids
    assert float(kl.kl_k3(torch.zeros(1))) == 0.0


def test_k3_matches_expm1_away_from_zero_and_is_continuous_at_the_cutoff():
    """For |l| ≥ ½ k3 is expm1(l) − l (math module, float64); across l = ±½ both branches agree to 1e-15."""
    ell = torch.cat((torch.linspace(-30.0, -0.5, 101, dtype=F64), torch.linspace(0.5, 30.0, 101, dtype=F64)))
    expected = torch.tensor([math.expm1(v) - v for v in ell.tolist()], dtype=F64)
    torch.testing.assert_close(kl.kl_k3(ell), expected, rtol=1e-14, atol=0)
    torch.testing.assert_close(kl.kl_k3(ell), (ell.exp() - 1) - ell, rtol=1e-12, atol=0)  # the naive form agrees here
    for edge in (0.5, -0.5):
        below = torch.tensor([math.nextafter(edge, 0.0)], dtype=F64)
        assert float(kl.kl_k3(below)) == pytest.approx(math.expm1(edge) - edge, rel=1e-14)


def test_k2_is_half_the_squared_log_ratio_and_k1_its_negative(gen):
    ell = torch.randn(20, generator=gen, dtype=F64)
    torch.testing.assert_close(kl.kl_k2(ell), 0.5 * ell**2, rtol=0, atol=0)
    torch.testing.assert_close(kl.kl_k1(ell), -ell, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_estimators_keep_the_device_and_gradient(gen, device):
    """d k3/d l = e^l − 1 (through the series and the expm1 branch alike)."""
    ell = torch.tensor([-2.0, -0.3, 0.0, 1e-6, 0.4, 3.0], dtype=F64, device=device, requires_grad=True)
    kl.kl_k3(ell).sum().backward()
    assert ell.grad is not None and ell.grad.device.type == device
    torch.testing.assert_close(ell.grad, torch.expm1(ell.detach()), rtol=1e-12, atol=1e-15)


def test_mean_and_max_kl_over_states(gen):
    """mean = E_s KL, max = max_s KL ≥ mean, argmax names the state that moved most."""
    logits_old = torch.randn((8, 4), generator=gen, dtype=F64)
    logits = logits_old + 0.05 * torch.randn((8, 4), generator=gen, dtype=F64)
    logits[5] += torch.tensor([3.0, 0.0, 0.0, 0.0], dtype=F64)  # one state moves a lot
    per_state = kl.categorical_kl(logits_old, logits)
    summary = kl.kl_over_states(per_state)
    torch.testing.assert_close(summary.mean, per_state.mean(), rtol=0, atol=0)
    assert int(summary.argmax) == 5 and float(summary.max) == float(per_state[5])
    assert float(summary.max) > 4 * float(summary.mean)
    torch.testing.assert_close(kl.mean_categorical_kl(logits_old, logits), per_state.mean(), rtol=0, atol=0)
    two_d = kl.kl_over_states(per_state.reshape(2, 4))
    assert int(two_d.argmax) == 5  # flat index over (T, N)


def test_mean_categorical_kl_differentiates_only_the_new_policy(gen):
    """Gradient flows into ``logits`` and not into ``logits_old``; at logits = logits_old it is 0."""
    logits_old = torch.randn((6, 3), generator=gen, dtype=F64, requires_grad=True)
    logits = logits_old.detach().clone().requires_grad_(True)
    kl.mean_categorical_kl(logits_old, logits).backward()
    assert logits_old.grad is None
    torch.testing.assert_close(logits.grad, torch.zeros_like(logits), rtol=0, atol=1e-15)


def small_policy(gen, num_states=12, obs_dim=5, num_actions=4):
    obs = torch.randn((num_states, obs_dim), generator=gen, dtype=F64)
    theta = 0.5 * torch.randn(obs_dim * num_actions, generator=gen, dtype=F64)
    return obs, theta, num_actions


def test_fisher_is_the_hessian_of_the_mean_kl(gen):
    """E_s Σ_a π ∇logπ ∇logπᵀ equals ∇²_θ' D̄_KL(θ, θ') at θ' = θ (torch.autograd.functional.hessian);
    it is symmetric PSD and, for the linear softmax policy, singular along u ⊗ 1."""
    obs, theta, K = small_policy(gen)
    fisher = kl.categorical_fisher(lambda th: kl.linear_softmax_logits(th, obs, K), theta)
    logits_old = kl.linear_softmax_logits(theta, obs, K)
    hessian = torch.autograd.functional.hessian(
        lambda th: kl.mean_categorical_kl(logits_old, kl.linear_softmax_logits(th, obs, K)), theta)
    assert fisher.shape == (20, 20)
    torch.testing.assert_close(fisher, hessian, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fisher, fisher.T, rtol=0, atol=1e-14)
    assert float(torch.linalg.eigvalsh(fisher).min()) >= -1e-12
    shift = torch.outer(torch.randn(5, generator=gen, dtype=F64), torch.ones(K, dtype=F64)).reshape(-1)
    torch.testing.assert_close(fisher @ shift, torch.zeros(20, dtype=F64), rtol=0, atol=1e-12)


def test_quadratic_kl_error_shrinks_like_the_cube_of_the_step(gen):
    """KL(θ‖θ+tu) − ½t²uᵀFu = O(t³): the log-log slope over t ∈ [1e-3, 1e-1] is 3 (± 0.15),
    and the quadratic form is the KL to 1% at t = 1e-2."""
    obs, theta, K = small_policy(gen)
    fisher = kl.categorical_fisher(lambda th: kl.linear_softmax_logits(th, obs, K), theta)
    u = torch.randn(theta.shape, generator=gen, dtype=F64)
    u = u / u.norm()
    logits_old = kl.linear_softmax_logits(theta, obs, K)
    scales = torch.logspace(-3, -1, 9, dtype=F64)
    errors, exact = [], []
    for t in scales.tolist():
        true_kl = float(kl.mean_categorical_kl(logits_old, kl.linear_softmax_logits(theta + t * u, obs, K)))
        exact.append(true_kl)
        errors.append(abs(true_kl - float(kl.kl_quadratic(fisher, t * u))))
    slope = torch.linalg.lstsq(torch.stack((scales.log(), torch.ones(9, dtype=F64)), dim=1),
                               torch.tensor(errors, dtype=F64).log().unsqueeze(1)).solution[0, 0]
    assert float(slope) == pytest.approx(3.0, abs=0.15)
    assert float(kl.kl_quadratic(fisher, 1e-2 * u)) == pytest.approx(exact[4], rel=0.01)


def test_kl_quadratic_broadcasts_over_a_batch_of_steps(gen):
    A = torch.randn((4, 4), generator=gen, dtype=F64)
    fisher = A @ A.T
    deltas = torch.randn((3, 4), generator=gen, dtype=F64)
    expected = torch.stack([0.5 * d @ fisher @ d for d in deltas])
    torch.testing.assert_close(kl.kl_quadratic(fisher, deltas), expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("call, match", [
    (lambda: kl.categorical_kl(torch.zeros(3, 4), torch.zeros(3, 5)), "mismatched shapes"),
    (lambda: kl.categorical_kl(torch.tensor([0.0, float("nan")]), torch.zeros(2)), "logits_p contains NaN"),
    (lambda: kl.categorical_kl(torch.zeros(2), torch.tensor([float("inf"), 0.0])), r"\+inf"),
    (lambda: kl.categorical_kl(torch.zeros(3, 0), torch.zeros(3, 0)), r"shape \(\.\.\., K\)"),
    (lambda: kl.categorical_kl(torch.full((2,), float("-inf")), torch.zeros(2)), "all -inf"),
    (lambda: kl.gaussian_kl(torch.zeros(2), torch.zeros(2), torch.zeros(3), torch.zeros(2)), "mismatched shapes"),
    (lambda: kl.gaussian_kl(torch.zeros(2), torch.tensor([0.0, float("nan")]), torch.zeros(2), torch.zeros(2)), "log_std_p contains NaN"),
    (lambda: kl.kl_k3(torch.tensor([0.1, float("nan")])), "log_ratio contains NaN"),
    (lambda: kl.kl_over_states(torch.zeros(0)), "empty"),
    (lambda: kl.linear_softmax_logits(torch.zeros(7), torch.zeros(3, 2), 4), "mismatched shapes"),
    (lambda: kl.kl_quadratic(torch.eye(3), torch.zeros(4)), "mismatched shapes"),
])
def test_bad_input_gets_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_gaussian_mixture_logits_are_the_mixture_density_up_to_a_constant():
    """softmax(logits) is the mixture Σ_j w_j N(x; μ_j, σ_j²) normalised over the grid; one component
    gives −½((x − μ)/σ)² up to a constant."""
    x = torch.linspace(-5.0, 5.0, 101, dtype=F64)
    means, stds, weights = (torch.tensor(v, dtype=F64) for v in ([-1.0, 2.0], [0.5, 1.5], [3.0, 1.0]))
    density = sum(w / 4.0 * torch.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
                  for m, s, w in zip(means, stds, weights))
    logits = kl.gaussian_mixture_logits(x, means, stds, weights)
    torch.testing.assert_close(torch.softmax(logits, -1), density / density.sum(), rtol=1e-12, atol=0)
    single = kl.gaussian_mixture_logits(x, means[:1], stds[:1])
    torch.testing.assert_close(single - single.max(), -0.5 * ((x - means[0]) / stds[0]) ** 2 - float((-0.5 * ((x - means[0]) / stds[0]) ** 2).max()),
                               rtol=0, atol=1e-12)


@pytest.mark.slow
def test_forward_fit_matches_moments_and_reverse_fit_sits_on_one_mode():
    """Target ½N(−d, σ²) + ½N(d, σ²) with d = 2.5, σ = 0.6 on a fine grid. The forward-KL fit is moment
    matching: mean 0, sd √(σ² + d²) (to the search grid's spacing). The reverse-KL fit is N(±d, σ²) with
    KL(q‖p) = log 2 (it covers one mode and sees half the target's mass there). The KLs returned are the
    minimum of the grid of KLs, each of which equals forward_kl/reverse_kl of that model."""
    d, sigma = 2.5, 0.6
    x = torch.linspace(-9.0, 9.0, 721, dtype=F64)
    target = kl.gaussian_mixture_logits(x, torch.tensor([-d, d], dtype=F64), torch.tensor([sigma, sigma], dtype=F64))
    means, stds = torch.linspace(-4.0, 4.0, 161, dtype=F64), torch.linspace(0.3, 4.0, 371, dtype=F64)
    forward = kl.fit_gaussian_by_kl(x, target, means, stds, "forward")
    reverse = kl.fit_gaussian_by_kl(x, target, means, stds, "reverse")
    assert forward.mean == pytest.approx(0.0, abs=1e-9) and forward.std == pytest.approx(math.hypot(sigma, d), abs=0.011)
    assert abs(reverse.mean) == pytest.approx(d, abs=1e-9) and reverse.std == pytest.approx(sigma, abs=0.011)
    assert reverse.kl == pytest.approx(math.log(2.0), abs=1e-4)
    assert forward.kl == float(forward.kls.min()) and reverse.kl == float(reverse.kls.min())
    model = -0.5 * ((x - forward.mean) / forward.std) ** 2
    torch.testing.assert_close(forward.logits, model, rtol=0, atol=1e-12)
    assert forward.kl == pytest.approx(float(kl.forward_kl(target, model)), rel=1e-12)


def test_a_fit_to_a_gaussian_target_recovers_it_in_both_directions():
    x = torch.linspace(-8.0, 8.0, 401, dtype=F64)
    target = kl.gaussian_mixture_logits(x, torch.tensor([1.0], dtype=F64), torch.tensor([1.5], dtype=F64))
    means, stds = torch.linspace(-2.0, 2.0, 41, dtype=F64), torch.linspace(0.5, 3.0, 26, dtype=F64)
    for direction in ("forward", "reverse"):
        fit = kl.fit_gaussian_by_kl(x, target, means, stds, direction)
        assert (fit.mean, fit.std) == pytest.approx((1.0, 1.5), abs=1e-9) and fit.kl == pytest.approx(0.0, abs=1e-12)


def test_simplex_directions_are_unit_vectors_along_the_simplex():
    u = kl.simplex_directions(12)
    assert u.shape == (12, 3)
    torch.testing.assert_close(u.sum(-1), torch.zeros(12, dtype=F64), rtol=0, atol=1e-15)
    torch.testing.assert_close(u.norm(dim=-1), torch.ones(12, dtype=F64), rtol=0, atol=1e-15)
    torch.testing.assert_close(u[0], torch.tensor([1.0, -1.0, 0.0], dtype=F64) / math.sqrt(2), rtol=0, atol=1e-15)
    torch.testing.assert_close(u[3], torch.tensor([1.0, 1.0, -2.0], dtype=F64) / math.sqrt(6), rtol=0, atol=1e-15)


@pytest.mark.parametrize("probs", [(1 / 3, 1 / 3, 1 / 3), (0.6, 0.3, 0.1), (0.9, 0.08, 0.02)])
@pytest.mark.parametrize("max_kl", [1e-3, 0.05, 0.5])
def test_the_kl_ball_boundary_has_kl_delta_and_stays_inside_the_simplex(probs, max_kl):
    """Each boundary point q is a distribution with every q_i > 0 and KL(π‖q) = δ: to 1e-9 relative, or to
    1e-5 where the point comes within 1e-6 of a face (q_i = π_i + t u_i then cancels to a few digits)."""
    p = torch.tensor(probs, dtype=F64)
    q = kl.kl_ball_boundary(p, max_kl, kl.simplex_directions(90))
    assert bool((q > 0).all())
    torch.testing.assert_close(q.sum(-1), torch.ones(90, dtype=F64), rtol=0, atol=1e-14)
    torch.testing.assert_close(kl.categorical_kl(p.log().expand(90, 3), q.log()), torch.full((90,), max_kl, dtype=F64),
                               rtol=1e-9 if float(q.min()) > 1e-6 else 1e-5, atol=0)


def test_the_quadratic_ball_approaches_the_kl_ball_as_delta_shrinks_and_leaves_the_simplex_when_it_grows():
    """‖q_F − π‖/‖q_KL − π‖ → 1 as δ → 0 (the error shrinks like √δ); at π = (0.9, 0.08, 0.02), δ = 0.1
    the ellipse ½‖q − π‖²_F = δ has points with a negative probability while the KL ball has none;
    and the ellipse is exactly where ½ (q − π)ᵀ diag(1/π)(q − π) = δ."""
    p = torch.tensor([0.6, 0.3, 0.1], dtype=F64)
    u = kl.simplex_directions(60)
    errors = []
    for delta in (1e-2, 1e-4, 1e-6):
        r_kl = (kl.kl_ball_boundary(p, delta, u) - p).norm(dim=-1)
        r_f = (kl.fisher_ball_boundary(p, delta, u) - p).norm(dim=-1)
        errors.append(float((r_f / r_kl - 1).abs().max()))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 2e-3
    assert errors[1] / errors[2] == pytest.approx(10.0, rel=0.2)
    edge = torch.tensor([0.9, 0.08, 0.02], dtype=F64)
    ellipse = kl.fisher_ball_boundary(edge, 0.1, u)
    assert float(ellipse.min()) < 0 and float(kl.kl_ball_boundary(edge, 0.1, u).min()) > 0
    torch.testing.assert_close(kl.kl_quadratic(torch.diag(1 / edge), ellipse - edge), torch.full((60,), 0.1, dtype=F64),
                               rtol=1e-12, atol=0)


@pytest.mark.parametrize("call, match", [
    (lambda: kl.kl_ball_boundary(torch.tensor([0.5, 0.6, -0.1]), 0.1, kl.simplex_directions(4)), "probabilities > 0"),
    (lambda: kl.kl_ball_boundary(torch.tensor([0.5, 0.5, 0.0]), 0.1, kl.simplex_directions(4)), "probabilities > 0"),
    (lambda: kl.kl_ball_boundary(torch.tensor([0.5, 0.5]), 0.1, kl.simplex_directions(4)), "mismatched shapes"),
    (lambda: kl.kl_ball_boundary(torch.full((3,), 1 / 3), 0.0, kl.simplex_directions(4)), "max_kl"),
    (lambda: kl.fisher_ball_boundary(torch.full((3,), 1 / 3), 0.1, torch.ones(2, 3)), "sum to 0"),
    (lambda: kl.fit_gaussian_by_kl(torch.zeros(3), torch.zeros(3), torch.zeros(2), torch.ones(2), "both"), "direction"),
    (lambda: kl.fit_gaussian_by_kl(torch.zeros(3), torch.zeros(4), torch.zeros(2), torch.ones(2), "forward"), "mismatched"),
    (lambda: kl.gaussian_mixture_logits(torch.zeros(3), torch.zeros(2), torch.tensor([1.0, 0.0])), "stds must be > 0"),
])
def test_bad_input_to_the_fitting_and_ball_helpers_gets_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
