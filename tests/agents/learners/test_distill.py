"""On-policy distillation: the loss against hand-computed values, the sampled estimator's gradient against the
exact one, learning (the reverse KL to a teacher falls), teacher resolution and the tokenizer check."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

import lm_envs  # noqa: F401
from agents.learners.base import RunContext, collect_iteration
from agents.learners.distill import DistillConfig, DistillLearner, distill_loss, teacher_dir
from agents.policy.models import build_default_model, export_model
from agents.policy.scoring import response_outputs
from agents.run import to_run_config
from agents.run.config import register_configs

register_configs()

SIZE = {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 64}


@pytest.fixture(scope="module")
def codec():
    return gym.make("LMEnv/Digits-v0").unwrapped.codec


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, codec):
    """A random model made peaked (its final norm scaled up): a teacher that is far from a fresh student."""
    model = build_default_model(codec, seed=1, **SIZE)
    with torch.no_grad():
        model.transformer.ln_f.weight.mul_(8.0)
    path = tmp_path_factory.mktemp("teacher")
    export_model(model, codec, path)
    return path


def ctx_for(codec) -> RunContext:
    return RunContext("LMEnv/Digits-v0", {"vocab_size": codec.vocab_size}, None, codec, 0, torch.device("cpu"))


def test_distill_loss_matches_hand_computation():
    s = torch.log(torch.tensor([[[0.5, 0.5], [0.9, 0.1]]])).requires_grad_()
    t = torch.log(torch.tensor([[[0.25, 0.75], [0.5, 0.5]]]))
    tokens, mask = torch.tensor([[0, 1]]), torch.tensor([[1.0, 1.0]])
    loss, stats = distill_loss(s, t, tokens, mask, "full")
    kl = [0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75), 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)]
    assert loss.item() == pytest.approx(np.mean(kl), rel=1e-5)
    k = [math.log(0.5 / 0.25), math.log(0.1 / 0.5)]
    assert stats["k"][0].tolist() == pytest.approx(k, rel=1e-5)
    assert stats["full"][0].tolist() == pytest.approx(kl, rel=1e-5)
    loss, _ = distill_loss(s, t, tokens, mask, "sampled", kl_coef=2.0)
    # -mean(A log pi_s) with A = -2 k: the value is 2 * mean(k * log pi_s(a))
    assert loss.item() == pytest.approx(2 * np.mean([k[0] * math.log(0.5), k[1] * math.log(0.1)]), rel=1e-5)
    with pytest.raises(ValueError, match="agent.estimator=full needs teacher and student logits of one width"):
        distill_loss(s, torch.zeros(1, 2, 3), tokens, mask, "full")


def test_the_sampled_estimators_gradient_points_along_the_exact_reverse_kl_gradient(codec, teacher):
    lm = build_default_model(codec, seed=0, **SIZE)
    cfg = DistillConfig(teacher=str(teacher), num_envs=512, estimator="sampled")
    learner = DistillLearner(cfg, lm, ctx_for(codec))
    rollout, _ = collect_iteration(lm, learner.venv, cfg, learner.ctx, 0, learner.ctx.generator(0))
    rows = torch.arange(512)
    with torch.no_grad():
        t_logits, _ = response_outputs(learner.teacher, rollout, rows)

    def gradient(estimator: str) -> torch.Tensor:
        lm.zero_grad()
        s_logits, _ = response_outputs(lm, rollout, rows)
        distill_loss(s_logits, t_logits, rollout.tokens, rollout.action_mask, estimator)[0].backward()
        return torch.cat([p.grad.flatten() for p in lm.parameters()])

    assert torch.nn.functional.cosine_similarity(gradient("sampled"), gradient("full"), dim=0) > 0.2


def test_distillation_lowers_the_students_reverse_kl_to_the_teacher(codec, teacher):
    torch.manual_seed(0)
    lm = build_default_model(codec, seed=0, **SIZE)
    learner = DistillLearner(DistillConfig(teacher=str(teacher), num_envs=16, lr=1e-2), lm, ctx_for(codec))
    assert not learner.uses_reference()
    kl = [learner.iteration(it, None)["distill/reverse_kl_full"] for it in range(30)]
    assert np.mean(kl[-5:]) < 0.6 * np.mean(kl[:3])
    assert all(not p.requires_grad for p in learner.teacher.parameters())


def test_a_run_directory_teacher_means_its_model(tmp_path, teacher):
    (tmp_path / "model").symlink_to(teacher)
    assert teacher_dir(str(tmp_path)) == str(tmp_path / "model")
    assert teacher_dir(str(teacher)) == str(teacher)
    assert teacher_dir("smollm2") is None  # converted when the learner loads it
    with pytest.raises(ValueError, match=r"agent.teacher='/nonexistent' is not a model directory"):
        teacher_dir("/nonexistent")


@pytest.fixture(scope="module")
def other_tokenizer_teacher(tmp_path_factory, teacher):
    """The teacher with two tokens of its tokenizer swapped: same size, another tokenizer."""
    path = tmp_path_factory.mktemp("other")
    for f in teacher.iterdir():
        (path / f.name).write_bytes(f.read_bytes())
    data = json.loads((path / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    a, b = [k for k, v in vocab.items() if v in (300, 301)]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (path / "tokenizer.json").write_text(json.dumps(data))
    return path


def test_a_teacher_with_another_tokenizer_fails_before_any_training(codec, other_tokenizer_teacher):
    with pytest.raises(ValueError, match=r"has another tokenizer than the student .*token 300 is"):
        DistillLearner(
            DistillConfig(teacher=str(other_tokenizer_teacher)), build_default_model(codec, **SIZE), ctx_for(codec)
        )


def _cfg(tmp_path, *overrides):
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        return compose(config_name="config", overrides=[f"output_dir={tmp_path}", "agent=distill", *overrides])


def test_bad_distill_settings_fail_in_validate_naming_the_keys(tmp_path, teacher, other_tokenizer_teacher):
    with pytest.raises(ValueError, match=r"agent=distill needs a teacher: set agent.teacher="):
        to_run_config(_cfg(tmp_path))
    with pytest.raises(ValueError, match=r"unknown agent.estimator 'forward'"):
        to_run_config(_cfg(tmp_path, f"agent.teacher={teacher}", "agent.estimator=forward"))
    with pytest.raises(ValueError, match=r"agent.teacher=.* has another tokenizer than the student"):
        to_run_config(_cfg(tmp_path, f"agent.teacher={other_tokenizer_teacher}"))
    assert to_run_config(_cfg(tmp_path, f"agent.teacher={teacher}")).agent.teacher == str(teacher)
    assert not (tmp_path / "metrics.jsonl").exists()
