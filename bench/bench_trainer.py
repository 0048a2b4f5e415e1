"""The trainer core on CPU: one GRPO iteration before vs after the Learner refactor, and 2-process gloo vs 1 process.

Two measurements, each printed as one JSON object (``--out`` also writes them to a file):

``refactor``: the same GRPO iteration (rollout of 64 episodes = 8 problems x K=8 on ``LMEnv/Math-v0``, then one
REINFORCE/GRPO update) with the code at ``--before`` (a git ref, checked out into a temporary worktree) and with
this tree, alternating fresh subprocesses (before, after, before, ...) so that machine drift hits both sides;
the same model (the main job's 2x128 rotary default), seeds and settings on both sides. Reports the median
seconds of an iteration per side and their ratio (after / before: < 1 is faster).

``dp``: ``torchrun`` over 1 process (``--threads`` torch threads) vs 2 processes (``--threads / 2`` each) on the
same global batch (``agent.num_envs`` episodes; each rank plays half). Per iteration: seconds of the rollout,
of the update, and of an all-reduce of a float32 buffer the size of the model's gradients (what DDP sends per
backward), whose share of the update is the communication cost. The 2-process run is measured twice: under
DDP and under FSDP2 (``train.strategy=fsdp``), with the weights rank 0 holds and its peak RSS.

    python bench/bench_trainer.py refactor [--before 348e768] [--rounds 5]
    python bench/bench_trainer.py dp [--iterations 4]

Run it alone on the machine: two torch processes with 2 threads each on 2 cores slow each other 10-30x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# One GRPO iteration, written against both layouts (the module paths moved in the refactor).
ITERATION = r"""
import json, sys, time
import gymnasium as gym, torch
import lm_envs
torch.set_num_threads(int(sys.argv[1]))
try:
    from agents.policy.models import build_default_model
    from agents.policy.sampling import collect
    from agents.learners.reinforce import ReinforceConfig, reinforce_update
except ImportError:  # before the refactor
    from agents.models import build_default_model
    from agents.rollout import collect
    from agents.reinforce import ReinforceConfig, reinforce_update
iterations = int(sys.argv[2])
venv = gym.make_vec("LMEnv/Math-v0", num_envs=64, autoreset_mode="Disabled")
model = build_default_model(venv.codec, seed=0, arch="llama", n_layer=2, n_embd=128)
cfg = ReinforceConfig(baseline="grpo", group_size=8, num_envs=64, lr=1e-4)
optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=1e-5)
times = []
for it in range(iterations + 1):  # the first warms up
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(it)
    rollout = collect(model, venv, seed=it * 64, options={"group_size": 8}, generator=gen)
    reinforce_update(model, None, optimizer, rollout, cfg, generator=gen)
    times.append(time.perf_counter() - start)
print(json.dumps({"seconds": times[1:], "tokens": int(rollout.mask.sum())}))
"""


def refactor(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.before],
            check=True,
            capture_output=True,
        )
        try:
            sides = {"before": before, "after": ROOT}
            seconds: dict[str, list[float]] = {k: [] for k in sides}
            for _ in range(args.rounds):
                for side, tree in sides.items():
                    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONWARNINGS": "ignore"}
                    out = subprocess.run(
                        [sys.executable, "-c", ITERATION, str(args.threads), str(args.iterations)],
                        cwd=tree,
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    seconds[side] += json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    return {
        "bench": "refactor",
        "before_ref": args.before,
        "threads": args.threads,
        "iterations_per_side": {k: len(v) for k, v in seconds.items()},
        "median_iteration_s": med,
        "spread_s": {k: [min(v), max(v)] for k, v in seconds.items()},
        "ratio_after_over_before": med["after"] / med["before"],
    }


# One rank of the data-parallel measurement (run under torchrun).
DP_RANK = r"""
import json, os, sys, time
import torch
torch.set_num_threads(int(sys.argv[1]))
from agents.learners.base import RunContext, collect_iteration, make_train_venv
from agents.learners.reinforce import ReinforceConfig, reinforce_update
from agents.policy.models import build_default_model
from agents.run.distributed import init_distributed
import lm_envs, gymnasium as gym
dist, device = init_distributed("cpu", sys.argv[4])
iterations, num_envs = int(sys.argv[2]), int(sys.argv[3])
probe = gym.make("LMEnv/Math-v0").unwrapped
model = build_default_model(probe.codec, seed=0, arch="llama", n_layer=2, n_embd=128)
ctx = RunContext("LMEnv/Math-v0", {}, probe.task, probe.codec, 0, torch.device("cpu"), dist=dist)
cfg = ReinforceConfig(baseline="grpo", group_size=8, num_envs=num_envs, lr=1e-4)
venv = make_train_venv(cfg, ctx)
ddp = dist.wrap(model)
optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=1e-5)
flat = torch.zeros(sum(p.numel() for p in model.parameters()))
rows = []
for it in range(iterations + 1):
    dist.barrier()
    gen = ctx.generator(it)
    t0 = time.perf_counter()
    rollout, _ = collect_iteration(model, venv, cfg, ctx, it, gen)
    t1 = time.perf_counter()
    reinforce_update(ddp, None, optimizer, rollout, cfg, generator=gen, dist=dist)
    t2 = time.perf_counter()
    dist.sum_(flat)
    t3 = time.perf_counter()
    times = dist.gather_objects([t1 - t0, t2 - t1, t3 - t2])
    if it:
        rows.append({k: max(t[i] for t in times) for i, k in enumerate(("rollout_s", "update_s", "allreduce_s"))})
import resource
held = sum(getattr(p, "_local_tensor", p).numel() for p in model.parameters())
for r in rows:
    r["params_on_rank0"] = held
    r["peak_rss_mb_rank0"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if dist.is_main:
    print(json.dumps(rows), flush=True)
from agents.run.distributed import close_distributed
close_distributed()  # tear the group down before exit (else an intermittent abort at interpreter exit)
"""


def dp(args: argparse.Namespace) -> dict:
    results = {}
    for nproc, strategy in ((1, "ddp"), (2, "ddp"), (2, "fsdp")):
        threads = max(1, args.threads // nproc)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
        for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(key, None)
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write(DP_RANK)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", f.name]
        out = subprocess.run(
            [*cmd, str(threads), str(args.iterations), str(args.num_envs), strategy],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if out.returncode:
            raise RuntimeError(f"{nproc} process(es), {strategy}: exit {out.returncode}\n{out.stderr[-3000:]}")
        rows = json.loads(out.stdout.strip().splitlines()[-1])
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        med["iteration_s"] = med["rollout_s"] + med["update_s"]
        med["allreduce_share_of_update"] = med["allreduce_s"] / med["update_s"] if nproc > 1 else 0.0
        results[f"{nproc}_process" + ("_fsdp" if strategy == "fsdp" else "")] = {"threads_per_process": threads, **med}
    one, two, fsdp = results["1_process"], results["2_process"], results["2_process_fsdp"]
    return {
        "bench": "dp",
        "global_episodes": args.num_envs,
        "iterations": args.iterations,
        **results,
        "ratio_2_over_1": {k: two[k] / one[k] for k in ("rollout_s", "update_s", "iteration_s")},
        "ratio_fsdp_over_ddp_2_process": {
            k: fsdp[k] / two[k]
            for k in ("rollout_s", "update_s", "iteration_s", "params_on_rank0", "peak_rss_mb_rank0")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="which", required=True)
    a = sub.add_parser("refactor")
    a.add_argument("--before", default="348e768", help="git ref of the code before the refactor")
    a.add_argument("--rounds", type=int, default=5)
    a.add_argument("--iterations", type=int, default=3, help="timed iterations per subprocess (after a warm-up)")
    b = sub.add_parser("dp")
    b.add_argument("--iterations", type=int, default=4)
    b.add_argument("--num-envs", type=int, default=128)
    for p in (a, b):
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--out", default=None)
    args = parser.parse_args()
    result = refactor(args) if args.which == "refactor" else dp(args)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
