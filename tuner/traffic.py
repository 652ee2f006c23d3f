"""Traffic-aware M buckets (issue 14, part 1): the bucket boundaries and one config per bucket
that minimise the expected latency of a forward pass under a histogram of token counts.

Power-of-two buckets (vLLM, SGLang, gemlite) spend one tuned config on each octave of M
whatever the traffic; a retrieval service that sees mostly M in {1, 3, 8, 32} wants its
buckets where its requests are. Given the measured (or replayed) latency of each candidate
config at each M of the histogram, `choose_buckets` partitions the sorted Ms into at most N
contiguous buckets and gives each the config with the least count-weighted latency over its
Ms: an exact dynamic program, O(N * len(Ms)^2 * configs), pure and deterministic (ties go to
the earlier config and the fewer, wider buckets).

A bucket is written by its upper bound: bucket k holds the Ms in (upper[k-1], upper[k]]; an
M above the last bound belongs to the last bucket. Not wired into the CLI or the runtime yet.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class BucketPlan:
    uppers: tuple[int, ...]  # the largest M of each bucket, increasing
    configs: tuple[Hashable, ...]  # the config chosen for each bucket
    expected: float  # count-weighted mean latency per forward pass under the histogram

    def bucket_of(self, m: int) -> int:
        """The index of the bucket that serves M (above the last bound: the last bucket)."""
        for i, upper in enumerate(self.uppers):
            if m <= upper:
                return i
        return len(self.uppers) - 1


def expected_latency(histogram: Mapping[int, float], latency: Mapping[int, Mapping[Hashable, float]],
                     plan: BucketPlan) -> float:
    """The count-weighted mean latency of `plan` under `histogram` (inf where a bucket's config
    has no latency at one of its Ms)."""
    total = sum(histogram.values())
    cost = sum(count * latency[m].get(plan.configs[plan.bucket_of(m)], math.inf)
               for m, count in histogram.items() if count > 0)  # 0 x inf would be nan
    return cost / total


def choose_buckets(histogram: Mapping[int, float], latency: Mapping[int, Mapping[Hashable, float]],
                   buckets: int) -> BucketPlan:
    """At most `buckets` buckets over the histogram's Ms and one config each, minimising the
    expected latency. `latency[m][config]` in any unit (a config missing at an M counts as
    infinitely slow there). Raises ValueError for an empty histogram, a negative count, fewer
    than one bucket, or an M without a finite latency for any config."""
    if buckets < 1:
        raise ValueError(f"need at least one bucket, got {buckets}")
    ms = sorted(m for m, count in histogram.items() if count > 0)
    if not ms or any(count < 0 for count in histogram.values()):
        raise ValueError("the histogram needs a positive count at some M and no negative count")
    configs: list[Hashable] = []
    for m in ms:
        if m not in latency or not any(math.isfinite(t) for t in latency[m].values()):
            raise ValueError(f"no finite latency measured at M={m}")
        configs += [c for c in latency[m] if c not in configs]
    n = len(ms)
    # prefix[c][j]: count-weighted latency of config c over ms[:j], its finite part; missing[c][j]:
    # how many of those Ms it has no finite latency at (an inf in the sums would make inf - inf)
    prefix = {c: [0.0] * (n + 1) for c in configs}
    missing = {c: [0] * (n + 1) for c in configs}
    for c in configs:
        for j, m in enumerate(ms):
            t = latency[m].get(c, math.inf)
            finite = math.isfinite(t)
            prefix[c][j + 1] = prefix[c][j] + (histogram[m] * t if finite else 0.0)
            missing[c][j + 1] = missing[c][j] + (not finite)

    def span(i: int, j: int) -> tuple[float, Hashable]:  # one bucket over ms[i:j]: (cost, config)
        costs = ((math.inf if missing[c][j] > missing[c][i] else prefix[c][j] - prefix[c][i], k, c)
                 for k, c in enumerate(configs))
        cost, _, config = min(costs, key=lambda t: t[:2])
        return cost, config

    # best[b][j]: least cost of ms[:j] in exactly b non-empty buckets, and where the last starts
    best = [[(math.inf, -1)] * (n + 1) for _ in range(buckets + 1)]
    best[0][0] = (0.0, -1)
    for b in range(1, buckets + 1):
        for j in range(b, n + 1):
            best[b][j] = min(((best[b - 1][i][0] + span(i, j)[0], i) for i in range(b - 1, j)),
                             key=lambda t: t[0])
    # the fewest buckets among the cheapest (min keeps the first of equal costs)
    used = min(range(1, min(buckets, n) + 1), key=lambda b: best[b][n][0])
    uppers: list[int] = []
    chosen: list[Hashable] = []
    b, j = used, n
    while b > 0:
        i = best[b][j][1]
        uppers.append(ms[j - 1])
        chosen.append(span(i, j)[1])
        b, j = b - 1, i
    total = sum(histogram[m] for m in ms)
    return BucketPlan(tuple(reversed(uppers)), tuple(reversed(chosen)), best[used][n][0] / total)
