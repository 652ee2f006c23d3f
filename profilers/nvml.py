"""GPU telemetry while work runs: a background thread samples NVML every `interval_ms`.

    with Sampler(interval_ms=50) as sampler:
        run_the_work()
    telemetry = sampler.telemetry          # or: sampler.start(); ...; telemetry = sampler.stop()

Each sample holds the SM and memory clocks (MHz), power (W), the total energy counter
(mJ, `nvmlDeviceGetTotalEnergyConsumption`, Volta and newer), temperature (°C), GPU and
memory utilization (%), memory used (MiB) and the current clock-event (throttle) reasons
decoded to names. The summary gives min / median / max per metric, the energy of the
window in J (the counter's difference where the device has one, else the trapezoid
integral of power), the reasons seen, and flags:

- "clocks-moved": the SM clock varied by more than CLOCK_MOVED_FRACTION (5 %) of its
  maximum, (max - min) / max;
- "temperature-moved": the temperature varied by more than TEMPERATURE_MOVED_C (5 °C);
- "throttled": a throttling reason was seen (power cap, hardware / thermal slowdown, power
  brake); idle and application-clock settings are reported but do not set the flag.

Without NVML (no nvidia-ml-py, nvmlInit failing, no GPU at that index) the Sampler is
`available == False` with the reason, start/stop do nothing and never raise, and the
Telemetry says `available: False`. The NVML calls sit behind a small `Backend` protocol,
so tests drive the sampler with a scripted fake.

`NoiseGuard` samples around one tuner trial at a time (begin / end) and says whether the
trial was measured under a condition that moves timings: another process on the GPU, the SM
clock more than CLOCK_LOW_FRACTION below its maximum while busy, or a throttling reason.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

CLOCK_MOVED_FRACTION = 0.05
TEMPERATURE_MOVED_C = 5.0
# A trial is flagged when the busy GPU's median SM clock sat more than this far below the
# maximum: an H100 SXM boosts to 1980 MHz and a throttled one settles near 1400-1600 MHz
# (20-30 % less), while boost jitter stays within a few percent.
CLOCK_LOW_FRACTION = 0.10

METRICS = ("sm_clock_mhz", "mem_clock_mhz", "power_w", "energy_mj", "temperature_c",
           "gpu_util_pct", "mem_util_pct", "memory_used_mib")

# NVML clock-event ("throttle") reason bits (nvmlClocksEventReason* / nvmlClocksThrottleReason*).
THROTTLE_REASONS = {
    0x1: "gpu idle",
    0x2: "applications clocks setting",
    0x4: "sw power cap",
    0x8: "hw slowdown",
    0x10: "sync boost",
    0x20: "sw thermal slowdown",
    0x40: "hw thermal slowdown",
    0x80: "hw power brake slowdown",
    0x100: "display clock setting",
    0x200: "board limit",
    0x400: "reliability",
}
# Reasons that mean the clocks were held down by power or heat (the "throttled" flag).
THROTTLING = {"sw power cap", "hw slowdown", "sw thermal slowdown", "hw thermal slowdown",
              "hw power brake slowdown", "board limit", "reliability"}


def decode_reasons(mask: int | None) -> list[str]:
    """Names of the bits set in an NVML clock-event reason mask (unknown bits as hex)."""
    if not mask:
        return []
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    rest = mask & ~sum(THROTTLE_REASONS)
    if rest:
        names.append(f"unknown 0x{rest:x}")
    return names


class Backend(Protocol):
    """What the sampler needs of NVML. `read` returns a dict with any of METRICS (None or
    absent where the device does not report it) and `throttle_mask` (int). `handle` takes
    an index or a UUID string. The noise guard also uses, when the backend has them,
    `max_sm_clock(handle) -> int | None` (MHz) and `processes(handle) -> list[int] | None`
    (pids of the compute processes on the device)."""

    def init(self) -> None: ...

    def handle(self, index: int | str) -> Any: ...

    def read(self, handle: Any) -> dict[str, Any]: ...


class PynvmlBackend:
    """The real NVML through nvidia-ml-py (module pynvml). Each metric is read on its own, so
    one the device does not support is None instead of failing the sample."""

    def __init__(self) -> None:
        import pynvml  # ImportError: reported by the Sampler as unavailable

        self._nvml = pynvml

    def init(self) -> None:
        self._nvml.nvmlInit()

    def shutdown(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass

    def handle(self, index: int | str) -> Any:
        if isinstance(index, str):
            return self._nvml.nvmlDeviceGetHandleByUUID(index)
        return self._nvml.nvmlDeviceGetHandleByIndex(index)

    def max_sm_clock(self, handle: Any) -> int | None:
        return self._get("nvmlDeviceGetMaxClockInfo", handle, self._nvml.NVML_CLOCK_SM)

    def processes(self, handle: Any) -> list[int] | None:
        procs = self._get("nvmlDeviceGetComputeRunningProcesses", handle)
        return None if procs is None else [int(p.pid) for p in procs]

    def _get(self, fn_name: str, *args):
        fn = getattr(self._nvml, fn_name, None)
        if fn is None:
            return None
        try:
            return fn(*args)
        except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends: not reported
            return None

    def read(self, handle: Any) -> dict[str, Any]:
        n = self._nvml
        sm = self._get("nvmlDeviceGetClockInfo", handle, n.NVML_CLOCK_SM)
        mem = self._get("nvmlDeviceGetClockInfo", handle, n.NVML_CLOCK_MEM)
        power = self._get("nvmlDeviceGetPowerUsage", handle)  # mW
        energy = self._get("nvmlDeviceGetTotalEnergyConsumption", handle)  # mJ since driver load
        temp = self._get("nvmlDeviceGetTemperature", handle, n.NVML_TEMPERATURE_GPU)
        util = self._get("nvmlDeviceGetUtilizationRates", handle)
        memory = self._get("nvmlDeviceGetMemoryInfo", handle)
        mask = self._get("nvmlDeviceGetCurrentClocksEventReasons", handle)
        if mask is None:
            mask = self._get("nvmlDeviceGetCurrentClocksThrottleReasons", handle)
        return {
            "sm_clock_mhz": sm,
            "mem_clock_mhz": mem,
            "power_w": power / 1000.0 if power is not None else None,
            "energy_mj": energy,
            "temperature_c": temp,
            "gpu_util_pct": getattr(util, "gpu", None),
            "mem_util_pct": getattr(util, "memory", None),
            "memory_used_mib": memory.used / 2**20 if memory is not None else None,
            "throttle_mask": mask,
        }


@dataclass(frozen=True)
class Sample:
    t_s: float  # seconds since start()
    values: dict[str, Any]
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"t_s": self.t_s, **self.values, "reasons": list(self.reasons)}


@dataclass
class Telemetry:
    available: bool
    reason: str | None = None  # why not available
    device_index: int = 0
    interval_ms: float = 50.0
    samples: list[Sample] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def flags(self) -> list[str]:
        return list(self.summary.get("flags", []))

    def to_dict(self) -> dict[str, Any]:
        return {"available": self.available, "reason": self.reason, "device_index": self.device_index,
                "interval_ms": self.interval_ms, "samples": [s.to_dict() for s in self.samples],
                "summary": self.summary}


def _energy(samples: list[Sample]) -> tuple[float | None, str | None]:
    """Joules over the window: the energy counter's difference, else the power integral."""
    counters = [(s.t_s, s.values.get("energy_mj")) for s in samples if s.values.get("energy_mj") is not None]
    if len(counters) >= 2 and len(counters) == len(samples):
        return (counters[-1][1] - counters[0][1]) / 1000.0, "counter"
    powers = [(s.t_s, s.values.get("power_w")) for s in samples if s.values.get("power_w") is not None]
    if len(powers) >= 2:
        joules = sum((t1 - t0) * (p0 + p1) / 2.0 for (t0, p0), (t1, p1) in zip(powers, powers[1:]))
        return joules, "power-integral"
    return None, None


def summarize(samples: list[Sample]) -> dict[str, Any]:
    """min / median / max per metric, energy (J), reasons seen and flags. Pure."""
    stats: dict[str, dict[str, float]] = {}
    for metric in METRICS:
        if metric == "energy_mj":
            continue  # a running counter: its difference is the energy below
        values = [s.values[metric] for s in samples if s.values.get(metric) is not None]
        if values:
            stats[metric] = {"min": min(values), "median": statistics.median(values), "max": max(values)}
    energy_j, energy_method = _energy(samples)
    seen: list[str] = []
    for s in samples:
        for name in s.reasons:
            if name not in seen:
                seen.append(name)
    flags: list[str] = []
    notes: list[str] = []
    sm = stats.get("sm_clock_mhz")
    if sm and sm["max"] > 0 and (sm["max"] - sm["min"]) / sm["max"] > CLOCK_MOVED_FRACTION:
        flags.append("clocks-moved")
        notes.append(f"SM clock {sm['min']:.0f}..{sm['max']:.0f} MHz "
                     f"({(sm['max'] - sm['min']) / sm['max']:.0%} > {CLOCK_MOVED_FRACTION:.0%})")
    temp = stats.get("temperature_c")
    if temp and temp["max"] - temp["min"] > TEMPERATURE_MOVED_C:
        flags.append("temperature-moved")
        notes.append(f"temperature {temp['min']:.0f}..{temp['max']:.0f} °C (> {TEMPERATURE_MOVED_C:.0f} °C)")
    throttling = [name for name in seen if name in THROTTLING]
    if throttling:
        flags.append("throttled")
        notes.append("throttled: " + ", ".join(throttling))
    duration = samples[-1].t_s - samples[0].t_s if samples else 0.0
    return {"samples": len(samples), "duration_s": duration, "metrics": stats, "energy_j": energy_j,
            "energy_method": energy_method, "reasons_seen": seen, "throttle_reasons": throttling,
            "flags": flags, "notes": notes,
            "thresholds": {"clock_moved_fraction": CLOCK_MOVED_FRACTION, "temperature_moved_c": TEMPERATURE_MOVED_C}}


class Sampler:
    """Samples NVML on a background thread between start() and stop(). Never raises for a
    missing NVML: `available` is False and `reason` says why."""

    def __init__(self, interval_ms: float = 50.0, device_index: int = 0, backend: Backend | None = None) -> None:
        if interval_ms <= 0:
            raise ValueError(f"interval_ms must be positive; got {interval_ms}")
        self.interval_ms = float(interval_ms)
        self.device_index = device_index
        self.available = False
        self.reason: str | None = None
        self.telemetry: Telemetry | None = None
        self._backend = backend
        self._handle = None
        self._samples: list[Sample] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._t0 = 0.0
        self._error: str | None = None
        self._closed = False
        self._open()

    def _open(self) -> None:
        try:
            if self._backend is None:
                self._backend = PynvmlBackend()
        except ImportError:
            self.reason = "nvidia-ml-py (module pynvml) is not installed"
            return
        except Exception as exc:  # noqa: BLE001
            self.reason = f"NVML backend failed: {type(exc).__name__}: {exc}"
            return
        try:
            self._backend.init()
        except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
            self.reason = f"NVML unavailable (nvmlInit failed: no NVIDIA driver?): {exc}"
            return
        try:
            self._handle = self._backend.handle(self.device_index)
        except Exception as exc:  # noqa: BLE001
            self.reason = f"NVML has no GPU at index {self.device_index}: {exc}"
            return
        self.available = True

    def _sample(self) -> None:
        try:
            values = dict(self._backend.read(self._handle))
        except Exception as exc:  # noqa: BLE001 - keep the first error, keep sampling
            self._error = self._error or f"{type(exc).__name__}: {exc}"
            return
        mask = values.pop("throttle_mask", None)
        self._samples.append(Sample(time.perf_counter() - self._t0, values, tuple(decode_reasons(mask))))

    def _run(self) -> None:
        interval = self.interval_ms / 1000.0
        while not self._stop.wait(interval):
            self._sample()

    def start(self) -> Sampler:
        if self._thread is not None or self._closed:
            raise RuntimeError("a Sampler records one window: make a new one")
        self._samples = []
        self._stop.clear()
        self._t0 = time.perf_counter()
        if self.available:
            self._sample()
            self._thread = threading.Thread(target=self._run, name="infertune-nvml-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> Telemetry:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._sample()
        shutdown = getattr(self._backend, "shutdown", None)
        if self.available and not self._closed and callable(shutdown):
            shutdown()  # one window per Sampler: NVML's init is balanced here
        self._closed = True
        if not self.available:
            self.telemetry = Telemetry(False, self.reason, self.device_index, self.interval_ms)
        else:
            self.telemetry = Telemetry(True, self._error, self.device_index, self.interval_ms,
                                       list(self._samples), summarize(self._samples))
        return self.telemetry

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------------------
# The noise guard: NVML around each tuner trial


def nvml_target() -> int | str:
    """The NVML handle of the GPU torch calls cuda:0: NVML counts every GPU whatever
    CUDA_VISIBLE_DEVICES says, so its first entry (an index or a GPU-... UUID) names it."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if first.isdigit():
        return int(first)
    if first.startswith(("GPU-", "MIG-")):
        return first
    return 0


def _is_own(pid: int, me: int) -> bool | None:
    """True when `pid` is this process or one it started (the worker, the compile pool),
    False for another visible process, None when /proc does not show it (a container's
    pid namespace: NVML reports host pids)."""
    for _ in range(64):
        if pid == me:
            return True
        if pid <= 1:
            return False
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            return None
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False


@dataclass(frozen=True)
class NoiseCheck:
    """What the guard saw around one trial: `reasons` empty when nothing moved timings."""

    reasons: tuple[str, ...] = ()

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)


class NoiseGuard:
    """Samples NVML around one trial at a time: `begin()` before it, `end()` after it
    returns a NoiseCheck. `enabled` is False with `reason` where NVML is missing or fails;
    begin/end then do nothing and end() says nothing was seen.

    Flags: another compute process on the GPU at the trial's end (a pid that is neither this
    process nor one it started; where /proc cannot see NVML's pids, more such pids than at
    the first trial),
    the busy GPU's median SM clock more than CLOCK_LOW_FRACTION below its maximum, and any
    throttling reason (THROTTLING). Samples every `interval_ms` on a thread, plus one at each
    end, so even a short trial has two.
    """

    def __init__(self, target: int | str | None = None, *, interval_ms: float = 20.0,
                 backend: Backend | None = None) -> None:
        self.interval_ms = float(interval_ms)
        self.enabled = False
        self.reason: str | None = None
        self._backend = backend
        self._handle = None
        self._max_clock: int | None = None
        self._samples: list[Sample] = []
        self._pids: set[int] = set()
        self._unknown_floor: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._me = os.getpid()
        target = nvml_target() if target is None else target
        try:
            if self._backend is None:
                self._backend = PynvmlBackend()
            self._backend.init()
        except ImportError:
            self.reason = "nvidia-ml-py (module pynvml) is not installed"
            return
        except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
            self.reason = f"NVML unavailable (nvmlInit failed: no NVIDIA driver?): {exc}"
            return
        try:
            self._handle = self._backend.handle(target)
        except Exception as exc:  # noqa: BLE001
            self.reason = f"NVML has no GPU {target!r}: {exc}"
            return
        max_clock = getattr(self._backend, "max_sm_clock", None)
        self._max_clock = max_clock(self._handle) if callable(max_clock) else None
        self.enabled = True

    def _sample(self) -> None:
        try:
            values = dict(self._backend.read(self._handle))
        except Exception:  # noqa: BLE001 - a failed read is a missing sample, not a flag
            return
        mask = values.pop("throttle_mask", None)
        self._samples.append(Sample(0.0, values, tuple(decode_reasons(mask))))

    def _read_pids(self) -> None:
        # Read once, at the trial's end: a pid read at its start may be a worker replaced
        # since (gone, so not placeable in /proc), which would read as another process.
        processes = getattr(self._backend, "processes", None)
        try:
            pids = processes(self._handle) if callable(processes) else None
        except Exception:  # noqa: BLE001
            pids = None
        self._pids = set(pids or ())

    def _run(self) -> None:
        while not self._stop.wait(self.interval_ms / 1000.0):
            self._sample()

    def begin(self) -> None:
        """Start sampling for one trial."""
        if not self.enabled:
            return
        self._samples, self._pids = [], set()
        self._stop.clear()
        self._sample()
        self._thread = threading.Thread(target=self._run, name="infertune-noise-guard", daemon=True)
        self._thread.start()

    def end(self) -> NoiseCheck:
        """Stop sampling and say what moved the trial's timings (nothing when disabled)."""
        if not self.enabled or self._thread is None:
            return NoiseCheck()
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._sample()
        self._read_pids()
        return NoiseCheck(tuple(self._other_processes() + self._clock_low() + self._throttled()))

    def _other_processes(self) -> list[str]:
        owners = {pid: _is_own(pid, self._me) for pid in self._pids}
        foreign = sorted(pid for pid, own in owners.items() if own is False)
        unknown = sum(own is None for own in owners.values())
        if self._unknown_floor is None or unknown < self._unknown_floor:
            self._unknown_floor = unknown
        extra = unknown - self._unknown_floor
        if foreign:
            return [f"other processes on the GPU: pid {', '.join(map(str, foreign))}"]
        if extra > 0:
            return [f"{extra} more process(es) on the GPU than at the first trial"]
        return []

    def _clock_low(self) -> list[str]:
        busy = [s.values["sm_clock_mhz"] for s in self._samples
                if s.values.get("sm_clock_mhz") is not None and "gpu idle" not in s.reasons]
        if not self._max_clock or not busy:
            return []
        clock = statistics.median(busy)
        if clock < (1.0 - CLOCK_LOW_FRACTION) * self._max_clock:
            return [(f"SM clock {clock:.0f} MHz, more than {CLOCK_LOW_FRACTION:.0%} below its "
                     f"{self._max_clock:.0f} MHz maximum")]
        return []

    def _throttled(self) -> list[str]:
        seen = [name for name in dict.fromkeys(r for s in self._samples for r in s.reasons) if name in THROTTLING]
        return [f"throttled: {', '.join(seen)}"] if seen else []

    def close(self) -> None:
        if self._thread is not None:
            self.end()
        shutdown = getattr(self._backend, "shutdown", None)
        if self.enabled and callable(shutdown):
            shutdown()
        self.enabled = False
