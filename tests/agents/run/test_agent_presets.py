"""The paper presets conf/agent/{dapo,dr_grpo,reinforce_pp}.yaml: each composes over the GRPO / REINFORCE config
with the keys its paper uses, validates, and runs one tiny iteration through the run loop."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_module
from safetensors.torch import load_file

from agents.run import run, to_run_config
from agents.run.config import register_configs
from agents.run.logger import read_metrics

register_configs()

PRESETS = {
    # DAPO (arXiv 2503.14476): clip-higher, dynamic sampling, token-mean loss, no KL
    "dapo": (
        {"baseline": "grpo", "clip_eps_low": 0.2, "clip_eps_high": 0.28, "dynamic_sampling": True},
        {"loss_agg": "token_mean", "kl_coef": 0.0},
        "dynamic/kept_groups",
    ),
    # Dr. GRPO (arXiv 2503.20783): no std normalisation, constant normaliser
    "dr_grpo": ({"baseline": "grpo", "adv_std_norm": False}, {"loss_agg": "constant"}, "reinforce/pg"),
    # REINFORCE++ (arXiv 2501.03262): no baseline, token credit with the k1 KL in the reward, global whitening
    "reinforce_pp": (
        {"baseline": "none", "credit": "token", "adv_whiten": True},
        {"kl_in": "reward", "kl_estimator": "k1", "kl_coef": 0.01},
        "reinforce/kl_ref",
    ),
}


def preset(tmp_path, name, *overrides):
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        return compose(
            config_name="config",
            overrides=[f"output_dir={tmp_path}", "+experiment=smoke", "env=digits", f"agent={name}", *overrides],
        )


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_preset_sets_its_papers_keys_validates_and_runs_an_iteration(tmp_path, name):
    keys, more, metric = PRESETS[name]
    cfg = to_run_config(preset(tmp_path, name, "agent.num_envs=8", "agent.group_size=4", "train.iterations=1"))
    assert cfg.agent.name == name
    for key, value in {**keys, **more}.items():
        assert getattr(cfg.agent, key) == value, key
    run(cfg)
    rows = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "rollout/return_mean" in r]
    assert len(rows) == 1 and metric in rows[0]
    start = load_file(tmp_path / "checkpoints" / "reference.safetensors")
    end = load_file(tmp_path / "checkpoints" / "step-000001" / "model.safetensors")
    assert any(not torch.equal(v, end[f"lm.{k}"]) for k, v in start.items())


def test_a_preset_keeps_its_parents_checks(tmp_path):
    with pytest.raises(ValueError, match=r"agent.dynamic_sampling .* agent.group_size >= 2"):
        to_run_config(preset(tmp_path, "dapo", "agent.group_size=1"))
