"""The report as data: sections of tables, notes, charts and links, built once from the runs
and rendered by reports.html, reports.markdown and reports.terminal (so every format shows the
same tables). Cells are plain strings; renderers escape them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import compare
from .confirm_section import confirmation_section
from .formatting import ms, num
from .load import INSIDE, MISSING, Run, artifact
from .serving_section import serving_section
from .summary_section import summary_section
from .time_section import time_section
from .traffic_section import traffic_section
from .transfer_section import transfer_section
from .trust_section import trust_section
from .tuning_section import failure_counts, tuning_section  # noqa: F401  (charts imports failure_counts here)
from .tuning_section import interval as _interval


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    flags: list[str] | None = None  # per row: "" / "regression" / "improvement" (styling only)
    align: list[str] | None = None  # per column: "left" / "right" (numbers); None: all left


@dataclass
class Note:
    text: str
    level: str = "info"  # "info" / "warning"


@dataclass
class Chart:
    id: str
    title: str
    kind: str  # what reports.charts builds: roofline / history / importance / parallel / failures / ...
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Link:
    """One artifact in the report. `href` (a relative, percent-encoded URL) is set only for a
    file inside its run directory; anything else is shown as text with `note` saying why."""

    text: str
    target: str  # where it is on disk, or the name as the run lists it when it is not linked
    href: str | None
    note: str = ""  # "" / MISSING_NOTE / OUTSIDE_NOTE


MISSING_NOTE = "not in the run directory"
OUTSIDE_NOTE = "outside the run directory: not linked"


@dataclass
class Links:
    title: str
    items: list[Link]


@dataclass
class Folded:
    """Blocks folded under a one-line summary: closed in HTML (<details>), a <details> in
    Markdown, the summary line alone in the terminal. One level: no Folded inside a Folded."""

    summary: str
    blocks: list[Any] = field(default_factory=list)


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Any] = field(default_factory=list)


@dataclass
class Document:
    title: str
    runs: list[Run]
    sections: list[Section]


# --------------------------------------------------------------------------- formatting


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def signed_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.2f}"


def dtype_of(problem: str) -> str | None:
    parts = problem.split("|")
    return parts[1] if len(parts) > 1 else None


# --------------------------------------------------------------------------- sections


def _environment(runs: list[Run]) -> Section:
    sec = Section("environment", "Environment")
    cols = ["", *[r.label for r in runs]]

    def row(name, fn):
        return [name, *[fn(r) for r in runs]]

    def env(r, key):
        return num(r.data["environment"].get(key))

    def clocks(r: Run) -> str:
        tel = r.data.get("telemetry") or {}
        summary = tel.get("summary") or {}
        sm = (summary.get("metrics") or {}).get("sm_clock_mhz")
        if not tel.get("available") or not sm:
            return "not recorded (profile with --telemetry)"
        flags = ", ".join(summary.get("flags") or []) or "steady"
        return f"SM {sm['min']:.0f}-{sm['max']:.0f} MHz ({flags})"

    def timing(r: Run) -> str:
        rows = r.data.get("measurements") or []
        if not rows:
            return "-"
        t = rows[0]["timing"]
        return t.get("method", "-") + (", L2 flushed" if t.get("l2_flushed") else "")

    def peaks(r: Run) -> str:
        p = r.data.get("peaks")
        if not p:
            return "none (run `infertune calibrate`)"
        return f"{p.get('source', '?')}: {num(p.get('bandwidth_gbps'))} GB/s, " + ", ".join(
            f"{k} {num(v)} TFLOP/s" for k, v in (p.get("tflops") or {}).items())

    rows = [
        row("kind", lambda r: r.kind),
        row("name", lambda r: r.data["name"]),
        row("created", lambda r: r.data["created"]),
        row("device", lambda r: r.device.get("label") or r.device.get("name", "-")),
        row("driver", lambda r: env(r, "driver")),
        row("CUDA runtime", lambda r: env(r, "cuda_runtime")),
        row("torch", lambda r: env(r, "torch")),
        row("triton", lambda r: env(r, "triton")),
        row("optuna", lambda r: env(r, "optuna")),
        row("python", lambda r: env(r, "python")),
        row("clock state", clocks),
        row("timing", timing),
        row("peaks", peaks),
        row("command", lambda r: " ".join(r.data.get("command") or [])),
    ]
    # the device caveats (CPU interpreter, peaks, throttling) are stated once, in the Summary
    sec.blocks.append(Table("Runs", cols, rows))
    return sec


def _accuracy(acc: dict[str, Any] | None) -> str:
    if not acc:
        return "-"
    text = "ok" if acc.get("ok") else "WRONG"
    if acc.get("sqnr_db") is not None:
        text += f" (SQNR {acc['sqnr_db']:.1f} dB)"
    return text


def _kernels(runs: list[Run]) -> Section | None:
    with_rows = [r for r in runs if r.data.get("measurements")]
    if not with_rows:
        return None
    sec = Section("kernels", "Kernels")
    for r in with_rows:
        base = r.data.get("baseline")
        cols = ["variant", "kernel", "problem", "p50", "p10", "p90", "TFLOP/s", "GB/s", "% peak FLOP/s",
                "% peak GB/s", "bound", f"speedup vs {base}" if base else "speedup", "config", "accuracy"]
        rows = []
        for m in r.data["measurements"]:
            t = m["timing"]
            cfg = m.get("config") or "-"
            if m.get("config_source"):
                cfg = f"{cfg} ({m['config_source']})"
            speed = m.get("speedup_vs_baseline")
            rows.append([m["variant"], m["kernel"], m["problem"], ms(t["median_ms"]), ms(t["p10_ms"]),
                         ms(t["p90_ms"]), num(m.get("tflops")), num(m.get("gbps")), pct(m.get("pct_peak_flops")),
                         pct(m.get("pct_peak_bandwidth")), m.get("bound", "-"),
                         f"{speed:.2f}x" if speed else "-", cfg, _accuracy(m.get("accuracy"))])
        sec.blocks.append(Table(f"{r.label}: {r.device.get('label', '')}", cols, rows))
    sec.blocks.append(Chart("roofline", "Roofline", "roofline", {"runs": [r.label for r in with_rows]}))
    if not any(r.data.get("peaks") for r in with_rows):
        sec.blocks.append(Note("No device ceilings are known for these runs (run `infertune calibrate` to measure "
                               "them): the roofline shows the points only."))
    return sec


def _tuning(runs: list[Run]) -> Section | None:
    return tuning_section(runs, Section, Table, Note, Chart, Folded)  # reports/tuning_section.py


def _models(runs: list[Run]) -> Section | None:
    with_rows = [r for r in runs if r.data.get("models")]
    if not with_rows:
        return None
    sec = Section("models", "Models")
    for r in with_rows:
        base_variant = r.data.get("baseline")
        base = {m["batch"]: m for m in r.data["models"] if m["variant"] == base_variant}
        cols = ["variant", "model", "batch", "prompt", "gen", "prefill tok/s", "decode tok/s", "ms/token",
                f"decode vs {base_variant}", "weights MiB", "peak memory MiB", "ppl", "KL vs float"]
        rows = []
        for m in r.data["models"]:
            b = base.get(m["batch"])
            vs = m["decode_tokens_per_s"] / b["decode_tokens_per_s"] if b and b["decode_tokens_per_s"] else None
            q = m.get("quality") or {}
            rows.append([m["variant"], m["model"], str(m["batch"]), str(m["prompt_len"]), str(m["gen"]),
                         num(m["prefill_tokens_per_s"]), num(m["decode_tokens_per_s"]), num(m.get("ms_per_token")),
                         f"{vs:.2f}x" if vs else "-", mib(m.get("weight_bytes")), mib(m.get("peak_memory_bytes")),
                         num(q.get("ppl"), 5), num(q.get("kl_vs_float"), 4)])
        sec.blocks.append(Table(f"{r.label}: {r.device.get('label', '')}", cols, rows))
    return sec


def _telemetry(runs: list[Run]) -> Section:
    sec = Section("telemetry", "Telemetry")
    for r in runs:
        tel = r.data.get("telemetry") or {}
        if not tel.get("available"):
            sec.blocks.append(Note(f"{r.label}: no telemetry ({tel.get('reason') or 'unavailable'})."))
            continue
        s = tel.get("summary") or {}
        rows = [[k, num(v.get("min")), num(v.get("median")), num(v.get("max"))]
                for k, v in (s.get("metrics") or {}).items()]
        sec.blocks.append(Table(f"{r.label}: telemetry over {num(s.get('duration_s'))} s, {num(s.get('samples'))} "
                                f"samples", ["metric", "min", "median", "max"], rows))
        sec.blocks.append(Note(f"{r.label}: energy {num(s.get('energy_j'))} J ({s.get('energy_method') or '-'}); "
                               f"flags: {', '.join(s.get('flags') or []) or 'none'}; reasons seen: "
                               f"{', '.join(s.get('reasons_seen') or []) or 'none'}",
                               "warning" if s.get("flags") else "info"))
        for note in s.get("notes") or []:
            sec.blocks.append(Note(f"{r.label}: {note}"))
        if r.samples:
            sec.blocks.append(Chart(f"telemetry-{r.label}", f"{r.label}: clocks, power and temperature", "telemetry",
                                    {"run": r.label}))
    return sec


def _profilers(runs: list[Run]) -> Section:
    sec = Section("profilers", "Nsight Compute, Nsight Systems, torch.profiler")
    for r in runs:
        profs = r.data.get("profilers") or {}
        if not profs:
            sec.blocks.append(Note(f"{r.label}: no profiler ran (profile with --nsys / --ncu / --torch-trace)."))
            continue
        sec.blocks.append(Table(f"{r.label}: tools", ["tool", "status", "reason"],
                                [[k, v.get("status", "-"), v.get("reason") or "-"] for k, v in profs.items()]))
        ncu = profs.get("ncu") or {}
        if ncu.get("launches"):
            rows = [[num(x.get("id")), x.get("kernel", "-"), ms((x.get("duration_ns") or 0) / 1e6)
                     if x.get("duration_ns") is not None else "-", pct(x.get("sm_throughput_pct")),
                     pct(x.get("memory_throughput_pct")), mib(x.get("dram_bytes")),
                     pct(x.get("achieved_occupancy_pct")), num(x.get("registers_per_thread")),
                     "x".join(str(v) for v in x.get("grid") or []) or "-",
                     "x".join(str(v) for v in x.get("block") or []) or "-"] for x in ncu["launches"]]
            sec.blocks.append(Table(f"{r.label}: ncu launches", ["id", "kernel", "duration", "SM %", "memory %",
                                                                 "DRAM MiB", "occupancy", "regs", "grid", "block"],
                                    rows))
        nsys = profs.get("nsys") or {}
        if nsys.get("kernels"):
            rows = [[k["name"], num(k.get("instances")), ms(k["total_ns"] / 1e6), _ns(k.get("avg_ns")),
                     _ns(k.get("med_ns")), pct(k.get("time_pct"))] for k in nsys["kernels"]]
            sec.blocks.append(Table(f"{r.label}: nsys GPU kernels", ["kernel", "instances", "total", "avg", "median",
                                                                     "time %"], rows))
        if nsys.get("overhead"):
            rows = [[f"{o['domain']}:{o['range']}" if o.get("domain") else o["range"], num(o.get("instances")),
                     _ns(o.get("range_ns")), _ns(o.get("gpu_ns")), _ns(o.get("overhead_ns")),
                     _ns(o.get("overhead_per_instance_ns")), o.get("source") or "-"] for o in nsys["overhead"]]
            sec.blocks.append(Table(f"{r.label}: nsys NVTX ranges and launch overhead",
                                    ["range", "instances", "CPU time", "GPU time", "overhead", "overhead / instance",
                                     "source"], rows))
    return sec


def _ns(value: float | None) -> str:
    return "-" if value is None else ms(value / 1e6)


def _comparison(runs: list[Run]) -> Section | None:
    if len([r for r in runs if not r.data.get("serving")]) < 2:  # serving runs: compared in the Serving load section
        return None
    sec = Section("comparison", "Comparison")
    sec.blocks.append(Note(f"Rule: {compare.RULE} given that has such rows."))
    blocks = []
    k_runs = [r for r in runs if r.data.get("measurements")]
    kernels = compare.match_kernels([r.data for r in k_runs]) if len(k_runs) > 1 else []
    kernels = [m for m in kernels if sum(row is not None for row in m.rows) >= 2]  # shared rows only
    if kernels:
        cols = ["kind", "kernel", "problem", "variant", f"{k_runs[0].label} p50 [p10, p90] (reference)"]
        for r in k_runs[1:]:
            cols += [f"{r.label} p50 [p10, p90]", f"{r.label} change"]
        rows, flags = [], []
        for m in kernels:
            row = list(m.key) + [_interval(m.rows[0]["timing"]) if m.rows[0] else "-"]
            for other, ch in zip(m.rows[1:], m.changes):
                row += [_interval(other["timing"]) if other else "-", _change_text(ch)]
            rows.append(row)
            flags.append(_worst(m.changes))
        blocks.append(Table("Kernels side by side", cols, rows, flags))
    m_runs = [r for r in runs if r.data.get("models")]
    models = compare.match_models([r.data for r in m_runs]) if len(m_runs) > 1 else []
    models = [m for m in models if sum(row is not None for row in m.rows) >= 2]
    if models:
        cols = ["model", "variant", "batch", f"{m_runs[0].label} decode tok/s (reference)"]
        for r in m_runs[1:]:
            cols += [f"{r.label} decode tok/s", f"{r.label} change"]
        rows, flags = [], []
        for m in models:
            row = [m.key[0], m.key[1], str(m.key[2]), num(m.rows[0]["decode_tokens_per_s"]) if m.rows[0] else "-"]
            for other, ch in zip(m.rows[1:], m.changes):
                row += [num(other["decode_tokens_per_s"]) if other else "-", _change_text(ch)]
            rows.append(row)
            flags.append(_worst(m.changes))
        blocks.append(Table("Models side by side", cols, rows, flags))
    if not blocks:
        blocks.append(Note("Nothing to compare: no kernel problem and variant, nor model variant and batch, "
                           "appears in two of these runs."))
    sec.blocks += blocks
    return sec


def _worst(changes: list[compare.Change]) -> str:
    statuses = {c.status for c in changes}
    if compare.REGRESSION in statuses:
        return compare.REGRESSION
    return compare.IMPROVEMENT if compare.IMPROVEMENT in statuses else ""


def _change_text(ch: compare.Change) -> str:
    if ch.status == compare.MISSING:
        return "missing"
    mark = {"regression": "REGRESSION", "improvement": "IMPROVEMENT"}.get(ch.status, "within noise")
    return f"{signed_pct(ch.pct)} {mark}"


def _href(path: Path, base: Path) -> str:
    """A relative URL from `base` (the report's folder) to `path`, every segment
    percent-encoded, so no name can read as a scheme (`javascript:` becomes `javascript%3A`)."""
    rel = Path(os.path.relpath(path, base)).as_posix()
    return "/".join(quote(part, safe="") for part in rel.split("/"))


def _artifacts(runs: list[Run], base: Path | None) -> Section:
    sec = Section("artifacts", "Raw artifacts")
    for r in runs:
        links = []
        for a in [artifact(r.path, "run.json"), *r.artifacts()]:
            text = f"{r.label}/{a.name}"
            if a.status == INSIDE and a.path is not None:
                links.append(Link(text, str(a.path), _href(a.path, base) if base is not None else None))
            elif a.status == MISSING and a.path is not None:
                links.append(Link(text, str(a.path), None, MISSING_NOTE))
            else:
                links.append(Link(text, a.name, None, OUTSIDE_NOTE))
        sec.blocks.append(Links(r.label, links))
        for note in r.data.get("notes") or []:
            if r.interpreter and "interpreter" in note:
                continue  # the Summary states the CPU-interpreter caveat once, for every run it applies to
            sec.blocks.append(Note(f"{r.label}: {note}", "warning" if "synthetic" in note else "info"))
    return sec


def build(runs: list[Run], *, link_base: Path | None = None) -> Document:
    """The report of `runs` (the first is the comparison's reference). Links are relative to
    `link_base` (the report's folder) when given."""
    sections = [_environment(runs), _comparison(runs), _kernels(runs), _tuning(runs),
                serving_section(runs, Section, Table, Note, Chart), traffic_section(runs, Section, Table, Note),
                trust_section(runs, Section, Table, Note),
                confirmation_section(runs, Section, Table, Note), transfer_section(runs, Section, Table, Note),
                _models(runs), time_section(runs, Section, Table, Note, Chart), _telemetry(runs), _profilers(runs),
                _artifacts(runs, link_base)]
    present = [s for s in sections if s is not None]
    summary = summary_section(runs, {s.id: s.title for s in present}, Section, Note, Links, Link)
    title = "infertune report: " + ", ".join(r.label for r in runs)
    return Document(title, runs, [summary, *present])
