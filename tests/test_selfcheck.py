"""rlteach-check: a student's check before handing in, with an exit code that means something."""


import nbformat
import pytest

from rlteach.grading.selfcheck import main
from tests.nbgrader_course import ROOT, filled

pytestmark = pytest.mark.notebooks
A = "01_importance_sampling"


def notebooks():
    exercise = nbformat.read(ROOT / "exercises" / A / f"{A}.ipynb", as_version=4)
    solution = nbformat.read(ROOT / "solutions" / A / f"{A}.ipynb", as_version=4)
    return exercise, solution


def test_an_untouched_exercise_fails_every_visible_test(tmp_path, capsys):
    exercise, _ = notebooks()
    path = tmp_path / f"{A}.ipynb"
    nbformat.write(exercise, path)
    before = path.read_bytes()
    assert main([str(path)]) == 1
    out = capsys.readouterr().out
    assert out.count("✗ test_") == 5 and out.count("· hidden_") == 5
    assert "0 of 5 visible tests pass" in out and "not implemented yet" in out
    assert path.read_bytes() == before


def test_a_partly_done_exercise_names_the_failing_part(tmp_path, capsys):
    exercise, solution = notebooks()
    nb = filled(exercise, solution, {"weighted_is": "def weighted_is(fx, logp_target, logp_proposal):\n    return fx.mean(-1)\n"})
    path = tmp_path / f"{A}.ipynb"
    nbformat.write(nb, path)
    assert main([str(path)]) == 1
    out = capsys.readouterr().out
    assert "✓ test_importance_weights: passed" in out
    assert "✗ test_weighted_is: failed - CheckFailed: weighted_is(): on the random case" in out
    assert "ignored the weights" in out and "4 of 5 visible tests pass" in out


def test_a_finished_exercise_passes(tmp_path, capsys):
    exercise, solution = notebooks()
    path = tmp_path / f"{A}.ipynb"
    nbformat.write(filled(exercise, solution), path)
    assert main([str(path)]) == 0
    assert "5 of 5 visible tests pass" in capsys.readouterr().out


def test_a_missing_or_corrupt_notebook_exits_2(tmp_path, capsys):
    assert main([str(tmp_path / "nope.ipynb")]) == 2
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not a notebook")
    assert main([str(bad)]) == 2
    assert "cannot run" in capsys.readouterr().err
