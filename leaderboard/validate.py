"""Validating submissions: every refusal says what is wrong and how to fix it.

:func:`validate_submission` checks, in order: size (at most :data:`~leaderboard.schema.MAX_SUBMISSION_BYTES`),
well-formed UTF-8 JSON (no duplicate keys, no NaN/Infinity, nesting at most
:data:`~leaderboard.schema.MAX_DEPTH` deep, every number finite and every integer within 64 bits), the
schema version, the JSON Schema, the text (no invisible or bidirectional control characters; agent and
model names NFKC-normalized), the env (registered in this process, with the same spec hash, protocol
and dataset as the submission claims), the seeds (at least the protocol's ``min_seeds``, distinct
integers, each over the protocol's episodes, each score inside the metric's declared range), the
agent's config hash, and the aggregates (recomputed from the per-seed scores; the recomputed values
are what is stored, never the claimed ones).
Duplicates are refused by the store, which holds the other submissions (see :attr:`ValidSubmission.fingerprint`).

Example:
    >>> try:
    ...     validate_submission(b'{"schema_version": 1}')
    ... except SubmissionError as e:
    ...     print(e.problems[0])
    at $: 'agent' is a required property
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

from leaderboard.aggregate import aggregate_scores
from leaderboard.envs import UnknownEnvError, check_env_id, dataset_identity, spec_hash
from leaderboard.hashing import config_hash, sha256_json
from leaderboard.schema import (
    MAX_DEPTH,
    MAX_INT,
    MAX_SUBMISSION_BYTES,
    PROTOCOL_KEYS,
    SCHEMA_VERSION,
    SUBMISSION_SCHEMA,
    SUBMISSION_SCHEMA_V1,
    SUPPORTED_SCHEMA_VERSIONS,
)

__all__ = [
    "DuplicateSubmissionError",
    "SubmissionError",
    "SubmissionTooLargeError",
    "ValidSubmission",
    "validate_submission",
]

_MAX_SCHEMA_PROBLEMS = 20
_VALIDATORS = {2: Draft202012Validator(SUBMISSION_SCHEMA), 1: Draft202012Validator(SUBMISSION_SCHEMA_V1)}
#: Largest magnitude of a score of a metric that declares no range.
MAX_UNBOUNDED_SCORE = 1e15
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")
#: Unicode categories refused in text: controls, invisible format characters (zero-width, bidi
#: overrides and isolates, BOM), line/paragraph separators, surrogates and private use.
_REFUSED_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co"}


class SubmissionError(ValueError):
    """A submission was refused.

    Attributes:
        problems: What is wrong, one message per problem, each saying how to fix it.
        status: The HTTP status the server answers with (422: the document is invalid).
    """

    status = 422

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"submission refused ({len(self.problems)} problem(s)):\n{lines}")


class SubmissionTooLargeError(SubmissionError):
    """The document is larger than the leaderboard accepts (HTTP 413)."""

    status = 413


class DuplicateSubmissionError(SubmissionError):
    """The same evaluation is already on the leaderboard (HTTP 409).

    Attributes:
        existing_id: The id of the entry it duplicates.
    """

    status = 409

    def __init__(self, problems: list[str] | str, existing_id: int | None = None) -> None:
        super().__init__(problems)
        self.existing_id = existing_id


@dataclass(frozen=True)
class ValidSubmission:
    """A submission that passed validation, with the fields a leaderboard table needs.

    Attributes:
        document: The parsed document.
        text: The document as compact UTF-8 JSON (what the store keeps).
        fingerprint: sha256 over the env id, the seeds' ``(seed, episodes_hash)`` pairs and the
            agent's config hash; two submissions with the same fingerprint are duplicates.
        env_id: The env id.
        agent_name: ``agent.name``.
        model_name: ``model.name``.
        score: The ranking value: the protocol's primary aggregate (IQM or mean).
        ci_low: Lower end of the score's 95% interval.
        ci_high: Upper end of the score's 95% interval.
    """

    document: dict[str, Any]
    text: str
    fingerprint: str
    env_id: str
    agent_name: str
    model_name: str
    score: float
    ci_low: float
    ci_high: float

    @property
    def aggregate(self) -> dict[str, Any]:
        """The document's ``aggregate`` block."""
        return self.document["aggregate"]


def fingerprint(document: Mapping[str, Any]) -> str:
    """The duplicate key of a (schema-valid) submission: env, seeds' episode hashes, agent config hash.

    Seeds count by value (``1`` and ``1.0`` are the same seed).
    """
    return sha256_json(
        {
            "env": document["env"]["id"],
            "episodes": sorted([int(s["seed"]), s["episodes_hash"]] for s in document["seeds"]),
            "agent_config_hash": document["agent"]["config_hash"],
        }
    )


class _NumberError(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON; scores must be finite numbers")


def _parse_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > 20 or abs(int(text)) > MAX_INT:
        shown = text if len(text) <= 24 else f"{text[:12]}...({len(digits)} digits)"
        raise _NumberError(f"the integer {shown} is out of range; integers must lie within +-2**64.")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 24 else f"{text[:12]}...({len(text)} characters)"
        raise _NumberError(f"the number {shown} is out of range; numbers must be finite 64-bit floats (< 1.8e308).")
    return value


def nesting_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """How deeply arrays and objects nest in JSON ``text`` (the root object is 1), counting up to ``limit + 1``.

    Example:
        >>> nesting_depth('{"a": [1, {"b": "[[["}]}')
        3
    """
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub("", text)):
        if m.group() in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r} in one JSON object; each key may appear once")
        obj[key] = value
    return obj


def _parse(submission: bytes | str | Mapping[str, Any], max_bytes: int) -> dict[str, Any]:
    if isinstance(submission, Mapping):
        try:
            raw = json.dumps(submission, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except RecursionError:
            raise SubmissionError(
                f"the document nests arrays and objects too deeply; the limit is {MAX_DEPTH} levels."
            ) from None
        except (TypeError, ValueError, UnicodeEncodeError) as e:
            raise SubmissionError(
                f"the document is not JSON data ({e}); build it with leaderboard.build_submission."
            ) from None
    elif isinstance(submission, str):
        try:
            raw = submission.encode("utf-8")
        except UnicodeEncodeError as e:
            raise SubmissionError(f"the document is not valid Unicode text ({e}).") from None
    elif isinstance(submission, (bytes, bytearray, memoryview)):
        raw = bytes(submission)
    else:
        raise SubmissionError(f"a submission is JSON bytes, text or a dict, got {type(submission).__name__}.")
    if len(raw) > max_bytes:
        raise SubmissionTooLargeError(
            f"the document is {len(raw):,} bytes; the limit is {max_bytes:,} bytes. Leave per-episode records "
            "out (submit their episodes_hash) and keep 'extra' and the agent config small."
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SubmissionError(f"the document is not UTF-8 text ({e}); save it as UTF-8 JSON.") from None
    depth = nesting_depth(text)
    if depth > MAX_DEPTH:
        raise SubmissionError(
            f"the document nests arrays and objects more than {MAX_DEPTH} levels deep; flatten 'extra' and the "
            "agent config."
        )
    try:
        document = json.loads(
            text,
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_reject_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
        )
    except _NumberError as e:
        raise SubmissionError(str(e)) from None
    except (ValueError, RecursionError) as e:  # json.JSONDecodeError is a ValueError
        raise SubmissionError(f"the document is not valid JSON: {e}.") from None
    if not isinstance(document, dict):
        raise SubmissionError(f"the document must be a JSON object, got a JSON {type(document).__name__}.")
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise SubmissionError(
            "the document holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff); use valid Unicode text."
        ) from None
    return document


def _json_path(path: Any) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def schema_problems(document: Mapping[str, Any], version: int = SCHEMA_VERSION) -> list[str]:
    """JSON Schema violations of ``document``, one message each with its JSON path (at most 20, then a count).

    Args:
        document: The parsed document.
        version: The schema version to check against (one of ``SUPPORTED_SCHEMA_VERSIONS``).
    """
    errors = sorted(
        _VALIDATORS[version].iter_errors(document), key=lambda e: (list(map(str, e.absolute_path)), e.message)
    )
    problems = []
    for error in errors[:_MAX_SCHEMA_PROBLEMS]:
        message = error.message
        if len(message) > 300:
            message = message[:300] + "..."
        problems.append(f"at {_json_path(error.absolute_path)}: {message}")
    if len(errors) > _MAX_SCHEMA_PROBLEMS:
        problems.append(f"... and {len(errors) - _MAX_SCHEMA_PROBLEMS} more schema violations")
    return problems


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _describe(char: str) -> str:
    return f"U+{ord(char):04X} ({unicodedata.name(char, unicodedata.category(char))})"


def text_problems(document: Mapping[str, Any]) -> list[str]:
    """Invisible or bidirectional control characters in the document's text (names, keys, versions).

    The agent's config and ``extra`` are free-form data and are not checked.
    """
    problems: list[str] = []

    def walk(value: Any, path: list[Any]) -> None:
        if len(problems) >= _MAX_SCHEMA_PROBLEMS:
            return
        if path in (["agent", "config"], ["extra"]):
            return
        if isinstance(value, str):
            bad = next((c for c in value if unicodedata.category(c) in _REFUSED_CATEGORIES), None)
            if bad is not None:
                problems.append(
                    f"at {_json_path(path)}: character {_describe(bad)} is a control, invisible or bidirectional "
                    "formatting character, which lets one name pass for another; use visible text only."
                )
        elif isinstance(value, Mapping):
            for key, item in value.items():
                walk(key, [*path, "<key>"])
                walk(item, [*path, key])
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, [*path, i])

    walk(document, [])
    return problems


def normalize_name(name: str) -> str:
    """A displayed name in Unicode NFKC form (full-width, ligature and compatibility forms folded).

    Example:
        >>> normalize_name("ｐｐｏ ﬁne")
        'ppo fine'
    """
    return unicodedata.normalize("NFKC", name)


def _check_env(document: dict[str, Any], version: int = SCHEMA_VERSION) -> list[str]:
    env = document["env"]
    env_id = env["id"]
    try:
        protocol = check_env_id(env_id)
    except UnknownEnvError as e:
        return [str(e)]
    problems = []
    if env["spec_hash"] != spec_hash(env_id):
        problems.append(
            f"env.spec_hash does not match the registration of {env_id!r} on this leaderboard: the env was "
            "evaluated with different settings (kwargs, task or reward). A changed env must bump its version "
            f"(-vN); re-evaluate on the registered {env_id!r}."
        )
    expected = protocol.to_dict()
    for key in PROTOCOL_KEYS[version]:
        value = expected[key]
        if env["protocol"].get(key) != value:
            problems.append(
                f"env.protocol.{key} is {env['protocol'].get(key)!r} but {env_id!r} is evaluated with {value!r}; "
                "evaluate under the registered protocol (lm_envs.get_protocol(env_id))."
            )
    try:
        data = dataset_identity(env_id)
    except ValueError as e:
        return [*problems, f"cannot compute the evaluation data of {env_id!r}: {e}"]
    for key in ("name", "split", "num_problems", "hash"):
        if document["dataset"][key] != data[key]:
            problems.append(
                f"dataset.{key} is {document['dataset'][key]!r} but the protocol's data of {env_id!r} has "
                f"{data[key]!r}; evaluate on the registered env's {data['split']!r} split (a changed dataset must "
                "bump the env's version)."
            )
    seeds = document["seeds"]
    if len(seeds) < protocol.min_seeds:
        problems.append(
            f"too few seeds: {env_id!r} requires at least {protocol.min_seeds} evaluation seeds "
            f"(protocol.min_seeds) and the submission has {len(seeds)}; evaluate more seeds."
        )
    for i, seed in enumerate(seeds):
        if seed["num_episodes"] != data["num_problems"]:
            problems.append(
                f"seeds[{i}].num_episodes is {seed['num_episodes']} but the protocol evaluates "
                f"{data['num_problems']} episodes per seed on {env_id!r}."
            )
    return problems


def _check_scores(document: dict[str, Any]) -> list[str]:
    """Per-seed scores outside the range the registered protocol declares for its metric."""
    env_id = document["env"]["id"]
    try:
        protocol = check_env_id(env_id)
    except UnknownEnvError:
        return []  # reported by _check_env
    low, high = protocol.metric_range if protocol.metric_range is not None else (None, None)
    if protocol.metric_range is None:
        low, high = -MAX_UNBOUNDED_SCORE, MAX_UNBOUNDED_SCORE
    shown = f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"
    problems = []
    for i, seed in enumerate(document["seeds"]):
        score = float(seed["score"])
        if (low is not None and score < low) or (high is not None and score > high):
            where = "declares its range" if protocol.metric_range is not None else "declares no range, so the bound is"
            problems.append(
                f"seeds[{i}].score is {seed['score']!r}, outside what {protocol.metric!r} can be: {env_id!r} {where} "
                f"{shown}. Report the protocol's metric as measured."
            )
    return problems


def _check_seeds_and_aggregates(document: dict[str, Any]) -> tuple[list[str], dict[str, Any] | None]:
    problems = []
    seeds = document["seeds"]
    for i, seed in enumerate(seeds):
        for key in ("seed", "num_episodes"):
            if not isinstance(seed[key], int):
                problems.append(f"seeds[{i}].{key} is {seed[key]!r}; write it as an integer ({int(seed[key])}).")
    values = [int(s["seed"]) for s in seeds]
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        problems.append(f"seeds {repeated} appear more than once; each evaluation seed may be reported once.")
    agent = document["agent"]
    if agent["config_hash"] != config_hash(agent["config"]):
        problems.append(
            "agent.config_hash does not match agent.config; it must be leaderboard.hashing.config_hash(config)."
        )
    claimed = document["aggregate"]
    protocol = document["env"]["protocol"]
    for key, value in (
        ("metric", protocol["metric"]),
        ("higher_is_better", protocol["higher_is_better"]),
        ("primary", protocol["aggregate"]),
    ):
        if claimed[key] != value:
            problems.append(f"aggregate.{key} is {claimed[key]!r} but the protocol says {value!r}.")
    scores = [s["score"] for s in seeds]
    if not all(math.isfinite(float(v)) for v in scores):
        return [*problems, "per-seed scores must be finite numbers."], None
    expected = aggregate_scores(
        scores, metric=claimed["metric"], higher_is_better=claimed["higher_is_better"], primary=claimed["primary"]
    )
    if claimed["ci"] != expected["ci"]:
        problems.append(
            f"aggregate.ci is {claimed['ci']!r}; this leaderboard computes intervals as {expected['ci']!r} "
            "(use leaderboard.aggregate_scores)."
        )
    if claimed["n_seeds"] != expected["n_seeds"]:
        problems.append(f"aggregate.n_seeds is {claimed['n_seeds']} but there are {expected['n_seeds']} seeds.")
    mismatched = []
    for key in ("mean", "iqm"):
        if not _close(float(claimed[key]), expected[key]):
            mismatched.append(f"aggregate.{key} is {claimed[key]!r} but the per-seed scores give {expected[key]!r}")
        for end, got, want in zip(("low", "high"), claimed[f"{key}_ci"], expected[f"{key}_ci"]):
            if not _close(float(got), want):
                mismatched.append(f"aggregate.{key}_ci {end} end is {got!r} but the per-seed scores give {want!r}")
    problems.extend(
        f"{m}; aggregates are recomputed from the per-seed scores, so do not edit them "
        "(rebuild with leaderboard.build_submission)."
        for m in mismatched
    )
    return problems, expected


def _check_date(document: dict[str, Any]) -> list[str]:
    raw = document["date"]
    try:
        when = _dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return [f"date {raw!r} is not an ISO 8601 date-time; write e.g. '2025-01-31T12:00:00Z'."]
    if when.tzinfo is None:
        return [f"date {raw!r} has no time zone; write UTC with a trailing 'Z'."]
    if when > _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(days=1):
        return [f"date {raw!r} is in the future."]
    return []


def validate_submission(
    submission: bytes | str | Mapping[str, Any], *, max_bytes: int = MAX_SUBMISSION_BYTES
) -> ValidSubmission:
    """Validate a submission against its schema, the registered env and its own per-seed scores.

    Args:
        submission: The document as JSON bytes or text (as uploaded or read from a file), or as a dict.
        max_bytes: Size limit in bytes of UTF-8 JSON.

    Returns:
        The validated submission, ready for :meth:`leaderboard.store.LeaderboardStore.add`.

    Raises:
        SubmissionTooLargeError: If the document exceeds ``max_bytes``.
        SubmissionError: For anything else that is wrong; ``problems`` lists every problem found at
            the first failing stage (parsing, schema, then env, seeds and aggregates together).
    """
    document = _parse(submission, max_bytes)
    version = document.get("schema_version")
    if isinstance(version, bool) or version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = " and ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)
        raise SubmissionError(
            f"schema_version {version!r} is not supported; this leaderboard accepts schema_version {supported} "
            "(build the document with leaderboard.build_submission from this lm-envs version)."
        )
    version = int(version)
    problems = schema_problems(document, version)
    if problems:
        raise SubmissionError(problems)
    problems = text_problems(document)
    if problems:
        raise SubmissionError(problems)
    checked, expected = _check_seeds_and_aggregates(document)
    problems = _check_date(document) + _check_env(document, version) + _check_scores(document) + checked
    if problems:
        raise SubmissionError(problems)
    assert expected is not None  # no problems: the scores were finite
    # Store what the per-seed scores give, never the claimed values (equal within 1e-9 at most).
    document["aggregate"] = expected
    for key in ("agent", "model"):
        document[key]["name"] = normalize_name(document[key]["name"])
    aggregate = document["aggregate"]
    primary = aggregate["primary"]
    low, high = aggregate[f"{primary}_ci"]
    return ValidSubmission(
        document=document,
        text=json.dumps(document, ensure_ascii=False, separators=(",", ":")),
        fingerprint=fingerprint(document),
        env_id=document["env"]["id"],
        agent_name=document["agent"]["name"],
        model_name=document["model"]["name"],
        score=float(aggregate[primary]),
        ci_low=float(low),
        ci_high=float(high),
    )
