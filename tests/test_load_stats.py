"""profilers/serving: statistics against numpy and brute force, Poisson arrivals within
statistical bounds, length distributions and their one-line errors."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from profilers.serving.arrivals import poisson_offsets, poisson_within
from profilers.serving.client import Result
from profilers.serving.lengths import LengthError, parse_length
from profilers.serving.stats import level_figures, meets, percentile, saturation, subsample, summary


def test_percentile_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    for n in (1, 2, 3, 13, 257):
        values = list(rng.exponential(5.0, n))
        for q in (0, 1, 50, 90, 99, 100):
            assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12, abs=1e-12)
        s = summary(values)
        assert s["mean"] == pytest.approx(float(np.mean(values)))
        assert s["p99"] == pytest.approx(float(np.percentile(values, 99)))
    assert summary([]) is None


def _result(index, sent, gaps_ms, tokens=None, error=None):
    """A completed request: first token at sent + gaps_ms[0], then each later gap."""
    r = Result(index, sent=sent)
    t = sent
    for g in gaps_ms:
        t += g / 1e3
        r.token_times.append(t)
    r.first = r.token_times[0] if r.token_times else None
    r.end = t + 0.001
    r.prompt_tokens = 10
    r.completion_tokens = tokens if tokens is not None else len(gaps_ms)
    if error:
        r.error = error
    return r


def test_level_figures_against_brute_force(seed):
    rng = random.Random(seed)
    results = []
    for i in range(40):
        gaps = [rng.uniform(5, 300)] + [rng.uniform(1, 80) for _ in range(rng.randint(0, 12))]
        results.append(_result(i, sent=rng.uniform(0, 5), gaps_ms=gaps))
    results[3].error, results[7].error, results[9].error = "http_429", "timeout", "http_429"
    slo = {"ttft_ms": 150.0, "itl_ms": 60.0, "tpot_ms": 40.0}
    fig = level_figures(results, duration_s=8.0, slo=slo, seed=seed)
    done = [r for r in results if r.error is None]
    ttft = [(r.first - r.sent) * 1e3 for r in done]
    itl = [(b - a) * 1e3 for r in done for a, b in zip(r.token_times, r.token_times[1:])]
    tpot = [(r.end - r.first) * 1e3 / (r.completion_tokens - 1) for r in done if r.completion_tokens > 1]
    e2e = [(r.end - r.sent) * 1e3 for r in done]
    for key, values in (("ttft_ms", ttft), ("itl_ms", itl), ("tpot_ms", tpot), ("e2e_ms", e2e)):
        for q in (50, 90, 99):
            assert fig[key][f"p{q}"] == pytest.approx(float(np.percentile(values, q)))
        assert fig[key]["mean"] == pytest.approx(float(np.mean(values)))
    # brute force SLO check, written out independently of stats.meets
    good = 0
    for r in done:
        t = (r.first - r.sent) * 1e3
        gaps = [(b - a) * 1e3 for a, b in zip(r.token_times, r.token_times[1:])]
        p = (r.end - r.first) * 1e3 / (r.completion_tokens - 1) if r.completion_tokens > 1 else 0
        good += t <= 150 and all(g <= 60 for g in gaps) and p <= 40
    assert fig["goodput"] == pytest.approx(good / 8.0)
    assert fig["slo_attainment"] == pytest.approx(good / 40)
    assert fig["errors"] == {"http_429": 2, "timeout": 1}
    assert (fig["requests"], fig["completed"]) == (40, 37)
    assert fig["request_throughput"] == pytest.approx(37 / 8.0)
    assert fig["input_token_throughput"] == pytest.approx(370 / 8.0)
    assert fig["output_token_throughput"] == pytest.approx(sum(r.completion_tokens for r in done) / 8.0)
    assert sorted(fig["samples"]["itl_ms"]) == pytest.approx(sorted(itl))  # under the cap: all of them
    none = level_figures(results, duration_s=8.0, slo={}, seed=seed)
    assert none["goodput"] is None and none["slo_attainment"] is None


def test_slo_edges():
    r = _result(0, 0.0, [100.0, 50.0, 50.0])
    assert meets(r, {"ttft_ms": 100.0}) and not meets(r, {"ttft_ms": 99.9})
    assert meets(r, {"itl_ms": 50.001}) and not meets(r, {"itl_ms": 49.0})
    assert meets(r, {"e2e_ms": 201.0}) and not meets(r, {"e2e_ms": 200.5})
    failed = _result(1, 0.0, [1.0], error="http_500")
    assert not meets(failed, {"e2e_ms": 1e9})


def test_everything_failed_gives_nulls():
    results = [_result(i, 0.0, [1.0], error="connect") for i in range(3)]
    fig = level_figures(results, duration_s=1.0, slo={"ttft_ms": 1.0}, seed=0)
    assert fig["ttft_ms"] is None and fig["e2e_ms"] is None and fig["completed"] == 0
    assert fig["goodput"] == 0 and fig["slo_attainment"] == 0 and fig["errors"] == {"connect": 3}


def test_subsample_is_seeded_capped_and_ordered(seed):
    values = list(range(5000))
    a, b = subsample(values, 2000, seed), subsample(values, 2000, seed)
    assert a == b and len(a) == 2000 and a == sorted(a) and len(set(a)) == 2000
    assert subsample(values, 2000, seed + 1) != a
    assert subsample(values[:10], 2000, seed) == values[:10]


def test_saturation_picks_the_highest_throughput():
    levels = [{"request_throughput": x, "output_token_throughput": 10 * x} for x in (1.0, 3.5, 2.0)]
    assert saturation(levels) == {"request_throughput": 3.5, "output_token_throughput": 35.0, "level": 1}
    assert saturation([]) is None


def test_poisson_arrivals_mean_and_reproducibility(seed):
    rate, n = 4.0, 4000
    offsets = poisson_offsets(rate, n, seed)
    assert offsets == poisson_offsets(rate, n, seed) and offsets != poisson_offsets(rate, n, seed + 1)
    assert offsets[0] == 0 and all(b >= a for a, b in zip(offsets, offsets[1:]))
    gaps = np.diff(offsets)
    # mean of n-1 exponential gaps: sd = (1/rate)/sqrt(n-1); 5 sd misses one run in ~3.5 million
    assert abs(gaps.mean() - 1 / rate) < 5 * (1 / rate) / math.sqrt(n - 1)
    # exponential: the coefficient of variation is 1 (a fixed-interval schedule would give 0)
    assert 0.9 < gaps.std() / gaps.mean() < 1.1
    assert poisson_offsets(math.inf, 5, seed) == [0.0] * 5
    within = poisson_within(rate, 100.0, seed, limit=10_000)
    assert all(t < 100.0 for t in within)
    # count in 100 s is Poisson(400): sd 20
    assert abs(len(within) - 400) < 5 * 20
    assert len(poisson_within(1000.0, 100.0, seed, limit=50)) == 50
    with pytest.raises(ValueError):
        poisson_offsets(0.0, 3, seed)


@pytest.mark.parametrize("text,canonical", [
    ("32", "fixed:32"), ("fixed:7", "fixed:7"), (" uniform:2, 9 ", "uniform:2,9"), ("normal:64,8", "normal:64,8"),
    ("lognormal:100,0.5", "lognormal:100,0.5"), ("NORMAL:10.5,2", "normal:10.5,2"),
])
def test_lengths_parse_and_draw(text, canonical, seed):
    dist = parse_length(text)
    assert dist.text == canonical
    draws = dist.draw(3000, seed)
    assert draws == dist.draw(3000, seed) and all(isinstance(x, int) and x >= 1 for x in draws)
    if dist.kind == "uniform":
        assert set(draws) == set(range(2, 10))
    if dist.kind == "fixed":
        assert set(draws) == {int(dist.params[0])}
    if dist.kind == "normal" and dist.params == (64.0, 8.0):
        assert abs(np.mean(draws) - 64) < 5 * 8 / math.sqrt(3000)
    if dist.kind == "lognormal":
        assert abs(np.median(draws) - 100) < 5


def test_normal_is_clipped_at_one(seed):
    assert min(parse_length("normal:2,50").draw(2000, seed)) == 1


@pytest.mark.parametrize("text", ["", "0", "-3", "abc", "fixed:", "uniform:5", "uniform:9,2", "normal:10",
                                  "normal:10,-1", "normal:nan,1", "zipf:3", "fixed:1.5", "fixed:" + "9" * 5000,
                                  "lognormal:10,9", "uniform:1,2,3", "１２"])
def test_lengths_errors_are_one_line(text):
    with pytest.raises(LengthError) as err:
        parse_length(text)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300
