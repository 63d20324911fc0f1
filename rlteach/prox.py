r"""Proximal operators: closed forms, a numerical prox, and dispatch by name.

The proximal operator of a closed convex function f with step :math:`\lambda > 0` is

.. math:: \operatorname{prox}_{\lambda f}(v) = \operatorname*{argmin}_x
          \Big( f(x) + \frac{1}{2\lambda}\|x - v\|_2^2 \Big),

and the projection onto a closed convex set C is the prox of its indicator, for every λ:
:math:`\Pi_C(v) = \operatorname{prox}_{\lambda I_C}(v) = \operatorname{argmin}_{x\in C}\|x - v\|_2`.
For small λ and smooth f the prox is a gradient step,
:math:`\operatorname{prox}_{\lambda f}(v) = v - \lambda\nabla f(v) + O(\lambda^2)`.
Parikh & Boyd 2014, "Proximal Algorithms"; Beck 2017, "First-Order Methods in Optimization".

The topic reads like Parikh & Boyd in three modules: operators here, projections in
:mod:`rlteach.projections`, algorithms in :mod:`rlteach.prox_algorithms`.

Conventions (all three modules)
-------------------------------
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
- **Algorithms and callables.** The algorithms of :mod:`rlteach.prox_algorithms` only
  add, subtract and scale arrays, so they run on numpy or torch, whichever ``x0``/``v``
  is, and hand the same kind to the callables they are given.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from rlteach._validate import (
    ArrayLike,
    ArrayT,
    as_array,
    broadcast_to_v,
    check_finite,
    check_iters,
    check_lam,
    param,
    restore,
    vector,
)
from rlteach.projections import PROJECTIONS, SET_NAMES

__all__ = [
    "PROX_NAMES",
    "IterInfo",
    "gradient_of",
    "kl_prox_linear",
    "moreau_envelope",
    "moreau_envelope_gradient",
    "prox_affine",
    "prox_l1",
    "prox_l2",
    "prox_numerical",
    "prox_of",
    "prox_path",
    "prox_quadratic",
    "prox_separable",
    "value_of",
]


class IterInfo(NamedTuple):
    """Diagnostics of an iterative solver, returned next to its final point."""

    iterations: int  # iterations (sweeps for projections) actually run
    converged: bool  # True when the residual fell to tol or below
    residual: float  # last value of the stopping quantity (see each function)


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
    t, was_numpy = as_array(v)
    check_finite(t, "v")
    lam = check_lam(lam)
    x = torch.sign(t) * torch.clamp(t.abs() - lam, min=0.0)  # sign(v) max(|v| − λ, 0)
    return restore(x, was_numpy)


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
    t, was_numpy = as_array(v)
    check_finite(t, "v")
    lam = check_lam(lam)
    lin = torch.zeros_like(t) if b is None else param(b, t, "b")
    check_finite(lin, "b")
    broadcast_to_v(lin, t.shape, "b", "v", vector=A is not None and b is not None and t.ndim > 0)
    if A is None:
        x = (t - lam * lin) / (1.0 + lam)  # (v − λb)/(1 + λ)
        return restore(x, was_numpy)
    if t.ndim == 0:
        raise ValueError("v must have shape (..., n) when A is given, got a scalar")
    n = t.shape[-1]
    Q = param(A, t, "A")
    check_finite(Q, "A")
    if Q.shape != (n, n):
        raise ValueError(f"mismatched shapes: A {tuple(Q.shape)} must be (n, n) = ({n}, {n}) for v {tuple(t.shape)}")
    slack = 100 * n * torch.finfo(t.dtype).eps * max(1.0, float(Q.abs().max()) if n else 1.0)
    if n and float((Q - Q.T).abs().max()) > slack:
        raise ValueError("A must be symmetric")
    if n and float(torch.linalg.eigvalsh(Q).min()) < -slack:
        raise ValueError("A must be positive semidefinite (f convex); it has a negative eigenvalue")
    M = torch.eye(n, dtype=t.dtype, device=t.device) + lam * Q  # I + λA
    x = torch.linalg.solve(M, (t - lam * lin).unsqueeze(-1)).squeeze(-1)  # (I + λA)⁻¹(v − λb)
    return restore(x, was_numpy)


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
    t, was_numpy = vector(v)
    lam = check_lam(lam)
    norm = torch.linalg.vector_norm(t, dim=-1, keepdim=True)  # ‖v‖₂
    scale = torch.clamp(1.0 - lam / norm.clamp_min(torch.finfo(t.dtype).tiny), min=0.0)  # max(1 − λ/‖v‖, 0)
    return restore(scale * t, was_numpy)


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
    t, was_numpy = vector(v)
    lam = check_lam(lam, positive=True)
    check_iters(max_iter, 0.0 if tol is None else tol)
    tol = 1000 * torch.finfo(t.dtype).eps if tol is None else float(tol)
    target = t.detach()
    if x0 is None:
        x = target.clone()
    else:
        x = param(x0, target, "x0")
        check_finite(x, "x0")
        if x.shape != target.shape:
            raise ValueError(f"mismatched shapes: x0 {tuple(x.shape)} and v {tuple(target.shape)}")
    if target.numel() == 0:
        return restore(x, was_numpy), IterInfo(0, True, 0.0)
    scale = 1.0 + target.abs().amax(dim=-1)
    eye = torch.eye(target.shape[-1], dtype=t.dtype, device=t.device)
    r, H = _prox_residual(f, x, target, lam, hessian=True)
    assert H is not None  # asked for with hessian=True
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
        assert H is not None
        err = r.abs().amax(dim=-1) / scale
        iterations += 1
    worst = float(err.max())
    return restore(x, was_numpy), IterInfo(iterations, worst <= tol, worst)



_PROXES: dict[str, Callable[..., Any]] = {
    "l1": prox_l1,
    "quadratic": prox_quadratic,
    "l2": prox_l2,
}
PROX_NAMES: tuple[str, ...] = tuple(_PROXES)


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
    if name in PROJECTIONS:
        check_lam(lam)
        return PROJECTIONS[name](v, **params)
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
    t: Tensor
    t, was_numpy = as_array(v)
    raw = lams.detach().cpu().numpy() if isinstance(lams, Tensor) else lams
    steps = [float(lam) for lam in np.asarray(raw, dtype=np.float64).reshape(-1)]
    if not steps:
        return restore(t.new_zeros((0, *t.shape)), was_numpy)
    return restore(torch.stack([prox_of(name, t, lam, **params) for lam in steps]), was_numpy)


# ------------------------------------------------------------ values, gradients, envelopes


def value_of(name: str, x: ArrayT, **params: Any) -> ArrayT:
    r"""The function f of :func:`prox_of` at x: :math:`\|x\|_1`, :math:`\|x\|_2`,
    :math:`\tfrac12 x^\top A x + b^\top x`, or the indicator of a set (0 on C, +∞ off it).

    Parameters
    ----------
    name : str
        One of :data:`PROX_NAMES` or :data:`SET_NAMES`.
    x : array or Tensor, shape (..., n)
    **params
        ``A`` and ``b`` for the quadratic (defaults I and 0); a set's parameters.

    Returns
    -------
    array or Tensor, shape (...)
        For a set, 0 where the projection leaves x in place (to 1e-12 relative) and +∞ elsewhere.
    """
    t, was_numpy = vector(x, "x")
    if name == "l1":
        return restore(t.abs().sum(dim=-1), was_numpy)  # ‖x‖₁
    if name == "l2":
        return restore(torch.linalg.vector_norm(t, dim=-1), was_numpy)  # ‖x‖₂
    if name == "quadratic":
        A, b = params.get("A"), params.get("b")
        quad = (t * t).sum(dim=-1) if A is None else ((t @ param(A, t, "A")) * t).sum(dim=-1)  # xᵀAx
        lin = torch.zeros_like(quad) if b is None else (t * param(b, t, "b")).sum(dim=-1)  # bᵀx
        return restore(0.5 * quad + lin, was_numpy)  # ½xᵀAx + bᵀx
    if name in PROJECTIONS:
        gap = (PROJECTIONS[name](t, **params) - t).abs().amax(dim=-1)
        inside = gap <= 1e-12 * (1.0 + t.abs().amax(dim=-1))
        return restore(torch.where(inside, torch.zeros_like(gap), torch.full_like(gap, torch.inf)), was_numpy)
    raise ValueError(f"unknown name {name!r}; valid names: {', '.join(PROX_NAMES + SET_NAMES)}")


def gradient_of(name: str, x: ArrayT, **params: Any) -> ArrayT:
    r"""The gradient of f at x, or at a kink its minimum-norm subgradient; what an explicit step uses.

    ``"quadratic"``: :math:`Ax + b`; ``"l1"``: :math:`\operatorname{sign}(x)` (0 where
    :math:`x_i = 0`); ``"l2"``: :math:`x/\|x\|_2` (0 at x = 0). The explicit (sub)gradient
    step :math:`x - \lambda\,\nabla f(x)` is what :func:`prox_of` replaces by the implicit one.

    Parameters
    ----------
    name : str
        One of :data:`PROX_NAMES` (an indicator has no gradient step: it is +∞ off C).
    x : array or Tensor, shape (..., n)
    **params
        ``A`` and ``b`` for the quadratic.

    Returns
    -------
    array or Tensor, shape (..., n)
    """
    t, was_numpy = vector(x, "x")
    if name == "l1":
        return restore(torch.sign(t), was_numpy)  # sign(x)
    if name == "l2":
        norm = torch.linalg.vector_norm(t, dim=-1, keepdim=True)
        return restore(t / norm.clamp_min(torch.finfo(t.dtype).tiny), was_numpy)  # x/‖x‖ (0 at 0)
    if name == "quadratic":
        A, b = params.get("A"), params.get("b")
        g = t if A is None else t @ param(A, t, "A").T  # Ax
        return restore(g if b is None else g + param(b, t, "b"), was_numpy)  # Ax + b
    if name in PROJECTIONS:
        raise ValueError(f"{name!r} is a set: its indicator is +inf outside it and has no gradient step")
    raise ValueError(f"unknown function name {name!r}; valid names: {', '.join(PROX_NAMES)}")


def moreau_envelope(name: str, v: ArrayT, lam: float, **params: Any) -> ArrayT:
    r"""The Moreau envelope :math:`M_{\lambda f}(v) = \min_x f(x) + \frac{1}{2\lambda}\|x - v\|_2^2`.

    The minimum is attained at the prox, so
    :math:`M_{\lambda f}(v) = f(p) + \|p - v\|^2/(2\lambda)` with
    :math:`p = \operatorname{prox}_{\lambda f}(v)`. It is a smooth lower approximation of f
    with the same minimisers: convex, :math:`M_{\lambda f} \le f`, differentiable with the
    (1/λ)-Lipschitz gradient of :func:`moreau_envelope_gradient`, and → f as λ → 0. For
    :math:`f = |x|` it is the Huber function; for an indicator, :math:`\operatorname{dist}_C^2/(2\lambda)`.
    Parikh & Boyd 2014, §3.1.

    Parameters
    ----------
    name : str
        As in :func:`prox_of`.
    v : array or Tensor, shape (..., n)
    lam : float
        λ > 0.
    **params
        As in :func:`prox_of`.

    Returns
    -------
    array or Tensor, shape (...)
    """
    lam = check_lam(lam, positive=True)
    t, was_numpy = vector(v)
    p = prox_of(name, t, lam, **params)
    fp = torch.zeros_like(p[..., 0]) if name in PROJECTIONS else value_of(name, p, **params)  # f(p); 0 on C
    return restore(fp + ((p - t) ** 2).sum(dim=-1) / (2.0 * lam), was_numpy)  # f(p) + ‖p − v‖²/(2λ)


def moreau_envelope_gradient(name: str, v: ArrayT, lam: float, **params: Any) -> ArrayT:
    r"""The gradient of the Moreau envelope, :math:`\nabla M_{\lambda f}(v) = (v - \operatorname{prox}_{\lambda f}(v))/\lambda`.

    It exists everywhere even when f has kinks, and it is (1/λ)-Lipschitz because the prox is
    firmly non-expansive. Read backwards, :math:`\operatorname{prox}_{\lambda f}(v) = v - \lambda\nabla M_{\lambda f}(v)`:
    the prox step is a gradient step of size λ on the envelope, which is why the proximal
    point method minimises f. For :math:`f = |x|` it is :math:`\operatorname{clip}(v/\lambda, -1, 1)`.

    Parameters
    ----------
    name : str
        As in :func:`prox_of`.
    v : array or Tensor, shape (..., n)
    lam : float
        λ > 0.

    Returns
    -------
    array or Tensor, shape (..., n)
    """
    lam = check_lam(lam, positive=True)
    t, was_numpy = vector(v)
    return restore((t - prox_of(name, t, lam, **params)) / lam, was_numpy)  # (v − prox_{λf}(v))/λ


# ------------------------------------------------------------------------- prox calculus


def prox_separable(proxes: Sequence[Callable[[Any, float], Any]], sizes: Sequence[int]) -> Callable[[ArrayT, float], ArrayT]:
    r"""The prox of a separable sum :math:`f(x) = \sum_j f_j(x_{[j]})`, block by block.

    .. math:: \operatorname{prox}_{\lambda f}(v) = \big(\operatorname{prox}_{\lambda f_1}(v_{[1]}),\ \dots,\
              \operatorname{prox}_{\lambda f_m}(v_{[m]})\big)

    The prox objective splits into one independent problem per block. Soft thresholding is
    the case of n blocks of size 1. Parikh & Boyd 2014, §2.1.

    Parameters
    ----------
    proxes : sequence of callables
        ``prox_j(v_block, lam)``, each mapping shape (..., n_j) to the same shape.
    sizes : sequence of int
        The block sizes n_j ≥ 1; they split the last dimension of v in order.

    Returns
    -------
    callable
        ``prox(v, lam)`` for v of shape (..., Σ n_j).
    """
    if len(proxes) != len(sizes) or not proxes:
        raise ValueError(f"need one block size per prox and at least one of each, got {len(proxes)} and {len(sizes)}")
    if any(int(n) < 1 for n in sizes):
        raise ValueError(f"block sizes must be >= 1, got {list(sizes)}")
    bounds = np.cumsum([0, *[int(n) for n in sizes]])

    def prox(v: Any, lam: float) -> Any:
        t, was_numpy = vector(v)
        if t.shape[-1] != bounds[-1]:
            raise ValueError(f"mismatched shapes: v has {t.shape[-1]} entries, the blocks {bounds[-1]}")
        blocks = [restore(t[..., lo:hi], was_numpy) for lo, hi in itertools.pairwise(bounds)]
        parts = [prox_j(block, lam) for prox_j, block in zip(proxes, blocks)]  # one prox per block
        return np.concatenate(parts, axis=-1) if was_numpy else torch.cat(parts, dim=-1)

    return prox


def prox_affine(prox_phi: Callable[[Any, float], Any], A: ArrayLike | float, b: ArrayLike | float = 0.0) -> Callable[[ArrayT, float], ArrayT]:
    r"""The prox of :math:`f(x) = \varphi(Ax + b)` when :math:`AA^\top = \alpha I` (scaling, shifts, rotations).

    .. math:: \operatorname{prox}_{\lambda f}(v) = v - \frac1\alpha A^\top\Big(Av + b
              - \operatorname{prox}_{\alpha\lambda\varphi}(Av + b)\Big)

    For a scalar A = a ≠ 0 (so α = a²) this is
    :math:`\operatorname{prox}_{\lambda f}(v) = \big(\operatorname{prox}_{a^2\lambda\varphi}(av + b) - b\big)/a`.
    Together with :math:`\operatorname{prox}_{\lambda(c\varphi)} = \operatorname{prox}_{(c\lambda)\varphi}`
    (c > 0) and :math:`\operatorname{prox}_{\lambda(\varphi + u^\top x)}(v) = \operatorname{prox}_{\lambda\varphi}(v - \lambda u)`,
    these rules turn a few closed forms into many. Parikh & Boyd 2014, §2.2; Beck 2017, Thm. 6.15.

    Parameters
    ----------
    prox_phi : callable
        ``prox_phi(w, lam)`` for φ, on arrays of shape (..., m).
    A : float or array of shape (m, n)
        A scalar a ≠ 0 (then m = n), or a matrix with orthogonal rows of equal squared norm α.
    b : float or array of shape (m,)

    Returns
    -------
    callable
        ``prox(v, lam)`` for v of shape (..., n).
    """
    A_np = np.asarray(A, dtype=np.float64)
    if A_np.ndim == 0:
        if A_np == 0 or not np.isfinite(A_np):
            raise ValueError(f"a scalar A must be finite and nonzero, got {float(A_np)}")
        alpha = float(A_np) ** 2
    else:
        if A_np.ndim != 2 or A_np.shape[0] == 0:
            raise ValueError(f"A must be a scalar or a matrix of shape (m, n), got shape {A_np.shape}")
        gram = A_np @ A_np.T
        alpha = float(np.mean(np.diag(gram)))
        if alpha <= 0 or not np.allclose(gram, alpha * np.eye(A_np.shape[0]), rtol=1e-10, atol=1e-12 * alpha):
            raise ValueError("A must satisfy A Aᵀ = α I with α > 0 (orthogonal rows of equal length)")

    def prox(v: ArrayT, lam: float) -> ArrayT:
        lam = check_lam(lam)
        t, was_numpy = vector(v)
        M, shift = param(A_np, t, "A"), param(b, t, "b")
        w = M * t + shift if M.ndim == 0 else t @ M.T + shift  # Av + b
        inner, _ = as_array(prox_phi(restore(w, was_numpy), alpha * lam), "prox_phi(...)")  # prox_{αλφ}(Av + b)
        inner = inner.to(device=t.device, dtype=t.dtype)
        correction = (w - inner) * M if M.ndim == 0 else (w - inner) @ M  # Aᵀ(Av + b − prox)
        return restore(t - correction / alpha, was_numpy)

    return prox


def kl_prox_linear(v: ArrayT, grad: ArrayT, lam: float) -> ArrayT:
    r"""The Bregman (mirror-descent) proximal step of a linear function on the simplex, with the KL divergence.

    .. math:: x^+ = \operatorname*{argmin}_{x \in \Delta}\ \langle g, x\rangle + \frac1\lambda\,\mathrm{KL}(x\,\|\,v)
              \quad\Longrightarrow\quad x^+_i = \frac{v_i\, e^{-\lambda g_i}}{\sum_j v_j\, e^{-\lambda g_j}}

    The Euclidean prox of a linear function on the simplex is the projected gradient step
    :math:`\Pi_\Delta(v - \lambda g)`; replacing :math:`\tfrac12\|x - v\|^2` by
    :math:`\mathrm{KL}(x\|v)` gives this multiplicative update (exponentiated gradient),
    which never leaves the interior of the simplex and never sets a probability to 0.
    Near v, :math:`\mathrm{KL}(x\|v) \approx \tfrac12 (x - v)^\top \operatorname{diag}(1/v) (x - v)`,
    the Fisher metric, so a KL budget δ plays the role of :math:`\rho^2/2` in a Euclidean
    trust region. Computed as a softmax of :math:`\log v - \lambda g`. Beck & Teboulle 2003,
    "Mirror Descent and Nonlinear Projected Subgradient Methods for Convex Optimization".

    Parameters
    ----------
    v : array or Tensor, shape (..., n)
        A point of the simplex with v > 0 (zeros stay zero).
    grad : array or Tensor, shape (..., n)
        g, the gradient of the linear function.
    lam : float
        λ ≥ 0.

    Returns
    -------
    array or Tensor, shape (..., n)
    """
    t, was_numpy = vector(v)
    g = param(grad, t, "grad")
    check_finite(g, "grad")
    lam = check_lam(lam)
    if bool((t < 0).any()):
        raise ValueError("v must be a probability vector: it has a negative entry")
    return restore(torch.softmax(torch.log(t) - lam * g, dim=-1), was_numpy)  # v e^{−λg} / Σ v e^{−λg}
