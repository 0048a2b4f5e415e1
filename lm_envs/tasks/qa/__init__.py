"""Abstention-aware knowledge QA: a synthetic world, answer checking, the abstention reward, honesty metrics.

Environment id: ``LMEnv/KnowledgeQA-v0`` (see :mod:`lm_envs.builtin_envs`). Files in TriviaQA or
SimpleQA JSONL style plug into the same env: ``gym.make("LMEnv/KnowledgeQA-v0",
task="lm_envs.tasks.qa:load_qa_task", task_kwargs={"train": "train.jsonl", "test": "test.jsonl"})``.
"""

from __future__ import annotations

from lm_envs.tasks.qa.loaders import load_qa_task, load_simpleqa, load_triviaqa
from lm_envs.tasks.qa.matching import ABSTENTION_PHRASES, is_abstention, is_correct, normalize_answer
from lm_envs.tasks.qa.metrics import honesty_metrics, transition_honesty
from lm_envs.tasks.qa.rewards import AbstentionReward
from lm_envs.tasks.qa.world import KnowledgeQATask, KnowledgeWorld

__all__ = [
    "ABSTENTION_PHRASES",
    "AbstentionReward",
    "KnowledgeQATask",
    "KnowledgeWorld",
    "honesty_metrics",
    "is_abstention",
    "is_correct",
    "load_qa_task",
    "load_simpleqa",
    "load_triviaqa",
    "normalize_answer",
    "transition_honesty",
]
