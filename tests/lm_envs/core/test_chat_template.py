"""Prompts rendered through a tokenizer's chat template: exactly the template's tokens, checked on creation."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import lm_envs
from lm_envs.core.episodes import EnvConfig
from lm_envs.core.tokenizer import save_codec

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# wraps every assistant reply in markup the generation prompt does not end with
WRAPPING = CHATML.replace("m['content'] + '<|im_end|>'", "'[' + m['content'] + ']<|im_end|>'")


def tokenizer_dir(tmp_path, template: str | None):
    """The embedded default tokenizer saved as a Hugging Face directory, with ``template`` as its chat template."""
    path = tmp_path / "tok"
    save_codec(lm_envs.load_codec(), path)
    config = json.loads((path / "tokenizer_config.json").read_text())
    if template is not None:
        config["chat_template"] = template
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return str(path)


@pytest.mark.parametrize("env_id", ["LMEnv/Math-v0", "LMEnv/KnowledgeQA-v3"])
def test_observation_holds_exactly_the_tokens_the_template_produced(tmp_path, env_id):
    tok = tokenizer_dir(tmp_path, CHATML)
    env = gym.make(env_id, tokenizer=tok).unwrapped
    obs, info = env.reset(seed=3)
    hf = env.codec.hf_tokenizer
    messages = [{"role": "user", "content": info["prompt"]}]
    expected = hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    expected = list(expected["input_ids"])
    n = int(obs["attention_mask"].sum())
    assert obs["input_ids"][:n].tolist() == expected and info["prompt_tokens"] == len(expected)
    assert env.codec.decode(expected).endswith("assistant\n")
    framing = len(env.codec.encode(env.codec.render_chat([{"role": "user", "content": ""}])))
    assert env.episodes.config.max_prompt_tokens == gym.spec(env_id).kwargs["max_prompt_tokens"] + framing
    # the same env with chat_template=False sees the plain prompt
    plain = gym.make(env_id, tokenizer=tok, chat_template=False).unwrapped
    obs2, _ = plain.reset(seed=3)
    m = int(obs2["attention_mask"].sum())
    assert obs2["input_ids"][:m].tolist() == env.codec.encode(info["prompt"], add_special_tokens=True)


def test_system_prompt_is_a_system_turn(tmp_path):
    env = gym.make("LMEnv/Math-v0", tokenizer=tokenizer_dir(tmp_path, CHATML), system_prompt="Be brief.").unwrapped
    obs, info = env.reset(seed=0)
    text = env.codec.decode(obs["input_ids"][: int(obs["attention_mask"].sum())].tolist())
    assert text.startswith("system\nBe brief.\nuser\n" + info["prompt"])  # special tokens decode to nothing


def test_default_tokenizer_keeps_plain_prompts():
    env = gym.make("LMEnv/Math-v0").unwrapped
    obs, info = env.reset(seed=0)
    n = int(obs["attention_mask"].sum())
    assert env.codec.chat_template is None
    assert obs["input_ids"][:n].tolist() == env.codec.encode(info["prompt"], add_special_tokens=True)


@pytest.mark.parametrize(
    "template, kwargs, message",
    [
        (None, {"chat_template": True}, "has no chat template; use chat_template=False"),
        (WRAPPING, {}, "rewrites earlier turns or wraps replies"),
        (None, {"system_prompt": "Be brief."}, "system_prompt needs a chat template"),
        (CHATML, {"chat_template": False, "system_prompt": "x"}, "drop chat_template=False"),
        (CHATML, {"chat_template": "yes"}, "chat_template must be True, False or None"),
    ],
)
def test_unusable_chat_settings_fail_on_creation_naming_the_fix(tmp_path, template, kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make("LMEnv/Math-v0", tokenizer=tokenizer_dir(tmp_path, template), **kwargs)
    with pytest.raises(ValueError, match=message):
        lm_envs.TextEnv(
            "lm_envs.tasks.math:word_problems", "lm_envs.tasks.math.rewards:MathReward",
            tokenizer=tokenizer_dir(tmp_path, template), **kwargs,
        )  # fmt: skip


def test_text_env_observes_the_rendered_prompt_and_pays_the_token_env_reward(tmp_path):
    tok = tokenizer_dir(tmp_path, CHATML)
    kwargs = dict(gym.spec("LMEnv/Math-v0").kwargs)
    env = lm_envs.TextEnv(kwargs.pop("task"), kwargs.pop("reward"), tokenizer=tok, **kwargs)
    obs, info = env.reset(seed=1, options={"index": 4})
    assert obs == env.codec.render_chat([{"role": "user", "content": info["prompt"]}])
    answer = f"#### {env.task.problem('train', 4).answer}"
    _, reward, *_ = env.step(answer)
    assert reward > 0
    token_env = gym.make("LMEnv/Math-v0", tokenizer=tok).unwrapped
    token_env.reset(seed=1, options={"index": 4})
    total = 0.0
    for t in [*token_env.codec.encode(answer), token_env.codec.eos_token_id]:
        _, r, terminated, truncated, _ = token_env.step(t)
        total += r
        if terminated or truncated:
            break
    assert np.isclose(total, reward)


def test_sft_demonstrations_use_the_env_prompt_encoding(tmp_path):
    from agents.learners.sft import encode_demo

    env = gym.make("LMEnv/Math-v0", tokenizer=tokenizer_dir(tmp_path, CHATML)).unwrapped
    obs, info = env.reset(seed=0, options={"index": 0})
    prompt, target = encode_demo(env.codec, env.problem, env.episodes.config)
    assert prompt == obs["input_ids"][: int(obs["attention_mask"].sum())].tolist()
    assert target[-1] == env.codec.eos_token_id
    assert prompt != encode_demo(env.codec, env.problem, EnvConfig(chat_template=False))[0]
