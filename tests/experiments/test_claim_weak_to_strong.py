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
    for student in ("w2s", "w2s_conf", "bootstrap"):
        for metric in ("accuracy", "bon_gold"):
            w, s, c = (arms[f"{k}_{metric}"]["per_seed"] for k in ("weak", student, "ceiling"))
            by_hand = [(b - a) / (d - a) if d > a else float("nan") for a, b, d in zip(w, s, c, strict=True)]
            got = arms[f"pgr_{student}_{metric}"]["per_seed"]
            assert got == pytest.approx(by_hand, nan_ok=True)
    # the trained models are where the summary says, the students trained on the weak model's labels
    raw = result["per_seed_raw"][0]
    assert set(raw["accuracy"]) == {"weak", "intermediate", "w2s", "w2s_conf", "bootstrap", "ceiling"}
    assert raw["label_agreement"]["ceiling"] == 1.0 and 0.0 <= raw["label_agreement"]["w2s"] <= 1.0


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
