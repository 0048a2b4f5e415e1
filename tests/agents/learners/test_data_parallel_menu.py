"""The data-parallel pieces of #22's learners, checked by hand with simulated ranks (no process group):
the DPO loss over every rank's pairs, and dynamic sampling's kept groups shared out over the ranks.
The torchrun end-to-end checks (2 processes end where 1 ends) are in tests/agents/run/test_distributed.py."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch

from agents.learners.dpo import dpo_loss, global_dpo_loss
from agents.learners.reinforce import ReinforceLearner
from agents.policy.sampling import Rollout


@dataclass
class FakeRanks:
    """Rank ``rank`` of ``world_size``; the collectives return what every simulated rank passes (given up front)."""

    rank: int
    world_size: int
    everyone: list | None  # what each rank passes to the collective, in rank order
    distributed: bool = True

    def gather_objects(self, obj):
        return list(self.everyone)

    def sum_floats(self, values):
        if self.everyone is None:  # one rank
            return dict(values)
        out = {}
        for part in self.everyone:
            for k, v in part.items():
                out[k] = out.get(k, 0.0) + v
        return out


def test_the_ranks_dpo_losses_average_to_the_one_process_mean_and_a_placeholder_pair_adds_nothing():
    torch.manual_seed(0)
    cfg = SimpleNamespace(beta=0.5, loss="sigmoid", label_smoothing=0.1)
    logps = torch.randn(5, 2, requires_grad=True)
    ref = torch.randn(5, 2)
    whole, metrics = dpo_loss(logps[:, 0], logps[:, 1], ref[:, 0], ref[:, 1], 0.5, "sigmoid", 0.1)
    (g_whole,) = torch.autograd.grad(whole, logps)
    # rank 0 holds pairs 0-2, rank 1 pairs 3-4 plus a placeholder (weight 0) that must change nothing
    shares = [(slice(0, 3), torch.ones(3)), (slice(3, 6), torch.tensor([1.0, 1.0, 0.0]))]
    padded = torch.cat([logps, logps[:1]])
    padded_ref = torch.cat([ref, ref[:1]])

    def local_sums(rows, w):  # what each rank's global_dpo_loss all-reduces
        _, m = global_dpo_loss(padded[rows], padded_ref[rows], w, 1.0, cfg, FakeRanks(0, 1, None))
        return m  # with total=1 and one rank: the plain sums

    everyone = [local_sums(rows, w) for rows, w in shares]
    losses = []
    for rank, (rows, w) in enumerate(shares):
        loss, m = global_dpo_loss(padded[rows], padded_ref[rows], w, 5.0, cfg, FakeRanks(rank, 2, everyone))
        losses.append(loss)
        assert m == pytest.approx(metrics)  # every rank logs the global means
    (g_ranks,) = torch.autograd.grad(sum(losses) / 2, logps)  # DDP averages the ranks' gradients
    assert float(sum(losses) / 2) == pytest.approx(float(whole))
    assert torch.allclose(g_ranks, g_whole, atol=1e-7)


def groups_rollout(returns: list[float], K: int = 2, tag: int = 0) -> Rollout:
    """A rollout whose rows carry their group's identity: token ``tag * 100 + row``."""
    n = len(returns)
    tokens = (torch.arange(n) + 100 * tag)[:, None].repeat(1, 3)
    rewards = torch.zeros(n, 3)
    rewards[:, -1] = torch.tensor(returns)
    return Rollout(
        prompt_ids=torch.ones(n, 2, dtype=torch.long),
        prompt_mask=torch.ones(n, 2, dtype=torch.long),
        tokens=tokens,
        mask=torch.ones(n, 3, dtype=torch.bool),
        logprobs=torch.zeros(n, 3),
        rewards=rewards,
        infos=[{} for _ in range(n)],
        reset_infos=[{"row": 100 * tag + i} for i in range(n)],
        group_size=K,
    )


def shared(parts_by_rank, world):
    """Each simulated rank's share of the kept groups (its first token per row) and the dropped count."""
    everyone = [[(d, r, p) for d, p in parts] for r, parts in enumerate(parts_by_rank)]
    out = []
    for rank in range(world):
        ctx = SimpleNamespace(
            dist=FakeRanks(rank, world, everyone), codec=SimpleNamespace(pad_token_id=0), device="cpu"
        )
        batch, dropped = ReinforceLearner.share_kept_groups(SimpleNamespace(ctx=ctx), parts_by_rank[rank])
        out.append(([] if batch is None else batch.tokens[:, 0].tolist(), dropped))
    return out


def test_kept_groups_are_shared_equally_in_the_one_process_order_draw_by_draw():
    # draw 0: rank 0 kept two groups (rows 0-3), rank 1 none; draw 1: rank 1 kept one group, rank 0 one
    rank0 = [(0, groups_rollout([1, 0, 0, 1], tag=0)), (1, groups_rollout([1, 0], tag=2))]
    rank1 = [(1, groups_rollout([0, 1], tag=3))]
    # one-process order: draw 0 (rank 0's two groups), then draw 1 (rank 0's group, then rank 1's)
    assert shared([rank0, rank1], 2) == [([0, 1, 2, 3], 0), ([200, 201, 300, 301], 0)]
    # an odd number of kept groups (the refill cap was hit): the last one is left out, every rank trains on one
    assert shared([rank0, []], 2) == [([0, 1], 1), ([2, 3], 1)]
    # fewer kept groups than ranks: nobody trains (the same decision everywhere)
    assert shared([[(0, groups_rollout([1, 0]))], []], 2) == [([], 1), ([], 1)]
    assert shared([[], []], 2) == [([], 0), ([], 0)]


def test_offline_dpo_needs_a_pair_per_rank_naming_the_key(tmp_path):
    import json

    import gymnasium as gym

    from agents.learners.base import RunContext
    from agents.learners.dpo import DPOConfig, DPOLearner
    from agents.policy.models import build_default_model
    from agents.run.distributed import Dist

    codec = gym.make("LMEnv/Digits-v0").unwrapped.codec
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "Write:\n", "chosen": "123", "rejected": "abc"}) + "\n")
    ctx = RunContext("LMEnv/Digits-v0", {}, None, codec, 0, torch.device("cpu"), dist=Dist(rank=0, world_size=4))
    lm = build_default_model(codec, seed=0, n_layer=1, n_embd=16, n_head=2, n_positions=64)
    with pytest.raises(ValueError, match=r"agent.batch_size=2 pairs is fewer than the 4 processes"):
        DPOLearner(DPOConfig(data=str(path), batch_size=2), lm, ctx)
