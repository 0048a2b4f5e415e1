"""Offline DPO / IPO: the loss against hand-computed values, sequence log-probs against a plain forward,
the reference's log-probs computed once, learning on pairs, and its config errors."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import pytest
import torch
from hydra import compose, initialize_config_module

import lm_envs  # noqa: F401
from agents.learners.base import RunContext
from agents.learners.dpo import DPOConfig, DPOLearner, batch_indices, dpo_loss, pair_logps, sequence_logps
from agents.policy.models import build_default_model, frozen_copy
from agents.run import run, to_run_config
from agents.run.config import register_configs
from agents.run.logger import read_metrics

register_configs()


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_dpo_sigmoid_loss_and_metrics_match_hand_computation():
    pc, pr = torch.tensor([-1.0, -4.0]), torch.tensor([-3.0, -2.0])
    rc, rr = torch.tensor([-2.0, -3.0]), torch.tensor([-2.0, -3.0])
    loss, m = dpo_loss(pc, pr, rc, rr, beta=0.5)
    # pair 1: h = (-1 + 2) - (-3 + 2) = 2; pair 2: h = (-4 + 3) - (-2 + 3) = -2
    expected = (-math.log(_sig(0.5 * 2)) - math.log(_sig(0.5 * -2))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert m["rewards_chosen"] == pytest.approx((0.5 * 1 + 0.5 * -1) / 2)
    assert m["rewards_rejected"] == pytest.approx((0.5 * -1 + 0.5 * 1) / 2)
    assert m["reward_margin"] == pytest.approx((1.0 + -1.0) / 2)
    assert m["accuracy"] == 0.5


def test_label_smoothing_and_ipo_match_hand_computation():
    pc, pr, rc, rr = torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0])
    loss, _ = dpo_loss(pc, pr, rc, rr, beta=0.5, label_smoothing=0.1)  # h = 2, beta h = 1
    assert loss.item() == pytest.approx(-0.9 * math.log(_sig(1.0)) - 0.1 * math.log(_sig(-1.0)), rel=1e-6)
    loss, m = dpo_loss(pc, pr, rc, rr, beta=0.5, loss="ipo")  # (h - 1 / (2 beta))^2 = (2 - 1)^2
    assert loss.item() == pytest.approx(1.0) and m["accuracy"] == 1.0
    loss, _ = dpo_loss(pc, pr, rc, rr, beta=0.25, loss="ipo")  # (2 - 2)^2
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="unknown DPO loss 'kto'"):
        dpo_loss(pc, pr, rc, rr, beta=0.1, loss="kto")


def test_dpo_gradient_raises_the_chosen_and_lowers_the_rejected_log_prob():
    pc, pr = torch.tensor([-2.0], requires_grad=True), torch.tensor([-2.0], requires_grad=True)
    loss, _ = dpo_loss(pc, pr, torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.1)
    loss.backward()
    # d/dh -log sigmoid(beta h) at h = 0 is -beta / 2
    assert pc.grad.item() == pytest.approx(-0.05) and pr.grad.item() == pytest.approx(0.05)


@pytest.fixture(scope="module")
def codec():
    return gym.make("LMEnv/Digits-v0").unwrapped.codec


def test_sequence_logps_are_the_response_tokens_log_probs_under_a_plain_forward(codec):
    model = build_default_model(codec, seed=0, n_layer=1, n_embd=32, n_head=2)
    examples = [([5, 6, 7], [8, 9]), ([5, 6], [10, 11, 12])]
    got = sequence_logps(model, examples, codec.pad_token_id)
    for (prompt, response), value in zip(examples, got, strict=True):
        ids = torch.tensor([prompt + response])
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
        want = sum(logp[len(prompt) - 1 + t, tok] for t, tok in enumerate(response))
        assert value.item() == pytest.approx(want.item(), abs=1e-4)


def test_batches_walk_seeded_epoch_shuffles_covering_every_pair():
    seen = [i for it in range(4) for i in batch_indices(8, 2, seed=3, it=it)]
    assert sorted(seen) == list(range(8))
    assert batch_indices(8, 2, 3, 1) == batch_indices(8, 2, 3, 1)
    assert len(batch_indices(3, 5, 0, 0)) == 5  # fewer pairs than a batch: wraps into the next epoch


class CountingModel(torch.nn.Module):
    """A model wrapper that counts its forwards."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, **kwargs):
        self.calls += 1
        return self.model(**kwargs)


def digit_pairs(path, n: int = 8) -> str:
    with open(path, "w") as f:
        for i in range(n):
            chosen = "".join(str((i + k) % 10) for k in range(8))
            rejected = "abcdefgh"[i % 4 :] + " xyz"
            f.write(json.dumps({"prompt": "Write a long number:\n", "chosen": chosen, "rejected": rejected}) + "\n")
    return str(path)


def test_reference_log_probs_are_computed_once_and_dpo_learns_the_pairs(tmp_path, codec):
    torch.manual_seed(0)
    lm = build_default_model(codec, seed=0, n_layer=1, n_embd=32, n_head=2, n_positions=64)
    ref = CountingModel(frozen_copy(lm))
    cfg = DPOConfig(data=digit_pairs(tmp_path / "pairs.jsonl"), batch_size=4, lr=3e-3, beta=0.5)
    ctx = RunContext("LMEnv/Digits-v0", {}, None, codec, 0, torch.device("cpu"))
    learner = DPOLearner(cfg, lm, ctx)
    before = pair_logps(lm, learner.pairs, codec.pad_token_id).detach()
    metrics = [learner.iteration(it, ref) for it in range(12)]
    assert learner.reference_passes == 1 and ref.calls == 2  # 8 pairs in chunks of 4, in the first iteration only
    assert metrics[0]["dpo/loss"] == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at the start
    assert metrics[0]["dpo/reward_margin"] == pytest.approx(0.0, abs=1e-5)
    assert math.isnan(metrics[0]["rollout/return_mean"])  # offline: no episodes played
    after = pair_logps(lm, learner.pairs, codec.pad_token_id).detach()
    margin = 0.5 * ((after - before)[:, 0] - (after - before)[:, 1])
    assert (margin > 0).float().mean() == 1.0 and metrics[-1]["dpo/loss"] < 0.2


def test_dpo_through_the_run_loop_raises_the_envs_reward(tmp_path):
    pairs = digit_pairs(tmp_path / "pairs.jsonl", n=16)
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        cfg = compose(
            config_name="config",
            overrides=[
                f"output_dir={tmp_path / 'run'}",
                "env=digits",
                "model.size.n_layer=1",
                "model.size.n_embd=32",
                "model.size.n_head=2",
                "model.threads=1",
                "train.progress=false",
                "train.eval_every=0",
                "agent=dpo",
                f"agent.data={pairs}",
                "agent.lr=3e-3",
                "agent.batch_size=8",
                "sft.steps=0",
                "train.iterations=20",
                "train.checkpoint_every=20",
                "eval.num_episodes=8",
            ],
        )
    result = run(cfg)
    assert result["agent"] == "dpo"
    assert result["metrics"]["mean_return"] > result["before_rl"]["mean_return"] + 0.3
    logged = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "dpo/loss" in r]
    assert len(logged) == 20 and logged[0]["rollout/return_mean"] is None
    assert logged[-1]["dpo/accuracy"] == 1.0


def _cfg(tmp_path, *overrides):
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        return compose(config_name="config", overrides=[f"output_dir={tmp_path}", "agent=dpo", *overrides])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ((), r"agent=dpo needs preference pairs: set agent.data=<chosen/rejected JSONL> or agent.data=synthetic"),
        (("agent.data=/nonexistent.jsonl",), r"agent.data='/nonexistent.jsonl' is not a file"),
        (("agent.data=synthetic", "agent.loss=kto"), r"unknown agent.loss 'kto'"),
        (("agent.data=synthetic", "agent.beta=0"), r"agent.beta must be a finite number > 0"),
        (("agent.data=synthetic", "agent.label_smoothing=0.5"), r"agent.label_smoothing must be in \[0, 0.5\)"),
        (("agent.data=synthetic", "agent.loss=ipo", "agent.label_smoothing=0.1"), r"loss=sigmoid only"),
    ],
)
def test_bad_dpo_settings_fail_in_validate_naming_the_keys(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        to_run_config(_cfg(tmp_path, *overrides))
    assert not (tmp_path / "metrics.jsonl").exists()


CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_pair_prompts_are_encoded_exactly_as_the_env_encodes_its_prompt_chat_template_included(tmp_path):
    from agents.learners.dpo import encode_pairs
    from lm_envs.core.tokenizer import save_codec
    from lm_envs.tasks.chat.preferences import PreferencePair

    path = tmp_path / "tok"
    save_codec(lm_envs.load_codec(), path)
    config = json.loads((path / "tokenizer_config.json").read_text())
    (path / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": CHATML}))
    env = gym.make("LMEnv/Digits-v0", tokenizer=str(path)).unwrapped
    obs, info = env.reset(seed=0)
    pair = PreferencePair(info["prompt"], "1234", "abcd")
    (encoded,) = encode_pairs([pair], env.codec, env.episodes.config, None)
    n = int(obs["attention_mask"].sum())
    assert encoded.prompt == obs["input_ids"][:n].tolist()
    assert "user" in env.codec.decode(encoded.prompt) and len(encoded.prompt) > len(env.codec.encode(info["prompt"]))
    assert encoded.chosen == env.codec.encode("1234") + [env.codec.eos_token_id]
