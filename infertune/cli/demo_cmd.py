"""`infertune demo`: the main job end to end on this machine's device (see infertune/demo.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer
from rich.table import Table

from kernels.device import current_device

from ..demo import DEFAULT_GPU_BUDGET_S, parse_duration, run_demo
from ..rundir import make_dir
from .common import console, print_json, user_errors, path_text


def _stderr_fd():
    """Our stderr as a file descriptor for the steps' stdout, else DEVNULL (stderr is not a
    real file, e.g. captured by a test runner)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return subprocess.DEVNULL


@user_errors
def demo(
    out: str = typer.Option("runs/demo", "--out", help="Where the runs, the database and the report go."),
    budget: str = typer.Option(None, "--budget", help="Wall-clock budget, e.g. 8m or 480s: tuning is scaled to fit "
                               "and the output says what was cut (default 8m on a GPU, none on the CPU)."),
    json_output: bool = typer.Option(False, "--json", help="Print the steps and the report's path as JSON at the end "
                                     "(the steps' own output still streams to the terminal)."),
) -> None:
    """The main job end to end: tune, generate with and without the tuned database, embed, profile, report.

    Writes runs/demo/report.html (and .md) over the steps' run directories."""
    device = current_device()
    gpu = device.kind == "cuda"
    budget_s = parse_duration(budget) if budget is not None else (DEFAULT_GPU_BUDGET_S if gpu else None)
    folder = make_dir(Path(out), "--out")  # checked writable (and made) before any step runs
    echo = (lambda *a, **k: typer.echo(" ".join(map(str, a)), err=True)) if json_output else console.print
    echo(f"infertune demo on {device.label}" + ("" if gpu else
         ": no GPU, so small sizes and budgets through the Triton interpreter (CPU figures)"))
    steps, report = run_demo(folder, gpu=gpu, echo=echo, budget_s=budget_s,
                             child_stdout=_stderr_fd() if json_output else None)
    failed = [s.name for s in steps if s.returncode != 0]
    if json_output:
        print_json({"device": device.label, "out": str(folder), "budget_s": budget_s,
                    "report": str(report) if report is not None else None,
                    "steps": [{"name": s.name, "args": s.args, "returncode": s.returncode, "cut": s.cut,
                               "seconds": s.seconds, "run_dir": str(s.run_dir) if s.run_dir else None}
                              for s in steps],
                    "failed": failed})
        if failed or report is None:
            raise typer.Exit(1)
        return
    table = Table(title="demo steps")
    for col in ("step", "exit", "seconds", "run directory"):
        table.add_column(col, justify="right" if col in ("exit", "seconds") else "left", overflow="fold")
    for s in steps:
        table.add_row(s.name, "cut" if s.cut else str(s.returncode), f"{s.seconds:.0f}", str(s.run_dir or "-"))
    console.print(table)
    if report is not None:
        console.print(f"[bold]report: {path_text(report.resolve())}[/] (and {path_text(report.with_suffix('.md'))})")
    if failed or report is None:
        console.print(f"[red]failed: {', '.join(failed) or 'the report'}[/]")
        raise typer.Exit(1)
