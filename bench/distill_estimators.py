"""On-policy distillation's two estimators side by side: the per-token reverse KL to a teacher over iterations.

The student is a fresh 1x32 model on ``LMEnv/Digits-v0``; the teacher is another random 1x32 model made
peaked (its final norm scaled by 8), so a fresh student starts far from it. Each estimator runs the same
iterations from the same student and seeds; printed as one JSON object (the exact per-token KL
``distill/reverse_kl_full`` on each iteration's own rollout, before its update).

    python bench/distill_estimators.py -o bench/results/distill_estimators.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--settings",
        nargs="+",
        default=["full:16:1e-2", "sampled:16:1e-2", "sampled:64:3e-3"],
        help="estimator:num_envs:lr",
    )
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args()

    import gymnasium as gym
    import torch

    import lm_envs  # noqa: F401
    from agents.learners.base import RunContext
    from agents.learners.distill import DistillConfig, DistillLearner
    from agents.policy.models import build_default_model, export_model

    torch.set_num_threads(1)
    codec = gym.make("LMEnv/Digits-v0").unwrapped.codec
    size = {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 64}
    out: dict = {"settings": vars(args) | {"output": str(args.output)}, "results": {}}
    with tempfile.TemporaryDirectory() as tmp:
        teacher = build_default_model(codec, seed=1000, **size)
        with torch.no_grad():
            teacher.transformer.ln_f.weight.mul_(8.0)
        export_model(teacher, codec, tmp)
        for setting in args.settings:
            estimator, num_envs, lr = setting.split(":")
            curves, seconds = [], []
            for seed in args.seeds:
                torch.manual_seed(seed)
                student = build_default_model(codec, seed=seed, **size)
                ctx = RunContext(
                    "LMEnv/Digits-v0", {"vocab_size": codec.vocab_size}, None, codec, seed, torch.device("cpu")
                )
                cfg = DistillConfig(teacher=tmp, estimator=estimator, num_envs=int(num_envs), lr=float(lr))
                learner = DistillLearner(cfg, student, ctx)
                t0 = time.time()
                curves.append([learner.iteration(it, None)["distill/reverse_kl_full"] for it in range(args.iterations)])
                seconds.append(time.time() - t0)
            c = np.asarray(curves)
            out["results"][setting] = {
                "kl_first3": float(c[:, :3].mean()),
                "kl_last5": float(c[:, -5:].mean()),
                "kl_last5_per_seed": c[:, -5:].mean(1).round(4).tolist(),
                "kl_every10_mean_over_seeds": c.mean(0)[::10].round(4).tolist(),
                "seconds_per_run": round(float(np.mean(seconds)), 2),
            }
    text = json.dumps(out, indent=1)
    if args.output is not None:
        args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
