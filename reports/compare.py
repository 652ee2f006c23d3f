"""Comparing runs: rows matched across runs, changes flagged only beyond the measured noise.
Pure functions on run.json dicts.

The rule for kernel rows (each has a median and a p10..p90 interval):
    a change is flagged only when the two [p10, p90] intervals do not overlap AND the
    median moved by more than MIN_CHANGE (3 %); slower is a regression, faster an improvement;
    anything else is "within noise".
Model rows carry no interval (one prefill and one decode figure per row), so a change in
tokens/s is flagged only beyond MODEL_THRESHOLD (10 %) of the reference run's figure.
The reference is the first run given that holds such rows; every other one is compared with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MIN_CHANGE = 0.03
MODEL_THRESHOLD = 0.10

REGRESSION = "regression"
IMPROVEMENT = "improvement"
NOISE = "within noise"
MISSING = "missing"

RULE = (f"kernels: flagged only when the [p10, p90] intervals do not overlap and the median moved more than "
        f"{MIN_CHANGE:.0%}; models (no interval per row): flagged only when tokens/s moved more than "
        f"{MODEL_THRESHOLD:.0%}; the reference is the first run")


def kernel_key(kind: str, row: dict[str, Any]) -> tuple[str, str, str, str]:
    return (kind, row["kernel"], row["problem"], row["variant"])


def model_key(row: dict[str, Any]) -> tuple[str, str, int]:
    return (row["model"], row["variant"], int(row["batch"]))


@dataclass(frozen=True)
class Change:
    status: str  # REGRESSION / IMPROVEMENT / NOISE / MISSING
    ratio: float | None  # new / reference (latency) or new / reference (tokens/s)

    @property
    def pct(self) -> float | None:
        return None if self.ratio is None else 100.0 * (self.ratio - 1.0)


def timing_change(ref: dict[str, Any] | None, new: dict[str, Any] | None, min_change: float = MIN_CHANGE) -> Change:
    """Latency `new` against `ref` (timing dicts: median_ms, p10_ms, p90_ms)."""
    if not ref or not new or not ref.get("median_ms"):
        return Change(MISSING, None)
    ratio = new["median_ms"] / ref["median_ms"]
    overlap = new["p10_ms"] <= ref["p90_ms"] and ref["p10_ms"] <= new["p90_ms"]
    if overlap or abs(ratio - 1.0) <= min_change:
        return Change(NOISE, ratio)
    return Change(REGRESSION if ratio > 1.0 else IMPROVEMENT, ratio)


def throughput_change(ref: float | None, new: float | None, threshold: float = MODEL_THRESHOLD) -> Change:
    """Tokens/s `new` against `ref` (higher is better), flagged beyond `threshold`."""
    if not ref or new is None:
        return Change(MISSING, None)
    ratio = new / ref
    if abs(ratio - 1.0) <= threshold:
        return Change(NOISE, ratio)
    return Change(IMPROVEMENT if ratio > 1.0 else REGRESSION, ratio)


@dataclass
class Matched:
    key: tuple
    rows: list[dict[str, Any] | None]  # one per run, None where the run lacks it
    changes: list[Change]  # one per run after the first


def match_kernels(runs: list[dict[str, Any]]) -> list[Matched]:
    """Every (kind, kernel, problem, variant) seen in any run, in first-seen order."""
    keys: list[tuple] = []
    index: list[dict[tuple, dict[str, Any]]] = []
    for run in runs:
        table = {}
        for row in run.get("measurements") or []:
            key = kernel_key(run["kind"], row)
            table.setdefault(key, row)
            if key not in keys:
                keys.append(key)
        index.append(table)
    out = []
    for key in keys:
        rows = [t.get(key) for t in index]
        ref = rows[0]
        changes = [timing_change(ref and ref["timing"], r and r["timing"]) for r in rows[1:]]
        out.append(Matched(key, rows, changes))
    return out


def match_models(runs: list[dict[str, Any]], metric: str = "decode_tokens_per_s") -> list[Matched]:
    """Every (model, variant, batch) seen in any run; changes in `metric` (tokens/s)."""
    keys: list[tuple] = []
    index: list[dict[tuple, dict[str, Any]]] = []
    for run in runs:
        table = {}
        for row in run.get("models") or []:
            key = model_key(row)
            table.setdefault(key, row)
            if key not in keys:
                keys.append(key)
        index.append(table)
    out = []
    for key in keys:
        rows = [t.get(key) for t in index]
        ref = rows[0]
        changes = [throughput_change(ref and ref.get(metric), r and r.get(metric)) for r in rows[1:]]
        out.append(Matched(key, rows, changes))
    return out
