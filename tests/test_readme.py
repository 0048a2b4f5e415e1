"""The README's promises: the quickstart block, the CI command, and the registration example."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
from gymnasium.utils.env_checker import check_env

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, flags=re.S | re.M)
    assert m, f"README has no '## {title}' section"
    return m.group(1)


def fenced(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_quickstart_is_two_commands_and_ci_runs_the_test_command():
    blocks = fenced(section("Quickstart"), "sh")
    assert len(blocks) == 1
    commands = [line for line in blocks[0].splitlines() if line.strip()]
    assert len(commands) == 2 and "lm-envs train +experiment=" in commands[0] and "pytest" in commands[1]
    main_job = commands[0].split("+experiment=")[1].split()[0]
    assert (ROOT / "conf" / "experiment" / f"{main_job}.yaml").is_file()
    assert all("-c constraints.txt" in c for c in commands)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci


def test_registration_example_runs(capsys):
    (code,) = fenced(section("Register your own environment"), "python")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert out.split() == ["Paris", "1.0", "True"]
    check_env(gym.make("MyOrg/Capitals-v0").unwrapped)
    venv = gym.make_vec("MyOrg/Capitals-v0", num_envs=3)
    assert venv.num_envs == 3
