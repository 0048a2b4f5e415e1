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
from urllib.parse import quote, urlencode

from jinja2 import DictLoader, Environment

from leaderboard.boards import Board, Row, boards
from leaderboard.store import Baseline, Entry

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

#: Entries drawn in an env's plot (the best of the rows shown).
PLOT_MAX_ENTRIES = 30
#: Rows per page of an env's table on the server.
PAGE_SIZE = 50
#: Rows per env on the index page (the env's page has the rest).
INDEX_TOP = 10

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
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1b1f24; background: #fff;
 line-height: 1.4; }
header { background: #1b1f24; padding: 0.6rem 1.2rem; }
header a { color: #fff; text-decoration: none; font-weight: 600; }
main { padding: 1rem 1.2rem 3rem; max-width: 1200px; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
p.protocol, p.note { color: #57606a; font-size: 0.9rem; max-width: 60rem; }
.table-wrap { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0 1rem; }
th, td { border-bottom: 1px solid #d0d7de; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num, td.date, td.status { white-space: nowrap; }
table.sortable th { cursor: pointer; user-select: none; background: #f6f8fa; }
table.overview th { background: #f6f8fa; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
td.name { max-width: 18rem; overflow-wrap: break-word; word-break: normal; hyphens: auto; }
span.tie { color: #57606a; cursor: help; }
.badge { font-size: 0.75rem; padding: 0.05rem 0.4rem; border-radius: 0.6rem; white-space: nowrap; }
.badge.verified { background: #dafbe1; color: #116329; }
.badge.self-reported { background: #f6f8fa; color: #57606a; }
.badge.mismatch { background: #ffebe9; color: #a40e26; }
.badge.reference { background: #fff8c5; color: #7d4e00; }
.badge.below-baseline { background: #fff1e5; color: #953800; }
tr.baseline td { background: #fffbeb; border-top: 2px dashed #bf8700; border-bottom: 2px dashed #bf8700;
 color: #7d4e00; font-style: italic; }
form.filter { display: flex; flex-wrap: wrap; gap: 0.5rem 1rem; align-items: center; margin: 0.5rem 0 1rem; }
form.filter input[type=search] { padding: 0.3rem; min-width: 12rem; max-width: 100%; }
nav.pager { display: flex; gap: 1rem; align-items: center; font-size: 0.9rem; margin-bottom: 1rem; }
ul.empty-envs { columns: 2 16rem; color: #57606a; font-size: 0.9rem; }
pre.record { background: #f6f8fa; padding: 0.8rem; overflow-x: auto; font-size: 0.8rem; max-width: 100%; }
dl.summary { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 0.2rem 1rem; }
dl.summary dt { color: #57606a; } dl.summary dd { margin: 0; overflow-wrap: anywhere; }
svg.plot { max-width: 100%; height: auto; font-size: 11px; }
svg.plot text { fill: #1b1f24; }
svg.plot g.baseline text { fill: #7d4e00; }
code { overflow-wrap: anywhere; }
.narrow-only { display: none; }
.verified-mark { color: #116329; font-weight: 600; }
@media (max-width: 700px) {
 main { padding: 0.6rem 0.6rem 2rem; }
 .opt { display: none; }
 td.name { max-width: 9rem; }
 th, td { padding: 0.25rem 0.35rem; }
 table { font-size: 0.85rem; }
 dl.summary { grid-template-columns: minmax(0, 1fr); } dl.summary dd { margin-bottom: 0.4rem; }
}
@media (max-width: 480px) {
 .wide { display: none; }
 .narrow-only { display: inline; }
 td.name { max-width: 11rem; }
}
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


#: The pages' Content-Security-Policy: only the inline script and style below, nothing from elsewhere.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src {_csp_hash(SCRIPT)}; style-src {_csp_hash(CSS)}; img-src 'self' data:; "
    "base-uri 'none'; form-action 'self'"
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
{% endfor %}{% for r in p.refs %}<g class="baseline" data-baseline="{{ r.kind }}"><title>{{ r.title }}</title>
<line x1="{{ r.x }}" x2="{{ r.x }}" y1="{{ p.top - 4 }}" y2="{{ r.y - 10 }}" stroke="#bf8700" stroke-width="1.5"
 stroke-dasharray="5 4"/><text x="{{ r.x }}" y="{{ r.y }}" text-anchor="middle" fill="#7d4e00">{{ r.label }}</text></g>
{% endfor %}<text x="{{ (p.left + p.right) / 2 }}" y="{{ p.height - 6 }}" text-anchor="middle">{{ p.axis_label }}</text>
</svg>
{%- endmacro %}

{% macro status(e) -%}
{% if e.verification == "verified" %}<span class="badge verified" title="per-seed scores reproduced from the published
 checkpoints">verified</span>{% elif e.verification == "mismatch" %}<span class="badge mismatch" title="a re-run of the
 protocol on the published checkpoints did not reproduce the scores">mismatch</span>{% else %}<span
 class="badge self-reported" title="not re-run by the leaderboard">self-reported</span>{% endif %}
{%- endmacro %}

{% macro baseline_row(x, other) -%}
{% set bl = x.baseline %}<tr class="baseline" data-baseline="{{ bl.kind }}" data-rank="{{ x.position }}">
<td class="num rank" data-value="{{ x.position }}">–</td>
<td class="name agent" data-value="{{ bl.kind }} baseline"><span title="{{ baseline_title(bl) }}">{{ bl.kind }}
 baseline</span></td>
<td class="name model wide" data-value="{{ bl.detail.model or '' }}">{{ bl.detail.model or "no model" }}</td>
<td class="num score" data-value="{{ bl.score }}">{{ bl.score|num }}</td>
<td class="num ci" data-value="{{ bl.ci_high - bl.ci_low }}">[{{ bl.ci_low|num }}, {{ bl.ci_high|num }}]</td>
<td class="status wide" data-value="reference"><span class="badge reference">reference</span></td>
<td class="num opt" data-value="{{ bl.detail.mean if other == 'mean' else '' }}">{% if other == "mean" and
 bl.detail.mean is number %}{{ bl.detail.mean|num }}{% else %}–{% endif %}</td>
<td class="num opt" data-value="{{ bl.seed_scores|length }}">{{ bl.seed_scores|length }}</td>
<td class="seeds opt">{% for s in bl.seed_scores[:10] %}{{ s|num }}{% if not loop.last %}, {% endif %}{% endfor %}</td>
<td class="date opt" data-value="{{ bl.created_at.isoformat() }}">{{ bl.created_at.isoformat()[:10] }}</td>
<td class="name opt" data-value="">lm-envs</td>
</tr>
{%- endmacro %}

{% macro baselines_note(b) -%}
{% if b.usable_baselines %}<p class="note baselines">Reference baselines, scored under this protocol:
{% for bl in b.usable_baselines %}<span class="baseline" data-baseline="{{ bl.kind }}"
 title="{{ baseline_title(bl) }}"><b>{{ bl.kind }}</b> {{ bl.score|num }} [{{ bl.ci_low|num }},
 {{ bl.ci_high|num }}]</span>{% if baseline_context(bl) %} <span class="baseline-detail"
 data-baseline="{{ bl.kind }}">({{ baseline_context(bl) }})</span>{% endif %}{% if not loop.last %} · {% endif %}{%
 endfor %}. Format-only: well-formed answers with no task knowledge; random-reward: the standard training run
 with the reward replaced by a coin flip. Entries at or below format-only are marked
 <span class="badge below-baseline">≤ format-only</span>.</p>{% endif %}
{%- endmacro %}

{% macro filter_form(action, query, verified_only) -%}
<form class="filter" method="get" action="{{ action }}" role="search">
<label>Search <input type="search" name="q" value="{{ query or '' }}" maxlength="200"
 placeholder="agent, model or submitter"></label>
<label><input type="checkbox" name="verified" value="1"{% if verified_only %} checked{% endif %}> verified only</label>
<button type="submit">Filter</button>
{% if query or verified_only %}<a href="{{ action }}">clear</a>{% endif %}
</form>
{%- endmacro %}

{% macro board_section(v, links, heading=True) -%}
{% set b = v.board %}
<section class="board" id="board-{{ b.env_id|slug }}" data-env="{{ b.env_id }}">
{% if heading %}<h2><a href="{{ links.env(b.env_id) }}">{{ b.env_id }}</a></h2>{% endif %}
<p class="protocol">{% if b.protocol %}Metric <b>{{ b.metric }}</b> ({{ "higher" if b.higher_is_better else "lower" }}
 is better{% if b.range_label %}, range {{ b.range_label }}{% endif %}), ranked by its
 <b>{{ b.aggregate_label }}</b> over seeds with a 95% stratified-bootstrap confidence
 interval · split <b>{{ b.protocol.split }}</b>, {{ b.protocol.num_episodes or "all" }} episodes per seed, at least
 {{ b.protocol.min_seeds }} seeds.{% else %}This env id is not registered on this server any more (retired
 version); metric <b>{{ b.metric }}</b>, ranked by {{ b.aggregate_label }}.{% endif %}
 {{ b.entries|length }} entr{{ "y" if b.entries|length == 1 else "ies" }}, {{ b.verified_count }} verified.</p>
{{ baselines_note(b) }}
{% if v.rows %}
<div class="table-wrap">
<table class="sortable leaderboard" data-env="{{ b.env_id }}">
<thead><tr>
<th class="num" data-type="number" title="1 + the number of entries whose 95% interval is entirely better; = marks
 ties">Rank</th><th data-type="text">Agent</th><th class="wide" data-type="text">Model</th>
{% set other = "mean" if b.aggregate == "iqm" else "iqm" %}
<th class="num" data-type="number">Score ({{ b.aggregate_label }})</th><th class="num" data-type="number">95% CI</th>
<th class="wide" data-type="text">Status</th>
<th class="num opt" data-type="number">{{ "Mean" if other == "mean" else "IQM" }}</th>
<th class="num opt" data-type="number">Seeds</th><th class="opt" data-type="text">Per-seed scores</th>
<th class="opt" data-type="text">Evaluated</th><th class="opt" data-type="text">Submitted by</th>
</tr></thead>
<tbody>
{% for kind, r in v.lines %}{% if kind == "baseline" %}{{ baseline_row(r, other) }}{% else %}{% set e = r.entry
 %}<tr data-entry-id="{{ e.id }}" data-rank="{{ r.position }}"
 class="{{ e.verification or 'self-reported' }}{% if r.tied %} tied{% endif %}{% if b.below_format_only(e)
 %} below-baseline{% endif %}">
<td class="num rank" data-value="{{ r.position }}">{{ r.rank }}{% if r.tied %}<span class="tie"
 title="95% intervals overlap: statistically tied">=</span>{% endif %}</td>
<td class="name agent" data-value="{{ e.agent_name }}"><a href="{{ links.entry(e.id) }}">{{ e.agent_name }}</a>{% if
 e.verified %}<span class="narrow-only verified-mark" title="verified"> ✓</span>{% endif %}</td>
<td class="name model wide" data-value="{{ e.model_name }}">{{ e.model_name }}</td>
<td class="num score" data-value="{{ e.score }}">{{ e.score|num }}</td>
<td class="num ci" data-value="{{ e.ci_high - e.ci_low }}">[{{ e.ci_low|num }}, {{ e.ci_high|num }}]</td>
<td class="status wide" data-value="{{ e.verification or 'self-reported' }}">{{ status(e) }}{% if b.below_format_only(e)
 %} <span class="badge below-baseline" title="does not beat the format-only baseline ({{ b.format_only.score|num }}):
 well-formed answers without task knowledge score as much">≤ format-only</span>{% endif %}</td>
<td class="num opt {{ other }}" data-value="{{ e[other] }}">{{ e[other]|num }}</td>
<td class="num opt" data-value="{{ e.n_seeds }}">{{ e.n_seeds }}</td>
<td class="seeds opt">{% for s in e.seed_scores[:10] %}{{ s|num }}{% if not loop.last %}, {% endif %}{% endfor %}{% if
 e.seed_scores|length > 10 %}, …{% endif %}</td>
<td class="date opt" data-value="{{ e.evaluated_at }}">{{ e.evaluated_at[:10] }}</td>
<td class="name opt" data-value="{{ e.submitted_by or '' }}">{{ e.submitted_by or "local" }}</td>
</tr>
{% endif %}{% endfor %}</tbody>
</table>
</div>
{% if v.shown < v.matched %}<p class="note more">Showing {{ v.first }}–{{ v.first + v.shown - 1 }} of {{ v.matched }}
 {% if v.matched < b.entries|length %}matching {% endif %}entries{% if v.more_url %} ·
 <a href="{{ v.more_url }}">all {{ v.matched }} →</a>{% endif %}</p>{% endif %}
{% if v.prev_url or v.next_url %}<nav class="pager" aria-label="pages">{% if v.prev_url %}<a rel="prev"
 href="{{ v.prev_url }}">← previous</a>{% endif %}<span>page {{ v.page }} of {{ v.pages }}</span>{% if v.next_url %}<a
 rel="next" href="{{ v.next_url }}">next →</a>{% endif %}</nav>{% endif %}
{{ plot(score_plot(b, v.rows)) }}
{% elif b.entries %}<p class="note empty">No entries match the filter.</p>
{% else %}<p class="note empty">No submissions yet.</p>
{% endif %}
</section>
{%- endmacro %}
""",
    "index.html": """{% extends "base.html" %}{% from "macros.html" import board_section, filter_form with context %}
{% block main %}<h1>Leaderboard</h1>
<p class="note">Agents trained on lm-envs environments, scored under each env's evaluation protocol. Scores are the
 protocol's metric aggregated over evaluation seeds with 95% confidence intervals; entries whose intervals overlap
 share a rank (marked =). <span class="badge verified">verified</span> entries were re-run by the leaderboard from
 their published checkpoints; <span class="badge self-reported">self-reported</span> ones were not.</p>
{% if links.dynamic %}{{ filter_form(links.index(), query, verified_only) }}{% endif %}
{% if populated %}<section class="overview"><h2>Overview</h2>
<div class="table-wrap"><table class="overview">
<thead><tr><th>Env</th><th>Metric</th><th class="num">Entries</th><th class="num">Verified</th><th>Best</th>
<th class="num">Score</th><th class="num opt">95% CI</th><th class="num opt"
 title="the format-only baseline: well-formed answers with no task knowledge">Format-only</th></tr></thead>
<tbody>{% for v in populated %}{% set b = v.board %}{% set top = b.entries[0] %}<tr data-env="{{ b.env_id }}">
<td><a href="#board-{{ b.env_id|slug }}">{{ b.env_id }}</a></td>
<td>{{ b.aggregate_label }} {{ b.metric }} {{ "↑" if b.higher_is_better else "↓" }}</td>
<td class="num">{{ b.entries|length }}</td><td class="num">{{ b.verified_count }}</td>
<td class="name"><a href="{{ links.entry(top.id) }}">{{ top.agent_name }}</a></td>
<td class="num">{{ top.score|num }}</td><td class="num opt">[{{ top.ci_low|num }}, {{ top.ci_high|num }}]</td>
<td class="num opt format-only">{% if b.format_only %}{{ b.format_only.score|num }}{% else %}–{% endif %}</td>
</tr>{% endfor %}</tbody></table></div>
</section>{% endif %}
{% for v in populated %}{{ board_section(v, links) }}
{% endfor %}
{% if empty %}<section class="empty-envs"><h2>Envs without submissions yet</h2>
<ul class="empty-envs">{% for b in empty %}<li><a href="{{ links.env(b.env_id) }}">{{ b.env_id }}</a>
 ({{ b.metric }})</li>{% endfor %}</ul></section>{% endif %}
{% if not populated and not empty %}<p class="note">No envs with an evaluation protocol are registered.</p>{% endif %}
{% endblock %}
""",
    "env.html": """{% extends "base.html" %}{% from "macros.html" import board_section, filter_form with context %}
{% block main %}<h1>{{ view.board.env_id }}</h1>
{% if links.dynamic %}{{ filter_form(links.env(view.board.env_id), query, verified_only) }}{% endif %}
{{ board_section(view, links, heading=False) }}{% endblock %}
""",
    "entry.html": """{% extends "base.html" %}{% from "macros.html" import status %}
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
<dt>Status</dt><dd class="status">{{ status(e) }}{% if e.verified_at %} (re-run
 {{ e.verified_at.isoformat(timespec="seconds") }}){% endif %}</dd>
</dl>
{% if verification and verification.seeds %}<h2>Verification</h2>
<p class="note">The protocol was re-run on each seed's published checkpoint; a seed reproduces when its score is within
 {{ verification.tolerance|num }} of the submitted one.</p>
<div class="table-wrap"><table class="verification">
<thead><tr><th class="num">Seed</th><th class="num">Submitted</th><th class="num">Re-run</th>
<th class="num">Difference</th><th>Episodes hash</th><th>Result</th></tr></thead>
<tbody>{% for s in verification.seeds %}<tr>
<td class="num">{{ s.seed }}</td><td class="num">{{ s.submitted|num }}</td>
<td class="num">{% if s.reproduced is not none %}{{ s.reproduced|num }}{% else %}–{% endif %}</td>
<td class="num">{% if s.difference is not none %}{{ s.difference|num }}{% else %}–{% endif %}</td>
<td>{{ "same" if s.episodes_hash_match else "differs" if s.episodes_hash_match is not none else "–" }}</td>
<td>{{ s.result }}</td></tr>{% endfor %}</tbody></table></div>
{% endif %}
<h2>Seeds</h2>
<div class="table-wrap"><table class="sortable seeds">
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
</table></div>
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
    """Where pages link to; subclasses choose server paths or static file names.

    Attributes:
        dynamic: Whether pages can take query parameters (search, filter, page numbers).
    """

    dynamic = False

    def env_page(self, env_id: str, page: int = 1, query: str | None = None, verified_only: bool = False) -> str:
        """An env's page at ``page`` with a filter (static pages ignore the parameters)."""
        return self.env(env_id)

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

    dynamic = True

    def env_page(self, env_id: str, page: int = 1, query: str | None = None, verified_only: bool = False) -> str:
        params: dict[str, Any] = {}
        if query:
            params["q"] = query
        if verified_only:
            params["verified"] = 1
        if page > 1:
            params["page"] = page
        return self.env(env_id) + ("?" + urlencode(params) if params else "")

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


def score_plot(
    board: Board, rows: list[Row] | None = None, *, width: int = 720, max_entries: int = PLOT_MAX_ENTRIES
) -> dict[str, Any]:
    """Coordinates of an env's score plot: per entry, its per-seed scores, interval and score.

    Args:
        board: The env's table.
        rows: The rows to draw (default: the whole table), best first.
        width: SVG width in pixels.
        max_entries: Most entries drawn (the first of ``rows``).

    Returns:
        A dict the ``plot`` template macro draws (``rows`` with ``x_low``, ``x_high``, ``x_score``,
        ``seeds``; ``ticks``; sizes and labels). Labels are plain text; the template escapes them.
    """
    if rows is None:
        rows = board.rows()
    rows = rows[:max_entries]
    entries: list[Entry] = [r.entry for r in rows]
    left, right, top, row_h = 190.0, width - 20.0, 34.0, 24.0
    references = board.usable_baselines
    values = [v for e in entries for v in (e.ci_low, e.ci_high, e.score, *e.seed_scores)] or [0.0, 1.0]
    values += [b.score for b in references]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.1 or 0.5
        lo, hi = lo - pad, hi + pad
    else:
        pad = (hi - lo) * 0.05
        lo, hi = lo - pad, hi + pad

    def x(v: float) -> float:
        return round(left + (v - lo) / (hi - lo) * (right - left), 2)

    drawn = []
    for i, (row, e) in enumerate(zip(rows, entries)):
        y = top + row_h * i + row_h / 2
        name = e.agent_name if len(e.agent_name) <= 26 else e.agent_name[:25] + "…"
        seeds = ", ".join(format_number(s) for s in e.seed_scores)
        drawn.append(
            {
                "id": e.id,
                "y": y,
                "label": f"{row.rank}{'=' if row.tied else ''}. {name}",
                "title": f"{e.agent_name} ({e.model_name}): {board.aggregate_label} {format_number(e.score)}, "
                f"95% CI [{format_number(e.ci_low)}, {format_number(e.ci_high)}], seeds {seeds}",
                "x_low": x(e.ci_low),
                "x_high": x(e.ci_high),
                "x_score": x(e.score),
                "seeds": [x(s) for s in e.seed_scores],
            }
        )
    bottom = top + row_h * max(len(drawn), 1)
    direction = "higher" if board.higher_is_better else "lower"
    refs = [
        {
            "kind": b.kind,
            "x": x(b.score),
            "y": bottom + 14 + 13 * i,
            "label": f"{b.kind} {format_number(b.score)}",
            "title": baseline_title(b),
        }
        for i, b in enumerate(references)
    ]
    return {
        "width": width,
        "height": int(bottom + 28 + 13 * len(refs)),
        "refs": refs,
        "left": left,
        "right": right,
        "top": top,
        "bottom": bottom,
        "rows": drawn,
        "ticks": [_Tick(x(t), format_number(t)) for t in _nice_ticks(lo, hi)],
        "label": f"{board.env_id}: {board.aggregate_label} of {board.metric} per entry with 95% CI and per-seed scores",
        "axis_label": f"{board.metric} ({direction} is better): ■ {board.aggregate_label}, — 95% CI, ● seeds",
    }


def baseline_title(baseline: Baseline) -> str:
    """A one-line description of how a baseline was computed (plain text; the template escapes it).

    Example:
        >>> import datetime
        >>> now = datetime.datetime.now()
        >>> b = Baseline("X-v0", "format-only", "accuracy", True, "iqm", 0.1, 0.0, 0.2, [0.1], {}, now)
        >>> baseline_title(b)
        'format-only: well-formed answers with no task knowledge (Task.format_only), 1 seed'
    """
    seeds = f"{len(baseline.seed_scores)} seed{'s' if len(baseline.seed_scores) != 1 else ''}"
    if baseline.kind == "format-only":
        return f"format-only: well-formed answers with no task knowledge (Task.format_only), {seeds}"
    detail = baseline.detail
    how = ", ".join(str(o) for o in detail.get("overrides", [])) or "the default run"
    return (
        f"random-reward: {detail.get('agent', 'the standard run')} on {detail.get('model', 'the default model')} "
        f"with a Bernoulli({detail.get('p', 0.5)}) reward per episode ({how}), then the protocol's evaluation, {seeds}"
    )


#: Overrides that change what a run records or how fast it goes, not what it trains (left out of a baseline's budget).
_BOOKKEEPING = (
    "train.eval_every",
    "train.eval_episodes",
    "train.progress",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "eval.",
    "model.threads",
    "model.device",
    "output_dir",
)


def baseline_context(baseline: Baseline) -> str:
    """What a page shows beside a random-reward baseline's score: its RL start, its run's budget and env.

    The RL start is the run's model after SFT, scored the same way: the final score minus it is what
    RL on a coin bought. Empty for format-only baselines.

    Example:
        >>> import datetime
        >>> detail = {"start": {"score": 0.25, "ci": [0.1, 0.4]}, "run_env": "M-v0",
        ...           "overrides": ["sft.steps=100", "train.iterations=20", "model.threads=1"]}
        >>> b = Baseline("P-v0", "random-reward", "accuracy", True, "iqm", 0.3, 0.2, 0.4, [0.3], detail,
        ...              datetime.datetime.now())
        >>> baseline_context(b)
        'RL start (after SFT) 0.25 [0.1, 0.4]; run: sft.steps=100, train.iterations=20; trained on M-v0'
    """
    if baseline.kind != "random-reward":
        return ""
    detail, parts = baseline.detail, []
    start = detail.get("start")
    if isinstance(start, dict) and isinstance(start.get("score"), (int, float)):
        ci = start.get("ci") if isinstance(start.get("ci"), list) and len(start["ci"]) == 2 else None
        interval = f" [{format_number(ci[0])}, {format_number(ci[1])}]" if ci else ""
        parts.append(f"RL start (after SFT) {format_number(start['score'])}{interval}")
    budget = [str(o) for o in detail.get("overrides") or [] if not str(o).startswith(_BOOKKEEPING)]
    parts.append("run: " + (", ".join(budget) if budget else "the default conf/config.yaml"))
    if detail.get("run_env") not in (None, baseline.env_id):
        parts.append(f"trained on {detail['run_env']}")
    return "; ".join(parts)


def _render(template: str, links: Links, *, title: str, csp_meta: bool, **context: Any) -> str:
    return _ENV.get_template(template).render(
        links=links,
        title=title,
        css=CSS,
        script=SCRIPT,
        csp=CONTENT_SECURITY_POLICY,
        csp_meta=csp_meta,
        score_plot=score_plot,
        baseline_title=baseline_title,
        baseline_context=baseline_context,
        plot_max=PLOT_MAX_ENTRIES,
        **context,
    )


def _view(
    board: Board,
    links: Links,
    *,
    query: str | None,
    verified_only: bool,
    page: int = 1,
    page_size: int | None = PAGE_SIZE,
    more: bool = False,
) -> dict[str, Any]:
    rows = board.rows(query, verified_only=verified_only)
    matched = len(rows)
    size = page_size or max(matched, 1)
    pages = max(1, math.ceil(matched / size))
    page = min(max(int(page), 1), pages)
    start = (page - 1) * size
    shown = rows[start : start + size]
    last = start + len(shown) >= matched
    # the reference baselines, where their scores fall: at its position k (rows that beat it) on the page
    # holding row k, or after the last row of the last page
    placed: dict[int, list[dict[str, Any]]] = {}
    for k, baseline in board.baseline_positions(rows):
        if start <= k < start + len(shown) or (last and k >= start + len(shown)):
            placed.setdefault(min(k, start + len(shown)) - start, []).append(
                {"baseline": baseline, "position": k + 0.5}
            )
    lines: list[tuple[str, Any]] = []
    for i in range(len(shown) + 1):
        lines += [("baseline", x) for x in placed.get(i, [])]
        if i < len(shown):
            lines.append(("entry", shown[i]))

    def at(n: int) -> str | None:
        if more or not links.dynamic or not 1 <= n <= pages or n == page:
            return None
        return links.env_page(board.env_id, n, query, verified_only)

    return {
        "board": board,
        "rows": shown,
        "lines": lines,
        "matched": matched,
        "shown": len(shown),
        "first": (page - 1) * size + 1,
        "page": page,
        "pages": pages,
        "prev_url": at(page - 1),
        "next_url": at(page + 1),
        "more_url": links.env_page(board.env_id, 1, query, verified_only) if more else None,
    }


def render_index(
    all_boards: list[Board],
    links: Links,
    *,
    csp_meta: bool = False,
    query: str | None = None,
    verified_only: bool = False,
    top: int = INDEX_TOP,
) -> str:
    """The index page: an overview of every env, the top rows of each populated env, the empty envs last.

    Args:
        all_boards: The tables (:func:`leaderboard.boards.boards`).
        links: Link style (server or static).
        csp_meta: Put the Content-Security-Policy in a ``<meta>`` tag (static files; the server
            sends it as a header).
        query: Only rows whose agent, model or submitter contains this text.
        verified_only: Only verified rows.
        top: Rows per env (the env's page has the rest).
    """
    populated = [
        _view(b, links, query=query, verified_only=verified_only, page_size=top, more=True)
        for b in all_boards
        if b.entries
    ]
    empty = [b for b in all_boards if not b.entries]
    return _render(
        "index.html",
        links,
        title="Leaderboard",
        csp_meta=csp_meta,
        populated=populated,
        empty=empty,
        query=query,
        verified_only=verified_only,
    )


def render_env(
    board: Board,
    links: Links,
    *,
    csp_meta: bool = False,
    page: int = 1,
    query: str | None = None,
    verified_only: bool = False,
    page_size: int | None = None,
) -> str:
    """One env's page: its table (a page of it, filtered) and plot.

    Args:
        board: The env's table.
        links: Link style.
        csp_meta: CSP in a ``<meta>`` tag.
        page: 1-based page number (clamped to the pages there are).
        query: Only rows whose agent, model or submitter contains this text.
        verified_only: Only verified rows.
        page_size: Rows per page; ``None`` for all of them (static export), :data:`PAGE_SIZE` on the server.
    """
    view = _view(board, links, query=query, verified_only=verified_only, page=page, page_size=page_size)
    return _render(
        "env.html",
        links,
        title=board.env_id,
        csp_meta=csp_meta,
        view=view,
        query=query,
        verified_only=verified_only,
    )


def render_entry(
    entry: Entry, links: Links, *, csp_meta: bool = False, verification: dict[str, Any] | None = None
) -> str:
    """An entry's page: summary, verification status, per-seed table and the full submission record.

    Args:
        entry: The entry, with its document.
        links: Link style.
        csp_meta: CSP in a ``<meta>`` tag.
        verification: The last verification's results (``LeaderboardStore.verification_detail``).

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
        verification=verification,
    )
