"""conf/hydra/launcher/: the joblib (parallel local sweeps) and submitit SLURM launcher options compose, a local
parallel sweep runs each job on one torch thread, the SLURM options render a valid sbatch script, and the nested
configs ship in the wheel."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

import agents.train  # noqa: F401  (registers the run schema the primary config's defaults name)

ROOT = Path(__file__).resolve().parents[1]
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def hydra_cfg(tmp_path, *overrides):
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        cfg = compose(
            config_name="config",
            overrides=[f"hydra.sweep.dir={tmp_path}", "hydra.job.name=train", *overrides],
            return_hydra_config=True,
        )
    return cfg


def test_local_parallel_is_joblib_with_one_job_per_core_and_no_thread_pin(tmp_path):
    cfg = hydra_cfg(tmp_path, "hydra/launcher=local_parallel", "+experiment=smoke", "env=digits")
    assert cfg.hydra.launcher._target_ == JOBLIB
    assert cfg.hydra.launcher.n_jobs == -1
    # model.threads unset: torch keeps the one thread joblib's workers are started with (cores // n_jobs).
    assert cfg.model.threads is None


def test_local_parallel_workers_run_one_torch_thread(tmp_path, monkeypatch):
    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
    from joblib import Parallel, delayed
    from joblib._parallel_backends import LokyBackend

    for var in LokyBackend.MAX_NUM_THREADS_VARS:  # exported values would take precedence over joblib's limit
        monkeypatch.delenv(var, raising=False)
    launcher = OmegaConf.to_container(hydra_cfg(tmp_path, "hydra/launcher=local_parallel").hydra.launcher)
    launcher.pop("_target_")
    launcher["backend"] = "loky"  # what the launcher does (hydra_joblib_launcher._core.launch)
    process_joblib_cfg(launcher)
    assert Parallel(**launcher)(delayed(torch.get_num_threads)() for _ in range(2)) == [1, 1]


def test_slurm_options_render_a_valid_sbatch_script(tmp_path, monkeypatch):
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # no `srun` here

    default = hydra_cfg(tmp_path, "hydra/launcher=slurm").hydra.launcher
    assert default._target_ == SLURM
    assert default.partition is None and default.tasks_per_node == 1 and default.gpus_per_node == 1

    overrides = ["partition=gpu", "gpus_per_node=2", "timeout_min=30", "cpus_per_task=4", "mem_gb=16"]
    cfg = hydra_cfg(tmp_path, "hydra/launcher=slurm", *(f"hydra.launcher.{o}" for o in overrides))
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    # The executor exactly as SlurmLauncher.launch builds it; update_parameters rejects unknown sbatch options.
    executor = submitit.AutoExecutor(
        cluster="slurm", folder=params.pop("submitit_folder"), slurm_max_num_timeout=params.pop("max_num_timeout")
    )
    params.pop("_target_")
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    sbatch = executor._executor._make_submission_file_text("lm-envs train", "uid")
    for line in ("--partition=gpu", "--gpus-per-node=2", "--time=30", "--cpus-per-task=4", "--mem=16GB"):
        assert f"#SBATCH {line}\n" in sbatch, sbatch
    assert "#SBATCH --ntasks-per-node=1\n" in sbatch


def test_package_data_ships_every_config():
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["lm_envs_conf"]
    conf = ROOT / "conf"
    shipped = {p for pattern in patterns for p in conf.glob(pattern)}
    assert {conf / "hydra/launcher/local_parallel.yaml", conf / "hydra/launcher/slurm.yaml"} <= shipped
    assert set(conf.rglob("*.yaml")) <= shipped
