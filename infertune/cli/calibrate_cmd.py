"""`infertune calibrate`: measure this device's copy bandwidth and matmul peaks, store them
beside the tuned config database (`<db>.peaks.json`), and print them with the datasheet's."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer
from rich.table import Table

from profilers.peaks import datasheet_peaks, measure_peaks, peaks_path_for

from ..errors import UsageError
from ..settings import Settings
from .common import console, fmt_num, print_json, user_errors, path_text

DB_HELP = "Tuned config database (file); the peaks go to <db>.peaks.json. Default: INFERTUNE_DB or the user data dir."


@user_errors
def calibrate(
    db: str = typer.Option(None, "--db", help=DB_HELP),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Measure achieved copy bandwidth and matmul TFLOP/s per dtype; store them beside the database."""
    import torch

    location = db or Settings.from_env().db
    try:
        path = peaks_path_for(location)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _check_writable(path)  # before the measurements, which take a while
    device = "cuda" if torch.cuda.is_available() else "cpu"
    peaks = measure_peaks(device)
    try:
        peaks.save(path)
    except OSError as exc:
        raise UsageError(f"cannot write the peaks file {str(path)!r}: {exc.strerror}") from None
    sheet = datasheet_peaks(peaks.device_name) if peaks.kind == "cuda" else None
    if json_output:
        print_json({"path": str(path), "measured": peaks.to_dict(), "datasheet": sheet.to_dict() if sheet else None})
        return
    title = f"peaks of {peaks.device_name}" + (" (CPU figures: wall clock, not a GPU)" if peaks.kind == "cpu" else "")
    table = Table(title=title)
    table.add_column("what", style="bold")
    table.add_column("measured", justify="right")
    table.add_column("datasheet", justify="right")
    table.add_column("of datasheet", justify="right")

    def row(label: str, value: float | None, peak: float | None, unit: str, why: str | None = None) -> None:
        shown = f"{fmt_num(value)} {unit}" if value is not None else f"skipped: {why}"
        ratio = f"{value / peak:.0%}" if value is not None and peak else "-"
        table.add_row(label, shown, f"{fmt_num(peak)} {unit}" if peak else "-", ratio)

    row("copy (read + write)", peaks.bandwidth_gbps, sheet.bandwidth_gbps if sheet else None, "GB/s")
    for dtype in ("fp32", "tf32", "fp16", "bf16", "fp8"):
        row(f"matmul {dtype} {peaks.matmul_size}^3", peaks.tflops.get(dtype),
            sheet.tflops.get(dtype) if sheet else None, "TFLOP/s", peaks.skipped.get(dtype))
    console.print(table)
    if peaks.note:
        console.print(peaks.note, soft_wrap=True)
    console.print(f"stored in {path_text(path)}", soft_wrap=True, markup=False)


def _check_writable(path: Path) -> None:
    """UsageError (one line) unless the peaks file `path` can be written: not a directory,
    and its folder (made if missing) takes a new file."""
    if path.is_dir():
        raise UsageError(f"the peaks file {str(path)!r} is a directory")
    blocker = next((p for p in path.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise UsageError(f"cannot write the peaks file {str(path)!r}: {str(blocker)!r} is not a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write the peaks file {str(path)!r}: {exc.strerror}") from None
