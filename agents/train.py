"""``lm-envs train``: the Hydra entry point, a thin shell over :func:`agents.run.run`.

lm-envs train +experiment=math_few_demos       # the main job: SFT on 2,048 demos, then expert iteration
lm-envs train +experiment=math                 # all demos: SFT then GRPO on LMEnv/Math-v0
lm-envs train agent=ppo env=math_r3 seed=1     # pick group options, override any key
lm-envs train -m seed=0,1,2                    # multirun: one run directory per seed
lm-envs train --nproc-per-node 2 agent=ppo     # data parallel: torchrun over 2 processes (gloo on CPU, NCCL on CUDA)
"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from agents.run.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="pkg://lm_envs_conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Run one training job; returns the final held-out accuracy (what sweepers optimise).

    An env without a notion of success (no ``correct`` in its outcome records, e.g. a chat env scored by a
    reward model) returns and prints the held-out mean return instead.
    """
    from agents.errors import report, want_traceback
    from agents.run import run
    from agents.run.distributed import close_distributed

    try:
        result = run(cfg)
    except Exception as err:  # one line naming the setting and the fix (--traceback: the full one)
        if want_traceback():
            raise
        if isinstance(err, OSError) and err.filename is None and err.strerror:  # a failed write names no file
            err = OSError(err.errno, err.strerror, f"{cfg.output_dir} (the run directory)")
        raise SystemExit(report("lm-envs train", err)) from None
    finally:
        close_distributed()  # under torchrun: leave the process group before exiting
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return float(result["metrics"]["accuracy"])
    metrics, before = result["metrics"], result["before_rl"]

    def fmt(value: float | None) -> str:
        return "unknown" if value is None else f"{value:.3f}"

    # an env whose episodes have no notion of success (a chat env scored by a reward model) has no accuracy
    # (it would print 0.000 -> 0.000): its summary, and what a sweeper optimises, is the mean return
    graded = any("correct" in (r.get("outcome") or {}) for r in result.get("records", []))
    if graded:
        head = f"held-out accuracy: {fmt(before.get('accuracy'))} after SFT -> {fmt(metrics['accuracy'])} after RL, "
        head += f"mean return {fmt(before.get('mean_return'))} -> {fmt(metrics['mean_return'])}"
    else:
        head = f"held-out mean return: {fmt(before.get('mean_return'))} after SFT -> "
        head += f"{fmt(metrics['mean_return'])} after RL"
    print(f"\n{head} ({metrics['num_problems']} test problems); run directory: {cfg.output_dir}")
    return float(metrics["accuracy"] if graded else metrics["mean_return"])


def cli(argv: list[str]) -> int:
    """Run :func:`main` with ``argv`` as Hydra's command line.

    ``--nproc-per-node N`` (first) starts ``N`` data-parallel processes with torchrun instead
    (``python -m torch.distributed.run --standalone --nproc-per-node N -m agents.train ...``); the run
    directory is fixed here, so every process writes (rank 0) and reads the same one.
    """
    if argv[:1] == ["--nproc-per-node"] or (argv and argv[0].startswith("--nproc-per-node=")):
        return launch(argv)
    if not any(a in ("-m", "--multirun") for a in argv):  # Hydra writes .hydra/ into the run directory first
        from agents.errors import report
        from agents.run.lock import RunLockedError, check_free

        for arg in argv:
            if arg.startswith("hydra.run.dir="):
                try:
                    check_free(arg.split("=", 1)[1])
                except RunLockedError as e:
                    return report("lm-envs train", e)
    sys.argv = ["lm-envs train", *argv]
    try:
        main()
    except SystemExit as done:  # Hydra's exit on a config error, ours on a run's error
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return 0


def launch(argv: list[str]) -> int:
    """``lm-envs train --nproc-per-node N <overrides>``: torchrun over ``N`` local processes."""
    import subprocess
    import time

    flag, rest = (
        (argv[0].split("=", 1)[1], argv[1:]) if "=" in argv[0] else (argv[1] if len(argv) > 1 else "", argv[2:])
    )
    if not flag.isdigit() or int(flag) < 1:
        print(f"lm-envs train: --nproc-per-node needs a positive int, got {flag!r}.", file=sys.stderr)
        return 2
    if "-m" in rest or "--multirun" in rest:
        print(
            "lm-envs train: --nproc-per-node runs one job; sweep with a launcher instead (see README).", file=sys.stderr
        )
        return 2
    if not any(a.startswith(("output_dir=", "hydra.run.dir=")) for a in rest):
        rest = [f"hydra.run.dir=runs/{time.strftime('%Y-%m-%d/%H-%M-%S')}", *rest]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={flag}"]
    return subprocess.call([*cmd, "-m", "agents.train", *rest])


if __name__ == "__main__":
    main()
