"""Reference policies that show where an env's scores stop being meaningful.

Two baselines, both scored under the env's own evaluation protocol:

* **format-only**: :meth:`Task.format_only <lm_envs.Task.format_only>` writes a well-formed answer
  with no task knowledge (math: ``#### <random number>``; QA: the abstention; chat: a fixed polite
  reply). :func:`evaluate_text_policy` plays it through the env's :class:`~lm_envs.TextEnv`, so its
  score is measured with the env's reward, stop rule and token budget, not assumed.
* **random-reward**: the standard training run with the env's reward replaced by
  :class:`RandomReward` (Bernoulli per episode, independent of the text), then evaluated on the
  real env. It shows what training alone, without a reward signal, buys. The training itself is
  the agents' (``leaderboard.baselines`` runs it); this module holds the reward.

Example:
    >>> result = evaluate_text_policy("LMEnv/TargetWord-v0", format_only_policy, seed=0)
    >>> result["num_episodes"], 0.0 <= result["mean_return"] <= 1.0
    (8, True)
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lm_envs.core.problem import Problem
from lm_envs.core.reward import Outcome, Reward, as_outcome

__all__ = ["RandomReward", "TextPolicy", "evaluate_text_policy", "format_only_policy", "protocol_score"]

#: A text-level policy: ``(task, problem, observation, rng) -> text``. ``observation`` is the
#: TextEnv's observation (the prompt, or the conversation so far in a multi-turn episode); the text
#: is a whole completion, or one turn of a multi-turn episode.
TextPolicy = Callable[[Any, Problem, str, random.Random], str]


def format_only_policy(task: Any, problem: Problem, observation: str, rng: random.Random) -> str:
    """The format-only policy: the task's :meth:`~lm_envs.Task.format_only` answer, on every turn."""
    return task.format_only(problem, rng)


def protocol_score(metric: str, result: Mapping[str, Any]) -> float:
    """The protocol's ``metric`` from an evaluation result (``accuracy``, ``mean_return`` or a reward metric).

    Raises:
        KeyError: If the result has no such metric (the reward's :meth:`~lm_envs.Reward.metrics` lacks it).
    """
    if metric not in result:
        raise KeyError(
            f"the evaluation has no metric {metric!r} (it has {sorted(k for k in result if k != 'records')}); "
            "the protocol's metric must be accuracy, mean_return or a key of the reward's metrics()."
        )
    return float(result[metric])


def evaluate_text_policy(
    env_id: str,
    policy: TextPolicy,
    *,
    seed: int = 0,
    split: str | None = None,
    num_episodes: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Play a text-level policy on the first problems of the protocol's split, through the env's TextEnv.

    The same episodes as the agents' evaluation (problems ``0 .. n - 1`` of the split in index order,
    the whole problem: no curriculum prefix), the same reward and budgets as the token env. Each episode
    gets its own random stream, ``random.Random(f"format/{seed}/{index}")`` (so every variant of an env
    makes the same guesses on the same problem); multi-turn episodes call the policy once per turn until
    the episode ends.

    Args:
        env_id: A registered lm_envs id with an evaluation protocol.
        policy: ``(task, problem, observation, rng) -> text``, e.g. :func:`format_only_policy`.
        seed: Seed of the episodes' random streams.
        split: Split to play (default: the protocol's).
        num_episodes: Problems to play (default: the protocol's count, else the whole split).
        env_kwargs: Keyword overrides for the env (``tokenizer=``, ...).

    Returns:
        ``{"accuracy", "mean_return", "num_episodes", "mean_tokens", "records", <the protocol's metric>}``
        plus the reward's :meth:`~lm_envs.Reward.metrics`; ``records`` holds per episode ``index``,
        ``problem_id``, ``return``, ``success``, ``completion`` and ``turns``.

    Raises:
        ValueError: If the policy returns something other than a str.
        NotImplementedError: From :func:`format_only_policy`, if the task declares no format-only answer.
    """
    from lm_envs.core.protocol import get_protocol
    from lm_envs.core.registration import make_text

    protocol = get_protocol(env_id)
    split = split or protocol.split
    kwargs = {k: v for k, v in (env_kwargs or {}).items() if k not in ("curriculum", "split")}
    env = make_text(env_id, split=split, **kwargs)
    task = env.task
    n = num_episodes if num_episodes is not None else protocol.num_episodes
    n = task.size(split) if n is None else min(n, task.size(split))
    records: list[dict[str, Any]] = []
    for index in range(n):
        rng = random.Random(f"format/{seed}/{index}")
        observation, info = env.reset(seed=seed, options={"index": index})
        problem = task.problem(split, index)
        total, turns, done = 0.0, 0, False
        while not done:
            text = policy(task, problem, observation, rng)
            if not isinstance(text, str):
                raise ValueError(f"a text policy returns the completion text (a str), got {type(text).__name__}.")
            observation, reward, terminated, truncated, step_info = env.step(text)
            total, turns, done = total + float(reward), turns + 1, terminated or truncated
        records.append(
            {
                "index": index,
                "problem_id": info["problem_id"],
                "return": total,
                "success": bool(step_info.get("is_success", False)),
                "completion": step_info.get("completion", ""),
                "num_tokens": int(step_info.get("num_tokens", 0)),
                "turns": turns,
                "outcome": step_info.get("outcome", {}),
            }
        )
    result: dict[str, Any] = {
        "num_episodes": len(records),
        "accuracy": sum(r["success"] for r in records) / max(len(records), 1),
        "mean_return": sum(r["return"] for r in records) / max(len(records), 1),
        "mean_tokens": sum(r["num_tokens"] for r in records) / max(len(records), 1),
    }
    for name, value in env.reward.metrics([r["outcome"] for r in records]).items():
        result.setdefault(name, value)
    result["records"] = records
    return result


def _unit(*parts: object) -> float:
    """A uniform number in [0, 1) from a stable hash of ``parts`` (the same in every process)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class RandomReward(Reward):
    """A no-signal control reward: ``high`` with probability ``p`` per episode, else ``low``, whatever was written.

    Each episode gets a fresh coin: the draw is a stable hash of ``(seed, problem id, completion, n)``
    where ``n`` counts how often this reward instance has already scored that completion of that
    problem. So no text pays more than another in expectation (a policy cannot learn to write a
    string the coin favours, as it could if the coin were a fixed function of the text), while a
    run's coins stay reproducible: the same episodes in the same order get the same coins, and a
    fresh token env and a fresh text env pay the same for the same text. The counts are the reward's
    state (:meth:`state_dict`); training checkpoints save the training env's reward state, so a
    resumed run draws the coins an uninterrupted one draws. Every channel
    a learner reads carries the coin: the reward, and
    ``record["correct"]`` (so ``info["is_success"]``, which rejection-sampling learners filter on, is
    the coin too). Process rewards and the task's turn rewards are not paid (:attr:`pays_turn_rewards`
    is ``False``). The env's own reward (``reward``, optional) still scores each completion, for the
    record only: its reward as ``record["true_reward"]``, its ``correct`` as ``record["true_correct"]``,
    the rest of its record as it is, and :meth:`metrics` computed on the true records. A training
    run's own success rate and held-out accuracy are then the coin's; score the trained model on the
    real env (``leaderboard.baselines`` does).

    Args:
        reward: The env's reward (an import string, class or instance), scored for the record only.
        reward_kwargs: Its keyword arguments.
        p: Probability of ``high``.
        seed: Seed of the coin (use the run's seed).
        low: Reward when the coin says no.
        high: Reward when it says yes.

    Example:
        >>> r = RandomReward("lm_envs.tasks.target_word:PrefixMatchReward", p=0.5, seed=0)
        >>> out = r.outcome(Problem("a", "q", "apple"), " apple")
        >>> out.reward in (0.0, 1.0), out.record["correct"] == (out.reward == 1.0), out.record["true_correct"]
        (True, True, True)
        >>> again = RandomReward("lm_envs.tasks.target_word:PrefixMatchReward", p=0.5, seed=0)
        >>> out == again.outcome(Problem("a", "q", "apple"), " apple")
        True
    """

    process = False
    pays_turn_rewards = False

    def __init__(
        self,
        reward: Any = None,
        reward_kwargs: Mapping[str, Any] | None = None,
        p: float = 0.5,
        seed: int = 0,
        low: float = 0.0,
        high: float = 1.0,
    ) -> None:
        from lm_envs.core.components import resolve_reward

        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomReward p must be a probability in [0, 1], got {p!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"RandomReward seed must be an int, got {seed!r}.")
        for name, value in (("low", low), ("high", high)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"RandomReward {name} must be a finite number, got {value!r}.")
        if not high > low:
            raise ValueError(f"RandomReward needs high > low, got low={low!r}, high={high!r}.")
        self.inner = None if reward is None else resolve_reward(reward, reward_kwargs)
        self.p, self.seed, self.low, self.high = float(p), seed, float(low), float(high)
        self._seen: dict[bytes, int] = {}

    def coin(self, problem: Problem, completion: str) -> float:
        """The reward paid for this episode: ``high`` with probability ``p``, else ``low`` (one fresh draw per call)."""
        key = hashlib.sha256(f"{problem.id}\x1f{completion}".encode("utf-8", "surrogatepass")).digest()[:16]
        n = self._seen.get(key, 0)
        self._seen[key] = n + 1
        return self.high if _unit("random-reward", self.seed, problem.id, completion, n) < self.p else self.low

    def state_dict(self) -> dict[str, Any]:
        """The repeat counts (``{"seen": {key: n}}``, keys as hex), which decide the next coins.

        Example:
            >>> r = RandomReward(p=0.5, seed=3)
            >>> coins = [r.coin(Problem("a", "q", "x"), "y") for _ in range(4)]
            >>> saved = r.state_dict()
            >>> later = [r.coin(Problem("a", "q", "x"), "y") for _ in range(8)]
            >>> resumed = RandomReward(p=0.5, seed=3)
            >>> resumed.load_state_dict(saved)
            >>> [resumed.coin(Problem("a", "q", "x"), "y") for _ in range(8)] == later
            True
        """
        return {"seen": {key.hex(): n for key, n in self._seen.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output.

        Raises:
            ValueError: If ``state`` is not such an output.
        """
        seen = state.get("seen") if isinstance(state, Mapping) else None
        try:
            restored = {bytes.fromhex(key): int(n) for key, n in (seen or {}).items()}
        except (AttributeError, TypeError, ValueError) as e:
            raise ValueError(
                f"RandomReward state must be RandomReward.state_dict()'s {{'seen': {{hex key: count}}}}: {e}"
            ) from None
        if seen is None or any(len(k) != 16 or n < 1 for k, n in restored.items()):
            raise ValueError("RandomReward state must be RandomReward.state_dict()'s {'seen': {hex key: count}}.")
        self._seen = restored

    def outcome(self, problem: Problem, completion: str) -> Outcome:
        return self.outcome_batch([problem], [completion])[0]

    def outcome_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[Outcome]:
        true = (
            [as_outcome(o, self.inner) for o in self.inner.outcome_batch(problems, completions)]
            if self.inner is not None
            else [Outcome(0.0) for _ in problems]
        )
        out = []
        for problem, completion, t in zip(problems, completions, true, strict=True):
            paid = self.coin(problem, completion)
            record = {**t.record, "true_reward": float(t.reward), "random_reward": paid, "correct": paid > self.low}
            if "correct" in t.record:
                record["true_correct"] = t.record["correct"]
            out.append(Outcome(paid, record))
        return out

    def metrics(self, records: Sequence[dict[str, Any]]) -> dict[str, float]:
        if self.inner is None:
            return {}
        true = [{**r, "correct": r["true_correct"]} if "true_correct" in r else r for r in records]
        return self.inner.metrics(true)

    def __repr__(self) -> str:
        return f"RandomReward(p={self.p}, seed={self.seed}, low={self.low}, high={self.high}, inner={self.inner!r})"
