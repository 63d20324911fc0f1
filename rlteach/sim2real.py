r"""Sim-to-real, made concrete: a controller evaluated on "real" systems whose parameters differ from the simulator's.

A policy is trained in simulation with nominal parameters, then run on hardware whose
pole is longer, whose motor is weaker, whose actions arrive a step late. The *reality
gap* is how much return it loses there. Domain randomisation (Tobin et al. 2017; Peng et
al. 2018; OpenAI et al. 2019) trains on a family of simulators instead, with parameters
drawn per episode, so that the real system looks like one more draw.

Here a "real" system is :class:`rlteach.envs.BatchedCartPole` (or ``BatchedPendulum``)
with some parameters fixed at shifted values. Controllers are callables from observations
``(N, obs_dim)`` to actions, so a PPO policy and an LQR gain are evaluated by one function:

=============================  =====================================================
:func:`greedy_controller`      a PPO policy's most likely action (mean for Gaussians)
:func:`lqr_controller`         bang-bang on the sign of :math:`-Kx` (CartPole)
:func:`evaluate_controller`    the return of one episode in each of N environments
:func:`shift_curve`            mean return (and its standard error) along a parameter shift
=============================  =====================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from rlteach.envs import make_batched_env
from rlteach.lqr import lqr_force_to_action
from rlteach.policies import CategoricalActorCritic, GaussianActorCritic

__all__ = ["ShiftCurve", "evaluate_controller", "greedy_controller", "lqr_controller", "shift_curve"]

Controller = Callable[[Tensor], Tensor]


def greedy_controller(policy: CategoricalActorCritic | GaussianActorCritic) -> Controller:
    """The deployed policy: its most likely action in every state (the mean of a Gaussian)."""
    def act(obs: Tensor) -> Tensor:
        with torch.no_grad():
            dist = policy.dist(obs)
        return dist[0].argmax(dim=1) if isinstance(policy, CategoricalActorCritic) else dist[0]
    return act


def lqr_controller(K: Tensor) -> Controller:
    r"""CartPole under LQR: push right where the gain asks for a positive force, :math:`-Kx > 0`.

    ``K`` of shape (1, 4), from :func:`rlteach.lqr.dare` on :func:`rlteach.lqr.cartpole_linearization`.
    """
    def act(obs: Tensor) -> Tensor:
        return lqr_force_to_action(-(obs.to(K.dtype) @ K.T).squeeze(1))
    return act


def evaluate_controller(act: Controller, env_id: str, params: Mapping[str, float] | None = None, *,
                        num_envs: int = 64, seed: int = 10_000) -> Tensor:
    """The return of the first episode of each of ``num_envs`` environments under ``act``.

    Parameters
    ----------
    act : callable
        Observations (N, obs_dim) → actions.
    env_id : str
        ``CartPole-v1`` or ``Pendulum-v1`` (:data:`rlteach.envs.BATCHED_ENVS`).
    params : mapping of str to float, optional
        Parameters of the "real" system (the others nominal).
    num_envs : int
    seed : int
        Environment i starts from seed ``seed + i``: the same start states for every controller.

    Returns
    -------
    Tensor, shape (num_envs,)
        Undiscounted returns (at most the time limit's worth of steps).
    """
    env = make_batched_env(env_id, num_envs, randomize={k: (v, v) for k, v in (params or {}).items()})
    obs = env.reset(seed)
    total = torch.zeros(num_envs)
    running = torch.ones(num_envs, dtype=torch.bool)
    for _ in range(env.max_episode_steps):
        out = env.step(act(obs))
        total += out.reward * running  # only the first episode of each environment counts
        running &= ~(out.terminated | out.truncated)
        if not bool(running.any()):
            break
        obs = out.obs
    return total


class ShiftCurve(NamedTuple):
    """Mean return along a parameter shift, over environments (and start states)."""

    name: str
    values: list[float]  # the parameter's value on each "real" system
    mean: Tensor  # (len(values),) mean return
    stderr: Tensor  # (len(values),) its standard error, s / √N


def shift_curve(act: Controller, env_id: str, name: str, values: Sequence[float], *, num_envs: int = 64,
                seed: int = 10_000, fixed: Mapping[str, float] | None = None) -> ShiftCurve:
    """:func:`evaluate_controller` on systems whose parameter ``name`` takes each of ``values`` (others ``fixed`` or nominal)."""
    means, errors = [], []
    for value in values:
        returns = evaluate_controller(act, env_id, {**(fixed or {}), name: value}, num_envs=num_envs, seed=seed)
        means.append(returns.mean())
        errors.append(returns.std() / math.sqrt(num_envs) if num_envs > 1 else torch.zeros(()))
    return ShiftCurve(name, [float(v) for v in values], torch.stack(means), torch.stack(errors))
