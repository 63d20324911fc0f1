"""Seal graded references while a student's answer runs.

A library function that is also the answer to an exercise is decorated with
:func:`graded_reference`. Inside :func:`sealed` (which the grading harness enters around
every call of the student's function) such a function refuses to run, so an answer that
delegates to ``rlteach`` scores nothing for that part, with a message that says why.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

F = TypeVar("F", bound=Callable)


class SealedReferenceError(RuntimeError):
    """A graded reference was called while a student's answer was being checked."""


class _Seal:
    depth = 0
    refused: list[str] = []


_SEAL = _Seal()


def graded_reference(fn: F) -> F:
    """Mark ``fn`` as the reference answer of a graded exercise part."""
    name = f"{fn.__module__}.{fn.__name__}"

    @functools.wraps(fn)
    def reference(*args, **kwargs):
        if _SEAL.depth:
            _SEAL.refused.append(name)
            raise SealedReferenceError(
                f"{name} is the graded reference: it is sealed while your answer is checked. "
                "Write the computation yourself."
            )
        return fn(*args, **kwargs)

    del reference.__wrapped__
    reference.__graded_reference__ = name
    reference.__graded_code__ = fn.__code__  # lets inspect.getsource show the real code
    return reference  # type: ignore[return-value]


def reference_name(fn: object) -> str | None:
    """The reference's name when ``fn`` is a graded reference, else ``None``."""
    return getattr(fn, "__graded_reference__", None)


@contextmanager
def sealed() -> Iterator[list[str]]:
    """Within the block graded references refuse to run; yields the names they refused."""
    _SEAL.depth += 1
    start = len(_SEAL.refused)
    refused: list[str] = []
    try:
        yield refused
    finally:
        refused.extend(_SEAL.refused[start:])
        del _SEAL.refused[start:]
        _SEAL.depth -= 1
