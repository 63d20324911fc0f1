"""The class grader against what students do: one fixture submission per failure kind,
graded in one batch by `rlteach-grade`'s engine, with each score asserted on the
gradebook and the rest of the class graded."""

import json
import sqlite3
import zipfile

import nbformat
import pytest
from nbgrader.api import Gradebook

from rlteach.classroom import grade_class
from tests.nbgrader_course import Course, filled

pytestmark = pytest.mark.notebooks

A = "01_importance_sampling"
FULL = 12
TIMEOUT = 3  # the instructor's per-cell timeout for part 1's test cells, set in the source

WRONG_WEIGHTS = "def importance_weights(logp_target, logp_proposal):\n    return (logp_proposal - logp_target).exp()\n"


def answers_with(**changes: str) -> dict[str, str]:
    return changes


def with_cells(nb, edit):
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    nb.cells = edit(nb.cells)
    return nb


def grade_id(cell):
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = Course(tmp_path_factory.mktemp("class"))
    source = course.root / "solutions" / A / f"{A}.ipynb"
    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells:
        if grade_id(cell) in ("test_importance_weights", "hidden_importance_weights"):
            cell.metadata["rlteach"] = {"timeout": TIMEOUT}
    nbformat.write(nb, source)
    with open(course.root / "nbgrader_config.py", "a") as config:
        config.write("\nc.GuardedExecute.memory_limit_gb = 4.0\n")
    course.generate(A)
    exercise, solution = course.notebook("exercises", A), course.notebook("solutions", A)

    def answer(**changes):
        return filled(exercise, solution, changes)

    loop = answer(importance_weights="def importance_weights(logp_target, logp_proposal):\n    while True:\n        pass\n")
    for cell in loop.cells:
        cell.metadata["rlteach"] = {"timeout": 1000}  # the student's own metadata is ignored
    tampered_flags = answer(effective_sample_size="def effective_sample_size(logp_target, logp_proposal):\n    return torch.ones(logp_target.shape[:-1])\n")
    for cell in tampered_flags.cells:
        if grade_id(cell) in ("test_effective_sample_size", "hidden_effective_sample_size"):
            cell.metadata["tags"] = ["skip-execution"]
            cell.metadata["nbgrader"].update(grade=False, solution=True, points=100)
    copied = answer(weighted_is="def weighted_is(fx, logp_target, logp_proposal):\n    return fx.mean(-1)\n")
    real = next(c for c in copied.cells if grade_id(c) == "test_weighted_is")
    fake = nbformat.from_dict(json.loads(json.dumps(real)))
    fake.source, fake.id = "pass", "fake-test"
    copied.cells.insert(copied.cells.index(real), fake)
    submissions = {
        "solved": answer(),
        "loops_forever": loop,
        "ignores_interrupt": answer(importance_weights="import signal\n"
                                                       "def importance_weights(logp_target, logp_proposal):\n"
                                                       "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                                       "    while True:\n        pass\n"),
        "raises": answer(weighted_is="def weighted_is(fx, logp_target, logp_proposal):\n    raise ValueError('nope')\n"),
        "os_exit": answer(weighted_is="import os\nos._exit(3)\n"),
        "segfault": answer(effective_sample_size="def effective_sample_size(logp_target, logp_proposal):\n"
                                                 "    import ctypes\n    return ctypes.string_at(0)\n"),
        "memory": answer(per_decision_is="def per_decision_is(rewards, logp, logp_behavior, gamma):\n"
                                         "    blocks = []\n    while True:\n        blocks.append(bytearray(2**28))\n"),
        "huge_output": answer(importance_weights="print('x' * 5_000_000)\n"
                                                 "def importance_weights(logp_target, logp_proposal):\n"
                                                 "    print('y' * 100_000)\n    return (logp_target - logp_proposal).exp()\n"),
        "noisy_warnings": answer(importance_weights="import os, sys, warnings\n"
                                                    "def importance_weights(logp_target, logp_proposal):\n"
                                                    "    warnings.warn('careful', RuntimeWarning)\n"
                                                    "    print('to stderr', file=sys.stderr)\n    os.write(2, b'fd 2\\n')\n"
                                                    "    return (logp_target - logp_proposal).exp()\n"),
        "deleted_tests": with_cells(answer(importance_weights=WRONG_WEIGHTS), lambda cells: [
            c for c in cells if grade_id(c) not in ("test_importance_weights", "hidden_importance_weights")]),
        "copied_cell": copied,
        "retagged": tampered_flags,
        "patch_check": answer(importance_weights=WRONG_WEIGHTS + "import rlteach.grading\n"
                                                 "rlteach.grading.check = lambda *a, **k: None\ncheck = rlteach.grading.check\n"),
        "patch_compare": answer(importance_weights=WRONG_WEIGHTS + "import numpy.testing, torch.testing, rlteach.grading\n"
                                                   "rlteach.grading.verdict = lambda *a, **k: None\n"
                                                   "rlteach.grading.compare = lambda *a, **k: None\n"
                                                   "torch.testing.assert_close = lambda *a, **k: None\n"
                                                   "numpy.testing.assert_allclose = lambda *a, **k: None\n"),
        "calls_reference": answer(importance_weights="from rlteach.importance import importance_weights\n"),
    }
    for student, nb in submissions.items():
        course.submit(student, A, nb)
    corrupt = course.root / "grading" / "submitted" / "corrupt" / A
    corrupt.mkdir(parents=True)
    (corrupt / f"{A}.ipynb").write_text('{"cells": [ {"cell_type": "code", "sour')
    (course.root / "grading" / "submitted" / "empty" / A).mkdir(parents=True)
    results = grade_class(course.root, A, workers=2, progress=False)
    return course, {r.student: r for r in results}


@pytest.mark.parametrize("student, total, part", [
    ("solved", FULL, None),
    ("loops_forever", FULL - 3, "importance_weights"),
    ("ignores_interrupt", 0, "importance_weights"),  # the kernel no longer answers: the rest is lost too
    ("raises", FULL - 3, "weighted_is"),
    ("os_exit", 3, "weighted_is"),
    ("segfault", 6, "effective_sample_size"),
    ("memory", FULL - 3, "per_decision_is"),
    ("huge_output", FULL, None),
    ("noisy_warnings", FULL, None),
    ("deleted_tests", FULL - 3, "importance_weights"),
    ("copied_cell", FULL - 3, "weighted_is"),
    ("retagged", FULL - 3, "effective_sample_size"),
    ("patch_check", 0, "importance_weights"),  # the checker is disabled for every part
    ("patch_compare", FULL - 3, "importance_weights"),
    ("calls_reference", FULL - 3, "importance_weights"),
    ("corrupt", 0, None),
    ("empty", 0, None),
])
def test_each_failure_kind_costs_exactly_its_points(graded, student, total, part):
    course, results = graded
    scores = course.scores(A, student)
    assert scores["total"] == total == results[student].total
    if part:
        assert scores[f"test_{part}"] == scores[f"hidden_{part}"] == 0


def test_the_whole_class_is_in_the_gradebook_once(graded):
    course, results = graded
    assert len(results) == 17
    with sqlite3.connect(course.root / "grading" / "gradebook.db") as db:
        rows = db.execute("SELECT count(*), count(DISTINCT student_id) FROM submitted_assignment").fetchone()
        assert rows == (17, 17)
        assert db.execute("SELECT count(*) FROM grade").fetchone()[0] == 17 * 8
    with Gradebook(course.db_url) as gb:
        assert gb.find_assignment(A).max_score == FULL


def test_problems_are_reported_with_their_reason(graded):
    _, results = graded
    reasons = {student: " | ".join(r.problems) for student, r in results.items()}
    assert f"ran out of time ({TIMEOUT} s)" in reasons["loops_forever"]
    assert "kernel died" in reasons["os_exit"] and "kernel died" in reasons["segfault"]
    assert "kernel stopped answering" in reasons["ignores_interrupt"]
    assert "not a readable notebook" in reasons["corrupt"]
    assert reasons["empty"] == "no notebook submitted"
    assert "checker was replaced or disabled" in reasons["patch_check"]
    assert reasons["solved"] == reasons["noisy_warnings"] == reasons["huge_output"] == ""


def test_kernel_death_is_explained_in_the_feedback(graded):
    course, _ = graded
    html = (course.root / "grading" / "feedback" / "os_exit" / A / f"{A}.html").read_text()
    assert "KernelDied" in html and "the remaining parts score zero" in html


def test_huge_output_is_cut_in_the_graded_notebook(graded):
    course, _ = graded
    assert (course.root / "grading" / "autograded" / "huge_output" / A / f"{A}.ipynb").stat().st_size < 500_000


def test_feedback_never_contains_hidden_test_code(graded):
    course, results = graded
    hidden = [line.strip() for cell in course.notebook("solutions", A).cells
              for line in cell.source.split("### BEGIN HIDDEN TESTS")[-1].split("### END HIDDEN TESTS")[0].splitlines()
              if "### BEGIN HIDDEN TESTS" in cell.source and line.strip()]
    assert len(hidden) == 8
    feedback = sorted((course.root / "grading" / "feedback").rglob("*.html"))
    assert len(feedback) >= 12
    for path in feedback:
        html = path.read_text()
        assert not any(line in html or line.replace('"', "&quot;") in html for line in hidden), path
        assert "hidden checks ran here" in html
    bob = (course.root / "grading" / "feedback" / "deleted_tests" / A / f"{A}.html").read_text()
    assert "hidden_importance_weights" in bob and "ratio inverted" in bob


def test_parallel_and_sequential_runs_agree_and_lms_zips_are_collected(tmp_path_factory):
    course = Course(tmp_path_factory.mktemp("parallel"))
    course.generate(A)
    exercise, solution = course.notebook("exercises", A), course.notebook("solutions", A)
    variants = [filled(exercise, solution), exercise, filled(exercise, solution, {"importance_weights": WRONG_WEIGHTS})]
    lms = course.root / "lms.zip"
    with zipfile.ZipFile(lms, "w") as archive:
        for i in range(6):
            nb = variants[i % 3]
            course.submit(f"s{i}", A, nb)
            archive.writestr(f"s{i}_{A}_attempt1.ipynb", nbformat.writes(nb))
    sequential = grade_class(course.root, A, workers=1, progress=False)
    lms_course = Course(tmp_path_factory.mktemp("lms"))
    parallel = grade_class(lms_course.root, A, submissions=lms, workers=2, progress=False)
    assert [(r.student, r.scores) for r in sequential] == [(r.student, r.scores) for r in parallel]
    assert [r.total for r in parallel] == [12, 0, 9, 12, 0, 9]
    for c in (course, lms_course):
        with sqlite3.connect(c.root / "grading" / "gradebook.db") as db:
            assert db.execute("SELECT count(*) FROM grade").fetchone()[0] == 6 * 8
    csv_lines = (lms_course.root / "grading" / f"grades-{A}.csv").read_text().splitlines()
    assert csv_lines[0].startswith("student_id,total,max_score,test_importance_weights")
    assert csv_lines[1].startswith("s0,12,12,")


def test_the_command_line_grades_an_lms_folder_into_the_named_gradebook(tmp_path_factory, capsys):
    from rlteach.classroom import main

    course = Course(tmp_path_factory.mktemp("cli"))
    course.generate(A)
    exercise, solution = course.notebook("exercises", A), course.notebook("solutions", A)
    lms = course.root / "downloads"
    lms.mkdir()
    nbformat.write(filled(exercise, solution), lms / f"ada_{A}.ipynb")
    nbformat.write(exercise, lms / "grace_late submission.ipynb")
    db = course.root / "other.db"
    out_csv = course.root / "grades.csv"
    assert main([A, str(lms), "--course", str(course.root), "--db", f"sqlite:///{db}", "--workers", "2",
                 "--csv", str(out_csv)]) == 0
    out = capsys.readouterr().out
    assert f"{A}: 2 students graded (max 12 points)" in out and "not graded fully: 0" in out
    with Gradebook(f"sqlite:///{db}") as gb:
        assert gb.find_submission(A, "ada").score == 12 and gb.find_submission(A, "grace").score == 0
    assert out_csv.read_text().splitlines()[1].startswith("ada,12,12,")
    assert main([A, str(course.root / "nowhere"), "--course", str(course.root)]) == 2
    assert "no submissions at" in capsys.readouterr().err
