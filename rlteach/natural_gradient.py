r"""The natural-gradient step of TRPO: conjugate gradient on Fisher-vector products.

TRPO linearises the surrogate objective (gradient g) and replaces the KL constraint by its
second-order form (Fisher F), giving

.. math:: \max_s\ g^\top s \quad\text{s.t.}\quad \tfrac12 s^\top F s \le \delta
          \qquad\Longrightarrow\qquad
          s^* = \sqrt{\frac{2\delta}{g^\top F^{-1} g}}\; F^{-1} g .

F is never formed: it has P² entries for P parameters. Conjugate gradient solves
:math:`Fx = g` from products Fv alone, and each Fv is a Hessian-vector product of the mean
KL by double backpropagation, costing about two gradients. Schulman et al. 2015, "Trust
Region Policy Optimization", Appendix C; Kakade 2001, "A Natural Policy Gradient".

=====================================  ==========================================================
function                               what it does
=====================================  ==========================================================
:func:`conjugate_gradient`             solves Ax = b from a callable v ↦ Av
:func:`hessian_vector_product`         ∇²f(x) v for a scalar function of a flat vector
:class:`HessianVectorProduct`          v ↦ (∇²f + damping·I) v for a scalar of a parameter list
:func:`fisher_vector_product`          (F + damping·I) v from the mean KL at θ = θ_old
:func:`natural_gradient_step`          s = √(2δ / xᵀFx)·x with x = F⁻¹g by CG
=====================================  ==========================================================

Vectors are flat, shape (P,), in the order of ``module.parameters()``;
:func:`flat_params`, :func:`set_flat_params`, :func:`unflatten_params` and :func:`flat_grad`
move between a module and that vector. New tensors follow their inputs' device and dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from rlteach._validate import as_tensor, check_finite, positive_int, positive_number

__all__ = [
    "CGResult",
    "HessianVectorProduct",
    "NaturalStep",
    "conjugate_gradient",
    "fisher_vector_product",
    "flat_grad",
    "flat_params",
    "hessian_vector_product",
    "natural_gradient_step",
    "set_flat_params",
    "unflatten_params",
]

Matvec = Callable[[Tensor], Tensor]


class CGResult(NamedTuple):
    """Solution and diagnostics of :func:`conjugate_gradient`."""

    x: Tensor  # the approximate solution of Ax = b, shape (n,)
    iterations: int  # CG iterations run
    residual_norm: float  # ‖b − Ax‖ by the recurrence
    matvecs: int  # calls of the matrix-vector product
    converged: bool  # residual_norm ≤ tol·‖b‖


def _vector(name: str, v: object) -> Tensor:
    t = as_tensor(name, v)
    if t.ndim != 1:
        raise ValueError(f"{name}: expected a flat vector of shape (n,), got {tuple(t.shape)}")
    check_finite(t, name)
    return t


def conjugate_gradient(matvec: Matvec, b: Tensor, max_iter: int | None = None, tol: float = 1e-10) -> CGResult:
    r"""Solve :math:`Ax = b` for a symmetric positive definite A given only v ↦ Av.

    From x₀ = 0, r₀ = p₀ = b:

    .. math:: \alpha_k = \frac{r_k^\top r_k}{p_k^\top A p_k},\quad
              x_{k+1} = x_k + \alpha_k p_k,\quad r_{k+1} = r_k - \alpha_k A p_k,\quad
              p_{k+1} = r_{k+1} + \frac{r_{k+1}^\top r_{k+1}}{r_k^\top r_k} p_k

    Each iteration minimises :math:`\tfrac12 x^\top A x - b^\top x` over a Krylov space
    one dimension larger, so in exact arithmetic CG ends within n iterations (within m
    when A has m distinct eigenvalues). One matvec per iteration. Hestenes & Stiefel
    1952; Nocedal & Wright 2006, Algorithm 5.2.

    Parameters
    ----------
    matvec : callable
        v ↦ Av, shape (n,) -> (n,); A symmetric positive definite.
    b : Tensor, shape (n,)
    max_iter : int, optional
        Default n. TRPO uses about 10: an approximate F⁻¹g is enough.
    tol : float
        Stop when :math:`\|r_k\| \le \mathrm{tol}\cdot\|b\|`.

    Returns
    -------
    CGResult
        Not converging within ``max_iter`` is reported, not raised.

    Raises
    ------
    ValueError
        :math:`p_k^\top A p_k \le 0` (A is not positive definite: CG's step would go the
        wrong way or divide by zero), a matvec of the wrong shape or with NaN, b not a
        finite vector.
    """
    b = _vector("b", b)
    max_iter = b.shape[0] if max_iter is None else positive_int("max_iter", max_iter)
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    x = torch.zeros_like(b)
    r = b.clone()  # r₀ = b − A·0
    p = r.clone()
    rr = float(r @ r)
    stop = tol * math.sqrt(rr)
    if rr == 0.0:
        return CGResult(x, 0, 0.0, 0, True)
    for k in range(max_iter):
        Ap = matvec(p)
        if Ap.shape != p.shape:
            raise ValueError(f"matvec returned shape {tuple(Ap.shape)} for a vector of shape {tuple(p.shape)}")
        pAp = float(p @ Ap)  # curvature along p
        if math.isnan(pAp):
            raise ValueError(f"conjugate_gradient: matvec returned NaN at iteration {k}")
        if not pAp > 0:
            raise ValueError(
                f"conjugate_gradient: non-positive curvature p^T A p = {pAp:.3g} at iteration {k}: "
                "A is not positive definite (add damping, or check the matrix-vector product)"
            )
        alpha = rr / pAp  # exact line minimum along p
        x = x + alpha * p
        r = r - alpha * Ap  # r_{k+1} = r_k − α A p_k
        rr_next = float(r @ r)
        if math.sqrt(rr_next) <= stop:
            return CGResult(x, k + 1, math.sqrt(rr_next), k + 1, True)
        p = r + (rr_next / rr) * p  # β = ‖r_{k+1}‖²/‖r_k‖²
        rr = rr_next
    return CGResult(x, max_iter, math.sqrt(rr), max_iter, False)


def flat_params(module: nn.Module) -> Tensor:
    """The module's parameters as one detached vector, shape (P,), in ``parameters()`` order."""
    return nn.utils.parameters_to_vector(module.parameters()).detach().clone()


def set_flat_params(module: nn.Module, flat: Tensor) -> None:
    """Copy a vector of shape (P,) into the module's parameters, in place (no autograd)."""
    total = sum(p.numel() for p in module.parameters())
    if flat.ndim != 1 or flat.shape[0] != total:
        raise ValueError(f"mismatched shapes: flat {tuple(flat.shape)} must be ({total},) for this module")
    with torch.no_grad():
        nn.utils.vector_to_parameters(flat, module.parameters())


def unflatten_params(module: nn.Module, flat: Tensor) -> dict[str, Tensor]:
    """Name → view of ``flat`` shaped like that parameter, for ``torch.func.functional_call``.

    The views keep ``flat``'s autograd graph, so a function of ``flat`` can run the module:
    ``functional_call(module, unflatten_params(module, theta), (obs,))``.
    """
    named = list(module.named_parameters())
    total = sum(p.numel() for _, p in named)
    if flat.ndim != 1 or flat.shape[0] != total:
        raise ValueError(f"mismatched shapes: flat {tuple(flat.shape)} must be ({total},) for this module")
    out, start = {}, 0
    for name, p in named:
        out[name] = flat[start:start + p.numel()].view_as(p)
        start += p.numel()
    return out


def flat_grad(output: Tensor, params: Sequence[Tensor], create_graph: bool = False,
              retain_graph: bool | None = None) -> Tensor:
    """∇ of a scalar ``output`` with respect to ``params``, flattened to shape (P,).

    A parameter that ``output`` does not depend on contributes zeros.
    """
    if output.ndim != 0:
        raise ValueError(f"output must be a scalar, got shape {tuple(output.shape)}")
    params = list(params)
    grads = torch.autograd.grad(output, params, create_graph=create_graph, retain_graph=retain_graph, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params, strict=True)])


def hessian_vector_product(fn: Callable[[Tensor], Tensor], x: Tensor, v: Tensor) -> Tensor:
    r"""∇²f(x) v for a scalar function of a flat vector, by double backpropagation.

    .. math:: \nabla^2 f(x)\,v = \nabla_x\big(\nabla_x f(x)^\top v\big)

    The first gradient is built with ``create_graph=True``; differentiating its inner
    product with the constant v costs about one more backward pass, and the P × P
    Hessian is never formed. Pearlmutter 1994, "Fast Exact Multiplication by the Hessian".

    Parameters
    ----------
    fn : callable
        x ↦ f(x), a scalar tensor, twice differentiable.
    x : Tensor, shape (P,)
    v : Tensor, shape (P,)

    Returns
    -------
    Tensor, shape (P,)
        Detached.
    """
    x = _vector("x", x)
    v = _vector("v", v)
    if v.shape != x.shape:
        raise ValueError(f"mismatched shapes: v {tuple(v.shape)} and x {tuple(x.shape)}")
    x = x.detach().requires_grad_(True)
    grad = flat_grad(fn(x), [x], create_graph=True)  # ∇f(x), with its graph
    if not grad.requires_grad:  # f is affine: ∇²f = 0
        return torch.zeros_like(x).detach()
    return flat_grad(grad @ v.detach(), [x]).detach()  # ∇(∇fᵀv) = ∇²f v


class HessianVectorProduct:
    r"""The operator :math:`v \mapsto (\nabla^2 f + \mathrm{damping}\cdot I)\,v` for a scalar of parameters.

    Build it once from a scalar ``output`` (say the mean KL) and the parameters it depends
    on; each call then costs one backward pass through the stored first gradient, so CG
    can call it many times. ``matvecs`` counts the calls.

    Parameters
    ----------
    output : Tensor, shape ()
        f(θ), computed from ``params`` with its autograd graph.
    params : sequence of Tensor
        The parameters θ (requires_grad), e.g. ``list(policy.parameters())``.
    damping : float
        ≥ 0; added times the identity (Levenberg-Marquardt damping: keeps a singular or
        noisy F positive definite and shortens steps along its flat directions).
    """

    def __init__(self, output: Tensor, params: Sequence[Tensor], damping: float = 0.0) -> None:
        self.params = list(params)
        self.damping = positive_number("damping", damping, allow_zero=True)
        self.size = sum(p.numel() for p in self.params)
        self.grad = flat_grad(output, self.params, create_graph=True)  # ∇f(θ), kept with its graph
        self.matvecs = 0

    def __call__(self, v: Tensor) -> Tensor:
        if v.ndim != 1 or v.shape[0] != self.size:
            raise ValueError(f"mismatched shapes: v {tuple(v.shape)} must be ({self.size},), one entry per parameter")
        self.matvecs += 1
        v = v.detach()
        if not self.grad.requires_grad:  # f is affine in θ
            return self.damping * v
        hv = flat_grad(self.grad @ v, self.params, retain_graph=True)  # ∇(∇fᵀv) = ∇²f v
        return hv.detach() + self.damping * v  # (∇²f + damping·I) v


def fisher_vector_product(mean_kl: Tensor, params: Sequence[Tensor], v: Tensor, damping: float = 0.0) -> Tensor:
    r"""Fisher-vector product :math:`(F + \mathrm{damping}\cdot I)\,v` as the Hessian of the mean KL.

    .. math:: F(\theta_{old}) = \nabla^2_\theta\, \bar D_{\mathrm{KL}}(\theta_{old}, \theta)\big|_{\theta=\theta_{old}},
              \qquad \bar D_{\mathrm{KL}} = \mathbb E_s\,\mathrm{KL}\big(\pi_{\theta_{old}}(\cdot|s)\,\|\,\pi_\theta(\cdot|s)\big)

    ``mean_kl`` must be evaluated at θ = θ_old with the old distribution detached, e.g.
    ``mean_categorical_kl(logits.detach(), logits)``: its value and gradient are then 0 and
    its Hessian is exactly the Fisher information :math:`\mathbb E[\nabla\log\pi\,\nabla\log\pi^\top]`.
    For many products build a :class:`HessianVectorProduct` once instead.

    Parameters
    ----------
    mean_kl : Tensor, shape ()
    params : sequence of Tensor
        θ, of total size P.
    v : Tensor, shape (P,)
    damping : float
        ≥ 0.

    Returns
    -------
    Tensor, shape (P,)
    """
    return HessianVectorProduct(mean_kl, params, damping)(_vector("v", v))


class NaturalStep(NamedTuple):
    """The natural-gradient step and how it was found (see :func:`natural_gradient_step`)."""

    step: Tensor  # s = √(2δ / xᵀFx)·x, shape (P,), with ½ sᵀFs = max_kl
    direction: Tensor  # x ≈ F⁻¹g from CG, shape (P,)
    quad: float  # xᵀFx = gᵀF⁻¹g (for an exact x)
    scale: float  # √(2δ / xᵀFx)
    expected_improvement: float  # gᵀs, the first-order gain of the step
    cg: CGResult


def natural_gradient_step(grad: Tensor, fvp: Matvec, max_kl: float, cg_iters: int = 10,
                          cg_tol: float = 1e-10) -> NaturalStep:
    r"""TRPO's step: the natural-gradient direction scaled to the edge of the KL ellipsoid.

    .. math:: x = F^{-1} g\ \text{(by CG)},\qquad
              s = \sqrt{\frac{2\delta}{x^\top F x}}\; x,\qquad \tfrac12 s^\top F s = \delta

    It maximises :math:`g^\top s` subject to :math:`\tfrac12 s^\top F s \le \delta`. F is
    whatever ``fvp`` multiplies by (with its damping, if any); one more product gives
    :math:`x^\top F x`. A zero gradient gives a zero step. TRPO then line-searches along s
    on the true surrogate and KL (Schulman et al. 2015, Appendix C).

    Parameters
    ----------
    grad : Tensor, shape (P,)
        g, the gradient of the objective to *maximise* (for a loss, pass −∇loss).
    fvp : callable
        v ↦ Fv, e.g. a :class:`HessianVectorProduct` of the mean KL.
    max_kl : float
        δ > 0, the trust-region size in nats.
    cg_iters, cg_tol : int, float
        Passed to :func:`conjugate_gradient` as ``max_iter`` and ``tol``.

    Returns
    -------
    NaturalStep

    Raises
    ------
    ValueError
        δ ≤ 0, or F not positive definite (from CG, or xᵀFx ≤ 0).
    """
    max_kl = positive_number("max_kl", max_kl, what="the KL radius δ")
    grad = _vector("grad", grad)
    cg = conjugate_gradient(fvp, grad, max_iter=cg_iters, tol=cg_tol)
    x = cg.x
    if cg.iterations == 0:  # g = 0: no direction improves the objective to first order
        return NaturalStep(torch.zeros_like(grad), x, 0.0, 0.0, 0.0, cg)
    quad = float(x @ fvp(x))  # xᵀFx
    if not quad > 0:
        raise ValueError(f"natural_gradient_step: x^T F x = {quad:.3g} <= 0, F is not positive definite")
    scale = math.sqrt(2 * max_kl / quad)  # √(2δ / xᵀFx)
    step = scale * x  # s on the ellipsoid ½ sᵀFs = δ
    return NaturalStep(step, x, quad, scale, float(grad @ step), cg)
