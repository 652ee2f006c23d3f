"""Gathering run directories for a report: run.json (validated by reports.runfile), the
telemetry samples CSV beside it, and which listed artifacts are really there."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .runfile import RunDirError, read_run


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

    def artifacts(self) -> list[tuple[str, Path, bool]]:
        """(name as listed, path, exists) per artifact, plus the telemetry samples file."""
        names = list(self.data.get("artifacts") or [])
        samples_file = (self.data.get("telemetry") or {}).get("samples_file")
        if samples_file and samples_file not in names:
            names.append(samples_file)
        out = []
        for name in names:
            p = Path(name)
            full = p if p.is_absolute() else self.path / p
            out.append((name, full, full.is_file()))
        return out


def _number(text: str) -> Any:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def read_samples(path: Path) -> list[dict[str, Any]]:
    """telemetry.csv -> rows; numeric cells as floats, `reasons` split on ';'."""
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as f:
        for raw in csv.DictReader(f):
            row = {k: _number(v) for k, v in raw.items() if k != "reasons"}
            reasons = raw.get("reasons") or ""
            row["reasons"] = [r for r in reasons.split(";") if r]
            rows.append(row)
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
        label = folder.resolve().name or str(folder)
        if label in seen:
            seen[label] += 1
            label = f"{label} ({seen[label]})"
        else:
            seen[label] = 1
        samples_file = (data.get("telemetry") or {}).get("samples_file")
        samples = []
        if samples_file and (folder / samples_file).resolve().is_relative_to(folder.resolve()):
            samples = read_samples(folder / samples_file)  # only a file inside the run directory
        runs.append(Run(folder, label, data, samples))
    return runs
