"""Done claim 2: an abstention reward cuts hallucination (Kalai et al. 2025, "Why language models hallucinate").

``+experiment=qa_abstain`` (pre-train on the fact corpus, SFT whose unknown-entity demonstrations half abstain,
then RLOO with correct +1 / abstain 0 / wrong -1.5) against its own SFT start, on unknown-entity questions
(hallucination rate) and known-entity ones (accuracy), 3 seeds. The control ``+experiment=qa_sft_answers`` (SFT
that always answers) shows that SFT alone teaches making answers up. A thin driver over the two configs.

    python -m experiments.claim_abstention --seeds 0 1 2
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script path: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.common import WORK, Timer, arm, claim_main, pct, seed_runs, write_result

NAME = "abstention"
PAPER = "Kalai et al. 2025"
HALLU, KNOWN = "unknown/hallucination_rate", "known/accuracy"
QUICK = [
    "model.size.n_layer=1",
    "model.size.n_embd=32",
    "pretrain.steps=2",
    "pretrain.warmup_steps=1",
    "sft.steps=2",
    "sft.warmup_steps=1",
    "train.iterations=2",
    "train.checkpoint_every=2",
    "train.eval_every=0",
    "agent.num_envs=8",
    "eval.num_episodes=16",
    "train.eval_episodes=16",
]


def run(seeds: list[int], out_dir: Path, quick: bool = False) -> dict[str, Any]:
    """Run (or reuse) every seed's runs and write ``<out_dir>/<name>.json`` and ``.png``."""
    out_dir = Path(out_dir)
    work = out_dir / "work" if quick else WORK
    q = QUICK if quick else []
    with Timer() as t:
        rl = seed_runs(["+experiment=qa_abstain", *q], "qa_abstain", seeds, work)
        control = seed_runs(["+experiment=qa_sft_answers", *q], "qa_sft_answers", seeds, work)
    h0, h1 = [r["before_rl"][HALLU] for r in rl], [r["metrics"][HALLU] for r in rl]
    k0, k1 = [r["before_rl"][KNOWN] for r in rl], [r["metrics"][KNOWN] for r in rl]
    arms = {
        "sft_answers_hallucination": arm("unknown-entity hallucination rate", [r["metrics"][HALLU] for r in control]),
        "sft_hallucination": arm("unknown-entity hallucination rate", h0),
        "rl_hallucination": arm("unknown-entity hallucination rate", h1),
        "hallucination_cut": arm(
            "relative cut of hallucination by RL", [(a - b) / a if a > 0 else 0.0 for a, b in zip(h0, h1)]
        ),
        "sft_known_accuracy": arm("known-entity accuracy", k0),
        "rl_known_accuracy": arm("known-entity accuracy", k1),
        "known_accuracy_change": arm("known-entity accuracy change", [b - a for a, b in zip(k0, k1)]),
    }
    cut, known = arms["hallucination_cut"], arms["known_accuracy_change"]
    held = cut["ci95"][0] > 0 and known["ci95"][0] > -0.05  # fewer hallucinations, known accuracy kept (5 points)
    verdict = "held" if held else "partly held" if cut["mean"] > 0 else "did not hold"
    doc = {
        "claim": NAME,
        "paper": PAPER,
        "setting": {"config": "+experiment=qa_abstain; control +experiment=qa_sft_answers", "quick": quick},
        "seeds": list(seeds),
        "arms": arms,
        "headline": ["sft_hallucination", "rl_hallucination", "hallucination_cut", "known_accuracy_change"],
        "verdict": verdict,
        "summary": (
            f"Unknown-entity hallucination {pct(arms['sft_hallucination'])} after SFT -> "
            f"{pct(arms['rl_hallucination'])} after RL (cut {pct(cut)}), known accuracy "
            f"{pct(known, unit=' points')}; SFT on answers only: {pct(arms['sft_answers_hallucination'])}."
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
