"""layernorm: y = (x - mean) / sqrt(var + eps) * weight + bias over each row, math in fp32.

x is [M, N] with any strides. A program owns BLOCK_M whole rows. A row that fits one
BLOCK_N tile is read once and its variance taken as mean((x - mean)^2) in registers. A
wider row is walked twice: the first pass merges per-chunk (count, mean, M2) with Chan's
parallel update, so no step forms E[x^2] - E[x]^2 (which loses every digit of the variance
when |mean| >> std: at x ~ 1000 +- 1 in fp32 the two terms agree to 6 digits); the second
pass normalizes. The BERT family needs it (all-MiniLM-L6-v2 uses eps 1e-12).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from . import constraints as C
from . import rowwise
from .accuracy import tolerance_for
from .device import DTYPE_NAMES, DeviceInfo, dtype_name
from .errors import InvalidProblem
from .launching import run
from .spec import Config, KernelSpec, Param, Problem


@triton.jit
def _layernorm_kernel(
    x_ptr, w_ptr, b_ptr, out_ptr,
    M, N, eps,
    stride_xm, stride_xn, stride_w, stride_b, stride_om, stride_on,
    HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, ONE_TILE: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < M
    rows64 = rows.to(tl.int64)  # rows * stride may pass 2**31 elements
    x_rows = x_ptr + rows64[:, None] * stride_xm
    out_rows = out_ptr + rows64[:, None] * stride_om
    cols = tl.arange(0, BLOCK_N)

    if ONE_TILE:
        mask = row_mask[:, None] & (cols[None, :] < N)
        x = tl.load(x_rows + cols[None, :] * stride_xn, mask=mask, other=0.0).to(tl.float32)
        mean = tl.sum(x, axis=1) / N
        xc = tl.where(mask, x - mean[:, None], 0.0)
        rstd = tl.math.rsqrt(tl.sum(xc * xc, axis=1) / N + eps)
        w = tl.load(w_ptr + cols * stride_w, mask=cols < N, other=0.0).to(tl.float32)
        y = xc * rstd[:, None] * w[None, :]
        if HAS_BIAS:
            y += tl.load(b_ptr + cols * stride_b, mask=cols < N, other=0.0).to(tl.float32)[None, :]
        tl.store(out_rows + cols[None, :] * stride_on, y.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        # Chan et al.'s pairwise update: merge chunk b (n_b, mean_b, m2_b) into the running
        # (n_a, mean, m2); every term is a sum of squares of centred values.
        mean = tl.zeros((BLOCK_M,), dtype=tl.float32)
        m2 = tl.zeros((BLOCK_M,), dtype=tl.float32)
        n_a = 0.0
        for start in range(0, N, BLOCK_N):
            c = start + cols
            col_mask = c < N
            mask = row_mask[:, None] & col_mask[None, :]
            x = tl.load(x_rows + c[None, :] * stride_xn, mask=mask, other=0.0).to(tl.float32)
            n_b = tl.sum(col_mask.to(tl.float32), axis=0)
            mean_b = tl.sum(x, axis=1) / n_b
            xc = tl.where(mask, x - mean_b[:, None], 0.0)
            m2_b = tl.sum(xc * xc, axis=1)
            n = n_a + n_b
            delta = mean_b - mean
            mean += delta * (n_b / n)
            m2 += m2_b + delta * delta * (n_a * n_b / n)
            n_a = n
        rstd = tl.math.rsqrt(m2 / N + eps)
        for start in range(0, N, BLOCK_N):
            c = start + cols
            col_mask = c < N
            mask = row_mask[:, None] & col_mask[None, :]
            x = tl.load(x_rows + c[None, :] * stride_xn, mask=mask, other=0.0).to(tl.float32)
            w = tl.load(w_ptr + c * stride_w, mask=col_mask, other=0.0).to(tl.float32)
            y = (x - mean[:, None]) * rstd[:, None] * w[None, :]
            if HAS_BIAS:
                y += tl.load(b_ptr + c * stride_b, mask=col_mask, other=0.0).to(tl.float32)[None, :]
            tl.store(out_rows + c[None, :] * stride_on, y.to(out_ptr.dtype.element_ty), mask=mask)


@dataclass(frozen=True)
class LayerNormInputs:
    x: torch.Tensor  # [M, N], any strides
    weight: torch.Tensor  # [N]
    bias: torch.Tensor | None  # [N] or None
    eps: float = 1e-5


def _problem_of(inputs: LayerNormInputs) -> Problem:
    x, w, b = inputs.x, inputs.weight, inputs.bias
    if x.dim() != 2:
        raise InvalidProblem(f"layernorm needs x [M, N]; got {tuple(x.shape)}")
    for name, t in (("weight", w), ("bias", b)):
        if t is None:
            continue
        if tuple(t.shape) != (x.shape[1],):
            raise InvalidProblem(f"layernorm {name} must be [N]={x.shape[1]}; got {tuple(t.shape)}")
        if t.dtype != x.dtype:
            raise InvalidProblem(f"layernorm needs x and {name} of one dtype; got {x.dtype} and {t.dtype}")
    if not inputs.eps >= 0.0:
        raise InvalidProblem(f"layernorm eps must be >= 0; got {inputs.eps}")
    return SPEC.problem({"M": x.shape[0], "N": x.shape[1]}, dtype_name(x.dtype))


def _launch(inputs: LayerNormInputs, config: Config, out: torch.Tensor | None = None) -> torch.Tensor:
    x, w, b = inputs.x, inputs.weight, inputs.bias
    M, N = x.shape
    if out is None:
        out = torch.empty((M, N), device=x.device, dtype=x.dtype)
    rowwise.check_out("layernorm", out, (M, N), x)
    grid = (triton.cdiv(M, config["BLOCK_M"]),)
    _layernorm_kernel[grid](
        x, w, b if b is not None else w, out, M, N, float(inputs.eps),
        x.stride(0), x.stride(1), w.stride(0), b.stride(0) if b is not None else 0,
        out.stride(0), out.stride(1),
        HAS_BIAS=b is not None, ONE_TILE=config["BLOCK_N"] >= N,
        **config.kernel_args(), **config.launch_options(),
    )
    return out


def _make_inputs(problem: Problem, device: torch.device, gen: torch.Generator) -> LayerNormInputs:
    M, N = problem["M"], problem["N"]
    dtype = DTYPE_NAMES[problem.dtype]
    # A per-row offset and scale, as residual streams have, so the mean is not ~0.
    x = (torch.randn((M, N), device=device, generator=gen) * (1.0 + torch.rand((M, 1), device=device, generator=gen))
         + 3.0 * torch.randn((M, 1), device=device, generator=gen)).to(dtype)
    w = (1.0 + 0.5 * torch.randn((N,), device=device, generator=gen)).to(dtype)
    b = torch.randn((N,), device=device, generator=gen).to(dtype)
    return LayerNormInputs(x, w, b)


def _reference(inputs: LayerNormInputs) -> torch.Tensor:
    b = inputs.bias.float() if inputs.bias is not None else None
    return F.layer_norm(inputs.x.float(), (inputs.x.shape[1],), inputs.weight.float(), b, inputs.eps)


def _baseline(inputs: LayerNormInputs) -> torch.Tensor:
    return F.layer_norm(inputs.x, (inputs.x.shape[1],), inputs.weight, inputs.bias, inputs.eps)


# Registers per tile element a thread holds (measured: see rowwise.tile_registers_fit).
_REGS_PER_ELEMENT = 1.5


def _heuristic(problem: Problem, device: DeviceInfo) -> Config:
    # A row up to 8192 wide is one tile (read once); wider rows loop in 8192 chunks.
    return rowwise.row_heuristic(SPEC, problem, device, max_block_n=8192, column_blocks=False)


def _bytes(problem: Problem) -> int:
    # Compulsory traffic: x read, y written, weight and bias read once. A looping config
    # reads x a second time, from L2 for all but the largest row blocks.
    M, N = problem["M"], problem["N"]
    return (2 * M * N + 2 * N) * C.ELEMENT_BYTES[problem.dtype]


SPEC = KernelSpec(
    name="layernorm",
    summary="y = (x - mean) / sqrt(var + eps) * weight + bias; fp32 math, two-pass/Chan variance",
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
    baseline_name="torch.nn.functional.layer_norm",
    # sum x; (x - mean)^2 and its sum; (x - mean) * rstd * w + b: 8 per element.
    flops=lambda p: 8 * p["M"] * p["N"],
    bytes_moved=_bytes,
    tolerance=lambda p: tolerance_for(p.dtype),
    out_may_alias=("x",),
    example={"M": 13, "N": 384},
)


def layernorm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float = 1e-5, *,
              config: Config | dict[str, int] | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """LayerNorm of each row of x with the Triton kernel.

    Args: x [M, N] (any strides); weight [N] and bias [N] (or None) in x's dtype; eps
        added to the variance (BERT: 1e-12). config: BLOCK_M/BLOCK_N/num_warps (missing
        ones from the heuristic); None asks the active config source. out: optional [M, N]
        buffer in x's dtype (may be x itself).
    Returns: y [M, N] in x's dtype.
    Raises: InvalidProblem, InvalidConfig, UnsupportedOnDevice.
    """
    return run(SPEC, LayerNormInputs(x, weight, bias, float(eps)), config, out=out)
