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

**RL against the reward models** (``--rl weak w2s w2s_conf ceiling``, default off; arms ``rl_*``): for the
from-scratch family, PPO against each named RM through the over-optimization claim's entry, ``lm-envs train
+experiment=overoptimization env.kwargs.reward_kwargs.reward_model=<RM dir>`` (SFT on the instructions'
demonstrations, then ``--rl-iterations`` (20) PPO iterations of 32 episodes, the RM's z-scored score as reward,
per-token KL ``--rl-kl-coef`` (0.05) to the SFT reference), then the final policy's greedy responses to 200 test
prompts scored by the gold rubric (``rl_<arm>_eval_gold``); beside it the rollouts' gold, RM score and KL over the
last quarter of the iterations, and the same SFT with no PPO (``rl_sft_eval_gold``, where every arm starts). PGR on
RL gold = (student - weak) / (ceiling - weak) per seed; ``rl_ceiling_minus_weak_eval_gold`` is the control (the gap
a student could recover). The RMs are retrained from the same settings and seeds (only those the arms need; an RM
already in ``<work>/seed<k>/<name>`` with the same settings is reused), and each arm is cached in
``<work>/seed<k>/rl.json``:

    python -m experiments.claim_weak_to_strong --students --rl weak w2s w2s_conf ceiling --seeds 0 --out /tmp/s0 \
        --work experiments/results/work/weak_to_strong                  # one seed (repeat per seed)
    python -m experiments.claim_weak_to_strong --students --rl weak w2s w2s_conf ceiling   # all seeds: summarises

**RL against the SmolLM2-probe RMs** (``--rl-students smollm2``, arms ``rl_smollm2_*``): the same PPO entry and
settings against the pretrained family's probes (``ceiling``, ``w2s``, ``w2s_conf``, ``bootstrap``), each retrained
with :func:`run_seed_pretrained`'s settings and seeds (:func:`pretrained_models`; w2s and w2s_conf on the weak
model's labels, a probe already in ``<work>/seed<k>/smollm2/<name>`` with the same settings reused) and deleted
once its arm ran (0.5 GB each). The chat env's reward renders each prompt through the probe's chat template, as it
trained (``lm_envs_chat_template`` in its config), so every reward is a SmolLM2 forward. The weak side is the
from-scratch weak RM's arm (``weak``, run or reused through the from-scratch path and its ``rl.json``; the recorded
one when ``<out>/weak_to_strong.json`` has it), and so is the SFT start; the control is
``rl_smollm2_ceiling_minus_weak_eval_gold``. Each probe arm is cached in ``<work>/seed<k>/smollm2/rl.json``:

    python -m experiments.claim_weak_to_strong --students --rl weak ceiling w2s w2s_conf --rl-students smollm2 \
        --seeds 0 --out /tmp/s0 --work experiments/results/work/weak_to_strong       # one seed (repeat per seed)

A run that leaves a family out keeps that family's per-seed results recorded in ``<out>/weak_to_strong.json``
(the from-scratch arms were recorded before the pretrained family existed; RL arms and seeds not run are kept the
same way), and each family's per-seed result is cached under ``<out>/work/weak_to_strong/seed<k>/``, so seeds can
run in separate processes and a last call (``--students scratch smollm2`` with every seed) only summarises.
"""

from __future__ import annotations

import argparse
import json
import shutil
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
RL_ARMS = ("weak", "w2s", "w2s_conf", "bootstrap", "ceiling")  # RMs that PPO can run against (--rl)
RL_FAMILIES = {"scratch": "rl_", "smollm2": "rl_smollm2_"}  # --rl-students: whose students and ceiling; arm prefix
RL_ITERATIONS = 20  # PPO iterations of 32 episodes (conf/experiment/overoptimization.yaml runs 40)
RL_KL_COEF = 0.05  # PPO's per-token KL penalty to the SFT reference (the overoptimization experiment's)
RL_EVAL_PROMPTS = 200  # the final policy's greedy responses to the first test prompts, scored by the gold rubric


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


def heldout_pairs(settings: dict[str, Any]) -> int:
    """How many test-split pairs an RM trained with ``settings`` (synthetic pairs) is held out on."""
    from agents.reward_models.train import RewardModelConfig, synthetic_heldout_pairs

    return synthetic_heldout_pairs(settings.get("heldout", RewardModelConfig.heldout), settings["num_pairs"])


def rm_config(out: Path, seed: int, quick: bool, base: dict[str, Any] | None = None, **overrides: Any) -> Any:
    """The ``RewardModelConfig`` of one model: ``base`` (default: the strong settings) with ``overrides``."""
    from agents.reward_models.train import RewardModelConfig

    settings = {**(strong_settings() if base is None else base), **overrides}
    if quick:
        settings.update(steps=4, num_pairs=32, n_layer=1, n_embd=8, heldout=0.5)
    if quick and settings.get("pair_offset", 0) > 0:
        settings["pair_offset"] = 32
    return RewardModelConfig(**settings, output_dir=str(out), seed=seed, eval_every=0)


def train(out: Path, seed: int, quick: bool, base: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Train one reward model with ``base`` (default: the strong settings) and ``overrides``; returns its metrics."""
    from agents.reward_models.train import train_reward_model

    return train_reward_model(rm_config(out, seed, quick, base, **overrides))


def train_or_reuse(
    out: Path, seed: int, quick: bool, base: dict[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """:func:`train`, or the metrics of the model already in ``out`` when it was trained with exactly these settings.

    Quick mode always trains (its models live in a test's temporary directory).
    """
    from dataclasses import asdict

    cfg = rm_config(out, seed, quick, base, **overrides)
    done = out / "metrics.json"
    if not quick and done.is_file() and (out / "model.safetensors").is_file():
        metrics = json.loads(done.read_text())
        if metrics.get("config") == json.loads(json.dumps(asdict(cfg))):
            return metrics
    return train(out, seed, quick, base, **overrides)


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


def pretrained_models(d: Path, work: Path, quick: bool) -> dict[str, tuple[dict[str, Any] | None, dict[str, Any]]]:
    """The pretrained family's models of one seed directory ``d``, in training order: name -> (base, overrides).

    ``base`` is the SmolLM2 probe's settings (the yaml; quick mode: the stand-in backbone under ``work``) or ``None``
    (the from-scratch settings) for the weak supervisor (the scratch family's) and the 1 x 16 intermediate.
    """
    ps = pretrained_settings()
    base = {**ps, "model": stand_in_backbone(work / "stand_in") if quick else ps["model"]}
    transfer = {"pair_offset": ps["pair_offset"], "num_pairs": ps["num_pairs"]}
    return {
        "weak": (None, {**WEAK, "pair_offset": 0}),
        "intermediate": (None, {**INTERMEDIATE, **transfer, "label_model": str(d / "weak")}),
        "w2s": (base, {"label_model": str(d / "weak")}),
        "w2s_conf": (base, {"label_model": str(d / "weak"), "conf_coef": CONF_COEF}),
        "bootstrap": (base, {"label_model": str(d / "intermediate")}),
        "ceiling": (base, {}),
    }


def run_seed_pretrained(seed: int, work: Path, quick: bool) -> dict[str, Any]:
    """The pretrained family of one seed: the weak and intermediate models, four SmolLM2 students, their metrics."""
    from agents.search.best_of_n import best_of_n_expectation
    from lm_envs.tasks.chat.task import SyntheticInstructions

    started = time.time()
    d = work / f"seed{seed}" / "smollm2"
    ps = pretrained_settings()
    models = {
        name: train(d / name, seed, quick, base, **overrides)
        for name, (base, overrides) in pretrained_models(d, work, quick).items()
    }
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


def scratch_models(d: Path) -> dict[str, dict[str, Any]]:
    """The from-scratch family's models of one seed directory ``d``, in training order: name -> settings.

    Each model's settings are the strong ones (the yaml) with these overrides; a label model comes before its
    students.
    """
    transfer = {"pair_offset": strong_settings()["num_pairs"]}
    return {
        "weak": {**WEAK, "pair_offset": 0},
        "w2s": {**transfer, "label_model": str(d / "weak")},
        "w2s_conf": {**transfer, "label_model": str(d / "weak"), "conf_coef": CONF_COEF},
        "intermediate": {**INTERMEDIATE, **transfer, "label_model": str(d / "weak")},
        "bootstrap": {**transfer, "label_model": str(d / "intermediate")},
        "ceiling": transfer,
    }


def run_seed(seed: int, work: Path, quick: bool) -> dict[str, Any]:
    """The five models of one seed, their held-out accuracy and their best-of-16 gold."""
    started = time.time()
    d = work / f"seed{seed}"
    models = {name: train(d / name, seed, quick, **overrides) for name, overrides in scratch_models(d).items()}
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


def rl_needs(arm_name: str) -> list[str]:
    """The from-scratch models the RL arm against ``arm_name``'s RM needs, label models first."""
    return {"w2s": ["weak"], "w2s_conf": ["weak"], "bootstrap": ["weak", "intermediate"]}.get(arm_name, []) + [arm_name]


def rl_dir_name(name: str, iterations: int, kl_coef: float) -> str:
    """An RL arm's run directory name: ``rl_<arm>_it<iterations>``, plus ``_kl<coef>`` off the default KL."""
    return f"rl_{name}_it{iterations}" + ("" if kl_coef == RL_KL_COEF else f"_kl{kl_coef:g}")


def same_kl(done: dict[str, Any], kl_coef: float) -> bool:
    """Whether a recorded arm ran at KL coefficient ``kl_coef`` (an entry without one ran the default)."""
    return done.get("kl_coef", RL_KL_COEF) == kl_coef


def same_rl(done: dict[str, Any], iterations: int, kl_coef: float) -> bool:
    """Whether a cached arm ran with these iterations and KL coefficient."""
    return done["iterations"] == iterations and same_kl(done, kl_coef)


def policy_run(
    rm_dir: Path, seed: int, run_dir: Path, quick: bool, iterations: int, kl_coef: float = RL_KL_COEF
) -> dict[str, Any]:
    """``lm-envs train +experiment=overoptimization`` against one RM, in this process; its ``eval.json``.

    SFT, ``iterations`` of PPO, then the final policy's greedy responses to the test prompts (records with their
    gold rubric). A finished run directory is reused; its checkpoints are removed (the policy stays in model/).
    """
    from experiments.common import train as train_run

    overrides = [
        "+experiment=overoptimization",
        f"env.kwargs.reward_kwargs.reward_model={rm_dir}",
        f"seed={seed}",
        f"train.iterations={iterations}",
        f"agent.kl_coef={kl_coef}",
        f"train.checkpoint_every={max(iterations, 1)}",
        f"eval.num_episodes={4 if quick else RL_EVAL_PROMPTS}",
    ]
    if quick:
        overrides += ["sft.steps=2", "agent.num_envs=4"]
    if run_dir.is_dir() and not (run_dir / "eval.json").is_file() and not (run_dir / "checkpoints").is_dir():
        shutil.rmtree(run_dir)  # a killed run with nothing to resume from: its metrics.jsonl would be appended to
    done = train_run(overrides, run_dir)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    if not done.get("records"):
        raise RuntimeError(f"the run in {run_dir} kept no evaluation records; rerun it in an empty directory.")
    return done


def sft_run(rm_dir: Path, seed: int, run_dir: Path, quick: bool) -> dict[str, Any]:
    """The RL arms' common start: the same SFT with no PPO; the gold rubric of its greedy test responses."""
    records = policy_run(rm_dir, seed, run_dir, quick, 0)["records"]
    return {
        "eval_gold": float(np.mean([r["outcome"]["gold"] for r in records])),
        "eval_tokens": float(np.mean([r["num_tokens"] for r in records])),
        "eval_prompts": len(records),
    }


def rl_run(
    rm_dir: Path, seed: int, run_dir: Path, quick: bool, iterations: int, kl_coef: float = RL_KL_COEF
) -> dict[str, Any]:
    """PPO against one RM for ``iterations`` at KL coefficient ``kl_coef`` (:func:`policy_run`); what it reached.

    Returns the gold rubric of the final policy's greedy responses to the test prompts (``eval_gold``, from the
    final evaluation's records) and, from the training rollouts, gold, RM score and KL to the SFT reference at the
    start (iteration 1: the SFT policy's samples) and over the last ``iterations // 4`` iterations, with the
    per-iteration trajectory.
    """
    from experiments.common import metrics_records

    done = policy_run(rm_dir, seed, run_dir, quick, iterations, kl_coef)
    ppo = [r for r in metrics_records(run_dir) if "ppo/kl_ref" in r and "rollout/outcome/gold" in r]
    traj = [
        {"kl": r["ppo/kl_ref"], "proxy": r["rollout/outcome/rm_score"], "gold": r["rollout/outcome/gold"]} for r in ppo
    ]
    if not traj:
        raise RuntimeError(f"the RL run in {run_dir} logged no gold rubric; is its env LMEnv/Chat-v0?")
    w = max(1, len(traj) // 4)
    records = done["records"]

    def last(key: str) -> float:
        return float(np.mean([r[key] for r in traj[-w:]]))

    return {
        "eval_gold": float(np.mean([r["outcome"]["gold"] for r in records])),
        "eval_rm_score": float(np.mean([r["outcome"]["rm_score"] for r in records])),
        "eval_tokens": float(np.mean([r["num_tokens"] for r in records])),
        "eval_prompts": len(records),
        "gold_start": traj[0]["gold"],
        "proxy_start": traj[0]["proxy"],
        "gold_last": last("gold"),
        "proxy_last": last("proxy"),
        "kl_last": last("kl"),
        "window": w,
        "iterations": len(traj),
        "kl_coef": kl_coef,
        "wall_s": float(done.get("wall_time_s", 0.0)),
        # wall time of one PPO iteration (32 episodes, their rewards, the update): median over the run
        "s_per_iteration": float(np.median(np.diff([r["time"] for r in ppo]))) if len(ppo) > 1 else float("nan"),
        "trajectory": traj,
    }


def run_seed_rl(
    seed: int,
    work: Path,
    quick: bool,
    arms: list[str],
    iterations: int,
    recorded: dict[str, Any] | None = None,
    kl_coef: float = RL_KL_COEF,
) -> dict[str, Any]:
    """PPO against each named from-scratch RM of one seed; per arm, :func:`rl_run`'s result and the RM's accuracy.

    Trains only the RMs these arms need (an RM already in the seed's directory with the same settings is
    reused); ``sft`` is the same SFT with no PPO (:func:`sft_run`). Each arm's result is cached in
    ``<work>/seed<k>/rl.json`` (with its iterations; never in quick mode), so arms and seeds can run in separate
    processes; an arm in ``recorded`` (the seed's RL results in the JSON) with the same iterations and KL
    coefficient counts as run.
    """
    d = work / f"seed{seed}"
    cache = d / "rl.json"
    done: dict[str, Any] = json.loads(cache.read_text()) if not quick and cache.is_file() else {}
    done.update((recorded or {}) if not quick else {})  # what the JSON records stays as recorded
    specs = scratch_models(d)
    iterations = 2 if quick else iterations

    def save() -> None:
        if not quick:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(done, indent=1))

    for name in arms:
        if name in done and same_rl(done[name], iterations, kl_coef):
            continue
        rm_wall = 0.0
        for model in rl_needs(name):
            metrics = train_or_reuse(d / model, seed, quick, **specs[model])
            if model != "weak" or name == "weak":  # the weak model's training time counts in its own arm
                rm_wall += float(metrics["wall_time_s"])
        result = rl_run(d / name, seed, d / rl_dir_name(name, iterations, kl_coef), quick, iterations, kl_coef)
        done[name] = {**result, "rm_accuracy": metrics["heldout"]["accuracy"], "rm_wall_s": rm_wall}
        save()
    if "sft" not in done:  # the SFT start's greedy gold (the reward model only scores, no PPO step reads it)
        t0 = time.time()
        done["sft"] = {**sft_run(d / arms[0], seed, d / "rl_sft", quick), "wall_s": time.time() - t0, "rm_wall_s": 0.0}
        save()
    return {name: done[name] for name in [*arms, "sft"]}


def run_seed_rl_pretrained(
    seed: int, work: Path, quick: bool, arms: list[str], iterations: int, kl_coef: float = RL_KL_COEF
) -> dict[str, Any]:
    """PPO against each named SmolLM2-probe RM of one seed (``w2s``, ``w2s_conf``, ``bootstrap``, ``ceiling``).

    The probes are retrained with :func:`run_seed_pretrained`'s settings and seeds (:func:`pretrained_models`; a
    probe already in ``<work>/seed<k>/smollm2/<name>`` with the same settings is reused), each arm runs
    :func:`rl_run` (the chat env's reward renders the prompt through the probe's chat template, as it trained), and
    the probe's 0.5 GB weights are deleted once its arm is done (no other arm reads them; ``metrics.json`` stays).
    The weak side is the from-scratch weak RM's arm (:func:`run_seed_rl`). Each arm is cached in
    ``<work>/seed<k>/smollm2/rl.json`` (with its iterations; never in quick mode).
    """
    from lm_envs.tasks.chat import reward as chat_reward

    d = work / f"seed{seed}" / "smollm2"
    cache = d / "rl.json"
    done: dict[str, Any] = json.loads(cache.read_text()) if not quick and cache.is_file() else {}
    specs = pretrained_models(d, work, quick)
    iterations = 2 if quick else iterations
    for name in arms:
        if name in done and same_rl(done[name], iterations, kl_coef):
            continue
        rm_wall = 0.0
        for model in rl_needs(name):  # the weak (and intermediate) label models first
            base, overrides = specs[model]
            metrics = train_or_reuse(d / model, seed, quick, base, **overrides)
            if model != "weak":  # the weak model's training time counts in the weak arm
                rm_wall += float(metrics["wall_time_s"])
        result = rl_run(d / name, seed, d / rl_dir_name(name, iterations, kl_coef), quick, iterations, kl_coef)
        done[name] = {
            **result,
            "rm_accuracy": metrics["heldout"]["accuracy"],
            "rm_wall_s": rm_wall,
            "rm_chat_template": bool(metrics["data"]["chat_template"]),
        }
        if not quick:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(done, indent=1))
        chat_reward.release_scorers(str(d / name))  # the loaded probe (0.5 GB) is not needed by another arm
        (d / name / "model.safetensors").unlink(missing_ok=True)
    return {name: done[name] for name in arms}


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
        "heldout": f"{heldout_pairs(strong_settings())} test-split pairs",
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
            "heldout": f"{heldout_pairs(pretrained_settings())} test-split pairs (heldout x num_pairs)",
            "transfer_pairs": "[pair_offset, pair_offset + num_pairs), rendered through the chat template",
            "intermediate": "1 x 16 from scratch on the weak labels of the same transfer pairs",
            "best_of_n": {**pre[0]["bon"], "base_policy": "lm_envs.tasks.chat.task.synthetic_response"},
            "wall_s_per_seed": float(np.mean([s["wall_s"] for s in pre])),
        }
        wall.append(np.mean([s["wall_s"] for s in pre]))
    if any(s.get("rl") for s in per_seed):
        arms.update(rl_arms(per_seed))
        with_rl = [s["rl"] for s in per_seed if s.get("rl")]
        rl_wall = float(np.mean([sum(r["wall_s"] + r["rm_wall_s"] for r in x.values()) for x in with_rl]))
        first = next(r for k, r in with_rl[0].items() if k != "sft")  # an arm (the SFT start ran no PPO)
        setting["rl"] = {
            "rms": "the from-scratch family's RMs, retrained per seed with the settings above (their held-out "
            "accuracy: rl_<arm>_rm_accuracy)",
            "entry": "lm-envs train +experiment=overoptimization env.kwargs.reward_kwargs.reward_model=<RM dir>",
            "iterations": first["iterations"],
            "kl_coef": first.get("kl_coef", RL_KL_COEF),
            "episodes_per_iteration": 4 if quick else 32,
            "final_eval": f"greedy responses to the first {first['eval_prompts']} test prompts, gold rubric",
            "window": f"rollout metrics over the last {first['window']} iterations",
            "seeds": [k for k, x in zip(seeds, per_seed, strict=True) if x.get("rl")],
            "arms": {k: sorted(x.get("rl", {})) for k, x in zip(seeds, per_seed, strict=True)},
            "wall_s_per_seed": rl_wall,
        }
        wall.append(rl_wall)
    if any(s.get("rl_smollm2") for s in per_seed):
        arms.update(rl_arms(per_seed, "smollm2"))
        with_rl = [s["rl_smollm2"] for s in per_seed if s.get("rl_smollm2")]
        rl_wall = float(np.mean([sum(r["wall_s"] + r["rm_wall_s"] for r in x.values()) for x in with_rl]))
        first = next(iter(with_rl[0].values()))
        setting["rl_smollm2"] = {
            "rms": "the pretrained family's SmolLM2-probe RMs (ceiling, w2s, w2s_conf, bootstrap), retrained per seed "
            "with its settings and deleted after their arm; the weak side is the from-scratch weak RM's arm "
            "(rl_smollm2_weak_* = rl_weak_*, rl_smollm2_sft_* = rl_sft_*)",
            "entry": "the same PPO entry and settings as setting.rl (the chat env renders each prompt through the "
            "probe's chat template, as it trained)",
            "iterations": first["iterations"],
            "kl_coef": first.get("kl_coef", RL_KL_COEF),
            "final_eval": f"greedy responses to the first {first['eval_prompts']} test prompts, gold rubric",
            "seeds": [k for k, x in zip(seeds, per_seed, strict=True) if x.get("rl_smollm2")],
            "arms": {k: sorted(x.get("rl_smollm2", {})) for k, x in zip(seeds, per_seed, strict=True)},
            "wall_s_per_seed": rl_wall,
            "s_per_iteration": {  # median wall time of one PPO iteration, mean over the seeds
                k: float(np.mean([x[k]["s_per_iteration"] for x in with_rl if "s_per_iteration" in x.get(k, {})]))
                for k in RL_ARMS
                if any("s_per_iteration" in x.get(k, {}) for x in with_rl)
            },
        }
        wall.append(rl_wall)
    verdict, summary = _verdict(arms)
    headline = [
        f"{kind}{prefix}{name}_accuracy"
        for prefix in ("", "smollm2_")
        for kind, name in (("", "weak"), ("", "w2s"), ("", "ceiling"), ("pgr_", "w2s"), ("pgr_", "w2s_conf"))
    ]
    headline += ["pgr_smollm2_bootstrap_accuracy", "pgr_smollm2_w2s_bon_gold", "pgr_smollm2_w2s_conf_bon_gold"]
    headline += ["smollm2_w2s_minus_weak_accuracy"]
    headline += [f"rl_{k}_eval_gold" for k in ("weak", "w2s", "w2s_conf", "ceiling")]
    headline += ["rl_ceiling_minus_weak_eval_gold", "pgr_rl_w2s_eval_gold", "pgr_rl_w2s_conf_eval_gold"]
    headline += ["rl_smollm2_ceiling_eval_gold", "rl_smollm2_ceiling_minus_weak_eval_gold"]
    headline += ["pgr_rl_smollm2_w2s_eval_gold", "pgr_rl_smollm2_w2s_conf_eval_gold"]
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


def rl_results(raw: dict[str, Any], family: str) -> dict[str, Any]:
    """One seed's RL results of a family, by arm.

    ``scratch``: ``raw["rl"]``; ``smollm2``: its probe arms (``raw["rl_smollm2"]``) with the weak arm and SFT start
    they share with the from-scratch family (none when the seed has no probe arm).
    """
    if family == "scratch":
        return raw.get("rl", {})
    if not raw.get("rl_smollm2"):
        return {}
    shared = {k: v for k, v in raw.get("rl", {}).items() if k in ("weak", "sft")}
    return {**shared, **raw["rl_smollm2"]}


def rl_arms(per_seed: list[dict[str, Any]], family: str = "scratch") -> dict[str, Any]:
    """The RL arms of a family: gold, RM score and KL of PPO against each RM; PGR on RL gold, the control gap.

    Keys start with ``RL_FAMILIES[family]`` (``rl_``, ``rl_smollm2_``; PGRs ``pgr_`` before it). A seed without an
    RL result for an arm contributes NaN (left out of the mean and CI).
    """
    from agents.reward_models.train import performance_gap_recovered

    p = RL_FAMILIES[family]
    runs = [rl_results(s, family) for s in per_seed]
    names = [k for k in RL_ARMS if any(k in r for r in runs)]
    nan = float("nan")

    def values(name: str, key: str) -> list[float]:
        return [float(r[name][key]) if name in r else nan for r in runs]

    arms: dict[str, Any] = {}
    for name in names:
        start, last = values(name, "gold_start"), values(name, "gold_last")
        p0, p1 = values(name, "proxy_start"), values(name, "proxy_last")
        arms[f"{p}{name}_eval_gold"] = arm(
            "RL (PPO against this RM): gold rubric of the final policy's greedy responses to the test prompts",
            values(name, "eval_gold"),
        )
        arms[f"{p}{name}_gold_last"] = arm(
            "RL: gold rubric of the training rollouts, last quarter of the iterations", last
        )
        arms[f"{p}{name}_gold_change"] = arm(
            "RL: rollout gold, last quarter minus iteration 1 (the SFT policy's samples)",
            [b - a for a, b in zip(start, last, strict=True)],
        )
        arms[f"{p}{name}_proxy_gain"] = arm(
            "RL: this RM's score of the rollouts, last quarter minus iteration 1 (the RM's own units)",
            [b - a for a, b in zip(p0, p1, strict=True)],
        )
        arms[f"{p}{name}_kl"] = arm(
            "RL: KL to the SFT reference, last quarter (nats per episode)", values(name, "kl_last")
        )
        arms[f"{p}{name}_rm_accuracy"] = arm(
            "held-out gold pair accuracy of the RM this RL arm ran against (retrained here)",
            values(name, "rm_accuracy"),
        )
    arms[f"{p}sft_gold"] = arm(
        "rollout gold rubric at RL iteration 1 (the SFT policy before any update), mean over the arms",
        [float(np.mean([x["gold_start"] for k, x in r.items() if k in RL_ARMS])) if r else nan for r in runs],
    )
    arms[f"{p}sft_eval_gold"] = arm(
        "gold rubric of the SFT policy's greedy responses to the test prompts (where every RL arm starts)",
        values("sft", "eval_gold"),
    )
    if "weak" not in names or "ceiling" not in names:
        return arms
    for metric in ("eval_gold", "gold_last"):
        weak, ceiling = values("weak", metric), values("ceiling", metric)
        arms[f"{p}ceiling_minus_weak_{metric}"] = arm(
            f"RL {metric}: ceiling RM minus weak RM, same seed (the gap a student could recover; control)",
            [c - w for w, c in zip(weak, ceiling, strict=True)],
        )
        for student in ("w2s", "w2s_conf", "bootstrap"):
            if student not in names:
                continue
            got = values(student, metric)
            arms[f"pgr_{p}{student}_{metric}"] = arm(
                f"PGR on RL {metric}: (student - weak) / (ceiling - weak), per seed",
                [performance_gap_recovered(w, x, c) for w, x, c in zip(weak, got, ceiling, strict=True)],
            )
            if metric == "eval_gold":
                arms[f"{p}{student}_minus_weak_eval_gold"] = arm(
                    "RL eval gold: student RM minus weak RM, same seed", [x - w for w, x in zip(weak, got, strict=True)]
                )
    return arms


def _rl_summary(arms: dict[str, Any], family: str = "scratch") -> str:
    p = RL_FAMILIES[family]
    names = [k for k in RL_ARMS if f"{p}{k}_eval_gold" in arms]
    seeds = sum(x == x for x in arms[f"{p}{names[0]}_eval_gold"]["per_seed"])

    def fmt(key: str) -> str:
        a = arms[key]
        return f"{a['mean']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]"

    golds = ", ".join(f"{k} {arms[f'{p}{k}_eval_gold']['mean']:.3f}" for k in names)
    rms = "the from-scratch RMs" if family == "scratch" else "the SmolLM2-probe RMs"
    shared = "" if family == "scratch" else "; weak: the from-scratch weak RM"
    text = (
        f"RL against {rms} (PPO, {seeds} seeds{shared}): greedy gold of the final policy {golds} "
        f"(SFT start, rollout gold {arms[f'{p}sft_gold']['mean']:.3f})"
    )
    if f"{p}ceiling_minus_weak_eval_gold" in arms:
        text += f"; ceiling minus weak {fmt(f'{p}ceiling_minus_weak_eval_gold')} (control: the gap to recover)"
        gaps = arms[f"{p}ceiling_minus_weak_eval_gold"]["per_seed"]
        defined = sum(g > 0 for g in gaps if g == g)  # PGR is undefined where the ceiling is not above weak
        pgrs = [
            f"{k} {fmt(f'pgr_{p}{k}_eval_gold')}"
            for k in ("w2s", "w2s_conf", "bootstrap")
            if f"pgr_{p}{k}_eval_gold" in arms
        ]
        if pgrs and defined < seeds:
            pgrs[-1] += f" (defined on {defined} of {seeds} seeds)"
        if pgrs:
            text += "; PGR on RL gold " + ", ".join(pgrs)
    return text + "."


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
    student's accuracy PGR CI is above 0. From scratch: held if the w2s PGR CI is above 0 (partly: another, or a
    student's PGR on RL gold with its CI above 0 while the control gap, ceiling minus weak RL gold, has its CI
    above 0; for the pretrained family the same RL rule on its probe RMs also makes it partly held). RL only (no
    family's classification results): the same rule on RL gold, either family.
    """
    parts = []
    if "weak_accuracy" in arms:
        parts.append(_family_summary(arms, "", "from scratch (2 x 64 students)"))
    if "rl_sft_gold" in arms:
        parts.append(_rl_summary(arms))
    if "smollm2_weak_accuracy" in arms:
        parts.append(_family_summary(arms, "smollm2_", "pretrained (SmolLM2-135M probe)"))
    if "rl_smollm2_sft_gold" in arms:
        parts.append(_rl_summary(arms, "smollm2"))
    summary = " ".join(parts)

    def rl_above(p: str) -> dict[str, bool]:
        gap = arms.get(f"{p}ceiling_minus_weak_eval_gold", {"ci95": [float("nan")]})["ci95"][0] > 0
        return {
            k: gap and arms.get(f"pgr_{p}{k}_eval_gold", {"ci95": [float("nan")]})["ci95"][0] > 0
            for k in ("w2s", "w2s_conf", "bootstrap")
        }

    scratch_rl, probe_rl = rl_above("rl_"), rl_above("rl_smollm2_")
    if "weak_accuracy" not in arms and "smollm2_weak_accuracy" not in arms:
        if scratch_rl["w2s"] or probe_rl["w2s"]:
            return "held", summary
        return ("partly held" if any([*scratch_rl.values(), *probe_rl.values()]) else "did not hold"), summary
    prefix = "smollm2_" if "smollm2_weak_accuracy" in arms else ""
    above = {k: arms[f"pgr_{prefix}{k}_accuracy"]["ci95"][0] > 0 for k in ("w2s", "w2s_conf", "bootstrap")}
    if prefix:
        bon = arms["pgr_smollm2_w2s_bon_gold"]["mean"] > 0
        if above["w2s"] and bon:
            return "held", summary
        if above["w2s"] or bon or any(above.values()) or any(probe_rl.values()):
            return "partly held", summary
        return "did not hold", summary
    if above["w2s"]:
        return "held", summary
    if any(above.values()) or any(scratch_rl.values()):
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
    rl = {
        family: [k for k in RL_ARMS if f"{p}{k}_eval_gold" in a]
        for family, p in RL_FAMILIES.items()
        if f"{p}sft_gold" in a
    }
    rows = len(families) + len(rl)
    fig, axes = plt.subplots(rows, 2, figsize=(11, 4 * rows), squeeze=False)
    for row, (family, names_rl) in zip(axes[len(families) :], rl.items(), strict=True):
        plot_rl(result, names_rl, row, family)
    for row, (prefix, family) in zip(axes, families, strict=False):
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


def plot_rl(result: dict[str, Any], names: list[str], row: Any, family: str = "scratch") -> None:
    """RL row: the final policies' greedy gold per RM (bars, 95% CIs, PGR in the labels); rollout gold by iteration."""
    a = result["arms"]
    p = RL_FAMILIES[family]
    title = {"scratch": "from scratch", "smollm2": "SmolLM2 probes"}[family]
    colors = {"weak": "C3", "w2s": "C0", "w2s_conf": "C9", "bootstrap": "C4", "ceiling": "C2"}
    ax = row[0]
    means = [a[f"{p}{n}_eval_gold"]["mean"] for n in names]
    err = np.array(
        [
            [m - a[f"{p}{n}_eval_gold"]["ci95"][0], a[f"{p}{n}_eval_gold"]["ci95"][1] - m]
            for n, m in zip(names, means, strict=True)
        ]
    ).T
    ax.bar(range(len(names)), means, yerr=np.nan_to_num(err), color=[colors[n] for n in names], capsize=4)
    labels = [
        f"{n}\nPGR {a[f'pgr_{p}{n}_eval_gold']['mean']:.2f}" if f"pgr_{p}{n}_eval_gold" in a else n for n in names
    ]
    ax.set_xticks(range(len(names)), labels, fontsize=8)
    sft = a.get(f"{p}sft_eval_gold", {"mean": float("nan")})["mean"]
    if sft == sft:
        ax.axhline(sft, color="k", ls=":", label="the SFT policy, where RL starts (greedy gold)")
        ax.legend(fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title(f"{title}, RL (PPO against each RM): greedy gold of the final policy", fontsize=10)
    ax = row[1]
    for n in names:
        runs = [rl_results(s, family) for s in result.get("per_seed_raw", [])]
        trajs = [r[n]["trajectory"] for r in runs if n in r]
        if not trajs:
            continue
        length = min(len(t) for t in trajs)
        gold = np.mean([[r["gold"] for r in t[:length]] for t in trajs], axis=0)
        ax.plot(range(1, length + 1), gold, "o-", ms=3, color=colors[n], label=f"PPO vs {n} ({len(trajs)} seeds)")
    ax.axhline(a[f"{p}sft_gold"]["mean"], color="k", ls=":", label="iteration 1 (the SFT policy's samples)")
    ax.set_xlabel("PPO iteration")
    ax.set_ylabel("rollout gold rubric (mean over seeds)")
    ax.legend(fontsize=8)
    ax.set_title(f"{title}, RL: gold of the training rollouts", fontsize=10)


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
    """The per-seed results recorded in ``out_dir/weak_to_strong.json`` for ``seeds`` (or ``None``).

    Each seed's dict holds what was recorded for it: the from-scratch family's keys at the top level, the
    pretrained family's under ``smollm2``, the RL arms' under ``rl``.
    """
    path = out_dir / f"{NAME}.json"
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    raw = dict(zip(doc.get("seeds", []), doc.get("per_seed_raw", []), strict=False))
    if not all(s in raw for s in seeds):
        return None
    return [dict(raw[s]) for s in seeds]


def run(
    seeds: list[int],
    out_dir: Path,
    quick: bool = False,
    students: tuple[str, ...] = STUDENTS,
    work: Path | None = None,
    rl: tuple[str, ...] = (),
    rl_iterations: int = RL_ITERATIONS,
    rl_seeds: list[int] | None = None,
    rl_students: tuple[str, ...] = ("scratch",),
    rl_kl_coef: float = RL_KL_COEF,
) -> dict[str, Any]:
    """Run the claim for ``seeds``; write ``out_dir/weak_to_strong.json`` and ``.png``; return the JSON.

    Args:
        seeds: Seeds (each: its own pairs sampler, model initialisations and base responses).
        out_dir: Where the JSON and PNG go (the trained RMs under ``out_dir/work/weak_to_strong``).
        quick: A seconds-scale version (tiny models, 32 pairs, 4 steps; a tiny stand-in for SmolLM2) for tests.
        students: The strong-student families to run: ``scratch`` (2 x 64 from scratch) and/or ``smollm2``
            (pretrained), or none (``()``: only ``rl``). A family left out keeps its results recorded in
            ``out_dir/weak_to_strong.json``.
        work: Where models and per-seed results go (default ``out_dir/work/weak_to_strong``); seeds run in
            separate processes share it and write their JSON to scratch ``out_dir``s.
        rl: RMs to run PPO against (:data:`RL_ARMS`; default none). PGR on RL gold needs ``weak``,
            ``ceiling`` and a student. RL results recorded for other arms or seeds are kept (and arms recorded
            with the same iterations are not rerun).
        rl_iterations: PPO iterations of each RL run.
        rl_seeds: The seeds that get the RL arms (default: all); the others keep what was recorded (or NaN).
        rl_students: Whose students and ceiling the ``rl`` arms use: ``scratch`` (arms ``rl_*``) and/or
            ``smollm2`` (the SmolLM2 probes, arms ``rl_smollm2_*``); ``weak`` is the from-scratch weak RM for both.
        rl_kl_coef: PPO's per-token KL coefficient to the SFT reference in every RL run. Arms recorded with another
            coefficient are rerun (their run directories are kept apart); the JSON's ``setting.rl.kl_coef`` says it.
    """
    import torch

    unknown = sorted(set(students) - set(STUDENTS))
    if unknown or not (students or rl):
        raise ValueError(f"unknown student families {unknown or students}; choose from {STUDENTS} (or name --rl arms).")
    bad = sorted(set(rl) - set(RL_ARMS))
    if bad:
        raise ValueError(f"unknown RL arms {bad}; choose from {RL_ARMS}.")
    if rl_iterations < 1:
        raise ValueError(f"rl_iterations must be at least 1, got {rl_iterations}.")
    if not (rl_kl_coef >= 0 and np.isfinite(rl_kl_coef)):
        raise ValueError(f"rl_kl_coef must be a finite number >= 0, got {rl_kl_coef}.")
    bad = sorted(set(rl_students) - set(RL_FAMILIES))
    if bad or (rl and not rl_students):
        raise ValueError(f"unknown RL student families {bad or rl_students}; choose from {tuple(RL_FAMILIES)}.")
    torch.set_num_threads(1)
    out_dir = Path(out_dir)
    work = Path(work) if work is not None else out_dir / "work" / NAME
    old = None if quick else recorded(out_dir, seeds)
    rl_seeds = list(seeds if rl_seeds is None else rl_seeds)
    per_seed = []
    for i, s in enumerate(seeds):
        raw: dict[str, Any] = dict(old[i]) if old is not None else {}
        if rl:  # one JSON holds one KL setting: recorded arms run with another coefficient are dropped
            for key in ("rl", "rl_smollm2"):
                if key in raw:
                    raw[key] = {a: r for a, r in raw[key].items() if a == "sft" or same_kl(r, rl_kl_coef)}
        if "scratch" in students:
            raw.update(cached(work / f"seed{s}" / "scratch.json", lambda s=s: run_seed(s, work, quick), quick))
        if "smollm2" in students:
            raw["smollm2"] = cached(
                work / f"seed{s}" / "smollm2.json", lambda s=s: run_seed_pretrained(s, work, quick), quick
            )
        if rl and s in rl_seeds:
            scratch = [a for a in rl if "scratch" in rl_students or a == "weak"]  # weak: both families' weak side
            probes = [a for a in rl if a != "weak"] if "smollm2" in rl_students else []
            if scratch:
                done = run_seed_rl(s, work, quick, scratch, rl_iterations, raw.get("rl"), rl_kl_coef)
                raw["rl"] = {**raw.get("rl", {}), **done}
            if probes:
                done = run_seed_rl_pretrained(s, work, quick, probes, rl_iterations, rl_kl_coef)
                raw["rl_smollm2"] = {**raw.get("rl_smollm2", {}), **done}
        per_seed.append(raw)
    result = summarize(per_seed, seeds, quick)
    result["per_seed_raw"] = per_seed
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{NAME}.json").write_text(json.dumps(result, indent=1))
    plot(result, out_dir / f"{NAME}.png")
    return result


def main(argv: list[str] | None = None) -> None:
    """Command line: ``--seeds``, ``--out``, ``--quick``, ``--students``, ``--work``, ``--rl``, ``--rl-students``."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("experiments/results"))
    ap.add_argument("--quick", action="store_true", help="seconds-scale version (for tests)")
    ap.add_argument(
        "--students",
        nargs="*",
        choices=STUDENTS,
        default=list(STUDENTS),
        help="strong-student families to run (none: only --rl; recorded results are kept)",
    )
    ap.add_argument("--work", type=Path, default=None, help="models and per-seed results (default OUT/work/...)")
    ap.add_argument("--rl", nargs="*", choices=RL_ARMS, default=[], help="RMs to run PPO against (default: none)")
    ap.add_argument(
        "--rl-students",
        nargs="+",
        choices=tuple(RL_FAMILIES),
        default=["scratch"],
        help="whose students and ceiling the --rl arms use (smollm2: the SmolLM2 probes; weak is shared)",
    )
    ap.add_argument("--rl-iterations", type=int, default=RL_ITERATIONS, help="PPO iterations per RL run")
    ap.add_argument("--rl-seeds", type=int, nargs="+", default=None, help="seeds with RL arms (default: all)")
    ap.add_argument(
        "--rl-kl-coef", type=float, default=RL_KL_COEF, help="PPO's KL coefficient to the SFT reference (RL arms)"
    )
    args = ap.parse_args(argv)
    result = run(
        args.seeds,
        args.out,
        args.quick,
        tuple(args.students),
        args.work,
        tuple(args.rl),
        args.rl_iterations,
        args.rl_seeds,
        tuple(args.rl_students),
        args.rl_kl_coef,
    )
    print(json.dumps({k: result[k] for k in ("claim", "verdict", "summary", "wall_s_per_seed")}, indent=1))


if __name__ == "__main__":
    main()
