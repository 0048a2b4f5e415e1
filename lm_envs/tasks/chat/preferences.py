"""Preference pairs for reward-model training: a seeded synthetic set and a JSONL loader.

**Synthetic** (:func:`synthetic_preferences`): for each synthetic instruction
(:class:`~lm_envs.tasks.chat.task.SyntheticInstructions`), two responses are drawn from a seeded
sampler that varies their length, whether they use the keywords and how often they repeat words;
the hidden gold rubric (:func:`~lm_envs.tasks.chat.rubric.gold_score`) decides which is chosen.
Pairs whose gold scores are within ``min_gap`` are redrawn, so every pair carries a real preference.
A reward model trained on them learns the rubric's signal offline, and the rubric can later measure
how far a policy optimised against the learned model drifts from it.

**JSONL** (:func:`load_preference_jsonl`), one pair per line, in any of these shapes:

* HH-RLHF: ``{"chosen": "<transcript>", "rejected": "<transcript>"}``: both transcripts share the
  conversation; the prompt is their common part up to the last ``Assistant:`` marker;
* ``{"prompt": "...", "chosen": "...", "rejected": "..."}`` (strings: the response follows the prompt);
* the conversational form of the same, with lists of ``{role, content}`` messages (rendered with
  :func:`~lm_envs.tasks.chat.task.render_messages`);

each optionally with a numeric ``margin``. Malformed lines, identical chosen and rejected
responses and empty responses raise :class:`~lm_envs.core.jsonl.DatasetFormatError`
naming ``file:line`` and the fix.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from lm_envs.core.jsonl import DatasetFormatError, PathLike, read_jsonl
from lm_envs.tasks.chat.rubric import Constraints, gold_score
from lm_envs.tasks.chat.task import SyntheticInstructions, render_messages, synthetic_response

__all__ = ["PreferencePair", "check_pair", "load_preference_jsonl", "synthetic_preferences", "synthetic_response"]

_HH_MARKER = "Assistant:"


@dataclass(frozen=True)
class PreferencePair:
    """One preference: ``prompt + chosen`` is better than ``prompt + rejected``.

    Attributes:
        prompt: Shared context (may be ``""`` when the responses are whole transcripts).
        chosen: The preferred response text (follows the prompt directly).
        rejected: The other response text.
        margin: Required score gap ``m`` in the Bradley-Terry loss ``-log sigmoid(r_c - r_r - m)``.
        metadata: Where it came from (gold scores of synthetic pairs, file and line of loaded ones).
    """

    prompt: str
    chosen: str
    rejected: str
    margin: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    def texts(self) -> tuple[str, str]:
        """The two full texts a reward model scores: ``(prompt + chosen, prompt + rejected)``."""
        return self.prompt + self.chosen, self.prompt + self.rejected


def check_pair(pair: PreferencePair, where: str = "pair") -> PreferencePair:
    """Raise a clear ``ValueError`` if ``pair`` carries no preference (identical or empty responses)."""
    if not pair.chosen.strip() or not pair.rejected.strip():
        side = "chosen" if not pair.chosen.strip() else "rejected"
        raise ValueError(f"{where}: the {side} response is empty; drop the pair or give both responses text.")
    if pair.chosen == pair.rejected:
        raise ValueError(f"{where}: chosen and rejected are identical, so the pair carries no preference; drop it.")
    if pair.margin != pair.margin or abs(pair.margin) == float("inf"):
        raise ValueError(f"{where}: margin must be finite, got {pair.margin!r}.")
    return pair


# ------------------------------------------------------------------------------------------- synthetic


def synthetic_preferences(
    num_pairs: int,
    seed: int = 0,
    split: str = "train",
    min_gap: float = 0.05,
    task: SyntheticInstructions | None = None,
) -> list[PreferencePair]:
    """``num_pairs`` preference pairs on synthetic instructions, ordered by the hidden gold rubric.

    Pair ``i`` uses instruction ``i`` of ``split`` and an RNG seeded by ``(seed, split, i)``, so the
    set is deterministic and a prefix of a larger set.

    Args:
        num_pairs: Number of pairs.
        seed: Seed of the response sampler.
        split: Which instructions (``"train"`` or ``"test"``; ``test`` has 200).
        min_gap: Smallest gold-score gap of a kept pair (closer pairs are redrawn).
        task: The instruction source (default ``SyntheticInstructions()``).

    Example:
        >>> pairs = synthetic_preferences(3)
        >>> all(p.metadata["gold_chosen"] > p.metadata["gold_rejected"] for p in pairs)
        True
    """
    task = task or SyntheticInstructions()
    if num_pairs > task.size(split):
        raise ValueError(f"split {split!r} has {task.size(split)} instructions; ask for at most that many pairs.")
    pairs = []
    for i in range(num_pairs):
        problem = task.problem(split, i)
        c = Constraints.from_dict(problem.metadata["constraints"])
        rng = random.Random(f"prefs/{seed}/{split}/{i}")
        for _ in range(100):
            a, b = synthetic_response(c, rng), synthetic_response(c, rng)
            ga, gb = gold_score(c, a), gold_score(c, b)
            if abs(ga - gb) >= min_gap:
                break
        else:  # pragma: no cover - the sampler varies enough that this never happens
            raise RuntimeError(f"could not draw a preference pair for instruction {i}; lower min_gap.")
        if gb > ga:
            a, b, ga, gb = b, a, gb, ga
        meta = {"problem_id": problem.id, "gold_chosen": ga, "gold_rejected": gb, "constraints": c.to_dict()}
        pairs.append(PreferencePair(problem.prompt, a, b, 0.0, meta))
    return pairs


# ------------------------------------------------------------------------------------------- JSONL


def _text(path: PathLike, number: int, obj: dict[str, Any], key: str, prompt: bool = False) -> str:
    value = obj[key]
    if isinstance(value, list):
        try:
            if prompt:
                return render_messages(value)
            return "".join(" " + m["content"] for m in value)
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetFormatError(path, number, f"key {key!r} is a malformed message list ({e})") from e
    if not isinstance(value, str):
        raise DatasetFormatError(path, number, f"key {key!r} must be a str or a list of messages")
    return value


def _split_hh(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split HH-RLHF transcripts at the last ``Assistant:`` marker of their common prefix."""
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    cut = chosen.rfind(_HH_MARKER, 0, n)
    if cut < 0:
        return "", chosen, rejected
    cut += len(_HH_MARKER)
    return chosen[:cut], chosen[cut:], rejected[cut:]


def load_preference_jsonl(path: PathLike) -> list[PreferencePair]:
    """Read chosen/rejected pairs from a JSONL file (see the module docstring for the shapes).

    Raises:
        DatasetFormatError: On unreadable or empty files, invalid JSON, missing or mistyped keys,
            identical chosen and rejected, an empty response, or a non-numeric margin.
    """
    pairs = []
    for number, obj in read_jsonl(path):
        for key in ("chosen", "rejected"):
            if key not in obj:
                raise DatasetFormatError(path, number, f"missing key {key!r} (keys present: {sorted(obj)})")
        chosen, rejected = _text(path, number, obj, "chosen"), _text(path, number, obj, "rejected")
        if "prompt" in obj:
            prompt = _text(path, number, obj, "prompt", prompt=True)
        else:
            prompt, chosen, rejected = _split_hh(chosen, rejected)
        margin = obj.get("margin", 0.0)
        if not isinstance(margin, (int, float)) or isinstance(margin, bool):
            raise DatasetFormatError(path, number, f"key 'margin' must be a number, got {margin!r}")
        pair = PreferencePair(prompt, chosen, rejected, float(margin), {"line": number})
        try:
            check_pair(pair, where="pair")
        except ValueError as e:
            raise DatasetFormatError(path, number, str(e).removeprefix("pair: ")) from None
        pairs.append(pair)
    return pairs
