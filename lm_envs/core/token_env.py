"""``TokenEnv``: a Gymnasium environment in which a language model acts one token at a time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from lm_envs.core.components import RewardSpec, TaskSpec, resolve_action_size, resolve_reward, resolve_task
from lm_envs.core.curriculum import ReverseCurriculum, make_curriculum
from lm_envs.core.episodes import EnvConfig, EpisodeBatch
from lm_envs.core.problem import Problem
from lm_envs.core.task import Task
from lm_envs.core.tokenizer import TextCodec, load_codec

RESET_OPTIONS = ("split", "index", "problem", "prefix")


def build_episodes(
    n: int,
    task: TaskSpec,
    reward: RewardSpec,
    task_kwargs: Mapping[str, Any] | None,
    reward_kwargs: Mapping[str, Any] | None,
    tokenizer: str | TextCodec | None,
    vocab_size: int | None,
    config: EnvConfig,
    split: str,
    curriculum: ReverseCurriculum | str | dict[str, Any] | None = None,
) -> EpisodeBatch:
    """Resolve the components of an environment and build its :class:`EpisodeBatch`."""
    task_obj = resolve_task(task, task_kwargs)
    task_obj.check_split(split)
    reward_obj = resolve_reward(reward, reward_kwargs)
    codec = load_codec(tokenizer)
    schedule = make_curriculum(curriculum, config.step_separator)
    return EpisodeBatch(n, task_obj, reward_obj, codec, resolve_action_size(codec, vocab_size), config, schedule)


def observation_space(batch: EpisodeBatch) -> spaces.Dict:
    """Fixed-shape token buffer plus attention mask (int Boxes: batches to arrays, passes SB3's checker).

    Multi-turn envs add ``source``: 0 prompt (and padding), 1 the policy's token, 2 the env's.
    """
    shape = (batch.width,)
    boxes = {
        "input_ids": spaces.Box(0, batch.action_size - 1, shape=shape, dtype=np.int64),
        "attention_mask": spaces.Box(0, 1, shape=shape, dtype=np.int8),
    }
    if batch.multi_turn:
        boxes["source"] = spaces.Box(0, 2, shape=shape, dtype=np.int8)
    return spaces.Dict(boxes)


def choose_problem(
    task: Task,
    options: Mapping[str, Any] | None,
    default_split: str,
    rng: np.random.Generator,
    curriculum: ReverseCurriculum | None = None,
) -> tuple[Problem, str, int, str, int]:
    """Apply reset ``options`` (``split``, ``index``, ``problem``, ``prefix``) or sample a problem.

    Without a ``prefix`` option, a curriculum (if any) chooses the start state.

    Returns:
        ``(problem, split, index, prefix, stage)``; ``index`` is ``-1`` for a problem passed
        directly; ``stage`` is the curriculum stage, ``0`` when no curriculum chose the prefix.
    """
    options = dict(options or {})
    unknown = set(options) - set(RESET_OPTIONS)
    if unknown:
        raise ValueError(f"unknown reset option(s) {sorted(unknown)}; valid options are {list(RESET_OPTIONS)}.")
    prefix = options.get("prefix", "")
    if not isinstance(prefix, str):
        raise ValueError(f"reset option 'prefix' must be a str (text placed after the prompt), got {prefix!r}.")
    if "problem" in options:
        problem = options["problem"]
        if not isinstance(problem, Problem):
            raise ValueError(f"reset option 'problem' must be a lm_envs.Problem, got {type(problem).__name__}.")
        split, index = str(options.get("split", default_split)), -1
    else:
        problem, split, index = _indexed_problem(task, options, default_split, rng)
    stage = 0
    if curriculum is not None and "prefix" not in options:
        prefix, stage = curriculum.start(problem, rng)
    return problem, split, index, prefix, stage


def _indexed_problem(
    task: Task, options: Mapping[str, Any], default_split: str, rng: np.random.Generator
) -> tuple[Problem, str, int]:
    split = options.get("split", default_split)
    if not isinstance(split, str):
        raise ValueError(f"reset option 'split' must be a str, got {split!r}.")
    task.check_split(split)
    if "index" in options:
        index = options["index"]
        if isinstance(index, np.integer):
            index = int(index)
        task.check_index(split, index)
    else:
        index = int(rng.integers(task.size(split)))
    return task.problem(split, index), split, index


def check_action(action: Any, action_size: int) -> int:
    """Validate one action (a token id) and return it as an int."""
    try:
        value = int(action)
    except (TypeError, ValueError):
        raise ValueError(f"an action is one token id (an int), got {action!r}.") from None
    if value != action or not 0 <= value < action_size:
        raise ValueError(f"token id {action!r} is outside the action space Discrete({action_size}).")
    return value


class TokenEnv(gym.Env):
    """A text task as a Gymnasium environment whose action is one token id.

    The observation is a fixed-shape buffer holding the prompt (and any start-state prefix) followed
    by the tokens generated so far, with an attention mask; unused positions hold the pad id. An
    episode ends with ``terminated`` on the EOS token or when the task's stop rule fires on a closed
    step, and with ``truncated`` after ``max_new_tokens`` generated tokens. Process rewards (if the
    reward has them) are paid on the token that closes a step (the step separator, newline by
    default, appears in it); the outcome reward is paid on the final token; their sum is the return.

    Args:
        task: A :class:`~lm_envs.Task`, a ``Task`` subclass, or an import string of either or of a factory.
        reward: A :class:`~lm_envs.Reward`, a plain function ``(problem, completion) -> float``, a
            ``Reward`` subclass or an import string.
        task_kwargs: Keyword arguments for building the task from a class or factory.
        reward_kwargs: Keyword arguments for building the reward from a class or factory.
        tokenizer: ``None`` for the embedded default, a ``tokenizer.json`` path, or any Hugging Face
            tokenizer name or directory.
        vocab_size: The action space width (the model's logits width); default the tokenizer's size.
        max_prompt_tokens: Room for the prompt plus start-state prefix; longer prompts raise. A chat
            template's framing (system turn, role markers) is added on top.
        max_new_tokens: Token budget of an episode; reaching it truncates.
        step_separator: Text that closes a reasoning step.
        truncation_penalty: Added to the reward of the final token of a truncated episode.
        chat_template: Render each prompt as a user turn through the tokenizer's chat template,
            ending with its generation prompt (the policy writes the assistant's reply, ended by
            EOS); the observation holds exactly the tokens the template produced. ``None`` (the
            default): when the tokenizer has a template (an instruct model's does, the embedded
            default's does not). The template's replies must extend its generation prompt (checked
            on creation).
        system_prompt: A system turn before the user turn (chat prompts only; ``None``: the
            template's own default, if any).
        max_turn_tokens: Multi-turn tasks: the policy's token budget of one turn; reaching it
            without ending the turn truncates the episode (``None``: only ``max_new_tokens``).
        max_turns: Multi-turn tasks: the most turns of the policy; a reply that would start one
            more truncates the episode instead (``None``: no limit).
        stop_rule: Whether the task's stop rule (:meth:`Task.stops`, e.g. the math tasks' closed
            ``#### X`` line) ends the episode. ``False``: only a stop token (EOS, end of turn) or the
            token budget does, so the policy must end its turn itself, as in TRL's GRPOTrainer;
            graders that read the last answer then read what it wrote after its first one.
        split: Default split that ``reset`` samples from.
        curriculum: Reverse-curriculum start states: ``None``, ``"mixed"``, ``"staged"``, a dict of
            :class:`~lm_envs.ReverseCurriculum` arguments or an instance.
        render_mode: ``None`` or ``"ansi"`` (``render()`` returns prompt and completion text).

    Reset options:
        ``split`` (str), ``index`` (int, a problem of that split), ``problem`` (a :class:`Problem`),
        ``prefix`` (str placed after the prompt: a start state, e.g. the first gold steps).

    ``info`` at reset holds ``prompt``, ``prefix``, ``problem_id``, ``split``, ``index``,
    ``prompt_tokens`` and, with a curriculum, ``stage``. At the end of an episode it holds
    ``completion`` (generated text), ``outcome`` (the reward's record), ``outcome_reward``,
    ``num_tokens``, ``step_rewards`` (with process rewards), ``is_success`` (when the record says
    ``correct``) and, with a curriculum, ``curriculum`` (current stage, per-stage success rates).

    Multi-turn tasks (:attr:`Task.multi_turn`, see :meth:`Task.respond`): when the policy's turn
    ends (a turn stop string of the task, EOS or the stop rule), the task may reply; the reply's
    tokens are appended to the buffer in the same ``step`` (``source`` 2 in the observation, 1 for
    the policy's tokens) and the step's ``info`` holds ``env_tokens``, ``env_text``, ``turn``,
    ``turn_reward`` and ``reply``. The turn reward is paid on the token that ended the turn. Env
    tokens are never actions. ``max_new_tokens`` counts every token after the prompt. The final
    info adds ``turns`` (the policy's turn texts), ``turn_rewards``, ``num_turns``,
    ``policy_tokens`` and ``end_reason``: ``"eos"``, ``"stop"`` (stop rule), ``"task"`` (a reply
    said done), or one of the truncations (the truncation penalty is added): ``"max_new_tokens"``,
    ``"max_turn_tokens"`` (a turn that never ends, e.g. a tool call never closed),
    ``"max_turns"`` and ``"reply_over_budget"`` (a reply that leaves no room for the policy).
    ``completion`` is the text after the prompt, env replies included.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

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
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}."
            )
        config = EnvConfig(
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
        self.episodes = build_episodes(
            1, task, reward, task_kwargs, reward_kwargs, tokenizer, vocab_size, config, split, curriculum
        )
        self.task, self.reward, self.codec = self.episodes.task, self.episodes.reward, self.episodes.codec
        self.split = split
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(self.episodes.action_size)
        self.observation_space = observation_space(self.episodes)
        self._rows = np.zeros(1, dtype=np.int64)
        self._started = False
        self._info: dict[str, Any] = {}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        problem, split, index, prefix, stage = choose_problem(
            self.task, options, self.split, self.np_random, self.episodes.curriculum
        )
        self.episodes.start(0, problem, prefix, stage)
        self._started = True
        self._info = self.episodes.reset_info(0, split, index)
        return self.episodes.observation(0), dict(self._info)

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("call reset() before step(): no episode is running.")
        if not self.episodes.running[0]:
            raise RuntimeError("this episode has ended (terminated or truncated); call reset() to start another.")
        token = check_action(action, self.episodes.action_size)
        rewards, terminated, truncated, infos, turn_infos = self.episodes.step(
            self._rows, np.array([token], dtype=np.int64)
        )
        info = infos.get(0, turn_infos.get(0, {}))
        return self.episodes.observation(0), float(rewards[0]), bool(terminated[0]), bool(truncated[0]), info

    def render(self) -> str | None:
        if self.render_mode != "ansi" or not self._started:
            return None
        prompt = self.episodes.config.prompt_text(self.codec, self._info.get("prompt", ""))
        return prompt + self._info.get("prefix", "") + self.episodes.completion(0)

    @property
    def problem(self) -> Problem | None:
        """The problem of the current episode."""
        return self.episodes.problems[0]
