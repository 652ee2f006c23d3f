"""The skinny-M (decode) split-K rule of the matmul defaults: pure functions, no GPU.

At M <= 64 a matmul streams its weights from DRAM; the default splits K until the SMs hold
enough weight bytes in flight (Little's law), where the first H200 run's rule stopped at one
program per SM (the bf16 matmul at 16x4096x4096 moved 2.8 TB/s there, ncu: 6.2% occupancy).
"""

from __future__ import annotations

import importlib
import itertools

import pytest

from kernels import constraints as C
from kernels.gemm import (
    MAX_SKINNY_CTAS_PER_SM,
    SKINNY_IN_FLIGHT_BYTES,
    heuristic_split_k,
    skinny_ctas_per_sm,
    skinny_in_flight,
    skinny_split_k,
)
from kernels.spec import Config

from .fake_devices import A100, CPU, H100, L4, T4


def _module(name):
    # The package exports each kernel's function under the module's name: import the module.
    return importlib.import_module(f"kernels.{name}")


# (spec, its shared-memory estimate, weight bits, quant option)
STREAMING = tuple((_module(name).SPEC, _module(name)._smem, bits, quant) for name, bits, quant in (
    ("matmul", 16, None), ("matmul_w8a16", 8, None), ("matmul_w4a16", 4, "int4-g128"), ("matmul_fp8", 8, None)))
MATMUL, W8 = STREAMING[0][0], STREAMING[1][0]
IDS = [s.name for s, *_ in STREAMING]
# Llama-3-8B's decode matmuls (fused qkv, o, fused gate_up, down) and two odd ones.
DECODE_NK = ((6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336))
ODD_NK = ((257, 4096), (4096, 13 * 128))
SKINNY_M = (1, 13, 16, 33, 64)
SKINNY = Config(BLOCK_M=16, BLOCK_N=64, BLOCK_K=128, GROUP_M=1, SPLIT_K=1, num_warps=4, num_stages=4)


def _problem(spec, quant, m, n, k):
    return spec.problem({"M": m, "N": n, "K": k}, "bf16", {"quant": quant} if quant else {})


def _layout(spec, smem, bits, problem, device):
    """(programs, programs resident per SM by the shared-memory estimate, weight bytes in flight per program)."""
    cfg = spec.heuristic(problem, device)
    programs = C.cdiv(problem["M"], cfg["BLOCK_M"]) * C.cdiv(problem["N"], cfg["BLOCK_N"]) * cfg["SPLIT_K"]
    resident = max(1, device.smem_per_block // smem(cfg, problem))
    in_flight = (cfg["num_stages"] - 1) * cfg["BLOCK_K"] * cfg["BLOCK_N"] * bits // 8
    return cfg, programs, resident, in_flight


def test_split_k_reaches_the_programs_per_sm_asked_for():
    assert heuristic_split_k(tiles=64, k_tiles=32, device=H100) == 2  # 128 programs: the SMs once
    assert heuristic_split_k(tiles=64, k_tiles=32, device=H100, ctas_per_sm=2) == 4  # 256 <= 264
    assert heuristic_split_k(tiles=64, k_tiles=32, device=H100, ctas_per_sm=3) == 4  # 512 > 396
    assert heuristic_split_k(tiles=96, k_tiles=32, device=H100, ctas_per_sm=3) == 4  # 384 <= 396
    assert heuristic_split_k(tiles=8, k_tiles=4, device=H100, ctas_per_sm=4) == 4  # one K tile per split
    assert heuristic_split_k(tiles=448, k_tiles=32, device=H100, ctas_per_sm=4) == 1


def test_programs_per_sm_follow_the_bytes_in_flight_and_the_shared_memory():
    # bf16: 3 stages x 128 x 64 x 2 B = 48 KiB in flight a program, so 2 reach 64 KiB.
    assert skinny_ctas_per_sm(SKINNY, 16, 40_000, H100) == 2
    # int8: 24 KiB a program wants 3; int4: 12 KiB wants 6, capped.
    assert skinny_ctas_per_sm(SKINNY, 8, 40_000, H100) == 3
    assert skinny_ctas_per_sm(SKINNY, 4, 40_000, H100) == MAX_SKINNY_CTAS_PER_SM
    # Shared memory bounds it: 80 KiB a program, 2 on an H100, 1 on an A100 (163 KiB)...
    assert skinny_ctas_per_sm(SKINNY, 4, 80 * 1024, H100) == 2
    assert skinny_ctas_per_sm(SKINNY, 4, 80 * 1024, A100) == 2
    assert skinny_ctas_per_sm(SKINNY, 4, 100 * 1024, A100) == 1
    # ...and never below one, even where the estimate does not fit (the heuristic shrinks it).
    assert skinny_ctas_per_sm(SKINNY, 16, 300 * 1024, T4) == 1
    # More stages or a wider tile put more in flight a program, so fewer programs are wanted.
    assert skinny_ctas_per_sm(SKINNY.replace(BLOCK_N=256), 16, 1, H100) == 1
    assert SKINNY_IN_FLIGHT_BYTES == 64 * 1024


def test_the_partials_stay_under_a_quarter_of_the_weight_bytes():
    # int4 at M = 64, K = 4096: a split of 2 writes and reads 2 x 2 x 64 x N x 4 B of partials,
    # more than a quarter of N x 4096 / 2 B of weights: the split falls back to the SMs-once rule.
    floor = heuristic_split_k(tiles=64, k_tiles=32, device=H100)
    assert skinny_split_k(64, 32, M=64, K=4096, weight_bits=4, ctas_per_sm=4, device=H100) == floor
    # At M = 1 the partials are a rounding error beside the weights: the full split stands.
    assert skinny_split_k(64, 32, M=1, K=4096, weight_bits=4, ctas_per_sm=3, device=H100) == 4
    # bf16 at M = 16: 256 * 4 * 16 = 16384 <= 4096 * 16.
    assert skinny_split_k(64, 32, M=16, K=4096, weight_bits=16, ctas_per_sm=2, device=H100) == 4


def test_a_split_that_adds_no_tiles_in_flight_is_not_taken():
    # int4 at 1x2048x2048, 16 x 64 x 128 tiles, 4 stages: 32 tiles of 16 K steps. Split 8:
    # 256 programs, ~2 an SM, 2 K tiles in flight each; split 16 puts ~4 an SM but each has
    # one K tile: no more in flight, twice the partials. The split stops at 8.
    assert heuristic_split_k(tiles=32, k_tiles=16, device=H100, ctas_per_sm=4) == 16
    assert skinny_in_flight(32, 16, 16, 4, 3, H100) <= skinny_in_flight(32, 16, 8, 4, 3, H100)
    assert skinny_split_k(32, 16, M=1, K=2048, weight_bits=4, ctas_per_sm=4, device=H100, stages_in_flight=3) == 8
    # With the K range to spare (4096x4096: 32 K steps) the same tiles split to 8, 4 in range each.
    assert skinny_split_k(64, 32, M=1, K=4096, weight_bits=4, ctas_per_sm=4, device=H100, stages_in_flight=3) == 8
    # At 16 K steps, 4 ways leave 4 a split (~2 programs an SM, 8 tiles); 8 ways, 2 a split
    # (~4 programs, 8 tiles): no gain, so 4. 5 stages in flight would take the 4 and no more.
    assert skinny_split_k(64, 16, M=1, K=2048, weight_bits=4, ctas_per_sm=4, device=H100, stages_in_flight=5) == 4
    assert skinny_split_k(64, 16, M=1, K=2048, weight_bits=4, ctas_per_sm=4, device=H100, stages_in_flight=1) == 8


def test_the_int4_decode_default_now_sees_four_programs_an_sm():
    """The M = 1 int4 default compiles to 24,832 bytes of shared memory for sm_90 (triton 3.9
    and 3.6): 9 fit an H100's 227 KiB, so the register cap (4) binds, where the estimate
    before gemm.shared_memory (64 KiB) let 3 reside."""
    spec, smem, bits, quant = STREAMING[2]
    problem = _problem(spec, quant, 1, 4096, 4096)
    cfg = spec.heuristic(problem, H100)
    assert H100.smem_per_block // smem(cfg, problem) >= MAX_SKINNY_CTAS_PER_SM
    assert skinny_ctas_per_sm(cfg, bits, smem(cfg, problem), H100) == MAX_SKINNY_CTAS_PER_SM
    assert cfg["SPLIT_K"] == 8


@pytest.mark.parametrize("spec,smem,bits,quant", STREAMING, ids=IDS)
@pytest.mark.parametrize("device", (H100, A100, L4), ids=lambda d: d.name)
def test_skinny_defaults_never_queue_a_second_wave_they_could_avoid(spec, smem, bits, quant, device):
    """More programs than can reside at once leave a tail; the split never adds them."""
    for m, (n, k) in itertools.product(SKINNY_M, DECODE_NK + ODD_NK):
        problem = _problem(spec, quant, m, n, k)
        cfg, programs, resident, _ = _layout(spec, smem, bits, problem, device)
        if cfg["SPLIT_K"] > 1:
            assert programs <= device.sm_count * resident, f"{spec.name} {m}x{n}x{k} {cfg}: {programs} programs"
        assert spec.reject_reason(cfg, problem, device) is None


@pytest.mark.parametrize("spec,smem,bits,quant", STREAMING, ids=IDS)
def test_skinny_defaults_hold_more_in_flight_than_one_program_per_sm(spec, smem, bits, quant):
    """Against the first H200 run's rule (split until the SMs are covered once), the weight
    bytes in flight per SM never fall, and at 1x4096x4096 at least double."""
    for m, (n, k) in itertools.product(SKINNY_M, DECODE_NK + ODD_NK):
        problem = _problem(spec, quant, m, n, k)
        cfg, programs, _, _ = _layout(spec, smem, bits, problem, H100)
        tiles = programs // cfg["SPLIT_K"]
        before = tiles * heuristic_split_k(tiles, C.cdiv(k, cfg["BLOCK_K"]), H100)
        assert programs >= before, f"{spec.name} {m}x{n}x{k} {cfg}"
        if (m, n, k) == (1, 4096, 4096):
            assert programs >= 2 * before, f"{spec.name} {cfg}: {programs} programs, {before} before"


@pytest.mark.parametrize("spec,smem,bits,quant", STREAMING[:2], ids=IDS[:2])
def test_decode_defaults_keep_the_littles_law_minimum_in_flight(spec, smem, bits, quant):
    """bf16 and int8 at Llama-3-8B's decode shapes, batch 1: at least 32 KiB of weights in
    flight per SM (4.2 TB/s x ~1 us over 132 SMs)."""
    for n, k in DECODE_NK:
        problem = _problem(spec, quant, 1, n, k)
        cfg, programs, _, in_flight = _layout(spec, smem, bits, problem, H100)
        per_sm = programs * in_flight / H100.sm_count
        assert per_sm >= 32 * 1024, f"{spec.name} 1x{n}x{k} {cfg}: {per_sm / 1024:.0f} KiB per SM"


def test_large_m_and_the_interpreter_keep_their_rules():
    p = _problem(MATMUL, None, 2048, 4096, 4096)
    assert MATMUL.heuristic(p, H100)["SPLIT_K"] == 1
    p = _problem(MATMUL, None, 128, 4096, 4096)  # 32 tiles of 128 x 128: split to cover once
    assert MATMUL.heuristic(p, H100)["SPLIT_K"] == 4
    assert W8.heuristic(_problem(W8, None, 1, 4096, 4096), CPU)["SPLIT_K"] == 1
