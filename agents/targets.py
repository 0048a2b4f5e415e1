"""What ``lm-envs evaluate`` and ``lm-envs export`` take: a run directory, a checkpoint, or a model path.

A *target* is one of:

* a **run directory** (``config.yaml`` plus ``model/`` or ``checkpoints/``): its exported ``model/`` when the
  run finished, else the model its ``config.yaml`` builds with the newest intact checkpoint loaded;
* a **checkpoint** of a run (``<run>/checkpoints/step-N``, or ``<run>/checkpoints`` for its newest): the
  model of the run's ``config.yaml`` with those weights (PPO/GRPO policies store the LM under ``lm.``; a
  value head or separate critic is dropped);
* a **model**: a transformers directory with its tokenizer (an export, a run's ``model/``), a shipped alias
  (``smollm2``) or a ``.gguf`` file.

:func:`load_target` reads any of them into a model and its codec, checking that weights, tokenizer and
architecture belong together before anything is sampled; :func:`export` writes a plain transformers
directory (config, safetensors, tokenizer, generation config; LoRA merged) that
``AutoModelForCausalLM.from_pretrained`` and every ``model.name_or_path`` load.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from lm_envs import TextCodec

#: Keys of a learner's checkpoint that are not the language model (PPO's critic).
CRITIC_PREFIXES = ("value_head.", "critic_lm.")
#: The file an export writes beside the model: which run it came from (env, seed, model name).
EXPORT_META = "lm_envs_export.json"


@dataclass
class Target:
    """A loaded target: the model, its tokenizer, and what its run says about the env.

    Attributes:
        model: The causal LM (eval mode; LoRA adapters, if any, still attached).
        codec: Its tokenizer.
        kind: ``run``, ``checkpoint`` or ``model``.
        path: The target as given (resolved).
        name: The model's name for results (the run's model name, or the path).
        env_id: The run's env (``None`` for a bare model).
        env_kwargs: ``gym.make`` overrides the env needs to match the model (the run's own kwargs, or
            ``tokenizer=<model dir>`` for a bare model).
        seed: The run's seed (``None`` for a bare model).
        run_dir: The run directory, if any.
        weights: Where the weights came from (a ``model/`` directory or a checkpoint directory).
        tokenizer_dir: The directory of its tokenizer.
    """

    model: nn.Module
    codec: TextCodec
    kind: str
    path: Path
    name: str
    env_id: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    run_dir: Path | None = None
    weights: Path | None = None
    tokenizer_dir: Path | None = None


def is_model_dir(path: Path) -> bool:
    """A transformers model directory (``config.json`` and weights)."""
    weights = any(path.glob("*.safetensors")) or (path / "pytorch_model.bin").is_file()
    return (path / "config.json").is_file() and weights


def is_run_dir(path: Path) -> bool:
    """A run directory of ``lm-envs train``."""
    return (path / "config.yaml").is_file() and ((path / "checkpoints").is_dir() or (path / "model").is_dir())


def classify(target: str | os.PathLike[str]) -> tuple[str, Path]:
    """``(kind, path)`` of a target, without loading anything.

    Raises:
        ValueError: When the path is none of a run directory, a checkpoint or a model, saying what each needs.
    """
    from agents.policy.pretrained import SHIPPED

    text = str(target)
    if text in SHIPPED or text.lower().endswith(".gguf"):
        return "model", Path(text)
    path = Path(text).expanduser()
    if not path.exists():
        raise ValueError(
            f"{text} does not exist; give a run directory, a checkpoint (<run>/checkpoints/step-N) or a model "
            "directory."
        )
    path = path.resolve()
    if path.is_dir() and is_run_dir(path):
        return "run", path
    if path.is_dir() and (path / "model.safetensors").is_file() and (path / "state.json").is_file():
        return "checkpoint", path
    if path.is_dir() and path.name == "checkpoints" and is_run_dir(path.parent):
        return "checkpoint", path
    if path.is_dir() and is_model_dir(path):
        return "model", path
    raise ValueError(
        f"{path} is not a run directory (config.yaml with checkpoints/ or model/), a checkpoint (model.safetensors "
        "and state.json) nor a transformers model directory (config.json and weights); give one of those."
    )


def run_config(run_dir: Path) -> dict[str, Any]:
    """A run's ``config.yaml`` as plain data.

    Raises:
        ValueError: When it is missing or not a run's config.
    """
    from omegaconf import OmegaConf

    path = run_dir / "config.yaml"
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as err:  # a damaged YAML file
        raise ValueError(f"{path} cannot be read ({type(err).__name__}: {err}); is this a run directory?") from err
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict) or not isinstance(cfg.get("env"), dict):
        raise ValueError(f"{path} has no model: and env: sections; it is not the config.yaml of an lm-envs run.")
    return cfg


def load_target(target: str | os.PathLike[str], device: str = "cpu") -> Target:
    """Load a run directory, checkpoint or model (see the module docstring) onto ``device``.

    Raises:
        ValueError: Naming the fix, when the target is not one of those, its checkpoint does not fit the model its
            run's config builds (another model or tokenizer), or its tokenizer does not belong to its model.
    """
    kind, path = classify(target)
    if kind == "model":
        return _load_model_target(str(target) if not path.exists() else str(path), path, device)
    run_dir = path if kind == "run" else (path.parent if path.name == "checkpoints" else path.parent.parent)
    if not (run_dir / "config.yaml").is_file():
        raise ValueError(
            f"checkpoint {path} is not inside a run directory (no {run_dir / 'config.yaml'}): its config says which "
            "model the weights belong to. Evaluate the run directory, or export it first."
        )
    cfg = run_config(run_dir)
    if kind == "run" and is_model_dir(run_dir / "model"):
        out = _load_model_target(str(run_dir / "model"), run_dir / "model", device)
        out.kind, out.path, out.weights = "run", path, run_dir / "model"
    else:
        ckpt = path if kind == "checkpoint" and path.name != "checkpoints" else _latest(run_dir)
        out = _rebuild(cfg, run_dir, ckpt, device)
        out.kind, out.path = kind, path
    from agents.policy.models import default_model_name
    from agents.policy.pretrained import display_name

    model_cfg = cfg["model"]
    out.name = display_name(model_cfg.get("name_or_path")) or default_model_name(
        model_cfg.get("arch", "gpt2"), **dict(model_cfg.get("size") or {})
    )
    out.env_id = str(cfg["env"]["id"])
    kwargs = dict(cfg["env"].get("kwargs") or {})
    if model_cfg.get("name_or_path") is not None:  # a pretrained model's own tokenizer drives its env, as in training
        kwargs.setdefault("tokenizer", str(out.tokenizer_dir))
    out.env_kwargs = kwargs
    out.seed = int(cfg.get("seed", 0))
    out.run_dir = run_dir
    return out


def _latest(run_dir: Path) -> Path:
    from agents.run.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None:
        raise ValueError(
            f"{run_dir} has no model/ and no intact checkpoint under checkpoints/; the run never finished SFT. "
            "Resume it (lm-envs train output_dir=...) or evaluate another run."
        )
    return ckpt


def _load_model_target(name: str, path: Path, device: str) -> Target:
    from agents.policy.models import load_model
    from agents.policy.pretrained import resolve_model
    from lm_envs.core.tokenizer import load_codec

    directory = resolve_model(name) or name
    if Path(directory).is_dir() and not any(
        (Path(directory) / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
    ):
        raise ValueError(
            f"{directory} holds no tokenizer (tokenizer.json or tokenizer_config.json); save the model's tokenizer "
            "beside it (lm-envs export writes both)."
        )
    codec = load_codec(directory)
    model = load_model(directory, codec).to(device)
    check_tokenizer(model, codec, directory)
    out = Target(model, codec, "model", path, name=name, env_kwargs={"tokenizer": directory}, weights=Path(directory))
    out.tokenizer_dir = Path(directory)
    meta = Path(directory) / EXPORT_META
    if meta.is_file():  # an lm-envs export remembers its run's env, seed and model name
        info = json.loads(meta.read_text())
        out.env_id, out.seed, out.name = info.get("env_id"), info.get("seed"), info.get("model") or name
        out.env_kwargs = {**(info.get("env_kwargs") or {}), "tokenizer": directory}
    return out


def check_tokenizer(model: nn.Module, codec: TextCodec, where: str | Path) -> None:
    """Refuse a tokenizer that is not the model's: more tokens than logits, or another end-of-sequence token.

    Raises:
        ValueError: Naming both and the fix.
    """
    from agents.policy.models import logits_width

    if logits_width(model) < codec.vocab_size:
        raise ValueError(
            f"{where}: the tokenizer has {codec.vocab_size} tokens but the model only {logits_width(model)} logits; "
            "the tokenizer belongs to another model. Save the model's own tokenizer beside it."
        )
    eos = getattr(getattr(model, "config", None), "eos_token_id", None)
    eos_ids = eos if isinstance(eos, list) else [eos]
    if eos is not None and codec.eos_token_id not in eos_ids:
        raise ValueError(
            f"{where}: the tokenizer's end-of-sequence token is {codec.eos_token_id} but the model's config says "
            f"{eos}; the tokenizer belongs to another model. Save the model's own tokenizer beside it."
        )


def _rebuild(cfg: dict[str, Any], run_dir: Path, ckpt: Path, device: str) -> Target:
    """The model a run's ``config.yaml`` builds, with the weights of ``ckpt``."""
    from agents.policy.lora import LoRASection, add_lora
    from agents.policy.models import load_model
    from agents.policy.pretrained import resolve_model
    from agents.run.checkpoint import CheckpointError, read_checkpoint
    from lm_envs.core.tokenizer import load_codec

    model_cfg = cfg["model"]
    tok = run_dir / "tokenizer"
    if not (tok / "tokenizer.json").is_file() and not (tok / "tokenizer_config.json").is_file():
        raise ValueError(f"{tok} holds no tokenizer; the run directory is incomplete (it is written before SFT).")
    codec = load_codec(str(tok))
    model = load_model(
        resolve_model(model_cfg.get("name_or_path"), progress=False),
        codec,
        seed=int(cfg.get("seed", 0)),
        arch=model_cfg.get("arch", "gpt2"),
        size=dict(model_cfg.get("size") or {}),
    )
    lora = dict(model_cfg.get("lora") or {})
    if int(lora.get("r", 0)) > 0:
        add_lora(model, LoRASection(**lora), seed=int(cfg.get("seed", 0)))
    try:  # a LoRA checkpoint holds the adapters; its frozen base is the run's reference.safetensors
        weights = read_checkpoint(ckpt)["weights"]
    except CheckpointError as err:
        raise ValueError(f"{err}; the checkpoint is damaged.") from err
    lm = {k.removeprefix("lm."): v for k, v in weights.items() if not k.startswith(CRITIC_PREFIXES)}
    own = model.state_dict()
    missing = [k for k in own if k not in lm and not k.endswith("lm_head.weight")]
    unexpected = [k for k in lm if k not in own]
    wrong = [k for k in lm if k in own and lm[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        shapes = [f"{k}: {tuple(lm[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:2]]
        raise ValueError(
            f"checkpoint {ckpt} does not fit the model {run_dir / 'config.yaml'} builds (missing {missing[:2]}, "
            f"unexpected {unexpected[:2]}, other shapes {shapes}): it comes from another model or tokenizer. "
            "Evaluate the checkpoint inside its own run directory."
        )
    model.load_state_dict(lm, strict=False)
    model = model.to(device).eval()
    check_tokenizer(model, codec, ckpt)
    return Target(model, codec, "checkpoint", ckpt, name="", weights=ckpt, tokenizer_dir=tok)


def generation_config(codec: TextCodec, max_new_tokens: int | None = None) -> Any:
    """A ``GenerationConfig`` that stops where the env stops: the codec's EOS and pad ids, ``max_new_tokens``."""
    from transformers import GenerationConfig

    extra = {"max_new_tokens": int(max_new_tokens)} if max_new_tokens else {}
    stops = [codec.eos_token_id, *sorted(codec.stop_token_ids - {codec.eos_token_id})]  # e.g. <|eot_id|> too
    return GenerationConfig(
        eos_token_id=stops if len(stops) > 1 else stops[0],
        pad_token_id=codec.pad_token_id,
        bos_token_id=codec.eos_token_id,
        **extra,
    )


def export(target: str | os.PathLike[str], directory: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write ``target`` as a plain transformers directory: config, safetensors, tokenizer, generation config.

    LoRA adapters are merged; a PPO value head is dropped. The directory is written beside its final name and
    renamed when complete, so a failed export leaves nothing half-written.

    Raises:
        ValueError: When ``directory`` exists and is not empty (without ``overwrite``), or the target cannot load.
    """
    from agents.policy.models import export_model

    out = Path(directory).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ValueError(f"{out} exists and is not empty; choose another -o directory or pass --overwrite.")
    loaded = load_target(target)
    max_new = None
    if loaded.env_id is not None:
        import gymnasium as gym

        try:
            max_new = gym.spec(loaded.env_id).kwargs.get("max_new_tokens")
        except gym.error.Error:
            max_new = None
        max_new = loaded.env_kwargs.get("max_new_tokens", max_new)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        export_model(loaded.model, loaded.codec, tmp)
        generation_config(loaded.codec, max_new).save_pretrained(tmp)
        meta = {
            "source": str(loaded.path),
            "kind": loaded.kind,
            "weights": str(loaded.weights) if loaded.weights else None,
            "model": loaded.name,
            "env_id": loaded.env_id,
            "env_kwargs": {k: v for k, v in loaded.env_kwargs.items() if k != "tokenizer"},
            "seed": loaded.seed,
        }
        (tmp / EXPORT_META).write_text(json.dumps(meta, indent=1))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
