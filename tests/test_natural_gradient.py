import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from rlteach import kl
from rlteach import natural_gradient as ng
from tests.conftest import DEVICES

F64 = torch.float64


def random_spd(gen, n, cond=10.0):
    """A = Q diag(λ) Qᵀ with λ spread over [1, cond]."""
    Q, _ = torch.linalg.qr(torch.randn((n, n), generator=gen, dtype=F64))
    eigenvalues = torch.logspace(0, math.log10(cond), n, dtype=F64)
    return (Q * eigenvalues) @ Q.T


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [1, 5, 12, 30])
def test_cg_matches_linalg_solve_within_n_iterations(gen, device, n):
    """CG from v ↦ Av solves Ax = b like torch.linalg.solve, converging in at most n iterations
    with one matvec each."""
    A = random_spd(gen, n).to(device)
    b = torch.randn(n, generator=gen, dtype=F64).to(device)
    result = ng.conjugate_gradient(lambda v: A @ v, b, max_iter=n, tol=1e-10)
    assert result.converged and 1 <= result.iterations <= n
    assert result.matvecs == result.iterations
    assert result.x.device.type == device
    torch.testing.assert_close(result.x, torch.linalg.solve(A, b), rtol=1e-8, atol=1e-10)
    assert result.residual_norm <= 1e-10 * float(b.norm())
    assert float((b - A @ result.x).norm()) <= 1e-8 * float(b.norm())


@pytest.mark.parametrize("distinct", [1, 2, 3, 5])
def test_cg_needs_one_iteration_per_distinct_eigenvalue(gen, distinct):
    """With m distinct eigenvalues the Krylov space holds the solution after m steps: exactly m iterations."""
    n = 10
    Q, _ = torch.linalg.qr(torch.randn((n, n), generator=gen, dtype=F64))
    values = torch.tensor([1.0, 2.5, 4.0, 7.0, 9.0], dtype=F64)[:distinct]
    eigenvalues = values[torch.arange(n) % distinct]
    A = (Q * eigenvalues) @ Q.T
    b = torch.randn(n, generator=gen, dtype=F64)
    result = ng.conjugate_gradient(lambda v: A @ v, b, max_iter=n, tol=1e-10)
    assert result.converged and result.iterations == distinct
    torch.testing.assert_close(result.x, torch.linalg.solve(A, b), rtol=1e-9, atol=1e-11)


def test_cg_reports_running_out_of_iterations(gen):
    """Three iterations on an ill-conditioned 20-D system: not converged, residual below ‖b‖ (CG
    decreases the A-norm error), reported rather than raised."""
    A = random_spd(gen, 20, cond=1e4)
    b = torch.randn(20, generator=gen, dtype=F64)
    result = ng.conjugate_gradient(lambda v: A @ v, b, max_iter=3)
    assert not result.converged and result.iterations == 3 and result.matvecs == 3
    assert 0 < result.residual_norm
    torch.testing.assert_close(torch.tensor(result.residual_norm, dtype=F64), (b - A @ result.x).norm(), rtol=1e-8, atol=0)


def test_cg_of_a_zero_right_hand_side_is_zero():
    result = ng.conjugate_gradient(lambda v: 2 * v, torch.zeros(4, dtype=F64))
    assert torch.equal(result.x, torch.zeros(4, dtype=F64))
    assert result.iterations == 0 and result.matvecs == 0 and result.converged


@pytest.mark.parametrize("A, b", [
    (torch.diag(torch.tensor([1.0, -1.0], dtype=F64)), torch.tensor([0.1, 1.0], dtype=F64)),
    (-torch.eye(3, dtype=F64), torch.ones(3, dtype=F64)),
    (torch.zeros((2, 2), dtype=F64), torch.ones(2, dtype=F64)),
    (torch.diag(torch.tensor([4.0, 1.0, -0.5], dtype=F64)), torch.tensor([1.0, 1.0, 1.0], dtype=F64)),
])
def test_cg_refuses_a_matrix_that_is_not_positive_definite(A, b):
    """pᵀAp ≤ 0 is detected and named."""
    with pytest.raises(ValueError, match="non-positive curvature"):
        ng.conjugate_gradient(lambda v: A @ v, b)


def test_hessian_vector_product_of_a_flat_function_matches_the_hessian(gen):
    """∇(∇fᵀv) = ∇²f v, against torch.autograd.functional.hessian of a non-quadratic f."""
    def f(x):
        return (torch.sin(x) * x**2).sum() + (x @ x) ** 2 + torch.logsumexp(x, 0)

    x = torch.randn(7, generator=gen, dtype=F64)
    v = torch.randn(7, generator=gen, dtype=F64)
    torch.testing.assert_close(ng.hessian_vector_product(f, x, v), torch.autograd.functional.hessian(f, x) @ v, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ng.hessian_vector_product(lambda y: 3 * y.sum(), x, v), torch.zeros(7, dtype=F64), rtol=0, atol=0)


def mlp_policy(gen, obs_dim=4, hidden=5, num_actions=3):
    policy = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, num_actions)).double()
    set_random(policy, gen)
    return policy


def set_random(module, gen):
    ng.set_flat_params(module, 0.7 * torch.randn(ng.flat_params(module).shape, generator=gen, dtype=F64))


def test_hessian_vector_product_of_a_parameter_list_matches_the_hessian(gen):
    """For a scalar of an MLP's parameters, the operator equals the explicit Hessian of the flat
    parameters (functional_call + autograd.functional.hessian), plus damping·v; it counts its calls."""
    policy = mlp_policy(gen)
    obs = torch.randn((9, 4), generator=gen, dtype=F64)
    theta = ng.flat_params(policy)

    def loss_of(flat):
        return functional_call(policy, ng.unflatten_params(policy, flat), (obs,)).pow(2).mean()

    H = torch.autograd.functional.hessian(loss_of, theta)
    hvp = ng.HessianVectorProduct(policy(obs).pow(2).mean(), list(policy.parameters()), damping=0.1)
    for _ in range(3):
        v = torch.randn(theta.shape, generator=gen, dtype=F64)
        torch.testing.assert_close(hvp(v), H @ v + 0.1 * v, rtol=1e-10, atol=1e-12)
    assert hvp.matvecs == 3


def linear_policy_kl(obs, K, theta):
    """θ (requiring grad), and the mean KL(π_old‖π_θ) at θ = θ_old with π_old detached."""
    logits = kl.linear_softmax_logits(theta, obs, K)
    return kl.mean_categorical_kl(logits.detach(), logits)


@pytest.mark.parametrize("device", DEVICES)
def test_fisher_vector_product_is_the_hessian_of_the_mean_kl_and_the_score_outer_product(gen, device):
    """(F + dI)v from double backprop of D̄_KL at θ_old equals the explicit Hessian of D̄_KL
    (autograd.functional.hessian) and the explicit Fisher E_s Σ_a π ∇logπ∇logπᵀ, times v, plus d·v."""
    obs = torch.randn((16, 6), generator=gen, dtype=F64)
    theta_old = 0.5 * torch.randn(24, generator=gen, dtype=F64)
    v = torch.randn(24, generator=gen, dtype=F64)
    logits_old = kl.linear_softmax_logits(theta_old, obs, 4)
    hessian = torch.autograd.functional.hessian(lambda th: kl.mean_categorical_kl(logits_old, kl.linear_softmax_logits(th, obs, 4)), theta_old)
    fisher = kl.categorical_fisher(lambda th: kl.linear_softmax_logits(th, obs, 4), theta_old)
    theta = theta_old.to(device).requires_grad_(True)
    fvp = ng.fisher_vector_product(linear_policy_kl(obs.to(device), 4, theta), [theta], v.to(device), damping=0.05)
    assert fvp.device.type == device
    torch.testing.assert_close(fvp.cpu(), hessian @ v + 0.05 * v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fvp.cpu(), fisher @ v + 0.05 * v, rtol=1e-10, atol=1e-12)


def test_fisher_vector_product_of_an_mlp_policy_matches_its_explicit_fisher(gen):
    """Through an nn.Module: HessianVectorProduct(D̄_KL, policy.parameters()) = F v, F from
    categorical_fisher on the flat parameters via unflatten_params."""
    policy = mlp_policy(gen)
    obs = torch.randn((10, 4), generator=gen, dtype=F64)
    logits = policy(obs)
    fvp = ng.HessianVectorProduct(kl.mean_categorical_kl(logits.detach(), logits), list(policy.parameters()))
    fisher = kl.categorical_fisher(lambda th: functional_call(policy, ng.unflatten_params(policy, th), (obs,)), ng.flat_params(policy))
    for _ in range(2):
        v = torch.randn(fisher.shape[0], generator=gen, dtype=F64)
        torch.testing.assert_close(fvp(v), fisher @ v, rtol=1e-9, atol=1e-12)


def damped_linear_policy(gen, damping=0.1):
    obs = torch.randn((20, 5), generator=gen, dtype=F64)
    theta = (0.5 * torch.randn(15, generator=gen, dtype=F64)).requires_grad_(True)
    fvp = ng.HessianVectorProduct(linear_policy_kl(obs, 3, theta), [theta], damping=damping)
    fisher = kl.categorical_fisher(lambda th: kl.linear_softmax_logits(th, obs, 3), theta.detach())
    return obs, theta, fvp, fisher + damping * torch.eye(15, dtype=F64)


def test_natural_step_lies_on_the_kl_ellipsoid(gen):
    """½ sᵀ(F + dI)s = max_kl, the direction is (F + dI)⁻¹g, and gᵀs = √(2δ gᵀF⁻¹g)."""
    _, _, fvp, damped = damped_linear_policy(gen)
    g = torch.randn(15, generator=gen, dtype=F64)
    result = ng.natural_gradient_step(g, fvp, max_kl=0.01, cg_iters=15)
    assert result.cg.converged
    assert float(0.5 * result.step @ damped @ result.step) == pytest.approx(0.01, rel=1e-10)
    direction = torch.linalg.solve(damped, g)
    torch.testing.assert_close(result.direction, direction, rtol=1e-8, atol=1e-10)
    assert result.expected_improvement == pytest.approx(math.sqrt(2 * 0.01 * float(g @ direction)), rel=1e-8)
    assert result.scale == pytest.approx(math.sqrt(2 * 0.01 / result.quad), rel=1e-14)


def test_natural_step_with_few_cg_iterations_is_still_on_the_ellipsoid(gen):
    """Three CG iterations give an approximate direction, but the scaling still puts ½ sᵀFs at max_kl."""
    _, _, fvp, damped = damped_linear_policy(gen)
    g = torch.randn(15, generator=gen, dtype=F64)
    result = ng.natural_gradient_step(g, fvp, max_kl=0.02, cg_iters=3)
    assert not result.cg.converged and result.cg.iterations == 3
    assert float(0.5 * result.step @ damped @ result.step) == pytest.approx(0.02, rel=1e-10)
    assert result.expected_improvement > 0


def test_natural_step_moves_the_policy_by_about_max_kl(gen):
    """Taking the step, the true mean KL(π_old‖π_new) is max_kl to within 5% at δ = 1e-4 (the
    quadratic model of the KL is good for small steps); without damping CG still runs on the
    singular F because g lies in its range."""
    obs, theta, _, _ = damped_linear_policy(gen, damping=0.0)
    logits_old = kl.linear_softmax_logits(theta.detach(), obs, 3)
    target = torch.randn((20, 3), generator=gen, dtype=F64)
    surrogate = (torch.softmax(kl.linear_softmax_logits(theta, obs, 3), -1) * target).sum(-1).mean()
    g = ng.flat_grad(surrogate, [theta])
    fvp = ng.HessianVectorProduct(linear_policy_kl(obs, 3, theta), [theta], damping=1e-6)
    result = ng.natural_gradient_step(g, fvp, max_kl=1e-4, cg_iters=30)
    new_logits = kl.linear_softmax_logits(theta.detach() + result.step, obs, 3)
    assert float(kl.mean_categorical_kl(logits_old, new_logits)) == pytest.approx(1e-4, rel=0.05)


def test_natural_step_of_a_zero_gradient_is_zero(gen):
    _, _, fvp, _ = damped_linear_policy(gen)
    result = ng.natural_gradient_step(torch.zeros(15, dtype=F64), fvp, max_kl=0.01)
    assert torch.equal(result.step, torch.zeros(15, dtype=F64)) and result.cg.iterations == 0


def test_flat_parameters_round_trip(gen):
    """flat_params → set_flat_params restores the module; unflatten_params gives views in parameters() order."""
    policy = mlp_policy(gen)
    theta = ng.flat_params(policy)
    assert theta.shape == (sum(p.numel() for p in policy.parameters()),) and not theta.requires_grad
    ng.set_flat_params(policy, torch.zeros_like(theta))
    assert float(ng.flat_params(policy).abs().max()) == 0.0
    ng.set_flat_params(policy, theta)
    torch.testing.assert_close(ng.flat_params(policy), theta, rtol=0, atol=0)
    named = ng.unflatten_params(policy, theta)
    assert list(named) == [n for n, _ in policy.named_parameters()]
    for (_, p), view in zip(policy.named_parameters(), named.values(), strict=True):
        torch.testing.assert_close(view, p.detach(), rtol=0, atol=0)


def test_flat_grad_fills_unused_parameters_with_zeros(gen):
    a = torch.randn(3, generator=gen, dtype=F64, requires_grad=True)
    b = torch.randn(2, generator=gen, dtype=F64, requires_grad=True)
    grad = ng.flat_grad((a**2).sum(), [a, b])
    torch.testing.assert_close(grad, torch.cat((2 * a.detach(), torch.zeros(2, dtype=F64))), rtol=0, atol=0)


def bad_hvp():
    theta = torch.zeros(4, dtype=F64, requires_grad=True)
    return ng.HessianVectorProduct((theta**2).sum(), [theta])


@pytest.mark.parametrize("call, match", [
    (lambda: ng.conjugate_gradient(lambda v: v, torch.ones(2, 2)), r"shape \(n,\)"),
    (lambda: ng.conjugate_gradient(lambda v: v, torch.tensor([1.0, float("nan")])), "b contains NaN"),
    (lambda: ng.conjugate_gradient(lambda v: v[:1], torch.ones(2)), "matvec returned shape"),
    (lambda: ng.conjugate_gradient(lambda v: v * float("nan"), torch.ones(2)), "matvec returned NaN"),
    (lambda: ng.natural_gradient_step(torch.ones(4, dtype=F64), bad_hvp(), max_kl=0.0), "max_kl"),
    (lambda: ng.natural_gradient_step(torch.ones(4, dtype=F64), bad_hvp(), max_kl=-1.0), "max_kl"),
    (lambda: ng.natural_gradient_step(torch.ones(4, dtype=F64), lambda v: -v, max_kl=0.01), "non-positive curvature"),
    (lambda: bad_hvp()(torch.ones(5, dtype=F64)), "mismatched shapes"),
    (lambda: ng.HessianVectorProduct(torch.zeros((), requires_grad=True), [], damping=-0.1), "damping"),
    (lambda: ng.hessian_vector_product(lambda x: x.sum(), torch.ones(3), torch.ones(4)), "mismatched shapes"),
    (lambda: ng.set_flat_params(nn.Linear(2, 2), torch.zeros(5)), "mismatched shapes"),
    (lambda: ng.flat_grad(torch.ones(2, requires_grad=True) * 2, []), "scalar"),
])
def test_bad_input_gets_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
