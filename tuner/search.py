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
baseline is timed once per run, and the winner is chosen by a race (tuner/race.py): the best
`retime_top` configs and the default are re-timed interleaved, round after round, until the
winner's interval separates from every other's or the race's budget ends; a near-tie goes
to the default (`default_kept`), else to the lower spread. A noisy lucky measurement does not
win, and the winner is never slower than the default beyond noise.

On a GPU a noise guard (profilers.nvml.NoiseGuard) samples NVML around every measurement: one
taken while another process used the GPU, the SM clock sat below its maximum or a throttle
reason was set is flagged and measured again (at most `noise_remeasure` times); the result
counts them (`TuneResult.noise`).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from sqlalchemy import exc as sa_exc

from kernels.device import DeviceInfo
from kernels.spec import Config, KernelSpec, Problem
from profilers.nvml import NoiseGuard
from profilers.timing import Timing

from . import outcome as oc
from .keys import device_class
from .location import sqlalchemy_url
from .noise import OffGuard, guarded, new_tally, open_guard
from .outcome import Outcome
from .owner import Heartbeat, Owner, claim
from .race import Contender, RaceBudget, race
from .result import Progress, TuneResult, to_record
from .samplers import RETRY_ATTR, make_sampler
from .space import Space
from .study_view import RUN_INDEX, SOURCE, SharedView, is_run, measured_trials

if TYPE_CHECKING:
    from .precompile import CompilePool

# Imported from here by the CLI, the benchmarks and the tests.
__all__ = ["Evaluator", "NoValidConfig", "Progress", "SearchOptions", "TuneResult", "measured_trials", "study_name",
           "to_record", "tune"]


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
    retime_top: the best `retime_top` configs and the default race (tuner/race.py): timed
        again, interleaved (forward, then backward, ...), round after round; 0 races nothing
        (the study's best wins);
    retime_min_rounds, retime_rounds, retime_seconds: the race's budget: no contender drops
        out before `retime_min_rounds` rounds, at most `retime_rounds` rounds, and no round
        starts after `retime_seconds` (None: no time budget);
    noise_guard, noise_remeasure: on a GPU, sample NVML around each measurement and measure
        a flagged one again, at most `noise_remeasure` times (profilers.nvml.NoiseGuard);
    warm_start: configs known to be good elsewhere (another GPU, another bucket; see
        tuner/warm_start.py), enqueued as the first trials after the default; one invalid for
        this problem or already measured is skipped;
    compile_workers: >0 compiles batches of that many proposals in parallel ahead of timing
        (tuner/precompile.py); 0, or a pool that is disabled (the interpreter), runs the
        sequential search;
    heartbeat_s, heartbeat_stale_s: a stored study's running trials get a heartbeat every
        `heartbeat_s`; a trial of another machine silent for `heartbeat_stale_s` is abandoned;
    running_stale_s: a RUNNING trial with no owner recorded (an older tuner) is taken to be
        abandoned after this long;
    skip_configs: configs the grid sampler never proposes (a grid resumed from an earlier
        run's recording); only with sampler "grid".
    """

    trials: int = 100
    sampler: str = "tpe"
    seed: int = 0
    timeout_s: float | None = None
    early_stop_factor: float = 3.0
    retime_top: int = 3
    # 4 rounds at most: two forward-backward pairs. A separated race stops after the first
    # pair, as the fixed two-round re-timing did; a near-tie costs twice that.
    retime_rounds: int = 4
    retime_min_rounds: int = 2
    retime_seconds: float | None = None
    noise_guard: bool = True
    noise_remeasure: int = 2
    max_idle: int = 20
    running_stale_s: float = 3600.0
    heartbeat_s: float = 10.0
    heartbeat_stale_s: float = 120.0
    compile_workers: int = 0
    warm_start: tuple[Config, ...] = ()
    skip_configs: frozenset[Config] = frozenset()


def study_name(spec: KernelSpec, problem: Problem, device: DeviceInfo) -> str:
    """"matmul|M=16,N=32,K=32|fp16|bias=0|cpu": the kernel, the shape key and the device class."""
    return f"{spec.name}|{spec.shape_key(problem)}|{device_class(device)}"


_OPEN_ATTEMPTS = 5
_TAKEN = "taken"        # kind of a proposal skipped because another process is running it


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
    return {SOURCE: "run", RUN_INDEX: run_index, "status": outcome.status, "kind": outcome.kind,
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
         compile_pool: CompilePool | None = None, guard: NoiseGuard | None = None) -> TuneResult:
    """Search the configs of `spec` for `problem` on `device`, continuing the stored study.

    Args:
        evaluator: runs configs (tuner.worker.WorkerEvaluator, or a replay).
        storage: an Optuna storage URL ("sqlite:///path.db", "postgresql://..."); None keeps
            the study in memory.
        options: budgets and sampler.
        on_trial: called after every config that ran.
        compile_pool: a tuner.precompile.CompilePool to use (the caller closes it); else one
            is made from the evaluator when `options.compile_workers` > 0.
        guard: the noise guard to use (the caller closes it); else one is opened on a GPU
            when `options.noise_guard` (off, with the reason, on the CPU or without NVML).

    Returns the TuneResult; on Ctrl-C the result of what was measured, `interrupted` set.
    Raises NoValidConfig, samplers.UnknownSampler.
    """
    began = time.monotonic()
    space = Space(spec, problem, device)
    if not len(space):
        raise NoValidConfig(f"{spec.name}: no config of its space is valid for {spec.shape_key(problem)}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study_name(spec, problem, device)
    study = _open_study(name, storage, make_sampler(options.sampler, options.seed, space, options.skip_configs))
    result = TuneResult(kernel=spec.name, problem=problem, problem_key=spec.shape_key(problem), device=device.label,
                        study_name=name, sampler=options.sampler, seed=options.seed, valid_configs=len(space),
                        space_size=spec.space_size, baseline_name=spec.baseline_name, interpreter=device.interpreter)
    default = spec.heuristic(problem, device)
    result.default_config = default
    search = _Search(study, space, evaluator, options, result, on_trial, default)
    search.guard, own_guard = open_guard(options.noise_guard, device, guard)
    result.noise = new_tally(search.guard)
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
        if (default not in search.measured and default not in options.skip_configs and options.trials > 0
                and space.reject_reason(default) is None):
            # Asked like any proposal (the first ask pops it), so that a process sharing the
            # study sees it RUNNING and does not run it too.
            study.enqueue_trial(dict(default))
        for config in dict.fromkeys(options.warm_start):
            if config != default and config not in search.measured and space.reject_reason(config) is None:
                study.enqueue_trial(dict(config))
                result.warm_started += 1
        valid = search.wanted
        while result.trials_run < options.trials:
            search.shared.refresh()
            busy = {c for c in search.shared.running if c in valid and c not in search.measured}
            if search.unmeasured() <= len(busy):
                break  # every valid config is measured or being measured by another process
            left = search.time_left()
            if left is not None and left <= 0:
                break
            search.step()
        search.shared.refresh()  # what other processes measured meanwhile is part of the result
        if options.retime_top > 0 and options.retime_rounds > 0:
            search.race()
    except KeyboardInterrupt:
        result.interrupted = True  # the trials asked and not told are marked by `step`
    finally:
        if heartbeat is not None:
            heartbeat.stop()
        if own_pool:
            pool.close()
        if own_guard:
            search.guard.close()
    result.abandoned = search.shared.abandoned
    _summarize(result, search.measured, default)
    result.seconds = time.monotonic() - began  # the whole call: workers' start, trials, race
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
        self.shared = SharedView(study, self.measured, space, self.me, heartbeat_stale_s=options.heartbeat_stale_s,
                                 running_stale_s=options.running_stale_s)
        # The configs to measure: the valid ones but those recorded elsewhere (skip_configs).
        self.wanted = set(space.valid_configs) - options.skip_configs
        self.fallback = [c for c in space.valid_configs if c in self.wanted]
        random.Random(options.seed).shuffle(self.fallback)
        self.pool: CompilePool | None = None
        self.heartbeat: Heartbeat | None = None
        self.guard: NoiseGuard | OffGuard = OffGuard("off")
        self.start = time.monotonic()
        self.failures = 0
        self.idle = 0

    def unmeasured(self) -> int:
        """Configs still to measure (without skip_configs: the valid configs not measured)."""
        if not self.options.skip_configs:
            return len(self.space) - len(self.measured)
        return len(self.wanted - self.measured.keys())

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
        trial.set_user_attr(SOURCE, "study")
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
        want = min(size, options.trials - result.trials_run, self.unmeasured())
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
        noise: list[str] = []
        if given is not None:
            outcome = given
        else:
            outcome, noise = self.measure(config, stop_above, budgeted=True)
        attrs = _attrs(outcome, len(self.measured) + 1)
        if noise:
            attrs["noise"] = noise
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

    def measure(self, config: Config, stop_above: float | None = None, *,
                budgeted: bool = False) -> tuple[Outcome, list[str]]:
        """Evaluate `config` under the noise guard (tuner/noise.py: a flagged timing is
        measured again, at most `noise_remeasure` times). `budgeted`: the run's time budget
        bounds each attempt. Returns the outcome and what the guard said of it."""
        def evaluate() -> Outcome:
            left = _non_negative(self.time_left()) if budgeted else None
            return self.evaluator.evaluate(config, stop_above, timeout_s=left)

        def out_of_time() -> bool:
            left = self.time_left()
            return budgeted and left is not None and left <= 0

        return guarded(evaluate, self.guard, self.options.noise_remeasure, self.result.noise, str(config),
                       out_of_time)

    # -- the race among the best --------------------------------------------------------
    def race(self) -> None:
        """Race the best `retime_top` configs and the default (tuner/race.py); the verdicts
        go to `result.retimed`, the race's summary to `result.race`."""
        ranked = sorted((t for t in self.measured.values() if t.state == TrialState.COMPLETE and t.value is not None),
                        key=lambda t: t.value)[:self.options.retime_top]
        if not ranked:
            return
        contenders = [Contender(Space.config_of(t.params), study_ms=t.value) for t in ranked]
        default_trial = self.measured.get(self.default)
        if all(c.config != self.default for c in contenders) and self.space.reject_reason(self.default) is None and (
                default_trial is None or default_trial.state != TrialState.FAIL):
            contenders.append(Contender(self.default, study_ms=default_trial.value if default_trial else None))
        for c in contenders:
            c.default = c.config == self.default
        options = self.options
        budget = RaceBudget(min(options.retime_min_rounds, options.retime_rounds), options.retime_rounds,
                            options.retime_seconds)
        outcome = race(contenders, lambda config: self.measure(config)[0], budget)
        self.result.retimed = [c.to_dict() for c in contenders]
        self.result.race = outcome.to_dict()


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
        if t.number == number or (number is None and t.params == dict(config) and is_run(t)):
            return t
    raise AssertionError(f"trial of {config} not found after telling it")


def _summarize(result: TuneResult, measured: dict[Config, optuna.trial.FrozenTrial], default: Config) -> None:
    result.trials_total = len(measured)
    states = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "early-stopped", TrialState.FAIL: "failed"}
    result.history = sorted(
        ({"trial": t.user_attrs.get(RUN_INDEX), "config": dict(Space.config_of(t.params)),
          "state": states.get(t.state, str(t.state)), "median_ms": t.value,
          "kind": t.user_attrs.get("kind"), "reason": t.user_attrs.get("reason"),
          "noise": t.user_attrs.get("noise")} for t in measured.values()),
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
    # Winner: the race's (tuner/race.py: the default wins a near-tie); without a race, or when
    # every contender failed in it, the study's best.
    winner = result.race.get("winner")
    if winner is not None:
        timings = {Config(r["config"]): Timing(**r["retimed"]) for r in result.retimed if r["retimed"]}
        best_config = Config(winner)
        best_timing = timings[best_config]
        # The default compared on the same footing: re-timed beside the winner.
        result.default = timings.get(default, result.default)
    else:
        complete = [t for t in measured.values() if t.state == TrialState.COMPLETE and t.value is not None]
        if not complete:
            return
        top = min(complete, key=lambda t: t.value)
        best_timing, best_config = _timing_of(top), Space.config_of(top.params)
    result.best, result.best_config = best_timing, best_config
    result.default_kept = best_config == default
    found = measured.get(best_config)
    result.trials_to_best = found.user_attrs.get(RUN_INDEX) if found is not None else None
