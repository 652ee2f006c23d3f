"""matmul_w4a16: y = x @ dequant(W).T (+ bias) with group-wise int4 weights.

Weight-only quantization: the nn.Linear weight W [N, K] is cut along K into groups of 32,
64 or 128; each (row, group) has an fp32 scale and, when asymmetric, an fp32 zero point:
W ~= (q - zero) * scale with q in [0, 15]. Symmetric groups store q + 8 (zero point 8).
Two values share a byte along K (low nibble = even k, high nibble = odd k): packed is
uint8 [N, Kp / 2] where Kp is K padded with zeros to a multiple of the group.

The kernel keeps every K tile inside one group (BLOCK_K divides the group size), so the
group's scale factors out of the tile's dot: acc += dot(x, q - zero) * scale[None, :]. It
loads each packed byte once, as a [BLOCK_K / 2, BLOCK_N] tile, and splits it into the low
nibbles (even k) and the high ones (odd k), which meet the even and odd columns of the x
tile in two dots. Nibbles become floats by bit tricks, not int -> float conversions.

On a GPU, fp16 and bf16 unpack the nibbles with a few lines of PTX (`_nibbles_asm`): four
packed bytes in one register become eight 16-bit floats with 2 byte permutes, 4 LOP3 and
2 shifts. Triton's own lowering of the same bit trick spent 2 byte permutes per weight
(sm_90 compile, M = 1, 4096 x 4096, default config: 347 instructions per K step with it,
217 with the PTX). The interpreter cannot run PTX, and fp32 keeps the Triton path; the
environment variable INFERTUNE_INT4_DEQUANT=bits selects the Triton path on a GPU too
(what the kit measures the PTX against).

The quantizer `quantize_int4` lives here, beside the kernel that consumes its layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import os

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from . import constraints as C
from . import gemm, pdl
from .accuracy import tolerance_for
from .device import DTYPE_NAMES, DeviceInfo, dtype_name, interpreter_enabled
from .errors import InvalidProblem
from .launching import needs_dot_upcast, run
from .quant_io import checked_float_matrix, output_buffer, weight_only_float_reference
from .spec import Config, KernelSpec, Option, Problem

SYMMETRIC_ZERO = 8  # symmetric q in [-8, 7] is stored as q + 8
# The kernel runs two dots of BLOCK_K / 2 (even k, odd k) per K tile, and tl.dot needs K >= 16.
MIN_BLOCK_K = 32


def scheme_name(group_size: int, symmetric: bool) -> str:
    """The quant option naming a layout: "int4-g128", "int4-g32-asym", ..."""
    return f"int4-g{group_size}{'' if symmetric else '-asym'}"


# Quant option -> (group size, symmetric), in the option's order.
SCHEMES = {scheme_name(group, symmetric): (group, symmetric)
           for symmetric in (True, False) for group in (32, 64, 128)}


# -- quantizer -------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)  # tensors: compared by identity
class Int4Weight:
    """An nn.Linear weight [N, K] quantized to int4 in groups along K: W ~= (q - zero) * scale."""

    packed: torch.Tensor  # uint8 [N, Kp // 2]; k even in the low nibble, k odd in the high one
    scale: torch.Tensor  # fp32 [N, Kp // group_size]; never 0
    zero: torch.Tensor | None  # fp32 [N, Kp // group_size], integers in [0, 15]; None: symmetric (8)
    group_size: int
    in_features: int  # K before padding

    @property
    def symmetric(self) -> bool:
        return self.zero is None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.packed.shape[0], self.in_features)

    @property
    def scheme(self) -> str:
        """The matmul_w4a16 quant option this layout is ("int4-g128", "int4-g32-asym", ...)."""
        return scheme_name(self.group_size, self.symmetric)

    def unpack(self) -> torch.Tensor:
        """The stored 4-bit values, uint8 [N, Kp] in [0, 15] (padding included)."""
        low = self.packed & 0xF
        high = self.packed >> 4
        return torch.stack((low, high), dim=-1).reshape(self.packed.shape[0], -1)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight the kernel computes with, [N, K] in `dtype` (computed in fp32)."""
        n = self.packed.shape[0]
        q = self.unpack().float().view(n, -1, self.group_size)
        zero = self.zero if self.zero is not None else torch.full_like(self.scale, SYMMETRIC_ZERO)
        w = (q - zero[..., None]) * self.scale[..., None]
        return w.reshape(n, -1)[:, : self.in_features].to(dtype)


def quantize_int4(w: torch.Tensor, group_size: int = 128, symmetric: bool = True) -> Int4Weight:
    """Quantize an nn.Linear weight w [N, K] (float) to int4 in groups of `group_size` along K.

    K is padded with zeros to a multiple of the group (so any K works). Symmetric:
    scale = absmax / 7, q = clamp(round(w / scale), -8, 7), stored as q + 8. Asymmetric:
    the group's range [min, max] is widened to include 0 (so that 0 stays exact and the
    zero point needs no clamping), scale = (max - min) / 15, zero = round(-min / scale),
    q = clamp(round(w / scale) + zero, 0, 15). Either way |w - dequant| <= scale / 2, and an
    all-zero group gets scale 1 and dequantizes to exact zeros.
    Raises InvalidProblem for a bad weight or a group size that is not a positive even number.
    """
    wf = checked_float_matrix(w, "quantize_int4")
    if group_size < 2 or group_size % 2:
        raise InvalidProblem(f"quantize_int4: group_size must be a positive even number; got {group_size}")
    n, k = wf.shape
    kp = C.cdiv(k, group_size) * group_size
    groups = F.pad(wf, (0, kp - k)).view(n, kp // group_size, group_size)
    if symmetric:
        absmax = groups.abs().amax(dim=-1)
        scale = torch.where(absmax > 0, absmax / 7, torch.ones_like(absmax))
        q = torch.round(groups / scale[..., None]).clamp_(-8, 7) + SYMMETRIC_ZERO
        zero = None
    else:
        lo = groups.amin(dim=-1).clamp(max=0.0)
        hi = groups.amax(dim=-1).clamp(min=0.0)
        scale = torch.where(hi > lo, (hi - lo) / 15, torch.ones_like(hi))
        zero = torch.round(-lo / scale).clamp_(0, 15)
        q = (torch.round(groups / scale[..., None]) + zero[..., None]).clamp_(0, 15)
    q = q.to(torch.uint8).view(n, kp)
    packed = q[:, 0::2] | (q[:, 1::2] << 4)
    return Int4Weight(packed.contiguous(), scale.contiguous(),
                      None if zero is None else zero.contiguous(), group_size, k)


# -- kernel ----------------------------------------------------------------------------
DEQUANT_ENV = "INFERTUNE_INT4_DEQUANT"
DEQUANT_PATHS = ("asm", "bits")


def nibble_asm(magic: int) -> str:
    """The PTX of `_nibbles_asm` for a 16-bit float whose bit pattern `magic` has a mantissa
    step of 1 (bf16 0x4300 = 128.0, fp16 0x6400 = 1024.0).

    Triton hands it four packed bytes in $4 (byte i = element i) and takes each output as two
    registers of two 16-bit floats (element 0 in the low half): $0, $1 the low nibbles, $2,
    $3 the high ones. prmt spreads bytes 0, 1 (then 2, 3) into the two halves of a word, and
    lop3 (0xEA: a & b | c) keeps one nibble a half and ORs it into the mantissa of magic.
    """
    both = f"0x{magic:04X}{magic:04X}"
    return f"""{{
    .reg .b32 lo01, lo23, hi01, hi23;
    prmt.b32 lo01, $4, 0, 0x7170;
    prmt.b32 lo23, $4, 0, 0x7372;
    shr.u32 hi01, lo01, 4;
    shr.u32 hi23, lo23, 4;
    lop3.b32 $0, lo01, 0x000F000F, {both}, 0xEA;
    lop3.b32 $1, lo23, 0x000F000F, {both}, 0xEA;
    lop3.b32 $2, hi01, 0x000F000F, {both}, 0xEA;
    lop3.b32 $3, hi23, 0x000F000F, {both}, 0xEA;
}}"""


_ASM_BF16 = tl.constexpr(nibble_asm(0x4300))
_ASM_FP16 = tl.constexpr(nibble_asm(0x6400))


@triton.jit
def _nibbles_asm(byte, WDTYPE: tl.constexpr):
    """(MAGIC + low nibble, MAGIC + high nibble) of a uint8 tile, as WDTYPE (fp16 or bf16)."""
    if WDTYPE == tl.bfloat16:
        lo, hi = tl.inline_asm_elementwise(_ASM_BF16, "=r,=r,=r,=r,r", [byte], dtype=(tl.bfloat16, tl.bfloat16),
                                           is_pure=True, pack=4)
    else:
        lo, hi = tl.inline_asm_elementwise(_ASM_FP16, "=r,=r,=r,=r,r", [byte], dtype=(tl.float16, tl.float16),
                                           is_pure=True, pack=4)
    return lo, hi


def dequant_path(dtype: torch.dtype) -> str:
    """"asm" where `_nibbles_asm` unpacks (compiled fp16 or bf16 without the dot upcast), else
    "bits". INFERTUNE_INT4_DEQUANT=bits forces the Triton path; any other value is refused."""
    wanted = os.environ.get(DEQUANT_ENV, "asm").strip().lower() or "asm"
    if wanted not in DEQUANT_PATHS:
        raise InvalidProblem(f"{DEQUANT_ENV} must be one of {', '.join(DEQUANT_PATHS)}; got {wanted!r}")
    if wanted == "asm" and dtype in (torch.float16, torch.bfloat16) and not interpreter_enabled():
        return "asm"
    return "bits"


@triton.jit
def _w4a16_kernel(
    x_ptr, w_ptr, scale_ptr, zero_ptr, out_ptr, bias_ptr,
    M, N, K,
    stride_xm, stride_xk, stride_wn, stride_wk, stride_sn, stride_sg, stride_zn, stride_zg,
    part_ptr, lock_ptr, stride_om, stride_on, stride_bias,
    GROUP: tl.constexpr, ASYM: tl.constexpr,
    HAS_BIAS: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr, ASM_DEQUANT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, SPLIT_K: tl.constexpr, SERIAL: tl.constexpr,
    USE_GDC: tl.constexpr,
):
    pdl.wait_for_producer(USE_GDC)  # nothing is read before the previous kernel completes
    pid_m, pid_n = gemm.grouped_tile(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    pid_k = tl.program_id(1)
    k_first, k_last = gemm.split_k_tiles(pid_k, K, BLOCK_K, SPLIT_K)
    # The dequantized weight's type: fp32 where tl.dot sees fp32 operands.
    if UPCAST or x_ptr.dtype.element_ty == tl.float32:
        WDTYPE: tl.constexpr = tl.float32
        IDTYPE: tl.constexpr = tl.int32
        MAGIC: tl.constexpr = 0x4B000000
        MAGIC_VALUE: tl.constexpr = 8388608.0
    elif x_ptr.dtype.element_ty == tl.float16:
        WDTYPE: tl.constexpr = tl.float16
        IDTYPE: tl.constexpr = tl.int16
        MAGIC: tl.constexpr = 0x6400
        MAGIC_VALUE: tl.constexpr = 1024.0
    else:
        WDTYPE: tl.constexpr = tl.bfloat16
        IDTYPE: tl.constexpr = tl.int16
        MAGIC: tl.constexpr = 0x4300
        MAGIC_VALUE: tl.constexpr = 128.0
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    offs_kb = tl.arange(0, BLOCK_K // 2)
    mask_m = offs_m < M
    mask_n = offs_n < N

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kt in range(k_first, k_last):
        k = kt * BLOCK_K + offs_k
        mask_k = k < K
        a = tl.load(x_ptr + offs_m[:, None] * stride_xm + k[None, :] * stride_xk,
                    mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        # Even and odd k of the x tile: they meet the low and the high nibbles.
        a_even, a_odd = tl.split(tl.reshape(a, (BLOCK_M, BLOCK_K // 2, 2)))
        # Each packed byte is loaded once, as a [BLOCK_K / 2, BLOCK_N] tile contiguous along
        # K (16-byte vector loads). Loading [BLOCK_K, BLOCK_N] at k // 2 instead compiled to
        # one LDG.E.U8 and one STS.U16 per weight for sm_90 (both nibbles, no vectors).
        # Every K tile lies inside Kp (BLOCK_K divides the group, Kp is whole groups): no K mask.
        byte = tl.load(w_ptr + (kt * (BLOCK_K // 2) + offs_kb)[:, None] * stride_wk + offs_n[None, :] * stride_wn,
                       mask=mask_n[None, :], other=0)
        # BLOCK_K divides GROUP, so the whole tile lies in one group.
        g = (kt * BLOCK_K) // GROUP
        scale = tl.load(scale_ptr + offs_n * stride_sn + g * stride_sg, mask=mask_n, other=0.0)
        # Dequantize without int -> float conversions (sm_90 runs I2F at a quarter rate): a
        # nibble q OR-ed into the mantissa of MAGIC (bf16 128.0, fp16 1024.0, fp32 2^23) reads
        # as the float MAGIC + q, and one subtraction of MAGIC + zero leaves q - zero, exactly.
        if ASYM:
            zero = tl.load(zero_ptr + offs_n * stride_zn + g * stride_zg, mask=mask_n, other=0.0)
            offset = (zero + MAGIC_VALUE)[None, :].to(WDTYPE)
        else:
            offset = tl.full((1, BLOCK_N), 8.0 + MAGIC_VALUE, WDTYPE)
        if ASM_DEQUANT:
            lo, hi = _nibbles_asm(byte, WDTYPE)
            lo = lo - offset
            hi = hi - offset
        else:
            lo = ((byte & 0xF).to(IDTYPE) | MAGIC).to(WDTYPE, bitcast=True) - offset
            hi = ((byte >> 4).to(IDTYPE) | MAGIC).to(WDTYPE, bitcast=True) - offset
        if UPCAST:
            a_even = a_even.to(tl.float32)
            a_odd = a_odd.to(tl.float32)
        part = tl.dot(a_even, lo, input_precision=INPUT_PRECISION)
        part = tl.dot(a_odd, hi, part, input_precision=INPUT_PRECISION)
        acc += part * scale[None, :]

    pdl.release_dependents(USE_GDC)  # the next kernel may start while this one's epilogue runs
    gemm.store_tile(acc, out_ptr, part_ptr, lock_ptr, bias_ptr, pid_k, offs_m, offs_n, M, N, stride_om, stride_on,
                    stride_bias, HAS_BIAS, SPLIT_K, SERIAL)


@dataclass(frozen=True)
class W4A16Inputs:
    x: torch.Tensor  # [M, K] fp32/fp16/bf16, any strides
    w: Int4Weight  # packed [N, Kp / 2], scale (and zero) [N, Kp / group]
    bias: torch.Tensor | None = None  # [N], x's dtype
    weight: torch.Tensor | None = None  # [N, K] float weight in x's dtype: the baseline's input only
    weight_f32: torch.Tensor | None = None  # [N, K] the weight before quantization: float_reference's input


def _problem_of(inputs: W4A16Inputs) -> Problem:
    x, w, bias = inputs.x, inputs.w, inputs.bias
    if x.dim() != 2 or w.packed.dim() != 2 or x.shape[1] != w.in_features:
        raise InvalidProblem(f"matmul_w4a16 needs x [M, K] and a weight of K={w.in_features} inputs; "
                             f"got x {tuple(x.shape)}")
    N = w.packed.shape[0]
    groups = C.cdiv(w.in_features, w.group_size)
    if (w.packed.dtype != torch.uint8 or tuple(w.packed.shape) != (N, groups * w.group_size // 2)
            or w.scale.dtype != torch.float32 or tuple(w.scale.shape) != (N, groups)
            or (w.zero is not None and (w.zero.dtype != torch.float32 or tuple(w.zero.shape) != (N, groups)))):
        raise InvalidProblem(f"matmul_w4a16 needs packed uint8 [N, Kp/2]={[N, groups * w.group_size // 2]} and "
                             f"fp32 scale/zero [N, groups]={[N, groups]}; got packed {w.packed.dtype} "
                             f"{tuple(w.packed.shape)}, scale {w.scale.dtype} {tuple(w.scale.shape)}")
    if bias is not None and (tuple(bias.shape) != (N,) or bias.dtype != x.dtype):
        raise InvalidProblem(f"matmul_w4a16 bias must be [N]={N} in x's dtype {x.dtype}; got {tuple(bias.shape)} {bias.dtype}")
    for t in (w.packed, w.scale, w.zero, bias):
        if t is not None and t.device != x.device:
            raise InvalidProblem(f"matmul_w4a16 tensors must share x's device {x.device}; got {t.device}")
    try:
        dtype = dtype_name(x.dtype)
    except ValueError as e:
        raise InvalidProblem(f"matmul_w4a16: {e}") from None
    # An unsupported group size fails here, as a quant option the spec does not list.
    return SPEC.problem({"M": x.shape[0], "N": N, "K": x.shape[1]}, dtype,
                        {"quant": w.scheme, "bias": bias is not None})


def _launch(inputs: W4A16Inputs, config: Config, out: torch.Tensor | None = None) -> torch.Tensor:
    x, w, bias = inputs.x, inputs.w, inputs.bias
    M, K = x.shape
    N = w.packed.shape[0]
    out = output_buffer(out, (M, N), x.dtype, x.device)
    split = gemm.split_k_buffers(out, M, N, config)
    zero = w.zero if w.zero is not None else w.scale  # unread when symmetric
    _w4a16_kernel[gemm.grid(M, N, config)](
        x, w.packed, w.scale, zero, out, bias if bias is not None else w.scale,
        M, N, K,
        x.stride(0), x.stride(1), w.packed.stride(0), w.packed.stride(1),
        w.scale.stride(0), w.scale.stride(1), zero.stride(0), zero.stride(1),
        *split.args(out), out.stride(0), out.stride(1), gemm.bias_stride(bias),
        GROUP=w.group_size, ASYM=not w.symmetric,
        HAS_BIAS=bias is not None, SERIAL=split.serial,
        UPCAST=needs_dot_upcast(x.dtype),
        # fp32 activations are multiplied in full fp32 (not TF32), like the fp32 reference.
        INPUT_PRECISION="ieee" if x.dtype == torch.float32 else "tf32",
        ASM_DEQUANT=dequant_path(x.dtype) == "asm",
        **config.kernel_args(), **config.launch_options(), **pdl.launch_kwargs(x),
    )
    return gemm.finish(split, out, bias)


def _make_inputs(problem: Problem, device: torch.device, gen: torch.Generator) -> W4A16Inputs:
    M, N, K = problem["M"], problem["N"], problem["K"]
    dtype = DTYPE_NAMES[problem.dtype]
    group, symmetric = SCHEMES[problem.opt("quant")]
    x = torch.randn((M, K), device=device, dtype=dtype, generator=gen)
    w = torch.randn((N, K), device=device, dtype=torch.float32, generator=gen)  # nn.Linear layout
    bias = torch.randn((N,), device=device, dtype=dtype, generator=gen) if problem.opt("bias") == "1" else None
    return W4A16Inputs(x, quantize_int4(w, group, symmetric), bias, weight=w.to(dtype), weight_f32=w)


def _reference(inputs: W4A16Inputs) -> torch.Tensor:
    out = inputs.x.float() @ inputs.w.dequantize(torch.float32).t()
    return out + inputs.bias.float() if inputs.bias is not None else out


def _baseline(inputs: W4A16Inputs) -> torch.Tensor:
    # The op the quantized kernel replaces: the float layer in x's dtype.
    weight = inputs.weight if inputs.weight is not None else inputs.w.dequantize(inputs.x.dtype)
    if inputs.bias is not None:
        return torch.addmm(inputs.bias, inputs.x, weight.t())
    return torch.matmul(inputs.x, weight.t())


def block_k_within_group(config: Config, problem: Problem, device: DeviceInfo) -> str | None:
    """A K tile must lie inside one quantization group, so that one scale vector serves it."""
    group, _ = SCHEMES[problem.opt("quant")]
    if config["BLOCK_K"] > group or group % config["BLOCK_K"]:
        return f"BLOCK_K={config['BLOCK_K']} must divide the quantization group of {group} ({problem.opt('quant')})"
    return None


def _smem(config: Config, problem: Problem) -> int:
    # The packed tile streams at half a byte a weight; each K step may start a group, so its
    # scales (and zero points) are loaded with the tiles (int4-g32-asym, BLOCK_K 32: the
    # sm_90 compile buffered them with the tiles).
    params = config["BLOCK_N"] * 4 * (1 if SCHEMES[problem.opt("quant")][1] else 2)
    return gemm.shared_memory(config, problem, weight_bits=4, params_per_stage=params)


def _acc_elements(config: Config, problem: Problem) -> int:
    # The accumulator plus the tile's dot result, which is scaled before it is added.
    return 2 * config["BLOCK_M"] * config["BLOCK_N"]


def _heuristic(problem: Problem, device: DeviceInfo) -> Config:
    group, _ = SCHEMES[problem.opt("quant")]
    # Large M: 128x64 tiles. 128x128 with 8 warps took all 255 registers for sm_90 and, under
    # triton 3.6 (the GPU image's), spilled in the K loop at M=2048 int4-g32 with bias; 128x64
    # compiles to 164-168 registers and no spill with both schemes (tests/test_sm90_compile.py).
    return gemm.heuristic(SPEC, problem, device, smem=_smem, weight_bits=4, max_block_k=gemm.weight_only_max_block_k(problem, device, group),
                          large_block_n=64, block_k_min=MIN_BLOCK_K)


def _bytes(problem: Problem) -> int:
    M, N, K = problem["M"], problem["N"], problem["K"]
    group, symmetric = SCHEMES[problem.opt("quant")]
    es = C.ELEMENT_BYTES[problem.dtype]
    groups = C.cdiv(K, group)
    params = N * groups * 4 * (1 if symmetric else 2)  # fp32 scales (and zero points)
    bias = N * es if problem.opt("bias") == "1" else 0
    return M * K * es + N * groups * group // 2 + params + M * N * es + bias


SPEC = KernelSpec(
    name="matmul_w4a16",
    summary="y = x @ dequant(W_int4).T (+ bias); group-wise int4 weights (sym/asym), split-K",
    dims=("M", "N", "K"),
    dtypes=("fp32", "fp16", "bf16"),
    options=(
        Option("quant", tuple(SCHEMES), "int4-g128", "int4 group size along K; -asym adds zero points"),
        Option("bias", ("0", "1"), "0", "add a bias vector of length N"),
    ),
    params=gemm.tile_params(block_k=(32, 64, 128), operand="weight"),
    constraints=gemm.tile_constraints(_smem, _acc_elements, block_k_within_group, block_k_min=MIN_BLOCK_K),
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
    # As for int8: x * (q - zero) is exact in fp32 and the group scale one more rounding per
    # tile, so the kernel matches the fp32 reference to summation order; the per-dtype bound holds.
    tolerance=lambda p: tolerance_for(p.dtype),
    example={"M": 13, "N": 257, "K": 129},
)


def matmul_w4a16(x: torch.Tensor, w: Int4Weight, bias: torch.Tensor | None = None, *,
                 config: Config | dict[str, int] | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """y = x @ w.dequantize().T (+ bias) with the group-wise int4 weight-only Triton kernel.

    Args: x [M, K] fp32/fp16/bf16; w from `quantize_int4` (group size 32, 64 or 128,
        symmetric or not); bias [N] in x's dtype. config: tile config (missing parameters
        come from the heuristic); None asks the active config source. out: [M, N] in x's dtype.
    Returns: y [M, N] in x's dtype.
    Raises: InvalidProblem (also for other group sizes), InvalidConfig, UnsupportedOnDevice.
    """
    return run(SPEC, W4A16Inputs(x, w, bias), config, out=out)
