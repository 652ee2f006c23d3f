"""`infertune db`: show, export, import, merge, prune, transfer and verify the tuned config database."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

import kernels as kernel_library
from kernels.device import DeviceInfo, current_device
from kernels.spec import Config
from tuner.database import (Database, DatabaseError, current_source_hashes, current_triton_minor, dump_json,
                            export_records, open_database, stale_reason)
from tuner.devices import device_for, known_names
from tuner.keys import device_class, problem_from_key
from tuner.record import TuningRecord
from tuner.transfer import TransferError, TransferReport, reason_kind, source_name, transfer

from ..benchmark import check
from ..errors import UsageError
from ..settings import Settings
from .common import console, fmt_ms, print_json, user_errors

app = typer.Typer(name="db", help="Inspect and maintain the tuned config database.", no_args_is_help=True)

DB_HELP = "The database: a file or an SQLAlchemy URL (default: INFERTUNE_DB, else the per-user data dir)."


def _open(location: str | None, *, create: bool = False) -> Database:
    return open_database(location or Settings.from_env().db, create=create)


def _check_kernel(kernel: str | None) -> None:
    if kernel is not None:
        kernel_library.get(kernel)  # raises UnknownKernel with the known names


@app.command("show")
@user_errors
def show(
    kernel: str = typer.Option(None, "--kernel", help="Only this kernel's records."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """List the stored records per device (stale, transferred, confirmed marked) and the traffic bucket maps."""
    _check_kernel(kernel)
    with _open(db) as database:
        records = database.records(kernel)
        maps = database.bucket_maps(kernel)
        location = database.location
    if json_output:
        print_json([{**r.to_dict(), "stale": stale_reason(r), "transferred_from": r.extra.get("transferred_from")}
                    for r in records])
        return
    if not records and not maps:
        console.print(f"no tuned records in {escape(location)}")
        return
    # One table per device (its name, capability and hardware in the title) and six columns:
    # readable at 80 columns, where ten columns folded every cell into 5-letter slices.
    groups: dict[tuple[str, str], list[TuningRecord]] = {}
    for r in records:
        groups.setdefault((r.device_name, r.capability), []).append(r)
    console.print(escape(f"{len(records)} tuned record(s) in {location}"))
    for rows in groups.values():
        table = Table(title=escape(f"{_device_text(rows[0])}: {len(rows)} record(s)"))
        table.add_column("kernel, problem", overflow="fold", min_width=14)
        table.add_column("config", overflow="fold", min_width=16)
        table.add_column("p50", justify="right", no_wrap=True)
        table.add_column("vs dflt", justify="right", no_wrap=True)
        table.add_column("origin", overflow="fold", min_width=11)
        for r in rows:
            # Stored text is data, not rich markup ("[/x]" in a stale record's key must not raise).
            table.add_row(escape(f"{r.kernel} {_spaced(r.problem_key)}"), escape(_config_text(r.config)),
                          fmt_ms(r.median_ms), _ratio(r.default_ms, r.median_ms), _origin(r))
        console.print(table)
    if maps:
        table = Table(title=f"{len(maps)} traffic bucket map(s)")
        table.add_column("kernel", overflow="fold")
        table.add_column("device", overflow="fold")
        table.add_column("family", overflow="fold", ratio=2)
        table.add_column("buckets (M) and configs", overflow="fold", ratio=4)
        for m in maps:
            buckets = "; ".join(f"{lo}-{hi}: {_config_text(c)}" for (lo, hi), c in zip(m.ranges(), m.configs))
            table.add_row(m.kernel, escape(m.device_name), escape(_spaced(m.family)), escape(buckets))
        console.print(table)


def _config_text(config: dict[str, int]) -> str:
    """"BLOCK_M=32 BLOCK_N=512 num_warps=16": the config's items, wrapping between them."""
    return " ".join(f"{k}={v}" for k, v in Config(config).items())


def _spaced(key: str) -> str:
    """"M=16,N=4096|bf16" -> "M=16, N=4096 | bf16": break points for a narrow terminal."""
    return key.replace(",", ", ").replace("|", " | ")


def _device_text(r: TuningRecord) -> str:
    """"nvidia-h200 sm_90, 132 SMs, 140 GiB": the device class, and its hardware where the record says it."""
    text = r.device_name if r.capability == "cpu" else f"{r.device_name} sm_{r.capability.replace('.', '')}"
    hardware = r.extra.get("device")
    if isinstance(hardware, dict) and hardware.get("sm_count") and hardware.get("total_memory"):
        text += f", {hardware['sm_count']} SMs, {hardware['total_memory'] / 2**30:.0f} GiB"
    return text


def _origin(r: TuningRecord) -> str:
    """"measured", or "[magenta]transferred from X[/]" (its times are X's, not this device's),
    then what else a reader must know: stale (why), interpreter, confirmed / unconfirmed."""
    source = r.extra.get("transferred_from")
    parts = [f"[magenta]transferred from {escape(source)}[/]" if isinstance(source, str) else "measured"]
    stale = stale_reason(r)
    if stale:
        parts.append(f"[yellow]stale: {escape(stale)}[/]")
    if r.interpreter:
        parts.append("interpreter")
    if r.extra.get("confirmed") is True:
        parts.append("confirmed")
    elif r.extra.get("confirmed") is False:
        parts.append("[yellow]unconfirmed[/]")
    return ", ".join(parts)


def _ratio(other: float | None, mine: float) -> str:
    return f"{other / mine:.2f}x" if other and mine > 0 else "-"


@app.command("export")
@user_errors
def export(
    fmt: str = typer.Option("json", "--format", help="Export format (json)."),
    out: Path = typer.Option(Path("."), "--out", help="Directory for the files: one <device>.json per device."),
    device: str = typer.Option(None, "--device", help="Only this (normalized) device name."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON summary of the files written."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Write the records as stable, sorted JSON, one file per device."""
    if fmt != "json":
        raise UsageError(f"unknown export format {fmt!r}; formats: json")
    _check_out_dir(out)
    with _open(db) as database:
        documents = database.export_json(device)
        location = database.location
    written = []
    for name, document in sorted(documents.items()):
        path = out / f"{name}.json"
        try:
            path.write_text(dump_json(document), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {str(path)!r}: {exc.strerror}") from None
        written.append({"path": str(path), "device_name": name, "records": len(document["records"])})
    if json_output:
        print_json({"db": location, "out": str(out), "files": written})
        return
    for item in written:
        typer.echo(f"{item['path']}: {item['records']} record(s)")
    if not written:
        typer.echo("nothing to export")


def _check_out_dir(out: Path) -> None:
    """Make `out` (a directory) and prove it writable before the database is read."""
    shown = repr(str(out))
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {shown} exists and is not a directory")
    blocker = next((p for p in out.parents if p.exists()), None)
    if not out.exists() and blocker is not None and not blocker.is_dir():
        raise UsageError(f"--out {shown}: {str(blocker)!r} is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise UsageError(f"--out {shown} is not a writable directory: {exc.strerror}") from None


@app.command("import")
@user_errors
def import_(
    file: Path = typer.Argument(..., help="A file written by `infertune db export`."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON summary of what was imported."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Add the records of an exported file (the faster record wins per key). Every record is checked first: one bad record refuses the whole file and nothing is stored."""
    if not file.is_file():
        raise UsageError(f"no such file: {str(file)!r}")
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {str(file)!r}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DatabaseError(f"{str(file)!r} is not JSON: {str(exc).splitlines()[0][:200]}") from None
    records = export_records(document)  # checked before the database is opened or created
    with _open(db, create=True) as database:
        written = database.put_many(records)
        location = database.location
    if json_output:
        print_json({"db": location, "file": str(file), "records": len(records), "written": written})
        return
    typer.echo(f"imported {written} of {len(records)} record(s) from {file}")


@app.command("merge")
@user_errors
def merge(
    other: str = typer.Argument(..., help="Another tuning database (file or URL) to merge into this one."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON summary of what was merged."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Merge another database into this one (the faster record wins per key). A corrupt row in the other database refuses the merge and nothing is stored."""
    with open_database(other, create=False) as source:
        records = source.records()  # read (and checked) before the target is opened or created
    with _open(db, create=True) as target:
        written = target.put_many(records, what=f"record of {other!r}, number")
        location = target.location
    if json_output:
        print_json({"db": location, "from": other, "records": len(records), "written": written})
        return
    typer.echo(f"merged {written} record(s) from {other}")


@app.command("prune")
@user_errors
def prune(
    stale: bool = typer.Option(False, "--stale", help="Delete records of another kernel source or Triton version."),
    corrupt: bool = typer.Option(False, "--corrupt", help="Delete rows that do not parse or fail the record check."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON summary of what was removed."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Delete stale records, corrupt rows, or both."""
    if not (stale or corrupt):
        raise UsageError("say what to prune: --stale, --corrupt or both")
    removed: dict[str, int] = {}
    with _open(db) as database:
        if corrupt:  # first: a corrupt row's source hash or Triton version means nothing
            removed["corrupt"] = database.prune_corrupt()
        if stale:
            removed["stale"] = database.prune_stale(current_source_hashes(), current_triton_minor())
        location = database.location
    if json_output:
        print_json({"db": location, "removed": removed})
        return
    for what, count in removed.items():
        typer.echo(f"removed {count} {what} record(s)")


@app.command("transfer")
@user_errors
def transfer_cmd(
    source: str = typer.Option(..., "--from", help="The device whose records to copy: its normalized name as "
                               "`db show` prints it, a name `tuner.devices` knows (h100, a100-40gb, ...), or "
                               "'this' (this machine's device)."),
    target: str = typer.Option(..., "--to", help="The device to seed: a known GPU (h100, h200, l4, ...) or 'this'."),
    kernel: str = typer.Option(None, "--kernel", help="Only this kernel's records."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Seed a GPU's records from another GPU's, marked transferred (measure them with `autotune --confirm-transferred`).

    Never taken for measured: a measured record always replaces one, and lookups say so. Configs the target's constraints reject (shared memory, registers) are not copied, nor keys the target has measured.
    """
    _check_kernel(kernel)
    to_device = _device_info(target, "--to")
    with _open(db) as database:
        from_name = device_class(current_device()).name if source.strip().lower() == "this" else None
        try:
            report = transfer(database, from_name or source_name(database, source), to_device, kernel)
        except TransferError as exc:
            raise UsageError(str(exc)) from None
        location = database.location
    if json_output:
        print_json({"db": location, **report.to_dict()})
        return
    _print_transfer(report, location)


def _device_info(text: str, flag: str) -> DeviceInfo:
    """The DeviceInfo `text` names: 'this', or a GPU of tuner.devices. UsageError listing the
    known names otherwise."""
    if text.strip().lower() == "this":
        return current_device()
    known = device_for(text)
    if known is None:
        raise UsageError(f"{flag} {text!r} is not a device infertune knows; known: this, {', '.join(known_names())}")
    return known.info


def _print_transfer(report: TransferReport, location: str) -> None:
    source = f"{report.source} (sm_{report.source_capability.replace('.', '')})"
    target = report.target if report.target_capability == "cpu" else     f"{report.target} (sm_{report.target_capability.replace('.', '')})"
    table = Table(title=escape(f"transfer {source} -> {target} in {location}"))
    for col in ("records", "count", "detail"):
        table.add_column(col, overflow="fold", justify="right" if col == "count" else "left")
    table.add_row("[green]copied (marked transferred)[/]", str(len(report.copied)), "")
    for kind, count in sorted(report.reasons().items()):
        example = next(why for r, why in report.rejected if reason_kind(why) == kind)
        table.add_row(f"[yellow]rejected by constraint: {kind}[/]", str(count), escape(f"e.g. {example}"))
    table.add_row("already measured on the target", str(len(report.measured)), "kept")
    if report.already:
        table.add_row("already transferred", str(len(report.already)), "an earlier copy at least as fast is kept")
    if report.stale:
        table.add_row("stale at the source", str(len(report.stale)), escape(report.stale[0][1]))
    if report.chained:
        table.add_row("not measured at the source", str(len(report.chained)), "transferred there: not copied again")
    console.print(table)
    if report.copied:
        console.print("measure them on the target with `infertune autotune --confirm-transferred`")


@app.command("verify")
@user_errors
def verify(
    kernel: str = typer.Option(None, "--kernel", help="Only this kernel's records."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Re-check every stored config against its reference on this device: ok, mismatch, unsupported (this device cannot run the problem or rejects the config) or stale. Exits 1 if any config computes a wrong result."""
    _check_kernel(kernel)
    with _open(db) as database:
        records = database.records(kernel)
    results = [verify_record(r) for r in records]
    if json_output:
        print_json(results)
    else:
        table = Table(title=f"{len(results)} record(s) checked on {current_device().label}")
        for col in ("kernel", "device", "problem", "config", "status", "detail"):
            table.add_column(col, overflow="fold")
        for r in results:
            colour = {"ok": "green", "mismatch": "red"}.get(r["status"], "yellow")
            table.add_row(r["kernel"], escape(r["device_name"]), escape(r["problem"]), r["config"],
                          f"[{colour}]{r['status']}[/]", escape(r["detail"] or ""))
        console.print(table)
    if any(r["status"] == "mismatch" for r in results):
        raise typer.Exit(1)


def verify_record(record: TuningRecord) -> dict:
    """Check one record's config on this device: {"status": ok|mismatch|unsupported|stale, ...}."""
    out = {"kernel": record.kernel, "device_name": record.device_name, "problem": record.problem_key,
           "config": str(Config(record.config)), "status": "", "detail": None}
    reason = stale_reason(record)
    if reason:
        return {**out, "status": "stale", "detail": reason}
    spec = kernel_library.get(record.kernel)
    device = current_device()
    problem = problem_from_key(spec, record.problem_key)
    reason = spec.unsupported_reason(problem, device) or spec.reject_reason(Config(record.config), problem, device)
    if reason:
        return {**out, "status": "unsupported", "detail": reason}
    result = check(spec, problem, Config(record.config))
    detail = result.comparison.summary() if result.comparison else result.reason
    if device_class(device).name != record.device_name:
        detail = f"{detail} (tuned on {record.device_name}, checked on {device.label})"
    return {**out, "status": result.status, "detail": detail}
