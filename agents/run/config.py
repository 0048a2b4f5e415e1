"""Typed schemas for the Hydra configs in ``conf/`` (validated: an unknown or mistyped key fails early).

``conf/config.yaml`` composes one option from each group (``env/``, ``agent/``, ``model/``,
``experiment/``); every group option lists its schema here in its defaults, so Hydra checks keys and
types before any work starts (Hydra's "schema validation of YAML" pattern).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from agents.evaluate import EvalConfig
from agents.learners.base import discover
from agents.learners.pretrain import PretrainConfig
from agents.learners.sft import SFTConfig
from agents.policy.lora import LoRASection
from agents.policy.models import ARCHITECTURES, DEFAULT_MODEL
from agents.policy.precision import DTYPES


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
    # resume even though settings changed (seed, lr, ...): refused otherwise; eval.json then lists the changes
    resume_with_changes: bool = False
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


# --------------------------------------------------------------------------------------------
# Validation: every setting checked in one place, before any work
# --------------------------------------------------------------------------------------------

#: Integer settings and their least valid value (``None`` values are allowed where the schema allows them).
AT_LEAST: dict[str, int] = {
    "train.iterations": 0,
    "train.eval_every": 0,
    "train.eval_episodes": 1,
    "train.checkpoint_every": 1,
    "train.keep_checkpoints": 1,
    "sft.steps": 0,
    "sft.batch_size": 1,
    "sft.warmup_steps": 0,
    "sft.num_examples": 1,
    "sft.replay_rows": 0,
    "sft.replay_block_size": 2,
    "sft.checkpoint_every": 0,
    "pretrain.steps": 0,
    "pretrain.batch_size": 1,
    "pretrain.block_size": 2,
    "pretrain.warmup_steps": 0,
    "eval.num_episodes": 1,
    "eval.samples": 1,
    "eval.batch_size": 1,
    "model.threads": 1,
    "model.size.n_layer": 1,
    "model.size.n_embd": 1,
    "model.size.n_head": 1,
    "model.size.n_positions": 1,
    "model.lora.r": 0,
}
#: Float settings that must be finite and > 0.
POSITIVE = ("sft.lr", "pretrain.lr", "sft.max_grad_norm", "pretrain.max_grad_norm")
#: Fields of any agent config (algorithms are plug-ins, so by name): least valid int value ...
AGENT_AT_LEAST = {
    "num_envs": 1,
    "group_size": 1,
    "prompts_per_round": 1,
    "batch_size": 1,
    "num_minibatches": 1,
    "ppo_epochs": 1,
    "iterations": 1,
    "sft_steps": 0,
    "ptx_block_size": 2,
}
#: ... and floats that must be finite and > 0 (``None`` allowed where the schema allows it).
AGENT_POSITIVE = ("lr", "value_lr", "max_grad_norm")


def _get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def check_known_keys(cfg: DictConfig, prefix: str = "") -> None:
    """Refuse keys a schema lacks (``+agent.learning_rate=0.1`` adds one that ``OmegaConf.to_object`` drops).

    Raises:
        ValueError: Naming the unknown key and the closest known one.
    """
    schema = OmegaConf.get_type(cfg)
    if schema is not None and dataclasses.is_dataclass(schema):
        fields = [f.name for f in dataclasses.fields(schema)]
        for key in cfg:
            if key not in fields:
                initials = "".join(word[:1] for word in str(key).split("_"))  # learning_rate -> lr
                close = [initials] if initials in fields else difflib.get_close_matches(str(key), fields, n=1)
                hint = f"did you mean {prefix}{close[0]}?" if close else f"the keys are {sorted(fields)}"
                raise ValueError(
                    f"unknown key {prefix}{key}: {schema.__name__} has no such setting ({hint}); "
                    "fix or remove the override."
                )
    for key in cfg:
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and not node._is_missing() and not node._is_none():
            check_known_keys(node, f"{prefix}{key}.")


def validate(cfg: RunConfig) -> None:
    """Check every setting of a run before any work; one :class:`ValueError` naming the key and the fix.

    Ranges of counts, step sizes and learning rates, the dtype and architecture, the embedded model's
    shape. Checks that need the env or the model (episode length against the model's positions, the
    batch split under torchrun) run as soon as those exist, still before any training.

    Raises:
        ValueError: On the first setting that cannot work.
    """
    for key, least in AT_LEAST.items():
        _at_least(key, _get(cfg, key), least)
    for key in POSITIVE:
        _positive(key, _get(cfg, key))
    for name in dataclasses.fields(cfg.agent) if dataclasses.is_dataclass(cfg.agent) else ():
        value = getattr(cfg.agent, name.name)
        if name.name in AGENT_AT_LEAST:
            _at_least(f"agent.{name.name}", value, AGENT_AT_LEAST[name.name])
        elif name.name in AGENT_POSITIVE:
            _positive(f"agent.{name.name}", value)
        elif name.name == "temperature" and not (isinstance(value, (int, float)) and value >= 0):
            raise ValueError(f"agent.temperature must be >= 0 (0: greedy), got {value!r}.")
    check = getattr(cfg.agent, "check", None)  # an algorithm's own checks: choices and incompatible combinations
    if callable(check):
        check()
    if cfg.model.dtype not in DTYPES:
        raise ValueError(f"unknown model.dtype {cfg.model.dtype!r}; choose one of {list(DTYPES)}.")
    if cfg.model.name_or_path is None:
        if cfg.model.arch not in ARCHITECTURES:
            raise ValueError(f"unknown model.arch {cfg.model.arch!r}; choose one of {list(ARCHITECTURES)}.")
        size = cfg.model.size
        if size.n_embd % size.n_head:
            raise ValueError(
                f"model.size.n_embd ({size.n_embd}) must be a multiple of model.size.n_head ({size.n_head}); "
                "change one of them."
            )
    if cfg.eval.temperature < 0:
        raise ValueError(f"eval.temperature must be >= 0 (0: greedy), got {cfg.eval.temperature}.")


def _at_least(key: str, value: Any, least: int) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        null = " (or null for the default)" if key in ("eval.num_episodes", "sft.num_examples", "model.threads") else ""
        raise ValueError(f"{key} must be >= {least}{null}, got {value!r}.")


def _positive(key: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{key} must be a finite number > 0, got {value!r}; set e.g. {key}=1e-4.")
