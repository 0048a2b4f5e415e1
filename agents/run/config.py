"""Typed schemas for the Hydra configs in ``conf/`` (validated: an unknown or mistyped key fails early).

``conf/config.yaml`` composes one option from each group (``env/``, ``agent/``, ``model/``,
``experiment/``); every group option lists its schema here in its defaults, so Hydra checks keys and
types before any work starts (Hydra's "schema validation of YAML" pattern).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from agents.evaluate import EvalConfig
from agents.learners.base import discover
from agents.learners.pretrain import PretrainConfig
from agents.learners.sft import SFTConfig
from agents.policy.lora import LoRASection
from agents.policy.models import DEFAULT_MODEL


@dataclass
class EnvSection:
    """Which registered env to train on and its ``gym.make`` keyword overrides."""

    id: str = "LMEnv/Math-v0"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class EmbeddedSize:
    """Size of the embedded default (GPT-2 names for every architecture; ignored with ``name_or_path``)."""

    n_layer: int = DEFAULT_MODEL["n_layer"]
    n_embd: int = DEFAULT_MODEL["n_embd"]
    n_head: int = DEFAULT_MODEL["n_head"]
    n_positions: int = DEFAULT_MODEL["n_positions"]


@dataclass
class ModelSection:
    """The causal LM: ``name_or_path: null`` is the embedded tiny default.

    ``name_or_path`` is a local transformers directory, a hub name (where a hub is reachable), a
    ``.gguf`` file, or a shipped alias (``smollm2``): see :mod:`agents.policy.pretrained`.
    """

    name_or_path: str | None = None
    arch: str = "gpt2"  # embedded default only: "gpt2" or "llama" (rotary positions)
    size: EmbeddedSize = field(default_factory=EmbeddedSize)  # embedded default only
    # compute dtype: float32 | bfloat16 | float16 (autocast over float32 master weights; fp16 adds a grad scaler).
    # float32 on CPU (no native bf16 here: ~1 GFLOP/s); bfloat16 on CUDA
    dtype: str = "float32"
    device: str = "cpu"  # cpu | cuda | cuda:N (under torchrun each process takes cuda:LOCAL_RANK)
    threads: int | None = None  # torch CPU threads (None: torch's default)
    # transformers' attention kernel: "sdpa" (PyTorch's fused attention), "eager", or "flash_attention_2" when
    # flash-attn is installed; None: transformers' default for the model (sdpa where supported)
    attn_implementation: str | None = None
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% more compute
    lora: LoRASection = field(default_factory=LoRASection)  # low-rank adapters (peft); r: 0 trains every weight


@dataclass
class TrainSection:
    """The RL loop."""

    iterations: int = 100  # rollouts + updates
    lr_schedule: str = "constant"  # constant | linear | cosine: agent.lr (and value_lr) decays over the iterations
    lr_end_ratio: float = 0.1  # ... to this fraction of itself at the last iteration
    eval_every: int = 25  # held-out evaluation every N iterations (0: only before and after)
    eval_episodes: int = 100  # test problems in the periodic evaluations
    checkpoint_every: int = 10
    keep_checkpoints: int = 2
    progress: bool = True  # progress bar with live metrics


@dataclass
class RunConfig:
    """One training run: optional pre-training, SFT warm start, then RL, then evaluation."""

    seed: int = 0
    output_dir: str = MISSING
    resume: bool = True  # continue from output_dir/checkpoints/latest if it exists
    env: EnvSection = field(default_factory=EnvSection)
    model: ModelSection = field(default_factory=ModelSection)
    agent: Any = MISSING  # an algorithm's config (group agent/): a dataclass naming its Learner
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalConfig = field(default_factory=EvalConfig)


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent).

    Every algorithm module of :mod:`agents.learners` (:func:`~agents.learners.base.discover`) gets
    ``agent/<module>_schema``, which its ``conf/agent/*.yaml`` files list in their defaults.
    """
    if not OmegaConf.has_resolver("required"):  # `key: ${required:'how to set it'}` fails with that advice if unset
        OmegaConf.register_new_resolver("required", _required)
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    for module, schema in discover().items():
        cs.store(group="agent", name=f"{module}_schema", node=schema)
    cs.store(group="env", name="env_schema", node=EnvSection)
    cs.store(group="model", name="model_schema", node=ModelSection)


def _required(advice: str) -> None:
    raise ValueError(advice)
