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
    assert "rl" not in raw and not any("rl_" in k for k in arms)  # RL is off unless asked for


def test_quick_rl_arm_runs_ppo_against_each_rm_and_reports_pgr_on_rl_gold(tmp_path, check_contract):
    result = claim.run([0], tmp_path, quick=True, students=(), rl=("weak", "w2s_conf", "ceiling"))
    check_contract(json.loads((tmp_path / "weak_to_strong.json").read_text()), "weak_to_strong", [0])
    assert (tmp_path / "weak_to_strong.png").stat().st_size > 1000
    arms, rl = result["arms"], result["per_seed_raw"][0]["rl"]
    assert set(rl) == {"weak", "w2s_conf", "ceiling", "sft"} and "accuracy" not in result["per_seed_raw"][0]
    assert arms["rl_sft_eval_gold"]["per_seed"] == [pytest.approx(rl.pop("sft")["eval_gold"])]  # no PPO: the start
    for name, r in rl.items():  # PPO through lm-envs train: two iterations, the final policy scored by gold
        assert r["iterations"] == 2 == len(r["trajectory"]) and r["eval_prompts"] == 4
        assert 0.0 <= r["eval_gold"] <= 1.0 and arms[f"rl_{name}_eval_gold"]["per_seed"] == [
            pytest.approx(r["eval_gold"])
        ]
        assert (tmp_path / "work" / "weak_to_strong" / "seed0" / f"rl_{name}_it2" / "model").is_dir()
        assert r["gold_start"] == pytest.approx(rl["weak"]["gold_start"])  # the same SFT start for every RM
    w, s, c = (rl[k]["eval_gold"] for k in ("weak", "w2s_conf", "ceiling"))
    assert arms["rl_ceiling_minus_weak_eval_gold"]["per_seed"] == [pytest.approx(c - w, abs=1e-4)]
    by_hand = (s - w) / (c - w) if c > w else float("nan")
    assert arms["pgr_rl_w2s_conf_eval_gold"]["per_seed"] == [pytest.approx(by_hand, abs=1e-3, nan_ok=True)]
    assert "pgr_rl_w2s_eval_gold" not in arms and "RL against the from-scratch RMs" in result["summary"]
    assert result["setting"]["rl"]["iterations"] == 2 and result["setting"]["rl"]["seeds"] == [0]
    # a seed without RL results gets NaN in the RL arms; another seed's recorded RL results merge in
    both = claim.summarize([result["per_seed_raw"][0], {}], [0, 1], True)
    assert both["arms"]["rl_weak_eval_gold"]["per_seed"][1] != both["arms"]["rl_weak_eval_gold"]["per_seed"][1]
    with pytest.raises(ValueError, match="choose from"):
        claim.run([0], tmp_path, quick=True, students=(), rl=("strongest",))
    # a full-size call reads each arm from the seed's cache and keeps recorded arms it was not asked for
    work = tmp_path / "work" / "weak_to_strong"
    (work / "seed0" / "rl.json").write_text(json.dumps(result["per_seed_raw"][0]["rl"]))
    again = claim.run([0], tmp_path, students=(), rl=("weak", "ceiling"), rl_iterations=2)  # trains nothing
    assert again["arms"] == json.loads(json.dumps(result["arms"]))


def test_a_reward_model_is_reused_only_when_its_settings_are_the_same(tmp_path, monkeypatch):
    from dataclasses import asdict

    out = tmp_path / "ceiling"
    out.mkdir()
    cfg = claim.rm_config(out, 0, False, None, pair_offset=2000)
    metrics = {"config": json.loads(json.dumps(asdict(cfg))), "heldout": {"accuracy": 0.8}, "wall_time_s": 1.0}
    (out / "metrics.json").write_text(json.dumps(metrics))
    (out / "model.safetensors").write_bytes(b"")
    monkeypatch.setattr(claim, "train", lambda *a, **k: {"trained": True})
    assert claim.train_or_reuse(out, 0, False, pair_offset=2000) == metrics
    assert claim.train_or_reuse(out, 1, False, pair_offset=2000) == {"trained": True}  # another seed
    assert claim.train_or_reuse(out, 0, False, pair_offset=2000, conf_coef=0.5) == {"trained": True}


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


def test_quick_rl_against_the_pretrained_probes_shares_the_weak_arm_and_deletes_each_probe(tmp_path, check_contract):
    result = claim.run([0], tmp_path, quick=True, students=(), rl=("weak", "w2s", "ceiling"), rl_students=("smollm2",))
    check_contract(json.loads((tmp_path / "weak_to_strong.json").read_text()), "weak_to_strong", [0])
    assert (tmp_path / "weak_to_strong.png").stat().st_size > 1000
    arms, raw = result["arms"], result["per_seed_raw"][0]
    assert set(raw["rl"]) == {"weak", "sft"} and set(raw["rl_smollm2"]) == {"w2s", "ceiling"}  # weak: scratch's
    d = tmp_path / "work" / "weak_to_strong" / "seed0" / "smollm2"
    for name, r in raw["rl_smollm2"].items():  # PPO through lm-envs train against the probe, scored by gold
        assert r["iterations"] == 2 == len(r["trajectory"]) and r["eval_prompts"] == 4 and r["rm_chat_template"]
        assert (
            r["s_per_iteration"] > 0
            and r["rm_accuracy"] == json.loads((d / name / "metrics.json").read_text())["heldout"]["accuracy"]
        )
        assert r["gold_start"] == pytest.approx(raw["rl"]["weak"]["gold_start"])  # the same SFT start
        assert (d / f"rl_{name}_it2" / "model").is_dir() and (d / name / "metrics.json").is_file()
        assert not (d / name / "model.safetensors").exists()  # the probe's weights are gone once its arm ran
        assert arms[f"rl_smollm2_{name}_eval_gold"]["per_seed"] == [pytest.approx(r["eval_gold"])]
    assert (d / "weak" / "model.safetensors").is_file()  # the label model stays (small)
    w, s, c = (
        raw["rl"]["weak"]["eval_gold"],
        raw["rl_smollm2"]["w2s"]["eval_gold"],
        raw["rl_smollm2"]["ceiling"]["eval_gold"],
    )
    assert arms["rl_smollm2_weak_eval_gold"] == arms["rl_weak_eval_gold"]  # one weak side for both families
    assert arms["rl_smollm2_ceiling_minus_weak_eval_gold"]["per_seed"] == [pytest.approx(c - w, abs=1e-4)]
    by_hand = (s - w) / (c - w) if c > w else float("nan")
    assert arms["pgr_rl_smollm2_w2s_eval_gold"]["per_seed"] == [pytest.approx(by_hand, abs=1e-3, nan_ok=True)]
    assert "rl_ceiling_eval_gold" not in arms and "SmolLM2-probe RMs" in result["summary"]
    assert result["setting"]["rl_smollm2"]["arms"] == {0: ["ceiling", "w2s"]}
    with pytest.raises(ValueError, match="choose from"):
        claim.run([0], tmp_path, quick=True, students=(), rl=("ceiling",), rl_students=("gpt5",))
    # a full-size call reads the probe arms from the seed's cache; the weak arm stays as the JSON records it
    work = tmp_path / "work" / "weak_to_strong"
    (work / "seed0" / "smollm2" / "rl.json").write_text(json.dumps(raw["rl_smollm2"]))
    (work / "seed0" / "rl.json").write_text(json.dumps({**raw["rl"], "weak": {**raw["rl"]["weak"], "eval_gold": 9.0}}))
    again = claim.run([0], tmp_path, students=(), rl=("weak", "ceiling"), rl_students=("smollm2",), rl_iterations=2)
    assert json.dumps(again["arms"]) == json.dumps(arms)  # trains nothing, changes nothing (NaN as NaN)


def test_a_frozen_backbone_probe_scores_the_chat_env_s_prompt_as_it_trained(tmp_path):
    from lm_envs.tasks.chat.reward import RewardModelScorer
    from lm_envs.tasks.chat.task import SyntheticInstructions

    base, overrides = claim.pretrained_models(tmp_path, tmp_path, True)["ceiling"]
    metrics = claim.train(tmp_path / "ceiling", 0, True, base, **overrides)
    assert metrics["data"]["chat_template"] and metrics["config"]["freeze_backbone"]
    scorer = RewardModelScorer(str(tmp_path / "ceiling"))
    env_problem = SyntheticInstructions().problem("test", 3)  # the policy's env: plain prompts
    trained = SyntheticInstructions(chat_template=str(tmp_path / "ceiling")).problem("test", 3).prompt
    assert scorer.prompt_for(env_problem) == trained != env_problem.prompt and trained.startswith("<|im_start|>")
    text = trained + " Sure."
    got = scorer.score([text])[0]
    feats = claim.head_scores({"ceiling": tmp_path / "ceiling"}, [text], base["max_length"])["ceiling"][0]
    assert got == pytest.approx(float(feats), abs=1e-4)  # what PPO is paid is the trained head on its features


def _rl(gold: float, start: float = 0.5) -> dict:
    """A hand-made RL arm result (the keys rl_run returns)."""
    return {
        "eval_gold": gold, "gold_start": start, "gold_last": gold + 0.1, "proxy_start": 0.0, "proxy_last": 1.0,
        "kl_last": 5.0, "rm_accuracy": 0.7, "iterations": 20, "eval_prompts": 200, "window": 5, "wall_s": 100.0,
        "rm_wall_s": 10.0, "s_per_iteration": 4.0, "trajectory": [{"kl": 0.0, "proxy": 0.0, "gold": start}],
    }  # fmt: skip


def test_the_smollm2_rl_summary_pairs_each_probe_with_the_shared_weak_arm_per_seed():
    sft = {"eval_gold": 0.4, "eval_tokens": 8.0, "eval_prompts": 200, "wall_s": 60.0, "rm_wall_s": 0.0}
    per_seed = [  # weak, w2s, ceiling: PGR 0.5, 0.25; seed 2's ceiling is below weak (PGR undefined)
        {"rl": {"weak": _rl(0.4), "ceiling": _rl(0.45), "sft": sft},
         "rl_smollm2": {"w2s": _rl(0.5), "ceiling": _rl(0.6)}},
        {"rl": {"weak": _rl(0.3), "sft": sft}, "rl_smollm2": {"w2s": _rl(0.35), "ceiling": _rl(0.5)}},
        {"rl": {"weak": _rl(0.5), "sft": sft}, "rl_smollm2": {"w2s": _rl(0.6), "ceiling": _rl(0.45)}},
        {"rl": {"weak": _rl(0.5), "sft": sft}},  # no probe arm: NaN in the smollm2 arms, kept in the scratch ones
    ]  # fmt: skip
    out = claim.summarize(per_seed, [0, 1, 2, 3], False)
    a = out["arms"]
    nan = float("nan")
    assert a["rl_smollm2_ceiling_minus_weak_eval_gold"]["per_seed"] == pytest.approx(
        [0.2, 0.2, -0.05, nan], nan_ok=True
    )
    assert a["pgr_rl_smollm2_w2s_eval_gold"]["per_seed"] == pytest.approx([0.5, 0.25, nan, nan], nan_ok=True)
    assert a["pgr_rl_smollm2_w2s_eval_gold"]["mean"] == pytest.approx(0.375)
    assert a["rl_smollm2_w2s_minus_weak_eval_gold"]["per_seed"] == pytest.approx([0.1, 0.05, 0.1, nan], nan_ok=True)
    assert a["rl_smollm2_weak_eval_gold"]["per_seed"] == pytest.approx([0.4, 0.3, 0.5, nan], nan_ok=True)
    assert a["rl_weak_eval_gold"]["per_seed"] == pytest.approx([0.4, 0.3, 0.5, 0.5])  # the scratch family: all
    assert a["rl_ceiling_minus_weak_eval_gold"]["per_seed"] == pytest.approx([0.05, nan, nan, nan], nan_ok=True)
    assert "pgr_rl_w2s_eval_gold" not in a and "rl_smollm2_bootstrap_eval_gold" not in a
    # the control's CI spans 0 (the third seed's gap is negative): PGR on RL gold cannot make the verdict
    assert a["rl_smollm2_ceiling_minus_weak_eval_gold"]["ci95"][0] < 0 and out["verdict"] == "did not hold"
    assert out["setting"]["rl_smollm2"]["seeds"] == [0, 1, 2] and "SmolLM2-probe RMs (PPO, 3 seeds;" in out["summary"]
    assert out["setting"]["rl_smollm2"]["wall_s_per_seed"] == pytest.approx(220.0)
    assert out["setting"]["rl_smollm2"]["s_per_iteration"] == {"w2s": 4.0, "ceiling": 4.0}
    # with a gap on every seed and PGR above 0 on every seed, RL alone makes it hold
    per_seed[2]["rl_smollm2"]["ceiling"] = _rl(0.7)
    per_seed[3]["rl_smollm2"] = {"w2s": _rl(0.6), "ceiling": _rl(0.8)}
    assert claim.summarize(per_seed, [0, 1, 2, 3], False)["verdict"] == "held"


def test_rl_arms_at_another_kl_coefficient_run_apart_and_replace_arms_recorded_at_the_default(tmp_path, monkeypatch):
    import yaml

    result = claim.run([0], tmp_path, quick=True, students=(), rl=("weak", "ceiling"))
    assert result["setting"]["rl"]["kl_coef"] == claim.RL_KL_COEF
    kl = claim.run([0], tmp_path / "kl", quick=True, students=(), rl=("weak",), rl_kl_coef=0.2)
    assert kl["per_seed_raw"][0]["rl"]["weak"]["kl_coef"] == 0.2 and kl["setting"]["rl"]["kl_coef"] == 0.2
    run_dir = tmp_path / "kl" / "work" / "weak_to_strong" / "seed0" / "rl_weak_it2_kl0.2"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["agent"]["kl_coef"] == 0.2
    # a full-size call at another coefficient reruns the arms it names and drops recorded arms of the old one
    rerun = {**result["per_seed_raw"][0]["rl"]["weak"], "kl_coef": 0.2}
    monkeypatch.setattr(
        claim, "run_seed_rl", lambda *a, **k: {"weak": rerun, "sft": result["per_seed_raw"][0]["rl"]["sft"]}
    )
    again = claim.run([0], tmp_path, students=(), rl=("weak",), rl_kl_coef=0.2)
    assert set(again["per_seed_raw"][0]["rl"]) == {"weak", "sft"} and again["setting"]["rl"]["kl_coef"] == 0.2
    with pytest.raises(ValueError, match="rl_kl_coef"):
        claim.run([0], tmp_path, quick=True, students=(), rl=("weak",), rl_kl_coef=-1.0)
