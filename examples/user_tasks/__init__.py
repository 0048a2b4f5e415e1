"""Three small tasks written the way a user of lm-envs writes one, outside the built-in set.

They are not part of the library (``import lm_envs`` does not register them): import this package to
register them, e.g. ``lm-envs --import examples.user_tasks train --config-dir examples/conf env=reverse``
from the repository root. Each is rule-graded (exact match), has gold solutions (``Problem.steps``) for
a short SFT warm start, and splits its problems so that no test problem appears in training:

- ``Examples/Add-v0``: the sum of a one-digit and a two-digit number (``"add 7 and 58:"`` -> ``" 65"``).
- ``Examples/Larger-v0``: the larger of two two-digit numbers (``"larger of 37 and 52:"`` -> ``" 52"``).
- ``Examples/Count-v0``: how many ``a`` in twenty letters (``"count a in b a d c ... b:"`` -> ``" 4"``).

``bench/defaults_learn.py`` trains every ``lm-envs train`` algorithm on them from a short SFT start.
"""

from __future__ import annotations

import random

import lm_envs
from lm_envs import ListTask, Outcome, Problem, Reward

#: Problems in the test split of each task (the rest of the shuffled pool, capped, is the train split).
TEST_SIZE = 300
TRAIN_SIZE = 3000


class ExactMatch(Reward):
    """1 when the completion, stripped, equals the answer; else 0."""

    def outcome(self, problem: Problem, completion: str) -> Outcome:
        correct = completion.strip() == problem.answer.strip()
        return Outcome(1.0 if correct else 0.0, {"correct": correct})


def split(name: str, pool: list[tuple[str, str]]) -> ListTask:
    """A task from ``(prompt, answer)`` pairs, shuffled once (fixed seed): the first ``TEST_SIZE`` are for test."""
    pool = list(pool)
    random.Random(name).shuffle(pool)

    def problems(pairs: list[tuple[str, str]], part: str) -> list[Problem]:
        return [Problem(f"{part}/{i}", prompt, answer, (answer,)) for i, (prompt, answer) in enumerate(pairs)]

    test, train = pool[:TEST_SIZE], pool[TEST_SIZE : TEST_SIZE + TRAIN_SIZE]
    return ListTask({"train": problems(train, "train"), "test": problems(test, "test")})


def add_task() -> ListTask:
    """The sum of a one-digit and a two-digit number, either order (1620 ordered pairs)."""
    pairs = [(a, b) for a in range(1, 10) for b in range(10, 100)]
    pairs += [(b, a) for a, b in pairs]
    return split("add", [(f"add {a} and {b}:", f" {a + b}") for a, b in pairs])


def larger_task() -> ListTask:
    """The larger of two different two-digit numbers (8010 ordered pairs)."""
    pairs = [(a, b) for a in range(10, 100) for b in range(10, 100) if a != b]
    return split("larger", [(f"larger of {a} and {b}:", f" {max(a, b)}") for a, b in pairs])


def count_task() -> ListTask:
    """How many ``a`` among twenty letters of ``a``-``d`` (4**20 strings, sampled)."""
    rng = random.Random("count")
    words = {"".join(rng.choice("abcd") for _ in range(20)) for _ in range(TEST_SIZE + TRAIN_SIZE + 100)}
    return split("count", [(f"count a in {' '.join(w)}:", f" {w.count('a')}") for w in sorted(words)])


lm_envs.register("Examples/Add-v0", task=add_task(), reward=ExactMatch(), max_new_tokens=6)
lm_envs.register("Examples/Larger-v0", task=larger_task(), reward=ExactMatch(), max_new_tokens=6)
lm_envs.register("Examples/Count-v0", task=count_task(), reward=ExactMatch(), max_new_tokens=4)
