"""Building submissions: the filled-in fields, hashes, the published schema, the env identity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
from jsonschema import Draft202012Validator

import lm_envs
from leaderboard import (
    SCHEMA_VERSION,
    SUBMISSION_SCHEMA,
    SubmissionError,
    UnknownEnvError,
    build_submission,
    config_hash,
    dataset_identity,
    episodes_hash,
    spec_hash,
    validate_submission,
    write_submission,
)
from leaderboard.schema import schema_json

ENV_ID = "LMEnv/TargetWord-v0"
ROOT = Path(__file__).resolve().parents[2]


def test_build_submission_fills_every_field(submission):
    doc = submission
    assert doc["schema_version"] == SCHEMA_VERSION
    assert doc["env"] == {
        "id": ENV_ID,
        "spec_hash": spec_hash(ENV_ID),
        "protocol": lm_envs.get_protocol(ENV_ID).to_dict(),
    }
    assert doc["dataset"] == dataset_identity(ENV_ID) and doc["dataset"]["num_problems"] == 8
    assert doc["agent"]["config_hash"] == config_hash({"clip_eps": 0.2, "lr": 1e-4})
    assert doc["model"] == {"name": "tiny-gpt2", "revision": "abc123", "tokenizer_hash": "f" * 64}
    assert [s["num_episodes"] for s in doc["seeds"]] == [8, 8, 8]
    assert doc["aggregate"]["primary"] == "iqm" and doc["aggregate"]["n_seeds"] == 3
    assert doc["code"]["package"] == "lm-envs" and doc["code"]["version"]
    if (ROOT / ".git").exists():
        assert len(doc["code"]["git_commit"]) == 40 and isinstance(doc["code"]["git_dirty"], bool)
    assert set(doc["libraries"]) >= {"python", "numpy", "torch", "transformers", "gymnasium", "tokenizers", "sympy"}
    assert doc["hardware"]["cpu_count"] >= 1
    assert doc["date"].endswith("Z") and doc["extra"] == {"env_steps": 1000}
    assert Draft202012Validator(SUBMISSION_SCHEMA).is_valid(doc)
    assert validate_submission(doc).score == 0.5


def test_build_submission_accepts_numpy_values(submission):
    import numpy as np

    seeds = [
        {"seed": i, "score": np.float32(0.5), "episodes_hash": "0" * 64, "metrics": {"pass@1": np.float64(0.25)}}
        for i in range(3)
    ]
    doc = build_submission(
        ENV_ID, agent="a", agent_config={"n": np.int64(2)}, model="m", tokenizer_hash="t", seeds=seeds, wall_time_s=1
    )
    assert json.loads(json.dumps(doc)) == doc and doc["seeds"][0]["metrics"] == {"pass@1": 0.25}


def test_build_submission_does_not_import_torch():
    code = (
        "import sys, leaderboard, lm_envs\n"
        "seeds = [{'seed': s, 'score': 0.5, 'episodes_hash': leaderboard.episodes_hash([{'s': s}])}\n"
        "         for s in range(3)]\n"
        "leaderboard.build_submission('LMEnv/TargetWord-v0', agent='a', agent_config={}, model='m',\n"
        "                             tokenizer_hash='t', seeds=seeds, wall_time_s=1)\n"
        "assert 'torch' not in sys.modules and 'sqlalchemy' not in sys.modules and 'fastapi' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def test_spec_hash_is_the_same_in_another_process():
    code = "import lm_envs, leaderboard; print(leaderboard.spec_hash('LMEnv/TargetWord-v0'))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip() == spec_hash(ENV_ID)


def test_spec_hash_follows_the_registration():
    task = lm_envs.ListTask.from_pairs(train=[("1+1=", "2")], test=[("2+2=", "4")])
    lm_envs.register("LBTest/Hash-v0", task=task, reward=lambda p, c: 0.0, max_new_tokens=4)
    first = spec_hash("LBTest/Hash-v0")
    with pytest.warns(UserWarning, match="Overriding"):
        lm_envs.register("LBTest/Hash-v0", task=task, reward=lambda p, c: 0.0, max_new_tokens=5)
    assert spec_hash("LBTest/Hash-v0") != first
    del gym.registry["LBTest/Hash-v0"]


def test_build_submission_refuses_unknown_envs_and_bad_seeds():
    kwargs = dict(agent="a", agent_config={}, model="m", tokenizer_hash="t", wall_time_s=1.0)
    with pytest.raises(UnknownEnvError, match="LMEnv/TargetWord-v0"):
        build_submission("LMEnv/TargetWord-v7", seeds=[], **kwargs)
    with pytest.raises(ValueError, match="episodes_hash"):
        build_submission(ENV_ID, seeds=[{"seed": 0, "score": 1.0}], **kwargs)
    with pytest.raises(ValueError, match="metrics"):
        build_submission(ENV_ID, seeds=[{"seed": 0, "score": 1.0, "episodes_hash": "0" * 64, "x": 1}], **kwargs)
    with pytest.raises(ValueError, match="contradicts"):
        build_submission(ENV_ID, seeds=[], dataset={"split": "train"}, **kwargs)
    seed = {"seed": 0, "score": 1.0, "episodes_hash": "0" * 64}
    with pytest.raises(ValueError, match=r"metrics\['records'\] is a list; .*pass their episodes_hash"):
        build_submission(ENV_ID, seeds=[{**seed, "metrics": {"records": [{"r": 1}]}}], **kwargs)
    with pytest.raises(SubmissionError, match=r"at \$.agent.name: '' should be non-empty"):
        build_submission(ENV_ID, seeds=[seed], **{**kwargs, "agent": ""})


def test_episodes_hash_is_canonical_and_order_sensitive():
    a = [{"problem_id": "test/0", "return": 1.0, "completion": "é"}, {"problem_id": "test/1", "return": 0.0}]
    assert episodes_hash(a) == episodes_hash([dict(reversed(list(r.items()))) for r in a])
    assert episodes_hash(a) != episodes_hash(a[::-1])
    assert len(episodes_hash([])) == 64
    with pytest.raises(TypeError, match="not JSON data"):
        episodes_hash([{"x": object()}])


def test_write_submission_is_atomic_json(tmp_path, submission):
    doc = submission
    path = write_submission(doc, tmp_path / "run" / "submission.json")
    assert json.loads(path.read_text()) == doc
    assert [p.name for p in path.parent.iterdir()] == ["submission.json"]


def test_published_schema_is_valid_and_printed_by_the_cli(capsys):
    Draft202012Validator.check_schema(SUBMISSION_SCHEMA)
    assert json.loads(schema_json()) == SUBMISSION_SCHEMA
    published = ROOT / "leaderboard" / "submission.schema.json"
    assert published.read_text() == schema_json() + "\n", "regenerate: lm-envs leaderboard schema > " + str(published)
    from leaderboard.cli import main

    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == SUBMISSION_SCHEMA
