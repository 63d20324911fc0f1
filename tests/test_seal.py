"""The seal: a part's references refuse however they are reached, only while that part is
checked (in a student's session) or whenever student code is on the stack (in a graded
kernel), and nothing in the kernel can switch it off."""

import copy
import functools
import importlib
import inspect
import os
import tempfile
import types

import pytest
import torch

from rlteach import importance as imp
from rlteach.grading import CheckFailed, check
from rlteach.grading.parts import PARTS
from rlteach.grading.seal import SealedReferenceError, cell_hash, keys_of, sealed


def _wrapper(fn):
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapped


def _rebuilt(fn):
    return types.FunctionType(fn.__code__, fn.__globals__, "renamed")


def _exec_source(fn):
    namespace = dict(fn.__globals__)
    exec(inspect.getsource(fn), namespace)  # the module's own text, compiled anew
    return namespace[fn.__name__]


def _reloaded(fn):
    return getattr(importlib.reload(importlib.import_module(fn.__module__)), fn.__name__)


def _code_renamed(fn):
    return types.FunctionType(fn.__code__.replace(co_name="mine", co_filename="<mine>", co_firstlineno=1),
                              fn.__globals__)


ROUTES = {
    "the module": lambda fn: fn,
    "a wrapper's closure": lambda fn: _wrapper(fn).__closure__[0].cell_contents,
    "__wrapped__": lambda fn: _wrapper(fn).__wrapped__,
    "a function rebuilt from its code object": _rebuilt,
    "a renamed code object": _code_renamed,
    "its source run through exec": _exec_source,
    "importlib.reload": _reloaded,
    "copy.copy": copy.copy,
    "functools.partial": functools.partial,
    "the harness's part object": lambda fn: PARTS["importance_weights"].reference,
}


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_sealed_reference_refuses_however_it_is_reached(route):
    """Inside check, the reference reached through each route computes nothing: the answer
    scores zero with the message that it called the reference."""
    reached = ROUTES[route](imp.importance_weights)
    with pytest.raises(CheckFailed, match="your answer calls the graded reference rlteach.importance.importance_weights"):
        check(lambda lp, lq: reached(lp, lq), "importance_weights")
    with pytest.raises(CheckFailed, match="sealed during grading"):
        check(reached, "importance_weights")


def test_the_seal_keys_on_code_not_names():
    """Every route above leads to code with the reference's key; the student's own function
    of the same name does not."""
    key = next(iter(keys_of([imp.importance_weights])))
    for route, reach in ROUTES.items():
        target = reach(imp.importance_weights)
        target = target.func if isinstance(target, functools.partial) else target
        assert next(iter(keys_of([target]))) == key, route

    def importance_weights(logp_target, logp_proposal):
        return (logp_target - logp_proposal).exp()
    assert next(iter(keys_of([importance_weights]))) != key


def test_the_refusal_happens_before_the_reference_computes_anything():
    """Every argument is replaced: any use raises, even through torch and isinstance, and a
    broad ``except Exception`` in the reference cannot swallow it."""
    with sealed([imp.importance_weights]) as refused, pytest.raises(SealedReferenceError, match="graded reference"):
        imp.importance_weights(torch.zeros(3), torch.zeros(3))
    assert refused == ["rlteach.importance.importance_weights"]
    assert not issubclass(SealedReferenceError, Exception)


def test_outside_the_seal_references_and_lectures_run_freely():
    with sealed([imp.importance_weights]):
        pass
    assert torch.equal(imp.importance_weights(torch.zeros(2), torch.zeros(2)), torch.ones(2))
    assert torch.equal(_reloaded(imp.importance_weights)(torch.zeros(2), torch.zeros(2)), torch.ones(2))


def test_a_part_seals_only_its_own_references():
    """While importance_weights is checked, per_decision_is (another part's reference) runs."""
    def uses_other_part(lp, lq):
        imp.per_decision_is(torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2, 1), 0.9)
        return (lp - lq).exp()
    check(uses_other_part, "importance_weights")


def test_the_sealed_functions_of_every_part_are_its_reference_and_its_chosen_extras():
    for name, part in PARTS.items():
        assert part.sealed[0] is part.reference, name
        assert len(set(part.sealed)) == len(part.sealed), name


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "dpo_training" else n  # 3 s of GRUs
                                  for n in sorted(PARTS)])
def test_building_cases_and_observing_never_call_a_sealed_reference(name):
    """Cases are built in the graded kernel, where every part's references are sealed
    outside grade cells: a case factory that called one would poison itself."""
    everything = [fn for part in PARTS.values() for fn in part.sealed]
    part = PARTS[name]
    with sealed(everything) as refused:
        for group in part.groups:
            for case in part.cases(7, group):
                case.arguments(torch.device("cpu"))
    assert refused == []


# --------------------------------------------------------------------- the seal in a graded kernel


GRADE_WEIGHTS = 'check(importance_weights, "importance_weights", seed=0)'
GRADE_PER_DECISION = 'check(per_decision_is, "per_decision_is", seed=3)'


@pytest.fixture(scope="module")
def graded_kernel():
    """A real ipykernel with the grading seal installed the way the autograder does."""
    from jupyter_client.manager import start_new_kernel

    dump = tempfile.mkdtemp()
    previous = os.environ.get("RLTEACH_GRADING_DUMP")
    os.environ["RLTEACH_GRADING_DUMP"] = dump
    km, kc = start_new_kernel(kernel_name="python3")

    def run(code: str, silent: bool = False) -> str:
        msg_id = kc.execute(code, silent=silent, store_history=not silent)
        out = []
        while True:
            msg = kc.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                out.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")
            elif kind == "execute_result":
                out.append(msg["content"]["data"]["text/plain"])
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)

    cells = {cell_hash(GRADE_WEIGHTS): ["importance_weights"], cell_hash(GRADE_PER_DECISION): ["per_decision_is"]}
    run(f"from rlteach.grading.harness import install_seal as _i\n_i({cells!r}, 'pepper')\ndel _i", silent=True)
    run("import sys, torch\nfrom rlteach.grading import check\nfrom rlteach import importance as imp\n"
        "lp, lq = torch.zeros(2), torch.zeros(2)")
    yield run, dump
    km.shutdown_kernel(now=True)
    if previous is None:
        os.environ.pop("RLTEACH_GRADING_DUMP", None)
    else:
        os.environ["RLTEACH_GRADING_DUMP"] = previous


SEALED = "SealedReferenceError: rlteach.importance"

ATTACKS = {
    "a call at the top of an answer cell": "imp.importance_weights(lp, lq)",
    "another part's reference at the top level": "imp.per_decision_is(torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2, 1), 0.9)",
    "importlib.reload": "import importlib\nimportlib.reload(imp).importance_weights(lp, lq)",
    "a function rebuilt from the code object": "import types\ntypes.FunctionType(imp.importance_weights.__code__, vars(imp))(lp, lq)",
    "the source run through exec": "import inspect\nns = dict(vars(imp))\nexec(inspect.getsource(imp.importance_weights), ns)\n"
                                   "ns['importance_weights'](lp, lq)",
    "a thread": "import threading\nbox = []\nt = threading.Thread(target=lambda: box.append(imp.importance_weights(lp, lq)))\n"
                "t.start(); t.join(); print(box)",
    "a callback run by IPython after the cell": "def after(result):\n    try:\n        print(imp.importance_weights(lp, lq))\n"
                                                "    except BaseException as err:\n        print(f'{type(err).__name__}: {err}')\n"
                                                "get_ipython().events.register('post_run_cell', after)",
    "the harness's part object": "from rlteach.grading.parts import PARTS\nPARTS['importance_weights'].reference(lp, lq)",
    "the seal module's state": "import rlteach.grading.seal as s\nkept = (s.EVENT, s.QUERY, s.keys_of)\n"
                               "s.EVENT = s.QUERY = 'x'\ns.keys_of = lambda f: {}\nimp.importance_weights(lp, lq)",
}


@pytest.mark.notebooks
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_in_a_graded_kernel_no_route_outside_a_grade_cell_reaches_a_reference(graded_kernel, attack):
    run, _ = graded_kernel
    out = run(ATTACKS[attack])
    if attack == "a thread":
        assert "[]" in out and "SealedReferenceError" in out  # the thread died in the reference
    elif attack == "a callback run by IPython after the cell":
        assert SEALED in run("1 + 1")  # the callback's call is refused on the next cell
        run("get_ipython().events.callbacks['post_run_cell'].clear()")
    else:
        assert SEALED in out
    if attack == "the seal module's state":
        run("s.EVENT, s.QUERY, s.keys_of = kept")  # the tampering broke only this kernel's own checks


@pytest.mark.notebooks
@pytest.mark.parametrize("switch_off", [
    "sys.settrace(None)", "sys.setprofile(lambda *a: None)",
    "seen = []\nsys.addaudithook(lambda *a: seen.append(a))\nopen(__file__ if '__file__' in dir() else '/dev/null').close()\n"
    "print('PermissionError' if not seen else 'added')",
    "import gc\ngc.get_objects()", "import subprocess\nsubprocess.run(['true'])", "import os\nos.system('true')",
    "import ctypes\nctypes.string_at(0)",
    "import rlteach.grading.seal as s\ns.refusal_message.__code__ = (lambda name: '').__code__",
    "from rlteach.grading.harness import install_seal\ninstall_seal({}, '')",
])
def test_nothing_in_a_graded_kernel_switches_the_seal_off(graded_kernel, switch_off):
    run, _ = graded_kernel
    out = run(switch_off)
    assert "PermissionError" in out or "already installed" in out
    assert SEALED in run("imp.importance_weights(lp, lq)")


@pytest.mark.notebooks
def test_inside_its_grade_cell_a_part_may_call_other_parts_references(graded_kernel):
    """In the per_decision_is grade cell, the importance weights (part 1's reference) run;
    in the importance_weights grade cell they refuse. Both are recorded for the grader."""
    from rlteach.grading import records

    run, dump = graded_kernel
    run("def importance_weights(logp_target, logp_proposal):\n    return imp.importance_weights(logp_target, logp_proposal)\n"
        "def per_decision_is(r, lp, lb, gamma):\n    rho = torch.cumprod(imp.importance_weights(lp, lb), 0)\n"
        "    steps = torch.arange(r.shape[0], dtype=r.dtype)[:, None]\n    return (gamma ** steps * rho * r).sum(0)")
    before = set(os.listdir(dump))
    assert run(GRADE_WEIGHTS) == "" and run(GRADE_PER_DECISION) == ""
    saved = sorted(set(os.listdir(dump)) - before)
    (part1, *_, outcomes1), (part2, *_, outcomes2) = (records.load(os.path.join(dump, name)) for name in saved)
    assert part1 == "importance_weights" and all(o.refused == ("rlteach.importance.importance_weights",) for o in outcomes1)
    assert part2 == "per_decision_is" and all(o.refused == () and o.error is None for o in outcomes2)


@pytest.mark.notebooks
def test_a_grade_cell_run_again_from_student_code_gets_no_narrower_seal(graded_kernel):
    """Running the per_decision_is grade cell's code from an answer cell does not unseal
    part 1's reference: the outermost cell on the stack is the student's."""
    from rlteach.grading import records

    run, dump = graded_kernel
    before = set(os.listdir(dump))
    run("def per_decision_is(r, lp, lb, gamma):\n    return imp.importance_weights(lp, lb).sum(0) * 0\n"
        f"get_ipython().run_cell({GRADE_PER_DECISION!r})")
    (saved,) = sorted(set(os.listdir(dump)) - before)
    part, _, _, outcomes = records.load(os.path.join(dump, saved))
    assert part == "per_decision_is" and all(o.refused == ("rlteach.importance.importance_weights",) for o in outcomes)
