r"""Actor-critic: one-step actor-critic, A2C on vector environments, and off-policy actor-critic.

An actor :math:`\pi_\theta(a|s)` and a critic :math:`\hat v_w(s)` learn side by side: the
critic's TD error weights the actor's :math:`\nabla\ln\pi`.

=============================================  ==========================================
learner                                        functions
=============================================  ==========================================
one-step actor-critic (S&B fig. 13.3)          :func:`one_step_actor_critic_update`,
                                               :func:`one_step_actor_critic`
A2C: N environments × T steps, GAE, one        :func:`collect_rollout`, :func:`a2c_loss`,
gradient step per rollout (Mnih et al. 2016)   :func:`a2c_update`, :func:`train_a2c`
off-policy actor-critic from a replay buffer,  :func:`off_policy_ac_losses`,
truncated ratios :math:`\min(\pi/\beta, c)`    :func:`off_policy_actor_critic`
=============================================  ==========================================

**The short corridor** (Sutton & Barto 2018, example 13.1) is the small task whose optimum
is known: three states and a goal, reward −1 per step, and in the middle state the two
actions are switched. The actor sees the same features in every state, so the best it can
do is a stochastic policy: with p = π(right),

.. math:: J(p) = v_\pi(s_0) = -\frac{2(2-p)}{p(1-p)},\qquad
          p^* = 2-\sqrt2 \approx 0.586,\qquad J(p^*) = -(6+4\sqrt2) \approx -11.66 .

:class:`ShortCorridor` steps it, :func:`short_corridor_mdp` and :func:`corridor_value`
solve it exactly (through :func:`rlteach.advantages.policy_values`).

Conventions
-----------
- **Logits, not distributions.** Policies output logits; :func:`categorical_logp`,
  :func:`categorical_entropy` and :func:`sample_actions` work from ``log_softmax``, with
  draws from a local ``torch.Generator`` (no ``torch.distributions`` object per step).
- **Episode ends** follow gymnasium (see :mod:`rlteach.advantages`): a terminated step
  bootstraps nothing, a truncated step bootstraps from the value of its true final
  observation. Gymnasium 1.x vector environments reset a finished sub-environment in one
  of two ways, read from ``envs.metadata["autoreset_mode"]`` (:func:`step_envs`):

  * ``SAME_STEP`` (``SyncVectorEnv(..., autoreset_mode=SAME_STEP)``): ``step`` returns the
    reset observation, and the final one in ``info["final_obs"]`` (where
    ``info["_final_obs"]``);
  * ``NEXT_STEP`` (the default, and the only mode of the native ``CartPoleVectorEnv``):
    ``step`` returns the final observation; the *next* ``step`` ignores its action, resets
    and returns reward 0 and no end flags. That step is no transition: it is marked
    invalid, left out of every loss and of the step count.
- **Devices.** CPU by default; every function puts what it creates on its inputs' device
  (or on the ``device`` argument of a training loop). Callers choose a device, for
  instance with :func:`rlteach.device.default_device`; nothing here reads ``RLTEACH_DEVICE``.
- **Randomness** comes from a seed or a ``torch.Generator`` passed in; nothing seeds or
  draws from the global generators (networks are initialised with a local one).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import Tensor, nn
from tqdm.auto import tqdm

from rlteach._validate import positive_int, positive_number, unit_interval
from rlteach.advantages import TabularMDP, policy_values
from rlteach.buffers import ReplayBuffer, RolloutBuffer
from rlteach.importance import truncated_ratio

# ---------------------------------------------------------------------------------------
# Categorical policies from logits
# ---------------------------------------------------------------------------------------


def categorical_logp(logits: Tensor, actions: Tensor) -> Tensor:
    r"""Log-probabilities :math:`\log\pi(a|s)` of the actions taken, from logits.

    .. math:: \log\pi(a|s) = z_a - \log\sum_b e^{z_b}

    Parameters
    ----------
    logits : Tensor, shape (..., K)
    actions : Tensor of int64, shape (...)

    Returns
    -------
    Tensor, shape (...)
    """
    return torch.log_softmax(logits, dim=-1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: Tensor) -> Tensor:
    r"""Entropy :math:`H(\pi(\cdot|s)) = -\sum_a \pi(a|s)\log\pi(a|s)` from logits.

    An action of probability 0 (a logit of ``-inf``) contributes 0.

    Parameters
    ----------
    logits : Tensor, shape (..., K)

    Returns
    -------
    Tensor, shape (...)
    """
    logp = torch.log_softmax(logits, dim=-1)
    probs = logp.exp()
    return -torch.where(probs > 0, probs * logp, torch.zeros_like(logp)).sum(-1)  # −Σ π log π


def sample_actions(logits: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """One action per row of ``logits``, drawn from ``generator``, and its log-probability.

    Parameters
    ----------
    logits : Tensor, shape (B, K)
    generator : torch.Generator
        On ``logits``' device.

    Returns
    -------
    actions : Tensor of int64, shape (B,)
    logp : Tensor, shape (B,)
        log π(a|s) of the drawn actions.
    """
    logp_all = torch.log_softmax(logits, dim=-1)
    actions = torch.multinomial(logp_all.exp(), 1, generator=generator)  # a ~ π(·|s)
    return actions.squeeze(-1), logp_all.gather(-1, actions).squeeze(-1)


def explained_variance(values: Tensor, returns: Tensor) -> Tensor:
    r"""How much of the returns' variance the critic explains.

    .. math:: \mathrm{EV} = 1 - \frac{\mathrm{Var}[\hat R - V]}{\mathrm{Var}[\hat R]}

    1: perfect prediction; 0: no better than a constant; negative: worse than a
    constant. NaN when the returns have no variance (or fewer than two samples).

    Parameters
    ----------
    values, returns : Tensor, shape (B,)

    Returns
    -------
    Tensor, shape ()
    """
    values, returns = values.detach(), returns.detach()
    if returns.numel() < 2:
        return returns.new_tensor(float("nan"))
    var_returns = returns.var()
    if var_returns == 0:
        return returns.new_tensor(float("nan"))
    return 1.0 - (returns - values).var() / var_returns  # 1 − Var[R − V] / Var[R]


# ---------------------------------------------------------------------------------------
# The short corridor with switched actions (Sutton & Barto 2018, example 13.1)
# ---------------------------------------------------------------------------------------

LEFT, RIGHT = 0, 1
_CORRIDOR_NEXT = ((0, 1), (2, 0), (1, 3))  # next state after (left, right) in states 0, 1, 2; 3 is the goal
CORRIDOR_OPTIMAL_P_RIGHT = 2.0 - math.sqrt(2.0)  # p* = 2 − √2
CORRIDOR_OPTIMAL_VALUE = -(6.0 + 4.0 * math.sqrt(2.0))  # J(p*) = −(6 + 4√2)


class ShortCorridor:
    """The short corridor with switched actions, Sutton & Barto 2018, example 13.1.

    States 0, 1, 2 and the goal G: ``0 ⇄ 1 ⇄ 2 → G``. Every step pays −1. In states 0
    and 2 the actions do what they say (left from 0 bumps into the wall and stays); in
    state 1 they are switched (right goes back to 0, left goes on to 2). Episodes start
    in state 0 and terminate on reaching G; with ``max_episode_steps`` they are truncated
    after that many steps. Deterministic: all randomness is in the policy.

    The methods follow gymnasium's shape without its spaces: ``reset() -> state`` and
    ``step(action) -> (state, reward, terminated, truncated)``.
    """

    num_states: int = 3
    num_actions: int = 2

    def __init__(self, max_episode_steps: int | None = None) -> None:
        self.max_episode_steps = None if max_episode_steps is None else positive_int("max_episode_steps", max_episode_steps)
        self.state = 0
        self.elapsed = 0

    def reset(self) -> int:
        """Start an episode in state 0."""
        self.state, self.elapsed = 0, 0
        return self.state

    def step(self, action: int) -> tuple[int, float, bool, bool]:
        """Take ``action`` (0 = left, 1 = right): the next state, −1, terminated, truncated.

        At termination the returned state is 3 (the goal, whose value is 0).
        """
        if action not in (LEFT, RIGHT):
            raise ValueError(f"action={action!r}: the corridor has actions 0 (left) and 1 (right)")
        if self.state == 3:
            raise RuntimeError("the episode has terminated; call reset() first")
        self.state = _CORRIDOR_NEXT[self.state][action]
        self.elapsed += 1
        terminated = self.state == 3
        truncated = not terminated and self.max_episode_steps is not None and self.elapsed >= self.max_episode_steps
        return self.state, -1.0, terminated, truncated


def short_corridor_mdp() -> TabularMDP:
    """The short corridor as a :class:`rlteach.advantages.TabularMDP` (float64, CPU).

    The missing transition mass of (state 2, right) is the termination at the goal.
    """
    transitions = torch.zeros((3, 2, 3), dtype=torch.float64)
    for s, successors in enumerate(_CORRIDOR_NEXT):
        for a, s_next in enumerate(successors):
            if s_next < 3:
                transitions[s, a, s_next] = 1.0
    rewards = torch.full((3, 2), -1.0, dtype=torch.float64)
    start = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    return TabularMDP(transitions, rewards, start)


def corridor_value(p_right: float | Tensor, gamma: float = 1.0) -> float:
    r"""The exact value :math:`J = v_\pi(s_0)` of a corridor policy.

    Solves the Bellman equations of :func:`short_corridor_mdp` with
    :func:`rlteach.advantages.policy_values`. For the same p in every state and γ = 1
    this is :math:`J(p) = -2(2-p)/(p(1-p))`, maximal at :math:`p^* = 2-\sqrt2`
    (:data:`CORRIDOR_OPTIMAL_P_RIGHT`) with :math:`J(p^*) = -(6+4\sqrt2) \approx -11.657`
    (:data:`CORRIDOR_OPTIMAL_VALUE`). Sutton & Barto 2018, example 13.1 and fig. 13.1.

    Parameters
    ----------
    p_right : float or Tensor of shape (3,)
        π(right|s): one number for the aliased policy of the example, or one per state
        (a policy that sees the state; its best is right, left, right with J = −3).
    gamma : float
        Discount in [0, 1].

    Returns
    -------
    float
        −∞ when, with γ = 1, the policy never reaches the goal.
    """
    gamma = unit_interval("gamma", gamma, "a discount")
    if isinstance(p_right, Tensor):
        p = p_right.detach().to("cpu", torch.float64)
        if p.shape != (3,):
            raise ValueError(f"p_right: expected a number or a tensor of shape (3,) (one per state), got {tuple(p.shape)}")
        if bool(((p < 0) | (p > 1) | p.isnan()).any()):
            raise ValueError(f"p_right={p.tolist()}: probabilities lie in [0, 1]")
    else:
        p = torch.full((3,), unit_interval("p_right", p_right, "a probability"), dtype=torch.float64)
    policy = torch.stack([1.0 - p, p], dim=-1)  # (3, 2): π(left|s), π(right|s)
    try:
        return float(policy_values(short_corridor_mdp(), policy, gamma).values[0])
    except ValueError:  # I − P_π singular: with γ = 1 some state never reaches the goal
        return -math.inf


def corridor_policy_features(state: int) -> Tensor:
    r"""The actor's features x(s, a), the same in every state: x(s, right) = (1, 0), x(s, left) = (0, 1).

    Returns
    -------
    Tensor, shape (2, 2)
        Row a is x(s, a) (row 0 left, row 1 right), float64. With θ = (θ_R, θ_L),
        π(right) = σ(θ_R − θ_L).
    """
    return torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)


def corridor_value_features(state: int) -> Tensor:
    """The critic's features: a one-hot code of the state (shape (3,), float64; zeros at the goal)."""
    x = torch.zeros(3, dtype=torch.float64)
    if state < 3:
        x[state] = 1.0
    return x


def corridor_p_right(theta: Tensor) -> float:
    """π(right) of the linear-softmax corridor policy with parameters θ (shape (2,))."""
    logits = corridor_policy_features(0).to(theta) @ theta.detach()
    return float(torch.softmax(logits, dim=-1)[RIGHT])


# ---------------------------------------------------------------------------------------
# One-step actor-critic (Sutton & Barto 2018, fig. 13.3), linear softmax and linear critic
# ---------------------------------------------------------------------------------------


def softmax_eligibility(theta: Tensor, policy_features: Tensor, action: int) -> Tensor:
    r"""The eligibility vector :math:`\nabla_\theta\ln\pi(a|s,\theta)` of a linear-softmax policy.

    With :math:`\pi(a|s,\theta) \propto e^{\theta^\top x(s,a)}` (Sutton & Barto 2018, eq. 13.9):

    .. math:: \nabla_\theta \ln\pi(a|s,\theta) = x(s,a) - \sum_b \pi(b|s,\theta)\, x(s,b)

    Parameters
    ----------
    theta : Tensor, shape (d,)
    policy_features : Tensor, shape (K, d)
        Row b is x(s, b).
    action : int

    Returns
    -------
    Tensor, shape (d,)
    """
    probs = torch.softmax(policy_features @ theta, dim=-1)  # π(·|s, θ)
    return policy_features[action] - probs @ policy_features  # x(s,a) − Σ_b π(b|s) x(s,b)


class OneStepACUpdate(NamedTuple):
    """The result of one step of fig. 13.3."""

    theta: Tensor  # (d',) θ + α^θ I δ ∇ln π(A|S, θ)
    w: Tensor  # (d,) w + α^w I δ ∇v̂(S, w)
    discount: float  # the new I, γI
    delta: Tensor  # () the TD error δ


def one_step_actor_critic_update(theta: Tensor, w: Tensor, policy_features: Tensor, action: int,
                                 value_features: Tensor, next_value_features: Tensor, reward: float,
                                 terminated: bool, discount: float, gamma: float, alpha_theta: float,
                                 alpha_w: float) -> OneStepACUpdate:
    r"""One time step of one-step actor-critic, Sutton & Barto 2018, fig. 13.3.

    For a linear-softmax actor and a linear critic :math:`\hat v(s,w) = w^\top x(s)`:

    .. math::
        \delta &\leftarrow R + \gamma\,\hat v(S', w) - \hat v(S, w)
                  \qquad (\hat v(S', w) = 0 \text{ if } S' \text{ is terminal}) \\
        w &\leftarrow w + \alpha^w I \delta\, \nabla\hat v(S, w) \\
        \theta &\leftarrow \theta + \alpha^\theta I \delta\, \nabla\ln\pi(A|S, \theta) \\
        I &\leftarrow \gamma I

    ``discount`` is I (1 at an episode's first step), so the t-th update of an episode
    is scaled by :math:`\gamma^t`: the policy-gradient theorem's discounting of later
    states. δ and both gradients are taken at the parameters before the step. Pure:
    the inputs are not modified.

    Parameters
    ----------
    theta : Tensor, shape (d',)
    w : Tensor, shape (d,)
    policy_features : Tensor, shape (K, d')
        x(S, b) for every action b.
    action : int
        A.
    value_features, next_value_features : Tensor, shape (d,)
        x(S) and x(S'); ``next_value_features`` is ignored when ``terminated``.
    reward : float
        R.
    terminated : bool
        S' is terminal. (A truncated S' is not: its value is bootstrapped.)
    discount : float
        I.
    gamma, alpha_theta, alpha_w : float
        γ in [0, 1]; step sizes α^θ, α^w ≥ 0.

    Returns
    -------
    OneStepACUpdate
    """
    v = w @ value_features  # v̂(S, w)
    v_next = torch.zeros_like(v) if terminated else w @ next_value_features  # v̂(S', w), 0 at a terminal S'
    delta = reward + gamma * v_next - v  # δ = R + γ v̂(S') − v̂(S)
    new_w = w + alpha_w * discount * delta * value_features  # ∇v̂(S, w) = x(S)
    new_theta = theta + alpha_theta * discount * delta * softmax_eligibility(theta, policy_features, action)
    return OneStepACUpdate(new_theta, new_w, gamma * discount, delta)  # I ← γ I


class EpisodicEnv(Protocol):
    """A single environment with integer states: what :func:`one_step_actor_critic` needs."""

    def reset(self) -> int: ...

    def step(self, action: int) -> tuple[int, float, bool, bool]: ...


class OneStepACResult(NamedTuple):
    """Parameters and per-episode record of :func:`one_step_actor_critic`."""

    theta: Tensor  # (d',) final actor parameters
    w: Tensor  # (d,) final critic weights
    episode_returns: Tensor  # (E,) undiscounted return of each episode
    episode_lengths: Tensor  # (E,) int64 steps of each episode
    theta_history: Tensor  # (E + 1, d') θ before the first episode and after each one


def one_step_actor_critic(env: EpisodicEnv, policy_features: Callable[[int], Tensor],
                          value_features: Callable[[int], Tensor], theta: Tensor, w: Tensor, num_episodes: int,
                          gamma: float, alpha_theta: float, alpha_w: float,
                          generator: torch.Generator) -> OneStepACResult:
    r"""Run one-step actor-critic (Sutton & Barto 2018, fig. 13.3) for ``num_episodes`` episodes.

    Each episode starts with I = 1; every step draws A ~ π(·|S, θ) from ``generator``,
    takes it, and applies :func:`one_step_actor_critic_update`. An episode ends when
    ``env`` reports termination or truncation (after a truncation S' is bootstrapped,
    as it is not terminal).

    Parameters
    ----------
    env : EpisodicEnv
        For instance :class:`ShortCorridor`.
    policy_features : callable
        state → x(s, ·), shape (K, d').
    value_features : callable
        state → x(s), shape (d,).
    theta, w : Tensor
        Initial parameters; not modified. Features are moved to their device and dtype.
    num_episodes : int
    gamma, alpha_theta, alpha_w : float
    generator : torch.Generator
        On ``theta``'s device; every action is drawn from it.

    Returns
    -------
    OneStepACResult

    Examples
    --------
    >>> env = ShortCorridor(max_episode_steps=1000)
    >>> theta0 = torch.tensor([0.0, math.log(9.0)], dtype=torch.float64)  # π(right) = 0.1
    >>> result = one_step_actor_critic(env, corridor_policy_features, corridor_value_features,
    ...     theta0, torch.zeros(3, dtype=torch.float64), 10, 1.0, 2**-6, 2**-4, torch.Generator().manual_seed(0))
    """
    num_episodes = positive_int("num_episodes", num_episodes)
    gamma = unit_interval("gamma", gamma, "a discount")
    alpha_theta = positive_number("alpha_theta", alpha_theta, allow_zero=True, what="a step size")
    alpha_w = positive_number("alpha_w", alpha_w, allow_zero=True, what="a step size")
    theta, w = theta.detach().clone(), w.detach().clone()
    history = [theta]
    returns, lengths = [], []
    for _ in range(num_episodes):
        state = env.reset()
        discount = 1.0  # I ← 1
        episode_return, length, ended = 0.0, 0, False
        while not ended:
            x_policy = policy_features(state).to(theta)
            probs = torch.softmax(x_policy @ theta, dim=-1)
            action = int(torch.multinomial(probs, 1, generator=generator))  # A ~ π(·|S, θ)
            next_state, reward, terminated, truncated = env.step(action)
            step = one_step_actor_critic_update(theta, w, x_policy, action, value_features(state).to(w),
                                                value_features(next_state).to(w), reward, terminated, discount,
                                                gamma, alpha_theta, alpha_w)
            theta, w, discount = step.theta, step.w, step.discount
            episode_return += reward
            length += 1
            state, ended = next_state, terminated or truncated
        history.append(theta)
        returns.append(episode_return)
        lengths.append(length)
    return OneStepACResult(theta, w, torch.tensor(returns, dtype=theta.dtype, device=theta.device),
                           torch.tensor(lengths, dtype=torch.int64, device=theta.device), torch.stack(history))


# ---------------------------------------------------------------------------------------
# A2C: networks, vector environments, rollouts, the loss, the loop
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class A2CConfig:
    """Hyperparameters of A2C (Mnih et al. 2016, the synchronous variant of A3C), with GAE.

    The defaults solve CartPole-v1: with seeds 1 to 8 the mean return of 100 consecutive
    training episodes reached 475 after 85k to 243k environment steps, median 147k (27 to
    66 CPU seconds on one thread; ``python benchmarks/seeds.py a2c --seeds 8 --steps 500000``).
    """

    env_id: str = "CartPole-v1"
    num_envs: int = 8  # N parallel environments
    num_steps: int = 8  # T steps per environment and rollout
    total_steps: int = 500_000  # budget of vector-environment steps × N
    gamma: float = 0.99  # γ
    gae_lambda: float = 0.95  # λ of GAE
    lr: float = 1e-3  # Adam step size, shared by actor and critic
    anneal_lr: bool = True  # decay the step size linearly to 0 over the budget
    vf_coef: float = 0.5  # weight of the value loss
    ent_coef: float = 0.0  # weight of the entropy bonus
    max_grad_norm: float = 0.5  # clip the global gradient norm; inf: no clipping
    normalize_adv: bool = False  # standardise advantages per rollout
    hidden_sizes: tuple[int, ...] = (64, 64)  # of the actor's and the critic's MLPs (tanh)

    def __post_init__(self) -> None:
        if not isinstance(self.env_id, str) or not self.env_id:
            raise TypeError(f"env_id: expected a gymnasium environment id, got {self.env_id!r}")
        for name in ("num_envs", "num_steps", "total_steps"):
            positive_int(name, getattr(self, name))
        unit_interval("gamma", self.gamma, "a discount")
        unit_interval("gae_lambda", self.gae_lambda, "a trace-decay λ")
        positive_number("lr", self.lr, what="a step size")
        positive_number("vf_coef", self.vf_coef, allow_zero=True, what="a loss weight")
        positive_number("ent_coef", self.ent_coef, allow_zero=True, what="a loss weight")
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm={self.max_grad_norm}: must be > 0 (inf: no clipping)")
        if not isinstance(self.hidden_sizes, tuple):
            raise TypeError(f"hidden_sizes: expected a tuple of layer widths, got {self.hidden_sizes!r}")
        for width in self.hidden_sizes:
            positive_int("hidden_sizes", width)

    @property
    def batch_size(self) -> int:
        """Samples per rollout, N·T."""
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        """Rollouts (and gradient steps) in the budget, ⌈total_steps / (N·T)⌉."""
        return -(-self.total_steps // self.batch_size)


def mlp(in_size: int, hidden_sizes: Sequence[int], out_size: int, out_gain: float,
        generator: torch.Generator) -> nn.Sequential:
    r"""A tanh multilayer perceptron, orthogonally initialised from ``generator`` (on the CPU).

    Hidden layers get gain √2, the output layer ``out_gain``, biases 0 (the
    initialisation of the A2C/PPO baselines, Andrychowicz et al. 2021, "What Matters in
    On-Policy RL"). The layers skip PyTorch's default initialisation, so the global
    random state is neither read nor advanced.
    """
    sizes = [in_size, *hidden_sizes, out_size]
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        linear = nn.utils.skip_init(nn.Linear, fan_in, fan_out)
        last = i == len(sizes) - 2
        nn.init.orthogonal_(linear.weight, gain=out_gain if last else math.sqrt(2.0), generator=generator)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """Categorical policy network: observations (B, d) → logits (B, K)."""

    def __init__(self, obs_dim: int, num_actions: int, hidden_sizes: Sequence[int], generator: torch.Generator) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden_sizes, num_actions, 0.01, generator)  # small last layer: π starts near uniform

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs)


class Critic(nn.Module):
    """State-value network: observations (B, d) → V(s) (B,)."""

    def __init__(self, obs_dim: int, hidden_sizes: Sequence[int], generator: torch.Generator) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden_sizes, 1, 1.0, generator)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1)


def make_vector_env(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """N copies of a gymnasium environment with a flat Box observation and Discrete actions.

    The native vector implementation (``make_vec``'s ``vector_entry_point``, such as
    ``CartPoleVectorEnv``, next-step autoreset) is used where the environment has one;
    otherwise a ``SyncVectorEnv`` with same-step autoreset. :func:`step_envs` handles both.

    Raises
    ------
    ValueError
        An environment whose observations are not a flat Box or whose actions are not
        Discrete.
    """
    num_envs = positive_int("num_envs", num_envs)
    spec = gym.spec(env_id)
    if spec.vector_entry_point is not None:
        envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")
    else:
        envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    obs_space, action_space = envs.single_observation_space, envs.single_action_space
    if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1) \
            or not isinstance(action_space, gym.spaces.Discrete):
        envs.close()
        raise ValueError(f"{env_id}: A2C here needs flat Box observations and Discrete actions, "
                         f"got {obs_space} and {action_space}")
    return envs


def autoreset_mode(envs: gym.vector.VectorEnv) -> AutoresetMode:
    """The vector environment's autoreset mode, from its metadata (gymnasium ≥ 1.0).

    Raises
    ------
    ValueError
        For ``DISABLED`` (the rollout would have to reset by hand) or a missing entry.
    """
    mode = envs.metadata.get("autoreset_mode")
    if isinstance(mode, str):
        mode = AutoresetMode(mode)
    if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
        raise ValueError(f"vector env autoreset_mode={mode!r}: expected AutoresetMode.NEXT_STEP or SAME_STEP")
    return mode


class VectorStep(NamedTuple):
    """One step of N environments, the autoreset mode taken out (see :func:`step_envs`)."""

    obs: np.ndarray  # (N, d) the observations to act from next (a reset one where an episode ended)
    final_obs: np.ndarray  # (N, d) s_{t+1} of this transition: the true final observation where an episode ended
    rewards: np.ndarray  # (N,) r_t
    terminated: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool
    valid: np.ndarray  # (N,) bool: False where this step was a next-step autoreset, not a transition


def step_envs(envs: gym.vector.VectorEnv, actions: np.ndarray, reset_now: np.ndarray) -> VectorStep:
    """Step a gymnasium vector environment and report the transition in one form for both autoreset modes.

    ``SAME_STEP``: the true final observation of an episode that ended comes from
    ``info["final_obs"]`` (where ``info["_final_obs"]``); ``obs`` is already the reset one.
    ``NEXT_STEP``: the returned observation is itself the final one; the environments in
    ``reset_now`` (those that ended at the previous step) ignore their action and reset,
    so their entries are marked ``valid = False``.

    Parameters
    ----------
    envs : gymnasium.vector.VectorEnv
    actions : np.ndarray, shape (N,)
    reset_now : np.ndarray of bool, shape (N,)
        Environments whose episode ended at the previous step (in ``NEXT_STEP`` mode
        this step resets them; in ``SAME_STEP`` mode it is not needed).

    Returns
    -------
    VectorStep
    """
    mode = autoreset_mode(envs)
    obs, rewards, terminated, truncated, info = envs.step(actions)
    terminated, truncated = np.asarray(terminated, dtype=bool), np.asarray(truncated, dtype=bool)
    rewards = np.asarray(rewards, dtype=np.float64)
    if mode == AutoresetMode.NEXT_STEP:
        return VectorStep(obs, obs, rewards, terminated, truncated, ~reset_now)
    final_obs = obs
    if "_final_obs" in info and np.any(info["_final_obs"]):
        final_obs = np.array(obs, copy=True)
        for i in np.flatnonzero(info["_final_obs"]):
            final_obs[i] = info["final_obs"][i]
    return VectorStep(obs, final_obs, rewards, terminated, truncated, np.ones_like(terminated))


@dataclass
class EnvState:
    """What carries over from one rollout to the next: the current observations and episodes."""

    obs: Tensor  # (N, d) float32 observations to act from, on the learner's device
    reset_now: np.ndarray  # (N,) bool: the episode ended at the last step (next-step autoreset resets now)
    episode_return: np.ndarray  # (N,) float64 return of each running episode so far
    episode_length: np.ndarray  # (N,) int64 steps of each running episode so far


def reset_envs(envs: gym.vector.VectorEnv, seed: int, device: str | torch.device = "cpu") -> EnvState:
    """Reset all N environments with ``seed`` and start the episode bookkeeping."""
    obs, _ = envs.reset(seed=seed)
    N = envs.num_envs
    return EnvState(torch.as_tensor(obs, dtype=torch.float32, device=device), np.zeros(N, dtype=bool),
                    np.zeros(N, dtype=np.float64), np.zeros(N, dtype=np.int64))


class FinishedEpisode(NamedTuple):
    """An episode that ended during a rollout."""

    step: int  # t, the rollout row in which it ended
    env: int  # which of the N environments
    episode_return: float  # undiscounted sum of its rewards
    length: int  # its number of steps
    terminated: bool  # False: truncated by a time limit


class RolloutInfo(NamedTuple):
    """What :func:`collect_rollout` reports beside the filled buffer."""

    valid: Tensor  # (T, N) bool: a real transition (False for next-step autoreset steps)
    episodes: list[FinishedEpisode]  # the episodes that ended, in order


def collect_rollout(envs: gym.vector.VectorEnv, actor: nn.Module, critic: nn.Module, state: EnvState,
                    buffer: RolloutBuffer, generator: torch.Generator) -> RolloutInfo:
    r"""Fill ``buffer`` with T steps of the N environments, acting with ``actor``.

    Row t stores s_t, a_t ~ π(·|s_t), log π(a_t|s_t), r_t, V(s_t), V(s_{t+1}) and the
    two end flags. V(s_{t+1}) is the value of the true final observation where an
    episode ended (what a truncation bootstraps from; a termination ignores it). Actions
    are drawn from ``generator`` (on the buffer's device). ``state`` is updated in place,
    so the next rollout continues the same episodes.

    Parameters
    ----------
    envs : gymnasium.vector.VectorEnv
        N environments, next-step or same-step autoreset.
    actor, critic : nn.Module
        obs (N, d) → logits (N, K) and values (N,).
    state : EnvState
    buffer : RolloutBuffer
        With N envs and T steps, on the learner's device; reset here and overwritten.
    generator : torch.Generator

    Returns
    -------
    RolloutInfo
    """
    buffer.reset()
    device = buffer.device
    valid = torch.zeros((buffer.num_steps, buffer.num_envs), dtype=torch.bool, device=device)
    episodes: list[FinishedEpisode] = []
    with torch.no_grad():
        values = critic(state.obs)  # V(s_0)
        for t in range(buffer.num_steps):
            actions, logp = sample_actions(actor(state.obs), generator)  # a_t ~ π(·|s_t)
            out = step_envs(envs, actions.cpu().numpy(), state.reset_now)
            final_obs = torch.as_tensor(out.final_obs, dtype=torch.float32, device=device)
            next_values = critic(final_obs)  # V(s_{t+1}), the true final observation at an end
            obs = final_obs if out.final_obs is out.obs else torch.as_tensor(out.obs, dtype=torch.float32, device=device)
            buffer.add(state.obs, actions, logp, out.rewards, values, next_values,
                       torch.from_numpy(out.terminated), torch.from_numpy(out.truncated))
            valid[t] = torch.from_numpy(out.valid).to(device)
            ended = (out.terminated | out.truncated) & out.valid
            state.episode_return += np.where(out.valid, out.rewards, 0.0)
            state.episode_length += out.valid
            for i in np.flatnonzero(ended):
                episodes.append(FinishedEpisode(t, int(i), float(state.episode_return[i]),
                                                int(state.episode_length[i]), bool(out.terminated[i])))
            state.episode_return[ended] = 0.0
            state.episode_length[ended] = 0
            state.reset_now = ended
            values = next_values if obs is final_obs else critic(obs)  # V(s_{t+1}) of the state acted from next
            state.obs = obs
    return RolloutInfo(valid, episodes)


class A2CStats(NamedTuple):
    """Diagnostics of one A2C update, detached scalars."""

    policy_loss: Tensor  # −mean(Â log π(a|s))
    value_loss: Tensor  # ½ mean((V(s) − R̂)²)
    entropy: Tensor  # mean H(π(·|s))
    explained_variance: Tensor  # 1 − Var[R̂ − V] / Var[R̂]


def a2c_loss(logits: Tensor, actions: Tensor, values: Tensor, adv: Tensor, returns: Tensor, vf_coef: float,
             ent_coef: float) -> tuple[Tensor, A2CStats]:
    r"""The A2C loss on a batch of B samples, and its diagnostics.

    .. math:: L = \underbrace{-\frac1B\sum \hat A\,\ln\pi_\theta(a|s)}_{\text{policy}}
              + c_v\,\underbrace{\frac1{2B}\sum \big(V_w(s) - \hat R\big)^2}_{\text{value}}
              - c_e\,\underbrace{\frac1B\sum H\big(\pi_\theta(\cdot|s)\big)}_{\text{entropy}}

    The advantages Â and the targets R̂ (λ-returns, Â + V_old) are data: detached, so
    the actor's gradient does not flow into the critic and the critic does not chase
    its own targets. Mnih et al. 2016, "Asynchronous Methods for Deep Reinforcement
    Learning", algorithm S3.

    Parameters
    ----------
    logits : Tensor, shape (B, K)
    actions : Tensor of int64, shape (B,)
    values : Tensor, shape (B,)
        V_w(s), differentiable.
    adv, returns : Tensor, shape (B,)
    vf_coef, ent_coef : float
        c_v, c_e ≥ 0.

    Returns
    -------
    loss : Tensor, shape ()
    stats : A2CStats
    """
    logp = categorical_logp(logits, actions)
    policy_loss = -(adv.detach() * logp).mean()  # −E[Â ln π(a|s)]: its gradient is −E[Â ∇ln π]
    value_loss = 0.5 * (values - returns.detach()).pow(2).mean()  # ½ E[(V − R̂)²]
    entropy = categorical_entropy(logits).mean()  # E[H(π(·|s))]
    loss = policy_loss + vf_coef * value_loss - ent_coef * entropy
    stats = A2CStats(policy_loss.detach(), value_loss.detach(), entropy.detach(), explained_variance(values, returns))
    return loss, stats


def a2c_update(actor: nn.Module, critic: nn.Module, optimizer: torch.optim.Optimizer, buffer: RolloutBuffer,
               valid: Tensor, config: A2CConfig) -> A2CStats:
    """One A2C gradient step on a full rollout: GAE, the loss on the valid samples, a clipped step.

    Computes the advantages and λ-returns with :meth:`RolloutBuffer.compute_advantages`
    (GAE, terminated and truncated kept apart), recomputes logits and values on the
    N·T observations, drops the next-step autoreset rows, and takes one optimizer step
    with the global gradient norm clipped to ``config.max_grad_norm``.
    """
    adv, returns = buffer.compute_advantages(config.gamma, config.gae_lambda)
    mask = valid.reshape(-1)
    obs = buffer.obs.reshape(-1, *buffer.obs_shape)[mask]
    actions = buffer.actions.reshape(-1)[mask]
    adv, returns = adv.reshape(-1)[mask], returns.reshape(-1)[mask]
    if config.normalize_adv and adv.numel() > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    loss, stats = a2c_loss(actor(obs), actions, critic(obs), adv, returns, config.vf_coef, config.ent_coef)
    optimizer.zero_grad()
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    nn.utils.clip_grad_norm_(params, config.max_grad_norm)
    optimizer.step()
    return stats


class EpisodeRecord(NamedTuple):
    """One finished training episode."""

    env_steps: int  # transitions taken by the learner when it ended (all environments)
    episode_return: float
    length: int
    wall_s: float  # the clock when it was recorded (seconds)


class UpdateRecord(NamedTuple):
    """The diagnostics of one update, as floats."""

    env_steps: int
    policy_loss: float
    value_loss: float
    entropy: float
    explained_variance: float


@dataclass
class TrainingLog:
    """Per-episode returns and per-update diagnostics of a training run."""

    episodes: list[EpisodeRecord] = field(default_factory=list)
    updates: list[UpdateRecord] = field(default_factory=list)

    @property
    def returns(self) -> list[float]:
        return [e.episode_return for e in self.episodes]

    def mean_return(self, window: int = 100) -> float:
        """Mean return of the last ``window`` episodes (NaN before the first one)."""
        last = self.returns[-window:]
        return float(np.mean(last)) if last else math.nan

    def first_reaching(self, threshold: float, window: int = 100) -> EpisodeRecord | None:
        """The first episode at which the mean of the last ``window`` returns is ≥ ``threshold``, or None."""
        returns = np.asarray(self.returns, dtype=np.float64)
        if returns.size < window:
            return None
        sums = np.convolve(returns, np.ones(window), mode="valid")  # sums[j] = Σ returns[j : j + window]
        hits = np.flatnonzero(sums >= threshold * window - 1e-9)
        return self.episodes[int(hits[0]) + window - 1] if hits.size else None


class A2CResult(NamedTuple):
    """The trained networks and the training log of :func:`train_a2c`."""

    actor: Actor
    critic: Critic
    log: TrainingLog


def train_a2c(config: A2CConfig, seed: int, *, device: str | torch.device = "cpu", progress: bool = True,
              clock: Callable[[], float] | None = None, on_episode: Callable[[EpisodeRecord], None] | None = None,
              target_return: float | None = None, window: int = 100) -> A2CResult:
    """Train A2C on ``config.env_id``: rollouts of N×T steps, GAE, one gradient step each.

    Parameters
    ----------
    config : A2CConfig
    seed : int
        Seeds the environments, the network initialisation and the action draws.
    device : str or torch.device
        Where the networks and rollouts live (CPU by default).
    progress : bool
        Show a tqdm bar over the step budget.
    clock : callable, optional
        Seconds for :attr:`EpisodeRecord.wall_s`; by default, seconds since this call began.
    on_episode : callable, optional
        Called with each :class:`EpisodeRecord` as soon as it is recorded (a CSV writer).
    target_return : float, optional
        Stop once the mean return of the last ``window`` episodes reaches it.
    window : int

    Returns
    -------
    A2CResult
        ``log.episodes[i].env_steps`` counts transitions, without next-step autoreset steps.
    """
    started = time.perf_counter()
    clock = clock if clock is not None else (lambda: time.perf_counter() - started)
    device = torch.device(device)
    envs = make_vector_env(config.env_id, config.num_envs)
    obs_space, action_space = envs.single_observation_space, envs.single_action_space
    assert isinstance(obs_space, gym.spaces.Box) and isinstance(action_space, gym.spaces.Discrete)  # make_vector_env checked
    obs_dim, num_actions = obs_space.shape[0], int(action_space.n)
    init = torch.Generator().manual_seed(seed)
    actor = Actor(obs_dim, num_actions, config.hidden_sizes, init).to(device)
    critic = Critic(obs_dim, config.hidden_sizes, init).to(device)
    optimizer = torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=config.lr, eps=1e-5)
    buffer = RolloutBuffer(config.num_steps, config.num_envs, (obs_dim,), device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    state = reset_envs(envs, seed, device)
    log, env_steps = TrainingLog(), 0
    with tqdm(total=config.num_updates * config.batch_size, disable=not progress, unit="step",
              desc=f"A2C {config.env_id}") as bar:
        for update in range(config.num_updates):
            if config.anneal_lr:
                optimizer.param_groups[0]["lr"] = config.lr * (1.0 - update / config.num_updates)
            rollout = collect_rollout(envs, actor, critic, state, buffer, generator)
            steps_per_row = rollout.valid.sum(dim=1).cumsum(0).tolist()  # transitions up to and including row t
            for episode in rollout.episodes:
                record = EpisodeRecord(env_steps + steps_per_row[episode.step], episode.episode_return,
                                       episode.length, clock())
                log.episodes.append(record)
                if on_episode is not None:
                    on_episode(record)
            env_steps += steps_per_row[-1]
            stats = a2c_update(actor, critic, optimizer, buffer, rollout.valid, config)
            log.updates.append(UpdateRecord(env_steps, *(float(s) for s in stats)))
            bar.update(config.batch_size)
            bar.set_postfix(mean_return=f"{log.mean_return(window):.1f}", refresh=False)
            if target_return is not None and len(log.episodes) >= window and log.mean_return(window) >= target_return:
                break
    envs.close()
    return A2CResult(actor, critic, log)


# ---------------------------------------------------------------------------------------
# Off-policy actor-critic from a replay buffer, with truncated importance ratios
# ---------------------------------------------------------------------------------------


class OffPolicyACStats(NamedTuple):
    """Diagnostics of one off-policy actor-critic update, detached scalars."""

    actor_loss: Tensor
    critic_loss: Tensor
    mean_ratio: Tensor  # mean of the truncated ratios ρ̄
    truncated_frac: Tensor  # share of samples with ρ > c
    mean_abs_td: Tensor  # mean |δ|


def off_policy_ac_losses(logp: Tensor, logp_behavior: Tensor, values: Tensor, next_values: Tensor,
                         rewards: Tensor, terminated: Tensor, gamma: float,
                         max_ratio: float) -> tuple[Tensor, Tensor, OffPolicyACStats]:
    r"""Actor and critic losses of off-policy actor-critic on transitions drawn by β.

    .. math::
        \bar\rho &= \min\!\Big(\frac{\pi_\theta(a|s)}{\beta(a|s)},\ c\Big), \qquad
        \delta = r + \gamma(1-\mathrm{term})\,V_w(s') - V_w(s) \\
        L_{\text{critic}} &= \frac1{2B}\sum \bar\rho\,\delta^2 \quad(\text{target } r + \gamma V_w(s') \text{ held fixed}),
        \qquad
        L_{\text{actor}} = -\frac1B\sum \bar\rho\,\delta\,\ln\pi_\theta(a|s)

    Their gradients are :math:`-\frac1B\sum\bar\rho\,\delta\,\nabla V_w(s)` (off-policy
    TD(0) with per-decision importance sampling) and
    :math:`-\frac1B\sum\bar\rho\,\delta\,\nabla\ln\pi_\theta(a|s)`. Since
    :math:`\mathbb E_{a\sim\beta}[\rho\, f(a)] = \mathbb E_{a\sim\pi}[f(a)]`, for c = ∞ both are
    on-policy updates in expectation, at the states β visits (Degris, White & Sutton
    2012, "Off-Policy Actor-Critic"). A finite c bounds the variance at the price of a
    bias toward β (Espeholt et al. 2018, IMPALA; Wang et al. 2017, ACER). ρ̄ and δ are
    data (detached) in the actor's loss, ρ̄ in the critic's. A truncated transition
    bootstraps (``terminated`` False), a terminated one does not.

    Parameters
    ----------
    logp : Tensor, shape (B,)
        log π_θ(a|s), differentiable in θ.
    logp_behavior : Tensor, shape (B,)
        log β(a|s), stored with the transition.
    values, next_values : Tensor, shape (B,)
        V_w(s) (differentiable) and V_w(s') (treated as a constant).
    rewards : Tensor, shape (B,)
    terminated : Tensor of bool, shape (B,)
    gamma : float
    max_ratio : float
        c > 0; ``inf`` truncates nothing.

    Returns
    -------
    actor_loss, critic_loss : Tensor, shape ()
    stats : OffPolicyACStats
    """
    gamma = unit_interval("gamma", gamma, "a discount")
    log_ratio = (logp - logp_behavior).detach()  # log π − log β
    ratio = truncated_ratio(log_ratio, max_ratio)  # ρ̄ = min(π/β, c)
    not_terminal = 1.0 - terminated.to(values.dtype)
    target = (rewards + gamma * not_terminal * next_values).detach()  # r + γ V(s'), no bootstrap past a termination
    delta = target - values  # δ
    critic_loss = 0.5 * (ratio * delta.pow(2)).mean()  # ½ E_β[ρ̄ δ²]
    actor_loss = -(ratio * delta.detach() * logp).mean()  # −E_β[ρ̄ δ ln π(a|s)]
    stats = OffPolicyACStats(actor_loss.detach(), critic_loss.detach(), ratio.mean(),
                             (log_ratio > math.log(max_ratio)).to(values.dtype).mean(), delta.detach().abs().mean())
    return actor_loss, critic_loss, stats


def _p_right(features: Tensor, theta: Tensor) -> Tensor:
    """π(right|s) for s = 0, 1, 2 of the actor logits[s] = X[s] θ, on the CPU."""
    return torch.softmax(features @ theta.detach(), dim=-1)[:, RIGHT].cpu()


def corridor_actor_features(tabular: bool) -> Tensor:
    """Features X[s, a] of a linear-softmax corridor actor, logits[s] = X[s] @ θ.

    ``tabular``: one-hot codes of (s, a), d = 6, so π(·|s) is free in every state.
    Otherwise the aliased features of example 13.1 (:func:`corridor_policy_features` in
    every state), d = 2.

    Returns
    -------
    Tensor, shape (3, 2, d), float64
    """
    if tabular:
        return torch.eye(6, dtype=torch.float64).reshape(3, 2, 6)
    return corridor_policy_features(0).expand(3, 2, 2).clone()


@dataclass(frozen=True)
class OffPolicyACConfig:
    """Off-policy actor-critic on the short corridor: π learns from transitions of a fixed β.

    With a tabular actor (the default) π can tell the states apart and the learner
    approaches the deterministic optimum (right, left, right; J = −3). With the aliased
    features of example 13.1 the updates weight the states by how often *β* visits
    them, not π: the fixed point depends on β and can be worse than β itself (with
    β(right) = 0.9 it drives π(right) toward 0), the case for corrections of the state
    distribution such as emphatic weightings (Imani, Graves & White 2018).
    """

    behavior_p_right: float = 0.7  # β(right|s) in every state
    tabular_actor: bool = True  # False: the aliased features of example 13.1
    gamma: float = 1.0
    max_ratio: float = 2.0  # c of ρ̄ = min(π/β, c)
    capacity: int = 2_000  # replay ring size
    batch_size: int = 64
    steps_per_update: int = 8  # β transitions added before each update
    num_updates: int = 600
    lr_actor: float = 0.5  # SGD step size of θ
    lr_critic: float = 0.2  # SGD step size of w
    max_episode_steps: int = 200  # β's episodes are truncated after this many steps

    def __post_init__(self) -> None:
        p = unit_interval("behavior_p_right", self.behavior_p_right, "a probability")
        if p in (0.0, 1.0):
            raise ValueError(f"behavior_p_right={p}: β must give both actions positive probability")
        unit_interval("gamma", self.gamma, "a discount")
        if not self.max_ratio > 0:
            raise ValueError(f"max_ratio={self.max_ratio}: the truncation level c must be > 0 (inf: none)")
        for name in ("capacity", "batch_size", "steps_per_update", "num_updates", "max_episode_steps"):
            positive_int(name, getattr(self, name))
        positive_number("lr_actor", self.lr_actor, allow_zero=True, what="a step size")
        positive_number("lr_critic", self.lr_critic, allow_zero=True, what="a step size")

    @property
    def total_steps(self) -> int:
        """Transitions β collects in all, ``num_updates · steps_per_update``."""
        return self.num_updates * self.steps_per_update


class OffPolicyACResult(NamedTuple):
    """What :func:`off_policy_actor_critic` learned, and how it compares with β, exactly."""

    theta: Tensor  # (d,) the target policy's parameters
    w: Tensor  # (3,) the critic's weights, V(s) = w[s]
    p_right: Tensor  # (3,) π(right|s) of the learned target policy
    p_right_history: Tensor  # (num_updates + 1, 3) π(right|s) before the first update and after each
    target_value: float  # exact J of the learned π (corridor_value)
    behavior_value: float  # exact J of β
    stats: list[OffPolicyACStats]  # one per update taken (none while the buffer holds less than a batch)


def off_policy_actor_critic(config: OffPolicyACConfig, seed: int, *, device: str | torch.device = "cpu",
                            theta: Tensor | None = None) -> OffPolicyACResult:
    r"""Learn a corridor policy π from a replay buffer that only a fixed behaviour policy β fills.

    β goes right with probability ``config.behavior_p_right`` in every state; each of
    its transitions is stored with log β(a|s) in a :class:`rlteach.buffers.ReplayBuffer`.
    After every ``steps_per_update`` transitions (once the buffer holds a batch), a
    uniform minibatch updates the linear-softmax actor (:func:`corridor_actor_features`)
    and the tabular critic through :func:`off_policy_ac_losses`, with plain SGD. π never
    acts: all data come from β, and the ratios ρ̄ = min(π/β, c) correct for it.

    Parameters
    ----------
    config : OffPolicyACConfig
    seed : int
        Seeds β's action draws and the minibatch draws.
    device : str or torch.device
    theta : Tensor, optional
        Initial θ of shape (d,) (default 0: π(right|s) = ½ everywhere).

    Returns
    -------
    OffPolicyACResult
        With the exact values (:func:`corridor_value`) of π and of β.
    """
    device = torch.device(device)
    features = corridor_actor_features(config.tabular_actor).to(device)  # (3, 2, d)
    dim = features.shape[-1]
    theta = (torch.zeros(dim, dtype=torch.float64, device=device) if theta is None
             else theta.detach().to(device, torch.float64).clone())
    if theta.shape != (dim,):
        raise ValueError(f"theta: expected shape ({dim},) for these actor features, got {tuple(theta.shape)}")
    theta.requires_grad_(True)
    w = torch.zeros(4, dtype=torch.float64, device=device, requires_grad=True)  # V(0), V(1), V(2); V(goal) stays 0
    optimizer = torch.optim.SGD([{"params": [theta], "lr": config.lr_actor}, {"params": [w], "lr": config.lr_critic}])
    buffer = ReplayBuffer(config.capacity, obs_shape=(), obs_dtype=torch.int64, dtype=torch.float64, device=device)
    env = ShortCorridor(max_episode_steps=config.max_episode_steps)
    draws = torch.Generator().manual_seed(seed)
    p = config.behavior_p_right
    logp_beta = (math.log(1.0 - p), math.log(p))  # log β(left|s), log β(right|s)

    state = env.reset()
    history, stats = [_p_right(features, theta)], []
    for _ in range(config.num_updates):
        coins = torch.rand(config.steps_per_update, generator=draws, dtype=torch.float64).tolist()
        collected: list[tuple[int, int, float, int, bool, bool, float]] = []
        for coin in coins:
            action = RIGHT if coin < p else LEFT  # a ~ β(·|s)
            next_state, reward, terminated, truncated = env.step(action)
            collected.append((state, action, reward, next_state, terminated, truncated, logp_beta[action]))
            state = env.reset() if terminated or truncated else next_state
        obs, actions, rewards, next_obs, term, trunc, logp_b = zip(*collected)
        buffer.add_batch(list(obs), list(actions), list(rewards), list(next_obs), np.array(term), np.array(trunc),
                         list(logp_b))
        if len(buffer) < config.batch_size:
            history.append(history[-1])
            continue
        batch = buffer.sample(config.batch_size, draws)
        logits = torch.einsum("bad,d->ba", features[batch.obs], theta)  # logits[b] = X[s_b] θ
        actor_loss, critic_loss, step_stats = off_policy_ac_losses(
            categorical_logp(logits, batch.actions), batch.logp_behavior, w[batch.obs], w[batch.next_obs].detach(),
            batch.rewards, batch.terminated, config.gamma, config.max_ratio)
        optimizer.zero_grad()
        (actor_loss + critic_loss).backward()  # disjoint parameters: each loss moves only its own
        optimizer.step()
        history.append(_p_right(features, theta))
        stats.append(step_stats)
    final = _p_right(features, theta)
    return OffPolicyACResult(theta.detach(), w.detach()[:3], final, torch.stack(history),
                             corridor_value(final, config.gamma), corridor_value(p, config.gamma), stats)
