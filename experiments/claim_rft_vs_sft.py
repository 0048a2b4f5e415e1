"""Done claim 3: rejection-sampling fine-tuning beats more SFT.

The main job's expert iteration (RFT with a growing
pool) against its control, ``agent.demo_fraction=1``: the same SFT start, fine-tune steps, lr and optimizer on the
demonstrations alone. The difference is what the policy's own correct solutions of new problems add. A thin driver
over ``+experiment=math_few_demos`` (its runs are shared with ``claim_rl_vs_sft_few_demos``).

    python -m experiments.claim_rft_vs_sft --seeds 0 1 2
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script path: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.claim_rl_vs_sft_few_demos import runs
from experiments.common import WORK, Timer, arm, claim_main, pct, write_result

NAME = "rft_vs_sft"
PAPER = "Yuan et al. 2023 (RFT); expert iteration"


def run(seeds: list[int], out_dir: Path, quick: bool = False) -> dict[str, Any]:
    """Run (or reuse) every seed's runs and write ``<out_dir>/<name>.json`` and ``.png``."""
    out_dir = Path(out_dir)
    work = out_dir / "work" if quick else WORK
    with Timer() as t:
        rft, control = runs(seeds, work, quick), runs(seeds, work, quick, control=True)
    acc = "held-out accuracy (greedy, test split)"
    a, c = [r["metrics"]["accuracy"] for r in rft], [r["metrics"]["accuracy"] for r in control]
    arms = {
        "sft_control": arm(acc, c),
        "rft": arm(acc, a),
        "rft_minus_control": arm("accuracy gain of RFT over SFT on the demonstrations", [x - y for x, y in zip(a, c)]),
    }
    gain = arms["rft_minus_control"]
    verdict = "held" if gain["ci95"][0] > 0 else "partly held" if gain["mean"] > 0 else "did not hold"
    doc = {
        "claim": NAME,
        "paper": PAPER,
        "setting": {"config": "+experiment=math_few_demos vs ... agent.demo_fraction=1", "quick": quick},
        "seeds": list(seeds),
        "arms": arms,
        "verdict": verdict,
        "summary": (
            f"RFT {pct(arms['rft'])} vs the same steps on demonstrations only {pct(arms['sft_control'])}: "
            f"{pct(gain, unit=' points')}."
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
