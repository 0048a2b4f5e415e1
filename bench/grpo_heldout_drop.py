"""Why GRPO costs held-out accuracy from an SFT start: controls on ``bench/grpo_variants.py``'s setting.

Plain GRPO from the 2000-step SFT starts of ``+experiment=math`` ends a few points *below* its start on
held-out problems (``bench/results/grpo_variants.json``: -3.3 / -5.0 / ... on seeds 0 / 1 / 2) while its
training success barely moves. These runs separate the candidate causes, each at the same samples budget,
same starts, same seeds (the ``grpo`` runs are shared with that bench):

* ``random_reward``: the same pipeline with the reward replaced by a coin (``RandomReward``, p = 0.75, about
  the start's sampled success). If held-out accuracy falls as much as under GRPO, the drop is the update's
  noise (Adam moves every weight by about ``lr`` per step whatever the signal), not what the reward teaches.
* ``lr_1e-5``: a fifth of the step size (the noise scales with it; so does the signal).
* ``one_pass``: one optimizer step per rollout instead of two (half the steps, no re-use of a batch).
* ``temperature_0.5``: sample (and score) at T = 0.5, nearer the greedy decoding that held-out accuracy uses.
* ``kl_k3_loss`` (from ``grpo_variants``): a KL penalty to the start (0.04).
* ``random_reward_lr_1e-5``: the coin at the lower step size (the noise floor there).

With ``--iterations 100`` (``--runs /tmp/heldout100``, ``--out bench/results/grpo_heldout_drop_100.json``) the
same at five times the updates.

    OMP_NUM_THREADS=1 python bench/grpo_heldout_drop.py --jobs 1      # runs into /tmp/grpo_variants
    python bench/grpo_heldout_drop.py --summarize-only

Writes ``bench/results/grpo_heldout_drop.json`` (same format as ``grpo_variants.json``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import grpo_variants  # noqa: E402

CONTROLS: dict[str, list[str]] = {
    "random_reward": [
        "+env.kwargs.reward=lm_envs.core.baselines:RandomReward",
        "+env.kwargs.reward_kwargs.reward=lm_envs.tasks.math.rewards:MathReward",
        "+env.kwargs.reward_kwargs.p=0.75",
        "+env.kwargs.reward_kwargs.seed=0",
    ],
    "lr_1e-5": ["agent.lr=1e-5"],
    "random_reward_lr_1e-5": [
        "+env.kwargs.reward=lm_envs.core.baselines:RandomReward",
        "+env.kwargs.reward_kwargs.reward=lm_envs.tasks.math.rewards:MathReward",
        "+env.kwargs.reward_kwargs.p=0.75",
        "+env.kwargs.reward_kwargs.seed=0",
        "agent.lr=1e-5",
    ],
    "one_pass": ["agent.iterations=1"],
    "temperature_0.5": ["agent.temperature=0.5"],
}


def true_eval(run: Path, seed: int) -> Path:
    """Score a random-reward run's final model on the real reward (its own eval.json is the coin's):
    the same in-loop evaluation as every other run (``train.iterations=0``: greedy, 300 test problems)."""
    out = run / "true_eval"
    if not (out / "eval.json").exists():
        cmd = [
            sys.executable, "-m", "agents.train", f"output_dir={out}", f"hydra.run.dir={out}", "+experiment=math",
            f"model.name_or_path={run / 'model'}", "sft.steps=0", "train.iterations=0", "model.threads=1",
            f"seed={seed}", "train.progress=false",
        ]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, cwd=grpo_variants.ROOT)
    return out / "eval.json"


def read_run(out: Path) -> dict[str, float] | None:
    """``grpo_variants.read_run``; for random-reward runs, held-out accuracy and training success by the real grader."""
    row = READ_RUN(out)
    if row is None or not out.name.startswith("random_reward"):
        return row
    seed = int(out.name.rsplit("-s", 1)[1])
    row["heldout_accuracy"] = json.loads(true_eval(out, seed).read_text())["metrics"]["accuracy"]
    start = out.parent / f"sft{seed}" / "eval.json"  # the RL start, scored by the real grader
    row["heldout_accuracy_before_rl"] = json.loads(start.read_text())["metrics"]["accuracy"]
    its = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    true = [r["rollout/outcome/true_correct"] for r in its if "rollout/outcome/true_correct" in r]
    row["train_success"] = row["train_return"] = sum(true) / len(true)
    row["train_success_last10"] = row["train_return_last10"] = sum(true[-10:]) / len(true[-10:])
    return row


READ_RUN = grpo_variants.read_run


def main() -> None:
    grpo_variants.VARIANTS.update(CONTROLS)
    grpo_variants.read_run = read_run
    argv = sys.argv[1:]
    if "--variants" not in argv:
        argv += ["--variants", "grpo", *CONTROLS, "kl_k3_loss"]
    if "--out" not in argv:
        argv += ["--out", str(grpo_variants.ROOT / "bench" / "results" / "grpo_heldout_drop.json")]
    sys.argv = [sys.argv[0], *argv]
    grpo_variants.main()


if __name__ == "__main__":
    main()
