"""Generated tokens/s through the token env (KV-cached rollout) vs raw ``model.generate``.

Same model (the tiny default, or ``--model smollm2`` / any transformers directory, whose prompts then go
through its chat template), same prompts (LMEnv/Math-v0 test problems), same batch and sampling settings
(temperature 1, no top-k/top-p, the env's 96-token budget), side by side in one process.
Our side includes everything an agent pays for: the env's per-token steps, reward calls (grading)
and the bookkeeping of log-probs and rewards. Prints one JSON object.

    python bench/bench_rollout.py [--batches 64 256] [--repeats 3] [--model smollm2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch

import lm_envs
from agents.policy.models import build_default_model, load_model, logits_width
from agents.policy.pretrained import display_name, resolve_model
from agents.policy.sampling import collect, left_pad_prompts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="LMEnv/Math-v0")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="smollm2, a transformers directory or a .gguf file")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    path = resolve_model(args.model)
    kwargs = {"tokenizer": path} if path else {}
    results = {"env": args.env, "model": display_name(args.model) or "lm-envs/tiny-gpt2", "batches": []}
    results["torch_threads"] = torch.get_num_threads()
    codec = lm_envs.load_codec(path)
    model = load_model(path, codec) if path else build_default_model(codec, seed=0)
    kwargs["vocab_size"] = logits_width(model)  # a model's logits may be wider than its tokenizer
    for batch in args.batches:
        venv = gym.make_vec(args.env, num_envs=batch, autoreset_mode="Disabled", **kwargs)
        budget = venv.episodes.config.max_new_tokens
        options = {"split": "test", "index": list(range(batch))}
        obs, _ = venv.reset(options=options)
        ids, att = left_pad_prompts(obs, venv.codec.pad_token_id)
        ours, theirs = [], []
        for r in range(args.repeats + 1):  # the first round warms up both paths
            start = time.perf_counter()
            rollout = collect(model, venv, options=options, generator=torch.Generator().manual_seed(r))
            t_ours = time.perf_counter() - start
            torch.manual_seed(r)
            start = time.perf_counter()
            with torch.no_grad():
                out = model.generate(
                    input_ids=ids,
                    attention_mask=att,
                    do_sample=True,
                    temperature=1.0,
                    top_k=0,
                    top_p=1.0,
                    max_new_tokens=budget,
                    pad_token_id=venv.codec.pad_token_id,
                    eos_token_id=venv.codec.eos_token_id,
                )
            t_theirs = time.perf_counter() - start
            gen = out[:, ids.shape[1] :]
            # tokens up to and including each row's first EOS (what was really generated)
            is_eos = gen == venv.codec.eos_token_id
            ends = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1, torch.full((batch,), gen.shape[1]))
            if r:
                ours.append(rollout.num_tokens / t_ours)
                theirs.append(int(ends.sum()) / t_theirs)
        results["batches"].append(
            {
                "batch": batch,
                "env_rollout_tokens_per_s": float(np.median(ours)),
                "generate_tokens_per_s": float(np.median(theirs)),
                "ratio_env_over_generate": float(np.median(ours) / np.median(theirs)),
            }
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
