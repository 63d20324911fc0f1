r"""Experience storage: an on-policy rollout buffer and an off-policy replay buffer.

:class:`RolloutBuffer` holds one rollout of T steps from N parallel environments, the
layout of A2C (Mnih et al. 2016) and PPO (Schulman et al. 2017): filled step by step,
then turned into advantages with :func:`rlteach.advantages.gae`, then served as shuffled
minibatches of the flattened T·N batch for a few epochs, then emptied.

:class:`ReplayBuffer` keeps the most recent ``capacity`` transitions in a ring and serves
uniform minibatches from them, for learning many times from old experience (Lin 1992,
"Self-Improving Reactive Agents Based on Reinforcement Learning, Planning and Teaching";
Mnih et al. 2015, "Human-Level Control through Deep Reinforcement Learning"). It stores
the behaviour policy's log-probability of each action, ``logp_behavior`` = log β(a|s), so
that an off-policy learner can form :math:`\rho = \pi(a|s)/\beta(a|s)`
(:func:`rlteach.importance.importance_weights`).

Both buffers allocate their storage once, at construction, with the dtypes and the device
declared there; what is added is checked against the declared shapes, detached, and
converted to the storage's dtype and device. A conversion that would lose information
(floating-point into integer storage, anything but booleans into the episode-end flags)
is a ``TypeError``. All randomness comes from a ``torch.Generator`` passed in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor

from rlteach._validate import ArrayLike, bool_mask, positive_int
from rlteach.advantages import gae


def _shape(name: str, shape: object) -> tuple[int, ...]:
    if isinstance(shape, int):
        shape = (shape,)
    if not isinstance(shape, tuple | list | torch.Size) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise TypeError(f"{name}: expected a tuple of sizes >= 0, got {shape!r}")
    return tuple(shape)


def _field(name: str, x: object, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """``x`` checked against ``shape`` and converted, detached, to the storage's dtype and device."""
    if dtype == torch.bool:
        t = bool_mask(name, x)
    else:
        try:
            t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name}: expected a tensor or array of numbers, got {type(x).__name__}") from err
        if t.is_complex():
            raise TypeError(f"{name}: complex input is not supported (dtype {t.dtype})")
        if t.is_floating_point() and not dtype.is_floating_point:
            raise TypeError(f"{name}: floating-point input (dtype {t.dtype}) would be truncated into {dtype} storage")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(t.shape)}")
    return t.detach().to(device=device, dtype=dtype)


def _permutation(size: int, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.randperm(size, generator=generator, device=generator.device).to(device)


class RolloutBatch(NamedTuple):
    """A minibatch of a :class:`RolloutBuffer`, B flattened (t, env) samples."""

    obs: Tensor  # (B, *obs_shape)
    actions: Tensor  # (B, *action_shape)
    logp: Tensor  # (B,) log π_old(a|s) at collection time
    values: Tensor  # (B,) V_old(s) at collection time
    adv: Tensor  # (B,) GAE advantages
    returns: Tensor  # (B,) λ-returns adv + values, the critic's target


class RolloutBuffer:
    r"""Fixed ``(T, N)`` storage for one on-policy rollout (A2C, PPO).

    Row t holds, for each of the N environments, the step taken in s_t: ``obs`` = s_t,
    ``actions`` = a_t, ``logp`` = log π(a_t|s_t), ``rewards`` = r_t, ``values`` = V(s_t),
    ``next_values`` = V(s_{t+1}) (at a truncation, the value of the true final
    observation), and gymnasium's ``terminated`` and ``truncated``, kept apart.

    Parameters
    ----------
    num_steps, num_envs : int
        T and N.
    obs_shape, action_shape : tuple of int
        Shape of one observation and one action (``()`` for a discrete action).
    obs_dtype, action_dtype, dtype : torch.dtype
        Storage of observations, actions, and of every float field (logp, rewards,
        values, advantages). Flags are ``torch.bool``.
    device : str or torch.device

    Examples
    --------
    >>> buffer = RolloutBuffer(num_steps=128, num_envs=8, obs_shape=(4,))
    >>> # for t in range(128): buffer.add(obs, actions, logp, rewards, values, next_values, terminated, truncated)
    >>> # adv, returns = buffer.compute_advantages(gamma=0.99, gae_lambda=0.95)
    >>> # for epoch in range(4):
    >>> #     for batch in buffer.minibatches(256, generator): ...
    """

    num_steps: int
    num_envs: int
    obs_shape: tuple[int, ...]
    action_shape: tuple[int, ...]
    device: torch.device
    obs: Tensor  # (T, N, *obs_shape)
    actions: Tensor  # (T, N, *action_shape)
    logp: Tensor  # (T, N)
    rewards: Tensor  # (T, N)
    values: Tensor  # (T, N)
    next_values: Tensor  # (T, N)
    terminated: Tensor  # (T, N) bool
    truncated: Tensor  # (T, N) bool
    adv: Tensor | None  # (T, N) once computed
    returns: Tensor | None  # (T, N) once computed

    def __init__(self, num_steps: int, num_envs: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...] = (),
                 *, obs_dtype: torch.dtype = torch.float32, action_dtype: torch.dtype = torch.int64,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> None:
        self.num_steps = positive_int("num_steps", num_steps)
        self.num_envs = positive_int("num_envs", num_envs)
        self.obs_shape = _shape("obs_shape", obs_shape)
        self.action_shape = _shape("action_shape", action_shape)
        if not dtype.is_floating_point:
            raise TypeError(f"dtype: the float fields need a floating dtype, got {dtype}")
        self.device = torch.device(device)
        T, N = self.num_steps, self.num_envs
        self.obs = torch.zeros((T, N, *self.obs_shape), dtype=obs_dtype, device=self.device)
        self.actions = torch.zeros((T, N, *self.action_shape), dtype=action_dtype, device=self.device)
        self.logp, self.rewards, self.values, self.next_values = (
            torch.zeros((T, N), dtype=dtype, device=self.device) for _ in range(4))
        self.terminated = torch.zeros((T, N), dtype=torch.bool, device=self.device)
        self.truncated = torch.zeros((T, N), dtype=torch.bool, device=self.device)
        self.adv = None
        self.returns = None
        self._step = 0

    def __len__(self) -> int:
        """Transitions stored: steps added × N."""
        return self._step * self.num_envs

    @property
    def full(self) -> bool:
        return self._step == self.num_steps

    def add(self, obs: ArrayLike, actions: ArrayLike, logp: ArrayLike, rewards: ArrayLike, values: ArrayLike,
            next_values: ArrayLike, terminated: ArrayLike, truncated: ArrayLike) -> None:
        """Store one time step of the N environments; each argument has leading size N.

        Raises
        ------
        RuntimeError
            When the buffer already holds T steps.
        ValueError, TypeError
            A wrong shape, or a lossy conversion (see the module notes).
        """
        if self.full:
            raise RuntimeError(f"the rollout buffer is full ({self.num_steps} steps); call reset() to start a new rollout")
        N, t = self.num_envs, self._step
        row = {
            "obs": _field("obs", obs, (N, *self.obs_shape), self.obs.dtype, self.device),
            "actions": _field("actions", actions, (N, *self.action_shape), self.actions.dtype, self.device),
        }
        for name, x in (("logp", logp), ("rewards", rewards), ("values", values), ("next_values", next_values),
                        ("terminated", terminated), ("truncated", truncated)):
            row[name] = _field(name, x, (N,), getattr(self, name).dtype, self.device)
        for name, value in row.items():
            getattr(self, name)[t] = value
        self._step += 1

    def compute_advantages(self, gamma: float, gae_lambda: float) -> tuple[Tensor, Tensor]:
        r"""GAE advantages and λ-returns of the full rollout, stored and returned.

        .. math:: \hat A_t = \mathrm{GAE}(\gamma, \lambda)_t, \qquad
                  \hat R_t = \hat A_t + V(s_t)

        :math:`\hat R_t` is the λ-return, the critic's regression target
        (Schulman et al. 2016). See :func:`rlteach.advantages.gae`.

        Returns
        -------
        adv, returns : Tensor, shape (T, N)
        """
        if not self.full:
            raise RuntimeError(f"the rollout holds {self._step} of {self.num_steps} steps; fill it before computing advantages")
        with torch.no_grad():
            adv = gae(self.rewards, self.values, self.next_values, self.terminated, self.truncated, gamma, gae_lambda)
        self.adv = adv
        self.returns = adv + self.values  # λ-return: Â_t + V(s_t)
        return self.adv, self.returns

    def minibatches(self, minibatch_size: int, generator: torch.Generator) -> Iterator[RolloutBatch]:
        """Shuffled minibatches of the flattened T·N samples, each sample exactly once.

        One call is one epoch: a permutation from ``generator`` cut into minibatches of
        ``minibatch_size``; the last is smaller when the size does not divide T·N.
        """
        if self.adv is None or self.returns is None:
            raise RuntimeError("call compute_advantages(gamma, gae_lambda) before asking for minibatches")
        minibatch_size = positive_int("minibatch_size", minibatch_size)
        size = self.num_steps * self.num_envs
        flat = RolloutBatch(
            obs=self.obs.reshape(size, *self.obs_shape),
            actions=self.actions.reshape(size, *self.action_shape),
            logp=self.logp.reshape(size),
            values=self.values.reshape(size),
            adv=self.adv.reshape(size),
            returns=self.returns.reshape(size),
        )
        order = _permutation(size, generator, self.device)
        for start in range(0, size, minibatch_size):
            index = order[start:start + minibatch_size]
            yield RolloutBatch(*(field[index] for field in flat))

    def reset(self) -> None:
        """Empty the buffer for the next rollout (storage is kept and overwritten)."""
        self._step = 0
        self.adv = None
        self.returns = None


class Transitions(NamedTuple):
    """A minibatch of B transitions (s, a, r, s') from a :class:`ReplayBuffer`."""

    obs: Tensor  # (B, *obs_shape) s
    actions: Tensor  # (B, *action_shape) a
    rewards: Tensor  # (B,) r
    next_obs: Tensor  # (B, *obs_shape) s' (the true final observation at a truncation)
    terminated: Tensor  # (B,) bool: s' is terminal, do not bootstrap
    truncated: Tensor  # (B,) bool: a time limit ended the episode; bootstrap from s'
    logp_behavior: Tensor  # (B,) log β(a|s) of the policy that acted
    indices: Tensor  # (B,) int64 ring slots the transitions came from


class ReplayBuffer:
    r"""A fixed-capacity ring of transitions, overwriting the oldest, sampled uniformly.

    Transition i (counting from the first ever added) lives in slot i mod ``capacity``;
    once the ring is full each new transition replaces the oldest one. ``sample`` draws
    from the filled slots only. Lin 1992; Mnih et al. 2015.

    Parameters
    ----------
    capacity : int
    obs_shape, action_shape : tuple of int
        Shape of one observation and one action (``()`` for a discrete action).
    obs_dtype, action_dtype, dtype : torch.dtype
        Storage of observations (and next observations), actions, and of rewards and
        ``logp_behavior``. Flags are ``torch.bool``.
    device : str or torch.device
    """

    capacity: int
    obs_shape: tuple[int, ...]
    action_shape: tuple[int, ...]
    device: torch.device
    obs: Tensor  # (capacity, *obs_shape)
    actions: Tensor  # (capacity, *action_shape)
    rewards: Tensor  # (capacity,)
    next_obs: Tensor  # (capacity, *obs_shape)
    terminated: Tensor  # (capacity,) bool
    truncated: Tensor  # (capacity,) bool
    logp_behavior: Tensor  # (capacity,)

    FIELDS: ClassVar[tuple[str, ...]] = ("obs", "actions", "rewards", "next_obs", "terminated", "truncated", "logp_behavior")

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...] = (), *,
                 obs_dtype: torch.dtype = torch.float32, action_dtype: torch.dtype = torch.int64,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> None:
        self.capacity = positive_int("capacity", capacity)
        self.obs_shape = _shape("obs_shape", obs_shape)
        self.action_shape = _shape("action_shape", action_shape)
        if not dtype.is_floating_point:
            raise TypeError(f"dtype: rewards and logp_behavior need a floating dtype, got {dtype}")
        self.device = torch.device(device)
        C = self.capacity
        self.obs = torch.zeros((C, *self.obs_shape), dtype=obs_dtype, device=self.device)
        self.actions = torch.zeros((C, *self.action_shape), dtype=action_dtype, device=self.device)
        self.rewards = torch.zeros(C, dtype=dtype, device=self.device)
        self.next_obs = torch.zeros((C, *self.obs_shape), dtype=obs_dtype, device=self.device)
        self.terminated = torch.zeros(C, dtype=torch.bool, device=self.device)
        self.truncated = torch.zeros(C, dtype=torch.bool, device=self.device)
        self.logp_behavior = torch.zeros(C, dtype=dtype, device=self.device)
        self._pos = 0  # the slot the next transition goes to
        self._size = 0  # filled slots

    def __len__(self) -> int:
        """Transitions stored, at most ``capacity``."""
        return self._size

    def _shapes(self, batch: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        return {"obs": (*batch, *self.obs_shape), "actions": (*batch, *self.action_shape), "rewards": batch,
                "next_obs": (*batch, *self.obs_shape), "terminated": batch, "truncated": batch,
                "logp_behavior": batch}

    def _convert(self, values: dict[str, object], batch: tuple[int, ...]) -> dict[str, Tensor]:
        shapes = self._shapes(batch)
        return {name: _field(name, values[name], shapes[name], getattr(self, name).dtype, self.device)
                for name in self.FIELDS}

    def add(self, obs: ArrayLike, action: ArrayLike, reward: ArrayLike, next_obs: ArrayLike, terminated: ArrayLike,
            truncated: ArrayLike, logp_behavior: ArrayLike) -> None:
        """Store one transition (s, a, r, s'), overwriting the oldest when full.

        ``obs`` and ``next_obs`` have shape ``obs_shape``, ``action`` has
        ``action_shape``; the rest are scalars (numbers, 0-d tensors, booleans).
        """
        fields = self._convert({"obs": obs, "actions": action, "rewards": reward, "next_obs": next_obs,
                                "terminated": terminated, "truncated": truncated,
                                "logp_behavior": logp_behavior}, ())
        self._write({name: t.unsqueeze(0) for name, t in fields.items()})

    def add_batch(self, obs: ArrayLike, actions: ArrayLike, rewards: ArrayLike, next_obs: ArrayLike,
                  terminated: ArrayLike, truncated: ArrayLike, logp_behavior: ArrayLike) -> None:
        """Store B transitions at once (leading size B), as if added one by one in order.

        A batch that runs past the ring's end wraps around to slot 0; a batch larger than
        the capacity leaves only its last ``capacity`` transitions.
        """
        shape = tuple(rewards.shape) if isinstance(rewards, Tensor) else np.shape(rewards)
        if len(shape) != 1:
            raise ValueError(f"rewards: expected shape (B,) for a batch of B transitions, got {shape}")
        batch = (shape[0],)
        fields = self._convert({"obs": obs, "actions": actions, "rewards": rewards, "next_obs": next_obs,
                                "terminated": terminated, "truncated": truncated,
                                "logp_behavior": logp_behavior}, batch)
        self._write(fields)

    def _write(self, fields: dict[str, Tensor]) -> None:
        count = fields["rewards"].shape[0]
        kept = min(count, self.capacity)  # a batch longer than the ring keeps only its tail
        skipped = count - kept
        slots = (self._pos + skipped + torch.arange(kept, device=self.device)) % self.capacity
        for name, t in fields.items():
            getattr(self, name)[slots] = t[skipped:]
        self._pos = (self._pos + count) % self.capacity
        self._size = min(self._size + count, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator, replacement: bool = False) -> Transitions:
        """A uniform minibatch from the filled slots.

        Without replacement (the default) the B transitions are distinct and B may not
        exceed ``len(self)``; with replacement every draw is an independent uniform slot.
        Draws come only from ``generator``.

        Raises
        ------
        ValueError
            An empty buffer, or more transitions asked for than are stored.
        """
        batch_size = positive_int("batch_size", batch_size)
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer; add transitions first")
        if replacement:
            indices = torch.randint(self._size, (batch_size,), generator=generator, device=generator.device)
        elif batch_size > self._size:
            raise ValueError(f"batch_size={batch_size} exceeds the {self._size} transitions stored "
                             "(sample with replacement=True, or wait until more are stored)")
        else:
            indices = torch.randperm(self._size, generator=generator, device=generator.device)[:batch_size]
        indices = indices.to(self.device)
        return Transitions(**{name: getattr(self, name)[indices] for name in self.FIELDS}, indices=indices)

    def clear(self) -> None:
        """Forget every transition (storage is kept)."""
        self._pos = 0
        self._size = 0

