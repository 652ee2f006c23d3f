"""Tiling rules shared by the memory-bound kernels that walk [rows, columns] tiles:
rmsnorm, layernorm, swiglu, gelu (and, for its warps and registers, rope).

These kernels do no tl.dot, so nothing pads a block to 16; a block is only bounded by
the problem (a block past the padded dimension computes padding) and by the threads
and registers of one program. Pure functions, the shared check of a caller's output
buffer and one shared jit helper; each kernel file builds its SPEC from them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import triton
import triton.language as tl

from . import constraints as C
from .device import DeviceInfo
from .errors import InvalidProblem
from .layout import check_out_writable
from .spec import Config, Constraint, KernelSpec, Param, Problem

# A warp's 32 lanes read 32 consecutive columns in one coalesced access; a narrower
# column block is padding either way, so 32 is the smallest block along a row.
MIN_BLOCK_N = 32

BLOCK_M = Param("BLOCK_M", (1, 2, 4, 8, 16, 32), "rows per program (packs short rows into one program)")
BLOCK_N = Param("BLOCK_N", (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192), "columns per tile")
NUM_WARPS = Param("num_warps", (1, 2, 4, 8, 16))

# Elements of one program's tile: a GPU program streams ~4096 (16 per thread at 8 warps,
# enough loads in flight to cover DRAM latency); the interpreter pays per program and per
# op, not per element, so it gets 4x larger tiles and 4x fewer programs.
GPU_TILE = 4096
CPU_TILE = 16384
# Elements per thread the heuristic aims for when it picks num_warps.
PER_THREAD = 16

# The smallest tile worth a program. An H100 keeps at most 32 programs resident per SM;
# to stream 3.35 TB/s at ~1 us DRAM latency it needs ~25 KiB in flight per SM (Little's
# law over 132 SMs). 32 programs x 512 elements is 32 KiB in fp16: a smaller tile cannot
# reach bandwidth at any occupancy. A problem smaller than this may use a smaller tile.
MIN_TILE = 512


def warps_have_work(elements: Callable[[Config, Problem], int]) -> Constraint:
    """Reject num_warps > 1 whose 32 * num_warps threads outnumber the tile's elements: the
    extra warps only hold copies of the same values (one warp is always allowed)."""

    def check(config: Config, problem: Problem, device: DeviceInfo) -> str | None:
        warps = config["num_warps"]
        tile = elements(config, problem)
        if warps > 1 and tile < 32 * warps:
            return f"num_warps={warps} has {32 * warps} threads for a tile of {tile} elements"
        return None

    return check


def tile_not_tiny(elements: Callable[[Config, Problem], int], whole: Callable[[Problem], int]) -> Constraint:
    """Reject tiles under MIN_TILE elements unless `whole`, the largest tile the problem
    (padded) and the parameters' candidates allow, is smaller."""

    def check(config: Config, problem: Problem, device: DeviceInfo) -> str | None:
        tile = elements(config, problem)
        floor = min(MIN_TILE, whole(problem))
        if tile < floor:
            return f"a tile of {tile} elements is under {floor}: too little in flight per program"
        return None

    return check


def tile_registers_fit(regs_per_element: float, elements: Callable[[Config, Problem], int]) -> Constraint:
    """The tile's registers, `regs_per_element` per element held by a thread, must fit the
    255 a thread has (128 at 16 warps: constraints.max_registers_per_thread). Measured with
    ptxas for sm_90 (Triton 3.9, bf16, unit column stride, one warp): at 128 elements per
    thread one-tile rmsnorm takes 166 registers, layernorm 182 (227 looping), swiglu 186,
    tanh-gelu 156, none spilling (~1.5 per element), while looping rmsnorm (a sum-of-squares
    tile beside x) and erf-gelu spill; at 64 they take 155 and 154 (2 per element covers
    them). rope takes 175 at 64 (x1, x2) pairs."""
    return C.registers_fit(lambda config, problem: int(regs_per_element * elements(config, problem)))


def tile_elements(config: Config, problem: Problem) -> int:
    return config["BLOCK_M"] * config["BLOCK_N"]


def row_constraints(regs_per_element: float) -> tuple[Constraint, ...]:
    """The constraints of an [M, N] kernel with params BLOCK_M, BLOCK_N, num_warps."""
    return (
        C.power_of_two("BLOCK_M", "BLOCK_N", "num_warps"),
        C.block_fits("BLOCK_M", "M", minimum=1),
        C.block_fits("BLOCK_N", "N", minimum=MIN_BLOCK_N),
        warps_have_work(tile_elements),
        tile_not_tiny(tile_elements, lambda p: min(C.padded(p["M"], 1), max(BLOCK_M.values))
                      * min(C.padded(p["N"], MIN_BLOCK_N), max(BLOCK_N.values))),
        tile_registers_fit(regs_per_element, tile_elements),
    )


def warps_for(elements: int, max_warps: int = 16) -> int:
    """num_warps giving about PER_THREAD elements per thread (1 to max_warps)."""
    return max(1, min(max_warps, C.next_pow2(elements // (32 * PER_THREAD))))


def row_heuristic(spec: KernelSpec, problem: Problem, device: DeviceInfo, *, max_block_n: int,
                  column_blocks: bool) -> Config:
    """Default tile of an [M, N] kernel, valid for every problem and device.

    max_block_n: widest column block (a reduction kernel walks longer rows in chunks; an
        elementwise one splits them over programs).
    column_blocks: whether programs also split N (elementwise) or own whole rows (norms).
    """
    M, N = problem["M"], problem["N"]
    target = GPU_TILE if device.kind == "cuda" else CPU_TILE
    block_n = min(C.padded(N, MIN_BLOCK_N), max_block_n)
    block_m = max(1, min(C.next_pow2(M), target // block_n, max(BLOCK_M.values)))
    if device.kind == "cuda":
        # Rows per program pack short rows, but not at the cost of idle SMs: aim for two
        # programs per SM while halving keeps the tile at MIN_TILE or more.
        col_progs = C.cdiv(N, block_n) if column_blocks else 1
        while (block_m > 1 and block_m * block_n // 2 >= MIN_TILE
               and C.cdiv(M, block_m) * col_progs < 2 * device.sm_count):
            block_m //= 2
    cfg = Config(BLOCK_M=block_m, BLOCK_N=block_n, num_warps=warps_for(block_m * block_n))
    return C.shrink_to_fit(spec, cfg, problem, device, ("BLOCK_M", "BLOCK_N", "num_warps"))


def check_out(name: str, out: torch.Tensor, shape: tuple[int, ...], like: torch.Tensor) -> None:
    """A caller-given output buffer must match the output's shape, dtype and device (any
    strides, but one address per element). Raises InvalidProblem."""
    if tuple(out.shape) != shape or out.dtype != like.dtype or out.device != like.device:
        raise InvalidProblem(f"{name} out must be {list(shape)} {like.dtype} on {like.device}; "
                             f"got {list(out.shape)} {out.dtype} on {out.device}")
    check_out_writable(name, out)


@triton.jit
def stable_sigmoid(z):
    """1 / (1 + exp(-z)) with exp only ever seeing -|z|: tl.sigmoid's exp(-z) overflows to
    inf for z < -88 in fp32 (a right answer, but a numpy overflow warning per launch under
    the interpreter). Same cost on a GPU: one exp and one divide."""
    e = tl.exp(-tl.abs(z))
    r = 1.0 / (1.0 + e)
    return tl.where(z >= 0, r, e * r)
