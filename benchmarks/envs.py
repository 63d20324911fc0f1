"""Environment throughput: rlteach's torch-batched CartPole against gymnasium's native vector CartPole.

    python benchmarks/envs.py                         (8 … 4096 environments, CPU)
    python benchmarks/envs.py --device cuda --sizes 512 4096 65536

For each number of environments N the table gives env steps per second (N × steps / s)
of three loops, after a warm-up, on one torch thread:

- ``gymnasium``: ``gym.make_vec("CartPole-v1", N, vectorization_mode="vector_entry_point")``
  (gymnasium's numpy-vectorised CartPole), random actions drawn by numpy;
- ``batched``: :class:`rlteach.envs.BatchedCartPole` (float32), random actions drawn by torch
  on the env's device;
- ``policy+batched``: the batched env driven by a 4-64-64-2 tanh MLP sampling its actions,
  the rollout loop of PPO without the update.

On CUDA the batched loops are timed after ``torch.cuda.synchronize()``. (No CUDA-graph
capture: the batched env replaces its state tensors at each step, so a replayed graph would
repeat one step; capturing needs in-place state updates first.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.course import machine  # noqa: E402
from rlteach.envs import BatchedCartPole  # noqa: E402


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


def batched_rate(num_envs: int, seconds: float, device: torch.device, with_policy: bool) -> float:
    """Env steps per second of the batched CartPole, with random actions or a policy's samples."""
    env = BatchedCartPole(num_envs, device=device)
    obs = env.reset(0)
    g = torch.Generator(device=device).manual_seed(0)
    policy = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2)).to(device)

    @torch.no_grad()
    def one_step(obs: torch.Tensor) -> torch.Tensor:
        if with_policy:
            logits = policy(obs)
            u = torch.rand(logits.shape, generator=g, device=device)
            action = torch.argmax(logits - torch.log(-torch.log(u)), dim=1)  # Gumbel-max: a ~ softmax(logits)
        else:
            action = (torch.rand(num_envs, generator=g, device=device) < 0.5).long()
        return env.step(action).obs

    step = one_step
    for _ in range(10):
        obs = step(obs)
    _sync(device)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(64):
            obs = step(obs)
        _sync(device)
        steps += 64
    return steps * num_envs / (time.perf_counter() - start)


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
    print(f"{'N envs':>8} {'gymnasium steps/s':>18} {'batched steps/s':>16} {'policy+batched':>15} {'batched/gym':>12}")
    for n in args.sizes:
        gym_rate = float("nan") if args.no_gymnasium else gymnasium_rate(n, args.seconds)
        env_rate = batched_rate(n, args.seconds, device, with_policy=False)
        pol_rate = batched_rate(n, args.seconds, device, with_policy=True)
        print(f"{n:>8} {gym_rate:>18,.0f} {env_rate:>16,.0f} {pol_rate:>15,.0f} {env_rate / gym_rate:>11.2f}x", flush=True)


if __name__ == "__main__":
    main()
