"""Graded parts of the importance-sampling exercise."""

from __future__ import annotations

import torch
from torch import Tensor

from rlteach import importance as ref
from rlteach.grading import Case, Mistake, Part


def _draws(g: torch.Generator, shape: tuple[int, ...], target: tuple[float, float],
           proposal: tuple[float, float]) -> tuple[Tensor, Tensor, Tensor]:
    """x ~ N(proposal), with log p(x) under N(target) and log q(x) under N(proposal)."""
    x = proposal[0] + proposal[1] * torch.randn(shape, generator=g, dtype=torch.float64)
    return x, ref.gaussian_logpdf(x, *target), ref.gaussian_logpdf(x, *proposal)


def _f(x: Tensor) -> Tensor:
    return x**2 + torch.sin(3 * x)


def _weight_inputs(seed: int, edge: bool) -> list[tuple[str, Tensor, Tensor, Tensor]]:
    """(name, fx, logp_target, logp_proposal) for the i.i.d. estimators."""
    g = torch.Generator().manual_seed(seed)
    if not edge:
        cases = [("64 draws, target N(0.5, 1.2), proposal N(0, 1)", (64,), (0.5, 1.2), (0.0, 1.0)),
                 ("a batch of 3 estimates of 40 draws each", (3, 40), (1.0, 0.8), (0.0, 1.5)),
                 ("200 draws from a proposal far from the target", (200,), (2.5, 0.5), (0.0, 1.0))]
        return [(name, _f(x), lp, lq) for name, shape, p, q in cases for x, lp, lq in [_draws(g, shape, p, q)]]
    x, lp, lq = _draws(g, (32,), (0.3, 1.0), (0.0, 1.2))
    x1, lp1, lq1 = _draws(g, (1,), (0.3, 1.0), (0.0, 1.2))
    xs, lps, lqs = _draws(g, (2, 16), (0.0, 1.0), (0.0, 1.0))
    xd, lpd, lqd = _draws(g, (50,), (4.0, 0.3), (0.0, 1.0))
    lp_zero = lp.clone()
    lp_zero[::4] = float("-inf")
    return [
        ("log-probabilities near -1000", _f(x), lp - 1000.0, lq - 1000.0),
        ("a single draw", _f(x1), lp1, lq1),
        ("target equal to the proposal", _f(xs), lqs.clone(), lqs),
        ("one weight dominates all others", _f(xd), lpd, lqd),
        ("the target gives some draws zero probability", _f(x), lp_zero, lq),
        ("float32 inputs", _f(x).float(), lp.float(), lq.float()),
    ]


def _weights_cases(seed: int, edge: bool) -> list[Case]:
    cases = [Case(name, (lp, lq)) for name, _, lp, lq in _weight_inputs(seed, edge)]
    if edge:
        empty = torch.zeros(0, dtype=torch.float64)
        cases.append(Case("an empty batch", (empty, empty.clone())))
    return cases


def _estimator_cases(seed: int, edge: bool) -> list[Case]:
    return [Case(name, (fx, lp, lq)) for name, fx, lp, lq in _weight_inputs(seed, edge)]


def _ess_cases(seed: int, edge: bool) -> list[Case]:
    return [Case(name, (lp, lq)) for name, _, lp, lq in _weight_inputs(seed, edge)]


def _trajectory_cases(seed: int, edge: bool) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def rollout(T: int, N: int, shift: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
        rewards = torch.randn((T, N), generator=g, dtype=torch.float64)
        logp_behavior = torch.log(0.2 + 0.6 * torch.rand((T, N), generator=g, dtype=torch.float64))
        logp = torch.log(0.2 + 0.6 * torch.rand((T, N), generator=g, dtype=torch.float64))
        return rewards, logp + shift, logp_behavior + shift

    if not edge:
        r, lp, lb = rollout(6, 4)
        r2, lp2, lb2 = rollout(12, 3)
        return [Case("4 trajectories of 6 steps, gamma=0.9", (r, lp, lb, 0.9)),
                Case("3 trajectories of 12 steps, gamma=0.99", (r2, lp2, lb2, 0.99))]
    r, lp, lb = rollout(5, 3)
    r1, lp1, lb1 = rollout(1, 4)
    rp, lpp, lbp = rollout(7, 2)
    rp[4:, 0] = 0.0
    lpp[4:, 0] = lbp[4:, 0]
    return [Case("gamma=1 (no discount)", (r, lp, lb, 1.0)),
            Case("gamma=0 (only the first reward counts)", (r, lp, lb, 0.0)),
            Case("one-step trajectories", (r1, lp1, lb1, 0.95)),
            Case("target policy equal to the behaviour policy", (r, lb.clone(), lb, 0.9)),
            Case("a trajectory padded after it ended", (rp, lpp, lbp, 0.9))]


def _naive_weights(logp_target: Tensor, logp_proposal: Tensor) -> Tensor:
    return logp_target.exp() / logp_proposal.exp()


def _ess(logp_target: Tensor, logp_proposal: Tensor) -> Tensor:
    log_w = logp_target - logp_proposal
    return (2 * torch.logsumexp(log_w, dim=-1) - torch.logsumexp(2 * log_w, dim=-1)).exp()


def _per_decision_off_by_one(rewards: Tensor, logp: Tensor, logp_behavior: Tensor, gamma: float) -> Tensor:
    log_rho = torch.cumsum(logp - logp_behavior, dim=0) - (logp - logp_behavior)
    steps = torch.arange(rewards.shape[0], dtype=rewards.dtype, device=rewards.device).unsqueeze(-1)
    return (gamma**steps * log_rho.exp() * rewards).sum(dim=0)


def _per_decision_no_discount(rewards: Tensor, logp: Tensor, logp_behavior: Tensor, gamma: float) -> Tensor:
    return (torch.cumsum(logp - logp_behavior, dim=0).exp() * rewards).sum(dim=0)


def _per_decision_step_ratio(rewards: Tensor, logp: Tensor, logp_behavior: Tensor, gamma: float) -> Tensor:
    steps = torch.arange(rewards.shape[0], dtype=rewards.dtype, device=rewards.device).unsqueeze(-1)
    return (gamma**steps * (logp - logp_behavior).exp() * rewards).sum(dim=0)


NAIVE = ("you divided exp(logp_target) by exp(logp_proposal): both underflow to 0 for "
         "log-probabilities near -1000 and 0/0 is NaN. Subtract the logs first, then exponentiate.")

PARTS = (
    Part("importance_weights", ref.importance_weights, _weights_cases, (
        Mistake("ratio inverted: you computed q/p (proposal over target); the weight is p/q.",
                lambda lp, lq: (lq - lp).exp()),
        Mistake("you returned the log-weights log p - log q; exponentiate them.", lambda lp, lq: lp - lq),
        Mistake(NAIVE, _naive_weights),
    )),
    Part("weighted_is", ref.weighted_is, _estimator_cases, (
        Mistake("forgot to normalize: dividing by n instead of by the sum of the weights gives the "
                "ordinary IS estimate, not the weighted one.",
                lambda fx, lp, lq: ((lp - lq).exp() * fx).mean(dim=-1)),
        Mistake("ignored the weights: that is the plain average of f under the proposal.",
                lambda fx, lp, lq: fx.mean(dim=-1)),
        Mistake("ratio inverted: you weighted by q/p instead of p/q.",
                lambda fx, lp, lq: (torch.softmax(lq - lp, dim=-1) * fx).sum(dim=-1)),
        Mistake(NAIVE, lambda fx, lp, lq: (_naive_weights(lp, lq) * fx).sum(-1) / _naive_weights(lp, lq).sum(-1)),
    )),
    Part("effective_sample_size", ref.effective_sample_size, _ess_cases, (
        Mistake("ESS from unnormalized weights: 1/sum(w^2) needs weights that sum to one; "
                "use (sum w)^2 / sum(w^2).",
                lambda lp, lq: 1.0 / (2 * (lp - lq)).exp().sum(dim=-1)),
        Mistake("you returned ESS/n (the efficiency, in (0, 1]); the ESS itself lies in [1, n].",
                lambda lp, lq: _ess(lp, lq) / lp.shape[-1]),
        Mistake("formula upside down: sum(w^2)/(sum w)^2 is 1/ESS.",
                lambda lp, lq: 1.0 / _ess(lp, lq)),
        Mistake(NAIVE, lambda lp, lq: _naive_weights(lp, lq).sum(-1) ** 2 / (_naive_weights(lp, lq) ** 2).sum(-1)),
    )),
    Part("per_decision_is", ref.per_decision_is, _trajectory_cases, (
        Mistake("every reward is weighted by the whole trajectory's ratio: that is trajectory IS. "
                "Reward r_t needs only the ratios up to step t.", ref.trajectory_is),
        Mistake("off by one: reward r_t needs the ratios of steps 0..t, including step t itself.",
                _per_decision_off_by_one),
        Mistake("forgot the discount gamma**t.", _per_decision_no_discount),
        Mistake("you weighted r_t by the single-step ratio of step t; it needs the product over "
                "steps 0..t.", _per_decision_step_ratio),
    ), rtol=1e-6, atol=1e-9),
)
