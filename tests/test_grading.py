"""The grading harness: every part's reference passes its own cases, every known mistake is
caught and named, messages say what is wrong, gradients and detaching are checked, cases
are deterministic, behavioural parts judge what an answer achieves, and a check's credit
is shared among its cases."""

import os
import sys
import warnings

import pytest
import torch

from rlteach import importance as imp
from rlteach import prox_algorithms
from rlteach.grading import CheckFailed, check
from rlteach.grading import harness as H
from rlteach.grading.compare import compare
from rlteach.grading.parts import PARTS, get_part
from rlteach.grading.records import Outcome
from rlteach.grading.spec import Case, Mistake, Part, Property, grading_code_called_by
from tests.conftest import DEVICES

CPU = torch.device("cpu")


def stable_weights(logp_target, logp_proposal):
    return (logp_target - logp_proposal).exp()


def failure(fn, part, **kwargs) -> str:
    with pytest.raises(CheckFailed) as info:
        check(fn, part, **kwargs)
    return str(info.value)


def reference_outcomes(part, cases, device=CPU):
    return [Outcome(H.observe(part, part.reference, *case.arguments(device))) for case in cases]


SLOW_TO_CHECK = {  # over a second of CPU each, for the reference or the known mistakes: the slow tier
    "dykstra", "natural_gradient_step", "fisher_vector_product", "trpo_step", "one_step_actor_critic",
    "ppo_update", "ppo_cartpole", "ppo_policy_loss", "td_n_targets", "conjugate_gradient", "replay_buffer",
    "trpo_bandit", "reward_model_training", "cartpole_step", "auto_reset", "lqr_gain", "lqr_cartpole", "dpo_training",
}


def _names(parts) -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_TO_CHECK else n for n in sorted(parts)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", _names(PARTS))
def test_every_reference_passes_its_own_cases_in_every_group(name, device):
    """Judged against itself (outside any seal), each part's reference scores 1 on every
    case of every group, and every group has at least one case."""
    part = PARTS[name]
    for group in part.groups:
        cases = part.cases(3, group)
        assert cases, f"{name}: group {group!r} is empty"
        verdict = H.judge(part, group, cases, reference_outcomes(part, cases, torch.device(device)), torch.device(device))
        assert verdict.scores == (1.0,) * len(cases), verdict.message


@pytest.mark.parametrize("name", _names(n for n, p in PARTS.items() if p.mistakes))
def test_every_known_mistake_fails_and_is_named(name, monkeypatch):
    """Each mistake a part recognises, handed in as an answer, fails some case of some group,
    and the message names that mistake. (A mistake calls the grader's own variants, which are
    sealed against answers: here they are left free, so that the mistake computes.)"""
    part = PARTS[name]
    monkeypatch.setattr(Part, "sealed", property(lambda self: (self.reference, *self.seals)))  # variants_free
    for mistake in part.mistakes:
        messages = []
        for group in part.groups:
            try:
                check(mistake.fn, name, seed=3, group=group)
            except CheckFailed as failed:
                messages.append(str(failed))
        assert messages, f"{mistake.hint!r} passes every case"
        assert any(mistake.hint in message for message in messages), messages


def test_the_grading_code_that_mistakes_call_is_sealed_with_the_part():
    """Every function of the parts modules that a part's mistakes call (the variants that compute the
    answer at their default arguments) is sealed while that part is checked."""
    import rlteach.grading.parts as parts_package
    for part in PARTS.values():
        called = {fn.__name__ for fn in part.grading_code}
        for mistake in part.mistakes:
            for name in getattr(getattr(mistake.fn, "__code__", None), "co_names", ()):
                target = mistake.fn.__globals__.get(name)
                if callable(target) and getattr(target, "__module__", "").startswith(parts_package.__name__):
                    assert name in called and target in part.sealed, (part.name, name)
        assert all(fn.__module__.startswith(parts_package.__name__) for fn in part.grading_code)
    assert {fn.__name__ for fn in PARTS["cartpole_step"].sealed} >= {"_step_reference", "_step_variant"}
    assert {fn.__name__ for fn in PARTS["ppo_update"].sealed} >= {"_update_variant", "_policy_loss_variant"}


@pytest.mark.parametrize("name", _names(n for n, p in PARTS.items() if p.grading_code))
def test_what_runs_beside_an_answer_never_calls_the_sealed_grading_code(name, monkeypatch):
    """The cases' objects, ``observe`` and ``loss`` run while the answer does: with only the grading code
    sealed (less what the reference itself calls, where it lives in the parts module too), the reference
    handed in as the answer still scores full marks on every group."""
    part = PARTS[name]
    own = grading_code_called_by([part.reference])
    monkeypatch.setattr(Part, "sealed", property(lambda self: tuple(fn for fn in self.grading_code if fn not in own)))
    cpu = torch.device("cpu")
    for group in part.groups:
        cases = part.cases(5, group)
        verdict = H.judge(part, group, cases, [H.attempt(part, part.reference, case, cpu) for case in cases], cpu)
        assert verdict.scores == (1.0,) * len(cases), verdict.message


@pytest.mark.parametrize("name, variant", [("cartpole_step", "_step_variant"), ("gae", "_gae_variant"),
                                           ("ppo_policy_loss", "_policy_loss_variant"), ("lqr_gain", "_lqr_variant"),
                                           ("weighted_is", "_naive_weights")])
def test_an_answer_that_calls_the_graders_own_variant_scores_zero(name, variant):
    """The variants compute the answer at their defaults; calling one is refused like the reference."""
    fn = next(fn for fn in PARTS[name].grading_code if fn.__name__ == variant)
    if variant == "_naive_weights":
        def answer(logp_target, logp_proposal, f_values):
            w = fn(logp_target, logp_proposal)
            return (w * f_values).sum() / w.sum()
    else:
        def answer(*args, **kwargs):
            return fn(*args, **kwargs)
    with pytest.raises(CheckFailed, match=f"{variant}, which is sealed"):
        check(answer, name, seed=2)


def test_every_part_has_three_mistakes_or_is_behavioural():
    for name, part in PARTS.items():
        assert part.behavioural or len(part.mistakes) >= 2, name


def test_cases_are_deterministic_and_leave_the_global_generator_alone():
    state = torch.get_rng_state()
    first, second = PARTS["weighted_is"].cases(11, "random"), PARTS["weighted_is"].cases(11, "random")
    other = PARTS["weighted_is"].cases(12, "random")
    assert all(torch.equal(a, b) for c1, c2 in zip(first, second) for a, b in zip(c1.args, c2.args))
    assert not torch.equal(first[0].args[0], other[0].args[0])
    check(stable_weights, "importance_weights", seed=4)
    assert torch.equal(torch.get_rng_state(), state)


def test_inverted_ratio_is_named():
    message = failure(lambda lp, lq: (lq - lp).exp(), "importance_weights")
    assert "ratio inverted" in message
    assert "got " in message and "expected " in message and "at index (" in message


def test_naive_division_passes_random_cases_but_fails_the_extreme_edge_case():
    check(lambda lp, lq: lp.exp() / lq.exp(), "importance_weights")
    message = failure(lambda lp, lq: lp.exp() / lq.exp(), "importance_weights", group="edge")
    assert "log-probabilities near -1000" in message and "Subtract the logs first" in message
    assert "is nan" in message


@pytest.mark.parametrize("part, naive", [
    ("weighted_is", lambda fx, lp, lq: ((lp - lq).exp() * fx).sum(-1) / (lp - lq).exp().sum(-1)),
    ("effective_sample_size", lambda lp, lq: (lp - lq).exp().sum(-1) ** 2 / ((lp - lq).exp() ** 2).sum(-1)),
])
def test_normalizing_without_log_space_fails_at_log_weights_of_750(part, naive):
    """The instruction says: normalize without overflow. The naive formula passes the random
    cases and fails the edge case whose log-weights reach ±750 (e^750 = inf, inf/inf = NaN)."""
    check(naive, part, seed=1)
    message = failure(naive, part, seed=1, group="edge")
    assert "log-weights spread over [-750, 750]" in message and "Normalize in log space" in message


def test_wrong_shape_dtype_and_device_are_reported():
    message = failure(lambda fx, lp, lq: ((lp - lq).softmax(-1) * fx).sum(-1, keepdim=True), "weighted_is")
    assert "has shape (1,), expected ()" in message
    assert "dtype torch.float32, expected torch.float64" in failure(lambda lp, lq: (lp - lq).exp().float(),
                                                                    "importance_weights")
    assert "is on device meta, expected cpu" in compare(torch.empty(3, device="meta"), torch.zeros(3), 1e-6, 0.0)


def test_worst_index_and_both_values_are_reported():
    want = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    got = torch.tensor([[1.0, 2.1], [3.0, 9.0]], dtype=torch.float64)
    assert compare(got, want, 1e-6, 0.0) == ("the result is wrong at index (1, 1): got 9, expected 4 "
                                             "(2 of 4 entries differ); tolerance rtol=1e-06, atol=0")
    assert compare(want.clone(), want, 0.0, 0.0) is None
    assert "is nan at index (0,)" in compare(torch.tensor([float("nan")]), torch.tensor([1.0]), 1e-6, 0.0)
    assert compare(torch.tensor([float("inf"), float("nan")]), torch.tensor([float("inf"), float("nan")]), 0, 0) is None
    assert "expected a torch.Tensor" in compare(1.0, torch.tensor(1.0), 1e-6, 0.0)
    assert "expected a tuple of 2" in compare(torch.zeros(2), (torch.zeros(1), torch.zeros(1)), 1e-6, 0.0)


def test_dicts_and_named_tuples_are_compared_by_key_and_field():
    from rlteach.kl import KLSummary

    want = {"loss": torch.tensor(1.0, dtype=torch.float64), "stats": KLSummary(torch.tensor(0.5), torch.tensor(2.0), 3)}
    got = {"loss": torch.tensor(1.0, dtype=torch.float64), "stats": (torch.tensor(0.5), torch.tensor(2.5), 3)}
    assert compare(got, want, 1e-6, 0.0).startswith("the result['stats'].max is wrong: got 2.5, expected 2")
    assert "missing ['stats']" in compare({"loss": want["loss"]}, want, 1e-6, 0.0)
    assert compare(dict(want), want, 1e-6, 0.0) is None


def test_gradients_are_compared_and_a_missing_detach_is_named():
    """off_policy_pg_loss is graded on its gradients: with respect to logp they must match,
    and none may reach logp_behavior or q_values."""
    correct = lambda lp, lb, q: -((lp - lb.detach()).exp() * q.detach()).mean()
    check(correct, "off_policy_pg_loss")
    same_gradient = lambda lp, lb, q: -((lp - lb).exp().detach() * q.detach() * lp).mean()
    check(same_gradient, "off_policy_pg_loss", group="edge")  # another loss with the same gradient
    message = failure(lambda lp, lb, q: -((lp - lb.detach()).exp() * q).mean(), "off_policy_pg_loss")
    assert "the gradient of your loss with respect to q_values is not zero" in message
    assert "the Q-values were not detached" in message
    message = failure(lambda lp, lb, q: (lp - lb).exp().detach().mean(), "off_policy_pg_loss")
    assert "cannot be differentiated" in message


def test_an_answer_that_calls_its_part_reference_is_refused():
    for answer in (imp.importance_weights, lambda lp, lq: imp.importance_weights(lp, lq),
                   lambda lp, lq: imp.log_importance_weights(lp, lq).exp()):
        assert "sealed during grading" in failure(answer, "importance_weights")


def test_an_answer_may_call_library_code_its_part_does_not_seal():
    """per_decision_is seals trajectory_is, not the importance weights of part 1."""
    def per_decision(rewards, logp, logp_behavior, gamma):
        rho = torch.cumprod(imp.importance_weights(logp, logp_behavior), dim=0)
        steps = torch.arange(rewards.shape[0], dtype=rewards.dtype).unsqueeze(-1)
        return (gamma**steps * rho * rewards).sum(dim=0)
    check(per_decision, "per_decision_is")
    assert "sealed during grading" in failure(lambda r, lp, lb, g: imp.per_decision_is(r, lp, lb, g), "per_decision_is")


def test_a_refused_call_caught_by_the_answer_still_fails():
    def sneaky(lp, lq):
        try:
            return imp.importance_weights(lp, lq)
        except BaseException:
            return (lp - lq).exp()
    assert "sealed during grading" in failure(sneaky, "importance_weights")


def test_references_work_again_after_the_check():
    failure(imp.importance_weights, "importance_weights")
    assert torch.equal(imp.importance_weights(torch.zeros(2), torch.zeros(2)), torch.ones(2))


def test_a_stub_an_exception_and_a_non_function_are_explained():
    def stub(lp, lq):
        raise NotImplementedError()
    assert "is not implemented yet" in failure(stub, "importance_weights")

    def boom(lp, lq):
        raise ZeroDivisionError("boom")
    assert "your function raised ZeroDivisionError: boom" in failure(boom, "importance_weights")
    assert "is not a function (got a int)" in failure(3, "importance_weights")


def test_changing_an_input_in_place_is_reported():
    def in_place(lp, lq):
        return lp.sub_(lq).exp_()
    assert "changed its argument 1 in place" in failure(in_place, "importance_weights")


def test_warnings_and_stderr_never_fail_a_correct_answer(capfd):
    def noisy(lp, lq):
        warnings.warn("this is fine", RuntimeWarning)
        print("to stderr", file=sys.stderr)
        os.write(2, b"straight to fd 2\n")
        return (lp - lq).exp()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check(noisy, "importance_weights")
        check(noisy, "importance_weights", group="edge")
    out, err = capfd.readouterr()
    assert err == ""
    assert out.count("✓ importance_weights()") == 2


def test_huge_prints_are_cut(capsys):
    def chatty(lp, lq):
        print("x" * 100_000)
        return (lp - lq).exp()
    check(chatty, "importance_weights")
    out = capsys.readouterr().out
    assert out.count("(98001 more characters not shown)") == 3  # each of 3 cases echoes 2,000 of its 100,001
    assert len(out) < 3 * (2_000 + 100) + 200


def test_the_failure_renders_without_a_traceback():
    with pytest.raises(CheckFailed) as info:
        check(lambda lp, lq: (lq - lp).exp(), "importance_weights")
    lines = info.value._render_traceback_()
    assert lines[0].startswith("CheckFailed: importance_weights(): on the random case")
    assert not any("lambda" in line or "check(" in line for line in lines)


def test_unknown_part_group_and_device_get_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="no graded part named 'no_such_part'; known parts: "):
        get_part("no_such_part")
    with pytest.raises(ValueError, match="importance_weights: no case group 'terminations'; groups: random, edge"):
        check(stable_weights, "importance_weights", group="terminations")
    monkeypatch.setenv("RLTEACH_DEVICE", "tpu")
    with pytest.raises(ValueError, match="RLTEACH_DEVICE='tpu'"):
        check(stable_weights, "importance_weights")


def test_a_check_shares_its_credit_among_its_cases():
    """An answer right on 2 of 3 cases scores 2/3 of the check, and the message says so."""
    part = PARTS["importance_weights"]
    cases = part.cases(0, "random")
    outcomes = reference_outcomes(part, cases)
    outcomes[1] = Outcome({"result": outcomes[1].observed["result"] + 1.0})
    verdict = H.judge(part, "random", cases, outcomes, CPU)
    assert verdict.scores == (1.0, 0.0, 1.0) and verdict.score == pytest.approx(2 / 3)
    assert f"on the random case '{cases[1].name}' (2 of 3 random cases pass)" in verdict.message


# -------------------------------------------------------------------- case factories and RL outputs


class Linear(torch.nn.Module):
    def __init__(self, generator: torch.Generator):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(3, 2, generator=generator, dtype=torch.float64))


def _sgd_update(model: Linear, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> dict:
    loss = (model.weight @ x).pow(2).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {"loss": loss.detach()}


def _update_cases(seed: int, group: str) -> list[Case]:
    def make(device):
        model = Linear(torch.Generator().manual_seed(seed)).to(device)
        return (model, torch.optim.SGD(model.parameters(), lr=0.1),
                torch.ones(2, dtype=torch.float64, device=device)), {}
    return [Case("one SGD step", make=make)]


UPDATE = Part("toy_update", _sgd_update, _update_cases, ("random",),
              observe=lambda result, args, kwargs: {"params": dict(args[0].state_dict()), "stats": result})


def test_a_factory_case_gives_fresh_modules_and_the_parameters_after_an_update_are_compared():
    """The reference and the answer each get their own freshly seeded module and optimizer;
    an answer that steps twice is caught on the parameters it leaves behind."""
    def update(model, optimizer, x):
        optimizer.zero_grad()
        loss = (model.weight @ x).square().sum()
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}

    def twice(model, optimizer, x):
        first = update(model, optimizer, x)
        update(model, optimizer, x)
        return first
    check(update, UPDATE)
    assert "the result['params']['weight'] is wrong" in failure(twice, UPDATE)


# ------------------------------------------------------------------------------ behavioural parts


def ista(grad_f, prox_g, x0, step, num_iters):
    x = x0
    for _ in range(num_iters):
        x = prox_g(x - step * grad_f(x), step)
    return x


def fista(grad_f, prox_g, x0, step, num_iters):
    x_prev, y, s = x0, x0, 1.0
    for _ in range(num_iters):
        x = prox_g(y - step * grad_f(y), step)
        s_next = (1 + (1 + 4 * s * s) ** 0.5) / 2
        y = x + (s - 1) / s_next * (x - x_prev)
        x_prev, s = x, s_next
    return x_prev


def test_fista_is_graded_by_its_rate_and_ista_loses_exactly_the_rate_share():
    """On the random group (seeded as in the exercise) a correct FISTA scores 1; ISTA keeps
    the 'descends' share (1/3 of each case) and loses the rate share on the badly
    conditioned lassos, with a message that names ISTA's rate."""
    part = PARTS["fista"]
    cases = part.cases(5, "random")
    outcomes = [H.attempt(part, fista, case, CPU) for case in cases]
    assert H.judge(part, "random", cases, outcomes, CPU).score == 1.0
    outcomes = [H.attempt(part, ista, case, CPU) for case in cases]
    verdict = H.judge(part, "random", cases, outcomes, CPU)
    assert set(verdict.scores) <= {1 / 3, 1.0} and 1 / 3 in verdict.scores
    assert "within ISTA's O(1/k) bound but not FISTA's" in verdict.message
    uphill = lambda g, p, x0, step, k: x0 + 10.0
    outcomes = [H.attempt(part, uphill, case, CPU) for case in cases]
    assert H.judge(part, "random", cases, outcomes, CPU).score == 0.0


def test_a_behavioural_answer_that_runs_too_long_is_stopped_with_a_message():
    slow = Part("slow", prox_algorithms.fista, PARTS["fista"].cases, ("random", "edge"),
                properties=PARTS["fista"].properties, time_limit=0.2)

    def forever(*args):
        while True:
            pass
    outcome = H.attempt(slow, forever, slow.cases(5, "edge")[0], CPU)
    assert outcome.error == "your function ran longer than the 0.2 s this case allows"


def test_behavioural_runs_are_reproducible_with_one_thread_and_a_seeded_global_generator():
    """An answer that draws from the global generator gets the same numbers on every run, and
    the caller's generator state and thread count are restored."""
    seen = []

    def noisy_answer(grad_f, prox_g, x0, step, num_iters):
        seen.append((torch.rand(1).item(), torch.get_num_threads()))
        return fista(grad_f, prox_g, x0, step, num_iters)
    part, state, threads = PARTS["fista"], torch.get_rng_state(), torch.get_num_threads()
    case = part.cases(5, "edge")[0]
    H.attempt(part, noisy_answer, case, CPU)
    H.attempt(part, noisy_answer, case, CPU)
    assert seen[0] == seen[1] and seen[0][1] == 1
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads


def test_a_property_that_cannot_read_the_observation_scores_zero_with_a_reason():
    part = Part("p", stable_weights, lambda s, g: [Case("c", (torch.zeros(2), torch.zeros(2)))], ("random",),
                properties=(Property("positive", lambda observed, case: None if observed["result"].min() > 0 else "no"),))
    verdict = H.judge(part, "random", part.cases(0, "random"), [Outcome({"result": "text"})], CPU)
    assert verdict.score == 0.0 and "positive: could not be judged (AttributeError" in verdict.message


def test_mistake_hints_prefer_the_mistake_consistent_with_every_case():
    """When two mistakes give the answer's output on its failing case, the one that also
    passes the case the answer passed is named."""
    zero = lambda v: v * 0
    zero_at_zero = lambda v: torch.where(v == 0, v * 0, v + 1)
    cases = lambda seed, group: [Case("v = 0", (torch.zeros(2),)), Case("v = 2", (torch.full((2,), 2.0),))]
    part = Part("toy", lambda v: v + 1, cases, ("random",), (Mistake("always zero", zero),
                                                             Mistake("zero at zero", zero_at_zero)))
    message = failure(zero_at_zero, part)
    assert "(1 of 2 random cases pass)" in message and "zero at zero" in message and "always zero" not in message
