"""RLHF on the enumerable token task over several seeds: reward model, PPO, DPO, over-optimisation.

    make bench-rlhf                                     (seeds 0-4)
    python benchmarks/rlhf.py --seeds 3
    python benchmarks/rlhf.py --seeds 1 --big           (adds TokenTask(24, 16): RM accuracy and a short PPO)

Per seed S, on ``TokenTask(8, 4)`` (8 words, 1-4 words a response, 4680 responses, every one
listed), with one torch thread (issue 14, point 2):

* ``setup``: :func:`rlteach.rlhf.rlhf_setup` (demonstrator, hidden utility, π_ref pre-trained
  200 steps, 3000 preference pairs, reward model 10 epochs); ``RM acc`` is the share of 1000
  held-out pairs of π_ref's responses that the reward model orders as the true utility does.
* ``PPO``: :func:`rlteach.rlhf.rlhf_ppo` from a copy of π_ref, β = 0.5, 40 iterations;
  ``KL→π*_r̂`` is the exact KL(π‖π*_r̂) over all responses before → after, where
  π*_r̂ ∝ π_ref e^{r̂/β} is the closed-form optimum of the objective PPO maximises;
  ``KL→π*_u`` is KL(π_PPO‖π*_u), π*_u built with the true utility instead of r̂.
* ``DPO``: :func:`rlteach.rlhf.train_dpo`, β = 0.5, 5 epochs on the same preferences;
  KL(π_DPO‖π*_u), next to KL(π_ref‖π*_u) where both start.
* ``over-opt``: the closed-form π*_β for 25 β in logspace(−2, 1); "yes" when the true utility
  E[u] at β = 0.01 lies below its peak over β (the learned reward keeps rising as β falls).
  The peak β and E[u] at the peak and at β = 0.01 are printed.

Seconds are wall seconds of each stage on this machine (slower when it is shared).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.course import machine
from rlteach.rlhf import (
    DPOConfig,
    RLHFConfig,
    TokenTask,
    all_responses,
    optimal_policy_logp,
    optimum_summary,
    ranking_accuracy,
    rlhf_ppo,
    rlhf_setup,
    sequence_kl,
    train_dpo,
    true_utility,
)

BETA = 0.5
PPO_ITERATIONS = 40
DPO_EPOCHS = 5
BETAS = torch.logspace(-2, 1, 25, dtype=torch.float64)


class SeedResult(NamedTuple):
    seed: int
    rm_accuracy: float
    ppo_kl_start: float  # KL(π_ref ‖ π*_r̂)
    ppo_kl_end: float  # KL(π_PPO ‖ π*_r̂)
    ppo_kl_u: float  # KL(π_PPO ‖ π*_u)
    ref_kl_u: float  # KL(π_ref ‖ π*_u)
    dpo_kl_u: float  # KL(π_DPO ‖ π*_u)
    over_optimised: bool
    peak_beta: float
    peak_utility: float
    low_beta_utility: float  # E[u] under π* at β = 0.01
    setup_s: float
    ppo_s: float
    dpo_s: float


def run_seed(seed: int) -> SeedResult:
    """Every stage of one seed on TokenTask(8, 4), with exact KLs over all 4680 responses."""
    start = time.perf_counter()
    setup = rlhf_setup(TokenTask(8, 4), seed)
    setup_s = time.perf_counter() - start
    accuracy = ranking_accuracy(setup.reward_model, setup.test_a, setup.test_b, setup.utility, setup.task)
    listed = all_responses(setup.task)
    with torch.no_grad():
        ref_logp = setup.ref_policy.sequence_logp(listed).double()
        rhat = setup.reward_model(listed).double()
    utility = true_utility(listed, setup.utility, setup.task)
    star_r = optimal_policy_logp(ref_logp, rhat, BETA)
    star_u = optimal_policy_logp(ref_logp, utility, BETA)

    start = time.perf_counter()
    policy = copy.deepcopy(setup.ref_policy).requires_grad_(True)
    rlhf_ppo(policy, setup.ref_policy, setup.reward_model, RLHFConfig(beta=BETA, iterations=PPO_ITERATIONS),
             torch.Generator().manual_seed(seed))
    ppo_s = time.perf_counter() - start
    with torch.no_grad():
        ppo_logp = policy.sequence_logp(listed).double()

    start = time.perf_counter()
    policy = copy.deepcopy(setup.ref_policy).requires_grad_(True)
    train_dpo(policy, setup.ref_policy, setup.chosen, setup.rejected, DPOConfig(beta=BETA, epochs=DPO_EPOCHS),
              torch.Generator().manual_seed(seed))
    dpo_s = time.perf_counter() - start
    with torch.no_grad():
        dpo_logp = policy.sequence_logp(listed).double()

    summary = optimum_summary(ref_logp, rhat, utility, BETAS)
    peak = int(summary.utility.argmax())
    return SeedResult(seed, accuracy, float(sequence_kl(ref_logp, star_r)), float(sequence_kl(ppo_logp, star_r)),
                      float(sequence_kl(ppo_logp, star_u)), float(sequence_kl(ref_logp, star_u)),
                      float(sequence_kl(dpo_logp, star_u)), bool(summary.utility[0] < summary.utility[peak]),
                      float(BETAS[peak]), float(summary.utility[peak]), float(summary.utility[0]),
                      setup_s, ppo_s, dpo_s)


def run_big(seed: int, iterations: int) -> None:
    """TokenTask(24, 16), too big to list: reward-model accuracy and a short PPO, read from its sampled batches."""
    start = time.perf_counter()
    setup = rlhf_setup(TokenTask(24, 16), seed)
    setup_s = time.perf_counter() - start
    accuracy = ranking_accuracy(setup.reward_model, setup.test_a, setup.test_b, setup.utility, setup.task)
    start = time.perf_counter()
    policy = copy.deepcopy(setup.ref_policy).requires_grad_(True)
    history = rlhf_ppo(policy, setup.ref_policy, setup.reward_model, RLHFConfig(beta=BETA, iterations=iterations),
                       torch.Generator().manual_seed(seed), utility=setup.utility)
    ppo_s = time.perf_counter() - start
    first, last = history[0], history[-1]
    print(f"\nTokenTask(24, 16), seed {seed}: RM acc {accuracy:.3f} (setup {setup_s:.1f} s); PPO β = {BETA}, "
          f"{iterations} iterations ({ppo_s:.1f} s, {ppo_s / iterations:.2f} s/iteration), on its sampled batches:")
    print(f"  E[r̂] {first.score:+.3f} → {last.score:+.3f}   KL(π‖π_ref) {first.kl:.3f} → {last.kl:.3f}   "
          f"E[u] {first.utility:+.3f} → {last.utility:+.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    parser.add_argument("--big", action="store_true", help="also TokenTask(24, 16), seed 0: RM accuracy and a short PPO")
    parser.add_argument("--big-iterations", type=int, default=10, help="PPO iterations of --big (default 10)")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.big_iterations < 1:
        parser.error("--seeds and --big-iterations must be >= 1")
    torch.set_num_threads(1)
    results = []
    for seed in range(args.seeds):
        results.append(run_seed(seed))
        r = results[-1]
        print(f"seed {seed}: RM acc {r.rm_accuracy:.3f}, PPO KL {r.ppo_kl_start:.3f} → {r.ppo_kl_end:.4f}, "
              f"DPO KL(π‖π*_u) {r.dpo_kl_u:.3f}, {r.setup_s + r.ppo_s + r.dpo_s:.1f} s", file=sys.stderr, flush=True)

    print(f"\nRLHF on TokenTask(8, 4) (4680 responses, exact KLs), β = {BETA}: PPO {PPO_ITERATIONS} iterations, "
          f"DPO {DPO_EPOCHS} epochs, one torch thread")
    print(f"machine: {machine()}\n")
    header = (f"{'seed':>4} {'RM acc':>7} {'PPO KL→π*_rhat':>15} {'PPO KL→π*_u':>12} {'DPO KL→π*_u':>12} "
              f"{'ref KL→π*_u':>12} {'over-opt':>9} {'E[u] peak (β)':>16} {'E[u] β=.01':>11} "
              f"{'setup s':>8} {'PPO s':>6} {'DPO s':>6}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.seed:>4} {r.rm_accuracy:>7.3f} {f'{r.ppo_kl_start:.3f} → {r.ppo_kl_end:.4f}':>15} "
              f"{r.ppo_kl_u:>12.3f} {r.dpo_kl_u:>12.3f} {r.ref_kl_u:>12.3f} {'yes' if r.over_optimised else 'no':>9} "
              f"{f'{r.peak_utility:+.3f} ({r.peak_beta:.3f})':>16} {r.low_beta_utility:>+11.3f} "
              f"{r.setup_s:>8.1f} {r.ppo_s:>6.1f} {r.dpo_s:>6.1f}")
    if len(results) > 1:
        def med(field: str) -> float:
            return statistics.median(getattr(r, field) for r in results)
        print("-" * len(header))
        kl_change = f"{med('ppo_kl_start'):.3f} → {med('ppo_kl_end'):.4f}"
        print(f"{'med':>4} {med('rm_accuracy'):>7.3f} {kl_change:>15} "
              f"{med('ppo_kl_u'):>12.3f} {med('dpo_kl_u'):>12.3f} {med('ref_kl_u'):>12.3f} "
              f"{f'{sum(r.over_optimised for r in results)}/{len(results)}':>9} {'':>16} {'':>11} "
              f"{med('setup_s'):>8.1f} {med('ppo_s'):>6.1f} {med('dpo_s'):>6.1f}")
    print("\nKL→π*_rhat: exact KL(π‖π*_r̂) before (π = π_ref) → after PPO; π*_u: the optimum for the true utility. "
          "over-opt: E[u] of π*_β at β = 0.01 below its peak over β in logspace(−2, 1).")
    if args.big:
        run_big(0, args.big_iterations)
    return 0


if __name__ == "__main__":
    sys.exit(main())
