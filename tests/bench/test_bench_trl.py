"""bench/bench_trl.py: quick mode runs end to end and prints the documented JSON structure."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_trl.py"
OURS = ["ours_grpo", "ours_rloo", "ours_ppo", "ours_ppo_grouped"]
PER_VARIANT = (
    "seconds_per_update",
    "tokens_per_s",
    "generation_s_per_update",
    "cpu_s_per_update",
    "peak_rss_mib",
    "rss_before_train_mib",
    "mean_completion_tokens",
    "tokens_per_update",
)


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_trl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_quick(variants: list[str]) -> dict:
    cmd = [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--variants", *variants]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)  # stdout is exactly one JSON document


def check_variant(result: dict, name: str, completions: int) -> None:
    v = result["variants"][name]
    for key in PER_VARIANT:
        assert v[key] > 0, (name, key, v[key])
    assert v["peak_rss_mib"] >= v["rss_before_train_mib"]
    assert v["config"]["completions"] == completions
    assert len(v["rounds"]) == result["settings"]["rounds"] == 1
    assert v["rounds"][0]["torch_threads"] == 1
    assert len(v["rounds"][0]["seconds_per_update_each"]) == result["settings"]["updates"]
    assert 0 < v["mean_completion_tokens"] <= result["settings"]["max_new_tokens"]


def test_quick_ours():
    result = run_quick(OURS)
    settings = result["settings"]
    assert settings["completions_per_update"] == 8 and settings["max_new_tokens"] == 16
    assert settings["kl_coef"] == 0.0 and settings["threads"] == 1
    assert set(result["variants"]) == {*OURS, "trl_ppo"}
    for name in OURS:
        check_variant(result, name, 8)
    assert result["variants"]["ours_ppo"]["config"]["group_size"] == 1
    assert result["variants"]["ours_ppo_grouped"]["config"]["group_size"] == 4  # 2 prompts x 4, as GRPO
    assert result["variants"]["ours_ppo_grouped"]["config"]["kl_coef"] == 0.0
    assert result["variants"]["ours_grpo"]["config"]["baseline"] == "grpo"
    assert result["variants"]["trl_ppo"]["available"] is False
    assert "reward" in result["variants"]["trl_ppo"]["note"]
    assert result["ratios"] == {} and result["paired"] == {}  # no TRL variant ran


def test_missing_trl_names_the_extra(monkeypatch):
    bench = load_bench()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trl" else real(name, *a))
    with pytest.raises(SystemExit, match=r'pip install -e "\.\[bench\]"'):
        bench.main(["--quick", "--variants", "trl_grpo"])


def test_ratios_pair_rounds():
    bench = load_bench()
    ours = [{"tokens_per_s": 30.0, "seconds_per_update": 1.0}, {"tokens_per_s": 20.0, "seconds_per_update": 2.0}]
    trl = [{"tokens_per_s": 10.0, "seconds_per_update": 3.0}, {"tokens_per_s": 20.0, "seconds_per_update": 2.0}]
    r = bench.ratios({"ours_grpo": ours, "trl_grpo": trl, "ours_ppo": ours}, {})
    assert set(r) == {"ours_grpo/trl_grpo", "ours_ppo/trl_grpo"}
    g = r["ours_grpo/trl_grpo"]
    assert g["basis"] == "separate" and g["tokens_per_s"] == 2.0 and g["meets_target"] and g["same_algorithm"]
    assert g["separate"]["tokens_per_s_per_round"] == [3.0, 1.0]
    assert g["separate"]["update_speedup_per_round"] == [3.0, 1.0]
    assert not r["ours_ppo/trl_grpo"]["same_algorithm"]


def test_ratios_prefer_paired_runs():
    bench = load_bench()
    ours = [{"tokens_per_s": 30.0, "seconds_per_update": 1.0}]
    trl = [{"tokens_per_s": 10.0, "seconds_per_update": 3.0}]
    pair = {
        "ours": {"tokens_per_s": 12.0, "seconds_per_update": 1.0},
        "trl": {"tokens_per_s": 10.0, "seconds_per_update": 1.2},
        "tokens_per_s_ratio_each": [1.1, 1.3],
    }
    r = bench.ratios({"ours_grpo": ours, "trl_grpo": trl}, {"ours_grpo/trl_grpo": [pair]})["ours_grpo/trl_grpo"]
    assert r["basis"] == "paired" and r["tokens_per_s"] == 1.2 and not r["meets_target"]
    assert r["separate"]["tokens_per_s"] == 3.0
    assert r["paired"]["tokens_per_s_per_update"] == [1.1, 1.3]


@pytest.mark.slow
def test_quick_trl():
    pytest.importorskip("trl")
    result = run_quick(["ours_grpo", "trl_grpo", "trl_rloo"])
    for name in ("ours_grpo", "trl_grpo", "trl_rloo"):
        check_variant(result, name, 8)
    assert result["variants"]["trl_grpo"]["config"]["beta"] == 0.0
    assert result["variants"]["trl_rloo"]["config"]["beta"] == 0.0
    assert result["variants"]["trl_grpo"]["config"]["gradient_checkpointing"] is False
    assert set(result["ratios"]) == set(result["paired"]) == {"ours_grpo/trl_grpo"}
    pair = result["paired"]["ours_grpo/trl_grpo"][0]
    assert pair["ours"]["tokens_per_s"] > 0 and pair["trl"]["tokens_per_s"] > 0
    assert len(pair["tokens_per_s_ratio_each"]) == result["settings"]["updates"]


@pytest.mark.slow
def test_quick_smollm2_lora_and_full():
    pytest.importorskip("trl")
    from agents.policy.pretrained import resolve_model

    try:
        resolve_model("smollm2", progress=False)
    except ValueError as e:
        pytest.skip(f"SmolLM2 is not cached and cannot be downloaded here: {e}")
    cmd = [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--model", "smollm2", "--lora", "16", "0"]
    cmd += ["--micro-batches", "2", "--variants", "ours_grpo", "trl_grpo"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert set(result["by_lora"]) == {"lora_r16", "full"}
    for name, rank in (("lora_r16", 16), ("full", 0)):
        one = result["by_lora"][name]
        assert one["settings"]["model"].startswith("HuggingFaceTB/SmolLM2-135M-Instruct")
        assert one["settings"]["lora"] == rank and one["settings"]["sft_steps"] == 0
        for variant in ("ours_grpo", "trl_grpo"):
            check_variant(one, variant, 8)
            assert one["variants"][variant]["config"]["lora_r"] == rank
        trl = one["variants"]["trl_grpo"]
        assert trl["config"]["gradient_accumulation_steps"] == 2 and trl["config"]["per_device_train_batch_size"] == 4
        checked = trl["rounds"][0]["prompt_ids_checked"]  # chat-templated prompts: TRL's ids are the env's
        assert checked["prompts"] == checked["identical"] > 0
        assert one["variants"]["ours_grpo"]["config"]["num_minibatches"] == 2
        assert set(one["paired"]) == {"ours_grpo/trl_grpo"}
