"""What a stored study says beyond this process: the configs measured (by any process, in
any invocation), the configs RUNNING now, and the RUNNING trials of dead tuners, which are
failed (`kind=abandoned`, retry) and their configs enqueued again (owners: tuner/owner.py)."""

from __future__ import annotations

import bisect
import time

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from kernels.spec import Config

from . import outcome as oc
from .owner import Owner, abandoned_reason
from .samplers import RETRY_ATTR
from .space import Space

SOURCE = "source"      # "run": measured by a worker; "study": answered from an earlier trial
RUN_INDEX = "run_index"


def is_run(t: optuna.trial.FrozenTrial) -> bool:
    """Whether `t` is a config a worker ran (not an answer from the study, not a retry)."""
    return t.state.is_finished() and t.user_attrs.get(SOURCE) == "run" and not t.user_attrs.get(RETRY_ATTR)


def measured_trials(study: optuna.Study) -> dict[Config, optuna.trial.FrozenTrial]:
    """The configs a worker ran in `study` (any invocation), each with its first trial."""
    found: dict[Config, optuna.trial.FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False):
        if is_run(t):
            found.setdefault(Space.config_of(t.params), t)
    return found


class SharedView:
    """What the study says beyond this process, read incrementally: `refresh` folds the
    trials finished since the last look into `measured`, lists the configs RUNNING now, and
    fails the RUNNING trials of dead owners (tuner/owner.py), enqueueing their configs again."""

    def __init__(self, study: optuna.Study, measured: dict[Config, optuna.trial.FrozenTrial], space: Space,
                 me: Owner, *, heartbeat_stale_s: float, running_stale_s: float) -> None:
        self._study = study
        self._measured = measured
        self._space = space
        self._me = me
        self._heartbeat_stale_s = heartbeat_stale_s
        self._running_stale_s = running_stale_s
        self._settled = 0  # every trial numbered below this is finished and folded in
        self.running: dict[Config, set[int]] = {}  # config -> numbers of its RUNNING trials
        self.abandoned = 0  # trials of dead owners this view failed

    def refresh(self) -> None:
        # Optuna's RDB storage is cached: this reads only the trials newer than the last
        # finished one it saw, plus the ones it saw unfinished.
        trials = self._study.get_trials(deepcopy=False)
        start = bisect.bisect_left(trials, self._settled, key=lambda t: t.number)
        now = time.time()
        running: dict[Config, set[int]] = {}
        settled = True
        for t in trials[start:]:
            if t.state.is_finished():
                if is_run(t):
                    self._measured.setdefault(Space.config_of(t.params), t)
                if settled:
                    self._settled = t.number + 1
                continue
            settled = False
            if t.state != TrialState.RUNNING or not t.params:
                continue
            why = abandoned_reason(t, self._me, now=now, heartbeat_stale_s=self._heartbeat_stale_s,
                                   running_stale_s=self._running_stale_s)
            if why is None:
                running.setdefault(Space.config_of(t.params), set()).add(t.number)
            else:
                self._abandon(t, why)
        self.running = running

    def _abandon(self, t: optuna.trial.FrozenTrial, why: str) -> None:
        """Fail the RUNNING trial `t` of a dead owner (retry: not a result) and enqueue its
        config again. Of several processes doing this at once one wins; the others skip."""
        storage = self._study._storage  # no public call annotates another process's trial
        try:
            storage.set_trial_user_attr(t._trial_id, RETRY_ATTR, True)
            storage.set_trial_user_attr(t._trial_id, "kind", oc.ABANDONED)
            storage.set_trial_user_attr(t._trial_id, "reason", f"abandoned: {why}")
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            return  # told meanwhile: by its owner, or by another process that found it first
        self.abandoned += 1
        config = Space.config_of(t.params)
        if config not in self._measured and self._space.reject_reason(config) is None:
            self._study.enqueue_trial(dict(config))

    def taken(self, config: Config, number: int | None = None) -> bool:
        """Whether a trial other than `number` is running `config` now."""
        return bool(self.running.get(config, set()) - {number})
