"""Verifying entries: re-run the env's protocol on a submission's published checkpoints.

A submission may name, per seed, the checkpoint that produced its score (``seeds[i].checkpoint``:
a path or URL and the sha256 of the file or directory). :func:`checkpoint_sha256` is that digest.

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
from pathlib import Path

__all__ = ["checkpoint_sha256"]

_CHUNK = 1 << 20


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
