"""Graded parts of the RLHF exercise (07).

Two warm-ups, the Bradley-Terry loss (graded on its value and its gradients, at margins of
±1000 where ``log(sigmoid(·))`` is infinite) and the per-token KL-penalised rewards that PPO
optimises (the learned reward at the response's last token, a penalty at each of its tokens,
nothing in the padding, no gradient); then four parts that build: the reward-model
training loop, graded on what the trained model achieves (its ranking of held-out pairs of
a token task by a hidden utility, within a budget of optimizer steps, reproducibly) and on
the gradients its first steps are taken on (recomputed by the stated loop at the answer's
own parameters, so that Adam cannot amplify rounding into a difference), the
KL-regularised optimum over every response of an enumerable task, the sweep over β that
reads off the learned reward, the true utility and the KL to the reference of the optimum
(what the lecture's slider shows), and the DPO training loop, graded on how close the
fine-tuned policy comes, over every response, to the optimum of the *true* utility.

The references are the library's (:mod:`rlteach.preferences`, :mod:`rlteach.rlhf`); the
variants behind the known mistakes are written here, each one switch away from the reference.
"""

from __future__ import annotations

import copy
import functools
import math
import weakref
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rlteach import preferences, rlhf
from rlteach.grading.spec import Arguments, Case, Mistake, Part, Property, state_of

GROUPS = ("random", "edge")
F64 = torch.float64


def _randn(g: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    return scale * torch.randn(shape, generator=g, dtype=F64)


# ---------------------------------------------------------------- 1. the Bradley-Terry loss


def _bt_pairs(g: torch.Generator, B: int, scale: float = 2.0, margin: float = 1.0) -> tuple[Tensor, Tensor]:
    """Scores of B pairs whose chosen response is ahead by ``margin`` on average."""
    rejected = _randn(g, B, scale=scale)
    return rejected + margin + _randn(g, B, scale=scale), rejected


def _bt_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        return [Case("64 pairs, scores of scale 2", _bt_pairs(g, 64)),
                Case("256 pairs, scores of scale 5", _bt_pairs(g, 256, scale=5.0)),
                Case("10 pairs, the rejected one mostly ahead", _bt_pairs(g, 10, margin=-2.0))]
    chosen, rejected = _bt_pairs(g, 32)
    signs = torch.where(torch.arange(24) % 2 == 0, 1.0, -1.0).to(F64)
    far = _randn(g, 24)
    return [Case("margins of ±1000 (log σ(−1000) = −1000, not −∞)", (far + 1000.0 * signs, far)),
            Case("float32 margins of ±200", ((far + 200.0 * signs).float(), far.float())),
            Case("a single pair", _bt_pairs(g, 1)),
            Case("equal scores (every pair a coin flip: loss log 2)", (chosen.clone(), chosen)),
            Case("scores shifted by 500 (only differences matter)", (chosen + 500.0, rejected + 500.0))]


def _bt_variant(score_chosen: Tensor, score_rejected: Tensor, *, swapped: bool = False, form: str = "logsigmoid",
                reduce: str = "mean") -> Tensor:
    """The Bradley-Terry loss with one piece changed; ``form``: "logsigmoid", "log sigmoid"
    (``log(sigmoid(Δ))``), "softplus by hand" (``log(1 + exp(−Δ))``), "strengths" (``p = e^s``),
    "kinks" (``max(0, −Δ) + log(1 + exp(−|Δ|))`` with ``clamp``: exact values, but autograd's
    one-sided derivatives of ``clamp`` and ``abs`` at Δ = 0 give −1 where σ(0) − 1 = −½), "relu
    kinks" (the same with ``relu``, whose derivative at 0 is 0: the gradient at a tie is 0) or "where"
    (``torch.where`` between the two one-sided stable forms: exact values, but the branch not
    taken overflows and its 0·∞ turns the gradient into NaN)."""
    w, lose = (score_rejected, score_chosen) if swapped else (score_chosen, score_rejected)
    delta = w - lose
    if form == "logsigmoid":
        terms = -F.logsigmoid(delta)
    elif form == "log sigmoid":
        terms = -torch.log(torch.sigmoid(delta))
    elif form == "softplus by hand":
        terms = torch.log(1 + torch.exp(-delta))
    elif form == "kinks":
        terms = (-delta).clamp(min=0) + torch.log1p(torch.exp(-delta.abs()))
    elif form == "relu kinks":
        terms = F.relu(-delta) + torch.log1p(torch.exp(-delta.abs()))
    elif form == "where":
        terms = torch.where(delta > 0, torch.log1p(torch.exp(-delta)), -delta + torch.log1p(torch.exp(delta)))
    else:
        terms = -torch.log(w.exp() / (w.exp() + lose.exp()))
    return terms.sum() if reduce == "sum" else terms.mean()


# ------------------------------------------------------------ 2. the KL-penalised rewards

TASK = rlhf.TokenTask(8, 4)


def _rollout(g: torch.Generator, B: int, L: int, *, lengths: Tensor | None = None, move: float = 0.3,
             garbage: float = 3.0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``logp, ref_logp, score, mask`` of B responses of 1 to L tokens; ``logp`` and ``ref_logp``
    hold arbitrary values (of scale ``garbage``) outside the response."""
    if lengths is None:
        lengths = torch.randint(1, L + 1, (B,), generator=g)
    mask = torch.arange(L).unsqueeze(0) < lengths.unsqueeze(1)
    ref_logp = -torch.rand((B, L), generator=g, dtype=F64) * 3.0
    logp = (ref_logp + _randn(g, B, L, scale=move)).clamp_max(0.0)
    noise_a, noise_b = _randn(g, B, L, scale=garbage), _randn(g, B, L, scale=garbage)
    logp, ref_logp = torch.where(mask, logp, noise_a), torch.where(mask, ref_logp, noise_b)
    return logp, ref_logp, _randn(g, B, scale=2.0), mask


def _attached_case(name: str, g: torch.Generator, B: int, L: int, beta: float) -> Case:
    """``logp`` straight from a policy's logits: it requires grad."""
    logits = _randn(g, B, L, 5)
    _, ref_logp, score, mask = _rollout(g, B, L)
    actions = torch.randint(5, (B, L), generator=g)

    def make(device: torch.device) -> Arguments:
        leaf = logits.to(device).requires_grad_(True)
        logp = F.log_softmax(leaf, dim=-1).gather(2, actions.to(device).unsqueeze(2)).squeeze(2)
        return (logp, ref_logp.to(device), score.to(device), mask.to(device), beta), {}
    return Case(name, make=make)


def _kl_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        return [Case("32 responses of 1–16 tokens, β = 0.1", (*_rollout(g, 32, 16), 0.1)),
                Case("8 responses of 1–4 tokens, β = 0.5", (*_rollout(g, 8, 4), 0.5)),
                Case("64 responses of 1–12 tokens, β = 0.05, a policy far from the reference",
                     (*_rollout(g, 64, 12, move=1.5), 0.05))]
    logp, ref_logp, score, mask = _rollout(g, 12, 6)
    same = torch.where(mask, ref_logp, logp)  # π = π_ref on the response, garbage outside it
    full = _rollout(g, 10, 5, lengths=torch.full((10,), 5))
    one = _rollout(g, 1, 4, lengths=torch.ones(1, dtype=torch.int64))
    floats = _rollout(g, 16, 8)
    return [Case("the policy is the reference (no penalty)", (same, ref_logp, score, mask, 0.2)),
            Case("β = 0 (the learned reward alone)", (logp, ref_logp, score, mask, 0.0)),
            Case("every response fills all L positions (no padding)", (*full, 0.3)),
            Case("a single response of one token", (*one, 0.2)),
            Case("float32", (*(t.float() if t.is_floating_point() else t for t in floats), 0.1)),
            _attached_case("logp straight from the policy (it requires grad)", g, 6, 5, 0.1)]


def _kl_variant(logp: Tensor, ref_logp: Tensor, score: Tensor, mask: Tensor, beta: float, *, sign: float = -1.0,
                where: str = "last token", masked: bool = True, detach: bool = True) -> Tensor:
    """The per-token rewards with one piece changed; ``where`` the score goes: "last token",
    "last column" or "every token"."""
    lp = logp.detach() if detach else logp
    penalty = sign * beta * (lp - ref_logp.detach())
    if masked:
        penalty = penalty * mask
    if where == "every token":
        return penalty + score.detach().unsqueeze(1) * mask
    column = mask.sum(1) - 1 if where == "last token" else torch.full_like(mask.sum(1), mask.shape[1] - 1)
    bonus = torch.zeros_like(penalty)
    bonus[torch.arange(mask.shape[0], device=mask.device), column] = score.detach()
    return penalty + bonus


def _kl_observe(result: Any, args: tuple, kwargs: dict) -> Any:
    """The rewards, and whether a gradient could flow back through them (it may not)."""
    if not isinstance(result, Tensor):
        return result
    return {"rewards": result.detach(), "requires grad": bool(result.requires_grad)}


# ------------------------------------------------------------ 3. training the reward model

RM_TEST_PAIRS = 1000


def preference_data(seed: int, num_pairs: int, task: rlhf.TokenTask = TASK,
                    num_test: int = RM_TEST_PAIRS) -> dict[str, Any]:
    """A seeded preference set of the token task: responses of a bigram demonstrator, labelled
    by Bradley-Terry labellers with a hidden utility, and held-out unlabelled pairs."""
    g = torch.Generator().manual_seed(seed)
    demonstrator = rlhf.make_demonstrator(task, g)
    utility = rlhf.make_utility(task, g, repeat_penalty=3.0, scale=1.0)
    a, b = rlhf.sample_bigram(demonstrator, num_pairs, task, g), rlhf.sample_bigram(demonstrator, num_pairs, task, g)
    a_wins = preferences.sample_preferences(rlhf.true_utility(a, utility, task), rlhf.true_utility(b, utility, task),
                                            g).unsqueeze(1)
    return {"utility": utility, "chosen": torch.where(a_wins, a, b), "rejected": torch.where(a_wins, b, a),
            "test_a": rlhf.sample_bigram(demonstrator, num_test, task, g),
            "test_b": rlhf.sample_bigram(demonstrator, num_test, task, g)}


def _rm_case(name: str, seed: int, num_pairs: int, epochs: int, batch_size: int, min_accuracy: float | None,
             lr: float = 3e-3) -> Case:
    data = preference_data(seed, num_pairs)

    def make(device: torch.device) -> Arguments:
        model = _reward_model(seed).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        _record_steps(optimizer, STEPS_FOLLOWED)
        return (model, optimizer, data["chosen"].to(device), data["rejected"].to(device), epochs, batch_size,
                torch.Generator().manual_seed(seed + 1)), {}
    info = {**data, "seed": seed, "num_pairs": num_pairs, "epochs": epochs, "batch_size": batch_size,
            "min_accuracy": min_accuracy, "loop": _rm_reference, "loss": "the mean Bradley-Terry loss"}
    return Case(name, make=make, info=info)


def _rm_cases(seed: int, group: str) -> list[Case]:
    base = seed % 9973
    if group == "random":
        return [_rm_case(f"2,000 pairs, 8 epochs of minibatches of 128, seed {base + 1}", base + 1, 2000, 8, 128, 0.88)]
    return [_rm_case("1,000 pairs in minibatches of 96 (the last one smaller), 10 epochs", base + 2, 1000, 10, 96, 0.8),
            _rm_case("minibatches larger than the data set (one step per epoch), 3 epochs", base + 3, 300, 3, 512,
                     None)]


def _rm_reference(model: rlhf.RewardModel, optimizer: torch.optim.Optimizer, chosen: Tensor, rejected: Tensor,
                  epochs: int, batch_size: int, generator: torch.Generator) -> None:
    """The library's loop (:func:`rlteach.rlhf.train_reward_model`) with the optimizer given:
    each epoch a fresh ``randperm``, cut into consecutive minibatches, one Bradley-Terry step each."""
    for _ in range(epochs):
        order = torch.randperm(chosen.shape[0], generator=generator).to(chosen.device)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            loss = preferences.bradley_terry_loss(model(chosen[index]), model(rejected[index]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


STEPS_FOLLOWED = 24  # optimizer steps whose gradients are compared with the stated loop's
STEP_RTOL = 1e-3  # ‖g − g_ref‖ ≤ STEP_RTOL·‖g_ref‖ at each of them


_RECORDED: weakref.WeakKeyDictionary[torch.optim.Optimizer, list[tuple[Tensor, Tensor]]] = weakref.WeakKeyDictionary()


class _EnoughSteps(Exception):
    """Stops the stated loop once it has been followed through the steps that are compared."""


def _flat(tensors: list[Tensor | None], like: list[Tensor]) -> Tensor:
    """Tensors (None: zeros shaped like ``like``) flattened into one float64 vector on the CPU."""
    return torch.cat([(torch.zeros_like(x) if t is None else t).detach().reshape(-1).to("cpu", F64)
                      for t, x in zip(tensors, like, strict=True)])


def _record_steps(optimizer: torch.optim.Optimizer, keep: int) -> None:
    """Keep in ``_RECORDED[optimizer]``, for each of the optimizer's first ``keep`` steps, the
    parameters it started from and the gradient it stepped on (each flattened over every
    parameter, float64, CPU)."""
    steps: list[tuple[Tensor, Tensor]] = []
    params = [p for group in optimizer.param_groups for p in group["params"]]
    before: list[Tensor] = []

    def pre_hook(opt: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        before[:] = [_flat(params, params)] if len(steps) < keep else []

    def post_hook(opt: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        if before:
            steps.append((before.pop(), _flat([p.grad for p in params], params)))

    optimizer.register_step_pre_hook(pre_hook)
    optimizer.register_step_post_hook(post_hook)
    _RECORDED[optimizer] = steps


def _stated_gradients(case: Case, starts: list[Tensor]) -> list[Tensor]:
    """The gradients that the part's stated loop on ``case`` steps on at its first
    ``len(starts)`` steps, each taken at the parameters ``starts[k]`` (the answer's, so that
    rounding cannot make the two runs drift apart): after each step the loop's parameters
    are overwritten with the next start. CPU."""
    args, kwargs = case.arguments(torch.device("cpu"))
    optimizer = next(a for a in args if isinstance(a, torch.optim.Optimizer))
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grads: list[Tensor] = []

    def load(flat: Tensor) -> None:
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(flat.to(params[0].dtype), params)

    def post_hook(opt: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        grads.append(_flat([p.grad for p in params], params))
        if len(grads) == len(starts):
            raise _EnoughSteps
        load(starts[len(grads)])

    load(starts[0])
    optimizer.register_step_post_hook(post_hook)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: a second thread only contends (10x slower on a busy 2-core machine)
    try:
        case.info["loop"](*args, **kwargs)
    except _EnoughSteps:
        pass
    finally:
        torch.set_num_threads(threads)
    return grads


def _minibatches_per_epoch(info: Mapping[str, Any]) -> int:
    """⌈P / batch_size⌉: the stated loop's optimizer steps per epoch."""
    return -(-info["num_pairs"] // info["batch_size"])


def _follows_the_loss(observed: dict, case: Case) -> str | None:
    """The loops of parts 3 and 6: each of the first steps is taken on the gradient of the
    stated loss over the stated minibatch, at the parameters the answer had reached."""
    info = case.info
    steps = observed["result"]["stepped_on"]
    compared = min(STEPS_FOLLOWED, info["epochs"] * _minibatches_per_epoch(info))
    if len(steps) < compared:
        return (f"the optimizer took {len(steps)} steps, too few to compare with the stated loop's first "
                f"{compared}: one optimizer.step() per minibatch")
    want = _stated_gradients(case, [start for start, _ in steps[:compared]])
    loss = info["loss"]
    for k, ((_, g), w) in enumerate(zip(steps, want, strict=False)):
        gap = float((g - w).norm() / w.norm().clamp_min(1e-30))
        if gap <= STEP_RTOL:
            continue
        scale = float(g.norm() / w.norm().clamp_min(1e-30))
        cosine = float(g @ w / (g.norm() * w.norm()).clamp_min(1e-30))
        message = (f"optimizer step {k + 1} was not taken on the gradient of {loss} over its minibatch: your "
                   f"gradient differs from the stated loop's, at the same parameters, by {gap:.1%} of its norm "
                   f"(the first {compared} steps are compared)")
        first = min(info["batch_size"], info["num_pairs"])  # pairs in the first minibatches
        if cosine > 0.999 and abs(scale - first) < 0.02 * first:
            return message + f". It is {scale:.0f} times as large: the sum over the pairs instead of the mean"
        if k > 0:
            return message + (f". Step{'s 1 to' if k > 1 else ''} {k} matched: look for gradients not zeroed "
                              "before each loss.backward() (they add up), minibatches that are not consecutive "
                              "slices of the epoch's permutation, chosen and rejected responses taken from "
                              f"different pairs, or a loss other than {loss} that agrees with it only at the start")
        return message + (". Look for chosen and rejected responses taken from different pairs (one index for "
                          f"both), or a loss other than {loss}")
    return None


def _optimizer_steps(optimizer: torch.optim.Optimizer) -> int:
    """Adam counts its steps per parameter: the first parameter's count."""
    first = optimizer.param_groups[0]["params"][0]
    return int(optimizer.state.get(first, {}).get("step", 0))


def _rm_observe(result: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    model, optimizer, generator = args[0], args[1], args[6]
    return {"state": state_of(model), "steps": _optimizer_steps(optimizer), "generator": generator.get_state(),
            "stepped_on": list(_RECORDED.get(optimizer, ()))}


def _reward_model(seed: int) -> rlhf.RewardModel:
    """The case's untrained reward model (the global generator left alone)."""
    with torch.random.fork_rng(devices=[]):
        return rlhf.RewardModel(TASK, generator=torch.Generator().manual_seed(seed))


def _trained_model(state: dict[str, Tensor]) -> rlhf.RewardModel:
    model = _reward_model(0)
    model.load_state_dict({k: v.to("cpu", torch.float32) for k, v in state.items()})
    return model.requires_grad_(False)


def _rm_ranks(observed: dict, case: Case) -> str | None:
    info = case.info
    state = observed["result"]["state"]
    untrained = _reward_model(info["seed"])
    if all(torch.allclose(state[name].to("cpu", value.dtype), value, rtol=0.0, atol=1e-7)
           for name, value in state_of(untrained).items()):
        return ("the reward model's parameters did not change: your loop must train the model it is given, in "
                "place, with the optimizer it is given (loss.backward(), then optimizer.step())")
    cut = info["min_accuracy"]
    if cut is None:
        return None
    accuracy = rlhf.ranking_accuracy(_trained_model(state), info["test_a"], info["test_b"], info["utility"], TASK)
    if accuracy >= cut:
        return None
    message = (f"the trained reward model orders {accuracy:.1%} of {RM_TEST_PAIRS:,} held-out pairs as the hidden "
               f"utility does; it should reach {cut:.0%} (an untrained one gets about 50%)")
    if accuracy < 0.5:
        return message + (". Below 50% it learned the opposite: the loss must raise the score of the chosen "
                          "response over the rejected one")
    return message + (". Look for gradients that are not zeroed before each loss.backward() (they add up across "
                      "minibatches), a score that is detached, or a loss other than the mean of "
                      "−log σ(s_chosen − s_rejected)")


def _minibatch_budget(observed: dict, case: Case) -> str | None:
    """The loops of parts 3 and 6: one optimizer step per minibatch, ⌈P/batch_size⌉ minibatches per epoch."""
    info = case.info
    per_epoch = _minibatches_per_epoch(info)
    expected = info["epochs"] * per_epoch
    steps = observed["result"]["steps"]
    if steps == expected:
        return None
    return (f"the optimizer took {steps} steps; expected {expected}: {info['epochs']} epochs of "
            f"⌈P/batch_size⌉ = {per_epoch} minibatches of the P = {info['num_pairs']} pairs, one step each, with "
            "the optimizer you are given")


def _epoch_shuffles(observed: dict, case: Case) -> str | None:
    """The loops of parts 3 and 6: one randperm of the P pairs per epoch, nothing else drawn."""
    info = case.info
    want = torch.Generator().manual_seed(info["seed"] + 1)
    for _ in range(info["epochs"]):
        torch.randperm(info["num_pairs"], generator=want)
    if torch.equal(observed["result"]["generator"], want.get_state()):
        return None
    return ("the generator is not where one torch.randperm(P, generator=generator) per epoch leaves it: shuffle "
            "the pairs at the start of every epoch with it, and draw nothing else from it")


# ------------------------------------------------------------ 4. the KL-regularised optimum


def _enumerable(seed: int, noise: float = 0.5) -> tuple[Tensor, Tensor, Tensor]:
    """Over all 4,680 responses of TokenTask(8, 4): the log-probabilities of a bigram
    demonstrator (the reference), a learned reward (the utility plus noise) and the utility."""
    g = torch.Generator().manual_seed(seed)
    demonstrator = rlhf.make_demonstrator(TASK, g)
    utility = rlhf.make_utility(TASK, g, repeat_penalty=3.0, scale=1.0)
    responses = rlhf.all_responses(TASK)
    u = rlhf.true_utility(responses, utility, TASK)
    ref_logp = rlhf.bigram_logp(demonstrator, responses, TASK).to(F64)
    return ref_logp, u + _randn(g, u.shape[0], scale=noise), u


def _listed(g: torch.Generator, M: int, scale: float = 2.0) -> tuple[Tensor, Tensor]:
    """A normalised reference over M responses and rewards."""
    return torch.log_softmax(_randn(g, M, scale=scale), 0), _randn(g, M)


def _optimal_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        ref_logp, reward, _ = _enumerable(seed)
        return [Case("all 4,680 responses of TokenTask(8, 4), β = 0.5", (ref_logp, reward, 0.5)),
                Case("100 responses, β = 2", (*_listed(g, 100), 2.0)),
                Case("20 responses, β = 0.1", (*_listed(g, 20), 0.1))]
    ref_logp, reward = _listed(g, 50)
    blocked = ref_logp.clone()
    blocked[::7] = -math.inf
    return [Case("β = 0.002 (r/β up to ±1500: exp overflows)", (ref_logp, reward, 0.002)),
            Case("β = 1e6 (π* is π_ref)", (ref_logp, reward, 1e6)),
            Case("a single response", (torch.zeros(1, dtype=F64), _randn(g, 1), 0.3)),
            Case("responses the reference never gives (log π_ref = −∞)", (blocked.log_softmax(0), reward, 0.5)),
            Case("a constant reward (π* is π_ref)", (ref_logp, torch.full_like(reward, 3.0), 0.1)),
            Case("float32", (*(t.float() for t in _listed(g, 30)), 0.25))]


def _optimal_variant(ref_logp: Tensor, reward: Tensor, beta: float, *, scale: str = "over beta",
                     normalise: str = "log space") -> Tensor:
    """log π* with one piece changed; ``scale``: "over beta" (r/β) or "times beta" (β·r);
    ``normalise``: "log space", "none" or "exp" (divide by the sum of exp)."""
    logits = ref_logp + (reward / beta if scale == "over beta" else reward * beta)
    if normalise == "log space":
        return torch.log_softmax(logits, 0)
    if normalise == "none":
        return logits
    weights = logits.exp()
    return (weights / weights.sum()).log()


# ------------------------------------------------------------------------ 5. the trade-off


def _sweep_cases(seed: int, group: str) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    if group == "random":
        ref_logp, reward, u = _enumerable(seed)
        return [Case("all 4,680 responses of TokenTask(8, 4), 12 values of β from 0.01 to 10",
                     (ref_logp, reward, u, torch.logspace(-2, 1, 12, dtype=F64))),
                Case("200 responses, β ∈ {0.1, 1, 5}", (*_listed(g, 200), _randn(g, 200), torch.tensor([0.1, 1.0, 5.0],
                                                                                                      dtype=F64))),
                Case("40 responses, one β = 0.3", (*_listed(g, 40), _randn(g, 40), torch.tensor([0.3], dtype=F64)))]
    ref_logp, reward = _listed(g, 60)
    u = _randn(g, 60)
    blocked = ref_logp.clone()
    blocked[::5] = -math.inf
    return [Case("β from 1e-3 to 1e6 (r/β up to ±3000; the KL goes to 0)",
                 (ref_logp, reward, u, torch.tensor([1e-3, 1e-1, 1e6], dtype=F64))),
            Case("responses the reference never gives (log π_ref = −∞: they add 0 to the KL)",
                 (blocked.log_softmax(0), reward, u, torch.tensor([0.05, 0.5, 5.0], dtype=F64))),
            Case("a learned reward equal to the utility", (ref_logp, u, u.clone(), torch.tensor([0.2, 2.0], dtype=F64))),
            Case("a single response", (torch.zeros(1, dtype=F64), _randn(g, 1), _randn(g, 1),
                                       torch.tensor([0.5, 1.0], dtype=F64))),
            Case("float32", (*(t.float() for t in _listed(g, 30)), _randn(g, 30).float(),
                             torch.tensor([0.1, 1.0], dtype=torch.float32)))]


def _sweep_variant(ref_logp: Tensor, reward: Tensor, utility: Tensor, betas: Tensor, *, kl: str = "forward",
                   under: str = "optimum", scale: str = "over beta", optimum_of: str = "reward"
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """The sweep with one piece changed; ``kl``: "forward" KL(π*‖π_ref), "reversed"
    KL(π_ref‖π*) or "naive" (p·(log p − log q) with 0·∞ left as NaN); ``under``: the
    expectations taken under "optimum" π* or under "reference" π_ref; ``optimum_of``: π*
    built from the learned "reward" or from the true "utility"."""
    rewards, utilities, kls = [], [], []
    for beta in betas.tolist():
        logp = _optimal_variant(ref_logp, reward if optimum_of == "reward" else utility, beta, scale=scale)
        p = logp.exp()
        weights = p if under == "optimum" else ref_logp.exp()
        rewards.append((weights * reward).sum())
        utilities.append((weights * utility).sum())
        if kl == "reversed":
            q = ref_logp.exp()
            kls.append(torch.where(q > 0, q * (ref_logp - logp), torch.zeros_like(q)).sum())
        elif kl == "naive":
            kls.append((p * (logp - ref_logp)).sum())
        else:
            kls.append(torch.where(p > 0, p * (logp - ref_logp), torch.zeros_like(p)).sum())
    return torch.stack(rewards), torch.stack(utilities), torch.stack(kls)


def _sweep_observe(result: Any, args: tuple, kwargs: dict) -> Any:
    """``(rewards, utilities, kls)``; the library's summary also carries the betas, left out."""
    if isinstance(result, rlhf.OptimumSummary):
        return (result.reward, result.utility, result.kl)
    if isinstance(result, (tuple, list)):
        return tuple(result)
    return result


# ------------------------------------------------------------------- 6. DPO training loop

DPO_PAIRS = 2000
DPO_LR = 1e-3


@functools.lru_cache(maxsize=8)
def _dpo_setup(seed: int) -> dict[str, Any]:
    """Steps 1 and 2 of RLHF without the reward model, from one seed (about 1.5 s, cached):
    a bigram demonstrator and a hidden utility, π_ref pre-trained (150 steps) on 3,000 of the
    demonstrator's responses, 2,000 preference pairs of π_ref's responses labelled with the
    utility, and over all 4,680 responses log π_ref and u. Built on one thread, so that the
    kernel and the grader build the same π_ref."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(seed)
        demonstrator = rlhf.make_demonstrator(TASK, g)
        utility = rlhf.make_utility(TASK, g, repeat_penalty=3.0, scale=1.0)
        demos = rlhf.sample_bigram(demonstrator, 3000, TASK, g)
        with torch.random.fork_rng(devices=[]):  # module construction draws from the global generator
            ref_policy = rlhf.TokenPolicy(TASK, hidden=64, generator=g)
        rlhf.pretrain(ref_policy, demos, rlhf.PretrainConfig(steps=150), g)
        ref_policy.requires_grad_(False)
        chosen, rejected = rlhf.preference_pairs(ref_policy, utility, DPO_PAIRS, g)
        responses = rlhf.all_responses(TASK)
        with torch.no_grad():
            ref_logp = F.log_softmax(ref_policy.sequence_logp(responses).to(F64), 0)
    finally:
        torch.set_num_threads(threads)
    return {"ref_policy": ref_policy, "chosen": chosen, "rejected": rejected, "ref_logp": ref_logp,
            "u": rlhf.true_utility(responses, utility, TASK)}


def _dpo_case(name: str, seed: int, num_pairs: int, beta: float, epochs: int, batch_size: int,
              max_kl: float | None, fraction: float | None) -> Case:
    setup = _dpo_setup(seed)
    chosen, rejected = setup["chosen"][:num_pairs], setup["rejected"][:num_pairs]

    def make(device: torch.device) -> Arguments:
        policy = copy.deepcopy(setup["ref_policy"]).requires_grad_(True).to(device)
        ref_policy = copy.deepcopy(setup["ref_policy"]).requires_grad_(True).to(device)  # a gradient could reach it
        optimizer = torch.optim.Adam(policy.parameters(), lr=DPO_LR)
        _record_steps(optimizer, STEPS_FOLLOWED)
        return (policy, ref_policy, optimizer, chosen.to(device), rejected.to(device), beta, epochs, batch_size,
                torch.Generator().manual_seed(seed + 1)), {}
    info = {"seed": seed, "num_pairs": num_pairs, "beta": beta, "epochs": epochs, "batch_size": batch_size,
            "max_kl": max_kl, "fraction": fraction, "loop": _dpo_reference, "loss": "the mean DPO loss"}
    return Case(name, make=make, info=info)


def _dpo_cases(seed: int, group: str) -> list[Case]:
    """Thresholds measured with the reference on one thread before they were set: on the
    random case (β = 2), over 31 seeds, KL(π_DPO‖π*_u) was 0.023–0.049 nats and at most 0.39
    of π_ref's KL(π_ref‖π*_u) (0.065–0.76); the known mistakes gave 0.078–0.26 (β outside the
    sigmoid), 0.72–2.4 (reference log-ratio missing) and 0.26–2.3 (pairs swapped). The cut,
    the lesser of 0.07 nats and 0.6 of π_ref's, fails each mistake on every one of those
    seeds. On the β = 0.5 edge case, over 29 seeds, π_DPO reached 0.20–1.94 nats, at most
    0.34 of π_ref's (0.96–8.2); the cut is the lesser of 3 nats and 0.5 of π_ref's."""
    base = seed % 9973
    if group == "random":
        return [_dpo_case(f"2,000 pairs, β = 2, 5 epochs of minibatches of 128, seed {base + 1}", base + 1, 2000, 2.0, 5,
                          128, 0.07, 0.6)]
    return [_dpo_case("β = 0.5, 1,500 pairs in minibatches of 96 (the last one smaller), 6 epochs", base + 2, 1500, 0.5,
                      6, 96, 3.0, 0.5),
            _dpo_case("minibatches larger than the data set (one step per epoch), 3 epochs", base + 2, 300, 2.0, 3,
                      512, None, None)]


def _dpo_reference(policy: rlhf.TokenPolicy, ref_policy: rlhf.TokenPolicy, optimizer: torch.optim.Optimizer,
                   chosen: Tensor, rejected: Tensor, beta: float, epochs: int, batch_size: int,
                   generator: torch.Generator) -> None:
    """The library's loop (:func:`rlteach.rlhf.train_dpo`) with the optimizer given: the
    reference's log-probabilities once, as data; each epoch a fresh ``randperm``, cut into
    consecutive minibatches, one step each on the DPO loss."""
    with torch.no_grad():
        ref_chosen, ref_rejected = ref_policy.sequence_logp(chosen), ref_policy.sequence_logp(rejected)
    for _ in range(epochs):
        order = torch.randperm(chosen.shape[0], generator=generator).to(chosen.device)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            loss, _ = preferences.dpo_loss(policy.sequence_logp(chosen[index]), policy.sequence_logp(rejected[index]),
                                           ref_chosen[index], ref_rejected[index], beta)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def _dpo_variant(policy: rlhf.TokenPolicy, ref_policy: rlhf.TokenPolicy, optimizer: torch.optim.Optimizer,
                 chosen: Tensor, rejected: Tensor, beta: float, epochs: int, batch_size: int,
                 generator: torch.Generator, *, swapped: bool = False, anchored: bool = True,
                 beta_inside: bool = True, ref_as_data: bool = True, zero_grad: bool = True) -> None:
    """The DPO loop with one piece changed: ``swapped`` preferred and rejected, ``anchored``
    False drops log π_ref from the implicit reward, ``beta_inside`` False takes β·(−log σ(Δ)),
    ``ref_as_data`` False recomputes log π_ref in every minibatch with the graph kept,
    ``zero_grad`` False lets the gradients of all earlier minibatches add up."""
    with torch.no_grad():
        ref_chosen, ref_rejected = ref_policy.sequence_logp(chosen), ref_policy.sequence_logp(rejected)
    for _ in range(epochs):
        order = torch.randperm(chosen.shape[0], generator=generator).to(chosen.device)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            w, lose = (rejected[index], chosen[index]) if swapped else (chosen[index], rejected[index])
            if ref_as_data:
                ref_w, ref_l = (ref_rejected[index], ref_chosen[index]) if swapped else (ref_chosen[index],
                                                                                          ref_rejected[index])
            else:
                ref_w, ref_l = ref_policy.sequence_logp(w), ref_policy.sequence_logp(lose)
            ratio_w, ratio_l = policy.sequence_logp(w), policy.sequence_logp(lose)
            if anchored:
                ratio_w, ratio_l = ratio_w - ref_w, ratio_l - ref_l  # log π/π_ref of y_w and of y_l
            margin = ratio_w - ratio_l
            loss = -F.logsigmoid(beta * margin).mean() if beta_inside else -(beta * F.logsigmoid(margin)).mean()
            if zero_grad:
                optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def _dpo_observe(result: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    policy, ref_policy, optimizer, generator = args[0], args[1], args[2], args[8]
    ref_grad = any(p.grad is not None and bool((p.grad != 0).any()) for p in ref_policy.parameters())
    return {"state": state_of(policy), "ref_state": state_of(ref_policy), "ref_grad": ref_grad,
            "steps": _optimizer_steps(optimizer), "generator": generator.get_state(),
            "stepped_on": list(_RECORDED.get(optimizer, ()))}


def _policy_logp(state: dict[str, Tensor]) -> Tensor:
    """log π over all 4,680 responses of the policy with parameters ``state``, float64."""
    with torch.random.fork_rng(devices=[]):  # the global generator left alone
        policy = rlhf.TokenPolicy(TASK, hidden=64)
    policy.load_state_dict({k: v.to("cpu", torch.float32) for k, v in state.items()})
    with torch.no_grad():
        return F.log_softmax(policy.sequence_logp(rlhf.all_responses(TASK)).to(F64), 0)


DPO_MISTAKES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("preferred and rejected swapped: the loss is −log σ(β[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − "
     "log π_ref(y_l))]) with y_w the chosen response; it must raise the chosen one's implicit reward",
     dict(swapped=True)),
    ("reference log-ratio missing (β·log π only): the implicit reward is β·log(π(y)/π_ref(y)); without "
     "−log π_ref(y) nothing anchors π to the reference and it runs far past the optimum", dict(anchored=False)),
    ("β applied outside the sigmoid: the loss is −log σ(β·Δ) with Δ the difference of the log-ratios; "
     "β·(−log σ(Δ)) is DPO with β = 1 (Adam undoes the outer factor)", dict(beta_inside=False)),
    ("gradients not zeroed: without optimizer.zero_grad() before each loss.backward() the gradients of every "
     "earlier minibatch add up, and each step follows their running sum", dict(zero_grad=False)),
)


def _dpo_lookalike(logp: Tensor, case: Case, gap: float) -> str | None:
    """The known mistake whose policy, trained on this case in the grader, is nearest to the
    answer's (by KL(π_answer‖π_mistake)), when it is within a quarter of ``gap``."""
    best, best_kl = None, math.inf
    for hint, change in DPO_MISTAKES:
        args, _ = case.arguments(torch.device("cpu"))
        _dpo_variant(*args, **change)
        distance = float(rlhf.sequence_kl(logp, _policy_logp(state_of(args[0]))))
        if distance < best_kl:
            best, best_kl = hint, distance
    return best if best_kl < 0.25 * gap else None


def _dpo_approaches(observed: dict, case: Case) -> str | None:
    info = case.info
    setup = _dpo_setup(info["seed"])
    state = observed["result"]["state"]
    if all(torch.allclose(state[name].to("cpu", value.dtype), value, rtol=0.0, atol=1e-7)
           for name, value in state_of(setup["ref_policy"]).items()):
        return ("the policy's parameters did not change: your loop must train the policy it is given, in place, "
                "with the optimizer it is given (loss.backward(), then optimizer.step())")
    if info["max_kl"] is None:
        return None
    ref_logp, u = setup["ref_logp"], setup["u"]
    star = rlhf.optimal_policy_logp(ref_logp, u, info["beta"])  # π*_u ∝ π_ref·exp(u/β), the true utility
    logp = _policy_logp(state)
    kl, kl_ref = float(rlhf.sequence_kl(logp, star)), float(rlhf.sequence_kl(ref_logp, star))
    cut = min(info["max_kl"], info["fraction"] * kl_ref)
    if kl < cut:
        return None
    message = (f"over all 4,680 responses, KL(π‖π*) = {kl:.3f} nats between your fine-tuned policy and the "
               f"KL-regularised optimum π* ∝ π_ref·exp(u/β) of the hidden utility (β = {info['beta']:g}); it "
               f"should fall below {cut:.3f} (the lesser of {info['max_kl']:g} and {info['fraction']:g} of the "
               f"reference's {kl_ref:.3f})")
    hint = _dpo_lookalike(logp, case, kl)
    if hint is None and float((logp.exp() * u).sum()) < float((ref_logp.exp() * u).sum()):
        hint = DPO_MISTAKES[0][0]  # the mean true utility fell: the policy learned the opposite
    return message + (f"\n  This looks like a known mistake: {hint}" if hint else "")


def _dpo_reference_untouched(observed: dict, case: Case) -> str | None:
    result = observed["result"]
    if result["ref_grad"]:
        return ("gradient flows into the reference: ref_policy's parameters received a gradient; its "
                "log-probabilities are data, compute them under torch.no_grad() (or detach them)")
    state = result["ref_state"]
    if all(torch.allclose(state[name].to("cpu", value.dtype), value, rtol=0.0, atol=1e-6)
           for name, value in state_of(_dpo_setup(case.info["seed"])["ref_policy"]).items()):
        return None
    return "ref_policy's parameters changed: π_ref is fixed, only the policy is trained"


PARTS = (
    Part("bradley_terry_loss", preferences.bradley_terry_loss, _bt_cases, GROUPS, (
        Mistake("preferred and rejected swapped: the loss is −log σ(s_chosen − s_rejected), small when the "
                "chosen response scores higher.", lambda *a: _bt_variant(*a, swapped=True)),
        Mistake("sigmoid instead of logsigmoid overflow: log(sigmoid(Δ)) is log(0) = −∞ once σ(Δ) underflows "
                "(Δ ≈ −750 in float64, −104 in float32), and so is log(1 + exp(−Δ)) once exp overflows; "
                "use F.logsigmoid.", lambda *a: _bt_variant(*a, form="log sigmoid")),
        Mistake("strengths p = e^s overflow: p_i/(p_i + p_j) is inf/inf at scores of a few hundred; write it as "
                "σ(s_i − s_j) and take logsigmoid.", lambda *a: _bt_variant(*a, form="strengths")),
        Mistake("sum instead of mean: the loss is the mean over the pairs.", lambda *a: _bt_variant(*a, reduce="sum")),
        *(Mistake("gradient wrong at a tie: max(0, −Δ) + log(1 + exp(−|Δ|)) has the right value, but at Δ = 0 "
                  "autograd takes one side of each kink (of max and of |·|), so ∂/∂Δ there is not σ(0) − 1 = −½; use "
                  "F.logsigmoid(Δ) or −F.softplus(−Δ), which are smooth.", functools.partial(_bt_variant, form=form))
          for form in ("kinks", "relu kinks")),
        Mistake("NaN gradient from torch.where: both branches are computed and differentiated; the one not taken "
                "overflows (exp(1000) = ∞) and 0·∞ = NaN flows back. Use F.logsigmoid (or clamp the argument of "
                "each branch to where it is taken).", lambda *a: _bt_variant(*a, form="where")),
    ), seals=(preferences.dpo_loss,), grad=("score_chosen", "score_rejected")),
    Part("kl_penalized_rewards", rlhf.kl_penalized_rewards, _kl_cases, GROUPS, (
        Mistake("KL penalty sign: the reward is r̂ − β·log(π/π_ref); a token more likely under π than under "
                "π_ref is penalised, not rewarded.", lambda *a: _kl_variant(*a, sign=1.0)),
        Mistake("score added at every token: r̂(y) is the reward of the whole response, given once, at its "
                "last token.", lambda *a: _kl_variant(*a, where="every token")),
        Mistake("score at the last column instead of the response's last token: a response of k < L tokens "
                "ends at position k − 1 (mask.sum(1) − 1), the rest is padding.",
                lambda *a: _kl_variant(*a, where="last column")),
        Mistake("penalty not masked outside the response: the positions after a response's end are padding, "
                "their reward is 0 whatever logp and ref_logp hold there.", lambda *a: _kl_variant(*a, masked=False)),
        Mistake("gradient flows through logp: the rewards are data for PPO, detach logp (return a tensor that "
                "does not require grad).", lambda *a: _kl_variant(*a, detach=False)),
    ), seals=(rlhf.kl_penalized_rewards,), observe=_kl_observe),
    Part("reward_model_training", _rm_reference, _rm_cases, GROUPS,
         seals=(rlhf.train_reward_model, preferences.bradley_terry_loss, preferences.dpo_loss),
         observe=_rm_observe,
         properties=(Property("ranks held-out pairs", _rm_ranks, 2.0),
                     Property("steps on the loss", _follows_the_loss, 1.0),
                     Property("step budget", _minibatch_budget, 1.0),
                     Property("shuffled each epoch", _epoch_shuffles, 1.0)),
         time_limit=60.0),
    Part("optimal_policy", rlhf.optimal_policy_logp, _optimal_cases, GROUPS, (
        Mistake("exp(beta*r) instead of exp(r/beta): π* ∝ π_ref·exp(r/β); a small β (a weak KL penalty) "
                "must sharpen π*, not flatten it.", lambda *a: _optimal_variant(*a, scale="times beta")),
        Mistake("not normalised: log π_ref + r/β is log π* only up to the constant −log Z; subtract "
                "log Σ_y π_ref(y)·exp(r(y)/β) (torch.logsumexp).", lambda *a: _optimal_variant(*a, normalise="none")),
        Mistake("normalised outside log space: exp(r/β) overflows at small β; normalise the logits with "
                "torch.log_softmax (or subtract torch.logsumexp).", lambda *a: _optimal_variant(*a, normalise="exp")),
    ), seals=(rlhf.optimal_policy_logp,)),
    Part("kl_tradeoff", rlhf.optimum_summary, _sweep_cases, GROUPS, (
        Mistake("KL direction reversed: the penalty is KL(π*‖π_ref) = Σ_y π*(y)·log(π*(y)/π_ref(y)), "
                "weighted by π*, not KL(π_ref‖π*).", lambda *a: _sweep_variant(*a, kl="reversed")),
        Mistake("expectations under π_ref: E[r̂] and E[u] are averages under the optimum π*_β, which changes "
                "with β.", lambda *a: _sweep_variant(*a, under="reference")),
        Mistake("0·log 0 is NaN: a response with π*(y) = 0 adds 0 to the KL (use torch.where, or "
                "torch.xlogy-like care), not 0·(−∞ + ∞).", lambda *a: _sweep_variant(*a, kl="naive")),
        Mistake("exp(beta*r) instead of exp(r/beta): π* ∝ π_ref·exp(r/β).",
                lambda *a: _sweep_variant(*a, scale="times beta")),
        Mistake("optimum of the true utility: π* maximises the learned reward r̂ (it never sees u); u is only "
                "averaged under it.", lambda *a: _sweep_variant(*a, optimum_of="utility")),
    ), seals=(rlhf.optimal_policy_logp, rlhf.sequence_kl), observe=_sweep_observe),
    Part("dpo_training", _dpo_reference, _dpo_cases, GROUPS,
         seals=(rlhf.train_dpo, preferences.dpo_loss, preferences.bradley_terry_loss),
         observe=_dpo_observe,
         properties=(Property("approaches the optimum of the true utility", _dpo_approaches, 4.0),
                     Property("steps on the loss", _follows_the_loss, 1.0),
                     Property("step budget", _minibatch_budget, 1.0),
                     Property("shuffled each epoch", _epoch_shuffles, 1.0),
                     Property("reference untouched", _dpo_reference_untouched, 1.0)),
         time_limit=60.0),
)
