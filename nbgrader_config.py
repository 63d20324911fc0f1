"""nbgrader configuration for the rlteach course.

``solutions/`` is nbgrader's source (solutions, visible and hidden tests) and
``exercises/`` its release (what students get). Submissions, autograded copies, feedback
and the SQLite gradebook live under ``grading/``, which git ignores.
"""
import os
import warnings

here = os.path.dirname(os.path.abspath(__file__))
c = get_config()  # noqa: F821  (injected by traitlets)

c.CourseDirectory.course_id = "rlteach"
c.CourseDirectory.root = here
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = os.path.join("grading", "submitted")
c.CourseDirectory.autograded_directory = os.path.join("grading", "autograded")
c.CourseDirectory.feedback_directory = os.path.join("grading", "feedback")
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(here, "grading", "gradebook.db")

# Hardened pipeline (rlteach/grading/autograde.py): the graded notebook is rebuilt on the release,
# each check is re-judged outside the student's kernel, dead kernels and timeouts cost only
# the cells they hit, and feedback never shows hidden test code.
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import (  # noqa: E402
    AssignLatePenalties,
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    ClearSolutions,
    ComputeChecksums,
    DeduplicateIds,
    GetGrades,
    IgnorePattern,
    IncludeHeaderFooter,
    InstantiateTests,
    LimitOutput,
    LockCells,
    OverwriteCells,
    OverwriteKernelspec,
    SaveAutoGrades,
    SaveCells,
)

from rlteach.grading.autograde import (  # noqa: E402
    TEMPLATES,
    FeedbackExporter,
    GuardedExecute,
    HideHiddenTests,
    OfflineMath,
    RebuildFromRelease,
    ValidateGradeCells,
)

# nbgrader's own generate steps, after a check that every grade cell can be graded (an
# unreadable cell, an unknown part or a grade cell without a check stops `make exercises`).
c.GenerateAssignment.preprocessors = [
    ValidateGradeCells, IncludeHeaderFooter, InstantiateTests, LockCells, ClearSolutions, ClearOutput,
    CheckCellMetadata, ComputeChecksums, SaveCells, ClearHiddenTests, ClearMarkScheme, ComputeChecksums,
    CheckCellMetadata,
]
c.Autograde.sanitize_preprocessors = [
    ClearOutput, RebuildFromRelease, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata,
]
c.Autograde.autograde_preprocessors = [
    GuardedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades, AssignLatePenalties,
    CheckCellMetadata,
]
c.GenerateFeedback.preprocessors = [HideHiddenTests, OfflineMath, GetGrades, CSSHTMLHeaderPreprocessor]
# Feedback pages: nbgrader's, with each test cell named by the parts it checks and the
# maths drawn as MathML (no MathJax script, no CDN: they open offline).
import nbgrader  # noqa: E402

c.GenerateFeedback.exporter_class = FeedbackExporter
c.HTMLExporter.template_name = "rlteach_feedback"
c.HTMLExporter.template_file = "rlteach_index.html.j2"
c.HTMLExporter.extra_template_basedirs = [
    str(TEMPLATES), os.path.join(os.path.dirname(nbgrader.__file__), "server_extensions", "formgrader", "templates"),
]
c.GuardedExecute.timeout = 60  # seconds per cell, unless the instructor's cell says otherwise
c.GuardedExecute.interrupt_on_timeout = True
c.GuardedExecute.memory_limit_gb = 8.0
c.LimitOutput.max_lines = 200
c.LimitOutput.max_length = 10_000

warnings.filterwarnings("ignore", message="Object of type .* not in session", module="nbgrader")  # SQLAlchemy notes
os.makedirs(os.path.join(here, "grading"), exist_ok=True)
