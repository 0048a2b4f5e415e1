"""bench/best_of_n.py: a tiny budget runs every stage end to end and writes the documented table and plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "best_of_n.py"
SELECTORS = ["oracle", "majority", "likelihood", "orm", "orm_weighted"] + [
    f"prm_{how}{kind}" for how in ("product", "min") for kind in ("", "_weighted")
]


def test_tiny_best_of_n_bench_writes_the_table_the_scores_and_the_plot(tmp_path):
    tiny = ["--n", "4", "--problems", "3", "--sft-steps", "5", "--rm-problems", "4", "--rm-samples", "2"]
    cmd = [sys.executable, str(SCRIPT), "--out", str(tmp_path), *tiny, "--rm-steps", "2", "--trials", "2"]
    cmd += ["--contrastive", "--contrastive-steps", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "best_of_n.json").read_text())
    table = result["table"]
    assert table["n"] == [1, 2, 4] and set(SELECTORS) | {"contrastive_likelihood"} <= set(table)
    assert all(len(table[k]) == 3 and all(0.0 <= v <= 1.0 for v in table[k]) for k in SELECTORS)
    assert table["pass@n"] == sorted(table["pass@n"])  # more samples never solve fewer problems
    assert {"orm", "prm", "likelihood", "contrastive"} <= {k.split("_")[0] for k in result["verifier_auc"]}
    assert (tmp_path / "best_of_n.png").stat().st_size > 0 and (tmp_path / "scores.npz").is_file()
    assert (tmp_path / "orm" / "config.json").is_file() and (tmp_path / "prm" / "config.json").is_file()
