"""The actor-critic module the learners train: a causal LM plus an optional scalar value head."""

from __future__ import annotations

import copy

import torch
from torch import nn

from agents.policy.models import positions
from agents.policy.sampling import Rollout
from agents.policy.scoring import aligned_logprobs, response_outputs


class Policy(nn.Module):
    """A causal LM with a scalar value head on its last hidden state (actor-critic).

    ``critic="shared"`` (default) puts the value head on the policy's own backbone, as TRL's
    ``AutoModelForCausalLMWithValueHead``; ``"separate"`` gives the critic its own copy of the
    backbone, so value-loss gradients never touch the policy; ``"none"`` has no critic.
    """

    def __init__(self, lm: nn.Module, critic: str = "shared") -> None:
        super().__init__()
        if critic not in ("shared", "separate", "none"):
            raise ValueError(f"critic must be 'shared', 'separate' or 'none', got {critic!r}.")
        self.lm = lm
        self.critic = critic
        hidden = lm.config.hidden_size
        self.critic_lm = copy.deepcopy(lm) if critic == "separate" else None
        self.value_head = nn.Linear(hidden, 1) if critic != "none" else None
        if self.value_head is not None:
            nn.init.zeros_(self.value_head.weight)  # V = 0 at start: no spurious advantages
            nn.init.zeros_(self.value_head.bias)

    def forward(
        self, rollout: Rollout, rows: torch.Tensor, temperature: float = 1.0, actor: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """``(log pi(a_t), entropy, V(s_t))`` for the generated tokens of ``rows`` of ``rollout``.

        The learners' one forward: under DDP it is the forward that the wrapper hooks, so a minibatch
        is one DDP forward whatever it runs inside. ``actor=False`` computes values only (``None``
        log-probs); the values are ``None`` without a critic. ``V(s_t)`` is read where token ``t`` is
        predicted: on the policy's own last hidden state with a shared critic, or on the critic
        backbone's at the same positions with a separate one. Whole groups run each shared prompt once
        (:func:`agents.policy.scoring.response_outputs`).
        """
        shared = self.critic == "shared"
        logp = entropy = hidden = None
        if actor or shared:
            logits, hidden = response_outputs(self.lm, rollout, rows, hidden=shared)
            if actor:
                logp, entropy = aligned_logprobs(logits, rollout.tokens[rows], temperature)
        if self.critic == "separate":
            _, hidden = response_outputs(self.critic_lm, rollout, rows, hidden=True)
        values = self.value_head(hidden).squeeze(-1).float() if self.value_head is not None else None
        return logp, entropy, values

    def sequence_forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Full forward: ``(logits, values)`` at every position (values ``None`` without a critic)."""
        if position_ids is None:
            position_ids = positions(attention_mask)
        want_hidden = self.critic == "shared"
        out = self.lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=want_hidden,
            use_cache=False,
        )
        values = None
        if self.critic == "shared":
            values = self.value_head(out.hidden_states[-1]).squeeze(-1)
        elif self.critic == "separate":
            hidden = self.critic_lm(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                output_hidden_states=True,
                use_cache=False,
            ).hidden_states[-1]
            values = self.value_head(hidden).squeeze(-1)
        return out.logits, values
