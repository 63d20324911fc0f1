r"""Trust Region Policy Optimization (Schulman et al. 2015): the natural step, a line search, a fitted critic.

TRPO maximises the surrogate of the policy's improvement under a bound on how far the
policy may move, measured by the mean KL over the states of the rollout:

.. math:: \max_\theta\ L(\theta) = \hat{\mathbb E}_t\Big[\frac{\pi_\theta(a_t|s_t)}{\pi_{\theta_{old}}(a_t|s_t)}\,\hat A_t\Big]
          \quad\text{s.t.}\quad \bar D_{\mathrm{KL}}(\theta_{old}, \theta)
          = \hat{\mathbb E}_t\big[\mathrm{KL}(\pi_{\theta_{old}}(\cdot|s_t)\,\|\,\pi_\theta(\cdot|s_t))\big] \le \delta

Linearising L (gradient g) and taking the KL to second order (the Fisher F) gives the
natural step :math:`s = \sqrt{2\delta / x^\top F x}\; x` with :math:`x \approx F^{-1} g`
by conjugate gradient on Fisher-vector products (:mod:`rlteach.natural_gradient`). The
quadratic model is only a model, so a backtracking line search along s checks the true
KL and the true surrogate before a step is kept (Schulman et al. 2015, Appendix C).

==============================================  ========================================
piece                                           function
==============================================  ========================================
:math:`L(\theta)` from log-probabilities        :func:`surrogate`
the parameters the step moves                   :func:`policy_parameters`
θ ↦ (L(θ), D̄_KL) on one batch                  :class:`PolicyObjective`
backtracking along the natural step             :func:`backtracking_line_search`
the critic, Adam on minibatches                 :func:`fit_value_function`
one TRPO update, diagnostics returned           :func:`trpo_update` → :class:`TRPOStats`
the loop over gymnasium vector environments     :func:`train_trpo`
==============================================  ========================================

**The critic** is fitted after the policy step, by ``vf_epochs`` epochs of Adam on
shuffled minibatches of :math:`\tfrac12(V(s_t) - \hat R_t)^2` with the λ-returns
:math:`\hat R_t = \hat A_t + V_{old}(s_t)` as targets (the choice of Stable-Baselines3's
TRPO; the original fitted V with a trust region of its own, Schulman et al. 2016, §5).
Adam is cheap per step and keeps its moments from one rollout to the next.

Rollouts, environments, GAE and advantage standardisation are shared with PPO
(:func:`rlteach.ppo.collect_rollout`, :func:`rlteach.ppo.rollout_advantages`,
:func:`rlteach.ppo.flatten_rollout`) and the policies are those of
:mod:`rlteach.policies` (a categorical policy from ``log_softmax`` logits, or a diagonal
Gaussian with a free log σ), so no ``torch.distributions`` object is built per step.
Time-major ``(T, N)`` rollouts, ``terminated`` and ``truncated`` kept apart, next-step
autoreset steps left out, local generators only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from rlteach._validate import positive_int, positive_number, unit_interval
from rlteach.actor_critic import EpisodeRecord, TrainingLog, UpdateRecord, explained_variance
from rlteach.natural_gradient import HessianVectorProduct, flat_grad, natural_gradient_step
from rlteach.policies import CategoricalActorCritic, GaussianActorCritic
from rlteach.ppo import (
    Batch,
    PPOEnvState,
    RewardScaler,
    Rollout,
    RunningMeanStd,
    flatten_rollout,
    rollout_advantages,
    run_on_policy,
    start_on_policy,
)

Policy = CategoricalActorCritic | GaussianActorCritic

__all__ = [
    "PENDULUM",
    "LineSearchResult",
    "PolicyObjective",
    "SearchObjective",
    "TRPOConfig",
    "TRPOResult",
    "TRPOStats",
    "backtracking_line_search",
    "fit_value_function",
    "policy_parameters",
    "reset_trpo_envs",
    "surrogate",
    "train_trpo",
    "trpo_iteration",
    "trpo_update",
]

# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TRPOConfig:
    """Hyperparameters of TRPO with GAE and an Adam-fitted critic.

    The defaults are for CartPole-v1: 8 environments × 128 steps (1024 samples) per
    update, δ = 0.01 (sb3-contrib's ``target_kl``), γ = 0.99 and λ = 0.98 as
    rl-baselines3-zoo's TRPO entry, CG damping 0.1 (sb3-contrib's default), a line
    search that shrinks the step by 0.8 up to 10 times, and 10 epochs of 2 Adam
    minibatches for the critic. With seeds 1, 2, 3 the mean of 100 consecutive training
    episodes reached 475 after 151k, 75k and 63k transitions; δ = 0.02 took 148k, 122k
    and 188k, and δ = 0.04 did not reach it within 300k (seeds 1, 2). :data:`PENDULUM`
    holds settings for Pendulum-v1 (continuous actions).
    """

    env_id: str = "CartPole-v1"
    num_envs: int = 8  # N parallel environments
    num_steps: int = 128  # T steps per environment and rollout
    total_steps: int = 300_000  # budget of transitions, all environments together
    gamma: float = 0.99  # γ
    gae_lambda: float = 0.98  # λ of GAE
    normalize_adv: bool = True  # standardise Â over the rollout's batch
    max_kl: float = 0.01  # δ, the trust region's radius in nats of mean KL(π_old ‖ π)
    damping: float = 0.1  # λ of (F + λI) in the Fisher-vector products
    cg_iters: int = 10  # conjugate-gradient iterations per update
    cg_tol: float = 1e-10  # CG stops once ‖r‖ ≤ cg_tol·‖g‖
    backtrack_coef: float = 0.8  # the line search tries s, βs, β²s, ...
    backtrack_iters: int = 10  # step sizes tried before the update is rejected
    vf_lr: float = 1e-3  # Adam step size of the critic
    vf_epochs: int = 10  # epochs of critic minibatches per rollout
    vf_minibatches: int = 2  # critic minibatches per epoch
    hidden_sizes: tuple[int, ...] = (64, 64)  # of the actor's and the critic's tanh MLPs
    orthogonal_init: bool = True  # orthogonal weights (else PyTorch's default init)
    # continuous actions
    log_std_init: float = 0.0  # initial log σ of a Gaussian policy (a free vector, state-independent)
    normalize_obs: bool = False  # standardise observations with running mean/std
    normalize_reward: bool = False  # divide rewards by the running std of the discounted return
    clip_obs: float = 10.0  # normalised observations are clipped to ±clip_obs
    clip_reward: float = 10.0  # normalised rewards are clipped to ±clip_reward
    clip_actions: bool = True  # clip Gaussian actions to the action space's bounds before stepping

    def __post_init__(self) -> None:
        if not isinstance(self.env_id, str) or not self.env_id:
            raise TypeError(f"env_id: expected a gymnasium environment id, got {self.env_id!r}")
        for name in ("num_envs", "num_steps", "total_steps", "cg_iters", "backtrack_iters", "vf_epochs",
                     "vf_minibatches"):
            positive_int(name, getattr(self, name))
        if self.vf_minibatches > self.batch_size:
            raise ValueError(f"vf_minibatches={self.vf_minibatches} exceeds the batch of {self.batch_size} samples")
        unit_interval("gamma", self.gamma, "a discount")
        unit_interval("gae_lambda", self.gae_lambda, "a trace-decay λ")
        positive_number("max_kl", self.max_kl, what="the KL radius δ")
        positive_number("damping", self.damping, allow_zero=True, what="a damping")
        positive_number("cg_tol", self.cg_tol, allow_zero=True, what="a tolerance")
        if not 0.0 < self.backtrack_coef < 1.0:
            raise ValueError(f"backtrack_coef={self.backtrack_coef}: the shrink factor must lie in (0, 1)")
        positive_number("vf_lr", self.vf_lr, what="a step size")
        positive_number("clip_obs", self.clip_obs, what="a clip level")
        positive_number("clip_reward", self.clip_reward, what="a clip level")
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
        """Rollouts (and TRPO updates) in the budget, ⌈total_steps / (N·T)⌉."""
        return -(-self.total_steps // self.batch_size)


PENDULUM = TRPOConfig(
    env_id="Pendulum-v1", num_envs=4, num_steps=256, total_steps=100_000, gamma=0.9, gae_lambda=0.95,
    max_kl=0.02, vf_epochs=10, vf_minibatches=8, normalize_reward=True,
)
"""TRPO settings for Pendulum-v1: γ = 0.9 and λ = 0.95 as rl-baselines3-zoo's Pendulum-v1 entry,
with reward scaling for the critic instead of its state-dependent exploration. Seed 1: the
first 20 episodes average −1196 (a random policy), the last 20 of the 100k steps −308."""


# ---------------------------------------------------------------------------------------
# The surrogate, the objective on a batch, the line search
# ---------------------------------------------------------------------------------------


def surrogate(logp: Tensor, logp_old: Tensor, adv: Tensor) -> Tensor:
    r"""TRPO's surrogate objective, the importance-weighted advantage (to maximise).

    .. math:: L(\theta) = \hat{\mathbb E}_t\big[r_t(\theta)\,\hat A_t\big],\qquad
              r_t(\theta) = \exp\big(\log\pi_\theta(a_t|s_t) - \log\pi_{\theta_{old}}(a_t|s_t)\big)

    ``logp_old`` and ``adv`` are data (detached). At θ = θ_old every ratio is 1, so
    :math:`L = \hat{\mathbb E}[\hat A]` and
    :math:`\nabla L = \hat{\mathbb E}[\hat A_t \nabla\log\pi_\theta(a_t|s_t)]`, the policy
    gradient (Kakade & Langford 2002; Schulman et al. 2015, eq. 14).

    Parameters
    ----------
    logp : Tensor, shape (B,)
        log π_θ(a|s), differentiable.
    logp_old : Tensor, shape (B,)
        log π_old(a|s) of the same actions, at collection time.
    adv : Tensor, shape (B,)
        Â.

    Returns
    -------
    Tensor, shape ()
    """
    log_ratio = logp - logp_old.detach()  # log r_t
    ratio = log_ratio.exp()  # r_t(θ)
    return (ratio * adv.detach()).mean()  # Ê[r_t Â_t]


def policy_parameters(policy: nn.Module) -> list[nn.Parameter]:
    """The parameters TRPO's step moves: all but the critic's (the actor, and a Gaussian's free log σ)."""
    return [p for name, p in policy.named_parameters() if not name.startswith("critic.")]


class PolicyObjective:
    r"""θ ↦ (L(θ), D̄_KL(θ_old, θ)) on one batch: what the line search checks.

    Calling it writes the flat vector θ (shape (P,), in the order of
    :func:`policy_parameters`) into the policy and evaluates, without gradients, the
    surrogate :func:`surrogate` and the exact mean KL
    :math:`\hat{\mathbb E}_t[\mathrm{KL}(\pi_{old}(\cdot|s_t)\|\pi_\theta(\cdot|s_t))]` against
    the old policy's distribution ``dist_old`` (logits, or mean and log σ). The policy
    keeps the last θ evaluated; :meth:`set` writes one without evaluating.

    Parameters
    ----------
    policy : CategoricalActorCritic or GaussianActorCritic
    batch : Batch
        obs (B, d), actions, logp (log π_old), adv.
    dist_old : tuple of Tensor
        ``policy.dist(batch.obs)`` at θ_old, detached.
    """

    def __init__(self, policy: Policy, batch: Batch, dist_old: tuple[Tensor, ...]) -> None:
        self.policy = policy
        self.params = policy_parameters(policy)
        self.batch = batch
        self.dist_old = tuple(d.detach() for d in dist_old)

    def set(self, theta: Tensor) -> None:
        """Write θ (shape (P,)) into the policy's parameters."""
        with torch.no_grad():
            nn.utils.vector_to_parameters(theta, self.params)

    def __call__(self, theta: Tensor) -> tuple[float, float]:
        self.set(theta)
        with torch.no_grad():
            dist = self.policy.dist(self.batch.obs)
            value = surrogate(self.policy.logp(dist, self.batch.actions), self.batch.logp, self.batch.adv)
            kl = self.policy.kl(self.dist_old, dist).mean()  # D̄_KL(θ_old, θ)
            both = torch.stack([value, kl]).tolist()  # one device sync for the two
        return both[0], both[1]


class SearchObjective(Protocol):
    """What :func:`backtracking_line_search` evaluates: θ ↦ (L(θ), D̄_KL), and a way to write θ back."""

    def __call__(self, theta: Tensor) -> tuple[float, float]: ...

    def set(self, theta: Tensor) -> None: ...


@dataclass(frozen=True)
class LineSearchResult:
    """The outcome of :func:`backtracking_line_search`."""

    theta: Tensor  # (P,) the accepted parameters, or θ_old when no step was accepted
    accepted: bool
    backtracks: int  # k of the accepted step β^k s; backtrack_iters when none was accepted
    step_fraction: float  # β^k, 0 when none was accepted
    surrogate: float  # L at the returned parameters
    kl: float  # D̄_KL(θ_old, θ) at the returned parameters (0 at θ_old)


def backtracking_line_search(objective: SearchObjective, theta_old: Tensor, step: Tensor,
                             surrogate_old: float, max_kl: float, backtrack_coef: float = 0.8,
                             backtrack_iters: int = 10) -> LineSearchResult:
    r"""Shrink the natural step until the true KL is within δ and the true surrogate has improved.

    Tries :math:`\theta_k = \theta_{old} + \beta^k s` for k = 0, 1, ..., K−1 and keeps the
    first with

    .. math:: \bar D_{\mathrm{KL}}(\theta_{old}, \theta_k) \le \delta
              \quad\text{and}\quad L(\theta_k) > L(\theta_{old}).

    The step s satisfies the *quadratic* constraint :math:`\tfrac12 s^\top F s = \delta`;
    the true KL can exceed it, and the linear model can promise a gain the surrogate does
    not deliver, hence the check (Schulman et al. 2015, Appendix C). When no k passes,
    θ_old is written back (``objective`` writes each θ it evaluates into the policy) and
    the update is rejected.

    Parameters
    ----------
    objective : SearchObjective
        θ ↦ (L(θ), D̄_KL(θ_old, θ)) as floats, e.g. a :class:`PolicyObjective`; it may
        leave θ in the model, and its ``set(θ)`` restores θ_old.
    theta_old : Tensor, shape (P,)
    step : Tensor, shape (P,)
        s, the full natural step.
    surrogate_old : float
        L(θ_old).
    max_kl : float
        δ.
    backtrack_coef : float
        β in (0, 1).
    backtrack_iters : int
        K ≥ 1.

    Returns
    -------
    LineSearchResult
    """
    for k in range(positive_int("backtrack_iters", backtrack_iters)):
        fraction = backtrack_coef**k
        theta = theta_old + fraction * step  # θ_old + β^k s
        value, kl = objective(theta)
        if math.isfinite(value) and math.isfinite(kl) and kl <= max_kl and value > surrogate_old:
            return LineSearchResult(theta, True, k, fraction, value, kl)
    objective.set(theta_old)  # no step passed: back to θ_old
    return LineSearchResult(theta_old, False, backtrack_iters, 0.0, surrogate_old, 0.0)


# ---------------------------------------------------------------------------------------
# The critic and the update
# ---------------------------------------------------------------------------------------


def fit_value_function(policy: Policy, optimizer: torch.optim.Optimizer, obs: Tensor, returns: Tensor, epochs: int,
                       num_minibatches: int, generator: torch.Generator) -> float:
    r"""Regress V on the targets by Adam on shuffled minibatches; returns the last epoch's mean loss.

    .. math:: \min_w\ \tfrac12\,\hat{\mathbb E}_t\big[(V_w(s_t) - \hat R_t)^2\big]

    Each epoch cuts a permutation of the B samples (from ``generator``) into
    ``num_minibatches`` minibatches and takes one step on each.

    Parameters
    ----------
    policy : CategoricalActorCritic or GaussianActorCritic
        Only its ``critic`` is trained (``optimizer`` holds its parameters).
    optimizer : torch.optim.Optimizer
    obs : Tensor, shape (B, d)
    returns : Tensor, shape (B,)
        :math:`\hat R_t`, data.
    epochs, num_minibatches : int
    generator : torch.Generator
        On ``obs``' device.

    Returns
    -------
    float
    """
    size = returns.shape[0]
    minibatch = -(-size // num_minibatches)
    returns = returns.detach()
    last = obs.new_zeros(())
    for _ in range(epochs):
        order = torch.randperm(size, generator=generator, device=generator.device).to(obs.device)
        total = obs.new_zeros(())
        for start in range(0, size, minibatch):
            index = order[start:start + minibatch]
            loss = 0.5 * (policy.value(obs[index]) - returns[index]).pow(2).mean()  # ½ Ê[(V − R̂)²]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total = total + loss.detach() * index.shape[0]
        last = total / size
    return float(last)


@dataclass(frozen=True)
class TRPOStats:
    """Diagnostics of one :func:`trpo_update` (floats, ints and a bool)."""

    accepted: bool  # the line search kept a step
    kl: float  # D̄_KL(π_old ‖ π_new) after the update (0 when rejected)
    max_kl: float  # δ it was held to
    surrogate_improvement: float  # L(θ_new) − L(θ_old), > 0 when accepted
    expected_improvement: float  # gᵀs, the linear model's gain of the full step
    line_search_steps: int  # backtracks k of the accepted step β^k s (backtrack_iters when rejected)
    step_fraction: float  # β^k (0 when rejected)
    cg_iters: int  # CG iterations run
    cg_residual: float  # ‖g − (F + λI)x‖ at CG's end
    grad_norm: float  # ‖g‖
    entropy: float  # mean H(π_old(·|s)) over the batch
    value_loss: float  # ½ Ê[(V − R̂)²] of the critic before fitting
    value_loss_after: float  # the same, the last fitting epoch's mean
    explained_variance: float  # of the rollout's values for its targets


def trpo_update(policy: Policy, vf_optimizer: torch.optim.Optimizer, batch: Batch, config: TRPOConfig,
                generator: torch.Generator) -> TRPOStats:
    r"""One TRPO update on a batch: natural step, line search, then the critic's fit.

    1. :math:`L(\theta_{old})` (:func:`surrogate`) and :math:`g = \nabla L`;
    2. :math:`x \approx (F + \lambda I)^{-1} g` by ``cg_iters`` of CG on Hessian-vector
       products of the mean KL at θ_old (:class:`rlteach.natural_gradient.HessianVectorProduct`),
       :math:`s = \sqrt{2\delta / x^\top (F + \lambda I) x}\; x`
       (:func:`rlteach.natural_gradient.natural_gradient_step`);
    3. :func:`backtracking_line_search` along s, on the exact mean KL and the surrogate;
    4. :func:`fit_value_function` on the λ-returns.

    Parameters
    ----------
    policy : CategoricalActorCritic or GaussianActorCritic
    vf_optimizer : torch.optim.Optimizer
        Over ``policy.critic``'s parameters.
    batch : Batch
        The rollout's valid samples (:func:`rlteach.ppo.flatten_rollout`), advantages
        standardised where configured.
    config : TRPOConfig
    generator : torch.Generator
        The critic's minibatch permutations.

    Returns
    -------
    TRPOStats
    """
    params = policy_parameters(policy)
    dist = policy.dist(batch.obs)
    dist_old = tuple(d.detach() for d in dist)
    value = surrogate(policy.logp(dist, batch.actions), batch.logp, batch.adv)  # L(θ_old) = Ê[Â]
    grad = flat_grad(value, params, retain_graph=True)  # g = ∇L(θ_old), the policy gradient
    mean_kl = policy.kl(dist_old, dist).mean()  # D̄_KL(θ_old, θ), 0 at θ_old; its Hessian is F
    fvp = HessianVectorProduct(mean_kl, params, config.damping)  # v ↦ (F + λI) v
    natural = natural_gradient_step(grad, fvp, config.max_kl, config.cg_iters, config.cg_tol)
    theta_old = nn.utils.parameters_to_vector(params).detach()
    surrogate_old = float(value.detach())
    if natural.quad > 0:
        objective = PolicyObjective(policy, batch, dist_old)
        search = backtracking_line_search(objective, theta_old, natural.step, surrogate_old, config.max_kl,
                                          config.backtrack_coef, config.backtrack_iters)
    else:  # g = 0: no direction improves L to first order
        search = LineSearchResult(theta_old, False, 0, 0.0, surrogate_old, 0.0)
    with torch.no_grad():
        values_now = policy.value(batch.obs)
        value_loss = float(0.5 * (values_now - batch.returns).pow(2).mean())
        entropy = float(policy.entropy(dist_old).mean())
    value_loss_after = fit_value_function(policy, vf_optimizer, batch.obs, batch.returns, config.vf_epochs,
                                          config.vf_minibatches, generator)
    return TRPOStats(
        accepted=search.accepted, kl=search.kl, max_kl=config.max_kl,
        surrogate_improvement=search.surrogate - surrogate_old, expected_improvement=natural.expected_improvement,
        line_search_steps=search.backtracks, step_fraction=search.step_fraction, cg_iters=natural.cg.iterations,
        cg_residual=natural.cg.residual_norm, grad_norm=float(grad.norm()), entropy=entropy, value_loss=value_loss,
        value_loss_after=value_loss_after,
        explained_variance=float(explained_variance(batch.values, batch.returns)),
    )


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------


def reset_trpo_envs(envs: gym.vector.VectorEnv, config: TRPOConfig, seed: int,
                    device: str | torch.device = "cpu") -> PPOEnvState:
    """Reset the N environments with ``seed``; start the episode bookkeeping and the normalisers.

    The state is :class:`rlteach.ppo.PPOEnvState`, what :func:`rlteach.ppo.collect_rollout`
    carries from one rollout to the next.
    """
    obs, _ = envs.reset(seed=seed)
    obs = np.asarray(obs)
    N = envs.num_envs
    obs_rms = RunningMeanStd(np.shape(obs)[1:]) if config.normalize_obs else None
    if obs_rms is not None:
        obs_rms.update(obs)
        obs = obs_rms.normalize(obs, config.clip_obs)
    return PPOEnvState(torch.as_tensor(obs, dtype=torch.float32, device=device), np.zeros(N, dtype=bool),
                       np.zeros(N, dtype=np.float64), np.zeros(N, dtype=np.int64), obs_rms,
                       RewardScaler(N, config.gamma, config.clip_reward) if config.normalize_reward else None,
                       config.clip_obs)


class TRPOResult(NamedTuple):
    """The trained policy, the training log, every update's diagnostics, the observation statistics."""

    policy: Policy
    log: TrainingLog
    updates: list[TRPOStats]
    obs_rms: RunningMeanStd | None  # the statistics the policy's inputs were normalised with


def trpo_iteration(policy: Policy, vf_optimizer: torch.optim.Optimizer, config: TRPOConfig, generator: torch.Generator,
                   update: int, rollout: Rollout, env_steps: int) -> tuple[TRPOStats, UpdateRecord]:
    """One TRPO improvement on a rollout: GAE and λ-returns, flatten (advantages standardised), :func:`trpo_update`."""
    adv, returns = rollout_advantages(rollout, config.gamma, config.gae_lambda)
    batch = flatten_rollout(rollout, adv, returns, config.normalize_adv)
    stats = trpo_update(policy, vf_optimizer, batch, config, generator)
    return stats, UpdateRecord(env_steps, -stats.surrogate_improvement, stats.value_loss, stats.entropy,
                               stats.explained_variance)


def train_trpo(config: TRPOConfig, seed: int, *, device: str | torch.device = "cpu", progress: bool = True,
               clock: Callable[[], float] | None = None, on_episode: Callable[[EpisodeRecord], None] | None = None,
               target_return: float | None = None, window: int = 100) -> TRPOResult:
    r"""Train TRPO on ``config.env_id`` (Schulman et al. 2015, single-path, with GAE).

    For each of ``config.num_updates`` iterations: collect N×T steps
    (:func:`rlteach.ppo.collect_rollout`), compute GAE advantages and λ-returns
    (:func:`rlteach.ppo.rollout_advantages`), flatten the valid samples and standardise
    the advantages (:func:`rlteach.ppo.flatten_rollout`), and run :func:`trpo_update`.

    Parameters
    ----------
    config : TRPOConfig
    seed : int
        Seeds the environments, the initialisation, the action draws and the critic's
        minibatch permutations (all local generators).
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
    TRPOResult
        ``log.episodes[i].env_steps`` counts transitions (next-step autoreset steps left out).
    """
    setup = start_on_policy(config, seed, device, reset_trpo_envs, clock)
    vf_optimizer = torch.optim.Adam(setup.policy.critic.parameters(), lr=config.vf_lr)
    log, updates = run_on_policy("TRPO", config, setup,
                                 functools.partial(trpo_iteration, setup.policy, vf_optimizer, config, setup.generator),
                                 progress=progress, on_episode=on_episode, target_return=target_return, window=window)
    return TRPOResult(setup.policy, log, updates, getattr(setup.state, "obs_rms", None))
