"""The report's "Where the time goes" section: for each model run (`infertune profile model`,
run.json models[].time_by_kernel), the time inside each of our kernels in prefill and in
decode, per variant and batch, as one stacked bar per variant (chart kind "time_by_kernel",
reports/charts.py) and the same ranking as a table, with a one-line "tune next" finding: the
kernel with the largest share of a phase in a variant that runs our kernels.

What the figures are (kernels/kernel_timer.py): ms summed over the measured run (prefill: one
forward of batch x prompt tokens; decode: every step); "outside our kernels" is the phase's
time minus its kernels' (torch ops, the sampler, Python). On a CPU they are the Triton
interpreter's wall clock, which ranks kernels by interpreter cost, not GPU cost: said once per
run. Runs made before time_by_kernel existed have none: the section is left out for them.
Reads run.json only; cells are plain strings (the renderers escape them)."""

from __future__ import annotations

from typing import Any

from .formatting import num

PHASES = ("prefill", "decode")
OUTSIDE = "outside our kernels"
CPU_CLOCK_NOTE = ("times are CPU wall clock of the Triton interpreter (no GPU): they rank the kernels by what they "
                  "cost the interpreter, which says little about their cost on a GPU")


def bar_label(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The variant, with its batch where the run measured more than one."""
    batches = {r["batch"] for r in rows}
    return row["variant"] if len(batches) == 1 else f"{row['variant']} b={row['batch']}"


def phase_parts(row: dict[str, Any], phase: str) -> tuple[dict[str, float], float | None, float] | None:
    """(ms per kernel largest first, ms outside our kernels or None, phase ms) of one model row
    in `phase`, or None when the phase was not timed (an encoder's decode, a CUDA graph's replay)."""
    timed = row.get("time_by_kernel") or {}
    total = (timed.get("phase_ms") or {}).get(phase)
    if total is None:
        return None
    kernels = dict(sorted((timed.get(phase) or {}).items(), key=lambda kv: -kv[1]))
    # the kernels' spans lie inside the phase's span: a negative rest is clock noise, shown as 0
    outside = max(total - sum(kernels.values()), 0.0)
    return kernels, outside, total


def timed_runs(runs: list[Any]) -> list[Any]:
    return [r for r in runs if any(m.get("time_by_kernel") for m in r.data.get("models") or [])]


def ranking(rows: list[dict[str, Any]]) -> list[tuple[str, str, str, float, float]]:
    """(bar label, phase, kernel, ms, % of phase): per variant and phase, kernels largest
    first, then the time outside our kernels."""
    out = []
    for row in rows:
        for phase in PHASES:
            parts = phase_parts(row, phase)
            if parts is None:
                continue
            kernels, outside, total = parts
            for name, value in [*kernels.items(), (OUTSIDE, outside)]:
                out.append((bar_label(row, rows), phase, name, value, 100 * value / total if total > 0 else 0.0))
    return out


def tune_next(rows: list[dict[str, Any]]) -> tuple[str, str, str, float] | None:
    """(kernel, phase, bar label, % of phase) of the kernel with the largest share of a phase."""
    best = None
    for label, phase, name, _ms, share in ranking(rows):
        if name != OUTSIDE and (best is None or share > best[3]):
            best = (name, phase, label, share)
    return best


def time_section(runs: list[Any], Section, Table, Note, Chart) -> Any | None:
    chosen = timed_runs(runs)
    if not chosen:
        return None
    sec = Section("time", "Where the time goes")
    for r in chosen:
        rows = [m for m in r.data["models"] if m.get("time_by_kernel")]
        clocks = {m["time_by_kernel"].get("clock") for m in rows}
        if "cpu-wall" in clocks:
            sec.blocks.append(Note(f"{r.label}: {CPU_CLOCK_NOTE}.", "warning"))
        best = tune_next(rows)
        if best is not None:
            kernel, phase, label, share = best
            sec.blocks.append(Note(f"{r.label}: tune next: {kernel}, {share:.0f}% of {phase} in {label}."))
        else:
            sec.blocks.append(Note(f"{r.label}: no variant ran our kernels (torch backends only): nothing to tune."))
        untimed = sorted({bar_label(m, rows) for m in rows if m.get("gen") and phase_parts(m, "decode") is None})
        if untimed:
            sec.blocks.append(Note(f"{r.label}: decode not timed for {', '.join(untimed)}: a CUDA graph replays "
                                   "without the Python ranges the timer reads."))
        missing = len(r.data["models"]) - len(rows)
        if missing:
            sec.blocks.append(Note(f"{r.label}: {missing} model row(s) have no kernel times (recorded before "
                                   "infertune timed kernels)."))
        sec.blocks.append(Chart(f"time-{r.label}", f"{r.label}: time per kernel, prefill and decode (ms over the run)",
                                "time_by_kernel", {"run": r.label}))
        # the unit in the header, not the cells: a cell "340.7 ms" may fold between number and unit at 80 columns
        table_rows = [[label, phase, name, num(value), f"{share:.1f}%"]
                      for label, phase, name, value, share in ranking(rows)]
        sec.blocks.append(Table(f"{r.label}: time per kernel, largest first per variant and phase",
                                ["variant", "phase", "kernel", "ms", "% of phase"], table_rows,
                                align=["left", "left", "left", "right", "right"]))
    return sec
