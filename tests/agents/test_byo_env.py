"""Bring your own env: a package written outside the repo, registered, trained on, combined into a
submission and validated by the leaderboard, through the documented ``lm-envs`` commands only."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import gymnasium as gym
import pytest
from omegaconf import OmegaConf

from agents.cli import main

PACKAGE = '''
"""A third-party env package, as the README's "Register your own environment" writes one."""
import lm_envs
from lm_envs import ListTask, Outcome, Problem, Reward

PAIRS = [("France", "Paris"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Chile", "Santiago"),
         ("Spain", "Madrid"), ("Italy", "Rome"), ("Egypt", "Cairo")]


def problems(pairs, split):
    return [Problem(f"{split}/{i}", f"The capital of {c} is", f" {a}", (f" {a}",)) for i, (c, a) in enumerate(pairs)]


class ExactMatch(Reward):
    def outcome(self, problem, completion):
        correct = completion.strip() == problem.answer.strip()
        return Outcome(1.0 if correct else 0.0, {"correct": correct})


TASK = ListTask({"train": problems(PAIRS[:6], "train"), "test": problems(PAIRS[6:], "test")})
lm_envs.register("ENV_ID", task=TASK, reward=ExactMatch(), max_new_tokens=8, max_prompt_tokens=24)
'''

TINY = ["model.size.n_layer=1", "model.size.n_embd=32", "model.size.n_positions=64", "agent.num_envs=8"]


def write_package(root: Path, module: str, env_id: str, entry_point: bool = False) -> Path:
    """``module`` under ``root/site`` (outside the repo), its Hydra env file under ``root/conf/env``."""
    site = root / "site"
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(PACKAGE.replace("ENV_ID", env_id))
    if entry_point:  # what `pip install` writes for [project.entry-points."lm_envs.envs"]
        info = site / f"{module}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[lm_envs.envs]\n{module} = {module}\n")
    (root / "conf" / "env").mkdir(parents=True)
    (root / "conf" / "env" / "mytask.yaml").write_text(
        textwrap.dedent(f"""\
            defaults:
              - env_schema
            id: {env_id}
            kwargs: {{}}
            """)
    )
    return site


def test_a_third_party_env_goes_from_register_to_train_results_and_the_leaderboard(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(write_package(tmp_path, "capitals_env", "MyOrg/Capitals-v0")))
    sweep = tmp_path / "multirun"
    conf = tmp_path / "conf"
    # three seeds of one setting, the env from the package's own Hydra file (--config-dir)
    args = ["--config-dir", str(conf), "env=mytask", "+experiment=smoke", *TINY, f"hydra.sweep.dir={sweep}"]
    assert main(["--import", "capitals_env", "train", "-m", *args, "seed=0,1,2"]) == 0
    runs = sorted(sweep.glob("seed=*"))
    assert [json.loads((r / "eval.json").read_text())["env_id"] for r in runs] == ["MyOrg/Capitals-v0"] * 3

    # a fresh `lm-envs results` process has not imported the package: one line naming --import, not a traceback
    out = tmp_path / "submission.json"
    with monkeypatch.context() as fresh:  # the registries as a new process that never imported it sees them
        fresh.delenv("LM_ENVS_IMPORT", raising=False)
        fresh.delitem(gym.registry, "MyOrg/Capitals-v0")
        fresh.setattr("lm_envs.core.protocol._PROTOCOLS", {})
        capsys.readouterr()
        assert main(["results", *map(str, runs), "-o", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "not registered in this process" in err[0] and "--import" in err[0], err

    assert main(["results", "--import", "capitals_env", *map(str, runs), "-o", str(out)]) == 0
    assert json.loads(out.read_text())["env"]["id"] == "MyOrg/Capitals-v0"
    assert main(["leaderboard", "validate", "--import", "capitals_env", str(out)]) == 0


def test_a_module_prefixed_id_trains_and_the_run_records_the_plain_id(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(write_package(tmp_path, "prefixed_env", "MyOrg/Prefixed-v0")))
    run_dir = tmp_path / "run"
    args = ["train", "env.id=prefixed_env:MyOrg/Prefixed-v0", "+experiment=smoke", *TINY, f"hydra.run.dir={run_dir}"]
    assert main(args) == 0
    assert json.loads((run_dir / "eval.json").read_text())["env_id"] == "MyOrg/Prefixed-v0"
    assert OmegaConf.load(run_dir / "config.yaml").env.id == "MyOrg/Prefixed-v0"


def test_an_installed_package_with_an_entry_point_needs_no_import(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(write_package(tmp_path, "entry_env", "MyOrg/Entry-v0", entry_point=True)))
    assert main(["envs"]) == 0
    assert "MyOrg/Entry-v0" in capsys.readouterr().out


def test_an_unregistered_id_names_the_ways_to_register_it(tmp_path, monkeypatch, capsys):
    assert main(["train", "env.id=Nobody/Task-v0", "+experiment=smoke", f"hydra.run.dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'Nobody/Task-v0' is not registered" in err[0] and "--import MODULE" in err[0], err
    assert main(["--import", "no_such_module_xyz", "envs"]) == 2
    assert "cannot import 'no_such_module_xyz'" in capsys.readouterr().err


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for name in ("LM_ENVS_TRACEBACK", "HYDRA_FULL_ERROR", "LM_ENVS_IMPORT"):  # --import and --traceback set them
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_a_module_that_fails_to_import_is_not_passed_on_to_child_processes(capsys):
    import os

    assert main(["--import", "no_such_module_xyz", "envs"]) == 2
    assert "LM_ENVS_IMPORT" not in os.environ  # torchrun ranks and launcher jobs would all fail on it
