r"""Math answer grading: find a completion's final answer and decide whether it equals the gold one.

Model output is adversarial input, so everything here is bounded: no ``eval``/``exec``, no
``sympy.sympify`` on raw text, linear-time extraction, explicit limits on length, nesting, digits,
exponents and factorials, and every sympy call runs in a worker subprocess that is killed
(``SIGKILL``) when it overruns its time budget. Pathological strings get ``Verdict(False, reason)``;
:func:`grade` never raises on string input and never hangs.

Public API:
    * :func:`extract_answer` pulls the final answer out of a completion.
    * :func:`grade` compares a gold answer with a predicted one and says why (:class:`Verdict`);
      :func:`is_equivalent` is its boolean form.
    * :func:`close_workers` stops the symbolic worker processes (they restart on demand).

Example:
    >>> extract_answer(r"so the total is $\boxed{\frac{3}{4}}$.")
    '\\frac{3}{4}'
    >>> grade("0.75", r"\frac{3}{4}")
    Verdict(equivalent=True, reason='numeric')
    >>> grade("1000", r"\$1,000")
    Verdict(equivalent=True, reason='exact')
    >>> grade("2x+1", "1 + 2*x").reason
    'algebraic'
    >>> is_equivalent("(1, 2)", "(2, 1)")
    False

How a comparison runs:
    1. **Normalize** both answers (pure string rewriting, linear time): unicode cleanup, ``\boxed``
       unwrapping, ``$``/``\$``/``\(``/``\[`` delimiters, ``\left``/``\right``, spacing commands,
       ``\dfrac``/``\tfrac`` → ``\frac``, ``\cdot``/``\times`` → ``*``, degrees, percent signs,
       ``\text{}``/``\mathrm{}`` wrappers, trailing units, thousands separators, trailing period.
    2. **Exact path**: equal normalized strings (spaces ignored) → ``"exact"``.
    3. **Parse** both with a small recursive-descent parser (no eval) into a tree of numbers,
       symbols, ``+ - * / ^ !``, ``\frac``, ``\sqrt``, functions, tuples, intervals, sets and
       relations, refusing input beyond the limits below.
    4. **Fast path** (in process, no sympy, no IPC): every scalar is put in a canonical form, a
       polynomial with rational coefficients (:class:`fractions.Fraction`) over the variables,
       ``π`` and square roots of square-free integers. These are algebraically independent, so the
       form is unique and equality is decided exactly: plain numbers (``"numeric"``), and radicals,
       ``π`` and polynomials such as ``2\sqrt{3}`` vs ``\sqrt{12}`` or ``2x+1`` vs ``1+2x``
       (``"algebraic"``). Most answers end here.
    5. **Symbolic path**: what the canonical form cannot hold (division by a sum, trigonometry,
       logarithms, roots of sums, symbolic exponents, ...) is sent to a persistent worker
       subprocess that builds sympy objects from the parsed tree (never from text) and tests
       ``simplify(a - b) == 0`` / ``(a - b).equals(0)`` (``"symbolic"``). The whole batch for one
       :func:`grade` call has ``timeout`` seconds; past that the worker is killed and restarted and
       the verdict is ``Verdict(False, "timeout: ...")``. Starting a worker (importing sympy, about
       a second, once per process or after a kill) is not counted in ``timeout``.

Conventions (gold always first; the reference graders are Math-Verify ``verify``, hendrycks MATH
``is_equiv`` and PRM800K ``grade_answer``):
    * **Not symmetric.** ``grade(gold, pred)``: the integer-gold rule and the set rule look at gold.
    * **Unreduced fractions** equal their value: ``2/4`` == ``1/2``. PRM800K rejects them (it
      compares ``a/b`` strings); we grade the value, like Math-Verify, because a reward for
      mathematical correctness should not depend on presentation. A task that wants reduced form
      must check it separately.
    * **Percent**: ``28\%`` == ``28`` and ``28\%`` != ``0.28`` (Math-Verify's tests; hendrycks and
      PRM800K also just delete ``%``). ``percent``/``pct`` words are units and are dropped too.
    * **Decimals**: exact comparison unless either side contains a decimal literal (``0.5``,
      ``1.5e3``); then values within a relative tolerance of ``1e-6`` are equal
      (``|a - b| <= 1e-6 * max(|a|, |b|)``), the relative analogue of Math-Verify's rounding to 6
      places. ``1/3`` vs ``0.333333`` is equal; ``1/3`` vs ``0.333`` is not.
    * **Integer gold** (an integer literal such as ``5`` or ``-1,000``): the answer must be exactly
      that integer, no tolerance: ``5`` vs ``5.0000001`` is not equivalent (PRM800K's rule).
    * **Thousands separators**: ``1,000``, ``1{,}000``, ``1\,000`` and ``1 000`` are one thousand. A
      comma followed by exactly three digits is a separator, so ``(1,000)`` is a number, not a
      pair. The decimal comma (``1,5``, which Math-Verify reads as 1.5) is *not* supported: it
      reads as the list ``1, 5``.
    * **Mixed numbers**: ``7 3/4`` (PRM800K, Math-Verify) and ``7\frac{3}{4}`` are 31/4; an integer
      followed by a fraction of two integer literals is a mixed number, anything else multiplies.
    * **Scientific notation**: ``1.5e3``, ``1.5E+3``, ``1.5 \times 10^{3}`` are 1500. A digit
      followed by ``e`` and digits is always scientific notation.
    * **LaTeX**: ``\frac12`` follows LaTeX's one-character argument rule (1/2); ``\sqrt3`` is √3;
      ``\sqrt[n]{x}``; ``x^23`` reads the whole number as the exponent (plain-text habit);
      ``\pi`` is π, ``e`` is Euler's number and ``i`` the imaginary unit, so
      ``(1+i)^2`` == ``2i`` and ``\sqrt{-4}`` == ``2i``; ``x_i`` is a plain subscripted symbol.
      A function without parentheses takes the implicit product that follows, up to the next
      function: ``\sin 2x`` is sin(2x), ``\sin x \cos x`` is sin(x)·cos(x); ``\sin^2 x`` is
      (sin x)², but ``\sin^{-1} x`` (also ``\cos``, ``\tan``) is arcsin x.
    * **Implicit multiplication**: ``2x``, ``2(x+1)``, ``x y``; a run of up to three letters is a
      product of single-letter symbols (``xyz``); a longer word is text. Two adjacent numbers
      (``12 13``) are not multiplied: the answer is unparseable.
    * **Text answers**: a gold answer that is a single word (``Evelyn``, ``yes``) or that does not
      parse is compared as text, case-insensitively and ignoring spaces. Matrices and other
      unsupported notation fall back to this text comparison. Number words (``five``) are text.
    * **Plus-minus**: ``a \pm b`` is the set ``\{a + b, a - b\}`` (so it matches a set gold or the
      gold ``a \pm b``, not a plain list gold, see Containers).
    * **Equations**: when either side is ``symbol = value`` (or ``(x, y) = (1, 2)``, or
      ``x \in [1, 2]``), only the value is compared (Math-Verify; hendrycks strips ``k =`` when the
      left side has at most two characters). A chain ``a = b = c`` keeps the last value, and
      ``\approx`` keeps the exact value before it. Other equations and inequalities are compared as
      ``lhs - rhs`` up to a nonzero constant factor (positive for inequalities), so ``x < 1`` ==
      ``1 > x`` == ``2x < 2``.
    * **Containers**: tuples ``(1, 2)`` are ordered; intervals keep their bracket types
      (``[1, 3)`` != ``(1, 3)``; an open interval and a pair are the same thing); unions of
      intervals are unordered; sets ``\{1, 2\}`` (or ``{1, 2}``) are unordered with set semantics.
      A plain list ``1, 2`` is an ordered tuple, except against a set gold, where it is unordered.
      A plain list matches a parenthesized gold tuple in the same order; a set never equals a tuple
      or a list gold (Math-Verify strict mode).
    * **Units** are dropped after a number: a trailing ``\text{...}``/``\mathrm{...}`` word, known
      unit words (``cm``, ``kg``, ``mph``, ...), and any word of three or more letters after a
      space (``18 apples``). Degrees (``^\circ``, ``°``) and currency signs are dropped.
    * **Infinity** ``\infty`` is a symbol that only equals itself (used in intervals).

Reasons (``Verdict.reason`` starts with one of these; details may follow a colon):
    ``exact``, ``numeric``, ``numeric (within 1e-6)``, ``algebraic``, ``symbolic``, ``exact text``
    (equivalent); ``not equivalent``, ``no answer``, ``empty answer``, ``input too long``,
    ``unparseable``, ``nesting too deep``, ``number too long``, ``number too large``, ``exponent too
    large``, ``factorial too large``, ``too many items``, ``too complex``, ``undefined``,
    ``timeout``, ``symbolic check unavailable`` (not equivalent). A problem with the gold answer is
    reported as e.g. ``exponent too large: gold``.

Processes: the symbolic worker is a plain ``python -c ...`` subprocess talking JSON lines over
pipes (not ``multiprocessing``, so user scripts need no ``__main__`` guard), with a 2 GiB address
space limit. It is safe to call :func:`grade` from any thread; concurrent symbolic checks use
separate workers (at most :data:`MAX_WORKERS`; waiting for one, like starting one, is not
charged to ``timeout``). Importing this module does not import sympy.
"""

from __future__ import annotations

import atexit
import itertools
import json
import math
import os
import re
import sys
import threading
import time
import unicodedata
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

__all__ = [
    "MAX_ANSWER_CHARS",
    "MAX_COMPLETION_CHARS",
    "MAX_DEPTH",
    "MAX_FACTORIAL",
    "MAX_NUMBER_DIGITS",
    "MAX_RESULT_BITS",
    "REL_TOL",
    "Verdict",
    "close_workers",
    "extract_answer",
    "grade",
    "is_equivalent",
]

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


# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BRACE_RE = re.compile(r"\\.|[{}]", re.S)
_HEADING_RE = re.compile(r"[A-Za-z]{2}")
# Linear: a failed match backtracks only through the run after one "answer", and runs are disjoint.
_PHRASE_RE = re.compile(r"\banswer\b[ \t*]*(?:is\b[\s*:]*|:[\s*]*)", re.I)
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)")
_LAST_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def extract_answer(text: str, *, fallback_last_number: bool = False) -> str | None:
    r"""Find the final answer in a model completion.

    Conventions, in priority order (the first that finds something wins):

    1. the last complete ``\boxed{...}`` or ``\fbox{...}`` (balanced braces, nesting allowed;
       ``\boxed 5`` too); an unclosed last box is skipped for the previous complete one;
    2. the last ``#### X`` line (GSM8K), skipping markdown headings (``#### Step 2``: the text
       after ``####`` starts with a word of two or more letters);
    3. the last "answer is X" / "answer: X" phrase (case-insensitive, so "The final answer is",
       "**Answer:**"): X is the ``$...$``, ``$$...$$``, ``\(...\)`` or ``\[...\]`` span that
       follows, else the rest of the line up to the end of the sentence;
    4. only with ``fallback_last_number=True``: the last number in the text (a heuristic that
       rewards any completion that happens to end with the right number, hence off by default).

    Surrounding whitespace, a trailing period, ``**`` and ``$`` wrappers are stripped. Only the
    last :data:`MAX_COMPLETION_CHARS` characters are read; every step is linear in the length.

    Args:
        text: The completion.
        fallback_last_number: Use convention 4 when 1-3 find nothing.

    Returns:
        The answer text (still LaTeX, not normalized), or ``None`` when there is none.

    Raises:
        TypeError: If ``text`` is not a string.

    Example:
        >>> extract_answer(r"Thus $x = \boxed{\frac{1}{\sqrt{2}}}$.")
        '\\frac{1}{\\sqrt{2}}'
        >>> extract_answer("48 / 2 = 24\n#### 24")
        '24'
        >>> extract_answer("Final Answer: The final answer is $28\\%$. I hope it is correct.")
        '28\\%'
        >>> extract_answer("I think it is 12.") is None
        True
        >>> extract_answer("I think it is 12.", fallback_last_number=True)
        '12'
    """
    if not isinstance(text, str):
        raise TypeError(f"extract_answer needs the completion as a str, got {type(text).__name__}.")
    if len(text) > MAX_COMPLETION_CHARS:
        text = text[-MAX_COMPLETION_CHARS:]
    for finder in (_last_boxed, _last_hashes, _last_phrase):
        found = finder(text)
        if found:
            return found
    if fallback_last_number:
        last = None
        for match in _LAST_NUMBER_RE.finditer(text):
            last = match
        if last is not None:
            return last.group()
    return None


def _last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{}``/``\\fbox{}`` (or ``\\boxed X``), else None."""
    starts = list(_BOXED_RE.finditer(text))
    if not starts:
        return None
    # Match braces once, from the first box on (a brace's match depends only on what follows it).
    match: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_RE.finditer(text, starts[0].start()):
        tok = m.group()
        if tok == "{":
            stack.append(m.start())
        elif tok == "}" and stack:
            match[stack.pop()] = m.start()
    n = len(text)
    for m in reversed(starts):
        j = m.end()
        while j < n and text[j] in " \t":
            j += 1
        if j < n and text[j] == "{":
            k = match.get(j)
            if k is not None and text[j + 1 : k].strip():
                return text[j + 1 : k].strip()
        elif j > m.end():  # "\boxed 5": the next token
            k = j
            while k < n and not text[k].isspace() and text[k] != "$":
                k += 1
            if k > j and not _BOXED_RE.match(text, j):
                return _clean_tail(text[j:k]) or None
    return None


def _last_hashes(text: str) -> str | None:
    """The text after the last GSM8K ``####`` marker that is not a markdown heading."""
    if "####" not in text:
        return None
    for line in reversed(text.split("\n")):
        i = line.rfind("####")
        if i < 0:
            continue
        content = line[i:].lstrip("#").strip().strip("*").strip()
        if not content or _HEADING_RE.match(content):
            continue
        content = _clean_tail(content)
        if content:
            return content
    return None


def _last_phrase(text: str) -> str | None:
    """The answer after the last "answer is" / "answer:" phrase."""
    matches = list(_PHRASE_RE.finditer(text))
    for m in reversed(matches[-8:]):
        value = _phrase_value(text, m.end())
        if value:
            return value
    return None


def _phrase_value(text: str, start: int) -> str | None:
    s = text[start : start + 4 * MAX_ANSWER_CHARS].lstrip()
    for opener, closer in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(opener):
            end = s.find(closer, len(opener))
            if end >= 0:
                return s[len(opener) : end].strip() or None
            s = s[len(opener) :]
            break
    line = s.split("\n", 1)[0]
    m = _SENTENCE_END_RE.search(line)
    if m:
        line = line[: m.start()]
    return _clean_tail(line) or None


def _clean_tail(s: str) -> str:
    s = s.strip().strip("*").strip().rstrip(".").strip()
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$":
        s = s.strip("$").strip()
    return s


# ---------------------------------------------------------------------------------------------
# Normalization (linear-time string rewriting)
# ---------------------------------------------------------------------------------------------

_UNICODE = str.maketrans(
    {
        "\u2212": "-",  # minus sign
        "\u2013": "-",  # en dash
        "\u00d7": "*",
        "\u22c5": "*",
        "\u00b7": "*",
        "\u2217": "*",
        "\u00f7": "/",
        "\u2044": "/",
        "\u2215": "/",
        "\u03c0": "\\pi ",
        "\u221e": "\\infty ",
        "\u221a": "\\sqrt ",
        "\u2264": "<=",
        "\u2265": ">=",
        "\u2260": "!=",
        "\u2248": "\\approx ",
        "\u222a": "\\cup ",
        "\u2208": "\\in ",
        "\u00b2": "^2",
        "\u00b3": "^3",
        "\u00b0": " ",  # degree sign
        "\u00bd": " 1/2",
        "\u00bc": " 1/4",
        "\u00be": " 3/4",
        "\u2153": " 1/3",
        "\u2154": " 2/3",
        "\u20ac": " ",  # currency signs
        "\u00a3": " ",
        "\u00a5": " ",
        "\u20b9": " ",
    }
)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_CMD_RE = re.compile(r"\\(?:([A-Za-z]+)|(.))", re.S)
_CMD_MAP = {
    "dfrac": "\\frac",
    "tfrac": "\\frac",
    "cfrac": "\\frac",
    "dbinom": "\\binom",
    "tbinom": "\\binom",
    "displaystyle": " ",
    "textstyle": " ",
    "left": "",
    "right": "",
    "bigl": "",
    "bigr": "",
    "Bigl": "",
    "Bigr": "",
    "big": "",
    "Big": "",
    "bigg": "",
    "Bigg": "",
    "circ": " ",
    "degree": " ",
    "quad": " ",
    "qquad": " ",
    "cdot": "*",
    "times": "*",
    "ast": "*",
    "div": "/",
    "le": "<=",
    "leq": "<=",
    "leqslant": "<=",
    "ge": ">=",
    "geq": ">=",
    "geqslant": ">=",
    "ne": "!=",
    "neq": "!=",
    "lt": "<",
    "gt": ">",
    "lbrace": "\\{",
    "rbrace": "\\}",
    "langle": "(",
    "rangle": ")",
    "vert": "|",
    "lvert": "|",
    "rvert": "|",
    "emptyset": "\\{\\}",
    "varnothing": "\\{\\}",
}
_ESCAPE_MAP = {
    "!": "",
    ",": " ",
    ";": " ",
    ":": " ",
    " ": " ",
    "%": " ",
    "$": " ",
    "(": " ",
    ")": " ",
    "[": " ",
    "]": " ",
    "|": "|",
    "&": " ",
    "\n": " ",
}
_PRE_REPLACE = (
    ("\\left.", ""),
    ("\\right.", ""),
    ("^{\\circ}", " "),
    ("^\\circ", " "),
    ("^{\\degree}", " "),
    ("^\\degree", " "),
    ("{,}", ","),
)
_TEXT_CMD_RE = re.compile(
    r"\\(text|textbf|textit|textrm|textsf|texttt|textnormal|mathrm|mathbf|mathit|mathsf|mathtt|"
    r"mathnormal|operatorname|mbox|hbox)\s*\{"
)
_UNIT_TEXT_CMDS = frozenset({"text", "textrm", "textnormal", "mathrm", "mbox", "hbox"})
_UNIT_TAIL_RE = re.compile(r"(?:\^\{?[23]\}?)?\.?")
_LETTERS_RE = re.compile(r"[A-Za-z][A-Za-z ]*")
_WORD_OPS_RE = re.compile(r"(?<!\s)\s+(?:and|or)\s+")  # starts only where a run of spaces starts
_THOUSANDS_COMMA_RE = re.compile(r"(?<![\d.])\d{1,3}(?:,\d{3})+(?!\d)")
_THOUSANDS_SPACE_RE = re.compile(r"(?<![\d.])\d{1,3}(?: \d{3})+(?![\d./])")
_UNIT_WORDS = frozenset(
    "cm mm km m2 kg mg ml ft in yd mi hr hrs min mins sec secs lb lbs oz mph kph kmh sq cu deg pct "  # noqa: SIM905 (a word list)
    "km/h km/hr m/s ft/s mi/h cm/s m/min".split()
)
_TRAILING_POWER_RE = re.compile(r"(?:\^\{?[23]\}?)$")
_NUMERIC_TAIL = frozenset("0123456789})]")


def _normalize(s: str) -> str:
    """Rewrite an answer into the canonical text the parser reads (see the module docstring)."""
    if not s.isascii():
        s = s.translate(_UNICODE)
        s = unicodedata.normalize("NFKC", s)
        s = "".join(" " if unicodedata.category(c)[0] == "C" and c not in "\t\n\r" else c for c in s)
    s = _CONTROL_RE.sub(" ", s)
    if "\\boxed" in s or "\\fbox" in s:
        boxed = _last_boxed(s)
        if boxed is not None:
            s = boxed
    for old, new in _PRE_REPLACE:
        if old in s:
            s = s.replace(old, new)
    if "\\" in s:
        s = _CMD_RE.sub(_replace_command, s)
    s = s.replace("$", " ")
    if "\\" in s:
        s = _unwrap_text(s)
    s = s.replace("%", " ")
    s = _WORD_OPS_RE.sub(", ", s)
    if "," in s:
        s = _THOUSANDS_COMMA_RE.sub(lambda m: m.group().replace(",", ""), s)
    if " " in s:
        s = _THOUSANDS_SPACE_RE.sub(lambda m: m.group().replace(" ", ""), s)
    s = _strip_units(s)
    s = s.strip()
    while s and s[-1] in ".^":
        s = s[:-1].rstrip()
    return s


def _replace_command(m: re.Match[str]) -> str:
    name = m.group(1)
    if name is not None:
        return _CMD_MAP.get(name, m.group())
    return _ESCAPE_MAP.get(m.group(2), m.group())


def _match_brace(s: str, open_at: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``open_at`` (escaped braces ignored), or -1."""
    depth = 0
    i, n = open_at, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _unwrap_text(s: str) -> str:
    r"""Replace ``\text{...}``-like wrappers by their content; drop a trailing unit wrapper."""
    pos = 0
    for _ in range(len(s)):  # every round removes characters, so this bound is never reached
        m = _TEXT_CMD_RE.search(s, pos)
        if m is None:
            break
        close = _match_brace(s, m.end() - 1)
        if close < 0:
            s = s[: m.start()] + " " + s[m.end() :]
            continue
        content = s[m.end() : close]
        head, tail = s[: m.start()], s[close + 1 :]
        unit = (
            m.group(1) in _UNIT_TEXT_CMDS
            and _LETTERS_RE.fullmatch(content.strip()) is not None
            and content.strip() not in ("e", "i")
            and _UNIT_TAIL_RE.fullmatch(tail.strip()) is not None
            and any(c.isdigit() for c in head)
        )
        s = head + " " if unit else head + " " + content + " " + tail  # a unit takes its ^2 along
        pos = m.start()
    return s


def _strip_units(s: str) -> str:
    """Drop up to four unit words after a number (``5 cm``, ``3 square feet``, ``5cm``)."""
    t = s.rstrip().rstrip(".").rstrip()
    for _ in range(4):
        u = _TRAILING_POWER_RE.sub("", t).rstrip()
        j = len(u)
        while j > 0 and (u[j - 1].isascii() and u[j - 1].isalpha() or (u[j - 1] == "/" and j > 1)):
            j -= 1
        word = u[j:].lower()
        if len(word) < 2 or word in _KNOWN_WORDS or u[j - 1 : j] == "\\" or word[0] == "/":
            break
        if not (word in _UNIT_WORDS or ("/" not in word and len(word) >= 3 and u[j - 1 : j].isspace())):
            break
        t = u[:j].rstrip()
        if t[-1:] and t[-1] in _NUMERIC_TAIL:
            return t if any(c.isdigit() for c in t) else s
    return s


def _squash(s: str) -> str:
    """Remove whitespace, except one space between digits (``1 0`` is not ``10``)."""
    parts = s.split()
    out = parts[:1]
    for part in parts[1:]:
        if out[-1][-1].isdigit() and part[0].isdigit():
            out.append(" ")
        out.append(part)
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Parsing (recursive descent, bounded) into a tree of tuples
# ---------------------------------------------------------------------------------------------
#
# Scalars:  ("num", numerator, denominator, is_decimal)  ("sym", name)  ("inf",)
#           ("add", terms)  ("neg", x)  ("mul", factors)  ("inv", x)  ("pow", base, exp)
#           ("root", x, index | None)  ("fact", x)  ("binom", n, k)  ("func", name, x)
#           ("log", x, base | None)  ("abs", x)
# Containers: ("tuple", open, close, items)  ("set", items)  ("list", items)  ("union", items)
#           ("rel", ops, operands)


class _Syntax(Exception):
    """The answer is outside the supported grammar."""


class _Refused(Exception):
    """The answer exceeds a safety limit; ``reason`` is the Verdict reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_TOKEN_RE = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<word>[A-Za-z]+)"
    r"|(?P<cmd>\\(?:[A-Za-z]+|.))"
    r"|(?P<op><=|>=|!=|\*\*|[-+*/^_!()\[\]{},=<>|])",
    re.S,
)
_CONTAINERS = frozenset({"tuple", "set", "list", "union", "rel"})
_FUNCS = frozenset("sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln exp sqrt".split())  # noqa: SIM905
_GREEK = frozenset(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi rho sigma "  # noqa: SIM905 (a word list)
    "tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega".split()
)
_INF_WORDS = frozenset({"inf", "infty", "infinity", "oo"})
_INVERSE_TRIG = {"sin": "arcsin", "cos": "arccos", "tan": "arctan"}
_KNOWN_WORDS = _FUNCS | _INF_WORDS | {"pi"}
_MAX_LETTER_RUN = 3
_RELOPS = {"=": "=", "<": "<", ">": ">", "<=": "<=", ">=": ">=", "!=": "!="}
_RELCMDS = {"\\approx": "~", "\\in": "in"}
_PI = ("sym", "\\pi")
_INF = ("inf",)

# Token: (kind, text, space_before); space_before is None for the rest of a token whose first
# character was taken as a one-character LaTeX argument (\frac12), which may multiply implicitly.
_Token = tuple[str, str, "bool | None"]


def _tokenize(s: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos, n, space = 0, len(s), False
    while pos < n:
        m = _TOKEN_RE.match(s, pos)
        if m is None:
            raise _Syntax(f"unexpected character {s[pos]!r} at {pos}")
        kind = m.lastgroup or ""
        text = m.group()
        pos = m.end()
        if kind == "ws":
            space = "\n" not in text  # a line break never joins a mixed number
            continue
        if kind == "num":
            mantissa, _, exponent = text.lower().partition("e")
            if sum(c.isdigit() for c in mantissa) > MAX_NUMBER_DIGITS:
                raise _Refused(f"{NUMBER_TOO_LONG}: more than {MAX_NUMBER_DIGITS} digits")
            if exponent and abs(int(exponent[:8])) > MAX_NUMBER_DIGITS:
                raise _Refused(f"{EXPONENT_TOO_LARGE}: scientific exponent {exponent[:20]}")
        elif kind == "word" and len(text) > _MAX_LETTER_RUN and text not in _KNOWN_WORDS:
            raise _Syntax(f"word {text[:40]!r} is not mathematics")
        tokens.append((kind, text, space))
        space = False
    tokens.append(("end", "", space))
    return tokens


def _number_node(text: str) -> tuple[Any, ...]:
    mantissa, _, exponent = text.lower().partition("e")
    if "." in mantissa:
        whole, frac = mantissa.split(".")
        q = Fraction(int(whole or "0") * 10 ** len(frac) + int(frac or "0"), 10 ** len(frac))
    else:
        q = Fraction(int(mantissa))
    if exponent:
        q *= Fraction(10) ** int(exponent)
    return ("num", q.numerator, q.denominator, "." in mantissa or bool(exponent))


def _scalar(node: tuple[Any, ...]) -> tuple[Any, ...]:
    if node[0] in _CONTAINERS:
        kind = {"rel": "a relation", "set": "a set", "union": "a union"}.get(node[0], "a tuple")
        raise _Syntax(f"arithmetic on {kind}")
    return node


class _Parser:
    """Recursive descent over the token list; every recursion goes through :meth:`_enter`."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.toks = tokens
        self.i = 0
        self.depth = 0

    # -- helpers ------------------------------------------------------------------------------
    def peek(self) -> _Token:
        return self.toks[self.i]

    def advance(self) -> _Token:
        tok = self.toks[self.i]
        if tok[0] != "end":
            self.i += 1
        return tok

    def at(self, kind: str, *texts: str) -> bool:
        tok = self.toks[self.i]
        return tok[0] == kind and (not texts or tok[1] in texts)

    def expect(self, kind: str, text: str) -> None:
        if not self.at(kind, text):
            got = self.peek()[1] or "end of input"
            raise _Syntax(f"expected {text!r}, got {got!r}")
        self.advance()

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refused(f"{TOO_DEEP}: more than {MAX_DEPTH} levels")

    # -- grammar ------------------------------------------------------------------------------
    def parse(self) -> tuple[Any, ...]:
        items = self.parse_items()
        if not self.at("end"):
            raise _Syntax(f"unexpected {self.peek()[1]!r}")
        return items[0] if len(items) == 1 else ("list", tuple(items))

    def parse_items(self) -> list[tuple[Any, ...]]:
        items = [self.parse_relation()]
        while self.at("op", ","):
            self.advance()
            items.append(self.parse_relation())
            if len(items) > MAX_ITEMS:
                raise _Refused(f"{TOO_MANY_ITEMS}: more than {MAX_ITEMS}")
        return items

    def parse_relation(self) -> tuple[Any, ...]:
        operands = [self.parse_union()]
        ops: list[str] = []
        while True:
            tok = self.peek()
            if tok[0] == "op" and tok[1] in _RELOPS:
                ops.append(_RELOPS[tok[1]])
            elif tok[0] == "cmd" and tok[1] in _RELCMDS:
                ops.append(_RELCMDS[tok[1]])
            else:
                break
            self.advance()
            operands.append(self.parse_union())
        return operands[0] if not ops else ("rel", tuple(ops), tuple(operands))

    def parse_union(self) -> tuple[Any, ...]:
        first = self.parse_sum()
        if not self.at("cmd", "\\cup"):
            return first
        items = [first]
        while self.at("cmd", "\\cup"):
            self.advance()
            items.append(self.parse_sum())
            if len(items) > MAX_ITEMS:
                raise _Refused(f"{TOO_MANY_ITEMS}: more than {MAX_ITEMS}")
        for item in items:
            if item[0] not in ("tuple", "set"):
                raise _Syntax("\\cup needs intervals or sets on both sides")
        return ("union", tuple(items))

    def parse_sum(self) -> tuple[Any, ...]:
        pm_at = None  # index of the term after \pm: a \pm b is the set {a + b, a - b}
        if self.at("cmd", "\\pm", "\\mp"):
            self.advance()
            pm_at = 0
        terms = [self.parse_term()]
        while True:
            if self.at("op", "+", "-"):
                op = self.advance()[1]
                term = _scalar(self.parse_term())
                terms.append(term if op == "+" else ("neg", term))
            elif pm_at is None and self.at("cmd", "\\pm", "\\mp"):
                self.advance()
                pm_at = len(terms)
                terms.append(_scalar(self.parse_term()))
            else:
                break
        if pm_at is None and len(terms) == 1:
            return terms[0]
        for term in terms:
            _scalar(term)
        if pm_at is None:
            return ("add", tuple(terms))
        minus = list(terms)
        minus[pm_at] = ("neg", terms[pm_at])
        return ("set", tuple(t[0] if len(t) == 1 else ("add", tuple(t)) for t in (terms, minus)))

    def parse_term(self) -> tuple[Any, ...]:
        factors = [self.parse_unary()]
        while True:
            tok = self.peek()
            if tok[0] == "op" and tok[1] in ("*", "/"):
                self.advance()
                factor = _scalar(self.parse_unary())
                factors.append(factor if tok[1] == "*" else ("inv", factor))
            elif self._implicit_factor_follows(tok):
                factors.append(_scalar(self.parse_power()))
            else:
                break
        if len(factors) == 1:
            return factors[0]
        _scalar(factors[0])
        return ("mul", tuple(factors))

    @staticmethod
    def _implicit_factor_follows(tok: _Token) -> bool:
        kind, text, space = tok
        if kind == "word":
            return True
        if kind == "num":
            return space is None  # only the rest of a split one-character argument (\frac123)
        if kind == "cmd":
            name = text[1:]
            return name in ("frac", "sqrt", "binom", "pi", "infty") or name in _FUNCS or name in _GREEK
        return kind == "op" and text in ("(", "{")

    def parse_unary(self) -> tuple[Any, ...]:
        if self.at("op", "-", "+"):
            sign = self.advance()[1]
            self._enter()
            operand = _scalar(self.parse_unary())
            self.depth -= 1
            return ("neg", operand) if sign == "-" else operand
        return self.parse_power()

    def parse_power(self) -> tuple[Any, ...]:
        base = self.parse_postfix()
        if self.at("op", "^", "**"):
            self.advance()
            self._enter()
            exponent = _scalar(self.parse_unary())
            self.depth -= 1
            return ("pow", _scalar(base), exponent)
        return base

    def parse_postfix(self) -> tuple[Any, ...]:
        node = self.parse_atom()
        entered = 0
        while self.at("op", "!"):
            self.advance()
            self._enter()
            entered += 1
            node = ("fact", _scalar(node))
        self.depth -= entered
        return node

    def parse_atom(self) -> tuple[Any, ...]:
        kind, text, space = self.peek()
        if kind == "num":
            self.advance()
            node = _number_node(text)
            if node[2] == 1 and not node[3]:
                mixed = self._mixed_number(node)
                if mixed is not None:
                    return mixed
            return node
        if kind == "word":
            return self._word()
        if kind == "cmd":
            return self._command(text[1:])
        if kind == "op":
            if text in ("(", "["):
                return self._bracketed()
            if text == "{":
                self.advance()
                return self._braced("}")
            if text == "|":
                self.advance()
                self._enter()
                inner = _scalar(self.parse_sum())
                self.expect("op", "|")
                self.depth -= 1
                return ("abs", inner)
        raise _Syntax(f"unexpected {text!r}" if text else "unexpected end of input")

    def _mixed_number(self, whole: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """``7 3/4`` or ``7\\frac{3}{4}`` right after the integer ``whole``, as whole + fraction."""
        t = self.toks
        i = self.i

        def int_lit(k: int, spaced: bool | None = False) -> bool:
            tok = t[k]
            return tok[0] == "num" and tok[1].isdigit() and (spaced is False or tok[2] is True)

        frac: tuple[int, int] | None = None
        if int_lit(i, spaced=True) and t[i + 1][:2] == ("op", "/") and int_lit(i + 2):
            if not (t[i + 3][0] == "op" and t[i + 3][1] in ("^", "!", "**")):
                frac, used = (int(t[i][1]), int(t[i + 2][1])), 3
        elif t[i][:2] == ("cmd", "\\frac"):
            if (
                t[i + 1][:2] == ("op", "{")
                and int_lit(i + 2)
                and t[i + 3][:2] == ("op", "}")
                and t[i + 4][:2] == ("op", "{")
                and int_lit(i + 5)
                and t[i + 6][:2] == ("op", "}")
            ):
                frac, used = (int(t[i + 2][1]), int(t[i + 5][1])), 7
            elif t[i + 1][0] == "num" and len(t[i + 1][1]) == 2 and t[i + 1][1].isdigit():
                frac, used = (int(t[i + 1][1][0]), int(t[i + 1][1][1])), 2
        if frac is None:
            return None
        self.i += used
        numerator = ("num", frac[0], 1, False)
        denominator = ("num", frac[1], 1, False)
        return ("add", (whole, ("mul", (numerator, ("inv", denominator)))))

    def _word(self) -> tuple[Any, ...]:
        kind, text, space = self.peek()
        if text in _FUNCS:
            self.advance()
            return self._function(text)
        if text == "pi":
            self.advance()
            return _PI
        if text in _INF_WORDS:
            self.advance()
            return _INF
        # A run of letters is a product of single-letter symbols: take the first one.
        self._take_first_char()
        name = text[0]
        if self.at("op", "_"):
            name += "_" + self._subscript()
        return ("sym", name)

    def _take_first_char(self) -> str:
        kind, text, space = self.peek()
        if len(text) > 1:
            self.toks[self.i] = (kind, text[1:], None)
        else:
            self.advance()
        return text[0]

    def _subscript(self) -> str:
        self.advance()  # "_"
        if self.at("op", "{"):
            self.advance()
            parts: list[str] = []
            depth = 1
            while True:
                kind, text, _ = self.advance()
                if kind == "end":
                    raise _Syntax("unclosed subscript")
                if text == "{":
                    depth += 1
                elif text == "}":
                    depth -= 1
                    if depth == 0:
                        break
                parts.append(text)
                if len(parts) > 20:
                    raise _Syntax("subscript too long")
            return "{" + "".join(parts) + "}"
        kind, text, _ = self.peek()
        if kind in ("num", "word"):
            return self._take_first_char()
        if kind == "cmd" and text[1:] in _GREEK:
            self.advance()
            return text
        raise _Syntax("bad subscript")

    def _command(self, name: str) -> tuple[Any, ...]:
        self.advance()
        if name == "frac":
            numerator = self._argument()
            denominator = self._argument()
            return ("mul", (numerator, ("inv", denominator)))
        if name == "sqrt":
            index = None
            if self.at("op", "["):
                self.advance()
                self._enter()
                index = _scalar(self.parse_sum())
                self.expect("op", "]")
                self.depth -= 1
            return ("root", self._argument(), index)
        if name == "binom":
            return ("binom", self._argument(), self._argument())
        if name == "pi":
            return _PI
        if name == "infty":
            return _INF
        if name in _FUNCS:
            return self._function(name)
        if name in _GREEK:
            symbol = "\\" + name
            if self.at("op", "_"):
                symbol += "_" + self._subscript()
            return ("sym", symbol)
        if name == "{":
            return self._braced("\\}")
        raise _Syntax(f"unsupported command \\{name}")

    def _argument(self) -> tuple[Any, ...]:
        """A LaTeX macro argument: a ``{...}`` group or a single character/command."""
        kind, text, _ = self.peek()
        if kind == "op" and text == "{":
            self.advance()
            self._enter()
            node = _scalar(self.parse_sum())
            self.expect("op", "}")
            self.depth -= 1
            return node
        if kind == "num":
            first = self._take_first_char()
            if not first.isdigit():
                raise _Syntax("bad macro argument")
            return ("num", int(first), 1, False)
        if kind == "word":
            return ("sym", self._take_first_char())
        if kind == "cmd":
            self._enter()
            node = _scalar(self.parse_atom())
            self.depth -= 1
            return node
        raise _Syntax(f"missing macro argument before {text!r}")

    def _function(self, name: str) -> tuple[Any, ...]:
        power = None
        if name != "sqrt" and self.at("op", "^"):
            self.advance()
            self._enter()
            power = _scalar(self.parse_unary())
            self.depth -= 1
        base = None
        if name == "log" and self.at("op", "_"):
            self.advance()
            base = self._argument()
        self._enter()
        if self.at("op", "(", "{"):
            arg = _scalar(self.parse_atom())
        else:  # LaTeX habit: \sin 2x is sin(2x), \sin x \cos x is sin(x) cos(x)
            factors = [_scalar(self.parse_power())]
            while self._implicit_factor_follows(self.peek()) and not self._function_follows():
                factors.append(_scalar(self.parse_power()))
            arg = factors[0] if len(factors) == 1 else ("mul", tuple(factors))
        self.depth -= 1
        if power == ("neg", ("num", 1, 1, False)) and name in _INVERSE_TRIG:
            name, power = _INVERSE_TRIG[name], None  # \tan^{-1} x is arctan x
        if name == "sqrt":
            node: tuple[Any, ...] = ("root", arg, None)
        elif name in ("log", "ln"):
            node = ("log", arg, base)
        else:
            node = ("func", name, arg)
        return node if power is None else ("pow", node, power)

    def _function_follows(self) -> bool:
        kind, text, _ = self.peek()
        return (kind == "word" and text in _FUNCS) or (kind == "cmd" and text[1:] in _FUNCS)

    def _bracketed(self) -> tuple[Any, ...]:
        opener = self.advance()[1]
        self._enter()
        items = self.parse_items()
        tok = self.advance()
        self.depth -= 1
        closer = tok[1]
        if tok[0] != "op" or closer not in (")", "]"):
            raise _Syntax(f"expected ')' or ']', got {closer or 'end of input'!r}")
        if len(items) == 1:
            if (opener, closer) not in (("(", ")"), ("[", "]")):
                raise _Syntax(f"mismatched brackets {opener}{closer}")
            return items[0]
        return ("tuple", opener, closer, tuple(items))

    def _braced(self, closer: str) -> tuple[Any, ...]:
        """After ``{`` (a group, or a set when it has commas) or ``\\{`` (always a set)."""
        self._enter()
        if closer == "\\}" and self.at("cmd", "\\}"):
            self.advance()
            self.depth -= 1
            return ("set", ())
        items = self.parse_items()
        if closer == "}":
            self.expect("op", "}")
        else:
            self.expect("cmd", "\\}")
        self.depth -= 1
        if closer == "}" and len(items) == 1:
            return items[0]
        return ("set", tuple(items))


def _parse(s: str) -> tuple[Any, ...]:
    return _Parser(_tokenize(s)).parse()


def _reduce_assignment(node: tuple[Any, ...]) -> tuple[Any, ...]:
    """``x = 5`` → ``5``; ``a = b = c`` → ``c``; ``a \\approx b`` → ``a``; also ``5 = x``."""
    if node[0] != "rel" or not set(node[1]) <= {"=", "~", "in"}:
        return node
    ops, operands = list(node[1]), list(node[2])
    if _is_symbolic_target(operands[0]):
        ops, operands = ops[1:], operands[1:]
    elif set(ops) == {"="} and _is_symbolic_target(operands[-1]):
        ops, operands = ops[:-1], operands[:-1]
    elif "~" not in ops and len(ops) < 2:
        return node  # one equation without a symbol side, such as 2x + 3y = 6
    if "~" in ops:
        return operands[ops.index("~")]
    return operands[-1]


def _is_symbolic_target(node: tuple[Any, ...]) -> bool:
    if node[0] == "sym":
        return node[1] not in ("\\pi", "e", "i")
    return node[0] == "tuple" and all(item[0] == "sym" for item in node[3])


def _prepare(node: tuple[Any, ...]) -> tuple[Any, ...]:
    node = _reduce_assignment(node)
    if node[0] == "list":
        return ("list", tuple(_reduce_assignment(item) for item in node[1]))
    if node[0] == "set":
        return ("set", tuple(_reduce_assignment(item) for item in node[1]))
    return node


# ---------------------------------------------------------------------------------------------
# Fast path: canonical polynomials over Q in variables, pi and square roots of square-free ints
# ---------------------------------------------------------------------------------------------
#
# A polynomial is a dict {(radical, ((name, exponent), ...)): Fraction} without zero coefficients.
# radical = m is a square-free integer, possibly negative, meaning sqrt(m) (1 = none, -1 = i).
# These square roots are linearly independent over Q, and pi and e are transcendental, so the
# form is unique. Exponents may be negative (Laurent monomials). pi, e and infinity are variables
# named "\pi", "e" and "\infty"; the imaginary unit i is the radical -1.

_Poly = dict[tuple[int, tuple[tuple[str, int], ...]], Fraction]
_ONE_KEY: tuple[int, tuple[tuple[str, int], ...]] = (1, ())


class _NotPolyType:
    """Marker: the value has no canonical polynomial form (the symbolic path decides)."""

    def __repr__(self) -> str:
        return "NOT_POLY"


_NOT = _NotPolyType()


def _const(q: Fraction) -> _Poly:
    return {_ONE_KEY: q} if q else {}


def _rational(p: _Poly | _NotPolyType) -> Fraction | None:
    if isinstance(p, _NotPolyType):
        return None
    if not p:
        return Fraction(0)
    if len(p) == 1 and _ONE_KEY in p:
        return p[_ONE_KEY]
    return None


def _check_size(q: Fraction) -> Fraction:
    if q.numerator.bit_length() > MAX_RESULT_BITS or q.denominator.bit_length() > MAX_RESULT_BITS:
        raise _Refused(f"{NUMBER_TOO_LARGE}: an intermediate value exceeds {MAX_RESULT_BITS} bits")
    return q


def _padd(a: _Poly, b: _Poly) -> _Poly | _NotPolyType:
    out = dict(a)
    for k, v in b.items():
        s = _check_size(out.get(k, 0) + v)
        if s:
            out[k] = s
        else:
            out.pop(k, None)
    return out if len(out) <= MAX_POLY_TERMS else _NOT


def _mul_keys(
    k1: tuple[int, tuple[tuple[str, int], ...]], k2: tuple[int, tuple[tuple[str, int], ...]]
) -> tuple[int, tuple[int, tuple[tuple[str, int], ...]]]:
    m1, v1 = k1
    m2, v2 = k2
    g = math.gcd(m1, m2)
    radical = (m1 // g) * (m2 // g)
    if m1 < 0 and m2 < 0:  # sqrt(-a) sqrt(-b) = -sqrt(ab)
        g = -g
    if not v1 or not v2:
        variables = v1 or v2
    else:
        exps = dict(v1)
        for name, e in v2:
            exps[name] = exps.get(name, 0) + e
        for name, e in exps.items():
            if abs(e) > MAX_SYMBOLIC_EXPONENT:
                raise _Refused(f"{EXPONENT_TOO_LARGE}: {name}^{_show(e)}")
        variables = tuple(sorted((n, e) for n, e in exps.items() if e))
    return g, (radical, variables)


def _pmul(a: _Poly, b: _Poly) -> _Poly | _NotPolyType:
    if len(a) * len(b) > 4 * MAX_POLY_TERMS:
        return _NOT
    out: _Poly = {}
    for k1, c1 in a.items():
        for k2, c2 in b.items():
            factor, key = _mul_keys(k1, k2)
            s = _check_size(out.get(key, 0) + c1 * c2 * factor)
            if s:
                out[key] = s
            else:
                out.pop(key, None)
    return out if len(out) <= MAX_POLY_TERMS else _NOT


def _pinv(p: _Poly) -> _Poly | _NotPolyType:
    if not p:
        raise _Refused(f"{UNDEFINED}: division by zero")
    if len(p) != 1:
        return _NOT
    (((radical, variables), c),) = p.items()
    # 1 / (c sqrt(m) v) = sqrt(m) / (c m v)
    return {(radical, tuple((n, -e) for n, e in variables)): _check_size(1 / (c * radical))}


def _iroot(n: int, k: int) -> int:
    """floor(n ** (1/k)) for n >= 0, exactly."""
    if n < 2:
        return n
    if k == 2:
        return math.isqrt(n)
    x = 1 << -(-n.bit_length() // k)
    while True:
        y = ((k - 1) * x + n // x ** (k - 1)) // k
        if y >= x:
            return x
        x = y


def _square_split(n: int) -> tuple[int, int] | None:
    """(s, m) with n = s^2 m and m square-free, or None when n is too large to factor quickly."""
    if n.bit_length() > 128:
        return None
    s, m, d = 1, 1, 2
    while d * d <= n and d < 2000:
        while n % (d * d) == 0:
            n //= d * d
            s *= d
        if n % d == 0:
            n //= d
            m *= d
        d += 1 if d == 2 else 2
    if n > 1:
        r = math.isqrt(n)
        if r * r == n:
            s *= r
        elif n < 2000**3 or d * d > n:  # at most two prime factors left, and not a square
            m *= n
        else:
            return None
    return s, m


def _psqrt(q: Fraction) -> _Poly | _NotPolyType:
    """The principal sqrt(q) of a rational q in canonical form: s/b sqrt(m) (m < 0 when q < 0)."""
    if not q:
        return {}
    split = _square_split(abs(q.numerator) * q.denominator)
    if split is None:
        return _NOT
    s, m = split
    return {(m if q > 0 else -m, ()): Fraction(s, q.denominator)}


def _exact_root(q: Fraction, k: int) -> Fraction | None:
    if q < 0:
        return None
    a, b = _iroot(q.numerator, k), _iroot(q.denominator, k)
    if a**k == q.numerator and b**k == q.denominator:
        return Fraction(a, b)
    return None


def _show(q: Fraction | int) -> str:
    """A number for a reason string: itself when short, else its size (str() of huge ints fails)."""
    q = Fraction(q)
    bits = max(q.numerator.bit_length(), q.denominator.bit_length())
    return str(q) if bits <= 64 else f"({bits}-bit number)"


def _power_bits(c: Fraction, radical: int) -> int:
    return max(c.numerator.bit_length(), c.denominator.bit_length()) + radical.bit_length()


def _ppow(base: _Poly, e: Fraction) -> _Poly | _NotPolyType:
    if e.denominator == 1:
        n = e.numerator
        if n == 0:
            return _const(Fraction(1))
        if not base:
            if n < 0:
                raise _Refused(f"{UNDEFINED}: division by zero")
            return {}
        if len(base) == 1:
            (((radical, variables), c),) = base.items()
            if not (radical == 1 and abs(c) == 1) and abs(n) * _power_bits(c, radical) > MAX_RESULT_BITS:
                raise _Refused(f"{EXPONENT_TOO_LARGE}: result would exceed {MAX_RESULT_BITS} bits")
            if any(abs(v * n) > MAX_SYMBOLIC_EXPONENT for _, v in variables):
                raise _Refused(f"{EXPONENT_TOO_LARGE}: exponent {_show(n)} on a variable")
            k = abs(n)
            coeff = c**k * radical ** (k // 2)
            key = (radical if k % 2 else 1, tuple((name, v * k) for name, v in variables))
            out: _Poly = {key: _check_size(coeff)}
            return out if n > 0 else _pinv(out)
        if abs(n) > MAX_SYMBOLIC_EXPONENT:
            raise _Refused(f"{EXPONENT_TOO_LARGE}: exponent {_show(n)}")
        if n < 0 or n > MAX_POLY_POWER:
            return _NOT
        result: _Poly | _NotPolyType = _const(Fraction(1))
        square: _Poly | _NotPolyType = base
        while n:
            if isinstance(result, _NotPolyType) or isinstance(square, _NotPolyType):
                return _NOT
            if n & 1:
                result = _pmul(result, square)
            n >>= 1
            if n:
                square = _pmul(square, square)
        return result
    if abs(e) > MAX_SYMBOLIC_EXPONENT:
        raise _Refused(f"{EXPONENT_TOO_LARGE}: exponent {_show(e)}")
    q = _rational(base)
    if q is None or e.denominator > 64 or (q < 0 and e.denominator != 2):
        return _NOT
    root = _exact_root(q, e.denominator)
    if root is not None:
        return _ppow(_const(root), Fraction(e.numerator))
    if e.denominator == 2:
        s = _psqrt(q)
        return _NOT if isinstance(s, _NotPolyType) else _ppow(s, Fraction(e.numerator))
    return _NOT


def _to_poly(node: tuple[Any, ...]) -> _Poly | _NotPolyType:
    """Canonical polynomial of a scalar tree, or ``_NOT``.

    Evaluates every subtree, so that every size limit is checked even where the result goes to
    sympy; raises :class:`_Refused`.
    """
    tag = node[0]
    if tag == "num":
        return _const(Fraction(node[1], node[2]))
    if tag == "sym":
        if node[1] == "i":
            return {(-1, ()): Fraction(1)}
        return {(1, ((node[1], 1),)): Fraction(1)}
    if tag == "inf":
        return {(1, (("\\infty", 1),)): Fraction(1)}
    if tag in ("add", "mul"):
        parts = [_to_poly(child) for child in node[1]]
        acc: _Poly | _NotPolyType = parts[0]
        for part in parts[1:]:
            if isinstance(acc, _NotPolyType) or isinstance(part, _NotPolyType):
                return _NOT
            acc = _padd(acc, part) if tag == "add" else _pmul(acc, part)
        return acc
    if tag == "neg":
        p = _to_poly(node[1])
        return p if isinstance(p, _NotPolyType) else {k: -v for k, v in p.items()}
    if tag == "inv":
        p = _to_poly(node[1])
        return p if isinstance(p, _NotPolyType) else _pinv(p)
    if tag == "pow":
        base, exponent = _to_poly(node[1]), _to_poly(node[2])
        e = _rational(exponent)
        if e is None:
            return _NOT
        if isinstance(base, _NotPolyType):
            if abs(e) > MAX_SYMBOLIC_EXPONENT:
                raise _Refused(f"{EXPONENT_TOO_LARGE}: exponent {_show(e)}")
            return _NOT
        return _ppow(base, e)
    if tag == "root":
        x = _to_poly(node[1])
        index = Fraction(2) if node[2] is None else _rational(_to_poly(node[2]))
        if index is None or index.denominator != 1 or not 2 <= index <= 64:
            return _NOT
        q = _rational(x)
        if q is None:
            return _NOT
        if index == 2:
            return _psqrt(q)
        root = _exact_root(q, int(index))
        return _NOT if root is None else _const(root)
    if tag == "fact":
        n = _rational(_to_poly(node[1]))
        if n is None or n.denominator != 1:
            return _NOT
        if n < 0:
            raise _Refused(f"{UNDEFINED}: factorial of a negative integer")
        if n > MAX_FACTORIAL:
            raise _Refused(f"{FACTORIAL_TOO_LARGE}: {_show(n)}! (limit {MAX_FACTORIAL}!)")
        return _const(Fraction(math.factorial(int(n))))
    if tag == "binom":
        n, k = _rational(_to_poly(node[1])), _rational(_to_poly(node[2]))
        if n is not None and n > MAX_FACTORIAL:
            raise _Refused(f"{FACTORIAL_TOO_LARGE}: binomial of {_show(n)} (limit {MAX_FACTORIAL})")
        if n is None or k is None or n.denominator != 1 or k.denominator != 1 or n < 0:
            return _NOT
        return _const(Fraction(math.comb(int(n), int(k)) if 0 <= k <= n else 0))
    if tag == "abs":
        q = _rational(_to_poly(node[1]))
        return _NOT if q is None else _const(abs(q))
    if tag == "func":
        _to_poly(node[2])
        return _NOT
    if tag == "log":
        _to_poly(node[1])
        if node[2] is not None:
            _to_poly(node[2])
        return _NOT
    raise _Syntax(f"unexpected node {tag}")


_CONSTANTS = {"\\pi": math.pi, "e": math.e}


def _float_groups(p: _Poly) -> dict[tuple[tuple[str, int], ...], complex] | None:
    """Sum of the numeric parts (coefficient, radical, powers of pi and e) per other monomial."""
    out: dict[tuple[tuple[str, int], ...], complex] = {}
    try:
        for (radical, variables), c in p.items():
            value = float(c) * (math.sqrt(radical) if radical > 0 else 1j * math.sqrt(-radical))
            rest = []
            for name, e in variables:
                if name in _CONSTANTS:
                    value *= _CONSTANTS[name] ** e
                else:
                    rest.append((name, e))
            key = tuple(rest)
            out[key] = out.get(key, 0.0) + value
    except (OverflowError, ZeroDivisionError):
        return None
    if not all(math.isfinite(v.real) and math.isfinite(v.imag) for v in out.values()):
        return None
    return out


def _close(a: complex, b: complex) -> bool:
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b))


def _poly_equal(a: _Poly, b: _Poly, tolerant: bool) -> str | None:
    """The reason they are equal, or None."""
    if a == b:
        if all(k == _ONE_KEY for k in a) and all(k == _ONE_KEY for k in b):
            return NUMERIC
        return ALGEBRAIC
    if not tolerant:
        return None
    fa, fb = _float_groups(a), _float_groups(b)
    if fa is None or fb is None:
        return None
    if all(_close(fa.get(k, 0.0), fb.get(k, 0.0)) for k in fa.keys() | fb.keys()):
        return TOLERANCE
    return None


def _poly_proportional(a: _Poly, b: _Poly, positive: bool) -> bool:
    """Whether a == c * b for a rational constant c != 0 (c > 0 when ``positive``)."""
    if not a or not b:
        return not a and not b
    if a.keys() != b.keys():
        return False
    key = next(iter(b))
    ratio = a[key] / b[key]
    if positive and ratio <= 0:
        return False
    return all(a[k] == ratio * v for k, v in b.items())


def _has_decimal(node: Any) -> bool:
    if isinstance(node, tuple):
        if node and node[0] == "num":
            return bool(node[3])
        return any(_has_decimal(child) for child in node)
    return False


def _is_int_literal(node: tuple[Any, ...]) -> bool:
    if node[0] == "neg":
        node = node[1]
    return node[0] == "num" and node[2] == 1 and not node[3]


# ---------------------------------------------------------------------------------------------
# Structural comparison
# ---------------------------------------------------------------------------------------------

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
        tolerant = not _is_int_literal(g) and (_has_decimal(g) or _has_decimal(p))
        if not isinstance(gp, _NotPolyType) and not isinstance(pp, _NotPolyType):
            how = _poly_equal(gp, pp, tolerant)
            if how is not None:
                self.how.add(how)
                return True
            return False
        return self._decided(("eq", id(g), id(p)), ("eq", g, p, tolerant))

    def proportional(self, g: tuple[Any, ...], p: tuple[Any, ...], positive: bool) -> bool:
        gp, pp = self.poly(g, "gold"), self.poly(p, "pred")
        kind = "prop+" if positive else "prop"
        if not isinstance(gp, _NotPolyType) and not isinstance(pp, _NotPolyType):
            if _poly_proportional(gp, pp, positive):
                self.how.add(ALGEBRAIC)
                return True
            return False
        return self._decided((kind, id(g), id(p)), (kind, g, p, False))


def _compare(g: tuple[Any, ...], p: tuple[Any, ...], cmp: _Comparison) -> bool:
    """Structural equality.

    Evaluates every element pair (no short cut), so that one pass collects all the sympy checks
    the result depends on.
    """
    gt, pt = g[0], p[0]
    if gt == "list":
        if pt == "list" or (pt == "tuple" and p[1:3] == ("(", ")")):
            return _ordered(g[1], p[-1], cmp)
        return False
    if gt == "set":
        if pt in ("set", "list"):
            return _unordered(g[1], p[1], cmp)
        return False
    if gt == "tuple":
        if pt == "tuple" and g[1:3] == p[1:3]:
            return _ordered(g[3], p[3], cmp)
        if pt == "list" and g[1:3] == ("(", ")"):
            return _ordered(g[3], p[1], cmp)
        return False
    if gt == "union":
        return pt == "union" and _unordered(g[1], p[1], cmp)
    if gt == "rel":
        return pt == "rel" and _compare_relations(g, p, cmp)
    if pt in _CONTAINERS:
        return False
    return cmp.scalars(g, p)


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


# ---------------------------------------------------------------------------------------------
# Grading
# ---------------------------------------------------------------------------------------------


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


def _grade(gold: str, pred: str, timeout: float) -> Verdict:
    for side, text in (("gold", gold), ("pred", pred)):
        if len(text) > MAX_ANSWER_CHARS:
            return Verdict(False, f"{TOO_LONG}: {side} has {len(text)} characters (limit {MAX_ANSWER_CHARS})")
    g_norm, p_norm = _normalize(gold), _normalize(pred)
    if not g_norm:
        return Verdict(False, f"{EMPTY}: gold")
    if not p_norm:
        return Verdict(False, EMPTY)
    g_flat, p_flat = _squash(g_norm), _squash(p_norm)
    if g_flat == p_flat:
        return Verdict(True, EXACT)
    if g_flat.isascii() and g_flat.isalpha() and len(g_flat) > 1 and g_flat.lower() not in _KNOWN_WORDS:
        return _text_verdict(g_flat, p_flat)
    try:
        g_tree = _parse(g_norm)
    except _Syntax:
        return _text_verdict(g_flat, p_flat)
    except _Refused as exc:
        return Verdict(False, f"{exc.reason}: gold")
    try:
        p_tree = _parse(p_norm)
    except _Syntax as exc:
        return Verdict(False, f"{UNPARSEABLE}: {exc}")
    g_tree, p_tree = _prepare(g_tree), _prepare(p_tree)

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
    try:
        answers = _run_symbolic({"nodes": nodes, "jobs": jobs}, timeout)
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


# ---------------------------------------------------------------------------------------------
# Symbolic worker (a subprocess; killed on timeout)
# ---------------------------------------------------------------------------------------------


class _Timeout(Exception):
    """The worker did not answer within the time budget (it has been killed)."""


class _Unavailable(Exception):
    """No worker could be started, or it died."""


_STATS = {"symbolic_calls": 0, "worker_starts": 0, "timeouts": 0}
"""Counters for tests and benchmarks (not thread-exact)."""

_BOOT = (  # the first line keeps the working directory off sys.path (what -P does on 3.11+)
    "import sys\n"
    "sys.path[:] = [p for p in sys.path if p not in ('', '.')]\n"
    "import importlib.util\n"
    "spec = importlib.util.spec_from_file_location('_lm_envs_grading_worker', sys.argv[1])\n"
    "mod = importlib.util.module_from_spec(spec)\n"
    "sys.modules[spec.name] = mod\n"
    "spec.loader.exec_module(mod)\n"
    "mod._worker_main()\n"
)


class _Worker:
    """A sympy subprocess: one JSON request line in, one JSON response line out."""

    def __init__(self) -> None:
        import queue
        import subprocess

        if not sys.executable:
            raise _Unavailable("no Python executable to start the worker with")
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._ids = itertools.count()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        threading.Thread(target=self._read, name="lm-envs-grading-reader", daemon=True).start()

    def _read(self) -> None:
        stdout = self.proc.stdout
        try:
            if stdout is not None:
                for line in iter(stdout.readline, b""):
                    self._lines.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self._lines.put(None)

    def _next_line(self, deadline: float) -> bytes:
        import queue

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Timeout
        try:
            line = self._lines.get(timeout=remaining)
        except queue.Empty:
            raise _Timeout from None
        if line is None:
            raise _Unavailable("the symbolic worker exited")
        return line

    def wait_ready(self, timeout: float) -> None:
        try:
            line = self._next_line(time.monotonic() + timeout)
        except _Unavailable:
            raise _Unavailable("the symbolic worker exited while starting (is sympy installed?)") from None
        if line.strip() != b"READY":
            raise _Unavailable("the symbolic worker did not start")

    def request(self, payload: dict[str, Any], timeout: float) -> list[Any]:
        request_id = next(self._ids)
        data = json.dumps({"id": request_id, **payload}).encode() + b"\n"
        deadline = time.monotonic() + timeout
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (OSError, ValueError) as exc:
            raise _Unavailable(f"the symbolic worker is gone ({exc})") from None
        while True:
            message = json.loads(self._next_line(deadline))
            if message.get("id") == request_id:
                return list(message.get("results", []))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=10)
        except Exception:  # already gone
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except Exception:
                pass


class _WorkerPool:
    """Workers, one lent per symbolic call (threads never share one), at most ``MAX_WORKERS``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._slots = threading.BoundedSemaphore(MAX_WORKERS)

    def acquire(self) -> _Worker:
        """Lend a worker, starting one if none is idle; the caller must :meth:`release` it."""
        if not self._slots.acquire(timeout=WORKER_START_TIMEOUT):
            raise _Unavailable(f"all {MAX_WORKERS} symbolic workers stayed busy for {WORKER_START_TIMEOUT:g} s")
        try:
            return self._take()
        except BaseException:
            self._slots.release()
            raise

    def _take(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                worker.kill()
        try:
            worker = _Worker()
        except OSError as exc:
            raise _Unavailable(f"cannot start the symbolic worker: {exc}") from None
        try:
            worker.wait_ready(WORKER_START_TIMEOUT)
        except BaseException:
            worker.kill()
            raise
        _STATS["worker_starts"] += 1
        return worker

    def release(self, worker: _Worker, *, kill: bool = False) -> None:
        """Take back a lent worker (killed when ``kill`` or when enough are idle)."""
        try:
            with self._lock:
                if not kill and len(self._idle) < _MAX_IDLE_WORKERS and worker.alive():
                    self._idle.append(worker)
                    return
            worker.kill()
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()

    def forget(self) -> None:
        """After ``fork``: the workers belong to the parent process; start afresh."""
        self._lock = threading.Lock()
        self._idle = []
        self._slots = threading.BoundedSemaphore(MAX_WORKERS)


_POOL = _WorkerPool()
atexit.register(_POOL.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOL.forget)


def close_workers() -> None:
    """Stop the idle symbolic worker processes; the next symbolic comparison starts a new one.

    They are also stopped at interpreter exit, and exit by themselves when their parent dies.
    """
    _POOL.close()


def _run_symbolic(payload: dict[str, Any], timeout: float) -> list[Any]:
    """Send one batch of jobs to a worker; kill it if it has not answered within ``timeout``."""
    _STATS["symbolic_calls"] += 1
    try:
        worker = _POOL.acquire()
    except _Timeout:
        raise _Unavailable(f"the symbolic worker did not start within {WORKER_START_TIMEOUT:g} s") from None
    try:
        answers = worker.request(payload, timeout)
    except _Timeout:
        _STATS["timeouts"] += 1
        _POOL.release(worker, kill=True)
        raise
    except BaseException:
        _POOL.release(worker, kill=True)
        raise
    _POOL.release(worker)
    return answers


# -- worker side (runs in the subprocess; imports sympy) ------------------------------------------


def _worker_main() -> None:  # pragma: no cover - runs in the subprocess
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = WORKER_MEMORY_BYTES if hard == resource.RLIM_INFINITY else min(WORKER_MEMORY_BYTES, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass
    parent = os.getppid()

    def watch_parent() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    import sympy

    x = sympy.Symbol("x")
    sympy.simplify((x + 1) ** 2 - x**2 - 2 * x - 1)  # warm the caches before saying READY
    out.write(b"READY\n")
    out.flush()
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        results = _worker_jobs(request, sympy)
        out.write(json.dumps({"id": request.get("id"), "results": results}).encode() + b"\n")
        out.flush()


def _worker_jobs(request: dict[str, Any], sp: Any) -> list[Any]:
    nodes = request.get("nodes", [])
    built: dict[int, Any] = {}

    def get(i: int) -> Any:
        if i not in built:
            built[i] = _to_sympy(nodes[i], sp)
        return built[i]

    results: list[Any] = []
    for job in request.get("jobs", []):
        try:
            kind = job[0]
            if kind == "sleep":  # for tests of the timeout
                time.sleep(float(job[1]))
                result: Any = True
            elif kind == "eq":
                result = _sympy_equal(get(job[1]), get(job[2]), bool(job[3]), sp)
            elif kind in ("prop", "prop+"):
                result = _sympy_proportional(get(job[1]), get(job[2]), kind == "prop+", sp)
            else:
                result = f"error: unknown job {kind!r}"
        except Exception as exc:
            result = f"error: {type(exc).__name__}: {str(exc)[:200]}"
        results.append(result)
    return results


_SYMPY_FUNCS = {
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "cot": "cot",
    "sec": "sec",
    "csc": "csc",
    "arcsin": "asin",
    "arccos": "acos",
    "arctan": "atan",
    "sinh": "sinh",
    "cosh": "cosh",
    "tanh": "tanh",
    "exp": "exp",
}


def _to_sympy(node: list[Any], sp: Any) -> Any:
    """Build a sympy object from a parsed tree (JSON lists), re-checking the size limits."""
    tag = node[0]
    if tag == "num":
        return sp.Rational(int(node[1]), int(node[2]))
    if tag == "sym":
        return {"\\pi": sp.pi, "e": sp.E, "i": sp.I}.get(node[1]) or sp.Symbol(node[1])
    if tag == "inf":
        return sp.oo
    if tag == "add":
        return sp.Add(*[_to_sympy(c, sp) for c in node[1]])
    if tag == "mul":
        return sp.Mul(*[_to_sympy(c, sp) for c in node[1]])
    if tag == "neg":
        return -_to_sympy(node[1], sp)
    if tag == "inv":
        x = _to_sympy(node[1], sp)
        if x == 0:
            raise ZeroDivisionError("division by zero")
        return sp.Pow(x, -1)
    if tag == "pow":
        base, e = _to_sympy(node[1], sp), _to_sympy(node[2], sp)
        if e.is_Rational and abs(e) > MAX_SYMBOLIC_EXPONENT:
            raise ValueError("exponent too large")
        if base.is_Rational and e.is_Integer and base not in (0, 1, -1):
            bits = max(int(base.p).bit_length(), int(base.q).bit_length())
            if abs(int(e)) * bits > MAX_RESULT_BITS:
                raise ValueError("exponent too large")
        return sp.Pow(base, e)
    if tag == "root":
        x = _to_sympy(node[1], sp)
        return sp.sqrt(x) if node[2] is None else sp.root(x, _to_sympy(node[2], sp))
    if tag == "fact":
        x = _to_sympy(node[1], sp)
        if x.is_Integer and (x > MAX_FACTORIAL or x < 0):
            raise ValueError("factorial out of range")
        return sp.factorial(x)
    if tag == "binom":
        n, k = _to_sympy(node[1], sp), _to_sympy(node[2], sp)
        if n.is_Integer and n > MAX_FACTORIAL:
            raise ValueError("binomial out of range")
        return sp.binomial(n, k)
    if tag == "abs":
        return sp.Abs(_to_sympy(node[1], sp))
    if tag == "func":
        return getattr(sp, _SYMPY_FUNCS[node[1]])(_to_sympy(node[2], sp))
    if tag == "log":
        x = _to_sympy(node[1], sp)
        return sp.log(x) if node[2] is None else sp.log(x, _to_sympy(node[2], sp))
    raise ValueError(f"unexpected node {tag!r}")


def _sympy_equal(a: Any, b: Any, tolerant: bool, sp: Any) -> bool:
    if a == b:
        return True
    if any(v.has(sp.zoo, sp.nan) for v in (a, b)):
        return False
    if tolerant:
        return _sympy_close(a, b, sp)
    d = a - b
    if d == 0:
        return True
    d = sp.simplify(d)
    if d == 0:
        return True
    return d.equals(0) is True


def _sympy_close(a: Any, b: Any, sp: Any) -> bool:
    """Equal within REL_TOL at the exact value, or at three sample points if there are symbols."""
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    points = (
        [{}]
        if not symbols
        else [{s: sp.Rational(37 + 11 * k + 7 * i, 29 + 3 * i) for i, s in enumerate(symbols)} for k in range(3)]
    )
    for point in points:
        va = complex(sp.N(a.subs(point), 30))
        vb = complex(sp.N(b.subs(point), 30))
        if not abs(va - vb) <= REL_TOL * max(abs(va), abs(vb)):
            return False
    return True


def _sympy_proportional(a: Any, b: Any, positive: bool, sp: Any) -> bool:
    if sp.simplify(b) == 0:
        return bool(sp.simplify(a) == 0)
    ratio = sp.simplify(a / b)
    if ratio.free_symbols or not ratio.is_number or ratio.has(sp.zoo, sp.nan, sp.oo):
        return False
    if positive:
        return bool(ratio.is_positive)
    return ratio.is_zero is False
