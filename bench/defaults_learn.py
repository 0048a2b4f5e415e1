"""Do ``lm-envs train`` defaults learn on tasks the project did not tune for? (#20, "Defaults that learn".)

The tasks are ``examples/user_tasks`` (written as a user would, outside the built-in set): ``add`` (a
one-digit plus a two-digit number), ``larger`` (the larger of two two-digit numbers), ``count`` (how many
``a`` in twenty letters). Each seed of each task gets one short SFT start (``--sft-steps``, default 120
steps of the default SFT settings, on the embedded default model), then every RL run of that seed starts
from it with the algorithm's default config plus the variant's overrides. Held-out accuracy is greedy on
the 300 test problems, before and after RL; training return is ``rollout/return_mean``.

The ``random`` variants replace the reward by a coin (``lm_envs.core.baselines:RandomReward``, p = 0.5):
same pipeline, same number of updates, no signal. Its held-out change is what the update's noise alone
does; its held-out accuracy is scored on the true reward (the records' ``true_correct``).

    OMP_NUM_THREADS=1 python bench/defaults_learn.py --runs /tmp/defaults_learn     # everything, one at a time
    OMP_NUM_THREADS=1 python bench/defaults_learn.py --algos grpo --variants default random
    python bench/defaults_learn.py --summarize-only

Writes ``bench/results/defaults_learn.json`` (runs already recorded there are kept unless rerun into
``--runs``, so seeds and arms can be added in later sessions): every run's figures, then per (algorithm,
variant, task) the mean and 95% CI over seeds (``experiments.common.ci95``) of held-out accuracy before /
after and of the paired change, and of the training return over the first and the last 10 iterations.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from experiments.common import ci95  # noqa: E402

#: Task -> SFT steps of its short start (chosen so that greedy held-out accuracy starts well below 100%).
TASKS = {"add": 240, "larger": 100, "count": 40}
#: Per algorithm, the train.* overrides that keep a run short (RFT's default round is 50 SFT steps on 256
#: samples: 100 rounds would take half an hour here; 10 rounds is 500 optimizer steps).
ALGOS: dict[str, list[str]] = {
    "grpo": [],
    "rloo": [],
    "ppo": [],
    "rft": ["train.iterations=10"],
}
COIN = [
    "+env.kwargs.reward=lm_envs.core.baselines:RandomReward",
    "+env.kwargs.reward_kwargs.reward=examples.user_tasks:ExactMatch",
    "+env.kwargs.reward_kwargs.p=0.5",
    "+env.kwargs.reward_kwargs.seed=0",
]
#: Variants: overrides on top of the algorithm's defaults. ``old_default`` pins the settings before #20.
VARIANTS: dict[str, list[str]] = {
    "default": [],
    "random": COIN,
    "lr_2e-5": ["agent.lr=2e-5"],
    "lr_2e-5_random": ["agent.lr=2e-5", *COIN],
    "lr_5e-6": ["agent.lr=5e-6"],
    "lr_5e-6_random": ["agent.lr=5e-6", *COIN],
    "lr_1e-5": ["agent.lr=1e-5"],
    "lr_1e-5_random": ["agent.lr=1e-5", *COIN],
    "lr_1e-4": ["agent.lr=1e-4"],
    "lr_1e-4_random": ["agent.lr=1e-4", *COIN],
    "lr_5e-5": ["agent.lr=5e-5"],
    "lr_5e-5_random": ["agent.lr=5e-5", *COIN],
    "num_envs_256": ["agent.num_envs=256"],
    "ppo_one_step": ["agent.ppo_epochs=1", "agent.num_minibatches=1"],  # PPO: one Adam step per rollout, not 16
    # GRPO/RLOO with PPO's default steps per rollout (4 passes x 4 minibatches) and its KL coefficient
    "steps_16_kl": ["agent.iterations=4", "agent.num_minibatches=4", "agent.kl_coef=0.05"],
    "iterations_400": ["train.iterations=400"],  # the samples of num_envs_256 in 4x the updates of 64
    "kl_0.04": ["agent.kl_coef=0.04"],
    "temperature_0.7": ["agent.temperature=0.7"],
}


def lm_envs_train(out: Path, overrides: list[str]) -> int:
    """One ``lm-envs --import examples.user_tasks train --config-dir examples/conf ...`` run, one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = "import sys; from agents.cli import main; sys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", code, "--import", "examples.user_tasks", "train", "--config-dir", "examples/conf"]
    cmd += [f"output_dir={out}", f"hydra.run.dir={out}", "model.threads=1", "train.progress=false", *overrides]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{out.name}.log", "w") as log:
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, check=False).returncode


def run_once(out: Path, overrides: list[str]) -> None:
    if (out / "eval.json").exists():
        return
    t0 = time.time()
    rc = lm_envs_train(out, overrides)
    status = "ok" if rc == 0 else f"FAILED rc={rc} (see {out}.log)"
    print(f"{out.name} {time.time() - t0:.0f}s {status}", flush=True)


def accuracy(ev: dict) -> float:
    """Held-out accuracy on the true reward (a coin run's own accuracy is the coin's)."""
    records = [r for r in ev["records"] if r.get("sample", 0) == 0]
    if records and "true_correct" in records[0].get("outcome", {}):
        return sum(bool(r["outcome"]["true_correct"]) for r in records) / len(records)
    return ev["metrics"]["accuracy"]


def read_run(out: Path, sft: Path) -> dict[str, float] | None:
    """A run's figures; held-out accuracy before RL is its start's (the SFT run's eval, on the true reward)."""
    if not (out / "eval.json").exists() or not (sft / "eval.json").exists():
        return None
    ev = json.loads((out / "eval.json").read_text())
    before = json.loads((sft / "eval.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    returns = [r["rollout/return_mean"] for r in rows if "rollout/return_mean" in r]
    n = min(10, max(1, len(returns) // 2))
    return {
        "heldout_before": accuracy(before),
        "heldout_after": accuracy(ev),
        "heldout_change": accuracy(ev) - accuracy(before),
        "train_return_first": sum(returns[:n]) / n,
        "train_return_last": sum(returns[-n:]) / n,
        "train_return_change": sum(returns[-n:]) / n - sum(returns[:n]) / n,
        "iterations": len(returns),
        "wall_time_s": ev.get("wall_time_s"),
    }


def summarize(runs: dict[str, dict[str, float]]) -> dict[str, dict]:
    """Group ``runs`` (keyed ``algo/variant/task/seed``) over seeds, and over tasks and seeds: mean and 95% CI."""
    groups: dict[str, list[dict[str, float]]] = {}
    for key, row in runs.items():
        groups.setdefault(key.rsplit("/", 1)[0], []).append(row)
        groups.setdefault(key.rsplit("/", 2)[0] + "/all tasks", []).append(row)  # every (task, seed) pair
    out = {}
    for key, rows in sorted(groups.items()):
        out[key] = {"n": len(rows)}
        for fig in ("heldout_before", "heldout_after", "heldout_change", "train_return_first", "train_return_last",
                    "train_return_change"):  # fmt: skip
            values = [r[fig] for r in rows]
            out[key][fig] = list(ci95(values))
    return out


def paired(runs: dict[str, dict[str, float]], reference: str = "grpo/default") -> dict[str, dict]:
    """Each arm minus ``reference`` on the (task, seed) pairs both ran (same SFT start): mean and 95% CI.

    The held-out change and the training return change, in points of accuracy / return; only arms with
    two pairs or more.
    """
    arms: dict[str, dict[str, dict[str, float]]] = {}
    for key, row in runs.items():
        arm, pair = key.rsplit("/", 2)[0], "/".join(key.rsplit("/", 2)[1:])
        arms.setdefault(arm, {})[pair] = row
    base = arms.get(reference, {})
    out = {}
    for arm, rows in sorted(arms.items()):
        pairs = sorted(set(rows) & set(base))
        if arm == reference or len(pairs) < 2:
            continue
        out[f"{arm} - {reference}"] = {
            "n": len(pairs),
            **{
                fig: list(ci95([rows[k][fig] - base[k][fig] for k in pairs]))
                for fig in ("heldout_change", "train_return_change")
            },
        }
    return out


def table(summary: dict[str, dict]) -> str:
    def pct(x: list[float]) -> str:
        return f"{100 * x[0]:+.1f} [{100 * x[1]:+.1f}, {100 * x[2]:+.1f}]"

    def acc(x: list[float]) -> str:
        return f"{100 * x[0]:.1f}"

    lines = [
        "| algorithm / variant / task | n | held-out before -> after | held-out change (95% CI) | "
        "train return first 10 -> last 10 | return change (95% CI) |",
        "|---|---|---|---|---|---|",
    ]
    for key, row in summary.items():
        lines.append(
            f"| {key} | {row['n']} | {acc(row['heldout_before'])} -> {acc(row['heldout_after'])} | "
            f"{pct(row['heldout_change'])} | {acc(row['train_return_first'])} -> {acc(row['train_return_last'])} | "
            f"{pct(row['train_return_change'])} |"
        )
    return "\n".join(lines)


def table_compact(summary: dict[str, dict]) -> str:
    """One row per algorithm / variant: held-out change per task and over all, return change over all."""

    def cell(key: str, fig: str) -> str:
        row = summary.get(key)
        if row is None:
            return "-"
        m, lo, hi = (100 * v for v in row[fig])
        return f"{m:+.1f} [{lo:+.1f}, {hi:+.1f}] (n={row['n']})" if row["n"] > 1 else f"{m:+.1f} (n=1)"

    arms = sorted({k.rsplit("/", 1)[0] for k in summary})
    lines = [
        "| algorithm / variant | "
        + " | ".join(f"held-out change, {t}" for t in TASKS)
        + " | held-out change, all | train return change, all |",
        "|---|" + "---|" * (len(TASKS) + 2),
    ]
    for arm in arms:
        cells = [cell(f"{arm}/{t}", "heldout_change") for t in TASKS]
        cells += [cell(f"{arm}/all tasks", "heldout_change"), cell(f"{arm}/all tasks", "train_return_change")]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("/tmp/defaults_learn"), help="run directories")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "defaults_learn.json")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=list(ALGOS))
    parser.add_argument("--variants", nargs="+", default=["default", "random"], choices=list(VARIANTS))
    parser.add_argument("--summarize-only", action="store_true")
    args = parser.parse_args()

    if not args.summarize_only:
        for seed in args.seeds:
            for task in args.tasks:
                sft = args.runs / f"sft-{task}-s{seed}"
                run_once(sft, [f"env={task}", f"sft.steps={TASKS[task]}", "train.iterations=0", f"seed={seed}"])
                for algo in args.algos:
                    for variant in args.variants:
                        start = [f"model.name_or_path={sft / 'model'}", "sft.steps=0", f"env={task}", f"seed={seed}"]
                        overrides = [*start, f"agent={algo}", *ALGOS[algo], *VARIANTS[variant]]
                        run_once(args.runs / f"{algo}-{variant}-{task}-s{seed}", overrides)

    runs = {}
    for out in sorted(args.runs.glob("*-s[0-9]*")):
        if out.name.startswith("sft-") or not out.is_dir():
            continue
        algo, rest = out.name.split("-", 1)
        rest, seed = rest.rsplit("-s", 1)
        variant, task = rest.rsplit("-", 1)
        row = read_run(out, args.runs / f"sft-{task}-s{seed}")
        if row is not None:
            runs[f"{algo}/{variant}/{task}/{seed}"] = row
    if args.out.exists():  # runs recorded earlier (other sessions, other run directories) stay unless rerun here
        kept = json.loads(args.out.read_text()).get("runs", {})
        runs = {**{k: v for k, v in kept.items() if k not in runs}, **runs}
        runs = dict(sorted(runs.items()))
    summary = summarize(runs)
    result = {
        "setting": {
            "tasks": "examples/user_tasks: Examples/Add-v0, Examples/Larger-v0, Examples/Count-v0 (300 test problems)",
            "sft": f"sft.steps={TASKS} (default SFT settings, embedded default model), once per task and seed",
            "rl": "lm-envs train agent=<algo> defaults from that start (sft.steps=0), plus the variant's overrides",
            "algo_overrides": ALGOS,
            "variants": VARIANTS,
            "heldout": "greedy accuracy on the 300 test problems, true reward (coin runs: records' true_correct)",
            "train_return": "rollout/return_mean, mean of the first and of the last 10 iterations (coin runs: coin)",
            "ci": "95% Student t over seeds (experiments.common.ci95): [mean, low, high]",
        },
        "runs": runs,
        "summary": summary,
        "paired_vs_grpo_default": paired(runs),
        "table_md": table(summary),
        "table_compact_md": table_compact(summary),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(result["table_md"])
    print(result["table_compact_md"])


if __name__ == "__main__":
    main()
