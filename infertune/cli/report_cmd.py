"""`infertune report RUN_DIR [RUN_DIR ...] [-o FILE.html|FILE.md]`: a report of one run, or a
comparison of several (the first is the reference); with no -o, a terminal summary."""

from __future__ import annotations

from pathlib import Path

import typer

import reports

from ..errors import UsageError
from .common import console, user_errors


@user_errors
def report(
    run_dirs: list[str] = typer.Argument(..., metavar="RUN_DIR",
                                         help="Run directories (`infertune profile` / `autotune` output); "
                                              "several make a comparison against the first."),
    output: str = typer.Option(None, "-o", "--output", metavar="FILE.html|FILE.md",
                               help="Write an HTML (self-contained) or Markdown report; without it, print a "
                                    "summary."),
) -> None:
    """Report on run directories: HTML, Markdown or a terminal summary."""
    if output is not None and Path(output).suffix.lower() not in reports.SUFFIXES:
        raise UsageError(f"unknown report format {Path(output).suffix or '(no suffix)'!r} for {output}; "
                         f"expected one of {', '.join(reports.SUFFIXES)}")
    written = reports.write_report(run_dirs, output, console=console)
    if written is not None:
        console.print(f"report written to {written}", soft_wrap=True)
