"""Learner-side scoring: log-probs, entropies and hidden states of a rollout's tokens under a model, with gradients.

The sampler (:mod:`agents.policy.sampling`) records the log-probs it sampled with; the learners recompute them
here on exactly the same token ids (token in, token out), batched so that the ``group_size`` completions of a
problem run their shared prompt once.
"""

from __future__ import annotations

import torch

from agents.policy.models import cache_argument, kv_cache, last_logits_only, positions
from agents.policy.sampling import Rollout


def sequence_inputs(rollout: Rollout, rows: torch.Tensor | slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt plus generated tokens, with the attention mask, for a full forward over ``rows``."""
    ids = torch.cat([rollout.prompt_ids[rows], rollout.tokens[rows]], dim=1)
    att = torch.cat([rollout.prompt_mask[rows], rollout.mask[rows].long()], dim=1)
    return ids, att


def response_logprobs(logits: torch.Tensor, tokens: torch.Tensor, prompt_width: int, temperature: float = 1.0):
    """Log-probs of ``tokens`` and the entropy, from full-sequence ``logits`` (prompt width ``P``).

    Position ``P - 1 + t`` predicts generated token ``t``.
    """
    T = tokens.shape[1]
    return aligned_logprobs(logits[:, prompt_width - 1 : prompt_width - 1 + T], tokens, temperature)


def policy_logprobs(
    model: torch.nn.Module, rollout: Rollout, rows: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and entropy of the generated tokens of ``rows``, under ``model``, with gradients.

    Whole groups of a grouped rollout run each shared prompt once (see :func:`response_outputs`).
    """
    logits, _ = response_outputs(model, rollout, rows)
    return aligned_logprobs(logits, rollout.tokens[rows], temperature)


def response_outputs(
    model: torch.nn.Module, rollout: Rollout, rows: torch.Tensor, hidden: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``model``'s logits, and optionally last-layer hidden states, aligned to the generated tokens of ``rows``.

    Entry ``t`` of each (``(len(rows), T, ...)``) is the output at the position that predicts generated
    token ``t``: after the prompt and tokens ``< t``, i.e. state ``s_t`` (where a critic reads ``V(s_t)``).

    When ``rows`` are whole groups of a grouped rollout (``group_size`` consecutive rows sharing a
    prompt, in order), each group's prompt is run once and its KV cache is repeated for the group's
    completions: at ``K = 8`` that skips most of the forward's tokens, since prompts are usually
    longer than answers. Otherwise one forward over prompt plus completion per row. Both give the
    same numbers (up to float rounding; tested).
    """
    K = rollout.group_size
    starts = rows[::K] if K > 1 else rows
    grouped = K > 1 and len(rows) % K == 0 and bool((starts % K == 0).all())
    grouped = grouped and torch.equal(rows, (starts[:, None] + torch.arange(K, device=rows.device)).reshape(-1))
    # gradient checkpointing turns the KV cache off in training mode: one full forward per row then
    grouped = grouped and not checkpointing(getattr(model, "module", model))
    if not grouped:
        ids, att = sequence_inputs(rollout, rows)
        out = model(
            input_ids=ids, attention_mask=att, position_ids=positions(att), output_hidden_states=hidden, use_cache=False
        )
        # position P - 1 + t predicts generated token t
        window = slice(rollout.prompt_ids.shape[1] - 1, ids.shape[1] - 1)
        return out.logits[:, window], (out.hidden_states[-1][:, window] if hidden else None)
    prompt_ids, prompt_mask = rollout.prompt_ids[starts], rollout.prompt_mask[starts]
    out = model(
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        position_ids=positions(prompt_mask),
        use_cache=True,
        output_hidden_states=hidden,
        **last_logits_only(model),  # only the prompt's last position predicts a generated token
    )
    cache = kv_cache(out)
    cache.batch_repeat_interleave(K)  # every completion of a group attends to the same prompt keys and values
    tokens, mask = rollout.tokens[rows], rollout.mask[rows].long()
    att = torch.cat([prompt_mask.repeat_interleave(K, 0), mask], dim=1)
    pos = positions(att)[:, prompt_ids.shape[1] :]
    rest = model(
        input_ids=tokens,
        attention_mask=att,
        position_ids=pos,
        output_hidden_states=hidden,
        **{cache_argument(model): cache},
    )

    def align(prompt_out: torch.Tensor, completion_out: torch.Tensor) -> torch.Tensor:
        # the prompt's last position predicts the first generated token; generated token t predicts t + 1
        return torch.cat([prompt_out[:, -1:].repeat_interleave(K, 0), completion_out[:, :-1]], dim=1)

    states = align(out.hidden_states[-1], rest.hidden_states[-1]) if hidden else None
    return align(out.logits, rest.logits), states


def aligned_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0):
    """Log-probs of ``tokens`` and the entropy from ``logits[:, t]`` predicting ``tokens[:, t]``."""
    logits = logits.float()
    if temperature not in (0, 1):
        logits = logits / temperature
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all.gather(2, tokens[..., None])[..., 0]
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def checkpointing(model: torch.nn.Module) -> bool:
    """Whether activation (gradient) checkpointing is on (transformers 5 renamed the flag; read the new name first)."""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        if hasattr(type(model), name):
            return bool(getattr(model, name))
    return False
