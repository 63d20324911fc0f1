"""Graded parts of the PPO exercise (06).

A warm-up that is more than the formula (the clipped policy loss with its two diagnostics,
graded on its value, on the diagnostics and on the gradients it lets through, zero outside
the clip), the clipped value loss (graded on its gradients too), and two parts that build
something whole: one PPO update of K epochs over shuffled minibatches of a ``(T, N)`` rollout
(flattening the valid samples, standardising the advantages, value clipping, the entropy
bonus, gradient-norm clipping, KL early stopping; graded on the network's parameters
afterwards), and the PPO loop, the student's update dropped into the library's rollout
collection on CartPole, graded on what the trained policy achieves within its step budget.

The references are the library's (:mod:`rlteach.ppo`); the variants behind the known
mistakes are written here, each one switch away from the reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from rlteach import ppo
from rlteach.grading.parts.trpo import _surrogate_batch
from rlteach.grading.spec import Arguments, Case, Mistake, Part, Property, state_of
from rlteach.policies import CategoricalActorCritic

GROUPS = ("random", "edge")
F64 = torch.float64


def _randn(g: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    return scale * torch.randn(shape, generator=g, dtype=F64)


# --------------------------------------------------------------------- 1. the policy loss


def _policy_loss_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        return [Case("64 samples, a small policy change, ε = 0.2", (*_surrogate_batch(g, 64), 0.2)),
                Case("256 samples, a larger change, ε = 0.1", (*_surrogate_batch(g, 256, move=1.0), 0.1)),
                Case("10 samples, advantages of scale 5, ε = 0.3", (*_surrogate_batch(g, 10, adv_scale=5.0), 0.3))]
    logp, logp_old, adv = _surrogate_batch(g, 32)
    far, far_old, far_adv = _surrogate_batch(g, 16, move=6.0)
    out = _surrogate_batch(g, 40, move=0.05)
    # every ratio outside [1 − ε, 1 + ε], half above and half below, advantages of both signs
    shift = torch.where(torch.arange(40) % 2 == 0, 0.5, -0.5).to(F64)
    return [Case("the new policy is the old one (every ratio 1)", (logp_old.clone(), logp_old, adv, 0.2)),
            Case("zero advantages", (logp, logp_old, torch.zeros_like(adv), 0.2)),
            Case("every ratio outside the clip, advantages of both signs", (out[1] + shift, out[1], out[2], 0.2)),
            Case("a single sample", (*_surrogate_batch(g, 1), 0.2)),
            Case("log-ratios of up to ±18", (far, far_old, far_adv, 0.2)),
            Case("float32", (*(t.float() for t in _surrogate_batch(g, 24)), 0.2))]


def _policy_loss_variant(logp: Tensor, logp_old: Tensor, adv: Tensor, clip_eps: float, *, pick: str = "min",
                         clip: str = "ratio", inverted: bool = False, detach_old: bool = True,
                         detach_adv: bool = True, sign: float = -1.0, reduce: str = "mean",
                         kl: str = "k3") -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's policy loss with one piece changed; ``pick``: "min", "max" or "clipped" (no min);
    ``clip``: what is clipped, "ratio", "adv" or "product"."""
    old = logp_old.detach() if detach_old else logp_old
    log_ratio = old - logp if inverted else logp - old
    ratio = log_ratio.exp()
    a = adv.detach() if detach_adv else adv
    lo, hi = 1.0 - clip_eps, 1.0 + clip_eps
    if clip == "ratio":
        clipped = ratio.clamp(lo, hi) * a
    elif clip == "adv":
        clipped = ratio * a.clamp(lo, hi)
    else:
        clipped = (ratio * a).clamp(lo, hi)
    unclipped = ratio * a
    if pick == "min":
        terms = torch.minimum(unclipped, clipped)
    elif pick == "max":
        terms = torch.maximum(unclipped, clipped)
    else:
        terms = clipped
    objective = terms.sum() if reduce == "sum" else terms.mean()
    with torch.no_grad():
        r = ratio.detach()
        approx_kl = ((r - 1) - log_ratio.detach()).mean() if kl == "k3" else (-log_ratio.detach()).mean()
        clip_frac = ((r - 1).abs() > clip_eps).to(logp.dtype).mean()
    return sign * objective, {"approx_kl": approx_kl, "clip_frac": clip_frac}


def _policy_loss_observe(result: Any, args: tuple, kwargs: dict) -> Any:
    """``{"loss", "approx_kl", "clip_frac"}``; the diagnostics as 0-d tensors of the loss's dtype
    (a Python float or a float32 clip fraction is accepted)."""
    try:
        loss, stats = result
    except (TypeError, ValueError):
        return result
    if hasattr(stats, "_asdict"):
        stats = stats._asdict()
    if not isinstance(loss, Tensor) or not isinstance(stats, Mapping):
        return result
    out: dict[str, Any] = {"loss": loss}
    for key, value in stats.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = torch.tensor(float(value), device=loss.device)
        if isinstance(value, Tensor) and value.numel() == 1 and value.is_floating_point():
            value = value.detach().to(loss.dtype).reshape(())
        out[key] = value
    return out


def _loss_of(result: Any) -> Any:
    return result[0] if isinstance(result, (tuple, list)) and result else result


# ---------------------------------------------------------------------- 2. the value loss


def _value_batch(g: torch.Generator, B: int, move: float = 0.5, error: float = 1.0) -> tuple[Tensor, ...]:
    values_old = _randn(g, B, scale=2.0)
    values = values_old + _randn(g, B, scale=move)
    return values, values_old, values_old + _randn(g, B, scale=error)


def _value_loss_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        return [Case("64 samples, ε = 0.2", (*_value_batch(g, 64), 0.2)),
                Case("256 samples, values that moved far, ε = 0.1", (*_value_batch(g, 256, move=2.0), 0.1)),
                Case("12 samples, ε = 0.5", (*_value_batch(g, 12), 0.5))]
    values, values_old, returns = _value_batch(g, 32)
    small = _value_batch(g, 20, move=0.01)
    return [Case("values equal to the old ones", (values_old.clone(), values_old, returns, 0.2)),
            Case("clip_eps = None (no clipping)", (values, values_old, returns, None)),
            Case("every value within ε of the old one", (*small, 0.2)),
            Case("returns equal to the values (zero error)", (values, values_old, values.clone(), 0.2)),
            Case("a single sample", (*_value_batch(g, 1, move=2.0), 0.2)),
            Case("float32", (*(t.float() for t in _value_batch(g, 24, move=1.0)), 0.2))]


def _value_loss_variant(values: Tensor, values_old: Tensor, returns: Tensor, clip_eps: float | None = None, *,
                        pick: str = "max", around: str = "old", half: float = 0.5, detach_old: bool = True,
                        detach_returns: bool = True) -> Tensor:
    """The value loss with one piece changed; ``pick``: "max", "min" or "clipped" (no max);
    ``around``: clip the change from V_old ("old") or from the returns ("returns")."""
    ret = returns.detach() if detach_returns else returns
    unclipped = (values - ret).pow(2)
    if clip_eps is None:
        return half * unclipped.mean()
    old = values_old.detach() if detach_old else values_old
    if around == "old":
        clipped = (old + (values - old).clamp(-clip_eps, clip_eps) - ret).pow(2)
    else:
        clipped = (values - ret).clamp(-clip_eps, clip_eps).pow(2)
    if pick == "max":
        terms = torch.maximum(unclipped, clipped)
    elif pick == "min":
        terms = torch.minimum(unclipped, clipped)
    else:
        terms = clipped
    return half * terms.mean()


# ------------------------------------------------------------------------- 3. the update

OBS_DIM, NUM_ACTIONS, HIDDEN = 4, 3, (16, 16)


def _rollout(g: torch.Generator, policy: CategoricalActorCritic, T: int, N: int, invalid: float = 0.0,
             valid_count: int | None = None) -> tuple[ppo.Rollout, Tensor, Tensor]:
    """A ``(T, N)`` rollout of ``policy`` on random observations (float64), with advantages whose
    scale and offset differ between the environments, and λ-return targets."""
    obs = _randn(g, T, N, OBS_DIM, scale=1.5)
    with torch.no_grad():
        dist = policy.dist(obs.reshape(T * N, OBS_DIM))
        actions, logp = policy.sample(dist, g)
        values = policy.value(obs.reshape(T * N, OBS_DIM)).reshape(T, N)
    actions, logp = actions.reshape(T, N), logp.reshape(T, N)
    valid = torch.rand((T, N), generator=g) >= invalid
    if valid_count is not None:
        valid = torch.zeros(T, N, dtype=torch.bool)
        valid.view(-1)[torch.randperm(T * N, generator=g)[:valid_count]] = True
    else:
        valid.view(-1)[0] = True  # at least one valid sample
    adv = _randn(g, T, N) * (0.5 + 2.0 * torch.rand(N, generator=g, dtype=F64)) + 3.0 * _randn(g, N)
    adv = torch.where(valid, adv, 40.0 * _randn(g, T, N))  # what an autoreset step holds must not matter
    zeros = torch.zeros(T, N, dtype=torch.bool)
    rollout = ppo.Rollout(obs, actions, logp, values, _randn(g, T, N), torch.ones(T, N, dtype=F64), zeros,
                          zeros.clone(), valid)
    return rollout, adv, adv + values


def _update_case(name: str, g: torch.Generator, T: int = 16, N: int = 4, clip_eps: float = 0.2, lr: float = 3e-3,
                 invalid: float = 0.0, valid_count: int | None = None, **config: Any) -> Case:
    init = int(torch.randint(2**31 - 1, (1,), generator=g))
    cfg = ppo.PPOConfig(num_envs=N, num_steps=T, **{"update_epochs": 4, "num_minibatches": 4, **config})
    policy = CategoricalActorCritic(OBS_DIM, NUM_ACTIONS, HIDDEN, generator=torch.Generator().manual_seed(init)).to(F64)
    rollout, adv, returns = _rollout(g, policy, T, N, invalid, valid_count)
    perm_seed = int(torch.randint(2**31 - 1, (1,), generator=g))

    def make(device: torch.device) -> Arguments:
        net = CategoricalActorCritic(OBS_DIM, NUM_ACTIONS, HIDDEN,
                                     generator=torch.Generator().manual_seed(init)).to(device=device, dtype=F64)
        optimizer = torch.optim.Adam(net.parameters(), lr=lr, eps=cfg.adam_eps)
        return (net, optimizer, ppo.Rollout(*(t.to(device) for t in rollout)), adv.to(device), returns.to(device),
                cfg, torch.Generator(device=device).manual_seed(perm_seed), clip_eps), {}
    return Case(name, make=make, info={"config": cfg, "clip_eps": clip_eps})


def _update_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        return [_update_case("8 envs × 16 steps, 4 epochs of 4 shuffled minibatches", g, 16, 8),
                _update_case("value clipping and an entropy bonus, 3 epochs of 2 minibatches", g, 12, 4,
                             update_epochs=3, num_minibatches=2, clip_value=True, ent_coef=0.01, vf_coef=0.25),
                _update_case("B = 60 in 7 minibatches (the last one smaller), ε = 0.1 (config.clip_eps 0.2)", g, 15,
                             4, clip_eps=0.1, update_epochs=2, num_minibatches=7)]
    return [_update_case("one full-batch minibatch, 6 epochs", g, 8, 4, update_epochs=6, num_minibatches=1),
            _update_case("autoreset steps in the rollout (invalid samples)", g, 16, 4, invalid=0.3),
            _update_case("normalize_adv = False", g, 10, 3, normalize_adv=False, update_epochs=2),
            _update_case("target_kl = 0.005 with a large step size: the update stops early", g, 16, 4, lr=5e-3,
                         target_kl=0.005, update_epochs=8),
            _update_case("a tight gradient-norm clip (max_grad_norm = 0.05)", g, 8, 4, max_grad_norm=0.05,
                         update_epochs=2, clip_value=True),
            _update_case("no gradient clipping (max_grad_norm = inf), ε = 0.05", g, 8, 4, clip_eps=0.05,
                         max_grad_norm=math.inf, update_epochs=3),
            _update_case("a single valid sample", g, 4, 2, valid_count=1, num_minibatches=2, update_epochs=2)]


def _update_reference(policy: CategoricalActorCritic, optimizer: torch.optim.Optimizer, rollout: ppo.Rollout,
                      adv: Tensor, returns: Tensor, config: ppo.PPOConfig, generator: torch.Generator,
                      clip_eps: float) -> None:
    """The library's update on the flattened rollout: :func:`rlteach.ppo.flatten_rollout` then
    :func:`rlteach.ppo.ppo_update` (the exercise's signature; the policy is updated in place)."""
    batch = ppo.flatten_rollout(rollout, adv, returns, config.normalize_adv)
    ppo.ppo_update(policy, optimizer, batch, config, generator, clip_eps)


def _update_observe(result: Any, args: tuple, kwargs: dict) -> dict[str, Tensor]:
    return state_of(args[0])


def _standardise(x: Tensor) -> Tensor:
    return torch.zeros_like(x) if x.numel() < 2 else (x - x.mean()) / (x.std() + 1e-8)


def _update_variant(policy: CategoricalActorCritic, optimizer: torch.optim.Optimizer, rollout: ppo.Rollout,
                    adv: Tensor, returns: Tensor, config: ppo.PPOConfig, generator: torch.Generator,
                    clip_eps: float, *, norm: str = "batch", use_valid: bool = True, shuffle: str = "each epoch",
                    stop: str = "before", clip_grad: bool = True, zero_grad: bool = True, clip_value: bool = True,
                    ent_sign: float = -1.0, eps_from_config: bool = False, inverted: bool = False) -> None:
    """The PPO update with one piece changed.

    ``norm``: standardise the advantages over the "batch", per "env" (over T), per "minibatch";
    ``shuffle``: "each epoch", "once" (one permutation for every epoch) or "never";
    ``stop``: KL early stopping "before" the step, "after" it, or ending only the "epoch".
    """
    eps = config.clip_eps if eps_from_config else clip_eps
    T, N = adv.shape
    mask = rollout.valid.reshape(-1) if use_valid else torch.ones(T * N, dtype=torch.bool, device=adv.device)
    flat_adv = adv
    if config.normalize_adv and norm == "env":
        flat_adv = (adv - adv.mean(0)) / (adv.std(0) + 1e-8)
    flat_adv = flat_adv.reshape(-1)[mask]
    if config.normalize_adv and norm == "batch":
        flat_adv = _standardise(flat_adv)
    data = (rollout.obs.reshape(T * N, -1)[mask], rollout.actions.reshape(-1)[mask], rollout.logp.reshape(-1)[mask],
            rollout.values.reshape(-1)[mask], flat_adv, returns.reshape(-1)[mask])
    size = flat_adv.shape[0]
    minibatch = -(-size // config.num_minibatches)
    params = list(policy.parameters())
    order = None
    if shuffle == "once" and minibatch < size:
        order = torch.randperm(size, generator=generator, device=generator.device).to(adv.device)
    stopped = False
    for _ in range(config.update_epochs):
        if shuffle == "each epoch" and minibatch < size:
            order = torch.randperm(size, generator=generator, device=generator.device).to(adv.device)
        for start in range(0, size, minibatch):
            index = order[start:start + minibatch] if order is not None else slice(start, start + minibatch)
            obs, actions, logp_old, values_old, mb_adv, mb_returns = (x[index] for x in data)
            if config.normalize_adv and norm == "minibatch":
                mb_adv = _standardise(mb_adv)
            dist = policy.dist(obs)
            logp = policy.logp(dist, actions)
            pi_loss, stats = _policy_loss_variant(logp, logp_old, mb_adv, eps, inverted=inverted)
            if stop == "before" and config.target_kl is not None and float(stats["approx_kl"]) > config.target_kl:
                stopped = True
                break
            if stop == "epoch" and config.target_kl is not None and float(stats["approx_kl"]) > config.target_kl:
                break
            v_clip = eps if (config.clip_value and clip_value) else None
            loss = pi_loss + config.vf_coef * _value_loss_variant(policy.value(obs), values_old, mb_returns, v_clip)
            if config.ent_coef > 0:
                loss = loss + ent_sign * config.ent_coef * policy.entropy(dist).mean()
            if zero_grad:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad and math.isfinite(config.max_grad_norm):
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            if stop == "after" and config.target_kl is not None and float(stats["approx_kl"]) > config.target_kl:
                stopped = True
                break
        if stopped:
            break


# ------------------------------------------------------------------ 4. PPO on CartPole

CARTPOLE: dict[str, Any] = {"num_envs": 8, "num_steps": 32, "hidden_sizes": (64, 64), "update_epochs": 20,
                            "vf_coef": 0.5}  # the settings the budget and the cut were measured with
EVAL_EPISODES = 8


class StepCounter(gym.vector.VectorWrapper):
    """Counts the vector steps taken (each is ``num_envs`` environment steps)."""

    def __init__(self, env: gym.vector.VectorEnv) -> None:
        super().__init__(env)
        self.vector_steps = 0

    def step(self, actions: Any) -> Any:
        self.vector_steps += 1
        return self.env.step(actions)


def _cartpole_case(name: str, seed: int, total_steps: int, min_return: float | None) -> Case:
    config = ppo.PPOConfig(total_steps=total_steps, anneal_clip_eps=False, **CARTPOLE)

    def make(device: torch.device) -> Arguments:
        envs = StepCounter(ppo.make_envs(config.env_id, config.num_envs))
        policy = CategoricalActorCritic(4, 2, config.hidden_sizes, generator=torch.Generator().manual_seed(seed))
        policy = policy.to(device)
        optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr, eps=config.adam_eps)
        return (envs, policy, optimizer, config, seed), {}
    return Case(name, make=make, info={"config": config, "seed": seed, "min_return": min_return})


def _cartpole_cases(seed: int, group: str) -> list[Case]:
    base = seed % 9973
    if group == "random":
        return [_cartpole_case(f"{6144:,} steps on CartPole-v1, seed {base + 1}", base + 1, 6144, 80.0)]
    return [_cartpole_case("a budget of a single rollout (256 steps)", base + 2, 256, None)]


def _cartpole_reference(envs: gym.vector.VectorEnv, policy: CategoricalActorCritic, optimizer: torch.optim.Optimizer,
                        config: ppo.PPOConfig, seed: int) -> None:
    """PPO with the library's pieces: the step size annealed linearly, ε constant."""
    generator = torch.Generator(device=next(policy.parameters()).device).manual_seed(seed)
    state = ppo.reset_ppo_envs(envs, config, seed, generator.device)
    for update in range(config.num_updates):
        optimizer.param_groups[0]["lr"] = ppo.linear_schedule(config.lr, update, config.num_updates)
        rollout, _ = ppo.collect_rollout(envs, policy, state, config.num_steps, generator)
        adv, returns = ppo.rollout_advantages(rollout, config.gamma, config.gae_lambda)
        _update_reference(policy, optimizer, rollout, adv, returns, config, generator, config.clip_eps)


def _cartpole_observe(result: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    envs, policy, optimizer = args[0], args[1], args[2]
    return {"state": state_of(policy), "vector_steps": int(envs.vector_steps),
            "lr": float(optimizer.param_groups[0]["lr"])}


def greedy_return(state: Mapping[str, Tensor], hidden_sizes: tuple[int, ...], seed: int,
                  episodes: int = EVAL_EPISODES) -> float:
    """Mean undiscounted return of the greedy policy (argmax of the logits) over ``episodes``
    CartPole-v1 episodes reset with ``seed`` (at most 500 steps each)."""
    policy = CategoricalActorCritic(4, 2, hidden_sizes, generator=torch.Generator().manual_seed(0))
    policy.load_state_dict({k: v.to("cpu", torch.float32) for k, v in state.items()})
    envs = gym.make_vec("CartPole-v1", num_envs=episodes, vectorization_mode="vector_entry_point")
    obs, _ = envs.reset(seed=seed)
    total, done = np.zeros(episodes), np.zeros(episodes, dtype=bool)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 500 tiny forward passes: a thread pool only adds latency (20× on a busy machine)
    try:
        with torch.no_grad():
            for _ in range(500):
                actions = policy.dist(torch.as_tensor(obs, dtype=torch.float32))[0].argmax(-1).numpy()
                obs, rewards, terminated, truncated, _ = envs.step(actions)
                total += np.where(done, 0.0, rewards)
                done |= terminated | truncated
                if done.all():
                    break
    finally:
        torch.set_num_threads(threads)
        envs.close()
    return float(total.mean())


def _cartpole_balances(observed: dict, case: Case) -> str | None:
    config = case.info["config"]
    result = observed["result"]
    untrained = CategoricalActorCritic(4, 2, config.hidden_sizes, generator=torch.Generator().manual_seed(case.info["seed"]))
    if all(torch.allclose(result["state"][name].to("cpu", value.dtype), value, rtol=0.0, atol=1e-6)
           for name, value in state_of(untrained).items()):  # to rounding (orthogonal init's QR varies with threads)
        return ("the policy's parameters did not change, so however long it balances the pole, it was not "
                "trained: your loop must train the policy it is given, in place")
    cut = case.info["min_return"]
    if cut is None:
        return None
    score = greedy_return(result["state"], config.hidden_sizes, 10_000 + case.info["seed"])
    if score >= cut:
        return None
    return (f"after {config.total_steps:,} steps the greedy policy balances the pole for {score:.1f} steps on "
            f"average over {EVAL_EPISODES} episodes; it should reach {cut:g} (an untrained one lasts about 10). "
            "Check the sign of your loss, that each update uses the rollout it collected, and your ppo_update")


def _cartpole_budget(observed: dict, case: Case) -> str | None:
    config = case.info["config"]
    steps = observed["result"]["vector_steps"] * config.num_envs
    expected = config.num_updates * config.batch_size
    if steps == expected:
        return None
    return (f"your loop took {steps:,} environment steps on the environments it was given; the budget is "
            f"config.num_updates = {config.num_updates} rollouts of N×T = {config.batch_size} steps "
            f"({expected:,} steps): collect one rollout per update with collect_rollout on `envs`")


def _cartpole_annealed(observed: dict, case: Case) -> str | None:
    config = case.info["config"]
    want = ppo.linear_schedule(config.lr, config.num_updates - 1, config.num_updates)
    got = observed["result"]["lr"]
    if math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-15):
        return None
    return (f"the optimizer's step size after the last update is {got:.6g}, expected {want:.6g}: the update "
            f"k = 0, …, U−1 must use lr = config.lr·(1 − k/U) (U = config.num_updates = {config.num_updates})")


SEALED_UPDATE = (ppo.policy_loss, ppo.clip_objective, ppo.value_loss, ppo.normalize_advantages, ppo.flatten_rollout,
                 ppo.ppo_update, ppo.train_ppo)

PARTS = (
    Part("ppo_policy_loss", ppo.policy_loss, _policy_loss_cases, GROUPS, (
        Mistake("min and max swapped: L^CLIP takes the smaller (pessimistic) of r·Â and clip(r)·Â; "
                "with max, a ratio far past the clip is rewarded instead of cut off.",
                lambda *a: _policy_loss_variant(*a, pick="max")),
        Mistake("clipped the advantage instead of the ratio: clip r_t to [1 − ε, 1 + ε], then multiply by Â_t.",
                lambda *a: _policy_loss_variant(*a, clip="adv")),
        Mistake("clipped the product r·Â instead of the ratio: clip r_t to [1 − ε, 1 + ε], then multiply by Â_t.",
                lambda *a: _policy_loss_variant(*a, clip="product")),
        Mistake("ratio inverted: r = π_θ/π_old, so log r = logp − logp_old.",
                lambda *a: _policy_loss_variant(*a, inverted=True)),
        Mistake("old log-probs not detached: π_old is the policy that collected the data, a constant. "
                "No gradient may flow into logp_old.", lambda *a: _policy_loss_variant(*a, detach_old=False)),
        Mistake("the advantages are not detached: Â is data, no gradient may flow into it.",
                lambda *a: _policy_loss_variant(*a, detach_adv=False)),
        Mistake("the sign: return the loss to minimise, −L^CLIP, not L^CLIP.",
                lambda *a: _policy_loss_variant(*a, sign=1.0)),
        Mistake("the min is missing: the clipped term alone has no gradient outside the clip even where the "
                "unclipped one is smaller (a move that made things worse would never be undone).",
                lambda *a: _policy_loss_variant(*a, pick="clipped")),
        Mistake("summed instead of averaged: the loss is the mean over the batch.",
                lambda *a: _policy_loss_variant(*a, reduce="sum")),
        Mistake("approx_kl is the naive estimate mean(−log r), which can be negative; use the one of exercise 03 "
                "that is unbiased and never negative.", lambda *a: _policy_loss_variant(*a, kl="k1")),
    ), seals=(ppo.clip_objective,), observe=_policy_loss_observe, grad=("logp", "logp_old", "adv"), loss=_loss_of),
    Part("ppo_value_loss", ppo.value_loss, _value_loss_cases, GROUPS, (
        Mistake("min and max swapped: take the larger (pessimistic) of the unclipped and the clipped squared "
                "errors, so that moving V more than ε from V_old never lowers the loss.",
                lambda *a: _value_loss_variant(*a, pick="min")),
        Mistake("the max is missing: with the clipped error alone, a value that moved more than ε gets no "
                "gradient even when it moved the wrong way.", lambda *a: _value_loss_variant(*a, pick="clipped")),
        Mistake("clipped around the returns: the value may move at most ε from V_old (clip V − V_old), the "
                "error to the return is not clipped.", lambda *a: _value_loss_variant(*a, around="returns")),
        Mistake("missing ½: L^V = ½·mean of the squared error.", lambda *a: _value_loss_variant(*a, half=1.0)),
        Mistake("old values not detached: V_old was recorded at collection time, a constant.",
                lambda *a: _value_loss_variant(*a, detach_old=False)),
        Mistake("the returns are not detached: R̂ is the target, data.",
                lambda *a: _value_loss_variant(*a, detach_returns=False)),
    ), grad=("values", "values_old", "returns")),
    Part("ppo_update", _update_reference, _update_cases, GROUPS, (
        Mistake("normalized advantages over the wrong axis: standardise over every valid sample of the rollout "
                "(the flattened batch), not per environment.", lambda *a: _update_variant(*a, norm="env")),
        Mistake("normalized advantages per minibatch: standardise once, over every valid sample of the rollout, "
                "before cutting it into minibatches.", lambda *a: _update_variant(*a, norm="minibatch")),
        Mistake("invalid samples used: leave out the autoreset steps (rollout.valid False) from the batch, from "
                "the advantages' statistics and from every loss.", lambda *a: _update_variant(*a, use_valid=False)),
        Mistake("one permutation for every epoch: draw a fresh torch.randperm(B, generator=generator) at the "
                "start of each epoch.", lambda *a: _update_variant(*a, shuffle="once")),
        Mistake("minibatches not shuffled: each epoch cuts a fresh permutation of the batch into minibatches.",
                lambda *a: _update_variant(*a, shuffle="never")),
        Mistake("KL early stopping after the step: check the approximate KL of the minibatch before the step "
                "and stop without taking it.", lambda *a: _update_variant(*a, stop="after")),
        Mistake("KL early stopping ends only the epoch: once the approximate KL exceeds target_kl, the whole "
                "update stops.", lambda *a: _update_variant(*a, stop="epoch")),
        Mistake("gradient norm not clipped: scale the gradients so that their global norm is at most "
                "max_grad_norm before each step.", lambda *a: _update_variant(*a, clip_grad=False)),
        Mistake("gradients not zeroed: call optimizer.zero_grad() before each backward pass, or the gradients of "
                "earlier minibatches add up.", lambda *a: _update_variant(*a, zero_grad=False)),
        Mistake("value loss not clipped: with config.clip_value, clip the value's change to ±ε (your "
                "value_loss with clip_eps).", lambda *a: _update_variant(*a, clip_value=False)),
        Mistake("entropy bonus with the wrong sign: the bonus rewards entropy, so minimise loss − c_e·H.",
                lambda *a: _update_variant(*a, ent_sign=1.0)),
        Mistake("used config.clip_eps: the update's ε is the argument clip_eps (the caller anneals it).",
                lambda *a: _update_variant(*a, eps_from_config=True)),
        Mistake("ratio inverted: r = π_θ/π_old, so log r = logp − logp_old.",
                lambda *a: _update_variant(*a, inverted=True)),
    ), seals=SEALED_UPDATE, observe=_update_observe, time_limit=30.0, rtol=1e-5, atol=1e-8),
    Part("ppo_cartpole", _cartpole_reference, _cartpole_cases, GROUPS,
         seals=(_update_reference, *SEALED_UPDATE), observe=_cartpole_observe,
         properties=(Property("balances the pole", _cartpole_balances, 3.0),
                     Property("step budget", _cartpole_budget, 1.0),
                     Property("annealed step size", _cartpole_annealed, 1.0)),
         time_limit=60.0),
)
