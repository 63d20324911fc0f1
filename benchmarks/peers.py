"""Race rlteach against its peer library: env steps and wall time to a 100-episode mean return ≥ 475.

    make bench-peers                                  (PPO on CartPole-v1, 5 seeds)
    make bench-peers BENCH_ALGO=trpo                  (TRPO against sb3-contrib's)
    .venv-bench/bin/python benchmarks/peers.py --algo ppo --env Pendulum-v1 --threshold -250

For each seed, ``rlteach-train ALGO ENV --seed S --csv …`` and ``benchmarks/sb3_runner.py``
(Stable-Baselines3 / sb3-contrib with rl-baselines3-zoo's hyperparameters) run one after
the other, each pinned with ``taskset`` to the same CPU core, their order alternating
from seed to seed. Both write one CSV row per finished episode,
``wall_s,env_steps,episode_return``, with ``wall_s`` counted from process start (imports
included). A run is stopped as soon as its CSV shows the mean of the last ``--window``
returns at or above ``--threshold`` (or when its budget ends). The table gives, per
library, the median [min–max] env steps and wall seconds at that first crossing, the CPU
seconds each process used until it was stopped (steadier than wall time on a machine
shared with other work), and the ratios rlteach / peer of the medians.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
PEERS = {"ppo": "Stable-Baselines3 PPO", "trpo": "sb3-contrib TRPO"}


class Crossing(NamedTuple):
    """Where one run's moving mean first reached the threshold (None fields: it never did)."""

    env_steps: int | None
    wall_s: float | None
    episodes: int  # episodes the run recorded
    cpu_s: float = math.nan  # CPU seconds (user + sys) the process used until it was stopped


def first_crossing(path: Path, threshold: float, window: int) -> Crossing:
    """The first episode at which the mean of the last ``window`` returns is ≥ ``threshold``."""
    rows = []
    if path.exists():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                try:
                    rows.append((float(row["wall_s"]), int(row["env_steps"]), float(row["episode_return"])))
                except (KeyError, TypeError, ValueError):  # a partly written last line
                    break
    total = 0.0
    for i, (wall_s, env_steps, episode_return) in enumerate(rows):
        total += episode_return
        if i >= window:
            total -= rows[i - window][2]
        if i + 1 >= window and total >= threshold * window - 1e-9:
            return Crossing(env_steps, wall_s, len(rows))
    return Crossing(None, None, len(rows))


def race(command: list[str], csv_path: Path, threshold: float, window: int, timeout: float) -> Crossing:
    """Run ``command`` until its CSV crosses the threshold, it exits, or ``timeout`` seconds pass.

    The child is reaped with ``os.wait4``, whose resource usage gives its CPU time: on a
    machine shared with other work, CPU seconds vary far less than wall seconds.
    """
    started = time.monotonic()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        return _watch(proc, command, csv_path, threshold, window, timeout, started)
    finally:
        if proc.returncode is None:  # interrupted: leave no run behind
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -9


def _watch(proc: subprocess.Popen, command: list[str], csv_path: Path, threshold: float, window: int,
           timeout: float, started: float) -> Crossing:
    """Poll the run and its CSV (see :func:`race`); reap it with ``os.wait4`` for its CPU time."""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.25)
        crossing = first_crossing(csv_path, threshold, window)
        if crossing.env_steps is not None or time.monotonic() - started > timeout:
            proc.terminate()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.stderr is not None:
                proc.stderr.close()
            return crossing._replace(cpu_s=usage.ru_utime + usage.ru_stime)
    stderr = proc.stderr.read() if proc.stderr is not None else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {proc.returncode}:\n{stderr[-2000:]}")
    return first_crossing(csv_path, threshold, window)._replace(cpu_s=usage.ru_utime + usage.ru_stime)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}"


def summary(values: list[float | None], fmt: str) -> str:
    reached = [v for v in values if v is not None]
    if not reached:
        return "never"
    text = f"{format(statistics.median(reached), fmt)} [{format(min(reached), fmt)}–{format(max(reached), fmt)}]"
    return text if len(reached) == len(values) else f"{text} ({len(reached)}/{len(values)} reached)"


def median_or_none(values: list[float | None]) -> float | None:
    reached = [v for v in values if v is not None]
    return statistics.median(reached) if reached else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algo", choices=sorted(PEERS), default="ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 1..N (default 5)")
    parser.add_argument("--threshold", type=float, default=475.0)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--core", type=int, default=None, help="CPU core to pin both runs to (default: the last)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a run is given up")
    args = parser.parse_args(argv)
    try:
        import sb3_contrib  # noqa: F401
        import stable_baselines3  # noqa: F401
    except ImportError:
        print("benchmarks/peers.py needs the bench extra: run 'make bench-peers' (it builds .venv-bench)", file=sys.stderr)
        return 2
    core = args.core if args.core is not None else max(os.sched_getaffinity(0))
    pin = ["taskset", "-c", str(core)]
    libraries = ("rlteach", PEERS[args.algo])
    results: dict[str, list[Crossing]] = {name: [] for name in libraries}
    with tempfile.TemporaryDirectory(prefix="rlteach-peers-") as tmp:
        for seed in range(1, args.seeds + 1):
            commands = {
                "rlteach": [*pin, sys.executable, "-m", "rlteach.train", args.algo, args.env, "--seed", str(seed),
                            "--no-progress", "--csv"],
                PEERS[args.algo]: [*pin, sys.executable, str(ROOT / "benchmarks" / "sb3_runner.py"), args.algo,
                                   args.env, "--seed", str(seed), "--csv"],
            }
            order = libraries if seed % 2 else libraries[::-1]
            for name in order:
                path = Path(tmp) / f"{name.split()[0]}-{seed}.csv"
                crossing = race([*commands[name], str(path)], path, args.threshold, args.window, args.timeout)
                results[name].append(crossing)
                print(f"seed {seed} {name}: steps {crossing.env_steps}, wall {crossing.wall_s} s, "
                      f"cpu {crossing.cpu_s:.1f} s ({crossing.episodes} episodes)", file=sys.stderr, flush=True)
    print(f"\n{args.algo.upper()} on {args.env}: env steps and wall seconds (from process start) to a "
          f"{args.window}-episode mean return ≥ {args.threshold:g}; {args.seeds} seeds, each run pinned to core {core}")
    print(f"machine: {machine()}\n")
    print(f"{'library':<24} {'env steps, median [min–max]':<32} {'wall s, median [min–max]':<26} "
          f"{'CPU s to the stop':<22}")
    for name in libraries:
        steps = [c.env_steps for c in results[name]]
        walls = [c.wall_s for c in results[name]]
        cpus = [c.cpu_s for c in results[name]]
        print(f"{name:<24} {summary(steps, ',.0f'):<32} {summary(walls, '.1f'):<26} {summary(cpus, '.1f'):<22}")
    fields = ("env_steps", "wall_s", "cpu_s")
    ours = [median_or_none([getattr(c, f) for c in results["rlteach"]]) for f in fields]
    theirs = [median_or_none([getattr(c, f) for c in results[PEERS[args.algo]]]) for f in fields]
    ratios = [f"{a / b:.2f}×" if a is not None and b else "n/a" for a, b in zip(ours, theirs, strict=True)]
    print(f"\nratio rlteach / peer (medians): env steps {ratios[0]}, wall time {ratios[1]}, CPU time {ratios[2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
