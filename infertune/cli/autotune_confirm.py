"""`autotune --model NAME --confirm`: the end-to-end confirmation's table (infertune/confirm.py).
With --json the caller embeds `report.to_dict()` in its own document, so nothing is printed."""

from __future__ import annotations

from rich import box
from rich.table import Table

from ..confirm import CONFIRMED, NOT_EXERCISED, ConfirmReport
from .common import console

_STYLE = {CONFIRMED: "green", NOT_EXERCISED: "dim"}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _short_reason(row: dict) -> str:
    reason = row["reason"]
    if row["verdict"] != "unconfirmed":
        return ""
    for word, short in (("slower", "slower"), ("noise", "noise"), ("same config", "same config"),
                        ("rejected", "rejected")):
        if word in reason:
            return f" ({short})"
    return ""


def confirmation_table(report: ConfirmReport) -> Table:
    """One row per record: kernel, problem, step ms old -> new, ratio [CI], verdict (fits 80 columns)."""
    counts = report.counts
    table = Table(title=f"end-to-end confirmation on {report.device}: {counts['confirmed']} confirmed, "
                        f"{counts['unconfirmed']} unconfirmed, {counts['not exercised']} not exercised "
                        f"({report.rounds} rounds)", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    table.add_column("kernel", overflow="fold")
    table.add_column("problem", overflow="fold", ratio=1)
    table.add_column("step ms", no_wrap=True)
    table.add_column("ratio [95% CI]", no_wrap=True)
    table.add_column("verdict", overflow="fold")
    for row in report.rows:
        moved = f"{_ms(row['old_ms'])} -> {_ms(row['new_ms'])}" if row["old_ms"] is not None else "-"
        ratio = f"{row['ratio']:.3f} [{row['ci'][0]:.3f},{row['ci'][1]:.3f}]" if row["ci"] else "-"
        style = _STYLE.get(row["verdict"], "yellow")
        table.add_row(row["kernel"], row["problem"], moved, ratio,
                      f"[{style}]{row['verdict']}{_short_reason(row)}[/]")
    return table


def print_confirmation(report: ConfirmReport, json_output: bool) -> None:
    """Print the confirmation table, the steps' headline and the notes; nothing with --json
    (the caller puts `report.to_dict()` under "confirmation" in its JSON)."""
    if json_output:
        return
    console.print(confirmation_table(report))
    for step in report.steps:
        console.print(f"{step.name}: {step.old_ms:.3g} -> {step.new_ms:.3g} ms with its {step.records} new "
                      f"record(s) ({step.ratio:.3f}x [{step.ci[0]:.3f}, {step.ci[1]:.3f}])", markup=False)
    console.print("unconfirmed records are saved marked so (`generate` and `profile model` count them); "
                  "not-exercised ones are not launched at these sizes", style="dim")
    for note in report.notes:
        console.print(f"[yellow]{note}[/]")
