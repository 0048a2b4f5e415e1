"""The SFT warm start's demonstration source: the whole split or a fixed set of the first N problems."""

from __future__ import annotations

import numpy as np
import pytest

from agents.sft import SFTConfig, demo_batches, encode_demo
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
