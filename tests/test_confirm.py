"""End-to-end confirmation (infertune/confirm.py) with planted step times: a step costs the sum
of its launches' planted latencies (count x latency of the config the source resolves) plus
seeded noise, so which records help the step is known, and the verdicts are checked
against it. No kernel runs here; tests/test_confirm_model.py runs the real timer."""

from __future__ import annotations

import random

import pytest

import kernels
from infertune.confirm import (
    CONFIRMED,
    MIN_GAIN,
    NOT_EXERCISED,
    UNCONFIRMED,
    Overlay,
    bootstrap_ratio,
    confirm_records,
    model_steps,
    schedule,
)
from infertune.errors import UsageError
from kernels.config_source import HeuristicSource
from kernels.device import current_device
from kernels.spec import Config
from runtime.presets import get_preset
from tuner.database import open_database

from .db_records import make_record

MODEL = "smollm2-135m"  # only its launch list is used: the planted timer runs no kernel
SIZES = {"batches": [1], "seq": 16, "gen": 8, "dtype": "fp32", "quant": None}
BASE_MS = 0.01  # every launch with the config the database gives today


def _launches(step: str) -> int:
    steps = model_steps(get_preset(MODEL).config, **SIZES)
    return sum(next(s for s in steps if s.name == step).counts)


def _other_config(kernel: str, shape: dict[str, int], seed: int, avoid=()) -> dict[str, int]:
    """A valid config of `kernel` at `shape` that is not the heuristic's (nor in `avoid`)."""
    spec, device = kernels.get(kernel), current_device()
    problem = spec.problem(shape, "fp32")
    taken = {spec.heuristic(problem, device), *map(Config, avoid)}
    return dict(next(c for c in spec.sample_configs(problem, device, 8, seed) if c not in taken))


def _record(kernel: str, shape: dict[str, int], config: dict[str, int] | None = None, median_ms: float = 0.005):
    return make_record(kernel, shape, "fp32", device=current_device(), config=config, median_ms=median_ms)


class Planted:
    """step_timer: sum over the step's launches of count x latency, latency BASE_MS scaled by
    `factors[(kernel, key, config)]` for a planted config; times multiplied by (1 + noise)
    and by (1 + drift x call number). Logs which configs each call resolved."""

    def __init__(self, factors: dict, seed: int, noise: float = 0.003, drift: float = 0.0) -> None:
        self.factors, self.noise, self.drift = factors, noise, drift
        self.rng = random.Random(seed)
        self.calls: list[tuple[str, frozenset]] = []

    def __call__(self, step, source) -> float:
        total, planted = 0.0, set()
        device = current_device()
        for (name, problem), count in zip(step.launches, step.counts):
            spec = kernels.get(name)
            config = source.resolve(spec, problem, device).config
            key = (name, spec.shape_key(problem), config)
            factor = self.factors.get(key, 1.0)
            if key in self.factors:
                planted.add(key[:2] + (str(config),))
            total += count * BASE_MS * factor
        self.calls.append((step.name, frozenset(planted)))
        return total * (1 + self.rng.gauss(0.0, self.noise)) * (1 + self.drift * len(self.calls))


def _cases(seed: int):
    improve = _record("matmul", {"M": 1, "N": 3072, "K": 576}, _other_config("matmul", {"M": 1, "N": 3072, "K": 576}, seed))
    # The regressing record claims a faster kernel (median_ms) than the improving one: a
    # kernel-level winner that loses end to end.
    regress = _record("matmul", {"M": 1, "N": 576, "K": 1536},
                      _other_config("matmul", {"M": 1, "N": 576, "K": 1536}, seed), median_ms=0.001)
    noise = _record("add_rmsnorm", {"M": 1, "N": 576}, _other_config("add_rmsnorm", {"M": 1, "N": 576}, seed))
    absent = _record("matmul", {"M": 8, "N": 960, "K": 576}, _other_config("matmul", {"M": 8, "N": 960, "K": 576}, seed))
    same = _record("swiglu", {"M": 1, "N": 1536})  # the heuristic's config: nothing changes
    factors = {("matmul", improve.problem_key, Config(improve.config)): 0.7,   # 30 of ~300 launches: -3% decode
               ("matmul", regress.problem_key, Config(regress.config)): 1.3,   # +3% decode step
               ("add_rmsnorm", noise.problem_key, Config(noise.config)): 1.0}
    return [improve, regress, noise, absent, same], factors


def test_planted_verdicts(seed, tmp_path):
    records, factors = _cases(seed)
    timer = Planted(factors, seed)
    report = confirm_records(MODEL, records, db=str(tmp_path / "none.db"), device=current_device(), seed=seed,
                             rounds=6, step_timer=timer, **SIZES)
    verdicts = [r.verdict for r in report.results]
    assert verdicts == [CONFIRMED, UNCONFIRMED, UNCONFIRMED, NOT_EXERCISED, UNCONFIRMED], (seed, report.rows)
    improve, regress, noise, absent, same = report.results
    assert improve.ci[1] < 1 - MIN_GAIN and improve.steps == ("decode b=1",)
    # truth: 30 launches at 0.7x in a decode step of 272 (the interval misses it 5% of the time)
    truth = 1 - 0.3 * 30 / _launches("decode b=1")
    assert improve.ci[0] <= truth <= improve.ci[1] or abs(improve.ratio - truth) < 0.004
    assert regress.ci[0] > 1 and "slower" in regress.reason
    # truth 1: a 95% interval misses it 5% of the time (seen: low end 1.00029), by far less
    # than MIN_GAIN at this noise; a real change (0.7x / 1.3x above) is 100x further off
    assert noise.ci[0] - MIN_GAIN <= 1 <= noise.ci[1] + MIN_GAIN and noise.steps == ("prefill b=1 s=16", "decode b=1")
    assert "same config" in same.reason and same.ratio is None
    assert "does not launch" in absent.reason
    # the marks the lead saves
    marked = report.records
    assert [r.extra["confirmed"] for r in marked] == [True, False, False, False, False]
    assert marked[0].extra["confirmation"]["ci"] == list(improve.ci) and marked[0].extra["confirmation"]["rounds"] == 6
    assert marked[1].config == records[1].config and marked[1].problem_key == records[1].problem_key
    assert report.counts == {CONFIRMED: 1, UNCONFIRMED: 3, NOT_EXERCISED: 1}
    assert report.interpreter and any("say nothing about GPU speed" in n for n in report.notes)
    # the steps' headline: every exercised record at once; on the decode step the improving
    # and the regressing record (30 launches each, 0.7x and 1.3x) cancel out
    decode = next(s for s in report.steps if s.name == "decode b=1")
    assert decode.records == 3 and abs(decode.ratio - 1) < 0.005
    data = report.to_dict()
    assert data["counts"][CONFIRMED] == 1 and len(data["records"]) == 5 and data["rounds"] == 6


def test_abba_order_is_what_is_timed(seed, tmp_path):
    records, factors = _cases(seed)
    records = records[:3]
    timer = Planted(factors, seed)
    confirm_records(MODEL, records, db=None, device=current_device(), seed=seed, rounds=3, step_timer=timer, **SIZES)
    keys = [(r.kernel, r.problem_key, str(Config(r.config))) for r in records]
    improve, regress, noise = (frozenset([k]) for k in keys)
    every = frozenset(keys)
    none = frozenset()
    # prefill b=1 launches only the add_rmsnorm record (final norm at M=1); decode launches all three
    prefill = [("prefill b=1 s=16", s) for s in (none, noise, noise, none)]
    decode = [("decode b=1", s) for s in (none, improve, regress, noise, every, every, noise, regress, improve, none)]
    assert timer.calls == (prefill + decode) * 3
    assert schedule(["a", "b"]) == [None, "a", "b", "b", "a", None]


def test_linear_drift_cancels(seed):
    """A drift of +0.5% per timed call (x20 over a round) would make a pure-noise record look
    slower in plain A then B order; the mirrored order cancels it."""
    records, factors = _cases(seed)
    timer = Planted(factors, seed, noise=0.0005, drift=0.005)
    report = confirm_records(MODEL, [records[2]], db=None, device=current_device(), seed=seed, rounds=4,
                             step_timer=timer, **SIZES)
    (noise,) = report.results
    assert noise.verdict == UNCONFIRMED and abs(noise.ratio - 1) < 0.002, noise


def test_old_configs_come_from_the_database(seed, tmp_path):
    """A: what the database resolves today (a stored record), B: the new record over it."""
    shape = {"M": 1, "N": 3072, "K": 576}
    stored_config = _other_config("matmul", shape, seed)
    new_config = _other_config("matmul", shape, seed + 1, avoid=[stored_config])
    path = str(tmp_path / "t.db")
    with open_database(path) as db:
        db.put(_record("matmul", shape, stored_config))
    new = _record("matmul", shape, new_config)
    key = new.problem_key
    timer = Planted({("matmul", key, Config(stored_config)): 1.0, ("matmul", key, Config(new_config)): 1.5}, seed)
    report = confirm_records(MODEL, [new], db=path, device=current_device(), seed=seed, rounds=3, step_timer=timer,
                             **SIZES)
    assert {planted for _, planted in timer.calls} == {frozenset([("matmul", key, str(Config(stored_config)))]),
                                                        frozenset([("matmul", key, str(Config(new_config)))])}
    # truth: 30 of the decode step's launches 1.5x slower
    truth = 1 + 0.5 * 30 / _launches("decode b=1")
    assert report.results[0].verdict == UNCONFIRMED and abs(report.results[0].ratio - truth) < 0.005
    # the same config as the stored record: nothing to time
    same = confirm_records(MODEL, [_record("matmul", shape, stored_config)], db=path, device=current_device(),
                           seed=seed, rounds=3, step_timer=Planted({}, seed), **SIZES)
    assert "same config as the database config" in same.results[0].reason


def test_bootstrap_interval_covers_the_truth(seed):
    rng = random.Random(seed)
    misses = 0
    for _ in range(200):
        old = [10 * (1 + rng.gauss(0, 0.01)) for _ in range(8)]
        new = [9.5 * (1 + rng.gauss(0, 0.01)) for _ in range(8)]
        ratio, (low, high) = bootstrap_ratio(old, new, rng, resamples=400)
        assert low <= ratio <= high
        misses += not low <= 0.95 <= high
    # a 95% percentile interval over 8 pairs undercovers a little; 200 draws: expect ~10-20 misses
    assert misses < 40, misses


def test_overlay_answers_only_its_keys():
    device = current_device()
    shape = {"M": 1, "N": 3072, "K": 576}
    config = _other_config("matmul", shape, 0)
    overlay = Overlay(HeuristicSource(), [_record("matmul", shape, config)])
    spec = kernels.get("matmul")
    hit = overlay.resolve(spec, spec.problem(shape, "fp32"), device)
    miss = overlay.resolve(spec, spec.problem({"M": 2, "N": 3072, "K": 576}, "fp32"), device)
    assert hit.config == Config(config) and hit.source == "database"
    assert miss.source == "heuristic"


def test_bad_input(tmp_path):
    with pytest.raises(UsageError, match="at least 2 rounds"):
        confirm_records(MODEL, [], db=None, device=current_device(), seed=0, rounds=1, step_timer=Planted({}, 0),
                        **SIZES)
    with pytest.raises(UsageError, match="unknown model"):
        confirm_records("no-such-model", [], db=None, device=current_device(), seed=0, step_timer=Planted({}, 0),
                        **SIZES)
    with pytest.raises(UsageError, match="positions"):
        confirm_records(MODEL, [], db=None, device=current_device(), seed=0, step_timer=Planted({}, 0),
                        **{**SIZES, "seq": 9000})


def test_encoder_steps():
    steps = model_steps(get_preset("minilm-l6").config, batches=[1, 2], seq=8, gen=5, dtype="fp32", quant=None)
    assert [s.name for s in steps] == ["forward b=1 s=8", "forward b=2 s=8"] and all(s.weight == 1 for s in steps)


def test_quant_alias_names_the_scheme(seed):
    shape = {"M": 1, "N": 960, "K": 576}
    spec = kernels.get("matmul_w4a16")
    problem = spec.problem(shape, "fp16", {"quant": "int4-g128"})
    record = make_record("matmul_w4a16", shape, "fp16", {"quant": "int4-g128"}, device=current_device(),
                         config=dict(next(c for c in spec.sample_configs(problem, current_device(), 4, seed)
                                          if c != spec.heuristic(problem, current_device()))))
    report = confirm_records(MODEL, [record], db=None, device=current_device(), seed=seed, rounds=2,
                             step_timer=Planted({}, seed), **{**SIZES, "dtype": "fp16", "quant": "w4g128"})
    assert report.results[0].steps == ("decode b=1",)
