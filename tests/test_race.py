"""The race among the best configs (tuner/race.py), on planted noisy timings: each config has
a known true median and seeded noise, so the truly fastest is known. The race picks it when
the noise lets it, stops as soon as the intervals separate, ends on its budget when they do
not, drops the clearly beaten early, and breaks a near-tie by the lower spread (or keeps the
default)."""

from __future__ import annotations

import random

import pytest

from kernels.spec import Config
from profilers.timing import Timing
from tuner.outcome import Outcome
from tuner.race import ROUNDS, SECONDS, SEPARATED, Contender, RaceBudget, race
from tuner.search import SearchOptions, to_record, tune
from tuner.space import Space

from .fake_devices import CPU
from .tuner_killable import PROBLEM, SPEC


def _timing(median: float, spread: float = 0.1, ci: float = 0.002) -> Timing:
    """A planted measurement: p10/p90 `spread` apart (relative), its own interval +-ci."""
    return Timing(median, median * (1 - spread / 2), median * (1 + spread / 2), median * (1 - spread / 2), median,
                  100, "planted", False, True, median * (1 - ci), median * (1 + ci))


class Planted:
    """Configs with known true medians; each measurement is the truth times (1 + N(0, noise)),
    the noise drawn per measurement, or with `shared` per round (the machine's state: every
    contender of round r meets the same)."""

    def __init__(self, truth: dict[Config, float], noise: float, seed: int, spread: dict[Config, float] | None = None,
                 clock: list[float] | None = None, seconds_per_call: float = 0.0, shared: bool = False) -> None:
        self.truth, self.noise, self.rng, self.seed, self.shared = truth, noise, random.Random(seed), seed, shared
        self.spread = spread or {}
        self.calls: list[Config] = []
        self.clock, self.seconds_per_call = clock, seconds_per_call

    def __call__(self, config: Config) -> Outcome:
        self.calls.append(config)
        if self.clock is not None:
            self.clock[0] += self.seconds_per_call
        rng = random.Random(self.seed * 1000 + self.calls.count(config)) if self.shared else self.rng
        ms = self.truth[config] * (1 + rng.gauss(0.0, self.noise))
        return Outcome(status="ok", timing=_timing(ms, self.spread.get(config, 0.1)))


def _configs(n: int) -> list[Config]:
    return [Config({"BLOCK": 16 * (i + 1)}) for i in range(n)]


def _contenders(configs: list[Config], default: Config | None = None) -> list[Contender]:
    return [Contender(c, default=c == default) for c in configs]


def test_the_truly_fastest_wins_when_separable_and_the_race_stops_early(seed):
    rng = random.Random(seed)
    configs = _configs(4)
    # True medians at least 8% apart, noise 1%: separable within a few rounds (t at 2 rounds
    # is 12.7: a first pair separates them only when its two medians agree closely).
    base = rng.uniform(0.05, 5.0)
    truth = {c: base * (1 + 0.08 * i + rng.uniform(0, 0.02)) for i, c in enumerate(configs)}
    order = rng.sample(configs, len(configs))  # contenders enter in any order
    evaluator = Planted(truth, noise=0.01, seed=seed)
    result = race(_contenders(order, default=order[-1]), evaluator, RaceBudget(min_rounds=2, max_rounds=8))
    assert result.winner.config == min(truth, key=truth.get), f"seed {seed}"
    assert result.stopped == SEPARATED and result.rounds <= 5, f"seed {seed}"  # early: of 8 rounds
    assert evaluator.calls[:2 * len(order)] == order + order[::-1]  # interleaved: forward, then backward
    assert len(evaluator.calls) < 8 * len(order)
    low, high = result.winner.interval
    assert low <= result.winner.estimate <= high
    assert all(c.dropped_in and c.verdict.startswith("beaten") for c in result.contenders if c is not result.winner)
    assert result.winner.verdict.startswith("won: its interval separated")


def test_the_clearly_beaten_drop_out_early_and_a_true_tie_runs_to_the_round_budget(seed):
    a, b, slow, default = _configs(4)
    truth = {a: 1.0, b: 1.0, slow: 3.0, default: 2.0}
    evaluator = Planted(truth, noise=0.005, seed=seed, shared=True)  # a and b: the same truth, the same noise
    contenders = _contenders([a, b, slow, default], default=default)
    result = race(contenders, evaluator, RaceBudget(min_rounds=2, max_rounds=6))
    assert result.stopped == ROUNDS and result.rounds == 6
    by = {c.config: c for c in contenders}
    assert by[slow].dropped_in == 2 and by[default].dropped_in == 2
    assert evaluator.calls.count(slow) == evaluator.calls.count(default) == 2
    assert evaluator.calls.count(a) == evaluator.calls.count(b) == 6
    assert result.winner.config in (a, b)
    loser = by[b] if result.winner.config == a else by[a]
    assert loser.verdict.startswith("near-tie")
    d = by[slow].to_dict()
    assert d["rounds"] == 2 and len(d["rounds_ms"]) == 2 and len(d["round_intervals_ms"]) == 2
    assert d["dropped_in_round"] == 2 and d["interval_ms"][0] <= d["retimed"]["median_ms"] <= d["interval_ms"][1]


def test_the_time_budget_ends_the_race():
    a, b = _configs(2)
    clock = [0.0]
    evaluator = Planted({a: 1.0, b: 1.0}, noise=0.05, seed=1, clock=clock, seconds_per_call=1.0, shared=True)
    result = race(_contenders([a, b]), evaluator, RaceBudget(min_rounds=2, max_rounds=100, max_seconds=5.0),
                  clock=lambda: clock[0])
    # Rounds start at t=0, 2, 4; the round starting at 6 s does not.
    assert result.stopped == SECONDS and result.rounds == 3 and len(evaluator.calls) == 6
    assert all(c.dropped_in is None for c in result.contenders)
    assert "time budget" in result.winner.verdict


def test_a_near_tie_goes_to_the_lower_spread(seed):
    steady, jittery, default = _configs(3)
    truth = {steady: 1.0, jittery: 1.0, default: 1.5}
    evaluator = Planted(truth, noise=0.005, seed=seed, spread={steady: 0.05, jittery: 0.40}, shared=True)
    result = race(_contenders([jittery, steady, default], default=default), evaluator,
                  RaceBudget(min_rounds=2, max_rounds=4))
    assert result.stopped == ROUNDS
    assert result.winner.config == steady, f"seed {seed}"
    assert "lower spread" in result.winner.verdict
    assert next(c for c in result.contenders if c.config == jittery).verdict == "near-tie: lost on spread"


def test_the_default_wins_a_near_tie_with_a_searched_config(seed):
    searched, default = _configs(2)
    evaluator = Planted({searched: 1.0, default: 1.0}, noise=0.02, seed=seed, shared=True,
                        spread={searched: 0.01, default: 0.30})  # lower spread does not beat the default
    result = race(_contenders([searched, default], default=default), evaluator, RaceBudget(2, 4))
    assert result.winner.config == default and "default kept" in result.winner.verdict


def test_a_failing_contender_is_out_and_budgets_are_checked():
    a, b = _configs(2)

    def evaluate(config):
        if config == a:
            return Outcome.failed("runtime-error", "boom")
        return Outcome(status="ok", timing=_timing(2.0))

    result = race(_contenders([a, b]), evaluate, RaceBudget(2, 4))
    assert result.winner.config == b and result.contenders[0].failure == "boom"
    assert result.contenders[0].verdict.startswith("failed in round 1") and result.contenders[0].pooled() is None
    with pytest.raises(ValueError):
        RaceBudget(min_rounds=3, max_rounds=2)


# -- through tune(): the race decides the stored winner -----------------------------------

VALID = Space(SPEC, PROBLEM, CPU).valid_configs
DEFAULT = SPEC.heuristic(PROBLEM, CPU)


class NoisySearch:
    """The search sees LUCKY at 0.5 ms (one lucky measurement); in truth LUCKY is 1.5 ms, TRUE
    1.0 ms, the default 2.0 ms, the rest 3-4 ms; the race measures the truth with 1% noise."""

    def __init__(self, seed: int) -> None:
        others = [c for c in VALID if c != DEFAULT]
        rng = random.Random(seed)
        self.lucky, self.true_best = rng.sample(others, 2)
        self.truth = {c: 3.0 + rng.random() for c in VALID}
        self.truth.update({self.lucky: 1.5, self.true_best: 1.0, DEFAULT: 2.0})
        self.planted = Planted(self.truth, noise=0.01, seed=seed)
        self.searched: set[Config] = set()

    def evaluate(self, config, stop_above_ms=None, timeout_s=None) -> Outcome:
        if config not in self.searched:
            self.searched.add(config)
            ms = 0.5 if config == self.lucky else self.truth[config] * 1.1
            return Outcome(status="ok", timing=_timing(ms))
        return self.planted(config)

    def baseline(self) -> Outcome:
        return Outcome(status="ok", timing=_timing(2.0))

    def compile_pool(self, workers, *, interpreter):
        return None


def test_the_race_overrules_a_lucky_search_measurement_and_the_interval_is_stored(seed):
    evaluator = NoisySearch(seed)
    result = tune(SPEC, PROBLEM, CPU, evaluator, storage=None,
                  options=SearchOptions(trials=len(VALID), sampler="grid", seed=3, retime_top=3, retime_rounds=6,
                                        early_stop_factor=1e9))
    assert result.best_config == evaluator.true_best and not result.default_kept, f"seed {seed}"
    assert result.race["stopped"] == SEPARATED and result.race["rounds"] < 6
    assert result.race["winner"] == dict(evaluator.true_best)
    lucky = next(r for r in result.retimed if r["config"] == dict(evaluator.lucky))
    assert lucky["study_ms"] == 0.5 and lucky["verdict"].startswith("beaten") and lucky["rounds"] >= 2
    assert result.best.ci_low_ms <= result.best.median_ms <= result.best.ci_high_ms
    assert abs(result.best.median_ms - 1.0) < 0.05 and abs(result.default.median_ms - 2.0) < 0.1
    record = to_record(SPEC, result, CPU)
    assert record.extra["ci_ms"] == [result.best.ci_low_ms, result.best.ci_high_ms]
    assert record.median_ms == result.best.median_ms
    d = result.to_dict()
    assert d["race"]["verdict"].startswith("won") and {r["verdict"] for r in d["retimed"]} >= {result.race["verdict"]}


def test_the_report_shows_the_race_verdicts_and_the_noise_guard_and_the_schema_takes_them(seed):
    import types

    import jsonschema

    from reports.document import Note, Section, Table
    from reports.runfile import schema
    from reports.trust_section import trust_section

    evaluator = NoisySearch(seed)
    result = tune(SPEC, PROBLEM, CPU, evaluator, storage=None,
                  options=SearchOptions(trials=len(VALID), sampler="grid", seed=3, retime_top=3, early_stop_factor=1e9))
    entry = result.to_dict()
    defs = schema()["$defs"]
    jsonschema.Draft202012Validator({"$ref": "#/$defs/tuning_entry", "$defs": defs}).validate(entry)
    run = types.SimpleNamespace(label="run-a", data={"tuning": [entry]})
    sec = trust_section([run], Section, Table, Note)
    race_table = next(b for b in sec.blocks if isinstance(b, Table))
    assert f"{result.race['rounds']} rounds, separated" in race_table.title
    assert [row[-1] for row in race_table.rows] == [r["verdict"] for r in result.retimed]
    assert len(race_table.rows) == 3 and race_table.rows[-1][0].endswith("(default)")  # the default is third
    winner_row = next(row for row in race_table.rows if row[-1].startswith("won"))
    assert winner_row[0].startswith(", ".join(f"{k}={v}" for k, v in evaluator.true_best.items()))
    notes = [b.text for b in sec.blocks if isinstance(b, Note)]
    assert any("noise guard off: not a GPU" in n for n in notes)  # the CPU: the guard says why it is off
    entry["noise"] = {"guard": True, "reason": None, "flagged": 3, "remeasured": 4, "still_flagged": 1,
                      "examples": ["BLOCK=16: throttled: sw power cap"]}
    sec = trust_section([run], Section, Table, Note)
    noise_table = [b for b in sec.blocks if isinstance(b, Table)][-1]
    assert noise_table.rows[0][1:4] == ["3", "4", "1"] and "sw power cap" in noise_table.rows[0][4]
    assert trust_section([types.SimpleNamespace(label="x", data={"tuning": []})], Section, Table, Note) is None


def test_round_interval_never_goes_below_zero():
    # Two rounds far apart (seen on the interpreter: 13.6 and 35.1 ms) would give a negative low end.
    from tuner.race import round_interval

    rounds = [Timing(m, m, m, m, m, 3, "wall-clock", False, True, m * 0.9, m * 1.1) for m in (13.6, 35.1)]
    low, high = round_interval(rounds)
    assert low == 0.0 and high > 35.1


def test_a_pooled_timing_holds_its_median_between_p10_and_p90():
    # Two far-apart rounds: the mean of the medians lies above the median p90 (seen in bench.tuning --smoke).
    contender = Contender(Config({"BLOCK": 16}), study_ms=5.0, default=False)
    contender.rounds = [Timing(m, m * 0.97, m * 1.03, m * 0.95, m, 5, "wall-clock", False, True, m * 0.9, m * 1.1)
                        for m in (4.0, 17.0)]
    pooled = contender.pooled()
    assert pooled.p10_ms <= pooled.median_ms <= pooled.p90_ms
