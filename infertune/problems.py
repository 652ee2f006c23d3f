"""Turn what a user types (a shape, a dtype, options) into a validated Problem."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch

from kernels.device import DeviceInfo, dtype_unsupported_reason
from kernels.errors import UnsupportedOnDevice
from kernels.scheme_names import canonical_scheme
from kernels.spec import KernelSpec, Problem, parse_shape

from .errors import UsageError


def parse_options(texts: list[str]) -> dict[str, str]:
    """["causal=0", "varlen=1,bias=1"] -> {"causal": "0", "varlen": "1", "bias": "1"}."""
    out: dict[str, str] = {}
    for text in texts:
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key.strip()) or not value.strip():
                raise UsageError(f"malformed option {part!r}; expected KEY=VALUE")
            out[key.strip()] = value.strip()
    return out


def given(value: str | None, flag: str) -> str | None:
    """`value` unless it is given but empty (`--dtype ''`): that is a UsageError, not the default."""
    if value is not None and not value.strip():
        raise UsageError(f"{flag} is empty; leave the flag out for the default")
    return value


def given_db(db: str | None) -> str | None:
    """A `--db` the user named must open: a missing, foreign or unreachable database is a
    DatabaseError (exit 2), not a quiet fall back to the heuristic configs that the user would
    take for tuned ones. Left out (None), the default database applies, missing or not."""
    if given(db, "--db") is not None:
        from tuner.database import open_database

        open_database(db, create=False).close()
    return db


def parse_shape_text(spec: KernelSpec, shape: str) -> dict[str, int]:
    """parse_shape, refusing digits other than ASCII 0-9 (int() reads '١٢' as 12)."""
    if not shape.isascii():
        raise UsageError(f"malformed shape {shape!r}: write it in ASCII digits, e.g. {'x'.join(['16'] * len(spec.dims))}")
    return parse_shape(shape, spec.dims)


def check_fits(spec: KernelSpec, problem: Problem, device: DeviceInfo) -> None:
    """Refuse, before allocating, a problem whose buffers alone (the bytes the kernel reads and
    writes) exceed the device's memory. Raises UsageError."""
    need = spec.bytes_moved(problem)
    if device.total_memory and need > device.total_memory:
        raise UsageError(f"{spec.name} {problem.shape_text()} {problem.dtype} needs {_gib(need)} of buffers; "
                         f"{device.label} has {_gib(device.total_memory)}")


@contextlib.contextmanager
def allocation_errors(spec: KernelSpec, problem: Problem, device: DeviceInfo) -> Iterator[None]:
    """Around making a problem's inputs (and its reference): an allocation that fails is a
    UsageError (the shape is too large for this device), not a traceback."""
    try:
        yield
    except torch.OutOfMemoryError as exc:
        raise UsageError(_too_large(spec, problem, device, exc)) from None
    except RuntimeError as exc:
        text = str(exc).lower()
        if "allocate" not in text and "out of memory" not in text:
            raise
        raise UsageError(_too_large(spec, problem, device, exc)) from None
    except (OverflowError, MemoryError) as exc:
        raise UsageError(_too_large(spec, problem, device, exc)) from None


def _too_large(spec: KernelSpec, problem: Problem, device: DeviceInfo, exc: BaseException) -> str:
    reason = " ".join(str(exc).split())[:160]
    return (f"{spec.name} {problem.shape_text()} {problem.dtype}: its buffers cannot be allocated on "
            f"{device.label} ({type(exc).__name__}: {reason})")


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def default_dtype(spec: KernelSpec, device: DeviceInfo) -> str:
    """bf16 where the kernel and device have it (what LLM inference runs), else the first that runs."""
    for dtype in ("bf16", "fp16", "fp32"):
        if dtype in spec.dtypes and dtype_unsupported_reason(dtype, device) is None:
            return dtype
    return spec.dtypes[0]


def problem_from_text(spec: KernelSpec, shape: str, dtype: str | None, options: dict[str, str],
                      device: DeviceInfo) -> Problem:
    """Parse and validate; raises InvalidProblem or UsageError for bad input (an empty dtype,
    non-ASCII digits, buffers larger than the device's memory) and UnsupportedOnDevice for a
    problem this device cannot run."""
    given(dtype, "--dtype")
    if "quant" in options:  # --quant w4g128 / --opt quant=w8: the variants' spellings are aliases
        options = {**options, "quant": canonical_scheme(options["quant"])}
    problem = spec.problem(parse_shape_text(spec, shape), dtype or default_dtype(spec, device), options)
    reason = spec.unsupported_reason(problem, device)
    if reason:
        raise UnsupportedOnDevice(f"{spec.name} with {problem.dtype} is not supported on this device: {reason}")
    check_fits(spec, problem, device)
    return problem
