"""The search: one persistent Optuna study per (kernel, problem, device).

`tune` drives the study with ask-and-tell so that it decides what a trial costs:

- a proposal that breaks a joint constraint is told FAILED ("invalid: <reason>") without
  compiling anything and does not count against `trials`;
- a proposal already measured in the study (this run or an earlier one: the study is stored,
  `load_if_exists`) is answered from the stored trial and not run again, and does not count;
- after `max_idle` such proposals in a row the next unmeasured valid config (seeded order)
  is enqueued, so a sampler stuck on measured configs cannot stall the search;
- everything else runs in the isolated worker (tuner/worker.py): correctness first, then
  timing; a config whose first repetitions are `early_stop_factor` times slower than the
  best so far is stopped early (PRUNED, with its probe timing).

The heuristic default is the first config of a new study (it counts as a trial), the torch
baseline is timed once per run, and the best `retime_top` configs are re-timed before the
winner is chosen (a noisy lucky measurement does not win).
"""

from __future__ import annotations

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

from kernels.device import DeviceInfo
from kernels.spec import Config, KernelSpec, Problem
from profilers.timing import Timing

from . import outcome as oc
from .keys import device_class, kernel_source_hash, problem_bucket, quant_of
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
    timeout_s: wall-clock budget of this invocation, None for none.
    """

    trials: int = 100
    sampler: str = "tpe"
    seed: int = 0
    timeout_s: float | None = None
    early_stop_factor: float = 3.0
    retime_top: int = 3
    max_idle: int = 20


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
    retimed: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    interpreter: bool = False

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
            "retimed": self.retimed, "interrupted": self.interrupted, "interpreter": self.interpreter,
        }


def study_name(spec: KernelSpec, problem: Problem, device: DeviceInfo) -> str:
    """"matmul|M=16,N=32,K=32|fp16|bias=0|cpu": the kernel, the shape key and the device class."""
    return f"{spec.name}|{spec.shape_key(problem)}|{device_class(device)}"


# -- what a stored trial says ---------------------------------------------------------------
_SOURCE = "source"      # "run": measured by a worker; "study": answered from an earlier trial
_RUN_INDEX = "run_index"


def _is_run(t: optuna.trial.FrozenTrial) -> bool:
    return t.state.is_finished() and t.user_attrs.get(_SOURCE) == "run" and not t.user_attrs.get(RETRY_ATTR)


def measured_trials(study: optuna.Study) -> dict[Config, optuna.trial.FrozenTrial]:
    """The configs a worker ran in `study` (any invocation), each with its first trial."""
    found: dict[Config, optuna.trial.FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False):
        if _is_run(t):
            found.setdefault(Space.config_of(t.params), t)
    return found


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
         options: SearchOptions = SearchOptions(), on_trial: Callable[[Progress], None] | None = None) -> TuneResult:
    """Search the configs of `spec` for `problem` on `device`, continuing the stored study.

    Args:
        evaluator: runs configs (tuner.worker.WorkerEvaluator, or a replay).
        storage: an Optuna storage URL ("sqlite:///path.db", "postgresql://..."); None keeps
            the study in memory.
        options: budgets and sampler.
        on_trial: called after every config that ran.

    Returns the TuneResult; on Ctrl-C the result of what was measured, `interrupted` set.
    Raises NoValidConfig, samplers.UnknownSampler.
    """
    space = Space(spec, problem, device)
    if not len(space):
        raise NoValidConfig(f"{spec.name}: no config of its space is valid for {spec.shape_key(problem)}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study_name(spec, problem, device)
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize",
                                sampler=make_sampler(options.sampler, options.seed, space), load_if_exists=True)
    distributions = space.distributions()
    result = TuneResult(kernel=spec.name, problem=problem, problem_key=spec.shape_key(problem), device=device.label,
                        study_name=name, sampler=options.sampler, seed=options.seed, valid_configs=len(space),
                        space_size=spec.space_size, baseline_name=spec.baseline_name, interpreter=device.interpreter)
    measured = measured_trials(study)
    fallback = list(space.valid_configs)
    random.Random(options.seed).shuffle(fallback)
    start = time.monotonic()
    failures = 0

    def run(trial_or_none, config: Config) -> Outcome:
        nonlocal failures
        best = _best_ms(measured)
        stop_above = best * options.early_stop_factor if best is not None else None
        outcome = evaluator.evaluate(config, stop_above)
        attrs = _attrs(outcome, len(measured) + 1)
        state, value = _state_value(outcome)
        if trial_or_none is None:
            study.add_trial(optuna.trial.create_trial(params=dict(config), distributions=distributions,
                                                      value=value, state=state, user_attrs=attrs))
        else:
            for k, v in attrs.items():
                trial_or_none.set_user_attr(k, v)
            study.tell(trial_or_none, value, state=state)
        measured[config] = next(t for t in reversed(study.get_trials(deepcopy=False)) if Space.config_of(t.params) == config)
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
    try:
        baseline = evaluator.baseline()
        result.baseline = baseline.timing if baseline.ok else None
        if default not in measured and options.trials > 0 and space.reject_reason(default) is None:
            run(None, default)
        idle = 0
        while result.trials_run < options.trials and len(measured) < len(space):
            if options.timeout_s is not None and time.monotonic() - start >= options.timeout_s:
                break
            if idle >= options.max_idle:
                study.enqueue_trial(dict(next(c for c in fallback if c not in measured)))
                idle = 0
            trial = study.ask(distributions)
            config = Space.config_of(trial.params)
            reason = space.reject_reason(config)
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
            else:
                run(trial, config)
                idle = 0
            trial = None
        if options.retime_top > 0:
            _retime(result, measured, evaluator, options.retime_top)
    except KeyboardInterrupt:
        result.interrupted = True
        if trial is not None:  # asked, not told: not a result; a resumed study runs it again
            trial.set_user_attr(RETRY_ATTR, True)
            trial.set_user_attr("kind", oc.INTERRUPTED)
            study.tell(trial, state=TrialState.FAIL)
    _summarize(result, measured, default)
    return result


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
