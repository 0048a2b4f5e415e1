"""Checkpoints written atomically: a run killed mid-save never leaves a corrupt latest checkpoint.

Layout under ``<run>/checkpoints/``::

    step-000040/model.safetensors   policy weights (value head included)
    step-000040/optimizer.pt        optimizer state
    step-000040/state.json          phase, iteration, RNG states, KL controller, baseline, curriculum
    latest                          name of the newest complete checkpoint (replaced atomically)

A checkpoint directory is written as ``step-N.tmp`` and renamed when complete; ``latest`` is
rewritten with ``os.replace`` only after that, so readers see either the old or the new
checkpoint, never a partial one. Leftover ``*.tmp`` directories are removed on the next save.
"""

from __future__ import annotations

import json
import os
import random
import shutil
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
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    state: dict[str, Any],
    keep: int = 3,
) -> Path:
    """Write checkpoint ``step`` atomically and point ``latest`` at it; keep the newest ``keep``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob("*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    final = root / f"step-{step:06d}"
    tmp = root / f"step-{step:06d}.tmp"
    tmp.mkdir()
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(untie(weights), tmp / "model.safetensors")
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({**state, "step": step, "rng": rng_state()}))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    pointer = root / "latest.tmp"
    pointer.write_text(final.name)
    os.replace(pointer, root / "latest")
    _fsync_dir(root)
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def untie(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Safetensors refuses tensors that share memory (tied embeddings): store separate copies."""
    seen: dict[int, str] = {}
    out = {}
    for k, v in weights.items():
        ptr = v.data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.setdefault(ptr, k)
    return out


def latest_checkpoint(root: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint, or ``None``."""
    root = Path(root)
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    return path if (path / "state.json").is_file() and (path / "model.safetensors").is_file() else None


def load_checkpoint(
    path: str | os.PathLike[str], model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Any]:
    """Load weights (and optimizer state) into place, restore RNG states; return the saved state."""
    path = Path(path)
    missing, unexpected = model.load_state_dict(load_file(path / "model.safetensors"), strict=False)
    if unexpected or [k for k in missing if not k.endswith("lm_head.weight")]:
        raise ValueError(
            f"checkpoint {path} does not match the model (missing {missing[:3]}, unexpected {unexpected[:3]}); "
            "resume with the same model and agent settings, or start a new run directory."
        )
    if optimizer is not None and (path / "optimizer.pt").is_file():
        saved = torch.load(
            path / "optimizer.pt", weights_only=True, map_location="cpu"
        )  # the optimizer casts to its params
        try:
            optimizer.load_state_dict(saved)
        except ValueError as err:  # e.g. agent.value_lr set on one side only: one Adam group vs two
            raise ValueError(
                f"checkpoint {path}'s optimizer state does not match this run's optimizer ({err}); resume with "
                "the same agent settings (agent.value_lr included), or start a new run directory."
            ) from err
    state = json.loads((path / "state.json").read_text())
    set_rng_state(state["rng"])
    return state
