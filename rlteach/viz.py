"""Figures for the lectures. Each function draws results that the math modules computed;
none computes and plots at once. Every function takes the matplotlib ``Figure`` to draw
on and returns its axes, so tests can read what was drawn."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rlteach.importance import GaussianISExperiment

TARGET_COLOR, PROPOSAL_COLOR = "tab:red", "tab:blue"


def source_markdown(fn: Callable) -> str:
    """The source of a library function as a Markdown code block, for a lecture to display.

    Lectures show the library's own code this way, so the text cannot drift from what the
    tests check.
    """
    return f"```python\n{inspect.getsource(getattr(fn, '__graded_code__', fn))}```"


def _gaussian_pdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


def draw_is_experiment(fig: Figure, result: GaussianISExperiment, target: tuple[float, float],
                       proposal: tuple[float, float]) -> tuple[Axes, Axes]:
    """Left: the densities p and q and the weight p/q. Right: histograms of the ordinary
    and weighted estimates across repeats, the truth, and the mean ESS in the title."""
    fig.clear()
    left, right = fig.subplots(1, 2)
    lo = min(target[0] - 4 * target[1], proposal[0] - 4 * proposal[1])
    hi = max(target[0] + 4 * target[1], proposal[0] + 4 * proposal[1])
    x = np.linspace(lo, hi, 400)
    p, q = _gaussian_pdf(x, *target), _gaussian_pdf(x, *proposal)
    left.plot(x, p, color=TARGET_COLOR, label="target p")
    left.plot(x, q, color=PROPOSAL_COLOR, label="proposal q")
    twin = left.twinx()
    twin.plot(x, p / q, color="gray", linestyle="--", label="weight p/q")
    twin.set_yscale("log")
    twin.set_ylabel("p/q (log scale)")
    left.set_xlabel("x")
    left.legend(loc="upper left", fontsize="small")
    left.set_title("densities and importance weight")
    ordinary, weighted = result.ordinary.numpy(), result.weighted.numpy()
    span = np.concatenate([weighted, np.clip(ordinary, *np.percentile(ordinary, [1, 99]))])
    bins = np.linspace(span.min(), span.max(), 40) if np.ptp(span) > 0 else 40
    right.hist(ordinary, bins=bins, alpha=0.5, color=PROPOSAL_COLOR, label=f"ordinary (sd {ordinary.std():.3f})")
    right.hist(weighted, bins=bins, alpha=0.5, color="tab:green", label=f"weighted (sd {weighted.std():.3f})")
    right.axvline(result.truth, color=TARGET_COLOR, label=f"truth E_p[x] = {result.truth:g}")
    right.set_xlabel("estimate of E_p[x]")
    right.legend(fontsize="small")
    right.set_title(f"{len(ordinary)} repeats: mean ESS {result.ess.mean().item():.1f} of n = {result.n}")
    fig.tight_layout()
    return left, right

