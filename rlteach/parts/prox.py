"""Graded parts of the proximal-operators exercise."""

from __future__ import annotations

import torch
from torch import Tensor

from rlteach import prox as ref
from rlteach.grading import Case, Mistake, Part


def _randn(g: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    return scale * torch.randn(shape, generator=g, dtype=torch.float64)


def _soft_threshold_cases(seed: int, edge: bool) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if not edge:
        return [Case("8 entries, lam=0.5", (_randn(g, 8), 0.5)),
                Case("a (4, 6) batch, lam=1.3", (_randn(g, 4, 6, scale=2.0), 1.3)),
                Case("20 entries, lam=0.05", (_randn(g, 20), 0.05))]
    v = _randn(g, 10)
    return [Case("lam=0 (the identity)", (v, 0.0)),
            Case("entries exactly at +-lam", (torch.tensor([0.7, -0.7, 0.0, 1.4, -2.1], dtype=torch.float64), 0.7)),
            Case("every entry inside the threshold", (0.1 * v, 5.0)),
            Case("a large step", (_randn(g, 3, 4, scale=10.0), 7.5)),
            Case("float32 input", (v.float(), 0.3))]


def _l2_ball_cases(seed: int, edge: bool) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if not edge:
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


def _simplex_cases(seed: int, edge: bool) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if not edge:
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


def _lasso_cases(seed: int, edge: bool) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def problem(m: int, n: int) -> tuple[Tensor, Tensor, Tensor, float]:
        A = _randn(g, m, n)
        b = _randn(g, m)
        step = 1.0 / torch.linalg.matrix_norm(A, ord=2).item() ** 2
        return _randn(g, n), A, b, step

    x, A, b, step = problem(20, 8)
    x2, A2, b2, step2 = problem(6, 10)
    if not edge:
        return [Case("m=20, n=8, alpha=0.5, step=1/||A||^2", (x, A, b, 0.5, step)),
                Case("m=6, n=10, alpha=2.0, step=1/||A||^2", (x2, A2, b2, 2.0, step2)),
                Case("m=20, n=8, alpha=0.1, half the step", (x, A, b, 0.1, step / 2))]
    return [Case("alpha=0 (a plain gradient step)", (x, A, b, 0.0, step)),
            Case("a large alpha (every entry thresholded to 0)", (x2, A2, b2, 1e4, step2)),
            Case("x = 0", (torch.zeros_like(x), A, b, 0.3, step)),
            Case("float32 inputs", (x.float(), A.float(), b.float(), 0.5, step))]


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
    Part("soft_threshold", ref.prox_l1, _soft_threshold_cases, (
        Mistake("threshold not scaled by lam: you shrank every entry by 1 instead of by lam.",
                lambda v, lam: _soft(v, 1.0)),
        Mistake("hard thresholding: you zeroed the small entries but did not shrink the others by lam.",
                lambda v, lam: torch.where(v.abs() > lam, v, torch.zeros_like(v))),
        Mistake("the sign is lost: max(|v| - lam, 0) needs sign(v) in front.",
                lambda v, lam: (v.abs() - lam).clamp(min=0)),
        Mistake("you moved every entry by lam, also those within lam of 0 (they must become 0).",
                lambda v, lam: v - lam * torch.sign(v)),
    )),
    Part("project_l2_ball", ref.project_l2_ball, _l2_ball_cases, (
        Mistake("projected onto the sphere instead of the ball: points already inside must stay where they are.",
                _sphere),
        Mistake("the norm was taken over the whole batch, not over each point's last dimension.",
                lambda v, radius: v * radius / max(radius, torch.linalg.vector_norm(v).item())),
        Mistake("radius ignored: you projected onto the unit ball.",
                lambda v, radius: v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp(min=1.0)),
    )),
    Part("project_simplex", ref.project_simplex, _simplex_cases, (
        Mistake("clip then renormalize is not the Euclidean projection: subtract one threshold theta "
                "from every entry, then clip at 0.", _clip_renormalize),
        Mistake("softmax maps onto the simplex but is not the closest point.", lambda v: torch.softmax(v, dim=-1)),
        Mistake("you clipped at 0 but forgot that the entries must sum to 1.", lambda v: v.clamp(min=0)),
    )),
    Part("lasso_ista_step", ref.lasso_ista_step, _lasso_cases, (
        Mistake("threshold not scaled by the step: soft-threshold at step*alpha, not at alpha.",
                lambda x, A, b, alpha, step: _soft(x - step * _lasso_grad(x, A, b), alpha)),
        Mistake("gradient sign flipped: the gradient of 0.5*||Ax - b||^2 is A.T @ (A @ x - b).",
                lambda x, A, b, alpha, step: _soft(x + step * _lasso_grad(x, A, b), step * alpha)),
        Mistake("thresholded before the gradient step: ISTA takes the gradient step first, then the prox.",
                lambda x, A, b, alpha, step: (lambda z: z - step * _lasso_grad(z, A, b))(_soft(x, step * alpha))),
        Mistake("forgot the prox: that is a plain gradient step.",
                lambda x, A, b, alpha, step: x - step * _lasso_grad(x, A, b)),
    )),
)
