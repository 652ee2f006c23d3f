"""matmul_fp8: y = (x_q @ w_q.T) * x_scale[:, None] * w_scale[None, :] (+ bias), fp8 e4m3.

Both operands are float8_e4m3fn with fp32 scales: per row of x and per output channel of
the nn.Linear weight w [N, K] ("fp8-row"), or one scalar each ("fp8-tensor"). tl.dot runs
on the fp8 tiles (fp8 tensor cores, compute capability >= 8.9) with fp32 accumulation and
the scales are applied once after the K loop. The output dtype (fp16 or bf16) is the
problem's dtype.

w is read as [BLOCK_K, BLOCK_N] from its [N, K] storage, i.e. K-major, which is the
operand layout Hopper's fp8 wgmma requires (it cannot transpose 8-bit operands).

The quantizer `quantize_fp8` lives here, beside the kernel that consumes its layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from . import constraints as C
from . import gemm
from .accuracy import tolerance_for
from .device import DTYPE_NAMES, DeviceInfo, dtype_name, dtype_unsupported_reason
from .errors import InvalidProblem
from .launching import run
from .quant_io import checked_float_matrix, output_buffer
from .spec import Config, KernelSpec, Option, Problem

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite float8_e4m3fn

# fp8 tensor-core instructions take K in steps of 32 (mma.sync m16n8k32 on sm_89,
# wgmma k32 on sm_90); a 16-wide K tile would not fill one.
MIN_FP8_BLOCK_K = 32


# -- quantizer -------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)  # tensors: compared by identity
class Fp8Tensor:
    """A 2-D tensor in float8 e4m3 with fp32 scales: t ~= data * scale[:, None]."""

    data: torch.Tensor  # float8_e4m3fn [rows, cols]
    scale: torch.Tensor  # fp32 [rows] (per row) or [1] (per tensor); never 0

    @property
    def shape(self) -> tuple[int, int]:
        return (self.data.shape[0], self.data.shape[1])

    @property
    def per_tensor(self) -> bool:
        return self.scale.numel() == 1

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The values the kernel computes with, [rows, cols] in `dtype` (computed in fp32)."""
        return (self.data.float() * self.scale.float()[:, None]).to(dtype)


def quantize_fp8(t: torch.Tensor, per_row: bool = True) -> Fp8Tensor:
    """Quantize a 2-D float tensor to float8 e4m3 with scale = amax / 448, per row
    (scale [rows]) or per tensor (scale [1]). An all-zero row (or tensor) gets scale 1.
    Raises InvalidProblem for a non-2-D, empty, non-float or non-finite tensor.
    """
    tf = checked_float_matrix(t, "quantize_fp8")
    amax = tf.abs().amax(dim=1) if per_row else tf.abs().amax().reshape(1)
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    data = (tf / scale[:, None]).clamp_(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return Fp8Tensor(data.contiguous(), scale.contiguous())


# -- kernel ----------------------------------------------------------------------------
@triton.jit
def _fp8_kernel(
    x_ptr, w_ptr, xs_ptr, ws_ptr, out_ptr, bias_ptr,
    M, N, K,
    stride_xm, stride_xk, stride_wn, stride_wk, stride_xs, stride_ws,
    part_ptr, lock_ptr, stride_om, stride_on, stride_bias,
    HAS_BIAS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, SPLIT_K: tl.constexpr, SERIAL: tl.constexpr,
):
    pid_m, pid_n = gemm.grouped_tile(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    pid_k = tl.program_id(1)
    k_first, k_last = gemm.split_k_tiles(pid_k, K, BLOCK_K, SPLIT_K)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kt in range(k_first, k_last):
        k = kt * BLOCK_K + offs_k
        mask_k = k < K
        a = tl.load(x_ptr + offs_m[:, None] * stride_xm + k[None, :] * stride_xk,
                    mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        b = tl.load(w_ptr + k[:, None] * stride_wk + offs_n[None, :] * stride_wn,
                    mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        # sm_90 accumulates fp8 wgmma in a reduced-precision (~14-bit) adder by default; a
        # limit of BLOCK_K makes Triton add each tile's product into the fp32 accumulator
        # with a full fp32 add (the "promotion" of DeepSeek-V3, sec. 3.3.2). Elsewhere a no-op.
        acc = tl.dot(a, b, acc, max_num_imprecise_acc=BLOCK_K)

    # Per-tensor scales arrive with stride 0, so one code path serves both schemes.
    xs = tl.load(xs_ptr + offs_m * stride_xs, mask=mask_m, other=0.0)
    ws = tl.load(ws_ptr + offs_n * stride_ws, mask=mask_n, other=0.0)
    acc = acc * xs[:, None] * ws[None, :]

    gemm.store_tile(acc, out_ptr, part_ptr, lock_ptr, bias_ptr, pid_k, offs_m, offs_n, M, N, stride_om, stride_on,
                    stride_bias, HAS_BIAS, SPLIT_K, SERIAL)


@dataclass(frozen=True)
class Fp8MatmulInputs:
    x: Fp8Tensor  # data [M, K], scale [M] or [1]
    w: Fp8Tensor  # data [N, K] (nn.Linear layout), scale [N] or [1]
    out_dtype: torch.dtype  # fp16 or bf16
    bias: torch.Tensor | None = None  # [N] in out_dtype
    x_float: torch.Tensor | None = None  # [M, K] unquantized, out_dtype: the baseline's input only
    w_float: torch.Tensor | None = None  # [N, K] unquantized, out_dtype: the baseline's input only


def _scale_stride(t: Fp8Tensor) -> int:
    return 0 if t.per_tensor else t.scale.stride(0)


def _problem_of(inputs: Fp8MatmulInputs) -> Problem:
    x, w, bias = inputs.x, inputs.w, inputs.bias
    if x.data.dim() != 2 or w.data.dim() != 2 or x.data.shape[1] != w.data.shape[1]:
        raise InvalidProblem(f"matmul_fp8 needs x [M, K] and w [N, K]; got {tuple(x.data.shape)} and {tuple(w.data.shape)}")
    M, N = x.data.shape[0], w.data.shape[0]
    if x.data.dtype != FP8_DTYPE or w.data.dtype != FP8_DTYPE:
        raise InvalidProblem(f"matmul_fp8 needs float8_e4m3fn data; got {x.data.dtype} and {w.data.dtype}")
    for name, t, rows in (("x", x, M), ("w", w, N)):
        if t.scale.dtype != torch.float32 or tuple(t.scale.shape) not in ((rows,), (1,)):
            raise InvalidProblem(f"matmul_fp8 {name} scale must be fp32 [{rows}] or [1]; got "
                                 f"{t.scale.dtype} {tuple(t.scale.shape)}")
    if bias is not None and (tuple(bias.shape) != (N,) or bias.dtype != inputs.out_dtype):
        raise InvalidProblem(f"matmul_fp8 bias must be [N]={N} in the output dtype {inputs.out_dtype}; "
                             f"got {tuple(bias.shape)} {bias.dtype}")
    for t in (w.data, x.scale, w.scale, bias):
        if t is not None and t.device != x.data.device:
            raise InvalidProblem(f"matmul_fp8 tensors must share x's device {x.data.device}; got {t.device}")
    try:
        dtype = dtype_name(inputs.out_dtype)
    except ValueError as e:
        raise InvalidProblem(f"matmul_fp8 output: {e}") from None
    # Any mix of row and scalar scales runs on the same code path (a scalar is a stride-0
    # vector); the key only says whether both are scalars.
    quant = "fp8-tensor" if x.per_tensor and w.per_tensor else "fp8-row"
    return SPEC.problem({"M": M, "N": N, "K": x.data.shape[1]}, dtype, {"quant": quant, "bias": bias is not None})


def _launch(inputs: Fp8MatmulInputs, config: Config, out: torch.Tensor | None = None) -> torch.Tensor:
    x, w, bias = inputs.x, inputs.w, inputs.bias
    M, K = x.data.shape
    N = w.data.shape[0]
    device = x.data.device
    out = output_buffer(out, (M, N), inputs.out_dtype, device)
    split = gemm.split_k_buffers(out, M, N, config)
    _fp8_kernel[gemm.grid(M, N, config)](
        x.data, w.data, x.scale, w.scale, out, bias if bias is not None else x.scale,
        M, N, K,
        x.data.stride(0), x.data.stride(1), w.data.stride(0), w.data.stride(1),
        _scale_stride(x), _scale_stride(w),
        *split.args(out), out.stride(0), out.stride(1), gemm.bias_stride(bias),
        HAS_BIAS=bias is not None, SERIAL=split.serial,
        **config.kernel_args(), **config.launch_options(),
    )
    return gemm.finish(split, out, bias)


def _make_inputs(problem: Problem, device: torch.device, gen: torch.Generator) -> Fp8MatmulInputs:
    M, N, K = problem["M"], problem["N"], problem["K"]
    dtype = DTYPE_NAMES[problem.dtype]
    per_row = problem.opt("quant") == "fp8-row"
    x = torch.randn((M, K), device=device, dtype=torch.float32, generator=gen)
    w = torch.randn((N, K), device=device, dtype=torch.float32, generator=gen)  # nn.Linear layout
    bias = torch.randn((N,), device=device, dtype=dtype, generator=gen) if problem.opt("bias") == "1" else None
    return Fp8MatmulInputs(quantize_fp8(x, per_row), quantize_fp8(w, per_row), dtype, bias,
                           x_float=x.to(dtype), w_float=w.to(dtype))


def _reference(inputs: Fp8MatmulInputs) -> torch.Tensor:
    out = inputs.x.dequantize(torch.float32) @ inputs.w.dequantize(torch.float32).t()
    return out + inputs.bias.float() if inputs.bias is not None else out


def _float_reference(inputs: Fp8MatmulInputs) -> torch.Tensor:
    # The unquantized operands (kept in the output dtype: their rounding, ~2^-9 relative in
    # bf16, is far below fp8's ~2^-4).
    if inputs.x_float is None or inputs.w_float is None:
        raise ValueError("no unquantized operands kept with these inputs")
    out = inputs.x_float.float() @ inputs.w_float.float().t()
    return out + inputs.bias.float() if inputs.bias is not None else out


def _baseline(inputs: Fp8MatmulInputs) -> torch.Tensor:
    # The op the fp8 kernel replaces: the unquantized layer in the output dtype.
    x = inputs.x_float if inputs.x_float is not None else inputs.x.dequantize(inputs.out_dtype)
    w = inputs.w_float if inputs.w_float is not None else inputs.w.dequantize(inputs.out_dtype)
    if inputs.bias is not None:
        return torch.addmm(inputs.bias, x, w.t())
    return torch.matmul(x, w.t())


def block_k_fills_fp8_mma(config: Config, problem: Problem, device: DeviceInfo) -> str | None:
    if config["BLOCK_K"] < MIN_FP8_BLOCK_K:
        return f"BLOCK_K={config['BLOCK_K']} is below {MIN_FP8_BLOCK_K}, the K of one fp8 tensor-core instruction"
    return None


def _smem(config: Config, problem: Problem) -> int:
    # One fp8 x tile and one fp8 w tile per pipeline stage; both feed the MMA from there.
    return config["num_stages"] * (config["BLOCK_M"] + config["BLOCK_N"]) * config["BLOCK_K"]


def _acc_elements(config: Config, problem: Problem) -> int:
    # The accumulator plus the tile product kept apart for the fp32 promotion (sm_90).
    return 2 * config["BLOCK_M"] * config["BLOCK_N"]


def _requirement(problem: Problem, device: DeviceInfo) -> str | None:
    return dtype_unsupported_reason("fp8", device)


def _heuristic(problem: Problem, device: DeviceInfo) -> Config:
    # fp8 halves the bytes per element, so a K step of 128 costs what 64 does in fp16.
    return gemm.heuristic(SPEC, problem, device, smem=_smem, large_block_k=128, block_k_min=MIN_FP8_BLOCK_K)

def _bytes(problem: Problem) -> int:
    M, N, K = problem["M"], problem["N"], problem["K"]
    es = C.ELEMENT_BYTES[problem.dtype]
    scales = 4 * (M + N) if problem.opt("quant") == "fp8-row" else 8
    bias = N * es if problem.opt("bias") == "1" else 0
    return M * K + N * K + scales + M * N * es + bias  # fp8 x and w, fp32 scales, y, bias


SPEC = KernelSpec(
    name="matmul_fp8",
    summary="y = (x_fp8 @ w_fp8.T) * scales (+ bias); e4m3 operands, row or tensor scales, split-K",
    dims=("M", "N", "K"),
    dtypes=("fp16", "bf16"),
    options=(
        Option("quant", ("fp8-row", "fp8-tensor"), "fp8-row",
               "scales per row of x and per output channel of w, or one scalar each"),
        Option("bias", ("0", "1"), "0", "add a bias vector of length N"),
    ),
    params=gemm.tile_params(block_k=(32, 64, 128), operand="weight"),
    constraints=gemm.tile_constraints(_smem, _acc_elements, block_k_fills_fp8_mma, block_k_min=MIN_FP8_BLOCK_K),
    heuristic=_heuristic,
    make_inputs=_make_inputs,
    problem_of=_problem_of,
    reference=_reference,
    float_reference=_float_reference,
    launch=_launch,
    baseline=_baseline,
    baseline_name="torch.matmul (unquantized x and w)",
    flops=lambda p: 2 * p["M"] * p["N"] * p["K"],
    bytes_moved=_bytes,
    # fp8 x fp8 products are exact in fp32 and the scales are applied once, so the kernel
    # matches the reference on the dequantized operands to summation order; what is left is
    # the output rounding, which the per-dtype bound covers.
    tolerance=lambda p: tolerance_for(p.dtype),
    requirement=_requirement,
    example={"M": 13, "N": 257, "K": 129},
)


def matmul_fp8(x: Fp8Tensor, w: Fp8Tensor, bias: torch.Tensor | None = None, *,
               out_dtype: torch.dtype | None = None, config: Config | dict[str, int] | None = None,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """y = x.dequantize() @ w.dequantize().T (+ bias) with the fp8 e4m3 Triton kernel.

    Args: x from `quantize_fp8` ([M, K]); w from `quantize_fp8` of an nn.Linear weight
        ([N, K]); scales per row or per tensor. bias [N] in the output dtype. out_dtype:
        torch.float16 or torch.bfloat16; None: out's dtype if out is given, else bf16.
        config: tile config (missing parameters come from the heuristic); None asks the
        active config source. out: [M, N] in the output dtype.
    Returns: y [M, N] in the output dtype.
    Raises: InvalidProblem, InvalidConfig, UnsupportedOnDevice (below compute capability
        8.9, and on the CPU).
    """
    if out_dtype is None:
        out_dtype = out.dtype if out is not None else torch.bfloat16
    return run(SPEC, Fp8MatmulInputs(x, w, out_dtype, bias), config, out=out)
