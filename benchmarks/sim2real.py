"""Sim-to-real on CartPole over several seeds: PPO trained nominal, PPO trained with domain randomisation, and LQR.

    make bench-sim2real                              (seeds 1-5)
    python benchmarks/sim2real.py --seeds 2

Per seed S (one torch thread, issue 15, points 3 and 4):

* ``nominal``: PPO (the library's CartPole defaults, ``env_backend="batched"``) trained on the
  nominal CartPole until the mean return of the last 100 episodes reaches 475 (budget 100k
  steps); its environment steps and wall seconds to get there. The same run, timed, is the
  batched column of the last table.
* ``DR``: the same PPO with ``randomize`` = action delay 0-2 steps, half-length 0.25-1.0 m,
  actuator gain 0.5-1.0, drawn per episode (budget 200k steps).
* ``gymnasium``: the same PPO on gymnasium's vector env (the default backend), to 475.
* ``LQR``: :func:`rlteach.lqr.dare` on :func:`rlteach.lqr.cartpole_linearization` of the nominal
  CartPole, Q = diag(1, 1, 10, 1), R = 0.1 (the force in newtons), bang-bang on the sign of −Kx;
  the milliseconds of the solve (median of 20). It has no seed.

Each controller is evaluated greedily (:func:`rlteach.sim2real.shift_curve`, 64 environments,
start seeds 10,000 +) on "real" systems whose action delay or pole half-length is shifted; the
table gives the mean return of the first episode (500 is the time limit). Seconds are wall
seconds on this machine (slower when it is shared).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch

from benchmarks.course import machine
from rlteach import ppo
from rlteach.lqr import cartpole_linearization, dare
from rlteach.sim2real import greedy_controller, lqr_controller, shift_curve

DR = (("action_delay", 0.0, 2.0), ("length", 0.25, 1.0), ("gain", 0.5, 1.0))
SHIFTS = {"action_delay": [0.0, 1.0, 2.0, 3.0], "length": [0.5, 1.0, 1.5, 2.5]}
SHORT = {"action_delay": "delay", "length": "half-length"}


def lqr_gain() -> tuple[torch.Tensor, float]:
    """The LQR gain of the nominal CartPole and the median milliseconds of one solve (linearisation included)."""
    Q, R = torch.diag(torch.tensor([1.0, 1.0, 10.0, 1.0], dtype=torch.float64)), torch.tensor([[0.1]], dtype=torch.float64)
    times = []
    for _ in range(20):
        start = time.perf_counter()
        A, B = cartpole_linearization()
        K = dare(A, B, Q, R).K
        times.append(1e3 * (time.perf_counter() - start))
    return K, statistics.median(times)


def train(seed: int, backend: str, randomize: tuple[tuple[str, float, float], ...], budget: int) -> tuple[ppo.PPOResult, float]:
    config = ppo.PPOConfig(env_backend=backend, randomize=randomize, total_steps=budget)
    start = time.perf_counter()
    result = ppo.train_ppo(config, seed, progress=False, target_return=475.0, window=100)
    return result, time.perf_counter() - start


def returns_along_shifts(act: Callable[[torch.Tensor], torch.Tensor]) -> list[float]:
    return [float(v) for name, values in SHIFTS.items() for v in shift_curve(act, "CartPole-v1", name, values).mean]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="seeds 1 … SEEDS")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {machine()}")
    K, lqr_ms = lqr_gain()
    print(f"LQR: gain K = {[round(k, 2) for k in K[0].tolist()]}, {lqr_ms:.1f} ms a solve (median of 20)\n")
    lqr_returns = returns_along_shifts(lqr_controller(K))
    shift_head = " ".join(f"{SHORT[n]} {v:g}".rjust(11) for n, vs in SHIFTS.items() for v in vs)
    train_rows, return_rows = [], [f"{'LQR':>8} {'-':>4} " + " ".join(f"{r:>11.0f}" for r in lqr_returns)]
    for seed in range(1, args.seeds + 1):
        nominal, nominal_s = train(seed, "batched", (), 100_000)
        robust, robust_s = train(seed, "batched", DR, 200_000)
        on_gymnasium, gym_s = train(seed, "gymnasium", (), 100_000)
        gym_steps = on_gymnasium.log.episodes[-1].env_steps
        train_rows.append((seed, nominal.log.episodes[-1].env_steps, nominal_s, nominal.log.mean_return(100),
                           robust.log.episodes[-1].env_steps, robust_s, gym_steps, gym_s))
        for name, result in (("nominal", nominal), ("DR", robust)):
            rets = returns_along_shifts(greedy_controller(result.policy))
            return_rows.append(f"{name:>8} {seed:>4} " + " ".join(f"{r:>11.0f}" for r in rets))
        print(f"seed {seed} done", file=sys.stderr, flush=True)
    print("PPO training (to a 100-episode mean of 475; steps, wall seconds):")
    print(f"{'seed':>4} {'nominal steps':>14} {'s':>6} {'mean100':>8} {'DR steps':>9} {'s':>6} "
          f"{'gymnasium steps':>16} {'s':>6} {'batched/gym time':>17}")
    for seed, n_steps, n_s, n_ret, d_steps, d_s, g_steps, g_s in train_rows:
        print(f"{seed:>4} {n_steps:>14,} {n_s:>6.1f} {n_ret:>8.1f} {d_steps:>9,} {d_s:>6.1f} {g_steps:>16,} {g_s:>6.1f} "
              f"{n_s / g_s:>16.2f}x" + ("" if n_ret >= 475 else "  (nominal: 475 not reached in the budget)"))
    print("\nMean return on the shifted systems (64 envs, greedy; 500 = time limit; nominal: delay 0, half-length 0.5):")
    print(f"{'':>8} {'seed':>4} {shift_head}")
    print("\n".join(return_rows))
    print(f"\ncompute: LQR {lqr_ms:.1f} ms; PPO nominal {statistics.mean(r[2] for r in train_rows):.1f} s, "
          f"DR {statistics.mean(r[5] for r in train_rows):.1f} s (mean over seeds)")


if __name__ == "__main__":
    main()
