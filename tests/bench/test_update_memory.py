"""bench/update_memory.py: every memory knob takes the same update, in its own process, and reports its peak."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "update_memory.py"


def test_quick_run_on_the_tiny_model_agrees_across_arms(tmp_path):
    out = tmp_path / "memory.json"
    args = [sys.executable, str(SCRIPT), "--model", "tiny", "--quick", "--out", str(out)]
    done = subprocess.run([*args, "--arms", "one_pass", "mb4", "checkpointed"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["runs"]) == {"one_pass", "mb4", "checkpointed"}
    for run in result["runs"].values():
        assert run["peak_rss_growth_mib"] >= 0 and run["seconds_per_update"] > 0
        # the same update from the same weights: the log-probs after it agree (checkpointing recomputes the
        # same forward, accumulation splits the same gradient)
        assert run["max_logp_diff_vs_one_pass"] < 1e-4
    assert set(result["ratios"]) == {"mb4_vs_one_pass", "checkpointed_vs_one_pass"}
