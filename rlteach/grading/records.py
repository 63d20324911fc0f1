"""Outcomes of an answer on its cases, and how they travel from the student's kernel to
the grader.

Under the autograder every ``check`` saves what the answer did (its observations, or the
error it raised, and the sealed references it tried to call) into a folder the grader
reads. The grader judges them again in its own process: nothing the kernel reports about
*passing* is believed. A record is loaded with ``weights_only``: plain data and tensors,
never code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

DUMP_ENV = "RLTEACH_GRADING_DUMP"  # where check() leaves its records while a notebook is graded


@dataclass(frozen=True)
class Outcome:
    """What the answer did on one case: its observation (output, gradients, parameters),
    or the error it raised, and the sealed references it tried to call."""

    observed: Any = None
    error: str | None = None
    refused: tuple[str, ...] = ()


def portable(value: Any) -> Any:
    """``value`` as plain data and CPU tensors (what ``torch.load(weights_only=True)`` reads)."""
    if isinstance(value, Tensor):
        return {"tensor": value.detach().to("cpu").clone(), "device": str(value.device)}
    if isinstance(value, (tuple, list)):
        return {"sequence": [portable(v) for v in value], "kind": "list" if isinstance(value, list) else "tuple"}
    if isinstance(value, Mapping):
        return {"mapping": [[portable(k), portable(v)] for k, v in value.items()]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    return {"unsupported": type(value).__name__}


class Unsupported:
    """Stands for an output the record could not carry; it equals nothing."""

    def __init__(self, kind: str):
        self.kind = kind

    def __repr__(self) -> str:
        return f"<a {self.kind}>"


def restore(value: Any) -> Any:
    """The inverse of :func:`portable` (tensors go back to their device when it exists)."""
    if "tensor" in value:
        device = torch.device(value["device"])
        available = device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_available())
        return value["tensor"].to(device) if available else value["tensor"]
    if "sequence" in value:
        items = [restore(v) for v in value["sequence"]]
        return items if value["kind"] == "list" else tuple(items)
    if "mapping" in value:
        return {restore(k): restore(v) for k, v in value["mapping"]}
    if "value" in value:
        return value["value"]
    return Unsupported(str(value["unsupported"]))


_saved = [0]


def save(folder: str | os.PathLike, part: str, seed: int, group: str, outcomes: Sequence[Outcome]) -> Path:
    """Write one check's outcomes into ``folder`` (one file per check, in call order)."""
    _saved[0] += 1
    path = Path(folder) / f"{os.getpid()}-{_saved[0]:06d}.pt"
    record = {"part": part, "seed": int(seed), "group": str(group),
              "outcomes": [{"observed": portable(o.observed), "error": o.error, "refused": list(o.refused)}
                           for o in outcomes]}
    torch.save(record, path)
    return path


def load(path: str | os.PathLike) -> tuple[str, int, str, list[Outcome]]:
    """Read a saved record: ``(part, seed, group, outcomes)``."""
    record = torch.load(path, map_location="cpu", weights_only=True)
    outcomes = [Outcome(restore(o["observed"]), o["error"], tuple(str(r) for r in o["refused"]))
                for o in record["outcomes"]]
    return str(record["part"]), int(record["seed"]), str(record["group"]), outcomes
