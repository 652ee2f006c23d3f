"""The run directory: what `infertune profile` and `infertune autotune` leave behind and
`infertune report` reads.

    runs/<YYYYmmdd-HHMMSS>-<name>/
        run.json              schema infertune-run/1 (reports/run_schema.json)
        telemetry.csv         NVML samples, when --telemetry ran and NVML was there
        trace.json            torch.profiler chrome trace (--torch-trace), for Perfetto
        nsys/ ncu/            raw Nsight reports and their CSVs (--nsys, --ncu)

run.json is written atomically (temp file, then rename) so a reader never sees half of it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from reports.runfile import SCHEMA, RunDirError, read_run, schema, validate  # noqa: F401  (re-exported)

RUNS_ENV = "INFERTUNE_RUNS"


def new_run_dir(out: str | None, name: str, *, now: dt.datetime | None = None) -> Path:
    """`out` if given (created), else <runs>/<time>-<name>/ where <runs> is $INFERTUNE_RUNS or
    runs/ under the working directory. Two runs in the same second get -2, -3, ..."""
    if out:
        path = Path(out)
    else:
        stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
        safe = re.sub(r"[^A-Za-z0-9_.+-]+", "-", name).strip("-") or "run"
        base = Path(os.environ.get(RUNS_ENV) or "runs") / f"{stamp}-{safe}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def skeleton(kind: str, name: str, command: list[str], environment: dict[str, Any]) -> dict[str, Any]:
    """A run.json with every required field present and empty."""
    return {"schema": SCHEMA, "kind": kind, "name": name,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "command": command,
            "environment": environment, "peaks": None, "baseline": None, "variants": [], "measurements": [],
            "models": [], "tuning": None, "telemetry": {"available": False, "reason": "not requested"},
            "profilers": {}, "artifacts": [], "notes": []}


def write_run(path: Path, data: dict[str, Any]) -> Path:
    """Validate and write `path`/run.json atomically; returns its path."""
    validate(data)
    target = path / "run.json"
    fd, tmp = tempfile.mkstemp(dir=path, prefix=".run.", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, default=_plain)
        f.write("\n")
    os.replace(tmp, target)
    return target


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
