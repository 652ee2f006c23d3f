"""The sampler contract every search strategy passes, driven through the search with a
synthetic evaluator (no kernel runs): only valid configs are evaluated, each at most once;
the same seed gives the same configs; invalid proposals do not use the trial budget; `grid`
covers every valid config exactly once; `grid` and `lfbo` make no invalid proposal. lfbo's own
behaviour (learning from failures, resuming) is tested in tests/test_lfbo.py."""

from __future__ import annotations

import zlib

import pytest

import kernels
from kernels.spec import Config
from profilers.timing import Timing
from tuner.outcome import Outcome
from tuner.samplers import SAMPLERS, UnknownSampler, make_sampler
from tuner.search import SearchOptions, tune
from tuner.space import Space

from .fake_devices import CPU


class Synthetic:
    """A deterministic latency per config; records what it was asked to evaluate."""

    def __init__(self) -> None:
        self.evaluated: list[Config] = []
        self.timeouts: list[float | None] = []  # what each evaluate was told is left of the run budget

    def evaluate(self, config: Config, stop_above_ms=None, timeout_s=None) -> Outcome:
        self.evaluated.append(config)
        self.timeouts.append(timeout_s)
        ms = 1.0 + (zlib.crc32(str(config).encode()) % 1000) / 100.0
        return Outcome(status="ok", timing=Timing(ms, ms, ms, ms, ms, 1, "synthetic", False, True))

    def baseline(self) -> Outcome:
        return Outcome(status="ok", timing=Timing(1.0, 1.0, 1.0, 1.0, 1.0, 1, "synthetic", False, False))

    def compile_pool(self, workers: int, *, interpreter: bool):
        return None


SPEC = kernels.get("matmul")
PROBLEM = SPEC.problem({"M": 16, "N": 32, "K": 32}, "fp16")


def _search(sampler: str, seed: int, trials: int) -> tuple[Synthetic, object]:
    evaluator = Synthetic()
    result = tune(SPEC, PROBLEM, CPU, evaluator, storage=None,
                  options=SearchOptions(trials=trials, sampler=sampler, seed=seed, retime_top=0))
    return evaluator, result


def test_space_axes_hold_only_values_some_valid_config_uses():
    space = Space(SPEC, PROBLEM, CPU)
    assert 0 < len(space) < SPEC.space_size
    for name, values in space.axes.items():
        assert set(values) == {c[name] for c in space.valid_configs}


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_only_valid_configs_each_once_and_budget_counts_runs_only(sampler):
    evaluator, result = _search(sampler, seed=3, trials=12)
    space = Space(SPEC, PROBLEM, CPU)
    assert len(evaluator.evaluated) == 12 == result.trials_run
    assert len(set(evaluator.evaluated)) == 12
    assert all(space.reject_reason(c) is None for c in evaluator.evaluated)
    assert evaluator.evaluated[0] == SPEC.heuristic(PROBLEM, CPU)  # the default runs first


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_same_seed_same_configs(sampler):
    first, _ = _search(sampler, seed=7, trials=10)
    second, _ = _search(sampler, seed=7, trials=10)
    assert first.evaluated == second.evaluated


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_reaches_every_valid_config_given_the_budget(sampler):
    space = Space(SPEC, PROBLEM, CPU)
    evaluator, result = _search(sampler, seed=1, trials=len(space) + 5)
    assert sorted(map(str, evaluator.evaluated)) == sorted(map(str, space.valid_configs))
    assert result.trials_run == len(space)


def test_grid_covers_every_valid_config_exactly_once_without_rejections():
    space = Space(SPEC, PROBLEM, CPU)
    evaluator, result = _search("grid", seed=0, trials=10_000)
    assert sorted(map(str, evaluator.evaluated)) == sorted(map(str, space.valid_configs))
    assert result.rejected_invalid == 0 and result.answered_from_study == 0


@pytest.mark.parametrize("sampler", ["grid", "lfbo"])
def test_samplers_that_choose_among_valid_configs_make_no_invalid_proposal(sampler):
    # lfbo past its warm-up of 8: the classifier picks, still among the valid configs only.
    evaluator, result = _search(sampler, seed=2, trials=30)
    assert result.rejected_invalid == 0 and result.answered_from_study == 0
    assert len(set(evaluator.evaluated)) == 30


def test_invalid_proposals_are_rejected_before_running_and_not_counted():
    _, result = _search("random", seed=5, trials=8)
    assert result.rejected_invalid > 0  # the reduced axes still hold joint-constraint violations
    assert result.trials_run == 8


def test_best_is_the_lowest_latency_measured():
    evaluator, result = _search("grid", seed=0, trials=10_000)
    assert result.best.median_ms == min(Synthetic().evaluate(c).timing.median_ms for c in evaluator.evaluated)


def test_unknown_sampler():
    with pytest.raises(UnknownSampler, match="known samplers: tpe"):
        make_sampler("annealing", 0, Space(SPEC, PROBLEM, CPU))


def test_grid_skips_configs_recorded_by_an_earlier_run():
    """A resumed grid (bench.tuning --grid-resume): the configs an earlier run recorded are
    never proposed; the rest each once. Only the grid takes a skip list."""
    space = Space(SPEC, PROBLEM, CPU)
    default = SPEC.heuristic(PROBLEM, CPU)
    skip = frozenset(c for i, c in enumerate(space.valid_configs) if i % 3 and c != default)
    evaluator = Synthetic()
    result = tune(SPEC, PROBLEM, CPU, evaluator, storage=None,
                  options=SearchOptions(trials=10_000, sampler="grid", seed=4, retime_top=0, skip_configs=skip))
    assert sorted(map(str, evaluator.evaluated)) == sorted(str(c) for c in space.valid_configs if c not in skip)
    assert result.trials_run == len(space) - len(skip) and result.rejected_invalid == 0
    with pytest.raises(ValueError, match="only the grid sampler skips configs"):
        make_sampler("tpe", 0, space, skip)
    with pytest.raises(ValueError, match="nothing left"):
        make_sampler("grid", 0, space, frozenset(space.valid_configs))
