"""Cost of the math rewards inside an env step, next to a tiny-model forward at batch 64.

Measures, on completions like a policy writes them (gold solutions, and copies with one wrong
step or a wrong answer): the outcome reward per finished episode (extract + grade), the rule-based
process reward per closed step, and from those the reward work per vector step of 64 envs whose
episodes last ``L`` tokens (each env pays 1/L of an outcome and steps/L of a step check per token).
That share is reported next to one KV-cached forward of the tiny default model at batch 64.
Prints one JSON object.
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

import lm_envs
from lm_envs.tasks.math import MathReward, word_problems


def completions(n: int) -> tuple[list, list[str]]:
    task = word_problems("easy")
    problems, texts = [], []
    for i in range(n):
        p = task.problem("test", i)
        steps = list(p.steps)
        if i % 3 == 1:  # one wrong step, wrong answer
            steps[0] = steps[0].rsplit("=", 1)[0] + "= 1" + steps[0].rsplit("=", 1)[1].strip()
            steps[-1] = "#### 1" + p.answer
        problems.append(p)
        texts.append("\n".join(steps))
    return problems, texts


def timed(fn, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    problems, texts = completions(256)
    outcome = MathReward()
    process = MathReward(process="rule")
    steps = [s for t in texts for s in t.split("\n")]
    t_outcome = timed(lambda: outcome.outcome_batch(problems, texts)) / len(texts)
    t_step = timed(lambda: process.step_batch([problems[0]] * len(steps), [[]] * len(steps), steps)) / len(steps)

    codec = lm_envs.load_codec()
    mean_tokens = float(np.mean([len(codec.encode(t)) + 1 for t in texts]))
    steps_per_episode = len(steps) / len(texts)

    from agents.policy.models import build_default_model, cache_argument, kv_cache

    model = build_default_model(codec)
    with torch.no_grad():
        ids = torch.randint(4, codec.vocab_size, (64, 60))
        past, arg = kv_cache(model(input_ids=ids, use_cache=True)), cache_argument(model)
        tok = ids[:, -1:]
        model(input_ids=tok, use_cache=True, **{arg: past})
        start = time.perf_counter()
        for _ in range(16):
            past = kv_cache(model(input_ids=tok, use_cache=True, **{arg: past}))
        t_forward = (time.perf_counter() - start) / 16
    per_vector_step = 64 * (t_outcome + steps_per_episode * t_step) / mean_tokens
    print(
        json.dumps(
            {
                "outcome_reward_per_episode_us": t_outcome * 1e6,
                "outcome_episodes_per_s": 1 / t_outcome,
                "process_reward_per_step_us": t_step * 1e6,
                "mean_episode_tokens": mean_tokens,
                "steps_per_episode": steps_per_episode,
                "reward_work_per_vector_step_b64_ms": per_vector_step * 1e3,
                "model_forward_b64_ms": t_forward * 1e3,
                "reward_share_of_step_b64": per_vector_step / (per_vector_step + t_forward),
                "torch_threads": torch.get_num_threads(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
