"""Graded parts of the importance-sampling exercise (01)."""

from __future__ import annotations

import torch
from torch import Tensor

from rlteach import importance as ref
from rlteach.grading.spec import Case, Mistake, Part

GROUPS = ("random", "edge")


def _draws(g: torch.Generator, shape: tuple[int, ...], target: tuple[float, float],
           proposal: tuple[float, float]) -> tuple[Tensor, Tensor, Tensor]:
    """x ~ N(proposal), with log p(x) under N(target) and log q(x) under N(proposal)."""
    x = proposal[0] + proposal[1] * torch.randn(shape, generator=g, dtype=torch.float64)
    return x, ref.gaussian_logpdf(x, *target), ref.gaussian_logpdf(x, *proposal)


def _f(x: Tensor) -> Tensor:
    return x**2 + torch.sin(3 * x)


def _spread_log_weights(g: torch.Generator, n: int) -> tuple[Tensor, Tensor]:
    """Log-probabilities whose differences (the log-weights) spread over [-750, 750]:
    e^{±750} overflows float64, so only a normalization done in log space survives."""
    logp_proposal = -1.0 - torch.rand(n, generator=g, dtype=torch.float64)
    log_w = torch.linspace(-750.0, 750.0, n, dtype=torch.float64)[torch.randperm(n, generator=g)]
    return logp_proposal + log_w, logp_proposal


def _weight_inputs(seed: int, group: str) -> list[tuple[str, Tensor, Tensor, Tensor]]:
    """(name, fx, logp_target, logp_proposal) for the i.i.d. estimators."""
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        cases = [("64 draws, target N(0.5, 1.2), proposal N(0, 1)", (64,), (0.5, 1.2), (0.0, 1.0)),
                 ("a batch of 3 estimates of 40 draws each", (3, 40), (1.0, 0.8), (0.0, 1.5)),
                 ("200 draws from a proposal far from the target", (200,), (2.5, 0.5), (0.0, 1.0))]
        return [(name, _f(x), lp, lq) for name, shape, p, q in cases for x, lp, lq in [_draws(g, shape, p, q)]]
    x, lp, lq = _draws(g, (32,), (0.3, 1.0), (0.0, 1.2))
    x1, lp1, lq1 = _draws(g, (1,), (0.3, 1.0), (0.0, 1.2))
    xs, _, lqs = _draws(g, (2, 16), (0.0, 1.0), (0.0, 1.0))
    xd, lpd, lqd = _draws(g, (50,), (4.0, 0.3), (0.0, 1.0))
    spread_p, spread_q = _spread_log_weights(g, 24)
    lp_zero = lp.clone()
    lp_zero[::4] = float("-inf")
    return [
        ("log-probabilities near -1000", _f(x), lp - 1000.0, lq - 1000.0),
        ("log-weights spread over [-750, 750]", torch.linspace(-1.0, 1.0, 24, dtype=torch.float64),
         spread_p, spread_q),
        ("a single draw", _f(x1), lp1, lq1),
        ("target equal to the proposal", _f(xs), lqs.clone(), lqs),
        ("one weight dominates all others", _f(xd), lpd, lqd),
        ("the target gives some draws zero probability", _f(x), lp_zero, lq),
        ("float32 inputs", _f(x).float(), lp.float(), lq.float()),
    ]


def _weights_cases(seed: int, group: str) -> list[Case]:
    cases = [Case(name, (lp, lq)) for name, _, lp, lq in _weight_inputs(seed, group)
             if "[-750, 750]" not in name]  # e^{750} is +inf: no weight to compare
    if group == "edge":
        empty = torch.zeros(0, dtype=torch.float64)
        cases.append(Case("an empty batch", (empty, empty.clone())))
    return cases


def _estimator_cases(seed: int, group: str) -> list[Case]:
    return [Case(name, (fx, lp, lq)) for name, fx, lp, lq in _weight_inputs(seed, group)]


def _ess_cases(seed: int, group: str) -> list[Case]:
    return [Case(name, (lp, lq)) for name, _, lp, lq in _weight_inputs(seed, group)]


def _rollout(g: torch.Generator, T: int, N: int) -> tuple[Tensor, Tensor, Tensor]:
    rewards = torch.randn((T, N), generator=g, dtype=torch.float64)
    logp_behavior = torch.log(0.2 + 0.6 * torch.rand((T, N), generator=g, dtype=torch.float64))
    logp = torch.log(0.2 + 0.6 * torch.rand((T, N), generator=g, dtype=torch.float64))
    return rewards, logp, logp_behavior


def _trajectory_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        r, lp, lb = _rollout(g, 6, 4)
        r2, lp2, lb2 = _rollout(g, 12, 3)
        return [Case("4 trajectories of 6 steps, gamma=0.9", (r, lp, lb, 0.9)),
                Case("3 trajectories of 12 steps, gamma=0.99", (r2, lp2, lb2, 0.99))]
    r, lp, lb = _rollout(g, 5, 3)
    r1, lp1, lb1 = _rollout(g, 1, 4)
    rp, lpp, lbp = _rollout(g, 7, 2)
    rp[4:, 0] = 0.0
    lpp[4:, 0] = lbp[4:, 0]
    return [Case("gamma=1 (no discount)", (r, lp, lb, 1.0)),
            Case("gamma=0 (only the first reward counts)", (r, lp, lb, 0.0)),
            Case("one-step trajectories", (r1, lp1, lb1, 0.95)),
            Case("target policy equal to the behaviour policy", (r, lb.clone(), lb, 0.9)),
            Case("a trajectory padded after it ended", (rp, lpp, lbp, 0.9))]


def _pg_cases(seed: int, group: str) -> list[Case]:
    """Batches of (log π(a|s), log β(a|s), Q(s, a)); the loss's gradient is compared."""
    g = torch.Generator().manual_seed(seed)

    def batch(B: int, spread: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
        logp = torch.log(0.05 + 0.9 * torch.rand(B, generator=g, dtype=torch.float64))
        logp_behavior = logp + spread * torch.randn(B, generator=g, dtype=torch.float64)
        q_values = 3.0 * torch.randn(B, generator=g, dtype=torch.float64)
        return logp, logp_behavior.clamp(max=0.0), q_values

    if group == "random":
        return [Case("a batch of 16 transitions", batch(16)), Case("a batch of 64 transitions", batch(64, 0.5))]
    logp, lb, q = batch(8)
    return [Case("the behaviour policy equals the target policy (ρ = 1)", (logp, logp.clone(), q)),
            Case("a single transition", batch(1)),
            Case("Q-values all zero", (logp, lb, torch.zeros_like(q))),
            Case("ratios far from 1", batch(12, spread=3.0)),
            Case("float32 inputs", tuple(t.float() for t in batch(10)))]


def _naive_weights(logp_target: Tensor, logp_proposal: Tensor) -> Tensor:
    return logp_target.exp() / logp_proposal.exp()


def _ess(logp_target: Tensor, logp_proposal: Tensor) -> Tensor:
    log_w = logp_target - logp_proposal
    return (2 * torch.logsumexp(log_w, dim=-1) - torch.logsumexp(2 * log_w, dim=-1)).exp()


def _trajectory_ratio(rewards: Tensor, logp: Tensor, logp_behavior: Tensor, gamma: float) -> Tensor:
    steps = torch.arange(rewards.shape[0], dtype=rewards.dtype, device=rewards.device).unsqueeze(-1)
    return (logp - logp_behavior).sum(dim=0).exp() * (gamma**steps * rewards).sum(dim=0)


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
OVERFLOW = ("you exponentiated the log-weights before normalizing: e^{750} overflows to inf and "
            "inf/inf is NaN. Normalize in log space (torch.softmax, torch.logsumexp).")

PARTS = (
    Part("importance_weights", ref.importance_weights, _weights_cases, GROUPS, (
        Mistake("ratio inverted: you computed q/p (proposal over target); the weight is p/q.",
                lambda lp, lq: (lq - lp).exp()),
        Mistake("you returned the log-weights log p - log q; exponentiate them.", lambda lp, lq: lp - lq),
        Mistake(NAIVE, _naive_weights),
    ), seals=(ref.log_importance_weights, ref.importance_weights_from_probs)),
    Part("weighted_is", ref.weighted_is, _estimator_cases, GROUPS, (
        Mistake("forgot to normalize: dividing by n instead of by the sum of the weights gives the "
                "ordinary IS estimate, not the weighted one.",
                lambda fx, lp, lq: ((lp - lq).exp() * fx).mean(dim=-1)),
        Mistake("ignored the weights: that is the plain average of f under the proposal.",
                lambda fx, lp, lq: fx.mean(dim=-1)),
        Mistake("ratio inverted: you weighted by q/p instead of p/q.",
                lambda fx, lp, lq: (torch.softmax(lq - lp, dim=-1) * fx).sum(dim=-1)),
        Mistake(OVERFLOW, lambda fx, lp, lq: ((lp - lq).exp() * fx).sum(-1) / (lp - lq).exp().sum(-1)),
        Mistake(NAIVE, lambda fx, lp, lq: (_naive_weights(lp, lq) * fx).sum(-1) / _naive_weights(lp, lq).sum(-1)),
    ), seals=(ref.self_normalized_weights, ref.ordinary_is)),
    Part("effective_sample_size", ref.effective_sample_size, _ess_cases, GROUPS, (
        Mistake("ESS from unnormalized weights: 1/sum(w^2) needs weights that sum to one; "
                "use (sum w)^2 / sum(w^2).",
                lambda lp, lq: 1.0 / (2 * (lp - lq)).exp().sum(dim=-1)),
        Mistake("you returned ESS/n (the efficiency, in (0, 1]); the ESS itself lies in [1, n].",
                lambda lp, lq: _ess(lp, lq) / lp.shape[-1]),
        Mistake("formula upside down: sum(w^2)/(sum w)^2 is 1/ESS.",
                lambda lp, lq: 1.0 / _ess(lp, lq)),
        Mistake(OVERFLOW, lambda lp, lq: (lp - lq).exp().sum(-1) ** 2 / ((lp - lq).exp() ** 2).sum(-1)),
        Mistake(NAIVE, lambda lp, lq: _naive_weights(lp, lq).sum(-1) ** 2 / (_naive_weights(lp, lq) ** 2).sum(-1)),
    ), seals=(ref.self_normalized_weights,)),
    Part("per_decision_is", ref.per_decision_is, _trajectory_cases, GROUPS, (
        Mistake("every reward is weighted by the whole trajectory's ratio: that is trajectory IS. "
                "Reward r_t needs only the ratios up to step t.", _trajectory_ratio),
        Mistake("off by one: reward r_t needs the ratios of steps 0..t, including step t itself.",
                _per_decision_off_by_one),
        Mistake("forgot the discount gamma**t.", _per_decision_no_discount),
        Mistake("you weighted r_t by the single-step ratio of step t; it needs the product over "
                "steps 0..t.", _per_decision_step_ratio),
    ), seals=(ref.trajectory_is, ref._trajectory)),
    Part("off_policy_pg_loss", ref.off_policy_pg_loss, _pg_cases, GROUPS, (
        Mistake("ratio inverted: ρ = π/β (target over behaviour), not β/π.",
                lambda lp, lb, q: -((lb.detach() - lp).exp() * q.detach()).mean()),
        Mistake("the Q-values were not detached: the critic's estimates are data here, so no gradient may "
                "flow into them.", lambda lp, lb, q: -((lp - lb.detach()).exp() * q).mean()),
        Mistake("the behaviour log-probabilities were not detached: β collected the data and is not "
                "being optimized.", lambda lp, lb, q: -((lp - lb).exp() * q.detach()).mean()),
        Mistake("the importance ratio is missing: -mean(log π · Q) is the on-policy gradient, "
                "biased when the data come from β.", lambda lp, lb, q: -(lp * q.detach()).mean()),
        Mistake("sign flipped: this is the objective J to maximize; return the loss -J to minimize.",
                lambda lp, lb, q: ((lp - lb.detach()).exp() * q.detach()).mean()),
        Mistake("sum instead of mean over the batch.", lambda lp, lb, q: -((lp - lb.detach()).exp() * q.detach()).sum()),
    ), observe=lambda loss, args, kwargs: None, grad=("logp", "logp_behavior", "q_values"),
        seals=(ref.importance_weights,)),
)
