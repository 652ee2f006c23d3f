"""`infertune report RUN_DIR [RUN_DIR ...] [--out FILE.html|FILE.md] [--json]`: a report of one
run, or a comparison of several (the first is the reference); with no --out, a terminal summary.
`-o` is --out's short form and `--output` its old spelling."""

from __future__ import annotations

import typer

import reports

from ..errors import UsageError
from .common import console, print_json, user_errors, path_text


@user_errors
def report(
    run_dirs: list[str] = typer.Argument(..., metavar="RUN_DIR",
                                         help="Run directories (`infertune profile` / `autotune` output); "
                                              "several make a comparison against the first."),
    out: str = typer.Option(None, "--out", "-o", "--output", metavar="FILE.html|FILE.md",
                            help="Write an HTML (self-contained) or Markdown report; without it, print a summary."),
    json_output: bool = typer.Option(False, "--json",
                                     help="Print a JSON summary (the file written, the runs read) instead of text."),
) -> None:
    """Report on run directories: HTML, Markdown or a terminal summary."""
    try:
        result = reports.make_report(run_dirs, out, console=console, quiet=json_output)
    except reports.ReportError as exc:
        raise UsageError(str(exc)) from None
    if json_output:
        print_json(result.summary())
    elif result.written is not None:
        console.print(f"report written to {path_text(result.written)}", soft_wrap=True, markup=False)
