"""The kernel spec contract: what every kernel file in `kernels/` exports.

A `KernelSpec` names a kernel's dimensions, dtypes, problem options, its tunable
parameters with their candidate values, the constraints that reject a config before it
is compiled, its heuristic default, its torch reference and baseline, its input factory,
its FLOP and byte counts and its launcher. The tuner, the runtime, `infertune bench` and
the generic tests use nothing else. docs/ARCHITECTURE.md states the same contract.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .device import DeviceInfo, dtype_unsupported_reason
from .errors import InvalidConfig, InvalidProblem


@dataclass(frozen=True)
class Param:
    """A tunable parameter and its candidate values (the search space along one axis)."""

    name: str
    values: tuple[int, ...]
    help: str = ""


# Parameters that Triton takes as launch options rather than as kernel arguments.
LAUNCH_OPTIONS = ("num_warps", "num_stages")


@dataclass(frozen=True)
class Option:
    """A problem option that is part of the problem, not of the config (bias, causal, quant scheme)."""

    name: str
    choices: tuple[str, ...]
    default: str
    help: str = ""


class Config(Mapping[str, int]):
    """An immutable, hashable assignment of tunable parameters, e.g. BLOCK_M=64,BLOCK_N=128."""

    __slots__ = ("_items", "_hash")

    def __init__(self, values: Mapping[str, int] | None = None, **kwargs: int) -> None:
        merged = dict(values or {}, **kwargs)
        self._items = tuple(sorted((str(k), int(v)) for k, v in merged.items()))
        self._hash = hash(self._items)

    def __getitem__(self, key: str) -> int:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Config):
            return self._items == other._items
        return NotImplemented

    def __repr__(self) -> str:
        return f"Config({self})"

    def __str__(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self._items)

    def replace(self, **kwargs: int) -> Config:
        return Config(dict(self._items), **kwargs)

    def kernel_args(self) -> dict[str, int]:
        """The constexpr arguments of the Triton kernel (everything but launch options)."""
        return {k: v for k, v in self._items if k not in LAUNCH_OPTIONS}

    def launch_options(self) -> dict[str, int]:
        return {k: v for k, v in self._items if k in LAUNCH_OPTIONS}

    @classmethod
    def parse(cls, text: str) -> Config:
        """Parse "BLOCK_M=64,BLOCK_N=128" (spaces allowed). Raises InvalidConfig."""
        values: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or not name or not re.fullmatch(r"-?[0-9]+", value):
                raise InvalidConfig(f"malformed config entry {part!r}; expected NAME=INT[,NAME=INT...]")
            values[name] = int(value)
        return cls(values)


@dataclass(frozen=True)
class Problem:
    """One problem a kernel solves: its shape (in the spec's dimension order), dtype and options."""

    shape: tuple[tuple[str, int], ...]
    dtype: str
    options: tuple[tuple[str, str], ...] = ()

    def __getitem__(self, dim: str) -> int:
        for name, value in self.shape:
            if name == dim:
                return value
        raise KeyError(dim)

    def opt(self, name: str) -> str:
        for key, value in self.options:
            if key == name:
                return value
        raise KeyError(name)

    @property
    def dims(self) -> dict[str, int]:
        return dict(self.shape)

    def shape_text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.shape)


@dataclass(frozen=True)
class Tolerance:
    """Elementwise bound |out - ref| <= atol * rms(ref) + rtol * |ref|.

    atol is relative to the reference's RMS so that one number serves every kernel and
    shape (a matmul output grows like sqrt(K), a normalized output does not).
    """

    rtol: float
    atol: float


Constraint = Callable[[Config, Problem, DeviceInfo], "str | None"]


def _no_requirement(problem: Problem, device: DeviceInfo) -> str | None:
    return None


def _no_problem_check(problem: Problem) -> str | None:
    return None


@dataclass(frozen=True)
class KernelSpec:
    """Everything the rest of infertune may know about one kernel.

    Callables take and return plain values; `inputs` is the kernel's own frozen dataclass
    made by `make_inputs` (or by `inputs_of` from a caller's tensors).
    """

    name: str
    summary: str
    dims: tuple[str, ...]
    dtypes: tuple[str, ...]
    params: tuple[Param, ...]
    constraints: tuple[Constraint, ...]
    heuristic: Callable[[Problem, DeviceInfo], Config]
    make_inputs: Callable[[Problem, torch.device, torch.Generator], Any]
    problem_of: Callable[[Any], Problem]
    reference: Callable[[Any], torch.Tensor]
    launch: Callable[..., torch.Tensor]
    baseline: Callable[[Any], torch.Tensor]
    baseline_name: str
    flops: Callable[[Problem], int]
    bytes_moved: Callable[[Problem], int]
    tolerance: Callable[[Problem], Tolerance]
    example: Mapping[str, int]
    options: tuple[Option, ...] = ()
    check_problem: Callable[[Problem], "str | None"] = _no_problem_check
    requirement: Callable[[Problem, DeviceInfo], "str | None"] = _no_requirement
    notes: str = ""
    # Quantized kernels only: the fp32 output with the operands *before* quantization. The
    # correctness check compares against `reference` (the dequantized operands); the
    # quantization search measures the scheme's error (SQNR) against this one.
    float_reference: "Callable[[Any], torch.Tensor] | None" = None
    # The input fields a caller's `out` may be exactly (an in-place call: every element is
    # read by the program that writes it, before it writes it). Any other overlap of out
    # with an input is refused (kernels/layout.py).
    out_may_alias: tuple[str, ...] = ()
    _param_names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_param_names", tuple(p.name for p in self.params))

    # -- problems -------------------------------------------------------------------
    def problem(self, shape: Mapping[str, int], dtype: str, options: Mapping[str, Any] | None = None) -> Problem:
        """Build and validate a Problem. Raises InvalidProblem with a one-line reason."""
        missing = [d for d in self.dims if d not in shape]
        extra = [d for d in shape if d not in self.dims]
        if missing or extra:
            raise InvalidProblem(
                f"{self.name} takes dimensions {'x'.join(self.dims)}; got {','.join(shape) or 'none'}"
            )
        for dim in self.dims:
            if int(shape[dim]) < 1:
                raise InvalidProblem(f"{self.name}: dimension {dim} must be >= 1, got {shape[dim]}")
        if dtype not in self.dtypes:
            raise InvalidProblem(f"{self.name} supports dtypes {', '.join(self.dtypes)}; got {dtype!r}")
        opts = {o.name: o.default for o in self.options}
        for key, value in (options or {}).items():
            option = next((o for o in self.options if o.name == key), None)
            if option is None:
                known = ", ".join(o.name for o in self.options) or "none"
                raise InvalidProblem(f"{self.name} has no option {key!r} (options: {known})")
            value = _option_text(value)
            if value not in option.choices:
                raise InvalidProblem(f"{self.name} option {key} must be one of {', '.join(option.choices)}; got {value!r}")
            opts[key] = value
        problem = Problem(
            shape=tuple((d, int(shape[d])) for d in self.dims),
            dtype=dtype,
            options=tuple((o.name, opts[o.name]) for o in self.options),
        )
        reason = self.check_problem(problem)
        if reason:
            raise InvalidProblem(f"{self.name}: {reason}")
        return problem

    def unsupported_reason(self, problem: Problem, device: DeviceInfo) -> str | None:
        """Why `device` cannot run this problem (dtype or feature), or None."""
        return dtype_unsupported_reason(problem.dtype, device) or self.requirement(problem, device)

    def shape_key(self, problem: Problem) -> str:
        """Stable text key of a problem: dims in order, dtype, options ("M=16,N=4096,K=4096|bf16|bias=0")."""
        parts = [problem.shape_text(), problem.dtype]
        parts += [f"{k}={v}" for k, v in problem.options]
        return "|".join(parts)

    # -- configs --------------------------------------------------------------------
    @property
    def space_size(self) -> int:
        size = 1
        for p in self.params:
            size *= len(p.values)
        return size

    def reject_reason(self, config: Config, problem: Problem, device: DeviceInfo) -> str | None:
        """Why `config` is invalid for this problem on this device, or None if it may be compiled."""
        unknown = [k for k in config if k not in self._param_names]
        if unknown:
            return f"unknown parameter {unknown[0]} for {self.name} (parameters: {', '.join(self._param_names)})"
        missing = [k for k in self._param_names if k not in config]
        if missing:
            return f"missing parameter {missing[0]}"
        for check in self.constraints:
            reason = check(config, problem, device)
            if reason:
                return reason
        return None

    def complete(self, partial: Mapping[str, int], problem: Problem, device: DeviceInfo) -> Config:
        """Fill the parameters `partial` leaves out from the heuristic default, then validate.

        Raises InvalidConfig with the constraint's reason.
        """
        unknown = [k for k in partial if k not in self._param_names]
        if unknown:
            raise InvalidConfig(f"unknown parameter {unknown[0]} for {self.name} (parameters: {', '.join(self._param_names)})")
        config = Config(dict(self.heuristic(problem, device)), **dict(partial))
        reason = self.reject_reason(config, problem, device)
        if reason:
            raise InvalidConfig(f"config {config} is invalid for {self.shape_key(problem)}: {reason}")
        return config

    def all_configs(self) -> Iterator[Config]:
        names = self._param_names
        for values in itertools.product(*(p.values for p in self.params)):
            yield Config(dict(zip(names, values)))

    def valid_configs(self, problem: Problem, device: DeviceInfo) -> Iterator[Config]:
        """Every config of the space that passes the constraints, in a stable order."""
        return (c for c in self.all_configs() if self.reject_reason(c, problem, device) is None)

    def sample_configs(self, problem: Problem, device: DeviceInfo, count: int, seed: int) -> list[Config]:
        """At least `count` distinct valid configs that, between them, use every candidate value
        of every parameter that some valid config uses (a covering sample), drawn with `seed`."""
        valid = list(self.valid_configs(problem, device))
        rng = random.Random(seed)
        rng.shuffle(valid)
        chosen: list[Config] = []
        for p in self.params:
            for value in p.values:
                if any(c[p.name] == value for c in chosen):
                    continue
                match = next((c for c in valid if c[p.name] == value and c not in chosen), None)
                if match is not None:
                    chosen.append(match)
        for c in valid:
            if len(chosen) >= count:
                break
            if c not in chosen:
                chosen.append(c)
        return chosen


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


_SHAPE_X = re.compile(r"^\s*[0-9]+(\s*x\s*[0-9]+)*\s*$", re.IGNORECASE)


def parse_shape(text: str, dims: tuple[str, ...]) -> dict[str, int]:
    """Parse "16x4096x4096" (dims in order) or "M=16,N=4096,K=4096". Raises InvalidProblem."""
    expected = f"expected {'x'.join(dims)} (e.g. {'x'.join(['16'] * len(dims))}) or {','.join(d + '=16' for d in dims)}"
    if _SHAPE_X.match(text):
        values = [int(v) for v in re.split(r"\s*[xX]\s*", text.strip())]
        if len(values) != len(dims):
            raise InvalidProblem(f"malformed shape {text!r}: {expected}")
        return dict(zip(dims, values))
    out: dict[str, int] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not re.fullmatch(r"[0-9]+", value) or name not in dims or name in out:
            raise InvalidProblem(f"malformed shape {text!r}: {expected}")
        out[name] = int(value)
    if set(out) != set(dims):
        raise InvalidProblem(f"malformed shape {text!r}: {expected}")
    return {d: out[d] for d in dims}
