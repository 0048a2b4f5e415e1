"""Rolling a causal LM through a ``TokenVectorEnv`` with a KV cache, and scoring the result.

The prompts are prefilled once (left-padded so that every row's next token sits in the last
column); then each vector step is one cached forward of one token per *running* env: rows whose
episode ended are dropped from the cache, so finished envs stop costing compute. The env receives
the exact sampled token ids and the training losses score exactly those ids (token in, token out):
nothing is decoded and re-tokenized between the env and the loss.

Multi-turn envs append tokens of their own after some of the policy's turns (a tool's output, feedback):
they land in the rollout between the policy's tokens, in the order the env holds them, and
:attr:`Rollout.policy_mask` tells them apart. A row with env tokens to read feeds them in the same
cached forwards as the other rows' sampled tokens (it does not act meanwhile), one per forward or
several at once when a wider forward is the cheaper way through the queue (see :func:`_next_input`):
an env token then costs no more than a generated one.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from agents.policy.models import cache_argument, kv_cache, last_logits_only, positions
from lm_envs import TokenVectorEnv


@dataclass
class Rollout:
    """One episode per env, as tensors (``N`` episodes, prompt width ``P``, budget ``T``).

    Attributes:
        prompt_ids: ``(N, P)`` left-padded prompt (plus start-state prefix) token ids.
        prompt_mask: ``(N, P)`` 1 on real prompt tokens.
        tokens: ``(N, T)`` token ids after the prompt, in the env's order (pad after the episode's end):
            the generated ones and, multi-turn, the env's replies between them.
        mask: ``(N, T)`` True on the episode's tokens (what the model attends to); the policy's own
            are :attr:`action_mask`.
        logprobs: ``(N, T)`` log-probs of ``tokens`` under the sampling policy (temperature applied).
        rewards: ``(N, T)`` env reward on each token (process rewards where steps closed, outcome last).
        infos: End-of-episode info of each env (``completion``, ``outcome``, ...).
        reset_infos: Reset info of each env (``prompt``, ``problem_id``, ``stage``, ...).
        group_size: Episodes per problem (consecutive rows share a problem and start state).
        values: ``(N, T)`` ``V(s_t)``, the value before each token, under the value head ``collect``
            was given (``None`` without one).
        policy_mask: ``(N, T)`` True on the tokens the policy sampled, False on tokens a multi-turn
            env appended (which the model attends to but never trains on); ``None``: every token of
            ``mask`` (single-turn envs). Use :attr:`action_mask`.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor
    logprobs: torch.Tensor
    rewards: torch.Tensor
    infos: list[dict[str, Any]]
    reset_infos: list[dict[str, Any]]
    group_size: int = 1
    values: torch.Tensor | None = None
    policy_mask: torch.Tensor | None = None

    @property
    def action_mask(self) -> torch.Tensor:
        """``(N, T)`` True on the policy's tokens: where losses, KL and value targets apply."""
        return self.mask if self.policy_mask is None else self.policy_mask

    @property
    def returns(self) -> torch.Tensor:
        """Episode returns (sum of env rewards), shape ``(N,)``."""
        return self.rewards.sum(1)

    @property
    def num_tokens(self) -> int:
        """Tokens the policy generated in the rollout (env tokens of multi-turn episodes excluded)."""
        return int(self.action_mask.sum())

    def success(self) -> torch.Tensor:
        """1.0 where the env reported ``is_success``, else 0.0 (on the rollout's device)."""
        return torch.tensor([float(bool(i.get("is_success", False))) for i in self.infos], device=self.tokens.device)

    def to(self, device: torch.device | str) -> Rollout:
        """The same rollout with every tensor on ``device`` (the learners' forwards and losses run there)."""
        move = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **move)


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


def sample_next(
    logits: torch.Tensor,
    temperature: float,
    top_k: int,
    top_p: float,
    generator: torch.Generator | None,
    uniforms: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row; returns ``(tokens, logprobs)``.

    ``temperature == 0`` is greedy. ``uniforms`` (``(n, 1)`` in ``[0, 1)``) replaces the draws from
    ``generator``. The returned log-prob is under the temperature-scaled full distribution (what the
    training losses recompute); ``top_k``/``top_p`` only restrict what is
    sampled, so keep them off (0 / 1.0) for on-policy training, as R3 and TRL's PPO do.
    """
    logits = logits.float()
    if not torch.isfinite(logits).all():
        raise FloatingPointError(
            "the model produced non-finite logits: training diverged (lower agent.lr, or raise agent.kl_coef); "
            "the last good checkpoint is kept."
        )
    if temperature == 0:
        token = logits.argmax(-1, keepdim=True)
        return token, torch.log_softmax(logits, -1).gather(1, token)[:, 0]
    logp = torch.log_softmax(logits / temperature, -1)
    probs = logp.exp()
    if top_k > 0 or top_p < 1.0:
        probs = probs.clone()
        if top_k > 0:
            kth = probs.topk(min(top_k, probs.shape[-1]), -1).values[:, -1:]
            probs[probs < kth] = 0.0
        if top_p < 1.0:
            sorted_p, order = probs.sort(-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > top_p
            probs.scatter_(1, order, sorted_p.masked_fill(drop, 0.0))
    token = inverse_cdf_sample(probs, generator, uniforms)
    return token, logp.gather(1, token)[:, 0]


def inverse_cdf_sample(
    probs: torch.Tensor, generator: torch.Generator | None = None, uniforms: torch.Tensor | None = None
) -> torch.Tensor:
    """One index per row of ``probs`` (``(n, V)``, rows need not be normalised), as ``(n, 1)``.

    The same distribution as ``torch.multinomial(probs, 1)``, but one uniform per row and a binary search
    of the row's cumulative sum: on CPU that is ~30x faster at ``(256, 1000)``, where multinomial took a
    sixth of a rollout's time. Float32 sums move at most ~1e-7 of mass between neighbouring tokens (a
    float64 sum costs 10x more on CPU); training is unaffected, since its log-probs come from the
    logits, not from here. ``right=True`` never lands on a zero-probability token (an empty interval).

    Example:
        >>> probs = torch.tensor([[0.0, 0.5, 0.0, 0.5]]).repeat(1000, 1)
        >>> sorted(inverse_cdf_sample(probs, torch.Generator().manual_seed(0)).unique().tolist())
        [1, 3]
    """
    cdf = probs.float().cumsum(-1)
    total = cdf[:, -1:].contiguous()
    if uniforms is None:
        uniforms = torch.rand(len(probs), 1, generator=generator, device=probs.device)
    u = uniforms.to(probs.device) * total
    token = torch.searchsorted(cdf, u, right=True)
    # u < total up to rounding; should u round up to the total, take the last token with mass
    return torch.minimum(token, torch.searchsorted(cdf, total))


@torch.no_grad()
def collect(
    model: torch.nn.Module,
    venv: TokenVectorEnv,
    *,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    prune_fraction: float = 0.125,
    value_head: torch.nn.Module | None = None,
    global_rows: tuple[int, int] | None = None,
) -> Rollout:
    """Collect exactly one episode per env with a KV cache (the env needs ``autoreset_mode="Disabled"``).

    Args:
        model: A causal LM whose logits width equals the env's action space.
        venv: The vector env.
        seed: Reset seed (problems drawn per env), or ``None``.
        options: Reset options (``index``, ``split``, ``group_size``, ...).
        temperature: Softmax temperature; 0 is greedy.
        top_k: Sample among the k most likely tokens (0: off).
        top_p: Nucleus sampling mass (1.0: off).
        generator: Torch RNG for sampling.
        prune_fraction: Drop finished rows from the KV cache once they are this fraction of it.
        value_head: A critic head on ``model``'s last hidden state (PPO's shared critic): the rollout
            then records ``V(s_t)`` from the forwards that sample, so PPO needs no pass for its old values.
        global_rows: ``(offset, total)``: these envs are rows ``offset ..`` of a batch of ``total`` spread
            over processes. Each step then draws ``total`` uniforms and uses this batch's, so a row's samples
            depend on its global index, not on how the batch is split (data-parallel runs). ``None``: one
            uniform per running row (a one-process run's own stream).

    The rollout's tensors are on the CPU (the env's side); :meth:`Rollout.to` moves them.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}.")
    if venv.autoreset_mode.value != "Disabled":
        raise ValueError("collect() needs a vector env made with autoreset_mode='Disabled' (one episode per env).")
    device = next(model.parameters()).device
    n, budget, pad = venv.num_envs, venv.episodes.config.max_new_tokens, venv.codec.pad_token_id
    obs, reset_info = venv.reset(seed=seed, options=options)
    prompt_ids, prompt_mask = left_pad_prompts(obs, pad)
    ids, attn = prompt_ids.to(device), prompt_mask.to(device)
    pos = positions(attn)
    hidden = value_head is not None
    out = model(
        input_ids=ids,
        attention_mask=attn,
        position_ids=pos,
        use_cache=True,
        output_hidden_states=hidden,
        **last_logits_only(model),  # the prefill needs only the next token's logits
    )
    past, logits, next_pos = kv_cache(out), out.logits[:, -1], pos[:, -1:] + 1
    cache_arg = cache_argument(model)

    tokens = torch.full((n, budget), pad, dtype=torch.long)
    logprobs = torch.zeros(n, budget)
    rewards = torch.zeros(n, budget, dtype=torch.float64)
    mask = torch.zeros(n, budget, dtype=torch.bool)
    values = torch.zeros(n, budget) if hidden else None
    multi_turn = venv.episodes.multi_turn
    policy_mask = torch.zeros(n, budget, dtype=torch.bool) if multi_turn else None
    cursor = torch.zeros(n, dtype=torch.long)  # column of each env's next token (== t single-turn)
    infos: list[dict[str, Any]] = [{} for _ in range(n)]
    rows = torch.arange(n)  # env index of each row of the model batch
    live = torch.ones(n, dtype=torch.bool)  # whose episode has not ended
    actions = np.full(n, pad, dtype=np.int64)
    ready = torch.ones(n, dtype=torch.bool)  # multi-turn: envs whose model state is current (their logits are)
    queue: dict[int, list[int]] = {}  # multi-turn: env -> tokens the model must read before it samples again
    overhead = FORWARD_OVERHEAD.get(device.type, FORWARD_OVERHEAD["cpu"])
    holes = False  # multi-turn: whether a wide forward has left masked columns since the last compaction
    for t in itertools.count():
        uniforms = None
        if global_rows is not None and temperature > 0:
            offset, total = global_rows
            drawn = torch.rand(total, 1, generator=generator, device=generator.device if generator else None)
            uniforms = drawn[(rows + offset).to(drawn.device)]
        token, logp = sample_next(logits, temperature, top_k, top_p, generator, uniforms)
        token_cpu = token[:, 0].cpu()
        # Rows whose episode ended stay in the batch until pruning (the KV cache is cut in bulk); what
        # they sample is never sent to the env and never recorded: only live rows are (multi-turn: and
        # only rows whose model state has caught up with their env's tokens).
        alive = live[rows] & ready[rows] if queue else live[rows]
        every = bool(alive.all())  # the common case: no row of the batch has ended yet
        live_rows = rows if every else rows[alive]
        token_cpu, logp = (token_cpu, logp.cpu()) if every else (token_cpu[alive], logp.cpu()[alive])
        col = cursor[live_rows] if multi_turn else t
        tokens[live_rows, col] = token_cpu
        logprobs[live_rows, col] = logp
        if values is not None:  # V(s_t), from the forward whose logits sampled token t
            v = value_head(out.hidden_states[-1][:, -1]).squeeze(-1).float().cpu()
            values[live_rows, col] = v if every else v[alive]
        mask[live_rows, col] = True
        actions[live_rows.numpy()] = token_cpu.numpy()
        if queue:  # envs whose model state is catching up with their env's tokens do not act
            active = np.zeros(n, dtype=bool)
            active[live_rows.numpy()] = True
            _, r, term, trunc, info = venv.step(actions, active=active)
        else:
            _, r, term, trunc, info = venv.step(actions)
        rewards[live_rows, col] = torch.from_numpy(r[live_rows.numpy()])
        for i in np.flatnonzero(info.get("_completion", ())):
            infos[i] = _final_info(info, int(i))
        live[live_rows] = torch.from_numpy(~(term | trunc)[live_rows.numpy()])
        if multi_turn:
            policy_mask[live_rows, col] = True
            cursor[live_rows] += 1
            for i in np.flatnonzero(info.get("_env_tokens", ())):  # env tokens after this turn: recorded, not actions
                ids = list(info["env_tokens"][i])
                c = int(cursor[i])
                tokens[i, c : c + len(ids)] = torch.tensor(ids, dtype=torch.long)
                mask[i, c : c + len(ids)] = True
                cursor[i] = c + len(ids)
                queue[int(i)] = [int(tokens[i, c - 1]), *ids]  # the sampled token, then the env's
                ready[i] = False
            for i in [i for i in queue if not live[i]]:  # an episode that ended on a reply reads nothing more
                del queue[i]
        running = live[rows]
        if not running.any():
            break
        if (~running).float().mean() >= prune_fraction:
            keep = running.nonzero()[:, 0].to(device)
            past.batch_select_indices(keep)
            rows, attn, next_pos, token = rows[running], attn[keep], next_pos[keep], token[keep]
        # only wide forwards leave holes (and pruning frees left padding): look for droppable columns then
        if holes and 4 * (attn.shape[1] - int(attn.sum(1).max())) > attn.shape[1]:  # a quarter is droppable
            attn = _compact_cache(past, attn)
            holes = False
        if queue:
            token, new_attn, step_pos, caught_up = _next_input(token, rows, queue, next_pos, pad, overhead)
            ready[caught_up] = True  # the next forward's logits follow their last env token
            if new_attn.shape[1] > 1:
                holes = True
                next_pos_after = next_pos + new_attn.sum(1, keepdim=True)
            else:
                next_pos_after = next_pos + 1
        else:
            new_attn, step_pos = attn.new_ones(len(rows), 1), next_pos
            next_pos_after = next_pos + 1
        attn = torch.cat([attn, new_attn], dim=1)
        out = model(
            input_ids=token,
            attention_mask=attn,
            position_ids=step_pos,
            use_cache=True,
            output_hidden_states=hidden,
            **{cache_arg: past},
        )
        past, logits, next_pos = kv_cache(out), out.logits[:, -1], next_pos_after
    used = int(mask.any(0).nonzero().max()) + 1 if mask.any() else 0
    reset_infos = [{k: _item(v, i) for k, v in reset_info.items() if not k.startswith("_")} for i in range(n)]
    group = int((options or {}).get("group_size", 1))
    return Rollout(
        prompt_ids,
        prompt_mask,
        tokens[:, :used],
        mask[:, :used],
        logprobs[:, :used],
        rewards[:, :used],
        infos,
        reset_infos,
        group,
        values[:, :used] if values is not None else None,
        policy_mask[:, :used] if policy_mask is not None else None,
    )


def _compact_cache(past: Any, attn: torch.Tensor) -> torch.Tensor:
    """Drop the KV cache's masked columns (left padding, holes of wide forwards); returns the new mask.

    Each row's real entries move right, in order, and columns that are then masked in every row go:
    attention and the cache's per-step copy cost what the cache holds, real or not. Positions are
    explicit (and rotary keys are stored rotated), so moving entries changes no result. A cache
    without per-layer ``keys``/``values`` tensors is left as it is.
    """
    layers = getattr(past, "layers", None)
    if not layers or not all(isinstance(getattr(layer, "keys", None), torch.Tensor) for layer in layers):
        return attn
    keep = int(attn.sum(1).max())
    order = torch.sort(attn, dim=1, stable=True).indices[:, -keep:]  # masked first, then real, in order
    for layer in layers:
        idx = order[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[-1])
        layer.keys = layer.keys.gather(2, idx.to(layer.keys.device))
        layer.values = layer.values.gather(2, idx.to(layer.values.device))
    return attn.gather(1, order)


#: The cost model of one cached forward of ``B`` rows and ``w`` tokens per row, in units of one row's
#: token: ``B * (w + ROW_OVERHEAD) + FORWARD_OVERHEAD[device type]``. ``ROW_OVERHEAD`` is what a row
#: costs whatever the width (the KV cache's append copies every row's keys and values), ``FORWARD_OVERHEAD``
#: what the forward costs whatever its size (dispatch). Fitted for the tiny default model on one CPU thread
#: (``python bench/bench_multi_turn.py --forward-costs``: least squares over B = 1..64, w = 1..8 on a quiet
#: machine, 2026-12-05: 1.27 and 12.5). A GPU decode forward of a small model is kernel-launch-bound (a
#: large fixed part, so wide forwards are nearly free): the ``cuda`` figure is that assumption, not a
#: measurement (no GPU was lent to measure it).
ROW_OVERHEAD = 1.25
FORWARD_OVERHEAD = {"cpu": 12.5, "cuda": 1024.0}


def forward_width(pending: Sequence[int], overhead: float = 0.0) -> int:
    """The forward width that reads the most tokens per unit of cost, given each row's pending tokens.

    A row feeds ``min(w, pending)`` real tokens, left-padded with masked holes to ``w``; the cost is
    ``len(pending) * (w + ROW_OVERHEAD) + overhead``. Width 1 (every row one token: a plain decode
    step) wins unless most rows have several tokens to read or the forward's fixed cost dominates.

    Example:
        >>> forward_width([1, 1, 1, 3])  # one row with env tokens: feed them one per step
        1
        >>> forward_width([3, 3, 3, 1])  # most rows read three: one forward three wide
        3
        >>> forward_width([1, 1, 1, 3], overhead=1024.0)  # launch-bound (GPU): wide is nearly free
        3
    """
    several = [p for p in pending if p > 1]  # rows reading one token read one at any width
    if not several:
        return 1
    ones, rows = len(pending) - len(several), len(pending)
    best, best_rate = 1, -1.0
    for w in range(1, max(several) + 1):
        rate = (ones + sum(min(w, p) for p in several)) / (rows * (w + ROW_OVERHEAD) + overhead)
        if rate > best_rate + 1e-12:
            best, best_rate = w, rate
    return best


def _next_input(
    token: torch.Tensor,
    rows: torch.Tensor,
    queue: dict[int, list[int]],
    next_pos: torch.Tensor,
    pad: int,
    overhead: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """The next forward's input when some envs appended tokens the model has not read yet.

    Rows in ``queue`` feed their next tokens (the sampled token, then the env's) instead of acting; the
    others feed the token they sampled. The width is :func:`forward_width`'s: one token per row (no
    holes in the KV cache, and an env token costs exactly a decode step's share) unless reading several
    at once is cheaper per token; then shorter rows are left-padded with masked holes, which
    :func:`_compact_cache` drops later. Consumed tokens leave ``queue``.

    Returns:
        ``(input_ids, attention_mask columns, position_ids, caught_up)``: the tensors ``(len(rows), w)``
        and the envs whose queue this forward empties (their logits after it are current).
    """
    reading = [(b, i) for b, i in enumerate(rows.tolist()) if i in queue]
    pending = [1] * len(rows)
    for b, i in reading:
        pending[b] = len(queue[i])
    width = forward_width(pending, overhead)
    caught_up = []
    if width == 1:  # one token per row, no holes: the sampled tokens, the reading rows' next token swapped in
        ids = token.clone()
        for b, i in reading:
            ids[b, 0] = queue[i].pop(0)
            if not queue[i]:
                del queue[i]
                caught_up.append(i)
        return ids, torch.ones_like(ids), next_pos, caught_up
    seqs = [[t] for t in token[:, 0].tolist()]  # the sampled token, for rows that act
    for b, i in reading:
        seqs[b] = queue[i][:width]
        del queue[i][:width]
        if not queue[i]:
            del queue[i]
            caught_up.append(i)
    ids = torch.tensor([[pad] * (width - len(q)) + q for q in seqs], dtype=torch.long)  # pads, then tokens
    att = torch.tensor([[0] * (width - len(q)) + [1] * len(q) for q in seqs], dtype=torch.long)
    ids, att = ids.to(token.device), att.to(token.device)
    pos = next_pos + (att.cumsum(1) - 1).clamp(min=0)  # positions count real tokens only
    return ids, att, pos, caught_up


def _item(value: Any, i: int) -> Any:
    if isinstance(value, dict):
        return {k: _item(v, i) for k, v in value.items() if not k.startswith("_")}
    item = value[i]
    return item.item() if isinstance(item, np.generic) else item


def _final_info(info: dict[str, Any], i: int) -> dict[str, Any]:
    return {
        k: _item(v, i) for k, v in info.items() if not k.startswith("_") and info.get(f"_{k}", [False] * (i + 1))[i]
    }


@torch.no_grad()
def sample_per_problem(
    model: torch.nn.Module,
    env_id: str,
    k: int,
    *,
    indices: Sequence[int] | None = None,
    problems: Sequence[Any] | None = None,
    prefixes: Sequence[str] | str | None = None,
    split: str | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    batch_size: int = 128,
    env_kwargs: dict[str, Any] | None = None,
    venvs: dict[int, TokenVectorEnv] | None = None,
) -> list[tuple[list[int], Rollout]]:
    """``k`` completions of each problem, ``k`` consecutive envs per problem (``group_size=k``), in order.

    The one "sample K per problem" loop of the agents (evaluation, best-of-N, rejection sampling,
    reward-model data). Problems are named by split index (``indices``) or given whole (``problems``);
    ``batch_size // k`` problems go into each rollout.

    Args:
        model: The policy.
        env_id: A registered token env.
        k: Completions per problem.
        indices: Problem indices in ``split`` (exclusive with ``problems``).
        problems: :class:`~lm_envs.Problem` objects to play.
        prefixes: Start states: one per problem, or one for all (``""``: whole problems, no curriculum prefix).
        split: The split of ``indices``; the vector envs are made on it.
        temperature: Sampling temperature (0: greedy).
        generator: Sampling RNG (on the model's device).
        batch_size: Envs per rollout (at least ``k``).
        env_kwargs: ``gym.make`` overrides.
        venvs: A cache of vector envs by size, reused across calls (pass the same dict each time).

    Returns:
        ``(positions, rollout)`` per rollout: which of the given problems (positions in ``indices`` or
        ``problems``) it played, ``k`` consecutive rows each.
    """
    import gymnasium as gym

    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int (completions per problem), got {k!r}.")
    if (indices is None) == (problems is None):
        raise ValueError("give exactly one of indices= (split positions) or problems= (Problem objects).")
    items = list(indices if indices is not None else problems)  # type: ignore[arg-type]
    if isinstance(prefixes, str) or prefixes is None:
        prefixes = None if prefixes is None else [prefixes] * len(items)
    elif len(prefixes) != len(items):
        raise ValueError(f"{len(prefixes)} prefixes for {len(items)} problems; give one per problem.")
    kwargs = dict(env_kwargs or {})
    if split is not None:
        kwargs["split"] = split
    venvs = {} if venvs is None else venvs
    per_batch = max(1, batch_size // k)
    out: list[tuple[list[int], Rollout]] = []
    for start in range(0, len(items), per_batch):
        chunk = list(range(start, min(start + per_batch, len(items))))
        n_envs = len(chunk) * k
        if n_envs not in venvs:
            venvs[n_envs] = gym.make_vec(env_id, num_envs=n_envs, autoreset_mode="Disabled", **kwargs)
        key = "index" if indices is not None else "problem"
        options: dict[str, Any] = {key: [items[i] for i in chunk for _ in range(k)], "group_size": k}
        if split is not None:
            options["split"] = split
        if prefixes is not None:
            options["prefix"] = [prefixes[i] for i in chunk for _ in range(k)]
        out.append(
            (chunk, collect(model, venvs[n_envs], options=options, temperature=temperature, generator=generator))
        )
    return out
