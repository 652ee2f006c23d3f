"""`infertune autotune --confirm-transferred [KERNEL]`: measure this device's transferred
records (`infertune db transfer`) and replace them with measured ones.

For every transferred record of this device class, a short search of the same problem runs
with the transferred config as its warm start (timed right after the heuristic default and,
when it is among the best, re-timed beside it); the search's winner is stored as a measured
record, which replaces the transferred one whatever its time (tuner.database's rule), with
extra["replaced_transfer"] saying what the transferred config measured here. The table says
what changed: the transferred config kept, a faster config found, or the default kept.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

import kernels as kernel_library
from kernels.device import DeviceInfo
from kernels.spec import Config
from tuner.database import open_database, stale_reason
from tuner.keys import device_class, problem_from_key
from tuner.record import TuningRecord
from tuner.search import NoValidConfig, SearchOptions, TuneResult
from tuner.transfer import is_transferred
from tuner.worker import Worker

from ..autotune import autotune_problem, save_records, studies_storage, tuning_run
from ..benchmark import INTERPRETER_NOTE
from ..settings import Settings
from .autotune_shared import check_destinations, drop_if_empty, status
from .common import console, fmt_ms, path_text, print_json

NO_EARLY_STOP = 1e9


def confirm_transferred(*, kernel: str | None, db: str, device: DeviceInfo, settings: Settings, trials: int,
                        sampler: str, seed: int, trial_timeout: float, storage: str | None, out: str | None,
                        json_output: bool, timeout: float | None = None, retime: int = 3) -> None:
    """Measure every transferred record of `device`'s class in the database `db` (of
    `kernel` only, when given) with a search of `trials` configs warm-started from its
    config, store the winners (each replaces its transferred record) and print what changed.
    Raises UnknownKernel, UsageError, tuner.database.DatabaseError (one line)."""
    if kernel is not None:
        kernel_library.get(kernel)  # an unknown kernel fails as such, with the known names
    cls = device_class(device)
    with open_database(db, create=False) as database:
        pending = [r for r in database.records(kernel)
                   if is_transferred(r) and (r.device_name, r.capability) == (cls.name, cls.capability)]
    if not pending:
        what = f" of {kernel}" if kernel else ""
        message = f"no transferred records{what} for {cls} in {path_text(db)}: nothing to confirm"
        if json_output:
            print_json({"database": db, "device": str(cls), "rows": [], "records_written": 0, "note": message})
        else:
            console.print(message)
        return
    storage = storage or studies_storage(db)
    run_dir = check_destinations(db=db, save=True, storage=storage, out=out,
                                 run_dir_name=f"autotune-confirm-transferred-{kernel or 'all'}")
    # No early stop: the transferred config is timed in full even when it is several times
    # slower than the default here, so the table can say by how much. The searches are short.
    options = SearchOptions(trials=trials, sampler=sampler, seed=seed, timeout_s=timeout, retime_top=retime,
                            early_stop_factor=NO_EARLY_STOP)
    rows: list[dict[str, Any]] = []
    results: list[TuneResult] = []
    measured: list[TuningRecord] = []
    interrupted = False
    worker = Worker() if len(pending) > 1 else None  # one process for every problem
    try:
        for record in pending:
            row, result, new = _confirm_one(record, device, options, settings, storage, trial_timeout, worker)
            rows.append(row)
            if result is not None:
                results.append(result)
                if result.interrupted:
                    interrupted = True
                    break
            if new is not None:
                measured.append(new)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if worker is not None:
            worker.close()
    written = save_records(db, measured) if measured else 0
    if results:
        notes = [f"confirm-transferred: {r['kernel']} {r['problem']}: {r['verdict']}" for r in rows]
        run_dir = tuning_run(results, {r.kernel: kernel_library.get(r.kernel) for r in results}, name="confirm",
                             out=str(run_dir), device=device, db=db, notes=notes, interrupted=interrupted,
                             sections={"confirm_transferred": rows})
    else:
        drop_if_empty(run_dir)
        run_dir = None
    _report(rows, db, written, device, json_output, run_dir, interrupted)
    if interrupted:
        raise typer.Exit(130)


def _confirm_one(record: TuningRecord, device: DeviceInfo, options: SearchOptions, settings: Settings,
                 storage: str, trial_timeout: float, worker: Worker | None):
    """(table row, TuneResult or None, the measured record or None) for one transferred record."""
    config = Config(record.config)
    row: dict[str, Any] = {
        "kernel": record.kernel, "problem": record.problem_key, "from": record.extra.get("transferred_from"),
        "transferred_config": dict(config), "transferred_ms_at_source": record.median_ms,
        "transferred_ms": None, "default_ms": None, "chosen_config": None, "chosen_ms": None, "verdict": "",
    }
    stale = stale_reason(record)
    if stale:
        return {**row, "verdict": f"not measured: stale ({stale}); `infertune db prune --stale` removes it"}, None, None
    spec = kernel_library.get(record.kernel)
    problem = problem_from_key(spec, record.problem_key)
    reason = spec.unsupported_reason(problem, device) or spec.reject_reason(config, problem, device)
    if reason:
        return {**row, "verdict": f"not measured: {reason}"}, None, None
    try:
        result, new = autotune_problem(spec, problem, device, storage=storage,
                                       options=dataclasses.replace(options, warm_start=(config,)),
                                       trial_timeout_s=trial_timeout, settings=settings, worker=worker)
    except NoValidConfig as exc:
        return {**row, "verdict": f"not measured: {exc}"}, None, None
    here = _measured_ms(result, config)
    row.update(transferred_ms=here, default_ms=result.default.median_ms if result.default else None,
               chosen_config=dict(result.best_config) if result.best_config else None,
               chosen_ms=result.best.median_ms if result.best else None)
    row["verdict"] = _verdict(result, config, here)
    if new is None:
        return row, result, None
    new = dataclasses.replace(new, extra={**new.extra, "replaced_transfer": {
        "from": record.extra.get("transferred_from"), "config": dict(config), "measured_ms": here,
        "source_ms": record.median_ms}})
    return row, result, new


def _measured_ms(result: TuneResult, config: Config) -> float | None:
    """What `config` measured in the search: its re-timed median when it was among the
    contenders re-timed beside the default, else its trial's; None when it failed."""
    for entry in result.retimed:
        timing = entry.get("retimed")
        if entry.get("config") == dict(config) and timing:
            return timing["median_ms"]
    for entry in result.history:
        if entry.get("config") == dict(config) and entry.get("state") == "complete":
            return entry.get("median_ms")
    return None


def _verdict(result: TuneResult, config: Config, here: float | None) -> str:
    if result.interrupted:
        return "interrupted: the transferred record is kept"
    if result.best_config is None:
        return "no config passed: the transferred record is kept"
    failed = next((h for h in result.history if h.get("config") == dict(config) and h.get("kind")), None)
    if here is None and failed is not None:
        return f"transferred config failed here ({failed['kind']}); replaced by {result.best_config}"
    if result.best_config == config:
        return "transferred config confirmed (fastest measured here)"
    if result.default_kept or result.best_config == result.default_config:
        return "default kept (the transferred config was not faster here)"
    return "replaced by a faster config found by the search"


def _report(rows: list[dict[str, Any]], db: str, written: int, device: DeviceInfo, json_output: bool, run_dir,
            interrupted: bool) -> None:
    if json_output:
        print_json({"database": db, "device": device.label, "rows": rows, "records_written": written,
                    "interrupted": interrupted, "run_dir": str(run_dir) if run_dir else None,
                    "note": INTERPRETER_NOTE if device.interpreter else None})
        return
    table = Table(title=f"{len(rows)} transferred record(s) measured on {device.label}")
    for col in ("kernel", "problem", "from", "transferred config", "there", "here", "default", "chosen", "verdict"):
        table.add_column(col, overflow="fold", justify="right" if col in ("there", "here", "default", "chosen")
                         else "left")
    for r in rows:
        chosen = "-" if r["chosen_ms"] is None else fmt_ms(r["chosen_ms"])
        if r["chosen_config"] is not None and r["chosen_config"] != r["transferred_config"]:
            chosen += f" {Config(r['chosen_config'])}"
        table.add_row(r["kernel"], escape(r["problem"]), escape(str(r["from"])), str(Config(r["transferred_config"])),
                      fmt_ms(r["transferred_ms_at_source"]), _ms(r["transferred_ms"]), _ms(r["default_ms"]),
                      escape(chosen), escape(r["verdict"]))
    console.print(table)
    console.print(f"database: {written} measured record(s) written to {path_text(db)}, each replacing its "
                  "transferred record")
    if interrupted:
        status.print("[yellow]interrupted: the records measured so far are stored; run again to continue[/]")
    if device.interpreter:
        console.print(f"[yellow]{INTERPRETER_NOTE}.[/]")
    if run_dir is not None:
        console.print(f"run directory: {path_text(run_dir)}")


def _ms(value: float | None) -> str:
    return "-" if value is None else fmt_ms(value)
