"""``lm-envs evaluate`` and ``lm-envs export``: any run directory, checkpoint or model; bad input refused early."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from safetensors.torch import load_file

from agents.cli import main
from agents.evaluate_target import EvaluateSettings, evaluate_target, maj_at_k, majority_pick, vote_classes
from agents.run import run
from agents.run.config import register_configs
from agents.targets import load_target

register_configs()
GRPO = ["agent=grpo", "agent.num_envs=8", "agent.group_size=4", "sft.steps=4", "train.eval_every=0"]


def smoke(path, *overrides):
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        return compose(
            config_name="config", overrides=[f"output_dir={path}", "+experiment=smoke", "env=digits", *GRPO, *overrides]
        )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Finished GRPO (``lm.``-prefixed checkpoints), LoRA and PPO (value head) runs, and one of another model size."""
    root = tmp_path_factory.mktemp("runs")
    run(smoke(root / "grpo"))
    run(smoke(root / "lora", "model.lora.r=4", "agent.lr=1e-2"))
    run(smoke(root / "ppo", "agent=ppo", "agent.num_envs=8", "agent.lr=1e-3"))  # a value head beside lm.*
    run(smoke(root / "small", "model.size.n_layer=1", "model.size.n_embd=64", "train.iterations=1"))
    return root


def logits(model, ids=(5, 6, 7, 8)):
    with torch.no_grad():
        return model(input_ids=torch.tensor([list(ids)])).logits


def unfinished(runs, tmp_path, name="grpo"):
    """A copy of a run without its model/ (a run killed before the end): only checkpoints remain."""
    target = tmp_path / name
    shutil.copytree(runs / name, target)
    shutil.rmtree(target / "model")
    return target


def test_export_is_a_plain_transformers_directory_with_the_trained_weights(runs, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    assert main(["export", str(runs / "grpo"), "-o", str(tmp_path / "out")]) == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    AutoTokenizer.from_pretrained(tmp_path / "out")
    generation = GenerationConfig.from_pretrained(tmp_path / "out")
    assert generation.max_new_tokens == 8 and generation.eos_token_id == model.config.eos_token_id
    trained = AutoModelForCausalLM.from_pretrained(runs / "grpo" / "model")
    assert torch.allclose(logits(model), logits(trained))


@pytest.mark.parametrize("name", ["grpo", "lora", "ppo"])
def test_a_run_without_model_dir_is_rebuilt_from_its_config_and_latest_checkpoint(runs, tmp_path, name):
    from transformers import AutoModelForCausalLM

    part = unfinished(runs, tmp_path, name)
    saved = load_file(part / "checkpoints" / "step-000002" / "model.safetensors")
    assert any(k.startswith("lm.") for k in saved)
    assert any(k.startswith("value_head.") for k in saved) == (name == "ppo")  # the critic is not exported
    assert main(["export", str(part), "-o", str(tmp_path / "out")]) == 0
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert not any("lora" in k for k in exported.state_dict())  # adapters merged into plain weights
    final = AutoModelForCausalLM.from_pretrained(runs / name / "model")  # what the finished run exported
    assert torch.allclose(logits(exported), logits(final), atol=1e-5)
    # an older checkpoint differs (training moved the weights), so the checkpoint named is the one loaded
    step1 = load_target(part / "checkpoints" / "step-000001")
    assert step1.kind == "checkpoint" and not torch.allclose(logits(step1.model), logits(final), atol=1e-5)


def test_evaluate_reproduces_the_runs_own_evaluation_from_run_checkpoint_and_export(runs, tmp_path):
    own = json.loads((runs / "grpo" / "eval.json").read_text())["metrics"]
    part = unfinished(runs, tmp_path)
    main(["export", str(runs / "grpo"), "-o", str(tmp_path / "exported")])
    targets = [runs / "grpo", part / "checkpoints" / "step-000002", tmp_path / "exported"]
    for target in targets:
        out = tmp_path / "result.json"
        assert main(["evaluate", str(target), "--samples", "4", "-o", str(out)]) == 0
        doc = json.loads(out.read_text())
        assert doc["env_id"] == "LMEnv/Digits-v0"  # the run's own env, also for its export
        seed = doc["seeds"][0]
        assert seed["episodes_hash"] == own["episodes_hash"], target
        assert seed["score"] == pytest.approx(own["mean_return"])  # Digits' protocol metric
        assert [f"pass@{k}" in seed["metrics"] for k in (1, 2, 4)] == [True] * 3
        assert "maj@1" not in seed["metrics"]  # Digits' reward extracts no answer: no vote
        assert len(doc["records"][0]["sampled_records"]) == 4 * seed["num_episodes"]


def test_maj_at_k_on_a_graded_env_and_a_submission_with_enough_seeds(runs):
    settings = EvaluateSettings(env_id="LMEnv/Math-v0", episodes=3, samples=4, seeds=(0, 1))
    doc = evaluate_target(str(runs / "grpo"), settings)
    for block in doc["seeds"]:
        m = block["metrics"]
        assert m["maj@1"] == pytest.approx(m["pass@1"])  # a vote of one sample is that sample
        assert m["pass@1"] <= m["pass@2"] <= m["pass@4"]
        assert m["sampled_accuracy"] == pytest.approx(m["pass@1"])
    assert "submission" not in doc  # two seeds of three problems are not the protocol


def test_vote_and_maj_at_k_by_hand():
    same = lambda a, b: a == b  # noqa: E731
    assert vote_classes(["1", "2", None, "2"], same) == [0, 1, -1, 1]
    assert majority_pick([0, 1, -1, 1]) == 1
    assert majority_pick([0, 1, -1, 1], weights=[0.9, 0.2, 0.5, 0.3]) == 0  # a verifier-weighted vote
    assert majority_pick([-1, -1]) == 0
    classes = np.array([[0, 1, -1, 1], [0, 0, 0, 0]])
    success = np.array([[False, True, False, True], [True, True, True, True]])
    assert maj_at_k(classes, success, 4) == 1.0
    assert maj_at_k(classes, success, 1) == pytest.approx((2 / 4 + 1) / 2)
    # k = 2 over the 6 pairs of row 0: {0,1}, {0,3} tie -> the class met first (wrong); {1,3}, {1,2}, {2,3} right
    assert maj_at_k(classes[:1], success[:1], 2) == pytest.approx(3 / 6)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "LMEnv/Digits-v0", "--maj"], "records no final answer"),
        (["--samples", "64", "--token-budget", "100"], r"over --token-budget 100; use --samples 12"),
        (["--samples", "4", "--temperature", "0"], "identical greedy"),
        (["--env", "LMEnv/Nope-v0"], "Nope"),
        (
            ["--env", "LMEnv/Math-v0", "--search", "beam", "--search-n", "2", "--width", "4"],
            "beam width 4 is above n=2",
        ),
        (["--env", "LMEnv/Math-v0", "--search", "dvts"], r"needs a step verifier: --prm DIR"),
        (
            ["--env", "LMEnv/Math-v0", "--search", "beam", "--prm", "rule", "--samples", "1", "--token-budget", "200"],
            "over token_budget",
        ),
    ],
)
def test_bad_settings_fail_in_one_line_before_any_sampling(runs, capsys, monkeypatch, args, message):
    import agents.evaluate

    def no_sampling(*a, **k):
        raise AssertionError("sampled before the settings were checked")

    monkeypatch.setattr(agents.evaluate, "evaluate", no_sampling)
    assert main(["evaluate", str(runs / "grpo"), *args]) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # (transformers' loading bar comes before it)
    assert err.startswith("lm-envs evaluate: ") and err.endswith("for the full traceback)")
    assert __import__("re").search(message, err), err


def test_a_checkpoint_from_another_model_or_tokenizer_is_refused(runs, tmp_path, capsys):
    alien = unfinished(runs, tmp_path)
    small = runs / "small" / "checkpoints" / "step-000001"
    shutil.copytree(small, alien / "checkpoints" / "step-000009")
    assert main(["evaluate", str(alien / "checkpoints" / "step-000009")]) == 2
    assert "does not fit the model" in capsys.readouterr().err
    # a model directory whose tokenizer is another model's
    shutil.copytree(runs / "grpo" / "model", tmp_path / "mixed")
    config = json.loads((tmp_path / "mixed" / "config.json").read_text())
    config["eos_token_id"] = 3
    (tmp_path / "mixed" / "config.json").write_text(json.dumps(config))
    assert main(["export", str(tmp_path / "mixed"), "-o", str(tmp_path / "x")]) == 2
    assert "belongs to another model" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_targets_that_are_nothing_and_bare_models_without_an_env(runs, tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty"), "-o", str(tmp_path / "o")]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    assert main(["evaluate", str(runs / "grpo" / "model")]) == 2  # the run's model/ has no export metadata
    assert "--env ID" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert main(["export", str(runs / "grpo"), "-o", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "full" / "keep.txt").exists()


def test_enough_seeds_of_the_whole_protocol_make_a_valid_leaderboard_submission(runs, tmp_path):
    from leaderboard import validate_submission

    out = tmp_path / "r.json"
    assert main(["evaluate", str(runs / "grpo"), "--seed", "0", "--seed", "1", "--seed", "2", "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    submission = doc["submission"]
    validate_submission(submission)
    assert [s["seed"] for s in submission["seeds"]] == [0, 1, 2] and submission["agent"]["name"] == "grpo"


def test_evaluate_runs_a_step_level_search_on_the_same_problems(runs, tmp_path):
    out = tmp_path / "s.json"
    args = ["--env", "LMEnv/Math-v0", "--episodes", "2", "--samples", "1", "-o", str(out)]
    assert (
        main(
            [
                "evaluate",
                str(runs / "grpo"),
                *args,
                "--search",
                "beam",
                "--search-n",
                "4",
                "--width",
                "2",
                "--prm",
                "rule",
            ]
        )
        == 0
    )
    metrics = json.loads(out.read_text())["seeds"][0]["metrics"]
    assert 0 <= metrics["search/beam@4"] <= 1 and metrics["search/beam@4/tokens"] > 0
