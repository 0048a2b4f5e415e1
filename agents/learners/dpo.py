"""Direct preference optimization (DPO) and IPO, offline on preference pairs: ``agent=dpo``.

For a prompt ``x`` with a preferred response ``y+`` and a rejected one ``y-``, the policy's implicit reward
of a response is ``r(x, y) = beta * (log pi(y | x) - log pi_ref(y | x))`` (sums over the response's tokens,
EOS included), and with ``h = [log pi(y+) - log pi_ref(y+)] - [log pi(y-) - log pi_ref(y-)]``:

* ``loss="sigmoid"`` (DPO, Rafailov et al. 2023): ``-log sigmoid(beta * h)``; with label smoothing
  ``eps`` (conservative DPO, Mitchell 2023; TRL's ``label_smoothing``), the pair's label is assumed
  flipped with probability ``eps``: ``-(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)``;
* ``loss="ipo"`` (IPO, Azar et al. 2023): ``(h - 1 / (2 beta))^2``, a squared loss that does not
  push ``h`` to infinity on deterministic preferences (the paper's sums of log-probs; TRL averages
  them per token instead).

The reference ``pi_ref`` is the run's frozen reference (the policy as RL starts, after any SFT warm
start); its log-probs of every pair are computed **once**, in the first iteration, and cached: they
never change, so recomputing them each step would only double the forwards. Each iteration is one
optimizer step on ``batch_size`` pairs, taken in order from a seeded shuffle of the pairs per epoch
(a pure function of the iteration, so a resumed run draws the same batches).

Pairs (``agent.data``): a preference JSONL (any shape
:func:`~lm_envs.tasks.chat.preferences.load_preference_jsonl` reads: HH-RLHF transcripts,
prompt/chosen/rejected strings or message lists), or ``synthetic``, the chat task's seeded synthetic
pairs ordered by the hidden gold rubric (:func:`~lm_envs.tasks.chat.preferences.synthetic_preferences`;
their prompts are ``LMEnv/Chat-v0``'s). The prompt is encoded exactly as the run's env encodes an
episode's prompt (:meth:`~lm_envs.core.episodes.EnvConfig.encode_prompt`: the chat template when the
env renders one), the response as the env's tokens would be, then EOS.

Offline DPO plays no episodes: its ``rollout/*`` metrics are NaN (``null`` in ``metrics.jsonl``); the
held-out evaluations of the run loop measure the env's reward. Logged per step: ``dpo/loss``,
``dpo/rewards_chosen`` and ``dpo/rewards_rejected`` (mean implicit rewards), ``dpo/reward_margin``
(their mean difference) and ``dpo/accuracy`` (fraction of pairs with ``r(y+) > r(y-)``).

Under ``torchrun`` (data parallel, DDP or FSDP): every rank draws the same ``batch_size`` pairs and
scores its contiguous share (``agent.batch_size`` must be at least the world size); each rank's loss
is its pairs' summed loss over the global ``batch_size``, times the world size, so DDP's average of
the gradients is the one-process gradient of the batch mean (:func:`global_dpo_loss`). Every rank
computes the reference log-probs of all pairs once. 2 processes end where 1 process ends
(``tests/agents/run/test_distributed.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from agents.learners.base import RunContext
from agents.learners.sft import collate
from agents.policy.actor_critic import Policy
from agents.policy.models import head_on_rows, positions
from lm_envs import TextCodec

LOSSES = ("sigmoid", "ipo")


@dataclass
class DPOConfig:
    """Offline DPO / IPO hyper-parameters (see the module docstring)."""

    learner: ClassVar[str] = "DPOLearner"
    name: str = "dpo"
    data: str | None = None  # preference JSONL path, or "synthetic" (the chat task's rubric-ordered pairs)
    num_pairs: int = 2000  # data=synthetic: how many pairs
    loss: str = "sigmoid"  # sigmoid (DPO) | ipo (IPO)
    beta: float = 0.1  # DPO's beta (KL strength); IPO's regularisation tau
    label_smoothing: float = 0.0  # sigmoid only: probability that a pair's label is flipped (cDPO), in [0, 0.5)
    lr: float = 1e-4  # Adam learning rate
    batch_size: int = 16  # pairs per optimizer step (one step per iteration)
    max_grad_norm: float = 1.0

    def check(self, run: Any = None) -> None:
        """Fail before any work on settings that cannot give a DPO run (called by ``validate``)."""
        if self.data is None or not str(self.data).strip():
            raise ValueError(
                "agent=dpo needs preference pairs: set agent.data=<chosen/rejected JSONL> or agent.data=synthetic "
                "(the chat task's rubric-ordered pairs, with env=chat)."
            )
        if self.data != "synthetic" and not Path(self.data).is_file():
            raise ValueError(
                f"agent.data={self.data!r} is not a file; give a preference JSONL or agent.data=synthetic."
            )
        if self.data == "synthetic" and self.num_pairs < 1:
            raise ValueError(f"agent.num_pairs must be >= 1 with agent.data=synthetic, got {self.num_pairs}.")
        check_dpo_loss(self.loss, self.beta, self.label_smoothing)


def check_dpo_loss(loss: str, beta: float, label_smoothing: float) -> None:
    """Raise a ``ValueError`` naming the key for an unknown loss, a beta <= 0 or a smoothing outside [0, 0.5)."""
    if loss not in LOSSES:
        raise ValueError(f"unknown agent.loss {loss!r}; choose one of {list(LOSSES)}.")
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
        raise ValueError(f"agent.beta must be a finite number > 0, got {beta!r}; DPO uses e.g. agent.beta=0.1.")
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"agent.label_smoothing must be in [0, 0.5), got {label_smoothing!r}.")
    if loss == "ipo" and label_smoothing:
        raise ValueError("agent.label_smoothing applies to loss=sigmoid only; set it to 0 with agent.loss=ipo.")


# --------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    loss: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The mean DPO or IPO loss over pairs, from sequence log-probs (``(B,)`` each), and its metrics.

    Returns:
        ``(loss, metrics)``; metrics: ``loss``, ``rewards_chosen`` / ``rewards_rejected`` (mean implicit
        rewards ``beta * (log pi - log pi_ref)``), ``reward_margin`` (their mean difference) and
        ``accuracy`` (fraction of pairs whose chosen reward is the larger).

    Example:
        >>> t = torch.tensor
        >>> loss, m = dpo_loss(t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0]), beta=0.5)
        >>> round(loss.item(), 4), m["reward_margin"], m["accuracy"]
        (0.3133, 1.0, 1.0)
    """
    per_pair, r_c, r_r = dpo_terms(
        policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, loss, label_smoothing
    )  # fmt: skip
    value = per_pair.mean()
    with torch.no_grad():
        metrics = {
            "loss": float(value),
            "rewards_chosen": float(r_c.mean()),
            "rewards_rejected": float(r_r.mean()),
            "reward_margin": float((r_c - r_r).mean()),
            "accuracy": float((r_c > r_r).float().mean()),
        }
    return value, metrics


def dpo_terms(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    loss: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(per-pair loss, implicit reward of chosen, of rejected)``, each ``(B,)``: what :func:`dpo_loss` averages.

    Example:
        >>> t = torch.tensor
        >>> [round(x.item(), 4) for x in dpo_terms(t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0]), beta=0.5)]
        [0.3133, 0.5, -0.5]
    """
    chosen = policy_chosen - ref_chosen
    rejected = policy_rejected - ref_rejected
    h = chosen - rejected
    if loss == "sigmoid":
        per_pair = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss == "ipo":
        per_pair = (h - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown DPO loss {loss!r}; choose one of {list(LOSSES)}.")
    return per_pair, (beta * chosen).detach(), (beta * rejected).detach()


def global_dpo_loss(
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    weights: torch.Tensor,
    total: float,
    cfg: Any,
    dist: Any,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The DPO loss of this rank's pairs under torch.distributed: their weighted sum over ``total`` global pairs.

    ``logps`` / ``ref_logps`` are ``(B_local, 2)`` (chosen, rejected); ``weights`` is 1 per real pair
    (0 for a placeholder pair, which a rank without pairs runs so that DDP still all-reduces). The
    loss is times the world size, since DDP averages the ranks' gradients: the ranks together take
    the gradient of the mean over all ``total`` pairs, the one-process update. The metrics are global
    means over the pairs (sums all-reduced), the same on every rank.
    """
    per_pair, r_c, r_r = dpo_terms(
        logps[:, 0], logps[:, 1], ref_logps[:, 0], ref_logps[:, 1], cfg.beta, cfg.loss, cfg.label_smoothing
    )  # fmt: skip
    w = weights.to(per_pair.dtype)
    value = (per_pair * w).sum() * (dist.world_size / total)
    with torch.no_grad():
        sums = {
            "loss": float((per_pair * w).sum()),
            "rewards_chosen": float((r_c * w).sum()),
            "rewards_rejected": float((r_r * w).sum()),
            "reward_margin": float(((r_c - r_r) * w).sum()),
            "accuracy": float(((r_c > r_r).to(w.dtype) * w).sum()),
        }
    return value, {k: v / total for k, v in dist.sum_floats(sums).items()}


# --------------------------------------------------------------------------------------------
# Sequence log-probs of (prompt, response) examples
# --------------------------------------------------------------------------------------------


def sequence_logps(
    model: torch.nn.Module, examples: Sequence[tuple[list[int], list[int]]], pad_id: int
) -> torch.Tensor:
    """``log pi(response | prompt)`` of each ``(prompt_ids, response_ids)``: the sum over the response's tokens.

    One right-padded forward; only the positions that predict a response token go through the LM head.
    """
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in collate(examples, pad_id).items()}
    att, labels = batch["attention_mask"], batch["labels"][:, 1:]
    keep = labels != -100  # position t predicts token t + 1
    with head_on_rows(model, F.pad(keep, (0, 1))):
        logits = model(input_ids=batch["input_ids"], attention_mask=att, position_ids=positions(att)).logits
    if logits.dim() == 3:  # no hookable head: every position was computed
        logits = logits[:, :-1][keep]
    logp = torch.log_softmax(logits.float(), -1).gather(1, labels[keep][:, None])[:, 0]
    rows = keep.nonzero()[:, 0]  # boolean indexing is row-major: each kept position's row
    return torch.zeros(len(examples), device=device, dtype=logp.dtype).index_add(0, rows, logp)


# --------------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------------


@dataclass
class EncodedPair:
    """A preference pair as token ids: the prompt as the env encodes it, each response plus EOS."""

    prompt: list[int]
    chosen: list[int]
    rejected: list[int]


def load_pairs(data: str, num_pairs: int, seed: int) -> list[Any]:
    """The :class:`~lm_envs.tasks.chat.preferences.PreferencePair` list of ``agent.data``."""
    from lm_envs.tasks.chat.preferences import load_preference_jsonl, synthetic_preferences

    if data == "synthetic":
        return synthetic_preferences(num_pairs, seed=seed, split="train")
    return load_preference_jsonl(data)


def encode_pairs(pairs: Sequence[Any], codec: TextCodec, env_config: Any, max_length: int | None) -> list[EncodedPair]:
    """Token ids of every pair, tokenized as the env tokenizes an episode of its prompt.

    Responses longer than the env's ``max_new_tokens`` are cut there (the env would never produce more
    tokens; the EOS is then dropped, as for a truncated episode).

    Raises:
        ValueError: When a prompt is over the env's ``max_prompt_tokens`` or a pair does not fit
            ``max_length`` (the model's positions), naming the pair.
    """
    out = []
    budget = env_config.max_new_tokens
    for i, pair in enumerate(pairs):
        prompt = env_config.encode_prompt(codec, pair.prompt)
        where = pair.metadata.get("line", i)
        if len(prompt) > env_config.max_prompt_tokens:
            raise ValueError(
                f"preference pair {where}: its prompt takes {len(prompt)} tokens, over the env's max_prompt_tokens="
                f"{env_config.max_prompt_tokens}; raise env.kwargs.max_prompt_tokens or drop the pair."
            )
        chosen, rejected = [(codec.encode(t) + [codec.eos_token_id])[:budget] for t in (pair.chosen, pair.rejected)]
        if max_length is not None and len(prompt) + max(len(chosen), len(rejected)) > max_length:
            raise ValueError(
                f"preference pair {where} takes {len(prompt) + max(len(chosen), len(rejected))} tokens, over the "
                f"model's {max_length} positions; lower env.kwargs.max_new_tokens or use a model with more positions."
            )
        out.append(EncodedPair(prompt, chosen, rejected))
    return out


def pair_logps(model: torch.nn.Module, pairs: Sequence[EncodedPair], pad_id: int) -> torch.Tensor:
    """``(len(pairs), 2)``: ``log pi`` of each pair's chosen and rejected response, in one forward."""
    examples = [(p.prompt, resp) for p in pairs for resp in (p.chosen, p.rejected)]
    return sequence_logps(model, examples, pad_id).view(-1, 2)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The seeded order of ``n`` pairs in ``epoch``."""
    return np.random.default_rng([seed, 23, epoch]).permutation(n)


def batch_indices(n: int, batch_size: int, seed: int, it: int) -> list[int]:
    """Pair indices of iteration ``it``: the next ``batch_size`` of the per-epoch shuffles, laid end to end."""
    start = it * batch_size
    out: list[int] = []
    while len(out) < batch_size:
        epoch, pos = divmod(start + len(out), n)
        out.append(int(epoch_order(n, seed, epoch)[pos]))
    return out


def no_rollout_metrics() -> dict[str, float]:
    """The required ``rollout/*`` metrics of a learner that plays no episodes: NaN (``null`` in metrics.jsonl)."""
    nan = float("nan")
    return {"rollout/return_mean": nan, "rollout/success": nan, "rollout/tokens_per_s": nan}


class DPOLearner:
    """Offline DPO / IPO as a :class:`~agents.learners.base.Learner` (see the module docstring)."""

    def __init__(self, cfg: DPOConfig, lm: torch.nn.Module, ctx: RunContext) -> None:
        import gymnasium as gym

        cfg.check(None)
        if cfg.batch_size < ctx.dist.world_size:
            raise ValueError(
                f"agent.batch_size={cfg.batch_size} pairs is fewer than the {ctx.dist.world_size} processes: every "
                "rank needs a pair per step. Raise agent.batch_size or use fewer processes."
            )
        self.cfg, self.ctx = cfg, ctx
        self.policy = Policy(lm, critic="none")
        self.lm = ctx.dist.wrap(lm)  # DDP under torchrun (FSDP shards in place): build the optimizer after
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr, eps=1e-5)
        env_config = gym.make(ctx.env_id, **ctx.env_kwargs).unwrapped.episodes.config
        config = getattr(lm, "config", None)
        positions_ = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
        self.pairs = encode_pairs(load_pairs(cfg.data, cfg.num_pairs, ctx.seed), ctx.codec, env_config, positions_)
        if not self.pairs:
            raise ValueError(f"agent.data={cfg.data!r} holds no preference pairs.")
        self.ref_logps: torch.Tensor | None = None  # (N, 2), computed once
        self.reference_passes = 0  # how many times the reference log-probs were computed (tests read it)

    def uses_reference(self) -> bool:
        return True

    @torch.no_grad()
    def reference_logps(self, ref: torch.nn.Module) -> torch.Tensor:
        """The reference's log-probs of every pair, computed on the first call and cached."""
        if self.ref_logps is None:
            chunk = max(1, self.cfg.batch_size)
            with self.ctx.precision.autocast():
                parts = [
                    pair_logps(ref, self.pairs[s : s + chunk], self.ctx.codec.pad_token_id)
                    for s in range(0, len(self.pairs), chunk)
                ]
            self.ref_logps = torch.cat(parts).float()
            self.reference_passes += 1
        return self.ref_logps

    def iteration(self, it: int, ref: torch.nn.Module | None) -> dict[str, float]:
        if ref is None:
            raise RuntimeError("DPO needs the frozen reference model; the run loop builds it when uses_reference().")
        t0 = time.time()
        ref_logps = self.reference_logps(ref)
        rows = batch_indices(len(self.pairs), self.cfg.batch_size, self.ctx.seed, it)
        dist = self.ctx.dist
        if dist.distributed:  # each rank scores its contiguous share of the batch (>= 1 pair: checked)
            rows = [int(i) for i in np.array_split(np.asarray(rows), dist.world_size)[dist.rank]]
        self.lm.train()
        with self.ctx.precision.autocast():
            logps = pair_logps(self.lm, [self.pairs[i] for i in rows], self.ctx.codec.pad_token_id)
        ref_rows = ref_logps[torch.tensor(rows, device=ref_logps.device)]
        if dist.distributed:  # the mean over the global batch: the one-process update
            weights = torch.ones(len(rows), device=logps.device)
            loss, stats = global_dpo_loss(logps, ref_rows, weights, self.cfg.batch_size, self.cfg, dist)
        else:
            loss, stats = dpo_loss(
                logps[:, 0], logps[:, 1], ref_rows[:, 0], ref_rows[:, 1], self.cfg.beta, self.cfg.loss,
                self.cfg.label_smoothing,
            )  # fmt: skip
        if not torch.isfinite(loss):
            raise FloatingPointError(f"DPO loss became {loss.item()}; lower agent.lr.")
        self.optimizer.zero_grad(set_to_none=True)
        self.ctx.precision.backward(loss)
        self.ctx.precision.step(self.optimizer, self.policy.parameters(), self.cfg.max_grad_norm, "the DPO gradient")
        self.lm.eval()
        metrics = {f"dpo/{k}": v for k, v in stats.items()}
        metrics["dpo/epoch"] = (it + 1) * self.cfg.batch_size / len(self.pairs)
        metrics.update(no_rollout_metrics())
        metrics["time/iteration_s"] = time.time() - t0
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {}  # the batches are a function of the iteration; the reference log-probs are recomputed once

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
