"""Required reference baselines per env: where a score stops being meaningful.

Two baselines, each scored under the env's evaluation protocol over the protocol's seeds and
aggregated like a submission (the protocol's aggregate with its 95% stratified-bootstrap interval):

* ``"format-only"``: the task's :meth:`~lm_envs.Task.format_only` answers (well-formed, no task
  knowledge), played through the env's :class:`~lm_envs.TextEnv` by
  :func:`lm_envs.core.baselines.evaluate_text_policy`. Cheap (seconds), no model involved.
* ``"random-reward"``: the standard training run (``conf/config.yaml``'s defaults on this env, plus
  the overrides given) with the env's reward replaced by :class:`lm_envs.core.baselines.RandomReward`
  (Bernoulli(``p``) per episode, seeded by the run's seed), then the trained model evaluated exactly as
  ``lm-envs leaderboard verify`` evaluates a checkpoint (:func:`leaderboard.verify.evaluate_checkpoint`:
  greedy, the protocol's split and episodes, the seed). It shows what training alone buys.

The board draws both as reference lines in each env's table and plot, and flags entries that do not
beat the format-only baseline. ``lm-envs leaderboard baselines ENV ...`` computes and stores them.

Example:
    >>> record = format_only_baseline("LMEnv/TargetWord-v0", seeds=[0, 1, 2])
    >>> record["kind"], record["metric"], len(record["seed_scores"])
    ('format-only', 'mean_return', 3)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from leaderboard.aggregate import aggregate_scores
from leaderboard.envs import check_env_id
from leaderboard.hashing import episodes_hash
from leaderboard.store import BASELINE_KINDS

#: The baselines measured for the built-in envs (``lm-envs leaderboard baselines load`` stores them).
PUBLISHED = Path(__file__).with_name("published_baselines.json")

__all__ = [
    "BASELINE_KINDS",
    "PUBLISHED",
    "baseline_record",
    "check_baseline",
    "format_only_baseline",
    "random_reward_baseline",
    "random_reward_baselines",
    "random_reward_env_kwargs",
    "random_reward_run_key",
    "rl_start_model",
    "shared_random_reward_runs",
    "start_aggregate",
]


def _seeds(env_id: str, seeds: Sequence[int] | None) -> list[int]:
    protocol = check_env_id(env_id)
    chosen = list(range(protocol.min_seeds)) if seeds is None else [int(s) for s in seeds]
    if len(chosen) < protocol.min_seeds:
        raise ValueError(
            f"{env_id}'s protocol needs at least {protocol.min_seeds} seeds, got {chosen}; pass more --seed values."
        )
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"seeds must be distinct, got {chosen}.")
    return chosen


def baseline_record(
    env_id: str, kind: str, per_seed: Sequence[dict[str, Any]], detail: dict[str, Any]
) -> dict[str, Any]:
    """A baseline as the store keeps it: per-seed scores aggregated under the env's protocol.

    Args:
        env_id: The env.
        kind: One of :data:`BASELINE_KINDS`.
        per_seed: One dict per seed with at least ``seed`` and ``score``.
        detail: How the baseline was computed (kept with it; shown on the page).

    Raises:
        ValueError: If the kind is unknown or a score lies outside the metric's declared range.
    """
    if kind not in BASELINE_KINDS:
        raise ValueError(f"baseline kind must be one of {list(BASELINE_KINDS)}, got {kind!r}.")
    protocol = check_env_id(env_id)
    scores = [float(s["score"]) for s in per_seed]
    outside = [x for x in scores if not protocol.in_range(x)]
    if outside:
        raise ValueError(f"{kind} scores {outside} lie outside {env_id}'s metric range {protocol.metric_range}.")
    agg = aggregate_scores(
        scores, metric=protocol.metric, higher_is_better=protocol.higher_is_better, primary=protocol.aggregate
    )
    from leaderboard.submission import code_version

    return {
        "env_id": env_id,
        "kind": kind,
        "metric": protocol.metric,
        "higher_is_better": protocol.higher_is_better,
        "aggregate": protocol.aggregate,
        "score": agg[protocol.aggregate],
        "ci": agg[f"{protocol.aggregate}_ci"],
        "seed_scores": scores,
        "detail": {
            **detail,
            "seeds": list(per_seed),
            "mean": agg["mean"],
            "protocol": protocol.to_dict(),
            "code": detail.get("code") or code_version(),  # a long job passes the version it started with
            "computed_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        },
    }


def check_baseline(item: Mapping[str, Any]) -> dict[str, Any]:
    """Check a stored or published baseline (``baselines list --json``, ``compute --json``) before loading it.

    Its env must be registered here with the same metric, direction and aggregate, its per-seed
    scores inside the metric's range and enough of them, and its score and interval those the
    per-seed scores give (recomputed, as for submissions); so must a random-reward record's RL start
    (``detail["start"]``).

    Returns:
        The record :meth:`~leaderboard.store.LeaderboardStore.set_baseline` takes.

    Raises:
        ValueError: Naming what does not hold.
    """
    try:
        env_id, kind, scores = item["env_id"], item["kind"], [float(x) for x in item["seed_scores"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"a baseline needs env_id, kind and seed_scores (numbers): {e}") from None
    protocol = check_env_id(env_id)
    for key in ("metric", "higher_is_better", "aggregate"):
        if item.get(key) != getattr(protocol, key):
            raise ValueError(
                f"{env_id} {kind}: {key} is {item.get(key)!r} but the protocol's is {getattr(protocol, key)!r}; "
                "compute the baseline again (lm-envs leaderboard baselines compute)."
            )
    if len(scores) < protocol.min_seeds:
        raise ValueError(f"{env_id} {kind}: {len(scores)} seeds, the protocol needs {protocol.min_seeds}.")
    record = baseline_record(env_id, kind, [{"seed": i, "score": x} for i, x in enumerate(scores)], {})
    claimed = [item.get("score"), *(item.get("ci") or [None, None])]
    if not all(
        isinstance(c, (int, float)) and abs(c - r) <= 1e-9 for c, r in zip(claimed, [record["score"], *record["ci"]])
    ):
        raise ValueError(
            f"{env_id} {kind}: score and ci {claimed} are not the {protocol.aggregate} and interval of the seed "
            f"scores ({[record['score'], *record['ci']]})."
        )
    detail = dict(item.get("detail") or {})
    start = detail.get("start")
    if start is not None:  # a random-reward record's RL start: aggregated from its seed scores like the score
        try:
            again = start_aggregate(env_id, start["seed_scores"])
            claimed = [float(start["score"]), *(float(x) for x in start["ci"])]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{env_id} {kind}: detail.start needs seed_scores, score and ci (numbers): {e}") from None
        if len(claimed) != 3 or any(abs(c - r) > 1e-9 for c, r in zip(claimed, [again["score"], *again["ci"]])):
            raise ValueError(
                f"{env_id} {kind}: detail.start's score and ci {claimed} are not the {protocol.aggregate} and "
                f"interval of its seed scores ({[again['score'], *again['ci']]})."
            )
    return {**record, "detail": detail}


def format_only_baseline(
    env_id: str, seeds: Sequence[int] | None = None, *, num_episodes: int | None = None
) -> dict[str, Any]:
    """Score the task's format-only policy under ``env_id``'s protocol (through its TextEnv), per seed.

    Args:
        env_id: A registered env with a protocol, whose task implements :meth:`~lm_envs.Task.format_only`.
        seeds: Seeds of the policy's random choices (default: ``0 .. min_seeds - 1``).
        num_episodes: Problems per seed (default: the protocol's); fewer makes a rough, cheaper baseline.

    Returns:
        The baseline record (:func:`baseline_record`).

    Raises:
        NotImplementedError: If the env's task declares no format-only policy.
    """
    from lm_envs.core.baselines import evaluate_text_policy, format_only_policy, protocol_score

    protocol = check_env_id(env_id)
    per_seed = []
    started = time.perf_counter()
    for seed in _seeds(env_id, seeds):
        result = evaluate_text_policy(env_id, format_only_policy, seed=seed, num_episodes=num_episodes)
        records = result["records"]
        per_seed.append(
            {
                "seed": seed,
                "score": protocol_score(protocol.metric, result),
                "num_episodes": result["num_episodes"],
                "episodes_hash": episodes_hash(records),
                "example": records[0]["completion"] if records else "",
            }
        )
    detail = {
        "policy": "Task.format_only through the env's TextEnv",
        "num_episodes": num_episodes,
        "wall_time_s": round(time.perf_counter() - started, 2),
    }
    return baseline_record(env_id, "format-only", per_seed, detail)


def random_reward_env_kwargs(
    env_id: str, seed: int, p: float = 0.5, kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``gym.make`` overrides that replace ``env_id``'s reward by a seeded coin, keeping its own for the record.

    Args:
        env_id: The env.
        seed: The coin's seed.
        p: Probability that an episode pays 1.
        kwargs: The run's own env overrides (their ``reward``/``reward_kwargs``, if any, are the wrapped reward).

    Raises:
        ValueError: If the env's reward is not an import string (a run's config must stay plain data).
    """
    import gymnasium as gym

    kwargs = dict(kwargs or {})
    registered = gym.spec(env_id).kwargs
    inner = kwargs.pop("reward", registered.get("reward"))
    inner_kwargs = {**(registered.get("reward_kwargs") or {}), **(kwargs.pop("reward_kwargs", None) or {})}
    if not isinstance(inner, str):
        raise ValueError(
            f"{env_id}'s reward is an object ({inner!r}); the random-reward baseline needs it as an import string "
            "('package.module:attr') so the run's config stays plain data. Register the env with a string reward."
        )
    return {
        **kwargs,
        "reward": "lm_envs.core.baselines:RandomReward",
        "reward_kwargs": {"reward": inner, "reward_kwargs": inner_kwargs, "p": float(p), "seed": int(seed)},
    }


def random_reward_run_key(env_id: str) -> str:
    """What a random-reward training run on ``env_id`` depends on, as text: envs with equal keys share one run.

    :class:`~lm_envs.core.baselines.RandomReward` pays a coin that never reads the env's reward, and pays
    no process or turn rewards, so a random-reward run sees nothing of the reward but its name in the
    config: two envs registered with the same entry points and the same keyword arguments apart from
    ``reward`` and ``reward_kwargs`` (e.g. ``LMEnv/Math-v0`` and ``LMEnv/MathProcess-v0``: the same task,
    prompts and budgets, another grading) give the same training run under the same overrides and
    seed, and its model can be scored under each env's protocol.

    Example:
        >>> random_reward_run_key("LMEnv/Math-v0") == random_reward_run_key("LMEnv/MathProcess-v0")
        True
        >>> random_reward_run_key("LMEnv/Math-v0") == random_reward_run_key("LMEnv/MathTools-v0")
        False
    """
    import json

    import gymnasium as gym

    check_env_id(env_id)
    spec = gym.spec(env_id)
    kwargs = {k: v for k, v in spec.kwargs.items() if k not in ("reward", "reward_kwargs")}
    shape = {
        "entry_point": str(spec.entry_point),
        "vector_entry_point": str(spec.vector_entry_point),
        "max_episode_steps": spec.max_episode_steps,
        "kwargs": kwargs,
    }
    return json.dumps(shape, sort_keys=True, default=repr)


def shared_random_reward_runs(env_ids: Sequence[str]) -> list[list[str]]:
    """``env_ids`` grouped by :func:`random_reward_run_key`, in first-seen order: one training run per group.

    Example:
        >>> shared_random_reward_runs(["LMEnv/Math-v0", "LMEnv/Digits-v0", "LMEnv/MathProcess-v0"])
        [['LMEnv/Math-v0', 'LMEnv/MathProcess-v0'], ['LMEnv/Digits-v0']]
    """
    groups: dict[str, list[str]] = {}
    for env_id in dict.fromkeys(env_ids):
        groups.setdefault(random_reward_run_key(env_id), []).append(env_id)
    return list(groups.values())


def rl_start_model(run_dir: str | os.PathLike[str]) -> Path:
    """Export a finished run's RL starting point (the weights after SFT) beside its model, as ``model_rl_start``.

    The run keeps those weights as ``checkpoints/reference.safetensors`` (the KL reference); they go
    into a copy of the exported ``model`` directory (same architecture and tokenizer), so
    :func:`leaderboard.verify.evaluate_checkpoint` scores it exactly as it scores the final model.

    Raises:
        FileNotFoundError: If the run has no exported model or no reference weights.
        ValueError: If the reference does not fit the exported model (a LoRA run keeps only adapters there).
    """
    import shutil

    from safetensors.torch import load_file

    from agents.policy.models import export_model, load_model
    from lm_envs.core.tokenizer import load_codec

    run_dir = Path(run_dir)
    model_dir, ref = run_dir / "model", run_dir / "checkpoints" / "reference.safetensors"
    for needed in (model_dir, ref):
        if not needed.exists():
            raise FileNotFoundError(f"{needed} is missing; the RL start is read from a finished run's directory.")
    codec = load_codec(str(model_dir))
    model = load_model(str(model_dir), codec)
    missing, unexpected = model.load_state_dict(load_file(ref), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{ref} does not fit {model_dir} (missing {missing[:3]}, unexpected {unexpected[:3]}); the RL start "
            "can be exported from full-weight runs only (not model.lora.r > 0)."
        )
    out = run_dir / "model_rl_start"
    shutil.rmtree(out, ignore_errors=True)
    export_model(model, codec, out)
    return out


def random_reward_baseline(
    env_id: str,
    seeds: Sequence[int] | None = None,
    *,
    overrides: Sequence[str] = (),
    p: float = 0.5,
    workdir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    evaluator: Callable[..., dict[str, Any]] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train with a random reward (one run per seed) and score the result under ``env_id``'s protocol.

    :func:`random_reward_baselines` for one env (its own runs).
    """
    return random_reward_baselines(
        [env_id],
        seeds,
        overrides=overrides,
        p=p,
        workdir=workdir,
        device=device,
        evaluator=evaluator,
        progress=progress,
    )[0]


def random_reward_baselines(
    env_ids: Sequence[str],
    seeds: Sequence[int] | None = None,
    *,
    overrides: Sequence[str] = (),
    p: float = 0.5,
    workdir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    evaluator: Callable[..., dict[str, Any]] | None = None,
    progress: bool = False,
    share_runs: bool = True,
) -> list[dict[str, Any]]:
    """Train with a random reward and score the trained model and its RL start under each env's protocol.

    Each seed runs the standard training job (``conf/config.yaml`` composed with ``env.id=<env>``,
    ``seed=<seed>`` and ``overrides``) with :func:`random_reward_env_kwargs` as the env's overrides, then
    evaluates on the real env with :func:`leaderboard.verify.evaluate_checkpoint` (the code ``lm-envs
    leaderboard verify`` re-runs) both the run's exported model (``<run>/model``) and its RL starting
    point, the model after SFT (:func:`rl_start_model`): the gap between the two is what RL on a coin
    buys, the start's score what SFT does.

    With ``share_runs``, envs whose runs would be the same run (:func:`shared_random_reward_runs`, e.g.
    Math-v0 and MathProcess-v0) share one run per seed, made on the first of them; each record names
    the env the run was made on (``detail["run_env"]``) and the run per seed.

    Args:
        env_ids: The envs (one record each, in this order).
        seeds: Training and evaluation seeds (default: ``0 .. min_seeds - 1`` of the first env of a run).
        overrides: Hydra overrides of the training runs (budget, model, agent), recorded with the baselines.
        p: Probability that an episode pays 1.
        workdir: Where the run directories go (default: a temporary directory, removed after).
        device: Torch device to evaluate on (training follows ``model.device`` in ``overrides``).
        evaluator: ``(model_dir, env_id, seed, device=...) -> metrics``; default ``evaluate_checkpoint``.
        progress: Show the runs' progress bars.
        share_runs: Let envs that give the same run share it (off: one run per env and seed).

    Returns:
        The baseline records (:func:`baseline_record`), one per env. Each per-seed entry holds the final
        model's ``score`` and ``episodes_hash``, the RL start's ``start_score`` and ``start_episodes_hash``,
        the run (``run``, ``run_env``, ``config_hash``) and its training wall time; ``detail["start"]``
        aggregates the start's scores as the record aggregates the final ones.
    """
    import shutil

    from hydra import compose, initialize_config_module

    from agents.run import run, to_run_config
    from agents.run.config import register_configs
    from leaderboard.verify import evaluate_checkpoint
    from lm_envs.core.baselines import protocol_score

    groups = shared_random_reward_runs(env_ids) if share_runs else [[e] for e in dict.fromkeys(env_ids)]
    chosen = {group[0]: _seeds(group[0], seeds) for group in groups}  # every env checked before any training
    for group in groups:
        for env_id in group[1:]:
            _seeds(env_id, chosen[group[0]])
    evaluator = evaluator or evaluate_checkpoint
    from leaderboard.submission import code_version

    code = code_version()  # the code the runs start with (the tree may change while they train)
    register_configs()
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="lm-envs-baseline-")) if own else Path(workdir)  # type: ignore[arg-type]
    records: dict[str, dict[str, Any]] = {}
    try:
        for group in groups:
            run_env = group[0]
            per_seed: dict[str, list[dict[str, Any]]] = {env_id: [] for env_id in group}
            for seed in chosen[run_env]:
                name = f"{run_env.replace('/', '_')}-random-reward-seed{seed}"
                out = root / name
                base = [
                    f"output_dir={out}",
                    f"env.id={run_env}",
                    f"seed={seed}",
                    f"train.progress={str(progress).lower()}",
                ]
                with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
                    composed = compose(config_name="config", overrides=[*base, *overrides])
                cfg = to_run_config(composed)
                kwargs = random_reward_env_kwargs(run_env, seed, p, dict(cfg.env.kwargs))
                cfg = dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, kwargs=kwargs))
                started = time.perf_counter()
                trained = run(cfg)
                train_s = time.perf_counter() - started
                start_dir = rl_start_model(out)
                for env_id in group:
                    final = evaluator(out / "model", env_id, seed, device=device)
                    start = evaluator(start_dir, env_id, seed, device=device)
                    per_seed[env_id].append(
                        {
                            "seed": seed,
                            "score": protocol_score(check_env_id(env_id).metric, final),
                            "episodes_hash": final.get("episodes_hash"),
                            "start_score": protocol_score(check_env_id(env_id).metric, start),
                            "start_episodes_hash": start.get("episodes_hash"),
                            "run": name,
                            "run_env": run_env,
                            "config_hash": trained.get("config_hash"),
                            "train_wall_time_s": round(train_s, 1),
                        }
                    )
            for env_id in group:
                detail = {
                    "policy": "the standard training run with the reward replaced by RandomReward, then the "
                    "protocol's evaluation of the trained model and of its RL start (the model after SFT)",
                    "p": p,
                    "overrides": list(overrides),
                    "agent": trained["agent"],
                    "model": trained["model"],
                    "run_env": run_env,
                    "shared_with": [e for e in group if e != env_id],
                    "start": start_aggregate(env_id, [s["start_score"] for s in per_seed[env_id]]),
                    "code": code,
                }
                records[env_id] = baseline_record(env_id, "random-reward", per_seed[env_id], detail)
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
    return [records[env_id] for env_id in dict.fromkeys(env_ids)]


def start_aggregate(env_id: str, scores: Sequence[float]) -> dict[str, Any]:
    """The RL start's per-seed scores aggregated under ``env_id``'s protocol (``score``, ``ci``, ``seed_scores``).

    Raises:
        ValueError: If a score lies outside the metric's declared range.

    Example:
        >>> start_aggregate("LMEnv/TargetWord-v0", [0.5, 0.5, 0.5])["score"]
        0.5
    """
    protocol = check_env_id(env_id)
    values = [float(x) for x in scores]
    outside = [x for x in values if not protocol.in_range(x)]
    if outside:
        raise ValueError(f"RL-start scores {outside} lie outside {env_id}'s metric range {protocol.metric_range}.")
    agg = aggregate_scores(
        values, metric=protocol.metric, higher_is_better=protocol.higher_is_better, primary=protocol.aggregate
    )
    return {"score": agg[protocol.aggregate], "ci": agg[f"{protocol.aggregate}_ci"], "seed_scores": values}
