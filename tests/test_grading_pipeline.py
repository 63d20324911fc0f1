"""The real nbgrader pipeline: generate_assignment -> submit -> autograde, scores read
back from the gradebook."""

import filecmp

import pytest
from nbgrader.api import Gradebook

from tests.nbgrader_course import ROOT, Course, assignments, filled

pytestmark = pytest.mark.notebooks

NAIVE_WEIGHTS = '''
def importance_weights(logp_target, logp_proposal):
    return logp_target.exp() / logp_proposal.exp()
'''
DELEGATES = '''
from rlteach.importance import importance_weights
'''


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """Every assignment generated; for each, a full solution and the untouched exercise
    submitted; for 01 also a visible-only answer and one that calls the reference."""
    course = Course(tmp_path_factory.mktemp("course"))
    for assignment in assignments():
        course.generate(assignment)
        exercise, solution = course.notebook("exercises", assignment), course.notebook("solutions", assignment)
        course.submit("solved", assignment, filled(exercise, solution))
        course.submit("untouched", assignment, exercise)
        if assignment == "01_importance_sampling":
            course.submit("visible_only", assignment, filled(exercise, solution, {"importance_weights": NAIVE_WEIGHTS}))
            course.submit("delegates", assignment, filled(exercise, solution, {"importance_weights": DELEGATES}))
        course.autograde(assignment)
    return course


@pytest.mark.parametrize("assignment", assignments())
def test_exercises_folder_is_exactly_what_generate_assignment_makes(course, assignment):
    fresh, committed = course.root / "exercises" / assignment, ROOT / "exercises" / assignment
    comparison = filecmp.dircmp(fresh, committed, ignore=[".ipynb_checkpoints"])
    assert comparison.left_only == comparison.right_only == [], "run `make exercises`"
    for name in comparison.common_files:
        assert (fresh / name).read_bytes() == (committed / name).read_bytes(), f"exercises/{assignment}/{name} is stale: run `make exercises`"


@pytest.mark.parametrize("assignment", assignments())
def test_the_solution_scores_full_marks(course, assignment):
    scores = course.scores(assignment, "solved")
    with Gradebook(course.db_url) as gb:
        max_score = gb.find_assignment(assignment).max_score
    assert max_score > 0
    assert scores["total"] == max_score
    assert all(points > 0 for cell, points in scores.items())


@pytest.mark.parametrize("assignment", assignments())
def test_the_untouched_exercise_scores_zero(course, assignment):
    scores = course.scores(assignment, "untouched")
    assert scores["total"] == 0
    assert set(scores.values()) == {0}


def test_one_failed_edge_case_costs_only_its_share_of_each_cell(course):
    """Naive weights exp(logp)/exp(logq) fail one of the 7 edge cases (log-probabilities near
    -1000) and pass the rest. Each cell shares its points between its two checks and each
    check between its cases: the visible cell (1 point) earns (1 + 6/7)/2 = 13/14 and the
    hidden cell (2 points) 2·(6/7 + 1)/2 = 13/7, recorded to 4 decimals."""
    solved = course.scores("01_importance_sampling", "solved")
    assert solved["total"] == 16
    scores = course.scores("01_importance_sampling", "visible_only")
    assert scores["test_importance_weights"] == pytest.approx(13 / 14, abs=1e-4)
    assert scores["hidden_importance_weights"] == pytest.approx(13 / 7, abs=1e-4)
    assert scores["total"] == pytest.approx(solved["total"] - 3 + 13 / 14 + 13 / 7, abs=2e-4)
    autograded = (course.root / "grading" / "autograded" / "visible_only" / "01_importance_sampling"
                  / "01_importance_sampling.ipynb").read_text()
    assert "log-probabilities near -1000" in autograded and "partial credit: 0.9286 of 1 points" in autograded


def test_an_answer_that_calls_the_reference_scores_zero_for_that_part(course):
    solved = course.scores("01_importance_sampling", "solved")
    scores = course.scores("01_importance_sampling", "delegates")
    assert scores["test_importance_weights"] == scores["hidden_importance_weights"] == 0
    assert scores["total"] == solved["total"] - 3
    autograded = (course.root / "grading" / "autograded" / "delegates" / "01_importance_sampling"
                  / "01_importance_sampling.ipynb").read_text()
    assert "sealed during grading" in autograded


def test_a_grade_cell_the_grader_cannot_read_stops_generation_with_its_id(tmp_path):
    """An instructor's typo is loud at `make exercises`, never silent at grading time."""
    import json

    course = Course(tmp_path)
    source = course.root / "solutions" / "01_importance_sampling" / "01_importance_sampling.ipynb"
    nb = json.loads(source.read_text())
    cell = next(c for c in nb["cells"] if c["id"] == "hidden_weighted_is")
    cell["source"] = ["# hidden tests\n", "### BEGIN HIDDEN TESTS\n", 'check(weighted_is, "weighted_iss", seed=3)\n',
                      "### END HIDDEN TESTS\n"]
    source.write_text(json.dumps(nb))
    with pytest.raises(AssertionError, match="grade cell hidden_weighted_is: no graded part named 'weighted_iss'"):
        course.generate("01_importance_sampling")
