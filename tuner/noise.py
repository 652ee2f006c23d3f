"""The noise guard in the search: which guard a search uses, and one measurement taken under
it (flagged, measured again, counted). The guard itself is profilers.nvml.NoiseGuard."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kernels.device import DeviceInfo
from profilers.nvml import NoiseCheck, NoiseGuard

from .outcome import Outcome


class OffGuard:
    """A noise guard that watches nothing, and says why."""

    enabled = False

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def begin(self) -> None:
        pass

    def end(self) -> NoiseCheck:
        return NoiseCheck()

    def close(self) -> None:
        pass


def open_guard(enabled: bool, device: DeviceInfo, given: NoiseGuard | None) -> tuple[NoiseGuard | OffGuard, bool]:
    """(guard, owned): `given`, else a NoiseGuard on a GPU (off, with NVML's reason, where
    NVML is missing), else an OffGuard saying why."""
    if given is not None:
        return given, False
    if not enabled:
        return OffGuard("off: turned off (noise_guard=False)"), False
    if device.kind != "cuda":
        return OffGuard("off: not a GPU (no clocks or throttling to watch)"), False
    guard = NoiseGuard()
    if not guard.enabled:
        guard.reason = f"off: {guard.reason}"
    return guard, True


def new_tally(guard: NoiseGuard | OffGuard) -> dict[str, Any]:
    """The counts a TuneResult reports under "noise"."""
    return {"guard": guard.enabled, "reason": guard.reason, "flagged": 0, "remeasured": 0, "still_flagged": 0,
            "examples": []}


def guarded(evaluate: Callable[[], Outcome], guard: NoiseGuard | OffGuard, remeasure: int, tally: dict[str, Any],
            label: str, out_of_time: Callable[[], bool] = lambda: False) -> tuple[Outcome, list[str]]:
    """Run `evaluate()` with `guard` around it; a timing it flags is measured again, at most
    `remeasure` times (not once `out_of_time()`). Counts into `tally`: "flagged" (measurements
    whose first attempt was flagged), "remeasured" (attempts made again), "still_flagged"
    (kept flagged: the bound or the budget was reached), the first five reasons in
    "examples" (prefixed with `label`). Returns the last outcome and what the guard said of
    it (empty: clean)."""
    for attempt in range(remeasure + 1):
        guard.begin()
        outcome = evaluate()
        check = guard.end()
        if not check.flagged or outcome.timing is None:
            return outcome, []
        if attempt == 0:
            tally["flagged"] += 1
            tally["examples"] = (tally["examples"] + [f"{label}: {r}" for r in check.reasons])[:5]
        if attempt == remeasure or out_of_time():
            break
        tally["remeasured"] += 1
    tally["still_flagged"] += 1
    return outcome, list(check.reasons)
