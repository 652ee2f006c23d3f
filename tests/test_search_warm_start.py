"""SearchOptions.warm_start: the given configs are the first trials after the default, in
order; one invalid for the problem, repeated, or already measured is skipped."""

from __future__ import annotations

import random

from kernels.spec import Config
from tuner.search import SearchOptions, tune
from tuner.space import Space

from .fake_devices import CPU
from .test_tuner_samplers import PROBLEM, SPEC, Synthetic


def _valid_and_invalid(seed: int) -> tuple[list[Config], Config]:
    space = Space(SPEC, PROBLEM, CPU)
    default = SPEC.heuristic(PROBLEM, CPU)
    valid = [c for c in space.valid_configs if c != default]
    picks = random.Random(seed).sample(valid, 3)
    # BLOCK_K larger than the padded K=32 is rejected before compiling
    invalid = Config({**dict(picks[0]), "BLOCK_K": 256})
    assert space.reject_reason(invalid) is not None
    return picks, invalid


def test_warm_configs_run_first_after_the_default_in_order():
    seed = random.randrange(1 << 16)
    picks, invalid = _valid_and_invalid(seed)
    warm = (picks[0], invalid, picks[1], picks[0], picks[2])
    evaluator = Synthetic()
    result = tune(SPEC, PROBLEM, CPU, evaluator, storage=None,
                  options=SearchOptions(trials=6, sampler="random", seed=seed, retime_top=0, warm_start=warm))
    assert evaluator.evaluated[0] == SPEC.heuristic(PROBLEM, CPU)
    assert evaluator.evaluated[1:4] == picks
    assert result.warm_started == 3
    assert invalid not in evaluator.evaluated
    assert result.to_dict()["warm_started"] == 3


def test_measured_warm_configs_are_not_run_again(tmp_path):
    seed = random.randrange(1 << 16)
    picks, _ = _valid_and_invalid(seed)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    first = Synthetic()
    tune(SPEC, PROBLEM, CPU, first, storage=storage,
         options=SearchOptions(trials=2, sampler="random", seed=seed, retime_top=0, warm_start=(picks[0],)))
    assert first.evaluated[1] == picks[0]
    again = Synthetic()
    result = tune(SPEC, PROBLEM, CPU, again, storage=storage,
                  options=SearchOptions(trials=2, sampler="random", seed=seed, retime_top=0,
                                        warm_start=(picks[0], picks[1])))
    assert picks[0] not in again.evaluated
    assert again.evaluated[0] == picks[1]
    assert result.warm_started == 1
