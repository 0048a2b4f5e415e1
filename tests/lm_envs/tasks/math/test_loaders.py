"""Tests of the GSM8K and MATH JSONL loaders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lm_envs.tasks.math.generator as generator
from lm_envs.core.task import ListTask
from lm_envs.tasks.math.generator import render_prompt
from lm_envs.tasks.math.loaders import (
    DatasetFormatError,
    extract_boxed,
    load_gsm8k,
    load_hendrycks_math,
    load_math_task,
    split_sentences,
)
from lm_envs.tasks.math.steps import check_step, first_error

DATA = Path(generator.__file__).resolve().parents[3] / "tests" / "data"
GSM8K = DATA / "gsm8k_sample.jsonl"
MATH = DATA / "math_sample.jsonl"


def write_lines(tmp_path: Path, lines: list[str], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD_GSM8K = json.dumps({"question": "What is 2 + 3?", "answer": "2 + 3 = <<2+3=5>>5\n#### 5"})
GOOD_MATH = json.dumps(
    {"problem": "What is $2+3$?", "solution": "$2+3=\\boxed{5}$.", "level": "Level 1", "type": "Algebra"}
)


# ---------------------------------------------------------------------------------- GSM8K
def test_gsm8k_sample_round_trip() -> None:
    problems = load_gsm8k(GSM8K, split="train")
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()]
    assert len(problems) == len(rows) == 5
    for i, (p, row) in enumerate(zip(problems, rows, strict=True)):
        assert p.id == f"train/{i}"
        assert p.prompt == render_prompt(row["question"])
        assert p.steps[-1] == f"#### {p.answer}"
        assert row["answer"].splitlines()[-1].replace(",", "").endswith(p.answer)
        assert not any("<<" in s for s in p.steps)
        assert p.metadata["source"] == "gsm8k" and p.metadata["line"] == i + 1
        assert first_error(p.steps) is None
        assert all(check_step(s).verdict == "correct" for s in p.steps[:-1])
    assert problems[2].answer == "1200"  # "#### 1,200": thousands separator removed
    assert problems[0].steps[0] == "Lena bought 4 * 12 = 48 pencils."


def test_gsm8k_annotation_modes() -> None:
    kept = load_gsm8k(GSM8K, annotations="keep")[0].steps[0]
    assert kept == "Lena bought 4 * 12 = <<4*12=48>>48 pencils."
    claims = load_gsm8k(GSM8K, annotations="claims")
    assert claims[0].steps[:2] == ("4*12 = 48", "48-15 = 33")
    for p in claims:
        assert all(check_step(s).verdict == "correct" for s in p.steps[:-1])
    with pytest.raises(ValueError, match="annotations"):
        load_gsm8k(GSM8K, annotations="drop")  # type: ignore[arg-type]


def test_load_math_task_gsm8k() -> None:
    task = load_math_task(train=GSM8K, test=GSM8K)
    assert isinstance(task, ListTask)
    assert task.splits == ("train", "test") and task.name == "gsm8k"
    assert task.size("test") == 5
    assert task.problem("test", 1).id == "test/1"
    assert task.stops("#### 72") and task.stops("  #### 72") and not task.stops("48 / 2 = 24")
    only_test = load_math_task(test=str(GSM8K))
    assert only_test.splits == ("test",)


def test_load_math_task_errors() -> None:
    with pytest.raises(ValueError, match="at least one file"):
        load_math_task()
    with pytest.raises(ValueError, match="format"):
        load_math_task(train=GSM8K, format="csv")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"answer": "#### 5"}), "missing key 'question'"),
        (json.dumps({"question": "Q?"}), "missing key 'answer'"),
        (json.dumps({"question": 7, "answer": "#### 7"}), "'question' must be a str"),
        (json.dumps({"question": "Q?", "answer": ["#### 5"]}), "'answer' must be a str"),
        (json.dumps({"question": "  ", "answer": "#### 5"}), "'question' is empty"),
        (json.dumps({"question": "Q?", "answer": "2 + 3 = 5"}), "no final '#### <answer>' line"),
        (json.dumps({"question": "Q?", "answer": "#### 5\nmore text"}), "must be the last line"),
        (json.dumps({"question": "Q?", "answer": "1 = 1\n####   "}), "no answer after it"),
        (json.dumps({"question": "Q?", "answer": "#### 5", "id": 3}), "'id' must be a non-empty str"),
    ],
)
def test_gsm8k_malformed_lines(tmp_path: Path, bad_line: str, message: str) -> None:
    path = write_lines(tmp_path, [GOOD_GSM8K, "", GOOD_GSM8K, bad_line, GOOD_GSM8K])
    with pytest.raises(DatasetFormatError, match=message) as info:
        load_gsm8k(path)
    assert str(info.value).startswith(f"{path}:4: ")
    assert info.value.line == 4 and info.value.path == str(path)
    assert isinstance(info.value, ValueError)


def test_duplicate_ids(tmp_path: Path) -> None:
    row = json.dumps({"question": "Q?", "answer": "#### 5", "id": "a"})
    path = write_lines(tmp_path, [row, row])
    with pytest.raises(DatasetFormatError, match=r":2: duplicate problem id 'a'"):
        load_gsm8k(path)


def test_dataset_ids_are_used(tmp_path: Path) -> None:
    rows = [json.dumps({"question": "Q?", "answer": "#### 5", "id": f"gsm-{i}"}) for i in range(2)]
    assert [p.id for p in load_gsm8k(write_lines(tmp_path, rows))] == ["gsm-0", "gsm-1"]


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(DatasetFormatError, match="no records") as info:
        load_gsm8k(path)
    assert info.value.line is None
    with pytest.raises(DatasetFormatError, match="no records"):
        load_hendrycks_math(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="cannot read"):
        load_gsm8k(tmp_path / "nope.jsonl")


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(GOOD_GSM8K.encode() + b"\n\xff\xfe\n")
    with pytest.raises(DatasetFormatError, match=r":2: not valid UTF-8"):
        load_gsm8k(path)


# ---------------------------------------------------------------------------------- MATH
def test_math_sample_round_trip() -> None:
    problems = load_hendrycks_math(MATH, split="test")
    rows = [json.loads(line) for line in MATH.read_text().splitlines()]
    assert len(problems) == len(rows) == 5
    assert [p.answer for p in problems] == ["\\frac{5}{6}", "5", "50", "30", "25"]
    for i, (p, row) in enumerate(zip(problems, rows, strict=True)):
        assert p.id == f"test/{i}"
        assert p.prompt == render_prompt(row["problem"])
        assert p.metadata["level"] == row["level"] and p.metadata["type"] == row["type"]
        assert p.metadata["level_number"] == int(row["level"].split()[-1])
        assert " ".join(p.steps).replace(" ", "") == row["solution"].replace("\n", "").replace(" ", "")
        assert "\\boxed" in p.steps[-1]
        assert first_error(p.steps) is None
    assert problems[2].steps[:2] == (
        "Let the width be $w$.",
        "Then the length is $2w$, so the perimeter is $2(w + 2w) = 6w = 30$, and $w = 5$.",
    )


def test_load_math_task_math() -> None:
    task = load_math_task(train=MATH, test=MATH, format="math")
    assert task.name == "math" and task.size("train") == 5
    assert not task.stops("#### 5")  # MATH episodes end at EOS, not on a '####' line


def test_math500_style_records(tmp_path: Path) -> None:
    row = {
        "problem": "Compute $1+1$.",
        "solution": "We have $1+1=2$, so the answer is $\\boxed{2}$.",
        "answer": "2",
        "subject": "Prealgebra",
        "level": 1,
        "unique_id": "test/prealgebra/1.json",
    }
    (p,) = load_hendrycks_math(write_lines(tmp_path, [json.dumps(row)]))
    assert p.id == "test/prealgebra/1.json" and p.answer == "2"
    assert p.metadata["type"] == "Prealgebra" and p.metadata["level_number"] == 1


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"problem": ', "invalid JSON"),
        (json.dumps({"solution": "\\boxed{1}"}), "missing key 'problem'"),
        (json.dumps({"problem": "P"}), "missing key 'solution'"),
        (json.dumps({"problem": "P", "solution": 5}), "'solution' must be a str"),
        (json.dumps({"problem": "P", "solution": "s \\boxed{1}", "level": 2.5}), "'level' must be a str or int"),
        (json.dumps({"problem": "P", "solution": "s \\boxed{1}", "type": None}), "'type' must be a str"),
        (json.dumps({"problem": "P", "solution": "The answer is 5."}), "no \\\\boxed"),
        (json.dumps({"problem": "P", "solution": "So \\boxed{\\frac{1}{2}."}), "unbalanced braces"),
        (json.dumps({"problem": "P", "solution": "So \\boxed{ }."}), "empty"),
    ],
)
def test_math_malformed_lines(tmp_path: Path, bad_line: str, message: str) -> None:
    path = write_lines(tmp_path, [GOOD_MATH, bad_line], name="math.jsonl")
    with pytest.raises(DatasetFormatError, match=message) as info:
        load_hendrycks_math(path)
    assert str(info.value).startswith(f"{path}:2: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{5}", "5"),
        ("first \\boxed{1}, then \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\fbox{7}", "7"),
        ("so $\\boxed 9$.", "9"),
        ("\\boxed{(1,2)}", "(1,2)"),
        ("no box", None),
        ("\\boxed{1", None),
    ],
)
def test_extract_boxed(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


def test_split_sentences_respects_math() -> None:
    text = "Since $x = 2.5. Y$ holds, we get $$a. B$$ and \\[c. D\\]. Then e.g. the value. Done!"
    assert split_sentences(text) == [
        "Since $x = 2.5. Y$ holds, we get $$a. B$$ and \\[c. D\\].",
        "Then e.g. the value.",
        "Done!",
    ]
    assert split_sentences("a\n\n b \n") == ["a", "b"]
