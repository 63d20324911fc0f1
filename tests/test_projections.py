"""rlteach.projections: feasibility, idempotence and the variational inequality, against
bisection and null-space references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlteach import projections as S
from tests.prox_cases import CASES, DEVICES, N, feasible_points, simplex_by_bisection, to_numpy, violation

# ------------------------------------------------------------------------------ projections


@pytest.mark.parametrize("device", ["numpy", *DEVICES])
@pytest.mark.parametrize("name", list(S.SET_NAMES))
def test_projection_is_feasible_idempotent_and_satisfies_the_variational_inequality(name, device):
    """Pv ∈ C, P(Pv) = Pv, and ⟨v − Pv, y − Pv⟩ ≤ 0 for 300+ feasible y, so Pv is the projection."""
    rng = np.random.default_rng(0)
    params = CASES[name]
    v_np = 3 * rng.normal(size=(200, N))
    v = v_np if device == "numpy" else torch.tensor(v_np, device=device)
    pv = S.project_onto(name, v, **params)
    assert type(pv) is type(v)
    ppv = S.project_onto(name, pv, **params)
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
        np.testing.assert_allclose(S.project_simplex(v, total), simplex_by_bisection(v, total), rtol=0, atol=1e-12)
    np.testing.assert_allclose(S.project_simplex(edge_cases[:2]), np.full((2, 4), 0.25), rtol=0, atol=1e-15)
    np.testing.assert_allclose(S.project_simplex(np.array([-4.2])), np.array([1.0]), rtol=0, atol=0)


def test_l1_ball_projection_is_soft_thresholding_at_the_bisected_level():
    """Outside the ball, Π_{‖·‖₁≤r}(v) = sign(v) max(|v| − θ, 0) with Σ max(|v| − θ, 0) = r; inside, v."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=(300, 5)) * rng.uniform(0.1, 1.5, size=(300, 1))
    radius = 3.0
    outside = np.abs(v).sum(-1) > radius
    expected = np.where(outside[:, None], np.sign(v) * simplex_by_bisection(np.abs(v), radius), v)
    assert 0.2 < outside.mean() < 0.8
    np.testing.assert_allclose(S.project_l1_ball(v, radius), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_affine_projection_matches_the_null_space_formula(device):
    """v − Aᵀ(AAᵀ)⁻¹(Av − b) = x_p + NNᵀ(v − x_p), with N an orthonormal null-space basis (SVD)."""
    rng = np.random.default_rng(0)
    A, b = rng.normal(size=(3, 6)), rng.normal(size=(7, 3))  # b batched: one right-hand side per row
    v = rng.normal(size=(7, 6))
    particular = np.linalg.lstsq(A, b.T, rcond=None)[0].T
    null = np.linalg.svd(A)[2][3:]
    expected = particular + (v - particular) @ null.T @ null
    out = S.project_affine(torch.tensor(v, device=device), torch.tensor(A), torch.tensor(b))
    assert out.device.type == torch.device(device).type
    np.testing.assert_allclose(to_numpy(out), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(to_numpy(out) @ A.T, b, rtol=0, atol=1e-12)


def test_halfspace_projection_by_hand():
    """{x : x₁ + x₂ ≤ 1}: (2, 1) ↦ (1, 0); points inside stay; a batch of offsets b broadcasts."""
    v = np.array([[2.0, 1.0], [0.0, 0.0], [3.0, 3.0]])
    out = S.project_halfspace(v, a=np.array([1.0, 1.0]), b=np.array([1.0, 1.0, 4.0]))
    np.testing.assert_allclose(out, [[1.0, 0.0], [0.0, 0.0], [2.0, 2.0]], rtol=0, atol=1e-15)




# --------------------------------------------------------------- thresholds from the KKT conditions


def test_simplex_threshold_is_the_root_of_the_threshold_equation(rng):
    """Σ max(v − θ, 0) = z, and max(v − θ, 0) is the projection; ties and a single entry included."""
    v = np.vstack([rng.normal(scale=2.0, size=(20, 7)), np.full((1, 7), 0.3), [[5.0, 5.0, -1.0, 0.0, 0.0, 0.0, 0.0]]])
    for total in (1.0, 2.5):
        theta = S.simplex_threshold(v, total)
        assert theta.shape == (22,)
        np.testing.assert_allclose(np.maximum(v - theta[:, None], 0).sum(-1), total, rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.maximum(v - theta[:, None], 0), simplex_by_bisection(v, total), atol=1e-12)
    assert S.simplex_threshold(np.array([0.7]), 1.0) == pytest.approx(-0.3)
    torch.testing.assert_close(S.simplex_threshold(torch.tensor(v), 1.0), torch.tensor(S.simplex_threshold(v, 1.0)))


def test_l1_ball_threshold_is_zero_inside_and_soft_thresholds_onto_the_sphere_outside(rng):
    from rlteach import prox as P

    center = np.array([0.5, -0.5, 0.0, 1.0])
    v = center + rng.normal(scale=0.6, size=(30, N))
    theta = S.l1_ball_threshold(v, radius=1.5, center=center)
    inside = np.abs(v - center).sum(-1) <= 1.5
    assert (theta[inside] == 0).all() and (theta[~inside] > 0).all() and inside.any() and (~inside).any()
    for i in range(len(v)):
        np.testing.assert_allclose(center + P.prox_l1(v[i] - center, theta[i]),
                                   S.project_l1_ball(v[i], 1.5, center), rtol=0, atol=1e-12)
