"""The graded parts of exercise 04: every reference passes its own cases, the variant functions
behind the known mistakes reduce to the reference when nothing is changed, every named mistake is
diagnosed with its hint, and the behavioural parts (the replay buffer, the one-step actor-critic
loop) catch a buffer that keeps the wrong transitions and a learner that does not learn."""

import math

import pytest
import torch

from rlteach import actor_critic as ac
from rlteach import advantages as A
from rlteach.grading import check
from rlteach.grading import harness as H
from rlteach.grading.parts import PARTS
from rlteach.grading.parts import actor_critic as P
from tests.part_checks import CPU, failure

pytestmark = pytest.mark.slow  # behavioural cases train small learners: the slow tier

NAMES = ("gae", "td_n_targets", "one_step_ac_update", "a2c_loss", "replay_buffer", "one_step_actor_critic")


def test_the_topic_has_six_parts_two_of_them_behavioural():
    assert all(name in PARTS for name in NAMES)
    assert [name for name in NAMES if PARTS[name].behavioural] == ["replay_buffer", "one_step_actor_critic"]
    assert all(len(PARTS[name].mistakes) >= 5 for name in NAMES if not PARTS[name].behavioural)


def test_the_unchanged_variants_are_the_references():
    """Each mistake is one flag away from a variant that, unchanged, equals the library."""
    for case in P._gae_cases(2, "edge") + P._gae_cases(2, "random"):
        args, _ = case.arguments(CPU)
        torch.testing.assert_close(P._gae_variant(*args), A.gae(*args))
    for case in P._td_n_cases(2, "edge") + P._td_n_cases(2, "random"):
        args, _ = case.arguments(CPU)
        torch.testing.assert_close(P._td_n_variant(*args), A.td_n_targets(*args))
    for case in P._update_cases(2, "edge") + P._update_cases(2, "random"):
        args, _ = case.arguments(CPU)
        for got, want in zip(P._update_variant(*args), P._update_reference(*args), strict=True):
            torch.testing.assert_close(torch.as_tensor(got), torch.as_tensor(want))
    for case in P._a2c_cases(2, "edge"):
        args, _ = case.arguments(CPU)
        torch.testing.assert_close(P._a2c_variant(*args), P._a2c_reference(*args))


# Every named mistake is diagnosed with its hint: tests/test_grading.py checks that for every part.


def test_truncation_treated_as_termination_is_named_with_the_step():
    def gae_done(rewards, values, next_values, terminated, truncated, gamma, gae_lambda):
        return P._gae_variant(rewards, values, next_values, terminated, truncated, gamma, gae_lambda, trunc_is_term=True)

    message = failure(gae_done, "gae", seed=0, group="edge")
    assert "truncation treated as termination" in message
    assert "only truncations" in message or "worst" in message or "at" in message


# ------------------------------------------------------------------- the replay buffer


class Ring:
    """A correct ring buffer written here (the library's is sealed while a check runs)."""

    def __init__(self, capacity, obs_dim):
        self.capacity, self.rows, self.pos = capacity, [], 0

    def add(self, obs, action, reward, next_obs, terminated, truncated, logp_behavior):
        row = (torch.as_tensor(obs, dtype=torch.float64), action, reward, torch.as_tensor(next_obs, dtype=torch.float64),
               terminated, truncated, logp_behavior)
        if len(self.rows) < self.capacity:
            self.rows.append(row)
        else:
            self.rows[self.pos] = row
        self.pos = (self.pos + 1) % self.capacity

    def __len__(self):
        return len(self.rows)

    def _stack(self, index):
        rows = [self.rows[i] for i in index]
        return {"obs": torch.stack([r[0] for r in rows]), "actions": torch.tensor([r[1] for r in rows]),
                "rewards": torch.tensor([r[2] for r in rows], dtype=torch.float64),
                "next_obs": torch.stack([r[3] for r in rows]), "terminated": torch.tensor([r[4] for r in rows]),
                "truncated": torch.tensor([r[5] for r in rows]),
                "logp_behavior": torch.tensor([r[6] for r in rows], dtype=torch.float64)}

    def sample(self, batch_size, generator):
        return self._stack(torch.randperm(len(self.rows), generator=generator)[:batch_size].tolist())


class NoOverwrite(Ring):
    """Stops storing once full: keeps the first `capacity` transitions."""

    def add(self, *transition):
        if len(self.rows) < self.capacity:
            super().add(*transition)


class Mixed(Ring):
    """Samples the rewards with their own indices: rows mix transitions."""

    def sample(self, batch_size, generator):
        first = super().sample(batch_size, generator)
        second = super().sample(batch_size, generator)
        return {**first, "rewards": second["rewards"]}


class GlobalDraws(Ring):
    """Ignores the generator it is given."""

    def sample(self, batch_size, generator):
        return super().sample(batch_size, torch.Generator().manual_seed(int(torch.randint(10**6, ()))))


class AlwaysTheSame(Ring):
    """Ignores the generator's seed: always the same batch."""

    def sample(self, batch_size, generator):
        return super().sample(batch_size, torch.Generator().manual_seed(0))


class CountsPastCapacity(Ring):
    """Reports every add in len, beyond the capacity."""

    def __init__(self, capacity, obs_dim):
        super().__init__(capacity, obs_dim)
        self.added = 0

    def add(self, *transition):
        super().add(*transition)
        self.added += 1

    def __len__(self):
        return self.added

    def sample(self, batch_size, generator):
        return self._stack(torch.randperm(len(self.rows), generator=generator)[:min(batch_size, len(self.rows))].tolist())


def test_a_correct_ring_written_by_hand_passes():
    check(Ring, "replay_buffer", seed=0)
    check(Ring, "replay_buffer", seed=0, group="edge")


def test_a_buffer_that_does_not_overwrite_the_oldest_is_caught_and_told_so():
    message = failure(NoOverwrite, "replay_buffer", seed=0)
    assert "does not overwrite the oldest" in message


def test_rows_that_mix_transitions_are_caught():
    assert "mixes transitions" in failure(Mixed, "replay_buffer", seed=0)


def test_a_buffer_that_ignores_the_generator_is_caught():
    assert "same seed differ" in failure(GlobalDraws, "replay_buffer", seed=0)
    assert "every generator gives the same batch" in failure(AlwaysTheSame, "replay_buffer", seed=0)


def test_a_length_past_the_capacity_is_caught():
    assert "len(buffer) is" in failure(CountsPastCapacity, "replay_buffer", seed=0)


def test_the_buffer_properties_share_a_case_by_weight():
    """NoOverwrite keeps the right length and intact rows (2 of 5 shares) but loses 'keeps the newest' (2) and
    'uniform' (1: the newest transitions are never drawn)."""
    part = PARTS["replay_buffer"]
    cases = part.cases(0, "random")
    outcomes = [H.attempt(part, NoOverwrite, case, CPU) for case in cases]
    verdict = H.judge(part, "random", cases, outcomes, CPU)
    assert verdict.scores == pytest.approx((0.4, 0.4, 0.4))


# ---------------------------------------------------------- the one-step actor-critic loop


def _update(theta, w, x_pi, action, x_v, x_next, reward, terminated, discount, gamma, alpha_theta, alpha_w):
    """Fig. 13.3's step written here (the library's is sealed while a check runs)."""
    v_next = torch.zeros((), dtype=w.dtype) if terminated else w @ x_next
    delta = reward + gamma * v_next - w @ x_v
    score = x_pi[action] - torch.softmax(x_pi @ theta, -1) @ x_pi
    return theta + alpha_theta * discount * delta * score, w + alpha_w * discount * delta * x_v, gamma * discount


def _loop(env, policy_features, value_features, theta, w, num_episodes, gamma, alpha_theta, alpha_w, generator, *,
          decay_I=True, reset_I=True, stop_at_truncation=True, critic=True):
    theta, w = theta.detach().clone(), w.detach().clone()
    returns, discount = [], 1.0
    for _ in range(num_episodes):
        state = env.reset()
        discount = 1.0 if reset_I else discount
        total, ended = 0.0, False
        while not ended:
            x_pi = policy_features(state).to(theta)
            action = int(torch.multinomial(torch.softmax(x_pi @ theta, -1), 1, generator=generator))
            next_state, reward, terminated, truncated = env.step(action)
            theta, w, next_discount = _update(theta, w, x_pi, action, value_features(state).to(w),
                                              value_features(next_state).to(w), reward, terminated, discount, gamma,
                                              alpha_theta, alpha_w if critic else 0.0)
            discount = next_discount if decay_I else discount
            total += reward
            ended = terminated or (truncated and stop_at_truncation)
            if truncated and not stop_at_truncation and not terminated:
                env.elapsed = 0  # keep walking past the time limit
            state = next_state
        returns.append(total)
    return theta, w, torch.tensor(returns, dtype=theta.dtype)


def test_the_library_loop_with_its_update_passes_the_behavioural_part():
    check(_loop, "one_step_actor_critic", seed=0)


def test_a_critic_that_never_learns_loses_the_critic_share():
    part = PARTS["one_step_actor_critic"]
    case = part.cases(0, "random")[0]
    outcome = H.attempt(part, lambda *a: _loop(*a, critic=False), case, CPU)
    judged = H.judge_case(part, case, outcome, CPU)
    assert any("critic's v̂(s₀)" in p for p in judged.problems)
    assert judged.score < 1.0


def test_an_actor_that_never_moves_fails_learns_with_the_exact_value():
    def frozen(env, pf, vf, theta, w, n, gamma, a_t, a_w, generator):
        return _loop(env, pf, vf, theta, w, n, gamma, 0.0, a_w, generator)

    message = failure(frozen, "one_step_actor_critic", seed=0)
    assert "π(right) = 0.100, whose exact value J = -42.22" in message


def test_episodes_that_run_past_the_time_limit_are_caught():
    def ignores_truncation(*args):
        return _loop(*args, stop_at_truncation=False)

    message = failure(ignores_truncation, "one_step_actor_critic", seed=0, group="edge")
    assert "truncated after 6 steps" in message and "end the episode" in message


def test_the_corridor_thresholds_are_the_exact_values_they_state():
    assert ac.corridor_value(0.1) == pytest.approx(-42.222, abs=1e-3)
    assert ac.CORRIDOR_OPTIMAL_VALUE - 0.5 == pytest.approx(-12.157, abs=1e-3)
    best = max(ac.corridor_value(p / 1000, 0.9) for p in range(1, 1000))
    assert best == pytest.approx(-6.045, abs=1e-3) and ac.corridor_value(0.1, 0.9) == pytest.approx(-8.854, abs=1e-3)
    assert math.isclose(P.CORRIDOR_THETA0[1], math.log(9.0))


def test_truncation_treated_as_termination_is_caught_by_the_critic_under_a_time_limit():
    """The policy still improves, but a critic that stops at every time limit values s₀ near the truncated
    return (about −5) instead of the untruncated value (about −12)."""
    part = PARTS["one_step_actor_critic"]
    case = part.cases(0, "edge")[0]

    def stops_at_the_limit(env, pf, vf, theta, w, n, gamma, a_t, a_w, generator):
        theta, w = theta.clone(), w.clone()
        returns = []
        for _ in range(n):
            state, discount, total, ended = env.reset(), 1.0, 0.0, False
            while not ended:
                x_pi = pf(state).to(theta)
                action = int(torch.multinomial(torch.softmax(x_pi @ theta, -1), 1, generator=generator))
                next_state, reward, terminated, truncated = env.step(action)
                theta, w, discount = _update(theta, w, x_pi, action, vf(state).to(w), vf(next_state).to(w), reward,
                                             terminated or truncated, discount, gamma, a_t, a_w)
                total, state, ended = total + reward, next_state, terminated or truncated
            returns.append(total)
        return theta, w, torch.tensor(returns, dtype=theta.dtype)

    judged = H.judge_case(part, case, H.attempt(part, stops_at_the_limit, case, CPU), CPU)
    assert judged.score < 1.0
    assert any("truncation treated as termination" in p for p in judged.problems), judged.problems
