"""Plotly figures for the HTML report: roofline, tuning history / importances / parallel
coordinates (optuna.visualization on an in-memory study rebuilt from the run's history),
failures, quantization Pareto fronts, the telemetry timeline. Each builder returns
(figure, None) or (None, why it does not fit)."""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go

from .document import Chart, dtype_of, failure_counts
from .load import Run

THROTTLING = {"sw power cap", "hw slowdown", "sw thermal slowdown", "hw thermal slowdown", "hw power brake slowdown"}
LAYOUT = {"template": "plotly_white", "height": 380, "margin": {"l": 60, "r": 20, "t": 40, "b": 50}}


def _layout(fig: go.Figure, title: str, **extra: Any) -> go.Figure:
    fig.update_layout(**{**LAYOUT, **extra})
    fig.update_layout(title={"text": title, "font": {"size": 14}})
    return fig


def _run(runs: list[Run], label: str) -> Run:
    return next(r for r in runs if r.label == label)


def _tuning_entry(runs: list[Run], chart: Chart) -> dict[str, Any]:
    n = 0
    for r in runs:
        for entry in r.data.get("tuning") or []:
            n += 1
            if n == chart.args["index"]:
                return entry
    raise KeyError(chart.args["index"])


def build(chart: Chart, runs: list[Run]) -> tuple[go.Figure | None, str | None]:
    fn = {"tuning_speedup": tuning_speedup, "roofline": roofline, "history": history, "importance": importance, "parallel": parallel,
          "failures": failures, "quant_search": quant_search, "quant_plan": quant_plan,
          "telemetry": telemetry, "serving_latency": serving_latency,
          "serving_distribution": serving_distribution, "time_by_kernel": time_by_kernel}[chart.kind]
    try:
        return fn(chart, runs)
    except (ValueError, RuntimeError, ArithmeticError, LookupError, TypeError, AttributeError) as exc:
        return None, f"could not draw this chart: {type(exc).__name__}: {exc}"[:300]


# --------------------------------------------------------------------------- roofline


def roofline(chart: Chart, runs: list[Run]):
    fig = go.Figure()
    xs_all: list[float] = []
    ys_all: list[float] = []
    for label in chart.args["runs"]:
        r = _run(runs, label)
        rows = [m for m in r.data["measurements"] if m.get("arithmetic_intensity") and m.get("tflops")]
        for m in rows:
            x, y = m["arithmetic_intensity"], m["tflops"] * 1e12
            xs_all.append(x)
            ys_all.append(y)
            fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers", marker={"size": 11},
                                     name=f"{label}: {m['variant']} ({m['kernel']} {m['problem']})",
                                     hovertemplate="AI %{x:.3g} FLOP/B<br>%{y:.3g} FLOP/s<extra>%{fullData.name}"
                                                   "</extra>"))
    if not xs_all:
        return None, "no measurement has an arithmetic intensity and a FLOP rate"
    notes = []
    lo, hi = min(xs_all) / 10, max(xs_all) * 10
    for label in chart.args["runs"]:
        r = _run(runs, label)
        peaks = r.data.get("peaks")
        if not peaks:
            continue
        source = peaks.get("source", "?")
        bw = peaks.get("bandwidth_gbps")
        dtypes = {dtype_of(m["problem"]) for m in r.data["measurements"]}
        roofs = {d: v for d, v in (peaks.get("tflops") or {}).items() if d in dtypes} or (peaks.get("tflops") or {})
        for dtype, tf in roofs.items():
            flops = tf * 1e12
            if bw:
                knee = flops / (bw * 1e9)
                lo, hi = min(lo, knee / 10), max(hi, knee * 10)
                xs = [lo, knee, hi]
                ys = [bw * 1e9 * lo, flops, flops]
            else:
                xs, ys = [lo, hi], [flops, flops]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"dash": "dash"},
                                     name=f"{label}: {dtype} ceiling, {tf:g} TFLOP/s, {bw or '?'} GB/s ({source})"))
        notes.append(source)
    title = "Roofline" + (f" (ceilings: {', '.join(sorted(set(notes)))})" if notes
                          else " (no ceilings known: run `infertune calibrate`)")
    fig.update_xaxes(type="log", title="arithmetic intensity (FLOP/byte)")
    fig.update_yaxes(type="log", title="achieved FLOP/s")
    return _layout(fig, title, height=460, legend={"font": {"size": 10}}), None


# --------------------------------------------------------------------------- tuning


def study_from_history(history: list[dict[str, Any]]):
    """An in-memory optuna study holding the completed trials (value: median ms, minimized),
    each parameter a CategoricalDistribution of the values seen."""
    import optuna

    done = [h for h in history if h.get("state") == "complete" and h.get("median_ms") is not None]
    choices: dict[str, list[Any]] = {}
    for h in done:
        for k, v in (h.get("config") or {}).items():
            if v not in choices.setdefault(k, []):
                choices[k].append(v)
    dists = {k: optuna.distributions.CategoricalDistribution(sorted(v, key=str)) for k, v in choices.items()}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize")
    for h in done:
        params = dict(h.get("config") or {})
        study.add_trial(optuna.trial.create_trial(params=params, distributions={k: dists[k] for k in params},
                                                  value=float(h["median_ms"])))
    return study, dists, done


def history(chart: Chart, runs: list[Run]):
    import optuna.visualization as vis

    study, _dists, done = study_from_history(_tuning_entry(runs, chart).get("history") or [])
    if not done:
        return None, "no trial completed: nothing to plot"
    fig = vis.plot_optimization_history(study, target_name="median ms")
    return _layout(fig, chart.title), None


def importance(chart: Chart, runs: list[Run]):
    import optuna.visualization as vis

    study, dists, done = study_from_history(_tuning_entry(runs, chart).get("history") or [])
    varied = [k for k, d in dists.items() if len(d.choices) > 1]
    if len(done) < 2:
        return None, f"parameter importances need at least 2 completed trials ({len(done)} here)"
    if not varied:
        return None, "parameter importances need a parameter that took more than one value in the completed trials"
    fig = vis.plot_param_importances(study, params=varied, target_name="median ms")
    return _layout(fig, chart.title), None


def parallel(chart: Chart, runs: list[Run]):
    import optuna.visualization as vis

    study, dists, done = study_from_history(_tuning_entry(runs, chart).get("history") or [])
    varied = [k for k, d in dists.items() if len(d.choices) > 1]
    if len(done) < 2 or not varied:
        return None, "a parallel-coordinate view needs 2 completed trials and a parameter that varied"
    fig = vis.plot_parallel_coordinate(study, params=varied, target_name="median ms")
    return _layout(fig, chart.title), None


def failures(chart: Chart, runs: list[Run]):
    counts = failure_counts(_tuning_entry(runs, chart))
    if not counts:
        return None, "no failures"
    labels = [f"{s} / {k}" for s, k in counts]
    fig = go.Figure(go.Bar(x=labels, y=[c for c, _ in counts.values()],
                           hovertext=[ex for _, ex in counts.values()]))
    fig.update_yaxes(title="trials")
    return _layout(fig, chart.title), None


# --------------------------------------------------------------------------- quantization


def quant_search(chart: Chart, runs: list[Run]):
    q = _tuning_entry(runs, chart)["quant_search"]
    points = [p for p in q.get("points") or [] if p.get("latency") and p.get("sqnr_db") is not None]
    if not points:
        return None, "no scheme has both a latency and an SQNR"
    fig = go.Figure()
    for on in (True, False):
        pts = [p for p in points if bool(p.get("on_front")) == on]
        if pts:
            fig.add_trace(go.Scatter(x=[p["latency"]["median_ms"] for p in pts], y=[p["sqnr_db"] for p in pts],
                                     text=[p["scheme"] for p in pts], mode="markers+text", textposition="top center",
                                     marker={"size": 12, "symbol": "circle" if on else "x"},
                                     name="on the Pareto front" if on else "dominated"))
    front = sorted((p for p in points if p.get("on_front")), key=lambda p: p["latency"]["median_ms"])
    if len(front) > 1:
        fig.add_trace(go.Scatter(x=[p["latency"]["median_ms"] for p in front], y=[p["sqnr_db"] for p in front],
                                 mode="lines", line={"dash": "dot"}, name="front", showlegend=False))
    fig.update_xaxes(title="latency p50 (ms)")
    fig.update_yaxes(title="SQNR (dB)")
    return _layout(fig, chart.title), None


def quant_plan(chart: Chart, runs: list[Run]):
    q = _tuning_entry(runs, chart)["quant_plan"]
    front = [p for p in q.get("front") or [] if p.get("kl") is not None and p.get("bytes") is not None]
    if not front:
        return None, "the plan search left no front"
    chosen = (q.get("chosen") or {}).get("trial")
    front.sort(key=lambda p: p["bytes"])
    fig = go.Figure(go.Scatter(x=[p["bytes"] / 2**20 for p in front], y=[p["kl"] for p in front],
                               mode="lines+markers", text=[f"trial {p.get('trial')}" for p in front],
                               marker={"size": [14 if p.get("trial") == chosen else 8 for p in front]},
                               name="Pareto front"))
    fig.update_xaxes(title="linear weights (MiB)")
    fig.update_yaxes(title="KL vs float", type="log" if all(p["kl"] > 0 for p in front) else "linear")
    return _layout(fig, chart.title), None


# --------------------------------------------------------------------------- telemetry


def telemetry(chart: Chart, runs: list[Run]):
    from plotly.subplots import make_subplots

    r = _run(runs, chart.args["run"])
    rows = [s for s in r.samples if isinstance(s.get("t_s"), float)]
    if not rows:
        return None, "no telemetry samples"
    panels = [("clocks (MHz)", ["sm_clock_mhz", "mem_clock_mhz"]), ("power (W)", ["power_w"]),
              ("temperature (°C)", ["temperature_c"])]
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[p[0] for p in panels])
    t = [s["t_s"] for s in rows]
    for i, (_title, metrics) in enumerate(panels, start=1):
        for metric in metrics:
            ys = [s.get(metric) if isinstance(s.get(metric), float) and not math.isnan(s[metric]) else None
                  for s in rows]
            if any(y is not None for y in ys):
                fig.add_trace(go.Scatter(x=t, y=ys, mode="lines", name=metric), row=i, col=1)
    throttled = [s for s in rows if THROTTLING.intersection(s.get("reasons") or [])]
    if throttled:
        fig.add_trace(go.Scatter(x=[s["t_s"] for s in throttled],
                                 y=[s.get("sm_clock_mhz") if isinstance(s.get("sm_clock_mhz"), float) else 0
                                    for s in throttled],
                                 mode="markers", marker={"symbol": "x", "size": 9, "color": "#c0392b"},
                                 name="throttled", text=[", ".join(s["reasons"]) for s in throttled]), row=1, col=1)
    fig.update_xaxes(title="seconds", row=3, col=1)
    return _layout(fig, chart.title, height=560), None


# --------------------------------------------------------------------------- serving load

DASHES = ("solid", "dash", "dot", "dashdot", "longdash")


def _latency_axis(values: list[float], ratio: float = 20.0) -> dict[str, Any]:
    """A log axis where the positive values span more than `ratio` (queueing stretches TTFT from
    tens of ms to seconds past saturation), labelled at powers of ten (at 1-2-5 within two
    decades) rather than at every digit; linear otherwise."""
    pos = [v for v in values if v > 0]
    if not pos or len(pos) != len(values) or max(pos) / min(pos) <= ratio:
        return {"type": "linear"}
    return {"type": "log", "dtick": 1 if max(pos) / min(pos) >= 100 else "D2"}


def serving_latency(chart: Chart, runs: list[Run]):
    """p50 (solid) and p99 (dashed) TTFT and e2e latency against achieved request throughput,
    one panel per metric, a color per run (so two runs overlay), points joined in sweep order;
    embedding runs appear in the e2e panel only. Levels that completed nothing have no point."""
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    from .serving_section import METRIC_NAMES, level_text, names, stat

    chosen = [_run(runs, label) for label in chart.args["runs"]]
    name_of = names(runs)

    def points(r: Run, metric: str, key: str):
        s = r.data["serving"]
        # in sweep order, not sorted by x: past saturation throughput dips while latency climbs,
        # and the curve bending back is the finding (sorting would zigzag it)
        return [(lv["request_throughput"], stat(lv, metric, key), level_text(s, lv)) for lv in s.get("levels") or []
                if (lv.get("completed") or 0) > 0 and lv.get("request_throughput") is not None
                and stat(lv, metric, key) is not None]

    metrics = [m for m in ("ttft_ms", "e2e_ms") if any(points(r, m, "p50") for r in chosen)]
    if not metrics:
        return None, "no level completed a request: no latency to plot"
    titles = {"ttft_ms": "time to first token (ms)", "e2e_ms": "end-to-end latency (ms)"}
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[titles[m] for m in metrics],
                        horizontal_spacing=0.1)
    for i, r in enumerate(chosen):
        color = qualitative.Plotly[i % len(qualitative.Plotly)]
        for col, metric in enumerate(metrics, start=1):
            for key, dash in (("p50", "solid"), ("p99", "dash")):
                pts = points(r, metric, key)
                if not pts:
                    continue
                fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], text=[p[2] for p in pts],
                                         mode="lines+markers", line={"color": color, "dash": dash},
                                         name=f"{name_of[r.label]} {METRIC_NAMES[metric]} {key}",
                                         legendgroup=name_of[r.label],
                                         hovertemplate="%{text}<br>%{x:.3g} req/s<br>%{y:.3g} ms"
                                                       "<extra>%{fullData.name}</extra>"), row=1, col=col)
    for col, metric in enumerate(metrics, start=1):
        ys = [y for t in fig.data if t.xaxis == ("x" if col == 1 else f"x{col}") for y in t.y]
        fig.update_xaxes(title="achieved requests/s", row=1, col=col)
        fig.update_yaxes(title="ms", **_latency_axis(ys), row=1, col=col)
    return _layout(fig, chart.title, height=420, legend={"font": {"size": 10}}), None


def serving_distribution(chart: Chart, runs: list[Run]):
    """The empirical CDF of one latency (chart.args["metric"]: ttft_ms / itl_ms / e2e_ms) per
    level from the level's samples: a trace per level, a dash per run when several are drawn."""
    from .serving_section import METRIC_NAMES, level_text, names

    metric = chart.args["metric"]
    chosen = [_run(runs, label) for label in chart.args["runs"]]
    name_of = names(runs)
    fig = go.Figure()
    xs_all: list[float] = []
    for i, r in enumerate(chosen):
        s = r.data["serving"]
        for lv in s.get("levels") or []:
            xs = sorted(float(x) for x in ((lv.get("samples") or {}).get(metric) or []))
            if not xs:
                continue
            n = len(xs)
            xs_all += xs
            name = level_text(s, lv) if len(chosen) == 1 else f"{name_of[r.label]}: {level_text(s, lv)}"
            fig.add_trace(go.Scatter(x=xs, y=[(k + 1) / n for k in range(n)], mode="lines",
                                     line={"shape": "hv", "dash": DASHES[i % len(DASHES)]}, name=name,
                                     hovertemplate="%{x:.3g} ms<br>%{y:.1%} of samples<extra>%{fullData.name}"
                                                   "</extra>"))
    if not xs_all:
        return None, f"no level has {METRIC_NAMES.get(metric, metric)} samples"
    fig.update_xaxes(title=f"{METRIC_NAMES.get(metric, metric)} (ms)", **_latency_axis(xs_all))
    fig.update_yaxes(title="fraction of requests at or below", range=[0, 1.02])
    return _layout(fig, chart.title, height=400, legend={"font": {"size": 10}}), None


# --------------------------------------------------------------------------- time per kernel


def time_by_kernel(chart: Chart, runs: list[Run]):
    """One horizontal stacked bar per variant (and batch), prefill above decode: a segment per
    kernel, the same color in both panels, largest first; the time outside our kernels last, grey."""
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    from .time_section import OUTSIDE, PHASES, bar_label, phase_parts

    rows = [m for m in _run(runs, chart.args["run"]).data["models"] if m.get("time_by_kernel")]
    phases = [p for p in PHASES if any(phase_parts(m, p) for m in rows)]
    if not phases:
        return None, "no phase was timed"
    totals: dict[str, float] = {}
    for m in rows:
        for p in phases:
            for name, value in (phase_parts(m, p) or ({}, 0, 0))[0].items():
                totals[name] = totals.get(name, 0.0) + value
    order = sorted(totals, key=lambda k: -totals[k])
    colors = {k: qualitative.Plotly[i % len(qualitative.Plotly)] for i, k in enumerate(order)}
    colors[OUTSIDE] = "#bbbbbb"
    labels = [bar_label(m, rows) for m in rows]
    fig = make_subplots(rows=len(phases), cols=1, subplot_titles=[f"{p} (ms)" for p in phases],
                        vertical_spacing=0.18)
    for i, p in enumerate(phases, start=1):
        for name in [*order, OUTSIDE]:
            values = []
            for m in rows:
                parts = phase_parts(m, p)
                values.append(None if parts is None else (parts[1] if name == OUTSIDE else parts[0].get(name)))
            if not any(values):
                continue
            fig.add_trace(go.Bar(y=labels, x=values, orientation="h", name=name, legendgroup=name,
                                 showlegend=not any(t.name == name for t in fig.data), marker={"color": colors[name]},
                                 legendrank=1000 if name == OUTSIDE else 1 + order.index(name),
                                 hovertemplate="%{y}<br>" + name + ": %{x:.3g} ms<extra></extra>"), row=i, col=1)
        fig.update_yaxes(autorange="reversed", row=i, col=1)
    height = 120 + len(phases) * (60 + 28 * len(rows))
    return _layout(fig, chart.title, barmode="stack", height=height, legend={"font": {"size": 10}},
                   margin={**LAYOUT["margin"], "t": 70}), None


# -- the tuning section's chart: tuned-vs-default speedup per problem, sorted (reports.tuning_section
# computes the points; they travel in the chart's args) ------------------------------------------
BAR_PX = 22  # one bar's height: 34 problems (the demo) make a 900 px chart that still reads


def tuning_speedup(chart: Chart, runs: list[Run]) -> tuple[go.Figure | None, str | None]:
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
