"""The path every public kernel function takes: check, resolve the config, launch."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from ._nvtx import nvtx_range
from .config_source import get_config_source
from .device import DeviceInfo, current_device, interpreter_enabled
from .errors import InvalidProblem, UnsupportedOnDevice
from .layout import check_out_disjoint
from .spec import Config, KernelSpec


def needs_dot_upcast(dtype: torch.dtype) -> bool:
    """True where tl.dot must see fp32 operands: the Triton interpreter (3.9) returns wrong
    values for tl.dot on bf16 operands (fp16 and fp32 are right). On a GPU never."""
    return dtype == torch.bfloat16 and interpreter_enabled()


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # dataclasses.fields() per call costs microseconds


def named_tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(field path, tensor) for every tensor in a kernel's inputs dataclass, nested
    dataclasses (Int8Weight, Int4Weight, Fp8Tensor) included."""
    names = _FIELD_NAMES.get(type(obj))
    if names is None:
        names = _FIELD_NAMES[type(obj)] = tuple(f.name for f in dataclasses.fields(obj))
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, torch.Tensor):
            yield prefix + name, value
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from named_tensors(value, f"{prefix}{name}.")


def check_inputs_on(spec: KernelSpec, device: DeviceInfo, tensors: list[tuple[str, torch.Tensor]]) -> None:
    """Every (name, tensor) of a launch on the device the kernels run on; else InvalidProblem
    naming the first that is not (Triton would fail with a traceback, or read host memory as
    device memory)."""
    want_cuda = device.kind == "cuda"
    for name, t in tensors:
        if t.is_cuda != want_cuda or not (want_cuda or t.is_cpu):
            want = device.torch_device.type
            raise InvalidProblem(f"{spec.name}: {name} is on {t.device.type} but kernels run on {want} ({device.label})")


def run(spec: KernelSpec, inputs: Any, config: Config | Mapping[str, int] | None, out: torch.Tensor | None = None) -> torch.Tensor:
    """Launch `spec` on `inputs`: with `config` completed and validated, or, given none, with
    the active config source's answer. Raises UnsupportedOnDevice / InvalidConfig / InvalidProblem."""
    device = current_device()
    problem = spec.problem_of(inputs)
    tensors = list(named_tensors(inputs))  # once per launch: both checks below walk it
    check_inputs_on(spec, device, tensors if out is None else [*tensors, ("out", out)])
    if out is not None:
        check_out_disjoint(spec.name, out, tensors, spec.out_may_alias)
    reason = spec.unsupported_reason(problem, device)
    if reason:
        raise UnsupportedOnDevice(f"{spec.name} is not supported on this device: {reason}")
    if config is None:
        chosen = get_config_source().resolve(spec, problem, device).config
    else:
        chosen = spec.complete(config, problem, device)
    with nvtx_range(spec.name, "kernel", chosen):  # "<kernel> <config>"; a no-op without a profiler
        return spec.launch(inputs, chosen, out=out)
