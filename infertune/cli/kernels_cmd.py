"""`infertune kernels`: the kernel registry."""

from __future__ import annotations

import typer
from rich.table import Table

import kernels as kernel_library

from .common import console, print_json, user_errors


def describe(spec) -> dict:
    return {
        "name": spec.name,
        "summary": spec.summary,
        "dims": list(spec.dims),
        "dtypes": list(spec.dtypes),
        "options": {o.name: {"choices": list(o.choices), "default": o.default, "help": o.help} for o in spec.options},
        "params": {p.name: list(p.values) for p in spec.params},
        "space_size": spec.space_size,
        "baseline": spec.baseline_name,
        "example_shape": dict(spec.example),
        "notes": spec.notes or None,
    }


@user_errors
def kernels(json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the kernels: dimensions, dtypes, tunable parameters and the size of each search space."""
    specs = kernel_library.REGISTRY
    if json_output:
        print_json([describe(s) for s in specs])
        return
    table = Table(title=f"{len(specs)} kernels (`infertune kernels --json` for everything)")
    table.add_column("kernel", no_wrap=True, style="bold")
    table.add_column("dims", max_width=11, overflow="fold")
    table.add_column("dtypes", max_width=9)
    table.add_column("space", justify="right", no_wrap=True)
    table.add_column("parameters; options", ratio=1, overflow="fold")
    for s in specs:
        params = " ".join(f"{p.name}={{{','.join(map(str, p.values))}}}" for p in s.params)
        opts = " ".join(f"{o.name}={{{'|'.join(o.choices)}}}" for o in s.options)
        table.add_row(s.name, "x".join(s.dims), " ".join(s.dtypes), f"{s.space_size:,}",
                      params + (f"; [dim]{opts}[/]" if opts else ""))
    console.print(table)
