"""Copies are found, not only calls: how alike answers are, and signs of tampering.

No in-process seal stops an answer that re-types the reference's public source. So after
grading a class, each answer cell is compared with the library's reference of its part and
with every other student's answer to it, the way MOSS (Schleimer, Wilkerson & Aiken 2003,
"Winnowing") compares programs:

1. the answer is turned into tokens with Python's own tokenizer; comments, docstrings and
   layout are dropped, every name that is not an attribute (``x`` in ``torch.x``) becomes
   ``N``, every number ``0`` and every string ``S``, so renaming variables, reformatting
   and rewording comments change nothing;
2. every run of ``K`` consecutive tokens is hashed, and winnowing keeps the smallest hash
   of every window of ``W`` runs: the answer's fingerprints;
3. two answers are as alike as the share of the smaller one's fingerprints found in the
   other (containment: a copy padded with extra code still counts).

Pairs at or above :data:`THRESHOLD` are *flagged* for the instructor to judge; they never
cost points. Answers with fewer than :data:`MIN_FINGERPRINTS` fingerprints (a line or
two) are too short to tell a copy from the one natural way of writing them, and are not
compared. The same pass lists the *tampering signs* in each answer: uses of the
introspection and process machinery that an honest answer never needs (code objects,
``reload``, ``exec``, threads, ``gc``, the grading package, ...).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import io
import keyword
import textwrap
import tokenize
from collections.abc import Callable, Mapping
from dataclasses import dataclass

K = 6  # tokens per hashed run
W = 4  # runs per winnowing window
THRESHOLD = 0.8  # flag pairs whose containment similarity reaches this
MIN_FINGERPRINTS = 8  # shorter answers are not compared

SUSPICIOUS_ATTRIBUTES = frozenset({
    "__code__", "__closure__", "__wrapped__", "__globals__", "__builtins__", "f_back", "f_locals", "f_code",
    "reload", "getsource", "settrace", "setprofile", "addaudithook", "audit", "get_objects", "get_referents",
    "get_referrers", "_getframe", "modules", "jit", "compile", "FunctionType", "CodeType", "MethodType",
})
SUSPICIOUS_MODULES = frozenset({
    "importlib", "inspect", "gc", "ctypes", "marshal", "threading", "_thread", "subprocess", "multiprocessing",
    "signal", "types", "builtins", "rlteach.grading", "IPython", "ipykernel",
})
SUSPICIOUS_CALLS = frozenset({"exec", "eval", "compile", "__import__", "globals", "vars", "getattr", "setattr"})


def tokens(source: str) -> list[str]:
    """The normalized token stream of ``source`` (see the module docstring)."""
    out: list[str] = []
    previous, dropped = "", False
    try:
        stream = list(tokenize.generate_tokens(io.StringIO(textwrap.dedent(source)).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return []
    for token in stream:
        kind, text = token.type, token.string
        if kind in (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER):
            continue
        if kind == tokenize.STRING and previous in ("", "NEWLINE", "INDENT", "DEDENT", ":"):
            dropped = True  # a docstring or a bare string statement, with its newline
            continue
        if dropped and kind == tokenize.NEWLINE:
            dropped = False
            continue
        dropped = False
        if kind == tokenize.NAME:
            normalized = text if keyword.iskeyword(text) or previous == "." else "N"
        elif kind == tokenize.NUMBER:
            normalized = "0"
        elif kind == tokenize.STRING:
            normalized = "S"
        elif kind in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            normalized = tokenize.tok_name[kind]
        else:
            normalized = text
        out.append(normalized)
        previous = normalized
    return out


def fingerprints(source: str) -> frozenset[int]:
    """The winnowed hashes of the runs of :data:`K` normalized tokens of ``source``."""
    stream = tokens(source)
    runs = [int.from_bytes(hashlib.blake2b(" ".join(stream[i:i + K]).encode(), digest_size=8).digest(), "big")
            for i in range(len(stream) - K + 1)]
    if len(runs) <= W:
        return frozenset(runs)
    return frozenset(min(runs[i:i + W]) for i in range(len(runs) - W + 1))


def similarity(a: frozenset[int], b: frozenset[int]) -> float | None:
    """Containment of the smaller fingerprint set in the larger (``None``: too short)."""
    if min(len(a), len(b)) < MIN_FINGERPRINTS:
        return None
    return len(a & b) / min(len(a), len(b))


def reference_source(fn: Callable) -> str:
    """The source a student could copy: the function as the library prints it."""
    return inspect.getsource(inspect.unwrap(fn))


def tampering_signs(source: str) -> list[str]:
    """What in ``source`` an honest answer never needs (sorted, without repeats)."""
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return []
    signs = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in SUSPICIOUS_ATTRIBUTES:
            signs.add(node.attr)
        elif isinstance(node, ast.Name) and node.id in SUSPICIOUS_CALLS:
            signs.add(f"{node.id}()")
        elif isinstance(node, ast.Import):
            signs.update(alias.name for alias in node.names
                         if any(alias.name == m or alias.name.startswith(m + ".") for m in SUSPICIOUS_MODULES))
        elif isinstance(node, ast.ImportFrom) and node.module:
            if any(node.module == m or node.module.startswith(m + ".") for m in SUSPICIOUS_MODULES):
                signs.add(node.module)
    return sorted(signs)


@dataclass(frozen=True)
class Flag:
    """A pair of answers at or above the threshold, for the instructor to judge."""

    answer: str  # the answer cell (grade id)
    student: str
    other: str  # another student, or "the reference"
    score: float

    def __str__(self) -> str:
        return f"{self.answer}: {self.student} and {self.other} are {self.score:.0%} alike"


def compare_class(answers: Mapping[str, Mapping[str, str]], references: Mapping[str, list[str]],
                  threshold: float = THRESHOLD) -> list[Flag]:
    """Flag every answer too close to its part's reference or to another student's.

    Parameters
    ----------
    answers : mapping
        ``{student: {answer cell: source}}``.
    references : mapping
        ``{answer cell: [source of each reference its parts seal]}``.
    """
    prints = {student: {cell: fingerprints(src) for cell, src in cells.items()} for student, cells in answers.items()}
    reference_prints = {cell: [fingerprints(src) for src in sources] for cell, sources in references.items()}
    flags = []
    students = sorted(prints)
    for i, student in enumerate(students):
        for cell, mine in prints[student].items():
            scores = [s for ref in reference_prints.get(cell, []) if (s := similarity(mine, ref)) is not None]
            if scores and max(scores) >= threshold:
                flags.append(Flag(cell, student, "the reference", max(scores)))
            for other in students[i + 1:]:
                theirs = prints[other].get(cell)
                score = similarity(mine, theirs) if theirs is not None else None
                if score is not None and score >= threshold:
                    flags.append(Flag(cell, student, other, score))
    return flags
