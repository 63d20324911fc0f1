"""rlteach.prox: closed forms against the numerical prox, Moreau decomposition, firm
non-expansiveness, the prox as an implicit gradient step, arrays and devices, and the errors
of the shared validation layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlteach import projections as S
from rlteach import prox as P
from rlteach import prox_algorithms as alg
from tests.prox_cases import (
    CASES,
    DEVICES,
    LIN,
    PSD,
    SINGULAR_PSD,
    N,
    prox_by_smoothing,
    pseudo_huber_l1,
    pseudo_huber_l2,
    to_numpy,
)

# ------------------------------------------------- closed forms against the numerical prox


@pytest.mark.slow
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
    f = lambda x: 0.5 * ((x @ Qt) * x).sum(-1) + x @ lt
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
    f = lambda x: torch.logsumexp(3 * x, dim=-1) + (x**4).sum(-1)
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
    torch.testing.assert_close(P.prox_l1(v, lam) + lam * S.project_linf_ball(v / lam, 1.0), v, rtol=0, atol=1e-14)
    torch.testing.assert_close(P.prox_l2(v, lam) + lam * S.project_l2_ball(v / lam, 1.0), v, rtol=0, atol=1e-14)


@pytest.mark.parametrize("device", DEVICES)
def test_moreau_decomposition_for_a_quadratic_with_the_numerical_prox_of_its_conjugate(device):
    """f = ½xᵀAx + bᵀx has f*(y) = ½(y − b)ᵀA⁻¹(y − b); v = prox_{λf}(v) + λ prox_{f*/λ}(v/λ)."""
    g = torch.Generator().manual_seed(0)
    v = (2 * torch.randn(20, N, generator=g, dtype=torch.float64)).to(device)
    A_inv = torch.linalg.inv(torch.as_tensor(PSD, device=device))
    b = torch.as_tensor(LIN, device=device)
    f_star = lambda y: 0.5 * (((y - b) @ A_inv) * (y - b)).sum(-1)
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
        f = lambda x: torch.logsumexp(2 * x, dim=-1) + 0.25 * (x**4).sum(-1)
        vt = torch.tensor(v, requires_grad=True)
        (grad_t,) = torch.autograd.grad(f(vt), vt)
        grad = grad_t.numpy()
        proxes = [P.prox_numerical(f, v, lam)[0] for lam in lams]
    gaps = np.array([np.linalg.norm(p - (v - lam * grad)) for p, lam in zip(proxes, lams)])
    slope = np.polyfit(np.log(lams), np.log(gaps), 1)[0]
    assert abs(slope - 2.0) < 0.05, f"log-log slope {slope:.3f}, gaps {gaps}"


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
    out = S.project_simplex([3, 0, 0])
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_array_equal(out, [1.0, 0.0, 0.0])


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_flow_through_the_closed_forms(device):
    """d/dv Σ prox_{λ‖·‖₁}(v) = 1{|v| > λ}; d/dv Σ Π_box(v) = 1{ℓ < v < u}."""
    g = torch.Generator().manual_seed(0)
    v = (2 * torch.randn(30, generator=g, dtype=torch.float64)).to(device).requires_grad_(True)
    (grad,) = torch.autograd.grad(P.prox_l1(v, 0.5).sum(), v)
    torch.testing.assert_close(grad, (v.abs() > 0.5).double(), rtol=0, atol=0)
    (grad,) = torch.autograd.grad(S.project_box(v, -1.0, 1.5).sum(), v)
    torch.testing.assert_close(grad, ((v > -1.0) & (v < 1.5)).double(), rtol=0, atol=0)


# ------------------------------------------------------------------ dispatchers and helpers


@pytest.mark.parametrize("name", list(S.SET_NAMES))
def test_prox_of_an_indicator_is_the_projection_for_every_lam(name):
    """prox_{λ I_C} = Π_C, whatever λ."""
    v = 3 * np.random.default_rng(0).normal(size=(20, N))
    expected = S.project_onto(name, v, **CASES[name])
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
    "negative step (ista)": (lambda: alg.ista(lambda x: x, P.prox_l1, np.ones(2), -1.0), r"step must be > 0"),
    "empty box": (
        lambda: S.project_box(np.zeros(2), lower=[0.0, 2.0], upper=[1.0, 1.0]),
        r"box is empty: lower 2.0 > upper 1.0",
    ),
    "zero radius": (lambda: S.project_l2_ball(np.ones(2), radius=0.0), r"radius must be a finite number > 0"),
    "negative radius l1": (
        lambda: S.project_l1_ball(np.ones(2), radius=-1.0),
        r"radius must be a finite number > 0",
    ),
    "zero radius linf": (
        lambda: S.project_linf_ball(np.ones(2), radius=0.0),
        r"radius must be a finite number > 0",
    ),
    "zero simplex total": (
        lambda: S.project_simplex(np.ones(2), total=0.0),
        r"total must be a finite number > 0",
    ),
    "empty simplex": (lambda: S.project_simplex(np.ones((3, 0))), r"simplex in dimension n = 0 is empty"),
    "box bounds shape": (
        lambda: S.project_box(np.ones(3), lower=np.zeros(2)),
        r"mismatched shapes: lower \(2,\)",
    ),
    "ball center shape": (
        lambda: S.project_l2_ball(np.ones(3), center=np.zeros(4)),
        r"mismatched shapes: center",
    ),
    "halfspace a shape": (
        lambda: S.project_halfspace(np.ones(3), a=np.ones(2), b=0.0),
        r"mismatched shapes: a",
    ),
    "halfspace b shape": (
        lambda: S.project_halfspace(np.ones((4, 3)), a=np.ones(3), b=np.ones(3)),
        r"mismatched shapes: b",
    ),
    "halfspace a = 0": (lambda: S.project_halfspace(np.ones(3), a=np.zeros(3), b=0.0), r"a must be nonzero"),
    "affine A columns": (
        lambda: S.project_affine(np.ones(3), A=np.ones((1, 2)), b=[0.0]),
        r"mismatched shapes: A \(1, 2\)",
    ),
    "affine b length": (
        lambda: S.project_affine(np.ones(3), A=np.eye(3)[:2], b=[0.0]),
        r"mismatched shapes: b",
    ),
    "affine rank": (
        lambda: S.project_affine(np.ones(3), A=[[1.0, 1.0, 0.0], [2.0, 2.0, 0.0]], b=[0.0, 0.0]),
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
        lambda: S.project_simplex(torch.tensor([[1.0, 0.0], [np.nan, 0.0]])),
        r"v contains NaN \(first at index \(1, 0\)\)",
    ),
    "inf v (l2 ball)": (lambda: S.project_l2_ball(np.array([np.inf, 0.0])), r"v contains \+inf"),
    "NaN bound": (lambda: S.project_box(np.ones(2), lower=np.nan), r"lower contains NaN"),
    "NaN start (dykstra)": (
        lambda: alg.dykstra([S.project_simplex], np.array([np.nan, 1.0])),
        r"x0 contains NaN",
    ),
    "no projections": (lambda: alg.dykstra([], np.ones(2)), r"projections is empty"),
    "scalar v": (lambda: S.project_simplex(np.float64(1.0)), r"at least one dimension"),
    "unknown prox": (
        lambda: P.prox_of("huber", np.ones(2), 1.0),
        r"unknown prox name 'huber'; valid names: l1, quadratic, l2, box",
    ),
    "unknown set": (
        lambda: S.project_onto("cube", np.ones(2)),
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
    out = S.project_box(np.array([-5.0, 5.0]), lower=[-np.inf, 0.0], upper=[0.0, np.inf])
    np.testing.assert_array_equal(out, [-5.0, 5.0])




# ------------------------------------------------------ values, gradients, Moreau envelope


def test_value_of_and_gradient_of_follow_their_formulas():
    """‖x‖₁, ‖x‖₂, ½xᵀAx + bᵀx and their (minimum-norm sub)gradients; an indicator is 0 on C, ∞ off it."""
    x = np.array([[1.0, -2.0, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(P.value_of("l1", x), [3.5, 0.0])
    np.testing.assert_allclose(P.value_of("l2", x), [np.sqrt(5.25), 0.0])
    np.testing.assert_allclose(P.value_of("quadratic", x, A=PSD, b=LIN), 0.5 * np.einsum("ki,ij,kj->k", x, PSD, x) + x @ LIN)
    np.testing.assert_array_equal(P.gradient_of("l1", x[0]), [1.0, -1.0, 0.0, 1.0])
    np.testing.assert_allclose(P.gradient_of("l2", x), np.vstack([x[0] / np.sqrt(5.25), np.zeros(4)]))
    xt = torch.tensor(x[0], requires_grad=True)
    (0.5 * xt @ torch.tensor(PSD) @ xt + xt @ torch.tensor(LIN)).backward()
    np.testing.assert_allclose(P.gradient_of("quadratic", x[0], A=PSD, b=LIN), xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_array_equal(P.value_of("l2_ball", np.array([[0.3, 0.4], [3.0, 4.0]]), radius=1.0), [0.0, np.inf])
    with pytest.raises(ValueError, match="has no gradient step"):
        P.gradient_of("box", x)


@pytest.mark.parametrize("lam", [0.3, 2.0])
def test_moreau_envelope_of_the_absolute_value_is_the_huber_function(lam):
    """M_{λ|·|}(v) = v²/(2λ) for |v| ≤ λ, |v| − λ/2 beyond; its gradient is clip(v/λ, −1, 1)."""
    v = np.linspace(-4.0, 4.0, 81)[:, None]
    huber = np.where(np.abs(v[:, 0]) <= lam, v[:, 0] ** 2 / (2 * lam), np.abs(v[:, 0]) - lam / 2)
    np.testing.assert_allclose(P.moreau_envelope("l1", v, lam), huber, rtol=0, atol=1e-15)
    np.testing.assert_allclose(P.moreau_envelope_gradient("l1", v, lam)[:, 0], np.clip(v[:, 0] / lam, -1, 1), atol=1e-15)


@pytest.mark.parametrize("name", ["l1", "l2", "quadratic", "l2_ball", "simplex"])
def test_moreau_envelope_is_below_f_with_the_gradient_v_minus_prox_over_lam(name, rng):
    """M ≤ f; ∇M = (v − prox)/λ matches central differences; ∇M is 1/λ-Lipschitz."""
    params = CASES[name]
    lam = 0.7
    v = rng.normal(scale=2.0, size=(50, N))
    env = P.moreau_envelope(name, v, lam, **params)
    if name in S.SET_NAMES:
        dist = np.linalg.norm(S.project_onto(name, v, **params) - v, axis=-1)
        np.testing.assert_allclose(env, dist**2 / (2 * lam), rtol=1e-12)  # dist²/(2λ) for an indicator
    else:
        assert (env <= P.value_of(name, v, **params) + 1e-12).all()
    grad = P.moreau_envelope_gradient(name, v, lam, **params)
    h = 1e-6
    for j in range(N):
        e = np.zeros(N)
        e[j] = h
        fd = (P.moreau_envelope(name, v + e, lam, **params) - P.moreau_envelope(name, v - e, lam, **params)) / (2 * h)
        np.testing.assert_allclose(grad[:, j], fd, rtol=0, atol=1e-6)
    w = rng.normal(scale=2.0, size=(50, N))
    other = P.moreau_envelope_gradient(name, w, lam, **params)
    ratio = np.linalg.norm(grad - other, axis=-1) / np.linalg.norm(v - w, axis=-1)
    assert ratio.max() <= 1 / lam + 1e-12


def test_moreau_envelope_of_half_the_squared_norm():
    """f = ½‖x‖²: M_{λf}(v) = ‖v‖²/(2(1 + λ)), exactly."""
    v = np.array([[1.0, 2.0, -2.0, 0.5]])
    np.testing.assert_allclose(P.moreau_envelope("quadratic", v, 0.5), (v**2).sum(-1) / 3.0, rtol=1e-14)


# --------------------------------------------------------------------------- prox calculus


def test_prox_of_a_separable_sum_is_the_prox_of_each_block(rng):
    v = rng.normal(size=(3, 5))
    quadratic = lambda w, lam: P.prox_quadratic(w, lam, A=PSD[:2, :2], b=LIN[:2])
    prox = P.prox_separable([P.prox_l2, P.prox_l1, quadratic], sizes=[2, 1, 2])
    expected = np.concatenate([P.prox_l2(v[:, :2], 0.8), P.prox_l1(v[:, 2:3], 0.8), quadratic(v[:, 3:], 0.8)], axis=-1)
    np.testing.assert_array_equal(prox(v, 0.8), expected)
    torch.testing.assert_close(prox(torch.tensor(v), 0.8), torch.tensor(expected))
    with pytest.raises(ValueError, match="v has 4 entries, the blocks 5"):
        prox(v[:, :4], 0.8)
    with pytest.raises(ValueError, match="one block size per prox"):
        P.prox_separable([P.prox_l1], sizes=[1, 2])


def test_prox_of_an_affine_composition_matches_the_numerical_prox(rng):
    """f(x) = ½‖Ax + b‖² with A = a·I (a scalar) and A = 2R (R a rotation, AAᵀ = 4I): the composition rule
    equals Newton on f + ‖x − v‖²/(2λ)."""
    R = np.linalg.qr(rng.normal(size=(N, N)))[0]
    b = rng.normal(size=N)
    v = rng.normal(size=(4, N))
    half_sq = lambda w, lam: P.prox_quadratic(w, lam)  # prox of ½‖w‖²
    for A, A_mat in ((-1.5, -1.5 * np.eye(N)), (2 * R, 2 * R)):
        At, bt = torch.tensor(A_mat), torch.tensor(b)
        reference, info = P.prox_numerical(lambda x: 0.5 * ((x @ At.T + bt) ** 2).sum(-1), v, 0.6)
        assert info.converged
        np.testing.assert_allclose(P.prox_affine(half_sq, A, b)(v, 0.6), reference, rtol=0, atol=1e-12)


def test_prox_of_a_scaled_and_shifted_absolute_value_by_hand():
    """f(x) = |2x − 1|: the minimiser of |2x − 1| + (x − v)²/(2λ) is 1/2 when |2v − 1| ≤ 4λ, else v ∓ 2λ."""
    prox = P.prox_affine(P.prox_l1, 2.0, -1.0)
    v = np.array([[-2.0], [0.1], [0.5], [0.9], [3.0]])
    np.testing.assert_allclose(prox(v, 0.25)[:, 0], [-1.5, 0.5, 0.5, 0.5, 2.5], atol=1e-15)
    with pytest.raises(ValueError, match="A Aᵀ = α I"):
        P.prox_affine(P.prox_l1, np.array([[1.0, 0.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="nonzero"):
        P.prox_affine(P.prox_l1, 0.0)


def test_the_kl_prox_of_a_linear_function_is_the_multiplicative_update(rng):
    """x⁺ ∝ v e^{−λg} lies in the simplex, is positive, satisfies log(x⁺/v) + λg = const, and no random
    point of the simplex has a smaller ⟨g, x⟩ + KL(x‖v)/λ; λ = 0 returns v."""
    v = rng.dirichlet(np.ones(5))
    g = rng.normal(size=5)
    x = P.kl_prox_linear(v, g, 0.8)
    assert (x > 0).all() and x.sum() == pytest.approx(1.0, abs=1e-15)
    stationarity = np.log(x / v) + 0.8 * g
    np.testing.assert_allclose(stationarity, stationarity.mean(), atol=1e-12)
    others = rng.dirichlet(np.ones(5), size=5000)
    objective = lambda y: y @ g + (y * np.log(y / v)).sum(-1) / 0.8
    assert objective(x[None])[0] <= objective(others).min()
    np.testing.assert_allclose(P.kl_prox_linear(v, g, 0.0), v, atol=1e-15)
    torch.testing.assert_close(P.kl_prox_linear(torch.tensor(v), torch.tensor(g), 0.8), torch.tensor(x))
    with pytest.raises(ValueError, match="negative entry"):
        P.kl_prox_linear(np.array([1.2, -0.2]), np.zeros(2), 1.0)
