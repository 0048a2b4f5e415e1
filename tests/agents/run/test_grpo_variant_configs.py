"""#22's policy-gradient options through the run loop: bad combinations fail before any work, naming the keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from agents.run import run, to_run_config
from agents.run.config import register_configs

register_configs()


def smoke(tmp_path: Path, *overrides: str):
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        return compose(
            config_name="config",
            overrides=[
                f"output_dir={tmp_path}",
                "+experiment=smoke",
                "env=digits",
                "agent.num_envs=8",
                "agent.group_size=4",
                *overrides,
            ],
        )


def nothing_written(path: Path) -> bool:
    return not (path / "metrics.jsonl").exists() and not (path / "checkpoints").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["agent.policy_loss=gspo"], r"agent.policy_loss=gspo .* agent.loss_agg=token_mean .* agent.loss_agg=seq_mean"),
        (["agent.dynamic_sampling=true", "agent.group_size=1"], r"agent.dynamic_sampling .* agent.group_size >= 2"),
        (["agent.dynamic_sampling=true", "agent.baseline=none"], r"agent.dynamic_sampling .* baseline=none"),
        (["agent.is_level=sequence"], r"agent.is_level / agent.is_low set without agent.is_correction"),
        (["agent.is_correction=mis", "agent.is_low=3", "agent.is_cap=2"], r"agent.is_low \(3.0\) .* agent.is_cap"),
        (["agent.loss_agg=sum"], r"unknown agent.loss_agg 'sum'; choose one of"),
        (["agent.kl_estimator=k4", "agent.kl_coef=0.1"], r"unknown agent.kl_estimator 'k4'"),
        (["agent.kl_estimator=k2"], r"agent.kl_estimator is set but agent.kl_coef=0"),
        (["agent.clip_eps_high=-0.1"], r"agent.clip_eps_high must be > 0"),
        (["agent.clip_eps_low=1.5"], r"agent.clip_eps_low must be <= 1"),
        (["agent.credit=token", "agent.baseline=moving_average"], r"agent.credit=token supports .* not moving_average"),
        (["agent.adv_std_norm=false", "agent.baseline=rloo"], r"agent.adv_std_norm=false only applies to .*grpo"),
        (["agent.loss_norm_tokens=64"], r"agent.loss_norm_tokens only applies to agent.loss_agg=constant"),
        (["agent.overlong_max_tokens=64"], r"agent.overlong_max_tokens is set but agent.overlong_buffer=0"),
        (["agent=ppo", "agent.kl_in=loss", "agent.kl_target=3"], r"agent.kl_target .* agent.kl_in=reward"),
        (["agent=ppo", "agent.kl_in=both"], r"unknown agent.kl_in 'both'"),
    ],
)
def test_incompatible_options_fail_in_validate_naming_the_keys(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        to_run_config(smoke(tmp_path, *overrides))  # validate(), before the env or the model exist
    assert nothing_written(tmp_path)


def test_process_credit_on_an_env_without_step_rewards_fails_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"agent.credit=token with agent.baseline=grpo .* reward pays none"):
        run(smoke(tmp_path, "agent.credit=token"))
    assert nothing_written(tmp_path)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_dynamic_sampling_refills_the_batch_end_to_end(tmp_path):
    out = tmp_path / "dyn"
    run(smoke(out, "agent.dynamic_sampling=true", "agent.num_envs=16", "train.iterations=2"))
    rows = [r for r in metrics(out) if "dynamic/kept_groups" in r]
    assert len(rows) == 2
    for r in rows:
        assert r["dynamic/sampled_groups"] == 4 * (1 + r["dynamic/extra_rollouts"])
        assert r["dynamic/kept_groups"] <= 4 and r["dynamic/extra_rollouts"] <= 4
        # an update ran on the kept groups exactly when some were kept
        assert ("reinforce/pg" in r) == (r["dynamic/kept_groups"] > 0)
    assert any(r["dynamic/kept_groups"] > 0 for r in rows)


def test_process_credit_and_dapo_options_run_end_to_end(tmp_path):
    out = tmp_path / "proc"
    run(
        smoke(
            out,
            "env=math_process",
            "+env.kwargs.max_new_tokens=16",
            "agent.credit=token",
            "agent.clip_eps_high=0.28",
            "agent.overlong_buffer=4",
            "agent.entropy_coef=0.01",
            "agent.loss_agg=seq_mean",
            "agent.is_correction=tis",
            "train.iterations=1",
        )
    )
    (r,) = [r for r in metrics(out) if "reinforce/pg" in r]
    assert r["offpolicy/logp_abs_diff_max"] < 1e-3 and 0.99 < r["offpolicy/is_weight_mean"] <= 1.0 + 1e-6
