"""Programmatic dependent launch (PDL, Hopper and later): a kernel may start while the one
before it in the stream finishes.

Without PDL a kernel's programs start only after the previous kernel has drained and
flushed its writes, and then pay their own launch and set-up, a gap between every two
kernels (not measured here). A Llama-3-8B decode step launches 9 kernels a layer, about
290 a step, where the step takes ~3.8 ms at the bandwidth roofline; the first H200 run's
bf16 decode took 5.2 ms (73% of it).

With INFERTUNE_PDL=1, the kernels of the decode path are launched with the launch
attribute (`launch_pdl=True`) and take USE_GDC=True:
- `wait_for_producer` (PTX griddepcontrol.wait), first thing in the kernel, blocks until
  the previous kernel has completed and its writes are visible. Nothing is read or
  written before it, so a kernel that starts early never sees a partial result and never
  overwrites what the previous one still reads.
- `release_dependents` (griddepcontrol.launch_dependents) lets the next PDL kernel's
  programs be scheduled before this one exits: matmuls call it after their K loop (so a
  multi-wave grid releases the next kernel only once its last wave is in its epilogue),
  the others at once, after the wait (`start`).
A kernel launched without the attribute (torch's, or ours with PDL off) waits as always,
so mixing is safe. Off by default: not yet measured on a GPU (the kit's runtime step runs
the bf16 decode both ways). Never under the interpreter, and only on compute capability 9+.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

from .device import interpreter_enabled
from .errors import InvalidProblem

PDL_ENV = "INFERTUNE_PDL"


def wanted() -> bool:
    """INFERTUNE_PDL: "0" (default) or "1"; any other value is refused."""
    value = os.environ.get(PDL_ENV, "0").strip() or "0"
    if value not in ("0", "1"):
        raise InvalidProblem(f"{PDL_ENV} must be 0 or 1; got {value!r}")
    return value == "1"


@functools.lru_cache(maxsize=16)
def supported(device: torch.device) -> bool:
    """Whether `device` runs PDL: a CUDA device of compute capability 9.0 or later."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 9


def launch_kwargs(like: torch.Tensor) -> dict:
    """Keywords for a launch on `like`'s device: USE_GDC (the kernel's constexpr) and, when
    PDL is on, Triton's launch_pdl option. The two always go together."""
    if wanted() and not interpreter_enabled() and supported(like.device):
        return {"USE_GDC": True, "launch_pdl": True}
    return {"USE_GDC": False}


@triton.jit
def wait_for_producer(USE_GDC: tl.constexpr):
    """Block until the previous kernel in the stream has completed (a no-op without PDL)."""
    if USE_GDC:
        tl.extra.cuda.gdc_wait()


@triton.jit
def start(USE_GDC: tl.constexpr):
    """A kernel that releases the next at once: wait for the previous kernel, then release.
    In this order a grid releases its dependents only once its producer has completed, so
    at most one grid waits on the one running (no chain of waiting grids holds the SMs)."""
    wait_for_producer(USE_GDC)
    release_dependents(USE_GDC)


@triton.jit
def release_dependents(USE_GDC: tl.constexpr):
    """Let the next PDL kernel's programs start; they still wait for this kernel to complete."""
    if USE_GDC:
        tl.extra.cuda.gdc_launch_dependents()
