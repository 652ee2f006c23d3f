"""The report's "Tuning" section: one question per view. ONE table of every tuned problem
(default, tuned, baseline, speedups, trials, failures) and ONE chart of the tuned-vs-default
speedup per problem, sorted; the per-problem detail (its table, best so far, importances,
parallel coordinates, failures) folded under a one-line summary per problem. A chart that needs
more data than the entry has is replaced by one line saying why (the thresholds below).
Quantization searches and plans keep their own table and Pareto chart.

Reads run.json's "tuning" only; cells are plain strings (the renderers escape them). The
document's dataclasses come in as arguments (reports.document imports this module)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .formatting import config_text, ms, num

# How much data each per-problem chart needs before it says anything (below: one line instead).
# A best-so-far curve of one point is a dot, not a curve.
MIN_HISTORY_TRIALS = 2
# optuna's fANOVA importances fit a random forest to the completed trials: from fewer than about
# 10 the split is noise (2 trials over 3 parameters gave 0.33 / 0.33 / 0.33 in the demo).
MIN_IMPORTANCE_TRIALS = 10
# parallel coordinates show which values go with fast trials: 2 lines show no pattern.
MIN_PARALLEL_TRIALS = 3
# one failure is one bar: the failures table beside it already says all of it.
MIN_FAILURES_CHART = 2
# the speedup chart ranks problems: one bar ranks nothing the table row does not say.
MIN_SPEEDUP_PROBLEMS = 2

TABLE_TITLE = "Every tuned problem"
CHART_TITLE = "Tuned vs default: speedup per problem"
SPEEDUP_KIND = "tuning_speedup"  # the chart kind reports.charts.tuning_speedup draws


def tuning_section(runs: list[Any], Section, Table, Note, Chart, Folded) -> Any:
    """The "tuning" section of `runs`, or None when no run tuned anything."""
    with_tuning = [r for r in runs if r.data.get("tuning")]
    if not with_tuning:
        return None
    sec = Section("tuning", "Tuning")
    several = len(with_tuning) > 1
    problems: list[tuple[Any, dict[str, Any], int]] = []
    quant: list[Any] = []
    n = 0  # the entry's index over all runs, as reports.charts finds it again
    for r in with_tuning:
        for entry in r.data["tuning"]:
            n += 1
            if "quant_search" in entry:
                quant += _quant_search(r, entry["quant_search"], n, Table, Note, Chart)
            elif "quant_plan" in entry:
                quant += _quant_plan(r, entry["quant_plan"], n, Table, Note, Chart)
            else:
                problems.append((r, entry, n))
    if problems:
        sec.blocks.append(Table(TABLE_TITLE, _columns(several), [_row(r, t, several) for r, t, _ in problems],
                                align=_align(several)))
        points = speedup_points(problems, several)
        if len(points) >= MIN_SPEEDUP_PROBLEMS:
            sec.blocks.append(Chart("tuning-speedup", CHART_TITLE, SPEEDUP_KIND, {"points": points}))
        else:
            sec.blocks.append(Note(f"{CHART_TITLE}: not drawn, {len(points)} problem(s) with a speedup; a ranking "
                                   f"needs {MIN_SPEEDUP_PROBLEMS}."))
        missing = len(problems) - len(points)
        if missing:
            sec.blocks.append(Note(f"{missing} of {len(problems)} problems have no speedup over their default "
                                   "(the default or every trial failed): not in the chart."))
        for r, t, i in problems:
            sec.blocks.append(Folded(_summary(r, t, several), _tune_result(r, t, i, Table, Note, Chart)))
    sec.blocks += quant
    return sec


# --------------------------------------------------------------------------- the table of every problem


def _columns(several: bool) -> list[str]:
    return (["run"] if several else []) + ["kernel", "problem", "default p50", "tuned p50", "baseline p50",
                                           "speedup over default", "speedup over baseline", "trials",
                                           "trials to best", "failures"]


def _align(several: bool) -> list[str]:
    return (["left"] if several else []) + ["left", "left"] + ["right"] * 7 + ["left"]


def _row(r: Any, t: dict[str, Any], several: bool) -> list[str]:
    def median(key: str) -> str:
        return ms((t.get(key) or {}).get("median_ms"))

    trials = f"{num(t.get('trials_run'))} / {num(t.get('trials_total'))}"
    return (([r.label] if several else []) + [str(t.get("kernel") or "-"), str(t.get("problem") or "-"),
            median("default"), median("best"), median("baseline"), speedup(t.get("speedup_over_default")),
            speedup(t.get("speedup_over_baseline")), trials, num(t.get("trials_to_best")), failures_text(t)])


def speedup(value: float | None) -> str:
    """"1.42x"; two significant digits below 0.1x ("0.0039x": the interpreter against torch)."""
    if not value:
        return "-"
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def failures_text(t: dict[str, Any]) -> str:
    """"timeout 2, compile 1" (failed trials by kind, most first); "-" for none."""
    counts: Counter = Counter()
    for (state, kind), (count, _example) in failure_counts(t).items():
        counts[kind if kind != "-" else state] += count
    return ", ".join(f"{k} {c}" for k, c in counts.most_common()) or "-"


def speedup_points(problems: list[tuple[Any, dict[str, Any], int]], several: bool) -> list[dict[str, Any]]:
    """The speedup chart's bars: one per problem with a speedup over its default, fastest first."""
    points = []
    for r, t, _ in problems:
        value = t.get("speedup_over_default")
        if not value:
            continue
        label = f"{t.get('kernel')} {t.get('problem')}"
        points.append({"label": f"{r.label}: {label}" if several else label, "speedup": float(value),
                       "trials": t.get("trials_run")})
    return sorted(points, key=lambda p: -p["speedup"])


def _summary(r: Any, t: dict[str, Any], several: bool) -> str:
    head = f"{r.label}: " if several else ""
    done = completed(t)
    fails = failures_text(t)
    return (f"{head}{t.get('kernel')} {t.get('problem')}: {speedup(t.get('speedup_over_default'))} over default, "
            f"{num(t.get('trials_run'))} trials ({done} completed)" + ("" if fails == "-" else f", not completed: {fails}"))


# --------------------------------------------------------------------------- one problem, folded


def completed(t: dict[str, Any]) -> int:
    """Completed trials with a time: what the optuna charts are drawn from."""
    return sum(1 for h in t.get("history") or [] if h.get("state") == "complete" and h.get("median_ms") is not None)


def varied_params(t: dict[str, Any]) -> list[str]:
    """The parameters that took more than one value over the completed trials."""
    seen: dict[str, set[str]] = {}
    for h in t.get("history") or []:
        if h.get("state") == "complete" and h.get("median_ms") is not None:
            for k, v in (h.get("config") or {}).items():
                seen.setdefault(k, set()).add(repr(v))
    return sorted(k for k, values in seen.items() if len(values) > 1)


def _tune_result(r: Any, t: dict[str, Any], n: int, Table, Note, Chart) -> list[Any]:
    best, default, baseline = t.get("best") or {}, t.get("default") or {}, t.get("baseline") or {}
    title = f"{r.label}: {t.get('kernel')} {t.get('problem')}"
    rows = [
        ["study", num(t.get("study"))], ["sampler", num(t.get("sampler"))],
        ["trials run / total", f"{num(t.get('trials_run'))} / {num(t.get('trials_total'))}"],
        ["trials to best", num(t.get("trials_to_best"))],
        ["valid configs / space", f"{num(t.get('valid_configs'))} / {num(t.get('space_size'))}"],
        ["best config", config_text(t.get("best_config"))],
        ["best p50 [p10, p90]", interval(best)], ["default p50 [p10, p90]", interval(default)],
        [f"baseline ({t.get('baseline_name') or '-'}) p50", interval(baseline)],
        ["speedup over default", speedup(t.get("speedup_over_default"))],
        ["speedup over baseline", speedup(t.get("speedup_over_baseline"))],
        ["rejected before compiling", num(t.get("rejected_invalid"))],
        ["interrupted", num(t.get("interrupted"))],
    ]
    blocks: list[Any] = [Table(title, ["", "value"], rows)]
    history = t.get("history") or []
    if not history and not t.get("trials_run"):
        blocks.append(Note(f"{title}: no trial history in this entry (the scheme's summary of a joint search)."))
        return blocks
    blocks += _charts(r, t, n, title, Note, Chart)
    failures = failure_counts(t)
    if failures:
        blocks.append(Table(f"{title}: failures by reason", ["state", "kind", "count", "example"],
                            [[s, k, str(c), ex] for (s, k), (c, ex) in failures.items()],
                            align=["left", "left", "right", "left"]))
        total = sum(c for c, _ in failures.values())
        if total >= MIN_FAILURES_CHART:
            blocks.append(Chart(f"failures-{n}", f"{title}: failures by reason", "failures",
                                {"run": r.label, "index": n}))
    else:
        blocks.append(Note(f"{title}: no failed or stopped trials."))
    return blocks


def _charts(r: Any, t: dict[str, Any], n: int, title: str, Note, Chart) -> list[Any]:
    """Best so far, importances, parallel coordinates: each drawn only from enough trials."""
    done, varied = completed(t), varied_params(t)
    args = {"run": r.label, "index": n}
    out: list[Any] = []
    if done >= MIN_HISTORY_TRIALS:
        out.append(Chart(f"history-{n}", f"{title}: best so far against trial", "history", args))
    else:
        out.append(Note(f"Best so far: not drawn, {done} completed trial(s); a curve needs {MIN_HISTORY_TRIALS}."))
    # (label, kind, title, minimum, why that minimum): both need trials that varied a parameter
    for label, kind, what, minimum, why in (
            ("Parameter importances", "importance", "parameter importances", MIN_IMPORTANCE_TRIALS,
             f"they are noise from fewer than {MIN_IMPORTANCE_TRIALS}"),
            ("Parallel coordinates", "parallel", "parallel coordinates", MIN_PARALLEL_TRIALS,
             f"a pattern needs {MIN_PARALLEL_TRIALS}")):
        if done < minimum:
            out.append(Note(f"{label}: not drawn, {done} completed trial(s); {why}."))
        elif not varied:
            out.append(Note(f"{label}: not drawn, no parameter took two values in the completed trials."))
        else:
            out.append(Chart(f"{kind}-{n}", f"{title}: {what}", kind, dict(args)))
    return out


def failure_counts(t: dict[str, Any]) -> dict[tuple[str, str], tuple[int, str]]:
    """(state, kind) -> (count, an example reason) over the trials that did not complete."""
    counts: Counter = Counter()
    examples: dict[tuple[str, str], str] = {}
    for h in t.get("history") or []:
        if h.get("state") == "complete":
            continue
        key = (str(h.get("state") or "-"), str(h.get("kind") or "-"))
        counts[key] += 1
        examples.setdefault(key, str(h.get("reason") or "-"))
    if not counts:
        for kind, count in (t.get("failures") or {}).items():
            counts[("failed", str(kind))] += int(count)
            examples.setdefault(("failed", str(kind)), "-")
    return {k: (counts[k], examples[k]) for k in sorted(counts)}


def interval(t: dict[str, Any]) -> str:
    """"12.3 ms [12.1 ms, 12.9 ms]" (p50 [p10, p90]); "-" without a median."""
    if not t or t.get("median_ms") is None:
        return "-"
    return f"{ms(t['median_ms'])} [{ms(t.get('p10_ms'))}, {ms(t.get('p90_ms'))}]"


# --------------------------------------------------------------------------- quantization


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.2f}"


def _quant_search(r: Any, q: dict[str, Any], n: int, Table, Note, Chart) -> list[Any]:
    title = f"{r.label}: quantization search {config_text(q.get('shape'))} {q.get('dtype', '')}"
    cols = ["scheme", "kernel", "config", "p50 [p10, p90]", "SQNR dB", "speedup vs baseline", "trials", "on front",
            "chosen"]
    rows = []
    for p in q.get("points") or []:
        rows.append([p["scheme"], p.get("kernel", "-"), config_text(p.get("config")), interval(p.get("latency")),
                     num(p.get("sqnr_db")), speedup(p.get("speedup_over_baseline")), num(p.get("trials")),
                     "yes" if p.get("on_front") else "", "yes" if q.get("chosen") == p["scheme"] else ""])
    blocks: list[Any] = [Table(title, cols, rows)]
    blocks.append(Note(f"Pareto front (latency, SQNR): {', '.join(q.get('front') or []) or '-'}; "
                       f"min SQNR {num(q.get('min_sqnr_db'))} dB; chosen: {q.get('chosen') or '-'}"))
    blocks.append(Chart(f"pareto-{n}", f"{title}: latency against SQNR", "quant_search",
                        {"run": r.label, "index": n}))
    return blocks


def _quant_plan(r: Any, q: dict[str, Any], n: int, Table, Note, Chart) -> list[Any]:
    title = f"{r.label}: quantization plans for {q.get('model')}"
    chosen = (q.get("chosen") or {}).get("trial")
    cols = ["trial", "KL", "ppl", "ppl +%", "MiB", "decode ms", "chosen"]
    rows = [[num(p.get("trial")), num(p.get("kl"), 4), num(p.get("ppl"), 5),
             f"{100 * p['ppl_increase']:+.1f}%" if p.get("ppl_increase") is not None else "-", _mib(p.get("bytes")),
             num(p.get("decode_ms")), "yes" if chosen is not None and p.get("trial") == chosen else ""]
            for p in q.get("front") or []]
    blocks: list[Any] = [Table(title + " (Pareto front)", cols, rows)]
    blocks.append(Note(f"{q.get('trials')} trials; float perplexity {num(q.get('float_ppl'), 5)}, linear weights "
                       f"{_mib(q.get('float_bytes'))} MiB; limit +{100 * (q.get('max_ppl_increase') or 0):g}% "
                       f"perplexity; objectives: {', '.join(q.get('objectives') or []) or '-'}"))
    blocks.append(Chart(f"plan-{n}", f"{title}: KL against MiB", "quant_plan", {"run": r.label, "index": n}))
    return blocks
