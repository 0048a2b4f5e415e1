"""Claim: weak-to-strong generalization (Burns et al. 2023), in miniature with reward models on the chat rubric.

The task is a binary classification: which of two responses the hidden gold rubric prefers (the chat
env's synthetic preference pairs, :func:`lm_envs.tasks.chat.preferences.synthetic_preferences`). Models are
one-output GPT-2 reward models trained from scratch with ``agents.reward_models.train`` (Bradley-Terry; with
a label model, cross-entropy to its soft labels):

* **weak**: a small model (``1 x 8``) trained on the gold order of pairs ``[0, N)``;
* **w2s**: the strong model (``2 x 64``) trained on pairs ``[N, 2N)`` labelled by the weak model
  (``label_model=<weak>``: its probability that one response beats the other);
* **w2s_conf**: the same with Burns et al.'s auxiliary confidence loss (``conf_coef``);
* **bootstrap**: an intermediate model (``1 x 16``) trained on the weak labels of ``[N, 2N)``, whose labels of
  the same pairs then train the strong model;
* **ceiling**: the strong model trained on the gold order of ``[N, 2N)``.

Every model is scored on 200 held-out test pairs (gold order), and as the reward model that picks the
best of 16 base responses for each of the 200 test prompts (gold rubric of the pick): the RM supervising
an optimiser. PGR = (w2s - weak) / (ceiling - weak) for both
(:func:`agents.reward_models.train.performance_gap_recovered`). The strong student's settings live in
``conf/rm_experiment/weak_to_strong.yaml``, so one arm reruns by hand:

    lm-envs train-rm +rm_experiment=weak_to_strong label_model=<weak RM dir> conf_coef=0.5
    python -m experiments.claim_weak_to_strong --seeds 0 1 2 --out experiments/results
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from experiments.claim_overoptimization import arm, base_samples, proxy_scores

NAME = "weak_to_strong"
PAPER = "Burns et al. 2023, Weak-to-Strong Generalization"
CONF = Path(__file__).resolve().parents[1] / "conf" / "rm_experiment" / f"{NAME}.yaml"
WEAK = {"n_layer": 1, "n_embd": 8, "steps": 300, "lr": 3e-3}  # the weak supervisor (the strong one: the yaml)
INTERMEDIATE = {"n_layer": 1, "n_embd": 16, "steps": 300, "lr": 3e-3}
CONF_COEF = 0.5  # Burns et al. use 0.5 for their smaller students, 0.75 for the larger
BON_N = 16


def strong_settings() -> dict[str, Any]:
    """The strong student's ``RewardModelConfig`` fields from ``conf/rm_experiment/weak_to_strong.yaml``."""
    from omegaconf import OmegaConf

    from agents.reward_models.train import RewardModelConfig

    conf = OmegaConf.to_container(OmegaConf.load(CONF))
    known = {f.name for f in fields(RewardModelConfig)}
    unknown = sorted(set(conf) - known)
    if unknown:
        raise ValueError(f"{CONF} sets {unknown}, which are not RewardModelConfig fields; fix the file.")
    return conf


def train(out: Path, seed: int, quick: bool, **overrides: Any) -> dict[str, Any]:
    """Train one reward model with the strong settings and ``overrides``; returns its metrics."""
    from agents.reward_models.train import RewardModelConfig, train_reward_model

    settings = {**strong_settings(), **overrides}
    if quick:
        settings.update(steps=4, num_pairs=32, n_layer=1, n_embd=8, heldout=0.5)
    if quick and "pair_offset" in overrides and overrides["pair_offset"] > 0:
        settings["pair_offset"] = 32
    return train_reward_model(RewardModelConfig(**settings, output_dir=str(out), seed=seed, eval_every=0))


def run_seed(seed: int, work: Path, quick: bool) -> dict[str, Any]:
    """The five models of one seed, their held-out accuracy and their best-of-16 gold."""
    started = time.time()
    n = strong_settings()["num_pairs"]
    d = work / f"seed{seed}"
    models = {
        "weak": train(d / "weak", seed, quick, **WEAK, pair_offset=0),
    }
    transfer = {"pair_offset": n}
    models["w2s"] = train(d / "w2s", seed, quick, **transfer, label_model=str(d / "weak"))
    models["w2s_conf"] = train(
        d / "w2s_conf", seed, quick, **transfer, label_model=str(d / "weak"), conf_coef=CONF_COEF
    )
    models["intermediate"] = train(
        d / "intermediate", seed, quick, **INTERMEDIATE, **transfer, label_model=str(d / "weak")
    )
    models["bootstrap"] = train(d / "bootstrap", seed, quick, **transfer, label_model=str(d / "intermediate"))
    models["ceiling"] = train(d / "ceiling", seed, quick, **transfer)
    num_prompts, m = (6, 4) if quick else (200, BON_N)
    prompts, responses, gold = base_samples(num_prompts, m, seed)
    from agents.search.best_of_n import best_of_n_expectation

    out: dict[str, Any] = {"accuracy": {}, "bon_gold": {}, "label_agreement": {}}
    for name, metrics in models.items():
        out["accuracy"][name] = metrics["heldout"]["accuracy"]
        out["label_agreement"][name] = metrics["data"].get("label_agreement", 1.0)
        scores = proxy_scores(d / name, prompts, responses)
        out["bon_gold"][name] = float(best_of_n_expectation(scores, gold, [m])[0])
    out["bon_gold"]["base"] = float(gold.mean())
    out["bon_gold"]["gold_oracle"] = float(best_of_n_expectation(gold, gold, [m])[0])
    out["bon"] = {"n": m, "prompts": num_prompts}
    out["wall_s"] = time.time() - started
    return out


def pgr_values(per_seed: list[dict[str, Any]], metric: str, student: str) -> list[float]:
    """PGR of ``student`` per seed on ``metric`` (``accuracy`` or ``bon_gold``)."""
    from agents.reward_models.train import performance_gap_recovered

    return [performance_gap_recovered(s[metric]["weak"], s[metric][student], s[metric]["ceiling"]) for s in per_seed]


def summarize(per_seed: list[dict[str, Any]], seeds: list[int], quick: bool) -> dict[str, Any]:
    """The contract's JSON."""
    arms: dict[str, Any] = {}
    names = ("weak", "intermediate", "w2s", "w2s_conf", "bootstrap", "ceiling")
    bon_n = per_seed[0]["bon"]["n"]
    for name in names:
        arms[f"{name}_accuracy"] = arm("held-out gold pair accuracy", [s["accuracy"][name] for s in per_seed])
    for name in names:
        arms[f"{name}_bon_gold"] = arm(
            f"gold rubric of the best-of-{bon_n} pick under this RM (base mean beside)",
            [s["bon_gold"][name] for s in per_seed],
        )
    arms["base_bon_gold"] = arm(
        "gold rubric of a random base response (best-of-1)", [s["bon_gold"]["base"] for s in per_seed]
    )
    for student in ("w2s", "w2s_conf", "bootstrap"):
        arms[f"pgr_{student}_accuracy"] = arm(
            "PGR on held-out pair accuracy", pgr_values(per_seed, "accuracy", student)
        )
        arms[f"pgr_{student}_bon_gold"] = arm(f"PGR on best-of-{bon_n} gold", pgr_values(per_seed, "bon_gold", student))
    arms["weak_label_agreement"] = arm(
        "fraction of transfer pairs the weak model orders as gold does", [s["label_agreement"]["w2s"] for s in per_seed]
    )
    verdict, summary = _verdict(arms)
    return {
        "claim": NAME,
        "paper": PAPER,
        "setting": {
            "task": "which of two chat responses the hidden gold rubric prefers (LMEnv/Chat-v0 synthetic pairs)",
            "strong": strong_settings(),
            "weak": WEAK,
            "intermediate": INTERMEDIATE,
            "conf_coef": CONF_COEF,
            "weak_train_pairs": "[0, N)",
            "transfer_pairs": "[N, 2N) (N = num_pairs)",
            "heldout": "200 test-split pairs",
            "best_of_n": {**per_seed[0]["bon"], "base_policy": "lm_envs.tasks.chat.task.synthetic_response"},
            "quick": quick,
        },
        "seeds": list(seeds),
        "arms": arms,
        "verdict": verdict,
        "summary": summary,
        "wall_s_per_seed": float(np.mean([s["wall_s"] for s in per_seed])),
    }


def _verdict(arms: dict[str, Any]) -> tuple[str, str]:
    """Held if the weak-to-strong student beats its supervisor (PGR CI above 0) on accuracy."""
    acc = {k: arms[f"{k}_accuracy"]["mean"] for k in ("weak", "w2s", "w2s_conf", "bootstrap", "ceiling")}
    pgr = {k: arms[f"pgr_{k}_accuracy"] for k in ("w2s", "w2s_conf", "bootstrap")}
    pgr_bon = {k: arms[f"pgr_{k}_bon_gold"]["mean"] for k in ("w2s", "w2s_conf", "bootstrap")}

    def fmt(k: str) -> str:
        lo, hi = pgr[k]["ci95"]
        return f"{pgr[k]['mean']:.2f} [{lo:.2f}, {hi:.2f}]"

    summary = (
        f"held-out accuracy weak {acc['weak']:.3f}, w2s {acc['w2s']:.3f}, w2s+conf {acc['w2s_conf']:.3f}, "
        f"bootstrap {acc['bootstrap']:.3f}, ceiling {acc['ceiling']:.3f}; PGR w2s {fmt('w2s')}, "
        f"+conf {fmt('w2s_conf')}, bootstrap {fmt('bootstrap')}; PGR on best-of-{BON_N} gold "
        f"{pgr_bon['w2s']:.2f} / {pgr_bon['w2s_conf']:.2f} / {pgr_bon['bootstrap']:.2f}."
    )
    positive = [k for k in pgr if pgr[k]["ci95"][0] > 0]
    if "w2s" in positive:
        return "held", summary
    if positive:
        return "partly held", summary
    return "did not hold", summary


def plot(result: dict[str, Any], path: Path) -> None:
    """Accuracy and best-of-16 gold of each model (bars with 95% CIs), PGR in the labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = result["arms"]
    names = ["weak", "intermediate", "w2s", "w2s_conf", "bootstrap", "ceiling"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric, title in (
        (axes[0], "accuracy", "held-out gold pair accuracy"),
        (axes[1], "bon_gold", f"gold rubric of the best-of-{BON_N} pick"),
    ):
        means = [a[f"{n}_{metric}"]["mean"] for n in names]
        err = np.array(
            [
                [m - a[f"{n}_{metric}"]["ci95"][0], a[f"{n}_{metric}"]["ci95"][1] - m]
                for n, m in zip(names, means, strict=True)
            ]
        ).T
        ax.bar(range(len(names)), means, yerr=err, color=["C3", "C1", "C0", "C0", "C0", "C2"], capsize=4)
        labels = []
        for n in names:
            key = f"pgr_{n}_{metric}"
            labels.append(f"{n}\nPGR {a[key]['mean']:.2f}" if key in a else n)
        ax.set_xticks(range(len(names)), labels, fontsize=8)
        lo = min(m for m in means if m == m)
        ax.set_ylim(lo - 0.1 * abs(lo) - 0.02, None)
        ax.set_title(title)
    if "base_bon_gold" in a:
        axes[1].axhline(a["base_bon_gold"]["mean"], color="k", ls=":", label="random base response")
        axes[1].legend(fontsize=8)
    fig.suptitle(f"{NAME}: {result['verdict']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(seeds: list[int], out_dir: Path, quick: bool = False) -> dict[str, Any]:
    """Run the claim for ``seeds``; write ``out_dir/weak_to_strong.json`` and ``.png``; return the JSON.

    Args:
        seeds: Seeds (each: its own pairs sampler, model initialisations and base responses).
        out_dir: Where the JSON and PNG go (the trained RMs under ``out_dir/work/weak_to_strong``).
        quick: A seconds-scale version (tiny models, 32 pairs, 4 steps) for tests.
    """
    import torch

    torch.set_num_threads(1)
    out_dir = Path(out_dir)
    per_seed = [run_seed(s, out_dir / "work" / NAME, quick) for s in seeds]
    result = summarize(per_seed, seeds, quick)
    result["per_seed_raw"] = per_seed
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{NAME}.json").write_text(json.dumps(result, indent=1))
    plot(result, out_dir / f"{NAME}.png")
    return result


def main(argv: list[str] | None = None) -> None:
    """Command line: ``--seeds``, ``--out``, ``--quick``."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("experiments/results"))
    ap.add_argument("--quick", action="store_true", help="seconds-scale version (for tests)")
    args = ap.parse_args(argv)
    result = run(args.seeds, args.out, args.quick)
    print(json.dumps({k: result[k] for k in ("claim", "verdict", "summary", "wall_s_per_seed")}, indent=1))


if __name__ == "__main__":
    main()
