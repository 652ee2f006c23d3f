"""Seeded request schedules: Poisson arrivals at a rate (open loop), pure functions.

Open loop means a request is sent at its scheduled time whatever happened to the ones before,
so a server that falls behind builds a queue and the queueing shows in TTFT, as it would under
real traffic; a closed loop (send the next when one returns) hides it."""

from __future__ import annotations

import math
import random


def poisson_offsets(rate: float, count: int, seed: int) -> list[float]:
    """Send times (seconds from the level's start) of `count` requests whose gaps are
    exponential with mean 1/rate; the first is sent at 0. rate = inf: all at 0 (a burst).
    Same (rate, count, seed) -> same schedule."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    if math.isinf(rate):
        return [0.0] * count
    rng = random.Random(seed)
    out, t = [], 0.0
    for i in range(count):
        if i:
            t += rng.expovariate(rate)
        out.append(t)
    return out


def poisson_within(rate: float, duration: float, seed: int, limit: int) -> list[float]:
    """Send times of a Poisson process at `rate` in [0, duration), at most `limit` of them
    (a bound: rate x duration may be huge). rate = inf: `limit` requests at 0."""
    if not duration > 0 or math.isinf(duration):
        raise ValueError(f"duration must be a finite number > 0, got {duration}")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if math.isinf(rate):
        return [0.0] * limit
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    rng = random.Random(seed)
    out, t = [], 0.0
    while t < duration and len(out) < limit:
        out.append(t)
        t += rng.expovariate(rate)
    return out
