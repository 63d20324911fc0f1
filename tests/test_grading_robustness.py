"""The class grader against what students do: one fixture submission per failure kind,
graded in one batch by `rlteach-grade`'s engine, with each score asserted on the
gradebook and the rest of the class graded."""

import json
import sqlite3
import zipfile

import nbformat
import pytest
from nbgrader.api import Gradebook

from rlteach.grading.classroom import grade_class
from tests.nbgrader_course import Course, filled

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]

A = "01_importance_sampling"
FULL = 16
CELLS = 10  # grade cells of exercise 01
TIMEOUT = 3  # the instructor's per-cell timeout for part 1's test cells, set in the source

WRONG_WEIGHTS = "def importance_weights(logp_target, logp_proposal):\n    return (logp_proposal - logp_target).exp()\n"


# An answer that builds, at the top of its cell, a table of the reference's outputs on the
# cases of every seed and group a grade cell might use, then answers from the table.
TABULATES = """
import torch
from rlteach.importance import importance_weights as reference
from rlteach.grading.parts import PARTS
table = {}
try:
    for seed in list(range(10)) + list(range(100, 110)):
        for group in ("random", "edge"):
            for case in PARTS["importance_weights"].cases(seed, group):
                table[tuple(case.args[0].reshape(-1).tolist())] = reference(*case.args)
except BaseException:
    pass

def importance_weights(logp_target, logp_proposal):
    key = tuple(logp_target.cpu().reshape(-1).tolist())
    return table[key].to(logp_target.device) if key in table else (logp_proposal - logp_target).exp()
"""


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
                                                 "    import os, signal\n    os.kill(os.getpid(), signal.SIGSEGV)\n"),
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
        "patch_compare": answer(importance_weights=WRONG_WEIGHTS + "import numpy.testing, torch.testing\n"
                                                   "import rlteach.grading.harness as harness\n"
                                                   "harness.judge = lambda *a, **k: None\n"
                                                   "harness.compare = lambda *a, **k: None\n"
                                                   "torch.testing.assert_close = lambda *a, **k: None\n"
                                                   "numpy.testing.assert_allclose = lambda *a, **k: None\n"),
        "calls_reference": answer(importance_weights="from rlteach.importance import importance_weights\n"),
        "tabulates": answer(importance_weights=TABULATES),
        "reloads": answer(importance_weights="import importlib, rlteach.importance\n"
                                             "fresh = importlib.reload(rlteach.importance).importance_weights\n"
                                             "def importance_weights(logp_target, logp_proposal):\n"
                                             "    return fresh(logp_target, logp_proposal)\n"),
        "untraces": answer(importance_weights="import sys, rlteach.grading.seal as seal\n"
                                              "for attempt in (lambda: sys.settrace(None), lambda: setattr(seal, 'EVENT', 'x')):\n"
                                              "    try:\n        attempt()\n    except BaseException:\n        pass\n"
                                              "from rlteach.importance import importance_weights\n"),
    }
    for student, nb in submissions.items():
        course.submit(student, A, nb)
    corrupt = course.root / "grading" / "submitted" / "corrupt" / A
    corrupt.mkdir(parents=True)
    (corrupt / f"{A}.ipynb").write_text('{"cells": [ {"cell_type": "code", "sour')
    (course.root / "grading" / "submitted" / "empty" / A).mkdir(parents=True)
    results = grade_class(course.root, A, workers=2, progress=False)
    return course, {r.student: r for r in results}


# A wrong answer that happens to be right on 2 of the 7 edge cases of its part: the inverted
# ratio q/p (right when q = p and on an empty batch) and the plain mean of f for weighted IS
# (right for one draw and when q = p). Shares: visible cell 1·(0 + 2/7)/2, hidden cell
# 2·(2/7 + 0)/2, so the part keeps 3/7 of its 3 points.
TWO_EDGE_CASES = 3 / 7


@pytest.mark.parametrize("student, total, part, kept", [
    ("solved", FULL, None, 0),
    ("loops_forever", FULL - 3, "importance_weights", 0),
    ("ignores_interrupt", 0, "importance_weights", 0),  # the kernel no longer answers: the rest is lost too
    ("raises", FULL - 3, "weighted_is", 0),
    ("os_exit", 3, "weighted_is", 0),
    ("segfault", 6, "effective_sample_size", 0),  # dies in its ESS check: parts 1-2 count, 3-5 are lost
    ("memory", FULL - 3, "per_decision_is", 0),
    ("huge_output", FULL, None, 0),
    ("noisy_warnings", FULL, None, 0),
    ("deleted_tests", FULL - 3 + TWO_EDGE_CASES, "importance_weights", TWO_EDGE_CASES),
    ("copied_cell", FULL - 3 + TWO_EDGE_CASES, "weighted_is", TWO_EDGE_CASES),
    ("retagged", FULL - 3, "effective_sample_size", 0),
    ("patch_check", 0, "importance_weights", 0),  # the checker is disabled for every part
    ("patch_compare", FULL - 3 + TWO_EDGE_CASES, "importance_weights", TWO_EDGE_CASES),
    ("calls_reference", FULL - 3, "importance_weights", 0),
    ("tabulates", FULL - 3 + TWO_EDGE_CASES, "importance_weights", TWO_EDGE_CASES),  # the table is empty
    ("reloads", FULL - 3, "importance_weights", 0),
    ("untraces", FULL - 3, "importance_weights", 0),
    ("corrupt", 0, None, 0),
    ("empty", 0, None, 0),
])
def test_each_failure_kind_costs_exactly_its_points(graded, student, total, part, kept):
    course, results = graded
    scores = course.scores(A, student)
    assert scores["total"] == pytest.approx(total, abs=2e-4)
    assert results[student].total == pytest.approx(total, abs=2e-4)
    if part:
        assert scores[f"test_{part}"] + scores[f"hidden_{part}"] == pytest.approx(kept, abs=2e-4)


def test_the_whole_class_is_in_the_gradebook_once(graded):
    course, results = graded
    assert len(results) == 20
    with sqlite3.connect(course.root / "grading" / "gradebook.db") as db:
        rows = db.execute("SELECT count(*), count(DISTINCT student_id) FROM submitted_assignment").fetchone()
        assert rows == (20, 20)
        assert db.execute("SELECT count(*) FROM grade").fetchone()[0] == 20 * CELLS
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
    assert len(hidden) == 11
    feedback = sorted((course.root / "grading" / "feedback").rglob("*.html"))
    assert len(feedback) >= 12
    for path in feedback:
        html = path.read_text()
        assert not any(line in html or line.replace('"', "&quot;") in html for line in hidden), path
        assert "hidden checks ran here" in html
        assert "cdnjs" not in html and '<script src="http' not in html  # opens offline
        assert "<math" in html  # the task's maths, drawn as MathML
    bob = (course.root / "grading" / "feedback" / "deleted_tests" / A / f"{A}.html").read_text()
    assert "hidden_importance_weights" in bob and "ratio inverted" in bob
    assert ">importance_weights() hidden tests</a>" in bob and ">weighted_is() tests</a>" in bob  # the contents name parts


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
    assert [r.total for r in parallel] == pytest.approx([FULL, 0, FULL - 3 + TWO_EDGE_CASES] * 2, abs=2e-4)
    for c in (course, lms_course):
        with sqlite3.connect(c.root / "grading" / "gradebook.db") as db:
            assert db.execute("SELECT count(*) FROM grade").fetchone()[0] == 6 * CELLS
    csv_lines = (lms_course.root / "grading" / f"grades-{A}.csv").read_text().splitlines()
    assert csv_lines[0].startswith("student_id,total,max_score,test_importance_weights")
    assert csv_lines[1].startswith(f"s0,{FULL},{FULL},")


def test_the_command_line_grades_an_lms_folder_into_the_named_gradebook(tmp_path_factory, capsys):
    from rlteach.grading.classroom import main

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
    assert f"{A}: 2 students graded (max {FULL} points)" in out and "not graded fully: 0" in out
    with Gradebook(f"sqlite:///{db}") as gb:
        assert gb.find_submission(A, "ada").score == FULL and gb.find_submission(A, "grace").score == 0
    assert out_csv.read_text().splitlines()[1].startswith(f"ada,{FULL},{FULL},")
    assert main([A, str(course.root / "nowhere"), "--course", str(course.root)]) == 2
    assert "no submissions at" in capsys.readouterr().err
    assert main(["99_missing", "--course", str(course.root)]) == 2
    known = sorted(folder.name for folder in (course.root / "solutions").iterdir() if folder.is_dir())
    assert known[:2] == [A, "02_proximal_operators"]
    assert capsys.readouterr().err == (f"rlteach-grade: no assignment '99_missing' in {course.root / 'solutions'}; "
                                       f"the assignments are: {', '.join(known)}\n")


def test_copies_are_flagged_for_the_instructor_and_cost_no_points(tmp_path_factory, capsys):
    """A renamed copy of the reference and two students sharing an answer are flagged in the
    summary and the CSV; an independent answer is not; nobody loses points for a flag."""
    import inspect
    import re

    from rlteach import importance

    course = Course(tmp_path_factory.mktemp("copies"))
    course.generate(A)
    exercise, solution = course.notebook("exercises", A), course.notebook("solutions", A)
    def renamed(fn):  # the sealed helper _trajectory is copied too: calling it would score zero
        source = re.sub(r'""".*?"""', '"""mine"""', inspect.getsource(fn), flags=re.S)
        return source.replace("_trajectory", "_steps").replace("log_rho", "lr").replace("discounts", "d")

    copied = ("from torch import Tensor\nfrom rlteach._validate import as_tensor, finite_above, no_nan, same_shape\n"
              + renamed(importance._trajectory) + "\n" + renamed(importance.per_decision_is))
    shared = ("def per_decision_is(rewards, logp, logp_behavior, gamma):\n"
              "    out = torch.zeros_like(rewards[0])\n    rho = torch.ones_like(rewards[0])\n"
              "    for t in range(rewards.shape[0]):\n        rho = rho * torch.exp(logp[t] - logp_behavior[t])\n"
              "        out = out + gamma ** t * rho * rewards[t]\n    return out\n")
    independent = ("def per_decision_is(rewards, logp, logp_behavior, gamma):\n"
                   "    ratios = (logp - logp_behavior).exp().cumprod(0)\n"
                   "    g = gamma ** torch.arange(len(rewards), dtype=rewards.dtype, device=rewards.device)\n"
                   "    return torch.einsum('t,tn->n', g, ratios * rewards)\n")
    answers = {"copier": copied, "alice": shared, "bob": shared.replace("out", "total"), "carol": independent}
    for student, source in answers.items():
        course.submit(student, A, filled(exercise, solution, {"per_decision_is": source}))
    results = {r.student: r for r in grade_class(course.root, A, workers=2, progress=True)}
    out = capsys.readouterr().out
    assert {student: r.total for student, r in results.items()} == dict.fromkeys(answers, FULL)
    flagged = sorted(line.strip() for line in out.splitlines() if line.strip().startswith("per_decision_is:"))
    assert [re.sub(r"\d+%", "N%", line) for line in flagged] == [
        "per_decision_is: alice and bob are N% alike", "per_decision_is: copier and the reference are N% alike"]
    rows = (course.root / "grading" / f"grades-{A}.csv").read_text()
    assert "copier and the reference" in rows and "alice and bob" in rows
