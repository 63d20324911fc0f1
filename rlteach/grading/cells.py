"""Reading the grade cells an instructor wrote: which checks each one makes.

A grade cell is a docstring and ``check(fn, "part", seed=..., group=...)`` calls with
literal arguments. A cell that cannot be read that way, a check of a part that does not
exist, an unknown group, or a grade cell with no check at all is an instructor's error:
it stops ``nbgrader generate_assignment`` (``make exercises``) and autograding with the
cell's id, and never degrades grading silently.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass

from nbformat import NotebookNode

from rlteach.grading.parts import PARTS

HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[ \t]*$", re.S | re.M)


class GradeCellError(ValueError):
    """An instructor's grade cell that the grader cannot read."""


@dataclass(frozen=True)
class Call:
    """One ``check`` call of a grade cell."""

    part: str
    seed: int
    group: str


def grade_id(cell: NotebookNode) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def is_grade_cell(cell: NotebookNode) -> bool:
    """An autograded test cell (a code cell marked grade, not solution)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def _literal(node: ast.expr, kind: type, what: str) -> object:
    if not isinstance(node, ast.Constant) or not isinstance(node.value, kind) or isinstance(node.value, bool) != (kind is bool):
        raise GradeCellError(f"{what} must be a literal {kind.__name__}, got `{ast.unparse(node)}`")
    return node.value


def parse_checks(source: str, label: str = "a grade cell") -> list[Call]:
    """The ``check`` calls of a grade cell's source, in order.

    Raises
    ------
    GradeCellError
        Naming ``label`` and what is wrong: a syntax error, a non-literal part, seed or
        group, an unknown part or group, or no check at all.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise GradeCellError(f"{label}: syntax error at line {err.lineno}: {err.msg}") from None
    calls = sorted((node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "check"), key=lambda node: (node.lineno, node.col_offset))
    checks = []
    try:
        for call in calls:
            if len(call.args) != 2:
                raise GradeCellError(f"check(...) takes the function and the part's name, got {len(call.args)} "
                                     "positional arguments")
            name = str(_literal(call.args[1], str, "the part's name"))
            if name not in PARTS:
                raise GradeCellError(f"no graded part named {name!r}; known parts: {', '.join(sorted(PARTS))}")
            options: dict[str, object] = {"seed": 0, "group": None}
            for keyword in call.keywords:
                if keyword.arg == "seed":
                    options["seed"] = _literal(keyword.value, int, "seed")
                elif keyword.arg == "group":
                    options["group"] = _literal(keyword.value, str, "group")
                else:
                    raise GradeCellError(f"check(...) has no option {keyword.arg!r} in a grade cell "
                                         "(seed and group only)")
            part = PARTS[name]
            try:
                group = part.group(options["group"])  # type: ignore[arg-type]
            except ValueError as err:
                raise GradeCellError(str(err)) from None
            checks.append(Call(name, int(options["seed"]), group))  # type: ignore[call-overload]
    except GradeCellError as err:
        raise GradeCellError(f"{label}: {err}") from None
    if not checks:
        raise GradeCellError(f"{label}: a grade cell must call check(...) at least once")
    return checks


def visible_checks(source: str) -> list[Call]:
    """The checks of a released grade cell that a student can run (hidden ones removed);
    empty for a cell whose checks are all hidden."""
    visible = HIDDEN.sub("", source)
    try:
        return parse_checks(visible)
    except GradeCellError:
        return []


def hidden_count(source: str) -> int:
    """How many checks the hidden blocks of a grade cell make (0 when unreadable)."""
    count = 0
    for block in HIDDEN.findall(source):
        try:
            count += len(parse_checks(block))
        except GradeCellError:
            continue
    return count


def validate(cells: Iterable[NotebookNode]) -> list[str]:
    """Every instructor error in a notebook's grade cells (empty when all are readable)."""
    problems = []
    for index, cell in enumerate(cells):
        if is_grade_cell(cell):
            try:
                parse_checks(cell.source, f"grade cell {grade_id(cell) or f'#{index + 1}'}")
            except GradeCellError as err:
                problems.append(str(err))
    return problems
