"""Student code graded in the sandbox: a class whose submissions try to read the solutions,
the gradebook and each other, write into the course, reach a server on the host's
loopback, fork without end and leave processes behind. Each gets nothing it should not
have, changes no file outside its working folder, and the rest of the class is graded."""

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import nbformat
import pytest

from rlteach.grading import sandbox
from rlteach.grading.classroom import grade_class
from tests.nbgrader_course import Course, filled, sandbox_missing

pytestmark = [pytest.mark.notebooks, pytest.mark.slow,
              pytest.mark.skipif(bool(sandbox_missing()), reason=f"no sandbox here: {sandbox_missing()}")]

A = "01_importance_sampling"
FULL = 16
WEIGHTS = "def importance_weights(logp_target, logp_proposal):\n    return (logp_target - logp_proposal).exp()\n"


def probe(code: str) -> str:
    """A correct answer to part 1 preceded by ``code`` (which must not fail the cell)."""
    return "import os, glob\ntry:\n" + "".join(f"    {line}\n" for line in code.splitlines()) + \
        "except BaseException as err:\n    print('BLOCKED', type(err).__name__)\n" + WEIGHTS


class Listener:
    """A TCP server on the host's 127.0.0.1 that counts the connections it accepts."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while self.running:
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            self.accepted += 1
            connection.close()

    def close(self):
        self.running = False
        self.thread.join()
        self.server.close()


def kernel_cgroups() -> set[Path]:
    return set(Path("/sys/fs/cgroup").glob("**/rlteach-*"))


@pytest.fixture(scope="module")
def cgroups_before() -> set[Path]:
    return kernel_cgroups()


@pytest.fixture(scope="module")
def sandboxed_class(tmp_path_factory, cgroups_before):
    course = Course(tmp_path_factory.mktemp("sandbox"))
    course.generate(A)
    exercise, solution = course.notebook("exercises", A), course.notebook("solutions", A)
    root = course.root
    listener = Listener()
    protected = {root / "solutions" / A / f"{A}.ipynb", root / "exercises" / A / f"{A}.ipynb"}
    course.submit("victim", A, filled(exercise, solution))
    attempts = {
        "reads_solutions": probe(
            "import rlteach\n"
            f"places = [os.path.dirname(os.path.dirname(rlteach.__file__)) + '/solutions', {str(root / 'solutions')!r}]\n"
            "mine = os.getcwd()\n"
            "print('SOLUTIONS', [p for p in places if os.path.exists(p)]\n"
            "      + [p for p in glob.glob('/tmp/**/*.ipynb', recursive=True) if not p.startswith(mine)])\n"
            "for path in places:\n    print(open(path + '/01_importance_sampling/01_importance_sampling.ipynb').read())"),
        "reads_gradebook": probe(
            f"print('GRADEBOOK', os.path.exists({str(root / 'grading' / 'gradebook.db')!r}))\n"
            f"print('VICTIM', os.path.exists({str(root / 'grading' / 'submitted' / 'victim')!r}))\n"
            "print('OTHERS', [p for p in glob.glob('/tmp/rlteach-grade-*') if 'reads_gradebook' not in p])\n"
            f"print(open({str(root / 'grading' / 'gradebook.db')!r}, 'rb').read()[:100])"),
        "writes_outside": probe(
            "for target in " + repr([str(root / "grading" / "evil.txt"), str(root / "solutions" / "evil.txt"),
                                      str(root / "exercises" / "evil.txt"), *map(str, protected)]) + ":\n"
            "    try:\n        open(target, 'a').write('tampered')\n        print('WROTE', target)\n"
            "    except OSError as err:\n        print('DENIED', type(err).__name__)"),
        "connects": probe(
            "import socket\n"
            f"socket.create_connection(('127.0.0.1', {listener.port}), timeout=3)\nprint('CONNECTED')"),
        "forks": probe(
            "import time\nchildren = 0\n"
            "try:\n    while children < 100000:\n        if os.fork() == 0:\n            time.sleep(4)\n"
            "            os._exit(0)\n        children += 1\nexcept OSError as err:\n"
            "    print('FORK LIMIT after', children, type(err).__name__)\n"
            "time.sleep(5)\nwhile True:\n    try:\n        os.waitpid(-1, 0)\n    except ChildProcessError:\n        break"),
        "lingers": probe(
            "if os.fork() == 0:\n    import time\n    time.sleep(600)\n    os._exit(0)\nprint('CHILD LEFT RUNNING')"),
    }
    for student, answer in attempts.items():
        course.submit(student, A, filled(exercise, solution, {"importance_weights": answer}))
    before = {path: path.read_bytes() for path in protected}
    start = time.time()
    try:
        results = {r.student: r for r in grade_class(root, A, workers=2, progress=False)}
    finally:
        listener.close()
    return course, results, listener, before, time.time() - start


def answer_output(course, student: str) -> str:
    nb = nbformat.read(course.root / "grading" / "autograded" / student / A / f"{A}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "importance_weights")
    return "".join(o.get("text", "") for o in cell.outputs)


def hidden_lines(course) -> list[str]:
    lines = []
    for cell in course.notebook("solutions", A).cells:
        if "### BEGIN HIDDEN TESTS" in cell.source:
            block = cell.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
            lines += [line.strip() for line in block.splitlines() if line.strip()]
    return lines


def test_the_whole_class_is_graded_as_usual(sandboxed_class):
    _, results, _, _, _ = sandboxed_class
    assert {student: r.total for student, r in results.items()} == {s: FULL for s in results}


def test_no_submission_sees_the_solutions_or_leaks_hidden_tests(sandboxed_class):
    course, _, _, _, _ = sandboxed_class
    assert "SOLUTIONS []\nBLOCKED FileNotFoundError" in answer_output(course, "reads_solutions")
    hidden = hidden_lines(course)
    assert len(hidden) == 11
    for path in [*(course.root / "grading" / "autograded").rglob("*.ipynb"), *(course.root / "grading" / "feedback").rglob("*.html")]:
        text = path.read_text()
        assert not any(line in text or line.replace('"', "&quot;") in text for line in hidden), path


def test_no_submission_sees_the_gradebook_or_another_student(sandboxed_class):
    course, _, _, _, _ = sandboxed_class
    out = answer_output(course, "reads_gradebook")
    assert "GRADEBOOK False" in out and "VICTIM False" in out and "OTHERS []" in out and "BLOCKED FileNotFoundError" in out


def test_no_submission_writes_outside_its_working_folder(sandboxed_class):
    course, _, _, before, _ = sandboxed_class
    out = answer_output(course, "writes_outside")
    assert "WROTE" not in out and out.count("DENIED") == 5
    assert not list(course.root.rglob("evil.txt"))
    assert all(path.read_bytes() == content for path, content in before.items())


def test_a_server_on_the_host_loopback_is_unreachable(sandboxed_class):
    course, _, listener, _, _ = sandboxed_class
    assert "CONNECTED" not in answer_output(course, "connects")
    assert "BLOCKED ConnectionRefusedError" in answer_output(course, "connects")
    assert listener.accepted == 0


def test_forking_stops_at_the_process_limit_and_nothing_outlives_the_kernel(sandboxed_class, cgroups_before):
    course, _, _, _, _ = sandboxed_class
    assert "FORK LIMIT after" in answer_output(course, "forks")
    assert "CHILD LEFT RUNNING" in answer_output(course, "lingers")
    leftovers = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "ipykernel_launcher" in command and "rlteach-kernel-" in command:
            connection = next(arg for arg in command.split("\0") if "rlteach-kernel-" in arg)
            if not Path(connection).parent.exists():  # its grading is over (another grading may be running)
                leftovers.append(command)
    assert leftovers == []
    # Another test may be grading now; a group whose grader (named in it) has ended is left over.
    assert {g for g in kernel_cgroups() - cgroups_before
            if (owner := sandbox.cgroup_owner(g)) is None or not sandbox.process_alive(owner)} == set()


def test_the_next_grading_clears_what_a_killed_grader_left():
    """A grader killed outright leaves its kernel's cgroup, and maybe a kernel in it; the
    next one to make a cgroup kills what is inside and removes it."""
    group = sandbox.pids_cgroup(8)
    if group is None:
        pytest.skip("this user may not make cgroups here")
    sandbox.remove_cgroup(group)
    gone = subprocess.Popen(["true"])
    gone.wait()
    orphan = group.parent / f"rlteach-{gone.pid}-000000000000"
    orphan.mkdir()
    left_running = subprocess.Popen(["sleep", "600"])
    (orphan / "cgroup.procs").write_text(str(left_running.pid))
    mine = group.parent / f"rlteach-{os.getpid()}-000000000000"
    mine.mkdir()
    group = sandbox.pids_cgroup(8)
    try:
        assert not orphan.exists()
        assert left_running.wait(timeout=5) == -9
        assert mine.exists() and group is not None and group.exists()
    finally:
        sandbox.remove_cgroup(group)
        mine.rmdir()
        if left_running.poll() is None:
            left_running.kill()
