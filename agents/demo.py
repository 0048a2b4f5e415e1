"""``lm-envs demo``: roll policies through a built-in env and print their rewards (no training).

Two policies act through the same batched token env: the embedded tiny model (untrained) sampling
token by token with a KV cache, and a "gold" policy that emits the reference solution's tokens.
The gap between them is what training (``agents`` algorithms) has to close.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import torch

import lm_envs  # noqa: F401  (registers the LMEnv/* ids)
from agents.policy.models import build_default_model
from agents.policy.sampling import collect


def gold_returns(venv: lm_envs.TokenVectorEnv, seed: int) -> tuple[np.ndarray, list[str]]:
    """Returns of a policy that types each problem's gold solution, then EOS."""
    venv.reset(seed=seed)
    codec = venv.codec
    scripts = [codec.encode(p.solution()) + [codec.eos_token_id] for p in venv.episodes.problems]
    returns = np.zeros(venv.num_envs)
    completions = [""] * venv.num_envs
    for t in range(max(map(len, scripts))):
        actions = np.array([s[t] if t < len(s) else codec.eos_token_id for s in scripts])
        _, r, term, trunc, info = venv.step(actions)
        returns += r
        for i in np.flatnonzero(info.get("_completion", [])):
            completions[i] = info["completion"][i]
        if (term | trunc).all():
            break
    return returns, completions


def main(env_id: str = "LMEnv/Math-v0", num_envs: int = 64, seed: int = 0) -> dict[str, float]:
    """Run the demo and print a summary; returns the mean returns per policy."""
    venv = gym.make_vec(env_id, num_envs=num_envs, autoreset_mode="Disabled")
    print(f"env {env_id}: {num_envs} envs, tokenizer {venv.codec.name} ({venv.codec.vocab_size} tokens)")
    model = build_default_model(venv.codec, seed=seed)
    n_params = sum(p.numel() for p in model.parameters())
    start = time.perf_counter()
    rollout = collect(model, venv, seed=seed, generator=torch.Generator().manual_seed(seed))
    elapsed = time.perf_counter() - start
    tokens = rollout.num_tokens
    print(
        f"untrained tiny model ({n_params / 1e6:.1f}M params): mean return {rollout.returns.mean():.3f}, "
        f"{tokens} tokens in {elapsed:.2f}s ({tokens / elapsed:.0f} tokens/s)"
    )
    print(f"  sample completion: {rollout.infos[0].get('completion', '')[:80]!r}")
    gold, completions = gold_returns(venv, seed)
    print(f"gold-solution policy: mean return {gold.mean():.3f}")
    print(f"  sample completion: {completions[0][:80]!r}")
    return {"model": float(rollout.returns.mean()), "gold": float(gold.mean())}
