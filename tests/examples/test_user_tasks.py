"""examples/user_tasks: three tasks written as a user would, outside the built-in set (#20's study)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import gymnasium as gym
import pytest

ROOT = Path(__file__).resolve().parents[2]
IDS = ("Examples/Add-v0", "Examples/Larger-v0", "Examples/Count-v0")


@pytest.fixture
def user_tasks(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("examples.user_tasks")


def test_import_lm_envs_alone_does_not_register_them():
    import lm_envs  # noqa: F401

    if "examples.user_tasks" not in sys.modules:
        assert not any(i in gym.registry for i in IDS)


@pytest.mark.parametrize("env_id", IDS)
def test_each_task_registers_steps_and_pays_its_gold_solution(user_tasks, env_id):
    env = gym.make(env_id)
    task, codec = env.unwrapped.task, env.unwrapped.codec
    train, test = list(task.problems("train")), list(task.problems("test"))
    assert len(test) == user_tasks.TEST_SIZE and len(train) > 400
    assert not {p.prompt for p in train} & {p.prompt for p in test}  # held-out means unseen
    for index, problem in ((0, train[0]), (1, train[1])):  # the env serves the train split
        obs, info = env.reset(options={"index": index})
        assert problem.steps == (problem.answer,)
        for token in codec.encode(problem.solution()) + [codec.eos_token_id]:
            obs, reward, terminated, truncated, info = env.step(token)
        assert terminated and reward == 1.0 and info["is_success"], info["completion"]
    env.reset(options={"index": 0})
    for token in codec.encode(" 0") + [codec.eos_token_id]:  # no answer of any task is 0
        obs, reward, terminated, truncated, info = env.step(token)
    assert reward == 0.0 and not info["is_success"]


def test_the_bench_trains_one_from_the_documented_command(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    monkeypatch.chdir(ROOT)
    import defaults_learn

    out = tmp_path / "run"
    tiny = ["model.size.n_layer=1", "model.size.n_embd=32", "agent.num_envs=8", "agent.group_size=4"]
    assert defaults_learn.lm_envs_train(out, ["env=larger", "sft.steps=2", "train.iterations=2", *tiny]) == 0
    ev = json.loads((out / "eval.json").read_text())
    assert ev["env_id"] == "Examples/Larger-v0" and ev["metrics"]["num_episodes"] == 300
