"""Verifying entries: re-run the env's protocol on a submission's published checkpoints.

A submission may name, per seed, the checkpoint that produced its score (``seeds[i].checkpoint``:
``uri``, a local path or a ``file://``/``http(s)://`` URL, and ``sha256``, see :func:`checkpoint_sha256`).
A checkpoint is a directory (or a ``.tar``/``.tar.gz``/``.tgz``/``.zip`` archive of one) holding a
``transformers`` causal LM (``save_pretrained``) and its tokenizer (:func:`lm_envs.core.tokenizer.save_codec`
or ``tokenizer.save_pretrained``): :func:`write_checkpoint` writes one.

:func:`verify_entry` fetches each seed's checkpoint, checks its digest, evaluates it under the env's
protocol with the same evaluation code the agents use (:func:`agents.evaluate.evaluate`: greedy, the
protocol's split and episode count, the seed), and compares the reproduced score with the submitted
one. The entry is marked ``"verified"`` when every seed has a checkpoint and reproduces within the
protocol's ``tolerance``, ``"mismatch"`` otherwise; the per-seed results go to the entry's page and
the audit log. ``lm-envs leaderboard verify ENTRY`` runs it.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "model.safetensors").write_bytes(b"weights")
    >>> checkpoint_sha256(d) == checkpoint_sha256(d)
    True
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leaderboard.store import Entry, LeaderboardStore

__all__ = ["checkpoint_sha256", "evaluate_checkpoint", "fetch_checkpoint", "verify_entry", "write_checkpoint"]

_CHUNK = 1 << 20
_ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")
#: Largest checkpoint download (bytes).
MAX_DOWNLOAD_BYTES = 20 * 1024**3


class VerificationError(ValueError):
    """An entry cannot be verified at all (no checkpoints, unknown env); nothing is recorded."""


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a checkpoint: of the file itself, or for a directory of its files' relative paths and digests.

    A directory's digest is sha256 over lines ``<relative posix path>\\t<file sha256>\\n`` in sorted path
    order (hidden files included, directories themselves not), so the same files give the same digest
    wherever they are unpacked.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
    """
    path = Path(path)
    if path.is_file():
        return _file_sha256(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass the checkpoint file or directory.")
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{file.relative_to(path).as_posix()}\t{_file_sha256(file)}\n".encode())
    return h.hexdigest()


def write_checkpoint(model: Any, codec: Any, directory: str | os.PathLike[str]) -> dict[str, str]:
    """Save a model and its tokenizer as a publishable checkpoint directory.

    Args:
        model: A ``transformers`` causal LM (e.g. a trained policy's language model).
        codec: Its :class:`lm_envs.TextCodec`.
        directory: Where to write (created).

    Returns:
        The ``checkpoint`` block of a seed: ``{"uri": <absolute path>, "sha256": ...}``; replace
        ``uri`` by the URL where you publish the directory (or an archive of it, then with the archive's sha256).
    """
    from lm_envs.core.tokenizer import save_codec

    directory = Path(directory).expanduser().resolve()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    save_codec(codec, directory)
    return {"uri": str(directory), "sha256": checkpoint_sha256(directory)}


def _is_archive(name: str) -> bool:
    return name.lower().endswith(_ARCHIVES)


def _unpack(archive: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                target = (into / member).resolve()
                if not target.is_relative_to(into.resolve()):
                    raise ValueError(f"archive {archive} holds a path outside itself ({member!r}); refusing it.")
            z.extractall(into)
    else:
        with tarfile.open(archive) as t:
            t.extractall(into, filter="data")
    entries = [p for p in into.iterdir()]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else into


def _download(url: str, to: Path, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "lm-envs-leaderboard-verify"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(to, "wb") as out:  # noqa: S310
        total = 0
        while chunk := response.read(_CHUNK):
            total += len(chunk)
            if total > MAX_DOWNLOAD_BYTES:
                raise ValueError(f"{url} is larger than {MAX_DOWNLOAD_BYTES:,} bytes; refusing to download it.")
            out.write(chunk)


def fetch_checkpoint(checkpoint: dict[str, str], workdir: str | os.PathLike[str], *, timeout: float = 60.0) -> Path:
    """Get a seed's checkpoint as a local directory, after checking its sha256.

    Args:
        checkpoint: ``{"uri", "sha256"}``: a local directory or archive, a ``file://`` URL, or an
            ``http(s)://`` URL of an archive.
        workdir: Where downloads and unpacked archives go.
        timeout: Seconds to wait for a server.

    Returns:
        The checkpoint directory.

    Raises:
        ValueError: If the digest differs, the URL scheme is not supported, or the file is missing.
    """
    uri = checkpoint["uri"]
    parsed = urllib.parse.urlparse(uri)
    workdir = Path(workdir)
    if parsed.scheme in ("http", "https"):
        name = Path(parsed.path).name or "checkpoint"
        if not _is_archive(name):
            raise ValueError(f"{uri}: a checkpoint URL must name an archive ({', '.join(_ARCHIVES)}).")
        local = workdir / name
        try:
            _download(uri, local, timeout)
        except OSError as e:
            raise ValueError(f"cannot download {uri}: {e}") from None
    elif parsed.scheme == "file":
        local = Path(urllib.request.url2pathname(parsed.path))
    elif parsed.scheme == "":
        local = Path(uri).expanduser()
    else:
        raise ValueError(f"{uri}: checkpoints are local paths or file://, http:// or https:// URLs.")
    if not local.exists():
        raise ValueError(f"checkpoint {uri} does not exist here.")
    digest = checkpoint_sha256(local)
    if digest != checkpoint["sha256"]:
        raise ValueError(f"checkpoint {uri} has sha256 {digest}, not the submitted {checkpoint['sha256']}.")
    if local.is_file():
        if not _is_archive(local.name):
            raise ValueError(f"checkpoint {uri} is a file but not an archive ({', '.join(_ARCHIVES)}).")
        return _unpack(local, Path(tempfile.mkdtemp(dir=workdir, prefix="unpacked-")))
    return local


def evaluate_checkpoint(
    directory: str | os.PathLike[str], env_id: str, seed: int, *, device: str = "cpu", batch_size: int = 128
) -> dict[str, Any]:
    """Evaluate a checkpoint directory under ``env_id``'s protocol (greedy), as the agents' evaluation does.

    Returns:
        :func:`agents.evaluate.evaluate`'s metrics (without the per-episode records), the protocol's
        metric among them, and ``episodes_hash``.
    """
    import torch

    import lm_envs
    from agents.evaluate import EvalConfig, evaluate
    from agents.policy.models import load_model
    from lm_envs.core.tokenizer import load_codec

    protocol = lm_envs.get_protocol(env_id)
    codec = load_codec(str(directory))
    model = load_model(str(directory), codec).to(torch.device(device))
    cfg = EvalConfig(num_episodes=protocol.num_episodes, split=protocol.split, batch_size=batch_size)
    metrics = evaluate(model, env_id, cfg, seed=seed, env_kwargs={"tokenizer": str(directory)})
    metrics.pop("records", None)
    return metrics


def verify_entry(
    store: LeaderboardStore,
    entry_id: int,
    *,
    device: str = "cpu",
    workdir: str | os.PathLike[str] | None = None,
    evaluator: Callable[..., dict[str, Any]] | None = None,
    actor: str = "verify",
) -> tuple[Entry, dict[str, Any]]:
    """Re-run an entry's protocol on its published checkpoints and record whether the scores reproduce.

    Args:
        store: Where the entry is.
        entry_id: The entry (hidden ones included).
        device: Torch device to evaluate on.
        workdir: Where checkpoints are downloaded and unpacked (default: a temporary directory, removed after).
        evaluator: ``(directory, env_id, seed, device=...) -> metrics``; default :func:`evaluate_checkpoint`.
        actor: Recorded in the audit log.

    Returns:
        The updated entry and the verification record: ``status``, ``tolerance``, ``metric`` and per
        seed ``seed``, ``submitted``, ``reproduced``, ``difference``, ``episodes_hash_match`` and ``result``.

    Raises:
        KeyError: If there is no such entry.
        VerificationError: If the entry names no checkpoint for some seed, or its env is not registered here.
    """
    from leaderboard.envs import UnknownEnvError, check_env_id

    entry = store.get(entry_id, include_hidden=True)
    document = entry.document or {}
    seeds = document.get("seeds", [])
    missing = [s["seed"] for s in seeds if not s.get("checkpoint")]
    if missing or not seeds:
        raise VerificationError(
            f"entry {entry.id} names no checkpoint for seed(s) {missing}; it stays self-reported. Submit the "
            "evaluation again with seeds[i].checkpoint (leaderboard.build_submission(..., seeds=[{..., "
            "'checkpoint': path}])) to have it verified."
        )
    try:
        protocol = check_env_id(entry.env_id)
    except UnknownEnvError as e:
        raise VerificationError(f"entry {entry.id}: {e}") from None
    evaluator = evaluator or evaluate_checkpoint
    own_dir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="lm-envs-verify-")) if own_dir else Path(workdir)  # type: ignore[arg-type]
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for seed in seeds:
            row: dict[str, Any] = {
                "seed": seed["seed"],
                "submitted": seed["score"],
                "reproduced": None,
                "difference": None,
                "episodes_hash_match": None,
            }
            try:
                directory = fetch_checkpoint(seed["checkpoint"], work)
                metrics = evaluator(directory, entry.env_id, int(seed["seed"]), device=device)
            except (ValueError, OSError) as e:
                row["result"] = f"not reproduced: {e}"
                results.append(row)
                continue
            reproduced = float(metrics[protocol.metric])
            row["reproduced"] = reproduced
            row["difference"] = abs(reproduced - float(seed["score"]))
            row["episodes_hash_match"] = metrics.get("episodes_hash") == seed["episodes_hash"]
            ok = row["difference"] <= protocol.tolerance
            row["result"] = "reproduced" if ok else f"differs by more than the tolerance {protocol.tolerance:g}"
            results.append(row)
    finally:
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)
    status = "verified" if all(r["result"] == "reproduced" for r in results) else "mismatch"
    record = {"status": status, "metric": protocol.metric, "tolerance": protocol.tolerance, "seeds": results}
    return store.set_verification(entry.id, status, record, actor=actor), record
