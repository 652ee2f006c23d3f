"""What the kernels need to know about the device they run on.

`DeviceInfo` is a plain value so that constraint and heuristic functions stay pure:
tests build one for an H100 or an A10 without owning that GPU.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch

# Opt-in shared memory per block, by compute capability, for torch builds that do not
# report it (bytes; from the CUDA programming guide's "technical specifications" table).
_SMEM_BY_CAPABILITY = {
    (7, 0): 96 * 1024,
    (7, 5): 64 * 1024,
    (8, 0): 163 * 1024,
    (8, 6): 99 * 1024,
    (8, 7): 163 * 1024,
    (8, 9): 99 * 1024,
    (9, 0): 227 * 1024,
}

DTYPE_NAMES = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


@dataclass(frozen=True)
class DeviceInfo:
    """The device a kernel is checked, tuned or run on.

    kind: "cuda" or "cpu". On "cpu" Triton kernels run through the interpreter.
    capability: CUDA compute capability, None on the CPU.
    smem_per_block: opt-in shared memory per block in bytes; None where nothing limits it
        (the interpreter).
    """

    kind: str
    name: str
    capability: tuple[int, int] | None
    smem_per_block: int | None
    sm_count: int
    total_memory: int
    interpreter: bool

    @property
    def torch_device(self) -> torch.device:
        return torch.device("cuda", 0) if self.kind == "cuda" else torch.device("cpu")

    @property
    def label(self) -> str:
        if self.kind == "cuda":
            major, minor = self.capability or (0, 0)
            return f"{self.name} (sm_{major}{minor})"
        return f"{self.name} (Triton interpreter)" if self.interpreter else self.name


def interpreter_enabled() -> bool:
    """True when Triton kernels run through the CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.lru_cache(maxsize=1)
def current_device() -> DeviceInfo:
    """The device this process runs kernels on: CUDA device 0 if there is one, else the CPU."""
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        cap = (props.major, props.minor)
        smem = getattr(props, "shared_memory_per_block_optin", 0) or _SMEM_BY_CAPABILITY.get(cap, 48 * 1024)
        return DeviceInfo(
            kind="cuda",
            name=props.name,
            capability=cap,
            smem_per_block=int(smem),
            sm_count=props.multi_processor_count,
            total_memory=props.total_memory,
            interpreter=interpreter_enabled(),
        )
    return DeviceInfo(
        kind="cpu",
        name="cpu",
        capability=None,
        smem_per_block=None,
        sm_count=os.cpu_count() or 1,
        total_memory=_host_memory(),
        interpreter=True,
    )


def _host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def dtype_unsupported_reason(dtype: str, device: DeviceInfo) -> str | None:
    """Why `device` cannot run `dtype` ("fp32", "fp16", "bf16", "fp8"), or None if it can."""
    if device.kind != "cuda":
        if dtype == "fp8":
            return "fp8 e4m3 needs a CUDA GPU of compute capability >= 8.9; this device is the CPU"
        return None
    cap = device.capability or (0, 0)
    if dtype == "bf16" and cap < (8, 0):
        return f"bf16 needs compute capability >= 8.0; {device.name} is {cap[0]}.{cap[1]}"
    if dtype == "fp8" and cap < (8, 9):
        return f"fp8 e4m3 needs compute capability >= 8.9; {device.name} is {cap[0]}.{cap[1]}"
    return None


def dtype_name(dtype: torch.dtype) -> str:
    """"fp32" / "fp16" / "bf16" for a torch dtype; ValueError for anything else."""
    for name, value in DTYPE_NAMES.items():
        if value == dtype:
            return name
    raise ValueError(f"unsupported dtype {dtype} (supported: fp32, fp16, bf16)")
