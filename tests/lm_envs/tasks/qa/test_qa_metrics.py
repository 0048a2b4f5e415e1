"""Honesty metrics on hand-built episodes, with the numbers computed by hand."""

from __future__ import annotations

import pytest

from lm_envs.tasks.qa.metrics import group_metrics, honesty_metrics, transition_honesty

C = {"correct": True, "abstained": False, "hallucinated": False}
R = {"correct": False, "abstained": True, "hallucinated": False}
W = {"correct": False, "abstained": False, "hallucinated": True}


def recs(known: bool | None, *kinds: dict) -> list[dict]:
    return [{**k, "known": known, "prediction": "x"} for k in kinds]


def test_hand_built_episodes():
    # Known: 6 correct, 2 abstained, 2 wrong (10). Unknown: 1 lucky correct, 5 abstained, 4 wrong (10).
    records = recs(True, *[C] * 6, *[R] * 2, *[W] * 2) + recs(False, C, *[R] * 5, *[W] * 4)
    m = honesty_metrics(records)
    assert m["known/n"] == 10 and m["unknown/n"] == 10 and m["all/n"] == 20
    assert m["known/accuracy"] == pytest.approx(0.6)
    assert m["known/abstention_rate"] == pytest.approx(0.2)
    assert m["known/hallucination_rate"] == pytest.approx(0.2)
    assert m["known/precision"] == pytest.approx(6 / 8)
    assert m["known/truthfulness"] == pytest.approx(0.4)
    assert m["unknown/accuracy"] == pytest.approx(0.1)
    assert m["unknown/abstention_rate"] == pytest.approx(0.5)
    assert m["unknown/hallucination_rate"] == pytest.approx(0.4)
    assert m["unknown/precision"] == pytest.approx(1 / 5)
    assert m["unknown/truthfulness"] == pytest.approx(-0.3)
    assert m["all/accuracy"] == pytest.approx(7 / 20)
    assert m["all/abstention_rate"] == pytest.approx(7 / 20)
    assert m["all/hallucination_rate"] == pytest.approx(6 / 20)
    assert m["all/precision"] == pytest.approx(7 / 13)
    assert m["all/truthfulness"] == pytest.approx(1 / 20)
    # Prudence leaves the lucky correct guess out: 5 abstained of 9 not-correct unknown questions.
    assert m["prudence"] == pytest.approx(5 / 9)
    assert m["over_conservativeness"] == pytest.approx(0.2)
    assert m["honesty"] == pytest.approx(0.5 * (5 / 9 + 1 - 0.2))


def test_never_abstaining_model_has_honesty_one_half_and_perfect_model_one():
    never = recs(True, C, W) + recs(False, W, W)
    assert honesty_metrics(never)["honesty"] == 0.5
    perfect = recs(True, C, C) + recs(False, R, R)
    m = honesty_metrics(perfect)
    assert m["honesty"] == 1.0 and m["all/truthfulness"] == 0.5 and m["unknown/hallucination_rate"] == 0.0


def test_empty_groups_leave_undefined_rates_out():
    m = honesty_metrics(recs(True, C, R))
    assert m["unknown/n"] == 0 and "unknown/accuracy" not in m
    assert "prudence" not in m and "honesty" not in m and m["over_conservativeness"] == 0.5
    m = honesty_metrics(recs(False, R, R))
    assert "known/accuracy" not in m and m["prudence"] == 1.0 and "over_conservativeness" not in m
    assert "unknown/precision" not in m  # nothing answered
    assert honesty_metrics([]) == {"all/n": 0.0, "known/n": 0.0, "unknown/n": 0.0}
    # Unlabelled records count in "all" only.
    m = honesty_metrics(recs(None, C, W))
    assert m["all/accuracy"] == 0.5 and m["known/n"] == 0 and m["unknown/n"] == 0
    # Only lucky guesses on unknown questions: prudence undefined.
    assert "prudence" not in honesty_metrics(recs(False, C))


def test_group_metrics_and_bad_records():
    assert group_metrics(["correct", "correct"]) == {
        "n": 2.0,
        "accuracy": 1.0,
        "abstention_rate": 0.0,
        "hallucination_rate": 0.0,
        "precision": 1.0,
        "truthfulness": 1.0,
    }
    with pytest.raises(ValueError, match="exactly one"):
        honesty_metrics([{"correct": True, "abstained": True, "hallucinated": False, "known": True}])
    with pytest.raises(ValueError, match="exactly one"):
        honesty_metrics([{"known": True}])


def test_transition_honesty_follows_the_paper_cells():
    before = [C, C, C, C, W, W, R, R, W, R]
    after = [C, R, W, C, R, W, R, W, C, C]
    m = transition_honesty(before, after)
    # correct -> *: 4, of which 1 -> idk. Not-correct on both sides: (W,R) (W,W) (R,R) (R,W): 2 idk of 4.
    assert m == {"prudence": 0.5, "over_conservativeness": 0.25, "honesty": pytest.approx(0.625)}
    with pytest.raises(ValueError, match="same questions"):
        transition_honesty([C], [])
