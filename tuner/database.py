"""The tuned config database: SQLite by default, any SQLAlchemy URL (PostgreSQL) through the
same code. This is the reader the runtime imports (`DatabaseSource`, `runtime_source`) and
the writer the tuner uses (`Database.put`). Schema and opening: `tuner.db_schema`.

Every record is checked by `validate_record` on every way in (`put`/`put_many`, which the
tuner, `import_json` and `merge` use): a batch with one bad record is refused whole, in one
line naming it, and nothing is stored. Rows are checked again on the way out, where the
policy for a corrupt row (one that fails the check, or whose JSON does not parse) is:
- a reader that hands the user the contents (`records`, hence `db show`, `export`,
  `verify` and the source side of `merge`) refuses in one line naming the row and the fix
  (`infertune db prune --corrupt`, which is `Database.prune_corrupt`);
- the runtime's `lookup` never fails on one: it skips the row and says so in the answer's
  `detail`.

Lookup order for (kernel, problem, device): the exact key; else the record of the same
kernel, dtype, options and every dim but the token dim on the same device class whose token
count is nearest in log space; else the spec's heuristic. Records of another kernel source
hash or another Triton minor version are stale: never used, and named in the answer.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
import triton
from sqlalchemy import Engine, and_, delete, or_, select, update
from sqlalchemy import exc as sa_exc

from kernels.config_source import HeuristicSource, Resolution
from kernels.device import DeviceInfo
from kernels.registry import REGISTRY
from kernels.spec import Config, KernelSpec, Problem

from .db_schema import (
    APP_ID,
    KEY_COLUMNS,
    SCHEMA_VERSION,
    DatabaseError,
    DatabaseMissing,
    _first_line,
    BUCKET_KEY_COLUMNS,
    bucket_maps_table,
    check_storage,
    connect,
    records_table,
)
from .bucket_map import BucketMap, InvalidBucketMap
from .keys import (
    BUCKETED_DIMS,
    DeviceClass,
    bucketed_dim,
    current_source_hash,
    current_triton_minor,
    device_class,
    hardware_text,
    log_distance,
    problem_bucket,
    problem_family,
    quant_of,
    same_hardware,
    triton_minor,
)
from .location import default_db_path, shown, sqlalchemy_url
from .record import InvalidRecord, TuningRecord, validate_record

__all__ = [
    "EXPORT_FORMAT",
    "Database",
    "DatabaseError",
    "DatabaseMissing",
    "DatabaseSource",
    "InvalidRecord",
    "check_destination",
    "check_storage",
    "current_source_hash",
    "current_source_hashes",
    "current_triton_minor",
    "default_db_path",
    "dump_json",
    "export_records",
    "key_fields",
    "open_database",
    "runtime_source",
    "stale_reason",
    "validate_record",
]

EXPORT_FORMAT = "infertune-tuning-export"
_WRITE_ATTEMPTS = 20
_OPEN_ATTEMPTS = 4
T = records_table
B = bucket_maps_table


def stale_reason(record: TuningRecord) -> str | None:
    """Why `record` may not be used in this process (kernel gone, another kernel source hash,
    another Triton minor version), or None if it is fresh."""
    spec = next((s for s in REGISTRY if s.name == record.kernel), None)
    if spec is None:
        return f"kernel {record.kernel!r} is no longer in the registry"
    if record.source_hash != current_source_hash(spec):
        return "another kernel source hash"
    minor = triton_minor(record.triton_version)
    if minor != current_triton_minor():
        return f"Triton {minor} (this is {current_triton_minor()})"
    return None


def current_source_hashes() -> dict[str, str]:
    """The source hash of every registered kernel (what `prune_stale` keeps)."""
    return {spec.name: current_source_hash(spec) for spec in REGISTRY}


def key_fields(spec: KernelSpec, problem: Problem, device: DeviceInfo) -> dict[str, Any]:
    """The fields of a TuningRecord that say what was tuned, where and with which software
    (kernel, source_hash, device_name, capability, triton_version, torch_version, dtype,
    quant, problem_key, bucket, shape, interpreter): the tuner adds the config and timings."""
    cls = device_class(device)
    return {
        "kernel": spec.name, "source_hash": current_source_hash(spec), "device_name": cls.name,
        "capability": cls.capability, "triton_version": triton.__version__, "torch_version": torch.__version__,
        "dtype": problem.dtype, "quant": quant_of(problem), "problem_key": spec.shape_key(problem),
        "bucket": problem_bucket(spec, problem), "shape": problem.dims, "interpreter": device.interpreter,
    }


def _label(r: Any) -> str:
    """Which record: "matmul M=16,N=256,K=128|fp16|bias=0 on cpu", as far as its fields say."""
    get = r.get if isinstance(r, Mapping) else (lambda name: getattr(r, name, None))
    parts = [get(name) for name in ("kernel", "problem_key")]
    text = " ".join(p for p in parts if isinstance(p, str) and p.isprintable())[:120]
    device = get("device_name")
    if isinstance(device, str) and device.isprintable():
        text += f" on {device[:60]}"
    return text or "?"


def _row_values(r: TuningRecord, dim: str | None, family: str) -> dict[str, Any]:
    return {
        "kernel": r.kernel, "source_hash": r.source_hash, "device_name": r.device_name,
        "capability": r.capability, "triton_version": r.triton_version,
        "triton_minor": triton_minor(r.triton_version), "torch_version": r.torch_version, "dtype": r.dtype,
        "quant": r.quant, "problem_key": r.problem_key, "bucket": r.bucket, "family": family,
        "m": r.shape.get(dim) if dim else None,
        "shape_json": json.dumps(r.shape, sort_keys=True), "config_json": json.dumps(r.config, sort_keys=True),
        "median_ms": float(r.median_ms), "p10_ms": float(r.p10_ms), "p90_ms": float(r.p90_ms),
        "default_ms": None if r.default_ms is None else float(r.default_ms),
        "baseline_ms": None if r.baseline_ms is None else float(r.baseline_ms), "trials": int(r.trials),
        "interpreter": bool(r.interpreter), "created": r.created,
        "extra_json": json.dumps(r.extra, sort_keys=True, allow_nan=False),
    }


class CorruptRow(InvalidRecord):
    """A stored row that fails `validate_record` or does not parse; names the row."""

    def __init__(self, row: Any, why: str) -> None:
        self.row_id = getattr(row, "id", None)
        super().__init__(f"row {self.row_id} ({_label(row)}) is corrupt: {why}")


def _record_of(row: Any) -> TuningRecord:
    """The record of a stored row, checked like one coming in, and its derived columns
    checked against it. Raises CorruptRow."""
    try:
        record = TuningRecord(
            kernel=row.kernel, source_hash=row.source_hash, device_name=row.device_name, capability=row.capability,
            triton_version=row.triton_version, torch_version=row.torch_version, dtype=row.dtype, quant=row.quant,
            problem_key=row.problem_key, bucket=row.bucket, shape=json.loads(row.shape_json),
            config=json.loads(row.config_json), median_ms=row.median_ms, p10_ms=row.p10_ms, p90_ms=row.p90_ms,
            default_ms=row.default_ms, baseline_ms=row.baseline_ms, trials=row.trials,
            interpreter=bool(row.interpreter) if row.interpreter in (0, 1) else row.interpreter,
            created=row.created, extra=json.loads(row.extra_json),
        )
        validate_record(record)
        dim, family = _family_of_record(record)
        if row.family != family or row.m != (record.shape.get(dim) if dim else None) \
                or row.triton_minor != triton_minor(record.triton_version):
            raise InvalidRecord("its family, m or triton_minor column does not match its problem key")
    except InvalidRecord as exc:
        raise CorruptRow(row, str(exc)) from None
    except (TypeError, ValueError) as exc:  # JSON that does not parse, a column of the wrong type
        raise CorruptRow(row, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    return record


def _family_of_record(r: TuningRecord) -> tuple[str | None, str]:
    """(token dim, family key) of a record, from its problem key (no spec needed: the token
    dim is the first shape entry named in keys.BUCKETED_DIMS)."""
    shape_text, sep, rest = r.problem_key.partition("|")
    parts = [p for p in shape_text.split(",") if p]
    dim = next((p.partition("=")[0] for p in parts if p.partition("=")[0] in BUCKETED_DIMS), None)
    kept = [p for p in parts if p.partition("=")[0] != dim]
    return dim, ",".join(kept) + sep + rest


def _is_locked(exc: sa_exc.DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return "locked" in text or "busy" in text or "deadlock" in text or "could not serialize" in text


class Database:
    """An open tuning database. Use `open_database`; close with `close()` or `with`."""

    def __init__(self, engine: Engine, location: str) -> None:
        self._engine = engine
        self.location = location

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._engine.dispose()

    # -- writes ---------------------------------------------------------------------
    def put(self, record: TuningRecord) -> bool:
        """Store `record` unless a record of the same key is at least as fast. Atomic; a
        concurrent writer makes it wait and retry, never lose a write. Returns True if written."""
        return self.put_many([record]) == 1

    def put_many(self, records: Iterable[TuningRecord], *, what: str = "record") -> int:
        """`put` for many records in one transaction. Every record is checked first
        (`validate_record`): one bad record refuses the whole batch, nothing is written.
        Returns how many were written. Raises DatabaseError naming the first bad record
        (`what` and its 1-based position: "record 3", "row 7 of other.db")."""
        rows = []
        for index, r in enumerate(records, 1):
            try:
                validate_record(r)
                rows.append(_row_values(r, *_family_of_record(r)))
            except (AttributeError, TypeError, ValueError) as exc:
                raise DatabaseError(f"malformed {what} {index} ({_label(r)}): {exc}; nothing was written to "
                                    f"{shown(self.location)}") from None
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                with self._engine.connect().execution_options(immediate=True) as conn, conn.begin():
                    return sum(self._upsert(conn, row) for row in rows)
            except (sa_exc.OperationalError, sa_exc.IntegrityError) as exc:
                # Locked (SQLite past its busy timeout), or a concurrent insert of the same key
                # (PostgreSQL; SQLite's BEGIN IMMEDIATE rules that out): the transaction rolled
                # back whole; try it again.
                race = isinstance(exc, sa_exc.IntegrityError) and self._engine.dialect.name != "sqlite"
                if attempt == _WRITE_ATTEMPTS - 1 or not (race or _is_locked(exc)):
                    raise DatabaseError(f"cannot write to {shown(self.location)}: {_first_line(exc)}") from None
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
            except sa_exc.SQLAlchemyError as exc:
                raise DatabaseError(f"cannot write to {shown(self.location)}: {_first_line(exc)}") from None
        raise AssertionError("unreachable")

    @staticmethod
    def _upsert(conn: Any, row: dict[str, Any]) -> bool:
        key = and_(*(T.c[name] == row[name] for name in KEY_COLUMNS))
        found = conn.execute(select(T.c.id, T.c.median_ms, T.c.extra_json).where(key)).first()
        if found is None:
            conn.execute(T.insert().values(**row))
            return True
        # A transferred record was timed on another GPU: it never replaces one measured here,
        # and one measured here replaces it whatever the two times say.
        new_transferred = "transferred_from" in json.loads(row["extra_json"])
        try:
            old_transferred = "transferred_from" in json.loads(found.extra_json)
        except (TypeError, ValueError):  # a corrupt row is replaced by a sound one
            old_transferred = True
        if new_transferred != old_transferred:
            replace = old_transferred
        else:
            replace = row["median_ms"] < found.median_ms
        if replace:
            conn.execute(update(T).where(T.c.id == found.id).values(**row))
        return replace

    def _write(self) -> Any:
        return self._engine.connect().execution_options(immediate=True)

    def set_extra(self, record: TuningRecord, changes: Mapping[str, Any]) -> bool:
        """Merge `changes` into the stored extra of the row with `record`'s key (checked with
        `validate_record`). Returns False when there is no such row. Raises DatabaseError."""
        values = _row_values(record, *_family_of_record(record))
        key = and_(*(T.c[name] == values[name] for name in KEY_COLUMNS))
        with self._errors("write"), self._write() as conn, conn.begin():
            row = conn.execute(select(T).where(key)).first()
            if row is None:
                return False
            try:
                stored = _record_of(row)
                merged = TuningRecord(**{**stored.to_dict(), "extra": {**stored.extra, **dict(changes)}})
                validate_record(merged)
            except (InvalidRecord, TypeError, ValueError) as exc:
                raise DatabaseError(f"cannot update {_label(record)} in {shown(self.location)}: {exc}") from None
            conn.execute(update(T).where(T.c.id == row.id).values(
                extra_json=json.dumps(merged.extra, sort_keys=True, allow_nan=False)))
        return True

    def delete(self, record: TuningRecord) -> bool:
        """Delete the row with `record`'s key. Returns False when there was none."""
        values = _row_values(record, *_family_of_record(record))
        key = and_(*(T.c[name] == values[name] for name in KEY_COLUMNS))
        with self._errors("write"), self._write() as conn, conn.begin():
            return conn.execute(delete(T).where(key)).rowcount > 0

    # -- bucket maps ------------------------------------------------------------------
    def put_bucket_map(self, bucket_map: BucketMap) -> None:
        """Store `bucket_map`, replacing the map of the same kernel, device, family, kernel
        source hash and Triton minor. Raises DatabaseError (a malformed map: one line)."""
        try:
            bucket_map.check()
        except InvalidBucketMap as exc:
            raise DatabaseError(f"bucket map not written to {shown(self.location)}: {exc}") from None
        row = {"kernel": bucket_map.kernel, "device_name": bucket_map.device_name,
               "capability": bucket_map.capability, "family": bucket_map.family,
               "source_hash": bucket_map.source_hash, "triton_version": bucket_map.triton_version,
               "triton_minor": triton_minor(bucket_map.triton_version),
               "map_json": json.dumps({"uppers": list(bucket_map.uppers),
                                       "configs": [dict(c) for c in bucket_map.configs]}, sort_keys=True),
               "created": bucket_map.created,
               "extra_json": json.dumps(bucket_map.extra, sort_keys=True, allow_nan=False)}
        key = and_(*(B.c[name] == row[name] for name in BUCKET_KEY_COLUMNS))
        with self._errors("write"), self._write() as conn, conn.begin():
            conn.execute(delete(B).where(key))
            conn.execute(B.insert().values(**row))

    def bucket_maps(self, kernel: str | None = None) -> list[BucketMap]:
        """Every stored bucket map (of `kernel`), sorted by key. A file from before bucket
        maps opened read-only has none. Raises DatabaseError for a corrupt map."""
        query = select(B).order_by(*(B.c[name] for name in BUCKET_KEY_COLUMNS))
        if kernel is not None:
            query = query.where(B.c.kernel == kernel)
        with self._errors("read"), self._engine.connect() as conn:
            rows = list(conn.execute(query)) if self._has_bucket_maps(conn) else []
        try:
            return [_bucket_map_of(row) for row in rows]
        except InvalidBucketMap as exc:
            raise DatabaseError(f"{shown(self.location)}: {exc}") from None

    @staticmethod
    def _has_bucket_maps(conn: Any) -> bool:
        from sqlalchemy import inspect

        return inspect(conn).has_table(B.name)

    def devices(self) -> list[dict[str, Any]]:
        """One entry per stored (device_name, capability): record count, how many are
        transferred, and the hardware (SM count, memory) where a record says it."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        with self._errors("read"), self._engine.connect() as conn:
            rows = list(conn.execute(select(T.c.device_name, T.c.capability, T.c.extra_json)))
        for row in rows:
            entry = found.setdefault((row.device_name, row.capability), {
                "device_name": row.device_name, "capability": row.capability, "records": 0, "transferred": 0,
                "sm_count": None, "total_memory": None})
            entry["records"] += 1
            try:
                extra = json.loads(row.extra_json)
            except (TypeError, ValueError):
                continue
            if isinstance(extra, dict):
                entry["transferred"] += "transferred_from" in extra
                hardware = extra.get("device")
                if isinstance(hardware, dict) and entry["sm_count"] is None:
                    entry["sm_count"], entry["total_memory"] = hardware.get("sm_count"), hardware.get("total_memory")
        return [found[k] for k in sorted(found)]

    def prune_stale(self, source_hashes: Mapping[str, str], minor: str) -> int:
        """Delete records of another Triton minor version, of another source hash than
        `source_hashes[kernel]`, or of a kernel not in `source_hashes`. Returns the count."""
        fresh = or_(*(and_(T.c.kernel == k, T.c.source_hash == h) for k, h in source_hashes.items()))
        condition = or_(T.c.triton_minor != minor, ~fresh) if source_hashes else T.c.id.isnot(None)
        with self._errors("write"), self._engine.connect().execution_options(immediate=True) as conn, conn.begin():
            return conn.execute(delete(T).where(condition)).rowcount

    def prune_corrupt(self) -> int:
        """Delete every row that fails `validate_record` or does not parse. Returns the count."""
        with self._errors("write"), self._engine.connect().execution_options(immediate=True) as conn, conn.begin():
            bad = []
            for row in conn.execute(select(T)):
                try:
                    _record_of(row)
                except CorruptRow:
                    bad.append(row.id)
            for start in range(0, len(bad), 500):
                conn.execute(delete(T).where(T.c.id.in_(bad[start:start + 500])))
        return len(bad)

    def merge(self, other: Database) -> int:
        """Put every record of `other` here (the faster one wins per key). A corrupt row in
        `other` refuses the merge (nothing written). Returns the count written."""
        return self.put_many(other.records(), what=f"record of {shown(other.location)}, number")

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """SQLAlchemy's errors as one DatabaseError line naming this database."""
        try:
            yield
        except sa_exc.SQLAlchemyError as exc:
            raise DatabaseError(f"cannot {doing} {shown(self.location)}: {_first_line(exc)}") from None

    # -- reads ----------------------------------------------------------------------
    def records(self, kernel: str | None = None) -> list[TuningRecord]:
        """Every record (of `kernel`), sorted by key. Raises DatabaseError naming the first
        corrupt row and the fix (`infertune db prune --corrupt`)."""
        query = select(T).order_by(*(T.c[name] for name in KEY_COLUMNS))
        if kernel is not None:
            query = query.where(T.c.kernel == kernel)
        with self._errors("read"), self._engine.connect() as conn:
            rows = list(conn.execute(query))
        try:
            return [_record_of(row) for row in rows]
        except CorruptRow as exc:
            raise DatabaseError(f"{shown(self.location)}: {exc}; remove corrupt rows with "
                                f"`infertune db prune --corrupt --db {self.location}`") from None

    def lookup(self, spec: KernelSpec, problem: Problem, device: DeviceInfo) -> Resolution:
        """The config for `problem` on `device`: "database" (the exact key), "bucket" (a
        traffic bucket map of the family), "nearest" (same family, nearest token count in log
        space) or "heuristic"; `detail` says why, `marks` what the record is (confirmed,
        unconfirmed, transferred). Records and maps of this device's name and compute
        capability are used; when there are none, those of a card with the same compute
        capability, SM count and memory (an OEM-renamed card), and `detail` says so."""
        cls = device_class(device)
        family = problem_family(spec, problem)
        where = (T.c.kernel == spec.name, T.c.capability == cls.capability, T.c.family == family)
        try:
            with self._engine.connect() as conn:
                rows = list(conn.execute(select(T).where(*where)))
                maps = list(conn.execute(select(B).where(B.c.kernel == spec.name, B.c.capability == cls.capability,
                                                         B.c.family == family))) \
                    if self._has_bucket_maps(conn) else []
        except sa_exc.SQLAlchemyError as exc:  # the runtime runs on, untuned
            return Resolution(spec.heuristic(problem, device), "heuristic",
                              f"tuning database {shown(self.location)} unreadable: {_first_line(exc)}")
        rows, maps, matched = _for_device(rows, maps, cls, device)
        return _choose(spec, problem, device, cls, rows, maps, matched)

    # -- JSON -----------------------------------------------------------------------
    def export_json(self, device_name: str | None = None) -> dict[str, dict[str, Any]]:
        """One document per device name: {device_name: {"format", "schema_version",
        "device_name", "records": [...]}}, records sorted by key. Stable: two exports of the
        same contents are equal, and `dump_json` writes them byte for byte the same."""
        docs: dict[str, dict[str, Any]] = {}
        for r in self.records():
            if device_name is not None and r.device_name != device_name:
                continue
            doc = docs.setdefault(r.device_name, {"format": EXPORT_FORMAT, "app_id": APP_ID,
                                                  "schema_version": SCHEMA_VERSION,
                                                  "device_name": r.device_name, "records": []})
            doc["records"].append(r.to_dict())
        return docs

    def import_json(self, document: Mapping[str, Any]) -> int:
        """Put the records of one exported document, all or none: every record is checked
        (`validate_record`) before any is written. Raises DatabaseError for a document that
        is not an export, of a newer schema, or with a bad record (named, with its 1-based
        position). Returns the count written."""
        records = export_records(document)
        return self.put_many(records, what="record")


def export_records(document: Any) -> list[TuningRecord]:
    """The records of an export document, each checked. Raises DatabaseError (one line)."""
    if not isinstance(document, Mapping) or document.get("format") != EXPORT_FORMAT:
        raise DatabaseError(f"not an infertune tuning export (expected format {EXPORT_FORMAT!r})")
    version = document.get("schema_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise DatabaseError(f"export has a malformed schema_version {str(version)[:40]!r}")
    if version > SCHEMA_VERSION:
        raise DatabaseError(f"export has schema {version}, newer than {SCHEMA_VERSION}; upgrade infertune")
    items = document.get("records", [])
    if not isinstance(items, list):
        raise DatabaseError(f"malformed export: records must be a list, not {type(items).__name__}")
    records = []
    for index, item in enumerate(items, 1):
        try:
            record = TuningRecord.from_dict(item)
            validate_record(record)
        except (TypeError, ValueError) as exc:
            raise DatabaseError(f"malformed record {index} ({_label(item)}): {exc}; nothing was imported") from None
        records.append(record)
    return records


def dump_json(document: Mapping[str, Any]) -> str:
    """The reviewable text of an export document: sorted keys, two-space indent, final newline."""
    return json.dumps(document, sort_keys=True, indent=2, allow_nan=False) + "\n"


def _extra_of(row: Any) -> dict[str, Any]:
    try:
        extra = json.loads(row.extra_json)
    except (TypeError, ValueError):
        return {}
    return extra if isinstance(extra, dict) else {}


def _for_device(rows: list[Any], maps: list[Any], cls: DeviceClass,
                device: DeviceInfo) -> tuple[list[Any], list[Any], str | None]:
    """The records and maps of `device`: those of its normalized name; when there are none
    (and it is a GPU), those of the one stored device of the same compute capability whose
    records say it has the same SM count and memory (tuner.keys.same_hardware; several:
    the one with the most records, then by name). Returns (rows, maps, how it matched or None)."""
    named = [r for r in rows if r.device_name == cls.name]
    named_maps = [m for m in maps if m.device_name == cls.name]
    if named or named_maps or cls.capability == "cpu":
        return named, named_maps, None
    alike: dict[str, int] = {}
    for r in rows:
        if same_hardware(device, _extra_of(r).get("device")):
            alike[r.device_name] = alike.get(r.device_name, 0) + 1
    for m in maps:
        if same_hardware(device, _extra_of(m).get("device")):
            alike.setdefault(m.device_name, 0)
    if not alike:
        return [], [], None
    name = min(alike, key=lambda n: (-alike[n], n))
    how = f"matched {name} by {hardware_text(cls.capability, device)}"
    return [r for r in rows if r.device_name == name], [m for m in maps if m.device_name == name], how


def _marks(extra: Mapping[str, Any]) -> tuple[str, ...]:
    marks = []
    if extra.get("confirmed") is True:
        marks.append("confirmed")
    elif extra.get("confirmed") is False:
        marks.append("unconfirmed")
    if "transferred_from" in extra:
        marks.append("transferred")
    return tuple(marks)


def _bucket_map_of(row: Any) -> BucketMap:
    """The map of a stored row, checked. Raises InvalidBucketMap naming the row."""
    try:
        body = json.loads(row.map_json)
        found = BucketMap.from_dict({
            "kernel": row.kernel, "device_name": row.device_name, "capability": row.capability,
            "family": row.family, "source_hash": row.source_hash, "triton_version": row.triton_version,
            "uppers": body["uppers"], "configs": body["configs"], "created": row.created,
            "extra": json.loads(row.extra_json)})
    except InvalidBucketMap as exc:
        raise InvalidBucketMap(f"bucket map row {row.id} is corrupt: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidBucketMap(f"bucket map row {row.id} is corrupt: {type(exc).__name__}") from None
    return found


def _choose(spec: KernelSpec, problem: Problem, device: DeviceInfo, cls: DeviceClass, rows: list[Any],
            maps: list[Any] = (), matched: str | None = None) -> Resolution:
    key = spec.shape_key(problem)
    want_hash, want_minor = current_source_hash(spec), current_triton_minor()
    corrupt: list[CorruptRow] = []
    sound = []
    for row in rows:
        try:
            _record_of(row)
            sound.append(row)
        except CorruptRow as exc:  # skipped and said; never fatal at run time
            corrupt.append(exc)
    rows = sound
    fresh = [r for r in rows if r.source_hash == want_hash and r.triton_minor == want_minor]
    notes: list[str] = []
    where = f"{cls}" + (f" ({matched})" if matched else "")

    def usable(row: Any) -> Config | None:
        config = Config(json.loads(row.config_json))
        reason = spec.reject_reason(config, problem, device)
        if reason:
            notes.append(f"stored config {config} for {row.problem_key} rejected: {reason}")
            return None
        return config

    def answer(config: Config, source: str, detail: str, row: Any) -> Resolution:
        marks = _marks(_extra_of(row))
        if "transferred" in marks:
            detail += f"; transferred from {_extra_of(row)['transferred_from']}, not measured on this device"
        return Resolution(config, source, detail, marks)

    exact = next((r for r in fresh if r.problem_key == key), None)
    if exact is not None:
        config = usable(exact)
        if config is not None:
            return answer(config, "database", f"tuned for {key} on {where}", exact)
    dim = bucketed_dim(spec)
    if dim is not None:
        want = problem[dim]
        for row in maps:
            if row.source_hash != want_hash or row.triton_minor != want_minor:
                continue
            try:
                found = _bucket_map_of(row)
            except InvalidBucketMap as exc:
                notes.append(f"{exc}; skipped")
                continue
            index = found.bucket_of(want)
            config = Config(found.configs[index])
            reason = spec.reject_reason(config, problem, device)
            if reason:
                notes.append(f"bucket config {config} rejected: {reason}")
                continue
            low, high = found.ranges()[index]
            span = f"{dim}={low}..{high}" + (" and above" if index == len(found.uppers) - 1 else "")
            return answer(config, "bucket", f"traffic bucket {span} (asked {dim}={want}) on {where}", row)
        for row in sorted((r for r in fresh if r.problem_key != key and r.m is not None),
                          key=lambda r: (log_distance(r.m, want), r.m)):
            config = usable(row)
            if config is not None:
                return answer(config, "nearest", f"tuned for {dim}={row.m} (asked {dim}={want}) on {where}", row)
    fresh_ids = {r.id for r in fresh}
    stale = [r for r in rows if r.id not in fresh_ids]
    if stale:
        why = sorted({"another kernel source hash" if r.source_hash != want_hash else f"Triton {r.triton_minor}"
                      for r in stale})
        notes.append(f"stale: {len(stale)} record(s) from {' and '.join(why)} not used "
                     "(re-tune, or `infertune db prune --stale`)")
    if not rows:
        notes.append(f"no tuned record for {spec.name} {problem_family(spec, problem)} on {cls}")
    if corrupt:
        notes.append(f"{len(corrupt)} corrupt record(s) skipped (first: {corrupt[0]}; "
                     "`infertune db prune --corrupt` removes them)")
    return Resolution(spec.heuristic(problem, device), "heuristic", "; ".join(notes))


def open_database(location: str | None = None, *, create: bool = True) -> Database:
    """Open the tuning database at `location` (a path or an SQLAlchemy URL such as
    postgresql://...; a plain postgresql:// URL uses psycopg 3, see `location.sqlalchemy_url`),
    default `default_db_path()`. Raises DatabaseError."""
    where = location or default_db_path()
    url = sqlalchemy_url(where)
    server = "://" in url and not url.startswith("sqlite")
    attempts = _OPEN_ATTEMPTS if server and create else 1
    for attempt in range(attempts):
        try:
            return Database(connect(where, create=create), where)
        except DatabaseMissing:
            raise
        except DatabaseError:
            # Two processes creating the schema of a fresh server database at once: the loser's
            # CREATE fails (duplicate table or type); the next try finds the schema made.
            if attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
    raise AssertionError("unreachable")


def check_destination(location: str | None = None) -> str:
    """Fail fast, before any work, when the tuning database at `location` (default
    `default_db_path()`) cannot be written: open it, creating the file and schema if it is
    new, and close it. Returns the location. Raises DatabaseError (one line) for everything
    `open_database` refuses: a malformed URL, an unknown dialect, a missing driver, a
    directory, a path under a file (/dev/null/x.db), an unwritable place, a file that is not
    SQLite, a foreign or corrupt database."""
    with open_database(location, create=True) as database:
        return database.location


class DatabaseSource:
    """A ConfigSource answering from a Database, memoized: after the first lookup of a
    (kernel, problem, device) the answer is a few dict lookups (well under 1 µs; measured in
    tests/test_database.py). The memo is a snapshot; call `clear()` after writing new records
    through another handle."""

    def __init__(self, database: Database) -> None:
        self.database = database
        # id(device) -> (device, {kernel: {problem: answer}}). Keyed by the device's id because
        # hashing a DeviceInfo costs ~170 ns; the tuple holds the device, so its id is not reused
        # while the memo lives. An equal device object with another id is merely a memo miss.
        self._memo: dict[int, tuple[DeviceInfo, dict[str, dict[Problem, Resolution]]]] = {}

    def resolve(self, spec: KernelSpec, problem: Problem, device: DeviceInfo) -> Resolution:
        try:
            return self._memo[id(device)][1][spec.name][problem]
        except KeyError:
            return self._remember(spec, problem, device)

    def _remember(self, spec: KernelSpec, problem: Problem, device: DeviceInfo) -> Resolution:
        answer = self.database.lookup(spec, problem, device)
        _, by_kernel = self._memo.setdefault(id(device), (device, {}))
        by_kernel.setdefault(spec.name, {})[problem] = answer
        return answer

    def clear(self) -> None:
        self._memo.clear()


def runtime_source(location: str | None = None) -> tuple[DatabaseSource | HeuristicSource, str | None]:
    """The config source the runtime should use, and a warning or None. A missing database
    gives the heuristic quietly; a corrupt or foreign one gives the heuristic and a warning
    (the runtime runs on, untuned) instead of failing."""
    try:
        return DatabaseSource(open_database(location, create=False)), None
    except DatabaseMissing:
        return HeuristicSource(), None
    except DatabaseError as exc:
        return HeuristicSource(), f"tuning database unusable, running on heuristic configs: {exc}"
