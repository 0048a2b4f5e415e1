"""``lm-envs train``: the Hydra entry point, a thin shell over :func:`agents.run.run`.

lm-envs train +experiment=math_few_demos       # the main job: SFT on 2,048 demos, then expert iteration
lm-envs train +experiment=math                 # all demos: SFT then GRPO on LMEnv/Math-v0
lm-envs train agent=ppo env=math_r3 seed=1     # pick group options, override any key
lm-envs train -m seed=0,1,2                    # multirun: one run directory per seed
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from agents.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="pkg://lm_envs_conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Run one training job; returns the final held-out accuracy (what sweepers optimise)."""
    from agents.run import run

    result = run(cfg)
    metrics, before = result["metrics"], result["before_rl"]

    def fmt(value: float | None) -> str:
        return "unknown" if value is None else f"{value:.3f}"

    print(
        f"\nheld-out accuracy: {fmt(before.get('accuracy'))} after SFT -> {fmt(metrics['accuracy'])} after RL, "
        f"mean return {fmt(before.get('mean_return'))} -> {fmt(metrics['mean_return'])} "
        f"({metrics['num_problems']} test problems); run directory: {cfg.output_dir}"
    )
    return float(metrics["accuracy"])


def cli(argv: list[str]) -> int:
    """Run :func:`main` with ``argv`` as Hydra's command line."""
    sys.argv = ["lm-envs train", *argv]
    main()
    return 0


if __name__ == "__main__":
    main()
