"""Canonical JSON and the sha256 digests a submission carries (config, episodes, generic data).

Canonical JSON is ``json.dumps`` with sorted keys, no whitespace and UTF-8 text, after turning
tuples into lists and numpy scalars and arrays into plain numbers and lists, so the same data gives
the same bytes (and digest) in every process.

Example:
    >>> canonical_json({"b": (1, 2), "a": "é"})
    '{"a":"é","b":[1,2]}'
    >>> sha256_json({"a": 1}) == sha256_json({"a": 1.0})
    False
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def json_default(obj: Any) -> Any:
    """``json.dumps`` default hook: numpy values become Python numbers and lists, sets sorted lists.

    Raises:
        TypeError: For any other object.
    """
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    raise TypeError(
        f"{type(obj).__qualname__} is not JSON data; convert it to str, numbers, bools, None, lists or dicts first."
    )


def describe_object(obj: Any) -> Any:
    """``json.dumps`` default hook for specs: plain data as above, anything else by class name and repr.

    Memory addresses (``" at 0x7f..."``) are removed from reprs, so the description is the same in
    every process.

    Example:
        >>> describe_object(object())
        {'__class__': 'builtins.object', 'repr': '<object object>'}
    """
    try:
        return json_default(obj)
    except TypeError:
        cls = type(obj)
        return {"__class__": f"{cls.__module__}.{cls.__qualname__}", "repr": _ADDRESS.sub("", repr(obj))}


def canonical_json(obj: Any, *, describe: bool = False) -> str:
    """``obj`` as canonical JSON text: sorted keys, compact separators, non-ASCII kept as UTF-8.

    Args:
        obj: JSON data (dicts with str keys, lists/tuples, str, numbers, bools, None, numpy values).
        describe: Represent other objects by class name and repr (see :func:`describe_object`)
            instead of raising.

    Returns:
        The JSON text.

    Raises:
        TypeError: If ``obj`` holds a value that is not JSON data and ``describe`` is false.
    """
    return json.dumps(
        obj,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=describe_object if describe else json_default,
    )


def sha256_text(text: str) -> str:
    """Lowercase hex sha256 of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_json(obj: Any, *, describe: bool = False) -> str:
    """Lowercase hex sha256 of :func:`canonical_json` of ``obj`` (e.g. an agent config's hash).

    Example:
        >>> sha256_json({"lr": 1e-4, "seed": 0}) == sha256_json({"seed": 0, "lr": 0.0001})
        True
    """
    return sha256_text(canonical_json(obj, describe=describe))


def config_hash(config: Mapping[str, Any]) -> str:
    """The hash recorded as ``agent.config_hash``: sha256 of the config's canonical JSON.

    Args:
        config: The resolved agent config as plain data (e.g. ``OmegaConf.to_container(cfg, resolve=True)``).
    """
    return sha256_json(dict(config))


def episodes_hash(records: Iterable[Mapping[str, Any]]) -> str:
    """Hash of one seed's per-episode results: sha256 over canonical JSON lines, in episode order.

    Each record is one episode (for example ``{"problem_id": ..., "completion": ..., "return": ...,
    "is_success": ...}``); each becomes one line of canonical JSON ending in ``"\\n"``. Two evaluations
    that produced the same episodes give the same hash, which is how the leaderboard spots
    duplicate submissions and how a reader checks a published per-episode file.

    Args:
        records: The seed's per-episode records as JSON data, in the order the episodes were run.

    Returns:
        Lowercase hex sha256.

    Raises:
        TypeError: If a record holds a value that is not JSON data.

    Example:
        >>> episodes_hash([{"problem_id": "test/0", "return": 1.0}])[:12]
        'c8d0c7198566'
    """
    h = hashlib.sha256()
    for record in records:
        h.update(canonical_json(dict(record)).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()
