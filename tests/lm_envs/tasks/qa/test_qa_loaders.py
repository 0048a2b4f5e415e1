"""Tests of the TriviaQA-style and SimpleQA-style JSONL loaders: records, and file:line errors."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest

from lm_envs.tasks.qa.loaders import DatasetFormatError, QAListTask, load_qa_task, load_simpleqa, load_triviaqa
from lm_envs.tasks.qa.world import PROMPT_TEMPLATE


def write(tmp_path: Path, rows: list, name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_triviaqa_records_in_every_accepted_shape(tmp_path):
    path = write(
        tmp_path,
        [
            {"question": "Which planet is red?", "answer": {"value": "Mars", "aliases": ["The Red Planet", "Mars"]}},
            {"Question": "Capital of France?", "Answer": {"Value": "Paris", "Aliases": []}, "QuestionId": "tc_1"},
            "",
            {"question": "How many legs has a spider?", "answer": "8", "aliases": ["eight"], "known": True},
        ],
    )
    ps = load_triviaqa(path, split="test")
    assert [p.id for p in ps] == ["test/0", "tc_1", "test/2"]
    assert ps[0].prompt == PROMPT_TEMPLATE.format(question="Which planet is red?")
    assert ps[0].metadata["aliases"] == ["The Red Planet"] and ps[0].steps == (" Mars",)
    assert ps[2].metadata["known"] is True and ps[0].metadata["known"] is None
    assert ps[2].metadata["line"] == 4 and ps[2].metadata["source"] == "triviaqa"


def test_simpleqa_records(tmp_path):
    path = write(tmp_path, [{"problem": "Who wrote Hamlet?", "answer": "William Shakespeare", "id": 7}])
    (p,) = load_simpleqa(path)
    assert (p.id, p.answer, p.metadata["aliases"], p.metadata["source"]) == ("7", "William Shakespeare", [], "simpleqa")


def test_loaded_task_plugs_into_the_env(tmp_path):
    train = write(tmp_path, [{"problem": "2+2?", "answer": "4"}], "train.jsonl")
    test = write(tmp_path, [{"problem": "Sky colour?", "answer": "blue", "aliases": ["light blue"]}], "test.jsonl")
    task = load_qa_task(train=train, test=test, format="simpleqa")
    assert isinstance(task, QAListTask) and task.stops(" blue") and task.size("test") == 1
    env = gym.make(
        "LMEnv/KnowledgeQA-v0",
        task="lm_envs.tasks.qa.loaders:load_qa_task",
        task_kwargs={"train": str(train), "test": str(test), "format": "simpleqa"},
    )
    _, info = env.reset(options={"split": "test", "index": 0})
    assert info["prompt"] == PROMPT_TEMPLATE.format(question="Sky colour?")


@pytest.mark.parametrize(
    "rows, line, message",
    [
        (['{"question": "q", "answer": "a"}', "{not json"], 2, "invalid JSON"),
        (['{"question": "q", "answer": "a"}', "[1, 2]"], 2, "expected a JSON object"),
        (['{"answer": "a"}'], 1, "missing question key"),
        (['{"question": "q"}'], 1, "missing answer key"),
        (['{"question": "  ", "answer": "a"}'], 1, "key 'question' is empty"),
        (['{"question": "q", "answer": 5}'], 1, "must be a str or an object"),
        (['{"question": "q", "answer": {"aliases": []}}'], 1, "missing 'answer.value' key"),
        (['{"question": "q", "answer": {"value": "a", "aliases": "b"}}'], 1, "must be a list of str"),
        (['{"question": "q", "answer": "a", "known": "yes"}'], 1, "'known' must be true or false"),
        (['{"question": "q", "answer": "a", "id": "x"}', "", '{"question": "r", "answer": "b", "id": "x"}'], 3, "dup"),
    ],
)
def test_malformed_triviaqa_lines_fail_with_file_and_line(tmp_path, rows, line, message):
    path = write(tmp_path, rows)
    with pytest.raises(DatasetFormatError) as err:
        load_triviaqa(path)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert message in str(err.value)
    assert err.value.line == line and err.value.path == str(path)


@pytest.mark.parametrize(
    "rows, line, message",
    [
        (['{"problem": "q", "answer": ""}'], 1, "key 'answer' is empty"),
        (['{"problem": "q", "answer": "a"}', '{"question": "q", "answer": "a"}'], 2, "missing problem key"),
        (['{"problem": "q", "answer": "a", "aliases": [1]}'], 1, "must be a list of str"),
        (['{"problem": "q", "answer": "a", "id": true}'], 1, "non-empty str or an int"),
    ],
)
def test_malformed_simpleqa_lines_fail_with_file_and_line(tmp_path, rows, line, message):
    path = write(tmp_path, rows)
    with pytest.raises(DatasetFormatError, match=message) as err:
        load_simpleqa(path)
    assert str(err.value).startswith(f"{path}:{line}: ")


def test_whole_file_errors(tmp_path):
    empty = write(tmp_path, ["", "  "])
    with pytest.raises(DatasetFormatError, match="no records") as err:
        load_triviaqa(empty)
    assert err.value.line is None
    with pytest.raises(DatasetFormatError, match="cannot read"):
        load_simpleqa(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"problem": "q", "answer": "a"}\n\xff\xfe\n')
    with pytest.raises(DatasetFormatError, match="not valid UTF-8") as err:
        load_simpleqa(bad)
    assert err.value.line == 2
    with pytest.raises(ValueError, match="at least one file"):
        load_qa_task()
    with pytest.raises(ValueError, match="format must be"):
        load_qa_task(train=empty, format="squad")
