"""bench/trl_parity.py: the summary of job files, and (slow, needs trl) a quick end-to-end run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "trl_parity.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("trl_parity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(path: Path, rewards: list[float], accuracy: float) -> None:
    records = [{"reward": r, "length": 10.0} for r in rewards]
    path.write_text(json.dumps({"records": records, "train_s": 1.0, "config": {}, "held_out": {"accuracy": accuracy}}))


def test_summary_curves_intervals_and_paired_difference(tmp_path):
    bench = load_bench()
    (tmp_path / "before.json").write_text(json.dumps({"held_out": {"accuracy": 0.1}}))
    write_run(tmp_path / "ours_seed0.json", [0.0, 0.5, 1.0], 0.4)
    write_run(tmp_path / "ours_seed1.json", [0.0, 0.0, 0.5], 0.2)
    write_run(tmp_path / "trl_seed0.json", [0.0, 0.0, 0.5], 0.3)
    write_run(tmp_path / "trl_seed1.json", [0.0, 0.5, 0.5], 0.2)
    (tmp_path / "trl_seed2.progress").write_text(json.dumps({"seed": 2, "records": [{"reward": 0.25}]}))
    spec = {"prompts": 2, "group": 4, "seed": 0}
    out = bench.summarize("tiny", spec, tmp_path, [0, 1, 2])  # seed 2 has no finished run: left out
    assert out["unfinished"] == {"trl_seed2": [[8, 0.25]]}  # a run cut short: its updates so far
    assert out["samples_per_update"] == 8
    assert out["runs"]["ours"]["0"]["curve"] == [[8, 0.0], [16, 0.5], [24, 1.0]]
    ours = out["summary"]["ours"]
    assert ours["seeds"] == [0, 1] and out["summary"]["trl"]["seeds"] == [0, 1]
    assert ours["reward_all"]["per_seed"] == [0.5, pytest.approx(0.1667, abs=1e-4)]
    assert ours["reward_last_third"]["per_seed"] == [1.0, 0.5]
    assert ours["held_out_after"]["mean"] == pytest.approx(0.3)
    lo, hi = ours["held_out_after"]["ci95"]
    assert lo < 0.3 < hi
    assert ours["mean_curve"] == [0.0, 0.25, 0.75]
    diff = out["ours_minus_trl"]
    assert diff["seeds"] == [0, 1]
    assert diff["reward_last_third"]["per_seed"] == [0.5, 0.0]
    assert diff["held_out_after"]["per_seed"] == [pytest.approx(0.1), 0.0]
    assert "ours_minus_trl_positions" not in out  # that side has no runs here


def test_summary_pairs_ours_with_the_position_ids_side_too(tmp_path):
    bench = load_bench()
    (tmp_path / "before.json").write_text(json.dumps({"held_out": {"accuracy": 0.1}}))
    for seed, (mine, theirs) in enumerate([(0.5, 0.25), (0.5, 0.5)]):
        write_run(tmp_path / f"ours_seed{seed}.json", [mine], 0.3)
        write_run(tmp_path / f"trl_positions_seed{seed}.json", [theirs], 0.2)
    out = bench.summarize("tiny", {"prompts": 2, "group": 4, "seed": 0}, tmp_path, [0, 1])
    assert set(out["summary"]) == {"ours", "trl_positions"} and "ours_minus_trl" not in out
    diff = out["ours_minus_trl_positions"]
    assert diff["reward_all"]["per_seed"] == [0.25, 0.0]
    assert diff["held_out_after"]["per_seed"] == [pytest.approx(0.1), pytest.approx(0.1)]


def test_summary_pairs_both_of_our_stop_rules_with_trl(tmp_path):
    bench = load_bench()
    (tmp_path / "before.json").write_text(json.dumps({"held_out": {"accuracy": 0.1}}))
    for seed, (task_rule, eos_rule, theirs) in enumerate([(0.5, 0.75, 0.25), (0.25, 0.5, 0.5)]):
        write_run(tmp_path / f"ours_seed{seed}.json", [task_rule], 0.3)
        write_run(tmp_path / f"ours_eos_seed{seed}.json", [eos_rule], 0.4)
        write_run(tmp_path / f"trl_seed{seed}.json", [theirs], 0.2)
    out = bench.summarize("smollm2", {"prompts": 2, "group": 4, "seed": 0}, tmp_path, [0, 1])
    assert out["ours_minus_trl"]["reward_all"]["per_seed"] == [0.25, -0.25]
    assert out["ours_eos_minus_trl"]["reward_all"]["per_seed"] == [0.5, 0.0]
    assert out["ours_eos_minus_trl"]["held_out_after"]["per_seed"] == [pytest.approx(0.2), pytest.approx(0.2)]
    assert "ours_eos_minus_trl_positions" not in out


def test_runs_dir_refuses_job_files_of_another_setting(tmp_path):
    bench = load_bench()
    spec = {"env": "LMEnv/Math-v1", "updates": 15, "seed": 0, "threads": 1, "model_path": "/x"}
    bench.check_runs_dir(tmp_path, spec, record=False)  # --summarize-only: checks, records nothing
    assert not (tmp_path / "spec.json").exists()
    bench.check_runs_dir(tmp_path, spec)
    bench.check_runs_dir(tmp_path, {**spec, "seed": 2, "threads": 2, "model_path": "/y"})  # per-job keys: fine
    assert json.loads((tmp_path / "spec.json").read_text()) == {"env": "LMEnv/Math-v1", "updates": 15}
    with pytest.raises(SystemExit, match=r"differs in \['env'\].*--runs"):
        bench.check_runs_dir(tmp_path, {**spec, "env": "LMEnv/Math-v0"})


def test_ours_eos_side_trains_without_the_task_stop_rule():
    import argparse

    bench = load_bench()
    args = argparse.Namespace(threads=1, cache_dir=None, quick=True, updates=None, eval_episodes=None)
    spec = {**bench.setting_spec("tiny", args), "seed": 0}
    task_rule = bench.bench_trl.OursLoop(spec, "grpo").venv.unwrapped.episodes
    eos_rule = bench.bench_trl.OursLoop({**spec, "stop_rule": False}, "grpo").venv.unwrapped.episodes
    assert task_rule.stops is not None and eos_rule.stops is None  # only EOS or the budget ends a sample


@pytest.mark.slow
def test_quick_run_both_sides(tmp_path):
    pytest.importorskip("trl")
    runs, out = tmp_path / "runs", tmp_path / "parity.json"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--seeds", "0", "--runs", str(runs), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert sorted(p.name for p in runs.iterdir()) == ["before.json", "ours_seed0.json", "trl_seed0.json"]
    for side in ("ours", "trl"):
        run = result["runs"][side]["0"]
        assert [x for x, _ in run["curve"]] == [8, 16]  # 2 prompts x 4 samples per update, 2 updates
        assert all(0.0 <= r <= 1.0 for _, r in run["curve"])
        # the same held-out problems through the same evaluator
        assert run["held_out_after"]["problems_hash"] == result["held_out_before"]["problems_hash"]
    checked = result["runs"]["trl"]["0"]["prompt_ids_checked"]
    assert checked["prompts"] == checked["identical"] > 0
    trl, ours = result["config"]["trl"], result["config"]["ours"]
    assert trl["loss_type"] == "dapo" and trl["scale_rewards"] == "group" and trl["beta"] == 0.0
    assert trl["num_iterations"] == ours["iterations"] == 1 and ours["kl_coef"] == 0.0
    assert trl["learning_rate"] == ours["lr"] and trl["temperature"] == ours["temperature"]
    assert set(result["ours_minus_trl"]) >= {"reward_all", "held_out_after"}


@pytest.mark.slow
def test_trl_positions_side_gives_trls_loss_forward_position_ids(monkeypatch):
    pytest.importorskip("trl")
    import argparse

    bench = load_bench()  # puts bench/ on sys.path: bench_trl is the module trl_parity uses
    bench_trl = bench.bench_trl
    added = []
    wrap = bench_trl.with_position_ids

    def counting(forward, *args, **kwargs):
        added.append(kwargs.get("position_ids") is None)  # generation passes its own; TRL's loss forward none
        return wrap(forward, *args, **kwargs)

    monkeypatch.setattr(bench_trl, "with_position_ids", counting)
    args = argparse.Namespace(threads=1, cache_dir=None, quick=True, updates=None, eval_episodes=None)
    spec = {**bench.setting_spec("tiny", args), "seed": 0}
    bench_trl.run_trl({**spec, "position_ids": True}, "grpo")
    assert sum(added) >= 2  # one loss forward per step (2 steps), each given the ids it lacked
