"""``lm-envs evaluate TARGET``: score any run directory, checkpoint or model on an env, under its own settings.

Per seed, two passes over the same problems (the env protocol's split and count unless ``--episodes``):

1. **greedy**, one completion per problem: the protocol's metric (what the leaderboard ranks and
   ``lm-envs leaderboard verify`` reproduces), the per-episode records and their ``episodes_hash``;
2. **sampled**, ``--samples K`` completions per problem at ``--temperature`` (the evaluation's own
   settings, never the training ones): the unbiased pass@k of Chen et al. (2021) and maj@k
   (self-consistency: the most frequent final answer, Wang et al. 2022) for ``k = 1, 2, 4, ..., K``.
   maj@k for ``k < K`` is the mean over random ``k``-subsets of the ``K`` samples.

maj@k needs a *grader*: a reward whose outcome record names the extracted answer (``extracted``, as
``LMEnv/Math-v0``'s; or ``prediction``); equivalent answers vote together (math answers through
:func:`lm_envs.tasks.math.grading.grade`, others when equal after stripping). Every setting is checked
before any sampling: a target that does not load, an env without a grader when ``--maj`` asks for one,
more samples than ``--token-budget`` allows, a search whose beam width is above its ``N`` or whose worst case
exceeds the budget.

``--search beam|dvts|lookahead|best_of_n`` (with ``--prm DIR`` or ``--prm rule``) also runs a step-level
search (:mod:`agents.search.tree`) on the same problems and reports its accuracy and generated tokens.

The JSON written by ``-o`` holds, per seed, the leaderboard's seed block (``seed``, ``score``,
``num_episodes``, ``episodes_hash``, ``metrics``) and the records; with at least the protocol's
``min_seeds`` seeds it also holds a complete leaderboard ``submission`` (:func:`leaderboard.build_submission`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Outcome-record keys that hold a completion's final answer (what majority voting compares).
ANSWER_KEYS = ("extracted", "prediction")


@dataclass
class EvaluateSettings:
    """Settings of ``lm-envs evaluate`` (its own: the training run's sampling settings do not apply)."""

    env_id: str | None = None  # None: the run's own env
    episodes: int | None = None  # problems (None: the protocol's count)
    split: str | None = None  # None: the protocol's split
    seeds: tuple[int, ...] | None = None  # None: the run's seed (0 for a bare model)
    samples: int = 8  # completions per problem for pass@k / maj@k (1: greedy only)
    temperature: float = 1.0  # of the sampled pass
    maj: bool | None = None  # maj@k: None computes it when the env has a grader; True requires one
    token_budget: int | None = None  # most generated tokens per problem the sampled pass may spend
    batch_size: int = 128
    device: str = "cpu"
    # step-level search (agents.search.tree) on the same problems: strategy, rows, width, verifier
    search: str | None = None  # best_of_n | beam | dvts | lookahead (None: no search)
    search_n: int = 8
    width: int = 4
    lookahead: int = 0
    aggregate: str = "last"
    select: str = "score"
    prm: str | None = None  # a learned PRM directory, or "rule" (the math step verifier)


def ks(n: int) -> list[int]:
    """``1, 2, 4, ...`` up to ``n``, and ``n``.

    Example:
        >>> ks(12)
        [1, 2, 4, 8, 12]
    """
    return sorted({2**j for j in range(int(math.log2(n)) + 1)} | {n}) if n >= 1 else []


def answer_key(env: Any) -> str | None:
    """The outcome-record key of ``env``'s reward that holds the final answer, or ``None`` (no grader).

    Found by grading one empty completion of the first test problem: cheap, and before any sampling.
    """
    reward = env.episodes.reward
    split = "test" if env.task.size("test") else "train"
    problem = env.task.problem(split, 0)
    record = reward.outcome(problem, "").record
    return next((k for k in ANSWER_KEYS if k in record), None)


def equivalence(key: str) -> Callable[[str, str], bool]:
    """How two answers of ``key`` compare: math answers by the math grader, others equal after stripping."""
    if key == "extracted":
        from lm_envs.tasks.math.grading import grade

        return lambda a, b: a == b or grade(a, b).equivalent
    return lambda a, b: a.strip().lower() == b.strip().lower()


def vote_classes(answers: Sequence[str | None], same: Callable[[str, str], bool]) -> list[int]:
    """Class of each answer: the position of the first equivalent answer (which plays the gold side), ``-1`` if none.

    Example:
        >>> vote_classes(["4", None, " 4", "5"], lambda a, b: a.strip() == b.strip())
        [0, -1, 0, 3]
    """
    reps: list[int] = []
    out: list[int] = []
    for j, a in enumerate(answers):
        if a is None:
            out.append(-1)
            continue
        cls = next((r for r in reps if same(answers[r], a)), None)  # type: ignore[arg-type]
        if cls is None:
            reps.append(j)
            cls = j
        out.append(cls)
    return out


def majority_pick(classes: Sequence[int], weights: Sequence[float] | None = None) -> int:
    """Position (in ``classes``) of the first member of the class with the most (weighted) votes.

    Classes are any ids (``-1``: no answer, no vote); ties go to the class met first; ``0`` if nobody answered.

    Example:
        >>> majority_pick([7, -1, 2, 2, 7, 2])
        2
    """
    votes: dict[int, float] = {}
    first: dict[int, int] = {}
    for j, c in enumerate(classes):
        if c >= 0:
            votes[c] = votes.get(c, 0.0) + (1.0 if weights is None else float(weights[j]))
            first.setdefault(c, j)
    if not votes:
        return 0
    return first[max(votes, key=lambda c: (votes[c], -first[c]))]


def maj_at_k(classes: np.ndarray, success: np.ndarray, k: int, trials: int = 64, seed: int = 0) -> float:
    """maj@k over problems, from ``(P, N)`` answer classes and correctness.

    The mean over every ``k``-subset of the ``N`` samples when there are at most ``trials`` of them (so maj@1 is
    exactly pass@1 and maj@N the vote of all), else over ``trials`` random ones.

    Example:
        >>> maj_at_k(np.array([[0, 0, 2, -1]]), np.array([[True, True, False, False]]), 1)
        0.5
    """
    from itertools import combinations

    P, N = classes.shape
    if not 1 <= k <= N:
        raise ValueError(f"maj@k needs 1 <= k <= N={N}, got {k}.")
    rng = np.random.default_rng(seed)
    exact = math.comb(N, k) <= trials
    subsets = [np.array(c) for c in combinations(range(N), k)] if exact else None
    total = 0.0
    for p in range(P):
        draws = subsets if subsets is not None else [np.sort(rng.choice(N, k, replace=False)) for _ in range(trials)]
        hits = sum(bool(success[p, cols[majority_pick(classes[p, cols].tolist())]]) for cols in draws)
        total += hits / len(draws)
    return total / P


def check_settings(settings: EvaluateSettings) -> None:
    """The checks that need neither the model nor the env.

    Raises:
        ValueError: Naming the setting and the fix.
    """
    if settings.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {settings.samples}.")
    if settings.samples > 1 and settings.temperature <= 0:
        raise ValueError("--samples > 1 at --temperature 0 draws identical greedy completions; set --temperature > 0.")
    if settings.episodes is not None and settings.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {settings.episodes}.")


def search_config(settings: EvaluateSettings) -> Any:
    """The :class:`~agents.search.tree.SearchConfig` of ``--search``."""
    from agents.search.tree import SearchConfig

    return SearchConfig(
        strategy=str(settings.search),
        n=settings.search_n,
        width=settings.width,
        lookahead=settings.lookahead,
        aggregate=settings.aggregate,
        select=settings.select,
        temperature=settings.temperature,
        token_budget=settings.token_budget,
    )


def check(settings: EvaluateSettings, env_id: str, env: Any) -> str | None:
    """Every check that needs no sampling; returns the answer key for maj@k (``None``: no maj@k).

    Raises:
        ValueError: Naming the setting and the fix.
    """
    check_settings(settings)
    budget = env.episodes.config.max_new_tokens
    if settings.token_budget is not None and settings.samples * budget > settings.token_budget:
        most = settings.token_budget // budget
        raise ValueError(
            f"--samples {settings.samples} completions of up to {budget} tokens ({env_id}'s max_new_tokens) may "
            f"generate {settings.samples * budget} tokens per problem, over --token-budget {settings.token_budget}; "
            f"use --samples {most} or less, or raise --token-budget."
        )
    if settings.search is not None:
        from agents.search.tree import check_config

        check_config(search_config(settings), budget)
        if settings.prm is None and not (settings.search == "best_of_n" and settings.select == "majority"):
            raise ValueError(
                f"--search {settings.search} needs a step verifier: --prm DIR (a learned PRM) or --prm rule "
                "(the math step verifier); only --search best_of_n --select majority needs none."
            )
        if settings.prm not in (None, "rule") and not Path(settings.prm, "config.json").is_file():
            raise ValueError(f"--prm {settings.prm} is not a model directory (no config.json); give a trained PRM.")
    key = answer_key(env) if settings.samples > 1 or settings.search else None
    if settings.maj and key is None:
        raise ValueError(
            f"{env_id}'s reward records no final answer ({' or '.join(ANSWER_KEYS)} in its outcome record), so there "
            "is nothing to vote on for maj@k; drop --maj (pass@k needs no grader)."
        )
    return None if settings.maj is False else key


def evaluate_target(target: str, settings: EvaluateSettings) -> dict[str, Any]:
    """Load ``target``, check everything, then evaluate it on every seed; the document ``-o`` writes."""
    import gymnasium as gym

    import lm_envs
    from agents.evaluate import EvalConfig, evaluate, pass_at_k
    from agents.targets import load_target

    started = time.time()
    check_settings(settings)  # before loading anything
    loaded = load_target(target, device=settings.device)
    env_id = settings.env_id or loaded.env_id
    if env_id is None:
        raise ValueError(f"{target} is a bare model: name the env to evaluate it on with --env ID.")
    if env_id == loaded.env_id:
        env_kwargs = dict(loaded.env_kwargs)  # the run's own env settings
    else:  # another env, tokenized by the target's own tokenizer
        env_kwargs = {"tokenizer": str(loaded.tokenizer_dir)} if loaded.tokenizer_dir else {}
    env_kwargs = {k: v for k, v in env_kwargs.items() if k not in ("curriculum", "split")}
    from agents.policy.models import logits_width

    env_kwargs.setdefault("vocab_size", logits_width(loaded.model))
    try:
        probe = gym.make(env_id, **env_kwargs).unwrapped
    except gym.error.Error as err:
        raise ValueError(f"cannot make {env_id}: {err}") from err
    if probe.codec.vocab_size != loaded.codec.vocab_size or probe.codec.eos_token_id != loaded.codec.eos_token_id:
        raise ValueError(
            f"{env_id} tokenizes with {probe.codec.name} ({probe.codec.vocab_size} tokens) but {target} was trained "
            f"with {loaded.codec.name} ({loaded.codec.vocab_size}); evaluate it on an env made with its tokenizer."
        )
    key = check(settings, env_id, probe)
    try:
        protocol = lm_envs.get_protocol(env_id)
    except KeyError:
        protocol = lm_envs.EvalProtocol()
    split = settings.split or protocol.split
    seeds = list(settings.seeds) if settings.seeds else [loaded.seed if loaded.seed is not None else 0]
    same = equivalence(key) if key else None
    blocks: list[dict[str, Any]] = []
    per_seed: list[dict[str, Any]] = []
    for seed in seeds:
        greedy = evaluate(
            loaded.model,
            env_id,
            EvalConfig(num_episodes=settings.episodes, split=split, batch_size=settings.batch_size),
            seed=seed,
            env_kwargs=env_kwargs,
        )
        records = greedy.pop("records")
        metrics = {k: v for k, v in greedy.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        sampled_records: list[dict[str, Any]] = []
        if settings.samples > 1:
            sampled = evaluate(
                loaded.model,
                env_id,
                EvalConfig(
                    num_episodes=settings.episodes,
                    split=split,
                    samples=settings.samples,
                    temperature=settings.temperature,
                    batch_size=settings.batch_size,
                ),
                seed=seed,
                env_kwargs=env_kwargs,
            )
            sampled_records = sampled["records"]
            by_problem: dict[int, list[dict[str, Any]]] = {}
            for r in sampled_records:
                by_problem.setdefault(r["index"], []).append(r)
            rows = [sorted(rs, key=lambda r: r["sample"]) for _, rs in sorted(by_problem.items())]
            success = np.array([[r["success"] for r in rs] for rs in rows], dtype=bool)
            metrics["sampled_accuracy"] = float(success.mean())
            metrics["sampled_mean_tokens"] = float(np.mean([r["num_tokens"] for r in sampled_records]))
            for k in ks(settings.samples):
                metrics[f"pass@{k}"] = float(np.mean([pass_at_k(settings.samples, int(c), k) for c in success.sum(1)]))
            if same is not None:
                classes = np.array([vote_classes([r["outcome"].get(key) for r in rs], same) for rs in rows])
                for k in ks(settings.samples):
                    metrics[f"maj@{k}"] = maj_at_k(classes, success, k, seed=seed)
        if settings.search is not None:
            from agents.search.tree import search, verifier_step_scorer

            scorer = None
            if settings.prm == "rule":
                scorer = verifier_step_scorer()
            elif settings.prm is not None:
                from lm_envs.tasks.math.prm import LearnedPRM

                scorer = LearnedPRM(settings.prm, device=settings.device)  # reads the policy's ids when it can
            n_problems = metrics["num_problems"]
            found = search(
                loaded.model,
                env_id,
                search_config(settings),
                scorer,
                range(int(n_problems)),
                split=split,
                seed=seed,
                env_kwargs=env_kwargs,
            )
            name = f"{settings.search}@{settings.search_n}"
            metrics[f"search/{name}"] = found.accuracy
            metrics[f"search/{name}/tokens"] = found.mean_tokens
        score_name = protocol.metric if protocol.metric in metrics else "accuracy"
        blocks.append(
            {
                "seed": int(seed),
                "score": float(metrics[score_name]),
                "num_episodes": int(metrics["num_episodes"]),
                "episodes_hash": greedy["episodes_hash"],
                "metrics": {k: float(v) for k, v in metrics.items() if k != score_name},
            }
        )
        per_seed.append({"seed": int(seed), "records": records, "sampled_records": sampled_records})
    doc: dict[str, Any] = {
        "env_id": env_id,
        "target": str(loaded.path),
        "kind": loaded.kind,
        "model": loaded.name,
        "tokenizer": loaded.codec.name,
        "protocol": {"split": split, "metric": protocol.metric, "num_episodes": settings.episodes},
        "settings": {k: v for k, v in asdict(settings).items() if k not in ("device", "batch_size")},
        "seeds": blocks,
        "mean": {
            name: float(np.mean([b["metrics"].get(name, b["score"]) for b in blocks]))
            for name in ["score", *blocks[0]["metrics"]]
            if name == "score" or all(name in b["metrics"] for b in blocks)
        },
        "records": per_seed,
        "wall_time_s": round(time.time() - started, 2),
    }
    doc["mean"]["score"] = float(np.mean([b["score"] for b in blocks]))
    if len(blocks) >= protocol.min_seeds and settings.episodes is None and split == protocol.split:
        doc["submission"] = _submission(loaded, env_id, blocks, doc["wall_time_s"])
    return doc


def _submission(loaded: Any, env_id: str, blocks: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    from leaderboard import build_submission

    agent, agent_config = "evaluate", {}
    if loaded.run_dir is not None:
        from agents.targets import run_config

        cfg = run_config(loaded.run_dir)
        agent_config = cfg.get("agent") or {}
        agent = str(agent_config.get("name", "evaluate"))
    tok = Path(loaded.tokenizer_dir or "") / "tokenizer.json"
    tok_hash = hashlib.sha256(tok.read_bytes()).hexdigest() if tok.is_file() else "unknown"
    return build_submission(
        env_id,
        agent=agent,
        agent_config=agent_config,
        model=loaded.name,
        tokenizer_hash=tok_hash,
        seeds=[{k: v for k, v in b.items()} for b in blocks],
        wall_time_s=wall,
        extra={"evaluated": str(loaded.path)},
    )


def summary(doc: dict[str, Any]) -> str:
    """One line per metric family, for the terminal."""
    mean = doc["mean"]
    parts = [f"{doc['env_id']} {doc['protocol']['metric']} {mean['score']:.4f} (greedy, {len(doc['seeds'])} seed(s))"]
    for family in ("pass@", "maj@", "search/"):
        items = [(k, v) for k, v in mean.items() if k.startswith(family)]
        if items:
            parts.append(" ".join(f"{k} {v:.3f}" for k, v in items))
    return "; ".join(parts)


def cli(argv: list[str]) -> int:
    """``lm-envs evaluate TARGET ...``."""
    parser = argparse.ArgumentParser(
        prog="lm-envs evaluate",
        description="Evaluate a run directory, checkpoint or model: the protocol's metric (greedy), pass@k and "
        "maj@k (sampled), per-episode records, in the leaderboard's result format.",
    )
    parser.add_argument("target", help="run directory, checkpoint (<run>/checkpoints/step-N) or model directory")
    parser.add_argument("--env", default=None, help="env id (default: the run's own)")
    parser.add_argument("--episodes", type=int, default=None, help="problems (default: the protocol's count)")
    parser.add_argument("--split", default=None, help="split (default: the protocol's)")
    parser.add_argument("--seed", type=int, action="append", default=None, help="seed (repeatable; default: the run's)")
    parser.add_argument("--samples", type=int, default=8, help="completions per problem for pass@k, maj@k (1: off)")
    parser.add_argument("--temperature", type=float, default=1.0, help="of the sampled completions")
    maj = parser.add_mutually_exclusive_group()
    maj.add_argument("--maj", dest="maj", action="store_true", default=None, help="require maj@k (a graded env)")
    maj.add_argument("--no-maj", dest="maj", action="store_false", help="skip maj@k")
    parser.add_argument("--token-budget", type=int, default=None, help="most generated tokens per problem")
    search = parser.add_argument_group("step-level search (agents.search.tree) on the same problems")
    search.add_argument("--search", choices=("best_of_n", "beam", "dvts", "lookahead"), default=None)
    search.add_argument("--search-n", type=int, default=8, help="rows per problem (N)")
    search.add_argument("--width", type=int, default=4, help="expansions per kept row (beam width M)")
    search.add_argument("--lookahead", type=int, default=0, help="greedy steps that rate a candidate (lookahead)")
    search.add_argument("--aggregate", choices=("last", "min", "product"), default="last")
    search.add_argument("--select", choices=("score", "weighted", "majority"), default="score")
    search.add_argument("--prm", default=None, help="a learned PRM directory, or 'rule' (the math step verifier)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("-o", "--output", default=None, help="write the JSON result here")
    args = parser.parse_args(argv)
    settings = EvaluateSettings(
        env_id=args.env,
        episodes=args.episodes,
        split=args.split,
        seeds=tuple(args.seed) if args.seed else None,
        samples=args.samples,
        temperature=args.temperature,
        maj=args.maj,
        token_budget=args.token_budget,
        batch_size=args.batch_size,
        device=args.device,
        search=args.search,
        search_n=args.search_n,
        width=args.width,
        lookahead=args.lookahead,
        aggregate=args.aggregate,
        select=args.select,
        prm=args.prm,
    )
    if args.output is not None and Path(args.output).is_dir():
        raise ValueError(f"-o {args.output} is a directory; give a file name, e.g. -o {args.output}/eval.json.")
    doc = evaluate_target(args.target, settings)
    if args.output is not None:
        out = Path(args.output)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(out)
    print(summary(doc) + (f"; wrote {args.output}" if args.output else ""))
    return 0
