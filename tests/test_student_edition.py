"""The student edition (``make student-edition``): what students receive holds the lectures,
the released exercises, the library and its set-up, and nothing that gives grading away:
no solutions, no hidden tests, no nbgrader (so no formgrader). In it, ``rlteach-check``
works on an exercise filled in place and ``make reset`` brings an exercise back."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import nbformat
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.nbgrader_course import ROOT, filled

A = "01_importance_sampling"
STUDENT_PACKAGES = {"numpy", "torch", "matplotlib", "ipywidgets", "tqdm", "gymnasium",
                    "jupyterlab", "ipykernel", "nbformat", "nbclient"}
TOP_LEVEL = {".pristine", "Makefile", "README.md", "constraints.txt", "environment.yml", "exercises",
             "lectures", "pyproject.toml", "rlteach"}
INSTRUCTOR_MODULES = {"rlteach/grading/autograde.py", "rlteach/grading/classroom.py"}
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "### BEGIN", "### END",
           "BEGIN MARK SCHEME")
NO_NBGRADER = """\
import sys


class NoNbgrader:
    def find_spec(self, name, path=None, target=None):
        if name == "nbgrader" or name.startswith("nbgrader."):
            raise ImportError(f"No module named {name!r} (the student edition does not install nbgrader)")
        return None


sys.meta_path.insert(0, NoNbgrader())
"""


def load_script():
    spec = importlib.util.spec_from_file_location("student_edition", ROOT / "scripts" / "student_edition.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


student_edition = load_script()


def build(out: Path) -> Path:
    assert student_edition.main(["--out", str(out)]) == 0
    return out / "rlteach-course"


@pytest.fixture(scope="module")
def edition(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("student"))


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def zipped(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        assert all(n.startswith("rlteach-course/") for n in names), "the zip unpacks into one folder"
        return {n.removeprefix("rlteach-course/"): zf.read(n) for n in names if not n.endswith("/")}


def make(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=folder, capture_output=True, text=True,
                          timeout=60)


# --- what is in it ------------------------------------------------------------------------

def test_the_edition_holds_lectures_exercises_library_and_set_up(edition):
    got = files(edition)
    assert {p.name for p in edition.iterdir()} == TOP_LEVEL
    for folder in ("lectures", "exercises"):
        theirs = {k: v for k, v in files(ROOT / folder).items() if ".ipynb_checkpoints" not in k}
        assert theirs, folder
        assert {f"{folder}/{k}": v for k, v in theirs.items()} == {k: v for k, v in got.items()
                                                                   if k.startswith(f"{folder}/")}
        if folder == "exercises":  # the pristine copies, read-only, for make reset
            assert {f".pristine/exercises/{k}": v for k, v in theirs.items()} == \
                   {k: v for k, v in got.items() if k.startswith(".pristine/")}
    for name in got:
        if name.startswith(".pristine/"):
            assert not (edition / name).stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), name
    library = {f"rlteach/{p.relative_to(ROOT / 'rlteach').as_posix()}": p.read_bytes()
               for p in sorted((ROOT / "rlteach").rglob("*.py")) if "__pycache__" not in p.parts}
    assert {k: v for k, v in library.items() if k not in INSTRUCTOR_MODULES} == \
           {k: v for k, v in got.items() if k.startswith("rlteach/")}


def test_the_edition_holds_no_solutions_tests_or_grading_tools(edition):
    names = set(files(edition)) | {p.relative_to(edition).as_posix() + "/" for p in edition.rglob("*") if p.is_dir()}
    for forbidden in ("solutions/", "nbgrader_config.py", "tests/", "benchmarks/", ".ci/", "grading/", "scripts/",
                      ".git/", ".venv/", "build/"):
        assert not any(n == forbidden or n.startswith(forbidden) for n in names), forbidden
    for forbidden in (*INSTRUCTOR_MODULES, "rlteach/grading/templates/"):
        assert forbidden not in names
    assert not [n for n in names if re.search(r"__pycache__|\.pyc$|\.ipynb_checkpoints|egg-info", n)]


def answers_and_hidden_tests() -> tuple[dict[str, str], set[str], set[str]]:
    """Each answer cell's solution code (by grade id), every line of hidden tests in solutions/,
    and the lines that solutions/ shows outside its marked blocks."""
    block = r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)[ \t]*### END \1"
    cells = [(path, cell) for path in sorted((ROOT / "solutions").glob("*/*.ipynb"))
             for cell in nbformat.read(path, as_version=4).cells]
    shown = {line.strip() for _, cell in cells for line in re.sub(block, "", cell.source, flags=re.S).splitlines()}
    answers, hidden = {}, set()
    for path, cell in cells:
        for kind, code in re.findall(block, cell.source, re.S):
            if kind == "SOLUTION":
                answers[f"{path.stem}/{cell.metadata.nbgrader.grade_id}"] = code
            else:
                hidden |= {line.strip() for line in code.splitlines()
                           if line.strip() and not line.strip().startswith("#")} - shown
    return answers, hidden, shown


def readable(name: str, data: bytes) -> str:
    """A file's text; a notebook's with its cells' sources decoded (JSON escapes quotes)."""
    text = data.decode("utf-8")
    if name.endswith(".ipynb"):
        nb = nbformat.reads(text, as_version=4)
        text += "\n".join(cell.source for cell in nb.cells) + "\n" + str(nb.metadata)
    return text


@pytest.mark.slow  # reads every file of the edition: the slow tier
@pytest.mark.parametrize("where", ["folder", "zip"])
def test_no_hidden_test_or_solution_code_anywhere(edition, where):
    texts = {name: readable(name, data) for name, data in
             (files(edition) if where == "folder" else zipped(edition.with_suffix(".zip"))).items()}
    answers, hidden, shown = answers_and_hidden_tests()
    assert len(answers) >= 10 and len(hidden) >= 20, "solutions/ was read"
    for name, text in texts.items():
        library = name.startswith("rlteach/")
        if library:  # the harness's cell parser names the markers in a pattern; no line is one
            assert not [line for line in text.splitlines() if line.lstrip().startswith(("### BEGIN", "### END"))], name
        else:
            assert not [m for m in MARKERS if m in text], name
        assert not [line for line in hidden if line in text], f"{name} holds hidden test code"
        if library:
            continue  # the library is the public reference; the seal keeps answers from calling it
        for grade_id, code in answers.items():
            lines = [line.strip() for line in code.splitlines() if len(line.strip()) >= 16
                     and not any(line.strip() in visible for visible in shown)]  # e.g. a given signature's tail
            assert code.strip() not in text and not [line for line in lines if line in text], \
                f"{name} holds the solution code of {grade_id}"


def test_the_zip_holds_the_same_files_as_the_folder(edition):
    archive = edition.with_suffix(".zip")
    assert zipped(archive) == files(edition)
    with zipfile.ZipFile(archive) as zf:  # the pristine copies unpack read-only
        for info in zf.infolist():
            if "/.pristine/" in info.filename and not info.is_dir():
                assert not (info.external_attr >> 16) & stat.S_IWUSR, info.filename


# --- its environment ----------------------------------------------------------------------

def pins(text: str) -> dict[str, str]:
    return {canonicalize_name(line.split("==")[0]): line.split("==")[1].strip()
            for line in text.splitlines() if "==" in line and not line.startswith("#")}


def test_the_student_environment_is_the_instructors_pins_without_nbgrader(edition):
    project = tomllib.loads((edition / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(spec) for spec in project["dependencies"]]
    assert {canonicalize_name(r.name) for r in requirements} == STUDENT_PACKAGES
    assert "optional-dependencies" not in project, "a plain `pip install -e .` installs what students need"
    assert project["scripts"] == {"rlteach-check": "rlteach.grading.selfcheck:main"}
    ours = pins((ROOT / "constraints.txt").read_text())
    theirs = pins((edition / "constraints.txt").read_text())
    assert theirs["torch"] == ours["torch"] and set(theirs) <= set(ours)
    assert {name: ours[name] for name in theirs} == theirs
    assert not {"nbgrader", "latex2mathml", "pytest", "playwright", "notebook"} & set(theirs)
    for r in requirements:
        assert r.specifier.contains(theirs[canonicalize_name(r.name)], prereleases=True), r
    env = yaml.safe_load((edition / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section
    assert pins("\n".join(e for e in pip_section if "==" in e)) == {n: theirs[n] for n in STUDENT_PACKAGES}


def imports(path: Path) -> set[str]:
    """Every module that ``path`` imports, at any depth (lazy imports in functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.slow
def test_the_library_imports_only_what_the_student_environment_installs(edition):
    installed = set(pins((edition / "constraints.txt").read_text()))
    providers = metadata.packages_distributions()
    modules = {".".join(p.relative_to(edition).with_suffix("").parts).removesuffix(".__init__")
               for p in (edition / "rlteach").rglob("*.py")}
    for path in sorted((edition / "rlteach").rglob("*.py")):
        for name in imports(path):
            top = name.split(".")[0]
            if top == "rlteach":  # a module, or a name from one; never a module left out of the edition
                assert name in modules or name.rsplit(".", 1)[0] in modules, f"{path.name} imports {name}"
            elif top not in sys.stdlib_module_names and top != "__future__":
                dists = {canonicalize_name(d) for d in providers.get(top, [])}
                assert dists & installed, f"{path.relative_to(edition)} imports {name}, which students do not install"


# --- its commands -------------------------------------------------------------------------

def test_make_course_installs_the_pins_and_opens_jupyterlab_on_the_lectures(edition):
    result = make(edition, "-n", "course", "PORT=8765")
    assert result.returncode == 0, result.stderr
    assert "-m venv .venv" in result.stdout
    assert "pip install --quiet -c constraints.txt -e .\n" in result.stdout
    assert "ipykernel install --sys-prefix --name python3" in result.stdout
    lab = next(line for line in result.stdout.splitlines() if "jupyter lab" in line)
    assert "--ip=127.0.0.1 --port=8765" in lab and "--ServerApp.root_dir=" in lab
    assert ("--allow-root" in lab) == (os.getuid() == 0)
    assert "--LabApp.default_url=/lab/tree/lectures" in result.stdout


def test_make_check_runs_rlteach_check_on_the_notebook(edition):
    notebook = f"exercises/{A}/{A}.ipynb"
    for arg in (f"NB={notebook}", f"EX={A}"):
        result = make(edition, "-n", "check", arg)
        assert result.returncode == 0, result.stderr
        assert f'.venv/bin/rlteach-check "{notebook}"' in result.stdout
    result = make(edition, "check")
    assert result.returncode != 0 and "usage: make check NB=" in result.stdout and A in result.stdout


def test_make_reset_keeps_the_students_version_and_restores_the_exercise(edition, tmp_path):
    course = tmp_path / "course"
    shutil.copytree(edition, course)
    mine, pristine = course / "exercises" / A / f"{A}.ipynb", course / ".pristine" / "exercises" / A / f"{A}.ipynb"
    mine.write_text(mine.read_text().replace("# YOUR CODE HERE", "# my attempt"))
    (mine.parent / "notes.txt").write_text("scratch")
    attempt = files(mine.parent)
    for _ in range(2):  # twice in the same second: two backups
        result = make(course, "reset", f"EX={A}")
        assert result.returncode == 0, result.stdout + result.stderr
    backups = sorted((course / "backups").iterdir())
    assert [b.name.startswith(f"{A}-") for b in backups] == [True, True], backups
    assert attempt in [files(b) for b in backups], "the student's version is kept"
    assert files(mine.parent) == {mine.name: pristine.read_bytes()}
    assert os.access(mine, os.W_OK) and not pristine.stat().st_mode & stat.S_IWUSR
    assert files(course / ".pristine") == files(edition / ".pristine")
    for bad in ("", "EX=99_nothing"):
        result = make(course, "reset", *([bad] if bad else []))
        assert result.returncode != 0 and A in result.stdout


# --- the build's guards -------------------------------------------------------------------

@pytest.fixture
def course_copy(tmp_path) -> Path:
    root = tmp_path / "instructor"
    for name in ("lectures", "exercises", "solutions", "rlteach"):
        shutil.copytree(ROOT / name, root / name, ignore=student_edition.ignored)
    for name in ("pyproject.toml", "constraints.txt", "environment.yml"):
        shutil.copy(ROOT / name, root / name)
    return root


@pytest.mark.slow  # reads every file of the edition: the slow tier
def test_the_build_refuses_an_exercise_that_gives_a_hidden_test_away(course_copy, tmp_path):
    _, hidden, _ = answers_and_hidden_tests()
    path = course_copy / "exercises" / A / f"{A}.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id", "").startswith("hidden_"))
    cell.source += "\n" + sorted(hidden)[0]
    nbformat.write(nb, path)
    with pytest.raises(student_edition.BuildError, match="hidden test line"):
        student_edition.build(tmp_path / "out", root=course_copy)
    assert not (tmp_path / "out" / "rlteach-course").exists() and not (tmp_path / "out" / "rlteach-course.zip").exists()


def test_the_build_refuses_stale_exercises_and_an_output_inside_the_course(course_copy, tmp_path):
    with pytest.raises(student_edition.BuildError, match="lies inside exercises/"):
        student_edition.build(course_copy / "exercises" / "out", root=course_copy)
    path = course_copy / "solutions" / A / f"{A}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[-1].metadata.nbgrader["grade_id"] = "renamed"
    nbformat.write(nb, path)
    with pytest.raises(student_edition.BuildError, match="run make exercises"):
        student_edition.build(tmp_path / "out", root=course_copy)


# --- in the edition, for real ---------------------------------------------------------------

def student_env(edition: Path, tmp_path: Path) -> dict[str, str]:
    """The edition's rlteach first on the path, nbgrader unimportable (in kernels too)."""
    blocker = tmp_path / "no_nbgrader"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(NO_NBGRADER)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(edition), str(blocker)])}


@pytest.mark.slow
def test_the_student_facing_modules_import_without_nbgrader(edition, tmp_path):
    code = ("import importlib, pkgutil, rlteach\n"
            "from rlteach.grading import check\n"
            "import rlteach.grading.selfcheck\n"
            "for m in pkgutil.walk_packages(rlteach.__path__, 'rlteach.'): importlib.import_module(m.name)\n"
            "try:\n    import nbgrader\nexcept ImportError:\n    print('no nbgrader')\n"
            "print(rlteach.__file__)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=student_env(edition, tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["no nbgrader", str(edition / "rlteach" / "__init__.py")]


@pytest.mark.notebooks
@pytest.mark.slow
def test_a_student_fills_in_an_exercise_checks_it_and_resets_it(tmp_path):
    edition = build(tmp_path / "student")
    env = student_env(edition, tmp_path)
    notebook = edition / "exercises" / A / f"{A}.ipynb"
    solution = nbformat.read(ROOT / "solutions" / A / f"{A}.ipynb", as_version=4)
    nbformat.write(filled(nbformat.read(notebook, as_version=4), solution), notebook)
    answered = notebook.read_bytes()

    result = subprocess.run([sys.executable, "-m", "rlteach.grading.selfcheck", str(notebook.relative_to(edition))],
                            cwd=edition, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 of 5 visible tests pass" in result.stdout
    assert result.stdout.count("· hidden_") == 5
    assert notebook.read_bytes() == answered, "rlteach-check runs a copy"

    result = make(edition, "reset", f"EX={A}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert notebook.read_bytes() == (edition / ".pristine" / "exercises" / A / f"{A}.ipynb").read_bytes()
    (backup,) = (edition / "backups").iterdir()
    assert (backup / notebook.name).read_bytes() == answered
    assert f"{backup.relative_to(edition)}/" in result.stdout

    result = make(edition, "-n", "course")
    assert "pip install --quiet -c constraints.txt -e ." in result.stdout and "jupyter lab" in result.stdout


def test_sockets_and_caches_left_beside_the_notebooks_stay_out_of_the_edition(tmp_path):
    """A kernel's IPC socket or a cache next to a lecture is not copied (copytree cannot copy a socket)."""
    import socket

    (tmp_path / "01_a.ipynb").write_text("{}")
    (tmp_path / "__pycache__").mkdir()
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "kernel-ipc-1"))
        names = sorted(p.name for p in tmp_path.iterdir())
        assert student_edition.ignored(str(tmp_path), names) == {"__pycache__", "kernel-ipc-1"}
        shutil.copytree(tmp_path, tmp_path.parent / "copy", ignore=student_edition.ignored)
    assert sorted(p.name for p in (tmp_path.parent / "copy").iterdir()) == ["01_a.ipynb"]
