"""Figures for the lectures. Each function draws results that the math modules computed;
none computes and plots at once. Drawing functions take the matplotlib ``Figure`` or
``Axes`` to draw on and return the axes, so tests can read what was drawn.

A few small data functions (:func:`prox_field`, :func:`prox_scene`, :func:`level_grid`,
:func:`set_outline`, :func:`step_comparison`, :func:`sent_to_zero`, :func:`histogram_view`;
for lecture 03 :func:`trust_region_scene`, :func:`gaussian_kl_scene`, :func:`bimodal_fit_scene`,
:func:`simplex_ball_scene`, :func:`mirror_step_scene`, :func:`level_grid_of`; for lecture 04
:func:`advantage_tradeoff`, :func:`rolling_mean`; for lecture 06 :func:`ppo_clip_scene`,
:func:`flat_intervals`; for lecture 07 :func:`repeat_counts`, :func:`rlhf_beta_point`,
:func:`utility_peak`) prepare the arrays
a figure needs, calling :mod:`rlteach.prox`, :mod:`rlteach.trust_region`, :mod:`rlteach.kl` and :mod:`rlteach.advantages`
for the math, and the readouts (:func:`prox_readout`, :func:`explorer_title`,
:func:`trust_region_readout`, :func:`kl_direction_readout`, :func:`simplex_ball_readout`,
:func:`mirror_readout`, :func:`advantage_readout`, :func:`ppo_clip_readout`, :func:`clip_branch`,
:func:`rlhf_beta_readout`,
:func:`format_number`) turn results into text; they return arrays or
strings and draw nothing."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Polygon
from torch import Tensor

from rlteach import advantages as adv_mod
from rlteach import kl, projections, prox, trust_region
from rlteach.importance import GaussianISExperiment, ISTheory
from rlteach.projections import SET_NAMES
from rlteach.prox import PROX_NAMES, gradient_of, prox_of, prox_path, value_of

TARGET_COLOR, PROPOSAL_COLOR = "tab:red", "tab:blue"
POINT_COLOR, PROX_COLOR, SET_COLOR = "tab:blue", "tab:red", "tab:green"  # v, prox_{λf}(v), the set C
VIEW_MARGIN = 0.15  # the proximal-operator figure shows [-(1 + margin) e, (1 + margin) e]² around a grid in [-e, e]²


def source_markdown(fn: Callable) -> str:
    """The source of a library function as a Markdown code block, for a lecture to display.

    Lectures show the library's own code this way, so the text cannot drift from what the
    tests check.
    """
    return f"```python\n{inspect.getsource(getattr(fn, '__graded_code__', fn))}```"


def format_number(x: float, digits: int = 3) -> str:
    """A number for a label or a readout: ``digits`` significant digits, and ∞ for infinity."""
    return ("−∞" if x < 0 else "∞") if math.isinf(x) else f"{x:.{digits}g}"


def _gaussian_pdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


class HistogramView(NamedTuple):
    """Bins for histograms of heavy-tailed estimates, and what falls outside them (see :func:`histogram_view`)."""

    edges: np.ndarray  # (B + 1,) bin edges spanning the view
    below: tuple[int, ...]  # per series: how many values lie left of the view
    above: tuple[int, ...]  # per series: how many values lie right of the view
    largest: tuple[float, ...]  # per series: its largest value (shown in the legend when it is cut off)


def histogram_view(series: Sequence[np.ndarray], *, bins: int = 40, coverage: float = 0.96) -> HistogramView:
    """Bins that show the bulk of several samples, with a count of what lies outside.

    The view runs from the smallest to the largest of the per-series quantiles
    ``(1 - coverage)/2`` and ``(1 + coverage)/2``, so one huge value cannot squeeze the
    rest into a single bin; the values outside are counted, so a figure can say so
    instead of dropping them (:func:`draw_is_experiment` piles them into the edge bins).

    Returns
    -------
    HistogramView
    """
    arrays = [np.asarray(x, dtype=np.float64).ravel() for x in series]
    lo = min(float(np.quantile(x, (1 - coverage) / 2)) for x in arrays)
    hi = max(float(np.quantile(x, (1 + coverage) / 2)) for x in arrays)
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    return HistogramView(np.linspace(lo, hi, int(bins) + 1), tuple(int((x < lo).sum()) for x in arrays),
                         tuple(int((x > hi).sum()) for x in arrays), tuple(float(x.max()) for x in arrays))


def draw_is_experiment(fig: Figure, result: GaussianISExperiment, target: tuple[float, float],
                       proposal: tuple[float, float], *, theory: ISTheory | None = None,
                       title: str | None = None) -> tuple[Axes, Axes]:
    """Left: the densities p and q and the weight p/q. Right: histograms of the ordinary
    and weighted estimates across repeats, and the truth.

    Nothing is dropped: estimates outside the view of :func:`histogram_view` are piled
    into its first or last bin, and each legend entry says how many (and the largest
    value). With ``theory`` the legend shows the exact sd of the ordinary estimate beside
    the sd measured over the repeats. The right title is ``title`` or the repeats, the
    mean ESS and n.
    """
    fig.clear()
    left, right = fig.subplots(1, 2)
    lo = min(target[0] - 4 * target[1], proposal[0] - 4 * proposal[1])
    hi = max(target[0] + 4 * target[1], proposal[0] + 4 * proposal[1])
    x = np.linspace(lo, hi, 400)
    p, q = _gaussian_pdf(x, *target), _gaussian_pdf(x, *proposal)
    left.plot(x, p, color=TARGET_COLOR, label=f"target p = N({target[0]:g}, {target[1]:g}²)")
    left.plot(x, q, color=PROPOSAL_COLOR, label=f"proposal q = N({proposal[0]:g}, {proposal[1]:g}²)")
    left.set_xlabel("x")
    left.set_ylabel("density")
    twin = left.twinx()
    twin.plot(x, p / q, color="gray", linestyle="--", label="weight p/q (right axis)")
    twin.set_yscale("log")
    twin.set_ylabel("p/q (log scale)")
    handles = left.get_lines() + twin.get_lines()
    left.legend(handles, [h.get_label() for h in handles], loc="upper center", bbox_to_anchor=(0.5, -0.2),
                fontsize="small")
    left.set_title("the weight is large where q is thin under p", fontsize="medium")
    ordinary, weighted = result.ordinary.numpy(), result.weighted.numpy()
    view = histogram_view([ordinary, weighted])
    edge_lo, edge_hi = view.edges[0], view.edges[-1]
    for i, (values, name, color) in enumerate(((ordinary, "ordinary", PROPOSAL_COLOR), (weighted, "weighted", "tab:green"))):
        label = f"{name}: sd {values.std(ddof=1):.3g}"
        if name == "ordinary" and theory is not None:
            label += f" (exact {format_number(theory.ordinary_sd)})"
        outside = view.below[i] + view.above[i]
        if outside:
            label += f"; {outside} piled into the edge bins (max {view.largest[i]:.3g})"
        right.hist(np.clip(values, edge_lo, edge_hi), bins=view.edges, alpha=0.5, color=color, label=label)
    right.axvline(result.truth, color=TARGET_COLOR, label=f"truth E_p[x] = {result.truth:g}")
    right.set_xlabel("estimate of E_p[x]")
    right.set_ylabel("repeats")
    right.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2))
    right.set_title(title or f"{len(ordinary)} repeats: mean ESS {result.ess.mean().item():.1f} of n = {result.n}",
                    fontsize="medium")
    fig.tight_layout()
    return left, right


def draw_curves(ax: Axes, x: np.ndarray, curves: Mapping[str, np.ndarray], *, xlabel: str, ylabel: str, title: str,
                styles: Mapping[str, Mapping[str, Any]] | None = None, logx: bool = False, logy: bool = False,
                legend: str = "best") -> Axes:
    """Curves y(x) with labelled axes, a legend entry for each curve, and a title.

    Parameters
    ----------
    ax : Axes
    x : array, shape (K,)
    curves : mapping from a label to an array of shape (K,)
        One line per entry; the label is its legend entry. NaN leaves a gap.
    xlabel, ylabel, title : str
        Required, so that no figure goes without them.
    styles : mapping from a label to keyword arguments of ``ax.plot``, optional
    logx, logy : bool
        Logarithmic axes.
    legend : str
        The legend's ``loc``.
    """
    for label, y in curves.items():
        ax.plot(x, np.asarray(y, dtype=np.float64), label=label, **dict((styles or {}).get(label, {})))
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize="medium")
    ax.grid(True, alpha=0.3)
    options: dict[str, Any] = {"fontsize": "small", "loc": legend}
    ax.legend(**options)
    return ax


def draw_running_estimates(ax: Axes, runs: Mapping[str, np.ndarray], truth: float, *, points: int = 400,
                           title: str = "", xlabel: str = "draws", ylabel: str = "estimate",
                           linewidths: Mapping[str, float] | None = None) -> Axes:
    """Estimates after k draws against k (log axis), several runs per estimator.

    Parameters
    ----------
    ax : Axes
    runs : mapping from a label to an array of shape (R, N)
        R runs of N running estimates each (:func:`rlteach.importance.running_estimates`);
        all runs of a label share its colour and its one legend entry. Later labels are
        drawn on top.
    truth : float
        Drawn as a dashed black line under the estimates.
    points : int
        Each curve is drawn through about this many log-spaced k (every k up to
        ``points``/10, then geometric steps), so a million draws stay light to draw.
    linewidths : mapping from a label to a width, optional
        Default 0.9.
    """
    ax.axhline(truth, color="black", linestyle="--", linewidth=1.0, label=f"truth {truth:g}", zorder=1)
    for i, (label, values) in enumerate(runs.items()):
        values = np.atleast_2d(np.asarray(values, dtype=np.float64))
        n = values.shape[-1]
        k = np.unique(np.concatenate([np.arange(1, min(n, max(points // 10, 1)) + 1),
                                      np.geomspace(1, n, int(points)).astype(int)]))
        width = (linewidths or {}).get(label, 0.9)
        for r, row in enumerate(values):
            ax.plot(k, row[k - 1], color=f"C{i}", linewidth=width, alpha=0.8, label=label if r == 0 else None,
                    zorder=2 + i)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="small")
    return ax


# ------------------------------------------------------------- proximal operators: data

FUNCTION_LABELS: Mapping[str, str] = {
    "l1": r"$f(x) = \|x\|_1$",
    "quadratic": r"$f(x) = \frac{1}{2}x^\top A x + b^\top x$",
    "l2": r"$f(x) = \|x\|_2$",
}
SET_LABELS: Mapping[str, str] = {
    "box": "box",
    "l2_ball": "ℓ2 ball",
    "l1_ball": "ℓ1 ball",
    "linf_ball": "ℓ∞ ball",
    "simplex": "simplex",
    "halfspace": "half-space",
    "affine": "affine set",
}


class ProxField(NamedTuple):
    """Points and their proximal points, for arrows from v (blue) to prox_{λf}(v) (red)."""

    v: np.ndarray  # (m, n) the points v
    x: np.ndarray  # (m, n) prox_{λf}(v), row by row


class LevelGrid(NamedTuple):
    """Values of f on a square grid, for a contour plot of its level sets."""

    xs: np.ndarray  # (G,) first coordinate of the grid columns
    ys: np.ndarray  # (G,) second coordinate of the grid rows
    values: np.ndarray  # (G, G), values[i, j] = f(xs[j], ys[i])


class SetOutline(NamedTuple):
    """What a figure draws of a set C in the plane."""

    region: np.ndarray  # (k, 2) vertices of C ∩ view as a polygon, (0, 2) when C has no area
    boundary: np.ndarray  # (j, 2) a polyline along the boundary of C (all of C when it has no area)


class ProxScene(NamedTuple):
    """Everything the proximal-operator figure shows, computed by :func:`prox_scene`."""

    name: str  # a name of rlteach.prox.PROX_NAMES, or of SET_NAMES for the indicator of that set
    lam: float  # the step λ
    field: ProxField  # the grid of points, shape (m, 2) each
    point: ProxField  # the highlighted point, shape (1, 2) each
    path: np.ndarray  # (L, 2): prox_{μf}(v) of the highlighted v for μ from 0 to λ
    levels: LevelGrid | None  # level sets of f; None for an indicator
    outline: SetOutline | None  # the set; None unless ``name`` is a set
    extent: float  # the grid fills [-extent, extent]²; the view adds VIEW_MARGIN around it


def _check_name(name: str) -> None:
    if name not in PROX_NAMES + SET_NAMES:
        raise ValueError(f"unknown function or set name {name!r}; valid names: {', '.join(PROX_NAMES + SET_NAMES)}")


def _check_extent(extent: float) -> float:
    value = float(extent)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"extent must be a finite number > 0, got {value}")
    return value


def point_grid(extent: float, num: int) -> np.ndarray:
    r"""Evenly spaced points of the square :math:`[-e, e]^2`, row by row.

    Parameters
    ----------
    extent : float
        e > 0, the half-width of the square.
    num : int
        Points per side, ≥ 1 (a single point is the centre).

    Returns
    -------
    np.ndarray, shape (num * num, 2)
        ``[x, y]`` pairs; x varies fastest.
    """
    extent = _check_extent(extent)
    if int(num) < 1:
        raise ValueError(f"num must be >= 1 (points per side), got {num}")
    side = np.linspace(-extent, extent, int(num)) if int(num) > 1 else np.zeros(1)
    xx, yy = np.meshgrid(side, side)
    return np.stack([xx.ravel(), yy.ravel()], axis=-1)


def prox_field(name: str, lam: float, points: np.ndarray, **params: Any) -> ProxField:
    r"""The proximal points of many points at once: :math:`x_i = \operatorname{prox}_{\lambda f}(v_i)`.

    Parameters
    ----------
    name : str
        As in :func:`rlteach.prox.prox_of`: a function of ``PROX_NAMES`` or a set of
        ``SET_NAMES`` (its indicator, whose prox is the projection for every λ).
    lam : float
        The step λ ≥ 0.
    points : array, shape (m, n)
        The points v.
    **params
        Passed to :func:`rlteach.prox.prox_of` (e.g. ``A``, ``b``, ``radius``).

    Returns
    -------
    ProxField
        ``v`` (m, n) float64, a copy of ``points``; ``x`` (m, n) what ``prox_of`` returns.

    Raises
    ------
    ValueError
        An unknown name, points not of shape (m, n), or what ``prox_of`` raises.
    """
    _check_name(name)
    v = np.array(points, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"points must have shape (m, n), got {v.shape}")
    return ProxField(v, prox_of(name, v, lam, **params))


def function_values(name: str, points: np.ndarray, **params: Any) -> np.ndarray:
    r"""The function f of :func:`rlteach.prox.prox_of` evaluated at points, for level sets.

    ``"l1"``: :math:`\|x\|_1`; ``"l2"``: :math:`\|x\|_2`; ``"quadratic"``:
    :math:`\tfrac12 x^\top A x + b^\top x`, with A = I and b = 0 when not given (the same
    defaults as :func:`rlteach.prox.prox_quadratic`).

    Parameters
    ----------
    name : str
        One of ``PROX_NAMES``. A set's indicator has no level sets; see :func:`set_outline`.
    points : array, shape (..., n)
    **params
        ``A`` (n, n) and ``b`` (n,) for ``"quadratic"``; none for the norms.

    Returns
    -------
    np.ndarray, shape (...)
    """
    if name in SET_NAMES:
        raise ValueError(f"{name!r} is a set: its indicator has no level sets; draw it with set_outline()")
    if name not in PROX_NAMES:
        raise ValueError(f"unknown function name {name!r}; valid names: {', '.join(PROX_NAMES)}")
    allowed = {"A", "b"} if name == "quadratic" else set()
    if set(params) - allowed:
        raise ValueError(f"unexpected parameters for {name!r}: {', '.join(sorted(set(params) - allowed))}")
    x = np.asarray(points, dtype=np.float64)
    if name == "l1":
        return np.abs(x).sum(axis=-1)  # ‖x‖₁
    if name == "l2":
        return np.linalg.norm(x, axis=-1)  # ‖x‖₂
    A, b = params.get("A"), params.get("b")
    quad = (x * x).sum(axis=-1) if A is None else np.einsum("...i,ij,...j->...", x, np.asarray(A, float), x)
    lin = 0.0 if b is None else (x * np.asarray(b, float)).sum(axis=-1)
    return 0.5 * quad + lin  # ½xᵀAx + bᵀx


def level_grid(name: str, extent: float, num: int = 161, **params: Any) -> LevelGrid:
    """f on a ``num`` × ``num`` grid of the square [-extent, extent]², see :func:`function_values`.

    Returns
    -------
    LevelGrid
        ``xs``, ``ys`` of shape (num,) and ``values`` of shape (num, num).
    """
    extent = _check_extent(extent)
    if int(num) < 2:
        raise ValueError(f"num must be >= 2 (grid points per side), got {num}")
    xs = np.linspace(-extent, extent, int(num))
    xx, yy = np.meshgrid(xs, xs)
    return LevelGrid(xs, xs.copy(), function_values(name, np.stack([xx, yy], axis=-1), **params))


def _square(extent: float) -> np.ndarray:
    return extent * np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])


def _clip_polygon(polygon: np.ndarray, a: np.ndarray, b: float) -> np.ndarray:
    """The part of a convex polygon (k, 2) where aᵀx ≤ b (Sutherland–Hodgman, one edge)."""
    out = []
    for p, q in zip(polygon, np.roll(polygon, -1, axis=0)):
        sp, sq = float(a @ p - b), float(a @ q - b)
        if sp <= 0:
            out.append(p)
        if sp * sq < 0:
            out.append(p + sp / (sp - sq) * (q - p))  # where the edge crosses aᵀx = b
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def _on_line(polygon: np.ndarray, a: np.ndarray, b: float) -> np.ndarray:
    """The vertices of ``polygon`` on the line aᵀx = b: the line's segment inside the polygon."""
    scale = 1e-9 * max(1.0, abs(b), float(np.abs(polygon).max(initial=0.0)) * float(np.abs(a).max()))
    on = polygon[np.abs(polygon @ a - b) <= scale]
    unique = [p for i, p in enumerate(on) if all(np.abs(p - q).max() > scale for q in on[:i])]
    return np.array(unique, dtype=np.float64).reshape(-1, 2)


def _vector2(value: Any, name: str) -> np.ndarray:
    out = np.broadcast_to(np.asarray(value, dtype=np.float64), (2,)).copy()
    if not np.isfinite(out).all() and name not in ("lower", "upper"):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


def set_outline(set_name: str, extent: float = 3.0, *, resolution: int = 181, **params: Any) -> SetOutline:
    r"""The shape of a convex set C ⊂ R², for drawing it under its projections.

    ==============  ================================  =====================================
    ``set_name``    ``region`` (filled)               ``boundary`` (drawn as a line)
    ==============  ================================  =====================================
    ``box``         the rectangle's 4 corners         the closed rectangle
    ``l2_ball``     ``resolution`` points on circle   the closed circle
    ``l1_ball``     the diamond's 4 corners           the closed diamond
    ``linf_ball``   the square's 4 corners            the closed square
    ``simplex``     none: no area                     the segment from (z, 0) to (0, z)
    ``halfspace``   C inside the view                 the line aᵀx = b inside the view
    ``affine``      none: no area                     the line (A: 1 × 2) or point (A: 2 × 2)
    ==============  ================================  =====================================

    The view is the square :math:`[-e, e]^2` with e = ``extent``; unbounded sets (the
    half-space, a line, a box with infinite sides) are cut to it.

    Parameters
    ----------
    set_name : str
        One of ``SET_NAMES``.
    extent : float
        e > 0.
    resolution : int
        Points on a circle.
    **params
        The set's parameters, with the defaults of :func:`rlteach.prox.project_onto`.

    Returns
    -------
    SetOutline
        ``region`` (k, 2) and ``boundary`` (j, 2); every point lies in C (up to rounding).

    Raises
    ------
    ValueError
        An unknown name, or parameters that are not those of a set in the plane.
    """
    extent = _check_extent(extent)
    none = np.zeros((0, 2))
    if set_name not in SET_NAMES:
        raise ValueError(f"unknown set name {set_name!r}; valid names: {', '.join(SET_NAMES)}")
    center = _vector2(params.get("center", 0.0), "center")
    if set_name == "box":
        lo, hi = _vector2(params.get("lower", 0.0), "lower"), _vector2(params.get("upper", 1.0), "upper")
        if (lo > hi).any():
            raise ValueError(f"the box is empty: lower {lo} > upper {hi} somewhere")
        lo, hi = np.clip(lo, -extent, extent), np.clip(hi, -extent, extent)  # cut to the view
        corners = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
        return SetOutline(corners, np.vstack([corners, corners[:1]]))
    if set_name in ("l2_ball", "l1_ball", "linf_ball"):
        radius = float(params.get("radius", 1.0))
        if not (math.isfinite(radius) and radius > 0):
            raise ValueError(f"radius must be a finite number > 0, got {radius}")
        if set_name == "l2_ball":
            theta = np.linspace(0.0, 2 * np.pi, int(resolution))
            boundary = center + radius * np.stack([np.cos(theta), np.sin(theta)], axis=-1)
            return SetOutline(boundary[:-1], boundary)
        unit = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]) if set_name == "l1_ball" else _square(1.0)
        corners = center + radius * unit
        return SetOutline(corners, np.vstack([corners, corners[:1]]))
    if set_name == "simplex":
        total = float(params.get("total", 1.0))
        if not (math.isfinite(total) and total > 0):
            raise ValueError(f"total must be a finite number > 0, got {total}")
        return SetOutline(none, np.array([[total, 0.0], [0.0, total]]))
    if set_name == "halfspace":
        if "a" not in params or "b" not in params:
            raise ValueError("the half-space needs its parameters a (shape (2,)) and b (a number)")
        a, offset = np.asarray(params["a"], dtype=np.float64), float(params["b"])
        if a.shape != (2,) or not a.any():
            raise ValueError(f"a must be a nonzero vector of shape (2,), got {a}")
        region = _clip_polygon(_square(extent), a, offset)
        return SetOutline(region, _on_line(region, a, offset))
    if "A" not in params or "b" not in params:
        raise ValueError("the affine set needs its parameters A (shape (1, 2) or (2, 2)) and b")
    A = np.atleast_2d(np.asarray(params["A"], dtype=np.float64))
    b = np.atleast_1d(np.asarray(params["b"], dtype=np.float64))
    if A.shape == (2, 2):
        return SetOutline(none, np.linalg.solve(A, b).reshape(1, 2))
    if A.shape != (1, 2) or b.shape != (1,) or not A.any():
        raise ValueError(f"the affine set in the plane needs A of shape (1, 2) or (2, 2), got {A.shape}")
    return SetOutline(none, _on_line(_clip_polygon(_square(extent), A[0], b[0]), A[0], b[0]))


def prox_scene(
    name: str,
    lam: float,
    point: tuple[float, float] | np.ndarray,
    *,
    extent: float = 2.5,
    num: int = 7,
    path_steps: int = 41,
    **params: Any,
) -> ProxScene:
    r"""The data of the figure "a proximal operator evaluated at many points".

    A ``num`` × ``num`` grid of points v in :math:`[-e, e]^2` and one highlighted point,
    each with :math:`\operatorname{prox}_{\lambda f}(v)`; the path
    :math:`\mu \mapsto \operatorname{prox}_{\mu f}(v)` of the highlighted point for
    :math:`\mu \in [0, \lambda]`; and the level sets of f, or the set C for an indicator,
    over the whole view (the grid's square and a margin of ``VIEW_MARGIN`` around it).

    Parameters
    ----------
    name : str
        A function of ``PROX_NAMES`` or a set of ``SET_NAMES`` (its indicator).
    lam : float
        The step λ ≥ 0.
    point : array, shape (2,)
        The highlighted v.
    extent : float
        e > 0, the half-width of the square that holds the grid.
    num : int
        Grid points per side.
    path_steps : int
        Number of steps μ, evenly spaced in [0, λ], on the path (≥ 2).
    **params
        The function's or the set's parameters, as in :func:`rlteach.prox.prox_of`.

    Returns
    -------
    ProxScene

    Raises
    ------
    ValueError
        An unknown name, λ < 0, a point not of shape (2,), or what ``prox_of`` raises.
    """
    _check_name(name)
    v = np.array(point, dtype=np.float64)
    if v.shape != (2,):
        raise ValueError(f"point must have shape (2,), got {v.shape}")
    if int(path_steps) < 2:
        raise ValueError(f"path_steps must be >= 2, got {path_steps}")
    field = prox_field(name, lam, point_grid(extent, num), **params)
    highlighted = prox_field(name, lam, v[None, :], **params)
    path = prox_path(name, v, np.linspace(0.0, float(lam), int(path_steps)), **params)
    is_set = name in SET_NAMES
    view = (1.0 + VIEW_MARGIN) * extent
    levels = None if is_set else level_grid(name, view, **params)
    outline = set_outline(name, view, **params) if is_set else None
    return ProxScene(name, float(lam), field, highlighted, path, levels, outline, float(extent))


# ---------------------------------------------------------- proximal operators: drawing


def draw_level_sets(ax: Axes, levels: LevelGrid, *, count: int = 12, heights: Sequence[float] | None = None,
                    label: str | None = "level sets of f") -> Axes:
    """Gray contour lines of f.

    Parameters
    ----------
    ax : Axes
    levels : LevelGrid
        ``xs`` (G,), ``ys`` (G,), ``values`` (G, G) from :func:`level_grid`.
    count : int
        Without ``heights``: this many levels, evenly spaced strictly between the smallest
        and the largest value on the grid.
    heights : sequence of float, optional
        The values of f to draw, in increasing order (e.g. f at chosen points, so that a
        line passes through each of them).
    label : str or None
        The legend entry of the contours (None: none).
    """
    values = levels.values
    chosen = np.linspace(values.min(), values.max(), count + 2)[1:-1] if heights is None else np.asarray(heights)
    ax.contour(levels.xs, levels.ys, values, levels=np.sort(np.asarray(chosen, dtype=np.float64)), colors="0.65",
               linewidths=0.8, zorder=1)
    if label:
        ax.plot([], [], color="0.65", linewidth=0.8, label=label)  # a legend entry for the contours
    return ax


def draw_set(ax: Axes, outline: SetOutline, *, label: str | None = "set C", fill: bool = True,
             color: str = SET_COLOR) -> Axes:
    """A convex set: its region shaded and its boundary as a line.

    Parameters
    ----------
    ax : Axes
    outline : SetOutline
        ``region`` (k, 2), filled as a polygon when ``fill`` and k ≥ 3; ``boundary``
        (j, 2), drawn as a line, or as a single marker when j = 1 (an affine set that is a point).
    label : str or None
        The legend entry of the boundary line.
    fill : bool
    color : str
    """
    if fill and len(outline.region) >= 3:
        ax.add_patch(Polygon(outline.region, closed=True, facecolor=color, alpha=0.15, edgecolor="none", zorder=0))
    style = {"marker": "D", "linestyle": "none"} if len(outline.boundary) == 1 else {"linewidth": 2.0}
    ax.plot(outline.boundary[:, 0], outline.boundary[:, 1], color=color, label=label, zorder=2, **style)
    return ax


def draw_prox_field(ax: Axes, field: ProxField, *, arrow_color: str = "0.3", markersize: float = 4.0,
                    labels: tuple[str, str] | None = ("points v", r"$\mathrm{prox}_{\lambda f}(v)$")) -> Axes:
    """Blue points v, red points x, and an arrow from each v to its x, drawn at its true length.

    Parameters
    ----------
    ax : Axes
    field : ProxField
        ``v`` and ``x`` of shape (m, 2).
    arrow_color : str
    markersize : float
    labels : (str, str) or None
        Legend entries of the blue and the red points (None: none).

    Notes
    -----
    The arrows are one ``Quiver`` with offsets ``v`` and components ``x - v`` in data
    units (``angles="xy", scale_units="xy", scale=1``), so each ends exactly at its x.
    """
    v, x = field.v, field.x
    d = x - v
    ax.quiver(v[:, 0], v[:, 1], d[:, 0], d[:, 1], angles="xy", scale_units="xy", scale=1.0, color=arrow_color,
              width=0.004, headwidth=4.0, headlength=5.0, headaxislength=4.5, zorder=3)
    v_label, x_label = labels if labels else (None, None)
    ax.plot(v[:, 0], v[:, 1], "o", color=POINT_COLOR, markersize=markersize, label=v_label, zorder=4)
    ax.plot(x[:, 0], x[:, 1], "o", color=PROX_COLOR, markersize=markersize, label=x_label, zorder=4)
    return ax


def draw_iterates(ax: Axes, paths: Mapping[str, np.ndarray], *, colors: Mapping[str, str] | None = None,
                  linewidths: Mapping[str, float] | None = None, markers: bool = True) -> Axes:
    """Paths of iterates in the plane, each a line through its points with its last point circled.

    Parameters
    ----------
    ax : Axes
    paths : mapping from a label to an array of shape (K, 2)
        The iterates in order; the label is the legend entry.
    colors, linewidths : mappings from a label, optional
        Per-path colour and line width (default: the colour cycle from C4 on, width 1.3).
    markers : bool
        Mark every iterate with a dot.
    """
    for i, (label, path) in enumerate(paths.items()):
        path = np.asarray(path, dtype=np.float64).reshape(-1, 2)
        color = (colors or {}).get(label, f"C{(i + 4) % 10}")
        width = (linewidths or {}).get(label, 1.3)
        ax.plot(path[:, 0], path[:, 1], color=color, marker="." if markers else None, linewidth=width, label=label,
                zorder=5)
        ax.plot(path[-1:, 0], path[-1:, 1], "o", markersize=10, markerfacecolor="none", markeredgecolor=color,
                markeredgewidth=1.8, zorder=6)
    return ax


def scene_title(scene: ProxScene) -> str:
    """The title of the proximal-operator figure: f (or C) and λ."""
    if scene.outline is not None:
        return f"$f = I_C$, C = {SET_LABELS[scene.name]}: prox = projection (any λ; here λ = {scene.lam:.3g})"
    return f"{FUNCTION_LABELS[scene.name]},  λ = {scene.lam:.3g}"


def sent_to_zero(field: ProxField) -> np.ndarray:
    """Which points the operator sends onto a coordinate axis: a coordinate of x exactly 0 where v's was not.

    Returns
    -------
    np.ndarray of bool, shape (m,)
    """
    return ((field.x == 0) & (field.v != 0)).any(axis=-1)


def draw_prox_scene(ax: Axes, scene: ProxScene, *, legend: bool = True, title: str | None = None,
                    mark_zeros: bool = False) -> Axes:
    """The figure "evaluating a proximal operator at various points" for a :class:`ProxScene`.

    Gray level sets of f (or the set C, shaded, with its boundary), the grid's blue points
    v with arrows to their red proximal points, and the highlighted v (large blue dot) with
    a bold arrow to its prox (large red dot) and, as a dotted orange line of one dot per step
    μ on top of the arrow, the path its prox takes as μ grows from 0 to λ. Lines carry the labels
    ``"highlighted v"``, ``"highlighted prox"`` and ``"path as λ grows"`` so that tests can
    find them. With ``mark_zeros`` the red points that landed exactly on an axis (see
    :func:`sent_to_zero`) are ringed, under the label ``"sent exactly onto an axis"`` (no entry when there are none). The
    title is :func:`scene_title` unless ``title`` is given; the legend sits to the right.
    """
    if scene.levels is not None:
        draw_level_sets(ax, scene.levels)
    if scene.outline is not None:
        draw_set(ax, scene.outline, label=f"C = {SET_LABELS[scene.name]}")
    draw_prox_field(ax, scene.field)
    on_axis = scene.field.x[sent_to_zero(scene.field)] if mark_zeros else np.zeros((0, 2))
    if len(on_axis):
        ax.plot(on_axis[:, 0], on_axis[:, 1], "o", markersize=10, markerfacecolor="none", markeredgecolor="black",
                markeredgewidth=1.2, label="sent exactly onto an axis", zorder=4.5)
    v, x = scene.point.v[0], scene.point.x[0]
    ax.annotate("", xy=(x[0], x[1]), xytext=(v[0], v[1]), zorder=6,
                arrowprops={"arrowstyle": "-|>", "color": "black", "linewidth": 1.5, "shrinkA": 6, "shrinkB": 6,
                            "mutation_scale": 14, "alpha": 0.8})
    ax.plot(scene.path[:, 0], scene.path[:, 1], linestyle="none", marker="o", markersize=3.5, color="tab:orange",
            label="path as λ grows", zorder=6.5)
    ax.plot([v[0]], [v[1]], "o", color=POINT_COLOR, markersize=11, markeredgecolor="black", label="highlighted v",
            zorder=7)
    ax.plot([x[0]], [x[1]], "o", color=PROX_COLOR, markersize=11, markeredgecolor="black",
            label="highlighted prox", zorder=7)
    view = (1.0 + VIEW_MARGIN) * scene.extent
    ax.set_xlim(-view, view)
    ax.set_ylim(-view, view)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title(scene_title(scene) if title is None else title, fontsize="medium")
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", borderaxespad=0.0)
    return ax


class StepComparison(NamedTuple):
    """Explicit (sub)gradient steps against prox steps from one point (see :func:`step_comparison`)."""

    name: str  # a name of PROX_NAMES
    lam: float  # the step λ of both
    explicit: np.ndarray  # (K + 1, n): x₀ = v, x_{k+1} = x_k − λ∇f(x_k)
    implicit: np.ndarray  # (K + 1, n): x₀ = v, x_{k+1} = prox_{λf}(x_k)
    f_explicit: np.ndarray  # (K + 1,) f along the explicit steps
    f_implicit: np.ndarray  # (K + 1,) f along the prox steps
    lipschitz: float | None  # L of ∇f for the quadratic (the largest eigenvalue of A); None for the norms


def step_comparison(name: str, lam: float, point: tuple[float, ...] | np.ndarray, *, steps: int = 10,
                    **params: Any) -> StepComparison:
    r"""K explicit steps :math:`x - \lambda
abla f(x)` and K implicit (prox) steps from the same point.

    For the quadratic with :math:`L = \lambda_{\max}(A)`, the explicit step multiplies the
    error :math:`x - x^\star` by :math:`I - \lambda A`, whose largest |eigenvalue| exceeds 1
    when λ > 2/L: the iterates diverge. The prox step multiplies it by
    :math:`(I + \lambda A)^{-1}`, a contraction for every λ > 0. For the norms the explicit step
    uses the minimum-norm subgradient (:func:`rlteach.prox.gradient_of`), which overshoots the
    kink at 0 instead of stopping there.

    Parameters
    ----------
    name : str
        One of ``PROX_NAMES`` (an indicator has no explicit step).
    lam : float
        λ ≥ 0.
    point : array, shape (n,)
    steps : int
        K ≥ 1.
    **params
        ``A``, ``b`` for the quadratic.

    Returns
    -------
    StepComparison
    """
    if name not in PROX_NAMES:
        raise ValueError(f"no explicit step for {name!r}; valid names: {', '.join(PROX_NAMES)}")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x_exp = x_imp = np.array(point, dtype=np.float64)
    explicit, implicit = [x_exp], [x_imp]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(int(steps)):
            x_exp = x_exp - lam * gradient_of(name, x_exp, **params) if np.isfinite(x_exp).all() else x_exp
            x_imp = prox_of(name, x_imp, lam, **params)
            explicit.append(x_exp)
            implicit.append(x_imp)
    explicit_arr, implicit_arr = np.array(explicit), np.array(implicit)
    lipschitz = None
    if name == "quadratic":
        A = np.eye(explicit_arr.shape[-1]) if params.get("A") is None else np.asarray(params["A"], dtype=np.float64)
        lipschitz = float(np.linalg.eigvalsh(A).max())  # L = λ_max(A)
    return StepComparison(name, float(lam), explicit_arr, implicit_arr, value_of(name, explicit_arr, **params),
                          value_of(name, implicit_arr, **params), lipschitz)


def prox_readout(scene: ProxScene, comparison: StepComparison | None = None, **params: Any) -> str:
    r"""The numbers that move with the sliders, as one line of text.

    f at v and at its prox, and the length of the step :math:`\|\operatorname{prox}_{\lambda f}(v) - v\|`;
    for an indicator, whether v lies in C. With a :class:`StepComparison`: f after K explicit
    and K prox steps, and for the quadratic L and the stability limit 2/L of the explicit step.
    """
    v, x = scene.point.v[0], scene.point.x[0]
    step = float(np.linalg.norm(x - v))
    if scene.outline is not None:
        where = "v ∈ C, so Π_C(v) = v" if step == 0 else f"v ∉ C: ‖Π_C(v) − v‖ = {step:.3g} = dist(v, C)"
        return f"λ = {scene.lam:.3g} (no effect on a projection); {where}"
    fv, fx = (float(value_of(scene.name, p, **params)) for p in (v, x))
    text = f"λ = {scene.lam:.3g}: f(v) = {fv:.3g}, f(prox) = {fx:.3g}, ‖prox − v‖ = {step:.3g}"
    if comparison is not None:
        k = len(comparison.explicit) - 1
        text += (f". After {k} steps: f = {format_number(float(comparison.f_explicit[-1]))} explicit, "
                 f"{format_number(float(comparison.f_implicit[-1]))} prox")
        if comparison.lipschitz is not None:
            limit = 2.0 / comparison.lipschitz
            verdict = "diverges" if comparison.lam > limit else "is stable"
            text += f"; L = {comparison.lipschitz:.3g}, the explicit step {verdict} (λ {'>' if comparison.lam > limit else '≤'} 2/L = {limit:.3g})"
    return text


def explorer_title(scene: ProxScene, comparison: StepComparison | None = None) -> str:
    """The explorer's title: :func:`scene_title` and the point the current setting makes.

    ℓ1 and ℓ2: how many grid points land exactly on an axis; the quadratic (with a
    :class:`StepComparison`): whether the explicit steps diverge, λ against 2/L; a set: the
    title of :func:`scene_title` alone.
    """
    title = scene_title(scene)
    if scene.outline is not None:
        return title
    if comparison is not None and comparison.lipschitz is not None:
        limit = 2.0 / comparison.lipschitz
        verdict = "explicit steps diverge" if scene.lam > limit else "explicit steps converge"
        return f"{title}: {verdict} (2/L = {limit:.2f})"
    zeros = int(sent_to_zero(scene.field).sum())
    return f"{title}: {zeros} of {len(scene.field.v)} points land on an axis"


def draw_step_comparison(ax: Axes, comparison: StepComparison) -> Axes:
    """Overlay the explicit steps (purple, dashed, ×) and the prox steps (green, dots) from the highlighted v.

    Explicit iterates that leave the axes' limits are simply out of view; the readout of
    :func:`prox_readout` reports where they end.
    """
    k = len(comparison.explicit) - 1
    e, i = comparison.explicit, comparison.implicit
    ax.plot(e[:, 0], e[:, 1], "--x", color="tab:purple", linewidth=1.5, markersize=6,
            label=f"{k} explicit steps x − λ∇f(x)", zorder=6.2)
    ax.plot(i[:, 0], i[:, 1], "-o", color="tab:green", linewidth=1.5, markersize=4, label=f"{k} prox steps", zorder=6.3)
    return ax


def draw_objective_gaps(ax: Axes, gaps: Mapping[str, np.ndarray], *,
                        bounds: Mapping[str, np.ndarray] | None = None) -> Axes:
    r"""Objective gaps :math:`F(x_k) - F^\star` against the iteration k = 1, 2, … on log-log axes.

    Parameters
    ----------
    ax : Axes
    gaps : mapping from a label to an array of shape (K,)
        Non-positive gaps (the solution reached to rounding) are not drawn.
    bounds : mapping from a label to an array of shape (K,), optional
        Worst-case bounds at k = 1, …, K (e.g. :func:`rlteach.prox_algorithms.ista_bound`),
        drawn dashed in the colour of the gap curve of the same position.
    """
    for i, (label, gap) in enumerate(gaps.items()):
        gap = np.asarray(gap, dtype=np.float64)
        k = np.arange(1, len(gap) + 1)
        ax.loglog(k, np.where(gap > 0, gap, np.nan), label=label, linewidth=1.8, color=f"C{i}")
    for i, (label, bound) in enumerate((bounds or {}).items()):
        bound = np.asarray(bound, dtype=np.float64)
        ax.loglog(np.arange(1, len(bound) + 1), bound, linestyle="--", linewidth=1.2, color=f"C{i}", label=label)
    ax.set_xlabel("iteration k")
    ax.set_ylabel(r"$F(x_k) - F^\star$")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small")
    return ax


# ------------------------------------------------------------------------- trust regions: data


def level_grid_of(fn: Callable[[np.ndarray], np.ndarray], xlim: tuple[float, float], ylim: tuple[float, float],
                  num: int = 161) -> LevelGrid:
    """Any function of the plane on a ``num`` × ``num`` grid, for its level sets.

    Parameters
    ----------
    fn : callable
        Points of shape (..., 2), float64, to values of shape (...).
    xlim, ylim : (float, float)
        The grid's range along each coordinate.
    num : int
        Grid points per side, ≥ 2.

    Returns
    -------
    LevelGrid
        ``values[i, j] = fn((xs[j], ys[i]))``.
    """
    if int(num) < 2:
        raise ValueError(f"num must be >= 2 (grid points per side), got {num}")
    if not (xlim[0] < xlim[1] and ylim[0] < ylim[1]):
        raise ValueError(f"empty range: xlim={xlim}, ylim={ylim}")
    xs, ys = np.linspace(*xlim, int(num)), np.linspace(*ylim, int(num))
    xx, yy = np.meshgrid(xs, ys)
    return LevelGrid(xs, ys, np.asarray(fn(np.stack([xx, yy], axis=-1)), dtype=np.float64))


def _t(x: Any) -> Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _optional(t: Tensor | None) -> np.ndarray | None:
    return None if t is None else _numpy(t)


class TrustRegionScene(NamedTuple):
    """One trust-region subproblem in the plane, solved every way (see :func:`trust_region_scene`)."""

    g: np.ndarray  # (2,) the model's gradient
    H: np.ndarray  # (2, 2) its Hessian
    radius: float  # ρ
    exact: np.ndarray  # (2,) the global solution p*(ρ)
    mu: float  # its multiplier μ(ρ) (0 inside)
    cauchy: np.ndarray  # (2,) the Cauchy point
    dogleg: np.ndarray | None  # (2,) the dogleg step; None when H is not positive definite
    steihaug: np.ndarray  # (2,) Steihaug-CG's step
    steihaug_reason: str  # why Steihaug-CG stopped
    lam: float  # λ = 1/μ, the prox step whose prox_{λm}(0) is p*(ρ); ∞ inside
    prox: np.ndarray | None  # prox_{λm}(0); None in the hard case, where p* is no prox step
    corners: np.ndarray | None  # (3, 2): 0, p^U, p^B of the dogleg path; None unless H ≻ 0
    path: np.ndarray  # (R, 2): p*(ρ') for radii ρ' up to max_radius, the curve the steps live on
    model: Mapping[str, float]  # m(p) for each step (m(0) = 0), by name
    levels: LevelGrid  # m on the view, for its level sets
    extent: float  # the view is [-extent, extent]²


def trust_region_scene(g: Any, H: Any, radius: float, *, extent: float = 2.0, max_radius: float | None = None,
                       num_path: int = 80) -> TrustRegionScene:
    r"""The exact, Cauchy, dogleg and Steihaug steps of one 2-D subproblem, and the matching prox step.

    All the steps come from :mod:`rlteach.trust_region`: :func:`~rlteach.trust_region.solve_exact`,
    :func:`~rlteach.trust_region.cauchy_point`, :func:`~rlteach.trust_region.dogleg` (only for
    H ≻ 0), :func:`~rlteach.trust_region.steihaug_cg`, and
    :func:`~rlteach.trust_region.prox_step` with λ = 1/μ(ρ), which equals the exact step
    (Moré–Sorensen: :math:`(H + \mu I)p^* = -g`).

    Parameters
    ----------
    g : array, shape (2,)
    H : array, shape (2, 2), symmetric
    radius : float
        ρ > 0.
    extent : float
        The view is [-extent, extent]².
    max_radius : float, optional
        The path p*(ρ') is drawn for ρ' up to this (default: 1.5·extent).
    num_path : int
        Points of the path, log-spaced in ρ' from extent/1000.

    Returns
    -------
    TrustRegionScene
    """
    extent = _check_extent(extent)
    g_t, H_t = _t(g), _t(H)
    sol = trust_region.solve_exact(g_t, H_t, radius)
    cauchy = trust_region.cauchy_point(g_t, H_t, radius).step
    positive = bool(torch.linalg.eigvalsh(H_t).min() > 0)
    nonzero = float(g_t.norm()) > 0
    dogleg = trust_region.dogleg(g_t, H_t, radius).step if positive else None
    corners = trust_region.dogleg_path(g_t, H_t) if positive and nonzero else None
    steihaug = trust_region.steihaug_cg(g_t, H_t, radius)
    lam = math.inf if sol.mu == 0.0 else 1.0 / sol.mu
    try:
        prox_p: Tensor | None = trust_region.prox_step(g_t, H_t, lam)
    except ValueError:  # the hard case: H + μI is singular, the trust-region step is no prox step
        prox_p = None
    top = 1.5 * extent if max_radius is None else float(max_radius)
    radii = torch.tensor(np.geomspace(extent / 1000, top, int(num_path)))
    path = trust_region.exact_path(g_t, H_t, radii).steps
    steps = {"exact": sol.step, "Cauchy": cauchy, "Steihaug-CG": steihaug.step}
    if dogleg is not None:
        steps["dogleg"] = dogleg
    model = {name: float(trust_region.quadratic_model(g_t, H_t, p)) for name, p in steps.items()}

    def m(points: np.ndarray) -> np.ndarray:
        return trust_region.quadratic_model(g_t, H_t, torch.as_tensor(points)).numpy()

    levels = level_grid_of(m, (-extent, extent), (-extent, extent), num=121)
    return TrustRegionScene(np.asarray(g, dtype=np.float64), np.asarray(H, dtype=np.float64), float(radius),
                            _numpy(sol.step), float(sol.mu), _numpy(cauchy), _optional(dogleg), _numpy(steihaug.step),
                            steihaug.reason, lam, _optional(prox_p), _optional(corners), _numpy(path), model, levels,
                            extent)


def trust_region_readout(scene: TrustRegionScene) -> str:
    """ρ, μ and λ = 1/μ, how far the prox step is from the trust-region step, and each step's model
    decrease m(0) − m(p) with its share of the exact step's."""
    best = -scene.model["exact"]
    lam = format_number(scene.lam)
    if scene.prox is None:
        prox = "the hard case: H + μI is singular and no prox step reaches p*"
    else:
        prox = f"‖prox_λm(0) − p*‖ = {float(np.linalg.norm(scene.prox - scene.exact)):.1e}"
    parts = []
    for name in ("exact", "dogleg", "Steihaug-CG", "Cauchy"):
        if name not in scene.model:
            parts.append("dogleg: undefined (H is not positive definite)")
            continue
        decrease = -scene.model[name]
        share = f" ({100 * decrease / best:.1f}%)" if name != "exact" and best > 0 else ""
        parts.append(f"{name} {decrease:.4g}{share}")
    return (f"ρ = {scene.radius:.3g}: μ = {scene.mu:.4g}, λ = 1/μ = {lam}, {prox}. "
            f"Model decrease m(0) − m(p): " + ", ".join(parts) + ".")


# ---------------------------------------------------------------------- trust regions: drawing

STEP_STYLES: Mapping[str, Mapping[str, Any]] = {
    "exact": {"marker": "*", "color": "tab:red", "markersize": 15},
    "dogleg": {"marker": "D", "color": "tab:orange", "markersize": 8},
    "Steihaug-CG": {"marker": "X", "color": "tab:green", "markersize": 9},
    "Cauchy": {"marker": "s", "color": "tab:blue", "markersize": 8},
}


def draw_trust_region_scene(ax: Axes, scene: TrustRegionScene, *, title: str | None = None,
                            legend: bool = True) -> Axes:
    """Level sets of the model, the ball ‖p‖ ≤ ρ, the curve of exact solutions, the dogleg path
    and every step, each a legend entry with its model value; the prox step λ = 1/μ as a ring
    around the exact step (they coincide)."""
    values = scene.levels.values
    heights = sorted({*(v for v in scene.model.values() if v < 0), *np.linspace(values.min(), values.max(), 12)[1:-1]})
    ax.contour(scene.levels.xs, scene.levels.ys, values, levels=heights, colors="0.65", linewidths=0.8,
               linestyles="solid", zorder=1)
    ax.plot([], [], color="0.65", linewidth=0.8, label="level sets of m(p) = gᵀp + ½pᵀHp")
    angles = np.linspace(0.0, 2 * np.pi, 241)
    ax.plot(scene.radius * np.cos(angles), scene.radius * np.sin(angles), color="tab:purple", linewidth=2.0,
            label=f"trust region ‖p‖ ≤ ρ = {scene.radius:.3g}")
    ax.plot(scene.path[:, 0], scene.path[:, 1], color="black", linewidth=1.0,
            label="p*(ρ) for every ρ (the prox path as λ grows)")
    if scene.corners is not None:
        ax.plot(scene.corners[:, 0], scene.corners[:, 1], "--", color="tab:orange", linewidth=1.2,
                label="dogleg path 0 → p^U → p^B")
        ax.plot(*scene.corners[2], "k+", markersize=12, markeredgewidth=2, label="Newton step p^B = −H⁻¹g")
    ax.plot([0.0], [0.0], "ko", markersize=6, label="current point (p = 0)")
    steps = {"exact": scene.exact, "dogleg": scene.dogleg, "Steihaug-CG": scene.steihaug, "Cauchy": scene.cauchy}
    for name, p in steps.items():
        if p is None:
            continue
        style = dict(STEP_STYLES[name])
        ax.plot([p[0]], [p[1]], linestyle="none", markeredgecolor="black", zorder=6,
                label=f"{name}: m = {scene.model[name]:.4g}", **style)
    if scene.prox is not None:
        ax.plot([scene.prox[0]], [scene.prox[1]], "o", markersize=20, markerfacecolor="none", markeredgecolor="tab:red",
                markeredgewidth=1.5, zorder=5, label=f"prox_λm(0), λ = 1/μ = {format_number(scene.lam)}")
    ax.set(xlim=(-scene.extent, scene.extent), ylim=(-scene.extent, scene.extent), aspect="equal",
           xlabel="$p_1$", ylabel="$p_2$")
    ax.set_title(title or f"ρ = {scene.radius:.3g}: the trust-region step is the prox step of λ = 1/μ = "
                 f"{format_number(scene.lam)}", fontsize="medium")
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", borderaxespad=0.0)
    return ax


# ----------------------------------------------------------------- KL: two Gaussians, a bimodal target


def _gaussian_density(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


class GaussianKLScene(NamedTuple):
    """Two 1-D Gaussians and the integrands of both KL directions (see :func:`gaussian_kl_scene`)."""

    x: np.ndarray  # (N,) grid
    p: np.ndarray  # (N,) density of p = N(μ_p, σ_p²)
    q: np.ndarray  # (N,) density of q = N(μ_q, σ_q²)
    forward_integrand: np.ndarray  # (N,) p log(p/q): integrates to KL(p‖q)
    reverse_integrand: np.ndarray  # (N,) q log(q/p): integrates to KL(q‖p)
    forward: float  # KL(p‖q), closed form
    reverse: float  # KL(q‖p), closed form
    params: tuple[float, float, float, float]  # (μ_p, σ_p, μ_q, σ_q)


def gaussian_kl_scene(mean_p: float, std_p: float, mean_q: float, std_q: float, *,
                      xlim: tuple[float, float] | None = None, num: int = 801) -> GaussianKLScene:
    r"""KL(p‖q) and KL(q‖p) of two Gaussians, by :func:`rlteach.kl.gaussian_kl`, with their integrands.

    The forward integrand :math:`p\log(p/q)` is large where p has mass and q has little; the
    reverse one :math:`q\log(q/p)` where q has mass and p has little.

    Parameters
    ----------
    mean_p, std_p, mean_q, std_q : float
        Standard deviations > 0.
    xlim : (float, float), optional
        The grid's range (default: four standard deviations around both).
    num : int
        Grid points.
    """
    if not (std_p > 0 and std_q > 0):
        raise ValueError(f"standard deviations must be > 0, got {std_p} and {std_q}")
    lo, hi = xlim or (min(mean_p - 4 * std_p, mean_q - 4 * std_q), max(mean_p + 4 * std_p, mean_q + 4 * std_q))
    x = np.linspace(lo, hi, int(num))
    p, q = _gaussian_density(x, mean_p, std_p), _gaussian_density(x, mean_q, std_q)
    log_ratio = (np.log(std_q / std_p) - 0.5 * ((x - mean_p) / std_p) ** 2 + 0.5 * ((x - mean_q) / std_q) ** 2)  # log p/q
    args = [torch.tensor([v], dtype=torch.float64) for v in (mean_p, math.log(std_p), mean_q, math.log(std_q))]
    forward = float(kl.gaussian_kl(*args))
    reverse = float(kl.gaussian_kl(args[2], args[3], args[0], args[1]))
    return GaussianKLScene(x, p, q, p * log_ratio, -q * log_ratio, forward, reverse,
                           (float(mean_p), float(std_p), float(mean_q), float(std_q)))


def draw_gaussian_kl(ax: Axes, scene: GaussianKLScene, *, title: str | None = None) -> Axes:
    """The two densities (solid) and the two integrands (shaded), each a legend entry with its KL."""
    mp, sp, mq, sq = scene.params
    ax.plot(scene.x, scene.p, color=TARGET_COLOR, linewidth=2.0, label=f"p = N({mp:.3g}, {sp:.3g}²)")
    ax.plot(scene.x, scene.q, color=PROPOSAL_COLOR, linewidth=2.0, label=f"q = N({mq:.3g}, {sq:.3g}²)")
    ax.fill_between(scene.x, 0.0, scene.forward_integrand, color=TARGET_COLOR, alpha=0.25,
                    label=f"p log(p/q): area KL(p‖q) = {scene.forward:.3g}")
    ax.fill_between(scene.x, 0.0, scene.reverse_integrand, color=PROPOSAL_COLOR, alpha=0.25,
                    label=f"q log(q/p): area KL(q‖p) = {scene.reverse:.3g}")
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    ax.set_xlabel("x")
    ax.set_ylabel("density, integrand")
    ax.set_title(title or f"KL(p‖q) = {scene.forward:.3g} ≠ KL(q‖p) = {scene.reverse:.3g}", fontsize="medium")
    ax.legend(fontsize="small", loc="upper left")
    return ax


class BimodalFitScene(NamedTuple):
    """The best Gaussian for a two-mode target in each KL direction (see :func:`bimodal_fit_scene`)."""

    x: np.ndarray  # (N,) grid
    target: np.ndarray  # (N,) the target's density on the grid
    forward: kl.GaussianFit  # argmin KL(p‖q): mode covering
    reverse: kl.GaussianFit  # argmin KL(q‖p): mode seeking
    forward_density: np.ndarray  # (N,)
    reverse_density: np.ndarray  # (N,)
    separation: float  # distance between the modes
    std: float  # width of each mode
    gap_mass: Mapping[str, float]  # probability each puts where the target's density is below 1% of its peak


def bimodal_fit_scene(separation: float, std: float = 0.6, *, extent: float = 10.0, num: int = 201) -> BimodalFitScene:
    r"""Fit one Gaussian to :math:`\tfrac12 N(-s/2, \sigma^2) + \tfrac12 N(s/2, \sigma^2)` both ways.

    Uses :func:`rlteach.kl.gaussian_mixture_logits` and :func:`rlteach.kl.fit_gaussian_by_kl`
    on a grid of ``num`` points over [-extent, extent], searching 101 means in
    [-extent/2, extent/2] and 49 widths in [0.2, extent/2] (steps of 0.1 for the
    default extent). The view must be wide enough that the fits are not truncated.

    Parameters
    ----------
    separation : float
        s ≥ 0, the distance between the two modes.
    std : float
        σ > 0, the width of each mode.
    """
    if not (separation >= 0 and std > 0):
        raise ValueError(f"need separation >= 0 and std > 0, got {separation} and {std}")
    x = torch.linspace(-extent, extent, int(num), dtype=torch.float64)
    dx = float(x[1] - x[0])
    target = kl.gaussian_mixture_logits(x, torch.tensor([-separation / 2, separation / 2], dtype=torch.float64),
                                        torch.tensor([std, std], dtype=torch.float64))
    means = torch.linspace(-extent / 2, extent / 2, 101, dtype=torch.float64)
    stds = torch.linspace(0.2, extent / 2, 49, dtype=torch.float64)
    fits = {d: kl.fit_gaussian_by_kl(x, target, means, stds, d) for d in ("forward", "reverse")}
    probs = {"target": torch.softmax(target, -1), **{d: torch.softmax(f.logits, -1) for d, f in fits.items()}}
    gap = probs["target"] < 0.01 * probs["target"].max()
    gap_mass = {name: float(p[gap].sum()) for name, p in probs.items()}
    return BimodalFitScene(x.numpy(), probs["target"].numpy() / dx, fits["forward"], fits["reverse"],
                           probs["forward"].numpy() / dx, probs["reverse"].numpy() / dx, float(separation), float(std),
                           gap_mass)


def draw_bimodal_fit(ax: Axes, scene: BimodalFitScene, *, title: str | None = None) -> Axes:
    """The target (shaded) and the two fits, each a legend entry with its parameters and KL."""
    f, r = scene.forward, scene.reverse
    ax.fill_between(scene.x, 0.0, scene.target, color="0.6", alpha=0.5,
                    label=f"target p: two modes {scene.separation:.3g} apart")
    ax.plot(scene.x, scene.forward_density, color="tab:purple", linewidth=2.0,
            label=f"argmin KL(p‖q): N({f.mean:.2f}, {f.std:.2f}²), KL {f.kl:.3g}")
    ax.plot(scene.x, scene.reverse_density, color="tab:orange", linewidth=2.0, linestyle="--",
            label=f"argmin KL(q‖p): N({r.mean:.2f}, {r.std:.2f}²), KL {r.kl:.3g}")
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.set_title(title or "forward KL covers both modes, reverse KL seeks one", fontsize="medium")
    ax.legend(fontsize="small", loc="upper left")
    return ax


def kl_direction_readout(gaussians: GaussianKLScene, bimodal: BimodalFitScene) -> str:
    """Both KLs of the two Gaussians; both fits of the bimodal target and the mass each puts in its gap."""
    f, r = bimodal.forward, bimodal.reverse
    return (f"KL(p‖q) = {gaussians.forward:.4g}, KL(q‖p) = {gaussians.reverse:.4g}. "
            f"Modes {bimodal.separation:.3g} apart: forward fit N({f.mean:.2f}, {f.std:.2f}²) puts "
            f"{100 * bimodal.gap_mass['forward']:.1f}% of its mass where the target has almost none "
            f"({100 * bimodal.gap_mass['target']:.2f}%); reverse fit N({r.mean:.2f}, {r.std:.2f}²) puts "
            f"{100 * bimodal.gap_mass['reverse']:.1f}% there, and its KL(q‖p) = {r.kl:.3g} (log 2 = 0.693 "
            "when it sees one mode of two).")


# ------------------------------------------------------------------------------ the simplex

SIMPLEX_CORNERS = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3.0) / 2]])  # actions 1, 2, 3 in the plane


def simplex_xy(probs: Any) -> np.ndarray:
    """Distributions over 3 actions, shape (..., 3), as points of the equilateral triangle, shape (..., 2).

    Barycentric coordinates: action i's vertex is ``SIMPLEX_CORNERS[i]``; the map is linear,
    so straight lines and ellipses stay straight lines and ellipses.
    """
    q = np.asarray(probs.detach().numpy() if isinstance(probs, Tensor) else probs, dtype=np.float64)
    if q.shape[-1] != 3:
        raise ValueError(f"probs: expected shape (..., 3), got {q.shape}")
    return q @ SIMPLEX_CORNERS


def draw_simplex(ax: Axes, labels: Sequence[str] = ("action 1", "action 2", "action 3")) -> Axes:
    """The probability simplex of 3 actions as a triangle with its vertices named."""
    closed = np.vstack([SIMPLEX_CORNERS, SIMPLEX_CORNERS[:1]])
    ax.plot(closed[:, 0], closed[:, 1], color="black", linewidth=1.2, label="simplex (every policy)")
    offsets = ((-0.04, -0.05), (0.04, -0.05), (0.0, 0.04))
    for corner, label, (dx, dy) in zip(SIMPLEX_CORNERS, labels, offsets, strict=True):
        ax.text(corner[0] + dx, corner[1] + dy, label, ha="center", va="center", fontsize="small")
    ax.set_aspect("equal")
    ax.set_xlim(-0.15, 1.15)
    ax.set_ylim(-0.12, 0.98)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


class SimplexBallScene(NamedTuple):
    """A KL ball around a policy over 3 actions beside its quadratic and its Euclidean twins."""

    probs: np.ndarray  # (3,) π, the centre
    max_kl: float  # δ
    kl_ball: np.ndarray  # (num, 3) boundary of {q : KL(π‖q) ≤ δ}
    fisher_ball: np.ndarray  # (num, 3) boundary of {q : ½(q − π)ᵀdiag(1/π)(q − π) ≤ δ}
    euclidean_ball: np.ndarray  # (num, 3) boundary of {q : ‖q − π‖ ≤ r}, r = √(2δ/3)
    radius: float  # r, the Euclidean radius that the KL ball has at the uniform policy
    kl_on_euclidean: float  # the largest KL(π‖q) on the Euclidean circle (∞ once it leaves the simplex)
    ranges: Mapping[str, np.ndarray]  # per ball, (3, 2): the smallest and largest probability of each action


def simplex_ball_scene(probs: Any, max_kl: float, *, num: int = 240) -> SimplexBallScene:
    r"""The KL ball :math:`\{q : \mathrm{KL}(\pi\|q) \le \delta\}` on the simplex of 3 actions, and two comparisons.

    - its quadratic approximation, the Fisher ellipse ½‖q − π‖²_F ≤ δ
      (:func:`rlteach.kl.fisher_ball_boundary`);
    - the Euclidean ball ‖q − π‖ ≤ r with :math:`r = \sqrt{2\delta/3}`, the radius the KL ball
      has at the uniform policy, where diag(1/π) = 3I.

    The KL ball comes from :func:`rlteach.kl.kl_ball_boundary`.
    """
    p = torch.as_tensor(np.asarray(probs, dtype=np.float64))
    u = kl.simplex_directions(int(num))
    kl_ball = kl.kl_ball_boundary(p, max_kl, u)
    fisher = kl.fisher_ball_boundary(p, max_kl, u)
    radius = math.sqrt(2 * max_kl / 3)
    euclid = p + radius * u
    if bool((euclid <= 0).any()):
        kl_max = math.inf
    else:
        kl_max = float(kl.categorical_kl(p.log().expand_as(euclid), euclid.log()).max())
    balls = {"KL": kl_ball, "Fisher": fisher, "Euclidean": euclid}
    ranges = {name: torch.stack((b.min(dim=0).values, b.max(dim=0).values), dim=-1).numpy() for name, b in balls.items()}
    return SimplexBallScene(p.numpy(), float(max_kl), kl_ball.numpy(), fisher.numpy(), euclid.numpy(), radius, kl_max,
                            ranges)


def draw_simplex_balls(ax: Axes, scene: SimplexBallScene, *, title: str | None = None, legend: bool = True) -> Axes:
    """The simplex, the policy π, its KL ball (filled), the Fisher ellipse (dashed) and the Euclidean circle."""
    draw_simplex(ax)
    kl_xy = simplex_xy(scene.kl_ball)
    ax.fill(kl_xy[:, 0], kl_xy[:, 1], color="tab:red", alpha=0.25, zorder=1)
    ax.plot(*np.vstack([kl_xy, kl_xy[:1]]).T, color="tab:red", linewidth=2.0,
            label=f"KL ball KL(π‖q) ≤ δ = {scene.max_kl:.3g}")
    fisher_xy = simplex_xy(scene.fisher_ball)
    ax.plot(*np.vstack([fisher_xy, fisher_xy[:1]]).T, "--", color="tab:purple", linewidth=1.5,
            label="quadratic ½(q − π)ᵀdiag(1/π)(q − π) ≤ δ")
    euclid_xy = simplex_xy(scene.euclidean_ball)
    ax.plot(*np.vstack([euclid_xy, euclid_xy[:1]]).T, ":", color="tab:blue", linewidth=2.0,
            label=f"Euclidean ball ‖q − π‖ ≤ √(2δ/3) = {scene.radius:.3g}")
    ax.plot(*simplex_xy(scene.probs), "ko", markersize=6, label="π = (" + ", ".join(f"{v:.2f}" for v in scene.probs) + ")")
    leaves = scene.kl_on_euclidean == math.inf
    ax.set_title(title or ("the Euclidean ball leaves the simplex; the KL ball never does" if leaves else
                           f"KL on the Euclidean circle reaches {scene.kl_on_euclidean:.3g} = "
                           f"{scene.kl_on_euclidean / scene.max_kl:.2g}·δ"), fontsize="medium")
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", borderaxespad=0.0)
    return ax


def simplex_ball_readout(scene: SimplexBallScene) -> str:
    """π, δ, the range of each action's probability inside each ball, and the KL on the Euclidean circle."""
    def spans(name: str) -> str:
        return ", ".join(f"[{lo:.3f}, {hi:.3f}]" for lo, hi in scene.ranges[name])

    euclid = ("leaves the simplex (a negative probability: KL = ∞)" if scene.kl_on_euclidean == math.inf
              else f"reaches KL(π‖q) = {scene.kl_on_euclidean:.3g} = {scene.kl_on_euclidean / scene.max_kl:.3g}·δ")
    return (f"π = ({', '.join(f'{v:.3f}' for v in scene.probs)}), δ = {scene.max_kl:.3g}. Each action's probability "
            f"within the KL ball: {spans('KL')}; the quadratic ball: {spans('Fisher')}; the Euclidean ball: "
            f"{spans('Euclidean')}. The Euclidean circle {euclid}.")


# ------------------------------------------------------------------ the KL step as a Bregman prox


class MirrorStepScene(NamedTuple):
    """The KL-penalised (mirror) step and the Euclidean prox step of a linear model on the simplex."""

    v: np.ndarray  # (3,) the current distribution
    g: np.ndarray  # (3,) the gradient of the linear model ⟨g, x⟩
    lam: float  # the prox step λ of both
    kl_step: np.ndarray  # (3,) argmin ⟨g, x⟩ + KL(x‖v)/λ  ∝ v e^{−λg}
    euclidean_step: np.ndarray  # (3,) Π_Δ(v − λg)
    lams: np.ndarray  # (L,) λ from 0 to lam_max for the paths
    kl_path: np.ndarray  # (L, 3)
    euclidean_path: np.ndarray  # (L, 3)
    stats: Mapping[str, float]  # what the readout reports (see mirror_step_scene)


def _kl_of(p: Tensor, q: Tensor) -> float:
    return float(kl.categorical_kl(p.log(), q.log()))


def mirror_step_scene(v: Any, g: Any, lam: float, *, lam_max: float = 10.0, num: int = 120) -> MirrorStepScene:
    r"""The Bregman prox step with the KL divergence beside the Euclidean prox of lecture 02, on 3 actions.

    :math:`x^+ = \operatorname{argmin}_{x\in\Delta} \langle g, x\rangle + \frac1\lambda\mathrm{KL}(x\|v)`
    (:func:`rlteach.prox.kl_prox_linear`) and :math:`x^E = \Pi_\Delta(v - \lambda g)`
    (:func:`rlteach.projections.project_simplex`). ``stats`` holds, for the KL step,
    ``"kl_old_new"`` = KL(v‖x⁺) (TRPO's direction), ``"kl_new_old"`` = KL(x⁺‖v) (the
    penalty's), ``"half_fisher"`` = ½(x⁺ − v)ᵀdiag(1/v)(x⁺ − v) (:func:`rlteach.kl.kl_quadratic`),
    and ``"gain"`` = ⟨g, v − x⁺⟩; for the Euclidean step ``"rho"`` = ‖x^E − v‖,
    ``"half_rho_sq"`` = ρ²/2, ``"kl_euclidean"`` = KL(v‖x^E) (∞ once an action gets probability
    0), ``"gain_euclidean"``, and ``"zeroed"``, the number of actions it set to 0.
    """
    v_t, g_t = _t(v), _t(g)
    if v_t.shape != (3,) or g_t.shape != (3,):
        raise ValueError(f"v and g must have shape (3,), got {tuple(v_t.shape)} and {tuple(g_t.shape)}")
    x_kl = prox.kl_prox_linear(v_t, g_t, lam)
    x_e = projections.project_simplex(v_t - lam * g_t)
    lams = np.linspace(0.0, max(float(lam_max), float(lam)), int(num))
    kl_path = torch.stack([prox.kl_prox_linear(v_t, g_t, float(s)) for s in lams])
    e_path = projections.project_simplex(v_t[None, :] - torch.as_tensor(lams)[:, None] * g_t[None, :])
    fisher = torch.diag(1.0 / v_t)
    rho = float((x_e - v_t).norm())
    stats = {
        "kl_old_new": _kl_of(v_t, x_kl),
        "kl_new_old": _kl_of(x_kl, v_t),
        "half_fisher": float(kl.kl_quadratic(fisher, x_kl - v_t)),
        "gain": float(g_t @ (v_t - x_kl)),
        "rho": rho,
        "half_rho_sq": 0.5 * rho**2,
        "kl_euclidean": _kl_of(v_t, x_e),
        "gain_euclidean": float(g_t @ (v_t - x_e)),
        "zeroed": float(((x_e == 0) & (v_t > 0)).sum()),
    }
    return MirrorStepScene(v_t.numpy(), g_t.numpy(), float(lam), x_kl.numpy(), x_e.numpy(), lams, kl_path.numpy(),
                           e_path.numpy(), stats)


def draw_mirror_step(ax: Axes, scene: MirrorStepScene, *, title: str | None = None, legend: bool = True) -> Axes:
    """The simplex, v, both paths as λ grows from 0, and both steps at the current λ."""
    draw_simplex(ax)
    kl_xy, e_xy = simplex_xy(scene.kl_path), simplex_xy(scene.euclidean_path)
    ax.plot(kl_xy[:, 0], kl_xy[:, 1], color="tab:red", linewidth=1.5, label="KL (mirror) step as λ grows")
    ax.plot(e_xy[:, 0], e_xy[:, 1], "--", color="tab:blue", linewidth=1.5, label="Euclidean prox Π_Δ(v − λg) as λ grows")
    ax.plot(*simplex_xy(scene.v), "ko", markersize=7, label="v, the current policy")
    s = scene.stats
    ax.plot(*simplex_xy(scene.kl_step), "*", color="tab:red", markersize=15, markeredgecolor="black",
            label=f"KL step: KL(v‖x⁺) = {s['kl_old_new']:.3g}")
    e_kl = "∞" if math.isinf(s["kl_euclidean"]) else f"{s['kl_euclidean']:.3g}"
    ax.plot(*simplex_xy(scene.euclidean_step), "s", color="tab:blue", markersize=9, markeredgecolor="black",
            label=f"Euclidean step: ρ²/2 = {s['half_rho_sq']:.3g}, KL(v‖x^E) = {e_kl}")
    zeroed = int(s["zeroed"])
    ax.set_title(title or (f"λ = {scene.lam:.3g}: the Euclidean step zeros {zeroed} action{'s' if zeroed != 1 else ''}, "
                           "the KL step none" if zeroed else f"λ = {scene.lam:.3g}: both steps keep every action"),
                 fontsize="medium")
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", borderaxespad=0.0)
    return ax


def mirror_readout(scene: MirrorStepScene) -> str:
    """The KL step's KL in both directions against ½‖x⁺ − v‖²_F, and the Euclidean step's ρ²/2 and KL."""
    s = scene.stats
    e_kl = "∞ (an action was set to 0)" if math.isinf(s["kl_euclidean"]) else f"{s['kl_euclidean']:.4g}"
    return (f"λ = {scene.lam:.3g}. KL step x⁺ = ({', '.join(f'{v:.3f}' for v in scene.kl_step)}): KL(v‖x⁺) = "
            f"{s['kl_old_new']:.4g}, KL(x⁺‖v) = {s['kl_new_old']:.4g}, ½‖x⁺ − v‖²_F = {s['half_fisher']:.4g} "
            f"(ratio KL/quadratic {s['kl_old_new'] / s['half_fisher']:.3f}), gain ⟨g, v − x⁺⟩ = {s['gain']:.4g}. "
            f"Euclidean step x^E = ({', '.join(f'{v:.3f}' for v in scene.euclidean_step)}): ρ = ‖x^E − v‖ = "
            f"{s['rho']:.4g}, ρ²/2 = {s['half_rho_sq']:.4g}, KL(v‖x^E) = {e_kl}, gain {s['gain_euclidean']:.4g}.")


# ----------------------------------------------------------------------------------------
# Lecture 04: the bias and variance of advantage estimates, and learning curves
# ----------------------------------------------------------------------------------------


class AdvantageTradeoff(NamedTuple):
    """Bias and variance of GAE(λ) and TD(n) advantages against the exact advantage of a small MDP.

    Each statistic is the mean over ``repeats`` independent rollouts, with its standard error
    (:func:`rlteach.advantages.bias_variance` gives one value per rollout).
    """

    lambdas: np.ndarray  # (L,) the λ grid
    ns: np.ndarray  # (M,) the n grid
    gae_bias: np.ndarray  # (L,) RMS action-centred bias of GAE(λ)
    gae_bias_se: np.ndarray  # (L,)
    gae_variance: np.ndarray  # (L,) mean Var[Â | s, a]
    gae_variance_se: np.ndarray  # (L,)
    td_bias: np.ndarray  # (M,) the same for TD(n)
    td_bias_se: np.ndarray  # (M,)
    td_variance: np.ndarray  # (M,)
    td_variance_se: np.ndarray  # (M,)
    critic_error: float  # RMS over states of V̂(s) − V(s)
    gamma: float
    samples: int  # T·N estimates per rollout
    repeats: int


def _mean_and_se(rows: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(rows, dtype=np.float64)  # (repeats, K)
    return a.mean(0), a.std(0, ddof=1) / math.sqrt(a.shape[0])


def advantage_tradeoff(critic_noise: float, *, lambdas: Sequence[float] = tuple(np.linspace(0.0, 1.0, 21)),
                       ns: Sequence[int] = tuple(range(1, 13)), gamma: float = 0.9, num_states: int = 7,
                       p_right: float = 0.6, num_steps: int = 128, num_envs: int = 64, repeats: int = 6,
                       seed: int = 0) -> AdvantageTradeoff:
    """Measure GAE(λ) and TD(n) against the true advantage on the random walk of
    :func:`rlteach.advantages.random_walk` (rewards −1 off the left end, +1 off the right end).

    The policy goes right with probability ``p_right`` in every state; its exact V and A come
    from :func:`rlteach.advantages.policy_values`. The critic is V̂ = V + ε with ε(s) drawn once
    from N(0, critic_noise²) (``seed``); every estimator sees the same rollouts
    (:func:`rlteach.advantages.sample_rollouts`, episodes never truncated, the rollout's last
    row bootstrapped from V̂).

    Returns
    -------
    AdvantageTradeoff
    """
    mdp = adv_mod.random_walk(num_states, reward_left=-1.0, reward_right=1.0)
    policy = torch.tensor([[1.0 - p_right, p_right]] * num_states, dtype=torch.float64)
    exact = adv_mod.policy_values(mdp, policy, gamma)
    generator = torch.Generator().manual_seed(seed)
    error = critic_noise * torch.randn(num_states, generator=generator, dtype=torch.float64)
    critic = exact.values + error  # V̂ = V + ε
    gae_stats: tuple[list[list[float]], list[list[float]]] = ([], [])  # (bias, variance), one row per rollout
    td_stats: tuple[list[list[float]], list[list[float]]] = ([], [])
    for _ in range(repeats):
        rollout = adv_mod.sample_rollouts(mdp, policy, num_steps, num_envs, None, generator)
        values, next_values = adv_mod.rollout_values(rollout, critic)
        args = (rollout.rewards, values, next_values, rollout.terminated, rollout.truncated)
        by_lambda = [adv_mod.bias_variance(adv_mod.gae(*args, gamma, float(lam)), rollout, exact, policy)
                     for lam in lambdas]
        by_n = [adv_mod.bias_variance(adv_mod.td_n_advantages(*args, gamma, int(n)), rollout, exact, policy)
                for n in ns]
        for stats, measured in ((gae_stats, by_lambda), (td_stats, by_n)):
            stats[0].append([m.bias for m in measured])
            stats[1].append([m.variance for m in measured])
    (gb, gbs), (gv, gvs) = (_mean_and_se(rows) for rows in gae_stats)
    (tb, tbs), (tv, tvs) = (_mean_and_se(rows) for rows in td_stats)
    gv, tv = np.clip(gv, 0.0, None), np.clip(tv, 0.0, None)  # a zero variance can round to −0
    return AdvantageTradeoff(np.asarray(lambdas, dtype=np.float64), np.asarray(ns, dtype=np.int64), gb, gbs, gv, gvs,
                             tb, tbs, tv, tvs, float(error.pow(2).mean().sqrt()), gamma, num_steps * num_envs, repeats)


def _nearest(grid: np.ndarray, value: float) -> int:
    return int(np.argmin(np.abs(grid - value)))


def advantage_readout(scene: AdvantageTradeoff, gae_lambda: float, n: int) -> str:
    """The numbers behind the marks of :func:`draw_advantage_tradeoff` at ``gae_lambda`` and ``n``."""
    i, j = _nearest(scene.lambdas, gae_lambda), _nearest(scene.ns.astype(np.float64), n)

    def cell(bias: float, bias_se: float, var: float, var_se: float) -> str:
        return f"bias {bias:.3f} ± {bias_se:.3f}, variance {var:.3f} ± {var_se:.3f}, bias² + variance {bias**2 + var:.3f}"

    return (f"critic error (RMS of V̂ − V) {scene.critic_error:.3f}; γ = {scene.gamma:g}; means ± standard errors over "
            f"{scene.repeats} rollouts of {scene.samples} steps.<br>"
            f"<b>GAE(λ = {scene.lambdas[i]:.2f})</b>: {cell(scene.gae_bias[i], scene.gae_bias_se[i], scene.gae_variance[i], scene.gae_variance_se[i])}<br>"
            f"&nbsp;&nbsp;λ = 0 (TD error): {cell(scene.gae_bias[0], scene.gae_bias_se[0], scene.gae_variance[0], scene.gae_variance_se[0])}<br>"
            f"&nbsp;&nbsp;λ = 1 (Monte Carlo): {cell(scene.gae_bias[-1], scene.gae_bias_se[-1], scene.gae_variance[-1], scene.gae_variance_se[-1])}<br>"
            f"<b>TD(n = {int(scene.ns[j])})</b>: {cell(scene.td_bias[j], scene.td_bias_se[j], scene.td_variance[j], scene.td_variance_se[j])}")


def draw_advantage_tradeoff(axes: Sequence[Axes], scene: AdvantageTradeoff, gae_lambda: float, n: int) -> Sequence[Axes]:
    """Left: bias and standard deviation of GAE(λ) over λ; right: the same for TD(n) over n.
    Bands are ±2 standard errors; the marks sit at the sliders' λ and n."""
    ax_lam, ax_n = axes
    i, j = _nearest(scene.lambdas, gae_lambda), _nearest(scene.ns.astype(np.float64), n)
    for ax, x, bias, bias_se, var, var_se, k, name in (
            (ax_lam, scene.lambdas, scene.gae_bias, scene.gae_bias_se, scene.gae_variance, scene.gae_variance_se, i,
             "λ of GAE(γ, λ)"),
            (ax_n, scene.ns.astype(np.float64), scene.td_bias, scene.td_bias_se, scene.td_variance, scene.td_variance_se,
             j, "n of TD(n)")):
        var = np.clip(var, 0.0, None)  # rounding can leave a variance of −0
        std = np.sqrt(var)
        std_se = var_se / (2.0 * np.maximum(std, 1e-12))
        ax.plot(x, bias, "-o", markersize=3, color="tab:red", label="bias (RMS, action-centred)")
        ax.fill_between(x, bias - 2 * bias_se, bias + 2 * bias_se, color="tab:red", alpha=0.2)
        ax.plot(x, std, "-o", markersize=3, color="tab:blue", label="standard deviation √Var[Â | s, a]")
        ax.fill_between(x, std - 2 * std_se, std + 2 * std_se, color="tab:blue", alpha=0.2)
        ax.plot(x, np.sqrt(bias**2 + var), "--", color="0.3", label="√(bias² + variance)")
        ax.axvline(x[k], color="0.5", linewidth=1, linestyle=":")
        ax.plot([x[k]], [bias[k]], "o", color="tab:red", markersize=8, markeredgecolor="black")
        ax.plot([x[k]], [std[k]], "o", color="tab:blue", markersize=8, markeredgecolor="black")
        ax.set_xlabel(name)
        ax.set_ylabel("error of Â against the true A(s, a)")
        ax.set_ylim(bottom=0.0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="upper right" if ax is ax_n else "upper center")
    ax_lam.set_title(f"GAE: λ trades the critic's bias for variance (λ = {scene.lambdas[i]:.2f} marked)", fontsize="medium")
    ax_n.set_title(f"TD(n): longer windows, less bias, more variance (n = {int(scene.ns[j])} marked)", fontsize="medium")
    return axes


def rolling_mean(values: Sequence[float] | np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each index (fewer at the start), shape as ``values``."""
    x = np.asarray(values, dtype=np.float64)
    if window < 1:
        raise ValueError(f"window must be ≥ 1, got {window}")
    sums = np.cumsum(np.concatenate([[0.0], x]))
    counts = np.minimum(np.arange(1, x.size + 1), window)
    return (sums[1:] - sums[np.maximum(np.arange(1, x.size + 1) - window, 0)]) / counts


def draw_learning_curves(ax: Axes, curves: Mapping[str, tuple[np.ndarray, np.ndarray]], *, xlabel: str, ylabel: str,
                         title: str, raw: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                         reference: tuple[float, str] | None = None) -> Axes:
    """Learning curves y(x), one per run, with the raw points behind them and a horizontal reference line.

    Parameters
    ----------
    curves : mapping from a label to (x, y)
        Smoothed curves (e.g. :func:`rolling_mean` of episode returns against environment steps).
    raw : mapping from a label to (x, y), optional
        Drawn as faint dots, each with its own legend entry.
    reference : (value, label), optional
        A horizontal dashed line (a target return, an optimum).
    """
    for label, (x, y) in (raw or {}).items():
        ax.plot(np.asarray(x), np.asarray(y), ".", markersize=2, alpha=0.35, label=label)
    for label, (x, y) in curves.items():
        ax.plot(np.asarray(x), np.asarray(y), linewidth=2, label=label)
    if reference is not None:
        ax.axhline(reference[0], color="black", linestyle="--", linewidth=1, label=reference[1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize="medium")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    return ax


# ----------------------------------------------------------------------------------------
# Lecture 06: PPO's clipped surrogate against the ratio
# ----------------------------------------------------------------------------------------


class ClipScene(NamedTuple):
    r"""One sample's surrogates as functions of its ratio r, for a fixed advantage Â and ε.

    Computed by :func:`ppo_clip_scene` with :func:`rlteach.ppo.cpi_objective` and
    :func:`rlteach.ppo.clip_objective`; ``grad`` is autograd's derivative of the latter.
    """

    ratio: np.ndarray  # (K,) the ratios r at which everything is evaluated
    adv: float  # Â
    clip_eps: float  # ε
    cpi: np.ndarray  # (K,) r·Â, the sample's L^CPI
    clipped: np.ndarray  # (K,) clip(r, 1 − ε, 1 + ε)·Â, the second term of the min
    clip: np.ndarray  # (K,) min(r·Â, clip(r, 1 − ε, 1 + ε)·Â), the sample's L^CLIP
    grad: np.ndarray  # (K,) dL^CLIP/dr
    flat: np.ndarray  # (K,) bool: dL^CLIP/dr = 0 (no incentive to move r further)


def ppo_clip_scene(adv: float, clip_eps: float, *, ratio: Sequence[float] | np.ndarray | None = None,
                   r_max: float = 2.0, num: int = 401) -> ClipScene:
    r"""L^CPI, the clipped term, L^CLIP and dL^CLIP/dr of one sample over a range of ratios.

    .. math:: L^{CPI}(r) = r\hat A,\qquad
              L^{CLIP}(r) = \min\big(r\hat A,\ \mathrm{clip}(r, 1-\epsilon, 1+\epsilon)\hat A\big)

    The values come from :func:`rlteach.ppo.cpi_objective` and :func:`rlteach.ppo.clip_objective`
    (float64), the derivative from autograd through the latter. For Â > 0 the derivative is 0
    for r > 1 + ε, for Â < 0 it is 0 for r < 1 − ε, and it is Â elsewhere (at a kink, r = 1 ± ε,
    autograd returns one of the one-sided values).

    Parameters
    ----------
    adv : float
        Â, nonzero.
    clip_eps : float
        ε > 0.
    ratio : array, shape (K,), optional
        The ratios, each ≥ 0; by default ``num`` points evenly spaced on [0, ``r_max``].

    Returns
    -------
    ClipScene
    """
    from rlteach import ppo  # here, not at the top: the lectures before PPO import viz without it

    if not (math.isfinite(float(adv)) and float(adv) != 0.0):
        raise ValueError(f"adv must be a finite nonzero advantage, got {adv}")
    if not (math.isfinite(float(clip_eps)) and float(clip_eps) > 0.0):
        raise ValueError(f"clip_eps must be a finite ε > 0, got {clip_eps}")
    grid = np.linspace(0.0, float(r_max), int(num)) if ratio is None else np.asarray(ratio, dtype=np.float64).ravel()
    if grid.size == 0 or bool((grid < 0).any()) or not bool(np.isfinite(grid).all()):
        raise ValueError("ratio must be a nonempty array of finite ratios ≥ 0")
    r = torch.tensor(grid, dtype=torch.float64, requires_grad=True)
    a = torch.full_like(r, float(adv))
    clip = ppo.clip_objective(r, a, float(clip_eps))
    (grad,) = torch.autograd.grad(clip.sum(), r)
    with torch.no_grad():
        cpi = ppo.cpi_objective(r, a)
        clipped = ppo.cpi_objective(r.clamp(1.0 - clip_eps, 1.0 + clip_eps), a)  # clip(r)·Â
    grad_np = grad.numpy()
    return ClipScene(grid, float(adv), float(clip_eps), cpi.numpy(), clipped.numpy(), clip.detach().numpy(),
                     grad_np, grad_np == 0.0)


def flat_intervals(ratio: np.ndarray, flat: np.ndarray) -> list[tuple[float, float]]:
    """The runs of consecutive ``flat`` grid points as (first r, last r) pairs, in order."""
    runs: list[tuple[float, float]] = []
    start: int | None = None
    for i, is_flat in enumerate(np.asarray(flat, dtype=bool)):
        if is_flat and start is None:
            start = i
        if start is not None and (not is_flat or i == len(flat) - 1):
            end = i if is_flat else i - 1
            runs.append((float(ratio[start]), float(ratio[end])))
            start = None
    return runs


def clip_branch(scene: ClipScene, i: int) -> str:
    """Which term the min of L^CLIP takes at grid point ``i``: ``"both"`` (they are equal),
    ``"clipped"`` or ``"unclipped"``."""
    if scene.cpi[i] == scene.clipped[i]:
        return "both"
    return "clipped" if scene.clipped[i] < scene.cpi[i] else "unclipped"


def draw_ppo_clip(ax: Axes, scene: ClipScene, *, marker: float | None = None, title: str | None = None,
                  legend: bool = True) -> Axes:
    """L^CPI (dashed), the clipped term (dotted) and their minimum L^CLIP (thick) against r.

    The region where dL^CLIP/dr = 0 is shaded grey, the gap L^CPI − L^CLIP (what the pessimistic
    min gives up) is filled red, and 1 − ε, 1, 1 + ε are marked. ``marker`` puts a dot on both
    surrogates at that r (evaluated exactly, not read off the grid). The default title states
    where the gradient vanishes.
    """
    r = scene.ratio
    lo, hi = 1.0 - scene.clip_eps, 1.0 + scene.clip_eps
    for k, (a, b) in enumerate(flat_intervals(r, scene.flat)):
        ax.axvspan(a, b, color="0.85", zorder=0, label=r"$dL^{CLIP}/dr = 0$ (no gradient)" if k == 0 else None)
    ax.fill_between(r, scene.clip, scene.cpi, where=scene.cpi > scene.clip, color="tab:red", alpha=0.2,
                    label=r"$L^{CPI} - L^{CLIP}$ (given up by the min)")
    ax.plot(r, scene.cpi, "--", color="0.3", label=r"$L^{CPI} = r\hat{A}$")
    ax.plot(r, scene.clipped, ":", color="tab:orange", linewidth=2, label=r"clip$(r, 1-\epsilon, 1+\epsilon)\,\hat{A}$")
    ax.plot(r, scene.clip, color="tab:blue", linewidth=2.5, label=r"$L^{CLIP}$ = min of the two")
    for x in (lo, hi):
        ax.axvline(x, color="tab:green", linewidth=1)
    ax.axvline(1.0, color="0.5", linewidth=0.8, linestyle="-.")
    if marker is not None:
        point = ppo_clip_scene(scene.adv, scene.clip_eps, ratio=[marker])
        ax.plot([marker], [point.cpi[0]], "o", color="0.3", markersize=7)
        ax.plot([marker], [point.clip[0]], "o", color="tab:blue", markersize=9, markeredgecolor="black")
    ax.set_xlim(float(r[0]), float(r[-1]))
    ax.set_xlabel(f"ratio r = π_θ(a|s) / π_old(a|s)   (green: 1 − ε = {lo:.2f}, 1 + ε = {hi:.2f})")
    ax.set_ylabel("objective of one sample")
    if title is None:
        where = f"r > 1 + ε = {hi:.2f}" if scene.adv > 0 else f"r < 1 − ε = {lo:.2f}"
        title = f"Â = {scene.adv:+g}: " + r"$L^{CLIP}$" + f" is flat (zero gradient) for {where}"
    ax.set_title(title, fontsize="medium")
    ax.grid(True, alpha=0.3)
    if legend:
        ax.legend(fontsize="small", loc="upper left" if scene.adv > 0 else "upper right")
    return ax


def ppo_clip_readout(scenes: Sequence[ClipScene], ratio: float) -> str:
    """An HTML table of both surrogates, their slopes and the branch the min takes at ``ratio``,
    one row per scene (advantage), with the interval where L^CLIP is flat."""
    rows = []
    for scene in scenes:
        point = ppo_clip_scene(scene.adv, scene.clip_eps, ratio=[ratio])
        flat = ", ".join(f"[{a:.3f}, {b:.3f}]" for a, b in flat_intervals(scene.ratio, scene.flat)) or "none"
        rows.append(f"<tr><td>Â = {scene.adv:+g}</td><td>{point.cpi[0]:+.3f}</td><td>{point.clip[0]:+.3f}</td>"
                    f"<td>{point.cpi[0] - point.clip[0]:.3f}</td><td>{scene.adv:+g}</td><td>{point.grad[0]:+g}</td>"
                    f"<td>{clip_branch(point, 0)}</td><td>{flat}</td></tr>")
    eps = scenes[0].clip_eps if scenes else float("nan")
    return (f"<b>r = {ratio:.2f}, ε = {eps:.2f}</b> (clip range [{1 - eps:.2f}, {1 + eps:.2f}])"
            "<table><tr><th></th><th>L^CPI</th><th>L^CLIP</th><th>gap</th><th>dL^CPI/dr</th><th>dL^CLIP/dr</th>"
            "<th>the min takes</th><th>flat on the grid</th></tr>" + "".join(rows) + "</table>")


# ----------------------------------------------------------------------------------------
# Lecture 07: RLHF, the KL-regularised optimum against β and reward over-optimization
# ----------------------------------------------------------------------------------------


def repeat_counts(tokens: Tensor, task: Any) -> Tensor:
    r"""Number of words of each response that repeat the word before them, shape (B,), int64.

    The term of :class:`rlteach.rlhf.Utility` that the labellers penalise:
    :math:`\#\{t \ge 1 : y_t = y_{t-1},\ y_t \ne \mathrm{EOS}\}`.

    Parameters
    ----------
    tokens : Tensor of int64, shape (B, L)
        EOS-padded responses of ``task`` (a :class:`rlteach.rlhf.TokenTask`).
    """
    from rlteach.rlhf import response_mask  # here, not at the top: the lectures before RLHF import viz without it

    is_word = response_mask(tokens, task) & (tokens != task.eos)
    return (is_word[:, 1:] & (tokens[:, 1:] == tokens[:, :-1])).sum(1)


class BetaPoint(NamedTuple):
    r"""What the closed-form optimum :math:`\pi^*_\beta \propto \pi_{ref}\,e^{\hat r/\beta}` achieves at one β.

    Computed exactly over every listed response by :func:`rlhf_beta_point` (with
    :func:`rlteach.rlhf.optimum_summary`); ``ref_*`` are the reference policy's values.
    """

    beta: float
    reward: float  # E_π*[r̂], the learned reward that π* maximises (with the KL penalty)
    utility: float  # E_π*[u], the true utility
    kl: float  # KL(π* ‖ π_ref) in nats
    ref_reward: float  # E_π_ref[r̂]
    ref_utility: float  # E_π_ref[u]
    repeats: np.ndarray  # (K,) 0, 1, ..., K-1 repeated words
    ref_mass: np.ndarray  # (K,) π_ref's probability of a response with that many repeated words
    opt_mass: np.ndarray  # (K,) π*_β's


def rlhf_beta_point(ref_logp: Tensor, reward: Tensor, utility: Tensor, repeats: Tensor, beta: float) -> BetaPoint:
    r"""Learned reward, true utility, KL to the reference and the mass on repeated words of :math:`\pi^*_\beta`.

    .. math:: \pi^*_\beta(y) = \frac{\pi_{ref}(y)\,e^{\hat r(y)/\beta}}{\sum_{y'}\pi_{ref}(y')\,e^{\hat r(y')/\beta}}

    Parameters
    ----------
    ref_logp, reward, utility : Tensor, shape (M,)
        :math:`\log\pi_{ref}(y)`, :math:`\hat r(y)` and :math:`u(y)` over every response
        (:func:`rlteach.rlhf.all_responses`); ``ref_logp`` normalised.
    repeats : Tensor of int, shape (M,)
        Repeated words of each response (:func:`repeat_counts`).
    beta : float
        β > 0.
    """
    from rlteach.rlhf import optimal_policy_logp, optimum_summary

    if not (math.isfinite(float(beta)) and float(beta) > 0):
        raise ValueError(f"beta must be a finite β > 0, got {beta}")
    if not ref_logp.shape == reward.shape == utility.shape == repeats.shape or ref_logp.dim() != 1:
        raise ValueError(f"ref_logp {tuple(ref_logp.shape)}, reward {tuple(reward.shape)}, utility "
                         f"{tuple(utility.shape)} and repeats {tuple(repeats.shape)}: expected one shape (M,)")
    dtype = ref_logp.dtype
    s = optimum_summary(ref_logp, reward.to(dtype), utility.to(dtype), torch.tensor([float(beta)], dtype=dtype))
    p_ref, p_opt = ref_logp.exp(), optimal_policy_logp(ref_logp, reward.to(dtype), float(beta)).exp()
    k = int(repeats.max()) + 1
    ref_mass = torch.zeros(k, dtype=dtype).index_add_(0, repeats.long(), p_ref)  # Σ π_ref(y) by repeat count
    opt_mass = torch.zeros(k, dtype=dtype).index_add_(0, repeats.long(), p_opt)
    return BetaPoint(float(beta), float(s.reward[0]), float(s.utility[0]), float(s.kl[0]),
                     float((p_ref * reward.to(dtype)).sum()), float((p_ref * utility.to(dtype)).sum()),
                     np.arange(k), _numpy(ref_mass), _numpy(opt_mass))


def utility_peak(summary: Any) -> tuple[float, float]:
    """The β of the grid where E_π*[u] is largest, and that largest E[u] (an
    :class:`rlteach.rlhf.OptimumSummary`)."""
    i = int(torch.as_tensor(summary.utility).argmax())
    return float(summary.betas[i]), float(summary.utility[i])


def draw_overoptimization(axes: Sequence[Axes], summary: Any, *, point: BetaPoint | None = None,
                          trained: Mapping[float, tuple[float, float, float]] | None = None,
                          title: str | None = None) -> Sequence[Axes]:
    r"""Reward over-optimization: what :math:`\pi^*_\beta` achieves against β (log axis), in two panels.

    Left: :math:`\mathbb E_{\pi^*}[\hat r]` and :math:`\mathbb E_{\pi^*}[u]`, the reference
    policy's values (β → ∞) as dotted lines and the β where E[u] peaks as a vertical line.
    Right: :math:`\mathrm{KL}(\pi^*_\beta\|\pi_{ref})` (log axis). ``point`` (from
    :func:`rlhf_beta_point`) is marked on both; ``trained`` maps a β to (E[r̂], E[u], KL) of a
    trained policy, drawn as crosses.

    Parameters
    ----------
    axes : two Axes
    summary : rlteach.rlhf.OptimumSummary
        Over a grid of β (:func:`rlteach.rlhf.optimum_summary`).
    """
    ax_r, ax_kl = axes
    betas = _numpy(torch.as_tensor(summary.betas))
    peak_beta, peak_u = utility_peak(summary)
    ax_r.plot(betas, _numpy(torch.as_tensor(summary.reward)), color="tab:blue", linewidth=2,
              label=r"learned reward $E_{\pi^*}[\hat r]$")
    ax_r.plot(betas, _numpy(torch.as_tensor(summary.utility)), color="tab:red", linewidth=2,
              label=r"true utility $E_{\pi^*}[u]$")
    ax_r.axvline(peak_beta, color="tab:red", linestyle="--", linewidth=1,
                 label=f"E[u] peaks: β = {peak_beta:.3g}, E[u] = {peak_u:.3g}")
    ax_kl.plot(betas, _numpy(torch.as_tensor(summary.kl)), color="tab:purple", linewidth=2,
               label=r"KL$(\pi^*_\beta\,\|\,\pi_{ref})$")
    ax_kl.axvline(peak_beta, color="tab:red", linestyle="--", linewidth=1, label=f"β = {peak_beta:.3g} (E[u] peaks)")
    if point is not None:
        ax_r.axhline(point.ref_reward, color="tab:blue", linestyle=":", linewidth=1,
                     label=f"π_ref: E[r̂] = {point.ref_reward:.3g}")
        ax_r.axhline(point.ref_utility, color="tab:red", linestyle=":", linewidth=1,
                     label=f"π_ref: E[u] = {point.ref_utility:.3g}")
        ax_r.plot([point.beta], [point.reward], "o", color="tab:blue", markeredgecolor="black", markersize=8,
                  label=f"β = {point.beta:.3g}: E[r̂] = {point.reward:.3g}")
        ax_r.plot([point.beta], [point.utility], "o", color="tab:red", markeredgecolor="black", markersize=8,
                  label=f"β = {point.beta:.3g}: E[u] = {point.utility:.3g}")
        ax_kl.plot([point.beta], [point.kl], "o", color="tab:purple", markeredgecolor="black", markersize=8,
                   label=f"β = {point.beta:.3g}: KL = {point.kl:.3g}")
    for k, (beta, (r, u, kl_value)) in enumerate(sorted((trained or {}).items())):
        ax_r.plot([beta], [r], "x", color="tab:blue", markersize=10, mew=2.5,
                  label="PPO-trained: E[r̂]" if k == 0 else None)
        ax_r.plot([beta], [u], "x", color="tab:red", markersize=10, mew=2.5,
                  label="PPO-trained: E[u]" if k == 0 else None)
        ax_kl.plot([beta], [kl_value], "x", color="tab:purple", markersize=10, mew=2.5,
                   label="PPO-trained" if k == 0 else None)
    for ax in (ax_r, ax_kl):
        ax.set_xscale("log")
        ax.set_xlabel("β (KL penalty coefficient), log scale")
        ax.grid(True, alpha=0.3)
    ax_r.legend(fontsize="small", loc="upper left", bbox_to_anchor=(0.0, -0.2), ncol=2)  # below: the curves fill the axes
    ax_kl.legend(fontsize="small", loc="best")
    ax_kl.set_yscale("log")
    ax_r.set_ylabel("expectation under the optimal policy π*_β")
    ax_kl.set_ylabel("KL(π*_β ‖ π_ref) [nats]")
    ax_r.set_title(title or f"Below β = {peak_beta:.3g} the learned reward keeps rising\nwhile the true utility falls",
                   fontsize="medium")
    ax_kl.set_title("Smaller β: the optimum moves\nfurther from π_ref", fontsize="medium")
    return axes


def draw_repeat_mass(ax: Axes, point: BetaPoint, *, title: str | None = None) -> Axes:
    """Bars of the probability that π_ref and π*_β give to responses with 0, 1, 2, ... repeated words."""
    width = 0.38
    ax.bar(point.repeats - width / 2, point.ref_mass, width, color="0.6", label="π_ref")
    ax.bar(point.repeats + width / 2, point.opt_mass, width, color="tab:orange", label=f"π*_β, β = {point.beta:.3g}")
    ax.set_xticks(point.repeats)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("repeated words in the response")
    ax.set_ylabel("probability")
    share = float(point.opt_mass[1:].sum())
    ax.set_title(title or f"π*_β repeats a word with probability {share:.1%}\n"
                          f"(π_ref {float(point.ref_mass[1:].sum()):.1%}); each repeat costs u", fontsize="medium")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def rlhf_beta_readout(point: BetaPoint, summary: Any) -> str:
    """An HTML table of E[r̂], E[u] and KL(π*‖π_ref) at the point's β, beside π_ref and the β where E[u] peaks."""
    peak_beta, peak_u = utility_peak(summary)
    verdict = ("past the peak: lowering β further raises the learned reward and lowers the true utility"
               if point.beta < peak_beta else "at or above the peak of the true utility")
    return (f"<b>β = {point.beta:.3g}</b> ({verdict}; on the grid E[u] peaks at β = {peak_beta:.3g}, "
            f"E[u] = {peak_u:.3f})"
            "<table><tr><th></th><th>learned reward E[r̂]</th><th>true utility E[u]</th><th>KL to π_ref [nats]</th>"
            f"<th>repeating a word</th></tr>"
            f"<tr><td>π*_β</td><td>{point.reward:.3f}</td><td>{point.utility:.3f}</td><td>{point.kl:.3f}</td>"
            f"<td>{float(point.opt_mass[1:].sum()):.1%}</td></tr>"
            f"<tr><td>π_ref</td><td>{point.ref_reward:.3f}</td><td>{point.ref_utility:.3f}</td><td>0</td>"
            f"<td>{float(point.ref_mass[1:].sum()):.1%}</td></tr></table>")


# ----------------------------------------------------------------------------------------
# Lecture 08: throughput against the number of environments, return along a parameter
# shift (the sim-to-real gap), compute spent against return
# ----------------------------------------------------------------------------------------


def draw_throughput(ax: Axes, sizes: Sequence[int], rates: Mapping[str, Sequence[float]], *,
                    title: str | None = None) -> Axes:
    """Environment steps per second against the number of environments N, one line per simulator, log-log.

    ``rates[label][j]`` is the throughput (N × steps / s) measured at ``sizes[j]``; the default
    title names the fastest measurement.
    """
    n = np.asarray(sizes, dtype=np.float64)
    best_label, best_j, best_rate = "", 0, -math.inf
    for label, values in rates.items():
        y = np.asarray(values, dtype=np.float64)
        if y.shape != n.shape:
            raise ValueError(f"rates[{label!r}] has {y.size} values for {n.size} sizes")
        ax.plot(n, y, "o-", linewidth=2, label=label)
        j = int(np.nanargmax(y))
        if y[j] > best_rate:
            best_label, best_j, best_rate = label, j, float(y[j])
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("number of environments N (one tensor operation steps them all)")
    ax.set_ylabel("environment steps per second")
    ax.set_title(title or f"Throughput grows with N: {best_label} peaks at {best_rate:,.0f} steps/s (N = {int(n[best_j])})",
                 fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return ax


class ShiftBand(NamedTuple):
    """One controller's return along a parameter shift, pooled over training seeds (:func:`pool_shift_curves`)."""

    name: str  # the shifted parameter
    values: np.ndarray  # (V,) its value on each "real" system
    mean: np.ndarray  # (V,) mean over seeds of each seed's mean return
    stderr: np.ndarray  # (V,) standard error: over seeds (sd/√S) when S ≥ 2, else over the one run's environments
    per_seed: np.ndarray  # (S, V) each seed's mean return

    @property
    def seeds(self) -> int:
        """S, the number of runs pooled."""
        return int(self.per_seed.shape[0])


def pool_shift_curves(curves: Sequence[Any]) -> ShiftBand:
    r"""Pool :class:`rlteach.sim2real.ShiftCurve` s of one controller trained with S seeds.

    The mean is :math:`\bar R(v) = \frac1S\sum_s \bar R_s(v)`; with S ≥ 2 its standard error is the
    spread between seeds, :math:`\mathrm{sd}_s(\bar R_s(v))/\sqrt S` (what another training run
    would change); with one curve it is that curve's standard error over environments (start
    states only, blind to the training seed).
    """
    if not curves:
        raise ValueError("pool_shift_curves: no curves")
    values = np.asarray(curves[0].values, dtype=np.float64)
    for c in curves:
        if c.name != curves[0].name or not np.array_equal(np.asarray(c.values, dtype=np.float64), values):
            raise ValueError("pool_shift_curves: every curve must shift the same parameter over the same values")
    per_seed = np.stack([np.asarray(c.mean, dtype=np.float64) for c in curves])
    if len(curves) >= 2:
        stderr = per_seed.std(axis=0, ddof=1) / math.sqrt(len(curves))
    else:
        stderr = np.asarray(curves[0].stderr, dtype=np.float64)
    return ShiftBand(curves[0].name, values, per_seed.mean(axis=0), stderr, per_seed)


def _band_index(band: ShiftBand, value: float) -> int:
    hits = np.flatnonzero(np.isclose(band.values, value, rtol=0, atol=1e-9))
    if hits.size == 0:
        raise ValueError(f"{band.name} = {value} is not on the grid {band.values.tolist()}")
    return int(hits[0])


def draw_shift_curves(ax: Axes, bands: Mapping[str, ShiftBand], *, xlabel: str, title: str,
                      nominal: float | None = None, marker: float | None = None, max_return: float | None = 500.0) -> Axes:
    """Mean return (± one standard error) against the shifted parameter, one line per controller.

    ``nominal`` marks the simulator's value (where the policies were trained), ``marker`` a
    chosen "real" system (the slider's), ``max_return`` the time limit.
    """
    for label, band in bands.items():
        how = f"{band.seeds} seeds" if band.seeds > 1 else "1 run"
        ax.errorbar(band.values, band.mean, yerr=band.stderr, marker="o", capsize=3, linewidth=2,
                    label=f"{label} ({how})")
    if max_return is not None:
        ax.axhline(max_return, color="black", linestyle="--", linewidth=1, label=f"time limit: {max_return:g}")
    if nominal is not None:
        ax.axvline(nominal, color="0.5", linestyle=":", linewidth=1.5, label=f"simulator (nominal): {nominal:g}")
    if marker is not None:
        ax.axvline(marker, color="tab:red", linewidth=1, alpha=0.6, label=f"'real' system: {marker:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean return on the 'real' system (± s.e.)")
    ax.set_title(title, fontsize="medium")
    ax.set_ylim(bottom=0.0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    return ax


def shift_readout(bands: Mapping[str, ShiftBand], value: float) -> str:
    """An HTML table of each controller's mean return (± s.e.) on the system where the parameter equals ``value``."""
    first = next(iter(bands.values()))
    rows = []
    for label, band in bands.items():
        j = _band_index(band, value)
        rows.append(f"<tr><td>{label}</td><td>{band.mean[j]:.1f} ± {band.stderr[j]:.1f}</td>"
                    f"<td>{', '.join(f'{r:.0f}' for r in band.per_seed[:, j])}</td></tr>")
    best = max(bands, key=lambda k: bands[k].mean[_band_index(bands[k], value)])
    return (f"<b>{first.name} = {value:g}</b>: highest mean return {best}"
            "<table><tr><th>controller</th><th>mean return ± s.e.</th><th>per run</th></tr>"
            + "".join(rows) + "</table>")


def draw_compute_against_return(ax: Axes, points: Mapping[str, tuple[float, float, float]], *,
                                title: str | None = None) -> Axes:
    """Each controller as a point: compute spent to obtain it (seconds, log scale) against its return.

    ``points[label] = (seconds, mean_return, stderr)``; the default title names the controller
    with the highest return and how much less compute it took than the costliest one.
    """
    for label, (seconds, mean, se) in points.items():
        ax.errorbar([seconds], [mean], yerr=[se], marker="o", markersize=9, capsize=4, linestyle="none",
                    label=f"{label}: {format_number(seconds)} s, return {mean:.0f} ± {se:.0f}")
    ax.set_xscale("log")
    ax.set_xlabel("compute to obtain the controller [s, log scale]")
    ax.set_ylabel("mean return over the shifted systems (± s.e.)")
    best = max(points, key=lambda k: points[k][1])
    costliest = max(points, key=lambda k: points[k][0])
    factor = points[costliest][0] / points[best][0]
    ax.set_title(title or f"{best} has the highest return at {factor:,.0f}× less compute than {costliest}",
                 fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    return ax
