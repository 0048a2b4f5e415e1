"""Load TriviaQA-style and SimpleQA-style JSONL files as QA :class:`~lm_envs.core.problem.Problem` lists.

Both give the same :class:`~lm_envs.core.problem.Problem` type as the synthetic world: the prompt
``"Question: {question}\\nAnswer:"``, the canonical ``answer``, the gold step ``" {answer}"``, and
``metadata`` with ``aliases``, ``known`` (``None`` unless the record has a boolean ``known``),
``source``, ``file`` and ``line``.

**TriviaQA style** (one JSON object per line): ``question`` (or ``Question``) and ``answer`` (or
``Answer``), where the answer is either a string, with an optional list ``aliases``, or an object
with ``value`` (or ``Value``) and an optional ``aliases`` (or ``Aliases``) list, as in the
TriviaQA release and its Hugging Face copy. The id is ``question_id``/``QuestionId``/``id`` when
present.

**SimpleQA style**: ``problem`` and ``answer`` (strings), optional ``aliases`` list and ``id``.

Every malformed line raises :class:`DatasetFormatError` naming ``file:line`` and what is wrong;
nothing is skipped silently except blank lines.

Example:
    >>> import json, pathlib, tempfile
    >>> row = {"question": "Which planet is red?", "answer": {"value": "Mars", "aliases": ["The Red Planet"]}}
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tqa.jsonl"
    >>> _ = path.write_text(json.dumps(row) + "\\n")
    >>> p = load_triviaqa(path)[0]
    >>> p.prompt, p.answer, p.metadata["aliases"], p.steps
    ('Question: Which planet is red?\\nAnswer:', 'Mars', ['The Red Planet'], (' Mars',))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from lm_envs.core.jsonl import DatasetFormatError, PathLike, read_jsonl
from lm_envs.core.problem import Problem
from lm_envs.core.task import ListTask
from lm_envs.tasks.qa.world import PROMPT_TEMPLATE

__all__ = ["DatasetFormatError", "QAListTask", "load_qa_task", "load_simpleqa", "load_triviaqa"]


def _pick(obj: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    return next((k for k in keys if k in obj), None)


def _text(path: PathLike, number: int, obj: Mapping[str, Any], keys: Sequence[str], what: str) -> str:
    key = _pick(obj, keys)
    if key is None:
        names = " or ".join(repr(k) for k in keys)
        raise DatasetFormatError(path, number, f"missing {what} key {names} (keys present: {sorted(obj)})")
    value = obj[key]
    if not isinstance(value, str):
        raise DatasetFormatError(path, number, f"key {key!r} must be a str, got {type(value).__name__}")
    if not value.strip():
        raise DatasetFormatError(path, number, f"key {key!r} is empty")
    return value.strip()


def _aliases(path: PathLike, number: int, obj: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    key = _pick(obj, keys)
    if key is None:
        return []
    value = obj[key]
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise DatasetFormatError(path, number, f"key {key!r} must be a list of str (the other accepted answers)")
    return [a.strip() for a in value if a.strip()]


def _known(path: PathLike, number: int, obj: Mapping[str, Any]) -> bool | None:
    if "known" not in obj:
        return None
    if not isinstance(obj["known"], bool):
        raise DatasetFormatError(path, number, f"key 'known' must be true or false, got {obj['known']!r}")
    return obj["known"]


def _problem_id(
    path: PathLike, number: int, obj: Mapping[str, Any], keys: Sequence[str], default: str, seen: set[str]
) -> str:
    pid = default
    key = _pick(obj, keys)
    if key is not None:
        if not isinstance(obj[key], (str, int)) or isinstance(obj[key], bool) or obj[key] == "":
            raise DatasetFormatError(path, number, f"key {key!r} must be a non-empty str or an int")
        pid = str(obj[key])
    if pid in seen:
        raise DatasetFormatError(path, number, f"duplicate question id {pid!r}; ids must be unique within a file")
    seen.add(pid)
    return pid


def _make(
    question: str, answer: str, aliases: list[str], known: bool | None, pid: str, meta: dict[str, Any]
) -> Problem:
    aliases = [a for a in dict.fromkeys(aliases) if a != answer]
    return Problem(
        id=pid,
        prompt=PROMPT_TEMPLATE.format(question=question),
        answer=answer,
        steps=(" " + answer,),
        metadata={"known": known, "aliases": aliases, **meta},
    )


def load_triviaqa(path: PathLike, split: str = "train") -> list[Problem]:
    """Read a TriviaQA-style JSONL file (``question``, ``answer`` string or ``{value, aliases}``).

    Args:
        path: The JSONL file.
        split: Split name used in problem ids (``"{split}/{i}"``) when records have no id.

    Returns:
        One problem per record, in file order.

    Raises:
        DatasetFormatError: On unreadable or empty files, invalid JSON, a missing, empty or mistyped
            question, answer or alias list, a non-boolean ``known``, or a duplicate id.
    """
    problems: list[Problem] = []
    seen: set[str] = set()
    for number, obj in read_jsonl(path):
        question = _text(path, number, obj, ("question", "Question"), "question")
        answer_key = _pick(obj, ("answer", "Answer"))
        if answer_key is None:
            raise DatasetFormatError(path, number, f"missing answer key 'answer' (keys present: {sorted(obj)})")
        answer_obj = obj[answer_key]
        if isinstance(answer_obj, dict):
            answer = _text(path, number, answer_obj, ("value", "Value"), f"'{answer_key}.value'")
            aliases = _aliases(path, number, answer_obj, ("aliases", "Aliases"))
        elif isinstance(answer_obj, str):
            answer = _text(path, number, obj, (answer_key,), "answer")
            aliases = _aliases(path, number, obj, ("aliases", "Aliases"))
        else:
            raise DatasetFormatError(
                path,
                number,
                f"key {answer_key!r} must be a str or an object with 'value' and 'aliases', "
                f"got {type(answer_obj).__name__}",
            )
        pid = _problem_id(path, number, obj, ("question_id", "QuestionId", "id"), f"{split}/{len(problems)}", seen)
        meta = {"source": "triviaqa", "file": Path(path).name, "line": number}
        problems.append(_make(question, answer, aliases, _known(path, number, obj), pid, meta))
    return problems


def load_simpleqa(path: PathLike, split: str = "train") -> list[Problem]:
    """Read a SimpleQA-style JSONL file (``problem``, ``answer``, optional ``aliases`` and ``id``).

    Args:
        path: The JSONL file.
        split: Split name used in problem ids (``"{split}/{i}"``) when records have no id.

    Returns:
        One problem per record, in file order.

    Raises:
        DatasetFormatError: On unreadable or empty files, invalid JSON, a missing, empty or mistyped
            problem, answer or alias list, a non-boolean ``known``, or a duplicate id.
    """
    problems: list[Problem] = []
    seen: set[str] = set()
    for number, obj in read_jsonl(path):
        question = _text(path, number, obj, ("problem",), "problem")
        answer = _text(path, number, obj, ("answer",), "answer")
        aliases = _aliases(path, number, obj, ("aliases",))
        pid = _problem_id(path, number, obj, ("id",), f"{split}/{len(problems)}", seen)
        meta = {"source": "simpleqa", "file": Path(path).name, "line": number}
        problems.append(_make(question, answer, aliases, _known(path, number, obj), pid, meta))
    return problems


class QAListTask(ListTask):
    """A :class:`~lm_envs.core.task.ListTask` of QA problems that stops after the first line (the answer)."""

    def stops(self, step: str) -> bool:
        return True

    @property
    def has_stop_rule(self) -> bool:
        return True


def load_qa_task(
    train: PathLike | None = None,
    test: PathLike | None = None,
    format: Literal["triviaqa", "simpleqa"] = "triviaqa",  # noqa: A002 - the natural name for users
    name: str | None = None,
) -> QAListTask:
    """Build a QA task from dataset files, one per split.

    Args:
        train: JSONL file of the ``train`` split (optional).
        test: JSONL file of the ``test`` split (optional).
        format: ``"triviaqa"`` or ``"simpleqa"``.
        name: Task name (default: the format).

    Raises:
        ValueError: If no file is given or ``format`` is unknown.
        DatasetFormatError: If a file is malformed.
    """
    loaders = {"triviaqa": load_triviaqa, "simpleqa": load_simpleqa}
    if format not in loaders:
        raise ValueError(f"format must be 'triviaqa' or 'simpleqa', got {format!r}.")
    files = {split: path for split, path in (("train", train), ("test", test)) if path is not None}
    if not files:
        raise ValueError("load_qa_task needs at least one file: train=... and/or test=...")
    return QAListTask({split: loaders[format](path, split) for split, path in files.items()}, name=name or format)
