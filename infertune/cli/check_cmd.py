"""`infertune check`: every kernel against its reference on this device."""

from __future__ import annotations

import typer
from rich.table import Table

import kernels as kernel_library
from kernels.device import current_device

from ..benchmark import CheckResult
from ..benchmark import check as run_check
from ..errors import UsageError
from ..problems import default_dtype, given
from .common import console, print_json, seed_option, user_errors


@user_errors
def check(
    names: list[str] = typer.Argument(None, help="Kernels to check (default: all)."),
    dtype: str = typer.Option(None, "--dtype", help="fp32, fp16 or bf16 (default: bf16 where it runs)."),
    seed: int = seed_option(),  # noqa: B008 - a typer.Option, as every default here
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Run each kernel's default config at its example shape and compare with its torch reference.

    A kernel named here that cannot run (its dtypes lack --dtype, or this device lacks what it
    needs) is an error, exit 2; without names such kernels are listed as skipped."""
    given(dtype, "--dtype")
    known = sorted({d for spec in kernel_library.REGISTRY for d in spec.dtypes})
    if dtype is not None and dtype not in known:
        raise UsageError(f"unknown dtype {dtype!r}; dtypes: {', '.join(known)}")
    specs = [kernel_library.get(n) for n in names] if names else list(kernel_library.REGISTRY)
    device = current_device()
    planned = []  # every problem decided before any kernel runs
    for spec in specs:
        if dtype and dtype not in spec.dtypes and not names:
            planned.append(CheckResult(spec.name, "", "", "unsupported",
                                       reason=f"no {dtype} variant (dtypes: {', '.join(spec.dtypes)})"))
            continue
        problem = spec.problem(spec.example, dtype or default_dtype(spec, device))
        reason = spec.unsupported_reason(problem, device)
        if reason and names:
            raise UsageError(f"{spec.name} with {problem.dtype} cannot run on {device.label}: {reason}")
        planned.append((spec, problem))
    results = [p if isinstance(p, CheckResult) else run_check(*p, seed=seed) for p in planned]
    if json_output:
        print_json({"device": device.label, "seed": seed, "results": [r.to_dict() for r in results]})
    else:
        table = Table(title=f"default configs against their references on {device.label} (seed {seed})",
                      caption="configs and errors in full: --json")
        table.add_column("kernel", no_wrap=True)
        table.add_column("problem", overflow="fold")
        table.add_column("result", overflow="fold")
        for r in results:
            if r.status == "unsupported":
                state = f"[yellow]skipped[/]: {r.reason}"
            elif r.status == "error":
                state = f"[red]ERROR[/] {r.reason}"
            else:
                c = r.comparison
                state = ("[green]ok[/]" if r.status == "ok" else f"[red]MISMATCH[/] {c.bad_elements}/{c.total_elements}")
                state += f" SQNR {c.sqnr_db:.1f} dB, max rel err {c.max_rel_err:.1e}"
            table.add_row(r.kernel, r.problem_key, state)
        console.print(table)
    if any(r.status in ("mismatch", "error") for r in results):
        raise typer.Exit(1)
