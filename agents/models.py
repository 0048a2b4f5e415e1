"""Causal LMs for the agents: the embedded tiny default, or any Hugging Face model by name/path."""

from __future__ import annotations

from typing import Any

import torch

from lm_envs import TextCodec

#: The embedded default: a GPT-2-style model small enough to train on 2 CPU cores.
DEFAULT_MODEL: dict[str, Any] = {"n_layer": 4, "n_embd": 256, "n_head": 4, "n_positions": 1024}


def build_default_model(codec: TextCodec, seed: int = 0, **overrides: Any) -> torch.nn.Module:
    """A freshly initialised tiny GPT-2 whose vocabulary is the codec's (no download).

    Dropout is off: RL needs the log-probs of sampling and of the loss to be the same function.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = {**DEFAULT_MODEL, **overrides}
    config = GPT2Config(
        vocab_size=codec.vocab_size,
        bos_token_id=codec.eos_token_id,
        eos_token_id=codec.eos_token_id,
        pad_token_id=codec.pad_token_id,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        **cfg,
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config).eval()


def load_model(name_or_path: str | None, codec: TextCodec, seed: int = 0) -> torch.nn.Module:
    """``None`` builds the embedded default; otherwise load any causal LM by name or local path."""
    if name_or_path is None:
        return build_default_model(codec, seed=seed)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(name_or_path)
    if model.get_output_embeddings().weight.shape[0] < codec.vocab_size:
        raise ValueError(
            f"model {name_or_path!r} has {model.get_output_embeddings().weight.shape[0]} logits but its tokenizer "
            f"has {codec.vocab_size} tokens; load the tokenizer that belongs to the model."
        )
    return model.eval()


def logits_width(model: torch.nn.Module) -> int:
    """The model's logits width: the env's action space size."""
    return int(model.get_output_embeddings().weight.shape[0])
