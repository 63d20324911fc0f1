"""Lectures execute headless; every notebook is committed clean (no outputs, stable ids)."""

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
LECTURES = sorted((ROOT / "lectures").glob("*.ipynb"))
ALL_NOTEBOOKS = sorted(p for folder in ("lectures", "solutions", "exercises") for p in (ROOT / folder).rglob("*.ipynb")
                       if ".ipynb_checkpoints" not in p.parts)


def execute(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    os.environ.setdefault("MPLBACKEND", "Agg")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def test_every_lecture_has_a_solution_and_a_generated_exercise():
    assert [p.stem for p in LECTURES][:1] == ["01_importance_sampling"]
    for lecture in LECTURES:
        for folder in ("solutions", "exercises"):
            assert (ROOT / folder / lecture.stem / f"{lecture.stem}.ipynb").is_file(), f"{folder}/{lecture.stem} is missing"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebooks_are_committed_without_outputs_and_with_stable_ids(path):
    nb = json.loads(path.read_text())
    ids = [cell.get("id") for cell in nb["cells"]]
    assert all(ids), "every cell needs an id"
    assert len(set(ids)) == len(ids), "cell ids must be unique"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"cell {cell['id']} has outputs"


def graded_source_lines() -> dict[str, list[str]]:
    """For every sealed reference of every part, the lines of its body that would show how
    it computes: statements of more than 25 characters (docstring and comments left out)
    that no ungraded function of its module contains too (shared plumbing, such as
    ``return restore(x, was_numpy)``, gives nothing away)."""
    import ast
    import importlib
    import inspect
    import textwrap

    from rlteach.grading.parts import PARTS

    def body_lines(fn) -> list[str]:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
        body = tree.body[1:] if isinstance(tree.body[0], ast.Expr) else tree.body  # type: ignore[attr-defined]
        return [line.strip() for s in body for line in ast.unparse(s).splitlines() if len(line.strip()) > 25]

    sealed = {fn for part in PARTS.values() for fn in part.sealed}
    sealed_names = {(fn.__module__, fn.__qualname__) for fn in sealed}  # by name: a reload makes new objects
    lines = {}
    for fn in sealed:
        module = importlib.import_module(fn.__module__)
        ungraded = {line for other in vars(module).values() if inspect.isfunction(other)
                    and (other.__module__, other.__qualname__) not in sealed_names
                    and other.__module__ == module.__name__ for line in body_lines(other)}
        lines[f"{fn.__module__}.{fn.__qualname__}"] = [line for line in body_lines(fn) if line not in ungraded]
    return lines


def _shown(nb: nbformat.NotebookNode) -> str:
    """Everything a student sees in a notebook: cell sources and text outputs."""
    texts = []
    for cell in nb.cells:
        texts.append(cell.source)
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            for mime, value in output.get("data", {}).items():
                if mime.startswith("text/"):
                    texts.append(value if isinstance(value, str) else "".join(value))
    return "\n".join(texts)


def _graded_code_in(shown: str) -> list[str]:
    import re

    normalized = re.sub(r"\s+", " ", shown)
    return [f"{name}: {line!r}" for name, lines in graded_source_lines().items() for line in lines
            if re.sub(r"\s+", " ", line) in normalized]


@pytest.mark.slow
def test_the_graded_source_detector_finds_a_shown_reference():
    """The check below would catch a lecture that prints a graded reference."""
    import inspect

    from rlteach import importance

    assert _graded_code_in(inspect.getsource(importance.weighted_is))
    assert not _graded_code_in(inspect.getsource(importance.gaussian_is_experiment))


@pytest.mark.notebooks
@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.stem)
def test_lecture_executes_headless_without_error_and_never_shows_a_graded_answer(path):
    nb = execute(path)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code_cells)
    assert _graded_code_in(_shown(nb)) == [], "a lecture shows the code of a graded reference"
