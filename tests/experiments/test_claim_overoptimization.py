"""The reward over-optimization driver (experiments/claim_overoptimization.py) in its seconds-scale mode."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from experiments import claim_overoptimization as claim


def test_quick_run_writes_the_contract_json_and_png(tmp_path, check_contract):
    result = claim.run([0, 1], tmp_path, quick=True)
    on_disk = json.loads((tmp_path / "overoptimization.json").read_text())
    assert on_disk["arms"] == json.loads(json.dumps(result["arms"]))
    assert (tmp_path / "overoptimization.png").stat().st_size > 1000
    check_contract(on_disk, "overoptimization", [0, 1])
    # the x axis: KL_bon = log n - (n - 1) / n, by hand for n = 1, 2, 4, 8
    assert on_disk["curves"]["ns"] == [1, 2, 4, 8]
    assert on_disk["curves"]["kl"] == pytest.approx([0.0, math.log(2) - 0.5, math.log(4) - 0.75, math.log(8) - 0.875])
    for name, cur in on_disk["curves"]["proxies"].items():
        for gold, proxy in zip(cur["gold"], cur["proxy"], strict=True):
            assert gold[0] == pytest.approx(0.0, abs=1e-9) and proxy[0] == pytest.approx(
                0.0, abs=1e-9
            )  # n = 1: the base
            assert np.all(np.diff(proxy) >= -1e-9)  # best-of-n on the proxy never lowers the proxy
        drops = [max(g) - g[-1] for g in cur["gold"]]
        assert on_disk["arms"][f"bon_{name}_gold_drop"]["per_seed"] == pytest.approx(drops)
    for oracle in on_disk["curves"]["gold_oracle"]:  # the control: best-of-n on gold itself only rises
        assert np.all(np.diff(oracle) >= -1e-9) and oracle[-1] > 0


def test_ci95_is_a_t_interval_over_seeds():
    lo, hi = claim.ci95([1.0, 2.0, 3.0])
    assert (lo + hi) / 2 == pytest.approx(2.0) and hi - 2.0 == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    assert claim.ci95([5.0]) == (5.0, 5.0)


def test_unknown_rl_proxy_fails_naming_the_choices(tmp_path):
    with pytest.raises(ValueError, match="choose from"):
        claim.run([0], tmp_path, quick=True, rl=["pairs_9"])


@pytest.mark.slow
def test_quick_rl_arm_goes_through_lm_envs_train(tmp_path):
    result = claim.run([0, 1], tmp_path, quick=True, rl=["pairs_32"])
    traj = result["curves"]["rl"]["pairs_32"]
    # the measured KL to the reference is >= 0 up to float rounding (-1.7e-7 seen at the first iteration)
    assert len(traj) == 2 and all(len(t) == 2 and all(r["kl"] >= -1e-5 for r in t) for t in traj)
    assert "rl_pairs_32_gold_change" in result["arms"]
