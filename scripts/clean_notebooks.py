"""Strip outputs, execution counts and run-time metadata from notebooks, in place.

    python scripts/clean_notebooks.py lectures solutions

Cell ids are kept (a cell without one gets an id made from its position), so a
notebook re-saved from JupyterLab yields a clean, stable diff.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

RUNTIME_CELL_KEYS = ("execution", "collapsed", "scrolled", "jp-MarkdownHeadingCollapsed")


def clean(path: Path) -> bool:
    """Clean one notebook; return whether it changed."""
    before = path.read_text()
    nb = nbformat.reads(before, as_version=4)
    nb.metadata.pop("widgets", None)
    seen: set[str] = set()
    for index, cell in enumerate(nb.cells):
        if not cell.get("id") or cell.id in seen:
            cell.id = f"cell-{index:03d}"
        seen.add(cell.id)
        for key in RUNTIME_CELL_KEYS:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    after = nbformat.writes(nb) + "\n"
    if after != before:
        path.write_text(after)
    return after != before


def main(folders: list[str]) -> None:
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.ipynb")):
            if ".ipynb_checkpoints" not in path.parts and clean(path):
                print(f"cleaned {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
