"""Input checks shared by the library: a clear error instead of a silent wrong number.

One layer for every topic module. The array helpers (``as_array`` … ``check_iters``) serve the
modules that take numpy or torch and answer in kind (:mod:`rlteach.prox`,
:mod:`rlteach.projections`, :mod:`rlteach.prox_algorithms`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)
ArrayLike = np.ndarray | Tensor | float | Sequence[float]


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


def as_array(v: object, name: str = "v") -> tuple[Tensor, bool]:
    """``v`` as a floating tensor, and whether it came in as numpy (or a Python number)."""
    if isinstance(v, Tensor):
        if v.is_complex():
            raise ValueError(f"{name}: complex input is not supported (dtype {v.dtype})")
        return (v if v.is_floating_point() else v.to(torch.get_default_dtype())), False
    a = np.asarray(v)
    if np.iscomplexobj(a):
        raise ValueError(f"{name}: complex input is not supported (dtype {a.dtype})")
    if not np.issubdtype(a.dtype, np.floating):
        if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
            raise ValueError(f"{name}: expected real numbers, got dtype {a.dtype}")
        a = a.astype(np.float64)
    return torch.from_numpy(np.array(a, copy=True)), True


def restore(x: Tensor, was_numpy: bool) -> Any:
    return x.detach().cpu().numpy() if was_numpy else x


def param(p: object, like: Tensor, name: str) -> Tensor:
    """A parameter as a tensor on ``like``'s device and dtype."""
    t, _ = as_array(p, name)
    return t.to(device=like.device, dtype=like.dtype)


def check_finite(t: Tensor, name: str, allow_inf: bool = False) -> None:
    bad = torch.isnan(t)
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name} contains NaN (first at index {where})")
    if not allow_inf:
        bad = torch.isinf(t)
        if bool(bad.any()):
            where = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(f"{name} contains {float(t[where]):+} at index {where}; it must be finite")


def vector(v: object, name: str = "v") -> tuple[Tensor, bool]:
    """Input ``v`` of shape (..., n), n ≥ 1, finite."""
    t, was_numpy = as_array(v, name)
    if t.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (shape (..., n)), got a scalar")
    check_finite(t, name)
    return t, was_numpy


def check_lam(lam: float, name: str = "lam", positive: bool = False) -> float:
    value = float(lam)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be {bound} (it is the prox step λ), got {value}")
    return value


def check_radius(radius: float, name: str = "radius") -> float:
    value = float(radius)
    if math.isnan(value) or math.isinf(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def broadcast_to_v(p: Tensor, shape: torch.Size, name: str, target: str, vector: bool = False) -> None:
    """Raise unless ``p`` broadcasts to ``shape`` without enlarging it; a ``vector`` must match its last size."""
    if vector and (p.ndim == 0 or p.shape[-1] != shape[-1]):
        raise ValueError(
            f"mismatched shapes: {name} {tuple(p.shape)} must be a vector of length {shape[-1]} "
            f"to match {target} {tuple(shape)}"
        )
    try:
        out = torch.broadcast_shapes(p.shape, shape)
    except RuntimeError:
        out = None
    if out != shape:
        raise ValueError(f"mismatched shapes: {name} {tuple(p.shape)} does not broadcast to {target} {tuple(shape)}")


def center_of(center: ArrayLike | None, t: Tensor) -> Tensor:
    if center is None:
        return torch.zeros_like(t[..., :1])
    c = param(center, t, "center")
    check_finite(c, "center")
    broadcast_to_v(c, t.shape, "center", "v", vector=True)
    return c


def float_copy(x: ArrayT) -> ArrayT:
    """A floating copy of ``x`` of the same kind (numpy or torch)."""
    if isinstance(x, Tensor):
        check_finite(x if x.is_floating_point() else x.double(), "x0")
        return x.clone() if x.is_floating_point() else x.to(torch.get_default_dtype())
    a = np.asarray(x)
    a = np.array(a, dtype=a.dtype if np.issubdtype(a.dtype, np.floating) else np.float64, copy=True)
    check_finite(torch.from_numpy(a), "x0")
    return a


def max_abs(x: np.ndarray | Tensor) -> float:
    if isinstance(x, Tensor):
        return float(x.detach().abs().max()) if x.numel() else 0.0
    return float(np.max(np.abs(x))) if np.size(x) else 0.0


def check_iters(max_iter: int, tol: float) -> None:
    if int(max_iter) < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")


def bool_mask(name: str, x: object) -> Tensor:
    """``x`` as a boolean tensor (episode-end flags); any other dtype is a ``TypeError``."""
    if not isinstance(x, Tensor):
        try:
            x = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name}: expected booleans, got {type(x).__name__}") from err
    if x.dtype != torch.bool:
        raise TypeError(f"{name}: expected booleans (dtype torch.bool), got dtype {x.dtype}; pass {name}.bool()")
    return x


def unit_interval(name: str, value: object, what: str) -> float:
    """``value`` as a float in [0, 1]; ``what`` says what it is (``"a discount"``)."""
    if isinstance(value, bool | str):
        raise TypeError(f"{name}: expected a number in [0, 1], got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: expected a number in [0, 1], got {type(value).__name__}") from err
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{name}={number}: {what} lies in [0, 1]")
    return number


def positive_int(name: str, value: object) -> int:
    """``value`` as an int ≥ 1 (a count or a step number)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name}: expected an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}={value}: must be >= 1")
    return int(value)


def same_device(**tensors: Tensor) -> None:
    """Raise ``ValueError`` unless every tensor lives on the same device."""
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"tensors on different devices: {listed}")


def square_matrix(name: str, A: Tensor, n: int, vector_name: str = "v") -> None:
    """Raise ``ValueError`` unless ``A`` has shape (n, n), n being the length of ``vector_name``."""
    if A.ndim != 2 or A.shape != (n, n):
        raise ValueError(f"mismatched shapes: {name} {tuple(A.shape)} must be (n, n) = ({n}, {n}) to match {vector_name} ({n},)")


def symmetric_matrix(name: str, A: Tensor) -> None:
    """Raise ``ValueError`` unless the square matrix ``A`` is symmetric to rounding."""
    if A.numel() == 0:
        return
    slack = 100 * A.shape[-1] * torch.finfo(A.dtype).eps * max(1.0, float(A.abs().max()))
    gap = float((A - A.mT).abs().max())
    if gap > slack:
        raise ValueError(f"{name} must be symmetric; max |{name} - {name}ᵀ| = {gap:.3g}")


def positive_number(name: str, value: object, allow_zero: bool = False, what: str = "") -> float:
    """``value`` as a finite float > 0 (≥ 0 with ``allow_zero``); ``what`` says what it is."""
    if isinstance(value, bool) or isinstance(value, str):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}") from err
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}={number}: must be a finite number {bound}" + (f" ({what})" if what else ""))
    return number
