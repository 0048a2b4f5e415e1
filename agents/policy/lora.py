"""LoRA adapters (``peft``) on the policy, and the KL reference as the same weights with the adapter off.

``add_lora`` injects low-rank adapters into the model in place (the module keeps its transformers class,
so sampling, scoring, checkpoints and DDP see the same model as without LoRA) and freezes everything
else; learners' optimizers then update the adapters (and a PPO value head) only.

The reference model costs no second copy of the weights: :class:`AdapterOff` runs the policy's own
modules with every adapter disabled, which is the policy as RL started, because the run merges
any SFT-trained adapter into the base weights and starts RL from a fresh one (``B = 0``: the
adapted model equals the base). Its ``state_dict`` is that starting point too (adapter tensors as
they were when RL began), which is what expert iteration's ``from_base`` restarts from.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class LoRASection:
    """LoRA settings (``model.lora``); ``r: 0`` trains every weight (no adapter)."""

    r: int = 0  # adapter rank; 0: full fine-tuning
    alpha: float = 32.0  # scaling alpha / r
    dropout: float = 0.0  # off: RL needs the sampling and the loss log-probs to be one function
    # module names (suffixes) to adapt, or ["all-linear"]: every linear layer but the LM head
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])


def add_lora(model: nn.Module, cfg: LoRASection, seed: int = 0) -> nn.Module:
    """Inject LoRA adapters into ``model`` in place, freeze everything else, and return it.

    The adapters start at ``B = 0``, so the model computes what it computed before; ``A`` is drawn
    from ``seed`` (a resumed run rebuilds the same one before loading its checkpoint).

    Raises:
        ValueError: On a non-positive rank or alpha, or target modules that match no layer (listing
            the linear layers the model has).
    """
    from peft import LoraConfig, inject_adapter_in_model

    if cfg.r < 1 or cfg.alpha <= 0:
        raise ValueError(f"model.lora.r must be >= 1 and model.lora.alpha > 0, got r={cfg.r} alpha={cfg.alpha}.")
    if not 0 <= cfg.dropout < 1:
        raise ValueError(f"model.lora.dropout must be in [0, 1), got {cfg.dropout}.")
    targets: Any = list(cfg.target_modules)
    if targets == ["all-linear"]:
        targets = "all-linear"
    else:
        linear = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if _is_linear(m)})
        unknown = [t for t in targets if t not in linear]
        if not targets or unknown:
            raise ValueError(
                f"model.lora.target_modules {unknown or targets} match no linear layer of this model; choose from "
                f"{linear} or [all-linear]."
            )
    conv1d = any(type(m).__name__ == "Conv1D" for m in model.modules())  # GPT-2 stores its linears transposed
    config = LoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets, fan_in_fan_out=conv1d
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model.lora.target_modules adapted no layer; choose linear layers of the model.")
    return model


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"  # GPT-2's transposed linear


def lora_layers(model: nn.Module) -> list[nn.Module]:
    """The LoRA-adapted layers of ``model`` (empty without LoRA)."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # no peft, so no adapter
        return []
    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def has_lora(model: nn.Module) -> bool:
    """Whether ``model`` carries LoRA adapters."""
    return bool(lora_layers(model))


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the adapter tensors (a few MB, where the model's weights are hundreds)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


@contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """Within the block ``model`` computes without its adapters (the weights it was adapted from)."""
    layers = lora_layers(model)
    for m in layers:
        m.enable_adapters(False)
    try:
        yield
    finally:
        for m in layers:
            m.enable_adapters(True)


def fold_lora(model: nn.Module) -> None:
    """Add each adapter's update ``(alpha / r) B A`` into its base weight and restart it at ``B = 0``, in place.

    The model computes the same function afterwards, its parameters stay the same objects (an
    optimizer built on them stays valid), and with the adapters off it computes that function too.
    """
    with torch.no_grad():
        for layer in lora_layers(model):
            base = layer.get_base_layer()
            for name in layer.active_adapters:
                base.weight += layer.get_delta_weight(name).to(base.weight.dtype)
                layer.lora_B[name].weight.zero_()


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and remove the LoRA layers, in place; returns ``model``.

    Afterwards ``model`` is a plain transformers model again (same class, same state-dict keys as
    before :func:`add_lora`) that computes what the adapted model computed.
    """
    from peft.tuners.lora import LoraLayer

    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, LoraLayer):
                child.merge()
                setattr(parent, child_name, child.get_base_layer())
    for p in model.parameters():
        p.requires_grad_(True)
    return model


class AdapterOff(nn.Module):
    """The KL reference as a view of the policy: its forward runs ``model`` with the adapters disabled, no grad.

    The policy's modules are not registered here (``parameters()`` is empty, nothing is copied);
    ``module`` names the viewed model, so helpers that unwrap DDP's ``.module`` (the LM head hook,
    the logits-to-keep argument) reach it. ``state_dict`` is the policy's with the adapter tensors
    given at construction (the adapters as RL started).
    """

    def __init__(self, model: nn.Module, start: dict[str, torch.Tensor]) -> None:
        super().__init__()
        object.__setattr__(self, "module", model)  # a view, not a submodule
        object.__setattr__(self, "start", start)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad(), adapters_disabled(self.module):
            return self.module(*args, **kwargs)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return {**self.module.state_dict(), **self.start}

    def get_output_embeddings(self) -> nn.Module:
        return self.module.get_output_embeddings()
