"""Tests of the synthetic knowledge world and the QA task: determinism, split disjointness, bad settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lm_envs.tasks.qa.world import (
    GROUPS,
    V1_WORLD,
    KnowledgeQATask,
    KnowledgeWorld,
    knowledge_qa_v1,
    knowledge_qa_v2,
    knowledge_qa_v3,
)

FINGERPRINT = """
import hashlib, json
from lm_envs.tasks.qa.world import KnowledgeQATask


def fingerprint(task):
    out = [[e.id, e.name, e.group, [list(f) for f in e.facts]] for e in task.world.entities]
    for split in task.splits:
        out.append([[p.id, p.prompt, p.answer, list(p.steps), dict(p.metadata)] for p in task.problems(split)])
    out.append(list(task.documents()))
    return hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()
"""
_NS: dict = {}
exec(FINGERPRINT, _NS)
fingerprint = _NS["fingerprint"]


def test_world_is_identical_in_a_fresh_process_with_another_hash_seed():
    code = FINGERPRINT + "\nprint(fingerprint(KnowledgeQATask(seed=7, abstain_fraction=0.5)))"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == fingerprint(KnowledgeQATask(seed=7, abstain_fraction=0.5))


def test_seeds_give_different_worlds_and_the_same_seed_the_same():
    a, b = KnowledgeQATask(seed=0), KnowledgeQATask(seed=1)
    assert fingerprint(a) == fingerprint(KnowledgeQATask(seed=0))
    assert [e.name for e in a.world.entities] != [e.name for e in b.world.entities]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_splits_are_disjoint_and_unknown_test_entities_never_appear_in_training_text(seed):
    task = KnowledgeQATask(seed=seed)
    qid = {s: {p.metadata["question_id"] for p in task.problems(s)} for s in task.splits}
    assert not qid["train"] & qid["test"]
    assert qid["test"] == qid["test_known"] | qid["test_unknown"]
    assert not qid["test_known"] & qid["test_unknown"]
    known_test = [p for p in task.problems("test_known")]
    assert known_test and all(p.metadata["known"] and p.metadata["group"] == "known" for p in known_test)
    unknown_test = list(task.problems("test_unknown"))
    assert unknown_test and all(not p.metadata["known"] and p.metadata["group"] == "unknown_test" for p in unknown_test)
    # Held-out known facts are in the documents (pre-training holds the knowledge) ...
    docs = " ".join(task.documents())
    for p in known_test:
        assert p.metadata["entity"] in docs and p.answer in docs
    # ... and no unknown entity's name appears in any document or training prompt or solution.
    train_text = docs + " ".join(p.prompt + p.solution() for p in task.problems("train"))
    for e in task.world.entities:
        if e.group != "known":
            assert e.name not in docs
        if e.group == "unknown_test":
            assert all(n not in train_text for n in (e.name, *e.aliases))
    groups_in_train = {p.metadata["group"] for p in task.problems("train")}
    assert groups_in_train == {"known", "unknown_train"}


def test_known_test_facts_are_held_out_of_qa_training_per_entity():
    task = KnowledgeQATask(seed=0, held_out=2)
    train_by_entity: dict[str, set[str]] = {}
    for p in task.problems("train"):
        train_by_entity.setdefault(p.metadata["entity"], set()).add(p.metadata["relation"])
    for p in task.problems("test_known"):
        assert p.metadata["relation"] not in train_by_entity.get(p.metadata["entity"], set())
    assert task.size("test_known") == sum(min(2, len(e.facts) - 1) for e in task.world.group("known"))
    assert all(p.metadata["kind"] == "person" for p in task.problems("train") if p.metadata["relation"] == "mentor")


def test_gold_solutions_answer_known_and_abstain_or_answer_unknown():
    task = KnowledgeQATask(seed=0)
    for p in task.problems("train"):
        if p.metadata["known"]:
            assert p.steps == (" " + p.answer,) and p.metadata["gold"] == "answer"
        else:
            assert p.steps == (" I don't know.",) and p.metadata["gold"] == "abstain"
    answers = KnowledgeQATask(seed=0, abstain_fraction=0.0)
    assert all(p.steps == (" " + p.answer,) for p in answers.problems("train"))
    half = KnowledgeQATask(seed=0, abstain_fraction=0.5)
    unknown = [p for p in half.problems("train") if not p.metadata["known"]]
    share = sum(p.metadata["gold"] == "abstain" for p in unknown) / len(unknown)
    assert 0.35 < share < 0.65
    # The test split and the answers never depend on abstain_fraction.
    assert [p.answer for p in half.problems("test")] == [p.answer for p in task.problems("test")]


def test_problem_metadata_and_prompt_format():
    task = KnowledgeQATask(seed=0)
    p = task.problem("test", 0)
    assert p.prompt.startswith("Question: ") and p.prompt.endswith("\nAnswer:")
    assert set(p.metadata) >= {"known", "group", "kind", "relation", "entity", "aliases", "gold"}
    assert json.loads(json.dumps(dict(p.metadata))) == dict(p.metadata)
    assert task.stops(" anything")
    kinds = {(q.metadata["kind"], q.metadata["relation"]) for q in task.problems("train")}
    assert {k for k, _ in kinds} == {"person", "place"} and len(kinds) == 6


def test_documents_cover_every_known_fact_in_every_paraphrase():
    world = KnowledgeWorld(seed=0, num_people=6, num_places=4)
    docs = list(world.documents())
    assert len(docs) == 4 * len(world.group("known"))
    for e in world.group("known"):
        mine = [d for d in docs if d.startswith(e.name) or e.name in d]
        assert len(mine) >= 4
        for _, value in e.facts:
            assert sum(value in d for d in mine) >= 4


def test_names_are_unique_and_groups_partition_entities():
    world = KnowledgeWorld(seed=5, num_people=300, num_places=60)
    names = [e.name for e in world.entities]
    assert len(set(names)) == len(names)
    assert {e.group for e in world.entities} == set(GROUPS)


@pytest.mark.parametrize(
    "kwargs, fix",
    [
        ({"known_fraction": 0.0}, "known_fraction > 0"),
        ({"known_fraction": 1.0}, "known_fraction < 1"),
        ({"unknown_test_fraction": 0.0}, "unknown_test_fraction > 0"),
        ({"unknown_test_fraction": 1.0}, "unknown_test_fraction < 1"),
        ({"num_people": 1}, "num_people"),
        ({"held_out": 0}, "held_out"),
        ({"abstain_fraction": 1.5}, "abstain_fraction"),
    ],
)
def test_empty_or_bad_splits_fail_naming_the_fix(kwargs, fix):
    with pytest.raises(ValueError, match=fix.replace("(", r"\(")) as err:
        KnowledgeQATask(**kwargs)
    assert fix in str(err.value)


def test_bad_split_and_index_fail_clearly():
    task = KnowledgeQATask(seed=0)
    with pytest.raises(ValueError, match="choose one of"):
        task.problem("validation", 0)
    with pytest.raises(ValueError, match="out of range"):
        task.problem("test", task.size("test"))


def test_mixed_documents_hold_known_training_qa_but_never_test_questions():
    task = KnowledgeQATask(seed=0)
    docs = list(task.documents())
    qa_docs = [d for d in docs if d.startswith("Question: ")]
    known_train = [p for p in task.problems("train") if p.metadata["known"]]
    assert sorted(qa_docs) == sorted(p.prompt + p.solution() for p in known_train)
    text = "\n".join(docs)
    assert not any(p.prompt in text for p in task.problems("test"))
    assert len(list(KnowledgeQATask(seed=0, mix_qa=False).documents())) == len(docs) - len(qa_docs)


def test_mix_held_out_puts_known_test_questions_in_the_documents_and_no_unknown_ones():
    task = KnowledgeQATask(seed=0, mix_held_out=True)
    text = "\n".join(task.documents())
    assert all(p.prompt + p.solution() in text for p in task.problems("test_known"))
    assert not any(p.metadata["entity"] in text for p in task.problems("test_unknown"))
    assert not any(p.prompt in text for p in task.problems("sft") if not p.metadata["known"])
    plain = list(KnowledgeQATask(seed=0).documents())
    assert len(list(task.documents())) == len(plain) + task.size("test_known")


def test_v1_factory_keeps_the_wide_world_under_single_overrides():
    task = knowledge_qa_v1(abstain_fraction=0.5)
    assert task.abstain_fraction == 0.5 and task.mix_held_out
    assert (task.world.num_people, task.world.num_places) == (V1_WORLD["num_people"], V1_WORLD["num_places"])
    # RL (train) meets many more unknown entities than v0's six: the abstention rule has to generalise
    rl_unknown = {p.metadata["entity"] for p in task.problems("train") if not p.metadata["known"]}
    assert len(rl_unknown) >= 20
    assert knowledge_qa_v1(num_people=60).world.num_people == 60


def test_sft_and_train_split_the_unknown_training_entities():
    task = KnowledgeQATask(seed=0)
    train = {p.metadata["question_id"]: p for p in task.problems("train")}
    sft = {p.metadata["question_id"]: p for p in task.problems("sft")}
    known = {q for q, p in train.items() if p.metadata["known"]}
    assert known == {q for q, p in sft.items() if p.metadata["known"]} and known
    rl_unknown = {p.metadata["entity"] for p in train.values() if not p.metadata["known"]}
    sft_unknown = {p.metadata["entity"] for p in sft.values() if not p.metadata["known"]}
    assert rl_unknown and sft_unknown and not rl_unknown & sft_unknown  # whole entities, on each side
    assert rl_unknown | sft_unknown == {e.name for e in task.world.group("unknown_train")}
    every = KnowledgeQATask(seed=0, sft_unknown_fraction=1.0)
    assert {p.metadata["question_id"] for p in every.problems("sft")} == {
        p.metadata["question_id"] for p in every.problems("train")
    }


def test_sft_known_fraction_gives_rl_known_questions_sft_never_showed():
    task = KnowledgeQATask(seed=0, sft_known_fraction=0.5)
    known_ids = lambda split: {p.metadata["question_id"] for p in task.problems(split) if p.metadata["known"]}  # noqa: E731
    sft_known, rl_known = known_ids("sft"), known_ids("train")
    assert sft_known and rl_known and not sft_known & rl_known
    assert sft_known | rl_known == known_ids("train") | known_ids("sft")
    assert not (sft_known | rl_known) & known_ids("test_known")
    everything = KnowledgeQATask(seed=0)  # the default (v0, v1): SFT and RL share every known question
    assert sft_known | rl_known == {
        p.metadata["question_id"] for p in everything.problems("sft") if p.metadata["known"]
    }
    # pre-training still holds every known training question in QA form, whichever stage asks it
    assert list(task.documents()) == list(everything.documents())
    # the unknown side is untouched
    unknown_ids = lambda t, s: {p.metadata["question_id"] for p in t.problems(s) if not p.metadata["known"]}  # noqa: E731
    assert unknown_ids(task, "train") == unknown_ids(everything, "train")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sft_known_fraction": 1.5}, "sft_known_fraction must be a number in"),
        ({"sft_known_fraction": True}, "sft_known_fraction must be a number in"),
        ({"sft_known_fraction": 0.0, "sft_unknown_fraction": 0.0}, "sft split empty"),
    ],
)
def test_bad_sft_fractions_name_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KnowledgeQATask(seed=0, **kwargs)


def test_balance_train_alternates_known_and_unknown_questions_cycling_the_shorter_side():
    for world in ({"seed": 0}, V1_WORLD):  # v0's world has more known questions than unknown, v1's fewer
        plain, balanced = KnowledgeQATask(**world), KnowledgeQATask(**world, balance_train=True)
        known = [p.metadata["known"] for p in balanced.problems("train")]
        assert known[0::2] == [True] * (len(known) // 2) and known[1::2] == [False] * (len(known) // 2)
        ids = {
            k: [p.metadata["question_id"] for p in plain.problems("train") if p.metadata["known"] == k]
            for k in (True, False)
        }
        got = {
            k: [p.metadata["question_id"] for p in balanced.problems("train") if p.metadata["known"] == k]
            for k in (True, False)
        }
        longer = max((True, False), key=lambda k: len(ids[k]))
        assert got[longer] == ids[longer]  # the longer side once each, in the plain order
        assert got[not longer] == [ids[not longer][i % len(ids[not longer])] for i in range(len(ids[longer]))]
        assert list(balanced.documents()) == list(plain.documents())  # pre-training text is unchanged


def test_v2_keeps_v1s_known_side_and_gives_rl_hundreds_of_unknown_entities_each_met_about_once():
    v1, v2 = knowledge_qa_v1(), knowledge_qa_v2()
    assert len(v2.world.group("known")) == len(v1.world.group("known")) + 6 == 48
    rl_unknown = [p.metadata["entity"] for p in v2.problems("train") if not p.metadata["known"]]
    assert len(set(rl_unknown)) >= 400 and len(rl_unknown) <= 5 * len(set(rl_unknown))
    sft_unknown = {p.metadata["entity"] for p in v2.problems("sft") if not p.metadata["known"]}
    assert 15 <= len(sft_unknown) <= 40 and not sft_unknown & set(rl_unknown)
    test_unknown = {p.metadata["entity"] for p in v2.problems("test_unknown")}
    assert not test_unknown & (set(rl_unknown) | sft_unknown)
    assert not any(name in doc for doc in v2.documents() for name in list(test_unknown)[:20])


def test_v3_puts_the_answer_on_the_next_line_and_keeps_v2s_questions():
    v2, v3 = knowledge_qa_v2(abstain_fraction=0.5), knowledge_qa_v3(abstain_fraction=0.5)
    for split in ("train", "sft", "test"):
        assert v3.size(split) == v2.size(split)
        for i in range(0, v3.size(split), 97):
            p2, p3 = v2.problem(split, i), v3.problem(split, i)
            assert p3.prompt == p2.prompt + "\n" and p3.metadata == p2.metadata
            assert p3.steps == (p2.steps[0].removeprefix(" "),) and not p3.steps[0][0].isspace()
    abstain = next(p for p in v3.problems("sft") if p.metadata["gold"] == "abstain")
    assert abstain.steps == (v3.abstention,)
    docs3 = [d for d in v3.documents() if d.startswith("Question: ")]
    assert docs3 == [d.replace("\nAnswer: ", "\nAnswer:\n") for d in v2.documents() if d.startswith("Question: ")]


@pytest.mark.parametrize("factory", [knowledge_qa_v2, knowledge_qa_v3])
def test_documents_qa_pairs_tokenize_as_prompt_plus_answer(factory):
    """Pre-training's QA pairs must hold the very tokens the env shows and the policy emits."""
    from lm_envs.core.tokenizer import load_codec

    codec, task = load_codec(None), factory()
    # the documents' QA pairs are the known SFT questions and the held-out ones, with their answers
    by_text = {p.prompt + p.steps[0]: p for split in ("sft", "test_known") for p in task.problems(split)}
    pairs = [d for d in task.documents() if d.startswith("Question: ")]
    assert len(pairs) >= 100
    for doc in pairs:
        p = by_text[doc]
        assert codec.encode(doc) == codec.encode(p.prompt) + codec.encode(p.steps[0])
