"""The graded parts of exercise 06: every reference passes its own cases, the variants behind the
known mistakes reduce to the references when nothing is changed, the mistakes the exercise's
brief names score below full marks with their hint, the update's cases do what their names
say (early stopping, invalid samples, the last smaller minibatch), and the behavioural CartPole
part catches a loop that does not learn, overspends its budget or does not anneal."""

import pytest
import torch

from rlteach import ppo
from rlteach.grading import harness as H
from rlteach.grading.parts import PARTS
from rlteach.grading.parts import ppo as P
from tests.part_checks import CPU, failure, verdicts

pytestmark = pytest.mark.slow  # the behavioural cases train PPO on CartPole: the slow tier

NAMES = ("ppo_policy_loss", "ppo_value_loss", "ppo_update", "ppo_cartpole")


def test_the_topic_has_four_parts_two_that_build_one_behavioural():
    assert all(name in PARTS for name in NAMES)
    assert [name for name in NAMES if PARTS[name].behavioural] == ["ppo_cartpole"]
    assert all(len(PARTS[name].mistakes) >= 3 for name in NAMES if not PARTS[name].behavioural)


def test_the_unchanged_variants_are_the_references():
    for case in P._policy_loss_cases(2, "edge") + P._policy_loss_cases(2, "random"):
        args, _ = case.arguments(CPU)
        loss, stats = ppo.policy_loss(*args)
        got_loss, got_stats = P._policy_loss_variant(*args)
        torch.testing.assert_close(got_loss, loss)
        torch.testing.assert_close(got_stats["approx_kl"], stats.approx_kl)
        torch.testing.assert_close(got_stats["clip_frac"], stats.clip_frac.to(loss.dtype))
    for case in P._value_loss_cases(2, "edge") + P._value_loss_cases(2, "random"):
        args, _ = case.arguments(CPU)
        torch.testing.assert_close(P._value_loss_variant(*args), ppo.value_loss(*args))
    for case in P._update_cases(2, "edge") + P._update_cases(2, "random"):
        mine, _ = case.arguments(CPU)
        theirs, _ = case.arguments(CPU)
        P._update_variant(*mine)
        P._update_reference(*theirs)
        for a, b in zip(mine[0].parameters(), theirs[0].parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


# Every known mistake fails and is named: tests/test_grading.py checks that for every part. The ones
# the exercise's brief names are checked here on their score too.

POLICY_PROBES = {
    "min and max swapped": dict(pick="max"),
    "clipped the advantage instead of the ratio": dict(clip="adv"),
    "ratio inverted": dict(inverted=True),
    "old log-probs not detached": dict(detach_old=False),
}


@pytest.mark.parametrize("hint", sorted(POLICY_PROBES))
def test_the_policy_loss_probes_score_below_full_marks_and_are_named(hint):
    def wrong(logp, logp_old, adv, clip_eps):
        return P._policy_loss_variant(logp, logp_old, adv, clip_eps, **POLICY_PROBES[hint])

    judged = verdicts(wrong, "ppo_policy_loss")
    assert sum(v.score for v in judged) / len(judged) < 1.0
    assert any(hint in v.message for v in judged), [v.message for v in judged]


def test_min_and_max_swapped_in_the_value_loss_is_named():
    judged = verdicts(lambda v, vo, r, e=None: P._value_loss_variant(v, vo, r, e, pick="min"), "ppo_value_loss")
    assert sum(v.score for v in judged) / len(judged) < 1.0
    assert any("min and max swapped" in v.message for v in judged)


@pytest.mark.parametrize("hint, change", [("normalized advantages over the wrong axis", dict(norm="env")),
                                          ("ratio inverted", dict(inverted=True))])
def test_the_update_probes_score_below_full_marks_and_are_named(hint, change):
    judged = verdicts(lambda *a: P._update_variant(*a, **change), "ppo_update")
    assert sum(v.score for v in judged) / len(judged) < 1.0
    assert any(hint in v.message for v in judged), [v.message for v in judged]


def test_the_policy_loss_gradient_is_zero_exactly_where_the_clip_binds():
    (case,) = [c for c in P._policy_loss_cases(4, "edge") if "outside the clip" in c.name]
    logp, logp_old, adv, eps = case.arguments(CPU)[0]
    logp = logp.clone().requires_grad_(True)
    loss, _ = ppo.policy_loss(logp, logp_old, adv, eps)
    (grad,) = torch.autograd.grad(loss, logp)
    ratio = (logp - logp_old).exp().detach()
    flat = ((ratio > 1 + eps) & (adv > 0)) | ((ratio < 1 - eps) & (adv < 0))
    assert bool(flat.any()) and bool((~flat).any())
    assert bool((grad[flat] == 0).all()) and bool((grad[~flat] != 0).all())


def test_the_update_cases_do_what_their_names_say():
    for case in P._update_cases(6, "edge") + P._update_cases(6, "random"):
        (policy, optimizer, rollout, adv, returns, config, generator, clip_eps), _ = case.arguments(CPU)
        batch = ppo.flatten_rollout(rollout, adv, returns, config.normalize_adv)
        stats = ppo.ppo_update(policy, optimizer, batch, config, generator, clip_eps)
        assert stats.stopped_early == ("stops early" in case.name), case.name
        if stats.stopped_early:  # stops inside an epoch, after some steps
            assert 0 < stats.grad_steps and stats.grad_steps % config.num_minibatches != 0
        if "invalid" in case.name:
            assert not bool(rollout.valid.all())
        if "single valid sample" in case.name:
            assert int(rollout.valid.sum()) == 1
        if "smaller" in case.name:
            assert batch.adv.shape[0] % -(-batch.adv.shape[0] // config.num_minibatches) != 0


def _loop(envs, policy, optimizer, config, seed, *, anneal="right", extra_rollouts=0, learn=True):
    """The PPO loop with the library's pieces and one thing changed; ``anneal``: "right",
    "off by one" (k counted from 1) or "none"."""
    generator = torch.Generator().manual_seed(seed)
    state = ppo.reset_ppo_envs(envs, config, seed)
    U = config.num_updates
    for update in range(U + extra_rollouts):
        k = update + (anneal == "off by one")
        optimizer.param_groups[0]["lr"] = config.lr if anneal == "none" else ppo.linear_schedule(config.lr, k, U)
        rollout, _ = ppo.collect_rollout(envs, policy, state, config.num_steps, generator)
        if learn:
            adv, returns = ppo.rollout_advantages(rollout, config.gamma, config.gae_lambda)
            P._update_variant(policy, optimizer, rollout, adv, returns, config, generator, config.clip_eps)


def test_the_cartpole_part_judges_learning_budget_and_annealing_separately():
    part = PARTS["ppo_cartpole"]
    cases = part.cases(0, "random")
    wrong = [H.judge_case(part, case, H.attempt(part, lambda *a: _loop(*a, learn=False), case, CPU), CPU)
             for case in cases]
    assert all("balances the pole" in j.problems[0] for j in wrong)
    assert all(j.score == pytest.approx(2 / 5) for j in wrong)  # within budget (1), annealed (1), 3 lost
    greedy = H.judge_case(part, cases[0], H.attempt(part, lambda *a: _loop(*a, extra_rollouts=1), cases[0], CPU), CPU)
    assert any("budget" in p for p in greedy.problems)
    for anneal, group in (("off by one", "edge"), ("none", "random")):
        case = part.cases(0, group)[0]
        judged = H.judge_case(part, case, H.attempt(part, lambda *a: _loop(*a, anneal=anneal, learn=False), case, CPU),
                              CPU)
        assert any("step size" in p for p in judged.problems), (anneal, judged.problems)


def test_calling_the_reference_scores_zero():
    def cheat(policy, optimizer, rollout, adv, returns, config, generator, clip_eps):
        batch = ppo.flatten_rollout(rollout, adv, returns, config.normalize_adv)
        ppo.ppo_update(policy, optimizer, batch, config, generator, clip_eps)

    assert "sealed" in failure(cheat, "ppo_update", seed=0)
