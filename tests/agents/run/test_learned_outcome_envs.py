"""The env options whose outcome reward is a learned verifier: they name the missing model path, and pass it on."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module

from agents.run import to_run_config
from agents.run.config import register_configs

register_configs()


def _cfg(tmp_path, *overrides):
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        return compose(config_name="config", overrides=[f"output_dir={tmp_path}", *overrides])


@pytest.mark.parametrize(
    "env, key, source",
    [("math_orm", "orm_path", "orm"), ("math_prm_outcome", "prm_path", "prm")],
)
def test_learned_outcome_envs_need_the_model_path_and_pass_it_to_the_reward(tmp_path, env, key, source):
    with pytest.raises(Exception, match=rf"env={env} needs env.kwargs.reward_kwargs.{key}=DIR"):
        to_run_config(_cfg(tmp_path, f"env={env}"))
    cfg = to_run_config(_cfg(tmp_path, f"env={env}", f"env.kwargs.reward_kwargs.{key}=/models/verifier"))
    reward_kwargs = cfg.env.kwargs["reward_kwargs"]
    assert reward_kwargs["outcome_source"] == source and reward_kwargs[key] == "/models/verifier"
