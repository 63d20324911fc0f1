"""Course benchmark: headless execution time of every lecture and the autograde time of
one full-marks submission per assignment, on this machine.

    make bench        (or: .venv/bin/python benchmarks/course.py)
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402
import torch  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

from tests.nbgrader_course import Course, assignments, filled  # noqa: E402


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def time_lecture(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def time_autograde(assignment: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        course = Course(Path(tmp))
        course.generate(assignment)
        course.submit("bench", assignment, filled(course.notebook("exercises", assignment),
                                                  course.notebook("solutions", assignment)))
        start = time.perf_counter()
        course.autograde(assignment, "--student", "bench")
        return time.perf_counter() - start


def main() -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
    print(f"machine: {machine()}\n")
    print(f"{'what':<48} {'seconds':>8}")
    print(f"{'-' * 48} {'-' * 8}")
    for path in sorted((ROOT / "lectures").glob("*.ipynb")):
        print(f"{'lecture ' + path.stem + ' (headless run)':<48} {time_lecture(path):8.1f}", flush=True)
    for assignment in assignments():
        print(f"{'autograde ' + assignment + ' (1 submission)':<48} {time_autograde(assignment):8.1f}", flush=True)


if __name__ == "__main__":
    main()
