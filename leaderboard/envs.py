"""What the leaderboard knows about a registered env: its spec hash, protocol and evaluation data.

An env id is "known" when it is registered in this process (``import lm_envs`` registers the
built-ins; ``lm-envs leaderboard --import MODULE`` imports modules that register more) and declares
an evaluation protocol. Scores are tied to the registration through two digests:

* the **spec hash**, sha256 over canonical JSON of the spec's id, entry points and kwargs (objects
  that are not JSON data appear as class name and repr, without memory addresses);
* the **dataset hash**, sha256 over the ``(id, prompt, answer)`` of the problems the protocol
  evaluates on (the first ``num_episodes`` problems of its split), in order.

A changed env therefore no longer matches old submissions, and must bump its ``-vN``.

Example:
    >>> import lm_envs
    >>> len(spec_hash("LMEnv/TargetWord-v0"))
    64
    >>> dataset_identity("LMEnv/TargetWord-v0")["split"]
    'test'
"""

from __future__ import annotations

import difflib
import hashlib
import re
import threading
from typing import Any

import gymnasium as gym

import lm_envs
from leaderboard.hashing import canonical_json, sha256_json
from lm_envs.core.components import resolve_task
from lm_envs.core.protocol import EvalProtocol, get_protocol

_VERSION = re.compile(r"^(?P<name>.+)-v(?P<version>\d+)$")


class UnknownEnvError(LookupError):
    """The env id (or this version of it) is not registered with a protocol in this process."""


def leaderboard_env_ids() -> list[str]:
    """Registered lm-envs ids that declare an evaluation protocol, sorted."""
    ids = []
    for env_id in lm_envs.registered_ids():
        try:
            get_protocol(env_id)
        except KeyError:
            continue
        ids.append(env_id)
    return ids


def check_env_id(env_id: str) -> EvalProtocol:
    """The protocol of ``env_id``, or a clear error saying what is registered instead.

    Args:
        env_id: ``[namespace/]Name-vN``.

    Returns:
        The env's :class:`~lm_envs.EvalProtocol`.

    Raises:
        UnknownEnvError: If the id is not registered (listing the registered versions of the same
            name, or close matches), or declares no protocol.
    """
    known = leaderboard_env_ids()
    if env_id in known:
        return get_protocol(env_id)
    m = _VERSION.match(env_id)
    if m:
        versions = [k for k in known if (km := _VERSION.match(k)) and km["name"] == m["name"]]
        if versions:
            raise UnknownEnvError(
                f"env {env_id!r}: version v{m['version']} is not registered; registered versions of "
                f"{m['name']!r}: {', '.join(versions)}. Evaluate on a registered version."
            )
    if env_id in gym.registry:
        raise UnknownEnvError(
            f"env {env_id!r} is registered but not as an lm-envs env with an evaluation protocol; register it "
            "with lm_envs.register(..., protocol=EvalProtocol(...))."
        )
    close = difflib.get_close_matches(env_id, known, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownEnvError(
        f"env {env_id!r} is not registered in this process.{hint} Known ids: {', '.join(known) or 'none'}. "
        "Custom envs must be registered before submitting (lm-envs leaderboard --import MODULE)."
    )


def spec_hash(env_id: str) -> str:
    """sha256 over canonical JSON of the registration: id, entry points and kwargs.

    Raises:
        gymnasium.error.Error: If ``env_id`` is not registered.
    """
    spec = gym.spec(env_id)
    return sha256_json(
        {
            "id": spec.id,
            "entry_point": spec.entry_point,
            "vector_entry_point": spec.vector_entry_point,
            "kwargs": spec.kwargs,
        },
        describe=True,
    )


_dataset_cache: dict[str, tuple[Any, str, dict[str, Any]]] = {}
_dataset_lock = threading.Lock()


def dataset_identity(env_id: str) -> dict[str, Any]:
    """The evaluation data of ``env_id`` under its protocol: task name, split, size and content hash.

    The result is cached per registration (re-registering the id recomputes it).

    Args:
        env_id: A registered id with a protocol.

    Returns:
        ``{"name": task.name, "split": protocol.split, "num_problems": n, "hash": sha256}``.

    Raises:
        UnknownEnvError: If the id is not registered with a protocol.
        ValueError: If the task cannot be built or lacks the protocol's split.
    """
    protocol = check_env_id(env_id)
    spec = gym.spec(env_id)
    digest = spec_hash(env_id)
    with _dataset_lock:
        cached = _dataset_cache.get(env_id)
        if cached is not None and cached[0] is spec and cached[1] == digest:
            return dict(cached[2])
    task = resolve_task(spec.kwargs["task"], spec.kwargs.get("task_kwargs"))
    size = task.size(protocol.split) if protocol.split in task.splits else 0
    if size == 0:
        raise ValueError(
            f"env {env_id!r}: its task {task.name!r} has no problems in the protocol's split {protocol.split!r}."
        )
    n = size if protocol.num_episodes is None else min(protocol.num_episodes, size)
    h = hashlib.sha256()
    for problem in task.problems(protocol.split, n):
        h.update(canonical_json({"id": problem.id, "prompt": problem.prompt, "answer": problem.answer}).encode())
        h.update(b"\n")
    identity = {"name": task.name, "split": protocol.split, "num_problems": n, "hash": h.hexdigest()}
    with _dataset_lock:
        _dataset_cache[env_id] = (spec, digest, identity)
    return dict(identity)
