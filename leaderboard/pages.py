"""Server-rendered HTML: the leaderboard tables, a score plot per env, and entry pages.

Everything a page needs is inline: a small table sorter (click or press Enter on a column header)
and an SVG plot of each entry's per-seed scores with its 95% interval. Nothing is fetched from the
network. All submitted text (agent and model names, the full record) goes through Jinja2's
autoescaping, and the pages carry a Content-Security-Policy that allows only the one inline script
and style block by hash, so even a missed escape could not run a script.

Links are built by a :class:`Links` object, so the same templates serve the live server (absolute
paths) and the static export (relative file names).

Example:
    >>> from leaderboard.store import LeaderboardStore
    >>> html = render_index(boards(LeaderboardStore("sqlite://")), ServerLinks())
    >>> "LMEnv/TargetWord-v0" in html and "<script" in html
    True
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from jinja2 import DictLoader, Environment

from leaderboard.boards import Board, boards
from leaderboard.store import Entry

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "Links",
    "ServerLinks",
    "StaticLinks",
    "boards",
    "render_entry",
    "render_env",
    "render_index",
    "score_plot",
]

#: Entries drawn in an env's plot (the table lists them all).
PLOT_MAX_ENTRIES = 30

SCRIPT = """
(function () {
  function sortBy(table, th, col) {
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    var heads = table.tHead.rows[0].cells;
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", dir);
    var numeric = th.getAttribute("data-type") === "number";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    function value(row) {
      var cell = row.cells[col];
      var v = cell.getAttribute("data-value");
      return v === null ? cell.textContent : v;
    }
    rows.sort(function (a, b) {
      var x = value(a), y = value(b);
      var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      if (c === 0 || isNaN(c)) {
        c = parseFloat(a.getAttribute("data-rank")) - parseFloat(b.getAttribute("data-rank"));
      }
      return dir === "ascending" ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.setAttribute("role", "columnheader button");
      th.addEventListener("click", function () { sortBy(table, th, col); });
      th.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sortBy(table, th, col); }
      });
    });
  });
})();
"""

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1b1f24; background: #fff; }
header { background: #1b1f24; padding: 0.6rem 1.2rem; }
header a { color: #fff; text-decoration: none; font-weight: 600; }
main { padding: 1rem 1.2rem 3rem; max-width: 1200px; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
p.protocol, p.note { color: #57606a; font-size: 0.9rem; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0 1rem; }
th, td { border-bottom: 1px solid #d0d7de; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num, td.date { white-space: nowrap; }
table.sortable th { cursor: pointer; user-select: none; background: #f6f8fa; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
td.name { max-width: 22rem; overflow-wrap: anywhere; }
pre.record { background: #f6f8fa; padding: 0.8rem; overflow-x: auto; font-size: 0.8rem; max-width: 100%; }
dl.summary { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
dl.summary dt { color: #57606a; } dl.summary dd { margin: 0; overflow-wrap: anywhere; }
svg.plot { max-width: 100%; height: auto; font-size: 11px; }
svg.plot text { fill: #1b1f24; }
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


#: The pages' Content-Security-Policy: only the inline script and style below, nothing from elsewhere.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src {_csp_hash(SCRIPT)}; style-src {_csp_hash(CSS)}; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'"
)

_TEMPLATES = {
    "base.html": """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{% if csp_meta %}<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
{% endif %}<title>{{ title }} · lm-envs leaderboard</title>
<style>{{ css|safe }}</style>
</head>
<body>
<header><a href="{{ links.index() }}">lm-envs leaderboard</a></header>
<main>
{% block main %}{% endblock %}
</main>
<script>{{ script|safe }}</script>
</body>
</html>
""",
    "macros.html": """{% macro plot(p) -%}
<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{{ p.width }}" height="{{ p.height }}"
 viewBox="0 0 {{ p.width }} {{ p.height }}" role="img" aria-label="{{ p.label }}">
<title>{{ p.label }}</title>
{% for t in p.ticks %}<line class="grid" x1="{{ t.x }}" x2="{{ t.x }}" y1="{{ p.top - 4 }}" y2="{{ p.bottom }}"
 stroke="#d0d7de" stroke-width="1"/><text x="{{ t.x }}" y="{{ p.top - 8 }}" text-anchor="middle">{{ t.label }}</text>
{% endfor %}{% for r in p.rows %}<g class="entry" data-entry-id="{{ r.id }}">
<title>{{ r.title }}</title>
<text class="label" x="{{ p.left - 8 }}" y="{{ r.y + 4 }}" text-anchor="end">{{ r.label }}</text>
<g stroke="#0969da" stroke-width="2">
<line class="ci" x1="{{ r.x_low }}" x2="{{ r.x_high }}" y1="{{ r.y }}" y2="{{ r.y }}"/>
<line class="ci-cap" x1="{{ r.x_low }}" x2="{{ r.x_low }}" y1="{{ r.y - 5 }}" y2="{{ r.y + 5 }}"/>
<line class="ci-cap" x1="{{ r.x_high }}" x2="{{ r.x_high }}" y1="{{ r.y - 5 }}" y2="{{ r.y + 5 }}"/>
</g>
{% for x in r.seeds %}<circle class="seed" cx="{{ x }}" cy="{{ r.y }}" r="3" fill="#8250df" fill-opacity="0.55"/>
{% endfor %}<rect class="score" x="{{ r.x_score - 4 }}" y="{{ r.y - 4 }}" width="8" height="8" fill="#cf222e"/>
</g>
{% endfor %}<text x="{{ (p.left + p.right) / 2 }}" y="{{ p.height - 6 }}" text-anchor="middle">{{ p.axis_label }}</text>
</svg>
{%- endmacro %}

{% macro board_section(b, links, heading=True) -%}
<section class="board" id="board-{{ b.env_id|slug }}" data-env="{{ b.env_id }}">
{% if heading %}<h2><a href="{{ links.env(b.env_id) }}">{{ b.env_id }}</a></h2>{% endif %}
<p class="protocol">{% if b.protocol %}Metric <b>{{ b.metric }}</b> ({{ "higher" if b.higher_is_better else "lower" }}
 is better), ranked by its <b>{{ b.aggregate_label }}</b> over seeds with a 95% stratified-bootstrap confidence
 interval · split <b>{{ b.protocol.split }}</b>, {{ b.protocol.num_episodes or "all" }} episodes per seed, at least
 {{ b.protocol.min_seeds }} seeds.{% else %}This env id is not registered on this server any more (retired
 version); metric <b>{{ b.metric }}</b>, ranked by {{ b.aggregate_label }}.{% endif %}</p>
{% if b.entries %}
<table class="sortable leaderboard" data-env="{{ b.env_id }}">
<thead><tr>
<th class="num" data-type="number">Rank</th><th data-type="text">Agent</th><th data-type="text">Model</th>
{% set other = "mean" if b.aggregate == "iqm" else "iqm" %}
<th class="num" data-type="number">Score ({{ b.aggregate_label }})</th><th class="num" data-type="number">95% CI</th>
<th class="num" data-type="number">{{ "Mean" if other == "mean" else "IQM" }}</th>
<th class="num" data-type="number">Seeds</th><th data-type="text">Per-seed scores</th>
<th data-type="text">Evaluated</th><th data-type="text">Submitted by</th>
</tr></thead>
<tbody>
{% for e in b.entries %}<tr data-entry-id="{{ e.id }}" data-rank="{{ loop.index }}">
<td class="num" data-value="{{ loop.index }}">{{ loop.index }}</td>
<td class="name agent" data-value="{{ e.agent_name }}"><a href="{{ links.entry(e.id) }}">{{ e.agent_name }}</a></td>
<td class="name model" data-value="{{ e.model_name }}">{{ e.model_name }}</td>
<td class="num score" data-value="{{ e.score }}">{{ e.score|num }}</td>
<td class="num ci" data-value="{{ e.ci_high - e.ci_low }}">[{{ e.ci_low|num }}, {{ e.ci_high|num }}]</td>
<td class="num {{ other }}" data-value="{{ e[other] }}">{{ e[other]|num }}</td>
<td class="num" data-value="{{ e.n_seeds }}">{{ e.n_seeds }}</td>
<td class="seeds">{% for s in e.seed_scores %}{{ s|num }}{% if not loop.last %}, {% endif %}{% endfor %}</td>
<td class="date" data-value="{{ e.evaluated_at }}">{{ e.evaluated_at[:10] }}</td>
<td class="name" data-value="{{ e.submitted_by or '' }}">{{ e.submitted_by or "local" }}</td>
</tr>
{% endfor %}</tbody>
</table>
{{ plot(score_plot(b)) }}
{% if b.entries|length > plot_max %}<p class="note">The plot shows the top {{ plot_max }} of
 {{ b.entries|length }} entries.</p>{% endif %}
{% else %}<p class="note empty">No submissions yet.</p>
{% endif %}
</section>
{%- endmacro %}
""",
    "index.html": """{% extends "base.html" %}{% from "macros.html" import board_section with context %}
{% block main %}<h1>Leaderboard</h1>
<p class="note">One table per env. Scores are the protocol's metric aggregated over evaluation seeds; bars in the
 plots are 95% confidence intervals, dots the per-seed scores. Click a column header to sort, an agent for its full
 record.</p>
{% for b in boards %}{{ board_section(b, links) }}
{% else %}<p class="note">No envs with an evaluation protocol are registered.</p>
{% endfor %}{% endblock %}
""",
    "env.html": """{% extends "base.html" %}{% from "macros.html" import board_section with context %}
{% block main %}<h1>{{ board.env_id }}</h1>
{{ board_section(board, links, heading=False) }}{% endblock %}
""",
    "entry.html": """{% extends "base.html" %}
{% block main %}<h1>Entry {{ e.id }}: {{ e.agent_name }} on <a href="{{ links.env(e.env_id) }}">{{ e.env_id }}</a></h1>
<dl class="summary">
<dt>Agent</dt><dd class="agent">{{ e.agent_name }}</dd>
<dt>Model</dt><dd class="model">{{ e.model_name }}{% if doc.model.revision %} @ {{ doc.model.revision }}{% endif %}</dd>
<dt>{{ e.aggregate|upper }} of {{ e.metric }}</dt><dd class="score">{{ e.score|num }}
 (95% CI [{{ e.ci_low|num }}, {{ e.ci_high|num }}], {{ "higher" if e.higher_is_better else "lower" }} is better)</dd>
<dt>Mean · IQM</dt><dd>{{ e.mean|num }} · {{ e.iqm|num }}</dd>
<dt>Dataset</dt><dd>{{ doc.dataset.name }} / {{ doc.dataset.split }}, {{ doc.dataset.num_problems }} problems,
 sha256 {{ doc.dataset.hash[:16] }}…</dd>
<dt>Code</dt><dd>{{ doc.code.package }} {{ doc.code.version or "" }}{% if doc.code.git_commit %},
 commit {{ doc.code.git_commit[:12] }}{% if doc.code.git_dirty %} (dirty){% endif %}{% endif %}</dd>
<dt>Hardware</dt><dd>{{ doc.hardware.platform }}, {{ doc.hardware.cpu_count }} CPUs{% if doc.hardware.gpu %},
 {{ doc.hardware.gpu }}{% endif %}</dd>
<dt>Wall time</dt><dd>{{ doc.wall_time_s|num }} s</dd>
<dt>Evaluated</dt><dd>{{ e.evaluated_at }}</dd>
<dt>Submitted</dt><dd>{{ e.created_at.isoformat(timespec="seconds") }} by {{ e.submitted_by or "local" }}</dd>
</dl>
<h2>Seeds</h2>
<table class="sortable seeds">
<thead><tr><th class="num" data-type="number">Seed</th><th class="num" data-type="number">Score</th>
<th class="num" data-type="number">Episodes</th><th data-type="text">Episodes hash</th>
<th data-type="text">Other metrics</th>
</tr></thead>
<tbody>{% for s in doc.seeds %}<tr data-rank="{{ loop.index }}">
<td class="num" data-value="{{ s.seed }}">{{ s.seed }}</td>
<td class="num" data-value="{{ s.score }}">{{ s.score|num }}</td>
<td class="num" data-value="{{ s.num_episodes }}">{{ s.num_episodes }}</td><td><code>{{ s.episodes_hash }}</code></td>
<td>{% for k, v in (s.metrics or {}).items() %}{{ k }}={{ v }}{% if not loop.last %}, {% endif %}{% endfor %}</td>
</tr>{% endfor %}</tbody>
</table>
<h2>Full record</h2>
{% set api = links.api_entry(e.id) %}
{% if api %}<p class="note">As JSON: <a class="json" href="{{ api }}">{{ api }}</a></p>
{% endif %}
<pre class="record">{{ record }}</pre>{% endblock %}
""",
}


def format_number(value: Any) -> str:
    """A score for display: 4 significant digits (``0.7123``, ``12.35``), scientific when huge."""
    if isinstance(value, bool) or value is None:
        return str(value)
    x = float(value)
    if not math.isfinite(x):
        return str(x)
    return f"{x:.4g}" if abs(x) < 1e5 else f"{x:.3e}"


def slug(text: str) -> str:
    """A file-name and HTML-id safe form of ``text``, unique per text (a short hash is appended)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"
    return f"{base}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


_ENV = Environment(loader=DictLoader(_TEMPLATES), autoescape=True, trim_blocks=False, keep_trailing_newline=True)
_ENV.filters["num"] = format_number
_ENV.filters["slug"] = slug


class Links:
    """Where pages link to; subclasses choose server paths or static file names."""

    def index(self) -> str:
        """The index page."""
        raise NotImplementedError

    def env(self, env_id: str) -> str:
        """An env's page."""
        raise NotImplementedError

    def entry(self, entry_id: int) -> str:
        """An entry's page."""
        raise NotImplementedError

    def api_entry(self, entry_id: int) -> str | None:
        """An entry's JSON, if served."""
        return None


class ServerLinks(Links):
    """Links of the live server: ``/``, ``/env/<id>``, ``/entry/<id>``, ``/api/v1/submissions/<id>``."""

    def index(self) -> str:
        return "/"

    def env(self, env_id: str) -> str:
        return "/env/" + quote(env_id, safe="/")

    def entry(self, entry_id: int) -> str:
        return f"/entry/{int(entry_id)}"

    def api_entry(self, entry_id: int) -> str | None:
        return f"/api/v1/submissions/{int(entry_id)}"


class StaticLinks(Links):
    """Links of the static export: ``index.html``, ``env-<slug>.html``, ``entry-<id>.html`` in one directory."""

    def index(self) -> str:
        return "index.html"

    def env(self, env_id: str) -> str:
        return f"env-{slug(env_id)}.html"

    def entry(self, entry_id: int) -> str:
        return f"entry-{int(entry_id)}.html"

    def api_entry(self, entry_id: int) -> str | None:
        return f"entry-{int(entry_id)}.json"


@dataclass(frozen=True)
class _Tick:
    x: float
    label: str


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    span = hi - lo
    raw = span / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    ticks: list[float] = []
    t = first
    while t <= hi + step * 1e-9 and len(ticks) < 20:
        ticks.append(round(t, 12))
        t += step
    return ticks


def score_plot(board: Board, *, width: int = 720, max_entries: int = PLOT_MAX_ENTRIES) -> dict[str, Any]:
    """Coordinates of an env's score plot: per entry, its per-seed scores, interval and score.

    Args:
        board: The env's table.
        width: SVG width in pixels.
        max_entries: Most entries drawn (the best ones).

    Returns:
        A dict the ``plot`` template macro draws (``rows`` with ``x_low``, ``x_high``, ``x_score``,
        ``seeds``; ``ticks``; sizes and labels). Labels are plain text; the template escapes them.
    """
    entries: list[Entry] = board.entries[:max_entries]
    left, right, top, row_h = 190.0, width - 20.0, 34.0, 24.0
    values = [v for e in entries for v in (e.ci_low, e.ci_high, e.score, *e.seed_scores)] or [0.0, 1.0]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.1 or 0.5
        lo, hi = lo - pad, hi + pad
    else:
        pad = (hi - lo) * 0.05
        lo, hi = lo - pad, hi + pad

    def x(v: float) -> float:
        return round(left + (v - lo) / (hi - lo) * (right - left), 2)

    rows = []
    for i, e in enumerate(entries):
        y = top + row_h * i + row_h / 2
        name = e.agent_name if len(e.agent_name) <= 26 else e.agent_name[:25] + "…"
        seeds = ", ".join(format_number(s) for s in e.seed_scores)
        rows.append(
            {
                "id": e.id,
                "y": y,
                "label": f"{i + 1}. {name}",
                "title": f"{e.agent_name} ({e.model_name}): {board.aggregate_label} {format_number(e.score)}, "
                f"95% CI [{format_number(e.ci_low)}, {format_number(e.ci_high)}], seeds {seeds}",
                "x_low": x(e.ci_low),
                "x_high": x(e.ci_high),
                "x_score": x(e.score),
                "seeds": [x(s) for s in e.seed_scores],
            }
        )
    bottom = top + row_h * max(len(rows), 1)
    direction = "higher" if board.higher_is_better else "lower"
    return {
        "width": width,
        "height": int(bottom + 28),
        "left": left,
        "right": right,
        "top": top,
        "bottom": bottom,
        "rows": rows,
        "ticks": [_Tick(x(t), format_number(t)) for t in _nice_ticks(lo, hi)],
        "label": f"{board.env_id}: {board.aggregate_label} of {board.metric} per entry with 95% CI and per-seed scores",
        "axis_label": f"{board.metric} ({direction} is better): ■ {board.aggregate_label}, — 95% CI, ● seeds",
    }


def _render(template: str, links: Links, *, title: str, csp_meta: bool, **context: Any) -> str:
    return _ENV.get_template(template).render(
        links=links,
        title=title,
        css=CSS,
        script=SCRIPT,
        csp=CONTENT_SECURITY_POLICY,
        csp_meta=csp_meta,
        score_plot=score_plot,
        plot_max=PLOT_MAX_ENTRIES,
        **context,
    )


def render_index(all_boards: list[Board], links: Links, *, csp_meta: bool = False) -> str:
    """The index page: every env's table and plot.

    Args:
        all_boards: The tables (:func:`leaderboard.boards.boards`).
        links: Link style (server or static).
        csp_meta: Put the Content-Security-Policy in a ``<meta>`` tag (static files; the server
            sends it as a header).
    """
    return _render("index.html", links, title="Leaderboard", csp_meta=csp_meta, boards=all_boards)


def render_env(board: Board, links: Links, *, csp_meta: bool = False) -> str:
    """One env's page: its table and plot."""
    return _render("env.html", links, title=board.env_id, csp_meta=csp_meta, board=board)


def render_entry(entry: Entry, links: Links, *, csp_meta: bool = False) -> str:
    """An entry's page: summary, per-seed table and the full submission record.

    Raises:
        ValueError: If ``entry`` was loaded without its document (use ``LeaderboardStore.get``).
    """
    if entry.document is None:
        raise ValueError("render_entry needs the entry's document; load it with LeaderboardStore.get(entry_id).")
    record = json.dumps(entry.document, indent=2, ensure_ascii=False)
    return _render(
        "entry.html",
        links,
        title=f"Entry {entry.id}",
        csp_meta=csp_meta,
        e=entry,
        doc=entry.document,
        record=record,
    )
