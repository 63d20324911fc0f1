import itertools
import math

import pytest
import torch

from rlteach import trust_region as tr
from rlteach.prox import prox_quadratic
from tests.conftest import DEVICES

F64 = torch.float64


def rotation(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s], [s, c]], dtype=F64)


def rotated(eigenvalues, g_in_eigenbasis, angle):
    """H = R diag(λ) Rᵀ and g = R ĝ: a 2-D problem with chosen eigenvalues and ĝ."""
    R = rotation(angle)
    H = R @ torch.diag(torch.tensor(eigenvalues, dtype=F64)) @ R.T
    return R @ torch.tensor(g_in_eigenbasis, dtype=F64), 0.5 * (H + H.T)


def random_problem(gen, n, shift=0.0):
    """Random symmetric H (indefinite unless shifted) and g."""
    A = torch.randn((n, n), generator=gen, dtype=F64)
    return torch.randn(n, generator=gen, dtype=F64), 0.5 * (A + A.T) + shift * torch.eye(n, dtype=F64)


def random_spd(gen, n):
    A = torch.randn((n, n), generator=gen, dtype=F64)
    return torch.randn(n, generator=gen, dtype=F64), A @ A.T + 0.5 * torch.eye(n, dtype=F64)


def brute_force_min(g, H, radius):
    """min m(p) over a polar grid of the disk (200 radii × 360 angles) and over its circle
    (10 000 angles, then 2 000 more around the best one)."""
    r = torch.linspace(0.0, radius, 201, dtype=F64)
    angles = torch.linspace(0.0, 2 * math.pi, 361, dtype=F64)[:-1]
    disk = r[:, None, None] * torch.stack((angles.cos(), angles.sin()), dim=-1)
    phi = torch.linspace(0.0, 2 * math.pi, 10_001, dtype=F64)
    coarse = tr.quadratic_model(g, H, radius * torch.stack((phi.cos(), phi.sin()), dim=-1))
    best = float(phi[int(coarse.argmin())])
    fine = torch.linspace(best - 2e-3, best + 2e-3, 2001, dtype=F64)
    circle = tr.quadratic_model(g, H, radius * torch.stack((fine.cos(), fine.sin()), dim=-1))
    return min(float(tr.quadratic_model(g, H, disk).min()), float(coarse.min()), float(circle.min()))


SPECIAL_2D = {
    "pd_interior": ((1.0, 3.0), (0.5, -0.4), 1.0),
    "pd_boundary": ((1.0, 3.0), (2.0, -1.0), 0.7),
    "indefinite": ((-1.0, 2.0), (0.6, 1.0), 1.0),
    "hard_case": ((-1.0, 2.0), (0.0, 1.0), 1.0),
    "hard_case_double_negative": ((-2.0, -2.0), (0.0, 0.0), 0.5),
    "near_hard_case": ((-1.0, 2.0), (1e-8, 1.0), 1.0),
    "orthogonal_but_outside": ((-1.0, 2.0), (0.0, 5.0), 1.0),
    "psd_singular_in_range": ((0.0, 2.0), (0.0, 1.0), 1.0),
    "psd_singular_out_of_range": ((0.0, 2.0), (0.3, 1.0), 1.0),
    "zero_gradient_indefinite": ((-0.5, 1.0), (0.0, 0.0), 2.0),
    "negative_definite": ((-3.0, -1.0), (0.2, 0.5), 0.8),
}


def cases_2d():
    gen = torch.Generator().manual_seed(7)
    out = []
    for name, (eigs, g_hat, radius) in SPECIAL_2D.items():
        g, H = rotated(eigs, g_hat, 0.37)
        out.append(pytest.param(g, H, radius, id=name))
    for k in range(12):
        g, H = random_problem(gen, 2)
        radius = 0.2 + 2.0 * float(torch.rand((), generator=gen, dtype=F64))
        out.append(pytest.param(g, H, radius, id=f"random{k}"))
    return out


@pytest.mark.parametrize("g, H, radius", cases_2d())
def test_exact_solution_is_the_brute_force_minimum_over_the_disk(g, H, radius):
    """m(p*) ≤ min over a dense grid of the disk and its circle (to 1e-12), and not more than
    the grid's resolution below it; ‖p*‖ ≤ ρ."""
    sol = tr.solve_exact(g, H, radius)
    value = float(tr.quadratic_model(g, H, sol.step))
    brute = brute_force_min(g, H, radius)
    assert float(sol.step.norm()) <= radius * (1 + 1e-12)
    assert value <= brute + 1e-12
    assert value >= brute - 1e-3  # the disk's grid spacing is ρ/200


@pytest.mark.parametrize("g, H, radius", cases_2d())
def test_exact_solution_satisfies_the_more_sorensen_conditions(g, H, radius):
    """(H + μI)p = −g, H + μI ⪰ 0, μ ≥ 0 and μ(ρ − ‖p‖) = 0 (Nocedal & Wright Thm. 4.1)."""
    sol = tr.solve_exact(g, H, radius)
    eye = torch.eye(2, dtype=F64)
    torch.testing.assert_close((H + sol.mu * eye) @ sol.step, -g, rtol=0, atol=1e-9)
    assert sol.mu >= 0
    assert float(torch.linalg.eigvalsh(H + sol.mu * eye).min()) >= -1e-12
    assert sol.mu * (radius - float(sol.step.norm())) == pytest.approx(0.0, abs=1e-9)
    assert sol.on_boundary == (sol.mu > 0)


def test_exact_solution_satisfies_the_conditions_in_higher_dimension(gen):
    """The optimality conditions hold for random 8-D problems, definite or not, at several radii."""
    eye = torch.eye(8, dtype=F64)
    for shift in (-2.0, 0.0, 6.0):
        g, H = random_problem(gen, 8, shift)
        for radius in (0.05, 0.5, 5.0):
            sol = tr.solve_exact(g, H, radius)
            torch.testing.assert_close((H + sol.mu * eye) @ sol.step, -g, rtol=0, atol=1e-9)
            assert float(torch.linalg.eigvalsh(H + sol.mu * eye).min()) >= -1e-10
            assert float(sol.step.norm()) <= radius * (1 + 1e-12)
            assert sol.mu * (radius - float(sol.step.norm())) == pytest.approx(0.0, abs=1e-9)


def test_the_hard_case_adds_the_lowest_eigenvector_to_reach_the_boundary():
    """H = diag(−1, 2), g = (0, 1), ρ = 1: μ = 1, p = (±√(8/9), −1/3), ‖p‖ = ρ."""
    g = torch.tensor([0.0, 1.0], dtype=F64)
    H = torch.diag(torch.tensor([-1.0, 2.0], dtype=F64))
    sol = tr.solve_exact(g, H, 1.0)
    assert sol.hard_case and sol.on_boundary
    assert sol.mu == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(sol.step.abs(), torch.tensor([math.sqrt(8 / 9), 1 / 3], dtype=F64), rtol=0, atol=1e-12)
    assert float(sol.step.norm()) == pytest.approx(1.0, abs=1e-12)
    bigger = tr.solve_exact(5 * g, H, 1.0)  # p(μ*) = (0, −5/3) is outside: an ordinary boundary solution
    assert not bigger.hard_case and bigger.mu > 1.0


def test_a_near_hard_case_converges_to_the_hard_case_solution():
    """ĝ₁ = 1e-9 instead of 0 moves the solution by O(1e-9) and needs no more than 60 iterations."""
    H = torch.diag(torch.tensor([-1.0, 2.0], dtype=F64))
    hard = tr.solve_exact(torch.tensor([0.0, 1.0], dtype=F64), H, 1.0)
    near = tr.solve_exact(torch.tensor([1e-9, 1.0], dtype=F64), H, 1.0)
    assert not near.hard_case and near.iterations <= 60
    torch.testing.assert_close(near.step.abs(), hard.step.abs(), rtol=0, atol=1e-8)
    assert near.mu == pytest.approx(hard.mu, abs=1e-8)


def test_cauchy_point_dogleg_and_exact_step_decrease_the_model_in_that_order(gen):
    """m(p_exact) ≤ m(p_dogleg) ≤ m(p_cauchy) < 0 on random SPD problems, at small and large radii."""
    for _ in range(10):
        g, H = random_spd(gen, 5)
        for radius in (0.01, 0.1, 1.0, 10.0):
            m = {name: float(tr.quadratic_model(g, H, solve(g, H, radius).step))
                 for name, solve in (("cauchy", tr.cauchy_point), ("dogleg", tr.dogleg), ("exact", tr.solve_exact))}
            assert m["exact"] <= m["dogleg"] + 1e-12 <= m["cauchy"] + 2e-12
            assert m["cauchy"] < 0


def test_cauchy_point_closed_form():
    """p^C = −τρ g/‖g‖ with τ = min(‖g‖³/(ρ gᵀHg), 1), and τ = 1 under negative curvature."""
    g = torch.tensor([3.0, 4.0], dtype=F64)
    H = torch.diag(torch.tensor([2.0, 1.0], dtype=F64))  # gᵀHg = 34, ‖g‖ = 5
    torch.testing.assert_close(tr.cauchy_point(g, H, 10.0).step, -(125 / 34) * g / 5, rtol=1e-14, atol=0)
    step = tr.cauchy_point(g, -H, 10.0)
    assert step.on_boundary
    torch.testing.assert_close(step.step, -10.0 * g / 5, rtol=1e-14, atol=0)


def test_steihaug_is_the_newton_step_inside_and_on_the_boundary_otherwise(gen):
    """With −H⁻¹g inside the ball Steihaug-CG returns it; otherwise ‖p‖ = ρ, and its decrease
    is at least the Cauchy point's."""
    for _ in range(5):
        g, H = random_spd(gen, 6)
        newton = -torch.linalg.solve(H, g)
        inside = tr.steihaug_cg(g, H, 2.0 * float(newton.norm()), max_iter=50)
        assert not inside.on_boundary and inside.reason == "converged"
        torch.testing.assert_close(inside.step, newton, rtol=1e-8, atol=1e-10)
        radius = 0.3 * float(newton.norm())
        edge = tr.steihaug_cg(g, H, radius)
        assert edge.on_boundary and float(edge.step.norm()) == pytest.approx(radius, rel=1e-12)
        assert float(tr.quadratic_model(g, H, edge.step)) <= float(tr.quadratic_model(g, H, tr.cauchy_point(g, H, radius).step)) + 1e-12


def test_steihaug_follows_negative_curvature_to_the_boundary(gen):
    """For a negative definite H the first direction −g has dᵀHd < 0: p = −ρ g/‖g‖."""
    g, H = random_spd(gen, 4)
    sol = tr.steihaug_cg(g, -H, 0.5)
    assert sol.reason == "negative_curvature" and sol.iterations == 1
    torch.testing.assert_close(sol.step, -0.5 * g / g.norm(), rtol=1e-12, atol=0)


def test_steihaug_needs_only_hessian_vector_products(gen):
    """A callable v ↦ Hv gives the same step as the matrix."""
    g, H = random_problem(gen, 6, shift=1.0)
    with_matrix = tr.steihaug_cg(g, H, 0.8)
    with_callable = tr.steihaug_cg(g, lambda v: H @ v, 0.8)
    torch.testing.assert_close(with_callable.step, with_matrix.step, rtol=0, atol=0)
    assert with_callable.reason == with_matrix.reason


def test_rosenbrock_derivatives_match_autograd(gen):
    """rosenbrock_grad and rosenbrock_hess equal autograd's gradient and Hessian at random points."""
    for _ in range(5):
        x = torch.randn(2, generator=gen, dtype=F64)
        torch.testing.assert_close(tr.rosenbrock_grad(x), torch.autograd.functional.jacobian(tr.rosenbrock, x), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(tr.rosenbrock_hess(x), torch.autograd.functional.hessian(tr.rosenbrock, x), rtol=1e-12, atol=1e-12)
    xs = torch.randn((3, 4, 2), generator=gen, dtype=F64)
    assert tr.rosenbrock(xs).shape == (3, 4) and tr.rosenbrock_hess(xs).shape == (3, 4, 2, 2)
    assert float(tr.rosenbrock(torch.ones(2, dtype=F64))) == 0.0


@pytest.mark.parametrize("solver, window", [("exact", (15, 40)), ("steihaug", (15, 40)), ("dogleg", (15, 40))])
def test_trust_region_loop_reaches_rosenbrocks_minimum(solver, window):
    """From (−1.2, 1) the loop ends within 1e-6 of (1, 1) with ‖∇f‖ ≤ 1e-10, in a number of
    iterations that is the same on a rerun and lies in a fixed window."""
    x0 = torch.tensor([-1.2, 1.0], dtype=F64)
    config = tr.TrustRegionConfig(solver=solver)
    result = tr.trust_region_minimize(tr.rosenbrock, tr.rosenbrock_grad, tr.rosenbrock_hess, x0, config)
    assert result.converged
    assert float((result.x - 1.0).abs().max()) <= 1e-6
    assert window[0] <= result.iterations <= window[1]
    again = tr.trust_region_minimize(tr.rosenbrock, tr.rosenbrock_grad, tr.rosenbrock_hess, x0, config)
    assert again.iterations == result.iterations
    torch.testing.assert_close(again.path, result.path, rtol=0, atol=0)
    assert result.path.shape == (result.iterations + 1, 2) and result.radii.shape == (result.iterations,)


def test_trust_region_radius_follows_algorithm_4_1():
    """Δ_{k+1} = ¼Δ_k when ρ_k < ¼, min(2Δ_k, Δ̂) when ρ_k > ¾ at the boundary, else Δ_k;
    x moves exactly when ρ_k > η."""
    x0 = torch.tensor([-1.2, 1.0], dtype=F64)
    config = tr.TrustRegionConfig(radius=1.0, max_radius=4.0, eta=0.15)
    result = tr.trust_region_minimize(tr.rosenbrock, tr.rosenbrock_grad, tr.rosenbrock_hess, x0, config)
    radii, ratios, path = result.radii.tolist(), result.ratios.tolist(), result.path
    assert any(r < 0.25 for r in ratios) and any(r > 0.75 for r in ratios)
    for k in range(len(radii) - 1):
        step = float((path[k + 1] - path[k]).norm())
        allowed = {0.25 * radii[k], radii[k], min(2 * radii[k], 4.0)}
        assert any(math.isclose(radii[k + 1], a, rel_tol=1e-12) for a in allowed)
        if ratios[k] < 0.25:
            assert math.isclose(radii[k + 1], 0.25 * radii[k], rel_tol=1e-12)
        assert (step > 0) == (ratios[k] > 0.15)
    assert max(radii) <= 4.0


def test_cauchy_steps_alone_make_slow_progress():
    """Steepest descent in the ball: after 200 iterations Rosenbrock is still far from (1, 1),
    where Newton-like subproblem solvers were done in under 40."""
    x0 = torch.tensor([-1.2, 1.0], dtype=F64)
    result = tr.trust_region_minimize(tr.rosenbrock, tr.rosenbrock_grad, tr.rosenbrock_hess, x0,
                                      tr.TrustRegionConfig(solver="cauchy", max_iter=200))
    assert not result.converged and result.iterations == 200
    assert float((result.x - 1.0).abs().max()) > 1e-3
    assert result.fun < float(tr.rosenbrock(x0))


@pytest.mark.parametrize("shift", [-1.0, 0.5, 4.0])
def test_trust_region_step_is_the_prox_step_at_lam_of_radius(gen, shift):
    """argmin_{‖p‖≤ρ} m(p) = prox_{λm}(0) = −(H + I/λ)⁻¹g with λ = 1/μ(ρ), for several ρ."""
    g, H = random_problem(gen, 5, shift)
    for radius in (0.05, 0.2, 0.6, 1.5):
        sol = tr.solve_exact(g, H, radius)
        lam = tr.prox_lam_for_radius(g, H, radius)
        if math.isinf(lam):
            torch.testing.assert_close(tr.prox_step(g, H, lam), sol.step, rtol=1e-10, atol=1e-12)
            continue
        assert lam == pytest.approx(1.0 / sol.mu, rel=1e-12)
        torch.testing.assert_close(tr.prox_step(g, H, lam), sol.step, rtol=1e-8, atol=1e-10)
        assert tr.radius_for_prox_lam(g, H, lam) == pytest.approx(radius, rel=1e-8)


def test_prox_lam_grows_with_the_radius_and_is_infinite_inside(gen):
    """ρ ↦ λ(ρ) increases, and λ = ∞ once the Newton step fits in the ball."""
    g, H = random_spd(gen, 4)
    lams = [tr.prox_lam_for_radius(g, H, r) for r in (0.01, 0.03, 0.1, 0.3)]
    assert all(a < b for a, b in itertools.pairwise(lams))
    newton_norm = float(torch.linalg.solve(H, g).norm())
    assert tr.prox_lam_for_radius(g, H, 1.01 * newton_norm) == math.inf
    torch.testing.assert_close(tr.prox_step(g, H, math.inf), -torch.linalg.solve(H, g), rtol=1e-12, atol=1e-14)


def test_prox_step_is_prox_quadratic_at_zero(gen):
    """For H ⪰ 0, prox_{λm}(0) from this module equals rlteach.prox.prox_quadratic(0, λ, H, g)."""
    g, H = random_spd(gen, 5)
    for lam in (0.01, 0.3, 7.0):
        torch.testing.assert_close(tr.prox_step(g, H, lam), prox_quadratic(torch.zeros(5, dtype=F64), lam, H, g), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_subproblem_solvers_run_on_the_inputs_device(gen, device):
    """Every solver's step lies on the device of g, and agrees with the CPU result."""
    g, H = random_spd(gen, 4)
    for solve in (tr.solve_exact, tr.cauchy_point, tr.dogleg, tr.steihaug_cg):
        on_device = solve(g.to(device), H.to(device), 0.3).step
        assert on_device.device.type == device
        torch.testing.assert_close(on_device.cpu(), solve(g, H, 0.3).step, rtol=1e-9, atol=1e-12)
    assert tr.prox_step(g.to(device), H.to(device), 0.5).device.type == device


def test_float32_inputs_give_float32_steps(gen):
    g, H = random_problem(gen, 3)
    sol = tr.solve_exact(g.float(), H.float(), 0.5)
    assert sol.step.dtype == torch.float32
    torch.testing.assert_close(sol.step.double(), tr.solve_exact(g, H, 0.5).step, rtol=1e-4, atol=1e-5)


G2 = torch.tensor([1.0, -1.0], dtype=F64)
I2 = torch.eye(2, dtype=F64)


@pytest.mark.parametrize("call, match", [
    (lambda: tr.solve_exact(G2, I2, 0.0), "radius must be a finite number > 0"),
    (lambda: tr.solve_exact(G2, I2, -1.0), "radius"),
    (lambda: tr.cauchy_point(G2, I2, float("nan")), "radius"),
    (lambda: tr.steihaug_cg(G2, I2, 0.0), "radius"),
    (lambda: tr.dogleg(G2, I2, -0.5), "radius"),
    (lambda: tr.solve_exact(G2, torch.eye(3, dtype=F64), 1.0), "mismatched shapes"),
    (lambda: tr.solve_exact(torch.zeros(2, 2), I2, 1.0), r"shape \(n,\)"),
    (lambda: tr.solve_exact(torch.tensor([float("nan"), 0.0]), I2, 1.0), "g contains NaN"),
    (lambda: tr.solve_exact(G2, torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), 1.0), "H contains NaN"),
    (lambda: tr.solve_exact(G2, torch.tensor([[1.0, 2.0], [0.0, 1.0]]), 1.0), "symmetric"),
    (lambda: tr.dogleg(G2, -I2, 1.0), "positive definite"),
    (lambda: tr.dogleg(G2, torch.diag(torch.tensor([1.0, 0.0])), 1.0), "positive definite"),
    (lambda: tr.prox_step(G2, -I2, 2.0), "not positive definite"),
    (lambda: tr.prox_step(G2, I2, 0.0), "lam must be > 0"),
    (lambda: tr.quadratic_model(G2, I2, torch.zeros(3)), "mismatched shapes"),
    (lambda: tr.rosenbrock(torch.zeros(3)), r"shape \(\.\.\., 2\)"),
    (lambda: tr.TrustRegionConfig(radius=0.0), "radius"),
    (lambda: tr.TrustRegionConfig(eta=0.3), "eta"),
    (lambda: tr.TrustRegionConfig(radius=5.0, max_radius=1.0), "exceeds max_radius"),
    (lambda: tr.TrustRegionConfig(solver="newton"), "solver"),
])
def test_bad_input_gets_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_exact_path_is_solve_exact_at_each_radius_and_the_model_never_rises(gen):
    """For an SPD and an indefinite H: each row is solve_exact's step and μ, and m(p*(ρ)) is non-increasing in ρ."""
    for shift in (4.0, -1.0):
        g, H = random_problem(gen, 4, shift)
        radii = torch.tensor([0.05, 0.2, 0.5, 1.0, 3.0, 10.0], dtype=F64)
        path = tr.exact_path(g, H, radii)
        for k, radius in enumerate(radii.tolist()):
            sol = tr.solve_exact(g, H, radius)
            torch.testing.assert_close(path.steps[k], sol.step, rtol=0, atol=0)
            assert float(path.mus[k]) == sol.mu
        assert bool((path.model[1:] <= path.model[:-1] + 1e-12).all())
        torch.testing.assert_close(path.model, tr.quadratic_model(g, H, path.steps), rtol=0, atol=0)


def test_dogleg_path_corners_and_the_dogleg_step_on_it(gen):
    """p^U minimises m along −g, p^B = −H⁻¹g, ‖p^U‖ ≤ ‖p^B‖; a dogleg step between the two lengths lies
    on the segment p^U → p^B at distance ρ from 0."""
    for _ in range(5):
        g, H = random_spd(gen, 4)
        corners = tr.dogleg_path(g, H)
        torch.testing.assert_close(corners[0], torch.zeros(4, dtype=F64), rtol=0, atol=0)
        t = torch.linspace(0.0, 2.0 * float(corners[1].norm() / g.norm()), 2001, dtype=F64)
        along = tr.quadratic_model(g, H, -t[:, None] * g)
        assert float(tr.quadratic_model(g, H, corners[1])) <= float(along.min()) + 1e-12
        torch.testing.assert_close(corners[2], -torch.linalg.solve(H, g), rtol=1e-10, atol=1e-12)
        short, long = float(corners[1].norm()), float(corners[2].norm())
        assert short <= long
        radius = 0.5 * (short + long)
        step = tr.dogleg(g, H, radius).step
        s = float((step - corners[1]) @ (corners[2] - corners[1]) / (corners[2] - corners[1]).norm() ** 2)
        assert 0 < s < 1
        torch.testing.assert_close(step, corners[1] + s * (corners[2] - corners[1]), rtol=0, atol=1e-12)
        assert float(step.norm()) == pytest.approx(radius, rel=1e-12)
    with pytest.raises(ValueError, match="positive definite"):
        tr.dogleg_path(G2, -I2)
    with pytest.raises(ValueError, match="g != 0"):
        tr.dogleg_path(torch.zeros(2, dtype=F64), I2)


def test_reduction_ratio_is_one_on_a_quadratic_and_is_the_loop_s_first_ratio(gen):
    """On f = m itself the ratio is 1 for every step; on Rosenbrock it is what trust_region_minimize
    records at its first iteration, and along −g it tends to 1 like the square of the step length (the
    model's error is O(t³), the decrease it predicts O(t))."""
    g, H = random_spd(gen, 3)
    newton = -torch.linalg.solve(H, g)
    for scale in (0.01, 0.5, 1.9):  # m(t p^B) = t(1 − t/2) gᵀp^B < 0 for t in (0, 2)
        p = scale * newton
        assert tr.reduction_ratio(lambda x: tr.quadratic_model(g, H, x), torch.zeros(3, dtype=F64), p, g, H) == pytest.approx(1.0, abs=1e-9)
    x0 = torch.tensor([-1.2, 1.0], dtype=F64)
    g0, H0 = tr.rosenbrock_grad(x0), tr.rosenbrock_hess(x0)
    first = tr.trust_region_minimize(tr.rosenbrock, tr.rosenbrock_grad, tr.rosenbrock_hess, x0,
                                     tr.TrustRegionConfig(max_iter=1))
    p = tr.solve_exact(g0, H0, 1.0).step
    assert tr.reduction_ratio(tr.rosenbrock, x0, p, g0, H0) == pytest.approx(float(first.ratios[0]), rel=1e-12)
    gaps = [abs(1 - tr.reduction_ratio(tr.rosenbrock, x0, -t * g0 / g0.norm(), g0, H0)) for t in (1e-2, 1e-3, 1e-4)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[1] / gaps[2] == pytest.approx(100.0, rel=0.1)
    assert math.isnan(tr.reduction_ratio(tr.rosenbrock, x0, g0, g0, H0 * 0))  # uphill: no predicted decrease
