"""Rule-based checking of arithmetic claims in reasoning steps, with exact rational arithmetic.

A reasoning step such as ``"Natalia sold 48/2 = 24 clips in May."`` makes a *claim*: the
arithmetic expression on the left of ``=`` has the value on the right. :func:`check_step` finds
every such claim in a step (chains ``a = b = c`` are checked link by link, GSM8K calculator
annotations ``<<48/2=24>>`` count as claims too), evaluates both sides exactly with
:class:`fractions.Fraction` and returns a :class:`StepCheck` verdict:

* ``"correct"``: at least one claim was checked and every checked claim holds;
* ``"wrong"``: some claim is false (the first false one is reported);
* ``"unverifiable"``: nothing could be checked (prose, algebra with variables, the final
  ``#### X`` answer line, or input beyond the safety limits).

The checker is conservative: a claim is only judged when both sides are plain arithmetic.
Sides that touch variables (``3x + 4 = 19``), units glued to numbers (``12kg``), operator words
(``half of 10 = 5``, ``= 2 million``), times (``3:30``) or unknown LaTeX commands
(``\\sqrt{16} = 4``) are skipped, and so are unit conversions between two bare numbers
(``$5 = 500 cents``), rather than risk calling a correct step wrong. Currency signs, ``$``
math delimiters, ``\\left``/``\\right`` and ``\\boxed`` are ignored. A decimal written on the right
may round or truncate a value that has no finite decimal expansion (``10 / 3 = 3.33``);
``≈`` accepts rounding of any value; everything else is exact.

The expression language is a tiny recursive-descent grammar (no ``eval``)::

    expr    := term (("+" | "-") term)*
    term    := unary (("*" | "/" | "x" | "×" | "÷" | "·" | "\\cdot" | "\\times" | "\\div") unary
                      | <implicit "*" before "(" or "\\frac">)*
    unary   := ("-" | "+")* power
    power   := postfix (("^" | "**") unary)?          (small integer exponents only)
    postfix := primary "%"*                          (``50%`` is 1/2)
    primary := number | "(" expr ")" | "\\frac" group group

Numbers are integers or decimals (``1,000`` thousands separators allowed) and are read exactly:
``0.1 + 0.2 = 0.3`` is correct. Every input is bounded (step length, digits per number,
nesting depth, exponent and intermediate size), so adversarial strings finish quickly as
``"unverifiable"``; :func:`check_step` never raises on a ``str``.

Example:
    >>> check_step("Natalia sold 48/2 = <<48/2=24>>24 clips in May.").verdict
    'correct'
    >>> check_step("12 * 3 = 38").verdict
    'wrong'
    >>> check_step("She has some apples.").verdict
    'unverifiable'
    >>> first_error(["2 + 3 = 5", "5 * 4 = 21", "21 - 1 = 20", "#### 20"])
    1
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

__all__ = [
    "MAX_DEPTH",
    "MAX_DIGITS",
    "MAX_EXPONENT",
    "MAX_STEP_CHARS",
    "ExpressionError",
    "StepCheck",
    "StepVerdict",
    "check_step",
    "check_steps",
    "evaluate",
    "first_error",
    "format_value",
]

StepVerdict = Literal["correct", "wrong", "unverifiable"]

MAX_STEP_CHARS = 4096
"""Steps longer than this are not parsed (``"unverifiable"``)."""
MAX_DIGITS = 40
"""Numbers with more digits than this are not evaluated."""
MAX_DEPTH = 32
"""Maximum parenthesis nesting inside one expression."""
MAX_EXPONENT = 64
"""Largest absolute integer exponent accepted by ``^`` / ``**``."""
MAX_BITS = 4096
"""Largest numerator or denominator (in bits) of any intermediate value."""

Number = int | Fraction

# --------------------------------------------------------------------------------------------
# Tokens: (kind, value, start, end, glued) where glued means "no whitespace before this token".
# --------------------------------------------------------------------------------------------
_NUM, _OP, _LP, _RP, _EQ, _FRAC, _WORD, _SKIP, _OTHER = range(9)
_MATH_KINDS = frozenset({_NUM, _OP, _LP, _RP, _FRAC, _SKIP})

_TOKEN_RE = re.compile(
    r"(?P<num>\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"|(?P<ws>\s+)"
    r"|(?P<pow>\*\*|\^)"
    r"|(?P<op>[-+*/×÷·−%])"
    r"|(?P<lp>[({\[])"
    r"|(?P<rp>[)}\]])"
    r"|(?P<eq>[=≈])"
    r"|(?P<cmd>\\[A-Za-z]+|\\.?)"
    r"|(?P<word>[^\W\d_]+)"
    r"|(?P<cur>[$€£])"
    r"|(?P<other>.)",
    re.DOTALL,
)
# Token kind of each regex group by its index (groups 2, 3, 4, 8, 9 are handled in code).
_GROUP_KINDS = (None, _NUM, None, None, None, _LP, _RP, _EQ, None, None, _SKIP, _OTHER)
_OP_CHARS = {"-": "-", "−": "-", "+": "+", "*": "*", "×": "*", "·": "*", "/": "/", "÷": "/", "%": "%"}
_COMMANDS: dict[str, tuple[int, str]] = {
    "\\frac": (_FRAC, ""),
    "\\dfrac": (_FRAC, ""),
    "\\tfrac": (_FRAC, ""),
    "\\cdot": (_OP, "*"),
    "\\times": (_OP, "*"),
    "\\div": (_OP, "/"),
    "\\%": (_OP, "%"),
    "\\boxed": (_SKIP, ""),
    "\\left": (_SKIP, ""),
    "\\right": (_SKIP, ""),
    "\\$": (_SKIP, ""),
    "\\,": (_SKIP, ""),
    "\\!": (_SKIP, ""),
    "\\;": (_SKIP, ""),
    "\\:": (_SKIP, ""),
    "\\ ": (_SKIP, ""),
}
# Words right before a left-hand side that mean the expression really starts in the prose
# ("half of 10 = 5", "the sum of 5 and 3 = 8"): such claims are skipped, not judged. The weak
# ones only block a bare number ("5 and 3 = 8"), not an expression ("... and 4 * 2 = 8").
_TAIL_BLOCKERS = frozenset(
    ("of", "half", "twice", "double", "triple", "times", "plus", "minus", "by", "over", "per", "than")
    + ("negative", "between", "sqrt", "root", "squared", "cubed", "percent", "quarter", "third")
)
_WEAK_TAIL_BLOCKERS = frozenset(("and", "to", "from", "into", "with"))
# Words right after a right-hand side that change its value ("= 2 million", "= 20 percent").
_HEAD_BLOCKERS = frozenset(
    ("times", "percent", "hundred", "thousand", "million", "billion", "trillion", "dozen", "squared")
    + ("cubed", "plus", "minus", "over", "divided", "multiplied", "more", "less", "fewer", "halves")
    + ("thirds", "quarters", "fourths", "fifths", "power")
)
_ANNOTATION_RE = re.compile(r"<<([^<>]{0,400})>>")
_FINAL_RE = re.compile(r"\s*####")


class ExpressionError(ValueError):
    """An expression is not plain arithmetic, or exceeds the evaluation limits."""


class _LimitError(ExpressionError):
    """The input exceeds a safety limit (size, digits, depth, exponent)."""


class _ZeroDivision(ExpressionError):
    """The expression divides by zero."""


def _tokenize(text: str) -> list[tuple[int, str, int, int, bool]]:
    tokens: list[tuple[int, str, int, int, bool]] = []
    append = tokens.append
    glued = True
    operator_words = False
    for m in _TOKEN_RE.finditer(text):
        group = m.lastindex
        s = m.group()
        if group == 1:
            append((_NUM, s, m.start(), m.end(), glued))
        elif group == 2:
            glued = False
            continue
        elif group == 3:
            append((_OP, "^", m.start(), m.end(), glued))
        elif group == 4:
            append((_OP, _OP_CHARS[s], m.start(), m.end(), glued))
        elif group == 9:
            value = s.lower()
            operator_words |= value == "x" or value == "of"
            append((_WORD, value, m.start(), m.end(), glued))
        elif group == 8:
            kind, value = _COMMANDS.get(s, (_WORD, s))
            append((kind, value, m.start(), m.end(), glued))
        else:
            append((_GROUP_KINDS[group], s, m.start(), m.end(), glued))
        glued = True
    if operator_words:  # words acting as operators: "3 x 4" and "20% of 50"
        for i in range(1, len(tokens) - 1):
            kind, value, start, end, glued = tokens[i]
            if kind == _WORD and (value == "x" or value == "of"):
                prev, nxt = tokens[i - 1], tokens[i + 1]
                if nxt[0] == _SKIP and i + 2 < len(tokens):
                    nxt = tokens[i + 2]
                if nxt[0] not in (_NUM, _LP, _FRAC):
                    continue
                if (value == "x" and prev[0] in (_NUM, _RP)) or (value == "of" and prev[0] == _OP and prev[1] == "%"):
                    tokens[i] = (_OP, "*", start, end, glued)
    return tokens


# --------------------------------------------------------------------------------------------
# Exact evaluation.
# --------------------------------------------------------------------------------------------
def _check_size(v: Number) -> Number:
    if isinstance(v, int):
        if v.bit_length() > MAX_BITS:
            raise _LimitError(f"intermediate value exceeds {MAX_BITS} bits")
        return v
    if v.denominator == 1:
        return _check_size(v.numerator)
    if v.numerator.bit_length() > MAX_BITS or v.denominator.bit_length() > MAX_BITS:
        raise _LimitError(f"intermediate value exceeds {MAX_BITS} bits")
    return v


def _number(text: str) -> Number:
    digits = text.replace(",", "")
    if len(digits) > MAX_DIGITS + 1:
        raise _LimitError(f"number with more than {MAX_DIGITS} digits")
    if "." not in digits:
        return int(digits)
    whole, frac = digits.split(".")
    value = Fraction(int(whole + frac), 10 ** len(frac))
    return value.numerator if value.denominator == 1 else value


def _divide(a: Number, b: Number) -> Number:
    if b == 0:
        raise _ZeroDivision("division by zero")
    if isinstance(a, int) and isinstance(b, int):
        q, r = divmod(a, b)
        return q if r == 0 else _check_size(Fraction(a, b))
    return _check_size(Fraction(a) / b)


def _power(base: Number, exponent: Number) -> Number:
    if not isinstance(exponent, int):
        raise ExpressionError("non-integer exponent")
    if abs(exponent) > MAX_EXPONENT:
        raise _LimitError(f"exponent larger than {MAX_EXPONENT}")
    size = base.bit_length() if isinstance(base, int) else base.numerator.bit_length()
    if not isinstance(base, int):
        size = max(size, base.denominator.bit_length())
    if size * abs(exponent) > MAX_BITS:
        raise _LimitError(f"power exceeds {MAX_BITS} bits")
    if exponent < 0:
        if base == 0:
            raise _ZeroDivision("zero to a negative power")
        return _check_size(Fraction(1) / Fraction(base) ** -exponent)
    return _check_size(base**exponent)


class _Parser:
    """Recursive-descent evaluator.

    Tokens are one-character codes (``n`` number, ``( )`` groups, ``f`` for ``\\frac``, the
    operators ``+ - * / % ^``) with their texts, closed by the end marker ``$``.
    """

    __slots__ = ("codes", "depth", "pos", "texts")

    def __init__(self, tokens: list[tuple[int, str]]) -> None:
        codes = []
        for kind, value in tokens:
            if kind == _OP:
                codes.append(value)
            elif kind == _NUM:
                codes.append("n")
            elif kind == _LP:
                codes.append("(")
            elif kind == _RP:
                codes.append(")")
            elif kind == _FRAC:
                codes.append("f")
            else:
                codes.append("?")
        codes.append("$")
        self.codes = codes
        self.texts = [value for _, value in tokens]
        self.pos = 0
        self.depth = 0

    def parse(self) -> Number:
        if len(self.codes) == 1:
            raise ExpressionError("empty expression")
        value = self.expr()
        if self.codes[self.pos] != "$":
            raise ExpressionError(f"unexpected {self.texts[self.pos]!r}")
        return value

    def expr(self) -> Number:
        value = self.term()
        codes = self.codes
        while (c := codes[self.pos]) == "+" or c == "-":
            self.pos += 1
            rhs = self.term()
            value = _check_size(value + rhs if c == "+" else value - rhs)
        return value

    def term(self) -> Number:
        value = self.unary()
        codes = self.codes
        while True:
            c = codes[self.pos]
            if c == "*":
                self.pos += 1
                value = _check_size(value * self.unary())
            elif c == "/":
                self.pos += 1
                value = _divide(value, self.unary())
            elif c == "(" or c == "f":  # implicit multiplication: 2(3 + 4), 3\frac{1}{2}
                value = _check_size(value * self.unary())
            else:
                return value

    def unary(self) -> Number:
        negative = False
        codes = self.codes
        while (c := codes[self.pos]) == "-" or c == "+":
            self.pos += 1
            negative ^= c == "-"
        value = self.power()
        return -value if negative else value

    def power(self) -> Number:
        base = self.postfix()
        if self.codes[self.pos] == "^":
            self.pos += 1
            self.depth += 1  # right-associative chains recurse; bound them like parentheses
            if self.depth > MAX_DEPTH:
                raise _LimitError(f"nesting deeper than {MAX_DEPTH}")
            exponent = self.unary()
            self.depth -= 1
            return _power(base, exponent)
        return base

    def postfix(self) -> Number:
        value = self.primary()
        while self.codes[self.pos] == "%":
            self.pos += 1
            value = _divide(value, 100)
        return value

    def group(self) -> Number:
        if self.codes[self.pos] != "(":
            raise ExpressionError("expected '('")
        self.pos += 1
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _LimitError(f"nesting deeper than {MAX_DEPTH}")
        value = self.expr()
        if self.codes[self.pos] != ")":
            raise ExpressionError("unbalanced parentheses")
        self.pos += 1
        self.depth -= 1
        return value

    def primary(self) -> Number:
        c = self.codes[self.pos]
        if c == "n":
            self.pos += 1
            return _number(self.texts[self.pos - 1])
        if c == "(":
            return self.group()
        if c == "f":
            self.pos += 1
            numerator = self.group()
            return _divide(numerator, self.group())
        if c == "$":
            raise ExpressionError("expression ends too early")
        raise ExpressionError(f"unexpected {self.texts[self.pos]!r}")


def evaluate(expression: str) -> Fraction:
    """Evaluate a plain arithmetic expression exactly.

    Args:
        expression: Numbers, ``+ - * / ( )``, ``x``/``×``/``÷``/``·``, ``%``, small integer
            powers (``^``/``**``), ``\\frac{a}{b}``; currency signs are ignored.

    Returns:
        The exact value.

    Raises:
        ExpressionError: If the text is not plain arithmetic, divides by zero or exceeds a
            limit (:data:`MAX_STEP_CHARS`, :data:`MAX_DIGITS`, :data:`MAX_DEPTH`,
            :data:`MAX_EXPONENT`).

    Example:
        >>> evaluate("0.1 + 0.2") == Fraction(3, 10)
        True
        >>> evaluate("(48 / 2) x 3 - 25%")
        Fraction(287, 4)
    """
    if len(expression) > MAX_STEP_CHARS:
        raise _LimitError(f"expression longer than {MAX_STEP_CHARS} characters")
    tokens = [(t[0], t[1]) for t in _tokenize(expression) if t[0] != _SKIP]
    if any(kind not in _MATH_KINDS for kind, _ in tokens):
        raise ExpressionError(f"not a plain arithmetic expression: {expression!r}")
    return Fraction(_Parser(tokens).parse())


def format_value(value: Fraction | int, decimals: bool = False) -> str:
    """Canonical text of an exact value: ``36``, ``7/2``, or with ``decimals`` ``3.5``.

    Args:
        value: The value.
        decimals: Write non-integers with a terminating decimal expansion as decimals
            (``2.5``); other non-integers are always written as reduced fractions.

    Example:
        >>> format_value(Fraction(72, 2)), format_value(Fraction(7, 2)), format_value(Fraction(5, 2), True)
        ('36', '7/2', '2.5')
        >>> format_value(Fraction(-1, 3), decimals=True)
        '-1/3'
    """
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    if decimals:
        d = value.denominator
        twos = fives = 0
        while d % 2 == 0:
            d //= 2
            twos += 1
        while d % 5 == 0:
            d //= 5
            fives += 1
        if d == 1:
            places = max(twos, fives)
            scaled = abs(value.numerator) * 10**places // value.denominator
            whole, frac = divmod(scaled, 10**places)
            sign = "-" if value < 0 else ""
            return f"{sign}{whole}.{str(frac).rjust(places, '0')}"
    return f"{value.numerator}/{value.denominator}"


# --------------------------------------------------------------------------------------------
# Finding claims in prose.
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepCheck:
    """The verdict of :func:`check_step` on one reasoning step.

    Attributes:
        verdict: ``"correct"``, ``"wrong"`` or ``"unverifiable"``.
        reason: A short human-readable explanation.
        lhs_value: Exact value of the left side of the deciding claim (the first false claim
            when wrong, the last checked claim when correct), else ``None``.
        claimed: Exact value of the right side of that claim, else ``None``.
        claim: The text of that claim (e.g. ``"48/2 = 24"``), else ``""``.
        checked: How many claims were checked.
    """

    verdict: StepVerdict
    reason: str
    lhs_value: Fraction | None = None
    claimed: Fraction | None = None
    claim: str = ""
    checked: int = 0


@dataclass
class _Side:
    tokens: list[tuple[int, str]]
    start: int  # character offsets into the text
    end: int
    literal_places: int | None  # decimal places if the side is a single decimal literal
    unit_after: bool = False  # a word follows the side ("= 500 cents")
    chained: bool = False  # the side follows another "=" ("a = b = c")
    value: Number | None = None
    error: ExpressionError | None = None


def _balance(toks: list[tuple[int, str, int, int, bool]], s: int, e: int, anchor_right: bool) -> tuple[int, int]:
    """Shrink toks[s:e] to balanced parentheses, cutting away from the anchored end."""
    if anchor_right:  # left side of "=": keep the end next to "=", cut on the left
        depth = 0
        for j in range(e - 1, s - 1, -1):
            kind = toks[j][0]
            if kind == _RP:
                depth += 1
            elif kind == _LP:
                depth -= 1
                if depth < 0:
                    s = j + 1
                    break
        depth = 0
        for j in range(s, e):
            kind = toks[j][0]
            if kind == _LP:
                depth += 1
            elif kind == _RP:
                depth -= 1
                if depth < 0:
                    s, depth = j + 1, 0
    else:  # right side of "=": keep the start, cut on the right
        depth = 0
        for j in range(s, e):
            kind = toks[j][0]
            if kind == _LP:
                depth += 1
            elif kind == _RP:
                depth -= 1
                if depth < 0:
                    e = j
                    break
        depth = 0
        for j in range(e - 1, s - 1, -1):
            kind = toks[j][0]
            if kind == _RP:
                depth += 1
            elif kind == _LP:
                depth -= 1
                if depth < 0:
                    e, depth = j, 0
    return s, e


def _blocking_word(tok: tuple[int, str, int, int, bool], blockers: frozenset[str]) -> bool:
    return tok[0] == _WORD and (tok[1] in blockers or tok[1].startswith("\\"))


def _make_side(toks: list[tuple[int, str, int, int, bool]], s: int, e: int) -> _Side:
    inner = [(t[0], t[1]) for t in toks[s:e] if t[0] != _SKIP]
    places = None
    if len(inner) == 1 and inner[0][0] == _NUM:
        text = inner[0][1]
        places = len(text) - text.index(".") - 1 if "." in text else 0
    return _Side(inner, toks[s][2], toks[e - 1][3], places)


def _left_side(toks: list[tuple[int, str, int, int, bool]], k: int) -> _Side | None:
    """The arithmetic expression ending right before the "=" at toks[k], or None."""
    s = k
    while s > 0 and toks[s - 1][0] in _MATH_KINDS:
        s -= 1
    s, e = _balance(toks, s, k, anchor_right=True)
    while s < e and toks[s][0] == _SKIP:
        s += 1
    while e > s and toks[e - 1][0] == _SKIP:
        e -= 1
    if s >= e:
        return None
    first = toks[s]
    if first[0] == _OP and first[1] != "-":
        return None  # "3x + 4 = 19": the expression starts with a variable
    if s > 0:
        prev = toks[s - 1]
        if prev[0] == _WORD and (
            first[4]
            or prev[1] in _TAIL_BLOCKERS
            or (prev[1] in _WEAK_TAIL_BLOCKERS and e - s == 1)
            or prev[1].startswith("\\")
            or (first[1] == "-" and len(prev[1]) == 1)
        ):
            return None  # glued to a word ("x2", "3kg"), operator word, variable ("x - 4")
        if (
            prev[0] == _OTHER
            and first[4]
            and (prev[1] == ":" or (prev[1] in ",." and s > 1 and toks[s - 2][0] == _NUM))
        ):
            return None  # a time ("3:30"), a decimal comma ("1,5") or a version ("1.2.3")
    side = _make_side(toks, s, e)
    j = s - 1
    while j >= 0 and toks[j][0] == _SKIP:
        j -= 1
    side.chained = j >= 0 and toks[j][0] == _EQ
    return side


def _right_side(toks: list[tuple[int, str, int, int, bool]], k: int) -> _Side | None:
    """The arithmetic expression starting right after the "=" at toks[k], or None."""
    n = len(toks)
    e = k + 1
    while e < n and toks[e][0] in _MATH_KINDS:
        e += 1
    s, e = _balance(toks, k + 1, e, anchor_right=False)
    while s < e and toks[s][0] == _SKIP:
        s += 1
    while e > s and toks[e - 1][0] == _SKIP:
        e -= 1
    if s >= e:
        return None
    last = toks[e - 1]
    if (last[0] == _OP and last[1] != "%") or last[0] == _FRAC:
        return None  # "= 15 - x": continues with a variable
    if e < n:
        nxt = toks[e]
        if nxt[0] == _WORD and (nxt[4] or nxt[1] in _HEAD_BLOCKERS or nxt[1].startswith("\\")):
            return None  # "= 3x", "= 2 million", "= 5\sqrt{2}"
        if (
            nxt[0] == _OTHER
            and nxt[4]
            and (nxt[1] in ":!" or (nxt[1] in ",." and e + 1 < n and toks[e + 1][0] == _NUM and toks[e + 1][4]))
        ):
            return None  # "= 3:45", "= 5!", "= 1,5"
        if nxt[0] == _LP and nxt[4]:
            return None  # "= 2(x + 1)": implicit product with a non-numeric group
    side = _make_side(toks, s, e)
    side.unit_after = e < n and toks[e][0] == _WORD
    return side


def _evaluate_side(side: _Side) -> None:
    if side.value is None and side.error is None:
        try:
            side.value = _Parser(side.tokens).parse()
        except ExpressionError as exc:
            side.error = exc
        except RecursionError:  # pragma: no cover - depth is bounded well below the limit
            side.error = _LimitError("nesting too deep")


def _agrees(lhs: Number, rhs: Number, rhs_places: int | None, approx: bool) -> bool:
    """Exact equality, or a decimal literal that rounds or truncates the exact value."""
    if lhs == rhs:
        return True
    if rhs_places is None:
        return False
    lhs = Fraction(lhs)
    if not approx:
        # "= 3.33" is accepted for 10/3 only: the exact value has no finite decimal expansion,
        # so any decimal the writer gives must be rounded. "1.25 + 1 = 2.2" stays wrong.
        d = lhs.denominator
        while d % 2 == 0:
            d //= 2
        while d % 5 == 0:
            d //= 5
        if d == 1 or rhs_places == 0:
            return False
    if (lhs < 0) != (rhs < 0) and rhs != 0:
        return False
    scale = 10**rhs_places
    scaled, written = abs(lhs) * scale, abs(Fraction(rhs)) * scale
    floor = scaled.numerator // scaled.denominator
    return written == floor or (written == floor + 1 and scaled - floor >= Fraction(1, 2))


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Fraction) -> str:
    text = format_value(value, decimals=True)
    if len(text) > 40:
        return _clip(text, 40)
    if "/" in text:
        with contextlib.suppress(OverflowError):
            text += f" (about {float(value):.6g})"
    return text


# A checked claim: (lhs value, rhs value, text, lhs start, lhs end, rhs end).
_Claim = tuple[Number, Number, str, int, int, int]


class _Tally:
    __slots__ = ("checked", "last", "limit", "rounded", "wrong", "zero")

    def __init__(self) -> None:
        self.checked = 0
        self.rounded = False
        self.last: _Claim | None = None
        self.wrong: _Claim | None = None
        self.limit: str | None = None
        self.zero: str | None = None


def _check_text(text: str, tally: _Tally) -> None:
    toks = _tokenize(text)
    for k, tok in enumerate(toks):
        if tok[0] != _EQ:
            continue
        lhs = _left_side(toks, k)
        rhs = _right_side(toks, k) if lhs is not None else None
        if lhs is None or rhs is None:
            continue
        _evaluate_side(lhs)
        _evaluate_side(rhs)
        if (
            lhs.literal_places is not None
            and rhs.literal_places is not None
            and rhs.unit_after
            and not lhs.chained
            and lhs.value != rhs.value
        ):
            continue  # "$5 = 500 cents": a unit conversion, not a calculation
        if lhs.value is None or rhs.value is None:
            for side in (lhs, rhs):
                claim = _clip(text[lhs.start : rhs.end])
                if isinstance(side.error, _ZeroDivision) and tally.zero is None:
                    tally.zero = f"division by zero in {claim!r}"
                elif isinstance(side.error, _LimitError) and tally.limit is None:
                    tally.limit = f"{side.error} in {claim!r}"
            continue
        tally.checked += 1
        found = (lhs.value, rhs.value, text, lhs.start, lhs.end, rhs.end)
        if _agrees(lhs.value, rhs.value, rhs.literal_places, tok[1] == "≈"):
            tally.rounded |= lhs.value != rhs.value
            tally.last = found
        elif tally.wrong is None:
            tally.wrong = found


def _result(verdict: StepVerdict, claim: _Claim, checked: int, reason: str = "") -> StepCheck:
    lhs_value, claimed, text, start, mid, end = claim
    lhs_value, claimed = Fraction(lhs_value), Fraction(claimed)
    if not reason:
        reason = f"{_clip(text[start:mid])} is {_describe(lhs_value)}, not {_describe(claimed)}"
    return StepCheck(verdict, reason, lhs_value, claimed, _clip(text[start:end], 200), checked)


def check_step(step: str) -> StepCheck:
    """Check every arithmetic claim (``expr = value``) in one reasoning step.

    Claims are found around each ``=`` (or ``≈``, which accepts rounding): the arithmetic
    expression just left of it and the one just right of it, so prose, ``$`` and trailing units
    around them are ignored, and a chain ``a = b = c`` is checked link by link. GSM8K
    calculator annotations ``<<48/2=24>>`` are checked as claims of their own. A decimal
    literal on the right may round a value with no finite decimal expansion
    (``10 / 3 = 3.33``); otherwise equality is exact.

    Args:
        step: One reasoning step (a line of a solution).

    Returns:
        ``"wrong"`` if any claim is false or divides by zero (the first false claim is
        reported); ``"unverifiable"`` if no claim could be checked or some claim exceeded a
        safety limit; otherwise ``"correct"``. The final answer line ``#### X`` is always
        ``"unverifiable"`` (the outcome reward grades answers). Never raises on a ``str``.

    Example:
        >>> check_step("A chain: 3 * 4 = 12 = 2 * 6").verdict
        'correct'
        >>> r = check_step("So 1/3 + 1/6 = 0.4 of the cake is eaten.")
        >>> r.verdict, r.lhs_value, r.claimed
        ('wrong', Fraction(1, 2), Fraction(2, 5))
        >>> check_step("Solve 3x + 4 = 19 for x.").verdict
        'unverifiable'
        >>> check_step("#### 36").reason
        'final answer line; graded by the outcome reward'
    """
    if not isinstance(step, str):
        return StepCheck("unverifiable", f"a step must be a str, got {type(step).__name__}")
    if len(step) > MAX_STEP_CHARS:
        return StepCheck("unverifiable", f"step longer than {MAX_STEP_CHARS} characters; not parsed")
    if _FINAL_RE.match(step):
        return StepCheck("unverifiable", "final answer line; graded by the outcome reward")
    if "=" not in step and "≈" not in step:
        return StepCheck("unverifiable", "no claim (no '=') to check")
    tally = _Tally()
    text = step
    if "<<" in step:
        for m in _ANNOTATION_RE.finditer(step):
            _check_text(m.group(1), tally)
        text = _ANNOTATION_RE.sub("", step)
    _check_text(text, tally)
    if tally.zero is not None:
        return StepCheck("wrong", tally.zero, checked=tally.checked)
    if tally.wrong is not None:
        return _result("wrong", tally.wrong, tally.checked)
    if tally.limit is not None:
        return StepCheck("unverifiable", f"beyond the checker's limits: {tally.limit}", checked=tally.checked)
    if tally.last is None:
        return StepCheck("unverifiable", "no arithmetic claim with numeric sides on both ends of '='")
    reason = "every claim holds" if tally.checked > 1 else "the claim holds"
    if tally.rounded:
        reason += " (decimals rounded to their written precision)"
    return _result("correct", tally.last, tally.checked, reason)


def check_steps(steps: Iterable[str]) -> list[StepCheck]:
    """:func:`check_step` on each step, in order."""
    return [check_step(step) for step in steps]


def first_error(steps: Sequence[str]) -> int | None:
    """Index of the first step whose verdict is ``"wrong"``, or ``None`` if there is none.

    Example:
        >>> first_error(["3 + 4 = 7", "I double it.", "7 * 2 = 14", "#### 14"]) is None
        True
    """
    for i, step in enumerate(steps):
        if check_step(step).verdict == "wrong":
            return i
    return None
