"""`infertune autotune matmul --shape MxNxK --quant all|LIST [--min-sqnr DB]`: the joint
search of weight-quantization scheme and tile config, and its table."""

from __future__ import annotations

import typer
from rich.table import Table

import kernels as kernel_library
from kernels.device import DeviceInfo
from kernels.spec import KernelSpec, parse_shape
from tuner.quant_search import JOINT_SAMPLERS, QuantTuneResult, SchemeError, candidates
from tuner.search import SearchOptions

from ..autotune import save_records, studies_storage, timing_policy
from ..benchmark import INTERPRETER_NOTE
from ..errors import UsageError
from ..problems import default_dtype, parse_options
from ..quant_autotune import LINEAR_KERNELS, autotune_quant
from ..settings import Settings
from .autotune_shared import check_destinations, drop_if_empty, status
from .common import console, fmt_ms, print_json, path_text


def tune_schemes(spec: KernelSpec, shapes: list[str] | None, dtype: str | None, quant: str, opt: list[str],
                 device: DeviceInfo, settings: Settings, *, trials: int, sampler: str, seed: int,
                 timeout: float | None, retime: int, trial_timeout: float, cuda_graph: bool, db: str | None,
                 storage: str | None, no_save: bool, min_sqnr: float | None, json_output: bool,
                 out: str | None = None) -> None:
    """Check the input, then search every --shape's schemes and configs; retime > 0 re-times
    each scheme's fastest configs before the front is drawn; cuda_graph times CUDA-graph replays."""
    if spec.name not in LINEAR_KERNELS:
        raise UsageError(f"--quant {quant} searches weight-quantization schemes of a linear layer; "
                         f"use one of {', '.join(LINEAR_KERNELS)}, not {spec.name}")
    if sampler not in JOINT_SAMPLERS:
        raise UsageError(f"the joint quantization search runs --sampler {' or '.join(JOINT_SAMPLERS)}, not {sampler}")
    if not shapes:
        raise UsageError("give at least one --shape MxNxK (the layer: M tokens, N outputs, K inputs)")
    options = parse_options(opt)
    unknown = sorted(set(options) - {"bias"})
    if unknown:
        raise UsageError(f"the joint quantization search takes only the option bias=0|1, not {unknown[0]}")
    bias = options.get("bias", "0") == "1"
    dtype = dtype or default_dtype(kernel_library.get("matmul_w8a16"), device)
    db = db or settings.db
    storage = storage or studies_storage(db)
    search = SearchOptions(trials=trials, sampler=sampler, seed=seed, timeout_s=timeout, retime_top=retime)
    layers = []  # every shape checked before anything runs
    for text in shapes:
        try:
            layers.append((text, candidates(quant, parse_shape(text, ("M", "N", "K")), dtype, bias, device,
                                            kernel_library.get)))
        except SchemeError as exc:
            raise UsageError(str(exc)) from None
    # Every destination checked and made before the first trial (a bad --db or --out found
    # after the search would waste it).
    run_dir = check_destinations(db=db, save=not no_save, storage=storage, out=out,
                                 run_dir_name="autotune-" + _run_name(parse_shape(shapes[0], ("M", "N", "K"))))
    if device.interpreter:
        status.print(f"[yellow]warning: {INTERPRETER_NOTE}; the latencies are CPU results.[/]")
    results, records = [], []
    try:
        for text, cands in layers:

            def progress(scheme, config, outcome, done, _text=text):
                what = f"{outcome.float_sqnr_db:.1f} dB" if outcome.float_sqnr_db is not None else outcome.kind or outcome.status
                ms = fmt_ms(outcome.timing.median_ms) if outcome.timing else "-"
                if not json_output:
                    status.print(f"[dim]{_text} {done}/{trials} {scheme} {config}: {ms} {what}[/]")

            result, tuned = autotune_quant(cands, device, storage=storage, options=search,
                                           policy=timing_policy(settings, device, cuda_graph=cuda_graph),
                                           trial_timeout_s=trial_timeout,
                                           min_sqnr_db=min_sqnr, on_trial=progress)
            results.append(result)
            records += tuned
            if result.interrupted:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        if out is None:
            drop_if_empty(run_dir)
        _report(results, db, None, json_output, note=f"interrupted: every measurement is kept in {storage}; "
                "run the same command again to continue")
        raise typer.Exit(130) from None
    written = save_records(db, records) if records and not no_save else None
    run_dir = _write_run(results, run_dir, device, db)
    _report(results, db, written, json_output, run_dir=run_dir)
    if min_sqnr is not None and any(r.chosen is None for r in results):
        raise typer.Exit(1)  # asked for a winner and there is none: say so in the exit status too


def _run_name(shape: dict[str, int]) -> str:
    return "quant-" + "x".join(str(v) for v in shape.values())


def _write_run(results: list[QuantTuneResult], run_dir, device: DeviceInfo, db: str):
    """The run directory: each scheme's tuned result as the plain search writes it, and the
    joint search (points, front, pick) under tuning[].quant_search."""
    if not results:
        return None
    from ..autotune import tuning_run

    per_scheme = [t for r in results for t in r.per_scheme.values()]
    specs = {t.kernel: kernel_library.get(t.kernel) for t in per_scheme}
    return tuning_run(per_scheme, specs, name=_run_name(results[0].shape), out=str(run_dir), device=device, db=db,
                      notes=[], extra_tuning=[{"quant_search": r.to_dict()} for r in results])


def _report(results: list[QuantTuneResult], db: str, written: int | None, json_output: bool, note: str | None = None,
            run_dir=None):
    if json_output:
        print_json({"quant_search": [r.to_dict() for r in results], "database": db, "records_written": written,
                    "run_dir": str(run_dir) if run_dir else None,
                    "interrupted": note is not None,
                    "note": INTERPRETER_NOTE if any(r.interpreter for r in results) else None})
        return
    for r in results:
        dims = "x".join(str(v) for v in r.shape.values())
        table = Table(title=f"weight quantization for a {dims} {r.dtype} linear layer on {r.device} "
                            f"({r.sampler}, seed {r.seed})")
        for col in ("scheme", "kernel", "p50", "p10-p90", "SQNR dB", "vs float", "front"):
            table.add_column(col, overflow="fold", justify="left" if col in ("scheme", "kernel") else "right")
        order = sorted(r.per_scheme, key=lambda s: r.per_scheme[s].best.median_ms if r.per_scheme[s].best else 1e30)
        for s in order:
            t = r.per_scheme[s]
            mark = ("chosen" if s == r.chosen else "yes") if s in r.front else ""
            vs = f"{t.speedup_over_baseline:.2f}x" if t.speedup_over_baseline else "-"
            sq = f"{r.sqnr_db[s]:.1f}" if s in r.sqnr_db else "-"
            span = f"{fmt_ms(t.best.p10_ms)}-{fmt_ms(t.best.p90_ms)}" if t.best else "-"
            table.add_row(s, t.kernel, fmt_ms(t.best.median_ms) if t.best else "failed", span, sq, vs, mark)
        base = fmt_ms(r.baseline.median_ms) if r.baseline else "-"
        table.add_row("float", "torch.matmul", base, "", "", "1.00x", "baseline")
        console.print(table)
        for s in order:
            t = r.per_scheme[s]
            console.print(f"  {s}: {t.best_config or t.default_failure or '-'}")
        failures = ", ".join(f"{k} {v}" for k, v in r.failures.items()) or "none"
        console.print(f"trials: {r.trials_run} run now, {r.trials_total} in the study; failures: {failures}; "
                      f"{r.rejected_invalid} invalid proposals rejected before compiling")
        if r.min_sqnr_db is not None:
            if r.chosen:
                console.print(f"chosen at --min-sqnr {r.min_sqnr_db:g} dB: [bold]{r.chosen}[/] "
                              f"({r.sqnr_db[r.chosen]:.1f} dB, {fmt_ms(r.per_scheme[r.chosen].best.median_ms)})")
            else:
                best = max(r.sqnr_db.values(), default=None)
                console.print(f"[red]no scheme on the front reaches {r.min_sqnr_db:g} dB"
                              + (f" (the most accurate reaches {best:.1f} dB)" if best is not None else "") + "[/]")
    if note:
        console.print(f"[yellow]{note}[/]")
    elif written is None:
        console.print("database: not written")
    else:
        console.print(f"database: {written} record(s) written to {path_text(db)}")
    if any(r.interpreter for r in results):
        console.print(f"[yellow]{INTERPRETER_NOTE}.[/]")
    if run_dir is not None:
        console.print(f"run directory: {path_text(run_dir)}", soft_wrap=True, markup=False)
