"""rlteach-grade writes a PostgreSQL gradebook as it writes SQLite: a throwaway cluster on
127.0.0.1, started and stopped by the test (Debian's postgresql server binaries)."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from rlteach.grading.classroom import grade_class
from tests.nbgrader_course import Course, filled

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]
A = "01_importance_sampling"
BINARIES = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def as_postgres(*command: str) -> None:
    """Run a server command as the postgres user when we are root (the server refuses root)."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def postgres_url():
    if not BINARIES:
        pytest.skip("Debian's postgresql package is not installed (make test installs it as root)")
    bin_dir = BINARIES[-1]
    root = Path(tempfile.mkdtemp(prefix="rlteach-pg-"))  # pytest's own tmp is closed to the postgres user
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_postgres(f"{bin_dir}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres")
    as_postgres(f"{bin_dir}/pg_ctl", "-D", str(data), "-w", "-l", str(root / "log"),
                "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets}", "start")
    try:
        as_postgres(f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "course")
        yield f"postgresql://postgres@127.0.0.1:{port}/course"
    finally:
        as_postgres(f"{bin_dir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_a_class_graded_into_postgresql(postgres_url, tmp_path_factory):
    course = Course(tmp_path_factory.mktemp("pgcourse"))
    course.generate(A)
    exercise, solution = course.notebook("exercises", A), course.notebook("solutions", A)
    course.submit("ada", A, filled(exercise, solution))
    course.submit("bob", A, exercise)
    course.submit("cy", A, filled(exercise, solution, {"weighted_is": "def weighted_is(fx, lp, lq):\n    raise ValueError('not yet')\n"}))
    results = grade_class(course.root, A, db_url=postgres_url, workers=2, progress=False)
    assert [(r.student, r.total) for r in results] == [("ada", 16), ("bob", 0), ("cy", 13)]
    with Gradebook(postgres_url) as gb:
        assert {s.student.id: s.score for s in gb.find_assignment(A).submissions} == {"ada": 16, "bob": 0, "cy": 13}
        assert gb.find_grade("hidden_weighted_is", A, A, "cy").score == 0
    with Gradebook(course.db_url) as local:  # the course's SQLite file got no grades
        assert local.find_assignment(A).submissions == []
