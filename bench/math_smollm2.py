"""RL on a real pretrained instruct model: SmolLM2-135M-Instruct on one-step Math-v1 problems, 3 seeds per arm.

Runs (or reuses) ``lm-envs train +experiment=math_smollm2`` for each arm and seed, then writes one JSON with
held-out greedy accuracy before / after (per seed, mean, 95% t-interval; after also per template), training
success over the first and last five rounds, mean completion length and wall time: the figures behind the
README's SmolLM2 table. ``bench/results/math_smollm2_v0split.json`` holds the earlier table, measured on the
``basic`` range with Math-v0's test split (inventory and shopping problems only).

    python bench/math_smollm2.py --work /tmp/smol --seeds 0 1 2 --arms grpo grpo_mb4 rft   # ~20-30 min per run
    python bench/math_smollm2.py --work /tmp/smol --summary-only                            # rebuild the JSON

Arms (equal samples: 15 rounds of 4 problems x 8 samples at temperature 0.7, 64 new tokens, LoRA r=16, lr 2e-4):

* ``grpo``: the experiment as configured, one Adam step per round on its 32 samples.
* ``grpo_mb4``: the same with ``agent.num_minibatches=4``: the batch's gradient accumulated over 4 chunks of 2
  groups, still one Adam step per round (REINFORCE's minibatches only bound memory): a control that the split
  does not change what is learnt.
* ``grpo_mu4``: GRPO's mu = 4 (``agent.iterations=4``): 4 passes over each round's 32 samples, one Adam step
  each, the ratio clipped at 0.2 once the policy has moved: as many optimizer steps per round as ``rft``. Its
  gradient is accumulated over 4 chunks as in ``grpo_mb4``: a whole 32-row pass grows peak memory by ~7 GB
  (``bench/update_memory.py``: mostly the 30 layers' activations), which the shared 24 GB machine could not
  give three runs.
* ``rft``: expert iteration at equal samples: keep the correct samples, pool them, 4 AdamW steps of 8 per round.

A run directory that already holds ``eval.json`` is reused, so a seed can run in its own process (one thread
each: ``OMP_NUM_THREADS=1``) and a last call only summarises.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.common import ci95  # noqa: E402

ARMS: dict[str, list[str]] = {
    "grpo": [],
    "grpo_mb4": ["agent.num_minibatches=4"],
    "grpo_mu4": ["agent.iterations=4", "agent.num_minibatches=4"],
    "rft": [
        "agent=rft",
        "agent.prompts_per_round=4",
        "agent.group_size=8",
        "agent.num_envs=32",
        "agent.temperature=0.7",
        "agent.keep=correct",
        "agent.sft_steps=4",
        "agent.batch_size=8",
        "agent.lr=2e-4",
        "agent.accumulate=true",
    ],
}


def run_arm(arm: str, seed: int, run_dir: Path) -> None:
    """Train one arm's seed into ``run_dir`` (resumes a killed run; skipped when it finished)."""
    if (run_dir / "eval.json").exists():
        return
    cmd = ["lm-envs", "train", "+experiment=math_smollm2", f"seed={seed}", *ARMS[arm]]
    cmd += [f"output_dir={run_dir}", f"hydra.run.dir={run_dir}"]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})


def run_task(run_dir: Path) -> tuple[str, dict[str, Any], Any]:
    """A finished run's env id, task kwargs and task (the problems its evaluation played)."""
    import gymnasium as gym
    import yaml

    import lm_envs
    from lm_envs.core.components import resolve_task

    env = yaml.safe_load((run_dir / "config.yaml").read_text())["env"]
    spec = gym.spec(env["id"]) if env["id"] in lm_envs.registered_ids() else None
    task_kwargs = env["kwargs"].get("task_kwargs", spec.kwargs.get("task_kwargs") if spec else None)
    return env["id"], task_kwargs, resolve_task(spec.kwargs["task"], task_kwargs) if spec else None


def per_template(run_dir: Path, records: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Held-out greedy successes per template: ``{template: [correct, problems]}``."""
    _, _, task = run_task(run_dir)
    out: dict[str, list[int]] = {}
    for r in records:
        split, _, index = r["problem_id"].partition("/")
        counts = out.setdefault(task.problem(split, int(index)).metadata["template"], [0, 0])
        counts[0] += bool(r["success"])
        counts[1] += 1
    return dict(sorted(out.items()))


def summarise_run(run_dir: Path) -> dict[str, Any]:
    """One finished run's figures."""
    ev = json.loads((run_dir / "eval.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    success = [r["rollout/success"] for r in rows if "rollout/success" in r]
    return {
        "accuracy_before": ev["accuracy_before_rl"],
        "accuracy_after": ev["metrics"]["accuracy"],
        "after_per_template": per_template(run_dir, ev["records"]),
        "mean_tokens_after": ev["metrics"]["mean_tokens"],
        "train_success_first5": sum(success[:5]) / max(1, len(success[:5])),
        "train_success_last5": sum(success[-5:]) / max(1, len(success[-5:])),
        "rounds": len(success),
        "wall_time_s": ev.get("wall_time_s"),
        "threads": ev.get("hardware", {}).get("torch_threads"),
    }


def summarise(work: Path, arms: list[str], seeds: list[int]) -> dict[str, Any]:
    """Every finished arm's per-seed figures with mean and 95% t-interval over seeds."""
    doc: dict[str, Any] = {
        "experiment": "+experiment=math_smollm2",
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF), LoRA r=16",
        "metric": "held-out greedy accuracy, 100 test problems",
        "arms": {},
    }
    for arm in arms:
        runs = {s: work / f"{arm}_s{s}" for s in seeds if (work / f"{arm}_s{s}" / "eval.json").exists()}
        if not runs:
            continue
        if "env" not in doc:
            doc["env"], doc["task_kwargs"], _ = run_task(next(iter(runs.values())))
        per = {s: summarise_run(d) for s, d in runs.items()}
        after = [per[s]["accuracy_after"] for s in per]
        gain = [per[s]["accuracy_after"] - per[s]["accuracy_before"] for s in per]
        mean, lo, hi = ci95(after)
        g, glo, ghi = ci95(gain)
        doc["arms"][arm] = {
            "overrides": ARMS[arm],
            "seeds": list(per),
            "per_seed": per,
            "accuracy_after": {"mean": mean, "ci95": [lo, hi]},
            "gain_over_start": {"mean": g, "ci95": [glo, ghi]},
        }
    done = list(doc["arms"])
    doc["paired_differences"] = {}  # after-accuracy differences on the seeds both arms finished
    for i, a in enumerate(done):
        for b in done[i + 1 :]:
            common = [s for s in doc["arms"][a]["seeds"] if s in doc["arms"][b]["seeds"]]
            if common:
                diff = [
                    doc["arms"][a]["per_seed"][s]["accuracy_after"] - doc["arms"][b]["per_seed"][s]["accuracy_after"]
                    for s in common
                ]
                m, lo, hi = ci95(diff)
                doc["paired_differences"][f"{a} - {b}"] = {"seeds": common, "mean": m, "ci95": [lo, hi]}
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="run directories: <work>/<arm>_s<seed>")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=["grpo", "grpo_mu4", "rft"], choices=list(ARMS))
    parser.add_argument("--summary-only", action="store_true", help="summarise finished runs, train nothing")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "math_smollm2.json")
    args = parser.parse_args()
    if not args.summary_only:
        for arm in args.arms:
            for seed in args.seeds:
                run_arm(arm, seed, args.work / f"{arm}_s{seed}")
    doc = summarise(args.work, args.arms, args.seeds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({a: v["accuracy_after"] for a, v in doc["arms"].items()}, indent=1))


if __name__ == "__main__":
    main()
