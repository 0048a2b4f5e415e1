"""The causal LMs the agents train: the embedded tiny default, or any Hugging Face causal LM by name or path."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lm_envs import TextCodec

#: The embedded default: a GPT-2-style model small enough to train on 2 CPU cores.
DEFAULT_MODEL: dict[str, Any] = {"n_layer": 4, "n_embd": 256, "n_head": 4, "n_positions": 512}
#: Embedded architectures: ``gpt2`` (learned absolute positions, the default) and ``llama``
#: (rotary positions, RMSNorm, gated MLP of the same parameter count): a pattern such as an
#: arithmetic fact is the same at every offset under rotary positions, so it is learnt once.
ARCHITECTURES = ("gpt2", "llama")


def build_default_model(codec: TextCodec, seed: int = 0, arch: str = "gpt2", **overrides: Any) -> nn.Module:
    """A freshly initialised tiny causal LM whose vocabulary is the codec's (no download).

    Args:
        codec: The tokenizer; its size is the vocabulary.
        seed: Seed of the initial weights.
        arch: One of :data:`ARCHITECTURES`.
        **overrides: Keys of :data:`DEFAULT_MODEL` (GPT-2 names for every architecture).

    Dropout is off: RL needs the log-probs of sampling and of the loss to be the same function.

    Raises:
        ValueError: On an unknown architecture or size key.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown embedded architecture {arch!r}; choose one of {list(ARCHITECTURES)}.")
    unknown = sorted(set(overrides) - set(DEFAULT_MODEL))
    if unknown:
        raise ValueError(f"unknown embedded model keys {unknown}; the sizes are {sorted(DEFAULT_MODEL)}.")
    cfg = {**DEFAULT_MODEL, **overrides}
    tokens = {
        "vocab_size": codec.vocab_size,
        "bos_token_id": codec.eos_token_id,
        "eos_token_id": codec.eos_token_id,
        "pad_token_id": codec.pad_token_id,
    }
    torch.manual_seed(seed)
    if arch == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        width = cfg["n_embd"]
        config = LlamaConfig(
            hidden_size=width,
            intermediate_size=16 * round(width * 8 / 3 / 16),  # 3 matrices, the parameters of GPT-2's 4x MLP
            num_hidden_layers=cfg["n_layer"],
            num_attention_heads=cfg["n_head"],
            num_key_value_heads=cfg["n_head"],
            max_position_embeddings=cfg["n_positions"],
            tie_word_embeddings=True,
            attention_dropout=0.0,
            **tokens,
        )
        return LlamaForCausalLM(config).eval()
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **tokens, **cfg)
    return GPT2LMHeadModel(config).eval()


def default_model_name(arch: str = "gpt2", **overrides: Any) -> str:
    """The name results record for an embedded model, e.g. ``lm-envs/tiny-gpt2`` or ``lm-envs/tiny-llama-2x128``.

    Example:
        >>> default_model_name(), default_model_name("llama", n_layer=2, n_embd=128)
        ('lm-envs/tiny-gpt2', 'lm-envs/tiny-llama-2x128')
    """
    cfg = {**DEFAULT_MODEL, **overrides}
    if arch == "gpt2" and cfg == DEFAULT_MODEL:
        return "lm-envs/tiny-gpt2"
    return f"lm-envs/tiny-{arch}-{cfg['n_layer']}x{cfg['n_embd']}"


def load_model(
    name_or_path: str | None,
    codec: TextCodec,
    seed: int = 0,
    dtype: str = "float32",
    arch: str = "gpt2",
    size: dict[str, Any] | None = None,
    attn_implementation: str | None = None,
) -> nn.Module:
    """``None`` builds the embedded default (``arch``, ``size``); otherwise load any causal LM by name or path.

    ``dtype`` is the weights' dtype (training keeps float32 master weights and autocasts instead, see
    :mod:`agents.policy.precision`); ``attn_implementation`` is transformers' (``sdpa``, ``eager``,
    ``flash_attention_2``; ``None``: its default).
    """
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"unknown model.dtype {dtype!r}; choose float32, bfloat16 or float16.")
    if name_or_path is None:
        model = build_default_model(codec, seed=seed, arch=arch, **(size or {})).to(getattr(torch, dtype))
        if attn_implementation is not None:
            model.set_attn_implementation(attn_implementation)
        return model
    from transformers import AutoModelForCausalLM

    extra = {"attn_implementation": attn_implementation} if attn_implementation is not None else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=getattr(torch, dtype), **extra)
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


def export_model(model: nn.Module, codec: TextCodec, directory: str | Path) -> None:
    """Save ``model`` (LoRA adapters merged into a copy) with its tokenizer as a transformers directory.

    ``AutoModelForCausalLM.from_pretrained(directory)`` and ``model.name_or_path=<directory>`` load it.
    """
    from agents.policy.lora import has_lora, merge_lora
    from lm_envs.core.tokenizer import save_codec

    model = getattr(model, "module", model)
    if has_lora(model):
        model = merge_lora(copy.deepcopy(model))
    model.save_pretrained(directory, safe_serialization=True)
    save_codec(codec, directory)


def logits_width(model: nn.Module) -> int:
    """The model's logits width: the env's action space size."""
    return int(model.get_output_embeddings().weight.shape[0])


def _disable_dropout(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0


def last_logits_only(model: nn.Module) -> dict[str, int]:
    """``forward`` keyword arguments under which ``model`` computes logits at the last position only.

    A prefill needs only the next token's logits; at a 1k vocabulary and 40-token prompts the full
    logits are a quarter of the prefill's work. Transformers >= 4.50 calls the argument
    ``logits_to_keep`` (``num_logits_to_keep`` before); a model with neither gets ``{}`` (all logits).
    """
    model = getattr(model, "module", model)  # a DDP wrapper's forward takes anything: ask the model
    params = inspect.signature(model.forward).parameters
    return next(({name: 1} for name in ("logits_to_keep", "num_logits_to_keep") if name in params), {})


def cache_argument(model: nn.Module) -> str:
    """The ``forward`` keyword under which ``model`` takes a KV cache from an earlier forward.

    Transformers 5.x calls it ``cache``; ``past_key_values`` (every earlier version) still works there
    but warns on every forward and goes away in 5.40. Ask once per loop (``**{arg: cache}``), not per step.
    """
    model = getattr(model, "module", model)  # a DDP wrapper's forward takes anything: ask the model
    params = inspect.signature(model.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    # a wrapper whose forward takes **kwargs: the installed transformers' own name
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def kv_cache(out: Any) -> Any:
    """The KV cache a forward returned (``use_cache=True``), under either name (see :func:`cache_argument`)."""
    cache = getattr(out, "cache", None)
    return out.past_key_values if cache is None else cache


@contextmanager
def head_on_rows(model: nn.Module, keep: torch.Tensor) -> Iterator[None]:
    """Within the block, ``model``'s LM head sees only the hidden states where ``keep`` (``(B, T)``) is True.

    A forward then returns logits of shape ``(keep.sum(), V)``, rows in ``hidden[keep]`` order. SFT
    scores only the completion tokens, so the head (a third of a tiny model's matmuls at a 1k
    vocabulary) skips prompt and padding positions. It hooks the output embedding, so whatever the
    model does to the logits afterwards (scaling, soft-capping) still applies; a model without
    ``get_output_embeddings`` (or a wrapper around one) runs unchanged: check the logits' shape.
    """
    model = getattr(model, "module", model)  # DDP's wrapper: hook the wrapped model's head
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        yield
        return
    hook = head.register_forward_pre_hook(lambda _module, args: (args[0][keep], *args[1:]))
    try:
        yield
    finally:
        hook.remove()


def enable_activation_checkpointing(model: nn.Module) -> None:
    """Recompute each layer's activations in the backward (``model.gradient_checkpointing=true``).

    Less memory for about a third more compute; the KV cache is off in training mode then, so the
    learner's grouped scoring runs one full forward per row (:func:`agents.policy.scoring.response_outputs`).
    """
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x's name
        model.activation_checkpointing_enable({"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding (``0`` on padded positions)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen, eval-mode deep copy (the KL reference model)."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref
