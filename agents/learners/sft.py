"""Supervised fine-tuning (SFT) on a task's gold demonstrations: the warm start before RL.

A tiny model trained from scratch needs it: RL only sharpens what the policy already samples.
Each example is tokenized exactly as the token env sees an episode: the prompt encoded as the env
encodes it (:meth:`~lm_envs.core.episodes.EnvConfig.encode_prompt`: with ``add_special_tokens=True``,
or through the model's chat template when the env renders prompts with it), then the gold
solution's tokens and EOS, so the warm-started model produces the same token sequences the env will
receive. The loss is the mean negative
log-likelihood of the solution tokens (prompt tokens are context only).

Rehearsal (``replay_rows``): rows of the task's pre-training documents join every batch, so SFT
teaches the task's format without overwriting what pre-training stored. Fine-tuning a small model on
a few hundred QA demonstrations otherwise erases recall of the facts it was pre-trained on, facts
the demonstrations never mention: on ``LMEnv/KnowledgeQA-v1`` (seed 0, 100 steps at lr 1e-4),
held-out known-fact accuracy falls from 0.99 after pre-training to 0.78 after SFT, and with 8
document rows per batch it stays at 0.96. The loss is then the mean over every labelled token, the
documents' and the solutions' alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from agents.policy.models import head_on_rows, positions
from agents.policy.precision import Precision
from agents.run.distributed import Dist
from lm_envs import Problem, Task, TextCodec
from lm_envs.core.episodes import EnvConfig


@dataclass
class SFTConfig:
    """Settings of the SFT warm start."""

    steps: int = 600  # optimizer steps (0 skips SFT)
    batch_size: int = 32  # demonstrations per step
    lr: float = 1e-3  # AdamW peak learning rate (tiny models from scratch like it high)
    weight_decay: float = 0.01
    warmup_steps: int = 50  # linear warm-up, then cosine decay to 10% of lr
    max_grad_norm: float = 1.0
    split: str = "train"  # where demonstrations come from
    num_examples: int | None = None  # use only the split's first N problems (a fixed demonstration set); None: all
    replay_rows: int = 0  # rows of the task's pre-training documents added to every batch (rehearsal); 0: none
    replay_block_size: int = 64  # tokens per replay row
    checkpoint_every: int = 200  # checkpoint every N steps, so a killed SFT resumes part-way (0: only at the end)


#: ``checkpoint(steps_done, optimizer, schedule)``: what :func:`fit` calls to save a stage part-way.
Checkpointer = Callable[[int, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler], None]


def encode_demo(
    codec: TextCodec, problem: Problem, env_config: EnvConfig | None = None, task: Task | None = None
) -> tuple[list[int], ...]:
    """Prompt ids and target ids (solution + EOS) of one demonstration, tokenized as the env does.

    ``env_config`` is the env's (its prompt format and step separator); ``None``: the defaults. With a
    multi-turn ``task`` whose demonstration has several turns (:meth:`lm_envs.Task.demonstration`, e.g.
    tool calls), the env's replies come from its own :meth:`~lm_envs.Task.respond`, encoded on their own
    as the env appends them, and a third list marks the tokens to train on (False on the env's).
    """
    if not problem.steps:
        raise ValueError(
            f"problem {problem.id!r} has no gold steps; SFT needs demonstrations (Problem.steps). Set sft.steps=0 "
            "to skip the warm start."
        )
    env_config = env_config or EnvConfig()
    prompt = env_config.encode_prompt(codec, problem.prompt)
    turns = task.demonstration(problem, env_config.step_separator) if task is not None and task.multi_turn else None
    if not turns or len(turns) == 1:
        text = turns[0] if turns else problem.solution(env_config.step_separator)
        return prompt, codec.encode(text) + [codec.eos_token_id]
    target: list[int] = []
    trained: list[bool] = []
    for k, text in enumerate(turns):
        ids = codec.encode(text) + ([codec.eos_token_id] if k == len(turns) - 1 else [])
        target += ids
        trained += [True] * len(ids)
        reply = task.respond(problem, tuple(turns[: k + 1]), final=False) if k < len(turns) - 1 else None
        if reply is not None and reply.text:  # the env's tokens: seen, never trained on
            ids = codec.encode(reply.text)
            target += ids
            trained += [False] * len(ids)
    return prompt, target, trained


def collate(examples: Sequence[tuple[list[int], ...]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch with labels ``-100`` on prompt and padding positions.

    An example is ``(prompt_ids, target_ids)``, or ``(prompt_ids, target_ids, trained)`` where
    ``trained`` is False on targets that are not the model's to learn (a multi-turn env's tokens).
    """
    width = max(len(e[0]) + len(e[1]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for i, (p, t, *rest) in enumerate(examples):
        seq = p + t
        ids[i, : len(seq)] = torch.tensor(seq)
        att[i, : len(seq)] = 1
        target = torch.tensor(t)
        if rest:
            target = target.masked_fill(~torch.tensor(rest[0], dtype=torch.bool), -100)
        labels[i, len(p) : len(seq)] = target
    return {"input_ids": ids, "attention_mask": att, "labels": labels}


def demo_batches(
    task: Task, codec: TextCodec, cfg: SFTConfig, rng: np.random.Generator, env_config: EnvConfig | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches of demonstrations drawn uniformly from the split (or its first ``num_examples``)."""
    n = task.size(cfg.split)
    if cfg.num_examples is not None:
        if cfg.num_examples < 1:
            raise ValueError(f"sft.num_examples must be >= 1 or null (the whole split), got {cfg.num_examples}.")
        n = min(n, cfg.num_examples)
    # a fixed demonstration set is tokenized once (an unbounded generated split is not cached)
    encoded: dict[int, tuple[list[int], list[int]]] = {}
    cache = n <= 100_000
    while True:
        batch = []
        for i in rng.integers(n, size=cfg.batch_size).tolist():
            example = encoded.get(i) or encode_demo(codec, task.problem(cfg.split, i), env_config, task)
            if cache:
                encoded[i] = example
            batch.append(example)
        yield collate(batch, codec.pad_token_id)


def nll(model: torch.nn.Module, batch: dict[str, torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """Negative log-likelihood of the labelled tokens: their mean (``reduction="sum"``: their sum).

    Only the positions that predict a labelled token go through the LM head (:func:`head_on_rows`).
    """
    att, labels = batch["attention_mask"], batch["labels"][:, 1:]
    keep = labels != -100  # position t predicts token t + 1
    with head_on_rows(model, torch.nn.functional.pad(keep, (0, 1))):
        logits = model(input_ids=batch["input_ids"], attention_mask=att, position_ids=positions(att)).logits
    if logits.dim() == 3:  # the model has no hookable head: it computed every position
        logits = logits[:, :-1][keep]
    return torch.nn.functional.cross_entropy(logits.float(), labels[keep], reduction=reduction)


def lr_lambda(cfg: Any) -> Callable[[int], float]:
    """Linear warm-up then cosine decay to 10% of the peak."""

    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return float(0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * progress)))  # a float: checkpoints load it weights-only

    return f


def train_sft(
    model: torch.nn.Module,
    task: Task,
    codec: TextCodec,
    cfg: SFTConfig,
    seed: int = 0,
    log: Callable[[int, dict[str, Any]], None] | None = None,
    progress: bool = False,
    precision: Precision | None = None,
    dist: Dist | None = None,
    env_config: EnvConfig | None = None,
    checkpoint: Checkpointer | None = None,
    resume: dict[str, Any] | None = None,
) -> torch.optim.Optimizer:
    """Run ``cfg.steps`` SFT steps on ``model`` (in place); ``log(step, metrics)`` every 10 steps.

    ``progress`` shows a progress bar with the live loss; ``precision``: autocast and loss scaling;
    ``env_config``: the env's prompt format (see :func:`encode_demo`).
    ``checkpoint(steps_done, optimizer, schedule)`` is called every ``cfg.checkpoint_every`` steps;
    ``resume`` (``{"step", "optimizer", "schedule"}``, what such a checkpoint saved) continues from there
    with the batches, optimizer state and lr the uninterrupted run would have had.
    Returns the optimizer, so a checkpoint can hold its state.
    """
    batches = demo_batches(task, codec, cfg, np.random.default_rng([seed, 7]), env_config)
    if cfg.replay_rows:
        batches = with_replay(batches, task, codec, cfg, np.random.default_rng([seed, 13]))
    every = cfg.checkpoint_every if checkpoint is not None else 0
    return fit(model, batches, cfg, "sft", log, progress, precision, dist, checkpoint, every, resume)


def with_replay(
    batches: Iterator[dict[str, torch.Tensor]], task: Task, codec: TextCodec, cfg: SFTConfig, rng: np.random.Generator
) -> Iterator[dict[str, torch.Tensor]]:
    """Each batch of ``batches`` with ``cfg.replay_rows`` rows of pre-training documents appended.

    The rows are packed as pre-training's ``packing="shuffle"`` packs them (whole documents drawn at
    random, every real token a target), and both parts are right-padded to a common width.

    Raises:
        ValueError: On a negative ``replay_rows``, or a task without documents.
    """
    from agents.learners.pretrain import rehearsal_documents, replay_batches  # pretrain imports fit from here

    what = f"sft.replay_rows={cfg.replay_rows}"
    if cfg.replay_rows < 0:
        raise ValueError(f"sft.replay_rows must be >= 0, got {cfg.replay_rows}.")
    docs = rehearsal_documents(task, codec, what)
    replay = replay_batches(docs, cfg.replay_rows, cfg.replay_block_size, rng, codec.pad_token_id, what)
    fill = {"input_ids": codec.pad_token_id, "attention_mask": 0, "labels": -100}
    for demos in batches:
        rows = next(replay)
        width = max(demos["input_ids"].shape[1], rows["input_ids"].shape[1])
        yield {
            key: torch.cat(
                [
                    torch.nn.functional.pad(part[key], (0, width - part[key].shape[1]), value=value)
                    for part in (demos, rows)
                ]
            )
            for key, value in fill.items()
        }


def gradient_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    loss: torch.Tensor,
    max_grad_norm: float,
    what: str,
    lr_key: str,
    precision: Precision | None = None,
) -> torch.Tensor:
    """Backward, clip the gradient norm, step optimizer and schedule; returns the pre-clip norm.

    A non-finite ``loss`` stops before the weights change, naming ``what`` and the ``lr_key`` to lower.
    ``precision`` scales the loss for float16 (default: float32, no scaling).
    """
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{what} became {loss.item()}; lower {lr_key}.")
    optimizer.zero_grad(set_to_none=True)
    if precision is None or precision.scaler is None:
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
    else:  # float16: scaled backward, unscale before clipping, skip a step whose gradients overflowed
        precision.backward(loss)
        grad_norm = precision.step(optimizer, model.parameters(), max_grad_norm)
    schedule.step()
    return grad_norm


def shard_batch(batch: dict[str, torch.Tensor], dist: Dist) -> tuple[dict[str, torch.Tensor], float]:
    """This rank's rows of a batch every rank holds, and the scale of their NLL sum.

    The scale is ``world_size / labelled tokens of the whole batch`` (DDP averages the ranks' gradients);
    a rank left without rows (a batch smaller than the world) takes the first row at scale 0, so its
    backward still joins the all-reduce.
    """
    rows = torch.tensor_split(torch.arange(len(batch["input_ids"])), dist.world_size)[dist.rank]
    tokens = int((batch["labels"][:, 1:] != -100).sum())
    scale = dist.world_size / max(tokens, 1) if len(rows) else 0.0
    rows = rows if len(rows) else torch.arange(1)
    return {k: v[rows.to(v.device)] for k, v in batch.items()}, scale


def fit(
    model: torch.nn.Module,
    batches: Iterator[dict[str, torch.Tensor]],
    cfg: Any,
    tag: str,
    log: Callable[[int, dict[str, Any]], None] | None = None,
    progress: bool = False,
    precision: Precision | None = None,
    dist: Dist | None = None,
    checkpoint: Checkpointer | None = None,
    checkpoint_every: int = 0,
    resume: dict[str, Any] | None = None,
) -> torch.optim.Optimizer:
    """Minimise :func:`nll` over ``cfg.steps`` batches with AdamW, warm-up + cosine and clipping.

    ``checkpoint(steps_done, optimizer, schedule)`` runs every ``checkpoint_every`` steps (0: never);
    ``resume`` continues after ``resume["step"]`` steps: the batches drawn so far are drawn again and
    dropped (every batch is a function of the seed), the optimizer and schedule states are restored.

    The loop shared by SFT and pre-training (:mod:`agents.learners.pretrain`): ``cfg`` needs ``steps``,
    ``lr``, ``weight_decay``, ``warmup_steps`` and ``max_grad_norm``; metrics are logged as
    ``{tag}/loss`` etc. every 10 steps, and shown on a progress bar when ``progress`` is set.

    Data parallel (``dist``): every rank draws the same batches (the same seed) and trains on its share
    of each batch's rows under DDP; the loss is the rows' NLL sum over the batch's labelled-token count,
    times the world size (DDP averages), so each step is the one-process step on the whole batch.
    """
    device = next(model.parameters()).device
    precision, dist = precision or Precision(), dist or Dist()
    train = dist.wrap(model)  # DDP under torchrun (dropped after the stage), the model itself otherwise
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    start = 0
    if resume is not None:
        start = int(resume["step"])
        dist.load_optimizer_state(model, optimizer, resume["optimizer"])
        schedule.load_state_dict(resume["schedule"])
        for _ in range(start):
            next(batches)
    with tqdm(total=cfg.steps, initial=start, desc=tag, unit="step", disable=not progress) as bar:
        for step in range(start, cfg.steps):
            batch = {k: v.to(device) for k, v in next(batches).items()}
            if dist.distributed:
                local, scale = shard_batch(batch, dist)
                with precision.autocast():
                    loss = nll(train, local, reduction="sum") * scale
            else:
                with precision.autocast():
                    loss = nll(model, batch)
            grad_norm = gradient_step(
                model,
                optimizer,
                schedule,
                loss,
                cfg.max_grad_norm,
                f"{tag} loss at step {step}",
                f"{tag}.lr",
                precision,
            )
            if step % 10 == 0 or step == cfg.steps - 1:
                value = float(dist.sum_(loss.detach().double()) / dist.world_size) if dist.distributed else loss.item()
                metrics = {
                    f"{tag}/loss": value,
                    f"{tag}/grad_norm": float(grad_norm),
                    f"{tag}/lr": schedule.get_last_lr()[0],
                }
                if log is not None:
                    log(step, metrics)
                bar.set_postfix(loss=f"{metrics[f'{tag}/loss']:.3f}", refresh=False)
            bar.update(1)
            done = step + 1
            if checkpoint is not None and checkpoint_every and done % checkpoint_every == 0 and done < cfg.steps:
                checkpoint(done, optimizer, schedule)  # not after the last step: the run saves the stage's end
    model.eval()
    return optimizer
