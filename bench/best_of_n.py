"""Best-of-N on the math test split: majority vote, ORM, PRM (product and min), the policy's own likelihood
and the oracle (pass@N).

"Let's Verify Step by Step" in miniature, end to end on the embedded default (no downloads):

1. SFT a tiny math policy on the train solutions of the ``easy`` word-problem preset, the generator
   behind ``LMEnv/Math-v0`` (``agents.learners.sft.train_sft``; by default the 2x128 rotary-position form of
   the embedded default, 1000 steps: about 0.5 greedy and 0.33 sampled accuracy on Math-v0's test
   split, as ``experiment=math``'s start was at 1000 SFT steps);
2. train an outcome RM and a process RM (rule-verifier step labels; ``--shepherd`` adds a
   Math-Shepherd-labelled PRM) on the policy's own sampled train solutions, both initialised from
   the policy's backbone (``agents.reward_models.train``);
3. sample ``N`` completions per test problem, score them with each verifier, and compute the
   accuracy of each selector's pick for ``n = 1, 2, 4, ..., N`` (``agents.learners.rft.best_of_n_curve``,
   averaged over random orders of the ``N`` samples): a verifier's top-scored sample (``<rm>``) and
   a vote over answers weighted by the verifier's probabilities (``<rm>_weighted``);
   ``--contrastive`` adds a generative verifier: the policy fine-tuned on minimal contrastive claim steps
   (``agents.reward_models.contrastive``; selector ``contrastive_likelihood``, see ``bench/contrastive_prm.py``);
4. write ``best_of_n.json`` (the table, the RMs' held-out metrics, timings) and ``best_of_n.png``.

    OMP_NUM_THREADS=1 python bench/best_of_n.py --out runs/best_of_n --n 64 --problems 100

Artifacts of earlier steps in ``--out`` are reused (delete them to retrain).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import lm_envs  # noqa: F401
from agents.learners.sft import SFTConfig, train_sft
from agents.policy.models import load_model
from agents.reward_models.train import RewardModelConfig, train_reward_model
from agents.search.best_of_n import ClassifierScorer, Samples, best_of_n_curve, sample_groups, score_samples
from lm_envs import Problem
from lm_envs.core.tokenizer import load_codec, save_codec
from lm_envs.tasks.math import word_problems
from lm_envs.tasks.math.prm import LearnedPRM, aggregate

ENV = "LMEnv/Math-v0"


def sft_policy(out: Path, args: argparse.Namespace) -> Path:
    path = out / "policy"
    if (path / "config.json").is_file():
        return path
    codec = load_codec(None)
    size = {"n_layer": args.n_layer, "n_embd": args.n_embd}
    model = load_model(None, codec, seed=args.seed, arch=args.arch, size=size).to(args.device)
    sft = SFTConfig(steps=args.sft_steps, batch_size=32, warmup_steps=20)
    train_sft(model, word_problems("easy"), codec, sft, seed=args.seed)
    model.save_pretrained(path)
    save_codec(codec, path)
    return path


def train_rm(out: Path, name: str, policy: Path, args: argparse.Namespace, **overrides) -> dict:
    path = out / name
    if (path / "metrics.json").is_file():
        return json.loads((path / "metrics.json").read_text())
    settings = dict(
        output_dir=str(path),
        model=str(policy),  # the policy's backbone with a fresh one-output head
        policy=str(policy),
        num_problems=args.rm_problems,
        samples_per_problem=args.rm_samples,
        heldout_problems=50,
        steps=args.rm_steps,
        batch_size=16,
        lr=args.rm_lr,
        max_length=256,
        eval_every=0,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
    )
    return train_reward_model(RewardModelConfig(**{**settings, **overrides}))


def contrastive_verifier(out: Path, policy: Path, args: argparse.Namespace) -> Path:
    """The policy fine-tuned on minimal contrastive claim steps of its own train samples (a generative verifier).

    ``agents.reward_models.contrastive``: right vs near-miss results after the policy's own prefixes; its mean
    token log-probability of a solution is the ``contrastive_likelihood`` selector. A policy whose samples hold no
    checkable claim step (one barely trained) gets the gold train solutions' claim steps instead. Trained by
    ``agents.reward_models.train.train_contrastive`` (``lm-envs train-rm rm=contrastive``).
    """
    path = out / "contrastive_verifier"
    if (path / "config.json").is_file():
        return path
    cfg = RewardModelConfig(
        kind="contrastive",
        output_dir=str(path),
        policy=str(policy),
        num_problems=args.rm_problems,
        samples_per_problem=args.rm_samples,
        heldout_problems=50,
        steps=args.contrastive_steps,
        batch_size=32,
        lr=args.contrastive_lr,
        eval_every=0,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
    )
    train_reward_model(cfg)  # = lm-envs train-rm rm=contrastive policy=... (its metrics.json beside the model)
    return path


class StepScorer:
    """Every step probability of a causal-backbone PRM from ONE forward per solution.

    A sequence classifier over a causal LM reads its score at the last real token, and causal
    attention makes the hidden state there a function of the text up to it only. So the score
    :class:`~lm_envs.tasks.math.prm.LearnedPRM` gets from the prefix text ``prompt + s_1\\n .. s_t\\n``
    equals the score head applied, in a forward over the whole solution, at the token that ends
    ``s_t\\n``: ``T`` steps cost one forward instead of ``T``. Steps whose end is not a token
    boundary are scored on their prefix text (LearnedPRM's way).
    """

    def __init__(self, path: str, device: str, max_length: int = 256, batch_size: int = 32) -> None:
        self.prm = LearnedPRM(path, device=device, max_length=max_length)
        self.model, self.tokenizer = self.prm.model, self.prm.tokenizer
        self.device, self.max_length, self.batch_size = device, max_length, batch_size
        self.fallbacks = 0

    @torch.no_grad()
    def step_probabilities(self, prompts: list[str], completions: list[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(prompts), self.batch_size):
            texts, ends = [], []
            for prompt, completion in zip(
                prompts[start : start + self.batch_size], completions[start : start + self.batch_size], strict=True
            ):
                text, cuts = prompt, []
                for step in (s for s in completion.split("\n") if s.strip()):
                    text += step + "\n"
                    cuts.append(len(text))
                texts.append(text)
                ends.append(cuts)
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, return_offsets_mapping=True)
            offsets = enc.pop("offset_mapping").tolist()
            mask = enc["attention_mask"]
            logits = None
            if enc["input_ids"].shape[1] <= self.max_length:
                hidden = self.model.base_model(**enc.to(self.device)).last_hidden_state
                logits = self.model.score(hidden)[..., 0].float().cpu()
            for i, cuts in enumerate(ends):
                token_end = {e: j for j, (_, e) in enumerate(offsets[i]) if mask[i, j]}
                probs = []
                for cut in cuts:
                    if logits is not None and cut in token_end:
                        probs.append(float(torch.sigmoid(logits[i, token_end[cut]])))
                    else:  # not a token boundary, or too long: score the prefix text on its own
                        self.fallbacks += 1
                        probs.append(self.prm.probabilities([texts[i][:cut]])[0])
                out.append(probs)
        return out


def curve_for(
    samples: Samples, scores: np.ndarray, trials: int, seed: int, selector: str = "reward_model"
) -> list[float]:
    # As PRM800K's eval.py: a score picks among the samples with a parsed final answer (an empty or
    # unfinished solution has no step to doubt: a PRM's product/min over no steps is 1.0; a looping one
    # can be the policy's most likely). "weighted_majority" sums each answer's scores (unanswered
    # samples never vote), so it needs no mask.
    if selector == "reward_model":
        scores = np.where(samples.answer_classes() >= 0, scores, -np.inf)
    scored = replace(samples, scores=scores)
    scored._classes = samples._classes
    return best_of_n_curve(scored, (selector,), trials=trials, seed=seed)[selector]


def verifier_diagnostics(scores: dict[str, np.ndarray], success: np.ndarray) -> dict[str, dict[str, float]]:
    """AUC of each verifier's scores against correctness: pooled, and within problems (what selection needs).

    A verifier that learned which *problems* are easy ranks well pooled and at chance within a problem.
    """
    from agents.reward_models.train import auc

    mixed = [p for p in range(len(success)) if 0 < success[p].sum() < success.shape[1]]
    return {
        name: {
            "pooled_auc": auc(s.ravel().tolist(), success.ravel().tolist()),
            "within_problem_auc": float(np.mean([auc(s[p].tolist(), success[p].tolist()) for p in mixed])),
            "problems_with_both": len(mixed),
        }
        for name, s in scores.items()
    }


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    styles = {
        "oracle": "k--",
        "pass@n": "k:",
        "majority": "C0-o",
        "likelihood": "C4-d",
        "contrastive_likelihood": "C5-D",
        "orm": "C1-s",
        "prm_product": "C2-^",
        "prm_min": "C2--v",
        "prm_shepherd_product": "C3-^",
        "prm_shepherd_min": "C3--v",
        "orm_weighted": "C1:s",
        "prm_product_weighted": "C2:^",
        "prm_min_weighted": "C2:v",
        "prm_shepherd_product_weighted": "C3:^",
        "prm_shepherd_min_weighted": "C3:v",
    }
    for key in [k for k in table if k != "n"]:
        ax.plot(table["n"], [100 * v for v in table[key]], styles.get(key, "-d"), label=key, markersize=4)
    ax.set_xscale("log", base=2)
    ax.set_xticks(table["n"], [str(n) for n in table["n"]])
    ax.set_xlabel("N (samples per problem)")
    ax.set_ylabel("% problems solved (best-of-N pick)")
    ax.set_title(f"Best-of-N on {ENV} test")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/best_of_n")
    ap.add_argument("--n", type=int, default=64, help="samples per test problem (largest N)")
    ap.add_argument("--problems", type=int, default=100, help="test problems")
    ap.add_argument("--sft-steps", type=int, default=1000)
    ap.add_argument("--arch", default="llama", help="embedded policy architecture (gpt2 | llama)")
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--rm-problems", type=int, default=1000, help="train problems whose samples train the RMs")
    ap.add_argument("--rm-samples", type=int, default=8, help="samples per train problem for the RMs")
    ap.add_argument("--rm-steps", type=int, default=1500)
    ap.add_argument("--rm-lr", type=float, default=1e-4)
    ap.add_argument("--shepherd", action="store_true", help="also train a PRM on Math-Shepherd labels")
    ap.add_argument("--shepherd-rollouts", type=int, default=4)
    ap.add_argument("--shepherd-problems", type=int, default=60, help="train problems labelled by completions")
    ap.add_argument(
        "--contrastive",
        action="store_true",
        help="also fine-tune the policy on minimal contrastive claim steps (selector contrastive_likelihood)",
    )
    ap.add_argument("--contrastive-steps", type=int, default=1000)
    ap.add_argument("--contrastive-lr", type=float, default=1e-4)
    ap.add_argument("--trials", type=int, default=16, help="random orders of the N samples averaged")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="torch device (cuda: everything runs there)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t = time.time()
    policy_path = sft_policy(out, args)
    timings["sft_s"] = time.time() - t
    t = time.time()
    rms = {
        "orm": train_rm(out, "orm", policy_path, args, kind="orm"),
        "prm": train_rm(out, "prm", policy_path, args, kind="prm", labels="rule"),
    }
    if args.shepherd:
        rms["prm_shepherd"] = train_rm(
            out,
            "prm_shepherd",
            policy_path,
            args,
            kind="prm",
            labels="shepherd",
            soft_labels=False,
            shepherd_rollouts=args.shepherd_rollouts,
            num_problems=args.shepherd_problems,
        )
    contrastive = contrastive_verifier(out, policy_path, args) if args.contrastive else None
    timings["rm_training_s"] = time.time() - t

    t = time.time()
    policy = load_model(str(policy_path), load_codec(str(policy_path))).to(args.device)
    kwargs = {"tokenizer": str(policy_path)}
    samples = sample_groups(policy, ENV, args.n, args.problems, "test", args.temperature, args.seed, env_kwargs=kwargs)
    timings["sampling_s"] = time.time() - t
    t = time.time()
    base = best_of_n_curve(samples, ("oracle", "majority"), trials=args.trials, seed=args.seed)
    table = {k: base[k] for k in ("n", "pass@n", "oracle", "majority")}
    table["likelihood"] = curve_for(samples, samples.logprobs, args.trials, args.seed)  # the policy's own ranking
    orm_scores = score_samples(replace(samples), ClassifierScorer(str(out / "orm"), device=args.device, max_length=256))
    table["orm"] = curve_for(samples, orm_scores.scores, args.trials, args.seed)
    orm_p = 1 / (1 + np.exp(-orm_scores.scores))  # the ORM's P(correct)
    table["orm_weighted"] = curve_for(samples, orm_p, args.trials, args.seed, "weighted_majority")
    saved = {
        "orm": orm_scores.scores,
        "likelihood": samples.logprobs,  # the policy's mean token log-prob: the verifier-free baseline
        "success": samples.success,
        "classes": samples.answer_classes(),
    }
    prompts = [p for p in samples.prompts for _ in range(samples.n)]
    completions = [c for row in samples.completions for c in row]
    check = {}
    for name in ["prm", "prm_shepherd"] if args.shepherd else ["prm"]:
        scorer = StepScorer(str(out / name), args.device)
        probs = scorer.step_probabilities(prompts, completions)
        # the one-forward readout must equal LearnedPRM's prefix-by-prefix scores: check on 20 solutions
        slow = [scorer.prm.solution_scores([Problem("c", p)], [c], "min")[0] for p, c in zip(prompts[:20], completions)]
        fast = [aggregate(q, "min") for q in probs[:20]]
        check[name] = {"max_abs_diff": float(np.max(np.abs(np.subtract(slow, fast)))), "fallbacks": scorer.fallbacks}
        for how in ("product", "min"):
            scores = np.array([aggregate(q, how) for q in probs]).reshape(samples.returns.shape)
            table[f"{name}_{how}"] = curve_for(samples, scores, args.trials, args.seed)
            table[f"{name}_{how}_weighted"] = curve_for(samples, scores, args.trials, args.seed, "weighted_majority")
            saved[f"{name}_{how}"] = scores
    if contrastive is not None:
        from agents.reward_models.contrastive import completion_logprobs

        lm = load_model(str(contrastive), load_codec(str(contrastive))).to(args.device)
        mean_lp, _ = completion_logprobs(lm, load_codec(str(contrastive)), prompts, completions)
        saved["contrastive_likelihood"] = mean_lp.reshape(samples.returns.shape)
        table["contrastive_likelihood"] = curve_for(samples, saved["contrastive_likelihood"], args.trials, args.seed)
    np.savez(out / "scores.npz", **saved)  # per-sample scores, for re-analysis
    timings["scoring_and_selection_s"] = time.time() - t

    result = {
        "env": ENV,
        "split": "test",
        "problems": args.problems,
        "N": args.n,
        "trials": args.trials,
        "temperature": args.temperature,
        "sample_accuracy": float(samples.success.mean()),
        "table": table,
        "reward_models": {k: {"heldout": v["heldout"], "data": v["data"]} for k, v in rms.items()},
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "one_forward_prm_check": check,
        "verifier_auc": verifier_diagnostics(
            {k: v for k, v in saved.items() if k not in ("success", "classes")}, samples.success
        ),
        "settings": vars(args),
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
    }
    (out / "best_of_n.json").write_text(json.dumps(result, indent=1))
    plot(table, out / "best_of_n.png")
    print(json.dumps({"table": table, "sample_accuracy": result["sample_accuracy"], "timings_s": result["timings_s"]}))


if __name__ == "__main__":
    main()
