"""The HTML report: one self-contained file (styles, the plotly.js bundle and the figures
inline; nothing fetched), rendered by a jinja2 template with autoescape on, so every string
that came from a run file is escaped. Figures travel as one JSON block whose `<`, `>` and `&`
are \\u-escaped (a `</script>` inside a kernel name cannot end the block) and are drawn by
one small inline script: the page holds exactly SCRIPTS script elements."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jinja2
import plotly.io as pio
from markupsafe import Markup, escape
from plotly.offline import get_plotlyjs

from . import charts
from .document import Chart, Document, Folded, Links, Note, Table
from .table_layout import SEPARATORS, alignment, compact_config, pieces

SCRIPTS = 3  # plotly.js, the figures' JSON, the drawing script (when there is a chart)

CSS = """
:root { --fg:#1d232b; --muted:#5b6570; --line:#d9dee3; --bg:#fff; --warn:#fff4d6; --warnline:#e0a800;
        --bad:#fde2e1; --good:#e1f5e6; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0; }
header { padding: 16px 24px; border-bottom: 1px solid var(--line); }
header h1 { font-size: 20px; margin: 0 0 6px; }
nav a { margin-right: 14px; color: #0b5cad; text-decoration: none; }
main { padding: 8px 24px 40px; max-width: 1400px; }
h2 { font-size: 18px; margin: 28px 0 10px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 4px 0 12px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top;
         max-width: 420px; overflow-wrap: normal; word-break: keep-all; }
td .w { white-space: nowrap; }
abbr.config { text-decoration: underline dotted var(--muted); cursor: help; }
th { background: #f3f5f7; font-weight: 600; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody td:first-child { white-space: nowrap; }
tr.regression td { background: var(--bad); }
tr.improvement td { background: var(--good); }
.note { color: var(--muted); margin: 6px 0; }
.warning { background: var(--warn); border-left: 4px solid var(--warnline); padding: 8px 12px; margin: 8px 0;
           color: var(--fg); }
.chart { width: 100%; min-height: 380px; border: 1px solid var(--line); margin: 8px 0 16px; }
.chart-missing { color: var(--muted); font-style: italic; margin: 6px 0 14px; }
.missing { color: var(--muted); }
details.fold { border: 1px solid var(--line); border-radius: 4px; margin: 4px 0; padding: 2px 10px; }
details.fold > summary { cursor: pointer; padding: 3px 0; }
details.fold[open] > summary { border-bottom: 1px solid var(--line); margin-bottom: 6px; }
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ doc.title }}</title>
<style>{{ css }}</style>
</head>
<body>
<header>
<h1>{{ doc.title }}</h1>
<nav>{% for s in doc.sections %}<a href="#{{ s.id }}">{{ s.title }}</a>{% endfor %}</nav>
</header>
<main>
{% for s in doc.sections %}
<section id="{{ s.id }}">
<h2>{{ s.title }}</h2>
{% for b in s.blocks %}
{% if b.kind == "table" %}
<h3>{{ b.table.title }}</h3>
<div class="scroll"><table>
<thead><tr>{% for c in b.heads %}<th{% if b.align[loop.index0] == "right" %} class="num"{% endif %}>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in b.cells %}<tr class="{{ b.flags[loop.index0] }}">{% for cell in row %}<td{% if b.align[loop.index0] == "right" %} class="num"{% endif %}>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table></div>
{% elif b.kind == "note" %}
<p class="{{ 'warning' if b.note.level == 'warning' else 'note' }}">{{ b.note.text }}</p>
{% elif b.kind == "chart" %}
{% if b.ok %}<div class="chart" id="{{ b.chart.id }}" data-chart="{{ b.chart.kind }}" role="img" aria-label="{{ b.chart.title }}"></div>
{% else %}<p class="chart-missing">{{ b.chart.title }}: {{ b.reason }}</p>{% endif %}
{% elif b.kind == "links" %}
<h3>{{ b.links.title }}</h3>
<ul>{% for link in b.links.items %}<li>{% if link.href %}<a href="{{ link.href }}">{{ link.text }}</a>{% else %}<span class="missing">{{ link.text }}{% if link.note %} ({{ link.note }}){% endif %}</span>{% endif %}</li>
{% endfor %}</ul>
{% elif b.kind == "fold" %}
<details class="fold"><summary>{{ b.summary }}</summary>
{% elif b.kind == "unfold" %}
</details>
{% endif %}
{% endfor %}
</section>
{% endfor %}
</main>
{% if figures %}
<script>{{ plotlyjs }}</script>
<script type="application/json" id="figures">{{ figures }}</script>
<script>
(function () {
  var figs = JSON.parse(document.getElementById("figures").textContent);
  function draw(id) {
    var f = figs[id];
    Plotly.newPlot(id, f.data, f.layout, {responsive: true, displaylogo: false});
  }
  Object.keys(figs).forEach(function (id) {
    // a chart in a closed <details> has no size yet: drawn the first time its <details> opens
    var fold = document.getElementById(id).closest("details");
    if (!fold || fold.open) { draw(id); return; }
    fold.addEventListener("toggle", function first() {
      if (!fold.open) { return; }
      fold.removeEventListener("toggle", first);
      draw(id);
    });
  });
})();
</script>
{% endif %}
</body>
</html>
"""


def _json_for_script(data: dict) -> str:
    text = json.dumps(data, separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _id(chart_id: str, used: set[str]) -> str:
    base = "chart-" + "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in chart_id)
    out, n = base, 1
    while out in used:
        n += 1
        out = f"{base}-{n}"
    used.add(out)
    return out


def _flat(blocks: list) -> list:
    """The blocks in order, each Folded as a start marker, its own blocks, an end marker."""
    out: list = []
    for b in blocks:
        if isinstance(b, Folded):
            out += [{"kind": "fold", "summary": b.summary}, *b.blocks, {"kind": "unfold"}]
        else:
            out.append(b)
    return out


# a number and its unit ("27.47 ms", "513 MiB"): one non-breaking space between them
_UNIT = re.compile(r"[^\s\d,|=(]{1,8}[,;:)|]?")
# characters after which Chromium may break a line inside a word ("triton-|default", "runs/|demo")
_SOFT_BREAKS = re.compile(r"[-/–—?!]")


def cell_html(text: str) -> Markup:
    """One table cell, escaped: it may wrap at spaces and after `,` and `|` (a <wbr> after each)
    and nowhere else (a word holding `-` or `/` in a nowrap span; a number and its unit joined by a
    non-breaking space); a long config shown compactly, its full text on hover."""
    text = " ".join(str(text).split())
    short = compact_config(text)
    shown = short or text
    out = []
    parts = pieces(shown)
    for i, piece in enumerate(parts):
        if piece.isspace():
            unit = (0 < i < len(parts) - 1 and parts[i - 1][-1].isdigit() and _UNIT.fullmatch(parts[i + 1]))
            out.append("\u00a0" if unit else " ")
            continue
        html = str(escape(piece))
        if piece[-1] in SEPARATORS:
            html += "<wbr>"
        if _SOFT_BREAKS.search(piece):
            html = f'<span class="w">{html}</span>'
        out.append(html)
    body = "".join(out)
    if short:
        return Markup(f'<abbr class="config" title="{escape(text)}">{body}</abbr>')
    return Markup(body)


def render(doc: Document) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    figures: dict[str, dict] = {}
    used: set[str] = set()
    sections = []
    for s in doc.sections:
        blocks = []
        for b in _flat(s.blocks):
            if isinstance(b, dict):  # a fold's start or end
                blocks.append(b)
            elif isinstance(b, Table):
                blocks.append({"kind": "table", "table": b, "flags": b.flags or [""] * len(b.rows),
                               "align": alignment(b.columns, b.rows, b.align),
                               "heads": [cell_html(c) for c in b.columns],
                               "cells": [[cell_html(c) for c in row] for row in b.rows]})
            elif isinstance(b, Note):
                blocks.append({"kind": "note", "note": b})
            elif isinstance(b, Chart):
                fig, reason = charts.build(b, doc.runs)
                chart = Chart(_id(b.id, used), b.title, b.kind, b.args)
                if fig is not None:
                    figures[chart.id] = json.loads(pio.to_json(fig, validate=False))
                blocks.append({"kind": "chart", "chart": chart, "ok": fig is not None, "reason": reason})
            elif isinstance(b, Links):
                blocks.append({"kind": "links", "links": b})
        sections.append({"id": s.id, "title": s.title, "blocks": blocks})
    view = {"title": doc.title, "sections": sections}
    return env.from_string(TEMPLATE).render(
        doc=view, css=CSS, figures=jinja2.utils.markupsafe.Markup(_json_for_script(figures)) if figures else "",
        plotlyjs=jinja2.utils.markupsafe.Markup(get_plotlyjs()) if figures else "")


def write(doc: Document, path: Path) -> Path:
    path.write_text(render(doc), encoding="utf-8")
    return path
