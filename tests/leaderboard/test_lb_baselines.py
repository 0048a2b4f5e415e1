"""Required baselines per env (issue #26, finding 2): computed, stored, drawn as reference lines, entries flagged."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from leaderboard.aggregate import aggregate_scores
from leaderboard.baselines import baseline_record, format_only_baseline, random_reward_baseline
from leaderboard.boards import boards
from leaderboard.cli import main
from leaderboard.export import export_markdown
from leaderboard.pages import ServerLinks, StaticLinks, render_env, render_index
from leaderboard.store import LeaderboardStore

ENV_ID = "LMEnv/TargetWord-v0"


@pytest.fixture(scope="module")
def format_only():
    return format_only_baseline(ENV_ID)


def board_of(store, env_id=ENV_ID):
    return next(b for b in boards(store) if b.env_id == env_id)


def test_format_only_baseline_is_measured_and_aggregated_like_a_submission(format_only):
    assert format_only["kind"] == "format-only" and format_only["metric"] == "mean_return"
    assert [s["seed"] for s in format_only["detail"]["seeds"]] == [0, 1, 2]  # the protocol's min_seeds
    # measured: one random word per prompt over TargetWord's 8 words, the env's prefix-match reward
    assert all(0.0 <= x <= 0.5 for x in format_only["seed_scores"]) and len(set(format_only["seed_scores"])) > 1
    agg = aggregate_scores(format_only["seed_scores"], metric="mean_return", higher_is_better=True, primary="iqm")
    assert format_only["score"] == agg["iqm"] and format_only["ci"] == agg["iqm_ci"]
    assert format_only_baseline(ENV_ID)["seed_scores"] == format_only["seed_scores"]  # seeded
    assert format_only_baseline(ENV_ID, [5, 6, 7])["detail"]["seeds"][0]["seed"] == 5


def test_bad_baselines_are_refused_with_the_fix(format_only):
    with pytest.raises(ValueError, match="at least 3 seeds"):
        format_only_baseline(ENV_ID, [0, 1])
    with pytest.raises(ValueError, match="distinct"):
        format_only_baseline(ENV_ID, [0, 0, 1])
    with pytest.raises(ValueError, match="outside LMEnv/TargetWord-v0's metric range"):
        baseline_record(ENV_ID, "format-only", [{"seed": 0, "score": 2.0}], {})
    with pytest.raises(ValueError, match="kind must be one of"):
        baseline_record(ENV_ID, "oracle", [{"seed": 0, "score": 0.5}], {})
    with LeaderboardStore("sqlite://") as store, pytest.raises(ValueError, match="finite"):
        store.set_baseline({**format_only, "seed_scores": [float("nan")]})


def test_store_keeps_one_baseline_per_env_and_kind_and_audits_it(format_only, store_url):
    with LeaderboardStore(store_url) as store:
        generation = store.generation
        store.set_baseline(format_only, actor="alice")
        again = store.set_baseline({**format_only, "score": 0.2}, actor="alice")
        assert store.generation == generation + 2  # cached pages are redrawn
        assert [(b.env_id, b.kind, b.score) for b in store.baselines()] == [(ENV_ID, "format-only", 0.2)]
        assert again.beats(0.2) and again.beats(0.1) and not again.beats(0.21)
        lower = dataclasses.replace(again, higher_is_better=False)  # e.g. a loss: an entry must be lower
        assert lower.beats(0.2) and lower.beats(0.3) and not lower.beats(0.19)
        assert store.baselines("LMEnv/Math-v0") == [] and store.baselines("bad\x00id") == []
        assert [e.action for e in store.audit_log()] == ["baseline", "baseline"]
        assert store.delete_baseline(ENV_ID, "format-only") and not store.delete_baseline(ENV_ID, "format-only")
        assert store.baselines() == []


def test_board_draws_reference_lines_where_the_scores_fall_and_flags_entries_below(format_only, make_submission):
    with LeaderboardStore("sqlite://") as store:
        for i, scores in enumerate([[0.9, 0.8, 0.85], [0.05, 0.1, 0.0], [0.5, 0.4, 0.6], [0.3, 0.2, 0.25]]):
            store.submit(make_submission(i, scores))
        low = format_only["score"]  # 0.125
        store.set_baseline(format_only)
        store.set_baseline(
            {**format_only, "kind": "random-reward", "score": 0.45, "detail": {"model": "tiny", "p": 0.5}}
        )
        board = board_of(store)
        assert [b.kind for b in board.usable_baselines] == ["format-only", "random-reward"]
        assert [board.below_format_only(e) for e in board.entries] == [False, False, False, True]
        assert board.entries[-1].score < low

        html = render_env(board, ServerLinks())
        order = re.findall(r'<tr (?:data-entry-id="(\d+)"|class="baseline" data-baseline="([a-z-]+)")', html)
        assert [a or b for a, b in order] == ["1", "3", "random-reward", "4", "format-only", "2"]
        assert html.count("≤ format-only</span>") == 2  # the flagged entry and the legend
        assert 'class="self-reported below-baseline"' in html
        assert html.count('<g class="baseline"') == 2  # dashed lines in the score plot
        assert "Bernoulli(0.5)" in html  # how the random-reward line was made

        # paginated: every line exactly once over the pages, on the page where its score falls
        pages = [render_env(board, ServerLinks(), page=p, page_size=2) for p in (1, 2)]
        assert [p.count('<tr class="baseline"') for p in pages] == [0, 2]
        line = pages[1].index('<tr class="baseline" data-baseline="random-reward"')
        assert line < pages[1].index('data-entry-id="4"') < pages[1].index('<tr class="baseline" data-baseline="format')
        # filtered to one entry: the lines stay around it
        one = render_env(board, ServerLinks(), query="agent-0")
        assert one.count('<tr class="baseline"') == 2
        # the index overview shows the format-only score, the static export too
        assert re.search(r'<td class="num opt format-only">0\.125</td>', render_index(boards(store), ServerLinks()))
        assert 'data-baseline="format-only"' in render_env(board, StaticLinks(), csp_meta=True)
        markdown = export_markdown(store, ENV_ID)
        assert "Reference baselines: format-only 0.125 (0 – 0.25); random-reward 0.45" in markdown
        assert markdown.count("(≤ format-only)") == 1


def test_baselines_of_another_metric_are_not_compared(format_only, make_submission):
    with LeaderboardStore("sqlite://") as store:
        store.submit(make_submission(0, [0.0, 0.05, 0.1]))
        store.set_baseline({**format_only, "metric": "accuracy"})  # e.g. stored before the protocol changed
        board = board_of(store)
        assert board.usable_baselines == [] and not board.below_format_only(board.entries[0])
        assert "data-baseline" not in render_env(board, ServerLinks())


def test_an_env_without_entries_shows_its_baselines(format_only):
    with LeaderboardStore("sqlite://") as store:
        store.set_baseline(format_only)
        html = render_env(board_of(store), ServerLinks())
        assert "No submissions yet." in html and 'class="note baselines"' in html and "0.125" in html


def test_cli_computes_lists_flags_and_deletes_baselines(tmp_path, make_submission, capsys):
    db = f"sqlite:///{tmp_path / 'lb.sqlite'}"
    assert main(["baselines", "compute", ENV_ID, "LMEnv/Math-v0", "--num-episodes", "40", "--db", db]) == 0
    out = capsys.readouterr().out
    assert f"{ENV_ID} format-only: iqm mean_return = 0.125" in out and "LMEnv/Math-v0 format-only: iqm accuracy" in out
    assert main(["baselines", "list", "--db", db, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {b["env_id"] for b in listed} == {ENV_ID, "LMEnv/Math-v0"}
    assert listed[0]["detail"]["seeds"][0]["episodes_hash"] and listed[0]["detail"]["code"]["package"] == "lm-envs"

    low = tmp_path / "low.json"
    low.write_text(json.dumps(make_submission(0, [0.0, 0.1, 0.05])))
    assert main(["submit", str(low), "--db", db]) == 0
    assert "does not beat LMEnv/TargetWord-v0's format-only baseline (0.125" in capsys.readouterr().err
    assert main(["list", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "format-only baseline: 0.125" in out and "[<= format-only]" in out

    assert main(["baselines", "delete", ENV_ID, "format-only", "--db", db]) == 0
    assert main(["baselines", "delete", ENV_ID, "format-only", "--db", db]) == 1
    assert "has no format-only baseline" in capsys.readouterr().err
    assert main(["baselines", "compute", "LMEnv/Nope-v0", "--db", db]) == 1
    assert "LMEnv/Nope-v0 format-only:" in capsys.readouterr().err
    assert main(["baselines", "compute", ENV_ID, "--seed", "1", "--db", db]) == 1
    assert "at least 3 seeds" in capsys.readouterr().err


def test_cli_names_a_task_without_a_format_only_answer(tmp_path, capsys):
    import lm_envs

    task = lm_envs.ListTask.from_pairs(train=[("1+1=", "2")], test=[("2+2=", "4")])
    lm_envs.register("Test/LbNoFormat-v0", task=task, reward=lambda p, c: float(c.strip() == p.answer))
    assert main(["baselines", "compute", "Test/LbNoFormat-v0", "--db", f"sqlite:///{tmp_path / 'lb.sqlite'}"]) == 1
    assert "declares no format-only policy; override Task.format_only" in capsys.readouterr().err


def test_server_api_lists_baselines_and_flags_entries(format_only, make_submission, tmp_path):
    from fastapi.testclient import TestClient

    from leaderboard.server import create_app

    app = create_app(f"sqlite:///{tmp_path / 'lb.sqlite'}")
    store = app.state.store
    store.submit(make_submission(0, [0.0, 0.1, 0.05]))
    store.submit(make_submission(1, [0.9, 0.8, 0.85]))
    store.set_baseline(format_only)
    with TestClient(app) as client:
        envs = {e["env_id"]: e for e in client.get("/api/v1/envs").json()}
        assert [b["kind"] for b in envs[ENV_ID]["baselines"]] == ["format-only"]
        assert envs[ENV_ID]["baselines"][0]["score"] == 0.125 and envs["LMEnv/Math-v0"]["baselines"] == []
        flags = [e["below_format_only"] for e in client.get("/api/v1/submissions", params={"env": ENV_ID}).json()]
        assert flags == [False, True]
        assert 'data-baseline="format-only"' in client.get("/env/" + ENV_ID).text


TINY_RUN = [
    "sft.steps=0",
    "agent.num_envs=16",
    "agent.group_size=4",
    "train.iterations=2",
    "train.eval_every=0",
    "eval.num_episodes=1",
    "model.threads=1",
]


def check_paid_the_coin(run_dir, seed):
    """The run's learner was paid the coin, not the digits (the true reward stays in the records)."""
    from agents.run.logger import read_metrics

    config = (run_dir / "config.yaml").read_text()
    assert "lm_envs.core.baselines:RandomReward" in config and f"seed: {seed}" in config
    rollouts = [r for r in read_metrics(run_dir / "metrics.jsonl") if "rollout/return_mean" in r]
    assert len(rollouts) == 2
    for r in rollouts:
        assert r["rollout/return_mean"] == pytest.approx(r["rollout/outcome/random_reward"])
        assert r["rollout/success"] == pytest.approx(r["rollout/outcome/random_reward"])  # is_success is the coin too
        assert r["rollout/outcome/true_reward"] < 0.2 < r["rollout/return_mean"]


def test_random_reward_env_kwargs_make_a_training_run_see_only_the_coin(tmp_path):
    import dataclasses

    from hydra import compose, initialize_config_module

    from agents.run import run, to_run_config
    from agents.run.config import register_configs
    from leaderboard.baselines import random_reward_env_kwargs

    kwargs = random_reward_env_kwargs("LMEnv/Digits-v0", seed=3, kwargs={"reward_kwargs": {"length": 4}})
    assert kwargs["reward_kwargs"] == {
        "reward": "lm_envs.tasks.digits:DigitCountReward",
        "reward_kwargs": {"length": 4},
        "p": 0.5,
        "seed": 3,
    }
    register_configs()
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        composed = compose(
            config_name="config", overrides=[f"output_dir={tmp_path}", "env.id=LMEnv/Digits-v0", "seed=3", *TINY_RUN]
        )
    cfg = to_run_config(composed)
    run(dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, kwargs=random_reward_env_kwargs(cfg.env.id, 3))))
    check_paid_the_coin(tmp_path, 3)


@pytest.mark.slow
def test_random_reward_baseline_trains_on_the_coin_and_is_evaluated_on_the_real_env(tmp_path):
    """Three tiny runs (about 25 s here): each sees only the coin, and is scored as `leaderboard verify` would."""
    from leaderboard.verify import evaluate_checkpoint

    record = random_reward_baseline("LMEnv/Digits-v0", overrides=TINY_RUN, workdir=tmp_path)
    assert record["kind"] == "random-reward" and record["detail"]["overrides"] == TINY_RUN
    assert record["detail"]["p"] == 0.5 and record["detail"]["agent"] == "grpo"
    assert [s["seed"] for s in record["detail"]["seeds"]] == [0, 1, 2]
    assert all(0.0 <= x <= 1.0 for x in record["seed_scores"])
    for seed in (0, 1, 2):
        check_paid_the_coin(tmp_path / f"LMEnv_Digits-v0-random-reward-seed{seed}", seed)
    run1 = tmp_path / "LMEnv_Digits-v0-random-reward-seed1"
    again = evaluate_checkpoint(run1 / "model", "LMEnv/Digits-v0", 1)
    assert again["mean_return"] == record["seed_scores"][1]
    assert again["episodes_hash"] == record["detail"]["seeds"][1]["episodes_hash"]
    start = evaluate_checkpoint(run1 / "model_rl_start", "LMEnv/Digits-v0", 1)  # no SFT: the untrained model
    assert start["mean_return"] == record["detail"]["start"]["seed_scores"][1]
    assert start["episodes_hash"] == record["detail"]["seeds"][1]["start_episodes_hash"]


def test_envs_that_differ_only_in_their_reward_share_one_random_reward_run(tmp_path, monkeypatch, capsys):
    """Math-v0 and MathProcess-v0 (same task, prompts and budgets; another grading) get one run per seed,
    each scored under both protocols; the records say which run they came from and what SFT alone gave."""
    import agents.run
    import leaderboard.baselines as baselines
    from leaderboard.baselines import (
        check_baseline,
        random_reward_baselines,
        random_reward_run_key,
        shared_random_reward_runs,
    )

    assert shared_random_reward_runs(["LMEnv/MathProcess-v0", "LMEnv/MathTools-v0", "LMEnv/Math-v0"]) == [
        ["LMEnv/MathProcess-v0", "LMEnv/Math-v0"],
        ["LMEnv/MathTools-v0"],
    ]
    qa = {random_reward_run_key(f"LMEnv/KnowledgeQA-v{v}") for v in range(4)}
    assert len(qa) == 4  # four worlds: four runs
    trained = []

    def fake_run(cfg):
        trained.append((cfg.env.id, cfg.seed, cfg.env.kwargs["reward_kwargs"]["reward_kwargs"]))
        return {"agent": "grpo", "model": "tiny", "config_hash": f"h{cfg.seed}", "metrics": {}}

    def evaluate(directory, env_id, seed, device="cpu"):
        start = directory.name == "model_rl_start"
        value = 0.1 * seed + (0.0 if start else 0.05) + (0.01 if env_id == "LMEnv/MathProcess-v0" else 0.0)
        return {"accuracy": value, "episodes_hash": f"{env_id}|{directory.parent.name}|{directory.name}"}

    monkeypatch.setattr(agents.run, "run", fake_run)
    monkeypatch.setattr(baselines, "rl_start_model", lambda out: out / "model_rl_start")
    math, process = random_reward_baselines(
        ["LMEnv/Math-v0", "LMEnv/MathProcess-v0"], overrides=["sft.steps=1"], workdir=tmp_path, evaluator=evaluate
    )
    assert trained == [("LMEnv/Math-v0", s, {}) for s in (0, 1, 2)]  # one run per seed, on the first env
    assert math["detail"]["code"] == process["detail"]["code"] and math["detail"]["code"]["package"] == "lm-envs"
    for record, extra in ((math, 0.0), (process, 0.01)):
        assert record["detail"]["run_env"] == "LMEnv/Math-v0"
        assert record["seed_scores"] == pytest.approx([0.05 + extra, 0.15 + extra, 0.25 + extra])
        assert record["detail"]["start"]["seed_scores"] == pytest.approx([extra, 0.1 + extra, 0.2 + extra])
        assert record["detail"]["start"]["score"] == pytest.approx(0.1 + extra)
        seed1 = record["detail"]["seeds"][1]
        assert seed1["run"] == "LMEnv_Math-v0-random-reward-seed1" and seed1["config_hash"] == "h1"
        assert seed1["episodes_hash"].endswith("seed1|model") and seed1["start_episodes_hash"].endswith(
            "|model_rl_start"
        )
    assert check_baseline(json.loads(json.dumps(process)))["detail"]["start"] == process["detail"]["start"]
    tampered = {**process, "detail": {**process["detail"], "start": {**process["detail"]["start"], "score": 0.5}}}
    with pytest.raises(ValueError, match="detail.start's score and ci"):
        check_baseline(tampered)
    assert process["detail"]["shared_with"] == ["LMEnv/Math-v0"] and math["detail"]["shared_with"] == [
        "LMEnv/MathProcess-v0"
    ]
    trained.clear()
    random_reward_baselines(
        ["LMEnv/Math-v0", "LMEnv/MathProcess-v0"], workdir=tmp_path, evaluator=evaluate, share_runs=False
    )
    assert [t[0] for t in trained] == ["LMEnv/Math-v0"] * 3 + ["LMEnv/MathProcess-v0"] * 3
    assert trained[3][2] == {"process": "rule"}  # the wrapped reward is the env's own, for its records

    with LeaderboardStore("sqlite://") as store:  # the page shows the RL start, the budget and the run's env
        store.set_baseline(process)
        html = render_env(board_of(store, "LMEnv/MathProcess-v0"), ServerLinks())
        assert "RL start (after SFT) 0.11 [" in html and "run: sft.steps=1; trained on LMEnv/Math-v0" in html
        assert r"RL start \(after SFT\) 0.11" in export_markdown(store)


def test_math_and_math_process_random_reward_runs_are_the_same_run(tmp_path):
    """What sharing rests on, measured: the two envs' random-reward runs train the same weights on the same coins."""
    import torch
    from hydra import compose, initialize_config_module
    from safetensors.torch import load_file

    from agents.run import run, to_run_config
    from agents.run.config import register_configs
    from agents.run.logger import read_metrics
    from leaderboard.baselines import random_reward_env_kwargs

    register_configs()
    tiny = ["sft.steps=2", "sft.batch_size=4"]
    logged = {}
    for env_id in ("LMEnv/Math-v0", "LMEnv/MathProcess-v0"):
        out = tmp_path / env_id.split("/")[1]
        with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
            composed = compose(
                config_name="config",
                overrides=[f"output_dir={out}", f"env.id={env_id}", "seed=4", *TINY_RUN[1:], *tiny],
            )
        cfg = to_run_config(composed)
        run(dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, kwargs=random_reward_env_kwargs(env_id, 4))))
        logged[env_id] = [
            {k: v for k, v in r.items() if k.startswith(("rollout/return", "rollout/success", "reinforce/"))}
            for r in read_metrics(out / "metrics.jsonl")
        ]
    assert logged["LMEnv/Math-v0"] == logged["LMEnv/MathProcess-v0"] and any(logged["LMEnv/Math-v0"])
    a, b = (load_file(tmp_path / name / "model" / "model.safetensors") for name in ("Math-v0", "MathProcess-v0"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_published_baselines_load_after_the_same_checks_as_submissions(tmp_path, format_only, capsys):
    source, target = (f"sqlite:///{tmp_path / name}" for name in ("a.sqlite", "b.sqlite"))
    with LeaderboardStore(source) as store:
        store.set_baseline(format_only)
    assert main(["baselines", "list", "--db", source, "--json"]) == 0
    published = tmp_path / "baselines.json"
    published.write_text(capsys.readouterr().out)
    assert main(["baselines", "load", str(published), "--db", target]) == 0
    with LeaderboardStore(target) as store:
        (loaded,) = store.baselines()
    assert (loaded.score, loaded.seed_scores, loaded.detail["seeds"]) == (
        format_only["score"],
        format_only["seed_scores"],
        format_only["detail"]["seeds"],
    )
    item = json.loads(published.read_text())[0]
    for change, message in (
        ({"score": 0.5}, "are not the iqm and interval of the seed scores"),
        ({"metric": "accuracy"}, "metric is 'accuracy' but the protocol's is 'mean_return'"),
        ({"seed_scores": [0.1]}, "the protocol needs 3"),
        ({"seed_scores": [0.1, 0.2, 9.0]}, "outside"),
        ({"env_id": "LMEnv/Nope-v0"}, "Nope"),
    ):
        published.write_text(json.dumps([{**item, **change}]))
        assert main(["baselines", "load", str(published), "--db", target]) == 2
        assert message in capsys.readouterr().err


def test_the_published_baselines_file_is_valid_and_current():
    """The published baselines load under today's checks, and their format-only scores re-measure the same."""
    from leaderboard.baselines import PUBLISHED, check_baseline
    from leaderboard.envs import leaderboard_env_ids

    items = json.loads(PUBLISHED.read_text())
    records = {(i["env_id"], i["kind"]): check_baseline(i) for i in items}
    builtin = {env for env in leaderboard_env_ids() if env.startswith("LMEnv/")}  # other tests register more
    assert {env for env, kind in records if kind == "format-only"} == builtin
    for env_id in ("LMEnv/TargetWord-v0", "LMEnv/KnowledgeQA-v3", "LMEnv/Math-v0"):
        again = format_only_baseline(env_id)
        assert again["seed_scores"] == records[env_id, "format-only"]["seed_scores"], (
            f"{env_id}'s format-only answers changed: recompute leaderboard/published_baselines.json "
            "(lm-envs leaderboard baselines compute all, then baselines list --json)"
        )
    for (env_id, kind), record in records.items():
        if kind == "random-reward":
            assert record["detail"]["overrides"] is not None and len(record["detail"]["seeds"]) >= 3, env_id
