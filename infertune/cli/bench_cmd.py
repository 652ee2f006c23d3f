"""`infertune bench`: correctness, then latency of one config against the torch baseline."""

from __future__ import annotations

import typer
from rich.console import Group
from rich.table import Table

import kernels as kernel_library
from kernels.device import current_device
from kernels.spec import Config

from ..benchmark import INTERPRETER_NOTE, BenchResult
from ..benchmark import bench as run_bench
from ..errors import UsageError
from ..problems import given, given_db, parse_options, problem_from_text
from .common import console, fmt_ms, fmt_num, print_json, seed_option, user_errors


@user_errors
def bench(
    kernel: str = typer.Argument(..., help="Kernel name (see `infertune kernels`)."),
    shape: str = typer.Option(..., "--shape", help="16x4096x4096 (dims in order) or M=16,N=4096,K=4096."),
    dtype: str = typer.Option(None, "--dtype", help="fp32, fp16 or bf16 (default: bf16 where it runs)."),
    config: str = typer.Option(None, "--config", help="BLOCK_M=64,BLOCK_N=128,...; missing params take the default."),
    quant: str = typer.Option(None, "--quant", help="Quantization scheme for quantized kernels, e.g. int4-g128."),
    opt: list[str] = typer.Option([], "--opt", help="Problem options KEY=VALUE, e.g. causal=0 or bias=1."),
    db: str = typer.Option(None, "--db", help="Time the tuned config from this database (a path or an SQLAlchemy "
                           "URL): its exact or nearest entry, else the heuristic. Default: the heuristic config."),
    seed: int = seed_option(),  # noqa: B008 - a typer.Option, as every default here
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Check a kernel config against the reference, then time it and the torch baseline."""
    if config is not None and db is not None:
        raise UsageError("give --config or --db, not both")
    given_db(db)
    spec = kernel_library.get(kernel)
    device = current_device()
    options = parse_options(opt)
    if quant is not None:
        options["quant"] = quant
    problem = problem_from_text(spec, shape, dtype, options, device)
    chosen = Config.parse(given(config, "--config")) if config is not None else None
    if chosen is not None:
        chosen = spec.complete(chosen, problem, device)
    result = run_bench(spec, problem, chosen, seed=seed, db=db)
    if json_output:
        print_json(result.to_dict())
    else:
        console.print(render(result))
    if not result.comparison.ok:
        raise typer.Exit(1)


def render(r: BenchResult) -> Group:
    title = f"{r.kernel} {r.problem.shape_text()} {r.problem.dtype}"
    title += "".join(f" {k}={v}" for k, v in r.problem.options) + f" on {r.device}"
    table = Table(title=title)
    table.add_column("variant", overflow="fold")
    for col in ("p50", "p10-p90", "TFLOP/s", "GB/s", "speedup"):
        table.add_column(col, justify="right", overflow="fold")
    t, b = r.timing, r.baseline_timing
    table.add_row(f"triton ({r.config_source})", fmt_ms(t.median_ms), f"{fmt_ms(t.p10_ms)}-{fmt_ms(t.p90_ms)}",
                  fmt_num(r.tflops), fmt_num(r.gbps), f"{r.speedup:.2f}x")
    table.add_row(r.baseline_name, fmt_ms(b.median_ms), f"{fmt_ms(b.p10_ms)}-{fmt_ms(b.p90_ms)}",
                  fmt_num(r.baseline_tflops), fmt_num(r.baseline_gbps), "baseline")
    verdict = "[green]correct[/]" if r.comparison.ok else "[red]WRONG[/]"
    lines = [
        table,
        f"config: {r.config}",
        f"accuracy: {verdict} — {r.comparison.summary()} (seed {r.seed})",
        f"timing: {t.reps} / {b.reps} repetitions, {t.method}" + (", L2 flushed" if t.l2_flushed else ""),
    ]
    if r.warning:
        lines.append(f"[yellow]warning: {r.warning}[/]")
    if r.interpreter:
        lines.append(f"[yellow]{INTERPRETER_NOTE}.[/]")
    return Group(*lines)
