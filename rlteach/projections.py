r"""Projections onto closed convex sets: the prox of an indicator function.

.. math:: \Pi_C(v) = \operatorname*{argmin}_{x\in C}\|x - v\|_2
          = \operatorname{prox}_{\lambda I_C}(v)\quad\text{for every } \lambda > 0.

A projection is characterized by the variational inequality
:math:`\langle v - \Pi_C v,\ y - \Pi_C v\rangle \le 0` for every :math:`y \in C`; it is
idempotent and firmly non-expansive. Parikh & Boyd 2014, "Proximal Algorithms", §6.2;
Beck 2017, "First-Order Methods in Optimization", ch. 6. The conventions (numpy or torch in
and out, shapes ``(..., n)``, errors) are those of :mod:`rlteach.prox`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from rlteach._validate import (
    ArrayLike,
    ArrayT,
    as_array,
    broadcast_to_v,
    center_of,
    check_finite,
    check_radius,
    param,
    restore,
    vector,
)

__all__ = [
    "SET_NAMES",
    "l1_ball_threshold",
    "project_affine",
    "project_box",
    "project_halfspace",
    "project_l1_ball",
    "project_l2_ball",
    "project_linf_ball",
    "project_onto",
    "project_simplex",
    "simplex_threshold",
]


def project_box(v: ArrayT, lower: ArrayLike = 0.0, upper: ArrayLike = 1.0) -> ArrayT:
    r"""Projection onto the box :math:`\{x : \ell \le x \le u\}`, by clipping each coordinate.

    .. math:: \Pi(v)_i = \min(\max(v_i, \ell_i), u_i)

    Parameters
    ----------
    v : array or Tensor, shape (..., n)
    lower, upper : float, array or Tensor, broadcastable to ``v``
        Bounds with ``lower <= upper`` everywhere; ±inf leaves a side open.
        The default is the unit box [0, 1]ⁿ.

    Returns
    -------
    array or Tensor, shape (..., n)

    Raises
    ------
    ValueError
        ``lower > upper`` somewhere (the box is empty), NaN, shapes that do not broadcast.
    """
    t, was_numpy = vector(v)
    lo, hi = param(lower, t, "lower"), param(upper, t, "upper")
    check_finite(lo, "lower", allow_inf=True)
    check_finite(hi, "upper", allow_inf=True)
    broadcast_to_v(lo, t.shape, "lower", "v")
    broadcast_to_v(hi, t.shape, "upper", "v")
    empty = lo > hi
    if bool(empty.any()):
        where = tuple(int(i) for i in empty.nonzero()[0])
        raise ValueError(
            f"the box is empty: lower {float(lo[where])} > upper {float(hi[where])} at index {where}"
        )
    x = torch.minimum(torch.maximum(t, lo), hi)  # min(max(v, ℓ), u)
    return restore(x, was_numpy)


def project_l2_ball(v: ArrayT, radius: float = 1.0, center: ArrayLike | None = None) -> ArrayT:
    r"""Projection onto the Euclidean ball :math:`\{x : \|x - c\|_2 \le r\}`.

    .. math:: \Pi(v) = c + \frac{r}{\max(r,\ \|v - c\|_2)}\,(v - c)

    Points inside are returned unchanged; points outside move radially to the sphere.

    Parameters
    ----------
    v : array or Tensor, shape (..., n)
    radius : float
        r > 0.
    center : array or Tensor, shape (n,) or (..., n), optional
        c; the origin by default.

    Returns
    -------
    array or Tensor, shape (..., n)

    Raises
    ------
    ValueError
        r ≤ 0, NaN/±inf, a centre of the wrong length or batch shape.
    """
    t, was_numpy = vector(v)
    radius = check_radius(radius)
    c = center_of(center, t)
    w = t - c
    norm = torch.linalg.vector_norm(w, dim=-1, keepdim=True)  # ‖v − c‖₂
    x = c + w * (radius / torch.clamp(norm, min=radius))  # c + r (v − c)/max(r, ‖v − c‖)
    return restore(x, was_numpy)


def project_linf_ball(v: ArrayT, radius: float = 1.0, center: ArrayLike | None = None) -> ArrayT:
    r"""Projection onto the ℓ∞ ball :math:`\{x : \|x - c\|_\infty \le r\}` (a cube).

    .. math:: \Pi(v)_i = c_i + \min(\max(v_i - c_i, -r), r)

    It is the unit ball of the dual norm of ℓ1, so by Moreau's decomposition
    :math:`v = \operatorname{prox}_{\lambda\|\cdot\|_1}(v) + \lambda\,\Pi_{\|\cdot\|_\infty\le 1}(v/\lambda)`.

    Parameters
    ----------
    v : array or Tensor, shape (..., n)
    radius : float
        r > 0.
    center : array or Tensor, shape (n,) or (..., n), optional

    Returns
    -------
    array or Tensor, shape (..., n)

    Raises
    ------
    ValueError
        r ≤ 0, NaN/±inf, a centre of the wrong length or batch shape.
    """
    t, was_numpy = vector(v)
    radius = check_radius(radius)
    c = center_of(center, t)
    x = c + torch.clamp(t - c, min=-radius, max=radius)  # c + clip(v − c, −r, r)
    return restore(x, was_numpy)


def _simplex_core(t: Tensor, total: float) -> Tensor:
    """Sort-based projection of the rows of ``t`` (..., n) onto {x ≥ 0, Σx = total}."""
    u, _ = torch.sort(t, dim=-1, descending=True)  # u₁ ≥ u₂ ≥ … ≥ uₙ
    excess = torch.cumsum(u, dim=-1) - total  # Σ_{i≤j} u_i − z
    j = torch.arange(1, t.shape[-1] + 1, dtype=t.dtype, device=t.device)
    active = u - excess / j > 0  # u_j − (Σ_{i≤j} u_i − z)/j > 0
    rho = torch.clamp((active * j).amax(dim=-1, keepdim=True), min=1)  # ρ = max{j : active}
    theta = excess.gather(-1, rho.long() - 1) / rho  # θ = (Σ_{i≤ρ} u_i − z)/ρ
    return torch.clamp(t - theta, min=0.0)  # max(v − θ, 0)


def project_simplex(v: ArrayT, total: float = 1.0) -> ArrayT:
    r"""Projection onto the simplex :math:`\Delta_z = \{x : x \ge 0,\ \textstyle\sum_i x_i = z\}`.

    Sort-based, O(n log n) (Held, Wolfe & Crowder 1974; Duchi et al. 2008, Fig. 1):
    with :math:`u` the entries of v sorted in decreasing order,

    .. math:: \rho = \max\Big\{j : u_j - \tfrac1j\big(\textstyle\sum_{i\le j} u_i - z\big) > 0\Big\},\quad
              \theta = \tfrac1\rho\big(\textstyle\sum_{i\le\rho} u_i - z\big),\quad
              \Pi(v)_i = \max(v_i - \theta,\ 0).

    θ is the unique shift with :math:`\sum_i \max(v_i - \theta, 0) = z`.

    Parameters
    ----------
    v : array or Tensor, shape (..., n), n ≥ 1
    total : float
        z > 0; the probability simplex is z = 1.

    Returns
    -------
    array or Tensor, shape (..., n)
        Non-negative, each row summing to ``total``.

    Raises
    ------
    ValueError
        z ≤ 0, n = 0 (the set is empty), NaN/±inf.
    """
    t, was_numpy = vector(v)
    total = check_radius(total, "total")
    if t.shape[-1] == 0:
        raise ValueError("the simplex in dimension n = 0 is empty: v has no entries along its last dimension")
    return restore(_simplex_core(t, total), was_numpy)


def project_l1_ball(v: ArrayT, radius: float = 1.0, center: ArrayLike | None = None) -> ArrayT:
    r"""Projection onto the ℓ1 ball :math:`\{x : \|x - c\|_1 \le r\}`.

    Inside the ball v is returned. Outside, the projection is soft thresholding at the
    level θ that lands on the sphere, found as the simplex projection of :math:`|v - c|`
    (Duchi et al. 2008, Sec. 4):

    .. math:: \Pi(v) = c + \operatorname{sign}(v - c)\odot\Pi_{\Delta_r}(|v - c|)
              \quad\text{if } \|v - c\|_1 > r.

    Parameters
    ----------
    v : array or Tensor, shape (..., n)
    radius : float
        r > 0.
    center : array or Tensor, shape (n,) or (..., n), optional

    Returns
    -------
    array or Tensor, shape (..., n)

    Raises
    ------
    ValueError
        r ≤ 0, NaN/±inf, a centre of the wrong length or batch shape.
    """
    t, was_numpy = vector(v)
    radius = check_radius(radius)
    c = center_of(center, t)
    w = t - c
    if w.shape[-1] == 0:
        return restore(t, was_numpy)
    inside = w.abs().sum(dim=-1, keepdim=True) <= radius  # ‖v − c‖₁ ≤ r
    onto = torch.sign(w) * _simplex_core(w.abs(), radius)  # sign(w) Π_Δr(|w|)
    return restore(c + torch.where(inside, w, onto), was_numpy)


def project_halfspace(v: ArrayT, a: ArrayLike, b: ArrayLike) -> ArrayT:
    r"""Projection onto the half-space :math:`\{x : a^\top x \le b\}`.

    .. math:: \Pi(v) = v - \frac{\max(a^\top v - b,\ 0)}{\|a\|_2^2}\, a

    Parameters
    ----------
    v : array or Tensor, shape (..., n)
    a : array or Tensor, shape (n,) or (..., n)
        The outward normal; nonzero.
    b : float, array or Tensor, broadcastable to (...)
        The offset, one per batch entry or shared.

    Returns
    -------
    array or Tensor, shape (..., n)

    Raises
    ------
    ValueError
        ``a`` = 0, mismatched shapes, NaN/±inf.
    """
    t, was_numpy = vector(v)
    normal, offset = param(a, t, "a"), param(b, t, "b")
    check_finite(normal, "a")
    check_finite(offset, "b")
    broadcast_to_v(normal, t.shape, "a", "v", vector=True)
    broadcast_to_v(offset, t.shape[:-1], "b", "the batch shape of v")
    sq_norm = (normal * normal).sum(dim=-1)  # ‖a‖²
    if bool((sq_norm == 0).any()):
        raise ValueError("a must be nonzero: with a = 0 the set is empty (b < 0) or all of space (b ≥ 0)")
    excess = torch.clamp((t * normal).sum(dim=-1) - offset, min=0.0)  # max(aᵀv − b, 0)
    x = t - (excess / sq_norm).unsqueeze(-1) * normal  # v − max(aᵀv − b, 0) a/‖a‖²
    return restore(x, was_numpy)


def project_affine(v: ArrayT, A: ArrayLike, b: ArrayLike) -> ArrayT:
    r"""Projection onto the affine set :math:`\{x : Ax = b\}`, A of full row rank.

    .. math:: \Pi(v) = v - A^\top (A A^\top)^{-1}(A v - b)

    The m × m system is solved, never inverted. The correction lies in the row space of
    A, so :math:`v - \Pi(v)` is orthogonal to the set.

    Parameters
    ----------
    v : array or Tensor, shape (..., n)
    A : array or Tensor, shape (m, n)
        m ≤ n linearly independent rows.
    b : array or Tensor, shape (m,) or (..., m)

    Returns
    -------
    array or Tensor, shape (..., n)

    Raises
    ------
    ValueError
        ``A`` not 2-D, columns ≠ n, ``b`` of the wrong length, rank-deficient ``A``, NaN/±inf.
    """
    t, was_numpy = vector(v)
    M, rhs = param(A, t, "A"), param(b, t, "b")
    check_finite(M, "A")
    check_finite(rhs, "b")
    if M.ndim != 2 or M.shape[1] != t.shape[-1]:
        raise ValueError(
            f"mismatched shapes: A {tuple(M.shape)} must be (m, n) with n = {t.shape[-1]} for v {tuple(t.shape)}"
        )
    m = M.shape[0]
    broadcast_to_v(rhs, t.shape[:-1] + (m,), "b", "A v", vector=True)
    if m == 0:
        return restore(t, was_numpy)
    rank = int(torch.linalg.matrix_rank(M))
    if rank < m:
        raise ValueError(f"A must have full row rank m = {m} (linearly independent rows); it has rank {rank}")
    gram = M @ M.T  # A Aᵀ
    violation = t @ M.T - rhs  # A v − b
    y = torch.linalg.solve(gram, violation.unsqueeze(-1)).squeeze(-1)  # (A Aᵀ)⁻¹(A v − b)
    x = t - y @ M  # v − Aᵀ (A Aᵀ)⁻¹(A v − b)
    return restore(x, was_numpy)




def simplex_threshold(v: ArrayT, total: float = 1.0) -> ArrayT:
    r"""The shift θ of the simplex projection: the root of :math:`\sum_i \max(v_i - \theta, 0) = z`.

    The KKT conditions of :math:`\min_x \tfrac12\|x - v\|^2` subject to :math:`x \ge 0`,
    :math:`\sum_i x_i = z` (multiplier θ for the sum, :math:`\mu_i \ge 0` for the signs) give
    :math:`x_i = v_i - \theta + \mu_i` with :math:`\mu_i x_i = 0`, i.e.
    :math:`x_i = \max(v_i - \theta, 0)`; the sum condition then fixes θ. The left side
    :math:`\varphi(\theta) = \sum_i \max(v_i - \theta, 0)` is continuous, piecewise linear and
    strictly decreasing where positive, so the root is unique; it lies on the piece where
    exactly the ρ largest entries are positive, :math:`\theta = (\sum_{i \le \rho} u_i - z)/\rho`
    with u sorted in decreasing order.

    Parameters
    ----------
    v : array or Tensor, shape (..., n), n ≥ 1
    total : float
        z > 0.

    Returns
    -------
    array or Tensor, shape (...)
        θ for each row; :math:`\max(v - \theta, 0)` is the projection.
    """
    t, was_numpy = vector(v)
    total = check_radius(total, "total")
    if t.shape[-1] == 0:
        raise ValueError("the simplex in dimension n = 0 is empty: v has no entries along its last dimension")
    u, _ = torch.sort(t, dim=-1, descending=True)
    cumulative = torch.cumsum(u, dim=-1) - total  # Σ_{i≤j} u_i − z
    j = torch.arange(1, t.shape[-1] + 1, dtype=t.dtype, device=t.device)
    candidates = cumulative / j  # θ if exactly the j largest entries were positive
    count = (u > candidates).sum(dim=-1, keepdim=True).clamp_min(1)  # ρ: the pieces where u_j > θ_j
    return restore(candidates.gather(-1, count - 1).squeeze(-1), was_numpy)  # θ = (Σ_{i≤ρ} u_i − z)/ρ


def l1_ball_threshold(v: ArrayT, radius: float = 1.0, center: ArrayLike | None = None) -> ArrayT:
    r"""The soft-thresholding level θ ≥ 0 of the projection onto the ℓ1 ball :math:`\{\|x - c\|_1 \le r\}`.

    With the multiplier θ ≥ 0 of the constraint, the Lagrangian
    :math:`\tfrac12\|x - v\|^2 + \theta(\|x - c\|_1 - r)` is minimised by soft thresholding,
    :math:`x = c + \operatorname{sign}(w)\max(|w| - \theta, 0)` with w = v − c. Complementary
    slackness decides: θ = 0 when :math:`\|w\|_1 \le r` (v is inside), otherwise the
    constraint is tight, :math:`\sum_i \max(|w_i| - \theta, 0) = r`, which is the simplex
    threshold of |w| (:func:`simplex_threshold`).

    Parameters
    ----------
    v : array or Tensor, shape (..., n)
    radius : float
        r > 0.
    center : array or Tensor, shape (n,) or (..., n), optional

    Returns
    -------
    array or Tensor, shape (...)
        θ ≥ 0 for each row; ``prox_l1(v − c, θ) + c`` is the projection.
    """
    t, was_numpy = vector(v)
    radius = check_radius(radius)
    w = (t - center_of(center, t)).abs()
    if w.shape[-1] == 0:
        return restore(t.new_zeros(t.shape[:-1]), was_numpy)
    theta, _ = as_array(simplex_threshold(w, radius))
    inside = w.sum(dim=-1) <= radius  # ‖v − c‖₁ ≤ r: θ = 0
    return restore(torch.where(inside, torch.zeros_like(theta), theta.to(t)), was_numpy)


PROJECTIONS: dict[str, Callable[..., Any]] = {
    "box": project_box,
    "l2_ball": project_l2_ball,
    "l1_ball": project_l1_ball,
    "linf_ball": project_linf_ball,
    "simplex": project_simplex,
    "halfspace": project_halfspace,
    "affine": project_affine,
}
SET_NAMES: tuple[str, ...] = tuple(PROJECTIONS)


def project_onto(set_name: str, v: ArrayT, **params: Any) -> ArrayT:
    r"""Projection of v onto a set chosen by name: :math:`\Pi_C(v) = \operatorname{argmin}_{x\in C}\|x - v\|_2`.

    ======================  =====================================  ===========================
    ``set_name``            the set                                ``params`` (defaults)
    ======================  =====================================  ===========================
    ``"box"``               :math:`\ell \le x \le u`               ``lower=0, upper=1``
    ``"l2_ball"``           :math:`\|x - c\|_2 \le r`              ``radius=1, center=None``
    ``"l1_ball"``           :math:`\|x - c\|_1 \le r`              ``radius=1, center=None``
    ``"linf_ball"``         :math:`\|x - c\|_\infty \le r`         ``radius=1, center=None``
    ``"simplex"``           :math:`x \ge 0,\ \sum x = z`           ``total=1``
    ``"halfspace"``         :math:`a^\top x \le b`                 ``a, b`` (required)
    ``"affine"``            :math:`Ax = b`                         ``A, b`` (required)
    ======================  =====================================  ===========================

    Parameters
    ----------
    set_name : str
        One of :data:`SET_NAMES`.
    v : array or Tensor, shape (..., n)
    **params
        Passed to the projection (``project_<set_name>``).

    Returns
    -------
    array or Tensor, shape (..., n)

    Raises
    ------
    ValueError
        An unknown name (the message lists the valid ones), or what the projection raises.
    """
    if set_name not in PROJECTIONS:
        raise ValueError(f"unknown set name {set_name!r}; valid names: {', '.join(SET_NAMES)}")
    return PROJECTIONS[set_name](v, **params)
