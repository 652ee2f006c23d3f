"""`infertune env`: the device, versions, and which profilers work here."""

from __future__ import annotations

import typer
from rich.table import Table

from ..environment import collect_environment
from .common import console, print_json, user_errors


@user_errors
def env(json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Show the device, compute capability, memory, driver, versions and profiler availability."""
    info = collect_environment()
    if json_output:
        print_json(info.to_dict())
        return
    d = info.device
    table = Table(title="infertune environment", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("device", d.label)
    table.add_row("compute capability", f"{d.capability[0]}.{d.capability[1]}" if d.capability else "none (no CUDA GPU)")
    table.add_row("memory", f"{d.total_memory / 2**30:.1f} GiB")
    table.add_row("SMs / cores", str(d.sm_count))
    table.add_row("shared memory per block", f"{d.smem_per_block // 1024} KiB" if d.smem_per_block else "no limit (interpreter)")
    table.add_row("driver", info.driver or "none")
    table.add_row("CUDA runtime (torch)", info.cuda_runtime or "none (CPU build)")
    table.add_row("python / torch", f"{info.python} / {info.torch}")
    table.add_row("triton", info.triton or "not installed")
    table.add_row("optuna", info.optuna or "not installed")
    table.add_row("Triton mode", "CPU interpreter (timings are not GPU speed)" if d.interpreter else "compiled for the GPU")
    for tool in (info.nvml, info.nsys, info.ncu):
        state = f"[green]usable[/] {tool.version or ''}" if tool.usable else f"[red]not usable[/]: {tool.detail}"
        table.add_row(tool.name, state)
    console.print(table)
