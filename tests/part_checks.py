"""What the parts tests share: a check's failure message, and a part's verdicts outside the autograder."""

import pytest
import torch

from rlteach.grading import CheckFailed, check
from rlteach.grading import harness as H
from rlteach.grading.parts import PARTS

CPU = torch.device("cpu")


def failure(fn, part, **kwargs) -> str:
    """The message of the ``CheckFailed`` that ``check(fn, part, **kwargs)`` must raise."""
    with pytest.raises(CheckFailed) as info:
        check(fn, part, **kwargs)
    return str(info.value)


def verdicts(fn, name, seed=0):
    """The verdict of ``fn`` on every group of part ``name`` (outside the autograder)."""
    part = PARTS[name]
    out = []
    for group in part.groups:
        cases = part.cases(seed, group)
        outcomes = [H.attempt(part, fn, case, CPU) for case in cases]
        out.append(H.judge(part, group, cases, outcomes, CPU))
    return out
