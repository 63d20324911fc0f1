"""nbgrader preprocessors that make autograding survive what students do.

``nbgrader_config.py`` puts them into nbgrader's pipeline:

* :class:`ValidateGradeCells` (generating): every grade cell of the instructor's source
  must be readable (:mod:`rlteach.grading.cells`); ``nbgrader generate_assignment`` stops
  with the cell's id otherwise.
* :class:`RebuildFromRelease` (sanitizing): the notebook that runs is the released
  exercise, cell for cell, with only the *source* of each answer cell taken from the
  submission (matched by grade id, first occurrence). Deleted, copied, re-tagged or
  re-flagged cells and edited metadata therefore change nothing; cells the student added
  run as plain code after the cell they followed.
* :class:`GuardedExecute` (autograding): before any student code the kernel gets the
  grading seal (:func:`rlteach.grading.seal.install`) and a memory limit; per-cell
  timeouts come from the instructor's metadata (``{"rlteach": {"timeout": seconds}}``); a
  dead or unresponsive kernel turns the remaining answer and test cells into errors that
  say so. Every ``check`` in a grade cell records what the answer did; the grader judges
  those records in its own process, case by case, and writes the cell's verdict itself:
  full points, a share of them (each check an equal share of the cell, each case an equal
  share of its check), or an error. A submission that replaces or disables the checker
  (or ``torch.testing``, or anything else in the kernel) gains nothing. Grade cells keep
  no output of their own (warnings never cost points, and nothing the answer printed while
  a hidden check ran reaches the feedback).
* :class:`HideHiddenTests` (feedback): grade cells show their visible part and the number
  of hidden checks, never their code.
"""

from __future__ import annotations

import copy
import hashlib
import html
import os
import re
import shutil
import subprocess
import tempfile
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any, cast

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import run_sync
from nbconvert.exporters import HTMLExporter
from nbformat import NotebookNode
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from nbgrader.utils import is_grade, is_solution
from traitlets import Bool, Float, Integer, List, Unicode, validate

from rlteach.device import default_device
from rlteach.grading import records, sandbox
from rlteach.grading.cells import (
    HIDDEN, Call, GradeCellError, grade_id, hidden_count, is_grade_cell, parse_checks, visible_checks,
)
from rlteach.grading.cells import validate as validate_cells
from rlteach.grading.harness import Verdict, judge, resolve, salted
from rlteach.grading.seal import cell_hash


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


class ValidateGradeCells(NbGraderPreprocessor):
    """Stop generation when a grade cell of the source cannot be graded."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        problems = validate_cells(nb.cells)
        if problems:
            notebook = resources.get("nbgrader", {}).get("notebook", "the notebook")
            raise GradeCellError(f"{notebook}: " + "; ".join(problems))
        return nb, resources


class RebuildFromRelease(NbGraderPreprocessor):
    """Rebuild the submission on the released notebook, keeping only the answers."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        coursedir = CourseDirectory(config=self.config)
        assignment, notebook = resources["nbgrader"]["assignment"], resources["nbgrader"]["notebook"]
        path = Path(coursedir.format_path(coursedir.release_directory, ".", assignment)) / f"{notebook}.ipynb"
        if not path.is_file():
            raise FileNotFoundError(f"released notebook {path} is missing: run nbgrader generate_assignment first")
        release = nbformat.read(path, as_version=4)
        released = {grade_id(c): c for c in release.cells if grade_id(c)}
        answers: dict[str, str] = {}
        extras: dict[str | None, list[NotebookNode]] = defaultdict(list)
        seen: set[str] = set()
        anchor = None
        for cell in nb.cells:
            gid = grade_id(cell)
            if gid is not None and gid in released and gid not in seen and cell.cell_type == released[gid].cell_type:
                seen.add(gid)
                anchor = gid
                if is_solution(released[gid]):
                    answers[gid] = cell.source
                continue
            extra = nbformat.from_dict({"cell_type": cell.cell_type, "source": cell.source, "metadata": {}})
            if cell.cell_type == "code":
                extra.outputs, extra.execution_count = [], None
            extras[anchor].append(extra)
        cells = list(extras[None])
        for release_cell in release.cells:
            cell = copy.deepcopy(release_cell)
            gid = grade_id(cell)
            if gid in answers:
                cell.source = answers[gid]
            cells.append(cell)
            cells.extend(extras[gid] if gid else [])
        for index, cell in enumerate(cells):
            cell.id = f"{grade_id(cell) or 'cell'}-{index}"
        nb.cells = cells
        nb.metadata = copy.deepcopy(release.metadata)
        return nb, resources


def notebook_salt(grade_sources: list[str]) -> str:
    """The seed salt of a notebook: a hash of its grade cells' full sources, hidden tests
    included, so the same on every grading run and unknown to students."""
    return hashlib.sha256("\n\0".join(grade_sources).encode()).hexdigest()[:32]


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel command runs inside :mod:`rlteach.grading.sandbox`."""

    sandbox_prefix = List(Unicode(), help="The command that wraps the kernel's (empty: no sandbox).")

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        return [*self.sandbox_prefix, *super().format_kernel_cmd(extra_arguments)]

    @property
    def kernel_spec(self) -> Any:
        # A signal sent to the launcher's process group never reaches the sandboxed kernel (it
        # runs in a session of its own), so interrupts travel as control-channel messages.
        spec = super().kernel_spec
        if spec is not None and self.sandbox_prefix:
            spec.interrupt_mode = "message"
        return spec


class GuardedExecute(Execute):
    """nbgrader's Execute with the sandbox, the grading seal, per-cell timeouts, resource
    limits, kernel-death handling and out-of-kernel judging of every grade cell."""

    sandbox = Bool(True, help="Run the kernel in the bubblewrap sandbox (rlteach.grading.sandbox). Turning it "
                              "off runs student code with the grading user's files and network.").tag(config=True)
    memory_limit_gb = Float(8.0, help="Address-space limit of the kernel, in GiB (0: none).").tag(config=True)
    cpu_limit_s = Integer(3600, help="CPU seconds the kernel may use in all (sandboxed kernels).").tag(config=True)
    max_tasks = Integer(512, help="Processes and threads the sandboxed kernel may run.").tag(config=True)
    max_output_chars = Integer(10_000, help="Characters kept of each text output of a cell.").tag(config=True)
    _cgroup: Path | None = None

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(**kwargs)

    async def async_start_new_kernel(self, **kwargs: Any) -> None:
        # The kernel's own start-up lines ("To connect another client ...") are not the grader's output.
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        await super().async_start_new_kernel(**kwargs)

    start_new_kernel = run_sync(async_start_new_kernel)  # nbclient binds the sync form to its own

    def create_kernel_manager(self) -> Any:
        km = super().create_kernel_manager()
        if self.sandbox:
            km.transport = "ipc"  # unix sockets in the shared folder: the kernel has no network
            km.ip = str(self._shared / "kernel")
            km.connection_file = str(self._shared / "kernel.json")
            limits = sandbox.Limits(self.memory_limit_gb or 1024.0, self.cpu_limit_s, self.max_tasks)
            self._cgroup = sandbox.pids_cgroup(self.max_tasks)
            km.sandbox_prefix = sandbox.command(self._workdir, self._shared, limits, self._cgroup)
        return km

    def preprocess(self, nb: NotebookNode, resources: Any = None, km: Any = None) -> tuple[NotebookNode, Any]:
        if self.sandbox:
            reason = sandbox.unavailable()
            if reason:
                raise sandbox.SandboxUnavailable(reason)
        else:
            self.log.warning("grading WITHOUT the sandbox: student code can read the course and use the network")
        self._plan = {index: parse_checks(cell.source, f"grade cell {grade_id(cell) or f'#{index + 1}'}")
                      for index, cell in enumerate(nb.cells) if is_grade_cell(cell)}
        self._salt = notebook_salt([nb.cells[index].source for index in self._plan])
        self._shared = Path(tempfile.mkdtemp(prefix="rlteach-kernel-")).resolve()
        self._workdir = Path((resources or {}).get("metadata", {}).get("path") or os.getcwd()).resolve()
        self._dump = str(self._shared / "outcomes")
        self._cgroup = None
        os.mkdir(self._dump)
        self._dead: str | None = None
        self._started = False
        self._incidents: list[str] = []
        self.skip_cells_with_tag = f"rlteach-never-skip-{os.urandom(8).hex()}"
        self.timeout_func = self._cell_timeout
        previous = os.environ.get(records.DUMP_ENV)
        os.environ[records.DUMP_ENV] = self._dump
        try:
            try:
                nb, resources = super().preprocess(nb, resources, km)
            except DeadKernelError:
                self._died("the kernel died before the notebook ran")
                for cell in nb.cells:
                    self._mark_dead(cell)
        finally:
            if previous is None:
                os.environ.pop(records.DUMP_ENV, None)
            else:
                os.environ[records.DUMP_ENV] = previous
            shutil.rmtree(self._shared, ignore_errors=True)
            sandbox.remove_cgroup(self._cgroup)
        nb.metadata.setdefault("rlteach", {})["incidents"] = self._incidents
        return nb, resources

    def _cell_timeout(self, cell: NotebookNode) -> int | None:
        seconds = cell.get("metadata", {}).get("rlteach", {}).get("timeout")
        return int(seconds) if isinstance(seconds, (int, float)) and seconds > 0 else self.timeout

    def _died(self, why: str) -> None:
        self._dead = why
        self._incidents.append(why)

    def _mark_dead(self, cell: NotebookNode) -> None:
        if cell.cell_type == "code" and (is_grade(cell) or is_solution(cell)):
            cell.outputs = [error_output("KernelDied", f"{self._dead}; this cell could not run and scores zero")]

    def _run_silently(self, code: str) -> dict:
        reply = self.wait_for_reply(self.kc.execute(code, silent=True, store_history=False))
        if reply is None or reply.get("content", {}).get("status") != "ok":
            content = (reply or {}).get("content", {})
            raise RuntimeError(f"the grader could not prepare the kernel: {content.get('ename')}: {content.get('evalue')}")
        return reply

    def _prepare_kernel(self, nb: NotebookNode) -> None:
        """Seal the references and limit the kernel's memory, before any student code."""
        self._started = True
        cells: dict[str, list[str]] = {}
        for index, calls in self._plan.items():
            cells.setdefault(cell_hash(nb.cells[index].source), []).extend(call.part for call in calls)
        self._run_silently(f"from rlteach.grading.harness import install_seal as _install\n"
                           f"_install({cells!r}, {self._salt!r})\ndel _install")
        if self.memory_limit_gb > 0 and not self.sandbox:  # the sandbox sets it before the kernel starts
            limit = int(self.memory_limit_gb * 2**30)
            self._run_silently(f"import resource as _r; _r.setrlimit(_r.RLIMIT_AS, ({limit}, {limit})); del _r")

    def _responsive(self, seconds: int = 10) -> bool:
        timeout = cast(Any, self).timeout
        self.timeout = seconds
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
            self._prepare_kernel(self.nb)
        label = grade_id(cell) or f"#{index + 1}"
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
        written = sorted(set(os.listdir(self._dump)) - before)
        if index in self._plan:
            self._verdict(cell, label, self._plan[index], [os.path.join(self._dump, name) for name in written])
        for name in written:
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

    def _verdict(self, cell: NotebookNode, label: str, calls: list[Call], paths: list[str]) -> None:
        """Replace the grade cell's outputs by the grader's own judgement of its records."""
        errors = [o for o in cell.outputs if o.get("output_type") == "error"]
        lines, shares, tampered = judge_cell(calls, paths, self._salt, errors[0] if errors else None)
        if tampered:
            self._incidents.append(f"cell {label}: {tampered}")
        points = float(cell.metadata.get("nbgrader", {}).get("points", 0) or 0)
        score = sum(shares) / len(shares)
        outputs = [nbformat.v4.new_output("stream", name="stdout", text="\n".join(lines) + "\n")]
        if score == 0.0:
            failed = next(line for line in lines if not line.startswith("✓"))
            outputs.append(error_output("CheckFailed", failed.lstrip("✗ ")))
        elif score < 1.0:
            earned = round(points * score, 4)
            outputs.append(nbformat.v4.new_output("execute_result", data={"text/plain": f"{earned:g}"},
                                                  execution_count=cell.get("execution_count")))
            outputs[0]["text"] += f"partial credit: {earned:g} of {points:g} points\n"
        cell.outputs = outputs


def judge_cell(calls: list[Call], paths: list[str], salt: str,
               error: dict | None = None) -> tuple[list[str], list[float], str | None]:
    """Judge a grade cell's records against the checks its source makes.

    Returns one line per check (``✓ ...`` or ``✗ ...``), each check's share of credit, and
    why the records cannot be trusted (``None`` when they can).
    """
    try:
        loaded = [records.load(path) for path in paths]
    except Exception:
        return [f"✗ {calls[0].part}(): the saved check results were unreadable (the checker was tampered with)"], \
            [0.0] * len(calls), "the saved check results were unreadable"
    if [(p, s, g) for p, s, g, _ in loaded] != [(c.part, c.seed, c.group) for c in calls][:len(loaded)]:
        return [f"✗ {calls[0].part}(): the checks that ran are not the ones this cell makes "
                "(the checker was tampered with)"], [0.0] * len(calls), "the checks that ran are not the ones this cell makes"
    device = default_device()
    lines, shares = [], []
    tampered = None
    for index, call in enumerate(calls):
        part = resolve(call.part)
        if index >= len(loaded):
            if error is not None and error.get("ename") != "CheckFailed":
                why = f"{error.get('ename')}: {error.get('evalue')}"
            else:
                why = "this check did not run (the checker was replaced or disabled)"
                tampered = f"{len(calls) - len(loaded)} of {len(calls)} checks did not run (the checker was replaced or disabled)"
            lines.append(f"✗ {call.part}(): {why}")
            shares.append(0.0)
            continue
        outcomes = loaded[index][3]
        cases = part.cases(salted(call.seed, salt), call.group)
        if len(outcomes) != len(cases):
            tampered = f"{call.part}(): the checker reported {len(outcomes)} of {len(cases)} cases"
            lines.append(f"✗ {tampered} (the checker was tampered with)")
            shares.append(0.0)
            continue
        verdict: Verdict = judge(part, call.group, cases, outcomes, device)
        lines.append(verdict.message if verdict.score == 1.0 else "✗ " + verdict.message)
        shares.append(verdict.score)
    return lines, shares, tampered


TEMPLATES = Path(__file__).parent / "templates"  # rlteach_feedback: nbgrader's page, parts named, maths offline


class FeedbackExporter(HTMLExporter):
    """Feedback pages on the ``rlteach_feedback`` template (nbgrader's page, each test cell
    named by its parts, maths offline). It keeps that template where nbgrader's API
    (``NbGraderAPI.generate_feedback``, used by ``rlteach-grade`` and the formgrader) asks
    every feedback page for nbgrader's own."""

    @validate("template_name")
    def _template_name_validate(self, proposal: Any) -> str:  # replaces HTMLExporter's validator
        return "rlteach_feedback"
MATH = re.compile(r"\$\$(.+?)\$\$|(?<![\\$])\$(?!\s)([^$\n]+?)(?<!\s)\$(?!\d)", re.S)


class OfflineMath(NbGraderPreprocessor):
    """In feedback, the maths of markdown cells becomes MathML (the browser draws it; no
    MathJax script and no CDN): ``$$...$$`` as a block, ``$...$`` inline."""

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple[NotebookNode, dict]:
        if cell.cell_type == "markdown":
            cell.source = MATH.sub(_mathml, cell.source)
        return cell, resources


def _mathml(match: re.Match) -> str:
    from latex2mathml.converter import convert

    block, inline = match.group(1), match.group(2)
    try:
        return convert(block if block is not None else inline, display="block" if block is not None else "inline")
    except Exception:  # maths the converter cannot read stays visible as its source
        return f"<code>{html.escape(match.group(0))}</code>"


class HideHiddenTests(NbGraderPreprocessor):
    """In feedback, grade cells show their visible code and a count of hidden checks, and
    the table of contents names what each one checks."""

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple[NotebookNode, dict]:
        if cell.cell_type == "code" and is_grade(cell):
            try:
                calls = parse_checks(cell.source)
                names = dict.fromkeys(f"{call.part}()" for call in calls)
                kind = "hidden tests" if HIDDEN.search(cell.source) and not visible_checks(cell.source) else "tests"
                cell.metadata.setdefault("rlteach", {})["checks"] = f"{', '.join(names)} {kind}"
            except GradeCellError:
                pass
            def summary(match: Any) -> str:
                count = hidden_count(match.group(0))
                return f"# {count} hidden check{'s' if count != 1 else ''} ran here; the lines below say how they went"
            cell.source = HIDDEN.sub(summary, cell.source)
            strip_tracebacks(cell)
        return cell, resources
