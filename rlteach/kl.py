r"""KL divergence: closed forms, Monte-Carlo estimators, and its second-order shape (the Fisher).

.. math:: \mathrm{KL}(p\,\|\,q) = \mathbb E_{x\sim p}\Big[\log\frac{p(x)}{q(x)}\Big] \;\ge 0,
          \quad = 0 \iff p = q

It is not symmetric, and the direction matters. With a fixed target p and a model q that
is fitted:

- **Forward KL**, :math:`\mathrm{KL}(p\|q)`, the expectation under the *target*: q is
  punished wherever p has mass and q has little, so q spreads to cover every mode of p
  (**mode covering**, mass-covering; maximum likelihood minimises it).
- **Reverse KL**, :math:`\mathrm{KL}(q\|p)`, the expectation under the *model*: q is
  punished for putting mass where p has little, so q settles on one mode
  (**mode seeking**, zero-forcing; variational inference minimises it).

TRPO's constraint is :math:`\mathrm{KL}(\pi_{\theta_{old}}\|\pi_\theta)` averaged over states
drawn from the old policy (Schulman et al. 2015, "Trust Region Policy Optimization"): the
expectation is under the *old* policy, which produced the samples. In the code:
``categorical_kl(logits_old, logits)``, and from samples of the old policy
``kl_k3(logp - logp_old)``.

Conventions
-----------
- **Shapes.** Categorical distributions are given by logits along the last dimension,
  shape ``(..., K)``; Gaussians by ``mean`` and ``log_std`` of shape ``(..., d)`` (a
  diagonal covariance). Leading dimensions are a batch (states); KLs come out with shape
  ``(...)``. The Monte-Carlo estimators act elementwise on log-ratios.
- **Stability.** Logits go through ``log_softmax``; the Gaussian and k3 forms use
  ``expm1`` (and a series where even that cancels), so equal distributions give exactly 0
  and nearly equal ones keep their relative precision.
- **Devices.** Outputs follow the inputs' device and dtype and keep their autograd graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from rlteach._validate import (
    as_tensor,
    check_finite,
    no_nan,
    non_empty,
    positive_int,
    positive_number,
    same_device,
    same_shape,
)

__all__ = [
    "GaussianFit",
    "KLSummary",
    "categorical_fisher",
    "categorical_kl",
    "expm1_minus",
    "fisher_ball_boundary",
    "fit_gaussian_by_kl",
    "forward_kl",
    "gaussian_kl",
    "gaussian_mixture_logits",
    "kl_ball_boundary",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "kl_over_states",
    "kl_quadratic",
    "linear_softmax_logits",
    "mean_categorical_kl",
    "reverse_kl",
    "simplex_directions",
]

_SERIES_CUTOFF = 0.5
_SERIES_TERMS = 15  # l²·Σ_{k<15} l^k/(k+2)!: the remainder is below 1e-17 relative for |l| < ½


def _logits(**named: object) -> list[Tensor]:
    out = [as_tensor(name, x) for name, x in named.items()]
    same_shape(**dict(zip(named, out, strict=True)))
    same_device(**dict(zip(named, out, strict=True)))
    for (name, _), t in zip(named.items(), out, strict=True):
        if t.ndim == 0 or t.shape[-1] == 0:
            raise ValueError(f"{name}: expected logits of shape (..., K), K >= 1, got {tuple(t.shape)}")
        no_nan(**{name: t})
        if bool((t == float("inf")).any()):
            raise ValueError(f"{name} contains +inf: logits must be finite or -inf (probability 0)")
        if bool((t == float("-inf")).all(dim=-1).any()):
            raise ValueError(f"{name} has a row of all -inf logits: a distribution needs one category with probability > 0")
    return out


def categorical_kl(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    r"""KL between categorical distributions given by logits, :math:`\mathrm{KL}(p\|q)`.

    .. math:: \mathrm{KL}(p\|q) = \sum_k p_k\,(\log p_k - \log q_k),\qquad
              \log p = \mathrm{log\_softmax}(\text{logits}_p)

    Logits are defined up to a constant per row, and so is nothing else here. A logit of
    −inf is a probability of 0: such a category adds 0 under p (0·log 0 = 0) and +inf when
    p > 0 but q = 0 (q cannot explain p's sample).

    Parameters
    ----------
    logits_p, logits_q : Tensor, shape (..., K)

    Returns
    -------
    Tensor, shape (...)
        ≥ 0 (to rounding), exactly 0 for identical logits.

    Raises
    ------
    ValueError
        Mismatched shapes, NaN or +inf logits.
    """
    logits_p, logits_q = _logits(logits_p=logits_p, logits_q=logits_q)
    logp = torch.log_softmax(logits_p, dim=-1)  # log p_k
    logq = torch.log_softmax(logits_q, dim=-1)  # log q_k
    p = logp.exp()
    log_ratio = torch.where(p > 0, logp - logq, torch.zeros_like(logp))  # 0·log 0 = 0, and no NaN in gradients
    return (p * log_ratio).sum(dim=-1)  # Σ_k p_k (log p_k − log q_k)


def forward_kl(logits_target: Tensor, logits_model: Tensor) -> Tensor:
    r"""Forward KL, :math:`\mathrm{KL}(p_{\text{target}}\,\|\,q_{\text{model}})`: mode covering.

    The expectation is under the target: the model pays wherever the target has mass it
    misses, so a fitted model covers all of the target's modes. Categorical logits,
    shape (..., K) -> (...). See :func:`categorical_kl`.
    """
    return categorical_kl(logits_target, logits_model)  # E_target[log target − log model]


def reverse_kl(logits_target: Tensor, logits_model: Tensor) -> Tensor:
    r"""Reverse KL, :math:`\mathrm{KL}(q_{\text{model}}\,\|\,p_{\text{target}})`: mode seeking.

    The expectation is under the model: it pays only where it puts mass, so a fitted model
    may sit on one mode of the target and ignore the rest. Categorical logits,
    shape (..., K) -> (...). See :func:`categorical_kl`.
    """
    return categorical_kl(logits_model, logits_target)  # E_model[log model − log target]


def gaussian_kl(mean_p: Tensor, log_std_p: Tensor, mean_q: Tensor, log_std_q: Tensor) -> Tensor:
    r"""KL between diagonal Gaussians, :math:`\mathrm{KL}(\mathcal N(\mu_p, \sigma_p^2)\,\|\,\mathcal N(\mu_q, \sigma_q^2))`.

    .. math:: \mathrm{KL} = \sum_i \Big[\tfrac12\big(e^{2\Delta_i} - 1 - 2\Delta_i\big)
              + \frac{(\mu_{p,i} - \mu_{q,i})^2}{2\sigma_{q,i}^2}\Big],
              \qquad \Delta_i = \log\sigma_{p,i} - \log\sigma_{q,i}

    the usual :math:`\log\frac{\sigma_q}{\sigma_p} + \frac{\sigma_p^2 + (\mu_p-\mu_q)^2}{2\sigma_q^2} - \frac12`
    rearranged so that the variance term, :math:`\tfrac12(\mathrm{expm1}(2\Delta) - 2\Delta)`,
    keeps its precision when the widths are nearly equal.

    Parameters
    ----------
    mean_p, log_std_p, mean_q, log_std_q : Tensor, shape (..., d)
        A Gaussian policy's head: means and log standard deviations (the parametrisation
        of most continuous-control policies).

    Returns
    -------
    Tensor, shape (...)
        Summed over the d independent coordinates.
    """
    named = {"mean_p": mean_p, "log_std_p": log_std_p, "mean_q": mean_q, "log_std_q": log_std_q}
    ts = {name: as_tensor(name, x) for name, x in named.items()}
    same_shape(**ts)
    same_device(**ts)
    for name, t in ts.items():
        check_finite(t, name)
    if ts["mean_p"].ndim == 0:
        raise ValueError("mean_p: expected shape (..., d), got a scalar")
    delta = ts["log_std_p"] - ts["log_std_q"]  # Δ = log σ_p − log σ_q
    width = 0.5 * (torch.expm1(2 * delta) - 2 * delta)  # ½(σ_p²/σ_q² − 1 − log σ_p²/σ_q²)
    shift = 0.5 * ((ts["mean_p"] - ts["mean_q"]) * torch.exp(-ts["log_std_q"])) ** 2  # (μ_p − μ_q)²/(2σ_q²)
    return (width + shift).sum(dim=-1)


def _log_ratio(log_ratio: object) -> Tensor:
    t = as_tensor("log_ratio", log_ratio)
    no_nan(log_ratio=t)
    return t


def kl_k1(log_ratio: Tensor) -> Tensor:
    r"""Per-sample KL estimate k1 = −log r: unbiased, high variance, often negative.

    With :math:`r = q(x)/p(x)` and :math:`x \sim p`,
    :math:`\mathbb E_p[-\log r] = \mathrm{KL}(p\|q)`. Half the samples can be negative,
    and the standard deviation stays of the order of :math:`\sqrt{2\,\mathrm{KL}}` as p → q,
    far above the KL itself. Schulman 2020, "Approximating KL Divergence".

    Parameters
    ----------
    log_ratio : Tensor, shape (...)
        log r = log q(x) − log p(x) at samples x ~ p (in PPO: ``logp − logp_old`` for
        actions of the old policy, estimating KL(π_old‖π_θ)).

    Returns
    -------
    Tensor, shape (...)
        Average it over samples for the estimate.
    """
    return -_log_ratio(log_ratio)  # −log r


def kl_k2(log_ratio: Tensor) -> Tensor:
    r"""Per-sample KL estimate k2 = ½(log r)²: biased, low variance, never negative.

    Its expectation is an f-divergence that agrees with KL(p‖q) to second order in
    (q − p), so its bias vanishes faster than the KL as q → p. Schulman 2020.

    Parameters
    ----------
    log_ratio : Tensor, shape (...)
        log r at samples x ~ p; see :func:`kl_k1`.

    Returns
    -------
    Tensor, shape (...)
    """
    return 0.5 * _log_ratio(log_ratio) ** 2  # ½ (log r)²


def expm1_minus(x: Tensor) -> Tensor:
    r"""Elementwise :math:`e^x - 1 - x \ge 0`, to full relative precision near 0.

    ``expm1(x) - x`` still cancels: at x = 1e-10 in float32 it returns 0 instead of
    5e-21, and at 1e-5 it loses four digits. For |x| < ½ this function sums the series
    :math:`x^2 \sum_{k\ge0} x^k/(k+2)!` (15 terms, remainder < 1e-17 relative); elsewhere it
    uses ``expm1(x) - x``, whose relative error there is a few ulps.
    """
    small = x.abs() < _SERIES_CUTOFF
    xs = x.clamp(-_SERIES_CUTOFF, _SERIES_CUTOFF)  # the series branch never sees large x (no inf·0 in gradients)
    series = torch.full_like(xs, 1.0 / math.factorial(_SERIES_TERMS + 1))
    for k in range(_SERIES_TERMS - 2, -1, -1):
        series = series * xs + 1.0 / math.factorial(k + 2)  # Horner: Σ_k x^k/(k+2)!
    return torch.where(small, xs * xs * series, torch.expm1(x) - x)  # e^x − 1 − x


def kl_k3(log_ratio: Tensor) -> Tensor:
    r"""Per-sample KL estimate k3 = (r − 1) − log r: unbiased, low variance, never negative.

    .. math:: k_3 = (r - 1) - \log r = e^{\ell} - 1 - \ell,\qquad \ell = \log r

    Unbiased because :math:`\mathbb E_p[r] = 1`, so :math:`\mathbb E_p[r - 1] = 0` is a
    control variate added to k1; non-negative because :math:`\log r \le r - 1`. Computed
    from ℓ with :func:`expm1_minus`, so it is exactly 0 at r = 1 and accurate near it,
    where the naive ``(ratio - 1) - log_ratio`` returns rounding noise of either sign.
    The ``approx_kl`` that PPO implementations log. Schulman 2020.

    Parameters
    ----------
    log_ratio : Tensor, shape (...)
        log r at samples x ~ p; see :func:`kl_k1`.

    Returns
    -------
    Tensor, shape (...)
    """
    return expm1_minus(_log_ratio(log_ratio))  # (r − 1) − log r


class KLSummary(NamedTuple):
    """Per-state KLs reduced two ways (see :func:`kl_over_states`)."""

    mean: Tensor  # D̄_KL = E_s KL(π_old(·|s)‖π(·|s)), shape (): TRPO's practical constraint
    max: Tensor  # D^max_KL = max_s KL(...), shape (): the constraint of the improvement bound
    argmax: Tensor  # flat index of the state attaining the max, shape ()


def kl_over_states(kl: Tensor) -> KLSummary:
    r"""The mean and the max of per-state KLs.

    .. math:: \bar D_{\mathrm{KL}} = \frac1B\sum_s \mathrm{KL}\big(\pi_{old}(\cdot|s)\|\pi(\cdot|s)\big),
              \qquad D^{\max}_{\mathrm{KL}} = \max_s \mathrm{KL}\big(\pi_{old}(\cdot|s)\|\pi(\cdot|s)\big)

    TRPO's monotonic-improvement bound holds with the max over *every* state; a step is
    constrained in practice with the mean over visited states, which is easy to estimate
    and differentiate. max ≥ mean always; they differ most when one state moves a lot.
    Schulman et al. 2015, §4-5.

    Parameters
    ----------
    kl : Tensor, shape (...)
        One KL per state, e.g. ``categorical_kl(logits_old, logits)`` over a batch.

    Returns
    -------
    KLSummary
    """
    kl = as_tensor("kl", kl)
    no_nan(kl=kl)
    if kl.numel() == 0:
        raise ValueError("kl: empty batch of states")
    flat = kl.reshape(-1)
    return KLSummary(flat.mean(), flat.max(), flat.argmax())  # E_s KL, max_s KL


def mean_categorical_kl(logits_old: Tensor, logits: Tensor) -> Tensor:
    r"""TRPO's :math:`\bar D_{\mathrm{KL}}(\theta_{old}, \theta)`: mean over states of KL(π_old‖π_θ).

    ``logits_old`` are detached (the old policy is data), so the gradient flows only
    through ``logits``. At θ = θ_old its value and gradient are 0 and its Hessian is the
    Fisher information: what :func:`rlteach.natural_gradient.fisher_vector_product` differentiates.

    Parameters
    ----------
    logits_old, logits : Tensor, shape (B, K) or (..., K)

    Returns
    -------
    Tensor, shape ()
    """
    kl = categorical_kl(as_tensor("logits_old", logits_old).detach(), logits)
    non_empty("logits", kl.reshape(-1), dim=0)
    return kl.mean()  # E_s KL(π_old(·|s) ‖ π_θ(·|s))


def linear_softmax_logits(theta: Tensor, obs: Tensor, num_actions: int) -> Tensor:
    r"""A small policy for lectures and tests: logits linear in the observation.

    .. math:: \pi_\theta(a|s) = \mathrm{softmax}(s^\top W)_a,\qquad W = \theta.\mathrm{view}(d, K)

    Parameters
    ----------
    theta : Tensor, shape (d·K,)
        The flat parameter vector.
    obs : Tensor, shape (B, d)
        Features of B states.
    num_actions : int
        K.

    Returns
    -------
    Tensor, shape (B, K)
        Logits. Adding a vector u to every column of W shifts each state's logits by a
        constant and leaves π unchanged: the Fisher of this policy is singular.
    """
    K = positive_int("num_actions", num_actions)
    if obs.ndim != 2:
        raise ValueError(f"obs: expected shape (B, d), got {tuple(obs.shape)}")
    if theta.ndim != 1 or theta.shape[0] != obs.shape[1] * K:
        raise ValueError(f"mismatched shapes: theta {tuple(theta.shape)} must be (d·K,) = ({obs.shape[1] * K},) for obs {tuple(obs.shape)}")
    return obs @ theta.view(obs.shape[1], K)  # logits = sᵀW


def categorical_fisher(logits_fn: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    r"""The Fisher information matrix of a categorical policy, explicitly (small models only).

    .. math:: F(\theta) = \mathbb E_{s}\,\mathbb E_{a\sim\pi_\theta(\cdot|s)}
              \big[\nabla_\theta\log\pi_\theta(a|s)\,\nabla_\theta\log\pi_\theta(a|s)^\top\big]

    The inner expectation is a sum over the K actions, not a sample; the outer one the
    mean over the batch of states. It is the Hessian of
    :math:`\bar D_{\mathrm{KL}}(\theta, \theta')` in θ' at θ' = θ (Amari 1998,
    "Natural Gradient Works Efficiently in Learning"; Kakade 2001, "A Natural Policy Gradient").
    Builds the full (B, K, P) Jacobian: for P up to a few hundred.

    Parameters
    ----------
    logits_fn : callable
        θ ↦ logits of shape (B, K), e.g. ``lambda th: linear_softmax_logits(th, obs, K)``.
    theta : Tensor, shape (P,)

    Returns
    -------
    Tensor, shape (P, P)
        Symmetric positive semidefinite.
    """
    theta = as_tensor("theta", theta).detach()
    if theta.ndim != 1:
        raise ValueError(f"theta: expected a flat parameter vector (P,), got {tuple(theta.shape)}")
    logp = torch.log_softmax(logits_fn(theta), dim=-1)
    if logp.ndim != 2:
        raise ValueError(f"logits_fn must return logits of shape (B, K), got {tuple(logp.shape)}")
    jac = torch.autograd.functional.jacobian(lambda th: torch.log_softmax(logits_fn(th), dim=-1), theta)  # ∇_θ log π(a|s), (B, K, P)
    probs = logp.detach().exp()  # π(a|s), (B, K)
    return torch.einsum("bk,bkp,bkq->pq", probs, jac, jac) / logp.shape[0]  # E_s Σ_a π ∇logπ ∇logπᵀ


def kl_quadratic(fisher: Tensor, delta: Tensor) -> Tensor:
    r"""The second-order approximation :math:`\mathrm{KL}(\pi_\theta\|\pi_{\theta+\delta}) \approx \tfrac12\delta^\top F\delta`.

    KL and its gradient vanish at δ = 0, so the quadratic term leads; the error is
    :math:`O(\|\delta\|^3)`. The approximation that turns TRPO's KL ball into the ellipsoid
    :math:`\tfrac12 s^\top F s \le \delta_{\max}` of the natural-gradient step.

    Parameters
    ----------
    fisher : Tensor, shape (P, P)
    delta : Tensor, shape (..., P)

    Returns
    -------
    Tensor, shape (...)
    """
    fisher = as_tensor("fisher", fisher)
    delta = as_tensor("delta", delta)
    if fisher.ndim != 2 or fisher.shape[0] != fisher.shape[1] or delta.ndim == 0 or delta.shape[-1] != fisher.shape[0]:
        raise ValueError(f"mismatched shapes: fisher {tuple(fisher.shape)} must be (P, P) for delta {tuple(delta.shape)} = (..., P)")
    return 0.5 * ((delta @ fisher) * delta).sum(dim=-1)  # ½ δᵀFδ


# ------------------------------------------------------- fitting a one-bump model, either direction


def gaussian_mixture_logits(x: Tensor, means: Tensor, stds: Tensor, weights: Tensor | None = None) -> Tensor:
    r"""Log-density (up to a constant) of a Gaussian mixture on grid points, for a discretised target.

    .. math:: \log p(x) = \log \sum_j w_j\, \frac{1}{\sigma_j} e^{-\frac12 ((x - \mu_j)/\sigma_j)^2} + \text{const}

    Parameters
    ----------
    x : Tensor, shape (N,)
        Grid points (the bins of a categorical distribution).
    means, stds : Tensor, shape (J,)
        The components; stds > 0.
    weights : Tensor, shape (J,), optional
        Mixture weights (normalised here); default equal.

    Returns
    -------
    Tensor, shape (N,)
        Logits: ``torch.softmax`` of them is the discretised mixture.
    """
    x, means, stds = as_tensor("x", x), as_tensor("means", means), as_tensor("stds", stds)
    same_shape(means=means, stds=stds)
    if bool((stds <= 0).any()):
        raise ValueError("stds must be > 0")
    w = torch.ones_like(means) if weights is None else as_tensor("weights", weights).to(means)
    if w.shape != means.shape or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError("weights: expected one non-negative weight per component, not all zero")
    log_w = torch.log(w / w.sum()) - torch.log(stds)  # log(w_j/σ_j)
    z = (x[:, None] - means[None, :]) / stds[None, :]
    return torch.logsumexp(log_w[None, :] - 0.5 * z**2, dim=-1)  # log Σ_j w_j N(x; μ_j, σ_j²)


class GaussianFit(NamedTuple):
    """The best one-bump model of a target on a grid, in one KL direction (see :func:`fit_gaussian_by_kl`)."""

    mean: float  # μ of the best discretised Gaussian
    std: float  # σ of the best discretised Gaussian
    kl: float  # its KL in the chosen direction
    logits: Tensor  # (N,): its logits on the grid
    kls: Tensor  # (M, S): the KL for every (mean, std) of the search grid


def fit_gaussian_by_kl(x: Tensor, target_logits: Tensor, means: Tensor, stds: Tensor, direction: str) -> GaussianFit:
    r"""Fit a discretised Gaussian q to a target p on a grid by minimising a KL, by exhaustive search.

    - ``direction="forward"``: :math:`\min_q \mathrm{KL}(p\|q)`, the expectation under the
      target: q must put mass wherever p has it (mode covering, maximum likelihood).
    - ``direction="reverse"``: :math:`\min_q \mathrm{KL}(q\|p)`, the expectation under the
      model: q may ignore part of p but must avoid where p has none (mode seeking).

    Every (μ, σ) of the grid ``means`` × ``stds`` is evaluated (no local optimiser can get
    stuck), with the model :math:`q(x) \propto e^{-\frac12((x-\mu)/\sigma)^2}` normalised
    over the grid points. Bishop 2006, "Pattern Recognition and Machine Learning", §10.1.2.

    Parameters
    ----------
    x : Tensor, shape (N,)
        The grid.
    target_logits : Tensor, shape (N,)
        The target's logits on the grid (e.g. :func:`gaussian_mixture_logits`).
    means, stds : Tensor, shapes (M,) and (S,)
        The search grid; stds > 0.
    direction : str
        ``"forward"`` or ``"reverse"``.

    Returns
    -------
    GaussianFit
        Ties go to the first (mean, std) in the grid's order.
    """
    if direction not in ("forward", "reverse"):
        raise ValueError(f"direction must be 'forward' or 'reverse', got {direction!r}")
    x, target_logits = as_tensor("x", x), as_tensor("target_logits", target_logits)
    means, stds = as_tensor("means", means), as_tensor("stds", stds)
    if x.ndim != 1 or target_logits.shape != x.shape:
        raise ValueError(f"mismatched shapes: x {tuple(x.shape)} and target_logits {tuple(target_logits.shape)} must be (N,)")
    if bool((stds <= 0).any()):
        raise ValueError("stds must be > 0")
    model = -0.5 * ((x - means[:, None, None]) / stds[None, :, None]) ** 2  # (M, S, N) logits of q
    target = target_logits.expand_as(model)
    kls = forward_kl(target, model) if direction == "forward" else reverse_kl(target, model)  # (M, S)
    best = int(kls.argmin())
    m, s = divmod(best, stds.shape[0])
    return GaussianFit(float(means[m]), float(stds[s]), float(kls[m, s]), model[m, s], kls)


# ------------------------------------------------------------ balls on the probability simplex


def simplex_directions(num: int, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""``num`` unit directions of the plane :math:`\{u \in \mathbb R^3 : u_1 + u_2 + u_3 = 0\}`.

    The directions in which a distribution over 3 actions can move and stay a distribution:
    :math:`u(\varphi) = \cos\varphi\, e_1 + \sin\varphi\, e_2` with the orthonormal basis
    :math:`e_1 = (1, -1, 0)/\sqrt2`, :math:`e_2 = (1, 1, -2)/\sqrt6`, for φ evenly spaced
    over [0, 2π) (the first is e₁).

    Returns
    -------
    Tensor, shape (num, 3)
    """
    num = positive_int("num", num)
    phi = torch.arange(num, dtype=dtype) * (2 * math.pi / num)
    e1 = torch.tensor([1.0, -1.0, 0.0], dtype=dtype) / math.sqrt(2.0)
    e2 = torch.tensor([1.0, 1.0, -2.0], dtype=dtype) / math.sqrt(6.0)
    return phi.cos()[:, None] * e1 + phi.sin()[:, None] * e2


def _probabilities(probs: object) -> Tensor:
    p = as_tensor("probs", probs)
    if p.ndim != 1 or p.shape[0] < 2:
        raise ValueError(f"probs: expected one distribution of shape (K,), K >= 2, got {tuple(p.shape)}")
    if bool((p <= 0).any()) or abs(float(p.sum()) - 1.0) > 1e-9 * p.shape[0] + 10 * torch.finfo(p.dtype).eps:
        raise ValueError("probs: expected probabilities > 0 that sum to 1")
    return p


def _directions(p: Tensor, directions: object) -> Tensor:
    u = as_tensor("directions", directions).to(p)
    if u.ndim != 2 or u.shape[1] != p.shape[0]:
        raise ValueError(f"mismatched shapes: directions {tuple(u.shape)} must be (num, {p.shape[0]}) for probs {tuple(p.shape)}")
    if float(u.sum(-1).abs().max()) > 1e-9 * float(u.abs().max()):
        raise ValueError("directions must sum to 0 (they move along the simplex)")
    if bool((u.norm(dim=-1) == 0).any()):
        raise ValueError("directions must be nonzero")
    return u


def kl_ball_boundary(probs: Tensor, max_kl: float, directions: Tensor, iterations: int = 100) -> Tensor:
    r"""The boundary of the KL ball :math:`\{q \in \Delta : \mathrm{KL}(\pi\|q) \le \delta\}` along given directions.

    Along each ray :math:`q(t) = \pi + t u` (Σu = 0), :math:`t \mapsto \mathrm{KL}(\pi\|q(t))`
    is 0 at t = 0, increasing and convex, and it tends to +∞ as q(t) reaches a face of the
    simplex (:math:`q_i \to 0` where :math:`\pi_i > 0`). So every ray meets the sphere
    :math:`\mathrm{KL} = \delta` exactly once, strictly inside the simplex: the KL ball never
    contains a distribution that forbids an action π takes. The crossing is found by
    bisection on :math:`t \in (0, t_{\max})`, :math:`t_{\max} = \min_{u_i<0} \pi_i/(-u_i)`.
    The direction is TRPO's, :math:`\mathrm{KL}(\pi_{old}\|\pi)`, with π the old policy.

    Parameters
    ----------
    probs : Tensor, shape (K,)
        π, all entries > 0.
    max_kl : float
        δ > 0.
    directions : Tensor, shape (num, K)
        Nonzero, each summing to 0 (e.g. :func:`simplex_directions`).
    iterations : int
        Bisection steps (100 halve the bracket to float64 resolution).

    Returns
    -------
    Tensor, shape (num, K)
        Points of the simplex with :math:`\mathrm{KL}(\pi\|q) = \delta`.
    """
    p = _probabilities(probs)
    u = _directions(p, directions)
    delta = positive_number("max_kl", max_kl, what="the KL radius δ")
    with torch.no_grad():
        ratio = torch.where(u < 0, p / (-u).clamp(min=torch.finfo(p.dtype).tiny), torch.full_like(u, math.inf))
        high = ratio.min(dim=-1).values  # the ray leaves the simplex at t_max
        low = torch.zeros_like(high)
        logp = p.log()
        for _ in range(positive_int("iterations", iterations)):
            mid = 0.5 * (low + high)
            q = (p + mid[:, None] * u).clamp(min=torch.finfo(p.dtype).tiny)
            inside = (p * (logp - q.log())).sum(-1) <= delta  # KL(π‖q) ≤ δ
            low = torch.where(inside, mid, low)
            high = torch.where(inside, high, mid)
    return p + low[:, None] * u  # q on the sphere KL(π‖q) = δ (from inside)


def fisher_ball_boundary(probs: Tensor, max_kl: float, directions: Tensor) -> Tensor:
    r"""The boundary of the quadratic KL ball :math:`\{q : \tfrac12 (q - \pi)^\top \operatorname{diag}(1/\pi)(q - \pi) \le \delta\}`.

    The second-order approximation of :func:`kl_ball_boundary`: on the simplex the Fisher
    information of a categorical distribution, in the coordinates q, is diag(1/π), so
    :math:`\mathrm{KL}(\pi\|q) \approx \tfrac12 \|q - \pi\|_F^2` and the ball is an ellipse
    of Fisher radius :math:`\sqrt{2\delta}`, with the closed form
    :math:`t = \sqrt{2\delta / \sum_i u_i^2/\pi_i}` along each direction u. Unlike the true
    KL ball it can poke out of the simplex when δ is not small.

    Parameters
    ----------
    probs : Tensor, shape (K,)
    max_kl : float
    directions : Tensor, shape (num, K)

    Returns
    -------
    Tensor, shape (num, K)
    """
    p = _probabilities(probs)
    u = _directions(p, directions)
    delta = positive_number("max_kl", max_kl, what="the KL radius δ")
    t = torch.sqrt(2 * delta / (u**2 / p).sum(-1))  # ½ t² uᵀdiag(1/π)u = δ
    return p + t[:, None] * u
