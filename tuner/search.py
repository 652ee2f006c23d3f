"""The search: one persistent Optuna study per (kernel, problem, device).

`tune` drives the study with ask-and-tell so that it decides what a trial costs. Every
proposal goes through one handler (`_Search.propose`):

- a proposal that breaks a joint constraint is told FAILED ("invalid: <reason>") without
  compiling anything and does not count against `trials`;
- a proposal already measured in the study (this run, an earlier one, or another process
  sharing the study: the study is stored, `load_if_exists`) is answered from the stored trial
  and not run again, and does not count;
- several processes may drive one study (`--storage postgresql://...`): before each ask and
  again once the proposal is in storage, the trials finished since the last look are read
  (incrementally), and a proposal that another trial is RUNNING right now is told FAILED
  (`kind=taken`, `retry`) and skipped without counting, so no config is measured twice;
- a trial about to run records its owner (host, pid) and a heartbeat (tuner/owner.py); a
  RUNNING trial whose owner is dead (a pid gone on this machine, a heartbeat gone stale
  elsewhere) is told FAILED (`kind=abandoned`, `retry`) and its config enqueued again, so a
  tuner killed mid-trial loses nothing and blocks nothing on resume;
- after `max_idle` such proposals in a row the next unmeasured valid config (seeded order)
  that no other process is running is enqueued, so a sampler stuck on measured configs
  cannot stall the search; a process stops once every valid config is measured or running;
- everything else runs in the isolated worker (tuner/worker.py): correctness first, then
  timing; a config whose first repetitions are `early_stop_factor` times slower than the
  best so far is stopped early (PRUNED, with its probe timing). With a compile pool the
  proposals are gathered in batches and compiled in parallel before they are timed.

The heuristic default is the first config of a new study (it counts as a trial), the torch
baseline is timed once per run, and the best `retime_top` configs are re-timed together
with the default, interleaved over `retime_rounds` rounds, before the winner is chosen: a
noisy lucky measurement does not win, and the winner is never slower than the default
measured beside it (the default is kept instead, `default_kept`).
"""

from __future__ import annotations

import bisect
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

import optuna
import torch
import triton
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from sqlalchemy import exc as sa_exc

from kernels.device import DeviceInfo
from kernels.spec import Config, KernelSpec, Problem
from profilers.timing import Timing

from . import outcome as oc
from .keys import device_class, kernel_source_hash, problem_bucket, quant_of
from .location import sqlalchemy_url
from .outcome import Outcome
from .owner import Heartbeat, Owner, abandoned_reason, claim
from .record import TuningRecord
from .samplers import RETRY_ATTR, make_sampler
from .space import Space

if TYPE_CHECKING:
    from .precompile import CompilePool


class NoValidConfig(ValueError):
    """The spec's space holds no config that passes the constraints for this problem."""


class Evaluator(Protocol):
    """Runs configs of one problem: the isolated worker, or a replay of recorded results."""

    def evaluate(self, config: Config, stop_above_ms: float | None = None,
                 timeout_s: float | None = None) -> Outcome:
        """Check and time `config`; stop early (EARLY_STOPPED) when its first repetitions are
        above `stop_above_ms`. `timeout_s` is what is left of the run's budget (None: no
        budget): an evaluator that can cut a running trial cuts it there (a TIMEOUT failure);
        one that cannot (a replay) ignores it."""
        ...

    def baseline(self) -> Outcome:
        """Time the torch baseline on the same inputs."""
        ...

    def compile_pool(self, workers: int, *, interpreter: bool) -> CompilePool | None:
        """A pool of `workers` processes compiling configs ahead of timing
        (tuner/precompile.py; the caller closes it), or None: this evaluator has none."""
        ...


@dataclass(frozen=True)
class SearchOptions:
    """Budgets and policy of one search.

    trials: configs to run in this invocation (the default included on a new study);
    timeout_s: wall-clock budget of this search, None for none, counted from when its worker
        and compile pool are up (start-up and the torch baseline are not in it); a running
        trial is cut when it runs out (the evaluator is told what is left);
    retime_top, retime_rounds: the best `retime_top` configs and the default are timed again,
        interleaved (forward, then backward, ...) over `retime_rounds` rounds; each keeps its
        fastest round. 0 re-times nothing (the study's best wins);
    compile_workers: >0 compiles batches of that many proposals in parallel ahead of timing
        (tuner/precompile.py); 0, or a pool that is disabled (the interpreter), runs the
        sequential search;
    heartbeat_s, heartbeat_stale_s: a stored study's running trials get a heartbeat every
        `heartbeat_s`; a trial of another machine silent for `heartbeat_stale_s` is abandoned;
    running_stale_s: a RUNNING trial with no owner recorded (an older tuner) is taken to be
        abandoned after this long.
    """

    trials: int = 100
    sampler: str = "tpe"
    seed: int = 0
    timeout_s: float | None = None
    early_stop_factor: float = 3.0
    retime_top: int = 3
    retime_rounds: int = 2
    max_idle: int = 20
    running_stale_s: float = 3600.0
    heartbeat_s: float = 10.0
    heartbeat_stale_s: float = 120.0
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
    abandoned: int = 0             # trials of dead tuners this invocation failed and enqueued again
    default_kept: bool = False     # no searched config beat the default re-timed beside it: the default won
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
            "taken_elsewhere": self.taken_elsewhere, "abandoned": self.abandoned, "default_kept": self.default_kept,
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
    trials finished since the last look into `measured`, lists the configs RUNNING now, and
    fails the RUNNING trials of dead owners (tuner/owner.py), enqueueing their configs again."""

    def __init__(self, study: optuna.Study, measured: dict[Config, optuna.trial.FrozenTrial], space: Space,
                 options: SearchOptions, me: Owner) -> None:
        self._study = study
        self._measured = measured
        self._space = space
        self._options = options
        self._me = me
        self._settled = 0  # every trial numbered below this is finished and folded in
        self.running: dict[Config, set[int]] = {}  # config -> numbers of its RUNNING trials
        self.abandoned = 0  # trials of dead owners this view failed

    def refresh(self) -> None:
        # Optuna's RDB storage is cached: this reads only the trials newer than the last
        # finished one it saw, plus the ones it saw unfinished.
        trials = self._study.get_trials(deepcopy=False)
        start = bisect.bisect_left(trials, self._settled, key=lambda t: t.number)
        now = time.time()
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
            if t.state != TrialState.RUNNING or not t.params:
                continue
            why = abandoned_reason(t, self._me, now=now, heartbeat_stale_s=self._options.heartbeat_stale_s,
                                   running_stale_s=self._options.running_stale_s)
            if why is None:
                running.setdefault(Space.config_of(t.params), set()).add(t.number)
            else:
                self._abandon(t, why)
        self.running = running

    def _abandon(self, t: optuna.trial.FrozenTrial, why: str) -> None:
        """Fail the RUNNING trial `t` of a dead owner (retry: not a result) and enqueue its
        config again. Of several processes doing this at once one wins; the others skip."""
        storage = self._study._storage  # no public call annotates another process's trial
        try:
            storage.set_trial_user_attr(t._trial_id, RETRY_ATTR, True)
            storage.set_trial_user_attr(t._trial_id, "kind", oc.ABANDONED)
            storage.set_trial_user_attr(t._trial_id, "reason", f"abandoned: {why}")
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            return  # told meanwhile: by its owner, or by another process that found it first
        self.abandoned += 1
        config = Space.config_of(t.params)
        if config not in self._measured and self._space.reject_reason(config) is None:
            self._study.enqueue_trial(dict(config))

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
         compile_pool: CompilePool | None = None) -> TuneResult:
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
    result = TuneResult(kernel=spec.name, problem=problem, problem_key=spec.shape_key(problem), device=device.label,
                        study_name=name, sampler=options.sampler, seed=options.seed, valid_configs=len(space),
                        space_size=spec.space_size, baseline_name=spec.baseline_name, interpreter=device.interpreter)
    default = spec.heuristic(problem, device)
    result.default_config = default
    search = _Search(study, space, evaluator, options, result, on_trial, default)
    # A study in memory is this process's alone: nobody to tell that its trials are alive.
    heartbeat = Heartbeat(options.heartbeat_s) if storage is not None else None
    search.heartbeat = heartbeat
    pool, own_pool = _open_compile_pool(evaluator, options, device, compile_pool)
    search.pool = pool
    try:
        if heartbeat is not None:
            heartbeat.start()
        search.shared.refresh()
        baseline = evaluator.baseline()
        result.baseline = baseline.timing if baseline.ok else None
        if pool is not None:
            pool.start()
        # The budget (--timeout) is the search's: it counts from when the timing worker (started
        # by the baseline) and the compile pool are up. Counted from before, the first problem of
        # a run got 0 or 1 trials in a 12 s budget on an H200 host (2026-11-28).
        search.start = time.monotonic()
        if default not in search.measured and options.trials > 0 and space.reject_reason(default) is None:
            # Asked like any proposal (the first ask pops it), so that a process sharing the
            # study sees it RUNNING and does not run it too.
            study.enqueue_trial(dict(default))
        valid = set(space.valid_configs)
        while result.trials_run < options.trials:
            search.shared.refresh()
            busy = {c for c in search.shared.running if c in valid and c not in search.measured}
            if len(search.measured) + len(busy) >= len(space):
                break  # every valid config is measured or being measured by another process
            left = search.time_left()
            if left is not None and left <= 0:
                break
            search.step()
        search.shared.refresh()  # what other processes measured meanwhile is part of the result
        if options.retime_top > 0 and options.retime_rounds > 0:
            search.retime()
    except KeyboardInterrupt:
        result.interrupted = True  # the trials asked and not told are marked by `step`
    finally:
        if heartbeat is not None:
            heartbeat.stop()
        if own_pool:
            pool.close()
    result.abandoned = search.shared.abandoned
    _summarize(result, search.measured, default)
    return result


def _open_compile_pool(evaluator: Evaluator, options: SearchOptions, device: DeviceInfo,
                       given: CompilePool | None) -> tuple[CompilePool | None, bool]:
    """(pool, owned): the enabled compile pool the search uses, or None for the sequential
    search (compile_workers 0, an evaluator without a pool, a disabled pool)."""
    if given is not None:
        return (given, False) if given.enabled else (None, False)
    if options.compile_workers <= 0:
        return None, False
    pool = evaluator.compile_pool(options.compile_workers, interpreter=device.interpreter)
    if pool is None:
        return None, False
    if not pool.enabled:
        pool.close()
        return None, False
    return pool, True


# What `_Search.propose` made of one proposal.
_RUN = "run"      # a new valid config, claimed by this process: to be run
_ECHO = "echo"    # a config already in the batch being gathered: answered once that one is measured
_TOLD = "told"    # settled without running anything (invalid, measured, taken elsewhere)


class _Search:
    """The state of one `tune` call: the study, what it has measured, the budget."""

    def __init__(self, study: optuna.Study, space: Space, evaluator: Evaluator, options: SearchOptions,
                 result: TuneResult, on_trial: Callable[[Progress], None] | None, default: Config) -> None:
        self.study, self.space, self.evaluator, self.options = study, space, evaluator, options
        self.result, self.on_trial, self.default = result, on_trial, default
        self.distributions = space.distributions()
        self.me = Owner.current()
        self.measured: dict[Config, optuna.trial.FrozenTrial] = {}
        self.shared = _SharedView(study, self.measured, space, options, self.me)
        self.fallback = list(space.valid_configs)
        random.Random(options.seed).shuffle(self.fallback)
        self.pool: CompilePool | None = None
        self.heartbeat: Heartbeat | None = None
        self.start = time.monotonic()
        self.failures = 0
        self.idle = 0

    def time_left(self) -> float | None:
        if self.options.timeout_s is None:
            return None
        return self.options.timeout_s - (time.monotonic() - self.start)

    # -- one proposal -------------------------------------------------------------------
    def propose(self, pending: set[Config]) -> tuple[optuna.Trial, Config, str]:
        """Ask the sampler once and settle what needs no run: an invalid proposal is told
        FAILED, a measured one is answered from its trial, one another process is running is
        told FAILED (retry). Returns (trial, config, what): `_RUN` (claimed: owner and
        heartbeat), `_ECHO` (a config in `pending`, left open) or `_TOLD`."""
        trial = self.study.ask(self.distributions)
        config = Space.config_of(trial.params)
        reason = self.space.reject_reason(config)
        if reason is not None:
            trial.set_user_attr("kind", oc.INVALID)
            trial.set_user_attr("reason", f"invalid: {reason}")
            self.study.tell(trial, state=TrialState.FAIL)
            self.result.rejected_invalid += 1
            return trial, config, _TOLD
        # The proposal is in storage now: whoever looks last sees both trials and yields.
        self.shared.refresh()
        if config in self.measured:
            self.answer(trial, self.measured[config])
            return trial, config, _TOLD
        if config in pending:
            return trial, config, _ECHO
        if self.shared.taken(config, trial.number):
            others = sorted(self.shared.running[config] - {trial.number})
            trial.set_user_attr(RETRY_ATTR, True)
            trial.set_user_attr("kind", _TAKEN)
            trial.set_user_attr("reason", f"running in trial {others[0]} of another process")
            self.study.tell(trial, state=TrialState.FAIL)
            self.result.taken_elsewhere += 1
            return trial, config, _TOLD
        claim(trial, self.me)
        if self.heartbeat is not None:
            self.heartbeat.add(trial)
        return trial, config, _RUN

    def answer(self, trial: optuna.Trial, earlier: optuna.trial.FrozenTrial) -> None:
        trial.set_user_attr(_SOURCE, "study")
        trial.set_user_attr("answered_from", earlier.number)
        self.study.tell(trial, earlier.value, state=earlier.state)
        self.result.answered_from_study += 1

    # -- one step: gather proposals, compile them (with a pool), time them in order ---------
    def step(self) -> None:
        """Ask for up to `pool.size` (1 without a pool) new valid unmeasured configs before
        telling any (pending trials are fine for TPE), then compile them in parallel (with a
        pool) and time each in order. A proposal of a config already gathered is answered
        from its trial once measured, and the next ask takes the seeded fallback order. A
        failed compile is the failed trial itself and never reaches the timing worker.
        Trials asked but not run (budget spent, Ctrl-C) are told FAILED with the retry mark:
        not results."""
        options, result = self.options, self.result
        size = self.pool.size if self.pool is not None else 1
        want = min(size, options.trials - result.trials_run, len(self.space) - len(self.measured))
        batch: list[tuple[optuna.Trial, Config]] = []
        echoes: list[tuple[optuna.Trial, Config]] = []
        told: set[int] = set()
        why = "interrupted"
        try:
            take_fallback = False
            for _ in range(max(0, want) * (options.max_idle + 1)):
                if len(batch) >= want:
                    break
                pending = {c for _, c in batch}
                if self.idle >= options.max_idle or take_fallback:
                    nxt = next((c for c in self.fallback if c not in self.measured and c not in pending
                                and c not in self.shared.running), None)
                    if nxt is None:
                        break
                    self.study.enqueue_trial(dict(nxt))
                    self.idle, take_fallback = 0, False
                trial, config, what = self.propose(pending)
                if what == _RUN:
                    batch.append((trial, config))
                    self.idle = 0
                    continue
                self.idle += 1
                if what == _ECHO:
                    echoes.append((trial, config))
                    take_fallback = True
                else:
                    told.add(trial.number)
            if batch:
                compiled = (self.pool.compile_many([c for _, c in batch], self.time_left()) if self.pool is not None
                            else [None] * len(batch))
                for (trial, config), compile_outcome in zip(batch, compiled):
                    left = self.time_left()
                    if left is not None and left <= 0:
                        why = "not run: the run budget (--timeout) was spent"
                        break
                    self.run(trial, config, None if compile_outcome is None or compile_outcome.ok else compile_outcome)
                    told.add(trial.number)
            for trial, config in echoes:
                if config in self.measured:
                    self.answer(trial, self.measured[config])
                    told.add(trial.number)
        finally:
            for trial, _ in batch + echoes:
                if self.heartbeat is not None:
                    self.heartbeat.discard(trial.number)
                if trial.number not in told:  # asked, not told: not a result; a resumed study runs it again
                    _tell_quietly(self.study, trial, {RETRY_ATTR: True, "kind": oc.INTERRUPTED, "reason": why})

    def run(self, trial: optuna.Trial, config: Config, given: Outcome | None = None) -> Outcome:
        """Evaluate `config` (or take `given`, a failed compile) and tell its trial."""
        best = _best_ms(self.measured)
        stop_above = best * self.options.early_stop_factor if best is not None else None
        outcome = given if given is not None else self.evaluator.evaluate(config, stop_above,
                                                                          timeout_s=_non_negative(self.time_left()))
        attrs = _attrs(outcome, len(self.measured) + 1)
        state, value = _state_value(outcome)
        self.measured[config] = _tell_run(self.study, trial, config, self.distributions, value, state, attrs)
        self.result.trials_run += 1
        self.failures += outcome.status == oc.FAILED
        if self.on_trial is not None:
            default_t = self.measured.get(self.default)
            self.on_trial(Progress(done=self.result.trials_run, total=self.options.trials, failures=self.failures,
                                   best_ms=_best_ms(self.measured),
                                   default_ms=default_t.value if default_t is not None else None, config=config,
                                   outcome=outcome))
        return outcome

    # -- re-timing ---------------------------------------------------------------------
    def retime(self) -> None:
        """Time the best `retime_top` configs and the default again, interleaved (forward,
        then backward, ...) over `retime_rounds` rounds so that each meets the same
        conditions (a loaded machine); each keeps its fastest round. A config that fails a
        round is out."""
        ranked = sorted((t for t in self.measured.values() if t.state == TrialState.COMPLETE and t.value is not None),
                        key=lambda t: t.value)[:self.options.retime_top]
        if not ranked:
            return
        study_ms = {Space.config_of(t.params): t.value for t in ranked}
        order = list(study_ms)
        default_trial = self.measured.get(self.default)
        if self.default not in study_ms and self.space.reject_reason(self.default) is None and (
                default_trial is None or default_trial.state != TrialState.FAIL):
            order.append(self.default)
            study_ms[self.default] = default_trial.value if default_trial is not None else None
        rounds: dict[Config, list[Timing]] = {c: [] for c in order}
        failed: dict[Config, str] = {}
        for r in range(self.options.retime_rounds):
            for config in (order if r % 2 == 0 else order[::-1]):
                if config in failed:
                    continue
                outcome = self.evaluator.evaluate(config, None)
                if outcome.ok and outcome.timing is not None:
                    rounds[config].append(outcome.timing)
                else:
                    failed[config] = outcome.reason or outcome.status
        for config in order:
            best = min(rounds[config], key=lambda t: t.median_ms) if rounds[config] and config not in failed else None
            self.result.retimed.append({
                "config": dict(config), "study_ms": study_ms[config], "default": config == self.default,
                "retimed": best.to_dict() if best else None, "rounds_ms": [t.median_ms for t in rounds[config]],
                "failure": failed.get(config)})


def _non_negative(left: float | None) -> float | None:
    return None if left is None else max(left, 0.0)


def _finished(study: optuna.Study, number: int) -> bool:
    return any(t.number == number and t.state.is_finished() for t in study.get_trials(deepcopy=False))


def _tell_quietly(study: optuna.Study, trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Tell `trial` FAILED with `attrs`, unless another process already failed it (abandoned)."""
    try:
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        study.tell(trial, state=TrialState.FAIL)
    except (UpdateFinishedTrialError, ValueError):
        if not _finished(study, trial.number):
            raise


def _tell_run(study: optuna.Study, trial: optuna.Trial, config: Config, distributions: dict[str, Any],
              value: float | None, state: TrialState, attrs: dict[str, Any]) -> optuna.trial.FrozenTrial:
    """Tell the trial that ran `config`; returns its stored trial. When another process took
    it for abandoned meanwhile (a heartbeat lost to a stalled storage) and failed it, the
    measurement is kept as a trial of its own instead."""
    try:
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        study.tell(trial, value, state=state)
        number = trial.number
    except (UpdateFinishedTrialError, ValueError):
        if not _finished(study, trial.number):
            raise
        study.add_trial(optuna.trial.create_trial(params=dict(config), distributions=distributions, value=value,
                                                  state=state, user_attrs=attrs))
        number = None
    for t in reversed(study.get_trials(deepcopy=False)):
        if t.number == number or (number is None and t.params == dict(config) and _is_run(t)):
            return t
    raise AssertionError(f"trial of {config} not found after telling it")


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
    # Winner: the re-timed candidate with the lowest re-timed median, the default on a tie (a
    # searched config must beat it to be stored); without re-timing, the study's best.
    retimed = [(Timing(**r["retimed"]), Config(r["config"])) for r in result.retimed if r["retimed"]]
    if retimed:
        best_timing, best_config = min(retimed, key=lambda pair: (pair[0].median_ms, pair[1] != default))
        # The default compared on the same footing: re-timed beside the winner.
        result.default = next((t for t, c in retimed if c == default), result.default)
    else:
        complete = [t for t in measured.values() if t.state == TrialState.COMPLETE and t.value is not None]
        if not complete:
            return
        top = min(complete, key=lambda t: t.value)
        best_timing, best_config = _timing_of(top), Space.config_of(top.params)
    result.best, result.best_config = best_timing, best_config
    result.default_kept = best_config == default
    found = measured.get(best_config)
    result.trials_to_best = found.user_attrs.get(_RUN_INDEX) if found is not None else None


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
               "study": result.study_name, "default_kept": result.default_kept},
    )
