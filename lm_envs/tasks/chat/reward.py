"""The chat reward: a learned reward model's scalar score of (prompt, response) at the end of the episode.

Any ``transformers`` sequence classifier with **one** output, saved with its tokenizer in a local
directory (or a hub name), is a reward model; ``reward_model=None`` is the embedded default, a
small RM trained on first use on the synthetic preference set and cached
(:func:`~lm_envs.tasks.chat.default_rm.default_reward_model_path`). The env calls
:meth:`ChatReward.outcome_batch` once per vector step with every episode that ended in it, and all
of them are scored in one batched forward (right-padded; the score is read at each text's last
real token). KL to the reference model is the agent's job (PPO), not the reward's.

The text scored is the prompt plus the response; a reward model that ``lm-envs train-rm`` trained on prompts
rendered through its own chat template reads the conversation rendered that way, whatever template the
policy's env used (:meth:`RewardModelScorer.prompt_for`).

The reward paid is ``(score - mean) / std`` with ``normalize=True`` (``mean``/``std`` given, or
the held-out statistics the trainer saved in the model's config as ``reward_mean`` and
``reward_std``), else the raw score, minus ``length_penalty`` per word of the response. The record
(``info["outcome"]``) holds ``rm_score`` (raw), ``num_words`` and, for synthetic instructions, the
hidden gold rubric's ``gold`` score and its parts, so over-optimisation is visible.

Importing this module imports neither torch nor transformers; scoring does.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lm_envs.core.problem import Problem
from lm_envs.core.reward import Outcome, Reward
from lm_envs.tasks.chat.rubric import Constraints, rubric_parts, words

__all__ = ["ChatReward", "RewardModelScorer", "check_reward_model", "load_scorer", "release_scorers"]


def check_reward_model(model: Any, tokenizer: Any, where: str) -> None:
    """Raise a clear ``ValueError`` unless ``model`` has one output and ``tokenizer`` fits its embedding.

    Args:
        model: A ``transformers`` sequence classifier.
        tokenizer: Its tokenizer (a ``transformers`` tokenizer).
        where: Where they came from, for the message.
    """
    n = int(model.config.num_labels)
    if n != 1:
        raise ValueError(
            f"the reward model at {where!r} has {n} outputs; a reward model needs exactly one scalar "
            "(num_labels=1). Retrain it with agents/reward_model.py, or build the classifier with "
            "AutoModelForSequenceClassification.from_pretrained(..., num_labels=1)."
        )
    vocab = int(model.get_input_embeddings().weight.shape[0])
    if len(tokenizer) > vocab:
        raise ValueError(
            f"the tokenizer of the reward model at {where!r} has {len(tokenizer)} tokens but the model embeds "
            f"only {vocab}: they do not belong together. Save the tokenizer the model was trained with beside "
            "it (tokenizer.save_pretrained(path))."
        )


def prepare_tokenizer(tokenizer: Any, model: Any) -> Any:
    """Set padding (right, so the last real token is found) and truncation (left: keep the response end)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:  # transformers finds the last real token through the pad id
        model.config.pad_token_id = tokenizer.pad_token_id
    tokenizer.padding_side, tokenizer.truncation_side = "right", "left"
    return tokenizer


class RewardModelScorer:
    """A reward model loaded from ``path``, scoring texts in batched forwards.

    Args:
        path: Local directory (or hub name) of a one-output sequence classifier and its tokenizer.
        device: Torch device.
        batch_size: Texts per forward pass (the env's finished episodes of one vector step are
            scored together when they fit).
        max_length: Longer texts are cut from the left.

    Attributes:
        forwards: Number of forward passes run so far (for tests and benchmarks).
    """

    def __init__(self, path: str, device: str = "cpu", batch_size: int = 256, max_length: int = 512) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            model = AutoModelForSequenceClassification.from_pretrained(path)
            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise ValueError(
                f"cannot load a reward model from {path!r}: {e}. Give a directory holding a transformers sequence "
                "classifier and its tokenizer (e.g. trained with `lm-envs train-rm`), or None for the default."
            ) from e
        check_reward_model(model, tokenizer, path)
        self.model = model.to(device).eval()
        self.tokenizer = prepare_tokenizer(tokenizer, self.model)
        self.path, self.device, self.batch_size, self.max_length = str(path), device, batch_size, max_length
        self.mean = getattr(self.model.config, "reward_mean", None)
        self.std = getattr(self.model.config, "reward_std", None)
        # `lm-envs train-rm` records whether the synthetic prompts it trained on went through this model's own
        # chat template (see prompt_for)
        self.chat_template = bool(getattr(self.model.config, "lm_envs_chat_template", False))
        self.forwards = 0
        self._torch = torch
        self._lock = threading.Lock()

    def score(self, texts: Sequence[str]) -> list[float]:
        """The reward model's scalar for each text, ``batch_size`` texts per forward."""
        torch = self._torch
        out: list[float] = []
        with self._lock, torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(
                    list(texts[start : start + self.batch_size]),
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                ).to(self.device)
                self.forwards += 1
                out.extend(self.model(**enc).logits[:, 0].float().cpu().tolist())
        return out

    def prompt_for(self, problem: Problem) -> str:
        """The prompt as this reward model read prompts in training.

        A reward model that `lm-envs train-rm` trained on prompts rendered through its own chat template
        (``lm_envs_chat_template`` in its config) scores the conversation (``metadata["messages"]``)
        rendered the same way, whatever template the policy's env used; any other reward model reads the
        env's prompt as it is.
        """
        messages = (problem.metadata or {}).get("messages")
        if not self.chat_template or not messages:
            return problem.prompt
        from lm_envs.tasks.chat.task import render_messages

        return render_messages(messages, self.path)

    def __repr__(self) -> str:
        return f"RewardModelScorer({self.path!r})"


_SCORERS: dict[tuple[str, str, int, int], RewardModelScorer] = {}


def load_scorer(path: str, device: str = "cpu", batch_size: int = 256, max_length: int = 512) -> RewardModelScorer:
    """A :class:`RewardModelScorer`, loaded once per process and shared (inference only)."""
    key = (str(path), device, batch_size, max_length)
    if key not in _SCORERS:
        _SCORERS[key] = RewardModelScorer(str(path), device, batch_size, max_length)
    return _SCORERS[key]


def release_scorers(path: str) -> int:
    """Drop the shared scorers :func:`load_scorer` loaded from ``path`` (their weights go with them).

    For a process that runs against several reward models in turn and needs each one's memory back.

    Args:
        path: The reward model directory, as given to :func:`load_scorer`.

    Returns:
        How many scorers were dropped (one per device / batch size / length they were loaded with).
    """
    keys = [k for k in _SCORERS if k[0] == str(path)]
    for k in keys:
        del _SCORERS[k]
    return len(keys)


class ChatReward(Reward):
    """A learned reward model's score at the end of a chat episode (see the module docstring).

    Args:
        reward_model: Directory or hub name of a one-output sequence classifier, or ``None`` for the
            embedded default (trained on first use and cached).
        normalize: Pay ``(score - mean) / std``.
        mean: Score mean for ``normalize`` (default: ``reward_mean`` saved in the model's config).
        std: Score standard deviation for ``normalize`` (default: ``reward_std`` from the config).
        length_penalty: Subtracted per word of the response (``0`` disables it).
        device: Torch device of the reward model.
        batch_size: Texts per forward pass.
        max_length: Longer texts are cut from the left.

    Example:
        >>> r = ChatReward(length_penalty=0.01)  # the default RM, loaded on first use
        >>> r
        ChatReward(reward_model=None, normalize=False, length_penalty=0.01)
    """

    def __init__(
        self,
        reward_model: str | None = None,
        normalize: bool = False,
        mean: float | None = None,
        std: float | None = None,
        length_penalty: float = 0.0,
        device: str = "cpu",
        batch_size: int = 256,
        max_length: int = 512,
    ) -> None:
        for name, value in (("mean", mean), ("std", std), ("length_penalty", length_penalty)):
            if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value)):
                raise ValueError(f"ChatReward {name} must be a finite number, got {value!r}.")
        if std is not None and std <= 0:
            raise ValueError(f"ChatReward std must be > 0, got {std!r}.")
        if reward_model is not None and not isinstance(reward_model, (str, Path)):
            raise TypeError(f"reward_model must be a path or name (or None for the default), got {reward_model!r}.")
        self.reward_model = None if reward_model is None else str(reward_model)
        self.normalize, self.mean, self.std = bool(normalize), mean, std
        self.length_penalty = float(length_penalty)
        self.device, self.batch_size, self.max_length = device, int(batch_size), int(max_length)
        self._scorer: RewardModelScorer | None = None
        self._norm = (0.0, 1.0)

    def scorer(self) -> RewardModelScorer:
        """The loaded reward model (the default is trained and cached on first use)."""
        if self._scorer is None:
            path = self.reward_model
            if path is None:
                from lm_envs.tasks.chat.default_rm import default_reward_model_path

                path = str(default_reward_model_path())
            self._scorer = load_scorer(path, self.device, self.batch_size, self.max_length)
            if self.normalize:
                mean = self.mean if self.mean is not None else self._scorer.mean
                std = self.std if self.std is not None else self._scorer.std
                if mean is None or std is None:
                    raise ValueError(
                        f"normalize=True needs the score mean and std: pass mean= and std=, or use a reward model "
                        f"trained with agents/reward_model.py (it saves reward_mean/reward_std); {path!r} has none."
                    )
                self._norm = (float(mean), float(std))
        return self._scorer

    def outcome(self, problem: Problem, completion: str) -> Outcome:
        return self.outcome_batch([problem], [completion])[0]

    def outcome_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[Outcome]:
        scorer = self.scorer()
        scores = scorer.score([scorer.prompt_for(p) + c for p, c in zip(problems, completions, strict=True)])
        out = []
        for problem, completion, score in zip(problems, completions, scores, strict=True):
            value = (score - self._norm[0]) / self._norm[1] if self.normalize else score
            num_words = len(words(completion))
            value -= self.length_penalty * num_words
            record: dict[str, Any] = {"rm_score": float(score), "num_words": num_words}
            constraints = problem.metadata.get("constraints") if problem.metadata else None
            if constraints is not None:
                parts = rubric_parts(Constraints.from_dict(constraints), completion)
                record["gold"] = sum(parts.values()) / 3.0
                record.update({f"gold_{k}": v for k, v in parts.items()})
            if not math.isfinite(value):
                raise ValueError(f"the reward model {scorer.path!r} returned a non-finite score {score}.")
            out.append(Outcome(float(value), record))
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_scorer"] = None  # reloaded lazily; models do not belong in a pickled env
        return state

    def __repr__(self) -> str:
        return (
            f"ChatReward(reward_model={self.reward_model!r}, normalize={self.normalize}, "
            f"length_penalty={self.length_penalty})"
        )
