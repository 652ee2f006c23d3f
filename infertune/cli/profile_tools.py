"""The tools `infertune profile` runs around a workload: NVTX ranges, the NVML sampler,
torch.profiler, and Nsight Systems / Nsight Compute re-runs. Each records its outcome in
run.json; a tool that is absent or refused is recorded with its reason and the rest runs."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from profilers import nvtx



def annotate(message: str):
    """An NVTX range (domain infertune, category model) around a profiled variant."""
    return nvtx.annotate(message, "model")


@contextlib.contextmanager
def telemetry_sampler(enabled: bool, path: Path, run: dict[str, Any]) -> Iterator[None]:
    if not enabled:
        yield
        return
    from profilers.nvml import Sampler

    sampler = Sampler(interval_ms=50.0)
    sampler.start()
    try:
        yield
    finally:
        telemetry = sampler.stop()
        _flag_rows(run, telemetry, getattr(sampler, "_t0", None))
        data = telemetry.to_dict()
        entry: dict[str, Any] = {"available": bool(data.get("available")), "reason": data.get("reason"),
                                 "summary": data.get("summary"), "samples_file": None}
        samples = data.get("samples") or []
        if samples:
            file = path / "telemetry.csv"
            keys = sorted({k for s in samples for k in s})
            with file.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                for s in samples:
                    writer.writerow({k: _cell(s.get(k)) for k in keys})
            entry["samples_file"] = file.name
            run["artifacts"].append(file.name)
        run["telemetry"] = entry


def _flag_rows(run: dict[str, Any], telemetry, t0: float | None) -> None:
    """Per measurement: the telemetry flags (clocks or temperature moved, throttled) of the
    samples taken while it ran (one sample interval of slack each side), and its window in
    seconds since the sampler started (the report's timeline marks)."""
    from profilers.nvml import summarize

    if not telemetry.available or t0 is None:
        return
    slack = telemetry.interval_ms / 1000.0
    for row in run["measurements"] + run["models"]:
        window = row.get("window")
        if not window:
            continue
        a, b = window[0] - t0, window[1] - t0
        inside = [smp for smp in telemetry.samples if a - slack <= smp.t_s <= b + slack]
        row["window_s"] = [a, b]
        row["telemetry_flags"] = summarize(inside)["flags"] if inside else []


def _cell(value: Any) -> Any:
    return ";".join(value) if isinstance(value, list) else value


@contextlib.contextmanager
def torch_trace(enabled: bool, path: Path, run: dict[str, Any], device) -> Iterator[None]:
    if not enabled:
        yield
        return
    import torch

    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.kind == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    file = path / "trace.json"
    try:
        with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
            yield
    except RuntimeError as exc:  # the profiler itself failed to start or stop
        run["profilers"]["torch_trace"] = {"status": "failed", "reason": str(exc).splitlines()[0][:200]}
        return
    prof.export_chrome_trace(str(file))
    run["profilers"]["torch_trace"] = {"status": "ok", "reason": None, "file": file.name}
    run["artifacts"].append(file.name)


def _record(result, run: dict[str, Any], folder: Path) -> dict[str, Any]:
    data = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    files = data.get("files") or []
    for f in files:
        try:
            run["artifacts"].append(str(Path(f).relative_to(folder.parent)))
        except ValueError:
            run["artifacts"].append(str(f))
    return data


def run_nsys(child: list[str], folder: Path, run: dict[str, Any]) -> dict[str, Any]:
    from profilers import nsys

    folder.mkdir(parents=True, exist_ok=True)
    return _record(nsys.run_nsys(child, folder, timeout_s=1800), run, folder)


def run_ncu(child: list[str], folder: Path, run: dict[str, Any]) -> dict[str, Any]:
    from profilers import ncu

    folder.mkdir(parents=True, exist_ok=True)
    # Under ncu every launch is replayed per section: time a handful of repetitions, not
    # 100 ms' worth (`env` sets them for the child; no shell is involved).
    few = ["env", "INFERTUNE_WARMUP_MS=0", "INFERTUNE_REP_MS=0", "INFERTUNE_MIN_REPS=3", "INFERTUNE_MIN_REPS_CPU=1"]
    return _record(ncu.run_ncu([*few, *child], folder, timeout_s=1800), run, folder)
