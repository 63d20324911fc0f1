"""Build the student edition: what students receive, as a folder and a zip.

    python scripts/student_edition.py [--out build/student]     (or: make student-edition)

writes ``<out>/rlteach-course/`` and ``<out>/rlteach-course.zip`` (the same files, under one
top folder). The edition holds the lectures, the released exercises (``exercises/``, as
``make exercises`` generated them), a read-only pristine copy of those for ``make reset``
(``.pristine/exercises/``), the ``rlteach`` library without the instructor's grading tools
(``autograde``, ``classroom`` and their templates: they need nbgrader), and its set-up made
from the templates in ``scripts/student_edition/``: a ``pyproject.toml`` whose plain install
gives what students need and no nbgrader (so no formgrader, no Validate button),
``constraints.txt`` (the instructor's pins for those packages, torch included),
``environment.yml``, a ``Makefile`` (``course``, ``check``, ``reset``) and a ``README.md``.

It holds no ``solutions/``, hidden tests, ``nbgrader_config.py``, ``tests/``, ``benchmarks/``,
``.ci/`` or ``grading/``. The build refuses to finish when an exercise no longer matches
its source in ``solutions/`` (run ``make exercises``) or when anything it wrote carries an
nbgrader marker, a line of a hidden test or a line of solution code outside the library.

Run it with the course's environment (``make student-edition`` does): the pins of the
student packages' dependencies are read from the installed distributions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = Path(__file__).resolve().with_name("student_edition")
NAME = "rlteach-course"

# What ``pip install -c constraints.txt -e .`` installs in the edition: the library's own
# dependencies and what running and checking the notebooks needs. No nbgrader, no test tools.
STUDENT_PACKAGES = ("numpy", "torch", "matplotlib", "ipywidgets", "tqdm", "gymnasium",
                    "jupyterlab", "ipykernel", "nbformat", "nbclient")
# Inside rlteach/: the instructor's grading pipeline (nbgrader preprocessors, rlteach-grade,
# feedback templates). Students never run it, and it cannot import without nbgrader.
INSTRUCTOR_ONLY = ("grading/autograde.py", "grading/classroom.py", "grading/templates")
STUDENT_SCRIPTS = {"rlteach-check": "rlteach.grading.selfcheck:main"}
_IGNORED_NAMES = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.egg-info", ".DS_Store")


def ignored(folder: str, names: list[str]) -> set[str]:
    """What no edition holds: caches, checkpoints, and sockets or pipes (a kernel's IPC files, say)."""
    special = {n for n in names if not (Path(folder, n).is_file() or Path(folder, n).is_dir())}
    return set(_IGNORED_NAMES(folder, names)) | special


# nbgrader's markers; none may appear in a notebook or a text file of the edition.
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "BEGIN MARK SCHEME")
MIN_SOLUTION_LINE = 16  # shorter solution lines ("return x", "s = 1.0") are common code, not answers


class BuildError(Exception):
    """The edition cannot be built as asked; the message says why."""


# --- reading the instructor's course -------------------------------------------------------

def read_notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def nbgrader_meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def title(path: Path) -> str:
    """The notebook's first heading, e.g. ``01 · Importance sampling``."""
    for cell in read_notebook(path)["cells"]:
        if cell["cell_type"] == "markdown":
            for line in cell_source(cell).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return path.stem.replace("_", " ")


def topics(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name[:1].isdigit())


def exercise_notebooks(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.ipynb"))


def check_released(exercises: Path, solutions: Path) -> None:
    """Every exercise is the release of a source in ``solutions/``, with the same graded cells."""
    released = topics(exercises)
    if not released:
        raise BuildError(f"no exercises in {exercises}: run make exercises")
    for topic in released:
        source_topic = solutions / topic.name
        if not source_topic.is_dir():
            raise BuildError(f"exercises/{topic.name} has no source in solutions/: remove it or run make exercises")
        for notebook in exercise_notebooks(topic):
            source = source_topic / notebook.name
            ids = [nbgrader_meta(c).get("grade_id") for c in read_notebook(notebook)["cells"]]
            expected = [nbgrader_meta(c).get("grade_id") for c in read_notebook(source)["cells"]] \
                if source.exists() else None
            if ids != expected:
                raise BuildError(f"{notebook.relative_to(exercises.parent)} does not match solutions/: run make exercises")


def source_cells(solutions: Path) -> Iterator[str]:
    """The source of every cell in solutions/."""
    for path in sorted(solutions.rglob("*.ipynb")):
        if ".ipynb_checkpoints" not in path.parts:
            yield from (cell_source(cell) for cell in read_notebook(path)["cells"])


def secret_lines(solutions: Path) -> tuple[set[str], set[str]]:
    """The lines of hidden tests and of solution code that the edition must not contain.

    Lines that the source shows outside its marked blocks anyway (a visible test written
    like a hidden one, or the tail of a signature the exercise gives) are left out, as are
    comments and short everyday lines of code.
    """
    blocks = re.compile(r"^[ \t]*### BEGIN (SOLUTION|HIDDEN TESTS)[^\n]*\n(.*?)^[ \t]*### END \1[^\n]*$", re.S | re.M)
    sources = list(source_cells(solutions))
    shown = {line.strip() for source in sources for line in blocks.sub("", source).splitlines()}

    def lines(marker: str, shortest: int) -> set[str]:
        found = {line.strip() for source in sources for match in blocks.finditer(source) if match[1] == marker
                 for line in match[2].splitlines()}
        candidates = {line for line in found if len(line) >= shortest and not line.startswith("#")} - shown
        return {line for line in candidates if not any(line in visible for visible in shown)}

    return lines("HIDDEN TESTS", 8), lines("SOLUTION", MIN_SOLUTION_LINE)


# --- checking what was built --------------------------------------------------------------

def json_strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_strings(item)


def text_files(folder: Path) -> Iterator[tuple[str, str]]:
    """``(relative path, text)`` of every file; a notebook's text is its JSON and, decoded,
    every string in it (cell sources as written, quotes unescaped)."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            name = path.relative_to(folder).as_posix()
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                yield name, path.read_bytes().decode("latin-1")
                continue
            if path.suffix == ".ipynb":
                nb = json.loads(text)
                text = "\n".join([text, *map(cell_source, nb.get("cells", [])), *json_strings(nb)])
            yield name, text


def leaks(files: Iterable[tuple[str, str]], hidden: set[str], solution: set[str]) -> list[str]:
    """What in ``(relative path, text)`` pairs gives hidden material away.

    Markers may appear nowhere but the library's Python source (whose cell parser names
    them); hidden-test lines nowhere; solution lines nowhere outside the library, which is
    the public reference that the seal guards at grading.
    """
    found = []
    for name, text in files:
        library = name.startswith("rlteach/")
        if not (library and name.endswith(".py")):
            found += [f"{name}: nbgrader marker {m!r}" for m in MARKERS if m in text]
        found += [f"{name}: hidden test line {line!r}" for line in sorted(hidden) if line in text]
        if not library:
            found += [f"{name}: solution code {line!r}" for line in sorted(solution) if line in text]
    return found


# --- writing the edition --------------------------------------------------------------------

def render(template: str, **values: str) -> str:
    """``@NAME@`` placeholders of a file in scripts/student_edition/ filled in."""
    text = (TEMPLATES / template).read_text(encoding="utf-8")
    text = re.sub(r"@([A-Z][A-Z_]*)@", lambda m: values[m.group(1).lower()] if m.group(1).lower() in values
                  else m.group(0), text)
    left = sorted(set(re.findall(r"@[A-Z][A-Z_]*@", text)))
    if left:
        raise BuildError(f"{template}: no value for {', '.join(left)}")
    return text


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    if not match:
        raise BuildError(f"cannot read the requirement {spec!r} in pyproject.toml")
    return canonical(match.group(1))


def student_requirements(project: dict) -> list[str]:
    """The instructor's ranges for ``STUDENT_PACKAGES``, in that order."""
    listed = project["dependencies"] + [d for extra in project.get("optional-dependencies", {}).values() for d in extra]
    by_name = {requirement_name(spec): spec for spec in listed}
    missing = [name for name in STUDENT_PACKAGES if canonical(name) not in by_name]
    if missing:
        raise BuildError(f"pyproject.toml does not list {', '.join(missing)}")
    return [by_name[canonical(name)] for name in STUDENT_PACKAGES]


def installed_closure(names: Iterable[str]) -> set[str]:
    """Canonical names of the distributions that installing ``names`` pulls in, read from
    this environment's metadata (markers evaluated for this interpreter)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(name, frozenset[str]()) for name in names]
    while todo:
        name, extras = todo.pop()
        if (canonical(name), extras) in seen:
            continue
        seen.add((canonical(name), extras))
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            raise BuildError(f"{name} is not installed here: run this with the course's environment "
                             "(make student-edition)") from None
        for spec in requires:
            req = Requirement(spec)
            if req.marker is None or any(req.marker.evaluate({"extra": extra}) for extra in {"", *extras}):
                todo.append((req.name, frozenset(req.extras)))
    return {name for name, _ in seen}


def student_constraints(constraints: str, needed: set[str]) -> str:
    pins = [line for line in constraints.splitlines() if line.strip() and not line.startswith("#")]
    pinned = {canonical(line.split("==")[0]): line for line in pins}
    unpinned = sorted(set(map(canonical, STUDENT_PACKAGES)) - set(pinned))
    if unpinned:
        raise BuildError(f"constraints.txt pins no version of {', '.join(unpinned)}")
    return render("constraints.txt.in", pins="\n".join(line for line in pins if canonical(line.split("==")[0]) in needed))


def pin_of(constraints: str, name: str) -> str:
    for line in constraints.splitlines():
        if "==" in line and canonical(line.split("==")[0]) == canonical(name):
            return line.split("==")[1].strip()
    raise BuildError(f"constraints.txt pins no version of {name}")


def notebook_table(edition: Path) -> str:
    rows = ["| Notebook | Title |", "|---|---|"]
    for lecture in sorted((edition / "lectures").glob("*.ipynb")):
        rows.append(f"| [`lectures/{lecture.name}`](lectures/{lecture.name}) | {title(lecture)} |")
        number = lecture.name.split("_")[0]
        for topic in topics(edition / "exercises"):
            if topic.name.split("_")[0] == number:
                for notebook in exercise_notebooks(topic):
                    rel = notebook.relative_to(edition).as_posix()
                    rows.append(f"| [`{rel}`]({rel}) | {title(notebook)} ({points(notebook):g} points) |")
    listed = {row.split("`")[1] for row in rows[2:]}
    for topic in topics(edition / "exercises"):  # an exercise without a lecture of its number
        for notebook in exercise_notebooks(topic):
            rel = notebook.relative_to(edition).as_posix()
            if rel not in listed:
                rows.append(f"| [`{rel}`]({rel}) | {title(notebook)} ({points(notebook):g} points) |")
    return "\n".join(rows)


def points(notebook: Path) -> float:
    return sum(float(nbgrader_meta(c).get("points", 0)) for c in read_notebook(notebook)["cells"]
               if nbgrader_meta(c).get("grade"))


def copy_library(source: Path, target: Path) -> None:
    skip = {source / rel for rel in INSTRUCTOR_ONLY}

    def ignore(folder: str, names: list[str]) -> set[str]:
        return ignored(folder, names) | {n for n in names if Path(folder, n) in skip}

    shutil.copytree(source, target, ignore=ignore)
    imports_nbgrader = [p.relative_to(target.parent).as_posix() for p in sorted(target.rglob("*.py"))
                        if re.search(r"^\s*(import|from)\s+nbgrader\b", p.read_text(encoding="utf-8"), re.M)]
    if imports_nbgrader:
        raise BuildError(f"{', '.join(imports_nbgrader)} import nbgrader, which students do not have: "
                         "move the import, or list the module in INSTRUCTOR_ONLY")


def read_only(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def write_edition(edition: Path, root: Path) -> None:
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    project = pyproject["project"]
    constraints = (root / "constraints.txt").read_text(encoding="utf-8")
    conda_python = re.search(r"^\s*-\s*python=(\S+)", (root / "environment.yml").read_text(encoding="utf-8"), re.M)

    check_released(root / "exercises", root / "solutions")
    edition.mkdir(parents=True)
    shutil.copytree(root / "lectures", edition / "lectures", ignore=ignored)
    for topic in topics(root / "exercises"):
        shutil.copytree(topic, edition / "exercises" / topic.name, ignore=ignored)
        shutil.copytree(topic, edition / ".pristine" / "exercises" / topic.name, ignore=ignored)
    read_only(edition / ".pristine")
    copy_library(root / "rlteach", edition / "rlteach")

    requirements = student_requirements(project)
    toml_list = "".join(f"    {json.dumps(spec)},\n" for spec in requirements)
    (edition / "pyproject.toml").write_text(render(
        "pyproject.toml.in",
        build_requires=", ".join(json.dumps(r) for r in pyproject["build-system"]["requires"]),
        build_backend=json.dumps(pyproject["build-system"]["build-backend"]),
        name=json.dumps(project["name"]), version=json.dumps(project["version"]),
        description=json.dumps(project["description"]), requires_python=json.dumps(project["requires-python"]),
        license=json.dumps(project["license"]), dependencies=toml_list,
        scripts="".join(f"{name} = {json.dumps(target)}\n" for name, target in STUDENT_SCRIPTS.items()),
    ), encoding="utf-8")
    (edition / "constraints.txt").write_text(
        student_constraints(constraints, installed_closure(STUDENT_PACKAGES)), encoding="utf-8")
    (edition / "environment.yml").write_text(render(
        "environment.yml.in", python=conda_python.group(1) if conda_python else "3.11",
        pins="".join(f"      - {name}=={pin_of(constraints, name)}\n" for name in STUDENT_PACKAGES),
    ), encoding="utf-8")
    python = re.fullmatch(r">=\s*(\d+)\.(\d+)", project["requires-python"].strip())
    if not python:
        raise BuildError(f"requires-python {project['requires-python']!r} is not of the form >=X.Y")
    (edition / "Makefile").write_text(render(
        "Makefile", python=f"{python[1]}.{python[2]}", python_tuple=f"{python[1]}, {python[2]}"), encoding="utf-8")
    first = exercise_notebooks(topics(edition / "exercises")[0])[0]
    (edition / "README.md").write_text(render(
        "README.md.in", notebooks=notebook_table(edition), torch=pin_of(constraints, "torch"),
        python=f"{python[1]}.{python[2]}", exercise=first.parent.name,
        notebook=first.relative_to(edition).as_posix(),
    ), encoding="utf-8")


def write_zip(edition: Path, archive: Path) -> None:
    """The edition under one top folder; file modes kept (the pristine copies stay read-only)."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(edition.rglob("*")):
            if path.is_file():
                zf.write(path, (Path(edition.name) / path.relative_to(edition)).as_posix())


def build(out: Path, root: Path = ROOT) -> tuple[Path, Path]:
    """Write ``out/rlteach-course/`` and ``out/rlteach-course.zip``; return both paths."""
    out = out.resolve()
    for source in ("lectures", "exercises", "rlteach", "solutions"):
        if out.is_relative_to(root / source):
            raise BuildError(f"--out {out} lies inside {source}/ of the course")
    out.mkdir(parents=True, exist_ok=True)
    edition, archive = out / NAME, out / f"{NAME}.zip"
    scratch = Path(tempfile.mkdtemp(prefix=f".{NAME}-", dir=out))
    try:
        staged = scratch / NAME
        write_edition(staged, root)
        hidden, solution = secret_lines(root / "solutions")
        found = leaks(text_files(staged), hidden, solution)
        if found:
            raise BuildError("the edition would give hidden material away:\n  " + "\n  ".join(found))
        write_zip(staged, scratch / archive.name)
        if edition.exists():
            shutil.rmtree(edition)
        staged.rename(edition)
        os.replace(scratch / archive.name, archive)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return edition, archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "student",
                        help="folder for rlteach-course/ and rlteach-course.zip (default: build/student)")
    args = parser.parse_args(argv)
    try:
        edition, archive = build(args.out)
    except BuildError as err:
        print(f"student_edition: {err}", file=sys.stderr)
        return 1
    files = sum(1 for p in edition.rglob("*") if p.is_file())
    print(f"student edition: {edition} ({files} files)\n                 {archive} ({archive.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
