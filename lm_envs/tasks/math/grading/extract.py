"""Extraction: find the final answer in a model completion (linear time)."""

from __future__ import annotations

import re
from collections.abc import Callable

from .common import MAX_ANSWER_CHARS, MAX_COMPLETION_CHARS

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BRACE_RE = re.compile(r"\\.|[{}]", re.S)
_HEADING_RE = re.compile(r"[A-Za-z]{2}")
# Linear: a failed match backtracks only through the run after one "answer", and runs are disjoint.
_PHRASE_RE = re.compile(r"\banswer\b[ \t*]*(?:is\b[\s*:]*|:[\s*]*)", re.I)
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)")
_LAST_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+(?!\.\d|\d))?")
# A doubled backslash before a command name (text that was escaped twice, "\\\\frac"): one backslash.
_DOUBLED_RE = re.compile(
    r"(?<!\\)\\\\(?=(?:frac|dfrac|tfrac|left|right|sqrt|boxed|fbox|text|mathrm|cdot|times|pi|infty|leq?|geq?|"
    r"neq|cup|pm|in)(?![A-Za-z]))"
)
_DOLLAR_RE = re.compile(r"(?<!\\)\$")
_DOUBLE_DOLLAR_RE = re.compile(r"(?<!\\)\$\$")
# A word of prose: two or more letters, not a command name, not "and"/"or" between answers.
_PROSE_RE = re.compile(r"(?<![\\A-Za-z])(?!(?:and|or)(?![A-Za-z]))[A-Za-z]{2,}")
# What may stand between the parts of one answer (several boxes or math spans).
_SEPARATOR_GAP_RE = re.compile(r"[\s,;.$]*(?:(?:and|or|\\q?quad|\\text\{\s*(?:and|or)\s*\}|\\[()\[\]])[\s,;.$]*)*")
# ... and between boxes also a one-letter label: "\boxed{1}$ and $y_2 = \boxed{2}".
_BOX_GAP_RE = re.compile(
    r"[\s,;.$]*(?:(?:and|or|\\q?quad|\\text\{\s*(?:and|or)\s*\}|\\[()\[\]]|"
    r"[A-Za-z](?:_\{?[A-Za-z0-9]{1,4}\}?)?\s*=)[\s,;.$]*)*"
)
_MAX_BOX_GAP = 40
_ENDS_WITH_AND_RE = re.compile(r"(?<![A-Za-z])(?:and|or)(?:\s|\$|\}|\\[()\[\]])*$")


def extract_answer(text: str, *, fallback_last_math: bool = False, fallback_last_number: bool = False) -> str | None:
    r"""Find the final answer in a model completion.

    Conventions (the answer marker that comes last in the text wins, so a final "The final answer
    is X" after an intermediate ``\boxed{}`` gives X):

    1. ``\boxed{...}`` or ``\fbox{...}`` (balanced braces, nesting allowed; ``\boxed 5`` too): the
       last complete box, together with the boxes just before it when only separators stand
       between them (commas, "and", "or", ``\quad``, math delimiters, a one-letter label such as
       ``y =``, or a few words without digits that end in "and"/"or": ``\boxed{1} papers and
       \boxed{2}``): ``\boxed{1} and \boxed{2}`` is the set ``\{1, 2\}``; repeats of the same box
       count once); an unclosed last box is skipped;
    2. the last ``#### X`` line (GSM8K), skipping markdown headings (``#### Step 2``: the text
       after ``####`` starts with a word of two or more letters);
    3. the last "answer is X" / "answer: X" phrase (case-insensitive, so "The final answer is",
       "**Answer:**"): X is the ``$...$``, ``$$...$$``, ``\(...\)`` or ``\[...\]`` span that
       follows (with the spans after it across separators: "the answer is $5$ or $6$" is the
       list ``5, 6``, so hedging never pays), else the rest of the line up to the end of the
       sentence; when that is prose
       ("The largest $n$ is 34"), its last math span, else what follows its last " is ", else
       its last number;
    4. only with ``fallback_last_math=True``: the last ``$...$``, ``$$...$$``, ``\(...\)`` or
       ``\[...\]`` span (with the spans just before it when only separators stand between);
    5. only with ``fallback_last_number=True``: the last number (or ``a/b``) in the text (a
       heuristic that rewards any completion that happens to end with the right number, hence
       off by default).

    Surrounding whitespace, a trailing period, ``**`` and ``$`` wrappers are stripped. Only the
    last :data:`MAX_COMPLETION_CHARS` characters are read; every step is linear in the length.

    Args:
        text: The completion.
        fallback_last_math: Use convention 4 when 1-3 find nothing (Math-Verify's default reads
            the last LaTeX expression of the text in the same way).
        fallback_last_number: Use convention 5 when 1-4 find nothing.

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
        >>> extract_answer(r"The roots are $\boxed{2}$ and $\boxed{3}$.")
        '\\{2, 3\\}'
        >>> extract_answer("I think it is 12.") is None
        True
        >>> extract_answer(r"Therefore $x \geq 5$ is the solution.", fallback_last_math=True)
        'x \\geq 5'
        >>> extract_answer("I think it is 12.", fallback_last_number=True)
        '12'
    """
    if not isinstance(text, str):
        raise TypeError(f"extract_answer needs the completion as a str, got {type(text).__name__}.")
    if len(text) > MAX_COMPLETION_CHARS:
        text = text[-MAX_COMPLETION_CHARS:]
    text = _undouble(text)
    best: tuple[int, str] | None = None
    for finder in (_final_boxes, _last_hashes, _last_phrase):
        found = finder(text)
        if found is not None and (best is None or found[0] > best[0]):
            best = found
    if best is not None:
        return best[1]
    math = _final_math_run(text) if fallback_last_math else None
    number = _last_number(text) if fallback_last_number else None
    if math is not None and number is not None:  # both: the one that comes later
        return number[1] if number[0] > math[0] else math[1]
    found = math or number
    return None if found is None else found[1]


def _undouble(text: str) -> str:
    """``\\\\frac`` → ``\\frac`` (a twice-escaped backslash before a command name)."""
    return _DOUBLED_RE.sub(r"\\", text) if "\\\\" in text else text


def _last_number(text: str) -> tuple[int, str] | None:
    """Where the last number of the text ends, and the number."""
    last = None
    for match in _LAST_NUMBER_RE.finditer(text):
        last = match
    return None if last is None else (last.end(), last.group())


def _box_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every complete ``\\boxed{}``/``\\fbox{}`` (or ``\\boxed X``), in order."""
    starts = list(_BOXED_RE.finditer(text))
    if not starts:
        return []
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
    spans: list[tuple[int, int, str]] = []
    for m in starts:
        if spans and m.start() < spans[-1][1]:
            continue  # a box inside the previous box's argument
        j = m.end()
        while j < n and text[j] in " \t":
            j += 1
        if j < n and text[j] == "{":
            k = match.get(j)
            if k is not None and text[j + 1 : k].strip():
                spans.append((m.start(), k + 1, text[j + 1 : k].strip()))
        elif j > m.end():  # "\boxed 5": the next token
            k = j
            while k < n and not text[k].isspace() and text[k] != "$":
                k += 1
            if k > j and not _BOXED_RE.match(text, j):
                content = _clean_tail(text[j:k])
                if content:
                    spans.append((m.start(), k, content))
    return spans


def _join_run(
    parts: list[tuple[int, int, str]], text: str, gap_ok: Callable[[str], bool], as_set: bool = False
) -> tuple[int, str] | None:
    r"""The last part with the parts before it whose gaps pass ``gap_ok``, joined by ", ".

    With ``as_set``, several distinct parts are written as the set ``\{a, b\}``.
    """
    if not parts:
        return None
    run = [parts[-1]]  # built backwards, then reversed
    for part in reversed(parts[:-1]):
        if not gap_ok(text[part[1] : run[-1][0]]):
            break
        run.append(part)
    run.reverse()
    contents: list[str] = []
    for _, _, content in run:
        if not contents or contents[-1] != content:
            contents.append(content)
    if as_set and len(contents) > 1:
        return run[0][0], "\\{" + ", ".join(contents) + "\\}"
    return run[0][0], ", ".join(contents)


def _box_gap_ok(gap: str) -> bool:
    """Separators only, or a few words without digits that end in "and"/"or" ("papers and")."""
    if len(gap) > _MAX_BOX_GAP:
        return False
    if _BOX_GAP_RE.fullmatch(gap) is not None:
        return True
    if any(c.isdigit() or c == "=" for c in gap):
        return False
    return _ENDS_WITH_AND_RE.search(gap) is not None


def _final_boxes(text: str) -> tuple[int, str] | None:
    """The final run of boxes (see :func:`extract_answer`) and where it starts."""
    if "\\boxed" not in text and "\\fbox" not in text:
        return None
    return _join_run(_box_spans(text), text, _box_gap_ok, as_set=True)


def _last_boxed(text: str) -> str | None:
    """The final run of boxes' content (several boxes joined by ", "), else None."""
    found = _final_boxes(text)
    return None if found is None else found[1]


def _math_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of the ``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]`` spans, in order."""
    spans: list[tuple[int, int, str]] = []
    i, n = 0, len(text)
    closed = {"$": True, "$$": True, "\\)": True, "\\]": True}  # False once a closer is known absent
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            if text[i + 1] in "([":
                closer = "\\)" if text[i + 1] == "(" else "\\]"
                j = text.find(closer, i + 2) if closed[closer] else -1
                if j < 0:
                    closed[closer] = False
                    i += 2
                    continue
                spans.append((i, j + 2, text[i + 2 : j]))
                i = j + 2
                continue
            i += 2  # an escape such as \$
            continue
        if c == "$":
            opener = "$$" if text.startswith("$$", i) else "$"
            m = None
            if closed[opener]:
                pattern = _DOUBLE_DOLLAR_RE if opener == "$$" else _DOLLAR_RE
                m = pattern.search(text, i + len(opener))
            if m is None:
                closed[opener] = False
                i += len(opener)
                continue
            spans.append((i, m.end(), text[i + len(opener) : m.start()]))
            i = m.end()
            continue
        i += 1
    return [s for s in spans if s[2].strip()]


def _math_gap_ok(gap: str) -> bool:
    return _SEPARATOR_GAP_RE.fullmatch(gap) is not None


def _final_math_run(text: str) -> tuple[int, str] | None:
    """Where the final run of math spans ends, and its content (spans joined by ", ")."""
    spans = [(a, b, c.strip()) for a, b, c in _math_spans(text)]
    found = _join_run(spans, text, _math_gap_ok)
    return None if found is None else (spans[-1][1], found[1])


def _answer_region(s: str) -> str:
    """The part of an answer string that is the answer.

    The final run of boxes when there are boxes; else, when prose stands outside the math spans
    (``Answer $9$``, ``$125$ miles``), the final run of spans; else the string itself.
    """
    if "\\boxed" in s or "\\fbox" in s:
        boxed = _last_boxed(s)
        if boxed is not None:
            return boxed
    if "$" in s or "\\(" in s or "\\[" in s:
        spans = _math_spans(s)
        if spans:
            pieces, prev = [], 0
            for a, b, _ in spans:
                pieces.append(s[prev:a])
                prev = b
            outside = " ".join([*pieces, s[prev:]])
            if _PROSE_RE.search(outside):
                run = _final_math_run(s)
                if run:
                    return run[1]
    return s


def _last_hashes(text: str) -> tuple[int, str] | None:
    """The text after the last GSM8K ``####`` marker that is not a markdown heading."""
    if "####" not in text:
        return None
    end = len(text)
    for line in reversed(text.split("\n")):
        start = end - len(line)
        end = start - 1
        i = line.rfind("####")
        if i < 0:
            continue
        content = line[i:].lstrip("#").strip().strip("*").strip()
        if not content or _HEADING_RE.match(content):
            continue
        content = _clean_tail(content)
        if content:
            return start + i, content
    return None


def _last_phrase(text: str) -> tuple[int, str] | None:
    """The answer after the last "answer is" / "answer:" phrase."""
    matches = list(_PHRASE_RE.finditer(text))
    for m in reversed(matches[-8:]):
        value = _phrase_value(text, m.end())
        if value:
            return m.start(), value
    return None


def _phrase_value(text: str, start: int) -> str | None:
    s = text[start : start + 4 * MAX_ANSWER_CHARS].lstrip()
    for opener in ("$$", "$", "\\(", "\\["):
        if s.startswith(opener):
            spans = _math_spans(s)
            if spans and spans[0][0] == 0:
                # The span after the phrase, with the spans that follow it across separators only:
                # "the answer is $5$ or $6$" is the list 5, 6, not 5.
                run = [spans[0]]
                for span in spans[1:]:
                    if not _math_gap_ok(s[run[-1][1] : span[0]]):
                        break
                    run.append(span)
                contents: list[str] = []
                for _, _, content in run:
                    if content.strip() and (not contents or contents[-1] != content.strip()):
                        contents.append(content.strip())
                return ", ".join(contents) or None
            s = s[len(opener) :]
            break
    line = s.split("\n", 1)[0]
    m = _SENTENCE_END_RE.search(line)
    if m:
        line = line[: m.start()]
    value = _clean_tail(line)
    if value and _PROSE_RE.search(_TEXT_RE.sub(" ", value)):
        value = _prose_answer(value)
    return value or None


_TEXT_RE = re.compile(r"\\text\{[^{}]*\}")
_IS_RE = re.compile(r"\bis\b|\bare\b|=")


def _prose_answer(value: str) -> str:
    """The answer inside a sentence: its last math span, what follows its last "is", its last number."""
    spans = _math_spans(value)
    if spans:
        last = spans[-1]
        tail = value[last[1] :]
        if not any(c.isdigit() for c in tail):
            return last[2].strip()
    last_is = None
    for m in _IS_RE.finditer(value):
        last_is = m
    if last_is is not None:
        after = _clean_tail(value[last_is.end() :])
        if after and not _PROSE_RE.search(_TEXT_RE.sub(" ", after)):
            return after
    number = _last_number(value)
    return value if number is None else number[1]


def _clean_tail(s: str) -> str:
    s = s.strip().strip("*").strip().rstrip(".").strip()
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$":
        s = s.strip("$").strip()
    return s
