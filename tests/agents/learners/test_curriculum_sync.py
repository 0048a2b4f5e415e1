"""A reverse curriculum under data parallelism: every rank replays every rank's episodes in the order one
process playing all the rows records them (:func:`agents.learners.base.curriculum_events`)."""

from __future__ import annotations

import gymnasium as gym
import torch

import lm_envs  # noqa: F401
from agents.learners.base import curriculum_events, replay_curriculum
from agents.policy.models import build_default_model
from agents.policy.sampling import collect


def test_sorted_events_are_the_order_the_env_recorded_them_and_replay_rebuilds_the_state():
    # mixed start states: stages differ between rows, so the recording order is visible in the calls
    venv = gym.make_vec(
        "LMEnv/Math-v0",
        num_envs=12,
        autoreset_mode="Disabled",
        max_new_tokens=24,
        curriculum={"mode": "mixed", "window": 4},
    )
    curriculum = venv.episodes.curriculum
    model = build_default_model(venv.codec, seed=0)
    before = curriculum.state_dict()
    calls = []
    record = curriculum.record
    curriculum.record = lambda stage, success: (calls.append((stage, success)), record(stage, success))[1]
    rollout = collect(model, venv, seed=5, generator=torch.Generator().manual_seed(0), temperature=1.5)
    del curriculum.record
    after = curriculum.state_dict()

    events = curriculum_events(rollout)
    assert len(events) == 12 and len({e[0] for e in events}) > 1  # episodes ended at different steps
    assert [(stage, success) for _, _, stage, success in sorted(events)] == calls
    assert calls != sorted(calls, key=lambda c: c[0]), "a test that cannot tell the orders apart"
    # rows gathered in any order (two ranks' halves) replay to the one-process state
    curriculum.load_state_dict({**before, "stage": 3})  # some other state: replay rewinds it
    replay_curriculum(curriculum, before, [*events[6:], *events[:6]])
    assert curriculum.state_dict() == after
