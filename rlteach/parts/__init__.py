"""Graded exercise parts, one module per topic, collected in :data:`PARTS`.

Each part names its reference (a sealed library function), its seeded random and edge
cases, and the known mistakes it recognises. Grade cells refer to parts by name through
:func:`rlteach.grading.check`.
"""

from __future__ import annotations

from rlteach.grading import Part
from rlteach.parts import importance, prox

PARTS: dict[str, Part] = {part.name: part for module in (importance, prox) for part in module.PARTS}
