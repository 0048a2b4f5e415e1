"""Structural comparison of parsed answers and the :func:`grade` entry point."""

from __future__ import annotations

import math
import re
import time
from fractions import Fraction
from typing import Any

from .common import (
    _KNOWN_WORDS,
    ALGEBRAIC,
    EMPTY,
    EXACT,
    EXACT_TEXT,
    MAX_ANSWER_CHARS,
    MAX_SYMBOLIC_JOBS,
    NO_ANSWER,
    NOT_EQUIVALENT,
    NUMERIC,
    REL_TOL,
    SYMBOLIC,
    TIMEOUT,
    TOLERANCE,
    TOO_COMPLEX,
    TOO_DEEP,
    TOO_LONG,
    UNAVAILABLE,
    UNPARSEABLE,
    Verdict,
    _Refused,
    _Syntax,
)
from .fast import (
    _ONE_KEY,
    _has_decimal,
    _is_int_literal,
    _NotPolyType,
    _Poly,
    _poly_equal,
    _poly_proportional,
    _to_poly,
)
from .normalize import _normalize, _squash
from .parse import _CONTAINERS, _align_labels, _parse, _prepare
from .worker import _run_symbolic, _Timeout, _Unavailable

_STRENGTH = {NUMERIC: 0, TOLERANCE: 1, ALGEBRAIC: 2, SYMBOLIC: 3}


class _Comparison:
    """One gold/pred comparison.

    Element checks that need sympy are collected in ``pending`` (answering False for now); after
    the worker answered them, a second pass reads ``results``.
    """

    def __init__(self) -> None:
        self._polys: dict[int, _Poly | _NotPolyType] = {}
        self._diffs: dict[tuple[int, int], tuple[Any, ...]] = {}
        self.pending: dict[tuple[str, int, int], tuple[Any, ...]] = {}
        self.results: dict[tuple[str, int, int], bool] = {}
        self.how: set[str] = set()

    def reason(self) -> str:
        return max(self.how, key=_STRENGTH.__getitem__) if self.how else NUMERIC

    def poly(self, node: tuple[Any, ...], side: str) -> _Poly | _NotPolyType:
        key = id(node)
        if key not in self._polys:
            try:
                self._polys[key] = _to_poly(node)
            except _Refused as exc:
                raise _Refused(exc.reason + (": gold" if side == "gold" else "")) from None
        return self._polys[key]

    def diff(self, lhs: tuple[Any, ...], rhs: tuple[Any, ...]) -> tuple[Any, ...]:
        key = (id(lhs), id(rhs))
        if key not in self._diffs:
            self._diffs[key] = ("add", (lhs, ("neg", rhs)))
        return self._diffs[key]

    def _decided(self, key: tuple[str, int, int], job: tuple[Any, ...]) -> bool:
        if key in self.results:
            if self.results[key]:
                self.how.add(SYMBOLIC)
                return True
            return False
        self.pending[key] = job
        return False

    def scalars(self, g: tuple[Any, ...], p: tuple[Any, ...]) -> bool:
        gp, pp = self.poly(g, "gold"), self.poly(p, "pred")
        if gp.__class__ is dict and pp.__class__ is dict:
            if gp == pp:  # the common case first: no need to know whether decimals are involved
                self.how.add(ALGEBRAIC if any(k != _ONE_KEY for k in gp) else NUMERIC)
                return True
            how = _poly_equal(gp, pp, _tolerant(g, p))
            if how is not None:
                self.how.add(how)
                return True
            return False
        return self._decided(("eq", id(g), id(p)), ("eq", g, p, _tolerant(g, p)))

    def proportional(self, g: tuple[Any, ...], p: tuple[Any, ...], positive: bool) -> bool:
        gp, pp = self.poly(g, "gold"), self.poly(p, "pred")
        kind = "prop+" if positive else "prop"
        if not isinstance(gp, _NotPolyType) and not isinstance(pp, _NotPolyType):
            if _poly_proportional(gp, pp, positive):
                self.how.add(ALGEBRAIC)
                return True
            return False
        return self._decided((kind, id(g), id(p)), (kind, g, p, False))


def _tolerant(g: tuple[Any, ...], p: tuple[Any, ...]) -> bool:
    """Whether the decimal tolerance applies: a decimal literal on either side, gold not an integer."""
    return not _is_int_literal(g) and (_has_decimal(g) or _has_decimal(p))


def _compare(g: tuple[Any, ...], p: tuple[Any, ...], cmp: _Comparison) -> bool:
    """Structural equality.

    Evaluates every element pair (no short cut), so that one pass collects all the sympy checks
    the result depends on.
    """
    gt, pt = g[0], p[0]
    if gt == "list":
        if pt == "list" and _all_tuples(g[1]) and _all_tuples(p[1]):
            return _unordered(g[1], p[1], cmp)  # solutions of a system: a set of tuples
        if pt == "list" or (pt == "tuple" and p[1:3] == ("(", ")")):
            return _ordered(g[1], p[-1], cmp)
        if pt in ("set", "bset"):
            return _unordered(g[1], p[1], cmp)
        return False
    if gt in ("set", "bset"):
        if pt in ("set", "bset", "list"):
            return _unordered(g[1], p[1], cmp)
        return False
    if gt == "tuple":
        if pt == "tuple" and g[1:3] == p[1:3]:
            return _ordered(g[3], p[3], cmp)
        if pt in ("list", "bset") and g[1:3] == ("(", ")"):
            return _ordered(g[3], p[1], cmp)
        return False
    if gt == "union":
        return pt == "union" and _unordered(g[1], p[1], cmp)
    if gt == "rel":
        return pt == "rel" and _compare_relations(g, p, cmp)
    if gt == "ratio":
        return pt == "ratio" and _ordered(g[1], p[1], cmp)
    if gt == "matrix":
        if pt != "matrix" or len(g[1]) != len(p[1]):
            return False
        return all([_ordered(a, b, cmp) for a, b in zip(g[1], p[1], strict=True)])
    if pt in _CONTAINERS:
        return False
    return cmp.scalars(g, p)


def _all_tuples(items: tuple[Any, ...]) -> bool:
    return all(item[0] == "tuple" for item in items)


def _ordered(gs: tuple[Any, ...], ps: tuple[Any, ...], cmp: _Comparison) -> bool:
    if len(gs) != len(ps):
        return False
    return all([_compare(a, b, cmp) for a, b in zip(gs, ps, strict=True)])


def _unordered(gs: tuple[Any, ...], ps: tuple[Any, ...], cmp: _Comparison) -> bool:
    """Set equality: every gold element equals some predicted one and vice versa."""
    if not gs or not ps:
        return not gs and not ps
    matrix = [[_compare(a, b, cmp) for b in ps] for a in gs]
    return all(any(row) for row in matrix) and all(any(col) for col in zip(*matrix, strict=True))


_FLIP = {">": "<", ">=": "<="}


def _orient(node: tuple[Any, ...]) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    ops, operands = node[1], node[2]
    if all(op in _FLIP for op in ops):
        return tuple(_FLIP[op] for op in reversed(ops)), tuple(reversed(operands))
    return ops, operands


def _compare_relations(g: tuple[Any, ...], p: tuple[Any, ...], cmp: _Comparison) -> bool:
    gops, gargs = _orient(g)
    pops, pargs = _orient(p)
    if gops != pops:
        return False
    scalars = all(a[0] not in _CONTAINERS for a in gargs + pargs)
    if len(gops) == 1 and gops[0] in ("=", "!=", "<", "<=") and scalars:
        return cmp.proportional(
            cmp.diff(gargs[0], gargs[1]), cmp.diff(pargs[0], pargs[1]), positive=gops[0] in ("<", "<=")
        )
    return _ordered(gargs, pargs, cmp)


def is_equivalent(gold: str, pred: str | None, *, timeout: float = 1.0) -> bool:
    """Whether ``pred`` is mathematically the same answer as ``gold``: ``grade(...).equivalent``.

    Example:
        >>> is_equivalent("7 3/4", "31/4"), is_equivalent("28\\\\%", "28"), is_equivalent("3", "3.5")
        (True, True, False)
    """
    return grade(gold, pred, timeout=timeout).equivalent


def grade(gold: str, pred: str | None, *, timeout: float = 1.0) -> Verdict:
    r"""Compare a predicted final answer with the gold one.

    Both are final answers, not completions (use :func:`extract_answer` first); a ``\boxed{}``
    inside either is unwrapped. The comparison is not symmetric: gold goes first. The conventions
    and the list of reasons are in the module docstring.

    Args:
        gold: The reference answer.
        pred: The model's answer; ``None`` (nothing extracted) gives ``Verdict(False, "no answer")``.
        timeout: Seconds the symbolic (sympy) comparisons of this call may take in total. The fast
            path needs no time limit: it is bounded by construction.

    Returns:
        The :class:`Verdict`. Never raises on string input and never hangs: bad, huge or
        pathological answers give ``Verdict(False, reason)``.

    Raises:
        TypeError: If ``gold`` is not a string or ``pred`` is neither a string nor None.
        ValueError: If ``timeout`` is not a positive finite number.

    Example:
        >>> grade("\\frac{1}{2}", "0.5")
        Verdict(equivalent=True, reason='numeric')
        >>> grade("x = 5", "5").equivalent, grade("[1, 3)", "(1, 3)").equivalent
        (True, False)
        >>> grade("5", "9^9^9^9")
        Verdict(equivalent=False, reason='exponent too large: result would exceed 20000 bits')
    """
    if not isinstance(gold, str):
        raise TypeError(f"grade needs the gold answer as a str, got {type(gold).__name__}.")
    if pred is None:
        return Verdict(False, NO_ANSWER)
    if not isinstance(pred, str):
        raise TypeError(f"grade needs the predicted answer as a str or None, got {type(pred).__name__}.")
    if not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}.")
    try:
        return _grade(gold, pred, float(timeout))
    except _Refused as exc:
        return Verdict(False, exc.reason)
    except RecursionError:
        return Verdict(False, f"{TOO_DEEP}: recursion limit")
    except MemoryError:
        return Verdict(False, f"{TOO_COMPLEX}: out of memory")
    except Exception as exc:  # the contract: adversarial strings never raise
        return Verdict(False, f"{UNPARSEABLE}: internal error {type(exc).__name__}: {str(exc)[:200]}")


_DECIMAL_COMMA_RE = re.compile(r"-?\d+,\d+")


def _grade(gold: str, pred: str, timeout: float) -> Verdict:
    for side, text in (("gold", gold), ("pred", pred)):
        if len(text) > MAX_ANSWER_CHARS:
            return Verdict(False, f"{TOO_LONG}: {side} has {len(text)} characters (limit {MAX_ANSWER_CHARS})")
    deadline = time.monotonic() + timeout
    g_norm, p_norm = _normalize(gold), _normalize(pred)
    if not g_norm:
        return Verdict(False, f"{EMPTY}: gold")
    if not p_norm:
        return Verdict(False, EMPTY)
    verdict = _grade_normalized(g_norm, p_norm, (deadline, timeout))
    if verdict.equivalent or verdict.reason.startswith((TIMEOUT, UNAVAILABLE)):
        return verdict
    # The decimal comma (1,5 = 1.5): a lone "digits,digits" against an answer without a comma.
    g_strip, p_strip = g_norm.strip(), p_norm.strip()
    if _DECIMAL_COMMA_RE.fullmatch(g_strip) and "," not in p_strip:
        retry = _grade_normalized(g_strip.replace(",", "."), p_norm, (deadline, timeout))
    elif _DECIMAL_COMMA_RE.fullmatch(p_strip) and "," not in g_strip:
        retry = _grade_normalized(g_norm, p_strip.replace(",", "."), (deadline, timeout))
    else:
        return verdict
    return retry if retry.equivalent else verdict


def _grade_normalized(g_norm: str, p_norm: str, budget: tuple[float, float]) -> Verdict:
    g_flat, p_flat = _squash(g_norm), _squash(p_norm)
    if g_flat == p_flat:
        return Verdict(True, EXACT)
    if _PLAIN_NUMBER_RE.fullmatch(g_flat) and _PLAIN_NUMBER_RE.fullmatch(p_flat):
        return _plain_numbers(g_flat, p_flat)
    if g_flat.isascii() and g_flat.isalpha() and len(g_flat) > 1 and g_flat.lower() not in _KNOWN_WORDS:
        return _text_verdict(g_flat, p_flat)
    try:
        g_raw = _parse(g_norm)
    except _Syntax:
        return _text_verdict(g_flat, p_flat)
    except _Refused as exc:
        return Verdict(False, f"{exc.reason}: gold")
    try:
        p_raw = _parse(p_norm)
    except _Syntax as exc:
        return Verdict(False, f"{UNPARSEABLE}: {exc}")
    p_raw = _align_labels(g_raw, p_raw)
    g_tree, p_tree = _prepare(g_raw), _prepare(p_raw)
    verdict = _decide(g_tree, p_tree, budget)
    if verdict.equivalent or verdict.reason.startswith((TIMEOUT, UNAVAILABLE)):
        return verdict
    # An equation against an equivalent one written as an assignment: 2x+4y-3=0 vs y=-x/2+3/4.
    if g_tree[0] == "rel" and p_raw[0] == "rel" and p_tree is not p_raw:
        retry = _decide(g_tree, p_raw, budget)
    elif p_tree[0] == "rel" and g_raw[0] == "rel" and g_tree is not g_raw:
        retry = _decide(g_raw, p_tree, budget)
    else:
        return verdict
    return retry if retry.equivalent or retry.reason.startswith((TIMEOUT, UNAVAILABLE)) else verdict


_PLAIN_NUMBER_RE = re.compile(r"-?(?:\d{1,300}(?:\.\d{0,300})?|\.\d{1,300})")


def _plain_numbers(g_flat: str, p_flat: str) -> Verdict:
    """Two decimal literals (the commonest answers), decided without the parser.

    The same rules as the general path: integer gold needs the exact value, otherwise a decimal
    gold allows the relative tolerance.
    """
    g_value, p_value = Fraction(g_flat), Fraction(p_flat)
    if g_value == p_value:
        return Verdict(True, NUMERIC)
    if "." in g_flat:
        a, b = float(g_value), float(p_value)
        if abs(a - b) <= REL_TOL * max(abs(a), abs(b)):
            return Verdict(True, TOLERANCE)
    return Verdict(False, NOT_EQUIVALENT)


def _decide(g_tree: tuple[Any, ...], p_tree: tuple[Any, ...], budget: tuple[float, float]) -> Verdict:
    """Compare two prepared trees: the fast path, then one batch of sympy jobs for what is left.

    ``budget`` is (deadline on ``time.monotonic()``, the caller's timeout in seconds).
    """
    deadline, timeout = budget
    cmp = _Comparison()
    if _compare(g_tree, p_tree, cmp):
        return Verdict(True, cmp.reason())
    if not cmp.pending:
        return Verdict(False, NOT_EQUIVALENT)
    if len(cmp.pending) > MAX_SYMBOLIC_JOBS:
        return Verdict(False, f"{TOO_COMPLEX}: {len(cmp.pending)} symbolic comparisons (limit {MAX_SYMBOLIC_JOBS})")
    keys = list(cmp.pending)
    nodes: list[Any] = []
    index: dict[int, int] = {}

    def ref(node: tuple[Any, ...]) -> int:
        if id(node) not in index:
            index[id(node)] = len(nodes)
            nodes.append(node)
        return index[id(node)]

    jobs = [[kind, ref(a), ref(b), tolerant] for kind, a, b, tolerant in cmp.pending.values()]
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return Verdict(False, f"{TIMEOUT}: symbolic comparison took more than {timeout:g} s")
    try:
        answers = _run_symbolic({"nodes": nodes, "jobs": jobs}, remaining)
    except _Timeout:
        return Verdict(False, f"{TIMEOUT}: symbolic comparison took more than {timeout:g} s")
    except _Unavailable as exc:
        return Verdict(False, f"{UNAVAILABLE}: {exc}")
    cmp.results = {key: answer is True for key, answer in zip(keys, answers, strict=False)}
    cmp.pending = {}
    if _compare(g_tree, p_tree, cmp):
        return Verdict(True, cmp.reason())
    return Verdict(False, NOT_EQUIVALENT)


def _text_verdict(g_flat: str, p_flat: str) -> Verdict:
    if g_flat.casefold() == p_flat.casefold():
        return Verdict(True, EXACT_TEXT)
    return Verdict(False, f"{NOT_EQUIVALENT}: gold is text, compared as text")
