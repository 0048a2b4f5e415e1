"""bench/test_time.py: a tiny budget runs every stage end to end and writes the documented JSON and plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "test_time.py"


def test_tiny_test_time_bench_writes_curves_search_points_difficulty_bins_and_the_plot(tmp_path):
    tiny = ["--n", "8", "--problems", "6", "--seeds", "2", "--search-n", "4", "8", "--width", "4"]
    train = [
        "--co-dev",
        "4",
        "--co-budget",
        "5000",
        "--sft-steps",
        "5",
        "--rm-problems",
        "4",
        "--rm-samples",
        "2",
        "--rm-steps",
        "2",
        "--trials",
        "2",
        "--contrastive",
        "--contrastive-steps",
        "2",
    ]
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), *tiny, *train],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "test_time.json").read_text())
    assert result["n"] == [1, 2, 4, 8] and len(result["per_seed"]) == 2
    curves = ("pass@n", "majority", "orm", "orm_weighted", "prm_min", "prm_last", "prm_product")
    for name in (*curves, "likelihood"):
        assert len(result["curves"][name]) == 4 and all(0 <= m <= 1 and h >= 0 for m, h in result["curves"][name])
    for strat in ("beam", "dvts", "lookahead", "rule_lookahead"):
        points = result["search"][strat]
        assert [p["n"] for p in points] == [4, 8] and all(p["tokens"] > 0 for p in points)
    assert set(result["by_difficulty"]) == {"hard", "medium", "easy"}
    assert set(result["compute_optimal"]["choice"]) == {"easy", "medium", "hard"}
    (point,) = result["search"]["rule_compute_optimal"]
    assert 0 <= point["accuracy"] <= 1 and point["tokens"] > 0
    assert sum(b["problems"] for b in result["by_difficulty"].values()) == 6
    # a 5-step policy solves nothing: no problem has right and wrong samples to pair, and the bench says so
    assert "orm_pairwise" not in result["verifiers"] and "orm_pairwise skipped" in out.stdout
    for verifier in ("orm", "prm"):
        assert {"within_problem_auc", "selection_accuracy"} <= set(result["verifiers"][verifier]["heldout"])
    assert (tmp_path / "test_time.png").stat().st_size > 0
    # --contrastive: the generative verifier as a best-of-N scorer and as a search guide, trained by train-rm's path
    for name in ("contrastive", "contrastive_weighted"):
        assert len(result["curves"][name]) == 4
    assert [p["n"] for p in result["search"]["contrastive_beam"]] == [4, 8]
    assert result["verifiers"]["contrastive"]["data"]["train_pairs"] > 0
    assert "contrastive" in result["verifier_auc_on_test_samples"]
    assert "best_of_n_contrastive" in result["by_difficulty"]["hard"]["4"]
    # the PRM (the policy's backbone) and the contrastive verifier share the policy's tokenizer: token ids, no text
    for guide in ("prm", "contrastive"):
        counts = result["per_seed"][0]["scored_steps"]
        assert counts[f"{guide}_tokens"] > 0, counts


def test_search_sizes_that_are_not_multiples_of_the_width_are_refused_before_any_work(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--search-n", "6", "--width", "4"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "multiples of --width 4" in out.stderr
    assert not (tmp_path / "policy").exists()
    cmd = [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--search-guides", "contrastive"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "needs --contrastive" in out.stderr
    assert not (tmp_path / "policy").exists()
