"""``TokenVectorEnv``: a native batched token-level environment (numpy over the batch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from lm_envs.core.components import RewardSpec, TaskSpec
from lm_envs.core.curriculum import ReverseCurriculum
from lm_envs.core.episodes import EnvConfig
from lm_envs.core.token_env import RESET_OPTIONS, build_episodes, choose_problem, observation_space
from lm_envs.core.tokenizer import TextCodec


class TokenVectorEnv(VectorEnv):
    """``num_envs`` token-level episodes stepped together, one token per env per step.

    Semantics per env are those of :class:`~lm_envs.TokenEnv` (same arguments). Sub-env ``i`` of
    ``reset(seed=s)`` draws the same problems as ``TokenEnv.reset(seed=s + i)``, so a vector env
    and single envs agree on the same seeds. Reward calls are batched: every env that closes a step
    or ends in one vector step is scored in one ``Reward.step_batch`` / ``Reward.outcome_batch`` call.

    Autoreset modes (``autoreset_mode=``, or ``gymnasium.vector.AutoresetMode``):

    * ``NEXT_STEP`` (default, as Gymnasium): the step after an env ends, its action is ignored and
      it starts a new episode (reward 0, not done; ``info`` holds the reset info).
    * ``SAME_STEP``: the env restarts within the step that ended it; the final observation and info
      are in ``info["final_obs"]`` and ``info["final_info"]``.
    * ``DISABLED``: envs never restart by themselves, so an agent collects **exactly one episode per
      env**: a finished env ignores its actions, pays reward 0 and keeps reporting its final
      ``terminated``/``truncated`` flags, so ``(terminated | truncated).all()`` says the batch is
      done. Restart some or all envs with ``reset(options={"reset_mask": mask})``. (Gymnasium's
      ``SyncVectorEnv`` asserts instead of ignoring; ignoring lets a batched model step everyone.)

    Reset options apply to every env reset, or per env as a sequence of length ``num_envs``:
    ``split``, ``index``, ``problem``, ``prefix``; plus ``reset_mask`` (bool array) and
    ``group_size`` (``K``: envs ``jK .. jK+K-1`` share env ``jK``'s problem and start state, for
    group baselines such as RLOO and GRPO).
    """

    def __init__(
        self,
        num_envs: int,
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
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
    ) -> None:
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}.")
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ValueError(
                f"autoreset_mode {autoreset_mode!r} is not one of {[m.value for m in AutoresetMode]}."
            ) from None
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
            num_envs, task, reward, task_kwargs, reward_kwargs, tokenizer, vocab_size, config, split, curriculum
        )
        self.task, self.reward, self.codec = self.episodes.task, self.episodes.reward, self.episodes.codec
        self.num_envs = num_envs
        self.split = split
        self.autoreset_mode = mode
        self.metadata = {"autoreset_mode": mode, "render_modes": []}
        self.render_mode = render_mode
        self.single_action_space = spaces.Discrete(self.episodes.action_size)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.single_observation_space = observation_space(self.episodes)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self._rngs = [seeding.np_random(None)[0] for _ in range(num_envs)]
        self._needs_reset = np.zeros(num_envs, dtype=bool)  # NEXT_STEP: restart on the next step
        self._terminated = np.zeros(num_envs, dtype=bool)
        self._truncated = np.zeros(num_envs, dtype=bool)
        self._started = False
        self._starts: list[tuple[str, int]] = [(split, -1)] * num_envs  # (split, index) of each episode

    # ------------------------------------------------------------------ reset

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            mask = np.ones(self.num_envs, dtype=bool)
        else:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise ValueError(f"reset option 'reset_mask' must be a bool array of shape ({self.num_envs},).")
        seeds = self._seeds(seed)
        for i, s in enumerate(seeds):
            if s is not None and mask[i]:
                self._rngs[i] = seeding.np_random(s)[0]
        if seed is not None and not isinstance(seed, Sequence):
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        group = options.pop("group_size", 1)
        if not isinstance(group, (int, np.integer)) or group < 1 or self.num_envs % group:
            raise ValueError(
                f"reset option 'group_size' must be a positive int dividing num_envs={self.num_envs}, got {group!r}."
            )
        infos: dict[str, Any] = {}
        for i in np.flatnonzero(mask):
            i = int(i)
            leader = i - i % group
            if leader != i and mask[leader]:  # same problem and start state as the group's first env
                info = self._copy_start(leader, i)
            else:
                info = self._start(i, self._env_options(options, i))
            infos = self._add_info(infos, info, i)
        self._needs_reset[mask] = False
        self._terminated[mask] = False
        self._truncated[mask] = False
        self._started = True
        return self.episodes.observation(), infos

    def _seeds(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)):
            return [int(seed) + i for i in range(self.num_envs)]
        if len(seed) != self.num_envs:
            raise ValueError(f"reset(seed=...) got {len(seed)} seeds for {self.num_envs} envs.")
        return list(seed)

    def _env_options(self, options: Mapping[str, Any], i: int) -> dict[str, Any]:
        """Options for env ``i``: per-env sequences are indexed, scalars apply to every env."""
        unknown = set(options) - set(RESET_OPTIONS)
        if unknown:
            raise ValueError(
                f"unknown reset option(s) {sorted(unknown)}; valid options are "
                f"{[*RESET_OPTIONS, 'reset_mask', 'group_size']}."
            )
        out = {}
        for key, value in options.items():
            per_env = (
                isinstance(value, (list, tuple, np.ndarray))
                and key != "problem"
                or (key == "problem" and isinstance(value, (list, tuple)))
            )
            if per_env:
                if len(value) != self.num_envs:
                    raise ValueError(
                        f"reset option {key!r} has {len(value)} entries for {self.num_envs} envs; give one value "
                        "for all envs or one per env."
                    )
                value = value[i]
                if value is None:
                    continue
            out[key] = value
        return out

    def _copy_start(self, leader: int, i: int) -> dict[str, Any]:
        episodes = self.episodes
        problem = episodes.problems[leader]
        assert problem is not None
        episodes.start(i, problem, episodes.prefixes[leader], int(episodes.stages[leader]))
        self._starts[i] = self._starts[leader]
        return episodes.reset_info(i, *self._starts[i])

    def _start(self, i: int, options: Mapping[str, Any]) -> dict[str, Any]:
        problem, split, index, prefix, stage = choose_problem(
            self.task, options, self.split, self._rngs[i], self.episodes.curriculum
        )
        self.episodes.start(i, problem, prefix, stage)
        self._starts[i] = (split, index)
        return self.episodes.reset_info(i, split, index)

    # ------------------------------------------------------------------ step

    def step(
        self, actions: Any, active: np.ndarray | None = None
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every env with its token; ``active`` (a bool array, optional) steps only those envs.

        An env left out by ``active`` ignores its action this step (reward 0, its flags unchanged),
        as a finished env does without autoreset: a batched model can hold some envs back, e.g.
        while it catches up on tokens a multi-turn env appended.
        """
        if not self._started:
            raise RuntimeError("call reset() before step(): no episode is running.")
        n, episodes = self.num_envs, self.episodes
        actions = np.asarray(actions)
        if actions.shape != (n,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(
                f"actions must be an int array of shape ({n},), one token id per env; got shape "
                f"{actions.shape} and dtype {actions.dtype}."
            )
        mode = self.autoreset_mode
        restart = self._needs_reset if mode == AutoresetMode.NEXT_STEP else np.zeros(n, dtype=bool)
        rows = np.flatnonzero(episodes.running & ~restart)
        if active is not None:
            active = np.asarray(active)
            if active.shape != (n,) or active.dtype != np.bool_:
                raise ValueError(f"step(active=...) must be a bool array of shape ({n},), got {active!r}.")
            rows = rows[active[rows]]
        a = actions[rows].astype(np.int64, copy=False)
        if len(a) and (a.min() < 0 or a.max() >= episodes.action_size):
            bad = int(rows[np.flatnonzero((a < 0) | (a >= episodes.action_size))[0]])
            raise ValueError(
                f"env {bad}: token id {actions[bad]} is outside the action space Discrete({episodes.action_size})."
            )

        rewards = np.zeros(n, dtype=np.float64)
        if mode != AutoresetMode.DISABLED:
            self._terminated[:] = False
            self._truncated[:] = False
        infos: dict[str, Any] = {}
        for i in np.flatnonzero(restart):
            infos = self._add_info(infos, self._start(int(i), {}), int(i))
        self._needs_reset[restart] = False

        r, term, trunc, final_infos, turn_infos = episodes.step(rows, a)
        for j, info in turn_infos.items():
            infos = self._add_info(infos, info, int(rows[j]))
        rewards[rows] = r
        self._terminated[rows] = term
        self._truncated[rows] = trunc
        ended = rows[term | trunc]

        if mode == AutoresetMode.SAME_STEP and len(ended):
            for j, info in final_infos.items():
                i = int(rows[j])
                infos = self._add_info(infos, {"final_obs": episodes.observation(i), "final_info": info}, i)
                infos = self._add_info(infos, self._start(i, {}), i)
        else:
            for j, info in final_infos.items():
                infos = self._add_info(infos, info, int(rows[j]))
            if mode == AutoresetMode.NEXT_STEP:
                self._needs_reset[ended] = True
        return (
            episodes.observation(),
            rewards,
            self._terminated.copy(),
            self._truncated.copy(),
            infos,
        )

    def _add_info(self, vector_infos: dict[str, Any], env_info: dict[str, Any], env_num: int) -> dict[str, Any]:
        """Gymnasium's info batching, made safe for values whose type differs between envs.

        A reward's record may hold ``None`` for one env and an int for another (``first_error``);
        Gymnasium's version types the array after the first env and then fails, so an array is
        widened to ``object`` dtype when a value of another type arrives.
        """
        for key, value in env_info.items():
            if key != "final_obs" and not isinstance(value, dict) and key in vector_infos:
                array = vector_infos[key]
                if array.dtype != object and (value is None or np.asarray(value).dtype != array.dtype):
                    vector_infos[key] = array.astype(object)
        return super()._add_info(vector_infos, env_info, env_num)

    def completions(self) -> list[str]:
        """The generated text of every env's current (or just finished) episode."""
        return [self.episodes.completion(i) for i in range(self.num_envs)]
