"""Claim 1: reverse curriculum (R3, Xi et al. 2024).

Outcome-only RL from start states that reveal the first k gold steps does what process supervision does, on long
problems where plain outcome RL rarely succeeds.

Per seed: the SFT start of ``+experiment=easy_to_hard`` (1-2 step problems; shared with the easy-to-hard
claim), then four GRPO arms of ``+experiment=reverse_curriculum`` on the 4-step problems, at equal samples
and the same outcome reward: plain (whole problems), R3 mixed, R3 staged, and process-reward RL (the rule
verifier scores every step). The metric that matters is held-out greedy accuracy from the FULL prompt
(evaluation never gives steps away); the training success shows what each arm's episodes paid.

    python -m experiments.claim_reverse_curriculum --seeds 0 1 2 --out experiments/results
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script path: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.common import RESULTS, WORK, Timer, arm, metrics_records, train, write_result

NAME = "reverse_curriculum"
PAPER = "Xi et al. 2024 (R3)"
STAGED = "{mode: staged, threshold: 0.5, window: 64, min_episodes: 64}"
ARMS: dict[str, list[str]] = {
    "plain": [],
    "r3_mixed": ["env.kwargs.curriculum=mixed"],
    "r3_staged": [f"env.kwargs.curriculum={STAGED}"],
    "process": ["env.kwargs.reward_kwargs.process=rule"],
}
# A seconds-scale version for the test: a few updates on 8 test problems (the start: claim_easy_to_hard's quick one)
QUICK_EVAL = ["eval.num_episodes=8", "train.eval_episodes=8"]
QUICK_RL = [
    "train.iterations=2",
    "agent.num_envs=16",
    "agent.group_size=4",
    "train.checkpoint_every=2",
    "++env.kwargs.max_new_tokens=16",  # an untrained model never stops: cap what it writes
]


def sft_start(seed: int, work: Path, quick: bool = False) -> Path:
    """The start of ``seed``: the easy-to-hard claim's policy SFT'd on 1-4 step problems (trained once, shared)."""
    from experiments.claim_easy_to_hard import policy

    return policy(seed, "all", work, quick).parent


def run_arm(
    name: str,
    seed: int,
    start: Path,
    work: Path,
    quick: bool = False,
    extra: list[str] | None = None,
    run_name: str | None = None,
) -> dict[str, Any]:
    """One RL arm from the start: held-out accuracy (full prompts), start accuracy and training success.

    ``extra`` overrides go after the arm's own (the easy-to-hard claim's learned-verifier arm), in ``run_name``.
    """
    run_dir = work / (run_name or f"{NAME}/{name}") / f"seed{seed}"
    q = QUICK_RL + QUICK_EVAL if quick else []
    start_model = f"model.name_or_path={start / 'model'}"
    result = train(
        ["+experiment=reverse_curriculum", f"seed={seed}", start_model, *ARMS[name], *(extra or []), *q], run_dir
    )
    records = [r for r in metrics_records(run_dir) if "rollout/success" in r]
    last = records[-max(1, len(records) // 3) :]  # the last third of training
    stages = [r["curriculum/stage"] for r in metrics_records(run_dir) if "curriculum/stage" in r]
    return {
        "accuracy": float(result["metrics"]["accuracy"]),
        "accuracy_start": float(result["before_rl"]["accuracy"]),
        "train_success": sum(r["rollout/success"] for r in last) / len(last) if last else 0.0,
        "final_stage": stages[-1] if stages else None,
    }


def verdict(doc_arms: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """R3 holds where both curricula beat plain outcome RL (95% CI of the paired gain above 0)."""
    wins = [n for n in ("r3_mixed", "r3_staged") if doc_arms[f"{n}_minus_plain"]["ci95"][0] > 0]
    v = "held" if len(wins) == 2 else "partly held" if wins else "did not hold"

    def pct(name: str) -> str:
        a = doc_arms[name]
        return f"{100 * a['mean']:.1f}% [{100 * a['ci95'][0]:.1f}, {100 * a['ci95'][1]:.1f}]"

    s = (
        f"Held-out accuracy on whole 4-step problems from a {pct('start')} start: plain outcome RL {pct('plain')}, "
        f"R3 mixed {pct('r3_mixed')}, R3 staged {pct('r3_staged')}, process-reward RL {pct('process')}; "
        f"gain over plain: mixed {pct('r3_mixed_minus_plain')}, staged {pct('r3_staged_minus_plain')}, "
        f"process {pct('process_minus_plain')} (points)."
    )
    return v, s


def run(seeds: list[int], out_dir: Path, quick: bool = False) -> dict[str, Any]:
    """Run every arm for every seed and write ``<out_dir>/reverse_curriculum.json`` and ``.png``."""
    out_dir = Path(out_dir)
    work = out_dir / "work" if quick else WORK
    per: dict[str, list[dict[str, Any]]] = {n: [] for n in ARMS}
    walls = []
    for seed in seeds:
        with Timer() as t:
            start = sft_start(seed, work, quick)
            for name in ARMS:
                per[name].append(run_arm(name, seed, start, work, quick))
        walls.append(t.seconds)
    acc = "held-out accuracy, full prompt (greedy)"
    arms: dict[str, dict[str, Any]] = {"start": arm(acc, [r["accuracy_start"] for r in per["plain"]])}
    for name in ARMS:
        arms[name] = arm(
            acc,
            [r["accuracy"] for r in per[name]],
            train_success=[round(r["train_success"], 4) for r in per[name]],
            final_stage=[r["final_stage"] for r in per[name]],
        )
    for name in ("r3_mixed", "r3_staged", "process"):
        gains = [a["accuracy"] - p["accuracy"] for a, p in zip(per[name], per["plain"])]
        arms[f"{name}_minus_plain"] = arm("accuracy gain over plain outcome RL", gains)
    for name in ARMS:
        arms[f"{name}_train_success"] = arm(
            "training success (last third; curricula: from their start states)", [r["train_success"] for r in per[name]]
        )
    v, summary = verdict(arms)
    doc = {
        "claim": NAME,
        "paper": PAPER,
        "setting": {
            "start": "+experiment=easy_to_hard env.kwargs.task_kwargs.max_steps=4 sft.steps=600 (1-4 step problems)",
            "arms": "+experiment=reverse_curriculum " + json.dumps({n: " ".join(o) for n, o in ARMS.items()}),
            "rl_problems": "4 arithmetic steps, numbers < 100, + - *",
            "quick": quick,
        },
        "seeds": list(seeds),
        "arms": arms,
        "headline": ["start", "plain", "r3_mixed", "r3_staged", "process"],
        "verdict": v,
        "summary": summary,
        "wall_s_per_seed": round(sum(walls) / len(walls), 1),
    }
    write_result(doc, out_dir)
    return doc


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="a seconds-scale version (tiny model, few steps)")
    args = p.parse_args(argv)
    doc = run(args.seeds, args.out, args.quick)
    print(f"{NAME}: {doc['verdict']}. {doc['summary']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
