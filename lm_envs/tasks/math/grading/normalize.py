"""Normalization: linear-time string rewriting of an answer into the text the parser reads."""

from __future__ import annotations

import re
import unicodedata

from .common import _KNOWN_WORDS
from .extract import _answer_region, _undouble

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
_THOUSANDS_COMMA_RE = re.compile(r"(?<![\d.])[1-9]\d{0,2}(?:,\d{3})+(?!\d)")
# Unambiguous LaTeX thousands separators between digits: 14{,}916, 14 {, }916, 32,\!349.
_LATEX_THOUSANDS_RE = re.compile(r"(?<=\d)\s*(?:\{\s*,\s*\}|,\\!)\s*(?=\d{3}(?!\d))")
_BRACKET_WORD_OPS_RE = re.compile(r"(?<=[)\]}])\s*(?:or|and)\s*(?=[(\[{\\])")
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
    if not s.isprintable():
        s = _CONTROL_RE.sub(" ", s)
    if "\\" in s:
        s = _undouble(s)
    if "\\" in s or "$" in s:
        s = _answer_region(s)
    if "," in s:
        s = _LATEX_THOUSANDS_RE.sub("", s)
    if "\\" in s or "{" in s:
        for old, new in _PRE_REPLACE:
            if old in s:
                s = s.replace(old, new)
    if "\\" in s:
        s = _CMD_RE.sub(_replace_command, s)
    if "$" in s:
        s = s.replace("$", " ")
    if "\\" in s:
        s = _unwrap_text(s)
    if ";" in s and "=" in s:
        s = _assignment_groups(s)
    if "%" in s or ";" in s:
        s = s.replace("%", " ").replace(";", ",")
    if "or" in s or "and" in s:
        s = _WORD_OPS_RE.sub(", ", s)
        s = _BRACKET_WORD_OPS_RE.sub(", ", s)
    if "," in s:
        s = _THOUSANDS_COMMA_RE.sub(_join_thousands, s)
    if " " in s:
        s = _THOUSANDS_SPACE_RE.sub(lambda m: m.group().replace(" ", ""), s)
    s = _strip_units(s)
    s = s.strip()
    while s and s[-1] in ".^":
        s = s[:-1].rstrip()
    return s


_ASSIGNMENT_RE = re.compile(r"\s*([A-Za-z](?:_\{?\w{1,8}\}?)?)\s*=\s*([^=]{1,200}?)\s*")


def _assignment_groups(s: str) -> str:
    """``p=5,q=2;p=7,q=2`` → ``(p,q)=(5,2), (p,q)=(7,2)``: ";" separates solutions of several unknowns."""
    groups = []
    for part in s.split(";"):
        items = [_ASSIGNMENT_RE.fullmatch(item) for item in part.split(",")]
        if len(items) < 2 or not all(items):
            return s
        labels = ",".join(m.group(1) for m in items)  # type: ignore[union-attr]
        values = ",".join(m.group(2) for m in items)  # type: ignore[union-attr]
        groups.append(f"({labels})=({values})")
    return ", ".join(groups)


def _join_thousands(m: re.Match[str]) -> str:
    """``1,000`` → ``1000``, except a lone pair in brackets: ``(12,102)`` is an interval."""
    text, start, end = m.string, m.start(), m.end()
    if text.count(",", start, end) == 1 and text[start - 1 : start] in ("(", "[") and text[end : end + 1] in (")", "]"):
        return m.group()
    return m.group().replace(",", "")


def _replace_command(m: re.Match[str]) -> str:
    name = m.group(1)
    if name is not None:
        if name not in _CMD_MAP and name.startswith("quad") and len(name) > 4:  # \quadx: \quad x
            return " " + name[4:]
        if name not in _CMD_MAP and name.startswith("qquad") and len(name) > 5:
            return " " + name[5:]
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
    last = t[-1:]
    if not last or last in ")]|" or (last.isdigit() and last not in "23"):
        return s  # no unit can end here
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
