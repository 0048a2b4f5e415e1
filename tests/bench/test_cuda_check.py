"""bench/cuda_check.py (the GPU check): its tiny CPU mode runs every section end to end and writes the JSON.

Run as the GPU machine runs it: ``lm_envs_conf`` (the installed name of conf/) is made unimportable, so the
script's alias of conf/ is what Hydra composes from, as in a plain copy of the repo without ``pip install -e .``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "cuda_check.py"

# A finder that refuses lm_envs_conf, then the script as __main__.
LAUNCH = """
import runpy, sys
from importlib.abc import MetaPathFinder

class NoConfPackage(MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "lm_envs_conf":
            raise ModuleNotFoundError("No module named 'lm_envs_conf'", name=name)
        return None

sys.meta_path.insert(0, NoConfPackage())
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def test_tiny_cpu_mode_runs_every_agent_and_the_throughput_section(tmp_path):
    out = tmp_path / "cuda_check.json"
    cmd = [sys.executable, "-c", LAUNCH, str(SCRIPT), "--device", "cpu", "--tiny", "--threads", "1", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LM_ENVS_CACHE": str(tmp_path / "cache")}
    env.pop("OUT", None)
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text())
    assert json.loads(done.stdout) == result  # stdout is the JSON alone (library prints go to stderr)
    assert result["ok"] is True and result["errors"] == []
    assert {"args", "meta", "notes", "runs", "throughput", "summary", "elapsed_s"} <= set(result)
    assert result["meta"]["conf"].startswith("shim")
    assert Path(result["meta"]["agents_path"]) == ROOT / "agents"
    assert any("CUDA" in note for note in result["notes"])

    runs = {r.get("variant", r["agent"]): r for r in result["runs"]}
    variants = {"grpo_lora", "grpo_fp16", "grpo_sdpa_ckpt", "dapo", "online_dpo", "grpo_tools"}
    assert set(runs) == {"grpo", "ppo", "rft", "torchrun_ddp", "torchrun_fsdp"} | variants
    for agent, keys in {
        "grpo": ["reinforce/pg", "reinforce/first_ratio_max_error"],
        "ppo": ["ppo/pg", "ppo/vf", "ppo/first_ratio_max_error"],
        "rft": ["rft/loss"],
    }.items():
        r = runs[agent]
        assert (r["device"], r["dtype"], r["ok"]) == ("cpu", "float32", True), r
        assert set(keys) | {"rollout/tokens_per_s"} <= set(r["first_iteration"])
        assert r["first_iteration"]["step"] == 1 and len(r["iterations"]) == 2
        assert r["wall_s"] > 0 and r["sft_loss_first"] > 0
    for agent in ("grpo", "ppo"):  # float32: sampling and the loss score the same tokens alike
        assert runs[agent]["first_ratio_max_error"] < 1e-4

    # the variants ran on the check's device (CPU here); float16's grad scaler is a CUDA path, so it is skipped
    assert runs["grpo_fp16"]["skipped"] == "needs CUDA"
    for name in variants - {"grpo_fp16"} | {"torchrun_ddp", "torchrun_fsdp"}:
        r = runs[name]
        assert (r["device"], r["dtype"], r["ok"]) == ("cpu", "float32", True), r
        assert len(r["iterations"]) == 2 and r["sft_loss_first"] > 0, r
    assert "dpo/loss" in runs["online_dpo"]["first_iteration"]
    # torchrun with one process (gloo here, NCCL on CUDA) runs the same SFT batches as the in-process run
    for name in ("torchrun_ddp", "torchrun_fsdp"):
        assert runs[name]["sft_loss_last"] == pytest.approx(runs["grpo"]["sft_loss_last"], rel=1e-4)
        assert runs[name]["first_ratio_max_error"] < 1e-4

    models = result["throughput"]["models"]
    assert set(models) == {"default", "large"}
    for m in models.values():
        (bench,) = m["rollout_vs_generate"]
        assert bench["ok"] and bench["collect_tokens_per_s"] > 0 and bench["generate_tokens_per_s"] > 0
        update = m["grpo_update"]
        assert update["ok"] and update["update_s"] > 0 and update["update_generated_tokens_per_s"] > 0
        assert update["first_ratio_max_error"] < 1e-4
