"""Multi-turn episodes: env tokens appended token for token, sources, turn rewards, budgets and end reasons."""

from __future__ import annotations

import json
import pickle

import gymnasium as gym
import numpy as np
import pytest

import lm_envs
from lm_envs import ListTask, Problem, TokenEnv, TokenVectorEnv
from lm_envs.core.task import Reply
from lm_envs.core.tokenizer import save_codec

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class Asker(ListTask):
    """A ``?`` ends a turn; the env answers ``" yes."`` (turn reward 0.5); after a final turn it retries once."""

    turn_stops = ("?",)

    def __init__(self, reply: str = " yes.", retry: bool = False) -> None:
        super().__init__({"train": [Problem("a", "Ask:", "x")], "test": [Problem("b", "Ask:", "x")]})
        self.reply, self.retry = reply, retry

    def respond(self, problem, turns, final):
        if final:
            return Reply("Again:", reward=0.25) if self.retry and len(turns) == 1 else None
        return Reply(self.reply, reward=0.5)


def says_yes(problem, completion):
    return float("yes" in completion)


def play(env, texts_or_ids, seed=0):
    """Feed the policy's tokens (text pieces encoded one by one, or ids); return every step's results."""
    obs, info = env.reset(seed=seed)
    steps = []
    for piece in texts_or_ids:
        ids = env.codec.encode(piece) if isinstance(piece, str) else [piece]
        for t in ids:
            obs, r, term, trunc, info = env.step(t)
            steps.append((t, r, term, trunc, info))
            if term or trunc:
                return obs, steps
    return obs, steps


def test_env_tokens_are_appended_in_the_same_step_with_their_source_and_turn_reward():
    env = TokenEnv(Asker(), says_yes, max_new_tokens=30)
    eos = env.codec.eos_token_id
    obs, steps = play(env, ["is it", "?", eos])
    reply = env.codec.encode(" yes.")
    stop_step = [s for s in steps if s[4].get("env_tokens")]
    assert len(stop_step) == 1
    _, r, term, trunc, info = stop_step[0]
    assert (r, term, trunc) == (0.5, False, False)  # the turn reward lands on the token that ended the turn
    assert info["env_tokens"] == reply and info["env_text"] == " yes." and info["turn"] == 1
    final = steps[-1][4]
    assert steps[-1][1] == 1.0 and steps[-1][2]  # the outcome on the final token
    assert sum(s[1] for s in steps) == 1.5
    assert final["completion"] == "is it? yes." and final["turns"] == ["is it?", ""]
    assert final["end_reason"] == "eos" and final["num_turns"] == 2 and final["turn_rewards"] == [0.5, 0.0]
    policy = env.codec.encode("is it") + env.codec.encode("?")
    assert final["policy_tokens"] == len(policy) + 1 and final["num_tokens"] == len(policy) + len(reply) + 1
    # the buffer: prompt, the policy's ids as sampled, the reply's ids encoded alone, the EOS
    p = len(env.codec.encode("Ask:", add_special_tokens=True))
    n = obs["attention_mask"].sum()
    np.testing.assert_array_equal(obs["input_ids"][p:n], policy + reply + [eos])
    np.testing.assert_array_equal(obs["source"][:n], [0] * p + [1] * len(policy) + [2] * len(reply) + [1])
    assert env.observation_space.contains(obs)


def test_the_policys_tokens_are_kept_as_sampled_even_where_the_whole_text_would_tokenize_otherwise():
    env = TokenEnv(Asker(reply="yes"), says_yes, max_new_tokens=30)
    chars = list("is it?")  # one token per character: not how the tokenizer would split the text
    obs, steps = play(env, [*chars, env.codec.eos_token_id])
    ids = [s[0] for s in steps]
    p = len(env.codec.encode("Ask:", add_special_tokens=True))
    buffer = obs["input_ids"][p : obs["attention_mask"].sum()].tolist()
    assert buffer[: len(ids) - 1] == ids[:-1] and buffer[-1] == ids[-1]
    assert env.codec.decode(buffer[:-1]) == "is it?yes"
    assert buffer[:-1] != env.codec.encode("is it?yes")  # a re-tokenization would have changed them


def test_a_retry_after_a_final_turn_continues_the_episode():
    env = TokenEnv(Asker(retry=True), says_yes, max_new_tokens=40)
    eos = env.codec.eos_token_id
    obs, steps = play(env, ["no", eos, "no", eos])
    retry = next(s for s in steps if s[0] == eos)
    assert retry[4]["env_text"] == "Again:" and not retry[2] and retry[1] == 0.25
    final = steps[-1][4]
    assert final["turns"] == ["no", "no"] and final["end_reason"] == "eos" and steps[-1][2]
    assert final["completion"] == "no" + env.codec.decode([eos]) + "Again:no"


@pytest.mark.parametrize(
    "kwargs, reply, pieces, reason",
    [
        ({"max_turn_tokens": 4}, " yes.", ["a b c d e f g h"], "max_turn_tokens"),  # a turn that never ends
        ({"max_turns": 2}, " yes.", ["a?", "b?", "c?"], "max_turns"),
        ({}, " yes." * 50, ["a?"], "reply_over_budget"),  # a reply longer than the budget left
        ({}, " yes.", ["abc " * 40], "max_new_tokens"),
    ],
)
def test_budgets_end_the_episode_truncated_with_the_penalty_and_a_reason(kwargs, reply, pieces, reason):
    env = TokenEnv(Asker(reply=reply), says_yes, max_new_tokens=30, truncation_penalty=-1.0, **kwargs)
    obs, steps = play(env, pieces)
    _, r, term, trunc, info = steps[-1]
    assert trunc and not term and info["end_reason"] == reason
    # a refused reply's turn reward is still paid: the turn did end
    paid = 0.5 if reason in ("max_turns", "reply_over_budget") else 0.0
    assert r == pytest.approx(info["outcome_reward"] + paid - 1.0)
    assert int(obs["attention_mask"].sum()) <= env.episodes.width


def test_vector_env_matches_single_envs_and_reports_env_tokens_per_env():
    task = Asker()
    venv = TokenVectorEnv(3, task, says_yes, max_new_tokens=20, autoreset_mode="Disabled")
    single = [TokenEnv(task, says_yes, max_new_tokens=20) for _ in range(3)]
    codec = venv.codec
    scripts = [codec.encode("a?b") + [codec.eos_token_id], codec.encode("?") * 3, codec.encode("no")]
    obs, _ = venv.reset(seed=5)
    for i, env in enumerate(single):
        env.reset(seed=5 + i)
    for t in range(max(map(len, scripts))):
        actions = np.array([s[min(t, len(s) - 1)] for s in scripts])
        obs, r, term, trunc, info = venv.step(actions)
        for i, env in enumerate(single):
            if not env.episodes.running[0]:
                continue
            o, ri, te, tr, inf = env.step(int(actions[i]))
            for k in o:
                np.testing.assert_array_equal(obs[k][i], o[k])
            assert (r[i], term[i], trunc[i]) == (ri, te, tr)
            if "env_tokens" in inf:
                assert info["_env_tokens"][i] and list(info["env_tokens"][i]) == inf["env_tokens"]


def test_pickled_multi_turn_env_continues_identically():
    env = TokenEnv(Asker(), says_yes, max_new_tokens=20)
    env.reset(seed=1)
    for t in env.codec.encode("x?"):
        env.step(t)
    clone = pickle.loads(pickle.dumps(env))
    for t in env.codec.encode("y?") + [env.codec.eos_token_id]:
        a, b = env.step(t), clone.step(t)
        for k in a[0]:
            np.testing.assert_array_equal(a[0][k], b[0][k])
        assert a[1:4] == b[1:4] and a[4] == b[4]


def test_single_turn_envs_keep_their_observation_and_infos():
    env = gym.make("LMEnv/Math-v0").unwrapped
    obs, _ = env.reset(seed=0)
    assert sorted(obs) == ["attention_mask", "input_ids"] and not env.episodes.multi_turn
    assert not hasattr(env.episodes, "source")


def tokenizer_dir(tmp_path, template):
    path = tmp_path / "tok"
    save_codec(lm_envs.load_codec(), path)
    config = json.loads((path / "tokenizer_config.json").read_text())
    config["chat_template"] = template
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return str(path)


def test_chat_replies_follow_the_template_token_for_token(tmp_path):
    tok = tokenizer_dir(tmp_path, CHATML)
    end = lm_envs.load_codec(tok).hf_tokenizer.eos_token  # the end-of-turn is the EOS token, as an instruct model's
    tok = tokenizer_dir(tmp_path, CHATML.replace("<|im_end|>", end))
    env = TokenEnv(Asker(retry=True), says_yes, tokenizer=tok, max_new_tokens=60)
    hf = env.codec.hf_tokenizer
    eos = env.codec.eos_token_id
    obs, steps = play(env, ["no", eos, "yes", eos])
    eos_text = hf.convert_ids_to_tokens(eos)
    # the buffer is what a from-scratch rendering of the conversation gives (the policy ended each turn on EOS)
    messages = [
        {"role": "user", "content": "Ask:"},
        {"role": "assistant", "content": "no"},
        {"role": "user", "content": "Again:"},
    ]
    expected = hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + "yes" + eos_text
    n = int(obs["attention_mask"].sum())
    assert hf.decode(obs["input_ids"][:n].tolist(), skip_special_tokens=False) == expected
    assert steps[-1][4]["turns"] == ["no", "yes"]


def test_a_template_without_an_end_of_turn_marker_fails_on_creation_naming_the_fix(tmp_path):
    no_marker = CHATML.replace("'<|im_end|>' + '\\n'", "'\\n\\n'")
    tok = tokenizer_dir(tmp_path, no_marker)
    with pytest.raises(ValueError, match="use chat_template=False for this multi-turn env"):
        TokenEnv(Asker(retry=True), says_yes, tokenizer=tok)
    TokenEnv(Asker(retry=True), says_yes, tokenizer=tok, chat_template=False)  # plain prompts work


@pytest.mark.parametrize("bad", [{"max_turns": 0}, {"max_turn_tokens": -1}, {"max_turns": 1.5}])
def test_bad_turn_budgets_name_the_fix(bad):
    with pytest.raises(ValueError, match="must be a positive int or None"):
        TokenEnv(Asker(), says_yes, **bad)


def test_envs_left_out_by_active_ignore_their_action_this_step():
    venv = TokenVectorEnv(2, Asker(), says_yes, max_new_tokens=20, autoreset_mode="Disabled")
    obs0, _ = venv.reset(seed=0)
    a = np.array(venv.codec.encode("a") * 2)
    obs, r, term, trunc, _ = venv.step(a, active=np.array([True, False]))
    assert obs["attention_mask"][0].sum() == obs0["attention_mask"][0].sum() + 1
    np.testing.assert_array_equal(obs["input_ids"][1], obs0["input_ids"][1])
    assert r[1] == 0 and not term[1] and not trunc[1]
    with pytest.raises(ValueError, match="bool array of shape"):
        venv.step(a, active=[1, 0])


@pytest.mark.parametrize(
    "env_id, turns",
    [
        ("LMEnv/MathTools-v0", ["Ann has <calc>12*37</calc>", " pens.\n#### 444\nignored"]),
        ("LMEnv/MathRetry-v0", ["12 * 3 = 37\n#### 37\n", "12 * 3 = 36\n#### 36"]),
        ("LMEnv/MathRetry-v0", ["#### 1", "#### 2", "#### 3"]),
        ("LMEnv/MathTools-v0", ["<calc>1+" * 60]),  # a call never closed: truncated by the turn budget
    ],
)
def test_text_env_turns_pay_what_the_token_env_pays_for_the_same_conversation(env_id, turns):
    problem = Problem("t", "Twelve boxes of 3 pens. How many?\nSolution:\n", "36")
    text_env = lm_envs.make_text(env_id)
    obs, _ = text_env.reset(options={"problem": problem})
    text_total, played = 0.0, []
    for turn in turns:
        obs, r, term, trunc, text_info = text_env.step(turn)
        text_total += r
        played.append(turn)
        if term or trunc:
            break
    assert term or trunc
    token_env = gym.make(env_id).unwrapped
    token_env.reset(options={"problem": problem})
    token_total = 0.0
    for turn in played:
        used = turn[: len(turn) - len(text_info.get("unused_text", ""))] if turn is played[-1] else turn
        for t in [*token_env.codec.encode(used), token_env.codec.eos_token_id]:
            _, r, t_term, t_trunc, token_info = token_env.step(t)
            token_total += r
            if t_term or t_trunc or "env_tokens" in token_info:  # the turn ended (these turns all get replies)
                break
        if t_term or t_trunc:
            break
    assert (t_term, t_trunc) == (term, trunc)
    assert token_total == pytest.approx(text_total)
    assert token_info["completion"] == text_info["completion"] and token_info["turns"] == text_info["turns"]
    assert obs.endswith(text_info["completion"])
