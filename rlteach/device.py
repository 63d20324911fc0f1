"""Which device the course computes on.

``RLTEACH_DEVICE`` chooses: ``cpu`` (the default), ``cuda``, ``cuda:N`` or ``auto``
(CUDA when present, else CPU). Library functions never consult it: their new tensors
follow their inputs. Lectures and the grading harness use it to place what they create.
"""

from __future__ import annotations

import os

import torch

ENV_VAR = "RLTEACH_DEVICE"


def default_device() -> torch.device:
    """The device named by ``RLTEACH_DEVICE`` (``cpu`` when unset).

    Raises
    ------
    ValueError
        For a name that is not ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
    RuntimeError
        When CUDA is asked for and none is available.
    """
    name = os.environ.get(ENV_VAR, "cpu").strip().lower() or "cpu"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not (name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())):
        raise ValueError(f"{ENV_VAR}={name!r}: expected 'cpu', 'cuda', 'cuda:N' or 'auto'")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"{ENV_VAR}={name!r} but torch sees no CUDA device; use 'cpu' or 'auto'")
    return torch.device(name)


def available_devices() -> list[str]:
    """``["cpu"]``, plus ``"cuda"`` when torch sees a CUDA device."""
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
