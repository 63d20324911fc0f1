"""The graded parts, one module per topic, found by looking in this package.

A topic's module defines ``PARTS``, a tuple of :class:`rlteach.grading.spec.Part`. Adding a
topic's grading is adding its module here (and its solution notebook); no list is kept
by hand.
"""

from __future__ import annotations

import importlib
import pkgutil

from rlteach.grading.spec import Part


def _discover() -> dict[str, Part]:
    parts: dict[str, Part] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for part in getattr(module, "PARTS", ()):
            if part.name in parts:
                raise RuntimeError(f"two graded parts are named {part.name!r} (the second in {module.__name__})")
            parts[part.name] = part
    return parts


PARTS: dict[str, Part] = _discover()


def get_part(name: str) -> Part:
    """The part called ``name``; a ``ValueError`` lists the known ones otherwise."""
    if name not in PARTS:
        raise ValueError(f"no graded part named {name!r}; known parts: {', '.join(sorted(PARTS))}")
    return PARTS[name]
