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
from collections.abc import Iterable, Mapping

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
        """Counts by source ("database", "bucket", "nearest", "heuristic"), the marks of the
        records behind them per source ({"database": {"confirmed": 7, "unconfirmed": 2}}:
        end-to-end confirmation, transfer from another GPU), and one row per launch."""
        table = dict(self.table)  # a snapshot: a serving thread may resolve an unplanned launch meanwhile
        marks: dict[str, Counter] = {}
        for r in table.values():
            for mark in _marks(r):
                marks.setdefault(r.source, Counter())[mark] += 1
        return {
            "by_source": dict(Counter(r.source for r in table.values())),
            "marks_by_source": {source: dict(counts) for source, counts in marks.items()},
            "unplanned": len(self.unplanned),
            "launches": [{"kernel": name, "problem": kernel_library.get(name).shape_key(problem),
                          "source": r.source, "marks": list(_marks(r)), "config": str(r.config), "detail": r.detail}
                         for (name, problem), r in table.items()],
        }


def _marks(resolution: Resolution) -> tuple[str, ...]:
    return tuple(getattr(resolution, "marks", ()))  # a source of another library may give none


SOURCE_ORDER = ("database", "bucket", "nearest", "heuristic", "caller")
MARK_ORDER = ("confirmed", "unconfirmed", "transferred")


def _ranked(names: Iterable[str], order: tuple[str, ...]) -> list[str]:
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def sources_text(by_source: Mapping[str, int] | None, marks_by_source: Mapping[str, Mapping[str, int]] | None = None) -> str:
    """"9 database (7 confirmed, 2 unconfirmed), 8 heuristic": the counts of a summary's
    `by_source`, each with the marks of its records; "-" for none. Pure."""
    if not by_source:
        return "-"
    marks_by_source = marks_by_source or {}
    parts = []
    for source in _ranked(by_source, SOURCE_ORDER):
        marks = marks_by_source.get(source) or {}
        shown = ", ".join(f"{marks[m]} {m}" for m in _ranked(marks, MARK_ORDER))
        parts.append(f"{by_source[source]} {source}" + (f" ({shown})" if shown else ""))
    return ", ".join(parts)
