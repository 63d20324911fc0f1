r"""Proximal operators, projections onto convex sets, and the algorithms built on them.

The proximal operator of a closed convex function f with step :math:`\lambda > 0` is

.. math:: \operatorname{prox}_{\lambda f}(v) = \operatorname*{argmin}_x
          \Big( f(x) + \frac{1}{2\lambda}\|x - v\|_2^2 \Big),

and the projection onto a closed convex set C is the prox of its indicator, for every λ:
:math:`\Pi_C(v) = \operatorname{prox}_{\lambda I_C}(v) = \operatorname{argmin}_{x\in C}\|x - v\|_2`.
For small λ and smooth f the prox is a gradient step,
:math:`\operatorname{prox}_{\lambda f}(v) = v - \lambda\nabla f(v) + O(\lambda^2)`.
Parikh & Boyd 2014, "Proximal Algorithms"; Beck 2017, "First-Order Methods in Optimization".

Conventions
-----------
- **Arrays.** numpy in, numpy out; torch in, torch out, on the input's device and dtype.
  Python numbers and lists count as numpy. Integer inputs become float64 (numpy) or the
  default float dtype (torch). Parameters (bounds, centres, ``a``, ``A``, ``b``) may be
  numbers, numpy arrays or tensors; they are cast to the dtype and device of ``v``.
  Torch outputs keep the autograd graph of ``v`` (except :func:`prox_numerical`).
- **Shapes.** Vectors lie along the last dimension: ``v`` has shape ``(..., n)`` and the
  leading dimensions are a batch of independent problems. :func:`prox_l1` and
  :func:`prox_quadratic` without ``A`` act elementwise on any shape.
- **Steps.** ``lam`` is the prox step λ (the course glossary name); closed forms accept
  λ ≥ 0 (λ = 0 is the identity), iterative solvers need λ > 0.
- **Return values.** Closed forms return the point. Every function that iterates (it
  has ``max_iter`` and ``tol``) returns ``(x, info)``: the final point and an
  :class:`IterInfo` with the iterations used, whether ``tol`` was reached, and the last
  residual. Not converging is reported in ``info``, never raised.
- **Errors.** ``ValueError`` with a message saying what is wrong: a negative λ, an
  empty set, a radius ≤ 0, mismatched shapes, NaN or ±inf in ``v``, an unknown name.
- **Algorithms and callables.** :func:`proximal_point`, :func:`ista`, :func:`fista`,
  :func:`alternating_projections` and :func:`dykstra` only add, subtract and scale
  arrays, so they run on numpy or torch, whichever ``x0``/``v`` is, and hand the same
  kind to the callables they are given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch import Tensor

from rlteach.seal import graded_reference

__all__ = [
    "IterInfo",
    "PROX_NAMES",
    "SET_NAMES",
    "prox_l1",
    "prox_quadratic",
    "prox_l2",
    "prox_numerical",
    "project_box",
    "project_l2_ball",
    "project_l1_ball",
    "project_linf_ball",
    "project_simplex",
    "project_halfspace",
    "project_affine",
    "alternating_projections",
    "dykstra",
    "proximal_point",
    "ista",
    "fista",
    "lasso_ista_step",
    "prox_of",
    "project_onto",
    "prox_path",
]

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)
ArrayLike = np.ndarray | Tensor | float | Sequence[float]


class IterInfo(NamedTuple):
    """Diagnostics of an iterative solver, returned next to its final point."""

    iterations: int  # iterations (sweeps for projections) actually run
    converged: bool  # True when the residual fell to tol or below
    residual: float  # last value of the stopping quantity (see each function)


# ----------------------------------------------------------------------------- plumbing


def _as_tensor(v: object, name: str = "v") -> tuple[Tensor, bool]:
    """``v`` as a floating tensor, and whether it came in as numpy (or a Python number)."""
    if isinstance(v, Tensor):
        if v.is_complex():
            raise ValueError(f"{name}: complex input is not supported (dtype {v.dtype})")
        return (v if v.is_floating_point() else v.to(torch.get_default_dtype())), False
    a = np.asarray(v)
    if np.iscomplexobj(a):
        raise ValueError(f"{name}: complex input is not supported (dtype {a.dtype})")
    if not np.issubdtype(a.dtype, np.floating):
        if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
            raise ValueError(f"{name}: expected real numbers, got dtype {a.dtype}")
        a = a.astype(np.float64)
    return torch.from_numpy(np.array(a, copy=True)), True


def _restore(x: Tensor, was_numpy: bool) -> Any:
    return x.detach().cpu().numpy() if was_numpy else x


def _param(p: object, like: Tensor, name: str) -> Tensor:
    """A parameter as a tensor on ``like``'s device and dtype."""
    t, _ = _as_tensor(p, name)
    return t.to(device=like.device, dtype=like.dtype)


def _check_finite(t: Tensor, name: str, allow_inf: bool = False) -> None:
    bad = torch.isnan(t)
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name} contains NaN (first at index {where})")
    if not allow_inf:
        bad = torch.isinf(t)
        if bool(bad.any()):
            where = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(f"{name} contains {float(t[where]):+} at index {where}; it must be finite")


def _vector(v: object, name: str = "v") -> tuple[Tensor, bool]:
    """Input ``v`` of shape (..., n), n ≥ 1, finite."""
    t, was_numpy = _as_tensor(v, name)
    if t.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (shape (..., n)), got a scalar")
    _check_finite(t, name)
    return t, was_numpy


def _check_lam(lam: float, name: str = "lam", positive: bool = False) -> float:
    value = float(lam)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be {bound} (it is the prox step λ), got {value}")
    return value


def _check_radius(radius: float, name: str = "radius") -> float:
    value = float(radius)
    if math.isnan(value) or math.isinf(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def _broadcast_to_v(p: Tensor, shape: torch.Size, name: str, target: str, vector: bool = False) -> None:
    """Raise unless ``p`` broadcasts to ``shape`` without enlarging it; a ``vector`` must match its last size."""
    if vector and (p.ndim == 0 or p.shape[-1] != shape[-1]):
        raise ValueError(
            f"mismatched shapes: {name} {tuple(p.shape)} must be a vector of length {shape[-1]} "
            f"to match {target} {tuple(shape)}"
        )
    try:
        out = torch.broadcast_shapes(p.shape, shape)
    except RuntimeError:
        out = None
    if out != shape:
        raise ValueError(f"mismatched shapes: {name} {tuple(p.shape)} does not broadcast to {target} {tuple(shape)}")


def _center(center: ArrayLike | None, t: Tensor) -> Tensor:
    if center is None:
        return torch.zeros_like(t[..., :1])
    c = _param(center, t, "center")
    _check_finite(c, "center")
    _broadcast_to_v(c, t.shape, "center", "v", vector=True)
    return c


def _float_copy(x: ArrayT) -> ArrayT:
    """A floating copy of ``x`` of the same kind (numpy or torch)."""
    if isinstance(x, Tensor):
        _check_finite(x if x.is_floating_point() else x.double(), "x0")
        return x.clone() if x.is_floating_point() else x.to(torch.get_default_dtype())
    a = np.asarray(x)
    a = np.array(a, dtype=a.dtype if np.issubdtype(a.dtype, np.floating) else np.float64, copy=True)
    _check_finite(torch.from_numpy(a), "x0")
    return a


def _max_abs(x: np.ndarray | Tensor) -> float:
    if isinstance(x, Tensor):
        return float(x.detach().abs().max()) if x.numel() else 0.0
    return float(np.max(np.abs(x))) if np.size(x) else 0.0


def _check_iters(max_iter: int, tol: float) -> None:
    if int(max_iter) < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")


# ------------------------------------------------------------------ proximal operators


@graded_reference
def prox_l1(v: ArrayT, lam: float) -> ArrayT:
    r"""Soft thresholding: the proximal operator of :math:`\lambda\|x\|_1`.

    .. math:: \operatorname{prox}_{\lambda\|\cdot\|_1}(v)_i
              = \operatorname{sign}(v_i)\,\max(|v_i| - \lambda,\ 0)

    Entries with :math:`|v_i| \le \lambda` become exactly 0; the others move λ toward 0.

    Parameters
    ----------
    v : array or Tensor, shape (...)
        Any shape; the operator acts elementwise.
    lam : float
        The step λ ≥ 0; λ = 0 returns ``v``.

    Returns
    -------
    array or Tensor, shape (...)
        Same kind, dtype and device as ``v``.

    Raises
    ------
    ValueError
        λ < 0, or NaN/±inf in ``v``.
    """
    t, was_numpy = _as_tensor(v)
    _check_finite(t, "v")
    lam = _check_lam(lam)
    x = torch.sign(t) * torch.clamp(t.abs() - lam, min=0.0)  # sign(v) max(|v| − λ, 0)
    return _restore(x, was_numpy)


def prox_quadratic(v: ArrayT, lam: float, A: ArrayLike | None = None, b: ArrayLike | None = None) -> ArrayT:
    r"""Proximal operator of the quadratic :math:`f(x) = \tfrac12 x^\top A x + b^\top x`.

    .. math:: \operatorname{prox}_{\lambda f}(v) = (I + \lambda A)^{-1}(v - \lambda b)

    With the defaults (A = I, b = 0) this is the prox of :math:`\tfrac{\lambda}{2}\|x\|_2^2`,
    a pure shrinkage :math:`v/(1+\lambda)`. ``A`` must be symmetric positive semidefinite,
    so :math:`I + \lambda A` is invertible; it is solved, never inverted.

    Parameters
    ----------
    v : array or Tensor, shape (..., n)
        Shape (...) of any rank when ``A`` is None (elementwise).
    lam : float
        The step λ ≥ 0.
    A : array or Tensor, shape (n, n), optional
        Symmetric PSD; None means the identity.
    b : float, array or Tensor, optional
        None means 0. With ``A``: a vector of length n, shape (n,) or (..., n);
        without: anything that broadcasts to ``v``.

    Returns
    -------
    array or Tensor, shape of ``v``

    Raises
    ------
    ValueError
        λ < 0, NaN/±inf, ``A`` not (n, n), not symmetric or not PSD, ``b`` not broadcastable.
    """
    t, was_numpy = _as_tensor(v)
    _check_finite(t, "v")
    lam = _check_lam(lam)
    lin = torch.zeros_like(t) if b is None else _param(b, t, "b")
    _check_finite(lin, "b")
    _broadcast_to_v(lin, t.shape, "b", "v", vector=A is not None and b is not None and t.ndim > 0)
    if A is None:
        x = (t - lam * lin) / (1.0 + lam)  # (v − λb)/(1 + λ)
        return _restore(x, was_numpy)
    if t.ndim == 0:
        raise ValueError("v must have shape (..., n) when A is given, got a scalar")
    n = t.shape[-1]
    Q = _param(A, t, "A")
    _check_finite(Q, "A")
    if Q.shape != (n, n):
        raise ValueError(f"mismatched shapes: A {tuple(Q.shape)} must be (n, n) = ({n}, {n}) for v {tuple(t.shape)}")
    slack = 100 * n * torch.finfo(t.dtype).eps * max(1.0, float(Q.abs().max()) if n else 1.0)
    if n and float((Q - Q.T).abs().max()) > slack:
        raise ValueError("A must be symmetric")
    if n and float(torch.linalg.eigvalsh(Q).min()) < -slack:
        raise ValueError("A must be positive semidefinite (f convex); it has a negative eigenvalue")
    M = torch.eye(n, dtype=t.dtype, device=t.device) + lam * Q  # I + λA
    x = torch.linalg.solve(M, (t - lam * lin).unsqueeze(-1)).squeeze(-1)  # (I + λA)⁻¹(v − λb)
    return _restore(x, was_numpy)


def prox_l2(v: ArrayT, lam: float) -> ArrayT:
    r"""Block soft thresholding: the proximal operator of the Euclidean norm :math:`\lambda\|x\|_2`.

    .. math:: \operatorname{prox}_{\lambda\|\cdot\|_2}(v)
              = \max\!\Big(1 - \frac{\lambda}{\|v\|_2},\ 0\Big)\, v

    The whole vector becomes 0 when :math:`\|v\|_2 \le \lambda` (including v = 0);
    otherwise it keeps its direction and loses λ of its length. Not the prox of the
    squared norm (that is :func:`prox_quadratic`).

    Parameters
    ----------
    v : array or Tensor, shape (..., n)
        The norm is taken over the last dimension.
    lam : float
        The step λ ≥ 0.

    Returns
    -------
    array or Tensor, shape (..., n)

    Raises
    ------
    ValueError
        λ < 0, a scalar ``v``, or NaN/±inf in ``v``.
    """
    t, was_numpy = _vector(v)
    lam = _check_lam(lam)
    norm = torch.linalg.vector_norm(t, dim=-1, keepdim=True)  # ‖v‖₂
    scale = torch.clamp(1.0 - lam / norm.clamp_min(torch.finfo(t.dtype).tiny), min=0.0)  # max(1 − λ/‖v‖, 0)
    return _restore(scale * t, was_numpy)


def _prox_residual(
    f: Callable[[Tensor], Tensor], x: Tensor, v: Tensor, lam: float, hessian: bool
) -> tuple[Tensor, Tensor | None]:
    """r = λ∇f(x) + x − v, shape (..., n), and optionally the batched Hessian of f, (..., n, n)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        fx = f(x)
        if not isinstance(fx, Tensor) or fx.shape != x.shape[:-1]:
            got = tuple(fx.shape) if isinstance(fx, Tensor) else type(fx).__name__
            expected = f"(...) = {tuple(x.shape[:-1])}"
            raise ValueError(f"f must map shape (..., n) = {tuple(x.shape)} to {expected}, got {got}")
        grad = None
        if fx.requires_grad:
            (grad,) = torch.autograd.grad(fx.sum(), x, create_graph=hessian, allow_unused=True)
        if grad is None:
            grad = torch.zeros_like(x)
        r = lam * grad + x - v
        if not hessian:
            return r.detach(), None
        rows = []
        for j in range(x.shape[-1]):
            row = None
            if grad.requires_grad:
                (row,) = torch.autograd.grad(grad[..., j].sum(), x, retain_graph=True, allow_unused=True)
            rows.append(torch.zeros_like(x) if row is None else row)
        return r.detach(), torch.stack(rows, dim=-2).detach()


def prox_numerical(
    f: Callable[[Tensor], Tensor],
    v: ArrayT,
    lam: float,
    *,
    x0: ArrayT | None = None,
    max_iter: int = 100,
    tol: float | None = None,
) -> tuple[ArrayT, IterInfo]:
    r"""Proximal operator of a smooth convex f, by Newton's method with autograd derivatives.

    Solves the optimality condition of the prox problem,

    .. math:: r(x) = \lambda \nabla f(x) + x - v = 0, \qquad
              x_{k+1} = x_k - t_k\,(I + \lambda \nabla^2 f(x_k))^{-1} r(x_k),

    with a backtracking (Armijo) step :math:`t_k` on :math:`\|r\|^2`, for which the Newton
    direction is always a descent direction since :math:`I + \lambda\nabla^2 f \succeq I`.
    Convergence is quadratic near the solution, so in float64 it stops within a few
    units of rounding of the exact prox. This is the numerical reference the closed
    forms are tested against; for a non-smooth f use a smoothing and let it go to 0.

    Parameters
    ----------
    f : callable
        Twice differentiable convex function written in torch, mapping a tensor of
        shape (..., n) to shape (...) (one value per batch entry). It is called with
        tensors even when ``v`` is numpy, in the dtype and device of ``v``.
    v : array or Tensor, shape (..., n)
    lam : float
        The step λ > 0.
    x0 : array or Tensor, shape (..., n), optional
        Starting point (a warm start); ``v`` by default.
    max_iter : int
        Most Newton iterations.
    tol : float, optional
        Stop when :math:`\|r(x)\|_\infty \le \mathrm{tol}\,(1 + \|v\|_\infty)` for every
        batch entry; by default 1000 machine epsilons of the dtype (2.2e-13 in float64).

    Returns
    -------
    x : array or Tensor, shape (..., n)
        The prox, detached from any autograd graph.
    info : IterInfo
        ``residual`` is the largest scaled :math:`\|r\|_\infty` over the batch.

    Raises
    ------
    ValueError
        λ ≤ 0, NaN/±inf, ``f`` of the wrong output shape or not finite at the start.
    """
    t, was_numpy = _vector(v)
    lam = _check_lam(lam, positive=True)
    _check_iters(max_iter, 0.0 if tol is None else tol)
    tol = 1000 * torch.finfo(t.dtype).eps if tol is None else float(tol)
    target = t.detach()
    if x0 is None:
        x = target.clone()
    else:
        x = _param(x0, target, "x0")
        _check_finite(x, "x0")
        if x.shape != target.shape:
            raise ValueError(f"mismatched shapes: x0 {tuple(x.shape)} and v {tuple(target.shape)}")
    if target.numel() == 0:
        return _restore(x, was_numpy), IterInfo(0, True, 0.0)
    scale = 1.0 + target.abs().amax(dim=-1)
    eye = torch.eye(target.shape[-1], dtype=t.dtype, device=t.device)
    r, H = _prox_residual(f, x, target, lam, hessian=True)
    if not bool(torch.isfinite(r).all()):
        raise ValueError("f or its gradient is not finite at the starting point")
    err = r.abs().amax(dim=-1) / scale
    iterations = 0
    while iterations < max_iter and float(err.max()) > tol:
        done = (err <= tol).unsqueeze(-1)
        d = -torch.linalg.solve(eye + lam * H, r.unsqueeze(-1)).squeeze(-1)  # −(I + λ∇²f)⁻¹ r
        d = torch.where(done, torch.zeros_like(d), d)
        merit = (r * r).sum(dim=-1)
        step = torch.ones_like(merit)
        for halving in range(60):
            x_try = x + step.unsqueeze(-1) * d
            r_try, _ = _prox_residual(f, x_try, target, lam, hessian=False)
            ok = ((r_try * r_try).sum(dim=-1) <= (1.0 - 2e-4 * step) * merit) | done.squeeze(-1)
            if bool(ok.all()) or halving == 59:
                break
            step = torch.where(ok, step, 0.5 * step)
        x = x_try
        r, H = _prox_residual(f, x, target, lam, hessian=True)
        err = r.abs().amax(dim=-1) / scale
        iterations += 1
    worst = float(err.max())
    return _restore(x, was_numpy), IterInfo(iterations, worst <= tol, worst)


# ------------------------------------------------------------------------- projections


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
    t, was_numpy = _vector(v)
    lo, hi = _param(lower, t, "lower"), _param(upper, t, "upper")
    _check_finite(lo, "lower", allow_inf=True)
    _check_finite(hi, "upper", allow_inf=True)
    _broadcast_to_v(lo, t.shape, "lower", "v")
    _broadcast_to_v(hi, t.shape, "upper", "v")
    empty = lo > hi
    if bool(empty.any()):
        where = tuple(int(i) for i in empty.nonzero()[0])
        raise ValueError(
            f"the box is empty: lower {float(lo[where])} > upper {float(hi[where])} at index {where}"
        )
    x = torch.minimum(torch.maximum(t, lo), hi)  # min(max(v, ℓ), u)
    return _restore(x, was_numpy)


@graded_reference
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
    t, was_numpy = _vector(v)
    radius = _check_radius(radius)
    c = _center(center, t)
    w = t - c
    norm = torch.linalg.vector_norm(w, dim=-1, keepdim=True)  # ‖v − c‖₂
    x = c + w * (radius / torch.clamp(norm, min=radius))  # c + r (v − c)/max(r, ‖v − c‖)
    return _restore(x, was_numpy)


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
    t, was_numpy = _vector(v)
    radius = _check_radius(radius)
    c = _center(center, t)
    x = c + torch.clamp(t - c, min=-radius, max=radius)  # c + clip(v − c, −r, r)
    return _restore(x, was_numpy)


def _simplex_core(t: Tensor, total: float) -> Tensor:
    """Sort-based projection of the rows of ``t`` (..., n) onto {x ≥ 0, Σx = total}."""
    u, _ = torch.sort(t, dim=-1, descending=True)  # u₁ ≥ u₂ ≥ … ≥ uₙ
    excess = torch.cumsum(u, dim=-1) - total  # Σ_{i≤j} u_i − z
    j = torch.arange(1, t.shape[-1] + 1, dtype=t.dtype, device=t.device)
    active = u - excess / j > 0  # u_j − (Σ_{i≤j} u_i − z)/j > 0
    rho = torch.clamp((active * j).amax(dim=-1, keepdim=True), min=1)  # ρ = max{j : active}
    theta = excess.gather(-1, rho.long() - 1) / rho  # θ = (Σ_{i≤ρ} u_i − z)/ρ
    return torch.clamp(t - theta, min=0.0)  # max(v − θ, 0)


@graded_reference
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
    t, was_numpy = _vector(v)
    total = _check_radius(total, "total")
    if t.shape[-1] == 0:
        raise ValueError("the simplex in dimension n = 0 is empty: v has no entries along its last dimension")
    return _restore(_simplex_core(t, total), was_numpy)


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
    t, was_numpy = _vector(v)
    radius = _check_radius(radius)
    c = _center(center, t)
    w = t - c
    if w.shape[-1] == 0:
        return _restore(t, was_numpy)
    inside = w.abs().sum(dim=-1, keepdim=True) <= radius  # ‖v − c‖₁ ≤ r
    onto = torch.sign(w) * _simplex_core(w.abs(), radius)  # sign(w) Π_Δr(|w|)
    return _restore(c + torch.where(inside, w, onto), was_numpy)


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
    t, was_numpy = _vector(v)
    normal, offset = _param(a, t, "a"), _param(b, t, "b")
    _check_finite(normal, "a")
    _check_finite(offset, "b")
    _broadcast_to_v(normal, t.shape, "a", "v", vector=True)
    _broadcast_to_v(offset, t.shape[:-1], "b", "the batch shape of v")
    sq_norm = (normal * normal).sum(dim=-1)  # ‖a‖²
    if bool((sq_norm == 0).any()):
        raise ValueError("a must be nonzero: with a = 0 the set is empty (b < 0) or all of space (b ≥ 0)")
    excess = torch.clamp((t * normal).sum(dim=-1) - offset, min=0.0)  # max(aᵀv − b, 0)
    x = t - (excess / sq_norm).unsqueeze(-1) * normal  # v − max(aᵀv − b, 0) a/‖a‖²
    return _restore(x, was_numpy)


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
    t, was_numpy = _vector(v)
    M, rhs = _param(A, t, "A"), _param(b, t, "b")
    _check_finite(M, "A")
    _check_finite(rhs, "b")
    if M.ndim != 2 or M.shape[1] != t.shape[-1]:
        raise ValueError(
            f"mismatched shapes: A {tuple(M.shape)} must be (m, n) with n = {t.shape[-1]} for v {tuple(t.shape)}"
        )
    m = M.shape[0]
    _broadcast_to_v(rhs, t.shape[:-1] + (m,), "b", "A v", vector=True)
    if m == 0:
        return _restore(t, was_numpy)
    rank = int(torch.linalg.matrix_rank(M))
    if rank < m:
        raise ValueError(f"A must have full row rank m = {m} (linearly independent rows); it has rank {rank}")
    gram = M @ M.T  # A Aᵀ
    violation = t @ M.T - rhs  # A v − b
    y = torch.linalg.solve(gram, violation.unsqueeze(-1)).squeeze(-1)  # (A Aᵀ)⁻¹(A v − b)
    x = t - y @ M  # v − Aᵀ (A Aᵀ)⁻¹(A v − b)
    return _restore(x, was_numpy)


# --------------------------------------------------------- intersections of convex sets


def alternating_projections(
    projections: Sequence[Callable[[ArrayT], ArrayT]],
    v: ArrayT,
    *,
    max_iter: int = 1000,
    tol: float = 1e-12,
    callback: Callable[[Any], None] | None = None,
) -> tuple[ArrayT, IterInfo]:
    r"""A point of :math:`C_1 \cap \dots \cap C_m` by cyclic projections (von Neumann, POCS).

    .. math:: x_{k+1} = \Pi_{C_m}(\cdots \Pi_{C_2}(\Pi_{C_1}(x_k))), \qquad x_0 = v

    It converges to *some* point of the intersection (when it is non-empty), which in
    general is **not** the projection of v onto it; :func:`dykstra` finds that one.

    Parameters
    ----------
    projections : sequence of callables
        :math:`\Pi_{C_i}`, each mapping an array of shape (..., n) to the same shape
        (e.g. ``functools.partial(project_box, lower=0, upper=1)``).
    v : array or Tensor, shape (..., n)
        The start; the callables receive the same kind of array.
    max_iter : int
        Most sweeps through all sets.
    tol : float
        Stop when a sweep moves no entry by more than ``tol``.

    callback : callable, optional
        Called with every new iterate, after each projection (to watch the
        algorithm, e.g. ``callback=points.append``).

    Returns
    -------
    x : array or Tensor, shape (..., n)
    info : IterInfo
        ``residual`` is :math:`\|x_{k+1} - x_k\|_\infty` of the last sweep.
    """
    if len(projections) == 0:
        raise ValueError("projections is empty: give at least one projection callable")
    _check_iters(max_iter, tol)
    x = _float_copy(v)
    residual = math.inf
    for sweep in range(1, int(max_iter) + 1):
        previous = x
        for project in projections:
            x = project(x)  # x ← Π_{C_i}(x)
            if callback is not None:
                callback(x)
        residual = _max_abs(x - previous)
        if residual <= tol:
            return x, IterInfo(sweep, True, residual)
    return x, IterInfo(int(max_iter), False, residual)


def dykstra(
    projections: Sequence[Callable[[ArrayT], ArrayT]],
    v: ArrayT,
    *,
    max_iter: int = 1000,
    tol: float = 1e-12,
    callback: Callable[[Any], None] | None = None,
) -> tuple[ArrayT, IterInfo]:
    r"""The projection of v onto :math:`C_1 \cap \dots \cap C_m`, by Dykstra's algorithm.

    Alternating projections with one correction :math:`p_i` per set (Boyle & Dykstra
    1986; Bauschke & Combettes 2017, Thm. 30.7): starting from :math:`x = v`,
    :math:`p_i = 0`, each sweep does for i = 1, …, m

    .. math:: y = \Pi_{C_i}(x + p_i), \qquad p_i \leftarrow x + p_i - y, \qquad x \leftarrow y.

    The corrections undo what earlier sweeps took away, so the limit is the nearest
    point of the intersection, :math:`\operatorname{argmin}_{x \in \cap C_i}\|x - v\|`,
    not just a point of it as with :func:`alternating_projections`.

    Parameters
    ----------
    projections : sequence of callables
        :math:`\Pi_{C_i}`, each mapping an array of shape (..., n) to the same shape.
    v : array or Tensor, shape (..., n)
        The point to project; the callables receive the same kind of array.
    max_iter : int
        Most sweeps through all sets.
    tol : float
        Stop when a sweep changes no correction by more than ``tol``:
        :math:`\max_i \|p_i^{k+1} - p_i^k\|_\infty \le \mathrm{tol}` (which bounds the
        change of x too; Birgin & Raydan 2005 on why x alone can stall early).

    callback : callable, optional
        Called with every new iterate, after each projection (to watch the
        algorithm, e.g. ``callback=points.append``).

    Returns
    -------
    x : array or Tensor, shape (..., n)
    info : IterInfo
        ``residual`` is the largest change of a correction in the last sweep.
    """
    if len(projections) == 0:
        raise ValueError("projections is empty: give at least one projection callable")
    _check_iters(max_iter, tol)
    x = _float_copy(v)
    corrections = [x * 0 for _ in projections]
    residual = math.inf
    for sweep in range(1, int(max_iter) + 1):
        residual = 0.0
        for i, project in enumerate(projections):
            y = project(x + corrections[i])  # y = Π_{C_i}(x + p_i)
            new_correction = x + corrections[i] - y  # p_i ← x + p_i − y
            residual = max(residual, _max_abs(new_correction - corrections[i]))
            corrections[i] = new_correction
            x = y
            if callback is not None:
                callback(x)
        if residual <= tol:
            return x, IterInfo(sweep, True, residual)
    return x, IterInfo(int(max_iter), False, residual)


# ------------------------------------------------------------------- proximal algorithms


def proximal_point(
    prox_f: Callable[[ArrayT, float], ArrayT],
    x0: ArrayT,
    lam: float,
    *,
    max_iter: int = 1000,
    tol: float = 1e-10,
    callback: Callable[[Any], None] | None = None,
) -> tuple[ArrayT, IterInfo]:
    r"""Proximal point algorithm: minimise a convex f by repeating its proximal step.

    .. math:: x_{k+1} = \operatorname{prox}_{\lambda f}(x_k)

    Each step decreases f and stays close to the last point; the fixed points are the
    minimisers of f (Rockafellar 1976; Parikh & Boyd 2014, Sec. 4.1).

    Parameters
    ----------
    prox_f : callable
        ``prox_f(v, lam)`` returns :math:`\operatorname{prox}_{\lambda f}(v)`,
        e.g. :func:`prox_l1` or ``functools.partial(prox_quadratic, A=A, b=b)``.
    x0 : array or Tensor, shape (..., n)
    lam : float
        The step λ > 0.
    max_iter : int
    tol : float
        Stop when :math:`\|x_{k+1} - x_k\|_\infty \le \mathrm{tol}`.

    callback : callable, optional
        Called with every new iterate (to watch the algorithm, e.g.
        ``callback=points.append``).

    Returns
    -------
    x : array or Tensor, shape (..., n)
    info : IterInfo
        ``residual`` is :math:`\|x_{k+1} - x_k\|_\infty` of the last step.
    """
    lam = _check_lam(lam, positive=True)
    _check_iters(max_iter, tol)
    x = _float_copy(x0)
    residual = math.inf
    for k in range(1, int(max_iter) + 1):
        x_next = prox_f(x, lam)  # x_{k+1} = prox_{λf}(x_k)
        residual = _max_abs(x_next - x)
        x = x_next
        if callback is not None:
            callback(x)
        if residual <= tol:
            return x, IterInfo(k, True, residual)
    return x, IterInfo(int(max_iter), False, residual)


def ista(
    grad_f: Callable[[ArrayT], ArrayT],
    prox_g: Callable[[ArrayT, float], ArrayT],
    x0: ArrayT,
    step: float,
    *,
    max_iter: int = 10_000,
    tol: float = 1e-10,
    callback: Callable[[Any], None] | None = None,
) -> tuple[ArrayT, IterInfo]:
    r"""Proximal gradient method (ISTA when g is an ℓ1 penalty) for :math:`\min_x f(x) + g(x)`.

    f is convex with an L-Lipschitz gradient, g convex with a prox:

    .. math:: x_{k+1} = \operatorname{prox}_{t g}\big(x_k - t\,\nabla f(x_k)\big), \qquad 0 < t \le 1/L.

    :math:`F(x_k) - F^\star = O(1/k)` (Beck & Teboulle 2009). For the lasso
    :math:`\tfrac12\|Ax - b\|^2 + \alpha\|x\|_1`: ``grad_f = lambda x: A.T @ (A @ x - b)``,
    ``prox_g = lambda v, lam: prox_l1(v, alpha * lam)``, ``step = 1 / ‖A‖₂²``.

    Parameters
    ----------
    grad_f : callable
        x ↦ ∇f(x), shape (..., n) to (..., n).
    prox_g : callable
        ``prox_g(v, lam)`` returns :math:`\operatorname{prox}_{\lambda g}(v)`.
    x0 : array or Tensor, shape (..., n)
    step : float
        The step t > 0 (at most 1/L for convergence), also the prox step of g.
    max_iter : int
    tol : float
        Stop when :math:`\|x_{k+1} - x_k\|_\infty \le \mathrm{tol}` (t times the
        gradient mapping at :math:`x_k`, which is 0 exactly at a minimiser).

    callback : callable, optional
        Called with every new iterate (to watch the algorithm, e.g.
        ``callback=points.append``).

    Returns
    -------
    x : array or Tensor, shape (..., n)
    info : IterInfo
        ``residual`` is :math:`\|x_{k+1} - x_k\|_\infty` of the last step.
    """
    step = _check_lam(step, "step", positive=True)
    _check_iters(max_iter, tol)
    x = _float_copy(x0)
    residual = math.inf
    for k in range(1, int(max_iter) + 1):
        x_next = prox_g(x - step * grad_f(x), step)  # prox_{tg}(x − t∇f(x))
        residual = _max_abs(x_next - x)
        x = x_next
        if callback is not None:
            callback(x)
        if residual <= tol:
            return x, IterInfo(k, True, residual)
    return x, IterInfo(int(max_iter), False, residual)


def fista(
    grad_f: Callable[[ArrayT], ArrayT],
    prox_g: Callable[[ArrayT, float], ArrayT],
    x0: ArrayT,
    step: float,
    *,
    max_iter: int = 10_000,
    tol: float = 1e-10,
    callback: Callable[[Any], None] | None = None,
) -> tuple[ArrayT, IterInfo]:
    r"""FISTA: accelerated proximal gradient for :math:`\min_x f(x) + g(x)` (Beck & Teboulle 2009).

    With :math:`y_1 = x_0`, :math:`s_1 = 1`:

    .. math:: x_k = \operatorname{prox}_{t g}\big(y_k - t\,\nabla f(y_k)\big),\quad
              s_{k+1} = \tfrac12\big(1 + \sqrt{1 + 4 s_k^2}\big),\quad
              y_{k+1} = x_k + \frac{s_k - 1}{s_{k+1}}\,(x_k - x_{k-1}).

    :math:`F(x_k) - F^\star = O(1/k^2)`, against O(1/k) for :func:`ista`, with the same
    cost per iteration. The objective need not decrease monotonically.

    Parameters
    ----------
    grad_f, prox_g, x0, step
        As in :func:`ista`.
    max_iter : int
    tol : float
        Stop when :math:`\|x_k - y_k\|_\infty \le \mathrm{tol}`: t times the gradient
        mapping at the extrapolated point, the same quantity :func:`ista` measures at
        its iterate, so the two iteration counts compare.

    callback : callable, optional
        Called with every new iterate (to watch the algorithm, e.g.
        ``callback=points.append``).

    Returns
    -------
    x : array or Tensor, shape (..., n)
        The last :math:`x_k`.
    info : IterInfo
        ``residual`` is :math:`\|x_k - y_k\|_\infty` of the last step.
    """
    step = _check_lam(step, "step", positive=True)
    _check_iters(max_iter, tol)
    x = _float_copy(x0)
    y = x
    s = 1.0
    residual = math.inf
    for k in range(1, int(max_iter) + 1):
        x_next = prox_g(y - step * grad_f(y), step)  # x_k = prox_{tg}(y_k − t∇f(y_k))
        residual = _max_abs(x_next - y)
        s_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * s * s))  # s_{k+1} = (1 + √(1 + 4s_k²))/2
        y = x_next + ((s - 1.0) / s_next) * (x_next - x)  # y_{k+1} = x_k + (s_k − 1)/s_{k+1} (x_k − x_{k−1})
        x, s = x_next, s_next
        if callback is not None:
            callback(x)
        if residual <= tol:
            return x, IterInfo(k, True, residual)
    return x, IterInfo(int(max_iter), False, residual)


@graded_reference
def lasso_ista_step(x: ArrayT, A: ArrayLike, b: ArrayLike, alpha: float, step: float) -> ArrayT:
    r"""One ISTA step on the lasso :math:`F(x) = \tfrac12\|Ax - b\|_2^2 + \alpha\|x\|_1`.

    .. math:: x^+ = \operatorname{prox}_{t\alpha\|\cdot\|_1}\big(x - t\,A^\top(Ax - b)\big)
              = S_{t\alpha}\big(x - t\,A^\top(Ax - b)\big)

    A gradient step on the smooth part, then soft thresholding at :math:`t\alpha` (the
    prox step is the gradient step t, so the threshold scales with it). With
    :math:`t \le 1/\|A\|_2^2` every step decreases F.

    Parameters
    ----------
    x : array or Tensor, shape (n,)
    A : array or Tensor, shape (m, n)
    b : array or Tensor, shape (m,)
    alpha : float
        The ℓ1 weight α ≥ 0.
    step : float
        The step t > 0.

    Returns
    -------
    array or Tensor, shape (n,)
    """
    t, was_numpy = _vector(x, "x")
    A_t, b_t = _param(A, t, "A"), _param(b, t, "b")
    if A_t.ndim != 2 or A_t.shape[1] != t.shape[-1] or b_t.shape != A_t.shape[:1]:
        raise ValueError(f"mismatched shapes: x {tuple(t.shape)}, A {tuple(A_t.shape)}, b {tuple(b_t.shape)}; "
                         "expected x (n,), A (m, n), b (m,)")
    step = _check_lam(step, "step", positive=True)
    alpha = _check_lam(alpha, "alpha")
    grad = A_t.T @ (A_t @ t - b_t)  # ∇ ½‖Ax − b‖² = Aᵀ(Ax − b)
    z = t - step * grad  # gradient step
    x_next = torch.sign(z) * torch.clamp(z.abs() - step * alpha, min=0.0)  # S_{tα}(z)
    return _restore(x_next, was_numpy)


# ----------------------------------------------------------------- lecture dispatchers

_PROXES: dict[str, Callable[..., Any]] = {
    "l1": prox_l1,
    "quadratic": prox_quadratic,
    "l2": prox_l2,
}
_SETS: dict[str, Callable[..., Any]] = {
    "box": project_box,
    "l2_ball": project_l2_ball,
    "l1_ball": project_l1_ball,
    "linf_ball": project_linf_ball,
    "simplex": project_simplex,
    "halfspace": project_halfspace,
    "affine": project_affine,
}
PROX_NAMES: tuple[str, ...] = tuple(_PROXES)
SET_NAMES: tuple[str, ...] = tuple(_SETS)


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
    if set_name not in _SETS:
        raise ValueError(f"unknown set name {set_name!r}; valid names: {', '.join(SET_NAMES)}")
    return _SETS[set_name](v, **params)


def prox_of(name: str, v: ArrayT, lam: float, **params: Any) -> ArrayT:
    r"""Proximal operator :math:`\operatorname{prox}_{\lambda f}(v)` of a function chosen by name.

    ``"l1"``: :math:`f = \|x\|_1` (soft thresholding); ``"quadratic"``:
    :math:`f = \tfrac12 x^\top A x + b^\top x`, by default :math:`\tfrac12\|x\|^2`
    (params ``A``, ``b``); ``"l2"``: :math:`f = \|x\|_2` (block soft thresholding).
    A set name from :data:`SET_NAMES` means the indicator of that set, whose prox is the
    projection for every λ: :math:`\operatorname{prox}_{\lambda I_C} = \Pi_C`.

    Parameters
    ----------
    name : str
        One of :data:`PROX_NAMES` or :data:`SET_NAMES`.
    v : array or Tensor, shape (..., n)
    lam : float
        The step λ ≥ 0.
    **params
        Passed to the prox or the projection.

    Returns
    -------
    array or Tensor, shape of ``v``

    Raises
    ------
    ValueError
        An unknown name (the message lists the valid ones), λ < 0, or what the operator raises.
    """
    if name in _PROXES:
        return _PROXES[name](v, lam, **params)
    if name in _SETS:
        _check_lam(lam)
        return _SETS[name](v, **params)
    raise ValueError(f"unknown prox name {name!r}; valid names: {', '.join(PROX_NAMES + SET_NAMES)}")


def prox_path(name: str, v: ArrayT, lams: Sequence[float] | np.ndarray | Tensor, **params: Any) -> ArrayT:
    r"""The prox of one function at one v for a range of steps, for a figure or a slider.

    .. math:: P_k = \operatorname{prox}_{\lambda_k f}(v), \qquad k = 1, \dots, L

    As λ grows from 0 the point travels from v (λ = 0) toward the minimisers of f; for a
    set name it jumps to the projection at once.

    Parameters
    ----------
    name : str
        As in :func:`prox_of`.
    v : array or Tensor, shape (..., n)
    lams : sequence of float, shape (L,)
        Steps λ ≥ 0.
    **params
        As in :func:`prox_of`.

    Returns
    -------
    array or Tensor, shape (L, ..., n)
    """
    t, was_numpy = _as_tensor(v)
    raw = lams.detach().cpu().numpy() if isinstance(lams, Tensor) else lams
    steps = [float(lam) for lam in np.asarray(raw, dtype=np.float64).reshape(-1)]
    if not steps:
        return _restore(t.new_zeros((0, *t.shape)), was_numpy)
    return _restore(torch.stack([prox_of(name, t, lam, **params) for lam in steps]), was_numpy)
