"""`infertune autotune`: search a kernel's configs for one or more problems and store the winners."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

import kernels as kernel_library
from kernels.device import current_device
from kernels.scheme_names import canonical_scheme
from tuner.precompile import CompilePool
from tuner.quant_search import SCHEMES as QUANT_SCHEMES
from tuner.replay import load as load_replay
from tuner.samplers import SAMPLERS
from tuner.search import NoValidConfig, SearchOptions, TuneResult
from tuner.search import Progress as TrialProgress
from tuner.space import Space
from tuner.worker import Worker

from ..autotune import autotune_problem, save_records, studies_storage, tuning_run
from ..benchmark import INTERPRETER_NOTE
from ..errors import UsageError
from ..model_autotune import model_problems, parse_sizes
from ..problems import default_dtype, parse_options, problem_from_text
from ..quant_autotune import is_joint
from ..settings import Settings
from .autotune_quant import tune_schemes
from .autotune_shared import (
    check_destinations,
    drop_if_empty,
    given_flags,
    refuse_flags,
    status,
)
from .common import console, fmt_ms, print_json, seed_option, user_errors, path_text

# Every flag of the command, by parameter name, as the user spells it.
FLAGS = {
    "kernel": "KERNEL", "shape": "--shape", "dtype": "--dtype", "quant": "--quant", "opt": "--opt",
    "trials": "--trials", "sampler": "--sampler", "seed": "--seed", "timeout": "--timeout", "retime": "--retime",
    "trial_timeout": "--trial-timeout", "db": "--db", "storage": "--storage", "no_save": "--no-save",
    "record": "--record", "replay": "--replay", "model": "--model", "batch": "--batch", "seq": "--prompt-len",
    "gen": "--gen", "cuda_graph": "--cuda-graph", "compile_workers": "--compile-workers",
    "quant_plan": "--quant-plan", "max_ppl_increase": "--max-ppl-increase", "out": "--out",
    "min_sqnr": "--min-sqnr", "json_output": "--json", "traffic": "--traffic", "buckets": "--buckets",
    "max_batch": "--max-batch", "confirm": "--confirm", "warm_start": "--warm-start",
    "confirm_transferred": "--confirm-transferred",
}
_ISSUE14 = ("traffic", "buckets", "max_batch", "confirm", "warm_start", "confirm_transferred")
# The flags each mode has no use for: given there, they are refused (exit 2), never ignored.
REFUSED = {
    "plan": ("kernel", "shape", "quant", "opt", "timeout", "retime", "trial_timeout", "no_save", "record", "replay",
             "batch", "seq", "gen", "cuda_graph", "compile_workers", "min_sqnr", *_ISSUE14),
    "model": ("shape", "opt", "record", "replay", "min_sqnr", "max_ppl_increase", "buckets", "max_batch",
              "confirm_transferred"),
    "traffic": ("shape", "opt", "record", "replay", "min_sqnr", "max_ppl_increase", "batch", "seq", "confirm",
                "confirm_transferred"),
    "quant": ("record", "replay", "model", "batch", "seq", "gen", "compile_workers", "max_ppl_increase", *_ISSUE14),
    "kernel": ("batch", "seq", "gen", "min_sqnr", "max_ppl_increase", "traffic", "buckets", "max_batch", "confirm",
               "confirm_transferred"),
    "transferred": ("shape", "dtype", "quant", "opt", "record", "replay", "model", "batch", "seq", "gen", "no_save",
                    "min_sqnr", "max_ppl_increase", "quant_plan", "traffic", "buckets", "max_batch", "confirm",
                    "warm_start", "cuda_graph"),
}
MODE_NAMES = {"plan": "--quant-plan (the per-layer plan search)", "model": "--model (a model's kernel problems)",
              "traffic": "--model with --traffic (traffic-aware buckets)",
              "transferred": "--confirm-transferred (re-measuring transferred records)",
              "quant": "--quant all|LIST (the joint scheme search)", "kernel": "a kernel search (KERNEL --shape)"}


@user_errors
def autotune(
    ctx: typer.Context,
    kernel: str = typer.Argument(None, help="Kernel name (see `infertune kernels`); with --model, only this kernel's problems."),
    shape: list[str] = typer.Option(None, "--shape", help="16x4096x4096 or M=16,N=4096,K=4096; repeat for more problems."),
    dtype: str = typer.Option(None, "--dtype", help="fp32, fp16 or bf16 (default: bf16 where it runs)."),
    quant: str = typer.Option(None, "--quant", help="Quantization scheme for quantized kernels, e.g. int4-g128 "
                              "(aliases: w8 = int8, w4g128 = int4-g128, fp8 = fp8-row); all or a comma list "
                              "searches schemes jointly."),
    opt: list[str] = typer.Option([], "--opt", help="Problem options KEY=VALUE, e.g. bias=1."),
    trials: int = typer.Option(100, "--trials", min=1, help="Configs to run per problem in this invocation."),
    sampler: str = typer.Option("tpe", "--sampler", help=f"Search strategy: {', '.join(SAMPLERS)}."),
    seed: int = seed_option("the sampler and of the inputs"),
    timeout: float = typer.Option(None, "--timeout", min=0, help="Wall-clock budget per problem, seconds."),
    retime: int = typer.Option(3, "--retime", min=0, help="Re-time this many of the best configs before choosing "
                               "the winner (0: the study's best wins as measured)."),
    trial_timeout: float = typer.Option(120.0, "--trial-timeout", min=0.1,
                                        help="Seconds one config may take (compile, check, time) before its worker is replaced."),
    db: str = typer.Option(None, "--db", help="Tuned config database (path or SQLAlchemy URL); default INFERTUNE_DB, else per-user."),
    storage: str = typer.Option(None, "--storage", help="Optuna storage URL of the studies; default <db>.studies.db."),
    no_save: bool = typer.Option(False, "--no-save", help="Do not write the winners to the database."),
    record: str = typer.Option(None, "--record", help="With --sampler grid and one --shape: measure every valid config once and write them to this replay file."),
    replay: str = typer.Option(None, "--replay", help="Answer trials from this replay file instead of running kernels (nothing is stored)."),
    model: str = typer.Option(None, "--model", help="Tune every (kernel, shape, dtype) this built-in model launches "
                              "(see runtime presets: smollm2-135m, minilm-l6, llama-3.2-1b, llama-3-8b)."),
    batch: str = typer.Option(None, "--batch", help="With --model: sequences per forward pass, one or more, "
                              "e.g. 1,8,64 (default 1)."),
    seq: int = typer.Option(None, "--prompt-len", "--seq", min=1, help="With --model: prompt tokens per sequence "
                            "(default 128; --seq is an alias)."),
    gen: int = typer.Option(128, "--gen", min=0, help="With --model: tokens generated per sequence after the prompt "
                            "(sizes the KV cache)."),
    cuda_graph: bool = typer.Option(False, "--cuda-graph", help="Time CUDA-graph replays of each config (GPU only): "
                                    "what a decode loop captured in a graph pays, without launch overhead."),
    compile_workers: int = typer.Option(None, "--compile-workers", min=0, help="Processes compiling proposals ahead "
                                        "of timing (default: min(8, CPUs) on a GPU; 0 under the interpreter)."),
    quant_plan: bool = typer.Option(False, "--quant-plan", help="With --model: search per-layer weight schemes "
                                    "(quality loss vs weight bytes) and write the Pareto front and a chosen plan; "
                                    "takes --trials, --sampler tpe|random, --seed, --dtype, --db/--storage (the "
                                    "study, continued by a rerun), --out and --max-ppl-increase."),
    max_ppl_increase: str = typer.Option("2%", "--max-ppl-increase", help="With --quant-plan: the chosen plan's "
                                         "perplexity may exceed the float model's by this much (2% or 0.02)."),
    out: str = typer.Option(None, "--out", help="Run directory of this tuning run (default runs/<time>-autotune-"
                            "<name>/); --quant-plan writes front.json and plan.json there."),
    min_sqnr: float = typer.Option(None, "--min-sqnr", help="With --quant all or a list of schemes: pick the fastest "
                                   "scheme on the latency/SQNR Pareto front whose SQNR reaches this many dB."),
    traffic: str = typer.Option(None, "--traffic", help="With --model: a histogram of token counts per forward "
                                "pass (CSV or JSON; or raw request lengths with --max-batch); chooses M buckets and "
                                "one config each that minimise the expected latency under it."),
    buckets: int = typer.Option(4, "--buckets", min=1, help="With --traffic: how many M buckets per kernel problem."),
    max_batch: int = typer.Option(None, "--max-batch", min=1, help="With --traffic of raw request lengths: requests "
                                  "per forward pass (batched in arrival order, padded to the longest)."),
    confirm: bool = typer.Option(False, "--confirm", help="With --model: time the model's forward step with the new "
                                 "records against what they replace, interleaved; a record that does not improve "
                                 "it beyond noise is stored marked unconfirmed."),
    warm_start: str = typer.Option(None, "--warm-start", help="Start each search from the best configs of the "
                                   "nearest records of SOURCE: a device name in the database, another database, "
                                   "or an exported JSON."),
    confirm_transferred: bool = typer.Option(False, "--confirm-transferred", help="Measure this device's "
                                             "transferred records (see `infertune db transfer`) and replace them "
                                             "(KERNEL narrows it)."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Search tile configs with Optuna in an isolated worker; check, time, and store the winners.

    Re-running the same command continues the stored studies; no config is run twice.
    Ctrl-C keeps every measurement and prints the table so far.
    """
    if sampler not in SAMPLERS:
        raise UsageError(f"unknown sampler {sampler!r}; known samplers: {', '.join(SAMPLERS)}")
    if quant_plan and model is None:
        raise UsageError("--quant-plan searches a model's layers: give --model NAME")
    if model is None and given_flags(ctx, ("batch", "seq", "gen")):
        raise UsageError("--batch, --prompt-len and --gen describe a model's workload: give --model NAME too")
    if model is not None and not quant_plan and (shape or replay or record or is_joint(quant)):
        raise UsageError("--model takes its shapes from the model; leave out --shape, --record, --replay "
                         "and a list of --quant schemes")
    if is_joint(quant) and (replay or record):
        raise UsageError("--record and --replay take one kernel and scheme, not --quant with several schemes")
    if min_sqnr is not None and not quant_plan and not is_joint(quant):
        raise UsageError("--min-sqnr picks among quantization schemes: give --quant all or a list such as int8,int4-g128")
    if traffic is not None and model is None:
        raise UsageError("--traffic describes a model's serving traffic: give --model NAME too")
    if model is None and given_flags(ctx, ("buckets", "max_batch")):
        raise UsageError("--buckets and --max-batch go with --model NAME --traffic FILE")
    if confirm and model is None:
        raise UsageError("--confirm times a model's forward step: give --model NAME")
    mode = ("transferred" if confirm_transferred else "plan" if quant_plan else
            ("traffic" if traffic is not None else "model") if model is not None else
            "quant" if is_joint(quant) else "kernel")
    refuse_flags(ctx, {name: FLAGS[name] for name in REFUSED[mode]}, MODE_NAMES[mode])
    settings = Settings.from_env()
    device = current_device()
    if cuda_graph and device.kind != "cuda":
        raise UsageError(f"--cuda-graph needs a GPU; this device is {device.label}")
    if compile_workers is None:
        compile_workers = 0 if device.interpreter else min(8, os.cpu_count() or 1)
    if quant is not None and not is_joint(quant):
        quant = canonical_scheme(quant)  # "w4g128" is "int4-g128"
    if confirm_transferred:
        from .autotune_transferred import confirm_transferred as run_transferred

        return run_transferred(kernel=kernel, db=db or settings.db, device=device, settings=settings, trials=trials,
                               sampler=sampler, seed=seed, timeout=timeout, retime=retime,
                               trial_timeout=trial_timeout, storage=storage, out=out, json_output=json_output)
    if traffic is not None:
        if kernel is not None:
            kernel_library.get(kernel)  # an unknown kernel fails as such
        from .autotune_traffic import tune_traffic

        return tune_traffic(model=model, kernel=kernel, traffic=traffic, buckets=buckets, max_batch=max_batch, gen=gen,
                            dtype=dtype, quant=quant, trials=trials, sampler=sampler, seed=seed, timeout=timeout,
                            retime=retime, trial_timeout=trial_timeout, db=db or settings.db, storage=storage,
                            no_save=no_save, out=out, json_output=json_output, device=device, settings=settings,
                            compile_workers=compile_workers, warm_start=warm_start)
    if quant_plan:
        from .autotune_plan import tune_plan

        return tune_plan(model, trials=trials, sampler=sampler, seed=seed, dtype=dtype,
                         max_ppl_increase=max_ppl_increase, out=out, db=db or settings.db, storage=storage,
                         device=device, json_output=json_output)
    if model is not None:
        if kernel is not None:
            kernel_library.get(kernel)  # an unknown kernel fails as such
        batches = parse_sizes(batch or "1", "--batch")
        model_dtype = dtype or default_dtype(kernel_library.get("matmul"), device)
        targets = model_problems(model, batches=batches, seq=seq or 128, gen=gen, dtype=model_dtype, quant=quant,
                                 kernel=kernel)
        for spec, problem in targets:
            reason = spec.unsupported_reason(problem, device)
            if reason:
                raise UsageError(f"{spec.name} with {problem.dtype} is not supported on this device: {reason}")
    if kernel is None and model is None:
        raise UsageError("give a KERNEL (see `infertune kernels`) or --model NAME")
    spec = kernel_library.get(kernel) if kernel is not None else None
    if is_joint(quant):
        return tune_schemes(spec, shape, dtype, quant, opt, device, settings, trials=trials, sampler=sampler, seed=seed,
                            timeout=timeout, retime=retime, trial_timeout=trial_timeout, cuda_graph=cuda_graph,
                            db=db, storage=storage, no_save=no_save, min_sqnr=min_sqnr, json_output=json_output,
                            out=out)
    recording = None
    if model is not None:
        problems = targets
    elif replay is not None:
        if record is not None or shape:
            raise UsageError("--replay takes its problem from the file; leave out --shape and --record")
        replay_spec, recording = load_replay(replay, kernel_library.get)
        if replay_spec.name != spec.name:
            raise UsageError(f"{replay} holds {replay_spec.name}, not {spec.name}")
        problems = [(spec, recording.problem)]
    else:
        if not shape:
            raise UsageError("give at least one --shape (or --replay FILE)")
        options = parse_options(opt)
        if quant is not None:
            options.update(_quant_option(spec, quant))
        problems = [(spec, problem_from_text(spec, s, dtype, options, device)) for s in shape]
    if record is not None and (sampler != "grid" or len(problems) != 1):
        raise UsageError("--record needs --sampler grid and exactly one --shape")
    if record is not None:
        _check_file_destination(record, "--record")
    db = db or settings.db
    # A recording or a replay runs in an in-memory study: a stored study would skip (record)
    # or be polluted by (replay) configs it already holds.
    storage = None if record or replay else storage or studies_storage(db)
    if record is not None:
        trials = max(trials, spec.space_size)
    save = not no_save and replay is None
    # Every destination is checked (and made) now: a bad one found after the trials would
    # waste them, or send them somewhere the user did not ask for.
    # Read before any destination is made: a source that cannot be read leaves nothing behind.
    warm = _open_warm_source(warm_start, db) if warm_start is not None else None
    run_dir = check_destinations(db=db, save=save, storage=storage, out=out, run_dir_name=f"autotune-{model or kernel}")
    search = SearchOptions(trials=trials, sampler=sampler, seed=seed, timeout_s=timeout, retime_top=retime,
                           compile_workers=compile_workers)
    if device.interpreter and replay is None:
        status.print(f"[yellow]warning: {INTERPRETER_NOTE}; the tuned configs are CPU results.[/]")

    results: list[TuneResult] = []
    records = []
    shared = Worker() if len(problems) > 1 and replay is None else None  # one process for every problem
    # One compile pool for every problem too: its processes are problem-agnostic.
    shared_pool = CompilePool(problems[0][0].name, problems[0][1], seed=seed, workers=compile_workers,
                              timeout_s=trial_timeout, interpreter=device.interpreter) \
        if shared is not None and compile_workers > 0 else None
    try:
        for spec, problem in problems:
            with _progress(json_output) as bar:
                valid = len(Space(spec, problem, recording.device if recording else device))
                task = bar.add_task(f"{spec.name} {spec.shape_key(problem)}" if model else spec.shape_key(problem),
                                    total=min(trials, valid), fields="")
                options = search
                if warm is not None:
                    options = dataclasses.replace(search, warm_start=tuple(
                        warm.configs_for(spec, problem, recording.device if recording else device)))
                try:
                    result, tuned = autotune_problem(spec, problem, device, storage=storage, options=options,
                                                      trial_timeout_s=trial_timeout, settings=settings,
                                                      on_trial=lambda p, t=task, b=bar: _advance(b, t, p),
                                                      record_to=record, replay=recording, cuda_graph=cuda_graph,
                                                      worker=shared, compile_pool=shared_pool)
                except NoValidConfig as exc:
                    _close(shared, shared_pool)
                    if not results and out is None:
                        drop_if_empty(run_dir)
                    raise UsageError(str(exc)) from None
            results.append(result)
            if tuned is not None:
                records.append(tuned)
            if result.interrupted:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        _close(shared, shared_pool)
        if not results and out is None:
            drop_if_empty(run_dir)
        run_dir = _write_run(results, run_dir, model or kernel, device, db, interrupted=True)
        _report(results, db, written=None, json_output=json_output, note="interrupted: every measurement is kept in "
                f"the study ({storage}); run the same command again to continue" if storage else "interrupted",
                run_dir=run_dir)
        raise typer.Exit(130) from None
    _close(shared, shared_pool)
    confirmation = None
    if confirm and records:
        from ..confirm import confirm_records

        # Before saving: "what they replace" is what the database resolves today.
        confirmation = confirm_records(model, records, db=db, device=device, batches=batches, seq=seq or 128,
                                       gen=gen, dtype=model_dtype, quant=quant, seed=seed, settings=settings)
        records = list(confirmation.records)
    written = save_records(db, records) if records and save else 0
    sections = {"confirmation": confirmation.to_dict()} if confirmation is not None else None
    run_dir = _write_run(results, run_dir, model or kernel, device, db, sections=sections)
    _report(results, db, written=written if save else None, json_output=json_output, model=model, run_dir=run_dir,
            warm=warm, confirmation=confirmation)
    if record is not None:
        status.print(f"replay file written: {path_text(record)}")


def _close(*things) -> None:
    for thing in things:
        if thing is not None:
            thing.close()


def _progress(quiet: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[fields]}"),
                    TimeElapsedColumn(), console=status, disable=quiet, transient=False)


def _advance(bar: Progress, task, p: TrialProgress) -> None:
    parts = [f"failed {p.failures}"]
    if p.best_ms is not None:
        parts.append(f"best {fmt_ms(p.best_ms)}")
        if p.default_ms:
            parts.append(f"{p.default_ms / p.best_ms:.2f}x default")
    bar.update(task, completed=p.done, fields=" ".join(parts))


def _ms(t) -> str:
    return fmt_ms(t.median_ms) if t is not None else "-"


def _ratio(x: float | None) -> str:
    return f"{x:.2f}x" if x is not None else "-"


def _write_run(results: list[TuneResult], run_dir: Path, name: str, device, db: str, interrupted: bool = False,
               sections: dict | None = None):
    if not results:
        return None
    specs = {r.kernel: kernel_library.get(r.kernel) for r in results}
    return tuning_run(results, specs, name=name, out=str(run_dir), device=device, db=db, notes=[],
                      interrupted=interrupted, sections=sections)


def _open_warm_source(text: str, db: str):
    from tuner.warm_start import WarmStartError, open_warm_source

    try:
        return open_warm_source(text, db)
    except WarmStartError as exc:
        raise UsageError(str(exc)) from None


def _quant_option(spec, quant: str) -> dict[str, str]:
    """The problem option `--quant SCHEME` (canonical) sets on `spec`: its quant option where
    the kernel has one; none where the kernel runs that scheme only (int8 is matmul_w8a16's
    format); UsageError naming the kernel that runs it otherwise."""
    if any(o.name == "quant" for o in spec.options):
        return {"quant": quant}
    scheme = next((s for s in QUANT_SCHEMES if s.name == quant), None)
    if scheme is not None and scheme.kernel == spec.name:
        return {}
    own = [s.name for s in QUANT_SCHEMES if s.kernel == spec.name]
    where = f"; {quant} runs on {scheme.kernel}" if scheme is not None else ""
    raise UsageError(f"{spec.name} takes no --quant {quant}" + (f" (it runs {', '.join(own)})" if own else "") + where)


def _check_file_destination(path: str, flag: str) -> None:
    target = Path(path).expanduser()
    if target.is_dir():
        raise UsageError(f"{flag} {path!r} is a directory; give a file name")
    if not target.parent.is_dir():
        raise UsageError(f"{flag} {path!r}: its folder {str(target.parent)!r} does not exist")


def _report(results: list[TuneResult], db: str, *, written: int | None, json_output: bool, note: str | None = None,
            model: str | None = None, run_dir=None, warm=None, confirmation=None) -> None:
    if json_output:
        print_json({"results": [r.to_dict() for r in results], "database": db, "records_written": written,
                    "model": model, "interrupted": note is not None, "run_dir": str(run_dir) if run_dir else None,
                    "warm_start": warm.describe() if warm is not None else None,
                    "confirmation": confirmation.to_dict() if confirmation is not None else None,
                    "note": INTERPRETER_NOTE if any(r.interpreter for r in results) else None})
        return
    if model is not None:
        _model_table(model, results)
    for r in ([] if model is not None else results):
        table = Table(title=f"{r.kernel} {r.problem_key} on {r.device} ({r.sampler}, seed {r.seed})")
        for col in ("variant", "p50", "p10-p90", "vs default", "vs baseline"):
            table.add_column(col, overflow="fold", justify="left" if col == "variant" else "right")
        for label, timing in (("default", r.default), ("tuned", r.best)):
            speed = r.default.median_ms / timing.median_ms if timing and r.default else None
            vs_base = r.baseline.median_ms / timing.median_ms if timing and r.baseline else None
            table.add_row(label, _ms(timing), _ms_p(timing), _ratio(speed), _ratio(vs_base))
        table.add_row(r.baseline_name, _ms(r.baseline), _ms_p(r.baseline), "", "baseline")
        console.print(table)
        console.print(f"default config: {r.default_config or '-'}")
        console.print(f"tuned config:   {r.best_config or '-'}" +
                      (" (default kept: no searched config beat it when re-timed)" if r.default_kept else ""))
        failures = ", ".join(f"{k} {v}" for k, v in r.failures.items()) or "none"
        console.print(f"trials: {r.trials_run} run now, {r.trials_total} in the study of {r.valid_configs} valid configs; "
                      f"best at trial {r.trials_to_best or '-'}; failures: {failures}; "
                      f"{r.rejected_invalid} invalid proposals rejected before compiling")
        if r.default_failure:
            console.print(f"[red]the default config failed: {r.default_failure}[/]")
        if r.race:
            console.print(f"race: {r.race['rounds']} round(s), {r.race['stopped']}: {r.race['verdict'] or '-'}")
        if r.noise.get("guard"):
            console.print(f"noise guard: {r.noise['flagged']} flagged, {r.noise['remeasured']} re-measured, "
                          f"{r.noise['still_flagged']} kept flagged")
    if warm is not None:
        console.print(f"warm start: {warm.describe()}; {sum(r.warm_started for r in results)} config(s) enqueued "
                      "as first trials")
    if confirmation is not None:
        from .autotune_confirm import print_confirmation

        print_confirmation(confirmation, json_output)
    guard_off = next((r.noise.get("reason") for r in results if not r.noise.get("guard") and r.noise.get("reason")),
                     None)
    if guard_off:
        console.print(f"noise guard {guard_off}")
    elif model is not None and any(r.noise.get("flagged") for r in results):
        flagged = sum(r.noise.get("flagged", 0) for r in results)
        console.print(f"noise guard: {flagged} measurement(s) flagged and re-measured across the problems")
    if note:
        console.print(f"[yellow]{note}[/]")
    elif written is None:
        console.print("database: not written (--no-save or --replay)")
    else:
        console.print(f"database: {written} record(s) written to {path_text(db)}")
    if any(r.interpreter for r in results):
        console.print(f"[yellow]{INTERPRETER_NOTE}.[/]")
    if run_dir is not None:
        console.print(f"run directory: {path_text(run_dir)}", soft_wrap=True, markup=False)


def _model_table(model: str, results: list[TuneResult]) -> None:
    # One row per tuned problem: a model has dozens, a table each would scroll away.
    table = Table(title=f"{model}: {len(results)} kernel problems on {results[0].device if results else '-'}")
    # Seven columns, kernel and problem in one: readable at 80 columns.
    table.add_column("kernel, problem", overflow="fold", min_width=14)
    for col in ("default", "tuned", "vs dflt", "vs torch", "trials", "fail"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in results:
        vs_base = r.baseline.median_ms / r.best.median_ms if r.best and r.baseline else None
        tuned = _ms(r.best) + ("*" if r.default_kept else "")
        key = r.problem_key.replace(",", ", ").replace("|", " | ")
        table.add_row(f"{r.kernel} {key}", _ms(r.default), tuned, _ratio(r.speedup_over_default),
                      _ratio(vs_base), f"{r.trials_run}/{r.valid_configs}", str(sum(r.failures.values())))
    console.print(table)
    if any(r.default_kept for r in results):
        console.print("* default kept: no searched config beat it when raced")


def _ms_p(t) -> str:
    return f"{fmt_ms(t.p10_ms)}-{fmt_ms(t.p90_ms)}" if t is not None else "-"
