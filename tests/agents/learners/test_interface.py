"""The Learner interface: the README's worked example (one file, one config) runs through the generic loop,
and configs or classes that do not follow the interface fail naming the fix."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from safetensors.torch import load_file

from agents.evaluate import EvalConfig
from agents.learners.base import Learner, RunContext, discover, learner_class, make_learner
from agents.learners.sft import SFTConfig
from agents.run import run
from agents.run.config import EmbeddedSize, EnvSection, ModelSection, RunConfig, TrainSection
from agents.run.logger import read_metrics

README = Path(__file__).resolve().parents[3] / "README.md"
CONF = Path(__file__).resolve().parents[3] / "conf" / "agent"


def readme_example() -> types.ModuleType:
    """The python block of the README's "Adding an algorithm", as the module it says to write."""
    text = README.read_text()
    section = text[text.index("## Adding an algorithm") :]
    section = section[: section.index("\n## ", 5)]
    code = section.split("```python\n")[1].split("```")[0]
    module = types.ModuleType("agents.learners.batch_pg")
    sys.modules[module.__name__] = module
    exec(compile(code, "README.md", "exec"), module.__dict__)
    return module


def tiny_run(tmp_path: Path, agent) -> RunConfig:
    return RunConfig(
        output_dir=str(tmp_path),
        env=EnvSection(id="LMEnv/Digits-v0"),
        model=ModelSection(size=EmbeddedSize(n_layer=1, n_embd=32, n_head=2, n_positions=64), threads=1),
        agent=agent,
        sft=SFTConfig(steps=4, batch_size=8, warmup_steps=1),
        train=TrainSection(iterations=2, eval_every=0, checkpoint_every=1, progress=False),
        eval=EvalConfig(num_episodes=4),
    )


def test_the_readme_example_algorithm_trains_through_the_generic_loop(tmp_path):
    example = readme_example()
    try:
        cfg = example.BatchPGConfig(num_envs=8, lr=3e-3)
        assert learner_class(cfg) is example.BatchPGLearner
        result = run(tiny_run(tmp_path, cfg))
    finally:
        del sys.modules["agents.learners.batch_pg"]
    assert result["agent"] == "batch_pg"
    logged = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "batch_pg/loss" in r]
    assert [r["step"] for r in logged] == [1, 2] and all("rollout/return_mean" in r for r in logged)
    start = load_file(tmp_path / "checkpoints" / "reference.safetensors")
    end = load_file(tmp_path / "checkpoints" / "step-000002" / "model.safetensors")
    assert any(not torch.equal(v, end[f"lm.{k}"]) for k, v in start.items())
    assert not (tmp_path / "checkpoints" / "step-000002" / "reference").exists()


def test_every_algorithm_module_is_found_and_every_agent_option_names_one():
    found = discover()
    assert {"ppo", "reinforce", "rft"} <= set(found)
    for name, schema in found.items():
        assert isinstance(schema.learner, str) and learner_class(schema()).__module__ == f"agents.learners.{name}"

    def names_a_schema(path, seen=()):  # directly, or through another agent option it extends (a preset)
        text = path.read_text()
        if any(f"- {name}_schema" in text for name in found):
            return True
        parents = [CONF / f"{line.strip()[2:].strip()}.yaml" for line in text.splitlines() if line.startswith("  - ")]
        return any(p.is_file() and p not in seen and names_a_schema(p, (*seen, path)) for p in parents)

    for path in CONF.glob("*.yaml"):
        assert names_a_schema(path), path.name


@dataclass
class NoLearner:
    name: str = "x"


@dataclass
class WrongName:
    learner: ClassVar[str] = "Missing"


class Incomplete:
    def __init__(self, cfg, lm, ctx) -> None:
        self.policy, self.optimizer = lm, None


@dataclass
class IncompleteConfig:
    learner: ClassVar[str] = "Incomplete"


def test_configs_and_classes_off_the_interface_fail_naming_the_fix():
    with pytest.raises(TypeError, match=r"names no learner.*learner: ClassVar\[str\]"):
        learner_class(NoLearner())
    with pytest.raises(TypeError, match=r"names 'Missing', which .* does not define"):
        learner_class(WrongName())
    ctx = RunContext("LMEnv/Digits-v0", {}, None, None, 0, torch.device("cpu"))
    with pytest.raises(TypeError, match=r"Incomplete does not implement agents.learners.Learner"):
        make_learner(IncompleteConfig(), torch.nn.Linear(1, 1), ctx)
    assert not isinstance(Incomplete(None, None, None), Learner)
