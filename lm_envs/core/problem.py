"""The text-level unit of work: one problem with its reference answer and gold steps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One problem of a task, at text level (no tokens).

    Synthetic generators and dataset loaders both produce this type, so every environment,
    reward and agent works the same on either.

    Attributes:
        id: Stable identifier, unique within its task and split (e.g. ``"test/17"`` or a
            dataset's own id). Leaderboard results are keyed by it.
        prompt: The exact text the model is conditioned on (templates already applied).
        answer: The reference answer a reward compares against (``""`` when the reward needs
            none, e.g. a learned reward model).
        steps: The gold solution, one reasoning step per element, in order; empty when the
            source has none. Used as SFT demonstrations and reverse-curriculum start states.
        metadata: Free-form fields from the source (difficulty, aliases, dataset fields, ...).

    Example:
        >>> p = Problem(id="train/0", prompt="2+3=", answer="5", steps=("2 + 3 = 5", "#### 5"))
        >>> p.solution()
        '2 + 3 = 5\\n#### 5'
    """

    id: str
    prompt: str
    answer: str = ""
    steps: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            raise TypeError(f"Problem.prompt must be a str, got {type(self.prompt).__name__}.")
        if isinstance(self.steps, list):  # accept lists from loaders, store immutably
            object.__setattr__(self, "steps", tuple(self.steps))
        if not all(isinstance(s, str) for s in self.steps):
            raise TypeError("Problem.steps must be a sequence of str, one reasoning step each.")

    def solution(self, separator: str = "\n") -> str:
        """The gold solution text: the steps joined by ``separator``."""
        return separator.join(self.steps)

    def prefix(self, k: int, separator: str = "\n") -> str:
        """The first ``k`` gold steps, each closed by ``separator`` (a start state after the prompt).

        Args:
            k: Number of gold steps given, ``0 <= k <= len(steps)``.
            separator: The step separator of the environment.

        Returns:
            ``""`` for ``k == 0``, else the steps joined and terminated by the separator.

        Raises:
            ValueError: If ``k`` is out of range.

        Example:
            >>> Problem(id="a", prompt="q", steps=("x = 1", "#### 1")).prefix(1)
            'x = 1\\n'
        """
        if not 0 <= k <= len(self.steps):
            raise ValueError(
                f"prefix length k={k} is out of range for problem {self.id!r}, which has "
                f"{len(self.steps)} gold steps; use 0 <= k <= {len(self.steps)}."
            )
        return "".join(step + separator for step in self.steps[:k])
