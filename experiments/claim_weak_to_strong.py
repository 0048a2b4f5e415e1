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

**The pretrained student** (``--students smollm2``, arms ``smollm2_*``): students trained from scratch have no
latent knowledge to elicit, which Burns et al.'s claim is about. Here the strong student is SmolLM2-135M-Instruct
(``model=smollm2``) with a frozen backbone and a trained one-output head on its last-token features (a linear
probe: each text costs one backbone forward, no backward; ``conf/rm_experiment/weak_to_strong_smollm2.yaml``),
on pairs ``[N, N + 500)`` rendered through SmolLM2's chat template; the weak supervisor (the same ``1 x 8``
model) labels the same pairs in its own plain rendering. Arms: w2s, w2s + confidence loss, bootstrap through
the ``1 x 16`` intermediate (trained on the weak labels of the same 500 pairs), ceiling (gold labels).
Best-of-8 on 50 test prompts (each text is a SmolLM2 forward). The students' 0.5 GB weights are deleted once
scored (their ``metrics.json`` stays); one reruns by hand with

    lm-envs train-rm +rm_experiment=weak_to_strong_smollm2 label_model=<weak RM dir>
    python -m experiments.claim_weak_to_strong --students smollm2 --seeds 0   # one seed; cached per seed

A run that leaves a family out keeps that family's per-seed results recorded in ``<out>/weak_to_strong.json``
(the from-scratch arms were recorded before the pretrained family existed), and each family's per-seed result
is cached under ``<out>/work/weak_to_strong/seed<k>/``, so seeds can run in separate processes and a last call
(``--students scratch smollm2`` with every seed) only summarises.
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
STUDENTS = ("scratch", "smollm2")  # the strong-student families: 2 x 64 from scratch, SmolLM2-135M (pretrained)
PRETRAINED_CONF = CONF.with_name(f"{NAME}_smollm2.yaml")
PRETRAINED_BON = (50, 8)  # prompts x samples of best-of-n for the pretrained family (a SmolLM2 forward per text)
PRETRAINED_ARMS = ("weak", "intermediate", "w2s", "w2s_conf", "bootstrap", "ceiling")


def settings_of(path: Path) -> dict[str, Any]:
    """``RewardModelConfig`` fields from a ``conf/rm_experiment`` file (unknown keys refused)."""
    from omegaconf import OmegaConf

    from agents.reward_models.train import RewardModelConfig

    conf = OmegaConf.to_container(OmegaConf.load(path))
    known = {f.name for f in fields(RewardModelConfig)}
    unknown = sorted(set(conf) - known)
    if unknown:
        raise ValueError(f"{path} sets {unknown}, which are not RewardModelConfig fields; fix the file.")
    return conf


def strong_settings() -> dict[str, Any]:
    """The strong student's ``RewardModelConfig`` fields from ``conf/rm_experiment/weak_to_strong.yaml``."""
    return settings_of(CONF)


def pretrained_settings() -> dict[str, Any]:
    """The pretrained student's fields from ``conf/rm_experiment/weak_to_strong_smollm2.yaml``."""
    return settings_of(PRETRAINED_CONF)


def train(out: Path, seed: int, quick: bool, base: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Train one reward model with ``base`` (default: the strong settings) and ``overrides``; returns its metrics."""
    from agents.reward_models.train import RewardModelConfig, train_reward_model

    settings = {**(strong_settings() if base is None else base), **overrides}
    if quick:
        settings.update(steps=4, num_pairs=32, n_layer=1, n_embd=8, heldout=0.5)
    if quick and settings.get("pair_offset", 0) > 0:
        settings["pair_offset"] = 32
    return train_reward_model(RewardModelConfig(**settings, output_dir=str(out), seed=seed, eval_every=0))


def stand_in_backbone(path: Path) -> str:
    """Quick mode's "pretrained" model: a tiny GPT-2 causal LM with the embedded tokenizer and a ChatML template.

    It takes the same path as SmolLM2 (a model directory, a chat template, a frozen backbone) in seconds.
    """
    if (path / "model.safetensors").is_file():
        return str(path)
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from lm_envs.core.tokenizer import load_codec, save_codec

    codec = load_codec()
    save_codec(codec, path)
    config = json.loads((path / "tokenizer_config.json").read_text())
    config["chat_template"] = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(vocab_size=codec.vocab_size, n_layer=1, n_embd=16, n_head=2, n_positions=256)
    ).save_pretrained(path)
    return str(path)


def head_scores(rm_dirs: dict[str, Path], texts: list[str], max_length: int) -> dict[str, np.ndarray]:
    """Each frozen-backbone reward model's score of ``texts``: one backbone pass, then every model's head.

    The models share the backbone (it was frozen), so their scores differ only in the head; the features are
    checked against the first model's own scores (:func:`agents.reward_models.train.head_features`).
    """
    from safetensors import safe_open
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from agents.reward_models.train import head_features
    from lm_envs.tasks.chat.reward import prepare_tokenizer

    first = next(iter(rm_dirs.values()))
    model = AutoModelForSequenceClassification.from_pretrained(first).eval()
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(first), model)
    feats = head_features(model, tokenizer, texts, max_length)
    out = {}
    for name, d in rm_dirs.items():
        with safe_open(str(d / "model.safetensors"), "pt") as f:
            w = f.get_tensor("score.weight").float()
        out[name] = (feats @ w.T)[:, 0].numpy()
    return out


def run_seed_pretrained(seed: int, work: Path, quick: bool) -> dict[str, Any]:
    """The pretrained family of one seed: the weak and intermediate models, four SmolLM2 students, their metrics."""
    from agents.search.best_of_n import best_of_n_expectation
    from lm_envs.tasks.chat.task import SyntheticInstructions

    started = time.time()
    d = work / f"seed{seed}" / "smollm2"
    ps = pretrained_settings()
    base = {**ps, "model": stand_in_backbone(work / "stand_in") if quick else ps["model"]}
    transfer = {"pair_offset": ps["pair_offset"], "num_pairs": ps["num_pairs"]}
    models = {"weak": train(d / "weak", seed, quick, **WEAK, pair_offset=0)}  # the scratch family's weak model
    models["intermediate"] = train(
        d / "intermediate", seed, quick, **INTERMEDIATE, **transfer, label_model=str(d / "weak")
    )
    models["w2s"] = train(d / "w2s", seed, quick, base, label_model=str(d / "weak"))
    models["w2s_conf"] = train(d / "w2s_conf", seed, quick, base, label_model=str(d / "weak"), conf_coef=CONF_COEF)
    models["bootstrap"] = train(d / "bootstrap", seed, quick, base, label_model=str(d / "intermediate"))
    models["ceiling"] = train(d / "ceiling", seed, quick, base)
    num_prompts, m = (6, 4) if quick else PRETRAINED_BON
    prompts, responses, gold = base_samples(num_prompts, m, seed)
    students = [k for k in models if k not in ("weak", "intermediate")]
    rendered = SyntheticInstructions(chat_template=str(d / "ceiling"))  # the students' prompts: their template
    texts = [rendered.problem("test", i).prompt + r for i, rs in enumerate(responses) for r in rs]
    scores = head_scores({k: d / k for k in students}, texts, ps["max_length"])
    out: dict[str, Any] = {"accuracy": {}, "bon_gold": {}, "label_agreement": {}}
    for name, metrics in models.items():
        out["accuracy"][name] = metrics["heldout"]["accuracy"]
        out["label_agreement"][name] = metrics["data"].get("label_agreement", 1.0)
        s = scores[name].reshape(num_prompts, m) if name in scores else proxy_scores(d / name, prompts, responses)
        out["bon_gold"][name] = float(best_of_n_expectation(s, gold, [m])[0])
    out["bon_gold"]["base"] = float(gold.mean())
    out["bon_gold"]["gold_oracle"] = float(best_of_n_expectation(gold, gold, [m])[0])
    out["bon"] = {"n": m, "prompts": num_prompts}
    out["chat_template"] = {k: models[k]["data"]["chat_template"] for k in models}
    for name in students:  # 0.5 GB each; metrics.json and the config stay
        (d / name / "model.safetensors").unlink(missing_ok=True)
    out["wall_s"] = time.time() - started
    return out


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
    """The contract's JSON: the from-scratch arms (when recorded) and the pretrained ``smollm2_*`` arms (when run)."""
    arms: dict[str, Any] = {}
    setting: dict[str, Any] = {
        "task": "which of two chat responses the hidden gold rubric prefers (LMEnv/Chat-v0 synthetic pairs)",
        "weak": WEAK,
        "intermediate": INTERMEDIATE,
        "conf_coef": CONF_COEF,
        "heldout": "200 test-split pairs",
        "quick": quick,
    }
    wall = []
    if all("accuracy" in s for s in per_seed):
        arms.update(family_arms(per_seed, ""))
        setting.update(
            strong=strong_settings(),
            weak_train_pairs="[0, N)",
            transfer_pairs="[N, 2N) (N = num_pairs)",
            best_of_n={**best_of(per_seed), "base_policy": "lm_envs.tasks.chat.task.synthetic_response"},
        )
        wall.append(np.mean([s["wall_s"] for s in per_seed]))
    if all("smollm2" in s for s in per_seed):
        pre = [s["smollm2"] for s in per_seed]
        arms.update(family_arms(pre, "smollm2_"))
        setting["smollm2"] = {
            "strong": {**pretrained_settings(), "model_name": "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF)"},
            "student": "frozen SmolLM2 backbone, one-output head trained on last-token features (linear probe)",
            "transfer_pairs": "[pair_offset, pair_offset + num_pairs), rendered through the chat template",
            "intermediate": "1 x 16 from scratch on the weak labels of the same transfer pairs",
            "best_of_n": {**pre[0]["bon"], "base_policy": "lm_envs.tasks.chat.task.synthetic_response"},
            "wall_s_per_seed": float(np.mean([s["wall_s"] for s in pre])),
        }
        wall.append(np.mean([s["wall_s"] for s in pre]))
    verdict, summary = _verdict(arms)
    headline = [
        f"{kind}{prefix}{name}_accuracy"
        for prefix in ("", "smollm2_")
        for kind, name in (("", "weak"), ("", "w2s"), ("", "ceiling"), ("pgr_", "w2s"), ("pgr_", "w2s_conf"))
    ]
    headline += ["pgr_smollm2_bootstrap_accuracy", "pgr_smollm2_w2s_bon_gold", "pgr_smollm2_w2s_conf_bon_gold"]
    headline += ["smollm2_w2s_minus_weak_accuracy"]
    return {
        "claim": NAME,
        "paper": PAPER,
        "setting": setting,
        "seeds": list(seeds),
        "arms": arms,
        "headline": [h for h in headline if h in arms],  # the README table's arms (all are in the JSON)
        "verdict": verdict,
        "summary": summary,
        "wall_s_per_seed": float(sum(wall)),
    }


def best_of(per_seed: list[dict[str, Any]]) -> dict[str, int]:
    """The best-of-n setting of a family's seeds (results recorded before it was stored: the scratch default)."""
    return per_seed[0].get("bon", {"n": BON_N, "prompts": 200})


def family_arms(per_seed: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """One family's arms: accuracy and best-of-n gold of each model, PGRs, the weak labels' agreement with gold."""
    arms: dict[str, Any] = {}
    names = ("weak", "intermediate", "w2s", "w2s_conf", "bootstrap", "ceiling")
    bon_n = best_of(per_seed)["n"]
    for name in names:
        arms[f"{prefix}{name}_accuracy"] = arm("held-out gold pair accuracy", [s["accuracy"][name] for s in per_seed])
    for name in names:
        arms[f"{prefix}{name}_bon_gold"] = arm(
            f"gold rubric of the best-of-{bon_n} pick under this RM (base mean beside)",
            [s["bon_gold"][name] for s in per_seed],
        )
    arms[f"{prefix}base_bon_gold"] = arm(
        "gold rubric of a random base response (best-of-1)", [s["bon_gold"]["base"] for s in per_seed]
    )
    for student in ("w2s", "w2s_conf", "bootstrap"):
        for metric, what in (("accuracy", "held-out pair accuracy"), ("bon_gold", f"best-of-{bon_n} gold")):
            values = pgr_values(per_seed, metric, student)
            arms[f"pgr_{prefix}{student}_{metric}"] = arm(f"PGR on {what}", values)
    for student in ("w2s", "w2s_conf", "bootstrap"):  # paired per seed: does the student beat its supervisor?
        arms[f"{prefix}{student}_minus_weak_accuracy"] = arm(
            "held-out accuracy of the student minus its weak supervisor's (same seed)",
            [s["accuracy"][student] - s["accuracy"]["weak"] for s in per_seed],
        )
    arms[f"{prefix}weak_label_agreement"] = arm(
        "fraction of transfer pairs the weak model orders as gold does", [s["label_agreement"]["w2s"] for s in per_seed]
    )
    return arms


def _family_summary(arms: dict[str, Any], prefix: str, label: str) -> str:
    acc = {k: arms[f"{prefix}{k}_accuracy"]["mean"] for k in ("weak", "w2s", "w2s_conf", "bootstrap", "ceiling")}
    pgr = {k: arms[f"pgr_{prefix}{k}_accuracy"] for k in ("w2s", "w2s_conf", "bootstrap")}
    bon = {k: arms[f"pgr_{prefix}{k}_bon_gold"]["mean"] for k in ("w2s", "w2s_conf", "bootstrap")}

    def fmt(k: str) -> str:
        lo, hi = pgr[k]["ci95"]
        return f"{pgr[k]['mean']:.2f} [{lo:.2f}, {hi:.2f}]"

    return (
        f"{label}: held-out accuracy weak {acc['weak']:.3f}, w2s {acc['w2s']:.3f}, w2s+conf {acc['w2s_conf']:.3f}, "
        f"bootstrap {acc['bootstrap']:.3f}, ceiling {acc['ceiling']:.3f}; PGR w2s {fmt('w2s')}, "
        f"+conf {fmt('w2s_conf')}, bootstrap {fmt('bootstrap')}; PGR on best-of-n gold "
        f"{bon['w2s']:.2f} / {bon['w2s_conf']:.2f} / {bon['bootstrap']:.2f}."
    )


def _verdict(arms: dict[str, Any]) -> tuple[str, str]:
    """The verdict of the pretrained family when it ran (the paper's setting), else of the from-scratch one.

    Pretrained: held if the w2s student's PGR on accuracy has its CI above 0 and its PGR on best-of-n gold is
    positive on average; partly held if only one of the two does, or only the confidence-loss or bootstrap
    student's accuracy PGR CI is above 0. From scratch: held if the w2s PGR CI is above 0 (partly: another).
    """
    parts = []
    if "weak_accuracy" in arms:
        parts.append(_family_summary(arms, "", "from scratch (2 x 64 students)"))
    if "smollm2_weak_accuracy" in arms:
        parts.append(_family_summary(arms, "smollm2_", "pretrained (SmolLM2-135M probe)"))
    summary = " ".join(parts)
    prefix = "smollm2_" if "smollm2_weak_accuracy" in arms else ""
    above = {k: arms[f"pgr_{prefix}{k}_accuracy"]["ci95"][0] > 0 for k in ("w2s", "w2s_conf", "bootstrap")}
    if prefix:
        bon = arms["pgr_smollm2_w2s_bon_gold"]["mean"] > 0
        if above["w2s"] and bon:
            return "held", summary
        if above["w2s"] or bon or any(above.values()):
            return "partly held", summary
        return "did not hold", summary
    if above["w2s"]:
        return "held", summary
    if any(above.values()):
        return "partly held", summary
    return "did not hold", summary


def plot(result: dict[str, Any], path: Path) -> None:
    """Accuracy and best-of-n gold of each model (bars with 95% CIs), PGR in the labels; a row per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = result["arms"]
    names = ["weak", "intermediate", "w2s", "w2s_conf", "bootstrap", "ceiling"]
    families = [
        (p, t) for p, t in (("", "from scratch"), ("smollm2_", "SmolLM2 (pretrained)")) if f"{p}weak_accuracy" in a
    ]
    fig, axes = plt.subplots(len(families), 2, figsize=(11, 4 * len(families)), squeeze=False)
    for row, (prefix, family) in zip(axes, families, strict=True):
        for ax, metric, title in (
            (row[0], "accuracy", "held-out gold pair accuracy"),
            (row[1], "bon_gold", "gold rubric of the best-of-n pick"),
        ):
            means = [a[f"{prefix}{n}_{metric}"]["mean"] for n in names]
            err = np.array(
                [
                    [m - a[f"{prefix}{n}_{metric}"]["ci95"][0], a[f"{prefix}{n}_{metric}"]["ci95"][1] - m]
                    for n, m in zip(names, means, strict=True)
                ]
            ).T
            ax.bar(range(len(names)), means, yerr=err, color=["C3", "C1", "C0", "C0", "C0", "C2"], capsize=4)
            labels = []
            for n in names:
                key = f"pgr_{prefix}{n}_{metric}"
                labels.append(f"{n}\nPGR {a[key]['mean']:.2f}" if key in a else n)
            ax.set_xticks(range(len(names)), labels, fontsize=8)
            lo = min(m for m in means if m == m)
            ax.set_ylim(lo - 0.1 * abs(lo) - 0.02, None)
            ax.set_title(f"{family}: {title}", fontsize=10)
        if f"{prefix}base_bon_gold" in a:
            row[1].axhline(a[f"{prefix}base_bon_gold"]["mean"], color="k", ls=":", label="random base response")
            row[1].legend(fontsize=8)
    fig.suptitle(f"{NAME}: {result['verdict']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cached(path: Path, compute: Any, quick: bool) -> dict[str, Any]:
    """``compute()``'s per-seed result, read from ``path`` when a finished run wrote it (never in quick mode)."""
    if not quick and path.is_file():
        return json.loads(path.read_text())
    result = compute()
    if not quick:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1))
    return result


def recorded(out_dir: Path, seeds: list[int]) -> list[dict[str, Any]] | None:
    """The from-scratch per-seed results recorded in ``out_dir/weak_to_strong.json`` for ``seeds`` (or ``None``)."""
    path = out_dir / f"{NAME}.json"
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    raw = dict(zip(doc.get("seeds", []), doc.get("per_seed_raw", []), strict=False))
    if not all(s in raw and "accuracy" in raw[s] for s in seeds):
        return None
    return [{k: v for k, v in raw[s].items() if k != "smollm2"} for s in seeds]


def run(
    seeds: list[int],
    out_dir: Path,
    quick: bool = False,
    students: tuple[str, ...] = STUDENTS,
    work: Path | None = None,
) -> dict[str, Any]:
    """Run the claim for ``seeds``; write ``out_dir/weak_to_strong.json`` and ``.png``; return the JSON.

    Args:
        seeds: Seeds (each: its own pairs sampler, model initialisations and base responses).
        out_dir: Where the JSON and PNG go (the trained RMs under ``out_dir/work/weak_to_strong``).
        quick: A seconds-scale version (tiny models, 32 pairs, 4 steps; a tiny stand-in for SmolLM2) for tests.
        students: The strong-student families to run: ``scratch`` (2 x 64 from scratch) and/or ``smollm2``
            (pretrained). A family left out keeps its results recorded in ``out_dir/weak_to_strong.json``.
        work: Where models and per-seed results go (default ``out_dir/work/weak_to_strong``); seeds run in
            separate processes share it and write their JSON to scratch ``out_dir``s.
    """
    import torch

    unknown = sorted(set(students) - set(STUDENTS))
    if unknown or not students:
        raise ValueError(f"unknown student families {unknown or students}; choose from {STUDENTS}.")
    torch.set_num_threads(1)
    out_dir = Path(out_dir)
    work = Path(work) if work is not None else out_dir / "work" / NAME
    old = None if quick or "scratch" in students else recorded(out_dir, seeds)
    per_seed = []
    for i, s in enumerate(seeds):
        raw: dict[str, Any] = {}
        if "scratch" in students:
            raw.update(cached(work / f"seed{s}" / "scratch.json", lambda s=s: run_seed(s, work, quick), quick))
        elif old is not None:
            raw.update(old[i])
        if "smollm2" in students:
            raw["smollm2"] = cached(
                work / f"seed{s}" / "smollm2.json", lambda s=s: run_seed_pretrained(s, work, quick), quick
            )
        per_seed.append(raw)
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
    ap.add_argument(
        "--students", nargs="+", choices=STUDENTS, default=list(STUDENTS), help="strong-student families to run"
    )
    ap.add_argument("--work", type=Path, default=None, help="models and per-seed results (default OUT/work/...)")
    args = ap.parse_args(argv)
    result = run(args.seeds, args.out, args.quick, tuple(args.students), args.work)
    print(json.dumps({k: result[k] for k in ("claim", "verdict", "summary", "wall_s_per_seed")}, indent=1))


if __name__ == "__main__":
    main()
