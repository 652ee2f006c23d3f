"""swiglu: out = silu(a) * b (the gated MLP of Llama/Mistral/Qwen), math in fp32.

a (gate) and b (up) are [M, N] with any strides, so they may be the two halves of one
fused gate_up projection [M, 2N] (the input factory builds exactly that layout).
Programs tile [BLOCK_M, BLOCK_N] over a 2-D grid; nothing is reduced, so a long row is
split across programs instead of looped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from . import constraints as C
from . import pdl, rowwise
from .accuracy import tolerance_for
from .device import DTYPE_NAMES, DeviceInfo, dtype_name
from .errors import InvalidProblem
from .launching import run
from .rowwise import stable_sigmoid
from .spec import Config, KernelSpec, Problem


@triton.jit
def _swiglu_kernel(
    a_ptr, b_ptr, out_ptr,
    M, N,
    stride_am, stride_an, stride_bm, stride_bn, stride_om, stride_on,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, USE_GDC: tl.constexpr,
):
    pdl.start(USE_GDC)  # nothing is read before the previous kernel completes
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rows < M)[:, None] & (cols < N)[None, :]
    rows64 = rows.to(tl.int64)[:, None]  # rows * stride may pass 2**31 elements
    a = tl.load(a_ptr + rows64 * stride_am + cols[None, :] * stride_an, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + rows64 * stride_bm + cols[None, :] * stride_bn, mask=mask, other=0.0).to(tl.float32)
    y = a * stable_sigmoid(a) * b
    tl.store(out_ptr + rows64 * stride_om + cols[None, :] * stride_on, y.to(out_ptr.dtype.element_ty), mask=mask)


@dataclass(frozen=True)
class SwiGLUInputs:
    a: torch.Tensor  # gate [M, N], any strides
    b: torch.Tensor  # up [M, N], any strides


def _problem_of(inputs: SwiGLUInputs) -> Problem:
    a, b = inputs.a, inputs.b
    if a.dim() != 2 or tuple(a.shape) != tuple(b.shape):
        raise InvalidProblem(f"swiglu needs a and b of one shape [M, N]; got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise InvalidProblem(f"swiglu needs a and b of one dtype; got {a.dtype} and {b.dtype}")
    return SPEC.problem({"M": a.shape[0], "N": a.shape[1]}, dtype_name(a.dtype))


def _launch(inputs: SwiGLUInputs, config: Config, out: torch.Tensor | None = None) -> torch.Tensor:
    a, b = inputs.a, inputs.b
    M, N = a.shape
    if out is None:
        out = torch.empty((M, N), device=a.device, dtype=a.dtype)
    rowwise.check_out("swiglu", out, (M, N), a)
    grid = (triton.cdiv(M, config["BLOCK_M"]), triton.cdiv(N, config["BLOCK_N"]))
    _swiglu_kernel[grid](
        a, b, out, M, N,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), out.stride(0), out.stride(1),
        **config.kernel_args(), **config.launch_options(), **pdl.launch_kwargs(a),
    )
    return out


def _make_inputs(problem: Problem, device: torch.device, gen: torch.Generator) -> SwiGLUInputs:
    M, N = problem["M"], problem["N"]
    dtype = DTYPE_NAMES[problem.dtype]
    # The fused gate_up projection's output [M, 2N]; a and b are its halves (row stride 2N).
    gate_up = (2.0 * torch.randn((M, 2 * N), device=device, generator=gen)).to(dtype)
    return SwiGLUInputs(gate_up[:, :N], gate_up[:, N:])


def _reference(inputs: SwiGLUInputs) -> torch.Tensor:
    a = inputs.a.float()
    return a * torch.sigmoid(a) * inputs.b.float()


def _baseline(inputs: SwiGLUInputs) -> torch.Tensor:
    return F.silu(inputs.a) * inputs.b


# Registers per tile element a thread holds (measured: see rowwise.tile_registers_fit).
_REGS_PER_ELEMENT = 1.5


def _heuristic(problem: Problem, device: DeviceInfo) -> Config:
    # GPU: 1024-wide column blocks (LLM intermediate sizes such as 14336 = 14 x 1024 and
    # 11008 = 10.75 x 1024 leave little tail) and rows packed up to a 4096 tile.
    max_block_n = 1024 if device.kind == "cuda" else 8192
    return rowwise.row_heuristic(SPEC, problem, device, max_block_n=max_block_n, column_blocks=True)


SPEC = KernelSpec(
    name="swiglu",
    summary="out = silu(a) * b (gated MLP); a, b may be halves of a fused gate_up projection",
    dims=("M", "N"),
    dtypes=("fp32", "fp16", "bf16"),
    params=(rowwise.BLOCK_M, rowwise.BLOCK_N, rowwise.NUM_WARPS),
    constraints=rowwise.row_constraints(_REGS_PER_ELEMENT),
    heuristic=_heuristic,
    make_inputs=_make_inputs,
    problem_of=_problem_of,
    reference=_reference,
    launch=_launch,
    baseline=_baseline,
    baseline_name="F.silu(a) * b",
    # sigmoid = exp, add, divide (the exp counted as one); times a; times b: 5 per element.
    flops=lambda p: 5 * p["M"] * p["N"],
    # a and b read, out written.
    bytes_moved=lambda p: 3 * p["M"] * p["N"] * C.ELEMENT_BYTES[p.dtype],
    tolerance=lambda p: tolerance_for(p.dtype),
    out_may_alias=("a", "b"),
    example={"M": 13, "N": 14336},
)


def swiglu(a: torch.Tensor, b: torch.Tensor, *, config: Config | dict[str, int] | None = None,
           out: torch.Tensor | None = None) -> torch.Tensor:
    """silu(a) * b with the Triton kernel.

    Args: a (gate) and b (up), [M, N] of one dtype, any strides (e.g. the halves
        gate_up[:, :N] and gate_up[:, N:] of a fused projection). config: BLOCK_M/BLOCK_N/
        num_warps (missing ones from the heuristic); None asks the active config source.
        out: optional [M, N] buffer in a's dtype (may be a or b).
    Returns: out [M, N] in a's dtype.
    Raises: InvalidProblem, InvalidConfig, UnsupportedOnDevice.
    """
    return run(SPEC, SwiGLUInputs(a, b), config, out=out)
