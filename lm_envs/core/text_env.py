"""``TextEnv``: the same task and reward as ``TokenEnv``, one action = one whole completion string."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from lm_envs.core.components import RewardSpec, TaskSpec, resolve_action_size, resolve_reward, resolve_task
from lm_envs.core.curriculum import ReverseCurriculum, make_curriculum
from lm_envs.core.episodes import EnvConfig, EpisodeBatch, stop_rule_of, tracks_steps
from lm_envs.core.problem import Problem
from lm_envs.core.reward import as_outcome
from lm_envs.core.steps import advance_steps
from lm_envs.core.token_env import choose_problem
from lm_envs.core.tokenizer import TextCodec, load_codec


class AnyText(spaces.Space[str]):
    """A space of Python strings up to ``max_length`` characters (any Unicode).

    ``gymnasium.spaces.Text`` restricts characters to a charset, which prompts and completions do
    not respect; sampling here draws printable ASCII plus newlines.
    """

    _CHARS = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789 +-*/=.,#\n"))

    def __init__(self, max_length: int, seed: int | None = None) -> None:
        self.max_length = max_length
        super().__init__((), str, seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        n = int(self.np_random.integers(0, min(self.max_length, 64) + 1))
        return "".join(self.np_random.choice(self._CHARS, size=n))

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"AnyText({self.max_length})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AnyText) and other.max_length == self.max_length


class TextEnv(gym.Env):
    """One-step episodes: observe the prompt (plus start-state prefix), act with a whole completion.

    Takes the same arguments as :class:`~lm_envs.TokenEnv` and pays, for the same text, the same
    total reward: the text is split into steps and cut by the task's stop rule exactly as the
    token env does it (one shared function), the token budget is applied by counting the
    completion's tokens under the env's tokenizer (a completion that needs ``max_new_tokens`` or
    more tokens without ending is truncated to its first ``max_new_tokens`` tokens and pays the
    truncation penalty), and the reward is the sum of the step rewards and the outcome.

    Use it to evaluate models that act at text level (an external API, ``model.generate``).

    Multi-turn tasks (:attr:`~lm_envs.Task.multi_turn`): one action is one turn's text, and the
    observation is the conversation so far (prompt, the policy's turns, the env's replies). Each
    turn's text is encoded and run through the token env's own episode state machine, so the same
    conversation pays the same turn, step and outcome rewards, under the same budgets, as in
    :class:`~lm_envs.TokenEnv`; ``info`` is the token env's reply or end-of-episode info.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        task: TaskSpec,
        reward: RewardSpec,
        *,
        task_kwargs: Mapping[str, Any] | None = None,
        reward_kwargs: Mapping[str, Any] | None = None,
        tokenizer: str | TextCodec | None = None,
        vocab_size: int | None = None,
        max_prompt_tokens: int = 256,
        max_new_tokens: int = 256,
        step_separator: str = "\n",
        truncation_penalty: float = 0.0,
        chat_template: bool | None = None,
        system_prompt: str | None = None,
        max_turn_tokens: int | None = None,
        max_turns: int | None = None,
        stop_rule: bool = True,
        split: str = "train",
        curriculum: ReverseCurriculum | str | dict[str, Any] | None = None,
        max_chars: int = 1 << 16,
        render_mode: str | None = None,
    ) -> None:
        self.config = EnvConfig(
            max_prompt_tokens,
            max_new_tokens,
            step_separator,
            truncation_penalty,
            chat_template,
            system_prompt,
            max_turn_tokens,
            max_turns,
            stop_rule,
        )
        self.task = resolve_task(task, task_kwargs)
        self.task.check_split(split)
        self.reward = resolve_reward(reward, reward_kwargs)
        self.codec = load_codec(tokenizer)
        self.config = self.config.for_codec(self.codec)
        self.split = split
        self.curriculum = make_curriculum(curriculum, step_separator)
        self._stage = 0
        self.separator = step_separator.encode("utf-8")
        self.track_steps = tracks_steps(self.task, self.reward, self.config.stop_rule)
        self.stops = stop_rule_of(self.task, self.config.stop_rule)
        self.observation_space = AnyText(max_chars)
        self.action_space = AnyText(max_chars)
        self.render_mode = render_mode
        self._problem: Problem | None = None
        self._prefix = ""
        self._done = True
        # Multi-turn tasks: the token env's own episode state machine, fed each turn's tokens.
        self._turns: EpisodeBatch | None = None
        if self.task.multi_turn:
            size = resolve_action_size(self.codec, vocab_size)
            self._turns = EpisodeBatch(1, self.task, self.reward, self.codec, size, self.config, self.curriculum)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        problem, split, index, prefix, self._stage = choose_problem(
            self.task, options, self.split, self.np_random, self.curriculum
        )
        self._problem, self._prefix, self._done = problem, prefix, False
        if self._turns is not None:
            self._turns.start(0, problem, prefix, self._stage)
        info = {"prompt": problem.prompt, "prefix": prefix, "problem_id": problem.id, "split": split, "index": index}
        if self.curriculum is not None:
            info["stage"] = self._stage
        return self.config.prompt_text(self.codec, problem.prompt) + prefix, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._problem is None or self._done:
            raise RuntimeError(
                "call reset() before step(): each episode takes exactly one completion (multi-turn: one turn per "
                "step until the episode ends)."
            )
        if not isinstance(action, str):
            raise ValueError(f"a TextEnv action is the completion text (a str), got {type(action).__name__}.")
        if self._turns is not None:
            return self._step_turn(action)
        reward, terminated, truncated, info = self.score(self._problem, action, self._prefix)
        self._done = True
        if self.curriculum is not None:
            if self._stage > 0:
                self.curriculum.record(self._stage, bool(info["outcome"].get("correct", info["outcome_reward"] > 0)))
            info["curriculum"] = self.curriculum.info()
        prompt = self.config.prompt_text(self.codec, self._problem.prompt)
        return prompt + self._prefix + info["completion"], reward, terminated, truncated, info

    def _step_turn(self, text: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """One turn of a multi-turn task: ``text``'s tokens go through the token env's state machine.

        The turn ends where the token env's would: on the token that completes a turn stop string,
        or closes a step that fires the stop rule; otherwise an EOS after the text ends it (a final
        turn). Text after the turn's end is not used (``info["unused_text"]``). So a conversation
        pays the same rewards here as its turns' tokens pay in :class:`~lm_envs.TokenEnv`.
        """
        episodes, rows = self._turns, np.zeros(1, dtype=np.int64)
        assert episodes is not None
        ids = self.codec.encode(text) + [self.codec.eos_token_id]
        turns, total = len(episodes.turns[0]), 0.0
        info: dict[str, Any] = {}
        terminated = truncated = False
        for k, token in enumerate(ids):
            rewards, term, trunc, infos, turn_infos = episodes.step(rows, np.array([token], dtype=np.int64))
            total += float(rewards[0])
            terminated, truncated = bool(term[0]), bool(trunc[0])
            info = infos.get(0, turn_infos.get(0, {}))
            if terminated or truncated or len(episodes.turns[0]) > turns:
                used = self.codec.decode_bytes(ids[: k + 1]).decode("utf-8", errors="replace")
                if len(used) < len(text):
                    info = {**info, "unused_text": text[len(used) :]}
                break
        self._done = terminated or truncated
        if self._done and self.curriculum is not None:
            if self._stage > 0:
                self.curriculum.record(self._stage, bool(info["outcome"].get("correct", info["outcome_reward"] > 0)))
            info["curriculum"] = self.curriculum.info()
        assert self._problem is not None
        prompt = self.config.prompt_text(self.codec, self._problem.prompt)
        return prompt + self._prefix + episodes.completion(0), total, terminated, truncated, info

    def score(self, problem: Problem, completion: str, prefix: str = "") -> tuple[float, bool, bool, dict[str, Any]]:
        """Score ``completion`` for ``problem`` as the token env would; see the class docstring.

        Returns:
            ``(total_reward, terminated, truncated, info)`` with the token env's end-of-episode info.
        """
        cfg = self.config
        # Token budget, as the token env applies it: the completion's tokens followed by EOS; if
        # they do not fit in max_new_tokens, the episode is cut after max_new_tokens tokens.
        ids = self.codec.encode(completion)
        cut = len(ids) >= cfg.max_new_tokens
        data = self.codec.decode_bytes(ids[: cfg.max_new_tokens]) if cut else completion.encode("utf-8")
        num_tokens = cfg.max_new_tokens if cut else len(ids) + 1
        closed: list[tuple[tuple[str, ...], str]] = []
        truncated = cut
        if self.track_steps:
            history: list[str] = []
            carry = b""
            if prefix:
                carry = advance_steps(history, b"", prefix.encode("utf-8"), self.separator, False, self.stops).carry
            # One scan over the whole text equals the token env's scans at each separator token plus
            # its final scan, because steps close at the same bytes whatever the tokenization. The
            # EOS after the text closes the open step; a cut by the budget leaves it unpaid.
            progress = advance_steps(history, carry, data, self.separator, not cut, self.stops)
            closed = progress.closed
            end = progress.stop_end
            if end is not None and not (end == len(carry) + len(data) and not data.endswith(self.separator)):
                # The stop fired on a step closed by a separator token (not by the final EOS).
                data = data[: end - len(carry)]
                lengths = np.cumsum([len(self.codec.token_bytes[t]) for t in ids], dtype=np.int64)
                num_tokens = int(np.searchsorted(lengths, len(data))) + 1
            truncated = cut and end is None
        text = data.decode("utf-8", errors="replace")

        total = 0.0
        step_rewards: list[float] = []
        if closed and self.reward.process:
            step_rewards = [float(s) for s in self.reward.step_batch([problem] * len(closed), *zip(*closed))]
            total += sum(step_rewards)
        outcome = as_outcome(self.reward.outcome_batch([problem], [prefix + text])[0], self.reward)
        total += outcome.reward + (cfg.truncation_penalty if truncated else 0.0)
        info: dict[str, Any] = {
            "completion": text,
            "outcome_reward": float(outcome.reward),
            "outcome": dict(outcome.record),
            "num_tokens": min(num_tokens, cfg.max_new_tokens),
        }
        if self.reward.process:
            info["step_rewards"] = step_rewards
        if "correct" in outcome.record:
            info["is_success"] = bool(outcome.record["correct"])
        return total, not truncated, truncated, info
