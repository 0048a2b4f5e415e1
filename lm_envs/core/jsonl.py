"""Reading dataset files in JSON Lines: one record per line, every problem reported as ``file:line``.

Every loader of the built-in tasks (GSM8K / MATH, TriviaQA / SimpleQA, chat messages, preference
pairs) reads its file through :func:`read_jsonl` and reports what is wrong with a record through
:class:`DatasetFormatError`, so a malformed line always fails the same way: naming the file, the
line and what to fix, before any training starts. Nothing is skipped silently.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "data.jsonl"
    >>> _ = path.write_text('{"question": "2+2?"}\\n\\n[1, 2]\\n')
    >>> records = read_jsonl(path)
    >>> next(records)
    (1, {'question': '2+2?'})
    >>> next(records)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lm_envs.core.jsonl.DatasetFormatError: .../data.jsonl:3: expected a JSON object, got list
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["DatasetFormatError", "PathLike", "read_jsonl"]

PathLike = str | os.PathLike[str]


class DatasetFormatError(ValueError):
    """A dataset file is malformed; the message starts with ``file:line:``.

    Attributes:
        path: The file.
        line: The 1-based line number (``None`` for whole-file problems such as an empty file).
    """

    def __init__(self, path: PathLike, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


def read_jsonl(path: PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line of a JSONL file.

    Raises:
        DatasetFormatError: If the file cannot be read, a line is not UTF-8, not JSON or not a
            JSON object, or the file holds no record at all.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DatasetFormatError(path, None, f"cannot read the file ({exc.strerror or exc})") from exc
    found = False
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetFormatError(path, number, f"not valid UTF-8 ({exc.reason})") from exc
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(path, number, f"invalid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(obj, dict):
            raise DatasetFormatError(path, number, f"expected a JSON object, got {type(obj).__name__}")
        found = True
        yield number, obj
    if not found:
        raise DatasetFormatError(path, None, "the file has no records (it is empty or blank)")
