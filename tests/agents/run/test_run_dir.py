"""Run directories that cannot be corrupted: one run at a time, damaged checkpoints skipped (and said so),
weights that exploded never saved as the "last good" checkpoint."""

from __future__ import annotations

import os

import pytest
import torch
from hydra import compose, initialize_config_module
from safetensors.torch import load_file

from agents.run import run
from agents.run.checkpoint import CheckpointError, CheckpointWarning
from agents.run.config import register_configs
from agents.run.lock import RunLockedError, hold_run_dir

register_configs()
GRPO = ["agent=grpo", "agent.num_envs=8", "agent.group_size=4", "sft.steps=4", "train.checkpoint_every=1"]


def smoke(tmp_path, *overrides):
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        return compose(
            config_name="config",
            overrides=[f"output_dir={tmp_path}", "+experiment=smoke", "env=digits", *GRPO, *overrides],
        )


def weights(path):
    return load_file(path / "model.safetensors")


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_second_run_on_a_directory_in_use_refuses_naming_the_holder(tmp_path):
    with hold_run_dir(tmp_path):  # another run holds it (flock: released when its process dies, even by kill -9)
        with pytest.raises(RunLockedError, match=rf"in use by another run \(pid {os.getpid()} on "):
            run(smoke(tmp_path))
        assert not (tmp_path / "config.yaml").exists() and not (tmp_path / "metrics.jsonl").exists()
    run(smoke(tmp_path, "train.iterations=1"))  # free again once the holder is gone
    assert (tmp_path / "eval.json").exists()


def test_the_cli_refuses_a_directory_in_use_before_hydra_writes_into_it(tmp_path, capsys):
    from agents.cli import main

    with hold_run_dir(tmp_path):
        assert main(["train", f"hydra.run.dir={tmp_path}", "+experiment=smoke", "env=digits"]) == 2
        assert "in use by another run" in capsys.readouterr().err
        assert not (tmp_path / ".hydra").exists() and not (tmp_path / "train.log").exists()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 3-iteration run, and a 2-iteration one (checkpoints 1 and 2) whose copies get damaged."""
    root = tmp_path_factory.mktemp("runs")
    run(smoke(root / "full", "train.iterations=3"))
    run(smoke(root / "part", "train.iterations=2"))
    return root


def damaged_copy(runs, tmp_path, damage):
    import shutil

    target = tmp_path / "run"
    shutil.copytree(runs / "part", target)
    damage(target / "checkpoints")
    return target


def truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


@pytest.mark.parametrize(
    "damage, reason, fallback",
    [
        (lambda c: truncate(c / "step-000002" / "model.safetensors"), "model.safetensors", 1),
        (lambda c: (c / "step-000002" / "optimizer.pt").write_bytes(b"garbage" * 100), "optimizer.pt", 1),
        (lambda c: truncate(c / "step-000002" / "state.json"), "state.json", 1),
        # `latest` names a directory that is gone: the newest intact one, not a silent start from scratch
        (lambda c: (c / "latest").write_text("step-000009"), "step-000009", 2),
    ],
)
def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one_and_says_so(
    runs, tmp_path, damage, reason, fallback
):
    part = damaged_copy(runs, tmp_path, damage)
    with pytest.warns(CheckpointWarning, match=rf"{reason}.*resuming from .*step-00000{fallback}"):
        run(smoke(part, "train.iterations=3"))
    # the resumed run replays iterations 2 and 3 exactly: the same weights as the uninterrupted run
    assert same(weights(runs / "full" / "checkpoints" / "step-000003"), weights(part / "checkpoints" / "step-000003"))


def test_no_intact_checkpoint_refuses_and_overwrites_nothing(runs, tmp_path):
    def damage_all(ckpts):
        for step in ckpts.glob("step-*"):
            truncate(step / "model.safetensors")

    part = damaged_copy(runs, tmp_path, damage_all)
    before = {p: p.read_bytes() for p in part.rglob("*") if p.is_file() and "tensorboard" not in p.parts}
    with pytest.raises(CheckpointError, match=r"no intact checkpoint.*resume=false"):
        run(smoke(part, "train.iterations=3"))
    after = {p: p.read_bytes() for p in part.rglob("*") if p.is_file() and "tensorboard" not in p.parts}
    assert {p: b for p, b in after.items() if p.name != ".lock"} == {
        p: b for p, b in before.items() if p.name != ".lock"
    }


def test_exploded_weights_are_never_saved_as_the_last_good_checkpoint(tmp_path):
    # Adam at lr 1e30: the first update leaves finite weights of about 1e30 (saved as `latest` before), and
    # the next rollout's logits are not finite; no periodic evaluation in between to notice it first
    with pytest.raises(FloatingPointError, match=r"lower agent.lr"):
        run(smoke(tmp_path, "agent.lr=1e30", "train.iterations=3", "train.eval_every=0"))
    latest = tmp_path / "checkpoints" / (tmp_path / "checkpoints" / "latest").read_text()
    assert max(v.abs().max().item() for v in weights(latest).values()) < 1e3, latest.name


def test_a_checkpoint_that_cannot_be_written_names_its_directory_and_keeps_the_older_ones(tmp_path, monkeypatch):
    import agents.run.checkpoint as checkpoint

    real = torch.save

    def full_disk(obj, path, *args, **kwargs):  # what torch.save raises when the disk fills mid-write
        if "step-000002" in str(path):
            raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file")
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(OSError) as err:
        run(smoke(tmp_path, "train.iterations=2"))
    assert err.value.filename == str(tmp_path / "checkpoints" / "step-000002.tmp")
    assert "PytorchStreamWriter failed" in str(err.value)
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step-000001"
    assert not (tmp_path / "checkpoints" / "step-000002.tmp").exists()
