"""rlteach.prox_algorithms: Dykstra against an active-set reference, ISTA/FISTA against
coordinate descent on a lasso, the proximal point method, callbacks."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from rlteach import projections as S
from rlteach import prox as P
from rlteach import prox_algorithms as alg
from tests.prox_cases import (
    DEVICES,
    LIN,
    PSD,
    N,
    lasso_by_coordinate_descent,
    polyhedron_projection_by_active_sets,
    to_numpy,
)

# ------------------------------------------------------------ intersections: Dykstra vs POCS

BOX_HALFSPACE = (
    [
        functools.partial(S.project_box, lower=0.0, upper=1.0),
        functools.partial(S.project_halfspace, a=[1.0, 1.0], b=1.0),
    ],
    [2.0, 1.5],
    [0.75, 0.25],  # onto the edge x₁ + x₂ = 1 of the triangle
    [0.5, 0.5],  # POCS: the box sends v to (1, 1), the half-space to (½, ½), which is feasible
)
BALL_AFFINE = (
    [functools.partial(S.project_l2_ball, radius=1.0), functools.partial(S.project_affine, A=[[0.0, 1.0]], b=[0.5])],
    [2.0, 2.0],
    [math.sqrt(3) / 2, 0.5],  # the chord x₂ = ½ of the unit disc ends at x₁ = √3/2
    [1 / math.sqrt(2), 0.5],  # POCS: the ball sends v to (1/√2, 1/√2), the line to (1/√2, ½)
)


@pytest.mark.parametrize("device", ["numpy", *DEVICES])
@pytest.mark.parametrize("case", [BOX_HALFSPACE, BALL_AFFINE], ids=["box-halfspace", "ball-affine"])
def test_dykstra_finds_the_projection_where_alternating_projections_stop_elsewhere(case, device):
    """Dykstra → Π_{C₁∩C₂}(v) (worked out by hand); POCS → another feasible point, > 0.1 away."""
    projections, v, truth, pocs_point = case
    v = np.array(v) if device == "numpy" else torch.tensor(v, dtype=torch.float64, device=device)
    x_dykstra, info_d = alg.dykstra(projections, v, tol=1e-13)
    x_pocs, info_p = alg.alternating_projections(projections, v, tol=1e-13)
    assert info_d.converged and info_p.converged, (info_d, info_p)
    assert type(x_dykstra) is type(v) and type(x_pocs) is type(v)
    x_dykstra, x_pocs = to_numpy(x_dykstra), to_numpy(x_pocs)
    np.testing.assert_allclose(x_dykstra, truth, rtol=0, atol=1e-10)
    np.testing.assert_allclose(x_pocs, pocs_point, rtol=0, atol=1e-10)
    for project in projections:  # the POCS point is feasible: each projection leaves it in place
        np.testing.assert_allclose(to_numpy(project(x_pocs)), x_pocs, rtol=0, atol=1e-12)
    assert np.linalg.norm(x_pocs - x_dykstra) > 0.1


@pytest.mark.slow
def test_dykstra_matches_an_active_set_qp_on_random_points_of_a_polytope():
    """Box ∩ two half-spaces in ℝ³: Dykstra equals the projection by active-set enumeration."""
    rng = np.random.default_rng(0)
    a1, b1, a2, b2 = np.array([1.0, 1.0, 1.0]), 1.5, np.array([1.0, -2.0, 0.5]), 0.2
    G = np.concatenate([np.eye(3), -np.eye(3), a1[None], a2[None]])
    h = np.concatenate([np.ones(3), np.zeros(3), [b1, b2]])
    projections = [
        functools.partial(S.project_box, lower=0.0, upper=1.0),
        functools.partial(S.project_halfspace, a=a1, b=b1),
        functools.partial(S.project_halfspace, a=a2, b=b2),
    ]
    v = 2 * rng.normal(size=(40, 3))
    x, info = alg.dykstra(projections, v, tol=1e-13, max_iter=20_000)
    expected = np.array([polyhedron_projection_by_active_sets(row, G, h) for row in v])
    assert info.converged, info
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-8)
    pocs, _ = alg.alternating_projections(projections, v, tol=1e-13, max_iter=20_000)
    assert np.linalg.norm(pocs - expected, axis=-1).max() > 0.05, "POCS should miss the projection somewhere"


def test_intersection_solvers_report_running_out_of_iterations():
    """max_iter=1 on a case that needs more: converged=False, iterations=1, a positive residual."""
    projections, v, _, _ = BALL_AFFINE
    for solver in (alg.dykstra, alg.alternating_projections):
        _, info = solver(projections, np.array(v), max_iter=1)
        assert info.iterations == 1 and not info.converged and info.residual > 1e-3, (solver.__name__, info)


# ------------------------------------------------------------------ lasso by ISTA and FISTA


def lasso_problem():
    rng = np.random.default_rng(0)
    common = rng.normal(size=(60, 1))
    A = rng.normal(size=(60, 20)) + 1.5 * common  # correlated columns: ill-conditioned
    x_true = np.where(rng.uniform(size=20) < 0.3, 3 * rng.normal(size=20), 0.0)
    b = A @ x_true + 0.5 * rng.normal(size=60)
    return A, b, 10.0


@pytest.mark.slow
@pytest.mark.parametrize("device", ["numpy", *DEVICES])
def test_ista_and_fista_solve_the_lasso_and_fista_needs_fewer_iterations(device):
    """Both reach the coordinate-descent lasso solution; to tol 1e-6 FISTA needs < half of ISTA's iterations."""
    A_np, b_np, alpha = lasso_problem()
    reference = lasso_by_coordinate_descent(A_np, b_np, alpha)
    assert 0 < (reference == 0).sum() < reference.size, "the case must have zero and non-zero coefficients"
    if device == "numpy":
        A, b, x0 = A_np, b_np, np.zeros(A_np.shape[1])
    else:
        A, b = torch.tensor(A_np, device=device), torch.tensor(b_np, device=device)
        x0 = torch.zeros(A_np.shape[1], dtype=torch.float64, device=device)
    grad_f = lambda x: A.T @ (A @ x - b)
    prox_g = lambda v, lam: P.prox_l1(v, alpha * lam)
    step = 1.0 / np.linalg.norm(A_np, 2) ** 2  # 1/L, L = ‖A‖₂²
    for solver in (alg.ista, alg.fista):
        x, info = solver(grad_f, prox_g, x0, step, tol=1e-12, max_iter=20_000)
        assert info.converged, (solver.__name__, info)
        assert type(x) is type(x0)
        np.testing.assert_allclose(to_numpy(x), reference, rtol=0, atol=1e-9, err_msg=solver.__name__)
    x_ista, info_ista = alg.ista(grad_f, prox_g, x0, step, tol=1e-6)
    x_fista, info_fista = alg.fista(grad_f, prox_g, x0, step, tol=1e-6)
    for x in (x_ista, x_fista):
        np.testing.assert_allclose(to_numpy(x), reference, rtol=0, atol=1e-3)
    assert info_fista.iterations < info_ista.iterations / 2, (info_fista, info_ista)


def test_proximal_point_reaches_the_minimiser():
    """Quadratic: x_k → −A⁻¹b; ℓ1 from (2.5, −1) with λ = 1: exactly 0 after ⌈2.5⌉ steps, seen at step 4."""
    x, info = alg.proximal_point(functools.partial(P.prox_quadratic, A=PSD, b=LIN), np.ones(N), 0.5, tol=1e-13)
    assert info.converged, info
    np.testing.assert_allclose(x, -np.linalg.solve(PSD, LIN), rtol=0, atol=1e-11)
    x, info = alg.proximal_point(P.prox_l1, np.array([2.5, -1.0]), 1.0, tol=0.0)
    assert info == P.IterInfo(4, True, 0.0)
    np.testing.assert_array_equal(x, [0.0, 0.0])




def test_callbacks_see_every_iterate_and_the_last_is_returned():
    """ISTA/FISTA/proximal point call back once per iteration; the projection algorithms once
    per projection; the last point seen is the point returned."""
    rng = np.random.default_rng(5)
    A = rng.normal(size=(12, 5))
    b = rng.normal(size=12)
    step = 1.0 / np.linalg.norm(A, 2) ** 2

    def grad_f(x):
        return A.T @ (A @ x - b)

    def prox_g(z, t):
        return P.prox_l1(z, 0.3 * t)

    for solver in (alg.ista, alg.fista):
        seen = []
        x, info = solver(grad_f, prox_g, np.zeros(5), step, max_iter=50, tol=0.0, callback=seen.append)
        assert len(seen) == info.iterations == 50
        np.testing.assert_array_equal(seen[-1], x)
    seen = []
    x, info = alg.proximal_point(lambda v, lam: P.prox_l1(v, lam), np.array([3.0, -2.0]), 0.5,
                                  callback=seen.append)
    assert len(seen) == info.iterations and info.converged
    np.testing.assert_array_equal(seen[-1], x)
    box = lambda v: S.project_box(v, 0.0, 2.0)
    half = lambda v: S.project_halfspace(v, np.array([1.0, 1.0]), 2.0)
    for algorithm in (alg.alternating_projections, alg.dykstra):
        seen = []
        x, info = algorithm([box, half], np.array([3.5, 1.0]), callback=seen.append)
        assert len(seen) == 2 * info.iterations
        np.testing.assert_array_equal(seen[-1], x)


# ------------------------------------------------ backtracking, worst-case bounds, linear rate


@pytest.mark.slow
def test_ista_with_backtracking_finds_the_lasso_solution_without_knowing_l():
    """From t₀ = 100/L the step halves to at most 1/L and no lower than 1/(2L); F decreases at every step
    and the iterates reach the coordinate-descent solution."""
    A, b, alpha = lasso_problem()
    L = np.linalg.norm(A, 2) ** 2
    seen = []
    x, info = alg.ista_backtracking(lambda x: 0.5 * ((A @ x - b) ** 2).sum(), lambda x: A.T @ (A @ x - b),
                                    lambda v, lam: P.prox_l1(v, alpha * lam), np.zeros(A.shape[1]), 100 / L,
                                    tol=1e-9, max_iter=20_000, callback=seen.append)
    assert info.converged and len(seen) == info.iterations and info.evaluations > info.iterations
    assert 0.5 / L <= info.step <= 1 / L
    F = [0.5 * ((A @ s - b) ** 2).sum() + alpha * np.abs(s).sum() for s in seen]
    assert (np.diff(F) <= 1e-9).all()
    np.testing.assert_allclose(x, lasso_by_coordinate_descent(A, b, alpha), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="shrink must lie in"):
        alg.ista_backtracking(lambda x: 0.0, lambda x: x, P.prox_l1, np.zeros(2), 1.0, shrink=1.0)


def test_the_worst_case_bounds_by_hand_and_on_the_lasso():
    """L d²/(2k) and 2L d²/(k+1)² at k = 1, 2, 4; ISTA's and FISTA's gaps on the lasso stay below them."""
    np.testing.assert_allclose(alg.ista_bound(2.0, 3.0, 4), [9.0, 4.5, 3.0, 2.25])
    np.testing.assert_allclose(alg.fista_bound(2.0, 3.0, 3), [9.0, 4.0, 2.25])
    np.testing.assert_allclose(alg.linear_rate_bound(4.0, 1.0, 2.0, 2), [3.0, 2.25])
    A, b, alpha = lasso_problem()
    L = np.linalg.norm(A, 2) ** 2
    reference = lasso_by_coordinate_descent(A, b, alpha)
    F = lambda x: 0.5 * ((x @ A.T - b) ** 2).sum(-1) + alpha * np.abs(x).sum(-1)
    F_star = F(reference[None])[0]
    for solver, bound in ((alg.ista, alg.ista_bound), (alg.fista, alg.fista_bound)):
        seen = []
        solver(lambda x: A.T @ (A @ x - b), lambda v, lam: P.prox_l1(v, alpha * lam), np.zeros(A.shape[1]), 1 / L,
               max_iter=300, tol=0.0, callback=seen.append)
        assert (F(np.array(seen)) - F_star <= bound(L, np.linalg.norm(reference), len(seen)) + 1e-9).all()
    with pytest.raises(ValueError, match="strong_convexity <= lipschitz"):
        alg.linear_rate_bound(1.0, 2.0, 1.0, 3)


def test_ista_converges_linearly_under_strong_convexity():
    """M of full column rank: ‖x_k − x*‖² ≤ (1 − μ/L)^k ‖x₀ − x*‖² at every k."""
    rng = np.random.default_rng(3)
    M = rng.normal(size=(80, 10))
    y = rng.normal(size=80)
    eig = np.linalg.eigvalsh(M.T @ M)
    grad_f, prox_g = (lambda x: M.T @ (M @ x - y)), (lambda v, lam: P.prox_l1(v, 0.5 * lam))
    x_star, _ = alg.fista(grad_f, prox_g, np.zeros(10), 1 / eig.max(), max_iter=20_000, tol=1e-15)
    seen = []
    alg.ista(grad_f, prox_g, np.zeros(10), 1 / eig.max(), max_iter=60, tol=0.0, callback=seen.append)
    distance = ((np.array(seen) - x_star) ** 2).sum(-1)
    assert (distance <= alg.linear_rate_bound(eig.max(), eig.min(), np.linalg.norm(x_star), 60) + 1e-12).all()


def test_alternating_projections_reach_the_projection_for_subspaces_and_for_the_simplex_hyperplane_first(rng):
    """Two planes through 0 in ℝ³ (von Neumann), and {Σx = 1} then {x ≥ 0}: the limit is the projection.
    With the orthant first the limit is feasible but another point; Dykstra finds the projection in every order."""
    planes = [functools.partial(S.project_affine, A=[[1.0, 1.0, 0.0]], b=[0.0]),
              functools.partial(S.project_affine, A=[[0.0, 1.0, -1.0]], b=[0.0])]
    v3 = rng.normal(scale=2.0, size=(50, 3))
    x, _ = alg.alternating_projections(planes, v3, tol=1e-14)
    np.testing.assert_allclose(x, S.project_affine(v3, [[1.0, 1.0, 0.0], [0.0, 1.0, -1.0]], [0.0, 0.0]), atol=1e-12)
    hyperplane = functools.partial(S.project_affine, A=np.ones((1, 4)), b=[1.0])
    orthant = functools.partial(S.project_box, lower=0.0, upper=np.inf)
    v = rng.normal(scale=2.0, size=(100, 4))
    x, _ = alg.alternating_projections([hyperplane, orthant], v, max_iter=10_000, tol=1e-14)
    np.testing.assert_allclose(x, S.project_simplex(v), atol=1e-11)
    x_other, _ = alg.alternating_projections([orthant, hyperplane], v, max_iter=10_000, tol=1e-14)
    assert np.abs(x_other - S.project_simplex(v)).max() > 0.1
    x_dykstra, _ = alg.dykstra([orthant, hyperplane], v, max_iter=10_000, tol=1e-14)
    np.testing.assert_allclose(x_dykstra, S.project_simplex(v), atol=1e-11)
