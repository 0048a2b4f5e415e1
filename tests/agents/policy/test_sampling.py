"""KV-cached rollouts through the token env: token in, token out."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import lm_envs  # noqa: F401
from agents.policy.models import build_default_model, last_logits_only, logits_width
from agents.policy.sampling import collect, inverse_cdf_sample, left_pad_prompts, sample_next
from agents.policy.scoring import policy_logprobs, response_logprobs, sequence_inputs


def make(env_id="LMEnv/Math-v0", n=6, **kw):
    return gym.make_vec(env_id, num_envs=n, autoreset_mode="Disabled", **kw)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_sampling_logprobs_match_a_full_forward_on_the_tokens_the_env_received(arch):
    venv = make(max_new_tokens=24)
    model = build_default_model(venv.codec, seed=1, arch=arch)
    assert logits_width(model) == venv.single_action_space.n
    rollout = collect(model, venv, seed=3, generator=torch.Generator().manual_seed(0), prune_fraction=0.01)
    # The env's buffers hold exactly the tokens the rollout says were generated.
    obs = venv.episodes.observation()
    for i in range(venv.num_envs):
        n, p = int(rollout.mask[i].sum()), int(venv.episodes.prompt_length[i])
        np.testing.assert_array_equal(obs["input_ids"][i, p : p + n], rollout.tokens[i, :n].numpy())
    ids, att = sequence_inputs(rollout)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=att, position_ids=(att.cumsum(1) - 1).clamp(min=0)).logits
    logp, entropy = response_logprobs(logits, rollout.tokens, rollout.prompt_ids.shape[1])
    m = rollout.mask
    torch.testing.assert_close(logp[m], rollout.logprobs[m], atol=2e-4, rtol=0)
    assert (entropy[m] > 0).all()
    assert torch.allclose(rollout.returns, rollout.rewards.sum(1))


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_shared_prompt_forward_of_groups_gives_the_full_forward_values_and_gradients(arch):
    venv = make(n=12, max_new_tokens=20)
    model = build_default_model(venv.codec, seed=1, arch=arch)
    rollout = collect(model, venv, seed=4, options={"group_size": 4}, generator=torch.Generator().manual_seed(0))
    m = rollout.mask

    def run(rows):
        model.zero_grad()
        logp, entropy = policy_logprobs(model, rollout, rows, temperature=0.7)
        (logp[m[rows]].sum() + entropy[m[rows]].mean()).backward()
        return logp.detach(), entropy.detach(), [q.grad.clone() for q in model.parameters()]

    grouped = run(torch.arange(8))  # two whole groups: one prompt forward per group
    full = run(torch.tensor([0, 1, 2, 3, 4, 5, 7, 6]))  # not whole ordered groups: a full forward per row
    order = torch.tensor([0, 1, 2, 3, 4, 5, 7, 6])
    torch.testing.assert_close(grouped[0][order][m[order]], full[0][m[order]], atol=1e-4, rtol=0)
    torch.testing.assert_close(grouped[1][order][m[order]], full[1][m[order]], atol=1e-4, rtol=0)
    for a, b in zip(grouped[2], full[2]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
    # and both match what the sampler saw (temperature 1)
    logp, _ = policy_logprobs(model, rollout, torch.arange(12))
    torch.testing.assert_close(logp[m], rollout.logprobs[m], atol=2e-4, rtol=0)


def test_finished_envs_are_pruned_and_results_are_unchanged():
    venv = make(max_new_tokens=16)
    model = build_default_model(venv.codec, seed=2)
    a = collect(model, venv, seed=0, generator=torch.Generator().manual_seed(5), prune_fraction=0.01)
    b = collect(model, venv, seed=0, generator=torch.Generator().manual_seed(5), prune_fraction=2.0)
    assert a.mask.equal(b.mask)
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=2e-4, rtol=0)


def test_greedy_and_groups():
    venv = make("LMEnv/TargetWord-v0", n=6)
    model = build_default_model(venv.codec, seed=0)
    r = collect(model, venv, seed=1, options={"group_size": 3}, temperature=0)
    assert r.group_size == 3
    assert [x["problem_id"] for x in r.reset_infos[:3]] == [r.reset_infos[0]["problem_id"]] * 3
    assert r.tokens[0].equal(r.tokens[1])  # same prompt, greedy: same completion


def test_top_k_top_p_restrict_sampling():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]]).repeat(2000, 1)
    g = torch.Generator().manual_seed(0)
    tok, _ = sample_next(logits, 1.0, top_k=2, top_p=1.0, generator=g)
    assert set(tok[:, 0].tolist()) == {2, 3}
    tok, _ = sample_next(logits, 1.0, top_k=0, top_p=0.5, generator=g)
    assert set(tok[:, 0].tolist()) == {3}


def test_inverse_cdf_sampling_matches_the_distribution_and_never_picks_a_zero():
    probs = torch.tensor([[0.0, 0.1, 0.2, 0.0, 0.7, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 3.0]]).repeat(50_000, 1)
    tok = inverse_cdf_sample(probs, torch.Generator().manual_seed(0))[:, 0]
    first, second = tok[0::2], tok[1::2]
    freq = torch.bincount(first, minlength=6).double() / len(first)
    assert torch.allclose(freq, torch.tensor([0.0, 0.1, 0.2, 0.0, 0.7, 0.0], dtype=torch.float64), atol=0.006)
    assert set(second.tolist()) == {5}  # unnormalised rows are fine


def test_inverse_cdf_sampling_at_the_top_of_the_interval_takes_the_last_token_with_mass(monkeypatch):
    monkeypatch.setattr(torch, "rand", lambda n, _, **kw: torch.ones(n, 1))  # u == total: the rounding edge
    tok = inverse_cdf_sample(torch.tensor([[0.3, 0.7, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]))
    assert tok[:, 0].tolist() == [1, 3]


def test_prefill_computes_only_the_last_logits_where_the_model_allows():
    model = build_default_model(make("LMEnv/TargetWord-v0", n=1).codec, seed=0)
    assert last_logits_only(model) == {"logits_to_keep": 1}
    assert last_logits_only(torch.nn.Linear(2, 2)) == {}


def test_collect_needs_disabled_autoreset():
    venv = gym.make_vec("LMEnv/TargetWord-v0", num_envs=2)
    with pytest.raises(ValueError, match="Disabled"):
        collect(build_default_model(venv.codec), venv)


def test_left_padding_keeps_each_prompt_at_the_end():
    obs = {
        "input_ids": np.array([[5, 6, 7, 1], [8, 9, 1, 1]]),
        "attention_mask": np.array([[1, 1, 1, 0], [1, 1, 0, 0]]),
    }
    ids, att = left_pad_prompts(obs, pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [1, 8, 9]] and att.tolist() == [[1, 1, 1], [0, 1, 1]]


def test_demo_runs_and_gold_beats_the_untrained_model(capsys):
    from agents import demo

    result = demo.main("LMEnv/Math-v0", num_envs=8, seed=0)
    assert result["gold"] == 1.0 and result["model"] < 0.5
    assert "mean return" in capsys.readouterr().out


def test_embedded_architectures_and_sizes_and_their_errors():
    codec = lm_envs.load_codec()
    llama = build_default_model(codec, arch="llama", n_layer=2, n_embd=128)
    assert type(llama).__name__ == "LlamaForCausalLM" and llama.config.num_hidden_layers == 2
    assert logits_width(llama) == codec.vocab_size
    gpt2 = build_default_model(codec, n_layer=2, n_embd=128)
    n_llama, n_gpt2 = (sum(p.numel() for p in m.parameters()) for m in (llama, gpt2))
    assert abs(n_llama - n_gpt2) / n_gpt2 < 0.15  # same size class: the gated MLP matches GPT-2's 4x MLP
    with pytest.raises(ValueError, match="choose one of"):
        build_default_model(codec, arch="mamba")
    with pytest.raises(ValueError, match="the sizes are"):
        build_default_model(codec, n_layers=2)


@pytest.mark.parametrize("prune_fraction", [1.0, 0.125])
def test_rows_that_ended_but_stay_in_the_batch_record_nothing(prune_fraction):
    # Finished rows stay in the model batch until enough have finished to prune the cache; what they sample
    # then is neither sent to the env nor recorded (it once was, with mask 1: trained on, kept by RFT).
    venv = make("LMEnv/Math-v0", n=16, max_new_tokens=24)
    model = build_default_model(venv.codec, seed=0, n_layer=2, n_embd=64)
    eos = venv.codec.eos_token_id
    with torch.no_grad():  # make EOS likely in some contexts, so rows end at different steps
        model.get_output_embeddings().weight[eos] *= 40
    gen = torch.Generator().manual_seed(0)
    rollout = collect(model, venv, seed=3, generator=gen, prune_fraction=prune_fraction)
    lengths = rollout.mask.sum(1)
    assert len(set(lengths.tolist())) > 2  # rows ended at several steps
    for i, info in enumerate(rollout.infos):
        n = int(lengths[i])
        assert n == info["num_tokens"]
        assert rollout.mask[i, :n].all() and not rollout.mask[i, n:].any()
        assert (rollout.tokens[i, n:] == venv.codec.pad_token_id).all() and (rollout.logprobs[i, n:] == 0).all()
        assert venv.codec.decode(rollout.tokens[i, :n].tolist()).startswith(info["completion"].rstrip())
