"""Tests of answer normalisation, alias matching and abstention detection (true and false cases)."""

from __future__ import annotations

import pytest

from lm_envs.tasks.qa.matching import (
    ABSTENTION_PHRASES,
    AbstentionDetector,
    extract_prediction,
    is_abstention,
    is_correct,
    normalize_answer,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The Beatles", "beatles"),
        ("  an   Apple  ", "apple"),
        ("Velmora.", "velmora"),
        ("O'Brien", "obrien"),
        ("O\u2019Brien", "obrien"),
        ("twenty-one", "21"),
        ("Twenty One", "21"),
        ("one hundred and five", "105"),
        ("two thousand and twenty", "2020"),
        ("three million", "3000000"),
        ("1,000", "1000"),
        ("3.5", "3.5"),
        ("seven seas", "7 seas"),
        ("theatre", "theatre"),  # articles only as whole words
        ("", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    "prediction, answer, aliases",
    [
        ("Velmora", "Velmora", ()),
        (" velmora. ", "Velmora", ()),
        ("the city of Velmora", "Velmora", ("the city of Velmora",)),
        ("Venrik", "Ilo Venrik", ("Venrik",)),
        ("1843", "1843", ()),
        ("in 1843", "1843", ("in 1843",)),
        ("eighteen", "18", ()),
        ("18", "eighteen", ()),
        ("physician", "doctor", ("physician",)),
        ("A baker", "baker", ()),
    ],
)
def test_alias_match_true_cases(prediction, answer, aliases):
    assert is_correct(prediction, answer, aliases)


@pytest.mark.parametrize(
    "prediction, answer, aliases",
    [
        ("Velmoran", "Velmora", ()),
        ("Velmora or Tarsh", "Velmora", ()),  # no substring credit
        ("1844", "1843", ("in 1843",)),
        ("Ilo", "Ilo Venrik", ("Venrik",)),
        ("", "Velmora", ()),
        ("the", "Velmora", ()),  # normalises to nothing
        ("I don't know", "Velmora", ()),
    ],
)
def test_alias_match_false_cases(prediction, answer, aliases):
    assert not is_correct(prediction, answer, aliases)


@pytest.mark.parametrize(
    "text",
    [
        "I don't know.",
        "I dont know",
        "I DON\u2019T KNOW!",
        "i do not know",
        "Sorry, I'm not sure.",
        "I am not sure about that",
        "I cannot answer that question.",
        "I have no idea",
        "I don't know, maybe Velmora",  # a hedge with a guess abstains
        "Hmm. I can't say.",
    ],
)
def test_abstention_true_cases(text):
    assert is_abstention(text)


@pytest.mark.parametrize(
    "text",
    [
        "Velmora",
        "Knowles",
        "I know: Velmora",
        "Noah Idea",  # "no idea" only as whole words: "noah" is not "no"
        "Surely Velmora",
        "",
        "not surely",
    ],
)
def test_abstention_false_cases(text):
    assert not is_abstention(text)


def test_phrase_set_is_configurable_and_validated():
    custom = AbstentionDetector(["pass"])
    assert custom("I pass.") and not custom("I don't know")
    assert is_abstention("no comment", ["No comment"])
    assert all(is_abstention(p) for p in ABSTENTION_PHRASES)
    with pytest.raises(ValueError, match="empty"):
        AbstentionDetector([])
    with pytest.raises(ValueError, match="empty after normalisation"):
        AbstentionDetector(["?!"])
    with pytest.raises(TypeError, match="list of strings"):
        AbstentionDetector("I don't know")


@pytest.mark.parametrize(
    "completion, expected",
    [(" Velmora\n", "Velmora"), ("\n\n  1843  \nmore", "1843"), ("Answer: Tarsh", "Tarsh"), ("", ""), ("  \n ", "")],
)
def test_extract_prediction(completion, expected):
    assert extract_prediction(completion) == expected
