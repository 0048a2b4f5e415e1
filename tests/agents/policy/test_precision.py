"""Mixed precision and device options: autocast over float32 master weights, fp16 loss scaling,
transformers' attention kernels and gradient checkpointing, and their bad values."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_module
from safetensors.torch import load_file

from agents.policy.precision import Precision, check_dtype
from agents.run import run
from agents.run.config import register_configs
from agents.run.logger import read_metrics

register_configs()
AGENTS = {
    "grpo": ["agent=grpo", "agent.num_envs=8", "agent.group_size=4"],
    "ppo": ["agent=ppo", "agent.num_envs=8", "agent.group_size=4"],
    "rft": [
        "agent=rft",
        "agent.num_envs=8",
        "agent.prompts_per_round=2",
        "agent.group_size=4",
        "agent.sft_steps=2",
        "agent.keep=best",
    ],
}


def smoke(tmp_path, *overrides):
    base = ["+experiment=smoke", "env=digits", "model.threads=1", "model.size.n_layer=1", "model.size.n_embd=64"]
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        return compose(config_name="config", overrides=[f"output_dir={tmp_path}", *base, *overrides])


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_bfloat16_trains_in_autocast_over_float32_weights(tmp_path, agent):
    result = run(smoke(tmp_path, "model.dtype=bfloat16", *AGENTS[agent]))
    assert result["hardware"]["dtype"] == "bfloat16"
    weights = load_file(tmp_path / "checkpoints" / "step-000002" / "model.safetensors")
    assert {v.dtype for v in weights.values()} == {torch.float32}  # master weights
    start = load_file(tmp_path / "checkpoints" / "reference.safetensors")
    assert any(not torch.equal(v, weights[f"lm.{k}"]) for k, v in start.items())
    first = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "rollout/return_mean" in r][0]
    for key in ("reinforce/first_ratio_max_error", "ppo/first_ratio_max_error"):
        if key in first:  # sampling and the loss score the same tokens: the first ratio is 1 up to bf16 rounding
            assert first[key] < 0.1


def test_float16_scales_the_loss_and_checkpoints_the_scaler(tmp_path):
    run(smoke(tmp_path, "model.dtype=float16", *AGENTS["grpo"]))
    state = json.loads((tmp_path / "checkpoints" / "step-000002" / "state.json").read_text())
    assert state["precision"]["scaler"]["scale"] > 0
    precision = Precision("float16")
    precision.load_state_dict(state["precision"])
    assert precision.scaler.get_scale() == state["precision"]["scaler"]["scale"]


def test_float32_autocast_is_off_and_float16_skips_an_overflowed_step():
    assert not Precision().enabled and Precision().scaler is None
    layer = torch.nn.Linear(2, 1)
    before = layer.weight.detach().clone()
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    precision = Precision("float16")
    precision.backward(layer(torch.full((1, 2), float("inf"))).sum())
    precision.step(optimizer, layer.parameters(), 1.0)  # inf gradients: skipped, scale lowered
    assert torch.equal(layer.weight, before) and precision.scaler.get_scale() < 2.0**16
    with pytest.raises(FloatingPointError, match="lower agent.lr"):  # float32 never skips silently
        Precision().backward(layer(torch.full((1, 2), float("inf"))).sum())
        Precision().step(optimizer, layer.parameters(), 1.0, "the test gradient")


def test_gradient_checkpointing_and_the_attention_kernel_do_not_change_the_result(tmp_path):
    ends = []
    for i, extra in enumerate(([], ["model.gradient_checkpointing=true", "model.attn_implementation=eager"])):
        run(smoke(tmp_path / str(i), *AGENTS["grpo"], *extra))
        ends.append(load_file(tmp_path / str(i) / "checkpoints" / "step-000002" / "model.safetensors"))
    for k in ends[0]:
        torch.testing.assert_close(ends[0][k], ends[1][k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.dtype=float64", r"unknown model.dtype 'float64'; choose one of \['float32', 'bfloat16', 'float16'\]"),
        ("model.device=tpu", r"model.device='tpu'"),
        ("model.attn_implementation=flash_attention_9", r"flash_attention_9"),
    ],
)
def test_bad_device_options_fail_before_any_work(tmp_path, override, message):
    with pytest.raises((ValueError, ImportError), match=message):
        run(smoke(tmp_path / "run", *AGENTS["grpo"], override))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_check_dtype_names_the_torch_dtype():
    assert check_dtype("bfloat16") is torch.bfloat16
