"""The SFT warm start's demonstration source: the whole split or a fixed set of the first N problems."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.sft import SFTConfig, demo_batches, encode_demo, gradient_step, lr_lambda
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
    from agents.models import build_default_model
    from agents.sft import train_sft

    codec = load_codec(None)
    model = build_default_model(codec, n_layer=1, n_embd=32, n_head=2)
    train_sft(model, word_problems("easy"), codec, SFTConfig(steps=3, batch_size=2, warmup_steps=1), progress=progress)
    err = capsys.readouterr().err
    assert ("sft" in err and "3/3" in err and "loss=" in err) == progress
    assert progress or err == ""
