"""Parsing: a bounded recursive-descent parser from normalized text to a tree of tuples."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from .common import (
    _FUNCS,
    _INF_WORDS,
    _KNOWN_WORDS,
    EXPONENT_TOO_LARGE,
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_NUMBER_DIGITS,
    NUMBER_TOO_LONG,
    TOO_DEEP,
    TOO_MANY_ITEMS,
    _Refused,
    _Syntax,
)
from .fast import _rational, _to_poly

#
# Scalars:  ("num", numerator, denominator, is_decimal)  ("sym", name)  ("inf",)
#           ("add", terms)  ("neg", x)  ("mul", factors)  ("inv", x)  ("pow", base, exp)
#           ("root", x, index | None)  ("fact", x)  ("binom", n, k)  ("func", name, x)
#           ("log", x, base | None)  ("abs", x)
# Containers: ("tuple", open, close, items)  ("set", items)  ("list", items)  ("union", items)
#           ("bset", items): {a, b} with plain braces (a set, or a list in order against a tuple)
#           ("ratio", items): a:b   ("matrix", rows): rows of scalars
#           ("rel", ops, operands)


_TOKEN_RE = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<word>[A-Za-z]+)"
    r"|(?P<cmd>\\(?:[A-Za-z]+|.))"
    r"|(?P<op><=|>=|!=|\*\*|[-+*/^_!()\[\]{},=<>|:&])",
    re.S,
)
_CONTAINERS = frozenset({"tuple", "set", "bset", "list", "union", "rel", "ratio", "matrix"})
_MATRIX_ENVS = frozenset({"pmatrix", "bmatrix", "Bmatrix", "matrix", "smallmatrix", "array"})
_GREEK = frozenset(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi rho sigma "  # noqa: SIM905 (a word list)
    "tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega".split()
)
_INVERSE_TRIG = {"sin": "arcsin", "cos": "arccos", "tan": "arctan"}
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
        elif kind == "word" and len(text) > _MAX_LETTER_RUN and text not in _KNOWN_WORDS and not _names_group(tokens):
            raise _Syntax(f"word {text[:40]!r} is not mathematics")
        tokens.append((kind, text, space))
        space = False
    tokens.append(("end", "", space))
    return tokens


def _operand(node: tuple[Any, ...]) -> tuple[Any, ...]:
    """A scalar or a matrix (the operands of + - and *)."""
    return node if node[0] == "matrix" else _scalar(node)


def _negate(node: tuple[Any, ...]) -> tuple[Any, ...]:
    if node[0] == "matrix":
        return ("matrix", tuple(tuple(("neg", e) for e in row) for row in node[1]))
    return ("neg", node)


_MAX_MATRIX_PRODUCT = 16
"""Largest inner dimension of a matrix product that is expanded."""


def _matrix_sum(terms: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """A sum of matrices of one shape, entry by entry."""
    shape = None
    for term in terms:
        if term[0] != "matrix":
            raise _Syntax("a matrix plus a scalar")
        term_shape = (len(term[1]), len(term[1][0]))
        if shape is not None and term_shape != shape:
            raise _Syntax("a sum of matrices of different shapes")
        shape = term_shape
    assert shape is not None
    rows, cols = shape
    return ("matrix", tuple(tuple(("add", tuple(t[1][i][j] for t in terms)) for j in range(cols)) for i in range(rows)))


def _matrix_product(factors: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Scalars times matrices, the matrices multiplied in order."""
    scalars = [f for f in factors if f[0] != "matrix"]
    matrices = [f for f in factors if f[0] == "matrix"]
    result = matrices[0][1]
    for other in matrices[1:]:
        right = other[1]
        inner = len(result[0])
        if inner != len(right) or inner > _MAX_MATRIX_PRODUCT or len(result) * len(right[0]) > MAX_ITEMS:
            raise _Syntax("a matrix product of mismatched or too large shapes")
        result = tuple(
            tuple(("add", tuple(("mul", (row[k], right[k][j])) for k in range(inner))) for j in range(len(right[0])))
            for row in result
        )
    if scalars:
        result = tuple(tuple(("mul", (*scalars, e)) for e in row) for row in result)
    return ("matrix", result)


def _names_group(tokens: list[_Token]) -> bool:
    """Whether the next token is the name in ``\\begin{...}``, ``\\end{...}`` or a subscript ``_{...}``."""
    return (
        len(tokens) >= 2
        and tokens[-1][:2] == ("op", "{")
        and tokens[-2][:2] in (("cmd", "\\begin"), ("cmd", "\\end"), ("op", "_"))
    )


def _number_node(text: str) -> tuple[Any, ...]:
    if text.isdigit():  # the common case
        return ("num", int(text), 1, False)
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
        kind = {"rel": "a relation", "set": "a set", "bset": "a set", "union": "a union"}.get(node[0], "a tuple")
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
        operands = [self.parse_ratio()]
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
            operands.append(self.parse_ratio())
        return operands[0] if not ops else ("rel", tuple(ops), tuple(operands))

    def parse_ratio(self) -> tuple[Any, ...]:
        first = self.parse_union()
        if self.toks[self.i][1] != ":":
            return first
        items = [_scalar(first)]
        while self.at("op", ":"):
            self.advance()
            items.append(_scalar(self.parse_union()))
            if len(items) > MAX_ITEMS:
                raise _Refused(f"{TOO_MANY_ITEMS}: more than {MAX_ITEMS}")
        return ("ratio", tuple(items))

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
            if item[0] not in ("tuple", "set", "bset"):
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
                term = _operand(self.parse_term())
                terms.append(term if op == "+" else _negate(term))
            elif pm_at is None and self.at("cmd", "\\pm", "\\mp"):
                self.advance()
                pm_at = len(terms)
                terms.append(_scalar(self.parse_term()))
            else:
                break
        if pm_at is None and len(terms) == 1:
            return terms[0]
        if pm_at is None and any(term[0] == "matrix" for term in terms):  # rare: only sums of 2+ terms
            return _matrix_sum(terms)
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
                factor = _operand(self.parse_unary()) if tok[1] == "*" else ("inv", _scalar(self.parse_unary()))
                factors.append(factor)
            elif self._implicit_factor_follows(tok):
                factors.append(_operand(self.parse_power()))
            else:
                break
        if len(factors) == 1:
            return factors[0]
        for factor in factors:
            if factor[0] == "matrix":
                return _matrix_product(factors)
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
            return name in ("frac", "sqrt", "binom", "pi", "infty", "begin") or name in _FUNCS or name in _GREEK
        return kind == "op" and text in ("(", "{")

    def parse_unary(self) -> tuple[Any, ...]:
        if self.at("op", "-", "+"):
            sign = self.advance()[1]
            self._enter()
            operand = _operand(self.parse_unary())
            self.depth -= 1
            return _negate(operand) if sign == "-" else operand
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
            return "".join(parts) if len(parts) == 1 else "{" + "".join(parts) + "}"
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
        if name == "begin":
            return self._matrix()
        if name.isalpha() and self._operand_ends():  # "1 = \\zzz = x = 0": a whole operand, a symbol
            return ("sym", "\\" + name)
        raise _Syntax(f"unsupported command \\{name}")

    def _operand_ends(self) -> bool:
        kind, text, _ = self.peek()
        return kind == "end" or (kind == "op" and text in ("=", "<", ">", "<=", ">=", "!=", ",", ":"))

    def _env_name(self) -> str:
        self.expect("op", "{")
        kind, text, _ = self.advance()
        if kind != "word":
            raise _Syntax("bad environment name")
        self.expect("op", "}")
        return text

    def _matrix(self) -> tuple[Any, ...]:
        """``\\begin{pmatrix} a & b \\\\ c & d \\end{pmatrix}`` (also bmatrix, array) as rows of scalars."""
        env = self._env_name()
        if env not in _MATRIX_ENVS:
            raise _Syntax(f"unsupported environment {env}")
        if env == "array" and self.at("op", "{"):  # the column spec
            self.advance()
            for _ in range(MAX_ITEMS):
                if self.advance()[1] == "}":
                    break
            else:
                raise _Syntax("bad array column spec")
        self._enter()
        rows: list[tuple[Any, ...]] = []
        row: list[tuple[Any, ...]] = []
        while True:
            if self.at("cmd", "\\end"):
                self.advance()
                if self._env_name() != env:
                    raise _Syntax("mismatched \\end")
                break
            if self.at("end"):
                raise _Syntax(f"unclosed {env}")
            row.append(_scalar(self.parse_sum()))
            if self.at("op", "&"):
                self.advance()
                continue
            if self.at("cmd", "\\\\"):
                self.advance()
            rows.append(tuple(row))
            row = []
            if len(rows) > MAX_ITEMS:
                raise _Refused(f"{TOO_MANY_ITEMS}: more than {MAX_ITEMS} rows")
        if row:
            rows.append(tuple(row))
        self.depth -= 1
        if not rows or any(len(r) != len(rows[0]) for r in rows):
            raise _Syntax("ragged matrix")
        return ("matrix", tuple(rows))

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
        if closer == "}":
            return items[0] if len(items) == 1 else ("bset", tuple(items))
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
    """Whether ``node`` names the answer: ``x``, ``(x, y)``, ``f(x)``, ``AB``, ``|AB|``, ``V_1:V_2``."""
    tag = node[0]
    if tag == "sym":
        return node[1] not in ("\\pi", "e", "i")
    if tag == "tuple":
        return all(item[0] == "sym" for item in node[3])
    if tag in ("mul", "ratio"):
        return all(_is_label_factor(item) for item in node[1])
    if tag == "abs":
        return _is_symbolic_target(node[1])
    return False


def _is_label_factor(node: tuple[Any, ...]) -> bool:
    if node[0] == "inv":
        node = node[1]
    return _is_symbolic_target(node)


def _is_assignment(node: tuple[Any, ...]) -> bool:
    return node[0] == "rel" and node[1] == ("=",) and _is_symbolic_target(node[2][0])


def _has_variable(node: Any) -> bool:
    if isinstance(node, tuple) and node:
        if node[0] == "sym":
            return node[1] not in ("\\pi", "e", "i")
        return any(_has_variable(child) for child in node[1:])
    return False


_FLIP = {">": "<", ">=": "<="}


def _as_interval(node: tuple[Any, ...]) -> tuple[Any, ...]:
    """``a < x <= b`` (constants around an expression in one variable) → the interval ``(a, b]``."""
    if node[0] != "rel" or len(node[1]) != 2:
        return node
    ops, operands = node[1], node[2]
    if all(op in _FLIP for op in ops):
        ops, operands = tuple(_FLIP[op] for op in reversed(ops)), tuple(reversed(operands))
    if not all(op in ("<", "<=") for op in ops):
        return node
    low, middle, high = operands
    if low[0] in _CONTAINERS or high[0] in _CONTAINERS or middle[0] in _CONTAINERS:
        return node
    if not _has_variable(middle) or _has_variable(low) or _has_variable(high):
        return node
    left, right = "(" if ops[0] == "<" else "[", ")" if ops[1] == "<" else "]"
    if middle[0] == "abs" and _positive_constant(low):  # a <= |x| <= b: [-b, -a] U [a, b]
        mirrored = ("tuple", "(" if right == ")" else "[", ")" if left == "(" else "]", (("neg", high), ("neg", low)))
        return ("union", (mirrored, ("tuple", left, right, (low, high))))
    return ("tuple", left, right, (low, high))


def _positive_constant(node: tuple[Any, ...]) -> bool:
    value = _rational(_to_poly(node))
    return value is not None and value > 0


def _label_key(node: tuple[Any, ...]) -> str:
    return repr(node)


def _align_labels(g: tuple[Any, ...], p: tuple[Any, ...]) -> tuple[Any, ...]:
    """``a_3 = 2, a_37 = 19`` against ``a_37 = 19, a_3 = 2``: ``p`` reordered by ``g``'s labels."""
    if g[0] != "list" or p[0] != "list" or len(g[1]) != len(p[1]):
        return p
    if not all(_is_assignment(item) for item in g[1] + p[1]):
        return p
    by_label: dict[str, list[tuple[Any, ...]]] = {}
    for item in p[1]:
        by_label.setdefault(_label_key(item[2][0]), []).append(item)
    ordered = []
    for item in g[1]:
        bucket = by_label.get(_label_key(item[2][0]))
        if not bucket:
            return p
        ordered.append(bucket.pop(0))
    return ("list", tuple(ordered))


def _prepare(node: tuple[Any, ...]) -> tuple[Any, ...]:
    if node[0] == "list":
        items = node[1]
        if _is_assignment(items[0]) and not any(item[0] == "rel" for item in items[1:]):
            # "a = 4, -8, -10": the values of one unknown, a set
            return ("set", (_reduce_assignment(items[0]), *items[1:]))
        return ("list", tuple(_as_interval(_reduce_assignment(item)) for item in items))
    if node[0] in ("set", "bset"):
        return (node[0], tuple(_as_interval(_reduce_assignment(item)) for item in node[1]))
    return _as_interval(_reduce_assignment(node))
