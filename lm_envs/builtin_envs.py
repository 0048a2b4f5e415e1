"""The built-in environment ids, all under the ``LMEnv/`` namespace.

Each id's "Version History" lives in the docstring of its task class; bump ``-vN`` whenever the
data, prompt, tokenizer, token budget or reward of an id changes, because scores are tied to it.
"""

from lm_envs.core.protocol import EvalProtocol
from lm_envs.core.registration import register

# LMEnv/TargetWord-v0 — see lm_envs.tasks.target_word.TargetWordTask (Version History there).
register(
    "LMEnv/TargetWord-v0",
    task="lm_envs.tasks.target_word:TargetWordTask",
    reward="lm_envs.tasks.target_word:PrefixMatchReward",
    max_prompt_tokens=32,
    max_new_tokens=8,
    reward_threshold=0.95,
    protocol=EvalProtocol(split="test", metric="mean_return"),
)
