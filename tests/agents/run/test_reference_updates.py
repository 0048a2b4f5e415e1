"""Self-rewarding's moving reference (Yuan et al. 2024: M_t is the DPO reference of M_{t+1}), agent.ref_update_every:
the reference is the policy right after each update boundary and only then; off, it stays the RL start and the
checkpoints are as before; a run interrupted between boundaries resumes bit for bit (the moved reference is in
the checkpoint); LoRA, whose reference is the adapters-off base, is refused naming the keys."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from hydra import compose, initialize_config_module
from safetensors.torch import load_file

import lm_envs  # noqa: F401
from agents.learners.base import RunContext
from agents.learners.online_dpo import OnlineDPOConfig, OnlineDPOLearner
from agents.policy.models import build_default_model, frozen_copy
from agents.run import run, to_run_config
from agents.run.config import register_configs

register_configs()


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("every", [0, 2])
def test_the_reference_is_the_policy_right_after_each_boundary_and_fixed_when_off(every):
    codec = gym.make("LMEnv/Digits-v0").unwrapped.codec
    torch.manual_seed(0)
    lm = build_default_model(codec, seed=0, n_layer=1, n_embd=32, n_head=2, n_positions=96)
    start, ref = frozen_copy(lm), frozen_copy(lm)
    ctx = RunContext("LMEnv/Digits-v0", {"vocab_size": codec.vocab_size}, None, codec, 0, torch.device("cpu"))
    judge = "Answer: {response}\nTo: {prompt}\nScore: "  # a continuous self-judge: every group gives a pair
    cfg = OnlineDPOConfig(
        num_envs=8, group_size=4, lr=1e-2, beta=1.0, ranker="self", judge_template=judge, ref_update_every=every
    )
    learner = OnlineDPOLearner(cfg, lm, ctx)
    for it in range(4):
        m = learner.iteration(it, ref)
        assert not same(lm, start), "the policy did not train"
        if every == 0:
            assert same(ref, start) and "ref/updated" not in m  # today's run: the RL start throughout
        elif (it + 1) % every == 0:
            assert same(ref, lm) and m["ref/updated"] == 1.0
            snapshot = frozen_copy(lm)
        else:
            assert not same(ref, lm) and m["ref/updated"] == 0.0
            assert same(ref, start if it < every else snapshot)  # the last boundary's policy
        assert not any(p.requires_grad for p in ref.parameters())  # still frozen


def smoke(out, *overrides):
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        return compose(
            config_name="config",
            overrides=[
                f"output_dir={out}",
                "+experiment=smoke",
                "env=digits",
                "model.threads=1",
                "agent=self_rewarding",
                "agent.num_envs=8",
                "agent.group_size=4",
                "agent.lr=1e-3",
                "train.eval_every=0",
                "train.keep_checkpoints=10",
                *overrides,
            ],
        )


def test_a_run_interrupted_between_boundaries_resumes_with_the_moved_reference_bit_for_bit(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    run(smoke(full, "agent.ref_update_every=2", "train.iterations=4"))
    run(smoke(part, "agent.ref_update_every=2", "train.iterations=3"))  # stops one iteration after a boundary
    run(smoke(part, "agent.ref_update_every=2", "train.iterations=4"))  # resumes at step 3
    a = load_file(full / "checkpoints" / "step-000004" / "model.safetensors")
    b = load_file(part / "checkpoints" / "step-000004" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # step 3's checkpoint holds the reference of iteration 3: step 2's policy, not the RL start
    ref3 = load_file(part / "checkpoints" / "step-000003" / "reference.safetensors")
    policy2 = load_file(full / "checkpoints" / "step-000002" / "model.safetensors")
    start = load_file(part / "checkpoints" / "reference.safetensors")
    assert all(torch.equal(ref3[k], policy2[f"lm.{k}"]) for k in ref3)
    assert not all(torch.equal(ref3[k], start[k]) for k in ref3)


def test_off_writes_no_reference_into_the_checkpoints(tmp_path):
    run(smoke(tmp_path, "train.iterations=1"))
    assert not (tmp_path / "checkpoints" / "step-000001" / "reference.safetensors").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["agent.ref_update_every=-1"], r"agent.ref_update_every must be an integer >= 0"),
        (["agent.ref_update_every=1", "model.lora.r=4"], r"agent.ref_update_every .* model.lora.r=0"),
    ],
)
def test_bad_reference_updates_fail_in_validate_naming_the_keys(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        to_run_config(smoke(tmp_path, *overrides))
    assert not (tmp_path / "checkpoints").exists()
