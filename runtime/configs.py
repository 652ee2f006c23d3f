"""Which config each kernel launch gets, decided at load, and where it came from.

`LaunchConfigs` wraps the config source the runtime runs with (the tuned database's
`DatabaseSource`, or the heuristic) and answers the kernels' `resolve` calls from its own
table. `prepare(...)` fills the table for every (kernel, problem) the model's launch list
says it will meet at a batch size and prompt length (runtime/launches.py), before the
first token: each is one database lookup (exact key, else nearest bucket, else heuristic),
and what the decode loop then asks is a dict hit (no database, no heuristic on the hot
path). A launch the list did not foresee is resolved on first use and kept; `unplanned`
counts them (a test holds the list and the model to each other: it stays 0).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import kernels as kernel_library
from kernels.config_source import ConfigSource, Resolution
from kernels.device import DeviceInfo
from kernels.spec import KernelSpec, Problem


class LaunchConfigs:
    """A ConfigSource: the table of resolved configs, filled ahead of the launches."""

    def __init__(self, inner: ConfigSource, device: DeviceInfo) -> None:
        self.inner = inner
        self.device = device
        self.table: dict[tuple[str, Problem], Resolution] = {}
        self.unplanned: dict[tuple[str, Problem], Resolution] = {}

    def prepare(self, pairs: Iterable[tuple[str, Problem]]) -> None:
        """Resolve every (kernel name, problem) now."""
        for name, problem in pairs:
            key = (name, problem)
            if key not in self.table:
                self.table[key] = self.inner.resolve(kernel_library.get(name), problem, self.device)

    def resolve(self, spec: KernelSpec, problem: Problem, device: DeviceInfo) -> Resolution:
        key = (spec.name, problem)
        found = self.table.get(key)
        if found is None:
            found = self.table[key] = self.unplanned[key] = self.inner.resolve(spec, problem, device)
        return found

    def summary(self) -> dict[str, object]:
        """Counts by source ("database", "nearest", "heuristic") and one row per launch."""
        return {
            "by_source": dict(Counter(r.source for r in self.table.values())),
            "unplanned": len(self.unplanned),
            "launches": [{"kernel": name, "problem": kernel_library.get(name).shape_key(problem),
                          "source": r.source, "config": str(r.config), "detail": r.detail}
                         for (name, problem), r in self.table.items()],
        }
