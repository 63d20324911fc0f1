"""Environment throughput: rlteach's torch-batched CartPole against gymnasium's native vector CartPole.

    python benchmarks/envs.py                         (8 … 4096 environments, CPU)
    python benchmarks/envs.py --device cuda --sizes 512 4096 65536

For each number of environments N the table gives env steps per second (N × steps / s)
of three loops, after a warm-up, on one torch thread:

- ``gymnasium``: ``gym.make_vec("CartPole-v1", N, vectorization_mode="vector_entry_point")``
  (gymnasium's numpy-vectorised CartPole), random actions drawn by numpy;
- ``batched``: :class:`rlteach.envs.BatchedCartPole` (float32), random actions drawn by torch
  on the env's device;
- ``rollout``: PPO's rollout on the batched env without the update,
  :func:`rlteach.ppo.collect_batched_rollout` with the library's 4-64-64 actor-critic
  (the policy's draw, the env step, the critic on the final observations, the episode
  bookkeeping), rollouts of 64 steps;
- ``graphed`` (CUDA only): the same rollout with each step one replay of a CUDA graph
  (:class:`rlteach.ppo.CapturedStep`).

On CUDA the batched loops are timed after ``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.course import machine  # noqa: E402
from rlteach.envs import BatchedCartPole  # noqa: E402
from rlteach.policies import make_actor_critic  # noqa: E402
from rlteach.ppo import CapturedStep, collect_batched_rollout, reset_batched_env  # noqa: E402


def gymnasium_rate(num_envs: int, seconds: float) -> float:
    """Env steps per second of gymnasium's vector CartPole under random actions."""
    envs = gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="vector_entry_point")
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 2, (64, num_envs))
    for k in range(10):
        envs.step(actions[k % 64])
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for k in range(64):
            envs.step(actions[k])
        steps += 64
    rate = steps * num_envs / (time.perf_counter() - start)
    envs.close()
    return rate


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(run: Callable[[], int], seconds: float, device: torch.device) -> float:
    """Env steps per second of repeated ``run()`` calls (each returns its env steps), after two warm-up calls."""
    for _ in range(2):
        run()
    _sync(device)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        steps += run()
        _sync(device)
    return steps / (time.perf_counter() - start)


def env_rate(num_envs: int, seconds: float, device: torch.device) -> float:
    """Env steps per second of the batched CartPole under random actions drawn on its device."""
    env = BatchedCartPole(num_envs, device=device)
    env.reset(0)
    g = torch.Generator(device=device).manual_seed(0)

    def run() -> int:
        for _ in range(64):
            env.step((torch.rand(num_envs, generator=g, device=device) < 0.5).long())
        return 64 * num_envs

    return _timed(run, seconds, device)


def rollout_rate(num_envs: int, seconds: float, device: torch.device, graphed: bool) -> float:
    """Env steps per second of PPO's rollout on the batched CartPole (64 steps a rollout), eager or graphed."""
    env = BatchedCartPole(num_envs, device=device)
    policy = make_actor_critic(env.single_observation_space, env.single_action_space,
                               generator=torch.Generator().manual_seed(0)).to(device)
    state = reset_batched_env(env, 0)
    g = torch.Generator(device=device).manual_seed(0)
    captured = CapturedStep(env, policy, state) if graphed else None

    def run() -> int:
        collect_batched_rollout(env, policy, state, 64, g, captured)
        return 64 * num_envs

    return _timed(run, seconds, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32, 128, 512, 1024, 4096])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=1.0, help="timing window per cell")
    parser.add_argument("--no-gymnasium", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    print(f"machine: {machine()}")
    print(f"device: {device}, one torch thread\n")
    graphs = device.type == "cuda"
    print(f"{'N envs':>8} {'gymnasium steps/s':>18} {'batched steps/s':>16} {'rollout':>14} "
          f"{'graphed rollout':>16} {'batched/gym':>12}")
    for n in args.sizes:
        gym_rate = float("nan") if args.no_gymnasium else gymnasium_rate(n, args.seconds)
        batched = env_rate(n, args.seconds, device)
        eager = rollout_rate(n, args.seconds, device, graphed=False)
        graphed = rollout_rate(n, args.seconds, device, graphed=True) if graphs else float("nan")
        print(f"{n:>8} {gym_rate:>18,.0f} {batched:>16,.0f} {eager:>14,.0f} {graphed:>16,.0f} "
              f"{batched / gym_rate:>11.2f}x", flush=True)


if __name__ == "__main__":
    main()
