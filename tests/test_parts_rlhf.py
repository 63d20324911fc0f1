"""The graded parts of exercise 07: every reference scores full marks on its cases, the
variants behind the known mistakes reduce to the references when nothing is changed, the
mistakes the exercise's brief names score below full marks with their hint, the edge cases do
what their names say (overflow of the naive forms, padding, π* = π_ref), and the behavioural
reward-model part catches a loop that learns the opposite, never steps, steps on the whole
data set or does not shuffle; the behavioural DPO part scores a correct loop full marks and
names the swapped pairs, the missing reference log-ratio, β outside the sigmoid and a gradient
into the reference."""

import math

import pytest
import torch
import torch.nn.functional as F

from rlteach import preferences, rlhf
from rlteach.grading import CheckFailed, check
from rlteach.grading import harness as H
from rlteach.grading.parts import PARTS
from rlteach.grading.parts import rlhf as P
from tests.part_checks import CPU, verdicts

NAMES = ("bradley_terry_loss", "kl_penalized_rewards", "reward_model_training", "optimal_policy", "kl_tradeoff",
         "dpo_training")
BEHAVIOURAL = ("reward_model_training", "dpo_training")


def reference_verdicts(name, seed=0):
    """The reference judged against itself outside the seal, on every group."""
    part = PARTS[name]
    out = []
    for group in part.groups:
        cases = part.cases(seed, group)
        outcomes = [H.Outcome(H.observe(part, part.reference, *case.arguments(CPU))) for case in cases]
        out.append(H.judge(part, group, cases, outcomes, CPU))
    return out


def test_the_topic_has_six_parts_four_that_build_two_behavioural():
    assert all(name in PARTS for name in NAMES)
    assert [name for name in NAMES if PARTS[name].behavioural] == list(BEHAVIOURAL)
    assert all(len(PARTS[name].mistakes) >= 3 for name in NAMES if not PARTS[name].behavioural)
    sealed = {fn for name in NAMES for fn in PARTS[name].sealed}
    for fn in (preferences.bradley_terry_loss, preferences.dpo_loss, rlhf.kl_penalized_rewards,
               rlhf.optimal_policy_logp, rlhf.train_reward_model, rlhf.train_dpo):
        assert fn in sealed
    assert {preferences.dpo_loss, rlhf.train_dpo} <= set(PARTS["dpo_training"].sealed)
    assert rlhf.response_mask not in sealed and rlhf.RewardModel not in sealed


@pytest.mark.parametrize("name", [n for n in NAMES if n not in BEHAVIOURAL])
def test_the_references_score_full_marks(name):
    for verdict in reference_verdicts(name, seed=5):
        assert verdict.score == 1.0, verdict.message


def test_the_unchanged_variants_are_the_references():
    for case in P._bt_cases(2, "edge") + P._bt_cases(2, "random"):
        args, _ = case.arguments(CPU)
        torch.testing.assert_close(P._bt_variant(*args), preferences.bradley_terry_loss(*args))
    for case in P._kl_cases(2, "edge") + P._kl_cases(2, "random"):
        args, _ = case.arguments(CPU)
        torch.testing.assert_close(P._kl_variant(*args), rlhf.kl_penalized_rewards(*args))
    for case in P._optimal_cases(2, "edge") + P._optimal_cases(2, "random"):
        args, _ = case.arguments(CPU)
        torch.testing.assert_close(P._optimal_variant(*args), rlhf.optimal_policy_logp(*args))
    for case in P._sweep_cases(2, "edge") + P._sweep_cases(2, "random"):
        args, _ = case.arguments(CPU)
        want = rlhf.optimum_summary(*args)
        torch.testing.assert_close(P._sweep_variant(*args), (want.reward, want.utility, want.kl))


PROBES = {
    "bradley_terry_loss": {
        "preferred and rejected swapped": dict(swapped=True),
        "sigmoid instead of logsigmoid overflow": dict(form="log sigmoid"),
        "sum instead of mean": dict(reduce="sum"),
        "gradient wrong at a tie": dict(form="kinks"),
        "NaN gradient from torch.where": dict(form="where"),
    },
    "kl_penalized_rewards": {
        "KL penalty sign": dict(sign=1.0),
        "score added at every token": dict(where="every token"),
        "score at the last column instead of the response's last token": dict(where="last column"),
        "penalty not masked outside the response": dict(masked=False),
        "gradient flows through logp": dict(detach=False),
    },
    "optimal_policy": {
        "exp(beta*r) instead of exp(r/beta)": dict(scale="times beta"),
        "not normalised": dict(normalise="none"),
        "normalised outside log space": dict(normalise="exp"),
    },
    "kl_tradeoff": {
        "KL direction reversed": dict(kl="reversed"),
        "expectations under π_ref": dict(under="reference"),
        "exp(beta*r) instead of exp(r/beta)": dict(scale="times beta"),
        "optimum of the true utility": dict(optimum_of="utility"),
    },
}
VARIANTS = {"bradley_terry_loss": P._bt_variant, "kl_penalized_rewards": P._kl_variant,
            "optimal_policy": P._optimal_variant, "kl_tradeoff": P._sweep_variant}


@pytest.mark.parametrize("name, hint", [(n, h) for n, probes in PROBES.items() for h in sorted(probes)])
def test_the_probes_score_below_full_marks_and_are_named(name, hint):
    variant, change = VARIANTS[name], PROBES[name][hint]
    judged = verdicts(lambda *a: variant(*a, **change), name)
    assert sum(v.score for v in judged) / len(judged) < 1.0
    assert any(hint in v.message for v in judged), [v.message for v in judged]


def test_the_relu_form_of_the_kinks_is_named_too():
    """relu(−Δ) + log1p(exp(−|Δ|)) has a zero gradient at a tie: the hint names the kink, not only a
    detached input."""
    def relu_kinks(c, r):
        return (F.relu(r - c) + torch.log1p(torch.exp(-(c - r).abs()))).mean()

    random, edge = verdicts(relu_kinks, "bradley_terry_loss")
    assert random.score == 1.0 and edge.score == pytest.approx(0.8)
    assert "gradient wrong at a tie" in edge.message


def test_only_the_extreme_margins_catch_the_naive_log_sigmoid():
    def naive(c, r):
        return -torch.log(torch.sigmoid(c - r)).mean()

    random, edge = verdicts(naive, "bradley_terry_loss")
    assert random.score == 1.0
    assert [n for n, s in zip(edge.case_names, edge.scores, strict=True) if s < 1] == [
        "margins of ±1000 (log σ(−1000) = −1000, not −∞)", "float32 margins of ±200"]
    (case,) = [c for c in P._bt_cases(0, "edge") if "±1000" in c.name]
    assert math.isinf(float(naive(*case.args))) and math.isfinite(float(preferences.bradley_terry_loss(*case.args)))


def test_the_bradley_terry_gradient_is_graded():
    """The loss scaled by 2 outside its value check fails on the gradient alone: (loss detached) + loss."""
    def doubled_gradient(c, r):
        loss = -F.logsigmoid(c - r).mean()
        return loss.detach() + (loss - loss.detach()) * 2.0

    random, _ = verdicts(doubled_gradient, "bradley_terry_loss")
    assert random.score == 0.0 and "gradient" in random.message


def test_the_kl_cases_do_what_their_names_say():
    for case in P._kl_cases(4, "edge"):
        logp, ref_logp, score, mask, beta = case.arguments(CPU)[0]
        rewards = rlhf.kl_penalized_rewards(logp, ref_logp, score, mask, beta)
        torch.testing.assert_close(rewards.sum(1), score.to(rewards.dtype) - beta * ((logp - ref_logp) * mask).sum(1))
        assert bool((rewards[~mask] == 0).all())
        if "no penalty" in case.name or "β = 0" in case.name:
            torch.testing.assert_close(rewards.sum(1), score)
        if "fills all" in case.name:
            assert bool(mask.all())
        if "requires grad" in case.name:
            assert logp.requires_grad and not rewards.requires_grad
    for case in P._kl_cases(4, "random"):
        mask = case.args[3]
        assert not bool(mask.all()) and bool((case.args[0][~mask] != 0).all())  # padding, holding values


def test_the_optimum_edge_cases_do_what_their_names_say():
    edge = {c.name: c.args for c in P._optimal_cases(1, "edge")}
    ref_logp, reward, beta = edge["β = 1e6 (π* is π_ref)"]
    torch.testing.assert_close(rlhf.optimal_policy_logp(ref_logp, reward, beta), ref_logp, rtol=1e-5, atol=1e-5)
    ref_logp, reward, beta = edge["β = 0.002 (r/β up to ±1500: exp overflows)"]
    assert math.isinf(float((reward / beta).exp().max()))
    summary = {c.name: c.args for c in P._sweep_cases(1, "edge")}
    ref_logp, reward, u, betas = summary["β from 1e-3 to 1e6 (r/β up to ±3000; the KL goes to 0)"]
    kl = rlhf.optimum_summary(ref_logp, reward, u, betas).kl
    assert float(kl[-1]) < 1e-6 < float(kl[0])
    assert float(kl[0]) == pytest.approx(-float(ref_logp[reward.argmax()]), rel=1e-6)  # all mass on the best response


def test_the_sweep_on_the_enumerable_task_shows_the_trade_off():
    """On all 4,680 responses, E[r̂] rises as β falls while the KL grows: the slider's picture."""
    (case, *_) = P._sweep_cases(0, "random")
    summary = rlhf.optimum_summary(*case.args)
    assert case.args[0].shape == (4680,)
    assert bool((summary.reward.diff() < 0).all()) and bool((summary.kl.diff() < 0).all())  # betas increase


# ----------------------------------------------------------- the behavioural reward-model part


def _rm_loop(model, optimizer, chosen, rejected, epochs, batch_size, generator, *, swapped=False, step=True,
             full_batch=False, shuffle=True, zero_grad=True, loss_form="logsigmoid", misaligned=False):
    """The reward-model loop with one thing changed (``loss_form``: the loss of the margin Δ,
    written another valid way or a wrong one; ``misaligned``: the chosen responses of a
    minibatch paired with the rejected ones in reverse order)."""
    P_ = chosen.shape[0]
    size = P_ if full_batch else batch_size
    for _ in range(epochs):
        order = torch.randperm(P_, generator=generator) if shuffle else torch.arange(P_)
        for start in range(0, P_, size):
            index = order[start:start + size]
            if loss_form == "one forward":
                scores = model(torch.cat([chosen[index], rejected[index]]))
                w, lose = scores[:len(index)], scores[len(index):]
            else:
                w, lose = model(chosen[index.flip(0) if misaligned else index]), model(rejected[index])
            margin = lose - w if swapped else w - lose
            form = "logsigmoid" if loss_form == "one forward" else loss_form
            loss = {"logsigmoid": lambda: -F.logsigmoid(margin).mean(), "softplus": lambda: F.softplus(-margin).mean(),
                    "bce": lambda: F.binary_cross_entropy_with_logits(margin, torch.ones_like(margin)),
                    "float64": lambda: -F.logsigmoid(margin.double()).mean(),
                    "sum": lambda: -F.logsigmoid(margin).sum(), "mse": lambda: ((margin - 1) ** 2).mean(),
                    "hinge": lambda: F.relu(1 - margin).mean()}[form]()
            if zero_grad:
                optimizer.zero_grad()
            loss.backward()
            if step:
                optimizer.step()


@pytest.mark.slow
def test_the_reward_model_reference_and_a_correct_loop_score_full_marks():
    assert all(v.score == 1.0 for v in reference_verdicts("reward_model_training", seed=0))
    judged = verdicts(_rm_loop, "reward_model_training", seed=7)
    assert all(v.score == 1.0 for v in judged), [v.message for v in judged]


@pytest.mark.slow
@pytest.mark.parametrize("change, score, words", [
    (dict(swapped=True), 2 / 5, "learned the opposite"),
    (dict(step=False), 1 / 5, "parameters did not change"),
    (dict(full_batch=True), None, "steps; expected"),
    (dict(shuffle=False), 3 / 5, "torch.randperm"),  # and its first step is on another minibatch
    (dict(zero_grad=False), 2 / 5, "not zeroed"),  # it ranks 80%, and is not told it learned the opposite
    (dict(misaligned=True), 4 / 5, "different pairs"),  # ranks well: only the steps give it away
    (dict(loss_form="mse"), 4 / 5, "a loss other than the mean Bradley-Terry loss"),
    (dict(loss_form="hinge"), 4 / 5, "a loss other than the mean Bradley-Terry loss"),
    (dict(loss_form="sum"), 4 / 5, "the sum over the pairs instead of the mean"),
])
def test_the_reward_model_probes_lose_their_share_and_say_why(change, score, words):
    part = PARTS["reward_model_training"]
    (case,) = part.cases(0, "random")
    judged = H.judge_case(part, case, H.attempt(part, lambda *a: _rm_loop(*a, **change), case, CPU), CPU)
    assert judged.score < 1.0
    if score is not None:
        assert judged.score == pytest.approx(score)
    assert any(words in p for p in judged.problems), judged.problems
    assert ("learned the opposite" in " ".join(judged.problems)) == change.get("swapped", False)


@pytest.mark.slow
@pytest.mark.parametrize("loss_form", ["one forward", "softplus", "bce", "float64"])
def test_reward_model_loops_written_differently_score_full_marks(loss_form):
    """One forward pass over both responses, softplus, BCE with logits or a float64 loss: the
    steps follow the stated loss within rounding, on every case."""
    judged = verdicts(lambda *a: _rm_loop(*a, loss_form=loss_form), "reward_model_training", seed=5)
    assert all(v.score == 1.0 for v in judged), [v.message for v in judged]


@pytest.mark.slow
def test_the_steps_are_compared_at_the_answers_parameters():
    """The stated loop, run at the answer's recorded parameters, gives back the answer's own
    gradients: the reference to 0, a loop in float64 to within 1e-5 of the tolerance's scale."""
    part = PARTS["reward_model_training"]
    (case,) = part.cases(0, "random")
    for fn, bound in ((P._rm_reference, 0.0), (lambda *a: _rm_loop(*a, loss_form="float64"), 1e-5)):
        args, kwargs = case.arguments(CPU)
        fn(*args, **kwargs)
        steps = P._RECORDED[args[1]]
        assert len(steps) == P.STEPS_FOLLOWED
        want = P._stated_gradients(case, [start for start, _ in steps])
        gaps = [float((g - w).norm() / w.norm()) for (_, g), w in zip(steps, want, strict=True)]
        assert max(gaps) <= bound, gaps


@pytest.mark.slow
def test_the_stated_gradients_are_taken_at_the_given_parameters():
    """Starts off the stated loop's own path (those of a loop that never zeroes its gradients):
    the k-th recomputed gradient is ∇ of the mean Bradley-Terry loss of minibatch k (the k-th
    slice of the epochs' permutations), at start k, to rounding."""
    part = PARTS["reward_model_training"]
    (case,) = part.cases(0, "random")
    args, kwargs = case.arguments(CPU)
    _rm_loop(*args, zero_grad=False, **kwargs)
    starts = [start for start, _ in P._RECORDED[args[1]]]
    want = P._stated_gradients(case, starts)
    model, _, chosen, rejected, _, batch_size, _ = case.arguments(CPU)[0]
    generator = torch.Generator().manual_seed(case.info["seed"] + 1)
    minibatches = [index for _ in range(2) for index in torch.randperm(len(chosen), generator=generator).split(batch_size)]
    params = list(model.parameters())
    for k, start in enumerate(starts):
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(start.float(), params)
        index = minibatches[k]
        loss = -F.logsigmoid(model(chosen[index]) - model(rejected[index])).mean()
        grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]).double()
        assert float((grad - want[k]).norm() / grad.norm()) < 1e-5, k
    assert float((starts[-1] - starts[0]).norm()) > 0.1  # the starts have moved


@pytest.mark.slow
def test_swapped_pairs_rank_below_chance():
    part = PARTS["reward_model_training"]
    (case,) = part.cases(0, "random")
    outcome = H.attempt(part, lambda *a: _rm_loop(*a, swapped=True), case, CPU)
    model = P._trained_model(outcome.observed["result"]["state"])
    info = case.info
    assert rlhf.ranking_accuracy(model, info["test_a"], info["test_b"], info["utility"], P.TASK) < 0.5


# ------------------------------------------------- answers written differently from the reference


def _rewards_by_one_hot(logp, ref_logp, score, mask, beta):
    """The per-token rewards under no_grad, with torch.where and a one-hot of the last token."""
    with torch.no_grad():
        penalty = torch.where(mask, -beta * (logp - ref_logp), torch.zeros_like(logp))
        last = F.one_hot(mask.sum(1) - 1, mask.shape[1]).to(logp.dtype)
        return penalty + last * score.unsqueeze(1)


def _rewards_in_float64(logp, ref_logp, score, mask, beta):
    """The per-token rewards computed in float64 from a shifted mask (the last token is where the
    mask turns False), cast back."""
    is_last = mask & ~torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)
    penalty = beta * (ref_logp.double() - logp.detach().double())
    return (torch.where(mask, penalty, 0.0) + torch.where(is_last, score.double().unsqueeze(1), 0.0)).to(logp.dtype)


def _tradeoff_vectorised(ref_logp, reward, utility, betas):
    """Every β at once, KL(π*‖π_ref) = E_π*[r]/β − log Z (no 0·log 0 to handle)."""
    logits = ref_logp.unsqueeze(0) + reward.unsqueeze(0) / betas.unsqueeze(1)
    log_z = torch.logsumexp(logits, dim=1)
    p = (logits - log_z.unsqueeze(1)).exp()
    mean_reward = p @ reward
    return mean_reward, p @ utility, mean_reward / betas - log_z


def _tradeoff_nansum(ref_logp, reward, utility, betas):
    """A list of tensors, β as 0-d tensors, the KL by nansum (0·(−∞ + ∞) dropped)."""
    rewards, utilities, kls = [], [], []
    for beta in betas:
        logp = ref_logp + reward / beta - torch.logsumexp(ref_logp + reward / beta, 0)
        p = logp.exp()
        rewards.append((p * reward).sum())
        utilities.append((p * utility).sum())
        kls.append((p * (logp - ref_logp)).nansum())
    return [torch.stack(rewards), torch.stack(utilities), torch.stack(kls)]


@pytest.mark.parametrize("name, answer", [
    ("bradley_terry_loss", lambda c, r: F.softplus(r - c).mean()),
    ("bradley_terry_loss", lambda c, r: F.binary_cross_entropy_with_logits(c - r, torch.ones_like(c))),
    ("bradley_terry_loss", lambda c, r: -torch.log_softmax(torch.stack([c, r]), 0)[0].mean()),
    ("bradley_terry_loss", lambda c, r: (-F.logsigmoid((c - r).double()).mean()).to(c.dtype)),
    ("kl_penalized_rewards", _rewards_by_one_hot),
    ("kl_penalized_rewards", _rewards_in_float64),
    ("optimal_policy", lambda ref, r, beta: (ref + r / beta) - torch.logsumexp(ref + r / beta, 0)),
    ("optimal_policy", lambda ref, r, beta: torch.log_softmax(ref.double() + (r.double() - r.max()) / beta, -1)
     .to(ref.dtype)),
    ("kl_tradeoff", _tradeoff_vectorised),
    ("kl_tradeoff", _tradeoff_nansum),
])
def test_answers_written_differently_score_full_marks(name, answer):
    """Valid answers that differ from the reference in algebra, stable form, dtype inside,
    vectorisation or the returned sequence pass every case."""
    judged = verdicts(answer, name, seed=11)
    assert all(v.score == 1.0 for v in judged), [v.message for v in judged]


def test_calling_the_references_scores_zero():
    def cheat(logp, ref_logp, score, mask, beta):
        return rlhf.kl_penalized_rewards(logp, ref_logp, score, mask, beta)

    with pytest.raises(CheckFailed, match="sealed"):
        check(cheat, "kl_penalized_rewards", seed=0)
    with pytest.raises(CheckFailed, match="sealed"):
        check(lambda c, r: preferences.dpo_loss(c, r, torch.zeros_like(c), torch.zeros_like(r), 1.0)[0],
              "bradley_terry_loss", seed=0)


# ------------------------------------------------------------------- the behavioural DPO part


def _dpo_loop(policy, ref_policy, optimizer, chosen, rejected, beta, epochs, batch_size, generator, *,
              swapped=False, anchored=True, beta_inside=True, ref_as_data=True, step=True, zero_grad=True,
              misaligned=False):
    """A student's DPO loop (the reference's log-probabilities per minibatch) with one thing changed
    (``misaligned``: the chosen responses of a minibatch in reverse order against the rejected)."""
    P_ = chosen.shape[0]
    if swapped:
        chosen, rejected = rejected, chosen
    for _ in range(epochs):
        order = torch.randperm(P_, generator=generator)
        for start in range(0, P_, batch_size):
            index = order[start:start + batch_size]
            w, lose = chosen[index.flip(0) if misaligned else index], rejected[index]
            log_w, log_l = policy.sequence_logp(w), policy.sequence_logp(lose)
            if anchored:
                with torch.set_grad_enabled(not ref_as_data):
                    ref_w, ref_l = ref_policy.sequence_logp(w), ref_policy.sequence_logp(lose)
                log_w, log_l = log_w - ref_w, log_l - ref_l
            delta = log_w - log_l
            loss = -F.logsigmoid(beta * delta).mean() if beta_inside else -(beta * F.logsigmoid(delta)).mean()
            if zero_grad:
                optimizer.zero_grad()
            loss.backward()
            if step:
                optimizer.step()


def _dpo_judged(fn, seed=0, group="random", index=0):
    part = PARTS["dpo_training"]
    case = part.cases(seed, group)[index]
    return H.judge_case(part, case, H.attempt(part, fn, case, CPU), CPU)


@pytest.mark.slow
def test_the_dpo_reference_and_a_correct_loop_score_full_marks():
    assert all(v.score == 1.0 for v in reference_verdicts("dpo_training", seed=0))
    judged = verdicts(_dpo_loop, "dpo_training", seed=7)
    assert all(v.score == 1.0 for v in judged), [v.message for v in judged]


@pytest.mark.slow
def test_the_unchanged_dpo_variant_is_the_reference():
    part = PARTS["dpo_training"]
    (case,) = part.cases(3, "random")
    states = []
    for fn in (part.reference, P._dpo_variant):
        args, kwargs = case.arguments(CPU)
        fn(*args, **kwargs)
        states.append(P.state_of(args[0]))
    for name, value in states[0].items():
        torch.testing.assert_close(states[1][name], value)


@pytest.mark.slow
def test_the_dpo_reference_gets_close_to_the_optimum_of_the_true_utility():
    """KL(π_DPO‖π*_u) over all 4,680 responses is far below π_ref's on the random case."""
    part = PARTS["dpo_training"]
    (case,) = part.cases(0, "random")
    args, kwargs = case.arguments(CPU)
    part.reference(*args, **kwargs)
    setup = P._dpo_setup(case.info["seed"])
    star = rlhf.optimal_policy_logp(setup["ref_logp"], setup["u"], case.info["beta"])
    kl = float(rlhf.sequence_kl(P._policy_logp(P.state_of(args[0])), star))
    kl_ref = float(rlhf.sequence_kl(setup["ref_logp"], star))
    assert kl < 0.05 and kl < 0.4 * kl_ref


@pytest.mark.slow
@pytest.mark.parametrize("change, score, hint", [
    (dict(swapped=True), 3 / 8, "preferred and rejected swapped"),
    (dict(anchored=False), 3 / 8, "reference log-ratio missing (β·log π only)"),
    (dict(beta_inside=False), 3 / 8, "β applied outside the sigmoid"),
    (dict(ref_as_data=False), 7 / 8, "gradient flows into the reference"),
    (dict(step=False), 2 / 8, "parameters did not change"),  # and no steps
    (dict(zero_grad=False), 3 / 8, "gradients not zeroed"),
    (dict(misaligned=True), 7 / 8, "different pairs"),  # it gets close to π*: only the steps give it away
])
def test_the_dpo_probes_lose_their_share_and_are_named(change, score, hint):
    judged = _dpo_judged(lambda *a: _dpo_loop(*a, **change))
    assert judged.score == pytest.approx(score)
    assert any(hint in p for p in judged.problems), judged.problems


@pytest.mark.slow
def test_swapped_dpo_pairs_lower_the_true_utility():
    part = PARTS["dpo_training"]
    (case,) = part.cases(0, "random")
    outcome = H.attempt(part, lambda *a: _dpo_loop(*a, swapped=True), case, CPU)
    setup = P._dpo_setup(case.info["seed"])
    logp = P._policy_logp(outcome.observed["result"]["state"])
    assert float((logp.exp() * setup["u"]).sum()) < float((setup["ref_logp"].exp() * setup["u"]).sum())


@pytest.mark.slow
def test_calling_the_library_dpo_scores_zero():
    def cheat(policy, ref_policy, optimizer, chosen, rejected, beta, epochs, batch_size, generator):
        rlhf.train_dpo(policy, ref_policy, chosen, rejected, rlhf.DPOConfig(beta=beta, epochs=epochs), generator)

    with pytest.raises(CheckFailed, match="sealed"):
        check(cheat, "dpo_training", seed=0)
