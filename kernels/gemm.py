"""What the four matmul kernels (matmul, matmul_w8a16, matmul_w4a16, matmul_fp8) share.

Device side: the grouped tile order and the split-K range of a program, as @triton.jit
helpers, and the epilogue that stores a tile (with bias) or a split's fp32 partial (and,
where the reduction is serial, the last split's sum: kernels/splitk.py).
Host side: the tile parameters, the constraints every matmul has, the split-K buffers, and
the heuristic default. Each kernel file keeps what is its own: operand loads and
dequantization, its shared-memory estimate, its extra constraints and its quantizer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import triton
import triton.language as tl

from . import constraints as C
from . import splitk
from .device import DeviceInfo
from .spec import Config, Constraint, KernelSpec, Param, Problem
from .splitk import SplitK, store_partial


# -- device side -----------------------------------------------------------------------
@triton.jit
def grouped_tile(pid, M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """(pid_m, pid_n) of program `pid`: GROUP_M row-blocks walk the N tiles together, so the
    B tiles they share stay in L2 (Triton tutorial 03)."""
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@triton.jit
def split_k_tiles(pid_k, K, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr):
    """[k_first, k_last): this split's share of the K tiles. A trailing split may own none,
    and then stores zeros."""
    k_tiles = tl.cdiv(K, BLOCK_K)
    tiles_per_split = tl.cdiv(k_tiles, SPLIT_K)
    k_first = pid_k * tiles_per_split
    k_last = min(k_first + tiles_per_split, k_tiles)
    return k_first, k_last


@triton.jit
def store_tile(acc, out_ptr, part_ptr, lock_ptr, bias_ptr, pid_k, offs_m, offs_n, M, N, stride_om, stride_on,
               stride_bias, HAS_BIAS: tl.constexpr, SPLIT_K: tl.constexpr, SERIAL: tl.constexpr):
    """Without split-K: add the bias (element n at bias_ptr + n * stride_bias) and store in
    the output dtype. With it: the fp32 partial of split pid_k, and where SERIAL the last
    split's sum (kernels/splitk.py)."""
    if SPLIT_K == 1:
        mask_n = offs_n < N
        c_mask = (offs_m < M)[:, None] & mask_n[None, :]
        c_offs = offs_m[:, None] * stride_om + offs_n[None, :] * stride_on
        if HAS_BIAS:
            acc += tl.load(bias_ptr + offs_n * stride_bias, mask=mask_n, other=0.0).to(tl.float32)[None, :]
        tl.store(out_ptr + c_offs, acc.to(out_ptr.dtype.element_ty), mask=c_mask)
    else:
        store_partial(acc, out_ptr, part_ptr, lock_ptr, bias_ptr, pid_k, offs_m, offs_n, M, N, stride_om, stride_on,
                      stride_bias, HAS_BIAS, SPLIT_K, SERIAL)


# -- host side -------------------------------------------------------------------------
def tile_params(block_k: tuple[int, ...] = (16, 32, 64, 128), operand: str = "B") -> tuple[Param, ...]:
    return (
        Param("BLOCK_M", (16, 32, 64, 128, 256), "rows of the output per program"),
        Param("BLOCK_N", (16, 32, 64, 128, 256), "columns of the output per program"),
        Param("BLOCK_K", block_k, "K step of the inner loop"),
        Param("GROUP_M", (1, 4, 8, 16), f"M blocks that share {operand} tiles in L2"),
        Param("SPLIT_K", (1, 2, 4, 8, 16), "programs that share one tile's K range"),
        Param("num_warps", (2, 4, 8)),
        Param("num_stages", (2, 3, 4, 5)),
    )


def group_m_has_effect(config: Config, problem: Problem, device: DeviceInfo) -> str | None:
    """GROUP_M only reorders tiles across several M blocks; with one it is a duplicate config."""
    if config["GROUP_M"] < 1:
        return f"GROUP_M={config['GROUP_M']} must be >= 1"
    if config["GROUP_M"] > 1 and C.cdiv(problem["M"], config["BLOCK_M"]) == 1:
        return f"GROUP_M={config['GROUP_M']} has no effect with one M block (M={problem['M']}, BLOCK_M={config['BLOCK_M']})"
    return None


def tile_constraints(smem: Callable[[Config, Problem], int], acc_elements: Callable[[Config, Problem], int],
                     *extra: Constraint, block_k_min: int = C.MIN_DOT) -> tuple[Constraint, ...]:
    """The constraints of every matmul, with the kernel's own `extra` ones before the
    resource checks."""
    return (
        C.power_of_two("BLOCK_M", "BLOCK_N", "BLOCK_K", "num_warps"),
        C.block_fits("BLOCK_M", "M"),
        C.block_fits("BLOCK_N", "N"),
        C.block_fits("BLOCK_K", "K", minimum=block_k_min),
        *extra,
        C.at_least_one_tile_per_split("SPLIT_K", "BLOCK_K", "K"),
        group_m_has_effect,
        C.shared_memory_fits(smem),
        C.registers_fit(acc_elements),
    )


def accumulator(config: Config, problem: Problem) -> int:
    return config["BLOCK_M"] * config["BLOCK_N"]


# Buffers are aligned: int4-g32-asym at BLOCK_N 16 compiled to 128 bytes over the tiles.
SMEM_SLACK = 1024


def uses_wgmma(config: Config, problem: Problem) -> bool:
    """Whether Triton lowers a 16-bit tile's dot to Hopper's wgmma (a warpgroup of 4 warps
    owns 64 rows) rather than to mma.sync; it decides how deep the operands are buffered."""
    return C.ELEMENT_BYTES[problem.dtype] == 2 and config["BLOCK_M"] >= 64 and config["num_warps"] % 4 == 0


def shared_memory(config: Config, problem: Problem, weight_bits: int | None = None, params_per_stage: int = 0) -> int:
    """Bytes of shared memory a matmul tile takes for sm_90: an upper bound fitted to what
    Triton 3.6 and 3.9 allocate (docs/ARCHITECTURE.md, "Shared-memory estimates").

    x: [BLOCK_M, BLOCK_K] in the dtype; w: [BLOCK_K, BLOCK_N] at `weight_bits` per weight
    (None: a float weight in the dtype), plus `params_per_stage` bytes of scales loaded
    every K step. Triton's software pipeline keeps num_stages - 1 buffers of each loaded
    tile, but num_stages of those a wgmma reads straight from shared memory (x, a float
    weight); a dequantized weight feeds wgmma from one more [BLOCK_K, BLOCK_N] tile in the dtype. fp32 dots run on
    FMAs, and both operands pass through shared memory into the dot's layout. The epilogue's
    fp32 layout conversion reuses the same bytes (the max), and a weight-only kernel's scale
    vector takes BLOCK_N fp32 of scratch. SMEM_SLACK covers the allocator's alignment.
    """
    es = C.ELEMENT_BYTES[problem.dtype]
    bm, bn, bk, stages = config["BLOCK_M"], config["BLOCK_N"], config["BLOCK_K"], config["num_stages"]
    quantized = weight_bits is not None
    x = bm * bk * es
    w = bk * bn * (weight_bits if quantized else 8 * es) // 8 + params_per_stage
    if es == 4:
        tiles = (stages - 1) * (x + w) + (bm + bn) * bk * 4
    elif uses_wgmma(config, problem):
        tiles = stages * x + ((stages - 1) * w + bk * bn * es if quantized else stages * w)
    else:
        tiles = (stages - 1) * (x + w)
    return max(tiles, bm * bn * 4) + (bn * 4 if quantized else 0) + SMEM_SLACK


def heuristic_split_k(tiles: int, k_tiles: int, device: DeviceInfo, ctas_per_sm: int = 1) -> int:
    """Split K until the output tiles (times splits) reach `ctas_per_sm` programs per SM, at
    most 16 ways and one K tile per split: skinny-M problems otherwise leave most of an
    H100's 132 SMs idle. Never more programs than that, so none waits for a second wave."""
    split = 1
    while tiles * split * 2 <= device.sm_count * ctas_per_sm and split * 2 <= min(16, k_tiles):
        split *= 2
    return split


# Weight bytes a skinny (M <= 64) matmul keeps in flight per SM, where it streams weights
# from DRAM. Little's law: ~4.2 TB/s of copy bandwidth (H200, measured) times ~1 us of
# loaded DRAM latency is ~4.2 MB in flight, 32 KiB per SM of 132; twice that leaves room.
# The first H200 run's defaults aimed at 1 program per SM: the bf16 matmul at 16x4096x4096
# (128 programs, 3 stages x 16 KiB = 48 KiB per SM in flight) moved 2.8 TB/s at 6.2%
# occupancy (ncu), and an int8 tile in flight is half a bf16 one. Not yet measured: the
# kit's kernels step benches the previous rule (1 program per SM) beside this one.
SKINNY_IN_FLIGHT_BYTES = 64 * 1024
# A bound on programs per SM besides shared memory: at ~120 registers x 128 threads, the
# int4 kernel's skinny default, 4 fit in an SM's 64K registers.
MAX_SKINNY_CTAS_PER_SM = 4


def skinny_ctas_per_sm(config: Config, weight_bits: int, smem_bytes: int, device: DeviceInfo) -> int:
    """Programs per SM a skinny matmul's default aims for: enough that their weight tiles in
    flight ((num_stages - 1) stages of BLOCK_K x BLOCK_N weights each) reach
    SKINNY_IN_FLIGHT_BYTES, as many as the shared-memory estimate `smem_bytes` lets reside,
    at most MAX_SKINNY_CTAS_PER_SM, at least 1."""
    in_flight = max(1, (config["num_stages"] - 1) * config["BLOCK_K"] * config["BLOCK_N"] * weight_bits // 8)
    want = C.cdiv(SKINNY_IN_FLIGHT_BYTES, in_flight)
    fit = device.smem_per_block // max(1, smem_bytes) if device.smem_per_block else want
    return max(1, min(want, fit, MAX_SKINNY_CTAS_PER_SM))


def skinny_in_flight(tiles: int, k_tiles: int, split: int, ctas_per_sm: int, stages_in_flight: int,
                     device: DeviceInfo) -> float:
    """Weight tiles in flight per SM: the programs resident per SM (at most `ctas_per_sm`)
    times the K tiles each keeps in flight, its pipeline depth or its whole K range where
    that is shorter. More splits put more programs on an SM but shorten each one's range."""
    programs_per_sm = min(tiles * split / device.sm_count, ctas_per_sm)
    return programs_per_sm * min(stages_in_flight, k_tiles // split)


def skinny_split_k(tiles: int, k_tiles: int, M: int, K: int, weight_bits: int, ctas_per_sm: int,
                   device: DeviceInfo, stages_in_flight: int = 3) -> int:
    """A skinny matmul's split-K: from covering the SMs once, doubled up to `heuristic_split_k`
    at `ctas_per_sm` while that puts more weight tiles in flight (`skinny_in_flight`: once a
    split's K range is shorter than the pipeline, twice the programs hold half as much), then
    halved while the fp32 partials (each split writes an [M, N] one, the reduction reads it
    back) would move more than a quarter of the weight bytes the split is there to stream
    faster, but never below covering the SMs once: 2 * split * M * N * 4 <= N * K * weight_bits / 8 / 4."""
    floor = heuristic_split_k(tiles, k_tiles, device)
    cap = heuristic_split_k(tiles, k_tiles, device, ctas_per_sm)
    split = floor
    while split < cap and (skinny_in_flight(tiles, k_tiles, 2 * split, ctas_per_sm, stages_in_flight, device)
                           > skinny_in_flight(tiles, k_tiles, split, ctas_per_sm, stages_in_flight, device)):
        split *= 2
    while split > floor and 256 * split * M > K * weight_bits:
        split //= 2
    return split


# fp32 activations against dequantized weights: tl.dot in full fp32 runs on FFMAs, and at
# BLOCK_K 64 or 128 (BLOCK_M 16, BLOCK_N 64, 4 warps) the int8 and int4 kernels spilled
# hundreds of registers inside the K loop for sm_90 (triton 3.9); BLOCK_K 32 spills none.
WEIGHT_ONLY_FP32_BLOCK_K = 32


def weight_only_max_block_k(problem: Problem, device: DeviceInfo, cap: int = 128) -> int:
    """The K step cap of a weight-only quantized matmul's default: `cap`, or 32 for fp32 on a GPU."""
    if device.kind == "cuda" and problem.dtype == "fp32":
        return min(cap, WEIGHT_ONLY_FP32_BLOCK_K)
    return cap


def heuristic(spec: KernelSpec, problem: Problem, device: DeviceInfo, *,
              smem: Callable[[Config, Problem], int], weight_bits: int | None = None, large_block_k: int = 64,
              large_block_m: int = 128, large_block_n: int = 128, max_block_k: int = 128,
              block_k_min: int = C.MIN_DOT, extra: dict[str, int] | None = None) -> Config:
    """A default valid for every problem and device.

    CPU interpreter: the fewest, largest tiles (it pays per program and K step, not per
    FLOP: 256^3 fp16 took 0.04 s with 128^3 tiles, 0.23 s with 64^3, 10 s with 16^3).
    CUDA, M <= 64 (decode): a GEMV-like weight stream in 16..64-row tiles, K split until the
    SMs hold enough weight bytes in flight (`skinny_ctas_per_sm`). Larger M: 128x128 tiles,
    grouped order, 3 stages, K split until the SMs are covered once.
    smem: the kernel's shared-memory estimate (how many programs reside per SM).
    weight_bits: bits per weight element streamed (int8 8, int4 4); default the dtype's.
    large_block_k: K step for large M (fp8 takes 128: half the bytes per element).
    large_block_m, large_block_n: M and N tile for large M (int4 takes N 64: its
        dequantization needs the registers; fp32 int8 takes 64 x 64).
    max_block_k: cap on the K step (int4: its quantization group).
    extra: the kernel's own parameters beyond the tile ones (matmul's TMA), as given.
    """
    M, N, K = problem["M"], problem["N"], problem["K"]
    skinny = M <= 64
    if device.kind != "cuda":
        cfg = Config(BLOCK_M=128, BLOCK_N=128, BLOCK_K=128, GROUP_M=1, SPLIT_K=1, num_warps=8, num_stages=2)
    elif skinny:
        cfg = Config(BLOCK_M=C.padded(M), BLOCK_N=64, BLOCK_K=128, GROUP_M=1, SPLIT_K=1, num_warps=4, num_stages=4)
    else:
        cfg = Config(BLOCK_M=large_block_m, BLOCK_N=large_block_n, BLOCK_K=large_block_k, GROUP_M=8, SPLIT_K=1,
                     num_warps=8, num_stages=3)
    cfg = cfg.replace(BLOCK_M=min(cfg["BLOCK_M"], C.padded(M)), BLOCK_N=min(cfg["BLOCK_N"], C.padded(N)),
                      BLOCK_K=min(cfg["BLOCK_K"], C.padded(K, block_k_min), max_block_k), **(extra or {}))
    if C.cdiv(M, cfg["BLOCK_M"]) == 1:
        cfg = cfg.replace(GROUP_M=1)
    if device.kind == "cuda":
        tiles = C.cdiv(M, cfg["BLOCK_M"]) * C.cdiv(N, cfg["BLOCK_N"])
        bits = weight_bits if weight_bits is not None else 8 * C.ELEMENT_BYTES[problem.dtype]
        k_tiles = C.cdiv(K, cfg["BLOCK_K"])
        if skinny:
            per_sm = skinny_ctas_per_sm(cfg, bits, smem(cfg, problem), device)
            cfg = cfg.replace(SPLIT_K=skinny_split_k(tiles, k_tiles, M, K, bits, per_sm, device, cfg["num_stages"] - 1))
        else:
            cfg = cfg.replace(SPLIT_K=heuristic_split_k(tiles, k_tiles, device))
    return C.shrink_to_fit(spec, cfg, problem, device, ("num_stages", "BLOCK_K", "BLOCK_N", "BLOCK_M", "SPLIT_K"))


def split_k_buffers(out: torch.Tensor, M: int, N: int, config: Config) -> SplitK:
    """The launch's split-K buffers (kernels/splitk.py): none without split-K; else fp32
    partials and, unless the reduction falls back to a second pass, the tiles' counters."""
    tiles = triton.cdiv(M, config["BLOCK_M"]) * triton.cdiv(N, config["BLOCK_N"])
    return splitk.split_k_buffers(out, config["SPLIT_K"], tiles)


def bias_stride(bias: torch.Tensor | None) -> int:
    """The element stride of a bias vector (0 when there is none: the kernel never reads it)."""
    return bias.stride(0) if bias is not None else 0


def finish(split: SplitK, out: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """After the kernel: the split-K second pass, where the reduction was not serial."""
    return splitk.finish(split, out, bias)


def grid(M: int, N: int, config: Config) -> tuple[int, int]:
    return (triton.cdiv(M, config["BLOCK_M"]) * triton.cdiv(N, config["BLOCK_N"]), config["SPLIT_K"])
