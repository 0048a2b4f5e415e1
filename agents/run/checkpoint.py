"""Checkpoints written atomically: a run killed mid-save never leaves a corrupt latest checkpoint.

Layout under ``<run>/checkpoints/``::

    step-000040/model.safetensors   policy weights (value head included); under LoRA only the trainable ones,
                                    over the frozen weights of reference.safetensors (state.json says so)
    step-000040/optimizer.pt        optimizer state
    step-000040/state.json          phase, iteration, RNG states, KL controller, baseline, curriculum,
                                    the run's settings and how many metrics.jsonl records it had written
    step-000040/reference.safetensors  the KL / DPO reference as of this step, only when the learner moves
                                    it (self-rewarding's agent.ref_update_every); else it is the RL start's
    sft-000200/                     SFT part-way (its AdamW and schedule state); removed once SFT ends
    latest                          name of the newest complete checkpoint (replaced atomically)

A checkpoint directory is written as ``step-N.tmp`` and renamed when complete; ``latest`` is
rewritten with ``os.replace`` only after that, so readers see either the old or the new
checkpoint, never a partial one. Leftover ``*.tmp`` directories are removed on the next save.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch global RNG states, JSON-serialisable."""
    np_state = np.random.get_state()
    return {
        "python": repr(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state().tolist(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` output."""
    import ast

    random.setstate(ast.literal_eval(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def save_checkpoint(
    root: str | os.PathLike[str],
    step: int,
    model: torch.nn.Module | dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | dict[str, Any] | None,
    state: dict[str, Any],
    keep: int = 3,
    prefix: str = "step",
    frozen: set[str] | None = None,
    reference: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write checkpoint ``<prefix>-<step>`` atomically and point ``latest`` at it; keep the newest ``keep``.

    ``model`` and ``optimizer`` may be given as their state dicts (what :meth:`Dist.full_state
    <agents.run.distributed.Dist.full_state>` gathered under FSDP). ``prefix="sft"`` names the part-way
    checkpoints of the SFT stage, which any RL checkpoint supersedes.

    ``frozen``: names of weights that do not change from ``root/reference.safetensors`` (LoRA's base
    model, keys there without the policy's ``lm.`` prefix): they are left out, so a LoRA checkpoint of a
    7B model holds megabytes of adapters, not the whole model; :func:`read_checkpoint` puts them back.

    ``reference``: the reference model's weights when the learner moves it during RL (written as
    ``reference.safetensors`` in the checkpoint; :func:`read_checkpoint` returns them as ``"reference"``).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob("*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    final = root / f"{prefix}-{step:06d}"
    tmp = root / f"{prefix}-{step:06d}.tmp"
    tmp.mkdir()
    try:
        source = model.state_dict() if isinstance(model, torch.nn.Module) else model
        weights = {k: v.detach().contiguous().cpu() for k, v in source.items() if k not in (frozen or ())}
        if frozen:
            state = {**state, "weights_over": {"file": REFERENCE, "prefix": "lm."}}
        save_file(untie(weights), tmp / "model.safetensors")
        if reference is not None:
            save_file(untie({k: v.detach().contiguous().cpu() for k, v in reference.items()}), tmp / REFERENCE)
        if optimizer is not None:
            torch.save(optimizer if isinstance(optimizer, dict) else optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "step": step, "rng": rng_state()}))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    except (OSError, RuntimeError) as err:  # a full disk: torch and safetensors name no file; the older ones stay
        shutil.rmtree(tmp, ignore_errors=True)
        code = err.errno if isinstance(err, OSError) and err.errno else errno.ENOSPC
        raise OSError(code, getattr(err, "strerror", None) or str(err), str(tmp)) from err
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    pointer = root / "latest.tmp"
    pointer.write_text(final.name)
    os.replace(pointer, root / "latest")
    _fsync_dir(root)
    done = sorted(p for p in root.glob(f"{prefix}-*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


#: The weights as RL starts, beside the checkpoints: the KL reference, and the frozen base of LoRA checkpoints.
REFERENCE = "reference.safetensors"


def untie(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Safetensors refuses tensors that share memory (tied embeddings): store separate copies."""
    seen: dict[int, str] = {}
    out = {}
    for k, v in weights.items():
        ptr = v.data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.setdefault(ptr, k)
    return out


#: Checkpoint directory names, newest kind first: ``step-N`` (after SFT and RL iteration N), ``sft-N`` (SFT part-way).
CHECKPOINT_PREFIXES = ("step", "sft")


class CheckpointError(ValueError):
    """No checkpoint of a run directory can be resumed from."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped for an older intact one."""


def latest_checkpoint(root: str | os.PathLike[str]) -> Path | None:
    """The checkpoint ``latest`` names when it is complete, else the newest complete one, else ``None``."""
    for path in candidates(root):
        if (path / "state.json").is_file() and (path / "model.safetensors").is_file():
            return path
    return None


def candidates(root: str | os.PathLike[str]) -> list[Path]:
    """The checkpoints to try when resuming, best first: the one ``latest`` names, then the others, newest first."""
    root = Path(root)
    steps = [
        path
        for prefix in CHECKPOINT_PREFIXES  # RL checkpoints first: any of them is newer than any part-way SFT one
        for path in sorted(p for p in root.glob(f"{prefix}-*") if p.is_dir() and not p.name.endswith(".tmp"))[::-1]
    ]
    pointer = root / "latest"
    named = [root / pointer.read_text().strip()] if pointer.is_file() else []
    return list(dict.fromkeys([*named, *steps]))


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read every file of a checkpoint, applying nothing: ``{"state", "weights", "optimizer"}``.

    Plus ``"reference"`` when the checkpoint holds a moved reference (see :func:`save_checkpoint`).

    Raises:
        CheckpointError: Naming the file that is missing or damaged (truncated, not JSON, not a torch file).
    """
    path = Path(path)
    name = "state.json"
    try:
        state = json.loads((path / name).read_text())
        if not isinstance(state, dict) or "rng" not in state:
            raise ValueError("no RNG state")
        name = "model.safetensors"
        weights = load_file(path / name)
        over = state.get("weights_over")
        if over:  # a LoRA checkpoint: the frozen weights come from the RL start beside it
            name = f"../{over['file']} (the frozen weights this checkpoint holds only the changes to)"
            base = load_file(path.parent / over["file"])
            weights = {**{over["prefix"] + k: v for k, v in base.items()}, **weights}
        name = "optimizer.pt"
        optimizer = torch.load(path / name, weights_only=True, map_location="cpu") if (path / name).is_file() else None
        name = REFERENCE
        reference = load_file(path / name) if (path / name).is_file() else None  # a moved reference
    except Exception as err:  # damaged or missing: the caller falls back to an older checkpoint
        reason = "missing" if isinstance(err, FileNotFoundError) else f"damaged ({type(err).__name__}: {err})"
        raise CheckpointError(f"{path / name} is {' '.join(reason.split())[:200]}") from err
    out = {"state": state, "weights": weights, "optimizer": optimizer}
    return {**out, "reference": reference} if reference is not None else out


def find_resumable(root: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]] | None:
    """The newest intact checkpoint under ``root`` and its contents, or ``None`` when there is none at all.

    A damaged or missing checkpoint (the one ``latest`` names included) is skipped with a
    :class:`CheckpointWarning` saying which file and which checkpoint the run resumes from instead.

    Raises:
        CheckpointError: When checkpoints exist but none is intact (resuming would silently start over
            and overwrite them).
    """
    root = Path(root)
    problems = []
    for path in candidates(root):
        if not path.is_dir():
            problems.append(f"{path} (named by {root / 'latest'}) does not exist")
            continue
        try:
            contents = read_checkpoint(path)
        except CheckpointError as err:
            problems.append(str(err))
            continue
        if problems:
            warnings.warn(
                f"skipped damaged checkpoints ({'; '.join(problems)}); resuming from {path}, the newest intact one.",
                CheckpointWarning,
                stacklevel=2,
            )
        return path, contents
    if problems:
        raise CheckpointError(
            f"no intact checkpoint in {root} ({'; '.join(problems)}); nothing was overwritten. Move the run "
            "directory away, or set resume=false to start this directory over."
        )
    return None


def load_checkpoint(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    contents: dict[str, Any] | None = None,
    dist: Any = None,
) -> dict[str, Any]:
    """Load weights (and optimizer state) into place, restore RNG states; return the saved state.

    ``contents`` is :func:`read_checkpoint`'s output when already read; ``dist`` (an
    :class:`~agents.run.distributed.Dist`) loads them into a sharded model under FSDP. Every file is
    read before anything is applied, so a damaged checkpoint leaves the model and optimizer as they were.

    Raises:
        CheckpointError: When a file is missing or damaged.
        ValueError: When the checkpoint does not fit the model or optimizer (other settings).
    """
    path = Path(path)
    contents = read_checkpoint(path) if contents is None else contents
    if dist is not None:
        missing, unexpected = dist.load_full_state(model, contents["weights"])
    else:
        missing, unexpected = model.load_state_dict(contents["weights"], strict=False)
    if unexpected or [k for k in missing if not k.endswith("lm_head.weight")]:
        raise ValueError(
            f"checkpoint {path} does not match the model (missing {missing[:3]}, unexpected {unexpected[:3]}); "
            "resume with the same model and agent settings, or start a new run directory."
        )
    if optimizer is not None and contents["optimizer"] is not None:
        try:
            if dist is not None:
                dist.load_optimizer_state(model, optimizer, contents["optimizer"])
            else:
                optimizer.load_state_dict(contents["optimizer"])  # the optimizer casts to its params
        except ValueError as err:  # e.g. agent.value_lr set on one side only: one Adam group vs two
            raise ValueError(
                f"checkpoint {path}'s optimizer state does not match this run's optimizer ({err}); resume with "
                "the same agent settings (agent.value_lr included), or start a new run directory."
            ) from err
    state = contents["state"]
    set_rng_state(state["rng"])
    return state
