"""Graded parts of the proximal-operators exercise (02)."""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from rlteach import projections, prox
from rlteach import prox_algorithms as algorithms
from rlteach.grading.spec import Case, Mistake, Part, Property

GROUPS = ("random", "edge")


def _randn(g: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    return scale * torch.randn(shape, generator=g, dtype=torch.float64)


def _soft_threshold_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        return [Case("8 entries, lam=0.5", (_randn(g, 8), 0.5)),
                Case("a (4, 6) batch, lam=1.3", (_randn(g, 4, 6, scale=2.0), 1.3)),
                Case("20 entries, lam=0.05", (_randn(g, 20), 0.05))]
    v = _randn(g, 10)
    return [Case("lam=0 (the identity)", (v, 0.0)),
            Case("entries exactly at +-lam", (torch.tensor([0.7, -0.7, 0.0, 1.4, -2.1], dtype=torch.float64), 0.7)),
            Case("every entry inside the threshold", (0.1 * v, 5.0)),
            Case("a large step", (_randn(g, 3, 4, scale=10.0), 7.5)),
            Case("float32 input", (v.float(), 0.3))]


def _l2_ball_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        mixed = _randn(g, 6, 3) * torch.tensor([[0.2], [0.3], [3.0], [2.0], [0.1], [5.0]], dtype=torch.float64)
        return [Case("6 points in 3-D, some inside the unit ball, radius 1", (mixed, 1.0)),
                Case("one point in 5-D, radius 2.5", (_randn(g, 5, scale=3.0), 2.5)),
                Case("a (2, 3, 4) batch, radius 0.7", (_randn(g, 2, 3, 4), 0.7))]
    inside = torch.tensor([0.3, -0.4], dtype=torch.float64)
    return [Case("a point inside the ball", (inside, 1.0)),
            Case("the centre of the ball", (torch.zeros(3, dtype=torch.float64), 2.0)),
            Case("a point on the sphere", (torch.tensor([0.6, 0.8], dtype=torch.float64), 1.0)),
            Case("a tiny radius", (_randn(g, 4), 1e-3)),
            Case("one dimension", (torch.tensor([[-3.0], [0.5]], dtype=torch.float64), 1.0)),
            Case("float32 input", (_randn(g, 3, 4, scale=2.0).float(), 1.0))]


def _simplex_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        return [Case("5 entries", (_randn(g, 5),)),
                Case("a (4, 7) batch", (_randn(g, 4, 7, scale=2.0),)),
                Case("30 entries, widely spread", (_randn(g, 30, scale=5.0),))]
    return [Case("a point already on the simplex", (torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64),)),
            Case("all entries equal", (torch.full((4,), 3.0, dtype=torch.float64),)),
            Case("one entry far above the others", (torch.tensor([100.0, 0.5, -0.2, 0.1], dtype=torch.float64),)),
            Case("all entries negative", (-1.0 - _randn(g, 6).abs(),)),
            Case("a single entry", (torch.tensor([[-4.0], [2.5]], dtype=torch.float64),)),
            Case("ties at the threshold", (torch.tensor([0.9, 0.9, 0.1, 0.1], dtype=torch.float64),)),
            Case("float32 input", (_randn(g, 8).float(),))]


def _lasso_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def problem(m: int, n: int) -> tuple[Tensor, Tensor, Tensor, float]:
        A = _randn(g, m, n)
        b = _randn(g, m)
        step = 1.0 / torch.linalg.matrix_norm(A, ord=2).item() ** 2
        return _randn(g, n), A, b, step

    x, A, b, step = problem(20, 8)
    x2, A2, b2, step2 = problem(6, 10)
    if group == "random":
        return [Case("m=20, n=8, alpha=0.5, step=1/||A||^2", (x, A, b, 0.5, step)),
                Case("m=6, n=10, alpha=2.0, step=1/||A||^2", (x2, A2, b2, 2.0, step2)),
                Case("m=20, n=8, alpha=0.1, half the step", (x, A, b, 0.1, step / 2))]
    return [Case("alpha=0 (a plain gradient step)", (x, A, b, 0.0, step)),
            Case("a large alpha (every entry thresholded to 0)", (x2, A2, b2, 1e4, step2)),
            Case("x = 0", (torch.zeros_like(x), A, b, 0.3, step)),
            Case("float32 inputs", (x.float(), A.float(), b.float(), 0.5, step))]


def _dykstra_cases(seed: int, group: str) -> list[Case]:
    """Two convex sets and a point: (project_a, project_b, v, num_sweeps). The pairs are
    ones on which Dykstra converges (to 1e-9) well within the sweeps given, for every seed
    (tests/test_grading.py checks 200 seeds)."""
    g = torch.Generator().manual_seed(seed)
    box = functools.partial(projections.project_box, lower=0.0, upper=1.0)
    simplex = functools.partial(projections.project_simplex, total=1.5)
    if group == "random":
        a = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64) + 0.3 * _randn(g, 3)
        half = functools.partial(projections.project_halfspace, a=a, b=1.2)
        ball = functools.partial(projections.project_l2_ball, radius=0.8,
                                 center=torch.full((3,), 0.5, dtype=torch.float64))
        return [Case("the unit box and a simplex of total 1.5 in 3-D", (box, simplex, 2.0 * _randn(g, 3) + 1.0, 250)),
                Case("the same two sets in the other order", (simplex, box, 2.0 * _randn(g, 3) + 1.0, 250)),
                Case("a ball and a halfspace in 3-D", (ball, half, 2.0 * _randn(g, 3) + 1.0, 250))]
    corner = functools.partial(projections.project_halfspace, a=torch.tensor([1.0, 1.0], dtype=torch.float64), b=0.5)
    point = functools.partial(projections.project_halfspace, a=torch.tensor([1.0, 1.0], dtype=torch.float64), b=0.0)
    inside = torch.tensor([0.1, 0.2], dtype=torch.float64)
    return [Case("a point already in the intersection", (box, corner, inside, 50)),
            Case("a point in the first set only", (box, corner, torch.tensor([0.9, 0.8], dtype=torch.float64), 250)),
            Case("the same set twice", (box, box, torch.tensor([2.0, -1.0], dtype=torch.float64), 20)),
            Case("an intersection that is a single point",
                 (box, point, torch.tensor([1.5, -0.5], dtype=torch.float64), 250)),
            Case("a batch of 3 points", (box, simplex, 1.5 * _randn(g, 3, 2) + 0.5, 250))]


def _dykstra_reference(project_a, project_b, v: Tensor, num_sweeps: int) -> Tensor:
    """The library's Dykstra run for exactly ``num_sweeps`` sweeps (the exercise's signature)."""
    x, _ = algorithms.dykstra([project_a, project_b], v, max_iter=num_sweeps, tol=0.0)
    return x


def _alternating(project_a, project_b, v: Tensor, num_sweeps: int) -> Tensor:
    x = v
    for _ in range(num_sweeps):
        x = project_b(project_a(x))
    return x


def _dykstra_flipped(project_a, project_b, v: Tensor, num_sweeps: int) -> Tensor:
    x, corrections = v, [torch.zeros_like(v), torch.zeros_like(v)]
    for _ in range(num_sweeps):
        for i, project in enumerate((project_a, project_b)):
            y = project(x + corrections[i])
            corrections[i] = y - x - corrections[i]
            x = y
    return x


# FISTA, graded by convergence: ill-conditioned lassos (correlated columns) on which ISTA's
# O(1/k) rate misses FISTA's bound 2L‖x₀ − x*‖²/(k+1)² by a factor of 2 or more at k = 80.


def _lasso(seed: int, m: int = 40, n: int = 20, correlation: float = 2.0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    A = _randn(g, m, n) + correlation * _randn(g, m, 1)
    x_true = torch.where(torch.rand(n, generator=g, dtype=torch.float64) < 0.3, 3.0 * _randn(g, n), 0.0)
    return A, A @ x_true + 0.5 * _randn(g, m)


def _fista_args(A: Tensor, b: Tensor, alpha: float, iterations: int, dtype: torch.dtype, device: torch.device):
    A, b = A.to(device, dtype), b.to(device, dtype)
    L = torch.linalg.matrix_norm(A.double(), ord=2).item() ** 2

    def grad_f(x: Tensor) -> Tensor:
        return A.T @ (A @ x - b)

    def prox_g(z: Tensor, step: float) -> Tensor:
        return torch.sign(z) * (z.abs() - alpha * step).clamp(min=0.0)

    return (grad_f, prox_g, torch.zeros(A.shape[1], dtype=dtype, device=device), 1.0 / L, iterations), {}


def _fista_case(name: str, seed: int, alpha: float, iterations: int, dtype: torch.dtype = torch.float64,
                **shape: float) -> Case:
    A, b = _lasso(seed, **shape)  # type: ignore[arg-type]
    return Case(name, make=lambda device: _fista_args(A, b, alpha, iterations, dtype, device),
                info={"A": A, "b": b, "alpha": alpha, "iterations": iterations})


def _fista_cases(seed: int, group: str) -> list[Case]:
    if group == "random":
        return [_fista_case("a lasso with correlated columns, 80 iterations", seed, 1.0, 80),
                _fista_case("another lasso, 200 iterations", seed + 1, 3.0, 200),
                _fista_case("a tall, strongly correlated lasso, 120 iterations", seed + 2, 0.5, 120, m=60, n=10,
                            correlation=4.0)]
    return [_fista_case("a single iteration", seed, 1.0, 1),
            _fista_case("alpha=0 (least squares), 80 iterations", seed, 0.0, 80),
            _fista_case("alpha so large that x* = 0, 5 iterations", seed, 1e4, 5),
            _fista_case("float32 data, 80 iterations", seed, 1.0, 80, torch.float32)]


def _objective(A: Tensor, b: Tensor, alpha: float, x: Tensor) -> float:
    x = x.detach().to("cpu", torch.float64)
    return 0.5 * float(((A @ x - b) ** 2).sum()) + alpha * float(x.abs().sum())


@functools.lru_cache(maxsize=64)
def _lasso_optimum(A_bytes: bytes, m: int, n: int, b_bytes: bytes, alpha: float) -> tuple[float, float]:
    """(F*, ‖x*‖²) of a lasso, by FISTA with gradient restarts (O'Donoghue & Candès 2015)
    run until the step changes x by less than 1e-15; computed in the grader."""
    A = torch.frombuffer(bytearray(A_bytes), dtype=torch.float64).reshape(m, n)
    b = torch.frombuffer(bytearray(b_bytes), dtype=torch.float64)
    step = 1.0 / torch.linalg.matrix_norm(A, ord=2).item() ** 2
    x = y = torch.zeros(n, dtype=torch.float64)
    s = 1.0
    for _ in range(200_000):
        z = y - step * (A.T @ (A @ y - b))
        x_next = torch.sign(z) * (z.abs() - alpha * step).clamp(min=0.0)
        if float((y - x_next) @ (x_next - x)) > 0:  # momentum points uphill: restart it
            s = 1.0
        s_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * s * s))
        y = x_next + ((s - 1.0) / s_next) * (x_next - x)
        done = float((x_next - x).abs().max()) <= 1e-15
        x, s = x_next, s_next
        if done:
            break
    return _objective(A, b, alpha, x), float((x**2).sum())


def _fista_facts(case: Case, x: object) -> tuple[float, float, float, float]:
    """(F(x_k), F*, F(x_0), the FISTA bound) for the case, computed from the recorded x_k."""
    A, b, alpha, k = case.info["A"], case.info["b"], case.info["alpha"], case.info["iterations"]
    if not isinstance(x, Tensor) or x.shape != (A.shape[1],):
        raise ValueError(f"expected x of shape ({A.shape[1]},), got {x!r}"[:200])
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or inf")
    F_star, radius_sq = _lasso_optimum(A.numpy().tobytes(), A.shape[0], A.shape[1], b.numpy().tobytes(), alpha)
    L = torch.linalg.matrix_norm(A, ord=2).item() ** 2
    return _objective(A, b, alpha, x), F_star, _objective(A, b, alpha, torch.zeros(A.shape[1])), \
        2 * L * radius_sq / (k + 1) ** 2


def _slack(x: Tensor, F_star: float) -> float:
    return (1e-4 if x.dtype == torch.float32 else 1e-9) * (1.0 + abs(F_star))


def _fista_descends(observed: dict, case: Case) -> str | None:
    x = observed["result"]
    F, F_star, F0, _ = _fista_facts(case, x)
    if F <= F0 + _slack(x, F_star):
        return None
    return f"F(x_k) = {F:.6g} is above F(x_0) = {F0:.6g}: the iterates went uphill (check the gradient step's sign)"


def _fista_rate(observed: dict, case: Case) -> str | None:
    x = observed["result"]
    F, F_star, _, bound = _fista_facts(case, x)
    k, gap = case.info["iterations"], F - F_star
    if gap <= bound + _slack(x, F_star):
        return None
    L_radius = bound * (k + 1) ** 2 / 2  # L‖x0 − x*‖²
    hint = (" That is within ISTA's O(1/k) bound but not FISTA's O(1/k²): check the momentum step."
            if gap <= L_radius / (2 * k) else "")
    return (f"after {k} iterations F(x_k) − F* = {gap:.4g}, above FISTA's bound "
            f"2L‖x0 − x*‖²/(k+1)² = {bound:.4g}.{hint}")


def _fista_reference(grad_f, prox_g, x0: Tensor, step: float, num_iters: int) -> Tensor:
    """The library's FISTA for exactly ``num_iters`` iterations (the exercise's signature)."""
    x, _ = algorithms.fista(grad_f, prox_g, x0, step, max_iter=num_iters, tol=0.0)
    return x


def _sphere(v: Tensor, radius: float) -> Tensor:
    return radius * v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)


def _clip_renormalize(v: Tensor) -> Tensor:
    clipped = v.clamp(min=0)
    return clipped / clipped.sum(dim=-1, keepdim=True)


def _soft(v: Tensor, threshold: float) -> Tensor:
    return torch.sign(v) * (v.abs() - threshold).clamp(min=0)


def _lasso_grad(x: Tensor, A: Tensor, b: Tensor) -> Tensor:
    return A.T @ (A @ x - b)


PARTS = (
    Part("soft_threshold", prox.prox_l1, _soft_threshold_cases, GROUPS, (
        Mistake("threshold not scaled by lam: you shrank every entry by 1 instead of by lam.",
                lambda v, lam: _soft(v, 1.0)),
        Mistake("hard thresholding: you zeroed the small entries but did not shrink the others by lam.",
                lambda v, lam: torch.where(v.abs() > lam, v, torch.zeros_like(v))),
        Mistake("the sign is lost: max(|v| - lam, 0) needs sign(v) in front.",
                lambda v, lam: (v.abs() - lam).clamp(min=0)),
        Mistake("you moved every entry by lam, also those within lam of 0 (they must become 0).",
                lambda v, lam: v - lam * torch.sign(v)),
    ), seals=(projections.project_linf_ball,)),
    Part("project_l2_ball", projections.project_l2_ball, _l2_ball_cases, GROUPS, (
        Mistake("projected onto the sphere instead of the ball: points already inside must stay where they are.",
                _sphere),
        Mistake("the norm was taken over the whole batch, not over each point's last dimension.",
                lambda v, radius: v * radius / max(radius, torch.linalg.vector_norm(v).item())),
        Mistake("radius ignored: you projected onto the unit ball.",
                lambda v, radius: v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp(min=1.0)),
    ), seals=(prox.prox_l2,)),
    Part("project_simplex", projections.project_simplex, _simplex_cases, GROUPS, (
        Mistake("clip then renormalize is not the Euclidean projection: subtract one threshold theta "
                "from every entry, then clip at 0.", _clip_renormalize),
        Mistake("softmax maps onto the simplex but is not the closest point.", lambda v: torch.softmax(v, dim=-1)),
        Mistake("you clipped at 0 but forgot that the entries must sum to 1.", lambda v: v.clamp(min=0)),
    ), seals=(projections.project_l1_ball, projections._simplex_core)),
    Part("lasso_ista_step", algorithms.lasso_ista_step, _lasso_cases, GROUPS, (
        Mistake("threshold not scaled by the step: soft-threshold at step*alpha, not at alpha.",
                lambda x, A, b, alpha, step: _soft(x - step * _lasso_grad(x, A, b), alpha)),
        Mistake("gradient sign flipped: the gradient of 0.5*||Ax - b||^2 is A.T @ (A @ x - b).",
                lambda x, A, b, alpha, step: _soft(x + step * _lasso_grad(x, A, b), step * alpha)),
        Mistake("thresholded before the gradient step: ISTA takes the gradient step first, then the prox.",
                lambda x, A, b, alpha, step: (lambda z: z - step * _lasso_grad(z, A, b))(_soft(x, step * alpha))),
        Mistake("forgot the prox: that is a plain gradient step.",
                lambda x, A, b, alpha, step: x - step * _lasso_grad(x, A, b)),
    ), seals=(algorithms.ista, algorithms.fista, prox.prox_l1)),
    Part("dykstra", _dykstra_reference, _dykstra_cases, GROUPS, (
        Mistake("that is alternating projections: it reaches a point of the intersection, but not the one "
                "nearest to v. Dykstra keeps one correction per set and adds it back before projecting.",
                _alternating),
        Mistake("the correction's sign is flipped: after y = Π(x + p) the new correction is what the "
                "projection took away, p ← x + p − y.", _dykstra_flipped),
    ), seals=(algorithms.dykstra, algorithms.alternating_projections), rtol=1e-6, atol=1e-8),
    Part("fista", _fista_reference, _fista_cases, GROUPS,
         seals=(algorithms.fista, algorithms.ista, algorithms.proximal_point),
         properties=(Property("descends", _fista_descends, 1.0), Property("accelerated rate", _fista_rate, 2.0)),
         time_limit=20.0),
)
