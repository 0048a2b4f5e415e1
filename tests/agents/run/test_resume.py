"""Resuming without surprises: SFT resumes part-way, metrics.jsonl holds each record once (a torn line
swallows nothing), and a resume with other settings is refused unless asked for, then recorded."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_module
from safetensors.torch import load_file

import agents.learners.sft as sft_module
from agents.run import run
from agents.run.config import register_configs
from agents.run.logger import MetricsLogger, read_metrics

register_configs()
GRPO = ["agent=grpo", "agent.num_envs=8", "agent.group_size=4", "sft.steps=4"]
TIMING = ("time", "_s", "tokens_per_s")


def smoke(tmp_path, *overrides):
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        return compose(
            config_name="config",
            overrides=[f"output_dir={tmp_path}", "+experiment=smoke", "env=digits", *GRPO, *overrides],
        )


def same_weights(a, b):
    a, b = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def records(path):
    """metrics.jsonl without timings: what two runs of one setting must agree on."""
    return [
        {k: v for k, v in r.items() if not any(k == t or k.endswith(t) for t in TIMING)}
        for r in read_metrics(path / "metrics.jsonl")
    ]


def killed(monkeypatch, module, name, at):
    """Make ``module.name`` raise KeyboardInterrupt on its ``at``-th call (0-based), as a kill would."""
    real, calls = getattr(module, name), []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == at + 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


def test_sft_killed_part_way_resumes_from_its_last_checkpoint_exactly(tmp_path, monkeypatch):
    steps = ["sft.steps=25", "sft.checkpoint_every=10", "train.iterations=1"]
    full, part = tmp_path / "full", tmp_path / "part"
    run(smoke(full, *steps))
    killed(monkeypatch, sft_module, "gradient_step", at=17)  # SFT step 18 of 25: checkpoint sft-000010 holds
    with pytest.raises(KeyboardInterrupt):
        run(smoke(part, *steps))
    assert (part / "checkpoints" / "latest").read_text() == "sft-000010"
    monkeypatch.undo()
    done = []
    real = sft_module.gradient_step
    monkeypatch.setattr(sft_module, "gradient_step", lambda *a, **k: done.append(1) or real(*a, **k))
    run(smoke(part, *steps))
    assert len(done) == 15  # steps 11-25 only, not all 25 again
    assert same_weights(full / "checkpoints" / "step-000000", part / "checkpoints" / "step-000000")
    assert same_weights(full / "checkpoints" / "step-000001", part / "checkpoints" / "step-000001")
    assert not list((part / "checkpoints").glob("sft-*"))  # superseded once SFT ended
    assert records(part) == records(full)  # SFT records after step 10 written once


def test_metrics_hold_each_record_once_after_a_resume(tmp_path, monkeypatch):
    import agents.learners.reinforce as reinforce

    overrides = ["train.iterations=4", "train.checkpoint_every=2", "train.eval_every=0"]
    full, part = tmp_path / "full", tmp_path / "part"
    run(smoke(full, *overrides))
    killed(monkeypatch, reinforce.ReinforceLearner, "iteration", at=3)  # step 3 logged, checkpoint at step 2
    with pytest.raises(KeyboardInterrupt):
        run(smoke(part, *overrides))
    monkeypatch.undo()
    run(smoke(part, *overrides))
    assert records(part) == records(full)


def test_a_torn_last_line_does_not_swallow_the_next_record(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "a": 1.0}\n{"step": 2, "a"')  # a full disk cut it
    logger = MetricsLogger(tmp_path, tensorboard=False)
    logger.log(2, {"a": 2.0})
    assert [(r["step"], r["a"]) for r in read_metrics(tmp_path / "metrics.jsonl")] == [(1, 1.0), (2, 2.0)]


@pytest.mark.parametrize("change, key", [("seed=1", "seed"), ("agent.lr=0.001", "agent.lr")])
def test_a_resume_with_other_settings_is_refused_unless_asked_for_and_then_recorded(tmp_path, change, key):
    run(smoke(tmp_path, "train.iterations=1"))
    files = {name: (tmp_path / name).read_bytes() for name in ("config.yaml", "eval.json", "metrics.jsonl")}
    with pytest.raises(ValueError, match=rf"other settings \({key}: .* -> .*\).*resume_with_changes=true"):
        run(smoke(tmp_path, "train.iterations=2", change))
    assert {name: (tmp_path / name).read_bytes() for name in files} == files  # nothing relabelled
    run(smoke(tmp_path, "train.iterations=2", change, "resume_with_changes=true"))
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert list(saved["resumed_with_changes"][0]["changed"]) == [key]
    run(smoke(tmp_path, "train.iterations=3", change))  # the new settings are the run's now; longer is free
