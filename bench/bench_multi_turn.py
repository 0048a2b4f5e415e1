"""Multi-turn rollout speed: KV-cached rollouts on MathTools-v0 vs the same model's single-turn Math-v0 rollout.

Same tiny default model, same test prompts, same batch, same 160-token budget after the prompt, side by
side in one process, alternating rounds. The untrained model never writes ``</calc>`` by itself, so the
multi-turn side uses ``LMEnv/MathTools-v0``'s task with ``y`` as an extra turn stop (``--stop``), answered
by the calculator (`` = 74``): an untrained model then makes a few calls per episode, two or three env
tokens each, prefilled in batched forwards.

Reports tokens/s counting every token after the prompt (policy and env), the policy's tokens/s, the
forwards each rollout ran, and ``env_token_cost``: the rollout seconds the env tokens added, per env
token, over the seconds of one policy token in the single-turn rollout ((t_multi - policy_tokens *
t_single_per_token) / env_tokens / t_single_per_token), paired within each round (the two rollouts back
to back) and the median over rounds. At most 1 means an injected token costs no more than a generated
one (the issue's bar). ``env_token_prefill_cost`` is the same with each rollout's ``venv.step`` seconds
(the env's own work: turn detection, the calculator's reply) taken out of both sides: the model-side
cost of reading an env token, which is what the sampler controls. ``forward_us_per_slot``: seconds inside the
decode forwards (prompt prefill excluded) per token slot they computed (rows x width, holes included), for
each rollout: the model-side price of a token, env or policy.

With ``--baseline DIR`` (a checkout of the code before multi-turn support) it also times the single-turn
env step (``bench_env.env_step_times`` on Math-v0) in subprocesses on both trees, alternating, so the
single-turn hot path can be compared before and after in one run.

    python bench/bench_multi_turn.py [--batches 16 64] [--repeats 3] [--baseline /tmp/base]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import lm_envs  # noqa: F401
from agents.policy.models import build_default_model, cache_argument, kv_cache
from agents.policy.sampling import collect
from lm_envs import Problem, TokenVectorEnv
from lm_envs.core.task import Reply
from lm_envs.tasks.math.multi_turn import CALL_CLOSE, MathToolsTask, calculate
from lm_envs.tasks.math.rewards import MathReward

BUDGET = 160


class WordTools(MathToolsTask):
    """MathTools-v0's task where a ``y`` also ends a turn and gets a short number back, as a calculator's.

    An untrained model writes a ``y`` in about one token in 25 (``--stop s``: one in five), so an
    episode makes a few tool calls of two or three tokens each.
    """

    turn_stops = ("</calc>", "y")

    def respond(self, problem: Problem, turns: Sequence[str], final: bool) -> Reply | None:
        if final or CALL_CLOSE in turns[-1][-16:]:
            return super().respond(problem, turns, final)
        return Reply(f" = {calculate(f'{len(turns)} * 37')}")


def rollouts(batch: int, repeats: int, stop: str) -> dict[str, float]:
    WordTools.turn_stops = (CALL_CLOSE, stop)
    single = gym.make_vec("LMEnv/Math-v0", num_envs=batch, autoreset_mode="Disabled", max_new_tokens=BUDGET)
    multi = TokenVectorEnv(
        batch,
        WordTools(distinct_test=False),
        MathReward(),
        max_prompt_tokens=160,
        max_new_tokens=BUDGET,
        autoreset_mode="Disabled",
    )
    model = build_default_model(single.codec, seed=0)
    forwards: list[int] = []  # token slots (rows x width, holes included) of each forward
    clock = [0.0, 0.0]  # seconds inside forwards, start of the current one

    def before(_: object, args: object, kwargs: dict) -> None:
        forwards.append(kwargs["input_ids"].numel())
        clock[1] = time.perf_counter()

    def after(*_: object) -> None:
        clock[0] += time.perf_counter() - clock[1]

    model.register_forward_pre_hook(before, with_kwargs=True)
    model.register_forward_hook(after, with_kwargs=True)
    stepping = {id(single): _time_steps(single), id(multi): _time_steps(multi)}
    options = {"split": "test", "index": list(range(batch))}
    rounds: list[dict[str, float]] = []
    for r in range(repeats + 1):  # the first round warms up both
        for acc in stepping.values():
            acc[0] = 0.0
        start, n0, c0 = time.perf_counter(), len(forwards), clock[0]
        a = collect(model, single, options=options, generator=torch.Generator().manual_seed(r))
        ts, fs, ss, cs = time.perf_counter() - start, len(forwards) - n0, sum(forwards[n0 + 1 :]), clock[0] - c0
        start, n0, c0 = time.perf_counter(), len(forwards), clock[0]
        b = collect(model, multi, options=options, generator=torch.Generator().manual_seed(r))
        tm, fm, sm, cm = time.perf_counter() - start, len(forwards) - n0, sum(forwards[n0 + 1 :]), clock[0] - c0
        if r:
            single_tokens, policy = int(a.mask.sum()), int(b.policy_mask.sum())
            env = int((b.mask & ~b.policy_mask).sum())
            per_token = ts / single_tokens
            # the same without the env's own stepping (the calculator, turn detection): the model side only
            es, em = stepping[id(single)][0], stepping[id(multi)][0]
            model_per_token = (ts - es) / single_tokens
            rounds.append(
                {
                    "single_s": ts,
                    "multi_s": tm,
                    "single_tokens": single_tokens,
                    "policy": policy,
                    "env": env,
                    "single_forwards": fs,
                    "multi_forwards": fm,
                    "ratio": ((policy + env) / tm) / (single_tokens / ts),
                    "env_token_cost": (tm - policy * per_token) / env / per_token,
                    "env_token_prefill_cost": (tm - em - policy * model_per_token) / env / model_per_token,
                    "single_env_step_s": es,
                    # model side only: seconds inside the decode forwards per token slot they computed
                    "single_forward_us_per_slot": 1e6 * cs / ss,
                    "multi_forward_us_per_slot": 1e6 * cm / sm,
                    "multi_slot_fill": (policy + env) / sm,
                    "multi_env_step_s": em,
                    "turns": float(np.mean([i.get("num_turns", 0) for i in b.infos])),
                }
            )

    def med(key: str) -> float:
        return float(np.median([x[key] for x in rounds]))

    ts, tm = med("single_s"), med("multi_s")
    return {
        "batch": batch,
        "rounds": repeats,
        "turns_per_episode": med("turns"),
        "single_turn_s": ts,
        "single_turn_tokens": med("single_tokens"),
        "single_turn_tokens_per_s": med("single_tokens") / ts,
        "single_turn_forwards": med("single_forwards"),
        "multi_turn_s": tm,
        "multi_turn_policy_tokens": med("policy"),
        "multi_turn_env_tokens": med("env"),
        "multi_turn_forwards": med("multi_forwards"),
        "multi_turn_tokens_per_s": (med("policy") + med("env")) / tm,
        "multi_turn_policy_tokens_per_s": med("policy") / tm,
        # paired within each round (single then multi, back to back), median over rounds: robust to load drift
        "tokens_per_s_ratio_multi_over_single": med("ratio"),
        "env_token_cost": med("env_token_cost"),
        "env_token_prefill_cost": med("env_token_prefill_cost"),
        "single_turn_env_step_s": med("single_env_step_s"),
        "multi_turn_env_step_s": med("multi_env_step_s"),
        "single_turn_forward_us_per_slot": med("single_forward_us_per_slot"),
        "multi_turn_forward_us_per_slot": med("multi_forward_us_per_slot"),
        "forward_cost_per_slot_multi_over_single": med("multi_forward_us_per_slot") / med("single_forward_us_per_slot"),
        "env_token_cost_per_round": [round(x["env_token_cost"], 3) for x in rounds],
    }


def forward_costs(batches: Sequence[int], widths: Sequence[int], steps: int = 12) -> dict[str, object]:
    """Time one cached forward of the tiny default model at each (batch, width) over an 80-column cache and
    fit ``c(B, w) = a * (B * (w + ROW_OVERHEAD) + FORWARD_OVERHEAD)`` (least squares on the fastest of
    ``steps`` forwards each): the figures behind :func:`agents.policy.sampling.forward_width`'s cost model."""
    codec = gym.make_vec("LMEnv/Math-v0", num_envs=1).codec
    model = build_default_model(codec, seed=0).eval()
    arg = cache_argument(model)
    rows = []
    with torch.no_grad():
        for b in batches:
            for w in widths:
                ids = torch.randint(5, 400, (b, 80))
                out = model(input_ids=ids, use_cache=True)
                past, attn, times = kv_cache(out), torch.ones(b, 80, dtype=torch.long), []
                for _ in range(steps):
                    x = torch.randint(5, 400, (b, w))
                    attn = torch.cat([attn, torch.ones(b, w, dtype=torch.long)], 1)
                    pos = torch.arange(attn.shape[1] - w, attn.shape[1]).expand(b, -1)
                    start = time.perf_counter()
                    out = model(input_ids=x, attention_mask=attn, position_ids=pos, use_cache=True, **{arg: past})
                    times.append(time.perf_counter() - start)
                    past = kv_cache(out)
                rows.append({"batch": b, "width": w, "forward_s": min(times[2:])})
    # c = a*B*w + (a*k)*B + a*F: linear in (B*w, B, 1)
    x = np.array([[r["batch"] * r["width"], r["batch"], 1.0] for r in rows])
    y = np.array([r["forward_s"] for r in rows])
    (a, ak, af), *_ = np.linalg.lstsq(x, y, rcond=None)
    return {"grid": rows, "per_row_token_s": a, "row_overhead": ak / a, "forward_overhead": af / a}


def _time_steps(venv: TokenVectorEnv) -> list[float]:
    """Accumulate the seconds ``venv.step`` takes (the env's own work) into the returned one-item list."""
    acc, step = [0.0], venv.step

    def timed(*args: object, **kwargs: object) -> object:
        start = time.perf_counter()
        out = step(*args, **kwargs)
        acc[0] += time.perf_counter() - start
        return out

    venv.step = timed  # type: ignore[method-assign]
    return acc


def env_step_compare(baseline: str, batches: list[int], rounds: int) -> dict[str, object]:
    """Mean single-turn env step (Math-v0, 256 tokens) on the baseline tree and this one, alternating."""
    here = str(Path(__file__).resolve().parents[1])
    code = (
        "import sys, json; sys.path.insert(0, sys.argv[1] + '/bench'); import bench_env; "
        "print(json.dumps([float(bench_env.env_step_times('LMEnv/Math-v0', b, 256).mean()) for b in "
        "json.loads(sys.argv[2])]))"
    )
    out: dict[str, list[list[float]]] = {"baseline": [], "this": []}
    for _ in range(rounds):
        for name, tree in (("baseline", baseline), ("this", here)):
            env = {**os.environ, "PYTHONPATH": tree, "OMP_NUM_THREADS": "1"}
            res = subprocess.run(
                [sys.executable, "-c", code, tree, json.dumps(batches)], env=env, capture_output=True, text=True
            )
            if res.returncode:
                raise RuntimeError(res.stderr[-2000:])
            out[name].append(json.loads(res.stdout.strip().splitlines()[-1]))
    rows = []
    for k, b in enumerate(batches):
        base = float(np.median([r[k] for r in out["baseline"]]))
        this = float(np.median([r[k] for r in out["this"]]))
        rows.append(
            {"batch": b, "baseline_env_step_s": base, "this_env_step_s": this, "this_over_baseline": this / base}
        )
    return {"baseline_tree": baseline, "rounds": rounds, "batches": rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline", default=None, help="a checkout before multi-turn support, for the env step")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stop", default="y", help="the extra turn stop (y: ~4%% of tokens, s: ~20%%)")
    parser.add_argument("--forward-costs", action="store_true", help="also fit the sampler's forward cost model")
    args = parser.parse_args()
    results: dict[str, object] = {"torch_threads": torch.get_num_threads(), "budget": BUDGET}
    if args.forward_costs:
        results["forward_costs"] = forward_costs([1, 2, 4, 8, 16, 32, 64], [1, 2, 4, 8])
    results["stop"] = args.stop
    results["rollouts"] = [rollouts(b, args.repeats, args.stop) for b in args.batches]
    if args.baseline:
        results["single_turn_env_step"] = env_step_compare(args.baseline, [1, 64, 256], args.rounds)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
