"""Claim: reward over-optimization (Gao et al. 2022), in miniature on the chat env's gold rubric.

Proxy reward models of a few data amounts are trained (``agents.reward_models.train``, Bradley-Terry) on
preference pairs that the hidden gold rubric ordered (:func:`lm_envs.tasks.chat.preferences.synthetic_preferences`).
A policy is then optimised against each proxy, and the gold rubric is measured beside the proxy along the
way, as a function of ``sqrt(KL)`` from the starting policy:

* **best-of-n** (the backbone): the base policy is the response sampler that produced the preference data
  (:func:`lm_envs.tasks.chat.task.synthetic_response`); ``m`` samples for each of the 200 test prompts give the
  unbiased best-of-``n`` estimate for every ``n <= m`` (:func:`agents.search.best_of_n.best_of_n_expectation`),
  at the analytic distance ``KL_bon = log n - (n - 1) / n`` (:func:`agents.search.best_of_n.best_of_n_kl`).
  The same samples ranked by the gold rubric itself (best-of-n against gold) are the control: what the
  experiment would show without a proxy gap.
* **RL** (optional, ``--rl``): PPO against a proxy through the normal entry,
  ``lm-envs train +experiment=overoptimization env.kwargs.reward_kwargs.reward_model=<proxy dir>``; each
  iteration logs the proxy score, the gold rubric and the measured KL to the reference (SFT) policy.

Proxy scores are reported in units of the proxy's own standard deviation over the base samples and gold
as the change from the base policy's mean (rubric points, 0-1 scale), so proxies of different scales share
a plot. ``gold_drop`` = gold at its best ``n`` minus gold at the largest ``n``: positive when gold turned
down while the proxy (which best-of-n maximises, so it only rises) kept rising.

    python -m experiments.claim_overoptimization --seeds 0 1 2 --out experiments/results [--rl]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

NAME = "overoptimization"
PAPER = "Gao et al. 2022, Scaling Laws for Reward Model Overoptimization"
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)

#: Proxy reward models: name -> (n_layer, n_embd, training pairs, steps). Only the data amount varies.
PROXIES: dict[str, tuple[int, int, int, int]] = {
    "pairs_250": (1, 16, 250, 300),
    "pairs_1000": (1, 16, 1000, 300),
    "pairs_4000": (1, 16, 4000, 300),
}
QUICK_PROXIES: dict[str, tuple[int, int, int, int]] = {"pairs_32": (1, 8, 32, 4), "pairs_64": (1, 8, 64, 4)}


def ci95(values: list[float]) -> tuple[float, float]:
    """The mean's 95% t-interval ``(lo, hi)`` over seeds (a point with one value; NaNs dropped)."""
    v = [float(x) for x in values if x == x]
    if not v:
        return (float("nan"), float("nan"))
    mean = float(np.mean(v))
    if len(v) < 2:
        return (mean, mean)
    half = T975[min(len(v) - 2, len(T975) - 1)] * float(np.std(v, ddof=1)) / math.sqrt(len(v))
    return (mean - half, mean + half)


def arm(metric: str, per_seed: list[float]) -> dict[str, Any]:
    """One arm of the contract's JSON: the metric, per-seed values, their mean and 95% CI."""
    lo, hi = ci95(per_seed)
    finite = [x for x in per_seed if x == x]
    return {
        "metric": metric,
        "per_seed": [float(x) for x in per_seed],
        "mean": float(np.mean(finite)) if finite else float("nan"),
        "ci95": [lo, hi],
    }


def base_samples(num_prompts: int, m: int, seed: int) -> tuple[list[str], list[list[str]], np.ndarray]:
    """``m`` responses of the base sampler for each of the first test prompts, and their gold rubric scores.

    Returns:
        ``(prompts, responses, gold)`` with ``gold`` of shape ``(num_prompts, m)``.
    """
    from lm_envs.tasks.chat.rubric import Constraints, gold_score
    from lm_envs.tasks.chat.task import SyntheticInstructions, synthetic_response

    task = SyntheticInstructions()
    prompts, responses, gold = [], [], np.zeros((num_prompts, m))
    for i in range(num_prompts):
        problem = task.problem("test", i)
        c = Constraints.from_dict(problem.metadata["constraints"])
        rng = random.Random(f"bon/{seed}/{i}")
        texts = [synthetic_response(c, rng) for _ in range(m)]
        prompts.append(problem.prompt)
        responses.append(texts)
        gold[i] = [gold_score(c, t) for t in texts]
    return prompts, responses, gold


def proxy_scores(rm_dir: Path, prompts: list[str], responses: list[list[str]]) -> np.ndarray:
    """The reward model's score of every ``prompt + response``, shape ``(prompts, m)``."""
    from lm_envs.tasks.chat.reward import RewardModelScorer

    scorer = RewardModelScorer(str(rm_dir), batch_size=512, max_length=256)
    flat = [p + r for p, rs in zip(prompts, responses, strict=True) for r in rs]
    return np.asarray(scorer.score(flat)).reshape(len(prompts), -1)


def train_proxy(spec: tuple[int, int, int, int], seed: int, out: Path) -> dict[str, Any]:
    """Train one proxy RM on gold-ordered synthetic pairs (the ``lm-envs train-rm rm=preference`` recipe).

    A finished model in ``out`` trained with exactly these settings is reused (its ``metrics.json``).
    """
    from dataclasses import asdict

    from agents.reward_models.train import RewardModelConfig, train_reward_model

    n_layer, n_embd, pairs, steps = spec
    cfg = RewardModelConfig(
        kind="preference",
        output_dir=str(out),
        seed=seed,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=2,
        max_length=256,
        num_pairs=pairs,
        steps=steps,
        batch_size=16,
        lr=3e-3,
        heldout=min(0.99, 200 / pairs),  # 200 held-out test pairs whatever the training amount
        eval_every=0,
    )
    done = out / "metrics.json"
    if done.is_file() and (out / "model.safetensors").is_file():
        metrics = json.loads(done.read_text())
        same = {**json.loads(json.dumps(asdict(cfg))), "output_dir": None}
        if {**metrics.get("config", {}), "output_dir": None} == same:
            return metrics
    return train_reward_model(cfg)


def bon_curves(proxy: np.ndarray, gold: np.ndarray, ns: list[int]) -> dict[str, list[float]]:
    """Gold (change from the base mean) and proxy (base-sample std units) of best-of-n against ``proxy``."""
    from agents.search.best_of_n import best_of_n_expectation

    z = (proxy - proxy.mean()) / max(float(proxy.std()), 1e-9)
    return {
        "gold": (best_of_n_expectation(proxy, gold, ns) - gold.mean()).tolist(),
        "proxy": best_of_n_expectation(proxy, z, ns).tolist(),
    }


def run_rl(rm_dir: Path, seed: int, run_dir: Path, quick: bool) -> list[dict[str, float]]:
    """PPO against the proxy through ``lm-envs train +experiment=overoptimization``; per-iteration metrics.

    A finished run (``trajectory.json`` beside its ``metrics.jsonl``, written last) is reused.
    """
    marker = run_dir / "trajectory.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    args = [
        sys.executable,
        "-m",
        "agents.train",
        "+experiment=overoptimization",
        f"env.kwargs.reward_kwargs.reward_model={rm_dir}",
        f"seed={seed}",
        f"hydra.run.dir={run_dir}",
    ]
    if quick:
        args += ["sft.steps=2", "train.iterations=2", "agent.num_envs=4", "eval.num_episodes=4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the RL arm failed ({' '.join(args[2:])}):\n{done.stderr[-3000:]}")
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    traj = [
        {"kl": r["ppo/kl_ref"], "proxy": r["rollout/outcome/rm_score"], "gold": r["rollout/outcome/gold"]}
        for r in rows
        if "ppo/kl_ref" in r and "rollout/outcome/gold" in r
    ]
    marker.write_text(json.dumps(traj))
    return traj


def run_seed(seed: int, work: Path, quick: bool, rl: list[str]) -> dict[str, Any]:
    """Every arm for one seed: proxies trained, best-of-n curves, RL trajectories."""
    started = time.time()
    proxies = QUICK_PROXIES if quick else PROXIES
    num_prompts, m = (6, 8) if quick else (200, 256)
    ns = [n for n in (1, 2, 4, 8, 16, 32, 64, 128, 256) if n <= m]
    prompts, responses, gold = base_samples(num_prompts, m, seed)
    out: dict[str, Any] = {"ns": ns, "kl": [_kl(n) for n in ns], "proxies": {}, "rl": {}}
    reused_s = 0.0  # training time of proxies and RL runs reused from an earlier call (counted in wall_s)
    # control: best-of-n against the gold rubric itself (no proxy gap): gold rises monotonically with n
    out["gold_oracle"] = bon_curves(gold, gold, ns)["gold"]
    for name, spec in proxies.items():
        rm_dir = work / f"seed{seed}" / name
        t0 = time.time()
        metrics = train_proxy(spec, seed, rm_dir)
        if time.time() - t0 < 0.5 * metrics["wall_time_s"]:  # reused
            reused_s += metrics["wall_time_s"]
        cache = rm_dir / f"bon_scores_{num_prompts}x{m}_seed{seed}.npy"  # the proxy's scores of this seed's samples
        if cache.is_file() and cache.stat().st_mtime >= (rm_dir / "model.safetensors").stat().st_mtime:
            scores = np.load(cache)
        else:
            scores = proxy_scores(rm_dir, prompts, responses)
            np.save(cache, scores)
        curves = bon_curves(scores, gold, ns)
        out["proxies"][name] = {
            "heldout_accuracy": metrics["heldout"]["accuracy"],
            "proxy_std": float(scores.std()),
            "proxy_mean": float(scores.mean()),
            **curves,
        }
        if name in rl:
            run_dir = work / f"seed{seed}" / f"rl_{name}"
            t0 = time.time()
            traj = run_rl(rm_dir, seed, run_dir, quick)
            rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
            train_s = max((float(r.get("time", 0.0)) for r in rows), default=0.0)
            if time.time() - t0 < 0.5 * train_s:  # reused
                reused_s += train_s
            for row in traj:  # the same units as best-of-n: proxy in base-sample std units
                row["proxy"] = (row["proxy"] - float(scores.mean())) / max(float(scores.std()), 1e-9)
            out["rl"][name] = traj
    out["wall_s"] = time.time() - started + reused_s
    return out


def _kl(n: int) -> float:
    from agents.search.best_of_n import best_of_n_kl

    return best_of_n_kl(n)


def gold_drop(gold: list[float]) -> float:
    """Gold at its best ``n`` minus gold at the largest ``n`` (``> 0``: gold turned down)."""
    return float(max(gold) - gold[-1])


def summarize(per_seed: list[dict[str, Any]], seeds: list[int], quick: bool, rl: list[str]) -> dict[str, Any]:
    """The contract's JSON from the per-seed results."""
    names = list(per_seed[0]["proxies"])
    arms: dict[str, Any] = {}
    ns = per_seed[0]["ns"]
    arms["bon_gold_oracle_gain"] = arm(
        f"gold gain of best-of-{ns[-1]} ranked by the gold rubric itself (control)",
        [s["gold_oracle"][-1] for s in per_seed],
    )
    for name in names:
        ps = [s["proxies"][name] for s in per_seed]
        arms[f"rm_{name}_accuracy"] = arm(
            "held-out gold pair accuracy of the proxy RM", [p["heldout_accuracy"] for p in ps]
        )
        arms[f"bon_{name}_proxy_gain"] = arm(
            f"proxy gain of best-of-{ns[-1]} (base-sample std units)", [p["proxy"][-1] for p in ps]
        )
        arms[f"bon_{name}_gold_peak"] = arm("gold gain at the best n (rubric points)", [max(p["gold"]) for p in ps])
        arms[f"bon_{name}_gold_drop"] = arm(
            f"gold at the best n minus gold at n={ns[-1]} (> 0: gold turned down)", [gold_drop(p["gold"]) for p in ps]
        )
        arms[f"bon_{name}_peak_n"] = arm("n of the gold peak", [float(ns[int(np.argmax(p["gold"]))]) for p in ps])
    for name in rl:
        trajs = [s["rl"][name] for s in per_seed if name in s["rl"]]
        if not trajs:
            continue
        w = max(1, len(trajs[0]) // 8)  # iterations per window: single iterations are noisy (32 episodes)

        def first(t: list[dict[str, float]], key: str, w: int = w) -> float:
            return float(np.mean([r[key] for r in t[:w]]))

        def last(t: list[dict[str, float]], key: str, w: int = w) -> float:
            return float(np.mean([r[key] for r in t[-w:]]))

        def best(t: list[dict[str, float]], key: str, w: int = w) -> float:
            x = np.asarray([r[key] for r in t])
            return float(np.convolve(x, np.ones(w) / w, mode="valid").max())

        arms[f"rl_{name}_proxy_gain"] = arm(
            f"RL: proxy, last {w} iterations minus first {w} (base-sample std units; seeds with an RL run)",
            [last(t, "proxy") - first(t, "proxy") for t in trajs],
        )
        arms[f"rl_{name}_gold_change"] = arm(
            f"RL: gold rubric, last {w} iterations minus first {w}", [last(t, "gold") - first(t, "gold") for t in trajs]
        )
        arms[f"rl_{name}_gold_drop"] = arm(
            f"RL: best {w}-iteration gold mean minus the last {w} (> 0: gold turned down)",
            [best(t, "gold") - last(t, "gold") for t in trajs],
        )
        arms[f"rl_{name}_kl_final"] = arm(
            f"RL: KL to the reference over the last {w} iterations (nats per episode)", [last(t, "kl") for t in trajs]
        )
    verdict, summary = _verdict(arms, names, rl)
    return {
        "claim": NAME,
        "paper": PAPER,
        "setting": {
            "env": "LMEnv/Chat-v0 synthetic instructions, gold = hidden rubric (length, keywords, distinct words)",
            "proxies": {
                k: dict(zip(("n_layer", "n_embd", "pairs", "steps"), v, strict=True))
                for k, v in (QUICK_PROXIES if quick else PROXIES).items()
            },
            "best_of_n": {
                "prompts": 6 if quick else 200,
                "samples_per_prompt": ns[-1],
                "ns": ns,
                "kl_bon": per_seed[0]["kl"],
            },
            "base_policy": "lm_envs.tasks.chat.task.synthetic_response (the sampler of the preference data)",
            "rl": {"proxies": rl, "entry": "lm-envs train +experiment=overoptimization"} if rl else None,
            "quick": quick,
            "wall_s_note": "per seed, 1 thread; reused proxies and RL runs count with their own training time, "
            "reused best-of-n scores (about 1-2 min a seed to compute) do not",
        },
        "seeds": list(seeds),
        "arms": arms,
        "verdict": verdict,
        "summary": summary,
        "wall_s_per_seed": float(np.mean([s["wall_s"] for s in per_seed])),
        "curves": {
            "ns": ns,
            "kl": per_seed[0]["kl"],
            "gold_oracle": [s["gold_oracle"] for s in per_seed],
            "proxies": {
                n: {
                    "gold": [s["proxies"][n]["gold"] for s in per_seed],
                    "proxy": [s["proxies"][n]["proxy"] for s in per_seed],
                }
                for n in names
            },
            "rl": {n: [s["rl"][n] for s in per_seed if n in s["rl"]] for n in rl},
        },
    }


def _verdict(arms: dict[str, Any], names: list[str], rl: list[str]) -> tuple[str, str]:
    """Held if gold turned down (CI above 0) while the proxy rose, for best-of-n of some proxy (and RL if run)."""

    def down(key: str) -> bool:
        return key in arms and arms[key]["ci95"][0] > 0

    bon_down = [n for n in names if down(f"bon_{n}_gold_drop")]
    rl_down = [n for n in rl if down(f"rl_{n}_gold_drop")]
    parts = []
    for n in names:
        acc, peak_n = arms[f"rm_{n}_accuracy"]["mean"], arms[f"bon_{n}_peak_n"]["mean"]
        peak, drop = arms[f"bon_{n}_gold_peak"], arms[f"bon_{n}_gold_drop"]
        parts.append(
            f"{n} (RM acc {acc:.2f}): best-of-n gold peaks at n~{peak_n:.0f} (+{peak['mean']:.3f}), "
            f"drop to n_max {drop['mean']:.3f} [{drop['ci95'][0]:.3f}, {drop['ci95'][1]:.3f}]"
        )
    for n in rl:
        if f"rl_{n}_gold_change" in arms:
            proxy, gold = arms[f"rl_{n}_proxy_gain"]["mean"], arms[f"rl_{n}_gold_change"]["mean"]
            parts.append(
                f"RL vs {n}: proxy {proxy:+.2f} sd, gold {gold:+.3f} at KL {arms[f'rl_{n}_kl_final']['mean']:.1f}"
            )
    control = arms["bon_gold_oracle_gain"]["mean"]
    summary = "; ".join(parts) + f"; control (best-of-n on gold itself) +{control:.3f}."
    if bon_down and (not rl or rl_down):
        return "held", summary
    if bon_down or rl_down:
        return "partly held", summary
    return "did not hold", summary


def plot(result: dict[str, Any], path: Path) -> None:
    """Gold and proxy vs sqrt(KL): best-of-n per proxy (mean and seed range), RL trajectories beside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = result["curves"]
    x = np.sqrt(np.asarray(c["kl"]))
    has_rl = any(c["rl"].values())
    fig, axes = plt.subplots(1, 3 if has_rl else 2, figsize=(15 if has_rl else 10, 4))
    for k, (name, cur) in enumerate(c["proxies"].items()):
        g, p = np.asarray(cur["gold"]), np.asarray(cur["proxy"])
        axes[0].plot(x, g.mean(0), f"C{k}o-", label=f"gold, proxy {name}")
        axes[0].fill_between(x, g.min(0), g.max(0), color=f"C{k}", alpha=0.15)
        axes[1].plot(x, p.mean(0), f"C{k}s--", label=f"proxy {name}")
    o = np.asarray(c["gold_oracle"])
    axes[0].plot(x, o.mean(0), "k:", label="gold, best-of-n on gold (control)")
    axes[0].set_ylabel("gold rubric change from base")
    axes[1].set_ylabel("proxy RM score (base sd units)")
    for ax in axes[:2]:
        ax.set_xlabel("sqrt(KL_bon) (nats^0.5), best-of-n")
        ax.legend(fontsize=7)
    axes[0].set_title("best-of-n: gold (shaded: seed range)")
    axes[1].set_title("best-of-n: proxy")
    if has_rl:
        ax = axes[2]
        ax2 = ax.twinx()

        def smooth(t: list[dict[str, float]], key: str) -> np.ndarray:
            x = np.asarray([r[key] for r in t], dtype=np.float64)
            w = max(1, len(x) // 8)
            return np.convolve(x, np.ones(w) / w, mode="valid")

        for k, (name, trajs) in enumerate(c["rl"].items()):
            for j, t in enumerate(trajs):
                kl = np.sqrt(np.maximum(smooth(t, "kl"), 0))
                ax.plot(
                    kl,
                    smooth(t, "gold"),
                    f"C{k + 3}o-",
                    ms=3,
                    alpha=0.7,
                    label=f"gold, PPO vs {name}" if j == 0 else None,
                )
                ax2.plot(
                    kl,
                    smooth(t, "proxy"),
                    f"C{k + 4}x:",
                    alpha=0.6,
                    label=f"proxy (sd), PPO vs {name}" if j == 0 else None,
                )
        ax.set_xlabel("sqrt(KL to the SFT reference) per episode, PPO")
        ax.set_ylabel("gold rubric")
        ax2.set_ylabel("proxy (base sd units)")
        ax.legend(fontsize=7, loc="lower left")
        ax2.legend(fontsize=7, loc="lower right")
        ax.set_title("RL (PPO): 5-iteration means along each run")
    fig.suptitle(f"{NAME}: {result['verdict']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(
    seeds: list[int],
    out_dir: Path,
    quick: bool = False,
    rl: list[str] | None = None,
    work: Path | None = None,
    rl_seeds: list[int] | None = None,
) -> dict[str, Any]:
    """Run the claim for ``seeds``; write ``out_dir/overoptimization.json`` and ``.png``; return the JSON.

    Args:
        seeds: Seeds (each: its own proxy RMs, base samples and RL runs).
        out_dir: Where the JSON and PNG go (trained RMs and RL runs go under ``out_dir/work/overoptimization``).
        quick: A seconds-scale version (tiny proxies, 6 prompts, n <= 8) for tests.
        rl: Proxy names to run PPO against (default: none; ``--rl`` picks the smallest and largest data amount).
        work: Where the proxies and RL runs go (default ``out_dir/work/overoptimization``); finished ones are
            reused, so seeds can run in separate processes and a last call with every seed only summarises.
        rl_seeds: The seeds that get the RL arms (default: all); the RL arms' per-seed lists cover only these.
    """
    import torch

    torch.set_num_threads(1)
    out_dir = Path(out_dir)
    work = Path(work) if work is not None else out_dir / "work" / NAME
    rl = list(rl or [])
    names = list(QUICK_PROXIES if quick else PROXIES)
    for n in rl:
        if n not in names:
            raise ValueError(f"unknown proxy {n!r} for --rl; choose from {names}.")
    rl_seeds = list(seeds if rl_seeds is None else rl_seeds)
    per_seed = [run_seed(s, work, quick, rl if s in rl_seeds else []) for s in seeds]
    result = summarize(per_seed, seeds, quick, rl)
    if rl:
        result["setting"]["rl"]["seeds"] = [s for s in seeds if s in rl_seeds]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{NAME}.json").write_text(json.dumps(result, indent=1))
    plot(result, out_dir / f"{NAME}.png")
    return result


def main(argv: list[str] | None = None) -> None:
    """Command line: ``--seeds``, ``--out``, ``--quick``, ``--rl [PROXY ...]``."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("experiments/results"))
    ap.add_argument("--quick", action="store_true", help="seconds-scale version (for tests)")
    ap.add_argument("--rl", nargs="*", default=None, help="proxies to run PPO against (no names: smallest and largest)")
    ap.add_argument("--work", type=Path, default=None, help="proxies and RL runs (default: OUT/work/overoptimization)")
    ap.add_argument("--rl-seeds", type=int, nargs="+", default=None, help="seeds with RL arms (default: all)")
    args = ap.parse_args(argv)
    names = list(QUICK_PROXIES if args.quick else PROXIES)
    rl = None if args.rl is None else (args.rl or [names[0], names[-1]])
    result = run(args.seeds, args.out, args.quick, rl, args.work, args.rl_seeds)
    print(json.dumps({k: result[k] for k in ("claim", "verdict", "summary", "wall_s_per_seed")}, indent=1))


if __name__ == "__main__":
    main()
