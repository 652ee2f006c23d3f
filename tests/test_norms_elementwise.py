"""Kernel-specific checks of rmsnorm, layernorm, rope, swiglu and gelu beyond the generic
suite: their constraints and heuristics on fake devices, strided and in-place inputs,
rope against the textbook rotation, and layernorm's variance at a large mean."""

from __future__ import annotations

import math
import sys

import pytest
import torch
import torch.nn.functional as F

import kernels
from kernels import constraints as C
from kernels import rowwise
from kernels.accuracy import compare, tolerance_for
from kernels.errors import InvalidConfig, InvalidProblem
from kernels.spec import Config

from .conftest import generator
from .fake_devices import ALL, CPU, H100

# `kernels.rmsnorm` etc. are the public functions; the modules are reached through sys.modules.
RMS = sys.modules["kernels.rmsnorm"]
LN = sys.modules["kernels.layernorm"]
ROPE = sys.modules["kernels.rope"]
SWIGLU = sys.modules["kernels.swiglu"]
GELU = sys.modules["kernels.gelu"]
ROW_SPECS = (RMS.SPEC, LN.SPEC, SWIGLU.SPEC, GELU.SPEC)

ROWS = (1, 2, 13, 257, 4096, 16384)
COLS = (1, 13, 64, 257, 384, 4096, 8193, 14336, 65536)


def _gen(seed: int) -> torch.Generator:
    return generator(torch.device("cpu"), seed)


def _ok(out: torch.Tensor, ref: torch.Tensor, dtype: str = "fp32", note: str = "") -> None:
    result = compare(out.float(), ref, tolerance_for(dtype))
    assert result.ok, f"{note}: {result.summary()}"


# -- constraints ---------------------------------------------------------------------------
def _reason(spec, shape, cfg, device=H100, options=None):
    return spec.reject_reason(Config(cfg), spec.problem(shape, "bf16", options), device)


@pytest.mark.parametrize("spec", ROW_SPECS, ids=lambda s: s.name)
def test_row_blocks_are_bounded_by_the_padded_problem(spec):
    # N=13 pads to the 32-column minimum (not 16: this is no tl.dot kernel, and not 13).
    assert _reason(spec, {"M": 13, "N": 13}, dict(BLOCK_M=16, BLOCK_N=32, num_warps=1)) is None
    assert "exceeds N=13" in _reason(spec, {"M": 13, "N": 13}, dict(BLOCK_M=16, BLOCK_N=64, num_warps=1))
    assert "exceeds M=13" in _reason(spec, {"M": 13, "N": 13}, dict(BLOCK_M=32, BLOCK_N=32, num_warps=1))
    assert _reason(spec, {"M": 17, "N": 13}, dict(BLOCK_M=32, BLOCK_N=32, num_warps=1)) is None
    assert "power of two" in _reason(spec, {"M": 17, "N": 100}, dict(BLOCK_M=3, BLOCK_N=128, num_warps=1))


@pytest.mark.parametrize("spec", ROW_SPECS, ids=lambda s: s.name)
def test_warps_need_elements_and_tiles_need_bytes_in_flight(spec):
    # 2 warps = 64 threads for a 32-element tile: one warp only.
    assert "threads for a tile of 32" in _reason(spec, {"M": 1, "N": 13}, dict(BLOCK_M=1, BLOCK_N=32, num_warps=2))
    assert _reason(spec, {"M": 1, "N": 13}, dict(BLOCK_M=1, BLOCK_N=32, num_warps=1)) is None
    # A 256-element tile is too small for a 19 x 4097 problem, fine where it is all there is.
    assert "too little in flight" in _reason(spec, {"M": 19, "N": 4097}, dict(BLOCK_M=1, BLOCK_N=256, num_warps=1))
    assert _reason(spec, {"M": 19, "N": 4097}, dict(BLOCK_M=2, BLOCK_N=256, num_warps=1)) is None
    assert _reason(spec, {"M": 8, "N": 32}, dict(BLOCK_M=8, BLOCK_N=32, num_warps=1)) is None


def test_register_limits_follow_the_measured_cost_per_element():
    # 8 x 512 elements on one warp = 128 per thread: fine for swiglu and layernorm (~1.5
    # registers each), too many for rmsnorm's looping form and erf-gelu (2 each).
    big = dict(BLOCK_M=8, BLOCK_N=512, num_warps=1)
    shape = {"M": 64, "N": 4096}
    assert _reason(SWIGLU.SPEC, shape, big) is None
    assert _reason(LN.SPEC, shape, big) is None
    assert "registers per thread" in _reason(RMS.SPEC, shape, big)
    assert "registers per thread" in _reason(GELU.SPEC, shape, big)
    assert "registers per thread" in _reason(SWIGLU.SPEC, shape, dict(big, BLOCK_M=16))
    # More warps share the same tile: fits again.
    assert _reason(RMS.SPEC, shape, dict(big, num_warps=2)) is None


def test_register_limit_is_128_at_16_warps():
    # 512 threads share a block's 64K registers. 128 layernorm elements per thread fit on
    # 8 warps (174-192 registers for sm_90) but spilled on 16 (112-232 bytes); 64 erf-gelu
    # elements per thread spilled there too (32-80 bytes), 32 did not.
    assert C.max_registers_per_thread(8) == 255 and C.max_registers_per_thread(16) == 128
    shape = {"M": 2048, "N": 16384}
    assert _reason(LN.SPEC, shape, dict(BLOCK_M=4, BLOCK_N=8192, num_warps=8)) is None
    assert "a thread has 128" in _reason(LN.SPEC, shape, dict(BLOCK_M=8, BLOCK_N=8192, num_warps=16))
    assert "a thread has 128" in _reason(GELU.SPEC, shape, dict(BLOCK_M=4, BLOCK_N=8192, num_warps=16))
    assert _reason(GELU.SPEC, shape, dict(BLOCK_M=2, BLOCK_N=8192, num_warps=16)) is None


def test_rope_constraints_and_problem_checks():
    spec = ROPE.SPEC
    for bad in ({"T": 4, "H": 2, "D": 63}, {"T": 4, "H": 2, "D": 2 * ROPE.MAX_HEAD_DIM}):
        with pytest.raises(InvalidProblem, match="must be even and at most"):
            spec.problem(bad, "fp16")
    shape = {"T": 13, "H": 32, "D": 128}
    assert _reason(spec, shape, dict(BLOCK_T=1, BLOCK_H=32, num_warps=8)) is None
    assert "exceeds H=32" in _reason(spec, shape, dict(BLOCK_T=1, BLOCK_H=64, num_warps=8))
    assert "exceeds T=13" in _reason(spec, shape, dict(BLOCK_T=32, BLOCK_H=1, num_warps=1))
    # 8 tokens x 32 heads x 64 pairs on 4 warps = 128 pairs per thread.
    assert "registers per thread" in _reason(spec, shape, dict(BLOCK_T=8, BLOCK_H=32, num_warps=4))
    # One head of D=64 is 64 elements: below the floor on a big problem, fine alone.
    assert "too little in flight" in _reason(spec, shape, dict(BLOCK_T=1, BLOCK_H=1, num_warps=1))
    assert _reason(spec, {"T": 1, "H": 1, "D": 64}, dict(BLOCK_T=1, BLOCK_H=1, num_warps=1)) is None


def test_complete_rejects_what_the_constraints_reject():
    problem = RMS.SPEC.problem({"M": 4, "N": 100}, "fp16")
    with pytest.raises(InvalidConfig, match="exceeds N=100"):
        RMS.SPEC.complete({"BLOCK_N": 256}, problem, CPU)
    with pytest.raises(InvalidConfig, match="too little in flight"):
        RMS.SPEC.complete({"BLOCK_N": 32}, problem, CPU)  # 4 x 32 of a problem that fills 4 x 128
    taller = RMS.SPEC.problem({"M": 16, "N": 100}, "fp16")
    assert RMS.SPEC.complete({"BLOCK_N": 32}, taller, CPU) == Config(BLOCK_M=16, BLOCK_N=32, num_warps=4)


# -- heuristics ----------------------------------------------------------------------------
@pytest.mark.parametrize("device", ALL, ids=lambda d: d.name)
@pytest.mark.parametrize("spec", ROW_SPECS, ids=lambda s: s.name)
def test_row_heuristic_is_valid_everywhere(spec, device):
    options = {"approximate": "tanh"} if spec.name == "gelu" else None
    for M in ROWS:
        for N in COLS:
            problem = spec.problem({"M": M, "N": N}, "bf16", options)
            cfg = spec.heuristic(problem, device)
            assert spec.reject_reason(cfg, problem, device) is None, (M, N, cfg)


@pytest.mark.parametrize("device", ALL, ids=lambda d: d.name)
def test_rope_heuristic_is_valid_everywhere(device):
    for T in (1, 13, 257, 8192):
        for H in (1, 3, 8, 32, 128):
            for D in (2, 64, 96, 128, 256, ROPE.MAX_HEAD_DIM):
                problem = ROPE.SPEC.problem({"T": T, "H": H, "D": D}, "fp16")
                cfg = ROPE.SPEC.heuristic(problem, device)
                assert ROPE.SPEC.reject_reason(cfg, problem, device) is None, (T, H, D, cfg)


@pytest.mark.parametrize("spec", (RMS.SPEC, LN.SPEC), ids=lambda s: s.name)
def test_norm_heuristic_reads_rows_once_up_to_8192_and_loops_beyond(spec):
    for N in (13, 384, 4096, 8192):
        assert spec.heuristic(spec.problem({"M": 4096, "N": N}, "bf16"), H100)["BLOCK_N"] >= N
    for N in (8193, 14336, 65536):
        assert spec.heuristic(spec.problem({"M": 4096, "N": N}, "bf16"), H100)["BLOCK_N"] == 8192


def test_heuristic_packs_short_rows_but_keeps_sms_busy():
    # MiniLM's layernorm, 384 wide: at M=4096 rows are packed (still 512 programs for 132
    # SMs); at M=13 each row gets its own program rather than 2 programs for 132 SMs.
    big = LN.SPEC.heuristic(LN.SPEC.problem({"M": 4096, "N": 384}, "fp16"), H100)
    assert big["BLOCK_N"] == 512 and big["BLOCK_M"] > 1 and C.cdiv(4096, big["BLOCK_M"]) >= 2 * H100.sm_count
    assert LN.SPEC.heuristic(LN.SPEC.problem({"M": 13, "N": 384}, "fp16"), H100)["BLOCK_M"] == 1
    # The interpreter pays per program: 257 rows of 13 go in at most 9 programs there.
    cpu = RMS.SPEC.heuristic(RMS.SPEC.problem({"M": 257, "N": 13}, "fp32"), CPU)
    assert C.cdiv(257, cpu["BLOCK_M"]) <= 9
    # Elementwise on a GPU: 1024-wide column blocks, so 14336 splits into 14 full blocks.
    sw = SWIGLU.SPEC.heuristic(SWIGLU.SPEC.problem({"M": 4096, "N": 14336}, "bf16"), H100)
    assert sw["BLOCK_N"] == 1024 and sw["BLOCK_M"] * sw["BLOCK_N"] == rowwise.GPU_TILE


def test_rope_heuristic_groups_heads_per_token():
    prefill = ROPE.SPEC.heuristic(ROPE.SPEC.problem({"T": 8192, "H": 32, "D": 128}, "bf16"), H100)
    assert prefill["BLOCK_H"] == 32 and prefill["BLOCK_T"] == 1  # 4096 elements, one cos/sin row
    decode = ROPE.SPEC.heuristic(ROPE.SPEC.problem({"T": 1, "H": 32, "D": 128}, "bf16"), H100)
    assert decode["BLOCK_T"] == 1 and 1 < C.cdiv(32, decode["BLOCK_H"]) <= 32  # spread over a few SMs
    cpu = ROPE.SPEC.heuristic(ROPE.SPEC.problem({"T": 257, "H": 3, "D": 32}, "fp32"), CPU)
    assert C.cdiv(257, cpu["BLOCK_T"]) <= 9


# -- rmsnorm -------------------------------------------------------------------------------
def test_rmsnorm_on_row_and_column_strided_views(seed):
    g = _gen(seed)
    M, N = 7, 333
    big = torch.randn((M, 2 * N + 9), generator=g)
    w = torch.randn((N,), generator=g)
    for x in (big[:, 5:5 + N], big[:, 1:2 * N + 1:2]):  # row stride 2N+9; then column stride 2
        ref = RMS._reference(RMS.RMSNormInputs(x, w, 1e-6))
        for cfg in ({}, {"BLOCK_N": 64, "BLOCK_M": 8, "num_warps": 4}):  # one tile; 6 chunks of 64
            _ok(kernels.rmsnorm(x, w, config=cfg), ref, note=f"stride {x.stride()} {cfg} seed {seed}")


def test_rmsnorm_in_place_while_looping_and_eps(seed):
    g = _gen(seed)
    x = torch.randn((5, 1000), generator=g) * 1e-4
    w = torch.randn((1000,), generator=g)
    ref = RMS._reference(RMS.RMSNormInputs(x, w, 1e-2))
    out = kernels.rmsnorm(x, w, eps=1e-2, config={"BLOCK_N": 256, "BLOCK_M": 2, "num_warps": 4}, out=x)
    assert out.data_ptr() == x.data_ptr()
    _ok(x, ref, note=f"seed {seed}")
    # eps dominates mean(x^2) ~ 1e-8 here, so a kernel that dropped it would be ~1000x off.
    assert ref.abs().max() < 0.1


# -- layernorm -----------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", [dict(BLOCK_M=2, BLOCK_N=1024, num_warps=4), dict(BLOCK_M=4, BLOCK_N=128, num_warps=4)],
                         ids=["one-tile", "chunked"])
def test_layernorm_variance_survives_a_large_mean(cfg, seed):
    g = _gen(seed)
    M, N = 16, 1000
    x = torch.randn((M, N), generator=g, dtype=torch.float64) + 1000.0
    w = torch.randn((N,), generator=g, dtype=torch.float64)
    b = torch.randn((N,), generator=g, dtype=torch.float64)
    exact = F.layer_norm(x, (N,), w, b, 1e-12)  # fp64
    out = kernels.layernorm(x.float(), w.float(), b.float(), eps=1e-12, config=cfg)
    err = (out.double() - exact).abs().max().item()
    # x itself is rounded to fp32 (ulp 6e-5 at 1000), which alone moves y by ~6e-5 * |w|;
    # 2e-3 leaves room for that and nothing like E[x^2] - E[x]^2, whose fp32 terms ~1e6
    # carry ulp 0.0625 against a variance of 1 (asserted below to be > 10x worse).
    assert err < 2e-3, f"max err {err:.3g} seed {seed}"
    xf = x.float()
    var_naive = (xf * xf).mean(dim=1, keepdim=True) - xf.mean(dim=1, keepdim=True) ** 2
    naive = (xf - xf.mean(dim=1, keepdim=True)) / torch.sqrt(var_naive.clamp_min(0) + 1e-12) * w.float() + b.float()
    assert (naive.double() - exact).abs().max().item() > 10 * 2e-3


def test_layernorm_without_bias_and_strided(seed):
    g = _gen(seed)
    big = torch.randn((9, 2 * 384), generator=g, dtype=torch.float16)
    x = big[:, 384:]
    w = torch.randn((384,), generator=g, dtype=torch.float16)
    ref = F.layer_norm(x.float(), (384,), w.float(), None, 1e-12)
    _ok(kernels.layernorm(x, w, None, eps=1e-12), ref, "fp16", f"seed {seed}")
    _ok(kernels.layernorm(x, w, None, eps=1e-12, config={"BLOCK_N": 128, "num_warps": 4}), ref, "fp16",
        f"chunked seed {seed}")


# -- rope ----------------------------------------------------------------------------------
def _textbook_rope(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Pair (i, i + D/2) as the complex number x_i + j x_{i+D/2}, times exp(j pos base^(-2i/D)),
    all in fp64 from the formula (no cache)."""
    D = x.shape[-1]
    half = D // 2
    i = torch.arange(half, dtype=torch.float64)
    theta = positions.double()[:, None] * base ** (-2.0 * i / D)  # [T, D/2]
    rotation = torch.polar(torch.ones_like(theta), theta)[:, None, :]  # exp(j theta), [T, 1, D/2]
    z = torch.complex(x[..., :half].double(), x[..., half:].double()) * rotation
    return torch.cat([z.real, z.imag], dim=-1)


@pytest.mark.parametrize("base", [10000.0, 500000.0])
def test_rope_reference_and_kernel_match_the_textbook_rotation(base, seed):
    g = _gen(seed)
    T, H, D, P = 11, 3, 70, 5000
    positions = torch.randint(0, P, (T,), generator=g)
    positions[0] = P - 1  # a large angle, where an fp32-built cache is up to 3e-4 off
    cos, sin = kernels.rope_cache(P, D, base=base)
    assert cos.shape == (P, D // 2) and cos.dtype == torch.float32
    x = torch.randn((T, H, D), generator=g)
    exact = _textbook_rope(x, positions, base)
    inputs = ROPE.RopeInputs(x, positions, cos, sin)
    # The cache is rounded once to fp32 (6e-8 relative), so the fp32 reference is that close.
    assert (ROPE._reference(inputs).double() - exact).abs().max().item() < 1e-5
    assert (ROPE._baseline(inputs).double() - exact).abs().max().item() < 1e-5
    _ok(kernels.rope(x, positions, cos, sin), exact, note=f"seed {seed}")


def test_rope_on_non_contiguous_views_and_in_place(seed):
    g = _gen(seed)
    T, H, D = 9, 5, 64
    cos, sin = kernels.rope_cache(64, D)
    positions = torch.randint(0, 64, (T,), generator=g, dtype=torch.int32)
    x = torch.randn((H, T, D), generator=g, dtype=torch.float16).transpose(0, 1)  # [T, H, D], strides (D, T*D, 1)
    assert not x.is_contiguous()
    ref = ROPE._reference(ROPE.RopeInputs(x, positions, cos, sin))
    out = torch.full((T, H, 2 * D), float("nan"), dtype=torch.float16)[..., D:]  # strided out
    got = kernels.rope(x, positions, cos, sin, out=out, config={"BLOCK_H": 2, "BLOCK_T": 4, "num_warps": 2})
    assert got.data_ptr() == out.data_ptr()
    _ok(out, ref, "fp16", f"seed {seed}")
    kernels.rope(x, positions, cos, sin, out=x)  # in place on the view
    _ok(x, ref, "fp16", f"in place seed {seed}")


def test_rope_rejects_bad_inputs():
    cos, sin = kernels.rope_cache(16, 64)
    x = torch.randn((4, 2, 64))
    with pytest.raises(InvalidProblem, match="positions"):
        kernels.rope(x, torch.zeros(4), cos, sin)  # float positions
    with pytest.raises(InvalidProblem, match="cos/sin"):
        kernels.rope(x, torch.zeros(4, dtype=torch.long), *kernels.rope_cache(16, 32))
    with pytest.raises(InvalidProblem, match="even head_dim"):
        kernels.rope_cache(16, 63)


# -- swiglu, gelu --------------------------------------------------------------------------
def test_swiglu_on_the_halves_of_a_fused_gate_up(seed):
    g = _gen(seed)
    M, N = 5, 777
    gate_up = 3.0 * torch.randn((M, 2 * N), generator=g, dtype=torch.bfloat16)
    a, b = gate_up[:, :N], gate_up[:, N:]
    ref = a.float() * torch.sigmoid(a.float()) * b.float()
    for cfg in ({}, {"BLOCK_M": 4, "BLOCK_N": 128, "num_warps": 2}):
        _ok(kernels.swiglu(a, b, config=cfg), ref, "bf16", f"{cfg} seed {seed}")
    with pytest.raises(InvalidProblem, match="one shape"):
        kernels.swiglu(a, b[:, :-1])


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_tails_and_strided_input(approximate, seed):
    g = _gen(seed)
    x = torch.randn((6, 301), generator=g) * 30.0  # tails far past where erf and sigmoid saturate
    x[0, :4] = torch.tensor([-100.0, 100.0, 0.0, -1e-3])
    view = torch.cat([x, x], dim=1)[:, ::2]  # column stride 2
    ref = F.gelu(view.double(), approximate=approximate)
    out = kernels.gelu(view, approximate)
    assert torch.isfinite(out).all()
    _ok(out, ref, note=f"seed {seed}")
    with pytest.raises(InvalidProblem, match="approximate"):
        kernels.gelu(x, "sigmoid")


def test_out_buffer_must_match():
    x = torch.randn((4, 64))
    with pytest.raises(InvalidProblem, match="out must be"):
        kernels.gelu(x, out=torch.empty((4, 65)))
    with pytest.raises(InvalidProblem, match="out must be"):
        kernels.rmsnorm(x, torch.ones(64), out=torch.empty((4, 64), dtype=torch.float16))


# -- counts --------------------------------------------------------------------------------
def test_bytes_moved_counts_each_tensor_once():
    def n(*shape):
        return math.prod(shape)
    M, N, T, H, D = 3, 40, 5, 4, 64
    p = {"M": M, "N": N}
    assert RMS.SPEC.bytes_moved(RMS.SPEC.problem(p, "bf16")) == 2 * (2 * n(M, N) + N)
    assert LN.SPEC.bytes_moved(LN.SPEC.problem(p, "fp32")) == 4 * (2 * n(M, N) + 2 * N)
    assert SWIGLU.SPEC.bytes_moved(SWIGLU.SPEC.problem(p, "fp16")) == 2 * 3 * n(M, N)
    assert GELU.SPEC.bytes_moved(GELU.SPEC.problem(p, "fp16")) == 2 * 2 * n(M, N)
    # x in and out (bf16), each token's fp32 cos and sin rows of D/2, its int64 position.
    assert ROPE.SPEC.bytes_moved(ROPE.SPEC.problem({"T": T, "H": H, "D": D}, "bf16")) == \
        2 * 2 * n(T, H, D) + 4 * 2 * T * (D // 2) + 8 * T
    tanh = GELU.SPEC.problem(p, "fp16", {"approximate": "tanh"})
    assert GELU.SPEC.flops(tanh) > GELU.SPEC.flops(GELU.SPEC.problem(p, "fp16"))
