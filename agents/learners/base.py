"""The Learner interface: the one seam between the run loop and the RL algorithms.

The run loop (:func:`agents.run.run`) does everything every algorithm shares: the env and the model,
pre-training and the SFT warm start, the frozen KL reference, the learning-rate schedule, evaluation,
checkpoints, resume and the distributed set-up. It knows an algorithm only through :class:`Learner`:

- ``policy``: the module that trains and is checkpointed (the LM, plus a value head for actor-critics);
- ``optimizer``: its optimizer (the loop scales its groups' ``lr`` by ``train.lr_schedule`` and saves its state);
- ``uses_reference()``: whether :meth:`~Learner.iteration` reads the frozen reference (else none is built);
- ``iteration(it, ref)``: one training iteration (collect, update), returning metrics to log;
- ``state_dict()`` / ``load_state_dict()``: the algorithm's own state for checkpoints (KL controller,
  baselines, sample pools), JSON-serialisable;
- optional ``updates_reference()``: ``True`` when :meth:`~Learner.iteration` moves the reference's
  weights (self-rewarding); the loop then saves them in every checkpoint and restores them on resume.

An algorithm is one module in :mod:`agents.learners` with a config dataclass whose ``learner`` class
variable names its Learner class, plus one ``conf/agent/<name>.yaml`` whose defaults list
``<module>_schema``: :func:`discover` finds the module, :func:`agents.run.config.register_configs`
stores its schema, :func:`make_learner` builds it. The README's "Adding an algorithm" shows one.

Also here: what the on-policy learners share (collecting a rollout for an iteration, its metrics, the
pre-training mix) and the metrics every iteration must return (:data:`REQUIRED_METRICS`).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from agents.learners.pretrain import rehearsal_documents, replay_batches
from agents.policy.precision import Precision
from agents.policy.sampling import Rollout, collect
from agents.run.distributed import Dist
from lm_envs import Task, TextCodec
from lm_envs.core.reward import Reward

#: What every :meth:`Learner.iteration` returns (the progress bar and the curves read them).
REQUIRED_METRICS = ("rollout/return_mean", "rollout/success", "rollout/tokens_per_s")


@dataclass
class RunContext:
    """What the run loop hands a learner: the env, the device, the run's seed and its place in the world.

    Attributes:
        env_id: The registered env id.
        env_kwargs: ``gym.make`` overrides (``vocab_size`` set to the model's logits width).
        task: The env's task (problems, documents).
        codec: The env's tokenizer.
        seed: The run's seed; every random draw of iteration ``it`` is seeded from ``(seed, it)``.
        device: Where the policy lives; every tensor a learner makes goes there.
        precision: Autocast, gradient scaling and the optimizer step (mixed precision).
        dist: Rank and world size (a one-process run is rank 0 of 1).
        demo_problems: The SFT warm start's demonstrations are the train split's first this many
            problems (``sft.num_examples``; ``None``: all).
    """

    env_id: str
    env_kwargs: dict[str, Any]
    task: Task
    codec: TextCodec
    seed: int
    device: torch.device
    precision: Precision = field(default_factory=Precision)
    dist: Dist = field(default_factory=Dist)
    demo_problems: int | None = None

    def generator(self, iteration: int) -> torch.Generator:
        """The sampling generator of ``iteration``, on the policy's device (the same on every rank)."""
        return torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + iteration)


@runtime_checkable
class Learner(Protocol):
    """One RL algorithm, as the run loop sees it (see the module docstring)."""

    policy: torch.nn.Module
    optimizer: torch.optim.Optimizer

    def uses_reference(self) -> bool:
        """Whether :meth:`iteration` reads the frozen reference model (asked after a resume)."""
        ...

    def iteration(self, it: int, ref: torch.nn.Module | None) -> dict[str, float]:
        """Train one iteration (0-based ``it``); returns metrics including :data:`REQUIRED_METRICS`."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The algorithm's own state, JSON-serialisable, for checkpoints."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        ...


# --------------------------------------------------------------------------------------------
# Finding and building learners
# --------------------------------------------------------------------------------------------


def discover() -> dict[str, type]:
    """The config dataclass of every algorithm in :mod:`agents.learners`, by module name.

    A module counts when it defines a dataclass with a ``learner`` class variable (the name of its
    Learner class in the same module).
    """
    import agents.learners as package

    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for obj in vars(module).values():
            if (
                dataclasses.is_dataclass(obj)
                and isinstance(obj, type)
                and obj.__module__ == module.__name__
                and isinstance(getattr(obj, "learner", None), str)
            ):
                found[info.name] = obj
    return found


def learner_class(cfg: Any) -> type:
    """The Learner class that ``cfg``'s dataclass names (``learner`` class variable, same module).

    Raises:
        TypeError: When ``cfg`` names no learner.
    """
    name = getattr(type(cfg), "learner", None)
    if not isinstance(name, str):
        raise TypeError(
            f"agent config {type(cfg).__name__} names no learner; give its dataclass a class variable "
            "`learner: ClassVar[str] = '<LearnerClass>'` (see agents/learners/base.py)."
        )
    module = importlib.import_module(type(cfg).__module__)
    try:
        return getattr(module, name)
    except AttributeError:
        raise TypeError(
            f"{type(cfg).__name__}.learner names {name!r}, which {module.__name__} does not define."
        ) from None


def make_learner(cfg: Any, lm: torch.nn.Module, ctx: RunContext) -> Learner:
    """Build the learner ``cfg`` names around the language model ``lm`` (already on ``ctx.device``)."""
    learner = learner_class(cfg)(cfg, lm, ctx)
    if not isinstance(learner, Learner):
        raise TypeError(f"{type(learner).__name__} does not implement agents.learners.Learner (see its docstring).")
    return learner


# --------------------------------------------------------------------------------------------
# Shared by the on-policy learners
# --------------------------------------------------------------------------------------------


class HasSampling(Protocol):
    """The sampling settings every on-policy agent config has."""

    num_envs: int
    group_size: int
    temperature: float


def check_batch(cfg: HasSampling, dist: Dist) -> None:
    """Fail before any work when the rollout batch cannot be split into whole groups per rank."""
    if cfg.group_size < 1 or cfg.num_envs < 1:
        raise ValueError(f"agent.num_envs and agent.group_size must be >= 1, got {cfg.num_envs}, {cfg.group_size}.")
    if cfg.num_envs % cfg.group_size:
        raise ValueError(f"agent.num_envs={cfg.num_envs} must be a multiple of agent.group_size={cfg.group_size}.")
    groups = cfg.num_envs // cfg.group_size
    if groups < dist.world_size:
        raise ValueError(
            f"agent.num_envs={cfg.num_envs} makes {groups} groups of {cfg.group_size}, fewer than the "
            f"{dist.world_size} processes: every rank needs whole groups. Raise agent.num_envs or use fewer processes."
        )
    if groups % dist.world_size:
        raise ValueError(
            f"agent.num_envs={cfg.num_envs} makes {groups} groups of {cfg.group_size}, which the world size "
            f"{dist.world_size} does not divide (groups are never split across ranks); make agent.num_envs a "
            f"multiple of {cfg.group_size * dist.world_size}."
        )


def make_train_venv(cfg: HasSampling, ctx: RunContext) -> Any:
    """This rank's training vector env: its share of ``cfg.num_envs`` (whole groups), one episode per env."""
    import gymnasium as gym

    check_batch(cfg, ctx.dist)
    n_local = cfg.num_envs // ctx.dist.world_size
    return gym.make_vec(ctx.env_id, num_envs=n_local, autoreset_mode="Disabled", **ctx.env_kwargs)


def collect_iteration(
    lm: torch.nn.Module,
    venv: Any,
    cfg: HasSampling,
    ctx: RunContext,
    it: int,
    generator: torch.Generator,
    value_head: torch.nn.Module | None = None,
    draw: int = 0,
) -> tuple[Rollout, float]:
    """This rank's rollout of iteration ``it`` and the seconds it took, on ``ctx.device``.

    ``draw > 0`` is an extra rollout of the same iteration on other problems (DAPO's dynamic
    sampling refilling its batch): its env seeds are offset by ``draw`` times a large prime.

    Rank ``r`` of ``W`` plays the global envs ``r * n .. r * n + n - 1`` (``n = num_envs / W``): env
    ``i`` of the reset with seed ``s`` plays what env ``s + i`` plays, so the union over ranks is the
    one-process batch. Under torch.distributed the sampler draws one uniform per *global* row, so the
    tokens sampled do not depend on the world size either.
    """
    t0 = time.time()
    n = venv.num_envs
    base_seed = (ctx.seed * 1_000_003 + it * cfg.num_envs + draw * 999_999_937) % 2**31
    curriculum = venv.episodes.curriculum
    before = curriculum.state_dict() if curriculum is not None and ctx.dist.distributed else None
    with ctx.precision.autocast(), ctx.dist.gathered(lm, value_head):  # FSDP: ranks sample different lengths
        rollout = collect(
            lm,
            venv,
            seed=base_seed + ctx.dist.rank * n,
            options={"group_size": cfg.group_size} if cfg.group_size > 1 else None,
            temperature=cfg.temperature,
            generator=generator,
            value_head=value_head,
            global_rows=(ctx.dist.rank * n, cfg.num_envs) if ctx.dist.distributed else None,
        )
    if before is not None:  # every rank's curriculum becomes the one-process run's
        events = [e for part in ctx.dist.gather_objects(curriculum_events(rollout, ctx.dist.rank * n)) for e in part]
        replay_curriculum(curriculum, before, events)
    return rollout.to(ctx.device), time.time() - t0


def curriculum_events(rollout: Rollout, first_row: int = 0) -> list[tuple[int, int, int, bool]]:
    """What a reverse curriculum recorded during ``rollout``: ``(end step, global row, stage, success)`` per episode.

    The env records an episode when it ends, steps in order and rows in order within a step, so sorting
    these tuples gives the order in which one process playing every row recorded them (a single-turn
    episode of ``L`` tokens ends at step ``L - 1``). ``first_row``: the global index of this rank's row 0.
    """
    ends = (rollout.mask.sum(1) - 1).tolist()
    events = []
    for i, (reset, info) in enumerate(zip(rollout.reset_infos, rollout.infos, strict=True)):
        stage = int(reset.get("stage", 0))
        if stage > 0 and "outcome" in info:  # the env's criterion (EpisodeBatch.step)
            success = bool(info["outcome"].get("correct", info["outcome_reward"] > 0))
            events.append((int(ends[i]), first_row + i, stage, success))
    return events


def replay_curriculum(curriculum: Any, before: dict[str, Any], events: list[tuple[int, int, int, bool]]) -> None:
    """Rewind ``curriculum`` to ``before`` and record ``events`` (every rank's) in one-process order.

    Under torch.distributed each rank's env sees only its own episodes, so a staged schedule would
    advance on each rank's success rate at its own time: the ranks would then train from different
    start states, and the run would depend on the world size. Replaying the union on every rank keeps
    one schedule, the one a single process playing every row follows.
    """
    curriculum.load_state_dict(before)
    for _, _, stage, success in sorted(events):
        curriculum.record(stage, success)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is 1."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def global_mean(x: torch.Tensor, dist: Dist, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``x`` (over ``mask``'s entries) across every rank's entries; the local mean in one process."""
    if not dist.distributed:
        return x.mean() if mask is None else masked_mean(x, mask)
    mask = torch.ones_like(x) if mask is None else mask.to(x.dtype)
    sums = dist.sum_(torch.stack([(x * mask).sum(), mask.sum()]).double())
    return (sums[0] / sums[1].clamp(min=1)).to(x.dtype)


def rollout_metrics(rollout: Rollout, seconds: float, reward: Any, dist: Dist) -> dict[str, float]:
    """Return, success, length, throughput and the outcome records' means over the global batch.

    Every number is a mean over all ranks' episodes (sums all-reduced), so rank 0 logs the batch.
    """
    records = [info.get("outcome", {}) for info in rollout.infos]
    returns = rollout.returns.double().cpu()
    lengths = rollout.mask.sum(1).double().cpu()
    success = rollout.success().double()
    sums = {
        "n": float(len(returns)),
        "return": float(returns.sum()),
        "return_sq": float((returns**2).sum()),
        "success": float(success.sum()),
        "length": float(lengths.sum()),
        "tokens": float(rollout.num_tokens),
    }
    values: dict[str, list[float]] = {}
    for record in records:
        for key, value in record.items():
            if isinstance(value, (bool, int, float)) and value == value:
                values.setdefault(key, []).append(float(value))
    for key, v in values.items():
        sums[f"outcome_sum/{key}"] = float(np.sum(v))
        sums[f"outcome_n/{key}"] = float(len(v))
    sums = dist.sum_floats(sums)
    n = max(sums["n"], 1.0)
    mean = sums["return"] / n
    var = max(sums["return_sq"] / n - mean**2, 0.0) * n / max(n - 1, 1.0)
    out = {
        "rollout/return_mean": mean,
        "rollout/return_std": var**0.5 if n > 1 else 0.0,
        "rollout/success": sums["success"] / n,
        "rollout/length_mean": sums["length"] / n,
        # every rank samples at once: the batch's tokens over this rank's time
        "rollout/tokens_per_s": sums["tokens"] / max(seconds, 1e-9),
        "time/rollout_s": seconds,
    }
    for key in values:
        if f"outcome_n/{key}" in sums:
            out[f"rollout/outcome/{key}"] = sums[f"outcome_sum/{key}"] / max(sums[f"outcome_n/{key}"], 1.0)
    # the reward's own metrics (e.g. honesty rates) need the records themselves: this rank's episodes
    out.update({f"rollout/{k}": float(v) for k, v in reward.metrics(records).items()})
    return out


def curriculum_metrics(venv: Any) -> dict[str, float]:
    """The reverse curriculum's stage and per-stage success rates (empty without a curriculum)."""
    curriculum = venv.episodes.curriculum
    if curriculum is None:
        return {}
    out = {"curriculum/stage": float(curriculum.stage)}
    out.update({f"curriculum/success_stage{k}": float(v) for k, v in curriculum.success_rates().items()})
    return out


def curriculum_state(venv: Any) -> dict[str, Any]:
    """A training env's own state, for checkpoints (each key only when there is such state).

    ``{"curriculum": ...}`` of its reverse curriculum and ``{"reward": ...}`` of a stateful reward
    (``Reward.state_dict``: RandomReward's repeat counts, so a resumed run draws the same coins).
    """
    curriculum = venv.episodes.curriculum
    out = {"curriculum": curriculum.state_dict()} if curriculum is not None else {}
    reward = venv.episodes.reward
    reward_state = reward.state_dict() if isinstance(reward, Reward) else {}  # not an nn.Module's tensors
    return {**out, "reward": reward_state} if reward_state else out


def load_curriculum_state(venv: Any, state: dict[str, Any]) -> None:
    """Restore :func:`curriculum_state`'s output (a state without a part leaves that part as it is)."""
    if venv.episodes.curriculum is not None and "curriculum" in state:
        venv.episodes.curriculum.load_state_dict(state["curriculum"])
    if "reward" in state and isinstance(venv.episodes.reward, Reward):
        venv.episodes.reward.load_state_dict(state["reward"])


class PretrainingMix:
    """InstructGPT's pre-training mix: rows of the task's documents for every RL update.

    Built (and its settings checked) before any work; the rows of iteration ``it`` are drawn from
    ``(seed, 17, it)``, so a resumed run draws the same rows.
    """

    key: ClassVar[str] = "agent.ptx_rows"

    def __init__(self, cfg: Any, ctx: RunContext) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.docs = rehearsal_documents(ctx.task, ctx.codec, f"agent.ptx_coef={cfg.ptx_coef}")
        # raises now on bad row settings (nothing is drawn: the batches are a lazy generator)
        replay_batches(self.docs, cfg.ptx_rows, cfg.ptx_block_size, None, ctx.codec.pad_token_id, self.key)

    def batch(self, it: int) -> dict[str, torch.Tensor]:
        rows = replay_batches(
            self.docs,
            self.cfg.ptx_rows,
            self.cfg.ptx_block_size,
            np.random.default_rng([self.ctx.seed, 17, it]),
            self.ctx.codec.pad_token_id,
            self.key,
        )
        return {k: v.to(self.ctx.device) for k, v in next(rows).items()}


def pretraining_mix(cfg: Any, ctx: RunContext) -> PretrainingMix | None:
    """A :class:`PretrainingMix` when ``cfg.ptx_coef > 0``, else ``None``."""
    return PretrainingMix(cfg, ctx) if cfg.ptx_coef > 0 else None
