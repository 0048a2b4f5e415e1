"""Data parallelism on torch.distributed (gloo on CPU): 2 processes train what 1 process trains.

Each case runs the same config under ``torchrun`` with 1 and with 2 processes (each rank collects its
half of the rollout groups, the update runs under DDP) and compares the final weights. Sampling draws
one uniform per global row under torchrun, so both worlds sample the same tokens; the updates then
agree up to float rounding (gradients summed in another order).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from agents.run.distributed import Dist, check_device, init_distributed

SMOKE = ["+experiment=smoke", "env=digits", "model.threads=1", "sft.steps=10", "train.iterations=3"]
SMOKE_NO_ROLLOUT = [
    *SMOKE[1:],
    *("sft.batch_size=8", "sft.warmup_steps=1", "train.eval_every=1", "train.eval_episodes=8"),
    *("train.checkpoint_every=1", "train.progress=false", "eval.num_episodes=8"),
]
CASES = {
    "grpo": ["agent=grpo", "agent.num_envs=16", "agent.group_size=4", "agent.num_minibatches=2"],
    # one minibatch per epoch: every step sees the whole batch in both worlds
    "ppo": ["agent=ppo", "agent.num_envs=16", "agent.group_size=4", "agent.num_minibatches=1", "agent.ppo_epochs=2"],
    "rft": [
        "agent=rft",
        "agent.num_envs=16",
        "agent.group_size=4",
        "agent.prompts_per_round=8",
        "agent.sft_steps=3",
        "agent.batch_size=8",
        "agent.keep=best",
        "agent.accumulate=true",
    ],
}
# #22's options whose normalisers must be global: episode-count aggregation, batch whitening, IS weights, KL
CASES["grpo_variants"] = [
    *CASES["grpo"],
    "agent.loss_agg=seq_mean",
    "agent.adv_whiten=true",
    "agent.clip_eps_high=0.28",
    "agent.entropy_coef=0.01",
    "agent.is_correction=tis",
    "agent.kl_coef=0.05",
    "agent.kl_estimator=k2",
]
# near-greedy sampling: both ranks keep the same samples, which the merged round must count once
CASES["rft_duplicates"] = [*CASES["rft"], "agent.temperature=0.05"]
# DAPO's dynamic sampling: the kept groups and the refills are the one-process ones, shared out equally
CASES["dynamic_sampling"] = [*CASES["grpo"], "agent.dynamic_sampling=true", "agent.dynamic_max_rollouts=2"]
# online DPO with the policy as its own judge: pairs on each rank, the loss over every rank's pairs; the
# reference moves to the policy after iteration 2 (Yuan et al.), on every rank
CASES["self_rewarding"] = [
    "agent=self_rewarding",
    "agent.num_envs=16",
    "agent.group_size=4",
    "agent.iterations=2",
    "agent.lr=1e-3",
    "agent.ref_update_every=2",
]
# online DPO ranked by the env on a 0/1 reward: most groups tie, so a rank often has no pair (placeholder step)
CASES["online_dpo_ties"] = [
    *("agent=online_dpo", "env=target_word", "agent.num_envs=16", "agent.group_size=4", "agent.lr=1e-3"),
]
SLOW_CASES = {"online_dpo_ties"}
# offline DPO: each rank scores its share of the batch's pairs (the pairs file is written per test)
CASES["dpo"] = ["agent=dpo", "agent.batch_size=6", "agent.lr=1e-3"]


def digit_pairs(path: Path, n: int = 12) -> str:
    """A preference JSONL for offline DPO on the digits env: digits chosen over letters."""
    with open(path, "w") as f:
        for i in range(n):
            chosen, rejected = "".join(str((i + k) % 10) for k in range(6)), "abcdef"[i % 3 :]
            f.write(json.dumps({"prompt": "Write a number:\n", "chosen": chosen, "rejected": rejected}) + "\n")
    return str(path)


def torchrun(nproc: int, out: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    cmd += ["-m", "agents.train", f"output_dir={out}", f"hydra.run.dir={out}", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def weights(run_dir: Path, step: int = 3) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / f"step-{step:06d}" / "model.safetensors")


FSDP = ["train.strategy=fsdp"]


@pytest.mark.parametrize(
    "agent, strategy",
    [(agent, "ddp") for agent in sorted(set(CASES) - SLOW_CASES)]
    + [pytest.param(agent, "ddp", marks=pytest.mark.slow) for agent in sorted(SLOW_CASES)]
    + [("grpo", "fsdp")]
    + [pytest.param(a, "fsdp", marks=pytest.mark.slow) for a in ("ppo", "rft", "dpo", "self_rewarding")],
)
def test_two_processes_end_where_one_process_ends(tmp_path, agent, strategy):
    # FSDP2: each rank holds half of every weight, gradient and Adam state; the update is the same
    one, two = tmp_path / "one", tmp_path / "two"
    case = [*SMOKE, *CASES[agent]]
    if agent == "dpo":  # +experiment=smoke sets agent.num_envs, which offline DPO lacks: the rest of it
        case = [*SMOKE_NO_ROLLOUT, *CASES[agent], f"agent.data={digit_pairs(tmp_path / 'pairs.jsonl')}"]
    for nproc, out in ((1, one), (2, two)):
        done = torchrun(nproc, out, *case, *(FSDP if nproc == 2 and strategy == "fsdp" else []))
        assert done.returncode == 0, done.stderr[-3000:]
    a, b = weights(one), weights(two)
    start = load_file(one / "checkpoints" / "reference.safetensors")
    assert a.keys() == b.keys()
    moved = torch.cat([(a[f"lm.{k}"] - start[k]).abs().flatten() for k in start])
    diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    # The same steps up to float rounding (gradients summed in another order). Adam moves a weight whose
    # gradient is ~0 by up to +-lr whichever sign the rounding gives it, so a few weights differ by ~lr;
    # on average the two runs agree a thousand times closer than either moved.
    assert float(moved.mean()) > 0, "it did not train"
    assert float(diff.mean()) < 1e-3 * float(moved.mean()), f"{agent}: {diff.mean()} vs moved {moved.mean()}"
    assert float(diff.max()) < 1e-4, f"{agent}: max difference {diff.max()}"
    # the logged metrics are the one-process run's too (RFT: samples kept by both ranks count once)
    logged = [[r for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())] for d in (one, two)]
    keys = ("rollout/return_mean", "rft/kept", "rft/kept_return", "rft/duplicates", "reinforce/kl_ref")
    keys += ("dynamic/kept_groups", "dynamic/extra_rollouts", "dynamic/sampled_groups", "pairs/formed")
    keys += ("pairs/chosen_return", "dpo/loss", "dpo/accuracy", "dpo/reward_margin", "rank/spearman")
    for x, y in zip(*logged, strict=True):
        for k in keys:
            if k in x and x[k] is None:  # NaN (e.g. a rank correlation of tied scores)
                assert y[k] is None, f"{agent}: {k} {x[k]} vs {y[k]}"
            elif k in x:
                assert abs(x[k] - y[k]) < 1e-4, f"{agent}: {k} {x[k]} vs {y[k]}"
    # rank 0 alone wrote the run directory; it records the world it ran in
    assert json.loads((two / "eval.json").read_text())["hardware"]["world_size"] == 2
    assert not list(two.glob("metrics*.jsonl"))[1:]


def test_a_reverse_curriculum_is_the_one_process_schedule_on_every_rank(tmp_path):
    # R3's mixed start states: each rank plays half the episodes, and every rank's schedule must still hold
    # all of them, in one-process order (a staged schedule advances on it)
    smoke = [o for o in SMOKE if not o.startswith("env=")]
    case = [*smoke, *CASES["grpo"], "env=math_r3", "+env.kwargs.max_new_tokens=24"]
    states = []
    for nproc, out in ((1, tmp_path / "one"), (2, tmp_path / "two")):
        done = torchrun(nproc, out, *case)
        assert done.returncode == 0, done.stderr[-3000:]
        states.append(json.loads((out / "checkpoints" / "step-000003" / "state.json").read_text()))
    one, two = (s["learner"]["curriculum"] for s in states)
    assert sum(len(h) for h in one["history"].values()) == 3 * 16  # every episode of the 3 rollouts
    assert one == two


def test_resume_on_another_world_size_continues_the_run(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    # LMEnv/TargetWord-v0 has 8 test problems: the 2-process evaluation plays them 4 per rank
    case = [*SMOKE, *CASES["grpo"], "env=target_word"]  # 3 iterations (SMOKE); the interrupted run stops at 2
    # the same launch through the CLI: lm-envs train --nproc-per-node 2 ...
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    cli = [sys.executable, "-m", "agents.cli", "train", "--nproc-per-node", "2", f"output_dir={full}"]
    done = subprocess.run([*cli, f"hydra.run.dir={full}", *case], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "held-out accuracy" in done.stdout and done.stdout.count("held-out accuracy") == 1  # rank 0 reports
    assert torchrun(2, part, *case, "train.iterations=2").returncode == 0
    done = torchrun(1, part, *case)  # resumes at step 2 with one process
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = weights(full), weights(part)
    diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    assert float(diff.mean()) < 1e-8 and float(diff.max()) < 1e-4  # see the test above
    # the sharded evaluation gathers the one-process records, in order (greedy)
    evals = [json.loads((d / "eval.json").read_text()) for d in (full, part)]
    assert [e["hardware"]["world_size"] for e in evals] == [2, 1]
    assert len(evals[0]["records"]) == 8
    keys = ("index", "problem_id", "completion", "return")
    assert [[r[k] for k in keys] for r in evals[0]["records"]] == [[r[k] for k in keys] for r in evals[1]["records"]]


def test_fsdp_checkpoints_hold_whole_weights_and_resume_on_another_world_size(tmp_path):
    full, part, ddp = tmp_path / "full", tmp_path / "part", tmp_path / "ddp"
    case = [*SMOKE, *CASES["grpo"], "agent.kl_coef=0.05", *FSDP]  # the KL reference is a sharded copy
    assert torchrun(2, full, *case).returncode == 0
    assert torchrun(2, part, *case, "train.iterations=2").returncode == 0
    done = torchrun(1, part, *case)  # resumes at step 2 with one process: whole weights and Adam state load
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = weights(full), weights(part)
    start = load_file(full / "checkpoints" / "reference.safetensors")
    assert {f"lm.{k}" for k in start} == set(a) and all(a[f"lm.{k}"].shape == v.shape for k, v in start.items())
    diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    assert float(diff.mean()) < 1e-8 and float(diff.max()) < 1e-4
    assert (full / "model" / "config.json").is_file()  # rank 0 exported the gathered weights
    hardware = json.loads((full / "eval.json").read_text())["hardware"]
    whole = sum(v.numel() for k, v in a.items() if "lm_head" not in k)  # lm_head is tied to the embedding
    assert hardware["strategy"] == "fsdp" and hardware["params_on_rank0"] <= whole // 2 + 1000  # rank 0 held half
    # the other strategy's checkpoint: refused before any work, naming the key
    assert torchrun(2, ddp, *SMOKE, *CASES["grpo"], "train.iterations=1").returncode == 0
    done = torchrun(2, ddp, *SMOKE, *CASES["grpo"], *FSDP)
    assert done.returncode != 0 and "resume with train.strategy=ddp" in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["agent.num_envs=4", "agent.group_size=4"], r"makes 1 groups of 4, fewer than the 2 processes"),
        (["agent.num_envs=12", "agent.group_size=4"], r"world size 2 does not divide.*multiple of 8"),
    ],
)
def test_a_batch_the_world_cannot_split_fails_before_any_work(tmp_path, overrides, message):
    import re

    done = torchrun(2, tmp_path / "run", *SMOKE, "agent=grpo", *overrides)
    assert done.returncode != 0
    assert re.search(message, done.stderr), done.stderr[-2000:]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_one_process_is_rank_0_of_1_and_touches_no_process_group(monkeypatch):
    for key in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    dist, device = init_distributed("cpu")
    assert dist == Dist() and device == "cpu" and not dist.distributed and dist.is_main
    assert dist.sum_floats({"a": 1.0}) == {"a": 1.0} and dist.gather_objects(3) == [3]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_names_the_fix():
    message = r"model.device=.cuda. but this machine has no CUDA device; set model.device=cpu"
    with pytest.raises(ValueError, match=message):
        check_device("cuda")
    with pytest.raises(ValueError, match=r"not a torch device"):
        check_device("gpu0")


@pytest.mark.slow
def test_a_moved_reference_resumes_under_fsdp_on_another_world_size(tmp_path):
    # self-rewarding's reference moves after iteration 2; the run stops at 3 and resumes with one process:
    # the sharded reference is rebuilt from step 3's gathered copy, not from the RL start
    full, part = tmp_path / "full", tmp_path / "part"
    case = [*SMOKE, *CASES["self_rewarding"], *FSDP, "train.keep_checkpoints=10", "train.iterations=4"]
    assert torchrun(2, full, *case).returncode == 0
    assert torchrun(2, part, *case[:-1], "train.iterations=3").returncode == 0
    done = torchrun(1, part, *case)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = weights(full, 4), weights(part, 4)
    diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    assert float(diff.mean()) < 1e-8 and float(diff.max()) < 1e-4
    moved = load_file(part / "checkpoints" / "step-000003" / "reference.safetensors")
    policy = weights(full, 2)
    assert all(torch.equal(v, policy[f"lm.{k}"]) for k, v in moved.items())
