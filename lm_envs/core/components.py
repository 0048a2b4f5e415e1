"""Resolving an environment's components (task, reward, tokenizer, action size) from its kwargs.

Registered specs name tasks and rewards by import string (``"package.module:attr"``) so that
``EnvSpec`` stays serialisable; users may also pass objects directly.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from lm_envs.core.reward import Reward, as_reward
from lm_envs.core.task import Task
from lm_envs.core.tokenizer import TextCodec

TaskSpec = Task | str
RewardSpec = Reward | Callable[..., Any] | str


def import_attr(spec: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute, with a clear error if it fails."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"import string {spec!r} must look like 'package.module:attr'.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import module {module_name!r} named in {spec!r}: {e}") from e
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r} (from {spec!r}).") from None


def _build(spec: Any, kwargs: Mapping[str, Any] | None, what: str, base: type) -> Any:
    obj = import_attr(spec) if isinstance(spec, str) else spec
    if (isinstance(obj, type) and issubclass(obj, base)) or (isinstance(spec, str) and callable(obj)):
        try:  # a class or factory: build it with the kwargs
            obj = obj(**dict(kwargs or {}))
        except TypeError as e:
            raise TypeError(f"could not build the {what} from {spec!r} with {what}_kwargs={kwargs!r}: {e}") from e
    elif kwargs:
        raise ValueError(f"{what}_kwargs={dict(kwargs)!r} given, but the {what} is already an object ({obj!r}).")
    return obj


def resolve_task(task: TaskSpec, task_kwargs: Mapping[str, Any] | None = None) -> Task:
    """A :class:`Task` from an instance, a ``Task`` subclass or an import string of one or of a factory."""
    if task is None:
        raise ValueError("an environment needs a task: pass task=<Task> or task='package.module:attr'.")
    obj = _build(task, task_kwargs, "task", Task)
    if not isinstance(obj, Task):
        raise TypeError(f"task must be a lm_envs.Task, got {type(obj).__name__} from {task!r}.")
    return obj


def resolve_reward(reward: RewardSpec, reward_kwargs: Mapping[str, Any] | None = None) -> Reward:
    """A :class:`Reward` from an instance, a plain outcome function, a class, or an import string."""
    if reward is None:
        raise ValueError(
            "an environment needs a reward: pass reward=<Reward>, a function (problem, completion) -> float, "
            "or reward='package.module:attr'."
        )
    return as_reward(_build(reward, reward_kwargs, "reward", Reward))


def resolve_action_size(codec: TextCodec, vocab_size: int | None) -> int:
    """The action space width: the model's logits width, at least the tokenizer's vocabulary."""
    if vocab_size is None:
        return codec.vocab_size
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 2:
        raise ValueError(f"vocab_size must be an int >= 2 (the model's logits width), got {vocab_size!r}.")
    if vocab_size < codec.vocab_size:
        raise ValueError(
            f"the tokenizer {codec.name!r} has {codec.vocab_size} tokens but the action space (vocab_size) is "
            f"only {vocab_size}; pass vocab_size >= {codec.vocab_size} (the model's config.vocab_size), or use "
            "the tokenizer that belongs to the model."
        )
    return vocab_size
