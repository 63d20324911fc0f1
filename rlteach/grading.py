"""The grading harness that every exercise's tests call.

A grade cell reads::

    check(importance_weights, "importance_weights")             # visible cases
    check(importance_weights, "importance_weights", seed=7, edge=True)   # hidden ones

:func:`check` runs the student's function and the sealed reference on the same seeded
cases (random ones, and with ``edge=True`` the edge cases: extreme log-probabilities,
single samples, empty batches, ...), on the device ``RLTEACH_DEVICE`` names, and compares
them within the part's stated tolerance. On a mismatch it raises :class:`CheckFailed`
with what is wrong (type, shape, dtype, device, the worst index and both values) and,
where the answer matches a known mistake, which one. The message never shows the code of
the test that produced it. Under the autograder each call also saves its outcomes
(``RLTEACH_GRADING_DUMP``), which :mod:`rlteach.autograde` judges again outside the
student's kernel.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from rlteach.device import default_device
from rlteach.seal import SealedReferenceError, reference_name, sealed

STDOUT_LIMIT = 2_000
DUMP_ENV = "RLTEACH_GRADING_DUMP"  # set by the autograder: where check() leaves outcomes to verify


@dataclass(frozen=True)
class Case:
    """One input to a graded function: a name the student may read, and the arguments."""

    name: str
    args: tuple
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Mistake:
    """A known wrong answer: ``fn`` computes it, ``hint`` explains it to the student."""

    hint: str
    fn: Callable[..., Any]


@dataclass(frozen=True)
class Part:
    """A graded exercise part: the reference, its cases and the mistakes it recognises.

    ``cases(seed, edge)`` returns CPU cases; ``edge=False`` gives random cases, ``True``
    the edge cases. A value matches when ``|got − want| ≤ atol + rtol·|want|``.
    """

    name: str
    reference: Callable[..., Any]
    cases: Callable[[int, bool], list[Case]]
    mistakes: Sequence[Mistake] = ()
    rtol: float = 1e-6
    atol: float = 1e-9

    def tolerance(self, want: Any) -> tuple[float, float]:
        """``(rtol, atol)`` for a reference value: the part's own for float64, looser for
        float32 (rounding alone differs by ~1e-6 between equivalent formulas)."""
        dtype = want.dtype if isinstance(want, Tensor) else torch.float64
        if dtype == torch.float64:
            return self.rtol, self.atol
        if dtype == torch.float32:
            return max(self.rtol, 1e-4), max(self.atol, 1e-6)
        return max(self.rtol, 1e-2), max(self.atol, 1e-3)


class CheckFailed(AssertionError):
    """An answer disagrees with the reference; the message says where and why."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of a traceback, which would quote the test cell.
        return [f"CheckFailed: {line}" if i == 0 else line for i, line in enumerate(str(self).splitlines())]


def get_part(name: str) -> Part:
    """The registered part called ``name`` (see :mod:`rlteach.parts`)."""
    from rlteach.parts import PARTS

    if name not in PARTS:
        raise ValueError(f"no graded part named {name!r}; known parts: {', '.join(sorted(PARTS))}")
    return PARTS[name]


def _map_tensors(value: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """``value`` with ``fn`` applied to every tensor in it (also inside tuples, lists, dicts)."""
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_map_tensors(v, fn) for v in value)
    if isinstance(value, Mapping):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    return value


def to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor in it moved to ``device``."""
    return _map_tensors(value, lambda t: t.to(device))


def _clone(value: Any) -> Any:
    return _map_tensors(value, lambda t: t.detach().clone())


def _index(flat: int, shape: torch.Size) -> tuple[int, ...]:
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), shape)) if shape else ()


def _at(index: tuple[int, ...]) -> str:
    return f" at index {index}" if index else ""


def compare(got: Any, want: Any, rtol: float, atol: float, what: str = "the result") -> str | None:
    """``None`` when ``got`` matches ``want``, else a sentence saying what differs.

    Tensors must agree in type, shape, dtype and device, then elementwise within
    ``atol + rtol·|want|``; NaN matches only NaN and an infinity only the same infinity.
    Tuples and lists are compared entry by entry; Python numbers accept 0-d tensors.
    """
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            kind = f"a {type(got).__name__} of length {len(got)}" if isinstance(got, (tuple, list)) else f"a {type(got).__name__}"
            return f"{what} is {kind}, expected a tuple of {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            problem = compare(g, w, rtol, atol, f"{what}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        if isinstance(got, Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            return f"{what} is a {type(got).__name__}, expected a number"
        got, want = torch.tensor(float(got)), torch.tensor(float(want))
    elif isinstance(want, Tensor):
        if not isinstance(got, Tensor):
            return f"{what} is a {type(got).__name__}, expected a torch.Tensor"
        if got.shape != want.shape:
            return f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        if got.dtype != want.dtype:
            return f"{what} has dtype {got.dtype}, expected {want.dtype} (keep the dtype of the inputs)"
        if got.device != want.device:
            return (f"{what} is on device {got.device}, expected {want.device} "
                    "(make new tensors on the inputs' device, e.g. torch.zeros_like(x))")
    elif got != want:
        return f"{what} is {got!r}, expected {want!r}"
    else:
        return None
    g = got.detach().to("cpu", torch.float64).reshape(-1)
    w = want.detach().to("cpu", torch.float64).reshape(-1)
    nan_g, nan_w = torch.isnan(g), torch.isnan(w)
    if bool((nan_g != nan_w).any()):
        flat = int((nan_g != nan_w).nonzero()[0])
        idx = _index(flat, want.shape)
        return f"{what} is {g[flat].item():.6g}{_at(idx)}, expected {w[flat].item():.6g}"
    same = (g == w) | (nan_g & nan_w)
    excess = torch.where(same, torch.zeros_like(g), (g - w).abs() - (atol + rtol * w.abs()))
    excess = torch.nan_to_num(excess, nan=float("inf"))
    bad = excess > 0
    if not bool(bad.any()):
        return None
    flat = int(torch.argmax(excess))
    idx = _index(flat, want.shape)
    count = f" ({int(bad.sum())} of {g.numel()} entries differ)" if g.numel() > 1 else ""
    return (f"{what} is wrong{_at(idx)}: got {g[flat].item():.8g}, expected {w[flat].item():.8g}"
            f"{count}; tolerance rtol={rtol:g}, atol={atol:g}")


def _first_change(before: Any, after: Any) -> int | None:
    for i, (b, a) in enumerate(zip(before, after)):
        if isinstance(b, Tensor) and isinstance(a, Tensor) and not torch.equal(b.nan_to_num(), a.detach().nan_to_num()):
            return i
    return None


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


def _refused_message(part: str, names: Sequence[str]) -> str:
    listed = ", ".join(sorted(set(names)))
    return (f"{part}(): your answer calls the graded reference {listed}, which is sealed during "
            "grading. This part scores zero until you write it yourself.")


def _known_mistake(part: Part, got: Any, want: Any, case: Case) -> str | None:
    rtol, atol = part.tolerance(want)
    for mistake in part.mistakes:
        try:
            wrong = mistake.fn(*case.args, **case.kwargs)
        except Exception:
            continue
        if compare(wrong, want, rtol, atol) is not None and compare(got, wrong, rtol, atol) is None:
            return mistake.hint
    return None


@dataclass(frozen=True)
class Outcome:
    """What the student's function did on one case: its output, or the error it raised
    (or the in-place change it made), and the sealed references it tried to call."""

    output: Any = None
    error: str | None = None
    refused: tuple[str, ...] = ()


def attempt(fn: Callable[..., Any], case: Case) -> Outcome:
    """Run the student's function on a copy of ``case`` with the references sealed and
    its prints, warnings and stderr captured (at most ``STDOUT_LIMIT`` characters are echoed)."""
    args, kwargs = _clone(case.args), _clone(case.kwargs)
    got, error = None, None
    with _captured() as out, sealed() as refused:
        try:
            got = fn(*args, **kwargs)
        except SealedReferenceError:
            pass
        except NotImplementedError:
            error = "your function is not implemented yet (it raised NotImplementedError)"
        except Exception as err:  # the student's exception becomes the message
            error = f"your function raised {type(err).__name__}: {err}"
    printed = out.getvalue()
    if printed:
        cut = f"\n... ({len(printed) - STDOUT_LIMIT} more characters not shown)" if len(printed) > STDOUT_LIMIT else ""
        print(printed[:STDOUT_LIMIT] + cut, end="" if printed.endswith("\n") and not cut else "\n")
    changed = _first_change(case.args, args) if error is None else None
    if changed is not None:
        error = f"your function changed its argument {changed + 1} in place; compute on new tensors instead"
    return Outcome(got, error, tuple(refused))


def judge(part: Part, case: Case, outcome: Outcome) -> str | None:
    """``None`` when the outcome matches ``part.reference`` on ``case``, else what is wrong."""
    if outcome.refused:
        return _refused_message(part.name, outcome.refused)
    if outcome.error:
        return outcome.error
    want = part.reference(*case.args, **case.kwargs)
    problem = compare(outcome.output, want, *part.tolerance(want))
    if problem:
        hint = _known_mistake(part, outcome.output, want, case)
        if hint:
            problem += f"\n  This looks like a known mistake: {hint}"
    return problem


def cases_on(spec: Part, seed: int, edge: bool, device: torch.device) -> list[Case]:
    """The part's seeded cases with their tensors on ``device``."""
    return [Case(c.name, to_device(c.args, device), to_device(c.kwargs, device)) for c in spec.cases(seed, edge)]


def verdict(spec: Part, cases: Sequence[Case], outcomes: Sequence[Outcome]) -> str | None:
    """The message of the first case whose outcome is wrong (``None`` when all are right)."""
    for i, (case, outcome) in enumerate(zip(cases, outcomes)):
        problem = judge(spec, case, outcome)
        if problem:
            if outcome.refused:
                return problem
            passed = f" ({i} earlier case{'s' if i != 1 else ''} passed)" if i else ""
            return f"{spec.name}(): on the case '{case.name}'{passed}, {problem}"
    return None


def _portable(value: Any) -> Any:
    if isinstance(value, Tensor):
        return {"tensor": value.detach().to("cpu").clone(), "device": str(value.device)}
    if isinstance(value, (tuple, list)):
        return {"sequence": [_portable(v) for v in value], "kind": type(value).__name__}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    return {"unsupported": type(value).__name__}


def _restore(value: Any) -> Any:
    if "tensor" in value:
        device = torch.device(value["device"])
        return value["tensor"].to(device) if device.type == "cpu" or torch.cuda.is_available() else value["tensor"]
    if "sequence" in value:
        items = [_restore(v) for v in value["sequence"]]
        return tuple(items) if value["kind"] == "tuple" else items
    if "value" in value:
        return value["value"]
    return type(str(value["unsupported"]), (), {})()


_dumped = [0]


def record_outcomes(part: str, seed: int, edge: bool, outcomes: Sequence[Outcome]) -> None:
    """Under the autograder (``RLTEACH_GRADING_DUMP`` names a folder) save the outcomes,
    so that the grader re-judges them in its own process, out of the student's reach."""
    folder = os.environ.get(DUMP_ENV)
    if not folder:
        return
    record = {"part": part, "seed": int(seed), "edge": bool(edge),
              "outcomes": [{"output": _portable(o.output), "error": o.error, "refused": list(o.refused)}
                           for o in outcomes]}
    _dumped[0] += 1
    torch.save(record, os.path.join(folder, f"{os.getpid()}-{_dumped[0]:06d}.pt"))


def load_outcomes(path: str | os.PathLike) -> tuple[str, int, bool, list[Outcome]]:
    """Read a saved record safely (``weights_only``: plain data and tensors, no code)."""
    record = torch.load(path, map_location="cpu", weights_only=True)
    outcomes = [Outcome(_restore(o["output"]), o["error"], tuple(o["refused"])) for o in record["outcomes"]]
    return record["part"], record["seed"], record["edge"], outcomes


def check(fn: Callable[..., Any], part: str, *, seed: int = 0, edge: bool = False,
          device: str | torch.device | None = None) -> None:
    """Check a student's function against the graded reference of ``part``.

    Parameters
    ----------
    fn : callable
        The student's function.
    part : str
        The registered part's name, e.g. ``"importance_weights"``.
    seed : int
        Seed of the random cases (a local ``torch.Generator``; no global state changes).
    edge : bool
        Run the edge cases instead of the random ones.
    device : str or torch.device, optional
        Defaults to ``RLTEACH_DEVICE`` (``cpu`` when unset).

    Raises
    ------
    CheckFailed
        On the first case that does not match, with what is wrong and, when recognised,
        the known mistake it matches.
    """
    spec = get_part(part)
    device = torch.device(device) if device is not None else default_device()
    cases = cases_on(spec, seed, edge, device)
    if not callable(fn):
        outcomes = [Outcome(error=f"is not a function (got a {type(fn).__name__})")] * len(cases)
    elif reference_name(fn):
        outcomes = [Outcome(refused=(reference_name(fn),))] * len(cases)
    else:
        outcomes = [attempt(fn, case) for case in cases]
    record_outcomes(part, seed, edge, outcomes)
    problem = verdict(spec, cases, outcomes)
    if problem:
        raise CheckFailed(problem)
    kind = "edge" if edge else "random"
    print(f"✓ {part}(): {len(cases)} {kind} cases match the reference on {device} "
          f"(float64 tolerance rtol={spec.rtol:g}, atol={spec.atol:g})")
