"""Tests of the procedural arithmetic word-problem generator."""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import subprocess
import sys
import warnings
from collections import Counter
from fractions import Fraction
from functools import partial
from pathlib import Path

import gymnasium as gym
import pytest

import lm_envs  # noqa: F401 - registers the env ids
import lm_envs.tasks.math.generator as generator
from lm_envs.core.problem import Problem
from lm_envs.tasks.math import word_problems
from lm_envs.tasks.math.generator import (
    MAX_STEPS,
    PRESETS,
    TEMPLATES,
    ArithmeticWordProblems,
    render_prompt,
)
from lm_envs.tasks.math.steps import check_step, evaluate

REPO_ROOT = Path(generator.__file__).resolve().parents[3]

CONFIGS = {
    "easy": {"preset": "easy"},
    "medium": {"preset": "medium"},
    "hard": {"preset": "hard"},
    "default": {},
    "fractions": {"fractions": True, "max_steps": 4},
    "decimals": {"decimals": True, "max_steps": 4},
    "long": {"min_steps": 5, "max_steps": MAX_STEPS, "max_value": 1000},
    "plus_only": {"operations": "+", "max_value": 20, "distinct_test": False},
    "divide_only": {"operations": ["/"], "max_steps": 2, "max_value": 50, "distinct_test": False},
}


def make(config: dict, **overrides: object) -> ArithmeticWordProblems:
    config = {**config, **overrides}
    preset = config.pop("preset", None)
    if preset is not None:
        return ArithmeticWordProblems.from_preset(preset, **config)
    return ArithmeticWordProblems(**config)


def _fingerprint(p: Problem) -> tuple:
    return (p.id, p.prompt, p.answer, p.steps, json.dumps(dict(p.metadata), sort_keys=True))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_gold_steps_verify_and_answer_matches(name: str) -> None:
    task = make(CONFIGS[name])
    for split, count in (("train", 300), ("test", 60)):
        for i in range(count):
            p = task.problem(split, i)
            assert p.id == f"{split}/{i}"
            assert p.prompt == render_prompt(p.prompt[: -len("\nSolution:\n")])
            assert p.prompt.endswith("\nSolution:\n")
            *work, final = p.steps
            assert final == f"#### {p.answer}"
            assert task.stops(final) and not any(task.stops(s) for s in work)
            assert task.min_steps <= len(work) == p.metadata["n_steps"] <= task.max_steps
            for step in work:
                result = check_step(step)
                assert result.verdict == "correct", (p.prompt, step, result)
            last_value = evaluate(work[-1].rsplit("=", 1)[1])
            assert last_value == evaluate(p.answer), (p.steps, p.answer)
            value = Fraction(evaluate(p.answer))
            assert 0 <= value <= task.max_value
            if not (task.fractions or task.decimals):
                assert value.denominator == 1, p
            assert set(p.metadata["operations"]) <= set(task.operations)
            assert p.metadata["template"] in task.templates


def test_canonical_answers() -> None:
    answers = {make({"fractions": True}).problem("train", i).answer for i in range(400)}
    assert any("/" in a for a in answers)
    assert all("." not in a for a in answers)
    decimal_answers = {make({"decimals": True}).problem("train", i).answer for i in range(400)}
    assert any("." in a for a in decimal_answers)
    assert all(not a.endswith("0") or "." not in a for a in decimal_answers)  # no trailing zeros


def test_deterministic_within_process() -> None:
    a, b = ArithmeticWordProblems(seed=3), ArithmeticWordProblems(seed=3)
    for split in ("train", "test"):
        for i in (0, 1, 17, 499):
            assert _fingerprint(a.problem(split, i)) == _fingerprint(a.problem(split, i))
            assert _fingerprint(a.problem(split, i)) == _fingerprint(b.problem(split, i))
    # random access: the same problem whatever was asked before
    assert a.problem("train", 10**8) == ArithmeticWordProblems(seed=3).problem("train", 10**8)


def test_seeds_change_train_but_not_test() -> None:
    a, b = ArithmeticWordProblems(seed=0), ArithmeticWordProblems(seed=1)
    train_a = [a.problem("train", i).prompt for i in range(20)]
    train_b = [b.problem("train", i).prompt for i in range(20)]
    assert train_a != train_b
    assert [a.problem("test", i) for i in range(20)] == [b.problem("test", i) for i in range(20)]
    c = ArithmeticWordProblems(seed=0, test_seed=1)
    assert [a.problem("test", i).prompt for i in range(20)] != [c.problem("test", i).prompt for i in range(20)]


def test_deterministic_across_processes() -> None:
    indices = [0, 1, 2, 50, 999, 123456]
    code = (
        "import json, sys\n"
        "from lm_envs.tasks.math.generator import ArithmeticWordProblems\n"
        "t = ArithmeticWordProblems.from_preset('medium', seed=7)\n"
        f"out = [[p.prompt, p.answer, list(p.steps)] for p in (t.problem(s, i) for s in ('train', 'test') "
        f"for i in {indices!r} if i < t.size(s))]\n"
        "json.dump(out, sys.stdout)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO_ROOT, check=True
    )
    task = ArithmeticWordProblems.from_preset("medium", seed=7)
    here = [
        [p.prompt, p.answer, list(p.steps)]
        for p in (task.problem(s, i) for s in ("train", "test") for i in indices if i < task.size(s))
    ]
    assert json.loads(result.stdout) == here


@pytest.mark.parametrize("name", ["easy", "default", "plus_only"])
def test_train_and_test_never_overlap(name: str) -> None:
    task = make(CONFIGS[name], test_size=500)
    test = [task.problem("test", i) for i in range(task.size("test"))]
    train = [task.problem("train", i) for i in range(4000)]
    # another training seed draws from the same partition of the key space
    train += [make(CONFIGS[name], seed=99).problem("train", i) for i in range(1000)]
    test_keys = {p.metadata["key"] for p in test}
    train_keys = {p.metadata["key"] for p in train}
    assert not test_keys & train_keys
    assert not {p.prompt for p in test} & {p.prompt for p in train}
    assert all(generator._in_test(k) for k in test_keys)
    assert not any(generator._in_test(k) for k in train_keys)
    assert len(test_keys) > 100  # the held-out set is not a handful of repeats


def test_keys_ignore_names_and_wording() -> None:
    task = ArithmeticWordProblems()
    key = task.problem("train", 0).metadata["key"]
    template, _, numbers = key.partition(":")
    assert "/" in template and template.split("/")[0] in TEMPLATES
    assert not any(c.isalpha() for c in numbers.replace("x", ""))  # numbers and operators only


def test_variety() -> None:
    task = ArithmeticWordProblems(max_steps=4)
    problems = [task.problem("train", i) for i in range(600)]
    assert {p.metadata["template"] for p in problems} == set(TEMPLATES)
    assert len({p.metadata["variant"] for p in problems}) >= 25
    assert len({p.prompt for p in problems}) >= 0.97 * len(problems)  # short variants may repeat
    assert {p.metadata["n_steps"] for p in problems} == {1, 2, 3, 4}


def test_easy_preset_is_small() -> None:
    task = ArithmeticWordProblems.from_preset("easy")
    assert PRESETS["easy"]["max_value"] < 100
    for i in range(300):
        p = task.problem("train", i)
        assert 1 <= p.metadata["n_steps"] <= 2
        numbers = [evaluate(tok) for step in p.steps[:-1] for tok in step.replace("=", " ").split() if tok[0].isdigit()]
        assert all(0 <= n < 100 for n in numbers), p.steps
        assert set(p.metadata["operations"]) <= {"+", "-", "*"}


def test_template_subset() -> None:
    task = ArithmeticWordProblems(templates=["shopping"], min_steps=1, max_steps=6)
    assert {task.problem("train", i).metadata["template"] for i in range(50)} == {"shopping"}
    assert ArithmeticWordProblems(templates="ages, equation").templates == ("ages", "equation")


def test_sizes_splits_and_indices() -> None:
    task = ArithmeticWordProblems(test_size=7)
    assert task.size("test") == 7 and task.size("train") == 10**9
    with pytest.raises(ValueError, match="out of range"):
        task.problem("test", 7)
    with pytest.raises(ValueError, match="no split"):
        task.problem("validation", 0)
    with pytest.raises(ValueError):
        task.problem("train", -1)


def test_corpus_covers_templates() -> None:
    task = ArithmeticWordProblems.from_preset("easy")
    texts = list(task.corpus())
    assert len(texts) == 4000
    joined = "\n".join(texts)
    assert "####" in joined and "Solution:" in joined


def test_pickle_round_trip() -> None:
    task = ArithmeticWordProblems.from_preset("medium", seed=5)
    clone = pickle.loads(pickle.dumps(task))
    assert clone.problem("train", 3) == task.problem("train", 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_steps": 0}, "min_steps"),
        ({"min_steps": 3, "max_steps": 2}, "min_steps"),
        ({"max_steps": MAX_STEPS + 1}, "max_steps"),
        ({"max_value": 5}, "max_value"),
        ({"max_value": 10**7}, "max_value"),
        ({"min_value": 50, "max_value": 100}, "min_value"),
        ({"min_value": -1}, "min_value"),
        ({"operations": []}, "operations"),
        ({"operations": ["+", "^"]}, "operations"),
        ({"templates": ["poetry"]}, "templates"),
        ({"templates": []}, "templates"),
        ({"test_size": 0}, "test_size"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"max_steps": True}, "max_steps"),
        ({"fractions": "yes"}, "fractions"),
        ({"templates": ["percent"], "operations": ["+", "-"]}, "no enabled template"),
        ({"templates": ["equation"], "min_steps": 4, "max_steps": 4}, "no enabled template"),
    ],
)
def test_knobs_are_validated(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ArithmeticWordProblems(**kwargs)


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match="preset"):
        ArithmeticWordProblems.from_preset("impossible")


def test_infeasible_range_fails_early() -> None:
    with pytest.raises(ValueError, match="could not generate"):
        ArithmeticWordProblems(operations="/", templates=["inventory"], min_steps=8, max_steps=8, max_value=10)


def test_distinct_test_split_has_no_repeats_and_keeps_each_index_stream() -> None:
    distinct = ArithmeticWordProblems.from_preset("easy")
    repeats = ArithmeticWordProblems.from_preset("easy", distinct_test=False)  # LMEnv/Math-v0's test split
    keys = [distinct.problem("test", i).metadata["key"] for i in range(500)]
    old = [repeats.problem("test", i).metadata["key"] for i in range(500)]
    assert len(set(keys)) == 500 and len(set(old)) < 500
    # each index draws from its own stream as before; only a repeat of an earlier key is redrawn
    first_repeat = next(i for i, k in enumerate(old) if k in old[:i])
    assert keys[:first_repeat] == old[:first_repeat] and keys[first_repeat] != old[first_repeat]
    assert distinct.problem("test", 7) == ArithmeticWordProblems.from_preset("easy").problem("test", 7)


def test_a_key_space_too_small_for_a_distinct_test_split_names_the_fix() -> None:
    task = ArithmeticWordProblems(operations=["/"], max_steps=2, max_value=50)
    with pytest.raises(RuntimeError, match="distinct_test=False"):
        task.problem("test", 499)


def test_basic_preset_has_300_distinct_test_problems_in_range() -> None:
    task = ArithmeticWordProblems.from_preset("basic")
    test = [task.problem("test", i) for i in range(task.size("test"))]
    assert len(test) == 300 and len({p.metadata["key"] for p in test}) == 300
    numbers = [evaluate(tok) for p in test for step in p.steps[:-1] for tok in step.split() if tok[0].isdigit()]
    assert all(0 <= n <= 20 for n in numbers)


def test_documents_are_every_true_fact_of_the_range_in_a_fixed_order() -> None:
    task = ArithmeticWordProblems(max_value=12, operations="+-*/")
    lines = [line for doc in task.documents() for line in doc.splitlines()]
    assert lines == [
        line for doc in ArithmeticWordProblems(max_value=12, operations="+-*/").documents() for line in doc.splitlines()
    ]
    assert len(lines) == len(set(lines))
    for line in lines:
        claim = check_step(line)
        assert claim.verdict == "correct", (line, claim)
    ops = {line.split()[1] for line in lines}
    assert ops == {"+", "-", "*", "/"} and "12 / 4 = 3" in lines and "7 / 2 = 3" not in lines


def _split_digest(task: ArithmeticWordProblems, split: str, n: int) -> str:
    h = hashlib.sha256()
    for i in range(n):
        p = task.problem(split, i)
        h.update(json.dumps([p.prompt, p.answer, list(p.steps), p.metadata["key"]]).encode())
    return h.hexdigest()[:16]


def test_default_splits_are_unchanged_by_the_stratified_test_knob() -> None:
    # Values computed by the generator before stratified_test existed: LMEnv/Math-v0's splits, the distinct
    # easy split and the recorded SmolLM2 (v0 split) experiment's task must not move.
    v0 = ArithmeticWordProblems.from_preset("easy", distinct_test=False)
    assert [v0.problem("test", i).metadata["key"] for i in range(5)] == [
        "equation/add:21,98",
        "area/cost:4,3,6",
        "equation/add:12,64",
        "inventory/chain1:99,-,49",
        "travel/left:46,9,5",
    ]
    assert _split_digest(v0, "test", 500) == "bf7fe7cebb32e259"
    assert _split_digest(v0, "train", 200) == "5362022511dddec1"
    assert _split_digest(ArithmeticWordProblems.from_preset("easy"), "test", 100) == "c138774b15b14c81"
    smol = ArithmeticWordProblems.from_preset(
        "basic", max_steps=1, templates=["inventory", "shopping", "travel", "area"], distinct_test=False
    )
    assert _split_digest(smol, "test", 300) == "c57e02e94c5d67ab"


def _cells(task: ArithmeticWordProblems, split: str, n: int) -> Counter:
    return Counter((p.metadata["n_steps"], p.metadata["template"]) for p in map(partial(task.problem, split), range(n)))


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # LMEnv/Math-v1's task
        {"max_steps": 1, "max_value": 150, "templates": ["inventory", "shopping", "travel", "area"]},  # math_smollm2
    ],
    ids=["easy", "smollm2"],
)
def test_stratified_test_split_has_the_train_mix(overrides: dict) -> None:
    n = 2000
    task = ArithmeticWordProblems.from_preset(
        "easy", distinct_test=False, stratified_test=True, test_size=n, **overrides
    )
    train, test = _cells(task, "train", n), _cells(task, "test", n)
    old = _cells(ArithmeticWordProblems.from_preset("easy", distinct_test=False, test_size=n, **overrides), "test", n)

    def worst(a: Counter, b: Counter) -> float:  # largest gap in sampling standard errors of the difference
        gaps = []
        for cell in set(a) | set(b):
            p = (a[cell] + b[cell]) / (2 * n)
            gaps.append(abs(a[cell] - b[cell]) / n / math.sqrt(2 * p * (1 - p) / n))
        return max(gaps)

    assert set(test) == set(train)
    assert worst(train, test) < 3.5
    assert worst(train, old) > 5  # the whole-draw split does not have train's mix (the check can fail)


def test_stratified_test_never_shares_a_key_with_train_and_is_deterministic() -> None:
    task = ArithmeticWordProblems.from_preset("easy", distinct_test=False, stratified_test=True)
    other = ArithmeticWordProblems.from_preset("easy", distinct_test=False, stratified_test=True, seed=5)
    test = [task.problem("test", i) for i in range(500)]
    test_keys = {p.metadata["key"] for p in test}
    train_keys = {p.metadata["key"] for s in (task, other) for p in map(partial(s.problem, "train"), range(2000))}
    assert all(generator._in_test(k) for k in test_keys) and not any(generator._in_test(k) for k in train_keys)
    assert not test_keys & train_keys and len(test_keys) > 200
    # the same test split whatever the training seed, problem by problem, in any order
    assert [other.problem("test", i) for i in reversed(range(500))] == test[::-1]
    # the train split does not depend on the knob
    plain = ArithmeticWordProblems.from_preset("easy", distinct_test=False)
    assert [plain.problem("train", i) for i in range(50)] == [task.problem("train", i) for i in range(50)]
    # gold steps still check out
    for p in test[:100]:
        assert all(check_step(step).verdict == "correct" for step in p.steps[:-1])


def test_stratified_distinct_test_split_is_distinct() -> None:
    task = ArithmeticWordProblems.from_preset("medium", stratified_test=True, test_size=200)
    keys = [task.problem("test", i).metadata["key"] for i in range(200)]
    assert len(set(keys)) == 200 and all(generator._in_test(k) for k in keys)


def test_a_variant_without_test_keys_fails_at_construction_naming_the_fix() -> None:
    smol_v0 = {"max_steps": 1, "templates": ["inventory", "shopping", "travel", "area"], "distinct_test": False}
    with pytest.raises(
        ValueError, match=r"1-step variant (travel/distance|area/area).*widen max_value.*stratified_test"
    ):
        word_problems("basic", stratified_test=True, **smol_v0)
    word_problems("basic", **smol_v0)  # the whole-draw split still builds (and has no travel or area problem)
    with pytest.raises(ValueError, match="stratified_test must be a bool"):
        ArithmeticWordProblems(stratified_test="yes")  # type: ignore[arg-type]


def test_a_stratified_variant_whose_test_keys_are_used_up_names_the_fix() -> None:
    task = ArithmeticWordProblems.from_preset("easy", max_steps=1, templates=["travel"], stratified_test=True)
    with pytest.raises(RuntimeError, match="travel/distance test problem.*used up.*distinct_test=False"):
        task.problem("test", 30)  # one-step travel has 4 test keys at max_value 99


def test_math_v1_is_math_v0_with_the_stratified_test_split() -> None:
    v0_spec, v1_spec = gym.spec("LMEnv/Math-v0"), gym.spec("LMEnv/Math-v1")
    same = {k: v for k, v in v0_spec.kwargs.items() if k != "task"}
    assert {k: v for k, v in v1_spec.kwargs.items() if k != "task"} == same  # reward, budgets, protocol, kwargs
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is out of date", category=DeprecationWarning)
        v0 = gym.make("LMEnv/Math-v0").unwrapped.task
    v1 = gym.make("LMEnv/Math-v1").unwrapped.task
    assert v1.stratified_test and not v1.distinct_test and v1.config() == v0.config() and v1.size("test") == 500
    assert [v1.problem("train", i) for i in range(20)] == [v0.problem("train", i) for i in range(20)]
    assert v1.problem("test", 0) != v0.problem("test", 0)
    assert [v1.problem("test", i).metadata["key"] for i in range(5)] == [  # Math-v1's split, as released
        "area/area:11,2",
        "travel/distance:23,4",
        "area/perimeter:25,23",
        "travel/left:77,24,2",
        "travel/distance:7,8",
    ]
    # task_kwargs given to gym.make replace the registered ones; the split stays stratified
    custom = gym.make("LMEnv/Math-v1", task_kwargs={"preset": "easy", "max_steps": 1}).unwrapped.task
    assert custom.stratified_test and custom.max_steps == 1
