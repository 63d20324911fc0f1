"""rlteach.lqr: the Riccati solution is optimal, the linearisation is CartPole's Jacobian, LQR balances the pole."""

import math

import pytest
import torch

from rlteach.envs import BatchedCartPole
from rlteach.lqr import cartpole_linearization, dare, lqr_cost, lqr_force_to_action

F64 = torch.float64


def test_scalar_riccati_matches_the_root_of_its_quadratic():
    """n = m = 1: b²P² + (r − a²r − qb²)P − qr = 0, the positive root."""
    a, b, q, r = 1.2, 0.5, 2.0, 0.3
    sol = dare(*(torch.tensor([[v]], dtype=F64) for v in (a, b, q, r)))
    lin = r - a * a * r - q * b * b
    expected = (-lin + math.sqrt(lin * lin + 4 * b * b * q * r)) / (2 * b * b)
    assert float(sol.P) == pytest.approx(expected, rel=1e-9)
    assert float(sol.K) == pytest.approx(a * b * expected / (r + b * b * expected), rel=1e-9)


def test_the_riccati_gain_is_optimal_and_its_cost_is_x_P_x():
    """From random starts, x0'Px0 is the closed-loop cost of u = −Kx, and perturbed gains cost more."""
    g = torch.Generator().manual_seed(0)
    A, B = cartpole_linearization()
    Q, R = torch.diag(torch.tensor([1.0, 0.1, 10.0, 0.1], dtype=F64)), torch.tensor([[0.01]], dtype=F64)
    sol = dare(A, B, Q, R)
    assert sol.residual <= 1e-10 * float(sol.P.abs().max())
    x0 = 0.05 * torch.randn(8, 4, generator=g, dtype=F64)
    cost = lqr_cost(A, B, Q, R, sol.K, x0, steps=3000)
    torch.testing.assert_close(cost, ((x0 @ sol.P) * x0).sum(1), rtol=1e-7, atol=0)
    for _ in range(5):
        worse = lqr_cost(A, B, Q, R, sol.K * (1 + 0.05 * torch.randn(1, 4, generator=g, dtype=F64)), x0, 3000)
        assert bool(worse.sum() > cost.sum())


def test_the_linearisation_is_the_jacobian_of_the_batched_dynamics():
    """A and B equal autograd's Jacobians of BatchedCartPole's Euler step at the upright rest state."""
    params = {"length": 0.7, "masspole": 0.2, "friction": 0.3}
    env = BatchedCartPole(1, dtype=F64, randomize={k: (v, v) for k, v in params.items()})
    env.reset(0)
    A, B = cartpole_linearization(params)

    def step(x: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
        return env._dynamics(x.unsqueeze(0), force.reshape(1) / 10.0)[0][0]  # the command is F / (10 N · gain)

    jac_x, jac_f = torch.autograd.functional.jacobian(step, (torch.zeros(4, dtype=F64), torch.zeros(1, dtype=F64)))
    torch.testing.assert_close(jac_x, A)
    torch.testing.assert_close(jac_f, B)


def test_lqr_balances_the_nonlinear_cartpole_for_500_steps():
    """Bang-bang on the sign of −Kx keeps 256 poles up for the whole episode."""
    A, B = cartpole_linearization()
    sol = dare(A, B, torch.diag(torch.tensor([1.0, 1.0, 10.0, 1.0], dtype=F64)), torch.tensor([[0.1]], dtype=F64))
    env = BatchedCartPole(256, dtype=F64)
    obs = env.reset(0)
    for _ in range(499):
        out = env.step(lqr_force_to_action(-(obs @ sol.K.T).squeeze(1)))
        assert not out.terminated.any()
        obs = out.obs
    assert env.step(lqr_force_to_action(-(obs @ sol.K.T).squeeze(1))).truncated.all()


def test_an_unstabilisable_system_is_a_clear_error():
    A = torch.tensor([[2.0, 0.0], [0.0, 0.5]], dtype=F64)
    B = torch.tensor([[0.0], [1.0]], dtype=F64)  # the unstable mode gets no input
    with pytest.raises(ValueError, match="did not converge"):
        dare(A, B, torch.eye(2, dtype=F64), torch.eye(1, dtype=F64), max_iter=2000)
    with pytest.raises(ValueError, match="expected"):
        dare(A, B.T, torch.eye(2, dtype=F64), torch.eye(1, dtype=F64))
