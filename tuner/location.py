"""Where the tuned config database lives when no --db is given, and how a database or study
storage URL is spelled for SQLAlchemy (and so for Optuna)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

DB_ENV = "INFERTUNE_DB"


def default_db_path(environ: Mapping[str, str] | None = None) -> str:
    """INFERTUNE_DB if set, else $XDG_DATA_HOME/infertune/tuning.db, else
    ~/.local/share/infertune/tuning.db. A flag (--db) beats all of these."""
    env = os.environ if environ is None else environ
    if env.get(DB_ENV):
        return env[DB_ENV]
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return str(Path(base) / "infertune" / "tuning.db")


_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
POSTGRES_DRIVER_SCHEME = "postgresql+psycopg://"


def sqlalchemy_url(location: str) -> str:
    """`location` as SQLAlchemy should see it: a plain `postgresql://` or `postgres://` URL
    gets the psycopg (3) driver, `postgresql+psycopg://...` (SQLAlchemy would pick psycopg2,
    which infertune does not install); anything else (a path, sqlite:///..., a URL naming
    its driver) is returned unchanged."""
    lowered = location[:len("postgresql://")].lower()
    for scheme in _POSTGRES_SCHEMES:
        if lowered.startswith(scheme):
            return POSTGRES_DRIVER_SCHEME + location[len(scheme):]
    return location


_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*):[^@/?#]*@")


def shown(location: str) -> str:
    """`location` as messages show it: quoted like a Python string (a newline in a path stays
    on one line), the password of a URL replaced by ***."""
    return repr(_PASSWORD.sub(r"\1:***@", location))
