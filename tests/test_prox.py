"""rlteach.prox: closed forms against the numerical prox, projection identities,
Moreau decomposition, firm non-expansiveness, Dykstra against an active-set reference,
and ISTA/FISTA against coordinate descent on a lasso."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
import torch

from rlteach import prox as P

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]

N = 4  # dimension of the shared test cases

PSD = np.array([[2.0, 0.5, 0.0, 0.3], [0.5, 1.0, 0.2, 0.0], [0.0, 0.2, 0.5, 0.1], [0.3, 0.0, 0.1, 0.8]])
SINGULAR_PSD = np.outer([1.0, -2.0, 0.5, 1.0], [1.0, -2.0, 0.5, 1.0])  # rank 1
LIN = np.array([0.3, -0.7, 0.1, 0.4])
A_AFFINE = np.array([[1.0, 2.0, 0.0, -1.0], [0.0, 1.0, 1.0, 1.0]])
B_AFFINE = np.array([0.5, -1.0])

# name -> params: every prox and every set of rlteach.prox, in dimension N
CASES: dict[str, dict] = {
    "l1": {},
    "quadratic": {"A": PSD, "b": LIN},
    "l2": {},
    "box": {"lower": np.array([-1.0, 0.0, -0.5, -2.0]), "upper": np.array([1.0, 0.5, 0.5, -1.0])},
    "l2_ball": {"radius": 1.5, "center": np.array([0.5, -0.5, 0.0, 1.0])},
    "l1_ball": {"radius": 2.0, "center": np.array([0.0, 1.0, -1.0, 0.5])},
    "linf_ball": {"radius": 0.7, "center": np.array([0.2, 0.0, -0.3, 0.0])},
    "simplex": {"total": 2.0},
    "halfspace": {"a": np.array([1.0, -2.0, 0.5, 1.0]), "b": 0.3},
    "affine": {"A": A_AFFINE, "b": B_AFFINE},
}
assert set(CASES) == set(P.PROX_NAMES + P.SET_NAMES)


def to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ------------------------------------------------------------------- independent references


def pseudo_huber_l1(eps: float):
    """Σ_i √(x_i² + ε²): smooth, and → ‖x‖₁ as ε → 0."""
    return lambda x: torch.sqrt(x * x + eps * eps).sum(dim=-1)


def pseudo_huber_l2(eps: float):
    """√(‖x‖² + ε²): smooth, and → ‖x‖₂ as ε → 0."""
    return lambda x: torch.sqrt((x * x).sum(dim=-1) + eps * eps)


def prox_by_smoothing(smoothed, v, lam: float, final_eps: float = 1e-12):
    """Numerical prox of a norm: Newton on its ε-smoothing, warm-started as ε → final_eps."""
    x = None
    for k in range(1, round(-math.log10(final_eps)) + 1):
        x, info = P.prox_numerical(smoothed(10.0**-k), v, lam, x0=x, max_iter=200)
        assert info.converged, f"Newton did not converge at eps=1e-{k}: {info}"
    return x


def simplex_by_bisection(v: np.ndarray, total: float) -> np.ndarray:
    """Rows of v projected on {x ≥ 0, Σx = total}: θ solving Σ max(v − θ, 0) = total by bisection."""
    lo = v.min(axis=-1, keepdims=True) - total  # Σ max(v − lo, 0) ≥ total
    hi = v.max(axis=-1, keepdims=True)  # Σ max(v − hi, 0) = 0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        too_low = np.maximum(v - mid, 0.0).sum(axis=-1, keepdims=True) > total
        lo, hi = np.where(too_low, mid, lo), np.where(too_low, hi, mid)
    return np.maximum(v - 0.5 * (lo + hi), 0.0)


def polyhedron_projection_by_active_sets(v: np.ndarray, G: np.ndarray, h: np.ndarray) -> np.ndarray:
    """argmin ‖x − v‖ over {Gx ≤ h}, by enumerating active sets (tiny problems only).

    For each independent subset S, the projection onto {G_S x = h_S} is a candidate; the
    true projection is one of them (Carathéodory on its KKT multipliers), and every
    feasible candidate is at least as far from v, so the nearest feasible one is it.
    """
    best, best_dist = None, math.inf
    for k in range(v.size + 1):
        for S in itertools.combinations(range(len(h)), k):
            GS, hS = G[list(S)], h[list(S)]
            if k and np.linalg.matrix_rank(GS) < k:
                continue
            x = v if k == 0 else v - GS.T @ np.linalg.solve(GS @ GS.T, GS @ v - hS)
            dist = np.linalg.norm(x - v)
            if np.all(G @ x <= h + 1e-12) and dist < best_dist:
                best, best_dist = x, dist
    return best


def lasso_by_coordinate_descent(A: np.ndarray, b: np.ndarray, alpha: float, tol: float = 1e-15) -> np.ndarray:
    """argmin ½‖Ax − b‖² + α‖x‖₁ by cyclic coordinate descent (exact 1-D minimisation)."""
    x = np.zeros(A.shape[1])
    residual = b.copy()
    col_sq = (A * A).sum(axis=0)
    for _ in range(100_000):
        largest = 0.0
        for j in range(A.shape[1]):
            rho = A[:, j] @ residual + col_sq[j] * x[j]
            new = np.sign(rho) * max(abs(rho) - alpha, 0.0) / col_sq[j]
            residual += A[:, j] * (x[j] - new)
            largest = max(largest, abs(new - x[j]))
            x[j] = new
        if largest <= tol:
            return x
    raise AssertionError("coordinate descent did not converge")


# ----------------------------------------------------------- feasible points and violations


def feasible_points(name: str, params: dict, rng: np.random.Generator, k: int) -> np.ndarray:
    """k points of the set, shape (k, N), drawn without using rlteach.prox (vertices included)."""
    if name == "box":
        lo, hi = params["lower"], params["upper"]
        corners = np.array([np.where(bits, hi, lo) for bits in itertools.product([0, 1], repeat=N)])
        return np.concatenate([lo + rng.uniform(size=(k, N)) * (hi - lo), corners])
    if name == "l2_ball":
        u = rng.normal(size=(k, N))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        scale = rng.uniform(size=(k, 1)) ** (1 / N)
        scale[: k // 4] = 1.0  # a quarter on the sphere
        return params["center"] + params["radius"] * scale * u
    if name == "l1_ball":
        w = rng.dirichlet(np.ones(N), size=k) * rng.choice([-1.0, 1.0], size=(k, N))
        w *= rng.uniform(size=(k, 1)) ** (1 / N)
        vertices = np.concatenate([np.eye(N), -np.eye(N)])
        return params["center"] + params["radius"] * np.concatenate([w, vertices])
    if name == "linf_ball":
        corners = np.array(list(itertools.product([-1.0, 1.0], repeat=N)))
        return params["center"] + params["radius"] * np.concatenate([rng.uniform(-1, 1, size=(k, N)), corners])
    if name == "simplex":
        return params["total"] * np.concatenate([rng.dirichlet(np.ones(N), size=k), np.eye(N)])
    if name == "halfspace":
        a, b = params["a"], params["b"]
        z = 3 * rng.normal(size=(k, N))
        over = np.maximum(z @ a - b, 0.0)
        z -= (2 * over / (a @ a))[:, None] * a  # reflect the infeasible ones through the plane
        z[: k // 4] -= ((z[: k // 4] @ a - b) / (a @ a))[:, None] * a  # a quarter on the plane
        return z
    if name == "affine":
        A, b = params["A"], params["b"]
        particular = np.linalg.lstsq(A, b, rcond=None)[0]
        null = np.linalg.svd(A)[2][A.shape[0] :]  # rows spanning {x : Ax = 0}
        return particular + 3 * rng.normal(size=(k, null.shape[0])) @ null
    raise KeyError(name)


def violation(name: str, params: dict, x: np.ndarray) -> float:
    """Largest constraint violation of the rows of x (0 when all are in the set)."""
    if name == "box":
        return float(np.maximum(np.maximum(params["lower"] - x, x - params["upper"]), 0).max())
    if name == "l2_ball":
        return float(np.maximum(np.linalg.norm(x - params["center"], axis=-1) - params["radius"], 0).max())
    if name == "l1_ball":
        return float(np.maximum(np.abs(x - params["center"]).sum(-1) - params["radius"], 0).max())
    if name == "linf_ball":
        return float(np.maximum(np.abs(x - params["center"]).max(-1) - params["radius"], 0).max())
    if name == "simplex":
        return float(max(np.maximum(-x, 0).max(), np.abs(x.sum(-1) - params["total"]).max()))
    if name == "halfspace":
        return float(np.maximum(x @ params["a"] - params["b"], 0).max())
    if name == "affine":
        return float(np.abs(x @ params["A"].T - params["b"]).max())
    raise KeyError(name)


# ------------------------------------------------- closed forms against the numerical prox


@pytest.mark.parametrize("device", DEVICES)
def test_soft_thresholding_is_the_limit_of_the_numerical_prox_of_a_smoothed_l1(device):
    """prox_{λ‖·‖₁}(v) = lim_{ε→0} prox_{λ Σ√(x²+ε²)}(v): closed form = Newton reference."""
    g = torch.Generator().manual_seed(0)
    v = (2 * torch.randn(64, 6, generator=g, dtype=torch.float64)).to(device)
    lam = 0.7
    reference = prox_by_smoothing(pseudo_huber_l1, v, lam)
    closed = P.prox_l1(v, lam)
    assert float((closed == 0).float().mean()) > 0.2, "the case must threshold some entries to 0"
    torch.testing.assert_close(closed, reference, rtol=0, atol=1e-9)


@pytest.mark.parametrize("device", DEVICES)
def test_block_soft_thresholding_is_the_limit_of_the_numerical_prox_of_a_smoothed_l2(device):
    """prox_{λ‖·‖₂}(v) = lim_{ε→0} prox_{λ√(‖x‖²+ε²)}(v), for rows inside and outside ‖v‖ ≤ λ."""
    g = torch.Generator().manual_seed(0)
    scale = torch.linspace(0.1, 2.0, 40, dtype=torch.float64)[:, None]
    v = (torch.randn(40, 3, generator=g, dtype=torch.float64) * scale).to(device)
    lam = 0.8
    reference = prox_by_smoothing(pseudo_huber_l2, v, lam)
    closed = P.prox_l2(v, lam)
    zero_rows = float((closed.abs().amax(-1) == 0).float().mean())
    assert 0.1 < zero_rows < 0.9, f"the case must have rows on both sides of ‖v‖ = λ, got {zero_rows:.2f} zeroed"
    torch.testing.assert_close(closed, reference, rtol=0, atol=1e-9)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "A, b",
    [(None, None), (None, LIN), (PSD, LIN), (SINGULAR_PSD, None)],
    ids=["half-sq-norm", "shifted", "general", "singular"],
)
def test_quadratic_prox_matches_the_numerical_prox(device, A, b):
    """(I + λA)⁻¹(v − λb) equals Newton on ½xᵀAx + bᵀx + ‖x − v‖²/(2λ) to 1e-12."""
    g = torch.Generator().manual_seed(0)
    v = torch.randn(10, N, generator=g, dtype=torch.float64).to(device)
    Qt = torch.eye(N, dtype=torch.float64, device=device) if A is None else torch.as_tensor(A, device=device)
    lt = torch.zeros(N, dtype=torch.float64, device=device) if b is None else torch.as_tensor(b, device=device)
    f = lambda x: 0.5 * ((x @ Qt) * x).sum(-1) + x @ lt  # noqa: E731
    for lam in (0.05, 1.0, 20.0):
        reference, info = P.prox_numerical(f, v, lam)
        assert info.converged and info.iterations <= 3, f"Newton on a quadratic takes one step, got {info}"
        torch.testing.assert_close(P.prox_quadratic(v, lam, A=A, b=b), reference, rtol=0, atol=1e-12)


def test_quadratic_prox_with_defaults_is_shrinkage():
    """prox of (λ/2)‖x‖² is v/(1 + λ), exactly."""
    v = np.random.default_rng(0).normal(size=(3, 5))
    np.testing.assert_allclose(P.prox_quadratic(v, 0.25), v / 1.25, rtol=1e-15, atol=0)


def test_numerical_prox_matches_the_real_root_of_the_quartic_optimality_condition():
    """prox of λΣx⁴/4 solves λx³ + x − v = 0 coordinatewise; np.roots gives the real root."""
    rng = np.random.default_rng(0)
    v, lam = 3 * rng.normal(size=(5, 3)), 0.6
    x, info = P.prox_numerical(lambda z: (z**4).sum(-1) / 4, v, lam)
    roots = np.array([[r.real for r in np.roots([lam, 0.0, 1.0, -vi]) if abs(r.imag) < 1e-9][0] for vi in v.ravel()])
    assert info.converged, info
    assert isinstance(x, np.ndarray) and x.shape == v.shape
    np.testing.assert_allclose(x.ravel(), roots, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_numerical_prox_from_a_warm_start_and_its_diagnostics(device):
    """A start at the answer converges in 0 iterations; max_iter=1 from far away reports converged=False."""
    g = torch.Generator().manual_seed(0)
    v = (5 * torch.randn(8, 3, generator=g, dtype=torch.float64)).to(device)
    f = lambda x: torch.logsumexp(3 * x, dim=-1) + (x**4).sum(-1)  # noqa: E731
    x, info = P.prox_numerical(f, v, 2.0)
    assert info.converged and info.residual <= 1000 * torch.finfo(torch.float64).eps
    assert x.device == v.device and x.dtype == v.dtype
    again, info_warm = P.prox_numerical(f, v, 2.0, x0=x)
    assert info_warm.iterations == 0 and info_warm.converged
    torch.testing.assert_close(again, x, rtol=0, atol=0)
    _, info_short = P.prox_numerical(f, v, 2.0, max_iter=1)
    assert info_short.iterations == 1 and not info_short.converged and info_short.residual > 1e-6


# ---------------------------------------------------------------------- Moreau decomposition


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("lam", [0.1, 1.0, 3.0])
def test_moreau_decomposition_for_the_l1_and_l2_norms(device, lam):
    """v = prox_{λf}(v) + λ Π_{B*}(v/λ), B* the unit ball of the dual norm: ℓ1 ↔ ℓ∞ ball, ℓ2 ↔ ℓ2 ball."""
    g = torch.Generator().manual_seed(0)
    v = (2 * torch.randn(50, 5, generator=g, dtype=torch.float64)).to(device)
    torch.testing.assert_close(P.prox_l1(v, lam) + lam * P.project_linf_ball(v / lam, 1.0), v, rtol=0, atol=1e-14)
    torch.testing.assert_close(P.prox_l2(v, lam) + lam * P.project_l2_ball(v / lam, 1.0), v, rtol=0, atol=1e-14)


@pytest.mark.parametrize("device", DEVICES)
def test_moreau_decomposition_for_a_quadratic_with_the_numerical_prox_of_its_conjugate(device):
    """f = ½xᵀAx + bᵀx has f*(y) = ½(y − b)ᵀA⁻¹(y − b); v = prox_{λf}(v) + λ prox_{f*/λ}(v/λ)."""
    g = torch.Generator().manual_seed(0)
    v = (2 * torch.randn(20, N, generator=g, dtype=torch.float64)).to(device)
    A_inv = torch.linalg.inv(torch.as_tensor(PSD, device=device))
    b = torch.as_tensor(LIN, device=device)
    f_star = lambda y: 0.5 * (((y - b) @ A_inv) * (y - b)).sum(-1)  # noqa: E731
    for lam in (0.3, 2.0):
        dual, info = P.prox_numerical(f_star, v / lam, 1.0 / lam)
        assert info.converged, info
        torch.testing.assert_close(P.prox_quadratic(v, lam, A=PSD, b=LIN) + lam * dual, v, rtol=0, atol=1e-12)


# --------------------------------------------------------------- firm non-expansiveness


@pytest.mark.parametrize("name", list(CASES))
def test_prox_and_projections_are_firmly_nonexpansive(name):
    """‖Px − Py‖² ≤ ⟨Px − Py, x − y⟩ for 500 random pairs (a prox of a convex function)."""
    rng = np.random.default_rng(0)
    x, y = 3 * rng.normal(size=(500, N)), 3 * rng.normal(size=(500, N))
    px, py = P.prox_of(name, x, 0.8, **CASES[name]), P.prox_of(name, y, 0.8, **CASES[name])
    d = px - py
    gap = (d * d).sum(-1) - (d * (x - y)).sum(-1)
    assert gap.max() <= 1e-12, f"{name}: ‖Px−Py‖² exceeds ⟨Px−Py, x−y⟩ by {gap.max():.3g}"
    assert np.median((d * d).sum(-1) / ((x - y) ** 2).sum(-1)) < 1.0, f"{name}: the case never contracts"


# ------------------------------------------------------ prox as an implicit gradient step


@pytest.mark.parametrize("case", ["quadratic-closed-form", "logsumexp-numerical"])
def test_prox_minus_gradient_step_is_second_order_in_lam(case):
    """‖prox_{λf}(v) − (v − λ∇f(v))‖ = O(λ²): the log-log slope over λ ∈ [1e-4, 1e-1] is 2 ± 0.05."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=N)
    lams = np.logspace(-4, -1, 7)
    if case == "quadratic-closed-form":
        grad = PSD @ v + LIN
        proxes = [P.prox_quadratic(v, lam, A=PSD, b=LIN) for lam in lams]
    else:
        f = lambda x: torch.logsumexp(2 * x, dim=-1) + 0.25 * (x**4).sum(-1)  # noqa: E731
        vt = torch.tensor(v, requires_grad=True)
        (grad_t,) = torch.autograd.grad(f(vt), vt)
        grad = grad_t.numpy()
        proxes = [P.prox_numerical(f, v, lam)[0] for lam in lams]
    gaps = np.array([np.linalg.norm(p - (v - lam * grad)) for p, lam in zip(proxes, lams)])
    slope = np.polyfit(np.log(lams), np.log(gaps), 1)[0]
    assert abs(slope - 2.0) < 0.05, f"log-log slope {slope:.3f}, gaps {gaps}"


# ------------------------------------------------------------------------------ projections


@pytest.mark.parametrize("device", ["numpy", *DEVICES])
@pytest.mark.parametrize("name", list(P.SET_NAMES))
def test_projection_is_feasible_idempotent_and_satisfies_the_variational_inequality(name, device):
    """Pv ∈ C, P(Pv) = Pv, and ⟨v − Pv, y − Pv⟩ ≤ 0 for 300+ feasible y, so Pv is the projection."""
    rng = np.random.default_rng(0)
    params = CASES[name]
    v_np = 3 * rng.normal(size=(200, N))
    v = v_np if device == "numpy" else torch.tensor(v_np, device=device)
    pv = P.project_onto(name, v, **params)
    assert type(pv) is type(v)
    ppv = P.project_onto(name, pv, **params)
    pv, ppv = to_numpy(pv), to_numpy(ppv)
    moved = np.linalg.norm(pv - v_np, axis=-1) > 1e-9
    assert moved.mean() > 0.3, f"{name}: the case must have points outside the set"
    assert violation(name, params, pv) <= 1e-12, f"{name}: Pv violates the constraints"
    np.testing.assert_allclose(ppv, pv, rtol=0, atol=1e-13)
    y = feasible_points(name, params, rng, 300)
    assert violation(name, params, y) <= 1e-12, f"{name}: the sampler drew an infeasible y"
    inner = np.einsum("bn,bkn->bk", v_np - pv, y[None, :, :] - pv[:, None, :])
    assert inner.max() <= 1e-10, f"{name}: ⟨v − Pv, y − Pv⟩ = {inner.max():.3g} > 0"


def test_simplex_projection_matches_bisection_on_the_threshold():
    """Sort-based Π_Δ (Held/Duchi) equals max(v − θ, 0) with θ found by bisection, ties and edges included."""
    rng = np.random.default_rng(0)
    edge_cases = np.array(
        [
            [0.25, 0.25, 0.25, 0.25],  # already on the simplex
            [1.0, 1.0, 1.0, 1.0],  # ties above
            [-3.0, -3.0, -3.0, -3.0],  # ties below
            [10.0, 0.0, 0.0, 0.0],  # one dominant entry
            [0.5, 0.5, -2.0, 0.1],
            [1e-9, 0.0, 1.0, 1e-9],
        ]
    )
    v = np.concatenate([edge_cases, 2 * rng.normal(size=(300, 4)), 50 * rng.normal(size=(50, 4))])
    for total in (1.0, 0.3, 7.0):
        np.testing.assert_allclose(P.project_simplex(v, total), simplex_by_bisection(v, total), rtol=0, atol=1e-12)
    np.testing.assert_allclose(P.project_simplex(edge_cases[:2]), np.full((2, 4), 0.25), rtol=0, atol=1e-15)
    np.testing.assert_allclose(P.project_simplex(np.array([-4.2])), np.array([1.0]), rtol=0, atol=0)


def test_l1_ball_projection_is_soft_thresholding_at_the_bisected_level():
    """Outside the ball, Π_{‖·‖₁≤r}(v) = sign(v) max(|v| − θ, 0) with Σ max(|v| − θ, 0) = r; inside, v."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=(300, 5)) * rng.uniform(0.1, 1.5, size=(300, 1))
    radius = 3.0
    outside = np.abs(v).sum(-1) > radius
    expected = np.where(outside[:, None], np.sign(v) * simplex_by_bisection(np.abs(v), radius), v)
    assert 0.2 < outside.mean() < 0.8
    np.testing.assert_allclose(P.project_l1_ball(v, radius), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_affine_projection_matches_the_null_space_formula(device):
    """v − Aᵀ(AAᵀ)⁻¹(Av − b) = x_p + NNᵀ(v − x_p), with N an orthonormal null-space basis (SVD)."""
    rng = np.random.default_rng(0)
    A, b = rng.normal(size=(3, 6)), rng.normal(size=(7, 3))  # b batched: one right-hand side per row
    v = rng.normal(size=(7, 6))
    particular = np.linalg.lstsq(A, b.T, rcond=None)[0].T
    null = np.linalg.svd(A)[2][3:]
    expected = particular + (v - particular) @ null.T @ null
    out = P.project_affine(torch.tensor(v, device=device), torch.tensor(A), torch.tensor(b))
    assert out.device.type == torch.device(device).type
    np.testing.assert_allclose(to_numpy(out), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(to_numpy(out) @ A.T, b, rtol=0, atol=1e-12)


def test_halfspace_projection_by_hand():
    """{x : x₁ + x₂ ≤ 1}: (2, 1) ↦ (1, 0); points inside stay; a batch of offsets b broadcasts."""
    v = np.array([[2.0, 1.0], [0.0, 0.0], [3.0, 3.0]])
    out = P.project_halfspace(v, a=np.array([1.0, 1.0]), b=np.array([1.0, 1.0, 4.0]))
    np.testing.assert_allclose(out, [[1.0, 0.0], [0.0, 0.0], [2.0, 2.0]], rtol=0, atol=1e-15)


# ------------------------------------------------------------ intersections: Dykstra vs POCS

BOX_HALFSPACE = (
    [
        functools.partial(P.project_box, lower=0.0, upper=1.0),
        functools.partial(P.project_halfspace, a=[1.0, 1.0], b=1.0),
    ],
    [2.0, 1.5],
    [0.75, 0.25],  # onto the edge x₁ + x₂ = 1 of the triangle
    [0.5, 0.5],  # POCS: the box sends v to (1, 1), the half-space to (½, ½), which is feasible
)
BALL_AFFINE = (
    [functools.partial(P.project_l2_ball, radius=1.0), functools.partial(P.project_affine, A=[[0.0, 1.0]], b=[0.5])],
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
    x_dykstra, info_d = P.dykstra(projections, v, tol=1e-13)
    x_pocs, info_p = P.alternating_projections(projections, v, tol=1e-13)
    assert info_d.converged and info_p.converged, (info_d, info_p)
    assert type(x_dykstra) is type(v) and type(x_pocs) is type(v)
    x_dykstra, x_pocs = to_numpy(x_dykstra), to_numpy(x_pocs)
    np.testing.assert_allclose(x_dykstra, truth, rtol=0, atol=1e-10)
    np.testing.assert_allclose(x_pocs, pocs_point, rtol=0, atol=1e-10)
    for project in projections:  # the POCS point is feasible: each projection leaves it in place
        np.testing.assert_allclose(to_numpy(project(x_pocs)), x_pocs, rtol=0, atol=1e-12)
    assert np.linalg.norm(x_pocs - x_dykstra) > 0.1


def test_dykstra_matches_an_active_set_qp_on_random_points_of_a_polytope():
    """Box ∩ two half-spaces in ℝ³: Dykstra equals the projection by active-set enumeration."""
    rng = np.random.default_rng(0)
    a1, b1, a2, b2 = np.array([1.0, 1.0, 1.0]), 1.5, np.array([1.0, -2.0, 0.5]), 0.2
    G = np.concatenate([np.eye(3), -np.eye(3), a1[None], a2[None]])
    h = np.concatenate([np.ones(3), np.zeros(3), [b1, b2]])
    projections = [
        functools.partial(P.project_box, lower=0.0, upper=1.0),
        functools.partial(P.project_halfspace, a=a1, b=b1),
        functools.partial(P.project_halfspace, a=a2, b=b2),
    ]
    v = 2 * rng.normal(size=(40, 3))
    x, info = P.dykstra(projections, v, tol=1e-13, max_iter=20_000)
    expected = np.array([polyhedron_projection_by_active_sets(row, G, h) for row in v])
    assert info.converged, info
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-8)
    pocs, _ = P.alternating_projections(projections, v, tol=1e-13, max_iter=20_000)
    assert np.linalg.norm(pocs - expected, axis=-1).max() > 0.05, "POCS should miss the projection somewhere"


def test_intersection_solvers_report_running_out_of_iterations():
    """max_iter=1 on a case that needs more: converged=False, iterations=1, a positive residual."""
    projections, v, _, _ = BALL_AFFINE
    for solver in (P.dykstra, P.alternating_projections):
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
    grad_f = lambda x: A.T @ (A @ x - b)  # noqa: E731
    prox_g = lambda v, lam: P.prox_l1(v, alpha * lam)  # noqa: E731
    step = 1.0 / np.linalg.norm(A_np, 2) ** 2  # 1/L, L = ‖A‖₂²
    for solver in (P.ista, P.fista):
        x, info = solver(grad_f, prox_g, x0, step, tol=1e-12, max_iter=20_000)
        assert info.converged, (solver.__name__, info)
        assert type(x) is type(x0)
        np.testing.assert_allclose(to_numpy(x), reference, rtol=0, atol=1e-9, err_msg=solver.__name__)
    x_ista, info_ista = P.ista(grad_f, prox_g, x0, step, tol=1e-6)
    x_fista, info_fista = P.fista(grad_f, prox_g, x0, step, tol=1e-6)
    for x in (x_ista, x_fista):
        np.testing.assert_allclose(to_numpy(x), reference, rtol=0, atol=1e-3)
    assert info_fista.iterations < info_ista.iterations / 2, (info_fista, info_ista)


def test_proximal_point_reaches_the_minimiser():
    """Quadratic: x_k → −A⁻¹b; ℓ1 from (2.5, −1) with λ = 1: exactly 0 after ⌈2.5⌉ steps, seen at step 4."""
    x, info = P.proximal_point(functools.partial(P.prox_quadratic, A=PSD, b=LIN), np.ones(N), 0.5, tol=1e-13)
    assert info.converged, info
    np.testing.assert_allclose(x, -np.linalg.solve(PSD, LIN), rtol=0, atol=1e-11)
    x, info = P.proximal_point(P.prox_l1, np.array([2.5, -1.0]), 1.0, tol=0.0)
    assert info == P.IterInfo(4, True, 0.0)
    np.testing.assert_array_equal(x, [0.0, 0.0])


# ----------------------------------------------------------- arrays, devices, batches, autograd


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(CASES))
def test_numpy_in_numpy_out_torch_in_torch_out_on_the_same_device_and_dtype(name, dtype, device):
    """Every operator keeps the array kind, dtype and device, and numpy and torch give the same numbers."""
    rng = np.random.default_rng(0)
    v_np = (3 * rng.normal(size=(6, N))).astype(np.float32 if dtype == torch.float32 else np.float64)
    out_np = P.prox_of(name, v_np, 0.4, **CASES[name])
    out_t = P.prox_of(name, torch.tensor(v_np, device=device), 0.4, **CASES[name])
    assert isinstance(out_np, np.ndarray) and out_np.dtype == v_np.dtype and out_np.shape == v_np.shape
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == dtype and out_t.device.type == torch.device(device).type
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(to_numpy(out_t), out_np, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", list(CASES))
def test_batched_call_equals_one_call_per_vector(name):
    """Leading dimensions are a batch: P(v)[i, j] = P(v[i, j]) for v of shape (3, 5, N)."""
    v = 3 * np.random.default_rng(0).normal(size=(3, 5, N))
    batched = P.prox_of(name, v, 0.6, **CASES[name])
    looped = np.array([[P.prox_of(name, v[i, j], 0.6, **CASES[name]) for j in range(5)] for i in range(3)])
    np.testing.assert_allclose(batched, looped, rtol=0, atol=1e-13)


def test_integer_and_list_inputs_become_float64():
    """Python lists and integer arrays go through the numpy path as float64."""
    out = P.project_simplex([3, 0, 0])
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_array_equal(out, [1.0, 0.0, 0.0])


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_flow_through_the_closed_forms(device):
    """d/dv Σ prox_{λ‖·‖₁}(v) = 1{|v| > λ}; d/dv Σ Π_box(v) = 1{ℓ < v < u}."""
    g = torch.Generator().manual_seed(0)
    v = (2 * torch.randn(30, generator=g, dtype=torch.float64)).to(device).requires_grad_(True)
    (grad,) = torch.autograd.grad(P.prox_l1(v, 0.5).sum(), v)
    torch.testing.assert_close(grad, (v.abs() > 0.5).double(), rtol=0, atol=0)
    (grad,) = torch.autograd.grad(P.project_box(v, -1.0, 1.5).sum(), v)
    torch.testing.assert_close(grad, ((v > -1.0) & (v < 1.5)).double(), rtol=0, atol=0)


# ------------------------------------------------------------------ dispatchers and helpers


@pytest.mark.parametrize("name", list(P.SET_NAMES))
def test_prox_of_an_indicator_is_the_projection_for_every_lam(name):
    """prox_{λ I_C} = Π_C, whatever λ."""
    v = 3 * np.random.default_rng(0).normal(size=(20, N))
    expected = P.project_onto(name, v, **CASES[name])
    for lam in (0.0, 0.1, 10.0):
        np.testing.assert_array_equal(P.prox_of(name, v, lam, **CASES[name]), expected)


def test_prox_path_runs_from_v_at_lam_zero_along_the_slider():
    """prox_path stacks prox_{λ_k f}(v) over k: shape (L, ..., n), row 0 (λ = 0) is v itself."""
    v = np.array([[2.0, -0.5, 0.1], [1.0, 1.0, 1.0]])
    lams = np.linspace(0.0, 3.0, 7)
    path = P.prox_path("l1", v, lams)
    assert path.shape == (7, 2, 3)
    np.testing.assert_array_equal(path[0], v)
    np.testing.assert_allclose(path[3], P.prox_l1(v, 1.5), rtol=0, atol=0)
    np.testing.assert_array_equal(path[-1], np.zeros((2, 3)))
    torch_path = P.prox_path("l2_ball", torch.tensor(v), [0.0, 1.0], radius=1.0)
    assert isinstance(torch_path, torch.Tensor) and torch_path.shape == (2, 2, 3)


# --------------------------------------------------------------------------------- errors

BAD_CALLS = {
    "negative lam (l1)": (lambda: P.prox_l1(np.ones(3), -0.1), r"lam must be >= 0"),
    "negative lam (l2)": (lambda: P.prox_l2(np.ones(3), -1.0), r"lam must be >= 0"),
    "negative lam (quadratic)": (lambda: P.prox_quadratic(np.ones(3), -1.0), r"lam must be >= 0"),
    "negative lam (prox_of)": (lambda: P.prox_of("box", np.ones(3), -1.0), r"lam must be >= 0"),
    "zero lam (numerical)": (
        lambda: P.prox_numerical(lambda x: x.sum(-1), np.ones(3), 0.0),
        r"lam must be > 0",
    ),
    "NaN lam": (lambda: P.prox_l1(np.ones(3), float("nan")), r"lam must be a finite number"),
    "negative step (ista)": (lambda: P.ista(lambda x: x, P.prox_l1, np.ones(2), -1.0), r"step must be > 0"),
    "empty box": (
        lambda: P.project_box(np.zeros(2), lower=[0.0, 2.0], upper=[1.0, 1.0]),
        r"box is empty: lower 2.0 > upper 1.0",
    ),
    "zero radius": (lambda: P.project_l2_ball(np.ones(2), radius=0.0), r"radius must be a finite number > 0"),
    "negative radius l1": (
        lambda: P.project_l1_ball(np.ones(2), radius=-1.0),
        r"radius must be a finite number > 0",
    ),
    "zero radius linf": (
        lambda: P.project_linf_ball(np.ones(2), radius=0.0),
        r"radius must be a finite number > 0",
    ),
    "zero simplex total": (
        lambda: P.project_simplex(np.ones(2), total=0.0),
        r"total must be a finite number > 0",
    ),
    "empty simplex": (lambda: P.project_simplex(np.ones((3, 0))), r"simplex in dimension n = 0 is empty"),
    "box bounds shape": (
        lambda: P.project_box(np.ones(3), lower=np.zeros(2)),
        r"mismatched shapes: lower \(2,\)",
    ),
    "ball center shape": (
        lambda: P.project_l2_ball(np.ones(3), center=np.zeros(4)),
        r"mismatched shapes: center",
    ),
    "halfspace a shape": (
        lambda: P.project_halfspace(np.ones(3), a=np.ones(2), b=0.0),
        r"mismatched shapes: a",
    ),
    "halfspace b shape": (
        lambda: P.project_halfspace(np.ones((4, 3)), a=np.ones(3), b=np.ones(3)),
        r"mismatched shapes: b",
    ),
    "halfspace a = 0": (lambda: P.project_halfspace(np.ones(3), a=np.zeros(3), b=0.0), r"a must be nonzero"),
    "affine A columns": (
        lambda: P.project_affine(np.ones(3), A=np.ones((1, 2)), b=[0.0]),
        r"mismatched shapes: A \(1, 2\)",
    ),
    "affine b length": (
        lambda: P.project_affine(np.ones(3), A=np.eye(3)[:2], b=[0.0]),
        r"mismatched shapes: b",
    ),
    "affine rank": (
        lambda: P.project_affine(np.ones(3), A=[[1.0, 1.0, 0.0], [2.0, 2.0, 0.0]], b=[0.0, 0.0]),
        r"full row rank",
    ),
    "quadratic A shape": (
        lambda: P.prox_quadratic(np.ones(3), 1.0, A=np.eye(2)),
        r"mismatched shapes: A \(2, 2\)",
    ),
    "quadratic A not PSD": (
        lambda: P.prox_quadratic(np.ones(2), 1.0, A=-np.eye(2)),
        r"positive semidefinite",
    ),
    "x0 shape (numerical)": (
        lambda: P.prox_numerical(lambda x: x.sum(-1), np.ones(3), 1.0, x0=np.ones(2)),
        r"mismatched shapes: x0",
    ),
    "f output shape": (lambda: P.prox_numerical(lambda x: x, np.ones(3), 1.0), r"f must map shape"),
    "NaN v (l1)": (
        lambda: P.prox_l1(np.array([0.0, np.nan]), 1.0),
        r"v contains NaN \(first at index \(1,\)\)",
    ),
    "NaN v (simplex)": (
        lambda: P.project_simplex(torch.tensor([[1.0, 0.0], [np.nan, 0.0]])),
        r"v contains NaN \(first at index \(1, 0\)\)",
    ),
    "inf v (l2 ball)": (lambda: P.project_l2_ball(np.array([np.inf, 0.0])), r"v contains \+inf"),
    "NaN bound": (lambda: P.project_box(np.ones(2), lower=np.nan), r"lower contains NaN"),
    "NaN start (dykstra)": (
        lambda: P.dykstra([P.project_simplex], np.array([np.nan, 1.0])),
        r"x0 contains NaN",
    ),
    "no projections": (lambda: P.dykstra([], np.ones(2)), r"projections is empty"),
    "scalar v": (lambda: P.project_simplex(np.float64(1.0)), r"at least one dimension"),
    "unknown prox": (
        lambda: P.prox_of("huber", np.ones(2), 1.0),
        r"unknown prox name 'huber'; valid names: l1, quadratic, l2, box",
    ),
    "unknown set": (
        lambda: P.project_onto("cube", np.ones(2)),
        r"unknown set name 'cube'; valid names: box, l2_ball, l1_ball",
    ),
}


@pytest.mark.parametrize("call, message", list(BAD_CALLS.values()), ids=list(BAD_CALLS))
def test_bad_input_raises_a_value_error_that_says_what_is_wrong(call, message):
    """Each misuse raises ValueError with a message naming the problem."""
    with pytest.raises(ValueError, match=message):
        call()


def test_box_accepts_infinite_bounds():
    """±inf bounds leave a side open (they are not NaN and not an empty box)."""
    out = P.project_box(np.array([-5.0, 5.0]), lower=[-np.inf, 0.0], upper=[0.0, np.inf])
    np.testing.assert_array_equal(out, [-5.0, 5.0])


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

    for solver in (P.ista, P.fista):
        seen = []
        x, info = solver(grad_f, prox_g, np.zeros(5), step, max_iter=50, tol=0.0, callback=seen.append)
        assert len(seen) == info.iterations == 50
        np.testing.assert_array_equal(seen[-1], x)
    seen = []
    x, info = P.proximal_point(lambda v, lam: P.prox_l1(v, lam), np.array([3.0, -2.0]), 0.5,
                                  callback=seen.append)
    assert len(seen) == info.iterations and info.converged
    np.testing.assert_array_equal(seen[-1], x)
    box = lambda v: P.project_box(v, 0.0, 2.0)  # noqa: E731
    half = lambda v: P.project_halfspace(v, np.array([1.0, 1.0]), 2.0)  # noqa: E731
    for algorithm in (P.alternating_projections, P.dykstra):
        seen = []
        x, info = algorithm([box, half], np.array([3.5, 1.0]), callback=seen.append)
        assert len(seen) == 2 * info.iterations
        np.testing.assert_array_equal(seen[-1], x)
