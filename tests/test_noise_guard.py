"""The noise guard: NVML sampled around each trial (profilers.nvml.NoiseGuard), through a
fake Backend that plants a throttle reason, a clock drop or another process; a trial measured
under it is flagged, measured again (bounded) and counted in TuneResult.noise. Without NVML
(this machine) the guard is off and says why."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from kernels.spec import Config
from profilers.nvml import CLOCK_LOW_FRACTION, NoiseGuard
from profilers.timing import Timing
from tuner.outcome import Outcome
from tuner.search import SearchOptions, to_record, tune
from tuner.space import Space

from .fake_devices import CPU
from .tuner_killable import PROBLEM, SPEC

MAX_MHZ = 1980
CLEAN = {"sm_clock_mhz": MAX_MHZ, "throttle_mask": 0}


class FakeNvml:
    """A Backend whose reads return `state` (what the planted GPU is doing right now)."""

    def __init__(self) -> None:
        self.state = dict(CLEAN)
        self.pids: list[int] = []
        self.reads = 0
        self.shutdowns = 0

    def init(self) -> None:
        pass

    def handle(self, index):
        return index

    def read(self, handle):
        self.reads += 1
        return dict(self.state)

    def max_sm_clock(self, handle):
        return MAX_MHZ

    def processes(self, handle):
        return list(self.pids)

    def shutdown(self) -> None:
        self.shutdowns += 1


def _trial(guard: NoiseGuard, backend: FakeNvml, during: dict | None = None, pids: list[int] | None = None):
    """One trial: the planted condition holds while the trial runs (six samples taken inside
    it: most of the window, as a real drop would be; the guard takes the busy median clock),
    then the GPU is clean again before end()."""
    guard.begin()
    if during:
        backend.state.update(during)
    backend.pids = list(pids or [])
    seen = backend.reads
    deadline = time.monotonic() + 10
    while backend.reads < seen + 6 and time.monotonic() < deadline:
        time.sleep(0.001)
    backend.state = dict(CLEAN)
    return guard.end()


def test_a_throttle_reason_a_clock_drop_and_another_process_flag_a_trial():
    backend = FakeNvml()
    guard = NoiseGuard(0, interval_ms=1, backend=backend)
    assert guard.enabled and guard.reason is None
    assert not _trial(guard, backend).flagged
    throttled = _trial(guard, backend, {"throttle_mask": 0x4 | 0x1})  # sw power cap (+ idle: not throttling)
    assert throttled.flagged and throttled.reasons == ("throttled: sw power cap",)
    low = int(MAX_MHZ * (1 - CLOCK_LOW_FRACTION)) - 50
    dropped = _trial(guard, backend, {"sm_clock_mhz": low})
    assert dropped.flagged and f"SM clock {low} MHz" in dropped.reasons[0]
    # A low clock while the GPU is idle (between launches) is not a flag; jitter within 10% neither.
    assert not _trial(guard, backend, {"sm_clock_mhz": 300, "throttle_mask": 0x1}).flagged
    assert not _trial(guard, backend, {"sm_clock_mhz": int(MAX_MHZ * 0.95)}).flagged
    other = _trial(guard, backend, pids=[os.getpid(), os.getppid()])  # our parent is not ours
    assert other.flagged and f"pid {os.getppid()}" in other.reasons[0]
    guard.close()
    assert backend.shutdowns == 1 and not guard.enabled


def test_our_own_worker_processes_on_the_gpu_are_not_other_processes():
    backend = FakeNvml()
    guard = NoiseGuard(0, interval_ms=1, backend=backend)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not _trial(guard, backend, pids=[os.getpid(), child.pid]).flagged
    finally:
        child.kill()
        child.wait()
    # Pids /proc cannot see (a container: NVML reports host pids): more than at the first trial flags.
    guard.close()
    hidden = [4_194_000 + i for i in range(3)]  # above Linux's pid_max default: no /proc entry
    guard = NoiseGuard(0, interval_ms=1, backend=backend)
    assert not _trial(guard, backend, pids=hidden[:1]).flagged  # the first trial: our worker, seen from outside
    assert not _trial(guard, backend, pids=hidden[1:2]).flagged  # a replaced worker: still one
    assert _trial(guard, backend, pids=hidden).reasons == ("2 more process(es) on the GPU than at the first trial",)
    guard.close()


def test_without_nvml_the_guard_is_off_and_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    guard = NoiseGuard()
    assert not guard.enabled and "nvidia-ml-py" in guard.reason
    guard.begin()
    assert not guard.end().flagged
    guard.close()


# -- in the search ----------------------------------------------------------------------

VALID = Space(SPEC, PROBLEM, CPU).valid_configs
DEFAULT = SPEC.heuristic(PROBLEM, CPU)
FAST = next(c for c in VALID if c != DEFAULT)


def _timing(ms: float) -> Timing:
    return Timing(ms, ms, ms, ms, ms, 5, "planted", False, True, ms, ms)


class ThrottledSometimes:
    """Every config takes 2 ms, FAST 1 ms, the default 1.5 ms; the measurements numbered in
    `throttled` (1-based, over the whole run) run on a planted throttled GPU (the fake NVML
    reports a power cap and a clock drop while they run) and take 4 times as long."""

    def __init__(self, backend: FakeNvml, throttled: set[int] | None = None, always: Config | None = None) -> None:
        self.backend, self.throttled, self.always = backend, throttled or set(), always
        self.calls: list[Config] = []

    def evaluate(self, config: Config, stop_above_ms=None, timeout_s=None) -> Outcome:
        self.calls.append(config)
        ms = 1.0 if config == FAST else 1.5 if config == DEFAULT else 2.0
        if len(self.calls) in self.throttled or config == self.always:
            ms *= 4
            self.backend.state.update(throttle_mask=0x4, sm_clock_mhz=1200)
            seen, deadline = self.backend.reads, time.monotonic() + 10
            while self.backend.reads < seen + 6 and time.monotonic() < deadline:
                time.sleep(0.001)
            self.backend.state = dict(CLEAN)
        return Outcome(status="ok", timing=_timing(ms))

    def baseline(self) -> Outcome:
        return Outcome(status="ok", timing=_timing(3.0))

    def compile_pool(self, workers, *, interpreter):
        return None


def _tune(evaluator, guard, **options):
    opts = {"trials": len(VALID), "sampler": "grid", "seed": 3, "retime_top": 2, "early_stop_factor": 1e9}
    opts.update(options)
    return tune(SPEC, PROBLEM, CPU, evaluator, storage=None, options=SearchOptions(**opts), guard=guard)


def test_a_throttled_trial_is_flagged_measured_again_and_counted():
    backend = FakeNvml()
    guard = NoiseGuard(0, interval_ms=1, backend=backend)
    order = list(ThrottledSometimesOrder.order())
    first_fast = order.index(FAST) + 1  # FAST's search measurement runs on a throttled GPU
    evaluator = ThrottledSometimes(backend, throttled={first_fast})
    result = _tune(evaluator, guard, retime_top=0)
    # Unguarded, FAST would have measured 4 ms and lost to the default (1.5 ms).
    assert result.best_config == FAST and result.best.median_ms == 1.0
    assert evaluator.calls.count(FAST) == 2  # measured again once: the second was clean
    assert result.noise == {"guard": True, "reason": None, "flagged": 1, "remeasured": 1, "still_flagged": 0,
                            "examples": result.noise["examples"]}
    assert any("throttled: sw power cap" in e for e in result.noise["examples"])
    assert any("SM clock 1200 MHz" in e for e in result.noise["examples"])
    assert all(h["noise"] is None for h in result.history)  # the kept measurements were clean
    record = to_record(SPEC, result, CPU)
    assert record.extra["noise"] == {"flagged": 1, "remeasured": 1}
    assert result.to_dict()["noise"]["flagged"] == 1
    guard.close()


def test_a_config_always_throttled_is_measured_again_at_most_noise_remeasure_times():
    backend = FakeNvml()
    guard = NoiseGuard(0, interval_ms=1, backend=backend)
    slow = next(c for c in VALID if c not in (DEFAULT, FAST))
    evaluator = ThrottledSometimes(backend, always=slow)
    result = _tune(evaluator, guard, retime_top=0, noise_remeasure=3)
    assert evaluator.calls.count(slow) == 4  # once, then 3 times again
    assert result.noise["flagged"] == 1 and result.noise["remeasured"] == 3 and result.noise["still_flagged"] == 1
    kept = next(h for h in result.history if h["config"] == dict(slow))
    assert "throttled: sw power cap" in kept["noise"] and kept["noise"][0].startswith("SM clock 1200 MHz")
    assert result.best_config == FAST
    guard.close()


def test_race_rounds_are_guarded_too_and_the_cpu_search_says_the_guard_is_off():
    backend = FakeNvml()
    guard = NoiseGuard(0, interval_ms=1, backend=backend)
    n = len(VALID)
    evaluator = ThrottledSometimes(backend, throttled={n + 1})  # the race's first measurement
    result = _tune(evaluator, guard, retime_top=2)
    assert result.noise["flagged"] == 1 and result.noise["remeasured"] == 1
    assert result.best_config == FAST and result.race["stopped"] == "separated"
    guard.close()
    off = _tune(ThrottledSometimes(FakeNvml()), None, retime_top=0)
    assert off.noise["guard"] is False and off.noise["reason"].startswith("off: not a GPU")
    assert off.noise["flagged"] == 0


class ThrottledSometimesOrder:
    """The grid sampler's order of the search (seed 3), learned from a run without noise."""

    _order: list[Config] | None = None

    @classmethod
    def order(cls) -> list[Config]:
        if cls._order is None:
            evaluator = ThrottledSometimes(FakeNvml())
            _tune(evaluator, None, retime_top=0)
            cls._order = list(evaluator.calls)
        return cls._order


@pytest.mark.gpu
@pytest.mark.skipif(not os.path.exists("/dev/nvidia0"), reason="needs an NVIDIA GPU")
def test_the_real_guard_on_a_gpu_opens_and_watches_a_short_trial():
    guard = NoiseGuard(interval_ms=5)
    assert guard.enabled, guard.reason
    guard.begin()
    time.sleep(0.05)
    check = guard.end()
    assert isinstance(check.reasons, tuple)
    guard.close()
