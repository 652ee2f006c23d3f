"""Traffic-aware buckets for a built-in model (issue 14, part 1): the library behind
`infertune autotune --model NAME --traffic FILE --buckets N`.

For each (kernel, problem family) group whose token dim varies with the traffic (the matmuls,
norms and elementwise kernels; attention's shapes are exact and not bucketed):

1. the Ms the group meets under the histogram, weighted by launches: a layer's kernel runs
   once per layer per pass, and lm_head and a decoder's final norm see one row per sequence
   (runtime/launches.py), not the pass's token count;
2. candidate configs: a search (tuner.search.tune, the study stored as autotune's) at a few
   Ms (the most frequent, and quantiles of the traffic weighted by tokens), keeping each
   search's best few configs, plus the heuristic default at each M;
3. every candidate timed at every M of the histogram (through a `Measurer`: the isolated
   worker, or a planted latency table in tests and replays);
4. three plans compared on the same candidates: the heuristic (the default config at each
   M), power-of-two buckets (the boundaries of vLLM and SGLang, each bucket's best
   candidate) and traffic buckets (tuner.traffic.choose_buckets: at most N buckets and one
   config each, minimising the expected latency under the histogram).

Expected latency is per forward pass: a group's count-weighted mean latency per launch times
its launches per pass, summed over groups. Only the bucketed kernels count (attention is the
same under every plan). Decode steps are not in the histogram (their M is the batch size; tune
them with `autotune --model NAME --batch`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Protocol

import triton

import kernels as kernel_library
from kernels.device import DeviceInfo
from kernels.scheme_names import canonical_scheme
from kernels.spec import Config, KernelSpec, Problem
from profilers.timing import Timing
from runtime import ModelError, get_preset, kernel_launches
from runtime.embed import DEFAULT_MAX_LENGTH
from tuner import outcome as oc
from tuner.bucket_map import BucketMap
from tuner.keys import (
    bucketed_dim,
    device_class,
    hardware_of,
    kernel_source_hash,
    m_bucket,
    problem_family,
)
from tuner.outcome import Outcome
from tuner.record import TuningRecord
from tuner.search import Progress, SearchOptions, TuneResult, to_record, tune
from tuner.traffic import (
    BucketPlan,
    choose_buckets,
    expected_latency,
    fixed_buckets,
    pow2_uppers,
)
from tuner.traffic_io import Traffic

from .errors import UsageError

PLANS = ("heuristic", "pow2", "traffic")
# The reference launch list is taken at 3 sequences of 5 tokens: a launch whose token dim is
# 15 scales with the pass's tokens, one at 3 with its sequences (lm_head, a final norm).
_PROBE_BATCH, _PROBE_SEQ = 3, 5
# Past this many distinct Ms a group's Ms are rounded up to tuner.keys' fine buckets (1, 2, 3,
# 4, 6, 8, 12, ..., 4096: 25 points), so that timing every candidate at every M stays bounded.
# Boundaries then fall on those values, which keeps every real M in its rounded M's bucket.
MAX_POINTS = 64


@dataclass(frozen=True)
class GroupLaunch:
    """Launches of one group in a forward pass: `count` of them, M = the pass's tokens
    (per="token") or its sequences (per="sequence")."""

    roles: tuple[str, ...]
    count: int
    per: str


@dataclass
class Group:
    """One (kernel, family) whose token dim follows the traffic."""

    spec: KernelSpec
    family: str
    dim: str                       # the bucketed dim: "M" or "T"
    shape: dict[str, int]          # every dim but `dim` as the model launches it
    dtype: str
    options: dict[str, str]
    launches: list[GroupLaunch]
    histogram: dict[int, float]    # M -> launches over all passes of the traffic
    passes: int                    # forward passes of the traffic
    coarsened: bool = False        # Ms rounded up to tuner.keys' fine buckets (see MAX_POINTS)

    @property
    def kernel(self) -> str:
        return self.spec.name

    @property
    def per_pass(self) -> float:
        """Launches of this group per forward pass."""
        return sum(self.histogram.values()) / self.passes

    def problem(self, m: int) -> Problem:
        return self.spec.problem({**self.shape, self.dim: m}, self.dtype, self.options)


def model_groups(model: str, traffic: Traffic, *, dtype: str, quant: str | None,
                 kernel: str | None = None, max_points: int = MAX_POINTS) -> list[Group]:
    """The groups of `model` under `traffic`, in launch order; `kernel` keeps only its own.
    Raises UsageError for an unknown model or quant, or a kernel the model does not launch."""
    try:
        config = get_preset(model).config
        quant = canonical_scheme(quant) if quant is not None else None
        launches = kernel_launches(config, batch=_PROBE_BATCH, seq=_PROBE_SEQ, dtype=dtype, quant=quant, gen=0)
    except ModelError as exc:
        raise UsageError(str(exc)) from None
    groups: dict[tuple[str, str], Group] = {}
    for launch in launches:
        spec = kernel_library.get(launch.kernel)
        dim = bucketed_dim(spec)
        if dim is None:
            continue  # attention: exact shapes, the same under every plan
        value = launch.shape[dim]
        per = {_PROBE_BATCH * _PROBE_SEQ: "token", _PROBE_BATCH: "sequence"}.get(value)
        if per is None:
            raise AssertionError(f"{launch.kernel} {dim}={value} follows neither tokens nor sequences")
        family = problem_family(spec, launch.problem())
        group = groups.get((spec.name, family))
        if group is None:
            shape = {d: v for d, v in launch.shape.items() if d != dim}
            group = groups[spec.name, family] = Group(spec, family, dim, shape, launch.dtype, dict(launch.options),
                                                      [], {}, traffic.total)
        group.launches.append(GroupLaunch(launch.roles, launch.count, per))
    found = list(groups.values())
    if kernel is not None:
        launched = sorted({g.kernel for g in found})
        found = [g for g in found if g.kernel == kernel]
        if not found:
            raise UsageError(f"{model} launches no bucketed {kernel}; its bucketed kernels: {', '.join(launched)}")
    for group in found:
        hist: dict[int, float] = {}
        for (tokens, sequences), count in traffic.passes.items():
            for launch in group.launches:
                m = tokens if launch.per == "token" else sequences
                hist[m] = hist.get(m, 0.0) + count * launch.count
        if len(hist) > max_points:
            rounded: dict[int, float] = {}
            for m, weight in hist.items():
                rounded[m_bucket(m)] = rounded.get(m_bucket(m), 0.0) + weight
            hist, group.coarsened = rounded, True
        group.histogram = dict(sorted(hist.items()))
    return found


def model_max_length(model: str) -> tuple[int, bool]:
    """(the longest request `model` serves, whether a longer one is cut to it): an encoder
    truncates to the embed pipeline's max length (runtime/embed.py: 256, or its positions if
    fewer); a decoder's prompt must fit its context."""
    config = get_preset(model).config
    if config.family == "bert":
        return min(DEFAULT_MAX_LENGTH, config.max_positions), True
    return config.max_positions, False


def representative_ms(histogram: dict[int, float], points: int) -> list[int]:
    """Up to `points` distinct Ms to search for candidates, sorted: the most frequent M, and
    quantiles (i + 0.5) / (points - 1) of the histogram weighted by tokens (count x M): a
    pass's cost grows with its M, so a rare large M can weigh more than a common small one."""
    mode = max(sorted(histogram), key=lambda m: histogram[m])
    out = [mode]
    weights = {m: w * m for m, w in histogram.items()}
    total = sum(weights.values())
    for i in range(points - 1):
        target, seen = (i + 0.5) / (points - 1) * total, 0.0
        for m in sorted(weights):
            seen += weights[m]
            if seen >= target:
                out.append(m)
                break
    return sorted(set(out))


# -- measuring ------------------------------------------------------------------------------

class Measurer(Protocol):
    """Where timings come from: the isolated worker (WorkerMeasurer) or a planted table."""

    def search(self, spec: KernelSpec, problem: Problem, *, options: SearchOptions, storage: str | None,
               on_trial: Callable[[Progress], None] | None) -> tuple[TuneResult, TuningRecord | None]:
        """Search `problem`'s configs; the result and its record (None: nothing to store)."""
        ...

    def latencies(self, spec: KernelSpec, problem: Problem, configs: Sequence[Config]) -> list[float]:
        """The median ms of each config at `problem` (inf where it failed)."""
        ...

    def close(self) -> None:
        ...


class WorkerMeasurer:
    """Times configs in one isolated worker shared by every problem (tuner/worker.py); the
    searches go through infertune.autotune.autotune_problem. On a GPU each M's candidates
    are timed over two interleaved rounds (forward, then backward; each keeps its fastest),
    so a config is not favoured by when it ran; on the interpreter once (CPU time is slow)."""

    def __init__(self, device: DeviceInfo, settings: Any, *, seed: int, trial_timeout_s: float) -> None:
        from tuner.worker import Worker

        self.device, self.settings, self.seed = device, settings, seed
        self.trial_timeout_s = trial_timeout_s
        self.rounds = 2 if device.kind == "cuda" and not device.interpreter else 1
        self.worker = Worker()

    def search(self, spec, problem, *, options, storage, on_trial):
        from .autotune import autotune_problem

        return autotune_problem(spec, problem, self.device, storage=storage, options=options,
                                trial_timeout_s=self.trial_timeout_s, settings=self.settings, on_trial=on_trial,
                                worker=self.worker)

    def latencies(self, spec, problem, configs):
        from tuner.worker import WorkerEvaluator

        from .autotune import timing_policy

        policy = timing_policy(self.settings, self.device)
        evaluator = WorkerEvaluator(spec.name, problem, seed=self.seed, policy=policy,
                                    trial_timeout_s=self.trial_timeout_s)
        evaluator.worker = self.worker  # one process for every problem (its own starts on first use: never)
        best = [math.inf] * len(configs)
        order = list(range(len(configs)))
        for r in range(self.rounds):
            for i in (order if r % 2 == 0 else order[::-1]):
                outcome = evaluator.evaluate(configs[i])
                if outcome.ok and outcome.timing is not None:
                    best[i] = min(best[i], outcome.timing.median_ms)
        return best

    def close(self) -> None:
        self.worker.close()


class TableEvaluator:
    """A tuner.search.Evaluator answering from a latency function (a replay or planted
    timings): `ms(config)` gives the median, inf for a config that fails."""

    def __init__(self, ms: Callable[[Config], float], interpreter: bool) -> None:
        self.ms, self.interpreter = ms, interpreter

    def evaluate(self, config: Config, stop_above_ms: float | None = None, timeout_s: float | None = None) -> Outcome:
        value = self.ms(config)
        if not math.isfinite(value):
            return Outcome.failed(oc.RUNTIME_ERROR, f"no latency for {config} in the table")
        return Outcome(status=oc.OK, timing=_timing(value, self.interpreter))

    def baseline(self) -> Outcome:
        return Outcome.failed(oc.RUNTIME_ERROR, "no baseline in a latency table")

    def compile_pool(self, workers: int, *, interpreter: bool):
        return None


def _timing(ms: float, interpreter: bool) -> Timing:
    return Timing(median_ms=ms, p10_ms=ms, p90_ms=ms, min_ms=ms, mean_ms=ms, reps=1, method="table",
                  l2_flushed=False, interpreter=interpreter)


class TableMeasurer:
    """A Measurer answering from `latency(kernel, problem, config) -> ms` (inf: fails): planted
    timings in tests, recorded ones in replays. Searches run through tuner.search.tune against
    the same table; `calls` counts the timings asked for."""

    def __init__(self, latency: Callable[[str, Problem, Config], float], device: DeviceInfo) -> None:
        self.latency, self.device, self.calls = latency, device, 0

    def _ms(self, spec: KernelSpec, problem: Problem) -> Callable[[Config], float]:
        def one(config: Config) -> float:
            self.calls += 1
            return self.latency(spec.name, problem, config)
        return one

    def search(self, spec, problem, *, options, storage, on_trial):
        result = tune(spec, problem, self.device, TableEvaluator(self._ms(spec, problem), self.device.interpreter),
                      storage=storage, options=options, on_trial=on_trial)
        return result, None if result.interrupted else to_record(spec, result, self.device)

    def latencies(self, spec, problem, configs):
        one = self._ms(spec, problem)
        return [one(c) for c in configs]

    def close(self) -> None:
        pass


# -- plans ----------------------------------------------------------------------------------

@dataclass
class Plan:
    """One way of choosing a config per M: its buckets (None for the heuristic, which picks
    per M), the config of each, and the expected latency per launch and per forward pass."""

    name: str
    uppers: tuple[int, ...] | None
    configs: tuple[Config, ...] | None
    per_launch_ms: float | None    # None: some M has no finite latency under this plan
    per_pass_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "uppers": list(self.uppers) if self.uppers else None,
                "configs": [dict(c) for c in self.configs] if self.configs else None,
                "per_launch_ms": self.per_launch_ms, "per_pass_ms": self.per_pass_ms}


@dataclass
class GroupResult:
    group: Group
    candidates: list[Config]
    defaults: dict[int, Config]                   # the heuristic config at each M
    latency: dict[int, dict[Config, float]]       # M -> config -> ms (inf: failed or invalid there)
    plans: dict[str, Plan]
    searched: list[int]                           # the Ms searched for candidates
    results: list[TuneResult] = field(default_factory=list)
    records: list[TuningRecord] = field(default_factory=list)
    bucket_map: BucketMap | None = None

    def buckets_text(self, name: str = "traffic") -> str:
        """"1-3 | 4-24 | 25-512" (the last bucket also takes larger Ms)."""
        plan = self.plans[name]
        if not plan.uppers:
            return "per M"
        lows = (1, *(u + 1 for u in plan.uppers[:-1]))
        return " | ".join(f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in zip(lows, plan.uppers))

    def to_dict(self) -> dict[str, Any]:
        g = self.group
        traffic = self.plans["traffic"]
        return {
            "kernel": g.kernel, "family": g.family, "dim": g.dim,
            "roles": sorted({r for launch in g.launches for r in launch.roles}),
            "launches_per_pass": g.per_pass, "coarsened": g.coarsened,
            "histogram": {str(m): w for m, w in g.histogram.items()},
            "searched_ms": self.searched, "candidates": len(self.candidates),
            "buckets": [{"low": lo, "high": hi, "config": dict(c)} for (lo, hi), c in
                        zip(_ranges(traffic.uppers or ()), traffic.configs or ())],
            "buckets_text": self.buckets_text(),
            "pow2_buckets": len(self.plans["pow2"].uppers or ()),
            "expected_ms": {name: self.plans[name].per_pass_ms for name in PLANS},
            "plans": {name: self.plans[name].to_dict() for name in PLANS},
        }


def _ranges(uppers: Sequence[int]) -> list[tuple[int, int]]:
    return list(zip((1, *(u + 1 for u in uppers[:-1])), uppers))


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def compare_plans(group: Group, latency: dict[int, dict[Config, float]], candidates: list[Config],
                  defaults: dict[int, Config], buckets: int) -> dict[str, Plan]:
    """The heuristic, power-of-two and traffic plans of `group` over the same candidates.
    Raises UsageError when no candidate runs at some M of the traffic."""
    hist = group.histogram
    total = sum(hist.values())
    per_pass = group.per_pass

    def plan(name: str, p: BucketPlan | None, per_launch: float) -> Plan:
        finite = _finite_or_none(per_launch)
        return Plan(name, p.uppers if p else None, tuple(p.configs) if p else None, finite,
                    finite * per_pass if finite is not None else None)

    heuristic = sum(w * latency[m].get(defaults[m], math.inf) for m, w in hist.items()) / total
    table = {m: {c: latency[m][c] for c in candidates} for m in hist}
    try:
        traffic = choose_buckets(hist, table, buckets)
        pow2 = fixed_buckets(hist, table, pow2_uppers(list(hist)))
    except ValueError as exc:
        raise UsageError(f"{group.kernel} {group.family}: {exc} (every candidate failed there)") from None
    assert math.isclose(traffic.expected, expected_latency(hist, table, traffic), rel_tol=1e-9)
    return {"heuristic": plan("heuristic", None, heuristic), "pow2": plan("pow2", pow2, pow2.expected),
            "traffic": plan("traffic", traffic, traffic.expected)}


def tune_group(group: Group, *, buckets: int, device: DeviceInfo, measurer: Measurer, options: SearchOptions,
               storage: str | None, points: int = 4, per_point: int = 2,
               warm_start: Callable[[KernelSpec, Problem], tuple[Config, ...]] | None = None,
               on_trial: Callable[[int, Progress], None] | None = None) -> GroupResult:
    """Candidates, timings and the three plans of one group (see the module docstring).

    points: Ms searched (`representative_ms`); per_point: configs each search gives
    (its best ones by median); warm_start: configs to enqueue first in each search."""
    spec = group.spec
    searched = representative_ms(group.histogram, points)
    candidates: list[Config] = []
    results, records = [], []
    for m in searched:
        problem = group.problem(m)
        opts = options if warm_start is None else replace(options, warm_start=tuple(warm_start(spec, problem)))
        result, record = measurer.search(spec, problem, options=opts, storage=storage,
                                         on_trial=(lambda p, m=m: on_trial(m, p)) if on_trial else None)
        results.append(result)
        if result.interrupted:  # Ctrl-C inside the search: its study keeps what it measured
            raise KeyboardInterrupt
        if record is not None:
            records.append(record)
        complete = sorted((h for h in result.history if h["state"] == "complete" and h["median_ms"] is not None),
                          key=lambda h: h["median_ms"])
        best = [result.best_config] if result.best_config is not None else []
        # this search's best `per_point` distinct configs: the re-timed winner first
        for config in list(dict.fromkeys(best + [Config(h["config"]) for h in complete]))[:per_point]:
            if config not in candidates:
                candidates.append(config)
    defaults = {m: spec.heuristic(group.problem(m), device) for m in group.histogram}
    for config in dict.fromkeys(defaults.values()):
        if config not in candidates:
            candidates.append(config)
    latency: dict[int, dict[Config, float]] = {}
    for m in group.histogram:
        problem = group.problem(m)
        runnable = [c for c in candidates if spec.reject_reason(c, problem, device) is None]
        timed = dict(zip(runnable, measurer.latencies(spec, problem, runnable)))
        latency[m] = {c: timed.get(c, math.inf) for c in candidates}
    plans = compare_plans(group, latency, candidates, defaults, buckets)
    out = GroupResult(group, candidates, defaults, latency, plans, searched, results, records)
    out.bucket_map = bucket_map_of(out, device, buckets)
    return out


def bucket_map_of(result: GroupResult, device: DeviceInfo, buckets: int) -> BucketMap:
    """The database's map of a group's traffic plan: boundaries, configs and the evidence
    (histogram, the three plans' expected latency per pass and per launch, bucket counts)."""
    g, plan = result.group, result.plans["traffic"]
    cls = device_class(device)
    extra = {"histogram": {str(m): w for m, w in g.histogram.items()}, "buckets_requested": buckets,
             "buckets": len(plan.uppers or ()), "launches_per_pass": g.per_pass, "coarsened": g.coarsened,
             "expected_ms_per_pass": {name: result.plans[name].per_pass_ms for name in PLANS},
             "expected_ms_per_launch": {name: result.plans[name].per_launch_ms for name in PLANS},
             "pow2_buckets": len(result.plans["pow2"].uppers or ()), "candidates": len(result.candidates),
             "interpreter": device.interpreter}
    if cls.capability != "cpu":  # what device matching compares for a renamed card, as records do
        extra["device"] = hardware_of(device)
    made = BucketMap(kernel=g.kernel, device_name=cls.name, capability=cls.capability, family=g.family,
                     source_hash=kernel_source_hash(g.spec), triton_version=triton.__version__,
                     uppers=tuple(plan.uppers or ()), configs=tuple(dict(c) for c in plan.configs or ()),
                     created=datetime.now(timezone.utc).isoformat(timespec="seconds"), extra=extra)
    made.check()
    return made


# -- the whole model ------------------------------------------------------------------------

@dataclass
class TrafficResult:
    model: str
    traffic: Traffic
    buckets: int
    groups: list[GroupResult]
    notes: list[str] = field(default_factory=list)

    def per_pass(self, name: str) -> float | None:
        """Expected ms per forward pass under plan `name`, summed over the groups (None when a
        group has no finite latency under it)."""
        values = [g.plans[name].per_pass_ms for g in self.groups]
        return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """The run.json "traffic" section (reports/run_schema.json, $defs/traffic)."""
        return {"model": self.model, "buckets": self.buckets, "traffic": self.traffic.to_dict(),
                "expected_ms": {name: self.per_pass(name) for name in PLANS},
                "groups": [g.to_dict() for g in self.groups], "notes": list(self.notes)}


def traffic_autotune(model: str, traffic: Traffic, *, buckets: int, dtype: str, quant: str | None, device: DeviceInfo,
                     measurer: Measurer, options: SearchOptions, storage: str | None, kernel: str | None = None,
                     points: int = 4, per_point: int = 2,
                     warm_start: Callable[[KernelSpec, Problem], tuple[Config, ...]] | None = None,
                     on_group: Callable[[int, int, Group], None] | None = None,
                     on_trial: Callable[[Group, int, Progress], None] | None = None) -> TrafficResult:
    """Traffic buckets for every bucketed group of `model` (or `kernel`'s); see the module
    docstring. on_group(i, n, group) is called before each group is tuned.
    Raises UsageError (bad model, kernel, or a bucket count below 1)."""
    if isinstance(buckets, bool) or not isinstance(buckets, int) or not 1 <= buckets <= 64:
        raise UsageError(f"--buckets must be an integer from 1 to 64, got {buckets!r}")
    groups = model_groups(model, traffic, dtype=dtype, quant=quant, kernel=kernel)
    for group in groups:
        reason = group.spec.unsupported_reason(group.problem(1), device)
        if reason:
            raise UsageError(f"{group.kernel} with {group.dtype} is not supported on this device: {reason}")
    out: list[GroupResult] = []
    for i, group in enumerate(groups):
        if on_group is not None:
            on_group(i, len(groups), group)
        out.append(tune_group(group, buckets=buckets, device=device, measurer=measurer, options=options,
                              storage=storage, points=points, per_point=per_point, warm_start=warm_start,
                              on_trial=(lambda m, p, g=group: on_trial(g, m, p)) if on_trial else None))
    notes = [("pow2 and traffic plans use the same candidate configs (each searched M's best, and the heuristic "
              "defaults); only the bucket boundaries differ. Expected latency counts the bucketed kernels only "
              "(attention is the same under every plan).")]
    if traffic.kind == "histogram":
        notes.append("the traffic gave tokens per pass only: each pass is taken as one sequence (lm_head and a "
                     "decoder's final norm at M=1); give raw request lengths and --max-batch to model batches")
    if traffic.truncated:
        notes.append(f"{traffic.truncated} request(s) longer than the model's max length were cut to it, as the "
                     f"runtime truncates them")
    if any(g.group.coarsened for g in out):
        notes.append(f"groups with more than {MAX_POINTS} distinct Ms had them rounded up to tuner.keys' fine "
                     f"buckets before timing")
    return TrafficResult(model, traffic, buckets, out, notes)
