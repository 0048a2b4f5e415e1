"""Tasks: deterministic sources of problems, by split and index."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lm_envs.core.problem import Problem


@dataclass(frozen=True)
class Reply:
    """What a multi-turn task says when one of the policy's turns ends (see :meth:`Task.respond`).

    Attributes:
        text: Text the env appends after the policy's turn (a tool's output, feedback, a user's
            reply), encoded on its own and never re-tokenized with earlier text; ``""``: none.
            When the turn ended on EOS and the env uses a chat template, it is rendered as the
            next user turn followed by the generation prompt.
        reward: Turn-level reward, paid on the token that ended the policy's turn.
        done: End the episode now (``terminated``, the outcome reward is paid).
        info: JSON-serialisable details, reported in the step's ``info["reply"]``.
    """

    text: str = ""
    reward: float = 0.0
    done: bool = False
    info: Mapping[str, Any] = field(default_factory=dict)


class Task:
    """A deterministic source of :class:`Problem` objects, addressed by ``(split, index)``.

    Subclasses implement :meth:`size` and :meth:`problem`. ``problem(split, i)`` must return the
    same problem every time, in every process, so that a seed fixes an episode and a test split
    is a fixed set. Synthetic generators derive each problem from ``(split, index)``; file
    loaders index a list (see :class:`ListTask`). A very large ``size`` stands for an unlimited
    split (synthetic ``train``).

    Attributes:
        name: Short name used in problem ids, caches and logs.
        splits: The split names this task serves.
    """

    name: str = "task"
    splits: tuple[str, ...] = ("train", "test")

    def size(self, split: str) -> int:
        """Number of problems in ``split`` (indices are ``0 .. size - 1``)."""
        raise NotImplementedError

    def problem(self, split: str, index: int) -> Problem:
        """The problem at ``index`` of ``split``; deterministic."""
        raise NotImplementedError

    def stops(self, step: str) -> bool:
        """The task's stop rule, checked on every closed reasoning step.

        Returning ``True`` ends the episode (``terminated``) on the token that closed ``step``,
        as an EOS token would. The default never stops early.
        """
        return False

    @property
    def has_stop_rule(self) -> bool:
        """Whether :meth:`stops` can fire (environments skip step bookkeeping when it cannot)."""
        return type(self).stops is not Task.stops

    #: Strings that end the policy's turn where they appear in its text (e.g. a tool call's
    #: ``"</calc>"``); EOS and the stop rule end a turn too. Empty: only those.
    turn_stops: tuple[str, ...] = ()

    def respond(self, problem: Problem, turns: Sequence[str], final: bool) -> Reply | None:
        """The env's answer when one of the policy's turns ends (multi-turn tasks override it).

        Called when the policy's text reaches one of :attr:`turn_stops` (``final=False``) or would
        end the episode on EOS or the stop rule (``final=True``). ``None`` lets the episode go on as
        it would (a final turn ends it); a :class:`Reply` with text appends that text and hands the
        turn back, even after a final turn (a retry). The default never replies: single-turn.

        Args:
            problem: The episode's problem.
            turns: Text of each of the policy's turns so far, this one last (env text excluded; a
                final turn is cut after the stopping step).
            final: Whether this turn would end the episode.
        """
        return None

    def demonstration(self, problem: Problem, separator: str = "\n") -> list[str]:
        """The policy's turns of ``problem``'s gold demonstration (SFT trains on these, not on the env's).

        A multi-turn demonstration alternates with the env: after each turn but the last, the env's
        :meth:`respond` supplies its reply, exactly as in an episode, and SFT masks those tokens out of
        the loss. The default is one turn, the gold solution; a tool-use task rewrites its steps as calls.

        Args:
            problem: A problem with gold steps.
            separator: The env's step separator.
        """
        return [problem.solution(separator)]

    @property
    def multi_turn(self) -> bool:
        """Whether episodes can have several turns (the env then tracks turns, sources and budgets)."""
        return bool(self.turn_stops) or type(self).respond is not Task.respond

    def format_only(self, problem: Problem, rng: random.Random) -> str:
        """A well-formed completion that uses no knowledge of the task: the format-only baseline.

        The leaderboard evaluates this policy under each env's protocol (through the env's
        :class:`~lm_envs.TextEnv`, so the score is measured, not assumed) and draws it as a reference
        line: a score at or below it is what the answer format alone earns. It may read ``problem``
        only for what the format needs (never its prompt's content or answer), and draws any choice
        from ``rng`` (seeded per episode). Multi-turn tasks are asked once per turn.

        Args:
            problem: The episode's problem.
            rng: The episode's random stream.

        Raises:
            NotImplementedError: For tasks that declare no format-only policy (the default).
        """
        raise NotImplementedError(
            f"task {self.name!r} ({type(self).__name__}) declares no format-only policy; override "
            "Task.format_only(problem, rng) to return a well-formed completion that uses no task knowledge."
        )

    @property
    def has_format_only(self) -> bool:
        """Whether :meth:`format_only` is implemented."""
        return type(self).format_only is not Task.format_only

    def corpus(self) -> Iterator[str]:
        """Representative text (prompts and solutions) for training the default tokenizer.

        The default yields the prompts and gold solutions of up to 2,000 training problems.
        """
        n = min(self.size("train") if "train" in self.splits else 0, 2000)
        for i in range(n):
            p = self.problem("train", i)
            yield p.prompt
            if p.steps:
                yield p.solution()
            elif p.answer:
                yield p.answer

    def documents(self) -> Iterator[str]:
        """Plain text for language-model pre-training before any task training (default: none).

        A task whose knowledge a model must hold before it is asked (e.g. a fact corpus) yields it
        here; a run's ``pretrain`` stage trains the model as a causal LM on these documents.
        """
        return iter(())

    def check_split(self, split: str) -> None:
        """Raise a clear error if ``split`` is not one of this task's splits."""
        if split not in self.splits:
            raise ValueError(f"task {self.name!r} has no split {split!r}; choose one of {list(self.splits)}.")

    def check_index(self, split: str, index: int) -> None:
        """Raise a clear error if ``index`` is not a valid problem index of ``split``."""
        self.check_split(split)
        n = self.size(split)
        if not isinstance(index, (int,)) or isinstance(index, bool) or not 0 <= index < n:
            raise ValueError(
                f"problem index {index!r} is out of range for split {split!r} of task "
                f"{self.name!r}; use an int in [0, {n})."
            )

    def problems(self, split: str, limit: int | None = None) -> Iterator[Problem]:
        """Iterate the problems of ``split`` in index order (at most ``limit`` of them)."""
        self.check_split(split)
        n = self.size(split) if limit is None else min(limit, self.size(split))
        for i in range(n):
            yield self.problem(split, i)


class ListTask(Task):
    """A task over fixed lists of problems, one list per split (what dataset loaders return).

    Args:
        splits: Mapping from split name to its problems.
        name: Task name.
        stop_prefix: If given, a closed step starting with this text ends the episode
            (e.g. ``"####"`` for GSM8K-style final-answer lines).

    Example:
        >>> t = ListTask({"train": [Problem("a", "1+1=", "2")], "test": [Problem("b", "2+2=", "4")]})
        >>> t.size("test"), t.problem("test", 0).answer
        (1, '4')
    """

    def __init__(
        self,
        splits: Mapping[str, Sequence[Problem]],
        name: str = "list",
        stop_prefix: str | None = None,
    ) -> None:
        if not splits:
            raise ValueError("ListTask needs at least one split, e.g. {'train': [...], 'test': [...]}.")
        for split, problems in splits.items():
            if len(problems) == 0:
                raise ValueError(f"split {split!r} of task {name!r} is empty; give it at least one problem.")
        self._splits = {k: tuple(v) for k, v in splits.items()}
        self.splits = tuple(self._splits)
        self.name = name
        self.stop_prefix = stop_prefix

    @classmethod
    def from_pairs(
        cls, name: str = "list", stop_prefix: str | None = None, **splits: Iterable[tuple[str, str]]
    ) -> ListTask:
        """Build a task from ``(prompt, answer)`` pairs per split, with ids ``split/i``."""
        return cls(
            {
                split: [Problem(f"{split}/{i}", prompt, answer) for i, (prompt, answer) in enumerate(pairs)]
                for split, pairs in splits.items()
            },
            name=name,
            stop_prefix=stop_prefix,
        )

    def size(self, split: str) -> int:
        self.check_split(split)
        return len(self._splits[split])

    def problem(self, split: str, index: int) -> Problem:
        self.check_index(split, index)
        return self._splits[split][index]

    def stops(self, step: str) -> bool:
        return self.stop_prefix is not None and step.lstrip().startswith(self.stop_prefix)

    @property
    def has_stop_rule(self) -> bool:
        return self.stop_prefix is not None
