"""A kernel spec's search space for one problem on one device, as Optuna parameters.

Each tunable parameter becomes one Optuna categorical parameter. Its choices are the
candidate values that at least one *valid* config uses: a constraint that bounds one
parameter alone (a block larger than the padded problem) shrinks that axis, so a sampler
does not spend most of its proposals on configs that are rejected anyway (matmul at
16x32x32 keeps 144 of 48,000 configs; on the reduced axes one proposal in a few is valid,
on the full product one in 333).

Constraints that bind several parameters at once (shared memory of BLOCK_M x BLOCK_K x
num_stages) are checked per proposal by `reject_reason`, before anything is compiled: the
search tells the study such a trial FAILED with reason "invalid: ..." and does not count it
against the trial budget (tuner/search.py).
"""

from __future__ import annotations

import functools

import optuna

from kernels.device import DeviceInfo
from kernels.spec import Config, KernelSpec, Problem


class Space:
    """The valid configs of `spec` for `problem` on `device`, and their Optuna encoding."""

    def __init__(self, spec: KernelSpec, problem: Problem, device: DeviceInfo) -> None:
        self.spec = spec
        self.problem = problem
        self.device = device

    @functools.cached_property
    def valid_configs(self) -> tuple[Config, ...]:
        """Every config that passes the constraints, in the spec's stable order."""
        return tuple(self.spec.valid_configs(self.problem, self.device))

    @functools.cached_property
    def axes(self) -> dict[str, tuple[int, ...]]:
        """Per parameter, the candidate values some valid config uses (spec order kept)."""
        used = {p.name: {c[p.name] for c in self.valid_configs} for p in self.spec.params}
        return {p.name: tuple(v for v in p.values if v in used[p.name]) for p in self.spec.params}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.axes)

    def distributions(self) -> dict[str, optuna.distributions.CategoricalDistribution]:
        return {name: optuna.distributions.CategoricalDistribution(values) for name, values in self.axes.items()}

    def suggest(self, trial: optuna.trial.BaseTrial) -> Config:
        """Ask `trial` for one value per parameter; the config may still break a joint constraint."""
        return Config({name: trial.suggest_categorical(name, values) for name, values in self.axes.items()})

    def reject_reason(self, config: Config) -> str | None:
        """Why `config` may not be compiled for this problem and device, or None."""
        return self.spec.reject_reason(config, self.problem, self.device)

    @staticmethod
    def config_of(params: dict) -> Config:
        """The config a finished trial's params describe."""
        return Config({k: int(v) for k, v in params.items()})

    def __len__(self) -> int:
        return len(self.valid_configs)
