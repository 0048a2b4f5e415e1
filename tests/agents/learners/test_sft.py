"""The SFT warm start's demonstration source: the whole split or a fixed set of the first N problems."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import lm_envs  # noqa: F401
from agents.learners.sft import SFTConfig, collate, demo_batches, encode_demo, gradient_step, lr_lambda, nll
from agents.policy.models import build_default_model, positions
from lm_envs.core.episodes import SOURCE_ENV, SOURCE_POLICY
from lm_envs.core.tokenizer import load_codec
from lm_envs.tasks.math import word_problems


def test_num_examples_limits_demonstrations_to_the_first_problems_of_the_split():
    task, codec = word_problems("easy"), load_codec(None)
    allowed = {tuple(sum(encode_demo(codec, task.problem("train", i)), [])) for i in range(3)}
    batches = demo_batches(task, codec, SFTConfig(batch_size=16, num_examples=3), np.random.default_rng(0))
    for _ in range(4):
        batch = next(batches)
        for ids, att in zip(batch["input_ids"], batch["attention_mask"]):
            assert tuple(ids[att.bool()].tolist()) in allowed
    unlimited = next(demo_batches(task, codec, SFTConfig(batch_size=16), np.random.default_rng(0)))
    seen = {tuple(ids[att.bool()].tolist()) for ids, att in zip(unlimited["input_ids"], unlimited["attention_mask"])}
    assert len(seen - allowed) > 10


def test_num_examples_below_one_names_the_fix():
    with pytest.raises(ValueError, match="num_examples"):
        next(demo_batches(word_problems("easy"), load_codec(None), SFTConfig(num_examples=0), np.random.default_rng(0)))


def test_gradient_step_clips_and_steps_and_stops_on_a_non_finite_loss_before_touching_weights():
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(SFTConfig(steps=10, warmup_steps=2)))
    before = [p.detach().clone() for p in model.parameters()]
    norm = gradient_step(model, optimizer, schedule, 100 * model(torch.ones(2, 3)).sum(), 1.0, "sft loss", "sft.lr")
    assert norm > 1.0 and not all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert schedule.last_epoch == 1
    kept = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(FloatingPointError, match=r"sft loss became nan; lower sft.lr"):
        nan = model(torch.ones(2, 3)).sum() * float("nan")
        gradient_step(model, optimizer, schedule, nan, 1.0, "sft loss", "sft.lr")
    assert all(torch.equal(a, b) for a, b in zip(kept, model.parameters(), strict=True))


@pytest.mark.parametrize("progress", [True, False])
def test_sft_shows_a_progress_bar_with_the_loss_only_when_asked(capsys, progress):
    from agents.learners.sft import train_sft
    from agents.policy.models import build_default_model

    codec = load_codec(None)
    model = build_default_model(codec, n_layer=1, n_embd=32, n_head=2)
    train_sft(model, word_problems("easy"), codec, SFTConfig(steps=3, batch_size=2, warmup_steps=1), progress=progress)
    err = capsys.readouterr().err
    assert ("sft" in err and "3/3" in err and "loss=" in err) == progress
    assert progress or err == ""


def test_replay_rows_append_pre_training_documents_to_every_sft_batch():
    from agents.learners.sft import with_replay
    from lm_envs.tasks.qa.world import KnowledgeQATask

    task, codec = KnowledgeQATask(seed=0, abstain_fraction=0.5), load_codec(None)
    cfg = SFTConfig(batch_size=4, split="sft", replay_rows=3, replay_block_size=48)
    demos = demo_batches(task, codec, cfg, np.random.default_rng(0))
    batch = next(with_replay(demos, task, codec, cfg, np.random.default_rng(1)))
    assert batch["input_ids"].shape[0] == 4 + 3
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    documents = "\n".join(task.documents())
    for ids, att, labels in zip(batch["input_ids"][4:], batch["attention_mask"][4:], batch["labels"][4:], strict=True):
        real = ids[att.bool()].tolist()
        assert 0 < len(real) <= 48 and torch.equal(labels[att.bool()], ids[att.bool()])  # every document token a target
        assert (labels[~att.bool()] == -100).all()
        first = real[: real.index(codec.eos_token_id)] if codec.eos_token_id in real else real
        assert codec.decode(first)[:40] in documents
    for ids, att, labels in zip(batch["input_ids"][:4], batch["attention_mask"][:4], batch["labels"][:4], strict=True):
        prompt = codec.decode(ids[att.bool()].tolist())
        assert prompt.startswith("Question: ") and (labels[att.bool()] == -100).sum() > 5  # the prompt is context only


@pytest.mark.parametrize(
    ("cfg", "task_name", "match"),
    [
        (SFTConfig(replay_rows=-1), "qa", "replay_rows must be >= 0"),
        (SFTConfig(replay_rows=2), "target", "has none"),
    ],
)
def test_replay_names_the_fix(cfg, task_name, match):
    from agents.learners.sft import with_replay
    from lm_envs.tasks.qa.world import KnowledgeQATask
    from lm_envs.tasks.target_word import TargetWordTask

    task = KnowledgeQATask(seed=0) if task_name == "qa" else TargetWordTask()
    with pytest.raises(ValueError, match=match):
        next(with_replay(iter([]), task, load_codec(None), cfg, np.random.default_rng(0)))


class _Wrapped(torch.nn.Module):
    """A model without ``get_output_embeddings`` (as a DDP or custom wrapper): nll must compute every logit."""

    def __init__(self, lm: torch.nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, **kwargs):
        return self.lm(**kwargs)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_nll_on_the_labelled_rows_only_equals_the_full_loss_and_its_gradients(arch):
    task, codec = word_problems("easy"), load_codec(None)
    batch = next(demo_batches(task, codec, SFTConfig(batch_size=6), np.random.default_rng(0)))
    model = build_default_model(codec, seed=0, arch=arch, n_layer=1, n_embd=32, n_head=2)
    att, labels = batch["attention_mask"], batch["labels"]
    full = model(input_ids=batch["input_ids"], attention_mask=att, position_ids=positions(att)).logits
    expected = torch.nn.functional.cross_entropy(full[:, :-1].reshape(-1, full.shape[-1]), labels[:, 1:].reshape(-1))
    (g_full,) = torch.autograd.grad(expected, model.get_output_embeddings().weight)
    loss = nll(model, batch)
    (g_rows,) = torch.autograd.grad(loss, model.get_output_embeddings().weight)
    assert torch.allclose(loss, expected, atol=1e-5) and torch.allclose(g_rows, g_full, atol=1e-5)
    assert torch.allclose(nll(_Wrapped(model), batch), expected, atol=1e-5)
    assert not model.get_output_embeddings()._forward_pre_hooks  # the hook never outlives the forward


def test_a_tool_demonstration_is_the_episode_that_plays_its_turns():

    env = gym.make("LMEnv/MathTools-v0").unwrapped
    for index in range(5):
        problem = env.task.problem("train", index)
        turns = env.task.demonstration(problem)
        assert len(turns) == len(problem.steps) and all("</calc>" in t for t in turns[:-1])
        prompt, target, trained = encode_demo(env.codec, problem, env.episodes.config, env.task)
        obs, _ = env.reset(seed=0, options={"split": "train", "index": index})
        assert obs["input_ids"][: len(prompt)].tolist() == prompt
        # the policy plays the trained tokens; the env appends exactly the others (its calculator's replies)
        for token, mine in zip(target, trained, strict=True):
            if mine:
                obs, reward, terminated, truncated, info = env.step(token)
        assert terminated and not truncated and info["is_success"] and reward == 1.0
        length = int(obs["attention_mask"].sum())
        assert obs["input_ids"][:length].tolist() == prompt + target
        assert obs["source"][len(prompt) : length].tolist() == [SOURCE_POLICY if t else SOURCE_ENV for t in trained]
        labels = collate([(prompt, target, trained)], env.codec.pad_token_id)["labels"][0]
        assert int((labels != -100).sum()) == sum(trained)  # SFT never trains on the env's tokens
    plain = gym.make("LMEnv/Math-v0").unwrapped  # a single-turn task keeps the gold text as one turn
    assert len(encode_demo(plain.codec, problem, plain.episodes.config, plain.task)) == 2
