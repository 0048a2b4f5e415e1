"""Rejection-sampling fine-tuning in one file: RFT / RAFT / ReST-EM, and expert iteration.

Sample several completions per problem from the policy through the env, keep the ones a judge likes,
fine-tune on them. (Test-time selection among the same kind of samples is :mod:`agents.search.best_of_n`.)

**Rejection-sampling fine-tuning** (:func:`train_rft`), each round:

1. *Grow*: sample ``K = group_size`` completions for each of ``prompts_per_round`` train
   problems from the current policy through the env.
2. *Filter*: keep the correct ones (RFT, Yuan et al. 2023; ReST-EM's binary filter, Singh et al.
   2023) or the single best per prompt by env return (RAFT, Dong et al. 2023), optionally only those
   with return ``>= min_reward``, and optionally only from prompts the policy solves in at most
   ``max_group_success`` of its K samples (difficulty filtering: the problems it nearly always solves
   teach it little); drop duplicates (RFT dedupes distinct reasoning paths; here: the same prompt and
   the same generated token ids).
3. *Improve*: fine-tune on the kept samples with the SFT loss, on exactly the tokens the env
   received: the prompt ids as the env encoded them, then the generated ids; the loss covers only
   the generated ids. Nothing is decoded and re-tokenized. With ``from_base`` (ReST-EM) the weights
   go back to the initial model before each Improve step, so every round is a fresh fine-tune of
   the base model on data from the latest one.

Two options turn the rounds into *expert iteration* (Anthony et al. 2017; STaR, Zelikman et al. 2022;
Polu et al. 2022; ReST's growing dataset, Gulcehre et al. 2023), the form that pays when gold
demonstrations are few and graded problems are many:

* ``accumulate``: Improve trains on every sample kept so far (a *pool*, deduplicated across rounds),
  not only on this round's; each round's new problems add to what the policy has solved.
* ``demo_fraction``: that share of every Improve batch comes from the gold demonstrations of the SFT
  warm start, so the solutions of the first rounds (mostly the easiest problems) do not crowd out the
  demonstrations. ``demo_fraction=1`` is the control that tells RL's gain from more SFT: the same
  Improve steps, lr and optimizer on the demonstrations alone (samples are still drawn and their
  success logged, but never trained on).

With ``accumulate`` (and without ``from_base``) the Improve steps of all rounds continue one AdamW (its
state is checkpointed by ``lm-envs train``), as one fine-tune on a growing set would; otherwise every
round starts a fresh AdamW. (Continuing one AdamW on RAFT's own few samples per round collapsed the
policy early on ``LMEnv/Digits-v0`` at lr 3e-3.)

A round that keeps nothing (no correct sample yet) logs that and leaves the model unchanged.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from agents.learners.base import RunContext
from agents.learners.sft import collate, encode_demo, nll
from agents.policy.actor_critic import Policy
from agents.policy.precision import Precision
from agents.policy.sampling import Rollout, sample_per_problem
from agents.run.distributed import Dist

#: An SFT example: prompt token ids (as the env encoded them) and generated token ids; a multi-turn
#: episode's adds a third element, True on the policy's tokens (env tokens are attended to, not trained on).
Example = tuple[list[int], list[int]] | tuple[list[int], list[int], list[bool]]

KEEP_MODES = ("correct", "best")


@dataclass
class RFTConfig:
    """Rejection-sampling fine-tuning hyper-parameters (one round = Grow, Filter, Improve)."""

    learner: ClassVar[str] = "RFTLearner"
    name: str = "rft"
    group_size: int = 8  # K completions per prompt
    prompts_per_round: int = 64  # train problems sampled per round (with replacement if the split is smaller)
    temperature: float = 1.0  # sampling temperature (K > 1 needs diversity)
    keep: str = "correct"  # "correct" (RFT, ReST-EM: env is_success) | "best" (RAFT: top-1 return per prompt)
    min_reward: float | None = None  # drop samples with a lower return (set it for "best": a top-1 may be a failure)
    dedupe: bool = True  # keep one copy of identical (prompt, completion) token sequences
    from_base: bool = False  # ReST-EM: every Improve step starts again from the initial weights
    max_group_success: float = 1.0  # keep samples only of prompts solved by at most this share of their K samples
    accumulate: bool = False  # expert iteration / STaR: fine-tune on every sample kept so far, not just this round's
    demo_fraction: float = 0.0  # share of each Improve batch from the SFT warm start's demos (1: demos only, a control)
    sft_steps: int = 50  # optimizer steps per round on the kept samples
    batch_size: int = 32  # kept samples per step (fewer if fewer were kept)
    lr: float = 1e-4  # AdamW learning rate (constant within a round)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    split: str = "train"
    num_envs: int = 256  # envs per rollout


def check_rft_config(cfg: RFTConfig) -> None:
    """Raise ``ValueError`` with a fix for settings that cannot work."""
    for name in ("group_size", "prompts_per_round", "batch_size", "num_envs"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"agent.{name} must be a positive int, got {value!r}.")
    if cfg.keep not in KEEP_MODES:
        raise ValueError(f"unknown agent.keep {cfg.keep!r}; choose 'correct' (RFT/ReST-EM) or 'best' (RAFT).")
    if cfg.temperature < 0:
        raise ValueError(f"agent.temperature must be >= 0, got {cfg.temperature}.")
    if cfg.temperature == 0 and cfg.group_size > 1:
        raise ValueError("agent.temperature=0 draws K identical greedy samples per prompt; use temperature > 0 or K=1.")
    if cfg.sft_steps < 0 or cfg.lr <= 0:
        raise ValueError(f"agent.sft_steps must be >= 0 and agent.lr > 0, got {cfg.sft_steps} and {cfg.lr}.")
    if not 0 < cfg.max_group_success <= 1:
        raise ValueError(
            f"agent.max_group_success must be in (0, 1] (1 keeps every prompt's samples), got {cfg.max_group_success}."
        )
    if not 0 <= cfg.demo_fraction <= 1:
        raise ValueError(
            f"agent.demo_fraction must be in [0, 1] (a share of each batch; the rest are kept samples; 1 trains on "
            f"the demonstrations only), got {cfg.demo_fraction}."
        )


def build_examples(
    rollouts: Rollout | Sequence[Rollout],
    keep: str = "correct",
    min_reward: float | None = None,
    dedupe: bool = True,
    max_group_success: float = 1.0,
) -> tuple[list[Example], dict[str, float]]:
    """Filter sampled episodes into SFT examples made of exactly the tokens the env received.

    Args:
        rollouts: Rollouts whose ``group_size`` consecutive episodes share a prompt.
        keep: ``correct``: every episode with ``is_success``; ``best``: the highest-return episode of
            each group (the first on ties).
        min_reward: Drop kept episodes whose return is below this.
        dedupe: Keep one copy of identical (prompt ids, generated ids) pairs across all rollouts.
        max_group_success: Keep nothing from a group whose share of ``is_success`` samples is above
            this: the problems the policy already solves almost always teach it little (difficulty
            filtering; DAPO drops the all-correct groups, which is ``1 - 1/K``).

    Returns:
        ``(examples, stats)``: each example is ``(prompt_ids, generated_ids)``, the prompt as the env
        encoded it (left padding removed) and the generated ids up to the episode's end (a multi-turn
        env's tokens included, plus a third element that is True on the policy's tokens); stats count
        ``samples``, ``kept`` (after dedupe), ``duplicates``, ``groups``, ``groups_kept``, the sum of
        kept returns ``kept_return_sum`` and, aligned with ``examples``, their returns ``kept_returns``.
    """
    if keep not in KEEP_MODES:
        raise ValueError(f"unknown keep mode {keep!r}; choose 'correct' (RFT/ReST-EM) or 'best' (RAFT).")
    rollouts = [rollouts] if isinstance(rollouts, Rollout) else list(rollouts)
    examples: list[Example] = []
    seen: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
    stats: dict[str, Any] = dict.fromkeys(
        ("samples", "kept", "duplicates", "groups", "groups_kept", "kept_return_sum"), 0.0
    )
    stats["kept_returns"] = []
    for r in rollouts:
        if keep == "correct" and not any("is_success" in info for info in r.infos):
            raise ValueError("keep='correct' needs env info 'is_success' (this env reports none); use keep='best'.")
        returns, success, k = r.returns, r.success().bool(), r.group_size
        if keep == "correct":
            chosen = success.clone()
        else:  # RAFT: top-1 of each prompt's K samples
            chosen = torch.zeros_like(success)
            chosen[torch.arange(0, len(returns), k) + returns.view(-1, k).argmax(1)] = True
        if min_reward is not None:
            chosen &= returns >= min_reward
        if max_group_success < 1:
            if not any("is_success" in info for info in r.infos):
                raise ValueError("max_group_success needs env info 'is_success' (this env reports none); leave it 1.")
            rate = success.float().view(-1, k).mean(1, keepdim=True).expand(-1, k).reshape(-1)
            chosen &= rate <= max_group_success + 1e-9
        stats["samples"] += len(returns)
        stats["groups"] += len(returns) // k
        stats["groups_kept"] += int(chosen.view(-1, k).any(1).sum())
        for i in chosen.nonzero()[:, 0].tolist():
            prompt = r.prompt_ids[i][r.prompt_mask[i].bool()].tolist()
            generated = r.tokens[i][r.mask[i]].tolist()
            key = (tuple(prompt), tuple(generated))
            if dedupe and key in seen:
                stats["duplicates"] += 1
                continue
            seen.add(key)
            if r.policy_mask is None:
                examples.append((prompt, generated))
            else:
                examples.append((prompt, generated, r.policy_mask[i][r.mask[i]].tolist()))
            stats["kept"] += 1
            stats["kept_return_sum"] += float(returns[i])
            stats["kept_returns"].append(float(returns[i]))
    return examples, stats


def finetune(
    model: torch.nn.Module,
    examples: list[Example],
    cfg: RFTConfig,
    pad_id: int,
    rng: np.random.Generator,
    optimizer: torch.optim.Optimizer | None = None,
    demos: Callable[[int], list[Example]] | None = None,
    precision: Precision | None = None,
    dist: Dist | None = None,
) -> list[float]:
    """``cfg.sft_steps`` AdamW steps of the SFT loss on ``examples`` (shuffled epochs); returns the losses.

    Args:
        model: Trained in place.
        examples: The kept samples.
        cfg: ``sft_steps``, ``batch_size``, ``lr``, ``weight_decay``, ``max_grad_norm``, ``demo_fraction``.
        pad_id: Padding token id.
        rng: Shuffles the epochs.
        optimizer: An optimizer to continue (its state carries across rounds); ``None``: a fresh AdamW.
        demos: ``demos(n)`` draws ``n`` gold demonstrations; with ``cfg.demo_fraction`` > 0 that share of
            every batch (rounded) comes from it; below 1 at least one row of each batch is a kept sample.
        precision: Autocast and the optimizer step (default float32).
        dist: Data parallel: every rank draws the same batch (the same ``rng``) and trains on its share
            of the rows; the loss is the rows' NLL sum over the batch's token count, times the world size
            (DDP averages), so the step is the one-process step on the whole batch. ``model`` is the DDP wrapper.
    """
    precision, dist = precision or Precision(), dist or Dist()
    device = next(model.parameters()).device
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_demo = round(cfg.batch_size * cfg.demo_fraction) if demos is not None else 0
    if demos is not None and cfg.demo_fraction < 1:
        n_demo = min(n_demo, cfg.batch_size - 1)
    bs = min(cfg.batch_size - n_demo, len(examples))
    order: list[int] = []
    losses: list[float] = []
    model.train()
    for _ in range(cfg.sft_steps):
        if len(order) < bs:  # next epoch
            order += rng.permutation(len(examples)).tolist()
        rows, order = order[:bs], order[bs:]
        batch_examples = [examples[i] for i in rows] + (demos(n_demo) if n_demo else [])
        if dist.distributed:  # this rank's share of the batch's rows (at least one; an extra one counts 0)
            share = np.array_split(np.arange(len(batch_examples)), dist.world_size)[dist.rank]
            tokens = sum(len(e[1]) for e in batch_examples)
            mine = [batch_examples[i] for i in share] or batch_examples[:1]
            batch = {k: v.to(device) for k, v in collate(mine, pad_id).items()}
            with precision.autocast():
                loss = nll(model, batch, reduction="sum") * (dist.world_size / tokens if len(share) else 0.0)
        else:
            batch = {k: v.to(device) for k, v in collate(batch_examples, pad_id).items()}
            with precision.autocast():
                loss = nll(model, batch)  # mean NLL of the generated tokens (labels -100 on prompt and padding)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"RFT loss became {loss.item()}; lower agent.lr.")
        optimizer.zero_grad(set_to_none=True)
        precision.backward(loss)
        precision.step(optimizer, model.parameters(), cfg.max_grad_norm, "the RFT gradient")
        losses.append(loss.item())
    model.eval()
    if dist.distributed and losses:  # each rank's loss is its rows' share: the batch's loss is their mean
        losses = (dist.sum_(torch.tensor(losses, dtype=torch.float64)) / dist.world_size).tolist()
    return losses


def train_rft(
    model: torch.nn.Module,
    env_id: str,
    cfg: RFTConfig,
    rounds: int,
    seed: int = 0,
    log: Callable[[int, dict[str, Any]], None] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    demo_problems: int | None = None,
) -> torch.nn.Module:
    """Run ``rounds`` rounds of rejection-sampling fine-tuning on ``model`` (in place); ``log(round, metrics)``.

    ``lm-envs train agent=rft`` runs the same rounds (one per ``train.iterations``) with checkpoints,
    evaluation and resume. ``demo_problems``: see :func:`rft_round`.

    Returns:
        The model (the same object, trained).
    """
    check_rft_config(cfg)
    if not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rounds must be a non-negative int, got {rounds!r}.")
    base = copy.deepcopy(model.state_dict()) if cfg.from_base else None
    optimizer = rft_optimizer(model, cfg) if continues_optimizer(cfg) else None  # None: a fresh AdamW per round
    venvs: dict[int, Any] = {}
    pool: list[Example] = []
    for rnd in range(rounds):
        metrics = rft_round(
            model,
            env_id,
            cfg,
            rnd,
            seed=seed,
            env_kwargs=env_kwargs,
            venvs=venvs,
            base=base,
            pool=pool,
            optimizer=optimizer,
            demo_problems=demo_problems,
        )
        if log is not None:
            log(rnd, metrics)
    return model


def rft_optimizer(model: torch.nn.Module, cfg: RFTConfig) -> torch.optim.AdamW:
    """The AdamW of the Improve steps: one per round, or one for all rounds (:func:`continues_optimizer`)."""
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def continues_optimizer(cfg: RFTConfig) -> bool:
    """Whether the rounds continue one AdamW: expert iteration (``accumulate``), unless ReST-EM's ``from_base``."""
    return cfg.accumulate and not cfg.from_base


def rft_round(
    model: torch.nn.Module,
    env_id: str,
    cfg: RFTConfig,
    round_index: int,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    venvs: dict[int, Any] | None = None,
    base: dict[str, torch.Tensor] | None = None,
    pool: list[Example] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    demo_problems: int | None = None,
    precision: Precision | None = None,
    dist: Dist | None = None,
    train_model: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """One Grow / Filter / Improve round on ``model`` (in place); returns its metrics.

    Every random choice is seeded from ``(seed, round_index)``, so a resumed run draws the rounds an
    uninterrupted one would have.

    Args:
        model: The policy, trained in place.
        env_id: A registered token env (its ``is_success`` or return decides what is kept).
        cfg: The round's settings.
        round_index: Which round this is (seeds the prompts, samples and minibatch order).
        seed: The run's seed.
        env_kwargs: ``gym.make`` overrides of the env.
        venvs: A cache of vector envs by size, reused across rounds (pass the same dict each round).
        base: Initial weights to fine-tune from in every round (ReST-EM, ``cfg.from_base``).
        pool: With ``cfg.accumulate``, the samples kept in earlier rounds (pass the same list each
            round): this round's new ones are appended, and Improve trains on all of it.
        optimizer: The optimizer to continue (``None``: a fresh AdamW for this round).
        demo_problems: The gold demonstrations of ``cfg.demo_fraction`` are the split's first this many
            problems (the SFT warm start's ``sft.num_examples``); ``None``: the whole split.
        precision: Autocast and the optimizer step (default float32).
        dist: Data parallel: each rank grows its contiguous share of the round's prompts (with a
            generator per chunk of ``num_envs // K`` prompts, so samples do not depend on the world
            size), the kept samples of all ranks are gathered in rank order (the one-process order),
            and Improve trains ``train_model`` (``model`` under DDP) on each rank's share of every batch.
        train_model: The module Improve's forwards run through (DDP's wrapper of ``model``); default ``model``.
    """
    precision, dist = precision or Precision(), dist or Dist()
    train_model = model if train_model is None else train_model
    check_rft_config(cfg)
    if cfg.accumulate and pool is None:
        raise ValueError("agent.accumulate needs the pool of earlier rounds: pass the same list as pool= every round.")
    kwargs = dict(env_kwargs or {})
    venvs = {} if venvs is None else venvs
    K = cfg.group_size
    probe = gym.make(env_id, **kwargs).unwrapped
    size, pad_id = probe.task.size(cfg.split), int(probe.codec.pad_token_id)
    per_batch = max(1, cfg.num_envs // K)  # prompts per rollout
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed * 1_000_003 + round_index)
    rng = np.random.default_rng([seed, 23, round_index])
    model.eval()

    # --- 1. Grow: K samples per prompt from the current policy, through the env ---
    t0 = time.perf_counter()
    idx = rng.choice(size, size=cfg.prompts_per_round, replace=cfg.prompts_per_round > size).tolist()
    grow = {"split": cfg.split, "temperature": cfg.temperature, "env_kwargs": kwargs, "venvs": venvs}
    with precision.autocast(), dist.gathered(model):  # FSDP: ranks sample different numbers of tokens
        if not dist.distributed:
            parts = sample_per_problem(
                model, env_id, K, indices=idx, generator=generator, batch_size=per_batch * K, **grow
            )
        else:  # this rank's share of the prompts, a generator per global chunk of per_batch prompts
            lo, hi = len(idx) * dist.rank // dist.world_size, len(idx) * (dist.rank + 1) // dist.world_size
            parts = []
            for start in range(lo, hi, per_batch):
                chunk_seed = [seed, round_index, start // per_batch]
                g = torch.Generator(device=device).manual_seed(
                    int(np.random.SeedSequence(chunk_seed).generate_state(1)[0])
                )
                chunk = idx[start : min(start + per_batch, hi)]
                parts += sample_per_problem(
                    model, env_id, K, indices=chunk, generator=g, batch_size=per_batch * K, **grow
                )
    rollouts = [rollout for _, rollout in parts]
    t1 = time.perf_counter()

    # --- 2. Filter: correct (RFT / ReST-EM) or top-1 per prompt (RAFT), then dedupe ---
    examples, stats = build_examples(rollouts, cfg.keep, cfg.min_reward, cfg.dedupe, cfg.max_group_success)
    returns = torch.cat([r.returns for r in rollouts]) if rollouts else torch.zeros(0)
    success = torch.cat([r.success() for r in rollouts]) if rollouts else torch.zeros(0)
    sample_return, sample_success = float(returns.mean()), float(success.mean())
    generated = sum(r.num_tokens for r in rollouts)
    if dist.distributed:  # every rank's kept samples, in rank order: the one-process order
        gathered = dist.gather_objects((examples, stats))
        examples, seen, kept_return = [], set(), 0.0
        for part, part_stats in gathered:
            for e, ret in zip(part, part_stats["kept_returns"], strict=True):
                key = (tuple(e[0]), tuple(e[1]))
                if cfg.dedupe and key in seen:
                    continue  # another rank kept the same sample: count it (and its return) once
                seen.add(key)
                examples.append(e)
                kept_return += ret
        stats = {k: sum(s[k] for _, s in gathered) for k in stats if k != "kept_returns"}
        stats["duplicates"] += sum(len(p) for p, _ in gathered) - len(examples)
        stats["kept"], stats["kept_return_sum"] = len(examples), kept_return
        sums = dist.sum_floats(
            {"n": len(returns), "ret": float(returns.sum()), "ok": float(success.sum()), "tok": generated}
        )
        sample_return, sample_success, generated = sums["ret"] / sums["n"], sums["ok"] / sums["n"], int(sums["tok"])
    metrics: dict[str, Any] = {
        "rft/sample_return": sample_return,
        "rft/sample_success": sample_success,
        "rft/kept": int(stats["kept"]),
        "rft/kept_fraction": stats["kept"] / stats["samples"],
        "rft/prompts_kept_fraction": stats["groups_kept"] / stats["groups"],
        "rft/duplicates": int(stats["duplicates"]),
        "rft/sample_seconds": t1 - t0,
        "rft/generated_tokens": generated,
    }
    if examples:
        metrics["rft/kept_return"] = stats["kept_return_sum"] / stats["kept"]
        metrics["rft/kept_tokens"] = sum(len(e[1]) for e in examples)
    if cfg.accumulate:  # expert iteration: the pool grows by this round's samples not already in it
        assert pool is not None
        if cfg.dedupe:
            known = {(tuple(e[0]), tuple(e[1])) for e in pool}
            examples = [e for e in examples if (tuple(e[0]), tuple(e[1])) not in known]
        pool.extend(examples)
        metrics["rft/pool_new"] = len(examples)
        metrics["rft/pool"] = len(pool)
        examples = pool
    if not examples and cfg.demo_fraction < 1:  # nothing passed the filter (e.g. no correct sample yet)
        metrics["rft/sft_steps"] = 0
        return metrics

    # --- 3. Improve: SFT on the kept samples' exact tokens (from the base weights for ReST-EM) ---
    demos = None
    if cfg.demo_fraction > 0:  # gold demonstrations mixed into every batch, drawn from this round's rng
        n_demos = size if demo_problems is None else min(size, demo_problems)
        task, codec = probe.task, probe.codec

        def demos(n: int) -> list[Example]:
            picks = rng.integers(n_demos, size=n)
            return [encode_demo(codec, task.problem(cfg.split, int(i)), probe.episodes.config, task) for i in picks]

    if base is not None:
        model.load_state_dict(base)
    losses = finetune(
        train_model, examples, cfg, pad_id, rng, optimizer=optimizer, demos=demos, precision=precision, dist=dist
    )
    metrics.update(
        {
            "rft/sft_steps": len(losses),
            "rft/loss": float(np.mean(losses)) if losses else 0.0,
            "rft/loss_first": losses[0] if losses else 0.0,
            "rft/loss_last": losses[-1] if losses else 0.0,
            "rft/train_seconds": time.perf_counter() - t1,
        }
    )
    return metrics


class RFTLearner:
    """Rejection-sampling fine-tuning as a :class:`~agents.learners.base.Learner`: one round per iteration.

    Its state is the pool of kept samples (expert iteration's ``accumulate``); with ``from_base`` it
    reads the reference (the weights as RL starts) to restart every round from them.
    """

    def __init__(self, cfg: RFTConfig, lm: torch.nn.Module, ctx: RunContext) -> None:
        check_rft_config(cfg)
        if cfg.prompts_per_round < ctx.dist.world_size:
            raise ValueError(
                f"agent.prompts_per_round={cfg.prompts_per_round} is fewer than the {ctx.dist.world_size} processes: "
                "every rank needs prompts. Raise agent.prompts_per_round or use fewer processes."
            )
        self.cfg, self.ctx = cfg, ctx
        self.policy = Policy(lm, critic="none")  # checkpoints hold "lm.*", as every learner's
        self.lm, self.train_lm = lm, ctx.dist.wrap(lm)
        # expert iteration's Improve steps continue this AdamW across rounds (it is checkpointed); the other
        # forms start a fresh one each round at the scheduled lr (the loop sets this one's lr every iteration)
        self.optimizer = rft_optimizer(lm, cfg)
        self.pool: list[Example] = []  # with cfg.accumulate: every sample kept so far
        self.venvs: dict[int, Any] = {}

    def uses_reference(self) -> bool:
        return self.cfg.from_base

    def iteration(self, it: int, ref: torch.nn.Module | None) -> dict[str, float]:
        t0 = time.time()
        base = ref.state_dict() if self.cfg.from_base and ref is not None else None
        optimizer = self.optimizer
        if not continues_optimizer(self.cfg):  # RFT, RAFT, ReST-EM: a fresh AdamW every round
            optimizer = rft_optimizer(self.lm, self.cfg)
            optimizer.param_groups[0]["lr"] = self.optimizer.param_groups[0]["lr"]
        m = rft_round(
            self.lm,
            self.ctx.env_id,
            self.cfg,
            it,
            self.ctx.seed,
            self.ctx.env_kwargs,
            venvs=self.venvs,
            base=base,
            pool=self.pool,
            optimizer=optimizer,
            demo_problems=self.ctx.demo_problems,  # the warm start's demonstrations (agent.demo_fraction)
            precision=self.ctx.precision,
            dist=self.ctx.dist,
            train_model=self.train_lm,
        )
        # the sampling figures under the names every run logs, so curves and the progress bar compare
        m.update(
            {
                "rollout/return_mean": m["rft/sample_return"],
                "rollout/success": m["rft/sample_success"],
                "rollout/tokens_per_s": m["rft/generated_tokens"] / max(m["rft/sample_seconds"], 1e-9),
                "time/rollout_s": m["rft/sample_seconds"],
                "time/iteration_s": time.time() - t0,
            }
        )
        return m

    def state_dict(self) -> dict[str, Any]:
        return {"rft_pool": self.pool} if self.pool else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pool[:] = [tuple(list(x) for x in e) for e in state.get("rft_pool", [])]
