"""attention_decode: one new query token per sequence against a KV cache, split-KV
(flash-decoding), GQA, per-sequence lengths; fp32 statistics.

q [B, H, D], k_cache and v_cache [B, L, HKV, D] (any strides), seq_lens [B] int32 in
[1, L]: sequence b attends to cache positions < seq_lens[b].

Pass 1, grid (B, HKV * group blocks, NUM_SPLITS): a program takes the query heads of one
KV head (the GQA group, padded to at least 16 rows so tl.dot applies; groups beyond 64
heads, e.g. MQA, take several blocks), so each k/v tile is read once for the whole group,
and walks its share of that sequence's BLOCK_N tiles. It writes a
partial output, already normalized, and its log-sum-exp (base 2). A split that owns no
tile (a short sequence) writes lse = -inf. Pass 2 weighs the splits by exp2(lse_s - max lse)
and normalizes: by default inside pass 1's launch, by the last split of each program to
finish (counted as split-K's serial sum counts, kernels/splitk.py), else as a launch of its
own, grid (B, HKV * group blocks). With NUM_SPLITS = 1 pass 1 writes the output itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from . import constraints as C
from . import pdl, splitk
from .attention import (LOG2E, MAX_HEAD_DIM, check_out, expected_length_sums, mean_row_power, random_lengths,
                        spread_tolerance)
from .device import DTYPE_NAMES, DeviceInfo, dtype_name
from .errors import InvalidProblem
from .launching import needs_dot_upcast, run
from .spec import Config, KernelSpec, Param, Problem

MAX_SPLITS = 64
MAX_GROUP_ROWS = 64  # query heads per program; larger groups (MQA) are split across programs


@triton.jit
def _decode_split_kernel(
    q_ptr, k_ptr, v_ptr, lens_ptr, o_ptr, lse_ptr, out_ptr, cnt_ptr,
    L, qk_scale,
    stride_qb, stride_qh, stride_qd,
    stride_kb, stride_kl, stride_kh, stride_kd,
    stride_vb, stride_vl, stride_vh, stride_vd,
    stride_ob, stride_oh, stride_os, stride_od,
    stride_lb, stride_lh, stride_ls, stride_lens, stride_outb, stride_outh, stride_outd,
    GROUP: tl.constexpr, GROUP_BLOCKS: tl.constexpr, HEAD_DIM: tl.constexpr, NUM_SPLITS: tl.constexpr,
    UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr, SERIAL: tl.constexpr,
    BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, USE_GDC: tl.constexpr,
):
    pdl.start(USE_GDC)  # nothing is read before the previous kernel completes
    b = tl.program_id(0).to(tl.int64)  # int64: batch * stride overflows int32 on large caches
    hk = (tl.program_id(1) // GROUP_BLOCKS).to(tl.int64)
    group_start = (tl.program_id(1) % GROUP_BLOCKS) * BLOCK_G
    split = tl.program_id(2)
    seq_len = min(tl.load(lens_ptr + b * stride_lens), L)  # clamped: a bad length cannot read out of bounds

    # This split's share of the sequence's tiles (not of L: short sequences split finer).
    tiles_per_split = tl.cdiv(tl.cdiv(seq_len, BLOCK_N), NUM_SPLITS)
    lo = split * tiles_per_split * BLOCK_N
    hi = min(lo + tiles_per_split * BLOCK_N, seq_len)

    offs_g = group_start + tl.arange(0, BLOCK_G)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    g_mask = offs_g < GROUP
    d_mask = offs_d < HEAD_DIM
    heads = hk * GROUP + offs_g

    q = tl.load(q_ptr + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :] * stride_qd,
                mask=g_mask[:, None] & d_mask[None, :], other=0.0)  # [BLOCK_G, BLOCK_D]
    if UPCAST:
        q = q.to(tl.float32)
    k_base = k_ptr + b * stride_kb + hk * stride_kh
    v_base = v_ptr + b * stride_vb + hk * stride_vh

    m_i = tl.full((BLOCK_G,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_G,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_G, BLOCK_D), dtype=tl.float32)
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        kv_mask = cols < hi
        kt = tl.load(k_base + offs_d[:, None] * stride_kd + cols[None, :] * stride_kl,
                     mask=d_mask[:, None] & kv_mask[None, :], other=0.0)
        if UPCAST:
            kt = kt.to(tl.float32)
        qk = tl.dot(q, kt, input_precision=INPUT_PRECISION) * qk_scale  # [BLOCK_G, BLOCK_N], log2 units
        # The first tile starts at lo < hi, so every row sees a valid key and m_i turns finite.
        qk = tl.where(kv_mask[None, :], qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + cols[:, None] * stride_vl + offs_d[None, :] * stride_vd,
                    mask=kv_mask[:, None] & d_mask[None, :], other=0.0)
        if UPCAST:
            v = v.to(tl.float32)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=INPUT_PRECISION)
        m_i = m_new

    # An empty split (no tile) has l_i = 0: it writes zeros and lse = -inf (weight 0).
    out = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]
    o_mask = g_mask[:, None] & d_mask[None, :]
    o_ptrs = o_ptr + b * stride_ob + heads[:, None] * stride_oh + split * stride_os + offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(o_ptr.dtype.element_ty), mask=o_mask)
    if NUM_SPLITS > 1:
        lse = tl.where(l_i > 0.0, m_i + tl.math.log2(tl.where(l_i > 0.0, l_i, 1.0)), float("-inf"))
        tl.store(lse_ptr + b * stride_lb + heads * stride_lh + split * stride_ls, lse, mask=g_mask)
        # The last split of this (sequence, head block) to finish combines them, as split-K's
        # serial sum does (kernels/splitk.py).
        if SERIAL and splitk.last_to_arrive(cnt_ptr + b * tl.num_programs(1) + tl.program_id(1), NUM_SPLITS):
            part_base = o_ptr + b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :] * stride_od
            out = _combine(part_base, lse_ptr + b * stride_lb + heads * stride_lh, stride_os, stride_ls,
                           o_mask, g_mask, NUM_SPLITS, ".cg")
            tl.store(out_ptr + b * stride_outb + heads[:, None] * stride_outh + offs_d[None, :] * stride_outd,
                     out.to(out_ptr.dtype.element_ty), mask=o_mask)


@triton.jit
def _combine(part_ptrs, lse_ptrs, stride_ps, stride_ls, mask, lse_mask, NUM_SPLITS: tl.constexpr,
             CACHE: tl.constexpr):
    """The splits' partial outputs (part_ptrs + s * stride_ps) weighted by exp2(lse_s - max lse)
    and normalized, split by split in order: the serial combine and the combine kernel run
    this same code, so they give the same bits. An empty split has lse = -inf (weight 0).
    CACHE: the loads' cache modifier (".cg", from L2, where other programs wrote them)."""
    m = tl.load(lse_ptrs, mask=lse_mask, other=float("-inf"), cache_modifier=CACHE)
    # Not software-pipelined (num_stages=1): a loop over splits has nothing to overlap with.
    for s in tl.range(1, NUM_SPLITS, num_stages=1):
        m = tl.maximum(m, tl.load(lse_ptrs + s * stride_ls, mask=lse_mask, other=float("-inf"),
                                  cache_modifier=CACHE))
    m = tl.where(m == float("-inf"), 0.0, m)
    total = tl.zeros(m.shape, dtype=tl.float32)
    acc = tl.zeros(part_ptrs.shape, dtype=tl.float32)  # [rows, BLOCK_D]
    for s in tl.range(NUM_SPLITS, num_stages=1):
        w = tl.math.exp2(tl.load(lse_ptrs + s * stride_ls, mask=lse_mask, other=float("-inf"),
                                 cache_modifier=CACHE) - m)
        total += w
        part = tl.load(part_ptrs + s * stride_ps, mask=mask, other=0.0, cache_modifier=CACHE)
        acc += part * w[:, None]
    return acc / tl.where(total > 0.0, total, 1.0)[:, None]


@triton.jit
def _decode_combine_kernel(
    part_ptr, lse_ptr, out_ptr,
    stride_pb, stride_ph, stride_ps, stride_pd,
    stride_lb, stride_lh, stride_ls,
    stride_ob, stride_oh, stride_od,
    GROUP: tl.constexpr, GROUP_BLOCKS: tl.constexpr, NUM_SPLITS: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_G: tl.constexpr, BLOCK_D: tl.constexpr, USE_GDC: tl.constexpr,
):
    """Pass 2 as a launch of its own, grid (B, HKV * group blocks): the heads of pass 1's programs."""
    pdl.start(USE_GDC)  # nothing is read before the previous kernel completes
    b = tl.program_id(0).to(tl.int64)
    hk = (tl.program_id(1) // GROUP_BLOCKS).to(tl.int64)
    offs_g = (tl.program_id(1) % GROUP_BLOCKS) * BLOCK_G + tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, BLOCK_D)
    g_mask = offs_g < GROUP
    mask = g_mask[:, None] & (offs_d < HEAD_DIM)[None, :]
    heads = hk * GROUP + offs_g
    out = _combine(part_ptr + b * stride_pb + heads[:, None] * stride_ph + offs_d[None, :] * stride_pd,
                   lse_ptr + b * stride_lb + heads * stride_lh, stride_ps, stride_ls, mask, g_mask, NUM_SPLITS, "")
    tl.store(out_ptr + b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :] * stride_od,
             out.to(out_ptr.dtype.element_ty), mask=mask)


@dataclass(frozen=True)
class DecodeInputs:
    q: torch.Tensor  # [B, H, D], any strides
    k_cache: torch.Tensor  # [B, L, HKV, D], any strides
    v_cache: torch.Tensor  # [B, L, HKV, D], any strides
    seq_lens: torch.Tensor  # [B] int32 in [1, L]
    scale: float | None = None  # None: 1/sqrt(D)


def _problem_of(inputs: DecodeInputs) -> Problem:
    q, k, v, lens = inputs.q, inputs.k_cache, inputs.v_cache, inputs.seq_lens
    if q.dim() != 3 or k.dim() != 4 or k.shape != v.shape:
        raise InvalidProblem(f"attention_decode needs q [B, H, D] and k_cache, v_cache [B, L, HKV, D]; got "
                             f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    B, H, D = q.shape
    if (k.shape[0], k.shape[3]) != (B, D):
        raise InvalidProblem(f"attention_decode: cache {tuple(k.shape)} does not match q {tuple(q.shape)} in B or D")
    if not (q.dtype == k.dtype == v.dtype):
        raise InvalidProblem(f"attention_decode needs q and caches of one dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if tuple(lens.shape) != (B,) or lens.dtype != torch.int32:
        raise InvalidProblem(f"attention_decode seq_lens must be int32 [B]={B}; got {lens.dtype} {tuple(lens.shape)}")
    return SPEC.problem({"B": B, "H": H, "HKV": k.shape[2], "L": k.shape[1], "D": D}, dtype_name(q.dtype))


def _check_problem(problem: Problem) -> str | None:
    if problem["H"] % problem["HKV"]:
        return f"H={problem['H']} is not a multiple of HKV={problem['HKV']}"
    if problem["D"] > MAX_HEAD_DIM:
        return f"head dim D={problem['D']} exceeds {MAX_HEAD_DIM}"
    return None


def _block_g(h: int, hkv: int) -> int:
    """Query rows per program: the GQA group, padded to at least 16 rows for tl.dot."""
    return min(C.padded(h // hkv), MAX_GROUP_ROWS)


# fp32 values per thread of the combine's [BLOCK_G, BLOCK_D] accumulator, at most, for pass 2
# to run in pass 1's launch. At 32 (an MQA group of 64 heads, D 128, 8 warps) the fp32
# default spilled 164 loads/stores in a loop for sm_90 (triton 3.6 and 3.9; 104 registers
# without the combine); at 16 (Llama-3-8B's group of 4 padded to 16 rows, D 128, 4 warps)
# none spilled in bf16, fp16 or fp32.
MAX_COMBINE_VALUES_PER_THREAD = 16


def combines_in_launch(block_g: int, block_d: int, config: Config) -> bool:
    """Whether pass 2 may run in pass 1's launch: its accumulator fits the per-thread budget."""
    return block_g * block_d <= MAX_COMBINE_VALUES_PER_THREAD * 32 * config["num_warps"]


def _launch(inputs: DecodeInputs, config: Config, out: torch.Tensor | None = None) -> torch.Tensor:
    q, k, v, lens = inputs.q, inputs.k_cache, inputs.v_cache, inputs.seq_lens
    B, H, D = q.shape
    L, HKV = k.shape[1], k.shape[2]
    if out is None:
        out = torch.empty((B, H, D), device=q.device, dtype=q.dtype)
    else:
        check_out(out, (B, H, D), q)
    scale = inputs.scale if inputs.scale is not None else 1.0 / math.sqrt(D)
    splits = config["NUM_SPLITS"]
    block_d = C.padded(D)
    if splits == 1:
        part, lse = out.unsqueeze(2), q  # [B, H, 1, D] view of out; lse is not written
        lse_strides = (0, 0, 0)
    else:
        part = torch.empty((B, H, splits, D), device=q.device, dtype=torch.float32)
        lse = torch.empty((B, H, splits), device=q.device, dtype=torch.float32)
        lse_strides = lse.stride()
    block_g = _block_g(H, HKV)
    group_blocks = triton.cdiv(H // HKV, block_g)
    programs = (B, HKV * group_blocks)
    # Split-KV's pass 2 runs inside this launch where counters can be had (kernels/splitk.py).
    serial = splits > 1 and splitk.reduce_way() == "serial" and combines_in_launch(block_g, block_d, config)
    counters = splitk.tile_counters(q.device, B * HKV * group_blocks) if serial else None
    _decode_split_kernel[(*programs, splits)](
        q, k, v, lens, part, lse, out, counters if counters is not None else lens,
        L, scale * LOG2E,
        *q.stride(), *k.stride(), *v.stride(), *part.stride(), *lse_strides, lens.stride(0), *out.stride(),
        GROUP=H // HKV, GROUP_BLOCKS=group_blocks, HEAD_DIM=D, NUM_SPLITS=splits,
        UPCAST=needs_dot_upcast(q.dtype),
        INPUT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32", SERIAL=counters is not None,
        BLOCK_G=block_g, BLOCK_D=block_d, BLOCK_N=config["BLOCK_N"], **config.launch_options(), **pdl.launch_kwargs(q),
    )
    if splits > 1 and counters is None:
        _decode_combine_kernel[programs](
            part, lse, out, *part.stride(), *lse.stride(), *out.stride(),
            GROUP=H // HKV, GROUP_BLOCKS=group_blocks, NUM_SPLITS=splits, HEAD_DIM=D, BLOCK_G=block_g,
            BLOCK_D=block_d, **pdl.launch_kwargs(q),
        )
    return out


def _make_inputs(problem: Problem, device: torch.device, gen: torch.Generator) -> DecodeInputs:
    B, H, HKV, L, D = (problem[d] for d in ("B", "H", "HKV", "L", "D"))
    dtype = DTYPE_NAMES[problem.dtype]
    # q is a strided view of the new token's fused QKV projection [B, (H + 2 HKV) D].
    qkv = torch.randn((B, (H + 2 * HKV) * D), device=device, dtype=dtype, generator=gen)
    q = qkv[:, : H * D].unflatten(-1, (H, D))
    k = torch.randn((B, L, HKV, D), device=device, dtype=dtype, generator=gen)
    v = torch.randn((B, L, HKV, D), device=device, dtype=dtype, generator=gen)
    return DecodeInputs(q, k, v, random_lengths(B, L, device, gen))


def _reference(inputs: DecodeInputs) -> torch.Tensor:
    q = inputs.q.float()[:, :, None, :]  # [B, H, 1, D]
    k, v = (t.float().transpose(1, 2) for t in (inputs.k_cache, inputs.v_cache))  # [B, HKV, L, D]
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scale = inputs.scale if inputs.scale is not None else 1.0 / math.sqrt(q.shape[-1])
    scores = (q @ k.transpose(-1, -2) * scale).masked_fill(~_key_mask(inputs), float("-inf"))
    return (torch.softmax(scores, dim=-1) @ v)[:, :, 0, :]


def _key_mask(inputs: DecodeInputs) -> torch.Tensor:
    """[B, 1, 1, L]: cache positions inside each sequence."""
    pos = torch.arange(inputs.k_cache.shape[1], device=inputs.q.device)
    return (pos[None, :] < inputs.seq_lens[:, None].long())[:, None, None, :]


def _baseline(inputs: DecodeInputs) -> torch.Tensor:
    q = inputs.q[:, :, None, :]
    k, v = inputs.k_cache.transpose(1, 2), inputs.v_cache.transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=_key_mask(inputs), scale=inputs.scale,
                                         enable_gqa=q.shape[1] != k.shape[1])
    return out[:, :, 0, :]


def _smem(config: Config, problem: Problem) -> int:
    # The q tile of the group stays resident; each pipeline stage buffers a k and a v tile.
    # Compiled for sm_90 (Triton 3.9, bf16, 3 stages) a 64-row group used exactly this and a
    # 16-row group ~30% less (one k/v buffer fewer): the estimate errs on the safe side.
    es = C.ELEMENT_BYTES[problem.dtype]
    rows = _block_g(problem["H"], problem["HKV"]) + 2 * config["num_stages"] * config["BLOCK_N"]
    return rows * C.padded(problem["D"]) * es


# Registers: the accumulator [BLOCK_G, BLOCK_D], the scores and their exponentials
# [BLOCK_G, BLOCK_N] (both live), over all threads (a 16-row tile splits its columns across
# warps). Compiling 54 bf16 configs for sm_90 (Triton 3.9; D 64/128/256, 16/64 group rows,
# BLOCK_N 64-256, 2/4/8 warps) and reading cuobjdump's stack use, the configs above 96 such
# values per thread spilled but two; below, one spilled 40 bytes.
MAX_LIVE_PER_THREAD = 96


def registers_fit(config: Config, problem: Problem, device: DeviceInfo) -> str | None:
    """Reject configs whose accumulator and score tile would spill registers (see above)."""
    rows = _block_g(problem["H"], problem["HKV"])
    live = rows * (C.padded(problem["D"]) + 2 * config["BLOCK_N"]) // (32 * config["num_warps"])
    if live > MAX_LIVE_PER_THREAD:
        return (f"accumulator and scores need {live} registers per thread with num_warps={config['num_warps']} "
                f"(spills beyond {MAX_LIVE_PER_THREAD})")
    return None


def heuristic_splits(programs: int, tiles: int, device: DeviceInfo) -> int:
    """The fewest power-of-two splits for which `programs` * splits covers the SMs, at most
    one per tile and MAX_SPLITS. On the interpreter, 1: it pays per program."""
    if device.kind != "cuda":
        return 1
    splits = 1
    while programs * splits < device.sm_count and splits * 2 <= min(tiles, MAX_SPLITS):
        splits *= 2
    return splits


def _heuristic(problem: Problem, device: DeviceInfo) -> Config:
    B, H, HKV, L = problem["B"], problem["H"], problem["HKV"], problem["L"]
    # 8 warps once the group fills more than one 16-row tile (registers_fit).
    warps = 4 if _block_g(H, HKV) <= 16 else 8
    if device.kind != "cuda":
        cfg = Config(BLOCK_N=256, NUM_SPLITS=1, num_warps=warps, num_stages=2)
    else:
        # Decode is bandwidth bound: 64-key tiles and 3 stages keep loads in flight.
        cfg = Config(BLOCK_N=64, NUM_SPLITS=1, num_warps=warps, num_stages=3)
        if problem.dtype == "fp32" and _block_g(H, HKV) >= 64:
            # fp32 dots run on FMAs: a 64-query group (MQA) with 64-key tiles spilled ~7000
            # registers in the key loop for sm_90; 32-key tiles spill none (104 registers).
            cfg = cfg.replace(BLOCK_N=32)
    cfg = cfg.replace(BLOCK_N=min(cfg["BLOCK_N"], C.padded(L)))
    programs = B * HKV * C.cdiv(H // HKV, _block_g(H, HKV))
    cfg = cfg.replace(NUM_SPLITS=heuristic_splits(programs, C.cdiv(L, cfg["BLOCK_N"]), device))
    return C.shrink_to_fit(SPEC, cfg, problem, device, ("num_stages", "BLOCK_N", "NUM_SPLITS"))


def _spread(problem: Problem) -> float:
    # Max row RMS / global RMS (see kernels/attention.py, "tolerance"): one sequence may be
    # short (row power up to 1) while the others average mean_row_power(L).
    B = problem["B"]
    return math.sqrt(B / (1 + (B - 1) * mean_row_power(problem["L"])))


def _flops(problem: Problem) -> int:
    # QK^T and PV over the keys inside each sequence; the lengths are the input factory's,
    # so the count is its expectation.
    tokens = expected_length_sums(problem["B"], problem["L"])[0]
    return round(4 * problem["H"] * problem["D"] * tokens)


def _bytes(problem: Problem) -> int:
    # The k and v cache rows inside each sequence read once, q read and the output written
    # once. The fp32 split partials (config dependent, a few KiB) are left out.
    B, H, HKV, L, D = (problem[d] for d in ("B", "H", "HKV", "L", "D"))
    tokens = expected_length_sums(B, L)[0]
    es = C.ELEMENT_BYTES[problem.dtype]
    return round((2 * tokens * HKV * D + 2 * B * H * D) * es + 4 * B)


SPEC = KernelSpec(
    name="attention_decode",
    summary="decode attention: one query token against a KV cache, split-KV (flash-decoding), GQA",
    dims=("B", "H", "HKV", "L", "D"),
    dtypes=("fp32", "fp16", "bf16"),
    params=(
        Param("BLOCK_N", (16, 32, 64, 128, 256), "cache positions per loop step"),
        Param("NUM_SPLITS", (1, 2, 4, 8, 16, 32, 64), "programs that share one sequence's cache"),
        Param("num_warps", (2, 4, 8)),
        Param("num_stages", (1, 2, 3, 4)),
    ),
    constraints=(
        C.power_of_two("BLOCK_N", "NUM_SPLITS", "num_warps"),
        C.block_fits("BLOCK_N", "L"),
        C.at_least_one_tile_per_split("NUM_SPLITS", "BLOCK_N", "L"),
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
    example={"B": 4, "H": 32, "HKV": 8, "L": 1025, "D": 128},
    check_problem=_check_problem,
    notes="q [B,H,D], caches [B,L,HKV,D] with any strides, seq_lens [B] int32 in [1, L]; "
          "FLOPs and bytes are the expectation over the input factory's lengths",
)


def attention_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, seq_lens: torch.Tensor, *,
                     scale: float | None = None, config: Config | dict[str, int] | None = None,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """One decode step: softmax(q k^T * scale) v over each sequence's cached keys.

    Args: q [B, H, D]; k_cache, v_cache [B, L, HKV, D] (any strides, H % HKV == 0,
        D <= 256); seq_lens int32 [B], sequence b attends to positions < seq_lens[b]
        (values are clamped to L; 0 gives zeros). scale: default 1/sqrt(D). config: tile
        config (missing parameters come from the heuristic); None asks the active config
        source. out: [B, H, D] buffer to write.
    Returns: [B, H, D] in q's dtype.
    Raises: InvalidProblem, InvalidConfig, UnsupportedOnDevice.
    """
    return run(SPEC, DecodeInputs(q, k_cache, v_cache, seq_lens, scale), config, out=out)
