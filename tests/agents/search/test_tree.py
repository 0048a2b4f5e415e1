"""Step-level search (beam, DVTS, lookahead, best-of-N) on the KV-cached engine, with tiny random models."""

from __future__ import annotations

import random

import gymnasium as gym
import pytest
import torch

import lm_envs  # noqa: F401
from agents.policy.models import positions
from agents.policy.sampling import collect, left_pad_prompts
from agents.search.tree import SearchConfig, aggregate, check_config, choose, search, verifier_step_scorer

torch.set_num_threads(1)
ENV = "LMEnv/Math-v0"


def random_scorer(seed=0):
    rng = random.Random(seed)
    return lambda problems, histories, steps: [rng.random() for _ in steps]


def prompts(indices):
    venv = gym.make_vec(ENV, num_envs=len(indices), autoreset_mode="Disabled", split="test")
    obs, _ = venv.reset(options={"index": list(indices), "split": "test"})
    return left_pad_prompts(obs, gym.make(ENV).unwrapped.codec.pad_token_id)


@pytest.mark.parametrize(
    "strategy, n, width, lookahead",
    [("best_of_n", 4, 1, 0), ("beam", 8, 2, 0), ("dvts", 8, 4, 0), ("lookahead", 4, 2, 1)],
)
def test_every_candidate_is_what_the_model_would_sample_from_its_prefix(model, strategy, n, width, lookahead):
    # forked, pruned and waiting rows share one cache: a full forward over prompt + tokens must give the
    # log-probs the search recorded while sampling, for every finished candidate
    cfg = SearchConfig(strategy=strategy, n=n, width=width, lookahead=lookahead)
    result = search(model, ENV, cfg, random_scorer(), [0, 1])
    ids, mask = prompts([0, 1])
    steps = 0
    for p, candidates in enumerate(result.candidates):
        assert len(candidates) == n  # every row ends up finished once
        for c in candidates:
            tokens = torch.tensor([c["tokens"]])
            full = torch.cat([ids[p : p + 1], tokens], 1)
            att = torch.cat([mask[p : p + 1], torch.ones_like(tokens)], 1)
            with torch.no_grad():
                logits = model(input_ids=full, attention_mask=att, position_ids=positions(att)).logits
            logp = torch.log_softmax(logits[0, ids.shape[1] - 1 : -1].float(), -1).gather(1, tokens[0][:, None]).sum()
            assert logp.item() == pytest.approx(c["logprob"], abs=1e-3)
            assert len(c["step_scores"]) == len(c["steps"]) and all(0 <= s <= 1 for s in c["step_scores"])
            steps += len(c["steps"])
    assert steps > 0


def test_a_greedy_beam_of_one_is_the_greedy_rollout_of_the_env(model):
    venv = gym.make_vec(ENV, num_envs=3, autoreset_mode="Disabled", split="test")
    rollout = collect(model, venv, options={"index": [0, 1, 2], "split": "test"}, temperature=0)
    cfg = SearchConfig(strategy="beam", n=1, width=1, temperature=0.0)
    result = search(model, ENV, cfg, verifier_step_scorer(), [0, 1, 2])
    for j in range(3):
        assert result.candidates[j][0]["tokens"] == rollout.tokens[j][rollout.mask[j]].tolist()
        assert result.candidates[j][0]["completion"] == rollout.infos[j]["completion"]


def test_generated_tokens_count_shared_prefixes_once_and_pruned_rows_too(model):
    bon = search(model, ENV, SearchConfig(strategy="best_of_n", n=4), random_scorer(), [0, 1])
    assert bon.generated_tokens == [sum(c["num_tokens"] for c in cs) for cs in bon.candidates]
    beam = search(model, ENV, SearchConfig(strategy="beam", n=8, width=2), random_scorer(), [0, 1])
    for tokens, cs in zip(beam.generated_tokens, beam.candidates):
        assert max(c["num_tokens"] for c in cs) <= tokens <= sum(c["num_tokens"] for c in cs) + 8 * 96


def test_final_selection_by_score_weighted_vote_and_majority():
    cands = [
        {"score": 0.9, "answer": "3"},
        {"score": 0.4, "answer": "5"},
        {"score": 0.45, "answer": "5"},
        {"score": 0.1, "answer": None},
    ]
    same = lambda a, b: a == b  # noqa: E731
    assert choose(cands, "score", same) == 0
    assert choose(cands, "weighted", same) == 0  # 0.9 > 0.4 + 0.45
    assert choose(cands, "majority", same) == 1
    cands[0]["score"] = 0.8
    assert choose(cands, "weighted", same) == 1  # 0.85 > 0.8
    assert [aggregate([0.5, 0.2, 0.9], h) for h in ("last", "min")] == [0.9, 0.2]


@pytest.mark.parametrize(
    "cfg, message",
    [
        (SearchConfig(strategy="beam", n=4, width=8), "beam width 8 is above n=4"),
        (SearchConfig(strategy="dvts", n=6, width=4), "not a multiple"),
        (SearchConfig(strategy="lookahead", n=4, width=2), "lookahead >= 1"),
        (SearchConfig(strategy="mcts"), "unknown search strategy"),
        (SearchConfig(n=8, width=2, token_budget=500), r"may generate 768 tokens.*lower n to 5"),
        (SearchConfig(aggregate="mean"), "aggregate"),
    ],
)
def test_bad_settings_fail_before_any_sampling(cfg, message):
    with pytest.raises(ValueError, match=message):
        check_config(cfg, max_new_tokens=96)


def test_search_checks_before_sampling_and_needs_a_scorer(model, monkeypatch):
    import agents.search.tree as tree

    monkeypatch.setattr(tree, "_search_chunk", lambda *a, **k: pytest.fail("sampled"))
    with pytest.raises(ValueError, match="above n"):
        search(model, ENV, SearchConfig(n=2, width=4), random_scorer(), [0])
    with pytest.raises(ValueError, match="needs a step scorer"):
        search(model, ENV, SearchConfig(), None, [0])
    with pytest.raises(ValueError, match="extracts none"):
        search(model, "LMEnv/Digits-v0", SearchConfig(strategy="best_of_n", select="majority"), None, [0])


def test_the_verifier_steers_beam_search_and_dvts_toward_steps_it_likes(model):
    # a verifier that likes steps of even length: search keeps such rows, independent sampling does not
    def even(problems, histories, steps):
        return [float(len(s) % 2 == 0) for s in steps]

    def liked(result):
        scores = [s for cs in result.candidates for c in cs for s in c["step_scores"]]
        return sum(scores) / len(scores)

    indices = [0, 1, 2, 3]
    bon = liked(search(model, ENV, SearchConfig(strategy="best_of_n", n=8), even, indices))
    beam = liked(search(model, ENV, SearchConfig(strategy="beam", n=8, width=4, aggregate="min"), even, indices))
    dvts = liked(search(model, ENV, SearchConfig(strategy="dvts", n=8, width=4, aggregate="min"), even, indices))
    assert beam > bon + 0.15 and dvts > bon + 0.15, (bon, beam, dvts)


# ----------------------------------------------------------------------------------------------- token-level scoring


@pytest.fixture(scope="module")
def tiny_prm(tmp_path_factory):
    """A one-logit GPT-2 PRM over the Math env's own tokenizer, saved and loaded as ``LearnedPRM``."""
    from agents.reward_models.train import RewardModelConfig, build_reward_model
    from lm_envs.tasks.math.prm import LearnedPRM

    path = tmp_path_factory.mktemp("prm")
    model, tokenizer = build_reward_model(
        RewardModelConfig(kind="prm", output_dir=str(path), n_layer=1, n_embd=32, n_head=2, max_length=256)
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return LearnedPRM(str(path), max_length=256)


class TextOnly:
    """A scorer that hides another's token path: every step is scored from decoded text."""

    def __init__(self, scorer):
        self.scorer, self.calls = scorer, 0

    def __call__(self, problems, histories, steps):
        self.calls += len(steps)
        return self.scorer(problems, histories, steps)


def _plain_score(scorer, context, start):
    """What a scorer says of ``context`` (ids) from a plain forward over exactly those ids."""
    with torch.no_grad():
        if hasattr(scorer, "model"):  # LearnedPRM: the classifier's own last-token readout
            return float(torch.sigmoid(scorer.model(input_ids=torch.tensor([context])).logits[0, 0]))
        logits = scorer.lm(input_ids=torch.tensor([context])).logits[0, :-1].float()
        lp = torch.log_softmax(logits, -1).gather(1, torch.tensor(context[1:])[:, None])[:, 0]
        return float(torch.exp(lp[start - 1 :].mean()))


@pytest.mark.parametrize("kind", ["prm", "likelihood"])
def test_search_scores_steps_on_the_policys_own_token_ids(model, tiny_prm, kind):
    # a scorer that shares the policy's tokenizer reads the sampled ids in one forward per row (no decode /
    # re-encode): every step's score is the scorer's verdict on prompt ids + the row's ids up to that step
    from agents.reward_models.contrastive import LikelihoodStepScorer

    env = gym.make(ENV).unwrapped
    codec = env.codec
    scorer = tiny_prm if kind == "prm" else LikelihoodStepScorer(model.lm, codec)
    cfg = SearchConfig(strategy="beam", n=4, width=2, aggregate="min")
    result = search(model, ENV, cfg, scorer, [0, 1], seed=3)
    assert result.scored_steps["tokens"] > 0
    ids, mask = prompts([0, 1])
    checked = 0
    for p, cands in enumerate(result.candidates):
        prompt_ids = ids[p][mask[p].bool()].tolist()
        for c in cands:
            for k, end in enumerate(c["step_ends"]):
                if end is None:
                    continue
                by_eos = c["tokens"][end : end + 1] == [codec.eos_token_id]  # read closed by the separator
                context = prompt_ids + c["tokens"][:end] + (codec.encode("\n") if by_eos else [])
                assert c["step_scores"][k] == pytest.approx(_plain_score(scorer, context, len(prompt_ids)), abs=2e-5)
                checked += 1
    assert checked >= 10


@pytest.mark.parametrize("kind", ["prm", "likelihood"])
def test_token_path_equals_the_text_path_where_text_re_encodes_to_the_same_ids(model, tiny_prm, kind):
    from agents.reward_models.contrastive import LikelihoodStepScorer

    env = gym.make(ENV).unwrapped
    codec = env.codec
    scorer = tiny_prm if kind == "prm" else LikelihoodStepScorer(model.lm, codec)
    problem = env.task.problem("test", 0)
    steps = list(problem.steps)
    prompt_ids = codec.encode(problem.prompt)
    context = codec.encode(problem.prompt + "".join(s + "\n" for s in steps))
    ends = [len(codec.encode(problem.prompt + "".join(s + "\n" for s in steps[: k + 1]))) for k in range(len(steps))]
    assert context[: len(prompt_ids)] == prompt_ids and all(
        context[:e] == codec.encode(problem.prompt + "".join(s + "\n" for s in steps[: k + 1]))
        for k, e in enumerate(ends)
    )
    got = scorer.token_step_scores([context], [len(prompt_ids)], [ends])[0]
    want = [TextOnly(scorer)([problem], [steps[:k]], [steps[k]])[0] for k in range(len(steps))]
    assert len(steps) >= 2 and got == pytest.approx(want, abs=2e-5)


def test_a_scorer_with_another_tokenizer_gets_text(model, tiny_prm, monkeypatch):
    from agents.search.tree import reads_tokens

    env = gym.make(ENV).unwrapped
    assert reads_tokens(tiny_prm, env.codec)
    monkeypatch.setattr(tiny_prm, "shares_tokenizer", lambda codec: False)
    assert not reads_tokens(tiny_prm, env.codec)
    result = search(model, ENV, SearchConfig(strategy="beam", n=4, width=2), tiny_prm, [0], seed=1)
    assert result.scored_steps["tokens"] == 0 and result.scored_steps["text"] > 0
    plain = TextOnly(tiny_prm)  # a plain callable has no token path either
    assert not reads_tokens(plain, env.codec)
    search(model, ENV, SearchConfig(strategy="beam", n=4, width=2), plain, [0], seed=1)
    assert plain.calls > 0


def test_token_path_cuts_long_prefixes_from_the_left_like_the_text_path(tiny_prm):
    env = gym.make(ENV).unwrapped
    ids = env.codec.encode("Q: 1 + 1?\n" + "1 + 1 = 2\n" * 40)
    ends = [12, 150, len(ids)]
    tiny_prm.max_length = 64
    try:
        got = tiny_prm.token_step_scores([ids], [0], [ends])[0]
        texts = [env.codec.decode(ids[max(0, e - 64) : e]) for e in ends]
        want = [tiny_prm.probabilities([t])[0] for t in texts]
    finally:
        tiny_prm.max_length = 256
    assert env.codec.encode(texts[1]) == ids[150 - 64 : 150]  # the windows re-encode to themselves
    assert got == pytest.approx(want, abs=2e-5)


def test_same_tokenizer_tells_another_vocabulary_apart(tmp_path):
    from lm_envs.core.tokenizer import codec_from_tokenizers_file, load_codec, train_bpe
    from lm_envs.tasks.math.prm import same_tokenizer

    codec = load_codec(None)
    assert same_tokenizer(codec, codec) and same_tokenizer(codec, load_codec(None))
    other = tmp_path / "tokenizer.json"
    other.write_text(train_bpe(["Q: 12 + 3 = 15\n#### 15\n"] * 50, vocab_size=300).to_str())
    assert not same_tokenizer(codec, codec_from_tokenizers_file(other))
