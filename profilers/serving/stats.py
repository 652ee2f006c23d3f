"""Serving figures from timed requests: pure functions over client.Result lists.

Per completed request (times in ms):
    TTFT  = first token chunk - send
    ITL   = the gaps between successive token chunks (a request with k chunks has k-1)
    TPOT  = (e2e - TTFT) / (completion_tokens - 1)   (requests with >= 2 tokens; the mean
            time per token after the first, which counts tokens a multi-token chunk carries)
    e2e   = last byte - send
Distributions pool the completed requests (ITL pools every gap of every request, as vLLM's
benchmark does); failed requests are counted by kind, not timed.

A request meets the SLOs when each given bound holds: TTFT, TPOT and e2e against the
request's own value, ITL against its largest gap (every token arrived within the bound of the
one before). goodput = requests meeting them / duration; slo_attainment = that count / requests
sent (a failed request meets nothing). duration = first send to the last request's end."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .client import Result

SLO_KEYS = ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms")
SAMPLE_CAP = 2000


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics
    (numpy's default, method="linear"). `values` non-empty."""
    if not values:
        raise ValueError("percentile of no values")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict[str, float] | None:
    """{"p50", "p90", "p99", "mean"} of `values`; None when there are none."""
    if not values:
        return None
    return {"p50": percentile(values, 50), "p90": percentile(values, 90), "p99": percentile(values, 99),
            "mean": math.fsum(values) / len(values)}


def ttft_ms(r: Result) -> float | None:
    return (r.first - r.sent) * 1e3 if r.first is not None and r.sent is not None else None


def itl_ms(r: Result) -> list[float]:
    t = r.token_times
    return [(b - a) * 1e3 for a, b in itertools.pairwise(t)]


def tpot_ms(r: Result) -> float | None:
    n = r.completion_tokens
    if r.first is None or r.end is None or n is None or n < 2:
        return None
    return (r.end - r.first) * 1e3 / (n - 1)


def e2e_ms(r: Result) -> float | None:
    return (r.end - r.sent) * 1e3 if r.end is not None and r.sent is not None else None


def meets(r: Result, slo: dict[str, float]) -> bool:
    """Whether completed request `r` meets every bound in `slo` (keys SLO_KEYS, ms)."""
    if not r.ok:
        return False
    checks = {"ttft_ms": lambda: ttft_ms(r), "tpot_ms": lambda: tpot_ms(r), "e2e_ms": lambda: e2e_ms(r),
              "itl_ms": lambda: max(itl_ms(r), default=None)}
    for key, bound in slo.items():
        value = checks[key]()
        if value is not None and value > bound:
            return False
        if value is None and key == "ttft_ms":  # no token at all: no first token in time
            return False
    return True


def subsample(values: list[float], cap: int, seed: int) -> list[float]:
    """`values` when at most `cap`, else `cap` of them chosen with `seed`, in their order."""
    if len(values) <= cap:
        return list(values)
    keep = sorted(random.Random(seed).sample(range(len(values)), cap))
    return [values[i] for i in keep]


def level_figures(results: Sequence[Result], *, duration_s: float, slo: dict[str, float], seed: int,
                  cap: int = SAMPLE_CAP) -> dict[str, Any]:
    """One level's figures, as run.json's serving.levels[] holds them (without rate /
    concurrency). `duration_s` > 0: the level's wall time."""
    done = [r for r in results if r.ok]
    ttft = [v for v in map(ttft_ms, done) if v is not None]
    itl = [g for r in done for g in itl_ms(r)]
    tpot = [v for v in map(tpot_ms, done) if v is not None]
    e2e = [v for v in map(e2e_ms, done) if v is not None]
    duration = max(duration_s, 1e-9)
    met = sum(meets(r, slo) for r in results) if slo else None
    errors = Counter(r.error or "incomplete" for r in results if not r.ok)
    return {
        "requests": len(results), "completed": len(done), "duration_s": duration_s,
        "errors": dict(sorted(errors.items())),
        "request_throughput": len(done) / duration,
        "input_token_throughput": sum(r.prompt_tokens or 0 for r in done) / duration,
        "output_token_throughput": sum(r.completion_tokens or 0 for r in done) / duration,
        "goodput": None if met is None else met / duration,
        "slo_attainment": None if met is None else (met / len(results) if results else 0.0),
        "ttft_ms": summary(ttft), "itl_ms": summary(itl), "tpot_ms": summary(tpot), "e2e_ms": summary(e2e),
        "samples": {"ttft_ms": subsample(ttft, cap, seed), "itl_ms": subsample(itl, cap, seed + 1),
                    "e2e_ms": subsample(e2e, cap, seed + 2)},
    }


def saturation(levels: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The level with the highest request throughput (the server's capacity as measured):
    {"request_throughput", "output_token_throughput", "level": its index}; None without levels."""
    if not levels:
        return None
    best = max(range(len(levels)), key=lambda i: levels[i]["request_throughput"])
    return {"request_throughput": levels[best]["request_throughput"],
            "output_token_throughput": levels[best]["output_token_throughput"], "level": best}
