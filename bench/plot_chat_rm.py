"""Proxy (RM score) vs gold rubric vs KL from a chat run's ``metrics.jsonl``: the over-optimisation plot.

    python bench/plot_chat_rm.py runs/chat_ppo        # writes runs/chat_ppo/rm_vs_gold.png, prints JSON

Reads the per-iteration ``rollout/outcome/rm_score`` (the learned RM, the reward optimised),
``rollout/outcome/gold`` (the hidden gold rubric) and ``ppo/kl_ref`` (KL to the reference policy,
per episode) that ``lm-envs train env=chat`` logs, plots gold and RM score against KL and against
the iteration, and prints the first and last values with their 5-iteration means.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    args = ap.parse_args()
    run = Path(args.run_dir)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("rollout/outcome/rm_score") is not None]
    if not rows:
        raise SystemExit(f"{run}/metrics.jsonl has no rollout/outcome/rm_score: is it a chat run?")
    it = np.array([r["step"] for r in rows])
    rm = np.array([r["rollout/outcome/rm_score"] for r in rows])
    gold = np.array([r["rollout/outcome/gold"] for r in rows])
    kl = np.array([r.get("ppo/kl_ref", r.get("reinforce/kl_ref", np.nan)) for r in rows])

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ax = axes[0]
    ax.plot(it, rm, "C1-", label="RM score (proxy, optimised)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("RM score")
    ax2 = ax.twinx()
    ax2.plot(it, gold, "C2-", label="gold rubric")
    ax2.plot(it, kl / max(1e-9, np.nanmax(kl)), "C7:", label="KL / max KL")
    ax2.set_ylabel("gold rubric score (0-1)")
    ax.legend(loc="upper left", fontsize=8)
    ax2.legend(loc="lower right", fontsize=8)
    order = np.argsort(kl)
    axes[1].plot(kl[order], rm[order], "C1o", ms=3, label="RM score")
    axes[1].set_xlabel("KL(policy || reference) per episode")
    axes[1].set_ylabel("RM score")
    b = axes[1].twinx()
    b.plot(kl[order], gold[order], "C2s", ms=3, label="gold")
    b.set_ylabel("gold rubric")
    axes[1].legend(loc="upper left", fontsize=8)
    b.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(run / "rm_vs_gold.png", dpi=110)

    def summary(x: np.ndarray) -> dict[str, float]:
        first, last = float(np.mean(x[:5])), float(np.mean(x[-5:]))
        return {"first": float(x[0]), "last": float(x[-1]), "first5": first, "last5": last}

    out = {"iterations": int(it[-1]), "rm_score": summary(rm), "gold": summary(gold), "kl_ref": summary(kl)}
    out["kl_ref"]["max"] = float(np.nanmax(kl))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
