"""Recorded measurements: record every valid config of a space once, then answer trials from
the recording instead of running kernels, so that search strategies are compared without a
GPU (Kernel Tuner's simulation mode).

A replay file is JSON: the kernel, the problem, the device it was measured on (constraints
are evaluated as on that device), the torch baseline, and one outcome per config.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kernels.device import DeviceInfo
from kernels.spec import Config, KernelSpec, Problem

from . import outcome as oc
from .outcome import Outcome
from .search import Evaluator, SearchOptions, tune
from .space import Space

FORMAT = "infertune-replay"
VERSION = 1
THRESHOLDS = (0.01, 0.03, 0.05)


class ReplayError(ValueError):
    """A replay file that cannot be read, or one for another kernel."""


@dataclass
class Recording:
    kernel: str
    problem: Problem
    device: DeviceInfo
    baseline: Outcome | None
    outcomes: dict[Config, Outcome]

    def to_dict(self) -> dict[str, Any]:
        device = asdict(self.device)
        return {
            "format": FORMAT, "version": VERSION, "kernel": self.kernel,
            "problem": {"shape": dict(self.problem.shape), "dtype": self.problem.dtype, "options": dict(self.problem.options)},
            "device": {**device, "capability": list(device["capability"]) if device["capability"] else None},
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "configs": [{"config": dict(c), **o.to_dict()} for c, o in sorted(self.outcomes.items(), key=lambda kv: str(kv[0]))],
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")

    @property
    def best_ms(self) -> float | None:
        values = [o.timing.median_ms for o in self.outcomes.values() if o.ok and o.timing]
        return min(values) if values else None


def load(path: str | Path, spec_of) -> tuple[KernelSpec, Recording]:
    """Read a replay file; `spec_of(name)` finds its kernel. Raises ReplayError."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ReplayError(f"cannot read replay file {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ReplayError(f"{path} is not an infertune replay file")
    try:
        spec = spec_of(data["kernel"])
        p = data["problem"]
        problem = spec.problem(p["shape"], p["dtype"], p["options"])
        dev = dict(data["device"])
        dev["capability"] = tuple(dev["capability"]) if dev["capability"] else None
        device = DeviceInfo(**dev)
        outcomes = {Config(e["config"]): Outcome.from_dict(e) for e in data["configs"]}
        baseline = Outcome.from_dict(data["baseline"]) if data.get("baseline") else None
    except (KeyError, TypeError, ValueError) as exc:
        raise ReplayError(f"{path}: malformed replay file ({type(exc).__name__}: {exc})") from None
    return spec, Recording(spec.name, problem, device, baseline, outcomes)


class RecordingEvaluator:
    """Wraps an evaluator: every config is timed in full (no early stop) and its first
    outcome kept for the recording."""

    def __init__(self, inner: Evaluator, spec: KernelSpec, problem: Problem, device: DeviceInfo,
                 prior: Recording | None = None) -> None:
        """prior: an earlier recording of the same problem and device that this one completes:
        its outcomes are kept (a config measured again keeps its earlier outcome), and its
        baseline stands until this run measures one."""
        self.inner = inner
        self.recording = Recording(spec.name, problem, device, prior.baseline if prior else None,
                                   dict(prior.outcomes) if prior else {})

    def evaluate(self, config: Config, stop_above_ms: float | None = None, timeout_s: float | None = None) -> Outcome:
        outcome = self.inner.evaluate(config, None, timeout_s=timeout_s)
        # A trial cut by the run's deadline (shorter than the per-trial timeout) says nothing
        # of the config: left out, so that a grid stopped by a budget records no false failure.
        cut_by_budget = (outcome.kind == oc.TIMEOUT and timeout_s is not None
                         and timeout_s < getattr(self.inner, "trial_timeout_s", math.inf))
        if not cut_by_budget:
            self.recording.outcomes.setdefault(config, outcome)
        return outcome

    def baseline(self) -> Outcome:
        outcome = self.inner.baseline()
        self.recording.baseline = outcome
        return outcome

    def compile_pool(self, workers: int, *, interpreter: bool):
        """The inner evaluator's pool: compiling records nothing."""
        return self.inner.compile_pool(workers, interpreter=interpreter)


class ReplayEvaluator:
    """Answers trials from a recording; runs nothing. `evaluated` lists the configs asked for."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self.evaluated: list[Config] = []

    def evaluate(self, config: Config, stop_above_ms: float | None = None, timeout_s: float | None = None) -> Outcome:
        self.evaluated.append(config)
        found = self.recording.outcomes.get(config)
        if found is None:
            return Outcome.failed(oc.RUNTIME_ERROR, f"config {config} is not in the replay file")
        if found.ok and found.timing and stop_above_ms is not None and found.timing.median_ms > stop_above_ms:
            return Outcome(status=oc.EARLY_STOPPED, timing=found.timing, sqnr_db=found.sqnr_db,
                           reason=f"replayed {found.timing.median_ms:.4g} ms > {stop_above_ms:.4g} ms")
        return found

    def baseline(self) -> Outcome:
        return self.recording.baseline or Outcome.failed(oc.RUNTIME_ERROR, "no baseline in the replay file")

    def compile_pool(self, workers: int, *, interpreter: bool) -> None:
        """None: a replay compiles nothing."""


@dataclass(frozen=True)
class Efficiency:
    """How fast one sampler and seed came near the recording's best."""

    sampler: str
    seed: int
    trials: int
    to_within: dict[float, int | None]  # threshold -> trials needed (None: not within the budget)

    def to_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler, "seed": self.seed, "trials": self.trials,
                "to_within": {f"{t:.0%}": n for t, n in self.to_within.items()}}


def trials_to_within(values_ms: list[float | None], best_ms: float, thresholds=THRESHOLDS) -> dict[float, int | None]:
    """For each threshold t, the 1-based count of trials after which the best value so far is
    within (1 + t) of `best_ms`; None if never. `values_ms` holds None for failed trials."""
    out: dict[float, int | None] = {t: None for t in thresholds}
    running = float("inf")
    for i, v in enumerate(values_ms, start=1):
        if v is not None:
            running = min(running, v)
        for t in thresholds:
            if out[t] is None and running <= best_ms * (1 + t):
                out[t] = i
    return out


def compare(spec: KernelSpec, recording: Recording, samplers: list[str], seeds: list[int],
            trials: int | None = None) -> list[Efficiency]:
    """Run each sampler with each seed on the recording (in-memory studies) and measure how
    many trials it needed to come within 1%, 3% and 5% of the recorded best.

    Raises ReplayError when the recording holds no passing config.
    """
    best = recording.best_ms
    if best is None:
        raise ReplayError("the replay file holds no config that passed")
    budget = trials or len(Space(spec, recording.problem, recording.device))
    rows = []
    for sampler in samplers:
        for seed in seeds:
            values: list[float | None] = []

            def collect(p, values=values):
                # An early-stopped config's recorded time is its time (it was not the best anyway).
                values.append(p.outcome.timing.median_ms if p.outcome.timing and p.outcome.kind is None else None)

            tune(spec, recording.problem, recording.device, ReplayEvaluator(recording), storage=None,
                 options=SearchOptions(trials=budget, sampler=sampler, seed=seed, retime_top=0), on_trial=collect)
            rows.append(Efficiency(sampler, seed, len(values), trials_to_within(values, best)))
    return rows


def median_trials(rows: list[Efficiency], sampler: str, threshold: float) -> float | None:
    """Median over seeds of the trials `sampler` needed; None if some seed never got there."""
    counts = [r.to_within[threshold] for r in rows if r.sampler == sampler]
    if not counts or any(c is None for c in counts):
        return None
    return statistics.median(counts)
