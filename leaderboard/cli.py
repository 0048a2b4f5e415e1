"""``lm-envs leaderboard``: submit, validate, list, show, export and serve the leaderboard.

Every command takes ``--db URL`` (default ``$LM_ENVS_LEADERBOARD_URL``, else a SQLite file in the
lm-envs cache) and ``--import MODULE`` (import a module that registers more envs first; repeatable).

Examples::

    lm-envs leaderboard submit runs/ppo/eval/submission.json              # into the local store
    lm-envs leaderboard submit result.json --server http://host:8000 --token $TOKEN
    lm-envs leaderboard list --env LMEnv/Math-v0
    lm-envs leaderboard show 3
    lm-envs leaderboard export md -o LEADERBOARD.md
    lm-envs leaderboard export html -o site/
    lm-envs leaderboard admin issue-token alice                          # prints the token once
    lm-envs leaderboard admin hide 7 --reason "impossible score"         # also: unhide, delete
    lm-envs leaderboard admin revoke-token mallory --cascade hide        # and hide mallory's entries
    lm-envs leaderboard admin audit-log
    lm-envs leaderboard verify 7                                          # re-run the protocol on its checkpoints
    lm-envs leaderboard baselines compute LMEnv/Math-v0 --kind format-only   # reference lines per env
    lm-envs leaderboard baselines compute LMEnv/Digits-v0 --kind random-reward --override sft.steps=0
    lm-envs leaderboard baselines list
    lm-envs leaderboard serve --host 127.0.0.1 --port 8000

Exit status: 0 on success, 1 when a submission is refused or a verification does not reproduce, 2 for
usage or connection errors (and entries that cannot be verified: no checkpoints).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from leaderboard.envs import UnknownEnvError
from leaderboard.schema import MAX_SUBMISSION_BYTES, schema_json
from leaderboard.store import URL_ENV, LeaderboardStore, resolve_store_url
from leaderboard.validate import SubmissionError, validate_submission

PROG = "lm-envs leaderboard"
TOKEN_ENV = "LM_ENVS_LEADERBOARD_TOKEN"


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read(MAX_SUBMISSION_BYTES + 1)
    return Path(path).read_bytes()


def _print_refusal(problems: list[str], status: int | None = None) -> None:
    where = f" (HTTP {status})" if status else ""
    print(f"{PROG}: submission refused{where}:", file=sys.stderr)
    for p in problems:
        print(f"  - {p}", file=sys.stderr)


def _cmd_submit(args: argparse.Namespace) -> int:
    body = _read(args.file)
    if args.server:
        return _submit_remote(body, args.server, args.token or os.environ.get(TOKEN_ENV), args.timeout)
    with LeaderboardStore(args.db) as store:
        entry = store.submit(body)
        format_only = next((b for b in store.baselines(entry.env_id) if b.kind == "format-only"), None)
    print(f"stored entry {entry.id}: {entry.env_id} {entry.agent_name} {entry.aggregate}={entry.score:.4g}")
    if format_only is not None and format_only.not_beaten_by(entry):
        print(
            f"note: entry {entry.id} does not beat {entry.env_id}'s format-only baseline ({format_only.score:.4g}: "
            "well-formed answers with no task knowledge); the board marks it.",
            file=sys.stderr,
        )
    return 0


def _submit_remote(body: bytes, server: str, token: str | None, timeout: float) -> int:
    if not token:
        print(f"{PROG}: submitting to a server needs an API token: --token or ${TOKEN_ENV}.", file=sys.stderr)
        return 2
    request = urllib.request.Request(
        server.rstrip("/") + "/api/v1/submissions",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - user-given server URL
            reply = json.loads(response.read())
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read())
        except ValueError:
            detail = {}
        _print_refusal(detail.get("problems") or [str(detail.get("detail") or e.reason)], e.code)
        return 1
    except (urllib.error.URLError, OSError) as e:
        print(f"{PROG}: cannot reach {server}: {e}", file=sys.stderr)
        return 2
    print(f"stored entry {reply['id']}: {server.rstrip('/')}{reply['url']}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    valid = validate_submission(_read(args.file))
    print(f"valid: {valid.env_id} {valid.agent_name} score={valid.score:.4g} [{valid.ci_low:.4g}, {valid.ci_high:.4g}]")
    return 0


def _actor(args: argparse.Namespace) -> str:
    return args.actor or os.environ.get("USER") or "admin"


def _cmd_list(args: argparse.Namespace) -> int:
    with LeaderboardStore(args.db) as store:
        entries = store.entries(args.env, include_hidden=args.all)
        format_only = {b.env_id: b for b in store.baselines(args.env) if b.kind == "format-only"}
    if args.json:
        print(json.dumps([e.summary() for e in entries], indent=2, ensure_ascii=False))
        return 0
    if not entries:
        print("no entries" + (f" for {args.env}" if args.env else "") + f" in {store.url}")
        return 0
    current = None
    rank = 0
    for e in entries:
        if e.env_id != current:
            current, rank = e.env_id, 0
            direction = "higher" if e.higher_is_better else "lower"
            print(f"\n{e.env_id}  ({e.metric}, {direction} is better; ranked by {e.aggregate})")
            if e.env_id in format_only:
                print(f"  format-only baseline: {format_only[e.env_id].score:.4g}")
            print(f"  {'rank':>4} {'id':>6}  {'score':>9}  {'95% CI':<21} {'seeds':>5}  agent / model")
        rank += 1
        ci = f"[{e.ci_low:.4g}, {e.ci_high:.4g}]"
        flags = " [hidden]" if e.hidden else ""
        flags += " [verified]" if e.verified else " [mismatch]" if e.verification == "mismatch" else ""
        baseline = format_only.get(e.env_id)
        flags += " [<= format-only]" if baseline is not None and baseline.not_beaten_by(e) else ""
        print(
            f"  {rank:>4} {e.id:>6}  {e.score:>9.4g}  {ci:<21} {e.n_seeds:>5}  {e.agent_name} / {e.model_name}{flags}"
        )
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    with LeaderboardStore(args.db) as store:
        entry = store.get(args.id, include_hidden=True)
    print(
        json.dumps(
            {**entry.summary(), "hidden": entry.hidden, "document": entry.document}, indent=2, ensure_ascii=False
        )
    )
    return 0


def _cmd_hide(args: argparse.Namespace) -> int:
    with LeaderboardStore(args.db) as store:
        entry = store.hide(args.id, reason=args.reason, actor=_actor(args))
    print(f"hid entry {entry.id} ({entry.env_id}, {entry.agent_name})")
    return 0


def _cmd_unhide(args: argparse.Namespace) -> int:
    with LeaderboardStore(args.db) as store:
        entry = store.unhide(args.id, reason=args.reason, actor=_actor(args))
    print(f"entry {entry.id} is visible again")
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    if not args.yes:
        print(f"{PROG}: deleting is permanent (hide is not); pass --yes to delete entry {args.id}.", file=sys.stderr)
        return 2
    with LeaderboardStore(args.db) as store:
        summary = store.delete(args.id, reason=args.reason, actor=_actor(args))
    print(f"deleted entry {summary['id']} ({summary['env_id']}, {summary['agent']}); its summary is in the audit log")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from leaderboard.verify import VerificationError, verify_entry

    with LeaderboardStore(args.db) as store:
        try:
            entry, record = verify_entry(store, args.id, device=args.device, workdir=args.workdir, actor=_actor(args))
        except VerificationError as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(record, indent=2, ensure_ascii=False))
    else:
        head = f"entry {entry.id} ({entry.env_id}, {entry.agent_name})"
        print(f"{head}: {record['metric']}, tolerance {record['tolerance']:g}")
        for r in record["seeds"]:
            got = "-" if r["reproduced"] is None else f"{r['reproduced']:.6g}"
            print(f"  seed {r['seed']}: submitted {r['submitted']:.6g}, re-run {got}: {r['result']}")
        print(f"{record['status']}")
    return 0 if record["status"] == "verified" else 1


def _cmd_baselines_compute(args: argparse.Namespace) -> int:
    from leaderboard.baselines import format_only_baseline, random_reward_baselines, shared_random_reward_runs
    from leaderboard.envs import leaderboard_env_ids

    envs = leaderboard_env_ids() if args.env == ["all"] else args.env
    kinds = ("format-only", "random-reward") if args.kind == "all" else (args.kind,)
    failed = 0
    results = []
    jobs: list[tuple[str, list[str]]] = [("format-only", [e]) for e in envs] if "format-only" in kinds else []
    if "random-reward" in kinds:  # envs whose runs would be the same run share it (e.g. Math-v0, MathProcess-v0)
        try:
            groups = shared_random_reward_runs(envs) if not args.separate_runs else [[e] for e in envs]
        except UnknownEnvError as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            return 1
        jobs += [("random-reward", group) for group in groups]
    with LeaderboardStore(args.db) as store:
        for kind, group in jobs:
            try:
                if kind == "format-only":
                    records = [format_only_baseline(group[0], args.seed, num_episodes=args.num_episodes)]
                else:
                    records = random_reward_baselines(
                        group,
                        args.seed,
                        overrides=args.override,
                        p=args.p,
                        workdir=args.workdir,
                        device=args.device,
                        progress=args.progress,
                        share_runs=not args.separate_runs,
                    )
            except (NotImplementedError, ValueError, KeyError, UnknownEnvError) as e:
                message = e.args[0] if isinstance(e, KeyError) and e.args else e
                print(f"{PROG}: {', '.join(group)} {kind}: {message}", file=sys.stderr)
                failed += 1
                continue
            for record in records:
                baseline = store.set_baseline(record, actor=_actor(args))
                results.append(baseline.summary())
                if not args.json:
                    seeds = ", ".join(f"{s:.4g}" for s in baseline.seed_scores)
                    line = (
                        f"{baseline.env_id} {kind}: {baseline.aggregate} {baseline.metric} = {baseline.score:.4g} "
                        f"[{baseline.ci_low:.4g}, {baseline.ci_high:.4g}] (seeds {seeds})"
                    )
                    start = baseline.detail.get("start")
                    if start:
                        line += f"; RL start (after SFT) {start['score']:.4g}"
                    if baseline.detail.get("shared_with"):
                        line += f"; run made on {baseline.detail['run_env']}"
                    print(line)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    return 1 if failed else 0


def _cmd_baselines_load(args: argparse.Namespace) -> int:
    from leaderboard.baselines import PUBLISHED, check_baseline

    data = json.loads(_read(args.file) if args.file else PUBLISHED.read_bytes())
    items = data if isinstance(data, list) else [data]
    records = [check_baseline(item) for item in items if args.env is None or item.get("env_id") in args.env]
    with LeaderboardStore(args.db) as store:
        for record in records:
            store.set_baseline(record, actor=_actor(args))
    print(f"loaded {len(records)} baseline{'s' if len(records) != 1 else ''} into {store.url}")
    return 0


def _cmd_baselines_list(args: argparse.Namespace) -> int:
    with LeaderboardStore(args.db) as store:
        found = store.baselines(args.env)
    if args.json:
        print(json.dumps([b.summary() for b in found], indent=2, ensure_ascii=False))
        return 0
    if not found:
        print("no baselines" + (f" for {args.env}" if args.env else "") + f" in {store.url}")
    for b in found:
        print(f"{b.env_id:<24} {b.kind:<14} {b.aggregate} {b.metric} = {b.score:.4g} [{b.ci_low:.4g}, {b.ci_high:.4g}]")
    return 0


def _cmd_baselines_delete(args: argparse.Namespace) -> int:
    with LeaderboardStore(args.db) as store:
        if not store.delete_baseline(args.env, args.kind, actor=_actor(args)):
            print(f"{PROG}: {args.env} has no {args.kind} baseline.", file=sys.stderr)
            return 1
    print(f"deleted {args.env}'s {args.kind} baseline")
    return 0


def _cmd_audit_log(args: argparse.Namespace) -> int:
    with LeaderboardStore(args.db) as store:
        events = store.audit_log(entry_id=args.entry, limit=args.limit)
    if args.json:
        print(json.dumps([e.summary() for e in events], indent=2, ensure_ascii=False))
        return 0
    for e in events:
        what = f"entry {e.entry_id}" if e.entry_id is not None else ""
        what += f" {e.target!r}" if e.target else ""
        print(f"{e.at:%Y-%m-%d %H:%M:%S}Z  {e.actor:<12} {e.action:<13} {what.strip()}  {e.reason or ''}".rstrip())
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from leaderboard import export

    with LeaderboardStore(args.db) as store:
        if args.format == "html":
            if not args.output or args.output == "-":
                print(f"{PROG}: export html writes a directory: pass -o DIR.", file=sys.stderr)
                return 2
            files = export.export_html(store, args.output, args.env)
            print(f"wrote {len(files)} files to {args.output} (open {files[0]})")
            return 0
        text = export.export_markdown(store, args.env) if args.format == "md" else export.export_csv(store, args.env)
    if not args.output or args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8", newline="")
        print(f"wrote {args.output}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from leaderboard.server import create_app, serve

    app = create_app(args.db, max_body_bytes=args.max_body_bytes)
    print(f"serving {app.state.store.url} on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    serve(
        app,
        host=args.host,
        port=args.port,
        header_timeout=args.header_timeout,
        limit_concurrency=args.limit_concurrency,
        log_level=args.log_level,
    )
    return 0


def _cmd_schema(_args: argparse.Namespace) -> int:
    print(schema_json())
    return 0


def _cmd_issue_token(args: argparse.Namespace) -> int:
    with LeaderboardStore(args.db) as store:
        token = store.issue_token(args.name, replace=args.replace, actor=_actor(args))
    print(f"API token for {args.name!r} (shown once; only its hash is stored):", file=sys.stderr)
    print(token)
    return 0


def _cmd_revoke_token(args: argparse.Namespace) -> int:
    with LeaderboardStore(args.db) as store:
        n = store.revoke_token(args.name, actor=_actor(args), reason=args.reason)
        ids = (
            store.cascade_entries(args.name, args.cascade, actor=_actor(args), reason=args.reason)
            if args.cascade
            else []
        )
    if args.cascade:
        done = "hid" if args.cascade == "hide" else "deleted"
        print(f"{done} {len(ids)} entr{'y' if len(ids) == 1 else 'ies'} of {args.name!r}: {ids}")
    if n == 0:
        print(f"{PROG}: {args.name!r} has no active token.", file=sys.stderr)
        return 1
    print(f"revoked {n} token(s) of {args.name!r}")
    return 0


def _cmd_list_tokens(args: argparse.Namespace) -> int:
    with LeaderboardStore(args.db) as store:
        tokens = store.tokens()
    for t in tokens:
        state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "active"
        print(f"{t.name}\tlmlb_{t.key_id}_…\tissued {t.created_at:%Y-%m-%d}\t{state}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lm-envs leaderboard``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        default=None,
        metavar="URL",
        help=f"SQLAlchemy URL or SQLite file (default: ${URL_ENV}, else the SQLite file in the lm-envs cache)",
    )
    common.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (to register more envs); repeatable",
    )
    parser = argparse.ArgumentParser(prog=PROG, description="Submit, browse and serve lm-envs leaderboard results.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("submit", parents=[common], help="validate and store a submission (locally or on a server)")
    p.add_argument("file", help="submission JSON file ('-' for stdin)")
    p.add_argument("--server", metavar="URL", help="submit to this leaderboard server instead of the local store")
    p.add_argument("--token", help=f"API token for --server (default: ${TOKEN_ENV})")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the server (default: 30)")
    p.set_defaults(func=_cmd_submit)

    p = sub.add_parser("validate", parents=[common], help="check a submission without storing it")
    p.add_argument("file", help="submission JSON file ('-' for stdin)")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("list", parents=[common], help="list the ranked entries")
    p.add_argument("--env", metavar="ID", help="only this env id")
    p.add_argument("--all", action="store_true", help="also list entries hidden by moderators")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("show", parents=[common], help="print an entry with its full submission record (JSON)")
    p.add_argument("id", type=int, help="entry id (see list)")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("export", parents=[common], help="export to Markdown, CSV or a static HTML site")
    p.add_argument("format", choices=("md", "csv", "html"))
    p.add_argument("-o", "--output", metavar="PATH", help="output file (md, csv; default stdout) or directory (html)")
    p.add_argument("--env", metavar="ID", help="only this env id")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("serve", parents=[common], help="serve the web pages and the JSON API (uvicorn)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    p.add_argument(
        "--max-body-bytes", type=int, default=MAX_SUBMISSION_BYTES, help="request size limit (default: %(default)s)"
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        help="seconds a connection may take to send a request's headers (default: %(default)s)",
    )
    p.add_argument(
        "--limit-concurrency",
        type=int,
        default=512,
        help="connections at once; more are answered 503 (default: %(default)s)",
    )
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser(
        "verify", parents=[common], help="re-run an entry's protocol on its published checkpoints and mark it verified"
    )
    p.add_argument("id", type=int, help="entry id (see list)")
    p.add_argument("--device", default="cpu", help="torch device to evaluate on (default: %(default)s)")
    p.add_argument("--workdir", help="where checkpoints are downloaded and unpacked (default: a temporary directory)")
    p.add_argument("--actor", help="who verifies, for the audit log (default: $USER)")
    p.add_argument("--json", action="store_true", help="print the verification record as JSON")
    p.set_defaults(func=_cmd_verify)

    baselines = sub.add_parser(
        "baselines", help="reference baselines per env: format-only and random-reward (drawn on the board)"
    ).add_subparsers(dest="baselines", required=True)
    p = baselines.add_parser("compute", parents=[common], help="compute and store baselines of ENV (or 'all')")
    p.add_argument("env", nargs="+", metavar="ENV", help="env ids, or 'all' for every env with a protocol")
    p.add_argument(
        "--kind", choices=("format-only", "random-reward", "all"), default="format-only", help="(default: %(default)s)"
    )
    p.add_argument("--seed", type=int, action="append", help="a seed (repeatable; default: the protocol's min_seeds)")
    p.add_argument("--num-episodes", type=int, help="format-only: problems per seed (default: the protocol's)")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="random-reward: a Hydra override of the training run (repeatable), e.g. train.iterations=20",
    )
    p.add_argument("--p", type=float, default=0.5, help="random-reward: probability an episode pays 1 (default: 0.5)")
    p.add_argument("--device", default="cpu", help="random-reward: torch device to evaluate on (default: cpu)")
    p.add_argument("--workdir", help="random-reward: keep the training runs here (default: a temporary directory)")
    p.add_argument("--progress", action="store_true", help="random-reward: show the runs' progress bars")
    p.add_argument(
        "--separate-runs",
        action="store_true",
        help="random-reward: one run per env even where envs differ only in their reward (default: they share it)",
    )
    p.add_argument("--actor", help="who computes them, for the audit log (default: $USER)")
    p.add_argument("--json", action="store_true", help="print the stored baselines as JSON")
    p.set_defaults(func=_cmd_baselines_compute)
    p = baselines.add_parser(
        "load", parents=[common], help="store published baselines (a JSON list from `baselines list --json`)"
    )
    p.add_argument(
        "file", nargs="?", help="JSON file ('-' for stdin; default: the baselines measured for the built-in envs)"
    )
    p.add_argument("--env", action="append", metavar="ID", help="only this env id (repeatable)")
    p.add_argument("--actor", help="who loads them, for the audit log (default: $USER)")
    p.set_defaults(func=_cmd_baselines_load)
    p = baselines.add_parser("list", parents=[common], help="list the stored baselines")
    p.add_argument("--env", metavar="ID", help="only this env id")
    p.add_argument("--json", action="store_true", help="print JSON (with how each was computed)")
    p.set_defaults(func=_cmd_baselines_list)
    p = baselines.add_parser("delete", parents=[common], help="delete ENV's baseline of KIND")
    p.add_argument("env", metavar="ENV")
    p.add_argument("kind", choices=("format-only", "random-reward"))
    p.add_argument("--actor", help="who deletes it, for the audit log (default: $USER)")
    p.set_defaults(func=_cmd_baselines_delete)

    p = sub.add_parser("schema", parents=[common], help="print the submission JSON Schema")
    p.set_defaults(func=_cmd_schema)

    admin = sub.add_parser("admin", help="manage API tokens and moderate entries").add_subparsers(
        dest="admin", required=True
    )
    moderator = argparse.ArgumentParser(add_help=False, parents=[common])
    moderator.add_argument("--actor", help="who acts, for the audit log (default: $USER)")
    p = admin.add_parser("issue-token", parents=[moderator], help="issue an API token for NAME (printed once)")
    p.add_argument("name")
    p.add_argument("--replace", action="store_true", help="revoke NAME's active token first")
    p.set_defaults(func=_cmd_issue_token)
    p = admin.add_parser("revoke-token", parents=[moderator], help="revoke NAME's active tokens")
    p.add_argument("name")
    p.add_argument("--cascade", choices=("hide", "delete"), help="also hide or delete the entries NAME submitted")
    p.add_argument("--reason", help="why (audit log)")
    p.set_defaults(func=_cmd_revoke_token)
    p = admin.add_parser("hide", parents=[moderator], help="hide entry ID from every page, listing and export")
    p.add_argument("id", type=int)
    p.add_argument("--reason", required=True, help="why (audit log)")
    p.set_defaults(func=_cmd_hide)
    p = admin.add_parser("unhide", parents=[moderator], help="show a hidden entry again")
    p.add_argument("id", type=int)
    p.add_argument("--reason", help="why (audit log)")
    p.set_defaults(func=_cmd_unhide)
    p = admin.add_parser(
        "delete", parents=[moderator], help="delete entry ID for good (the audit log keeps its summary)"
    )
    p.add_argument("id", type=int)
    p.add_argument("--reason", required=True, help="why (audit log)")
    p.add_argument("--yes", action="store_true", help="confirm: deleting cannot be undone")
    p.set_defaults(func=_cmd_delete)
    p = admin.add_parser("audit-log", parents=[common], help="print the moderation and token audit log, newest first")
    p.add_argument("--entry", type=int, metavar="ID", help="only events about this entry")
    p.add_argument("--limit", type=int, default=None, help="at most this many events")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_audit_log)
    p = admin.add_parser("list-tokens", parents=[common], help="list issued tokens (names and key ids, no secrets)")
    p.set_defaults(func=_cmd_list_tokens)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``lm-envs leaderboard`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        for module in args.imports:
            importlib.import_module(module)
        if args.db is not None:
            args.db = resolve_store_url(args.db)
        return int(args.func(args))
    except SubmissionError as e:
        _print_refusal(e.problems)
        return 1
    except (KeyError, ValueError, OSError, ImportError, UnknownEnvError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"{PROG}: {message}", file=sys.stderr)
        return 2
    except SQLAlchemyError as e:
        print(f"{PROG}: database error ({args.db or 'default store'}): {e}", file=sys.stderr)
        return 2
