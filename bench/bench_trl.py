"""Training throughput: our GRPO / RLOO / PPO updates vs TRL's GRPOTrainer and RLOOTrainer, side by side.

Every variant trains the same model on the same task for a few updates and reports seconds per
update (generation + reward + loss + backward + optimizer step), generated tokens/s (completion tokens
actually generated, EOS included, over the whole update time) and its peak resident memory. Prints
one JSON document with every variant and the throughput ratios ours / TRL.

    python bench/bench_trl.py [--updates 5] [--warmup 2] [--rounds 3] [--paired-rounds 3] [--threads 2]
    python bench/bench_trl.py --quick --variants ours_grpo ours_rloo ours_ppo ours_ppo_grouped   # smoke test
    python bench/bench_trl.py --model smollm2 --lora 16 0 --variants ours_grpo trl_grpo --threads 1 \
        --prompts 4 --group 8 --max-new-tokens 64 --temperature 0.7 --updates 2 --warmup 1 --rounds 1 --paired-rounds 1

``--model`` trains a pretrained model instead of the tiny one (``smollm2``, a transformers directory or a
``.gguf`` file; no SFT start): the env renders its prompts through the model's chat template and TRL gets
them as conversations, rendered by the same template (every prompt's token ids are checked equal to the
env's). ``--lora R [R ...]`` measures each rank in turn (0: full fine-tuning; ours injects the adapters with
:func:`agents.policy.lora.add_lora`, TRL gets the same ``peft.LoraConfig``: alpha 32, no dropout, every linear
layer but the head); with several ranks the JSON holds one benchmark per rank under ``by_lora``.

Two measurements:

* **Separate runs** (``variants``): each variant in its own subprocess, so ``ru_maxrss`` is that
  variant's peak RSS; ``--rounds`` rounds, interleaved (round ``r`` runs every variant, order rotated by ``r``).
* **Paired runs** (``paired``): one subprocess per pair (ours, TRL counterpart) holding both, alternating
  update by update: TRL's step ``k``, then our update ``k`` (run from a Trainer callback, outside TRL's
  timed step). Both sides of each ratio are then measured seconds apart, under the same load; this is the
  ratio to trust on a shared machine. The headline ``ratios[...]["tokens_per_s"]`` is the paired one when
  paired runs were made. Peak RSS is not reported for paired runs (one process holds both).

TRL's seconds per update is the time from ``on_step_begin`` to ``on_step_end`` (generation, reward,
loss, backward, optimizer step); the Trainer's own work between steps (dataloader, logging) is left
out of it (conservative for the ratio) and reported as ``loop_overhead_s_per_update``. Ours is
``collect`` plus the update, i.e. a whole iteration of :func:`agents.run.run` without logging.

Variants:

* ``ours_grpo``: :func:`agents.learners.reinforce.reinforce_update`, baseline ``grpo`` (group mean/std), 8 prompts x 8
  samples, one optimizer step per rollout, rollouts through ``TokenVectorEnv`` (:func:`agents.policy.sampling.collect`).
* ``ours_rloo``: the same with the leave-one-out baseline.
* ``ours_ppo``: :func:`agents.learners.ppo.ppo_update` (shared value head, GAE), 64 prompts x 1 sample, one epoch of
  one minibatch (one optimizer step per rollout, like every other variant), KL coefficient 0 (so no
  reference model is built or run).
* ``ours_ppo_grouped``: the same on the GRPO variants' batch, 8 prompts x 8 samples (``group_size=8``):
  the loss forward (and the reference's, in ``_kl``) runs each prompt once for its 8 completions.
* ``ours_ppo_kl``, ``ours_ppo_grouped_kl``: ``ours_ppo`` and ``ours_ppo_grouped`` with KL coefficient 0.05
  (TRL PPO's default): a frozen reference model is kept and scored on every rollout.
* ``ours_ppo_4x4``: ``ours_ppo`` with our default PPO schedule (4 epochs x 4 minibatches = 16 optimizer
  steps per rollout).
* Only ``ours_grpo``, ``ours_rloo``, ``ours_ppo`` and ``ours_ppo_grouped`` run by default; ``--variants``
  adds the others.
* ``trl_grpo``: ``trl.GRPOTrainer`` (its default ``loss_type="dapo"``: token-level mean over the batch,
  as ours; ``scale_rewards="group"``: GRPO's std normalisation, as ours).
* ``trl_rloo``: ``trl.RLOOTrainer`` (leave-one-out baseline, sequence-level loss).
* TRL PPO: not run. trl 1.16 ships no PPO trainer at all (``PPOTrainer`` left the top-level package in
  v1.10 for ``trl.experimental.ppo`` and was then removed, huggingface/trl#7020), and the PPO trainer
  it had could not take a task reward function anyway: its ``reward_model`` had to be a
  ``transformers`` sequence-classification model (huggingface/trl#2273). Our PPO is therefore compared
  with TRL's GRPOTrainer only, as a cross-algorithm reference, in ``ratios``.

What is the same for every variant:

* Model: the embedded tiny default (:func:`agents.policy.models.build_default_model`, seed 0), warm-started by
  ``--sft-steps`` (150) steps of :func:`agents.learners.sft.train_sft` on the gold demonstrations so completions
  have realistic lengths (the solution, ``#### answer``, then EOS). The SFT weights are computed once and
  cached in ``--cache-dir`` (default: the temp dir), and every variant loads those exact weights. CPU,
  float32, ``torch.set_num_threads(--threads)`` (2) in every worker. TRL gets the codec as a Hugging Face
  tokenizer (:func:`lm_envs.core.tokenizer.save_codec`); it tokenizes the prompts to the same ids as the env.
* Task and reward: ``LMEnv/Math-v0``'s outcome reward (:class:`lm_envs.tasks.math.rewards.MathReward`, 1 if
  the graded final answer equals the gold one, else 0). TRL gets it as a reward function of the decoded
  completion with the gold answer as a dataset column.
* Prompts and batch: update ``k`` uses train problems ``k*P .. k*P+P-1`` (TRL: dataset in that order,
  ``shuffle_dataset=False``); 8 prompts x 8 generations = 64 completions per update (``ours_ppo``: 64
  prompts x 1).
* Sampling: temperature 1.0, no top-k / top-p, at most 96 new tokens.
* Optimisation: Adam, the same learning rate (2e-5, constant), eps 1e-5, no weight decay, gradient
  clipping at 1.0, KL coefficient 0 (TRL GRPO's default ``beta`` is 0.0; RLOO's is 0.05 and is set to 0;
  the ``_kl`` PPO variants excepted),
  one optimizer step per generation batch (TRL: ``per_device_train_batch_size=64``,
  ``gradient_accumulation_steps=1``, ``num_iterations=1``), clip epsilon 0.2, no gradient checkpointing
  (TRL defaults it on; set off, as ours has none), no bf16 (TRL defaults it on; float32 here).

What differs and could not be made equal:

* Generation. Ours steps the token env once per generated token with a KV cache and drops finished rows
  from the batch (their compute stops); the env grades each episode as it ends. TRL calls
  ``model.generate`` (KV cache too), which keeps finished rows in the batch until every row is done,
  then decodes the completions and calls the reward function.
* Stopping rule. Our env ends an episode on EOS *or* when the ``#### answer`` line closes (a newline
  after it); TRL stops on EOS only. After the SFT warm start the model writes EOS right after the answer,
  so the two give nearly the same lengths (``mean_completion_tokens`` in the output shows them).
* Old log-probs. Ours keeps the sampling log-probs from the rollout. TRL's GRPOTrainer skips its
  old-log-prob pass in this configuration (generation aligned with the optimizer step), as ours does;
  TRL's RLOOTrainer always runs one extra no-grad forward over the batch to compute them.
* Loss forward. TRL computes logits for the completion positions only (``logits_to_keep``); ours
  computes them for prompt + completion and slices (the tiny model's vocabulary is 956 tokens, so this
  costs little). TRL's RLOO aggregates the loss per sequence; ours and TRL's GRPO per token.
* PPO extras. Ours trains a value head; the old values come with the rollout (the shared value head
  on the sampling forwards' hidden states, as :func:`agents.run.run` collects them). The ``_kl`` variants
  score the rollout once more under the frozen reference; at KL coefficient 0 it is neither built nor run.
* Optimizer implementation. TRL uses its default ``adamw_torch_fused`` (AdamW with weight decay 0, i.e.
  Adam); ours ``torch.optim.Adam`` as :func:`agents.run.run` builds it. Same update rule.
* Loop overhead. TRL's Trainer adds its own per-step work (dataloader, metrics, logging every step
  here), reported apart (see above).
* Memory. Peak RSS includes each side's imports (TRL pulls in datasets, accelerate, pandas, pyarrow);
  ``rss_before_train_mib`` (peak before the first update) and ``rss_train_growth_mib`` separate them.

Contention. The measurement is only as good as the machine is quiet: on a shared 2-core machine other
processes steal time from either side, and two torch processes on two cores slow each other down
several-fold. Hence the paired runs above, and the separate runs' ratios taken per round (every round
listed) and summarised by their median. The 1-minute load average before and after each worker and the
process CPU seconds per update (``cpu_s_per_update``; ``cpu_util`` = CPU s / wall s, close to
``threads`` when the worker had its cores to itself) are reported so the contention is visible.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ENV_ID = "LMEnv/Math-v0"
#: Our PPO variants: (grouped: ``--group`` samples per prompt, else ``--prompts x --group`` prompts x 1;
#: KL coefficient; epochs; minibatches).
PPO_VARIANTS = {
    "ppo": (False, 0.0, 1, 1),
    "ppo_grouped": (True, 0.0, 1, 1),
    "ppo_kl": (False, 0.05, 1, 1),
    "ppo_grouped_kl": (True, 0.05, 1, 1),
    "ppo_4x4": (False, 0.0, 4, 4),
}
OURS = ("ours_grpo", "ours_rloo", *(f"ours_{v}" for v in PPO_VARIANTS))
TRL = ("trl_grpo", "trl_rloo")
VARIANTS = OURS + TRL
DEFAULT_VARIANTS = ("ours_grpo", "ours_rloo", "ours_ppo", "ours_ppo_grouped", "trl_grpo", "trl_rloo")
#: Which TRL variant each of ours is measured against (PPO: TRL has none, see the module docstring).
PAIRS = {"ours_grpo": "trl_grpo", "ours_rloo": "trl_rloo", **{f"ours_{v}": "trl_grpo" for v in PPO_VARIANTS}}
TRL_PPO_NOTE = (
    "not run: trl 1.16 ships no PPO trainer (moved to trl.experimental.ppo in v1.10, then removed: "
    "huggingface/trl#7020), and its PPO trainer took only a transformers reward *model*, never a task reward "
    "function (huggingface/trl#2273); our PPO is compared with trl_grpo instead."
)
INSTALL_HINT = 'pip install -e ".[bench]"'
TARGET_RATIO = 1.5


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(DEFAULT_VARIANTS))
    parser.add_argument("--updates", type=int, default=5, help="measured updates per run")
    parser.add_argument("--warmup", type=int, default=2, help="updates run before measuring")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved separate runs of every variant")
    parser.add_argument("--paired-rounds", type=int, default=3, help="paired runs of each (ours, TRL) pair")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per update (PPO: prompts x group)")
    parser.add_argument("--group", type=int, default=8, help="generations per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every worker")
    parser.add_argument("--sft-steps", type=int, default=150, help="SFT warm-start steps (0: untrained model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--model", default=None, help="smollm2, a transformers directory or a .gguf file (default: the tiny model)"
    )
    parser.add_argument(
        "--lora",
        type=int,
        nargs="+",
        default=[0],
        help="LoRA ranks to measure, one benchmark each (0: full fine-tuning)",
    )
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument(
        "--micro-batches",
        type=int,
        default=1,
        help="gradient accumulation steps per update, both sides (still one optimizer step per batch)",
    )
    parser.add_argument("--cache-dir", default=None, help="where the SFT weights are cached (default: temp dir)")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    parser.add_argument("--worker", choices=(*VARIANTS, "sft", "pair"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:  # child process: one job, result written to spec["out"]
        spec = json.loads(args.spec)
        result = WORKERS[args.worker](spec)
        Path(spec["out"]).write_text(json.dumps(result))
        return result
    if args.quick:
        args.updates, args.warmup, args.rounds, args.paired_rounds = 1, 1, 1, min(args.paired_rounds, 1)
        args.prompts, args.group, args.max_new_tokens, args.sft_steps = 2, 4, 16, 0
    wanted_trl = [v for v in args.variants if v in TRL]
    if wanted_trl and importlib.util.find_spec("trl") is None:
        raise SystemExit(
            f"bench_trl.py: variants {wanted_trl} need trl, which is not installed. Install the benchmark extra "
            f"with `{INSTALL_HINT}` (or run only our variants: --variants {' '.join(OURS[:4])})."
        )
    if args.model is not None:
        from agents.policy.pretrained import display_name, resolve_model

        args.model_path, args.model_name = resolve_model(args.model, progress=False), display_name(args.model)
        args.sft_steps = 0  # a pretrained model starts as it is
    else:
        args.model_path = args.model_name = None
    if len(args.lora) == 1:
        result = run_benchmark(args, args.lora[0])
    else:  # one benchmark per rank, one after the other, in one JSON document
        result = {
            "benchmark": "training throughput, ours vs TRL, per LoRA rank",
            "by_lora": {("full" if r == 0 else f"lora_r{r}"): run_benchmark(args, r) for r in args.lora},
        }
    print(json.dumps(result, indent=2))
    return result


# ------------------------------------------------------------------------------------------- parent


def run_benchmark(args: argparse.Namespace, lora: int = 0) -> dict[str, Any]:
    """Prepare the shared weights, run the separate and the paired runs, summarise (LoRA rank ``lora``)."""
    started = time.time()
    spec: dict[str, Any] = {
        "env": ENV_ID,
        "updates": args.updates,
        "warmup": args.warmup,
        "prompts": args.prompts,
        "group": args.group,
        "max_new_tokens": args.max_new_tokens,
        "lr": args.lr,
        "threads": args.threads,
        "seed": args.seed,
        "sft_steps": args.sft_steps,
        "temperature": args.temperature,
        "micro_batches": args.micro_batches,
        "lora": lora,
        "model_path": getattr(args, "model_path", None),
        "model": getattr(args, "model_name", None) or "lm-envs/tiny-gpt2",
    }
    cache = Path(args.cache_dir or Path(tempfile.gettempdir()) / "lm-envs-bench-trl")
    spec["model_dir"] = str(cache / f"tiny-sft{args.sft_steps}-seed{args.seed}") if args.sft_steps > 0 else None
    pairs = [(o, t) for o, t in PAIRS.items() if o in args.variants and t in args.variants]
    with tempfile.TemporaryDirectory(prefix="bench-trl-") as tmp:
        work = Path(tmp)
        sft = run_worker("sft", spec, work) if args.sft_steps > 0 else {"cached": None, "seconds": 0.0}
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants}
        paired: dict[str, list[dict[str, Any]]] = {f"{o}/{t}": [] for o, t in pairs}
        for r in range(max(args.rounds, args.paired_rounds)):
            if r < args.rounds:
                for variant in _rotate(list(args.variants), r):
                    runs[variant].append({**run_worker(variant, spec, work), "round": r})
            if r < args.paired_rounds:
                for ours, theirs in _rotate(pairs, r):
                    res = run_worker("pair", {**spec, "ours": ours, "trl": theirs}, work)
                    paired[f"{ours}/{theirs}"].append({**res, "round": r})
    variants: dict[str, Any] = {v: summarise(rs) for v, rs in runs.items() if rs}
    variants["trl_ppo"] = {"available": False, "note": TRL_PPO_NOTE}
    return {
        "benchmark": "training throughput, ours vs TRL",
        "env": ENV_ID,
        "settings": {
            **{k: v for k, v in spec.items() if k not in ("model_dir", "model_path")},
            "rounds": args.rounds,
            "paired_rounds": args.paired_rounds,
            "completions_per_update": args.prompts * args.group,
            "kl_coef": 0.0,
            "dtype": "float32",
            "device": "cpu",
            "sft_cached": sft["cached"],
            "sft_seconds": sft["seconds"],
        },
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "libraries": _libraries(),
        },
        "ratios": ratios(runs, paired),
        "target_ratio": TARGET_RATIO,
        "variants": variants,
        "paired": paired,
        "wall_s": round(time.time() - started, 1),
    }


def _rotate(items: list, r: int) -> list:
    k = r % len(items) if items else 0
    return items[k:] + items[:k]


def run_worker(name: str, spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run one job (a variant, a pair, or the SFT preparation) in a fresh interpreter; return its result."""
    out = work / f"{name}.json"
    out.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "TOKENIZERS_PARALLELISM": "false"}
    env.setdefault("HF_HUB_OFFLINE", "1")
    load_before = os.getloadavg()[0]
    spec_json = json.dumps({**spec, "out": str(out)})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--spec", spec_json]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"bench_trl.py worker {name!r} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(out.read_text())
    result["loadavg_1m_before"] = round(load_before, 2)
    result["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    return result


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over rounds of the per-round figures; every round kept under ``rounds``."""
    keys = (
        "seconds_per_update",
        "tokens_per_s",
        "generation_s_per_update",
        "loop_overhead_s_per_update",
        "cpu_s_per_update",
        "cpu_util",
        "peak_rss_mib",
        "rss_before_train_mib",
        "rss_train_growth_mib",
        "mean_completion_tokens",
        "mean_reward",
        "tokens_per_update",
    )
    out: dict[str, Any] = {k: round(statistics.median(r[k] for r in runs), 4) for k in keys if k in runs[0]}
    out["config"] = runs[0]["config"]
    out["rounds"] = [{k: v for k, v in r.items() if k != "config"} for r in runs]
    return out


def ratios(runs: dict[str, list[dict[str, Any]]], paired: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Throughput ratios ours / TRL for each of ours against its TRL counterpart.

    ``tokens_per_s`` is ours / TRL (> 1: ours generates and trains faster per token); ``update_speedup``
    is TRL's seconds per update / ours (> 1: our update is shorter). Separate runs are paired by round;
    paired runs give one ratio each (over their measured updates) and one per update.
    """
    out: dict[str, Any] = {}
    for ours, theirs in PAIRS.items():
        key = f"{ours}/{theirs}"
        entry: dict[str, Any] = {}
        if runs.get(ours) and runs.get(theirs):
            tok = [a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(runs[ours], runs[theirs])]
            upd = [b["seconds_per_update"] / a["seconds_per_update"] for a, b in zip(runs[ours], runs[theirs])]
            entry["separate"] = {
                "tokens_per_s": round(statistics.median(tok), 3),
                "tokens_per_s_per_round": [round(x, 3) for x in tok],
                "update_speedup": round(statistics.median(upd), 3),
                "update_speedup_per_round": [round(x, 3) for x in upd],
            }
        if paired.get(key):
            tok = [p["ours"]["tokens_per_s"] / p["trl"]["tokens_per_s"] for p in paired[key]]
            upd = [p["trl"]["seconds_per_update"] / p["ours"]["seconds_per_update"] for p in paired[key]]
            each = [x for p in paired[key] for x in p["tokens_per_s_ratio_each"]]
            entry["paired"] = {
                "tokens_per_s": round(statistics.median(tok), 3),
                "tokens_per_s_per_round": [round(x, 3) for x in tok],
                "tokens_per_s_per_update": [round(x, 3) for x in each],
                "tokens_per_s_per_update_min": round(min(each), 3),
                "tokens_per_s_per_update_max": round(max(each), 3),
                "update_speedup": round(statistics.median(upd), 3),
            }
        if not entry:
            continue
        basis = "paired" if "paired" in entry else "separate"
        out[key] = {
            "tokens_per_s": entry[basis]["tokens_per_s"],
            "update_speedup": entry[basis]["update_speedup"],
            "basis": basis,
            "meets_target": entry[basis]["tokens_per_s"] >= TARGET_RATIO,
            "same_algorithm": ours.split("_")[1] == theirs.split("_")[1],
            **entry,
        }
    return out


# ------------------------------------------------------------------------------------------- workers


def _setup(spec: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(spec["threads"])


def _rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (``ru_maxrss`` is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def prepare_model(spec: dict[str, Any]) -> dict[str, Any]:
    """Build the tiny default, SFT it and save weights + tokenizer to ``spec["model_dir"]``, once.

    The directory holds ``recipe.json`` (tokenizer, model shape, SFT settings, seed); a directory whose
    recipe differs is rebuilt, so a changed default tokenizer or model never reuses stale weights.
    """
    _setup(spec)
    import gymnasium as gym

    import lm_envs  # noqa: F401
    from agents.learners.sft import SFTConfig, train_sft
    from agents.policy.models import DEFAULT_MODEL, build_default_model
    from lm_envs.core.tokenizer import save_codec

    env = gym.make(spec["env"]).unwrapped
    sft = SFTConfig(steps=spec["sft_steps"])
    recipe = {"codec": env.codec.name, "model": DEFAULT_MODEL, "sft": vars(sft), "seed": spec["seed"]}
    target = Path(spec["model_dir"])
    if (target / "recipe.json").exists() and json.loads((target / "recipe.json").read_text()) == recipe:
        return {"cached": True, "seconds": 0.0}
    started = time.perf_counter()
    model = build_default_model(env.codec, seed=spec["seed"])
    train_sft(model, env.task, env.codec, sft, seed=spec["seed"])
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + "-", dir=target.parent))
    model.save_pretrained(tmp)
    save_codec(env.codec, tmp / "tokenizer")
    (tmp / "recipe.json").write_text(json.dumps(recipe))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)  # a finished directory or none: a killed run never leaves half a cache
    return {"cached": False, "seconds": round(time.perf_counter() - started, 1)}


def _load_model(spec: dict[str, Any], codec: Any) -> Any:
    """The pretrained model (``spec["model_path"]``), the SFT-warm-started tiny weights, or the fresh default."""
    if spec.get("model_path"):
        from agents.policy.models import load_model

        return load_model(spec["model_path"], codec)
    if spec["model_dir"] is None:
        from agents.policy.models import build_default_model

        return build_default_model(codec, seed=spec["seed"])
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(spec["model_dir"]).float().eval()


def _libraries() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("torch", "transformers", "trl", "accelerate", "datasets"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def figures(records: list[dict[str, float]], warmup: int) -> dict[str, Any]:
    """Per-update figures over the measured updates (``records[warmup:]``), one record per update.

    A record holds ``wall_s`` and ``cpu_s`` (the update's wall and process CPU seconds), ``tokens``
    (completion tokens generated), ``gen_s`` (generation seconds), ``length`` (mean completion tokens)
    and ``reward`` (mean task reward); TRL's records also ``loop_s`` (Trainer work before the step).
    """
    measured = records[warmup:]
    if not measured:
        raise RuntimeError(f"no measured update: {len(records)} updates with {warmup} warm-up.")
    wall = sum(r["wall_s"] for r in measured)
    cpu = sum(r["cpu_s"] for r in measured)
    n = len(measured)
    out = {
        "seconds_per_update": wall / n,
        "seconds_per_update_each": [round(r["wall_s"], 3) for r in measured],
        "tokens_per_s": sum(r["tokens"] for r in measured) / wall,
        "tokens_per_update": sum(r["tokens"] for r in measured) / n,
        "generation_s_per_update": sum(r["gen_s"] for r in measured) / n,
        "cpu_s_per_update": cpu / n,
        "cpu_util": cpu / wall,
        "mean_completion_tokens": statistics.mean(r["length"] for r in measured),
        "mean_reward": statistics.mean(r["reward"] for r in measured),
    }
    if all("loop_s" in r for r in measured):
        out["loop_overhead_s_per_update"] = sum(r["loop_s"] for r in measured) / n
    return out


class OursLoop:
    """Our training loop, as :func:`agents.run.run` runs it: ``collect`` then one update per iteration."""

    def __init__(self, spec: dict[str, Any], algo: str) -> None:
        import gymnasium as gym
        import torch

        import lm_envs
        from agents.learners.ppo import KLController, PPOConfig
        from agents.learners.reinforce import ReinforceConfig
        from agents.policy.actor_critic import Policy
        from agents.policy.lora import LoRASection, add_lora
        from agents.policy.models import frozen_copy

        self.spec, self.is_ppo = spec, algo in PPO_VARIANTS
        grouped, kl_coef, epochs, minibatches = PPO_VARIANTS.get(algo, (True, 0.0, 1, 1))
        self.group = spec["group"] if grouped else 1
        self.n = spec["prompts"] * spec["group"]
        path = spec.get("model_path")
        self.model = _load_model(spec, lm_envs.load_codec(path))
        if spec.get("lora"):  # as agents.run: adapters injected in place, everything else frozen
            add_lora(self.model, LoRASection(r=spec["lora"]), seed=spec["seed"])
        self.temperature = spec.get("temperature", 1.0)
        self.venv = gym.make_vec(
            spec["env"],
            num_envs=self.n,
            autoreset_mode="Disabled",
            max_new_tokens=spec["max_new_tokens"],
            **_env_kwargs(spec, self.model),
            # spec "stop_rule": False trains on TRL's rule (only EOS or the budget ends a sample); evaluation keeps
            # the env's own rule either way
            stop_rule=spec.get("stop_rule", True),
        )
        if self.is_ppo:
            self.cfg: Any = PPOConfig(
                lr=spec["lr"],
                num_envs=self.n,
                group_size=self.group,
                kl_coef=kl_coef,
                ppo_epochs=epochs,
                num_minibatches=minibatches,
            )
            self.policy = Policy(self.model, critic="shared")
            self.kl_ctl = KLController(self.cfg.kl_coef, self.cfg.kl_target, self.cfg.kl_horizon)
            # as agents.run: a reference model only where the KL can matter (ppo_update never runs it else)
            self.ref = frozen_copy(self.model) if self.kl_ctl.needs_reference else None
            params = self.policy.parameters()
        else:
            self.cfg = ReinforceConfig(
                baseline=algo,
                lr=spec["lr"],
                num_envs=self.n,
                group_size=self.group,
                kl_coef=0.0,
                temperature=self.temperature,
                # gradient accumulation over whole groups: still one optimizer step per rollout, less memory
                num_minibatches=spec.get("micro_batches", 1),
            )
            params = self.model.parameters()
        self.optimizer = torch.optim.Adam(params, lr=spec["lr"], eps=1e-5)  # as agents.run
        cfg = {k: v for k, v in vars(self.cfg).items() if k != "name"}
        algorithm = f"agents.{'ppo' if self.is_ppo else 'reinforce'}"
        self.config = {"algorithm": algorithm, "completions": self.n, "lora_r": spec.get("lora", 0), **cfg}

    def update(self, k: int) -> dict[str, float]:
        """Iteration ``k``: train problems ``k * prompts ..``, one rollout, one update; returns its record."""
        import torch

        from agents.learners.ppo import ppo_update
        from agents.learners.reinforce import reinforce_update
        from agents.policy.sampling import collect

        t0, c0 = _clock()
        gen = torch.Generator().manual_seed(self.spec["seed"] * 1_000_003 + k)
        prompts = self.n // self.group
        options: dict[str, Any] = {"split": "train", "index": [k * prompts + i // self.group for i in range(self.n)]}
        if self.group > 1:
            options["group_size"] = self.group
        value_head = self.policy.value_head if self.is_ppo else None  # as agents.run: PPO's old values
        rollout = collect(
            self.model, self.venv, options=options, temperature=self.temperature, generator=gen, value_head=value_head
        )
        gen_s = time.perf_counter() - t0
        if self.is_ppo:
            ppo_update(self.policy, self.ref, self.optimizer, rollout, self.cfg, self.kl_ctl, generator=gen)
        else:
            reinforce_update(self.model, None, self.optimizer, rollout, self.cfg, generator=gen)
        t1, c1 = _clock()
        return {
            "wall_s": t1 - t0,
            "cpu_s": c1 - c0,
            "tokens": rollout.num_tokens,
            "gen_s": gen_s,
            "length": rollout.num_tokens / self.n,
            "reward": float(rollout.returns.mean()),
        }


def _env_kwargs(spec: dict[str, Any], model: Any) -> dict[str, Any]:
    """The env's own options (``spec["env_kwargs"]``), plus the model's tokenizer and logits width."""
    from agents.policy.models import logits_width

    kwargs = dict(spec.get("env_kwargs") or {})
    if spec.get("model_path"):
        kwargs.setdefault("tokenizer", spec["model_path"])  # its chat template renders the prompts
    kwargs.setdefault("vocab_size", logits_width(model))  # a model's logits may be wider than its tokenizer
    return kwargs


def run_ours(spec: dict[str, Any], algo: str) -> dict[str, Any]:
    """One of our variants alone in this process."""
    _setup(spec)
    import torch

    loop = OursLoop(spec, algo)
    rss_before = _rss_mib()
    records = [loop.update(k) for k in range(spec["warmup"] + spec["updates"])]
    peak = _rss_mib()
    return {
        **figures(records, spec["warmup"]),
        "peak_rss_mib": peak,
        "rss_before_train_mib": rss_before,
        "rss_train_growth_mib": round(peak - rss_before, 1),
        "torch_threads": torch.get_num_threads(),
        "config": loop.config,
    }


def with_position_ids(forward: Any, *args: Any, **kwargs: Any) -> Any:
    """``forward`` with position ids counted from each row's first unmasked token (as generation counts them).

    TRL's GRPO loss forward passes ``input_ids`` and ``attention_mask`` only, so a model that then numbers
    positions 0.. over the padded row (absolute position embeddings: GPT-2, the tiny default) scores a
    left-padded prompt's tokens at shifted positions; RoPE models do not care. Ids already given are kept.
    """
    att = kwargs.get("attention_mask")
    if att is not None and kwargs.get("position_ids") is None:
        kwargs["position_ids"] = (att.long().cumsum(-1) - 1).clamp(min=0)
    return forward(*args, **kwargs)


def add_position_ids(forward: Any) -> Any:
    """``forward`` wrapped by :func:`with_position_ids`, its signature kept (TRL inspects it: ``logits_to_keep``)."""

    @functools.wraps(forward)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return with_position_ids(forward, *args, **kwargs)

    return wrapped


def build_trl_trainer(
    spec: dict[str, Any],
    algo: str,
    model: Any,
    env: Any,
    problems: list[Any],
    callbacks: tuple[Any, ...] = (),
    rollout_func: Any = None,
) -> dict[str, Any]:
    """TRL's trainer (``algo``: ``grpo`` or ``rloo``) for ``spec`` on ``problems`` in order, with our reward.

    The prompts are ``env``'s (conversations when it renders through the model's chat template, which TRL
    renders with the same template); the reward is :class:`lm_envs.tasks.math.rewards.MathReward` of each
    decoded completion. Every prompt TRL tokenizes itself is checked against the env's ids (a mismatch
    raises). ``rollout_func`` (GRPO only) is TRL's hook that replaces its generation. ``spec["position_ids"]``
    gives every forward of the model position ids (:func:`with_position_ids`), which TRL's loss leaves out.

    Returns:
        ``trainer``, ``args`` (its config), ``out_dir`` (its output directory, the caller removes it),
        ``batches`` (one ``{tokens, length, reward}`` per reward call), ``prompt_check`` (prompts checked and
        identical), ``as_prompt`` (problem text -> TRL prompt) and ``trainer_class``.
    """
    from datasets import Dataset
    from transformers import AutoTokenizer

    from lm_envs import Problem
    from lm_envs.core.tokenizer import save_codec
    from lm_envs.tasks.math.rewards import MathReward

    if algo == "grpo":
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer
    else:
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer
    prompt_cfg = env.episodes.config  # the env's resolved prompt rendering
    chat = prompt_cfg.uses_chat(env.codec)
    head = [{"role": "system", "content": prompt_cfg.system_prompt}] if prompt_cfg.system_prompt else []

    def as_prompt(text: str) -> Any:  # a conversation when the env renders through the chat template
        return [*head, {"role": "user", "content": text}] if chat else text

    dataset = Dataset.from_list([{"prompt": as_prompt(p.prompt), "answer": p.answer} for p in problems])
    env_ids = {p.prompt: prompt_cfg.encode_prompt(env.codec, p.prompt) for p in problems}
    reward = MathReward()
    batches: list[dict[str, float]] = []  # one per generation batch, i.e. per step

    def math_outcome(prompts, completions, completion_ids, answer, **kwargs):  # TRL passes dataset columns
        tokens = sum(len(c) for c in completion_ids)  # up to and including EOS
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]  # a chat reply's text
        problems = [Problem(f"train/{i}", str(p), a) for i, (p, a) in enumerate(zip(prompts, answer))]
        scores = [o.reward for o in reward.outcome_batch(problems, texts)]
        batches.append({"tokens": tokens, "length": tokens / len(completion_ids), "reward": statistics.mean(scores)})
        if spec.get("progress"):  # the updates so far (a run cut short still shows its curve)
            Path(spec["progress"]).write_text(json.dumps({"seed": spec["seed"], "records": batches}))
        return scores

    n = spec["prompts"] * spec["group"]
    out_dir = tempfile.mkdtemp(prefix=f"bench-trl-{algo}-")
    common = {
        "output_dir": out_dir,
        # completions per optimizer step (prompts x generations), in micro_batches accumulated steps: TRL then
        # generates the whole batch once (steps_per_generation = gradient_accumulation_steps) and its dapo
        # loss divides by the tokens of the whole generation batch, as ours
        "per_device_train_batch_size": n // spec.get("micro_batches", 1),
        "gradient_accumulation_steps": spec.get("micro_batches", 1),
        "num_generations": spec["group"],
        "max_completion_length": spec["max_new_tokens"],
        "temperature": spec.get("temperature", 1.0),
        "top_p": 1.0,
        "top_k": 0,
        "learning_rate": spec["lr"],
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "adam_epsilon": 1e-5,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "beta": 0.0,
        "num_iterations": 1,
        "epsilon": 0.2,
        "max_steps": len(problems) // spec["prompts"],  # one step per batch of prompts
        "shuffle_dataset": False,
        "gradient_checkpointing": False,
        "bf16": False,
        "fp16": False,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1,
        "disable_tqdm": True,
        "seed": spec["seed"],
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": False,
    }
    if algo == "grpo":
        common.update(loss_type="dapo", scale_rewards="group")
    args = Config(**common)
    if spec.get("model_path"):
        tokenizer = AutoTokenizer.from_pretrained(spec["model_path"])
    else:
        if spec["model_dir"] is None:  # untrained default: TRL still needs the codec as a HF tokenizer
            save_codec(env.codec, Path(out_dir) / "tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(Path(spec["model_dir"] or out_dir) / "tokenizer")
    peft_config = None
    if spec.get("lora"):  # as ours (agents.policy.lora.LoRASection's defaults): alpha 32, no dropout
        from peft import LoraConfig

        peft_config = LoraConfig(r=spec["lora"], lora_alpha=32.0, lora_dropout=0.0, target_modules="all-linear")
    trainer = Trainer(
        model=model,
        reward_funcs=math_outcome,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=list(callbacks),
        peft_config=peft_config,
        **({"rollout_func": rollout_func} if rollout_func is not None else {}),
    )
    if spec.get("position_ids"):  # after construction: TRL replaces the forward with its fused-LM-head one
        base = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
        base.forward = add_position_ids(base.forward)
    tokenize = trainer._tokenize_prompts  # check TRL's prompt ids against the env's, every batch
    prompt_check = {"prompts": 0, "identical": 0}

    def checked_tokenize(prompts):
        out = tokenize(prompts)
        for prompt, ids in zip(prompts, out[0]):
            text = prompt[-1]["content"] if isinstance(prompt, list) else prompt
            prompt_check["prompts"] += 1
            prompt_check["identical"] += int(list(ids) == env_ids[text])
        if prompt_check["identical"] != prompt_check["prompts"]:
            raise RuntimeError(f"TRL's prompt token ids differ from the env's: {prompt_check}")
        return out

    trainer._tokenize_prompts = checked_tokenize
    return {
        "trainer": trainer,
        "args": args,
        "out_dir": out_dir,
        "batches": batches,
        "prompt_check": prompt_check,
        "as_prompt": as_prompt,
        "trainer_class": Trainer,
    }


def run_trl(spec: dict[str, Any], algo: str, partner: OursLoop | None = None, finish: Any = None) -> dict[str, Any]:
    """TRL's trainer on the same model, prompts, reward and settings, timed per optimizer step by a callback.

    With ``partner``, our update ``k`` runs right after TRL's step ``k`` (inside ``on_step_end``, outside
    TRL's timed step), and the result holds both sides. A pretrained model (``spec["model_path"]``) whose
    env renders prompts through its chat template gets the prompts as conversations, which TRL renders with
    the same template; every prompt's token ids are checked against the env's before generation (a
    mismatch stops the run). ``spec["lora"]`` (rank) trains LoRA adapters as ours does (TRL wraps the model
    with ``peft``), ``spec["keep_records"]`` adds every update's record to the result, and
    ``finish(trainer)`` (e.g. an evaluation of the trained model) adds its dict under ``"finish"``.
    """
    _setup(spec)
    import gymnasium as gym
    import torch
    from transformers import TrainerCallback

    import lm_envs

    torch.set_num_threads(spec["threads"])  # again: importing trl must not have changed it
    model = _load_model(spec, lm_envs.load_codec(spec.get("model_path")))
    env = gym.make(spec["env"], max_new_tokens=spec["max_new_tokens"], **_env_kwargs(spec, model)).unwrapped
    steps = spec["warmup"] + spec["updates"]
    problems = [env.task.problem("train", i) for i in range(steps * spec["prompts"])]
    steps_timed: list[dict[str, float]] = []
    ours: list[dict[str, float]] = []
    threads: list[int] = []
    clock: dict[str, tuple[float, float]] = {}

    class Timer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            clock["end"] = _clock()

        def on_step_begin(self, args, state, control, **kwargs):
            clock["begin"] = _clock()

        def on_step_end(self, args, state, control, **kwargs):
            (t0, c0), (t1, c1), (te, _) = clock["begin"], _clock(), clock["end"]
            steps_timed.append({"wall_s": t1 - t0, "cpu_s": c1 - c0, "loop_s": t0 - te})
            threads.append(torch.get_num_threads())
            if partner is not None:
                ours.append(partner.update(len(steps_timed) - 1))
            clock["end"] = _clock()

    n = spec["prompts"] * spec["group"]
    built = build_trl_trainer(spec, algo, model, env, problems, callbacks=(Timer(),))
    trainer, args, out_dir, batches = built["trainer"], built["args"], built["out_dir"], built["batches"]
    prompt_check, Trainer = built["prompt_check"], built["trainer_class"]
    gen_s: list[float] = []
    generate = trainer._generate  # tokenize prompts, model.generate, decode: TRL's side of our collect()

    def timed_generate(prompts):
        t0 = time.perf_counter()
        try:
            return generate(prompts)
        finally:
            gen_s.append(time.perf_counter() - t0)

    trainer._generate = timed_generate
    rss_before = _rss_mib()
    trainer.train()
    peak = _rss_mib()
    finished = finish(trainer) if finish is not None else None
    shutil.rmtree(out_dir, ignore_errors=True)
    if not len(steps_timed) == len(batches) == len(gen_s) == steps:
        raise RuntimeError(f"expected {steps} TRL steps, got {len(steps_timed)} timed, {len(batches)} rewarded.")
    records = [{**t, **b, "gen_s": g} for t, b, g in zip(steps_timed, batches, gen_s)]
    keys = ("beta", "loss_type", "scale_rewards", "num_generations", "max_completion_length", "learning_rate")
    keys += ("lr_scheduler_type", "optim", "adam_epsilon", "weight_decay", "gradient_checkpointing", "bf16")
    keys += ("num_iterations", "epsilon", "temperature", "per_device_train_batch_size", "normalize_advantages")
    keys += ("gradient_accumulation_steps", "steps_per_generation")
    config = {k: getattr(args, k) for k in keys if hasattr(args, k)}
    config = {k: (v.value if hasattr(v, "value") else v) for k, v in config.items()}
    result = {
        **figures(records, spec["warmup"]),
        "torch_threads": min(threads),
        "prompt_ids_checked": prompt_check,
        "config": {"algorithm": f"trl.{Trainer.__name__}", "completions": n, "lora_r": spec.get("lora", 0), **config},
    }
    if spec.get("keep_records"):
        result["records"] = records
    if finished is not None:
        result["finish"] = finished
    if partner is not None:
        theirs = {**result, "peak_rss_mib_both": peak}
        mine = {**figures(ours, spec["warmup"]), "config": partner.config}
        each = [
            (a["tokens"] / a["wall_s"]) / (b["tokens"] / b["wall_s"])
            for a, b in zip(ours[spec["warmup"] :], records[spec["warmup"] :])
        ]
        return {"ours": mine, "trl": theirs, "tokens_per_s_ratio_each": each}
    return {
        **result,
        "peak_rss_mib": peak,
        "rss_before_train_mib": rss_before,
        "rss_train_growth_mib": round(peak - rss_before, 1),
    }


def run_pair(spec: dict[str, Any]) -> dict[str, Any]:
    """Our variant ``spec["ours"]`` and TRL's ``spec["trl"]`` in one process, alternating update by update."""
    _setup(spec)
    partner = OursLoop(spec, spec["ours"].removeprefix("ours_"))
    return run_trl(spec, spec["trl"].removeprefix("trl_"), partner=partner)


WORKERS = {
    "sft": prepare_model,
    "pair": run_pair,
    **{name: functools.partial(run_ours, algo=name.removeprefix("ours_")) for name in OURS},
    "trl_grpo": lambda spec: run_trl(spec, "grpo"),
    "trl_rloo": lambda spec: run_trl(spec, "rloo"),
}


if __name__ == "__main__":
    main()
