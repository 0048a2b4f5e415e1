"""bench/trl_grad_check.py: the gradient comparison, the position-id fix, and (slow, needs trl) one real check."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "trl_grad_check.py"


def load_bench():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("trl_grad_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_grad_compare_norms_cosine_and_worst_parameter():
    bench = load_bench()
    ours = {"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([0.0, 4.0]), "c": torch.zeros(2)}
    same = bench.grad_compare(ours, {k: 2 * v for k, v in ours.items()})
    assert same["cosine"] == pytest.approx(1.0) and same["norm_ratio_ours_over_trl"] == pytest.approx(0.5)
    assert same["worst_parameter_cosine"] == pytest.approx(1.0)  # "c" is zero on both sides: not a parameter to blame
    theirs = {"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([0.0, -4.0]), "c": torch.tensor([1.0, 0.0])}
    out = bench.grad_compare(ours, theirs)
    assert out["cosine"] == pytest.approx((9 - 16) / (5 * math.sqrt(26)))
    assert out["worst_parameter"] == "b" and out["worst_parameter_cosine"] == pytest.approx(-1.0)
    zero_one_side = bench.grad_compare({"c": torch.zeros(2)}, {"c": torch.ones(2)})
    assert zero_one_side["worst_parameter_cosine"] == 0.0 and zero_one_side["cosine"] is None


def test_positions_count_from_each_rows_first_real_token():
    bench = load_bench()
    seen = {}

    def forward(**kwargs):
        seen.update(kwargs)
        return "out"

    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert bench.bench_trl.with_position_ids(forward, input_ids=torch.zeros(2, 4), attention_mask=mask) == "out"
    assert seen["position_ids"].tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]
    given = torch.arange(4)[None]
    bench.bench_trl.with_position_ids(forward, attention_mask=mask, position_ids=given)  # given ids are kept
    assert seen["position_ids"] is given


@pytest.mark.slow
def test_tiny_model_same_gradient_as_trl_once_positions_agree(tmp_path):
    pytest.importorskip("trl")
    out = tmp_path / "check.json"
    cmd = [sys.executable, str(SCRIPT), "--setting", "tiny", "--steps", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    step = json.loads(out.read_text())["steps"][0]
    assert step["norm_ours"] > 0, "the first batch had no reward variance: nothing to compare"
    assert step["advantage_max_abs_difference"] < 1e-5
    assert step["loss_trl"] == pytest.approx(step["pg_loss_ours"], rel=1e-4, abs=1e-8)
    # TRL's loss forward leaves position ids out: on this absolute-position model the left-padded rows are
    # scored at shifted positions, so its log-probs differ from the sampler's and so does its gradient ...
    assert step["sampler_vs_trl_learner_logp_abs_diff_max"] > 0.1
    # ... and given the position ids generation used, TRL's gradient is ours
    assert step["sampler_vs_trl_forward_with_position_ids_logp_abs_diff_max"] < 1e-4
    fixed = step["with_position_ids"]
    assert fixed["cosine"] > 0.9999 and fixed["norm_ratio_ours_over_trl"] == pytest.approx(1.0, abs=1e-3)


def test_row_chunks_split_per_row_tensors_and_share_the_rest():
    bench = load_bench()
    inputs = {
        "completion_ids": torch.arange(10).reshape(5, 2),
        "advantages": torch.arange(5.0),
        "num_items_in_batch": torch.tensor(5),
        "width": 2,
    }
    parts = bench.row_chunks(inputs, 2)
    assert [p["advantages"].tolist() for p in parts] == [[0.0, 1.0, 2.0], [3.0, 4.0]]
    assert all(p["num_items_in_batch"] is inputs["num_items_in_batch"] and p["width"] == 2 for p in parts)
    assert torch.equal(torch.cat([p["completion_ids"] for p in parts]), inputs["completion_ids"])
