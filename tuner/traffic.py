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
M above the last bound belongs to the last bucket. `fixed_buckets` gives the same plan for
boundaries chosen elsewhere (`pow2_uppers`: the power-of-two buckets of vLLM and SGLang), so
that the two are compared with the same candidates, only the boundaries differing.
Wired up by infertune/traffic_tuning.py; stored as a tuner.bucket_map.BucketMap.
"""

from __future__ import annotations

import itertools
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


def pow2_uppers(ms: Sequence[int]) -> tuple[int, ...]:
    """The power-of-two buckets that hold `ms`: (1], (1, 2], (2, 4], (4, 8], ...; only those
    with an M in them, written by their upper bound (13 -> 16)."""
    if any(m < 1 for m in ms):
        raise ValueError("token counts must be >= 1")
    return tuple(sorted({1 << (m - 1).bit_length() for m in ms}))


def fixed_buckets(histogram: Mapping[int, float], latency: Mapping[int, Mapping[Hashable, float]],
                  uppers: Sequence[int]) -> BucketPlan:
    """The plan with the given bucket boundaries (strictly increasing upper bounds; Ms above
    the last go to the last bucket) and, for each bucket, the config with the least
    count-weighted latency over its Ms (ties to the first met). A bucket that no M with
    traffic falls in is dropped. Raises ValueError as choose_buckets does."""
    if not uppers or any(b <= a for a, b in itertools.pairwise(uppers)):
        raise ValueError(f"bucket upper bounds must be non-empty and increasing, got {list(uppers)}")
    ms = sorted(m for m, count in histogram.items() if count > 0)
    if not ms or any(count < 0 for count in histogram.values()):
        raise ValueError("the histogram needs a positive count at some M and no negative count")
    shell = BucketPlan(tuple(uppers), tuple(range(len(uppers))), 0.0)
    members: dict[int, list[int]] = {}
    for m in ms:
        if m not in latency or not any(math.isfinite(t) for t in latency[m].values()):
            raise ValueError(f"no finite latency measured at M={m}")
        members.setdefault(shell.bucket_of(m), []).append(m)
    kept_uppers: list[int] = []
    chosen: list[Hashable] = []
    cost = 0.0
    for index in sorted(members):
        group = members[index]
        configs: list[Hashable] = []
        for m in group:
            configs += [c for c in latency[m] if c not in configs]
        scores = [sum(histogram[m] * latency[m].get(c, math.inf) for m in group) for c in configs]
        best = min(range(len(configs)), key=lambda k: scores[k])
        # the last bucket keeps its bound even when its Ms lie above it (bucket_of sends them there)
        kept_uppers.append(max(uppers[index], group[-1]) if index == len(uppers) - 1 else uppers[index])
        chosen.append(configs[best])
        cost += scores[best]
    total = sum(histogram[m] for m in ms)
    return BucketPlan(tuple(kept_uppers), tuple(chosen), cost / total)
