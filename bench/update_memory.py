"""Peak memory of one GRPO update, and what each memory knob buys: whole pass, accumulation, checkpointing.

Arms, each one :func:`agents.learners.reinforce.reinforce_update` (GRPO, one pass, one Adam step) in its own
process on the same synthetic rollout (``--prompts`` groups of ``--group`` completions of ``--new-tokens``
tokens after a ``--prompt-tokens`` prompt, token ids drawn uniformly, rewards 0/1: the memory does not depend
on them):

* ``one_pass``: the whole batch in one forward and backward (``agent.num_minibatches=1``);
* ``mb4``: the batch's gradient accumulated over 4 chunks of whole groups (``agent.num_minibatches=4``; the
  same step, a quarter of the rows per forward);
* ``checkpointed``: one pass with activation checkpointing (``model.gradient_checkpointing=true``): every
  layer's activations recomputed in the backward (and one full forward per row: no shared prompt).

Reported per arm: peak resident memory growth over the update (``ru_maxrss`` after minus the RSS before it;
on a GPU ``torch.cuda.max_memory_allocated`` growth), seconds per update (median of ``--repeats`` after one
warm-up), and the log-probs' largest difference from ``one_pass`` after the update (the same step: they
must agree up to float rounding).

    OMP_NUM_THREADS=1 python bench/update_memory.py --model smollm2 --lora 16 --out bench/results/update_memory.json
    python bench/update_memory.py --model tiny --quick                     # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: arm -> (num_minibatches, activation checkpointing)
ARMS = {"one_pass": (1, False), "mb4": (4, False), "checkpointed": (1, True)}


def _rss_mib() -> float:
    """Current resident set size in MiB (from /proc; ``ru_maxrss`` only gives the peak)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_rollout(vocab: int, prompts: int, group: int, prompt_tokens: int, new_tokens: int, seed: int) -> Any:
    """A grouped rollout of random token ids with 0/1 outcome rewards (real-sized, content irrelevant)."""
    import torch

    from agents.policy.sampling import Rollout

    g = torch.Generator().manual_seed(seed)
    n = prompts * group
    prompt = torch.randint(0, vocab, (prompts, prompt_tokens), generator=g).repeat_interleave(group, 0)
    tokens = torch.randint(0, vocab, (n, new_tokens), generator=g)
    lengths = torch.randint(new_tokens // 2, new_tokens + 1, (n,), generator=g)
    mask = torch.arange(new_tokens)[None] < lengths[:, None]
    rewards = torch.zeros(n, new_tokens)
    rewards[torch.arange(n), lengths - 1] = torch.randint(0, 2, (n,), generator=g).float()
    return Rollout(
        prompt_ids=prompt,
        prompt_mask=torch.ones_like(prompt),
        tokens=tokens,
        mask=mask,
        logprobs=torch.zeros(n, new_tokens),
        rewards=rewards,
        infos=[{} for _ in range(n)],
        reset_infos=[{} for _ in range(n)],
        group_size=group,
    )


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One arm in this process: build the model, score the rollout once (old log-probs), time the updates."""
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(spec["threads"])
    import agents.policy.scoring as scoring
    import lm_envs
    from agents.learners.reinforce import ReinforceConfig, reinforce_update
    from agents.policy.lora import LoRASection, add_lora
    from agents.policy.models import build_default_model, enable_activation_checkpointing, load_model, logits_width

    minibatches, recompute_layers = ARMS[spec["arm"]]
    device = torch.device(spec["device"])
    if spec["model"] == "tiny":
        model = build_default_model(lm_envs.load_codec(), seed=0)
    else:
        from agents.policy.pretrained import resolve_model

        path = resolve_model(spec["model"], progress=False)
        model = load_model(path, lm_envs.load_codec(path))
    if spec["lora"]:
        add_lora(model, LoRASection(r=spec["lora"]), seed=0)
    model.to(device)
    if recompute_layers:
        enable_activation_checkpointing(model)
    rollout = synthetic_rollout(
        logits_width(model), spec["prompts"], spec["group"], spec["prompt_tokens"], spec["new_tokens"], seed=0
    )
    rollout = type(rollout)(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in vars(rollout).items()})
    n = rollout.tokens.shape[0]
    with torch.no_grad():  # the sampler's log-probs: the same weights, so the first ratio is 1
        rollout.logprobs.copy_(scoring.policy_logprobs(model, rollout, torch.arange(n, device=device), 0.7)[0])
    cfg = ReinforceConfig(
        baseline="grpo", lr=1e-5, num_envs=n, group_size=spec["group"], temperature=0.7, num_minibatches=minibatches
    )
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, eps=1e-5)
    cuda = device.type == "cuda"
    seconds = []
    rss_before = _rss_mib()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_before = torch.cuda.memory_allocated()
    for _ in range(1 + spec["repeats"]):  # the first is a warm-up (allocator, optimizer state)
        t0 = time.perf_counter()
        reinforce_update(model, None, optimizer, rollout, cfg, generator=torch.Generator().manual_seed(0))
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
    with torch.no_grad():  # the updated policy's log-probs: every arm took the same steps
        logp = scoring.policy_logprobs(model, rollout, torch.arange(n, device=device), 0.7)[0]
    out = {
        "arm": spec["arm"],
        "peak_rss_growth_mib": round(_peak_rss_mib() - rss_before, 1),
        "rss_before_update_mib": round(rss_before, 1),
        "seconds_per_update": round(statistics.median(seconds[1:]), 3),
        "logp_after": logp[rollout.mask].float().cpu().tolist(),
    }
    if cuda:
        out["cuda_peak_growth_mib"] = round((torch.cuda.max_memory_allocated() - cuda_before) / 2**20, 1)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="tiny (the embedded default), smollm2, or a model directory")
    parser.add_argument("--lora", type=int, default=16, help="LoRA rank (0: full fine-tuning)")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--prompt-tokens", type=int, default=48)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="timed updates per arm (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if _has_cuda() else "cpu")
    parser.add_argument("--arms", nargs="+", choices=tuple(ARMS), default=list(ARMS))
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test")
    parser.add_argument("--out", default=None, help="write the JSON here too")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return {}
    if args.quick:
        args.prompts, args.group, args.prompt_tokens, args.new_tokens, args.repeats = 2, 2, 4, 4, 1
    spec = {k: getattr(args, k) for k in ("model", "lora", "prompts", "group", "prompt_tokens", "new_tokens")}
    spec.update(repeats=args.repeats, threads=args.threads, device=args.device)
    runs = {}
    for arm in args.arms:  # a fresh process per arm: ru_maxrss is that arm's own peak
        done = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps({**spec, "arm": arm})],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": str(args.threads)},
        )
        if done.returncode != 0:
            raise SystemExit(f"logprob_memory: arm {arm} failed:\n{done.stderr[-3000:]}")
        runs[arm] = json.loads(done.stdout.strip().splitlines()[-1])
    logps = {arm: r.pop("logp_after") for arm, r in runs.items()}
    ratios = {}
    if "one_pass" in runs:  # every arm took the same update steps: its log-probs must agree with one_pass's
        base = runs["one_pass"]
        key = "cuda_peak_growth_mib" if args.device.startswith("cuda") else "peak_rss_growth_mib"
        for arm, r in runs.items():
            r["max_logp_diff_vs_one_pass"] = max(
                (abs(a - b) for a, b in zip(logps[arm], logps["one_pass"])), default=0.0
            )
            if arm != "one_pass":
                ratios[f"{arm}_vs_one_pass"] = {
                    "peak_memory": round(r[key] / max(base[key], 1e-9), 3),
                    "seconds": round(r["seconds_per_update"] / max(base["seconds_per_update"], 1e-9), 3),
                }
    import torch

    result = {
        "benchmark": "peak memory of one GRPO update: one pass vs accumulation vs activation checkpointing",
        "settings": spec,
        "rows": args.prompts * args.group,
        "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__, "device": args.device},
        "runs": runs,
        "ratios": ratios,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return result


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    main()
