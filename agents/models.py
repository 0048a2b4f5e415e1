"""Policies for the agents: a causal LM (the embedded tiny default or any HF model) plus a value head."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from lm_envs import TextCodec

#: The embedded default: a GPT-2-style model small enough to train on 2 CPU cores.
DEFAULT_MODEL: dict[str, Any] = {"n_layer": 4, "n_embd": 256, "n_head": 4, "n_positions": 512}


def build_default_model(codec: TextCodec, seed: int = 0, **overrides: Any) -> nn.Module:
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


def load_model(name_or_path: str | None, codec: TextCodec, seed: int = 0, dtype: str = "float32") -> nn.Module:
    """``None`` builds the embedded default; otherwise load any causal LM by name or local path."""
    if name_or_path is None:
        return build_default_model(codec, seed=seed).to(getattr(torch, dtype))
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=getattr(torch, dtype))
    except OSError as e:
        raise ValueError(
            f"cannot load model {name_or_path!r}: {e}. Give a local directory with a transformers causal LM, "
            "or model.name_or_path=null for the embedded default."
        ) from e
    if logits_width(model) < codec.vocab_size:
        raise ValueError(
            f"model {name_or_path!r} has {logits_width(model)} logits but its tokenizer has {codec.vocab_size} "
            "tokens; load the tokenizer that belongs to the model."
        )
    _disable_dropout(model)
    return model.eval()


def logits_width(model: nn.Module) -> int:
    """The model's logits width: the env's action space size."""
    return int(model.get_output_embeddings().weight.shape[0])


def _disable_dropout(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0


class Policy(nn.Module):
    """A causal LM with a scalar value head on its last hidden state (actor-critic).

    ``critic="shared"`` (default) puts the value head on the policy's own backbone, as TRL's
    ``AutoModelForCausalLMWithValueHead``; ``"separate"`` gives the critic its own copy of the
    backbone, so value-loss gradients never touch the policy; ``"none"`` has no critic.
    """

    def __init__(self, lm: nn.Module, critic: str = "shared") -> None:
        super().__init__()
        if critic not in ("shared", "separate", "none"):
            raise ValueError(f"critic must be 'shared', 'separate' or 'none', got {critic!r}.")
        self.lm = lm
        self.critic = critic
        hidden = lm.config.hidden_size
        self.critic_lm = copy.deepcopy(lm) if critic == "separate" else None
        self.value_head = nn.Linear(hidden, 1) if critic != "none" else None
        if self.value_head is not None:
            nn.init.zeros_(self.value_head.weight)  # V = 0 at start: no spurious advantages
            nn.init.zeros_(self.value_head.bias)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Full forward: ``(logits, values)`` at every position (values ``None`` without a critic)."""
        if position_ids is None:
            position_ids = positions(attention_mask)
        want_hidden = self.critic == "shared"
        out = self.lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=want_hidden,
            use_cache=False,
        )
        values = None
        if self.critic == "shared":
            values = self.value_head(out.hidden_states[-1]).squeeze(-1)
        elif self.critic == "separate":
            hidden = self.critic_lm(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                output_hidden_states=True,
                use_cache=False,
            ).hidden_states[-1]
            values = self.value_head(hidden).squeeze(-1)
        return out.logits, values


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding (``0`` on padded positions)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen, eval-mode deep copy (the KL reference model)."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref
