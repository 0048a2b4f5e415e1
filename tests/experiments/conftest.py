"""Shared by the claim drivers' tests: a result that follows the claims contract (experiments/common.py)."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.common import check_result


def _check_contract(result: dict, name: str, seeds: list[int]) -> None:
    """The contract's schema (:func:`check_result`), this claim and seeds, and means and CIs that fit the values."""
    check_result(result)
    assert result["claim"] == name and result["seeds"] == seeds and result["paper"]
    assert result["verdict"] in ("held", "did not hold", "partly held") and result["summary"]
    assert result["wall_s_per_seed"] > 0 and isinstance(result["setting"], dict)
    for key, a in result["arms"].items():
        assert set(a) == {"metric", "per_seed", "mean", "ci95"}, key
        assert len(a["per_seed"]) == len(seeds), key
        finite = [x for x in a["per_seed"] if x == x]
        if finite:
            assert a["mean"] == pytest.approx(np.mean(finite)), key
            assert a["ci95"][0] <= a["mean"] + 1e-12 <= a["ci95"][1] + 2e-12, key


@pytest.fixture
def check_contract():
    return _check_contract
