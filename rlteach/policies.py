r"""Actor-critic policy networks for policy optimization (PPO, TRPO): categorical and diagonal Gaussian.

Two classes with one interface, so an algorithm is written once for discrete and
continuous actions:

=============================  ============================  ==============================
method                         :class:`CategoricalActorCritic`  :class:`GaussianActorCritic`
=============================  ============================  ==============================
``dist(obs)``                  ``(logits,)``, (B, K)         ``(mean, log_std)``, (B, d) each
``value(obs)``                 V(s), (B,)                    V(s), (B,)
``logp(dist, actions)``        log π(a|s), (B,)              log π(a|s), (B,)
``entropy(dist)``              H(π(·|s)), (B,)               H(π(·|s)), (B,)
``kl(dist_old, dist)``         KL(π_old‖π) per state, (B,)   KL(π_old‖π) per state, (B,)
``sample(dist, generator)``    a (B,) int64, log π(a|s)      a (B, d), log π(a|s)
``sample_noise(dist, gen.)``   u ~ U(0, 1), (B, 1)           ε ~ N(0, I), (B, d)
``sample_from(dist, noise)``   ``sample`` given its draw     ``sample`` given its draw
=============================  ============================  ==============================

A policy's distribution is a tuple of tensors (its parameters, not a
``torch.distributions`` object), so the hot loops do a few tensor operations per step.
``actor`` and ``critic`` are separate tanh MLPs (no shared trunk), the architecture of
the PPO and TRPO baselines. Build one for a gymnasium environment with
:func:`make_actor_critic`.

Initialisation (``orthogonal_init``): orthogonal weights with gain √2 in hidden layers,
0.01 in the policy's output layer (π starts near uniform, or with means near 0), 1 in
the value head, and zero biases (Engstrom et al. 2020, "Implementation Matters in Deep
Policy Gradients"; Andrychowicz et al. 2021, "What Matters in On-Policy RL"). Without
it, PyTorch's default ``nn.Linear`` initialisation, drawn from the same local generator.
Either way nothing reads or advances the global random state.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import cast

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlteach.kl import categorical_kl, gaussian_kl

__all__ = [
    "CategoricalActorCritic",
    "GaussianActorCritic",
    "gaussian_entropy",
    "gaussian_logp",
    "make_actor_critic",
    "mlp",
    "mlp_forward",
]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _default_linear_init(linear: nn.Linear, generator: torch.Generator) -> None:
    """PyTorch's ``nn.Linear`` initialisation, U(±1/√fan_in) for weights and biases, from ``generator``."""
    bound = 1.0 / math.sqrt(linear.in_features)  # kaiming_uniform(a=√5) gives the same bound
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound, generator=generator)
        linear.bias.uniform_(-bound, bound, generator=generator)


def _uninitialised_linear(fan_in: int, fan_out: int) -> nn.Linear:
    """An ``nn.Linear`` with uninitialised CPU parameters, for the caller to initialise.

    Built on the meta device (no memory, no draw from the global random state) and given
    fresh ``torch.empty`` parameters; ``nn.utils.skip_init`` does the same through
    ``Module.to_empty``, whose first call imports about 500 modules of torch (about 1 s).
    """
    linear = nn.Linear(fan_in, fan_out, device="meta")
    linear.weight = nn.Parameter(torch.empty(fan_out, fan_in))
    linear.bias = nn.Parameter(torch.empty(fan_out))
    return linear


def mlp(in_size: int, hidden_sizes: Sequence[int], out_size: int, *, out_gain: float, generator: torch.Generator,
        orthogonal_init: bool = True) -> nn.Sequential:
    r"""A tanh multilayer perceptron ``in_size → hidden_sizes → out_size``, initialised from ``generator``.

    With ``orthogonal_init``, weights are orthogonal with gain √2 (hidden layers) and
    ``out_gain`` (the last layer), biases 0; otherwise PyTorch's default
    :math:`\mathcal U(\pm 1/\sqrt{\text{fan\_in}})`. ``generator`` lives on the CPU; move
    the network afterwards with ``.to(device)``.
    """
    sizes = [in_size, *hidden_sizes, out_size]
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        linear = _uninitialised_linear(fan_in, fan_out)
        last = i == len(sizes) - 2
        if orthogonal_init:
            nn.init.orthogonal_(linear.weight, gain=out_gain if last else math.sqrt(2.0), generator=generator)
            nn.init.zeros_(linear.bias)
        else:
            _default_linear_init(linear, generator)
        layers.append(linear)
        if not last:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def mlp_forward(net: nn.Sequential, x: Tensor) -> Tensor:
    """``net(x)`` for an :func:`mlp`, layer by layer without ``nn.Module.__call__`` (a few µs less per layer).

    The same numbers as ``net(x)``; the hot loops of PPO and TRPO call it thousands of times.
    A linear layer's weight and bias are read from its ``_parameters`` (what ``layer.weight``
    returns, without ``nn.Module.__getattr__``); each tanh runs in place on the output of the
    linear layer before it (a fresh tensor that the linear layer's backward does not need).
    Any other layer is called as a module.
    """
    for layer in net:
        if type(layer) is nn.Linear:
            weights = layer._parameters
            x = F.linear(x, cast(Tensor, weights["weight"]), weights["bias"])
        elif type(layer) is nn.Tanh:
            x = x.tanh_()
        else:
            x = layer(x)
    return x


def gaussian_logp(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
    r"""Log-density of actions under a diagonal Gaussian, summed over the d action coordinates.

    .. math:: \log\pi(a|s) = -\sum_{i=1}^d \Big[\frac{(a_i-\mu_i)^2}{2\sigma_i^2}
              + \log\sigma_i + \tfrac12\log 2\pi\Big]

    Parameters
    ----------
    mean, log_std, actions : Tensor, shape (..., d)
        ``log_std`` may be (d,) and broadcast.

    Returns
    -------
    Tensor, shape (...)
    """
    z = (actions - mean) * torch.exp(-log_std)  # (a − μ)/σ
    return -(0.5 * z.pow(2) + log_std + _LOG_SQRT_2PI).sum(-1)


def gaussian_entropy(log_std: Tensor) -> Tensor:
    r"""Entropy of a diagonal Gaussian, :math:`H = \sum_i (\log\sigma_i + \tfrac12\log 2\pi e)`.

    Parameters
    ----------
    log_std : Tensor, shape (..., d)

    Returns
    -------
    Tensor, shape (...)
    """
    return (log_std + 0.5 + _LOG_SQRT_2PI).sum(-1)


class CategoricalActorCritic(nn.Module):
    """A categorical policy (logits from a tanh MLP) and a state-value network.

    Parameters
    ----------
    obs_dim, num_actions : int
    hidden_sizes : tuple of int
        Widths of the hidden layers of both networks.
    generator : torch.Generator
        On the CPU; initialises the weights (actor first, then critic).
    orthogonal_init : bool
        See the module notes.
    """

    discrete = True

    def __init__(self, obs_dim: int, num_actions: int, hidden_sizes: Sequence[int] = (64, 64), *,
                 generator: torch.Generator, orthogonal_init: bool = True) -> None:
        super().__init__()
        self.actor = mlp(obs_dim, hidden_sizes, num_actions, out_gain=0.01, generator=generator,
                         orthogonal_init=orthogonal_init)
        self.critic = mlp(obs_dim, hidden_sizes, 1, out_gain=1.0, generator=generator, orthogonal_init=orthogonal_init)

    def dist(self, obs: Tensor) -> tuple[Tensor, ...]:
        """``(logits,)`` of π(·|s), shape (B, K), for observations of shape (B, obs_dim)."""
        return (mlp_forward(self.actor, obs),)

    def value(self, obs: Tensor) -> Tensor:
        """V(s), shape (B,)."""
        return mlp_forward(self.critic, obs).squeeze(-1)

    def logp(self, dist: tuple[Tensor, ...], actions: Tensor) -> Tensor:
        r"""log π(a|s) = log_softmax(z)_a, shape (B,), for int64 actions of shape (B,)."""
        return torch.log_softmax(dist[0], dim=-1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self, dist: tuple[Tensor, ...]) -> Tensor:
        r"""H(π(·|s)) = −Σ_a π(a|s) log π(a|s), shape (B,)."""
        logp_all = torch.log_softmax(dist[0], dim=-1)
        return -(logp_all.exp() * logp_all).sum(-1)

    def kl(self, dist_old: tuple[Tensor, ...], dist: tuple[Tensor, ...]) -> Tensor:
        """KL(π_old(·|s) ‖ π(·|s)) per state, shape (B,) (:func:`rlteach.kl.categorical_kl`)."""
        return categorical_kl(dist_old[0], dist[0])

    def sample(self, dist: tuple[Tensor, ...], generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Actions a ~ π(·|s) drawn from ``generator`` (int64, (B,)) and log π(a|s) (B,).

        By inversion: a = #{k : u > F(k)} for u ~ U(0, 1) and the cumulative F(k) = Σ_{j≤k} π(j|s),
        one uniform per state (cheaper than ``torch.multinomial`` for a few states).
        """
        return self.sample_from(dist, self.sample_noise(dist, generator))

    def sample_noise(self, dist: tuple[Tensor, ...], generator: torch.Generator) -> Tensor:
        """The draw that :meth:`sample` makes from ``generator``: one uniform per state, shape (B, 1)."""
        logits = dist[0]
        return torch.rand((logits.shape[0], 1), generator=generator, device=logits.device, dtype=logits.dtype)

    def sample_from(self, dist: tuple[Tensor, ...], u: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`sample` given its uniforms ``u`` (B, 1): no generator, so a CUDA graph can hold it."""
        logp_all = torch.log_softmax(dist[0], dim=-1)
        cdf = logp_all.exp().cumsum(-1)  # F(k)
        actions = (u > cdf).sum(-1, keepdim=True).clamp_(max=logp_all.shape[-1] - 1)  # rounding: F(K−1) may be < u
        return actions.squeeze(-1), logp_all.gather(-1, actions).squeeze(-1)


class GaussianActorCritic(nn.Module):
    r"""A diagonal-Gaussian policy :math:`\mathcal N(\mu_\theta(s), \mathrm{diag}\,\sigma^2)` and a state-value network.

    Parameters
    ----------
    obs_dim, action_dim : int
    hidden_sizes : tuple of int
    generator : torch.Generator
        On the CPU; initialises the weights (actor first, then critic).
    orthogonal_init : bool
        See the module notes.
    state_dependent_std : bool
        False (the default, PPO's and TRPO's choice): log σ is a free parameter vector
        of shape (d,), the same in every state. True: the actor outputs 2d numbers, the
        means and log σ(s).
    log_std_init : float
        The initial log σ (state-independent case; the bias of the log σ head otherwise).
    """

    discrete = False

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes: Sequence[int] = (64, 64), *,
                 generator: torch.Generator, orthogonal_init: bool = True, state_dependent_std: bool = False,
                 log_std_init: float = 0.0) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.state_dependent_std = state_dependent_std
        out = 2 * action_dim if state_dependent_std else action_dim
        self.actor = mlp(obs_dim, hidden_sizes, out, out_gain=0.01, generator=generator, orthogonal_init=orthogonal_init)
        self.critic = mlp(obs_dim, hidden_sizes, 1, out_gain=1.0, generator=generator, orthogonal_init=orthogonal_init)
        if state_dependent_std:
            last = self.actor[-1]
            assert isinstance(last, nn.Linear)
            with torch.no_grad():
                last.bias[action_dim:] = log_std_init
            self.log_std = None
        else:
            self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))

    def dist(self, obs: Tensor) -> tuple[Tensor, ...]:
        """``(mean, log_std)`` of π(·|s), each of shape (B, d)."""
        out = mlp_forward(self.actor, obs)
        if self.log_std is None:
            return out[..., :self.action_dim], out[..., self.action_dim:]
        return out, self.log_std.expand_as(out)

    def value(self, obs: Tensor) -> Tensor:
        """V(s), shape (B,)."""
        return mlp_forward(self.critic, obs).squeeze(-1)

    def logp(self, dist: tuple[Tensor, ...], actions: Tensor) -> Tensor:
        """log π(a|s), shape (B,), for actions of shape (B, d) (:func:`gaussian_logp`)."""
        return gaussian_logp(dist[0], dist[1], actions)

    def entropy(self, dist: tuple[Tensor, ...]) -> Tensor:
        """H(π(·|s)), shape (B,) (:func:`gaussian_entropy`)."""
        return gaussian_entropy(dist[1])

    def kl(self, dist_old: tuple[Tensor, ...], dist: tuple[Tensor, ...]) -> Tensor:
        """KL(π_old(·|s) ‖ π(·|s)) per state, shape (B,) (:func:`rlteach.kl.gaussian_kl`)."""
        return gaussian_kl(dist_old[0], dist_old[1], dist[0], dist[1])

    def sample(self, dist: tuple[Tensor, ...], generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Actions a = μ + σ ε, ε ~ N(0, I) from ``generator`` ((B, d)), and log π(a|s) (B,)."""
        return self.sample_from(dist, self.sample_noise(dist, generator))

    def sample_noise(self, dist: tuple[Tensor, ...], generator: torch.Generator) -> Tensor:
        """The draw that :meth:`sample` makes from ``generator``: ε ~ N(0, I), shape (B, d)."""
        mean = dist[0]
        return torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)

    def sample_from(self, dist: tuple[Tensor, ...], noise: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`sample` given its draw ε (B, d): no generator, so a CUDA graph can hold it."""
        mean, log_std = dist
        actions = mean + log_std.exp() * noise  # a = μ + σ ε
        return actions, gaussian_logp(mean, log_std, actions)


def make_actor_critic(observation_space: gym.Space, action_space: gym.Space, hidden_sizes: Sequence[int] = (64, 64),
                      *, generator: torch.Generator, orthogonal_init: bool = True, state_dependent_std: bool = False,
                      log_std_init: float = 0.0) -> CategoricalActorCritic | GaussianActorCritic:
    """The actor-critic for a flat Box observation space and a Discrete or flat Box action space.

    Raises
    ------
    ValueError
        Other spaces.
    """
    if not (isinstance(observation_space, gym.spaces.Box) and len(observation_space.shape) == 1):
        raise ValueError(f"expected a flat Box observation space, got {observation_space}")
    obs_dim = observation_space.shape[0]
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalActorCritic(obs_dim, int(action_space.n), hidden_sizes, generator=generator,
                                      orthogonal_init=orthogonal_init)
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return GaussianActorCritic(obs_dim, action_space.shape[0], hidden_sizes, generator=generator,
                                   orthogonal_init=orthogonal_init, state_dependent_std=state_dependent_std,
                                   log_std_init=log_std_init)
    raise ValueError(f"expected a Discrete or flat Box action space, got {action_space}")
