"""Evaluation on an env's fixed test split: mean return, accuracy, pass@k and best-of-N.

Episodes are the first ``num_episodes`` problems of the protocol's split, in index order, so every
model is scored on the same problems. ``k`` samples per problem (``group_size``) give pass@k (the
unbiased estimator of Chen et al. 2021) and best-of-N by the env's own reward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import lm_envs
from agents.policy.sampling import sample_per_problem
from agents.run.distributed import Dist
from leaderboard.hashing import episodes_hash


@dataclass
class EvalConfig:
    """Settings of an evaluation."""

    num_episodes: int | None = None  # problems from the split (None: the env's protocol count, else whole split)
    split: str = "test"
    samples: int = 1  # samples per problem (pass@k, best-of-N); 1 with temperature 0 is greedy accuracy
    temperature: float = 0.0
    batch_size: int = 128  # envs per rollout


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct (Chen et al. 2021).

    Example:
        >>> round(pass_at_k(4, 1, 2), 3)
        0.5
    """
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def multi_turn_fields(info: dict[str, Any]) -> dict[str, Any]:
    """The per-episode record's multi-turn fields from a multi-turn env's end-of-episode ``info`` (else none).

    ``turns`` (the policy's completed turns, the env's ``num_turns``: a turn cut by a budget is not
    counted), ``end_reason`` (``eos``, ``stop``, ``task`` or a truncation such as
    ``max_turn_tokens``), ``policy_tokens`` and ``env_tokens`` (tokens the env appended: tool output,
    feedback), with ``num_tokens`` = ``policy_tokens + env_tokens``. Single-turn envs report none of
    these, so their records (and ``episodes_hash``) are unchanged.

    Example:
        >>> multi_turn_fields({"num_tokens": 12, "num_turns": 2, "policy_tokens": 9, "end_reason": "stop"})
        {'turns': 2, 'end_reason': 'stop', 'policy_tokens': 9, 'env_tokens': 3}
        >>> multi_turn_fields({"num_tokens": 5})
        {}
    """
    if "num_turns" not in info:
        return {}
    policy = int(info.get("policy_tokens", 0))
    return {
        "turns": int(info["num_turns"]),
        "end_reason": str(info.get("end_reason", "")),
        "policy_tokens": policy,
        "env_tokens": int(info.get("num_tokens", 0)) - policy,
    }


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    env_id: str,
    cfg: EvalConfig,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    dist: Dist | None = None,
) -> dict[str, Any]:
    """Score ``model`` on ``env_id``; returns metrics and per-episode records.

    Under torchrun (``dist``) every rank plays a contiguous share of the problems and the records are
    gathered in rank order, so every rank returns the one-process result (greedy evaluation, the default,
    does not depend on the world size; sampled evaluation draws from each rank's own stream).

    Returns:
        ``{"accuracy", "mean_return", "pass@k"..., "best_of_n", "num_episodes", "records", "episodes_hash"}``
        plus the env reward's own :meth:`~lm_envs.Reward.metrics` over the first sample of each problem;
        multi-turn envs add ``mean_turns`` and ``mean_env_tokens``, and their records
        :func:`multi_turn_fields`.
    """
    # evaluation: whole problems (no curriculum prefixes) of the evaluation's own split
    kwargs = {k: v for k, v in (env_kwargs or {}).items() if k not in ("curriculum", "split")}
    probe = gym.make(env_id, **kwargs).unwrapped
    n_problems = cfg.num_episodes
    if n_problems is None:
        try:
            n_problems = lm_envs.get_protocol(env_id).num_episodes
        except KeyError:
            n_problems = None
    if n_problems is None:
        n_problems = probe.task.size(cfg.split)
    n_problems = min(n_problems, probe.task.size(cfg.split))
    k = max(1, cfg.samples)
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    dist = dist or Dist()
    lo, hi = n_problems * dist.rank // dist.world_size, n_problems * (dist.rank + 1) // dist.world_size
    records: list[dict[str, Any]] = []
    for chunk, rollout in sample_per_problem(
        model,
        env_id,
        k,
        indices=range(lo, hi),
        prefixes="",
        split=cfg.split,
        temperature=cfg.temperature,
        generator=generator,
        batch_size=cfg.batch_size,
        env_kwargs=kwargs,
    ):
        returns = rollout.returns.tolist()
        for j, info in enumerate(rollout.infos):
            record = {
                "index": lo + chunk[j // k],
                "sample": j % k,
                "problem_id": rollout.reset_infos[j]["problem_id"],
                "return": float(returns[j]),
                "success": bool(info.get("is_success", False)),
                "completion": info.get("completion", ""),
                "num_tokens": int(info.get("num_tokens", 0)),
                "outcome": info.get("outcome", {}),
            }
            records.append({**record, **multi_turn_fields(info)})
    if dist.distributed:
        records = [record for part in dist.gather_objects(records) for record in part]
    by_problem: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        by_problem.setdefault(r["index"], []).append(r)
    first = [rs[0] for rs in by_problem.values()]
    metrics: dict[str, Any] = {
        "num_episodes": len(records),
        "num_problems": len(by_problem),
        "accuracy": float(np.mean([r["success"] for r in first])),
        "mean_return": float(np.mean([r["return"] for r in records])),
        "mean_tokens": float(np.mean([r["num_tokens"] for r in records])),
    }
    if records and "turns" in records[0]:  # multi-turn: how long conversations ran, and how much was the env's
        metrics["mean_turns"] = float(np.mean([r["turns"] for r in records]))
        metrics["mean_env_tokens"] = float(np.mean([r["env_tokens"] for r in records]))
    for name, value in probe.episodes.reward.metrics([r["outcome"] for r in first]).items():
        if name in metrics:
            raise ValueError(f"reward metric {name!r} clashes with an evaluation metric; rename it in the reward.")
        metrics[name] = value
    if k > 1:
        for kk in sorted({1, k} | {2**j for j in range(1, int(math.log2(k)) + 1)}):
            metrics[f"pass@{kk}"] = float(
                np.mean([pass_at_k(len(rs), sum(r["success"] for r in rs), kk) for rs in by_problem.values()])
            )
        best = [max(rs, key=lambda r: r["return"])["success"] for rs in by_problem.values()]
        metrics["best_of_n"] = float(np.mean(best))
    metrics["records"] = records
    metrics["episodes_hash"] = episodes_hash(records)
    return metrics
