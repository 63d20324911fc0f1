"""Class-grading benchmark: the same submissions graded by rlteach-grade's engine
sequentially (1 worker) and in parallel (one worker per core), each kernel in the
sandbox, and in parallel without it; prints times, the speed-up, the sandbox's cost and
whether all runs gave identical scores.

    .venv/bin/python benchmarks/classroom.py [--students 100] [--assignment 01_importance_sampling]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.course import machine  # noqa: E402
from rlteach.grading.classroom import grade_class  # noqa: E402
from tests.nbgrader_course import Course, filled  # noqa: E402

NAIVE = "def importance_weights(logp_target, logp_proposal):\n    return logp_target.exp() / logp_proposal.exp()\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--assignment", default="01_importance_sampling")
    args = parser.parse_args()
    workers = os.cpu_count() or 1
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, n_workers, sandboxed in (("sequential", 1, True), ("parallel", workers, True),
                                            ("no sandbox", workers, False)):
            (Path(tmp) / label).mkdir()
            course = Course(Path(tmp) / label)
            course.generate(args.assignment)
            exercise, solution = course.notebook("exercises", args.assignment), course.notebook("solutions", args.assignment)
            first_part = next(c.metadata["nbgrader"]["grade_id"] for c in solution.cells
                              if c.metadata.get("nbgrader", {}).get("solution"))
            variants = [filled(exercise, solution), exercise]
            if args.assignment == "01_importance_sampling":
                variants.append(filled(exercise, solution, {first_part: NAIVE}))
            for i in range(args.students):
                course.submit(f"student{i:03d}", args.assignment, variants[i % len(variants)])
            start = time.perf_counter()
            results = grade_class(course.root, args.assignment, workers=n_workers, progress=False, sandboxed=sandboxed)
            seconds = time.perf_counter() - start
            with sqlite3.connect(course.root / "grading" / "gradebook.db") as db:
                rows = db.execute("SELECT count(*), count(DISTINCT student_id) FROM submitted_assignment").fetchone()
                grades = db.execute("SELECT count(*) FROM grade").fetchone()[0]
            runs[label] = (n_workers, seconds, [(r.student, r.scores) for r in results], (*rows, grades))
    print(f"machine: {machine()}\n")
    print(f"{args.students} submissions of {args.assignment}")
    print(f"{'run':<12} {'workers':>7} {'seconds':>8} {'s/submission':>13} {'submissions':>12} {'students':>9} {'grade rows':>11}")
    for label, (n, seconds, _, (subs, students, grades)) in runs.items():
        print(f"{label:<12} {n:>7} {seconds:8.1f} {seconds / args.students:13.2f} {subs:>12} {students:>9} {grades:>11}")
    speedup = runs["sequential"][1] / runs["parallel"][1]
    overhead = runs["parallel"][1] / runs["no sandbox"][1] - 1
    same = runs["sequential"][2] == runs["parallel"][2] == runs["no sandbox"][2]
    print(f"\nspeed-up {speedup:.2f}x; sandbox cost {overhead:+.1%} of the parallel time; identical scores: {same}")


if __name__ == "__main__":
    main()
