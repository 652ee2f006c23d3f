"""infertune/traffic_tuning.py on planted latency tables (no kernel runs): the groups and
their Ms are what runtime/launches.py says each pass launches; the traffic plan is the optimum
that brute force over every partition and every config of the space finds; the heuristic and
power-of-two plans are priced as written by hand; the bucket map stores the traffic plan."""

from __future__ import annotations

import itertools
import math
import random

import pytest

import kernels
from infertune.errors import UsageError
from infertune.traffic_tuning import (
    MAX_POINTS,
    TableMeasurer,
    model_groups,
    representative_ms,
    traffic_autotune,
)
from kernels.device import current_device
from kernels.spec import Config
from runtime import get_preset, kernel_launches
from tuner.keys import bucketed_dim, m_bucket, problem_family
from tuner.search import SearchOptions
from tuner.traffic_io import Traffic, batch_passes

DEVICE = current_device()
GELU = kernels.get("gelu")
SMALL = Config(BLOCK_M=1, BLOCK_N=512, num_warps=1)   # planted best at M <= CUT
LARGE = Config(BLOCK_M=1, BLOCK_N=1024, num_warps=4)  # planted best above CUT (valid at every M)


def test_groups_follow_the_runtime_launch_list():
    """Per (kernel, family), the launches at each M over all passes equal what kernel_launches
    lists for each pass's own (batch, padded length): lm_head and the final norm per sequence."""
    rng = random.Random()
    seed = rng.randrange(2**32)
    rng = random.Random(seed)
    lengths = [rng.randint(1, 40) for _ in range(rng.randint(5, 30))]
    traffic = batch_passes(lengths, rng.randint(1, 5))
    config = get_preset("smollm2-135m").config
    want: dict[tuple[str, str], dict[int, float]] = {}
    for (tokens, batch), count in traffic.passes.items():
        for launch in kernel_launches(config, batch=batch, seq=tokens // batch, dtype="fp32", gen=0):
            spec = kernels.get(launch.kernel)
            dim = bucketed_dim(spec)
            if dim is not None:
                hist = want.setdefault((spec.name, problem_family(spec, launch.problem())), {})
                hist[launch.shape[dim]] = hist.get(launch.shape[dim], 0) + count * launch.count
    groups = model_groups("smollm2-135m", traffic, dtype="fp32", quant=None)
    got = {(g.kernel, g.family): g.histogram for g in groups}
    assert got == want, seed
    lm_head = next(g for g in groups if "lm_head" in g.launches[0].roles)
    assert set(lm_head.histogram) == {b for _, b in traffic.passes}, seed  # one row per sequence
    assert all(g.passes == traffic.total for g in groups)


def test_many_ms_are_rounded_up_to_fine_buckets():
    traffic = Traffic({(m, 1): 1 + m % 3 for m in range(1, 200)}, "histogram")
    (group,) = model_groups("minilm-l6", traffic, dtype="fp32", quant=None, kernel="gelu")
    assert group.coarsened and len(group.histogram) <= MAX_POINTS
    want: dict[int, float] = {}
    for m in range(1, 200):
        want[m_bucket(m)] = want.get(m_bucket(m), 0) + (1 + m % 3) * 6  # 6 layers
    assert group.histogram == want


def test_representative_ms():
    assert representative_ms({1: 50, 3: 30, 13: 10, 40: 5, 257: 5}, 3) == [1, 40, 257]
    assert representative_ms({8: 1}, 4) == [8]


def planted(rng: random.Random, cut: int):
    """A latency per (M, config): SMALL is the best config up to M=cut, LARGE above it; every
    other config is 1.6x to 3x slower than the best at that M; each also slower across."""
    others = {c: rng.uniform(1.6, 3.0) for c in GELU.all_configs()}
    base = {}

    def latency(kernel: str, problem, config: Config) -> float:
        assert kernel == "gelu"
        m = problem["M"]
        if GELU.reject_reason(config, problem, DEVICE):
            raise AssertionError(f"an invalid config was timed: {config} at M={m}")
        scale = base.setdefault(m, 1 + m / 64)
        if config == SMALL:
            return scale * (1.0 if m <= cut else 1.4)
        if config == LARGE:
            return scale * (1.0 if m > cut else 1.3)
        return scale * others[config]
    return latency


def brute_force(histogram, latency_of, configs_at, buckets):
    """The least expected latency per launch over every partition into <= buckets and every
    valid config of the space in each bucket."""
    ms = sorted(histogram)
    total = sum(histogram.values())
    best = math.inf
    for k in range(1, min(buckets, len(ms)) + 1):
        for cuts in itertools.combinations(range(1, len(ms)), k - 1):
            bounds = [0, *cuts, len(ms)]
            cost = 0.0
            for a, b in itertools.pairwise(bounds):
                part = ms[a:b]
                common = set.intersection(*(configs_at[m] for m in part))
                cost += min((sum(histogram[m] * latency_of(m, c) for m in part) for c in common), default=math.inf)
            best = min(best, cost)
    return best / total


@pytest.mark.parametrize("trial", range(3))
def test_the_traffic_plan_is_the_brute_force_optimum(trial):
    rng = random.Random()
    seed = rng.randrange(2**32)
    rng = random.Random(seed)
    ms = sorted(rng.sample([1, 2, 3, 5, 8, 13, 21, 40, 64, 100, 257, 512], rng.randint(3, 6)))
    cut = rng.choice(ms[:-1])
    traffic = Traffic({(m, 1): rng.choice([1, 5, 40, 300]) for m in ms}, "histogram")
    latency = planted(rng, cut)
    measurer = TableMeasurer(latency, DEVICE)
    options = SearchOptions(trials=300, sampler="grid", seed=seed % 1000, retime_top=0)
    result = traffic_autotune("minilm-l6", traffic, buckets=2, dtype="fp32", quant=None, device=DEVICE,
                              measurer=measurer, options=options, storage=None, kernel="gelu")
    (g,) = result.groups
    assert SMALL in g.candidates and LARGE in g.candidates, (seed, g.searched)
    hist = g.group.histogram
    problems = {m: g.group.problem(m) for m in hist}
    configs_at = {m: set(GELU.valid_configs(problems[m], DEVICE)) for m in hist}
    optimum = brute_force(hist, lambda m, c: latency("gelu", problems[m], c), configs_at, 2)
    traffic_plan = g.plans["traffic"]
    assert traffic_plan.per_launch_ms == pytest.approx(optimum), seed
    # two regimes with traffic: the first bucket ends where the planted switch is
    assert traffic_plan.uppers == (cut, ms[-1]) and traffic_plan.configs == (SMALL, LARGE), seed
    # per forward pass: 6 gelu launches (one per layer) per pass
    passes = traffic.total
    by_hand = sum(count * 6 * latency("gelu", problems[m], traffic_plan.configs[0 if m <= traffic_plan.uppers[0]
                                                                                   else -1])
                  for (m, _), count in traffic.passes.items()) / passes
    assert traffic_plan.per_pass_ms == pytest.approx(by_hand), seed
    heuristic = sum(count * 6 * latency("gelu", problems[m], GELU.heuristic(problems[m], DEVICE))
                    for (m, _), count in traffic.passes.items()) / passes
    assert g.plans["heuristic"].per_pass_ms == pytest.approx(heuristic), seed
    # power of two: each octave's best candidate; never better than the optimum with as many buckets
    pow2 = g.plans["pow2"]
    assert all(u & (u - 1) == 0 for u in pow2.uppers[:-1]), seed
    assert pow2.per_pass_ms >= traffic_plan.per_pass_ms - 1e-9 or len(pow2.uppers) > 2, seed
    # the stored map is the traffic plan
    bm = g.bucket_map
    assert bm.uppers == traffic_plan.uppers and bm.configs == tuple(dict(c) for c in traffic_plan.configs)
    assert bm.extra["expected_ms_per_pass"]["traffic"] == pytest.approx(traffic_plan.per_pass_ms)
    assert result.per_pass("traffic") == pytest.approx(traffic_plan.per_pass_ms)


def test_bad_requests_are_usage_errors():
    traffic = Traffic({(4, 1): 1}, "histogram")
    measurer = TableMeasurer(lambda *a: 1.0, DEVICE)
    with pytest.raises(UsageError, match="--buckets must be an integer from 1 to 64"):
        traffic_autotune("minilm-l6", traffic, buckets=0, dtype="fp32", quant=None, device=DEVICE, measurer=measurer,
                         options=SearchOptions(trials=2), storage=None)
    with pytest.raises(UsageError, match="launches no bucketed attention"):
        model_groups("minilm-l6", traffic, dtype="fp32", quant=None, kernel="attention")
    with pytest.raises(UsageError, match="unknown model"):
        model_groups("gpt-9", traffic, dtype="fp32", quant=None)
