"""A2C, PPO or TRPO on CartPole-v1 over many seeds: env steps and seconds to a 100-episode mean return ≥ 475.

    python benchmarks/seeds.py trpo                      (seeds 1-10, 300k-step budget)
    python benchmarks/seeds.py a2c --seeds 8 --steps 500000
    python benchmarks/seeds.py ppo --seeds 3 --steps 200000

Each seed runs ``rlteach-train ALGO CartPole-v1 --seed S --steps BUDGET --csv -`` (the
library's default config of that algorithm, one torch thread), one after the
other. The episodes stream in as CSV rows ``wall_s,env_steps,episode_return``; the run
is stopped at the first episode where the mean of the last ``--window`` returns reaches
``--threshold`` (or ends with its budget). The table gives, per seed, the env steps and
the wall seconds (counted from process start, imports included) at that episode, the
CPU seconds (user + system) the process used until it was stopped, and the medians.
CPU seconds are the steadier measure on a machine shared with other work.
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]


class SeedResult(NamedTuple):
    """One seed's run: where the moving mean first reached the threshold (None: it never did)."""

    seed: int
    env_steps: int | None
    wall_s: float | None
    cpu_s: float  # user + system seconds of the process until it was stopped
    episodes: int


def train_command(algo: str, seed: int, steps: int) -> list[str]:
    """``rlteach-train`` from this interpreter's environment (``python -m rlteach.train`` when not installed)."""
    exe = shutil.which("rlteach-train", path=str(Path(sys.executable).parent))
    base = [exe] if exe else [sys.executable, "-m", "rlteach.train"]
    return [*base, algo, "CartPole-v1", "--seed", str(seed), "--steps", str(steps), "--csv", "-", "--no-progress"]


def run_seed(algo: str, seed: int, steps: int, threshold: float, window: int) -> SeedResult:
    """Train one seed, reading its episodes as they are written; stop it at the first crossing."""
    proc = subprocess.Popen(train_command(algo, seed, steps), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, bufsize=1)
    assert proc.stdout is not None
    last: collections.deque[float] = collections.deque(maxlen=window)
    hit: tuple[int, float] | None = None
    episodes = 0
    for line in proc.stdout:
        fields = line.strip().split(",")
        if len(fields) != 3 or fields[0] == "wall_s":
            continue
        wall_s, env_steps, episode_return = float(fields[0]), int(fields[1]), float(fields[2])
        episodes += 1
        last.append(episode_return)
        if len(last) == window and sum(last) >= threshold * window - 1e-9:
            hit = (env_steps, wall_s)
            proc.send_signal(signal.SIGTERM)
            break
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if hit is None and proc.returncode != 0:
        raise RuntimeError(f"seed {seed}: rlteach-train exited with status {proc.returncode}")
    cpu_s = usage.ru_utime + usage.ru_stime
    return SeedResult(seed, None if hit is None else hit[0], None if hit is None else hit[1], cpu_s, episodes)


def median_or_nan(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("algo", choices=("a2c", "ppo", "trpo"))
    parser.add_argument("--seeds", type=int, default=10, help="seeds 1..SEEDS (default 10)")
    parser.add_argument("--steps", type=int, default=300_000, help="env-step budget per seed (default 300000)")
    parser.add_argument("--threshold", type=float, default=475.0)
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args(argv)
    print(f"{args.algo.upper()} CartPole-v1, budget {args.steps} steps, threshold: mean of {args.window} episodes >= "
          f"{args.threshold:g}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    print(f"{'seed':>4}  {'env steps':>9}  {'wall s':>7}  {'cpu s':>7}  {'episodes':>8}", flush=True)
    results = []
    for seed in range(1, args.seeds + 1):
        r = run_seed(args.algo, seed, args.steps, args.threshold, args.window)
        results.append(r)
        steps = "-" if r.env_steps is None else str(r.env_steps)
        wall = "-" if r.wall_s is None else f"{r.wall_s:.1f}"
        print(f"{r.seed:>4}  {steps:>9}  {wall:>7}  {r.cpu_s:>7.1f}  {r.episodes:>8}", flush=True)
    reached = [r for r in results if r.env_steps is not None]
    med_steps = median_or_nan([float(r.env_steps) for r in reached if r.env_steps is not None])
    med_wall = median_or_nan([r.wall_s for r in reached if r.wall_s is not None])
    med_cpu = median_or_nan([r.cpu_s for r in reached])
    print(f"median over the {len(reached)} of {len(results)} seeds that reached it: {med_steps:.0f} env steps, "
          f"{med_wall:.1f} s wall, {med_cpu:.1f} s CPU; load average {os.getloadavg()[0]:.1f} at the end", flush=True)
    return 0 if len(reached) == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
