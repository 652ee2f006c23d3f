"""Search strategies: one small interface, `make_sampler(name, seed, space)`, that returns an
Optuna sampler proposing configs of a `tuner.space.Space`.

- `tpe` (default): Optuna's TPE, seeded.
- `random`: Optuna's random sampler, seeded.
- `grid`: every valid config exactly once, in an order shuffled by the seed (Optuna's own
  GridSampler walks the full product, invalid configs included).
- `qmc`: a Halton sequence over the parameter axes with a seeded random shift
  (Cranley-Patterson rotation); written here because Optuna's QMCSampler needs scipy and
  samples categorical parameters at random.
- `lfbo`: a classifier of "is this config in the top decile?" fitted on every finished
  trial of the study, failures (compile error, out of resources, timeout, wrong result) and
  early stops as negatives, proposing the unmeasured valid config it scores best
  (tuner/lfbo.py; in the spirit of Helion's LFBO search).

The contract every sampler passes (tests/test_tuner_samplers.py): driven by the search, only
valid configs are evaluated; the same seed gives the same configs; `grid` covers every valid
config exactly once; `grid` and `lfbo` propose only valid configs (no proposal is rejected).
"""

from __future__ import annotations

import abc
import random
from collections.abc import Sequence

import numpy as np
import optuna
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from kernels.spec import Config

from . import outcome as oc
from .lfbo import Lfbo, Observation
from .space import Space

SAMPLERS = ("tpe", "random", "grid", "qmc", "lfbo")

# A trial the search marks with this user attribute was cut short (Ctrl-C) and is not a result.
RETRY_ATTR = "retry"


class UnknownSampler(ValueError):
    """A sampler name that is not one of SAMPLERS."""


def make_sampler(name: str, seed: int, space: Space, skip: frozenset[Config] = frozenset()) -> BaseSampler:
    """The sampler called `name`, seeded with `seed`, for `space`. `skip`: configs the grid
    never proposes (measured already: a resumed grid); only the grid sampler takes it.

    Raises UnknownSampler listing the known names; ValueError for `skip` with another sampler.
    """
    if skip and name != "grid":
        raise ValueError(f"only the grid sampler skips configs; got sampler {name!r}")
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return ValidGridSampler(space, seed, skip)
    if name == "qmc":
        return HaltonSampler(space, seed)
    if name == "lfbo":
        return LfboSampler(space, seed)
    raise UnknownSampler(f"unknown sampler {name!r}; known samplers: {', '.join(SAMPLERS)}")


def is_exhaustive(sampler: BaseSampler) -> bool:
    return isinstance(sampler, ValidGridSampler)


def _config_of_trial(t: FrozenTrial) -> Config | None:
    """The config a trial is about: its params, else what a config sampler or an enqueue
    chose for it before its params were set (another process's trial mid-ask, a queued one)."""
    if t.params:
        return Space.config_of(t.params)
    chosen = t.system_attrs.get(_ConfigSampler._ATTR) or t.system_attrs.get("fixed_params")
    return Space.config_of(chosen) if chosen else None


class _ConfigSampler(BaseSampler):
    """A sampler that picks a whole config per trial in `before_trial` and answers each
    parameter from it (the way Optuna's GridSampler works)."""

    _ATTR = "infertune_config"

    def __init__(self, space: Space, seed: int) -> None:
        self._space = space
        self._seed = seed

    @abc.abstractmethod
    def _choose(self, study: optuna.Study, trial: FrozenTrial) -> Config:
        """The whole config of this trial (each subclass's strategy)."""

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if "fixed_params" in trial.system_attrs:  # an enqueued trial: its params are given
            return
        config = self._choose(study, trial)
        study._storage.set_trial_system_attr(trial._trial_id, self._ATTR, dict(config))

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        config = trial.system_attrs.get(self._ATTR)
        if config is None or param_name not in config:
            return param_distribution.choices[0]
        return config[param_name]


class ValidGridSampler(_ConfigSampler):
    """Each valid config once, in a seeded shuffled order; a config already in a finished
    trial of the study (a resumed study), or in `skip` (measured by an earlier run whose
    recording this one completes), is skipped. ValueError when `skip` leaves nothing."""

    def __init__(self, space: Space, seed: int, skip: frozenset[Config] = frozenset()) -> None:
        super().__init__(space, seed)
        order = [c for c in space.valid_configs if c not in skip]
        if not order:
            raise ValueError(f"the grid has nothing left: all {len(space)} valid configs are skipped")
        random.Random(seed).shuffle(order)
        self._order: Sequence[Config] = order

    def _taken(self, study: optuna.Study) -> set[Config]:
        taken = set()
        for t in study._storage.get_all_trials(study._study_id, deepcopy=False):
            if t.state == TrialState.RUNNING or t.user_attrs.get(RETRY_ATTR) or not t.params:
                continue
            taken.add(Space.config_of(t.params))
        return taken

    def remaining(self, study: optuna.Study) -> list[Config]:
        taken = self._taken(study)
        return [c for c in self._order if c not in taken]

    def _choose(self, study, trial):
        left = self.remaining(study)
        # Exhausted: repeat the first config; the search answers it from the study, and stops.
        return left[0] if left else self._order[0]


_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53)


def _radical_inverse(index: int, base: int) -> float:
    result, f = 0.0, 1.0 / base
    while index > 0:
        result += f * (index % base)
        index //= base
        f /= base
    return result


class HaltonSampler(_ConfigSampler):
    """Quasi-random configs: point `trial.number + 1` of a Halton sequence, shifted by a
    seeded random vector modulo 1, mapped to an index on each parameter axis."""

    def __init__(self, space: Space, seed: int) -> None:
        super().__init__(space, seed)
        if len(space.names) > len(_PRIMES):
            raise ValueError(f"qmc supports at most {len(_PRIMES)} parameters")
        rng = random.Random(seed)
        self._shift = [rng.random() for _ in space.names]

    def _choose(self, study, trial):
        values = {}
        for dim, name in enumerate(self._space.names):
            u = (_radical_inverse(trial.number + 1, _PRIMES[dim]) + self._shift[dim]) % 1.0
            axis = self._space.axes[name]
            values[name] = axis[min(int(u * len(axis)), len(axis) - 1)]
        return Config(values)


_STATUS = {TrialState.COMPLETE: oc.OK, TrialState.PRUNED: oc.EARLY_STOPPED, TrialState.FAIL: oc.FAILED}


class LfboSampler(_ConfigSampler):
    """Learns from every finished trial of the study (tuner/lfbo.py), whoever ran it and in
    whichever invocation: a resumed or shared study starts from all it holds. Not learnt
    from: proposals rejected as invalid (`kind=invalid`: never among the valid configs this
    sampler scores, and a TPE process sharing the study can make hundreds of them), and
    trials marked RETRY_ATTR (interrupted, abandoned, taken elsewhere: not results). A trial
    answered from the study repeats its config's first trial and adds nothing. Configs
    RUNNING or queued are not proposed again."""

    def __init__(self, space: Space, seed: int) -> None:
        super().__init__(space, seed)
        self.lfbo = Lfbo(space.valid_configs, space.axes)

    def observations(self, study: optuna.Study, current: int) -> tuple[list[Observation], set[Config]]:
        """(one Observation per measured config, in trial order; the configs running or queued)."""
        seen: dict[Config, Observation] = {}
        busy: set[Config] = set()
        for t in study._storage.get_all_trials(study._study_id, deepcopy=False):
            if t.number == current:
                continue
            config = _config_of_trial(t)
            if config is None:
                continue
            if not t.state.is_finished():
                busy.add(config)
                continue
            kind = t.user_attrs.get("kind")
            if t.user_attrs.get(RETRY_ATTR) or kind == oc.INVALID or config in seen:
                continue
            status = _STATUS.get(t.state)
            if status is None:
                continue
            ms = t.value if status == oc.OK else None
            seen[config] = Observation(config, status if status != oc.OK or ms is not None else oc.FAILED, ms, kind)
        return list(seen.values()), busy

    def _choose(self, study, trial):
        observations, busy = self.observations(study, trial.number)
        # One stream per (seed, trial number): a resumed study proposes what an uninterrupted one would.
        rng = np.random.default_rng([self._seed, trial.number])
        chosen = self.lfbo.propose(observations, busy, rng)
        # Every valid config measured or running: repeat one; the search answers it from the study.
        return chosen if chosen is not None else self._space.valid_configs[0]
