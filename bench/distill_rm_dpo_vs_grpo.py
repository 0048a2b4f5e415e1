"""On-policy distillation, learned outcome rewards (ORM, PRM aggregate) and offline DPO against GRPO on math.

The setting of ``bench/preference_vs_grpo.py`` (its SFT starts are reused: ``--starts`` holds
``start<seed>/model``, made here if missing with that script's command, ``+experiment=math_few_demos
train.iterations=0``): LMEnv/Math-v0, the 2x128 llama, and from each seed's start ``--iterations`` RL
iterations of ``--num-envs`` sampled episodes (30 x 128 = 3,840), Adam lr 1e-4, held-out greedy accuracy on
the 500 test problems by the true grader. Arms (each seed starts from its own SFT start; same samples budget):

* ``grpo``: today's GRPO on the true (symbolic) reward, ``group_size`` 8: the baseline.
* ``grpo_orm``: the same GRPO on ``env=math_orm``: the reward is a learned outcome RM's expected reward,
  the ORM trained by ``lm-envs train-rm rm=orm`` on the seed's SFT start's own samples (train split).
* ``grpo_prm``: the same on ``env=math_prm_outcome``: a learned PRM's min-aggregate as the outcome reward
  (``lm-envs train-rm rm=prm``, rule-verifier step labels on the start's samples).
* ``distill`` / ``distill_sampled``: ``agent=distill`` (``estimator=full``: the exact per-token reverse KL;
  ``sampled``: the sampled token's reverse KL as its advantage) towards a stronger teacher with the same
  tokenizer: ``+experiment=math_few_demos seed=2`` (SFT then 40 rounds of expert iteration).
* ``dpo``: offline ``agent=dpo`` on pairs built from the seed's SFT start's own samples: ``--k`` samples
  (temperature 1) for each of ``iterations * num_envs / k`` train problems after the SFT demonstrations
  (indices 2048..), so as many samples as GRPO's episodes, graded; per problem, every (correct, incorrect)
  pair of distinct texts. DPO then makes ``--dpo-epochs`` passes over its pairs and samples nothing more.

Each run is an ``agents.train`` (or ``agents.train_rm``) subprocess, ``--jobs`` at a time, one thread each;
a finished run (its result file) is kept, so a rerun only summarizes. The JSON (``-o``) holds every run's
figures and per arm the mean and 95% t-interval (``experiments.common.ci95``: ``[mean, lo, hi]``) over seeds,
and the per-seed paired difference to ``grpo`` of held-out accuracy and of the true training reward.

    OMP_NUM_THREADS=1 python bench/distill_rm_dpo_vs_grpo.py --starts /tmp/ev22b/starts --work /tmp/ev22d \\
        -o bench/results/distill_rm_dpo_vs_grpo.json
    python bench/distill_rm_dpo_vs_grpo.py --quick --work /tmp/q -o /tmp/q.json   # tiny, end to end (a test)

Slow (about 4 min per RL run on one thread); run it alone.
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from experiments.common import ci95  # noqa: E402

ARMS = ("grpo", "grpo_orm", "grpo_prm", "distill", "distill_sampled", "dpo")
FIRST_FRESH = 2048  # the SFT start saw the gold solutions of train problems 0..2047 (sft.num_examples)


# --------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------


def job_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path[1:]])}


def run_jobs(jobs: list[tuple[str, Path, list[str]]], parallel: int, logs: Path) -> list[str]:
    """Run ``(name, done_file, argv)`` jobs ``parallel`` at a time; a job whose done_file exists is skipped.

    Returns the names of the jobs that failed (their logs are ``logs/<name>.log``).
    """
    pending = [j for j in jobs if not j[1].exists()]
    running: list[tuple[str, subprocess.Popen, float]] = []
    failed = []
    logs.mkdir(parents=True, exist_ok=True)
    while pending or running:
        while pending and len(running) < parallel:
            name, _, argv = pending.pop(0)
            print(f"start {name}", flush=True)
            log = open(logs / f"{name}.log", "w")  # noqa: SIM115 (closed when the process ends)
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=job_env(), cwd=ROOT)
            running.append((name, proc, time.time()))
        time.sleep(2)
        for item in list(running):
            name, proc, t0 = item
            if proc.poll() is not None:
                running.remove(item)
                if proc.returncode:
                    failed.append(name)
                status = "ok" if proc.returncode == 0 else f"FAILED rc={proc.returncode} (see {logs / name}.log)"
                print(f"done {name} {time.time() - t0:.0f}s {status}", flush=True)
    return failed


def train_argv(out: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "agents.train", f"output_dir={out}", f"hydra.run.dir={out}", *overrides]


def rm_argv(out: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "agents.train_rm", f"output_dir={out}", f"hydra.run.dir={out}", *overrides]


# --------------------------------------------------------------------------------------------
# DPO pairs from the start's own samples
# --------------------------------------------------------------------------------------------


def preference_rows(
    prompts: list[str], completions: list[list[str]], success: list[list[bool]]
) -> list[dict[str, str]]:
    """Per problem, every (correct, incorrect) pair of its distinct sampled texts, in sampling order.

    Example:
        >>> rows = preference_rows(["p", "q"], [["a", "b", "a", "c"], ["x", "y"]], [[1, 0, 1, 0], [0, 0]])
        >>> [(r["prompt"], r["chosen"], r["rejected"]) for r in rows]
        [('p', 'a', 'b'), ('p', 'a', 'c')]
    """
    rows = []
    for prompt, texts, ok in zip(prompts, completions, success, strict=True):
        right = list(dict.fromkeys(c for c, s in zip(texts, ok, strict=True) if s))
        wrong = list(dict.fromkeys(c for c, s in zip(texts, ok, strict=True) if not s))
        rows += [{"prompt": prompt, "chosen": c, "rejected": r} for c in right for r in wrong]
    return rows


def make_pairs(model_dir: Path, seed: int, problems: int, k: int, out: Path) -> dict[str, Any]:
    """Sample ``k`` solutions of train problems ``FIRST_FRESH ..`` from ``model_dir``; write correct/incorrect pairs.

    Pairs are :func:`preference_rows` (every correct x incorrect distinct text of a problem). Writes ``out``
    (prompt/chosen/rejected JSONL) and ``out.with_suffix('.json')`` (how many samples, pairs and problems).
    """
    import torch

    from agents.policy.models import load_model
    from agents.policy.sampling import sample_per_problem
    from agents.search.best_of_n import Samples
    from lm_envs.core.tokenizer import load_codec

    torch.set_num_threads(1)
    codec = load_codec(str(model_dir))
    model = load_model(str(model_dir), codec).eval()
    generator = torch.Generator().manual_seed(seed)
    parts = sample_per_problem(
        model, "LMEnv/Math-v0", k, indices=range(FIRST_FRESH, FIRST_FRESH + problems), prefixes="",
        split="train", temperature=1.0, generator=generator, env_kwargs={"tokenizer": str(model_dir)},
    )  # fmt: skip
    samples = Samples.concat([Samples.from_rollout(rollout) for _, rollout in parts])
    rows = preference_rows(samples.prompts, samples.completions, samples.success.tolist())
    out.parent.mkdir(parents=True, exist_ok=True)
    info = {
        "sampled_episodes": int(samples.success.size),
        "problems": len(samples.prompts),
        "problem_indices": [FIRST_FRESH, FIRST_FRESH + problems],
        "sample_accuracy": float(samples.success.mean()),
        "problems_with_pairs": len({r["prompt"] for r in rows}),
        "pairs": len(rows),
    }
    out.with_suffix(".json").write_text(json.dumps(info, indent=1))
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))  # last: its existence marks the job done
    return info


# --------------------------------------------------------------------------------------------
# Reading and summarizing runs
# --------------------------------------------------------------------------------------------


def _mean(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if r.get(key) is not None and not math.isnan(r[key])]
    return sum(vals) / len(vals) if vals else float("nan")


def read_run(out: Path) -> dict[str, Any] | None:
    """The figures of one finished RL run (``None`` if it has not finished)."""
    if not (out / "eval.json").is_file():
        return None
    ev = json.loads((out / "eval.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    its = [r for r in rows if "rollout/return_mean" in r]
    true_key = "rollout/outcome/correct"
    result: dict[str, Any] = {
        "heldout_accuracy": ev["metrics"]["accuracy"],
        "heldout_accuracy_before": ev.get("accuracy_before_rl"),
        "heldout_mean_return": ev["metrics"].get("mean_return"),
        "iterations": len(its),
        "wall_time_s": ev.get("wall_time_s"),
    }
    if its and _mean(its, "rollout/return_mean") == _mean(its, "rollout/return_mean"):  # a sampling learner
        last = its[-10:]
        result.update(
            {
                "train_reward": _mean(its, "rollout/return_mean"),  # what the learner was paid (learned for orm/prm)
                "train_reward_true": _mean(its, true_key),  # the grader's
                "train_reward_first10": _mean(its[:10], "rollout/return_mean"),
                "train_reward_true_first10": _mean(its[:10], true_key),
                "train_reward_last10": _mean(last, "rollout/return_mean"),
                "train_reward_true_last10": _mean(last, true_key),
                "length_mean": _mean(its, "rollout/length_mean"),
                "per_iteration": {
                    "reward": [r.get("rollout/return_mean") for r in its],
                    "reward_true": [r.get(true_key) for r in its],
                },
            }
        )
        for key in ("distill/reverse_kl", "distill/reverse_kl_full"):
            if any(key in r for r in its):
                result[f"{key.split('/')[1]}_first3"] = _mean(its[:3], key)
                result[f"{key.split('/')[1]}_last5"] = _mean(its[-5:], key)
    else:  # offline DPO: no episodes
        result.update(
            {
                "dpo_accuracy_last10": _mean(its[-10:], "dpo/accuracy"),
                "dpo_reward_margin_last10": _mean(its[-10:], "dpo/reward_margin"),
                "dpo_epochs": its[-1].get("dpo/epoch") if its else None,
            }
        )
    return result


def interval(values: list[float]) -> list[float] | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    return [round(x, 4) for x in ci95(vals)] if vals else None


def summarize(runs: dict[str, dict[int, dict | None]], seeds: list[int]) -> dict[str, dict[str, Any]]:
    """Per arm: mean and 95% t-interval over seeds, and paired differences to ``grpo`` (same seed)."""
    out: dict[str, dict[str, Any]] = {}
    base = runs.get("grpo", {})
    for arm, by_seed in runs.items():
        done = [s for s in seeds if by_seed.get(s)]
        if not done:
            continue
        row: dict[str, Any] = {"seeds": done}
        for key in ("heldout_accuracy", "train_reward", "train_reward_true", "train_reward_first10",
                    "train_reward_true_first10", "train_reward_last10", "train_reward_true_last10",
                    "heldout_mean_return", "dpo_accuracy_last10"):  # fmt: skip
            if all(key in by_seed[s] for s in done):
                row[key] = interval([by_seed[s][key] for s in done])
        row["heldout_gain_over_start"] = interval(
            [by_seed[s]["heldout_accuracy"] - by_seed[s]["heldout_accuracy_before"] for s in done]
        )
        if "train_reward" in row and arm in ("grpo_orm", "grpo_prm"):  # over-optimization: learned - true
            row["learned_minus_true_last10"] = interval(
                [by_seed[s]["train_reward_last10"] - by_seed[s]["train_reward_true_last10"] for s in done]
            )
        if arm != "grpo":
            paired = [s for s in done if base.get(s)]
            if paired:
                row["heldout_accuracy_minus_grpo"] = interval(
                    [by_seed[s]["heldout_accuracy"] - base[s]["heldout_accuracy"] for s in paired]
                )
                if "train_reward_true" in by_seed[paired[0]]:
                    row["train_reward_true_minus_grpo"] = interval(
                        [by_seed[s]["train_reward_true"] - base[s]["train_reward_true"] for s in paired]
                    )
        out[arm] = row
    return out


def table(summary: dict[str, dict[str, Any]]) -> str:
    """The README table: held-out accuracy, its paired difference to GRPO, training reward (paid and true)."""

    def fmt(x: list[float] | None) -> str:
        if not x:
            return "-"
        return f"{100 * x[0]:.1f} [{100 * x[1]:.1f}, {100 * x[2]:.1f}]"

    lines = [
        "| arm | held-out acc. (true grader) | vs GRPO (paired) | train reward paid | train reward true "
        "| true vs GRPO (paired) |",
        "|---|---|---|---|---|---|",
    ]
    for arm, row in summary.items():
        lines.append(
            f"| {arm} | {fmt(row.get('heldout_accuracy'))} | {fmt(row.get('heldout_accuracy_minus_grpo'))} | "
            f"{fmt(row.get('train_reward'))} | {fmt(row.get('train_reward_true'))} | "
            f"{fmt(row.get('train_reward_true_minus_grpo'))} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=Path, default=None, help="SFT starts (start<seed>/model); default <work>")
    parser.add_argument("--work", type=Path, required=True, help="where teacher, RMs, pairs and runs go")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--num-envs", type=int, default=128)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam lr of every arm")
    parser.add_argument("--beta", type=float, default=0.1, help="DPO's beta")
    parser.add_argument("--dpo-batch", type=int, default=16)
    parser.add_argument("--dpo-epochs", type=float, default=2.0)
    parser.add_argument("--k", type=int, default=8, help="DPO pairs: samples per problem")
    parser.add_argument("--teacher-seed", type=int, default=2)
    parser.add_argument("--rm-heldout-problems", type=int, default=100)
    parser.add_argument("--eval-episodes", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny settings (seconds per run): the test's path")
    parser.add_argument("--summarize-only", action="store_true")
    parser.add_argument("--make-pairs", nargs=3, metavar=("MODEL", "SEED", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.iterations, args.num_envs, args.group_size, args.eval_episodes = 2, 8, 4, 8
        args.k, args.rm_heldout_problems, args.dpo_epochs = 4, 2, 1.0
    pair_problems = args.iterations * args.num_envs // args.k  # equal sampled episodes
    if args.make_pairs:
        model, seed, out = args.make_pairs
        print(json.dumps(make_pairs(Path(model), int(seed), pair_problems, args.k, Path(out))))
        return

    starts = args.starts or args.work
    tiny_sft = ["sft.steps=3", "sft.num_examples=64", "model.size.n_layer=1", "model.size.n_embd=32",
                "model.size.n_head=2"] if args.quick else []  # fmt: skip
    tiny_rm = ["steps=3", "num_problems=4", "samples_per_problem=2", "n_layer=1", "n_embd=16"] if args.quick else []
    seeds = args.seeds
    need = set(args.arms)
    teacher = args.work / "teacher"
    common = ["model.threads=1", "train.progress=false", f"eval.num_episodes={args.eval_episodes}"]

    # --- phase 1: starts, the teacher, the reward models, the DPO pairs --------------------------------
    prep: list[tuple[str, Path, list[str]]] = []
    for s in seeds:
        prep.append((f"start{s}", starts / f"start{s}" / "model" / "config.json", train_argv(
            starts / f"start{s}", ["+experiment=math_few_demos", f"seed={s}", "train.iterations=0", *common,
                                   *tiny_sft])))  # fmt: skip
    if need & {"distill", "distill_sampled"}:
        quick_teacher = ["train.iterations=1", "agent.prompts_per_round=4", "agent.sft_steps=2"] if args.quick else []
        prep.append(("teacher", teacher / "eval.json", train_argv(
            teacher, ["+experiment=math_few_demos", f"seed={args.teacher_seed}", *common[:2], *tiny_sft,
                      *quick_teacher])))  # fmt: skip
    for s in seeds:
        policy = starts / f"start{s}" / "model"
        for kind, arm in (("orm", "grpo_orm"), ("prm", "grpo_prm")):
            if arm in need:
                d = args.work / "rm" / f"{kind}-seed{s}"
                prep.append((f"{kind}-seed{s}", d / "metrics.json", rm_argv(d, [
                    f"rm={kind}", f"policy={policy}", f"first_problem={FIRST_FRESH}", f"seed={s}", "threads=1",
                    f"heldout_problems={args.rm_heldout_problems}", *tiny_rm])))  # fmt: skip
        if "dpo" in need:
            pairs = args.work / "pairs" / f"seed{s}.jsonl"
            argv = [sys.executable, str(Path(__file__).resolve()), "--work", str(args.work),
                    "--iterations", str(args.iterations), "--num-envs", str(args.num_envs), "--k", str(args.k),
                    "--make-pairs", str(policy), str(s), str(pairs)]  # fmt: skip
            prep.append((f"pairs-seed{s}", pairs, argv))
    logs = args.work / "logs"
    if not args.summarize_only:
        # the starts first (everything else reads them), then the rest
        failed = run_jobs([j for j in prep if j[0].startswith("start")], args.jobs, logs)
        failed += run_jobs([j for j in prep if not j[0].startswith("start")], args.jobs, logs)
        if failed:
            raise SystemExit(f"failed: {failed}; see {logs}")

    # --- phase 2: the RL runs -------------------------------------------------------------------------
    def rl(arm: str, s: int) -> list[str]:
        base = [f"seed={s}", f"model.name_or_path={starts / f'start{s}' / 'model'}", "sft.steps=0", *common,
                f"agent.lr={args.lr}", f"train.iterations={args.iterations}", "train.eval_every=0",
                f"train.checkpoint_every={args.iterations}"]  # fmt: skip
        pg = [f"agent.num_envs={args.num_envs}", f"agent.group_size={args.group_size}"]
        if arm == "grpo":
            return ["agent=grpo", *base, *pg]
        if arm == "grpo_orm":
            return ["agent=grpo", "env=math_orm", f"env.kwargs.reward_kwargs.orm_path={args.work}/rm/orm-seed{s}",
                    *base, *pg]  # fmt: skip
        if arm == "grpo_prm":
            return ["agent=grpo", "env=math_prm_outcome",
                    f"env.kwargs.reward_kwargs.prm_path={args.work}/rm/prm-seed{s}", *base, *pg]  # fmt: skip
        if arm in ("distill", "distill_sampled"):
            est = "full" if arm == "distill" else "sampled"
            return ["agent=distill", f"agent.teacher={teacher}", f"agent.estimator={est}", *base,
                    f"agent.num_envs={args.num_envs}"]  # fmt: skip
        pairs = args.work / "pairs" / f"seed{s}.jsonl"
        n_pairs = json.loads(pairs.with_suffix(".json").read_text())["pairs"]
        if not n_pairs:
            return []  # no problem had both a right and a wrong sample: nothing to train on (reported)
        steps = max(1, math.ceil(args.dpo_epochs * n_pairs / args.dpo_batch))
        return ["agent=dpo", f"agent.data={pairs}", f"agent.beta={args.beta}", f"agent.batch_size={args.dpo_batch}",
                *[b for b in base if not b.startswith(("train.iterations", "train.checkpoint_every"))],
                f"train.iterations={steps}", f"train.checkpoint_every={steps}"]  # fmt: skip

    runs_dir = args.work / "runs"
    if not args.summarize_only:
        jobs = [(f"{a}-seed{s}", runs_dir / f"{a}-seed{s}" / "eval.json", train_argv(runs_dir / f"{a}-seed{s}",
                 rl(a, s))) for a in args.arms for s in seeds]  # fmt: skip
        skipped = [name for name, _, argv in jobs if argv[-1].startswith("hydra.run.dir")]
        if skipped:
            print(f"skipped (no DPO pairs): {skipped}", flush=True)
        jobs = [j for j in jobs if j[0] not in skipped]
        failed = run_jobs(jobs, args.jobs, logs)
        if failed:
            print(f"failed: {failed}; see {logs}", flush=True)

    # --- summary --------------------------------------------------------------------------------------
    runs = {a: {s: read_run(runs_dir / f"{a}-seed{s}") for s in seeds} for a in args.arms}
    for a in ("grpo", "grpo_orm", "grpo_prm", "distill", "distill_sampled"):
        for s in seeds:
            r = runs.get(a, {}).get(s)
            if r is not None and r.get("sampled_episodes") is None:
                r["sampled_episodes"] = r["iterations"] * args.num_envs
    prep_info: dict[str, Any] = {}
    for s in seeds:
        info: dict[str, Any] = {}
        for kind in ("orm", "prm"):
            f = args.work / "rm" / f"{kind}-seed{s}" / "metrics.json"
            if f.is_file():
                m = json.loads(f.read_text())
                keys = ("accuracy", "majority_class_rate", "balanced_accuracy", "auc", "within_problem_auc",
                        "selection_accuracy", "random_pick_accuracy")  # fmt: skip
                info[kind] = {"heldout": {k: m["heldout"].get(k) for k in keys}, "data": m["data"]}
        f = args.work / "pairs" / f"seed{s}.json"
        if f.is_file():
            info["dpo_pairs"] = json.loads(f.read_text())
        r = runs.get("dpo", {}).get(s)
        if r is not None and "dpo_pairs" in info:
            r["sampled_episodes"] = info["dpo_pairs"]["sampled_episodes"]
        prep_info[str(s)] = info
    teacher_eval = teacher / "eval.json"
    if teacher_eval.is_file():
        ev = json.loads(teacher_eval.read_text())
        prep_info["teacher"] = {
            "command": f"+experiment=math_few_demos seed={args.teacher_seed}",
            "heldout_accuracy": ev["metrics"]["accuracy"],
            "heldout_accuracy_sft": ev.get("accuracy_before_rl"),
        }
    summary = summarize(runs, seeds)
    result = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "equal_samples": f"{args.iterations} x {args.num_envs} = {args.iterations * args.num_envs} episodes per run; "
        f"DPO pairs from {pair_problems} problems x {args.k} samples",
        "ci": "[mean, lo, hi]: 95% Student t over seeds (experiments.common.ci95); paired = per-seed difference",
        "prep": prep_info,
        "runs": {a: {str(s): r for s, r in by.items()} for a, by in runs.items()},
        "summary": summary,
        "table_md": table(summary),
    }
    text = json.dumps(result, indent=1)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    print(json.dumps(summary, indent=1))
    print(result["table_md"])


if __name__ == "__main__":
    main()
