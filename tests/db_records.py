"""Tuning records for the database tests (no tuning run needed), and a writer process for the
two-writers test: `python -m tests.db_records DB TAG COUNT` prints "ready", waits for a line
on stdin (so two writers start together, past their imports), then puts COUNT records, one
transaction each."""

from __future__ import annotations

import sys

import kernels
from kernels.device import DeviceInfo
from tuner.database import current_triton_minor, key_fields, open_database
from tuner.record import TuningRecord

from .fake_devices import H100


def make_record(kernel: str = "matmul", shape: dict[str, int] | None = None, dtype: str = "fp16",
                options: dict[str, str] | None = None, device: DeviceInfo = H100, median_ms: float = 1.0,
                config: dict[str, int] | None = None, **overrides) -> TuningRecord:
    """A record for `kernel` on `device`, current source hash and Triton version, whose config
    is the heuristic's unless given."""
    spec = kernels.get(kernel)
    problem = spec.problem(shape or {"M": 16, "N": 256, "K": 128}, dtype, options)
    fields = dict(
        key_fields(spec, problem, device), triton_version=f"{current_triton_minor()}.0", torch_version="2.13.0",
        config=config if config is not None else dict(spec.heuristic(problem, device)),
        median_ms=median_ms, p10_ms=median_ms * 0.9, p90_ms=median_ms * 1.1, default_ms=median_ms * 2,
        baseline_ms=median_ms * 1.5, trials=10, created="2026-11-25T12:00:00+00:00",
    )
    fields.update(overrides)
    return TuningRecord(**fields)


def main(path: str, tag: int, count: int) -> None:
    print("ready", flush=True)
    sys.stdin.readline()
    with open_database(path) as db:
        for i in range(count):
            # Distinct N per writer and record: 2*count keys in all, none shared.
            db.put(make_record(shape={"M": 16, "N": 64 + 2 * i + tag, "K": 128}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
