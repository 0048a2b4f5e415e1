"""Done claim 1: RL beats SFT with few demonstrations (the main job, ``+experiment=math_few_demos``).

SFT on 2,048 gold solutions, then 40 rounds of expert iteration on new problems with a grader; held-out accuracy
after SFT vs after RL, 3 seeds. A thin driver: it reruns the experiment config
(``conf/experiment/math_few_demos.yaml`` has the settings and how they were found) and shares its run directories
with ``claim_rft_vs_sft``.

    python -m experiments.claim_rl_vs_sft_few_demos --seeds 0 1 2
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script path: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.common import WORK, Timer, arm, claim_main, pct, seed_runs, write_result

NAME = "rl_vs_sft_few_demos"
PAPER = "RL vs SFT with few demos (STaR / ReST-EM style expert iteration)"
# a seconds-scale version for tests: a 1x32 model, a few SFT steps, two small rounds, 8 test problems
QUICK = [
    "model.size.n_layer=1",
    "model.size.n_embd=32",
    "sft.steps=4",
    "sft.warmup_steps=1",
    "train.iterations=2",
    "train.checkpoint_every=2",
    "agent.prompts_per_round=4",
    "agent.sft_steps=2",
    "agent.batch_size=4",
    "eval.num_episodes=8",
    "train.eval_episodes=8",
]


def runs(seeds: list[int], work: Path, quick: bool, control: bool = False) -> list[dict[str, Any]]:
    """The main job's runs (``control``: the same fine-tune steps on the demonstrations alone)."""
    extra = ["agent.demo_fraction=1"] if control else []
    name = "math_few_demos_control" if control else "math_few_demos"
    return seed_runs(["+experiment=math_few_demos", *extra, *(QUICK if quick else [])], name, seeds, work)


def run(seeds: list[int], out_dir: Path, quick: bool = False) -> dict[str, Any]:
    """Run (or reuse) every seed's runs and write ``<out_dir>/<name>.json`` and ``.png``."""
    out_dir = Path(out_dir)
    work = out_dir / "work" if quick else WORK
    with Timer() as t:
        results = runs(seeds, work, quick)
    acc = "held-out accuracy (greedy, test split)"
    before = [r["before_rl"]["accuracy"] for r in results]
    after = [r["metrics"]["accuracy"] for r in results]
    arms = {
        "sft": arm(acc, before),
        "sft_then_rl": arm(acc, after),
        "rl_gain": arm("accuracy gain of RL over its SFT start", [a - b for a, b in zip(after, before)]),
    }
    verdict = (
        "held" if arms["rl_gain"]["ci95"][0] > 0 else "partly held" if arms["rl_gain"]["mean"] > 0 else "did not hold"
    )
    doc = {
        "claim": NAME,
        "paper": PAPER,
        "setting": {"config": "+experiment=math_few_demos", "quick": quick},
        "seeds": list(seeds),
        "arms": arms,
        "verdict": verdict,
        "summary": (
            f"SFT {pct(arms['sft'])} -> after RL {pct(arms['sft_then_rl'])}: {pct(arms['rl_gain'], unit=' points')}."
        ),
        "wall_s_per_seed": round(t.seconds / len(seeds), 1),
    }
    write_result(doc, out_dir)
    return doc


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    return claim_main(NAME, run, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
