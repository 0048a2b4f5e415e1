"""The chat env: synthetic instructions and the gold rubric, rendering, JSONL loaders, and the RM reward
(batched scoring in one forward, equality with one-by-one scoring, normalisation, length penalty)."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import lm_envs
from lm_envs import Problem
from lm_envs.tasks.chat import (
    ChatReward,
    Constraints,
    SyntheticInstructions,
    gold_score,
    load_chat_jsonl,
    load_chat_task,
    load_preference_jsonl,
    render_messages,
    synthetic_preferences,
)
from lm_envs.tasks.chat.rubric import rubric_parts
from lm_envs.tasks.math.loaders import DatasetFormatError

C = Constraints(topic="the park", words=4, keywords=("green", "quiet"))


# ----------------------------------------------------------------------------------------------- rubric


def test_gold_rubric_parts_by_hand():
    assert rubric_parts(C, " A green quiet park.") == {"length": 1.0, "keywords": 1.0, "distinct": 1.0}
    # 6 words for 4 requested: 1 - 2/4; one keyword of two; 5 distinct of 6
    parts = rubric_parts(C, " Green green trees in the park.")
    assert parts == {"length": 0.5, "keywords": 0.5, "distinct": pytest.approx(5 / 6)}
    assert gold_score(C, " Green green trees in the park.") == pytest.approx((0.5 + 0.5 + 5 / 6) / 3)
    assert gold_score(C, "  ...  ") == 0.0
    assert gold_score(C.to_dict(), " A green quiet park.") == 1.0


def test_synthetic_instructions_are_deterministic_and_test_is_fixed():
    a, b = SyntheticInstructions(), SyntheticInstructions()
    assert a.size("test") == 200
    assert [a.problem("test", i) for i in range(5)] == [b.problem("test", i) for i in range(5)]
    p = a.problem("train", 3)
    c = Constraints.from_dict(p.metadata["constraints"])
    assert str(c.words) in p.prompt and all(f'"{k}"' in p.prompt for k in c.keywords)
    assert p.prompt.startswith("User: ") and p.prompt.endswith("\nAssistant:")
    assert a.problem("train", 0) != a.problem("test", 0)


def test_synthetic_preferences_follow_the_rubric():
    pairs = synthetic_preferences(50, seed=1)
    assert pairs == synthetic_preferences(50, seed=1)
    for p in pairs:
        c = Constraints.from_dict(p.metadata["constraints"])
        assert gold_score(c, p.chosen) >= gold_score(c, p.rejected) + 0.05
        assert p.chosen != p.rejected and p.chosen.strip() and p.rejected.strip()


# ----------------------------------------------------------------------------------------------- rendering


def test_plain_template_and_a_tokenizer_chat_template(tmp_path):
    msgs = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "?"},
    ]
    assert render_messages(msgs) == "User: Hi\nAssistant: Hello\nUser: ?\nAssistant:"
    with pytest.raises(ValueError, match="end with a user message"):
        render_messages(msgs[:2])
    from transformers import AutoTokenizer

    from lm_envs.core.tokenizer import load_codec, save_codec

    save_codec(load_codec(None), tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    tok.save_pretrained(tmp_path)
    text = render_messages(msgs[:1], chat_template=str(tmp_path))
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert SyntheticInstructions(chat_template=str(tmp_path)).problem("test", 0).prompt.startswith("<|im_start|>user")


# ----------------------------------------------------------------------------------------------- loaders


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_chat_jsonl_loader_and_task(tmp_path):
    rows = [
        {"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello?"}]},
        {"id": "x", "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
    ]
    problems = load_chat_jsonl(write_jsonl(tmp_path / "c.jsonl", rows))
    assert problems[0].prompt == "System: Be kind.\nUser: Hello?\nAssistant:" and problems[0].id == "train/0"
    assert problems[1].id == "x" and problems[1].answer == "4" and problems[1].prompt == "User: 2+2?\nAssistant:"
    task = load_chat_task(train=tmp_path / "c.jsonl", test=tmp_path / "c.jsonl")
    env = gym.make("LMEnv/Chat-v0", task=task)
    _, info = env.reset(options={"split": "test", "index": 1})
    assert info["prompt"] == "User: 2+2?\nAssistant:"
    codec = env.unwrapped.codec
    for t in codec.encode(" 4") + [codec.eos_token_id]:
        *_, info = env.step(t)
    assert "gold" not in info["outcome"] and np.isfinite(info["outcome"]["rm_score"])


@pytest.mark.parametrize(
    "row, message",
    [
        ("{not json", r"c.jsonl:2: invalid JSON"),
        ({"msgs": []}, r"c.jsonl:2: missing key 'messages'"),
        ({"messages": [{"role": "bot", "content": "x"}]}, r"c.jsonl:2: messages\[0\] has role 'bot'"),
        ({"messages": [{"role": "user", "content": " "}]}, r"c.jsonl:2: messages\[0\] has empty"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, r"c.jsonl:2: the conversation must end with a user"),
    ],
)
def test_chat_jsonl_errors_name_file_and_line(tmp_path, row, message):
    good = {"messages": [{"role": "user", "content": "Hi"}]}
    with pytest.raises(DatasetFormatError, match=message):
        load_chat_jsonl(write_jsonl(tmp_path / "c.jsonl", [good, row]))


def test_preference_jsonl_shapes(tmp_path):
    hh = {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello there!",
        "rejected": "\n\nHuman: Hi\n\nAssistant: Go away.",
    }
    plain = {"prompt": "Q: 1+1?\nA:", "chosen": " 2", "rejected": " 3", "margin": 0.5}
    conv = {
        "prompt": [{"role": "user", "content": "Name a color."}],
        "chosen": [{"role": "assistant", "content": "Red."}],
        "rejected": [{"role": "assistant", "content": "Seven."}],
    }
    pairs = load_preference_jsonl(write_jsonl(tmp_path / "p.jsonl", [hh, plain, conv]))
    assert (pairs[0].prompt, pairs[0].chosen, pairs[0].rejected) == (
        "\n\nHuman: Hi\n\nAssistant:",
        " Hello there!",
        " Go away.",
    )
    assert pairs[1].margin == 0.5 and pairs[1].texts() == ("Q: 1+1?\nA: 2", "Q: 1+1?\nA: 3")
    assert pairs[2].prompt == "User: Name a color.\nAssistant:" and pairs[2].chosen == " Red."


@pytest.mark.parametrize(
    "row, message",
    [
        ({"prompt": "Q", "chosen": " a", "rejected": " a"}, r"p.jsonl:1: chosen and rejected are identical"),
        ({"prompt": "Q", "chosen": "", "rejected": " a"}, r"p.jsonl:1: the chosen response is empty"),
        ({"prompt": "Q", "chosen": " a"}, r"p.jsonl:1: missing key 'rejected'"),
        ({"prompt": "Q", "chosen": " a", "rejected": " b", "margin": "big"}, r"p.jsonl:1: key 'margin'"),
    ],
)
def test_preference_jsonl_bad_pairs(tmp_path, row, message):
    with pytest.raises(DatasetFormatError, match=message):
        load_preference_jsonl(write_jsonl(tmp_path / "p.jsonl", [row]))


# ----------------------------------------------------------------------------------------------- reward


def test_import_lm_envs_and_chat_stays_free_of_torch():
    code = "import sys, lm_envs, lm_envs.tasks.chat; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def episodes(n=8):
    task = SyntheticInstructions()
    problems = [task.problem("test", i) for i in range(n)]
    responses = [" Green quiet park.", " Park park park park park.", "", " A busy day at the market with friends."]
    return problems, [responses[i % len(responses)] for i in range(n)]


def test_batched_scoring_equals_one_by_one_in_one_forward():
    reward = ChatReward()
    problems, completions = episodes(8)
    scorer = reward.scorer()
    before = scorer.forwards
    batched = reward.outcome_batch(problems, completions)
    assert scorer.forwards == before + 1  # all eight in one forward
    singles = [reward.outcome(p, c) for p, c in zip(problems, completions)]
    for a, b in zip(batched, singles):
        assert a.reward == pytest.approx(b.reward, abs=1e-5)
        assert a.record["gold"] == b.record["gold"]


def test_release_scorers_drops_only_that_models_shared_scorer():
    from lm_envs.tasks.chat.reward import load_scorer, release_scorers

    scorer = ChatReward().scorer()
    assert load_scorer(scorer.path) is load_scorer(scorer.path)  # shared while loaded
    assert release_scorers("/no/such/model") == 0
    assert release_scorers(scorer.path) >= 1
    assert ChatReward().scorer() is not scorer  # loaded afresh


def test_reward_prefers_rubric_following_responses():
    problem = Problem("x", render_messages([{"role": "user", "content": "Write about the park in exactly 4 words. "
                      'Use the words "green" and "quiet". Do not repeat words.'}]),
                      metadata={"constraints": C.to_dict()})  # fmt: skip
    good, bad = ChatReward().outcome_batch([problem, problem], [" A green quiet park.", " park park park park park"])
    assert good.record["gold"] == 1.0 and bad.record["gold"] < 0.5
    assert good.reward > bad.reward


def test_normalisation_and_length_penalty():
    problems, completions = episodes(4)
    raw = ChatReward().outcome_batch(problems, completions)
    scorer = ChatReward().scorer()
    norm = ChatReward(normalize=True, length_penalty=0.1).outcome_batch(problems, completions)
    for r, n in zip(raw, norm):
        expected = (r.reward - scorer.mean) / scorer.std - 0.1 * n.record["num_words"]
        assert n.reward == pytest.approx(expected, abs=1e-5) and n.record["rm_score"] == pytest.approx(r.reward)
    custom = ChatReward(normalize=True, mean=1.0, std=2.0).outcome_batch(problems[:1], completions[:1])[0]
    assert custom.reward == pytest.approx((raw[0].reward - 1.0) / 2.0, abs=1e-5)
    with pytest.raises(ValueError, match="std must be > 0"):
        ChatReward(normalize=True, std=0.0)


def test_vector_env_scores_episodes_ending_together_in_one_forward():
    venv = gym.make_vec("LMEnv/Chat-v0", num_envs=6, autoreset_mode="Disabled")
    venv.reset(seed=0)
    scorer = venv.episodes.reward.scorer()
    before = scorer.forwards
    eos = venv.codec.eos_token_id
    word = venv.codec.encode(" green")[0]
    venv.step(np.full(6, word))
    _, r, term, _, info = venv.step(np.full(6, eos))
    assert term.all() and scorer.forwards == before + 1
    assert all(np.isfinite(r)) and "gold" in info["outcome"] and len(info["outcome"]["rm_score"]) == 6


def test_chat_env_is_registered_with_a_protocol():
    assert "LMEnv/Chat-v0" in lm_envs.registered_ids()
    assert lm_envs.get_protocol("LMEnv/Chat-v0").metric == "mean_return"


def test_a_chat_template_reward_model_reads_its_own_rendering_of_the_conversation(tmp_path):
    """An RM trained on chat-templated prompts (lm_envs_chat_template) scores them so, whatever the env rendered."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

    from lm_envs.core.tokenizer import load_codec, save_codec
    from lm_envs.tasks.chat.reward import RewardModelScorer

    codec = load_codec(None)
    save_codec(codec, tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    tok.save_pretrained(tmp_path)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=codec.vocab_size, n_layer=1, n_embd=16, n_head=2, n_positions=256, num_labels=1)
    config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    model = GPT2ForSequenceClassification(config)
    for flag, where in ((True, tmp_path / "templated"), (False, tmp_path / "plain")):
        model.config.lm_envs_chat_template = flag
        model.save_pretrained(where)
        tok.save_pretrained(where)
    problem = SyntheticInstructions().problem("test", 0)  # the env's plain "User: ... Assistant:" rendering
    completion = " A green quiet park."
    templated = RewardModelScorer(str(tmp_path / "templated"))
    rendered = render_messages(problem.metadata["messages"], str(tmp_path / "templated"))
    assert templated.prompt_for(problem) == rendered != problem.prompt
    assert rendered.startswith("<|im_start|>user\n")
    got = ChatReward(reward_model=str(tmp_path / "templated")).outcome(problem, completion).record["rm_score"]
    assert got == pytest.approx(templated.score([rendered + completion])[0], abs=1e-6)
    assert got != pytest.approx(templated.score([problem.prompt + completion])[0], abs=1e-6)
    # without the flag (any other RM): the env's prompt as it is; a problem without messages too
    assert RewardModelScorer(str(tmp_path / "plain")).prompt_for(problem) == problem.prompt
    assert templated.prompt_for(Problem("x", "User: hi\nAssistant:")) == "User: hi\nAssistant:"
