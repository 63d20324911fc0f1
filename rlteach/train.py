"""``rlteach-train``: train one of the library's algorithms on a gymnasium environment.

.. code-block:: console

    $ rlteach-train a2c CartPole-v1 --seed 1
    $ rlteach-train a2c CartPole-v1 --seed 1 --steps 200000 --csv a2c.csv --device cpu

It trains with the library's default configuration (``--steps`` replaces the step
budget), shows a progress bar on stderr, and writes one CSV row per finished episode,
``wall_s,env_steps,episode_return``, to ``--csv`` (stdout when absent or ``-``), flushed
as each episode ends. ``wall_s`` counts seconds since the *process* started, imports
included, so runs of different libraries compare fairly on one time axis.

Adding an algorithm (TRPO, PPO) is one entry in :data:`ALGORITHMS`: a frozen config
dataclass with the fields ``env_id`` and ``total_steps``, and a training function with
the signature of :class:`TrainFn` (that of :func:`rlteach.actor_critic.train_a2c`), and
optionally ``presets``, configs tuned for other environments (``rlteach-train ppo
Pendulum-v1`` starts from :data:`rlteach.ppo.PENDULUM`, not from the CartPole defaults). This
module is the only place that parses command lines; the library takes configs.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any, NamedTuple, Protocol

import torch

from rlteach.actor_critic import A2CConfig, EpisodeRecord, TrainingLog, train_a2c
from rlteach.device import default_device
from rlteach.ppo import PENDULUM, PPOConfig, train_ppo
from rlteach.trpo import PENDULUM as TRPO_PENDULUM
from rlteach.trpo import TRPOConfig, train_trpo

CSV_COLUMNS = ("wall_s", "env_steps", "episode_return")


class TrainResult(Protocol):
    """What a registered training function returns: at least its training log."""

    @property
    def log(self) -> TrainingLog: ...


class TrainFn(Protocol):
    """What a registered training function accepts (extra keywords must have defaults)."""

    def __call__(self, config: Any, seed: int, *, device: str | torch.device = ..., progress: bool = ...,
                 clock: Callable[[], float] | None = ...,
                 on_episode: Callable[[EpisodeRecord], None] | None = ...) -> TrainResult: ...


class Algorithm(NamedTuple):
    """A registry entry: the config class, the training function, the environments it supports."""

    config: type  # a frozen dataclass with env_id and total_steps fields
    train: TrainFn
    envs: tuple[str, ...]  # gymnasium ids it runs on (its defaults are tuned for the first)
    presets: tuple[Any, ...] = ()  # configs tuned for other environments, used for their env_id


ALGORITHMS: dict[str, Algorithm] = {
    "a2c": Algorithm(A2CConfig, train_a2c, ("CartPole-v1", "CartPole-v0", "Acrobot-v1", "MountainCar-v0")),
    "ppo": Algorithm(PPOConfig, train_ppo, ("CartPole-v1", "Pendulum-v1"), presets=(PENDULUM,)),
    "trpo": Algorithm(TRPOConfig, train_trpo, ("CartPole-v1", "Pendulum-v1"), presets=(TRPO_PENDULUM,)),
}


def process_age() -> float:
    """Seconds since this process started, imports included.

    On Linux, from the start time in ``/proc/self/stat`` (clock ticks since boot) and
    ``CLOCK_BOOTTIME``, to 1/``SC_CLK_TCK`` s (10 ms). Elsewhere from psutil's creation
    time where psutil is installed; failing both, 0 (the count starts now).
    """
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime, in clock ticks since boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - started
        if age >= 0:
            return age
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil

        return max(0.0, time.time() - psutil.Process().create_time())
    except Exception:  # psutil absent or unable to read this process
        return 0.0


def _parser() -> argparse.ArgumentParser:
    supported = "; ".join(f"{name}: {', '.join(algo.envs)}" for name, algo in ALGORITHMS.items())
    parser = argparse.ArgumentParser(
        prog="rlteach-train",
        description="Train an rlteach algorithm with its default configuration; one CSV row per finished episode.",
        epilog=f"Supported algorithms and environments: {supported}.")
    parser.add_argument("algorithm", help=f"one of: {', '.join(ALGORITHMS)}")
    parser.add_argument("env_id", help="a gymnasium environment id, e.g. CartPole-v1")
    parser.add_argument("--seed", type=int, default=1, help="seeds environments, initialisation and sampling (default 1)")
    parser.add_argument("--steps", type=int, default=None, help="environment steps to train for (default: the config's)")
    parser.add_argument("--csv", default="-", metavar="PATH",
                        help=f"where to write the episodes ({','.join(CSV_COLUMNS)}); '-' (default): stdout")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: $RLTEACH_DEVICE, else cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: fastest for these small networks)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--env-backend", choices=("gymnasium", "batched"), default=None,
                        help="ppo only: 'batched' steps rlteach.envs on the training device (default: gymnasium)")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="ppo with --env-backend batched --device cuda: replay each rollout step as one CUDA graph")
    return parser


def _resolve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[Algorithm, Any, torch.device]:
    """The registry entry, the config and the device the arguments name, or a parser error."""
    algorithm = ALGORITHMS.get(args.algorithm.lower())
    if algorithm is None:
        parser.error(f"unknown algorithm {args.algorithm!r}; supported algorithms: {', '.join(ALGORITHMS)}")
    if args.env_id not in algorithm.envs:
        parser.error(f"{args.algorithm} does not support environment {args.env_id!r}; "
                     f"supported environments: {', '.join(algorithm.envs)}")
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps {args.steps}: must be >= 1")
    if args.threads < 1:
        parser.error(f"--threads {args.threads}: must be >= 1")
    try:
        device = torch.device(args.device) if args.device is not None else default_device()
    except (ValueError, RuntimeError) as err:
        parser.error(str(err))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device; use --device cpu")
    changes: dict[str, Any] = {"env_id": args.env_id}
    if args.steps is not None:
        changes["total_steps"] = args.steps
    if args.env_backend is not None:
        if args.algorithm.lower() != "ppo":
            parser.error(f"--env-backend: only ppo runs on the batched environments, not {args.algorithm}")
        changes["env_backend"] = args.env_backend
    if args.cuda_graph:
        if changes.get("env_backend") != "batched" or device.type != "cuda":
            parser.error("--cuda-graph: needs ppo with --env-backend batched and --device cuda")
        changes["cuda_graph"] = True
    base = next((preset for preset in algorithm.presets if preset.env_id == args.env_id), None)
    try:
        config = dataclasses.replace(base if base is not None else algorithm.config(), **changes)
    except ValueError as err:
        parser.error(str(err))
    return algorithm, config, device


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rlteach-train``; returns the exit status (argument errors exit with status 2)."""
    started = time.perf_counter() - process_age()  # the perf_counter reading at process start
    parser = _parser()
    args = parser.parse_args(argv)
    algorithm, config, device = _resolve(parser, args)
    torch.set_num_threads(args.threads)
    out: IO[str] = sys.stdout if args.csv == "-" else open(args.csv, "w", newline="")
    try:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        out.flush()

        def write(record: EpisodeRecord) -> None:
            writer.writerow((f"{record.wall_s:.3f}", record.env_steps, f"{record.episode_return:g}"))
            out.flush()

        result = algorithm.train(config, args.seed, device=device, progress=not args.no_progress,
                                 clock=lambda: time.perf_counter() - started, on_episode=write)
    finally:
        if out is not sys.stdout:
            out.close()
    log, seconds = result.log, time.perf_counter() - started
    summary = (f"mean return of the last {min(100, len(log.episodes))} {log.mean_return(100):.1f}" if log.episodes
               else "no episode finished within the budget")
    print(f"{args.algorithm} {args.env_id} seed {args.seed}: {len(log.episodes)} episodes, {summary}, "
          f"{seconds:.1f} s since the process started", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
