r"""The linear-quadratic regulator: the optimal controller where one is known, the bar for deep RL.

For linear dynamics :math:`x_{t+1} = A x_t + B u_t` and the cost
:math:`\sum_t x_t^\top Q x_t + u_t^\top R u_t`, the optimal policy is linear, :math:`u = -Kx`,
with K from the discrete algebraic Riccati equation (Kalman 1960):

.. math:: P = Q + A^\top P A - A^\top P B\,(R + B^\top P B)^{-1} B^\top P A,\qquad
          K = (R + B^\top P B)^{-1} B^\top P A

and :math:`x_0^\top P x_0` is the optimal cost from :math:`x_0`. Iterating the right-hand side
from P = Q is dynamic programming backwards in time (value iteration on a quadratic value
function); it converges when (A, B) is stabilisable and Q ≻ 0.

CartPole is not linear, but near upright its Euler step is
:math:`x_{t+1} \approx A x_t + B F_t` with the Jacobians of :class:`rlteach.envs.BatchedCartPole`'s
dynamics at x = 0, F = 0 (:func:`cartpole_linearization`). The gain of that linear model
balances the nonlinear pole, in milliseconds of computation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from rlteach.envs import CARTPOLE_NOMINAL

__all__ = ["LQRSolution", "cartpole_linearization", "dare", "lqr_cost", "lqr_force_to_action"]

TAU = 0.02  # CartPole's Euler step, seconds


def cartpole_linearization(params: Mapping[str, float] | None = None, tau: float = TAU) -> tuple[Tensor, Tensor]:
    r"""CartPole's Euler step linearised at the upright rest state, :math:`x_{t+1} \approx A x_t + B F_t`.

    With :math:`m = m_c + m_p`, half-length l, :math:`d = l(4/3 - m_p/m)` and viscous cart
    friction μ, the accelerations at small angles are

    .. math:: \ddot\theta = \frac{g\theta - (F - \mu\dot x)/m}{d},\qquad
              \ddot x = \frac{F - \mu\dot x}{m} - \frac{m_p l}{m}\ddot\theta

    and one explicit Euler step of τ gives A = I + τ J_x, B = τ J_F.

    Parameters
    ----------
    params : mapping, optional
        Physical parameters (:data:`rlteach.envs.CARTPOLE_NOMINAL` by default, missing
        keys taken from it); F is the force in newtons.
    tau : float

    Returns
    -------
    A : Tensor, shape (4, 4), float64
    B : Tensor, shape (4, 1), float64
        State order :math:`(x, \dot x, \theta, \dot\theta)`.
    """
    p = {**CARTPOLE_NOMINAL, **(params or {})}
    m = p["masscart"] + p["masspole"]
    d = p["length"] * (4.0 / 3.0 - p["masspole"] / m)
    ml_over_m = p["masspole"] * p["length"] / m
    # θ̈ = a_θ θ + b_θ F + c_θ ẋ and ẍ = a_x θ + b_x F + c_x ẋ
    a_theta, b_theta, c_theta = p["gravity"] / d, -1.0 / (m * d), p["friction"] / (m * d)
    a_x, b_x, c_x = -ml_over_m * a_theta, 1.0 / m - ml_over_m * b_theta, -p["friction"] / m - ml_over_m * c_theta
    jac_x = torch.tensor([[0.0, 1.0, 0.0, 0.0],
                          [0.0, c_x, a_x, 0.0],
                          [0.0, 0.0, 0.0, 1.0],
                          [0.0, c_theta, a_theta, 0.0]], dtype=torch.float64)
    jac_f = torch.tensor([[0.0], [b_x], [0.0], [b_theta]], dtype=torch.float64)
    return torch.eye(4, dtype=torch.float64) + tau * jac_x, tau * jac_f


class LQRSolution(NamedTuple):
    """What :func:`dare` returns."""

    P: Tensor  # (n, n): x'Px is the optimal cost-to-go
    K: Tensor  # (m, n): the optimal policy u = −Kx
    iterations: int  # Riccati sweeps until the change in P fell below tol
    residual: float  # the last sweep's largest change in P, max |Riccati(P) − P|


def dare(A: Tensor, B: Tensor, Q: Tensor, R: Tensor, *, tol: float = 1e-10, max_iter: int = 100_000) -> LQRSolution:
    r"""Solve the discrete algebraic Riccati equation by iterating it from P = Q.

    Parameters
    ----------
    A : Tensor, shape (n, n)
    B : Tensor, shape (n, m)
    Q : Tensor, shape (n, n), symmetric positive semidefinite
    R : Tensor, shape (m, m), symmetric positive definite
    tol : float
        Stop when no entry of P changes by more than ``tol`` times its largest entry.
    max_iter : int

    Returns
    -------
    LQRSolution

    Raises
    ------
    ValueError
        For inconsistent shapes, or when the iteration has not converged (the system is
        not stabilisable by this B, or P grows without bound).
    """
    n, m = A.shape[0], B.shape[1]
    if A.shape != (n, n) or B.shape != (n, m) or Q.shape != (n, n) or R.shape != (m, m):
        raise ValueError(f"A {tuple(A.shape)}, B {tuple(B.shape)}, Q {tuple(Q.shape)}, R {tuple(R.shape)}: "
                         f"expected (n, n), (n, m), (n, n), (m, m)")
    P = Q.clone()
    for it in range(1, max_iter + 1):
        BtP = B.T @ P
        K = torch.linalg.solve(R + BtP @ B, BtP @ A)  # K = (R + B'PB)⁻¹ B'PA
        P_next = Q + A.T @ P @ (A - B @ K)  # P ← Q + A'PA − A'PB K
        P_next = 0.5 * (P_next + P_next.T)  # keep P symmetric against rounding
        change = float((P_next - P).abs().max())
        P = P_next
        if not torch.isfinite(P).all():
            break
        if change <= tol * max(1.0, float(P.abs().max())):
            BtP = B.T @ P
            K = torch.linalg.solve(R + BtP @ B, BtP @ A)
            return LQRSolution(P, K, it, change)
    raise ValueError(f"the Riccati iteration did not converge in {it} sweeps: is (A, B) stabilisable and Q ≻ 0?")


def lqr_cost(A: Tensor, B: Tensor, Q: Tensor, R: Tensor, K: Tensor, x0: Tensor, steps: int) -> Tensor:
    r""":math:`\sum_{t<T} x_t^\top Q x_t + u_t^\top R u_t` along :math:`u_t = -Kx_t` from each start x0 (B, n), shape (B,)."""
    x, total = x0, x0.new_zeros(x0.shape[0])
    for _ in range(steps):
        u = -x @ K.T
        total = total + ((x @ Q) * x).sum(1) + ((u @ R) * u).sum(1)
        x = x @ A.T + u @ B.T
    return total


def lqr_force_to_action(force: Tensor) -> Tensor:
    """CartPole's discrete action for a desired force: push right (1) where it is positive, else left (0)."""
    return (force > 0).long()
