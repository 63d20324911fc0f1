"""A throwaway nbgrader course in a temporary folder, for the pipeline tests and the
benchmark: the repository's config and solutions, with submissions made from the
generated exercise the way a student would fill it in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # nbgrader shells out to alembic, which lives here


def assignments() -> list[str]:
    return sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir() and not p.name.startswith("."))


def sandbox_missing() -> str | None:
    """Why graded kernels cannot be sandboxed here (``None`` when they can)."""
    from rlteach.grading.sandbox import unavailable

    return unavailable()


class Course:
    """Graded in the sandbox where bubblewrap runs; elsewhere without it (the tests of the
    sandbox itself skip there, naming the reason)."""

    def __init__(self, root: Path):
        self.root = root
        shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
        if sandbox_missing():
            with open(root / "nbgrader_config.py", "a") as config:
                config.write("\nc.GuardedExecute.sandbox = False\n")
        shutil.copytree(ROOT / "solutions", root / "solutions", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        self.db_url = f"sqlite:///{root / 'grading' / 'gradebook.db'}"

    def nbgrader(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        result = subprocess.run([str(BIN / "nbgrader"), *args], cwd=self.root, env=env, capture_output=True,
                                text=True, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"nbgrader {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def generate(self, assignment: str) -> Path:
        self.nbgrader("generate_assignment", assignment, "--force")
        return self.root / "exercises" / assignment

    def notebook(self, folder: str, assignment: str) -> nbformat.NotebookNode:
        return nbformat.read(self.root / folder / assignment / f"{assignment}.ipynb", as_version=4)

    def submit(self, student: str, assignment: str, nb: nbformat.NotebookNode) -> None:
        folder = self.root / "grading" / "submitted" / student / assignment
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / f"{assignment}.ipynb")

    def autograde(self, assignment: str, *extra: str) -> None:
        self.nbgrader("autograde", assignment, "--force", *extra)

    def scores(self, assignment: str, student: str) -> dict[str, float]:
        """Points per grade cell from the gradebook, plus ``"total"``."""
        from nbgrader.api import Gradebook

        with Gradebook(self.db_url) as gb:
            submission = gb.find_submission(assignment, student)
            cells = {grade.cell.name: grade.score for nb in submission.notebooks for grade in nb.grades}
            cells["total"] = submission.score
        return cells


def filled(exercise: nbformat.NotebookNode, solution: nbformat.NotebookNode,
           answers: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The exercise with every solution cell answered: by ``answers[grade_id]`` where given,
    else by the instructor's solution (with its BEGIN/END SOLUTION markers removed)."""
    by_id = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells if "nbgrader" in c.metadata}
    nb = json.loads(json.dumps(exercise))
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution"):
            source = (answers or {}).get(meta["grade_id"], by_id[meta["grade_id"]])
            cell["source"] = "\n".join(line for line in source.splitlines() if "### " not in line)
    return nbformat.from_dict(nb)
