"""Gathering run directories for a report: run.json (validated by reports.runfile), the
telemetry samples CSV beside it, and which listed artifacts are really there."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .runfile import RunDirError, quote, read_run


@dataclass
class Run:
    path: Path
    label: str  # the directory name, made unique within one report
    data: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)  # telemetry.csv rows, numbers parsed

    @property
    def kind(self) -> str:
        return self.data["kind"]

    @property
    def device(self) -> dict[str, Any]:
        return self.data["environment"]["device"]

    @property
    def interpreter(self) -> bool:
        """Timings came from Triton's CPU interpreter (or the CPU at all)."""
        dev = self.device
        if dev.get("interpreter"):
            return True
        rows = self.data.get("measurements") or []
        return any((r.get("timing") or {}).get("interpreter") for r in rows)

    def artifacts(self) -> list[Artifact]:
        """Each listed artifact, plus the telemetry samples file, with where it resolves."""
        names = list(self.data.get("artifacts") or [])
        samples_file = (self.data.get("telemetry") or {}).get("samples_file")
        if samples_file and samples_file not in names:
            names.append(samples_file)
        return [artifact(self.path, name) for name in names]


@dataclass(frozen=True)
class Artifact:
    """One file a run lists. `path` is set only when `name` is a relative path that resolves
    (symlinks followed) inside the run directory; only then may a report link to it."""

    name: str
    path: Path | None
    status: str  # INSIDE (a file there) / MISSING (inside, but no such file) / OUTSIDE (never linked)


INSIDE, MISSING, OUTSIDE = "inside", "missing", "outside"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def artifact(run_dir: Path, name: str) -> Artifact:
    """Where `name` (as a run lists it) lies: inside `run_dir`, missing there, or outside it.
    Outside is anything with a URL scheme (`javascript:`, `data:`, `http:`, a drive letter),
    an absolute path, a `..` or symlink escape, a name with a NUL or backslash, or one that
    cannot be resolved at all."""
    if not name or _SCHEME.match(name) or "\\" in name or "\x00" in name or name.startswith("/"):
        return Artifact(name, None, OUTSIDE)
    try:
        base = run_dir.resolve()
        full = (base / name).resolve()
        if full == base or not full.is_relative_to(base):
            return Artifact(name, None, OUTSIDE)
        return Artifact(name, full, INSIDE if full.is_file() else MISSING)
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a name too long, ...
        return Artifact(name, None, OUTSIDE)


def _number(text: str) -> Any:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def read_samples(path: Path) -> list[dict[str, Any]]:
    """telemetry.csv -> rows; numeric cells as floats, `reasons` split on ';'. Raises
    RunDirError for a file that is not readable CSV text."""
    if not path.is_file():
        return []
    rows = []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            for raw in csv.DictReader(f):
                row = {str(k): _number(v) for k, v in raw.items() if k != "reasons" and isinstance(v, str)}
                reasons = raw.get("reasons")
                row["reasons"] = [r for r in reasons.split(";") if r] if isinstance(reasons, str) else []
                rows.append(row)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RunDirError(f"{quote(path)} is not readable telemetry CSV: {exc}") from None
    return rows


def load_runs(paths: list[str | Path]) -> list[Run]:
    """Read every run directory (RunDirError, one line, for the first bad one)."""
    if not paths:
        raise RunDirError("no run directory given")
    runs: list[Run] = []
    seen: dict[str, int] = {}
    for raw in paths:
        p = Path(raw)
        data = read_run(p)
        folder = p if p.is_dir() else p.parent
        try:
            label = folder.resolve().name or str(folder)
        except (OSError, RuntimeError):
            label = folder.name or str(folder)
        if label in seen:
            seen[label] += 1
            label = f"{label} ({seen[label]})"
        else:
            seen[label] = 1
        samples_file = (data.get("telemetry") or {}).get("samples_file")
        samples = []
        if samples_file:
            found = artifact(folder, samples_file)
            if found.status == INSIDE:  # only a file inside the run directory
                samples = read_samples(found.path)
        runs.append(Run(folder, label, data, samples))
    return runs
