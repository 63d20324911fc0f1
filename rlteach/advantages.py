r"""Returns and advantage estimates, from REINFORCE's reward-to-go to GAE(λ).

The lecture's policy-gradient weightings, and the function that computes each one:

==========================================================  =============================
weighting of :math:`\nabla\ln\pi(a_t|s_t)`                  function
==========================================================  =============================
:math:`\sum_{k\ge0}\gamma^k r_{t+k}` (REINFORCE)            :func:`reward_to_go`
the same, bootstrapped at time limits and rollout end       :func:`discounted_returns`
:math:`r_t + \gamma V(s_{t+1}) - V(s_t)` (TD error)         :func:`td_errors`
:math:`\sum_{k<n}\gamma^k r_{t+k} + \gamma^n V(s_{t+n})`    :func:`td_n_targets`
the same minus :math:`V(s_t)` (TD(n), A2C)                  :func:`td_n_advantages`
:math:`(1-\lambda)\sum_n \lambda^{n-1}\hat A^{(n)}_t`       :func:`gae`
==========================================================  =============================

Conventions
-----------
- **Layout.** Time-major, shape ``(T, N)``: T steps of N parallel environments. Row t
  holds the step taken in state s_t: ``rewards[t]`` = r_t, ``values[t]`` = V(s_t),
  ``next_values[t]`` = V(s_{t+1}).
- **Episode ends** follow gymnasium and stay apart. ``terminated[t]``: s_{t+1} is terminal,
  its value is 0 and nothing is bootstrapped. ``truncated[t]``: a time limit stopped the
  episode; s_{t+1} is the true final observation (not the reset one) and
  ``next_values[t]`` = V(s_{t+1}) is bootstrapped (Pardo et al. 2018, "Time Limits in
  Reinforcement Learning"). Where both are set, termination wins. Either way no sum runs
  past an end: step t+1 belongs to a new episode.
- **Rollout end.** The last row bootstraps from ``next_values[T-1]`` unless it ended.
- **Consistency.** Inside an episode ``next_values[t]`` should equal ``values[t+1]``
  (the same state). The functions do not check it; the identities between estimators
  (GAE as a mixture of TD(n), GAE(λ=1) as return − value) rely on it.
- **Arrays.** Tensors, numpy arrays or lists; ``terminated`` and ``truncated`` must be
  booleans. Outputs lie on the inputs' device, in their (promoted) floating dtype, and
  keep their autograd graph: call under ``torch.no_grad()`` when the values come from a
  critic that should not learn through its own targets.

A small Markov decision process solved exactly (:func:`random_walk`,
:func:`policy_values`, :func:`sample_rollouts`, :func:`bias_variance`) measures the bias
and variance of every estimator against the true advantage.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from rlteach._validate import (
    as_tensor,
    bool_mask,
    check_finite,
    positive_int,
    same_device,
    same_shape,
    unit_interval,
)

_MASKS = ("terminated", "truncated")


def _rollout(**named: object) -> dict[str, Tensor]:
    """Validated ``(T, N)`` tensors: floats, and booleans for ``terminated``/``truncated``."""
    out = {name: bool_mask(name, x) if name in _MASKS else as_tensor(name, x) for name, x in named.items()}
    same_shape(**out)
    same_device(**out)
    name, first = next(iter(out.items()))
    if first.ndim != 2:
        raise ValueError(f"{name}: expected time-major shape (T, N), got {tuple(first.shape)}")
    for name, t in out.items():
        if name not in _MASKS:
            check_finite(t, name)
    return out


def _gamma(gamma: object) -> float:
    return unit_interval("gamma", gamma, "a discount")


def td_errors(rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor, gamma: float) -> Tensor:
    r"""One-step temporal-difference errors, the "TD(1)" weighting of the lecture.

    (The lecture's TD(1) is the one-step error, not TD(λ) with λ = 1.)

    .. math:: \delta_t = r_t + \gamma\,(1-\mathrm{term}_t)\,V(s_{t+1}) - V(s_t)

    A truncated step bootstraps like any other (``next_values[t]`` is the value of the
    final observation), so ``truncated`` is not needed. Sutton & Barto 2018, eq. 6.5 and
    fig. 13.3 (one-step actor-critic).

    Parameters
    ----------
    rewards, values, next_values : Tensor, shape (T, N)
        r_t, V(s_t), V(s_{t+1}).
    terminated : Tensor of bool, shape (T, N)
    gamma : float
        Discount in [0, 1].

    Returns
    -------
    Tensor, shape (T, N)
    """
    x = _rollout(rewards=rewards, values=values, next_values=next_values, terminated=terminated)
    gamma = _gamma(gamma)
    not_terminal = 1.0 - x["terminated"].to(x["rewards"].dtype)
    return x["rewards"] + gamma * not_terminal * x["next_values"] - x["values"]  # δ_t


def reward_to_go(rewards: Tensor, terminated: Tensor, truncated: Tensor, gamma: float) -> Tensor:
    r"""Discounted reward-to-go inside each episode, without bootstrapping (REINFORCE).

    .. math:: G_t = \sum_{k=0}^{e_t - t} \gamma^k r_{t+k}

    where :math:`e_t` is the last step of t's episode inside the rollout (its
    termination, its truncation, or T-1). Exact for episodes that terminate inside the
    rollout; an episode cut by a time limit or by the rollout's end simply loses its
    future rewards (use :func:`discounted_returns` to bootstrap them). Williams 1992;
    Sutton & Barto 2018, sec. 13.3.

    Parameters
    ----------
    rewards : Tensor, shape (T, N)
    terminated, truncated : Tensor of bool, shape (T, N)
    gamma : float

    Returns
    -------
    Tensor, shape (T, N)
    """
    x = _rollout(rewards=rewards, terminated=terminated, truncated=truncated)
    gamma = _gamma(gamma)
    rewards = x["rewards"]
    not_end = 1.0 - (x["terminated"] | x["truncated"]).to(rewards.dtype)
    returns = torch.zeros_like(rewards)
    running = rewards.new_zeros(rewards.shape[1])
    for t in reversed(range(rewards.shape[0])):
        running = rewards[t] + gamma * not_end[t] * running  # G_t = r_t + γ G_{t+1}, 0 past an end
        returns[t] = running
    return returns


def discounted_returns(rewards: Tensor, next_values: Tensor, terminated: Tensor, truncated: Tensor,
                       gamma: float) -> Tensor:
    r"""Discounted returns per episode, bootstrapped where the episode was cut short.

    .. math:: G_t = r_t + \gamma\,(1-\mathrm{term}_t)
              \begin{cases} V(s_{t+1}) & \text{truncated at } t \text{ or } t = T-1 \\
                            G_{t+1} & \text{otherwise} \end{cases}

    The Monte-Carlo target of the critic: ``discounted_returns - values`` is the
    Monte-Carlo advantage, which equals ``gae(..., gae_lambda=1)``. A terminated step
    bootstraps nothing; a truncated step and the rollout's last step bootstrap from
    ``next_values``. Sutton & Barto 2018, sec. 3.3; Mnih et al. 2016 (A3C) use the same
    return cut at the rollout's end.

    Parameters
    ----------
    rewards, next_values : Tensor, shape (T, N)
        r_t and V(s_{t+1}); ``next_values`` is read only where a bootstrap happens.
    terminated, truncated : Tensor of bool, shape (T, N)
    gamma : float

    Returns
    -------
    Tensor, shape (T, N)
    """
    x = _rollout(rewards=rewards, next_values=next_values, terminated=terminated, truncated=truncated)
    gamma = _gamma(gamma)
    rewards, next_values, truncated = x["rewards"], x["next_values"], x["truncated"]
    not_terminal = 1.0 - x["terminated"].to(rewards.dtype)
    returns = torch.zeros_like(rewards + next_values)
    if rewards.shape[0] == 0:
        return returns
    running = next_values[-1]
    for t in reversed(range(rewards.shape[0])):
        following = torch.where(truncated[t], next_values[t], running)  # V(s_{t+1}) at a time limit, else G_{t+1}
        running = rewards[t] + gamma * not_terminal[t] * following  # G_t = r_t + γ (1 − term_t) · following
        returns[t] = running
    return returns


def td_n_targets(rewards: Tensor, next_values: Tensor, terminated: Tensor, truncated: Tensor,
                 gamma: float, n: int) -> Tensor:
    r"""n-step bootstrapped returns (TD(n) targets), cut at episode ends and rollout end.

    .. math:: G^{(n)}_t = \sum_{k=0}^{m-1} \gamma^k r_{t+k}
              + \gamma^m\,(1-\mathrm{term}_{t+m-1})\, V(s_{t+m}),
              \qquad m = \min(n,\ e_t - t + 1)

    where :math:`e_t` is the last step of t's episode inside the rollout (termination,
    truncation or T-1): the window shrinks to the steps that remain, so any n ≥ T gives
    :func:`discounted_returns`, and n = 1 gives :math:`r_t + \gamma V(s_{t+1})`.
    :math:`V(s_{t+m})` is ``next_values[t+m-1]``. Sutton & Barto 2018, eq. 7.1;
    Mnih et al. 2016 (A3C) use these targets with n = T - t (the rollout's rest).

    Parameters
    ----------
    rewards, next_values : Tensor, shape (T, N)
    terminated, truncated : Tensor of bool, shape (T, N)
    gamma : float
    n : int
        Steps before bootstrapping, ≥ 1.

    Returns
    -------
    Tensor, shape (T, N)
    """
    x = _rollout(rewards=rewards, next_values=next_values, terminated=terminated, truncated=truncated)
    gamma, n = _gamma(gamma), positive_int("n", n)
    rewards, next_values, terminated, truncated = x["rewards"], x["next_values"], x["terminated"], x["truncated"]
    dtype = (rewards + next_values).dtype
    T = rewards.shape[0]
    targets = torch.zeros_like(rewards, dtype=dtype)
    still_open = torch.ones_like(targets)  # 1 while the episode begun at t has not ended before step t+k
    for k in range(min(n, T)):
        rows = T - k  # the starts t whose step t+k lies inside the rollout
        window_ends = truncated[k:].clone()  # the window ends at a time limit,
        if k == n - 1:
            window_ends[:] = True  # at its n-th step,
        window_ends[-1] = True  # or at the rollout's last step
        bootstrap = (window_ends & ~terminated[k:]).to(dtype)
        open_k = still_open[:rows]
        targets[:rows] += open_k * gamma**k * rewards[k:]  # + γ^k r_{t+k}
        targets[:rows] += open_k * bootstrap * gamma ** (k + 1) * next_values[k:]  # + γ^{k+1} V(s_{t+k+1}) at the cut
        still_open[:rows] = open_k * (1.0 - (terminated[k:] | truncated[k:]).to(dtype))
    return targets


def td_n_advantages(rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor, truncated: Tensor,
                    gamma: float, n: int) -> Tensor:
    r"""n-step advantage estimates, the TD(n) weighting of the lecture.

    .. math:: \hat A^{(n)}_t = G^{(n)}_t - V(s_t)
              = \sum_{k=0}^{m-1}\gamma^k r_{t+k} + \gamma^m V(s_{t+m}) - V(s_t)

    with the window m of :func:`td_n_targets`. n = 1 gives the TD error; n ≥ T the
    Monte-Carlo advantage. Larger n: less bias from a wrong V, more variance from the
    extra rewards. Mnih et al. 2016, "Asynchronous Methods for Deep RL" (A2C/A3C).

    Parameters
    ----------
    rewards, values, next_values : Tensor, shape (T, N)
    terminated, truncated : Tensor of bool, shape (T, N)
    gamma : float
    n : int
        ≥ 1.

    Returns
    -------
    Tensor, shape (T, N)
    """
    values = _rollout(values=values, rewards=rewards)["values"]
    return td_n_targets(rewards, next_values, terminated, truncated, gamma, n) - values  # G^(n)_t − V(s_t)


def gae(rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor, truncated: Tensor,
        gamma: float, gae_lambda: float) -> Tensor:
    r"""Generalized advantage estimates GAE(γ, λ), the TD(λ) weighting of the lecture.

    .. math:: \delta_t = r_t + \gamma (1-\mathrm{term}_t) V(s_{t+1}) - V(s_t),\quad
              \hat A_t = \delta_t + \gamma\lambda (1-\mathrm{end}_t) \hat A_{t+1},
              \quad \hat A_T = 0

    with :math:`\mathrm{end}_t = \mathrm{term}_t \lor \mathrm{trunc}_t`. Equivalently
    :math:`\hat A_t = (1-\lambda)\sum_{n\ge1}\lambda^{n-1}\hat A^{(n)}_t`, where the
    weight of every n past the episode's (or rollout's) end, :math:`\lambda^{m-1}` in
    all, goes to the longest available window m.

    ``gae_lambda=0`` gives the TD error; ``gae_lambda=1`` the Monte-Carlo advantage
    (``discounted_returns - values``). ``next_values[t]`` is V(s_{t+1}); at a truncated
    step it is the value of the true final observation, not of the reset one.
    Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized
    Advantage Estimation".

    Parameters
    ----------
    rewards, values, next_values : Tensor, shape (T, N)
    terminated, truncated : Tensor of bool, shape (T, N)
    gamma, gae_lambda : float
        Both in [0, 1].

    Returns
    -------
    Tensor, shape (T, N)
        ``adv``; ``adv + values`` is the λ-return, the critic's target.
    """
    x = _rollout(rewards=rewards, values=values, next_values=next_values, terminated=terminated, truncated=truncated)
    gamma, gae_lambda = _gamma(gamma), unit_interval("gae_lambda", gae_lambda, "a trace-decay λ")
    rewards, values, next_values = x["rewards"], x["values"], x["next_values"]
    not_terminal = 1.0 - x["terminated"].to(rewards.dtype)
    not_end = 1.0 - (x["terminated"] | x["truncated"]).to(rewards.dtype)
    deltas = rewards + gamma * not_terminal * next_values - values  # δ_t
    adv = torch.zeros_like(deltas)
    running = deltas.new_zeros(deltas.shape[1])
    for t in reversed(range(deltas.shape[0])):
        running = deltas[t] + gamma * gae_lambda * not_end[t] * running  # Â_t = δ_t + γλ Â_{t+1}
        adv[t] = running
    return adv


# ---------------------------------------------------------------------------------------
# A small MDP solved exactly: the true V, Q and advantage to measure estimators against.
# ---------------------------------------------------------------------------------------


class TabularMDP(NamedTuple):
    """A finite episodic MDP with deterministic rewards; the missing transition mass ends the episode."""

    transitions: Tensor  # (S, A, S) P(s'|s, a) over the non-terminal states; 1 − Σ_s' P = P(terminate | s, a)
    rewards: Tensor  # (S, A) r(s, a)
    start: Tensor  # (S,) initial-state distribution


class ExactValues(NamedTuple):
    """The true values of a policy, from the Bellman equations (see :func:`policy_values`)."""

    values: Tensor  # (S,) V^π(s)
    q_values: Tensor  # (S, A) Q^π(s, a)
    adv: Tensor  # (S, A) A^π(s, a) = Q^π(s, a) − V^π(s)


class TabularRollout(NamedTuple):
    """N parallel rollouts of T steps in a :class:`TabularMDP`, time-major (T, N)."""

    states: Tensor  # (T, N) int64 s_t
    actions: Tensor  # (T, N) int64 a_t
    rewards: Tensor  # (T, N) float64 r_t
    next_states: Tensor  # (T, N) int64 s_{t+1} before any reset: the final state at a truncation, S at a termination
    terminated: Tensor  # (T, N) bool
    truncated: Tensor  # (T, N) bool, time limit reached (and not terminated)
    logp: Tensor  # (T, N) float64 log π(a_t|s_t)


class BiasVariance(NamedTuple):
    """Bias and variance of an advantage estimator against the true advantage (see :func:`bias_variance`)."""

    bias: float  # RMS of the action-centred bias, the part that biases the policy gradient
    raw_bias: float  # RMS of E[Â | s, a] − A(s, a), baseline error included
    variance: float  # mean of Var[Â | s, a]


def random_walk(num_states: int = 5, reward_left: float = -1.0, reward_right: float = 1.0,
                step_reward: float = 0.0, start_state: int | None = None) -> TabularMDP:
    """The random walk of Sutton & Barto 2018 (examples 6.2 and 7.1) with two actions.

    States 0 … S-1 in a row; action 0 moves left, action 1 right. Stepping off the left
    end ends the episode with ``reward_left``, off the right end with ``reward_right``;
    every other step pays ``step_reward``. Episodes start in ``start_state``, or
    uniformly at random when it is None (every state is then visited often).
    With reward_left=0, reward_right=1, γ = 1 and a uniform policy, V(s) = (s+1)/(S+1).

    Returns
    -------
    TabularMDP
        float64 tables on the CPU.
    """
    num_states = positive_int("num_states", num_states)
    transitions = torch.zeros((num_states, 2, num_states), dtype=torch.float64)
    rewards = torch.full((num_states, 2), float(step_reward), dtype=torch.float64)
    for s in range(num_states):
        if s > 0:
            transitions[s, 0, s - 1] = 1.0
        if s < num_states - 1:
            transitions[s, 1, s + 1] = 1.0
    rewards[0, 0] = float(reward_left)
    rewards[num_states - 1, 1] = float(reward_right)
    if start_state is None:
        start = torch.full((num_states,), 1.0 / num_states, dtype=torch.float64)
    elif not 0 <= start_state < num_states:
        raise ValueError(f"start_state={start_state}: the states are 0 … {num_states - 1}")
    else:
        start = torch.zeros(num_states, dtype=torch.float64)
        start[start_state] = 1.0
    return TabularMDP(transitions, rewards, start)


def _policy(mdp: TabularMDP, policy: Tensor) -> Tensor:
    S, A = mdp.rewards.shape
    policy = as_tensor("policy", policy).to(torch.float64)
    if tuple(policy.shape) != (S, A):
        raise ValueError(f"policy: expected shape (S, A) = {(S, A)}, got {tuple(policy.shape)}")
    if bool((policy < 0).any()) or not torch.allclose(policy.sum(-1), torch.ones(S, dtype=torch.float64)):
        raise ValueError("policy: each row must be a probability distribution over actions")
    return policy


def policy_values(mdp: TabularMDP, policy: Tensor, gamma: float) -> ExactValues:
    r"""The true V, Q and advantage of a policy, by solving the Bellman equations.

    .. math:: V = (I - \gamma P_\pi)^{-1} r_\pi,\qquad
              Q(s,a) = r(s,a) + \gamma \sum_{s'} P(s'|s,a)\, V(s'),\qquad A = Q - V

    with :math:`P_\pi(s'|s) = \sum_a \pi(a|s) P(s'|s,a)`, :math:`r_\pi(s) = \sum_a
    \pi(a|s) r(s,a)`, and V = 0 at the terminal state. Sutton & Barto 2018, eq. 3.14.

    Parameters
    ----------
    mdp : TabularMDP
    policy : Tensor, shape (S, A)
        π(a|s); rows sum to one.
    gamma : float
        In [0, 1]; γ = 1 needs a policy that ends every episode.

    Returns
    -------
    ExactValues
        float64 on the CPU.
    """
    gamma = _gamma(gamma)
    policy = _policy(mdp, policy)
    S = policy.shape[0]
    p_pi = torch.einsum("sa,sat->st", policy, mdp.transitions)  # P_π(s'|s)
    r_pi = (policy * mdp.rewards).sum(-1)  # r_π(s)
    system = torch.eye(S, dtype=torch.float64) - gamma * p_pi
    if torch.linalg.matrix_rank(system) < S:
        raise ValueError("I − γP_π is singular: with γ = 1 some episodes never end under this policy")
    values = torch.linalg.solve(system, r_pi)  # V = (I − γP_π)⁻¹ r_π
    q_values = mdp.rewards + gamma * torch.einsum("sat,t->sa", mdp.transitions, values)  # Q = r + γ P V
    return ExactValues(values, q_values, q_values - values[:, None])  # A = Q − V


def sample_rollouts(mdp: TabularMDP, policy: Tensor, num_steps: int, num_envs: int,
                    max_episode_steps: int | None, generator: torch.Generator) -> TabularRollout:
    """Seeded rollouts of ``policy`` in ``mdp``, in the ``(T, N)`` layout of this module.

    Each of the N environments starts a fresh episode at t = 0 and, like a gymnasium
    vector environment, resets itself as soon as an episode ends: ``states[t+1]`` is then
    a new start state while ``next_states[t]`` keeps the episode's last state. An
    episode reaching ``max_episode_steps`` steps without terminating is truncated
    (None: never). Draws come only from ``generator`` (a CPU generator).

    Parameters
    ----------
    mdp : TabularMDP
    policy : Tensor, shape (S, A)
    num_steps, num_envs : int
        T and N, both ≥ 1.
    max_episode_steps : int or None
    generator : torch.Generator

    Returns
    -------
    TabularRollout
    """
    policy = _policy(mdp, policy)
    T, N = positive_int("num_steps", num_steps), positive_int("num_envs", num_envs)
    if max_episode_steps is not None:
        positive_int("max_episode_steps", max_episode_steps)
    S = policy.shape[0]
    limit = T + 1 if max_episode_steps is None else max_episode_steps
    exits = (1.0 - mdp.transitions.sum(-1)).clamp(min=0.0)  # P(terminate | s, a)
    outcomes = torch.cat([mdp.transitions, exits[..., None]], dim=-1)  # (S, A, S+1); index S is "terminal"
    rollout = {name: torch.zeros((T, N), dtype=torch.int64) for name in ("states", "actions", "next_states")}
    rewards = torch.zeros((T, N), dtype=torch.float64)
    terminated = torch.zeros((T, N), dtype=torch.bool)
    truncated = torch.zeros((T, N), dtype=torch.bool)
    state = torch.multinomial(mdp.start, N, replacement=True, generator=generator)
    elapsed = torch.zeros(N, dtype=torch.int64)
    for t in range(T):
        action = torch.multinomial(policy[state], 1, generator=generator).squeeze(-1)
        next_state = torch.multinomial(outcomes[state, action], 1, generator=generator).squeeze(-1)
        elapsed += 1
        terminated[t] = next_state == S
        truncated[t] = ~terminated[t] & (elapsed >= limit)
        rollout["states"][t], rollout["actions"][t], rollout["next_states"][t] = state, action, next_state
        rewards[t] = mdp.rewards[state, action]
        ended = terminated[t] | truncated[t]
        fresh = torch.multinomial(mdp.start, N, replacement=True, generator=generator)
        state = torch.where(ended, fresh, next_state)
        elapsed = torch.where(ended, 0, elapsed)
    logp = policy.log()[rollout["states"], rollout["actions"]]
    return TabularRollout(rollout["states"], rollout["actions"], rewards, rollout["next_states"],
                          terminated, truncated, logp)


def rollout_values(rollout: TabularRollout, state_values: Tensor) -> tuple[Tensor, Tensor]:
    """``values`` and ``next_values`` of a rollout under a table of state values.

    Parameters
    ----------
    rollout : TabularRollout
    state_values : Tensor, shape (S,)
        Any V̂ (the true one, zero, a perturbed one); the terminal state gets 0.

    Returns
    -------
    values, next_values : Tensor, shape (T, N)
        V̂(s_t) and V̂(s_{t+1}), in ``state_values``' dtype.
    """
    state_values = as_tensor("state_values", state_values)
    if state_values.ndim != 1:
        raise ValueError(f"state_values: expected shape (S,), got {tuple(state_values.shape)}")
    with_terminal = torch.cat([state_values, state_values.new_zeros(1)])  # V̂(terminal) = 0
    return state_values[rollout.states], with_terminal[rollout.next_states]


def bias_variance(adv: Tensor, rollout: TabularRollout, exact: ExactValues, policy: Tensor) -> BiasVariance:
    r"""Bias and variance of advantage estimates against the true advantage, per (s, a).

    Grouping the estimates by the state-action pair they were made at,

    .. math:: b(s,a) = \mathbb E[\hat A_t \mid s_t=s, a_t=a] - A^\pi(s,a),\qquad
              \bar b(s,a) = b(s,a) - \sum_{a'} \pi(a'|s)\, b(s,a')

    ``raw_bias`` is the RMS of b and ``bias`` the RMS of the action-centred
    :math:`\bar b`, both weighted by how often each pair was visited; ``variance`` is the
    visit-weighted mean of :math:`\mathrm{Var}[\hat A_t \mid s, a]`. An error of the
    baseline, :math:`V(s_t) - \hat V(s_t)`, is in b for every n and λ, but since
    :math:`\mathbb E_{a\sim\pi}[\nabla\ln\pi(a|s)]\,c(s) = 0` it does not bias the policy
    gradient; :math:`\bar b` is the part that does, the one that vanishes for
    γ-just estimators (Schulman et al. 2016, sec. 3). Means are sample means: the squared
    biases include the sampling variance of each mean, Var/visits.

    Parameters
    ----------
    adv : Tensor, shape (T, N)
        Estimates made on ``rollout``.
    rollout : TabularRollout
    exact : ExactValues
        From :func:`policy_values` for the policy that made the rollout.
    policy : Tensor, shape (S, A)

    Returns
    -------
    BiasVariance

    Raises
    ------
    ValueError
        When a visited state has an action of positive probability seen fewer than twice.
    """
    adv = as_tensor("adv", adv).detach().to("cpu", torch.float64)
    same_shape(adv=adv, states=rollout.states)
    S, A = exact.adv.shape
    policy = as_tensor("policy", policy).to(torch.float64)
    pair = (rollout.states * A + rollout.actions).flatten()
    visits = torch.bincount(pair, minlength=S * A).to(torch.float64).reshape(S, A)
    total = torch.bincount(pair, weights=adv.flatten(), minlength=S * A).reshape(S, A)
    total_sq = torch.bincount(pair, weights=adv.flatten() ** 2, minlength=S * A).reshape(S, A)
    visited = visits.sum(-1) > 0
    if bool((visited[:, None] & (policy > 0) & (visits < 2)).any()):
        raise ValueError("a visited state has an action seen fewer than twice: sample more steps")
    safe = visits.clamp(min=2)
    mean = total / safe  # E[Â | s, a]
    variance = (total_sq - safe * mean**2) / (safe - 1)  # unbiased Var[Â | s, a]
    bias = torch.where(visits > 0, mean - exact.adv, 0.0)  # b(s, a)
    centred = bias - (policy * bias).sum(-1, keepdim=True)  # b̄(s, a) = b − Σ_a' π b
    weight = torch.where(visits > 0, visits, 0.0) / visits.sum()
    return BiasVariance(
        bias=float((weight * centred**2).sum().sqrt()),
        raw_bias=float((weight * bias**2).sum().sqrt()),
        variance=float((weight * variance).sum()),
    )
