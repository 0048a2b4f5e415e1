"""``lm-envs train-rm``: the Hydra entry point of reward-model training, a thin shell over :func:`run`.

lm-envs train-rm                                     # preference RM on the synthetic preference set
lm-envs train-rm rm=orm policy=runs/x/policy         # outcome RM on a policy's math solutions
lm-envs train-rm rm=prm labels=shepherd policy=...   # process RM with Math-Shepherd labels
lm-envs train-rm rm=contrastive policy=runs/x/policy # the policy fine-tuned on its own claim steps (a verifier)
"""

from __future__ import annotations

import sys
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from agents.reward_models.train import RewardModelConfig


def register_configs() -> None:
    """Store the schema of ``conf/reward_model.yaml`` in Hydra's ConfigStore (idempotent)."""
    ConfigStore.instance().store(name="reward_model_schema", node=RewardModelConfig)


register_configs()

#: The backbone taken off the command line by :func:`cli` (see :func:`split_backbone`), set after composition.
_BACKBONE: list[str] = []


def split_backbone(argv: list[str]) -> tuple[list[str], str | None]:
    """Take ``model=<name or path>`` off a ``train-rm`` command line: ``(the rest, the value or None)``.

    ``reward_model.yaml`` lives in the same config directory as the training config, whose ``model/``
    group makes Hydra read ``model=smollm2`` as a group choice and refuse it; the reward model's
    ``model`` key is a plain name or path, so the command line's value is set after composition.

    Example:
        >>> split_backbone(["rm=orm", "model=smollm2", "steps=5"])
        (['rm=orm', 'steps=5'], 'smollm2')
    """
    rest, value = [], None
    for arg in argv:
        key, eq, val = arg.lstrip("+").partition("=")
        if eq and key == "model":
            value = val.strip("'\"")
        else:
            rest.append(arg)
    return rest, value


def to_config(cfg: DictConfig | RewardModelConfig) -> RewardModelConfig:
    """A validated :class:`RewardModelConfig` from a composed Hydra config (or pass one through)."""
    if isinstance(cfg, RewardModelConfig):
        return cfg
    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, RewardModelConfig):
        raise TypeError(
            "the config must follow agents.reward_models.train.RewardModelConfig (compose reward_model.yaml)."
        )
    return obj


def run(cfg: DictConfig | RewardModelConfig) -> dict[str, Any]:
    """Train the reward model ``cfg`` describes; metrics go to ``metrics.jsonl`` and ``metrics.json``."""
    from agents.reward_models.train import train_reward_model
    from agents.run.logger import MetricsLogger

    config = to_config(cfg)
    logger = MetricsLogger(config.output_dir)
    try:
        return train_reward_model(config, log=logger.log)
    finally:
        logger.close()


@hydra.main(version_base="1.3", config_path="pkg://lm_envs_conf", config_name="reward_model")
def main(cfg: DictConfig) -> float:
    """Train one reward model; returns its held-out accuracy (what sweepers optimise)."""
    from agents.errors import report, want_traceback

    if _BACKBONE:
        cfg.model = None if _BACKBONE[0].lower() in ("null", "none", "") else _BACKBONE[0]
    try:
        result = run(cfg)
    except Exception as err:  # one line naming the setting and the fix (--traceback: the full one)
        if want_traceback():
            raise
        raise SystemExit(report("lm-envs train-rm", err)) from None
    held = result["heldout"]
    print(f"\n{result['kind']} reward model: held-out accuracy {held['accuracy']:.3f}; saved in {cfg.output_dir}")
    if result["kind"] == "contrastive":
        print(
            f"within-problem AUC {held['within_problem_auc']:.3f} (the policy's likelihood: "
            f"{held['policy_within_problem_auc']:.3f}); accuracy above = right result over a near miss, held out"
        )
    return float(held["accuracy"])


def cli(argv: list[str]) -> int:
    """Run :func:`main` with ``argv`` as Hydra's command line."""
    argv, backbone = split_backbone(argv)
    if backbone is not None and any(a in ("-m", "--multirun") for a in argv):
        print("lm-envs train-rm: model= cannot be swept with -m; run one job per backbone.", file=sys.stderr)
        return 2
    _BACKBONE[:] = [] if backbone is None else [backbone]
    sys.argv = ["lm-envs train-rm", *argv]
    try:
        main()
    except SystemExit as done:  # Hydra's exit on a config error, ours on a run's error
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return 0


if __name__ == "__main__":  # python -m agents.train_rm ...: the same command line as lm-envs train-rm
    sys.exit(cli(sys.argv[1:]))
