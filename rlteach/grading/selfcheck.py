"""A student's check before handing in: ``rlteach-check path/to/exercise.ipynb``.

Runs the notebook from top to bottom in a fresh kernel (on a copy: the file is not
changed), then reports every test cell: passed, failed with the harness's message, or
hidden (those run at grading). Exits 0 when every visible test passes, 1 when any fails,
2 when the notebook cannot be run at all. (``nbgrader validate`` reports but always
exits 0.)
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from traitlets.config import Config

from rlteach.grading.cells import is_grade_cell, visible_checks


def check_notebook(path: Path, timeout: int = 120) -> tuple[list[tuple[str, str, str]], bool]:
    """Run ``path`` and return ``[(grade_id, status, message)]`` and whether all visible tests passed.

    ``status`` is ``"passed"``, ``"failed"`` or ``"hidden"``.
    """
    nb = nbformat.read(path, as_version=4)
    run = copy.deepcopy(nb)
    sockets = tempfile.mkdtemp(prefix="rlteach-check-")
    ipc = Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets, "kernel"),
                                    "connection_file": os.path.join(sockets, "kernel.json")}})  # no TCP port
    client = NotebookClient(run, config=ipc, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    died = None
    try:
        client.execute()
    except DeadKernelError:
        died = "the kernel died (a crash, os._exit, or memory exhaustion) before this cell finished"
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    report = []
    for cell in run.cells:
        if not is_grade_cell(cell):
            continue
        grade_id = cell.metadata["nbgrader"].get("grade_id", "?")
        if not visible_checks(cell.source):
            report.append((grade_id, "hidden", "runs when your notebook is graded"))
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            report.append((grade_id, "failed", f"{errors[0]['ename']}: {errors[0]['evalue']}"))
        elif cell.get("execution_count") is None:
            report.append((grade_id, "failed", died or "this cell did not run"))
        else:
            report.append((grade_id, "passed", ""))
    return report, all(status != "failed" for _, status, _ in report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rlteach-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--timeout", type=int, default=120, help="seconds per cell (default 120)")
    args = parser.parse_args(argv)
    try:
        report, passed = check_notebook(args.notebook, args.timeout)
    except (OSError, nbformat.reader.NotJSONError, nbformat.ValidationError) as err:
        print(f"rlteach-check: cannot run {args.notebook}: {err}", file=sys.stderr)
        return 2
    symbols = {"passed": "✓", "failed": "✗", "hidden": "·"}
    for grade_id, status, message in report:
        print(f"{symbols[status]} {grade_id}: {status}{' - ' + message if message else ''}")
    failed = sum(status == "failed" for _, status, _ in report)
    visible = sum(status != "hidden" for _, status, _ in report)
    print(f"{visible - failed} of {visible} visible tests pass" + ("" if passed else "; fix the failures before handing in"))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
