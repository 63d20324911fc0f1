"""nbgrader configuration for the rlteach course.

``solutions/`` is nbgrader's source (solutions, visible and hidden tests) and
``exercises/`` its release (what students get). Submissions, autograded copies, feedback
and the SQLite gradebook live under ``grading/``, which git ignores.
"""
import os

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

c.ExecutePreprocessor.timeout = 120
c.Execute.interrupt_on_timeout = True

os.makedirs(os.path.join(here, "grading"), exist_ok=True)
