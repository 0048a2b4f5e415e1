"""Paired update check (#20): the same GRPO batches through our update and TRL's, gradients compared.

``trl_parity.py`` compares whole training runs, where each side samples its own completions, so a gap
mixes sampling with the update. This check takes sampling out: each batch is sampled once, by our env
(:func:`agents.policy.sampling.collect`), and TRL receives exactly those prompt and completion token ids
through its ``rollout_func`` hook, so TRL's own reward call, advantage computation and ``_compute_loss``
run on the tokens ours trains on. Both sides start from the same weights (one model deep-copied, LoRA
adapters included) and the same settings as ``trl_parity.py --setting ...``.

Per step it reports, side by side: the rewards each side computed, the advantages (max difference), the
per-token log-probs of the sampled tokens under each side's loss forward (max difference, which also
shows the sampler-learner gap ours measures), the loss, and the gradient before clipping: each side's
global norm, their ratio and cosine, overall and for the worst parameter. Each side then takes its own
optimizer step as its trainer would (ours: :func:`agents.learners.reinforce.reinforce_update`'s clip and
Adam step; TRL: ``clip_grad_norm_`` at ``max_grad_norm`` then the Trainer's own optimizer from
``create_optimizer``), and the weights' drift apart is reported as ``||theta_ours - theta_trl||`` over
``||theta_ours - theta_0||``. Later batches are sampled by our (updated) model; TRL's ratio is 1 by
construction (it takes its old log-probs from the same forward), ours uses the sampler's log-probs. A
batch whose every group has equal rewards carries no gradient on either side and is skipped (listed in
``skipped_batches``); ``--steps`` batches with a signal are compared, out of ``--max-batches`` sampled.

TRL's loss forward passes no position ids, so on a model with absolute position embeddings (the tiny GPT-2
default) a left-padded prompt's tokens are scored at shifted positions (RoPE models, SmolLM2, are unaffected);
``with_position_ids`` is TRL's gradient from the same forward given the position ids generation used, and
``--trl-positions`` gives TRL's every forward those ids, so its steps can follow ours over several batches
(``bench/results/trl_grad_check_positions_<setting>.json``).

    OMP_NUM_THREADS=1 python bench/trl_grad_check.py --setting tiny --steps 3
    OMP_NUM_THREADS=1 python bench/trl_grad_check.py --setting smollm2 --steps 3 --max-batches 15

Writes ``bench/results/trl_grad_check_<setting>.json`` (``--out`` to change). With the update the same, what
is left between the two is sampling and the stop rule: ``--stop-rule N`` samples ``N`` completions from the
start model as TRL does (``generate``, stopping at EOS only) and grades each whole and cut where our env ends
the episode (the first closed ``#### X`` line), into ``bench/results/trl_stop_rule_<setting>.json``:

    OMP_NUM_THREADS=1 python bench/trl_grad_check.py --setting smollm2 --stop-rule 256
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_trl  # noqa: E402
import trl_parity  # noqa: E402


def trainable(model: Any) -> dict[str, Any]:
    """The parameters that train (LoRA adapters, or every weight), by name."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def grad_compare(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Global norms, their ratio and the cosine of two gradients given as ``name -> tensor``; worst parameter."""
    dot = no = nt = 0.0
    worst = (2.0, "")
    for name, g in ours.items():
        h = theirs[name]
        d, a, b = float((g * h).sum()), float((g * g).sum()), float((h * h).sum())
        dot, no, nt = dot + d, no + a, nt + b
        if a > 0 and b > 0:
            worst = min(worst, (d / math.sqrt(a * b), name))
        elif a + b > 0:  # one side zero, the other not
            worst = min(worst, (0.0, name))
    diff = math.sqrt(sum(float(((g - theirs[n]) ** 2).sum()) for n, g in ours.items()))
    return {
        "norm_ours": math.sqrt(no),
        "norm_trl": math.sqrt(nt),
        "norm_ratio_ours_over_trl": math.sqrt(no / nt) if nt else None,
        "cosine": dot / math.sqrt(no * nt) if no and nt else None,
        "relative_l2_difference": diff / math.sqrt(nt) if nt else None,
        "worst_parameter_cosine": worst[0],
        "worst_parameter": worst[1],
    }


def logp_gap(logp: Any, rollout: Any) -> float:
    """Largest |log-prob difference| between a ``(N, width)`` completion log-prob table and the sampler's."""
    m = rollout.action_mask
    rows = [i for i in range(m.shape[0]) if m[i].any()]
    return max(float((logp[i, : int(m[i].sum())] - rollout.logprobs[i][m[i]]).abs().max()) for i in rows)


def row_chunks(inputs: dict[str, Any], parts: int) -> list[dict[str, Any]]:
    """TRL's batch dict cut into ``parts`` row chunks (per-row tensors split, the rest shared, as TRL's own
    split under gradient accumulation; ``num_items_in_batch`` stays the whole batch's, so the losses add up)."""
    n = inputs["completion_ids"].shape[0]
    size = -(-n // parts)
    out = []
    for lo in range(0, n, size):
        part = {}
        for key, value in inputs.items():
            per_row = (
                hasattr(value, "shape") and value.dim() > 0 and value.shape[0] == n and key != "num_items_in_batch"
            )
            part[key] = value[lo : lo + size] if per_row else value
        out.append(part)
    return out


def run(setting: str, steps: int, threads: int, max_batches: int, trl_positions: bool = False) -> dict[str, Any]:
    """The paired update check of the module docstring: ``steps`` batches with a signal, both sides each."""
    import gymnasium as gym
    import torch

    from agents.learners.reinforce import advantages as our_advantages
    from agents.learners.reinforce import reinforce_update
    from agents.policy.sampling import collect
    from agents.run.distributed import Dist

    grpo_module = importlib.import_module("trl.trainer.grpo_trainer")
    shuffle = grpo_module.shuffle_sequence_dict

    args = argparse.Namespace(
        threads=threads, cache_dir=None, quick=False, updates=steps, eval_episodes=None, setting=setting
    )
    spec = trl_parity.setting_spec(setting, args)
    if spec.get("model_dir") and not Path(spec["model_dir"], "recipe.json").exists():
        bench_trl.prepare_model(spec)  # the tiny model's SFT start, cached
    bench_trl._setup(spec)
    loop = bench_trl.OursLoop(spec, "grpo")  # our model (LoRA injected from the seed), env and config
    max_grad_norm = loop.cfg.max_grad_norm
    model_trl = copy.deepcopy(loop.model)  # the same weights, adapters included
    ours_params, trl_params = trainable(loop.model), trainable(model_trl)
    start = {n: p.detach().clone() for n, p in ours_params.items()}
    captured: dict[str, Any] = {}
    clip = torch.nn.utils.clip_grad_norm_

    def capturing_clip(params: Any, max_norm: float, *rest: Any, **kw: Any) -> Any:
        """``clip_grad_norm_`` that first keeps ours' pre-clip gradient (reinforce_update clips, then steps)."""
        captured["grads"] = {n: p.grad.detach().clone() for n, p in ours_params.items()}
        captured["norm"] = float(clip(params, max_norm, *rest, **kw))
        return torch.tensor(captured["norm"])

    env = gym.make(spec["env"], max_new_tokens=spec["max_new_tokens"], **bench_trl._env_kwargs(spec, model_trl))
    env = env.unwrapped
    P, G = spec["prompts"], spec["group"]
    problems = [env.task.problem("train", i) for i in range(max_batches * P)]
    current: dict[str, Any] = {}

    def rollout_func(prompts: list[Any], trainer: Any) -> dict[str, Any]:
        """TRL's generation replaced by the batch ours sampled (same order: the batch is built from it)."""
        r = current["rollout"]
        if len(prompts) != r.tokens.shape[0]:
            raise RuntimeError(f"TRL asked for {len(prompts)} completions, the batch has {r.tokens.shape[0]}.")
        out: dict[str, list[list[Any]]] = {"prompt_ids": [], "completion_ids": [], "logprobs": []}
        for i in range(len(prompts)):
            m = r.action_mask[i]
            out["prompt_ids"].append(r.prompt_ids[i][r.prompt_mask[i].bool()].tolist())
            out["completion_ids"].append(r.tokens[i][m].tolist())
            out["logprobs"].append(r.logprobs[i][m].tolist())
        return out

    # TRL gets the model as it is (adapters already in, so no peft_config) and one step per batch, no accumulation;
    # with trl_positions its every forward gets the position ids generation used (its steps too)
    trl_spec = {**spec, "lora": 0, "micro_batches": 1, "position_ids": trl_positions}
    micro = spec.get("micro_batches", 1)  # TRL's loss runs over as many row chunks as ours (memory only)
    built = bench_trl.build_trl_trainer(trl_spec, "grpo", model_trl, env, problems, rollout_func=rollout_func)
    trainer, as_prompt = built["trainer"], built["as_prompt"]
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1  # what Trainer.train sets before its loop
    out: dict[str, Any] = {"setting": setting, "trl_positions": trl_positions, "spec": spec}
    out["libraries"] = bench_trl._libraries()
    out["steps"], out["skipped_batches"] = [], []
    for k in range(max_batches):
        if len(out["steps"]) == steps:
            break
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(spec["seed"] * 1_000_003 + k)
        options = {"split": "train", "index": [k * P + i // G for i in range(P * G)], "group_size": G}

        rollout = collect(loop.model, loop.venv, options=options, temperature=loop.temperature, generator=gen)
        current["rollout"] = rollout
        if not bool(rollout.returns.reshape(-1, G).std(1).gt(0).any()):  # every group's rewards equal: no signal
            out["skipped_batches"].append(k)  # (neither side would change its weights but by Adam's momentum)
            print(json.dumps({"skipped_batch": k, "reward_mean": float(rollout.returns.mean())}), flush=True)
            continue
        # ours: reinforce_update computes the gradient, clips it (captured just before) and steps Adam
        adv_ours = our_advantages(rollout, loop.cfg, None, None, Dist())[1]
        torch.nn.utils.clip_grad_norm_ = capturing_clip
        try:
            metrics = reinforce_update(loop.model, None, loop.optimizer, rollout, loop.cfg, generator=gen)
        finally:
            torch.nn.utils.clip_grad_norm_ = clip
        grads_ours = captured["grads"]
        # theirs: the batch through TRL (reward function, advantages, loss) on the same tokens
        batch = [{"prompt": as_prompt(problems[j].prompt), "answer": problems[j].answer} for j in options["index"]]
        trainer.model.train()
        grpo_module.shuffle_sequence_dict = lambda d: d  # keep the batch's row order (TRL shuffles it)
        try:
            inputs = trainer._prepare_inputs(batch)
        finally:
            grpo_module.shuffle_sequence_dict = shuffle
        chunks = row_chunks(inputs, micro)  # TRL's own split under gradient accumulation, by rows
        with torch.no_grad():  # TRL's log-probs of the sampled tokens (its loss forward, no gradient)
            logp_trl, logp_pos = [], []
            for part in chunks:
                ids = torch.cat([part["prompt_ids"], part["completion_ids"]], dim=1)
                att = torch.cat([part["prompt_mask"], part["completion_mask"]], dim=1)
                width = part["completion_ids"].shape[1]
                logp_trl.append(trainer._get_per_token_logps_and_entropies(trainer.model, ids, att, width)[0])
                # the same forward with position ids counted from each row's first real token (as generation)
                pos = (att.cumsum(1) - 1).clamp(min=0)
                logits = trainer.model(input_ids=ids, attention_mask=att, position_ids=pos).logits[:, -width - 1 : -1]
                logp = torch.log_softmax(logits.float() / loop.temperature, -1)
                logp_pos.append(logp.gather(-1, part["completion_ids"][..., None])[..., 0])
                del logits, logp
        logp_trl, logp_pos = torch.cat(logp_trl), torch.cat(logp_pos)
        gap, gap_pos = logp_gap(logp_trl, rollout), logp_gap(logp_pos, rollout)
        # TRL's loss again, its forward given those position ids: the gradient TRL would compute without the shift
        forward = model_trl.forward
        model_trl.forward = bench_trl.add_position_ids(forward)
        try:
            trainer.optimizer.zero_grad(set_to_none=True)
            for part in chunks:
                trainer._compute_loss(trainer.model, part).backward()
        finally:
            model_trl.forward = forward
        grads_trl_pos = {n: p.grad.detach().clone() for n, p in trl_params.items()}
        trainer.optimizer.zero_grad(set_to_none=True)
        loss = 0.0
        for part in chunks:  # each chunk's loss is its tokens' sum over the whole batch's tokens: they add up
            chunk_loss = trainer._compute_loss(trainer.model, part)
            chunk_loss.backward()
            loss += chunk_loss.item()
        grads_trl = {n: p.grad.detach().clone() for n, p in trl_params.items()}
        norm_trl = float(torch.nn.utils.clip_grad_norm_(list(trl_params.values()), max_grad_norm))
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer._step += 1  # as the Trainer's training_step (the buffered generation is per step)
        rewards_ours = rollout.returns.tolist()
        with torch.no_grad():
            drift_num = math.sqrt(sum(float(((p - trl_params[n]) ** 2).sum()) for n, p in ours_params.items()))
            drift_den = math.sqrt(sum(float(((p - start[n]) ** 2).sum()) for n, p in ours_params.items()))
        adv_trl = inputs["advantages"].reshape(-1)
        step = {
            "batch": k,
            "reward_mean_ours": sum(rewards_ours) / len(rewards_ours),
            "reward_mean_trl": built["batches"][-1]["reward"],  # TRL's reward call on the decoded completions
            "advantage_max_abs_difference": float((adv_ours.reshape(-1) - adv_trl).abs().max()),
            "advantage_abs_mean_ours": float(adv_ours.abs().mean()),
            "advantage_abs_mean_trl": float(adv_trl.abs().mean()),
            "completion_tokens": int(rollout.num_tokens),
            "trl_num_items_in_batch": float(inputs["num_items_in_batch"]),
            "loss_trl": loss,
            "pg_loss_ours": metrics["reinforce/pg"],
            "sampler_learner_logp_abs_diff_max_ours": metrics["offpolicy/logp_abs_diff_max"],
            "sampler_vs_trl_learner_logp_abs_diff_max": gap,
            "sampler_vs_trl_forward_with_position_ids_logp_abs_diff_max": gap_pos,
            "grad_norm_ours_before_clip": captured["norm"],
            "grad_norm_trl_before_clip": norm_trl,
            **grad_compare(grads_ours, grads_trl),
            "with_position_ids": grad_compare(grads_ours, grads_trl_pos),
            "weights_apart_over_moved": drift_num / drift_den if drift_den else None,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        out["steps"].append(step)
        print(json.dumps(step), flush=True)
    return out


def stop_rule(setting: str, samples: int, threads: int) -> dict[str, Any]:
    """What TRL's stop rule (EOS only) gives vs our env's (EOS or the closed ``#### answer`` line).

    Samples completions from the start model as TRL's GRPOTrainer does (``model.generate``, the setting's
    temperature, no top-k / top-p, the token budget, stopping at EOS) on the first training problems, and
    grades each twice with the same grader: whole (what TRL rewards) and cut where our env would have ended
    the episode (after the first ``#### X`` line's newline). The grader reads the *last* ``#### X`` line, so a
    completion that writes a second answer line after the first is graded on the second by TRL only.
    """
    import gymnasium as gym
    import torch

    import lm_envs
    from lm_envs.tasks.math.rewards import MathReward

    args = argparse.Namespace(threads=threads, cache_dir=None, quick=False, updates=1, eval_episodes=None)
    spec = trl_parity.setting_spec(setting, args)
    if spec.get("model_dir") and not Path(spec["model_dir"], "recipe.json").exists():
        bench_trl.prepare_model(spec)
    bench_trl._setup(spec)
    model = bench_trl._load_model(spec, lm_envs.load_codec(spec.get("model_path"))).eval()
    env = gym.make(spec["env"], max_new_tokens=spec["max_new_tokens"], **bench_trl._env_kwargs(spec, model)).unwrapped
    prompt_cfg, codec, G = env.episodes.config, env.codec, spec["group"]
    problems = [env.task.problem("train", i) for i in range(-(-samples // G))]
    stops = sorted(set(codec.stop_token_ids) | {codec.eos_token_id})  # TRL stops on the model's EOS ids
    torch.manual_seed(spec["seed"])
    whole: list[str] = []
    for start in range(0, len(problems), 4):  # 4 problems x G samples per generate call, as one update
        chunk = problems[start : start + 4]
        ids = [prompt_cfg.encode_prompt(codec, p.prompt) for p in chunk for _ in range(G)]
        width = max(len(x) for x in ids)
        pad = codec.pad_token_id if codec.pad_token_id is not None else stops[0]
        input_ids = torch.tensor([[pad] * (width - len(x)) + list(x) for x in ids])
        attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
        with torch.no_grad():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                do_sample=True,
                temperature=spec["temperature"],
                top_k=0,
                top_p=1.0,
                max_new_tokens=spec["max_new_tokens"],
                eos_token_id=stops,
                pad_token_id=pad,
            )
        for row in out[:, width:].tolist():
            ends = [i for i, t in enumerate(row) if t in stops]
            row = row[: ends[0]] if ends else row
            whole.append(codec.decode(row))
    whole = whole[:samples]
    rows = [problems[i // G] for i in range(len(whole))]

    def cut(text: str) -> str:  # where our env ends the episode: the first closed answer line
        end = 0
        for line in text.splitlines(keepends=True):
            end += len(line)
            if line.endswith("\n") and env.task.stops(line):
                return text[:end]
        return text

    ours = [cut(t) for t in whole]
    grade = MathReward()
    r_whole = [o.reward for o in grade.outcome_batch(rows, whole)]
    r_cut = [o.reward for o in grade.outcome_batch(rows, ours)]
    n = len(whole)
    return {
        "setting": setting,
        "samples": n,
        "temperature": spec["temperature"],
        "max_new_tokens": spec["max_new_tokens"],
        "reward_whole_trl_stop": sum(r_whole) / n,
        "reward_cut_our_stop": sum(r_cut) / n,
        "fraction_text_after_first_answer_line": sum(a != b for a, b in zip(whole, ours)) / n,
        "fraction_grade_differs": sum(a != b for a, b in zip(r_whole, r_cut)) / n,
        "whole_right_cut_wrong": sum(a > b for a, b in zip(r_whole, r_cut)),
        "cut_right_whole_wrong": sum(b > a for a, b in zip(r_whole, r_cut)),
        "examples_differing": [w for w, o in zip(whole, ours) if w != o][:5],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=trl_parity.SETTINGS, default="tiny")
    parser.add_argument("--steps", type=int, default=3, help="batches with a learning signal, each through both sides")
    parser.add_argument("--max-batches", type=int, default=12, help="batches sampled at most (no-signal ones skipped)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--trl-positions", action="store_true", help="give TRL's forwards position ids (its steps follow ours)"
    )
    parser.add_argument("--stop-rule", type=int, default=0, metavar="N", help="only the stop-rule check, N samples")
    parser.add_argument("--out", default=None, help="JSON (default: bench/results/trl_<check>_<setting>.json)")
    args = parser.parse_args(argv)
    if args.stop_rule:
        out, name = stop_rule(args.setting, args.stop_rule, args.threads), "stop_rule"
    else:
        out = run(args.setting, args.steps, args.threads, args.max_batches, args.trl_positions)
        name = "grad_check_positions" if args.trl_positions else "grad_check"
    path = Path(args.out or ROOT / "bench" / "results" / f"trl_{name}_{args.setting}.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
