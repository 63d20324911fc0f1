"""The nbgrader preprocessors and grade-cell reading, as units (no kernel): an instructor's
unreadable cell is loud, a submission is rebuilt on the release, records are re-judged with
partial credit, tampered records score nothing, and feedback hides hidden tests."""

import os

import nbformat
import pytest
import torch

from rlteach.grading import harness as H
from rlteach.grading import records
from rlteach.grading.autograde import HideHiddenTests, RebuildFromRelease, ValidateGradeCells, judge_cell, notebook_salt
from rlteach.grading.cells import Call, GradeCellError, hidden_count, parse_checks, validate, visible_checks
from rlteach.grading.parts import PARTS

CPU = torch.device("cpu")


def grade_cell(source: str, grade_id: str = "t", points: int = 2) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(source, metadata={"nbgrader": {"grade": True, "solution": False, "locked": True,
                                                                    "grade_id": grade_id, "points": points,
                                                                    "schema_version": 3}})


# ------------------------------------------------------------------------------ reading cells


def test_a_grade_cell_reads_as_its_check_calls():
    source = '"""doc"""\ncheck(f, "weighted_is", seed=3)\n### BEGIN HIDDEN TESTS\ncheck(f, "weighted_is", seed=7, group="edge")\n### END HIDDEN TESTS'
    assert parse_checks(source) == [Call("weighted_is", 3, "random"), Call("weighted_is", 7, "edge")]
    assert visible_checks(source) == [Call("weighted_is", 3, "random")]
    assert hidden_count(source) == 1


@pytest.mark.parametrize("source, message", [
    ("check(f, 'weighted_is'", "syntax error at line 1"),
    ("check(f, name)", "the part's name must be a literal str, got `name`"),
    ("check(f, 'no_such_part')", "no graded part named 'no_such_part'"),
    ("check(f, 'weighted_is', seed=s)", "seed must be a literal int, got `s`"),
    ("check(f, 'weighted_is', seed=True)", "seed must be a literal int"),
    ("check(f, 'weighted_is', group='terminations')", "no case group 'terminations'; groups: random, edge"),
    ("check(f, 'weighted_is', edge=True)", "has no option 'edge' in a grade cell"),
    ('"""only a docstring"""', "a grade cell must call check(...) at least once"),
])
def test_an_unreadable_grade_cell_is_an_instructor_error_naming_the_cell(source, message):
    with pytest.raises(GradeCellError, match="grade cell hidden_x: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_checks(source, "grade cell hidden_x")


def test_validation_lists_every_bad_grade_cell_and_generation_stops():
    nb = nbformat.v4.new_notebook(cells=[grade_cell("check(f, 'weighted_is')", "ok"), grade_cell("pass", "empty"),
                                         grade_cell("check(f, 'nope')", "unknown")])
    problems = validate(nb.cells)
    assert [p.split(":")[0] for p in problems] == ["grade cell empty", "grade cell unknown"]
    with pytest.raises(GradeCellError, match="02_x: grade cell empty: .*; grade cell unknown"):
        ValidateGradeCells().preprocess(nb, {"nbgrader": {"notebook": "02_x"}})


# ------------------------------------------------------------------------------ judging a cell


def saved_check(folder, part: str, seed: int, group: str, answer, salt: str) -> str:
    spec = PARTS[part]
    cases = spec.cases(H.salted(seed, salt), group)
    return str(records.save(folder, part, seed, group, [H.attempt(spec, answer, case, CPU) for case in cases]))


def right(lp, lq):
    return (lp - lq).exp()


def naive(lp, lq):
    return lp.exp() / lq.exp()


def test_a_cell_scores_the_mean_of_its_checks_and_each_check_the_mean_of_its_cases(tmp_path):
    salt = notebook_salt(["source"])
    calls = [Call("importance_weights", 1, "random"), Call("importance_weights", 1, "edge")]
    paths = [saved_check(tmp_path, "importance_weights", 1, "random", naive, salt),
             saved_check(tmp_path, "importance_weights", 1, "edge", naive, salt)]
    lines, shares, tampered = judge_cell(calls, paths, salt)
    assert shares == [1.0, pytest.approx(6 / 7)] and tampered is None
    assert lines[0].startswith("✓ importance_weights(): 3 random cases pass")
    assert lines[1].startswith("✗ importance_weights(): on the edge case 'log-probabilities near -1000' (6 of 7")


def test_records_of_other_checks_or_missing_records_score_zero_and_are_flagged(tmp_path):
    salt = "s"
    calls = [Call("importance_weights", 1, "random"), Call("importance_weights", 2, "edge")]
    swapped = [saved_check(tmp_path, "importance_weights", 2, "edge", right, salt)]
    _, shares, tampered = judge_cell(calls, swapped, salt)
    assert shares == [0.0, 0.0] and "not the ones this cell makes" in tampered
    first_only = [saved_check(tmp_path, "importance_weights", 1, "random", right, salt)]
    lines, shares, tampered = judge_cell(calls, first_only, salt)
    assert shares == [1.0, 0.0] and "1 of 2 checks did not run" in tampered
    lines, shares, tampered = judge_cell(calls, first_only, salt, {"ename": "NameError", "evalue": "name 'f' is not defined"})
    assert shares == [1.0, 0.0] and tampered is None and lines[1] == "✗ importance_weights(): NameError: name 'f' is not defined"
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a record")
    _, shares, tampered = judge_cell(calls, [str(garbage)], salt)
    assert shares == [0.0, 0.0] and "unreadable" in tampered


def test_outcomes_recorded_under_another_salt_do_not_match_the_grader_s_cases(tmp_path):
    """A table of outputs on unsalted (visible) seeds is worth nothing under grading."""
    spec = PARTS["importance_weights"]
    cases = spec.cases(1, "random")  # what a student could reproduce at home
    outcomes = [records.Outcome(H.observe(spec, right, *case.arguments(CPU))) for case in cases]
    path = records.save(tmp_path, "importance_weights", 1, "random", outcomes)
    _, shares, _ = judge_cell([Call("importance_weights", 1, "random")], [str(path)], "pepper")
    assert shares == [0.0]


def test_the_salt_is_deterministic_and_depends_on_the_hidden_sources():
    assert notebook_salt(["a", "b"]) == notebook_salt(["a", "b"]) != notebook_salt(["a", "b2"])
    assert H.salted(5, "") == 5 and H.salted(5, "x") == H.salted(5, "x") != H.salted(6, "x")


def test_records_round_trip_nested_outputs_and_carry_no_code(tmp_path):
    observed = {"result": (torch.ones(2), {"kl": torch.tensor(0.5), "steps": 3, "name": "x"}, None),
                "gradients": {"logp": torch.zeros(3)}}
    path = records.save(tmp_path, "p", 1, "edge", [records.Outcome(observed), records.Outcome(error="boom", refused=("r",)),
                                                   records.Outcome({"result": object()})])
    part, seed, group, (first, second, third) = records.load(path)
    assert (part, seed, group) == ("p", 1, "edge")
    assert torch.equal(first.observed["result"][0], torch.ones(2)) and first.observed["result"][1]["steps"] == 3
    assert second.error == "boom" and second.refused == ("r",)
    assert repr(third.observed["result"]) == "<a object>"


# ------------------------------------------------------------------------------ rebuilding and feedback


def test_a_submission_is_rebuilt_on_the_release_keeping_only_answers(tmp_path):
    release = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("def f(): raise NotImplementedError()", metadata={"nbgrader": {
            "grade": False, "solution": True, "grade_id": "f", "locked": False, "schema_version": 3}}),
        grade_cell("check(f, 'weighted_is')", "test_f", 1)])
    folder = tmp_path / "exercises" / "a"
    folder.mkdir(parents=True)
    nbformat.write(release, folder / "n.ipynb")
    submitted = nbformat.from_dict(nbformat.reads(nbformat.writes(release), as_version=4))
    submitted.cells[0].source = "def f(): return 1"
    submitted.cells[1].source = "pass  # the student emptied the test"
    submitted.cells[1].metadata["nbgrader"]["points"] = 100
    submitted.cells.insert(1, nbformat.v4.new_code_cell("x = 2"))
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(tmp_path)
    config.CourseDirectory.release_directory = "exercises"
    nb, _ = RebuildFromRelease(config=config).preprocess(submitted, {"nbgrader": {"assignment": "a", "notebook": "n"}})
    assert [c.source for c in nb.cells] == ["def f(): return 1", "x = 2", "check(f, 'weighted_is')"]
    assert nb.cells[2].metadata["nbgrader"]["points"] == 1


def test_feedback_shows_a_count_of_hidden_checks_never_their_code():
    cell = grade_cell('check(f, "weighted_is", seed=1)\n### BEGIN HIDDEN TESTS\ncheck(f, "weighted_is", seed=99)\n'
                      'check(f, "weighted_is", seed=98, group="edge")\n### END HIDDEN TESTS')
    cell.outputs = [nbformat.v4.new_output("error", ename="E", evalue="v", traceback=["frame with seed=99"])]
    cell, _ = HideHiddenTests().preprocess_cell(cell, {}, 0)
    assert "seed=99" not in cell.source and "2 hidden checks ran here" in cell.source
    assert cell.outputs[0]["traceback"] == ["E: v"]


def test_the_dump_variable_is_where_check_records_under_grading(monkeypatch, tmp_path):
    monkeypatch.setattr(H, "grading_salt", lambda: "pepper")
    monkeypatch.setenv(records.DUMP_ENV, str(tmp_path))
    H.check(right, "importance_weights", seed=1)  # records, never raises under grading
    H.check(naive, "importance_weights", seed=1, group="edge")
    (first, second) = sorted(os.listdir(tmp_path))
    assert records.load(tmp_path / first)[:3] == ("importance_weights", 1, "random")
    assert records.load(tmp_path / second)[:3] == ("importance_weights", 1, "edge")


def test_without_bubblewrap_grading_stops_naming_the_package(monkeypatch, tmp_path):
    """Where bwrap cannot run, the sandbox says what to install; it never falls back silently."""
    from rlteach.grading import sandbox
    from rlteach.grading.classroom import grade_class

    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    reason = sandbox.unavailable()
    assert "bubblewrap (bwrap) is not installed" in reason and "apt-get install bubblewrap" in reason
    assert "--unsafe-no-sandbox" in reason
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\n")
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install bubblewrap"):
        grade_class(tmp_path, "01_importance_sampling", progress=False)
