"""Learning parity (#20): our GRPO vs TRL's GRPOTrainer at equal samples, same model, prompts and reward.

Both sides train the same start model on the same training problems in the same order
(update ``k`` uses train problems ``k*P .. k*P+P-1``, ``G`` samples each), with the same reward (our grader,
:class:`lm_envs.tasks.math.rewards.MathReward`), group size, learning rate, temperature, token budget and
LoRA configuration, one optimizer step per batch. Reported side by side: reward per training sample (each
update's mean reward against the cumulative samples) and held-out greedy accuracy before / after, scored
by the same evaluator (:func:`agents.evaluate.evaluate`, our env on the test split) for both.

Settings:

* ``tiny``: the embedded default after the same short SFT start for both (``bench_trl.py``'s
  :func:`prepare_model`: 150 SFT steps on the gold demonstrations, saved once and loaded by both);
  GRPO defaults (``agent=grpo``): lr 2e-5, 8 prompts x 8 samples, temperature 1, full fine-tuning.
* ``smollm2``: SmolLM2-135M-Instruct (``model=smollm2``) with LoRA on ``+experiment=math_smollm2``'s task,
  read from ``conf/experiment/math_smollm2.yaml`` (its env, ``LMEnv/Math-v1``, and task: one-step problems
  told forwards, numbers up to 150; the chat template, 64 new tokens, LoRA r=16 on every linear layer, lr
  2e-4, 4 prompts x 8 samples, temperature 0.7, 15 updates, 100 held-out problems). Compare ``ours_eos``
  with ``trl`` here: one stop rule on both sides.

Ours is :class:`bench_trl.OursLoop` (``collect`` through the token env, then
:func:`agents.learners.reinforce.reinforce_update` with ``baseline=grpo``, as ``agents.run`` runs it);
TRL's is :func:`bench_trl.run_trl` (``GRPOTrainer``). Loss settings matched: TRL ``loss_type="dapo"``
(token-level mean over the batch = our ``loss_agg=token_mean``), ``scale_rewards="group"`` (= our group-std
normalisation), ``beta=0`` (no KL, no reference model; ours ``kl_coef=0``), ``num_iterations=1`` and
``epsilon=0.2`` (ours ``iterations=1``, ``clip_eps=0.2``), one optimizer step per generation batch, Adam
(eps 1e-5, no weight decay, constant lr, gradient clipping 1.0). What cannot be made equal is listed in
``bench_trl.py``: generation (``model.generate`` vs our env steps), our env also ends an episode when the
``#### answer`` line closes (TRL on EOS only), the random streams (sampling, LoRA's ``A`` init). The update
itself, on identical batches, is compared by ``bench/trl_grad_check.py``: TRL's loss forward passes no position
ids, which on the tiny model's absolute positions scores left-padded prompts at shifted positions; the side
``trl_positions`` (``--sides trl_positions``) is TRL's trainer with its model given them, paired against ours as
``ours_minus_trl_positions``. The side ``ours_eos`` is ours trained on TRL's stop rule (env ``stop_rule=False``:
only EOS or the token budget ends a sample, so it trains on what a sample writes after its answer line, as TRL
does), paired as ``ours_eos_minus_trl``; held-out accuracy is scored the same way for every side.

    OMP_NUM_THREADS=1 python bench/trl_parity.py --setting tiny --seeds 0 1 2
    OMP_NUM_THREADS=1 python bench/trl_parity.py --setting smollm2 --seeds 0 --sides trl   # one job at a time
    python bench/trl_parity.py --setting smollm2 --seeds 0 --summarize-only

Every job (the start model's evaluation, and each side x seed) runs in its own process and writes its
JSON under ``--runs`` (default ``bench/results/trl_parity/<setting>/``); a job whose file exists is not
run again, so jobs can run in separate invocations (in parallel) and be summarised later. The summary,
``bench/results/trl_parity_<setting>.json``, holds every run's curve and, over seeds, the mean and 95%
t-interval (``experiments.common.ci95``) of the training reward (all updates, first and last third) and
of held-out accuracy after training, and of the paired difference ours - TRL (same seed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_trl  # noqa: E402  (the TRL setup and our loop, shared with the throughput bench)

from experiments.common import ci95  # noqa: E402

SETTINGS = ("tiny", "smollm2")
SIDES = ("ours", "ours_eos", "trl", "trl_positions")
#: Our sides: ``ours`` with the env's stop rule (a sample ends when its ``#### X`` line closes), ``ours_eos`` with
#: TRL's (only EOS or the budget ends it; env ``stop_rule=False``).
OUR_SIDES = ("ours", "ours_eos")
#: The TRL side a paired difference is taken against: ``trl`` as it ships, ``trl_positions`` with position ids.
TRL_SIDES = ("trl", "trl_positions")
EXPERIMENT = ROOT / "conf" / "experiment" / "math_smollm2.yaml"


def setting_spec(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The job spec shared by every job of setting ``name`` (``bench_trl``'s spec keys, plus eval and LoRA)."""
    spec: dict[str, Any] = {"env": bench_trl.ENV_ID, "threads": args.threads, "warmup": 0, "model_dir": None}
    if name == "tiny":
        from agents.learners.reinforce import ReinforceConfig

        grpo = ReinforceConfig()  # agent=grpo's defaults
        cache = Path(args.cache_dir or Path(tempfile.gettempdir()) / "lm-envs-bench-trl")
        sft_steps = 0 if args.quick else 150
        spec.update(
            model_dir=str(cache / f"tiny-sft{sft_steps}-seed0") if sft_steps else None,
            sft_steps=sft_steps,
            seed=0,
            lr=grpo.lr,
            prompts=grpo.num_envs // grpo.group_size,
            group=grpo.group_size,
            temperature=grpo.temperature,
            max_new_tokens=96,
            updates=40,
            eval_episodes=200,
            lora=0,
            env_kwargs={},
        )
    else:
        from omegaconf import OmegaConf

        from agents.policy.pretrained import resolve_model

        exp = OmegaConf.to_container(OmegaConf.load(EXPERIMENT))
        env_kwargs = dict(exp["env"]["kwargs"])
        spec.update(
            env=exp["env"].get("id", bench_trl.ENV_ID),  # the experiment's env (its test split), else Math-v0
            model_path=resolve_model(exp["model"]["name_or_path"], progress=False),
            model_name=exp["model"]["name_or_path"],
            seed=0,
            lr=float(exp["agent"]["lr"]),
            prompts=exp["agent"]["num_envs"] // exp["agent"]["group_size"],
            group=exp["agent"]["group_size"],
            temperature=float(exp["agent"]["temperature"]),
            max_new_tokens=int(env_kwargs.pop("max_new_tokens")),
            updates=int(exp["train"]["iterations"]),
            eval_episodes=int(exp["eval"]["num_episodes"]),
            lora=int(exp["model"]["lora"]["r"]),
            env_kwargs=env_kwargs,
            # gradient accumulation in 4 micro-batches of whole groups on both sides (one optimizer step per
            # batch all the same): a 32 x 64-token batch of this 49k-vocabulary model needs ~6 GB at once
            micro_batches=4,
        )
    if args.updates is not None:
        spec["updates"] = args.updates
    if args.eval_episodes is not None:
        spec["eval_episodes"] = args.eval_episodes
    if args.quick:
        spec.update(prompts=2, group=4, max_new_tokens=16, updates=2, eval_episodes=4)
    return spec


# ------------------------------------------------------------------------------------------- jobs


def held_out(model: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """Greedy accuracy on the first ``eval_episodes`` test problems: the one evaluator both sides get."""
    from agents.evaluate import EvalConfig, evaluate

    model.eval()
    kwargs = {"max_new_tokens": spec["max_new_tokens"], **bench_trl._env_kwargs(spec, model)}
    started = time.perf_counter()
    out = evaluate(model, spec["env"], EvalConfig(num_episodes=spec["eval_episodes"]), seed=0, env_kwargs=kwargs)
    return {
        "accuracy": out["accuracy"],
        "mean_return": out["mean_return"],
        "num_episodes": out["num_episodes"],
        "episodes_hash": out["episodes_hash"],
        # which problems were scored (the same for both sides and before / after)
        "problems_hash": hashlib.sha256("\n".join(r["problem_id"] for r in out["records"]).encode()).hexdigest(),
        "mean_tokens": out["mean_tokens"],
        "completions": [r["completion"] for r in out["records"][:5]],  # a look at what it writes
        "seconds": round(time.perf_counter() - started, 1),
    }


def job_before(spec: dict[str, Any]) -> dict[str, Any]:
    """The start model's held-out accuracy (both sides start from these exact weights)."""
    import lm_envs

    bench_trl._setup(spec)
    model = bench_trl._load_model(spec, lm_envs.load_codec(spec.get("model_path")))
    return {"held_out": held_out(model, spec)}


def job_ours(spec: dict[str, Any]) -> dict[str, Any]:
    """Our GRPO: ``spec["updates"]`` iterations of collect + reinforce_update, then the evaluation."""
    bench_trl._setup(spec)
    loop = bench_trl.OursLoop(spec, "grpo")
    started = time.perf_counter()
    records = []
    for k in range(spec["updates"]):
        records.append(loop.update(k))
        _progress(spec, records)
    train_s = time.perf_counter() - started
    return {
        "records": records,
        "train_s": round(train_s, 1),
        "config": loop.config,
        "held_out": held_out(loop.model, spec),
    }


def job_trl(spec: dict[str, Any]) -> dict[str, Any]:
    """TRL's GRPOTrainer on the same spec, then the trained model (LoRA merged) through the same evaluator."""

    def finish(trainer: Any) -> dict[str, Any]:
        model = trainer.model
        if hasattr(model, "merge_and_unload"):  # a peft model: fold the adapters in, as our export does
            model = model.merge_and_unload()
        return held_out(model, spec)

    started = time.perf_counter()
    out = bench_trl.run_trl({**spec, "keep_records": True}, "grpo", finish=finish)
    return {
        "records": out["records"],
        "train_s": round(time.perf_counter() - started, 1),
        "config": out["config"],
        "prompt_ids_checked": out["prompt_ids_checked"],
        "held_out": out["finish"],
    }


def job_trl_positions(spec: dict[str, Any]) -> dict[str, Any]:
    """TRL's GRPOTrainer with its model given position ids (its loss forward has none; see ``bench_trl``)."""
    return job_trl({**spec, "position_ids": True})


def job_ours_eos(spec: dict[str, Any]) -> dict[str, Any]:
    """Our GRPO trained on TRL's stop rule (env ``stop_rule=False``: only EOS or the budget ends a sample)."""
    return job_ours({**spec, "stop_rule": False})


JOBS = {
    "before": job_before,
    "ours": job_ours,
    "ours_eos": job_ours_eos,
    "trl": job_trl,
    "trl_positions": job_trl_positions,
}


def _progress(spec: dict[str, Any], records: list[dict[str, float]]) -> None:
    """The updates so far, beside the job's output (a run cut short still shows its curve)."""
    if spec.get("progress"):
        Path(spec["progress"]).write_text(json.dumps({"seed": spec["seed"], "records": records}))


#: Spec keys that do not change what a job computes (where files go, threads) or vary per job (the seed).
_PER_JOB = ("seed", "threads", "out", "progress", "model_dir", "model_path", "warmup")


def check_runs_dir(runs_dir: Path, spec: dict[str, Any], record: bool = True) -> None:
    """Refuse to mix job files of two settings: ``runs_dir/spec.json`` holds the spec its files were run with.

    A job whose file exists is not run again, so without this a changed experiment (another env, task or budget)
    would silently be summarised with the old setting's files. ``record``: write the spec where none is recorded
    yet (a run does; ``--summarize-only`` only checks).
    """
    shared = {k: v for k, v in spec.items() if k not in _PER_JOB}
    path = runs_dir / "spec.json"
    if path.exists():
        recorded = json.loads(path.read_text())
        if recorded != shared:
            changed = sorted(k for k in set(recorded) | set(shared) if recorded.get(k) != shared.get(k))
            raise SystemExit(
                f"trl_parity.py: the job files in {runs_dir} were run with another setting (differs in {changed}); "
                f"move them away or pass --runs <new dir> (and --out) for this one."
            )
        return
    if record:
        runs_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(shared, indent=1, sort_keys=True) + "\n")


def run_job(name: str, spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """Run one job in a fresh interpreter (one torch thread per ``spec``); its JSON lands at ``out``."""
    if out.exists():
        return json.loads(out.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.part")
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "TOKENIZERS_PARALLELISM": "false"}
    env.setdefault("HF_HUB_OFFLINE", "1")
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--job",
        name,
        "--spec",
        json.dumps({**spec, "out": str(tmp), "progress": str(out.with_suffix(".progress"))}),
    ]
    print(f"trl_parity: {name} seed {spec['seed']} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not tmp.exists():
        raise RuntimeError(f"trl_parity.py job {name!r} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    tmp.rename(out)  # a finished file or none
    out.with_suffix(".progress").unlink(missing_ok=True)
    return json.loads(out.read_text())


# ------------------------------------------------------------------------------------------- summary


def curve(run: dict[str, Any], per_update: int) -> list[list[float]]:
    """``[cumulative samples, mean reward of that update's samples]`` for every update."""
    return [[per_update * (k + 1), round(r["reward"], 4)] for k, r in enumerate(run["records"])]


def side_summary(runs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per-seed figures and their mean with a 95% t-interval over seeds."""
    seeds = sorted(runs)
    n = len(runs[seeds[0]]["records"])
    third = max(1, n // 3)
    per_seed = {
        "reward_all": [sum(r["reward"] for r in runs[s]["records"]) / n for s in seeds],
        "reward_first_third": [sum(r["reward"] for r in runs[s]["records"][:third]) / third for s in seeds],
        "reward_last_third": [sum(r["reward"] for r in runs[s]["records"][-third:]) / third for s in seeds],
        "held_out_after": [runs[s]["held_out"]["accuracy"] for s in seeds],
        "mean_completion_tokens": [sum(r["length"] for r in runs[s]["records"]) / n for s in seeds],
        "train_s": [runs[s]["train_s"] for s in seeds],
    }
    out: dict[str, Any] = {"seeds": seeds}
    for key, values in per_seed.items():
        mean, lo, hi = ci95(values)
        out[key] = {
            "per_seed": [round(v, 4) for v in values],
            "mean": round(mean, 4),
            "ci95": [round(lo, 4), round(hi, 4)],
        }
    out["mean_curve"] = [round(sum(runs[s]["records"][k]["reward"] for s in seeds) / len(seeds), 4) for k in range(n)]
    return out


def summarize(setting: str, spec: dict[str, Any], runs_dir: Path, seeds: list[int]) -> dict[str, Any]:
    """Gather the job files of ``seeds`` into the side-by-side summary."""
    before = json.loads((runs_dir / "before.json").read_text())["held_out"]
    found: dict[str, dict[int, dict[str, Any]]] = {side: {} for side in SIDES}
    for side in SIDES:
        for s in seeds:
            path = runs_dir / f"{side}_seed{s}.json"
            if path.exists():
                found[side][s] = json.loads(path.read_text())
    per_update = spec["prompts"] * spec["group"]
    result: dict[str, Any] = {
        "benchmark": "learning parity, our GRPO vs TRL GRPOTrainer at equal samples",
        "setting": setting,
        "settings": {k: v for k, v in spec.items() if k not in ("out", "model_path", "model_dir", "warmup")},
        "samples_per_update": per_update,
        "held_out_before": before,
        "runs": {
            side: {
                str(s): {
                    "curve": curve(r, per_update),
                    "held_out_after": r["held_out"],
                    "train_s": r["train_s"],
                    **({"prompt_ids_checked": r["prompt_ids_checked"]} if "prompt_ids_checked" in r else {}),
                }
                for s, r in sorted(runs.items())
            }
            for side, runs in found.items()
        },
        "config": {side: next(iter(runs.values()))["config"] for side, runs in found.items() if runs},
        "machine": {"cpu_count": os.cpu_count(), "libraries": bench_trl._libraries()},
    }
    result["summary"] = {side: side_summary(runs) for side, runs in found.items() if runs}
    unfinished = {  # jobs cut short (or still running): the updates they had made, no held-out score
        f"{side}_seed{s}": curve(json.loads(path.read_text()), per_update)
        for side in SIDES
        for s in seeds
        if s not in found[side] and (path := runs_dir / f"{side}_seed{s}.progress").exists()
    }
    if unfinished:
        result["unfinished"] = unfinished
    for mine, theirs in ((m, t) for m in OUR_SIDES for t in TRL_SIDES):
        both = sorted(set(found[mine]) & set(found[theirs]))
        if not both:
            continue
        diff: dict[str, Any] = {"seeds": both}
        for key in ("reward_all", "reward_last_third", "held_out_after"):
            values = [
                _metric(found[mine][s], key, per_update) - _metric(found[theirs][s], key, per_update) for s in both
            ]
            mean, lo, hi = ci95(values)
            diff[key] = {
                "per_seed": [round(v, 4) for v in values],
                "mean": round(mean, 4),
                "ci95": [round(lo, 4), round(hi, 4)],
            }
        result[f"{mine}_minus_{theirs}"] = diff
    return result


def _metric(run: dict[str, Any], key: str, per_update: int) -> float:
    records = run["records"]
    third = max(1, len(records) // 3)
    if key == "reward_all":
        return sum(r["reward"] for r in records) / len(records)
    if key == "reward_last_third":
        return sum(r["reward"] for r in records[-third:]) / third
    return float(run["held_out"]["accuracy"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=SETTINGS, default="tiny")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=["ours", "trl"])
    parser.add_argument("--updates", type=int, default=None, help="updates per run (default: the setting's)")
    parser.add_argument("--eval-episodes", type=int, default=None, help="held-out problems (default: the setting's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every job")
    parser.add_argument("--runs", default=None, help="job files (default: bench/results/trl_parity/<setting>)")
    parser.add_argument("--out", default=None, help="summary JSON (default: bench/results/trl_parity_<setting>.json)")
    parser.add_argument("--cache-dir", default=None, help="where the tiny model's SFT weights are cached")
    parser.add_argument("--summarize-only", action="store_true", help="only gather the job files there are")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    parser.add_argument("--job", choices=tuple(JOBS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job is not None:  # child process: one job, result written to spec["out"]
        spec = json.loads(args.spec)
        result = JOBS[args.job](spec)
        Path(spec["out"]).write_text(json.dumps(result))
        return result
    if set(args.sides) & set(TRL_SIDES) and not args.summarize_only:
        import importlib.util

        if importlib.util.find_spec("trl") is None:
            raise SystemExit(
                f"trl_parity.py: the TRL side needs trl, which is not installed. Install the benchmark extra with "
                f"`{bench_trl.INSTALL_HINT}` (or run only ours: --sides ours)."
            )
    spec = setting_spec(args.setting, args)
    runs_dir = Path(args.runs or ROOT / "bench" / "results" / "trl_parity" / args.setting)
    check_runs_dir(runs_dir, spec, record=not args.summarize_only)
    if not args.summarize_only:
        if spec.get("sft_steps"):
            with tempfile.TemporaryDirectory(prefix="trl-parity-") as tmp:  # the one SFT start both sides load
                bench_trl.run_worker("sft", spec, Path(tmp))
        run_job("before", spec, runs_dir / "before.json")
        for seed in args.seeds:
            for side in args.sides:
                run_job(side, {**spec, "seed": seed}, runs_dir / f"{side}_seed{seed}.json")
    result = summarize(args.setting, spec, runs_dir, args.seeds)
    out = Path(args.out or ROOT / "bench" / "results" / f"trl_parity_{args.setting}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        json.dumps(
            {
                k: result[k]
                for k in ("held_out_before", "summary", "unfinished")
                + tuple(f"{m}_minus_{t}" for m in OUR_SIDES for t in TRL_SIDES)
                if k in result
            },
            indent=1,
        )
    )
    return result


if __name__ == "__main__":
    main()
