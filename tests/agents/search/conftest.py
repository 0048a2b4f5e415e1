"""Fixtures of the search tests: a tiny random LM that writes many short reasoning steps."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

import lm_envs  # noqa: F401
from agents.policy.models import build_default_model


class Stepper(torch.nn.Module):
    """A random tiny LM whose logits favour tokens holding a newline: it writes many short steps."""

    def __init__(self, lm, codec):
        super().__init__()
        self.lm = lm
        newline = codec.lookup_table(lm.config.vocab_size, lambda b: b"\n" in b)
        self.register_buffer("bias", torch.tensor(newline, dtype=torch.float32) * 4.0)

    def forward(self, **kwargs):
        out = self.lm(**kwargs)
        out.logits = out.logits + self.bias
        return out


@pytest.fixture(scope="session")
def model():
    codec = gym.make("LMEnv/Math-v0").unwrapped.codec
    lm = build_default_model(codec, seed=0, n_layer=2, n_embd=64, n_head=2)
    return Stepper(lm, codec).eval()
