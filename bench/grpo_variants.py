"""Each GRPO option of #22 against today's GRPO on one small math setting, 3 seeds, 95% CIs.

Setting: ``+experiment=math`` (LMEnv/Math-v0, the 2x128 llama), started from that experiment's SFT
model of the same seed (2000 SFT steps, trained once per seed by this script), then a short GRPO:
``num_envs=64`` (8 problems x 8 samples), ``iterations=2`` updates per rollout (so the ratio and its
clipping matter), ``lr=5e-5``, ``train.iterations`` rollouts (default 20). Every variant of a seed
sees the same samples budget (dynamic sampling excepted: it draws extra rollouts, counted in
``sampled_episodes``). Held-out accuracy: greedy, 300 test problems, after RL.

Runs one ``lm-envs train`` subprocess per (variant, seed), ``--jobs`` at a time, one thread each,
and writes ``bench/results/grpo_variants.json``: every run's figures, then per variant the mean and
95% CI (Student t over seeds) of held-out accuracy and training reward, and the paired difference
to ``grpo`` (same seed, same start).

    OMP_NUM_THREADS=1 python bench/grpo_variants.py --jobs 2
    python bench/grpo_variants.py --summarize-only   # rebuild the JSON from finished runs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The variants, in the order they run (whole seeds triples first); overrides on top of COMMON.
VARIANTS: dict[str, list[str]] = {
    "grpo": [],
    "seq_mean": ["agent.loss_agg=seq_mean"],
    "dr_grpo": ["agent.loss_agg=constant", "agent.adv_std_norm=false"],
    "clip_higher": ["agent.clip_eps_high=0.28"],
    "dynamic_sampling": ["agent.dynamic_sampling=true"],
    # answers are ~20 tokens of a 96-token budget: penalise past 24, fully at 32
    "overlong": ["agent.overlong_buffer=8", "agent.overlong_max_tokens=32"],
    # GSPO's paper clips the sequence ratio at 3e-4 / 4e-4
    "gspo": [
        "agent.policy_loss=gspo",
        "agent.loss_agg=seq_mean",
        "agent.clip_eps_low=3e-4",
        "agent.clip_eps_high=4e-4",
    ],
    # MiniMax-M1: no lower bound on the weight
    "cispo": ["agent.policy_loss=cispo", "agent.clip_eps_low=1.0", "agent.clip_eps_high=0.28"],
    "reinforce_pp": [
        "agent.baseline=none",
        "agent.credit=token",
        "agent.adv_whiten=true",
        "agent.kl_in=reward",
        "agent.kl_coef=0.01",
        "agent.kl_estimator=k1",
    ],
    "entropy": ["agent.entropy_coef=0.001"],
    "kl_k3_loss": ["agent.kl_coef=0.04"],
    "kl_k2_loss": ["agent.kl_coef=0.04", "agent.kl_estimator=k2"],
    "kl_k1_reward": ["agent.kl_coef=0.04", "agent.kl_in=reward"],
    "process_outcome_credit": ["env=math_process"],
    "process_token_credit": ["env=math_process", "agent.credit=token"],
    "tis": ["agent.is_correction=tis"],
}
#: Which variant each is compared with (same env).
BASELINE_OF = {"process_token_credit": "process_outcome_credit"}
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}


def common(sft_dir: Path, iterations: int) -> list[str]:
    return [
        "+experiment=math",
        f"model.name_or_path={sft_dir / 'model'}",
        "sft.steps=0",
        "model.threads=1",
        "agent.num_envs=64",
        "agent.group_size=8",
        "agent.lr=5e-5",
        "agent.iterations=2",
        f"train.iterations={iterations}",
        "train.eval_every=0",
        f"train.checkpoint_every={iterations}",
        "train.progress=false",
    ]


def train(out: Path, overrides: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "agents.train", f"output_dir={out}", f"hydra.run.dir={out}", *overrides]
    out.parent.mkdir(parents=True, exist_ok=True)
    log = open(out.parent / f"{out.name}.log", "w")  # noqa: SIM115 (closed when the process ends)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def run_all(jobs: list[tuple[Path, list[str]]], parallel: int) -> None:
    """Run ``jobs`` (output dir, overrides), ``parallel`` at a time; a finished run (eval.json) is skipped."""
    pending = [j for j in jobs if not (j[0] / "eval.json").exists()]
    running: list[tuple[Path, subprocess.Popen, float]] = []
    while pending or running:
        while pending and len(running) < parallel:
            out, overrides = pending.pop(0)
            print(f"start {out.name}", flush=True)
            running.append((out, train(out, overrides), time.time()))
        time.sleep(2)
        for item in list(running):
            out, proc, t0 = item
            if proc.poll() is not None:
                running.remove(item)
                status = "ok" if proc.returncode == 0 else f"FAILED rc={proc.returncode} (see {out}.log)"
                print(f"done {out.name} {time.time() - t0:.0f}s {status}", flush=True)


def read_run(out: Path) -> dict[str, float] | None:
    if not (out / "eval.json").exists():
        return None
    ev = json.loads((out / "eval.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    its = [r for r in rows if "rollout/return_mean" in r]
    before = ev.get("accuracy_before_rl")
    last = its[-10:]

    def mean(key: str, rs: list[dict]) -> float:
        vals = [r[key] for r in rs if key in r]
        return sum(vals) / len(vals) if vals else float("nan")

    episodes = sum(64 + 64 * r.get("dynamic/extra_rollouts", 0) for r in its)
    return {
        "heldout_accuracy": ev["metrics"]["accuracy"],
        "heldout_accuracy_before_rl": before,
        "train_return": mean("rollout/return_mean", its),
        "train_return_last10": mean("rollout/return_mean", last),
        "train_success": mean("rollout/success", its),
        "train_success_last10": mean("rollout/success", last),
        "length_mean": mean("rollout/length_mean", its),
        "sampled_episodes": float(episodes),
        "logp_abs_diff_max": max((r.get("offpolicy/logp_abs_diff_max", 0.0) for r in its), default=0.0),
        "mismatch_kl_mean": mean("offpolicy/mismatch_kl", its),
        "wall_time_s": ev.get("wall_time_s"),
    }


def ci(values: list[float]) -> dict[str, float]:
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return {"mean": m, "ci95": float("nan"), "n": n}
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return {"mean": m, "ci95": T_975.get(n - 1, 1.96) * sd / math.sqrt(n), "n": n}


def summarize(runs: dict[str, dict[int, dict]], seeds: list[int]) -> dict[str, dict]:
    out = {}
    keys = ("heldout_accuracy", "train_return", "train_success", "train_success_last10", "length_mean")
    for name, by_seed in runs.items():
        done = [s for s in seeds if by_seed.get(s)]
        if not done:
            continue
        row = {k: ci([by_seed[s][k] for s in done]) for k in keys}
        row["sampled_episodes"] = sum(by_seed[s]["sampled_episodes"] for s in done) / len(done)
        base = BASELINE_OF.get(name, "grpo")
        if name != base and base in runs:
            paired = [s for s in done if runs[base].get(s)]
            if paired:
                for k in ("heldout_accuracy", "train_success"):
                    row[f"{k}_minus_{base}"] = ci([by_seed[s][k] - runs[base][s][k] for s in paired])
        out[name] = row
    return out


def table(summary: dict[str, dict]) -> str:
    lines = [
        "| variant | held-out acc. | vs baseline (paired) | train success | vs baseline (paired) | length |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in summary.items():

        def fmt(x: dict, pct: bool = True) -> str:
            scale = 100 if pct else 1
            return f"{scale * x['mean']:.1f} ± {scale * x['ci95']:.1f}"

        diff = [v for k, v in row.items() if k.startswith("heldout_accuracy_minus")]
        sdiff = [v for k, v in row.items() if k.startswith("train_success_minus")]
        lines.append(
            f"| {name} | {fmt(row['heldout_accuracy'])} | {fmt(diff[0]) if diff else '-'} | "
            f"{fmt(row['train_success'])} | {fmt(sdiff[0]) if sdiff else '-'} | {fmt(row['length_mean'], False)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("/tmp/grpo_variants"), help="run directories")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "grpo_variants.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--summarize-only", action="store_true")
    args = parser.parse_args()
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")

    sft = {s: args.runs / f"sft{s}" for s in args.seeds}
    if not args.summarize_only:
        sft_args = ["+experiment=math", "train.iterations=0", "model.threads=1", "train.progress=false"]
        sft_jobs = [(d, [*sft_args, f"seed={s}"]) for s, d in sft.items()]
        run_all(sft_jobs, args.jobs)
        jobs = [
            (args.runs / f"{v}-s{s}", [*common(sft[s], args.iterations), f"seed={s}", *VARIANTS[v]])
            for v in args.variants
            for s in args.seeds
        ]
        run_all(jobs, args.jobs)

    runs = {v: {s: read_run(args.runs / f"{v}-s{s}") for s in args.seeds} for v in args.variants}
    summary = summarize(runs, args.seeds)
    result = {
        "setting": {
            "overrides": common(Path("<sft run of the seed>"), args.iterations),
            "sft": "+experiment=math train.iterations=0 seed=<seed> (2000 SFT steps)",
            "variants": {v: VARIANTS[v] for v in args.variants},
            "seeds": args.seeds,
            "ci": "95% Student t over seeds; paired = per-seed difference to the baseline of the same start",
        },
        "runs": {v: {str(s): r for s, r in by.items()} for v, by in runs.items()},
        "summary": summary,
        "table_md": table(summary),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    print(result["table_md"])


if __name__ == "__main__":
    main()
