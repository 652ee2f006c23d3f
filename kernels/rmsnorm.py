"""rmsnorm: y = x * rsqrt(mean(x^2) + eps) * weight (Llama RMSNorm), math in fp32.

x is [M, N] with any strides (a row-strided view is read in place). A program owns
BLOCK_M whole rows; a row wider than BLOCK_N is walked in BLOCK_N chunks twice (sum of
squares, then normalize), so rows of 14336 or 65536 need no 64K-wide tile.
Unlike Hugging Face's LlamaRMSNorm, which rounds x * rstd to the input dtype before
multiplying the weight, the weight is applied in fp32 and the output rounded once.
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
from .spec import Config, KernelSpec, Param, Problem


@triton.jit
def rmsnorm_rows(
    x_ptr, d_ptr, w_ptr, r_ptr, out_ptr,
    M, N, eps,
    stride_xm, stride_xn, stride_dm, stride_dn, stride_w, stride_rm, stride_rn, stride_om, stride_on,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, ONE_TILE: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
):
    """The rows of one program. HAS_RESIDUAL (add_rmsnorm): the rows are s = x + d, rounded
    to r's dtype and stored to r first, as torch's add would; without it d and r are unused."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < M
    rows64 = rows.to(tl.int64)  # rows * stride may pass 2**31 elements
    x_rows = x_ptr + rows64[:, None] * stride_xm
    d_rows = d_ptr + rows64[:, None] * stride_dm
    r_rows = r_ptr + rows64[:, None] * stride_rm
    out_rows = out_ptr + rows64[:, None] * stride_om
    cols = tl.arange(0, BLOCK_N)

    if ONE_TILE:
        # The whole row is in registers: read x once.
        mask = row_mask[:, None] & (cols[None, :] < N)
        x = tl.load(x_rows + cols[None, :] * stride_xn, mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            s = (x + tl.load(d_rows + cols[None, :] * stride_dn, mask=mask, other=0.0).to(tl.float32))
            s = s.to(r_ptr.dtype.element_ty)  # the residual in the activation dtype
            tl.store(r_rows + cols[None, :] * stride_rn, s, mask=mask)
            x = s.to(tl.float32)
        rstd = tl.math.rsqrt(tl.sum(x * x, axis=1) / N + eps)
        w = tl.load(w_ptr + cols * stride_w, mask=cols < N, other=0.0).to(tl.float32)
        y = x * rstd[:, None] * w[None, :]
        tl.store(out_rows + cols[None, :] * stride_on, y.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        # Elementwise partial sums, reduced once at the end (fewer cross-thread reductions).
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for start in range(0, N, BLOCK_N):
            c = start + cols
            mask = row_mask[:, None] & (c[None, :] < N)
            x = tl.load(x_rows + c[None, :] * stride_xn, mask=mask, other=0.0).to(tl.float32)
            if HAS_RESIDUAL:
                s = (x + tl.load(d_rows + c[None, :] * stride_dn, mask=mask, other=0.0).to(tl.float32))
                s = s.to(r_ptr.dtype.element_ty)
                tl.store(r_rows + c[None, :] * stride_rn, s, mask=mask)
                x = s.to(tl.float32)
            acc += x * x
        rstd = tl.math.rsqrt(tl.sum(acc, axis=1) / N + eps)
        if HAS_RESIDUAL:
            # The second pass reads s back: when r is x, x no longer holds the input. The
            # stores above were made by other threads of this program; the barrier makes them
            # visible (bar.sync orders global memory within a CTA).
            tl.debug_barrier()
        for start in range(0, N, BLOCK_N):
            c = start + cols
            mask = row_mask[:, None] & (c[None, :] < N)
            if HAS_RESIDUAL:
                x = tl.load(r_rows + c[None, :] * stride_rn, mask=mask, other=0.0).to(tl.float32)
            else:
                x = tl.load(x_rows + c[None, :] * stride_xn, mask=mask, other=0.0).to(tl.float32)
            w = tl.load(w_ptr + c * stride_w, mask=c < N, other=0.0).to(tl.float32)
            y = x * rstd[:, None] * w[None, :]
            tl.store(out_rows + c[None, :] * stride_on, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rmsnorm_kernel(
    x_ptr, w_ptr, out_ptr,
    M, N, eps,
    stride_xm, stride_xn, stride_w, stride_om, stride_on,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, ONE_TILE: tl.constexpr, USE_GDC: tl.constexpr,
):
    pdl.start(USE_GDC)  # nothing is read before the previous kernel completes
    rmsnorm_rows(x_ptr, x_ptr, w_ptr, x_ptr, out_ptr, M, N, eps, stride_xm, stride_xn, 0, 0, stride_w, 0, 0,
                 stride_om, stride_on, BLOCK_M, BLOCK_N, ONE_TILE, False)


@dataclass(frozen=True)
class RMSNormInputs:
    x: torch.Tensor  # [M, N], any strides
    weight: torch.Tensor  # [N]
    eps: float = 1e-6


def _problem_of(inputs: RMSNormInputs) -> Problem:
    x, w = inputs.x, inputs.weight
    if x.dim() != 2:
        raise InvalidProblem(f"rmsnorm needs x [M, N]; got {tuple(x.shape)}")
    if tuple(w.shape) != (x.shape[1],):
        raise InvalidProblem(f"rmsnorm weight must be [N]={x.shape[1]}; got {tuple(w.shape)}")
    if w.dtype != x.dtype:
        raise InvalidProblem(f"rmsnorm needs x and weight of one dtype; got {x.dtype} and {w.dtype}")
    if not inputs.eps >= 0.0:
        raise InvalidProblem(f"rmsnorm eps must be >= 0; got {inputs.eps}")
    return SPEC.problem({"M": x.shape[0], "N": x.shape[1]}, dtype_name(x.dtype))


def _launch(inputs: RMSNormInputs, config: Config, out: torch.Tensor | None = None) -> torch.Tensor:
    x, w = inputs.x, inputs.weight
    M, N = x.shape
    if out is None:
        out = torch.empty((M, N), device=x.device, dtype=x.dtype)
    rowwise.check_out("rmsnorm", out, (M, N), x)
    grid = (triton.cdiv(M, config["BLOCK_M"]),)
    _rmsnorm_kernel[grid](
        x, w, out, M, N, float(inputs.eps),
        x.stride(0), x.stride(1), w.stride(0), out.stride(0), out.stride(1),
        ONE_TILE=config["BLOCK_N"] >= N,
        **config.kernel_args(), **config.launch_options(), **pdl.launch_kwargs(x),
    )
    return out


def _make_inputs(problem: Problem, device: torch.device, gen: torch.Generator) -> RMSNormInputs:
    M, N = problem["M"], problem["N"]
    dtype = DTYPE_NAMES[problem.dtype]
    x = torch.randn((M, N), device=device, dtype=dtype, generator=gen)
    w = (1.0 + 0.5 * torch.randn((N,), device=device, generator=gen)).to(dtype)
    return RMSNormInputs(x, w)


def _reference(inputs: RMSNormInputs) -> torch.Tensor:
    x = inputs.x.float()
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + inputs.eps) * inputs.weight.float()


def _baseline(inputs: RMSNormInputs) -> torch.Tensor:
    return F.rms_norm(inputs.x, (inputs.x.shape[1],), inputs.weight, inputs.eps)


# Registers per tile element a thread holds (measured: see rowwise.tile_registers_fit);
# the looping form keeps a sum-of-squares tile beside x.
_REGS_PER_ELEMENT = 2.0


def _heuristic(problem: Problem, device: DeviceInfo) -> Config:
    # A row up to 8192 wide is one tile (read once); wider rows loop in 8192 chunks.
    return rowwise.row_heuristic(SPEC, problem, device, max_block_n=8192, column_blocks=False)


def _bytes(problem: Problem) -> int:
    # Compulsory traffic: x read, y written, the weight read once. A looping config reads
    # x a second time, from L2 for all but the largest row blocks.
    M, N = problem["M"], problem["N"]
    return (2 * M * N + N) * C.ELEMENT_BYTES[problem.dtype]


SPEC = KernelSpec(
    name="rmsnorm",
    summary="y = x * rsqrt(mean(x^2) + eps) * weight (Llama RMSNorm); fp32 math, rows in chunks",
    dims=("M", "N"),
    dtypes=("fp32", "fp16", "bf16"),
    params=(rowwise.BLOCK_M, Param("BLOCK_N", rowwise.BLOCK_N.values, "row chunk (>= N: row read once)"),
            rowwise.NUM_WARPS),
    constraints=rowwise.row_constraints(_REGS_PER_ELEMENT),
    heuristic=_heuristic,
    make_inputs=_make_inputs,
    problem_of=_problem_of,
    reference=_reference,
    launch=_launch,
    baseline=_baseline,
    baseline_name="torch.nn.functional.rms_norm",
    # x*x and its sum, then x * rstd * w: 4 per element.
    flops=lambda p: 4 * p["M"] * p["N"],
    bytes_moved=_bytes,
    tolerance=lambda p: tolerance_for(p.dtype),
    out_may_alias=("x",),
    example={"M": 13, "N": 4096},
)


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, *,
            config: Config | dict[str, int] | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """RMSNorm of each row of x with the Triton kernel.

    Args: x [M, N] (any strides); weight [N] in x's dtype; eps added to mean(x^2).
        config: BLOCK_M/BLOCK_N/num_warps (missing ones from the heuristic); None asks the
        active config source. out: optional [M, N] buffer in x's dtype (may be x itself).
    Returns: y [M, N] in x's dtype.
    Raises: InvalidProblem, InvalidConfig, UnsupportedOnDevice.
    """
    return run(SPEC, RMSNormInputs(x, weight, float(eps)), config, out=out)
