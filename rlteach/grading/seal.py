"""The seal: while a part is checked, the references it names cannot compute.

The library's references are plain functions; they do not know they are graded. A seal is
keyed on their *code*, not on a function object: a function refuses when the code it is
about to run has the content of a sealed reference's code (bytecode, constants, names,
variable names; not its name, file, line or docstring). So the reference refuses however
it is reached: through its module, a wrapper's closure, ``__wrapped__``, a function rebuilt
from its code object, ``importlib.reload``, its module's source run through ``exec``,
``copy.copy``, a ``functools.partial``, or the harness's own part objects.

A refusal happens before the reference's first instruction: every argument it was called
with is replaced by an object on which any operation raises :class:`SealedReferenceError`,
so the reference computes nothing, and the name of the reference is recorded.

Two ways to seal:

* :func:`sealed`, a context for a student's own session (and for tests): the parts'
  references refuse while the student's function runs inside ``check``, and are free
  outside it. Lectures and students working on their own call them freely.
* :func:`install`, once per graded kernel, before any student code runs. From then on,
  for the rest of that kernel's life, a sealed reference refuses whenever it would run
  with student code anywhere on the call stack. The seal in force is decided by the
  *outermost notebook cell* on the stack: inside a genuine grade cell (its file name is
  the hash of the instructor's source and IPython itself runs it) only the references of
  the parts that cell checks are sealed, so an answer may call library code that its own
  part does not seal; everywhere else (answer cells at the top level, callbacks, anything
  else) the references of every part of the notebook are sealed, so a table of reference
  outputs cannot be built before the check. The seal's state lives only in an audit hook
  (which cannot be removed or listed) and the trace function that feeds it cannot be
  replaced: ``sys.settrace`` (but for a new thread's first), new audit hooks,
  subprocesses, ``gc``'s object walks and ``ctypes`` are refused while the notebook is
  graded. Threads started through :mod:`threading` are traced too.

What no in-process seal stops: an answer that re-types the reference's public source with
changes, and a thread started with threading's trace hook cleared (Python 3.11 has no
audit event for thread creation). :mod:`rlteach.grading.similarity` reports copies and
such tampering signs to the instructor.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

EVENT = "rlteach.seal.call"  # the trace function's audit event while a notebook is graded
QUERY = "rlteach.seal.query"  # appends the grading salt to a list: the seal is installed
TAKE = "rlteach.seal.take"  # moves the refusals recorded so far into a list

BLOCKED = frozenset({
    "sys.settrace", "sys.setprofile", "sys.addaudithook",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents",
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.startfile",
})


class SealedReferenceError(BaseException):
    """A sealed reference was called while a student's answer was being checked.

    It derives from ``BaseException`` so that a reference's own ``except Exception``
    cannot swallow it.
    """


def refusal_message(name: str) -> str:
    return (f"{name} is a graded reference: it is sealed while your answer is checked. "
            "Write the computation yourself.")


def _keying() -> tuple[Callable[[types.CodeType], tuple], Callable[[types.CodeType], tuple[str, ...]]]:
    """``(key, argument_names)`` for code objects, closed over everything they use (no
    global or builtin is looked up when they run), so the grading hook can call them safely."""
    code_type, str_, bytes_, tuple_, frozenset_, int_, bool_, float_, complex_ = (
        types.CodeType, str, bytes, tuple, frozenset, int, bool, float, complex)
    type_, id_, repr_, all_ = type, id, repr, all
    varargs, varkw = inspect.CO_VARARGS, inspect.CO_VARKEYWORDS
    compiled = 0xFFFF  # the flags of the code itself; __future__ imports set higher bits

    def exact(value: Any) -> Any:
        return value if type_(value) is bytes_ else ("object", id_(value))

    def names(values: tuple) -> Any:
        return values if all_(type_(v) is str_ for v in values) else ("object", id_(values))

    def const(value: Any) -> Any:
        kind = type_(value)
        if kind is code_type:
            return ("code", key(value))
        if kind is tuple_ or kind is frozenset_:
            return ("tuple" if kind is tuple_ else "frozenset", tuple_(const(v) for v in value))
        if kind is int_ or kind is str_ or kind is bytes_ or kind is bool_ or value is None or value is Ellipsis:
            return (kind, value)
        if kind is float_ or kind is complex_:
            return (kind, repr_(value))
        return ("object", id_(value))

    def key(code: types.CodeType) -> tuple:
        """Everything but a code object's name, file, lines and docstring (nested code by
        its own key). Only exact builtin types enter the key: hashing it runs no one's code."""
        consts = code.co_consts
        if consts and type_(consts[0]) is str_:
            consts = consts[1:]
        return (exact(code.co_code), tuple_(const(c) for c in consts), names(code.co_names),
                names(code.co_varnames), names(code.co_freevars), names(code.co_cellvars), code.co_argcount,
                code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags & compiled)

    def argument_names(code: types.CodeType) -> tuple[str, ...]:
        count = code.co_argcount + code.co_kwonlyargcount
        count += (1 if code.co_flags & varargs else 0) + (1 if code.co_flags & varkw else 0)
        return code.co_varnames[:count]

    return key, argument_names


_key, _argument_names = _keying()


def code_of(fn: Callable[..., Any]) -> types.CodeType:
    """The code object a reference runs (through partials, bound methods and wrappers)."""
    target: Any = inspect.unwrap(fn)
    while isinstance(target, (types.MethodType,)) or hasattr(target, "func"):
        target = target.__func__ if isinstance(target, types.MethodType) else target.func
    code = getattr(target, "__code__", None)
    if not isinstance(code, types.CodeType):
        raise TypeError(f"cannot seal {fn!r}: it is not a Python function")
    return code


def keys_of(functions: Iterable[Callable[..., Any]]) -> dict[tuple, str]:
    """``{code key: 'module.name'}`` for the functions to seal."""
    return {_key(code_of(fn)): _qualified(fn) for fn in functions}


class _Refusal:
    """Stands in for every argument of a sealed reference: any use raises."""

    __slots__ = ("_message",)

    def __init__(self, message: str):
        object.__setattr__(self, "_message", message)

    def _refuse(self: Any, *args: Any, error: type[BaseException] = SealedReferenceError, **kwargs: Any) -> Any:
        raise error(object.__getattribute__(self, "_message"))

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        raise SealedReferenceError("a graded reference is sealed while your answer is checked")


for _name in ("__getattribute__", "__getattr__", "__setattr__", "__delattr__", "__call__", "__len__", "__iter__",
              "__bool__", "__index__", "__int__", "__float__", "__complex__", "__array__", "__getitem__",
              "__setitem__", "__contains__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__",
              "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
              "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__pow__", "__rpow__", "__matmul__",
              "__rmatmul__", "__neg__", "__pos__", "__abs__", "__invert__", "__and__", "__rand__", "__or__",
              "__ror__", "__xor__", "__rxor__", "__lshift__", "__rshift__", "__round__", "__enter__", "__exit__",
              "__reduce__", "__reduce_ex__", "__copy__", "__deepcopy__", "__format__"):
    setattr(_Refusal, _name, _Refusal._refuse)


@contextmanager
def sealed(functions: Iterable[Callable[..., Any]]) -> Iterator[list[str]]:
    """Within the block ``functions`` refuse to run; yields the names they refused.

    Under the autograder the installed seal already holds (and decides by the call stack);
    the block then only collects its refusals.
    """
    refused: list[str] = []
    if grading_salt() is not None:
        take_refusals()
        try:
            yield refused
        finally:
            refused.extend(take_refusals())
        return
    keys = keys_of(functions)
    known: dict[int, tuple[types.CodeType, str | None]] = {}

    def trace(frame: types.FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return None
        code = frame.f_code
        entry = known.get(id(code))
        if entry is None or entry[0] is not code:
            entry = known[id(code)] = (code, keys.get(_key(code)))
        if entry[1] is not None:
            refused.append(entry[1])
            refusal, local = _Refusal(refusal_message(entry[1])), frame.f_locals
            for name in _argument_names(code):
                local[name] = refusal
        return None

    previous, previous_threads = sys.gettrace(), threading.gettrace()
    sys.settrace(trace)
    threading.settrace(trace)
    try:
        yield refused
    finally:
        sys.settrace(previous)
        threading.settrace(previous_threads)


def grading_salt() -> str | None:
    """The salt of the installed grading seal, or ``None`` outside the autograder."""
    box: list[str] = []
    sys.audit(QUERY, box)
    return box[0] if box else None


def take_refusals() -> list[str]:
    """The references refused since the last call (under the autograder)."""
    box: list[str] = []
    sys.audit(TAKE, box)
    return box


def install(cells: Mapping[str, Iterable[Callable[..., Any]]], salt: str) -> None:
    """Seal the references for the rest of this kernel's life (see the module docstring).

    Parameters
    ----------
    cells : mapping
        ``{grade cell hash: functions}``: for each grade cell, by ipykernel's hash of its
        source (:func:`cell_hash`), the functions sealed while it runs. Outside grade
        cells all of them are sealed.
    salt : str
        Mixed into every check's seed while the notebook is graded (a student's table
        made at home of outputs on the visible seeds is worth nothing).
    """
    if grading_salt() is not None:
        raise RuntimeError("the grading seal is already installed")
    from ipykernel.compiler import get_tmp_directory
    from IPython.core.interactiveshell import InteractiveShell

    prefix = get_tmp_directory() + os.sep
    key, argument_names = _keying()
    names: dict[tuple, str] = {}
    by_cell: dict[str, frozenset[tuple]] = {}
    for cell, functions in cells.items():
        keys = {key(code_of(fn)): name for fn, name in ((fn, _qualified(fn)) for fn in functions)}
        names.update(keys)
        by_cell[prefix + str(cell) + ".py"] = frozenset(keys)
    refusals = {k: _Refusal(refusal_message(name)) for k, name in names.items()}
    hook = _make_hook(prefix, InteractiveShell.run_code.__code__, by_cell, names, refusals, str(salt), key,
                      argument_names)
    sys.addaudithook(hook)
    tracer = types.MethodType(sys.audit, EVENT)
    sys.settrace(tracer)
    threading.settrace(tracer)  # threads started from now on trace into the hook too
    sys.audit(EVENT + ".lock")


def _qualified(fn: Callable[..., Any]) -> str:
    target = inspect.unwrap(fn)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"


def _make_hook(prefix: str, run_code: types.CodeType, by_cell: dict[str, frozenset[tuple]], names: dict[tuple, str],
               refusal_for: dict[tuple, _Refusal], salt: str, key_of: Callable[[types.CodeType], tuple],
               argument_names: Callable[[types.CodeType], tuple[str, ...]]) -> Callable[[str, tuple], None]:
    """The audit hook that holds the seal. It closes over everything it uses and looks up
    no global or builtin name when it runs, and it never calls a method of an object a
    student could have made: nothing in the kernel can reach or rebind its state."""
    everywhere = frozenset(names)
    type_, len_, id_, list_, str_, frame_type, gettrace = type, len, id, list, str, types.FrameType, sys.gettrace
    startswith, refuse, blocked = str.startswith, PermissionError, BLOCKED
    call_event, query_event, take_event, lock_event = EVENT, QUERY, TAKE, EVENT + ".lock"
    known: dict[int, tuple[Any, Any]] = {}
    refused: list[str] = []
    locked = [False]

    def context(frame: Any) -> frozenset:
        outermost = None
        while frame is not None:
            filename = frame.f_code.co_filename
            if type_(filename) is not str_ or startswith(filename, prefix) or startswith(filename, "<ipython-input-"):
                outermost = frame
            frame = frame.f_back
        if outermost is None:
            return everywhere
        filename, caller = outermost.f_code.co_filename, outermost.f_back
        if type_(filename) is str_ and caller is not None and caller.f_code is run_code:
            return by_cell.get(filename, everywhere)
        return everywhere

    def on_call(frame: Any) -> None:
        code = frame.f_code
        entry = known.get(id_(code))
        if entry is None or entry[0] is not code:
            computed = key_of(code)
            entry = known[id_(code)] = (code, computed if computed in everywhere else None)
        sealed_key = entry[1]
        if sealed_key is None or sealed_key not in context(frame):
            return
        refused.append(names[sealed_key])
        refusal, local = refusal_for[sealed_key], frame.f_locals
        for argument in argument_names(code):
            local[argument] = refusal

    def hook(event: str, args: tuple) -> None:
        if event == "object.__getattr__":
            return
        if event == call_event:
            if len_(args) == 3 and type_(args[0]) is frame_type and type_(args[1]) is str_ and args[1] == "call":
                on_call(args[0])
            return
        if event == query_event or event == take_event:
            if len_(args) == 1 and type_(args[0]) is list_:
                if event == query_event:
                    args[0].append(salt)
                else:
                    args[0].extend(refused)
                    refused.clear()
            return
        if event == lock_event:
            locked[0] = True
            return
        if not locked[0]:
            return
        if event == "sys.settrace" and gettrace() is None:
            return  # a new thread installing its trace function (threading's, set at install)
        if event in blocked or startswith(event, "ctypes."):
            raise refuse(f"{event} is not available while a notebook is graded")
        if event == "object.__setattr__" and len_(args) >= 2 and type_(args[1]) is str_ and args[1] == "__code__":
            raise refuse("replacing a function's __code__ is not available while a notebook is graded")

    return hook


def cell_hash(source: str) -> str:
    """ipykernel's name for a cell of this source (the file its code objects claim)."""
    from ipykernel.compiler import get_tmp_hash_seed, murmur2_x86

    return str(murmur2_x86(source, get_tmp_hash_seed()))
