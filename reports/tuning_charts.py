"""The tuning section's own chart: tuned-vs-default speedup per problem, one horizontal bar each,
sorted (reports.tuning_section computes the points). Like reports.charts' builders it returns
(figure, None) or (None, why it does not fit)."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from .charts import LAYOUT

KINDS = ("tuning_speedup",)
BAR_PX = 22  # one bar's height: 34 problems (the demo) make a 900 px chart that still reads


def build(chart: Any, runs: list[Any]) -> tuple[go.Figure | None, str | None]:
    del runs  # the points travel in the chart's args
    points = chart.args.get("points") or []
    if not points:
        return None, "no problem has a speedup over its default"
    # plotly draws the first category at the bottom: reversed, so the fastest is on top
    ordered = list(reversed(points))
    colors = ["#2e8b57" if p["speedup"] > 1 else "#c0392b" if p["speedup"] < 1 else "#8a949e" for p in ordered]
    fig = go.Figure(go.Bar(x=[p["speedup"] for p in ordered], y=[p["label"] for p in ordered], orientation="h",
                           marker={"color": colors}, text=[f"{p['speedup']:.2f}x" for p in ordered],
                           textposition="outside", cliponaxis=False,
                           hovertemplate="%{y}<br>%{x:.3f}x over its default<extra></extra>"))
    fig.add_vline(x=1.0, line={"dash": "dot", "color": "#5b6570"})
    top = max(p["speedup"] for p in points)
    fig.update_xaxes(title="speedup over the default config (x, higher is better)", range=[0, max(1.2, top * 1.15)])
    fig.update_yaxes(automargin=True, tickfont={"size": 11})
    height = max(LAYOUT["height"], 120 + BAR_PX * len(points))
    fig.update_layout(**{**LAYOUT, "height": height, "showlegend": False,
                         "margin": {**LAYOUT["margin"], "l": 20}})
    fig.update_layout(title={"text": chart.title, "font": {"size": 14}})
    return fig, None
