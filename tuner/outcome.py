"""What one evaluated config comes to: a timing, an early stop, or a typed failure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from profilers.timing import Timing

# Failure kinds, in the words the study, the result and the CLI use.
INVALID = "invalid"                    # broke a constraint; never compiled, never counted
COMPILE_ERROR = "compile-error"
OUT_OF_RESOURCES = "out-of-resources"
RUNTIME_ERROR = "runtime-error"
WRONG_RESULT = "wrong-result"          # output differs from the reference: never a winner
TIMEOUT = "timeout"                    # ran past the per-trial timeout; the worker was replaced
CRASHED = "crashed"                    # the worker process died (illegal memory access, segfault)
INTERRUPTED = "interrupted"            # Ctrl-C during the trial: not a result, retried on resume
ABANDONED = "abandoned"                # its tuner died mid-trial (tuner/owner.py): not a result, enqueued again

OK = "ok"
EARLY_STOPPED = "early-stopped"
FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    """The result of evaluating one config.

    status: "ok" (checked and timed), "early-stopped" (checked; its first repetitions were
    already far slower than the best; `timing` holds those) or "failed" (`kind`, `reason`).
    """

    status: str
    timing: Timing | None = None
    kind: str | None = None
    reason: str | None = None
    sqnr_db: float | None = None        # against the kernel's reference (its own arithmetic)
    float_sqnr_db: float | None = None  # quantized kernels: against the unquantized float op

    @property
    def ok(self) -> bool:
        return self.status == OK

    @classmethod
    def failed(cls, kind: str, reason: str) -> Outcome:
        return cls(status=FAILED, kind=kind, reason=reason)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "timing": self.timing.to_dict() if self.timing else None,
                "kind": self.kind, "reason": self.reason, "sqnr_db": self.sqnr_db,
                "float_sqnr_db": self.float_sqnr_db}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        timing = data.get("timing")
        return cls(status=str(data["status"]), timing=Timing(**timing) if timing else None,
                   kind=data.get("kind"), reason=data.get("reason"), sqnr_db=data.get("sqnr_db"),
                   float_sqnr_db=data.get("float_sqnr_db"))
