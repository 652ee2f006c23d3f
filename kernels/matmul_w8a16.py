"""matmul_w8a16: y = x @ dequant(W).T (+ bias) with int8 weights and fp32/fp16/bf16 activations.

Weight-only quantization, symmetric, one fp32 scale per output channel (row of the
nn.Linear weight W [N, K]): W ~= qweight * scale[:, None], qweight int8 in [-127, 127].
The kernel reads the int8 weight (half the bytes of fp16), converts each tile to x's dtype
for tl.dot (exact: |q| <= 127 fits the fp16 and bf16 mantissas), accumulates in fp32 and
multiplies the per-column scale once after the K loop. At decode-sized M the op is bound
by weight bandwidth, which is where the int8 weight pays.

The quantizer `quantize_int8` lives here, beside the kernel that consumes its layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from . import constraints as C
from . import gemm, pdl
from .accuracy import tolerance_for
from .device import DTYPE_NAMES, DeviceInfo, dtype_name
from .errors import InvalidProblem
from .launching import needs_dot_upcast, run
from .quant_io import checked_float_matrix, output_buffer, weight_only_float_reference
from .spec import Config, KernelSpec, Option, Problem

INT8_MAX = 127  # symmetric: -128 is never produced, so +-absmax map to +-127 exactly


# -- quantizer -------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)  # tensors: compared by identity
class Int8Weight:
    """An nn.Linear weight quantized to int8 per output channel: W ~= qweight * scale[:, None]."""

    qweight: torch.Tensor  # int8 [N, K]
    scale: torch.Tensor  # fp32 [N]; never 0 (an all-zero row keeps scale 1 and q = 0)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.qweight.shape[0], self.qweight.shape[1])

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight the kernel computes with, [N, K] in `dtype` (computed in fp32)."""
        return (self.qweight.float() * self.scale[:, None].float()).to(dtype)


def quantize_int8(w: torch.Tensor) -> Int8Weight:
    """Quantize an nn.Linear weight w [N, K] (float) to int8, symmetric per output channel.

    scale[n] = absmax(w[n]) / 127 and q = round(w / scale), so |w - q * scale| <= scale / 2.
    Raises InvalidProblem for a non-2-D, empty, non-float or non-finite weight.
    """
    wf = checked_float_matrix(w, "quantize_int8")
    absmax = wf.abs().amax(dim=1)
    scale = torch.where(absmax > 0, absmax / INT8_MAX, torch.ones_like(absmax))
    q = torch.round(wf / scale[:, None]).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return Int8Weight(q.contiguous(), scale.contiguous())


# -- kernel ----------------------------------------------------------------------------
@triton.jit
def _w8a16_kernel(
    x_ptr, w_ptr, scale_ptr, out_ptr, bias_ptr,
    M, N, K,
    stride_xm, stride_xk, stride_wn, stride_wk, stride_sn, part_ptr, lock_ptr, stride_om, stride_on, stride_bias,
    HAS_BIAS: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, SPLIT_K: tl.constexpr, SERIAL: tl.constexpr,
    USE_GDC: tl.constexpr,
):
    pdl.wait_for_producer(USE_GDC)  # nothing is read before the previous kernel completes
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
        # qweight is [N, K]; its tile is read transposed, as [BLOCK_K, BLOCK_N], via the strides.
        q = tl.load(w_ptr + k[:, None] * stride_wk + offs_n[None, :] * stride_wn,
                    mask=mask_k[:, None] & mask_n[None, :], other=0)
        if UPCAST:
            a = a.to(tl.float32)
        # Triton compiles int8 -> bf16 to byte permutes and packed adds, but int8 -> fp16 and
        # int8 -> fp32 to I2F, which sm_90 runs at a quarter rate. For those, q + 128 (the
        # byte with its top bit flipped) OR-ed into the mantissa of MAGIC (fp16 1024.0, fp32
        # 2^23) reads as MAGIC + q + 128, and one subtraction leaves q, exactly.
        if UPCAST or x_ptr.dtype.element_ty == tl.float32:
            b = (((q.to(tl.uint8, bitcast=True) ^ 0x80).to(tl.int32) | 0x4B000000).to(tl.float32, bitcast=True)
                 - (8388608.0 + 128.0))
        elif x_ptr.dtype.element_ty == tl.float16:
            b = (((q.to(tl.uint8, bitcast=True) ^ 0x80).to(tl.int16) | 0x6400).to(tl.float16, bitcast=True)
                 - tl.full((1, BLOCK_N), 1024.0 + 128.0, tl.float16))
        else:
            b = q.to(tl.bfloat16)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)

    # The scale is per output column, so it factors out of the whole K sum: one multiply.
    scale = tl.load(scale_ptr + offs_n * stride_sn, mask=mask_n, other=0.0)
    acc = acc * scale[None, :]

    pdl.release_dependents(USE_GDC)  # the next kernel may start while this one's epilogue runs
    gemm.store_tile(acc, out_ptr, part_ptr, lock_ptr, bias_ptr, pid_k, offs_m, offs_n, M, N, stride_om, stride_on,
                    stride_bias, HAS_BIAS, SPLIT_K, SERIAL)


@dataclass(frozen=True)
class W8A16Inputs:
    x: torch.Tensor  # [M, K] fp32/fp16/bf16, any strides
    w: Int8Weight  # qweight [N, K], scale [N]
    bias: torch.Tensor | None = None  # [N], x's dtype
    weight: torch.Tensor | None = None  # [N, K] float weight in x's dtype: the baseline's input only
    weight_f32: torch.Tensor | None = None  # [N, K] the weight before quantization: float_reference's input


def _problem_of(inputs: W8A16Inputs) -> Problem:
    x, w, bias = inputs.x, inputs.w, inputs.bias
    if x.dim() != 2 or w.qweight.dim() != 2 or x.shape[1] != w.qweight.shape[1]:
        raise InvalidProblem(f"matmul_w8a16 needs x [M, K] and qweight [N, K]; got {tuple(x.shape)} and {tuple(w.qweight.shape)}")
    N = w.qweight.shape[0]
    if w.qweight.dtype != torch.int8 or w.scale.dtype != torch.float32 or tuple(w.scale.shape) != (N,):
        raise InvalidProblem(f"matmul_w8a16 needs qweight int8 [N, K] and scale fp32 [N]={N}; got "
                             f"{w.qweight.dtype} and {w.scale.dtype} {tuple(w.scale.shape)}")
    if bias is not None and (tuple(bias.shape) != (N,) or bias.dtype != x.dtype):
        raise InvalidProblem(f"matmul_w8a16 bias must be [N]={N} in x's dtype {x.dtype}; got {tuple(bias.shape)} {bias.dtype}")
    for t in (w.qweight, w.scale, bias):
        if t is not None and t.device != x.device:
            raise InvalidProblem(f"matmul_w8a16 tensors must share x's device {x.device}; got {t.device}")
    try:
        dtype = dtype_name(x.dtype)
    except ValueError as e:
        raise InvalidProblem(f"matmul_w8a16: {e}") from None
    return SPEC.problem({"M": x.shape[0], "N": N, "K": x.shape[1]}, dtype, {"bias": bias is not None})


def _launch(inputs: W8A16Inputs, config: Config, out: torch.Tensor | None = None) -> torch.Tensor:
    x, w, bias = inputs.x, inputs.w, inputs.bias
    M, K = x.shape
    N = w.qweight.shape[0]
    out = output_buffer(out, (M, N), x.dtype, x.device)
    split = gemm.split_k_buffers(out, M, N, config)
    _w8a16_kernel[gemm.grid(M, N, config)](
        x, w.qweight, w.scale, out, bias if bias is not None else w.scale,
        M, N, K,
        x.stride(0), x.stride(1), w.qweight.stride(0), w.qweight.stride(1), w.scale.stride(0),
        *split.args(out), out.stride(0), out.stride(1), gemm.bias_stride(bias),
        HAS_BIAS=bias is not None, SERIAL=split.serial,
        UPCAST=needs_dot_upcast(x.dtype),
        # fp32 activations are multiplied in full fp32 (not TF32), like the fp32 reference.
        INPUT_PRECISION="ieee" if x.dtype == torch.float32 else "tf32",
        **config.kernel_args(), **config.launch_options(), **pdl.launch_kwargs(x),
    )
    return gemm.finish(split, out, bias)


def _make_inputs(problem: Problem, device: torch.device, gen: torch.Generator) -> W8A16Inputs:
    M, N, K = problem["M"], problem["N"], problem["K"]
    dtype = DTYPE_NAMES[problem.dtype]
    x = torch.randn((M, K), device=device, dtype=dtype, generator=gen)
    w = torch.randn((N, K), device=device, dtype=torch.float32, generator=gen)  # nn.Linear layout
    bias = torch.randn((N,), device=device, dtype=dtype, generator=gen) if problem.opt("bias") == "1" else None
    return W8A16Inputs(x, quantize_int8(w), bias, weight=w.to(dtype), weight_f32=w)


def _reference(inputs: W8A16Inputs) -> torch.Tensor:
    out = inputs.x.float() @ inputs.w.dequantize(torch.float32).t()
    return out + inputs.bias.float() if inputs.bias is not None else out


def _baseline(inputs: W8A16Inputs) -> torch.Tensor:
    # The op the quantized kernel replaces: the float layer in x's dtype.
    weight = inputs.weight if inputs.weight is not None else inputs.w.dequantize(inputs.x.dtype)
    if inputs.bias is not None:
        return torch.addmm(inputs.bias, inputs.x, weight.t())
    return torch.matmul(inputs.x, weight.t())


def _smem(config: Config, problem: Problem) -> int:
    # Per-channel scales are loaded once, outside the K loop.
    return gemm.shared_memory(config, problem, weight_bits=8)


def _heuristic(problem: Problem, device: DeviceInfo) -> Config:
    # fp32 dots run on FMAs: at M = 2048 the 128 x 128 x 32 tile (8 warps) spilled ~5000
    # registers in the K loop for sm_90 (triton 3.9); 64 x 64 x 32 with 8 warps spills none (190).
    large = 64 if device.kind == "cuda" and problem.dtype == "fp32" else 128
    return gemm.heuristic(SPEC, problem, device, smem=_smem, weight_bits=8, max_block_k=gemm.weight_only_max_block_k(problem, device),
                          large_block_m=large, large_block_n=large)


def _bytes(problem: Problem) -> int:
    M, N, K = problem["M"], problem["N"], problem["K"]
    es = C.ELEMENT_BYTES[problem.dtype]
    bias = N * es if problem.opt("bias") == "1" else 0
    return M * K * es + N * K + N * 4 + M * N * es + bias  # x, int8 weight, fp32 scales, y, bias


SPEC = KernelSpec(
    name="matmul_w8a16",
    summary="y = x @ dequant(W_int8).T (+ bias); int8 weights, per-channel scales, split-K",
    dims=("M", "N", "K"),
    dtypes=("fp32", "fp16", "bf16"),
    options=(Option("bias", ("0", "1"), "0", "add a bias vector of length N"),),
    params=gemm.tile_params(operand="weight"),
    constraints=gemm.tile_constraints(_smem, gemm.accumulator),
    heuristic=_heuristic,
    make_inputs=_make_inputs,
    problem_of=_problem_of,
    reference=_reference,
    float_reference=weight_only_float_reference,
    launch=_launch,
    baseline=_baseline,
    baseline_name="torch.matmul (float weights)",
    flops=lambda p: 2 * p["M"] * p["N"] * p["K"],
    bytes_moved=_bytes,
    # The kernel's arithmetic is the reference's up to fp32 summation order (x * q is exact
    # in fp32, the scale is one more fp32 rounding), so the plain per-dtype bound holds.
    tolerance=lambda p: tolerance_for(p.dtype),
    example={"M": 13, "N": 257, "K": 129},
)


def matmul_w8a16(x: torch.Tensor, w: Int8Weight, bias: torch.Tensor | None = None, *,
                 config: Config | dict[str, int] | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """y = x @ w.dequantize().T (+ bias) with the int8 weight-only Triton kernel.

    Args: x [M, K] fp32/fp16/bf16; w from `quantize_int8` (qweight [N, K], scale [N]);
        bias [N] in x's dtype. config: tile config (missing parameters come from the
        heuristic); None asks the active config source. out: [M, N] in x's dtype to write.
    Returns: y [M, N] in x's dtype.
    Raises: InvalidProblem, InvalidConfig, UnsupportedOnDevice.
    """
    return run(SPEC, W8A16Inputs(x, w, bias), config, out=out)
