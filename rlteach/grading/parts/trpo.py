"""Graded parts of the TRPO exercise (05).

A warm-up (the surrogate, graded on its value and on the gradients it lets through) and three
parts that build something whole: the backtracking line search (graded on the parameters it
returns, on what it leaves in the model and on the KL it reaches), the full TRPO policy step
(surrogate gradient, conjugate gradient on Fisher-vector products, the scaling
√(2δ/xᵀFx), the line search; graded on the network's parameters afterwards), and a TRPO loop
on a contextual bandit, graded on what it learns while never leaving the trust region.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from rlteach import kl
from rlteach import natural_gradient as ng
from rlteach import trpo
from rlteach.grading.parts.trust_region import _build_policy, _network_values
from rlteach.grading.spec import Arguments, Case, Mistake, Part, Property, state_of

GROUPS = ("random", "edge")
F64 = torch.float64
CG_TOL = 1e-10


def _randn(g: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    return scale * torch.randn(shape, generator=g, dtype=F64)


def _logp(logits: Tensor, actions: Tensor) -> Tensor:
    return torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def _sample(g: torch.Generator, logits: Tensor) -> Tensor:
    return torch.multinomial(torch.softmax(logits.detach(), -1).to(F64).cpu(), 1, generator=g).squeeze(-1)


# ------------------------------------------------------------------------ 1. the surrogate


def _surrogate_batch(g: torch.Generator, B: int, move: float = 0.3, adv_scale: float = 1.0) -> tuple[Tensor, ...]:
    logp_old = -torch.rand(B, generator=g, dtype=F64) * 2.0 - 0.05
    logp = logp_old + _randn(g, B, scale=move)
    return logp, logp_old, _randn(g, B, scale=adv_scale)


def _surrogate_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        return [Case("64 samples, a small policy change", _surrogate_batch(g, 64)),
                Case("256 samples, a larger change", _surrogate_batch(g, 256, move=1.0)),
                Case("10 samples, advantages of scale 5", _surrogate_batch(g, 10, adv_scale=5.0))]
    logp, logp_old, adv = _surrogate_batch(g, 32)
    big, big_old, big_adv = _surrogate_batch(g, 16, move=6.0)
    return [Case("the new policy is the old one (every ratio 1)", (logp_old.clone(), logp_old, adv)),
            Case("zero advantages", (logp, logp_old, torch.zeros_like(adv))),
            Case("a single sample", _surrogate_batch(g, 1)),
            Case("log-ratios of up to ±18", (big, big_old, big_adv)),
            Case("float32", tuple(t.float() for t in _surrogate_batch(g, 24)))]


def _surrogate_variant(logp: Tensor, logp_old: Tensor, adv: Tensor, *, inverted: bool = False,
                       detach_old: bool = True, detach_adv: bool = True, exponentiate: bool = True,
                       reduce: str = "mean") -> Tensor:
    old = logp_old.detach() if detach_old else logp_old
    log_ratio = old - logp if inverted else logp - old
    ratio = log_ratio.exp() if exponentiate else log_ratio
    terms = ratio * (adv.detach() if detach_adv else adv)
    return terms.sum() if reduce == "sum" else terms.mean()


# ------------------------------------------------------------------ 2. the line search


class LinearPolicyObjective:
    """θ ↦ (L(θ), D̄_KL(θ_old, θ)) for a linear softmax policy on a fixed batch; keeps the last θ.

    The interface of :class:`rlteach.trpo.SearchObjective`: calling it writes θ into the
    "model" (``self.theta``) and returns the surrogate and the mean KL as floats; ``set(θ)``
    writes θ without evaluating.
    """

    def __init__(self, obs: Tensor, actions: Tensor, logp_old: Tensor, adv: Tensor, logits_old: Tensor,
                 num_actions: int, theta: Tensor) -> None:
        self.obs, self.actions, self.logp_old, self.adv = obs, actions, logp_old, adv
        self.logits_old, self.num_actions = logits_old, num_actions
        self.theta = theta.detach().clone()
        self.evaluations = 0

    def evaluate(self, theta: Tensor) -> tuple[float, float]:
        """(L(θ), D̄_KL(θ_old, θ)) without writing θ into the model."""
        with torch.no_grad():
            logits = kl.linear_softmax_logits(theta.to(self.obs.dtype), self.obs, self.num_actions)
            ratio = (_logp(logits, self.actions) - self.logp_old).exp()
            return float((ratio * self.adv).mean()), float(kl.mean_categorical_kl(self.logits_old, logits))

    def set(self, theta: Tensor) -> None:
        self.theta = torch.as_tensor(theta).detach().clone()

    def __call__(self, theta: Tensor) -> tuple[float, float]:
        self.set(theta)
        self.evaluations += 1
        return self.evaluate(self.theta)


def _line_search_problem(g: torch.Generator, B: int = 64, d: int = 3, K: int = 4, max_kl: float = 0.01,
                         length: float = 1.0) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(obs, actions, logp_old, adv, theta_old, natural step) of a linear softmax policy, the step
    scaled to ½sᵀFs = max_kl·length² with the explicit Fisher."""
    obs = _randn(g, B, d)
    theta_old = _randn(g, d * K, scale=0.5)
    logits_old = kl.linear_softmax_logits(theta_old, obs, K)
    actions = _sample(g, logits_old)
    adv = _randn(g, B)
    logp_old = _logp(logits_old, actions)
    theta = theta_old.clone().requires_grad_(True)
    ratio = (_logp(kl.linear_softmax_logits(theta, obs, K), actions) - logp_old).exp()  # r(θ), the variants sealed
    grad = torch.autograd.grad((ratio * adv).mean(), theta)[0]  # ∇L(θ_old)
    probs = torch.softmax(logits_old, -1)
    jac = torch.stack([torch.kron(o[None, :], torch.eye(K, dtype=F64)) for o in obs])  # (B, K, dK): ∂logits/∂θ
    cov = torch.diag_embed(probs) - probs[:, :, None] * probs[:, None, :]  # diag(p) − ppᵀ
    fisher = torch.einsum("bki,bkl,blj->ij", jac, cov, jac) / B + 1e-3 * torch.eye(d * K, dtype=F64)
    x = torch.linalg.solve(fisher, grad)
    step = math.sqrt(2 * max_kl / float(x @ fisher @ x)) * x * length
    return obs, actions, logp_old, adv, theta_old, step


def _line_search_case(name: str, g: torch.Generator, *, max_kl: float = 0.01, length: float = 1.0,
                      direction: float = 1.0, backtrack_coef: float = 0.8, backtrack_iters: int = 10,
                      B: int = 64, K: int = 4) -> Case:
    obs, actions, logp_old, adv, theta_old, step = _line_search_problem(g, B=B, K=K, max_kl=max_kl, length=length)
    logits_old = kl.linear_softmax_logits(theta_old, obs, K)
    surrogate_old = float(adv.mean())  # every ratio is 1 at θ_old

    def make(device: torch.device) -> Arguments:
        objective = LinearPolicyObjective(obs.to(device), actions.to(device), logp_old.to(device), adv.to(device),
                                          logits_old.to(device), K, theta_old.to(device))
        return (objective, theta_old.to(device), (direction * step).to(device), surrogate_old, max_kl,
                backtrack_coef, backtrack_iters), {}
    return Case(name, make=make, info={"max_kl": max_kl})


def _line_search_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        return [_line_search_case("the natural step for max_kl = 0.01", g),
                _line_search_case("a step 3 times too long (it must backtrack)", g, length=3.0),
                _line_search_case("max_kl = 0.05, backtrack_coef = 0.5", g, max_kl=0.05, length=2.0,
                                  backtrack_coef=0.5)]
    return [_line_search_case("a step 6 times too long: the full step raises L but breaks the KL", g, length=6.0),
            _line_search_case("a step that lowers the surrogate (no step passes: restore θ_old)", g, direction=-1.0),
            _line_search_case("a zero step (L does not improve: restore θ_old)", g, direction=0.0),
            _line_search_case("backtrack_iters = 1, the full step passes", g, length=0.5, backtrack_iters=1),
            _line_search_case("backtrack_iters = 1, the full step is too long (restore θ_old)", g, length=6.0,
                              backtrack_iters=1),
            _line_search_case("a single state, 2 actions", g, B=1, K=2, length=2.0)]


def _line_search_reference(objective: Any, theta_old: Tensor, step: Tensor, surrogate_old: float, max_kl: float,
                           backtrack_coef: float, backtrack_iters: int) -> Tensor:
    """The library's backtracking line search, returning the parameters it keeps (the exercise's signature)."""
    return trpo.backtracking_line_search(objective, theta_old, step, surrogate_old, max_kl, backtrack_coef,
                                         backtrack_iters).theta


def _line_search_observe(result: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    objective = args[0]
    theta = torch.as_tensor(result).detach().to(F64)
    value, reached = objective.evaluate(theta)
    return {"theta": theta.cpu(), "parameters left in the model": objective.theta.detach().to("cpu", F64),
            "the KL reached": reached, "the surrogate reached": value}


def _line_search_variant(objective: Any, theta_old: Tensor, step: Tensor, surrogate_old: float, max_kl: float,
                         backtrack_coef: float, backtrack_iters: int, *, check_kl: bool = True,
                         check_gain: bool = True, restore: bool = True) -> Tensor:
    for k in range(backtrack_iters):
        theta = theta_old + backtrack_coef**k * step
        value, reached = objective(theta)
        if (reached <= max_kl or not check_kl) and (value > surrogate_old or not check_gain):
            return theta
    if restore:
        objective.set(theta_old)
    return theta_old


# ----------------------------------------------------------------- 3. the TRPO policy step


def _step_problem(g: torch.Generator, sizes: tuple[int, ...], states: int, scale: float = 1.5,
                  adv_scale: float = 1.0) -> tuple[list[Tensor], Tensor, Tensor, Tensor, Tensor]:
    values = _network_values(g, sizes, scale)
    obs = _randn(g, states, sizes[0])
    policy = _build_policy(sizes, values, torch.device("cpu"), F64)
    with torch.no_grad():
        logits = policy(obs)
    actions = _sample(g, logits)
    return values, obs, actions, _logp(logits, actions), _randn(g, states, scale=adv_scale)


def _step_case(name: str, g: torch.Generator, sizes: tuple[int, ...], states: int, max_kl: float = 0.01,
               damping: float = 0.1, cg_iters: int = 10, backtrack_coef: float = 0.8, backtrack_iters: int = 10, *,
               scale: float = 1.5, adv_scale: float = 1.0) -> Case:
    values, obs, actions, logp_old, adv = _step_problem(g, sizes, states, scale, adv_scale)

    def make(device: torch.device) -> Arguments:
        policy = _build_policy(sizes, values, device, F64)
        return (policy, obs.to(device), actions.to(device), logp_old.to(device), adv.to(device), max_kl, damping,
                cg_iters, backtrack_coef, backtrack_iters), {}
    return Case(name, make=make, info={"max_kl": max_kl})


def _step_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        return [_step_case("an MLP 4-16-3 on 64 states, max_kl = 0.01", g, (4, 16, 3), 64),
                _step_case("an MLP 6-24-24-4 on 128 states, max_kl = 0.02, 15 CG iterations", g, (6, 24, 24, 4), 128,
                           0.02, cg_iters=15),
                _step_case("a linear policy 5-3 on 48 states, max_kl = 0.05, damping 0.01", g, (5, 3), 48, 0.05, 0.01)]
    return [_step_case("zero advantages (no direction improves L: the policy must not move)", g, (4, 8, 3), 32,
                       adv_scale=0.0),
            _step_case("a tiny trust region (max_kl = 1e-6)", g, (4, 8, 3), 32, 1e-6),
            _step_case("a single state", g, (5, 8, 4), 1, 0.01),
            _step_case("damping 1e-3, max_kl = 0.3: the full step's true KL overshoots (backtrack)", g, (4, 8, 3), 32,
                       0.3, 1e-3, scale=3.0),
            _step_case("damping 1e-3, max_kl = 0.3, backtrack_iters = 1 (one try: keep it or restore θ_old)", g, (4, 8, 3), 32,
                       0.3, 1e-3, backtrack_iters=1, scale=3.0),
            _step_case("a nearly deterministic policy (large logits)", g, (4, 16, 3), 48, 0.01, scale=6.0),
            _step_case("one CG iteration", g, (4, 16, 3), 48, 0.01, cg_iters=1)]


class _ModuleObjective:
    """θ ↦ (L(θ), D̄_KL) for a module mapping observations to logits (writes θ into the module)."""

    def __init__(self, policy: nn.Module, obs: Tensor, actions: Tensor, logp_old: Tensor, adv: Tensor,
                 logits_old: Tensor, inverted: bool = False) -> None:
        self.policy, self.params = policy, list(policy.parameters())
        self.obs, self.actions, self.logp_old, self.adv, self.logits_old = obs, actions, logp_old, adv, logits_old
        self.inverted = inverted

    def set(self, theta: Tensor) -> None:
        with torch.no_grad():
            nn.utils.vector_to_parameters(theta, self.params)

    def __call__(self, theta: Tensor) -> tuple[float, float]:
        self.set(theta)
        with torch.no_grad():
            logits = self.policy(self.obs)
            logp = _logp(logits, self.actions)
            log_ratio = self.logp_old - logp if self.inverted else logp - self.logp_old  # log r (or its inverse)
            return float((log_ratio.exp() * self.adv).mean()), float(kl.mean_categorical_kl(self.logits_old, logits))


def _step_reference(policy: nn.Module, obs: Tensor, actions: Tensor, logp_old: Tensor, adv: Tensor, max_kl: float,
                    damping: float, cg_iters: int, backtrack_coef: float, backtrack_iters: int) -> None:
    """One TRPO policy step in place: the library's surrogate, natural step and line search."""
    params = list(policy.parameters())
    logits = policy(obs)
    value = trpo.surrogate(_logp(logits, actions), logp_old, adv)  # L(θ_old)
    grad = ng.flat_grad(value, params, retain_graph=True)  # g
    fvp = ng.HessianVectorProduct(kl.mean_categorical_kl(logits.detach(), logits), params, damping)
    natural = ng.natural_gradient_step(grad, fvp, max_kl, cg_iters=cg_iters, cg_tol=CG_TOL)
    if natural.quad > 0:
        objective = _ModuleObjective(policy, obs, actions, logp_old, adv, logits.detach())
        theta_old = nn.utils.parameters_to_vector(params).detach()
        trpo.backtracking_line_search(objective, theta_old, natural.step, float(value.detach()), max_kl, backtrack_coef,
                                      backtrack_iters)


def _step_observe(result: Any, args: tuple, kwargs: dict) -> dict[str, Tensor]:
    return state_of(args[0])


def _step_variant(policy: nn.Module, obs: Tensor, actions: Tensor, logp_old: Tensor, adv: Tensor, max_kl: float,
                  damping: float, cg_iters: int, backtrack_coef: float, backtrack_iters: int, *, scaled: bool = True,
                  search: str = "full", inverted: bool = False, half: float = 0.5) -> None:
    """The TRPO step with one piece changed; ``search``: "full", "kl-blind" or "none" (take the whole step)."""
    params = list(policy.parameters())
    logits = policy(obs)
    value = _surrogate_variant(_logp(logits, actions), logp_old, adv, inverted=inverted)
    grad = ng.flat_grad(value, params, retain_graph=True)
    fvp = ng.HessianVectorProduct(kl.mean_categorical_kl(logits.detach(), logits), params, damping)
    cg = ng.conjugate_gradient(fvp, grad, max_iter=cg_iters, tol=CG_TOL)
    if cg.iterations == 0:
        return
    x = cg.x
    step = math.sqrt(max_kl / (half * float(x @ fvp(x)))) * x if scaled else x
    theta_old = nn.utils.parameters_to_vector(params).detach()
    objective = _ModuleObjective(policy, obs, actions, logp_old, adv, logits.detach(), inverted)
    if search == "none":
        objective.set(theta_old + step)
        return
    _line_search_variant(objective, theta_old, step, float(value.detach()), max_kl, backtrack_coef, backtrack_iters,
                         check_kl=search != "kl-blind")


# ------------------------------------------------------------- 4. TRPO on a contextual bandit

BANDIT_SIZE = {"contexts": 6, "features": 4, "actions": 3, "samples_per_context": 8}
BANDIT_STEP = (0.1, 10, 0.8, 10)  # damping, cg_iters, backtrack_coef, backtrack_iters


def _bandit_problem(seed: int) -> tuple[Tensor, Tensor]:
    """(contexts (S, d), mean rewards (S, K)): each context has its own best action."""
    g = torch.Generator().manual_seed(seed)
    S, d, K = BANDIT_SIZE["contexts"], BANDIT_SIZE["features"], BANDIT_SIZE["actions"]
    contexts = _randn(g, S, d)
    contexts[:, 0] = 1.0  # a bias feature
    means = torch.rand((S, K), generator=g, dtype=F64)
    means[torch.arange(S), torch.randint(K, (S,), generator=g)] += 1.0  # a clear best action per context
    return contexts, means


def _bandit_case(name: str, seed: int, iterations: int, max_kl: float, min_regret_cut: float | None) -> Case:
    contexts, means = _bandit_problem(seed)
    S, d, K = BANDIT_SIZE["contexts"], BANDIT_SIZE["features"], BANDIT_SIZE["actions"]

    def make(device: torch.device) -> Arguments:
        policy = nn.Linear(d, K, bias=False, dtype=F64, device=device)
        with torch.no_grad():
            policy.weight.zero_()  # the uniform policy
        return (policy, contexts.to(device), means.to(device), iterations, BANDIT_SIZE["samples_per_context"], max_kl,
                torch.Generator(device=device).manual_seed(seed)), {}
    return Case(name, make=make, info={"contexts": contexts, "means": means, "iterations": iterations,
                                       "max_kl": max_kl, "min_regret_cut": min_regret_cut, "shape": (K, d)})


def _bandit_cases(seed: int, group: str) -> list[Case]:
    base = seed % 997
    if group == "random":
        return [_bandit_case(f"20 iterations, max_kl = 0.1, problem {base + k}", base + k, 20, 0.1, 0.4)
                for k in range(2)]
    return [_bandit_case("a tight trust region: 20 iterations of max_kl = 0.02", base + 3, 20, 0.02, 0.3),
            _bandit_case("a wide trust region: 10 iterations of max_kl = 0.3", base + 4, 10, 0.3, 0.4),
            _bandit_case("a single iteration", base + 5, 1, 0.05, None)]


def _bandit_reference(policy: nn.Module, contexts: Tensor, means: Tensor, iterations: int, samples_per_context: int,
                      max_kl: float, generator: torch.Generator) -> Tensor:
    """TRPO on the bandit with the reference step; returns the flat parameters before and after each iteration."""
    obs = contexts.repeat(samples_per_context, 1)  # every context, samples_per_context times
    history = [nn.utils.parameters_to_vector(policy.parameters()).detach().clone()]
    for _ in range(iterations):
        with torch.no_grad():
            logits = policy(obs)
            probs = torch.softmax(logits, -1)
            actions = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            rewards = means.repeat(samples_per_context, 1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
            rewards = rewards + 0.1 * torch.randn(rewards.shape, generator=generator, dtype=rewards.dtype,
                                                  device=rewards.device)
            adv = rewards - rewards.mean()
            logp_old = _logp(logits, actions)
        _step_reference(policy, obs, actions, logp_old, adv, max_kl, *BANDIT_STEP)
        history.append(nn.utils.parameters_to_vector(policy.parameters()).detach().clone())
    return torch.stack(history)


def _bandit_observe(result: Any, args: tuple, kwargs: dict) -> dict[str, Tensor]:
    return {"history": torch.as_tensor(result).detach().to("cpu", F64),
            "final": nn.utils.parameters_to_vector(args[0].parameters()).detach().to("cpu", F64)}


def _bandit_history(observed: dict, case: Case) -> Tensor:
    history = observed["result"]["history"]
    n, (K, d) = case.info["iterations"], case.info["shape"]
    if history.shape != (n + 1, K * d) or not bool(torch.isfinite(history).all()):
        raise ValueError(f"return a finite tensor of shape ({n + 1}, {K * d}): the flat parameters before the first "
                         f"iteration and after each one; got shape {tuple(history.shape)}")
    return history


def bandit_expected_reward(theta: Tensor, contexts: Tensor, means: Tensor) -> float:
    """Mean over contexts of E_{a∼π_θ}[r], for the flat weight θ of a bias-free ``nn.Linear(d, K)``."""
    K, d = means.shape[1], contexts.shape[1]
    probs = torch.softmax(contexts @ theta.reshape(K, d).T, -1)
    return float((probs * means).sum(-1).mean())


def _bandit_record(observed: dict, case: Case) -> str | None:
    history = _bandit_history(observed, case)
    if float(history[0].abs().max()) != 0.0:
        return "the history's first row must be the parameters before any update (all zeros here)"
    if not torch.allclose(history[-1], observed["result"]["final"], rtol=0.0, atol=1e-12):
        return "the history's last row is not the policy's final parameters: update the policy in place"
    return None


def _bandit_trust_region(observed: dict, case: Case) -> str | None:
    history = _bandit_history(observed, case)
    contexts, delta = case.info["contexts"], case.info["max_kl"]
    K, d = case.info["shape"]
    for t in range(history.shape[0] - 1):
        old = contexts @ history[t].reshape(K, d).T
        new = contexts @ history[t + 1].reshape(K, d).T
        reached = float(kl.mean_categorical_kl(old, new))
        if reached > delta * (1 + 1e-6) + 1e-12:
            return (f"update {t + 1} moved the policy by a mean KL of {reached:.4g} > max_kl = {delta:g}: "
                    "the line search must reject steps that leave the trust region")
    return None


def _bandit_learns(observed: dict, case: Case) -> str | None:
    cut = case.info["min_regret_cut"]
    if cut is None:
        return None
    history = _bandit_history(observed, case)
    contexts, means = case.info["contexts"], case.info["means"]
    start = bandit_expected_reward(history[0], contexts, means)
    best = float(means.max(-1).values.mean())
    final = bandit_expected_reward(history[-1], contexts, means)
    if final - start >= cut * (best - start):
        return None
    return (f"after {case.info['iterations']} iterations the expected reward is {final:.3f}: from {start:.3f} "
            f"(uniform) it should close {cut:.0%} of the gap to the best {best:.3f}. Check the sign of the step "
            "and that accepted steps are kept")


PARTS = (
    Part("trpo_surrogate", trpo.surrogate, _surrogate_cases, GROUPS, (
        Mistake("ratio inverted: r = π_θ/π_old, so log r = logp − logp_old.",
                lambda lp, lo, a: _surrogate_variant(lp, lo, a, inverted=True)),
        Mistake("old log-probs not detached: π_old is the policy that collected the data, a constant. "
                "No gradient may flow into logp_old.", lambda lp, lo, a: _surrogate_variant(lp, lo, a, detach_old=False)),
        Mistake("the advantages are not detached: Â is data (from the critic), no gradient may flow into it.",
                lambda lp, lo, a: _surrogate_variant(lp, lo, a, detach_adv=False)),
        Mistake("the log-ratio is not exponentiated: r = exp(logp − logp_old).",
                lambda lp, lo, a: _surrogate_variant(lp, lo, a, exponentiate=False)),
        Mistake("summed instead of averaged: L is the mean over the batch.",
                lambda lp, lo, a: _surrogate_variant(lp, lo, a, reduce="sum")),
    ), seals=(trpo.surrogate,), grad=("logp", "logp_old", "adv")),
    Part("trpo_line_search", _line_search_reference, _line_search_cases, GROUPS, (
        Mistake("line search ignores the KL: a step is kept only when the mean KL it reaches is ≤ max_kl "
                "(the quadratic model behind the step is only a model).",
                lambda *a: _line_search_variant(*a, check_kl=False)),
        Mistake("line search does not restore the parameters: when no step passes, write θ_old back into the "
                "model with objective.set(theta_old) (each evaluation left its θ there).",
                lambda *a: _line_search_variant(*a, restore=False)),
        Mistake("the line search keeps a step that does not improve the surrogate: require L(θ) > L(θ_old).",
                lambda *a: _line_search_variant(*a, check_gain=False)),
    ), seals=(trpo.backtracking_line_search, trpo.trpo_update, trpo.PolicyObjective.__call__),
        observe=_line_search_observe, time_limit=20.0),
    Part("trpo_step", _step_reference, _step_cases, GROUPS, (
        Mistake("step not scaled: after CG, x ≈ F⁻¹g must be stretched to the edge of the trust region, "
                "s = √(2δ / xᵀFx)·x, before the line search.", lambda *a: _step_variant(*a, scaled=False)),
        Mistake("line search ignores the KL (or there is none): keep a step only when the mean KL it reaches is "
                "≤ max_kl and the surrogate improved, shrinking it by backtrack_coef until both hold.",
                lambda *a: _step_variant(*a, search="kl-blind")),
        Mistake("ratio inverted: r = π_θ/π_old, so the surrogate's gradient at θ_old is Ê[Â ∇log π_θ].",
                lambda *a: _step_variant(*a, inverted=True)),
        Mistake("missing ½: scale so that ½·sᵀFs = max_kl; yours has sᵀFs = max_kl.",
                lambda *a: _step_variant(*a, half=1.0)),
    ), seals=(trpo.surrogate, trpo.backtracking_line_search, trpo.trpo_update, trpo.PolicyObjective.__call__,
              ng.natural_gradient_step), observe=_step_observe, time_limit=30.0, rtol=1e-5, atol=1e-8),
    Part("trpo_bandit", _bandit_reference, _bandit_cases, GROUPS,
         seals=(_step_reference, trpo.surrogate, trpo.backtracking_line_search, trpo.trpo_update,
                trpo.PolicyObjective.__call__, ng.natural_gradient_step),
         observe=_bandit_observe,
         properties=(Property("learns", _bandit_learns, 2.0),
                     Property("stays in the trust region", _bandit_trust_region, 2.0),
                     Property("parameter history", _bandit_record, 1.0)),
         time_limit=60.0),
)
