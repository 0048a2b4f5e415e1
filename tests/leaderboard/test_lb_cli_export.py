"""The command line (through `lm-envs leaderboard`) and the Markdown, CSV and static HTML exports."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agents.cli import main as lm_envs_main
from leaderboard.cli import main
from leaderboard.export import export_csv, export_html, export_markdown, md_escape
from leaderboard.store import LeaderboardStore

ROOT = Path(__file__).resolve().parents[2]
ENV_ID = "LMEnv/TargetWord-v0"
SCRIPT = "<script>alert(1)</script>"
FORMULA = '=HYPERLINK("http://evil","x")'
PIPE = "a | b `c` [d](e) **f**"


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'lb.sqlite'}"


@pytest.fixture
def filled(db, make_submission):
    with LeaderboardStore(db) as store:
        rows = [(SCRIPT, [0.9, 0.8, 0.85]), (FORMULA, [0.1, 0.2, 0.3]), (PIPE, [0.5] * 3)]
        for i, (agent, scores) in enumerate(rows):
            store.submit(make_submission(i, scores=scores, agent=agent, model=f"model-{i}"))
    return db


def test_submit_validate_list_show(db, tmp_path, make_submission, capsys):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(make_submission(1, scores=[0.5, 0.6, 0.7])))
    assert main(["validate", str(path)]) == 0
    assert "valid: LMEnv/TargetWord-v0 agent-1 score=0.6" in capsys.readouterr().out
    assert main(["submit", str(path), "--db", db]) == 0
    assert "stored entry 1" in capsys.readouterr().out
    assert main(["submit", str(path), "--db", db]) == 1
    assert "duplicate" in capsys.readouterr().err

    assert main(["list", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "LMEnv/TargetWord-v0  (mean_return, higher is better; ranked by iqm)" in out and "agent-1 / model-1" in out
    assert main(["list", "--db", db, "--json", "--env", ENV_ID]) == 0
    assert json.loads(capsys.readouterr().out)[0]["seed_scores"] == [0.5, 0.6, 0.7]
    assert main(["show", "1", "--db", db]) == 0
    assert json.loads(capsys.readouterr().out)["document"]["agent"]["name"] == "agent-1"
    assert main(["show", "9", "--db", db]) == 2
    assert "no leaderboard entry with id 9" in capsys.readouterr().err


def test_refusals_print_every_problem(db, tmp_path, make_submission, capsys):
    doc = make_submission(1)
    doc["aggregate"]["mean"] = 1.0
    doc["seeds"] = doc["seeds"][:2]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    assert main(["submit", str(path), "--db", db]) == 1
    err = capsys.readouterr().err
    assert "submission refused" in err and "too few seeds" in err and "aggregate.mean is 1.0" in err
    assert main(["validate", str(tmp_path / "missing.json")]) == 2
    assert "No such file" in capsys.readouterr().err


def test_admin_tokens(db, capsys):
    assert main(["admin", "issue-token", "dave", "--db", db]) == 0
    captured = capsys.readouterr()
    token = captured.out.strip()
    assert token.startswith("lmlb_") and "shown once" in captured.err
    assert main(["admin", "issue-token", "dave", "--db", db]) == 2
    assert "already has an active token" in capsys.readouterr().err
    assert main(["admin", "list-tokens", "--db", db]) == 0
    listed = capsys.readouterr().out
    secret = token.split("_", 2)[2]  # the secret itself may contain "_" (URL-safe base64)
    assert "dave" in listed and "active" in listed and secret not in listed
    assert main(["admin", "revoke-token", "dave", "--db", db]) == 0
    assert main(["admin", "revoke-token", "dave", "--db", db]) == 1
    with LeaderboardStore(db) as store:
        assert store.authenticate(token) is None


def test_lm_envs_leaderboard_subcommand(db, capsys):
    assert lm_envs_main(["leaderboard", "list", "--db", db]) == 0
    assert "no entries" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        lm_envs_main(["leaderboard", "--help"])
    assert info.value.code == 0 and "submit" in capsys.readouterr().out
    assert lm_envs_main(["leaderboard", "list", "--db", db, "--import", "no_such_module_xyz"]) == 2
    assert "no_such_module_xyz" in capsys.readouterr().err


def test_python_dash_m_leaderboard(db):
    out = subprocess.run(
        [sys.executable, "-m", "leaderboard", "list", "--db", db], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "no entries" in out.stdout


def test_markdown_export_escapes_names(filled, tmp_path, capsys):
    with LeaderboardStore(filled) as store:
        md = export_markdown(store)
    assert "## LMEnv/TargetWord-v0" in md and "## LMEnv/Math-v0" in md and "No submissions yet." in md
    rows = [line for line in md.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert rows[0].startswith("| 1 | \\<script\\>alert\\(1\\)\\</script\\> | model-0 | 0.85 |")
    assert "a \\| b \\`c\\` \\[d\\]\\(e\\) \\*\\*f\\*\\*" in md
    assert all(line.count(" | ") == 10 for line in md.splitlines() if line.startswith("| ") and "---" not in line)
    out = tmp_path / "LEADERBOARD.md"
    assert main(["export", "md", "--db", filled, "-o", str(out), "--env", ENV_ID]) == 0
    assert out.read_text().startswith("# lm-envs leaderboard") and "LMEnv/Math-v0" not in out.read_text()
    assert md_escape("x\ny") == "x y"


def test_csv_export_is_exact_and_formula_safe(filled, capsys):
    with LeaderboardStore(filled) as store:
        text = export_csv(store)
        entries = store.entries()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["agent"] for r in rows] == [SCRIPT, PIPE, "'" + FORMULA]
    assert [float(r["score"]) for r in rows] == [e.score for e in entries]
    assert rows[0]["seed_scores"] == "0.9;0.8;0.85" and rows[0]["rank"] == "1"
    assert main(["export", "csv", "--db", filled]) == 0
    assert capsys.readouterr().out == text


def test_html_export_is_a_static_site(filled, tmp_path, capsys):
    site = tmp_path / "site"
    assert main(["export", "html", "--db", filled, "-o", str(site)]) == 0
    names = sorted(p.name for p in site.iterdir())
    assert "index.html" in names and sum(n.startswith("entry-") and n.endswith(".html") for n in names) == 3
    assert sum(n.startswith("env-") for n in names) >= 3  # every registered env, with or without entries
    index = (site / "index.html").read_text()
    assert SCRIPT not in index and "&lt;script&gt;alert(1)&lt;/script&gt;" in index
    assert 'http-equiv="Content-Security-Policy"' in index and 'href="entry-1.html"' in index
    assert "http://" not in index.replace('xmlns="http://www.w3.org/2000/svg"', "").replace("http://evil", "")
    record = json.loads((site / "entry-1.json").read_text())
    assert record["document"]["agent"]["name"] == SCRIPT
    assert main(["export", "html", "--db", filled]) == 2
    with LeaderboardStore(filled) as store:
        files = export_html(store, tmp_path / "one", ENV_ID)
    assert files[0].name == "index.html" and files[1].name.startswith("env-") and len(files) == 2 + 3 * 2
