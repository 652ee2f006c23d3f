"""The search: one persistent Optuna study per (kernel, problem, device).

`tune` drives the study with ask-and-tell so that it decides what a trial costs:

- a proposal that breaks a joint constraint is told FAILED ("invalid: <reason>") without
  compiling anything and does not count against `trials`;
- a proposal already measured in the study (this run, an earlier one, or another process
  sharing the study: the study is stored, `load_if_exists`) is answered from the stored trial
  and not run again, and does not count;
- several processes may drive one study (`--storage postgresql://...`): before each ask and
  again once the proposal is in storage, the trials finished since the last look are read
  (incrementally), and a proposal that another trial is RUNNING right now is told FAILED
  (`kind=taken`, `retry`) and skipped without counting, so no config is measured twice; a
  RUNNING trial older than `running_stale_s` is taken for abandoned (its process was killed);
- after `max_idle` such proposals in a row the next unmeasured valid config (seeded order)
  that no other process is running is enqueued, so a sampler stuck on measured configs
  cannot stall the search; a process stops once every valid config is measured or running;
- everything else runs in the isolated worker (tuner/worker.py): correctness first, then
  timing; a config whose first repetitions are `early_stop_factor` times slower than the
  best so far is stopped early (PRUNED, with its probe timing).

The heuristic default is the first config of a new study (it counts as a trial), the torch
baseline is timed once per run, and the best `retime_top` configs are re-timed before the
winner is chosen (a noisy lucky measurement does not win).
"""

from __future__ import annotations

import bisect
import inspect
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

import optuna
import torch
import triton
from optuna.trial import TrialState
from sqlalchemy import exc as sa_exc

from kernels.device import DeviceInfo
from kernels.spec import Config, KernelSpec, Problem
from profilers.timing import Timing

from . import outcome as oc
from .keys import device_class, kernel_source_hash, problem_bucket, quant_of
from .location import sqlalchemy_url
from .outcome import Outcome
from .record import TuningRecord
from .samplers import RETRY_ATTR, make_sampler
from .space import Space


class NoValidConfig(ValueError):
    """The spec's space holds no config that passes the constraints for this problem."""


class Evaluator(Protocol):
    """Runs configs of one problem: the isolated worker, or a replay of recorded results."""

    def evaluate(self, config: Config, stop_above_ms: float | None = None) -> Outcome: ...

    def baseline(self) -> Outcome: ...


@dataclass(frozen=True)
class SearchOptions:
    """Budgets and policy of one search.

    trials: configs to run in this invocation (the default included on a new study);
    timeout_s: wall-clock budget of this search, None for none, counted from when its worker
        and compile pool are up (start-up and the torch baseline are not in it); a running
        trial is cut when it runs out (evaluators whose `evaluate` takes `timeout_s`);
    compile_workers: >0 compiles batches of that many proposals in parallel ahead of timing
        (tuner/precompile.py); 0, or a pool that is disabled (the interpreter), runs the
        sequential search;
    running_stale_s: a trial of a shared study RUNNING for longer than this is taken to be
        abandoned (its process was killed), and its config may be run again.
    """

    trials: int = 100
    sampler: str = "tpe"
    seed: int = 0
    timeout_s: float | None = None
    early_stop_factor: float = 3.0
    retime_top: int = 3
    max_idle: int = 20
    running_stale_s: float = 3600.0
    compile_workers: int = 0


@dataclass(frozen=True)
class Progress:
    """Reported after every config the search runs."""

    done: int
    total: int
    failures: int
    best_ms: float | None
    default_ms: float | None
    config: Config
    outcome: Outcome


@dataclass
class TuneResult:
    """What one search found for one problem."""

    kernel: str
    problem: Problem
    problem_key: str
    device: str
    study_name: str
    sampler: str
    seed: int
    valid_configs: int
    space_size: int
    best_config: Config | None = None
    best: Timing | None = None
    default_config: Config | None = None
    default: Timing | None = None
    default_failure: str | None = None
    baseline_name: str = ""
    baseline: Timing | None = None
    trials_run: int = 0            # configs run by this invocation
    trials_total: int = 0          # configs run in the study, over all invocations
    trials_to_best: int | None = None
    failures: dict[str, int] = field(default_factory=dict)         # by kind, whole study
    failure_examples: list[dict[str, Any]] = field(default_factory=list)
    rejected_invalid: int = 0      # proposals rejected by the constraints in this invocation
    answered_from_study: int = 0   # proposals answered from earlier trials in this invocation
    taken_elsewhere: int = 0       # proposals skipped because another process was running them
    retimed: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    interpreter: bool = False
    # Every config run in the study, in run order: {"trial", "config", "state", "median_ms",
    # "kind", "reason"}: what best-so-far curves, importances and failure tables are drawn from.
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def speedup_over_default(self) -> float | None:
        if self.best and self.default and self.best.median_ms > 0:
            return self.default.median_ms / self.best.median_ms
        return None

    @property
    def speedup_over_baseline(self) -> float | None:
        if self.best and self.baseline and self.best.median_ms > 0:
            return self.baseline.median_ms / self.best.median_ms
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel, "problem": self.problem_key, "shape": self.problem.dims,
            "dtype": self.problem.dtype, "options": dict(self.problem.options), "device": self.device,
            "study": self.study_name, "sampler": self.sampler, "seed": self.seed,
            "valid_configs": self.valid_configs, "space_size": self.space_size,
            "best_config": dict(self.best_config) if self.best_config else None,
            "best": self.best.to_dict() if self.best else None,
            "default_config": dict(self.default_config) if self.default_config else None,
            "default": self.default.to_dict() if self.default else None,
            "default_failure": self.default_failure,
            "baseline_name": self.baseline_name, "baseline": self.baseline.to_dict() if self.baseline else None,
            "speedup_over_default": self.speedup_over_default, "speedup_over_baseline": self.speedup_over_baseline,
            "trials_run": self.trials_run, "trials_total": self.trials_total, "trials_to_best": self.trials_to_best,
            "failures": dict(self.failures), "failure_examples": self.failure_examples,
            "rejected_invalid": self.rejected_invalid, "answered_from_study": self.answered_from_study,
            "taken_elsewhere": self.taken_elsewhere,
            "retimed": self.retimed, "interrupted": self.interrupted, "interpreter": self.interpreter,
            "history": self.history,
        }


def study_name(spec: KernelSpec, problem: Problem, device: DeviceInfo) -> str:
    """"matmul|M=16,N=32,K=32|fp16|bias=0|cpu": the kernel, the shape key and the device class."""
    return f"{spec.name}|{spec.shape_key(problem)}|{device_class(device)}"


# -- what a stored trial says ---------------------------------------------------------------
_SOURCE = "source"      # "run": measured by a worker; "study": answered from an earlier trial
_RUN_INDEX = "run_index"
_OPEN_ATTEMPTS = 5
_TAKEN = "taken"        # kind of a proposal skipped because another process is running it


def _is_run(t: optuna.trial.FrozenTrial) -> bool:
    return t.state.is_finished() and t.user_attrs.get(_SOURCE) == "run" and not t.user_attrs.get(RETRY_ATTR)


def measured_trials(study: optuna.Study) -> dict[Config, optuna.trial.FrozenTrial]:
    """The configs a worker ran in `study` (any invocation), each with its first trial."""
    found: dict[Config, optuna.trial.FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False):
        if _is_run(t):
            found.setdefault(Space.config_of(t.params), t)
    return found


class _SharedView:
    """What the study says beyond this process, read incrementally: `refresh` folds the
    trials finished since the last look into `measured` and lists the configs RUNNING now."""

    def __init__(self, study: optuna.Study, measured: dict[Config, optuna.trial.FrozenTrial], stale_s: float) -> None:
        self._study = study
        self._measured = measured
        self._stale_s = stale_s
        self._settled = 0  # every trial numbered below this is finished and folded in
        self.running: dict[Config, set[int]] = {}  # config -> numbers of its RUNNING trials

    def refresh(self) -> None:
        # Optuna's RDB storage is cached: this reads only the trials newer than the last
        # finished one it saw, plus the ones it saw unfinished.
        trials = self._study.get_trials(deepcopy=False)
        start = bisect.bisect_left(trials, self._settled, key=lambda t: t.number)
        now = datetime.now()
        running: dict[Config, set[int]] = {}
        settled = True
        for t in trials[start:]:
            if t.state.is_finished():
                if _is_run(t):
                    self._measured.setdefault(Space.config_of(t.params), t)
                if settled:
                    self._settled = t.number + 1
                continue
            settled = False
            if t.state == TrialState.RUNNING and t.params and not (
                    t.datetime_start is not None and (now - t.datetime_start).total_seconds() > self._stale_s):
                running.setdefault(Space.config_of(t.params), set()).add(t.number)
        self.running = running

    def taken(self, config: Config, number: int | None = None) -> bool:
        """Whether a trial other than `number` is running `config` now."""
        return bool(self.running.get(config, set()) - {number})


def _open_study(name: str, storage: str | None, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """Create or load the study. Processes that start together on a fresh database race to
    create Optuna's tables (the loser gets a duplicate table or type): the loser tries again."""
    url = sqlalchemy_url(storage) if storage else None
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            return optuna.create_study(study_name=name, storage=url, direction="minimize", sampler=sampler,
                                       load_if_exists=True)
        except (sa_exc.IntegrityError, sa_exc.ProgrammingError):
            if attempt == _OPEN_ATTEMPTS - 1:
                raise
            time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
    raise AssertionError("unreachable")


def _timing_of(t: optuna.trial.FrozenTrial) -> Timing | None:
    data = t.user_attrs.get("timing")
    return Timing(**data) if data else None


def _attrs(outcome: Outcome, run_index: int) -> dict[str, Any]:
    return {_SOURCE: "run", _RUN_INDEX: run_index, "status": outcome.status, "kind": outcome.kind,
            "reason": outcome.reason, "timing": outcome.timing.to_dict() if outcome.timing else None,
            "sqnr_db": outcome.sqnr_db if outcome.sqnr_db is None or abs(outcome.sqnr_db) < 1e300 else None}


def _state_value(outcome: Outcome) -> tuple[TrialState, float | None]:
    if outcome.status == oc.OK and outcome.timing is not None:
        return TrialState.COMPLETE, outcome.timing.median_ms
    if outcome.status == oc.EARLY_STOPPED:
        return TrialState.PRUNED, None
    return TrialState.FAIL, None


def _best_ms(measured: dict[Config, optuna.trial.FrozenTrial]) -> float | None:
    values = [t.value for t in measured.values() if t.state == TrialState.COMPLETE and t.value is not None]
    return min(values) if values else None


def tune(spec: KernelSpec, problem: Problem, device: DeviceInfo, evaluator: Evaluator, *, storage: str | None,
         options: SearchOptions = SearchOptions(), on_trial: Callable[[Progress], None] | None = None,
         compile_pool: Any = None) -> TuneResult:
    """Search the configs of `spec` for `problem` on `device`, continuing the stored study.

    Args:
        evaluator: runs configs (tuner.worker.WorkerEvaluator, or a replay).
        storage: an Optuna storage URL ("sqlite:///path.db", "postgresql://..."); None keeps
            the study in memory.
        options: budgets and sampler.
        on_trial: called after every config that ran.
        compile_pool: a tuner.precompile.CompilePool to use (the caller closes it); else one
            is made from the evaluator when `options.compile_workers` > 0.

    Returns the TuneResult; on Ctrl-C the result of what was measured, `interrupted` set.
    Raises NoValidConfig, samplers.UnknownSampler.
    """
    space = Space(spec, problem, device)
    if not len(space):
        raise NoValidConfig(f"{spec.name}: no config of its space is valid for {spec.shape_key(problem)}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study_name(spec, problem, device)
    study = _open_study(name, storage, make_sampler(options.sampler, options.seed, space))
    distributions = space.distributions()
    result = TuneResult(kernel=spec.name, problem=problem, problem_key=spec.shape_key(problem), device=device.label,
                        study_name=name, sampler=options.sampler, seed=options.seed, valid_configs=len(space),
                        space_size=spec.space_size, baseline_name=spec.baseline_name, interpreter=device.interpreter)
    measured: dict[Config, optuna.trial.FrozenTrial] = {}
    shared = _SharedView(study, measured, options.running_stale_s)
    shared.refresh()
    fallback = list(space.valid_configs)
    random.Random(options.seed).shuffle(fallback)
    start = time.monotonic()
    failures = 0

    def time_left() -> float | None:
        return None if options.timeout_s is None else options.timeout_s - (time.monotonic() - start)

    def run(trial: optuna.Trial, config: Config, given: Outcome | None = None) -> Outcome:
        nonlocal failures
        best = _best_ms(measured)
        stop_above = best * options.early_stop_factor if best is not None else None
        outcome = given if given is not None else _evaluate_within(evaluator, config, stop_above, time_left())
        attrs = _attrs(outcome, len(measured) + 1)
        state, value = _state_value(outcome)
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        study.tell(trial, value, state=state)
        measured[config] = next(t for t in reversed(study.get_trials(deepcopy=False)) if t.number == trial.number)
        result.trials_run += 1
        failures += outcome.status == oc.FAILED
        if on_trial is not None:
            default_t = measured.get(default)
            on_trial(Progress(done=result.trials_run, total=options.trials, failures=failures, best_ms=_best_ms(measured),
                              default_ms=default_t.value if default_t is not None else None, config=config, outcome=outcome))
        return outcome

    default = spec.heuristic(problem, device)
    result.default_config = default
    trial = None
    pool, own_pool = _open_compile_pool(evaluator, options, device, compile_pool)
    try:
        baseline = evaluator.baseline()
        result.baseline = baseline.timing if baseline.ok else None
        if pool is not None:
            pool.start()
        # The budget (--timeout) is the search's: it counts from when the timing worker (started
        # by the baseline) and the compile pool are up. Counted from before, the first problem of
        # a run got 0 or 1 trials in a 12 s budget on an H200 host (2026-11-28).
        start = time.monotonic()
        if default not in measured and options.trials > 0 and space.reject_reason(default) is None:
            # Asked like any proposal (the first ask pops it), so that a process sharing the
            # study sees it RUNNING and does not run it too.
            study.enqueue_trial(dict(default))
        idle = 0
        valid = set(space.valid_configs)
        while result.trials_run < options.trials:
            shared.refresh()
            busy = {c for c in shared.running if c in valid and c not in measured}
            if len(measured) + len(busy) >= len(space):
                break  # every valid config is measured or being measured by another process
            if options.timeout_s is not None and time.monotonic() - start >= options.timeout_s:
                break
            if pool is not None:  # batch step: compile proposals in parallel, then time them in order
                idle = _batch_step(study, space, distributions, measured, shared, fallback, result, options, pool,
                                   run, idle, time_left)
                continue
            if idle >= options.max_idle:
                study.enqueue_trial(dict(next(c for c in fallback if c not in measured and c not in busy)))
                idle = 0
            trial = study.ask(distributions)
            config = Space.config_of(trial.params)
            reason = space.reject_reason(config)
            if reason is None:
                # The proposal is in storage now: whoever looks last sees both trials and yields.
                shared.refresh()
            if reason is not None:
                trial.set_user_attr("kind", oc.INVALID)
                trial.set_user_attr("reason", f"invalid: {reason}")
                study.tell(trial, state=TrialState.FAIL)
                result.rejected_invalid += 1
                idle += 1
            elif config in measured:
                earlier = measured[config]
                trial.set_user_attr(_SOURCE, "study")
                trial.set_user_attr("answered_from", earlier.number)
                study.tell(trial, earlier.value, state=earlier.state)
                result.answered_from_study += 1
                idle += 1
            elif shared.taken(config, trial.number):
                others = sorted(shared.running[config] - {trial.number})
                trial.set_user_attr(RETRY_ATTR, True)
                trial.set_user_attr("kind", _TAKEN)
                trial.set_user_attr("reason", f"running in trial {others[0]} of another process")
                study.tell(trial, state=TrialState.FAIL)
                result.taken_elsewhere += 1
                idle += 1
            else:
                run(trial, config)
                idle = 0
            trial = None
        shared.refresh()  # what other processes measured meanwhile is part of the result
        if options.retime_top > 0:
            _retime(result, measured, evaluator, options.retime_top)
    except KeyboardInterrupt:
        result.interrupted = True
        if trial is not None:  # asked, not told: not a result; a resumed study runs it again
            trial.set_user_attr(RETRY_ATTR, True)
            trial.set_user_attr("kind", oc.INTERRUPTED)
            study.tell(trial, state=TrialState.FAIL)
    finally:
        if own_pool:
            pool.close()
    _summarize(result, measured, default)
    return result


def _evaluate_within(evaluator: Evaluator, config: Config, stop_above_ms: float | None,
                     left_s: float | None) -> Outcome:
    """evaluator.evaluate, told what is left of the run's budget when it takes `timeout_s`
    (replay and synthetic evaluators that do not are called as before)."""
    if left_s is None:
        return evaluator.evaluate(config, stop_above_ms)
    try:
        params = inspect.signature(evaluator.evaluate).parameters
    except (TypeError, ValueError):
        params = {}
    if "timeout_s" not in params and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return evaluator.evaluate(config, stop_above_ms)
    return evaluator.evaluate(config, stop_above_ms, timeout_s=max(left_s, 0.0))


def _open_compile_pool(evaluator: Evaluator, options: SearchOptions, device: DeviceInfo, given: Any):
    """(pool, owned): the enabled compile pool the search uses, or None for the sequential
    search (compile_workers 0, an evaluator that cannot make one, a disabled pool)."""
    if given is not None:
        return (given, False) if given.enabled else (None, False)
    if options.compile_workers <= 0 or not hasattr(evaluator, "compile_pool"):
        return None, False
    pool = evaluator.compile_pool(options.compile_workers, interpreter=device.interpreter)
    if not pool.enabled:
        pool.close()
        return None, False
    return pool, True


def _batch_step(study: optuna.Study, space: Space, distributions, measured: dict[Config, optuna.trial.FrozenTrial],
                shared: _SharedView, fallback: list[Config], result: TuneResult, options: SearchOptions, pool, run,
                idle: int, time_left: Callable[[], float | None]) -> int:
    """One batch of the search with a compile pool; returns the new idle count.

    Asks the sampler for up to `pool.size` new valid unmeasured configs before telling any
    (pending trials are fine for TPE); invalid, measured and taken proposals are told at once
    as in the sequential search; a proposal of a config already in the batch is answered from
    its trial once measured, and the next ask takes the seeded fallback order. The batch is
    compiled in parallel, then each config is timed in order by `run`; a failed compile is
    the failed trial itself and never reaches the timing worker. Trials asked but not run
    (budget spent, Ctrl-C) are told FAILED with the retry mark: not results.
    """
    want = min(pool.size, options.trials - result.trials_run, len(space) - len(measured))
    batch: list[tuple[Any, Config]] = []
    echoes: list[tuple[Any, Config]] = []
    told: set[int] = set()
    why = "interrupted"

    def answer(trial, earlier) -> None:
        trial.set_user_attr(_SOURCE, "study")
        trial.set_user_attr("answered_from", earlier.number)
        study.tell(trial, earlier.value, state=earlier.state)
        told.add(trial.number)
        result.answered_from_study += 1

    try:
        take_fallback = False
        for _ in range(max(0, want) * (options.max_idle + 1)):
            if len(batch) >= want:
                break
            pending = {c for _, c in batch}
            if idle >= options.max_idle or take_fallback:
                nxt = next((c for c in fallback if c not in measured and c not in pending and c not in shared.running),
                           None)
                if nxt is None:
                    break
                study.enqueue_trial(dict(nxt))
                idle, take_fallback = 0, False
            trial = study.ask(distributions)
            config = Space.config_of(trial.params)
            reason = space.reject_reason(config)
            if reason is None:
                shared.refresh()
            if reason is not None:
                trial.set_user_attr("kind", oc.INVALID)
                trial.set_user_attr("reason", f"invalid: {reason}")
                study.tell(trial, state=TrialState.FAIL)
                told.add(trial.number)
                result.rejected_invalid += 1
                idle += 1
            elif config in measured:
                answer(trial, measured[config])
                idle += 1
            elif config in pending:
                echoes.append((trial, config))
                idle += 1
                take_fallback = True
            elif shared.taken(config, trial.number):
                others = sorted(shared.running[config] - {trial.number})
                trial.set_user_attr(RETRY_ATTR, True)
                trial.set_user_attr("kind", _TAKEN)
                trial.set_user_attr("reason", f"running in trial {others[0]} of another process")
                study.tell(trial, state=TrialState.FAIL)
                told.add(trial.number)
                result.taken_elsewhere += 1
                idle += 1
            else:
                batch.append((trial, config))
                idle = 0
        if batch:
            compiled = pool.compile_many([c for _, c in batch], time_left())
            for (trial, config), compile_outcome in zip(batch, compiled):
                left = time_left()
                if left is not None and left <= 0:
                    why = "not run: the run budget (--timeout) was spent"
                    break
                run(trial, config, None if compile_outcome.ok else compile_outcome)
                told.add(trial.number)
        for trial, config in echoes:
            if config in measured:
                answer(trial, measured[config])
    finally:
        for trial, _ in batch + echoes:  # asked, not told: not a result; a resumed study runs it again
            if trial.number not in told:
                trial.set_user_attr(RETRY_ATTR, True)
                trial.set_user_attr("kind", oc.INTERRUPTED)
                trial.set_user_attr("reason", why)
                study.tell(trial, state=TrialState.FAIL)
    return idle


def _retime(result: TuneResult, measured: dict[Config, optuna.trial.FrozenTrial], evaluator: Evaluator, top: int) -> None:
    ranked = sorted((t for t in measured.values() if t.state == TrialState.COMPLETE and t.value is not None),
                    key=lambda t: t.value)[:top]
    for t in ranked:
        config = Space.config_of(t.params)
        outcome = evaluator.evaluate(config, None)
        result.retimed.append({"config": dict(config), "study_ms": t.value,
                               "retimed": outcome.timing.to_dict() if outcome.ok and outcome.timing else None,
                               "failure": outcome.reason if not outcome.ok else None})


def _summarize(result: TuneResult, measured: dict[Config, optuna.trial.FrozenTrial], default: Config) -> None:
    result.trials_total = len(measured)
    states = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "early-stopped", TrialState.FAIL: "failed"}
    result.history = sorted(
        ({"trial": t.user_attrs.get(_RUN_INDEX), "config": dict(Space.config_of(t.params)),
          "state": states.get(t.state, str(t.state)), "median_ms": t.value,
          "kind": t.user_attrs.get("kind"), "reason": t.user_attrs.get("reason")} for t in measured.values()),
        key=lambda h: (h["trial"] is None, h["trial"] or 0))
    kinds = Counter(t.user_attrs.get("kind") for t in measured.values() if t.state == TrialState.FAIL)
    result.failures = dict(sorted(kinds.items()))
    result.failure_examples = [
        {"config": dict(t.params), "kind": t.user_attrs.get("kind"), "reason": t.user_attrs.get("reason")}
        for t in measured.values() if t.state == TrialState.FAIL][:20]
    default_trial = measured.get(default)
    if default_trial is not None:
        if default_trial.state == TrialState.FAIL:
            result.default_failure = default_trial.user_attrs.get("reason")
        else:
            result.default = _timing_of(default_trial)
    # Winner: the re-timed candidate with the lowest re-timed median; without re-timing, the study's best.
    retimed = [(Timing(**r["retimed"]), Config(r["config"])) for r in result.retimed if r["retimed"]]
    if retimed:
        best_timing, best_config = min(retimed, key=lambda pair: pair[0].median_ms)
        # The default compared on the same footing when it was re-timed with the winner.
        result.default = next((t for t, c in retimed if c == default), result.default)
    else:
        complete = [t for t in measured.values() if t.state == TrialState.COMPLETE and t.value is not None]
        if not complete:
            return
        top = min(complete, key=lambda t: t.value)
        best_timing, best_config = _timing_of(top), Space.config_of(top.params)
    result.best, result.best_config = best_timing, best_config
    result.trials_to_best = measured[best_config].user_attrs.get(_RUN_INDEX)


def to_record(spec: KernelSpec, result: TuneResult, device: DeviceInfo) -> TuningRecord | None:
    """The database record of `result`, or None when no config passed."""
    if result.best is None or result.best_config is None:
        return None
    cls = device_class(device)
    return TuningRecord(
        kernel=spec.name, source_hash=kernel_source_hash(spec), device_name=cls.name, capability=cls.capability,
        triton_version=triton.__version__, torch_version=torch.__version__, dtype=result.problem.dtype,
        quant=quant_of(result.problem), problem_key=result.problem_key, bucket=problem_bucket(spec, result.problem),
        shape=result.problem.dims, config=dict(result.best_config), median_ms=result.best.median_ms,
        p10_ms=result.best.p10_ms, p90_ms=result.best.p90_ms,
        default_ms=result.default.median_ms if result.default else None,
        baseline_ms=result.baseline.median_ms if result.baseline else None, trials=result.trials_total,
        interpreter=result.interpreter, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        extra={"sampler": result.sampler, "seed": result.seed, "trials_to_best": result.trials_to_best,
               "study": result.study_name},
    )
