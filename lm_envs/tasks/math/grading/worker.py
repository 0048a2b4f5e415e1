"""The symbolic worker pool: sympy subprocesses, killed on timeout (the parent side)."""

from __future__ import annotations

import atexit
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
    """Workers, one lent per symbolic call (threads never share one), at most ``MAX_WORKERS``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._slots = threading.BoundedSemaphore(MAX_WORKERS)

    def acquire(self) -> _Worker:
        """Lend a worker, starting one if none is idle; the caller must :meth:`release` it."""
        if not self._slots.acquire(timeout=WORKER_START_TIMEOUT):
            raise _Unavailable(f"all {MAX_WORKERS} symbolic workers stayed busy for {WORKER_START_TIMEOUT:g} s")
        try:
            return self._take()
        except BaseException:
            self._slots.release()
            raise

    def _take(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                worker.kill()
        try:
            worker = _Worker()
        except OSError as exc:
            raise _Unavailable(f"cannot start the symbolic worker: {exc}") from None
        try:
            worker.wait_ready(WORKER_START_TIMEOUT)
        except BaseException:
            worker.kill()
            raise
        _STATS["worker_starts"] += 1
        return worker

    def release(self, worker: _Worker, *, kill: bool = False) -> None:
        """Take back a lent worker (killed when ``kill`` or when enough are idle)."""
        try:
            with self._lock:
                if not kill and len(self._idle) < _MAX_IDLE_WORKERS and worker.alive():
                    self._idle.append(worker)
                    return
            worker.kill()
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()

    def forget(self) -> None:
        """After ``fork``: the workers belong to the parent process; start afresh."""
        self._lock = threading.Lock()
        self._idle = []
        self._slots = threading.BoundedSemaphore(MAX_WORKERS)


_POOL = _WorkerPool()
atexit.register(_POOL.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOL.forget)


def close_workers() -> None:
    """Stop the idle symbolic worker processes; the next symbolic comparison starts a new one.

    They are also stopped at interpreter exit, and exit by themselves when their parent dies.
    """
    _POOL.close()


def _run_symbolic(payload: dict[str, Any], timeout: float) -> list[Any]:
    """Send one batch of jobs to a worker; kill it if it has not answered within ``timeout``."""
    _STATS["symbolic_calls"] += 1
    try:
        worker = _POOL.acquire()
    except _Timeout:
        raise _Unavailable(f"the symbolic worker did not start within {WORKER_START_TIMEOUT:g} s") from None
    try:
        answers = worker.request(payload, timeout)
    except _Timeout:
        _STATS["timeouts"] += 1
        _POOL.release(worker, kill=True)
        raise
    except BaseException:
        _POOL.release(worker, kill=True)
        raise
    _POOL.release(worker)
    return answers
