"""Time per kernel per model phase, from the ranges every launch already opens.

`kernels/launching.py` wraps each launch in `nvtx_range(<kernel>, "kernel", config)` and the
runtime wraps its phases in `nvtx_range("prefill" | "decode step", "model", ...)`. A
KernelTimer listens to those ranges (`with timer:`) and adds up, per phase, the time spent
inside each kernel's outermost range and inside the phase itself; the difference is what ran
outside our kernels (torch ops, Python, the sampler).

Clocks: on the CPU (and the Triton interpreter) every launch runs before it returns, so
`time.perf_counter` around it is its wall time (~0.1 µs a reading against ~ms a launch).
On a GPU a launch only queues work: the timer records a pair of CUDA events instead, read
once at the end (`totals()` synchronizes), so what is summed is time on the device.
Ranges not inside a phase, trial ranges and the model's inner ranges (layer, attention)
are ignored; a kernel launched inside another kernel's range counts once, in the outer one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import torch

from . import _nvtx

PHASES = {"prefill": "prefill", "decode step": "decode"}  # model range message -> phase name


class _Span:
    __slots__ = ("_name", "_phase", "_start", "_timer")

    def __init__(self, timer: KernelTimer, phase: str, name: str | None) -> None:
        self._timer, self._phase, self._name = timer, phase, name

    def __enter__(self):
        self._start = self._timer._now()
        return self

    def __exit__(self, *exc):
        self._timer._add(self._phase, self._name, self._start, self._timer._now())
        return False


class _Mark:
    """Sets the timer's state on enter and clears it on exit (phase or in-kernel flag)."""

    __slots__ = ("_attr", "_span", "_timer", "_value")

    def __init__(self, span: _Span, timer: KernelTimer, attr: str, value) -> None:
        self._span, self._timer, self._attr, self._value = span, timer, attr, value

    def __enter__(self):
        setattr(self._timer, self._attr, self._value)
        self._span.__enter__()
        return self

    def __exit__(self, *exc):
        self._span.__exit__(*exc)
        setattr(self._timer, self._attr, None)
        return False


class KernelTimer:
    """`with KernelTimer(cuda=...):` run the model; then `totals()` ->
    ({phase: {kernel: ms}}, {phase: ms}). Not thread-safe: one model, one thread."""

    def __init__(self, *, cuda: bool = False, phases: Mapping[str, str] = PHASES) -> None:
        self.cuda = cuda
        self.phases = dict(phases)
        self._phase: str | None = None
        self._kernel: str | None = None
        self._spans: list[tuple[str, str | None, object, object]] = []
        self._previous = None

    def _now(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _add(self, phase: str, name: str | None, start, end) -> None:
        self._spans.append((phase, name, start, end))

    def range(self, message: str, category: str):
        """The listener hook kernels._nvtx calls for every range while this timer listens."""
        if category == "model" and self._phase is None and message in self.phases:
            phase = self.phases[message]
            return _Mark(_Span(self, phase, None), self, "_phase", phase)
        if category == "kernel" and self._phase is not None and self._kernel is None:
            return _Mark(_Span(self, self._phase, message), self, "_kernel", message)
        return _nvtx.NO_RANGE

    def __enter__(self):
        self._previous = _nvtx.listen(self)
        return self

    def __exit__(self, *exc):
        _nvtx.listen(self._previous)
        return False

    def totals(self) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
        """Per phase: ms inside each kernel, largest first; and ms inside the phase's ranges."""
        if self.cuda and self._spans:
            torch.cuda.synchronize()
        by_kernel: dict[str, dict[str, float]] = {}
        phase_ms: dict[str, float] = {}
        for phase, name, start, end in self._spans:
            ms = start.elapsed_time(end) if self.cuda else (end - start) * 1e3
            if name is None:
                phase_ms[phase] = phase_ms.get(phase, 0.0) + ms
            else:
                kernels = by_kernel.setdefault(phase, {})
                kernels[name] = kernels.get(name, 0.0) + ms
        ordered = {p: dict(sorted(k.items(), key=lambda kv: -kv[1])) for p, k in by_kernel.items()}
        return ordered, phase_ms
