"""A PRM trained on minimal contrastive steps, against the policy's own likelihood, within problems.

The rule-labelled PRM of ``bench/best_of_n.py`` learns which steps and problems are hard (pooled step AUC 0.85)
but ranks one problem's solutions at chance (within-problem AUC 0.54). Here every training example is a PAIR that
differs in one number only: the policy's own sampled prefix and one of its claim steps ``a op b = c``, once with
the true result and once with a perturbed one (:func:`agents.reward_models.train.contrastive_step_pairs`), so the
only way to lower the loss is to compare ``c`` with ``a op b``. Loss: Bradley-Terry on the pair plus binary
cross-entropy on both sides (``--bce``). A solution's score is the minimum step probability over its claim steps.

Measured on held-out TEST samples of the policy (``--test-problems`` x ``--test-samples`` at T=1): the
within-problem AUC (:func:`agents.reward_models.train.within_problem`) of the PRM-min score beside the policy's
mean and min token log-probability and the exact step checker (the ceiling), plus best-of-N accuracy at N = 1 .. N.

    OMP_NUM_THREADS=1 python bench/contrastive_prm.py --policy /tmp/wt23_tt/policy --out runs/contrastive_prm

Writes ``bench/results/contrastive_prm.json`` (``--json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import lm_envs  # noqa: F401
from agents.reward_models.contrastive import completion_logprobs, result_logprobs
from agents.reward_models.train import (
    RewardModelConfig,
    Solution,
    _load_policy,
    build_reward_model,
    contrastive_step_pairs,
    policy_solutions,
    score_texts,
    within_problem,
)
from agents.search.best_of_n import best_of_n_curve
from lm_envs.core.tokenizer import save_codec
from lm_envs.tasks.math.prm import step_text
from lm_envs.tasks.math.steps import check_step

ENV = "LMEnv/Math-v0"


def token_logprobs(policy: torch.nn.Module, codec, solutions: list[Solution]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and min log-probability of each completion's tokens under ``policy``."""
    prompts = [sol.problem.prompt for sol in solutions]
    return completion_logprobs(policy, codec, prompts, [sol.completion or "" for sol in solutions])


def claim_steps(sol: Solution) -> list[int]:
    return [t for t, s in enumerate(sol.steps) if check_step(s).verdict != "unverifiable"]


@torch.no_grad()
def prm_min_scores(model, tokenizer, solutions: list[Solution], max_length: int = 256) -> np.ndarray:
    """Min over claim steps of sigmoid(logit) (1.0 for a solution without a checkable claim)."""
    model.eval()
    texts, owner = [], []
    for i, sol in enumerate(solutions):
        for t in claim_steps(sol):
            texts.append(step_text(sol.problem, sol.steps[:t], sol.steps[t]))
            owner.append(i)
    probs = torch.cat(
        [
            torch.sigmoid(score_texts(model, tokenizer, texts[s : s + 128], max_length))
            for s in range(0, len(texts), 128)
        ]
    )
    out = np.ones(len(solutions))
    for i, p in zip(owner, probs.tolist(), strict=True):
        out[i] = min(out[i], p)
    return out


def claim_texts(sol: Solution) -> list[str]:
    """Each checkable claim step's text (prompt + steps so far + the step cut after its claim)."""
    out = []
    for t in claim_steps(sol):
        step, claim = sol.steps[t], check_step(sol.steps[t]).claim
        where = step.find(claim)
        cut = step[: where + len(claim)] if where >= 0 and claim else step
        out.append(step_text(sol.problem, sol.steps[:t], cut))
    return out


@torch.no_grad()
def generative_min_scores(lm, codec, solutions: list[Solution]) -> np.ndarray:
    """Min over claim steps of log p(claimed result | prefix, "a op b = ") under the fine-tuned LM (0 if none)."""
    lm.eval()
    texts, owner = [], []
    for i, sol in enumerate(solutions):
        for text in claim_texts(sol):
            texts.append(text)
            owner.append(i)
    scores = torch.cat([result_logprobs(lm, codec, texts[s : s + 128]) for s in range(0, len(texts), 128)])
    out = np.zeros(len(solutions))
    for i, v in zip(owner, scores.tolist(), strict=True):
        out[i] = min(out[i], v)
    return out


def rule_min_scores(solutions: list[Solution]) -> np.ndarray:
    return np.asarray([0.0 if any(check_step(s).verdict == "wrong" for s in sol.steps) else 1.0 for sol in solutions])


def metrics(scores: np.ndarray, sols: list[Solution]) -> dict[str, float]:
    m = within_problem(scores.tolist(), [s.correct for s in sols], [s.problem.id for s in sols])
    return {k: round(v, 4) for k, v in m.items()}


def auc_gain(a: np.ndarray, b: np.ndarray, sols: list[Solution], seed: int = 0) -> dict[str, float]:
    """Within-problem AUC of ``a`` minus that of ``b`` (paired over problems) with a 95% bootstrap interval."""
    from agents.reward_models.train import auc

    by: dict[str, list[int]] = {}
    for i, sol in enumerate(sols):
        by.setdefault(sol.problem.id, []).append(i)
    diffs = []
    for idx in by.values():
        c = [sols[i].correct for i in idx]
        if 0 < sum(c) < len(c):
            diffs.append(auc(a[idx].tolist(), c) - auc(b[idx].tolist(), c))
    d = np.asarray(diffs)
    boot = np.random.default_rng(seed).choice(d, (2000, len(d))).mean(1)
    return {"gain": round(float(d.mean()), 4), "ci95": [round(float(x), 4) for x in np.percentile(boot, [2.5, 97.5])]}


def curves(score_sets: dict[str, np.ndarray], sols: list[Solution], n: int, seed: int) -> dict[str, list[float]]:
    from agents.search.best_of_n import Samples

    P = len(sols) // n
    success = np.asarray([s.correct for s in sols]).reshape(P, n)
    comps = [[sols[p * n + j].completion or "" for j in range(n)] for p in range(P)]
    base = Samples(
        prompts=[sols[p * n].problem.prompt for p in range(P)],
        completions=comps,
        returns=success.astype(float),
        success=success,
    )
    answered = base.answer_classes() >= 0  # as bench/best_of_n.py: a score picks among answered samples
    table: dict[str, list[float]] = {}
    for name, s in score_sets.items():
        samples = Samples(
            prompts=base.prompts,
            completions=comps,
            returns=base.returns,
            success=success,
            scores=np.where(answered, s.reshape(P, n), -np.inf),
        )
        curve = best_of_n_curve(samples, ("reward_model",), trials=32, seed=seed)
        table["n"] = curve["n"]
        table[name] = [round(x, 4) for x in curve["reward_model"]]
    maj = best_of_n_curve(base, ("majority",), trials=32, seed=seed)
    table.update({k: [round(x, 4) for x in v] for k, v in maj.items() if k != "n"})
    return table


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--policy", default="/tmp/wt23_tt/policy")
    ap.add_argument("--out", default="runs/contrastive_prm")
    ap.add_argument("--json", default="bench/results/contrastive_prm.json")
    ap.add_argument("--train-problems", type=int, default=500)
    ap.add_argument("--train-samples", type=int, default=8)
    ap.add_argument("--test-problems", type=int, default=100)
    ap.add_argument("--test-samples", type=int, default=16)
    ap.add_argument("--negatives", type=int, default=2, help="perturbed results per claim step")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32, help="pairs per step")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--bce", type=float, default=0.5, help="weight of the BCE term beside Bradley-Terry")
    ap.add_argument(
        "--mode",
        choices=("classifier", "generative"),
        default="classifier",
        help="classifier: a one-logit PRM (BT + BCE); generative: fine-tune the policy's LM on the right "
        "results (+ --bt times BT between the pair's result log-probs), score = log p(claimed result)",
    )
    ap.add_argument("--bt", type=float, default=1.0, help="generative: weight of the pairwise term")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=500)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    started = time.time()
    cfg = RewardModelConfig(
        kind="prm",
        output_dir=args.out,
        model=args.policy,
        policy=args.policy,
        env_id=ENV,
        temperature=1.0,
        seed=args.seed,
        max_length=256,
    )
    policy, codec = _load_policy(args.policy, "cpu")
    policy.eval()
    train_cfg = RewardModelConfig(**{**cfg.__dict__, "samples_per_problem": args.train_samples})
    train_sol = policy_solutions(train_cfg, "train", args.train_problems, policy)
    test_cfg = RewardModelConfig(**{**cfg.__dict__, "samples_per_problem": args.test_samples, "seed": args.seed + 1000})
    test_sol = policy_solutions(test_cfg, "test", args.test_problems, policy)
    t_sample = time.time() - started
    pairs = contrastive_step_pairs(train_sol, args.negatives, seed=args.seed)
    print(
        f"{len(train_sol)} train solutions -> {len(pairs)} contrastive pairs; {len(test_sol)} test solutions",
        flush=True,
    )

    mean_lp, min_lp = token_logprobs(policy, codec, test_sol)
    baselines = {
        "likelihood_mean": metrics(mean_lp, test_sol),
        "likelihood_min": metrics(min_lp, test_sol),
        "rule_checker_min": metrics(rule_min_scores(test_sol), test_sol),
    }
    print(json.dumps(baselines), flush=True)

    if args.mode == "generative":
        baselines["policy_result_logprob_min"] = metrics(generative_min_scores(policy, codec, test_sol), test_sol)
        print(json.dumps(baselines["policy_result_logprob_min"]), flush=True)
        model, _ = _load_policy(args.policy, "cpu")
        tokenizer = None
    else:
        model, tokenizer = build_reward_model(cfg)

    def score(m) -> np.ndarray:
        if args.mode == "generative":
            return generative_min_scores(m, codec, test_sol)
        return prm_min_scores(m, tokenizer, test_sol)

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * s / args.steps)))
    )
    rng = np.random.default_rng(args.seed)
    history = []
    for step in range(args.steps):
        model.train()
        batch = [pairs[i] for i in rng.integers(len(pairs), size=args.batch_size)]
        if args.mode == "generative":
            r = result_logprobs(model, codec, [t for p in batch for t in p]).view(-1, 2)
            loss = -r[:, 0].mean() - args.bt * torch.nn.functional.logsigmoid(r[:, 0] - r[:, 1]).mean()
        else:
            r = score_texts(model, tokenizer, [t for p in batch for t in p], 256).view(-1, 2)
            loss = -torch.nn.functional.logsigmoid(r[:, 0] - r[:, 1]).mean()
            if args.bce:
                y = torch.tensor([1.0, 0.0]).repeat(len(batch), 1)
                loss = loss + args.bce * torch.nn.functional.binary_cross_entropy_with_logits(r, y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            m = metrics(score(model), test_sol)
            pair_acc = float((r[:, 0] > r[:, 1]).float().mean())
            history.append({"step": step + 1, "loss": round(loss.item(), 4), "train_pair_acc": pair_acc, **m})
            print(json.dumps(history[-1]), f"{time.time() - started:.0f}s", flush=True)
    prm = score(model)
    extra: dict[str, np.ndarray] = {}
    if args.mode == "generative":  # the contrastively fine-tuned policy's own likelihood of each whole solution
        ft_mean, ft_min = token_logprobs(model, codec, test_sol)

        def z(x: np.ndarray) -> np.ndarray:
            return (x - x.mean()) / x.std()

        extra = {
            "finetuned_likelihood_mean": ft_mean,
            "finetuned_likelihood_min": ft_min,
            "generative_min+likelihood_mean": z(prm) + z(mean_lp),
        }
    result = {
        "setup": vars(args),
        "train_solutions": len(train_sol),
        "train_solution_accuracy": float(np.mean([s.correct for s in train_sol])),
        "contrastive_pairs": len(pairs),
        "test_solutions": len(test_sol),
        "within_problem": {
            **baselines,
            f"contrastive_{args.mode}_min": metrics(prm, test_sol),
            **{k: metrics(v, test_sol) for k, v in extra.items()},
        },
        "auc_gain_over_likelihood_mean": {
            k: auc_gain(v, mean_lp, test_sol, args.seed)
            for k, v in {f"contrastive_{args.mode}_min": prm, **extra}.items()
        },
        "history": history,
        "best_of_n": curves(
            {
                "likelihood_mean": mean_lp,
                "likelihood_min": min_lp,
                f"contrastive_{args.mode}_min": prm,
                "rule_checker_min": rule_min_scores(test_sol),
                **extra,
            },
            test_sol,
            args.test_samples,
            args.seed,
        ),
        "timing_s": {"sampling": round(t_sample, 1), "total": round(time.time() - started, 1)},
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    if tokenizer is None:
        save_codec(codec, args.out)
    else:
        tokenizer.save_pretrained(args.out)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result["within_problem"], indent=1))
    return result


if __name__ == "__main__":
    main()
