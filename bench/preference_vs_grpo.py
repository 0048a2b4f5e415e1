"""Online DPO and self-rewarding against GRPO at equal samples on LMEnv/Math-v0, from one SFT start per seed.

For each seed: the main job's SFT start (``+experiment=math_few_demos`` with ``train.iterations=0``: 2000 SFT
steps on 2,048 demonstrations, 2x128 rotary model), exported as ``<start>/model``; then each algorithm runs
``--iterations`` iterations of ``--num-envs`` episodes (``--group-size`` per prompt) from it, so every
algorithm sees the same number of sampled episodes. Printed (and written with ``-o``) as one JSON object:
per algorithm and seed the held-out accuracy before and after, the training reward per iteration, and for
the rankers other than the env their agreement with the env's reward and length bias per iteration.

    python bench/preference_vs_grpo.py --starts /tmp/starts -o bench/results/preference_vs_grpo.json

Slow (minutes per run on one CPU thread); run it alone.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

KEYS = (
    "rollout/return_mean",
    "rollout/success",
    "rollout/length_mean",
    "pairs/formed",
    "pairs/chosen_length",
    "pairs/rejected_length",
    "pairs/chosen_return",
    "pairs/rejected_return",
    "rank/pairwise_accuracy",
    "rank/spearman",
    "rank/pair_env_accuracy",
    "rank/length_spearman",
    "rank/score_mean",
    "dpo/accuracy",
    "dpo/reward_margin",
)


def compose(overrides: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from agents.run.config import register_configs

    register_configs()
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        return hydra_compose(config_name="config", overrides=overrides)


def sft_start(directory: Path, seed: int, threads: int) -> Path:
    """The SFT start of ``seed`` (trained once, then reused): ``directory/model``."""
    from agents.run import run

    if not (directory / "model" / "config.json").is_file():
        run(
            compose(
                [
                    f"output_dir={directory}",
                    "+experiment=math_few_demos",
                    f"seed={seed}",
                    "train.iterations=0",
                    f"model.threads={threads}",
                    "train.progress=false",
                ]
            )
        )
    return directory / "model"


def t_interval(values: list[float]) -> list[float]:
    """Mean and 95% t-interval half-width (n = 3: t = 4.303)."""
    v = [x for x in values if x is not None and not math.isnan(x)]
    if len(v) < 2:
        return [float(np.mean(v)) if v else float("nan"), float("nan")]
    t = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}.get(len(v), 2.0)
    return [float(np.mean(v)), float(t * np.std(v, ddof=1) / math.sqrt(len(v)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=Path, required=True, help="directory of the SFT starts (start<seed>/)")
    parser.add_argument("--runs", type=Path, default=None, help="where the RL runs go (default: <starts>/runs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--agents", nargs="+", default=["grpo", "online_dpo", "self_rewarding"])
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-5, help="GRPO's Adam lr")
    parser.add_argument("--dpo-lr", type=float, default=5e-5, help="online DPO's and self-rewarding's Adam lr")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--eval-episodes", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args()

    from agents.run import run
    from agents.run.logger import read_metrics

    runs_dir = args.runs or args.starts / "runs"
    out: dict[str, Any] = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    results: dict[str, dict[str, Any]] = {}
    for seed in args.seeds:
        model = sft_start(args.starts / f"start{seed}", seed, args.threads)
        for agent in args.agents:
            lr = args.lr if agent == "grpo" else args.dpo_lr
            extra = [] if agent == "grpo" else [f"agent.beta={args.beta}"]
            directory = runs_dir / f"{agent}-seed{seed}"
            if not (directory / "eval.json").is_file():
                run(
                    compose(
                        [
                            f"output_dir={directory}",
                            f"agent={agent}",
                            f"seed={seed}",
                            f"model.name_or_path={model}",
                            f"model.threads={args.threads}",
                            "sft.steps=0",
                            f"agent.num_envs={args.num_envs}",
                            f"agent.group_size={args.group_size}",
                            f"agent.lr={lr}",
                            *extra,
                            f"train.iterations={args.iterations}",
                            "train.eval_every=0",
                            f"train.checkpoint_every={args.iterations}",
                            "train.progress=false",
                            f"eval.num_episodes={args.eval_episodes}",
                        ]
                    )
                )
            result = json.loads((directory / "eval.json").read_text())
            rows = [r for r in read_metrics(directory / "metrics.jsonl") if "rollout/return_mean" in r]
            entry = results.setdefault(agent, {"seeds": {}})
            entry["seeds"][seed] = {
                "accuracy_before": result["accuracy_before_rl"],
                "accuracy_after": result["metrics"]["accuracy"],
                "wall_s": result.get("wall_time_s"),
                "per_iteration": {k: [r.get(k) for r in rows] for k in KEYS if any(k in r for r in rows)},
            }
            print(
                json.dumps(
                    {
                        "agent": agent,
                        "seed": seed,
                        **{k: entry["seeds"][seed][k] for k in ("accuracy_before", "accuracy_after")},
                    }
                ),
                flush=True,
            )
    for entry in results.values():
        seeds = entry["seeds"].values()
        entry["accuracy_after"] = t_interval([s["accuracy_after"] for s in seeds])
        entry["accuracy_gain"] = t_interval([s["accuracy_after"] - s["accuracy_before"] for s in seeds])
        for key in ("rollout/return_mean", "rank/pairwise_accuracy", "rank/spearman", "rank/length_spearman"):
            curves = [s["per_iteration"].get(key) for s in seeds]
            if all(c for c in curves):
                last = [float(np.nanmean([x for x in c[-10:] if x is not None] or [np.nan])) for c in curves]
                entry[f"{key}_last10"] = t_interval(last)
    out["results"] = results
    text = json.dumps(out, indent=1)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
