"""rlteach: the reference library behind the policy-optimization course.

One module per topic (``importance``, ``prox``, ...), the grading harness
(``grading``) that the exercises call, and figures and widgets (``viz``, ``widgets``)
kept apart from the math.
"""

__version__ = "0.1.0"
