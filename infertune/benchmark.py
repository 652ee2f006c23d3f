"""Check a kernel against its reference, and bench one config against the torch baseline.

Library functions behind `infertune check` and `infertune bench`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from kernels.accuracy import Comparison, compare
from kernels.config_source import get_config_source
from kernels.device import DeviceInfo, current_device
from kernels.errors import KernelError, UnsupportedOnDevice
from kernels.spec import Config, KernelSpec, Problem
from profilers.timing import Timing, measure

from .errors import KernelFailed, one_line
from .problems import allocation_errors, check_fits
from .settings import Settings


@dataclass(frozen=True)
class CheckResult:
    kernel: str
    problem_key: str
    config: str
    status: str  # "ok", "mismatch", "unsupported" or "error" (the kernel raised: `reason` says how)
    comparison: Comparison | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "problem": self.problem_key,
            "config": self.config,
            "status": self.status,
            "reason": self.reason,
            "accuracy": _accuracy_dict(self.comparison),
        }


@dataclass(frozen=True)
class BenchResult:
    kernel: str
    device: str
    problem: Problem
    problem_key: str
    config: Config
    config_source: str
    comparison: Comparison
    timing: Timing
    baseline_name: str
    baseline_timing: Timing
    flops: int
    bytes_moved: int
    seed: int
    warning: str | None = None  # the tuned database could not be read (--db): the heuristic ran

    @property
    def tflops(self) -> float:
        return _rate(self.flops, self.timing.median_ms) / 1e12

    @property
    def gbps(self) -> float:
        return _rate(self.bytes_moved, self.timing.median_ms) / 1e9

    @property
    def baseline_tflops(self) -> float:
        return _rate(self.flops, self.baseline_timing.median_ms) / 1e12

    @property
    def baseline_gbps(self) -> float:
        return _rate(self.bytes_moved, self.baseline_timing.median_ms) / 1e9

    @property
    def speedup(self) -> float:
        """Baseline median over kernel median: > 1 means the Triton kernel is faster."""
        return self.baseline_timing.median_ms / self.timing.median_ms if self.timing.median_ms > 0 else float("nan")

    @property
    def interpreter(self) -> bool:
        return self.timing.interpreter

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "device": self.device,
            "shape": self.problem.dims,
            "dtype": self.problem.dtype,
            "options": dict(self.problem.options),
            "problem": self.problem_key,
            "config": dict(self.config),
            "config_source": self.config_source,
            "seed": self.seed,
            "accuracy": _accuracy_dict(self.comparison),
            "flops": self.flops,
            "bytes": self.bytes_moved,
            "triton": {**self.timing.to_dict(), "tflops": self.tflops, "gbps": self.gbps},
            "baseline": {"name": self.baseline_name, **self.baseline_timing.to_dict(),
                         "tflops": self.baseline_tflops, "gbps": self.baseline_gbps},
            "speedup": self.speedup,
            "interpreter": self.interpreter,
            "note": INTERPRETER_NOTE if self.interpreter else None,
            "warning": self.warning,
        }


INTERPRETER_NOTE = ("Triton ran through its CPU interpreter: these timings are wall clock on the CPU "
                    "and say nothing about GPU speed")


def _rate(amount: int, median_ms: float) -> float:
    return amount / (median_ms * 1e-3) if median_ms > 0 else float("nan")


def _accuracy_dict(c: Comparison | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {"ok": c.ok, "max_abs_err": c.max_abs_err, "max_rel_err": c.max_rel_err,
            "sqnr_db": c.sqnr_db, "bad_elements": c.bad_elements, "elements": c.total_elements}


def _generator(device: DeviceInfo, seed: int) -> torch.Generator:
    return torch.Generator(device=device.torch_device).manual_seed(seed)


def resolve(spec: KernelSpec, problem: Problem, config: Config | None, device: DeviceInfo,
            db: str | None = None) -> tuple[Config, str, str | None]:
    """(the config to run, where it came from, a warning): "caller" for `config`; else the
    tuned database `db`'s answer when `db` is given (exact, nearest or the heuristic, with a
    warning when the database cannot be read), else the active config source's."""
    if config is not None:
        return spec.complete(config, problem, device), "caller", None
    if db is not None:
        from tuner.database import runtime_source

        source, warning = runtime_source(db)
        resolution = source.resolve(spec, problem, device)
        return resolution.config, resolution.source, warning
    resolution = get_config_source().resolve(spec, problem, device)
    return resolution.config, resolution.source, None


def make_inputs(spec: KernelSpec, problem: Problem, device: DeviceInfo, seed: int):
    """The problem's seeded inputs; a shape too large for the device is a UsageError (checked
    against its memory first, then any allocation failure), not a traceback."""
    check_fits(spec, problem, device)
    with allocation_errors(spec, problem, device):
        return spec.make_inputs(problem, device.torch_device, _generator(device, seed))


def reference(spec: KernelSpec, problem: Problem, device: DeviceInfo, inputs) -> torch.Tensor:
    """spec.reference, an allocation failure (the reference's intermediates) a UsageError."""
    with allocation_errors(spec, problem, device):
        return spec.reference(inputs)


def check(spec: KernelSpec, problem: Problem, config: Config | None = None, *, seed: int = 0) -> CheckResult:
    """Run `spec` once on fresh inputs and compare with its reference. Never raises for an
    unsupported device: that is a result ("unsupported", with the reason)."""
    device = current_device()
    key = spec.shape_key(problem)
    reason = spec.unsupported_reason(problem, device)
    if reason:
        return CheckResult(spec.name, key, "", "unsupported", reason=reason)
    chosen, _, _ = resolve(spec, problem, config, device)
    inputs = make_inputs(spec, problem, device, seed)
    try:
        out = _launch(spec, inputs, chosen)
    except KernelFailed as exc:
        return CheckResult(spec.name, key, str(chosen), "error", reason=str(exc))
    comparison = compare(out.float(), reference(spec, problem, device, inputs), spec.tolerance(problem))
    return CheckResult(spec.name, key, str(chosen), "ok" if comparison.ok else "mismatch", comparison)


def _launch(spec: KernelSpec, inputs, config: Config):
    """spec.launch, a failure of the kernel raised as KernelFailed (one line, with the kernel
    and config); bad input (KernelError) passes through as it is."""
    try:
        return spec.launch(inputs, config)
    except KernelError:
        raise
    except Exception as exc:
        raise KernelFailed(f"{spec.name} {config} failed: {one_line(exc)}") from exc


def bench(spec: KernelSpec, problem: Problem, config: Config | None = None, *, seed: int = 0,
          settings: Settings | None = None, db: str | None = None) -> BenchResult:
    """Check `config` (or the tuned database `db`'s choice when given, else the config
    source's) against the reference, then time it and the torch baseline on the same inputs.

    Raises: UnsupportedOnDevice, InvalidConfig, UsageError (buffers too large for the device),
    KernelFailed (the kernel raised while running).
    """
    settings = settings or Settings.from_env()
    device = current_device()
    reason = spec.unsupported_reason(problem, device)
    if reason:
        raise UnsupportedOnDevice(f"{spec.name} is not supported on this device: {reason}")
    chosen, source, warning = resolve(spec, problem, config, device, db)
    inputs = make_inputs(spec, problem, device, seed)
    comparison = compare(_launch(spec, inputs, chosen).float(), reference(spec, problem, device, inputs),
                         spec.tolerance(problem))
    min_reps = settings.min_reps if device.kind == "cuda" else settings.min_reps_cpu
    timing_args = dict(device=device.torch_device, warmup_ms=settings.warmup_ms, rep_ms=settings.rep_ms, min_reps=min_reps)
    timing = measure(lambda: spec.launch(inputs, chosen), interpreter=device.interpreter, **timing_args)
    baseline = measure(lambda: spec.baseline(inputs), interpreter=False, **timing_args)
    return BenchResult(
        kernel=spec.name, device=device.label, problem=problem, problem_key=spec.shape_key(problem),
        config=chosen, config_source=source, comparison=comparison, timing=timing,
        baseline_name=spec.baseline_name, baseline_timing=baseline,
        flops=spec.flops(problem), bytes_moved=spec.bytes_moved(problem), seed=seed, warning=warning,
    )
