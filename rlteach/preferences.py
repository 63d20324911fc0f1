r"""Preferences between responses: the Bradley-Terry model, its losses, and DPO.

A reward model gives each response a scalar score :math:`s`. The Bradley-Terry model
(Bradley & Terry 1952) reads the scores as strengths :math:`p = e^{s}`:

.. math:: P(i \succ j) = \frac{p_i}{p_i + p_j} = \sigma(s_i - s_j),

so only score differences matter (adding a constant to every score changes nothing).
Fitting the scores to observed choices by maximum likelihood is minimising
:math:`-\log\sigma(s_{chosen} - s_{rejected})`, written here with ``logsigmoid`` so that a
margin of ±1000 neither overflows nor returns ``-inf``. A ranking of k responses follows the
Plackett-Luce model (the first is chosen from all k with probabilities :math:`\propto p`,
the next from the rest, ...), the k-wise Bradley-Terry model; InstructGPT trains on all
:math:`\binom k2` pairs that a ranking implies (Ouyang et al. 2022).

Direct preference optimisation (Rafailov et al. 2023) puts the same loss on the policy's
implicit reward :math:`\beta\log\frac{\pi_\theta(y)}{\pi_{ref}(y)}`, with no reward model
and no sampling.

Shapes: one score per response, ``(B,)`` for B pairs; ``(B, k)`` for B groups of k.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from rlteach._validate import as_tensor, no_nan, positive_number, same_shape

__all__ = [
    "DPOStats",
    "bradley_terry_loss",
    "bradley_terry_prob",
    "dpo_loss",
    "pairwise_accuracy",
    "ranking_pairs",
    "sample_preferences",
    "sample_rankings",
]


def _pair(name_a: str, a: object, name_b: str, b: object) -> tuple[Tensor, Tensor]:
    """Two score tensors of one shape with at least one pair, no NaN."""
    ta, tb = as_tensor(name_a, a), as_tensor(name_b, b)
    same_shape(**{name_a: ta, name_b: tb})
    if ta.numel() == 0:
        raise ValueError(f"{name_a} and {name_b} are empty: a preference needs at least one pair")
    no_nan(**{name_a: ta, name_b: tb})
    return ta, tb


def bradley_terry_prob(score_i: Tensor, score_j: Tensor) -> Tensor:
    r"""The Bradley-Terry probability that response i is preferred to response j.

    .. math:: P(i \succ j) = \frac{e^{s_i}}{e^{s_i} + e^{s_j}} = \sigma(s_i - s_j)

    ``P(i ≻ j) + P(j ≻ i) = 1`` exactly in the second form; the first overflows from
    :math:`s \approx 89` in float32 (``exp`` is ``inf``), which is why it is not computed.

    Parameters
    ----------
    score_i, score_j : Tensor, shape (B,)
        Scores (log-strengths) of the two responses of each pair.

    Returns
    -------
    Tensor, shape (B,)
    """
    score_i, score_j = _pair("score_i", score_i, "score_j", score_j)
    return torch.sigmoid(score_i - score_j)  # σ(s_i − s_j) = p_i / (p_i + p_j)


def bradley_terry_loss(score_chosen: Tensor, score_rejected: Tensor) -> Tensor:
    r"""The reward model's loss: the negative log-likelihood of the observed choices.

    .. math:: \mathcal L = -\frac1B\sum_b \log\sigma\big(s_{chosen,b} - s_{rejected,b}\big)

    Computed with ``logsigmoid``: a margin of −1000 gives a loss of 1000, where
    ``log(sigmoid(·))`` gives ``inf``. Its gradient in :math:`s_{chosen}` is
    :math:`-(1 - \sigma(\Delta))/B`, in :math:`s_{rejected}` the opposite.

    Parameters
    ----------
    score_chosen, score_rejected : Tensor, shape (B,)
        Scores of the preferred and of the other response of each pair, B ≥ 1.

    Returns
    -------
    Tensor, shape ()
    """
    score_chosen, score_rejected = _pair("score_chosen", score_chosen, "score_rejected", score_rejected)
    return -F.logsigmoid(score_chosen - score_rejected).mean()  # −E log σ(s_w − s_l)


def pairwise_accuracy(score_chosen: Tensor, score_rejected: Tensor) -> Tensor:
    """Share of pairs whose chosen response has the higher score (a tie counts one half)."""
    score_chosen, score_rejected = _pair("score_chosen", score_chosen, "score_rejected", score_rejected)
    wins = (score_chosen > score_rejected).to(score_chosen.dtype)
    ties = (score_chosen == score_rejected).to(score_chosen.dtype)
    return (wins + 0.5 * ties).mean()


def sample_preferences(score_a: Tensor, score_b: Tensor, generator: torch.Generator) -> Tensor:
    r"""Simulated labellers: for each pair, True where a is preferred, with probability :math:`\sigma(s_a - s_b)`.

    Parameters
    ----------
    score_a, score_b : Tensor, shape (B,)
        The true utilities of the two responses.
    generator : torch.Generator
        On the scores' device.

    Returns
    -------
    Tensor of bool, shape (B,)
    """
    score_a, score_b = _pair("score_a", score_a, "score_b", score_b)
    u = torch.rand(score_a.shape, generator=generator, device=score_a.device, dtype=score_a.dtype)
    return u < torch.sigmoid(score_a - score_b)


def sample_rankings(scores: Tensor, generator: torch.Generator) -> Tensor:
    r"""Simulated k-wise rankings from the Plackett-Luce model, best first.

    Sorting :math:`s_i + g_i` with independent Gumbel noise :math:`g_i` in decreasing order
    draws a Plackett-Luce ranking (Yellott 1977): the first is i with probability
    :math:`e^{s_i}/\sum_j e^{s_j}`, and any two of the k are ordered with the Bradley-Terry
    probability :math:`\sigma(s_i - s_j)`.

    Parameters
    ----------
    scores : Tensor, shape (B, k)
        True utilities of the k responses of each group, k ≥ 2.
    generator : torch.Generator

    Returns
    -------
    Tensor of int64, shape (B, k)
        Column indices into ``scores``, the preferred first.
    """
    scores = as_tensor("scores", scores)
    if scores.dim() != 2 or scores.shape[1] < 2 or scores.shape[0] == 0:
        raise ValueError(f"scores: expected shape (B, k) with B ≥ 1 and k ≥ 2, got {tuple(scores.shape)}")
    no_nan(scores=scores)
    u = torch.rand(scores.shape, generator=generator, device=scores.device, dtype=scores.dtype)
    gumbel = -torch.log(-torch.log(u.clamp_min(torch.finfo(u.dtype).tiny)))  # g = −log(−log U)
    return torch.argsort(scores + gumbel, dim=1, descending=True)


def ranking_pairs(ranking: Tensor) -> tuple[Tensor, Tensor]:
    r"""The :math:`\binom k2` (chosen, rejected) pairs that each ranking implies.

    Parameters
    ----------
    ranking : Tensor of int64, shape (B, k)
        Indices, best first (as from :func:`sample_rankings`).

    Returns
    -------
    chosen, rejected : Tensor of int64, shape (B, k(k-1)/2)
        Column indices: ``chosen[b, m]`` was ranked above ``rejected[b, m]``.

    Raises
    ------
    TypeError
        For a ranking that is not an int64 tensor.
    ValueError
        For a shape other than (B, k) with k ≥ 2.
    """
    if not isinstance(ranking, Tensor) or ranking.dtype != torch.int64:
        raise TypeError(f"ranking: expected an int64 tensor of indices, got {getattr(ranking, 'dtype', type(ranking).__name__)}")
    if ranking.dim() != 2 or ranking.shape[1] < 2:
        raise ValueError(f"ranking: expected shape (B, k) with k ≥ 2, got {tuple(ranking.shape)}")
    upper, lower = torch.triu_indices(ranking.shape[1], ranking.shape[1], offset=1, device=ranking.device)
    return ranking[:, upper], ranking[:, lower]


class DPOStats(NamedTuple):
    """Diagnostics of :func:`dpo_loss`, detached scalars."""

    reward_margin: Tensor  # mean implicit-reward margin β(log ratio_w − log ratio_l)
    accuracy: Tensor  # share of pairs whose implicit reward ranks the chosen one higher


def dpo_loss(logp_chosen: Tensor, logp_rejected: Tensor, ref_logp_chosen: Tensor, ref_logp_rejected: Tensor,
             beta: float) -> tuple[Tensor, DPOStats]:
    r"""Direct preference optimisation: the Bradley-Terry loss on the policy's implicit reward.

    The KL-regularised optimum :math:`\pi^*(y) \propto \pi_{ref}(y)\,e^{r(y)/\beta}` inverts
    to :math:`r(y) = \beta\log\frac{\pi^*(y)}{\pi_{ref}(y)} + \beta\log Z`; the constant
    cancels in a difference, so

    .. math:: \mathcal L_{DPO} = -\frac1B\sum_b\log\sigma\Big(\beta\big[
              (\log\pi_\theta(y_w) - \log\pi_{ref}(y_w)) - (\log\pi_\theta(y_l) - \log\pi_{ref}(y_l))\big]\Big)

    Rafailov et al. 2023, "Direct Preference Optimization". The reference log-probabilities
    are data (detached).

    Parameters
    ----------
    logp_chosen, logp_rejected : Tensor, shape (B,)
        :math:`\log\pi_\theta` of whole responses (sums over tokens), differentiable.
    ref_logp_chosen, ref_logp_rejected : Tensor, shape (B,)
        The same under the reference policy.
    beta : float
        β > 0, the strength of the KL regularisation.

    Returns
    -------
    loss : Tensor, shape ()
    stats : DPOStats
    """
    beta = positive_number("beta", beta)
    logp_chosen, logp_rejected = _pair("logp_chosen", logp_chosen, "logp_rejected", logp_rejected)
    ref_chosen, ref_rejected = _pair("ref_logp_chosen", ref_logp_chosen, "ref_logp_rejected", ref_logp_rejected)
    same_shape(logp_chosen=logp_chosen, ref_logp_chosen=ref_chosen)
    reward_chosen = beta * (logp_chosen - ref_chosen.detach())  # implicit reward β log π/π_ref of y_w
    reward_rejected = beta * (logp_rejected - ref_rejected.detach())  # ... and of y_l
    margin = reward_chosen - reward_rejected
    with torch.no_grad():
        stats = DPOStats(margin.mean(), (margin > 0).to(margin.dtype).mean())
    return -F.logsigmoid(margin).mean(), stats  # the Bradley-Terry loss on the implicit rewards
