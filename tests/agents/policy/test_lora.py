"""LoRA adapters: the same function at injection, a reference with the adapters off, folding, merged export."""

from __future__ import annotations

import pytest
import torch

import lm_envs
from agents.policy.lora import (
    AdapterOff,
    LoRASection,
    adapter_state,
    adapters_disabled,
    add_lora,
    fold_lora,
    has_lora,
    merge_lora,
)
from agents.policy.models import build_default_model, export_model, load_model


@pytest.fixture(params=["gpt2", "llama"])
def model(request):
    return build_default_model(lm_envs.load_codec(), arch=request.param, n_layer=2, n_embd=64, n_head=2)


def perturb_adapters(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)


IDS = torch.arange(3, 40).reshape(1, -1)


def test_injection_keeps_the_function_and_trains_only_the_adapters(model):
    before = model(IDS).logits
    add_lora(model, LoRASection(r=4), seed=0)
    assert has_lora(model) and torch.equal(model(IDS).logits, before)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    model(IDS).logits.sum().backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n not in trainable)


def test_reference_view_is_the_base_model_without_a_copy(model):
    before = model(IDS).logits
    add_lora(model, LoRASection(r=4))
    perturb_adapters(model)
    ref = AdapterOff(model, adapter_state(model))
    assert not torch.allclose(model(IDS).logits, before)
    assert torch.equal(ref(input_ids=IDS).logits, before) and not list(ref.parameters())
    assert not ref(input_ids=IDS).logits.requires_grad
    assert ref.module is model and ref.get_output_embeddings() is model.get_output_embeddings()
    assert ref.state_dict().keys() == model.state_dict().keys()


def test_fold_keeps_the_function_and_the_parameters_and_zeroes_the_update(model):
    add_lora(model, LoRASection(r=4))
    perturb_adapters(model)
    adapted, params = model(IDS).logits, list(model.parameters())
    fold_lora(model)
    assert torch.allclose(model(IDS).logits, adapted, atol=1e-5)
    with adapters_disabled(model):
        assert torch.allclose(model(IDS).logits, adapted, atol=1e-5)
    assert all(a is b for a, b in zip(params, model.parameters(), strict=True))


def test_merged_export_loads_as_a_plain_model_computing_the_same(tmp_path, model):
    codec = lm_envs.load_codec()
    keys = set(model.state_dict())
    add_lora(model, LoRASection(r=4))
    perturb_adapters(model)
    adapted = model(IDS).logits
    export_model(model, codec, tmp_path / "out")
    assert has_lora(model)  # the export merged a copy
    loaded = load_model(str(tmp_path / "out"), lm_envs.load_codec(str(tmp_path / "out")))
    assert not has_lora(loaded) and set(loaded.state_dict()) == keys
    assert torch.allclose(loaded(IDS).logits, adapted, atol=1e-5)
    assert torch.allclose(merge_lora(model)(IDS).logits, adapted, atol=1e-5) and not has_lora(model)


@pytest.mark.parametrize(
    "cfg, message",
    [
        (LoRASection(r=4, target_modules=["qkv_proj"]), "match no linear layer of this model; choose from"),
        (LoRASection(r=-1), "model.lora.r must be >= 1"),
        (LoRASection(r=4, alpha=0), "model.lora.alpha > 0"),
        (LoRASection(r=4, dropout=1.0), "model.lora.dropout must be in"),
    ],
)
def test_bad_settings_fail_naming_the_key(model, cfg, message):
    with pytest.raises(ValueError, match=message):
        add_lora(model, cfg)
