"""Limits, verdict reasons, :class:`Verdict` and the vocabulary every stage shares."""

from __future__ import annotations

import os
from dataclasses import dataclass

MAX_COMPLETION_CHARS = 200_000
""":func:`extract_answer` only reads the last this many characters of a completion."""
MAX_ANSWER_CHARS = 1_000
"""Longer gold or predicted answers are refused (``"input too long"``)."""
MAX_DEPTH = 50
"""Maximum nesting (brackets, fraction and root arguments, signs, exponents, factorials)."""
MAX_NUMBER_DIGITS = 300
"""Maximum digits in one number literal (and maximum scientific-notation exponent)."""
MAX_RESULT_BITS = 20_000
"""Maximum size (bits of numerator or denominator) of any exact intermediate value (~6,000 digits)."""
MAX_FACTORIAL = 1_000
"""Largest integer whose factorial (or binomial top) is computed."""
MAX_SYMBOLIC_EXPONENT = 10_000
"""Largest integer exponent on a non-numeric base (``x^{10000}``)."""
MAX_ITEMS = 64
"""Maximum elements in one tuple, set, list or union."""
MAX_POLY_TERMS = 256
"""The fast path hands polynomials with more terms than this to sympy."""
MAX_POLY_POWER = 64
"""The fast path expands a sum raised to at most this power; larger ones go to sympy."""
MAX_SYMBOLIC_JOBS = 64
"""Maximum sympy comparisons for one :func:`grade` call."""
REL_TOL = 1e-6
"""Relative tolerance used when either side contains a decimal literal."""
WORKER_START_TIMEOUT = 60.0
"""Seconds a new symbolic worker may take to start (import sympy) before it is given up."""
WORKER_MEMORY_BYTES = 2 * 1024**3
"""Address-space limit of a symbolic worker."""
MAX_WORKERS = max(2, os.cpu_count() or 2)
"""Most symbolic worker processes alive at once (one per concurrent symbolic comparison)."""
_MAX_IDLE_WORKERS = 4

# Reasons (Verdict.reason starts with one of these).
EXACT = "exact"
EXACT_TEXT = "exact text"
NUMERIC = "numeric"
TOLERANCE = "numeric (within 1e-6)"
ALGEBRAIC = "algebraic"
SYMBOLIC = "symbolic"
NOT_EQUIVALENT = "not equivalent"
NO_ANSWER = "no answer"
EMPTY = "empty answer"
TOO_LONG = "input too long"
UNPARSEABLE = "unparseable"
TOO_DEEP = "nesting too deep"
NUMBER_TOO_LONG = "number too long"
NUMBER_TOO_LARGE = "number too large"
EXPONENT_TOO_LARGE = "exponent too large"
FACTORIAL_TOO_LARGE = "factorial too large"
TOO_MANY_ITEMS = "too many items"
TOO_COMPLEX = "too complex"
UNDEFINED = "undefined"
TIMEOUT = "timeout"
UNAVAILABLE = "symbolic check unavailable"


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`grade`.

    Attributes:
        equivalent: Whether the predicted answer equals the gold one.
        reason: How that was decided or why it failed; starts with one of the reasons listed in
            the module docstring (``"exact"``, ``"numeric"``, ``"symbolic"``, ``"timeout"``, ...),
            optionally followed by ``": "`` and details.
    """

    equivalent: bool
    reason: str


class _Syntax(Exception):
    """The answer is outside the supported grammar."""


class _Refused(Exception):
    """The answer exceeds a safety limit; ``reason`` is the Verdict reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_FUNCS = frozenset("sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln exp sqrt".split())  # noqa: SIM905
_INF_WORDS = frozenset({"inf", "infty", "infinity", "oo"})
_KNOWN_WORDS = _FUNCS | _INF_WORDS | {"pi"}
