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


def _aligned(per_run: list[list[tuple[tuple, dict[str, Any]]]]) -> list[tuple[tuple, list[dict[str, Any] | None]]]:
    """(key, one row per run: its first row of that key, or None), for every key in first-seen
    order across the runs. Pure: what the kernel, model and serving matches share."""
    keys: dict[tuple, None] = {}
    index: list[dict[tuple, dict[str, Any]]] = []
    for pairs in per_run:
        table: dict[tuple, dict[str, Any]] = {}
        for key, row in pairs:
            table.setdefault(key, row)
            keys.setdefault(key)
        index.append(table)
    return [(key, [t.get(key) for t in index]) for key in keys]


def match_kernels(runs: list[dict[str, Any]]) -> list[Matched]:
    """Every (kind, kernel, problem, variant) seen in any run, in first-seen order."""
    out = []
    for key, rows in _aligned([[(kernel_key(run["kind"], row), row) for row in run.get("measurements") or []]
                               for run in runs]):
        ref = rows[0]
        changes = [timing_change(ref and ref["timing"], r and r["timing"]) for r in rows[1:]]
        out.append(Matched(key, rows, changes))
    return out


def match_models(runs: list[dict[str, Any]], metric: str = "decode_tokens_per_s") -> list[Matched]:
    """Every (model, variant, batch) seen in any run; changes in `metric` (tokens/s)."""
    out = []
    for key, rows in _aligned([[(model_key(row), row) for row in run.get("models") or []] for run in runs]):
        ref = rows[0]
        changes = [throughput_change(ref and ref.get(metric), r and r.get(metric)) for r in rows[1:]]
        out.append(Matched(key, rows, changes))
    return out


# --------------------------------------------------------------------------- serving runs
#
# A serving run (kind "profile-serve", run.json "serving") holds one row per load level: a
# request rate or a concurrency. Levels are matched across runs by (mode, value). Each level
# carries a single request throughput, p99 latencies and up to 2000 samples of TTFT, ITL and
# end-to-end latency. The rule:
#   - request throughput (one figure per level, no spread): flagged beyond SERVING_THRESHOLD
#     (10 %, the same bar as the models' tokens/s);
#   - p99 TTFT / ITL / e2e: flagged only when the 95 % distribution-free confidence intervals
#     of the two p99s (order statistics of each level's samples) do not overlap AND the p99
#     moved more than SERVING_THRESHOLD. A p99 from 50 requests is nearly the maximum, so a
#     tail moves by tens of percent between identical runs: the interval keeps that from
#     reading as a change. Without samples the threshold alone decides.

SERVING_THRESHOLD = 0.10
SERVING_CONFIDENCE = 0.95

SERVING_RULE = (f"serving levels are matched by rate or concurrency; request throughput is flagged beyond "
                f"{SERVING_THRESHOLD:.0%} of the reference; a p99 latency only when the {SERVING_CONFIDENCE:.0%} "
                f"confidence intervals of the two p99s (order statistics of each level's samples, clamped to "
                f"the samples' range) do not overlap and it moved more than {SERVING_THRESHOLD:.0%}; the "
                f"reference is the first serving run of the same endpoint kind")


def serving_level_key(mode: str, level: dict[str, Any]) -> tuple[str, float] | None:
    """("rate", 2.0) or ("concurrency", 4.0); None for a level that names neither."""
    value = level.get("rate") if mode == "rate" else level.get("concurrency")
    return None if value is None else (mode, float(value))


def _binom_cdfs(n: int, q: float) -> list[float]:
    """[P(Binomial(n, q) <= k) for k in 0..n], each term computed in log space (n up to a few thousand)."""
    import math

    total, out = 0.0, []
    for k in range(n + 1):
        total += math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                          + k * math.log(q) + (n - k) * math.log1p(-q))
        out.append(min(total, 1.0))
    return out


def quantile_interval(samples: list[float], q: float = 0.99,
                      confidence: float = SERVING_CONFIDENCE) -> tuple[float, float] | None:
    """A distribution-free `confidence` interval for the q-quantile (0 < q < 1) of the
    population behind `samples`: [x_(l), x_(u)] with ranks from Binomial(n, q) (the count of
    samples below the quantile). Where n is too small for a bound on a side (a p99 from fewer
    than ~300 samples has no upper rank), that side is the samples' extreme. None for no samples."""
    xs = sorted(float(x) for x in samples)
    n = len(xs)
    if n == 0:
        return None
    tail = (1.0 - confidence) / 2
    cdf = _binom_cdfs(n, q)  # cdf[k] = P(B <= k)
    # 1-based ranks: l the largest with P(B <= l - 1) <= tail; u the smallest with P(B <= u - 1) >= 1 - tail
    lo = max((rank for rank in range(1, n + 1) if cdf[rank - 1] <= tail), default=1)
    hi = min((rank for rank in range(lo, n + 1) if cdf[rank - 1] >= 1.0 - tail), default=n)
    return xs[lo - 1], xs[hi - 1]


def latency_change(ref: float | None, new: float | None, ref_samples: list[float] | None = None,
                   new_samples: list[float] | None = None, q: float = 0.99,
                   threshold: float = SERVING_THRESHOLD) -> Change:
    """A serving latency quantile `new` against `ref` (lower is better): flagged when it moved
    beyond `threshold` and, where both levels have samples, their q-quantile intervals are disjoint."""
    if not ref or new is None:
        return Change(MISSING, None)
    ratio = new / ref
    if abs(ratio - 1.0) <= threshold:
        return Change(NOISE, ratio)
    a = quantile_interval(ref_samples or [], q)
    b = quantile_interval(new_samples or [], q)
    if a is not None and b is not None and b[0] <= a[1] and a[0] <= b[1]:
        return Change(NOISE, ratio)
    return Change(REGRESSION if ratio > 1.0 else IMPROVEMENT, ratio)


@dataclass
class ServingMatch:
    key: tuple[str, float]  # (mode, rate or concurrency)
    rows: list[dict[str, Any] | None]  # the level of each run, None where the run lacks it
    changes: dict[str, list[Change]]  # metric -> one Change per run after the first


SERVING_METRICS = ("request_throughput", "ttft_ms", "itl_ms", "e2e_ms")


def _p99(level: dict[str, Any] | None, metric: str) -> float | None:
    stats = (level or {}).get(metric)
    return stats.get("p99") if isinstance(stats, dict) else None


def _samples(level: dict[str, Any] | None, metric: str) -> list[float]:
    return list(((level or {}).get("samples") or {}).get(metric) or [])


def serving_metric_change(metric: str, ref: dict[str, Any] | None, new: dict[str, Any] | None) -> Change:
    """`metric` (one of SERVING_METRICS; latencies at p99) of level `new` against level `ref`."""
    if metric == "request_throughput":
        return throughput_change((ref or {}).get(metric), (new or {}).get(metric), SERVING_THRESHOLD) \
            if ref and new else Change(MISSING, None)
    return latency_change(_p99(ref, metric), _p99(new, metric), _samples(ref, metric), _samples(new, metric))


def match_serving(servings: list[dict[str, Any]]) -> list[ServingMatch]:
    """Every load level seen in any of `servings` (run.json "serving" dicts), in first-seen
    order, with each run's level and the changes of SERVING_METRICS against the first run."""
    per_run = [[(key, level) for level in serving.get("levels") or []
                if (key := serving_level_key(serving.get("mode", "rate"), level)) is not None]
               for serving in servings]
    out = []
    for key, rows in _aligned(per_run):
        changes = {m: [serving_metric_change(m, rows[0], r) for r in rows[1:]] for m in SERVING_METRICS}
        out.append(ServingMatch(key, rows, changes))
    return out
