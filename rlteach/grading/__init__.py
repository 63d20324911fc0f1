"""Grading: the harness the exercises call, the seal, the graded parts of each topic,
the nbgrader preprocessors and the instructor's and student's commands.

Exercise notebooks need only::

    from rlteach.grading import check

The topic modules of :mod:`rlteach` import nothing from here.
"""

from rlteach.grading.harness import CheckFailed, check

__all__ = ["CheckFailed", "check"]
