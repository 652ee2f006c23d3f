"""`infertune autotune --model NAME --traffic FILE --buckets N [--max-batch N]`: traffic-aware M
buckets for a built-in model (infertune/traffic_tuning.py), stored as bucket maps, with a
table of the expected latency per forward pass under the heuristic, power-of-two buckets and
traffic buckets, and a run directory whose report shows the same."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.table import Table

import kernels as kernel_library
from kernels.device import DeviceInfo
from tuner.database import open_database
from tuner.search import SearchOptions
from tuner.traffic_io import TrafficError, read_traffic

from ..autotune import save_records, studies_storage, tuning_run
from ..benchmark import INTERPRETER_NOTE
from ..errors import UsageError
from ..problems import default_dtype
from ..settings import Settings
from ..traffic_tuning import (
    PLANS,
    Group,
    TrafficResult,
    WorkerMeasurer,
    model_groups,
    model_max_length,
    traffic_autotune,
)
from .autotune_shared import check_destinations, drop_if_empty, status
from .common import console, fmt_ms, path_text, print_json

WIDTH = 80  # the table fits a default terminal


def make_measurer(device: DeviceInfo, settings: Settings, *, seed: int, trial_timeout: float):
    """Where timings come from: the isolated worker (tests replace this with a planted table).
    The searches compile ahead with --compile-workers (SearchOptions); the timings at every M
    run in this one worker."""
    return WorkerMeasurer(device, settings, seed=seed, trial_timeout_s=trial_timeout)


def tune_traffic(*, model: str, kernel: str | None, traffic: str, buckets: int, max_batch: int | None, gen: int,
                 dtype: str | None, quant: str | None, trials: int, sampler: str, seed: int, timeout: float | None,
                 retime: int, trial_timeout: float, db: str, storage: str | None, no_save: bool, out: str | None,
                 json_output: bool, device: DeviceInfo, settings: Settings, compile_workers: int,
                 warm_start: str | None) -> None:
    """Tune `model`'s bucketed kernels under the traffic in the file `traffic`, store a bucket
    map per (kernel, family) and the searched records in `db` (unless `no_save`), write the
    run directory and print the comparison. Raises UsageError (bad traffic file, bucket
    count, model, kernel or destination), tuner.database.DatabaseError."""
    if not 1 <= buckets <= 64:
        raise UsageError(f"--buckets must be from 1 to 64, got {buckets}")
    dtype = dtype or default_dtype(kernel_library.get("matmul"), device)
    max_length, truncates = model_max_length(model)
    if not truncates:  # a decoder's prompt and its generated tokens share the context (runtime/generate.py)
        max_length = max(1, max_length - gen)
    try:
        load = read_traffic(traffic, max_batch=max_batch, max_length=max_length, truncate=truncates)
    except TrafficError as exc:
        raise UsageError(str(exc)) from None
    model_groups(model, load, dtype=dtype, quant=quant, kernel=kernel)  # a bad model or kernel fails before any work
    warm = _warm_start(warm_start, db, device) if warm_start else None
    storage = storage or studies_storage(db)
    save = not no_save
    run_dir = check_destinations(db=db, save=save, storage=storage, out=out, run_dir_name=f"autotune-traffic-{model}")
    options = SearchOptions(trials=trials, sampler=sampler, seed=seed, timeout_s=timeout, retime_top=retime,
                            compile_workers=compile_workers)
    if device.interpreter and not json_output:
        status.print(f"[yellow]warning: {INTERPRETER_NOTE}; the buckets are chosen on CPU timings.[/]")
    measurer = make_measurer(device, settings, seed=seed, trial_timeout=trial_timeout)

    def on_group(i: int, n: int, group: Group) -> None:
        if not json_output:
            ms = ", ".join(map(str, list(group.histogram)[:6])) + (", ..." if len(group.histogram) > 6 else "")
            status.print(f"[{i + 1}/{n}] {group.kernel} {group.family}: {len(group.histogram)} Ms ({ms}), "
                         f"{_num(group.per_pass)} launches per pass")

    try:
        result = traffic_autotune(model, load, buckets=buckets, dtype=dtype, quant=quant, device=device,
                                  measurer=measurer, options=options, storage=storage, kernel=kernel,
                                  warm_start=warm, on_group=on_group)
    except KeyboardInterrupt:
        measurer.close()
        if out is None:
            drop_if_empty(run_dir)
        status.print(f"[yellow]interrupted: every search's measurements are kept in the studies ({storage}); "
                     f"run the same command again to continue[/]")
        raise typer.Exit(130) from None
    except BaseException:
        measurer.close()
        if out is None:
            drop_if_empty(run_dir)
        raise
    measurer.close()
    records = [r for g in result.groups for r in g.records]
    written = maps = None
    if save:
        written = save_records(db, records) if records else 0
        maps = _store_maps(db, result)
    path = _write_run(result, run_dir, device, db)
    if json_output:
        print_json({"model": model, "database": db, "records_written": written, "bucket_maps_written": maps,
                    "run_dir": str(path), "note": INTERPRETER_NOTE if device.interpreter else None,
                    **result.to_dict()})
        return
    _table(result, device)
    for note in result.notes:
        console.print(f"[dim]{note}[/]")
    if save:
        console.print(f"database: {maps} bucket map(s) and {written} record(s) written to {path_text(db)}")
    else:
        console.print("database: not written (--no-save)")
    console.print(f"run directory: {path_text(path)}")


def _warm_start(text: str, db: str, device: DeviceInfo):
    """The configs of `--warm-start SOURCE` for a problem (tuner/warm_start.py)."""
    from tuner.warm_start import WarmStartError, open_warm_source

    try:
        source = open_warm_source(text, db)
    except WarmStartError as exc:
        raise UsageError(str(exc)) from None
    return lambda spec, problem: tuple(source.configs_for(spec, problem, device))


def _store_maps(db: str, result: TrafficResult) -> int:
    with open_database(db, create=True) as database:
        for group in result.groups:
            if group.bucket_map is not None:
                database.put_bucket_map(group.bucket_map)
    return sum(g.bucket_map is not None for g in result.groups)


def _write_run(result: TrafficResult, run_dir: Path, device: DeviceInfo, db: str) -> Path:
    """The run directory: autotune's (every search's trials and timings) plus the "traffic"
    section the report renders (reports/traffic_section.py)."""
    from ..rundir import write_run

    searches = [r for g in result.groups for r in g.results]
    specs = {r.kernel: kernel_library.get(r.kernel) for r in searches}
    path = tuning_run(searches, specs, name=f"traffic-{result.model}", out=str(run_dir), device=device, db=db,
                      notes=list(result.notes))
    run = json.loads((path / "run.json").read_text())
    run["traffic"] = result.to_dict()
    run["command"] = ["infertune", *sys.argv[1:]]
    write_run(path, run)
    return path


def _num(x: float) -> str:
    return f"{x:g}" if x < 1e4 else f"{x:,.0f}"


def _ms(x: float | None) -> str:
    return fmt_ms(x) if x is not None else "-"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def _table(result: TrafficResult, device: DeviceInfo) -> None:
    title = (f"{result.model}: expected latency per forward pass, {result.traffic.total:,} passes, "
             f"at most {result.buckets} buckets, on {device.label}")
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("group", overflow="fold", max_width=20)
    table.add_column("buckets chosen", overflow="fold", max_width=20)
    for name in PLANS:
        table.add_column(name, justify="right")
    table.add_column("vs pow2", justify="right")
    for g in result.groups:
        roles = ",".join(sorted({r for launch in g.group.launches for r in launch.roles}))
        plans: dict[str, Any] = {name: g.plans[name].per_pass_ms for name in PLANS}
        table.add_row(f"{g.group.kernel} {roles}", g.buckets_text(), *(_ms(plans[n]) for n in PLANS),
                      _ratio(plans["pow2"], plans["traffic"]))
    totals = {name: result.per_pass(name) for name in PLANS}
    table.add_section()
    table.add_row("per forward pass", "", *(_ms(totals[n]) for n in PLANS), _ratio(totals["pow2"], totals["traffic"]))
    console.print(table, width=WIDTH)
    console.print(f"traffic buckets: {_ratio(totals['heuristic'], totals['traffic'])} faster than the heuristic, "
                  f"{_ratio(totals['pow2'], totals['traffic'])} than power-of-two buckets (same candidates)")
