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
from rlteach.seal import graded_reference

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


@graded_reference
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


@graded_reference
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


@graded_reference
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


@graded_reference
def self_normalized_weights(logp_target: Tensor, logp_proposal: Tensor) -> Tensor:
    r"""Weights normalized to sum to one: :math:`\tilde w_i = w_i / \sum_j w_j`.

    Computed as a softmax of the log weights, so p and q may be known only up to a
    constant each. Shape ``(..., n)`` in and out.
    """
    logp_target, logp_proposal = _log_probs(logp_target, logp_proposal)
    non_empty("logp_target", logp_target)
    return torch.softmax(logp_target - logp_proposal, dim=-1)  # w_i / Σ_j w_j


@graded_reference
def weighted_is(fx: Tensor, logp_target: Tensor, logp_proposal: Tensor) -> Tensor:
    r"""Weighted (self-normalized) importance-sampling estimate of :math:`\mathbb E_p[f]`.

    .. math:: \hat\mu_{\mathrm{WIS}} = \frac{\sum_i w_i f(x_i)}{\sum_i w_i}

    Biased for finite n (with n = 1 it returns f(x_1) whatever the weights) but
    consistent, and it needs p and q only up to normalizing constants. Its variance is
    usually far below the ordinary estimate's.

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


@graded_reference
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


@graded_reference
def per_decision_is(rewards: Tensor, logp: Tensor, logp_behavior: Tensor, gamma: float) -> Tensor:
    r"""Per-decision importance-sampling estimate of each trajectory's return under π.

    .. math:: \hat G = \sum_{t=0}^{T-1} \gamma^t \rho_{0:t}\, r_t

    A reward r_t depends only on the actions up to t, so it is weighted by the ratios
    up to t and not by the later ones: still unbiased, lower variance than
    :func:`trajectory_is`. Precup, Sutton & Singh 2000, "Eligibility Traces for
    Off-Policy Policy Evaluation".

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


@graded_reference
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
    )


def gaussian_logpdf(x: Tensor, mean: float, std: float) -> Tensor:
    r"""Log-density of :math:`\mathcal N(\mu, \sigma^2)` at x, elementwise, shape (...) -> (...).

    .. math:: \log \mathcal N(x; \mu, \sigma^2) = -\tfrac12\big(\tfrac{x-\mu}{\sigma}\big)^2 - \log\sigma - \tfrac12\log 2\pi
    """
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)  # log N(x; μ, σ²)
