"""Train a Stable-Baselines3 (or sb3-contrib) peer with rl-baselines3-zoo's hyperparameters; one CSV row per episode.

    .venv-bench/bin/python benchmarks/sb3_runner.py ppo CartPole-v1 --seed 1 --csv sb3.csv

The CSV has the columns of ``rlteach-train``, ``wall_s,env_steps,episode_return``, with
``wall_s`` in seconds since this *process* started (imports included), so that
:mod:`benchmarks.peers` compares both libraries on one time axis. Needs the ``bench``
extra (stable-baselines3, sb3-contrib), which lives in ``.venv-bench`` only.

The hyperparameters are rl-baselines3-zoo's tuned entries (hyperparams/ppo.yml and
hyperparams/trpo.yml, CartPole-v1 and Pendulum-v1), quoted in :data:`ZOO`; everything else is the
library's default (MlpPolicy: two tanh layers of 64, orthogonal initialisation). Torch
runs on one CPU thread, as ``rlteach-train`` does by default.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from typing import Any

# rl-baselines3-zoo, hyperparams/ppo.yml and hyperparams/trpo.yml, entries CartPole-v1 and Pendulum-v1 (tuned).
# "lin_x" is a linear schedule from x to 0 over the budget. TRPO on CartPole-v1 gets the 300k budget that
# rlteach's TRPO has (the zoo's entry says 100k; its schedules are constant, so only the budget changes).
ZOO: dict[str, dict[str, dict[str, Any]]] = {
    "ppo": {"CartPole-v1": {"n_envs": 8, "n_timesteps": 100_000, "n_steps": 32, "batch_size": 256,
                            "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20, "ent_coef": 0.0,
                            "learning_rate": "lin_0.001", "clip_range": "lin_0.2"},
            "Pendulum-v1": {"n_envs": 4, "n_timesteps": 100_000, "n_steps": 1024, "gae_lambda": 0.95,
                            "gamma": 0.9, "n_epochs": 10, "ent_coef": 0.0, "learning_rate": 1e-3,
                            "clip_range": 0.2, "use_sde": True, "sde_sample_freq": 4}},
    "trpo": {"CartPole-v1": {"n_envs": 2, "n_timesteps": 300_000, "n_steps": 512, "batch_size": 512,
                             "cg_damping": 1e-3, "gae_lambda": 0.98, "gamma": 0.99, "learning_rate": 1e-3,
                             "n_critic_updates": 20},
             "Pendulum-v1": {"n_envs": 2, "n_timesteps": 100_000, "n_steps": 1024, "gamma": 0.9,
                             "n_critic_updates": 15, "use_sde": True, "sde_sample_freq": 4}},
}


def process_age() -> float:
    """Seconds since this process started, from ``/proc/self/stat`` (the method of ``rlteach.train.process_age``).

    Read here rather than imported, so that the peer does not pay for importing rlteach.
    Falls back to 0 (the count starts now) where ``/proc`` is missing.
    """
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time in clock ticks since boot
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


START = time.perf_counter() - process_age()  # the perf_counter reading at process start, before the heavy imports

import torch  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402


def schedule(value: float | str) -> Any:
    """A zoo value: a number, or ``"lin_x"``, a step size falling linearly from x to 0 (SB3 passes 1 → 0)."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


class EpisodeWriter(BaseCallback):
    """Writes ``wall_s,env_steps,episode_return`` for every episode that the Monitor wrappers report."""

    def __init__(self, out: Any) -> None:
        super().__init__()
        self.out = out
        self.writer = csv.writer(out, lineterminator="\n")

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            episode = info.get("episode")
            if episode is not None:
                self.writer.writerow((f"{time.perf_counter() - START:.3f}", self.num_timesteps, f"{episode['r']:g}"))
                self.out.flush()
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("algorithm", choices=sorted(ZOO))
    parser.add_argument("env_id")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--csv", default="-", metavar="PATH")
    args = parser.parse_args(argv)
    if args.env_id not in ZOO[args.algorithm]:
        parser.error(f"no zoo entry for {args.algorithm} on {args.env_id}; known: {', '.join(ZOO[args.algorithm])}")
    params = dict(ZOO[args.algorithm][args.env_id])
    torch.set_num_threads(1)
    n_envs, budget = params.pop("n_envs"), params.pop("n_timesteps")
    params = {name: schedule(value) for name, value in params.items()}
    if args.algorithm == "ppo":
        from stable_baselines3 import PPO as Algo
    else:
        from sb3_contrib import TRPO as Algo
    envs = make_vec_env(args.env_id, n_envs=n_envs, seed=args.seed)  # DummyVecEnv of Monitor-wrapped envs, as the zoo
    model = Algo("MlpPolicy", envs, seed=args.seed, device="cpu", verbose=0, **params)
    out = sys.stdout if args.csv == "-" else open(args.csv, "w", newline="")
    try:
        out.write("wall_s,env_steps,episode_return\n")
        out.flush()
        model.learn(total_timesteps=budget, callback=EpisodeWriter(out))
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
