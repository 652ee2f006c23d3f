"""Joint search of a weight-quantization scheme and its tile config, on two objectives.

For one linear layer (x [M, K] @ W[N, K].T in bf16, say) the choices are the scheme (int8
per channel, int4 in groups of 32/64/128, fp8 where the device has it) and, per scheme, its
kernel's tile config. One multi-objective Optuna study per (layer shape, device) proposes
both at once ("scheme", then "<scheme>:<param>" for that scheme's parameters only: a
conditional space, which TPE models with `group=True`) and is told two values:

- latency, the median in ms (minimize);
- error, the SQNR in dB of the kernel's output against the unquantized float matmul
  (maximize), rounded to 0.1 dB: tile configs of one scheme differ only in fp32 summation
  order (hundredths of a dB), and unrounded those differences would put slow configs of a
  scheme on the front.

Each scheme's heuristic default is measured first, so that every scheme has a point and a
default to compare against. The rest follows `tuner.search.tune`: constraint-breaking
proposals are rejected before compiling and not counted, measured configs are not run
again, a config far slower than its scheme's best is stopped early, wrong results fail.

The answer is one point per scheme (its fastest config), the Pareto front of those points
(no other scheme both faster and more accurate), and, given `min_sqnr`, the fastest point
on the front that reaches it. Every scheme's point is a tuned `TuneResult` of its own
kernel, so the database gets a record per scheme.
"""

from __future__ import annotations

import random
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from kernels.device import DeviceInfo
from kernels.scheme_names import canonical_scheme
from kernels.spec import Config, KernelSpec, Problem
from profilers.timing import Timing

from . import outcome as oc
from .keys import device_class
from .location import sqlalchemy_url
from .outcome import Outcome
from .search import Evaluator, NoValidConfig, SearchOptions, TuneResult
from .space import Space

SQNR_RESOLUTION_DB = 0.1


@dataclass(frozen=True)
class Scheme:
    """One weight-quantization scheme: the kernel that runs it and its problem options."""

    name: str
    kernel: str
    options: tuple[tuple[str, str], ...] = ()


def _int4(group: int, asym: bool = False) -> Scheme:
    name = f"int4-g{group}" + ("-asym" if asym else "")
    return Scheme(name, "matmul_w4a16", (("quant", name),))


SCHEMES: tuple[Scheme, ...] = (
    Scheme("int8", "matmul_w8a16"),
    *(_int4(g) for g in (32, 64, 128)),
    *(_int4(g, asym=True) for g in (32, 64, 128)),
    Scheme("fp8-row", "matmul_fp8", (("quant", "fp8-row"),)),
    Scheme("fp8-tensor", "matmul_fp8", (("quant", "fp8-tensor"),)),
)
# "all": the schemes the issue names; the asymmetric int4 and per-tensor fp8 on request.
DEFAULT_SCHEMES = ("int8", "int4-g32", "int4-g64", "int4-g128", "fp8-row")


class SchemeError(ValueError):
    """An unknown scheme, or one this device or dtype cannot run (one line)."""


@dataclass(frozen=True)
class Candidate:
    """A scheme made concrete for one layer: its kernel, problem and valid tile configs."""

    scheme: Scheme
    spec: KernelSpec
    problem: Problem
    space: Space


def candidates(text: str, shape: dict[str, int], dtype: str, bias: bool, device: DeviceInfo,
               spec_of: Callable[[str], KernelSpec]) -> list[Candidate]:
    """The schemes named by `text` ("all", or a comma list like "int8,int4-g128") for the
    layer `shape` (M, N, K) in `dtype`. "all" keeps what this device and dtype run and drops
    the rest; a named scheme that cannot run is an error. A scheme may be named by its alias
    ("w4g128" for "int4-g128"; kernels/scheme_names.py). Raises SchemeError."""
    by_name = {s.name: s for s in SCHEMES}
    names = [canonical_scheme(n) for n in text.split(",") if n.strip()]
    explicit = names != ["all"]
    if not explicit:
        names = list(DEFAULT_SCHEMES)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SchemeError(f"unknown quantization scheme {unknown[0]!r}; known: all, {', '.join(by_name)} "
                          "(or w8, w4gN, fp8 for int8, int4-gN, fp8-row)")
    found = []
    for name in dict.fromkeys(names):
        scheme = by_name[name]
        spec = spec_of(scheme.kernel)
        if dtype not in spec.dtypes:
            if explicit:
                raise SchemeError(f"{name} ({spec.name}) does not take {dtype} activations; it takes {', '.join(spec.dtypes)}")
            continue
        problem = spec.problem(shape, dtype, {**dict(scheme.options), "bias": "1" if bias else "0"})
        reason = spec.unsupported_reason(problem, device)
        if reason:
            if explicit:
                raise SchemeError(f"{name} cannot run on this device: {reason}")
            continue
        found.append(Candidate(scheme, spec, problem, Space(spec, problem, device)))
    found = [c for c in found if len(c.space)]
    if not found:
        raise SchemeError(f"no quantization scheme of {text!r} can run {dtype} on this device")
    return found


@dataclass
class QuantTuneResult:
    """What a joint search found: per scheme its fastest config, the front, the pick."""

    shape: dict[str, int]
    dtype: str
    device: str
    study_name: str
    sampler: str
    seed: int
    schemes: list[str]
    per_scheme: dict[str, TuneResult] = field(default_factory=dict)
    sqnr_db: dict[str, float] = field(default_factory=dict)     # per scheme, of its fastest config
    front: list[str] = field(default_factory=list)              # schemes on the Pareto front, fastest first
    min_sqnr_db: float | None = None
    chosen: str | None = None
    baseline_name: str = ""
    baseline: Timing | None = None
    trials_run: int = 0
    trials_total: int = 0
    rejected_invalid: int = 0
    answered_from_study: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    interpreter: bool = False

    def point(self, scheme: str) -> dict[str, Any]:
        r = self.per_scheme[scheme]
        return {"scheme": scheme, "kernel": r.kernel, "problem": r.problem_key,
                "config": dict(r.best_config) if r.best_config else None,
                "latency": r.best.to_dict() if r.best else None, "sqnr_db": self.sqnr_db.get(scheme),
                "default": r.default.to_dict() if r.default else None,
                "speedup_over_baseline": r.speedup_over_baseline, "trials": r.trials_total,
                "on_front": scheme in self.front}

    def to_dict(self) -> dict[str, Any]:
        return {"shape": self.shape, "dtype": self.dtype, "device": self.device, "study": self.study_name,
                "sampler": self.sampler, "seed": self.seed, "schemes": self.schemes,
                "points": [self.point(s) for s in self.schemes if s in self.per_scheme],
                "front": self.front, "min_sqnr_db": self.min_sqnr_db, "chosen": self.chosen,
                "baseline_name": self.baseline_name, "baseline": self.baseline.to_dict() if self.baseline else None,
                "trials_run": self.trials_run, "trials_total": self.trials_total,
                "rejected_invalid": self.rejected_invalid, "answered_from_study": self.answered_from_study,
                "failures": self.failures, "interrupted": self.interrupted, "interpreter": self.interpreter}


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """The names whose (latency, sqnr) no other point beats on both (no worse on one and
    better on the other), fastest first. Pure; ties keep both."""
    front = []
    for name, (ms, db) in points.items():
        dominated = any(o_ms <= ms and o_db >= db and (o_ms < ms or o_db > db)
                        for other, (o_ms, o_db) in points.items() if other != name)
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: (points[n][0], -points[n][1]))


def pick(front: Sequence[str], points: dict[str, tuple[float, float]], min_sqnr_db: float) -> str | None:
    """The fastest scheme on the front whose SQNR reaches `min_sqnr_db`, or None."""
    meeting = [n for n in front if points[n][1] >= min_sqnr_db]
    return min(meeting, key=lambda n: points[n][0]) if meeting else None


def quant_study_name(shape: dict[str, int], dtype: str, bias: bool, device: DeviceInfo) -> str:
    dims = ",".join(f"{k}={v}" for k, v in shape.items())
    return f"quant|{dims}|{dtype}|bias={int(bias)}|{device_class(device)}"


def _sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        with warnings.catch_warnings():  # multivariate / group are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=8)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise SchemeError(f"the joint quantization search runs the tpe or random sampler, not {name!r}")


JOINT_SAMPLERS = ("tpe", "random")
_KEY = "key"  # user attr: "<scheme>|<config>" of a trial a worker ran


def _key(scheme: str, config: Config) -> str:
    return f"{scheme}|{config}"


def quant_tune(cands: list[Candidate], device: DeviceInfo, evaluator_of: Callable[[Candidate], Evaluator], *,
               storage: str | None, options: SearchOptions = SearchOptions(),
               min_sqnr_db: float | None = None,
               on_trial: Callable[[str, Config, Outcome, int], None] | None = None) -> QuantTuneResult:
    """Search schemes x tile configs of one layer; see the module docstring.

    Args:
        cands: from `candidates` (all of one shape and dtype).
        evaluator_of: the evaluator of one candidate (its outcomes carry float_sqnr_db).
        storage: Optuna storage URL; None keeps the study in memory.
        options: trials, sampler (tpe or random), seed, timeout, early stop, re-timing (each
            scheme's `retime_top` fastest configs run again; the fastest re-timed one is its
            point; 0 keeps the study's timings).
        min_sqnr_db: pick the fastest front point reaching it.
        on_trial: called with (scheme, config, outcome, trials run) after every run.
    """
    if not cands:
        raise NoValidConfig("no quantization scheme to search")
    first = cands[0]
    shape = {d: first.problem[d] for d in ("M", "N", "K")}
    bias = first.problem.opt("bias") == "1"
    by_name = {c.scheme.name: c for c in cands}
    names = list(by_name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = quant_study_name(shape, first.problem.dtype, bias, device)
    study = optuna.create_study(study_name=name, storage=sqlalchemy_url(storage) if storage else None,
                                directions=["minimize", "maximize"],
                                sampler=_sampler(options.sampler, options.seed), load_if_exists=True)
    result = QuantTuneResult(shape=shape, dtype=first.problem.dtype, device=device.label, study_name=name,
                             sampler=options.sampler, seed=options.seed, schemes=names, min_sqnr_db=min_sqnr_db,
                             baseline_name=first.spec.baseline_name, interpreter=device.interpreter)
    scheme_dist = optuna.distributions.CategoricalDistribution(names)
    dists = {s: {f"{s}:{k}": d for k, d in by_name[s].space.distributions().items()} for s in names}
    evaluators = {s: evaluator_of(by_name[s]) for s in names}
    measured: dict[str, optuna.trial.FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False):
        if t.state.is_finished() and _KEY in t.user_attrs:
            measured.setdefault(t.user_attrs[_KEY], t)
    fallback = [(s, c) for s in names for c in by_name[s].space.valid_configs]
    random.Random(options.seed).shuffle(fallback)
    defaults = {s: by_name[s].spec.heuristic(by_name[s].problem, device) for s in names}
    start = time.monotonic()

    def best_ms(scheme: str) -> float | None:
        values = [t.values[0] for k, t in measured.items() if k.startswith(scheme + "|")
                  and t.state == TrialState.COMPLETE]
        return min(values) if values else None

    def run(scheme: str, config: Config, trial: optuna.trial.Trial | None) -> None:
        best = best_ms(scheme)
        stop_above = best * options.early_stop_factor if best is not None else None
        outcome = evaluators[scheme].evaluate(config, stop_above)
        attrs = {_KEY: _key(scheme, config), "scheme": scheme, "status": outcome.status, "kind": outcome.kind,
                 "reason": outcome.reason, "timing": outcome.timing.to_dict() if outcome.timing else None,
                 "float_sqnr_db": outcome.float_sqnr_db, "run_index": len(measured) + 1}
        values, state = None, TrialState.FAIL
        if outcome.ok and outcome.timing is not None and outcome.float_sqnr_db is not None:
            values, state = [outcome.timing.median_ms, round(outcome.float_sqnr_db / SQNR_RESOLUTION_DB)
                             * SQNR_RESOLUTION_DB], TrialState.COMPLETE
        elif outcome.status == oc.EARLY_STOPPED:
            state = TrialState.PRUNED
        elif outcome.ok:  # timed, but the evaluator measured no error: not a point of this search
            attrs.update(kind=oc.RUNTIME_ERROR, reason="no SQNR against the float matmul was measured")
        if trial is None:
            params = {"scheme": scheme, **{f"{scheme}:{k}": v for k, v in config.items()}}
            study.add_trial(optuna.trial.create_trial(params=params, distributions={"scheme": scheme_dist,
                            **dists[scheme]}, values=values, state=state, user_attrs=attrs))
        else:
            for k, v in attrs.items():
                trial.set_user_attr(k, v)
            study.tell(trial, values, state=state)
        measured[attrs[_KEY]] = study.get_trials(deepcopy=False)[-1] if trial is None else \
            study.get_trials(deepcopy=False)[trial.number]
        result.trials_run += 1
        if on_trial is not None:
            on_trial(scheme, config, outcome, result.trials_run)

    trial = None
    try:
        base = evaluators[names[0]].baseline()
        result.baseline = base.timing if base.ok else None
        for s in names:  # every scheme's default first: a point and a yardstick per scheme
            if result.trials_run < options.trials and _key(s, defaults[s]) not in measured \
                    and by_name[s].space.reject_reason(defaults[s]) is None:
                run(s, defaults[s], None)
        idle = 0
        total_valid = len(fallback)
        while result.trials_run < options.trials and len(measured) < total_valid:
            if options.timeout_s is not None and time.monotonic() - start >= options.timeout_s:
                break
            if idle >= options.max_idle:
                s, c = next((s, c) for s, c in fallback if _key(s, c) not in measured)
                study.enqueue_trial({"scheme": s, **{f"{s}:{k}": v for k, v in c.items()}})
                idle = 0
            trial = study.ask()
            s = trial.suggest_categorical("scheme", names)
            config = Config({k.partition(":")[2]: trial.suggest_categorical(k, d.choices)
                             for k, d in dists[s].items()})
            reason = by_name[s].space.reject_reason(config)
            if reason is not None:
                trial.set_user_attr("kind", oc.INVALID)
                trial.set_user_attr("reason", f"invalid: {reason}")
                study.tell(trial, state=TrialState.FAIL)
                result.rejected_invalid += 1
                idle += 1
            elif _key(s, config) in measured:
                earlier = measured[_key(s, config)]
                trial.set_user_attr("answered_from", earlier.number)
                study.tell(trial, earlier.values, state=earlier.state)
                result.answered_from_study += 1
                idle += 1
            else:
                run(s, config, trial)
                idle = 0
            trial = None
    except KeyboardInterrupt:
        result.interrupted = True
        if trial is not None:
            trial.set_user_attr("kind", oc.INTERRUPTED)
            study.tell(trial, state=TrialState.FAIL)
    _summarize(result, by_name, measured, defaults, device)
    if not result.interrupted and options.retime_top > 0:
        _retime(result, measured, evaluators, options.retime_top)
    _choose(result)
    return result


def _summarize(result: QuantTuneResult, by_name: dict[str, Candidate], measured: dict[str, optuna.trial.FrozenTrial],
               defaults: dict[str, Config], device: DeviceInfo) -> None:
    result.trials_total = len(measured)
    result.failures = dict(sorted(Counter(t.user_attrs.get("kind") for t in measured.values()
                                          if t.state == TrialState.FAIL).items()))
    for s, cand in by_name.items():
        mine = {k.partition("|")[2]: t for k, t in measured.items() if k.startswith(s + "|")}
        r = TuneResult(kernel=cand.spec.name, problem=cand.problem, problem_key=cand.spec.shape_key(cand.problem),
                       device=device.label, study_name=result.study_name, sampler=result.sampler, seed=result.seed,
                       valid_configs=len(cand.space), space_size=cand.spec.space_size,
                       baseline_name=cand.spec.baseline_name, baseline=result.baseline,
                       trials_total=len(mine), interpreter=device.interpreter, default_config=defaults[s])
        default_t = mine.get(str(defaults[s]))
        if default_t is not None and default_t.state == TrialState.COMPLETE:
            r.default = Timing(**default_t.user_attrs["timing"])
        elif default_t is not None:
            r.default_failure = default_t.user_attrs.get("reason")
        complete = [t for t in mine.values() if t.state == TrialState.COMPLETE]
        if complete:
            top = min(complete, key=lambda t: t.values[0])
            r.best, r.best_config = Timing(**top.user_attrs["timing"]), Config(
                {k.partition(":")[2]: int(v) for k, v in top.params.items() if k != "scheme"})
            r.trials_to_best = top.user_attrs.get("run_index")
            result.sqnr_db[s] = top.values[1]
        result.per_scheme[s] = r


def _retime(result: QuantTuneResult, measured: dict[str, optuna.trial.FrozenTrial], evaluators: dict[str, Evaluator],
            top: int) -> None:
    # Each scheme's `top` fastest configs again, on the same footing; the fastest re-timed one
    # is the scheme's point (with its own SQNR) before the front is drawn.
    for s, r in result.per_scheme.items():
        mine = sorted((t for k, t in measured.items() if k.startswith(s + "|") and t.state == TrialState.COMPLETE),
                      key=lambda t: t.values[0])[:top]
        best = None
        for t in mine:
            config = Config({k.partition(":")[2]: int(v) for k, v in t.params.items() if k != "scheme"})
            outcome = evaluators[s].evaluate(config, None)
            timing = outcome.timing if outcome.ok else None
            r.retimed.append({"config": dict(config), "study_ms": t.values[0],
                              "retimed": timing.to_dict() if timing else None,
                              "failure": outcome.reason if not outcome.ok else None})
            if timing is not None and (best is None or timing.median_ms < best[0].median_ms):
                best = (timing, config, t)
        if best is not None:
            r.best, r.best_config = best[0], best[1]
            r.trials_to_best = best[2].user_attrs.get("run_index")
            result.sqnr_db[s] = best[2].values[1]


def _choose(result: QuantTuneResult) -> None:
    points = {s: (r.best.median_ms, result.sqnr_db[s]) for s, r in result.per_scheme.items()
              if r.best is not None and s in result.sqnr_db}
    result.front = pareto_front(points)
    if result.min_sqnr_db is not None:
        result.chosen = pick(result.front, points, result.min_sqnr_db)
