"""lm-envs: Gymnasium environments in which a language model acts one token at a time.

>>> import gymnasium as gym, lm_envs
>>> env = gym.make("LMEnv/TargetWord-v0")
>>> obs, info = env.reset(seed=0)
>>> sorted(obs)
['attention_mask', 'input_ids']

Importing ``lm_envs`` registers the built-in ids (``lm_envs.registered_ids()``); it imports neither
torch nor transformers.
"""

from lm_envs import builtin_envs as _builtin_envs  # noqa: F401  (registers LMEnv/* ids)
from lm_envs.core.curriculum import ReverseCurriculum
from lm_envs.core.plugins import load_plugins
from lm_envs.core.problem import Problem
from lm_envs.core.protocol import EvalProtocol, get_protocol
from lm_envs.core.registration import make_text, register, registered_ids
from lm_envs.core.reward import FunctionReward, Outcome, Reward
from lm_envs.core.task import ListTask, Task
from lm_envs.core.text_env import TextEnv
from lm_envs.core.token_env import TokenEnv
from lm_envs.core.tokenizer import TextCodec, load_codec
from lm_envs.core.vector_env import TokenVectorEnv

__version__ = "0.1.0"

__all__ = [
    "EvalProtocol",
    "FunctionReward",
    "ListTask",
    "Outcome",
    "Problem",
    "ReverseCurriculum",
    "Reward",
    "Task",
    "TextCodec",
    "TextEnv",
    "TokenEnv",
    "TokenVectorEnv",
    "get_protocol",
    "load_codec",
    "load_plugins",
    "make_text",
    "register",
    "registered_ids",
]
