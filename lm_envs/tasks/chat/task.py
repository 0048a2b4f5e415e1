"""Chat prompts: a seeded synthetic instruction set, a JSONL (messages) loader, and prompt rendering.

**Synthetic instructions** (:class:`SyntheticInstructions`): each problem asks for a short response
about a topic with a requested word count, one or two keywords and no repeated words, e.g. ``Write
about the garden in exactly 6 words. Use the words "green" and "water". Do not repeat words.``
Problem ``(split, index)`` is drawn from its own seeded RNG, so it is the same in every process;
``test`` is a fixed set of 200 drawn from a separate seed stream. ``metadata["constraints"]`` holds
what was asked, which the hidden gold rubric (:mod:`lm_envs.tasks.chat.rubric`) scores;
``steps`` holds one demonstration response of varied quality (:func:`synthetic_response`) for SFT
warm starts.

**Rendering** (:func:`render_messages`): with a Hugging Face tokenizer that has a chat template,
the template renders the conversation (``add_generation_prompt=True``); otherwise a plain template::

    System: <system message>
    User: <user message>
    Assistant: <assistant message>
    User: <user message>
    Assistant:

**JSONL loader** (:func:`load_chat_jsonl`): one conversation per line,
``{"messages": [{"role": "user", "content": "..."}, ...]}``, optionally with an ``id``. A trailing
assistant message is the reference response (``Problem.answer`` and ``Problem.steps``); the prompt
is everything before it and must end with a user message. Malformed lines raise
:class:`~lm_envs.core.jsonl.DatasetFormatError` naming ``file:line``.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lm_envs.core.jsonl import DatasetFormatError, PathLike, read_jsonl
from lm_envs.core.problem import Problem
from lm_envs.core.task import ListTask, Task
from lm_envs.tasks.chat.rubric import Constraints

__all__ = [
    "KEYWORDS",
    "ROLES",
    "TOPICS",
    "SyntheticInstructions",
    "load_chat_jsonl",
    "load_chat_task",
    "render_messages",
    "synthetic_response",
]

#: Bumped whenever the synthetic instruction set below changes (part of the default RM's cache key).
CHAT_DATA_VERSION = 1

TOPICS: tuple[str, ...] = (
    "the garden", "the market", "a train trip", "the library", "baking bread", "a farm", "the beach",
    "a rainy day", "the school bus", "a birthday party", "the park", "a bike ride", "the kitchen",
    "a snowy morning", "the zoo", "a fishing trip", "the river", "a new book", "the museum", "a picnic",
)  # fmt: skip
KEYWORDS: tuple[str, ...] = (
    "red", "green", "blue", "quick", "happy", "quiet", "water", "money", "friends", "morning",
    "small", "bright", "warm", "cold", "apples", "music", "light", "sweet", "early", "busy",
)  # fmt: skip
ROLES: tuple[str, ...] = ("system", "user", "assistant")
_TEMPLATES: tuple[str, ...] = (
    "Write about {topic} in exactly {n} words. {use} Do not repeat words.",
    "Describe {topic} using exactly {n} words. {use} Do not repeat any word.",
    "In {n} words, tell me about {topic}. {use} No word may appear twice.",
)
_FILLER: tuple[str, ...] = (
    "the", "a", "we", "saw", "many", "some", "very", "and", "with", "day", "time", "people", "walk",
    "look", "nice", "old", "big", "fun", "good", "long", "there", "is", "it", "was", "our", "all",
)  # fmt: skip
TEST_SIZE = 200
TRAIN_SIZE = 10**9


def _use_clause(keywords: Sequence[str]) -> str:
    quoted = [f'"{k}"' for k in keywords]
    if len(quoted) == 1:
        return f"Use the word {quoted[0]}."
    return f"Use the words {', '.join(quoted[:-1])} and {quoted[-1]}."


# ------------------------------------------------------------------------------------------- rendering


@functools.cache
def _hf_tokenizer(name_or_path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except OSError as e:
        raise ValueError(
            f"cannot load the tokenizer {name_or_path!r} for its chat template: {e}. Give a local Hugging Face "
            "tokenizer directory, or chat_template=None for the plain 'User: ... Assistant:' template."
        ) from e


def render_messages(messages: Sequence[Mapping[str, str]], chat_template: str | None = None) -> str:
    """The prompt text of a conversation, ending where the assistant's reply starts.

    Args:
        messages: ``{"role": "system" | "user" | "assistant", "content": str}`` dicts; the last one
            must be a user message.
        chat_template: ``None`` for the plain template, or a Hugging Face tokenizer name or directory
            whose chat template renders the conversation (the plain template if it has none).

    Example:
        >>> print(render_messages([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]))
        System: Be brief.
        User: Hi
        Assistant:
    """
    if not messages or messages[-1].get("role") != "user":
        raise ValueError("a chat prompt must end with a user message (the assistant replies next).")
    if chat_template is not None:
        tok = _hf_tokenizer(str(chat_template))
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


# ------------------------------------------------------------------------------------------- synthetic

#: The format-only reply: a complete, polite sentence with no topic, keyword or word count in mind.
FORMAT_ONLY_REPLY = " Sure, here is a short answer for you."


def synthetic_response(constraints: Constraints, rng: random.Random) -> str:
    """One response of varied quality: its length, keyword use and repetition are drawn from ``rng``."""
    n = constraints.words if rng.random() < 0.3 else max(1, constraints.words + rng.randint(-3, 4))
    topic_words = [w for w in constraints.topic.split() if w not in ("the", "a")]
    pool = [w for w in (*topic_words, *_FILLER) if w not in constraints.keywords]
    out = rng.sample(pool, min(n, len(pool)))
    for k in constraints.keywords:
        if rng.random() < 0.6:
            out[rng.randrange(len(out))] = k
    if rng.random() < 0.4:  # repeat some words
        for _ in range(rng.randint(1, max(1, n // 2))):
            out[rng.randrange(len(out))] = rng.choice(out)
    text = " ".join(out)
    return " " + text[:1].upper() + text[1:] + "."


class SyntheticInstructions(Task):
    """Seeded synthetic instructions with a hidden gold rubric (see the module docstring).

    Args:
        seed: Seed of the instruction streams (``test`` is drawn from a separate stream).
        min_words: Smallest requested word count.
        max_words: Largest requested word count.
        chat_template: ``None`` (plain template) or a HF tokenizer whose chat template renders prompts.

    Example:
        >>> p = SyntheticInstructions().problem("test", 0)
        >>> p.prompt.startswith("User: ") and p.prompt.endswith("Assistant:"), sorted(p.metadata["constraints"])
        (True, ['keywords', 'topic', 'words'])
    """

    name = "chat"
    splits = ("train", "test")

    def __init__(
        self, seed: int = 0, min_words: int = 3, max_words: int = 10, chat_template: str | None = None
    ) -> None:
        if not 1 <= min_words <= max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got min_words={min_words}, max_words={max_words}.")
        self.seed, self.min_words, self.max_words, self.chat_template = seed, min_words, max_words, chat_template

    def size(self, split: str) -> int:
        self.check_split(split)
        return TEST_SIZE if split == "test" else TRAIN_SIZE

    def constraints(self, split: str, index: int) -> Constraints:
        """What problem ``(split, index)`` asks for."""
        self.check_index(split, index)
        key = f"chat/v{CHAT_DATA_VERSION}/{self.seed}/{split}/{index}".encode()
        rng = random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))
        n = rng.randint(self.min_words, self.max_words)
        k = 1 if n < 5 else rng.randint(1, 2)
        return Constraints(topic=rng.choice(TOPICS), words=n, keywords=tuple(rng.sample(KEYWORDS, k)))

    def problem(self, split: str, index: int) -> Problem:
        c = self.constraints(split, index)
        template = _TEMPLATES[index % len(_TEMPLATES)]
        text = template.format(topic=c.topic, n=c.words, use=_use_clause(c.keywords))
        messages = [{"role": "user", "content": text}]
        # A demonstration for SFT warm starts: a sampled response of varied quality (not the optimum),
        # so a warm-started policy writes words and RL has room to improve on them.
        demo = synthetic_response(c, random.Random(f"demo/{self.seed}/{split}/{index}"))
        return Problem(
            id=f"{split}/{index}",
            prompt=render_messages(messages, self.chat_template),
            steps=(demo,),
            metadata={"source": "synthetic", "constraints": c.to_dict(), "messages": messages},
        )

    def format_only(self, problem: Problem, rng: random.Random) -> str:
        """A fixed, well-formed reply that ignores the instruction (:data:`FORMAT_ONLY_REPLY`)."""
        return FORMAT_ONLY_REPLY

    def __repr__(self) -> str:
        return f"SyntheticInstructions(seed={self.seed}, words={self.min_words}..{self.max_words})"


# ------------------------------------------------------------------------------------------- JSONL


def _messages(path: PathLike, number: int, obj: dict[str, Any]) -> list[dict[str, str]]:
    if "messages" not in obj:
        raise DatasetFormatError(path, number, f"missing key 'messages' (keys present: {sorted(obj)})")
    raw = obj["messages"]
    if not isinstance(raw, list) or not raw:
        raise DatasetFormatError(path, number, "'messages' must be a non-empty list of {role, content} objects")
    out = []
    for j, m in enumerate(raw):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DatasetFormatError(path, number, f"messages[{j}] must be an object with 'role' and 'content'")
        if m["role"] not in ROLES:
            raise DatasetFormatError(path, number, f"messages[{j}] has role {m['role']!r}; use one of {ROLES}")
        if not isinstance(m["content"], str) or not m["content"].strip():
            raise DatasetFormatError(path, number, f"messages[{j}] has empty or non-string 'content'")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def load_chat_jsonl(path: PathLike, split: str = "train", chat_template: str | None = None) -> list[Problem]:
    """Read chat prompts from a messages-format JSONL file (see the module docstring).

    Args:
        path: The JSONL file.
        split: Split name used in problem ids (``"{split}/{i}"``) when records have no ``id``.
        chat_template: ``None`` (plain template) or a HF tokenizer whose chat template renders prompts.

    Returns:
        One problem per record, in file order.

    Raises:
        DatasetFormatError: On unreadable or empty files, invalid JSON, a malformed message, or a
            conversation that does not end with a user message (optionally followed by one assistant
            reply).
    """
    problems: list[Problem] = []
    seen: set[str] = set()
    for number, obj in read_jsonl(path):
        messages = _messages(path, number, obj)
        reference = ""
        if messages[-1]["role"] == "assistant":
            reference = messages.pop()["content"]
        if not messages or messages[-1]["role"] != "user":
            raise DatasetFormatError(
                path, number, "the conversation must end with a user message (plus at most one assistant reply)"
            )
        pid = obj.get("id", f"{split}/{len(problems)}")
        if not isinstance(pid, str) or not pid:
            raise DatasetFormatError(path, number, "key 'id' must be a non-empty str")
        if pid in seen:
            raise DatasetFormatError(path, number, f"duplicate problem id {pid!r}")
        seen.add(pid)
        problems.append(
            Problem(
                id=pid,
                prompt=render_messages(messages, chat_template),
                answer=reference,
                steps=(reference,) if reference else (),
                metadata={"source": "jsonl", "file": Path(path).name, "line": number, "messages": messages},
            )
        )
    return problems


def load_chat_task(
    train: PathLike | None = None, test: PathLike | None = None, chat_template: str | None = None
) -> ListTask:
    """A :class:`~lm_envs.ListTask` from messages-format JSONL files, one per split.

    Use it in the chat env: ``gym.make("LMEnv/Chat-v0", task="lm_envs.tasks.chat:load_chat_task",
    task_kwargs={"train": "train.jsonl", "test": "test.jsonl"})``.
    """
    files = {split: p for split, p in (("train", train), ("test", test)) if p is not None}
    if not files:
        raise ValueError("load_chat_task needs at least one file: train=... and/or test=...")
    return ListTask({s: load_chat_jsonl(p, s, chat_template) for s, p in files.items()}, name="chat")
