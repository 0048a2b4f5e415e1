"""The public answer-equivalence suite (tests/data/math_equivalence_suite.json) under its harness.

No false positive anywhere; agreement on every case except the documented misses below.
``bench/bench_grading.py`` reports the same figures side by side with Math-Verify.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lm_envs.tasks.math.grading import extract_answer, grade

SUITE = json.loads((Path(__file__).resolve().parents[4] / "data" / "math_equivalence_suite.json").read_text())
CASES = SUITE["cases"]

# Equivalent pairs the grader does not recognise (false negatives), and why.
KNOWN_MISSES = {
    7: "prose around a bare number, no math delimiters, graded as a short answer ('Soucis : 2,74 $ a..')",
    35: "an equation between numbers is not reduced to its last side ('2 + 3 = 5' is not the answer 5)",
    62: "a box that spans math delimiters (\\boxed{12 $ and $13 })",
    184: "boxes separated by '++++++' are not one answer",
    211: "an unclosed, doubly escaped box in the gold",
    252: "\\sum is not supported",
}


TIMEOUT = 10.0  # coverage, not speed: a loaded test machine must not turn a verdict into a timeout


def ours(case: dict) -> bool:
    """The suite's harness (its "harness" field)."""
    if case["kind"] == "short":
        return grade(case["gold"], case["pred"], timeout=TIMEOUT).equivalent
    gold = extract_answer(case["gold"], fallback_last_math=True)
    pred = extract_answer(case["pred"], fallback_last_math=True, fallback_last_number=True)
    return grade(case["gold"] if gold is None else gold, pred, timeout=TIMEOUT).equivalent


def test_suite_records_its_provenance() -> None:
    assert {source["name"] for source in SUITE["sources"]} >= {"math-verify", "hendrycks-math", "lm-eval-harness"}
    for source in SUITE["sources"]:
        assert source["repo"] and len(source["commit"]) == 40 and source["license"] and source["paths"]
    kinds = {case["kind"] for case in CASES}
    assert kinds == {"short", "extract"}
    assert [case["id"] for case in CASES] == list(range(len(CASES)))
    assert all(("source_label" in case) == ("note" in case) for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[f"{c['id']}-{c['kind']}" for c in CASES])
def test_suite_case(case: dict) -> None:
    verdict = ours(case)
    if case["equivalent"]:
        if case["id"] in KNOWN_MISSES:
            assert not verdict, f"case {case['id']} now passes: remove it from KNOWN_MISSES"
        else:
            assert verdict, (case["id"], case["gold"][-200:], case["pred"][-200:])
    else:
        assert not verdict, f"false positive on case {case['id']}: {case['gold'][-200:]!r} vs {case['pred'][-200:]!r}"
