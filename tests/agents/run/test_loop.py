"""Hydra-driven runs: every config option composes, runs write their artifacts, resume is exact,
bad overrides and NaN losses fail clearly, and every algorithm learns the trivially learnable env."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError
from safetensors.torch import load_file

import lm_envs
from agents.learners.base import Learner, RunContext, make_learner
from agents.learners.ppo import PPOConfig
from agents.learners.reinforce import ReinforceConfig
from agents.learners.rft import RFTConfig
from agents.policy.models import build_default_model, export_model, frozen_copy
from agents.run import run, to_run_config
from agents.run.checkpoint import CheckpointError, read_checkpoint
from agents.run.config import RunConfig, TrainSection, register_configs
from agents.run.logger import read_metrics
from agents.targets import load_target

register_configs()
CONF = Path(__file__).resolve().parents[3] / "conf"
OPTIONS = {g: sorted(p.stem for p in (CONF / g).glob("*.yaml")) for g in ("env", "agent", "model", "experiment")}


def make_cfg(tmp_path, *overrides):
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        return compose(config_name="config", overrides=[f"output_dir={tmp_path}", *overrides])


@pytest.mark.parametrize("group", ["env", "agent", "model", "experiment"])
def test_every_group_option_composes_and_validates(tmp_path, group):
    assert OPTIONS[group], f"conf/{group}/ is empty"
    for option in OPTIONS[group]:
        required = {  # options whose ${required:...} key has no default: given here as a user would
            ("model", "hf"): ["model.name_or_path=some/model"],
            ("env", "math_orm"): ["env.kwargs.reward_kwargs.orm_path=some/orm"],
            ("env", "math_prm_outcome"): ["env.kwargs.reward_kwargs.prm_path=some/prm"],
            ("agent", "distill"): ["agent.teacher=smollm2"],
            ("agent", "dpo"): ["agent.data=synthetic", "env=chat"],
        }
        extra = required.get((group, option), [])
        key = f"+{group}" if group == "experiment" else group
        cfg = to_run_config(make_cfg(tmp_path, f"{key}={option}", *extra))
        assert isinstance(cfg, RunConfig)


@pytest.mark.parametrize(
    "override, key",
    [("agent.lrr=0.1", "lrr"), ("train.iterations=many", "iterations"), ("env.idd=x", "idd"), ("agent=sac", "sac")],
)
def test_invalid_override_fails_before_any_work_naming_the_key(tmp_path, override, key):
    with pytest.raises((ConfigCompositionException, ConfigKeyError, ValidationError)) as err:
        make_cfg(tmp_path / "run", override)
    assert key in str(err.value) + str(err.value.__cause__)
    assert not (tmp_path / "run").exists()


def smoke(tmp_path, *overrides):
    return make_cfg(tmp_path, "+experiment=smoke", "env=digits", *overrides)


# offline DPO plays no rollouts (it has no agent.num_envs, which the smoke experiment sets): its own
# run-loop test is tests/agents/learners/test_dpo.py::test_dpo_through_the_run_loop_raises_the_envs_reward
@pytest.mark.parametrize("agent", [a for a in OPTIONS["agent"] if a != "dpo"])
def test_smoke_run_writes_every_artifact_and_changes_parameters(tmp_path_factory, agent):
    tmp_path = tmp_path_factory.mktemp("run")
    teacher = tmp_path_factory.mktemp("teacher")
    if agent == "distill":  # a teacher with the student's tokenizer: another fresh default model
        codec = gym.make("LMEnv/Digits-v0").unwrapped.codec
        export_model(build_default_model(codec, seed=1), codec, teacher)
    sizes = {
        "online_dpo": ["agent.num_envs=8", "agent.group_size=4"],
        "self_rewarding": ["agent.num_envs=8", "agent.group_size=4"],
        "distill": ["agent.num_envs=8", f"agent.teacher={teacher}"],
        "grpo": ["agent.num_envs=8", "agent.group_size=4"],
        "dapo": ["agent.num_envs=8", "agent.group_size=4"],  # dynamic sampling needs groups
        "dr_grpo": ["agent.num_envs=8", "agent.group_size=4"],
        "rloo": ["agent.num_envs=8", "agent.group_size=4"],
        "rft": [
            "agent.num_envs=8",
            "agent.prompts_per_round=2",
            "agent.group_size=4",
            "agent.sft_steps=2",
            "agent.keep=best",
        ],
    }
    result = run(smoke(tmp_path, f"agent={agent}", *sizes.get(agent, ["agent.num_envs=8", "agent.group_size=1"])))
    for name in ("config.yaml", "metrics.jsonl", "curves.png", "eval.json", "tokenizer/tokenizer.json"):
        assert (tmp_path / name).exists(), name
    assert list((tmp_path / "tensorboard").iterdir())
    ckpts = tmp_path / "checkpoints"
    assert (ckpts / "latest").read_text() == "step-000002"
    start, end = load_file(ckpts / "reference.safetensors"), load_file(ckpts / "step-000002" / "model.safetensors")
    assert any(not torch.equal(v, end[f"lm.{k}"]) for k, v in start.items() if f"lm.{k}" in end)
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["env_id"] == "LMEnv/Digits-v0" and saved["metrics"]["num_episodes"] == 1
    assert result["config_hash"] == saved["config_hash"] and len(saved["config_hash"]) == 64
    assert any("rollout/return_mean" in r for r in read_metrics(tmp_path / "metrics.jsonl"))


@pytest.mark.parametrize(
    "model, name",
    [
        ([], "lm-envs/tiny-gpt2"),
        (["model.arch=llama", "model.size.n_layer=2", "model.size.n_embd=64"], "lm-envs/tiny-llama-2x64"),
        (["agent=ppo", "agent.value_lr=1e-3"], "lm-envs/tiny-gpt2"),  # two Adam groups saved and restored
        # expert iteration: the pool of kept samples and the AdamW continued across rounds are restored
        (
            [
                "agent=rft",
                "agent.keep=best",
                "agent.accumulate=true",
                "agent.demo_fraction=0.25",
                "agent.prompts_per_round=2",
                "agent.sft_steps=2",
                "agent.batch_size=4",
            ],
            "lm-envs/tiny-gpt2",
        ),
    ],
)
def test_resume_continues_the_same_run(tmp_path, model, name):
    full, part = tmp_path / "full", tmp_path / "part"
    agent = [] if any(o.startswith("agent=") for o in model) else ["agent=grpo"]
    overrides = [*model, *agent, "agent.num_envs=8", "agent.group_size=4", "train.iterations=4", "sft.steps=6"]
    assert run(smoke(full, *overrides))["model"] == name
    run(smoke(part, *overrides[:-2], "train.iterations=2", "sft.steps=6"))
    run(smoke(part, *overrides))  # resumes from step 2, runs 3 and 4
    a = load_file(full / "checkpoints" / "step-000004" / "model.safetensors")
    b = load_file(part / "checkpoints" / "step-000004" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    pools = [
        json.loads((d / "checkpoints" / "step-000004" / "state.json").read_text())["learner"].get("rft_pool")
        for d in (full, part)
    ]
    assert pools[0] == pools[1] and (len(pools[0]) > 2 if "agent.accumulate=true" in model else pools[0] is None)


def test_resume_with_another_optimizer_layout_names_the_fix(tmp_path):
    overrides = ["agent=ppo", "agent.num_envs=8", "agent.group_size=4", "sft.steps=2", "train.iterations=1"]
    run(smoke(tmp_path, *overrides))
    config = (tmp_path / "config.yaml").read_text()
    with pytest.raises(ValueError, match=r"optimizer state does not match.*agent.value_lr"):
        run(smoke(tmp_path, *overrides[:-1], "train.iterations=2", "agent.value_lr=1e-3"))
    assert (tmp_path / "config.yaml").read_text() == config  # the refused settings are not recorded as the run's


@pytest.mark.parametrize(
    "agent, used",
    [
        (PPOConfig(), True),
        (PPOConfig(kl_coef=0.0), False),
        (PPOConfig(kl_coef=0.0, kl_target=1.0), True),  # the adaptive controller measures the KL
        (ReinforceConfig(), False),
        (ReinforceConfig(kl_coef=0.1), True),
        (RFTConfig(), False),
        (RFTConfig(from_base=True), True),
    ],
)
def test_uses_reference(tmp_path, agent, used):
    cfg = to_run_config(smoke(tmp_path))
    codec = lm_envs.load_codec()
    ctx = RunContext("LMEnv/Digits-v0", {}, None, codec, 0, torch.device("cpu"))
    agent.num_envs, agent.group_size = 8, 4
    learner = make_learner(agent, build_default_model(codec, seed=0, n_layer=1, n_embd=32), ctx)
    assert isinstance(learner, Learner) and cfg is not None
    assert learner.uses_reference() is used


def test_ppo_without_kl_builds_no_reference_and_a_resume_that_needs_one_reads_the_saved_one(tmp_path, monkeypatch):
    import agents.run.loop as run_module

    def forbidden(model):
        raise AssertionError("frozen_copy was called")

    def kl_logged(path):
        return [r["ppo/kl_ref"] for r in read_metrics(path / "metrics.jsonl") if "ppo/kl_ref" in r]

    monkeypatch.setattr(run_module, "frozen_copy", forbidden)
    overrides = ["agent=ppo", "agent.num_envs=8", "agent.group_size=4", "sft.steps=6"]
    run(smoke(tmp_path, *overrides, "agent.kl_coef=0.0"))  # grouped PPO, no reference model
    assert kl_logged(tmp_path) == [0.0, 0.0]
    ckpts = tmp_path / "checkpoints"
    start = load_file(ckpts / "reference.safetensors")  # still written: the RL starting point
    trained = load_file(ckpts / "step-000002" / "model.safetensors")
    assert any(not torch.equal(v, trained[f"lm.{k}"]) for k, v in start.items() if f"lm.{k}" in trained)

    built = []
    monkeypatch.setattr(run_module, "frozen_copy", lambda model: built.append(frozen_copy(model)) or built[-1])
    # turning the adaptive controller on is a change of settings: asked for on purpose
    run(
        smoke(
            tmp_path,
            *overrides,
            "agent.kl_coef=0.0",
            "agent.kl_target=1.0",
            "train.iterations=3",
            "resume_with_changes=true",
        )
    )
    assert len(built) == 1  # the adaptive controller measures the KL: it needs the reference
    ref = built[0].state_dict()
    assert all(torch.equal(ref[k], v) for k, v in start.items())  # the saved start, not the step-2 weights
    assert kl_logged(tmp_path)[2] != 0.0

    # the other way: a resume keeps the saved beta, so a run started with a KL keeps its reference
    other = tmp_path / "other"
    run(smoke(other, *overrides))
    run(smoke(other, *overrides, "agent.kl_coef=0.0", "train.iterations=3", "resume_with_changes=true"))
    assert len(built) == 3 and kl_logged(other)[2] != 0.0


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import agents.learners.reinforce as run_module

    run(smoke(tmp_path, "agent=reinforce", "train.iterations=2"))
    good = (tmp_path / "checkpoints" / "latest").read_text()

    def broken(*args, **kwargs):
        raise FloatingPointError("REINFORCE loss became nan; lower agent.lr.")

    monkeypatch.setattr(run_module, "reinforce_update", broken)
    with pytest.raises(FloatingPointError, match="lower agent.lr"):
        run(smoke(tmp_path, "agent=reinforce", "train.iterations=4"))
    assert (tmp_path / "checkpoints" / "latest").read_text() == good
    assert (tmp_path / "checkpoints" / good / "model.safetensors").exists()


@pytest.mark.parametrize("override", ["agent.ptx_coef=1.0", "sft.replay_rows=4"])
def test_rehearsal_on_a_task_without_documents_names_the_fix(tmp_path, override):
    with pytest.raises(
        ValueError, match=r"has none \(Task.documents\(\) is empty\); turn (agent.ptx_coef|sft.replay_rows)"
    ):
        run(smoke(tmp_path, "agent=grpo", "agent.num_envs=8", "agent.group_size=4", "sft.steps=2", override))


def test_bad_ptx_rows_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"agent.ptx_rows needs rows >= 1"):
        run(make_cfg(tmp_path, "+experiment=qa_abstain", "agent.ptx_rows=0", "pretrain.steps=2", "model.threads=1"))
    metrics = tmp_path / "metrics.jsonl"
    assert not metrics.exists() or not any("pretrain/loss" in r for r in read_metrics(metrics))
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_real_nan_in_the_loss_is_detected(tmp_path):
    cfg = smoke(tmp_path, "agent=grpo", "agent.num_envs=8", "agent.group_size=4", "agent.lr=1e30", "train.iterations=3")
    with pytest.raises(FloatingPointError, match="lower agent.lr"):
        run(cfg)


@pytest.mark.parametrize(
    "agent, extra",
    [
        ("grpo", ["agent.num_envs=32", "agent.group_size=8"]),
        ("rloo", ["agent.num_envs=32", "agent.group_size=4"]),
        ("reinforce", ["agent.num_envs=32"]),
        ("ppo", ["agent.num_envs=32", "agent.kl_coef=0.0", "agent.lr=1e-3"]),
        # RAFT: the best of 8 samples per prompt, fine-tuned on; a round per iteration
        ("rft", ["agent.keep=best", "agent.prompts_per_round=8", "agent.group_size=8", "agent.sft_steps=8"]),
    ],
)
def test_every_algorithm_learns_the_trivially_learnable_env(tmp_path, agent, extra):
    result = run(
        make_cfg(
            tmp_path, "+experiment=learnable", f"agent={agent}", "train.iterations=25", "train.progress=false", *extra
        )
    )
    returns = [r["rollout/return_mean"] for r in read_metrics(tmp_path / "metrics.jsonl") if "rollout/return_mean" in r]
    assert returns[0] < 0.2  # a random policy rarely writes digits
    assert max(returns[-3:]) > 0.8, returns  # near the optimum of 1.0
    assert result["metrics"]["mean_return"] > 0.8


def test_runs_of_three_seeds_combine_into_a_valid_leaderboard_submission(tmp_path):
    from agents.cli import main as cli_main
    from leaderboard.validate import validate_submission

    dirs = [tmp_path / f"seed{s}" for s in range(3)]
    for s, d in enumerate(dirs):
        run(smoke(d, "agent=reinforce", f"seed={s}", "train.iterations=1"))
    out = tmp_path / "submission.json"
    assert cli_main(["results", *map(str, dirs), "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [b["seed"] for b in doc["seeds"]] == [0, 1, 2] and doc["env"]["id"] == "LMEnv/Digits-v0"
    validate_submission(out.read_bytes())  # the leaderboard accepts it as is
    # every seed names its trained model, which the leaderboard's verification re-runs to the same score
    from leaderboard.verify import checkpoint_sha256, evaluate_checkpoint

    block = doc["seeds"][1]
    assert block["checkpoint"] == {"uri": str(dirs[1] / "model"), "sha256": checkpoint_sha256(dirs[1] / "model")}
    again = evaluate_checkpoint(block["checkpoint"]["uri"], "LMEnv/Digits-v0", seed=1)
    assert again["mean_return"] == block["score"] and again["episodes_hash"] == block["episodes_hash"]
    run(smoke(tmp_path / "other", "agent=reinforce", "agent.lr=0.5", "train.iterations=1"))
    assert cli_main(["results", str(dirs[0]), str(tmp_path / "other"), "-o", str(out)]) == 2


def test_train_cli_runs_a_job_and_prints_accuracy_and_return_before_and_after_rl(tmp_path, capsys):
    from agents import train

    train.cli(["+experiment=smoke", "env=digits", "agent.num_envs=8", f"hydra.run.dir={tmp_path}"])
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "eval.json").read_text())
    before, after = result["before_rl"], result["metrics"]
    line = (
        f"held-out accuracy: {before['accuracy']:.3f} after SFT -> {after['accuracy']:.3f} after RL, "
        f"mean return {before['mean_return']:.3f} -> {after['mean_return']:.3f} ({after['num_problems']} test problems)"
    )
    assert line in out and str(tmp_path) in out


def test_train_cli_on_an_env_without_success_prints_mean_return_not_accuracy(tmp_path, capsys):
    from agents import train

    # the chat env's episodes are scored by a reward model: no notion of success, so no accuracy to print
    train.cli(["+experiment=smoke", "env=chat", "sft.steps=0", "agent.num_envs=8", f"hydra.run.dir={tmp_path}"])
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "eval.json").read_text())
    before, after = result["before_rl"], result["metrics"]
    line = f"held-out mean return: {before['mean_return']:.3f} after SFT -> {after['mean_return']:.3f} after RL ("
    assert line in out and "held-out accuracy" not in out


def test_lr_schedule_decays_the_agent_lr_over_the_iterations(tmp_path):
    run(
        smoke(
            tmp_path,
            "agent=ppo",
            "agent.num_envs=8",
            "agent.value_lr=1e-3",
            "train.lr_schedule=linear",
            "train.iterations=3",
        )
    )
    lrs = [r["train/lr"] for r in read_metrics(tmp_path / "metrics.jsonl") if "train/lr" in r]
    lr = OmegaConf.load(tmp_path / "config.yaml").agent.lr
    assert lrs == pytest.approx([lr, 0.55 * lr, 0.1 * lr])
    groups = torch.load(tmp_path / "checkpoints" / "step-000003" / "optimizer.pt", weights_only=True)["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([0.1 * lr, 0.1 * 1e-3])  # the critic's value_lr decays too


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr_schedule=warmup", "unknown train.lr_schedule"),
        ("train.lr_end_ratio=2", "train.lr_end_ratio must be in"),
        ("agent.demo_fraction=1.5", "demo_fraction must be in"),
    ],
)
def test_bad_schedule_or_rft_values_fail_before_any_training(tmp_path, override, message):
    agent = ["agent=rft"] if override.startswith("agent.") else []
    with pytest.raises(ValueError, match=message):
        run(smoke(tmp_path, *agent, override))
    assert not (tmp_path / "metrics.jsonl").exists() and not (tmp_path / "checkpoints").exists()


def test_lr_factor_schedules():
    from agents.run.loop import lr_factor

    train = TrainSection(iterations=5, lr_end_ratio=0.0)
    for schedule, expected in [
        ("constant", [1] * 5),
        ("linear", [1, 0.75, 0.5, 0.25, 0]),
        ("cosine", [1, 0.854, 0.5, 0.146, 0]),
    ]:
        train.lr_schedule = schedule
        assert [lr_factor(train, i) for i in range(5)] == pytest.approx(expected, abs=1e-3)
    assert lr_factor(TrainSection(iterations=1, lr_schedule="cosine"), 0) == 1.0  # one iteration: the full lr


def test_a_run_killed_mid_schedule_resumes_the_same_lr_and_pool(tmp_path, monkeypatch):
    import agents.learners.rft as run_module

    overrides = [
        "agent=rft",
        "agent.keep=best",
        "agent.accumulate=true",
        "agent.prompts_per_round=2",
        "agent.group_size=4",
        "agent.sft_steps=2",
        "agent.batch_size=4",
        "train.lr_schedule=cosine",  # a function of the iteration: the resumed run continues it
        "train.iterations=4",
        "train.checkpoint_every=2",
        "sft.steps=6",
    ]
    full, part = tmp_path / "full", tmp_path / "part"
    run(smoke(full, *overrides))
    real = run_module.rft_round

    def killed_at_round_2(model, env_id, agent, it, *args, **kwargs):
        if it == 2:
            raise KeyboardInterrupt
        return real(model, env_id, agent, it, *args, **kwargs)

    monkeypatch.setattr(run_module, "rft_round", killed_at_round_2)
    with pytest.raises(KeyboardInterrupt):
        run(smoke(part, *overrides))
    monkeypatch.setattr(run_module, "rft_round", real)
    run(smoke(part, *overrides))  # resumes from the checkpoint of step 2
    lrs = [[r["train/lr"] for r in read_metrics(d / "metrics.jsonl") if "train/lr" in r] for d in (full, part)]
    assert lrs[1] == lrs[0] and lrs[0][0] > lrs[0][-1]
    a = load_file(full / "checkpoints" / "step-000004" / "model.safetensors")
    b = load_file(part / "checkpoints" / "step-000004" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    pools = [
        json.loads((d / "checkpoints" / "step-000004" / "state.json").read_text())["learner"]["rft_pool"]
        for d in (full, part)
    ]
    assert pools[0] == pools[1]


@pytest.mark.parametrize(
    "agent",
    [
        ["agent=grpo", "agent.kl_coef=0.1"],
        ["agent=ppo", "agent.kl_coef=0.1"],
        ["agent=rft", "agent.from_base=true", "agent.prompts_per_round=2", "agent.sft_steps=2", "agent.keep=best"],
    ],
)
def test_lora_trains_only_adapters_against_the_adapters_off_reference_and_resumes_exactly(tmp_path, monkeypatch, agent):
    import agents.run.loop as run_module

    def forbidden(model):
        raise AssertionError("LoRA needs no copy of the weights for its reference")

    monkeypatch.setattr(run_module, "frozen_copy", forbidden)
    overrides = [*agent, "model.lora.r=4", "agent.num_envs=8", "agent.group_size=4", "sft.steps=6"]
    full, part = tmp_path / "full", tmp_path / "part"
    run(smoke(full, *overrides, "train.iterations=4"))
    run(smoke(part, *overrides, "train.iterations=2"))
    run(smoke(part, *overrides, "train.iterations=4"))  # resumes: the reference is the saved RL start
    a = read_checkpoint(full / "checkpoints" / "step-000004")["weights"]
    b = read_checkpoint(part / "checkpoints" / "step-000004")["weights"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    start = load_file(full / "checkpoints" / "reference.safetensors")  # after SFT, its adapter folded in
    # the checkpoint file holds the trainable weights only (adapters, a value head): the base is the reference's
    stored = load_file(full / "checkpoints" / "step-000004" / "model.safetensors")
    assert stored and all("lora_" in k or k.startswith(("value", "critic")) for k in stored)
    assert sum(v.numel() for v in stored.values()) < sum(v.numel() for v in start.values()) / 10
    ckpt = full / "checkpoints" / "step-000004"
    target = load_target(ckpt)  # lm-envs evaluate on the checkpoint: adapters over the reference
    own = {k: v for k, v in target.model.state_dict().items() if "lora_" in k}
    assert own and all(torch.equal(v, a[f"lm.{k}"]) for k, v in own.items())
    (full / "checkpoints" / "reference.safetensors").rename(full / "ref.bak")  # without its base: refused by name
    with pytest.raises(CheckpointError, match=r"reference\.safetensors \(the frozen weights"):
        read_checkpoint(ckpt)
    (full / "ref.bak").rename(full / "checkpoints" / "reference.safetensors")
    a = {k.removeprefix("lm."): v for k, v in a.items() if not k.startswith(("value", "critic"))}  # PPO's policy
    base = [k for k in a if "lora_" not in k]
    assert base and all(torch.equal(a[k], start[k]) for k in base)  # RL moved the adapters only
    assert all(not v.any() for k, v in start.items() if "lora_B" in k)  # RL starts at B = 0
    assert any(not torch.equal(a[k], start[k]) for k in a if "lora_" in k)
    assert any("lora_" in k for k in a)
    exported = load_file(full / "model" / "model.safetensors")
    assert exported and not any("lora_" in k or "base_layer" in k for k in exported)  # merged, plain keys
    assert (full / "model" / "tokenizer.json").exists()


def test_model_hf_without_a_path_fails_naming_the_key(tmp_path):
    with pytest.raises(Exception, match=r"model=hf needs model.name_or_path=PATH"):
        to_run_config(make_cfg(tmp_path, "model=hf"))
