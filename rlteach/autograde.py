"""nbgrader preprocessors that make autograding survive what students do.

``nbgrader_config.py`` puts them into nbgrader's pipeline:

* :class:`RebuildFromRelease` (sanitizing): the notebook that runs is the released
  exercise, cell for cell, with only the *source* of each answer cell taken from the
  submission (matched by grade id, first occurrence). Deleted, copied, re-tagged or
  re-flagged cells and edited metadata therefore change nothing; cells the student added
  run as plain code after the cell they followed.
* :class:`GuardedExecute` (autograding): per-cell timeouts read from the instructor's
  metadata (``{"rlteach": {"timeout": seconds}}`` on a cell in ``solutions/``), a memory
  limit for the kernel, and a dead or unresponsive kernel turning the remaining answer and
  test cells into errors that say so. Every ``check`` call in a grade cell saves its
  outcomes; the grader re-judges them in its own process against the references, so a
  submission that replaces or disables the checker (or ``torch.testing``, or anything else
  in the kernel) gains nothing. Grade cells lose stderr output (warnings never cost
  points) and tracebacks (which would quote hidden test code).
* :class:`HideHiddenTests` (feedback): grade cells show their visible part and the number
  of hidden checks, never their code.
"""

from __future__ import annotations

import ast
import copy
import os
import re
import shutil
import tempfile
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from nbgrader.utils import is_grade, is_solution
from traitlets import Float, Integer

from rlteach.device import default_device
from rlteach.grading import DUMP_ENV, cases_on, get_part, load_outcomes, verdict

HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[ \t]*$", re.S | re.M)


def _grade_id(cell: NotebookNode) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _message_lines(ename: str, evalue: str) -> list[str]:
    """``ename: evalue`` wrapped at 100 columns: a traceback without code frames."""
    lines = f"{ename}: {evalue}".splitlines() or [ename]
    return [part for line in lines for part in (textwrap.wrap(line, 100, subsequent_indent="    ") or [""])]


def error_output(ename: str, evalue: str) -> NotebookNode:
    """An error output whose traceback is only the wrapped message (no code frames)."""
    return nbformat.from_dict({"output_type": "error", "ename": ename, "evalue": evalue,
                               "traceback": _message_lines(ename, evalue)})


def strip_tracebacks(cell: NotebookNode) -> None:
    """Reduce every error output of ``cell`` to its wrapped message: code frames of a grade
    cell would quote its hidden tests."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            output["traceback"] = _message_lines(output.get("ename", ""), output.get("evalue", ""))


def expected_checks(source: str) -> list[tuple[str, int, bool]] | None:
    """The ``check(fn, part, seed=..., edge=...)`` calls of a grade cell, in source order.

    ``None`` when the cell cannot be read that way (then nbgrader's own rule applies).
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    calls = sorted((node for node in ast.walk(tree) if isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name) and node.func.id == "check"),
                   key=lambda node: (node.lineno, node.col_offset))
    expected = []
    for call in calls:
        if len(call.args) < 2 or not isinstance(call.args[1], ast.Constant) or not isinstance(call.args[1].value, str):
            return None
        options = {"seed": 0, "edge": False}
        for keyword in call.keywords:
            if keyword.arg in options:
                if not isinstance(keyword.value, ast.Constant):
                    return None
                options[keyword.arg] = keyword.value.value
        expected.append((call.args[1].value, int(options["seed"]), bool(options["edge"])))
    return expected


class RebuildFromRelease(NbGraderPreprocessor):
    """Rebuild the submission on the released notebook, keeping only the answers."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        coursedir = CourseDirectory(config=self.config)
        assignment, notebook = resources["nbgrader"]["assignment"], resources["nbgrader"]["notebook"]
        path = Path(coursedir.format_path(coursedir.release_directory, ".", assignment)) / f"{notebook}.ipynb"
        if not path.is_file():
            raise FileNotFoundError(f"released notebook {path} is missing: run nbgrader generate_assignment first")
        release = nbformat.read(path, as_version=4)
        released = {_grade_id(c): c for c in release.cells if _grade_id(c)}
        answers: dict[str, str] = {}
        extras: dict[str | None, list[NotebookNode]] = defaultdict(list)
        seen: set[str] = set()
        anchor = None
        for cell in nb.cells:
            grade_id = _grade_id(cell)
            if grade_id in released and grade_id not in seen and cell.cell_type == released[grade_id].cell_type:
                seen.add(grade_id)
                anchor = grade_id
                if is_solution(released[grade_id]):
                    answers[grade_id] = cell.source
                continue
            extra = nbformat.from_dict({"cell_type": cell.cell_type, "source": cell.source, "metadata": {}})
            if cell.cell_type == "code":
                extra.outputs, extra.execution_count = [], None
            extras[anchor].append(extra)
        cells = list(extras[None])
        for release_cell in release.cells:
            cell = copy.deepcopy(release_cell)
            grade_id = _grade_id(cell)
            if grade_id in answers:
                cell.source = answers[grade_id]
            cells.append(cell)
            cells.extend(extras[grade_id] if grade_id else [])
        for index, cell in enumerate(cells):
            cell.id = f"{_grade_id(cell) or 'cell'}-{index}"
        nb.cells = cells
        nb.metadata = copy.deepcopy(release.metadata)
        return nb, resources


class GuardedExecute(Execute):
    """nbgrader's Execute with per-cell timeouts, a memory limit, kernel-death handling
    and out-of-kernel verification of every ``check`` call in a grade cell."""

    memory_limit_gb = Float(8.0, help="Address-space limit of the kernel, in GiB (0: none).").tag(config=True)
    max_output_chars = Integer(10_000, help="Characters kept of each text output of a cell.").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: Any = None, km: Any = None) -> tuple[NotebookNode, Any]:
        self._dump = tempfile.mkdtemp(prefix="rlteach-outcomes-")
        self._dead: str | None = None
        self._started = False
        self._incidents: list[str] = []
        self.skip_cells_with_tag = f"rlteach-never-skip-{os.urandom(8).hex()}"
        self.timeout_func = self._cell_timeout
        previous = os.environ.get(DUMP_ENV)
        os.environ[DUMP_ENV] = self._dump
        try:
            try:
                nb, resources = super().preprocess(nb, resources, km)
            except DeadKernelError:
                self._died("the kernel died before the notebook ran")
                for cell in nb.cells:
                    self._mark_dead(cell)
        finally:
            if previous is None:
                os.environ.pop(DUMP_ENV, None)
            else:
                os.environ[DUMP_ENV] = previous
            shutil.rmtree(self._dump, ignore_errors=True)
        nb.metadata.setdefault("rlteach", {})["incidents"] = self._incidents
        return nb, resources

    def _cell_timeout(self, cell: NotebookNode) -> int | None:
        seconds = cell.get("metadata", {}).get("rlteach", {}).get("timeout")
        return int(seconds) if isinstance(seconds, (int, float)) and seconds > 0 else self.timeout

    def _label(self, cell: NotebookNode, index: int) -> str:
        return _grade_id(cell) or f"#{index + 1}"

    def _died(self, why: str) -> None:
        self._dead = why
        self._incidents.append(why)

    def _mark_dead(self, cell: NotebookNode) -> None:
        if cell.cell_type == "code" and (is_grade(cell) or is_solution(cell)):
            cell.outputs = [error_output("KernelDied", f"{self._dead}; this cell could not run and scores zero")]

    def _limit_kernel(self) -> None:
        self._started = True
        if self.memory_limit_gb > 0 and self.kc is not None:
            limit = int(self.memory_limit_gb * 2**30)
            code = f"import resource as _r; _r.setrlimit(_r.RLIMIT_AS, ({limit}, {limit})); del _r"
            self.wait_for_reply(self.kc.execute(code, silent=True, store_history=False))

    def _responsive(self, seconds: int = 10) -> bool:
        timeout, self.timeout = self.timeout, seconds
        try:
            reply = self.wait_for_reply(self.kc.execute("pass", silent=True, store_history=False))
        except Exception:
            return False
        finally:
            self.timeout = timeout
        return reply is not None and reply.get("content", {}).get("status") == "ok"

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int) -> tuple[NotebookNode, Any]:
        if cell.cell_type != "code":
            return cell, resources
        if self._dead:
            self._mark_dead(cell)
            return cell, resources
        if not self._started:
            self._limit_kernel()
        label = self._label(cell, index)
        before = set(os.listdir(self._dump))
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self._died(f"the kernel died while running cell {label} (a crash, os._exit, or memory exhaustion)")
            cell.outputs = [error_output("KernelDied", f"{self._dead}; the remaining parts score zero")]
            return cell, resources
        except CellTimeoutError:
            self._died(f"the kernel stopped answering after cell {label} timed out "
                       f"({self._cell_timeout(cell)} s) and ignored the interrupt")
            cell.outputs = [error_output("KernelDied", f"{self._dead}; the remaining parts score zero")]
            return cell, resources
        if any(o.get("output_type") == "error" and o.get("ename") == "CellTimeoutError" for o in cell.outputs):
            self._incidents.append(f"cell {label} ran out of time ({self._cell_timeout(cell)} s) and was interrupted")
            if not self._responsive():
                self._died(f"the kernel stopped answering after cell {label} timed out")
        self._cut_outputs(cell)
        records = sorted(set(os.listdir(self._dump)) - before)
        if is_grade(cell):
            self._verify(cell, label, [os.path.join(self._dump, name) for name in records])
        for name in records:
            os.remove(os.path.join(self._dump, name))
        return cell, resources

    def _cut_outputs(self, cell: NotebookNode) -> None:
        """Keep at most ``max_output_chars`` of each text output and drop oversized media."""
        limit = self.max_output_chars
        for output in cell.outputs:
            if output.get("output_type") == "stream" and len(output.get("text", "")) > limit:
                output["text"] = output["text"][:limit] + f"\n... [{len(output['text']) - limit} characters cut]\n"
            for mime, value in list(output.get("data", {}).items()):
                if isinstance(value, str) and len(value) > (limit if mime.startswith("text/") else 100 * limit):
                    if mime.startswith("text/"):
                        output["data"][mime] = value[:limit]
                    else:
                        del output["data"][mime]
                        output["data"].setdefault("text/plain", f"[{mime} output cut]")

    def _verify(self, cell: NotebookNode, label: str, records: list[str]) -> None:
        """Replace the grade cell's verdict by the grader's own judgement of its outcomes."""
        strip_tracebacks(cell)
        expected = expected_checks(cell.source)
        if not expected:
            return
        problem, tampered = self._judge(cell, expected, records)
        kept = [o for o in cell.outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
                and not (o.get("output_type") == "error" and o.get("ename") in ("CheckFailed", "AssertionError"))]
        if problem:
            kept = [o for o in kept if o.get("output_type") != "error"] + [error_output("CheckFailed", problem)]
            if tampered:
                self._incidents.append(f"cell {label}: {problem.splitlines()[0]}")
        cell.outputs = kept

    @staticmethod
    def _judge(cell: NotebookNode, expected: list[tuple[str, int, bool]], records: list[str]) -> tuple[str | None, bool]:
        """``(problem, tampered)``: the first wrong outcome of the cell's checks, or why their
        records cannot be trusted (``tampered``), or ``(None, False)`` when all are right."""
        try:
            loaded = [load_outcomes(path) for path in records]
        except Exception:
            return "the saved check results were unreadable (the checker was tampered with)", True
        if [(p, s, e) for p, s, e, _ in loaded] != expected[:len(loaded)]:
            return "the checks that ran are not the ones this cell makes (the checker was tampered with)", True
        device = default_device()
        for part, seed, edge, outcomes in loaded:
            spec = get_part(part)
            cases = cases_on(spec, seed, edge, device)
            if len(outcomes) != len(cases):
                return f"{part}(): the checker reported {len(outcomes)} of {len(cases)} cases (tampered)", True
            problem = verdict(spec, cases, outcomes)
            if problem:
                return problem, False
        if len(loaded) < len(expected):
            errors = [o for o in cell.outputs if o.get("output_type") == "error" and o.get("ename") != "CheckFailed"]
            if errors:
                return f"{errors[0]['ename']}: {errors[0]['evalue']}", False
            return (f"{len(expected) - len(loaded)} of {len(expected)} checks in this cell did not run "
                    "(the checker was replaced or disabled)"), True
        return None, False


class HideHiddenTests(NbGraderPreprocessor):
    """In feedback, grade cells show their visible code and a count of hidden checks."""

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple[NotebookNode, dict]:
        if cell.cell_type == "code" and is_grade(cell):
            def summary(match: re.Match) -> str:
                count = len(expected_checks(match.group(0)) or [])
                return f"# {count} hidden check{'s' if count != 1 else ''} ran here; the message below says how they went"
            cell.source = HIDDEN.sub(summary, cell.source)
            strip_tracebacks(cell)
        return cell, resources
