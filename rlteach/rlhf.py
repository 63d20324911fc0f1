r"""RLHF on a laptop: a token MDP, a tiny language model, a learned reward, PPO with a KL penalty, DPO.

Language modelling as an MDP (the lecture notes, "Turning language modelling into an
MDP"): a state is the sequence of tokens so far, an action appends one token, and the
transition is deterministic (the next state is the state with the token appended). A
response ends at the end-of-sequence token ``EOS`` or at ``max_len`` tokens. There is no
reward in the MDP itself: it is learned from preferences.

=====================  =============================================================
token ids              ``0 … V-1`` words, ``V`` = EOS (an action), ``V+1`` = BOS (input only)
``tokens``             int64, shape (B, L) with L = ``max_len``; after the first EOS only EOS
``mask``               bool, shape (B, L): the positions that are part of the response
                       (up to and including its EOS)
=====================  =============================================================

The three steps of RLHF (Ouyang et al. 2022, after Christiano et al. 2017 and Ziegler et
al. 2019), each a function here:

1. **Supervised pre-training** of a :class:`TokenPolicy` on demonstrations
   (:func:`pretrain`); the result is the reference policy :math:`\pi_{ref}`.
2. **Reward modelling**: responses of :math:`\pi_{ref}` compared by simulated labellers who
   follow the Bradley-Terry model with a hidden :class:`Utility` (:func:`preference_pairs`),
   and a :class:`RewardModel` fitted to them (:func:`train_reward_model`).
3. **PPO against the learned reward** with a per-token KL penalty to :math:`\pi_{ref}`
   (:func:`kl_penalized_rewards`, :func:`rlhf_ppo`). Its objective
   :math:`\mathbb E_\pi[\hat r(y)] - \beta\,\mathrm{KL}(\pi\|\pi_{ref})` has the closed-form
   maximiser :math:`\pi^*(y) \propto \pi_{ref}(y)\,e^{\hat r(y)/\beta}`
   (:func:`optimal_policy_logp`), computable where the responses can be listed
   (:func:`all_responses`).

:func:`train_dpo` reaches the same kind of optimum from the preferences directly
(:func:`rlteach.preferences.dpo_loss`). The Bradley-Terry model itself is in
:mod:`rlteach.preferences`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlteach._validate import no_nan, positive_int, positive_number, unit_interval
from rlteach.advantages import gae
from rlteach.ppo import FusedAdam, linear_schedule, normalize_advantages, policy_loss, value_loss
from rlteach.preferences import bradley_terry_loss, dpo_loss, pairwise_accuracy, sample_preferences

__all__ = [
    "BigramSource",
    "DPOConfig",
    "OptimumSummary",
    "PretrainConfig",
    "RLHFConfig",
    "RLHFSetup",
    "RLHFStats",
    "RewardModel",
    "RewardModelConfig",
    "TokenPolicy",
    "TokenTask",
    "Utility",
    "all_responses",
    "bigram_logp",
    "kl_penalized_rewards",
    "make_demonstrator",
    "make_utility",
    "next_state",
    "optimal_policy_logp",
    "optimum_summary",
    "preference_pairs",
    "pretrain",
    "ranking_accuracy",
    "response_lengths",
    "response_mask",
    "rlhf_ppo",
    "rlhf_setup",
    "sample_bigram",
    "sequence_kl",
    "train_dpo",
    "train_reward_model",
    "true_utility",
]

_BANNED = -1e9  # the logit of an action that may not be taken (EOS as the first token): finite, so 0·logp = 0


# ---------------------------------------------------------------------------------------
# The token MDP
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenTask:
    """The token MDP's sizes: ``vocab_size`` words plus EOS, responses of 1 to ``max_len`` words.

    A response has at least one word (EOS may not come first). One of k < ``max_len``
    words ends with EOS at position k; one of ``max_len`` words has no EOS.
    """

    vocab_size: int = 24
    max_len: int = 16

    def __post_init__(self) -> None:
        positive_int("vocab_size", self.vocab_size)
        positive_int("max_len", self.max_len)

    @property
    def eos(self) -> int:
        return self.vocab_size

    @property
    def bos(self) -> int:
        return self.vocab_size + 1

    @property
    def num_actions(self) -> int:
        """Words and EOS."""
        return self.vocab_size + 1

    @property
    def num_responses(self) -> int:
        r""":math:`\sum_{k=1}^{L} V^k`, every response the MDP can produce."""
        return sum(self.vocab_size ** k for k in range(1, self.max_len + 1))


def next_state(state: tuple[int, ...], action: int, task: TokenTask) -> tuple[tuple[int, ...], bool]:
    """The deterministic transition: the state with ``action`` appended, and whether the response has ended.

    Parameters
    ----------
    state : tuple of int
        The words so far (no EOS), fewer than ``task.max_len``.
    action : int
        A word ``0 … V-1`` or ``task.eos``; EOS may not be the first action.

    Returns
    -------
    state : tuple of int
    done : bool
        True at EOS or when the response reaches ``max_len`` words.
    """
    if len(state) >= task.max_len or task.eos in state:
        raise ValueError(f"state {state} has already ended (max_len {task.max_len}, EOS {task.eos})")
    if not 0 <= action <= task.eos:
        raise ValueError(f"action {action}: expected a word 0…{task.vocab_size - 1} or EOS {task.eos}")
    if action == task.eos:
        if not state:
            raise ValueError("EOS as the first action: a response has at least one word")
        return (*state, action), True
    new = (*state, action)
    return new, len(new) == task.max_len


def response_mask(tokens: Tensor, task: TokenTask) -> Tensor:
    """The positions that belong to each response: up to and including its first EOS.

    Parameters
    ----------
    tokens : Tensor of int64, shape (B, L)
        L = ``task.max_len``; ids in ``0 … V``; EOS-padded after the first EOS.

    Returns
    -------
    Tensor of bool, shape (B, L)

    Raises
    ------
    ValueError
        For a wrong shape or dtype, an id out of range, an empty response (EOS first) or a
        word after EOS.
    """
    if not isinstance(tokens, Tensor) or tokens.dtype != torch.int64:
        raise TypeError(f"tokens: expected an int64 tensor, got {getattr(tokens, 'dtype', type(tokens).__name__)}")
    if tokens.dim() != 2 or tokens.shape[1] != task.max_len:
        raise ValueError(f"tokens: expected shape (B, {task.max_len}), got {tuple(tokens.shape)}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) > task.eos):
        raise ValueError(f"tokens: ids must lie in 0…{task.eos} (EOS = {task.eos}); got {int(tokens.min())}…{int(tokens.max())}")
    is_eos = tokens == task.eos
    if bool(is_eos[:, 0].any()):
        row = int(is_eos[:, 0].nonzero()[0])
        raise ValueError(f"tokens: response {row} is empty (EOS first); a response has at least one word")
    ended_before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long() > 0  # an EOS strictly earlier
    if bool((ended_before & ~is_eos).any()):
        row = int((ended_before & ~is_eos).any(1).nonzero()[0])
        raise ValueError(f"tokens: response {row} has a word after its EOS (pad with EOS = {task.eos})")
    return ~ended_before


def response_lengths(tokens: Tensor, task: TokenTask) -> Tensor:
    """Number of words of each response (EOS not counted), shape (B,)."""
    mask = response_mask(tokens, task)
    return (mask & (tokens != task.eos)).sum(1)


def all_responses(task: TokenTask, limit: int = 200_000) -> Tensor:
    """Every response of the MDP, shortest first, shape (M, L) with M = ``task.num_responses``.

    Raises ``ValueError`` when M exceeds ``limit`` (the task is too big to list).
    """
    if task.num_responses > limit:
        raise ValueError(f"{task.num_responses} responses (V={task.vocab_size}, L={task.max_len}) exceed {limit}: "
                         f"too many to list; use a smaller task")
    rows = []
    for k in range(1, task.max_len + 1):
        words = torch.tensor(list(itertools.product(range(task.vocab_size), repeat=k)), dtype=torch.int64)
        pad = torch.full((words.shape[0], task.max_len - k), task.eos, dtype=torch.int64)
        rows.append(torch.cat([words, pad], dim=1))
    return torch.cat(rows)


# ---------------------------------------------------------------------------------------
# Demonstrations and the hidden utility
# ---------------------------------------------------------------------------------------


class BigramSource(NamedTuple):
    """A bigram model of responses: the demonstrator of step 1.

    ``start_logits`` (V,): the first word. ``next_logits`` (V, V+1): the next word or EOS
    after each word.
    """

    start_logits: Tensor
    next_logits: Tensor


def make_demonstrator(task: TokenTask, generator: torch.Generator, *, repeat_logit: float = -4.0,
                      eos_logit: float = 0.0, spread: float = 1.5) -> BigramSource:
    """A random bigram demonstrator that seldom repeats a word.

    Word logits are N(0, ``spread``²); the logit of repeating the previous word is
    ``repeat_logit`` and the logit of EOS ``eos_logit`` (so the mean length is set by it).
    """
    v = task.vocab_size
    start = spread * torch.randn(v, generator=generator)
    following = spread * torch.randn(v, v, generator=generator)
    following[torch.arange(v), torch.arange(v)] = repeat_logit
    eos = torch.full((v, 1), float(eos_logit))
    return BigramSource(start, torch.cat([following, eos], dim=1))


def bigram_logp(source: BigramSource, tokens: Tensor, task: TokenTask) -> Tensor:
    r""":math:`\log p(y)` of each response under the demonstrator, shape (B,)."""
    mask = response_mask(tokens, task)
    logp_start = F.log_softmax(source.start_logits, dim=0)[tokens[:, 0]]
    prev = tokens[:, :-1].clamp_max(task.vocab_size - 1)
    logp_next = F.log_softmax(source.next_logits, dim=1)[prev, tokens[:, 1:]]
    return logp_start + (logp_next * mask[:, 1:]).sum(1)


def sample_bigram(source: BigramSource, num: int, task: TokenTask, generator: torch.Generator) -> Tensor:
    """``num`` responses of the demonstrator, shape (num, L), EOS-padded."""
    num = positive_int("num", num)
    tokens = torch.full((num, task.max_len), task.eos, dtype=torch.int64)
    alive = torch.ones(num, dtype=torch.bool)
    word = torch.multinomial(F.softmax(source.start_logits, 0).expand(num, -1), 1, generator=generator).squeeze(1)
    tokens[:, 0] = word
    for t in range(1, task.max_len):
        probs = F.softmax(source.next_logits[word], dim=1)
        nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        nxt = torch.where(alive, nxt, task.eos)
        tokens[:, t] = nxt
        alive = alive & (nxt != task.eos)
        word = nxt.clamp_max(task.vocab_size - 1)
    return tokens


@dataclass(frozen=True)
class Utility:
    r"""The hidden true utility of a response, what the simulated labellers prefer.

    .. math:: u(y) = \sum_t w_{y_t} - c_{rep}\,\#\{t : y_t = y_{t-1}\}

    Word values ``word_values`` (V,) and a penalty ``repeat_penalty`` on each word that
    repeats the one before it. The reward model never sees it: only choices made with it.
    """

    word_values: Tensor
    repeat_penalty: float


def make_utility(task: TokenTask, generator: torch.Generator, *, repeat_penalty: float = 1.5,
                 scale: float = 0.5) -> Utility:
    """Word values N(0, ``scale``²) and a penalty on each repeated word."""
    return Utility(scale * torch.randn(task.vocab_size, generator=generator, dtype=torch.float64),
                   float(positive_number("repeat_penalty", repeat_penalty, allow_zero=True)))


def true_utility(tokens: Tensor, utility: Utility, task: TokenTask) -> Tensor:
    """:class:`Utility` of each response, shape (B,), float64."""
    mask = response_mask(tokens, task)
    is_word = mask & (tokens != task.eos)
    values = utility.word_values.to(tokens.device)[tokens.clamp_max(task.vocab_size - 1)]
    repeats = is_word[:, 1:] & (tokens[:, 1:] == tokens[:, :-1])
    return (values * is_word).sum(1) - utility.repeat_penalty * repeats.sum(1)


# ---------------------------------------------------------------------------------------
# The networks
# ---------------------------------------------------------------------------------------


class TokenPolicy(nn.Module):
    r"""A tiny autoregressive language model with a value head: embedding → GRU → (logits, value).

    Position t reads BOS, y_0, …, y_{t-1} and gives the logits of :math:`\pi(\cdot|y_{<t})`
    over the V+1 actions (EOS banned at t = 0) and the value :math:`V(y_{<t})` used by PPO.

    Parameters
    ----------
    task : TokenTask
    hidden : int
        Width of the embedding and of the GRU.
    generator : torch.Generator, optional
        Draws the initial weights (PyTorch's default initialisation otherwise uses the
        global generator).
    """

    def __init__(self, task: TokenTask, hidden: int = 64, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.task = task
        self.embed = nn.Embedding(task.vocab_size + 2, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, task.num_actions)
        self.value_head = nn.Linear(hidden, 1)
        if generator is not None:
            _init_from(self, generator)

    def _inputs(self, tokens: Tensor) -> Tensor:
        bos = tokens.new_full((tokens.shape[0], 1), self.task.bos)
        return torch.cat([bos, tokens[:, :-1]], dim=1)

    def _mask_first(self, logits: Tensor) -> Tensor:
        banned = torch.zeros_like(logits[0, :1])
        banned[..., self.task.eos] = _BANNED
        return torch.cat([logits[:, :1] + banned, logits[:, 1:]], dim=1)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Logits (B, L, V+1) and values (B, L) at every position of ``tokens`` (B, L), teacher-forced."""
        hidden, _ = self.gru(self.embed(self._inputs(tokens)))
        return self._mask_first(self.head(hidden)), self.value_head(hidden).squeeze(-1)

    def token_logp(self, tokens: Tensor) -> Tensor:
        r""":math:`\log\pi(y_t|y_{<t})` at each position, shape (B, L), 0 outside the response."""
        mask = response_mask(tokens, self.task)
        logits, _ = self(tokens)
        logp = F.log_softmax(logits, dim=-1).gather(2, tokens.unsqueeze(2)).squeeze(2)
        return logp * mask

    def sequence_logp(self, tokens: Tensor) -> Tensor:
        r""":math:`\log\pi(y) = \sum_t \log\pi(y_t|y_{<t})`, shape (B,)."""
        return self.token_logp(tokens).sum(1)

    @torch.no_grad()
    def sample(self, num: int, generator: torch.Generator) -> Tensor:
        """``num`` responses drawn token by token, shape (num, L), EOS-padded."""
        num = positive_int("num", num)
        device = self.head.weight.device
        tokens = torch.full((num, self.task.max_len), self.task.eos, dtype=torch.int64, device=device)
        alive = torch.ones(num, dtype=torch.bool, device=device)
        prev = torch.full((num, 1), self.task.bos, dtype=torch.int64, device=device)
        state: Tensor | None = None
        for t in range(self.task.max_len):
            out, state = self.gru(self.embed(prev), state)
            logits = self.head(out[:, 0])
            if t == 0:
                logits[:, self.task.eos] = _BANNED
            u = torch.rand(logits.shape, generator=generator, device=device).clamp_min(1e-20)
            action = torch.argmax(logits - torch.log(-torch.log(u)), dim=1)  # Gumbel-max: a ~ softmax(logits)
            action = torch.where(alive, action, self.task.eos)
            tokens[:, t] = action
            alive = alive & (action != self.task.eos)
            if not bool(alive.any()):
                break
            prev = action.unsqueeze(1)
        return tokens


class RewardModel(nn.Module):
    r"""A learned reward :math:`\hat r(y)`: embedding → GRU → a linear head on the response's last position.

    Parameters
    ----------
    task : TokenTask
    hidden : int
    generator : torch.Generator, optional
    """

    def __init__(self, task: TokenTask, hidden: int = 32, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.task = task
        self.embed = nn.Embedding(task.vocab_size + 2, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)
        if generator is not None:
            _init_from(self, generator)

    def forward(self, tokens: Tensor) -> Tensor:
        """Scores of the responses ``tokens`` (B, L), shape (B,)."""
        mask = response_mask(tokens, self.task)
        hidden, _ = self.gru(self.embed(tokens))
        last = mask.sum(1) - 1  # the response's last position (its EOS, or word L-1)
        return self.head(hidden[torch.arange(tokens.shape[0], device=tokens.device), last]).squeeze(-1)


def _init_from(module: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default initialisation of embeddings, GRUs and linear layers, drawn from ``generator``."""
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.Embedding):
                sub.weight.copy_(torch.randn(sub.weight.shape, generator=generator))
            elif isinstance(sub, (nn.GRU, nn.Linear)):
                fan = sub.hidden_size if isinstance(sub, nn.GRU) else sub.in_features
                bound = 1.0 / math.sqrt(fan)
                for p in sub.parameters(recurse=False):
                    p.copy_((torch.rand(p.shape, generator=generator) * 2.0 - 1.0) * bound)


# ---------------------------------------------------------------------------------------
# Step 1: supervised pre-training
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 300
    batch_size: int = 256
    lr: float = 3e-3


def pretrain(policy: TokenPolicy, demos: Tensor, config: PretrainConfig, generator: torch.Generator) -> list[float]:
    r"""Maximum likelihood on demonstrations: minimise the mean token cross-entropy :math:`-\log\pi(y_t|y_{<t})`.

    Parameters
    ----------
    policy : TokenPolicy
        Trained in place.
    demos : Tensor of int64, shape (D, L)
    config : PretrainConfig
    generator : torch.Generator
        Draws the minibatches.

    Returns
    -------
    list of float
        The loss (nats per token) at each step.
    """
    mask = response_mask(demos, policy.task)
    optimizer = FusedAdam(policy.parameters(), lr=config.lr)
    losses = []
    for _ in range(config.steps):
        index = torch.randint(demos.shape[0], (min(config.batch_size, demos.shape[0]),), generator=generator)
        mb, mb_mask = demos[index], mask[index]
        logits, _ = policy(mb)
        logp = F.log_softmax(logits, dim=-1).gather(2, mb.unsqueeze(2)).squeeze(2)
        loss = -(logp * mb_mask).sum() / mb_mask.sum()  # mean −log π(y_t|y_<t) over the responses' tokens
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


# ---------------------------------------------------------------------------------------
# Step 2: reward modelling
# ---------------------------------------------------------------------------------------


def preference_pairs(policy: TokenPolicy, utility: Utility, num_pairs: int,
                     generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Two responses of ``policy`` per pair, labelled by Bradley-Terry labellers with the true utility.

    Returns
    -------
    chosen, rejected : Tensor of int64, shape (num_pairs, L)
    """
    a, b = policy.sample(num_pairs, generator), policy.sample(num_pairs, generator)
    a_wins = sample_preferences(true_utility(a, utility, policy.task), true_utility(b, utility, policy.task),
                                generator=torch.Generator().manual_seed(int(torch.randint(2**31, (1,), generator=generator))))
    pick = a_wins.unsqueeze(1)
    return torch.where(pick, a, b), torch.where(pick, b, a)


@dataclass(frozen=True)
class RewardModelConfig:
    epochs: int = 20
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0


def _check_pairs(chosen: Tensor, rejected: Tensor) -> None:
    """Raise ``ValueError`` unless ``chosen`` and ``rejected`` are P ≥ 1 pairs of one shape (P, L)."""
    if chosen.shape != rejected.shape:
        raise ValueError(f"chosen {tuple(chosen.shape)} and rejected {tuple(rejected.shape)}: mismatched shapes")
    if chosen.dim() != 2 or chosen.shape[0] == 0:
        raise ValueError(f"chosen {tuple(chosen.shape)}: expected (P, L) with P ≥ 1 preference pairs")


def train_reward_model(model: RewardModel, chosen: Tensor, rejected: Tensor, config: RewardModelConfig,
                       generator: torch.Generator) -> list[float]:
    r"""Fit a reward model to preferences with the Bradley-Terry loss :math:`-\log\sigma(\hat r(y_w) - \hat r(y_l))`.

    Parameters
    ----------
    model : RewardModel
        Trained in place.
    chosen, rejected : Tensor of int64, shape (P, L)
        P ≥ 1 pairs of valid responses (:func:`response_mask`), else ``ValueError``.
    config : RewardModelConfig
    generator : torch.Generator
        Draws the shuffles.

    Returns
    -------
    list of float
        The mean loss of each epoch.
    """
    _check_pairs(chosen, rejected)
    response_mask(chosen, model.task), response_mask(rejected, model.task)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    losses = []
    for _ in range(config.epochs):
        order = torch.randperm(chosen.shape[0], generator=generator)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            index = order[start:start + config.batch_size]
            loss = bradley_terry_loss(model(chosen[index]), model(rejected[index]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
        losses.append(total / len(order))
    return losses


def ranking_accuracy(reward_fn: Callable[[Tensor], Tensor], a: Tensor, b: Tensor, utility: Utility,
                     task: TokenTask) -> float:
    """Share of pairs (a_i, b_i) that ``reward_fn`` orders as the true utility does; pairs of equal utility are left out."""
    u_a, u_b = true_utility(a, utility, task), true_utility(b, utility, task)
    keep = u_a != u_b
    if not bool(keep.any()):
        raise ValueError("every pair has equal true utility: no ranking to recover")
    with torch.no_grad():
        r_a, r_b = reward_fn(a[keep]), reward_fn(b[keep])
    a_better = u_a[keep] > u_b[keep]
    return float(pairwise_accuracy(torch.where(a_better, r_a, r_b), torch.where(a_better, r_b, r_a)))


class RLHFSetup(NamedTuple):
    """Steps 1 and 2 of RLHF done: what step 3 (or DPO) starts from."""

    task: TokenTask
    demonstrator: BigramSource
    utility: Utility
    ref_policy: TokenPolicy  # π_ref, pre-trained, parameters frozen
    chosen: Tensor  # (P, L) preferred responses of π_ref
    rejected: Tensor  # (P, L)
    test_a: Tensor  # (P_test, L) held-out pairs of π_ref's responses, unlabelled
    test_b: Tensor
    reward_model: RewardModel  # fitted to (chosen, rejected), parameters frozen


def rlhf_setup(task: TokenTask, seed: int, *, num_demos: int = 4000, num_pairs: int = 3000, num_test: int = 1000,
               pretrain_config: PretrainConfig = PretrainConfig(steps=200),
               reward_config: RewardModelConfig = RewardModelConfig(epochs=10, batch_size=256),
               repeat_penalty: float = 3.0, utility_scale: float = 1.0, eos_logit: float = 0.0) -> RLHFSetup:
    """Steps 1 and 2 from one seed: demonstrator and hidden utility, pre-trained π_ref, preferences, reward model.

    Everything is drawn from ``torch.Generator().manual_seed(seed)``, in this order.
    """
    g = torch.Generator().manual_seed(seed)
    demonstrator = make_demonstrator(task, g, eos_logit=eos_logit)
    utility = make_utility(task, g, scale=utility_scale, repeat_penalty=repeat_penalty)
    demos = sample_bigram(demonstrator, num_demos, task, g)
    ref_policy = TokenPolicy(task, hidden=64, generator=g)
    pretrain(ref_policy, demos, pretrain_config, g)
    ref_policy.requires_grad_(False)
    chosen, rejected = preference_pairs(ref_policy, utility, num_pairs, g)
    test_a, test_b = ref_policy.sample(num_test, g), ref_policy.sample(num_test, g)
    reward_model = RewardModel(task, generator=g)
    train_reward_model(reward_model, chosen, rejected, reward_config, g)
    reward_model.requires_grad_(False)
    return RLHFSetup(task, demonstrator, utility, ref_policy, chosen, rejected, test_a, test_b, reward_model)


# ---------------------------------------------------------------------------------------
# Step 3: PPO against the learned reward, with a KL penalty
# ---------------------------------------------------------------------------------------


def kl_penalized_rewards(logp: Tensor, ref_logp: Tensor, score: Tensor, mask: Tensor, beta: float) -> Tensor:
    r"""Per-token rewards of RLHF: a KL penalty at every token, the learned reward at the last.

    .. math:: r_t = -\beta\big(\log\pi(y_t|y_{<t}) - \log\pi_{ref}(y_t|y_{<t})\big)
              + [t = \text{last}]\;\hat r(y)

    Their sum is :math:`\hat r(y) - \beta\log\frac{\pi(y)}{\pi_{ref}(y)}`, whose mean over
    responses of π is :math:`\mathbb E_\pi[\hat r] - \beta\,\mathrm{KL}(\pi\|\pi_{ref})`
    (Ziegler et al. 2019, eq. 2; Stiennon et al. 2020). Zero penalty where π = π_ref.

    Parameters
    ----------
    logp, ref_logp : Tensor, shape (B, L)
        Log-probabilities of the response's tokens under π (data: detached) and π_ref.
    score : Tensor, shape (B,)
        :math:`\hat r(y)` of each response.
    mask : Tensor of bool, shape (B, L)
        The response's positions (:func:`response_mask`); each row has at least one.
    beta : float
        β ≥ 0.

    Returns
    -------
    Tensor, shape (B, L)
        0 outside the response.

    Raises
    ------
    ValueError
        For mismatched shapes, an empty batch or response, a mask that is not a prefix of
        each row, NaN in ``logp``, ``ref_logp`` or ``score``, or β < 0.
    """
    beta = positive_number("beta", beta, allow_zero=True)
    if logp.shape != ref_logp.shape or logp.shape != mask.shape or logp.dim() != 2:
        raise ValueError(f"logp {tuple(logp.shape)}, ref_logp {tuple(ref_logp.shape)} and mask {tuple(mask.shape)}: "
                         f"expected one shape (B, L)")
    if score.shape != logp.shape[:1]:
        raise ValueError(f"score {tuple(score.shape)}: expected ({logp.shape[0]},), one per response")
    if logp.shape[0] == 0 or not bool(mask[:, 0].all()):
        raise ValueError("every response needs at least one token (mask[:, 0] all True, B ≥ 1)")
    if bool((mask[:, 1:].bool() & ~mask[:, :-1].bool()).any()):
        raise ValueError("mask: each row must be True on a prefix (the response, then padding), as from response_mask")
    no_nan(logp=logp, ref_logp=ref_logp, score=score)
    rewards = -beta * (logp.detach() - ref_logp.detach()) * mask  # −β log π/π_ref per token
    last = mask.sum(1) - 1
    return rewards.index_put((torch.arange(len(last), device=last.device), last), score.detach(), accumulate=True)


@dataclass(frozen=True)
class RLHFConfig:
    """PPO fine-tuning against a learned reward (one response per prompt-free episode)."""

    beta: float = 0.1  # β of the KL penalty
    iterations: int = 100
    batch_size: int = 256  # responses per iteration
    update_epochs: int = 4  # K
    num_minibatches: int = 4
    lr: float = 3e-3
    clip_eps: float = 0.2
    gamma: float = 1.0
    gae_lambda: float = 0.95
    vf_coef: float = 0.5
    max_grad_norm: float = 1.0
    anneal_lr: bool = True  # the step size falls linearly to 0 over the iterations

    def __post_init__(self) -> None:
        positive_number("beta", self.beta, allow_zero=True)
        positive_int("iterations", self.iterations)
        positive_int("batch_size", self.batch_size)
        positive_int("update_epochs", self.update_epochs)
        positive_int("num_minibatches", self.num_minibatches)
        positive_number("lr", self.lr)
        positive_number("clip_eps", self.clip_eps)
        unit_interval("gamma", self.gamma, "a discount")
        unit_interval("gae_lambda", self.gae_lambda, "a trace-decay λ")

    @property
    def minibatch_size(self) -> int:
        return -(-self.batch_size // self.num_minibatches)


class RLHFStats(NamedTuple):
    """One iteration of :func:`rlhf_ppo`, measured on the responses it sampled."""

    iteration: int
    score: float  # mean learned reward E[r̂(y)]
    kl: float  # mean log π(y)/π_ref(y): the k1 estimate of KL(π‖π_ref), nats per response
    objective: float  # score − β kl
    utility: float  # mean true utility (nan without one)


def rlhf_ppo(policy: TokenPolicy, ref_policy: TokenPolicy, reward_fn: Callable[[Tensor], Tensor], config: RLHFConfig,
             generator: torch.Generator, *, utility: Utility | None = None,
             on_iteration: Callable[[RLHFStats], None] | None = None) -> list[RLHFStats]:
    r"""Fine-tune ``policy`` with PPO on :math:`\hat r(y) - \beta\log\frac{\pi(y)}{\pi_{ref}(y)}` (step 3 of RLHF).

    Each iteration samples ``batch_size`` responses, scores them with ``reward_fn``, builds
    per-token rewards (:func:`kl_penalized_rewards`), computes GAE(γ, λ) over the token
    positions with the policy's value head (a response's end is terminal), standardises
    the advantages over the batch's tokens, and takes K epochs of minibatch steps over the
    responses on the clipped surrogate (:func:`rlteach.ppo.policy_loss`) plus the value
    loss, with global gradient-norm clipping; the step size anneals linearly to 0 with ``anneal_lr``.

    Parameters
    ----------
    policy : TokenPolicy
        Trained in place; usually starts as a copy of ``ref_policy``.
    ref_policy : TokenPolicy
        :math:`\pi_{ref}`, frozen.
    reward_fn : callable
        ``tokens (B, L) → scores (B,)``, e.g. a :class:`RewardModel`.
    config : RLHFConfig
    generator : torch.Generator
        The responses and the minibatch shuffles.
    utility : Utility, optional
        Reports the true utility of the sampled responses (never used for training).
    on_iteration : callable, optional
        Called with each iteration's :class:`RLHFStats`.

    Returns
    -------
    list of RLHFStats
    """
    task = policy.task
    optimizer = FusedAdam(policy.parameters(), lr=config.lr)
    params = list(policy.parameters())
    history = []
    for it in range(config.iterations):
        optimizer.param_groups[0]["lr"] = linear_schedule(config.lr, it, config.iterations) if config.anneal_lr else config.lr
        with torch.no_grad():
            tokens = policy.sample(config.batch_size, generator)
            mask = response_mask(tokens, task)
            logits, values = policy(tokens)
            logp = F.log_softmax(logits, dim=-1).gather(2, tokens.unsqueeze(2)).squeeze(2) * mask
            ref_logp = ref_policy.token_logp(tokens)
            score = reward_fn(tokens).to(logp.dtype)
            rewards = kl_penalized_rewards(logp, ref_logp, score, mask, config.beta)
            values = values * mask
            ended = ~torch.cat([mask[:, 1:], mask.new_zeros(mask.shape[0], 1)], dim=1)  # no next token in the response
            next_values = torch.cat([values[:, 1:], values.new_zeros(values.shape[0], 1)], dim=1)
            adv = gae(rewards.T, values.T, next_values.T, ended.T, torch.zeros_like(ended.T),
                      config.gamma, config.gae_lambda).T
            returns = adv + values
            norm_adv = torch.zeros_like(adv)
            norm_adv[mask] = normalize_advantages(adv[mask])
            kl = float((logp - ref_logp).sum(1).mean())
            stats = RLHFStats(it, float(score.mean()), kl, float(score.mean()) - config.beta * kl,
                              float(true_utility(tokens, utility, task).mean()) if utility is not None else math.nan)
        history.append(stats)
        if on_iteration is not None:
            on_iteration(stats)
        for _ in range(config.update_epochs):
            order = torch.randperm(config.batch_size, generator=generator, device=generator.device).to(tokens.device)
            for start in range(0, config.batch_size, config.minibatch_size):
                index = order[start:start + config.minibatch_size]
                mb_mask = mask[index]
                new_logits, new_values = policy(tokens[index])
                new_logp = F.log_softmax(new_logits, dim=-1).gather(2, tokens[index].unsqueeze(2)).squeeze(2)
                pi_loss, _ = policy_loss(new_logp[mb_mask], logp[index][mb_mask], norm_adv[index][mb_mask],
                                         config.clip_eps)
                v_loss = value_loss(new_values[mb_mask], values[index][mb_mask], returns[index][mb_mask])
                loss = pi_loss + config.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
    return history


# ---------------------------------------------------------------------------------------
# The closed-form optimum, and DPO
# ---------------------------------------------------------------------------------------


def optimal_policy_logp(ref_logp: Tensor, reward: Tensor, beta: float) -> Tensor:
    r"""The maximiser of :math:`\mathbb E_\pi[r] - \beta\,\mathrm{KL}(\pi\|\pi_{ref})` over every listed response.

    .. math:: \log\pi^*(y) = \log\pi_{ref}(y) + r(y)/\beta - \log\sum_{y'}\pi_{ref}(y')\,e^{r(y')/\beta}

    (a Gibbs distribution; Korbak et al. 2022, Rafailov et al. 2023, eq. 4). β → ∞ gives
    :math:`\pi_{ref}`; β → 0 puts all the mass on the responses of largest reward.

    Parameters
    ----------
    ref_logp, reward : Tensor, shape (M,)
        Over all M responses (:func:`all_responses`); ``ref_logp`` normalised.
    beta : float
        β > 0.

    Returns
    -------
    Tensor, shape (M,)
    """
    beta = positive_number("beta", beta)
    if ref_logp.shape != reward.shape or ref_logp.dim() != 1 or ref_logp.numel() == 0:
        raise ValueError(f"ref_logp {tuple(ref_logp.shape)} and reward {tuple(reward.shape)}: expected one shape (M,), M ≥ 1")
    no_nan(ref_logp=ref_logp, reward=reward)
    return F.log_softmax(ref_logp + reward / beta, dim=0)  # log π_ref + r/β, normalised


def sequence_kl(logp_p: Tensor, logp_q: Tensor) -> Tensor:
    r""":math:`\mathrm{KL}(p\|q) = \sum_y p(y)(\log p(y) - \log q(y))` over every listed response (nats).

    ``logp_p``, ``logp_q`` : shape (M,). A response with :math:`p(y) = 0` (``logp_p = -inf``) adds 0.
    """
    if logp_p.shape != logp_q.shape or logp_p.dim() != 1:
        raise ValueError(f"logp_p {tuple(logp_p.shape)} and logp_q {tuple(logp_q.shape)}: expected one shape (M,)")
    p = logp_p.exp()
    log_ratio = torch.where(p > 0, logp_p - logp_q, torch.zeros_like(p))  # 0 log 0/q = 0
    return (p * log_ratio).sum()  # Σ p log p/q


class OptimumSummary(NamedTuple):
    """What :math:`\\pi^*_\\beta` achieves, per β (tensors of shape (len(betas),))."""

    betas: Tensor
    reward: Tensor  # E_π*[r̂], the learned reward it maximises
    utility: Tensor  # E_π*[u], the true utility
    kl: Tensor  # KL(π* ‖ π_ref)


def optimum_summary(ref_logp: Tensor, reward: Tensor, utility: Tensor, betas: Tensor) -> OptimumSummary:
    """Learned reward, true utility and KL to the reference of :func:`optimal_policy_logp` for each β.

    ``ref_logp``, ``reward`` and ``utility`` are over every listed response, shape (M,).
    """
    rewards, utilities, kls = [], [], []
    for beta in betas.tolist():
        logp = optimal_policy_logp(ref_logp, reward, beta)
        p = logp.exp()
        rewards.append((p * reward).sum())
        utilities.append((p * utility).sum())
        kls.append(sequence_kl(logp, ref_logp))
    return OptimumSummary(betas, torch.stack(rewards), torch.stack(utilities), torch.stack(kls))


@dataclass(frozen=True)
class DPOConfig:
    beta: float = 0.1
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3


def train_dpo(policy: TokenPolicy, ref_policy: TokenPolicy, chosen: Tensor, rejected: Tensor, config: DPOConfig,
              generator: torch.Generator) -> list[float]:
    r"""Fine-tune ``policy`` on preferences with :func:`rlteach.preferences.dpo_loss`: no reward model, no sampling.

    Parameters
    ----------
    policy : TokenPolicy
        Trained in place; usually starts as a copy of ``ref_policy``.
    ref_policy : TokenPolicy
        :math:`\pi_{ref}`, frozen; its log-probabilities of the data are computed once.
    chosen, rejected : Tensor of int64, shape (P, L)
        P ≥ 1 pairs of valid responses, else ``ValueError``.
    config : DPOConfig
    generator : torch.Generator

    Returns
    -------
    list of float
        The mean loss of each epoch.
    """
    _check_pairs(chosen, rejected)
    with torch.no_grad():
        ref_chosen, ref_rejected = ref_policy.sequence_logp(chosen), ref_policy.sequence_logp(rejected)
    optimizer = FusedAdam(policy.parameters(), lr=config.lr)
    losses = []
    for _ in range(config.epochs):
        order = torch.randperm(chosen.shape[0], generator=generator)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            index = order[start:start + config.batch_size]
            loss, _ = dpo_loss(policy.sequence_logp(chosen[index]), policy.sequence_logp(rejected[index]),
                               ref_chosen[index], ref_rejected[index], config.beta)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
        losses.append(total / len(order))
    return losses
