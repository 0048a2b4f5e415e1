"""The symbolic worker pool: sympy subprocesses, killed on timeout (the parent side)."""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import sys
import threading
import time
from typing import Any

from .common import _MAX_IDLE_WORKERS, MAX_WORKERS, WORKER_START_TIMEOUT


class _Timeout(Exception):
    """The worker did not answer within the time budget (it has been killed)."""


class _Unavailable(Exception):
    """No worker could be started, or it died."""


_STATS = {"symbolic_calls": 0, "worker_starts": 0, "timeouts": 0}
"""Counters for tests and benchmarks (not thread-exact)."""

_BOOT = (  # the first line keeps the working directory off sys.path (what -P does on 3.11+)
    "import sys\n"
    "sys.path[:] = [p for p in sys.path if p not in ('', '.')]\n"
    "import importlib, types\n"
    # The grading package under a private name, without running lm_envs/__init__ or the
    # package's own __init__: the worker needs only sympy_side and common.
    "pkg = types.ModuleType('_lm_envs_grading')\n"
    "pkg.__path__ = [sys.argv[1]]\n"
    "sys.modules['_lm_envs_grading'] = pkg\n"
    "importlib.import_module('_lm_envs_grading.sympy_side')._worker_main()\n"
)
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class _Worker:
    """A sympy subprocess: one JSON request line in, one JSON response line out."""

    def __init__(self) -> None:
        import queue
        import subprocess

        if not sys.executable:
            raise _Unavailable("no Python executable to start the worker with")
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._ids = itertools.count()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, _PACKAGE_DIR],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        threading.Thread(target=self._read, name="lm-envs-grading-reader", daemon=True).start()

    def _read(self) -> None:
        stdout = self.proc.stdout
        try:
            if stdout is not None:
                for line in iter(stdout.readline, b""):
                    self._lines.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self._lines.put(None)

    def _next_line(self, deadline: float) -> bytes:
        import queue

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Timeout
        try:
            line = self._lines.get(timeout=remaining)
        except queue.Empty:
            raise _Timeout from None
        if line is None:
            raise _Unavailable("the symbolic worker exited")
        return line

    def wait_ready(self, timeout: float) -> None:
        try:
            line = self._next_line(time.monotonic() + timeout)
        except _Unavailable:
            raise _Unavailable("the symbolic worker exited while starting (is sympy installed?)") from None
        if line.strip() != b"READY":
            raise _Unavailable("the symbolic worker did not start")

    def request(self, payload: dict[str, Any], timeout: float) -> list[Any]:
        request_id = next(self._ids)
        data = json.dumps({"id": request_id, **payload}).encode() + b"\n"
        deadline = time.monotonic() + timeout
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (OSError, ValueError) as exc:
            raise _Unavailable(f"the symbolic worker is gone ({exc})") from None
        while True:
            message = json.loads(self._next_line(deadline))
            if message.get("id") == request_id:
                return list(message.get("results", []))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=10)
        except Exception:  # already gone
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except Exception:
                pass


class _WorkerPool:
    """Workers lent one per symbolic call (threads never share one), at most ``MAX_WORKERS``.

    A spare worker is kept started and idle: after a worker is lent out or killed, a replacement
    starts in a background thread, so the next call does not wait for sympy's import. A caller
    waits for a worker only until its deadline, except for the very first worker of the process
    (the cold start, like an import, up to ``WORKER_START_TIMEOUT``; :func:`start_workers` pays
    it ahead of time).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._starting = 0
        self._busy = 0
        self._warm = False  # a worker has started in this process
        self._error: str | None = None  # why the last start failed

    def acquire(self, deadline: float) -> _Worker:
        """Lend a ready worker, waiting until ``deadline`` (``time.monotonic()``) at most."""
        with self._cond:
            cold_limit = time.monotonic() + WORKER_START_TIMEOUT
            while True:
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        self._busy += 1
                        self._ensure_spare()
                        return worker
                    _kill_later(worker)
                if self._starting == 0 and self._error is not None:
                    error, self._error = self._error, None  # the next call tries again
                    raise _Unavailable(error)
                self._ensure_spare()
                limit = deadline if self._warm else max(deadline, cold_limit)
                remaining = limit - time.monotonic()
                if remaining <= 0:
                    raise _Timeout("no symbolic worker was free" if self._warm else "the symbolic worker did not start")
                self._cond.wait(remaining)

    def _ensure_spare(self) -> None:
        """Start a worker in the background unless one is idle or starting (call with the lock)."""
        total = len(self._idle) + self._starting + self._busy
        if len(self._idle) + self._starting < _SPARES and total < MAX_WORKERS:
            self._starting += 1
            threading.Thread(target=self._start_one, name="lm-envs-grading-start", daemon=True).start()

    def _start_one(self) -> None:
        worker: _Worker | None = None
        error = None
        try:
            worker = _Worker()
            worker.wait_ready(WORKER_START_TIMEOUT)
        except (_Unavailable, _Timeout, OSError) as exc:
            error = str(exc) or f"the symbolic worker did not start within {WORKER_START_TIMEOUT:g} s"
            if worker is not None:
                worker.kill()
            worker = None
        with self._cond:
            self._starting -= 1
            if worker is not None:
                self._idle.append(worker)
                self._warm = True
                _STATS["worker_starts"] += 1
            else:
                self._error = f"cannot start the symbolic worker: {error}"
            self._cond.notify_all()

    def release(self, worker: _Worker, *, kill: bool = False) -> None:
        """Take back a lent worker (killed, in the background, when ``kill`` or when enough are idle)."""
        with self._cond:
            self._busy -= 1
            if not kill and len(self._idle) < _MAX_IDLE_WORKERS and worker.alive():
                self._idle.append(worker)
                worker = None  # type: ignore[assignment]
            self._ensure_spare()
            self._cond.notify_all()
        if worker is not None:
            _kill_later(worker)

    def warm(self, timeout: float) -> bool:
        """Start the spare worker if needed and wait up to ``timeout`` s until one is ready."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._ensure_spare()
            while not self._idle:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._starting == 0 and self._error is not None):
                    return False
                self._cond.wait(remaining)
            return True

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()

    def forget(self) -> None:
        """After ``fork``: the workers belong to the parent process; start afresh."""
        self.__init__()  # type: ignore[misc]


def _kill_later(worker: _Worker) -> None:
    """Kill a worker without making the caller wait for the process to be reaped."""
    with contextlib.suppress(OSError):
        worker.proc.kill()
    threading.Thread(target=worker.kill, name="lm-envs-grading-reap", daemon=True).start()


_SPARES = 1
_KILL_MARGIN = 0.02
"""Seconds of the caller's budget kept for killing an overrunning worker and returning."""
_POOL = _WorkerPool()
atexit.register(_POOL.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOL.forget)


def close_workers() -> None:
    """Stop the idle symbolic worker processes; the next symbolic comparison starts a new one.

    They are also stopped at interpreter exit, and exit by themselves when their parent dies.
    """
    _POOL.close()


def start_workers(timeout: float = WORKER_START_TIMEOUT) -> bool:
    """Start the symbolic worker now (importing sympy takes about a second) instead of on first use.

    Args:
        timeout: Seconds to wait for it to be ready.

    Returns:
        Whether a worker is ready.
    """
    return _POOL.warm(timeout)


def _run_symbolic(payload: dict[str, Any], timeout: float) -> list[Any]:
    """Send one batch of jobs to a worker; everything (waiting for a worker included) gets ``timeout`` s.

    A worker that has not answered in time is killed; a spare takes its place.
    """
    _STATS["symbolic_calls"] += 1
    # The request ends a little before the caller's deadline, so that killing the worker and
    # unwinding fit inside the budget too.
    deadline = time.monotonic() + timeout - min(_KILL_MARGIN, 0.05 * timeout)
    worker = _POOL.acquire(deadline)
    try:
        answers = worker.request(payload, max(deadline - time.monotonic(), 0.0))
    except _Timeout:
        _STATS["timeouts"] += 1
        _POOL.release(worker, kill=True)
        raise _Timeout(f"symbolic comparison took more than {timeout:g} s") from None
    except BaseException:
        _POOL.release(worker, kill=True)
        raise
    _POOL.release(worker)
    return answers
