"""The text the embedded default tokenizer is trained on: the built-in tasks' own corpora."""

from __future__ import annotations

from itertools import islice

#: Bumped when the list of corpora below changes (the tokenizer cache key also hashes the text).
CORPUS_VERSION = "2"
#: Problems taken from each generated task (enough for stable merges, cheap to regenerate).
PROBLEMS_PER_TASK = 1000


def default_corpus() -> list[str]:
    """Prompts and gold solutions of the built-in tasks, in a fixed order."""
    from lm_envs.tasks.math import word_problems
    from lm_envs.tasks.target_word import TargetWordTask

    texts: list[str] = []
    for preset in ("easy", "medium", "hard"):
        texts.extend(islice(word_problems(preset).corpus(), 2 * PROBLEMS_PER_TASK))
    texts.extend(TargetWordTask().corpus())
    return texts
