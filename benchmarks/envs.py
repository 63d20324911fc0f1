"""Environment throughput: rlteach's torch-batched CartPole against gymnasium's native vector CartPole.

    python benchmarks/envs.py                         (8 … 4096 environments, CPU)
    python benchmarks/envs.py --device cuda --sizes 512 4096 65536
    python benchmarks/envs.py --solve --solve-envs 512 --seeds 1 2 3   (add --device cuda on a GPU)

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

``--solve`` times PPO training instead: :func:`rlteach.ppo.train_ppo` on the batched
CartPole with :data:`SOLVE` (many environments, a few minibatch epochs per rollout), from
the call to the first 100-episode mean return ≥ 475, per number of environments and seed,
eager and (CUDA) graphed. Start-up (imports, CUDA context) is left out and named apart.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from rlteach.ppo import CapturedStep, PPOConfig, collect_batched_rollout, reset_batched_env, train_ppo  # noqa: E402


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


SOLVE = PPOConfig(env_backend="batched", num_envs=512, num_steps=32, update_epochs=10, num_minibatches=4, lr=2e-3,
                  gamma=0.99, gae_lambda=0.95)
"""PPO for many environments: 32 steps a rollout, 10 epochs of 4 minibatches, lr 2e-3 and ε 0.2 annealed over
100 rollouts. Measured on the 2-core CPU (``--solve --solve-envs 512 2048 --seeds 1 2 3``): a 100-episode mean
of 475 after 21-22 updates with 512 environments (332k-347k env steps, 13-16 s) and 20 with 2048 (1.25M-1.29M, 43-48 s):
the number of updates, not of samples, sets the time, which is where a GPU helps."""


def solve(num_envs: int, seed: int, device: torch.device, graphed: bool) -> tuple[int | None, float, int]:
    """Env steps and seconds to the first 100-episode mean ≥ 475 (None: not within 100 rollouts), and updates run."""
    config = dataclasses.replace(SOLVE, num_envs=num_envs, total_steps=num_envs * SOLVE.num_steps * 100,
                                 cuda_graph=graphed)
    _sync(device)
    start = time.perf_counter()
    result = train_ppo(config, seed, device=device, progress=False, target_return=475.0)
    _sync(device)
    seconds = time.perf_counter() - start
    hit = result.log.first_reaching(475.0)
    return (hit.env_steps if hit is not None else None), seconds, len(result.updates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32, 128, 512, 1024, 4096])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=1.0, help="timing window per cell")
    parser.add_argument("--no-gymnasium", action="store_true")
    parser.add_argument("--solve", action="store_true", help="time PPO training to a 100-episode mean of 475 instead")
    parser.add_argument("--solve-envs", type=int, nargs="+", default=[512])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    print(f"machine: {machine()}")
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    print(f"device: {device}, one torch thread\n")
    if args.solve:
        _sync(device)
        modes = [False, True] if device.type == "cuda" else [False]
        print(f"{'N envs':>8} {'seed':>5} {'mode':>8} {'env steps':>10} {'updates':>8} {'seconds':>8}")
        for n in args.solve_envs:
            for seed in args.seeds:
                for graphed in modes:
                    steps, seconds, updates = solve(n, seed, device, graphed)
                    print(f"{n:>8} {seed:>5} {'graphed' if graphed else 'eager':>8} "
                          f"{steps if steps is not None else 'not hit':>10} {updates:>8} {seconds:>8.2f}", flush=True)
        return
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
