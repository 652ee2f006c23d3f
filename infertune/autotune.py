"""Autotuning wired together: a problem, the isolated worker, the persistent study and the
tuned config database. The library behind `infertune autotune`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kernels.device import DeviceInfo
from kernels.spec import KernelSpec, Problem
from tuner.database import open_database
from tuner.precompile import CompilePool
from tuner.record import TuningRecord
from tuner.replay import Recording, RecordingEvaluator, ReplayEvaluator
from tuner.search import Progress, SearchOptions, TuneResult, to_record, tune
from tuner.worker import TimingPolicy, Worker, WorkerEvaluator

from .settings import Settings


def studies_storage(db: str) -> str:
    """The Optuna storage beside the database: `<db>.studies.db` for an SQLite file, the same
    server for a database URL (Optuna keeps its own tables there)."""
    if "://" in db:
        if db.startswith("sqlite:///"):
            return f"{db}.studies.db"
        return db
    path = Path(db).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}.studies.db"


def timing_policy(settings: Settings, device: DeviceInfo, *, cuda_graph: bool = False) -> TimingPolicy:
    """The worker's timing bounds; `cuda_graph` times CUDA-graph replays (a GPU only: the
    worker's measure raises "CUDA-graph timing needs a GPU" elsewhere)."""
    min_reps = settings.min_reps if device.kind == "cuda" else settings.min_reps_cpu
    return TimingPolicy(warmup_ms=settings.warmup_ms, rep_ms=settings.rep_ms, min_reps=min_reps,
                        cuda_graph=cuda_graph)


def autotune_problem(spec: KernelSpec, problem: Problem, device: DeviceInfo, *, storage: str | None,
                     options: SearchOptions, trial_timeout_s: float, settings: Settings,
                     on_trial: Callable[[Progress], None] | None = None, record_to: str | None = None,
                     record_prior: Recording | None = None,
                     replay: Recording | None = None, cuda_graph: bool = False,
                     worker: Worker | None = None,
                     compile_pool: CompilePool | None = None) -> tuple[TuneResult, TuningRecord | None]:
    """Search one problem in a fresh worker; returns the result and its database record
    (None when no config passed, or when the search was interrupted: a partial search is
    not a tuned result, though every measurement stays in the study).

    record_to: also write every measured config to this replay file (use the grid sampler
        and an in-memory study so that every valid config is measured).
    record_prior: with record_to, an earlier partial recording of this problem that this run
        completes (pass its configs as options.skip_configs): the file written holds both.
    replay: answer trials from this recording instead of running kernels; no record is made.
    worker: a tuner.worker.Worker to run in (kept open for the caller's next problem);
        None starts one for this problem and closes it after.
    cuda_graph: time CUDA-graph replays (raises ValueError "CUDA-graph timing needs a GPU"
        on a device that is not CUDA).
    options.compile_workers: > 0 compiles proposals ahead of time in that many extra workers
        (tuner/precompile.py; disabled under the Triton interpreter).
    compile_pool: a pool shared across problems (retargeted to this one, kept open for the
        caller); None starts one for this problem when options.compile_workers > 0.
    """
    if replay is not None:
        result = tune(spec, problem, replay.device, ReplayEvaluator(replay), storage=storage, options=options,
                      on_trial=on_trial)
        return result, None
    if cuda_graph and device.kind != "cuda":
        raise ValueError("CUDA-graph timing needs a GPU")
    evaluator = WorkerEvaluator(spec.name, problem, seed=options.seed,
                                policy=timing_policy(settings, device, cuda_graph=cuda_graph),
                                trial_timeout_s=trial_timeout_s)
    if worker is not None:  # a worker shared across problems (model tuning): started once, ~2-5 s saved each
        evaluator.worker = worker
    runner = RecordingEvaluator(evaluator, spec, problem, device, record_prior) if record_to else evaluator
    own_pool = compile_pool is None and options.compile_workers > 0
    pool = compile_pool
    if pool is not None:
        pool.retarget(spec.name, problem, seed=options.seed)
    elif own_pool:
        pool = evaluator.compile_pool(options.compile_workers, interpreter=device.interpreter)
    try:
        result = tune(spec, problem, device, runner, storage=storage, options=options, on_trial=on_trial,
                      compile_pool=pool)
    finally:
        if worker is None:
            evaluator.close()
        if own_pool and pool is not None:
            pool.close()
    if record_to and not result.interrupted:
        runner.recording.save(record_to)
    record = None if result.interrupted else to_record(spec, result, device)
    return result, record


def save_records(db: str, records: list[TuningRecord]) -> int:
    """Write `records` to the database at `db`; returns how many rows changed.
    Raises tuner.database.DatabaseError."""
    with open_database(db, create=True) as database:
        return database.put_many(records)


def tuning_run(results: list[TuneResult], specs: dict[str, KernelSpec], *, name: str, out: str | None,
               device: DeviceInfo, db: str, notes: list[str], interrupted: bool = False,
               extra_tuning: list[dict] | None = None, sections: dict | None = None):
    """Write the run directory of a tuning run (kind "autotune"): per problem the torch
    baseline, default and tuned timings as measurements, and the whole search (trials,
    failures, best) under "tuning", after `extra_tuning` (e.g. a joint search's front), and
    `sections` as top-level keys of the run file. Returns its path."""
    import sys

    from .environment import collect_environment
    from .profiling import device_peaks, measurement_row, peak_values
    from .rundir import new_run_dir, skeleton, write_run

    path = new_run_dir(out, f"autotune-{name}")
    run = skeleton("autotune", name, ["infertune", *sys.argv[1:]], collect_environment().to_dict())
    run["peaks"] = device_peaks(device, db)
    run["variants"], run["baseline"] = ["torch", "default", "tuned"], "torch"
    for r in results:
        spec = specs[r.kernel]
        flops, nbytes = spec.flops(r.problem), spec.bytes_moved(r.problem)
        pf, pb = peak_values(run["peaks"], r.problem.dtype)
        rows = []
        for label, timing, config, source in (("torch", r.baseline, None, None),
                                              ("default", r.default, r.default_config, "heuristic"),
                                              ("tuned", r.best, r.best_config,
                                               "default kept" if r.default_kept else "search")):
            if timing is not None:
                rows.append(measurement_row(label, spec, r.problem, timing, config, source, None, flops, nbytes, pf, pb))
        base = rows[0] if rows and rows[0]["variant"] == "torch" else None
        for row in rows:
            row["speedup_vs_baseline"] = (base["timing"]["median_ms"] / row["timing"]["median_ms"]
                                          if base and row["timing"]["median_ms"] > 0 else None)
        run["measurements"] += rows
    run["tuning"] = list(extra_tuning or []) + [r.to_dict() for r in results]
    run.update(sections or {})  # e.g. "confirmation": the end-to-end check of the new records
    run["notes"] += notes + (["interrupted: the studies keep every measurement; rerun to continue"]
                             if interrupted else [])
    if any(r.interpreter for r in results):
        run["notes"].append("Triton ran through its CPU interpreter: timings are CPU wall clock and say nothing "
                            "about GPU speed")
    write_run(path, run)
    return path
