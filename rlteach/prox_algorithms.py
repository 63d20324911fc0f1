r"""Algorithms built on proximal operators and projections.

* Intersections of convex sets: :func:`alternating_projections` (von Neumann) finds a
  point of :math:`C_1 \cap C_2` (the projection onto it for subspaces and affine sets);
  :func:`dykstra` finds the projection onto it for any closed convex sets.
* The proximal point method :math:`x_{k+1} = \operatorname{prox}_{\lambda f}(x_k)`.
* Proximal gradient for :math:`f + g` with f smooth: :func:`ista` and its accelerated
  form :func:`fista` (Beck & Teboulle 2009), one ISTA step on the lasso,
  :func:`lasso_ista_step`, a backtracking line search for an unknown L,
  :func:`ista_backtracking`, and the worst-case bounds :func:`ista_bound`,
  :func:`fista_bound` and :func:`linear_rate_bound`.

These only add, subtract and scale arrays, so they run on numpy or torch, whichever the
starting point is, and hand the same kind to the callables they are given. Each returns
``(x, info)`` with :class:`rlteach.prox.IterInfo`; not converging is reported, never raised.
Parikh & Boyd 2014, "Proximal Algorithms", §4.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from rlteach._validate import ArrayLike, ArrayT, check_iters, check_lam, float_copy, max_abs, param, restore, vector
from rlteach.prox import IterInfo

__all__ = [
    "BacktrackingInfo",
    "alternating_projections",
    "dykstra",
    "fista",
    "fista_bound",
    "ista",
    "ista_backtracking",
    "ista_bound",
    "lasso_ista_step",
    "linear_rate_bound",
    "proximal_point",
]


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

    It converges to a point of the intersection (when it is non-empty). For closed
    subspaces, and affine sets that meet, that point **is** the projection of v onto the
    intersection (von Neumann 1950). So it is for the simplex as the intersection of the
    hyperplane :math:`\sum x = z` and the orthant :math:`x \ge 0`, projecting onto the
    hyperplane first: every iterate then has the form :math:`\max(v - \theta_k, 0)` with
    θ_k increasing to the simplex threshold. For general convex sets it may stop at another
    point of the intersection, one that depends on the order of the projections (a box and
    a half-space suffice, and so does the simplex with the orthant first);
    :func:`dykstra` finds the projection.

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
    check_iters(max_iter, tol)
    x = float_copy(v)
    residual = math.inf
    for sweep in range(1, int(max_iter) + 1):
        previous = x
        for project in projections:
            x = project(x)  # x ← Π_{C_i}(x)
            if callback is not None:
                callback(x)
        residual = max_abs(x - previous)
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
    check_iters(max_iter, tol)
    x = float_copy(v)
    corrections = [x * 0 for _ in projections]
    residual = math.inf
    for sweep in range(1, int(max_iter) + 1):
        residual = 0.0
        for i, project in enumerate(projections):
            y = project(x + corrections[i])  # y = Π_{C_i}(x + p_i)
            new_correction = x + corrections[i] - y  # p_i ← x + p_i − y
            residual = max(residual, max_abs(new_correction - corrections[i]))
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
    lam = check_lam(lam, positive=True)
    check_iters(max_iter, tol)
    x = float_copy(x0)
    residual = math.inf
    for k in range(1, int(max_iter) + 1):
        x_next = prox_f(x, lam)  # x_{k+1} = prox_{λf}(x_k)
        residual = max_abs(x_next - x)
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
    step = check_lam(step, "step", positive=True)
    check_iters(max_iter, tol)
    x = float_copy(x0)
    residual = math.inf
    for k in range(1, int(max_iter) + 1):
        x_next = prox_g(x - step * grad_f(x), step)  # prox_{tg}(x − t∇f(x))
        residual = max_abs(x_next - x)
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
    step = check_lam(step, "step", positive=True)
    check_iters(max_iter, tol)
    x = float_copy(x0)
    y = x
    s = 1.0
    residual = math.inf
    for k in range(1, int(max_iter) + 1):
        x_next = prox_g(y - step * grad_f(y), step)  # x_k = prox_{tg}(y_k − t∇f(y_k))
        residual = max_abs(x_next - y)
        s_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * s * s))  # s_{k+1} = (1 + √(1 + 4s_k²))/2
        y = x_next + ((s - 1.0) / s_next) * (x_next - x)  # y_{k+1} = x_k + (s_k − 1)/s_{k+1} (x_k − x_{k−1})
        x, s = x_next, s_next
        if callback is not None:
            callback(x)
        if residual <= tol:
            return x, IterInfo(k, True, residual)
    return x, IterInfo(int(max_iter), False, residual)


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
    t, was_numpy = vector(x, "x")
    A_t, b_t = param(A, t, "A"), param(b, t, "b")
    if A_t.ndim != 2 or A_t.shape[1] != t.shape[-1] or b_t.shape != A_t.shape[:1]:
        raise ValueError(f"mismatched shapes: x {tuple(t.shape)}, A {tuple(A_t.shape)}, b {tuple(b_t.shape)}; "
                         "expected x (n,), A (m, n), b (m,)")
    step = check_lam(step, "step", positive=True)
    alpha = check_lam(alpha, "alpha")
    grad = A_t.T @ (A_t @ t - b_t)  # ∇ ½‖Ax − b‖² = Aᵀ(Ax − b)
    z = t - step * grad  # gradient step
    x_next = torch.sign(z) * torch.clamp(z.abs() - step * alpha, min=0.0)  # S_{tα}(z)
    return restore(x_next, was_numpy)


# ------------------------------------------------------- step sizes, backtracking, bounds


class BacktrackingInfo(NamedTuple):
    """Diagnostics of :func:`ista_backtracking`: those of :class:`rlteach.prox.IterInfo`, and the steps."""

    iterations: int  # iterations run
    converged: bool  # True when ‖x_{k+1} − x_k‖_∞ ≤ tol
    residual: float  # ‖x_{k+1} − x_k‖_∞ of the last iteration
    step: float  # the step t of the last iteration (it only shrinks)
    evaluations: int  # evaluations of f, the cost that backtracking adds


def ista_backtracking(
    f: Callable[[ArrayT], Any],
    grad_f: Callable[[ArrayT], ArrayT],
    prox_g: Callable[[ArrayT, float], ArrayT],
    x0: ArrayT,
    step: float = 1.0,
    *,
    shrink: float = 0.5,
    max_iter: int = 10_000,
    tol: float = 1e-10,
    callback: Callable[[Any], None] | None = None,
) -> tuple[ArrayT, BacktrackingInfo]:
    r"""Proximal gradient with a backtracking line search, for when L is unknown (Beck & Teboulle 2009, §3).

    Each iteration tries :math:`x^+ = \operatorname{prox}_{tg}(x - t\nabla f(x))` and shrinks
    :math:`t \leftarrow \beta t` until the quadratic model at x is an upper bound of f at
    :math:`x^+`:

    .. math:: f(x^+) \le f(x) + \langle\nabla f(x),\, x^+ - x\rangle + \frac1{2t}\|x^+ - x\|_2^2 .

    The descent lemma guarantees this once t ≤ 1/L, so the step never falls below
    :math:`\beta/L` (and it never grows); the O(1/k) rate of :func:`ista` holds with L
    replaced by :math:`L/\beta`. With that inequality every step decreases f + g.

    Parameters
    ----------
    f : callable
        x ↦ f(x), a number (or a 0-d array/tensor).
    grad_f, prox_g, x0
        As in :func:`ista`.
    step : float
        The first trial step t₀ > 0; the search keeps the last accepted step.
    shrink : float
        β in (0, 1).
    max_iter, tol, callback
        As in :func:`ista`.

    Returns
    -------
    x : array or Tensor, shape (..., n)
    info : BacktrackingInfo
    """
    step = check_lam(step, "step", positive=True)
    if not 0.0 < shrink < 1.0:
        raise ValueError(f"shrink must lie in (0, 1), got {shrink}")
    check_iters(max_iter, tol)
    x = float_copy(x0)
    residual, evaluations = math.inf, 0
    for k in range(1, int(max_iter) + 1):
        fx, gx = float(f(x)), grad_f(x)
        evaluations += 1
        for _ in range(200):
            x_next = prox_g(x - step * gx, step)  # prox_{tg}(x − t∇f(x))
            d = x_next - x
            model = fx + float((gx * d).sum()) + float((d * d).sum()) / (2.0 * step)  # f(x) + ⟨∇f, d⟩ + ‖d‖²/(2t)
            evaluations += 1
            if float(f(x_next)) <= model + 1e-12 * max(1.0, abs(fx)):
                break
            step *= shrink  # t ← βt
        residual = max_abs(x_next - x)
        x = x_next
        if callback is not None:
            callback(x)
        if residual <= tol:
            return x, BacktrackingInfo(k, True, residual, step, evaluations)
    return x, BacktrackingInfo(int(max_iter), False, residual, step, evaluations)


def _bound_inputs(lipschitz: float, initial_distance: float, iterations: int) -> np.ndarray:
    if not (math.isfinite(lipschitz) and lipschitz > 0):
        raise ValueError(f"lipschitz must be a finite number > 0, got {lipschitz}")
    if not (math.isfinite(initial_distance) and initial_distance >= 0):
        raise ValueError(f"initial_distance must be a finite number >= 0, got {initial_distance}")
    if int(iterations) < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    return np.arange(1, int(iterations) + 1, dtype=np.float64)


def ista_bound(lipschitz: float, initial_distance: float, iterations: int) -> np.ndarray:
    r"""The worst-case gap of ISTA with step 1/L (Beck & Teboulle 2009, Thm. 3.1).

    .. math:: F(x_k) - F^\star \le \frac{L\,\|x_0 - x^\star\|_2^2}{2k}, \qquad k = 1, \dots, K

    Parameters
    ----------
    lipschitz : float
        L, the Lipschitz constant of ∇f (for ½‖Mx − y‖²: ‖M‖₂²).
    initial_distance : float
        :math:`\|x_0 - x^\star\|_2` for a minimiser x*.
    iterations : int
        K.

    Returns
    -------
    np.ndarray, shape (K,)
        The bound at k = 1, …, K.
    """
    k = _bound_inputs(lipschitz, initial_distance, iterations)
    return lipschitz * initial_distance**2 / (2.0 * k)  # L‖x₀ − x*‖²/(2k)


def fista_bound(lipschitz: float, initial_distance: float, iterations: int) -> np.ndarray:
    r"""The worst-case gap of FISTA with step 1/L (Beck & Teboulle 2009, Thm. 4.4).

    .. math:: F(x_k) - F^\star \le \frac{2L\,\|x_0 - x^\star\|_2^2}{(k+1)^2}, \qquad k = 1, \dots, K

    Parameters are those of :func:`ista_bound`. Returns an array of shape (K,).
    """
    k = _bound_inputs(lipschitz, initial_distance, iterations)
    return 2.0 * lipschitz * initial_distance**2 / (k + 1.0) ** 2  # 2L‖x₀ − x*‖²/(k + 1)²


def linear_rate_bound(lipschitz: float, strong_convexity: float, initial_distance: float, iterations: int) -> np.ndarray:
    r"""The linear rate of proximal gradient with step 1/L when f is μ-strongly convex.

    .. math:: \|x_k - x^\star\|_2^2 \le \Big(1 - \frac{\mu}{L}\Big)^k\,\|x_0 - x^\star\|_2^2

    The gradient step :math:`x \mapsto x - \nabla f(x)/L` is then a contraction with factor
    :math:`\sqrt{1 - \mu/L}` at most, and the prox of g is non-expansive, so each
    iteration shrinks the distance to x*: the error falls geometrically, with the
    condition number L/μ setting the speed (Beck 2017, Thm. 10.29).

    Parameters
    ----------
    lipschitz, strong_convexity : float
        L ≥ μ > 0 (for ½‖Mx − y‖² with M of full column rank: the largest and smallest
        eigenvalues of MᵀM).
    initial_distance : float
        :math:`\|x_0 - x^\star\|_2`.
    iterations : int
        K.

    Returns
    -------
    np.ndarray, shape (K,)
        The bound on :math:`\|x_k - x^\star\|^2` at k = 1, …, K.
    """
    k = _bound_inputs(lipschitz, initial_distance, iterations)
    if not 0.0 < strong_convexity <= lipschitz:
        raise ValueError(f"need 0 < strong_convexity <= lipschitz, got μ = {strong_convexity}, L = {lipschitz}")
    return (1.0 - strong_convexity / lipschitz) ** k * initial_distance**2  # (1 − μ/L)^k ‖x₀ − x*‖²
