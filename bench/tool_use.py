"""Tool use vs none at equal compute (#21): does a model trained with the calculator beat one trained without it?

Both arms run ``+experiment=math_tools`` (the tiny rotary default; SFT on gold solutions, then GRPO) on the same
word problems: ``env=math_tools`` (LMEnv/MathTools-v0: the demonstrations call ``<calc>a op b</calc>`` and the env
appends `` = c``, masked out of every loss) and ``env=math`` (LMEnv/Math-v0: the same steps as plain arithmetic).
Equal compute: the same SFT steps and batch size, RL iterations and episodes. Reports held-out greedy accuracy
(300 test problems) after SFT and after RL per seed, the arms' means with 95% t-intervals, and the paired
per-seed difference. Runs ``--parallel`` training processes at once, one torch thread each.

    python bench/tool_use.py [--seeds 0 1 2] [--parallel 2] [--out bench/results/tool_use.json] [-- overrides]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the repo's experiments/ package
from experiments.common import ci95 as common_ci95  # noqa: E402

ARMS = {"tool": "math_tools", "no_tool": "math"}


def ci95(values: list[float]) -> list[float]:
    """``[mean, lo, hi]``: the claims' 95% t-interval over seeds (:func:`experiments.common.ci95`)."""
    return [round(v, 4) for v in common_ci95(values)]


def train(arm: str, seed: int, work: Path, overrides: list[str]) -> dict:
    """One training run (resumed if its directory holds checkpoints); its eval.json's accuracies."""
    out = work / f"{arm}-seed{seed}"
    if not (out / "eval.json").is_file():
        cmd = [sys.executable, "-m", "agents.cli", "train", "+experiment=math_tools", f"env={ARMS[arm]}"]
        cmd += [f"seed={seed}", "model.threads=1", "train.progress=false", f"output_dir={out}", f"hydra.run.dir={out}"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        t0 = time.time()
        done = subprocess.run([*cmd, *overrides], cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{arm} seed {seed} failed:\n{done.stderr[-2000:]}")
        (out / "wall_s.txt").write_text(f"{time.time() - t0:.1f}")
    result = json.loads((out / "eval.json").read_text())
    wall = out / "wall_s.txt"
    return {
        "sft": result["accuracy_before_rl"],
        "rl": result["metrics"]["accuracy"],
        "mean_tokens": result["metrics"].get("mean_tokens"),
        "wall_s": float(wall.read_text()) if wall.is_file() else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--work", default=str(ROOT / "runs" / "tool_use"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "tool_use.json"))
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for both arms (after --)")
    args = parser.parse_args()
    work = Path(args.work)
    jobs = [(arm, seed) for seed in args.seeds for arm in ARMS]
    with ThreadPoolExecutor(args.parallel) as pool:
        runs = dict(zip(jobs, pool.map(lambda j: train(*j, work, args.overrides), jobs), strict=True))
    arms = {}
    for arm in ARMS:
        per_seed = {str(s): runs[(arm, s)] for s in args.seeds}
        arms[arm] = {
            "per_seed": per_seed,
            **{f"{k}_accuracy_ci95": ci95([r[k] for r in per_seed.values()]) for k in ("sft", "rl")},
        }
    diff = {k: [runs[("tool", s)][k] - runs[("no_tool", s)][k] for s in args.seeds] for k in ("sft", "rl")}
    result = {
        "bench": "tool_use",
        "setting": "+experiment=math_tools; held-out greedy accuracy on 300 Math-v0 easy test problems",
        "overrides": args.overrides,
        "seeds": args.seeds,
        "arms": arms,
        "paired_difference_tool_minus_no_tool": {k: {"per_seed": v, "ci95": ci95(v)} for k, v in diff.items()},
    }
    text = json.dumps(result, indent=1)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
