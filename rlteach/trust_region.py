r"""Trust regions: minimise a quadratic model inside a ball, and the loop that moves the ball.

The trust-region subproblem of the lecture, for a gradient g and a symmetric H:

.. math:: \min_{p\in\mathbb R^n}\ m(p) = g^\top p + \tfrac12 p^\top H p
          \quad\text{subject to}\quad \|p\|_2 \le \rho

Its global solution (Moré & Sorensen 1983, "Computing a Trust Region Step"; Nocedal &
Wright 2006, "Numerical Optimization", Thm. 4.1) is the p for which some μ ≥ 0 gives

.. math:: (H + \mu I)\,p = -g,\qquad H + \mu I \succeq 0,\qquad \mu\,(\rho - \|p\|) = 0 .

========================================  ===================================================
solver                                    what it needs, what it returns
========================================  ===================================================
:func:`solve_exact`                       H as a matrix; the global solution and its μ
:func:`cauchy_point`                      products Hv; the model's minimiser along −g
:func:`dogleg`                            H positive definite; a path Cauchy → Newton
:func:`steihaug_cg`                       products Hv; conjugate gradient stopped at the boundary
:func:`trust_region_minimize`             f, ∇f, ∇²f; Nocedal & Wright's Algorithm 4.1
========================================  ===================================================

**The bridge to proximal steps.** The prox step of the model from 0,
:math:`\operatorname{prox}_{\lambda m}(0) = \operatorname{argmin}_p\, m(p) + \|p\|^2/(2\lambda)`,
solves :math:`(H + I/\lambda)p = -g`: the trust-region optimality condition with
μ = 1/λ. A radius ρ and a prox step λ are two names for one step
(:func:`prox_lam_for_radius`, :func:`radius_for_prox_lam`, :func:`prox_step`); TRPO's
KL ball and the KL-penalised (proximal) objective of PPO's ancestors are the same pair.

Conventions
-----------
- **Arrays.** ``g`` is a tensor of shape (n,), ``H`` of shape (n, n), symmetric; numpy arrays
  and lists are converted. One problem at a time. Results lie on ``g``'s device in the
  promoted dtype of ``g`` and ``H``; use float64 for tight tolerances.
- **Returns.** Every subproblem solver returns a NamedTuple with ``step`` and
  ``on_boundary``; the loop returns a :class:`TrustRegionResult` with its path.
- **Errors.** ``ValueError`` for a radius ≤ 0, mismatched shapes, NaN or ±inf, a
  non-symmetric H, and (dogleg, prox step) a matrix that is not positive definite.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from rlteach._validate import as_tensor, check_finite, check_radius, positive_int, square_matrix, symmetric_matrix

__all__ = [
    "SOLVERS",
    "ExactPath",
    "ExactStep",
    "SubproblemStep",
    "TrustRegionConfig",
    "TrustRegionResult",
    "cauchy_point",
    "dogleg",
    "dogleg_path",
    "exact_path",
    "prox_lam_for_radius",
    "prox_step",
    "quadratic_model",
    "radius_for_prox_lam",
    "reduction_ratio",
    "rosenbrock",
    "rosenbrock_grad",
    "rosenbrock_hess",
    "solve_exact",
    "steihaug_cg",
    "trust_region_minimize",
]

Matvec = Callable[[Tensor], Tensor]


class ExactStep(NamedTuple):
    """The global solution of the subproblem (see :func:`solve_exact`)."""

    step: Tensor  # p*, shape (n,)
    mu: float  # the multiplier μ ≥ max(0, −λ_min) with (H + μI)p* = −g; 0 inside the ball
    on_boundary: bool  # ‖p*‖ = ρ
    hard_case: bool  # g ⟂ the eigenvectors of λ_min and p* got a component along one of them
    iterations: int  # Newton iterations on the secular equation (0 when none was needed)


class SubproblemStep(NamedTuple):
    """An approximate solution of the subproblem (Cauchy point, dogleg, Steihaug-CG)."""

    step: Tensor  # p, shape (n,), ‖p‖ ≤ ρ
    on_boundary: bool  # ‖p‖ = ρ
    iterations: int  # CG iterations (Steihaug); 0 for the closed forms
    reason: str  # why it stopped: "interior", "boundary", "negative_curvature", "converged", "max_iter", "zero_gradient"


def _problem(g: object, H: object) -> tuple[Tensor, Tensor]:
    """Validated ``g`` (n,) and symmetric ``H`` (n, n) in a common dtype on ``g``'s device."""
    g_t = as_tensor("g", g)
    H_t = as_tensor("H", H)
    if g_t.ndim != 1 or g_t.shape[0] == 0:
        raise ValueError(f"g: expected a vector of shape (n,), n >= 1, got {tuple(g_t.shape)}")
    dtype = torch.promote_types(g_t.dtype, H_t.dtype)
    g_t, H_t = g_t.to(dtype), H_t.to(device=g_t.device, dtype=dtype)
    square_matrix("H", H_t, g_t.shape[0], "g")
    check_finite(g_t, "g")
    check_finite(H_t, "H")
    symmetric_matrix("H", H_t)
    return g_t, H_t


def _matvec(g: object, H: object) -> tuple[Tensor, Matvec]:
    """``g`` and v ↦ Hv, from a matrix (validated) or a callable (trusted)."""
    if callable(H):
        g_t = as_tensor("g", g)
        if g_t.ndim != 1 or g_t.shape[0] == 0:
            raise ValueError(f"g: expected a vector of shape (n,), n >= 1, got {tuple(g_t.shape)}")
        check_finite(g_t, "g")
        return g_t, H
    g_t, H_t = _problem(g, H)
    return g_t, H_t.__matmul__


def _boundary_tau(z: Tensor, d: Tensor, radius: float) -> tuple[float, float]:
    """Both roots τ₋ ≤ 0 ≤ τ₊ of ‖z + τd‖ = ρ, for ‖z‖ ≤ ρ."""
    dd, zd, zz = float(d @ d), float(z @ d), float(z @ z)
    root = math.sqrt(max(zd * zd + dd * (radius * radius - zz), 0.0))  # √((zᵀd)² + ‖d‖²(ρ² − ‖z‖²))
    return (-zd - root) / dd, (-zd + root) / dd


def quadratic_model(g: Tensor, H: Tensor, p: Tensor) -> Tensor:
    r"""The model :math:`m(p) = g^\top p + \tfrac12 p^\top H p`, for a batch of steps.

    Parameters
    ----------
    g : Tensor, shape (n,)
    H : Tensor, shape (n, n), symmetric
    p : Tensor, shape (..., n)

    Returns
    -------
    Tensor, shape (...)
        m(0) = 0, so −m(p) is the decrease the model predicts.
    """
    g, H = _problem(g, H)
    p = as_tensor("p", p).to(device=g.device, dtype=g.dtype)
    if p.ndim == 0 or p.shape[-1] != g.shape[0]:
        raise ValueError(f"mismatched shapes: p {tuple(p.shape)} must be (..., {g.shape[0]}) to match g {tuple(g.shape)}")
    return p @ g + 0.5 * ((p @ H) * p).sum(dim=-1)  # gᵀp + ½ pᵀHp


def solve_exact(g: Tensor, H: Tensor, radius: float, tol: float = 1e-12, max_iter: int = 100) -> ExactStep:
    r"""The global solution of the trust-region subproblem, from the eigendecomposition of H.

    With :math:`H = Q\,\mathrm{diag}(\lambda)\,Q^\top` (λ ascending) and :math:`\hat g = Q^\top g`,

    .. math:: p(\mu) = -\sum_i \frac{\hat g_i}{\lambda_i + \mu}\, q_i,\qquad
              \|p(\mu)\|^2 = \sum_i \frac{\hat g_i^2}{(\lambda_i + \mu)^2} .

    - **Interior.** H positive definite and the Newton step :math:`-H^{-1}g` inside the
      ball: p = −H⁻¹g, μ = 0 (for H singular PSD with g in its range: the minimum-norm
      Newton step).
    - **Boundary.** Otherwise μ > max(0, −λ₁) solves the secular equation
      :math:`1/\rho - 1/\|p(\mu)\| = 0`, which is concave and nearly linear in μ; Newton's
      method started left of the root climbs to it monotonically (Moré & Sorensen 1983).
    - **Hard case.** g ⟂ the eigenspace of λ₁ < 0 and :math:`\|p(-\lambda_1)\| < \rho`
      (the sum skipping that eigenspace): no μ > −λ₁ reaches the boundary, so
      μ = −λ₁ and :math:`p = p(-\lambda_1) + \tau q_1` with τ such that ‖p‖ = ρ.
      −τ is as good as τ; the sign returned is +.

    Parameters
    ----------
    g : Tensor, shape (n,)
    H : Tensor, shape (n, n), symmetric; may be indefinite
    radius : float
        ρ > 0.
    tol : float
        Stop when :math:`|\|p\| - \rho| \le \mathrm{tol}\cdot\rho` (never tighter than the dtype allows).
    max_iter : int
        Cap on the Newton iterations of the secular equation.

    Returns
    -------
    ExactStep
        ``step``, ``mu``, ``on_boundary``, ``hard_case``, ``iterations``.

    Raises
    ------
    ValueError
        ρ ≤ 0, mismatched shapes, NaN/±inf, H not symmetric.
    """
    g, H = _problem(g, H)
    radius = check_radius(radius)
    positive_int("max_iter", max_iter)
    n = g.shape[0]
    eps = torch.finfo(g.dtype).eps
    lam, Q = torch.linalg.eigh(H)  # H = Q diag(λ) Qᵀ, λ ascending
    g_hat = Q.mT @ g  # ĝ = Qᵀg
    lam_min = float(lam[0])
    eig_tol = 10 * n * eps * max(1.0, float(lam.abs().max()))
    grad_tol = 10 * n * eps * max(float(g.norm()), eig_tol * radius)
    indefinite = lam_min < -eig_tol
    mu_star = -lam_min if indefinite else 0.0  # smallest μ with H + μI ⪰ 0
    shift = lam - lam[0] if indefinite else lam  # λ_i + μ*, exact 0 on λ₁'s eigenspace
    low = shift <= eig_tol  # the eigenspace of λ₁ (H + μ*I singular there)
    if bool(low.any()) and float(g_hat[low].norm()) <= grad_tol:
        rest = -g_hat.where(~low, torch.zeros_like(g_hat)) / shift.where(~low, torch.ones_like(shift))
        if float(rest.norm()) <= radius:  # g ⟂ that eigenspace and p(μ*) lies inside
            p_min_norm = Q @ rest  # −(H + μ*I)⁺ g
            if not indefinite:
                return ExactStep(p_min_norm, 0.0, False, False, 0)
            tau = math.sqrt(max(radius**2 - float(rest.norm()) ** 2, 0.0))  # ‖p + τq₁‖ = ρ
            return ExactStep(p_min_norm + tau * Q[:, 0], mu_star, True, True, 0)
        g_hat = g_hat.where(~low, torch.zeros_like(g_hat))  # rounding noise along q₁, not a gradient
    elif not indefinite and lam_min > eig_tol:
        newton = -g_hat / lam  # −H⁻¹g in the eigenbasis
        if float(newton.norm()) <= radius:
            return ExactStep(Q @ newton, 0.0, False, False, 0)
    safe = torch.where(g_hat != 0, shift, torch.ones_like(shift))  # 0/0 never happens
    t_low = max(0.0, float((g_hat.abs() / radius - shift).max()))  # ‖p(t)‖ ≥ |ĝ_i|/(shift_i + t) ≥ ρ below
    t_high = max(t_low, float(g.norm()) / radius - float(shift.min()))  # ‖p(t)‖ ≤ ‖g‖/(shift₁ + t) ≤ ρ above
    t, iterations = t_low, 0
    stop = max(tol, 10 * eps) * radius
    while iterations < max_iter:
        denom = safe + t  # λ_i + μ with μ = μ* + t
        p_norm = float((g_hat / denom).norm())  # ‖p(μ)‖
        if math.isfinite(p_norm) and abs(p_norm - radius) <= stop:
            break
        iterations += 1
        if not math.isfinite(p_norm) or p_norm == 0.0:  # t sits on a pole: bisect
            t = 0.5 * (t + t_high) if t < t_high else t_high
            continue
        q_norm_sq = float((g_hat**2 / denom**3).sum())  # ‖q‖² = pᵀ(H + μI)⁻¹p
        step = (p_norm**2 / q_norm_sq) * (p_norm - radius) / radius  # Newton on 1/ρ − 1/‖p(μ)‖
        if p_norm > radius:
            t_low = t
        else:
            t_high = t
        t_new = t + step
        if not t_low <= t_new <= t_high:
            t_new = 0.5 * (t_low + t_high)  # safeguard: keep the bracket
        if abs(t_new - t) <= eps * max(t, 1e-300):
            t = t_new
            break
        t = t_new
    p = Q @ (-g_hat / (safe + t))  # p(μ) = −(H + μI)⁻¹g
    return ExactStep(p, mu_star + t, True, False, iterations)


def cauchy_point(g: Tensor, H: Tensor | Matvec, radius: float) -> SubproblemStep:
    r"""The Cauchy point: the model's minimiser along −g inside the ball.

    .. math:: p^C = -\tau \frac{\rho}{\|g\|} g,\qquad
              \tau = \begin{cases} 1 & g^\top H g \le 0 \\
              \min\!\big(\|g\|^3 / (\rho\, g^\top H g),\ 1\big) & \text{otherwise} \end{cases}

    Every convergent trust-region method decreases the model at least as much as this
    point does (a fraction of it); g = 0 gives p = 0. Nocedal & Wright, eq. (4.11)-(4.12).

    Parameters
    ----------
    g : Tensor, shape (n,)
    H : Tensor, shape (n, n), or a callable v ↦ Hv
    radius : float
        ρ > 0.

    Returns
    -------
    SubproblemStep
    """
    g, matvec = _matvec(g, H)
    radius = check_radius(radius)
    g_norm = float(g.norm())
    if g_norm == 0.0:
        return SubproblemStep(torch.zeros_like(g), False, 0, "zero_gradient")
    curvature = float(g @ matvec(g))  # gᵀHg
    tau = 1.0 if curvature <= 0 else min(g_norm**3 / (radius * curvature), 1.0)  # along −g: to the minimum or the edge
    step = -(tau * radius / g_norm) * g  # p^C = −τ ρ g/‖g‖
    return SubproblemStep(step, tau == 1.0, 0, "boundary" if tau == 1.0 else "interior")


def dogleg(g: Tensor, H: Tensor, radius: float) -> SubproblemStep:
    r"""The dogleg step: along −g to the unconstrained minimiser p^U, then toward Newton's p^B.

    .. math:: p^U = -\frac{g^\top g}{g^\top H g}\, g,\qquad p^B = -H^{-1} g,\qquad
              \tilde p(\tau) = \begin{cases} \tau p^U & 0 \le \tau \le 1 \\
              p^U + (\tau - 1)(p^B - p^U) & 1 \le \tau \le 2 \end{cases}

    Returns p^B when it is inside the ball, else the point where the path leaves it
    (‖p̃‖ grows and m(p̃) falls along the path). Its model decrease is at least the
    Cauchy point's. Powell 1970; Nocedal & Wright §4.1.

    Parameters
    ----------
    g : Tensor, shape (n,)
    H : Tensor, shape (n, n), symmetric positive definite
    radius : float

    Returns
    -------
    SubproblemStep

    Raises
    ------
    ValueError
        H not positive definite (the Newton step is not a minimiser), and the checks of
        :func:`solve_exact`.
    """
    g, H = _problem(g, H)
    radius = check_radius(radius)
    chol, info = torch.linalg.cholesky_ex(H)
    if int(info) != 0:
        raise ValueError("dogleg needs H positive definite (Cholesky failed); use solve_exact or steihaug_cg for an indefinite H")
    if float(g.norm()) == 0.0:
        return SubproblemStep(torch.zeros_like(g), False, 0, "zero_gradient")
    p_newton = -torch.cholesky_solve(g.unsqueeze(-1), chol).squeeze(-1)  # p^B = −H⁻¹g
    if float(p_newton.norm()) <= radius:
        return SubproblemStep(p_newton, False, 0, "interior")
    p_u = -(float(g @ g) / float(g @ (H @ g))) * g  # p^U: the minimiser along −g
    if float(p_u.norm()) >= radius:
        return SubproblemStep(radius * p_u / p_u.norm(), True, 0, "boundary")
    _, s = _boundary_tau(p_u, p_newton - p_u, radius)  # ‖p^U + s(p^B − p^U)‖ = ρ, s ∈ [0, 1]
    return SubproblemStep(p_u + s * (p_newton - p_u), True, 0, "boundary")


def steihaug_cg(g: Tensor, H: Tensor | Matvec, radius: float, tol: float = 1e-10,
                max_iter: int | None = None) -> SubproblemStep:
    r"""Steihaug-Toint truncated conjugate gradient for the trust-region subproblem.

    CG on :math:`Hp = -g` from p = 0, stopped when

    - an iterate would leave the ball: go along the current direction to the boundary;
    - a direction has :math:`d^\top H d \le 0` (negative curvature): go along it to the
      boundary, at the root of ‖z + τd‖ = ρ with the lower model value;
    - the residual :math:`\|Hz + g\| \le \mathrm{tol}\cdot\|g\|`: z is the Newton step.

    Needs only products Hv. The first iterate is the Cauchy point, and m decreases
    along the iterates, so the decrease is at least the Cauchy point's. Steihaug 1983,
    "The Conjugate Gradient Method and Trust Regions in Large Scale Optimization";
    Nocedal & Wright, Algorithm 7.2.

    Parameters
    ----------
    g : Tensor, shape (n,)
    H : Tensor, shape (n, n), or a callable v ↦ Hv
    radius : float
    tol : float
        Relative residual at which CG stops.
    max_iter : int, optional
        Default n: in exact arithmetic CG ends within n iterations.

    Returns
    -------
    SubproblemStep
        ``reason`` is "converged", "boundary", "negative_curvature", "max_iter" or
        "zero_gradient".
    """
    g, matvec = _matvec(g, H)
    radius = check_radius(radius)
    max_iter = g.shape[0] if max_iter is None else positive_int("max_iter", max_iter)
    z = torch.zeros_like(g)
    r = g.clone()  # residual = ∇m(z) = Hz + g
    d = -r
    rr = float(r @ r)
    stop = tol * math.sqrt(rr)
    if rr == 0.0:
        return SubproblemStep(z, False, 0, "zero_gradient")
    for j in range(max_iter):
        Hd = matvec(d)
        dHd = float(d @ Hd)  # curvature along d
        if dHd <= 0:
            taus = _boundary_tau(z, d, radius)
            rd = float(r @ d)
            tau = min(taus, key=lambda t: t * rd + 0.5 * t * t * dHd)  # m(z + τd) − m(z) = τ rᵀd + ½τ² dᵀHd
            return SubproblemStep(z + tau * d, True, j + 1, "negative_curvature")
        alpha = rr / dHd  # exact line minimum along d
        z_next = z + alpha * d
        if float(z_next.norm()) >= radius:
            _, tau = _boundary_tau(z, d, radius)
            return SubproblemStep(z + tau * d, True, j + 1, "boundary")
        z = z_next
        r = r + alpha * Hd  # r_{j+1} = r_j + α H d_j
        rr_next = float(r @ r)
        if math.sqrt(rr_next) <= stop:
            return SubproblemStep(z, False, j + 1, "converged")
        d = -r + (rr_next / rr) * d  # β = ‖r_{j+1}‖²/‖r_j‖²
        rr = rr_next
    return SubproblemStep(z, False, max_iter, "max_iter")


def prox_step(g: Tensor, H: Tensor, lam: float) -> Tensor:
    r"""The proximal step of the model from 0: :math:`\operatorname{prox}_{\lambda m}(0)`.

    .. math:: \operatorname*{argmin}_p\ g^\top p + \tfrac12 p^\top H p + \frac{1}{2\lambda}\|p\|^2
              \;=\; -\big(H + I/\lambda\big)^{-1} g

    λ = ∞ is allowed and gives the Newton step :math:`-H^{-1}g`. For a positive
    semidefinite H this is :func:`rlteach.prox.prox_quadratic` at v = 0.

    Parameters
    ----------
    g : Tensor, shape (n,)
    H : Tensor, shape (n, n), symmetric; may be indefinite if H + I/λ is positive definite
    lam : float
        The prox step λ > 0 (or ``math.inf``).

    Returns
    -------
    Tensor, shape (n,)

    Raises
    ------
    ValueError
        λ ≤ 0 or NaN, or H + I/λ not positive definite (the prox objective is then
        unbounded below or has no unique minimiser).
    """
    g, H = _problem(g, H)
    lam = float(lam)
    if math.isnan(lam) or lam <= 0:
        raise ValueError(f"lam must be > 0 (it is the prox step λ), got {lam}")
    shifted = H + torch.eye(g.shape[0], dtype=g.dtype, device=g.device) / lam  # H + I/λ
    chol, info = torch.linalg.cholesky_ex(shifted)
    if int(info) != 0:
        raise ValueError(f"H + I/lam is not positive definite for lam={lam}: the prox of this model has no unique minimiser")
    return -torch.cholesky_solve(g.unsqueeze(-1), chol).squeeze(-1)  # −(H + I/λ)⁻¹g


def prox_lam_for_radius(g: Tensor, H: Tensor, radius: float) -> float:
    r"""The prox step λ whose proximal step is the trust-region step of radius ρ.

    .. math:: \lambda(\rho) = 1/\mu(\rho),\qquad
              \operatorname{prox}_{\lambda(\rho)\, m}(0) = \operatorname*{argmin}_{\|p\|\le\rho} m(p)

    ``math.inf`` when the Newton step lies inside the ball (μ = 0). A larger ρ gives a
    smaller μ and a larger λ. In the hard case (see :func:`solve_exact`) the returned λ
    makes H + I/λ singular and :func:`prox_step` refuses it: there the trust-region
    step is not a prox step.

    Parameters
    ----------
    g : Tensor, shape (n,)
    H : Tensor, shape (n, n), symmetric
    radius : float

    Returns
    -------
    float
    """
    mu = solve_exact(g, H, radius).mu
    return math.inf if mu == 0.0 else 1.0 / mu  # λ = 1/μ


def radius_for_prox_lam(g: Tensor, H: Tensor, lam: float) -> float:
    r"""The radius whose trust-region step is the proximal step of step λ: :math:`\rho = \|\operatorname{prox}_{\lambda m}(0)\|`.

    The inverse of :func:`prox_lam_for_radius` (where the prox step exists).
    """
    return float(prox_step(g, H, lam).norm())  # ρ(λ) = ‖(H + I/λ)⁻¹g‖


class ExactPath(NamedTuple):
    """Global solutions of the subproblem for a range of radii (see :func:`exact_path`)."""

    radii: Tensor  # (R,): the radii ρ, as given
    steps: Tensor  # (R, n): p*(ρ)
    mus: Tensor  # (R,): μ(ρ), 0 where the Newton step fits in the ball
    model: Tensor  # (R,): m(p*(ρ)), non-increasing in ρ


def exact_path(g: Tensor, H: Tensor, radii: Tensor) -> ExactPath:
    r"""The trust-region solution :math:`p^*(\rho)` for each radius in ``radii``.

    As ρ grows from 0 the solution leaves 0 along −g (for small ρ the linear term rules),
    bends toward the Newton step, and stops there once :math:`\|H^{-1}g\| \le \rho`
    (H positive definite). The same curve is traced by the prox step
    :math:`\operatorname{prox}_{\lambda m}(0)` as λ = 1/μ grows (see :func:`prox_step`).

    Parameters
    ----------
    g : Tensor, shape (n,)
    H : Tensor, shape (n, n), symmetric
    radii : Tensor, shape (R,)
        ρ > 0 each.

    Returns
    -------
    ExactPath
    """
    g, H = _problem(g, H)
    radii = as_tensor("radii", radii).to(g).reshape(-1)
    solutions = [solve_exact(g, H, float(r)) for r in radii]
    steps = torch.stack([s.step for s in solutions]) if solutions else g.new_zeros((0, g.shape[0]))
    return ExactPath(radii, steps, g.new_tensor([s.mu for s in solutions]), quadratic_model(g, H, steps))


def dogleg_path(g: Tensor, H: Tensor) -> Tensor:
    r"""The corners of the dogleg path: 0, the steepest-descent minimiser p^U, the Newton step p^B.

    .. math:: p^U = -\frac{g^\top g}{g^\top H g}\, g,\qquad p^B = -H^{-1} g

    The dogleg step of radius ρ is where this polyline leaves the ball ‖p‖ ≤ ρ (or p^B when
    the whole path fits). For drawing; see :func:`dogleg`.

    Parameters
    ----------
    g : Tensor, shape (n,), nonzero
    H : Tensor, shape (n, n), symmetric positive definite

    Returns
    -------
    Tensor, shape (3, n)
    """
    g, H = _problem(g, H)
    if float(g.norm()) == 0.0:
        raise ValueError("dogleg_path needs g != 0 (the path is the single point 0)")
    chol, info = torch.linalg.cholesky_ex(H)
    if int(info) != 0:
        raise ValueError("dogleg_path needs H positive definite (Cholesky failed)")
    p_u = -(float(g @ g) / float(g @ (H @ g))) * g  # along −g to the model's minimum
    p_b = -torch.cholesky_solve(g.unsqueeze(-1), chol).squeeze(-1)  # −H⁻¹g
    return torch.stack((torch.zeros_like(g), p_u, p_b))


def reduction_ratio(fun: Callable[[Tensor], Tensor], x: Tensor, p: Tensor, g: Tensor, H: Tensor) -> float:
    r"""How well the quadratic model predicted a step: actual over predicted reduction.

    .. math:: \rho = \frac{f(x) - f(x + p)}{m(0) - m(p)},\qquad m(p) = g^\top p + \tfrac12 p^\top H p

    Near 1 the model is trustworthy at this distance; small or negative, it promised a
    decrease that f did not deliver. The quantity that :func:`trust_region_minimize` uses
    to grow or shrink the radius (Nocedal & Wright, eq. (4.4)).

    Parameters
    ----------
    fun : callable
        f, returning a scalar tensor.
    x, p : Tensor, shape (n,)
        The point and the step.
    g, H : Tensor
        ∇f(x) and ∇²f(x) (or any model's gradient and Hessian).

    Returns
    -------
    float
        NaN when the model predicts no decrease (m(p) ≥ 0).
    """
    predicted = -float(quadratic_model(g, H, p))  # m(0) − m(p)
    if predicted <= 0:
        return math.nan
    return (float(fun(x)) - float(fun(x + p))) / predicted  # actual / predicted


SOLVERS: dict[str, Callable[[Tensor, Tensor, float], ExactStep | SubproblemStep]] = {
    "exact": solve_exact,
    "dogleg": dogleg,
    "steihaug": steihaug_cg,
    "cauchy": cauchy_point,
}


@dataclass(frozen=True)
class TrustRegionConfig:
    """Knobs of :func:`trust_region_minimize` (Nocedal & Wright, Algorithm 4.1)."""

    radius: float = 1.0  # Δ₀, the first radius
    max_radius: float = 100.0  # Δ̂, the radius never grows past it
    eta: float = 0.15  # η ∈ [0, ¼): accept the step when ρ_k > η
    solver: str = "exact"  # a key of SOLVERS
    max_iter: int = 500
    gtol: float = 1e-10  # stop when ‖∇f(x)‖ ≤ gtol

    def __post_init__(self) -> None:
        check_radius(self.radius, "radius")
        check_radius(self.max_radius, "max_radius")
        if self.radius > self.max_radius:
            raise ValueError(f"radius={self.radius} exceeds max_radius={self.max_radius}")
        if not 0.0 <= self.eta < 0.25:
            raise ValueError(f"eta={self.eta}: the acceptance threshold lies in [0, 1/4)")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver={self.solver!r}: expected one of {sorted(SOLVERS)}")
        positive_int("max_iter", self.max_iter)
        if not self.gtol >= 0:
            raise ValueError(f"gtol must be >= 0, got {self.gtol}")


class TrustRegionResult(NamedTuple):
    """What :func:`trust_region_minimize` did."""

    x: Tensor  # the final point, shape (n,)
    fun: float  # f(x)
    grad_norm: float  # ‖∇f(x)‖
    iterations: int  # subproblems solved
    converged: bool  # ‖∇f(x)‖ ≤ gtol
    path: Tensor  # (k+1, n): x₀ and every accepted or rejected iterate's x_k
    radii: Tensor  # (k,): Δ_k used at each iteration
    ratios: Tensor  # (k,): actual/predicted reduction ρ_k at each iteration


def trust_region_minimize(fun: Callable[[Tensor], Tensor], grad: Callable[[Tensor], Tensor],
                          hess: Callable[[Tensor], Tensor], x0: Tensor,
                          config: TrustRegionConfig | None = None) -> TrustRegionResult:
    r"""Minimise f by trust-region steps (Nocedal & Wright 2006, Algorithm 4.1).

    At x_k, solve the subproblem with :math:`g = \nabla f(x_k)`, :math:`H = \nabla^2 f(x_k)`
    and radius Δ_k, then compare what f did with what the model promised:

    .. math:: \rho_k = \frac{f(x_k) - f(x_k + p_k)}{m_k(0) - m_k(p_k)}

    - ρ_k < ¼: the model was poor, :math:`\Delta_{k+1} = \tfrac14\Delta_k`;
    - ρ_k > ¾ and ‖p_k‖ = Δ_k: the model was good and the ball limited the step,
      :math:`\Delta_{k+1} = \min(2\Delta_k, \hat\Delta)`;
    - otherwise Δ is kept. The step is taken only when ρ_k > η.

    Deterministic: the same inputs give the same path.

    Parameters
    ----------
    fun, grad, hess : callables
        f(x) (a scalar tensor), ∇f(x) (shape (n,)), ∇²f(x) (shape (n, n)).
    x0 : Tensor, shape (n,)
    config : TrustRegionConfig, optional

    Returns
    -------
    TrustRegionResult
    """
    cfg = TrustRegionConfig() if config is None else config
    solve = SOLVERS[cfg.solver]
    x = as_tensor("x0", x0).clone()
    check_finite(x, "x0")
    radius = cfg.radius
    path, radii, ratios = [x.clone()], [], []
    f_x, g = float(fun(x)), grad(x)
    iterations = 0
    while float(g.norm()) > cfg.gtol and iterations < cfg.max_iter:
        H = hess(x)
        p = solve(g, H, radius).step
        predicted = -float(quadratic_model(g, H, p))  # m(0) − m(p)
        if predicted <= 0:  # the model sees no descent: x is stationary to rounding
            break
        iterations += 1
        f_new = float(fun(x + p))
        ratio = (f_x - f_new) / predicted  # actual over predicted reduction
        radii.append(radius)
        ratios.append(ratio)
        if ratio < 0.25:
            radius = 0.25 * radius  # shrink: the model was poor
        elif ratio > 0.75 and float(p.norm()) >= (1 - 1e-9) * radius:
            radius = min(2.0 * radius, cfg.max_radius)  # expand: good model, step held back by the ball
        if ratio > cfg.eta:
            x = x + p
            f_x, g = f_new, grad(x)
        path.append(x.clone())
    grad_norm = float(g.norm())
    return TrustRegionResult(
        x=x,
        fun=f_x,
        grad_norm=grad_norm,
        iterations=iterations,
        converged=grad_norm <= cfg.gtol,
        path=torch.stack(path),
        radii=x.new_tensor(radii),
        ratios=x.new_tensor(ratios),
    )


def _xy(x: Tensor) -> tuple[Tensor, Tensor]:
    x = as_tensor("x", x)
    if x.ndim == 0 or x.shape[-1] != 2:
        raise ValueError(f"x: expected shape (..., 2), got {tuple(x.shape)}")
    return x[..., 0], x[..., 1]


def rosenbrock(x: Tensor, a: float = 1.0, b: float = 100.0) -> Tensor:
    r"""Rosenbrock's banana function, shape (..., 2) -> (...).

    .. math:: f(x, y) = (a - x)^2 + b\,(y - x^2)^2

    Minimum 0 at (a, a²); the standard start is (−1.2, 1). Rosenbrock 1960.
    """
    u, v = _xy(x)
    return (a - u) ** 2 + b * (v - u**2) ** 2  # (a − x)² + b(y − x²)²


def rosenbrock_grad(x: Tensor, a: float = 1.0, b: float = 100.0) -> Tensor:
    r"""Gradient of :func:`rosenbrock`, shape (..., 2) -> (..., 2).

    .. math:: \nabla f = \big(-2(a - x) - 4bx(y - x^2),\ 2b(y - x^2)\big)
    """
    u, v = _xy(x)
    dx = -2 * (a - u) - 4 * b * u * (v - u**2)  # ∂f/∂x
    dy = 2 * b * (v - u**2)  # ∂f/∂y
    return torch.stack((dx, dy), dim=-1)


def rosenbrock_hess(x: Tensor, a: float = 1.0, b: float = 100.0) -> Tensor:
    r"""Hessian of :func:`rosenbrock`, shape (..., 2) -> (..., 2, 2); indefinite where y > x² + 1/(2b).

    .. math:: \nabla^2 f = \begin{pmatrix} 2 - 4b(y - x^2) + 8bx^2 & -4bx \\ -4bx & 2b \end{pmatrix}
    """
    u, v = _xy(x)
    dxx = 2 - 4 * b * (v - u**2) + 8 * b * u**2  # ∂²f/∂x²
    dxy = -4 * b * u  # ∂²f/∂x∂y
    dyy = torch.full_like(u, 2 * b)  # ∂²f/∂y²
    return torch.stack((torch.stack((dxx, dxy), dim=-1), torch.stack((dxy, dyy), dim=-1)), dim=-2)
