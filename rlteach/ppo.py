r"""Proximal Policy Optimization (Schulman et al. 2017), with every implementation detail a toggle.

PPO maximises, over K epochs of minibatches of one on-policy rollout, a surrogate of
the policy's improvement that stays pessimistic when the new policy moves far from the
one that collected the data:

.. math:: r_t(\theta) = \frac{\pi_\theta(a_t|s_t)}{\pi_{\theta_{old}}(a_t|s_t)},\qquad
          L^{CPI} = \hat{\mathbb E}_t\big[r_t \hat A_t\big],\qquad
          L^{CLIP} = \hat{\mathbb E}_t\big[\min\big(r_t \hat A_t,\
          \mathrm{clip}(r_t, 1-\epsilon, 1+\epsilon)\hat A_t\big)\big]

and minimises :math:`-L^{CLIP} + c_v L^V - c_e H` (Schulman et al. 2017, eq. 9).

==============================================  ========================================
piece                                           function
==============================================  ========================================
:math:`L^{CPI}`, :math:`L^{CLIP}` per sample    :func:`cpi_objective`, :func:`clip_objective`
the policy loss and its diagnostics             :func:`policy_loss` (approx. KL k3, clip fraction)
the value loss, optionally clipped              :func:`value_loss`
a backward pass, without autograd's Python      :func:`backward`
global gradient-norm clipping                   :func:`clip_grad_norm`
advantage standardisation                       :func:`normalize_advantages`
running mean and variance (obs., rewards)       :class:`RunningMeanStd`, :class:`RewardScaler`
one rollout of N environments × T steps          :func:`collect_rollout`
the same on torch-batched environments          :func:`collect_batched_rollout`
its step replayed as one CUDA graph             :class:`CapturedStep`
K epochs of minibatch steps                     :func:`ppo_update`
Adam on PyTorch's fused kernel                  :class:`FusedAdam`, :func:`make_optimizer`
one iteration: anneal, advantages, update       :func:`ppo_iteration`
set-up and loop shared with TRPO                :func:`start_on_policy`, :func:`run_on_policy`
the loop                                        :func:`train_ppo`
==============================================  ========================================

The implementation details (Engstrom et al. 2020, "Implementation Matters in Deep Policy
Gradients"; Andrychowicz et al. 2021, "What Matters in On-Policy RL"; Huang et al. 2022,
"The 37 Implementation Details of PPO") are fields of :class:`PPOConfig`, each tested:
vector environments, orthogonal initialisation, Adam's ε, learning-rate annealing, GAE,
shuffled minibatches, advantage normalisation, the clipped surrogate, value clipping,
the entropy bonus, global gradient clipping, KL early stopping; for continuous actions
a state-independent log σ, observation and reward normalisation, and action clipping.

Conventions follow :mod:`rlteach.actor_critic`: rollouts are time-major ``(T, N)``,
``terminated`` and ``truncated`` stay apart (a time limit bootstraps from V of the true
final observation), gymnasium's next-step autoreset steps are marked invalid and left
out of every loss and count, and all randomness comes from local generators.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import Tensor, nn
from tqdm.auto import tqdm

from rlteach._validate import positive_int, positive_number, unit_interval
from rlteach.actor_critic import EpisodeRecord, TrainingLog, UpdateRecord, explained_variance, step_envs
from rlteach.advantages import discounted_returns, gae
from rlteach.envs import BATCHED_ENVS, BatchedEnv, make_batched_env
from rlteach.policies import CategoricalActorCritic, GaussianActorCritic, make_actor_critic

Policy = CategoricalActorCritic | GaussianActorCritic

# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PPOConfig:
    """Hyperparameters of PPO; every implementation detail is a switch.

    The defaults solve CartPole-v1 with rl-baselines3-zoo's tuned settings for it
    (hyperparams/ppo.yml: 8 environments × 32 steps, one full-batch step per epoch, 20
    epochs, γ = 0.98, λ = 0.8, lr and ε annealed linearly from 1e-3 and 0.2, the value loss
    weighted as SB3 weighs it: its vf_coef 0.5 on the squared error is c_v = 1 on this
    L^V, which has a ½). Raced against Stable-Baselines3 on seeds 1-10, from process start,
    both pinned to one core of a 2-core AMD EPYC (``benchmarks/peers.py --seeds 10``): a
    median of 63,948 env steps to a 100-episode mean of 475 (10 of 10 seeds) against SB3's
    65,416 (9 of 10 seeds; the median of those 9), 0.98×, in 13.9 s against 30.4 s of wall
    time, 0.46×. With c_v = 0.5 (half SB3's weighting) the median over seeds 1-30 was 66,949
    steps; with c_v = 1 and 30 epochs it was 59,687 (two seeds of 30 missed 475 within 100k
    steps), for 8-42 % more CPU per step (seeds 1-2, a busy core). Cheaper settings (16 environments
    × 16 steps, or 10 epochs, or hidden layers of 32) needed from 11 % to over 50 % more
    environment steps to a 100-episode mean of 475 on seeds 1-2.
    :data:`PENDULUM` holds settings for Pendulum-v1 (continuous actions).
    """

    env_id: str = "CartPole-v1"
    num_envs: int = 8  # N parallel environments (gymnasium vector env)
    num_steps: int = 32  # T steps per environment and rollout
    total_steps: int = 100_000  # budget of transitions, all environments together
    gamma: float = 0.98  # γ
    gae_lambda: float = 0.8  # λ of GAE
    use_gae: bool = True  # False: Â = discounted return (bootstrapped at cuts) − V
    lr: float = 1e-3  # Adam step size, actor and critic together
    adam_eps: float = 1e-5  # Adam's ε (PyTorch's default is 1e-8)
    anneal_lr: bool = True  # lr decays linearly to 0 over the budget
    update_epochs: int = 20  # K epochs over each rollout
    num_minibatches: int = 1  # minibatches per epoch
    shuffle_minibatches: bool = True  # False: minibatches in rollout order
    normalize_adv: bool = True  # standardise Â over the rollout's batch
    clip_surrogate: bool = True  # False: the unclipped L^CPI
    clip_eps: float = 0.2  # ε of the clipped surrogate
    anneal_clip_eps: bool = True  # ε decays linearly to 0 over the budget (zoo's lin_0.2)
    clip_value: bool = False  # clip V − V_old to ±ε in the value loss
    vf_coef: float = 1.0  # c_v (L^V has a ½: c_v = 1 weighs the squared error as SB3's vf_coef = 0.5)
    ent_coef: float = 0.0  # c_e, weight of the entropy bonus
    max_grad_norm: float = 0.5  # global gradient-norm clip; inf: no clipping
    target_kl: float | None = None  # stop the update once the approximate KL exceeds it; None: never
    orthogonal_init: bool = True  # orthogonal weights (else PyTorch's default init)
    hidden_sizes: tuple[int, ...] = (64, 64)  # of the actor's and the critic's tanh MLPs
    # continuous actions
    state_dependent_std: bool = False  # False: log σ is a free vector, the same in every state
    log_std_init: float = 0.0  # initial log σ
    normalize_obs: bool = False  # standardise observations with running mean/std
    normalize_reward: bool = False  # divide rewards by the running std of the discounted return
    clip_obs: float = 10.0  # normalised observations are clipped to ±clip_obs
    clip_reward: float = 10.0  # normalised rewards are clipped to ±clip_reward
    clip_actions: bool = True  # clip Gaussian actions to the action space's bounds before stepping
    # where the environments run
    env_backend: str = "gymnasium"  # "batched": rlteach.envs, stepped as tensors on the learner's device
    randomize: tuple[tuple[str, float, float], ...] = ()  # batched only: (parameter, low, high) drawn per episode
    cuda_graph: bool = False  # batched on CUDA only: each rollout step is one replay of a CUDA graph (CapturedStep)

    def __post_init__(self) -> None:
        if not isinstance(self.env_id, str) or not self.env_id:
            raise TypeError(f"env_id: expected a gymnasium environment id, got {self.env_id!r}")
        if self.env_backend not in ("gymnasium", "batched"):
            raise ValueError(f"env_backend={self.env_backend!r}: expected 'gymnasium' or 'batched'")
        if self.env_backend == "batched":
            if self.env_id not in BATCHED_ENVS:
                raise ValueError(f"env_backend='batched': {self.env_id!r} has no batched version "
                                 f"({', '.join(BATCHED_ENVS)})")
            if self.normalize_obs or self.normalize_reward:
                raise ValueError("env_backend='batched' has no observation or reward normalisation; "
                                 "set normalize_obs=False and normalize_reward=False")
        elif self.randomize:
            raise ValueError("randomize (domain randomisation) needs env_backend='batched'")
        if self.cuda_graph and self.env_backend != "batched":
            raise ValueError("cuda_graph=True captures the batched environments' step: set env_backend='batched'")
        for name in ("num_envs", "num_steps", "total_steps", "update_epochs", "num_minibatches"):
            positive_int(name, getattr(self, name))
        if self.num_minibatches > self.batch_size:
            raise ValueError(f"num_minibatches={self.num_minibatches} exceeds the batch of {self.batch_size} samples")
        unit_interval("gamma", self.gamma, "a discount")
        unit_interval("gae_lambda", self.gae_lambda, "a trace-decay λ")
        positive_number("lr", self.lr, what="a step size")
        positive_number("adam_eps", self.adam_eps, what="Adam's ε")
        positive_number("clip_eps", self.clip_eps, what="the clip range ε")
        positive_number("vf_coef", self.vf_coef, allow_zero=True, what="a loss weight")
        positive_number("ent_coef", self.ent_coef, allow_zero=True, what="a loss weight")
        positive_number("clip_obs", self.clip_obs, what="a clip level")
        positive_number("clip_reward", self.clip_reward, what="a clip level")
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm={self.max_grad_norm}: must be > 0 (inf: no clipping)")
        if self.target_kl is not None:
            positive_number("target_kl", self.target_kl, what="a KL threshold")
        if not isinstance(self.hidden_sizes, tuple):
            raise TypeError(f"hidden_sizes: expected a tuple of layer widths, got {self.hidden_sizes!r}")
        for width in self.hidden_sizes:
            positive_int("hidden_sizes", width)

    @property
    def batch_size(self) -> int:
        """Samples per rollout, N·T."""
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        """Samples per minibatch, ⌈N·T / num_minibatches⌉ (fewer where autoreset steps are dropped)."""
        return -(-self.batch_size // self.num_minibatches)

    @property
    def num_updates(self) -> int:
        """Rollouts (and PPO updates) in the budget, ⌈total_steps / (N·T)⌉."""
        return -(-self.total_steps // self.batch_size)


PENDULUM = PPOConfig(
    env_id="Pendulum-v1", num_envs=4, num_steps=512, total_steps=200_000, gamma=0.9, gae_lambda=0.95,
    lr=1e-3, update_epochs=10, num_minibatches=8, anneal_clip_eps=False, normalize_obs=True, normalize_reward=True,
    log_std_init=0.0,
)
"""PPO settings for Pendulum-v1: γ = 0.9 and λ = 0.95 as rl-baselines3-zoo's Pendulum-v1 entry,
with observation and reward normalisation instead of its state-dependent exploration. Seed 1
passes a 100-episode mean of −250 at 63,200 steps and ends the 200k-step budget at −191."""


def linear_schedule(start: float, update: int, num_updates: int) -> float:
    r"""A value annealed linearly to 0: :math:`x_k = x_0\,(1 - k/U)`.

    ``update`` k counts from 0 (the first update uses ``start``); k = U gives 0.
    """
    return start * (1.0 - update / num_updates)


# ---------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------


def cpi_objective(ratio: Tensor, adv: Tensor) -> Tensor:
    r"""The conservative-policy-iteration surrogate per sample, :math:`r_t \hat A_t` (TRPO's objective).

    Its mean is :math:`L^{CPI}` (Kakade & Langford 2002; Schulman et al. 2017, eq. 6). At
    r = 1 its gradient is the policy gradient :math:`\hat A_t\nabla\log\pi_\theta(a_t|s_t)`.

    Parameters
    ----------
    ratio, adv : Tensor, shape (B,)
        :math:`r_t(\theta)` (differentiable) and :math:`\hat A_t` (data).

    Returns
    -------
    Tensor, shape (B,)
    """
    return ratio * adv  # r_t Â_t


def clip_objective(ratio: Tensor, adv: Tensor, clip_eps: float) -> Tensor:
    r"""The clipped surrogate per sample (Schulman et al. 2017, eq. 7).

    .. math:: \min\big(r_t\hat A_t,\ \mathrm{clip}(r_t, 1-\epsilon, 1+\epsilon)\,\hat A_t\big)

    Never above :func:`cpi_objective` (a pessimistic bound), equal to it for
    :math:`r_t \in [1-\epsilon, 1+\epsilon]`, and flat in r (zero gradient) where a move
    would help beyond the clip: :math:`r_t > 1+\epsilon` with Â > 0, :math:`r_t < 1-\epsilon`
    with Â < 0.

    Parameters
    ----------
    ratio, adv : Tensor, shape (B,)
    clip_eps : float
        ε > 0.

    Returns
    -------
    Tensor, shape (B,)
    """
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)  # clip(r_t, 1 − ε, 1 + ε)
    return torch.minimum(ratio * adv, clipped * adv)  # the pessimistic of the two


class PolicyLossStats(NamedTuple):
    """Diagnostics of :func:`policy_loss`, detached scalars."""

    approx_kl: Tensor  # k3 estimate of KL(π_old ‖ π): mean (r − 1) − log r
    clip_frac: Tensor  # share of samples with |r − 1| > ε


def policy_loss(logp: Tensor, logp_old: Tensor, adv: Tensor, clip_eps: float,
                clip_surrogate: bool = True) -> tuple[Tensor, PolicyLossStats]:
    r"""PPO's policy loss :math:`-L^{CLIP}` (or :math:`-L^{CPI}`), with the approximate KL and the clip fraction.

    .. math:: \log r_t = \log\pi_\theta(a_t|s_t) - \log\pi_{\theta_{old}}(a_t|s_t),\qquad
              \widehat{\mathrm{KL}} = \hat{\mathbb E}_t\big[(r_t - 1) - \log r_t\big]

    The KL estimate is k3 (Schulman 2020; :func:`rlteach.kl.kl_k3` is its precise form),
    unbiased for :math:`\mathrm{KL}(\pi_{old}\|\pi_\theta)` on samples of the old policy and
    never negative; here the direct form, two operations in the hot loop (exactly 0 at
    r = 1, a diagnostic where rounding near 0 does not matter). ``logp_old`` and ``adv``
    are data (detached).

    Parameters
    ----------
    logp, logp_old, adv : Tensor, shape (B,)
    clip_eps : float
        ε; also the clip-fraction threshold when ``clip_surrogate`` is False.
    clip_surrogate : bool
        False: minimise :math:`-L^{CPI}` instead.

    Returns
    -------
    loss : Tensor, shape ()
    stats : PolicyLossStats
    """
    log_ratio = logp - logp_old.detach()  # log r_t
    ratio = log_ratio.exp()  # r_t(θ)
    adv = adv.detach()
    objective = clip_objective(ratio, adv, clip_eps) if clip_surrogate else cpi_objective(ratio, adv)
    with torch.no_grad():
        excess = ratio - 1.0  # r − 1
        stats = PolicyLossStats((excess - log_ratio).mean(),  # k3 = (r − 1) − log r
                                (excess.abs() > clip_eps).float().mean())
    return -objective.mean(), stats  # a loss: minimise −L


def value_loss(values: Tensor, values_old: Tensor, returns: Tensor, clip_eps: float | None = None) -> Tensor:
    r"""The critic's loss, optionally clipped around the values at collection time.

    .. math:: L^V = \tfrac12\hat{\mathbb E}_t\big[(V_\theta(s_t) - \hat R_t)^2\big]

    With ``clip_eps`` ε (PPO2 of OpenAI Baselines; Engstrom et al. 2020):

    .. math:: L^V = \tfrac12\hat{\mathbb E}_t\Big[\max\big((V_\theta - \hat R_t)^2,\
              (V_{old} + \mathrm{clip}(V_\theta - V_{old}, -\epsilon, \epsilon) - \hat R_t)^2\big)\Big]

    so a value that moves more than ε from :math:`V_{old}` gets no gradient where the move
    would lower the loss further. ``values_old`` and ``returns`` are data.

    Parameters
    ----------
    values : Tensor, shape (B,)
        :math:`V_\theta(s_t)`, differentiable.
    values_old, returns : Tensor, shape (B,)
        :math:`V_{old}(s_t)` and the targets :math:`\hat R_t`.
    clip_eps : float, optional
        None: no clipping.

    Returns
    -------
    Tensor, shape ()
    """
    returns = returns.detach()
    unclipped = (values - returns).pow(2)
    if clip_eps is None:
        return 0.5 * unclipped.mean()
    values_old = values_old.detach()
    clipped = (values_old + (values - values_old).clamp(-clip_eps, clip_eps) - returns).pow(2)
    return 0.5 * torch.maximum(unclipped, clipped).mean()


def normalize_advantages(adv: Tensor, eps: float = 1e-8) -> Tensor:
    r"""Advantages standardised over the batch, :math:`(\hat A - \bar A) / (s_A + \varepsilon)`.

    Mean 0 and (sample) standard deviation ≈ 1; a batch of one sample, or of equal
    advantages, comes out as zeros.
    """
    if adv.numel() < 2:
        return torch.zeros_like(adv)
    return (adv - adv.mean()) / (adv.std() + eps)


def backward(loss: Tensor) -> None:
    """``loss.backward()`` for a scalar loss, handed straight to autograd's C++ engine.

    The same call, seed gradient (ones) and gradients as ``torch.autograd.backward``,
    without its Python layer (tensor-subclass dispatch, checks of the seed gradient's
    shape, a copy of the context for ``torch.compile``'s device threads): about 0.1 ms
    less per call on a small CPU, where :func:`ppo_update` calls it thousands of times.
    """
    engine = getattr(torch.autograd.Variable, "_execution_engine", None)
    if engine is None:  # a PyTorch without the private engine handle
        loss.backward()
        return
    engine.run_backward((loss,), (torch.ones_like(loss),), False, False, (), allow_unreachable=True,
                        accumulate_grad=True)


def clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> Tensor:
    r"""Scale the gradients in place so that their global norm is at most ``max_norm``; returns the norm before.

    .. math:: g \leftarrow g \cdot \min\Big(1, \frac{c}{\|g\|_2 + 10^{-6}}\Big),
              \qquad \|g\|_2 = \Big(\sum_{p} \|g_p\|_2^2\Big)^{1/2}

    The computation of ``torch.nn.utils.clip_grad_norm_`` (Pascanu et al. 2013) in three
    tensor operations, without its per-call grouping of tensors by device and dtype (all
    parameters of a policy share both): it runs at every minibatch step.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))  # ‖g‖ over every parameter
    torch._foreach_mul_(grads, (max_norm / (norm + 1e-6)).clamp(max=1.0))
    return norm


# ---------------------------------------------------------------------------------------
# Running normalisation of observations and rewards
# ---------------------------------------------------------------------------------------


class RunningMeanStd:
    r"""Running mean and (population) variance of a stream of batches, merged exactly.

    After batches :math:`x^{(1)}, \dots, x^{(k)}` (leading dimension the batch), ``mean``
    and ``var`` equal the mean and ``np.var`` of their concatenation, up to rounding
    (Chan, Golub & LeVeque 1979, the pairwise update). Float64 numpy arrays.

    Parameters
    ----------
    shape : tuple of int
        Shape of one sample.
    """

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = 0

    def update(self, x: np.ndarray) -> None:
        """Merge a batch of shape (B, *shape)."""
        x = np.asarray(x, dtype=np.float64)
        n = x.shape[0]
        if n == 0:
            return
        batch_mean, batch_var = x.mean(axis=0), x.var(axis=0)
        if self.count == 0:
            self.mean, self.var, self.count = batch_mean, batch_var, n
            return
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total  # Σ (x − x̄)² of both
        self.mean = self.mean + delta * n / total
        self.var = m2 / total
        self.count = total

    def normalize(self, x: np.ndarray, clip: float, eps: float = 1e-8) -> np.ndarray:
        """``clip((x − mean) / sqrt(var + eps), −clip, clip)``, as float32."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / np.sqrt(self.var + eps)
        return np.clip(z, -clip, clip).astype(np.float32)


class RewardScaler:
    r"""Rewards divided by the running standard deviation of the discounted return.

    Each environment keeps :math:`G \leftarrow \gamma G + r_t` (reset at an episode's end);
    the rewards are scaled by :math:`1/\sqrt{\mathrm{Var}[G] + \varepsilon}` and clipped, the
    scheme of OpenAI Baselines' ``VecNormalize`` (Engstrom et al. 2020). Scaling, not
    centring: the sign of every reward is kept.
    """

    def __init__(self, num_envs: int, gamma: float, clip: float) -> None:
        self.gamma, self.clip = gamma, clip
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.rms = RunningMeanStd(())

    def __call__(self, rewards: np.ndarray, ended: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Scaled rewards of one vector step; ``valid`` False rows (autoreset steps) are left out."""
        self.returns = np.where(valid, self.returns * self.gamma + rewards, self.returns)
        self.rms.update(self.returns[valid])
        self.returns[ended] = 0.0
        return np.clip(rewards / np.sqrt(self.rms.var + 1e-8), -self.clip, self.clip)


# ---------------------------------------------------------------------------------------
# Environments and rollouts
# ---------------------------------------------------------------------------------------


def make_envs(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """N copies of an environment with flat Box observations and Discrete or flat Box actions.

    The environment's native vector implementation where it has one (``CartPoleVectorEnv``:
    one numpy step for all N, next-step autoreset), else a ``SyncVectorEnv`` with
    same-step autoreset; :func:`rlteach.actor_critic.step_envs` reads both.
    """
    num_envs = positive_int("num_envs", num_envs)
    if gym.spec(env_id).vector_entry_point is not None:
        envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")
    else:
        envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    obs_space, action_space = envs.single_observation_space, envs.single_action_space
    if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1) or not (
            isinstance(action_space, gym.spaces.Discrete)
            or (isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1)):
        envs.close()
        raise ValueError(f"{env_id}: PPO here needs flat Box observations and Discrete or flat Box actions, "
                         f"got {obs_space} and {action_space}")
    return envs


@dataclass
class PPOEnvState:
    """What carries over between rollouts: current observations, episodes, normalisers."""

    obs: Tensor  # (N, d) float32 observations to act from (normalised where configured)
    reset_now: np.ndarray  # (N,) bool: the episode ended at the last step (next-step autoreset resets now)
    episode_return: np.ndarray  # (N,) float64 undiscounted return of each running episode (raw rewards)
    episode_length: np.ndarray  # (N,) int64
    obs_rms: RunningMeanStd | None  # observation statistics, None without normalisation
    reward_scaler: RewardScaler | None
    clip_obs: float = 10.0


@dataclass
class BatchedEnvState:
    """What carries over between rollouts of a batched environment, all on its device."""

    obs: Tensor  # (N, d) float32
    episode_return: Tensor  # (N,) undiscounted return of each running episode
    episode_length: Tensor  # (N,) int64


def _observe(state: PPOEnvState, obs: np.ndarray, valid: np.ndarray | None, device: torch.device) -> Tensor:
    """The observation tensor the policy sees; updates the running statistics with the valid rows."""
    if state.obs_rms is None:
        return torch.as_tensor(obs, dtype=torch.float32, device=device)
    state.obs_rms.update(obs if valid is None else obs[valid])
    return torch.from_numpy(state.obs_rms.normalize(obs, state.clip_obs)).to(device)


def reset_batched_env(env: BatchedEnv, seed: int) -> BatchedEnvState:
    """Reset a batched environment (environment i gets the seed ``seed + i``) and start the bookkeeping."""
    obs = env.reset(seed)
    return BatchedEnvState(obs, torch.zeros_like(obs[:, 0]), torch.zeros_like(obs[:, 0], dtype=torch.int64))


def reset_ppo_envs(envs: gym.vector.VectorEnv, config: PPOConfig, seed: int,
                   device: str | torch.device = "cpu") -> PPOEnvState:
    """Reset the N environments with ``seed`` and start the bookkeeping and the normalisers."""
    obs, _ = envs.reset(seed=seed)
    N = envs.num_envs
    obs_space = envs.single_observation_space
    state = PPOEnvState(torch.empty(0), np.zeros(N, dtype=bool), np.zeros(N, dtype=np.float64),
                        np.zeros(N, dtype=np.int64),
                        RunningMeanStd(tuple(obs_space.shape or ())) if config.normalize_obs else None,
                        RewardScaler(N, config.gamma, config.clip_reward) if config.normalize_reward else None,
                        config.clip_obs)
    state.obs = _observe(state, np.asarray(obs), None, torch.device(device))
    return state


class Rollout(NamedTuple):
    """One rollout of N environments × T steps, time-major, on the learner's device."""

    obs: Tensor  # (T, N, d) s_t as the policy saw it
    actions: Tensor  # (T, N) int64 or (T, N, d_a) float32: a_t as sampled (before action clipping)
    logp: Tensor  # (T, N) log π_old(a_t|s_t)
    values: Tensor  # (T, N) V_old(s_t)
    next_values: Tensor  # (T, N) V_old(s_{t+1}), of the true final observation where an episode ended
    rewards: Tensor  # (T, N) r_t as learned from (scaled where configured)
    terminated: Tensor  # (T, N) bool
    truncated: Tensor  # (T, N) bool
    valid: Tensor  # (T, N) bool: False for next-step autoreset steps


class FinishedEpisode(NamedTuple):
    """An episode that ended during a rollout."""

    step: int  # the rollout row in which it ended
    env: int
    episode_return: float  # undiscounted, raw rewards
    length: int


def collect_rollout(envs: gym.vector.VectorEnv, policy: Policy, state: PPOEnvState, num_steps: int,
                    generator: torch.Generator, clip_actions: bool = True) -> tuple[Rollout, list[FinishedEpisode]]:
    r"""T steps of the N environments with actions from ``policy``; ``state`` is updated in place.

    Each step costs one actor and (usually) one critic forward pass on the N
    observations, in ``torch.inference_mode``, and no ``torch.distributions`` object:
    :meth:`policy.sample` draws a ~ π(·|s) from ``generator`` and returns log π(a|s).
    ``next_values[t]`` is V of the true final observation where an episode ended (what a
    truncation bootstraps from).
    Gaussian actions are stored as drawn (their log-probability is of that draw) and, with
    ``clip_actions``, clipped to the action space's bounds only when sent to the
    environments.

    Returns
    -------
    rollout : Rollout
    episodes : list of FinishedEpisode
    """
    device = state.obs.device
    low = high = None
    if clip_actions and isinstance(envs.single_action_space, gym.spaces.Box):
        low, high = envs.single_action_space.low, envs.single_action_space.high
    rows: list[tuple[Tensor, ...]] = []  # obs, actions, logp, values, next_values
    env_rows: list[tuple[np.ndarray, ...]] = []  # rewards, terminated, truncated, valid
    episodes: list[FinishedEpisode] = []
    with torch.inference_mode():
        values = policy.value(state.obs)  # V(s_0)
        for t in range(num_steps):
            actions, logp = policy.sample(policy.dist(state.obs), generator)  # a_t ~ π(·|s_t)
            env_actions = actions.cpu().numpy()
            if low is not None:
                env_actions = np.clip(env_actions, low, high)
            out = step_envs(envs, env_actions, state.reset_now)
            ended = (out.terminated | out.truncated) & out.valid
            next_obs = _observe(state, np.asarray(out.obs), out.valid, device)
            final_obs = next_obs if out.final_obs is out.obs else _observe_final(state, out.final_obs, device)
            next_values = policy.value(final_obs)  # V(s_{t+1}), the true final observation at an end
            rewards = out.rewards if state.reward_scaler is None else state.reward_scaler(out.rewards, ended, out.valid)
            rows.append((state.obs, actions, logp, values, next_values))
            env_rows.append((rewards, out.terminated, out.truncated, out.valid))
            state.episode_return += np.where(out.valid, out.rewards, 0.0)
            state.episode_length += out.valid
            for i in np.flatnonzero(ended):
                episodes.append(FinishedEpisode(t, int(i), float(state.episode_return[i]), int(state.episode_length[i])))
            state.episode_return[ended] = 0.0
            state.episode_length[ended] = 0
            state.reset_now = ended
            values = next_values if final_obs is next_obs else policy.value(next_obs)  # V of the state acted from next
            state.obs = next_obs
    state.obs = state.obs.clone()  # a normal tensor again, usable where autograd records
    columns = [torch.stack(column) for column in zip(*rows, strict=True)]
    columns += [torch.from_numpy(np.stack(column)).to(device) for column in zip(*env_rows, strict=True)]
    columns[5] = columns[5].to(torch.float32)  # rewards
    return Rollout(*columns), episodes


def collect_batched_rollout(env: BatchedEnv, policy: Policy, state: BatchedEnvState, num_steps: int,
                            generator: torch.Generator, captured: CapturedStep | None = None,
                            ) -> tuple[Rollout, list[FinishedEpisode]]:
    r""":func:`collect_rollout` for a batched environment: every tensor stays on the env's device.

    The environment resets an ended episode within the same step (:mod:`rlteach.envs`), so
    every row is a transition (``valid`` is all True) and ``next_values[t]`` is V of
    ``final_obs``, the observation the episode ended in. The episodes that ended are read
    back to the host once, after the T steps. With ``captured`` (a :class:`CapturedStep`
    of ``env`` and ``policy``), each step is one replay of its CUDA graph: the same rollout.
    """
    if captured is not None:
        rows, returns, lengths, ends = _collect_captured(captured, state, num_steps, generator)
    else:
        rows, returns, lengths, ends = _collect_eager(env, policy, state, num_steps, generator)
    columns = [torch.stack(column) for column in zip(*rows, strict=True)]
    ended_at = torch.stack(ends)
    episodes = [FinishedEpisode(int(t), int(i), float(r), int(n)) for (t, i), r, n in zip(
        ended_at.nonzero().tolist(), torch.stack(returns)[ended_at].tolist(), torch.stack(lengths)[ended_at].tolist(),
        strict=True)]
    obs, actions, logp, values, next_values, rewards, terminated, truncated = columns
    return Rollout(obs, actions, logp, values, next_values, rewards, terminated, truncated,
                   torch.ones_like(ended_at)), episodes


class CapturedStep:
    r"""One step of :func:`collect_batched_rollout` on fixed buffers, captured as a CUDA graph and replayed.

    A call does what one iteration of that loop does: from the observations s_t in
    :attr:`obs`, the policy's draw a_t ~ π(·|s_t) and log π(a_t|s_t), the critic's V(s_t),
    the environments' step (with its same-step auto-reset), V(s_{t+1}) of the final
    observations, and the episode bookkeeping; :attr:`obs` then holds s_{t+1}. Every
    tensor it reads or updates (the environments' :meth:`~rlteach.envs.BatchedEnv.buffers`,
    :attr:`obs`, the running returns and lengths, the policy's parameters, the draw) is
    allocated once, so a CUDA graph recorded from one call replays the next: one launch
    per step instead of one per operation. The optimizer must update the parameters in
    place (:class:`FusedAdam` and ``torch.optim`` do).

    The draw is made outside the graph, from ``generator``, exactly as
    :meth:`~rlteach.policies.CategoricalActorCritic.sample` makes it, and copied into the
    captured buffer: a captured rollout equals the eager one (tested). V(s_t) is computed
    afresh instead of being carried from the previous step, the same numbers.

    Parameters
    ----------
    env : BatchedEnv
        With ``sync_free`` (the default on CUDA): its step never reads a tensor back to the host.
    policy : Policy
    state : BatchedEnvState
        Copied in; :func:`collect_batched_rollout` copies it back after each rollout.
    cuda_graph : bool, optional
        Capture (CUDA only; by default where the environments are on a CUDA device). False
        runs the same step eagerly on the same buffers.
    warmup : int
        Eager calls before the capture, on a side stream, as CUDA graphs need; the
        buffers are restored afterwards, so the environments do not move.
    """

    def __init__(self, env: BatchedEnv, policy: Policy, state: BatchedEnvState, *, cuda_graph: bool | None = None,
                 warmup: int = 3) -> None:
        if not env.sync_free:
            raise ValueError("CapturedStep: the environments' step reads back to the host (env.sync_free is False)")
        cuda_graph = env.device.type == "cuda" if cuda_graph is None else cuda_graph
        if cuda_graph and env.device.type != "cuda":
            raise ValueError(f"CapturedStep: cuda_graph=True needs environments on a CUDA device, not {env.device}")
        self.env, self.policy = env, policy
        self.obs = state.obs.clone()  # s_t, overwritten with s_{t+1} by every call
        self.episode_return = state.episode_return.clone()
        self.episode_length = state.episode_length.clone()
        with torch.inference_mode():
            self._dist = policy.dist(self.obs)  # fixes the shape of the draw
            self.noise = torch.zeros_like(policy.sample_noise(self._dist, torch.Generator(device=self.obs.device)))
        self.graph: torch.cuda.CUDAGraph | None = None
        self._outputs: tuple[Tensor, ...] = ()
        if cuda_graph:
            saved = [b.clone() for b in self._buffers()]
            side = torch.cuda.Stream(device=env.device)
            side.wait_stream(torch.cuda.current_stream(env.device))
            with torch.cuda.stream(side), torch.inference_mode():
                for _ in range(warmup):
                    self._step()
            torch.cuda.current_stream(env.device).wait_stream(side)
            for buffer, value in zip(self._buffers(), saved, strict=True):
                buffer.copy_(value)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph), torch.inference_mode():
                self._outputs = self._step()

    def _buffers(self) -> list[Tensor]:
        return [*self.env.buffers(), self.obs, self.episode_return, self.episode_length]

    def _step(self) -> tuple[Tensor, ...]:
        """s_t, a_t, log π, V(s_t), V(s_{t+1}), r_t, terminated, truncated, return and length so far, ended."""
        policy, obs = self.policy, self.obs
        actions, logp = policy.sample_from(policy.dist(obs), self.noise)  # a_t ~ π(·|s_t)
        values = policy.value(obs)  # V(s_t)
        out = self.env.step(actions)
        next_values = policy.value(out.final_obs)  # V(s_{t+1}), the true final observation at an end
        ended = out.terminated | out.truncated
        self.episode_return.add_(out.reward)
        self.episode_length.add_(1)
        outputs = (obs.clone(), actions, logp, values, next_values, out.reward.to(torch.float32), out.terminated,
                   out.truncated, self.episode_return.clone(), self.episode_length.clone(), ended)
        self.episode_return.masked_fill_(ended, 0.0)
        self.episode_length.masked_fill_(ended, 0)
        obs.copy_(out.obs)
        return outputs

    def __call__(self, generator: torch.Generator) -> tuple[Tensor, ...]:
        """One step, its draw from ``generator``; fresh tensors (see :meth:`_step` for the order)."""
        with torch.inference_mode():
            self.noise.copy_(self.policy.sample_noise(self._dist, generator))
            if self.graph is None:
                return self._step()
            self.graph.replay()
            return tuple(t.clone() for t in self._outputs)


def _collect_eager(env: BatchedEnv, policy: Policy, state: BatchedEnvState, num_steps: int,
                   generator: torch.Generator) -> tuple[list[tuple[Tensor, ...]], list[Tensor], list[Tensor], list[Tensor]]:
    """The rows of :func:`collect_batched_rollout`, step by step; ``state`` is updated."""
    rows: list[tuple[Tensor, ...]] = []  # obs, actions, logp, values, next_values, rewards, terminated, truncated
    returns, lengths, ends = [], [], []
    on_cpu = state.obs.device.type == "cpu" and not env.sync_free
    with torch.inference_mode():
        values = policy.value(state.obs)  # V(s_0)
        for _ in range(num_steps):
            actions, logp = policy.sample(policy.dist(state.obs), generator)  # a_t ~ π(·|s_t)
            out = env.step(actions)
            next_values = policy.value(out.final_obs)  # V(s_{t+1}), the true final observation at an end
            ended = out.terminated | out.truncated
            rows.append((state.obs, actions, logp, values, next_values, out.reward.to(torch.float32),
                         out.terminated, out.truncated))
            state.episode_return = state.episode_return + out.reward
            state.episode_length = state.episode_length + 1
            returns.append(state.episode_return)
            lengths.append(state.episode_length)
            ends.append(ended)
            state.episode_return = torch.where(ended, 0.0, state.episode_return)
            state.episode_length = torch.where(ended, 0, state.episode_length)
            if on_cpu and not bool(ended.any()):  # the next state is the final one: V is known (a free check on the CPU)
                values = next_values
            else:
                values = torch.where(ended, policy.value(out.obs), next_values)  # V of the reset state where one ended
            state.obs = out.obs
    state.obs = state.obs.clone()  # a normal tensor again, usable where autograd records
    state.episode_return, state.episode_length = state.episode_return.clone(), state.episode_length.clone()
    return rows, returns, lengths, ends


def _collect_captured(step: CapturedStep, state: BatchedEnvState, num_steps: int,
                      generator: torch.Generator) -> tuple[list[tuple[Tensor, ...]], list[Tensor], list[Tensor], list[Tensor]]:
    """The rows of :func:`collect_batched_rollout` from ``num_steps`` calls of ``step``; ``state`` copied in and back."""
    for buffer, value in zip((step.obs, step.episode_return, step.episode_length),
                             (state.obs, state.episode_return, state.episode_length), strict=True):
        buffer.copy_(value)
    rows, returns, lengths, ends = [], [], [], []
    for _ in range(num_steps):
        *row, episode_return, episode_length, ended = step(generator)
        rows.append(tuple(row))
        returns.append(episode_return)
        lengths.append(episode_length)
        ends.append(ended)
    state.obs, state.episode_return, state.episode_length = (
        step.obs.clone(), step.episode_return.clone(), step.episode_length.clone())
    return rows, returns, lengths, ends


def _observe_final(state: PPOEnvState, final_obs: np.ndarray, device: torch.device) -> Tensor:
    """The true final observations as the policy sees them (statistics not updated)."""
    if state.obs_rms is None:
        return torch.as_tensor(final_obs, dtype=torch.float32, device=device)
    return torch.from_numpy(state.obs_rms.normalize(final_obs, state.clip_obs)).to(device)


def rollout_advantages(rollout: Rollout, gamma: float, gae_lambda: float, use_gae: bool = True) -> tuple[Tensor, Tensor]:
    r"""Advantages and critic targets of a rollout, shape (T, N) each.

    ``use_gae``: :math:`\hat A = \mathrm{GAE}(\gamma,\lambda)` (:func:`rlteach.advantages.gae`) and
    :math:`\hat R = \hat A + V`. Otherwise the plain discounted return
    :math:`\hat R = G_t` (:func:`rlteach.advantages.discounted_returns`, bootstrapped at
    truncations and at the rollout's end) and :math:`\hat A = G_t - V(s_t)`, which is
    GAE with λ = 1.
    """
    r = rollout
    if use_gae:
        adv = gae(r.rewards, r.values, r.next_values, r.terminated, r.truncated, gamma, gae_lambda)
        return adv, adv + r.values  # λ-return Â + V
    returns = discounted_returns(r.rewards, r.next_values, r.terminated, r.truncated, gamma)
    return returns - r.values, returns


# ---------------------------------------------------------------------------------------
# The update
# ---------------------------------------------------------------------------------------


@dataclass
class PPOUpdateStats:
    """Diagnostics of one :func:`ppo_update`, means over the minibatch steps taken (floats)."""

    policy_loss: float
    value_loss: float
    entropy: float  # with the bonus, the mean over the steps; without, of the updated policy on the batch
    approx_kl: float  # k3, the last minibatch's (the one early stopping looks at)
    clip_frac: float
    explained_variance: float  # of the rollout's values for its targets
    grad_steps: int  # optimizer steps taken
    epochs: int  # epochs begun (fewer than K after an early stop)
    stopped_early: bool  # the approximate KL exceeded target_kl
    lr: float  # the step size used
    clip_eps: float  # the ε used


class Batch(NamedTuple):
    """The flattened valid samples of a rollout, B = number of valid (t, n)."""

    obs: Tensor  # (B, d)
    actions: Tensor  # (B,) or (B, d_a)
    logp: Tensor  # (B,) log π_old(a|s)
    values: Tensor  # (B,) V_old(s)
    adv: Tensor  # (B,)
    returns: Tensor  # (B,)


def flatten_rollout(rollout: Rollout, adv: Tensor, returns: Tensor, normalize_adv: bool) -> Batch:
    """The valid samples of a ``(T, N)`` rollout as one batch; advantages standardised over it if asked."""
    mask = rollout.valid.reshape(-1)
    obs = rollout.obs.reshape(mask.shape[0], -1)[mask]
    actions = rollout.actions.reshape(mask.shape[0], *rollout.actions.shape[2:])[mask]
    flat_adv = adv.reshape(-1)[mask]
    if normalize_adv:
        flat_adv = normalize_advantages(flat_adv)
    return Batch(obs, actions, rollout.logp.reshape(-1)[mask], rollout.values.reshape(-1)[mask], flat_adv,
                 returns.reshape(-1)[mask])


def ppo_update(policy: Policy, optimizer: Optimizer, batch: Batch, config: PPOConfig,
               generator: torch.Generator, clip_eps: float) -> PPOUpdateStats:
    r"""K epochs of minibatch steps on :math:`-L^{CLIP} + c_v L^V - c_e H`.

    Each epoch cuts a permutation of the B samples (drawn from ``generator``; the rollout
    order without ``shuffle_minibatches``) into ``num_minibatches`` minibatches and takes
    one Adam step on each (one minibatch is the whole batch: nothing is drawn), the global gradient norm clipped to ``max_grad_norm``. With
    ``target_kl``, the update stops, before the step, at the first minibatch whose
    approximate KL (k3, against the rollout's policy) exceeds it.

    Parameters
    ----------
    policy : CategoricalActorCritic or GaussianActorCritic
    optimizer : FusedAdam or torch.optim.Optimizer
        Over ``policy.parameters()``; its step size is set by the caller.
    batch : Batch
    config : PPOConfig
    generator : torch.Generator
        For the permutations, on the batch's device.
    clip_eps : float
        ε for this update (annealed by the caller where configured).

    Returns
    -------
    PPOUpdateStats
    """
    size = batch.adv.shape[0]
    minibatch = -(-size // config.num_minibatches)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    value_clip = clip_eps if config.clip_value else None
    shuffle = config.shuffle_minibatches and minibatch < size  # one full-batch minibatch: nothing to shuffle
    history: list[Tensor] = []  # per step: policy loss, value loss, entropy, clip fraction (stacked once, at the end)
    approx_kl = batch.adv.new_zeros(())
    grad_steps, epochs, stopped = 0, 0, False
    for _ in range(config.update_epochs):
        epochs += 1
        order = torch.randperm(size, generator=generator, device=generator.device).to(batch.adv.device) if shuffle else None
        for start in range(0, size, minibatch):
            if minibatch == size:
                mb = batch
            else:
                index = order[start:start + minibatch] if order is not None else slice(start, start + minibatch)
                mb = Batch(*(x[index] for x in batch))
            dist = policy.dist(mb.obs)
            pi_loss, pi_stats = policy_loss(policy.logp(dist, mb.actions), mb.logp, mb.adv, clip_eps,
                                            config.clip_surrogate)
            approx_kl = pi_stats.approx_kl
            if config.target_kl is not None and float(approx_kl) > config.target_kl:
                stopped = True
                break
            v_loss = value_loss(policy.value(mb.obs), mb.values, mb.returns, value_clip)
            loss = pi_loss + config.vf_coef * v_loss
            if config.ent_coef > 0:
                entropy = policy.entropy(dist).mean()
                loss = loss - config.ent_coef * entropy  # the bonus: minimise −c_e H
                history.append(entropy.detach())
            optimizer.zero_grad(set_to_none=True)
            backward(loss)
            if math.isfinite(config.max_grad_norm):
                clip_grad_norm(params, config.max_grad_norm)
            optimizer.step()
            grad_steps += 1
            history += [pi_loss.detach(), v_loss.detach(), pi_stats.clip_frac]
        if stopped:
            break
    with torch.no_grad():
        entropy_after = policy.entropy(policy.dist(batch.obs)).mean()
    width = 4 if config.ent_coef > 0 else 3
    means = torch.stack(history).view(-1, width).mean(0).tolist() if history else [math.nan] * width
    entropy_mean = means.pop(0) if config.ent_coef > 0 else float(entropy_after)
    return PPOUpdateStats(means[0], means[1], entropy_mean, float(approx_kl), means[2],
                          float(explained_variance(batch.values, batch.returns)), grad_steps, epochs, stopped,
                          float(optimizer.param_groups[0]["lr"]), clip_eps)


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------


class FusedAdam:
    r"""Adam (Kingma & Ba 2015) over one list of parameters, on PyTorch's fused kernel.

    With the gradient :math:`g`, step count k, step size α and :math:`\beta_1 = 0.9`,
    :math:`\beta_2 = 0.999`:

    .. math:: m \leftarrow \beta_1 m + (1-\beta_1)\,g,\qquad v \leftarrow \beta_2 v + (1-\beta_2)\,g^2,\qquad
              \theta \leftarrow \theta - \frac{\alpha}{1-\beta_1^k}\,
              \frac{m}{\sqrt{v / (1-\beta_2^k)} + \epsilon}

    Bit for bit the numbers of ``torch.optim.Adam(params, lr, eps=eps, fused=True)`` (the
    same ``torch._fused_adam_`` kernel, one call for every parameter), with the part of its
    interface that :func:`ppo_update` uses: ``param_groups[0]["lr"]`` (set it to anneal),
    :meth:`zero_grad` and :meth:`step`. It leaves out ``torch.optim``'s hooks, state
    dicts and ``torch.compile`` support: the first ``torch.optim`` optimizer imports
    ``torch._dynamo``, 800 modules, seconds of start-up on a small machine (an 8k-step
    ``rlteach-train ppo CartPole-v1`` run used 3.5 s less CPU time without it).

    Parameters
    ----------
    params : iterable of Tensor
        Leaf tensors on one device (CPU or CUDA) with ``requires_grad``.
    lr, eps : float
        α and ε.
    """

    def __init__(self, params: Iterable[Tensor], lr: float, eps: float = 1e-8) -> None:
        self.params = list(params)
        self.param_groups: list[dict[str, Any]] = [{"params": self.params, "lr": lr, "betas": (0.9, 0.999), "eps": eps}]
        self.exp_avgs = [torch.zeros_like(p) for p in self.params]  # m
        self.exp_avg_sqs = [torch.zeros_like(p) for p in self.params]  # v
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]  # k, per parameter

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) every parameter's gradient."""
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step on the parameters that have a gradient."""
        live = [i for i, p in enumerate(self.params) if p.grad is not None]  # others keep m, v and k (as torch.optim)
        if not live:
            return
        params = [self.params[i] for i in live]
        grads = [p.grad for p in params if p.grad is not None]
        exp_avgs, exp_avg_sqs = [self.exp_avgs[i] for i in live], [self.exp_avg_sqs[i] for i in live]
        steps = [self.steps[i] for i in live]
        torch._foreach_add_(steps, 1.0)  # k ← k + 1
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=float(group["lr"]), beta1=beta1,
                           beta2=beta2, weight_decay=0.0, eps=float(group["eps"]), amsgrad=False, maximize=False)


Optimizer = FusedAdam | torch.optim.Optimizer


def make_optimizer(policy: nn.Module, config: PPOConfig) -> Optimizer:
    """Adam over every parameter, with ``config.adam_eps``.

    :class:`FusedAdam` where the parameters live on the CPU or a CUDA device (the same
    numbers as ``torch.optim.Adam(fused=True)``, without ``torch.optim``'s start-up and
    per-step costs), else ``torch.optim.Adam``.
    """
    params = list(policy.parameters())
    if hasattr(torch, "_fused_adam_") and params and params[0].device.type in ("cpu", "cuda"):
        return FusedAdam(params, lr=config.lr, eps=config.adam_eps)
    return torch.optim.Adam(params, lr=config.lr, eps=config.adam_eps, foreach=True)


class PPOResult(NamedTuple):
    """The trained policy, the training log, every update's diagnostics, the observation statistics."""

    policy: Policy
    log: TrainingLog
    updates: list[PPOUpdateStats]
    obs_rms: RunningMeanStd | None  # the statistics the policy's inputs were normalised with


class OnPolicyConfig(Protocol):
    """What :func:`start_on_policy` and :func:`run_on_policy` read from a config (:class:`PPOConfig`, ``TRPOConfig``)."""

    @property
    def env_id(self) -> str: ...
    @property
    def num_envs(self) -> int: ...
    @property
    def num_steps(self) -> int: ...
    @property
    def hidden_sizes(self) -> tuple[int, ...]: ...
    @property
    def orthogonal_init(self) -> bool: ...
    @property
    def log_std_init(self) -> float: ...
    @property
    def clip_actions(self) -> bool: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def num_updates(self) -> int: ...


StatsT = TypeVar("StatsT")


class OnPolicySetup(NamedTuple):
    """What :func:`start_on_policy` builds: the environments, the policy, the sampling generator, the carried state."""

    envs: gym.vector.VectorEnv | BatchedEnv
    policy: Policy
    generator: torch.Generator  # action draws and minibatch permutations, on the learner's device
    state: PPOEnvState | BatchedEnvState
    clock: Callable[[], float]  # seconds for EpisodeRecord.wall_s


def start_on_policy(config: OnPolicyConfig, seed: int, device: str | torch.device,
                    reset: Callable[..., PPOEnvState], clock: Callable[[], float] | None = None,
                    **policy_options: object) -> OnPolicySetup:
    """The set-up that :func:`train_ppo` and :func:`rlteach.trpo.train_trpo` share.

    ``config.num_envs`` environments (:func:`make_envs`; with ``env_backend="batched"``,
    :func:`rlteach.envs.make_batched_env` on ``device``), an actor-critic initialised from
    ``seed`` (:func:`rlteach.policies.make_actor_critic` with ``config.hidden_sizes``,
    ``config.orthogonal_init``, ``config.log_std_init`` and ``policy_options``), a
    generator seeded with ``seed`` on ``device``, and the environments reset by
    ``reset(envs, config, seed, device)`` (a batched one by :func:`reset_batched_env`). ``clock`` defaults to seconds since this call.
    """
    started = time.perf_counter()
    device = torch.device(device)
    envs: gym.vector.VectorEnv | BatchedEnv
    if getattr(config, "env_backend", "gymnasium") == "batched":
        randomize = {name: (low, high) for name, low, high in getattr(config, "randomize", ())}
        envs = make_batched_env(config.env_id, config.num_envs, device=device, randomize=randomize)
    else:
        envs = make_envs(config.env_id, config.num_envs)
    policy = make_actor_critic(envs.single_observation_space, envs.single_action_space, config.hidden_sizes,
                               generator=torch.Generator().manual_seed(seed), orthogonal_init=config.orthogonal_init,
                               log_std_init=config.log_std_init, **policy_options).to(device)  # type: ignore[arg-type]
    generator = torch.Generator(device=device).manual_seed(seed)
    state = reset_batched_env(envs, seed) if isinstance(envs, BatchedEnv) else reset(envs, config, seed, device)
    return OnPolicySetup(envs, policy, generator, state,
                         clock if clock is not None else (lambda: time.perf_counter() - started))


def run_on_policy(name: str, config: OnPolicyConfig, setup: OnPolicySetup,
                  improve: Callable[[int, Rollout, int], tuple[StatsT, UpdateRecord]], *, progress: bool = True,
                  on_episode: Callable[[EpisodeRecord], None] | None = None, target_return: float | None = None,
                  window: int = 100) -> tuple[TrainingLog, list[StatsT]]:
    """The loop that :func:`train_ppo` and :func:`rlteach.trpo.train_trpo` share; closes the environments (also on an error).

    For each of ``config.num_updates`` iterations k: collect N×T steps
    (:func:`collect_rollout`), log the episodes that ended, then
    ``improve(k, rollout, env_steps)``, the algorithm's update, which returns its
    diagnostics and the :class:`~rlteach.actor_critic.UpdateRecord` to log. Stops early
    once the mean return of the last ``window`` episodes reaches ``target_return``.
    """
    envs, policy, generator, state, clock = setup
    log, updates, env_steps = TrainingLog(), [], 0
    captured = None
    if getattr(config, "cuda_graph", False):
        if not isinstance(envs, BatchedEnv) or envs.device.type != "cuda":
            envs.close()
            raise ValueError(f"cuda_graph=True: CUDA graphs need the batched environments on a CUDA device, "
                             f"not {getattr(envs, 'device', 'the CPU')}")
        assert isinstance(state, BatchedEnvState)
        captured = CapturedStep(envs, policy, state)
    try:
        with tqdm(total=config.num_updates * config.batch_size, disable=not progress, unit="step",
                  desc=f"{name} {config.env_id}") as bar:
            for k in range(config.num_updates):
                if isinstance(envs, BatchedEnv):
                    assert isinstance(state, BatchedEnvState)
                    rollout, episodes = collect_batched_rollout(envs, policy, state, config.num_steps, generator,
                                                                captured)
                else:
                    assert isinstance(state, PPOEnvState)
                    rollout, episodes = collect_rollout(envs, policy, state, config.num_steps, generator,
                                                        config.clip_actions)
                steps_per_row = rollout.valid.sum(dim=1).cumsum(0).tolist()  # transitions up to and including row t
                for episode in episodes:
                    record = EpisodeRecord(env_steps + steps_per_row[episode.step], episode.episode_return,
                                           episode.length, clock())
                    log.episodes.append(record)
                    if on_episode is not None:
                        on_episode(record)
                env_steps += steps_per_row[-1]
                stats, update_record = improve(k, rollout, env_steps)
                updates.append(stats)
                log.updates.append(update_record)
                bar.update(config.batch_size)
                if progress:
                    bar.set_postfix(mean_return=f"{log.mean_return(window):.1f}", refresh=False)
                if target_return is not None and len(log.episodes) >= window and log.mean_return(window) >= target_return:
                    break
    finally:
        envs.close()
    return log, updates


def ppo_iteration(policy: Policy, optimizer: Optimizer, config: PPOConfig, generator: torch.Generator, update: int,
                  rollout: Rollout, env_steps: int) -> tuple[PPOUpdateStats, UpdateRecord]:
    """One PPO improvement on a rollout: anneal lr and ε where configured, advantages, flatten, :func:`ppo_update`."""
    lr = linear_schedule(config.lr, update, config.num_updates) if config.anneal_lr else config.lr
    optimizer.param_groups[0]["lr"] = lr
    clip_eps = linear_schedule(config.clip_eps, update, config.num_updates) if config.anneal_clip_eps else config.clip_eps
    adv, returns = rollout_advantages(rollout, config.gamma, config.gae_lambda, config.use_gae)
    batch = flatten_rollout(rollout, adv, returns, config.normalize_adv)
    stats = ppo_update(policy, optimizer, batch, config, generator, clip_eps)
    return stats, UpdateRecord(env_steps, stats.policy_loss, stats.value_loss, stats.entropy, stats.explained_variance)


def train_ppo(config: PPOConfig, seed: int, *, device: str | torch.device = "cpu", progress: bool = True,
              clock: Callable[[], float] | None = None, on_episode: Callable[[EpisodeRecord], None] | None = None,
              target_return: float | None = None, window: int = 100) -> PPOResult:
    r"""Train PPO on ``config.env_id`` (Schulman et al. 2017, algorithm 1, actor-critic style).

    For each of ``config.num_updates`` iterations: collect N×T steps
    (:func:`collect_rollout`), anneal the step size and ε where configured, compute
    advantages (:func:`rollout_advantages`), flatten the valid samples
    (:func:`flatten_rollout`) and run K epochs of minibatch steps (:func:`ppo_update`):
    :func:`ppo_iteration` inside the loop :func:`run_on_policy` that TRPO shares.

    Parameters
    ----------
    config : PPOConfig
    seed : int
        Seeds the environments, the initialisation, the action draws and the minibatch
        permutations (all local generators).
    device : str or torch.device
    progress : bool
        A tqdm bar over the step budget.
    clock : callable, optional
        Seconds for :attr:`EpisodeRecord.wall_s`; by default since this call began.
    on_episode : callable, optional
        Called with each :class:`EpisodeRecord` as it is recorded.
    target_return : float, optional
        Stop once the mean return of the last ``window`` episodes reaches it.
    window : int

    Returns
    -------
    PPOResult
        ``log.episodes[i].env_steps`` counts transitions (next-step autoreset steps left out).
    """
    setup = start_on_policy(config, seed, device, reset_ppo_envs, clock, state_dependent_std=config.state_dependent_std)
    optimizer = make_optimizer(setup.policy, config)
    log, updates = run_on_policy("PPO", config, setup,
                                 functools.partial(ppo_iteration, setup.policy, optimizer, config, setup.generator),
                                 progress=progress, on_episode=on_episode, target_return=target_return, window=window)
    return PPOResult(setup.policy, log, updates, getattr(setup.state, "obs_rms", None))


__all__ = [
    "PENDULUM",
    "Batch",
    "BatchedEnvState",
    "CapturedStep",
    "FusedAdam",
    "OnPolicyConfig",
    "OnPolicySetup",
    "PPOConfig",
    "PPOEnvState",
    "PPOResult",
    "PPOUpdateStats",
    "PolicyLossStats",
    "RewardScaler",
    "Rollout",
    "RunningMeanStd",
    "backward",
    "clip_grad_norm",
    "clip_objective",
    "collect_batched_rollout",
    "collect_rollout",
    "cpi_objective",
    "flatten_rollout",
    "linear_schedule",
    "make_envs",
    "make_optimizer",
    "normalize_advantages",
    "policy_loss",
    "ppo_iteration",
    "ppo_update",
    "reset_batched_env",
    "reset_ppo_envs",
    "rollout_advantages",
    "run_on_policy",
    "start_on_policy",
    "train_ppo",
    "value_loss",
]
