"""The stable-baselines3 bridge: train SB3 algorithms (PPO) on the token-level envs.

Three parts, wired together by :func:`train_sb3_ppo`:

* :class:`TokenFeaturesExtractor`: SB3 casts every ``Box`` observation to float before the
  network sees it, so the extractor casts the token buffer back to ``long`` ids (exact below
  2**24) and encodes it with a small causal transformer, or with a wrapped ``transformers`` causal
  LM, taking the hidden state at the last real token (read from the attention mask).
* :class:`SB3VecEnv`: SB3 does not accept a ``gymnasium.vector.VectorEnv``
  (DLR-RM/stable-baselines3#1608), so this adapter presents the native batched
  :class:`~lm_envs.TokenVectorEnv` as an SB3 ``VecEnv`` (SB3's autoreset semantics, list infos,
  ``terminal_observation``, ``TimeLimit.truncated``, Monitor-style ``episode`` stats).
* :func:`sb3_policy_kwargs`: the ``policy_kwargs`` for ``PPO("MultiInputPolicy", env, ...)``.

Warning:
    SB3's ``ortho_init=True`` (the ``ActorCriticPolicy`` default) re-initialises every
    ``nn.Linear`` of the features extractor, which would overwrite a pretrained backbone's weights
    (and orthogonalise the built-in transformer's). :func:`sb3_policy_kwargs` therefore always
    sets ``ortho_init=False``, and :func:`init_heads` initialises the heads only (SB3's orthogonal
    init, a zero critic). Keep ``ortho_init=False`` when you build your own ``policy_kwargs``.

Example:
    >>> model = train_sb3_ppo("LMEnv/TargetWord-v0", total_timesteps=0, num_envs=2, device="cpu")
    >>> type(model.env).__name__, model.policy.ortho_init
    ('SB3VecEnv', False)
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from stable_baselines3 import PPO
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn
from torch import nn

from lm_envs import TextCodec, TokenVectorEnv

#: PPO settings of :func:`make_sb3_ppo` that differ from SB3's: text episodes are short and their
#: return is the plain sum of rewards (``gamma=1``), so rollouts are shorter and updates more frequent.
PPO_DEFAULTS: dict[str, Any] = {"n_steps": 64, "batch_size": 64, "n_epochs": 4, "gamma": 1.0, "gae_lambda": 0.95}


# ---------------------------------------------------------------------------------- features extractor


class TokenFeaturesExtractor(BaseFeaturesExtractor):
    """Encodes the float-cast token buffer into features: causal encoder state at the last real token.

    SB3 preprocesses ``Box`` observations with ``.float()``; the extractor rounds ``input_ids`` back
    to ``long`` (float32 holds every integer below 2**24 exactly, far above real vocabularies) and
    reads the positions of real tokens from ``attention_mask``. The batch is cut to its longest
    sequence before encoding. With right padding (the envs' layout) and causal attention the last
    real token's state never sees padding.

    Two encoders:

    * ``backbone=None``: a small learned causal transformer (token and position embeddings,
      ``n_layers`` pre-LN blocks, a final LayerNorm) of width ``embed_dim``; ``n_layers=0`` leaves
      the last token's embedding plus its position.
    * ``backbone=<transformers causal LM>`` (e.g. ``agents.policy.models.build_default_model(codec)``):
      its base model's ``last_hidden_state`` (the input of its LM head). The backbone is trained
      with the policy (SB3 shares one extractor between actor and critic by default). Keep
      ``ortho_init=False`` or SB3 overwrites its ``nn.Linear`` weights.

    Args:
        observation_space: The env's ``Dict`` space with ``input_ids`` and ``attention_mask`` Boxes.
        features_dim: Output size; default the encoder width. Another value adds a Linear projection.
        vocab_size: Embedding rows of the built-in encoder; default the largest id the space allows + 1.
        backbone: A ``transformers`` causal LM (or its base model) to use instead of the built-in encoder.
        embed_dim: Width of the built-in encoder.
        n_layers: Transformer blocks of the built-in encoder.
        n_heads: Attention heads of the built-in encoder (must divide ``embed_dim``).
        disable_dropout: Set every dropout probability of the backbone to 0 (RL wants the log-probs
            of sampling and of the loss to be the same function; SB3 switches modules to train mode).
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        features_dim: int | None = None,
        *,
        vocab_size: int | None = None,
        backbone: nn.Module | None = None,
        embed_dim: int = 64,
        n_layers: int = 1,
        n_heads: int = 4,
        disable_dropout: bool = True,
    ) -> None:
        if not isinstance(observation_space, spaces.Dict) or not {"input_ids", "attention_mask"} <= set(
            observation_space.spaces
        ):
            raise ValueError(
                "TokenFeaturesExtractor needs a Dict observation space with 'input_ids' and 'attention_mask' "
                f"(an lm_envs token env), got {observation_space}."
            )
        id_space = observation_space["input_ids"]
        width, n_ids = int(id_space.shape[-1]), int(np.max(id_space.high)) + 1
        if backbone is None:
            vocab = n_ids if vocab_size is None else int(vocab_size)
            if vocab < n_ids:
                raise ValueError(f"vocab_size={vocab} is smaller than the observation space's ids (up to {n_ids - 1}).")
            if embed_dim % n_heads:
                raise ValueError(f"n_heads={n_heads} must divide embed_dim={embed_dim}.")
            hidden = int(embed_dim)
        else:
            rows = backbone.get_input_embeddings().num_embeddings
            if rows < n_ids:
                raise ValueError(
                    f"the backbone embeds {rows} token ids but the observation space holds ids up to {n_ids - 1}; "
                    "use the backbone that belongs to the env's tokenizer."
                )
            hidden = int(backbone.config.hidden_size)
        super().__init__(observation_space, int(features_dim or hidden))

        self.backbone = backbone
        if backbone is None:
            self.embed = nn.Embedding(vocab, hidden)
            self.pos = nn.Embedding(width, hidden)
            nn.init.normal_(self.embed.weight, std=0.02)
            nn.init.normal_(self.pos.weight, std=0.02)
            block = nn.TransformerEncoderLayer(
                hidden, n_heads, 4 * hidden, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
            )
            self.blocks = nn.TransformerEncoder(block, n_layers, enable_nested_tensor=False) if n_layers > 0 else None
            self.norm = nn.LayerNorm(hidden)
        else:
            if disable_dropout:
                for m in backbone.modules():
                    if isinstance(m, nn.Dropout):
                        m.p = 0.0
        self.hidden_size = hidden
        self.proj: nn.Module = nn.Identity() if self.features_dim == hidden else nn.Linear(hidden, self.features_dim)

    @staticmethod
    def ids_and_mask(observations: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(ids, mask, last)``: exact ``long`` ids, bool mask, index of each row's last real token.

        The batch is cut to its longest sequence (columns after every row's last real token go).
        """
        mask = observations["attention_mask"] > 0.5
        cols = torch.arange(mask.shape[1], device=mask.device)
        last = torch.where(mask, cols, torch.full_like(cols, -1)).amax(1).clamp(min=0)
        length = int(last.max()) + 1 if len(last) else 1
        ids = observations["input_ids"][:, :length].round().long()
        return ids, mask[:, :length], last

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, mask, last = self.ids_and_mask(observations)
        positions = (mask.long().cumsum(1) - 1).clamp(min=0)
        if self.backbone is None:
            h = self.embed(ids) + self.pos(positions)
            if self.blocks is not None:
                causal = nn.Transformer.generate_square_subsequent_mask(ids.shape[1], device=ids.device, dtype=h.dtype)
                h = self.blocks(h, mask=causal, is_causal=True)
            h = self.norm(h)
        else:
            # The base model stops before the LM head: no (batch, length, vocab) logits are computed.
            body = getattr(self.backbone, "base_model", self.backbone)
            out = body(input_ids=ids, attention_mask=mask.long(), position_ids=positions, use_cache=False)
            h = out.last_hidden_state
        return self.proj(h[torch.arange(len(ids), device=h.device), last])


def sb3_policy_kwargs(
    codec: TextCodec | int | None = None,
    backbone: nn.Module | None = None,
    features_dim: int | None = None,
    *,
    net_arch: dict[str, list[int]] | list[int] | None = None,
    **extractor_kwargs: Any,
) -> dict[str, Any]:
    """The ``policy_kwargs`` for ``stable_baselines3.PPO("MultiInputPolicy", env, policy_kwargs=...)``.

    Args:
        codec: The env's tokenizer (or its vocabulary size): sizes the built-in encoder's embedding;
            ``None`` takes the size from the observation space.
        backbone: A ``transformers`` causal LM to wrap (see :class:`TokenFeaturesExtractor`).
        features_dim: Features size; default the encoder width (with a backbone, its hidden size,
            which :func:`init_action_head_from_lm` needs).
        net_arch: SB3's ``net_arch``; default ``dict(pi=[], vf=[64])``: the action head sits
            directly on the encoder state, as an LM head does; the critic gets one hidden layer.
        **extractor_kwargs: More :class:`TokenFeaturesExtractor` arguments (``embed_dim``, ``n_layers``, ...).

    Returns:
        A dict with ``features_extractor_class``, ``features_extractor_kwargs``, ``net_arch`` and
        ``ortho_init=False`` (SB3's orthogonal init would overwrite a pretrained backbone's Linear
        layers; see :func:`init_heads`).
    """
    kwargs: dict[str, Any] = dict(extractor_kwargs)
    if features_dim is not None:
        kwargs["features_dim"] = int(features_dim)
    if backbone is not None:
        kwargs["backbone"] = backbone
    elif codec is not None:
        kwargs["vocab_size"] = codec if isinstance(codec, int) else codec.vocab_size
    return {
        "features_extractor_class": TokenFeaturesExtractor,
        "features_extractor_kwargs": kwargs,
        "net_arch": dict(pi=[], vf=[64]) if net_arch is None else net_arch,
        "ortho_init": False,
    }


def init_heads(policy: ActorCriticPolicy, action_head: bool = True) -> None:
    """Initialise everything but the features extractor (which ``ortho_init=False`` leaves alone).

    SB3's orthogonal init for the mlp extractor (gain ``sqrt(2)``) and the action head (gain
    ``0.01``: a near-uniform first policy), and a zero value head: ``V = 0`` at the start, so an
    untrained critic adds no spurious advantages (as :class:`agents.policy.models.Policy`), and until the
    first non-zero reward every advantage is exactly zero and the policy does not drift. (With a
    random critic, PPO on a one-token bandit reinforced arbitrary tokens before it ever saw a reward.)
    ``action_head=False`` leaves the action head alone (e.g. after :func:`init_action_head_from_lm`).
    """
    policy.mlp_extractor.apply(partial(policy.init_weights, gain=math.sqrt(2)))
    if action_head:
        policy.action_net.apply(partial(policy.init_weights, gain=0.01))
    nn.init.zeros_(policy.value_net.weight)
    nn.init.zeros_(policy.value_net.bias)


def init_action_head_from_lm(policy: ActorCriticPolicy, backbone: nn.Module) -> None:
    """Copy the backbone's LM head into SB3's action head: the policy starts as the LM's next-token distribution.

    Needs ``net_arch`` with ``pi=[]`` and no features projection (the defaults of
    :func:`sb3_policy_kwargs` with a backbone). The copy is untied from the backbone's embeddings.
    """
    extractor = policy.pi_features_extractor
    if not isinstance(extractor, TokenFeaturesExtractor) or extractor.backbone is not backbone:
        raise ValueError("the policy's features extractor does not wrap this backbone.")
    if not isinstance(extractor.proj, nn.Identity) or len(policy.mlp_extractor.policy_net) > 0:
        raise ValueError(
            "init_action_head_from_lm needs the action head directly on the LM state: net_arch=dict(pi=[], ...) "
            "and features_dim=None."
        )
    head = backbone.get_output_embeddings()
    n = policy.action_net.out_features
    if head is None or head.weight.shape[0] < n:
        raise ValueError(f"the backbone has no LM head with at least {n} rows.")
    with torch.no_grad():
        policy.action_net.weight.copy_(head.weight[:n])
        bias = getattr(head, "bias", None)
        policy.action_net.bias.copy_(bias[:n] if bias is not None else torch.zeros(n))


# ---------------------------------------------------------------------------------- VecEnv adapter


def unbatch_infos(infos: Mapping[str, Any], n: int) -> list[dict[str, Any]]:
    """Gymnasium's dict-of-arrays vector infos (with ``_key`` masks) as SB3's list of per-env dicts."""
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, value in infos.items():
        if key.startswith("_") and key[1:] in infos:
            continue  # a mask
        mask = infos.get(f"_{key}")
        rows = range(n) if mask is None else np.flatnonzero(mask)
        if isinstance(value, Mapping):
            nested = unbatch_infos(value, n)
            for i in rows:
                out[i][key] = nested[i]
        else:
            for i in rows:
                item = value[i]
                out[i][key] = item.item() if isinstance(item, np.generic) else item
    return out


class SB3VecEnv(VecEnv):
    """A :class:`~lm_envs.TokenVectorEnv` as a stable-baselines3 ``VecEnv``.

    SB3 semantics: ``reset()`` takes no arguments (seeds come from :meth:`seed`, options from
    :meth:`set_options`; reset infos go to ``reset_infos``), ``step`` returns
    ``(obs, rewards, dones, infos)`` with one info dict per env, and a finished env restarts in the
    same step: its info holds the end-of-episode info plus ``terminal_observation`` (the last
    observation of the episode) and every info holds ``TimeLimit.truncated`` (truncated and not
    terminated). The vector env must run in ``SameStep`` autoreset mode, which gives the terminal
    observation in the same step; :func:`make_sb3_vec_env` builds it so.

    On ``TimeLimit.truncated`` SB3's on-policy algorithms add ``gamma * V(terminal_observation)`` to
    the last reward, one critic call per truncated env. An lm_envs episode is truncated at its
    token budget, which is part of the task: the outcome reward is paid on the last token, nothing
    follows, and the buffer length tells the state that the budget is spent. So
    ``bootstrap_truncation=False`` reports budget ends with ``TimeLimit.truncated=False`` (a true
    end for the learner, no bootstrap); the default ``True`` keeps SB3's ``DummyVecEnv`` convention.

    With ``monitor=True`` the adapter does SB3 ``Monitor``'s job: a finished env's info holds
    ``episode = {"r": return, "l": length, "t": seconds since creation}`` (SB3 logs
    ``rollout/ep_rew_mean`` from it), and ``env_is_wrapped(Monitor)`` answers True so that
    ``evaluate_policy`` reads returns from it. With ``monitor=False``, wrap in ``VecMonitor`` instead.

    A ``TokenVectorEnv`` has no per-env objects: ``get_attr``/``set_attr``/``env_method`` act on the
    batched env, shared by every index (``get_attr("problem")`` is the exception: each env's current
    problem). A method result with one entry per env is split per env, any other result repeated.

    Args:
        venv: The batched env, in ``SameStep`` autoreset mode.
        monitor: Record Monitor-style episode statistics.
        bootstrap_truncation: Report truncations as ``TimeLimit.truncated`` (SB3 then bootstraps).
    """

    def __init__(self, venv: TokenVectorEnv, monitor: bool = True, bootstrap_truncation: bool = True) -> None:
        if not isinstance(getattr(venv, "unwrapped", None), TokenVectorEnv):
            raise TypeError(f"SB3VecEnv adapts an lm_envs.TokenVectorEnv, got {type(venv).__name__}.")
        mode = venv.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"SB3VecEnv needs the vector env in SameStep autoreset mode (terminal observations in the step "
                f"that ends an episode), got {mode}; build it with gym.make_vec(id, num_envs=n, "
                "autoreset_mode='SameStep') or make_sb3_vec_env(id, n)."
            )
        self.venv = venv
        self.monitor = monitor
        self.bootstrap_truncation = bootstrap_truncation
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None
        self._returns = np.zeros(self.num_envs, dtype=np.float64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._t_start = time.time()

    def reset(self) -> VecEnvObs:
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        obs, infos = self.venv.reset(seed=seeds, options=self._vector_options(self._options))
        self.reset_infos = unbatch_infos(infos, self.num_envs)
        self._actions = None
        self._reset_seeds()
        self._reset_options()
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return obs

    def _vector_options(self, options: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
        """SB3's per-env option dicts as the vector env's options (one value, or one per env)."""
        if all(not o for o in options):
            return None
        if all(o == options[0] for o in options):
            return dict(options[0])
        keys = sorted({k for o in options for k in o})
        shared = {"reset_mask", "group_size"} & set(keys)
        if shared:
            raise ValueError(f"reset options {sorted(shared)} apply to the whole batch; give every env the same value.")
        return {k: [o.get(k) for o in options] for k in keys}

    def step_async(self, actions: np.ndarray) -> None:
        a = np.asarray(actions).reshape(self.num_envs)
        if not np.issubdtype(a.dtype, np.integer):
            if not np.array_equal(a, np.round(a)):
                raise ValueError(f"actions are token ids (integers), got {a!r}.")
            a = a.astype(np.int64)
        self._actions = a

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("call step_async(actions) before step_wait().")
        obs, rewards, terminated, truncated, vinfos = self.venv.step(self._actions)
        self._actions = None
        n = self.num_envs
        dones = terminated | truncated
        self._returns += rewards
        self._lengths += 1
        infos: list[dict[str, Any]] = [{} for _ in range(n)]
        if vinfos:
            vinfos = dict(vinfos)
            final_obs = vinfos.pop("final_obs", None)
            vinfos.pop("_final_obs", None)
            final_infos = unbatch_infos(vinfos.pop("final_info", {}), n)
            vinfos.pop("_final_info", None)
            # Other keys: the reset info of envs that restarted, the step info of the others.
            others = unbatch_infos(vinfos, n)
            for i in range(n):
                if dones[i]:
                    if final_obs is None or final_obs[i] is None:
                        raise RuntimeError(f"env {i} ended without a final observation; is it in SameStep mode?")
                    infos[i] = final_infos[i]
                    infos[i]["terminal_observation"] = final_obs[i]
                    self.reset_infos[i] = others[i]
                else:
                    infos[i] = others[i]
        time_limit = truncated & ~terminated if self.bootstrap_truncation else np.zeros(n, dtype=bool)
        for i in range(n):
            infos[i]["TimeLimit.truncated"] = bool(time_limit[i])
        for i in np.flatnonzero(dones):
            if self.monitor:
                infos[i]["episode"] = {
                    "r": round(float(self._returns[i]), 6),
                    "l": int(self._lengths[i]),
                    "t": round(time.time() - self._t_start, 6),
                }
            self._returns[i] = 0.0
            self._lengths[i] = 0
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        idx = list(self._get_indices(indices))
        if attr_name == "problem":
            return [self.venv.unwrapped.episodes.problems[i] for i in idx]
        value = getattr(self.venv, attr_name)
        return [value for _ in idx]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if sorted(self._get_indices(indices)) != list(range(self.num_envs)):
            raise ValueError("a TokenVectorEnv's attributes are shared by all its envs; set them for every index.")
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any):
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        per_env = isinstance(result, (list, tuple, np.ndarray)) and len(result) == self.num_envs
        return [result[i] if per_env else result for i in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        wrapped = self.monitor and issubclass(Monitor, wrapper_class)
        return [wrapped for _ in self._get_indices(indices)]


def make_sb3_vec_env(
    env_id: str,
    num_envs: int = 8,
    seed: int | None = None,
    monitor: bool = True,
    bootstrap_truncation: bool = True,
    **env_kwargs: Any,
) -> SB3VecEnv:
    """``gym.make_vec(env_id, num_envs, autoreset_mode="SameStep", **env_kwargs)`` as an :class:`SB3VecEnv`.

    ``seed`` seeds the first ``reset()`` (env ``i`` gets ``seed + i``, as SB3's ``VecEnv.seed``).
    ``monitor`` and ``bootstrap_truncation`` are :class:`SB3VecEnv`'s.
    """
    venv = gym.make_vec(env_id, num_envs=num_envs, autoreset_mode=AutoresetMode.SAME_STEP, **env_kwargs)
    env = SB3VecEnv(venv, monitor=monitor, bootstrap_truncation=bootstrap_truncation)
    if seed is not None:
        env.seed(seed)
    return env


# ---------------------------------------------------------------------------------- PPO


def make_sb3_ppo(
    env_id: str,
    num_envs: int = 8,
    seed: int = 0,
    *,
    env_kwargs: Mapping[str, Any] | None = None,
    bootstrap_truncation: bool = False,
    backbone: nn.Module | None = None,
    features_dim: int | None = None,
    policy_kwargs: Mapping[str, Any] | None = None,
    device: str = "auto",
    verbose: int = 0,
    **ppo_kwargs: Any,
) -> PPO:
    """An SB3 ``PPO("MultiInputPolicy")`` on ``env_id`` with the token extractor and the adapter (untrained).

    Args:
        env_id: A registered token-level env id, e.g. ``"LMEnv/TargetWord-v0"``.
        num_envs: Envs stepped together (one batched ``TokenVectorEnv``).
        seed: Seeds SB3 (torch, numpy, the action space) and the envs.
        env_kwargs: Overrides of the env's registered arguments (``max_new_tokens``, ...).
        bootstrap_truncation: Off by default here: the token budget ends the episode for real (see
            :class:`SB3VecEnv`), and SB3's per-env bootstrap calls would dominate short episodes.
        backbone: A ``transformers`` causal LM to wrap; its LM head initialises the action head.
        features_dim: See :func:`sb3_policy_kwargs`.
        policy_kwargs: Merged over :func:`sb3_policy_kwargs` (e.g. ``features_extractor_kwargs``).
        device: Torch device (SB3's ``"auto"`` picks CUDA when present).
        verbose: SB3 verbosity (1 prints the rollout/train tables).
        **ppo_kwargs: Any ``stable_baselines3.PPO`` argument, over :data:`PPO_DEFAULTS`.

    Note:
        With sparse rewards consider ``normalize_advantage=False``: when every return of a rollout
        is equal (e.g. all zero before the first success) and so are the values (one prompt), SB3's
        normalisation turns float rounding into unit-scale advantages of one sign, which reinforce
        whatever was sampled.
    """
    env = make_sb3_vec_env(env_id, num_envs, bootstrap_truncation=bootstrap_truncation, **dict(env_kwargs or {}))
    kwargs = sb3_policy_kwargs(env.get_attr("codec")[0], backbone=backbone, features_dim=features_dim)
    for key, value in (policy_kwargs or {}).items():
        if key == "features_extractor_kwargs":
            value = {**kwargs[key], **value}
        kwargs[key] = value
    model = PPO(
        "MultiInputPolicy",
        env,
        policy_kwargs=kwargs,
        seed=seed,
        device=device,
        verbose=verbose,
        **{**PPO_DEFAULTS, **ppo_kwargs},
    )
    # ortho_init=False keeps SB3 off the extractor; initialise the heads (small action head, zero critic).
    policy = model.policy
    head_on_lm = (
        backbone is not None
        and isinstance(policy.features_extractor.proj, nn.Identity)
        and len(policy.mlp_extractor.policy_net) == 0
    )
    init_heads(policy, action_head=not head_on_lm)
    if head_on_lm:  # the policy starts as the LM's next-token distribution
        init_action_head_from_lm(policy, backbone)
    if ppo_kwargs.get("tensorboard_log") is None:
        # SB3's default logger makes a /tmp/SB3-<time> folder per learn() even when it writes nothing there.
        from stable_baselines3.common.logger import HumanOutputFormat, Logger

        model.set_logger(Logger(None, [HumanOutputFormat(sys.stdout)] if verbose else []))
    return model


def train_sb3_ppo(
    env_id: str,
    total_timesteps: int,
    num_envs: int = 8,
    seed: int = 0,
    *,
    callback: Any = None,
    progress_bar: bool = False,
    **kwargs: Any,
) -> PPO:
    """Train SB3 PPO on a token-level env and return the model.

    ``total_timesteps`` counts tokens (env steps) over all envs. Every other keyword goes to
    :func:`make_sb3_ppo` (``env_kwargs``, ``backbone``, ``learning_rate``, ``n_steps``, ...).

    Example:
        >>> model = train_sb3_ppo("LMEnv/TargetWord-v0", total_timesteps=64, num_envs=4, n_steps=16, device="cpu")
        >>> model.num_timesteps
        64
    """
    model = make_sb3_ppo(env_id, num_envs, seed, **kwargs)
    model.learn(total_timesteps, callback=callback, progress_bar=progress_bar)
    return model
