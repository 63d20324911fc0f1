"""The graded parts of exercise 05: every reference passes its own cases, the variants behind the
known mistakes reduce to the reference when nothing is changed, every named mistake is diagnosed
with its hint, the line-search cases reject and accept where their names say, and the behavioural
bandit part catches a learner that leaves the trust region or does not learn."""

import pytest
import torch
from torch import nn

from rlteach import trpo
from rlteach.grading.parts import PARTS
from rlteach.grading.parts import trpo as P
from tests.part_checks import CPU, failure

pytestmark = pytest.mark.slow  # behavioural cases train small learners: the slow tier

NAMES = ("trpo_surrogate", "trpo_line_search", "trpo_step", "trpo_bandit")


def test_the_topic_has_four_parts_one_behavioural():
    assert all(name in PARTS for name in NAMES)
    assert [name for name in NAMES if PARTS[name].behavioural] == ["trpo_bandit"]
    assert all(len(PARTS[name].mistakes) >= 3 for name in NAMES if not PARTS[name].behavioural)


def test_the_unchanged_variants_are_the_references():
    for case in P._surrogate_cases(2, "edge") + P._surrogate_cases(2, "random"):
        args, _ = case.arguments(CPU)
        torch.testing.assert_close(P._surrogate_variant(*args), trpo.surrogate(*args))
    for case in P._line_search_cases(2, "edge") + P._line_search_cases(2, "random"):
        args, _ = case.arguments(CPU)
        torch.testing.assert_close(P._line_search_variant(*args), P._line_search_reference(*case.arguments(CPU)[0]))
    for case in P._step_cases(2, "edge") + P._step_cases(2, "random"):
        (policy, *rest), _ = case.arguments(CPU)
        (other, *_), _ = case.arguments(CPU)
        P._step_variant(policy, *rest)
        P._step_reference(other, *rest)
        torch.testing.assert_close(nn.utils.parameters_to_vector(policy.parameters()),
                                   nn.utils.parameters_to_vector(other.parameters()), rtol=1e-7, atol=1e-9)


# Every named mistake is diagnosed with its hint: tests/test_grading.py checks that for every part.


@pytest.mark.parametrize("hint", ["ratio inverted", "old log-probs not detached"])
def test_the_surrogate_names_the_brief_mistakes(hint):
    wrong = {"ratio inverted": dict(inverted=True), "old log-probs not detached": dict(detach_old=False)}[hint]
    message = failure(lambda lp, lo, a: P._surrogate_variant(lp, lo, a, **wrong), "trpo_surrogate", seed=0,
                      group="edge")
    assert hint in message


def test_the_line_search_cases_reject_and_accept_where_they_say():
    """The cases named "restore θ_old" end at θ_old; the others move, and every result is inside δ."""
    for group in GROUPS_BOTH:
        for case in P._line_search_cases(7, group):
            args, _ = case.arguments(CPU)
            objective, theta_old = args[0], args[1]
            result = trpo.backtracking_line_search(*args)
            assert result.kl <= case.info["max_kl"]
            assert result.accepted == ("restore" not in case.name), case.name
            torch.testing.assert_close(objective.theta, result.theta)
            if not result.accepted:
                torch.testing.assert_close(result.theta, theta_old)


GROUPS_BOTH = ("random", "edge")


def test_the_step_cases_that_say_so_backtrack_or_stay_put():
    cases = {case.name: case for case in P._step_cases(4, "edge")}
    for name, case in cases.items():
        (policy, *rest), _ = case.arguments(CPU)
        before = nn.utils.parameters_to_vector(policy.parameters()).detach().clone()
        P._step_reference(policy, *rest)
        after = nn.utils.parameters_to_vector(policy.parameters()).detach()
        moved = not torch.equal(before, after)
        if "backtrack_iters = 1" not in name:
            assert moved == ("must not move" not in name), name


def test_a_kl_blind_bandit_learner_is_caught_and_a_frozen_one_does_not_learn():
    def kl_blind(policy, contexts, means, iterations, samples_per_context, max_kl, generator):
        obs = contexts.repeat(samples_per_context, 1)
        history = [nn.utils.parameters_to_vector(policy.parameters()).detach().clone()]
        for _ in range(iterations):
            with torch.no_grad():
                logits = policy(obs)
                actions = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
                rewards = means.repeat(samples_per_context, 1).gather(-1, actions[:, None]).squeeze(-1)
                logp_old = torch.log_softmax(logits, -1).gather(-1, actions[:, None]).squeeze(-1)
            P._step_variant(policy, obs, actions, logp_old, rewards - rewards.mean(), 20 * max_kl, 0.1, 10, 0.8, 10,
                            search="none")  # the full step of a 20 times larger trust region, unchecked
            history.append(nn.utils.parameters_to_vector(policy.parameters()).detach().clone())
        return torch.stack(history)

    def frozen(policy, contexts, means, iterations, samples_per_context, max_kl, generator):
        return torch.zeros(iterations + 1, contexts.shape[1] * means.shape[1], dtype=torch.float64)

    assert "trust region" in failure(kl_blind, "trpo_bandit", seed=0)
    assert "expected reward" in failure(frozen, "trpo_bandit", seed=0)


def test_calling_the_reference_scores_zero():
    def cheat(logp, logp_old, adv):
        return trpo.surrogate(logp, logp_old, adv)

    assert "sealed" in failure(cheat, "trpo_surrogate", seed=0)
