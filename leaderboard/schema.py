"""The submission document: its typed shape and the published JSON Schema.

A submission is one JSON object that records everything needed to trust and reproduce a score: the
env (id, spec hash, protocol), the dataset, the agent and its config, the model and tokenizer, the
per-seed scores (kept raw) with a hash of each seed's per-episode results and, optionally, the
published checkpoint that produced them (so anyone can re-run the protocol on it), the aggregates,
the code and library versions, the hardware, the wall time and the date.

:data:`SUBMISSION_SCHEMA` is the JSON Schema (draft 2020-12) that :func:`leaderboard.validate_submission`
checks first; the server publishes it at ``/api/v1/schema``, ``lm-envs leaderboard schema`` prints
it, and ``leaderboard/submission.schema.json`` holds a copy for other tools (a test keeps it in sync).
:data:`SCHEMA_VERSION` is bumped whenever a field is added, removed or changes meaning.

Version history:
    * 2: ``env.protocol`` records ``metric_range`` and ``tolerance``; a seed may name its
      ``checkpoint`` (``uri`` and ``sha256``); ``wall_time_s`` is at most 1e9. Version 1 documents are
      still accepted (:data:`SUBMISSION_SCHEMA_V1`), checked against the same ranges.
    * 1: initial release.

Example:
    >>> SUBMISSION_SCHEMA["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    True
"""

from __future__ import annotations

import copy
import json
from typing import Any, TypedDict

#: Version of the submission documents :func:`leaderboard.build_submission` writes.
SCHEMA_VERSION = 2
#: Versions validation accepts.
SUPPORTED_SCHEMA_VERSIONS = (1, 2)
#: Deepest nesting of arrays and objects accepted in a document (the root object is depth 1).
MAX_DEPTH = 32
#: Largest magnitude of an integer anywhere in a document (64-bit, as databases and floats hold them).
MAX_INT = 2**64
#: Largest accepted ``wall_time_s`` (about 31 years).
MAX_WALL_TIME_S = 1e9

#: Largest accepted submission, in bytes of UTF-8 JSON (enforced in validation and at the HTTP layer).
MAX_SUBMISSION_BYTES = 256 * 1024

#: Printable text without control characters (names end up in tables, terminals and databases).
_NAME_PATTERN = "^[^\\u0000-\\u001f\\u007f]*$"
_SHA256_PATTERN = "^[0-9a-f]{64}$"


class ProtocolDict(TypedDict):
    """An :class:`lm_envs.EvalProtocol` as a dict (``EvalProtocol.to_dict()``)."""

    split: str
    num_episodes: int | None
    min_seeds: int
    metric: str
    higher_is_better: bool
    aggregate: str
    metric_range: list[float | None] | None
    tolerance: float


class EnvDict(TypedDict):
    """The env the score was measured on."""

    id: str
    spec_hash: str
    protocol: ProtocolDict


class DatasetDict(TypedDict, total=False):
    """The evaluation data: the protocol's split of the env's task.

    ``name``, ``split``, ``num_problems`` and ``hash`` are required; ``revision`` and ``source`` are optional.
    """

    name: str
    split: str
    num_problems: int
    hash: str
    revision: str
    source: str


class AgentDict(TypedDict):
    """The agent: its name, resolved config, and the sha256 of that config's canonical JSON."""

    name: str
    config: dict[str, Any]
    config_hash: str


class ModelDict(TypedDict, total=False):
    """The model (``name`` and ``tokenizer_hash`` required; the rest optional)."""

    name: str
    revision: str | None
    tokenizer_hash: str
    dtype: str
    num_parameters: int


class CheckpointDict(TypedDict):
    """A published checkpoint: where to get it (a path or URL) and the sha256 of its file (or archive)."""

    uri: str
    sha256: str


class SeedDict(TypedDict, total=False):
    """One evaluation seed: its metric, episode count, per-episode results hash and, optionally, checkpoint.

    The checkpoint is what ``lm-envs leaderboard verify`` re-runs the protocol on.
    """

    seed: int
    score: float
    num_episodes: int
    episodes_hash: str
    metrics: dict[str, float | int | bool | None]
    checkpoint: CheckpointDict


class CIMethodDict(TypedDict):
    """How the confidence intervals were computed (fixed by the leaderboard, checked in validation)."""

    method: str
    confidence: float
    reps: int
    seed: int


class AggregateDict(TypedDict):
    """Aggregates over the per-seed scores; recomputed and compared in validation."""

    metric: str
    higher_is_better: bool
    primary: str
    n_seeds: int
    mean: float
    mean_ci: list[float]
    iqm: float
    iqm_ci: list[float]
    ci: CIMethodDict


class CodeDict(TypedDict):
    """The code that produced the score."""

    package: str
    version: str | None
    git_commit: str | None
    git_dirty: bool | None


class HardwareDict(TypedDict):
    """Where the evaluation ran."""

    platform: str
    machine: str
    cpu_count: int | None
    gpu: str | None


class Submission(TypedDict, total=False):
    """A leaderboard submission (every key but ``extra`` is required)."""

    schema_version: int
    env: EnvDict
    dataset: DatasetDict
    agent: AgentDict
    model: ModelDict
    seeds: list[SeedDict]
    aggregate: AggregateDict
    code: CodeDict
    libraries: dict[str, str | None]
    hardware: HardwareDict
    wall_time_s: float
    date: str
    extra: dict[str, Any]


def _name(max_length: int = 200) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": _NAME_PATTERN}


_SHA256 = {"type": "string", "pattern": _SHA256_PATTERN, "description": "lowercase hex sha256"}
_NULLABLE_NAME = {"anyOf": [_name(), {"type": "null"}]}
_CI_PAIR = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}

#: The JSON Schema (draft 2020-12) of a submission document.
SUBMISSION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"urn:lm-envs:leaderboard:submission:v{SCHEMA_VERSION}",
    "title": "lm-envs leaderboard submission",
    "description": (
        "One evaluation of an agent on a registered lm-envs env under the env's evaluation protocol. "
        "Build it with leaderboard.build_submission()."
    ),
    "type": "object",
    "additionalProperties": False,
    "required": [
        "schema_version",
        "env",
        "dataset",
        "agent",
        "model",
        "seeds",
        "aggregate",
        "code",
        "libraries",
        "hardware",
        "wall_time_s",
        "date",
    ],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "env": {
            "type": "object",
            "additionalProperties": False,
            "required": ["id", "spec_hash", "protocol"],
            "properties": {
                "id": {**_name(), "description": "registered env id with its version, e.g. LMEnv/Math-v0"},
                "spec_hash": {**_SHA256, "description": "sha256 of the env's registration (id, entry points, kwargs)"},
                "protocol": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": [
                        "split",
                        "num_episodes",
                        "min_seeds",
                        "metric",
                        "higher_is_better",
                        "aggregate",
                        "metric_range",
                        "tolerance",
                    ],
                    "properties": {
                        "split": _name(),
                        "num_episodes": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]},
                        "min_seeds": {"type": "integer", "minimum": 1},
                        "metric": _name(),
                        "higher_is_better": {"type": "boolean"},
                        "aggregate": {"enum": ["iqm", "mean"]},
                        "metric_range": {
                            "anyOf": [
                                {"type": "array", "items": {"type": ["number", "null"]}, "minItems": 2, "maxItems": 2},
                                {"type": "null"},
                            ],
                            "description": "[low, high] values the metric can take (null: unbounded end)",
                        },
                        "tolerance": {"type": "number", "minimum": 0},
                    },
                },
            },
        },
        "dataset": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "split", "num_problems", "hash"],
            "properties": {
                "name": _name(),
                "split": _name(),
                "num_problems": {"type": "integer", "minimum": 1},
                "hash": {**_SHA256, "description": "sha256 over the split's problems (id, prompt, answer) in order"},
                "revision": _name(),
                "source": _name(1000),
            },
        },
        "agent": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "config", "config_hash"],
            "properties": {
                "name": _name(),
                "config": {"type": "object", "description": "the resolved agent config"},
                "config_hash": {**_SHA256, "description": "sha256 of the config's canonical JSON"},
            },
        },
        "model": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "revision", "tokenizer_hash"],
            "properties": {
                "name": _name(),
                "revision": _NULLABLE_NAME,
                "tokenizer_hash": _name(),
                "dtype": _name(),
                "num_parameters": {"type": "integer", "minimum": 0},
            },
        },
        "seeds": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1000,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["seed", "score", "num_episodes", "episodes_hash"],
                "properties": {
                    "seed": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                    "score": {"type": "number", "description": "the protocol's primary metric for this seed"},
                    "num_episodes": {"type": "integer", "minimum": 1},
                    "episodes_hash": {**_SHA256, "description": "leaderboard.episodes_hash of the per-episode records"},
                    "metrics": {
                        "type": "object",
                        "propertyNames": {"maxLength": 200},
                        "additionalProperties": {"type": ["number", "boolean", "null"]},
                    },
                    "checkpoint": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["uri", "sha256"],
                        "properties": {
                            "uri": {**_name(1000), "description": "path or http(s)/file URL of the checkpoint"},
                            "sha256": {**_SHA256, "description": "sha256 of the checkpoint file or archive"},
                        },
                    },
                },
            },
        },
        "aggregate": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "metric",
                "higher_is_better",
                "primary",
                "n_seeds",
                "mean",
                "mean_ci",
                "iqm",
                "iqm_ci",
                "ci",
            ],
            "properties": {
                "metric": _name(),
                "higher_is_better": {"type": "boolean"},
                "primary": {"enum": ["iqm", "mean"]},
                "n_seeds": {"type": "integer", "minimum": 1},
                "mean": {"type": "number"},
                "mean_ci": _CI_PAIR,
                "iqm": {"type": "number"},
                "iqm_ci": _CI_PAIR,
                "ci": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["method", "confidence", "reps", "seed"],
                    "properties": {
                        "method": {"type": "string"},
                        "confidence": {"type": "number"},
                        "reps": {"type": "integer"},
                        "seed": {"type": "integer"},
                    },
                },
            },
        },
        "code": {
            "type": "object",
            "additionalProperties": False,
            "required": ["package", "version", "git_commit", "git_dirty"],
            "properties": {
                "package": _name(),
                "version": _NULLABLE_NAME,
                "git_commit": {"anyOf": [{"type": "string", "pattern": "^[0-9a-f]{7,64}$"}, {"type": "null"}]},
                "git_dirty": {"type": ["boolean", "null"]},
            },
        },
        "libraries": {
            "type": "object",
            "required": ["python"],
            "propertyNames": {"maxLength": 100},
            "additionalProperties": _NULLABLE_NAME,
        },
        "hardware": {
            "type": "object",
            "additionalProperties": False,
            "required": ["platform", "machine", "cpu_count", "gpu"],
            "properties": {
                "platform": _name(),
                "machine": {"type": "string", "maxLength": 200},
                "cpu_count": {"type": ["integer", "null"], "minimum": 1},
                "gpu": _NULLABLE_NAME,
            },
        },
        "wall_time_s": {"type": "number", "minimum": 0, "maximum": MAX_WALL_TIME_S},
        "date": {"type": "string", "format": "date-time", "maxLength": 64},
        "extra": {"type": "object", "description": "free-form additional information (env steps, tokens, notes)"},
    },
}


def _schema_v1(schema: dict[str, Any]) -> dict[str, Any]:
    v1 = copy.deepcopy(schema)
    v1["$id"] = "urn:lm-envs:leaderboard:submission:v1"
    v1["properties"]["schema_version"] = {"const": 1}
    protocol = v1["properties"]["env"]["properties"]["protocol"]
    for key in ("metric_range", "tolerance"):
        del protocol["properties"][key]
        protocol["required"].remove(key)
    del v1["properties"]["seeds"]["items"]["properties"]["checkpoint"]
    return v1


#: The JSON Schema of version 1 documents (still accepted; no protocol range, tolerance or checkpoints).
SUBMISSION_SCHEMA_V1: dict[str, Any] = _schema_v1(SUBMISSION_SCHEMA)

#: Protocol keys recorded by each schema version.
PROTOCOL_KEYS = {
    1: ("split", "num_episodes", "min_seeds", "metric", "higher_is_better", "aggregate"),
    2: ("split", "num_episodes", "min_seeds", "metric", "higher_is_better", "aggregate", "metric_range", "tolerance"),
}


def schema_json(indent: int | None = 2) -> str:
    """The JSON Schema as a JSON string (what ``lm-envs leaderboard schema`` prints).

    Args:
        indent: Indentation passed to :func:`json.dumps`; ``None`` for one line.

    Returns:
        The schema document, keys in declaration order.
    """
    return json.dumps(SUBMISSION_SCHEMA, indent=indent, ensure_ascii=False)
