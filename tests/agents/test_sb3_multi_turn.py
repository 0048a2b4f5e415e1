"""SB3 on a multi-turn env: one SB3 action per policy token; env tokens only ever appear in observations."""

from __future__ import annotations

from agents.sb3 import make_sb3_ppo


def test_sb3_ppo_trains_on_a_multi_turn_env():
    model = make_sb3_ppo("LMEnv/DigitTurns-v0", 4, 0, n_steps=16)
    assert "source" in model.observation_space.spaces  # the extractor reads ids and mask, not the source
    model.learn(64)
    assert model.num_timesteps == 64
