"""The batched episode state machine behind :class:`TokenEnv` and :class:`TokenVectorEnv`.

State lives in numpy arrays over the batch (token buffer, mask, lengths); the per-token hot path
is a handful of vectorised array operations. Python work happens only for the few envs whose token
may close a reasoning step (a lookup table says which token ids contain the separator's last
byte) and for envs that end; their reward calls are batched across the whole vector step.
Decoding is incremental: each generated token's bytes are read once when its step closes and once
when the episode ends, so the cost of a step does not grow with the length of the episode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from lm_envs.core.curriculum import ReverseCurriculum
from lm_envs.core.problem import Problem
from lm_envs.core.reward import Outcome, Reward, as_outcome
from lm_envs.core.steps import advance_steps
from lm_envs.core.task import Task
from lm_envs.core.tokenizer import TextCodec


@dataclass(frozen=True)
class EnvConfig:
    """Settings shared by the token, vector and text environments (validated on creation).

    ``max_new_tokens`` is the episode's budget of tokens after the prompt (the policy's and, in
    multi-turn episodes, the env's); ``max_turn_tokens`` bounds the policy's tokens in one turn and
    ``max_turns`` the policy's turns (both multi-turn only; ``None``: no limit).
    """

    max_prompt_tokens: int = 256
    max_new_tokens: int = 256
    step_separator: str = "\n"
    truncation_penalty: float = 0.0
    chat_template: bool | None = None
    system_prompt: str | None = None
    max_turn_tokens: int | None = None
    max_turns: int | None = None
    stop_rule: bool = True

    def __post_init__(self) -> None:
        for name in ("max_prompt_tokens", "max_new_tokens", "max_turn_tokens", "max_turns"):
            value = getattr(self, name)
            if value is None and name in ("max_turn_tokens", "max_turns"):
                continue
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int{' or None' if 'turn' in name else ''}, got {value!r}.")
        if not isinstance(self.step_separator, str) or not self.step_separator:
            raise ValueError(f"step_separator must be a non-empty str (default '\\n'), got {self.step_separator!r}.")
        penalty = float(self.truncation_penalty)
        if penalty != penalty or abs(penalty) == float("inf"):
            raise ValueError(f"truncation_penalty must be finite, got {self.truncation_penalty!r}.")
        if self.chat_template is not None and not isinstance(self.chat_template, (bool, np.bool_)):
            raise ValueError(
                f"chat_template must be True, False or None (use the tokenizer's template if it has one), "
                f"got {self.chat_template!r}."
            )
        if not isinstance(self.stop_rule, (bool, np.bool_)):
            raise ValueError(
                f"stop_rule must be True (the task's stop rule ends an episode) or False (only a stop token or the "
                f"token budget does), got {self.stop_rule!r}."
            )
        if self.system_prompt is not None and (not isinstance(self.system_prompt, str) or self.chat_template is False):
            raise ValueError(
                f"system_prompt={self.system_prompt!r} needs a str and a chat template (a plain prompt has no system "
                "turn); put the instruction in the task's prompt instead, or drop chat_template=False."
            )

    def uses_chat(self, codec: TextCodec) -> bool:
        """Whether prompts go through ``codec``'s chat template.

        ``chat_template`` says so; ``None`` means whether the tokenizer has one (the embedded default
        has none, an instruct model's tokenizer has one).
        """
        return codec.chat_template is not None if self.chat_template is None else bool(self.chat_template)

    def for_codec(self, codec: TextCodec) -> EnvConfig:
        """This config resolved for ``codec``: ``chat_template`` decided, ``max_prompt_tokens`` adjusted.

        With a chat template, ``max_prompt_tokens`` is raised by the template's framing (system turn,
        role markers), so that it keeps counting the prompt's own tokens. Fails on creation, not
        mid-run, when the prompt format cannot work with ``codec``.

        Raises:
            ValueError: A chat format with a tokenizer without a usable template, or a system prompt
                with plain prompts.
        """
        if not self.uses_chat(codec):
            if self.system_prompt is not None:
                raise ValueError(
                    f"system_prompt needs a chat template, and tokenizer {codec.name!r} has none; put the instruction "
                    "in the task's prompt instead."
                )
            return replace(self, chat_template=False)
        codec.check_chat_template(self.system_prompt)
        framing = len(replace(self, chat_template=True).encode_prompt(codec, ""))
        return replace(self, chat_template=True, max_prompt_tokens=self.max_prompt_tokens + framing)

    def prompt_text(self, codec: TextCodec, prompt: str) -> str:
        """The text an episode's prompt tokens stand for: ``prompt``, or the chat template's rendering of it.

        With a chat format (:meth:`uses_chat`) the prompt is the user turn (after the optional system
        turn), followed by the template's generation prompt: the policy's tokens are the assistant's
        reply, ended by EOS.
        """
        if not self.uses_chat(codec):
            return prompt
        head = [{"role": "system", "content": self.system_prompt}] if self.system_prompt is not None else []
        return codec.render_chat([*head, {"role": "user", "content": prompt}])

    def encode_prompt(self, codec: TextCodec, prompt: str) -> list[int]:
        """The token ids an episode of ``prompt`` starts with (SFT and the envs share this one encoding).

        Plain prompts are encoded with the tokenizer's special tokens (e.g. a BOS); a chat-rendered
        prompt already holds the template's, so it is encoded without adding more (as
        ``apply_chat_template(tokenize=True)`` does).
        """
        if not self.uses_chat(codec):
            return codec.encode(prompt, add_special_tokens=True)
        return codec.encode(self.prompt_text(codec, prompt), add_special_tokens=False)


def tracks_steps(task: Task, reward: Reward, stop_rule: bool = True) -> bool:
    """Whether an env must split its completions into steps (process rewards or a stop rule in force)."""
    return bool(reward.process) or (stop_rule and task.has_stop_rule)


def stop_rule_of(task: Task, stop_rule: bool = True) -> Callable[[str], bool] | None:
    """The task's stop rule when it has one and the env keeps it on (``stop_rule``), else ``None``."""
    return task.stops if stop_rule and task.has_stop_rule else None


class EpisodeBatch:
    """``n`` token-level episodes stepped together; see the module docstring.

    Args:
        n: Number of episodes (batch size).
        task: Source of problems and of the stop rule.
        reward: Outcome and process rewards.
        codec: The tokenizer.
        action_size: Width of the action space (the model's logits width).
        config: Token budgets, separator and truncation penalty.
        curriculum: Reverse-curriculum schedule told about every finished episode, or ``None``.
    """

    def __init__(
        self,
        n: int,
        task: Task,
        reward: Reward,
        codec: TextCodec,
        action_size: int,
        config: EnvConfig,
        curriculum: ReverseCurriculum | None = None,
    ) -> None:
        config = config.for_codec(codec)
        self.n, self.task, self.reward, self.codec, self.config = n, task, reward, codec, config
        self.curriculum = curriculum
        self.action_size = action_size
        self.width = config.max_prompt_tokens + config.max_new_tokens
        self.tokens = np.full((n, self.width), codec.pad_token_id, dtype=np.int64)
        self.mask = np.zeros((n, self.width), dtype=np.int8)
        self.length = np.zeros(n, dtype=np.int64)
        self.prompt_length = np.zeros(n, dtype=np.int64)
        self.generated = np.zeros(n, dtype=np.int64)
        self.running = np.zeros(n, dtype=bool)

        self.separator = config.step_separator.encode("utf-8")
        self.track_steps = tracks_steps(task, reward, config.stop_rule)
        self.stops = stop_rule_of(task, config.stop_rule)
        self.is_eos = np.zeros(action_size, dtype=bool)
        self.is_eos[sorted(i for i in codec.stop_token_ids if i < action_size)] = True  # every end-of-turn id
        last = self.separator[-1:]
        self.may_close = codec.lookup_table(action_size, lambda b: last in b)

        # Per-episode Python state, touched only at step boundaries and episode ends.
        self.problems: list[Problem | None] = [None] * n
        self.prefixes: list[str] = [""] * n
        self.histories: list[list[str]] = [[] for _ in range(n)]
        self.carries: list[bytes] = [b""] * n
        self.step_rewards: list[list[float]] = [[] for _ in range(n)]
        self.region_start = np.zeros(n, dtype=np.int64)  # buffer index of the first undecoded token
        self.region_offset = np.zeros(n, dtype=np.int64)  # generated-byte offset where `carry` starts
        self.text_end = np.full(n, -1, dtype=np.int64)  # generated-byte cut after a stop, -1 if none
        self.stages = np.zeros(n, dtype=np.int64)  # curriculum stage of each episode, 0 if none

        self.multi_turn = task.multi_turn
        if self.multi_turn:
            self._init_turns(n)

    # ------------------------------------------------------------------ start

    def start(self, i: int, problem: Problem, prefix: str = "", stage: int = 0) -> None:
        """Begin episode ``i`` on ``problem``, with ``prefix`` (a start state) after the prompt.

        ``stage`` is the curriculum stage that chose the prefix (``0``: none).
        """
        if not isinstance(prefix, str):
            raise TypeError(f"reset option 'prefix' must be a str, got {type(prefix).__name__}.")
        codec, cfg = self.codec, self.config
        ids = cfg.encode_prompt(codec, problem.prompt)
        if prefix:
            ids += codec.encode(prefix)
        if not ids:
            raise ValueError(f"problem {problem.id!r} has an empty prompt; the model needs at least one token.")
        if len(ids) > cfg.max_prompt_tokens:
            raise ValueError(
                f"prompt of problem {problem.id!r} is {len(ids)} tokens (start-state prefix included), more than "
                f"max_prompt_tokens={cfg.max_prompt_tokens}; raise max_prompt_tokens (gym.make(..., "
                f"max_prompt_tokens={len(ids)}))."
            )
        if max(ids) >= self.action_size:
            raise ValueError(
                f"the tokenizer produced id {max(ids)}, outside the action space of size {self.action_size}; "
                "pass vocab_size= equal to the model's logits width."
            )
        p = len(ids)
        self.tokens[i].fill(codec.pad_token_id)
        self.mask[i].fill(0)
        self.tokens[i, :p] = ids
        self.mask[i, :p] = 1
        self.length[i] = self.prompt_length[i] = p
        self.generated[i] = 0
        self.running[i] = True
        self.problems[i], self.prefixes[i] = problem, prefix
        self.step_rewards[i] = []
        self.region_start[i] = p
        self.text_end[i] = -1
        self.stages[i] = stage
        history: list[str] = []
        carry = b""
        if prefix and self.track_steps:
            progress = advance_steps(history, b"", prefix.encode("utf-8"), self.separator, False, self.stops)
            if progress.stop_end is not None:
                raise ValueError(
                    f"the start-state prefix of problem {problem.id!r} already contains a step that ends the "
                    "episode (the task's stop rule fired); give fewer gold steps."
                )
            carry = progress.carry
        self.histories[i], self.carries[i] = history, carry
        self.region_offset[i] = -len(carry)
        if self.multi_turn:
            self.source[i].fill(SOURCE_PROMPT)
            self.turn_start[i] = p
            self.turn_byte_start[i] = len(prefix.encode("utf-8")) if prefix else 0
            self.turn_tokens[i] = self.policy_tokens[i] = 0
            self.turns[i], self.turn_rewards[i] = [], []

    # ------------------------------------------------------------------ step

    def step(self, rows: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """Append ``actions[j]`` to episode ``rows[j]`` for every running row.

        Returns:
            ``(rewards, terminated, truncated, final_infos, turn_infos)`` aligned with ``rows``, where
            ``final_infos`` maps a position ``j`` whose episode ended to its end-of-episode info and
            ``turn_infos`` (multi-turn) one whose turn ended with an env reply to the reply's info.
        """
        cfg = self.config
        pos = self.length[rows]
        self.tokens[rows, pos] = actions
        self.mask[rows, pos] = 1
        self.length[rows] = pos + 1
        gen = self.generated[rows] + 1
        self.generated[rows] = gen
        eos = self.is_eos[actions]
        terminated = eos.copy()
        truncated = (gen >= cfg.max_new_tokens) & ~eos
        if self.multi_turn:
            turn_end, reasons = self._mark_turns(rows, actions, pos, eos, truncated)
        ended = terminated | truncated
        rewards = np.zeros(len(rows), dtype=np.float64)

        if self.track_steps:
            to_score: list[tuple[int, int, tuple[str, ...], str]] = []
            for j in np.flatnonzero(self.may_close[actions] | ended):
                i = int(rows[j])
                start, stop = int(self.region_start[i]), int(pos[j]) + 1
                new = self.codec.decode_bytes(self.tokens[i, start:stop].tolist())
                carry = self.carries[i]
                # EOS closes the open step; truncation does not (an unfinished step is not a step).
                progress = advance_steps(self.histories[i], carry, new, self.separator, bool(eos[j]), self.stops)
                self.region_start[i] = stop
                to_score.extend((j, i, h, s) for h, s in progress.closed)
                if progress.stop_end is not None:
                    self.text_end[i] = self.region_offset[i] + progress.stop_end
                    terminated[j], truncated[j], ended[j] = True, False, True
                else:
                    self.region_offset[i] += len(carry) + len(new) - len(progress.carry)
                self.carries[i] = progress.carry
            if to_score and self.reward.process:
                scores = self.reward.step_batch(
                    [self.problems[i] for _, i, _, _ in to_score],
                    [h for _, _, h, _ in to_score],
                    [s for _, _, _, s in to_score],
                )
                for (j, i, _, _), score in zip(to_score, scores, strict=True):
                    score = float(score)
                    if score != score or abs(score) == float("inf"):
                        raise ValueError(f"process reward {self.reward!r} returned non-finite {score}.")
                    rewards[j] += score
                    self.step_rewards[i].append(score)

        turn_infos: dict[int, dict[str, Any]] = {}
        if self.multi_turn:
            turn_infos = self._end_turns(rows, turn_end, terminated, truncated, rewards, reasons)
            ended = terminated | truncated

        infos: dict[int, dict[str, Any]] = {}
        done = np.flatnonzero(ended)
        if len(done):
            idx = [int(rows[j]) for j in done]
            completions = [self.completion(i) for i in idx]
            outcomes = self.reward.outcome_batch(
                [self.problems[i] for i in idx], [self.prefixes[i] + c for i, c in zip(idx, completions, strict=True)]
            )
            for j, i, text, out in zip(done, idx, completions, outcomes, strict=True):
                out = out if isinstance(out, Outcome) else as_outcome(out, self.reward)
                rewards[j] += out.reward
                if truncated[j]:
                    rewards[j] += cfg.truncation_penalty
                self.running[i] = False
                if self.curriculum is not None and self.stages[i] > 0:
                    self.curriculum.record(int(self.stages[i]), bool(out.record.get("correct", out.reward > 0)))
                infos[int(j)] = self.final_info(i, text, out)
                if self.multi_turn:
                    infos[int(j)].update(self.turn_summary(i, reasons.get(int(j), "")))
        return rewards, terminated, truncated, infos, turn_infos

    # ------------------------------------------------------------------ text

    def completion(self, i: int) -> str:
        """The generated text of episode ``i`` so far (cut after the stopping step, if any)."""
        data = self.codec.decode_bytes(self.tokens[i, self.prompt_length[i] : self.length[i]].tolist())
        if self.text_end[i] >= 0:
            data = data[: self.text_end[i]]
        return data.decode("utf-8", errors="replace")

    def final_info(self, i: int, completion: str, outcome: Outcome) -> dict[str, Any]:
        """End-of-episode info: the completion, the reward record and the step rewards."""
        info: dict[str, Any] = {
            "completion": completion,
            "outcome_reward": float(outcome.reward),
            "outcome": dict(outcome.record),
            "num_tokens": int(self.generated[i]),
        }
        if self.reward.process:
            info["step_rewards"] = list(self.step_rewards[i])
        if "correct" in outcome.record:
            info["is_success"] = bool(outcome.record["correct"])
        if self.curriculum is not None:
            info["curriculum"] = self.curriculum.info()
        return info

    def reset_info(self, i: int, split: str, index: int) -> dict[str, Any]:
        """Reset info of episode ``i``: prompt, start-state prefix and which problem it is."""
        problem = self.problems[i]
        assert problem is not None
        return {
            "prompt": problem.prompt,
            "prefix": self.prefixes[i],
            "problem_id": problem.id,
            "split": split,
            "index": int(index),
            "prompt_tokens": int(self.prompt_length[i]),
            **({"stage": int(self.stages[i])} if self.curriculum is not None else {}),
        }

    def observation(self, rows: int | slice | np.ndarray = slice(None)) -> dict[str, np.ndarray]:
        """Copies of the token buffer and mask for ``rows`` (and, multi-turn, each token's source)."""
        obs = {"input_ids": self.tokens[rows].copy(), "attention_mask": self.mask[rows].copy()}
        if self.multi_turn:
            obs["source"] = self.source[rows].copy()
        return obs

    # ------------------------------------------------------------------ turns

    def _init_turns(self, n: int) -> None:
        """Multi-turn state (only multi-turn envs pay for it; single-turn envs never touch it)."""
        self.source = np.zeros((n, self.width), dtype=np.int8)
        self.turn_stops = tuple(s.encode("utf-8") for s in self.task.turn_stops)
        if any(not s for s in self.turn_stops):
            raise ValueError(f"task {self.task.name!r} has an empty turn stop string; remove it from turn_stops.")
        lasts = {s[-1:] for s in self.turn_stops}
        self.may_end_turn = self.codec.lookup_table(self.action_size, lambda b: any(x in b for x in lasts))
        self.turn_start = np.zeros(n, dtype=np.int64)  # buffer index where the policy's current turn starts
        self.turn_byte_start = np.zeros(n, dtype=np.int64)  # its offset in the bytes after the prompt
        self.turn_tokens = np.zeros(n, dtype=np.int64)  # policy tokens in the current turn
        self.policy_tokens = np.zeros(n, dtype=np.int64)
        self.turns: list[list[str]] = [[] for _ in range(n)]
        self.turn_rewards: list[list[float]] = [[] for _ in range(n)]
        self.reply_suffix = chat_reply_framing(self.codec, self.config) if self.config.chat_template else None

    def _mark_turns(
        self, rows: np.ndarray, actions: np.ndarray, pos: np.ndarray, eos: np.ndarray, truncated: np.ndarray
    ) -> tuple[np.ndarray, dict[int, str]]:
        """Record the policy's token, find the turns a turn stop string ends, apply the turn budget.

        Returns ``(turn_end, reasons)``: whether the token ends a (non-final) turn, and the end
        reason of rows truncated here. Updates ``truncated`` in place.
        """
        cfg = self.config
        self.source[rows, pos] = SOURCE_POLICY
        self.policy_tokens[rows] += 1
        count = self.turn_tokens[rows] + 1
        self.turn_tokens[rows] = count
        turn_end = np.zeros(len(rows), dtype=bool)
        for j in np.flatnonzero(self.may_end_turn[actions] & ~eos):
            i = int(rows[j])
            data = self.codec.decode_bytes(self.tokens[i, self.turn_start[i] : pos[j] + 1].tolist())
            width = len(self.codec.token_bytes[int(actions[j])])
            turn_end[j] = any(s in data[-(width + len(s) - 1) :] for s in self.turn_stops)
        reasons = {int(j): "max_new_tokens" for j in np.flatnonzero(truncated)}
        if cfg.max_turn_tokens is not None:
            over = (count >= cfg.max_turn_tokens) & ~eos & ~turn_end & ~truncated
            for j in np.flatnonzero(over):
                reasons[int(j)] = "max_turn_tokens"
            truncated |= over
        return turn_end, reasons

    def _end_turns(
        self,
        rows: np.ndarray,
        turn_end: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        rewards: np.ndarray,
        reasons: dict[int, str],
    ) -> dict[int, dict[str, Any]]:
        """Ask the task to respond to every turn that ended; append its replies (updates the arrays in place)."""
        cfg, codec = self.config, self.codec
        infos: dict[int, dict[str, Any]] = {}
        for j in np.flatnonzero((turn_end | terminated) & ~truncated):
            i, j = int(rows[j]), int(j)
            final = bool(terminated[j])
            data = codec.decode_bytes(self.tokens[i, self.prompt_length[i] : self.length[i]].tolist())
            end = int(self.text_end[i]) if final and self.text_end[i] >= 0 else len(data)
            self.turns[i].append(data[self.turn_byte_start[i] : end].decode("utf-8", errors="replace"))
            problem = self.problems[i]
            assert problem is not None
            reply = self.task.respond(problem, tuple(self.turns[i]), final)
            score = 0.0 if reply is None else float(reply.reward)
            if score != score or abs(score) == float("inf"):
                raise ValueError(f"task {self.task.name!r} replied with a non-finite turn reward {reply.reward!r}.")
            if not self.reward.pays_turn_rewards:  # the reward replaces every other one (e.g. RandomReward)
                score = 0.0
            rewards[j] += score
            self.turn_rewards[i].append(score)
            if reply is not None and reply.done:
                terminated[j] = True
                reasons[j] = "task"
                continue
            if reply is None or not reply.text:
                if not final:  # a new turn starts right after the stop string, with nothing appended
                    self.turn_start[i], self.turn_byte_start[i], self.turn_tokens[i] = self.length[i], len(data), 0
                continue
            if cfg.max_turns is not None and len(self.turns[i]) >= cfg.max_turns:
                terminated[j], truncated[j] = False, True
                reasons[j] = "max_turns"
                continue
            text = reply.text
            if final and self.reply_suffix is not None and self.tokens[i, self.length[i] - 1] == codec.eos_token_id:
                text = self.reply_suffix(text)
            ids = codec.encode(text)
            if self.generated[i] + len(ids) >= cfg.max_new_tokens:
                terminated[j], truncated[j] = False, True
                reasons[j] = "reply_over_budget"
                continue
            if ids and max(ids) >= self.action_size:
                raise ValueError(
                    f"the tokenizer produced id {max(ids)} for a reply of task {self.task.name!r}, outside the action "
                    f"space of size {self.action_size}; pass vocab_size= equal to the model's logits width."
                )
            start, stop = int(self.length[i]), int(self.length[i]) + len(ids)
            self.tokens[i, start:stop] = ids
            self.mask[i, start:stop] = 1
            self.source[i, start:stop] = SOURCE_ENV
            self.length[i] = stop
            self.generated[i] += len(ids)
            terminated[j] = False
            injected = len(codec.decode_bytes(ids))
            self.turn_start[i], self.turn_byte_start[i], self.turn_tokens[i] = stop, len(data) + injected, 0
            self.text_end[i] = -1
            if self.track_steps:  # env text is no step of the policy's: the next turn starts a fresh one
                self.carries[i], self.region_start[i], self.region_offset[i] = b"", stop, len(data) + injected
            infos[j] = {
                "env_tokens": list(ids),
                "env_text": text,
                "turn": len(self.turns[i]),
                "turn_reward": score,
                "reply": dict(reply.info),
            }
        return infos

    def turn_summary(self, i: int, reason: str) -> dict[str, Any]:
        """End-of-episode multi-turn info: the turns, their rewards, the policy's token count, why it ended."""
        if not reason:
            last = int(self.tokens[i, self.length[i] - 1])
            reason = "eos" if last == self.codec.eos_token_id and self.source[i, self.length[i] - 1] else "stop"
        return {
            "turns": list(self.turns[i]),
            "turn_rewards": list(self.turn_rewards[i]),
            "num_turns": len(self.turns[i]),
            "policy_tokens": int(self.policy_tokens[i]),
            "end_reason": reason,
        }


#: Values of the multi-turn observation's ``source`` array: prompt (and padding), policy, env.
SOURCE_PROMPT, SOURCE_POLICY, SOURCE_ENV = 0, 1, 2

#: ``info["end_reason"]`` of a truncated multi-turn episode (``truncation_penalty`` is added to its reward):
#: the episode's token budget ran out, a turn's, the turn limit stopped a reply, or a reply did not fit.
TRUNCATION_REASONS = ("max_new_tokens", "max_turn_tokens", "max_turns", "reply_over_budget")


def chat_reply_framing(codec: TextCodec, config: EnvConfig) -> Any:
    """A function that renders an env reply as the chat template's next user turn (plus generation prompt).

    The policy's reply ends on EOS (the template's end-of-turn); what follows in a from-scratch
    rendering of the conversation is the framing this function adds around the env's text, so the
    buffer equals that rendering token for token (checked here once, on creation).

    Raises:
        ValueError: When the template does not end an assistant turn with the EOS token's text, or
            would render earlier turns differently once a later one is added.
    """
    head = [{"role": "system", "content": config.system_prompt}] if config.system_prompt is not None else []
    user, said, sent = {"role": "user", "content": "What is 1+1?"}, "It is 2.", "Try again."
    hf = codec.hf_tokenizer
    eos = hf.convert_ids_to_tokens(codec.eos_token_id) if hf is not None else ""
    eos = eos if isinstance(eos, str) else ""
    prefix = codec.render_chat([*head, user]) + said + eos
    full = codec.render_chat([*head, user, {"role": "assistant", "content": said}, {"role": "user", "content": sent}])
    if not eos or not full.startswith(prefix):
        raise ValueError(
            f"the chat template of tokenizer {codec.name!r} does not end an assistant turn with the EOS token "
            f"({eos!r}) or rewrites earlier turns once a later one is added ({full[-80:]!r}), so env replies cannot be "
            "appended token for token; use chat_template=False for this multi-turn env."
        )
    before, _, after = full[len(prefix) :].partition(sent)
    return lambda text: before + text + after
