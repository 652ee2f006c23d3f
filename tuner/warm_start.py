"""Warm start: known-good configs from elsewhere (another GPU, another bucket, another
database, an exported file) as the first trials of a search.

`open_warm_source(text, db)` reads SOURCE, which is one of
- a device name present in the database `db` ("nvidia-h100-80gb-hbm3", or a name
  `tuner.devices` knows: "h100", "NVIDIA H100 80GB HBM3");
- another tuning database (a file path or an SQLAlchemy URL);
- a file or a folder of files written by `infertune db export`.

`WarmSource.configs_for(spec, problem, device)` ranks the source's records for one problem:
1. the same kernel and problem family (every dim but the token dim, dtype and options),
   nearest token count in log space first;
2. then other families of the same kernel and dtype, nearest shape first (the sum of the
   dims' log2 distances, one more per differing option);
ties broken by the record's device (this device class, then the same compute capability,
then any), measured before transferred, fresh before stale, faster first. Each record's
config is re-validated for the target (`spec.reject_reason(config, problem, device)`: a
config tuned on an H100 with 200 KiB of shared memory is dropped for an L4), and duplicates
are dropped: the result is what the search enqueues after the default
(`SearchOptions.warm_start`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kernels.device import DeviceInfo
from kernels.errors import KernelError
from kernels.registry import REGISTRY
from kernels.spec import Config, KernelSpec, Problem

from .database import Database, DatabaseError, export_records, open_database, stale_reason
from .devices import device_for
from .keys import bucketed_dim, device_class, log_distance, normalize_device_name, problem_family, problem_from_key
from .location import default_db_path, shown
from .record import TuningRecord

DEFAULT_LIMIT = 5
_SQLITE_MAGIC = b"SQLite format 3\x00"
# What a differing option (bias, quant scheme) adds to the shape distance of another family:
# as much as a factor of two in one dim.
_OPTION_DISTANCE = 1.0


class WarmStartError(ValueError):
    """A warm-start source that does not exist, cannot be read or holds no record for any
    registered kernel. One line."""


@dataclass(frozen=True)
class Candidate:
    """One record of the source considered for a problem, and where it ranks."""

    record: TuningRecord
    config: Config
    tier: int             # 1: same family; 2: another family of the same kernel and dtype
    distance: float       # log2 distance of the token count (tier 1) or of the whole shape (tier 2)
    why: str              # "M=32 on nvidia-h100-80gb-hbm3 (same family)"


@dataclass
class WarmSource:
    """Records to warm-start searches from. Build with `open_warm_source` or `from_records`."""

    label: str
    records: tuple[TuningRecord, ...]
    _by_kernel: dict[str, list[tuple[TuningRecord, Problem]]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_records(cls, records: Iterable[TuningRecord], label: str) -> WarmSource:
        """A source of `records` (those of kernels no longer registered are dropped)."""
        names = {s.name for s in REGISTRY}
        return cls(label, tuple(r for r in records if r.kernel in names))

    def _parsed(self, spec: KernelSpec) -> list[tuple[TuningRecord, Problem]]:
        found = self._by_kernel.get(spec.name)
        if found is None:
            found = []
            for r in self.records:
                if r.kernel != spec.name:
                    continue
                try:
                    found.append((r, problem_from_key(spec, r.problem_key)))
                except KernelError:
                    continue  # a stale record of a kernel whose problems changed: no hint
            self._by_kernel[spec.name] = found
        return found

    def candidates(self, spec: KernelSpec, problem: Problem, device: DeviceInfo) -> list[Candidate]:
        """Every record of the source that could seed `problem` on `device`, best first,
        before validation and deduplication (see `configs_for`)."""
        family = problem_family(spec, problem)
        dim = bucketed_dim(spec)
        target = device_class(device)
        out: list[tuple[tuple, Candidate]] = []
        for record, theirs in self._parsed(spec):
            if theirs.dtype != problem.dtype:
                continue
            if problem_family(spec, theirs) == family:
                tier, distance = 1, log_distance(theirs[dim], problem[dim]) if dim else 0.0
                where = f"{dim}={theirs[dim]}" if dim else theirs.shape_text()
                why = f"{where} on {record.device_name} (same family)"
            else:
                tier, distance = 2, shape_distance(theirs, problem)
                why = f"{spec.shape_key(theirs)} on {record.device_name} (another family)"
            device_rank = 0 if (record.device_name, record.capability) == (target.name, target.capability) else \
                1 if record.capability == target.capability else 2
            transferred = "transferred_from" in record.extra
            key = (tier, round(distance, 9), device_rank, transferred, stale_reason(record) is not None,
                   record.median_ms)
            out.append((key, Candidate(record, Config(record.config), tier, distance, why)))
        out.sort(key=lambda item: item[0])
        return [c for _, c in out]

    def configs_for(self, spec: KernelSpec, problem: Problem, device: DeviceInfo,
                    limit: int = DEFAULT_LIMIT) -> list[Config]:
        """Up to `limit` configs for `problem` on `device`, best first: the configs of the
        nearest matching records that `device` accepts for `problem`, each once."""
        return [c.config for c in self.explain(spec, problem, device, limit)]

    def explain(self, spec: KernelSpec, problem: Problem, device: DeviceInfo,
                limit: int = DEFAULT_LIMIT) -> list[Candidate]:
        """`configs_for` with the record behind each config and why it ranks there."""
        chosen: list[Candidate] = []
        seen: set[Config] = set()
        for c in self.candidates(spec, problem, device):
            if len(chosen) >= limit:
                break
            if c.config in seen or spec.reject_reason(c.config, problem, device) is not None:
                continue
            seen.add(c.config)
            chosen.append(c)
        return chosen

    def describe(self) -> str:
        """"device nvidia-h100-80gb-hbm3 in tuning.db: 12 records (matmul 10, rmsnorm 2)"."""
        kernels = Counter(r.kernel for r in self.records)
        parts = ", ".join(f"{k} {n}" for k, n in sorted(kernels.items()))
        return f"{self.label}: {len(self.records)} record(s) ({parts})"


def shape_distance(a: Problem, b: Problem) -> float:
    """How far two problems of one kernel are: the sum over their dims of |log2 a - log2 b|,
    plus one per option that differs (bias, quant scheme, ...)."""
    total = 0.0
    for dim, value in a.shape:
        other = dict(b.shape).get(dim)
        total += log_distance(value, other) if other else 8.0
    options = set(a.options) ^ set(b.options)
    total += _OPTION_DISTANCE * len({name for name, _ in options})
    return total


# -- opening a source ------------------------------------------------------------------------------
def open_warm_source(text: str, db: Database | str | None = None) -> WarmSource:
    """The warm-start source SOURCE names (see the module docstring); `db` is the database
    a device name is looked up in (an open Database or its location; default the per-user
    database). Raises WarmStartError (one line) when SOURCE is none of these, cannot be
    read, or holds no record of a registered kernel."""
    if not text or not text.strip():
        raise WarmStartError("--warm-start needs a SOURCE: a device name, a database or an exported JSON file")
    path = Path(text).expanduser()
    if "://" in text:
        source = WarmSource.from_records(_database_records(text), f"database {text}")
    elif path.is_dir():
        source = WarmSource.from_records(_folder_records(path), f"exports in {shown(str(path))}")
    elif path.is_file():
        source = WarmSource.from_records(_file_records(path), f"{shown(str(path))}")
    else:
        source = _device_source(text, db)
    if not source.records:
        raise WarmStartError(f"warm-start source {text!r} holds no record of any registered kernel")
    return source


def _database_records(location: str) -> list[TuningRecord]:
    try:
        with open_database(location, create=False) as database:
            return database.records()
    except DatabaseError as exc:
        raise WarmStartError(f"warm-start source {location!r}: {exc}") from None


def _file_records(path: Path) -> list[TuningRecord]:
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise WarmStartError(f"warm-start source {str(path)!r} cannot be read: {exc.strerror}") from None
    if head == _SQLITE_MAGIC:
        return _database_records(str(path))
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WarmStartError(f"warm-start source {str(path)!r} cannot be read: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise WarmStartError(f"warm-start source {str(path)!r} is neither a tuning database nor a JSON export "
                             "(`infertune db export`)") from None
    try:
        return export_records(document)
    except DatabaseError as exc:
        raise WarmStartError(f"warm-start source {str(path)!r}: {exc}") from None


def _folder_records(path: Path) -> list[TuningRecord]:
    files = sorted(path.glob("*.json"))
    if not files:
        raise WarmStartError(f"warm-start source {str(path)!r} is a folder with no exported .json file")
    records: list[TuningRecord] = []
    for file in files:
        records += _file_records(file)
    return records


def _device_source(text: str, db: Database | str | None) -> WarmSource:
    """The records of the device `text` names in `db`: by its normalized name, else by the
    name of the known GPU it means ("h100" -> nvidia-h100-80gb-hbm3)."""
    if isinstance(db, Database):
        records, location = _records_of(db), db.location
    else:
        location = db or default_db_path()
        try:
            with open_database(location, create=False) as database:
                records = _records_of(database)
        except DatabaseError as exc:
            raise WarmStartError(f"warm-start source {text!r} is not a file, and the database to find it in as a "
                                 f"device name cannot be read: {exc}") from None
    wanted = {normalize_device_name(text)}
    known = device_for(text)
    if known is not None:
        wanted |= {known.name, *known.aliases}
    mine = [r for r in records if r.device_name in wanted]
    if not mine:
        devices = sorted({r.device_name for r in records})
        raise WarmStartError(f"warm-start source {text!r} is not a file, a database URL or a device in "
                             f"{shown(location)} (devices there: {', '.join(devices) or 'none'})")
    name = mine[0].device_name
    return WarmSource.from_records(mine, f"device {name} in {shown(location)}")


def _records_of(database: Database) -> list[TuningRecord]:
    try:
        return database.records()
    except DatabaseError as exc:
        raise WarmStartError(f"warm-start source database: {exc}") from None


__all__ = ["Candidate", "DEFAULT_LIMIT", "WarmSource", "WarmStartError", "open_warm_source", "shape_distance"]
