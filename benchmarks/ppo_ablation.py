"""PPO's implementation details on CartPole-v1, each switched in turn: env steps to a 100-episode mean ≥ 475.

    make bench-ablation                                   (5 seeds, one process)
    python benchmarks/ppo_ablation.py --seeds 5 --jobs 2
    python benchmarks/ppo_ablation.py --only baseline "no GAE" --seeds 3

Every row trains :func:`rlteach.ppo.train_ppo` from :class:`rlteach.ppo.PPOConfig`'s
defaults (rl-baselines3-zoo's CartPole-v1 settings, every detail on except value
clipping and the entropy bonus) with one field changed: a detail that is on by default
is switched off, value clipping and the entropy bonus are switched on. Each run stops at
the first episode where the mean of the last 100 returns reaches 475, or at the end of
the step budget (``--steps``, the config's 100k by default). The table gives, per
detail, the median env steps to that episode over the seeds that reached it, how many
seeds did, the median mean return of the last 100 episodes when the run ended, and the
median wall and CPU seconds of a run (training alone, one torch thread). Issue 13, point 2;
Engstrom et al. 2020, Andrychowicz et al. 2021, Huang et al. 2022.

Runs go to ``--jobs`` worker processes (one torch thread each); on a shared machine
``--jobs 1`` pinned with ``taskset -c CORE`` keeps the wall column comparable across rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.peers import machine

THRESHOLD, WINDOW = 475.0, 100

# (detail, PPOConfig fields that change; None: not run, with the reason)
VARIANTS: list[tuple[str, dict[str, Any] | str]] = [
    ("baseline (defaults)", {}),
    ("no orthogonal init", {"orthogonal_init": False}),
    ("Adam ε = 1e-8 (PyTorch's default)", {"adam_eps": 1e-8}),
    ("no lr annealing", {"anneal_lr": False}),
    ("no clip-ε annealing", {"anneal_clip_eps": False}),
    ("no GAE (discounted returns)", {"use_gae": False}),
    ("no shuffled minibatches", "same as baseline: one full-batch minibatch per epoch, nothing to shuffle"),
    ("no advantage normalization", {"normalize_adv": False}),
    ("no clipped surrogate (L^CPI)", {"clip_surrogate": False}),
    ("value clipping on", {"clip_value": True}),
    ("entropy bonus on (c_e = 0.01)", {"ent_coef": 0.01}),
    ("no gradient clipping", {"max_grad_norm": math.inf}),
    ("no vector envs (1 env × 256 steps)", {"num_envs": 1, "num_steps": 256}),
]


class Run(NamedTuple):
    """One (detail, seed) run."""

    detail: str
    seed: int
    env_steps: int | None  # at the first 100-episode mean ≥ 475; None: not within the budget
    final_return: float  # mean return of the last 100 episodes when the run ended
    wall_s: float  # training alone
    cpu_s: float  # CPU seconds of the training (steadier than wall time on a shared machine)


def run_one(detail: str, changes: dict[str, Any], seed: int, steps: int) -> Run:
    """Train one seed of one variant in this process (one torch thread)."""
    import torch

    from rlteach.ppo import PPOConfig, train_ppo

    torch.set_num_threads(1)
    config = dataclasses.replace(PPOConfig(), total_steps=steps, **changes)
    started, cpu_started = time.perf_counter(), time.process_time()
    result = train_ppo(config, seed, progress=False, target_return=THRESHOLD, window=WINDOW)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    hit = result.log.first_reaching(THRESHOLD, WINDOW)
    return Run(detail, seed, hit.env_steps if hit is not None else None, result.log.mean_return(WINDOW), wall, cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 1..N (default 5)")
    parser.add_argument("--steps", type=int, default=100_000, help="env-step budget of a run (default 100k)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--only", nargs="+", metavar="DETAIL", help="run only the rows whose name starts so")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.steps < 1 or args.jobs < 1:
        parser.error("--seeds, --steps and --jobs must be >= 1")
    variants = [(name, changes) for name, changes in VARIANTS
                if not args.only or any(name.startswith(prefix) for prefix in args.only)]
    # seed-major: stopped early (Ctrl-C), the table still covers every row with the seeds done so far
    tasks = [(name, changes, seed, args.steps) for seed in range(1, args.seeds + 1) for name, changes in variants
             if isinstance(changes, dict)]
    started = time.perf_counter()
    runs: dict[str, list[Run]] = {name: [] for name, _ in variants}
    pool = ProcessPoolExecutor(max_workers=args.jobs)
    try:
        for future in [pool.submit(run_one, *task) for task in tasks]:
            run = future.result()
            runs[run.detail].append(run)
            steps = f"{run.env_steps:,}" if run.env_steps is not None else "not reached"
            print(f"{run.detail} seed {run.seed}: {steps}, final {run.final_return:.1f}, {run.wall_s:.1f} s, "
                  f"cpu {run.cpu_s:.1f} s", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted: the table holds the runs that finished", file=sys.stderr)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    print(f"\nPPO on CartPole-v1, one implementation detail changed per row: env steps to a {WINDOW}-episode mean "
          f"return ≥ {THRESHOLD:g} (budget {args.steps:,}); seeds 1-{args.seeds}, {args.jobs} worker process(es), "
          f"one torch thread each; {time.perf_counter() - started:.0f} s in all")
    print(f"machine: {machine()}\n")
    header = (f"{'detail':<38} {'env steps (median)':>19} {'solved':>7} {'final return':>13} {'wall s':>7} "
              f"{'CPU s':>6}")
    print(header)
    print("-" * len(header))
    for name, changes in variants:
        if not isinstance(changes, dict):
            print(f"{name:<38} {changes}")
            continue
        rs = runs[name]
        if not rs:
            print(f"{name:<38} not run")
            continue
        reached = [r.env_steps for r in rs if r.env_steps is not None]
        steps = f"{statistics.median(reached):,.0f}" if reached else "not reached"
        print(f"{name:<38} {steps:>19} {f'{len(reached)}/{len(rs)}':>7} "
              f"{statistics.median(r.final_return for r in rs):>13.1f} {statistics.median(r.wall_s for r in rs):>7.1f} "
              f"{statistics.median(r.cpu_s for r in rs):>6.1f}")
    print("\nenv steps: median over the seeds that reached the threshold; final return: median over all seeds of the "
          f"last-{WINDOW}-episode mean when the run stopped; wall s, CPU s: medians per run, training alone")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
