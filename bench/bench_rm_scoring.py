"""Learned reward-model scoring in the chat env: batched vs one-by-one, and the RM's share of a rollout.

Side by side in one process, on the embedded default RM of ``LMEnv/Chat-v0`` (trained and cached on
first use) and responses like a policy writes them (the synthetic sampler's, of varied quality):

* **per-episode cost** of ``ChatReward.outcome_batch`` on ``B`` finished episodes in one batched
  forward, against ``B`` one-by-one ``outcome`` calls, for ``B = 1, 8, 32, 128`` (and the speed-up);
* **the RM's share of a chat rollout**: a KV-cached rollout of the tiny default policy through
  ``gym.make_vec("LMEnv/Chat-v0", num_envs=64)`` (``agents.policy.sampling.collect``), timing the reward's
  ``outcome_batch`` calls inside it; also the share when the env scores every finished episode
  alone (what a non-batched reward would cost).

Prints one JSON object. Timings are best-of-``repeats`` wall times on this machine's CPU threads.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import gymnasium as gym
import torch

import lm_envs
from lm_envs.tasks.chat import ChatReward, Constraints, SyntheticInstructions
from lm_envs.tasks.chat.task import synthetic_response


def episodes(n: int) -> tuple[list, list[str]]:
    task = SyntheticInstructions()
    problems = [task.problem("test", i % 200) for i in range(n)]
    rng = random.Random(0)
    texts = [synthetic_response(Constraints.from_dict(p.metadata["constraints"]), rng) for p in problems]
    return problems, texts


def timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


class TimedReward(ChatReward):
    """A ChatReward that adds up the wall time of its outcome calls (``batched=False``: one by one)."""

    def __init__(self, batched: bool = True) -> None:
        super().__init__()
        self.batched, self.seconds, self.episodes = batched, 0.0, 0

    def outcome_batch(self, problems, completions):
        start = time.perf_counter()
        if self.batched:
            out = super().outcome_batch(problems, completions)
        else:
            out = [super(TimedReward, self).outcome_batch([p], [c])[0] for p, c in zip(problems, completions)]
        self.seconds += time.perf_counter() - start
        self.episodes += len(problems)
        return out


def rollout_share(num_envs: int, batched: bool, seed: int) -> dict[str, float]:
    from agents.policy.models import build_default_model
    from agents.policy.sampling import collect

    reward = TimedReward(batched)
    venv = gym.make_vec("LMEnv/Chat-v0", num_envs=num_envs, autoreset_mode="Disabled", reward=reward)
    model = build_default_model(venv.codec, seed=seed)
    reward.scorer()  # load outside the timed region
    collect(model, venv, seed=seed, generator=torch.Generator().manual_seed(seed))  # warm-up
    reward.seconds, reward.episodes = 0.0, 0
    start = time.perf_counter()
    rollout = collect(model, venv, seed=seed + 1, generator=torch.Generator().manual_seed(seed))
    total = time.perf_counter() - start
    return {
        "rollout_s": total,
        "rm_s": reward.seconds,
        "rm_share": reward.seconds / total,
        "episodes": reward.episodes,
        "tokens": rollout.num_tokens,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--num-envs", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    reward = ChatReward()
    scorer = reward.scorer()
    problems, texts = episodes(128)
    reward.outcome_batch(problems[:8], texts[:8])  # warm-up

    per_episode = {}
    for b in (1, 8, 32, 128):
        p, t = problems[:b], texts[:b]
        batched = timed(lambda p=p, t=t: reward.outcome_batch(p, t), args.repeats) / b
        single = timed(lambda p=p, t=t: [reward.outcome(x, y) for x, y in zip(p, t)], args.repeats) / b
        per_episode[str(b)] = {
            "batched_ms": round(1e3 * batched, 3),
            "one_by_one_ms": round(1e3 * single, 3),
            "speedup": round(single / batched, 2),
        }
    share_batched = rollout_share(args.num_envs, True, seed=0)
    share_single = rollout_share(args.num_envs, False, seed=0)
    print(
        json.dumps(
            {
                "reward_model": scorer.path,
                "rm_parameters": sum(p.numel() for p in scorer.model.parameters()),
                "torch_threads": torch.get_num_threads(),
                "per_episode_by_batch": per_episode,
                "rollout": {
                    "env": "LMEnv/Chat-v0",
                    "num_envs": args.num_envs,
                    "policy": "tiny default GPT-2 (untrained)",
                    "batched": {k: round(v, 4) for k, v in share_batched.items()},
                    "one_by_one": {k: round(v, 4) for k, v in share_single.items()},
                },
                "lm_envs": lm_envs.__version__,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
