"""The report's first section, "Summary": the device caveats, stated once for every run (the CPU
interpreter, missing or datasheet peaks, throttling seen), then one line per finding, each a
link to the section that holds its detail:

- a tuning run: problems tuned, how many beat their default and by how much (geometric mean,
  best, worst of speedup_over_default), trials, failures by kind, tuning time when recorded;
- a model run: prefill and decode tokens/s per variant and batch, and the ratios of the tuned
  (`:triton`) variant to the heuristic (`:triton-default`) and torch (`:torch`) ones;
- an embedding run: embeddings/s per variant and batch;
- a kernel profile: per variant the % of the nearer measured ceiling and the bound;
- a serving run: the saturation throughput and the p99 TTFT (e2e for embeddings) at half of it.

Figures come straight from run.json; the block types come from reports.document (which imports
this module, so this module cannot import it)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from .formatting import ms, num
from .serving_section import at_half_saturation, is_embedding, names, saturation_index

INTERPRETER_WARNING = ("Timings came from the CPU, not a GPU (our Triton kernels, where they ran, went through "
                       "Triton's CPU interpreter): they are CPU wall clock and say nothing about GPU speed.")

# Where each finding's detail lives: the ids reports.document's sections carry.
TUNING, MODELS, KERNELS, SERVING = "tuning", "models", "kernels", "serving"

# A kernel profile's finding names at most this many (kernel, problem) pairs; a larger profile
# (an autotune run's 98 rows) would turn the one line into a table: the Kernels section has it.
MAX_PROBLEMS = 3


# --------------------------------------------------------------------------- caveats


def caveats(runs: list[Any]) -> list[tuple[str, str]]:
    """(level, text) for each device caveat, each stated once whatever the number of runs."""
    out: list[tuple[str, str]] = []
    cpu = [r.label for r in runs if r.interpreter]
    if cpu:
        out.append(("warning", f"{INTERPRETER_WARNING} {_runs_text(cpu, len(runs))}"))
    with_rows = [r for r in runs if r.data.get("measurements")]
    no_peaks = [r.label for r in with_rows if not r.data.get("peaks")]
    if no_peaks:
        out.append(("warning", ("No measured peaks: % of peak and the bound are unknown (run `infertune calibrate` "
                                f"on the device). {_runs_text(no_peaks, len(runs))}")))
    sheet = [r.label for r in with_rows if (r.data.get("peaks") or {}).get("source") == "datasheet"]
    if sheet:
        out.append(("warning", ("Peaks are the datasheet's, not measured here: % of peak is against a ceiling this "
                                f"device may not reach (run `infertune calibrate`). {_runs_text(sheet, len(runs))}")))
    for r in runs:
        summary = (r.data.get("telemetry") or {}).get("summary") or {}
        flags = summary.get("flags") or []
        if flags:
            seen = "; ".join(summary.get("notes") or []) or ", ".join(flags)
            out.append(("warning", (f"{r.label}: the device did not hold steady ({', '.join(flags)}): {seen}. "
                                    "Its timings may be slower than the device's best.")))
    return out


def _runs_text(labels: list[str], total: int) -> str:
    if len(labels) == total and total > 1:
        return f"(all {total} runs)"
    return f"(run{'s' if len(labels) > 1 else ''} {', '.join(labels)})"


# --------------------------------------------------------------------------- tuning


def tuning_figures(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures a tuning run's finding quotes, from its plain tuning entries (quantization
    searches and plans excluded): problems, speedups over default, trials, failures by kind."""
    plain = [t for t in entries if "quant_search" not in t and "quant_plan" not in t]
    speeds = [(t["speedup_over_default"], t) for t in plain
              if isinstance(t.get("speedup_over_default"), (int, float)) and t["speedup_over_default"] > 0]
    failures: Counter = Counter()
    for t in plain:
        for kind, count in (t.get("failures") or {}).items():
            failures[str(kind)] += int(count)
    seconds = [t["seconds"] for t in plain if isinstance(t.get("seconds"), (int, float))]
    values = [s for s, _t in speeds]
    return {
        "problems": len(plain),
        "measured": len(speeds),
        "beat": sum(1 for s in values if s > 1.0),
        "geomean": math.exp(sum(math.log(s) for s in values) / len(values)) if values else None,
        "best": max(speeds, key=lambda p: p[0]) if speeds else None,
        "worst": min(speeds, key=lambda p: p[0]) if speeds else None,
        "trials": sum(int(t.get("trials_run") or 0) for t in plain),
        "failures": dict(sorted(failures.items(), key=lambda kv: (-kv[1], kv[0]))),
        "seconds": sum(seconds) if seconds and len(seconds) == len(plain) else None,
        "searches": [t["quant_search"] for t in entries if "quant_search" in t],
        "plans": [t["quant_plan"] for t in entries if "quant_plan" in t],
    }


def _x(value: float) -> str:
    return f"{value:.2f}x"


def _problem(t: dict[str, Any]) -> str:
    return f"{t.get('kernel', '-')} {t.get('problem', '-')}"


def tuning_finding(label: str, entries: list[dict[str, Any]]) -> str | None:
    f = tuning_figures(entries)
    parts = []
    if f["problems"]:
        text = f"{f['problems']} problem{'s' if f['problems'] != 1 else ''} tuned, {f['beat']} beat their default"
        if f["geomean"] is not None:
            best, worst = f["best"], f["worst"]
            text += (f"; speedup over default: geometric mean {_x(f['geomean'])} over {f['measured']}, "
                     f"best {_x(best[0])} ({_problem(best[1])}), worst {_x(worst[0])}")
            if worst[0] < 1.0:
                text += f" ({_problem(worst[1])})"
        missing = f["problems"] - f["measured"]
        if missing:
            text += f"; {missing} without a speedup (no default or no tuned timing)"
        parts.append(text)
        fails = ", ".join(f"{kind} {count}" for kind, count in f["failures"].items())
        parts.append(f"{f['trials']} trials, {sum(f['failures'].values())} failed" + (f" ({fails})" if fails else ""))
        parts.append(f"tuning time {num(f['seconds'])} s" if f["seconds"] is not None
                     else "tuning time not recorded in run.json")
    for q in f["searches"]:
        parts.append(f"quantization search of {num(len(q.get('points') or []))} schemes: chosen "
                     f"{q.get('chosen') or 'none'}")
    for q in f["plans"]:
        chosen = (q.get("chosen") or {}).get("trial")
        parts.append(f"quantization plan over {num(q.get('trials'))} trials: chosen trial {num(chosen)}")
    return f"{label}: " + "; ".join(parts) if parts else None


# --------------------------------------------------------------------------- models, embeddings


def backend(variant: str) -> tuple[str, str | None]:
    """("fp32+w8", "triton") from "fp32+w8:triton"; backend None when the variant names none
    (its default depends on the device the run had, so it is no side of a ratio)."""
    spec, sep, name = variant.rpartition(":")
    return (spec, name) if sep else (variant, None)


TUNED, HEURISTIC, TORCH = "triton", "triton-default", "torch"


def model_figures(models: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """(model, batch) -> {"rows": [(variant, prefill tok/s, decode tok/s)], "ratios": {name:
    (prefill ratio, decode ratio)}} over the generating rows (those without embeddings/s)."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for m in models:
        if m.get("embeddings_per_s") is not None:
            continue
        group = out.setdefault((m["model"], m["batch"]), {"rows": [], "ratios": {}})
        group["rows"].append((m["variant"], m["prefill_tokens_per_s"], m["decode_tokens_per_s"]))
    for group in out.values():
        by = {}
        for variant, pre, dec in group["rows"]:
            spec, name = backend(variant)
            by[(spec, name)] = (pre, dec)
        for (spec, name), (pre, dec) in by.items():
            if name != TUNED:
                continue
            for other, label in ((HEURISTIC, "heuristic"), (TORCH, "torch")):
                ref = by.get((spec, other))
                if ref is None:
                    continue
                key = f"{spec}: tuned/{label}"
                group["ratios"][key] = (pre / ref[0] if ref[0] else None, dec / ref[1] if ref[1] else None)
    return out


def _ratio(value: float | None) -> str:
    return "-" if value is None else _x(value)


def model_findings(label: str, models: list[dict[str, Any]]) -> list[str]:
    lines = []
    for (model, batch), group in model_figures(models).items():
        rows = ", ".join(f"{v} {num(pre)} / {num(dec)}" for v, pre, dec in group["rows"])
        text = f"{label}: {model} at batch {batch}, prefill / decode tok/s: {rows}"
        if group["ratios"]:
            text += "; " + ", ".join(f"{k} {_ratio(p)} prefill, {_ratio(d)} decode"
                                     for k, (p, d) in group["ratios"].items())
        lines.append(text)
    return lines


def embedding_finding(label: str, models: list[dict[str, Any]]) -> str | None:
    rows: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for m in models:
        if m.get("embeddings_per_s") is not None:
            rows.setdefault((m["model"], m["variant"]), []).append((m["batch"], m["embeddings_per_s"]))
    if not rows:
        return None
    parts = [f"{model} {variant} " + ", ".join(f"{num(e)} at batch {b}" for b, e in per)
             for (model, variant), per in rows.items()]
    return f"{label}: embeddings/s: " + "; ".join(parts)


# --------------------------------------------------------------------------- kernel profile


def peak_share(m: dict[str, Any]) -> tuple[float | None, str]:
    """(% of peak, which peak) for a measurement: the ceiling its bound names (compute: FLOP/s,
    memory: bandwidth), else (latency, unknown) the nearer one of the two."""
    flops, bw = m.get("pct_peak_flops"), m.get("pct_peak_bandwidth")
    bound = m.get("bound")
    if bound == "compute" and flops is not None:
        return flops, "FLOP/s"
    if bound == "memory" and bw is not None:
        return bw, "bandwidth"
    known = [(v, name) for v, name in ((flops, "FLOP/s"), (bw, "bandwidth")) if v is not None]
    return max(known) if known else (None, "")


def _pct(value: float) -> str:
    return f"{value:.2g}%" if value < 1 else f"{value:.1f}%"


def kernel_finding(label: str, measurements: list[dict[str, Any]]) -> str:
    problems: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for m in measurements:
        problems.setdefault((m["kernel"], m["problem"]), []).append(m)
    parts = []
    for (kernel, problem), rows in list(problems.items())[:MAX_PROBLEMS]:
        cells = []
        for m in rows:
            share, which = peak_share(m)
            cell = f"{m['variant']} {ms((m.get('timing') or {}).get('median_ms'))}"
            cells.append(cell + (f" ({_pct(share)} of peak {which})" if share is not None else ""))
        bounds = sorted({str(m.get("bound") or "unknown") for m in rows})
        parts.append(f"{kernel} {problem}: p50 " + ", ".join(cells) + f"; bound {'/'.join(bounds)}")
    more = len(problems) - MAX_PROBLEMS
    return f"{label}: " + "; ".join(parts) + (f"; and {more} more problems" if more > 0 else "")


# --------------------------------------------------------------------------- serving


def serving_finding(name: str, serving: dict[str, Any]) -> str:
    sat = saturation_index(serving)
    if sat is None:
        return f"{name}: no level completed a request; no saturation throughput"
    lv = serving["levels"][sat]
    text = f"{name}: saturation {num(lv['request_throughput'])} req/s"
    metric, metric_name = ("e2e_ms", "e2e") if is_embedding(serving) else ("ttft_ms", "TTFT")
    half = at_half_saturation(serving, metric)
    if half is None:
        return text + f"; no p99 {metric_name} at half of it"
    return text + f"; p99 {metric_name} at half of it ({num(lv['request_throughput'] / 2)} req/s): {num(half[0])} ms"


# --------------------------------------------------------------------------- the section


def findings(runs: list[Any]) -> list[tuple[str, str]]:
    """(section id, one line) per finding, in the runs' order."""
    out: list[tuple[str, str]] = []
    serving_names = names(runs)
    for r in runs:
        d = r.data
        if d.get("tuning"):
            line = tuning_finding(r.label, d["tuning"])
            if line:
                out.append((TUNING, line))
        if d.get("measurements") and r.kind == "profile-kernel":
            out.append((KERNELS, kernel_finding(r.label, d["measurements"])))
        if d.get("models"):
            out += [(MODELS, line) for line in model_findings(r.label, d["models"])]
            line = embedding_finding(r.label, d["models"])
            if line:
                out.append((MODELS, line))
        if d.get("serving"):
            out.append((SERVING, serving_finding(serving_names[r.label], d["serving"])))
    return out


def summary_section(runs: list[Any], present: dict[str, str], Section: type, Note: type, Links: type,
                    Link: type) -> Any:
    """The "summary" section: the caveats as notes, then the findings as links to the sections in
    `present` (id -> title; a finding whose section is absent is shown as text)."""
    sec = Section("summary", "Summary")
    for level, text in caveats(runs):
        sec.blocks.append(Note(text, level))
    items = []
    for target, line in findings(runs):
        if target in present:
            items.append(Link(line, f"see {present[target]}", f"#{target}"))
        else:
            items.append(Link(line, "its section is not in this report", None))
    if items:
        sec.blocks.append(Links("Findings", items))
    else:
        sec.blocks.append(Note("No finding to summarise: these runs hold no tuning, model, kernel or serving "
                               "results."))
    return sec
