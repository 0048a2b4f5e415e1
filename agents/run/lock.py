"""One run per run directory: a second run on a directory in use refuses, naming the holder.

Two runs writing one directory delete each other's temporary checkpoints and leave ``config.yaml``,
``eval.json`` and ``metrics.jsonl`` from different settings. The run holds an exclusive ``flock`` on
``<run>/.lock`` (the file records who holds it); the kernel releases it when the process ends, however it
ends (``kill -9`` included), so a lock is never stale.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
    """The run directory is in use by another run."""


def check_free(run_dir: str | os.PathLike[str]) -> None:
    """Refuse early when another run holds ``run_dir`` (before Hydra writes ``.hydra/`` and ``train.log`` there).

    Raises:
        RunLockedError: As :func:`hold_run_dir` does.
    """
    if (Path(run_dir) / LOCK_NAME).is_file():
        with hold_run_dir(run_dir):  # taken and released at once: only a held lock raises
            pass


@contextmanager
def hold_run_dir(run_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold ``run_dir`` for this process while the block runs.

    Raises:
        RunLockedError: When another process holds it, naming that process and the fix.
    """
    path = Path(run_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # no flock on this platform (Windows): run unlocked
        yield path
        return
    with open(path, "a+") as fh:  # closing it releases the lock
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise RunLockedError(
                f"{run_dir} is in use by another run ({_describe(fh.read())}); wait for it to finish, or give this "
                "run its own directory (hydra.run.dir=... or output_dir=...)."
            ) from None
        fh.seek(0)
        fh.truncate()
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        fh.write(json.dumps(holder))
        fh.flush()
        yield path


def _describe(text: str) -> str:
    try:
        h = json.loads(text)
        return f"pid {h['pid']} on {h['host']}, started {h['started']}: {h['command']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"
