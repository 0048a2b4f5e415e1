"""Exporting the leaderboard: Markdown tables, CSV rows, and a static HTML site.

Submitted names are untrusted text, so each format escapes them its own way: Markdown
backslash-escapes punctuation (no links, HTML or table breaks can be injected), CSV prefixes text
cells that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``) with ``'``, and HTML goes
through the same autoescaping templates as the server.

Example:
    >>> from leaderboard.store import LeaderboardStore
    >>> print(export_markdown(LeaderboardStore("sqlite://"), "LMEnv/TargetWord-v0").splitlines()[2])
    ## LMEnv/TargetWord-v0
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

from leaderboard.boards import AGGREGATE_LABELS, Board, boards
from leaderboard.pages import StaticLinks, baseline_context, format_number, render_entry, render_env, render_index
from leaderboard.store import LeaderboardStore

__all__ = ["FORMATS", "export_csv", "export_html", "export_markdown"]

#: The export formats ``lm-envs leaderboard export`` accepts.
FORMATS = ("md", "csv", "html")

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#!|<>~&])")
_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def md_escape(text: str) -> str:
    r"""Escape ``text`` for a Markdown table cell: it renders literally, whatever it holds.

    Example:
        >>> md_escape("a|b <script>")
        'a\\|b \\<script\\>'
    """
    return _MD_SPECIAL.sub(r"\\\1", text.replace("\n", " "))


def _protocol_line(board: Board) -> str:
    direction = "higher" if board.higher_is_better else "lower"
    line = (
        f"Metric `{board.metric}` ({direction} is better), ranked by its {board.aggregate_label} over seeds with a 95% "
        "stratified-bootstrap confidence interval"
    )
    if board.protocol:
        episodes = board.protocol["num_episodes"] or "all"
        line += (
            f"; split `{board.protocol['split']}`, {episodes} episodes per seed, at least "
            f"{board.protocol['min_seeds']} seeds."
        )
    else:
        line += (
            "; this env id is not registered here (a retired version, or a package not imported: "
            "`lm-envs --import MODULE leaderboard export ...`)."
        )
    return line


def export_markdown(store: LeaderboardStore, env_id: str | None = None) -> str:
    """The leaderboard as Markdown: a heading, protocol line and table per env.

    Args:
        store: Where the entries are.
        env_id: Only this env.

    Returns:
        Markdown text.
    """
    lines = ["# lm-envs leaderboard", ""]
    for board in boards(store, env_id):
        lines += [f"## {md_escape(board.env_id)}", "", _protocol_line(board), ""]
        if board.usable_baselines:
            refs = "; ".join(
                f"{b.kind} {format_number(b.score)} ({format_number(b.ci_low)} – {format_number(b.ci_high)})"
                + (f" [{md_escape(baseline_context(b))}]" if baseline_context(b) else "")
                for b in board.usable_baselines
            )
            lines += [f"Reference baselines: {refs}. Entries marked ≤ do not beat format-only.", ""]
        if not board.entries:
            lines += ["No submissions yet.", ""]
            continue
        other = "mean" if board.aggregate == "iqm" else "iqm"
        lines += [
            f"| Rank | Agent | Model | Score ({board.aggregate_label}) | 95% CI | {AGGREGATE_LABELS[other]} "
            "| Seeds | Per-seed scores | Evaluated | Submitted by | Entry |",
            "|---:|---|---|---:|---|---:|---:|---|---|---|---:|",
        ]
        for rank, e in enumerate(board.entries, 1):
            cells = [
                str(rank),
                md_escape(e.agent_name) + (" (≤ format-only)" if board.below_format_only(e) else ""),
                md_escape(e.model_name),
                format_number(e.score),
                f"{format_number(e.ci_low)} – {format_number(e.ci_high)}",
                format_number(e.mean if other == "mean" else e.iqm),
                str(e.n_seeds),
                ", ".join(format_number(s) for s in e.seed_scores),
                md_escape(e.evaluated_at[:10]),
                md_escape(e.submitted_by or "local"),
                str(e.id),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _csv_text(text: str | None) -> str:
    text = text or ""
    return "'" + text if text.startswith(_CSV_FORMULA) else text


CSV_COLUMNS = (
    "env_id",
    "rank",
    "id",
    "agent",
    "model",
    "metric",
    "higher_is_better",
    "aggregate",
    "score",
    "ci_low",
    "ci_high",
    "mean",
    "iqm",
    "n_seeds",
    "seed_scores",
    "evaluated_at",
    "submitted_by",
    "created_at",
)


def export_csv(store: LeaderboardStore, env_id: str | None = None) -> str:
    """The leaderboard as CSV, one row per entry (ranked within each env), numbers at full precision.

    ``seed_scores`` is the per-seed scores joined by ``;``. Text cells starting with a formula
    character are prefixed with ``'`` (spreadsheet formula injection).

    Args:
        store: Where the entries are.
        env_id: Only this env.

    Returns:
        CSV text with a header row (``\\r\\n`` line ends, as the csv module writes).
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for board in boards(store, env_id, include_empty=False):
        for rank, e in enumerate(board.entries, 1):
            writer.writerow(
                [
                    _csv_text(e.env_id),
                    rank,
                    e.id,
                    _csv_text(e.agent_name),
                    _csv_text(e.model_name),
                    _csv_text(e.metric),
                    e.higher_is_better,
                    e.aggregate,
                    repr(e.score),
                    repr(e.ci_low),
                    repr(e.ci_high),
                    repr(e.mean),
                    repr(e.iqm),
                    e.n_seeds,
                    ";".join(repr(s) for s in e.seed_scores),
                    _csv_text(e.evaluated_at),
                    _csv_text(e.submitted_by),
                    e.created_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
                ]
            )
    return out.getvalue()


def export_html(store: LeaderboardStore, directory: str | os.PathLike[str], env_id: str | None = None) -> list[Path]:
    """Write the leaderboard as a static site: ``index.html``, a page per env and per entry.

    The pages are the server's pages with relative links (open ``index.html`` from disk or host the
    directory anywhere); each entry also gets its full record as ``entry-<id>.json``.

    Args:
        store: Where the entries are.
        directory: Output directory (created if needed; existing files of the same names are replaced).
        env_id: Only this env.

    Returns:
        The files written, ``index.html`` first.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    links = StaticLinks()
    all_boards = boards(store, env_id)
    written = [out / links.index()]
    written[0].write_text(render_index(all_boards, links, csp_meta=True), encoding="utf-8")
    for board in all_boards:
        path = out / links.env(board.env_id)
        path.write_text(render_env(board, links, csp_meta=True), encoding="utf-8")
        written.append(path)
        for summary in board.entries:
            entry = store.get(summary.id)
            page = out / links.entry(entry.id)
            detail = store.verification_detail(entry.id)
            page.write_text(render_entry(entry, links, csp_meta=True, verification=detail), encoding="utf-8")
            record = out / str(links.api_entry(entry.id))
            record.write_text(
                json.dumps({**entry.summary(), "document": entry.document}, indent=2, ensure_ascii=False) + "\n",
                encoding="utf-8",
            )
            written += [page, record]
    return written
