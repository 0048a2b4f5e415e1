"""PRM-guided beam search scoring steps from the policy's token ids vs from re-encoded text, side by side.

The same policy, PRM, problems and seed; the token path (:meth:`lm_envs.tasks.math.prm.LearnedPRM.token_step_scores`,
one forward per row over its own ids) against the text path (``LearnedPRM.step_probabilities``: every step prefix
decoded, re-encoded and scored on its own). Reports wall time, the steps each path scored, accuracy and tokens,
and how far the token path's step scores are from the text path's on the same finished rows (where the decoded
prefix re-encodes to the sampled ids they must agree; where it does not, the text path scores other ids).

    OMP_NUM_THREADS=1 python bench/search_prm_tokens.py --run runs/test_time --problems 40 --n 16 \\
        --json bench/results/search_prm_tokens.json

``--run`` is a ``bench/test_time.py`` output directory (its ``policy/`` and ``prm/``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import lm_envs  # noqa: F401
from agents.policy.models import load_model
from agents.search.tree import SearchConfig, search
from lm_envs import Problem
from lm_envs.core.tokenizer import load_codec
from lm_envs.tasks.math.prm import LearnedPRM

ENV = "LMEnv/Math-v0"


class TextPath:
    """The PRM without its token path: every step is scored from text."""

    def __init__(self, prm: LearnedPRM) -> None:
        self.prm = prm

    def __call__(self, problems, histories, steps):  # noqa: ANN001, ANN204
        return self.prm.step_probabilities(problems, histories, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a bench/test_time.py --out directory (policy/, prm/)")
    ap.add_argument("--problems", type=int, default=40)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = Path(args.run)
    codec = load_codec(str(run / "policy"))
    policy = load_model(str(run / "policy"), codec).eval()
    prm = LearnedPRM(str(run / "prm"), max_length=256)
    kwargs = {"tokenizer": str(run / "policy")}
    cfg = SearchConfig(strategy="beam", n=args.n, width=args.width, aggregate="last")
    out: dict = {"settings": vars(args), "shares_tokenizer": prm.shares_tokenizer(codec)}
    results = {}
    for name, scorer in (("tokens", prm), ("text", TextPath(prm))):
        t = time.time()
        result = search(policy, ENV, cfg, scorer, range(args.problems), seed=args.seed, env_kwargs=kwargs)
        results[name] = result
        out[name] = {
            "wall_s": round(time.time() - t, 2),
            "accuracy": result.accuracy,
            "mean_tokens": result.mean_tokens,
            "scored_steps": result.scored_steps,
        }
    # the token run's finished rows, rescored from text: the two paths' step scores side by side
    task = gym.make(ENV, **kwargs).unwrapped.task
    same, other = [], []
    for index, cands in zip(results["tokens"].indices, results["tokens"].candidates, strict=True):
        problem: Problem = task.problem("test", index)
        prompt_ids = codec.encode(problem.prompt)
        for c in cands:
            steps = c["steps"]
            if not steps:
                continue
            text = prm.step_probabilities([problem] * len(steps), [steps[:k] for k in range(len(steps))], steps)
            for k, end in enumerate(c["step_ends"]):
                if end is None:
                    continue
                prefix = problem.prompt + "".join(s + "\n" for s in steps[: k + 1])
                by_eos = c["tokens"][end : end + 1] == [codec.eos_token_id]
                ids = prompt_ids + c["tokens"][:end] + (codec.encode("\n") if by_eos else [])
                (same if codec.encode(prefix) == ids else other).append(abs(c["step_scores"][k] - text[k]))
    out["step_score_abs_diff"] = {
        "re_encodes_to_the_sampled_ids": {
            "steps": len(same),
            "max": float(np.max(same)) if same else None,
        },
        "does_not": {
            "steps": len(other),
            "mean": float(np.mean(other)) if other else None,
            "max": float(np.max(other)) if other else None,
        },
    }
    out["speedup_text_over_tokens"] = round(out["text"]["wall_s"] / max(out["tokens"]["wall_s"], 1e-9), 2)
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
