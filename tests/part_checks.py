"""What the parts tests share: a check's failure message, and a part's verdicts outside the autograder.

The probes in these tests are mostly written with the grader's own variants
(``rlteach.grading.parts.*._*_variant``), which are sealed against answers
(:attr:`rlteach.grading.spec.Part.grading_code`; tests/test_grading.py checks that). Here they
are left free, so that a probe computes its mistake; the references stay sealed.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from rlteach.grading import CheckFailed, check
from rlteach.grading import harness as H
from rlteach.grading.parts import PARTS
from rlteach.grading.spec import Part

CPU = torch.device("cpu")


@contextmanager
def variants_free() -> Iterator[None]:
    """Within the block a part seals its reference and its ``seals`` only, not its grading code."""
    sealed = Part.sealed
    Part.sealed = property(lambda self: (self.reference, *self.seals))  # type: ignore[method-assign]
    try:
        yield
    finally:
        Part.sealed = sealed  # type: ignore[method-assign]


def failure(fn, part, **kwargs) -> str:
    """The message of the ``CheckFailed`` that ``check(fn, part, **kwargs)`` must raise."""
    with variants_free(), pytest.raises(CheckFailed) as info:
        check(fn, part, **kwargs)
    return str(info.value)


def verdicts(fn, name, seed=0):
    """The verdict of ``fn`` on every group of part ``name`` (outside the autograder)."""
    part = PARTS[name]
    out = []
    for group in part.groups:
        cases = part.cases(seed, group)
        with variants_free():
            outcomes = [H.attempt(part, fn, case, CPU) for case in cases]
        out.append(H.judge(part, group, cases, outcomes, CPU))
    return out
