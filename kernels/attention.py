"""attention: prefill self-attention, flash-attention style (online softmax, fp32 statistics).

q [B, S, H, D], k and v [B, S, HKV, D] with any strides (the runtime passes views of one
fused QKV projection output; the input factory does exactly that), GQA (H % HKV == 0),
causal or not, optional right-padded lengths seq_lens [B] int32: sequence b occupies the
positions < seq_lens[b]; keys at or past it are masked and output rows at or past it are
zeros. D need not be a power of two: tiles are padded to BLOCK_D and masked.

One program per (batch, query head, BLOCK_M query rows). It walks the keys in BLOCK_N
tiles, first the tiles every row of the block may see with no score mask, then the tiles
that need one (the causal diagonal, the sequence end). A causal program stops at its
diagonal. Scores are scaled by scale*log2(e) so the softmax uses exp2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from . import constraints as C
from .accuracy import tolerance_for
from .device import DTYPE_NAMES, DeviceInfo, dtype_name
from .errors import InvalidProblem
from .layout import check_out_writable
from .launching import needs_dot_upcast, run
from .spec import Config, KernelSpec, Option, Param, Problem, Tolerance

LOG2E = 1.4426950408889634
MAX_HEAD_DIM = 256


@triton.jit
def _attn_tiles(
    acc, l_i, m_i, q, k_base, v_base, lo, hi, seq_len, qk_scale,
    stride_ks, stride_kd, stride_vs, stride_vd,
    offs_m, offs_n, offs_d, d_mask,
    MASKED: tl.constexpr, CAUSAL: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    # Key tiles [lo, hi). Unmasked tiles (MASKED=False) lie wholly below the diagonal and
    # before seq_len, so only the head-dim padding is masked on their loads.
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        if MASKED:
            kv_mask = cols < seq_len
            kt = tl.load(k_base + offs_d[:, None] * stride_kd + cols[None, :] * stride_ks,
                         mask=d_mask[:, None] & kv_mask[None, :], other=0.0)
        else:
            kt = tl.load(k_base + offs_d[:, None] * stride_kd + cols[None, :] * stride_ks,
                         mask=d_mask[:, None], other=0.0)
        if UPCAST:
            kt = kt.to(tl.float32)
        qk = tl.dot(q, kt, input_precision=INPUT_PRECISION) * qk_scale  # [BLOCK_M, BLOCK_N], log2 units
        if MASKED:
            valid = kv_mask[None, :]
            if CAUSAL:
                valid = valid & (cols[None, :] <= offs_m[:, None])
            # -inf cannot reach a whole row: key 0 is valid for every row and is always in
            # the first tile a program visits, so m_i is finite from then on.
            qk = tl.where(valid, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        if MASKED:
            v = tl.load(v_base + cols[:, None] * stride_vs + offs_d[None, :] * stride_vd,
                        mask=kv_mask[:, None] & d_mask[None, :], other=0.0)
        else:
            v = tl.load(v_base + cols[:, None] * stride_vs + offs_d[None, :] * stride_vd,
                        mask=d_mask[None, :], other=0.0)
        if UPCAST:
            v = v.to(tl.float32)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=INPUT_PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _attention_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, lens_ptr,
    S, H, qk_scale,
    stride_qb, stride_qs, stride_qh, stride_qd,
    stride_kb, stride_ks, stride_kh, stride_kd,
    stride_vb, stride_vs, stride_vh, stride_vd,
    stride_ob, stride_os, stride_oh, stride_od, stride_lens,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_LENS: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    b = (pid_bh // H).to(tl.int64)  # int64: batch * stride overflows int32 on large caches
    h = (pid_bh % H).to(tl.int64)
    hk = h // GROUP
    # Query blocks in reverse: under a causal mask the last blocks do the most work, and
    # launching them first evens out the tail of the grid.
    start_m = (tl.num_programs(1) - 1 - tl.program_id(1)) * BLOCK_M
    if HAS_LENS:
        seq_len = min(tl.load(lens_ptr + b * stride_lens), S)  # clamped: a bad length cannot read out of bounds
    else:
        seq_len = S

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < HEAD_DIM

    q = tl.load(q_ptr + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qs + offs_d[None, :] * stride_qd,
                mask=(offs_m[:, None] < seq_len) & d_mask[None, :], other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    k_base = k_ptr + b * stride_kb + hk * stride_kh
    v_base = v_ptr + b * stride_vb + hk * stride_vh

    if CAUSAL:
        kv_end = min(seq_len, start_m + BLOCK_M)
        full_end = (min(seq_len, start_m + 1) // BLOCK_N) * BLOCK_N
    else:
        kv_end = seq_len
        full_end = (seq_len // BLOCK_N) * BLOCK_N
    # A block wholly past the sequence end only writes zeros.
    kv_end = tl.where(start_m < seq_len, kv_end, 0)
    full_end = min(full_end, kv_end)

    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    acc, l_i, m_i = _attn_tiles(acc, l_i, m_i, q, k_base, v_base, 0, full_end, seq_len, qk_scale,
                                stride_ks, stride_kd, stride_vs, stride_vd, offs_m, offs_n, offs_d, d_mask,
                                False, CAUSAL, UPCAST, INPUT_PRECISION, BLOCK_N)
    acc, l_i, m_i = _attn_tiles(acc, l_i, m_i, q, k_base, v_base, full_end, kv_end, seq_len, qk_scale,
                                stride_ks, stride_kd, stride_vs, stride_vd, offs_m, offs_n, offs_d, d_mask,
                                True, CAUSAL, UPCAST, INPUT_PRECISION, BLOCK_N)

    l_safe = tl.where(l_i > 0.0, l_i, 1.0)
    out = tl.where((offs_m < seq_len)[:, None], acc / l_safe[:, None], 0.0)
    tl.store(o_ptr + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_os + offs_d[None, :] * stride_od,
             out.to(o_ptr.dtype.element_ty), mask=(offs_m[:, None] < S) & d_mask[None, :])


@dataclass(frozen=True)
class AttentionInputs:
    q: torch.Tensor  # [B, S, H, D], any strides
    k: torch.Tensor  # [B, S, HKV, D], any strides
    v: torch.Tensor  # [B, S, HKV, D], any strides
    causal: bool = True
    seq_lens: torch.Tensor | None = None  # [B] int32, right padding
    scale: float | None = None  # None: 1/sqrt(D)


def _problem_of(inputs: AttentionInputs) -> Problem:
    q, k, v, lens = inputs.q, inputs.k, inputs.v, inputs.seq_lens
    if q.dim() != 4 or k.dim() != 4 or k.shape != v.shape:
        raise InvalidProblem(f"attention needs q [B, S, H, D] and k, v [B, S, HKV, D]; got "
                             f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    B, S, H, D = q.shape
    if (k.shape[0], k.shape[1], k.shape[3]) != (B, S, D):
        raise InvalidProblem(f"attention: k, v {tuple(k.shape)} do not match q {tuple(q.shape)} in B, S or D")
    if not (q.dtype == k.dtype == v.dtype):
        raise InvalidProblem(f"attention needs q, k, v of one dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if lens is not None and (tuple(lens.shape) != (B,) or lens.dtype != torch.int32):
        raise InvalidProblem(f"attention seq_lens must be int32 [B]={B}; got {lens.dtype} {tuple(lens.shape)}")
    return SPEC.problem({"B": B, "H": H, "HKV": k.shape[2], "S": S, "D": D}, dtype_name(q.dtype),
                        {"causal": inputs.causal, "varlen": lens is not None})


def _check_problem(problem: Problem) -> str | None:
    if problem["H"] % problem["HKV"]:
        return f"H={problem['H']} is not a multiple of HKV={problem['HKV']}"
    if problem["D"] > MAX_HEAD_DIM:
        return f"head dim D={problem['D']} exceeds {MAX_HEAD_DIM}"
    return None


def check_out(out: torch.Tensor, shape: tuple[int, ...], like: torch.Tensor) -> None:
    """Raise InvalidProblem unless a caller's `out` has the output's shape, dtype and device
    (any strides, but one address per element)."""
    if tuple(out.shape) != shape or out.dtype != like.dtype or out.device != like.device:
        raise InvalidProblem(f"out must be {like.dtype} {shape} on {like.device}; got "
                             f"{out.dtype} {tuple(out.shape)} on {out.device}")
    check_out_writable("attention", out)


def _launch(inputs: AttentionInputs, config: Config, out: torch.Tensor | None = None) -> torch.Tensor:
    q, k, v, lens = inputs.q, inputs.k, inputs.v, inputs.seq_lens
    B, S, H, D = q.shape
    if out is None:
        out = torch.empty((B, S, H, D), device=q.device, dtype=q.dtype)
    else:
        check_out(out, (B, S, H, D), q)
    scale = inputs.scale if inputs.scale is not None else 1.0 / math.sqrt(D)
    grid = (B * H, triton.cdiv(S, config["BLOCK_M"]))
    _attention_kernel[grid](
        q, k, v, out, lens if lens is not None else q,
        S, H, scale * LOG2E,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(), lens.stride(0) if lens is not None else 0,
        GROUP=H // k.shape[2], HEAD_DIM=D,
        CAUSAL=inputs.causal, HAS_LENS=lens is not None, UPCAST=needs_dot_upcast(q.dtype),
        # fp32 inputs are multiplied in full fp32 (as torch does by default), not TF32.
        INPUT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        BLOCK_D=C.padded(D), **config.kernel_args(), **config.launch_options(),
    )
    return out


def random_lengths(batch: int, longest: int, device: torch.device, gen: torch.Generator) -> torch.Tensor:
    """int32 [batch] lengths drawn uniformly from [1, longest], one of them (at random) = longest."""
    lens = torch.randint(1, longest + 1, (batch,), device=device, generator=gen, dtype=torch.int64)
    at = torch.randint(0, batch, (1,), device=device, generator=gen)
    lens[at] = longest
    return lens.to(torch.int32)


def expected_length_sums(batch: int, longest: int) -> tuple[float, float]:
    """E[sum n] and E[sum n^2] over `random_lengths(batch, longest)`: one sequence at
    `longest`, the others uniform in [1, longest]."""
    mean = (longest + 1) / 2
    mean_sq = (longest + 1) * (2 * longest + 1) / 6
    return longest + (batch - 1) * mean, longest**2 + (batch - 1) * mean_sq


def _make_inputs(problem: Problem, device: torch.device, gen: torch.Generator) -> AttentionInputs:
    B, H, HKV, S, D = (problem[d] for d in ("B", "H", "HKV", "S", "D"))
    dtype = DTYPE_NAMES[problem.dtype]
    # One fused QKV projection output [B, S, (H + 2 HKV) D]; q, k, v are strided views of it.
    qkv = torch.randn((B, S, (H + 2 * HKV) * D), device=device, dtype=dtype, generator=gen)
    q, k, v = qkv.split([H * D, HKV * D, HKV * D], dim=-1)
    lens = random_lengths(B, S, device, gen) if problem.opt("varlen") == "1" else None
    return AttentionInputs(q.unflatten(-1, (H, D)), k.unflatten(-1, (HKV, D)), v.unflatten(-1, (HKV, D)),
                           causal=problem.opt("causal") == "1", seq_lens=lens)


def _masks(inputs: AttentionInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """(allowed [B, 1, S, S] query-to-key, rows [B, S] inside their sequence)."""
    B, S = inputs.q.shape[:2]
    pos = torch.arange(S, device=inputs.q.device)
    lens = inputs.seq_lens.long() if inputs.seq_lens is not None else torch.full((B,), S, device=pos.device)
    inside = pos[None, :] < lens[:, None]  # [B, S]
    allowed = inside[:, None, None, :].expand(B, 1, S, S)
    if inputs.causal:
        allowed = allowed & (pos[None, :] <= pos[:, None])
    return allowed, inside


def _reference(inputs: AttentionInputs) -> torch.Tensor:
    q, k, v = (t.float().transpose(1, 2) for t in (inputs.q, inputs.k, inputs.v))  # [B, heads, S, D]
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scale = inputs.scale if inputs.scale is not None else 1.0 / math.sqrt(q.shape[-1])
    allowed, inside = _masks(inputs)
    scores = (q @ k.transpose(-1, -2) * scale).masked_fill(~allowed, float("-inf"))
    out = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2)  # [B, S, H, D]
    return out.masked_fill(~inside[:, :, None, None], 0.0)


def _baseline(inputs: AttentionInputs) -> torch.Tensor:
    q, k, v = (t.transpose(1, 2) for t in (inputs.q, inputs.k, inputs.v))
    gqa = q.shape[1] != k.shape[1]
    if inputs.seq_lens is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=inputs.causal, scale=inputs.scale,
                                              enable_gqa=gqa).transpose(1, 2)
    allowed, inside = _masks(inputs)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=inputs.scale, enable_gqa=gqa)
    return out.transpose(1, 2).masked_fill(~inside[:, :, None, None], 0.0)


def _smem(config: Config, problem: Problem) -> int:
    # The q tile stays resident; each pipeline stage buffers one k and one v tile. Compiled
    # for sm_90 (Triton 3.9, bf16, 16-aligned strides), D=128, BLOCK_M=128, BLOCK_N=64,
    # 3 stages used exactly this, 128 KiB.
    es = C.ELEMENT_BYTES[problem.dtype]
    bd = C.padded(problem["D"])
    return (config["BLOCK_M"] + 2 * config["num_stages"] * config["BLOCK_N"]) * bd * es


# Registers: the fp32 accumulator [BLOCK_M, BLOCK_D] and score tile [BLOCK_M, BLOCK_N],
# spread over the warps that split the rows (16 rows per warp at most). Compiling 54 bf16
# configs for sm_90 (Triton 3.9; D 64/128/256, BLOCK_M 64-256, BLOCK_N 32-128, 4/8 warps)
# and reading cuobjdump's stack use, the configs above 144 such values per thread spilled
# but one; below, two spilled <= 120 bytes. fp32 inputs take the FMA dot (no tensor cores
# for IEEE fp32) and spilled even at BLOCK_M=BLOCK_N=64: this bound is for fp16/bf16.
MAX_LIVE_PER_THREAD = 144


def registers_fit(config: Config, problem: Problem, device: DeviceInfo) -> str | None:
    """Reject configs whose accumulator and score tile would spill registers (see above)."""
    threads = 32 * min(config["num_warps"], max(1, config["BLOCK_M"] // 16))
    live = config["BLOCK_M"] * (C.padded(problem["D"]) + config["BLOCK_N"]) // threads
    if live > MAX_LIVE_PER_THREAD:
        return (f"accumulator and scores need {live} registers per thread with num_warps={config['num_warps']} "
                f"(spills beyond {MAX_LIVE_PER_THREAD})")
    return None


# fp32 on a GPU: the dots run on FMAs (ieee), whose operand layouts hold far more per thread
# than tensor-core ones. Compiled for sm_90 (tests/test_sm90_compile.py), the bf16 tile
# (128 x 64) spilled thousands of registers in the key loop at D = 64, 128 and 256, and so did
# 32 x 16 with 4 warps at D = 128 under triton 3.6 (the GPU image's; not under 3.9). 32 x 16
# with 8 warps spilled none at D = 32 to 256 under both (52 to 106 registers).
FP32_GPU_TILE = Config(BLOCK_M=32, BLOCK_N=16, num_warps=8, num_stages=2)


def _heuristic(problem: Problem, device: DeviceInfo) -> Config:
    B, H, S, D = problem["B"], problem["H"], problem["S"], problem["D"]
    if device.kind != "cuda":
        # The interpreter pays per program and per loop step, not per FLOP: few, large tiles.
        cfg = Config(BLOCK_M=128, BLOCK_N=128, num_warps=8, num_stages=2)
    elif problem.dtype == "fp32":
        cfg = FP32_GPU_TILE
    else:
        # Triton tutorial 06's Hopper choice: 128 query rows, 64-key steps, 3 stages;
        # 8 warps once D=128 makes the accumulator large.
        cfg = Config(BLOCK_M=128, BLOCK_N=64, num_warps=4 if D <= 64 else 8, num_stages=3)
    cfg = cfg.replace(BLOCK_M=min(cfg["BLOCK_M"], C.padded(S)), BLOCK_N=min(cfg["BLOCK_N"], C.padded(S)))
    if device.kind == "cuda":
        # Smaller query blocks while the grid would leave SMs idle (short prompts, few heads).
        while cfg["BLOCK_M"] > 64 and B * H * C.cdiv(S, cfg["BLOCK_M"]) < device.sm_count:
            cfg = cfg.replace(BLOCK_M=cfg["BLOCK_M"] // 2)
    return C.shrink_to_fit(SPEC, cfg, problem, device, ("num_stages", "BLOCK_N", "BLOCK_M"))


# -- tolerance --------------------------------------------------------------------------
# On a GPU, P is rounded to the input dtype for the PV dot (as in FlashAttention), so a
# row's error is about u/sqrt(3) of that row's own magnitude (u: half an ulp). compare()
# scales atol by the RMS over all rows, and attention rows are not alike: a row that sees n
# keys has mean square ~min(1, e/n) on unit-variance inputs (scores ~N(0,1), n/e effective
# keys), so under a causal mask or with short sequences the first rows are up to `spread`
# = max row RMS / global RMS larger than the RMS. Emulating the GPU rounding on factory
# inputs (3-10 draws each), the atol needed, as a multiple of tolerance_for's, was: causal
# S=257: 0.50 (spread 4.2), S=1024: 0.87 (7.5), S=4096: 1.56 (13.6); non-causal S=2048: 0.49
# (1); varlen B=8 S=1024: 0.98 (non-causal, spread 19.4), 1.31 (causal, 8.0); decode B=64
# L=4096: 1.16 (6.9). That is at most ~0.17 x spread, so atol grows as 0.3 x spread (about 2x
# headroom) and never below tolerance_for's; checked the same way with these bounds, the
# largest error/bound was 0.73 (fp16, causal varlen, a 3-token sequence forced into the
# batch). fp32 keeps tolerance_for's: P stays fp32 there.
SPREAD_ATOL = 0.3


def harmonic(n: int) -> float:
    """H_n = 1 + 1/2 + ... + 1/n (the asymptotic series from n = 100 on: error < 1e-10)."""
    if n < 100:
        return sum(1.0 / i for i in range(1, n + 1))
    return math.log(n) + 0.5772156649015329 + 1 / (2 * n) - 1 / (12 * n * n)


def row_power(n: int) -> float:
    """Mean square of an output row that attends to n keys (unit-variance inputs)."""
    return min(1.0, math.e / n)


def mean_row_power(longest: int) -> float:
    """E[row_power(n)] for n uniform in [1, longest]."""
    if longest <= 2:
        return 1.0
    return (2 + math.e * (harmonic(longest) - 1.5)) / longest


def _causal_power(n: int) -> float:
    """Sum of row_power over the n rows of a causal sequence of length n."""
    return float(n) if n <= 2 else 2 + math.e * (harmonic(n) - 1.5)


def _mean_causal_power(longest: int) -> float:
    """E[_causal_power(n)] for n uniform in [1, longest] (sum_{n<=S} H_n = (S+1) H_S - S)."""
    if longest <= 2:
        return sum(_causal_power(n) for n in range(1, longest + 1)) / longest
    sum_h = (longest + 1) * harmonic(longest) - longest - 2.5  # H_3 + ... + H_S
    return (3 + 2 * (longest - 2) + math.e * (sum_h - 1.5 * (longest - 2))) / longest


def spread_tolerance(dtype: str, spread: float) -> Tolerance:
    """tolerance_for(dtype) with atol widened to SPREAD_ATOL * spread for 2-byte dtypes."""
    base = tolerance_for(dtype)
    if dtype == "fp32":
        return base
    return Tolerance(rtol=base.rtol, atol=base.atol * max(1.0, SPREAD_ATOL * spread))


def _spread(problem: Problem) -> float:
    B, S = problem["B"], problem["S"]
    causal = problem.opt("causal") == "1"
    varlen = problem.opt("varlen") == "1" and B > 1  # with B = 1 the one length is S
    if causal:
        power = _causal_power(S) + (B - 1) * (_mean_causal_power(S) if varlen else _causal_power(S))
    else:
        # A sequence of n rows attending to n keys holds n * row_power(n) = min(n, e).
        power = min(S, math.e) + (B - 1) * (_mean_min_e(S) if varlen else min(S, math.e))
    row_max = 1.0 if causal or varlen else row_power(S)  # varlen: a 2-token sequence may be drawn
    return math.sqrt(row_max * B * S / power)


def _mean_min_e(longest: int) -> float:
    """E[min(n, e)] for n uniform in [1, longest]."""
    short = min(longest, 2)  # n = 1, 2 hold n; every longer sequence holds e
    return (short * (short + 1) / 2 + math.e * (longest - short)) / longest


def _flops(problem: Problem) -> int:
    # Two matmuls (QK^T, PV), 2 flops per multiply-add, over the unmasked (query, key)
    # pairs only: n^2 for a sequence of n, n(n+1)/2 under the causal mask. With varlen the
    # lengths are the input factory's, so the count is its expectation.
    B, H, S, D = problem["B"], problem["H"], problem["S"], problem["D"]
    if problem.opt("varlen") == "1":
        sum_n, sum_n2 = expected_length_sums(B, S)
    else:
        sum_n, sum_n2 = B * S, B * S * S
    pairs = (sum_n2 + sum_n) / 2 if problem.opt("causal") == "1" else sum_n2
    return round(4 * H * D * pairs)


def _bytes(problem: Problem) -> int:
    # Compulsory traffic: q, k, v of the tokens inside their sequences read once, every
    # output row (padding rows too, as zeros) written once.
    B, H, HKV, S, D = (problem[d] for d in ("B", "H", "HKV", "S", "D"))
    tokens = expected_length_sums(B, S)[0] if problem.opt("varlen") == "1" else B * S
    es = C.ELEMENT_BYTES[problem.dtype]
    return round((tokens * (H + 2 * HKV) * D + B * S * H * D) * es)


SPEC = KernelSpec(
    name="attention",
    summary="prefill attention: flash-style online softmax, causal or not, GQA, varlen; fp32 statistics",
    dims=("B", "H", "HKV", "S", "D"),
    dtypes=("fp32", "fp16", "bf16"),
    options=(
        Option("causal", ("1", "0"), "1", "mask keys after the query position"),
        Option("varlen", ("0", "1"), "0", "per-sequence lengths seq_lens [B] (right padding)"),
    ),
    params=(
        Param("BLOCK_M", (16, 32, 64, 128, 256), "query rows per program"),
        Param("BLOCK_N", (16, 32, 64, 128), "keys per loop step"),
        Param("num_warps", (4, 8)),
        Param("num_stages", (1, 2, 3, 4)),
    ),
    constraints=(
        C.power_of_two("BLOCK_M", "BLOCK_N", "num_warps"),
        C.block_fits("BLOCK_M", "S"),
        C.block_fits("BLOCK_N", "S"),
        C.shared_memory_fits(_smem),
        registers_fit,
    ),
    heuristic=_heuristic,
    make_inputs=_make_inputs,
    problem_of=_problem_of,
    reference=_reference,
    launch=_launch,
    baseline=_baseline,
    baseline_name="torch.nn.functional.scaled_dot_product_attention",
    flops=_flops,
    bytes_moved=_bytes,
    tolerance=lambda p: spread_tolerance(p.dtype, _spread(p)),
    example={"B": 2, "H": 9, "HKV": 3, "S": 257, "D": 64},
    check_problem=_check_problem,
    notes="q [B,S,H,D], k/v [B,S,HKV,D] with any strides; seq_lens [B] int32 right padding; "
          "varlen FLOPs and bytes are the expectation over the input factory's lengths",
)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = True,
              seq_lens: torch.Tensor | None = None, scale: float | None = None,
              config: Config | dict[str, int] | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T * scale, masked) v for a batch of prompts (prefill).

    Args: q [B, S, H, D]; k, v [B, S, HKV, D] (any strides, H % HKV == 0, D <= 256).
        causal: mask keys after each query. seq_lens: int32 [B], right padding: keys at or
        past seq_lens[b] are masked and those output rows are zeros (values are clamped to
        S). scale: default 1/sqrt(D). config: tile config (missing parameters come from the
        heuristic); None asks the active config source. out: [B, S, H, D] buffer to write.
    Returns: [B, S, H, D] in q's dtype.
    Raises: InvalidProblem, InvalidConfig, UnsupportedOnDevice.
    """
    return run(SPEC, AttentionInputs(q, k, v, causal, seq_lens, scale), config, out=out)
