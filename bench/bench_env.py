"""Per-token cost of TokenVectorEnv.step next to one KV-cached forward of the tiny default model.

Prints one JSON object. For each batch size: mean seconds per env step over 256-token episodes
(the final step, which grades every episode, included and also reported alone), the mean step
early (tokens 8-39) and late (216-247) in the episode (flat = incremental decoding works), the
model's seconds per one-token cached forward at that batch, and the env's share of (env + model).
Also the import time of lm_envs and whether it pulled in torch.

    python bench/bench_env.py [--env LMEnv/Math-v0] [--batches 1 64 256]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import torch

import lm_envs  # noqa: F401


def env_step_times(env_id: str, batch: int, tokens: int, seed: int = 0) -> np.ndarray:
    """Seconds of each of ``tokens`` vector steps; random non-EOS actions, so episodes run the full budget."""
    venv = gym.make_vec(env_id, num_envs=batch, max_new_tokens=tokens, autoreset_mode="Disabled")
    codec = venv.codec
    rng = np.random.default_rng(seed)
    # Sample like a model mid-training: real solution text, so steps close and get checked, but
    # never EOS or '#', so the stop rule never fires and every episode runs the full budget.
    pool = {t for p in venv.task.problems("test", limit=50) for t in codec.encode(p.solution())}
    pool = np.array(sorted(t for t in pool if t != codec.eos_token_id and b"#" not in codec.token_bytes[t]))
    actions = rng.choice(pool, size=(tokens, batch))
    venv.reset(seed=seed)
    times = np.zeros(tokens)
    for t in range(tokens):
        start = time.perf_counter()
        venv.step(actions[t])
        times[t] = time.perf_counter() - start
    return times


@torch.no_grad()
def model_step_time(vocab_size: int, batch: int, context: int, steps: int = 16) -> float:
    """Seconds per one-token forward of the tiny model with a KV cache holding ``context`` tokens."""
    from agents.policy.models import build_default_model, cache_argument, kv_cache

    codec = lm_envs.load_codec()
    model = build_default_model(codec)
    ids = torch.randint(4, vocab_size, (batch, context))
    out = model(input_ids=ids, use_cache=True)
    past, arg = kv_cache(out), cache_argument(model)
    token = ids[:, -1:]
    for _ in range(2):  # warm-up
        model(input_ids=token, use_cache=True, **{arg: past})
    start = time.perf_counter()
    for _ in range(steps):
        out = model(input_ids=token, use_cache=True, **{arg: past})
        past = kv_cache(out)
    return (time.perf_counter() - start) / steps


def import_time() -> dict[str, float | bool]:
    code = (
        "import time,sys; t=time.perf_counter(); import lm_envs; print(time.perf_counter()-t, 'torch' in sys.modules)"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        for _ in range(3)
    ]
    return {"import_lm_envs_s": min(float(r[0]) for r in runs), "imports_torch": runs[0][1] == "True"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="LMEnv/Math-v0")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--tokens", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(2)
    results = {"env": args.env, "episode_tokens": args.tokens, "torch_threads": torch.get_num_threads(), "batches": []}
    for batch in args.batches:
        times = env_step_times(args.env, batch, args.tokens)
        model_s = model_step_time(lm_envs.load_codec().vocab_size, batch, context=64 + args.tokens // 2)
        env_s = float(times.mean())  # includes the last step, where every episode is graded
        early, late = times[8:40].mean(), times[-40:-8].mean()
        results["batches"].append(
            {
                "batch": batch,
                "env_step_s": env_s,
                "env_step_per_env_us": env_s / batch * 1e6,
                "env_step_early_s": float(early),
                "env_step_late_s": float(late),
                "late_over_early": float(late / early),
                "final_step_s": float(times[-1]),
                "model_forward_s": model_s,
                "env_share_of_step": env_s / (env_s + model_s),
            }
        )
    results.update(import_time())
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
