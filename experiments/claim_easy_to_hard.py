"""Claim 4: easy-to-hard generalization (Sun et al. 2024).

A verifier (process reward model) trained only on easy problems still helps on hard ones, through best-of-N,
weighted voting and RL, more than the policy generalizes.

Per seed, on the 2x128 rotary tiny default, numbers below 100 and ``+ - *`` throughout:

1. SFT on easy problems only (1-2 arithmetic steps; ``+experiment=easy_to_hard``) and, as the "trained on all
   difficulties" reference, on 1-4 step problems (``env.kwargs.task_kwargs.max_steps=4``), 600 steps (fewer
   demonstration tokens than the easy policy's 1000), same lr;
2. a PRM per policy (rule-verifier step labels on the policy's own samples of its own training problems, backbone
   initialised from the policy): PRM-easy sees 1-2 step problems only, PRM-all 1-4 steps;
3. on the hard test problems (3-4 steps): greedy accuracy; best-of-16 and PRM-weighted voting with each PRM, on
   each policy's samples (PRM-easy ranking the all-trained policy's samples isolates the verifier's transfer);
   majority voting (the control without a verifier) and pass@16 (the ceiling any selector can reach);
4. GRPO on the hard train problems from the easy SFT start with PRM-easy as the only reward (no gold
   answer: ``process=learned``, ``outcome_weight=0``), beside outcome RL with the gold answer (the reverse-curriculum
   claim's ``plain`` arm, same start and settings, reused when it exists).

    python -m experiments.claim_easy_to_hard --seeds 0 1 2 --out experiments/results
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script path: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.common import RESULTS, WORK, Timer, arm, train, write_result

NAME = "easy_to_hard"
PAPER = "Sun et al. 2024"
EASY = {"preset": "easy", "min_steps": 1, "max_steps": 2, "distinct_test": False}
ALL = {**EASY, "max_steps": 4}
HARD = {**EASY, "min_steps": 3, "max_steps": 4}
ENV_IDS = {"easy": "LMEnvClaims/MathEasy-v0", "all": "LMEnvClaims/MathAll-v0", "hard": "LMEnvClaims/MathHard-v0"}


def register_envs() -> None:
    """Register Math-v0 with the three difficulty ranges (the reward-model trainer takes an env id)."""
    import gymnasium as gym

    import lm_envs

    base = gym.spec("LMEnv/Math-v0").kwargs
    for name, task_kwargs in (("easy", EASY), ("all", ALL), ("hard", HARD)):
        if ENV_IDS[name] not in gym.registry:
            extra = {k: v for k, v in base.items() if k not in ("task", "reward", "task_kwargs")}
            lm_envs.register(ENV_IDS[name], base["task"], base["reward"], task_kwargs=task_kwargs, **extra)


def settings(quick: bool) -> dict[str, Any]:
    """Sizes of every step (quick: a seconds-scale version for the test)."""
    if quick:
        return dict(
            sft=["model.size.n_layer=1", "model.size.n_embd=32", "sft.steps=4", "sft.warmup_steps=1"],
            eval_problems=8,
            bon_problems=8,
            n=4,
            rm=dict(num_problems=8, samples_per_problem=2, heldout_problems=4, steps=4, batch_size=4, eval_every=0),
            rl=["train.iterations=2", "agent.num_envs=16", "agent.group_size=4", "train.checkpoint_every=2"],
        )
    return dict(
        sft=[],
        eval_problems=200,  # greedy accuracy; best-of-N uses the first bon_problems of them
        bon_problems=80,
        n=16,
        rm=dict(num_problems=200, samples_per_problem=4, heldout_problems=50, steps=250, batch_size=16, eval_every=0),
        rl=[],
    )


def policy(seed: int, which: str, work: Path, quick: bool) -> Path:
    """The SFT policy trained on ``easy`` (shared with the reverse-curriculum claim) or ``all`` difficulties."""
    s = settings(quick)
    evals = [f"eval.num_episodes={s['eval_problems']}", f"train.eval_episodes={s['eval_problems']}"]
    # 600 steps (for the shared machine's time): 1.2M demonstration tokens, fewer than the easy policy's 1.6M
    extra = ["env.kwargs.task_kwargs.max_steps=4", *([] if quick else ["sft.steps=600"])] if which == "all" else []
    run_dir = work / f"sft_{which}" / f"seed{seed}"
    train(["+experiment=easy_to_hard", f"seed={seed}", *extra, *s["sft"], *(evals if quick else [])], run_dir)
    return run_dir / "model"


def prm(seed: int, which: str, model: Path, work: Path, quick: bool) -> Path:
    """A PRM trained on the policy's own samples of the ``which`` problems (rule step labels)."""
    from agents.reward_models.train import RewardModelConfig, train_reward_model

    out = work / NAME / f"prm_{which}" / f"seed{seed}"
    if not (out / "metrics.json").is_file():
        cfg = RewardModelConfig(
            kind="prm",
            output_dir=str(out),
            seed=seed,
            model=str(model),
            policy=str(model),
            env_id=ENV_IDS[which],
            max_length=256,
            lr=1e-4,
            **settings(quick)["rm"],
        )
        train_reward_model(cfg)
    return out


def hard_samples(seed: int, model_dir: Path, quick: bool) -> Any:
    """``n`` sampled solutions (temperature 1) of each of the first hard test problems."""
    from agents.policy.models import load_model
    from agents.search.best_of_n import sample_groups
    from lm_envs.core.tokenizer import load_codec

    s = settings(quick)
    model = load_model(str(model_dir), load_codec(str(model_dir))).eval()
    return sample_groups(
        model, ENV_IDS["hard"], s["n"], s["bon_problems"], "test", 1.0, seed, env_kwargs={"tokenizer": str(model_dir)}
    )


def selections(samples: Any, prm_dir: Path, seed: int) -> dict[str, float]:
    """Accuracy at N of best-of-N (PRM product), PRM-weighted voting, majority voting and the oracle."""
    from dataclasses import replace

    import numpy as np

    from agents.search.best_of_n import PRMScorer, best_of_n_curve, score_samples

    scored = score_samples(replace(samples, scores=None), PRMScorer(str(prm_dir), how="product"))
    # as bench/best_of_n.py and PRM800K: the PRM picks among samples with a final answer
    picked = replace(scored, scores=np.where(scored.answer_classes() >= 0, scored.scores, -np.inf))
    n = samples.n
    curve = best_of_n_curve(picked, ("reward_model", "majority", "oracle"), ns=[n], trials=8, seed=seed)
    voted = best_of_n_curve(scored, ("weighted_majority",), ns=[n], trials=8, seed=seed)
    return {
        "bon": curve["reward_model"][0],
        "weighted": voted["weighted_majority"][0],
        "majority": curve["majority"][0],
        "oracle": curve["oracle"][0],
    }


def greedy(model_dir: Path, quick: bool) -> float:
    """Greedy accuracy on the hard test problems."""
    from agents.evaluate import EvalConfig, evaluate
    from agents.policy.models import load_model
    from lm_envs.core.tokenizer import load_codec

    model = load_model(str(model_dir), load_codec(str(model_dir))).eval()
    cfg = EvalConfig(num_episodes=settings(quick)["eval_problems"])
    return float(evaluate(model, ENV_IDS["hard"], cfg, env_kwargs={"tokenizer": str(model_dir)})["accuracy"])


def rl_with_prm(seed: int, work: Path, quick: bool) -> dict[str, float]:
    """GRPO with PRM-easy's step rewards as the only reward (no gold answer) vs outcome RL with the gold answer.

    Both from the all-trained policy (it writes 4-step solutions) on the 4-step problems of
    ``+experiment=reverse_curriculum``; the gold arm is that claim's ``plain`` arm (the same run directory).
    """
    from experiments.claim_reverse_curriculum import run_arm

    start = work / "sft_all" / f"seed{seed}"
    prm_easy = work / NAME / "prm_easy" / f"seed{seed}"
    gold = run_arm("plain", seed, start, work, quick)
    verifier = run_arm(
        "plain",
        seed,
        start,
        work,
        quick,
        extra=[
            "env.kwargs.reward_kwargs.process=learned",
            f"++env.kwargs.reward_kwargs.prm_path={prm_easy}",
            "++env.kwargs.reward_kwargs.outcome_weight=0.0",
        ],
        run_name=f"{NAME}/rl_prm_easy",
    )
    return {
        "rl_start": gold["accuracy_start"],
        "rl_gold_outcome": gold["accuracy"],
        "rl_prm_easy": verifier["accuracy"],
    }


def per_seed(seed: int, work: Path, quick: bool) -> dict[str, float]:
    """Every arm's number for one seed."""
    register_envs()
    easy, full = policy(seed, "easy", work, quick), policy(seed, "all", work, quick)
    prm_easy, prm_all = prm(seed, "easy", easy, work, quick), prm(seed, "all", full, work, quick)
    cache = work / NAME / f"selections_seed{seed}.json"  # sampling and scoring is the slow part: keep it
    if cache.is_file():
        out = json.loads(cache.read_text())
    else:
        out = {"sft_easy": greedy(easy, quick), "sft_all": greedy(full, quick)}
        samples = hard_samples(seed, easy, quick)
        for k, v in selections(samples, prm_easy, seed).items():
            out[f"easy_policy/{k}/prm_easy"] = v
        out["easy_policy/bon/prm_all"] = selections(samples, prm_all, seed)["bon"]
        samples = hard_samples(seed, full, quick)
        for k, v in selections(samples, prm_all, seed).items():
            out[f"all_policy/{k}/prm_all"] = v
        # the verifier's own easy-to-hard transfer: the easy-trained PRM ranking samples that can be right
        for k, v in selections(samples, prm_easy, seed).items():
            out[f"all_policy/{k}/prm_easy"] = v
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(out))
    for which, path in (("easy", prm_easy), ("all", prm_all)):  # the PRMs' own held-out quality (their test split)
        held = json.loads((path / "metrics.json").read_text())["heldout"]
        out[f"prm_{which}_heldout_auc"] = float(held.get("auc", float("nan")))
    return out


def recorded_wall(seed: int, work: Path) -> float:
    """Seconds the seed's runs recorded: SFT policies, PRMs and RL runs (``wall_time_s`` in their JSON)."""
    total = 0.0
    for path in (
        work / "sft_easy" / f"seed{seed}" / "eval.json",
        work / "sft_all" / f"seed{seed}" / "eval.json",
        work / NAME / "prm_easy" / f"seed{seed}" / "metrics.json",
        work / NAME / "prm_all" / f"seed{seed}" / "metrics.json",
        work / NAME / "rl_prm_easy" / f"seed{seed}" / "eval.json",
        work / "reverse_curriculum" / "plain" / f"seed{seed}" / "eval.json",
    ):
        if path.is_file():
            total += float(json.loads(path.read_text()).get("wall_time_s", 0.0))
    return total


ARMS = {  # arm name -> (metric, key in per_seed's dict)
    "sft_easy": ("hard greedy accuracy", "sft_easy"),
    "sft_all": ("hard greedy accuracy", "sft_all"),
    "majority16_easy": ("hard accuracy at N=16", "easy_policy/majority/prm_easy"),
    "bon16_prm_easy": ("hard accuracy at N=16", "easy_policy/bon/prm_easy"),
    "weighted16_prm_easy": ("hard accuracy at N=16", "easy_policy/weighted/prm_easy"),
    "bon16_prm_all_on_easy_policy": ("hard accuracy at N=16", "easy_policy/bon/prm_all"),
    "pass16_easy": ("hard accuracy at N=16", "easy_policy/oracle/prm_easy"),
    "majority16_all": ("hard accuracy at N=16 (policy trained on all)", "all_policy/majority/prm_all"),
    "bon16_prm_all": ("hard accuracy at N=16 (policy trained on all)", "all_policy/bon/prm_all"),
    "weighted16_prm_all": ("hard accuracy at N=16 (policy trained on all)", "all_policy/weighted/prm_all"),
    "pass16_all": ("hard accuracy at N=16 (policy trained on all)", "all_policy/oracle/prm_all"),
    "bon16_prm_easy_on_all_policy": ("hard accuracy at N=16 (policy trained on all)", "all_policy/bon/prm_easy"),
    "weighted16_prm_easy_on_all_policy": (
        "hard accuracy at N=16 (policy trained on all)",
        "all_policy/weighted/prm_easy",
    ),
    "rl_start": ("4-step greedy accuracy, RL (start: policy trained on all)", "rl_start"),
    "rl_gold_outcome": ("4-step greedy accuracy, RL (start: policy trained on all)", "rl_gold_outcome"),
    "rl_prm_easy": ("4-step greedy accuracy, RL (start: policy trained on all)", "rl_prm_easy"),
}


def verdict(arms: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """The verdict and summary: held where the easy-trained PRM lifts hard accuracy in search and in RL.

    Search: best-of-N or weighted voting with PRM-easy above majority voting on the same samples (paired 95% CI
    above 0), on the easy policy's samples or on the all-trained policy's; RL: RL with PRM-easy as the only reward
    above its SFT start. One of the two is "partly held".
    """
    search = any(
        arms[f"{k}_minus_majority"]["ci95"][0] > 0
        for k in (
            "bon16_prm_easy",
            "weighted16_prm_easy",
            "bon16_prm_easy_on_all_policy",
            "weighted16_prm_easy_on_all_policy",
        )
    )
    rl = "rl_prm_easy_minus_start" in arms and arms["rl_prm_easy_minus_start"]["ci95"][0] > 0
    v = "held" if search and rl else "partly held" if search or rl else "did not hold"

    def pct(name: str) -> str:
        a = arms[name]
        return f"{100 * a['mean']:.1f}% [{100 * a['ci95'][0]:.1f}, {100 * a['ci95'][1]:.1f}]"

    s = (
        f"On 3-4 step problems the easy-trained policy scores {pct('sft_easy')} greedy (trained on all: "
        f"{pct('sft_all')}). At N=16 on its samples the easy-trained PRM picks {pct('bon16_prm_easy')}, its weighted "
        f"vote {pct('weighted16_prm_easy')}, vs majority {pct('majority16_easy')} (pass@16 {pct('pass16_easy')}). "
        f"On the all-trained policy's samples the easy PRM picks {pct('bon16_prm_easy_on_all_policy')} (weighted "
        f"{pct('weighted16_prm_easy_on_all_policy')}), the all PRM {pct('bon16_prm_all')}, majority "
        f"{pct('majority16_all')}, pass@16 {pct('pass16_all')}."
    )
    if "rl_prm_easy" in arms:
        s += (
            f" RL on 4-step problems from the all-trained policy ({pct('rl_start')}) with the easy PRM as the only "
            f"reward: {pct('rl_prm_easy')} (gold outcome reward: {pct('rl_gold_outcome')})."
        )
    return v, s


def run(seeds: list[int], out_dir: Path, quick: bool = False, rl: bool = True) -> dict[str, Any]:
    """Every arm for every seed (``rl=False``: no RL arms); writes ``<out_dir>/easy_to_hard.json`` and ``.png``."""
    out_dir = Path(out_dir)
    work = out_dir / "work" if quick else WORK
    rows, walls = [], []
    for seed in seeds:  # search arms first for every seed, then the RL arms
        with Timer() as t:
            rows.append(per_seed(seed, work, quick))
        walls.append(t.seconds)
    if rl:
        for i, seed in enumerate(seeds):
            with Timer() as t:
                rows[i].update(rl_with_prm(seed, work, quick))
            walls[i] += t.seconds
    arms = {name: arm(metric, [r[key] for r in rows]) for name, (metric, key) in ARMS.items() if key in rows[0]}
    for name in ("bon16_prm_easy", "weighted16_prm_easy", "bon16_prm_all_on_easy_policy"):
        gains = [r[ARMS[name][1]] - r[ARMS["majority16_easy"][1]] for r in rows]
        arms[f"{name}_minus_majority"] = arm("gain over majority voting (same samples)", gains)
    for name in (
        "bon16_prm_all",
        "weighted16_prm_all",
        "bon16_prm_easy_on_all_policy",
        "weighted16_prm_easy_on_all_policy",
    ):
        gains = [r[ARMS[name][1]] - r[ARMS["majority16_all"][1]] for r in rows]
        arms[f"{name}_minus_majority"] = arm("gain over majority voting (same samples)", gains)
    if rl:
        for name in ("rl_prm_easy", "rl_gold_outcome"):
            arms[f"{name}_minus_start"] = arm("gain of RL over its start", [r[name] - r["rl_start"] for r in rows])
    for which in ("easy", "all"):  # the PRM's step AUC on its own difficulty's test problems (none: one class only)
        aucs = [r[f"prm_{which}_heldout_auc"] for r in rows]
        if all(math.isfinite(a) for a in aucs):
            arms[f"prm_{which}_heldout_auc"] = arm("PRM step AUC, held-out (own difficulty)", aucs)
    v, summary = verdict(arms)
    doc = {
        "claim": NAME,
        "paper": PAPER,
        "setting": {
            "policies": "+experiment=easy_to_hard (easy: 1-2 steps; all: env.kwargs.task_kwargs.max_steps=4)",
            "hard": "3-4 arithmetic steps, numbers < 100, + - *; test split",
            "prm": {k: v for k, v in settings(quick)["rm"].items()},
            "n": settings(quick)["n"],
            "bon_problems": settings(quick)["bon_problems"],
            "rl": "+experiment=reverse_curriculum from the all-trained policy, reward: PRM-easy step rewards only"
            if rl
            else "not run (--no-rl)",
            "quick": quick,
        },
        "seeds": list(seeds),
        "arms": arms,
        "headline": [
            "sft_easy",
            "sft_all",
            "bon16_prm_easy",
            "majority16_all",
            "bon16_prm_easy_on_all_policy",
            "bon16_prm_all",
            *(["rl_start", "rl_prm_easy", "rl_gold_outcome"] if rl else []),
        ],
        "verdict": v,
        "summary": summary,
        # a rerun over cached runs takes seconds: report the runs' own recorded times when they are larger
        # (SFT, PRMs and RL; best-of-N sampling and scoring is not recorded and not included)
        "wall_s_per_seed": round(max(sum(walls), sum(recorded_wall(s, work) for s in seeds)) / len(seeds), 1),
    }
    write_result(doc, out_dir)
    return doc


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="a seconds-scale version (tiny model, few steps)")
    p.add_argument("--no-rl", action="store_true", help="leave out the RL arms (search arms only)")
    args = p.parse_args(argv)
    doc = run(args.seeds, args.out, args.quick, rl=not args.no_rl)
    print(f"{NAME}: {doc['verdict']}. {doc['summary']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
