"""Chat with a learned reward model: synthetic instructions with a hidden gold rubric, JSONL prompts, RM reward.

Environment id: ``LMEnv/Chat-v0`` (see :mod:`lm_envs.builtin_envs`). The reward
(:class:`~lm_envs.tasks.chat.reward.ChatReward`) imports torch only when it first scores.
"""

from __future__ import annotations

from lm_envs.tasks.chat.preferences import PreferencePair, load_preference_jsonl, synthetic_preferences
from lm_envs.tasks.chat.reward import ChatReward
from lm_envs.tasks.chat.rubric import Constraints, gold_score
from lm_envs.tasks.chat.task import SyntheticInstructions, load_chat_jsonl, load_chat_task, render_messages

__all__ = [
    "ChatReward",
    "Constraints",
    "PreferencePair",
    "SyntheticInstructions",
    "gold_score",
    "load_chat_jsonl",
    "load_chat_task",
    "load_preference_jsonl",
    "render_messages",
    "synthetic_preferences",
]
