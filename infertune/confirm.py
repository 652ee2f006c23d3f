"""End-to-end confirmation of new tuning records: `autotune --model NAME --confirm`.

A record that wins its kernel's benchmark can be flat or worse in the model (vllm PR 44152:
0.99x end to end at M=2048): the kernel is timed alone, hot in L2, with its own launch; in
the model it shares the GPU with its neighbours. So before new records are saved the model's
own steps are timed with them and without them:

- the steps: for each batch size, one decode step (under a CUDA graph on a GPU, the way
  `+cg` serves) and one prefill of `seq` tokens (eager: a prefill copies lengths from the
  host, which a graph cannot capture); an encoder's forward pass. Each step launches exactly
  runtime.launches.kernel_launches' list for its phase.
- A (old): what the database at `db` resolves today (tuner.database.runtime_source: exact
  record, else nearest, else the heuristic), in a runtime.configs.LaunchConfigs table.
- B (new): the same with a record's config answering its exact problem key first (`Overlay`).

Attribution is per record: each record is its own candidate B_r (A plus that record only),
and with several records in a step one more candidate holds them all (the step's headline).
Per round and step the order is mirrored, A B1 .. Bn Bn .. B1 A (ABBA generalized): every
candidate's two timings sit as far from the round's middle as A's two, so a linear drift
(clocks, temperature) adds the same to both sums and cancels from each ratio. Cost per
round and step: 2 (n + 1) timings for n records (n > 1: 2 (n + 2) with the all-records
candidate), against 4 n for a separate A B B A per record; grouping records per kernel
would cost less (one candidate per kernel) but an improving matmul record would hide a
regressing one of the same kernel, which is what this check exists to catch.

A record launched by several steps (lm_head and the final norm at M = batch run in prefill
and decode) is judged on their weighted sum: one prefill and gen - 1 decode steps per
request (generate's count), so time per request decides. Per round r the ratio is
B_r / A_r; the estimate is the ratio of the sums over rounds and its interval a percentile
bootstrap over rounds (`CONFIDENCE`, `RESAMPLES`, seeded). A record is confirmed when the
interval's upper end is below 1 - MIN_GAIN; otherwise it is kept, marked unconfirmed, with
the evidence (extra["confirmation"]: ratio, ci, rounds, step, reason).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import kernels as kernel_library
from kernels.config_source import ConfigSource, HeuristicSource, Resolution
from kernels.device import DeviceInfo
from kernels.errors import KernelError
from kernels.scheme_names import canonical_scheme
from kernels.spec import Config, KernelSpec, Problem
from runtime.configs import LaunchConfigs
from runtime.errors import ModelError
from runtime.launches import kernel_launches
from runtime.model_config import ModelConfig
from tuner.database import runtime_source
from tuner.record import TuningRecord

from .errors import UsageError
from .settings import Settings

CONFIDENCE = 0.95
RESAMPLES = 2000
# A step change below 0.2% is not worth a record's mark even when many rounds resolve it:
# a guard against confirming what no user would notice, and it keeps a pure-noise record
# from being confirmed by the 2.5% of intervals that miss 1 on the low side. Not measured.
MIN_GAIN = 0.002
ROUNDS_GPU = 7
ROUNDS_CPU = 3  # the interpreter runs a step in ~0.15 s per layer (1-layer toy model, 2 CPUs)
CPU_NOTE = ("step times are CPU wall clock of Triton's interpreter: they say nothing about GPU speed, "
            "and neither do these verdicts")

CONFIRMED, UNCONFIRMED, NOT_EXERCISED = "confirmed", "unconfirmed", "not exercised"


@dataclass(frozen=True)
class Step:
    """One timed unit of the model: phase "prefill" / "decode" / "forward" (encoder) at a
    batch size; `weight` is how many times a request runs it; `launches` the (kernel,
    problem) pairs it launches, `counts` how many times each."""

    phase: str
    batch: int
    seq: int
    gen: int
    weight: int
    launches: tuple[tuple[str, Problem], ...]
    counts: tuple[int, ...]

    @property
    def name(self) -> str:
        if self.phase == "decode":
            return f"decode b={self.batch}"
        return f"{self.phase} b={self.batch} s={self.seq}"


# step_timer(step, source) -> one step time in ms with `source` (a prepared LaunchConfigs).
StepTimer = Callable[[Step, ConfigSource], float]


def model_steps(config: ModelConfig, *, batches: Sequence[int], seq: int, gen: int, dtype: str,
                quant: str | None) -> list[Step]:
    """The steps whose time decides: per batch a prefill and (decoders, gen > 0) a decode
    step, or an encoder's forward. Raises the runtime's InvalidWorkload for bad sizes."""
    steps = []
    encoder = config.family == "bert"
    for batch in batches:
        launches = kernel_launches(config, batch=batch, seq=seq, dtype=dtype, quant=quant, gen=0 if encoder else gen)
        for phase in ("prefill", "decode"):
            mine = [x for x in launches if x.phase == phase]  # one per problem: kernel_launches dedupes
            if mine:
                weight = 1 if phase == "prefill" else max(gen - 1, 1)
                steps.append(Step("forward" if encoder else phase, batch, seq, gen, weight,
                                  tuple((x.kernel, x.problem()) for x in mine), tuple(x.count for x in mine)))
    return steps


class Overlay:
    """A ConfigSource: the given records' configs for their exact (kernel, problem key), the
    inner source for everything else."""

    def __init__(self, inner: ConfigSource, records: Sequence[TuningRecord]) -> None:
        self.inner = inner
        self.table = {(r.kernel, r.problem_key): Config(r.config) for r in records}

    def resolve(self, spec: KernelSpec, problem: Problem, device: DeviceInfo) -> Resolution:
        key = spec.shape_key(problem)
        config = self.table.get((spec.name, key))
        if config is None:
            return self.inner.resolve(spec, problem, device)
        return Resolution(config, "database", f"new record for {key} (being confirmed)")


@dataclass
class RecordResult:
    """One record's verdict and evidence; `old_ms` / `new_ms` are the mean time of the steps
    that launch it (weighted as a request runs them), over the rounds."""

    record: TuningRecord
    verdict: str
    reason: str
    steps: tuple[str, ...] = ()
    ratio: float | None = None
    ci: tuple[float, float] | None = None
    old_ms: float | None = None
    new_ms: float | None = None
    rounds: int = 0

    @property
    def confirmed(self) -> bool:
        return self.verdict == CONFIRMED

    def evidence(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "ci": list(self.ci) if self.ci else None, "rounds": self.rounds,
                "step": " + ".join(self.steps) or None, "reason": self.reason}


@dataclass
class StepResult:
    """A step with every exercised record at once against the old configs (the headline)."""

    name: str
    records: int
    old_ms: float
    new_ms: float
    ratio: float
    ci: tuple[float, float]


@dataclass
class ConfirmReport:
    model: str
    device: str
    interpreter: bool
    rounds: int
    seed: int
    results: list[RecordResult]
    steps: list[StepResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def records(self) -> list[TuningRecord]:
        """The records with extra["confirmed"] and extra["confirmation"] set, in input order."""
        return [replace(r.record, extra={**r.record.extra, "confirmed": r.confirmed, "confirmation": r.evidence()})
                for r in self.results]

    @property
    def counts(self) -> dict[str, int]:
        return {v: sum(r.verdict == v for r in self.results) for v in (CONFIRMED, UNCONFIRMED, NOT_EXERCISED)}

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One row per record, for display: kernel, problem, steps, old/new ms, ratio, ci, verdict, reason."""
        return [{"kernel": r.record.kernel, "problem": r.record.problem_key, "steps": list(r.steps),
                 "old_ms": r.old_ms, "new_ms": r.new_ms, "ratio": r.ratio, "ci": list(r.ci) if r.ci else None,
                 "verdict": r.verdict, "reason": r.reason} for r in self.results]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "device": self.device, "interpreter": self.interpreter, "rounds": self.rounds,
                "seed": self.seed, "confidence": CONFIDENCE, "min_gain": MIN_GAIN, "counts": self.counts,
                "steps": [{"name": s.name, "records": s.records, "old_ms": s.old_ms, "new_ms": s.new_ms,
                           "ratio": s.ratio, "ci": list(s.ci)} for s in self.steps],
                "records": self.rows, "notes": list(self.notes)}


def confirm_records(model: str, records: Sequence[TuningRecord], *, db: str | None, device: DeviceInfo,
                    batches: Sequence[int], seq: int, gen: int, dtype: str, quant: str | None, seed: int,
                    settings: Settings | None = None, rounds: int | None = None,
                    step_timer: StepTimer | None = None) -> ConfirmReport:
    """Time `model`'s steps with and without each of `records` and mark each confirmed or not.

    Args:
        model: a built-in model name or a model path (runtime.loading.load_model reads it).
        records: the new records (this device's), not yet saved.
        db: the database whose answers the records would replace (missing: the heuristic).
        batches, seq, gen, dtype, quant: the workload the records were tuned for.
        seed: the bootstrap's and the step inputs' seed.
        settings: timing budgets for the default timer (default Settings.from_env()).
        rounds: ABBA rounds (default 7 on a GPU, 3 on the CPU).
        step_timer: times one step with a source, in ms; default `ModelStepTimer` (loads
            the model on the triton backend, times with profilers.timing.measure).

    Returns a ConfirmReport; its `.records` carry the marks. Raises UsageError for a bad
    model, size or rounds, and the runtime's ModelError for a model that cannot load.
    """
    if isinstance(rounds, bool) or (rounds is not None and (not isinstance(rounds, int) or rounds < 2)):
        raise UsageError(f"confirmation needs at least 2 rounds; got {rounds!r}")
    rounds = rounds or (ROUNDS_CPU if device.interpreter else ROUNDS_GPU)
    quant = None if quant in (None, "none") else canonical_scheme(quant)  # "w4g128" names "int4-g128"
    settings = settings or Settings.from_env()
    config = _model_config(model)
    try:
        steps = model_steps(config, batches=batches, seq=seq, gen=gen, dtype=dtype, quant=quant)
    except (ModelError, KernelError) as exc:
        raise UsageError(f"{model}: {exc}") from None
    inner, warning = runtime_source(db) if db is not None else (HeuristicSource(), None)
    notes = [warning] if warning else []
    if device.interpreter:
        notes.append(CPU_NOTE)
    if step_timer is None:
        from .confirm_timer import ModelStepTimer

        step_timer = ModelStepTimer(model, device, dtype=dtype, quant=quant, seed=seed, settings=settings)

    old = {i: _prepared(inner, step, device) for i, step in enumerate(steps)}
    results: dict[int, RecordResult] = {}
    launched_by: dict[int, list[int]] = {}  # record index -> indices of the steps that launch it
    for n, record in enumerate(records):
        where = [i for i, step in enumerate(steps)
                 if any(k == record.kernel and kernel_library.get(k).shape_key(p) == record.problem_key
                        for k, p in step.launches)]
        verdict = _untimed_verdict(record, where, steps, old, device, model)
        if verdict is not None:
            results[n] = verdict
        else:
            launched_by[n] = where
    # step index -> [(label, record indices, its prepared source)], each source resolved once
    candidates = {i: [(label, members, _prepared(Overlay(inner, [records[n] for n in members]), steps[i], device))
                      for label, members in cands]
                  for i, cands in _candidates(steps, launched_by).items()}
    times = _run_rounds(steps, old, candidates, rounds, step_timer)

    rng = random.Random(seed)
    for n, where in launched_by.items():
        results[n] = _judge(records[n], where, steps, times, rounds, rng, label=n)
    headline = []
    for i, cands in candidates.items():
        label = "all" if len(cands) > 1 else cands[0][0]
        a, b = _paired(times, [i], steps, label, rounds)
        ratio, ci = bootstrap_ratio(a, b, rng)
        headline.append(StepResult(steps[i].name, len(cands[-1][1]), _mean(a) / steps[i].weight,
                                   _mean(b) / steps[i].weight, ratio, ci))
    return ConfirmReport(model, device.label, device.interpreter, rounds, seed,
                         [results[n] for n in range(len(records))], headline, notes)


def _model_config(model: str) -> ModelConfig:
    """The config of a built-in model, or of a Hugging Face directory / GGUF file (header only)."""
    from pathlib import Path

    from runtime.presets import PRESETS

    preset = next((p for p in PRESETS if p.name == model), None)
    if preset is not None:
        return preset.config
    path = Path(model).expanduser()
    if not path.exists():
        raise UsageError(f"unknown model {model!r}: not a built-in model "
                         f"({', '.join(p.name for p in PRESETS)}) nor an existing path")
    if path.is_file() and path.suffix == ".gguf":
        from runtime.gguf_loader import (
            load_gguf,  # reads the tensors too: a rare path, kept simple
        )

        return load_gguf(path).config
    from runtime.hf_loader import read_config

    return ModelConfig.from_hf_config(read_config(path))


def _prepared(source: ConfigSource, step: Step, device: DeviceInfo) -> LaunchConfigs:
    table = LaunchConfigs(source, device)
    table.prepare(step.launches)
    return table


def _untimed_verdict(record: TuningRecord, where: list[int], steps: list[Step], old: dict[int, LaunchConfigs],
                     device: DeviceInfo, model: str) -> RecordResult | None:
    """The verdict of a record that needs no timing (not launched, rejected, unchanged), else None."""
    if not where:
        sizes = sorted({s.batch for s in steps})
        return RecordResult(record, NOT_EXERCISED, f"{model} does not launch it at batch {sizes}, prompt "
                            f"{steps[0].seq if steps else '-'}, gen {steps[0].gen if steps else '-'}")
    spec = kernel_library.get(record.kernel)
    problem = next(p for k, p in steps[where[0]].launches
                   if k == record.kernel and spec.shape_key(p) == record.problem_key)
    config = Config(record.config)
    reason = spec.reject_reason(config, problem, device)
    names = tuple(steps[i].name for i in where)
    if reason:
        return RecordResult(record, UNCONFIRMED, f"config rejected on this device: {reason}", names)
    before = old[where[0]].table[(record.kernel, problem)]
    if before.config == config:
        if before.source == "database" and "confirmed" in getattr(before, "marks", ()):
            return RecordResult(record, CONFIRMED, "same config as the confirmed record it replaces; not re-timed",
                                names)
        return RecordResult(record, UNCONFIRMED, f"same config as the {before.source} config it replaces: "
                            "nothing changes end to end", names)
    return None


def _candidates(steps: list[Step], launched_by: dict[int, list[int]]) -> dict[int, list]:
    """Per step: (label, record indices) for each record it launches, then ("all", every one)
    when there are several."""
    out: dict[int, list] = {}
    for n, where in launched_by.items():
        for i in where:
            out.setdefault(i, []).append((n, [n]))
    for cands in out.values():
        if len(cands) > 1:
            cands.append(("all", [n for _, members in cands for n in members]))
    return dict(sorted(out.items()))  # steps in launch order: prefill, then decode, per batch


def schedule(candidates: Sequence[Any]) -> list[Any]:
    """One round's order for a step: A, the candidates, the candidates reversed, A (None is A)."""
    return [None, *candidates, *reversed(candidates), None]


def _run_rounds(steps: list[Step], old: dict[int, LaunchConfigs], candidates: dict[int, list], rounds: int,
                step_timer: StepTimer) -> dict[tuple[int, int, Any], float]:
    """(round, step, label or "old") -> the sum of that round's two timings."""
    times: dict[tuple[int, int, Any], float] = {}
    for r in range(rounds):
        for i, cands in candidates.items():
            by_label = {label: source for label, _, source in cands}
            for label in schedule([label for label, _, _ in cands]):
                source = old[i] if label is None else by_label[label]
                ms = float(step_timer(steps[i], source))
                if not math.isfinite(ms) or ms <= 0:
                    raise UsageError(f"step {steps[i].name} timed {ms!r} ms; a step time must be positive")
                key = (r, i, "old" if label is None else label)
                times[key] = times.get(key, 0.0) + ms / 2
    return times


def _paired(times: dict, where: list[int], steps: list[Step], label: Any, rounds: int) -> tuple[list[float], list[float]]:
    """Per round: the old and new weighted step time sums over the steps in `where`."""
    old = [sum(steps[i].weight * times[(r, i, "old")] for i in where) for r in range(rounds)]
    new = [sum(steps[i].weight * times[(r, i, label)] for i in where) for r in range(rounds)]
    return old, new


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def bootstrap_ratio(old: Sequence[float], new: Sequence[float], rng: random.Random,
                    resamples: int = RESAMPLES, confidence: float = CONFIDENCE) -> tuple[float, tuple[float, float]]:
    """sum(new) / sum(old) over paired rounds, and its percentile bootstrap interval (rounds
    resampled with replacement, pairs kept together)."""
    n = len(old)
    estimate = sum(new) / sum(old)
    stats = []
    for _ in range(resamples):
        picks = [rng.randrange(n) for _ in range(n)]
        stats.append(sum(new[k] for k in picks) / sum(old[k] for k in picks))
    stats.sort()
    tail = (1 - confidence) / 2
    low = stats[math.floor(tail * (resamples - 1))]
    high = stats[math.ceil((1 - tail) * (resamples - 1))]
    return estimate, (low, high)


def _judge(record: TuningRecord, where: list[int], steps: list[Step], times: dict, rounds: int, rng: random.Random,
           *, label: int) -> RecordResult:
    old, new = _paired(times, where, steps, label, rounds)
    ratio, ci = bootstrap_ratio(old, new, rng)
    weight = sum(steps[i].weight for i in where)
    names = tuple(steps[i].name for i in where)
    change = f"{abs(1 - ratio) * 100:.2f}% {'faster' if ratio < 1 else 'slower'}"
    if ci[1] < 1 - MIN_GAIN:
        verdict, reason = CONFIRMED, f"step {change} (interval below 1)"
    elif ci[0] > 1:
        verdict, reason = UNCONFIRMED, f"slower end to end: step {change}"
    else:
        verdict, reason = UNCONFIRMED, (f"no change beyond noise ({change}; interval holds 1 or a gain under "
                                        f"{MIN_GAIN * 100:g}%)")
    return RecordResult(record, verdict, reason, names, ratio, ci, _mean(old) / weight, _mean(new) / weight, rounds)
