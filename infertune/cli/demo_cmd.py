"""`infertune demo`: the main job end to end on this machine's device (see infertune/demo.py)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from kernels.device import current_device

from ..demo import run_demo
from .common import console, user_errors


@user_errors
def demo(out: str = typer.Option("runs/demo", "--out", help="Where the runs, the database and the report go.")) -> None:
    """The main job end to end: tune, generate with and without the tuned database, embed, profile, report.

    Writes runs/demo/report.html (and .md) over the steps' run directories."""
    device = current_device()
    gpu = device.kind == "cuda"
    console.print(f"infertune demo on {device.label}" + ("" if gpu else
                  ": no GPU, so small sizes and budgets through the Triton interpreter (CPU figures)"))
    steps, report = run_demo(Path(out), gpu=gpu, echo=console.print)
    table = Table(title="demo steps")
    for col in ("step", "exit", "seconds", "run directory"):
        table.add_column(col, justify="right" if col in ("exit", "seconds") else "left", overflow="fold")
    for s in steps:
        table.add_row(s.name, str(s.returncode), f"{s.seconds:.0f}", str(s.run_dir or "-"))
    console.print(table)
    if report is not None:
        console.print(f"[bold]report: {report.resolve()}[/] (and {report.with_suffix('.md')})")
    failed = [s.name for s in steps if s.returncode != 0]
    if failed or report is None:
        console.print(f"[red]failed: {', '.join(failed) or 'the report'}[/]")
        raise typer.Exit(1)
