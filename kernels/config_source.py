"""Where a kernel's config comes from when the caller gives none.

The public kernel functions (e.g. `kernels.matmul(a, b)`) ask the active `ConfigSource`.
Until the tuned database is wired in (`set_config_source(...)` from the tuner or the
runtime) the source is the spec's heuristic. A source says which of its answers it gave
("database", "nearest", "heuristic") so callers can report it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from .device import DeviceInfo
from .spec import Config, KernelSpec, Problem


@dataclass(frozen=True)
class Resolution:
    """A config and where it came from: "database" (the exact key), "bucket" (a traffic
    bucket map), "nearest", "heuristic" or "caller". `marks` are short words about the record
    behind it: "confirmed" / "unconfirmed" (end to end), "transferred" (from another GPU,
    not measured on this one)."""

    config: Config
    source: str
    detail: str = ""
    marks: tuple[str, ...] = ()


class ConfigSource(Protocol):
    def resolve(self, spec: KernelSpec, problem: Problem, device: DeviceInfo) -> Resolution:
        """Return the config to launch `spec` with for `problem` on `device`."""
        ...


class HeuristicSource:
    """The spec's own default for the problem (no tuning data), memoized: a heuristic runs
    its constraint checks (tens of microseconds of Python), a repeated problem costs a dict
    lookup."""

    def __init__(self) -> None:
        self._memo: dict[tuple[str, Problem, DeviceInfo], Resolution] = {}

    def resolve(self, spec: KernelSpec, problem: Problem, device: DeviceInfo) -> Resolution:
        key = (spec.name, problem, device)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = Resolution(spec.heuristic(problem, device), "heuristic")
        return found


class _Active(threading.local):
    # Thread-local so a tuner thread and a serving thread can use different sources.
    def __init__(self) -> None:
        self.source: ConfigSource = HeuristicSource()


_active = _Active()


def get_config_source() -> ConfigSource:
    return _active.source


def set_config_source(source: ConfigSource) -> ConfigSource:
    """Make `source` the active one for this thread; returns the previous one."""
    previous = _active.source
    _active.source = source
    return previous


@contextlib.contextmanager
def using_config_source(source: ConfigSource) -> Iterator[ConfigSource]:
    previous = set_config_source(source)
    try:
        yield source
    finally:
        set_config_source(previous)
