"""The grading harness that every exercise's tests call.

A grade cell reads::

    check(importance_weights, "importance_weights", seed=1)                 # random cases
    check(importance_weights, "importance_weights", seed=1, group="edge")   # a named group

:func:`check` runs the student's function on the part's seeded cases (fresh arguments for
every call, on the device ``RLTEACH_DEVICE`` names) with the part's references sealed,
and judges each case: against the reference's output and, where the part says so, the
gradients with respect to named inputs (an input the reference detaches must receive
none); or, for a behavioural part, by the properties the part states. A mismatch raises
:class:`CheckFailed` with what is wrong (type, shape, dtype, device, the worst index and
both values) and, where the answer matches a known mistake, which one. The message never
shows the code of the test that produced it.

Under the autograder the kernel only runs the answer and records what it did
(:mod:`rlteach.grading.records`); the grader judges those records in its own process, so
nothing the kernel reports about passing is believed, and every case is scored on its own
(a check's share of the cell is the share of its cases that pass).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import os
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rlteach.device import default_device
from rlteach.grading import records, seal
from rlteach.grading.compare import compare, compare_gradient
from rlteach.grading.parts import get_part
from rlteach.grading.records import Outcome
from rlteach.grading.seal import SealedReferenceError, grading_salt, sealed
from rlteach.grading.spec import Case, Part, clone

STDOUT_LIMIT = 2_000


class CheckFailed(AssertionError):
    """An answer disagrees with the reference; the message says where and why."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of a traceback, which would quote the test cell.
        return [f"CheckFailed: {line}" if i == 0 else line for i, line in enumerate(str(self).splitlines())]


class _OutOfTime(BaseException):
    """A behavioural case ran past its time limit."""


class _NoGradient(Exception):
    """The answer's loss cannot be differentiated."""


def resolve(part: str | Part) -> Part:
    return part if isinstance(part, Part) else get_part(part)


def salted(seed: int, salt: str | None) -> int:
    """The seed a check uses: ``seed`` itself, or under the autograder a mix of it with the
    notebook's salt (unknown to students, the same on every grading run)."""
    if not salt:
        return int(seed)
    return int.from_bytes(hashlib.sha256(f"{salt}:{int(seed)}".encode()).digest()[:6], "big")


# --------------------------------------------------------------------------- observing


def _bind(part: Part, args: tuple, kwargs: dict) -> inspect.BoundArguments:
    return inspect.signature(part.reference).bind(*args, **kwargs)


def _with_grad_inputs(part: Part, args: tuple, kwargs: dict) -> tuple[tuple, dict, dict[str, Any]]:
    """The arguments with the inputs named in ``part.grad`` made leaves that require grad."""
    if not part.grad:
        return args, kwargs, {}
    bound = _bind(part, args, kwargs)
    inputs: dict[str, Any] = {}
    for name in part.grad:
        value = bound.arguments[name]
        if isinstance(value, Tensor):
            value = value.detach().clone().requires_grad_(True)
            bound.arguments[name] = value
        inputs[name] = value
    return tuple(bound.args), dict(bound.kwargs), inputs


def _gradients(part: Part, result: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    loss = part.loss(result) if part.loss else result
    if not isinstance(loss, Tensor) or loss.numel() != 1 or not loss.requires_grad:
        raise _NoGradient("its loss must be a scalar tensor that depends on the inputs (no gradient can flow back)")
    leaves: list[Tensor] = []
    slots: list[tuple[str, str | None]] = []
    for name, value in inputs.items():
        if isinstance(value, nn.Module):
            for param_name, param in value.named_parameters():
                leaves.append(param)
                slots.append((name, param_name))
        else:
            leaves.append(value)
            slots.append((name, None))
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    out: dict[str, Any] = {}
    for (input_name, slot), leaf, raw in zip(slots, leaves, grads, strict=True):
        grad = torch.zeros_like(leaf) if raw is None else raw.detach()
        if slot is None:
            out[input_name] = grad
        else:
            out.setdefault(input_name, {})[slot] = grad
    return out


def observe(part: Part, fn: Callable[..., Any], args: tuple, kwargs: dict) -> dict[str, Any]:
    """Call ``fn`` and return what the part compares: ``{"result": ..., "gradients": ...}``."""
    args, kwargs, inputs = _with_grad_inputs(part, args, kwargs)
    result = fn(*args, **kwargs)
    observed = {"result": part.observe(result, args, kwargs) if part.observe else result}
    if part.grad:
        observed["gradients"] = _gradients(part, result, inputs)
    return observed


def reference_observation(part: Part, case: Case, device: torch.device) -> dict[str, Any]:
    """What the reference gives on ``case`` (unsealed: call it outside student code)."""
    args, kwargs = case.arguments(device)
    with _deterministic(part, case):
        return observe(part, part.reference, args, kwargs)


@contextlib.contextmanager
def _captured() -> Iterator[io.StringIO]:
    """Capture the student's prints; swallow warnings and stderr (nbgrader reads any stderr
    output in a grade cell as a failure)."""
    out = io.StringIO()
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings(record=True), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("always")
        os.dup2(sink.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One torch thread while cases run and are judged (restored after): the cases are
    small, one thread gives the same floating-point sums on every run, and a thread pool
    per kernel oversubscribes the cores when a class is graded in parallel (a busy-waiting
    pool made one check 30× slower on two cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _deterministic(part: Part, case: Case) -> Iterator[None]:
    """For a behavioural part: one thread and a seeded global generator (restored after),
    so that the answer's own ``torch.randn`` and module initialisations are reproducible."""
    if not part.behavioural:
        yield
        return
    seed = int.from_bytes(hashlib.sha256(f"{part.name}:{case.name}".encode()).digest()[:4], "big")
    with torch.random.fork_rng(devices=[]), one_thread():
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _first_change(before: tuple, after: tuple) -> int | None:
    for i, (b, a) in enumerate(zip(before, after, strict=False)):
        if isinstance(b, Tensor) and isinstance(a, Tensor) and b.shape == a.shape and \
                not torch.equal(b.detach().nan_to_num(), a.detach().to(b.device, b.dtype).nan_to_num()):
            return i
    return None


def attempt(part: Part, fn: Callable[..., Any], case: Case, device: torch.device) -> Outcome:
    """Run the student's function on fresh arguments of ``case`` with the part's references
    sealed and its prints, warnings and stderr captured (at most ``STDOUT_LIMIT``
    characters are echoed); return what it did."""
    if not callable(fn):
        return Outcome(error=f"is not a function (got a {type(fn).__name__})")
    args, kwargs = case.arguments(device)
    originals = clone(args) if case.make is None else ()
    observed, error = None, None
    with _captured() as out, sealed(part.sealed) as refused:
        try:
            with _deterministic(part, case), _time_limit(part.time_limit):
                observed = observe(part, fn, args, kwargs)
        except SealedReferenceError:
            pass
        except _OutOfTime:
            error = f"your function ran longer than the {part.time_limit:g} s this case allows"
        except NotImplementedError:
            error = "your function is not implemented yet (it raised NotImplementedError)"
        except _NoGradient as err:
            error = f"your function's result cannot be differentiated: {err}"
        except Exception as err:  # the student's exception becomes the message
            error = f"your function raised {type(err).__name__}: {err}"
    printed = out.getvalue()
    if printed:
        cut = f"\n... ({len(printed) - STDOUT_LIMIT} more characters not shown)" if len(printed) > STDOUT_LIMIT else ""
        print(printed[:STDOUT_LIMIT] + cut, end="" if printed.endswith("\n") and not cut else "\n")
    if error is None and not refused and originals:
        changed = _first_change(originals, args)
        if changed is not None:
            error = f"your function changed its argument {changed + 1} in place; compute on new tensors instead"
    return Outcome(observed if error is None and not refused else None, error, tuple(dict.fromkeys(refused)))


# ----------------------------------------------------------------------------- judging


def refused_message(part: str, names: Sequence[str]) -> str:
    listed = ", ".join(sorted(set(names)))
    return (f"{part}(): your answer calls the graded reference {listed}, which is sealed during "
            "grading. This part scores zero until you write it yourself.")


def _difference(part: Part, got: dict[str, Any], want: dict[str, Any]) -> str | None:
    if not isinstance(got, dict) or "result" not in got:
        return "the result could not be read back"
    problem = compare(got["result"], want["result"], part.rtol, part.atol)
    if problem or not part.grad:
        return problem
    got_grads, want_grads = got.get("gradients", {}), want["gradients"]
    for name in part.grad:
        g, w = got_grads.get(name), want_grads[name]
        if isinstance(w, dict):
            problem = compare(g, w, part.rtol, part.atol, f"the gradient of your loss with respect to {name}'s parameters")
        else:
            problem = compare_gradient(g, w, part.rtol, part.atol, name)
        if problem:
            return problem
    return None


def _matching_mistakes(part: Part, case: Case, got: dict[str, Any], want: dict[str, Any],
                       device: torch.device) -> tuple[int, ...]:
    """The known mistakes (by index) that give the answer's output on ``case``."""
    matches = []
    for index, mistake in enumerate(part.mistakes):
        try:
            args, kwargs = case.arguments(device)
            with _captured():
                wrong = observe(part, mistake.fn, args, kwargs)
        except Exception:
            continue
        if _difference(part, wrong, want) is not None and _difference(part, got, wrong) is None:
            matches.append(index)
    return tuple(matches)


@dataclass(frozen=True)
class Judgement:
    """One case judged: its score in [0, 1], what was wrong, and the known mistakes the
    answer's output matches there."""

    score: float
    problems: tuple[str, ...] = ()
    mistakes: tuple[int, ...] = ()


def judge_case(part: Part, case: Case, outcome: Outcome, device: torch.device) -> Judgement:
    """Judge one case's outcome against the reference (or the part's properties)."""
    if outcome.refused:
        return Judgement(0.0, (refused_message(part.name, outcome.refused),))
    if outcome.error:
        return Judgement(0.0, (outcome.error,))
    if part.behavioural:
        problems, score = [], 0.0
        for prop, weight in zip(part.properties, part.weights(), strict=True):
            try:
                problem = prop.test(outcome.observed, case)
            except Exception as err:  # an observation the property cannot read
                problem = f"{prop.name}: could not be judged ({type(err).__name__}: {err})"
            if problem is None:
                score += weight
            else:
                problems.append(problem)
        return Judgement(score, tuple(problems))
    want = reference_observation(part, case, device)
    problem = _difference(part, outcome.observed, want)
    if problem is None:
        return Judgement(1.0)
    return Judgement(0.0, (problem,), _matching_mistakes(part, case, outcome.observed, want, device))


def _mistake_passes(part: Part, index: int, case: Case, device: torch.device) -> bool:
    try:
        args, kwargs = case.arguments(device)
        with _captured():
            wrong = observe(part, part.mistakes[index].fn, args, kwargs)
    except Exception:
        return False
    return _difference(part, wrong, reference_observation(part, case, device)) is None


def _hint(part: Part, cases: Sequence[Case], judged: Sequence[Judgement], device: torch.device) -> str | None:
    """The known mistake the answer makes: among those that match on every failing case
    where any matches, the one that also passes most of the cases the answer passed."""
    candidates = [set(j.mistakes) for j in judged if j.mistakes]
    if not candidates:
        return None
    common = sorted(set.intersection(*candidates) or candidates[0])
    if len(common) > 1:
        passed = [case for case, j in zip(cases, judged, strict=True) if j.score == 1.0]
        common.sort(key=lambda i: -sum(_mistake_passes(part, i, case, device) for case in passed))
    return part.mistakes[common[0]].hint


@dataclass(frozen=True)
class Verdict:
    """How one ``check`` call went: a score per case, what was wrong where, and the known
    mistake the answer looks like."""

    part: str
    group: str
    device: str
    case_names: tuple[str, ...]
    scores: tuple[float, ...]
    problems: tuple[tuple[str, ...], ...]
    hint: str | None = None

    @property
    def score(self) -> float:
        """The check's share of credit in [0, 1]: the mean of its cases' scores."""
        return sum(self.scores) / len(self.scores) if self.scores else 0.0

    @property
    def message(self) -> str:
        """One line when every case passed, else the first failure with its case."""
        n = len(self.scores)
        if self.score == 1.0:
            return f"✓ {self.part}(): {n} {self.group} case{'s' if n != 1 else ''} pass on {self.device}"
        for name, problems in zip(self.case_names, self.problems, strict=True):
            if problems:
                if problems[0].startswith(f"{self.part}(): your answer calls"):
                    return problems[0]
                passed = sum(s == 1.0 for s in self.scores)
                head = f"{self.part}(): on the {self.group} case '{name}' ({passed} of {n} {self.group} cases pass), "
                hint = f"\n  This looks like a known mistake: {self.hint}" if self.hint else ""
                return head + "; ".join(problems) + hint
        return f"{self.part}(): no case ran"


def judge(part: Part, group: str, cases: Sequence[Case], outcomes: Sequence[Outcome],
          device: torch.device) -> Verdict:
    """Judge every case's outcome; see :class:`Verdict`."""
    with one_thread():
        judged = [judge_case(part, case, outcome, device) for case, outcome in zip(cases, outcomes, strict=True)]
        hint = _hint(part, cases, judged, device)
    return Verdict(part.name, group, str(device), tuple(c.name for c in cases), tuple(j.score for j in judged),
                   tuple(j.problems for j in judged), hint)


# ------------------------------------------------------------------------------- check


def check(fn: Callable[..., Any], part: str | Part, *, seed: int = 0, group: str | None = None,
          device: str | torch.device | None = None) -> None:
    """Check a student's function against the graded part ``part``.

    Parameters
    ----------
    fn : callable
        The student's function.
    part : str
        The part's name, e.g. ``"importance_weights"``.
    seed : int
        Seed of the cases (a local ``torch.Generator``; no global state changes).
    group : str, optional
        A named group of cases (``"edge"``, ``"terminations"``, ...); default: the part's
        first group.
    device : str or torch.device, optional
        Defaults to ``RLTEACH_DEVICE`` (``cpu`` when unset).

    Raises
    ------
    CheckFailed
        When a case fails: the first failing case, what is wrong with it and, when
        recognised, the known mistake it matches. Under the autograder nothing is raised:
        the outcomes are recorded and the grader judges them.
    """
    spec = resolve(part)
    group = spec.group(group)
    device = torch.device(device) if device is not None else default_device()
    salt = grading_salt()
    cases = spec.cases(salted(seed, salt), group)
    with one_thread():
        outcomes = [attempt(spec, fn, case, device) for case in cases]
    if salt is not None:
        folder = os.environ.get(records.DUMP_ENV)
        if folder:
            records.save(folder, spec.name, seed, group, outcomes)
        return
    verdict = judge(spec, group, cases, outcomes, device)
    if verdict.score < 1.0:
        raise CheckFailed(verdict.message)
    print(verdict.message)


def install_seal(cells: dict[str, list[str]], salt: str) -> None:
    """Seal a graded kernel (the autograder calls this before any student code runs):
    for each grade cell, by the hash of its source, the references of the parts it checks."""
    seal.install({cell: [fn for name in names for fn in get_part(name).sealed] for cell, names in cells.items()}, salt)
