"""Honest config errors: every bad setting fails before any work with one line naming the key and the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from agents.run import run, to_run_config
from agents.run.config import register_configs

register_configs()


def make_cfg(tmp_path, *overrides):
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        return compose(config_name="config", overrides=[f"output_dir={tmp_path}", *overrides])


def smoke(tmp_path, *overrides):
    return make_cfg(tmp_path, "+experiment=smoke", "env=digits", "agent.num_envs=8", "agent.group_size=4", *overrides)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for name in ("LM_ENVS_TRACEBACK", "HYDRA_FULL_ERROR", "LM_ENVS_IMPORT"):  # --traceback sets them
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def nothing_written(path: Path) -> bool:
    return not (path / "metrics.jsonl").exists() and not (path / "checkpoints").exists()


def test_an_added_key_the_schema_lacks_fails_naming_it_and_the_close_match(tmp_path):
    # Hydra's own message for agent.learning_rate=0.1 suggests the '+', which used to be dropped silently
    with pytest.raises(ValueError, match=r"unknown key agent.learning_rate.*agent.lr"):
        to_run_config(smoke(tmp_path, "+agent.learning_rate=0.1"))
    with pytest.raises(ValueError, match=r"unknown key train.iteration\b.*train.iterations"):
        to_run_config(smoke(tmp_path, "+train.iteration=3"))


@pytest.mark.parametrize(
    "override, message",
    [
        ("sft.batch_size=0", r"sft.batch_size must be >= 1, got 0"),
        ("agent.group_size=0", r"agent.group_size must be >= 1, got 0"),
        ("train.checkpoint_every=0", r"train.checkpoint_every must be >= 1, got 0"),
        ("train.iterations=-5", r"train.iterations must be >= 0, got -5"),
        ("eval.num_episodes=0", r"eval.num_episodes must be >= 1 \(or null"),
        ("agent.lr=-0.001", r"agent.lr must be a finite number > 0, got -0.001"),
        ("sft.lr=nan", r"sft.lr must be a finite number > 0, got nan"),
        ("model.dtype=float13", r"unknown model.dtype 'float13'; choose one of"),
        ("model.arch=gpt3", r"unknown model.arch 'gpt3'; choose one of"),
        ("model.size.n_head=3", r"model.size.n_embd \(256\) must be a multiple of model.size.n_head \(3\)"),
    ],
)
def test_bad_values_fail_before_any_work_naming_the_key(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        run(smoke(tmp_path, override))
    assert nothing_written(tmp_path)


def test_rft_errors_name_the_agent_keys_users_type(tmp_path):
    with pytest.raises(ValueError, match=r"unknown agent.keep 'worst'"):
        run(smoke(tmp_path, "agent=rft", "agent.keep=worst"))
    with pytest.raises(ValueError, match=r"agent.max_group_success must be in \(0, 1\]"):
        run(smoke(tmp_path, "agent=rft", "agent.max_group_success=0"))
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_episodes_longer_than_the_models_positions_fail_before_any_work(tmp_path, arch):
    # gpt2 used to crash with an IndexError during evaluation; llama silently ran past its positions
    with pytest.raises(ValueError, match=r"up to \d+ tokens .* 16 positions.*model.size.n_positions"):
        run(smoke(tmp_path, f"model.arch={arch}", "model.size.n_positions=16"))
    assert nothing_written(tmp_path)


def test_the_cli_prints_one_line_naming_the_key_and_the_full_traceback_on_request(tmp_path, capsys, monkeypatch):
    from agents.cli import main

    args = ["train", "+experiment=smoke", "env=digits", "sft.batch_size=0", f"hydra.run.dir={tmp_path}"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "lm-envs train: sft.batch_size must be >= 1, got 0. (--traceback or LM_ENVS_TRACEBACK=1 for the full traceback)"
    ]
    with pytest.raises(ValueError, match="sft.batch_size"):
        main(["--traceback", *args])


def test_a_full_disk_names_the_file(tmp_path, capsys, monkeypatch):
    from agents.cli import main

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    (tmp_path / "metrics.jsonl").symlink_to("/dev/full")  # every write: ENOSPC
    code = main(["train", "+experiment=smoke", "env=digits", "agent.num_envs=8", f"hydra.run.dir={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"cannot write {tmp_path / 'metrics.jsonl'}: No space left on device" in err[0]


def test_train_rm_errors_are_one_line_too(tmp_path, capsys):
    from agents.cli import main

    assert main(["train-rm", f"hydra.run.dir={tmp_path}", "heldout=2", "steps=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lm-envs train-rm: heldout must be a fraction in (0, 1), got 2"), err
