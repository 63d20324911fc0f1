"""Copy detection: a renamed copy of the reference and two students sharing an answer are
flagged; independent correct answers are not; short answers are not judged; tampering
signs are listed."""

import re

import pytest

from rlteach import importance as imp
from rlteach.grading import similarity as S

INDEPENDENT = {  # three correct per-decision IS answers written three ways
    "vectorized": '''
def per_decision_is(rewards, logp, logp_behavior, gamma):
    log_rho = torch.cumsum(logp - logp_behavior, dim=0)
    steps = torch.arange(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    discounts = (gamma ** steps).unsqueeze(-1)
    return (discounts * log_rho.exp() * rewards).sum(dim=0)
''',
    "loop": '''
def per_decision_is(rewards, logp, logp_behavior, gamma):
    T, N = rewards.shape
    out = torch.zeros(N, dtype=rewards.dtype, device=rewards.device)
    rho = torch.ones(N, dtype=rewards.dtype, device=rewards.device)
    for t in range(T):
        rho = rho * torch.exp(logp[t] - logp_behavior[t])
        out = out + gamma ** t * rho * rewards[t]
    return out
''',
    "einsum": '''
def per_decision_is(rewards, logp, logp_behavior, gamma):
    ratios = (logp - logp_behavior).exp().cumprod(0)
    g = torch.tensor([gamma ** t for t in range(len(rewards))], dtype=rewards.dtype).to(rewards.device)
    return torch.einsum("t,tn->n", g, ratios * rewards)
''',
}


def renamed_copy(source: str) -> str:
    """The reference re-typed with new names, a new docstring, comments and spacing."""
    out = re.sub(r'""".*?"""', '"""My own per-decision estimator."""', source, flags=re.S)
    for old, new in (("log_rho", "cumulative"), ("discounts", "powers"), ("rewards", "r"), ("per_decision_is", "pdis")):
        out = re.sub(rf"\b{old}\b", new, out)
    return out.replace("  #", "      # note:").replace("(", "( ")


def test_normalization_ignores_names_comments_docstrings_and_layout():
    a = 'def f(x, y):\n    """doc"""\n    z = x + 2 * y  # sum\n    return torch.exp(z)\n'
    b = 'def g(p,q):\n    w=p+3*q\n\n    return torch.exp( w )\n'
    assert S.tokens(a) == S.tokens(b)
    assert S.tokens("torch.exp(x)") != S.tokens("torch.log(x)")  # attributes keep their names


def test_a_renamed_copy_of_the_reference_is_flagged():
    reference = S.reference_source(imp.per_decision_is)
    flags = S.compare_class({"copier": {"per_decision_is": renamed_copy(reference)}},
                            {"per_decision_is": [reference]})
    assert [(f.student, f.other) for f in flags] == [("copier", "the reference")]
    assert flags[0].score >= S.THRESHOLD


def test_two_students_sharing_an_answer_are_flagged_and_independent_answers_are_not():
    reference = S.reference_source(imp.per_decision_is)
    answers = {name: {"per_decision_is": source} for name, source in INDEPENDENT.items()}
    answers["sharer"] = {"per_decision_is": INDEPENDENT["loop"].replace("out", "total").replace("rho", "w")}
    flags = S.compare_class(answers, {"per_decision_is": [reference]})
    assert [str(f) for f in flags] == [f"per_decision_is: loop and sharer are {flags[0].score:.0%} alike"]
    for a in INDEPENDENT.values():
        for b in INDEPENDENT.values():
            if a is not b:
                assert S.similarity(S.fingerprints(a), S.fingerprints(b)) < S.THRESHOLD


def test_answers_too_short_to_tell_are_not_compared():
    one_liner = "def importance_weights(logp_target, logp_proposal):\n    return (logp_target - logp_proposal).exp()\n"
    assert len(S.fingerprints(one_liner)) < S.MIN_FINGERPRINTS
    assert S.similarity(S.fingerprints(one_liner), S.fingerprints(one_liner)) is None
    assert S.compare_class({"a": {"w": one_liner}, "b": {"w": one_liner}}, {"w": [one_liner]}) == []


@pytest.mark.parametrize("source, sign", [
    ("import importlib\nf = importlib.reload(m).g", "reload"),
    ("g = f.__code__", "__code__"),
    ("exec(text)", "exec()"),
    ("from rlteach.grading.seal import EVENT", "rlteach.grading.seal"),
    ("import threading", "threading"),
    ("import gc\ngc.get_objects()", "get_objects"),
])
def test_tampering_signs_are_listed(source, sign):
    assert sign in S.tampering_signs(source)


def test_an_honest_answer_shows_no_tampering_sign():
    for source in INDEPENDENT.values():
        assert S.tampering_signs(source) == []
