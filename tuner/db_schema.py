"""The tuned config database's schema and how a location is opened and checked.

Schema version 1 (docs/ARCHITECTURE.md, "Tuned config database"):
- `infertune_meta(key PK, value)`: rows `app_id = "infertune-tuning-db"` and `schema_version`;
- `tuning_records`: one row per (kernel, device_name, capability, dtype, quant, problem_key,
  triton_minor, source_hash), the fields of `tuner.record.TuningRecord` plus the derived
  `triton_minor`, `family` and `m` columns that lookups filter on;
- `bucket_maps` (added with traffic-aware buckets, created on the first writable open of an
  older file, which older readers ignore): one row per (kernel, device_name, capability,
  family, triton_minor, source_hash), the fields of `tuner.bucket_map.BucketMap`.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from .location import shown, sqlalchemy_url

APP_ID = "infertune-tuning-db"
SCHEMA_VERSION = 1
SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 60_000

KEY_COLUMNS = ("kernel", "device_name", "capability", "dtype", "quant", "problem_key", "triton_minor",
               "source_hash")

metadata = MetaData()

meta_table = Table(
    "infertune_meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)

records_table = Table(
    "tuning_records", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kernel", String(64), nullable=False),
    Column("source_hash", String(64), nullable=False),
    Column("device_name", String(128), nullable=False),
    Column("capability", String(16), nullable=False),
    Column("triton_version", String(64), nullable=False),
    Column("triton_minor", String(16), nullable=False),
    Column("torch_version", String(64), nullable=False),
    Column("dtype", String(16), nullable=False),
    Column("quant", String(32), nullable=False),
    Column("problem_key", String(512), nullable=False),
    Column("bucket", String(512), nullable=False),
    Column("family", String(512), nullable=False),   # problem key without the token dim
    Column("m", Integer, nullable=True),               # the token dim's value (None: kernel has none)
    Column("shape_json", Text, nullable=False),
    Column("config_json", Text, nullable=False),
    Column("median_ms", Float, nullable=False),
    Column("p10_ms", Float, nullable=False),
    Column("p90_ms", Float, nullable=False),
    Column("default_ms", Float, nullable=True),
    Column("baseline_ms", Float, nullable=True),
    Column("trials", Integer, nullable=False),
    Column("interpreter", Boolean, nullable=False),
    Column("created", String(40), nullable=False),
    Column("extra_json", Text, nullable=False),
    UniqueConstraint(*KEY_COLUMNS, name="uq_tuning_record_key"),
    Index("ix_tuning_records_family", "kernel", "device_name", "capability", "family"),
)


BUCKET_KEY_COLUMNS = ("kernel", "device_name", "capability", "family", "triton_minor", "source_hash")

bucket_maps_table = Table(
    "bucket_maps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kernel", String(64), nullable=False),
    Column("device_name", String(128), nullable=False),
    Column("capability", String(16), nullable=False),
    Column("family", String(512), nullable=False),
    Column("source_hash", String(64), nullable=False),
    Column("triton_version", String(64), nullable=False),
    Column("triton_minor", String(16), nullable=False),
    Column("map_json", Text, nullable=False),      # {"uppers": [...], "configs": [...]}
    Column("created", String(40), nullable=False),
    Column("extra_json", Text, nullable=False),
    UniqueConstraint(*BUCKET_KEY_COLUMNS, name="uq_bucket_map_key"),
)


class DatabaseError(Exception):
    """The tuning database cannot be used: missing, corrupt, foreign or of a newer schema.
    The message is one line and names the location."""


class DatabaseMissing(DatabaseError):
    """There is no database at the location (and it was opened with create=False)."""


def _set_wal(engine: Engine, location: str, attempts: int = 100) -> None:
    """PRAGMA journal_mode=WAL, retried: changing the journal mode needs the file to itself,
    and SQLite answers "database is locked" at once (its busy timeout does not apply) while
    another process is reading the schema; seen when two tuners created one file together."""
    import random
    import time

    for attempt in range(attempts):
        raw = engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise DatabaseError(f"cannot open {shown(location)} ({_first_line(exc)})") from None
        finally:
            raw.close()
        time.sleep(random.uniform(0.01, 0.1))


def _is_url(location: str) -> bool:
    return "://" in location


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised through every test
        # We issue BEGIN ourselves (pysqlite's implicit transactions defer the write lock,
        # which turns two concurrent writers into a deadlock instead of a wait).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        immediate = conn.get_execution_options().get("immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _check_sqlite_file(path: Path, create: bool, location: str) -> bool:
    """Refuse a path that cannot hold a tuning database before SQLite sees it; with `create`,
    make the file (empty: SQLite writes its header) so an unwritable place fails here, in one
    line. Returns True if this call created the file (the caller removes it on failure)."""
    where = shown(location)
    if path.is_dir():
        raise DatabaseError(f"{where} is a directory, not a tuning database file; "
                            f"give a file such as {str(path / 'tuning.db')!r}")
    if not path.exists():
        if not create:
            raise DatabaseMissing(f"no tuning database at {where}")
        blocker = next((p for p in path.parents if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise DatabaseError(f"cannot create the tuning database {where}: {str(blocker)!r} is not a directory")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return False  # another process made it first: checked like any existing file below
        except OSError as exc:
            raise DatabaseError(f"cannot create the tuning database {where}: {exc.strerror}") from None
        return True
    if not path.is_file():
        raise DatabaseError(f"{where} is not a regular file, not a tuning database")
    try:
        with path.open("r+b" if create else "rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise DatabaseError(f"cannot {'write' if create else 'read'} the tuning database {where}: "
                            f"{exc.strerror}") from None
    if header and header != SQLITE_HEADER:
        raise DatabaseError(f"{where} is corrupt or not a database (no SQLite header); "
                            "move it away or pass another --db")
    return False


# Drivers SQLAlchemy would pick for a URL without "+driver", and how to get each.
_DRIVER_HINTS = {"MySQLdb": "pip install mysqlclient, or name a driver: mysql+pymysql://",
                 "pymysql": "pip install pymysql", "psycopg": "pip install 'psycopg[binary]'",
                 "psycopg2": "pip install psycopg2-binary, or use postgresql:// (psycopg 3)",
                 "cx_Oracle": "pip install cx_Oracle", "pyodbc": "pip install pyodbc"}


def check_url(location: str) -> URL:
    """Parse `location` (an SQLAlchemy URL, or a plain postgresql:// URL: see
    `location.sqlalchemy_url`) and check that SQLAlchemy knows its dialect and that the
    dialect's driver is installed, without connecting. Returns the URL.

    Raises DatabaseError (one line) for a malformed URL, an unknown dialect, a missing
    driver, or an asyncio driver (infertune talks to databases synchronously)."""
    where = shown(location)
    try:
        url = make_url(sqlalchemy_url(location))
        dialect = url.get_dialect()
    except sa_exc.NoSuchModuleError:
        scheme = location.partition("://")[0]
        raise DatabaseError(f"{where}: unknown database kind {scheme!r}; give a file path, sqlite:///PATH "
                            "or postgresql://USER@HOST/NAME") from None
    except (sa_exc.ArgumentError, ValueError) as exc:
        raise DatabaseError(f"{where} is not a database URL ({str(exc).splitlines()[0]})") from None
    if getattr(dialect, "is_async", False):
        raise DatabaseError(f"{where}: the asyncio driver {url.get_driver_name()!r} cannot be used; "
                            "name a synchronous one (e.g. postgresql+psycopg://)")
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module = getattr(exc, "name", None) or url.get_driver_name()
        hint = _DRIVER_HINTS.get(module, f"install the Python module {module!r}")
        raise DatabaseError(f"{where}: the database driver {module!r} is not installed ({hint})") from None
    return url


def connect(location: str, *, create: bool = True) -> Engine:
    """Open `location` (a file path or an SQLAlchemy URL), check that it is an infertune
    tuning database of a schema this code reads, and create the schema in a new one.

    Raises DatabaseError (one line) for a missing (create=False), corrupt or foreign
    location, a newer schema, a malformed URL, an unknown dialect or a missing driver, and
    a file that cannot be created or (with create) written.
    """
    if _is_url(location):
        url = check_url(location)  # messages keep the location as the user gave it
        in_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
        path = Path(url.database) if in_file else None
    else:
        path = Path(location).expanduser()
        url = make_url("sqlite://").set(database=str(path))
    made = _check_sqlite_file(path, create, location) if path is not None else False
    try:
        engine = create_engine(url)
    except (sa_exc.SQLAlchemyError, ImportError, ValueError, TypeError) as exc:
        _remove_made(path, made)
        raise DatabaseError(f"cannot open {shown(location)}: {_first_line(exc)}") from None
    if url.get_backend_name() == "sqlite":
        _sqlite_events(engine)
    try:
        _check_or_create(engine, location, create)
        if path is not None:
            # WAL: readers never block the writer; set only once the file is known to be ours.
            _set_wal(engine, location)
    except sa_exc.OperationalError as exc:
        # Cannot connect or open (a server down, a bad password, a read-only file): not corrupt.
        engine.dispose()
        _remove_made(path, made)
        raise DatabaseError(f"cannot open {shown(location)} ({_first_line(exc)})") from None
    except sa_exc.SQLAlchemyError as exc:
        engine.dispose()
        _remove_made(path, made)
        raise DatabaseError(f"{shown(location)} is corrupt or not a usable database ({_first_line(exc)})") from None
    except DatabaseError:
        engine.dispose()
        _remove_made(path, made)
        raise
    return engine


def _first_line(exc: BaseException) -> str:
    inner = getattr(exc, "orig", None)
    text = str(inner if inner is not None else exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]


def _remove_made(path: Path | None, made: bool) -> None:
    """Remove the file `_check_sqlite_file` created when opening it failed after all."""
    if path is not None and made:
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            try:
                leftover.unlink()
            except OSError:
                pass


# The tables Optuna's RDB storage creates (optuna/storages/_rdb/models.py, schema v3/v4).
OPTUNA_TABLES = frozenset({
    "alembic_version", "version_info", "studies", "study_directions", "study_user_attributes",
    "study_system_attributes", "trials", "trial_params", "trial_values", "trial_intermediate_values",
    "trial_user_attributes", "trial_system_attributes", "trial_heartbeats",
})


def _check_or_create(engine: Engine, location: str, create: bool) -> None:
    where = shown(location)
    with engine.connect().execution_options(immediate=True) as conn, conn.begin():
        tables = set(inspect(conn).get_table_names())
        if meta_table.name not in tables:
            # Optuna's study tables may share a server database with ours (`--db
            # postgresql://...` keeps the studies there by default): not foreign.
            foreign = tables - OPTUNA_TABLES
            if foreign:
                names = ", ".join(sorted(foreign)[:4])
                raise DatabaseError(f"{where} is not an infertune tuning database "
                                    f"(it holds another application's tables: {names})")
            if not create:
                raise DatabaseError(f"{where} is an empty database, not an infertune tuning database")
            metadata.create_all(conn)
            conn.execute(meta_table.insert(), [{"key": "app_id", "value": APP_ID},
                                               {"key": "schema_version", "value": str(SCHEMA_VERSION)}])
            return
        have = {c["name"] for c in inspect(conn).get_columns(meta_table.name)}
        if not {"key", "value"} <= have:
            raise DatabaseError(f"{where} is corrupt or foreign: table {meta_table.name} has columns "
                                f"{', '.join(sorted(have)[:4]) or 'none'}, not key and value")
        meta = dict(conn.execute(select(meta_table.c.key, meta_table.c.value)).all())
        if meta.get("app_id") != APP_ID:
            raise DatabaseError(f"{where} is not an infertune tuning database "
                                f"(app_id {meta.get('app_id')!r})")
        try:
            version = int(meta.get("schema_version", ""))
        except (TypeError, ValueError):
            raise DatabaseError(f"{where} is corrupt (schema_version {meta.get('schema_version')!r})") from None
        if version > SCHEMA_VERSION:
            raise DatabaseError(f"{where} has tuning-database schema {version}, newer than this infertune "
                                f"reads ({SCHEMA_VERSION}); upgrade infertune")
        if records_table.name not in tables:
            raise DatabaseError(f"{where} is corrupt (table {records_table.name} is missing)")
        if bucket_maps_table.name not in tables and create:
            bucket_maps_table.create(conn)  # a file from before bucket maps: the table is additive
        have = {c["name"] for c in inspect(conn).get_columns(records_table.name)}
        lacking = [c.name for c in records_table.columns if c.name not in have]
        if lacking:
            raise DatabaseError(f"{where} is corrupt: table {records_table.name} lacks column(s) "
                                f"{', '.join(lacking[:4])}{' ...' if len(lacking) > 4 else ''}")


def check_storage(storage: str) -> None:
    """Fail fast when the Optuna study storage `storage` (an SQLAlchemy URL: sqlite:///PATH,
    postgresql://...) cannot be used: check the URL, its dialect and driver, the SQLite
    file's place, then let Optuna open it (creating its tables). Raises DatabaseError (one
    line); a SQLite file this call created is removed again when it fails."""
    import optuna

    if "://" not in storage:
        raise DatabaseError(f"study storage {shown(storage)} is not a URL; give sqlite:///PATH or "
                            "postgresql://USER@HOST/NAME")
    url = check_url(storage)
    path = None
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database)
    made = _check_sqlite_file(path, True, storage) if path is not None else False
    try:
        optuna.storages.RDBStorage(url.render_as_string(hide_password=False))
    except (sa_exc.SQLAlchemyError, optuna.exceptions.OptunaError, ValueError, OSError) as exc:
        _remove_made(path, made)
        raise DatabaseError(f"cannot use the study storage {shown(storage)}: {_first_line(exc)}") from None
