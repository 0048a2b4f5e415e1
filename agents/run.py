"""One training run, start to finish: pre-training (optional), SFT warm start, RL, evaluation, artifacts.

``run(cfg)`` is what ``lm-envs train`` (the Hydra entry point in :mod:`agents.train`) calls; tests
call it directly with a composed config. A run directory holds::

    config.yaml         the resolved config
    metrics.jsonl       one line per logged step (SFT steps, RL iterations, evaluations)
    tensorboard/        the same metrics as TensorBoard events
    tokenizer/          the tokenizer, saved beside the checkpoints
    checkpoints/        atomic checkpoints (weights, optimizer, RNG, curriculum, controller state)
    curves.png          reward, KL, accuracy, SFT loss and per-stage success curves
    eval.json           held-out evaluation of this run's seed, in the leaderboard's format pieces

Resuming (``resume=true``, the default) continues from ``checkpoints/latest`` with the same
rollouts the uninterrupted run would have drawn: every rollout and minibatch order is seeded from
``(seed, iteration)``, so an interrupted run ends with the same parameters as one that was not.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file

import lm_envs  # noqa: F401  (registers the LMEnv/* ids)
from agents.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, untie
from agents.config import RunConfig, TrainSection
from agents.evaluate import EvalConfig, evaluate
from agents.logger import MetricsLogger, plot_curves
from agents.models import Policy, default_model_name, frozen_copy, load_model
from agents.ppo import KLController, PPOConfig, optimizer_groups, ppo_update
from agents.pretrain import rehearsal_documents, replay_batches, train_pretrain
from agents.reinforce import MovingAverageBaseline, ReinforceConfig, reinforce_update
from agents.rejection import RFTConfig, check_rft_config, continues_optimizer, rft_optimizer, rft_round
from agents.rollout import collect
from agents.sft import train_sft
from lm_envs.core.tokenizer import save_codec


def to_run_config(cfg: DictConfig | RunConfig) -> RunConfig:
    """A validated :class:`RunConfig` from a Hydra config (or pass one through)."""
    if isinstance(cfg, RunConfig):
        return cfg
    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, RunConfig):
        raise TypeError("the config must follow agents.config.RunConfig (compose it from conf/config.yaml).")
    if not isinstance(obj.agent, (PPOConfig, ReinforceConfig, RFTConfig)):
        raise TypeError("agent must be an agent/ option (ppo, grpo, rloo, reinforce, rft).")
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


def uses_reference(agent: PPOConfig | ReinforceConfig | RFTConfig, kl_ctl: KLController | None = None) -> bool:
    """Whether the algorithm reads the frozen reference model (else the run builds none).

    PPO: a non-zero KL coefficient or an adaptive KL target (``kl_ctl``'s, when given: a resumed run
    continues with its saved ``beta``, whatever ``kl_coef`` says); REINFORCE/GRPO/RLOO: a positive KL
    coefficient; RFT: ``from_base`` (every round restarts from the reference weights).
    """
    if isinstance(agent, PPOConfig):
        return (kl_ctl or KLController(agent.kl_coef, agent.kl_target, agent.kl_horizon)).needs_reference
    if isinstance(agent, RFTConfig):
        return agent.from_base
    return agent.kl_coef > 0


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


def config_hash(cfg: RunConfig) -> str:
    """sha256 of the resolved config without run directory and seed: runs of one setting share it."""
    d = asdict(cfg)
    for key in ("output_dir", "resume", "seed"):
        d.pop(key, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run(cfg: DictConfig | RunConfig) -> dict[str, Any]:
    """Train and evaluate; returns the final metrics (also written to ``eval.json``)."""
    cfg = to_run_config(cfg)
    agent = cfg.agent
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.model.threads:
        torch.set_num_threads(cfg.model.threads)
    seed_everything(cfg.seed)
    started = time.time()

    # --- env and model -------------------------------------------------------------------------
    env_kwargs = dict(cfg.env.kwargs)
    if cfg.model.name_or_path is not None:
        env_kwargs.setdefault("tokenizer", cfg.model.name_or_path)
    is_ppo, is_rft = isinstance(agent, PPOConfig), isinstance(agent, RFTConfig)
    # RFT samples through its own envs (K per prompt, in chunks); this one serves its codec and task.
    num_envs = agent.group_size if is_rft else agent.num_envs
    if is_rft:
        check_rft_config(agent)
    lr_factor(cfg.train, 0)  # a bad schedule fails here, before any work
    if not is_rft and agent.num_envs % agent.group_size:
        raise ValueError(f"agent.num_envs={agent.num_envs} must be a multiple of agent.group_size={agent.group_size}.")
    venv = gym.make_vec(cfg.env.id, num_envs=num_envs, autoreset_mode="Disabled", **env_kwargs)
    codec = venv.codec
    model = load_model(
        cfg.model.name_or_path,
        codec,
        seed=cfg.seed,
        dtype=cfg.model.dtype,
        arch=cfg.model.arch,
        size=asdict(cfg.model.size),
    ).to(cfg.model.device)
    env_kwargs.setdefault("vocab_size", int(model.get_output_embeddings().weight.shape[0]))
    if env_kwargs["vocab_size"] != venv.single_action_space.n:
        venv = gym.make_vec(cfg.env.id, num_envs=num_envs, autoreset_mode="Disabled", **env_kwargs)
    save_codec(codec, out / "tokenizer")
    logger = MetricsLogger(out)
    ckpt_dir = out / "checkpoints"
    policy = Policy(model, critic=agent.critic if is_ppo else "none").to(cfg.model.device)
    if is_rft:  # the AdamW of expert iteration's Improve steps (other RFT forms start one per round)
        optimizer = rft_optimizer(model, agent)
    else:
        params = optimizer_groups(policy, agent) if is_ppo else policy.parameters()  # PPO: agent.value_lr
        optimizer = torch.optim.Adam(params, lr=agent.lr, eps=1e-5)
    base_lrs = [group["lr"] for group in optimizer.param_groups]  # train.lr_schedule scales these
    kl_ctl = KLController(agent.kl_coef, agent.kl_target, agent.kl_horizon) if is_ppo else None
    moving_average = MovingAverageBaseline(agent.ema_decay) if isinstance(agent, ReinforceConfig) else None
    curriculum = venv.episodes.curriculum
    rft_pool: list[tuple[list[int], list[int]]] = []  # RFT with agent.accumulate: every sample kept so far

    # --- resume ------------------------------------------------------------------------------------
    state: dict[str, Any] = {"phase": "sft", "iteration": 0}
    latest = latest_checkpoint(ckpt_dir) if cfg.resume else None
    if latest is not None:
        saved = load_checkpoint(latest, policy, optimizer if latest.name != "step-000000" else None)
        if saved.get("config_hash") not in (None, config_hash(cfg)):
            logger.log(saved["iteration"], {"resume/config_changed": 1.0})
        state = {"phase": saved["phase"], "iteration": saved["iteration"]}
        if kl_ctl is not None and "kl_ctl" in saved:
            kl_ctl.load_state_dict(saved["kl_ctl"])
        if moving_average is not None and "baseline" in saved:
            moving_average.load_state_dict(saved["baseline"])
        if curriculum is not None and "curriculum" in saved:
            curriculum.load_state_dict(saved["curriculum"])
        rft_pool[:] = [(list(p), list(t)) for p, t in saved.get("rft_pool", [])]

    # InstructGPT's pre-training mix: rows of the task's documents in every RL update (checked before any
    # work; drawn per iteration, so a resumed run draws the same rows)
    ptx_docs = None
    if isinstance(agent, (ReinforceConfig, PPOConfig)) and agent.ptx_coef > 0:
        ptx_docs = rehearsal_documents(venv.task, codec, f"agent.ptx_coef={agent.ptx_coef}")
        # raises now on bad row settings (nothing is drawn: the batches are a lazy generator)
        replay_batches(ptx_docs, agent.ptx_rows, agent.ptx_block_size, None, codec.pad_token_id, "agent.ptx_rows")

    # written once the settings are known to fit (a refused resume keeps the run's own config.yaml)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))

    # --- SFT warm start: a tiny model from scratch must produce solutions before RL means anything ---
    if state["phase"] == "sft":
        if cfg.pretrain.steps > 0:  # knowledge first (the task's documents), then the task's format
            train_pretrain(
                model, venv.task, codec, cfg.pretrain, seed=cfg.seed, log=logger.log, progress=cfg.train.progress
            )
        if cfg.sft.steps > 0:
            train_sft(model, venv.task, codec, cfg.sft, seed=cfg.seed, log=logger.log, progress=cfg.train.progress)
        state = {"phase": "rl", "iteration": 0}
        save_checkpoint(
            ckpt_dir, 0, policy, None, {**state, "config_hash": config_hash(cfg)}, cfg.train.keep_checkpoints
        )

    # --- the KL reference: the policy as RL starts (after SFT), stored once beside the checkpoints ---
    # The file is written even when no algorithm reads the reference, so a resume that turns a KL on
    # finds the right one; the in-memory copy (a whole model) is built only when it is read.
    ref_path = ckpt_dir / "reference.safetensors"
    resuming_rl = ref_path.exists() and state["iteration"] > 0
    ref = frozen_copy(model) if uses_reference(agent, kl_ctl) else None
    if ref is not None and resuming_rl:
        ref.load_state_dict(load_file(ref_path))
    elif not resuming_rl:
        save_file(untie({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}), ref_path)

    eval_env_kwargs = {k: v for k, v in env_kwargs.items() if k != "curriculum"}
    start_iteration = state["iteration"]
    before_path = out / "eval_before_rl.json"
    if start_iteration == 0:  # the RL starting point, on the final evaluation's problems
        before = evaluate(model, cfg.env.id, cfg.eval, seed=cfg.seed, env_kwargs=eval_env_kwargs)
        logger.log(0, eval_metrics(before))
        _write_json(before_path, {k: v for k, v in before.items() if k != "records"})
    # A run resumed mid-RL reads the starting point it saved; it never re-labels later weights as "before".
    before = json.loads(before_path.read_text()) if before_path.exists() else {"accuracy": None}

    progress = _progress(cfg, start_iteration)
    rft_venvs: dict[int, Any] = {}
    for it in range(start_iteration, cfg.train.iterations):
        t0 = time.time()
        lr_scale = lr_factor(cfg.train, it)
        for group, lr in zip(optimizer.param_groups, base_lrs):
            group["lr"] = lr * lr_scale
        if is_rft:  # one Grow / Filter / Improve round per iteration
            base = ref.state_dict() if agent.from_base else None
            round_optimizer = optimizer  # expert iteration continues one AdamW (saved in the checkpoints)
            if not continues_optimizer(agent):  # RFT, RAFT, ReST-EM: a fresh one every round, at the scheduled lr
                round_optimizer = rft_optimizer(model, agent)
                round_optimizer.param_groups[0]["lr"] = agent.lr * lr_scale
            metrics = rft_round(
                model,
                cfg.env.id,
                agent,
                it,
                cfg.seed,
                env_kwargs,
                venvs=rft_venvs,
                base=base,
                pool=rft_pool,
                optimizer=round_optimizer,
                demo_problems=cfg.sft.num_examples,  # the warm start's demonstrations (agent.demo_fraction)
            )
            metrics.update(_rft_as_rollout_metrics(metrics, time.time() - t0))
        else:
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + it)
            rollout = collect(
                model,
                venv,
                seed=(cfg.seed * 1_000_003 + it * agent.num_envs) % 2**31,
                options={"group_size": agent.group_size} if agent.group_size > 1 else None,
                temperature=agent.temperature,
                generator=gen,
                value_head=policy.value_head if policy.critic == "shared" else None,  # PPO's old values
            )
            t_rollout = time.time() - t0
            ptx_batch = None
            if ptx_docs is not None:
                rows = replay_batches(
                    ptx_docs,
                    agent.ptx_rows,
                    agent.ptx_block_size,
                    np.random.default_rng([cfg.seed, 17, it]),
                    codec.pad_token_id,
                    "agent.ptx_rows",
                )
                ptx_batch = {k: v.to(cfg.model.device) for k, v in next(rows).items()}
            if is_ppo:
                metrics = ppo_update(policy, ref, optimizer, rollout, agent, kl_ctl, generator=gen, ptx_batch=ptx_batch)
            else:
                metrics = reinforce_update(
                    model, ref, optimizer, rollout, agent, moving_average, generator=gen, ptx_batch=ptx_batch
                )
            metrics.update(_rollout_metrics(rollout, t_rollout, time.time() - t0))
            metrics.update(_outcome_metrics(rollout, venv.episodes.reward))
        metrics["train/lr"] = base_lrs[0] * lr_scale
        if curriculum is not None:
            metrics["curriculum/stage"] = curriculum.stage
            metrics.update({f"curriculum/success_stage{k}": v for k, v in curriculum.success_rates().items()})
        step = it + 1
        if cfg.train.eval_every and step % cfg.train.eval_every == 0 and step < cfg.train.iterations:
            periodic = evaluate(model, cfg.env.id, _periodic_eval(cfg), seed=cfg.seed, env_kwargs=eval_env_kwargs)
            metrics.update(eval_metrics(periodic))
        logger.log(step, metrics)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(
                ret=f"{metrics['rollout/return_mean']:.3f}",
                acc=f"{metrics['rollout/success']:.2f}",
                tok_s=f"{metrics['rollout/tokens_per_s']:.0f}",
            )
        if step % cfg.train.checkpoint_every == 0 or step == cfg.train.iterations:
            extra: dict[str, Any] = {"phase": "rl", "iteration": step, "config_hash": config_hash(cfg)}
            if kl_ctl is not None:
                extra["kl_ctl"] = kl_ctl.state_dict()
            if moving_average is not None:
                extra["baseline"] = moving_average.state_dict()
            if curriculum is not None:
                extra["curriculum"] = curriculum.state_dict()
            if rft_pool:
                extra["rft_pool"] = rft_pool
            save_checkpoint(ckpt_dir, step, policy, optimizer, extra, cfg.train.keep_checkpoints)
    if progress is not None:
        progress.close()

    # --- final evaluation and artifacts ------------------------------------------------------------
    final = evaluate(model, cfg.env.id, cfg.eval, seed=cfg.seed, env_kwargs=eval_env_kwargs)
    logger.log(cfg.train.iterations, eval_metrics(final))
    logger.close()
    plot_curves(out / "metrics.jsonl", out / "curves.png")
    result = {
        "env_id": cfg.env.id,
        "seed": cfg.seed,
        "agent": agent.name,
        "agent_config": _plain(agent),
        "config_hash": config_hash(cfg),
        "model": cfg.model.name_or_path or default_model_name(cfg.model.arch, **asdict(cfg.model.size)),
        "tokenizer": codec.name,
        "metrics": {k: v for k, v in final.items() if k != "records"},
        "before_rl": before,
        "accuracy_before_rl": before["accuracy"],
        "records": final["records"],
        "wall_time_s": round(time.time() - started, 2),
        "hardware": {"platform": platform.platform(), "torch_threads": torch.get_num_threads()},
    }
    _write_json(out / "eval.json", result)
    return result


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


def _rollout_metrics(rollout: Any, t_rollout: float, t_total: float) -> dict[str, float]:
    returns = rollout.returns
    lengths = rollout.mask.sum(1).float()
    return {
        "rollout/return_mean": float(returns.mean()),
        "rollout/return_std": float(returns.std()) if len(returns) > 1 else 0.0,
        "rollout/success": float(rollout.success().mean()),
        "rollout/length_mean": float(lengths.mean()),
        "rollout/tokens_per_s": rollout.num_tokens / max(t_rollout, 1e-9),
        "time/rollout_s": t_rollout,
        "time/iteration_s": t_total,
    }


def _rft_as_rollout_metrics(m: dict[str, Any], t_total: float) -> dict[str, float]:
    """An RFT round's sampling figures under the names every run logs, so curves and progress compare."""
    return {
        "rollout/return_mean": m["rft/sample_return"],
        "rollout/success": m["rft/sample_success"],
        "rollout/tokens_per_s": m["rft/generated_tokens"] / max(m["rft/sample_seconds"], 1e-9),
        "time/rollout_s": m["rft/sample_seconds"],
        "time/iteration_s": t_total,
    }


def _outcome_metrics(rollout: Any, reward: Any) -> dict[str, float]:
    """Means of the numeric fields of the episodes' outcome records, and the reward's own metrics.

    A reward's record is how a task reports more than its return (e.g. a gold rubric score beside a
    learned reward model's, or abstentions): every number or bool in it becomes ``rollout/outcome/<key>``.
    """
    records = [info.get("outcome", {}) for info in rollout.infos]
    values: dict[str, list[float]] = {}
    for record in records:
        for key, value in record.items():
            if isinstance(value, (bool, int, float)) and value == value:
                values.setdefault(key, []).append(float(value))
    out = {f"rollout/outcome/{k}": float(np.mean(v)) for k, v in values.items()}
    out.update({f"rollout/{k}": float(v) for k, v in reward.metrics(records).items()})
    return out


def _plain(obj: Any) -> Any:
    return asdict(obj) if is_dataclass(obj) else obj


def _progress(cfg: RunConfig, start: int) -> Any:
    if not cfg.train.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.train.iterations, initial=start, desc=f"{cfg.agent.name} {cfg.env.id}", unit="it")
