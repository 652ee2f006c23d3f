"""tuner/traffic.py: the chosen buckets are the optimum that brute force over every partition
and every config assignment finds, on fresh random latencies and histograms."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from tuner.traffic import (
    BucketPlan,
    choose_buckets,
    expected_latency,
    fixed_buckets,
    pow2_uppers,
)


def brute_force(histogram, latency, buckets):
    ms = sorted(m for m, c in histogram.items() if c > 0)
    configs = sorted({c for m in ms for c in latency[m]})
    total = sum(histogram[m] for m in ms)
    best = math.inf
    for k in range(1, min(buckets, len(ms)) + 1):
        for cuts in itertools.combinations(range(1, len(ms)), k - 1):
            bounds = [0, *cuts, len(ms)]
            cost = 0.0
            for a, b in itertools.pairwise(bounds):
                cost += min(sum(histogram[m] * latency[m].get(c, math.inf) for m in ms[a:b]) for c in configs)
            best = min(best, cost / total)
    return best


def random_case(rng: random.Random, n_ms: int, n_configs: int):
    ms = sorted(rng.sample(range(1, 4097), n_ms))
    histogram = {m: rng.choice([0, 1, 2, 5, 40, 300]) for m in ms}
    histogram[ms[rng.randrange(n_ms)]] += 1  # at least one M with traffic
    configs = [f"cfg{i}" for i in range(n_configs)]
    # latency grows with M; each config has its own sweet spot, some are missing at some Ms
    latency = {m: {c: (1 + m / 256) * rng.uniform(0.5, 2.0) for c in configs if rng.random() > 0.15} for m in ms}
    for m in ms:
        latency[m].setdefault(configs[0], 1 + m / 256)
    return histogram, latency


@pytest.mark.parametrize("trial", range(40))
def test_the_chosen_buckets_are_optimal(trial):
    rng = random.Random()  # fresh cases every run; the seed is in the failure message
    seed = rng.randrange(2**32)
    rng = random.Random(seed)
    histogram, latency = random_case(rng, n_ms=rng.randint(1, 9), n_configs=rng.randint(1, 5))
    buckets = rng.randint(1, 5)
    plan = choose_buckets(histogram, latency, buckets)
    assert plan.expected == pytest.approx(brute_force(histogram, latency, buckets)), seed
    assert plan.expected == pytest.approx(expected_latency(histogram, latency, plan)), seed
    assert 1 <= len(plan.uppers) <= buckets and list(plan.uppers) == sorted(set(plan.uppers))
    assert plan.uppers[-1] == max(m for m, c in histogram.items() if c > 0)


def test_buckets_follow_the_traffic():
    # Two configs: "small" is fast up to M=8, "big" from M=64; traffic at M=3 and M=100 only.
    latency = {m: {"small": m * 1.0 if m <= 8 else m * 3.0, "big": m * 2.0 if m <= 8 else m * 1.0}
               for m in (1, 3, 8, 64, 100)}
    plan = choose_buckets({3: 90, 100: 10}, latency, 2)
    assert plan.uppers == (3, 100) and plan.configs == ("small", "big")
    assert plan.expected == pytest.approx((90 * 3 + 10 * 100) / 100)
    # One bucket: the config that is best for the whole mix.
    one = choose_buckets({3: 90, 100: 10}, latency, 1)
    assert one.uppers == (100,) and one.configs == ("big",)  # 90*6 + 1000 < 90*3 + 3000


def test_fewest_buckets_on_a_tie():
    latency = {m: {"only": float(m)} for m in (1, 2, 4)}
    plan = choose_buckets({1: 1, 2: 1, 4: 1}, latency, 3)
    assert plan.uppers == (4,) and plan.configs == ("only",)


def test_bucket_of():
    plan = BucketPlan(uppers=(4, 64), configs=("a", "b"), expected=0.0)
    assert [plan.bucket_of(m) for m in (1, 4, 5, 64, 5000)] == [0, 0, 1, 1, 1]


@pytest.mark.parametrize("histogram,latency,buckets,match", [
    ({}, {}, 2, "positive count"),
    ({1: -1, 2: 3}, {1: {"a": 1.0}, 2: {"a": 1.0}}, 2, "negative"),
    ({1: 1}, {1: {"a": 1.0}}, 0, "at least one bucket"),
    ({1: 1, 7: 2}, {1: {"a": 1.0}}, 2, "M=7"),
    ({1: 1}, {1: {"a": math.inf}}, 1, "M=1"),
])
def test_bad_input(histogram, latency, buckets, match):
    with pytest.raises(ValueError, match=match):
        choose_buckets(histogram, latency, buckets)


def brute_force_fixed(histogram, latency, uppers):
    """Every assignment of configs to the fixed buckets, the cheapest kept."""
    ms = sorted(m for m, c in histogram.items() if c > 0)
    index = [next((i for i, u in enumerate(uppers) if m <= u), len(uppers) - 1) for m in ms]
    used = sorted(set(index))
    configs = sorted({c for m in ms for c in latency[m]})
    best = math.inf
    for pick in itertools.product(configs, repeat=len(used)):
        chosen = dict(zip(used, pick))
        best = min(best, sum(histogram[m] * latency[m].get(chosen[i], math.inf) for m, i in zip(ms, index)))
    return best / sum(histogram[m] for m in ms)


@pytest.mark.parametrize("trial", range(20))
def test_fixed_buckets_are_the_best_for_their_bounds(trial):
    rng = random.Random()
    seed = rng.randrange(2**32)
    rng = random.Random(seed)
    histogram, latency = random_case(rng, n_ms=rng.randint(1, 7), n_configs=rng.randint(1, 4))
    uppers = pow2_uppers([m for m in histogram])
    plan = fixed_buckets(histogram, latency, uppers)
    assert plan.expected == pytest.approx(brute_force_fixed(histogram, latency, uppers)), seed
    assert plan.expected == pytest.approx(expected_latency(histogram, latency, plan)), seed
    # with as many buckets as the power-of-two plan uses, the traffic plan is never worse
    assert choose_buckets(histogram, latency, len(uppers)).expected <= plan.expected + 1e-9, seed


def test_pow2_uppers():
    assert pow2_uppers([1, 3, 4, 5, 13, 300]) == (1, 4, 8, 16, 512)
    with pytest.raises(ValueError):
        pow2_uppers([0])
