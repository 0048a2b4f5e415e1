"""The claim drivers' contract: result JSON schema, CIs, the README table rebuild, and a quick end-to-end run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # experiments/ is a top-level package of the repository, not of the wheel
    sys.path.insert(0, str(ROOT))

from experiments import common, run_all  # noqa: E402


def result(name: str = "reverse_curriculum", verdict: str = "held") -> dict:
    return {
        "claim": name,
        "paper": "Someone et al. 2024",
        "setting": {},
        "seeds": [0, 1, 2],
        "arms": {"a": common.arm("accuracy", [0.1, 0.2, 0.3]), "b": common.arm("accuracy", [0.5, 0.5, 0.5])},
        "headline": ["b"],
        "verdict": verdict,
        "summary": "b beats a.",
        "wall_s_per_seed": 1.0,
    }


def test_ci95_is_the_student_t_interval_over_seeds():
    mean, lo, hi = common.ci95([0.1, 0.2, 0.3])
    assert mean == pytest.approx(0.2) and hi - mean == pytest.approx(4.303 * 0.1 / 3**0.5, rel=1e-4)
    assert common.ci95([0.4]) == (0.4, 0.4, 0.4)
    assert common.ci95([0.5, 0.5]) == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="non-finite"):
        common.ci95([0.1, float("nan")])


def test_check_result_names_the_field_that_breaks_the_schema():
    common.check_result(result())
    for broken, field in (
        ({**result(), "verdict": "maybe"}, "verdict"),
        ({k: v for k, v in result().items() if k != "summary"}, "summary"),
        ({**result(), "seeds": [0, 1]}, "per-seed"),
    ):
        with pytest.raises(ValueError, match=field):
            common.check_result(broken)


def test_table_only_rebuilds_between_the_markers_and_lists_missing_claims_as_pending(tmp_path):
    common.write_result(result(), tmp_path, plot=False)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\nbefore\n{common.TABLE_START}\nold table\n{common.TABLE_END}\nafter\n")
    assert run_all.main(["--table-only", "--out", str(tmp_path), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# x\nbefore\n") and text.endswith("after\n")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == list(run_all.CLAIMS)
    row = next(r for r in rows if "`reverse_curriculum`" in r)
    assert "**held**" in row and "b: 0.500 [0.500, 0.500]" in row and "a:" not in row  # headline arms only
    assert all("**pending**" in r for r in rows if "`reverse_curriculum`" not in r)
    assert run_all.main(["--table-only", "--out", str(tmp_path), "--readme", str(readme)]) == 0
    assert readme.read_text() == text  # idempotent


def test_run_all_refuses_a_readme_without_markers_and_an_unknown_claim(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    assert run_all.main(["--table-only", "--out", str(tmp_path), "--readme", str(readme)]) == 2
    assert common.TABLE_START in capsys.readouterr().err and readme.read_text() == "# no markers\n"
    assert run_all.main(["--only", "nonsense", "--out", str(tmp_path), "--readme", str(readme)]) == 2
    assert "unknown claim 'nonsense'" in capsys.readouterr().err


def test_the_committed_results_follow_the_contract():
    for path in sorted((ROOT / "experiments" / "results").glob("*.json")):
        doc = json.loads(path.read_text())
        common.check_result(doc)
        assert doc["claim"] == path.stem and doc["claim"] in run_all.CLAIMS


def test_quick_reverse_curriculum_writes_the_json_and_png_and_the_table_row(tmp_path):
    out = tmp_path / "results"
    readme = tmp_path / "README.md"
    readme.write_text(f"{common.TABLE_START}\n{common.TABLE_END}\n")
    code = run_all.main(
        ["--only", "reverse_curriculum", "--quick", "--seeds", "0", "--out", str(out), "--readme", str(readme)]
    )
    assert code == 0
    doc = json.loads((out / "reverse_curriculum.json").read_text())
    common.check_result(doc)
    assert set(doc["arms"]) >= {"start", "plain", "r3_mixed", "r3_staged", "process", "r3_mixed_minus_plain"}
    assert (out / "reverse_curriculum.png").stat().st_size > 0
    runs = out / "work" / "reverse_curriculum"
    assert (runs / "r3_staged" / "seed0" / "config.yaml").read_text().count("mode: staged") == 1
    assert "`reverse_curriculum`" in readme.read_text()


@pytest.mark.parametrize("name", ["easy_to_hard", "rl_vs_sft_few_demos", "rft_vs_sft", "abstention"])
def test_quick_claim_drivers_write_a_result_that_follows_the_contract(tmp_path, name):
    doc = run_all.load_driver(name).run([0], tmp_path, quick=True)
    common.check_result(doc)
    assert (tmp_path / f"{name}.json").is_file() and (tmp_path / f"{name}.png").is_file()
