import os
import sys
import warnings

import pytest
import torch

from rlteach import importance as imp
from rlteach.grading import CheckFailed, check, compare, get_part
from rlteach.parts import PARTS
from rlteach.seal import SealedReferenceError, sealed
from tests.conftest import DEVICES


def stable_weights(logp_target, logp_proposal):
    return (logp_target - logp_proposal).exp()


def failure(fn, part, **kwargs) -> str:
    with pytest.raises(CheckFailed) as info:
        check(fn, part, **kwargs)
    return str(info.value)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("edge", [False, True])
def test_every_reference_passes_its_own_random_and_edge_cases(device, edge, capsys):
    """Each part's reference, copied outside the seal, passes; the line says how many cases ran where."""
    for name, part in PARTS.items():
        cases = part.cases(3, edge)
        assert len(cases) >= 2
        unsealed = part.reference.__closure__[0].cell_contents  # the undecorated function
        check(unsealed, name, seed=3, edge=edge, device=device)
        assert f"✓ {name}(): {len(cases)} {'edge' if edge else 'random'} cases match the reference on {device}" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(PARTS))
def test_every_known_mistake_fails_and_is_named(name):
    """Each mistake a part recognises, handed in as an answer, fails its random or its
    edge cases, and the message names that mistake."""
    part = PARTS[name]
    assert len(part.mistakes) >= 3
    for mistake in part.mistakes:
        messages = []
        for edge in (False, True):
            try:
                check(mistake.fn, name, edge=edge)
            except CheckFailed as failed:
                messages.append(str(failed))
        assert messages, f"{mistake.hint!r} passes every case"
        assert any(mistake.hint in message for message in messages), messages


def test_cases_are_deterministic_and_leave_the_global_generator_alone():
    state = torch.get_rng_state()
    first, second = PARTS["weighted_is"].cases(11, False), PARTS["weighted_is"].cases(11, False)
    other = PARTS["weighted_is"].cases(12, False)
    assert all(torch.equal(a, b) for c1, c2 in zip(first, second) for a, b in zip(c1.args, c2.args))
    assert not torch.equal(first[0].args[0], other[0].args[0])
    check(stable_weights, "importance_weights", seed=4)
    assert torch.equal(torch.get_rng_state(), state)


def test_inverted_ratio_is_named():
    message = failure(lambda lp, lq: (lq - lp).exp(), "importance_weights")
    assert "ratio inverted" in message
    assert "got " in message and "expected " in message and "at index (" in message


def test_naive_division_passes_visible_cases_but_fails_the_extreme_edge_case():
    check(lambda lp, lq: lp.exp() / lq.exp(), "importance_weights")
    message = failure(lambda lp, lq: lp.exp() / lq.exp(), "importance_weights", edge=True)
    assert "log-probabilities near -1000" in message and "Subtract the logs first" in message
    assert "is nan" in message


def test_forgot_to_normalize_is_named():
    message = failure(lambda fx, lp, lq: ((lp - lq).exp() * fx).mean(-1), "weighted_is")
    assert "forgot to normalize" in message


def test_ess_from_unnormalized_weights_is_named():
    message = failure(lambda lp, lq: 1 / ((lp - lq).exp() ** 2).sum(-1), "effective_sample_size")
    assert "ESS from unnormalized weights" in message


def test_trajectory_ratio_in_per_decision_is_is_named():
    message = failure(imp.trajectory_is, "per_decision_is")
    assert "trajectory IS" in message


def test_wrong_shape_is_reported_with_both_shapes():
    message = failure(lambda fx, lp, lq: ((lp - lq).softmax(-1) * fx).sum(-1, keepdim=True), "weighted_is")
    assert "has shape (1,), expected ()" in message


def test_wrong_dtype_is_reported():
    message = failure(lambda lp, lq: (lp - lq).exp().float(), "importance_weights")
    assert "dtype torch.float32, expected torch.float64" in message


def test_wrong_device_is_reported():
    want = torch.zeros(3)
    assert "is on device meta, expected cpu" in compare(torch.empty(3, device="meta"), want, 1e-6, 0.0)


def test_worst_index_and_both_values_are_reported():
    want = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    got = torch.tensor([[1.0, 2.1], [3.0, 9.0]])
    assert compare(got, want, 1e-6, 0.0) == ("the result is wrong at index (1, 1): got 9, expected 4 "
                                             "(2 of 4 entries differ); tolerance rtol=1e-06, atol=0")
    assert compare(want.clone(), want, 0.0, 0.0) is None
    assert "is nan at index (0,)" in compare(torch.tensor([float("nan")]), torch.tensor([1.0]), 1e-6, 0.0)
    assert compare(torch.tensor([float("inf"), float("nan")]), torch.tensor([float("inf"), float("nan")]), 0.0, 0.0) is None
    assert "expected a torch.Tensor" in compare(1.0, torch.tensor(1.0), 1e-6, 0.0)
    assert "expected a tuple of 2" in compare(torch.zeros(2), (torch.zeros(1), torch.zeros(1)), 1e-6, 0.0)


def test_an_answer_that_calls_the_reference_is_refused():
    for answer in (imp.importance_weights, lambda lp, lq: imp.importance_weights(lp, lq),
                   lambda lp, lq: imp.log_importance_weights(lp, lq).exp()):
        assert "sealed during grading" in failure(answer, "importance_weights")


def test_a_refused_call_caught_by_the_answer_still_fails():
    def sneaky(lp, lq):
        try:
            return imp.importance_weights(lp, lq)
        except Exception:
            return (lp - lq).exp()
    assert "sealed during grading" in failure(sneaky, "importance_weights")


def test_references_work_again_after_the_check():
    with sealed():
        with pytest.raises(SealedReferenceError):
            imp.importance_weights(torch.zeros(2), torch.zeros(2))
    assert torch.equal(imp.importance_weights(torch.zeros(2), torch.zeros(2)), torch.ones(2))


def test_a_stub_and_an_exception_are_explained():
    def stub(lp, lq):
        raise NotImplementedError()
    assert "is not implemented yet" in failure(stub, "importance_weights")

    def boom(lp, lq):
        raise ZeroDivisionError("boom")
    assert "your function raised ZeroDivisionError: boom" in failure(boom, "importance_weights")


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
        check(noisy, "importance_weights", edge=True)
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
    assert lines[0].startswith("CheckFailed: importance_weights(): on the case")
    assert not any("lambda" in line or "check(" in line for line in lines)


def test_unknown_part_and_non_function_get_clear_errors():
    with pytest.raises(ValueError, match="no graded part named 'gae'; known parts: "):
        get_part("gae")
    assert "importance_weights(): on the case '" in failure(3, "importance_weights")
    assert "is not a function (got a int)" in failure(3, "importance_weights")


def test_rlteach_device_selects_the_grading_device(monkeypatch, capsys):
    monkeypatch.setenv("RLTEACH_DEVICE", "cpu")
    check(stable_weights, "importance_weights")
    assert "on cpu" in capsys.readouterr().out
    monkeypatch.setenv("RLTEACH_DEVICE", "tpu")
    with pytest.raises(ValueError, match="RLTEACH_DEVICE='tpu'"):
        check(stable_weights, "importance_weights")
