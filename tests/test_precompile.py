"""Ahead-of-time compilation in a pool of workers (tuner/precompile.py) and the batch step of
the search. Under the interpreter the pool is disabled; tests force its compile op to launch
the planted configs so that crashes and hangs are observable."""

from __future__ import annotations

import zlib
from collections import Counter

import pytest

from kernels.device import current_device
from kernels.spec import Config
from tuner.outcome import Outcome
from tuner.precompile import INTERPRETER_REASON, CompilePool
from tuner.samplers import SAMPLERS
from tuner.search import SearchOptions, tune
from tuner.space import Space
from tuner.worker import TimingPolicy, WorkerEvaluator

from . import tuner_planted as planted
from .fake_devices import CPU
from .test_tuner_samplers import PROBLEM, SPEC, Synthetic

FAST = TimingPolicy(warmup_ms=0, rep_ms=0, min_reps=3, max_reps=3, probe_reps=2)
PLANTED_PROBLEM = planted.SPEC.problem({"N": 64}, "fp32")


def test_pool_is_disabled_under_the_interpreter_and_costs_nothing():
    pool = CompilePool(planted.LOCATOR, PLANTED_PROBLEM, seed=1, workers=4, timeout_s=3, interpreter=True)
    assert not pool.enabled and pool.disabled_reason == INTERPRETER_REASON
    outcomes = pool.compile_many([planted.CRASHES, planted.HANGS])
    assert [o.status for o in outcomes] == ["ok", "ok"] and pool.started == 0 and not pool.compiled
    pool.close()


def test_search_without_an_enabled_pool_is_the_sequential_search():
    class WithDisabledPool(Synthetic):
        def compile_pool(self, workers, *, interpreter):
            self.asked = (workers, interpreter)
            return CompilePool(planted.LOCATOR, PLANTED_PROBLEM, seed=0, workers=workers, timeout_s=1,
                               interpreter=True)

    plain, pooled = Synthetic(), WithDisabledPool()
    options = SearchOptions(trials=8, sampler="tpe", seed=1, retime_top=0)
    tune(SPEC, PROBLEM, CPU, plain, storage=None, options=options)
    tune(SPEC, PROBLEM, CPU, pooled, storage=None,
         options=SearchOptions(trials=8, sampler="tpe", seed=1, retime_top=0, compile_workers=3))
    assert pooled.asked == (3, True)
    assert plain.evaluated == pooled.evaluated


@pytest.mark.skipif(not current_device().interpreter, reason="the forced compile op is for the interpreter")
def test_forced_pool_reports_typed_compile_failures():
    with CompilePool(planted.LOCATOR, PLANTED_PROBLEM, seed=1, workers=2, timeout_s=3, interpreter=True,
                     force=True) as pool:
        configs = [planted.RAISES, planted.CRASHES, planted.HANGS, planted.BEST, planted.WRONG]
        outcomes = pool.compile_many(configs)
        assert [o.kind for o in outcomes] == ["runtime-error", "crashed", "timeout", None, None]
        assert [o.status for o in outcomes[3:]] == ["ok", "ok"]  # compiling checks nothing: WRONG compiles
        assert all(o.reason.startswith("compile: ") for o in outcomes[:3])
        assert "planted compile error" in outcomes[0].reason
        assert sorted(map(str, pool.compiled)) == sorted(map(str, configs))


class CountingEvaluator(WorkerEvaluator):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.evaluated: list[Config] = []

    def evaluate(self, config, stop_above_ms=None, timeout_s=None) -> Outcome:
        self.evaluated.append(config)
        return super().evaluate(config, stop_above_ms, timeout_s)


@pytest.mark.skipif(not current_device().interpreter, reason="the forced compile op is for the interpreter")
def test_batched_search_with_a_compile_pool_on_the_planted_kernel():
    device = current_device()
    events = []
    evaluator = CountingEvaluator(planted.LOCATOR, PLANTED_PROBLEM, seed=1, policy=FAST, trial_timeout_s=3)
    pool = CompilePool(planted.LOCATOR, PLANTED_PROBLEM, seed=1, workers=2, timeout_s=3, interpreter=True, force=True)
    try:
        result = tune(planted.SPEC, PLANTED_PROBLEM, device, evaluator, storage=None,
                      options=SearchOptions(trials=100, sampler="random", seed=2, compile_workers=2),
                      on_trial=events.append, compile_pool=pool)
    finally:
        evaluator.close()
        pool.close()
    space = Space(planted.SPEC, PLANTED_PROBLEM, device)
    ran = Counter(e.config for e in events)
    assert set(ran) == set(space.valid_configs) and max(ran.values()) == 1  # all, none twice
    assert max(Counter(pool.compiled).values()) == 1  # nothing compiled twice
    kinds = {e.config: e.outcome.kind for e in events}
    assert kinds[planted.RAISES] == "runtime-error"
    assert kinds[planted.CRASHES] == "crashed"
    assert kinds[planted.SEGFAULTS] == "crashed"
    assert kinds[planted.HANGS] == "timeout"
    assert kinds[planted.WRONG] == "wrong-result"  # compiles; the timing worker's check catches it
    reasons = {e.config: e.outcome.reason for e in events}
    assert all(reasons[c].startswith("compile: ") for c in (planted.RAISES, planted.CRASHES, planted.SEGFAULTS,
                                                            planted.HANGS))
    # The crashing, hanging and raising configs never reached the timing worker, which was never replaced.
    timed = set(evaluator.evaluated)
    assert not timed & {planted.RAISES, planted.CRASHES, planted.SEGFAULTS, planted.HANGS}
    assert evaluator.worker.started == 1
    assert result.best_config == planted.BEST and result.default is not None
    assert result.failures == {"crashed": 2, "runtime-error": 1, "timeout": 1, "wrong-result": 1}


class FakePool:
    """An enabled pool in-process: compiling fails for configs whose crc is divisible by 7."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.enabled = True
        self.compiled: list[Config] = []

    def start(self) -> None:
        pass

    def compile_many(self, configs, timeout_s=None):
        self.compiled.extend(configs)
        return [Outcome.failed("compile-error", "compile: planted") if zlib.crc32(str(c).encode()) % 7 == 0
                else Outcome(status="ok") for c in configs]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_batches_keep_the_sampler_contract(sampler):
    space = Space(SPEC, PROBLEM, CPU)
    pool, evaluator, events = FakePool(3), Synthetic(), []
    result = tune(SPEC, PROBLEM, CPU, evaluator, storage=None,
                  options=SearchOptions(trials=20, sampler=sampler, seed=4, retime_top=0, compile_workers=3),
                  on_trial=events.append, compile_pool=pool)
    ran = [e.config for e in events]
    assert len(ran) == 20 == result.trials_run and len(set(ran)) == 20  # each config at most once
    assert all(space.reject_reason(c) is None for c in ran)
    assert len(pool.compiled) == len(set(pool.compiled)) == 20
    failed = {e.config for e in events if e.outcome.kind == "compile-error"}
    assert not failed & set(evaluator.evaluated)  # a failed compile is the trial: never timed
    assert set(evaluator.evaluated) | failed == set(ran)
    # The same seed gives the same configs.
    again = []
    tune(SPEC, PROBLEM, CPU, Synthetic(), storage=None,
         options=SearchOptions(trials=20, sampler=sampler, seed=4, retime_top=0, compile_workers=3),
         on_trial=again.append, compile_pool=FakePool(3))
    assert [e.config for e in again] == ran


def test_grid_with_batches_covers_every_valid_config_once():
    space = Space(SPEC, PROBLEM, CPU)
    evaluator = Synthetic()
    result = tune(SPEC, PROBLEM, CPU, evaluator, storage=None,
                  options=SearchOptions(trials=10_000, sampler="grid", seed=0, retime_top=0, compile_workers=4),
                  compile_pool=FakePool(4))
    failed = result.failures.get("compile-error", 0)
    assert len(evaluator.evaluated) + failed == len(space) == result.trials_total
    assert len(set(evaluator.evaluated)) == len(evaluator.evaluated)


def test_one_pool_serves_several_problems_and_starts_once():
    other = planted.SPEC.problem({"N": 96}, "fp32")
    with CompilePool(planted.LOCATOR, PLANTED_PROBLEM, seed=1, workers=2, timeout_s=5, interpreter=True,
                     force=True) as pool:
        pool.start()
        assert pool.started == 2  # both processes up before any compile
        first = pool.compile_many([planted.BEST, planted.RAISES])
        pool.retarget(planted.LOCATOR, other, seed=3)
        second = pool.compile_many([planted.BEST, planted.RAISES])
        assert [o.status for o in first] == [o.status for o in second] == ["ok", "failed"]
        assert pool._base["problem"]["shape"]["N"] == 96 and pool._base["seed"] == 3
        assert pool.started == 2  # the second problem started no process


class SlowStart(Synthetic):
    """A worker whose start-up (its first request, the baseline) takes `delay` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def baseline(self) -> Outcome:
        import time
        time.sleep(self.delay)
        return super().baseline()


def test_search_budget_counts_from_when_the_workers_are_up():
    # 1.5 s of start-up against a 1 s budget: before the fix the search ran nothing.
    evaluator = SlowStart(1.5)
    result = tune(SPEC, PROBLEM, current_device(), evaluator, storage=None,
                  options=SearchOptions(trials=5, sampler="random", seed=0, timeout_s=1.0, retime_top=0))
    assert result.trials_run == 5 == len(evaluator.evaluated)
