"""Input checks shared by the library: a clear error instead of a silent wrong number."""

from __future__ import annotations

import torch
from torch import Tensor


def as_tensor(name: str, x: object) -> Tensor:
    """``x`` as a floating tensor; numpy arrays and Python numbers are converted."""
    if not isinstance(x, Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name}: expected a tensor or array of numbers, got {type(x).__name__}") from err
    if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64, torch.bool)):
        raise TypeError(f"{name}: expected real numbers, got dtype {x.dtype}")
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


def same_shape(**tensors: Tensor) -> None:
    """Raise ``ValueError`` unless every tensor has the same shape."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"mismatched shapes: {listed}")


def no_nan(**tensors: Tensor) -> None:
    """Raise ``ValueError`` naming the first NaN found."""
    for name, t in tensors.items():
        bad = torch.isnan(t)
        if bool(bad.any()):
            where = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(f"{name} contains NaN (first at index {where})")


def finite_above(name: str, t: Tensor, what: str) -> None:
    """Raise ``ValueError`` where ``t`` is ``-inf`` or ``+inf`` (``what`` explains why it matters)."""
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name} is {float(t[where]):+} at index {where}: {what}")


def non_empty(name: str, t: Tensor, dim: int = -1) -> None:
    """Raise ``ValueError`` when ``t`` has no entries along ``dim``."""
    if t.ndim == 0 or t.shape[dim] == 0:
        raise ValueError(f"{name}: empty sample (shape {tuple(t.shape)}); an estimate needs at least one draw")
