"""The graded parts of exercise 08: every reference passes its own cases, the references are
gymnasium's CartPole-v1 and the library's BatchedEnv.step, the variants behind the known mistakes
reduce to the references when nothing is changed, the probes the exercise's brief names score
below full marks with their hint, the cases do what their names say, the behavioural LQR part
judges what a gain does, and an answer that calls a sealed reference scores zero."""

import math
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from rlteach.envs import CARTPOLE_NOMINAL, BatchedCartPole
from rlteach.grading import check
from rlteach.grading import harness as H
from rlteach.grading.parts import PARTS
from rlteach.grading.parts import robots as P
from rlteach.grading.records import Outcome
from rlteach.lqr import cartpole_linearization, dare
from tests.part_checks import CPU, failure, verdicts

F64 = torch.float64
NAMES = ("cartpole_step", "auto_reset", "lqr_gain", "lqr_cartpole")


def cases(name, seed=3):
    part = PARTS[name]
    return {case.name: case for group in part.groups for case in part.cases(seed, group)}


def test_the_topic_has_four_parts_one_behavioural():
    assert all(name in PARTS for name in NAMES)
    assert [name for name in NAMES if PARTS[name].behavioural] == ["lqr_cartpole"]
    assert all(len(PARTS[name].mistakes) >= 4 for name in NAMES if not PARTS[name].behavioural)
    assert dare in PARTS["lqr_gain"].sealed and dare in PARTS["lqr_cartpole"].sealed
    assert BatchedCartPole._dynamics in PARTS["cartpole_step"].sealed


@pytest.mark.slow  # over half a second: Riccati iterations and 500-step CartPole batches
@pytest.mark.parametrize("name", NAMES)
def test_every_reference_scores_full_marks(name):
    part = PARTS[name]
    for group in part.groups:
        group_cases = part.cases(5, group)
        outcomes = [Outcome(H.observe(part, part.reference, *case.arguments(CPU))) for case in group_cases]
        verdict = H.judge(part, group, group_cases, outcomes, CPU)
        assert verdict.scores == (1.0,) * len(group_cases), verdict.message


# ------------------------------------------------------------------------- the references


def test_the_step_reference_is_gymnasiums_cartpole():
    """On every float64 case with gymnasium's parameters, each row stepped by CartPole-v1 (its state
    set directly) gives the reference's next state, reward and terminated."""
    env = CartPoleEnv()
    env.reset(seed=0)
    checked = 0
    for case in cases("cartpole_step").values():
        state, action, params = case.args
        if state.dtype != F64 or any(isinstance(v, torch.Tensor) or v != CARTPOLE_NOMINAL[k] for k, v in params.items()):
            continue
        next_state, reward, terminated = P._step_reference(state, action, params)
        for i in range(min(state.shape[0], 300)):
            env.state = state[i].numpy().copy()
            env.steps_beyond_terminated = None
            _, r, term, _, _ = env.step(int(action[i]))
            np.testing.assert_allclose(env.state, next_state[i].numpy(), rtol=1e-13, atol=1e-15)
            assert (r, term) == (float(reward[i]), bool(terminated[i])), (case.name, i)
            checked += 1
    assert checked > 500


def test_the_auto_reset_reference_is_the_library_step():
    """Fed what BatchedCartPole.step saw and produced, the reference returns the env's obs,
    terminated, truncated, final_obs and counters, through many terminations and time limits."""
    env = BatchedCartPole(32, dtype=F64, max_episode_steps=25)
    env.reset(7)
    g = torch.Generator().manual_seed(0)
    ends = 0
    for _ in range(120):
        before = env.steps.clone()
        out = env.step(torch.randint(2, (32,), generator=g))
        obs, term, trunc, final, steps = P._auto_reset_reference(out.final_obs, out.terminated, before, 25, out.obs)
        for got, want in ((obs, out.obs), (term, out.terminated), (trunc, out.truncated), (final, out.final_obs),
                          (steps, env.steps)):
            assert torch.equal(got, want)
        ends += int((out.terminated | out.truncated).sum())
    assert ends > 50


@pytest.mark.slow  # over half a second: Riccati iterations and 500-step CartPole batches
def test_the_unchanged_variants_are_the_references():
    for case in cases("cartpole_step", 2).values():
        args, _ = case.arguments(CPU)
        for got, want in zip(P._step_variant(*args), P._step_reference(*args), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-15)
    for case in cases("auto_reset", 2).values():
        args, _ = case.arguments(CPU)
        for got, want in zip(P._auto_reset_variant(*args), P._auto_reset_reference(*args), strict=True):
            assert torch.equal(got, want)
    for case in cases("lqr_gain", 2).values():
        args, _ = case.arguments(CPU)
        torch.testing.assert_close(P._lqr_variant(*args), dare(*args).K, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------ the probes

STEP_PROBES: dict[str, dict[str, Any]] = {
    "Euler and semi-implicit Euler swapped": dict(integrator="semi"),
    "terminated judged on the old state": dict(judge="old"),
    "cos/sin swapped": dict(trig="swapped"),
    "total mass used for the pole": dict(pole_mass="total"),
    "force sign reversed": dict(force_sign=-1.0),
    "friction sign reversed": dict(friction_sign=-1.0),
    "angle threshold in degrees": dict(theta_limit=12.0),
}
RESET_PROBES: dict[str, dict[str, Any]] = {
    "reset observation used for bootstrapping": dict(final="reset"),
    "terminated set on truncation": dict(mark="merged"),
    "step counter not reset": dict(reset_count="never"),
    "truncated one step late": dict(late=True),
}
LQR_PROBES: dict[str, dict[str, Any]] = {
    "K sign flipped": dict(sign=-1.0),
    "stopped after one sweep": dict(sweeps=1),
    "R and Q swapped": dict(swap=True),
    "transpose missing": dict(transpose=False),
}


def _below_full_and_named(fn, name, hint):
    judged = verdicts(fn, name)
    score = sum(v.score for v in judged) / len(judged)
    assert score < 1.0, hint
    assert any(hint in v.message for v in judged), [v.message for v in judged]
    return score


@pytest.mark.parametrize("hint", sorted(STEP_PROBES))
def test_the_step_probes_score_below_full_marks_and_are_named(hint):
    _below_full_and_named(lambda s, a, p: P._step_variant(s, a, p, **STEP_PROBES[hint]), "cartpole_step", hint)


@pytest.mark.parametrize("hint", sorted(RESET_PROBES))
def test_the_auto_reset_probes_score_below_full_marks_and_are_named(hint):
    _below_full_and_named(lambda *a: P._auto_reset_variant(*a, **RESET_PROBES[hint]), "auto_reset", hint)


@pytest.mark.slow  # a few seconds each: the mistakes are matched on Riccati iterations of thousands of sweeps
@pytest.mark.parametrize("hint", sorted(LQR_PROBES))
def test_the_lqr_probes_score_below_full_marks_and_are_named(hint):
    _below_full_and_named(lambda *a: P._lqr_variant(*a, **LQR_PROBES[hint]), "lqr_gain", hint)


@pytest.mark.slow  # over half a second: Riccati iterations and 500-step CartPole batches
def test_a_sign_flipped_gain_neither_stabilises_nor_balances_and_is_told_so():
    judged = verdicts(lambda *a: P._lqr_variant(*a, sign=-1.0), "lqr_cartpole")
    assert all(v.score == 0.0 for v in judged)
    assert all("return K (not −K)" in v.message and "poles fell" in v.message for v in judged)


@pytest.mark.slow  # over half a second: Riccati iterations and 500-step CartPole batches
def test_one_sweep_fails_the_behavioural_part_but_an_inexact_stabilising_gain_passes_it():
    """The behavioural part judges what the gain does: one Riccati sweep is unstable and drops
    poles; 50 sweeps (far from converged, K off by percents) still balance every case."""
    assert all(v.score == 0.0 for v in verdicts(lambda *a: P._lqr_variant(*a, sweeps=1), "lqr_cartpole"))
    A, B = cartpole_linearization()
    rough, exact = P._lqr_variant(A, B, P.CARTPOLE_Q, P.CARTPOLE_R, sweeps=50), dare(A, B, P.CARTPOLE_Q, P.CARTPOLE_R).K
    assert float(((rough - exact).abs() / exact.abs()).max()) > 0.01
    assert all(v.score == 1.0 for v in verdicts(lambda *a: P._lqr_variant(*a, sweeps=50), "lqr_cartpole"))


def test_a_gain_designed_on_nominal_parameters_still_holds_the_shifted_system():
    """The sim-to-real case: the nominal gain keeps all 64 of the heavier, longer poles up."""
    (case,) = [c for name, c in cases("lqr_cartpole").items() if "sim-to-real" in name]
    assert case.info["real"] and torch.equal(case.args[0], cartpole_linearization()[0])
    survived = P.run_balance(dare(*case.args).K, case.info["real"], case.info["seed"])
    assert bool((survived == P.EPISODE).all())


# ------------------------------------------------------------ the cases do what they say


def test_the_step_cases_hold_what_their_names_say():
    named = cases("cartpole_step")
    for name, case in named.items():
        state, action, params = case.args
        new, _, terminated = P._step_variant(state, action, params)
        old = P._step_variant(state, action, params, judge="old")[2]
        if "threshold" in name:
            assert bool(terminated.any()) and bool((terminated != old).any()), name
        if "float32" in name:
            assert state.dtype == torch.float32
        if "own parameters" in name or "per-environment" in name:
            assert isinstance(params["length"], torch.Tensor) and params["length"].shape == (state.shape[0],)
            assert params["length"].dtype == state.dtype
        if "every action 1" in name:
            assert bool((action == 1).all())
    crossing = named["N = 1, a cart that crosses the edge of the track in this step"].args
    assert crossing[0].shape == (1, 4) and bool(P._step_variant(*crossing)[2]) and not bool(P._step_variant(*crossing, judge="old")[2])
    assert named["N = 65,536, float64"].args[0].shape == (65_536, 4)
    both_ways = named["1,024 states, a third of them at a threshold (terminations both ways), float64"]
    state, action, params = both_ways.args
    new, _, terminated = P._step_variant(state, action, params)
    old = P._step_variant(state, action, params, judge="old")[2]
    assert bool((terminated & ~old).any()) and bool((old & ~terminated).any())


def test_the_auto_reset_cases_hold_what_their_names_say():
    named = cases("auto_reset")
    for name, case in named.items():
        next_obs, terminated, steps, max_steps, start_obs = case.args
        truncated = steps + 1 >= max_steps
        if name == "nothing ended":
            assert not bool((terminated | truncated).any())
        elif "same step" in name:
            assert bool((terminated & truncated).any()), name
        if "time limit 1" in name:
            assert max_steps == 1 and bool(truncated.all())
        if "int32" in name:
            assert steps.dtype == torch.int32 and next_obs.dtype == torch.float32


def test_the_lqr_cases_hold_what_their_names_say():
    named = cases("lqr_gain")
    slow = named["CartPole with expensive control (R = 100): thousands of sweeps to converge"]
    assert dare(*slow.args).iterations > 1000
    zero = named["Q = 0 on an unstable system: no state cost, so no control (K = 0)"]
    A = zero.args[0]
    assert float(torch.linalg.eigvals(A).abs().max()) > 1 and bool((dare(*zero.args).K == 0).all())
    scalar = named["a scalar system (n = m = 1)"]
    a, b, q, r = (float(t) for t in scalar.args)
    lin = r - a * a * r - q * b * b
    p = (-lin + (lin * lin + 4 * b * b * q * r) ** 0.5) / (2 * b * b)
    assert float(dare(*scalar.args).K) == pytest.approx(a * b * p / (r + b * b * p), rel=1e-9)
    assert any(case.args[1].shape[1] == 2 for case in named.values())
    assert any(case.args[0].shape == case.args[3].shape for case in named.values())  # R and Q swappable


# ------------------------------------------------------------------------------- the seals


def test_calling_the_references_scores_zero():
    def via_library(state, action, params):
        env = BatchedCartPole(state.shape[0], dtype=state.dtype)
        env.coef = {**env.coef, **params}
        return env._dynamics(state, 2.0 * action.to(state.dtype) - 1.0)

    def via_gymnasium(state, action, params):
        env = CartPoleEnv()
        env.reset(seed=0)
        rows = []
        for s, a in zip(state, action, strict=True):
            env.state = s.numpy().copy()
            rows.append(env.step(int(a)))
        raise AssertionError("unreachable")

    assert "sealed" in failure(via_library, "cartpole_step", seed=0)
    assert "sealed" in failure(via_gymnasium, "cartpole_step", seed=0)
    assert "sealed" in failure(lambda A, B, Q, R: dare(A, B, Q, R).K, "lqr_gain", seed=0)
    assert "sealed" in failure(lambda A, B, Q, R: dare(A, B, Q, R).K, "lqr_cartpole", seed=0)


@pytest.mark.slow  # over half a second: Riccati iterations and 500-step CartPole batches
def test_a_gain_may_use_library_code_its_part_does_not_seal():
    """The LQR parts leave the environment and the linearisation usable."""
    def with_a_rollout(A, B, Q, R):
        env = BatchedCartPole(2, dtype=F64)
        env.reset(0)
        env.step(torch.tensor([0, 1]))
        cartpole_linearization()
        return _riccati(A, B, Q, R)

    check(with_a_rollout, "lqr_gain", seed=0)


# ------------------------------------------------- answers written differently from the reference


def _step_by_hand(state, action, params, *, f64=False, where=False):
    """CartPole's step as a student may write it: the force by torch.where, ẍ expanded, one
    vector Euler update, radians from math, optionally float64 inside."""
    dtype = state.dtype
    s = state.double() if f64 else state
    p = {k: (v.to(s.dtype) if isinstance(v, torch.Tensor) else v) for k, v in params.items()}
    x, x_dot, theta, theta_dot = s.T
    m = p["masscart"] + p["masspole"]
    push = torch.where(action == 1, 1.0, -1.0).to(s.dtype) if where else 2.0 * action.to(s.dtype) - 1.0
    force = 10.0 * p["gain"] * push - p["friction"] * x_dot
    sin, cos = theta.sin(), theta.cos()
    h = (force + p["masspole"] * p["length"] * theta_dot * theta_dot * sin) / m
    theta_acc = (p["gravity"] * sin - cos * h) / (p["length"] * (4.0 / 3.0 - p["masspole"] * cos * cos / m))
    x_acc = (force + p["masspole"] * p["length"] * (theta_dot * theta_dot * sin - theta_acc * cos)) / m
    new = s + 0.02 * torch.stack([x_dot, x_acc, theta_dot, theta_acc], dim=1)
    terminated = (new[:, 0].abs() >= 2.4) | (new[:, 2].abs() >= math.radians(12))
    return new.to(dtype), torch.ones(state.shape[0], dtype=dtype), terminated


def _reset_by_masks(next_obs, terminated, steps, max_steps, start_obs):
    """The auto-reset with masked assignment, the old counter compared with max_steps − 1, and
    the inputs returned without copies."""
    truncated = steps >= max_steps - 1
    ended = terminated | truncated
    obs = next_obs.clone()
    obs[ended] = start_obs[ended]
    return obs, terminated, truncated, next_obs, (steps + 1) * ~ended


def _riccati(A, B, Q, R, *, joseph=False, inverse=False):
    """The Riccati iteration without symmetrising P, in the Joseph form or with an explicit
    inverse, stopping on the Frobenius norm of the change."""
    P_ = Q.clone()
    while True:
        M = R + B.T @ P_ @ B
        K = torch.linalg.inv(M) @ B.T @ P_ @ A if inverse else torch.linalg.solve(M, B.T @ P_ @ A)
        if joseph:
            closed = A - B @ K
            nxt = Q + K.T @ R @ K + closed.T @ P_ @ closed
        else:
            nxt = Q + A.T @ P_ @ A - A.T @ P_ @ B @ K
        change = float(torch.linalg.norm(nxt - P_))
        P_ = nxt
        if change <= 1e-10 * max(1.0, float(torch.linalg.norm(P_))):
            return torch.linalg.solve(R + B.T @ P_ @ B, B.T @ P_ @ A)


@pytest.mark.parametrize("name, answer", [
    ("cartpole_step", _step_by_hand),
    ("cartpole_step", lambda *a: _step_by_hand(*a, f64=True, where=True)),
    ("auto_reset", _reset_by_masks),
    pytest.param("lqr_gain", _riccati, marks=pytest.mark.slow),  # over half a second: thousands of sweeps
    pytest.param("lqr_gain", lambda *a: _riccati(*a, joseph=True, inverse=True), marks=pytest.mark.slow),
])
def test_answers_written_differently_score_full_marks(name, answer):
    """Valid answers that differ from the reference in algebra, order of operations, dtype inside
    or threshold test (≥ for >: the cases keep every state off the thresholds) pass everything."""
    judged = verdicts(answer, name, seed=11)
    assert all(v.score == 1.0 for v in judged), [v.message for v in judged]


@pytest.mark.slow  # ten seconds: the case that never converges runs to its time limit
def test_a_riccati_loop_that_never_stops_costs_only_its_case():
    """A relative change |ΔP|/max|P| is 0/0 when Q = 0: the loop never stops. The time limit
    makes it that case's failure, with a message, instead of an interrupted grade cell."""
    def relative(A, B, Q, R):
        P_ = Q.clone()
        while True:
            K = torch.linalg.solve(R + B.T @ P_ @ B, B.T @ P_ @ A)
            nxt = Q + A.T @ P_ @ (A - B @ K)
            change = float((nxt - P_).abs().max() / nxt.abs().max())
            P_ = nxt
            if change <= 1e-10:
                return torch.linalg.solve(R + B.T @ P_ @ B, B.T @ P_ @ A)

    _, edge = verdicts(relative, "lqr_gain")
    failed = [(n, p) for n, s, p in zip(edge.case_names, edge.scores, edge.problems, strict=True) if s < 1]
    assert [n for n, _ in failed] == ["Q = 0 on an unstable system: no state cost, so no control (K = 0)"]
    assert "ran longer than" in failed[0][1][0]
