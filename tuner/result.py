"""What one search found (`TuneResult`), what it reports after each config (`Progress`),
and the database record of its winner (`to_record`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import torch
import triton

from kernels.device import DeviceInfo
from kernels.spec import Config, KernelSpec, Problem
from profilers.timing import Timing

from .keys import (
    device_class,
    hardware_of,
    kernel_source_hash,
    problem_bucket,
    quant_of,
)
from .outcome import Outcome
from .record import TuningRecord


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
    warm_started: int = 0          # configs from --warm-start enqueued as the first trials
    # One per race contender (tuner/race.py Contender.to_dict: rounds, intervals, verdict).
    retimed: list[dict[str, Any]] = field(default_factory=list)
    race: dict[str, Any] = field(default_factory=dict)   # RaceResult.to_dict(); empty without a race
    # The noise guard (profilers.nvml.NoiseGuard): on or off (and why); measurements flagged,
    # re-measurements made, measurements kept still flagged (the bound was reached).
    noise: dict[str, Any] = field(default_factory=lambda: {"guard": False, "reason": None, "flagged": 0,
                                                           "remeasured": 0, "still_flagged": 0, "examples": []})
    interrupted: bool = False
    interpreter: bool = False
    seconds: float | None = None   # wall time of this invocation's search of the problem (tune())
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
            "warm_started": self.warm_started,
            "retimed": self.retimed, "race": self.race, "noise": self.noise, "interrupted": self.interrupted, "interpreter": self.interpreter,
            "seconds": self.seconds, "history": self.history,
        }


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
               "study": result.study_name, "default_kept": result.default_kept,
               # The winner's 95% interval (tuner/race.py: over its race rounds) and the guard's count.
               **({"ci_ms": [result.best.ci_low_ms, result.best.ci_high_ms]}
                  if result.best.ci_low_ms is not None and result.best.ci_high_ms is not None else {}),
               "noise": {"flagged": result.noise["flagged"], "remeasured": result.noise["remeasured"]},
               # What device matching compares when the name differs (an OEM-renamed card); a GPU's only.
               **({"device": hardware_of(device)} if cls.capability != "cpu" else {})},
    )
