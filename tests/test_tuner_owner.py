"""Dead tuners (tuner/owner.py): a trial whose tuner was killed mid-trial is found at resume,
failed as abandoned and its config run again; a trial whose tuner is alive is left alone;
a trial of another machine is judged by its heartbeat, which the running tuner keeps fresh."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tuner.owner import HEARTBEAT_ATTR, OWNER_ATTR, Owner, pid_gone
from tuner.search import SearchOptions, measured_trials, study_name, tune
from tuner.space import Space

from .fake_devices import CPU
from .test_tuner_samplers import Synthetic
from .tuner_killable import PROBLEM, SPEC

ROOT = Path(__file__).resolve().parent.parent
FEW = SearchOptions(trials=3, sampler="random", seed=5, retime_top=0)


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def _owner(pid: int, pid_start: str | None = None) -> Owner:
    me = Owner.current()
    return Owner(host=me.host, boot=me.boot, pid_ns=me.pid_ns, pid=pid, pid_start=pid_start)


def test_pid_check_tells_live_dead_zombie_and_reused_pids():
    child = _sleeper()
    try:
        stat = Path(f"/proc/{child.pid}/stat")
        start = stat.read_text().rpartition(")")[2].split()[19] if stat.exists() else None
        assert pid_gone(_owner(child.pid, start)) is None
        if start is not None:
            assert "another process" in pid_gone(_owner(child.pid, str(int(start) + 1)))
        child.kill()
        if start is not None:
            time.sleep(0.2)  # killed, not yet reaped: a zombie is dead too
            assert "zombie" in pid_gone(_owner(child.pid, start))
    finally:
        child.kill()
        child.wait()
    assert "is dead" in pid_gone(_owner(child.pid))


def _running_with_owner(storage: str) -> list[optuna.trial.FrozenTrial]:
    try:
        study = optuna.load_study(study_name=study_name(SPEC, PROBLEM, CPU), storage=storage)
    except KeyError:  # not created yet
        return []
    if len(measured_trials(study)) < 3:
        return []
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if OWNER_ATTR in t.user_attrs]


def test_a_tuner_killed_mid_trial_is_respected_alive_and_requeued_dead(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    # Its fourth evaluation never returns: the kill lands mid-trial.
    proc = subprocess.Popen([sys.executable, "-m", "tests.tuner_killable", storage, "3"], cwd=str(ROOT))
    try:
        deadline = time.monotonic() + 90
        while not (running := _running_with_owner(storage)):
            assert time.monotonic() < deadline, "the tuner started no owned trial in 90 s"
            time.sleep(0.1)
        hung = Space.config_of(running[0].params)
        assert running[0].user_attrs[OWNER_ATTR]["pid"] == proc.pid
        # Alive: another tuner asked for the running config leaves it alone.
        study = optuna.load_study(study_name=study_name(SPEC, PROBLEM, CPU), storage=storage)
        study.enqueue_trial(dict(hung))
        alive = Synthetic()
        r_alive = tune(SPEC, PROBLEM, CPU, alive, storage=storage, options=FEW)
        assert hung not in alive.evaluated and len(alive.evaluated) == 3
        assert r_alive.abandoned == 0 and r_alive.taken_elsewhere >= 1
    finally:
        proc.kill()
        proc.wait()
    # Dead: the resumed search fails the trial as abandoned and runs its config again.
    before = set(measured_trials(optuna.load_study(study_name=study_name(SPEC, PROBLEM, CPU), storage=storage)))
    again = Synthetic()
    result = tune(SPEC, PROBLEM, CPU, again, storage=storage, options=FEW)
    assert again.evaluated[0] == hung  # re-queued: the first config the resumed search runs
    assert len(again.evaluated) == 3 and not before & set(again.evaluated)
    assert result.abandoned == 1 and result.trials_total == len(before) + 3 and not result.interrupted
    study = optuna.load_study(study_name=study_name(SPEC, PROBLEM, CPU), storage=storage)
    old = next(t for t in study.get_trials(deepcopy=False) if t.number == running[0].number)
    assert old.state == TrialState.FAIL and old.user_attrs["kind"] == "abandoned"
    assert f"pid {proc.pid}" in old.user_attrs["reason"] and "dead" in old.user_attrs["reason"]
    assert measured_trials(study)[hung].user_attrs["kind"] is None  # its measurement, not the abandoned trial


@pytest.mark.parametrize("silent_s, respected", [(5.0, True), (1000.0, False)])
def test_a_trial_of_another_machine_is_judged_by_its_heartbeat(tmp_path, silent_s, respected):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    space = Space(SPEC, PROBLEM, CPU)
    study = optuna.create_study(study_name=study_name(SPEC, PROBLEM, CPU), storage=storage, direction="minimize")
    target = next(c for c in space.valid_configs if c != SPEC.heuristic(PROBLEM, CPU))
    study.enqueue_trial(dict(target))
    trial = study.ask(space.distributions())
    trial.set_user_attr(OWNER_ATTR, {"host": "another-host", "boot": None, "pid_ns": None, "pid": os.getpid(),
                                     "pid_start": None})
    trial.set_user_attr(HEARTBEAT_ATTR, time.time() - silent_s)
    study.enqueue_trial(dict(target))  # the next tuner's first proposal
    evaluator = Synthetic()
    result = tune(SPEC, PROBLEM, CPU, evaluator, storage=storage, options=FEW)
    assert (target in evaluator.evaluated) is not respected
    assert result.abandoned == (0 if respected else 1)
    assert result.taken_elsewhere == (1 if respected else 0)
    assert len(evaluator.evaluated) == 3 == len(set(evaluator.evaluated))


class Watching(Synthetic):
    """Reads its own trial's heartbeat in the study before and after a slow evaluation."""

    def __init__(self, storage: str) -> None:
        super().__init__()
        self.storage = storage
        self.beats: list[tuple[float, float]] = []

    def _beat(self) -> float:
        study = optuna.load_study(study_name=study_name(SPEC, PROBLEM, CPU), storage=self.storage)
        (trial,) = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return trial.user_attrs[HEARTBEAT_ATTR]

    def evaluate(self, config, stop_above_ms=None, timeout_s=None):
        first = self._beat()
        time.sleep(0.6)
        self.beats.append((first, self._beat()))
        return super().evaluate(config, stop_above_ms, timeout_s)


def test_the_running_tuner_keeps_its_heartbeat_fresh(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    evaluator = Watching(storage)
    tune(SPEC, PROBLEM, CPU, evaluator, storage=storage,
         options=SearchOptions(trials=2, sampler="random", seed=0, retime_top=0, heartbeat_s=0.1))
    assert len(evaluator.beats) == 2
    assert all(after > before + 0.2 for before, after in evaluator.beats)
