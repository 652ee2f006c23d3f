"""Autotuning wired together: a problem, the isolated worker, the persistent study and the
tuned config database. The library behind `infertune autotune`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kernels.device import DeviceInfo
from kernels.spec import KernelSpec, Problem
from tuner.database import open_database
from tuner.record import TuningRecord
from tuner.replay import Recording, RecordingEvaluator, ReplayEvaluator
from tuner.search import Progress, SearchOptions, TuneResult, to_record, tune
from tuner.worker import TimingPolicy, WorkerEvaluator

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


def timing_policy(settings: Settings, device: DeviceInfo) -> TimingPolicy:
    min_reps = settings.min_reps if device.kind == "cuda" else settings.min_reps_cpu
    return TimingPolicy(warmup_ms=settings.warmup_ms, rep_ms=settings.rep_ms, min_reps=min_reps)


def autotune_problem(spec: KernelSpec, problem: Problem, device: DeviceInfo, *, storage: str | None,
                     options: SearchOptions, trial_timeout_s: float, settings: Settings,
                     on_trial: Callable[[Progress], None] | None = None, record_to: str | None = None,
                     replay: Recording | None = None) -> tuple[TuneResult, TuningRecord | None]:
    """Search one problem in a fresh worker; returns the result and its database record
    (None when no config passed, or when the search was interrupted: a partial search is
    not a tuned result, though every measurement stays in the study).

    record_to: also write every measured config to this replay file (use the grid sampler
        and an in-memory study so that every valid config is measured).
    replay: answer trials from this recording instead of running kernels; no record is made.
    """
    if replay is not None:
        result = tune(spec, problem, replay.device, ReplayEvaluator(replay), storage=storage, options=options,
                      on_trial=on_trial)
        return result, None
    evaluator = WorkerEvaluator(spec.name, problem, seed=options.seed, policy=timing_policy(settings, device),
                                trial_timeout_s=trial_timeout_s)
    runner = RecordingEvaluator(evaluator, spec, problem, device) if record_to else evaluator
    try:
        result = tune(spec, problem, device, runner, storage=storage, options=options, on_trial=on_trial)
    finally:
        evaluator.close()
    if record_to and not result.interrupted:
        runner.recording.save(record_to)
    record = None if result.interrupted else to_record(spec, result, device)
    return result, record


def save_records(db: str, records: list[TuningRecord]) -> int:
    """Write `records` to the database at `db`; returns how many rows changed.
    Raises tuner.database.DatabaseError."""
    with open_database(db, create=True) as database:
        return database.put_many(records)
