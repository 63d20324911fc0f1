r"""Importance sampling: estimate an expectation under p from samples drawn from q.

.. math:: \mathbb E_{x\sim p}[f(x)] = \int f(x)\,\frac{p(x)}{q(x)}\,q(x)\,dx
          = \mathbb E_{x\sim q}\!\left[\frac{p(x)}{q(x)} f(x)\right]

Every function takes log-probabilities (``logp_target`` = log p(x_i), ``logp_proposal`` =
log q(x_i)) and works in log space, so that densities of 1e-400 do not become 0/0.
Samples lie along the last dimension, shape ``(..., n)``; leading dimensions are a batch
of independent estimates. Trajectory estimators are time-major, shape ``(T, N)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from rlteach._validate import as_tensor, finite_above, no_nan, non_empty, same_shape

ZERO_PROPOSAL = "the proposal gives this sample zero probability, so it could not have been drawn from it"


def _log_probs(logp_target: Tensor, logp_proposal: Tensor) -> tuple[Tensor, Tensor]:
    logp_target = as_tensor("logp_target", logp_target)
    logp_proposal = as_tensor("logp_proposal", logp_proposal)
    same_shape(logp_target=logp_target, logp_proposal=logp_proposal)
    no_nan(logp_target=logp_target, logp_proposal=logp_proposal)
    finite_above("logp_proposal", logp_proposal, ZERO_PROPOSAL)
    if bool((logp_target == float("inf")).any()):
        raise ValueError("logp_target contains +inf: a log-probability must be finite or -inf")
    return logp_target, logp_proposal


def _samples(fx: Tensor, logp_target: Tensor, logp_proposal: Tensor) -> tuple[Tensor, Tensor]:
    fx = as_tensor("fx", fx)
    logp_target, logp_proposal = _log_probs(logp_target, logp_proposal)
    same_shape(fx=fx, logp_target=logp_target)
    no_nan(fx=fx)
    non_empty("fx", fx)
    return fx, logp_target - logp_proposal


def log_importance_weights(logp_target: Tensor, logp_proposal: Tensor) -> Tensor:
    r"""Log importance weights :math:`\log w_i = \log p(x_i) - \log q(x_i)`.

    Parameters
    ----------
    logp_target, logp_proposal : Tensor, shape (...)
        log p(x_i) and log q(x_i) at the same samples.

    Returns
    -------
    Tensor, shape (...)
        ``-inf`` where the target gives the sample zero probability.

    Raises
    ------
    ValueError
        Mismatched shapes, NaN, or a sample the proposal gives zero probability.
    """
    logp_target, logp_proposal = _log_probs(logp_target, logp_proposal)
    return logp_target - logp_proposal  # log p − log q


def importance_weights(logp_target: Tensor, logp_proposal: Tensor) -> Tensor:
    r"""Importance weights :math:`w_i = p(x_i)/q(x_i) = \exp(\log p(x_i) - \log q(x_i))`.

    The difference is taken before the exponential: ``exp(logp)/exp(logq)`` is 0/0 = NaN
    for log-probabilities near -1000, while ``exp(logp - logq)`` is exact.
    Identical log-probabilities give weights of exactly 1.

    Parameters
    ----------
    logp_target, logp_proposal : Tensor, shape (...)

    Returns
    -------
    Tensor, shape (...)
    """
    logp_target, logp_proposal = _log_probs(logp_target, logp_proposal)
    return (logp_target - logp_proposal).exp()  # w = e^{log p − log q}


def importance_weights_from_probs(p_target: Tensor, p_proposal: Tensor) -> Tensor:
    r"""Importance weights :math:`w_i = p(x_i)/q(x_i)` from probabilities (not logs).

    Raises
    ------
    ValueError
        Mismatched shapes, NaN, a negative probability, or a zero proposal probability.
    """
    p_target = as_tensor("p_target", p_target)
    p_proposal = as_tensor("p_proposal", p_proposal)
    same_shape(p_target=p_target, p_proposal=p_proposal)
    no_nan(p_target=p_target, p_proposal=p_proposal)
    for name, p in (("p_target", p_target), ("p_proposal", p_proposal)):
        if bool((p < 0).any()):
            where = tuple(int(i) for i in (p < 0).nonzero()[0])
            raise ValueError(f"{name} is negative at index {where}: probabilities are >= 0")
    if bool((p_proposal == 0).any()):
        where = tuple(int(i) for i in (p_proposal == 0).nonzero()[0])
        raise ValueError(f"p_proposal is 0 at index {where}: {ZERO_PROPOSAL}")
    return p_target / p_proposal  # w = p / q


def ordinary_is(fx: Tensor, logp_target: Tensor, logp_proposal: Tensor) -> Tensor:
    r"""Ordinary importance-sampling estimate of :math:`\mathbb E_p[f]` from draws of q.

    .. math:: \hat\mu_{\mathrm{IS}} = \frac1n \sum_{i=1}^n w_i f(x_i), \qquad x_i \sim q

    Unbiased whenever q > 0 wherever p f ≠ 0; its variance grows without bound as q
    moves away from p (a few huge weights carry the sum).

    Parameters
    ----------
    fx : Tensor, shape (..., n)
        f(x_i) at n draws from q.
    logp_target, logp_proposal : Tensor, shape (..., n)

    Returns
    -------
    Tensor, shape (...)
    """
    fx, log_w = _samples(fx, logp_target, logp_proposal)
    return (log_w.exp() * fx).mean(dim=-1)  # (1/n) Σ w_i f(x_i)


def self_normalized_weights(logp_target: Tensor, logp_proposal: Tensor) -> Tensor:
    r"""Weights normalized to sum to one: :math:`\tilde w_i = w_i / \sum_j w_j`.

    Computed as a softmax of the log weights, so p and q may be known only up to a
    constant each. Shape ``(..., n)`` in and out.
    """
    logp_target, logp_proposal = _log_probs(logp_target, logp_proposal)
    non_empty("logp_target", logp_target)
    return torch.softmax(logp_target - logp_proposal, dim=-1)  # w_i / Σ_j w_j


def weighted_is(fx: Tensor, logp_target: Tensor, logp_proposal: Tensor) -> Tensor:
    r"""Weighted (self-normalized) importance-sampling estimate of :math:`\mathbb E_p[f]`.

    .. math:: \hat\mu_{\mathrm{WIS}} = \frac{\sum_i w_i f(x_i)}{\sum_i w_i}

    Biased for finite n (with n = 1 it returns f(x_1) whatever the weights) but
    consistent, and it needs p and q only up to normalizing constants. To first order
    in 1/n its bias is :math:`-\mathbb E_q[w^2 (f - \mu)]/n` (see
    :func:`gaussian_is_theory`); its spread is usually below the ordinary estimate's, but
    when q misses much of p's mass the bias, not the spread, dominates its error.

    Parameters
    ----------
    fx : Tensor, shape (..., n)
    logp_target, logp_proposal : Tensor, shape (..., n)

    Returns
    -------
    Tensor, shape (...)
    """
    fx, log_w = _samples(fx, logp_target, logp_proposal)
    return (torch.softmax(log_w, dim=-1) * fx).sum(dim=-1)  # Σ w̃_i f(x_i)


def effective_sample_size(logp_target: Tensor, logp_proposal: Tensor) -> Tensor:
    r"""Kish's effective sample size of the importance weights.

    .. math:: \mathrm{ESS} = \frac{(\sum_i w_i)^2}{\sum_i w_i^2} = \frac{1}{\sum_i \tilde w_i^2}
              \in [1, n]

    n when all weights are equal (q = p), close to 1 when one weight dominates.
    Computed as :math:`\exp(2\,\mathrm{LSE}(\log w) - \mathrm{LSE}(2 \log w))`, which
    neither overflows nor underflows.

    Parameters
    ----------
    logp_target, logp_proposal : Tensor, shape (..., n)

    Returns
    -------
    Tensor, shape (...)
    """
    logp_target, logp_proposal = _log_probs(logp_target, logp_proposal)
    non_empty("logp_target", logp_target)
    log_w = logp_target - logp_proposal
    log_sum = torch.logsumexp(log_w, dim=-1)  # log Σ w_i
    log_sum_sq = torch.logsumexp(2 * log_w, dim=-1)  # log Σ w_i²
    return (2 * log_sum - log_sum_sq).exp()  # (Σ w)² / Σ w²


def _trajectory(rewards: Tensor, logp: Tensor, logp_behavior: Tensor, gamma: float) -> tuple[Tensor, Tensor, Tensor]:
    rewards = as_tensor("rewards", rewards)
    logp, logp_behavior = (as_tensor(n, t) for n, t in (("logp", logp), ("logp_behavior", logp_behavior)))
    same_shape(rewards=rewards, logp=logp, logp_behavior=logp_behavior)
    if rewards.ndim != 2:
        raise ValueError(f"rewards: expected time-major shape (T, N), got {tuple(rewards.shape)}")
    no_nan(rewards=rewards, logp=logp, logp_behavior=logp_behavior)
    finite_above("logp_behavior", logp_behavior, "the behaviour policy never takes this action")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma={gamma}: a discount lies in [0, 1]")
    steps = torch.arange(rewards.shape[0], device=rewards.device, dtype=rewards.dtype)
    discounts = (gamma**steps).unsqueeze(-1)  # γ^t, shape (T, 1)
    log_rho = torch.cumsum(logp - logp_behavior, dim=0)  # log ρ_{0:t} = Σ_{k≤t} log π/β
    return rewards, discounts, log_rho


def trajectory_is(rewards: Tensor, logp: Tensor, logp_behavior: Tensor, gamma: float) -> Tensor:
    r"""Whole-trajectory importance-sampling estimate of each trajectory's return under π.

    .. math:: \hat G = \rho_{0:T-1} \sum_{t=0}^{T-1} \gamma^t r_t, \qquad
              \rho_{0:t} = \prod_{k=0}^{t} \frac{\pi(a_k|s_k)}{\beta(a_k|s_k)}

    Parameters
    ----------
    rewards, logp, logp_behavior : Tensor, shape (T, N)
        Time-major: N trajectories of T steps collected by β; ``logp`` = log π(a_t|s_t),
        ``logp_behavior`` = log β(a_t|s_t). Pad a trajectory that ended early with
        zero rewards and equal log-probabilities.
    gamma : float
        Discount in [0, 1].

    Returns
    -------
    Tensor, shape (N,)
        Averaging over N gives an unbiased estimate of the expected return under π.
    """
    rewards, discounts, log_rho = _trajectory(rewards, logp, logp_behavior, gamma)
    return log_rho[-1].exp() * (discounts * rewards).sum(dim=0)  # ρ_{0:T-1} Σ γ^t r_t


def per_decision_is(rewards: Tensor, logp: Tensor, logp_behavior: Tensor, gamma: float) -> Tensor:
    r"""Per-decision importance-sampling estimate of each trajectory's return under π.

    .. math:: \hat G = \sum_{t=0}^{T-1} \gamma^t \rho_{0:t}\, r_t

    A reward r_t depends only on the actions up to t, so it is weighted by the ratios
    up to t and not by the later ones: still unbiased, and *usually* of lower variance
    than :func:`trajectory_is` (when rewards are positive and loosely related across
    steps), but not always: where later rewards cancel earlier ones (a deposit paid at
    t = 0 and refunded at T − 1), the trajectory ratio weights their sum, which cancels,
    while the per-decision ratios weight each term apart, and its variance can be
    several times larger. Precup, Sutton & Singh 2000, "Eligibility Traces for
    Off-Policy Policy Evaluation"; Liu, Bacon & Brunskill 2020, "Understanding the Curse
    of Horizon in Off-Policy Evaluation via Conditional Importance Sampling".

    Parameters
    ----------
    rewards, logp, logp_behavior : Tensor, shape (T, N)
    gamma : float

    Returns
    -------
    Tensor, shape (N,)
    """
    rewards, discounts, log_rho = _trajectory(rewards, logp, logp_behavior, gamma)
    return (discounts * log_rho.exp() * rewards).sum(dim=0)  # Σ_t γ^t ρ_{0:t} r_t


def off_policy_pg_loss(logp: Tensor, logp_behavior: Tensor, q_values: Tensor) -> Tensor:
    r"""Surrogate loss whose gradient is the off-policy policy gradient of the lecture.

    .. math:: \rho = \frac{\pi_\theta(a|s)}{\beta(a|s)}, \qquad
              \nabla_\theta J \approx \frac1B \sum_{(s,a)} \rho\, Q^\pi(s,a)\,
              \nabla_\theta \ln \pi_\theta(a|s)

    Since :math:`\nabla \rho = \rho\, \nabla \ln \pi_\theta`, the loss
    :math:`-\frac1B\sum \rho\, Q` has exactly that gradient. β's log-probabilities and
    the Q-values are data: they are detached, so no gradient flows into the behaviour
    policy or the critic.

    Parameters
    ----------
    logp : Tensor, shape (B,)
        log π_θ(a|s), differentiable in θ.
    logp_behavior : Tensor, shape (B,)
        log β(a|s) of the policy that collected the batch (from a replay buffer).
    q_values : Tensor, shape (B,)
        Q^π(s, a) estimates.

    Returns
    -------
    Tensor, shape ()
        The loss to minimise.
    """
    for name, t in (("logp", logp), ("logp_behavior", logp_behavior), ("q_values", q_values)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    same_shape(logp=logp, logp_behavior=logp_behavior, q_values=q_values)
    no_nan(logp=logp, logp_behavior=logp_behavior, q_values=q_values)
    finite_above("logp_behavior", logp_behavior, "the behaviour policy never takes this action")
    non_empty("logp", logp)
    ratio = (logp - logp_behavior.detach()).exp()  # ρ = π/β, gradient only through π
    return -(ratio * q_values.detach()).mean()  # −(1/B) Σ ρ Q


class GaussianISExperiment(NamedTuple):
    """Repeated IS estimates of E_p[x] for Gaussian p and q (see :func:`gaussian_is_experiment`)."""

    truth: float  # E_p[x], the target's mean
    n: int  # draws per estimate
    ordinary: Tensor  # (repeats,) ordinary IS estimates
    weighted: Tensor  # (repeats,) weighted IS estimates
    ess: Tensor  # (repeats,) effective sample size of each batch of n draws
    largest_draw: Tensor  # (repeats,) the largest of each batch's n draws (how far into q's tail it reached)


def gaussian_is_experiment(target_mean: float, target_std: float, proposal_mean: float, proposal_std: float,
                           n: int, repeats: int, seed: int = 0) -> GaussianISExperiment:
    r"""Estimate :math:`\mathbb E_p[x]` with p = N(target_mean, target_std²) from draws of
    q = N(proposal_mean, proposal_std²), ``repeats`` times with n draws each.

    The spread of ``ordinary`` across repeats is the estimator's standard error; for equal
    widths σ it grows like :math:`\sqrt{(e^{(\mu_p-\mu_q)^2/\sigma^2} - 1)/n}`.
    Draws come from a local generator seeded with ``seed``.
    """
    if target_std <= 0 or proposal_std <= 0:
        raise ValueError(f"standard deviations must be positive, got {target_std} and {proposal_std}")
    if n < 1 or repeats < 1:
        raise ValueError(f"need n >= 1 and repeats >= 1, got n={n}, repeats={repeats}")
    g = torch.Generator().manual_seed(seed)
    x = proposal_mean + proposal_std * torch.randn((repeats, n), generator=g, dtype=torch.float64)
    logp_target = gaussian_logpdf(x, target_mean, target_std)
    logp_proposal = gaussian_logpdf(x, proposal_mean, proposal_std)
    return GaussianISExperiment(
        truth=float(target_mean),
        n=n,
        ordinary=ordinary_is(x, logp_target, logp_proposal),
        weighted=weighted_is(x, logp_target, logp_proposal),
        ess=effective_sample_size(logp_target, logp_proposal),
        largest_draw=x.amax(dim=-1),
    )


def gaussian_logpdf(x: Tensor, mean: float, std: float) -> Tensor:
    r"""Log-density of :math:`\mathcal N(\mu, \sigma^2)` at x, elementwise, shape (...) -> (...).

    .. math:: \log \mathcal N(x; \mu, \sigma^2) = -\tfrac12\big(\tfrac{x-\mu}{\sigma}\big)^2 - \log\sigma - \tfrac12\log 2\pi
    """
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)  # log N(x; μ, σ²)


# ------------------------------------------------------------------ Gaussian p and q: theory


class WeightMoments(NamedTuple):
    """Moments of the squared weight under q, for Gaussian p and q (see :func:`gaussian_weight_moments`)."""

    w2: float  # E_q[w² 1{x ≤ upper}]
    w2x: float  # E_q[w² x 1{x ≤ upper}]
    w2x2: float  # E_q[w² x² 1{x ≤ upper}]


def _std_normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))  # Φ(z), accurate in both tails


def _check_stds(*stds: float) -> None:
    for std in stds:
        if not (math.isfinite(std) and std > 0):
            raise ValueError(f"standard deviations must be positive and finite, got {std}")


def gaussian_weight_moments(target_mean: float, target_std: float, proposal_mean: float, proposal_std: float,
                            upper: float = math.inf) -> WeightMoments:
    r"""Exact moments of the squared importance weight for p = N(μ_p, σ_p²) and q = N(μ_q, σ_q²).

    :math:`p^2/q` is an unnormalized Gaussian density whenever its precision
    :math:`a = 2/\sigma_p^2 - 1/\sigma_q^2` is positive:

    .. math:: \frac{p(x)^2}{q(x)} = Z\,\mathcal N(x;\, m,\, 1/a), \qquad
              m = \frac{2\mu_p/\sigma_p^2 - \mu_q/\sigma_q^2}{a}, \qquad
              Z = \mathbb E_q[w^2] = \frac{\sigma_q}{\sigma_p^2\sqrt a}
                  \exp\Big(\frac{a m^2}{2} - \frac{\mu_p^2}{\sigma_p^2} + \frac{\mu_q^2}{2\sigma_q^2}\Big),

    so :math:`\mathbb E_q[w^2 g(x)] = Z\,\mathbb E_{\mathcal N(m, 1/a)}[g]`. With
    ``upper`` the moments are restricted to :math:`x \le` ``upper`` (the part of the
    variance that draws below ``upper`` can show). For :math:`\sigma_p = \sigma_q = 1` and
    :math:`\mu_p - \mu_q = \Delta`: :math:`Z = e^{\Delta^2}` and :math:`m = \mu_q + 2\Delta`.

    **A proposal too narrow.** When :math:`\sigma_q \le \sigma_p/\sqrt2` (a ≤ 0) the
    integral diverges: :math:`\mathbb E_q[w^2] = \infty`, every ordinary IS estimate has
    infinite variance, and ``w2 = w2x2 = inf``, ``w2x = nan``.

    Parameters
    ----------
    target_mean, target_std, proposal_mean, proposal_std : float
        μ_p, σ_p > 0, μ_q, σ_q > 0.
    upper : float
        Restrict to x ≤ upper; ``inf`` (the default) gives the full moments.

    Returns
    -------
    WeightMoments
        ``w2`` = E_q[w²], ``w2x`` = E_q[w² x], ``w2x2`` = E_q[w² x²] (each over x ≤ upper).
    """
    _check_stds(target_std, proposal_std)
    vp, vq = target_std**2, proposal_std**2
    a = 2.0 / vp - 1.0 / vq  # precision of p²/q
    if a <= 0:
        return WeightMoments(math.inf, math.nan, math.inf)
    m = (2.0 * target_mean / vp - proposal_mean / vq) / a  # mean of p²/q
    log_z = (math.log(proposal_std / (vp * math.sqrt(a))) + 0.5 * a * m * m
             - target_mean**2 / vp + proposal_mean**2 / (2.0 * vq))  # log E_q[w²]
    z = math.exp(log_z) if log_z < 700.0 else math.inf
    s = 1.0 / math.sqrt(a)  # sd of p²/q
    if math.isinf(upper) and upper > 0:
        return WeightMoments(z, z * m, z * (m * m + s * s))
    t = (upper - m) / s
    cdf, pdf = _std_normal_cdf(t), math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)  # Φ(t), φ(t)
    return WeightMoments(z * cdf,  # Z Φ
                         z * (m * cdf - s * pdf),  # Z (mΦ − sφ)
                         z * ((m * m + s * s) * cdf - s * (2.0 * m + s * t) * pdf))  # Z ((m² + s²)Φ − s(2m + st)φ)


class ISTheory(NamedTuple):
    """What theory says about n-draw IS estimates of E_p[x] (see :func:`gaussian_is_theory`)."""

    second_moment: float  # E_q[w²]; inf when the proposal is too narrow
    n_eff: float  # n / E_q[w²]: how many draws from p the n draws from q are worth
    ordinary_sd: float  # exact sd of the ordinary estimate, √(Var_q[w x]/n)
    weighted_bias: float  # first-order bias of the weighted estimate, −E_q[w²(x − μ_p)]/n
    weighted_sd: float  # first-order sd of the weighted estimate, √(E_q[w²(x − μ_p)²]/n)


def gaussian_is_theory(target_mean: float, target_std: float, proposal_mean: float, proposal_std: float,
                       n: int) -> ISTheory:
    r"""Exact variance of ordinary IS, and the O(1/n) bias and variance of weighted IS, for f(x) = x.

    With :math:`\mu = \mathbb E_p[x]` and the moments of :func:`gaussian_weight_moments`:

    .. math:: \operatorname{sd}(\hat\mu_{\mathrm{IS}}) = \sqrt{\frac{\mathbb E_q[w^2x^2] - \mu^2}{n}},
              \qquad n_{\mathrm{eff}} = \frac{n}{\mathbb E_q[w^2]},

    and, expanding the ratio :math:`\hat\mu_{\mathrm{WIS}} = \bar A/\bar B` (with
    :math:`\bar A = \frac1n\sum w_i x_i`, :math:`\bar B = \frac1n\sum w_i`) to second order
    around :math:`(\mu, 1)` (the delta method),

    .. math:: \mathbb E[\hat\mu_{\mathrm{WIS}}] - \mu = -\frac{\mathbb E_q[w^2(x - \mu)]}{n} + O(n^{-2}),
              \qquad \operatorname{Var}(\hat\mu_{\mathrm{WIS}}) = \frac{\mathbb E_q[w^2(x - \mu)^2]}{n} + O(n^{-2}).

    The weighted-IS terms are asymptotic: they describe n ≫ E_q[w²] and say nothing
    reliable below. For equal unit widths and shift Δ: :math:`\mathbb E_q[w^2] = e^{\Delta^2}`,
    :math:`\operatorname{Var}_q[wx] = e^{\Delta^2}(1 + 4\Delta^2) - \Delta^2`, bias
    :math:`-\Delta e^{\Delta^2}/n`. When σ_q ≤ σ_p/√2 every variance is infinite.

    Parameters
    ----------
    target_mean, target_std, proposal_mean, proposal_std : float
    n : int
        Draws per estimate, ≥ 1.

    Returns
    -------
    ISTheory
    """
    if n < 1:
        raise ValueError(f"need n >= 1, got n={n}")
    w2, w2x, w2x2 = gaussian_weight_moments(target_mean, target_std, proposal_mean, proposal_std)
    mu = target_mean
    if math.isinf(w2):
        return ISTheory(math.inf, 0.0, math.inf, math.nan, math.inf)
    return ISTheory(
        second_moment=w2,
        n_eff=n / w2,  # n / E_q[w²]
        ordinary_sd=math.sqrt(max(w2x2 - mu * mu, 0.0) / n),  # √(Var_q[w x]/n)
        weighted_bias=-(w2x - mu * w2) / n,  # −E_q[w²(x − μ)]/n
        weighted_sd=math.sqrt(max(w2x2 - 2 * mu * w2x + mu * mu * w2, 0.0) / n),  # √(E_q[w²(x − μ)²]/n)
    )


class EstimatorSummary(NamedTuple):
    """How repeated estimates of a known quantity behave (see :func:`estimator_summary`)."""

    mean: float  # average of the estimates
    stderr: float  # its standard error, sd/√R
    bias: float  # mean − truth
    sd: float  # spread of one estimate (sample sd, R − 1 in the denominator)
    rmse: float  # √(mean of (estimate − truth)²): bias and spread together


def estimator_summary(estimates: Tensor, truth: float) -> EstimatorSummary:
    r"""Mean, standard error, bias, sd and RMSE of R independent estimates of a known truth.

    .. math:: \bar\mu = \frac1R\sum_r \hat\mu_r,\quad \mathrm{se} = \frac{s}{\sqrt R},\quad
              \mathrm{bias} = \bar\mu - \mu,\quad
              \mathrm{RMSE} = \sqrt{\frac1R\sum_r(\hat\mu_r - \mu)^2} \approx \sqrt{\mathrm{bias}^2 + s^2}

    A bias is visible only when it exceeds a few standard errors. For a heavy-tailed
    estimator the sample sd s (and with it se and RMSE) is itself unreliable: R repeats
    rarely contain the draws that carry most of the variance, so s usually falls short.

    Parameters
    ----------
    estimates : Tensor, shape (R,) or any shape (flattened), R ≥ 2
    truth : float

    Returns
    -------
    EstimatorSummary
    """
    est = as_tensor("estimates", estimates).detach().reshape(-1).to(torch.float64)
    no_nan(estimates=est)
    if est.numel() < 2:
        raise ValueError(f"estimates: need at least 2 repeats for a spread, got {est.numel()}")
    mean, sd = float(est.mean()), float(est.std())
    return EstimatorSummary(mean=mean, stderr=sd / math.sqrt(est.numel()), bias=mean - truth, sd=sd,
                            rmse=float(((est - truth) ** 2).mean().sqrt()))


# ------------------------------------------------------------ the optimal proposal, rare events


def optimal_proposal_logpdf(fx: Tensor, logp_target: Tensor, log_normalizer: float) -> Tensor:
    r"""Log-density of the variance-minimizing proposal :math:`q^\star \propto |f|\,p`.

    .. math:: \log q^\star(x) = \log|f(x)| + \log p(x) - \log \mathbb E_p|f|

    Among all proposals, :math:`q^\star` minimizes :math:`\mathbb E_q[w^2f^2]` (Cauchy–Schwarz:
    :math:`\mathbb E_q[w^2f^2] \ge (\mathbb E_q[w|f|])^2 = (\mathbb E_p|f|)^2`, with equality
    iff :math:`w|f|` is constant). For f ≥ 0 the variance is exactly 0: every draw gives
    :math:`w f = \mathbb E_p[f]`. The catch: its normalizer ``log_normalizer`` =
    :math:`\log \mathbb E_p|f|` is the answer itself, so q* is a guide for choosing q
    (put mass where |f| p is large), not a method. Kahn & Marshall 1953.

    Parameters
    ----------
    fx, logp_target : Tensor, shape (...)
        f(x) and log p(x) at the same points.
    log_normalizer : float
        :math:`\log \mathbb E_p|f|`.

    Returns
    -------
    Tensor, shape (...)
        ``-inf`` where f(x) = 0.
    """
    fx = as_tensor("fx", fx)
    logp_target = as_tensor("logp_target", logp_target)
    same_shape(fx=fx, logp_target=logp_target)
    no_nan(fx=fx, logp_target=logp_target)
    if not math.isfinite(log_normalizer):
        raise ValueError(f"log_normalizer must be finite (E_p|f| > 0), got {log_normalizer}")
    return fx.abs().log() + logp_target - log_normalizer  # log|f| + log p − log E_p|f|


def gaussian_tail_draws(threshold: float, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    r"""Draws of :math:`x \sim \mathcal N(0, 1)` conditioned on :math:`x > t`, by inverting the CDF.

    .. math:: x = -\Phi^{-1}\big(u\,\Phi(-t)\big), \qquad u \sim U(0, 1)

    This is the optimal proposal :math:`q^\star \propto f p` for the rare event
    :math:`f(x) = \mathbf 1\{x > t\}` under p = N(0, 1). float64, on the CPU.

    Parameters
    ----------
    threshold : float
        t; any finite value (for t ≲ 37 the tail probability is a normal float64).
    shape : tuple of int
    generator : torch.Generator

    Returns
    -------
    Tensor, shape ``shape``
        Every entry > t.
    """
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    tail = torch.special.ndtr(torch.tensor(-float(threshold), dtype=torch.float64))  # Φ(−t)
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    u = torch.where(u > 0, u, torch.full_like(u, 0.5))  # rand can return exactly 0
    return -torch.special.ndtri(u * tail)  # −Φ⁻¹(u Φ(−t)) > t


# ------------------------------------------------------------------- running estimates


class RunningEstimates(NamedTuple):
    """Estimates after each of n draws (see :func:`running_estimates`)."""

    ordinary: Tensor  # (..., n): (1/k) Σ_{i≤k} w_i f_i
    weighted: Tensor  # (..., n): Σ_{i≤k} w_i f_i / Σ_{i≤k} w_i; NaN before the first nonzero weight


def running_estimates(fx: Tensor, logp_target: Tensor, logp_proposal: Tensor) -> RunningEstimates:
    r"""Ordinary and weighted IS estimates from the first k draws, for every k = 1, …, n.

    .. math:: \hat\mu_{\mathrm{IS}}^{(k)} = \frac1k\sum_{i\le k} w_i f(x_i), \qquad
              \hat\mu_{\mathrm{WIS}}^{(k)} = \frac{\sum_{i\le k} w_i f(x_i)}{\sum_{i\le k} w_i}

    The curves of one run against k, for a learning curve of an estimator (Sutton &
    Barto 2018, Fig. 5.4). Entry k − 1 equals :func:`ordinary_is` and :func:`weighted_is`
    of the first k draws. Weights are scaled by their largest value before the sums
    (the scale cancels in the weighted estimate).

    Parameters
    ----------
    fx, logp_target, logp_proposal : Tensor, shape (..., n)

    Returns
    -------
    RunningEstimates
        Both of shape (..., n).
    """
    fx, log_w = _samples(fx, logp_target, logp_proposal)
    count = torch.arange(1, fx.shape[-1] + 1, dtype=fx.dtype, device=fx.device)
    ordinary = torch.cumsum(log_w.exp() * fx, dim=-1) / count  # (1/k) Σ_{i≤k} w_i f_i
    top = log_w.amax(dim=-1, keepdim=True)
    scaled = (log_w - torch.where(torch.isfinite(top), top, torch.zeros_like(top))).exp()  # w_i / max_j w_j
    total = torch.cumsum(scaled, dim=-1)  # Σ_{i≤k} w_i, scaled
    weighted = torch.cumsum(scaled * fx, dim=-1) / torch.where(total > 0, total, torch.full_like(total, math.nan))
    return RunningEstimates(ordinary, weighted)


class OneStateEpisodes(NamedTuple):
    """Episodes of the one-state MDP of Sutton & Barto's Example 5.5 (see :func:`one_state_episodes`)."""

    returns: Tensor  # (...,) G: 1 when the episode ended through the left action's exit, else 0
    logp_target: Tensor  # (...,) log π(actions) = 0 if every action was left, −inf otherwise
    logp_behavior: Tensor  # (...,) log b(actions) = K log ½: b takes each action with probability ½
    steps: Tensor  # (...,) K, the episode's length


def one_state_episodes(shape: tuple[int, ...], *, exit_prob: float = 0.1, seed: int = 0) -> OneStateEpisodes:
    r"""Episodes of Sutton & Barto's Example 5.5, whose ordinary IS estimate has infinite variance.

    One non-terminal state s, two actions. *Right* ends the episode with reward 0; *left*
    ends it with probability ``exit_prob`` (= 0.1) and reward +1, and otherwise returns
    to s with reward 0. γ = 1. The target policy π always goes left, so
    :math:`v_\pi(s) = 1`; the behaviour policy b picks each action with probability ½.
    An episode of K steps has the trajectory ratio :math:`\rho = \prod_t \pi/b = 2^K` if
    every action was left and 0 otherwise, and

    .. math:: \mathbb E_b[\rho^2 G^2] = \sum_{K\ge1} \Big(\frac{1-e}{2}\Big)^{K-1}\frac e2\, 4^K
              = 2e\sum_{K\ge1}\big(2(1-e)\big)^{K-1} = \infty \quad\text{for } e \le \tfrac12 .

    Weighted IS, in contrast, returns exactly 1 from the first episode with a nonzero
    ratio. Sutton & Barto 2018, "Reinforcement Learning: An Introduction", Ex. 5.5, Fig. 5.4.

    Parameters
    ----------
    shape : tuple of int
        E.g. ``(runs, episodes)``.
    exit_prob : float
        e in (0, 1], the chance that left ends the episode.
    seed : int
        Seeds a local generator.

    Returns
    -------
    OneStateEpisodes
        float64 tensors of shape ``shape``; pass ``returns``, ``logp_target`` and
        ``logp_behavior`` to :func:`ordinary_is` or :func:`running_estimates`.
    """
    if not 0.0 < exit_prob <= 1.0:
        raise ValueError(f"exit_prob={exit_prob}: a probability in (0, 1]")
    g = torch.Generator().manual_seed(seed)
    stay = 0.5 * (1.0 - exit_prob)  # P(left and back to s) per step under b
    u = torch.rand(shape, generator=g, dtype=torch.float64).clamp_min(torch.finfo(torch.float64).tiny)
    steps = 1.0 + (torch.floor(u.log() / math.log(stay)) if stay > 0 else torch.zeros_like(u))  # K ~ Geometric(1 − stay)
    left_exit = torch.rand(shape, generator=g, dtype=torch.float64) < 0.5 * exit_prob / (1.0 - stay)  # last step: left exit
    returns = left_exit.to(torch.float64)  # reward +1 only through the left exit
    logp_target = torch.where(left_exit, 0.0, -math.inf).to(torch.float64)  # π(left) = 1, π(right) = 0
    logp_behavior = steps * math.log(0.5)  # b(a) = ½ for every action taken
    return OneStateEpisodes(returns, logp_target, logp_behavior, steps)


# ---------------------------------------------------------- truncated and clipped ratios


def _log_ratio_tensor(log_ratio: Tensor) -> Tensor:
    log_ratio = as_tensor("log_ratio", log_ratio)
    no_nan(log_ratio=log_ratio)
    return log_ratio


def truncated_ratio(log_ratio: Tensor, max_ratio: float) -> Tensor:
    r"""Importance ratio truncated from above: :math:`\bar\rho = \min(\rho, c)`, :math:`\rho = e^{\log\rho}`.

    The truncation of V-trace (Espeholt et al. 2018, "IMPALA": :math:`\bar\rho_t = \min(\bar\rho, \rho_t)`
    and traces :math:`c_t = \min(\bar c, \rho_t)`, usually :math:`\bar\rho = \bar c = 1`) and
    of Retrace (Munos et al. 2016, "Safe and Efficient Off-Policy Reinforcement Learning":
    traces :math:`c_t = \lambda\min(1, \rho_t)`). A truncated weight is at most c, so
    products of truncated traces with c = 1 never grow: the variance stays bounded, at
    the price of a bias toward the behaviour policy. Computed as
    :math:`\exp(\min(\log\rho, \log c))`, so a log-ratio of +1000 is no overflow.

    Parameters
    ----------
    log_ratio : Tensor, shape (...)
        log π − log β (or log p − log q).
    max_ratio : float
        c > 0; ``inf`` truncates nothing.

    Returns
    -------
    Tensor, shape (...)
    """
    log_ratio = _log_ratio_tensor(log_ratio)
    if not max_ratio > 0:
        raise ValueError(f"max_ratio={max_ratio}: the truncation level must be > 0")
    return torch.clamp(log_ratio, max=math.log(max_ratio)).exp()  # min(ρ, c) = e^{min(log ρ, log c)}


def truncated_is(fx: Tensor, logp_target: Tensor, logp_proposal: Tensor, max_ratio: float) -> Tensor:
    r"""Truncated importance sampling: weights capped at c before averaging (Ionides 2008).

    .. math:: \hat\mu_c = \frac1n\sum_{i=1}^n \min(w_i, c)\, f(x_i)

    c = ∞ is ordinary IS (unbiased, perhaps infinite variance); a finite c bounds the
    variance by :math:`c^2\,\mathbb E_q[f^2]/n` and biases the estimate by
    :math:`-\mathbb E_q[(w - c)_+ f]`, the mass that the cap throws away. Ionides 2008,
    "Truncated Importance Sampling" (J. Comput. Graph. Stat.).

    Parameters
    ----------
    fx, logp_target, logp_proposal : Tensor, shape (..., n)
    max_ratio : float
        c > 0.

    Returns
    -------
    Tensor, shape (...)
    """
    fx, log_w = _samples(fx, logp_target, logp_proposal)
    return (truncated_ratio(log_w, max_ratio) * fx).mean(dim=-1)  # (1/n) Σ min(w_i, c) f(x_i)


def clipped_ratio(log_ratio: Tensor, clip_eps: float) -> Tensor:
    r"""PPO's clipped ratio :math:`\operatorname{clip}(r, 1 - \varepsilon, 1 + \varepsilon)`, :math:`r = e^{\log r}`.

    Unlike a truncation it clips from both sides, and it is not used alone: PPO takes
    the smaller of :math:`r\hat A` and :math:`\operatorname{clip}(r)\hat A` (see
    :func:`clipped_objective`). Schulman et al. 2017, "Proximal Policy Optimization Algorithms".

    Parameters
    ----------
    log_ratio : Tensor, shape (...)
        log π_θ(a|s) − log π_θold(a|s).
    clip_eps : float
        ε in [0, 1).

    Returns
    -------
    Tensor, shape (...)
    """
    log_ratio = _log_ratio_tensor(log_ratio)
    if not 0.0 <= clip_eps < 1.0:
        raise ValueError(f"clip_eps={clip_eps}: ε lies in [0, 1)")
    return log_ratio.exp().clamp(1.0 - clip_eps, 1.0 + clip_eps)  # clip(r, 1 − ε, 1 + ε)


def clipped_objective(ratio: Tensor, adv: Tensor, clip_eps: float) -> Tensor:
    r"""PPO's per-sample clipped objective, the pessimistic minimum of two surrogates.

    .. math:: L^{\mathrm{CLIP}}_t = \min\big(r_t \hat A_t,\ \operatorname{clip}(r_t, 1-\varepsilon, 1+\varepsilon)\,\hat A_t\big)

    For :math:`\hat A > 0` it stops growing at :math:`r = 1 + \varepsilon`; for :math:`\hat A < 0`
    it stops improving below :math:`r = 1 - \varepsilon`; in those flat parts its gradient in
    θ is 0, so one batch cannot push the ratio far. At r = 1 it equals :math:`\hat A`.
    Elementwise; the PPO lecture averages it over a batch.

    Parameters
    ----------
    ratio : Tensor, shape (...)
        r_t = π_θ(a_t|s_t)/π_θold(a_t|s_t).
    adv : Tensor, shape (...)
        Â_t.
    clip_eps : float
        ε in [0, 1).

    Returns
    -------
    Tensor, shape (...)
    """
    ratio, adv = as_tensor("ratio", ratio), as_tensor("adv", adv)
    no_nan(ratio=ratio, adv=adv)
    if not 0.0 <= clip_eps < 1.0:
        raise ValueError(f"clip_eps={clip_eps}: ε lies in [0, 1)")
    return torch.minimum(ratio * adv, ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv)  # min(rÂ, clip(r)Â)
