"""Hydra configs of lm-envs runs, importable as ``lm_envs_conf`` (``config_path="pkg://lm_envs_conf"``)."""
