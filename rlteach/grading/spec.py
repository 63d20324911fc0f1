"""What a graded part is made of: its cases, the mistakes it recognises, the properties a
behavioural part checks, and the part itself.

A part module (one per topic, in :mod:`rlteach.grading.parts`) builds these from the
library's references; the harness (:mod:`rlteach.grading.harness`) runs them.
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

Arguments = tuple[tuple, dict[str, Any]]


def map_tensors(value: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """``value`` with ``fn`` applied to every tensor in it (inside tuples, lists and dicts too)."""
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(map_tensors(v, fn) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(map_tensors(v, fn) for v in value)
    if isinstance(value, Mapping):
        return {k: map_tensors(v, fn) for k, v in value.items()}
    return value


def to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor in it on ``device``."""
    return map_tensors(value, lambda t: t.to(device))


def clone(value: Any) -> Any:
    """A deep copy of the tensors in ``value`` (detached), the rest shared."""
    return map_tensors(value, lambda t: t.detach().clone())


@dataclass(frozen=True)
class Case:
    """One input of a graded function, with a name the student may read.

    Either static ``args``/``kwargs`` (their tensors are copied for every call), or ``make``:
    a factory ``make(device) -> (args, kwargs)`` that builds fresh, identically seeded
    arguments for every call (modules, optimizers, ``torch.Generator``\\ s, environments), so
    that the reference and the answer never share state. ``info`` holds what a behavioural
    part's properties judge by (the problem's data); it is never passed to the answer.
    """

    name: str
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    make: Callable[[torch.device], Arguments] | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    def arguments(self, device: torch.device) -> Arguments:
        """Fresh arguments on ``device``."""
        if self.make is not None:
            args, kwargs = self.make(device)
            return tuple(args), dict(kwargs)
        return to_device(clone(self.args), device), to_device(clone(dict(self.kwargs)), device)


@dataclass(frozen=True)
class Mistake:
    """A known wrong answer: ``fn`` computes it, ``hint`` explains it to the student."""

    hint: str
    fn: Callable[..., Any]


PARTS_PACKAGE = "rlteach.grading.parts"


def _code_names(code: types.CodeType) -> set[str]:
    """The global names a code object and the functions nested in it refer to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def grading_code_called_by(fns: Iterable[Callable[..., Any]]) -> tuple[Callable[..., Any], ...]:
    """The functions defined in the parts modules that ``fns`` refer to, followed transitively."""
    found: dict[int, Callable[..., Any]] = {}
    todo = list(fns)
    while todo:
        fn = todo.pop()
        while isinstance(fn, functools.partial):
            todo.extend(value for value in (*fn.args, *fn.keywords.values()) if callable(value))
            fn = fn.func
        if not isinstance(fn, types.FunctionType):
            continue
        for name in _code_names(fn.__code__):
            target = fn.__globals__.get(name)
            if (isinstance(target, types.FunctionType) and target.__module__.startswith(PARTS_PACKAGE)
                    and id(target) not in found):
                found[id(target)] = target
                todo.append(target)
        todo.extend(value for value in map(_cell_value, fn.__closure__ or ()) if callable(value))
    return tuple(found.values())


def _cell_value(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


@dataclass(frozen=True)
class Property:
    """One thing a behavioural part asks of what the student's code achieved.

    ``test(observed, case)`` returns ``None`` when it holds, else a sentence saying what was
    missed. It runs in the grader's own process on the recorded observation, so it must
    recompute what it judges (an evaluation return, a KL) from recorded tensors, never
    trust a number the student's code reported. ``weight`` is its share of the case.
    """

    name: str
    test: Callable[[Any, Case], str | None]
    weight: float = 1.0


def state_of(module: nn.Module) -> dict[str, Tensor]:
    """A module's parameters and buffers, detached: what an update is graded on."""
    return {name: t.detach().clone() for name, t in module.state_dict().items()}


@dataclass(frozen=True)
class Part:
    """A graded exercise part.

    Parameters
    ----------
    name : str
        What grade cells call it by: ``check(fn, name, seed=..., group=...)``.
    reference : callable
        The library's answer. It is sealed while the part is checked.
    cases : callable
        ``cases(seed, group) -> list[Case]`` on the CPU; deterministic in ``seed``.
    groups : tuple of str
        The named case groups ``cases`` understands; the first is the default.
    mistakes : sequence of Mistake
        Known wrong answers, recognised when the answer matches one of them.
    seals : tuple of callables
        Further library functions sealed while this part is checked (its own reference
        always is). Everything else in the library stays callable.
    observe : callable, optional
        ``observe(result, args, kwargs)`` picks what is compared (a module's parameters
        after an update, a dict of diagnostics); default: the result itself.
    grad : tuple of str
        Inputs (by the reference's parameter names; a module means its parameters) whose
        gradient of the loss is compared. An input the reference detaches must get none.
    loss : callable, optional
        ``loss(result)``: the scalar whose gradients are compared (default: the result).
    properties : tuple of Property
        For a behavioural part: what the answer must achieve. When given, the case's
        observation is judged by these (each with its weight) instead of against the
        reference's.
    time_limit : float, optional
        Seconds one case may run (behavioural parts), enforced with a timer.
    rtol, atol : float
        Tolerance for float64 results, ``|got − want| ≤ atol + rtol·|want|``; float32
        results get at least ``rtol=1e-4, atol=1e-6``.
    """

    name: str
    reference: Callable[..., Any]
    cases: Callable[[int, str], list[Case]]
    groups: tuple[str, ...] = ("random", "edge")
    mistakes: Sequence[Mistake] = ()
    seals: tuple[Callable[..., Any], ...] = ()
    observe: Callable[[Any, tuple, dict], Any] | None = None
    grad: tuple[str, ...] = ()
    loss: Callable[[Any], Tensor] | None = None
    properties: tuple[Property, ...] = ()
    time_limit: float | None = None
    rtol: float = 1e-6
    atol: float = 1e-9

    @property
    def sealed(self) -> tuple[Callable[..., Any], ...]:
        """Every function sealed while this part is checked: its reference first, then
        :attr:`seals`, then :attr:`grading_code`."""
        extra = [fn for fn in (*self.seals, *self.grading_code) if fn is not self.reference]
        return (self.reference, *dict.fromkeys(extra))

    @functools.cached_property
    def grading_code(self) -> tuple[Callable[..., Any], ...]:
        """The functions of the parts modules that this part's mistakes call, directly or through each other.

        A mistake is usually a variant of the answer with one piece changed, which at its
        default arguments *is* the answer: these are sealed with the reference, so that an
        answer cannot call the grader's own copy of it. Code that the cases, ``observe``,
        ``loss`` or the properties use is left out: it runs while the answer does (a case's
        objective, say).
        """
        harness_side = [fn for fn in (self.cases, self.observe, self.loss, *(p.test for p in self.properties))
                        if fn is not None]
        free = {id(fn) for fn in (*harness_side, *grading_code_called_by(harness_side))}
        return tuple(fn for fn in grading_code_called_by(mistake.fn for mistake in self.mistakes) if id(fn) not in free)

    @property
    def behavioural(self) -> bool:
        return bool(self.properties)

    def group(self, group: str | None) -> str:
        """``group`` checked against :attr:`groups` (``None``: the first)."""
        if group is None:
            return self.groups[0]
        if group not in self.groups:
            raise ValueError(f"{self.name}: no case group {group!r}; groups: {', '.join(self.groups)}")
        return group

    def weights(self) -> list[float]:
        """The properties' shares of a case, summing to one."""
        total = math.fsum(p.weight for p in self.properties)
        return [p.weight / total for p in self.properties]
