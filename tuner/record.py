"""One tuned result: what the database stores and what the search writes.

The fields follow the contract of docs/ARCHITECTURE.md ("Tuned config database").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class TuningRecord:
    """The best config found for one (kernel, problem, device, software) and its evidence."""

    kernel: str                      # registry name, e.g. "matmul_w4a16"
    source_hash: str                 # sha256 of the kernel's source (kernels/<name>.py and the helpers it uses)
    device_name: str                 # normalized, e.g. "nvidia-h100-80gb-hbm3"
    capability: str                  # "9.0"; "cpu" on the interpreter
    triton_version: str
    torch_version: str
    dtype: str                       # "bf16"
    quant: str                       # quant scheme or "none"
    problem_key: str                 # spec.shape_key(problem)
    bucket: str                      # bucketed key used for nearest lookups
    shape: dict[str, int]
    config: dict[str, int]
    median_ms: float
    p10_ms: float
    p90_ms: float
    default_ms: float | None         # the heuristic default's median on the same run
    baseline_ms: float | None        # the torch baseline's median on the same run
    trials: int
    interpreter: bool                # True: timed through the CPU interpreter (not GPU speed)
    created: str                     # ISO-8601 UTC
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TuningRecord:
        """The inverse of to_dict. Raises ValueError naming a missing or unknown field."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown record field {unknown[0]!r}")
        missing = sorted(n for n in names - set(data) if n != "extra")
        if missing:
            raise ValueError(f"record field {missing[0]!r} is missing")
        return cls(**data)
