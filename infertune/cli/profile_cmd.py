"""`infertune profile kernel|model`: measure variants under NVTX ranges, optionally under
Nsight Systems / Nsight Compute, torch.profiler and the NVML sampler; write a run directory
(run.json + raw artifacts) and print a table per variant against the named baseline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

import kernels as kernel_library
from kernels.device import current_device
from runtime.configs import sources_text

from ..environment import collect_environment
from ..errors import UsageError
from ..model_autotune import parse_sizes
from ..problems import given, given_db, parse_options, problem_from_text
from ..profiling import (
    check_lengths, check_memory, device_peaks, parse_kernel_variants, parse_model_variants, preset_config, profile_kernel,
    profile_model,
)
from ..rundir import make_dir, run_dir_path, skeleton, write_run
from ..settings import Settings
from . import profile_serve_cmd
from . import profile_tools as tools
from .common import console, fmt_ms, print_json, seed_option, user_errors, path_text

app = typer.Typer(help="Profile kernel or model variants, or a server under load; writes a run directory (run.json + raw artifacts).",
                  no_args_is_help=True)
app.command("serve")(profile_serve_cmd.serve)

def child_command(args: list[str], out: Path) -> list[str]:
    """The profile command to re-run under nsys / ncu: the same workload, no tool flags, its
    own run directory, JSON output (nothing to read on a terminal)."""
    return [sys.executable, "-m", "infertune", "profile", *args, "--out", str(out), "--json"]


def _common_run(kind: str, name: str, target: tuple[Path, str]) -> tuple[Path, dict[str, Any]]:
    path = make_dir(*target)
    env = collect_environment().to_dict()
    return path, skeleton(kind, name, ["infertune", *sys.argv[1:]], env)


def _finish(path: Path, run: dict[str, Any], *, workload, args: list[str], nsys: bool, ncu: bool,
            torch_trace: bool, telemetry: bool, device) -> None:
    """Run `workload()` (which fills run["measurements"] or run["models"]) under the requested
    in-process tools, then the out-of-process ones; write run.json."""
    run["peaks"] = device_peaks(device, None)
    with tools.telemetry_sampler(telemetry, path, run), tools.torch_trace(torch_trace, path, run, device):
        workload()
    child = child_command(args, path / "child")
    if nsys:
        run["profilers"]["nsys"] = tools.run_nsys(child, path / "nsys", run)
    if ncu:
        run["profilers"]["ncu"] = tools.run_ncu(child, path / "ncu", run)
    for row in run["measurements"] + run["models"]:
        row.pop("window", None)  # absolute perf_counter times mean nothing outside this process
        if row.get("telemetry_flags"):
            run["notes"].append(f"{row['variant']}: measured while {', '.join(row['telemetry_flags'])}")
    ran_kernels = any(r["variant"] != "torch" for r in run["measurements"]) or any(
        not r["variant"].endswith(":torch") for r in run["models"])
    if device.interpreter and ran_kernels:
        run["notes"].append("Triton ran through its CPU interpreter: timings are CPU wall clock and say nothing "
                            "about GPU speed")
    write_run(path, run)


@app.command("kernel")
@user_errors
def kernel(
    name: str = typer.Argument(..., help="Kernel name (see `infertune kernels`)."),
    shape: str = typer.Option(..., "--shape", help="e.g. 16x4096x4096"),
    dtype: str = typer.Option(None, "--dtype", help="fp32, fp16 or bf16 (default bf16 where it runs)."),
    quant: str = typer.Option(None, "--quant", help="Quantization scheme of a quantized kernel."),
    opt: list[str] = typer.Option([], "--opt", help="Problem options KEY=VALUE."),
    variants: str = typer.Option("torch,default,tuned", "--variants",
                                 help="torch, default, tuned and/or KEY=VALUE,... configs (comma-separated)."),
    db: str = typer.Option(None, "--db", help="Tuned config database for the tuned variant."),
    seed: int = seed_option(),  # noqa: B008 - a typer.Option, as every default here
    nsys: bool = typer.Option(False, "--nsys", help="Re-run under Nsight Systems: GPU time per kernel and NVTX range."),
    ncu: bool = typer.Option(False, "--ncu", help="Re-run under Nsight Compute: SOL, occupancy, launch stats."),
    torch_trace: bool = typer.Option(False, "--torch-trace", help="Write a torch.profiler chrome trace."),
    telemetry: bool = typer.Option(False, "--telemetry", help="Sample clocks, power, temperature with NVML."),
    out: str = typer.Option(None, "--out", help="Run directory (default runs/<time>-<kernel>/)."),
    json_output: bool = typer.Option(False, "--json", help="Print run.json instead of tables."),
) -> None:
    """Profile one kernel problem across variants (baseline: the torch op)."""
    target = run_dir_path(out, name)  # checked writable before any work
    given_db(db)
    spec = kernel_library.get(name)
    device = current_device()
    options = parse_options(opt)
    if quant is not None:
        options["quant"] = quant
    problem = problem_from_text(spec, shape, dtype, options, device)
    chosen = parse_kernel_variants(variants)
    settings = Settings.from_env()
    path, run = _common_run("profile-kernel", f"{spec.name}", target)
    run["variants"] = [v.name for v in chosen]
    run["baseline"] = "torch" if any(v.name == "torch" for v in chosen) else None

    def workload() -> None:
        rows, notes = profile_kernel(spec, problem, chosen, device, settings=settings, seed=seed,
                                     db=db or settings.db, peaks=run["peaks"], annotate=tools.annotate)
        run["measurements"] = rows
        run["notes"] += notes

    args = ["kernel", spec.name, "--shape", shape, "--dtype", problem.dtype, "--variants", variants, "--seed", str(seed)]
    args += [f"--opt={o}" for o in opt] + (["--quant", quant] if quant else []) + (["--db", db] if db else [])
    _finish(path, run, workload=workload, args=args, nsys=nsys, ncu=ncu, torch_trace=torch_trace,
            telemetry=telemetry, device=device)
    if json_output:
        print_json(run)
        return
    _kernel_table(run)
    _footer(run, path)


@app.command("model")
@user_errors
def model(
    name: str = typer.Argument(..., help="Built-in model (`infertune models`) or a path."),
    variants: str = typer.Option(None, "--variants", help="Model variants, e.g. bf16,bf16+w8,bf16+w4g128 "
                                 "(default: bf16 on a GPU, fp32 elsewhere)."),
    batch: str = typer.Option("1", "--batch", help="Batch sizes, e.g. 1,8."),
    prompt_len: int = typer.Option(128, "--prompt-len", min=1, help="Prompt tokens per sequence."),
    gen: int = typer.Option(64, "--gen", min=1, help="Tokens generated per sequence."),
    db: str = typer.Option(None, "--db", help="Tuned config database for triton variants."),
    quality: bool = typer.Option(True, "--quality/--no-quality", help="Decoders: perplexity and KL against the first "
                                 "float variant on the built-in text (128 tokens, all logits: slow in the interpreter)."),
    nsys: bool = typer.Option(False, "--nsys"),
    ncu: bool = typer.Option(False, "--ncu"),
    torch_trace: bool = typer.Option(False, "--torch-trace"),
    telemetry: bool = typer.Option(False, "--telemetry"),
    out: str = typer.Option(None, "--out", help="Run directory (default runs/<time>-<model>/)."),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Profile a decoder's prefill and decode across variants and batch sizes."""
    target = run_dir_path(out, Path(name).name)  # checked writable before any work
    given_db(db)
    device = current_device()
    chosen = parse_model_variants(given(variants, "--variants") or ("bf16" if device.kind == "cuda" else "fp32"),
                                  gpu=device.kind == "cuda")
    batches = parse_sizes(batch, "--batch")
    config = preset_config(name)
    if config is not None:  # a path's config is checked once loaded
        check_lengths(name, config, prompt_len=prompt_len, gen=gen)
        for size in batches:
            check_memory(name, config, device, batch=size, prompt_len=prompt_len, gen=gen)
    elif not Path(name).expanduser().exists():  # before the run directory is made
        raise UsageError(f"unknown model {name!r}: not a built-in model nor an existing path")
    settings = Settings.from_env()
    path, run = _common_run("profile-model", Path(name).name, target)
    run["variants"] = [str(v) for v in chosen]
    run["baseline"] = str(chosen[0])

    def workload() -> None:
        rows, notes = profile_model(name, chosen, device, batches=batches, prompt_len=prompt_len, gen=gen,
                                    db=db or settings.db, annotate=tools.annotate, quality=quality)
        run["models"] = rows
        run["notes"] += notes

    args = ["model", name, "--variants", ",".join(run["variants"]), "--batch", batch, "--prompt-len", str(prompt_len),
            "--gen", str(gen)] + (["--db", db] if db else []) + ([] if quality else ["--no-quality"])
    _finish(path, run, workload=workload, args=args, nsys=nsys, ncu=ncu, torch_trace=torch_trace,
            telemetry=telemetry, device=device)
    if json_output:
        print_json(run)
        return
    _model_table(run)
    _footer(run, path)


def _pct(x) -> str:
    return f"{x:.1f}%" if x is not None else "-"


def _kernel_table(run: dict[str, Any]) -> None:
    rows = run["measurements"]
    if not rows:
        return
    base = run.get("baseline")
    table = Table(title=f"{rows[0]['kernel']} {rows[0]['problem']} on {run['environment']['device']['label']}"
                        + (f" — baseline: {base} ({next((r['baseline_name'] for r in rows if r['variant'] == base), '')})"
                           if base else ""))
    for col in ("variant", "p50", "p10-p90", "TFLOP/s", "GB/s", "% peak F", "% peak B", "bound", "speedup", "ok"):
        table.add_column(col, justify="left" if col == "variant" else "right", overflow="fold")
    for r in rows:
        t = r["timing"]
        ok = "" if r["accuracy"] is None else ("yes" if r["accuracy"]["ok"] else "WRONG")
        speed = f"{r['speedup_vs_baseline']:.2f}x" if r["speedup_vs_baseline"] else "-"
        table.add_row(r["variant"] + (f" ({r['config_source']})" if r["config_source"] else ""), fmt_ms(t["median_ms"]),
                      f"{fmt_ms(t['p10_ms'])}-{fmt_ms(t['p90_ms'])}", f"{r['tflops']:.2f}", f"{r['gbps']:.1f}",
                      _pct(r["pct_peak_flops"]), _pct(r["pct_peak_bandwidth"]), r["bound"], speed, ok)
    console.print(table)
    for r in rows:
        if r["config"]:
            console.print(f"  {r['variant']}: {r['config']}")


def _model_table(run: dict[str, Any]) -> None:
    rows = run["models"]
    if not rows:
        return
    base = {(r["batch"]): r for r in rows if r["variant"] == run["baseline"]}
    table = Table(title=f"{rows[0]['model']} on {run['environment']['device']['label']} — baseline: {run['baseline']}")
    encoder = any("embeddings_per_s" in r for r in rows)
    cols = ("variant", "batch", "tokens/s", "embeddings/s", "vs baseline", "weights MiB", "configs") if encoder else (
        "variant", "batch", "prefill tok/s", "decode tok/s", "ms/token", "vs baseline", "weights MiB", "ppl", "KL",
        "configs")
    for col in cols:
        table.add_column(col, justify="left" if col in ("variant", "configs") else "right", overflow="fold")
    for r in rows:
        b = base.get(r["batch"])
        if encoder:
            vs = r["embeddings_per_s"] / b["embeddings_per_s"] if b and b.get("embeddings_per_s") else None
            table.add_row(r["variant"], str(r["batch"]), f"{r['prefill_tokens_per_s']:,.1f}",
                          f"{r['embeddings_per_s']:,.1f}", f"{vs:.2f}x" if vs else "-", f"{r['weight_bytes'] / 2**20:,.1f}",
                          sources_text(r.get("config_sources"), r.get("config_marks")))
            continue
        vs = r["decode_tokens_per_s"] / b["decode_tokens_per_s"] if b and b["decode_tokens_per_s"] else None
        q = r.get("quality") or {}
        sources = sources_text(r.get("config_sources"), r.get("config_marks"))
        table.add_row(r["variant"], str(r["batch"]), f"{r['prefill_tokens_per_s']:,.1f}",
                      f"{r['decode_tokens_per_s']:,.1f}", f"{r['ms_per_token']:.2f}" if r["ms_per_token"] else "-",
                      f"{vs:.2f}x" if vs else "-", f"{r['weight_bytes'] / 2**20:,.1f}",
                      f"{q['ppl']:.3f}" if q.get("ppl") else "-",
                      f"{q['kl_vs_float']:.4f}" if q.get("kl_vs_float") is not None else "-", sources)
    console.print(table)


def _footer(run: dict[str, Any], path: Path) -> None:
    for tool, result in run["profilers"].items():
        console.print(f"{tool}: {result['status']}" + (f" ({result['reason']})" if result.get("reason") else ""))
    telemetry = run["telemetry"]
    if telemetry.get("available"):
        flags = ", ".join((telemetry.get("summary") or {}).get("flags") or []) or "steady"
        console.print(f"telemetry: {flags}")
    elif telemetry.get("reason") != "not requested":
        console.print(f"telemetry: unavailable ({telemetry.get('reason')})")
    for note in run["notes"]:
        console.print(f"[yellow]{note}[/]")
    console.print(f"run directory: {path_text(path)}")
