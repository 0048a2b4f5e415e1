"""Load GSM8K and MATH JSONL files as :class:`~lm_envs.core.problem.Problem` lists and tasks.

Both formats give the same :class:`~lm_envs.core.problem.Problem` type as the generator, with
the prompt rendered by :func:`lm_envs.tasks.math.generator.render_prompt`.

**GSM8K** (one JSON object per line with ``question`` and ``answer``; ``answer`` holds reasoning
lines with calculator annotations such as ``<<48/2=24>>`` and a final line ``#### 72``):

* ``answer``: the text after ``####`` with thousands separators (``,``) and spaces removed;
* ``steps``: the non-empty reasoning lines, then ``#### N``. Calculator annotations are handled
  by ``annotations``: ``"strip"`` (default) removes them, so the step reads as written for
  people (``Natalia sold 48/2 = 24 clips in May.``; :func:`~lm_envs.tasks.math.steps.check_step`
  still checks the claim in the text); ``"keep"`` leaves them in; ``"claims"`` replaces each
  annotated line by its calculations as checkable claims (``48/2 = 24``), joined by ``"; "``.

**MATH** (Hendrycks et al.; one JSON object per line with ``problem`` and ``solution``, plus
``level`` and ``type``, or the MATH-500 fields ``subject``, integer ``level``, ``answer`` and
``unique_id``):

* ``answer``: the ``answer`` field if present, else the contents of the last ``\\boxed{...}``
  (or ``\\fbox{...}``) in the solution, with balanced braces;
* ``steps``: the solution split into lines, and lines into sentences at ``.``, ``!`` or ``?``
  followed by a space, outside ``$...$``/``\\[...\\]`` math and braces. There is no ``####``
  line: the answer stays inside the last step's ``\\boxed{}``;
* ``metadata``: ``level`` (as given), ``level_number`` (int or ``None``), ``type``.

Every malformed line raises :class:`DatasetFormatError` naming ``file:line`` and what is wrong;
nothing is skipped silently except blank lines. Problem ids are ``"{split}/{i}"`` unless the
record has a string ``unique_id`` or ``id`` (then that, checked for uniqueness).

Example:
    >>> import json, pathlib, tempfile
    >>> row = {"question": "Tom has 3 bags of 4 apples. How many apples?",
    ...        "answer": "He has 3*4=<<3*4=12>>12 apples.\\n#### 12"}
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "gsm8k.jsonl"
    >>> _ = path.write_text(json.dumps(row) + "\\n")
    >>> p = load_gsm8k(path)[0]
    >>> p.steps, p.answer
    (('He has 3*4=12 apples.', '#### 12'), '12')
    >>> load_gsm8k(path, annotations="claims")[0].steps[0]
    '3*4 = 12'
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from lm_envs.core.jsonl import DatasetFormatError, PathLike, read_jsonl
from lm_envs.core.problem import Problem
from lm_envs.core.task import ListTask
from lm_envs.tasks.math.generator import FINAL_ANSWER_PREFIX, render_prompt

__all__ = [
    "DatasetFormatError",
    "extract_boxed",
    "load_gsm8k",
    "load_hendrycks_math",
    "load_math_task",
    "split_sentences",
]

Annotations = Literal["strip", "keep", "claims"]

_ANNOTATION_RE = re.compile(r"<<([^<>]*)>>")


def _field(path: PathLike, number: int, obj: dict[str, Any], key: str, types: tuple[type, ...] = (str,)) -> Any:
    if key not in obj:
        raise DatasetFormatError(path, number, f"missing key {key!r} (keys present: {sorted(obj)})")
    value = obj[key]
    if not isinstance(value, types) or isinstance(value, bool):
        names = " or ".join(t.__name__ for t in types)
        raise DatasetFormatError(path, number, f"key {key!r} must be a {names}, got {type(value).__name__}")
    if isinstance(value, str) and not value.strip():
        raise DatasetFormatError(path, number, f"key {key!r} is empty")
    return value


def _problem_id(path: PathLike, number: int, obj: dict[str, Any], default: str, seen: set[str]) -> str:
    pid = default
    for key in ("unique_id", "id"):
        if key in obj:
            if not isinstance(obj[key], str) or not obj[key]:
                raise DatasetFormatError(path, number, f"key {key!r} must be a non-empty str")
            pid = obj[key]
            break
    if pid in seen:
        raise DatasetFormatError(path, number, f"duplicate problem id {pid!r}")
    seen.add(pid)
    return pid


# --------------------------------------------------------------------------------------------
# GSM8K.
# --------------------------------------------------------------------------------------------
def _gsm8k_step(line: str, annotations: Annotations) -> str:
    if annotations == "keep":
        return line
    if annotations == "claims":
        claims = [c.replace("=", " = ", 1) if c.count("=") == 1 else c for c in _ANNOTATION_RE.findall(line)]
        if claims:
            return "; ".join(claims)
    return re.sub(r"\s{2,}", " ", _ANNOTATION_RE.sub("", line)).strip()


def load_gsm8k(path: PathLike, split: str = "train", annotations: Annotations = "strip") -> list[Problem]:
    """Read a GSM8K JSONL file (``question``, ``answer`` with a final ``#### N`` line).

    Args:
        path: The JSONL file.
        split: Split name used in problem ids (``"{split}/{i}"``).
        annotations: What to do with calculator annotations ``<<48/2=24>>``: ``"strip"``
            (default), ``"keep"``, or ``"claims"`` (each annotated line becomes its claims,
            ``"48/2 = 24"``).

    Returns:
        One problem per record, in file order.

    Raises:
        DatasetFormatError: On unreadable or empty files, invalid JSON, a missing or non-string
            field, no ``####`` line, text after it, or an empty final answer.
    """
    if annotations not in ("strip", "keep", "claims"):
        raise ValueError(f"annotations must be 'strip', 'keep' or 'claims', got {annotations!r}.")
    problems: list[Problem] = []
    seen: set[str] = set()
    for number, obj in read_jsonl(path):
        question = _field(path, number, obj, "question")
        solution = _field(path, number, obj, "answer")
        lines = [line.strip() for line in solution.splitlines() if line.strip()]
        finals = [i for i, line in enumerate(lines) if line.startswith(FINAL_ANSWER_PREFIX)]
        if not finals:
            raise DatasetFormatError(path, number, "the 'answer' has no final '#### <answer>' line")
        if finals[0] != len(lines) - 1:
            raise DatasetFormatError(
                path, number, "the '####' final-answer line must be the last line of 'answer' (and only one)"
            )
        answer = re.sub(r"[,\s]", "", lines[-1][len(FINAL_ANSWER_PREFIX) :])
        if not answer:
            raise DatasetFormatError(path, number, "the final '####' line has no answer after it")
        steps = [_gsm8k_step(line, annotations) for line in lines[:-1]]
        steps = [step for step in steps if step]
        steps.append(f"{FINAL_ANSWER_PREFIX} {answer}")
        problems.append(
            Problem(
                id=_problem_id(path, number, obj, f"{split}/{len(problems)}", seen),
                prompt=render_prompt(question),
                answer=answer,
                steps=tuple(steps),
                metadata={"source": "gsm8k", "file": Path(path).name, "line": number},
            )
        )
    return problems


# --------------------------------------------------------------------------------------------
# MATH.
# --------------------------------------------------------------------------------------------
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*")


def extract_boxed(text: str) -> str | None:
    """The contents of the last ``\\boxed{...}`` (or ``\\fbox{...}``, ``\\boxed 5``) in ``text``.

    Braces are matched, so nested groups are kept whole. Returns ``None`` if there is no
    ``\\boxed`` or its braces are unbalanced.

    Example:
        >>> extract_boxed(r"so $x = \\boxed{\\frac{1}{2}}$, and \\boxed{7}.")
        '7'
        >>> extract_boxed(r"\\boxed{\\frac{a}{b}}"), extract_boxed(r"\\boxed 5$."), extract_boxed("none")
        ('\\\\frac{a}{b}', '5', None)
        >>> extract_boxed(r"\\boxed{1") is None
        True
    """
    matches = list(_BOXED_RE.finditer(text))
    if not matches:
        return None
    start = matches[-1].end()
    if start < len(text) and text[start] == "{":
        depth = 0
        for i in range(start, len(text)):
            if text[i] == "{" and (i == 0 or text[i - 1] != "\\"):
                depth += 1
            elif text[i] == "}" and text[i - 1] != "\\":
                depth -= 1
                if depth == 0:
                    return text[start + 1 : i].strip()
        return None
    m = re.match(r"[^\s$]+", text[start:])  # "\boxed 5" without braces
    return m.group().rstrip(".,;") if m else None


def split_sentences(text: str) -> list[str]:
    """Split a solution into steps: its lines, and each line into sentences outside math.

    A sentence ends at ``.``, ``!`` or ``?`` followed by whitespace, when not inside ``$...$``,
    ``$$...$$``, ``\\[...\\]``, ``\\(...\\)`` or braces, and when the next word does not start in
    lower case (so ``e.g. x`` does not split).

    Example:
        >>> split_sentences("We have $x = 2.5$. So $y = 3$! Done.\\nThus $\\\\boxed{3}$.")
        ['We have $x = 2.5$.', 'So $y = 3$!', 'Done.', 'Thus $\\\\boxed{3}$.']
    """
    steps: list[str] = []
    math = False  # inside $...$ / $$...$$ / \[...\] / \(...\), which may span lines
    for line in text.splitlines():
        start, depth, i, n = 0, 0, 0, len(line)
        while i < n:
            ch = line[i]
            if ch == "\\" and i + 1 < n:
                nxt = line[i + 1]
                if nxt in "[(":
                    math = True
                elif nxt in "])":
                    math = False
                i += 2
                continue
            if ch == "$":
                if line.startswith("$$", i):
                    i += 1
                math = not math
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth = max(0, depth - 1)
            elif (
                ch in ".!?"
                and not math
                and depth == 0
                and i + 1 < n
                and line[i + 1].isspace()
                and not line[i + 1 :].lstrip()[:1].islower()
            ):
                sentence = line[start : i + 1].strip()
                if sentence:
                    steps.append(sentence)
                start = i + 1
            i += 1
        rest = line[start:].strip()
        if rest:
            steps.append(rest)
    return steps


def load_hendrycks_math(path: PathLike, split: str = "train") -> list[Problem]:
    """Read a MATH JSONL file (``problem``, ``solution`` with ``\\boxed{}``, ``level``, ``type``).

    MATH-500 style records (``subject`` instead of ``type``, integer ``level``, an ``answer``
    field, ``unique_id``) are accepted too.

    Args:
        path: The JSONL file.
        split: Split name used in problem ids (``"{split}/{i}"``) when records have no id.

    Returns:
        One problem per record, in file order.

    Raises:
        DatasetFormatError: On unreadable or empty files, invalid JSON, a missing or mistyped
            field, or a solution with no (balanced) ``\\boxed{}`` and no ``answer`` field.
    """
    problems: list[Problem] = []
    seen: set[str] = set()
    for number, obj in read_jsonl(path):
        question = _field(path, number, obj, "problem")
        solution = _field(path, number, obj, "solution")
        level = _field(path, number, obj, "level", (str, int)) if "level" in obj else None
        kind_key = "type" if "type" in obj else "subject" if "subject" in obj else None
        kind = _field(path, number, obj, kind_key) if kind_key else None
        if "answer" in obj:
            answer = _field(path, number, obj, "answer").strip()
        else:
            answer = extract_boxed(solution)
            if answer is None:
                problem = "unbalanced braces in the last \\boxed{" if "\\boxed" in solution else "no \\boxed{...}"
                raise DatasetFormatError(path, number, f"the 'solution' has {problem} with the final answer")
            if not answer:
                raise DatasetFormatError(path, number, "the last \\boxed{} in 'solution' is empty")
        if isinstance(level, int):
            level_number: int | None = level
        else:
            m = re.fullmatch(r"\s*Level\s+(\d+)\s*", level or "")
            level_number = int(m.group(1)) if m else None
        problems.append(
            Problem(
                id=_problem_id(path, number, obj, f"{split}/{len(problems)}", seen),
                prompt=render_prompt(question),
                answer=answer,
                steps=tuple(split_sentences(solution)),
                metadata={
                    "source": "math",
                    "file": Path(path).name,
                    "line": number,
                    "level": level,
                    "level_number": level_number,
                    "type": kind,
                },
            )
        )
    return problems


def load_math_task(
    train: PathLike | None = None,
    test: PathLike | None = None,
    format: Literal["gsm8k", "math"] = "gsm8k",  # noqa: A002 - the natural name for users
    name: str | None = None,
    annotations: Annotations = "strip",
) -> ListTask:
    """Build a :class:`~lm_envs.core.task.ListTask` from dataset files, one per split.

    Args:
        train: JSONL file of the ``train`` split (optional).
        test: JSONL file of the ``test`` split (optional).
        format: ``"gsm8k"`` or ``"math"``.
        name: Task name (default: the format).
        annotations: GSM8K calculator annotations, see :func:`load_gsm8k`.

    Returns:
        A task with the given splits; GSM8K tasks stop on the ``####`` line
        (``stop_prefix="####"``), MATH tasks at end of text.

    Raises:
        ValueError: If no file is given or ``format`` is unknown.
        DatasetFormatError: If a file is malformed.
    """
    if format not in ("gsm8k", "math"):
        raise ValueError(f"format must be 'gsm8k' or 'math', got {format!r}.")
    files = {split: path for split, path in (("train", train), ("test", test)) if path is not None}
    if not files:
        raise ValueError("load_math_task needs at least one file: train=... and/or test=...")
    if format == "gsm8k":
        splits = {split: load_gsm8k(path, split, annotations) for split, path in files.items()}
        return ListTask(splits, name=name or "gsm8k", stop_prefix=FINAL_ANSWER_PREFIX)
    splits = {split: load_hendrycks_math(path, split) for split, path in files.items()}
    return ListTask(splits, name=name or "math")
