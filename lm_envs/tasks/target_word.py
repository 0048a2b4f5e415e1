"""A trivially learnable task: repeat a target word. Agents use it to prove that they learn.

It plays the role of stable-baselines3's identity envs: the optimal policy is obvious, the reward
is dense (partial credit for every correct leading character), so a correct learner's return
rises to near the optimum of 1.0 within a short run, and a broken one's does not.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from lm_envs.core.problem import Problem
from lm_envs.core.reward import Outcome, Reward
from lm_envs.core.task import Task

DEFAULT_WORDS: tuple[str, ...] = ("apple", "river", "green", "seven", "house", "music", "light", "stone")


class TargetWordTask(Task):
    """Prompts ``"Repeat the word: {word}\\nAnswer:"``; the answer is the word.

    Both splits hold the same words (the task measures learning, not generalisation). The episode
    stops at the first line break.

    Args:
        words: The target words (non-empty, each without whitespace).

    Example:
        >>> TargetWordTask(["cat"]).problem("train", 0).prompt
        'Repeat the word: cat\\nAnswer:'
    """

    name = "target_word"

    def __init__(self, words: Sequence[str] = DEFAULT_WORDS) -> None:
        words = tuple(words)
        if not words:
            raise ValueError("TargetWordTask needs at least one word, e.g. words=['apple'].")
        for w in words:
            if not isinstance(w, str) or not w or any(c.isspace() for c in w):
                raise ValueError(f"target words must be non-empty strings without whitespace, got {w!r}.")
        self.words = words

    def size(self, split: str) -> int:
        self.check_split(split)
        return len(self.words)

    def problem(self, split: str, index: int) -> Problem:
        self.check_index(split, index)
        word = self.words[index]
        return Problem(
            id=f"{split}/{index}",
            prompt=f"Repeat the word: {word}\nAnswer:",
            answer=word,
            steps=(f" {word}",),
        )

    def stops(self, step: str) -> bool:
        return True

    def format_only(self, problem: Problem, rng: random.Random) -> str:
        """One of the task's words drawn at random, ignoring which word the prompt asks for.

        Example:
            >>> TargetWordTask(["cat", "dog"]).format_only(Problem("a", "q"), random.Random(0))
            ' dog'
        """
        return f" {rng.choice(self.words)}"

    def corpus(self) -> Iterator[str]:
        for i in range(len(self.words)):
            p = self.problem("train", i)
            yield p.prompt + p.solution() + "\n"


class PrefixMatchReward(Reward):
    """Dense string match: 0.8 x (correct leading characters / target length) + 0.2 x exact match.

    The completion is stripped of surrounding whitespace first. Every correct leading character
    earns partial credit whatever follows it, so a policy that has never produced the whole word
    still gets a learning signal; the full 1.0 needs the exact word and nothing after it.

    Example:
        >>> r = PrefixMatchReward()
        >>> p = Problem("a", "q", "apple")
        >>> r.outcome(p, " apple").reward, round(r.outcome(p, "ap").reward, 3), round(r.outcome(p, "apples!").reward, 3)
        (1.0, 0.32, 0.8)
    """

    def outcome(self, problem: Problem, completion: str) -> Outcome:
        text, target = completion.strip(), problem.answer
        shared = 0
        for a, b in zip(text, target):
            if a != b:
                break
            shared += 1
        exact = text == target
        score = 0.8 * shared / max(len(target), 1) + 0.2 * exact
        return Outcome(score, {"correct": exact, "prediction": text})
