"""The NVML telemetry sampler: unavailable (with the reason, never raising) where NVML is
missing or fails, and with a scripted fake backend: samples, per-metric summary, energy
from the counter or the power integral, throttle reasons decoded, and the flags."""

from __future__ import annotations

import sys
import time

import pytest

from profilers import nvml
from profilers.nvml import CLOCK_MOVED_FRACTION, TEMPERATURE_MOVED_C, Sample, Sampler, decode_reasons, summarize

STEADY = {"sm_clock_mhz": 1980, "mem_clock_mhz": 2619, "power_w": 300.0, "energy_mj": 1_000_000,
          "temperature_c": 50, "gpu_util_pct": 100, "mem_util_pct": 40, "memory_used_mib": 1024.0,
          "throttle_mask": 0}


class ScriptedBackend:
    """Returns the scripted reads in order, then repeats the last; records its calls."""

    def __init__(self, script: list[dict], fail_init: Exception | None = None, no_gpu: bool = False) -> None:
        self.script = script
        self.reads = 0
        self.fail_init = fail_init
        self.no_gpu = no_gpu
        self.shutdowns = 0

    def init(self) -> None:
        if self.fail_init:
            raise self.fail_init

    def handle(self, index: int):
        if self.no_gpu:
            raise RuntimeError("Invalid Argument")
        return ("gpu", index)

    def read(self, handle):
        value = self.script[min(self.reads, len(self.script) - 1)]
        self.reads += 1
        return dict(value)

    def shutdown(self) -> None:
        self.shutdowns += 1


def _run_script(script: list[dict]):
    backend = ScriptedBackend(script)
    with Sampler(interval_ms=1, backend=backend) as sampler:
        deadline = time.monotonic() + 10
        while backend.reads < len(script) + 2 and time.monotonic() < deadline:
            time.sleep(0.002)
    assert backend.shutdowns == 1
    return sampler.telemetry


def test_no_pynvml_module_means_unavailable_with_the_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    sampler = Sampler()
    assert not sampler.available and "nvidia-ml-py" in sampler.reason
    telemetry = sampler.start().stop()
    assert telemetry.available is False and telemetry.reason == sampler.reason
    assert telemetry.samples == [] and telemetry.to_dict()["available"] is False


def test_nvml_init_failure_and_missing_gpu_are_reported_not_raised():
    failing = Sampler(backend=ScriptedBackend([STEADY], fail_init=RuntimeError("Driver Not Loaded")))
    assert not failing.available and "nvmlInit failed" in failing.reason and "Driver Not Loaded" in failing.reason
    with failing:
        pass
    assert failing.telemetry.available is False
    no_gpu = Sampler(device_index=3, backend=ScriptedBackend([STEADY], no_gpu=True))
    assert not no_gpu.available and "index 3" in no_gpu.reason


def test_real_nvml_here_never_raises():
    """On this machine (NVML or not) the default backend answers without raising."""
    sampler = Sampler(interval_ms=5)
    with sampler:
        time.sleep(0.02)
    assert sampler.telemetry.available or sampler.telemetry.reason


def test_steady_run_has_no_flags_and_energy_from_the_counter():
    script = [dict(STEADY, energy_mj=1_000_000 + 3000 * i) for i in range(5)]
    telemetry = _run_script(script)
    assert telemetry.available and len(telemetry.samples) >= len(script)
    times = [sample.t_s for sample in telemetry.samples]
    assert times[0] >= 0 and times == sorted(times)
    s = telemetry.summary
    assert s["flags"] == [] and s["reasons_seen"] == []
    assert s["metrics"]["sm_clock_mhz"] == {"min": 1980, "median": 1980, "max": 1980}
    assert s["energy_method"] == "counter" and s["energy_j"] == pytest.approx(12.0)  # (1_012_000 - 1_000_000) mJ


def test_scripted_throttle_clock_drop_and_heating_raise_the_flags():
    script = [
        dict(STEADY),
        dict(STEADY, temperature_c=53),
        dict(STEADY, sm_clock_mhz=1755, power_w=350.0, temperature_c=58, throttle_mask=0x4),  # power cap
        dict(STEADY, sm_clock_mhz=1410, temperature_c=61, throttle_mask=0x4 | 0x20),  # + sw thermal
        dict(STEADY, temperature_c=60, throttle_mask=0x1),  # idle: seen, but not throttling
    ]
    telemetry = _run_script(script)
    s = telemetry.summary
    assert s["flags"] == ["clocks-moved", "temperature-moved", "throttled"]
    assert s["throttle_reasons"] == ["sw power cap", "sw thermal slowdown"]
    assert s["reasons_seen"] == ["sw power cap", "sw thermal slowdown", "gpu idle"]
    assert s["metrics"]["sm_clock_mhz"]["min"] == 1410 and s["metrics"]["sm_clock_mhz"]["max"] == 1980
    assert s["metrics"]["temperature_c"]["max"] == 61
    assert any("SM clock 1410..1980" in note for note in s["notes"])
    assert s["thresholds"] == {"clock_moved_fraction": CLOCK_MOVED_FRACTION, "temperature_moved_c": TEMPERATURE_MOVED_C}
    assert telemetry.flags == s["flags"]
    assert telemetry.to_dict()["samples"][0]["reasons"] == []


def test_thresholds_are_strict_and_stated():
    def samples(values):
        return [Sample(0.1 * i, dict(STEADY, **v)) for i, v in enumerate(values)]

    # 4% clock move, 5 °C: not flagged; 6% and 6 °C: flagged.
    assert summarize(samples([{}, {"sm_clock_mhz": 1980 * 0.96, "temperature_c": 55}]))["flags"] == []
    assert summarize(samples([{}, {"sm_clock_mhz": 1980 * 0.94, "temperature_c": 56}]))["flags"] == [
        "clocks-moved", "temperature-moved"]


def test_energy_integrates_power_without_a_counter():
    samples = [Sample(0.0, {"power_w": 100.0, "energy_mj": None}), Sample(1.0, {"power_w": 300.0, "energy_mj": None}),
               Sample(2.0, {"power_w": 300.0, "energy_mj": None})]
    s = summarize(samples)
    assert s["energy_method"] == "power-integral" and s["energy_j"] == pytest.approx(200.0 + 300.0)
    assert summarize([Sample(0.0, {})])["energy_j"] is None


def test_reason_masks_decode_to_names():
    assert decode_reasons(0) == [] and decode_reasons(None) == []
    assert decode_reasons(0x4 | 0x8 | 0x40) == ["sw power cap", "hw slowdown", "hw thermal slowdown"]
    assert decode_reasons(0x1000) == ["unknown 0x1000"]


def test_a_failing_read_keeps_the_first_error_and_the_sampler_alive():
    class Flaky(ScriptedBackend):
        def read(self, handle):
            self.reads += 1
            if self.reads == 2:
                raise RuntimeError("GPU is lost")
            return dict(STEADY)

    backend = Flaky([STEADY])
    with Sampler(interval_ms=1, backend=backend) as sampler:
        while backend.reads < 5:
            time.sleep(0.002)
    assert sampler.telemetry.available and "GPU is lost" in sampler.telemetry.reason
    assert len(sampler.telemetry.samples) >= 3
    with pytest.raises(RuntimeError, match="one window"):
        sampler.start()


def test_interval_must_be_positive():
    with pytest.raises(ValueError):
        Sampler(interval_ms=0, backend=ScriptedBackend([STEADY]))
    assert nvml.METRICS[0] == "sm_clock_mhz"
