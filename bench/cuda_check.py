"""CUDA check of the training stack: RL runs in bf16 on the GPU beside float32 on the CPU, and throughput.

Written for one short call on a rented GPU machine (``bash bench/cuda_check.sh``, which installs the
wheels of ``bench/wheelhouse.sh`` first); runs from a plain copy of the repo, without ``pip install -e .``.

(a) ``runs``: a few RL iterations of ``agents.run.run`` for each agent (grpo, ppo, rft) on
    ``LMEnv/Math-v0`` with the embedded default model, ``model.device=cuda model.dtype=bfloat16``, then
    the same config on the CPU in float32. Per run: the first update's ``*/first_ratio_max_error`` (the
    sampler's and the loss's log-probs of the same tokens: ~0 in float32, small in bf16), the first
    iteration's loss statistics, ``rollout/tokens_per_s``, the SFT loss at its first and last step (the
    same batches on both devices: a numerics check), wall time and peak GPU memory.
    ``variants`` (on the check's device only; a CPU twin would add nothing the three agents do not): LoRA
    adapters, float16 with its grad scaler (CUDA only), transformers' SDPA attention with gradient
    checkpointing, DAPO's dynamic sampling, online DPO, and GRPO on the multi-turn tool-use env (env-injected
    tokens); then ``torchrun`` runs (one process: the NCCL process group, DDP and FSDP2 wrapping on the GPU,
    which no CPU test reaches) through ``python -m torch.distributed.run -m agents.train``.
(b) ``throughput`` (CUDA bf16): generated tokens/s of ``agents.policy.sampling.collect`` (through the env)
    vs ``model.generate`` at batch 64 and 256, for the embedded default and a ~110M Llama built from a
    config; the time and tokens/s of one GRPO update (``reinforce_update``) on a grouped rollout; peak
    GPU memory of each.

Every section is guarded: an error is recorded with its traceback
and the check goes on. The JSON is rewritten after every step, so a killed call leaves what it had.

    python bench/cuda_check.py [--out cuda_check.json]          # CUDA when available
    python bench/cuda_check.py --device cpu --tiny --threads 1  # tiny end-to-end run on CPU (< 1 min)

Prints the JSON on stdout (progress and a summary go to stderr); ``--out`` (default ``$OUT/cuda_check.json``
when ``$OUT`` is set) also writes it to a file.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # agents/, lm_envs/, leaderboard/ from this checkout, installed or not
    sys.path.insert(0, str(ROOT))

AGENTS = ("grpo", "ppo", "rft")
#: Metric-name prefix of each agent's update statistics.
PREFIX = {"grpo": "reinforce/", "ppo": "ppo/", "rft": "rft/", "dapo": "reinforce/", "online_dpo": "dpo/"}
#: Runs beyond the CPU-vs-CUDA three, on the check's device only: name -> (agent, overrides, needs CUDA).
VARIANTS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "grpo_lora": ("grpo", ("model.lora.r=8",), False),
    "grpo_fp16": ("grpo", ("model.dtype=float16",), True),  # autocast float16 + GradScaler: a CUDA path
    "grpo_sdpa_ckpt": ("grpo", ("model.attn_implementation=sdpa", "model.gradient_checkpointing=true"), False),
    "dapo": ("dapo", (), False),
    "online_dpo": ("online_dpo", (), False),
    "grpo_tools": ("grpo", ("env=math_tools",), False),  # multi-turn: tool results injected by the env
}
#: torchrun runs (one process): name -> overrides beyond the grpo run's.
TORCHRUN: dict[str, tuple[str, ...]] = {"torchrun_ddp": (), "torchrun_fsdp": ("train.strategy=fsdp",)}
ROLLOUT_KEYS = ("rollout/return_mean", "rollout/success", "rollout/tokens_per_s", "time/rollout_s", "time/iteration_s")


def log(msg: str) -> None:
    print(f"[cuda_check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# Set-up: the Hydra config package, versions
# ------------------------------------------------------------------------------------------------


def ensure_conf_module() -> str:
    """Make ``lm_envs_conf`` importable (``pip install -e .`` maps ``conf/`` to it; a plain copy does not).

    Returns how it was found: the installed package's path, or ``shim`` when it was aliased to ``conf/``.
    """
    try:
        return str(Path(importlib.import_module("lm_envs_conf").__file__).parent)
    except ModuleNotFoundError:
        pass
    init = ROOT / "conf" / "__init__.py"
    spec = importlib.util.spec_from_file_location("lm_envs_conf", init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["lm_envs_conf"] = module
    spec.loader.exec_module(module)
    return f"shim: lm_envs_conf -> {init.parent}"


def versions() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for name in (
        "torch",
        "transformers",
        "tokenizers",
        "peft",
        "numpy",
        "gymnasium",
        "hydra-core",
        "omegaconf",
        "jsonschema",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def device_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "device": device,
        "cuda_available": torch.cuda.is_available(),
        "torch_cuda": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        info["git_head"] = commit.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_head"] = None
    return info


def error_record(err: BaseException) -> dict[str, Any]:
    tb = traceback.format_exception(type(err), err, err.__traceback__)
    return {"error": f"{type(err).__name__}: {err}"[:2000], "traceback": "".join(tb)[-4000:]}


def with_retry(step: Callable[[], dict[str, Any]], device: str) -> dict[str, Any]:
    """``step()``, or its error (every failure is a finding to report; the check goes on)."""
    try:
        return {"ok": True, **step()}
    except Exception as err:
        return {"ok": False, **error_record(err)}


# ------------------------------------------------------------------------------------------------
# (a) RL runs through agents.run.run
# ------------------------------------------------------------------------------------------------


def merge_overrides(base: list[str], extra: tuple[str, ...] | list[str]) -> list[str]:
    """``base`` then ``extra``, an ``extra`` key replacing the same key of ``base`` (Hydra refuses a key twice)."""
    keys = {o.split("=", 1)[0] for o in extra}
    return [o for o in base if o.split("=", 1)[0] not in keys] + list(extra)


def run_overrides(agent: str, device: str, dtype: str, tiny: bool, threads: int | None) -> list[str]:
    """The Hydra overrides of one check run (``conf/config.yaml`` plus these)."""
    common = ["seed=0", "resume=false", "train.eval_every=0", "train.progress=false", "train.checkpoint_every=1000"]
    common += [f"agent={agent}", f"model.device={device}", f"model.dtype={dtype}"]
    if threads:
        common.append(f"model.threads={threads}")
    if tiny:  # seconds on one CPU thread: 1x32 model, the 8-token Digits env
        common += ["env=digits", "model.size.n_layer=1", "model.size.n_embd=32", "model.size.n_head=2"]
        common += ["sft.steps=2", "sft.batch_size=4", "sft.warmup_steps=1", "train.iterations=2"]
        common += ["eval.num_episodes=4", "eval.batch_size=4"]
        sizes = {
            "grpo": ["agent.num_envs=8", "agent.group_size=4"],
            "ppo": ["agent.num_envs=4", "agent.ppo_epochs=1", "agent.num_minibatches=1"],
            "rft": ["agent.num_envs=8", "agent.prompts_per_round=2", "agent.group_size=4"],
            "dapo": ["agent.num_envs=8", "agent.group_size=4", "agent.dynamic_max_rollouts=1"],
            "online_dpo": ["agent.num_envs=8", "agent.group_size=4"],
        }
        rft_steps = ["agent.sft_steps=2", "agent.batch_size=4"]
    else:  # the embedded default (4x256 GPT-2) on LMEnv/Math-v0: 96-token episodes
        common += ["env=math", "sft.steps=60", "sft.batch_size=32", "sft.warmup_steps=10", "train.iterations=3"]
        common += ["eval.num_episodes=64", "eval.batch_size=64"]
        sizes = {
            "grpo": ["agent.num_envs=64", "agent.group_size=8"],
            "ppo": ["agent.num_envs=64"],  # group_size 1, 4 epochs x 4 minibatches, kl_coef 0.05 (a reference)
            "rft": ["agent.num_envs=64", "agent.prompts_per_round=8", "agent.group_size=8"],
            "dapo": ["agent.num_envs=64", "agent.group_size=8", "agent.dynamic_max_rollouts=2"],
            "online_dpo": ["agent.num_envs=64", "agent.group_size=4"],
        }
        rft_steps = ["agent.sft_steps=8", "agent.batch_size=16"]
    if agent == "rft":  # keep=best: an untrained policy may solve nothing, and Improve must still run
        sizes["rft"] = sizes["rft"] + rft_steps + ["agent.keep=best"]
    return common + sizes[agent]


def compose(out_dir: Path, overrides: list[str]) -> Any:
    """The run config, composed as tests/agents/run/test_loop.py's ``make_cfg`` does."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from agents.run.config import register_configs

    register_configs()
    with initialize_config_module(version_base="1.3", config_module="lm_envs_conf"):
        return hydra_compose(config_name="config", overrides=[f"output_dir={out_dir}", *overrides])


def one_run(
    agent: str, device: str, dtype: str, tiny: bool, threads: int | None, work: Path, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    import torch

    from agents.run import run

    out_dir = Path(tempfile.mkdtemp(prefix=f"{agent}-{device.replace(':', '')}-", dir=work))
    try:
        cfg = compose(out_dir, merge_overrides(run_overrides(agent, device, dtype, tiny, threads), extra))
        cuda = device.startswith("cuda")
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = run(cfg)
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
        out = {
            "wall_s": round(wall, 2),
            **run_record(out_dir, agent),
            "accuracy_before_rl": result.get("accuracy_before_rl"),
            "accuracy": result["metrics"].get("accuracy"),
            "mean_return": result["metrics"].get("mean_return"),
            "run_wall_time_s": result.get("wall_time_s"),
        }
        if cuda:
            out["max_memory_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return out
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def run_record(out_dir: Path, agent: str) -> dict[str, Any]:
    """A finished run directory's metrics: the SFT loss at both ends and each RL iteration's update statistics."""
    from agents.run.logger import read_metrics

    records = read_metrics(out_dir / "metrics.jsonl")
    sft = [r["sft/loss"] for r in records if r.get("sft/loss") is not None]
    iterations = []
    for r in records:
        if r.get("rollout/tokens_per_s") is None:  # SFT and evaluation records
            continue
        keep = {k: v for k, v in r.items() if k.startswith(PREFIX[agent]) or k in ROLLOUT_KEYS}
        iterations.append({"step": r["step"], **keep})
    first = iterations[0] if iterations else {}
    return {
        "first_ratio_max_error": first.get(f"{PREFIX[agent]}first_ratio_max_error"),
        "first_iteration": first,
        "iterations": iterations,
        "sft_loss_first": sft[0] if sft else None,
        "sft_loss_last": sft[-1] if sft else None,
    }


def torchrun_run(
    extra: tuple[str, ...], device: str, dtype: str, tiny: bool, threads: int | None, work: Path, timeout: float
) -> dict[str, Any]:
    """One ``python -m torch.distributed.run --nproc-per-node 1 -m agents.train`` grpo run (a subprocess).

    A plain copy of the repo has no ``lm_envs_conf`` package, so the child's ``PYTHONPATH`` gets a folder holding
    a link of that name to ``conf/`` (what ``pip install -e .`` maps), then the repo root.
    """
    out_dir = Path(tempfile.mkdtemp(prefix="torchrun-", dir=work))
    shim = Path(tempfile.mkdtemp(prefix="conf-shim-", dir=work))
    (shim / "lm_envs_conf").symlink_to(ROOT / "conf", target_is_directory=True)
    overrides = merge_overrides(run_overrides("grpo", device, dtype, tiny, threads), extra)
    overrides += [f"output_dir={out_dir}", f"hydra.run.dir={out_dir}"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1"]
    cmd += ["-m", "agents.train", *overrides]
    path = os.pathsep.join([str(shim), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(threads or 4)}
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"torchrun exit {done.returncode}: {(done.stderr or done.stdout)[-1500:]}")
        metrics = json.loads((out_dir / "eval.json").read_text())["metrics"]  # rank 0 wrote the run's evaluation
        return {
            "wall_s": round(wall, 2),
            **run_record(out_dir, "grpo"),
            "accuracy": metrics.get("accuracy"),
            "mean_return": metrics.get("mean_return"),
        }
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# (b) Throughput: collect vs generate, one GRPO update
# ------------------------------------------------------------------------------------------------


def build_models(codec: Any, tiny: bool) -> dict[str, tuple[str, Callable[[], Any]]]:
    """The models of the throughput section: name -> (description, builder)."""
    from agents.policy.models import build_default_model

    def large() -> Any:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        width, layers, heads, mlp = (64, 2, 2, 128) if tiny else (768, 12, 12, 3072)
        torch.manual_seed(0)
        config = LlamaConfig(
            hidden_size=width,
            intermediate_size=mlp,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=512,
            vocab_size=codec.vocab_size,
            bos_token_id=codec.eos_token_id,
            eos_token_id=codec.eos_token_id,
            pad_token_id=codec.pad_token_id,
            tie_word_embeddings=True,
        )
        return LlamaForCausalLM(config).eval()

    small = {"n_layer": 1, "n_embd": 32, "n_head": 2} if tiny else {}
    return {
        "default": (
            "embedded default GPT-2 (tiny: 1x32)" if tiny else "embedded default GPT-2 4x256",
            lambda: build_default_model(codec, seed=0, **small),
        ),
        "large": ("Llama 2x64 (tiny)" if tiny else "Llama 12x768, MLP 3072, from a config", large),
    }


class Timer:
    """Wall time of a block, CUDA-synchronised at both ends, with the block's peak GPU memory."""

    def __init__(self, device: Any) -> None:
        self.cuda = device.type == "cuda"

    def __enter__(self) -> Timer:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.start
        self.peak_mib = round(torch.cuda.max_memory_allocated() / 2**20, 1) if self.cuda else None


def rollout_vs_generate(model: Any, env_id: str, env_kwargs: dict[str, Any], batch: int, repeats: int, precision: Any):
    """Generated tokens/s of ``collect`` (env in the loop) and of ``model.generate`` on the same prompts."""
    import gymnasium as gym
    import numpy as np
    import torch

    from agents.policy.sampling import collect, left_pad_prompts

    device = next(model.parameters()).device
    venv = gym.make_vec(env_id, num_envs=batch, autoreset_mode="Disabled", **env_kwargs)
    budget, codec = venv.episodes.config.max_new_tokens, venv.codec
    options = {"split": "test", "index": list(range(batch))}
    obs, _ = venv.reset(options=options)
    ids, att = left_pad_prompts(obs, codec.pad_token_id)
    ids, att = ids.to(device), att.to(device)
    ours, theirs, peaks = [], [], {"collect": 0.0, "generate": 0.0}
    for r in range(repeats + 1):  # round 0 warms both paths up
        with Timer(device) as t_ours, precision.autocast():
            rollout = collect(model, venv, options=options, generator=torch.Generator(device=device).manual_seed(r))
        torch.manual_seed(r)
        with Timer(device) as t_theirs, torch.no_grad(), precision.autocast():
            out = model.generate(
                input_ids=ids,
                attention_mask=att,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=budget,
                pad_token_id=codec.pad_token_id,
                eos_token_id=codec.eos_token_id,
            )
        gen = out[:, ids.shape[1] :]
        is_eos = gen == codec.eos_token_id  # tokens up to and including each row's first EOS
        full = torch.full((len(gen),), gen.shape[1], device=gen.device)
        ends = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1, full)
        if r:
            ours.append(rollout.num_tokens / t_ours.seconds)
            theirs.append(int(ends.sum()) / t_theirs.seconds)
        if t_ours.peak_mib is not None:
            peaks = {
                "collect": max(peaks["collect"], t_ours.peak_mib),
                "generate": max(peaks["generate"], t_theirs.peak_mib),
            }
    return {
        "batch": batch,
        "max_new_tokens": budget,
        "collect_tokens_per_s": round(float(np.median(ours)), 1),
        "generate_tokens_per_s": round(float(np.median(theirs)), 1),
        "ratio_collect_over_generate": round(float(np.median(ours) / np.median(theirs)), 3),
        "collect_tokens_last": rollout.num_tokens,
        "peak_mib": peaks if device.type == "cuda" else None,
    }


def grpo_update_bench(model: Any, env_id: str, env_kwargs: dict[str, Any], batch: int, group: int, precision: Any):
    """Time one GRPO update (``reinforce_update``) on a grouped rollout of ``batch`` episodes (after a warm-up one)."""
    import gymnasium as gym
    import torch

    from agents.learners.reinforce import ReinforceConfig, reinforce_update
    from agents.policy.sampling import collect

    device = next(model.parameters()).device
    venv = gym.make_vec(env_id, num_envs=batch, autoreset_mode="Disabled", **env_kwargs)
    options = {"split": "train", "index": [i for i in range(batch // group) for _ in range(group)], "group_size": group}
    generator = torch.Generator(device=device).manual_seed(0)
    with Timer(device) as t_collect, precision.autocast():
        rollout = collect(model, venv, options=options, generator=generator)
    rollout = rollout.to(device)
    cfg = ReinforceConfig(num_envs=batch, group_size=group, lr=1e-6)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=1e-5)
    first = reinforce_update(model, None, optimizer, rollout, cfg, generator=generator, precision=precision)
    with Timer(device) as t_update:
        metrics = reinforce_update(model, None, optimizer, rollout, cfg, generator=generator, precision=precision)
    prompt_tokens = int(rollout.prompt_mask[::group].sum())  # each group's shared prompt runs once
    return {
        "batch": batch,
        "group_size": group,
        "generated_tokens": rollout.num_tokens,
        "collect_s": round(t_collect.seconds, 4),
        "update_s": round(t_update.seconds, 4),
        "update_generated_tokens_per_s": round(rollout.num_tokens / t_update.seconds, 1),
        "update_tokens_per_s_with_prompts": round((rollout.num_tokens + prompt_tokens) / t_update.seconds, 1),
        "peak_mib_collect": t_collect.peak_mib,
        "peak_mib_update": t_update.peak_mib,
        "first_ratio_max_error": first["reinforce/first_ratio_max_error"],
        "pg": metrics["reinforce/pg"],
        "entropy": metrics["reinforce/entropy"],
    }


def throughput(args: argparse.Namespace, device_name: str, report: Callable[[], None], out: dict[str, Any]) -> None:
    import gymnasium as gym
    import torch

    import lm_envs  # noqa: F401  (registers the LMEnv/* ids)
    from agents.policy.precision import Precision

    device = torch.device(device_name)
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    precision = Precision(dtype, device.type)
    env_id = "LMEnv/Math-v0"
    env_kwargs: dict[str, Any] = {"max_new_tokens": 8} if args.tiny else {}
    codec = gym.make(env_id, **env_kwargs).unwrapped.codec
    out.update(env=env_id, dtype=dtype, device=str(device), models={})
    if device.type != "cuda":
        out["note"] = "not CUDA: the figures below are CPU float32 (the --tiny smoke run), not the GPU's"
    for name, (desc, build) in build_models(codec, args.tiny).items():
        entry: dict[str, Any] = {"desc": desc}
        out["models"][name] = entry
        if time_left(args) < 30:
            entry["skipped"] = "time budget spent"
            continue
        try:
            model = build().to(device)
        except Exception as err:
            entry.update(error_record(err))
            continue
        try:
            measure_model(model, entry, args, env_id, env_kwargs, precision, report)
        finally:
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()


def measure_model(
    model: Any,
    entry: dict[str, Any],
    args: argparse.Namespace,
    env_id: str,
    env_kwargs: dict[str, Any],
    precision: Any,
    report: Callable[[], None],
) -> None:
    """Rollout vs generate at each batch size, then one GRPO update at the largest, into ``entry``."""
    device_name = str(next(model.parameters()).device)
    entry["params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    entry["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
    entry["rollout_vs_generate"] = []
    for batch in args.batches:
        if time_left(args) < 30:
            entry["rollout_vs_generate"].append({"batch": batch, "skipped": "time budget spent"})
            continue
        log(f"throughput {entry['desc']} batch {batch}: collect vs generate")
        entry["rollout_vs_generate"].append(
            with_retry(
                lambda b=batch: rollout_vs_generate(model, env_id, env_kwargs, b, args.repeats, precision),
                device_name,
            )
        )
        report()
    if time_left(args) < 30:
        entry["grpo_update"] = {"skipped": "time budget spent"}
        return
    batch = max(args.batches)
    log(f"throughput {entry['desc']}: one GRPO update on {batch} episodes")
    entry["grpo_update"] = with_retry(
        lambda: grpo_update_bench(model, env_id, env_kwargs, batch, args.group_size, precision), device_name
    )
    report()


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------

_START = time.perf_counter()


def time_left(args: argparse.Namespace) -> float:
    return args.budget_s - (time.perf_counter() - _START)


def compare_devices(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """CUDA bf16 vs CPU float32 per agent: the same init and SFT batches, so the SFT losses should agree closely."""
    out: dict[str, dict[str, Any]] = {}
    for agent in AGENTS:
        by_device = {r["device"]: r for r in runs if r["agent"] == agent and "skipped" not in r and "variant" not in r}
        gpu, cpu = by_device.get("cuda"), by_device.get("cpu")
        if gpu is None or cpu is None:
            continue
        row: dict[str, Any] = {}
        for key in ("sft_loss_first", "sft_loss_last", "first_ratio_max_error", "wall_s"):
            a, b = gpu.get(key), cpu.get(key)
            row[key] = {"cuda": a, "cpu": b, "abs_diff": abs(a - b) if a is not None and b is not None else None}
        a = gpu.get("first_iteration", {}).get("rollout/tokens_per_s")
        b = cpu.get("first_iteration", {}).get("rollout/tokens_per_s")
        row["rollout_tokens_per_s"] = {"cuda": a, "cpu": b, "speedup": a / b if a and b else None}
        out[agent] = row
    return out


def summary_lines(result: dict[str, Any]) -> list[str]:
    def fmt(x: Any, spec: str = ".4g") -> str:
        return "-" if x is None else format(x, spec)

    lines = []
    for r in result["runs"]:
        head = f"run {r.get('variant', r['agent']):4s} {r['device']:4s} {r['dtype']:8s}"
        if "skipped" in r:
            lines.append(f"{head} skipped: {r['skipped']}")
            continue
        status = "ok" if r["ok"] else "FAILED"
        first = r.get("first_iteration", {})
        losses = {k.split("/")[-1]: v for k, v in first.items() if k.split("/")[-1] in ("pg", "vf", "loss")}
        lines.append(
            f"{head} {status}: ratio_err={fmt(r.get('first_ratio_max_error'))} "
            + " ".join(f"{k}={fmt(v)}" for k, v in losses.items())
            + f" tok/s={fmt(first.get('rollout/tokens_per_s'), '.0f')} sft_loss={fmt(r.get('sft_loss_first'))}"
            f"->{fmt(r.get('sft_loss_last'))} wall={fmt(r.get('wall_s'), '.1f')}s"
            f" mem={fmt(r.get('max_memory_allocated_mib'), '.0f')}MiB"
            + (f" error={r['error'][:160]}" if "error" in r else "")
        )
    for agent, row in result.get("comparison", {}).items():
        sft = row["sft_loss_first"]
        lines.append(
            f"cuda vs cpu {agent}: sft loss first {fmt(sft['cuda'])} vs {fmt(sft['cpu'])}, last "
            f"{fmt(row['sft_loss_last']['cuda'])} vs {fmt(row['sft_loss_last']['cpu'])}, rollout speed-up "
            f"{fmt(row['rollout_tokens_per_s']['speedup'], '.2f')}x"
        )
    for name, m in result.get("throughput", {}).get("models", {}).items():
        for b in m.get("rollout_vs_generate", []):
            if "collect_tokens_per_s" in b:
                lines.append(
                    f"throughput {name} batch {b['batch']}: collect {b['collect_tokens_per_s']:.0f} tok/s, "
                    f"generate {b['generate_tokens_per_s']:.0f} tok/s ({b['ratio_collect_over_generate']:.2f}x)"
                )
            else:
                lines.append(f"throughput {name} batch {b.get('batch')}: {b.get('error', b.get('skipped'))}"[:300])
        u = m.get("grpo_update", {})
        if "update_s" in u:
            lines.append(
                f"grpo update {name} batch {u['batch']}: {u['update_s']:.3f}s, "
                f"{u['update_generated_tokens_per_s']:.0f} gen tok/s, peak {u['peak_mib_update']} MiB"
            )
        elif u:
            lines.append(f"grpo update {name}: {u.get('error', u.get('skipped'))}"[:300])
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda when available")
    parser.add_argument("--tiny", action="store_true", help="tiny models and budgets: a smoke run of the script")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (model.threads of the runs)")
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=AGENTS)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--torchrun", nargs="*", default=list(TORCHRUN), choices=list(TORCHRUN))
    parser.add_argument("--sections", nargs="+", default=["runs", "throughput"], choices=["runs", "throughput"])
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="default 64 256 (tiny: 4)")
    parser.add_argument("--group-size", type=int, default=8, help="GRPO group size of the update benchmark")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds after a warm-up (default 2, tiny 1)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip what would start after this many seconds")
    parser.add_argument("--no-cpu-runs", action="store_true", help="on CUDA, skip the float32 CPU runs")
    default_out = os.path.join(os.environ["OUT"], "cuda_check.json") if os.environ.get("OUT") else None
    parser.add_argument("--out", default=default_out, help="also write the JSON here (default $OUT/cuda_check.json)")
    args = parser.parse_args(argv)
    args.batches = args.batches or ([4] if args.tiny else [64, 256])
    args.repeats = args.repeats if args.repeats is not None else (1 if args.tiny else 2)
    if args.tiny:
        args.group_size = min(args.group_size, min(args.batches))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stdout = sys.stdout
    result: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "out"}, "notes": [], "errors": []}

    def report() -> None:
        result["elapsed_s"] = round(time.perf_counter() - _START, 1)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(args.out + ".tmp")
            tmp.write_text(json.dumps(result, indent=1, default=str))
            tmp.replace(args.out)

    with contextlib.redirect_stdout(sys.stderr):  # libraries' prints go to the log; stdout is the JSON
        try:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded; never wait on a network
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import torch

            if args.threads:
                torch.set_num_threads(args.threads)
            device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
            result["meta"] = {"versions": versions(), **device_info(device), "conf": ensure_conf_module()}
            import agents

            result["meta"]["agents_path"] = str(Path(agents.__file__).parent)
            if device == "cuda" and not torch.cuda.is_available():
                raise RuntimeError("--device cuda, but torch sees no CUDA device")
        except Exception as err:
            result["errors"].append({"section": "setup", **error_record(err)})
            report()
            print(json.dumps(result, indent=1, default=str), file=stdout)
            return 1
        report()
        log(f"device {device}, torch {torch.__version__}, conf {result['meta']['conf']}")

        plans = [("cuda", "bfloat16")] if device == "cuda" else []
        if device != "cuda":
            result["notes"].append("CUDA runs and CUDA throughput skipped: --device cpu (CPU float32 only)")
        cpu_runs = device != "cuda" or not args.no_cpu_runs
        result["runs"] = []
        work = Path(tempfile.mkdtemp(prefix="cuda_check-"))
        try:
            if "runs" in args.sections:
                for dev, dtype in plans:
                    run_all(args, dev, dtype, work, result, report)
                run_variants(args, device, "bfloat16" if device == "cuda" else "float32", work, result, report)
            if "throughput" in args.sections:
                result["throughput"] = {}
                try:
                    throughput(args, device, report, result["throughput"])
                except Exception as err:
                    result["errors"].append({"section": "throughput", **error_record(err)})
                report()
            if "runs" in args.sections and cpu_runs:
                run_all(args, "cpu", "float32", work, result, report)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        try:
            result["comparison"] = compare_devices(result["runs"])
            result["summary"] = summary_lines(result)
        except Exception as err:
            result["summary"] = []
            result["errors"].append({"section": "summary", **error_record(err)})
        runs = [r for r in result["runs"] if "skipped" not in r]
        steps = runs + [
            step
            for m in result.get("throughput", {}).get("models", {}).values()
            for step in [*m.get("rollout_vs_generate", []), m.get("grpo_update", {})]
            if "ok" in step
        ]
        result["ok"] = bool(steps) and all(s["ok"] for s in steps) and not result["errors"]
        report()
    for line in result["summary"]:
        log(line)
    print(json.dumps(result, indent=1, default=str), file=stdout)
    return 0 if result["ok"] else 2


def run_all(
    args: argparse.Namespace, device: str, dtype: str, work: Path, result: dict[str, Any], report: Callable[[], None]
) -> None:
    for agent in args.agents:
        entry: dict[str, Any] = {"agent": agent, "device": device, "dtype": dtype}
        result["runs"].append(entry)
        if time_left(args) < 45:
            entry["skipped"] = "time budget spent"
            continue
        log(f"run {agent} on {device} {dtype}")
        entry.update(with_retry(lambda a=agent: one_run(a, device, dtype, args.tiny, args.threads, work), device))
        report()


def run_variants(
    args: argparse.Namespace, device: str, dtype: str, work: Path, result: dict[str, Any], report: Callable[[], None]
) -> None:
    """The VARIANTS and TORCHRUN runs on the check's device (one run each)."""
    for name in [*args.variants, *args.torchrun]:
        agent, extra, needs_cuda = VARIANTS.get(name, ("grpo", TORCHRUN.get(name, ()), False))
        run_dtype = next((o.split("=", 1)[1] for o in extra if o.startswith("model.dtype=")), dtype)
        entry: dict[str, Any] = {"variant": name, "agent": agent, "device": device, "dtype": run_dtype}
        entry["overrides"] = list(extra)
        result["runs"].append(entry)
        if needs_cuda and not device.startswith("cuda"):
            entry["skipped"] = "needs CUDA"
            continue
        if time_left(args) < 45:
            entry["skipped"] = "time budget spent"
            continue
        log(f"run {name} on {device} {run_dtype}")
        if name in TORCHRUN:
            step = functools.partial(
                torchrun_run, extra, device, dtype, args.tiny, args.threads, work, max(30.0, time_left(args))
            )
        else:
            step = functools.partial(one_run, agent, device, dtype, args.tiny, args.threads, work, extra)
        entry.update(with_retry(step, device))
        report()


if __name__ == "__main__":
    sys.exit(main())
