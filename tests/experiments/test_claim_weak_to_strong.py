"""The weak-to-strong driver (experiments/claim_weak_to_strong.py) in its seconds-scale mode."""

from __future__ import annotations

import json

import pytest

from experiments import claim_weak_to_strong as claim


def test_quick_run_writes_the_contract_json_and_png_with_pgr_by_hand(tmp_path, check_contract):
    result = claim.run([0, 1], tmp_path, quick=True)
    on_disk = json.loads((tmp_path / "weak_to_strong.json").read_text())
    assert (tmp_path / "weak_to_strong.png").stat().st_size > 1000
    check_contract(on_disk, "weak_to_strong", [0, 1])
    arms = on_disk["arms"]
    for prefix in ("", "smollm2_"):  # the from-scratch students and the pretrained (here: a tiny stand-in) ones
        for student in ("w2s", "w2s_conf", "bootstrap"):
            for metric in ("accuracy", "bon_gold"):
                w, s, c = (arms[f"{prefix}{k}_{metric}"]["per_seed"] for k in ("weak", student, "ceiling"))
                by_hand = [(b - a) / (d - a) if d > a else float("nan") for a, b, d in zip(w, s, c, strict=True)]
                got = arms[f"pgr_{prefix}{student}_{metric}"]["per_seed"]
                assert got == pytest.approx(by_hand, nan_ok=True)
            w, s = (arms[f"{prefix}{k}_accuracy"]["per_seed"] for k in ("weak", student))
            diff = arms[f"{prefix}{student}_minus_weak_accuracy"]["per_seed"]
            assert diff == pytest.approx([b - a for a, b in zip(w, s, strict=True)])
    # the trained models are where the summary says, the students trained on the weak model's labels
    raw = result["per_seed_raw"][0]
    assert set(raw["accuracy"]) == {"weak", "intermediate", "w2s", "w2s_conf", "bootstrap", "ceiling"}
    assert raw["label_agreement"]["ceiling"] == 1.0 and 0.0 <= raw["label_agreement"]["w2s"] <= 1.0
    # the pretrained students read chat-template prompts; the weak and intermediate models plain ones
    pre = raw["smollm2"]
    assert set(pre["accuracy"]) == set(raw["accuracy"]) and pre["label_agreement"]["ceiling"] == 1.0
    assert pre["chat_template"] == {
        "weak": False, "intermediate": False, "w2s": True, "w2s_conf": True, "bootstrap": True, "ceiling": True
    }  # fmt: skip
    assert "smollm2" in on_disk["setting"] and "pretrained" in on_disk["summary"]


def test_a_run_of_one_family_keeps_the_other_family_s_recorded_results(tmp_path):
    first = claim.run([0], tmp_path, quick=True, students=("scratch",))
    assert "smollm2_weak_accuracy" not in first["arms"]
    recorded = first["per_seed_raw"][0]
    # quick runs never read what is recorded; a real run would: fake one by reading it as recorded
    assert claim.recorded(tmp_path, [0]) == [recorded] and claim.recorded(tmp_path, [0, 1]) is None
    both = claim.summarize([{**recorded, "smollm2": claim.run_seed_pretrained(0, tmp_path / "w", True)}], [0], True)
    assert both["arms"]["weak_accuracy"] == first["arms"]["weak_accuracy"] and "smollm2_w2s_accuracy" in both["arms"]
    with pytest.raises(ValueError, match="choose from"):
        claim.run([0], tmp_path, quick=True, students=("gpt5",))


def test_the_strong_settings_come_from_the_yaml_that_lm_envs_train_rm_composes():
    from hydra import compose, initialize_config_module

    from agents.train_rm import to_config

    settings = claim.strong_settings()
    assert settings["kind"] == "preference" and settings["pair_offset"] == settings["num_pairs"]
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        cfg = compose(
            config_name="reward_model",
            overrides=["output_dir=/tmp/unused", "+rm_experiment=weak_to_strong", "label_model=runs/weak"],
        )
    cfg = to_config(cfg)
    assert {k: getattr(cfg, k) for k in settings if k != "label_model"} == {
        k: v for k, v in settings.items() if k != "label_model"
    }
    assert cfg.label_model == "runs/weak"


def test_the_pretrained_student_settings_compose_for_lm_envs_train_rm():
    from hydra import compose, initialize_config_module

    from agents.train_rm import to_config

    settings = claim.pretrained_settings()
    assert settings["model"] == "smollm2" and settings["freeze_backbone"] and settings["chat_template"]
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        cfg = compose(
            config_name="reward_model",
            overrides=["output_dir=/tmp/unused", "+rm_experiment=weak_to_strong_smollm2", "label_model=runs/weak"],
        )
    cfg = to_config(cfg)
    assert {k: getattr(cfg, k) for k in settings if k != "label_model"} == {
        k: v for k, v in settings.items() if k != "label_model"
    }
