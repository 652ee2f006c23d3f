"""add_rmsnorm: s = x + delta (rounded to x's dtype and stored), y = rmsnorm(s) * weight.

A decoder layer adds each block's output to the residual stream and normalizes the sum
for the next block: `x = x + attn(...)`, then `rmsnorm(x)`. Run as two launches, the add
writes s and the norm reads it back; at decode (M = batch, N = 4096 for Llama-3-8B) each
is a few microseconds of launch and tail for 16 KB of data, twice per layer. Here one
program reads x and delta once, writes s (the new residual) and y.

The sum is rounded to the activation dtype before it is normalized, exactly as the two
launches (torch's add, then rmsnorm) compute it, so the fused path is bit-for-bit the
unfused one in s and within rmsnorm's own rounding in y. `residual_out` may be x itself
(the runtime updates the residual stream in place): every element of x is read by the
program that overwrites it, before it does. Rows wider than BLOCK_N are walked twice;
the second pass reads s back from residual_out (after a barrier: x may be gone). The
program body is rmsnorm's (`rmsnorm_rows`, with HAS_RESIDUAL).
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
from .layout import check_out_disjoint
from .rmsnorm import rmsnorm_rows
from .spec import Config, KernelSpec, Param, Problem


@triton.jit
def _add_rmsnorm_kernel(
    x_ptr, d_ptr, w_ptr, r_ptr, out_ptr,
    M, N, eps,
    stride_xm, stride_xn, stride_dm, stride_dn, stride_w, stride_rm, stride_rn, stride_om, stride_on,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, ONE_TILE: tl.constexpr, USE_GDC: tl.constexpr,
):
    pdl.start(USE_GDC)  # nothing is read before the previous kernel completes
    rmsnorm_rows(x_ptr, d_ptr, w_ptr, r_ptr, out_ptr, M, N, eps, stride_xm, stride_xn, stride_dm, stride_dn,
                 stride_w, stride_rm, stride_rn, stride_om, stride_on, BLOCK_M, BLOCK_N, ONE_TILE, True)


@dataclass(frozen=True)
class AddRMSNormInputs:
    x: torch.Tensor  # [M, N], any strides: the residual stream
    delta: torch.Tensor  # [M, N], any strides: what a block adds to it
    weight: torch.Tensor  # [N]
    residual_out: torch.Tensor  # [M, N]: receives x + delta (may be x itself)
    eps: float = 1e-6


def _problem_of(inputs: AddRMSNormInputs) -> Problem:
    x, d, w, r = inputs.x, inputs.delta, inputs.weight, inputs.residual_out
    if x.dim() != 2:
        raise InvalidProblem(f"add_rmsnorm needs x [M, N]; got {tuple(x.shape)}")
    shape = tuple(x.shape)
    if tuple(d.shape) != shape:
        raise InvalidProblem(f"add_rmsnorm delta must be x's shape {list(shape)}; got {list(d.shape)}")
    if tuple(r.shape) != shape:
        raise InvalidProblem(f"add_rmsnorm residual_out must be x's shape {list(shape)}; got {list(r.shape)}")
    if tuple(w.shape) != (x.shape[1],):
        raise InvalidProblem(f"add_rmsnorm weight must be [N]={x.shape[1]}; got {tuple(w.shape)}")
    if not (d.dtype == w.dtype == r.dtype == x.dtype):
        raise InvalidProblem(f"add_rmsnorm needs x, delta, weight and residual_out of one dtype; got {x.dtype}, "
                             f"{d.dtype}, {w.dtype} and {r.dtype}")
    if not inputs.eps >= 0.0:
        raise InvalidProblem(f"add_rmsnorm eps must be >= 0; got {inputs.eps}")
    return SPEC.problem({"M": x.shape[0], "N": x.shape[1]}, dtype_name(x.dtype))


def _launch(inputs: AddRMSNormInputs, config: Config, out: torch.Tensor | None = None) -> torch.Tensor:
    x, d, w, r = inputs.x, inputs.delta, inputs.weight, inputs.residual_out
    M, N = x.shape
    # residual_out is a second output: exactly x, or apart from every input (a partial
    # overlap would have programs read what others already wrote).
    check_out_disjoint("add_rmsnorm residual_out", r, [("delta", d), ("weight", w), ("x", x)], ("x",))
    if out is None:
        out = torch.empty((M, N), device=x.device, dtype=x.dtype)
    rowwise.check_out("add_rmsnorm", out, (M, N), x)
    grid = (triton.cdiv(M, config["BLOCK_M"]),)
    _add_rmsnorm_kernel[grid](
        x, d, w, r, out, M, N, float(inputs.eps),
        x.stride(0), x.stride(1), d.stride(0), d.stride(1), w.stride(0), r.stride(0), r.stride(1),
        out.stride(0), out.stride(1),
        ONE_TILE=config["BLOCK_N"] >= N,
        **config.kernel_args(), **config.launch_options(), **pdl.launch_kwargs(x),
    )
    return out


def _make_inputs(problem: Problem, device: torch.device, gen: torch.Generator) -> AddRMSNormInputs:
    M, N = problem["M"], problem["N"]
    dtype = DTYPE_NAMES[problem.dtype]
    x = torch.randn((M, N), device=device, dtype=dtype, generator=gen)
    d = torch.randn((M, N), device=device, dtype=dtype, generator=gen)
    w = (1.0 + 0.5 * torch.randn((N,), device=device, generator=gen)).to(dtype)
    return AddRMSNormInputs(x, d, w, torch.empty((M, N), device=device, dtype=dtype))


def residual_reference(inputs: AddRMSNormInputs) -> torch.Tensor:
    """x + delta as torch adds it in the activation dtype (fp32 math, one rounding)."""
    return (inputs.x.float() + inputs.delta.float()).to(inputs.x.dtype)


def _reference(inputs: AddRMSNormInputs) -> torch.Tensor:
    s = residual_reference(inputs).float()
    return s * torch.rsqrt(s.pow(2).mean(dim=1, keepdim=True) + inputs.eps) * inputs.weight.float()


def _baseline(inputs: AddRMSNormInputs) -> torch.Tensor:
    # The two launches this replaces: torch's add into the residual, then torch's rms_norm.
    s = torch.add(inputs.x, inputs.delta, out=inputs.residual_out)
    return F.rms_norm(s, (s.shape[1],), inputs.weight, inputs.eps)


# Registers per tile element a thread holds: x and delta side by side until they are
# added (rmsnorm holds one tile and takes 2; see rowwise.tile_registers_fit).
_REGS_PER_ELEMENT = 2.5


def _heuristic(problem: Problem, device: DeviceInfo) -> Config:
    # As rmsnorm: a row up to 8192 wide is one tile; wider rows loop in 8192 chunks.
    return rowwise.row_heuristic(SPEC, problem, device, max_block_n=8192, column_blocks=False)


def _bytes(problem: Problem) -> int:
    # Compulsory traffic: x and delta read, s and y written, the weight read once. A
    # looping config reads s back a second time (from L2 for all but the largest blocks).
    M, N = problem["M"], problem["N"]
    return (4 * M * N + N) * C.ELEMENT_BYTES[problem.dtype]


SPEC = KernelSpec(
    name="add_rmsnorm",
    summary="s = x + delta (the residual, stored), y = rmsnorm(s) * weight: the residual add fused into the norm",
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
    baseline_name="torch add + torch.nn.functional.rms_norm",
    # the add, x*x and its sum, then s * rstd * w: 5 per element.
    flops=lambda p: 5 * p["M"] * p["N"],
    bytes_moved=_bytes,
    tolerance=lambda p: tolerance_for(p.dtype),
    example={"M": 13, "N": 4096},
)


def add_rmsnorm(x: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, *,
                residual_out: torch.Tensor | None = None, config: Config | dict[str, int] | None = None,
                out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual add and the RMSNorm after it, in one Triton launch.

    Args: x [M, N] (any strides), the residual stream; delta [M, N] (any strides), added
        to it; weight [N] in x's dtype; eps added to mean(s^2).
        residual_out: [M, N] buffer in x's dtype for s = x + delta; pass x itself to update
        the residual in place; None allocates one. config: BLOCK_M/BLOCK_N/num_warps
        (missing ones from the heuristic); None asks the active config source.
        out: optional [M, N] buffer for y.
    Returns: (y, s): the normalized rows and the new residual, both in x's dtype.
    Raises: InvalidProblem, InvalidConfig, UnsupportedOnDevice.
    """
    if residual_out is None:
        residual_out = torch.empty(tuple(x.shape), dtype=x.dtype, device=x.device)
    y = run(SPEC, AddRMSNormInputs(x, delta, weight, residual_out, float(eps)), config, out=out)
    return y, residual_out
