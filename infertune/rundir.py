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

from .errors import UsageError

RUNS_ENV = "INFERTUNE_RUNS"


def writable_dir(path: str | Path, what: str = "--out") -> Path:
    """Check, before any work, that `path` is a folder this process can write in, or one it can
    create: no file where a folder is needed, the nearest existing folder writable. Creates
    nothing. Returns the path; raises UsageError naming `what` (the flag or variable) with the
    path quoted (repr: a newline in it stays on one line)."""
    text = str(path)
    if not text.strip() or "\0" in text:
        raise UsageError(f"{what} {text!r} is not a usable path")
    # `..` resolved by text: mkdir -p would create a missing folder before a `..` steps out of it
    target = Path(os.path.normpath(os.path.abspath(os.path.expanduser(text))))
    existing = target
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link: mkdir would fail on it
            raise UsageError(f"{what} {text!r}: {str(existing)!r} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == target else f": {str(existing)!r}"
        raise UsageError(f"{what} {text!r}{where} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        if existing == target:
            raise UsageError(f"{what} {text!r} is not writable")
        raise UsageError(f"{what} {text!r} cannot be created: {str(existing)!r} is not writable")
    return Path(text).expanduser()


def writable_file(path: str | Path, what: str = "--out") -> Path:
    """Check, before any work, that a file can be written at `path` (its folder existing or
    creatable, and writable; not a folder itself). Creates nothing. Raises UsageError."""
    text = str(path)
    target = Path(text).expanduser()
    if not text.strip() or text.endswith(("/", os.sep)) or target.is_dir():
        raise UsageError(f"{what} {text!r} is a folder, not a file")
    if target.exists() and not os.access(target, os.W_OK):
        raise UsageError(f"{what} {text!r} is not writable")
    writable_dir(target.parent, what=f"{what} {text!r}: folder")
    return target


def make_dir(path: Path, what: str = "--out") -> Path:
    """mkdir -p after `writable_dir`; an OSError the check could not foresee (a full disk, a
    read-only mount, a race) becomes a UsageError with the path quoted. Returns `path`."""
    writable_dir(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{what} {str(path)!r} cannot be created: {exc.strerror or exc}") from None
    return path


def runs_root() -> tuple[Path, str]:
    """(the folder run directories go under, what names it): $INFERTUNE_RUNS, else runs/."""
    env = os.environ.get(RUNS_ENV)
    return (Path(env), RUNS_ENV) if env else (Path("runs"), "the default runs folder")


def run_dir_path(out: str | None, name: str, *, now: dt.datetime | None = None) -> tuple[Path, str]:
    """(where the run directory will go, what names it), checked writable (`writable_dir`),
    nothing created: `out` if given, else <runs>/<time>-<name>/ where <runs> is
    $INFERTUNE_RUNS or runs/ under the working directory. Two runs in the same second get -2, -3, ..."""
    if out is not None:
        return writable_dir(out, "--out"), "--out"
    root, what = runs_root()
    writable_dir(root, what)
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "-", name).strip("-") or "run"
    base = root / f"{stamp}-{safe}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path, what


def new_run_dir(out: str | None, name: str, *, now: dt.datetime | None = None) -> Path:
    """The run directory (`run_dir_path`), created. Raises UsageError when it cannot be."""
    path, what = run_dir_path(out, name, now=now)
    return make_dir(path, what)


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
