"""Timing primitives shared by `infertune bench` and the tuner.

On a GPU: CUDA events around each repetition, a warm-up, the L2 cache flushed before every
repetition (writing a buffer larger than L2, as triton.testing.do_bench does), the GPU held
busy ahead of each repetition so that host launch overhead stays out of the events, and the
median with p10/p90 of the per-repetition times, and a 95% percentile-bootstrap interval of
that median (`bootstrap_ci`: 1000 seeded resamples of the repetitions). On the CPU: wall
clock. Wall-clock times of Triton's CPU interpreter say nothing about GPU speed; a Timing
carries `interpreter=True` so every report can say so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

# Triton's do_bench writes 256 MB; an H100's L2 is 50 MB, so this evicts it several times.
L2_FLUSH_BYTES = 256 * 1024 * 1024
# The GPU is held busy this many times the host's time to enqueue one repetition, so that the
# launch is queued before the start event runs (see host_lead_s). Seen on an H200 (2026-11-28):
# a matmul launch took ~80 us of host time, the 256 MB flush 60 us of GPU time, and events
# read 0.092 ms for a kernel ncu timed at 0.014 ms.
HOST_LEAD_FACTOR = 2.0
MAX_LEAD_S = 5e-3
# The median's interval: 1000 resamples put the 2.5% / 97.5% percentiles 25 resamples in from
# each end; it costs about 40 ms for 1000 repetitions on a loaded 2-core host (a trial's timed
# repetitions take 100 ms), a few ms for the usual 100-300.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Timing:
    """Per-repetition latency statistics, in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    mean_ms: float
    reps: int
    method: str  # "cuda-events", "cuda-graph" or "wall-clock"
    l2_flushed: bool
    interpreter: bool
    # 95% bootstrap interval of median_ms; None in timings stored before it existed.
    ci_low_ms: float | None = None
    ci_high_ms: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def spread(self) -> float:
        """(p90 - p10) / median: the relative noise of this measurement."""
        return (self.p90_ms - self.p10_ms) / self.median_ms if self.median_ms > 0 else math.inf

    @property
    def interval(self) -> tuple[float, float]:
        """(low, high) of the median's interval; the median itself for a timing without one."""
        low = self.ci_low_ms if self.ci_low_ms is not None else self.median_ms
        high = self.ci_high_ms if self.ci_high_ms is not None else self.median_ms
        return low, high


def quantile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        raise ValueError("quantile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} outside [0, 1]")
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def bootstrap_ci(samples: list[float], *, confidence: float = BOOTSTRAP_CONFIDENCE,
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median of `samples`.

    Draws `resamples` resamples (with replacement, seeded: the same samples give the same
    interval) and returns their medians' (1-confidence)/2 and (1+confidence)/2 quantiles,
    medians and quantiles interpolated as `quantile` does. One sample: (x, x).

    Raises ValueError for no samples, a confidence outside (0, 1) or resamples < 1.
    """
    if not samples:
        raise ValueError("bootstrap of no samples")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence} outside (0, 1)")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1; got {resamples}")
    if len(samples) == 1:
        return float(samples[0]), float(samples[0])
    values = torch.tensor(samples, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, len(samples), (resamples, len(samples)), generator=generator)
    medians = torch.quantile(values[picks], 0.5, dim=1)
    tail = (1.0 - confidence) / 2
    low, high = torch.quantile(medians, torch.tensor([tail, 1.0 - tail], dtype=torch.float64)).tolist()
    return low, high


def summarize(times_ms: list[float], method: str, l2_flushed: bool, interpreter: bool) -> Timing:
    ci_low, ci_high = bootstrap_ci(times_ms)
    return Timing(
        median_ms=quantile(times_ms, 0.5),
        p10_ms=quantile(times_ms, 0.1),
        p90_ms=quantile(times_ms, 0.9),
        min_ms=min(times_ms),
        mean_ms=sum(times_ms) / len(times_ms),
        reps=len(times_ms),
        method=method,
        l2_flushed=l2_flushed,
        interpreter=interpreter,
        ci_low_ms=ci_low,
        ci_high_ms=ci_high,
    )


def repetitions(estimate_ms: float, budget_ms: float, min_reps: int, max_reps: int) -> int:
    """How many repetitions fit in `budget_ms`, kept within [min_reps, max_reps]."""
    if estimate_ms <= 0:
        return max_reps
    return max(min_reps, min(max_reps, int(budget_ms / estimate_ms)))


def measure(
    fn: Callable[[], object],
    *,
    device: torch.device | str,
    warmup_ms: float = 25.0,
    rep_ms: float = 100.0,
    min_reps: int = 10,
    max_reps: int = 1000,
    flush_l2: bool = True,
    interpreter: bool = False,
    cuda_graph: bool = False,
) -> Timing:
    """Time `fn()` on `device` and return the statistics of its repetitions.

    Args:
        fn: the work to time; called many times, its result is ignored.
        device: where fn runs; "cuda" devices are timed with events, anything else by wall clock.
        warmup_ms / rep_ms: time budgets for warm-up and for the timed repetitions.
        min_reps / max_reps: bounds on the timed repetitions.
        flush_l2: flush the GPU's L2 before every repetition (ignored on the CPU).
        interpreter: mark the result as Triton-interpreter timing (CPU only).
        cuda_graph: capture `fn` once into a CUDA graph and time its replays (method
            "cuda-graph"): launch overhead leaves the measurement. CUDA devices only.

    Raises ValueError for `cuda_graph` on a device that is not CUDA.
    """
    device = torch.device(device)
    if cuda_graph:
        if device.type != "cuda":
            raise ValueError("CUDA-graph timing needs a GPU")
        replay = _capture_graph(fn, device)
        return _measure_cuda(replay, device, warmup_ms, rep_ms, min_reps, max_reps, flush_l2, method="cuda-graph")
    if device.type == "cuda":
        return _measure_cuda(fn, device, warmup_ms, rep_ms, min_reps, max_reps, flush_l2)
    return _measure_wall(fn, warmup_ms, rep_ms, min_reps, max_reps, interpreter)


def _capture_graph(fn, device) -> Callable[[], object]:
    """`fn` captured once into a CUDA graph; returns the graph's replay. As torch's docs
    require, `fn` is warmed up on a side stream first (lazy init, Triton's JIT compile and
    allocator caching stay out of the capture). The L2 flush is not captured: `_measure_cuda`
    runs it between replays."""
    with torch.cuda.device(device):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        torch.cuda.synchronize()
    return graph.replay  # the bound method keeps the graph (and its memory pool) alive


def host_lead_s(host_s_per_rep: float) -> float:
    """Seconds of GPU busy-wait to enqueue before each timed repetition.

    Events time the GPU's stream, not the kernel: when the host needs longer to launch `fn`
    than the GPU needs for what precedes it (the L2 flush), the GPU idles between the start
    event and the kernel, and that idle time is measured as kernel time. A busy-wait longer
    than the host's time per repetition keeps the launch ahead of the start event, so the
    events bracket GPU work only (launch overhead is a host cost, reported apart by
    `host_overhead`)."""
    return min(MAX_LEAD_S, max(0.0, HOST_LEAD_FACTOR * host_s_per_rep))


_SLEEP_CYCLES_PER_S: dict[int, float] = {}


def _sleep_cycles_per_s(index: int) -> float:
    """torch.cuda._sleep spins for clock cycles: measure how many run per second, once."""
    if index not in _SLEEP_CYCLES_PER_S:
        cycles = 2_000_000
        torch.cuda._sleep(cycles // 10)  # first call loads the kernel
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.cuda._sleep(cycles)
        end.record()
        end.synchronize()
        _SLEEP_CYCLES_PER_S[index] = cycles / max(start.elapsed_time(end) / 1e3, 1e-6)
    return _SLEEP_CYCLES_PER_S[index]


def host_overhead(fn, reps: int = 5) -> float:
    """Median host seconds to enqueue one `fn()` (launch overhead; the GPU work is not waited
    for). `fn` must have run once already (compiled)."""
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    torch.cuda.synchronize()
    return quantile(times, 0.5)


def _measure_cuda(fn, device, warmup_ms, rep_ms, min_reps, max_reps, flush_l2, method="cuda-events") -> Timing:
    flush_buffer = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device=device) if flush_l2 else None

    def one_rep():
        if flush_buffer is not None:
            flush_buffer.zero_()
        fn()

    with torch.cuda.device(device):
        fn()  # compile / autotune outside the timed region
        torch.cuda.synchronize()
        lead_cycles = int(host_lead_s(host_overhead(one_rep)) * _sleep_cycles_per_s(torch.cuda.current_device()))
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(5):
            one_rep()
        end.record()
        torch.cuda.synchronize()
        estimate = start.elapsed_time(end) / 5
        for _ in range(repetitions(estimate, warmup_ms, 1, max_reps)):
            one_rep()
        n = repetitions(estimate, rep_ms, min_reps, max_reps)
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        for i in range(n):
            if lead_cycles:
                torch.cuda._sleep(lead_cycles)
            if flush_buffer is not None:
                flush_buffer.zero_()
            starts[i].record()
            fn()
            ends[i].record()
        torch.cuda.synchronize()
        times = [s.elapsed_time(e) for s, e in zip(starts, ends)]
    return summarize(times, method, flush_l2, interpreter=False)


def _measure_wall(fn, warmup_ms, rep_ms, min_reps, max_reps, interpreter) -> Timing:
    fn()  # first call: compile, trace or allocate; not timed, not the estimate
    t0 = time.perf_counter()
    fn()
    estimate = (time.perf_counter() - t0) * 1e3
    for _ in range(repetitions(estimate, warmup_ms, 0, max_reps)):
        fn()
    times = []
    for _ in range(repetitions(estimate, rep_ms, min_reps, max_reps)):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return summarize(times, "wall-clock", l2_flushed=False, interpreter=interpreter)
