"""The ``lm-envs`` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lm-envs", description="Token-level RL environments for language models.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="roll the embedded tiny model and a gold policy through an env")
    demo.add_argument("--env", default="LMEnv/Math-v0", help="registered env id (default: %(default)s)")
    demo.add_argument("--num-envs", type=int, default=64)
    demo.add_argument("--seed", type=int, default=0)
    sub.add_parser("envs", help="list the registered lm-envs ids")
    sub.add_parser("train", help="train with Hydra configs (lm-envs train --help)", add_help=False)
    sub.add_parser(
        "train-rm", help="train a reward model: preference, ORM or PRM (lm-envs train-rm --help)", add_help=False
    )
    fetch = sub.add_parser(
        "fetch-model",
        help="fetch and convert a shipped pretrained model (smollm2) or a .gguf file; print its directory",
    )
    fetch.add_argument("model", help="smollm2, or the path of a .gguf file")
    results = sub.add_parser("results", help="combine finished runs (one per seed) into a leaderboard submission")
    results.add_argument("runs", nargs="+", help="run directories holding eval.json")
    results.add_argument("-o", "--output", default="submission.json")
    sub.add_parser(
        "leaderboard",
        help="submit, list, show, export and serve leaderboard results (lm-envs leaderboard -h)",
        add_help=False,
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:
        from agents.train import cli as train_cli

        return train_cli(argv[1:])
    if argv[:1] == ["train-rm"]:
        from agents.train_rm import cli as train_rm_cli

        return train_rm_cli(argv[1:])
    if argv[:1] == ["leaderboard"]:
        from leaderboard.cli import main as leaderboard_main

        return leaderboard_main(argv[1:])
    args = parser.parse_args(argv)

    if args.command == "envs":
        import gymnasium as gym

        import lm_envs

        for env_id in lm_envs.registered_ids():
            kw = gym.spec(env_id).kwargs
            print(f"{env_id:28s} max_new_tokens={kw.get('max_new_tokens', 256)}")
        return 0
    if args.command == "results":
        from agents.results import submission_from_runs
        from leaderboard import write_submission

        try:
            doc = submission_from_runs(args.runs)
        except (ValueError, FileNotFoundError) as e:
            print(f"lm-envs results: {e}", file=sys.stderr)
            return 2
        write_submission(doc, args.output)
        agg = doc["aggregate"]
        print(
            f"wrote {args.output}: {doc['env']['id']} {agg['metric']} IQM {agg['iqm']:.4f} over {agg['n_seeds']} seeds"
        )
        return 0
    if args.command == "fetch-model":
        from agents.policy.pretrained import SHIPPED, resolve_model

        if args.model not in SHIPPED and not args.model.lower().endswith(".gguf"):
            print(
                f"lm-envs fetch-model: give one of {sorted(SHIPPED)} or a .gguf file, not {args.model!r}.",
                file=sys.stderr,
            )
            return 2
        try:
            print(resolve_model(args.model))
        except ValueError as e:
            print(f"lm-envs fetch-model: {e}", file=sys.stderr)
            return 2
        return 0
    if args.command == "demo":
        import gymnasium as gym

        from agents import demo as demo_module

        try:
            demo_module.main(args.env, args.num_envs, args.seed)
        except gym.error.Error as e:
            print(f"lm-envs demo: {e}", file=sys.stderr)
            return 2
        return 0
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
