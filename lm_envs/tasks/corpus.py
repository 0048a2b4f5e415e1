"""The text the embedded default tokenizer is trained on: the built-in tasks' own corpora."""

from __future__ import annotations

from lm_envs.tasks.target_word import TargetWordTask

#: Bumped when the list of corpora below changes (the tokenizer cache key also hashes the text).
CORPUS_VERSION = "1"


def default_corpus() -> list[str]:
    """Prompts and gold solutions of the built-in tasks, in a fixed order."""
    texts: list[str] = []
    texts.extend(TargetWordTask().corpus())
    return texts
