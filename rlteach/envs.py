r"""Torch-batched CartPole and Pendulum: thousands of environments stepped as one tensor operation.

Each class holds the state of N environments as tensors on one device and steps them all
with a few elementwise operations, with no transfer to the host: the design of massively
parallel simulators such as Isaac Gym (Makoviychuk et al. 2021), at the scale of the
classic-control tasks. The dynamics, rewards, start states and time limits are those of
gymnasium's ``CartPole-v1`` and ``Pendulum-v1``, step for step (tested against
gymnasium on the same actions and start states).

=====================  ==========================================================
``reset(seed)``        observations, shape (N, obs_dim); ``seed`` an int (env i gets
                       ``seed + i``) or one seed per environment
``step(action)``       :class:`BatchedStep`: obs, reward, terminated, truncated,
                       final_obs; ended environments are reset in the same call
=====================  ==========================================================

**Episode ends.** ``terminated`` (the pole fell, the cart left the track) and ``truncated``
(the time limit) stay apart. An environment that ended is reset within the same ``step``:
``obs`` holds its new first observation and ``final_obs`` the last observation of the
episode that ended, the one to bootstrap a truncated step from (``final_obs`` equals ``obs``
where nothing ended).

**Seeds.** Every environment draws its start states (and randomised parameters) from its
own counter-based stream (SplitMix64, Steele et al. 2014) keyed by its seed, so environment
i behaves the same whether it runs alone or beside 65 535 others, on CPU or CUDA.

**Fixed buffers.** The state, the step counters, the random streams, the randomised
parameters and the pending actions are tensors allocated once and updated in place, and
with ``sync_free`` (the default on CUDA) a step never reads a tensor back to the host. A
CUDA graph captured from one step therefore replays the next one
(:class:`rlteach.ppo.CapturedStep`). On the CPU a step checks whether any episode ended
and skips the reset draws when none did (``sync_free=False``, faster there).

**Domain randomisation.** ``randomize`` maps parameter names to ``(low, high)`` ranges;
each environment draws its parameters uniformly from them at every reset. Unlisted
parameters keep their nominal values (:data:`CARTPOLE_NOMINAL`, :data:`PENDULUM_NOMINAL`):
those of gymnasium, plus three that gymnasium does not model and that are 0 there —
``friction`` (viscous, on the cart or the joint), ``obs_noise`` (the standard deviation of
Gaussian noise added to each observation) and ``action_delay`` (whole steps between an
action and its effect; the delayed slots start as no force).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

__all__ = [
    "BATCHED_ENVS",
    "CARTPOLE_NOMINAL",
    "PENDULUM_NOMINAL",
    "BatchedCartPole",
    "BatchedEnv",
    "BatchedPendulum",
    "BatchedStep",
    "make_batched_env",
    "splitmix64",
    "uniform_from_bits",
]

CARTPOLE_NOMINAL: dict[str, float] = {
    "gravity": 9.8, "masscart": 1.0, "masspole": 0.1,
    "length": 0.5,  # half the pole's length, as in gymnasium
    "gain": 1.0,  # the actuator's gain: the force is ±gain·10 N
    "friction": 0.0, "obs_noise": 0.0, "action_delay": 0.0,
}
PENDULUM_NOMINAL: dict[str, float] = {
    "gravity": 10.0, "mass": 1.0, "length": 1.0,
    "gain": 1.0,  # the torque applied is gain·clip(u, −2, 2)
    "friction": 0.0, "obs_noise": 0.0, "action_delay": 0.0,
}

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed 64-bit integer
_MIX_1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_MIX_2 = -7723592293110705685  # 0x94D049BB133111EB


def _advance(counter: Tensor, draws: int) -> Tensor:
    """The stream counters moved on by ``draws`` numbers (64-bit wrap-around)."""
    step = (_GOLDEN * draws + 2**63) % 2**64 - 2**63
    return counter + step


def _zero(value: Tensor | float) -> bool:
    """A parameter fixed at 0 (a randomised one, a tensor, never counts as zero)."""
    return not isinstance(value, Tensor) and value == 0.0


def _shr(z: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64 bit patterns (torch's ``>>`` is arithmetic)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(z: Tensor) -> Tensor:
    """SplitMix64's output function on int64 tensors (wrapping arithmetic), elementwise.

    The n-th number of the stream with seed s is ``splitmix64(s + n·0x9E3779B97F4A7C15)``
    (n = 1, 2, …), the generator of Java's ``SplittableRandom``.
    """
    z = (z ^ _shr(z, 30)) * _MIX_1
    z = (z ^ _shr(z, 27)) * _MIX_2
    return z ^ _shr(z, 31)


def uniform_from_bits(bits: Tensor, dtype: torch.dtype) -> Tensor:
    """Uniform numbers in [0, 1) from the top 53 bits of int64 bit patterns."""
    return _shr(bits, 11).to(torch.float64).mul_(2.0 ** -53).to(dtype)


class BatchedStep(NamedTuple):
    """What :meth:`BatchedEnv.step` returns; every field has N rows."""

    obs: Tensor  # (N, obs_dim), after auto-reset
    reward: Tensor  # (N,)
    terminated: Tensor  # (N,) bool
    truncated: Tensor  # (N,) bool, the time limit (as gymnasium's TimeLimit: may coincide with terminated)
    final_obs: Tensor  # (N, obs_dim), the ending episode's last observation where one ended, else obs


class BatchedEnv(ABC):
    """N copies of a classic-control task on one device; subclasses define the dynamics.

    Parameters
    ----------
    num_envs : int
    device : str or torch.device
    dtype : torch.dtype
        Of the state and the observations (float64 reproduces gymnasium's arithmetic
        exactly; float32 is faster, the default).
    randomize : mapping of str to (float, float), optional
        Parameter ranges for domain randomisation, drawn per environment at each reset.
    max_episode_steps : int, optional
        The time limit (gymnasium's: 500 for CartPole, 200 for Pendulum).
    """

    nominal: ClassVar[Mapping[str, float]]
    state_dim: ClassVar[int]
    obs_dim: ClassVar[int]
    default_max_steps: ClassVar[int]

    def __init__(self, num_envs: int, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 randomize: Mapping[str, tuple[float, float]] | None = None,
                 max_episode_steps: int | None = None) -> None:
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r}: expected a positive int")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype={dtype}: expected torch.float32 or torch.float64")
        self.randomize = dict(randomize or {})
        for name, bounds in self.randomize.items():
            if name not in self.nominal:
                raise ValueError(f"randomize: unknown parameter {name!r}; known: {', '.join(self.nominal)}")
            low, high = (float(b) for b in bounds)
            if not (math.isfinite(low) and math.isfinite(high)) or low > high:
                raise ValueError(f"randomize[{name!r}] = {bounds}: expected finite (low, high) with low ≤ high")
            if low < 0 or (low == 0 and name in ("gravity", "masscart", "masspole", "mass", "length")):
                raise ValueError(f"randomize[{name!r}] = {bounds}: {name} must be positive")
            if name == "action_delay" and not (low.is_integer() and high.is_integer()):
                raise ValueError(f"randomize['action_delay'] = {bounds}: expected whole steps")
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.dtype = dtype
        self.max_episode_steps = max_episode_steps or self.default_max_steps
        self.max_delay = int(self.randomize.get("action_delay", (0, self.nominal.get("action_delay", 0)))[1])
        n = num_envs
        self.state = torch.zeros(n, self.state_dim, device=self.device, dtype=dtype)
        self.steps = torch.zeros(n, dtype=torch.int64, device=self.device)
        # a randomised parameter is a tensor (N,); the others stay Python numbers, cheaper in every step
        self.coef: dict[str, Tensor | float] = {k: float(v) for k, v in self.nominal.items()}
        for name in self.randomize:
            self.coef[name] = torch.full((n,), float(self.nominal[name]), device=self.device, dtype=dtype)
        self._rng = torch.zeros(n, dtype=torch.int64, device=self.device)
        self._pending = torch.zeros(n, self.max_delay + 1, device=self.device, dtype=dtype)
        self._draws = self.state_dim + len(self.randomize)  # uniforms used by one reset
        self._ready = False
        self.sync_free = self.device.type != "cpu"  # False: skip the reset when nothing ended (reads one bool back)

    @property
    @abstractmethod
    def single_observation_space(self) -> gym.spaces.Box:
        """One environment's observation space, as gymnasium's vector environments name it."""

    @property
    @abstractmethod
    def single_action_space(self) -> gym.spaces.Space:
        """One environment's action space."""

    def close(self) -> None:
        """Nothing to release (the state is tensors); here so that a training loop treats every vector env alike."""
        self._ready = False

    def buffers(self) -> list[Tensor]:
        """Every tensor that a step reads and updates in place: state, step counters, streams, pending actions, randomised parameters."""
        return [self.state, self.steps, self._rng, self._pending,
                *(v for v in self.coef.values() if isinstance(v, Tensor))]

    @property
    def params(self) -> dict[str, Tensor]:
        """Every physical parameter of every environment, tensors of shape (N,)."""
        return {k: v.clone() if isinstance(v, Tensor) else torch.full((self.num_envs,), v, device=self.device,
                                                                       dtype=self.dtype)
                for k, v in self.coef.items()}

    # -- random numbers -------------------------------------------------------------------

    def _uniforms(self, k: int) -> Tensor:
        """The next k uniforms of every environment's stream, shape (N, k); the streams are not advanced."""
        counters = self._rng.unsqueeze(1) + _GOLDEN * torch.arange(1, k + 1, device=self.device)
        return uniform_from_bits(splitmix64(counters), self.dtype)

    def _normals(self, uniforms: Tensor) -> Tensor:
        """Standard normals from pairs of uniforms (Box-Muller), shape (N, k/2)."""
        u1, u2 = uniforms[:, 0::2], uniforms[:, 1::2]
        return torch.sqrt(-2.0 * torch.log1p(-u1)) * torch.cos(2.0 * math.pi * u2)

    # -- resets -----------------------------------------------------------------------------

    def reset(self, seed: int | Sequence[int] | Tensor) -> Tensor:
        """Start every environment; ``seed`` an int (env i gets ``seed + i``) or one int per environment.

        Returns the first observations, shape (N, obs_dim).
        """
        if isinstance(seed, int):
            seeds = torch.arange(self.num_envs, dtype=torch.int64, device=self.device) + seed
        else:
            seeds = torch.as_tensor(seed, dtype=torch.int64).to(self.device)
            if seeds.shape != (self.num_envs,):
                raise ValueError(f"seed: expected an int or {self.num_envs} seeds, got shape {tuple(seeds.shape)}")
        self._rng.copy_(seeds)
        every = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._restart(every)
        self._ready = True
        return self._noisy(self._observe(self.state)).clone()

    def _restart(self, ended: Tensor) -> None:
        """Draw new start states (and parameters) for the environments where ``ended``."""
        u = self._uniforms(self._draws)
        start = self._start_state(u[:, :self.state_dim])
        self.state.copy_(torch.where(ended.unsqueeze(1), start, self.state))
        for j, (name, (low, high)) in enumerate(self.randomize.items()):
            value = low + (high - low) * u[:, self.state_dim + j]
            if name == "action_delay":  # a whole number of steps, uniform on low … high
                value = (low + torch.floor((high - low + 1) * u[:, self.state_dim + j])).clamp(max=high)
            coef = self.coef[name]
            assert isinstance(coef, Tensor)
            coef.copy_(torch.where(ended, value, coef))
        self.steps.masked_fill_(ended, 0)
        self._pending.masked_fill_(ended.unsqueeze(1), 0.0)
        self._rng.copy_(torch.where(ended, _advance(self._rng, self._draws), self._rng))

    def _noisy(self, obs: Tensor, drawn: Tensor | None = None) -> Tensor:
        """Observations with Gaussian noise of standard deviation ``obs_noise`` (none at the nominal 0).

        ``drawn`` (N,) bool: the environments whose streams move on (default: all); the
        others' rows are to be discarded, so that no stream depends on its neighbours.
        """
        if "obs_noise" not in self.randomize and self.nominal["obs_noise"] == 0.0:
            return obs
        u = self._uniforms(2 * self.obs_dim)
        moved = _advance(self._rng, 2 * self.obs_dim)
        self._rng.copy_(moved if drawn is None else torch.where(drawn, moved, self._rng))
        noise = self.coef["obs_noise"]
        return obs + (noise.unsqueeze(1) if isinstance(noise, Tensor) else noise) * self._normals(u)

    # -- stepping ---------------------------------------------------------------------------

    def _delayed(self, command: Tensor) -> Tensor:
        """The command that takes effect now: the one given ``action_delay`` steps ago (0 before the first)."""
        if self.max_delay == 0:
            return command
        self._pending.copy_(torch.cat([self._pending[:, 1:], command.unsqueeze(1)], dim=1))
        lag = torch.as_tensor(self.coef["action_delay"], device=self.device).long().clamp(0, self.max_delay).expand(self.num_envs)
        return self._pending.gather(1, (self.max_delay - lag).unsqueeze(1)).squeeze(1)

    def step(self, action: Tensor) -> BatchedStep:
        """Advance every environment by one step and reset those that ended (see the module docstring)."""
        if not self._ready:
            raise RuntimeError("call reset(seed) before step()")
        command = self._command(action)
        new_state, reward, terminated = self._dynamics(self.state, self._delayed(command))
        self.steps.add_(1)
        truncated = self.steps >= self.max_episode_steps
        ended = terminated | truncated
        self.state.copy_(new_state)
        final_obs = self._noisy(self._observe(new_state))
        if not self.sync_free and not bool(ended.any()):  # nothing to reset (a free check on the CPU)
            return BatchedStep(final_obs, reward, terminated, truncated, final_obs)
        self._restart(ended)
        obs = torch.where(ended.unsqueeze(1), self._noisy(self._observe(self.state), ended), final_obs)
        return BatchedStep(obs, reward, terminated, truncated, final_obs)

    # -- per task ---------------------------------------------------------------------------

    @abstractmethod
    def _start_state(self, u: Tensor) -> Tensor:
        """Start states, shape (N, state_dim), from uniforms u of shape (N, state_dim)."""

    @abstractmethod
    def _observe(self, state: Tensor) -> Tensor:
        """Observations (N, obs_dim) of states (N, state_dim)."""

    @abstractmethod
    def _command(self, action: Tensor) -> Tensor:
        """The force or torque command (N,) that an action asks for (before the gain and the delay)."""

    @abstractmethod
    def _dynamics(self, state: Tensor, command: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Next states (N, state_dim), rewards (N,) and terminated (N,) after the command that takes effect."""


class BatchedCartPole(BatchedEnv):
    r"""gymnasium's ``CartPole-v1`` (Barto, Sutton & Anderson 1983; Florian 2007), N at once.

    State :math:`(x, \dot x, \theta, \dot\theta)`, start uniform in ±0.05; actions 0 (push
    left) and 1 (push right) with force :math:`F = \pm g_a \cdot 10` N. With
    :math:`m = m_c + m_p`, half-length l and viscous cart friction :math:`\mu` (0 in gymnasium):

    .. math:: \text{temp} = \frac{F - \mu\dot x + m_p l\dot\theta^2\sin\theta}{m},\quad
              \ddot\theta = \frac{g\sin\theta - \cos\theta\,\text{temp}}
                                 {l\,(4/3 - m_p\cos^2\theta / m)},\quad
              \ddot x = \text{temp} - \frac{m_p l\ddot\theta\cos\theta}{m}

    then one explicit Euler step of τ = 0.02 s (position from the old velocity). Reward 1
    per step; terminated when :math:`|x| > 2.4` or :math:`|\theta| > 12°`; truncated at 500 steps.
    """

    nominal = CARTPOLE_NOMINAL
    state_dim = 4
    obs_dim = 4
    default_max_steps = 500
    tau = 0.02
    x_threshold = 2.4
    theta_threshold = 12 * 2 * math.pi / 360

    @property
    def single_observation_space(self) -> gym.spaces.Box:
        high = np.array([self.x_threshold * 2, np.inf, self.theta_threshold * 2, np.inf], dtype=np.float32)
        return gym.spaces.Box(-high, high, dtype=np.float32)

    @property
    def single_action_space(self) -> gym.spaces.Space:
        return gym.spaces.Discrete(2)

    def _start_state(self, u: Tensor) -> Tensor:
        return -0.05 + 0.1 * u  # U(−0.05, 0.05) for each of the four

    def _observe(self, state: Tensor) -> Tensor:
        return state

    def _command(self, action: Tensor) -> Tensor:
        if action.shape != (self.num_envs,):
            raise ValueError(f"action: expected shape ({self.num_envs},) of 0/1, got {tuple(action.shape)}")
        return action.to(self.dtype) * 2.0 - 1.0  # ±1: push left or right

    def _dynamics(self, state: Tensor, command: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p = self.coef
        x, x_dot, theta, theta_dot = state.unbind(1)
        total_mass = p["masscart"] + p["masspole"]
        polemass_length = p["masspole"] * p["length"]
        force = command * (10.0 * p["gain"])  # F = ±10 N · gain
        if not _zero(p["friction"]):
            force = force - p["friction"] * x_dot  # F − μ ẋ
        cos, sin = torch.cos(theta), torch.sin(theta)
        temp = (force + polemass_length * theta_dot.square() * sin) / total_mass
        theta_acc = (p["gravity"] * sin - cos * temp) / (
            p["length"] * (4.0 / 3.0 - p["masspole"] * cos.square() / total_mass))  # θ̈
        x_acc = temp - polemass_length * theta_acc * cos / total_mass  # ẍ
        new_state = torch.stack([x + self.tau * x_dot, x_dot + self.tau * x_acc,  # explicit Euler
                                 theta + self.tau * theta_dot, theta_dot + self.tau * theta_acc], dim=1)
        terminated = (new_state[:, 0].abs() > self.x_threshold) | (new_state[:, 2].abs() > self.theta_threshold)
        return new_state, torch.ones_like(x), terminated


class BatchedPendulum(BatchedEnv):
    r"""gymnasium's ``Pendulum-v1``, N at once.

    State :math:`(\theta, \dot\theta)` (θ = 0 upright), start uniform in
    :math:`[-\pi, \pi] \times [-1, 1]`; observation :math:`(\cos\theta, \sin\theta, \dot\theta)`;
    action a torque u clipped to ±2 (times the gain). With damping μ (0 in gymnasium):

    .. math:: \dot\theta' = \mathrm{clip}\Big(\dot\theta + \big(\tfrac{3g}{2l}\sin\theta
              + \tfrac{3}{m l^2}(g_a u - \mu\dot\theta)\big)\,\delta t,\ \pm 8\Big),\qquad
              \theta' = \theta + \dot\theta'\,\delta t

    (semi-implicit Euler, δt = 0.05 s); reward :math:`-(\mathrm{wrap}(\theta)^2 + 0.1\dot\theta^2 + 0.001u^2)`
    on the state before the step. Never terminated; truncated at 200 steps.
    """

    nominal = PENDULUM_NOMINAL
    state_dim = 2
    obs_dim = 3
    default_max_steps = 200
    dt = 0.05
    max_speed = 8.0
    max_torque = 2.0

    @property
    def single_observation_space(self) -> gym.spaces.Box:
        high = np.array([1.0, 1.0, self.max_speed], dtype=np.float32)
        return gym.spaces.Box(-high, high, dtype=np.float32)

    @property
    def single_action_space(self) -> gym.spaces.Space:
        return gym.spaces.Box(-self.max_torque, self.max_torque, shape=(1,), dtype=np.float32)

    def _start_state(self, u: Tensor) -> Tensor:
        return torch.stack([math.pi * (2.0 * u[:, 0] - 1.0), 2.0 * u[:, 1] - 1.0], dim=1)

    def _observe(self, state: Tensor) -> Tensor:
        return torch.stack([torch.cos(state[:, 0]), torch.sin(state[:, 0]), state[:, 1]], dim=1)

    def _command(self, action: Tensor) -> Tensor:
        if action.shape not in ((self.num_envs,), (self.num_envs, 1)):
            raise ValueError(f"action: expected shape ({self.num_envs}, 1) of torques, got {tuple(action.shape)}")
        return action.reshape(self.num_envs).to(self.dtype).clamp(-self.max_torque, self.max_torque)

    def _dynamics(self, state: Tensor, command: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p = self.coef
        theta, theta_dot = state.unbind(1)
        wrapped = torch.remainder(theta + math.pi, 2.0 * math.pi) - math.pi  # θ in [−π, π)
        cost = wrapped.square() + 0.1 * theta_dot.square() + 0.001 * command.square()
        torque = p["gain"] * command
        if not _zero(p["friction"]):
            torque = torque - p["friction"] * theta_dot  # g_a u − μ θ̇
        acc = 3.0 * p["gravity"] / (2.0 * p["length"]) * torch.sin(theta) + 3.0 / (p["mass"] * p["length"] ** 2) * torque
        new_theta_dot = (theta_dot + acc * self.dt).clamp(-self.max_speed, self.max_speed)  # semi-implicit Euler
        new_state = torch.stack([theta + new_theta_dot * self.dt, new_theta_dot], dim=1)
        return new_state, -cost, torch.zeros_like(theta, dtype=torch.bool)


BATCHED_ENVS: dict[str, type[BatchedEnv]] = {"CartPole-v1": BatchedCartPole, "Pendulum-v1": BatchedPendulum}


def make_batched_env(env_id: str, num_envs: int, *, device: str | torch.device = "cpu",
                     randomize: Mapping[str, tuple[float, float]] | None = None) -> BatchedEnv:
    """The batched version of a gymnasium id (``CartPole-v1`` or ``Pendulum-v1``), float32 on ``device``."""
    if env_id not in BATCHED_ENVS:
        raise ValueError(f"{env_id!r} has no batched version; batched environments: {', '.join(BATCHED_ENVS)}")
    return BATCHED_ENVS[env_id](num_envs, device=device, randomize=randomize)
