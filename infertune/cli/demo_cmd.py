"""`infertune demo`: the main job end to end on this machine's device (see infertune/demo.py)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from kernels.device import current_device

from ..demo import DEFAULT_GPU_BUDGET_S, parse_duration, run_demo
from .common import console, user_errors


@user_errors
def demo(
    out: str = typer.Option("runs/demo", "--out", help="Where the runs, the database and the report go."),
    budget: str = typer.Option(None, "--budget", help="Wall-clock budget, e.g. 8m or 480s: tuning is scaled to fit "
                               "and the output says what was cut (default 8m on a GPU, none on the CPU)."),
) -> None:
    """The main job end to end: tune, generate with and without the tuned database, embed, profile, report.

    Writes runs/demo/report.html (and .md) over the steps' run directories."""
    device = current_device()
    gpu = device.kind == "cuda"
    budget_s = parse_duration(budget) if budget is not None else (DEFAULT_GPU_BUDGET_S if gpu else None)
    console.print(f"infertune demo on {device.label}" + ("" if gpu else
                  ": no GPU, so small sizes and budgets through the Triton interpreter (CPU figures)"))
    steps, report = run_demo(Path(out), gpu=gpu, echo=console.print, budget_s=budget_s)
    table = Table(title="demo steps")
    for col in ("step", "exit", "seconds", "run directory"):
        table.add_column(col, justify="right" if col in ("exit", "seconds") else "left", overflow="fold")
    for s in steps:
        table.add_row(s.name, "cut" if s.cut else str(s.returncode), f"{s.seconds:.0f}", str(s.run_dir or "-"))
    console.print(table)
    if report is not None:
        console.print(f"[bold]report: {report.resolve()}[/] (and {report.with_suffix('.md')})")
    failed = [s.name for s in steps if s.returncode != 0]
    if failed or report is None:
        console.print(f"[red]failed: {', '.join(failed) or 'the report'}[/]")
        raise typer.Exit(1)
