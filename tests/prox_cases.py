"""Shared cases and independent references for the tests of rlteach.prox,
rlteach.projections and rlteach.prox_algorithms (no rlteach code computes an expected value)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from rlteach import projections as S
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
assert set(CASES) == set(P.PROX_NAMES + S.SET_NAMES)


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
        for active in itertools.combinations(range(len(h)), k):
            GS, hS = G[list(active)], h[list(active)]
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

