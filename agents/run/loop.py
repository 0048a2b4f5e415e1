"""One training run, start to finish: pre-training (optional), SFT warm start, RL, evaluation, artifacts.

``run(cfg)`` is what ``lm-envs train`` (the Hydra entry point in :mod:`agents.train`) calls; tests
call it directly with a composed config. The loop is generic: it knows the RL algorithm only through
the :class:`~agents.learners.base.Learner` that ``cfg.agent`` names. A run directory holds::

    config.yaml         the resolved config
    metrics.jsonl       one line per logged step (SFT steps, RL iterations, evaluations)
    tensorboard/        the same metrics as TensorBoard events
    tokenizer/          the tokenizer, saved beside the checkpoints
    checkpoints/        atomic checkpoints (weights, optimizer, RNG, the learner's own state)
    model/              the trained model and its tokenizer, a transformers directory (LoRA adapters merged)
    curves.png          reward, KL, accuracy, SFT loss and per-stage success curves
    eval.json           held-out evaluation of this run's seed, in the leaderboard's format pieces

Resuming (``resume=true``, the default) continues from ``checkpoints/latest`` with the same
rollouts the uninterrupted run would have drawn: every rollout and minibatch order is seeded from
``(seed, iteration)``, so an interrupted run ends with the same parameters as one that was not.

Under ``torchrun`` (see :mod:`agents.run.distributed`) every process runs this loop: each trains on
its share of the rollout groups (and of every SFT batch and evaluation), rank 0 alone writes the run
directory, and a run may resume with another world size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import platform
import shutil
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file

import lm_envs  # registers the LMEnv/* ids
from agents.evaluate import EvalConfig, evaluate
from agents.learners.base import REQUIRED_METRICS, RunContext, learner_class, make_learner
from agents.learners.pretrain import train_pretrain
from agents.learners.sft import train_sft
from agents.policy.lora import AdapterOff, adapter_state, add_lora, fold_lora
from agents.policy.models import (
    default_model_name,
    enable_activation_checkpointing,
    export_model,
    frozen_copy,
    load_model,
    logits_width,
)
from agents.policy.precision import Precision, check_dtype
from agents.policy.pretrained import display_name, resolve_model
from agents.run.checkpoint import find_resumable, latest_checkpoint, load_checkpoint, save_checkpoint, untie
from agents.run.config import RunConfig, TrainSection, check_known_keys, validate
from agents.run.distributed import init_distributed
from agents.run.lock import hold_run_dir
from agents.run.logger import MetricsLogger, plot_curves
from lm_envs.core.plugins import resolve_env_id
from lm_envs.core.tokenizer import save_codec


def to_run_config(cfg: DictConfig | RunConfig) -> RunConfig:
    """A validated :class:`RunConfig` from a Hydra config (or pass one through)."""
    if isinstance(cfg, RunConfig):
        validate(cfg)
        return cfg
    check_known_keys(cfg)  # a '+key=value' the schema lacks would be dropped silently by to_object
    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, RunConfig):
        raise TypeError("the config must follow agents.run.config.RunConfig (compose it from conf/config.yaml).")
    learner_class(obj.agent)  # an agent/ option whose config names a Learner
    validate(obj)
    return obj


LR_SCHEDULES = ("constant", "linear", "cosine")


def lr_factor(train: TrainSection, iteration: int) -> float:
    """The multiplier of the agent's learning rates at RL iteration ``iteration`` (0-based).

    A pure function of the iteration, so a resumed run continues the same schedule without saving one.

    Example:
        >>> train = TrainSection(iterations=3, lr_schedule="linear", lr_end_ratio=0.1)
        >>> [round(lr_factor(train, i), 2) for i in range(3)]
        [1.0, 0.55, 0.1]
    """
    if train.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown train.lr_schedule {train.lr_schedule!r}; choose one of {list(LR_SCHEDULES)}.")
    if not 0 <= train.lr_end_ratio <= 1:
        raise ValueError(f"train.lr_end_ratio must be in [0, 1], got {train.lr_end_ratio}.")
    f = iteration / max(1, train.iterations - 1)  # 0 at the first iteration, 1 at the last
    end = train.lr_end_ratio
    if train.lr_schedule == "linear":
        return 1 - (1 - end) * f
    if train.lr_schedule == "cosine":
        return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * f))
    return 1.0


def eval_metrics(result: dict[str, Any]) -> dict[str, float]:
    """An evaluation's scalar metrics, each as ``eval/<name>``.

    Accuracy, mean return, pass@k and the reward's own task metrics (e.g.
    ``eval/unknown/hallucination_rate``), so every curve is in ``metrics.jsonl``.
    """
    skip = {"num_episodes", "num_problems", "records", "episodes_hash"}
    return {
        f"eval/{k}": float(v)
        for k, v in result.items()
        if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


#: Settings a resumed run may change freely: how long it runs, how often it evaluates and saves, where it runs.
RESUME_FREE = (
    "output_dir",
    "resume",
    "resume_with_changes",
    "train.iterations",
    "train.eval_every",
    "train.eval_episodes",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.progress",
    "sft.checkpoint_every",
    "model.device",
    "model.threads",
    "eval.batch_size",
)


def resume_settings(cfg: RunConfig) -> dict[str, Any]:
    """The run's settings as ``{"agent.lr": 2e-05, ...}`` (JSON values), less :data:`RESUME_FREE`."""

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
        return out

    settings = json.loads(json.dumps(flat(asdict(cfg)), default=str))
    return {k: v for k, v in settings.items() if k not in RESUME_FREE}


def check_resume_settings(cfg: RunConfig, saved: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """Refuse to resume a checkpoint written with other settings (seed, lr, ...), unless asked to.

    Returns:
        The changes when ``resume_with_changes=true`` allows them (``[]`` when nothing changed).

    Raises:
        ValueError: Naming the changed settings and the three ways on.
    """
    old = saved.get("settings")
    if old is None:  # a checkpoint from before settings were saved: nothing to compare
        return []
    new = resume_settings(cfg)
    changed = {k: [old.get(k), new.get(k)] for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}
    if not changed:
        return []
    listed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
    if not cfg.resume_with_changes:
        raise ValueError(
            f"{path} was written with other settings ({listed}); resume with the same settings, give this run its "
            "own directory (hydra.run.dir=...), or continue with the new ones on purpose with "
            "resume_with_changes=true (eval.json then lists the changes)."
        )
    return [{"from": path.name, "changed": changed}]


def config_hash(cfg: RunConfig) -> str:
    """sha256 of the resolved config without run directory and seed: runs of one setting share it."""
    d = asdict(cfg)
    for key in ("output_dir", "resume", "resume_with_changes", "seed"):
        d.pop(key, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def find_env(env_id: str) -> str:
    """The registered id a run trains on, as runs record it: ``mypkg:MyOrg/Task-v0`` becomes ``MyOrg/Task-v0``.

    Imports ``$LM_ENVS_IMPORT`` (what ``lm-envs --import`` sets), the ``lm_envs.envs`` entry points and the
    module of a ``module:Id`` id first.

    Raises:
        ValueError: When the id is not registered, naming the ways to register it.
    """
    lm_envs.load_plugins()
    plain = resolve_env_id(env_id)
    if plain not in gym.registry:
        raise ValueError(
            f"env.id {plain!r} is not registered (`lm-envs envs` lists the ids); for a package's env add "
            "`--import MODULE` (lm-envs --import mypkg train env.id=...), declare an lm_envs.envs entry point, or "
            "write env.id=MODULE:ID."
        )
    return plain


def check_positions(env: Any, model: torch.nn.Module, cfg: RunConfig) -> None:
    """Refuse episodes longer than the model's positions (GPT-2 fails late with an IndexError, Llama runs past them).

    Raises:
        ValueError: Naming the keys that fix it.
    """
    width = int(env.observation_space["input_ids"].shape[0])  # max_prompt_tokens + max_new_tokens
    config = getattr(model, "config", None)
    positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    if positions is not None and width > positions:
        fix = (
            f"raise model.size.n_positions to at least {width}"
            if cfg.model.name_or_path is None
            else f"choose a model with at least {width} positions"
        )
        raise ValueError(
            f"episodes of {cfg.env.id} take up to {width} tokens (max_prompt_tokens + max_new_tokens) but the model "
            f"has {positions} positions; {fix}, or lower env.kwargs.max_new_tokens / env.kwargs.max_prompt_tokens."
        )


#: Largest weight magnitude a checkpoint may hold: far above any trained model's, far below an update that
#: exploded (Adam at a huge lr moves every weight by about lr), whose checkpoint would fail at the next update.
MAX_WEIGHT = 1e5


def check_weights(model: torch.nn.Module, step: int, ckpt_dir: Path, dist: Any = None) -> None:
    """Stop before saving weights that are non-finite or exploded (``|w| > MAX_WEIGHT``).

    Under FSDP each rank checks its shards and the ranks agree on the largest (``dist``).

    Raises:
        FloatingPointError: Naming the update, the fix and the checkpoint kept.
    """
    with torch.no_grad():
        local = [getattr(p, "_local_tensor", p).detach() for p in model.parameters()]  # a DTensor's own shard
        worst = max((float(t.abs().max()) for t in local if t.numel()), default=0.0, key=lambda w: (w != w, w))
    if dist is not None and dist.fsdp:  # NaN as inf: a MAX all-reduce need not propagate NaN
        worst = dist.max_(worst if worst == worst else math.inf)
    if math.isfinite(worst) and worst <= MAX_WEIGHT:
        return
    kept = latest_checkpoint(ckpt_dir)
    raise FloatingPointError(
        f"the update of RL iteration {step} left weights of magnitude {worst:.3g}; lower agent.lr. Nothing of it was "
        f"saved: the last good checkpoint ({kept if kept is not None else 'none yet'}) is kept, resume from it "
        "with the lower lr."
    )


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run(cfg: DictConfig | RunConfig) -> dict[str, Any]:
    """Train and evaluate; returns the final metrics (also written to ``eval.json``)."""
    cfg = to_run_config(cfg)
    cfg = dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, id=find_env(cfg.env.id)))  # the plain id
    check_dtype(cfg.model.dtype)
    dist, device = init_distributed(cfg.model.device, cfg.train.strategy)  # fails here on a device this machine lacks
    out = Path(dist.broadcast_object(str(cfg.output_dir)))  # one run directory, rank 0's, for every process
    with hold_run_dir(out) if dist.is_main else contextlib.nullcontext():  # rank 0 holds it: one run at a time
        return _run(cfg, dist, device, out)


def _run(cfg: RunConfig, dist: Any, device: str, out: Path) -> dict[str, Any]:
    main = dist.is_main  # rank 0 alone writes the run directory
    if cfg.model.threads:
        torch.set_num_threads(cfg.model.threads)
    seed_everything(cfg.seed)
    started = time.time()
    lr_factor(cfg.train, 0)  # a bad schedule fails here, before any work

    # --- env, model, learner -----------------------------------------------------------------------
    # a shipped alias or a .gguf file becomes a converted transformers directory (rank 0 converts, once)
    model_path = resolve_model(cfg.model.name_or_path, progress=main) if main else None
    dist.barrier()
    model_path = model_path if main else resolve_model(cfg.model.name_or_path, progress=False)
    env_kwargs = dict(cfg.env.kwargs)
    if model_path is not None:
        env_kwargs.setdefault("tokenizer", model_path)
    probe = gym.make(cfg.env.id, **env_kwargs).unwrapped  # the task and tokenizer the learners' envs share
    codec = probe.codec

    # fp32 master weights whatever model.dtype says: the compute dtype comes from autocast (agents.policy.precision)
    def build_model() -> torch.nn.Module:  # the same architecture and start every time (FSDP's reference and export)
        return load_model(
            model_path,
            codec,
            seed=cfg.seed,
            arch=cfg.model.arch,
            size=asdict(cfg.model.size),
            attn_implementation=cfg.model.attn_implementation,
        )

    model = build_model()
    lora = cfg.model.lora.r > 0
    if lora:  # adapters only train; the reference is the same weights with the adapters off (no copy)
        add_lora(model, cfg.model.lora, seed=cfg.seed)
    model = model.to(device)
    if cfg.model.gradient_checkpointing:
        enable_activation_checkpointing(model)
    check_positions(probe, model, cfg)
    env_kwargs.setdefault("vocab_size", logits_width(model))
    ctx = RunContext(
        env_id=cfg.env.id,
        env_kwargs=env_kwargs,
        task=probe.task,
        codec=codec,
        seed=cfg.seed,
        device=torch.device(device),
        precision=Precision(cfg.model.dtype, torch.device(device).type),
        dist=dist,
        demo_problems=cfg.sft.num_examples,
    )
    learner = make_learner(cfg.agent, model, ctx)  # checks its settings (batch split, ptx rows) before any work
    logger = MetricsLogger(out) if main else None
    log = logger.log if logger is not None else None
    ckpt_dir = out / "checkpoints"
    base_lrs = [group["lr"] for group in learner.optimizer.param_groups]  # train.lr_schedule scales these

    # --- resume (every rank reads the same checkpoint) ----------------------------------------------------
    state: dict[str, Any] = {"phase": "sft", "iteration": 0}
    # the newest intact checkpoint: a damaged one is skipped with a warning; none intact refuses to start over
    found = find_resumable(ckpt_dir) if cfg.resume else None
    sft_resume: dict[str, Any] | None = None  # SFT killed part-way: its step, AdamW and schedule states
    changes: list[dict[str, Any]] = []  # settings changed on resume (resume_with_changes=true), eval.json says so
    if found is not None:
        latest, contents = found
        part_way_sft = contents["state"].get("phase") == "sft"
        # an RL checkpoint's optimizer is the learner's; a part-way SFT one's is SFT's own AdamW (step 0 has none)
        saved = load_checkpoint(latest, learner.policy, None if part_way_sft else learner.optimizer, contents, dist)
        changes = [*saved.get("changes", []), *check_resume_settings(cfg, saved, latest)]
        if log is not None and saved.get("config_hash") not in (None, config_hash(cfg)):
            log(saved["iteration"], {"resume/config_changed": 1.0})
        if logger is not None and saved.get("metrics_lines") is not None:
            logger.keep_first(saved["metrics_lines"])  # the records after the checkpoint are about to be written again
        state = {"phase": saved["phase"], "iteration": saved["iteration"]}
        if part_way_sft:
            sft_resume = {
                "step": saved["sft_step"],
                "optimizer": contents["optimizer"],
                "schedule": saved["sft_schedule"],
            }
        learner.load_state_dict(saved.get("learner", saved))  # older checkpoints kept the state at the top level
        ctx.precision.load_state_dict(saved.get("precision", {}))

    def checkpoint(
        step: int, module: Any, optimizer: Any, state: dict[str, Any], keep: int, prefix: str, reference: Any = None
    ) -> None:
        """Save the policy (and ``optimizer``, over ``module``'s weights; a moved ``reference``): rank 0 writes."""
        if not (main or dist.fsdp):  # under FSDP every rank gathers
            return
        weights = dist.full_state(learner.policy)
        reference_weights = dist.full_state(reference) if reference is not None else None
        optim = dist.optimizer_state(module, optimizer) if optimizer is not None else None
        # LoRA during RL: the base weights stay those of reference.safetensors; checkpoints hold the rest
        frozen = None
        if lora and state.get("phase") == "rl" and step > 0:
            trainable = {k for k, p in model.named_parameters() if p.requires_grad}
            frozen = {f"lm.{k}" for k in model.state_dict() if k not in trainable}  # tied lm_head too
        if main:
            save_checkpoint(
                ckpt_dir, step, weights, optim, state, keep, prefix, frozen=frozen, reference=reference_weights
            )

    def recorded() -> dict[str, Any]:  # what every checkpoint records beside the phase
        return {
            "config_hash": config_hash(cfg),
            "settings": resume_settings(cfg),
            "changes": changes,
            "metrics_lines": logger.lines if logger is not None else None,
        }

    if main:  # written once the settings are known to fit (a refused resume keeps the run's own config.yaml)
        save_codec(codec, out / "tokenizer")
        (out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))

    # --- SFT warm start: a tiny model from scratch must produce solutions before RL means anything ---
    # Under torchrun every rank draws the same batches and trains on its share of their rows (DDP).
    if state["phase"] == "sft":
        progress = cfg.train.progress and main
        if cfg.pretrain.steps > 0 and sft_resume is None:  # knowledge first (the task's documents), then the format
            train_pretrain(
                model,
                probe.task,
                codec,
                cfg.pretrain,
                seed=cfg.seed,
                log=log,
                progress=progress,
                precision=ctx.precision,
                dist=dist,
            )
        if cfg.sft.steps > 0:

            def sft_checkpoint(done: int, optimizer: torch.optim.Optimizer, schedule: Any) -> None:
                extra = {"phase": "sft", "iteration": 0, "sft_step": done, "sft_schedule": schedule.state_dict()}
                checkpoint(done, model, optimizer, {**extra, **recorded()}, 1, "sft")  # SFT's AdamW is over the LM

            kwargs = {"seed": cfg.seed, "log": log, "progress": progress, "precision": ctx.precision, "dist": dist}
            kwargs["env_config"] = probe.episodes.config  # the env's prompt format (plain or chat template)
            train_sft(model, probe.task, codec, cfg.sft, **kwargs, checkpoint=sft_checkpoint, resume=sft_resume)
        if lora:  # the SFT adapter goes into the base weights: adapters-off is then the policy as RL starts
            fold_lora(model)
        state = {"phase": "rl", "iteration": 0}
        checkpoint(0, learner.policy, None, {**state, **recorded()}, cfg.train.keep_checkpoints, "step")
        if main:
            for part_way in ckpt_dir.glob("sft-*"):  # superseded by the end of SFT
                shutil.rmtree(part_way, ignore_errors=True)

    # --- the KL reference: the policy as RL starts (after SFT), stored once beside the checkpoints ---
    # The file is written even when no algorithm reads the reference, so a resume that turns a KL on
    # finds the right one; the in-memory copy (a whole model) is built only when it is read.
    ref_path = ckpt_dir / "reference.safetensors"
    resuming_rl = state["iteration"] > 0 and ref_path.exists()
    # a learner that moves the reference (self-rewarding's agent.ref_update_every): each RL checkpoint holds it,
    # and a resumed run starts from where it had moved to, not from the RL start
    moves_ref = getattr(learner, "updates_reference", lambda: False)()
    moved = found[1].get("reference") if moves_ref and resuming_rl and found is not None else None
    ref: torch.nn.Module | None = None
    if learner.uses_reference() and lora:  # a view: the policy's own modules with the adapters disabled
        start = load_file(ref_path) if resuming_rl else adapter_state(model)
        ref = AdapterOff(model, {k: v.to(device) for k, v in start.items() if "lora_" in k})
    elif learner.uses_reference() and dist.fsdp:  # a sharded copy: the weights come from the (sharded) policy
        ref = build_model().to(device)
        weights = moved or (load_file(ref_path) if resuming_rl else dist.full_state(model, everywhere=True))
        dist.load_full_state(ref, weights)
        ref = dist.wrap(frozen_copy(ref))
    elif learner.uses_reference():
        ref = frozen_copy(model)
        if resuming_rl:
            ref.load_state_dict(moved or load_file(ref_path))
    moving_ref = ref if ref is not None and moves_ref else None
    if not resuming_rl and (main or dist.fsdp):
        start_weights = dist.full_state(model)
        if main:
            save_file(untie(start_weights), ref_path)

    eval_env_kwargs = {k: v for k, v in env_kwargs.items() if k != "curriculum"}
    start_iteration = state["iteration"]
    before_path = out / "eval_before_rl.json"
    if start_iteration == 0:  # the RL starting point, on the final evaluation's problems (every rank plays a share)
        before = _evaluate(model, cfg, cfg.eval, eval_env_kwargs, ctx)
        if main:
            logger.log(0, eval_metrics(before))
            _write_json(before_path, {k: v for k, v in before.items() if k != "records"})
    dist.barrier()  # the other ranks wait for rank 0's files (reference, evaluation)
    # A run resumed mid-RL reads the starting point it saved; it never re-labels later weights as "before".
    before = json.loads(before_path.read_text()) if before_path.exists() else {"accuracy": None}

    progress = _progress(cfg, start_iteration) if main else None
    for it in range(start_iteration, cfg.train.iterations):
        lr_scale = lr_factor(cfg.train, it)
        for group, lr in zip(learner.optimizer.param_groups, base_lrs):
            group["lr"] = lr * lr_scale
        metrics = learner.iteration(it, ref)
        check_weights(learner.policy, it + 1, ckpt_dir, dist)  # exploded weights never become the "last good" one
        missing = [k for k in REQUIRED_METRICS if k not in metrics]
        if missing:
            raise KeyError(f"{type(learner).__name__}.iteration returned no {missing}; every learner reports them.")
        metrics["train/lr"] = base_lrs[0] * lr_scale
        step = it + 1
        if cfg.train.eval_every and step % cfg.train.eval_every == 0 and step < cfg.train.iterations:
            metrics.update(eval_metrics(_evaluate(model, cfg, _periodic_eval(cfg), eval_env_kwargs, ctx)))
        if main:
            logger.log(step, metrics)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(
                ret=f"{metrics['rollout/return_mean']:.3f}",
                acc=f"{metrics['rollout/success']:.2f}",
                tok_s=f"{metrics['rollout/tokens_per_s']:.0f}",
            )
        if step % cfg.train.checkpoint_every == 0 or step == cfg.train.iterations:
            extra = {
                "phase": "rl",
                "iteration": step,
                **recorded(),
                "learner": learner.state_dict(),
                "precision": ctx.precision.state_dict(),
                "world_size": dist.world_size,
            }
            checkpoint(step, learner.policy, learner.optimizer, extra, cfg.train.keep_checkpoints, "step", moving_ref)
    if progress is not None:
        progress.close()

    # --- final evaluation (every rank plays a share) and artifacts (rank 0; the others get its result) ---
    result: dict[str, Any] | None = None
    final = _evaluate(model, cfg, cfg.eval, eval_env_kwargs, ctx)
    exported = model
    if dist.fsdp:  # rank 0 exports an unsharded copy of the whole weights
        weights = dist.full_state(model)
        if main:
            exported = build_model()
            exported.load_state_dict(weights, strict=False)
    if main:
        logger.log(cfg.train.iterations, eval_metrics(final))
        logger.close()
        plot_curves(out / "metrics.jsonl", out / "curves.png")
        export_model(exported, codec, out / "model")  # adapters merged: model.name_or_path=<run>/model
        result = {
            "env_id": cfg.env.id,
            "seed": cfg.seed,
            "agent": cfg.agent.name,
            "agent_config": _plain(cfg.agent),
            "config_hash": config_hash(cfg),
            "model": display_name(cfg.model.name_or_path)
            or default_model_name(cfg.model.arch, **asdict(cfg.model.size)),
            # the model's own tokenizer is named as the model is (not by its cache directory)
            "tokenizer": display_name(cfg.model.name_or_path) if codec.name == model_path else codec.name,
            "metrics": {k: v for k, v in final.items() if k != "records"},
            "before_rl": before,
            "accuracy_before_rl": before["accuracy"],
            "records": final["records"],
            **({"resumed_with_changes": changes} if changes else {}),
            "wall_time_s": round(time.time() - started, 2),
            "hardware": {
                "platform": platform.platform(),
                "torch_threads": torch.get_num_threads(),
                "device": str(device),
                "dtype": cfg.model.dtype,
                "world_size": dist.world_size,
                "strategy": dist.strategy if dist.distributed else "none",
                # the weights this rank held (1/world_size of them under FSDP, all of them otherwise)
                "params_on_rank0": sum(getattr(p, "_local_tensor", p).numel() for p in learner.policy.parameters()),
            },
        }
        _write_json(out / "eval.json", result)
    return dist.broadcast_object(result)


def _evaluate(
    model: torch.nn.Module, cfg: RunConfig, protocol: EvalConfig, env_kwargs: dict[str, Any], ctx: RunContext
) -> dict[str, Any]:
    with ctx.precision.autocast(), ctx.dist.gathered(model):  # ranks play different numbers of tokens
        return evaluate(model, cfg.env.id, protocol, seed=cfg.seed, env_kwargs=env_kwargs, dist=ctx.dist)


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file, then rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def _periodic_eval(cfg: RunConfig) -> EvalConfig:
    return EvalConfig(
        num_episodes=cfg.train.eval_episodes,
        split=cfg.eval.split,
        samples=1,
        temperature=0.0,
        batch_size=cfg.eval.batch_size,
    )


def _plain(obj: Any) -> Any:
    return asdict(obj) if is_dataclass(obj) else obj


def _progress(cfg: RunConfig, start: int) -> Any:
    if not cfg.train.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.train.iterations, initial=start, desc=f"{cfg.agent.name} {cfg.env.id}", unit="it")
