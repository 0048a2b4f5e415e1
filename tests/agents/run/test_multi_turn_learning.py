"""Every algorithm learns the trivially learnable two-turn env (LMEnv/DigitTurns-v0) through the run loop."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module

from agents.run import run
from agents.run.config import register_configs
from agents.run.logger import read_metrics

register_configs()


def make_cfg(tmp_path, *overrides):
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        return compose(config_name="config", overrides=[f"output_dir={tmp_path}", *overrides])


@pytest.mark.parametrize(
    "agent, extra",
    [
        ("grpo", ["agent.num_envs=32", "agent.group_size=8"]),
        pytest.param("rloo", ["agent.num_envs=32", "agent.group_size=4"], marks=pytest.mark.slow),
        pytest.param("reinforce", ["agent.num_envs=32"], marks=pytest.mark.slow),
        pytest.param("ppo", ["agent.num_envs=32", "agent.kl_coef=0.0", "agent.lr=3e-4"], marks=pytest.mark.slow),
        pytest.param(
            "rft",
            ["agent.keep=best", "agent.prompts_per_round=8", "agent.group_size=8", "agent.sft_steps=8"],
            marks=pytest.mark.slow,
        ),
    ],
)
def test_every_algorithm_learns_the_two_turn_env(tmp_path, agent, extra):
    # env.id rather than env=digit_turns: the same env group, another id (works with any installed conf)
    cfg = make_cfg(
        tmp_path,
        "+experiment=learnable",
        "env.id=LMEnv/DigitTurns-v0",
        f"agent={agent}",
        "train.iterations=25",
        "train.progress=false",
        *extra,
    )
    result = run(cfg)
    returns = [r["rollout/return_mean"] for r in read_metrics(tmp_path / "metrics.jsonl") if "rollout/return_mean" in r]
    assert returns[0] < 0.2  # a random policy rarely writes a digit, let alone two
    assert max(returns[-3:]) > 0.8, returns  # near the optimum of 1.0: a digit in each of the two turns
    assert result["metrics"]["mean_return"] > 0.8
