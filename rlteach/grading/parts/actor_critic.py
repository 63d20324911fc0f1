"""Graded parts of the actor-critic exercise (04).

A warm-up (the A2C loss, graded on its value and on the gradients it lets through) and five
parts that build something whole: GAE over N environments with terminations and truncations,
n-step bootstrapped targets, one step of the one-step actor-critic with its discount I, a replay
buffer (graded on how it behaves: it keeps the newest transitions, intact, and samples them
uniformly from a generator), and the one-step actor-critic loop itself, graded on what it
learns on the short corridor within an episode budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from rlteach import actor_critic as ac
from rlteach import advantages as adv_ref
from rlteach import buffers
from rlteach.grading.spec import Arguments, Case, Mistake, Part, Property

GROUPS = ("random", "edge")
F64 = torch.float64


# ----------------------------------------------------------------- rollouts of (T, N)


def _ends(g: torch.Generator, T: int, N: int, p_term: float, p_trunc: float) -> tuple[Tensor, Tensor]:
    u = torch.rand((T, N), generator=g, dtype=F64)
    terminated = u < p_term
    truncated = (u >= p_term) & (u < p_term + p_trunc)
    return terminated, truncated


def _rollout(g: torch.Generator, T: int, N: int, p_term: float = 0.1, p_trunc: float = 0.08,
             dtype: torch.dtype = F64) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(rewards, values, next_values, terminated, truncated), consistent inside episodes.

    ``next_values[t] = values[t+1]`` inside an episode; at a truncation it is the value of the
    true final observation (a number of its own), at a termination anything (it must be ignored).
    """
    rewards = torch.randn((T, N), generator=g, dtype=F64)
    values = 2.0 * torch.randn((T, N), generator=g, dtype=F64)
    final = 2.0 * torch.randn((T, N), generator=g, dtype=F64)  # V of the observation after the last row
    terminated, truncated = _ends(g, T, N, p_term, p_trunc)
    next_values = torch.cat([values[1:], final[-1:]], dim=0)
    ended = terminated | truncated
    next_values = torch.where(ended, final, next_values)  # a truncation's own final value; junk at a termination
    return rewards.to(dtype), values.to(dtype), next_values.to(dtype), terminated, truncated


def _gae_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        return [Case("T = 16, N = 4, gamma = 0.99, gae_lambda = 0.95", (*_rollout(g, 16, 4), 0.99, 0.95)),
                Case("T = 32, N = 8, gamma = 0.9, gae_lambda = 0.7", (*_rollout(g, 32, 8), 0.9, 0.7)),
                Case("T = 10, N = 3, many episode ends, gamma = 0.8, gae_lambda = 0.5",
                     (*_rollout(g, 10, 3, 0.25, 0.25), 0.8, 0.5))]
    r, v, nv, term, trunc = _rollout(g, 12, 3)
    trunc_only = torch.zeros_like(term)
    trunc_only[[3, 7, 11], :] = True
    both = term.clone()
    both[5, :] = True
    trunc_both = trunc.clone()
    trunc_both[5, :] = True
    return [Case("gae_lambda = 0 (the TD error)", (r, v, nv, term, trunc, 0.95, 0.0)),
            Case("gae_lambda = 1 (Monte-Carlo advantage)", (r, v, nv, term, trunc, 0.95, 1.0)),
            Case("gamma = 0.7, gae_lambda = 0.9 (not symmetric in gamma and lambda)", (r, v, nv, term, trunc, 0.7, 0.9)),
            Case("only truncations, no terminations", (r, v, nv, torch.zeros_like(term), trunc_only, 0.9, 0.9)),
            Case("terminated and truncated at the same step", (r, v, nv, both, trunc_both, 0.9, 0.8)),
            Case("T = 1", (*_rollout(g, 1, 5, 0.3, 0.3), 0.9, 0.9)),
            Case("float32", (*_rollout(g, 20, 4, dtype=torch.float32), 0.99, 0.95))]


def _gae_variant(rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor, truncated: Tensor,
                 gamma: float, gae_lambda: float, *, trunc_is_term: bool = False, bootstrap_terminal: bool = False,
                 cut_at: str = "both", use_lambda: bool = True) -> Tensor:
    """GAE with one piece changed (for the known mistakes)."""
    term = terminated | truncated if trunc_is_term else terminated
    not_terminal = torch.ones_like(rewards) if bootstrap_terminal else 1.0 - term.to(rewards.dtype)
    ends = {"both": terminated | truncated, "terminated": terminated, "none": torch.zeros_like(terminated)}[cut_at]
    not_end = 1.0 - ends.to(rewards.dtype)
    deltas = rewards + gamma * not_terminal * next_values - values
    out = torch.zeros_like(deltas)
    running = torch.zeros_like(deltas[0])
    decay = gamma * gae_lambda if use_lambda else gamma
    for t in reversed(range(deltas.shape[0])):
        running = deltas[t] + decay * not_end[t] * running
        out[t] = running
    return out


# ----------------------------------------------------------------- n-step targets


def _td_n_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def targets_args(T: int, N: int, gamma: float, n: int, p_term: float = 0.1, p_trunc: float = 0.08,
                     dtype: torch.dtype = F64) -> tuple:
        r, _, nv, term, trunc = _rollout(g, T, N, p_term, p_trunc, dtype)
        return r, nv, term, trunc, gamma, n

    if group == "random":
        return [Case("T = 16, N = 4, n = 3, gamma = 0.99", targets_args(16, 4, 0.99, 3)),
                Case("T = 24, N = 6, n = 5, gamma = 0.9", targets_args(24, 6, 0.9, 5)),
                Case("T = 12, N = 3, n = 4, many episode ends", targets_args(12, 3, 0.8, 4, 0.2, 0.2))]
    r, _, nv, term, trunc = _rollout(g, 10, 3, 0.15, 0.15)
    quiet = torch.zeros_like(term)
    return [Case("n = 1 (r + gamma V(s'))", (r, nv, term, trunc, 0.9, 1)),
            Case("n = T (Monte-Carlo returns, bootstrapped at the cuts)", (r, nv, term, trunc, 0.9, 10)),
            Case("n larger than T", (r, nv, term, trunc, 0.9, 25)),
            Case("no episode ends: every window reaching the rollout's end bootstraps there",
                 (r, nv, quiet, quiet.clone(), 0.95, 4)),
            Case("only truncations", (r, nv, quiet, trunc | term, 0.95, 3)),
            Case("gamma = 0", (r, nv, term, trunc, 0.0, 3)),
            Case("float32", targets_args(14, 4, 0.99, 3, dtype=torch.float32))]


def _td_n_variant(rewards: Tensor, next_values: Tensor, terminated: Tensor, truncated: Tensor, gamma: float, n: int,
                  *, trunc_is_term: bool = False, bootstrap_terminal: bool = False, cut: bool = True,
                  bootstrap_rollout_end: bool = True, power_offset: int = 0) -> Tensor:
    """n-step targets by the definition, one window at a time, with one piece changed (for the mistakes)."""
    T, N = rewards.shape
    out = torch.zeros_like(rewards)
    for i in range(N):
        for t in range(T):
            total = rewards.new_zeros(())
            k = 0
            while True:
                s = t + k
                total = total + gamma**k * rewards[s, i]
                term = bool(terminated[s, i]) or (trunc_is_term and bool(truncated[s, i]))
                ended = cut and (bool(terminated[s, i]) or bool(truncated[s, i]))
                window_full = k == n - 1
                at_end = s == T - 1
                if ended or window_full or at_end:
                    bootstrap = (not term or bootstrap_terminal) and (bootstrap_rollout_end or not at_end or ended
                                                                     or window_full)
                    if bootstrap:
                        total = total + gamma ** (k + 1 - power_offset) * next_values[s, i]
                    break
                k += 1
            out[t, i] = total
    return out


# ------------------------------------------------------ one step of one-step actor-critic


def _update_args(g: torch.Generator, K: int = 3, d_pi: int = 4, d_v: int = 5, *, terminated: bool = False,
                 discount: float | None = None, gamma: float = 0.9, alphas: tuple[float, float] = (0.1, 0.2),
                 reward: float | None = None, dtype: torch.dtype = F64) -> tuple:
    theta = torch.randn(d_pi, generator=g, dtype=F64).to(dtype)
    w = torch.randn(d_v, generator=g, dtype=F64).to(dtype)
    x_pi = torch.randn((K, d_pi), generator=g, dtype=F64).to(dtype)
    x_v = torch.randn(d_v, generator=g, dtype=F64).to(dtype)
    x_next = torch.randn(d_v, generator=g, dtype=F64).to(dtype)
    action = int(torch.randint(K, (), generator=g))
    r = float(torch.randn((), generator=g, dtype=F64)) if reward is None else reward
    current = 0.3 + 0.7 * float(torch.rand((), generator=g, dtype=F64)) if discount is None else discount  # I
    return theta, w, x_pi, action, x_v, x_next, r, terminated, current, gamma, *alphas


def _update_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        return [Case("3 actions, d' = 4, d = 5, mid-episode (I < 1)", _update_args(g)),
                Case("2 actions, d' = 6, d = 3, gamma = 0.95", _update_args(g, 2, 6, 3, gamma=0.95)),
                Case("5 actions, d' = 8, d = 8, a terminal next state", _update_args(g, 5, 8, 8, terminated=True))]
    theta, w, x_pi, action, x_v, x_next, _, _, _, gamma, a_t, a_w = _update_args(g)
    still = float(gamma * (w @ x_next) - w @ x_v)  # a reward that makes δ = 0
    return [Case("the first step of an episode (I = 1)", _update_args(g, discount=1.0)),
            Case("a terminal next state, late in an episode (I = 0.4)", _update_args(g, terminated=True, discount=0.4)),
            Case("gamma = 0", _update_args(g, gamma=0.0)),
            Case("zero step sizes", _update_args(g, alphas=(0.0, 0.0))),
            Case("δ = 0: nothing moves, I still decays",
                 (theta, w, x_pi, action, x_v, x_next, -still, False, 0.7, gamma, a_t, a_w)),
            Case("one-hot critic features and large logits",
                 (5.0 * theta, w, x_pi, action, torch.eye(5, dtype=F64)[1], torch.eye(5, dtype=F64)[3], 1.0, False,
                  0.8, 0.9, 0.1, 0.2)),
            Case("float32", _update_args(g, dtype=torch.float32))]


def _update_reference(theta: Tensor, w: Tensor, policy_features: Tensor, action: int, value_features: Tensor,
                      next_value_features: Tensor, reward: float, terminated: bool, discount: float, gamma: float,
                      alpha_theta: float, alpha_w: float) -> tuple[Tensor, Tensor, float]:
    """The library's step of fig. 13.3, as (θ, w, I) (the exercise's signature)."""
    step = ac.one_step_actor_critic_update(theta, w, policy_features, action, value_features, next_value_features,
                                           reward, terminated, discount, gamma, alpha_theta, alpha_w)
    return step.theta, step.w, step.discount


def _update_observe(result: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    theta, w, discount = result
    return {"theta": theta, "w": w, "I": float(discount)}


def _update_variant(theta: Tensor, w: Tensor, x_pi: Tensor, action: int, x_v: Tensor, x_next: Tensor, reward: float,
                    terminated: bool, discount: float, gamma: float, alpha_theta: float, alpha_w: float, *,
                    decay: bool = True, use_I: bool = True, bootstrap_terminal: bool = False, centred: bool = True,
                    fresh_delta: bool = False, decay_first: bool = False) -> tuple[Tensor, Tensor, float]:
    """One step of fig. 13.3 with one piece changed (for the known mistakes)."""
    scale = gamma * discount if decay_first else (discount if use_I else 1.0)  # the I this step uses
    v_next = w @ x_next if (bootstrap_terminal or not terminated) else torch.zeros_like(w @ x_v)
    delta = reward + gamma * v_next - w @ x_v
    new_w = w + alpha_w * scale * delta * x_v
    if fresh_delta:
        v_next_new = new_w @ x_next if not terminated else torch.zeros_like(delta)
        delta = reward + gamma * v_next_new - new_w @ x_v
    probs = torch.softmax(x_pi @ theta, dim=-1)
    score = x_pi[action] - probs @ x_pi if centred else x_pi[action]
    new_theta = theta + alpha_theta * scale * delta * score
    return new_theta, new_w, gamma * discount if decay else discount


# ------------------------------------------------------------------- the A2C loss


def _a2c_batch(g: torch.Generator, B: int, K: int, *, scale: float = 1.0, zero_adv: bool = False,
               dtype: torch.dtype = F64) -> tuple[Tensor, ...]:
    logits = scale * torch.randn((B, K), generator=g, dtype=F64)
    actions = torch.randint(K, (B,), generator=g)
    values = torch.randn(B, generator=g, dtype=F64)
    adv = torch.zeros(B, dtype=F64) if zero_adv else torch.randn(B, generator=g, dtype=F64)
    returns = values + torch.randn(B, generator=g, dtype=F64)
    return logits.to(dtype), actions, values.to(dtype), adv.to(dtype), returns.to(dtype)


def _a2c_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        return [Case("64 samples, 2 actions, vf_coef = 0.5, ent_coef = 0.01", (*_a2c_batch(g, 64, 2), 0.5, 0.01)),
                Case("32 samples, 4 actions, vf_coef = 1, ent_coef = 0.05", (*_a2c_batch(g, 32, 4), 1.0, 0.05)),
                Case("128 samples, 3 actions, no entropy bonus", (*_a2c_batch(g, 128, 3), 0.25, 0.0))]
    return [Case("zero advantages", (*_a2c_batch(g, 16, 3, zero_adv=True), 0.5, 0.01)),
            Case("a single sample", (*_a2c_batch(g, 1, 4), 0.5, 0.01)),
            Case("vf_coef = 0", (*_a2c_batch(g, 16, 3), 0.0, 0.01)),
            Case("logits hundreds apart (a softmax then log underflows to −inf)",
                 (*_a2c_batch(g, 24, 3, scale=400.0), 0.5, 0.01)),
            Case("float32", (*_a2c_batch(g, 20, 2, dtype=torch.float32), 0.5, 0.02))]


def _a2c_reference(logits: Tensor, actions: Tensor, values: Tensor, adv: Tensor, returns: Tensor, vf_coef: float,
                   ent_coef: float) -> Tensor:
    """The library's A2C loss, without its diagnostics (the exercise's signature)."""
    return ac.a2c_loss(logits, actions, values, adv, returns, vf_coef, ent_coef)[0]


def _a2c_variant(logits: Tensor, actions: Tensor, values: Tensor, adv: Tensor, returns: Tensor, vf_coef: float,
                 ent_coef: float, *, detach_adv: bool = True, detach_returns: bool = True, ent_sign: float = -1.0,
                 half: float = 0.5, reduce: str = "mean", pg_sign: float = -1.0) -> Tensor:
    """The A2C loss with one piece changed (for the known mistakes)."""
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    a = adv.detach() if detach_adv else adv
    target = returns.detach() if detach_returns else returns
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    agg = torch.mean if reduce == "mean" else torch.sum
    return (pg_sign * agg(a * logp) + vf_coef * half * agg((values - target) ** 2) + ent_sign * ent_coef * agg(entropy))


# ------------------------------------------------------------------ the replay buffer

REPLAY_BATCH = 8  # the batch size the grader asks for (fewer when fewer transitions are stored)
REPLAY_DRAWS = 300  # batches drawn at the last checkpoint to judge uniformity
FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated", "truncated", "logp_behavior")


def transition(i: int, obs_dim: int) -> dict[str, Any]:
    """The i-th transition the grader adds: every field encodes i, so a sampled row says which it is."""
    obs = torch.tensor([float(i)] + [0.5 * i + j for j in range(1, obs_dim)], dtype=F64)
    return {"obs": obs, "action": i % 3, "reward": 0.25 * i - 1.0, "next_obs": obs + 1000.0,
            "terminated": i % 5 == 4, "truncated": i % 7 == 6 and i % 5 != 4, "logp_behavior": -0.01 * (i + 1)}


def _checkpoints(capacity: int) -> list[int]:
    total = 2 * capacity + 3
    return sorted({1, max(1, capacity // 2), capacity, capacity + 1, total})


def _read_batch(batch: Any) -> dict[str, Tensor]:
    """A sampled batch as a dict of detached CPU tensors (from a dict or an object with attributes)."""
    out = {}
    for name in FIELDS:
        value = batch[name] if isinstance(batch, Mapping) else getattr(batch, name)
        out[name] = torch.as_tensor(value).detach().cpu()
    return out


def _replay_observe(buffer: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Drive a replay buffer: add 2·capacity + 3 transitions one by one, record its length after
    each, and sample at checkpoints (from seeded generators, twice from the same seed)."""
    capacity, obs_dim = args[0], args[1]
    lengths: list[int] = []
    samples: dict[int, dict[str, Any]] = {}
    checkpoints = _checkpoints(capacity)
    for i in range(checkpoints[-1]):
        t = transition(i, obs_dim)
        buffer.add(t["obs"], t["action"], t["reward"], t["next_obs"], t["terminated"], t["truncated"],
                   t["logp_behavior"])
        lengths.append(len(buffer))
        added = i + 1
        if added in checkpoints:
            size = min(REPLAY_BATCH, added, capacity)
            draws = REPLAY_DRAWS if added == checkpoints[-1] else 20
            batches = [_read_batch(buffer.sample(size, torch.Generator().manual_seed(1000 + k))) for k in range(draws)]
            again = _read_batch(buffer.sample(size, torch.Generator().manual_seed(1000)))
            samples[added] = {"size": size, "batches": batches, "again": again}
    return {"lengths": lengths, "samples": samples}


def _replay_reference(capacity: int, obs_dim: int) -> buffers.ReplayBuffer:
    """The library's ring buffer with the exercise's constructor."""
    return buffers.ReplayBuffer(capacity, (obs_dim,), obs_dtype=F64, dtype=F64)


def _replay_cases(seed: int, group: str) -> list[Case]:
    if group == "random":
        return [Case("capacity 10, 3-D observations", (10, 3), info={"capacity": 10}),
                Case("capacity 25, 4-D observations", (25, 4), info={"capacity": 25}),
                Case("capacity 7, 2-D observations", (7, 2), info={"capacity": 7})]
    return [Case("capacity 1", (1, 2), info={"capacity": 1}),
            Case("capacity 2, 1-D observations", (2, 1), info={"capacity": 2}),
            Case("capacity 8: a batch of 8 takes every stored transition", (8, 3), info={"capacity": 8})]


def _replay_lengths(observed: dict, case: Case) -> str | None:
    capacity = case.info["capacity"]
    for k, length in enumerate(observed["result"]["lengths"], start=1):
        if length != min(k, capacity):
            return (f"len(buffer) is {length} after {k} transitions were added to a buffer of capacity {capacity}; "
                    f"expected {min(k, capacity)} (it grows by one per add until it is full, then stays at capacity)")
    return None


def _ids(batch: dict[str, Tensor]) -> list[int]:
    return [round(float(x)) for x in batch["obs"].reshape(batch["obs"].shape[0], -1)[:, 0]]


def _replay_newest(observed: dict, case: Case) -> str | None:
    capacity = case.info["capacity"]
    for added, sample in observed["result"]["samples"].items():
        oldest = added - min(added, capacity)
        for batch in sample["batches"]:
            for i in _ids(batch):
                if not oldest <= i < added:
                    if i < oldest:
                        return (f"after {added} transitions were added to a buffer of capacity {capacity}, a sample "
                                f"returned transition {i}, which should have been overwritten: the buffer does not "
                                "overwrite the oldest transition (the ring's write position must advance and wrap)")
                    return (f"after {added} transitions were added, a sample returned a row that was never added "
                            f"(observation {i}): sample only from the filled slots")
    return None


def _replay_intact(observed: dict, case: Case) -> str | None:
    for added, sample in observed["result"]["samples"].items():
        for batch in sample["batches"][:5]:
            size = sample["size"]
            for name in FIELDS:
                shape = tuple(batch[name].shape)
                if not shape or shape[0] != size:
                    return f"field {name!r} of a batch of {size} has shape {shape}; its first dimension must be {size}"
            for name in ("terminated", "truncated"):
                if batch[name].dtype != torch.bool:
                    return f"field {name!r} has dtype {batch[name].dtype}; flags are torch.bool"
            for row, i in enumerate(_ids(batch)):
                t = transition(i, batch["obs"].shape[-1])
                got = {name: batch[name][row] for name in FIELDS}
                want = {"obs": t["obs"], "actions": t["action"], "rewards": t["reward"], "next_obs": t["next_obs"],
                        "terminated": t["terminated"], "truncated": t["truncated"],
                        "logp_behavior": t["logp_behavior"]}
                for name in FIELDS:
                    g_val = got[name].to(F64)
                    w_val = torch.as_tensor(want[name], dtype=F64)
                    if g_val.shape != w_val.shape or not torch.allclose(g_val, w_val, rtol=1e-5, atol=1e-5):
                        return (f"after {added} adds, a sampled row mixes transitions: its obs is transition {i}'s, "
                                f"but its {name!r} is {g_val.tolist()}, expected {w_val.tolist()}")
    return None


def _replay_uniform(observed: dict, case: Case) -> str | None:
    capacity = case.info["capacity"]
    samples = observed["result"]["samples"]
    for sample in samples.values():
        first, again = _ids(sample["batches"][0]), _ids(sample["again"])
        if first != again:
            return ("two samples from generators with the same seed differ: draw the indices from the generator "
                    "you are given (and from nothing else)")
        if len(set(first)) != len(first):
            return f"a batch of {sample['size']} contains the same transition twice: sample without replacement"
    last = max(samples)
    stored = min(last, capacity)
    size = samples[last]["size"]
    if stored > size and all(_ids(b) == _ids(samples[last]["batches"][0]) for b in samples[last]["batches"]):
        return "every generator gives the same batch: draw the indices from the generator you are given"
    counts: dict[int, int] = {}
    for batch in samples[last]["batches"]:
        for i in _ids(batch):
            counts[i] = counts.get(i, 0) + 1
    expected = REPLAY_DRAWS * size / stored
    for i in range(last - stored, last):
        count = counts.get(i, 0)
        if abs(count - expected) > 6.0 * math.sqrt(expected) + 1:
            return (f"over {REPLAY_DRAWS} batches of {size} from the {stored} stored transitions, transition {i} was "
                    f"drawn {count} times where a uniform sample gives {expected:.0f} ± {math.sqrt(expected):.0f}")
    return None


# ------------------------------------------------------------ one-step actor-critic, learning

CORRIDOR_THETA0 = (0.0, math.log(9.0))  # π(right) = 0.1
CORRIDOR_ALPHAS = (2**-7, 2**-3)  # α^θ, α^w


def _corridor_case(name: str, seed: int, num_episodes: int, *, gamma: float = 1.0, max_episode_steps: int = 1000,
                   min_value: float | None, critic_tol: float | None = 5.0) -> Case:
    def make(device: torch.device) -> Arguments:
        theta0 = torch.tensor(CORRIDOR_THETA0, dtype=F64, device=device)
        return (ac.ShortCorridor(max_episode_steps=max_episode_steps), ac.corridor_policy_features,
                ac.corridor_value_features, theta0, torch.zeros(3, dtype=F64, device=device), num_episodes, gamma,
                *CORRIDOR_ALPHAS, torch.Generator(device=device).manual_seed(seed)), {}
    return Case(name, make=make, info={"num_episodes": num_episodes, "gamma": gamma, "min_value": min_value,
                                       "max_episode_steps": max_episode_steps, "critic_tol": critic_tol})


def _corridor_cases(seed: int, group: str) -> list[Case]:
    optimum = ac.CORRIDOR_OPTIMAL_VALUE  # −(6 + 4√2) ≈ −11.66; from π(right) = 0.1, J = −42.2
    if group == "random":
        return [_corridor_case(f"200 episodes from π(right) = 0.1, generator seed {seed % 997 + k}", seed % 997 + k, 200,
                               min_value=optimum - 0.5) for k in range(2)]
    return [_corridor_case("400 episodes truncated after 6 steps (S' is not terminal there: bootstrap from it)",
                           seed % 997 + 5, 400, max_episode_steps=6, min_value=optimum - 1.5, critic_tol=5.0),
            _corridor_case("gamma = 0.9 (its best J is −6.045; π(right) = 0.1 has −8.85)", seed % 997 + 6, 300,
                           gamma=0.9, min_value=-6.2, critic_tol=2.0),
            _corridor_case("a single episode", seed % 997 + 7, 1, min_value=None, critic_tol=None)]


def _corridor_reference(env: Any, policy_features: Callable[[int], Tensor], value_features: Callable[[int], Tensor],
                        theta: Tensor, w: Tensor, num_episodes: int, gamma: float, alpha_theta: float, alpha_w: float,
                        generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """The library's loop of fig. 13.3, as (θ, w, episode_returns)."""
    result = ac.one_step_actor_critic(env, policy_features, value_features, theta, w, num_episodes, gamma,
                                      alpha_theta, alpha_w, generator)
    return result.theta, result.w, result.episode_returns


def _corridor_observe(result: Any, args: tuple, kwargs: dict) -> dict[str, Tensor]:
    theta, w, returns = result[0], result[1], result[2]
    return {"theta": torch.as_tensor(theta).detach().to("cpu", F64).reshape(-1),
            "w": torch.as_tensor(w).detach().to("cpu", F64).reshape(-1),
            "episode_returns": torch.as_tensor(returns).detach().to("cpu", F64).reshape(-1)}


def _corridor_p(observed: dict) -> float:
    theta = observed["result"]["theta"]
    if theta.shape != (2,) or not bool(torch.isfinite(theta).all()):
        raise ValueError(f"θ must be a finite tensor of shape (2,), got {theta.tolist()}")
    return ac.corridor_p_right(theta)


def _corridor_learns(observed: dict, case: Case) -> str | None:
    threshold = case.info["min_value"]
    p = _corridor_p(observed)
    if threshold is None:
        return None
    value = ac.corridor_value(p, case.info["gamma"])
    if value >= threshold:
        return None
    return (f"after {case.info['num_episodes']} episodes π(right) = {p:.3f}, whose exact value J = {value:.2f} is below "
            f"the {threshold:.2f} that one-step actor-critic reaches (the best p is 2 − √2 ≈ 0.586). Check the sign "
            "of δ, the score ∇ln π, and that I restarts at 1 each episode")


def _corridor_critic(observed: dict, case: Case) -> str | None:
    tol = case.info["critic_tol"]
    if tol is None:
        return None
    p = _corridor_p(observed)
    w = observed["result"]["w"]
    if w.shape != (3,):
        return f"w must have shape (3,), got {tuple(w.shape)}"
    value = ac.corridor_value(p, case.info["gamma"])
    if abs(float(w[0]) - value) <= tol:
        return None
    hint = (" A critic this close to 0 under a time limit looks like truncation treated as termination: after a "
            "truncation S' is not terminal, so δ bootstraps from v̂(S')." if case.info["max_episode_steps"] < 100
            and float(w[0]) > value else "")
    return (f"the critic's v̂(s₀) = {float(w[0]):.2f} is far from the final policy's exact value {value:.2f} "
            f"(allowed: ±{tol:g}); the critic moves by α^w·I·δ·x(S).{hint}")


def _corridor_record(observed: dict, case: Case) -> str | None:
    returns = observed["result"]["episode_returns"]
    n, limit = case.info["num_episodes"], case.info["max_episode_steps"]
    if returns.shape != (n,):
        return f"episode_returns has {returns.numel()} entries for {n} episodes"
    if bool((returns != returns.round()).any()) or bool((returns > -1).any()):
        return "every corridor step pays −1, so each episode's return is a negative whole number"
    if bool((returns < -limit).any()):
        return (f"an episode returned {float(returns.min()):g} although episodes are truncated after {limit} steps: "
                "end the episode when the environment reports truncated")
    return None


PARTS = (
    Part("gae", adv_ref.gae, _gae_cases, GROUPS, (
        Mistake("truncation treated as termination: a time limit is not a terminal state, so δ at a truncated step "
                "bootstraps from V(s') (next_values holds the value of the true final observation).",
                lambda *a: _gae_variant(*a, trunc_is_term=True)),
        Mistake("you bootstrapped through a terminal state: where terminated, V(s') is 0, so δ = r − V(s).",
                lambda *a: _gae_variant(*a, bootstrap_terminal=True)),
        Mistake("your advantage runs across an episode's end into the next episode: the recursion "
                "Â_t = δ_t + γλ Â_{t+1} must stop at every termination and every truncation.",
                lambda *a: _gae_variant(*a, cut_at="none")),
        Mistake("your advantage runs across a truncation into the next episode: after a time limit, step t+1 "
                "belongs to a new episode (the truncated step bootstraps in δ instead).",
                lambda *a: _gae_variant(*a, cut_at="terminated")),
        Mistake("γ and λ swapped: δ_t discounts V(s_{t+1}) by γ, not by λ.",
                lambda r, v, nv, te, tr, gamma, lam: _gae_variant(r, v, nv, te, tr, lam, gamma)),
        Mistake("λ is missing: the recursion decays by γλ, not by γ.",
                lambda *a: _gae_variant(*a, use_lambda=False)),
    ), seals=(adv_ref.td_errors, adv_ref.td_n_advantages, adv_ref.td_n_targets, adv_ref.discounted_returns,
              buffers.RolloutBuffer.compute_advantages)),
    Part("td_n_targets", adv_ref.td_n_targets, _td_n_cases, GROUPS, (
        Mistake("truncation treated as termination: a window that ends at a time limit bootstraps from V(s') of the "
                "final observation.", lambda *a: _td_n_variant(*a, trunc_is_term=True)),
        Mistake("you bootstrapped through a terminal state: a window that ends at a termination adds no γ^m V.",
                lambda *a: _td_n_variant(*a, bootstrap_terminal=True)),
        Mistake("your window runs past the end of its episode: it must stop at the episode's termination or "
                "truncation (the next rows belong to a new episode).", lambda *a: _td_n_variant(*a, cut=False)),
        Mistake("a window cut by the rollout's end must bootstrap there: add γ^m V(s_{t+m}) from next_values[T-1].",
                lambda *a: _td_n_variant(*a, bootstrap_rollout_end=False)),
        Mistake("the bootstrap's discount is off by one: after m rewards it is γ^m, not γ^(m−1).",
                lambda *a: _td_n_variant(*a, power_offset=1)),
    ), seals=(adv_ref.td_n_advantages, adv_ref.discounted_returns, adv_ref.gae, adv_ref.reward_to_go)),
    Part("one_step_ac_update", _update_reference, _update_cases, GROUPS, (
        Mistake("I not decayed: return γI as the next step's I, so that the t-th step of an episode is scaled by γ^t.",
                lambda *a: _update_variant(*a, decay=False)),
        Mistake("I is not applied: both updates are scaled by I (the current one, before it decays).",
                lambda *a: _update_variant(*a, use_I=False)),
        Mistake("you decayed I before using it: this step is scaled by the current I; γI is for the next step.",
                lambda *a: _update_variant(*a, decay_first=True)),
        Mistake("you bootstrapped through a terminal state: if S' is terminal, v̂(S', w) = 0.",
                lambda *a: _update_variant(*a, bootstrap_terminal=True)),
        Mistake("the score of a softmax policy is x(s, a) − Σ_b π(b|s) x(s, b): you left out the expected features.",
                lambda *a: _update_variant(*a, centred=False)),
        Mistake("δ was recomputed with the updated critic for the actor: both updates use the δ of the parameters "
                "before the step.", lambda *a: _update_variant(*a, fresh_delta=True)),
    ), seals=(ac.one_step_actor_critic_update, ac.softmax_eligibility, ac.one_step_actor_critic),
        observe=_update_observe),
    Part("a2c_loss", _a2c_reference, _a2c_cases, GROUPS, (
        Mistake("the advantages were not detached: they are data, so no gradient may flow into them (or, through "
                "them, into the critic).", lambda *a: _a2c_variant(*a, detach_adv=False)),
        Mistake("the returns were not detached: the critic regresses on fixed targets and must not chase them.",
                lambda *a: _a2c_variant(*a, detach_returns=False)),
        Mistake("entropy sign: the bonus rewards entropy, so the loss subtracts ent_coef·H.",
                lambda *a: _a2c_variant(*a, ent_sign=1.0)),
        Mistake("missing ½ in the value loss: ½·mean((V − R̂)²).", lambda *a: _a2c_variant(*a, half=1.0)),
        Mistake("sum instead of mean over the batch.", lambda *a: _a2c_variant(*a, reduce="sum")),
        Mistake("policy-loss sign flipped: minimizing −mean(Â log π) is gradient ascent on the objective.",
                lambda *a: _a2c_variant(*a, pg_sign=1.0)),
    ), seals=(ac.a2c_loss,), observe=None, grad=("logits", "values", "adv", "returns")),
    Part("replay_buffer", _replay_reference, _replay_cases, GROUPS,
         seals=(buffers.ReplayBuffer.__init__, buffers.ReplayBuffer.add, buffers.ReplayBuffer.add_batch,
                buffers.ReplayBuffer._write, buffers.ReplayBuffer.sample, buffers.ReplayBuffer._convert),
         observe=_replay_observe,
         properties=(Property("length", _replay_lengths, 1.0), Property("keeps the newest", _replay_newest, 2.0),
                     Property("intact transitions", _replay_intact, 1.0),
                     Property("uniform, from the generator", _replay_uniform, 1.0)),
         time_limit=20.0),
    Part("one_step_actor_critic", _corridor_reference, _corridor_cases, GROUPS,
         seals=(ac.one_step_actor_critic, ac.one_step_actor_critic_update, ac.softmax_eligibility),
         observe=_corridor_observe,
         properties=(Property("learns", _corridor_learns, 2.0), Property("critic", _corridor_critic, 1.0),
                     Property("episode record", _corridor_record, 1.0)),
         time_limit=30.0),
)
