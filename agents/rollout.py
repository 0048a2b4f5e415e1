"""Rolling a causal LM through a ``TokenVectorEnv`` with a KV cache.

The prompts are prefilled once (left-padded so that every row's next token sits in the last
column); then each vector step is one cached forward of one token per env. The env receives the
exact sampled token ids and the same ids are what the model conditions on next: token in, token out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lm_envs import TokenVectorEnv


@dataclass
class Episodes:
    """One episode per env: generated tokens, their sampling log-probs, per-token rewards, masks."""

    tokens: np.ndarray  # (n, T) int64, generated token ids (pad after the end)
    logprobs: np.ndarray  # (n, T) float32, log pi(token) under the sampling distribution
    rewards: np.ndarray  # (n, T) float64, env reward on each token (process and outcome)
    mask: np.ndarray  # (n, T) bool, True on tokens the env received in the episode
    completions: list[str]
    returns: np.ndarray  # (n,) float64, sum of rewards


def left_pad_prompts(obs: dict[str, np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn right-padded env observations into left-padded prompt ids and attention mask."""
    ids, mask = obs["input_ids"], obs["attention_mask"].astype(bool)
    lengths = mask.sum(1)
    width = int(lengths.max())
    out = np.full((len(ids), width), pad_id, dtype=np.int64)
    att = np.zeros((len(ids), width), dtype=np.int64)
    for i, n in enumerate(lengths):
        out[i, width - n :] = ids[i, :n]
        att[i, width - n :] = 1
    return torch.from_numpy(out), torch.from_numpy(att)


@torch.no_grad()
def sample_episodes(
    model: torch.nn.Module,
    venv: TokenVectorEnv,
    seed: int | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> Episodes:
    """Collect exactly one episode per env (the env must use ``autoreset_mode='Disabled'``).

    Args:
        model: A causal LM whose logits width equals the env's action space.
        venv: The vector env.
        seed: Reset seed (problems drawn per env).
        temperature: Softmax temperature (> 0).
        generator: Torch RNG for sampling.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    n, budget = venv.num_envs, venv.episodes.config.max_new_tokens
    obs, _ = venv.reset(seed=seed)
    ids, attn = left_pad_prompts(obs, venv.codec.pad_token_id)
    position = (attn.cumsum(1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=attn, position_ids=position, use_cache=True)
    past, logits = out.past_key_values, out.logits[:, -1]
    next_pos = position[:, -1:] + 1

    tokens = np.full((n, budget), venv.codec.pad_token_id, dtype=np.int64)
    logprobs = np.zeros((n, budget), dtype=np.float32)
    rewards = np.zeros((n, budget), dtype=np.float64)
    mask = np.zeros((n, budget), dtype=bool)
    done = np.zeros(n, dtype=bool)
    completions = [""] * n
    for t in range(budget):
        logp = torch.log_softmax(logits.float() / temperature, dim=-1)
        action = torch.multinomial(logp.exp(), 1, generator=generator)
        a = action[:, 0].numpy()
        live = ~done
        tokens[live, t] = a[live]
        logprobs[live, t] = logp.gather(1, action)[:, 0].numpy()[live]
        mask[live, t] = True
        _, r, term, trunc, info = venv.step(a)
        rewards[live, t] = r[live]
        for i in np.flatnonzero(info.get("_completion", np.zeros(n, dtype=bool))):
            completions[i] = info["completion"][i]
        done = term | trunc
        if done.all():
            break
        attn = torch.cat([attn, torch.ones(n, 1, dtype=attn.dtype)], dim=1)
        out = model(input_ids=action, attention_mask=attn, position_ids=next_pos, past_key_values=past, use_cache=True)
        past, logits = out.past_key_values, out.logits[:, -1]
        next_pos = next_pos + 1
    return Episodes(tokens, logprobs, rewards, mask, completions, rewards.sum(1))
