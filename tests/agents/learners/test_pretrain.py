"""Pre-training on a task's documents, and task metrics flowing from a reward into evaluations and runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lm_envs
from agents.evaluate import EvalConfig, evaluate
from agents.learners.base import rollout_metrics
from agents.learners.pretrain import PretrainConfig, document_batches, token_stream, train_pretrain, window_batches
from agents.policy.models import build_default_model
from agents.policy.sampling import Rollout
from agents.run.distributed import Dist
from lm_envs import ListTask, Outcome, Problem, Reward
from lm_envs.core.tokenizer import load_codec

FACT = "The vault code is 4 7 1 9."


class FactTask(ListTask):
    """A task whose answer is only learnable from its documents."""

    def documents(self):
        yield FACT
        yield "The sky is blue."


class CountingReward(Reward):
    """Records the answer's length so metrics have something to aggregate."""

    def outcome(self, problem, completion):
        text = completion.strip()
        return Outcome(float(text == problem.answer), {"correct": text == problem.answer, "length": len(text)})

    def metrics(self, records):
        return {"long_rate": float(np.mean([r["length"] > 3 for r in records]))}


def fact_task() -> FactTask:
    return FactTask({"train": [Problem("t/0", "The vault code is", "4 7 1 9")], "test": [Problem("e/0", "x", "y")]})


def test_token_stream_packs_documents_with_eos_and_windows_cover_it():
    codec = load_codec(None)
    stream = token_stream(fact_task(), codec)
    assert (stream == codec.eos_token_id).sum() == 2
    assert codec.decode(stream[: list(stream).index(codec.eos_token_id)].tolist()) == FACT
    batch = next(window_batches(stream, PretrainConfig(batch_size=4, block_size=8), np.random.default_rng(0)))
    assert batch["input_ids"].shape == (4, 8) and torch.equal(batch["labels"], batch["input_ids"])


def test_shuffle_packing_starts_rows_at_document_starts_and_masks_the_padding():
    docs = [np.array([1, 2, 0]), np.array([3, 4, 5, 0]), np.array([6, 7, 8, 9, 10, 11, 0])]
    cfg = PretrainConfig(batch_size=64, block_size=6, packing="shuffle")
    batch = next(document_batches(docs, cfg, np.random.default_rng(0), pad_token_id=99))
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert ids.shape == (64, 6)
    assert set(ids[:, 0].tolist()) == {1, 3, 6}  # every row opens on a document start
    for row, m, lab in zip(ids.tolist(), mask.tolist(), labels.tolist()):
        n = sum(m)
        assert m == [1] * n + [0] * (6 - n) and row[n:] == [99] * (6 - n)
        assert lab == row[:n] + [-100] * (6 - n)
        real = row[:n]
        while real:  # the real tokens are whole documents, except a long one cut at the row's end
            doc = next(d.tolist() for d in docs if d[0] == real[0])
            assert real[: len(doc)] == doc[: len(real)]
            real = real[len(doc) :]
    rows = {tuple(r) for r in ids.tolist()}
    assert len(rows) > 3  # documents are drawn afresh for every row


def test_unknown_packing_names_the_choices():
    with pytest.raises(ValueError, match="'stream', 'shuffle'"):
        train_pretrain(
            build_default_model(load_codec(None)), fact_task(), load_codec(None), PretrainConfig(steps=1, packing="x")
        )


@pytest.mark.parametrize("packing", ["stream", "shuffle"])
def test_pretraining_makes_a_model_from_scratch_recall_its_documents(packing):
    codec = load_codec(None)
    torch.manual_seed(0)
    model = build_default_model(codec, seed=0)
    prompt = codec.encode("The vault code is", add_special_tokens=True)
    target = codec.encode(" 4 7 1 9")

    def target_logprob() -> float:
        ids = torch.tensor([prompt + target])
        with torch.no_grad():
            logp = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
        return float(sum(logp[len(prompt) - 1 + i, t] for i, t in enumerate(target)))

    before = target_logprob()
    train_pretrain(
        model,
        fact_task(),
        codec,
        PretrainConfig(steps=150, batch_size=8, block_size=32, lr=3e-3, warmup_steps=5, packing=packing),
    )
    after = target_logprob()
    assert before < -10 and after > -1.0, (before, after)


@pytest.mark.parametrize("packing", ["stream", "shuffle"])
def test_pretraining_a_task_without_documents_names_the_fix(packing):
    task = ListTask({"train": [Problem("a", "q", "a")]})
    with pytest.raises(ValueError, match="pretrain.steps=0"):
        train_pretrain(
            build_default_model(load_codec(None)), task, load_codec(None), PretrainConfig(steps=1, packing=packing)
        )


def test_reward_metrics_reach_evaluation_and_rollout_logs():
    lm_envs.register(
        "Test/Counting-v0",
        task=ListTask.from_pairs(train=[("Say ok:", "ok")], test=[("Say ok:", "ok"), ("Say no:", "no")]),
        reward=CountingReward(),
        max_new_tokens=6,
    )
    codec = load_codec(None)
    model = build_default_model(codec, seed=0)
    # a training split in the env kwargs (as a run's env.kwargs may hold) does not leak into evaluation
    cfg = EvalConfig(num_episodes=2, batch_size=2)
    result = evaluate(model, "Test/Counting-v0", cfg, seed=0, env_kwargs={"split": "train"})
    assert [r["problem_id"] for r in result["records"]] == ["test/0", "test/1"]
    lengths = [r["outcome"]["length"] for r in result["records"]]
    assert result["long_rate"] == np.mean([n > 3 for n in lengths])

    infos = [{"outcome": {"correct": True, "length": 2}}, {"outcome": {"correct": False, "length": 6, "x": "s"}}]
    rewards = torch.tensor([[0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    ones = torch.ones(2, 2, dtype=torch.long)
    rollout = Rollout(ones, ones, ones, ones.bool(), torch.zeros(2, 2), rewards, infos, [{}, {}])
    logged = rollout_metrics(rollout, 1.0, CountingReward(), Dist())
    outcome = {k: v for k, v in logged.items() if k.startswith(("rollout/outcome", "rollout/long"))}
    assert outcome == {"rollout/outcome/correct": 0.5, "rollout/outcome/length": 4.0, "rollout/long_rate": 0.5}
    assert logged["rollout/return_mean"] == 0.5 and logged["rollout/tokens_per_s"] == 4.0


def test_a_reward_metric_that_clashes_with_an_evaluation_metric_is_an_error():
    class Clashing(CountingReward):
        def metrics(self, records):
            return {"accuracy": 1.0}

    lm_envs.register(
        "Test/Clash-v0",
        task=ListTask.from_pairs(train=[("q", "a")], test=[("q", "a")]),
        reward=Clashing(),
        max_new_tokens=2,
    )
    model = build_default_model(load_codec(None), seed=0)
    with pytest.raises(ValueError, match="clashes"):
        evaluate(model, "Test/Clash-v0", EvalConfig(num_episodes=1), seed=0)
