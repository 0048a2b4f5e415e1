"""Building, writing and reading submission documents (what an evaluation run writes).

An agent's evaluation calls :func:`build_submission` with what only it knows (agent, config, model,
tokenizer, per-seed scores and episode hashes, wall time); everything else (env spec hash, protocol,
dataset identity, aggregates, code and library versions, hardware, date) is filled in here, so every
run records the same, complete, checkable document.

Example:
    >>> import lm_envs
    >>> seeds = [{"seed": s, "score": v, "episodes_hash": episodes_hash([{"seed": s, "return": v}])}
    ...          for s, v in [(0, 0.5), (1, 0.75), (2, 0.25)]]
    >>> doc = build_submission("LMEnv/TargetWord-v0", agent="ppo", agent_config={"lr": 1e-4}, model="tiny-gpt2",
    ...                        tokenizer_hash="0" * 64, seeds=seeds, wall_time_s=12.5)
    >>> doc["aggregate"]["mean"], doc["aggregate"]["n_seeds"], doc["seeds"][0]["num_episodes"]
    (0.5, 3, 8)
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import lm_envs
from leaderboard.aggregate import aggregate_scores
from leaderboard.envs import check_env_id, dataset_identity, spec_hash
from leaderboard.hashing import config_hash, episodes_hash, json_default
from leaderboard.schema import SCHEMA_VERSION, Submission
from leaderboard.validate import SubmissionError, schema_problems

__all__ = ["build_submission", "checkpoint_block", "episodes_hash", "load_submission", "write_submission"]

#: Libraries whose versions every submission records (read from package metadata, never imported).
LIBRARIES: tuple[str, ...] = (
    "numpy",
    "torch",
    "transformers",
    "gymnasium",
    "tokenizers",
    "sympy",
    "stable-baselines3",
    "safetensors",
)


def library_versions() -> dict[str, str | None]:
    """Python's and the key libraries' versions (``None`` for a library that is not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def code_version(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The lm-envs package version, and the git commit and dirty flag of the checkout holding ``path``.

    Args:
        path: A directory inside the checkout to describe; default the one holding ``lm_envs``.

    Returns:
        ``{"package": "lm-envs", "version", "git_commit", "git_dirty"}``; the git fields are ``None``
        outside a git checkout (e.g. an installed wheel). Untracked files count as dirty.
    """
    try:
        version: str | None = metadata.version("lm-envs")
    except metadata.PackageNotFoundError:
        version = getattr(lm_envs, "__version__", None)
    where = Path(path) if path is not None else Path(lm_envs.__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], where)
    status = _git(["status", "--porcelain"], where) if commit else None
    return {
        "package": "lm-envs",
        "version": version,
        "git_commit": commit.strip() if commit else None,
        "git_dirty": bool(status.strip()) if status is not None else None,
    }


def hardware_info() -> dict[str, Any]:
    """Platform, machine, CPU count, and the GPU's name if torch is already imported and sees CUDA.

    torch is never imported here: a process that has not imported it did not evaluate on a GPU.
    """
    gpu = None
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                gpu = str(torch.cuda.get_device_name(0))
        except Exception:  # noqa: BLE001 - hardware probing must never fail a submission
            gpu = None
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(), "gpu": gpu}


def _model_block(model: str | Mapping[str, Any], tokenizer_hash: str) -> dict[str, Any]:
    if isinstance(model, str):
        block: dict[str, Any] = {"name": model, "revision": None}
    elif isinstance(model, Mapping) and "name" in model:
        block = {"revision": None, **dict(model)}
    else:
        raise TypeError(
            f"model must be a name or a mapping with 'name' (and optional 'revision', 'dtype', 'num_parameters'), "
            f"got {model!r}."
        )
    block["tokenizer_hash"] = tokenizer_hash
    return block


def checkpoint_block(checkpoint: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, str]:
    """A seed's ``checkpoint`` block: ``{"uri", "sha256"}``.

    Args:
        checkpoint: A local checkpoint file or directory (its sha256 is computed, see
            :func:`leaderboard.verify.checkpoint_sha256`), or a mapping with ``uri`` (a path or URL where
            others can get it) and ``sha256``.

    Raises:
        ValueError: If a mapping lacks a field, or a path does not exist.
    """
    if isinstance(checkpoint, Mapping):
        missing = {"uri", "sha256"} - set(checkpoint)
        if missing:
            raise ValueError(f"a checkpoint needs 'uri' and 'sha256'; {dict(checkpoint)!r} lacks {sorted(missing)}.")
        return {"uri": str(checkpoint["uri"]), "sha256": str(checkpoint["sha256"])}
    from leaderboard.verify import checkpoint_sha256

    path = Path(checkpoint).expanduser().resolve()
    return {"uri": str(path), "sha256": checkpoint_sha256(path)}


def _seed_block(seed: Mapping[str, Any], num_problems: int) -> dict[str, Any]:
    missing = {"seed", "score", "episodes_hash"} - set(seed)
    if missing:
        raise ValueError(
            f"each seed needs 'seed', 'score' and 'episodes_hash' (leaderboard.episodes_hash(records)); "
            f"{dict(seed)!r} lacks {sorted(missing)}."
        )
    block = {
        "seed": int(seed["seed"]),
        "score": float(seed["score"]),
        "num_episodes": int(seed.get("num_episodes", num_problems)),
        "episodes_hash": str(seed["episodes_hash"]),
    }
    if seed.get("metrics"):
        metrics = {}
        for key, value in dict(seed["metrics"]).items():
            value = value.item() if isinstance(value, np.generic) else value
            if value is not None and not isinstance(value, (bool, int, float)):
                raise ValueError(
                    f"seed {block['seed']}: metrics[{key!r}] is a {type(value).__name__}; metrics hold numbers, bools "
                    "or None. Leave per-episode records out of the submission (pass their episodes_hash)."
                )
            metrics[str(key)] = value
        block["metrics"] = metrics
    if seed.get("checkpoint") is not None:
        block["checkpoint"] = checkpoint_block(seed["checkpoint"])
    extra = set(seed) - {"seed", "score", "num_episodes", "episodes_hash", "metrics", "checkpoint"}
    if extra:
        raise ValueError(f"unknown seed fields {sorted(extra)}; put additional per-seed numbers under 'metrics'.")
    return block


def build_submission(
    env_id: str,
    *,
    agent: str,
    agent_config: Mapping[str, Any],
    model: str | Mapping[str, Any],
    tokenizer_hash: str,
    seeds: Sequence[Mapping[str, Any]],
    wall_time_s: float,
    dataset: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    date: _dt.datetime | None = None,
) -> Submission:
    """Build a complete leaderboard submission for an evaluation of ``env_id`` under its protocol.

    The agent supplies what it measured; this fills in the env's spec hash and protocol, the dataset
    identity, the aggregates (mean, IQM and their 95% stratified-bootstrap intervals), the code
    version (git commit and dirty flag, package version), library versions (read from package
    metadata; torch is not imported), hardware, and the date. The result passes
    :func:`leaderboard.validate_submission` as long as the env's registration is unchanged and
    enough seeds are given. Save it with :func:`write_submission`.

    Args:
        env_id: The registered env id, with its version (``"LMEnv/Math-v0"``).
        agent: The agent's name (``"ppo"``, ``"grpo"``, ``"rejection-sampling"``).
        agent_config: The resolved agent config as plain JSON data (Hydra:
            ``OmegaConf.to_container(cfg, resolve=True)``); stored, and hashed into ``config_hash``.
        model: The model's name (``"tiny-gpt2"``, a hub name or path), or a mapping with ``name`` and
            optional ``revision`` (commit SHA), ``dtype`` and ``num_parameters``.
        tokenizer_hash: A hash identifying the tokenizer (e.g. sha256 of its ``tokenizer.json``).
        seeds: One mapping per evaluation seed: ``seed`` (int), ``score`` (the protocol's metric for
            that seed), ``episodes_hash`` (:func:`episodes_hash` of its per-episode records), optional
            ``num_episodes`` (default: the protocol's count), ``metrics`` (other numbers by name) and
            ``checkpoint`` (the published checkpoint that produced the seed: a path, or ``{"uri",
            "sha256"}``; see :func:`checkpoint_block`), which lets anyone verify the score.
        wall_time_s: Wall-clock seconds of the run (training plus evaluation).
        dataset: Extra dataset identity (``revision``, ``source``) merged over the computed
            ``name``, ``split``, ``num_problems`` and ``hash``.
        extra: Free-form additional information (total env steps, tokens, notes).
        date: When the evaluation finished (default: now, UTC).

    Returns:
        The submission document (a JSON-serialisable dict).

    Raises:
        leaderboard.UnknownEnvError: If ``env_id`` is not registered with a protocol.
        leaderboard.SubmissionError: If the document breaks the JSON Schema (e.g. an empty agent name).
        ValueError: If a seed lacks a field, a metric is not a number, or a score is not finite.
        TypeError: If ``agent_config`` is not JSON data.
    """
    protocol = check_env_id(env_id)
    data = dataset_identity(env_id)
    if dataset:
        overrides = dict(dataset)
        for key in ("name", "split", "num_problems", "hash"):
            if key in overrides and overrides[key] != data[key]:
                raise ValueError(
                    f"dataset[{key!r}]={overrides[key]!r} contradicts the env's protocol data ({data[key]!r}); "
                    "leave it out, it is computed from the registered task."
                )
        data.update(overrides)
    seed_blocks = [_seed_block(s, data["num_problems"]) for s in seeds]
    config = json.loads(json.dumps(dict(agent_config), default=json_default))
    when = (date or _dt.datetime.now(_dt.timezone.utc)).astimezone(_dt.timezone.utc)
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "env": {"id": env_id, "spec_hash": spec_hash(env_id), "protocol": protocol.to_dict()},
        "dataset": data,
        "agent": {"name": agent, "config": config, "config_hash": config_hash(config)},
        "model": _model_block(model, tokenizer_hash),
        "seeds": seed_blocks,
        "aggregate": aggregate_scores(
            [s["score"] for s in seed_blocks],
            metric=protocol.metric,
            higher_is_better=protocol.higher_is_better,
            primary=protocol.aggregate,
        ),
        "code": code_version(),
        "libraries": library_versions(),
        "hardware": hardware_info(),
        "wall_time_s": float(wall_time_s),
        "date": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if extra:
        document["extra"] = json.loads(json.dumps(dict(extra), default=json_default))
    problems = schema_problems(document)
    if problems:
        raise SubmissionError(problems)
    return document  # type: ignore[return-value]


def write_submission(document: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a submission as indented UTF-8 JSON, atomically (a reader never sees half a file).

    Args:
        document: The submission (from :func:`build_submission`).
        path: Destination file; its directory is created if needed.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=2, ensure_ascii=False, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_submission(path: str | os.PathLike[str]) -> bytes:
    """The raw bytes of a submission file (validate them with :func:`leaderboard.validate_submission`)."""
    return Path(path).read_bytes()
