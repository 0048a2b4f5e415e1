"""Extraction: find the final answer in a model completion (linear time)."""

from __future__ import annotations

import re

from .common import MAX_ANSWER_CHARS, MAX_COMPLETION_CHARS

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
