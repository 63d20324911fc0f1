"""Compare an answer's output with the reference's and say, in one sentence, what differs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


def tolerance(rtol: float, atol: float, dtype: torch.dtype) -> tuple[float, float]:
    """``(rtol, atol)`` for a value of ``dtype``: as given for float64, looser for float32
    (rounding alone differs by ~1e-6 between equivalent formulas) and for half precision."""
    if dtype == torch.float64 or not dtype.is_floating_point:
        return rtol, atol
    if dtype == torch.float32:
        return max(rtol, 1e-4), max(atol, 1e-6)
    return max(rtol, 1e-2), max(atol, 1e-3)


def _index(flat: int, shape: torch.Size) -> tuple[int, ...]:
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), shape)) if shape else ()


def _at(index: tuple[int, ...]) -> str:
    return f" at index {index}" if index else ""


def _kind(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"a {type(value).__name__}"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _tensors(got: Tensor, want: Tensor, rtol: float, atol: float, what: str) -> str | None:
    if got.shape != want.shape:
        return f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    if got.dtype != want.dtype:
        return f"{what} has dtype {got.dtype}, expected {want.dtype} (keep the dtype of the inputs)"
    if got.device != want.device:
        return (f"{what} is on device {got.device}, expected {want.device} "
                "(make new tensors on the inputs' device, e.g. torch.zeros_like(x))")
    rtol, atol = tolerance(rtol, atol, want.dtype)
    return _values(got, want, rtol, atol, what)


def _values(got: Tensor, want: Tensor, rtol: float, atol: float, what: str) -> str | None:
    g = got.detach().to("cpu", torch.float64).reshape(-1)
    w = want.detach().to("cpu", torch.float64).reshape(-1)
    nan_g, nan_w = torch.isnan(g), torch.isnan(w)
    if bool((nan_g != nan_w).any()):
        flat = int((nan_g != nan_w).nonzero()[0])
        return f"{what} is {g[flat].item():.6g}{_at(_index(flat, want.shape))}, expected {w[flat].item():.6g}"
    same = (g == w) | (nan_g & nan_w)
    excess = torch.where(same, torch.zeros_like(g), (g - w).abs() - (atol + rtol * w.abs()))
    excess = torch.nan_to_num(excess, nan=float("inf"))
    bad = excess > 0
    if not bool(bad.any()):
        return None
    flat = int(torch.argmax(excess))
    count = f" ({int(bad.sum())} of {g.numel()} entries differ)" if g.numel() > 1 else ""
    return (f"{what} is wrong{_at(_index(flat, want.shape))}: got {g[flat].item():.8g}, "
            f"expected {w[flat].item():.8g}{count}; tolerance rtol={rtol:g}, atol={atol:g}")


def compare(got: Any, want: Any, rtol: float, atol: float, what: str = "the result") -> str | None:
    """``None`` when ``got`` matches ``want``, else a sentence saying what differs.

    Tensors must agree in shape, dtype and device, then elementwise within
    ``atol + rtol·|want|`` (loosened for float32, see :func:`tolerance`); NaN matches only
    NaN and an infinity only the same infinity. Tuples, lists and named tuples are compared
    entry by entry, dicts key by key; Python numbers accept 0-d tensors.
    """
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            return f"{what} is {_kind(got)}, expected a tuple of {len(want)}"
        fields = getattr(want, "_fields", None)
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            problem = compare(g, w, rtol, atol, f"{what}.{fields[i]}" if fields else f"{what}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(want, Mapping):
        if not isinstance(got, Mapping):
            return f"{what} is {_kind(got)}, expected a dict with keys {sorted(want)}"
        if set(got) != set(want):
            missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
            return (f"{what} has keys {sorted(got)}, expected {sorted(want)}"
                    + (f" (missing {missing})" if missing else "") + (f" (unexpected {extra})" if extra else ""))
        for key in want:
            problem = compare(got[key], want[key], rtol, atol, f"{what}[{key!r}]")
            if problem:
                return problem
        return None
    if _number(want):
        if isinstance(got, Tensor) and got.numel() == 1:
            got = got.item()
        if not _number(got):
            return f"{what} is {_kind(got)}, expected a number"
        return _values(torch.tensor(float(got)), torch.tensor(float(want)), rtol, atol, what)
    if isinstance(want, Tensor):
        if not isinstance(got, Tensor):
            return f"{what} is {_kind(got)}, expected a torch.Tensor"
        return _tensors(got, want, rtol, atol, what)
    if got != want:
        return f"{what} is {got!r}, expected {want!r}"
    return None


def compare_gradient(got: Tensor, want: Tensor, rtol: float, atol: float, name: str) -> str | None:
    """As :func:`compare` for the gradient with respect to input ``name``, naming a gradient
    that should not exist (the input must be detached) or that is missing."""
    what = f"the gradient of your loss with respect to {name}"
    if isinstance(got, Tensor) and isinstance(want, Tensor) and got.shape == want.shape:
        got_zero, want_zero = not bool(got.detach().ne(0).any()), not bool(want.detach().ne(0).any())
        if want_zero and not got_zero:
            return (f"{what} is not zero, but no gradient may flow into {name}: "
                    f"treat it as a constant (detach it)")
        if got_zero and not want_zero:
            return f"{what} is zero, but the loss must depend on {name} (did you detach it?)"
    return compare(got, want, rtol, atol, what)
