"""Grade a whole class: ``rlteach-grade ASSIGNMENT [SUBMISSIONS]``.

Takes nbgrader's ``submitted/<student>/<assignment>/`` layout, or an LMS-style zip or
folder of notebooks named by student, and produces the gradebook (SQLite by default, any
SQLAlchemy URL with ``--db``), per-student feedback HTML and a CSV of grades.

Each submission is autograded in a worker process, in a private copy of the course with
its own SQLite gradebook made from a template; the parent process alone writes the class
gradebook, one submission at a time, so parallel and sequential runs give the same rows.
A submission that cannot be graded (corrupt file, empty folder, a crash of nbgrader
itself) scores zero with its reason; the rest of the class is graded regardless.

After grading, every answer is compared with its part's reference and with the other
students' answers (:mod:`rlteach.grading.similarity`): close pairs and tampering signs are
flagged in the summary and the CSV for the instructor to judge; they never cost points.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import nbformat
from tqdm import tqdm

from rlteach.grading.cells import is_grade_cell, parse_checks

# nbgrader's gradebook code trips SQLAlchemy's autoflush notes; they say nothing to an instructor.
warnings.filterwarnings("ignore", message="Object of type .* not in session", module="nbgrader")

CONFIG = "nbgrader_config.py"
UNSANDBOXED = "graded without the sandbox (--unsafe-no-sandbox): student code could read the course and use the network"
DEFAULT_NAME_PATTERN = r"^(?P<student_id>[A-Za-z0-9][A-Za-z0-9.@-]*?)(?:[_ ].*)?\.ipynb$"


@dataclass
class Result:
    """The outcome of one submission: points per grade cell, why it could not be graded
    fully (``problems``), which checks failed, its answers' sources, and what the
    similarity pass flagged for the instructor."""

    student: str
    scores: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(self.scores.values())


def _config(root: Path, db_url: str | None = None):
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader(CONFIG, path=str(root)).load_config()
    if db_url:
        config.CourseDirectory.db_url = db_url
    return config


def _api(root: Path, db_url: str | None = None, **course):
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    config = _config(root, db_url)
    for key, value in course.items():
        setattr(config.CourseDirectory, key, value)
    return NbGraderAPI(CourseDirectory(config=config), config=config)


def _ok(result: dict, what: str) -> None:
    if not result.get("success"):
        raise RuntimeError(f"{what} failed:\n{result.get('error') or result.get('log')}")


def collect(source: Path, submitted: Path, assignment: str, notebook_names: list[str], scratch: Path,
            name_pattern: str = DEFAULT_NAME_PATTERN) -> list[str]:
    """Copy submissions from ``source`` into nbgrader's ``submitted`` folder; return the students.

    ``source`` is nbgrader's layout (``<student>/<assignment>/...``), or a zip or folder of
    notebooks whose file names start with the student id (``name_pattern``'s
    ``student_id`` group; e.g. ``alice_01_importance_sampling.ipynb``). An assignment with
    one notebook takes each student's notebook under that notebook's name. A zip is
    unpacked into ``scratch``.
    """
    if source.resolve() == submitted.resolve():
        return sorted(p.name for p in submitted.iterdir() if p.is_dir() and (p / assignment).is_dir())
    if source.is_file() and zipfile.is_zipfile(source):
        unpacked = Path(tempfile.mkdtemp(prefix="lms-", dir=scratch))
        with zipfile.ZipFile(source) as archive:
            for member in archive.infolist():
                target = (unpacked / member.filename).resolve()
                if unpacked.resolve() in target.parents and not member.is_dir():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.read(member))
        source = unpacked
    if not source.is_dir():
        raise FileNotFoundError(f"no submissions at {source}: expected a folder or a zip file")
    students = []
    nested = [p for p in source.iterdir() if p.is_dir() and (p / assignment).is_dir()]
    if nested:
        for folder in nested:
            shutil.copytree(folder / assignment, submitted / folder.name / assignment, dirs_exist_ok=True)
            students.append(folder.name)
        return sorted(students)
    pattern = re.compile(name_pattern)
    for path in sorted(source.rglob("*.ipynb")):
        match = pattern.match(path.name)
        if not match or ".ipynb_checkpoints" in path.parts:
            continue
        student = match.group("student_id")
        target = submitted / student / assignment
        target.mkdir(parents=True, exist_ok=True)
        name = next((n for n in notebook_names if n in path.stem), notebook_names[0] if len(notebook_names) == 1 else None)
        if name:
            shutil.copy(path, target / f"{name}.ipynb")
            students.append(student)
    return sorted(set(students))


def prepare_template(root: Path, assignment: str, workdir: Path, sandboxed: bool = True) -> Path:
    """A private course with the assignment generated into its own SQLite gradebook."""
    template = workdir / "template"
    (template / "solutions").mkdir(parents=True)
    shutil.copy(root / CONFIG, template / CONFIG)
    if not sandboxed:
        with open(template / CONFIG, "a") as config:
            config.write("\nc.GuardedExecute.sandbox = False  # rlteach-grade --unsafe-no-sandbox\n")
    shutil.copytree(root / "solutions" / assignment, template / "solutions" / assignment)
    _ok(_api(template).generate_assignment(assignment, force=True, create=True), "generate_assignment")
    return template


def grade_one(template: str, assignment: str, student: str, submission: str,
              notebooks: list[str], max_scores: dict[str, float]) -> tuple[Result, str]:
    """Autograde one submission in a private copy of ``template``; returns its result (points
    per grade cell of ``max_scores``, zero where not earned) and the folder that holds its
    autograded notebook and feedback."""
    from nbgrader.api import Gradebook

    work = Path(tempfile.mkdtemp(prefix=f"rlteach-grade-{student}-"))
    template_path = Path(template)
    shutil.copy(template_path / CONFIG, work / CONFIG)
    for folder in ("solutions", "exercises"):
        (work / folder).symlink_to(template_path / folder, target_is_directory=True)
    (work / "grading").mkdir()
    shutil.copy(template_path / "grading" / "gradebook.db", work / "grading" / "gradebook.db")
    target = work / "grading" / "submitted" / student / assignment
    shutil.copytree(submission, target)
    result = Result(student, {name: 0.0 for name in max_scores})
    submitted = [name for name in notebooks if (target / f"{name}.ipynb").is_file()]
    if not submitted:
        result.problems.append("no notebook submitted" if not any(target.iterdir()) else
                               f"none of the expected notebooks ({', '.join(notebooks)}) was submitted")
        return result, str(work)
    result.problems.extend(f"notebook {name}.ipynb missing" for name in notebooks if name not in submitted)
    readable = []
    for name in submitted:
        try:
            nbformat.read(target / f"{name}.ipynb", as_version=4)
            readable.append(name)
        except Exception as err:
            (target / f"{name}.ipynb").unlink()
            result.problems.append(f"{name}.ipynb is not a readable notebook ({type(err).__name__}: {str(err)[:120]})")
    if not readable:
        return result, str(work)
    api = _api(work)
    graded = api.autograde(assignment, student, force=True, create=True)
    if not graded.get("success"):
        result.problems.append(_first_error(graded))
    try:
        with Gradebook(api.coursedir.db_url) as gb:
            for nb in gb.find_submission(assignment, student).notebooks:
                for grade in nb.grades:
                    result.scores[grade.cell.name] = float(grade.score or 0.0)
    except Exception as err:  # nbgrader could not even record the submission
        result.problems.append(f"no grades recorded ({type(err).__name__}: {err})")
    for name in readable:
        path = work / "grading" / "autograded" / student / assignment / f"{name}.ipynb"
        if path.is_file():
            graded_nb = nbformat.read(path, as_version=4)
            incidents = graded_nb.metadata.get("rlteach", {}).get("incidents", [])
            result.problems.extend(f"{name}: {incident}" for incident in incidents)
            _read_graded(graded_nb, result)
    if graded.get("success"):
        feedback = api.generate_feedback(assignment, student, force=True)
        if not feedback.get("success"):
            result.problems.append("feedback could not be generated: " + _first_error(feedback))
    return result, str(work)


def _read_graded(nb: nbformat.NotebookNode, result: Result) -> None:
    """The answers' sources and the failed checks (the grader's ✗ lines) of a graded notebook."""
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            result.answers[meta.get("grade_id", "?")] = cell.source
        elif is_grade_cell(cell):
            for output in cell.get("outputs", []):
                for line in output.get("text", "").splitlines():
                    if line.startswith("✗ "):
                        result.failed.append(f"{meta.get('grade_id', '?')}: {line[2:].split(';')[0][:160]}")


def answer_references(source_nb: nbformat.NotebookNode) -> dict[str, list[str]]:
    """``{answer cell: sources of the references its parts seal}``: an answer cell's parts
    are those checked by the grade cells that follow it, up to the next answer cell."""
    from rlteach.grading.parts import get_part
    from rlteach.grading.similarity import reference_source

    references: dict[str, list[str]] = {}
    current = None
    for cell in source_nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            current = meta.get("grade_id")
            references.setdefault(current, [])
        elif current and is_grade_cell(cell):
            for call in parse_checks(cell.source, meta.get("grade_id", "?")):
                for fn in get_part(call.part).sealed:
                    source = reference_source(fn)
                    if source not in references[current]:
                        references[current].append(source)
    return references


def flag_copies(root: Path, assignment: str, results: list[Result]) -> list[str]:
    """Similarity flags and tampering signs for the class, written into each result."""
    from rlteach.grading.similarity import compare_class, tampering_signs

    references: dict[str, list[str]] = {}
    for path in sorted((root / "solutions" / assignment).glob("*.ipynb")):
        references.update(answer_references(nbformat.read(path, as_version=4)))
    by_student = {r.student: r for r in results}
    lines = []
    for flag in compare_class({r.student: r.answers for r in results}, references):
        by_student[flag.student].flags.append(str(flag))
        if flag.other in by_student:
            by_student[flag.other].flags.append(str(flag))
        lines.append(str(flag))
    for result in results:
        for cell, source in result.answers.items():
            signs = tampering_signs(source)
            if signs:
                note = f"{cell}: tampering signs ({', '.join(signs)})"
                result.flags.append(note)
                lines.append(f"{result.student}: {note}")
    return lines


def _first_error(result: dict) -> str:
    text = (result.get("error") or "") + "\n" + (result.get("log") or "")
    for line in text.splitlines():
        if any(word in line for word in ("Error", "error", "Exception")) and "Traceback" not in line:
            return line.strip()[:300]
    return "nbgrader could not grade this submission"


def record(db_url: str, assignment: str, result: Result) -> None:
    """Write one student's grades into the class gradebook (the only writer)."""
    import warnings

    from nbgrader.api import Gradebook

    with warnings.catch_warnings(), Gradebook(db_url) as gb:
        warnings.simplefilter("ignore")  # SQLAlchemy's autoflush notes from nbgrader's own code
        gb.update_or_create_student(result.student)
        submission = gb.update_or_create_submission(assignment, result.student)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                grade.auto_score = result.scores.get(grade.cell.name, 0.0)
                grade.needs_manual_grade = False
        gb.db.commit()


def write_csv(path: Path, results: list[Result], max_scores: dict[str, float]) -> None:
    """One row per student: total, maximum, points per grade cell, then what could not be
    graded, the checks that failed, and the flags for the instructor (no points)."""
    parts = list(max_scores)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student_id", "total", "max_score", *parts, "not_graded", "failed_checks", "flags"])
        total_max = sum(max_scores.values())
        for result in sorted(results, key=lambda r: r.student):
            writer.writerow([result.student, f"{result.total:g}", f"{total_max:g}",
                             *(f"{result.scores.get(p, 0.0):g}" for p in parts), "; ".join(result.problems),
                             "; ".join(result.failed), "; ".join(result.flags)])


def grade_class(root: Path, assignment: str, submissions: Path | None = None, db_url: str | None = None,
                workers: int | None = None, csv_path: Path | None = None, name_pattern: str = DEFAULT_NAME_PATTERN,
                progress: bool = True, sandboxed: bool | None = None) -> list[Result]:
    """Grade every submission of ``assignment``; see the module docstring. ``sandboxed=False``
    grades without isolation (and says so in the summary and in every CSV row); ``None``
    follows the course's ``c.GuardedExecute.sandbox`` (on unless the instructor turned it off)."""
    from nbgrader.api import Gradebook

    from rlteach.grading.sandbox import SandboxUnavailable, unavailable

    if sandboxed is None:
        sandboxed = bool(_config(root.resolve()).GuardedExecute.get("sandbox", True))
    if sandboxed and (reason := unavailable()):
        raise SandboxUnavailable(reason)

    bin_dir = str(Path(sys.executable).parent)  # nbgrader shells out to alembic, which lives beside python
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    root = root.resolve()
    api = _api(root, db_url)
    coursedir = api.coursedir
    sources = root / coursedir.source_directory
    known = sorted(p.name for p in sources.iterdir() if p.is_dir() and not p.name.startswith(".")) if sources.is_dir() else []
    if assignment not in known:
        raise FileNotFoundError(f"no assignment {assignment!r} in {sources}; the assignments are: {', '.join(known) or 'none'}")
    submitted = Path(coursedir.format_path(coursedir.submitted_directory, ".", ".")).resolve()
    submitted.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="rlteach-class-"))
    try:
        template = prepare_template(root, assignment, workdir, sandboxed)
        release = Path(tempfile.mkdtemp(prefix="rlteach-release-", dir=workdir))
        master = _api(root, db_url, release_directory=str(release))
        _ok(master.generate_assignment(assignment, force=True, create=True), "generate_assignment (class gradebook)")
        with Gradebook(coursedir.db_url) as gb:
            notebooks = gb.find_assignment(assignment).notebooks
            names = [nb.name for nb in notebooks]
            max_scores = {cell.name: cell.max_score for nb in notebooks for cell in nb.grade_cells}
        students = collect(submissions or submitted, submitted, assignment, names, workdir, name_pattern)
        results: list[Result] = []
        workers = max(1, workers or os.cpu_count() or 1)
        context = get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(grade_one, str(template), assignment, s, str(submitted / s / assignment),
                                   names, max_scores): s for s in students}
            for future in tqdm(as_completed(futures), total=len(futures), desc=f"grading {assignment}",
                               unit="submission", disable=not progress, file=sys.stderr):
                student = futures[future]
                try:
                    result, work = future.result()
                except Exception as err:  # a worker crashed: this student only
                    result, work = Result(student, {n: 0.0 for n in max_scores}, [f"grader crashed: {err}"]), None
                if work:
                    for step in ("autograded", "feedback"):
                        src = Path(work) / "grading" / step / student / assignment
                        if src.is_dir():
                            dst = Path(coursedir.format_path(getattr(coursedir, f"{step}_directory"), student, assignment))
                            shutil.rmtree(dst, ignore_errors=True)
                            shutil.copytree(src, dst)
                    shutil.rmtree(work, ignore_errors=True)
                record(coursedir.db_url, assignment, result)
                results.append(result)
        flags = flag_copies(root, assignment, results)
        if not sandboxed:
            for result in results:
                result.flags.insert(0, UNSANDBOXED)
            flags.insert(0, f"WARNING: {UNSANDBOXED}")
        csv_path = csv_path or submitted.parent / f"grades-{assignment}.csv"
        write_csv(csv_path, results, max_scores)
        if progress:
            print(summary(assignment, results, max_scores, csv_path, coursedir.db_url, flags))
        return sorted(results, key=lambda r: r.student)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def summary(assignment: str, results: list[Result], max_scores: dict[str, float], csv_path: Path, db_url: str,
            flags: Sequence[str] = ()) -> str:
    """The closing report: totals, per-part means, every submission not fully graded, and
    the similarity and tampering flags."""
    total_max = sum(max_scores.values())
    lines = [f"\n{assignment}: {len(results)} students graded (max {total_max:g} points)"]
    if results:
        totals = sorted(r.total for r in results)
        lines.append(f"  total: mean {sum(totals) / len(totals):.2f}, min {totals[0]:g}, max {totals[-1]:g}")
        width = max(len(p) for p in max_scores)
        for part, points in max_scores.items():
            mean = sum(r.scores.get(part, 0.0) for r in results) / len(results)
            lines.append(f"  {part:<{width}}  mean {mean:5.2f} / {points:g}")
    trouble = [r for r in results if r.problems]
    lines.append(f"  not graded fully: {len(trouble)}")
    for result in sorted(trouble, key=lambda r: r.student):
        for problem in result.problems:
            lines.append(f"    {result.student}: {problem}")
    lines.append(f"  flagged for you to judge (no points taken): {len(flags)}")
    lines.extend(f"    {flag}" for flag in flags)
    lines.append(f"  gradebook: {db_url}\n  grades CSV: {csv_path}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rlteach-grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("assignment", help="e.g. 01_importance_sampling")
    parser.add_argument("submissions", nargs="?", type=Path,
                        help="nbgrader submitted/ layout, or an LMS zip/folder of notebooks named by student "
                             "(default: the course's grading/submitted)")
    parser.add_argument("--course", type=Path, default=Path.cwd(), help="folder with nbgrader_config.py (default: .)")
    parser.add_argument("--db", help="SQLAlchemy URL of the gradebook (default: the course's SQLite file)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="parallel workers (default: cores)")
    parser.add_argument("--csv", type=Path, help="where to write the grades CSV")
    parser.add_argument("--name-pattern", default=DEFAULT_NAME_PATTERN,
                        help="regex with a student_id group, matched against LMS file names")
    parser.add_argument("--unsafe-no-sandbox", action="store_true",
                        help="grade without bubblewrap (student code then sees your files and the network)")
    args = parser.parse_args(argv)
    if not (args.course / CONFIG).is_file():
        parser.error(f"{args.course / CONFIG} not found: run from the course folder or pass --course")
    try:
        grade_class(args.course, args.assignment, args.submissions, args.db, args.workers, args.csv, args.name_pattern,
                    sandboxed=False if args.unsafe_no_sandbox else None)
    except (FileNotFoundError, RuntimeError) as err:
        print(f"rlteach-grade: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
