"""Where the tuned config database lives when no --db is given."""

from __future__ import annotations

import os
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
