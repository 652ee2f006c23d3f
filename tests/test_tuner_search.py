"""The search with its isolated worker: planted failures are survived and recorded with their
reasons, a wrong result never wins, early stop and re-timing, and resume on stored studies."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import optuna

import kernels
from kernels.device import current_device
from kernels.spec import Config
from tuner.outcome import Outcome
from tuner.search import SearchOptions, measured_trials, study_name, tune
from tuner.space import Space
from tuner.worker import TimingPolicy, WorkerEvaluator

from . import tuner_planted as planted
from .fake_devices import CPU
from .test_tuner_samplers import Synthetic
from .tuner_killable import OPTIONS as KILLABLE_OPTIONS
from .tuner_killable import PROBLEM as KPROBLEM
from .tuner_killable import SPEC as KSPEC

ROOT = Path(__file__).resolve().parent.parent
FAST = TimingPolicy(warmup_ms=0, rep_ms=0, min_reps=3, max_reps=3, probe_reps=2)


def test_planted_failures_are_survived_recorded_and_never_win():
    device = current_device()
    problem = planted.SPEC.problem({"N": 64}, "fp32")
    events = []
    evaluator = WorkerEvaluator(planted.LOCATOR, problem, seed=1, policy=FAST, trial_timeout_s=3)
    try:
        began = time.monotonic()
        result = tune(planted.SPEC, problem, device, evaluator, storage=None,
                      options=SearchOptions(trials=100, sampler="random", seed=2), on_trial=events.append)
        took = time.monotonic() - began
    finally:
        evaluator.close()
    # the search's own wall time, recorded for the report's summary: the call, not more
    assert 0 < result.seconds <= took and result.to_dict()["seconds"] == result.seconds
    space = Space(planted.SPEC, problem, device)
    ran = [e.config for e in events]
    assert sorted(map(str, ran)) == sorted(map(str, space.valid_configs))  # the search went on to the end
    assert result.rejected_invalid > 0  # proposed, rejected, never sent to the worker
    assert not any("reached the worker" in (e.outcome.reason or "") for e in events)
    kinds = {e.config: e.outcome.kind for e in events}
    assert kinds[planted.RAISES] == "runtime-error"
    assert kinds[planted.CRASHES] == "crashed"
    assert kinds[planted.SEGFAULTS] == "crashed"
    assert kinds[planted.HANGS] == "timeout"
    assert kinds[planted.WRONG] == "wrong-result"
    assert result.failures == {"crashed": 2, "runtime-error": 1, "timeout": 1, "wrong-result": 1}
    reasons = {e.config: e.outcome.reason for e in events}
    assert "planted compile error" in reasons[planted.RAISES]
    assert "exit code 1" in reasons[planted.CRASHES]
    assert "SIGSEGV" in reasons[planted.SEGFAULTS]
    assert "MISMATCH" in reasons[planted.WRONG]
    assert evaluator.worker.started >= 4  # replaced after each crash and after the hang
    assert result.best_config == planted.BEST
    assert result.default_config == Config(BLOCK=1, WARPS=1) and result.default is not None
    assert result.speedup_over_default > 1 and result.baseline is not None
    assert any(e.outcome.status == "early-stopped" for e in events)  # 20x slower than the best
    assert result.retimed and result.retimed[0]["config"] == dict(planted.BEST)
    assert result.best.interpreter == device.interpreter


SPEC = kernels.get("matmul")
PROBLEM = SPEC.problem({"M": 16, "N": 32, "K": 32}, "fp16")


def test_resume_continues_the_stored_study_without_repeating(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    first, second = Synthetic(), Synthetic()
    options = SearchOptions(trials=4, sampler="tpe", seed=0, retime_top=0)
    r1 = tune(SPEC, PROBLEM, CPU, first, storage=storage, options=options)
    r2 = tune(SPEC, PROBLEM, CPU, second, storage=storage, options=options)
    assert len(first.evaluated) == len(second.evaluated) == 4
    assert len(set(first.evaluated + second.evaluated)) == 8
    assert r1.study_name == r2.study_name and r2.trials_total == 8 and r2.trials_run == 4


class Interrupting(Synthetic):
    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def evaluate(self, config, stop_above_ms=None, timeout_s=None) -> Outcome:
        if len(self.evaluated) == self.after:
            self.evaluated.append(config)
            raise KeyboardInterrupt
        return super().evaluate(config, stop_above_ms, timeout_s)


def test_ctrl_c_keeps_what_was_measured_and_the_cut_trial_runs_again(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    options = SearchOptions(trials=6, sampler="grid", seed=0, retime_top=0)
    cut = Interrupting(after=3)
    r1 = tune(SPEC, PROBLEM, CPU, cut, storage=storage, options=options)
    assert r1.interrupted and r1.trials_total == 3 and r1.best is not None
    again = Synthetic()
    r2 = tune(SPEC, PROBLEM, CPU, again, storage=storage, options=options)
    assert again.evaluated[0] == cut.evaluated[3]  # the interrupted config is not lost
    assert not set(cut.evaluated[:3]) & set(again.evaluated)
    assert r2.trials_total == 9 and not r2.interrupted


def test_sigkill_mid_study_loses_and_repeats_nothing(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    name = study_name(KSPEC, KPROBLEM, CPU)
    proc = subprocess.Popen([sys.executable, "-m", "tests.tuner_killable", storage], cwd=str(ROOT))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if len(measured_trials(optuna.load_study(study_name=name, storage=storage))) >= 4:
                    break
            except KeyError:  # the study does not exist yet
                pass
            time.sleep(0.1)
        else:
            raise AssertionError("the tuner stored no trials in 60 s")
    finally:
        proc.kill()
        proc.wait()
    before = set(measured_trials(optuna.load_study(study_name=name, storage=storage)))
    assert len(before) >= 4
    again = Synthetic()
    result = tune(KSPEC, KPROBLEM, CPU, again, storage=storage,
                  options=SearchOptions(trials=5, sampler=KILLABLE_OPTIONS.sampler, seed=KILLABLE_OPTIONS.seed, retime_top=0))
    assert not before & set(again.evaluated)  # nothing measured is run again
    assert result.trials_total == len(before) + 5  # nothing measured is lost


def test_run_budget_cuts_a_running_trial():
    """--timeout 8 with a per-trial timeout of 60 s: the hanging first trial is cut by the run
    budget (a timeout naming it), and the search returns within about 8 s + worker start."""
    device = current_device()
    problem = planted.HANG_FIRST.problem({"N": 64}, "fp32")
    events = []
    evaluator = WorkerEvaluator(planted.HANG_FIRST_LOCATOR, problem, seed=1, policy=FAST, trial_timeout_s=60)
    t0 = time.monotonic()
    try:
        result = tune(planted.HANG_FIRST, problem, device, evaluator, storage=None,
                      options=SearchOptions(trials=100, sampler="random", seed=2, timeout_s=8), on_trial=events.append)
    finally:
        evaluator.close()
    elapsed = time.monotonic() - t0
    assert events and events[0].config == planted.HANGS
    assert events[0].outcome.kind == "timeout" and "run budget" in events[0].outcome.reason
    assert len(events) == 1 and result.failures == {"timeout": 1}
    assert elapsed < 8 + 12, elapsed  # 8 s budget (worker start included) + closing


def test_every_trial_is_told_what_is_left_of_the_run_budget():
    budgeted, unbounded = Synthetic(), Synthetic()
    result = tune(SPEC, PROBLEM, CPU, budgeted, storage=None,
                  options=SearchOptions(trials=5, sampler="random", seed=0, timeout_s=600, retime_top=0))
    assert result.trials_run == 5 == len(budgeted.evaluated)
    left = budgeted.timeouts
    assert all(t is not None and 0 < t <= 600 for t in left) and left == sorted(left, reverse=True)
    tune(SPEC, PROBLEM, CPU, unbounded, storage=None, options=SearchOptions(trials=3, seed=0, retime_top=0))
    assert unbounded.timeouts == [None, None, None]
