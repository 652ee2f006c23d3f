"""Reading run directories: run.json (schema infertune-run/1, reports/run_schema.json) and
the artifacts beside it. The writer is infertune/rundir.py; both validate against the same
schema file, so what one writes the other reads."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA = "infertune-run/1"


class RunDirError(ValueError):
    """A run directory that cannot be read: missing, corrupt or of another schema (one line)."""


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(resources.files("reports").joinpath("run_schema.json").read_text())


def validate(data: dict[str, Any]) -> None:
    """Raise RunDirError (one line: the first violation and where) unless `data` follows the schema."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(top)"
        raise RunDirError(f"run.json does not follow {SCHEMA}: at {where}: {first.message}"[:400])


def read_run(path: str | Path) -> dict[str, Any]:
    """run.json of a run directory (or the file itself), validated. Raises RunDirError."""
    p = Path(path)
    file = p / "run.json" if p.is_dir() else p
    if not file.is_file():
        raise RunDirError(f"{path} is not a run directory (no run.json)")
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{file} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else None
        raise RunDirError(f"{file} is not an infertune run (schema {found!r}, expected {SCHEMA!r})")
    validate(data)
    return data
