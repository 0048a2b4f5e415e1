"""Online (iterative) DPO and self-rewarding: ``agent=online_dpo``.

Each iteration:

1. sample ``K = group_size >= 2`` completions of each of ``num_envs / K`` env prompts from the policy
   (the same rollout GRPO collects);
2. score them with the ranker (``agent.ranker``):

   * ``env``: the env's episode return (Guo et al. 2024's online AI feedback with a verifier for a judge;
     RLHFlow / OpenRLHF's iterative DPO with a reward function);
   * ``reward_model``: a one-output sequence classifier (``agent.reward_model=<dir>``, e.g. from
     ``lm-envs train-rm``) on ``prompt + completion``;
   * ``self``: **self-rewarding** (Yuan et al. 2024): the policy itself judges each sample with an
     LLM-as-a-judge prompt (``agent.judge_template``, with ``{prompt}`` and ``{response}``); the score is
     the expected value of the judge's next-token distribution over ``agent.judge_choices``
     (``"1".."5"`` by default, each one token; renormalised over them), read right after the
     rendered judge prompt, so it is continuous and needs no sampling. With
     ``agent.judge_mode=generate`` the judge instead *writes* a short judgement (greedy, at most
     ``agent.judge_max_tokens``) and the score is parsed from it (``agent.judge_pattern``'s group, one of
     ``judge_choices``), as Yuan et al.'s LLM-as-a-judge prompt ends in "Score: N". A judgement without
     a parsable score leaves its sample out of pairing (bounded: a group with fewer than two scored
     samples gives no pair); ``judge/unparsed`` and ``judge/unparsed_fraction`` count them;

3. form one pair per prompt, (best, worst) by the ranker, skipping prompts whose samples all tie;
4. take ``agent.iterations`` DPO / IPO steps on those pairs (the loss of :mod:`agents.learners.dpo`,
   sequence log-probs of the sampled token ids at temperature 1, against the run's frozen reference,
   whose log-probs of the pairs are computed once per iteration);
5. with ``agent.ref_update_every = k > 0``, after every ``k``-th iteration the reference becomes the
   current policy. This is Yuan et al. 2024's self-rewarding loop (arXiv 2401.10020, §2.3): model
   ``M_t`` generates, judges its own samples and is the DPO reference while ``M_{t+1}`` is trained.
   With ``k = 1`` every iteration is one such step (sampler, judge and reference are the same
   ``M_t``); with ``k > 1`` the policy keeps sampling and judging on-policy while the reference lags by
   up to ``k`` iterations. ``k = 0`` (default) keeps the run's reference, the policy as RL starts. The
   moved reference is saved in every checkpoint (``step-N/reference.safetensors``), so a resumed run
   continues bit for bit; logged as ``ref/updated`` (1 on the iterations that moved it).

Logged every iteration beside the rollout metrics and the DPO metrics: how many prompts gave a pair,
the chosen and rejected completions' lengths and env returns (length bias: does the ranker prefer
longer answers?), and, for a ranker other than the env, its agreement with the env's true reward:
``rank/pairwise_accuracy`` (within each prompt's samples, over the pairs whose env returns differ, the
fraction the ranker orders the same way, ties counted half), ``rank/spearman`` (rank correlation of
ranker scores and env returns over the batch), ``rank/pair_env_accuracy`` (the formed pairs whose
chosen sample has the higher env return, among those that differ) and ``rank/length_spearman`` (rank
correlation of ranker scores and completion lengths). The seed material warns that a self-judge drifts
and prefers length: these curves show whether it does.

Under ``torchrun`` (data parallel): each rank samples, ranks and pairs its own whole groups (the
union is the one-process rollout, see :func:`~agents.learners.base.collect_iteration`); the loss is
normalised by the number of pairs over every rank, so 2 processes take the one-process step
(:meth:`OnlineDPOLearner.update`), and every logged number is over the global batch.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from agents.learners.base import (
    RunContext,
    collect_iteration,
    curriculum_metrics,
    curriculum_state,
    load_curriculum_state,
    make_train_venv,
    rollout_metrics,
)
from agents.learners.dpo import check_dpo_loss, dpo_loss, global_dpo_loss
from agents.policy.actor_critic import Policy
from agents.policy.models import positions
from agents.policy.sampling import Rollout
from agents.policy.scoring import policy_logprobs
from lm_envs import TextCodec

RANKERS = ("env", "reward_model", "self")
JUDGE_MODES = ("expected", "generate")

#: An example judge prompt for the math env (``conf/agent/self_rewarding.yaml`` uses it).
MATH_JUDGE_TEMPLATE = (
    "Problem: {prompt}\nProposed solution:\n{response}\n"
    "Rate the solution from 1 (wrong) to 5 (correct and clear).\nScore: "
)


@dataclass
class OnlineDPOConfig:
    """Online DPO / self-rewarding hyper-parameters (see the module docstring)."""

    learner: ClassVar[str] = "OnlineDPOLearner"
    name: str = "online_dpo"
    num_envs: int = 64  # episodes per rollout
    group_size: int = 4  # K samples per prompt (>= 2: a pair needs two)
    temperature: float = 1.0  # sampling temperature
    loss: str = "sigmoid"  # sigmoid (DPO) | ipo
    beta: float = 0.1
    label_smoothing: float = 0.0
    lr: float = 2e-5  # Adam learning rate
    iterations: int = 1  # DPO steps on each iteration's pairs
    max_grad_norm: float = 1.0
    ranker: str = "env"  # env | reward_model | self (self-rewarding: the policy judges its samples)
    reward_model: str | None = None  # ranker=reward_model: dir of a one-output sequence classifier
    judge_template: str | None = None  # ranker=self: the judge prompt, with {prompt} and {response}
    judge_choices: list[str] = field(default_factory=lambda: ["1", "2", "3", "4", "5"])  # scores 1..n, one token each
    # How the self-judge scores (ranker=self): expected = the expected score under its next-token distribution
    # over judge_choices (continuous, no sampling); generate = LLM-as-a-judge as in Yuan et al. 2024 (§2.2, a
    # 5-point additive prompt answered "Score: N"): the judge writes up to judge_max_tokens greedily and the
    # first match of judge_pattern's group, which must be one of judge_choices, is the score (its position,
    # 1..n, as in expected mode). A judgement with no such match scores nothing: the sample takes no part in
    # pairing (a group with fewer than two scored samples gives no pair); logged as judge/unparsed.
    judge_mode: str = "expected"  # expected | generate
    judge_max_tokens: int = 16
    judge_pattern: str = r"(\d+)"
    # Self-rewarding's iterations (Yuan et al. 2024, arXiv 2401.10020): M_t samples, judges and is the DPO
    # reference of M_{t+1}. Every this many iterations the reference becomes the current policy (checkpointed
    # with the run); 0: off, the reference stays the policy as RL starts.
    ref_update_every: int = 0

    def check(self, run: Any = None) -> None:
        """Fail before any work on settings that cannot give an online DPO run (called by ``validate``)."""
        if self.group_size < 2:
            raise ValueError(
                f"agent=online_dpo forms (best, worst) pairs among each prompt's samples: agent.group_size must be "
                f">= 2, got {self.group_size}."
            )
        check_dpo_loss(self.loss, self.beta, self.label_smoothing)
        if not isinstance(self.ref_update_every, int) or self.ref_update_every < 0:
            raise ValueError(
                f"agent.ref_update_every must be an integer >= 0 (0: a fixed reference), got {self.ref_update_every!r}."
            )
        lora = getattr(getattr(getattr(run, "model", None), "lora", None), "r", 0)
        if self.ref_update_every and lora:
            raise ValueError(
                "agent.ref_update_every moves the reference to the policy, but under LoRA (model.lora.r > 0) the "
                "reference is the base weights with the adapters off; set model.lora.r=0 or agent.ref_update_every=0."
            )
        if self.ranker not in RANKERS:
            raise ValueError(f"unknown agent.ranker {self.ranker!r}; choose one of {list(RANKERS)}.")
        if self.ranker == "reward_model" and (
            self.reward_model is None or not (Path(self.reward_model) / "config.json").is_file()
        ):
            raise ValueError(
                f"agent.ranker=reward_model needs agent.reward_model=<dir of a one-output sequence classifier> "
                f"(e.g. from `lm-envs train-rm`), got {self.reward_model!r}."
            )
        if self.judge_mode not in JUDGE_MODES:
            raise ValueError(f"unknown agent.judge_mode {self.judge_mode!r}; choose one of {list(JUDGE_MODES)}.")
        if self.judge_mode != "expected" and self.ranker != "self":
            raise ValueError(
                f"agent.judge_mode={self.judge_mode} applies to the self-judge: set agent.ranker=self "
                f"(agent=self_rewarding), or leave agent.judge_mode=expected with agent.ranker={self.ranker}."
            )
        if self.ranker == "self":
            template = self.judge_template
            if not template or "{response}" not in template or "{prompt}" not in template:
                raise ValueError(
                    "agent.ranker=self (self-rewarding) needs a judge prompt: set agent.judge_template to a text "
                    "with {prompt} and {response} that ends where the score goes (e.g. agent=self_rewarding)."
                )
            if self.judge_mode == "generate":
                check_judge_pattern(self.judge_pattern)
                if not isinstance(self.judge_max_tokens, int) or self.judge_max_tokens < 1:
                    raise ValueError(f"agent.judge_max_tokens must be >= 1, got {self.judge_max_tokens!r}.")
            if len(self.judge_choices) < 2 or len(set(self.judge_choices)) != len(self.judge_choices):
                raise ValueError(
                    f"agent.judge_choices must be >= 2 distinct score strings, got {list(self.judge_choices)}."
                )


# --------------------------------------------------------------------------------------------
# Rankings, pairs and agreement
# --------------------------------------------------------------------------------------------


def best_worst_pairs(scores: torch.Tensor, group_size: int, tol: float = 1e-9) -> list[tuple[int, int]]:
    """``(best, worst)`` row indices of each group of ``group_size`` rows; groups whose scores all tie are skipped.

    NaN scores (no score) take no part: a group with fewer than two scored rows is skipped too.

    Example:
        >>> best_worst_pairs(torch.tensor([0.0, 1.0, 0.5, 0.2, 0.2, 0.2]), 3)
        [(1, 0)]
    """
    g = scores.detach().float().view(-1, group_size)
    scored = ~torch.isnan(g)  # a judgement without a parsable score (judge_mode=generate) is NaN: left out
    hi, lo = g.masked_fill(~scored, -torch.inf), g.masked_fill(~scored, torch.inf)
    best, worst = hi.argmax(1), lo.argmin(1)
    keep = (scored.sum(1) >= 2) & ((hi.max(1).values - lo.min(1).values) > tol)
    base = torch.arange(len(g)) * group_size
    return [(int(base[i] + best[i]), int(base[i] + worst[i])) for i in range(len(g)) if keep[i]]


def average_ranks(x: Sequence[float]) -> np.ndarray:
    """1-based ranks of ``x``, ties given their average rank.

    Example:
        >>> average_ranks([3.0, 1.0, 3.0]).tolist()
        [2.5, 1.0, 2.5]
    """
    v = np.asarray(x, dtype=float)
    ranks = np.empty(len(v))
    ranks[np.argsort(v, kind="stable")] = np.arange(1, len(v) + 1)
    for u in np.unique(v):
        tied = v == u
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties, NaN entries left out); NaN when either side is constant.

    Example:
        >>> spearman([1, 2, 3], [10, 30, 20]), spearman([1, 2, 3], [3, 2, 1])
        (0.5, -1.0)
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    both = ~(np.isnan(x) | np.isnan(y))  # unscored entries (NaN) are left out
    if both.sum() < 2:
        return float("nan")
    rx, ry = average_ranks(x[both]), average_ranks(y[both])
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def pairwise_accuracy(scores: Sequence[float], truth: Sequence[float], group_size: int) -> float:
    """Within each group, over the pairs whose ``truth`` differs: how often ``scores`` order them the same way.

    A tie in ``scores`` counts half; NaN when no pair differs in ``truth``.

    Example:
        >>> pairwise_accuracy([0.9, 0.1, 0.5, 0.5], [1.0, 0.0, 1.0, 0.0], 2)
        0.75
    """
    s, t = np.asarray(scores, float).reshape(-1, group_size), np.asarray(truth, float).reshape(-1, group_size)
    right, total = 0.0, 0
    for a, b in zip(s, t, strict=True):
        for i in range(group_size):
            for j in range(i + 1, group_size):
                if b[i] == b[j] or np.isnan(a[i]) or np.isnan(a[j]):  # equal truth, or an unscored sample
                    continue
                total += 1
                d = (a[i] - a[j]) * (b[i] - b[j])
                right += 1.0 if d > 0 else 0.5 if a[i] == a[j] else 0.0
    return right / total if total else float("nan")


def ranking_metrics(
    scores: torch.Tensor, env_returns: torch.Tensor, lengths: torch.Tensor, pairs: list[tuple[int, int]], K: int
) -> dict[str, float]:
    """The ranker's agreement with the env's true reward and its length bias (see the module docstring)."""
    s = scores.cpu().double().numpy()
    r, n = env_returns.cpu().double().tolist(), lengths.cpu().double().tolist()
    differ = [(b, w) for b, w in pairs if r[b] != r[w]]
    return {
        "rank/pairwise_accuracy": pairwise_accuracy(s, r, K),
        "rank/spearman": spearman(s, r),
        "rank/pair_env_accuracy": float(np.mean([r[b] > r[w] for b, w in differ])) if differ else float("nan"),
        "rank/length_spearman": spearman(s, n),
        "rank/score_mean": float(np.nanmean(s)) if not np.isnan(s).all() else float("nan"),
    }


# --------------------------------------------------------------------------------------------
# The self-judge
# --------------------------------------------------------------------------------------------


def choice_token_ids(codec: TextCodec, choices: Sequence[str]) -> list[int]:
    """The one token id of each judge choice.

    Raises:
        ValueError: When a choice is not exactly one token of the tokenizer, naming it.
    """
    ids = []
    for choice in choices:
        enc = codec.encode(choice)
        if len(enc) != 1:
            raise ValueError(
                f"judge choice {choice!r} is {len(enc)} tokens of tokenizer {codec.name!r}; agent.judge_choices must "
                "be one token each (e.g. digits without a leading space)."
            )
        ids.append(enc[0])
    return ids


def judge_inputs(
    codec: TextCodec,
    env_config: Any,
    template: str,
    prompts: Sequence[str],
    responses: Sequence[str],
    max_length: int | None,
    device: torch.device,
    left: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of the rendered judge prompts, padded right (or ``left``).

    Each is ``template.format(prompt=..., response=...)`` encoded as the env encodes a prompt (chat
    template included); one longer than ``max_length`` keeps its end (where the question is asked).
    """
    ids = [
        env_config.encode_prompt(codec, template.format(prompt=p, response=r))
        for p, r in zip(prompts, responses, strict=True)
    ]
    if max_length is not None:
        ids = [x[-max_length:] for x in ids]
    width = max(len(x) for x in ids)
    inp = torch.full((len(ids), width), codec.pad_token_id, dtype=torch.long, device=device)
    att = torch.zeros((len(ids), width), dtype=torch.long, device=device)
    for i, x in enumerate(ids):
        cols = slice(width - len(x), width) if left else slice(0, len(x))
        inp[i, cols], att[i, cols] = torch.tensor(x, device=device), 1
    return inp, att


@torch.no_grad()
def judge_scores(
    model: torch.nn.Module,
    codec: TextCodec,
    env_config: Any,
    template: str,
    prompts: Sequence[str],
    responses: Sequence[str],
    choice_ids: Sequence[int],
    max_length: int | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """The judge's expected score (1..n) of each response: ``sum_k k * p(choice_k)`` renormalised over the choices.

    The judge prompt is ``template.format(prompt=..., response=...)``, encoded as the env encodes a prompt
    (chat template included); one longer than ``max_length`` keeps its end (where the question is asked).
    """
    device = next(model.parameters()).device
    values = torch.arange(1, len(choice_ids) + 1, device=device, dtype=torch.float32)
    choice = torch.tensor(list(choice_ids), device=device)
    out = []
    for s in range(0, len(prompts), batch_size):
        inp, att = judge_inputs(
            codec, env_config, template, prompts[s : s + batch_size], responses[s : s + batch_size], max_length, device
        )
        logits = model(input_ids=inp, attention_mask=att, position_ids=positions(att)).logits
        last = logits[torch.arange(len(inp), device=device), att.sum(1) - 1].float()
        probs = torch.softmax(last[:, choice], -1)
        out.append(probs @ values)
    return torch.cat(out)


def check_judge_pattern(pattern: str) -> None:
    """Refuse a ``agent.judge_pattern`` that is not a regular expression with exactly one group."""
    try:
        groups = re.compile(pattern).groups
    except (re.error, TypeError) as err:
        raise ValueError(f"agent.judge_pattern={pattern!r} is not a regular expression ({err}).") from None
    if groups != 1:
        raise ValueError(
            f"agent.judge_pattern={pattern!r} has {groups} groups; it needs exactly one, around the score "
            "(e.g. 'Score: *(\\d+)')."
        )


def parse_judgement(text: str, pattern: str, choices: Sequence[str]) -> float:
    r"""The score a generated judgement gives: the position (1..n) in ``choices`` of ``pattern``'s first match.

    NaN (no score) when nothing matches or the match is not one of ``choices``.

    Example:
        >>> choices = ["0", "1", "2", "3", "4", "5"]  # Yuan et al.'s additive 0-5 points
        >>> [parse_judgement(t, r"Score: *(\d+)", choices) for t in ("...so Score: 4", "Score: 9", "great")]
        [5.0, nan, nan]
    """
    match = re.search(pattern, text)
    if match is None or match.group(1) is None:
        return float("nan")
    value = match.group(1).strip()
    return float(list(choices).index(value) + 1) if value in choices else float("nan")


@torch.no_grad()
def judge_generate(
    model: torch.nn.Module,
    codec: TextCodec,
    env_config: Any,
    template: str,
    prompts: Sequence[str],
    responses: Sequence[str],
    max_new_tokens: int,
    max_length: int | None = None,
    batch_size: int = 64,
) -> list[str]:
    """The text the judge writes greedily after each rendered judge prompt: up to ``max_new_tokens`` or its EOS.

    The judge prompt is encoded as in :func:`judge_scores` (one longer than ``max_length -
    max_new_tokens`` keeps its end); prompts are left-padded and every step runs one forward over the
    whole batch (no KV cache: judgements are a few tokens).
    """
    device = next(model.parameters()).device
    budget = None if max_length is None else max(1, max_length - max_new_tokens)
    out: list[str] = []
    for s in range(0, len(prompts), batch_size):
        inp, att = judge_inputs(
            codec, env_config, template, prompts[s : s + batch_size], responses[s : s + batch_size], budget, device,
            left=True,
        )  # fmt: skip
        done = torch.zeros(len(inp), dtype=torch.bool, device=device)
        written: list[torch.Tensor] = []
        for _ in range(max_new_tokens):
            logits = model(input_ids=inp, attention_mask=att, position_ids=positions(att)).logits[:, -1]
            token = torch.where(done, codec.pad_token_id, logits.float().argmax(-1))
            written.append(token)
            inp, att = torch.cat([inp, token[:, None]], 1), torch.cat([att, (~done).long()[:, None]], 1)
            done = done | (token == codec.eos_token_id)
            if bool(done.all()):
                break
        for row in torch.stack(written, 1).tolist():
            end = row.index(codec.eos_token_id) if codec.eos_token_id in row else len(row)
            out.append(codec.decode(row[:end]))
    return out


# --------------------------------------------------------------------------------------------
# The learner
# --------------------------------------------------------------------------------------------


def sequence_sum_logps(model: torch.nn.Module, rollout: Rollout, rows: torch.Tensor) -> torch.Tensor:
    """``log pi`` of each row's sampled tokens (the policy's, at temperature 1), summed: ``(len(rows),)``."""
    logp, _ = policy_logprobs(model, rollout, rows, 1.0)
    return (logp * rollout.action_mask[rows].float()).sum(1)


class OnlineDPOLearner:
    """Online DPO / self-rewarding as a :class:`~agents.learners.base.Learner` (see the module docstring)."""

    def __init__(self, cfg: OnlineDPOConfig, lm: torch.nn.Module, ctx: RunContext) -> None:
        import gymnasium as gym

        cfg.check(None)
        self.cfg, self.ctx = cfg, ctx
        self.policy = Policy(lm, critic="none")
        self.lm = ctx.dist.wrap(lm)  # DDP under torchrun (FSDP shards in place): build the optimizer after
        self.venv = make_train_venv(cfg, ctx)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr, eps=1e-5)
        self.scorer = None
        if cfg.ranker == "reward_model":
            from lm_envs.tasks.chat.reward import load_scorer

            self.scorer = load_scorer(str(cfg.reward_model), str(ctx.device))
        self.choice_ids: list[int] = []
        self.judgements: list[str] = []  # judge_mode=generate: the last rollout's judgements (tests read them)
        if cfg.ranker == "self":
            if cfg.judge_mode == "expected":
                self.choice_ids = choice_token_ids(ctx.codec, cfg.judge_choices)
            self.env_config = gym.make(ctx.env_id, **ctx.env_kwargs).unwrapped.episodes.config
            config = getattr(lm, "config", None)
            self.max_length = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)

    def uses_reference(self) -> bool:
        return True

    def updates_reference(self) -> bool:
        """Whether :meth:`iteration` moves the reference (``agent.ref_update_every``); the loop then checkpoints it."""
        return self.cfg.ref_update_every > 0

    def update_reference(self, ref: torch.nn.Module) -> None:
        """The reference becomes the current policy, weight for weight.

        Under FSDP both are sharded alike (the reference is a sharded copy of the same model), so each
        rank copies its own shards, nothing gathered; a root left unsharded after its last forward (FSDP2
        keeps the root's weights for the backward) is resharded first.
        """
        if not self.ctx.dist.fsdp:
            with torch.no_grad():
                ref.load_state_dict(self.policy.lm.state_dict())
            return
        from torch.distributed.fsdp import FSDPModule

        for unit in (*ref.modules(), *self.policy.lm.modules()):
            if isinstance(unit, FSDPModule):
                unit.reshard()
        mine = dict(self.policy.lm.named_parameters())
        with torch.no_grad():
            for name, p in ref.named_parameters():
                p.copy_(mine[name])

    def rank(self, rollout: Rollout) -> torch.Tensor:
        """The ranker's score of every episode of ``rollout``."""
        if self.cfg.ranker == "env":
            return rollout.returns.float()
        prompts = [info["prompt"] for info in rollout.reset_infos]
        completions = [info.get("completion", "") for info in rollout.infos]
        if self.cfg.ranker == "reward_model":
            return torch.tensor(self.scorer.score([p + c for p, c in zip(prompts, completions, strict=True)]))
        if self.cfg.judge_mode == "generate":
            with self.ctx.precision.autocast(), self.ctx.dist.gathered(self.policy.lm):
                texts = judge_generate(
                    self.policy.lm, self.ctx.codec, self.env_config, str(self.cfg.judge_template), prompts,
                    completions, self.cfg.judge_max_tokens, self.max_length,
                )  # fmt: skip
            self.judgements = texts
            choices = list(self.cfg.judge_choices)
            return torch.tensor([parse_judgement(t, self.cfg.judge_pattern, choices) for t in texts])
        with self.ctx.precision.autocast(), self.ctx.dist.gathered(self.policy.lm):  # FSDP: ranks' forwards differ
            return judge_scores(
                self.policy.lm, self.ctx.codec, self.env_config, str(self.cfg.judge_template), prompts, completions,
                self.choice_ids, self.max_length,
            ).cpu()  # fmt: skip

    def iteration(self, it: int, ref: torch.nn.Module | None) -> dict[str, float]:
        if ref is None:
            raise RuntimeError("online DPO needs the frozen reference model; the loop builds it when uses_reference().")
        t0 = time.time()
        dist = self.ctx.dist
        generator = self.ctx.generator(it)
        rollout, t_rollout = collect_iteration(self.policy.lm, self.venv, self.cfg, self.ctx, it, generator)
        t1 = time.time()
        scores = self.rank(rollout)
        t_rank = time.time() - t1
        K = rollout.group_size
        pairs = best_worst_pairs(scores, K)  # this rank's groups (groups are never split across ranks)
        returns = rollout.returns.float().cpu()
        lengths = rollout.action_mask.sum(1).float().cpu()
        b, w = [p[0] for p in pairs], [p[1] for p in pairs]
        sums = dist.sum_floats(
            {
                "formed": float(len(pairs)),
                "groups": float(len(scores) // K),
                "chosen_length": float(lengths[b].double().sum()),
                "rejected_length": float(lengths[w].double().sum()),
                "chosen_return": float(returns[b].double().sum()),
                "rejected_return": float(returns[w].double().sum()),
            }
        )
        total = sums.pop("formed")  # pairs over every rank
        groups = sums.pop("groups")
        metrics: dict[str, float] = {
            "pairs/formed": total,
            "pairs/tied_fraction": 1.0 - total / max(1.0, groups),
            "time/rank_s": t_rank,
        }
        if total > 0:  # the same decision on every rank
            metrics.update({f"pairs/{k}": v / total for k, v in sums.items()})
            metrics.update(self.update(rollout, ref, pairs, total))
        if self.cfg.judge_mode == "generate":  # judgements without a parsable score: their samples were left out
            unparsed = dist.sum_floats({"n": float(torch.isnan(scores).sum()), "of": float(len(scores))})
            metrics["judge/unparsed"] = unparsed["n"]
            metrics["judge/unparsed_fraction"] = unparsed["n"] / max(1.0, unparsed["of"])
        if self.cfg.ranker != "env":
            metrics.update(self.global_ranking_metrics(scores, returns, lengths, pairs, K))
        metrics.update(rollout_metrics(rollout, t_rollout, self.venv.episodes.reward, dist))
        metrics.update(curriculum_metrics(self.venv))
        every = self.cfg.ref_update_every
        if every:  # Yuan et al.: the model this iteration trained becomes the next iterations' reference
            boundary = (it + 1) % every == 0
            if boundary:
                self.update_reference(ref)
            metrics["ref/updated"] = float(boundary)
        metrics["time/iteration_s"] = time.time() - t0
        return metrics

    def update(
        self, rollout: Rollout, ref: torch.nn.Module, pairs: list[tuple[int, int]], total: float
    ) -> dict[str, float]:
        """``agent.iterations`` DPO steps on the pairs; returns the ``dpo/*`` metrics (means over the steps).

        Under torch.distributed each rank holds the pairs of its own groups; its loss is their summed
        loss over the ``total`` pairs of every rank, times the world size (:func:`global_dpo_loss`),
        so DDP's averaged gradient is the one-process gradient of the mean over all pairs. A rank
        whose groups all tie runs a placeholder pair of weight 0, so that it still takes part in
        DDP's all-reduce.
        """
        dist = self.ctx.dist
        local = pairs or [(0, 0)]
        weights = torch.tensor([1.0 if pairs else 0.0] * len(local), device=rollout.tokens.device)
        rows = torch.tensor([i for p in local for i in p], device=rollout.tokens.device)
        with torch.no_grad(), self.ctx.precision.autocast():
            ref_logps = sequence_sum_logps(ref, rollout, rows).float().view(-1, 2)
        stats: dict[str, list[float]] = {}
        self.lm.train()
        for _ in range(self.cfg.iterations):
            with self.ctx.precision.autocast():
                logps = sequence_sum_logps(self.lm, rollout, rows).float().view(-1, 2)
            if dist.distributed:
                loss, m = global_dpo_loss(logps, ref_logps, weights, total, self.cfg, dist)
            else:
                loss, m = dpo_loss(
                    logps[:, 0], logps[:, 1], ref_logps[:, 0], ref_logps[:, 1], self.cfg.beta, self.cfg.loss,
                    self.cfg.label_smoothing,
                )  # fmt: skip
            if not torch.isfinite(loss):
                raise FloatingPointError(f"online DPO loss became {loss.item()}; lower agent.lr.")
            self.optimizer.zero_grad(set_to_none=True)
            self.ctx.precision.backward(loss)
            self.ctx.precision.step(
                self.optimizer, self.policy.parameters(), self.cfg.max_grad_norm, "the DPO gradient"
            )
            for k, v in m.items():
                stats.setdefault(k, []).append(v)
        self.lm.eval()
        return {f"dpo/{k}": float(np.mean(v)) for k, v in stats.items()}

    def global_ranking_metrics(
        self, scores: torch.Tensor, returns: torch.Tensor, lengths: torch.Tensor, pairs: list[tuple[int, int]], K: int
    ) -> dict[str, float]:
        """:func:`ranking_metrics` over every rank's episodes (gathered in global row order)."""
        dist = self.ctx.dist
        if not dist.distributed:
            return ranking_metrics(scores, returns, lengths, pairs, K)
        n = len(scores)
        parts = dist.gather_objects((scores.cpu().tolist(), returns.tolist(), lengths.tolist(), pairs))
        cat = [torch.tensor([x for part in parts for x in part[j]]) for j in range(3)]
        every = [(b + r * n, w + r * n) for r, part in enumerate(parts) for b, w in part[3]]
        return ranking_metrics(*cat, every, K)

    def state_dict(self) -> dict[str, Any]:
        return curriculum_state(self.venv)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_curriculum_state(self.venv, state)
