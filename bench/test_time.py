"""Test-time compute on the math test split: best-of-N selectors against PRM-guided search, at equal generated tokens.

"Let's Verify Step by Step" (Lightman et al. 2023) and "Scaling LLM test-time compute optimally" (Snell et al.
2024) in miniature, end to end on the embedded default (no downloads):

1. SFT a tiny math policy (``bench/best_of_n.py``'s recipe: the 2x128 rotary form of the embedded default);
2. train an ORM (per-solution right/wrong, class-balanced), a pairwise ORM (a right against a wrong solution of the
   same problem) and a PRM (rule-verifier step labels, class-balanced) on the policy's own sampled train solutions,
   initialised from the policy's backbone; their held-out within-problem AUC and selection accuracy are reported;
3. per seed: sample ``N`` completions per test problem and pick with every selector for ``n = 1, 2, 4, ..., N``
   (pass@n is the oracle; majority vote; ORM top score; PRM top score by ``min`` / ``last`` / ``product``;
   ORM- and PRM-weighted votes; the policy's likelihood); each ``n`` costs ``n`` times the mean sampled length in
   generated tokens;
4. per seed: PRM beam search, DVTS and lookahead search (:mod:`agents.search.tree`; ``--lookahead`` greedy steps
   rate each candidate) at several ``n``, counting their generated tokens (lookahead rollouts included);
   with ``--rule-verifier`` (default) also best-of-N and search guided by the exact arithmetic step checker
   (:func:`lm_envs.tasks.math.steps.check_step`), the verifier a learned PRM would be at best;
5. problems binned by difficulty (thirds by the policy's own pass rate over the ``N`` samples of the first seed); for
   each bin the accuracy of beam search and of PRM best-of-N at about the same generated tokens;
   ``--contrastive`` adds the contrastive generative verifier (the policy fine-tuned on its own claim steps,
   ``lm-envs train-rm rm=contrastive``): its mean token log-probability ranks best-of-N samples (``contrastive``,
   and ``contrastive_weighted``: a vote weighted by its geometric-mean token probability) and, as a step scorer
   (:class:`agents.reward_models.contrastive.LikelihoodStepScorer`, the prefix's likelihood), guides the searches;
6. with the step checker, the compute-optimal mode (:mod:`agents.search.compute_optimal`): a setting per
   difficulty third fitted on ``--co-dev`` train problems within ``--co-budget`` tokens, run on the test problems;
7. mean and 95% t-interval over seeds; where each verifier's curve peaks and how far it falls by ``N``;
   ``test_time.json`` and ``test_time.png`` (accuracy against N, and against generated tokens per problem).

    OMP_NUM_THREADS=1 python bench/test_time.py --out runs/test_time                      # the full run: N=256, 3 seeds
    OMP_NUM_THREADS=1 python bench/test_time.py --out runs/tt_small --problems 60 --n 64 --seeds 2 --search-n 4 16

Artifacts of earlier stages in ``--out`` (policy, verifiers) are reused; delete them to retrain.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import lm_envs  # noqa: F401
from agents.policy.models import load_model
from agents.policy.sampling import sample_per_problem
from agents.reward_models.contrastive import LikelihoodStepScorer, completion_logprobs
from agents.reward_models.train import split_steps
from agents.search.best_of_n import ClassifierScorer, Samples, best_of_n_curve, score_samples
from agents.search.compute_optimal import compute_optimal_search, fit, name_of
from agents.search.tree import SearchConfig, search, verifier_step_scorer
from lm_envs.core.tokenizer import load_codec
from lm_envs.tasks.math.prm import LearnedPRM, aggregate

ENV = "LMEnv/Math-v0"
#: 97.5% quantiles of Student's t for 1..9 degrees of freedom (a 95% interval over a few seeds).
GUIDE_NAMES = {"rule": "rule checker", "contrastive": "contrastive verifier"}
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262]


def _recipes():
    """``bench/best_of_n.py``: its SFT policy, RM training and one-forward PRM scorer."""
    spec = importlib.util.spec_from_file_location("bench_best_of_n", Path(__file__).with_name("best_of_n.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def search_label(strategy: str) -> str:
    """``rule_beam`` -> ``beam (rule checker)``; a strategy without a guide prefix is the learned PRM's."""
    for prefix, name in GUIDE_NAMES.items():
        if strategy.startswith(prefix + "_"):
            return f"{strategy.removeprefix(prefix + '_')} ({name})"
    return f"{strategy} (PRM)"


def ci95(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of a 95% t-interval (0 with one value)."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, 0.0
    return mean, float(T975[min(len(values) - 2, len(T975) - 1)] * np.std(values, ddof=1) / math.sqrt(len(values)))


def sample(policy, n: int, problems: range, seed: int, temperature: float, kwargs: dict) -> tuple[Samples, np.ndarray]:
    """``n`` completions per test problem and their generated token counts ``(P, n)``."""
    generator = torch.Generator(device=next(policy.parameters()).device).manual_seed(seed)
    parts, tokens = [], []
    for _, rollout in sample_per_problem(
        policy,
        ENV,
        n,
        indices=problems,
        prefixes="",
        split="test",
        temperature=temperature,
        generator=generator,
        batch_size=max(n, 256),
        env_kwargs=kwargs,
    ):
        parts.append(Samples.from_rollout(rollout))
        tokens.append(rollout.mask.sum(1).view(-1, n).numpy())
    return Samples.concat(parts), np.concatenate(tokens)


def selector_curves(
    samples: Samples,
    orm: np.ndarray,
    prm: dict[str, np.ndarray],
    trials: int,
    seed: int,
    recipes,
    contrastive: np.ndarray | None = None,
):
    """Accuracy of each selector's pick for n = 1, 2, 4, ..., N (``contrastive``: mean token log-probs)."""
    base = best_of_n_curve(samples, ("oracle", "majority"), trials=trials, seed=seed)
    table = {k: base[k] for k in ("n", "pass@n", "majority")}
    table["likelihood"] = recipes.curve_for(samples, samples.logprobs, trials, seed)
    table["orm"] = recipes.curve_for(samples, orm, trials, seed)
    table["orm_weighted"] = recipes.curve_for(samples, 1 / (1 + np.exp(-orm)), trials, seed, "weighted_majority")
    for how, scores in prm.items():
        table[f"prm_{how}"] = recipes.curve_for(samples, scores, trials, seed)
    table["prm_min_weighted"] = recipes.curve_for(samples, prm["min"], trials, seed, "weighted_majority")
    if contrastive is not None:
        table["contrastive"] = recipes.curve_for(samples, contrastive, trials, seed)
        weights = np.exp(contrastive)  # geometric-mean token probability
        table["contrastive_weighted"] = recipes.curve_for(samples, weights, trials, seed, "weighted_majority")
    return table


def peaks(table: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """For each verifier curve: the n where it peaks, its peak and how much it lost by the largest n."""
    out = {}
    for name, curve in table.items():
        if name in ("n", "pass@n"):
            continue
        best = int(np.argmax(curve))
        out[name] = {
            "peak_n": table["n"][best],
            "peak": curve[best],
            "at_N": curve[-1],
            "drop": curve[best] - curve[-1],
        }
    return out


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    ns = summary["n"]
    tokens = summary["bon_tokens"]
    styles = {
        "pass@n": "k:",
        "majority": "C0-o",
        "likelihood": "C4-d",
        "orm": "C1-s",
        "orm_weighted": "C1:s",
        "orm_pairwise": "C6-s",
        "orm_pairwise_weighted": "C6:s",
        "prm_min": "C2-^",
        "prm_last": "C2--v",
        "prm_product": "C2-.>",
        "prm_min_weighted": "C2:^",
        "rule_min": "C7-x",
        "contrastive": "C8-D",
        "contrastive_weighted": "C8:D",
    }
    for name, style in styles.items():
        if name not in summary["curves"]:
            continue
        mean = [100 * m for m, _ in summary["curves"][name]]
        err = [100 * h for _, h in summary["curves"][name]]
        left.errorbar(ns, mean, yerr=err, fmt=style, label=name, markersize=4, capsize=2)
        right.plot(tokens, mean, style, label=f"best-of-N {name}", markersize=4)
    styles_search = (
        ("beam", "C3-*"),
        ("dvts", "C5-P"),
        ("lookahead", "C6-X"),
        ("rule_beam", "C9-*"),
        ("rule_dvts", "C9--P"),
        ("rule_lookahead", "C9:X"),
        ("contrastive_beam", "C8-*"),
        ("contrastive_dvts", "C8--P"),
        ("contrastive_lookahead", "C8:X"),
    )
    for strat, style in (*styles_search, ("rule_compute_optimal", "rD")):
        pts = summary["search"].get(strat, [])
        if pts:
            right.errorbar(
                [p["tokens"] for p in pts],
                [100 * p["accuracy"] for p in pts],
                yerr=[100 * p["ci"] for p in pts],
                fmt=style,
                label=search_label(strat),
                markersize=7,
                capsize=2,
            )
    left.set_xscale("log", base=2)
    left.set_xticks(ns, [str(n) for n in ns])
    left.set_xlabel("N (samples per problem)")
    right.set_xscale("log", base=2)
    right.set_xlabel("generated tokens per problem")
    for ax in (left, right):
        ax.set_ylabel("% problems solved")
        ax.grid(alpha=0.3)
    left.set_title(f"Best-of-N selectors, {ENV} test ({summary['problems']} problems, {summary['seeds']} seeds)")
    right.set_title("at equal generated tokens: best-of-N vs PRM search")
    left.legend(fontsize=7)
    right.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/test_time")
    ap.add_argument("--n", type=int, default=256, help="largest N of best-of-N")
    ap.add_argument("--problems", type=int, default=500, help="test problems (Math-v0's test split has 500)")
    ap.add_argument("--first-problem", type=int, default=0, help="the first test problem (e.g. a second block)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--search-n", type=int, nargs="+", default=[4, 16, 64], help="rows per problem of beam/DVTS")
    ap.add_argument("--width", type=int, default=4, help="beam width M (kept rows expand M times)")
    ap.add_argument("--search-aggregate", default="last", help="step-score aggregate guiding beam/DVTS")
    ap.add_argument(
        "--lookahead",
        type=int,
        default=2,
        help="greedy steps rolled out to rate a candidate (lookahead search; 0: off)",
    )
    ap.add_argument(
        "--rule-verifier",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also select and search with the exact arithmetic step checker (the ceiling of a learned PRM)",
    )
    ap.add_argument(
        "--contrastive",
        action="store_true",
        help="also the contrastive generative verifier (lm-envs train-rm rm=contrastive): best-of-N and search",
    )
    ap.add_argument("--contrastive-steps", type=int, default=1000)
    ap.add_argument("--contrastive-lr", type=float, default=1e-4)
    ap.add_argument(
        "--search-guides",
        nargs="+",
        choices=("prm", "rule", "contrastive"),
        default=None,
        help="verifiers that guide the searches (default: the PRM, the rule checker with --rule-verifier, the "
        "contrastive verifier with --contrastive)",
    )
    ap.add_argument(
        "--strategies",
        nargs="+",
        choices=("beam", "dvts", "lookahead"),
        default=None,
        help="search strategies (default: beam, dvts and lookahead when --lookahead > 0)",
    )
    ap.add_argument("--co-budget", type=float, default=400, help="compute-optimal: tokens per problem (0: off)")
    ap.add_argument("--co-dev", type=int, default=60, help="compute-optimal: train problems its table is fitted on")
    ap.add_argument("--sft-steps", type=int, default=1000)
    ap.add_argument("--arch", default="llama")
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--rm-problems", type=int, default=1000)
    ap.add_argument("--rm-samples", type=int, default=8)
    ap.add_argument("--rm-steps", type=int, default=1500)
    ap.add_argument("--rm-lr", type=float, default=1e-4)
    ap.add_argument("--trials", type=int, default=16, help="random orders of the N samples averaged per curve")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="seed of the policy and verifiers")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.width < 1 or any(n < args.width or n % args.width for n in args.search_n):
        raise SystemExit(f"--search-n values must be multiples of --width {args.width} (and at least it).")
    guides_wanted = args.search_guides or [
        "prm",
        *(["rule"] if args.rule_verifier else []),
        *(["contrastive"] if args.contrastive else []),
    ]
    if "rule" in guides_wanted and not args.rule_verifier:
        raise SystemExit("--search-guides rule needs --rule-verifier.")
    if "contrastive" in guides_wanted and not args.contrastive:
        raise SystemExit("--search-guides contrastive needs --contrastive (the verifier is trained by it).")
    strategies = tuple(args.strategies or (("beam", "dvts", "lookahead") if args.lookahead else ("beam", "dvts")))
    if "lookahead" in strategies and args.lookahead < 1:
        raise SystemExit("--strategies lookahead needs --lookahead >= 1.")
    if "beam" not in strategies:
        raise SystemExit("--strategies must include beam (the difficulty bins compare it with best-of-N).")
    torch.set_num_threads(args.threads)
    test_problems = range(args.first_problem, args.first_problem + args.problems)
    recipes = _recipes()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t = time.time()
    policy_path = recipes.sft_policy(out, args)
    timings["sft_s"] = time.time() - t
    t = time.time()
    rms = {
        "orm": recipes.train_rm(out, "orm", policy_path, args, kind="orm"),
        "prm": recipes.train_rm(out, "prm", policy_path, args, kind="prm", labels="rule"),
    }
    try:  # needs problems with right and wrong samples: a policy that never solves anything has none
        rms["orm_pairwise"] = recipes.train_rm(out, "orm_pairwise", policy_path, args, kind="orm", objective="pairwise")
    except ValueError as err:
        print(f"orm_pairwise skipped: {err}", flush=True)
    contrastive_path = recipes.contrastive_verifier(out, policy_path, args) if args.contrastive else None
    if contrastive_path is not None and (contrastive_path / "metrics.json").is_file():  # absent: trained elsewhere
        rms["contrastive"] = json.loads((contrastive_path / "metrics.json").read_text())
    timings["verifiers_s"] = time.time() - t
    policy = load_model(str(policy_path), load_codec(str(policy_path))).to(args.device)
    kwargs = {"tokenizer": str(policy_path)}
    orm = ClassifierScorer(str(out / "orm"), device=args.device, max_length=256)
    orm_pairwise = None
    if "orm_pairwise" in rms:
        orm_pairwise = ClassifierScorer(str(out / "orm_pairwise"), device=args.device, max_length=256)
    prm_fast = recipes.StepScorer(str(out / "prm"), args.device)
    prm_steps = LearnedPRM(str(out / "prm"), device=args.device, max_length=256)  # scores the policy's ids
    rule_steps = verifier_step_scorer(correct=1.0, unverifiable=0.5, wrong=0.0)
    contrastive_lm = contrastive_codec = contrastive_steps = None
    if contrastive_path is not None:
        contrastive_codec = load_codec(str(contrastive_path))
        contrastive_lm = load_model(str(contrastive_path), contrastive_codec).to(args.device).eval()
        contrastive_steps = LikelihoodStepScorer(contrastive_lm, contrastive_codec)

    table_co = None
    if args.rule_verifier and args.co_budget > 0:  # compute-optimal: a setting per difficulty third, fitted on train
        t = time.time()
        candidates = [
            SearchConfig(strategy=strat, n=n, width=min(args.width, n), aggregate="min")
            for n in args.search_n
            for strat in ("best_of_n", "beam")
        ]
        try:
            table_co = fit(
                policy, ENV, rule_steps, candidates, range(args.co_dev), args.co_budget, probe=2, seed=args.seed,
                env_kwargs=kwargs, how="min",
            )  # fmt: skip
        except ValueError as err:  # no candidate fits the budget
            print(f"compute-optimal skipped: {err}", flush=True)
        timings["compute_optimal_fit_s"] = time.time() - t
    per_seed = []
    difficulty = None
    for s in range(args.seeds):
        seed = 1000 + s
        t = time.time()
        samples, tokens = sample(policy, args.n, test_problems, seed, args.temperature, kwargs)
        timings[f"seed{s}_sampling_s"] = time.time() - t
        t = time.time()
        orm_scores = score_samples(replace(samples), orm).scores
        pairwise_scores = None if orm_pairwise is None else score_samples(replace(samples), orm_pairwise).scores
        prompts = [p for p in samples.prompts for _ in range(samples.n)]
        completions = [c for row in samples.completions for c in row]
        probs = prm_fast.step_probabilities(prompts, completions)
        prm = {
            how: np.array([aggregate(q, how) for q in probs]).reshape(samples.returns.shape)
            for how in ("min", "last", "product")
        }
        contrastive = None
        if contrastive_lm is not None:  # mean token log-prob (EOS included) under the contrastive verifier
            means, _ = completion_logprobs(contrastive_lm, contrastive_codec, prompts, completions)
            contrastive = means.reshape(samples.returns.shape)
        table = selector_curves(samples, orm_scores, prm, args.trials, seed, recipes, contrastive)
        if args.rule_verifier:  # best-of-N by the exact step checker (min over steps): the discriminating-PRM ceiling
            rule = np.array(
                [min(rule_steps([], [], split_steps(c)) or [1.0]) for c in completions], dtype=np.float64
            ).reshape(samples.returns.shape)
            table["rule_min"] = recipes.curve_for(samples, rule, args.trials, seed)
        if pairwise_scores is not None:
            table["orm_pairwise"] = recipes.curve_for(samples, pairwise_scores, args.trials, seed)
            table["orm_pairwise_weighted"] = recipes.curve_for(
                samples, 1 / (1 + np.exp(-pairwise_scores)), args.trials, seed, "weighted_majority"
            )
        timings[f"seed{s}_scoring_s"] = time.time() - t
        if difficulty is None:
            difficulty = samples.success.mean(1)  # the policy's own pass rate per problem
        bon_problem = {}  # per problem: is the PRM's top pick among the first n right (for the difficulty bins)
        for n in args.search_n:
            first = np.where(samples.answer_classes()[:, :n] >= 0, prm["min"][:, :n], -np.inf)
            bon_problem[n] = samples.success[np.arange(args.problems), first.argmax(1)].tolist()
            if args.rule_verifier:
                first = np.where(samples.answer_classes()[:, :n] >= 0, rule[:, :n], -np.inf)
                bon_problem[f"rule_{n}"] = samples.success[np.arange(args.problems), first.argmax(1)].tolist()
            if contrastive is not None:
                first = np.where(samples.answer_classes()[:, :n] >= 0, contrastive[:, :n], -np.inf)
                bon_problem[f"contrastive_{n}"] = samples.success[np.arange(args.problems), first.argmax(1)].tolist()
        searches = {}
        t = time.time()
        guides = []
        if "prm" in guides_wanted:
            guides.append(("", prm_steps, args.search_aggregate))
        if "rule" in guides_wanted:  # the exact arithmetic checker as the step verifier: a PRM that discriminates
            guides.append(("rule_", rule_steps, "min"))
        if "contrastive" in guides_wanted:  # the prefix's likelihood under the contrastive verifier ("last")
            guides.append(("contrastive_", contrastive_steps, "last"))
        scored_steps = {}
        for prefix, guide, how in guides:
            for strat, n in ((strat, n) for strat in strategies for n in args.search_n):
                extra = {"lookahead": args.lookahead} if strat == "lookahead" else {}
                cfg = SearchConfig(strategy=strat, n=n, width=args.width, aggregate=how, select="score", **extra)
                result = search(policy, ENV, cfg, guide, test_problems, seed=seed, env_kwargs=kwargs)
                searches[f"{prefix}{strat}@{n}"] = {
                    "accuracy": result.accuracy,
                    "tokens": result.mean_tokens,
                    "success": result.success,
                }
                for path, count in result.scored_steps.items():  # steps read from the policy's ids vs from text
                    key = f"{prefix or 'prm_'}{path}"
                    scored_steps[key] = scored_steps.get(key, 0) + count
        if table_co is not None:
            co, co_bins = compute_optimal_search(
                policy,
                ENV,
                rule_steps,
                table_co,
                test_problems,
                probe=2,
                seed=seed,
                env_kwargs=kwargs,
                how="min",
            )
            searches["rule_compute_optimal"] = {
                "accuracy": co.accuracy,
                "tokens": co.mean_tokens,
                "success": co.success,
            }
            searches["rule_compute_optimal"]["bins"] = {b: co_bins.count(b) for b in ("easy", "medium", "hard")}
        timings[f"seed{s}_search_s"] = time.time() - t
        per_seed.append(
            {
                "seed": seed,
                "sample_accuracy": float(samples.success.mean()),
                "mean_tokens_per_sample": float(tokens.mean()),
                "table": table,
                "search": searches,
                "bon_prm_success": bon_problem,
                "scored_steps": scored_steps,
                "verifier_auc": recipes.verifier_diagnostics(
                    {
                        "orm": orm_scores,
                        **({"orm_pairwise": pairwise_scores} if pairwise_scores is not None else {}),
                        "likelihood": samples.logprobs,
                        **{f"prm_{k}": v for k, v in prm.items()},
                        **({"contrastive": contrastive} if contrastive is not None else {}),
                    },
                    samples.success,
                ),
            }
        )
        print(json.dumps({"seed": seed, "timings_s": {k: round(v, 1) for k, v in timings.items()}}), flush=True)

    ns = per_seed[0]["table"]["n"]
    mean_tokens = float(np.mean([r["mean_tokens_per_sample"] for r in per_seed]))
    curves = {
        name: [ci95([r["table"][name][i] for r in per_seed]) for i in range(len(ns))]
        for name in per_seed[0]["table"]
        if name != "n"
    }
    search_summary: dict[str, list[dict]] = {}
    for key in per_seed[0]["search"]:
        strat, n = key.split("@") if "@" in key else (key, "0")
        acc = ci95([r["search"][key]["accuracy"] for r in per_seed])
        tok = float(np.mean([r["search"][key]["tokens"] for r in per_seed]))
        search_summary.setdefault(strat, []).append({"n": int(n), "accuracy": acc[0], "ci": acc[1], "tokens": tok})
    # difficulty bins (terciles of the policy's pass rate): beam search vs PRM best-of-N at the same n
    assert difficulty is not None
    order = np.argsort(difficulty, kind="stable")  # thirds by rank: ties (many problems never solved) still split
    bins = {}
    for name, part in zip(("hard", "medium", "easy"), np.array_split(order, 3), strict=True):
        bins[name] = np.isin(np.arange(args.problems), part)
    by_difficulty = {}
    for name, mask in bins.items():
        rows = {}
        for n in args.search_n:
            rows[str(n)] = {}
            for key in (f"{g}{strat}" for g in ("", "rule_", "contrastive_") for strat in strategies):
                if f"{key}@{n}" in per_seed[0]["search"]:
                    rows[str(n)][key] = ci95(
                        [float(np.mean(np.asarray(r["search"][f"{key}@{n}"]["success"])[mask])) for r in per_seed]
                    )
            for name_bon, key in (("prm_min", n), ("rule_min", f"rule_{n}"), ("contrastive", f"contrastive_{n}")):
                if key in per_seed[0]["bon_prm_success"]:
                    rows[str(n)][f"best_of_n_{name_bon}"] = ci95(
                        [float(np.mean(np.asarray(r["bon_prm_success"][key])[mask])) for r in per_seed]
                    )
        rate = difficulty[mask]
        by_difficulty[name] = {
            "problems": int(mask.sum()),
            "pass_rate_range": [float(rate.min()), float(rate.max())],
            **rows,
        }
    mean_table = {name: [m for m, _ in curve] for name, curve in curves.items()}
    summary = {
        "env": ENV,
        "split": "test",
        "problems": args.problems,
        "first_problem": args.first_problem,
        "N": args.n,
        "seeds": args.seeds,
        "n": ns,
        "mean_tokens_per_sample": mean_tokens,
        "bon_tokens": [n * mean_tokens for n in ns],
        "curves": curves,
        "search": search_summary,
        "by_difficulty": by_difficulty,
        "peaks": peaks({"n": ns, **mean_table}),
        "ordering_at_N": sorted(
            (
                (name, mean_table[name][-1])
                for name in (
                    "majority",
                    "orm",
                    "orm_pairwise",
                    "prm_min",
                    "prm_last",
                    "prm_product",
                    "rule_min",
                    "contrastive",
                )  # fmt: skip
                if name in mean_table
            ),
            key=lambda kv: -kv[1],
        ),
        "verifiers": {k: {"heldout": v["heldout"], "data": v["data"]} for k, v in rms.items()},
        "verifier_auc_on_test_samples": per_seed[0]["verifier_auc"],
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "settings": vars(args),
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
    }
    if table_co is not None:
        summary["compute_optimal"] = {
            "budget": args.co_budget,
            "dev_problems": args.co_dev,
            "choice": {b: name_of(cfg) for b, cfg in table_co.choice.items()},
            "dev_tokens": table_co.dev_tokens,
            "dev_accuracy": table_co.dev_accuracy,
        }
    (out / "test_time.json").write_text(json.dumps({**summary, "per_seed": per_seed}, indent=1))
    plot(summary, out / "test_time.png")
    print(json.dumps({k: summary[k] for k in ("ordering_at_N", "peaks", "search", "by_difficulty", "timings_s")}))


if __name__ == "__main__":
    main()
