"""Pre-training: a causal-LM stage on a task's documents, before SFT.

Some tasks test what a model *knows* (e.g. the knowledge QA env, where the model must hold a fact
corpus before it is asked about it). Their :meth:`~lm_envs.Task.documents` are tokenized once,
joined with EOS into one stream (GPT-2 style packing: no padding is wasted) and cut into windows
of ``block_size`` tokens at random offsets, so every step sees facts in fresh contexts. Every token
is a target: this is plain next-token prediction, the same objective the model's pre-training had.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agents.sft import fit
from lm_envs import Task, TextCodec


@dataclass
class PretrainConfig:
    """Settings of the pre-training stage (``steps: 0`` skips it, the default)."""

    steps: int = 0  # optimizer steps on the task's documents
    batch_size: int = 32  # windows per step
    block_size: int = 64  # tokens per window
    lr: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 0.01
    warmup_steps: int = 50  # linear warm-up, then cosine decay to 10% of lr
    max_grad_norm: float = 1.0


def token_stream(task: Task, codec: TextCodec) -> np.ndarray:
    """Every document's tokens followed by EOS, concatenated in document order."""
    ids: list[int] = []
    for doc in task.documents():
        ids.extend(codec.encode(doc))
        ids.append(codec.eos_token_id)
    return np.asarray(ids, dtype=np.int64)


def window_batches(
    stream: np.ndarray, cfg: PretrainConfig, rng: np.random.Generator
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches of ``block_size`` windows at uniformly random offsets into ``stream``."""
    width = min(cfg.block_size, len(stream))
    starts_max = len(stream) - width + 1
    while True:
        starts = rng.integers(starts_max, size=cfg.batch_size)
        ids = torch.from_numpy(np.stack([stream[s : s + width] for s in starts]))
        yield {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def train_pretrain(
    model: torch.nn.Module,
    task: Task,
    codec: TextCodec,
    cfg: PretrainConfig,
    seed: int = 0,
    log: Callable[[int, dict[str, Any]], None] | None = None,
) -> torch.optim.Optimizer:
    """Train ``model`` (in place) for ``cfg.steps`` steps of next-token prediction on ``task.documents()``.

    Raises:
        ValueError: If the task has no documents to pre-train on.
    """
    stream = token_stream(task, codec)
    if len(stream) < 2:
        raise ValueError(
            f"task {task.name!r} has no documents to pre-train on (Task.documents() is empty); set "
            "pretrain.steps=0 or use a task that provides documents (e.g. LMEnv/KnowledgeQA-v0)."
        )
    return fit(model, window_batches(stream, cfg, np.random.default_rng([seed, 11])), cfg, "pretrain", log)
