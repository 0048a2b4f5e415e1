"""The generative contrastive verifier: result log-probs, completion log-probs, and training on minimal pairs."""

from __future__ import annotations

import pytest
import torch

from agents.policy.models import load_model
from agents.reward_models.contrastive import completion_logprobs, result_logprobs, train_contrastive_verifier
from agents.reward_models.train import contrastive_step_pairs, perturbed_solutions
from lm_envs.core.tokenizer import load_codec
from lm_envs.tasks.math import word_problems


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    codec = load_codec(None)
    return load_model(None, codec, seed=0, arch="llama", size={"n_layer": 1, "n_embd": 32}), codec


def _logp(lm, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = lm(input_ids=torch.tensor([ids])).logits[0, :-1]
    return torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]


def test_result_and_completion_logprobs_match_a_plain_forward(tiny):
    lm, codec = tiny
    lm.eval()
    texts = ["Q?\n4 * 3 = 12\n", "A longer question here?\n4 * 3 = 12\n12 * 6 = 72\n"]
    got = result_logprobs(lm, codec, texts)
    for text, value in zip(texts, got.tolist(), strict=True):
        ids, head = codec.encode(text), codec.encode(text[: text.rstrip("\n").rfind("= ") + 2])
        want = _logp(lm, ids)[len(head) - 1 :].sum()  # the result's digits and the closing newline
        assert abs(value - float(want)) < 1e-4
    prompts, completions = ["Q?\n", "Another one?\n"], ["4 * 3 = 12\n#### 12", "#### 5"]
    mean, low = completion_logprobs(lm, codec, prompts, completions)
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        head = codec.encode(p)
        lp = _logp(lm, head + codec.encode(c) + [codec.eos_token_id])[len(head) - 1 :]
        assert abs(mean[i] - float(lp.mean())) < 1e-4 and abs(low[i] - float(lp.min())) < 1e-4


def test_training_on_contrastive_pairs_prefers_the_right_result(tiny):
    _, codec = tiny
    lm = load_model(None, codec, seed=1, arch="llama", size={"n_layer": 1, "n_embd": 32})
    pairs = contrastive_step_pairs(perturbed_solutions(word_problems("easy"), "train", 8, 2, seed=0), 2, seed=0)

    def margin() -> float:
        with torch.no_grad():
            r = result_logprobs(lm, codec, [t for p in pairs for t in p]).view(-1, 2)
        return float((r[:, 0] - r[:, 1]).mean())

    before = margin()
    log = train_contrastive_verifier(lm, codec, pairs, steps=40, batch_size=16, lr=3e-3, seed=0, log_every=20)
    assert [e["step"] for e in log] == [20, 40] and not lm.training
    assert margin() > before + 0.4  # the right result's log-prob now clearly above the wrong one's


def test_no_pairs_or_bad_settings_fail_early(tiny):
    lm, codec = tiny
    with pytest.raises(ValueError, match="no contrastive pairs"):
        train_contrastive_verifier(lm, codec, [])
    with pytest.raises(ValueError, match="steps and batch_size"):
        train_contrastive_verifier(lm, codec, [("a = 1\n", "a = 2\n")], steps=0)
