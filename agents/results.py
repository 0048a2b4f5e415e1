"""From finished runs to a leaderboard submission: ``lm-envs results RUN_DIR... -o submission.json``.

Each run directory's ``eval.json`` holds one seed's evaluation on the env's fixed test split. Runs
of one setting (same env, agent and config hash, different seeds, e.g. ``lm-envs train -m
seed=0,1,2``) combine into one submission in the leaderboard's format
(:func:`leaderboard.build_submission`): per-seed scores under the env's protocol metric, episode
hashes, config hash, model and tokenizer identity, code and library versions, hardware, wall time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lm_envs


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """The ``eval.json`` of a finished run, with a clear error if the run did not finish."""
    path = Path(run_dir) / "eval.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {run_dir} is not a finished run (its final evaluation).")
    return json.loads(path.read_text())


def tokenizer_hash(run_dir: str | Path) -> str:
    """sha256 of the tokenizer saved in the run directory."""
    path = Path(run_dir) / "tokenizer" / "tokenizer.json"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "unknown"


def submission_from_runs(run_dirs: Sequence[str | Path]) -> dict[str, Any]:
    """Combine the evaluations of several seeds of one setting into a leaderboard submission.

    Raises:
        ValueError: If the runs differ in env, agent or config (only the seed may differ), or
            repeat a seed.
    """
    from leaderboard import build_submission
    from leaderboard.verify import checkpoint_sha256

    if not run_dirs:
        raise ValueError("give at least one run directory (one per seed).")
    runs = [load_run(d) for d in run_dirs]
    first = runs[0]
    for d, r in zip(run_dirs, runs):
        for key in ("env_id", "agent", "config_hash"):
            if r[key] != first[key]:
                raise ValueError(
                    f"{d} has {key}={r[key]!r} but {run_dirs[0]} has {first[key]!r}: a submission combines seeds of "
                    "one setting; submit other settings separately."
                )
    seeds = [r["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the runs repeat a seed ({seeds}); each seed may appear once.")
    metric = lm_envs.get_protocol(first["env_id"]).metric
    blocks = []
    for d, r in zip(run_dirs, runs):
        m = r["metrics"]
        block = {
            "seed": r["seed"],
            "score": float(m[metric]),
            "num_episodes": int(m["num_episodes"]),
            "episodes_hash": m["episodes_hash"],
            "metrics": {k: float(v) for k, v in m.items() if isinstance(v, (int, float)) and k != metric},
        }
        model = Path(d) / "model"  # the trained model a run writes: `lm-envs leaderboard verify` re-runs it
        if (model / "config.json").is_file():  # replace the uri by where you publish the directory
            block["checkpoint"] = {"uri": str(model.resolve()), "sha256": checkpoint_sha256(model)}
        blocks.append(block)
    return build_submission(
        first["env_id"],
        agent=first["agent"],
        agent_config=first["agent_config"],
        model=first["model"],
        tokenizer_hash=tokenizer_hash(run_dirs[0]),
        seeds=blocks,
        wall_time_s=float(sum(r["wall_time_s"] for r in runs)),
        extra={"accuracy_before_rl": [r.get("accuracy_before_rl") for r in runs], "config_hash": first["config_hash"]},
    )
