"""TextEnv: for the same text, the same total reward as the token env."""

from __future__ import annotations

import numpy as np
import pytest

from lm_envs import TextEnv, TokenEnv


def token_total(env: TokenEnv, ids: list[int], index: int, prefix: str = "") -> tuple[float, dict, bool]:
    env.reset(options={"index": index, "prefix": prefix})
    total, info, trunc = 0.0, {}, False
    for t in ids:
        _, r, term, trunc, info = env.step(t)
        total += r
        if term or trunc:
            break
    return total, info, trunc


@pytest.mark.parametrize("max_new_tokens", [6, 64])
@pytest.mark.parametrize("prefix_steps", [0, 1])
def test_gold_completions_get_equal_rewards(step_task, step_reward, max_new_tokens, prefix_steps):
    kw = dict(max_new_tokens=max_new_tokens, truncation_penalty=-0.5)
    tok_env, txt_env = TokenEnv(step_task, step_reward, **kw), TextEnv(step_task, step_reward, **kw)
    for index in range(step_task.size("train")):
        problem = step_task.problem("train", index)
        prefix = problem.prefix(prefix_steps)
        text = "\n".join(problem.steps[prefix_steps:])
        ids = tok_env.codec.encode(text) + [tok_env.codec.eos_token_id]
        total, info, trunc = token_total(tok_env, ids, index, prefix)
        txt_env.reset(options={"index": index, "prefix": prefix})
        _, r, term, ttrunc, tinfo = txt_env.step(text)
        assert r == pytest.approx(total) and ttrunc == trunc and term == (not trunc)
        assert tinfo["completion"] == info["completion"] and tinfo["step_rewards"] == info["step_rewards"]
        assert tinfo["num_tokens"] == info["num_tokens"]


def test_random_completions_get_equal_rewards(step_task, step_reward):
    tok_env = TokenEnv(step_task, step_reward, max_new_tokens=512)
    txt_env = TextEnv(step_task, step_reward, max_new_tokens=512)
    codec = tok_env.codec
    # Random tokens biased towards the pieces of real steps, so steps, stops and claims all occur.
    pieces = sorted({t for p in step_task.problems("train") for t in codec.encode(p.solution() + "\n")})
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 40))
        ids = [
            int(rng.choice(pieces)) if rng.random() < 0.8 else int(rng.integers(4, codec.vocab_size)) for _ in range(n)
        ]
        ids.append(codec.eos_token_id)
        index = trial % step_task.size("train")
        total, info, _ = token_total(tok_env, ids, index)
        _, _, info_txt = None, None, None
        txt_env.reset(options={"index": index})
        _, r, _, _, info_txt = txt_env.step(info["completion"])
        assert r == pytest.approx(total), (codec.decode(ids), info, info_txt)
        assert info_txt["completion"] == info["completion"]


def test_text_env_checks_and_obs(step_task, step_reward):
    from gymnasium.utils.env_checker import check_env

    env = TextEnv(step_task, step_reward)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(options={"index": 0, "prefix": "3 * 4 = 12\n"})
    assert obs == info["prompt"] + "3 * 4 = 12\n"
    with pytest.raises(ValueError, match="completion text"):
        env.step(12)
    env.step("#### 14")
    with pytest.raises(RuntimeError, match="exactly one completion"):
        env.step("again")


def test_make_text_builds_the_twin_of_a_registered_env():
    import lm_envs

    env = lm_envs.make_text("LMEnv/TargetWord-v0")
    env.reset(options={"index": 0})
    _, r, term, _, info = env.step(" apple\n")
    assert r == 1.0 and term and info["is_success"]
    with pytest.raises(ValueError, match="not an lm_envs token env"):
        lm_envs.make_text("CartPole-v1")
