"""bench/distill_rm_dpo_vs_grpo.py: pairs, per-run figures and the paired summary by hand; --quick end to end (slow)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "distill_rm_dpo_vs_grpo.py"


def load():
    spec = importlib.util.spec_from_file_location("distill_rm_dpo_vs_grpo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_run(directory: Path, accuracy: float, before: float, paid: list[float], true: list[float] | None) -> None:
    directory.mkdir(parents=True)
    ev = {"metrics": {"accuracy": accuracy, "mean_return": 0.5}, "accuracy_before_rl": before, "wall_time_s": 1.0}
    (directory / "eval.json").write_text(json.dumps(ev))
    rows = [{"step": 0, "eval/accuracy": before}]
    for i, p in enumerate(paid):
        row = {"step": i + 1, "rollout/return_mean": p, "rollout/length_mean": 20.0}
        if true is not None:
            row["rollout/outcome/correct"] = true[i]
        rows.append(row)
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_pairs_are_every_right_wrong_pair_of_distinct_texts():
    m = load()
    rows = m.preference_rows(
        ["p", "q", "r"],
        [["a", "b", "c", "a", "d"], ["x", "y"], ["u", "v"]],
        [[True, False, True, True, False], [True, True], [False, True]],
    )
    # p: right {a, c} (a sampled twice), wrong {b, d}; q: no wrong one; r: right v, wrong u
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == [
        ("p", "a", "b"), ("p", "a", "d"), ("p", "c", "b"), ("p", "c", "d"), ("r", "v", "u"),
    ]  # fmt: skip


def test_runs_summarize_to_intervals_and_paired_differences_to_grpo(tmp_path):
    m = load()
    accs = {"grpo": [0.40, 0.30, 0.50], "grpo_orm": [0.42, 0.29, 0.55]}
    for s in range(3):
        fake_run(tmp_path / f"grpo-seed{s}", accs["grpo"][s], 0.4, [0.5] * 12, [0.5] * 12)
        # paid by a learned reward: 0.8 paid, 0.25 true in the last 10 iterations
        fake_run(tmp_path / f"grpo_orm-seed{s}", accs["grpo_orm"][s], 0.4, [0.6, 0.6] + [0.8] * 10,
                 [0.5, 0.5] + [0.25] * 10)  # fmt: skip
    dpo = tmp_path / "dpo-seed0"
    dpo.mkdir()
    (dpo / "eval.json").write_text(json.dumps({"metrics": {"accuracy": 0.3}, "accuracy_before_rl": 0.4}))
    (dpo / "metrics.jsonl").write_text(
        json.dumps({"step": 1, "rollout/return_mean": None, "dpo/accuracy": 0.75, "dpo/epoch": 0.5}) + "\n"
    )
    run = m.read_run(dpo)
    assert run["dpo_accuracy_last10"] == 0.75 and "train_reward" not in run
    assert m.read_run(tmp_path / "nothing") is None
    runs = {a: {s: m.read_run(tmp_path / f"{a}-seed{s}") for s in range(3)} for a in accs}
    assert runs["grpo_orm"][0]["train_reward_last10"] == pytest.approx(0.8)
    assert runs["grpo_orm"][0]["train_reward_true_first10"] == pytest.approx((0.5 * 2 + 0.25 * 8) / 10)
    summary = m.summarize(runs, [0, 1, 2])
    diff = summary["grpo_orm"]["heldout_accuracy_minus_grpo"]  # per seed +0.02, -0.01, +0.05
    assert diff[0] == pytest.approx(0.02, abs=1e-4)
    assert diff[2] - diff[0] == pytest.approx(4.303 * 0.03 / 3**0.5, abs=1e-3)  # t(2) * sd / sqrt(3)
    assert summary["grpo_orm"]["learned_minus_true_last10"][0] == pytest.approx(0.55)
    assert "heldout_accuracy_minus_grpo" not in summary["grpo"]
    assert "| grpo_orm | 42.0 [" in m.table(summary)


@pytest.mark.slow
def test_quick_path_runs_every_arm_end_to_end(tmp_path):
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--quick",
        "--seeds",
        "0",
        "--work",
        str(tmp_path),
        "-o",
        str(tmp_path / "r.json"),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads((tmp_path / "r.json").read_text())
    for arm in ("grpo", "grpo_orm", "grpo_prm", "distill", "distill_sampled"):
        assert 0.0 <= result["summary"][arm]["heldout_accuracy"][0] <= 1.0
    assert {"orm", "prm", "dpo_pairs"} <= set(result["prep"]["0"])
    assert result["prep"]["0"]["dpo_pairs"]["sampled_episodes"] == 2 * 8  # iterations x num_envs
