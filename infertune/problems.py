"""Turn what a user types (a shape, a dtype, options) into a validated Problem."""

from __future__ import annotations

import re

from kernels.device import DeviceInfo, dtype_unsupported_reason
from kernels.errors import UnsupportedOnDevice
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


def default_dtype(spec: KernelSpec, device: DeviceInfo) -> str:
    """bf16 where the kernel and device have it (what LLM inference runs), else the first that runs."""
    for dtype in ("bf16", "fp16", "fp32"):
        if dtype in spec.dtypes and dtype_unsupported_reason(dtype, device) is None:
            return dtype
    return spec.dtypes[0]


def problem_from_text(spec: KernelSpec, shape: str, dtype: str | None, options: dict[str, str],
                      device: DeviceInfo) -> Problem:
    """Parse and validate; raises InvalidProblem for bad input and UnsupportedOnDevice for a
    problem this device cannot run."""
    problem = spec.problem(parse_shape(shape, spec.dims), dtype or default_dtype(spec, device), options)
    reason = spec.unsupported_reason(problem, device)
    if reason:
        raise UnsupportedOnDevice(f"{spec.name} with {problem.dtype} is not supported on this device: {reason}")
    return problem
