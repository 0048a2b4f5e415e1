"""Step-level search guided by a process verifier: beam search, diverse verifier tree search, lookahead.

All strategies run one KV-cached rollout engine (no prefix is ever re-encoded from text): the prompts are
prefilled once, every row of the batch is a partial solution with its own cache row, and one *round*
generates one reasoning step (up to the env's step separator, ``"\\n"``) for every live row. A step
scorer then rates each new step, and rows are kept, forked or dropped by selecting cache rows
(``Cache.batch_select_indices``). A scorer that shares the policy's tokenizer (a learned PRM or the
contrastive verifier trained from the policy) reads the rows' own token ids, one forward per row for all its
new steps: nothing is decoded and re-encoded (:func:`reads_tokens`; ``SearchResult.scored_steps`` counts both
paths). Rows that close their step early wait with masked pad columns (attention
mask 0, positions unchanged), so a batch advances together without touching their state.

Strategies (Snell et al. 2024, "Scaling LLM test-time compute optimally"; Beeching et al. 2024, DVTS):

* ``best_of_n``: ``n`` independent samples, no pruning (the baseline, through the same engine);
* ``beam``: PRM beam search: ``n`` rows sampled one step each; the best ``n / width`` by the verifier
  are kept and each is expanded ``width`` times; repeat until the rows finish;
* ``dvts``: diverse verifier tree search: ``n / width`` independent subtrees, each keeps its single best
  row per round and expands it ``width`` times (more diverse than one beam at large ``n``);
* ``lookahead``: beam search whose candidates are rated after ``lookahead`` more greedy steps (rolled out
  on a copy of the cache, then discarded: their tokens count as compute).

A row *finishes* on the end-of-sequence token, the task's stop rule (math: the ``#### answer`` line), or the
env's ``max_new_tokens``. The final answer of a problem is picked among its finished rows by
``select``: ``score`` (the highest step-score aggregate: ``last``, ``min`` or ``product``), ``weighted``
(the answer whose rows' aggregates sum highest) or ``majority``. Every generated token is counted,
pruned rows' and lookahead rollouts' included, so strategies compare at equal generated tokens.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.policy.models import cache_argument, kv_cache, last_logits_only, positions
from agents.policy.sampling import left_pad_prompts, sample_next
from lm_envs import Problem

#: A step scorer: ``(problems, histories, steps) -> P(step correct)`` for each closed step (the signature of
#: :meth:`lm_envs.tasks.math.prm.LearnedPRM.step_probabilities`). A scorer that also has
#: ``shares_tokenizer(codec) -> bool`` and ``token_step_scores(contexts, starts, ends) -> scores per end`` (as
#: :class:`~lm_envs.tasks.math.prm.LearnedPRM` and
#: :class:`~agents.reward_models.contrastive.LikelihoodStepScorer` do) is handed the policy's own token ids
#: when it shares the policy's tokenizer: steps are then scored without decoding and re-encoding the prefix.
StepScorer = Callable[[Sequence[Problem], Sequence[Sequence[str]], Sequence[str]], Sequence[float]]


def reads_tokens(scorer: Any, codec: Any) -> bool:
    """Whether ``scorer`` can score the policy's token ids as they are (same tokenizer, a token-level method)."""
    shares = getattr(scorer, "shares_tokenizer", None)
    return callable(getattr(scorer, "token_step_scores", None)) and callable(shares) and bool(shares(codec))


STRATEGIES = ("best_of_n", "beam", "dvts", "lookahead")
AGGREGATES = ("last", "min", "product")
FINAL_SELECTIONS = ("score", "weighted", "majority")


@dataclass
class SearchConfig:
    """Settings of a step-level search.

    Attributes:
        strategy: One of :data:`STRATEGIES`.
        n: Rows alive per problem (best-of-N's ``N``; the beam count).
        width: Expansions of each kept row (``beam``, ``dvts``, ``lookahead``); ``n`` must be a multiple of it.
        lookahead: Greedy steps rolled out to rate a candidate (``lookahead`` strategy; 0 elsewhere).
        aggregate: How a row's step scores combine (ranking and final pick): ``last``, ``min`` or ``product``.
        select: Final pick among finished rows: ``score``, ``weighted`` or ``majority``.
        temperature: Sampling temperature of the steps.
        max_rounds: Most steps per row (rows still running then are finished as truncated).
        token_budget: Most generated tokens per problem the search may spend (``None``: no limit); checked
            against the worst case before any sampling.
        batch_problems: Problems searched together (rows in the batch: ``batch_problems * n``).
    """

    strategy: str = "beam"
    n: int = 8
    width: int = 4
    lookahead: int = 0
    aggregate: str = "last"
    select: str = "score"
    temperature: float = 1.0
    max_rounds: int = 64
    token_budget: int | None = None
    batch_problems: int = 8

    def groups(self) -> tuple[int, int, int]:
        """``(groups, keep, width)`` per problem: ``groups * keep * width == n``."""
        if self.strategy == "best_of_n":
            return self.n, 1, 1
        if self.strategy == "dvts":
            return self.n // self.width, 1, self.width
        return 1, self.n // self.width, self.width


def worst_case_tokens(cfg: SearchConfig, max_new_tokens: int) -> int:
    """Most tokens one problem's search can generate: every row to the budget, lookahead rollouts included.

    A lookahead of ``k`` steps per round can at worst roll every row to the end of its budget again.
    """
    rollouts = 1 + (max_new_tokens if cfg.lookahead else 0)
    return cfg.n * max_new_tokens * rollouts


def check_config(cfg: SearchConfig, max_new_tokens: int | None = None) -> None:
    """Every check of the settings; before any sampling.

    Raises:
        ValueError: Naming the setting and the fix.
    """
    if cfg.strategy not in STRATEGIES:
        raise ValueError(f"unknown search strategy {cfg.strategy!r}; choose one of {STRATEGIES}.")
    if not isinstance(cfg.n, int) or cfg.n < 1:
        raise ValueError(f"search n must be a positive int (rows per problem), got {cfg.n!r}.")
    if cfg.strategy != "best_of_n":
        if not isinstance(cfg.width, int) or cfg.width < 1:
            raise ValueError(f"search width must be a positive int, got {cfg.width!r}.")
        if cfg.width > cfg.n:
            raise ValueError(
                f"beam width {cfg.width} is above n={cfg.n}: each kept row expands into width rows out of n; "
                f"use width <= {cfg.n}."
            )
        if cfg.n % cfg.width:
            raise ValueError(f"n={cfg.n} is not a multiple of width={cfg.width}; use n = k * width.")
    if cfg.strategy == "lookahead" and cfg.lookahead < 1:
        raise ValueError("strategy 'lookahead' needs lookahead >= 1 (greedy steps rolled out per candidate).")
    if cfg.strategy != "lookahead" and cfg.lookahead:
        raise ValueError(f"lookahead={cfg.lookahead} applies to strategy 'lookahead' only; set it to 0.")
    if cfg.aggregate not in AGGREGATES:
        raise ValueError(f"unknown step-score aggregate {cfg.aggregate!r}; choose one of {AGGREGATES}.")
    if cfg.select not in FINAL_SELECTIONS:
        raise ValueError(f"unknown final selection {cfg.select!r}; choose one of {FINAL_SELECTIONS}.")
    if cfg.temperature <= 0 and cfg.n > 1:
        raise ValueError("search with n > 1 at temperature 0 repeats one greedy row; use temperature > 0.")
    if cfg.max_rounds < 1 or cfg.batch_problems < 1:
        raise ValueError("max_rounds and batch_problems must be >= 1.")
    if cfg.token_budget is not None and max_new_tokens is not None:
        worst = worst_case_tokens(cfg, max_new_tokens)
        if worst > cfg.token_budget:
            raise ValueError(
                f"{cfg.strategy} with n={cfg.n} may generate {worst} tokens per problem ({cfg.n} rows of up to "
                f"{max_new_tokens} tokens{', with lookahead rollouts' if cfg.lookahead else ''}), over "
                f"token_budget={cfg.token_budget}; lower n to {max(1, cfg.n * cfg.token_budget // worst)} or raise "
                "the budget."
            )


def aggregate(scores: Sequence[float], how: str) -> float:
    """A row's value from its step scores (1.0 with none yet).

    Example:
        >>> aggregate([0.9, 0.5], "min"), aggregate([0.9, 0.5], "last"), round(aggregate([0.9, 0.5], "product"), 2)
        (0.5, 0.5, 0.45)
    """
    if not scores:
        return 1.0
    if how == "last":
        return float(scores[-1])
    if how == "min":
        return float(min(scores))
    if how == "product":
        return float(math.prod(scores))
    raise ValueError(f"unknown step-score aggregate {how!r}; choose one of {AGGREGATES}.")


def verifier_step_scorer(correct: float = 1.0, unverifiable: float = 0.5, wrong: float = 0.0) -> StepScorer:
    """The math step verifier (:func:`lm_envs.tasks.math.steps.check_step`) as a step scorer.

    It checks each step's arithmetic claims exactly; a step without a claim (prose, the answer line) is
    ``unverifiable``. A rule, not a learned PRM: the ceiling a learned PRM approaches on arithmetic steps.
    """
    from lm_envs.tasks.math.steps import check_step

    values = {"correct": correct, "unverifiable": unverifiable, "wrong": wrong}

    def score(problems: Sequence[Problem], histories: Sequence[Sequence[str]], steps: Sequence[str]) -> list[float]:
        return [values[check_step(s).verdict] for s in steps]

    return score


@dataclass
class Row:
    """One partial solution: its problem, group, tokens and closed steps with their scores."""

    problem: int
    group: int
    tokens: list[int] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    logprob: float = 0.0  # of its tokens under the sampling distribution
    pending: bytes = b""  # bytes of the step being generated
    finished: bool = False
    truncated: bool = False
    value: float = 1.0  # what ranking reads: the aggregate, or a lookahead's rating
    # per closed step: (tokens up to its end, closed by EOS) when it ends on a token boundary, else None
    ends: list[tuple[int, bool] | None] = field(default_factory=list)

    def fork(self) -> Row:
        return Row(
            self.problem,
            self.group,
            list(self.tokens),
            list(self.steps),
            list(self.scores),
            self.logprob,
            self.pending,
            self.finished,
            self.truncated,
            self.value,
            list(self.ends),
        )


@dataclass
class SearchResult:
    """The outcome of a search on each problem.

    Attributes:
        indices: Problem indices in the split.
        candidates: Per problem, its finished rows as ``{"completion", "score", "success", "answer",
            "num_tokens", "steps", "step_scores", "logprob", "tokens"}``.
        chosen: Per problem, the position in ``candidates`` of the final pick.
        success: Per problem, whether the pick is correct.
        generated_tokens: Per problem, every token generated for it (pruned rows and lookahead included).
        scored_steps: Steps the scorer rated from the policy's token ids (``tokens``) and from text (``text``:
            a scorer without a token path or with another tokenizer, or a step that does not end on a token
            boundary).
    """

    indices: list[int]
    candidates: list[list[dict[str, Any]]]
    chosen: list[int]
    success: list[bool]
    generated_tokens: list[int]
    scored_steps: dict[str, int] = field(default_factory=lambda: {"tokens": 0, "text": 0})

    @property
    def accuracy(self) -> float:
        """Fraction of problems whose pick is correct."""
        return float(np.mean(self.success)) if self.success else 0.0

    @property
    def mean_tokens(self) -> float:
        """Mean generated tokens per problem."""
        return float(np.mean(self.generated_tokens)) if self.generated_tokens else 0.0


class _Engine:
    """The rows of a batch and their KV cache; one step at a time."""

    def __init__(self, model: torch.nn.Module, env: Any, temperature: float, generator: torch.Generator) -> None:
        self.model, self.env, self.temperature, self.generator = model, env, temperature, generator
        self.codec = env.codec
        self.device = next(model.parameters()).device
        self.cache_arg = cache_argument(model)
        self.separator = env.episodes.config.step_separator.encode("utf-8")
        self.separator_ids = self.codec.encode(env.episodes.config.step_separator)
        self.budget = env.episodes.config.max_new_tokens
        self.stops = env.task.stops if env.task.has_stop_rule else None
        self.eos = self.codec.eos_token_id
        self.pad = self.codec.pad_token_id
        self.generated = 0  # tokens sampled for in-step rows (the compute that counts)

    def prefill(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, repeat: int) -> None:
        ids, attn = prompt_ids.to(self.device), prompt_mask.to(self.device)
        pos = positions(attn)
        out = self.model(
            input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, **last_logits_only(self.model)
        )
        self.cache = kv_cache(out)
        self.cache.batch_repeat_interleave(repeat)
        self.attn = attn.repeat_interleave(repeat, 0)
        self.next_pos = (pos[:, -1:] + 1).repeat_interleave(repeat, 0)
        self.logits = out.logits[:, -1].float().repeat_interleave(repeat, 0)

    def select(self, index: Sequence[int]) -> None:
        """Keep (and fork, by repeating) these rows of the batch."""
        idx = torch.as_tensor(list(index), dtype=torch.long, device=self.device)
        self.cache.batch_select_indices(idx)
        self.attn, self.next_pos, self.logits = self.attn[idx], self.next_pos[idx], self.logits[idx]

    def snapshot(self) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        return copy.deepcopy(self.cache), self.attn.clone(), self.next_pos.clone(), self.logits.clone()

    def restore(self, state: tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        self.cache, self.attn, self.next_pos, self.logits = state

    def step(self, rows: list[Row], temperature: float | None = None) -> None:
        """Generate one step for every unfinished row (finished ones wait); close it or finish the row."""
        temperature = self.temperature if temperature is None else temperature
        active = torch.tensor([not r.finished for r in rows], dtype=torch.bool)
        while bool(active.any()):
            token, logp = sample_next(self.logits, temperature, 0, 1.0, self.generator)
            token, logp = token[:, 0].cpu(), logp.cpu()
            fed = active.clone()
            for i in torch.nonzero(active)[:, 0].tolist():
                active[i] = not self._take(rows[i], int(token[i]), float(logp[i]))
            self.generated += int(fed.sum())
            # every row advances one column; rows that wait get a masked pad (their cache is untouched in effect)
            feed = torch.where(fed, token, torch.full_like(token, self.pad)).to(self.device)[:, None]
            moved = fed.to(self.device)
            self.attn = torch.cat([self.attn, moved[:, None].to(self.attn.dtype)], dim=1)
            out = self.model(
                input_ids=feed,
                attention_mask=self.attn,
                position_ids=self.next_pos,
                use_cache=True,
                **{self.cache_arg: self.cache},
            )
            self.cache = kv_cache(out)
            self.logits = torch.where(moved[:, None], out.logits[:, -1].float(), self.logits)
            self.next_pos = self.next_pos + moved[:, None].long()

    def _take(self, row: Row, token: int, logp: float) -> bool:
        """Append ``token`` to ``row``; whether it closed a step or ended the row."""
        row.tokens.append(token)
        row.logprob += logp
        closed = False
        if token == self.eos:  # the step's tokens end before the EOS (a scorer reads them closed by the separator)
            self._close(row, row.pending.decode("utf-8", errors="replace"), (len(row.tokens) - 1, True))
            row.pending, row.finished = b"", True
            return True
        row.pending += self.codec.decode_bytes([token])
        if self.separator in row.pending:
            text, row.pending = row.pending.split(self.separator, 1)
            step = text.decode("utf-8", errors="replace")
            # a token boundary only when the separator ends this token (else the step is scored from text)
            self._close(row, step, None if row.pending else (len(row.tokens), False))
            closed = bool(step.strip())  # a blank line is no step: the round goes on
        if not row.finished and len(row.tokens) >= self.budget:  # out of tokens: an unfinished step is not rated
            row.finished = row.truncated = True
        return closed or row.finished

    def _close(self, row: Row, text: str, end: tuple[int, bool] | None) -> None:
        if not text.strip():
            return
        row.steps.append(text)
        row.scores.append(float("nan"))  # rated after the round, in one batched call
        row.ends.append(end)
        if self.stops is not None and self.stops(text):
            row.finished = True


@dataclass
class _Tokens:
    """What a token-level scorer reads: each problem's prompt ids and the separator's ids."""

    prompts: list[list[int]]
    separator: list[int]


def _rate(
    rows: list[Row],
    problems: list[Problem],
    scorer: StepScorer,
    tokens: _Tokens | None = None,
    counts: dict[str, int] | None = None,
) -> None:
    """Score every closed step not yet scored: from the rows' token ids when ``tokens`` is given, else from text.

    Token path: one context per row (its prompt ids and generated ids; a step closed by EOS is read closed by
    the separator's ids instead) and every unscored step end in it, in one call. Steps that do not end on a
    token boundary go the text path, in one batched call.
    """
    todo = [(r, k) for r in rows for k, s in enumerate(r.scores) if s != s]
    if not todo:
        return
    text_todo = todo
    if tokens is not None:
        text_todo = [(r, k) for r, k in todo if r.ends[k] is None]
        by_row: dict[int, tuple[Row, list[int]]] = {}
        for r, k in todo:
            if r.ends[k] is not None:
                by_row.setdefault(id(r), (r, []))[1].append(k)
        contexts, starts, ends, where = [], [], [], []
        for r, ks in by_row.values():
            prompt = tokens.prompts[r.problem]
            last = [r.ends[k] for k in ks if r.ends[k][1]]  # type: ignore[index]
            ids = prompt + (r.tokens[: last[0][0]] + tokens.separator if last else r.tokens)
            row_ends = []
            for k in ks:
                end, by_eos = r.ends[k]  # type: ignore[misc]
                row_ends.append(len(prompt) + end + (len(tokens.separator) if by_eos else 0))
            contexts.append(ids)
            starts.append(len(prompt))
            ends.append(row_ends)
            where.append((r, ks))
        if contexts:
            values = scorer.token_step_scores(contexts, starts, ends)  # type: ignore[attr-defined]
            if len(values) != len(contexts) or any(len(v) != len(e) for v, e in zip(values, ends, strict=True)):
                raise ValueError("the step scorer's token_step_scores must return one score per step end.")
            for (r, ks), vs in zip(where, values, strict=True):
                for k, v in zip(ks, vs, strict=True):
                    r.scores[k] = float(v)
            if counts is not None:
                counts["tokens"] += sum(len(e) for e in ends)
    if not text_todo:
        return
    values = list(
        scorer(
            [problems[r.problem] for r, _ in text_todo],
            [r.steps[:k] for r, k in text_todo],
            [r.steps[k] for r, k in text_todo],
        )
    )
    if len(values) != len(text_todo):
        raise ValueError(f"the step scorer returned {len(values)} scores for {len(text_todo)} steps.")
    for (r, k), v in zip(text_todo, values, strict=True):
        r.scores[k] = float(v)
    if counts is not None:
        counts["text"] += len(text_todo)


def choose(candidates: list[dict[str, Any]], how: str, same: Callable[[str, str], bool] | None) -> int:
    """Position of the final pick among a problem's finished rows: ``score``, ``weighted`` or ``majority``."""
    from agents.evaluate_target import majority_pick, vote_classes

    if not candidates:
        raise ValueError("no finished candidate to choose from.")
    if how == "score":
        return int(np.argmax([c["score"] for c in candidates]))
    if same is None:
        raise ValueError(f"final selection {how!r} votes on answers; the env's reward extracts none (use 'score').")
    classes = vote_classes([c["answer"] for c in candidates], same)
    weights = [max(c["score"], 0.0) for c in candidates] if how == "weighted" else None
    return majority_pick(classes, weights)


@torch.no_grad()
def search(
    model: torch.nn.Module,
    env_id: str,
    cfg: SearchConfig,
    scorer: StepScorer | None,
    indices: Sequence[int],
    *,
    split: str = "test",
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
) -> SearchResult:
    """Run ``cfg.strategy`` on the problems ``indices`` of ``split``; grade each pick with the env's reward.

    Args:
        model: The policy (a causal LM with the env's vocabulary).
        env_id: A registered token env; its prompts, separator, stop rule, budget and reward are used.
        cfg: The search settings (checked before any sampling).
        scorer: Rates closed steps (``None`` only for ``best_of_n`` with ``select="majority"``).
        indices: Problem indices.
        split: Their split.
        seed: Sampling seed.
        env_kwargs: ``gym.make`` overrides (e.g. the model's tokenizer).
    """
    from agents.evaluate_target import answer_key, equivalence

    kwargs = {k: v for k, v in (env_kwargs or {}).items() if k not in ("curriculum", "split")}
    env = gym.make(env_id, **kwargs).unwrapped
    check_config(cfg, env.episodes.config.max_new_tokens)
    if scorer is None and not (cfg.strategy == "best_of_n" and cfg.select == "majority"):
        raise ValueError(f"strategy {cfg.strategy!r} with select={cfg.select!r} needs a step scorer (a PRM).")
    key = answer_key(env)
    if cfg.select != "score" and key is None:
        raise ValueError(f"select={cfg.select!r} votes on final answers, but {env_id}'s reward extracts none.")
    same = equivalence(key) if key else None
    indices = list(indices)
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    out = SearchResult([], [], [], [], [])
    by_tokens = scorer is not None and reads_tokens(scorer, env.codec)
    for start in range(0, len(indices), cfg.batch_problems):
        chunk = indices[start : start + cfg.batch_problems]
        _search_chunk(model, env_id, env, kwargs, cfg, scorer, chunk, split, generator, same, key, out, by_tokens)
    return out


def _search_chunk(
    model: torch.nn.Module,
    env_id: str,
    env: Any,
    kwargs: dict[str, Any],
    cfg: SearchConfig,
    scorer: StepScorer | None,
    chunk: list[int],
    split: str,
    generator: torch.Generator,
    same: Callable[[str, str], bool] | None,
    key: str | None,
    out: SearchResult,
    by_tokens: bool = False,
) -> None:
    venv = gym.make_vec(env_id, num_envs=len(chunk), autoreset_mode="Disabled", split=split, **kwargs)
    obs, _ = venv.reset(options={"index": chunk, "split": split})
    problems = [env.task.problem(split, i) for i in chunk]
    prompt_ids, prompt_mask = left_pad_prompts(obs, env.codec.pad_token_id)
    venv.close()
    engine = _Engine(model, env, cfg.temperature, generator)
    engine.prefill(prompt_ids, prompt_mask, cfg.n)
    tokens = None
    if by_tokens:  # the policy's own prompt ids (left padding dropped): the scorer reads exactly what it sampled
        prompts = [ids[m.bool()].tolist() for ids, m in zip(prompt_ids, prompt_mask, strict=True)]
        tokens = _Tokens(prompts, engine.separator_ids)
    groups, keep, width = cfg.groups()
    rows = [Row(p, j // (keep * width)) for p in range(len(chunk)) for j in range(cfg.n)]
    pool: list[list[Row]] = [[] for _ in chunk]
    spent = [0] * len(chunk)
    quota = keep * width  # finished rows a group collects before it stops
    for round_ in range(cfg.max_rounds):
        before = [len(r.tokens) for r in rows]
        engine.step(rows)
        for r, b in zip(rows, before, strict=True):
            spent[r.problem] += len(r.tokens) - b
        if round_ == cfg.max_rounds - 1:  # out of rounds: what still runs is finished, as truncated
            for r in rows:
                r.truncated = r.truncated or not r.finished
                r.finished = True
        if scorer is not None:
            _rate(rows, problems, scorer, tokens, out.scored_steps)
        for r in rows:
            r.value = aggregate(r.scores, cfg.aggregate)
        if cfg.lookahead and any(not r.finished for r in rows):
            _lookahead(engine, rows, problems, scorer, cfg, spent, tokens, out.scored_steps)
        for r in rows:
            if r.finished:
                pool[r.problem].append(r)
        # which rows go on: per (problem, group), the best `keep` unfinished rows, each `width` times
        index: list[int] = []
        next_rows: list[Row] = []
        by_group: dict[tuple[int, int], list[int]] = {}
        for i, r in enumerate(rows):
            if not r.finished:
                by_group.setdefault((r.problem, r.group), []).append(i)
        for (p, g), members in by_group.items():
            done = sum(1 for r in pool[p] if r.group == g)
            if done >= quota:
                continue
            if cfg.strategy == "best_of_n":
                kept, copies = members, 1
            else:
                kept = sorted(members, key=lambda i: -rows[i].value)[:keep]
                copies = width
            slots = quota - done if cfg.strategy != "best_of_n" else len(members)
            for c in range(min(slots, len(kept) * copies)):
                i = kept[c % len(kept)]
                index.append(i)
                next_rows.append(rows[i] if c < len(kept) else rows[i].fork())
        if not index:
            break
        engine.select(index)
        rows = next_rows
    for p, finished in enumerate(pool):
        completions = [env.codec.decode([t for t in r.tokens if t != env.codec.eos_token_id]) for r in finished]
        outcomes = env.episodes.reward.outcome_batch([problems[p]] * len(finished), completions)
        candidates = [
            {
                "completion": c,
                "score": aggregate(r.scores, cfg.aggregate),
                "success": bool(o.record.get("correct", False)),
                "answer": o.record.get(key) if key else None,
                "num_tokens": len(r.tokens),
                "steps": r.steps,
                "step_scores": r.scores,
                "step_ends": [None if e is None else e[0] for e in r.ends],  # generated tokens up to each step
                "logprob": r.logprob,
                "tokens": r.tokens,
                "truncated": r.truncated,
            }
            for r, c, o in zip(finished, completions, outcomes, strict=True)
        ]
        pick = choose(candidates, cfg.select, same)
        out.indices.append(chunk[p])
        out.candidates.append(candidates)
        out.chosen.append(pick)
        out.success.append(candidates[pick]["success"])
        out.generated_tokens.append(spent[p])


def _lookahead(
    engine: _Engine,
    rows: list[Row],
    problems: list[Problem],
    scorer: StepScorer | None,
    cfg: SearchConfig,
    spent: list[int],
    tokens: _Tokens | None = None,
    counts: dict[str, int] | None = None,
) -> None:
    """Rate each unfinished row by the score of the step ``cfg.lookahead`` greedy steps later, then rewind."""
    state = engine.snapshot()
    ahead = [r.fork() for r in rows]  # finished rows wait
    for _ in range(cfg.lookahead):
        before = [len(a.tokens) for a in ahead]
        engine.step(ahead, temperature=0.0)
        for a, b in zip(ahead, before, strict=True):
            spent[a.problem] += len(a.tokens) - b
        if all(a.finished for a in ahead):
            break
    if scorer is not None:
        _rate(ahead, problems, scorer, tokens, counts)
    for r, a in zip(rows, ahead, strict=True):
        if not r.finished:
            r.value = aggregate(a.scores, "last")
    engine.restore(state)
