"""The attention kernels (attention, attention_decode) beyond the generic tests: their
constraints, heuristics and tolerances on fake devices, the torch references checked
against F.scaled_dot_product_attention, decode against prefill, strided views, GQA groups,
lengths (with NaN past them, so a read beyond a length shows), the causal loop stopping
at the diagonal, empty splits, and the public functions' errors.

Inputs are fresh random data every run (the `seed` fixture); shapes are odd on purpose.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import kernels
from kernels import constraints as C
from kernels.accuracy import compare, tolerance_for
from kernels.attention import SPEC as PREFILL
from kernels.attention import (AttentionInputs, expected_length_sums, harmonic, mean_row_power,
                               random_lengths)
from kernels.attention_decode import MAX_GROUP_ROWS, MAX_SPLITS, DecodeInputs
from kernels.attention_decode import SPEC as DECODE
from kernels.device import DTYPE_NAMES
from kernels.errors import InvalidConfig, InvalidProblem
from kernels.spec import Config, Tolerance

from .conftest import generator
from .fake_devices import ALL, CPU, H100, T4

CPU_DEV = torch.device("cpu")


def _gen(seed: int) -> torch.Generator:
    return generator(CPU_DEV, seed)


def _prefill(B=1, H=2, HKV=1, S=13, D=64, dtype="fp16", causal=True, varlen=False):
    return PREFILL.problem({"B": B, "H": H, "HKV": HKV, "S": S, "D": D}, dtype,
                           {"causal": causal, "varlen": varlen})


def _decode(B=1, H=2, HKV=1, L=13, D=64, dtype="fp16"):
    return DECODE.problem({"B": B, "H": H, "HKV": HKV, "L": L, "D": D}, dtype)


def _check(out: torch.Tensor, ref: torch.Tensor, dtype: str, what: str) -> None:
    result = compare(out.float(), ref, tolerance_for(dtype))
    assert result.ok, f"{what}: {result.summary()}"


# -- constraints --------------------------------------------------------------------------
def test_prefill_constraints_on_h100():
    llama = _prefill(B=1, H=32, HKV=8, S=4096, D=128)
    assert PREFILL.reject_reason(Config(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=3), llama, H100) is None
    # q tile + 4 stages of k and v tiles in fp32: (128 + 2*4*128) * 128 * 4 B = 576 KiB.
    big = Config(BLOCK_M=128, BLOCK_N=128, num_warps=8, num_stages=4)
    reason = PREFILL.reject_reason(big, _prefill(S=4096, D=128, dtype="fp32"), H100)
    assert reason and "shared memory" in reason
    # Compiled for sm_90, this spilled 352 bytes with 4 warps and used 241 registers with 8:
    # 128 * (128 + 64) fp32 values over 128 threads is 192 per thread, over 256 it is 96.
    spills = Config(BLOCK_M=128, BLOCK_N=64, num_warps=4, num_stages=2)
    reason = PREFILL.reject_reason(spills, llama, H100)
    assert reason and "192 registers per thread" in reason
    assert PREFILL.reject_reason(spills.replace(num_warps=8), llama, H100) is None
    # A 64-row block spreads over 4 warps (16 rows each) however many it is given.
    reason = PREFILL.reject_reason(Config(BLOCK_M=64, BLOCK_N=64, num_warps=8, num_stages=2),
                                   _prefill(S=4096, D=256), H100)
    assert reason and "160 registers per thread" in reason
    reason = PREFILL.reject_reason(Config(BLOCK_M=64, BLOCK_N=16, num_warps=4, num_stages=2), _prefill(S=13), H100)
    assert reason and "BLOCK_M=64 exceeds S=13 padded to 16" in reason
    assert PREFILL.reject_reason(Config(BLOCK_M=16, BLOCK_N=16, num_warps=4, num_stages=2), _prefill(S=1), H100) is None
    reason = PREFILL.reject_reason(Config(BLOCK_M=48, BLOCK_N=16, num_warps=4, num_stages=2), _prefill(S=257), H100)
    assert reason and "power of two" in reason


def test_prefill_shared_memory_counts_the_padded_head_dim():
    # D=80 is padded to 128 columns; on a T4 (64 KiB) the fp16 config below needs
    # (64 + 2*2*64) * 128 * 2 B = 80 KiB, but only 50 KiB if D were counted unpadded.
    cfg = Config(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=2)
    assert "shared memory" in PREFILL.reject_reason(cfg, _prefill(S=257, D=80), T4)
    assert PREFILL.reject_reason(cfg, _prefill(S=257, D=80), CPU) is None  # the interpreter has no limit


def test_decode_constraints():
    p = _decode(B=2, H=8, HKV=2, L=100, D=64)  # 100 keys: 2 tiles of 64, 7 tiles of 16
    ok = Config(BLOCK_N=64, NUM_SPLITS=2, num_warps=4, num_stages=2)
    assert DECODE.reject_reason(ok, p, H100) is None
    reason = DECODE.reject_reason(ok.replace(NUM_SPLITS=4), p, H100)
    assert reason and "NUM_SPLITS=4 exceeds the 2 BLOCK_N tiles" in reason
    assert DECODE.reject_reason(ok.replace(NUM_SPLITS=4, BLOCK_N=16), p, H100) is None
    assert "BLOCK_N=256 exceeds L=100" in DECODE.reject_reason(ok.replace(BLOCK_N=256, NUM_SPLITS=1), p, H100)
    # fp32, D=256, 256-key tiles, 4 stages: (16 + 2*4*256) * 256 * 4 B = 2 MiB.
    fat = Config(BLOCK_N=256, NUM_SPLITS=1, num_warps=4, num_stages=4)
    assert "shared memory" in DECODE.reject_reason(fat, _decode(L=4096, D=256, dtype="fp32"), H100)
    # A 64-head group, D=128, 128-key tiles: spilled with 4 warps on sm_90, not with 8.
    mqa = _decode(B=1, H=64, HKV=1, L=4096, D=128)
    wide = Config(BLOCK_N=128, NUM_SPLITS=1, num_warps=4, num_stages=2)
    assert "192 registers per thread" in DECODE.reject_reason(wide, mqa, H100)
    assert DECODE.reject_reason(wide.replace(num_warps=8), mqa, H100) is None


# -- heuristics -----------------------------------------------------------------------------
MODEL_SHAPES = [  # (H, HKV, D): MiniLM, SmolLM2-135M, Llama-3-8B, an MQA model, odd ones
    (12, 12, 32), (9, 3, 64), (32, 8, 128), (71, 1, 64), (4, 1, 13), (8, 2, 256),
]


@pytest.mark.parametrize("device", ALL, ids=lambda d: d.name)
def test_prefill_heuristic_is_valid_for_many_shapes(device):
    for (H, HKV, D), B, S, dtype, causal, varlen in itertools.product(
            MODEL_SHAPES, (1, 3), (1, 13, 257, 4096), PREFILL.dtypes, (True, False), (True, False)):
        p = _prefill(B=B, H=H, HKV=HKV, S=S, D=D, dtype=dtype, causal=causal, varlen=varlen)
        cfg = PREFILL.heuristic(p, device)
        assert PREFILL.reject_reason(cfg, p, device) is None, (device.name, PREFILL.shape_key(p), cfg)


@pytest.mark.parametrize("device", ALL, ids=lambda d: d.name)
def test_decode_heuristic_is_valid_for_many_shapes(device):
    for (H, HKV, D), B, L, dtype in itertools.product(MODEL_SHAPES, (1, 3, 64), (1, 13, 257, 32768), DECODE.dtypes):
        p = _decode(B=B, H=H, HKV=HKV, L=L, D=D, dtype=dtype)
        cfg = DECODE.heuristic(p, device)
        assert DECODE.reject_reason(cfg, p, device) is None, (device.name, DECODE.shape_key(p), cfg)


def test_prefill_heuristic_on_h100_and_cpu():
    llama = _prefill(B=1, H=32, HKV=8, S=4096, D=128, dtype="bf16")
    cfg = PREFILL.heuristic(llama, H100)
    assert cfg["BLOCK_M"] == 128 and cfg["num_stages"] >= 2 and cfg["num_warps"] == 8
    # A short prompt with few heads: smaller query blocks to give the SMs work.
    short = PREFILL.heuristic(_prefill(B=1, H=9, HKV=3, S=257, D=64), H100)
    assert short["BLOCK_M"] == 64
    # The interpreter pays per program: the largest tiles, bounded by the problem.
    assert PREFILL.heuristic(_prefill(S=257), CPU)["BLOCK_M"] == 128
    assert PREFILL.heuristic(_prefill(S=13), CPU)["BLOCK_M"] == 16


@pytest.mark.parametrize("B,HKV,L", [(1, 8, 4096), (4, 8, 32768), (1, 1, 257), (64, 8, 4096)])
def test_decode_heuristic_splits_just_enough_to_cover_the_sms(B, HKV, L):
    p = _decode(B=B, H=4 * HKV, HKV=HKV, L=L, D=128, dtype="bf16")
    cfg = DECODE.heuristic(p, H100)
    splits, tiles = cfg["NUM_SPLITS"], C.cdiv(L, cfg["BLOCK_N"])
    assert splits <= min(tiles, MAX_SPLITS)
    programs = B * HKV * splits
    assert programs >= H100.sm_count or splits * 2 > min(tiles, MAX_SPLITS), cfg
    assert splits == 1 or programs // 2 < H100.sm_count, f"{cfg}: fewer splits would cover the SMs"
    assert DECODE.heuristic(p, CPU)["NUM_SPLITS"] == 1


# -- pure functions: lengths, FLOPs, tolerances ---------------------------------------------
def test_random_lengths_and_their_expected_sums(seed):
    assert random_lengths(5, 257, CPU_DEV, _gen(seed)).dtype == torch.int32
    draws = torch.stack([random_lengths(5, 257, CPU_DEV, _gen(seed + i)) for i in range(400)]).long()
    assert draws.min() >= 1 and draws.max() <= 257
    assert (draws.max(dim=1).values == 257).all(), "every draw holds one sequence of the longest length"
    sum_n, sum_n2 = expected_length_sums(5, 257)
    # 400 draws: the standard error of either mean is ~1.3% of it; 6% is over 4 of them.
    assert abs(draws.sum(1).double().mean().item() / sum_n - 1) < 0.06
    assert abs(draws.pow(2).sum(1).double().mean().item() / sum_n2 - 1) < 0.06
    assert random_lengths(1, 13, CPU_DEV, _gen(seed)).tolist() == [13]


def test_flops_count_the_unmasked_pairs_only():
    full = PREFILL.flops(_prefill(B=2, H=4, S=1024, D=64, causal=False))
    assert full == 4 * 2 * 4 * 64 * 1024 * 1024
    causal = PREFILL.flops(_prefill(B=2, H=4, S=1024, D=64, causal=True))
    assert causal == 4 * 2 * 4 * 64 * 1024 * 1025 // 2
    assert PREFILL.flops(_prefill(B=1, S=1024, varlen=True)) == PREFILL.flops(_prefill(B=1, S=1024))
    varlen = PREFILL.flops(_prefill(B=8, H=4, S=1024, D=64, causal=False, varlen=True))
    assert 0.3 * full * 4 < varlen < 0.5 * full * 4  # E[n^2] ~ S^2/3 for 7 of the 8 sequences
    dec = DECODE.flops(_decode(B=1, H=32, HKV=8, L=4096, D=128))
    assert dec == 4 * 32 * 128 * 4096
    # Decode reads the cache of the tokens inside each sequence: that dominates its bytes.
    assert DECODE.bytes_moved(_decode(B=1, H=32, HKV=8, L=4096, D=128, dtype="bf16")) > 2 * 4096 * 8 * 128 * 2


def test_harmonic_and_row_power_sums_match_brute_force():
    for n in (1, 2, 3, 13, 99, 100, 257, 5000):
        assert harmonic(n) == pytest.approx(sum(1 / i for i in range(1, n + 1)), rel=1e-9)
        brute = sum(min(1.0, math.e / k) for k in range(1, n + 1)) / n
        assert mean_row_power(n) == pytest.approx(brute, rel=1e-6)


def test_tolerance_widens_only_where_rows_differ_in_size():
    assert PREFILL.tolerance(_prefill(S=4096, causal=False)) == tolerance_for("fp16")
    assert PREFILL.tolerance(_prefill(S=4096, causal=True, dtype="fp32")) == tolerance_for("fp32")
    atol = [PREFILL.tolerance(_prefill(S=s, causal=True, dtype="bf16")).atol for s in (257, 1024, 4096)]
    assert tolerance_for("bf16").atol <= atol[0] < atol[1] < atol[2] < 6 * tolerance_for("bf16").atol
    assert DECODE.tolerance(_decode(B=1, L=4096)) == tolerance_for("fp16")
    assert DECODE.tolerance(_decode(B=64, L=4096)).atol > tolerance_for("fp16").atol


# -- the references -------------------------------------------------------------------------
def _sdpa_per_sequence(q, k, v, lens, causal):
    """Each sequence cut to its length and run through SDPA on its own: no masks shared
    with the reference under test. q [B, S, H, D], k/v [B, S, HKV, D] -> [B, S, H, D]."""
    out = torch.zeros(q.shape, dtype=torch.float32)
    group = q.shape[2] // k.shape[2]
    for b, n in enumerate(lens):
        qb, kb, vb = (t[b, :n].float().transpose(0, 1) for t in (q, k, v))  # [heads, n, D]
        kb, vb = kb.repeat_interleave(group, 0), vb.repeat_interleave(group, 0)
        out[b, :n] = F.scaled_dot_product_attention(qb, kb, vb, is_causal=causal).transpose(0, 1)
    return out


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("varlen", [True, False])
def test_prefill_reference_and_baseline_match_sdpa(causal, varlen, seed):
    p = _prefill(B=3, H=6, HKV=2, S=37, D=32, dtype="fp32", causal=causal, varlen=varlen)
    inputs = PREFILL.make_inputs(p, CPU_DEV, _gen(seed))
    lens = inputs.seq_lens.tolist() if varlen else [37] * 3
    expected = _sdpa_per_sequence(inputs.q, inputs.k, inputs.v, lens, causal)
    torch.testing.assert_close(PREFILL.reference(inputs), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(PREFILL.baseline(inputs).float(), expected, rtol=1e-5, atol=1e-5)


def test_decode_reference_and_baseline_match_sdpa(seed):
    p = _decode(B=4, H=8, HKV=2, L=40, D=32, dtype="fp32")
    inputs = DECODE.make_inputs(p, CPU_DEV, _gen(seed))
    expected = torch.stack([
        F.scaled_dot_product_attention(inputs.q[b][:, None], inputs.k_cache[b, :n].transpose(0, 1),
                                       inputs.v_cache[b, :n].transpose(0, 1), enable_gqa=True)[:, 0]
        for b, n in enumerate(inputs.seq_lens.tolist())])
    torch.testing.assert_close(DECODE.reference(inputs), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(DECODE.baseline(inputs).float(), expected, rtol=1e-5, atol=1e-5)


# -- the kernels ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_decode_step_equals_the_last_row_of_causal_prefill(dtype, seed):
    """A decode step at length n is row n-1 of causal prefill over the first n tokens."""
    B, H, HKV, S, D = 4, 8, 2, 37, 64
    inputs = PREFILL.make_inputs(_prefill(B=B, H=H, HKV=HKV, S=S, D=D, dtype=dtype, varlen=True), CPU_DEV, _gen(seed))
    lens = inputs.seq_lens
    rows = torch.arange(B), lens.long() - 1
    prefill = kernels.attention(inputs.q, inputs.k, inputs.v, causal=True, seq_lens=lens)
    # The prefill k/v [B, S, HKV, D] are a KV cache of length S; 2 splits of 16-key tiles
    # leave sequences of <= 16 tokens with an empty split.
    decode = kernels.attention_decode(inputs.q[rows], inputs.k, inputs.v, lens,
                                      config={"BLOCK_N": 16, "NUM_SPLITS": 2})
    # Both sides round (P to fp16 for the PV dot, the output), each within the bound of a
    # comparison with the fp32 reference, so their difference is allowed twice that bound.
    tol = tolerance_for(dtype)
    result = compare(decode.float(), prefill[rows].float(), Tolerance(rtol=2 * tol.rtol, atol=2 * tol.atol))
    assert result.ok, f"seed {seed} lens {lens.tolist()}: {result.summary()}"


@pytest.mark.parametrize("group", [1, 3, 4, 8])
def test_gqa_groups(group, seed):
    HKV = 2
    p = _prefill(B=2, H=group * HKV, HKV=HKV, S=13, D=32, causal=True)
    inputs = PREFILL.make_inputs(p, CPU_DEV, _gen(seed))
    _check(PREFILL.launch(inputs, PREFILL.heuristic(p, CPU)), PREFILL.reference(inputs), "fp16", f"seed {seed}")
    d = _decode(B=2, H=group * HKV, HKV=HKV, L=13, D=32)
    dinputs = DECODE.make_inputs(d, CPU_DEV, _gen(seed))
    _check(DECODE.launch(dinputs, DECODE.heuristic(d, CPU)), DECODE.reference(dinputs), "fp16", f"seed {seed}")


def test_decode_group_larger_than_one_program(seed):
    """MQA: 71 query heads on one KV head take two programs of up to 64 rows each."""
    assert 71 > MAX_GROUP_ROWS
    d = _decode(B=2, H=71, HKV=1, L=13, D=16)
    inputs = DECODE.make_inputs(d, CPU_DEV, _gen(seed))
    _check(DECODE.launch(inputs, DECODE.heuristic(d, CPU)), DECODE.reference(inputs), "fp16", f"seed {seed}")


def _strided(t: torch.Tensor, perm: tuple[int, ...]) -> torch.Tensor:
    """The same values in a tensor whose every dimension is strided: stored in `perm`
    order, with every other element of the last stored dimension skipped."""
    shape = [t.shape[i] for i in perm]
    store = torch.full(shape[:-1] + [2 * shape[-1]], float("nan"), dtype=t.dtype)
    view = store[..., ::2]
    view.copy_(t.permute(perm))
    inverse = [perm.index(i) for i in range(t.dim())]
    return view.permute(inverse)


def test_prefill_on_strided_views_and_a_strided_out(seed):
    p = _prefill(B=2, H=6, HKV=3, S=13, D=13, causal=False)  # D=13: padded to 16 and masked
    inputs = PREFILL.make_inputs(p, CPU_DEV, _gen(seed))
    q = _strided(inputs.q, (0, 2, 1, 3))  # [B, H, S, D] storage, as after a head transpose
    k = _strided(inputs.k, (2, 0, 3, 1))
    v = _strided(inputs.v, (3, 1, 0, 2))
    assert not any(t.is_contiguous() for t in (q, k, v))
    out = _strided(torch.full(inputs.q.shape, float("nan"), dtype=q.dtype), (0, 2, 1, 3))
    got = kernels.attention(q, k, v, causal=False, out=out)
    assert got is out
    _check(out, PREFILL.reference(inputs), "fp16", f"seed {seed}")


def test_decode_on_strided_caches(seed):
    d = _decode(B=3, H=9, HKV=3, L=13, D=64)
    inputs = DECODE.make_inputs(d, CPU_DEV, _gen(seed))
    k = _strided(inputs.k_cache, (0, 2, 1, 3))  # [B, HKV, L, D] storage (a head-major cache)
    v = torch.cat([inputs.v_cache, torch.full_like(inputs.v_cache, float("nan"))], dim=1)[:, :13]  # a longer cache, cut
    q = _strided(inputs.q, (1, 0, 2))
    out = kernels.attention_decode(q, k, v, inputs.seq_lens, config={"NUM_SPLITS": 1})
    _check(out, DECODE.reference(inputs), "fp16", f"seed {seed}")


def _poison_past(t: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """t [B, S, ...] with NaN at every position >= lens[b]."""
    past = torch.arange(t.shape[1])[None, :] >= lens[:, None].long()
    return t.masked_fill(past.view(*past.shape, *([1] * (t.dim() - 2))), float("nan"))


@pytest.mark.parametrize("causal", [True, False])
def test_prefill_lengths_mask_keys_and_zero_rows(causal, seed):
    S = 257
    p = _prefill(B=4, H=4, HKV=2, S=S, D=32, causal=causal, varlen=True)
    clean = PREFILL.make_inputs(p, CPU_DEV, _gen(seed))
    lens = torch.tensor([1, 13, S, 100], dtype=torch.int32)
    clean = AttentionInputs(clean.q, clean.k, clean.v, causal, lens)
    dirty = AttentionInputs(*(_poison_past(t, lens) for t in (clean.q, clean.k, clean.v)), causal, lens)
    out = PREFILL.launch(dirty, Config(BLOCK_M=64, BLOCK_N=32, num_warps=4, num_stages=2))
    ref = PREFILL.reference(clean)
    # The rows within each length against the reference; compared whole, the 64% of rows that
    # are zeros shrank the tolerance's rms term (seed 2108966203 failed one element so).
    _check(torch.cat([out[b, :n] for b, n in enumerate(lens.tolist())]),
           torch.cat([ref[b, :n] for b, n in enumerate(lens.tolist())]), "fp16", f"seed {seed}")
    for b, n in enumerate(lens.tolist()):
        assert (out[b, n:] == 0).all(), f"rows past length {n} must be zeros"


@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")  # the poisoned rows >= 32
def test_causal_programs_stop_at_their_diagonal(seed):
    """With 16-row and 16-key tiles, the programs of rows < 32 must never load a key >= 32:
    NaN there would reach their output through the P @ V product (0 * NaN)."""
    p = _prefill(B=1, H=2, HKV=1, S=64, D=32, causal=True)
    clean = PREFILL.make_inputs(p, CPU_DEV, _gen(seed))
    cut = torch.tensor([32], dtype=torch.int32)
    dirty = AttentionInputs(clean.q, _poison_past(clean.k, cut), _poison_past(clean.v, cut), True)
    out = PREFILL.launch(dirty, Config(BLOCK_M=16, BLOCK_N=16, num_warps=4, num_stages=2))
    _check(out[:, :32], PREFILL.reference(clean)[:, :32], "fp16", f"seed {seed}")
    assert out[:, 32:].isnan().any(), "later rows do see the poisoned keys (the test itself works)"


@pytest.mark.parametrize("splits,block_n", [(64, 16), (4, 256), (2, 16)])
def test_decode_with_more_splits_than_short_sequences_need(splits, block_n, seed):
    L = 1025
    d = _decode(B=5, H=4, HKV=2, L=L, D=64)
    inputs = DECODE.make_inputs(d, CPU_DEV, _gen(seed))
    lens = torch.tensor([1, 5, L, 40, 17], dtype=torch.int32)  # 1 and 5 keys: one tile, the other splits empty
    clean = DecodeInputs(inputs.q, inputs.k_cache, inputs.v_cache, lens)
    dirty = DecodeInputs(inputs.q, _poison_past(inputs.k_cache, lens), _poison_past(inputs.v_cache, lens), lens)
    cfg = DECODE.complete({"NUM_SPLITS": splits, "BLOCK_N": block_n}, d, CPU)
    out = DECODE.launch(dirty, cfg, out=torch.full((5, 4, 64), float("nan"), dtype=torch.float16))
    _check(out, DECODE.reference(clean), "fp16", f"seed {seed} {cfg}")
    torch.testing.assert_close(out[0].float(), inputs.v_cache[0, 0].float().repeat_interleave(2, 0), rtol=0, atol=0)


@pytest.mark.parametrize("S", [1, 13, 257])
def test_prefill_odd_lengths_bf16_and_a_custom_scale(S, seed):
    p = _prefill(B=1, H=3, HKV=1, S=S, D=64, dtype="bf16", causal=S != 13)
    inputs = PREFILL.make_inputs(p, CPU_DEV, _gen(seed))
    scaled = AttentionInputs(inputs.q, inputs.k, inputs.v, inputs.causal, scale=0.3)
    out = kernels.attention(scaled.q, scaled.k, scaled.v, causal=scaled.causal, scale=0.3)
    _check(out, PREFILL.reference(scaled), "bf16", f"seed {seed}")


# -- the public functions -------------------------------------------------------------------
def test_public_functions_reject_bad_inputs():
    f16 = DTYPE_NAMES["fp16"]
    q, kv = torch.zeros(1, 13, 6, 64, dtype=f16), torch.zeros(1, 13, 4, 64, dtype=f16)
    with pytest.raises(InvalidProblem, match="H=6 is not a multiple of HKV=4"):
        kernels.attention(q, kv, kv)
    big = torch.zeros(1, 13, 2, 320, dtype=f16)
    with pytest.raises(InvalidProblem, match="D=320 exceeds 256"):
        kernels.attention(big, big, big)
    kv = torch.zeros(1, 13, 2, 64, dtype=f16)
    with pytest.raises(InvalidProblem, match="one dtype"):
        kernels.attention(q, kv.float(), kv.float())
    with pytest.raises(InvalidProblem, match="seq_lens must be int32"):
        kernels.attention(q, kv, kv, seq_lens=torch.tensor([13]))
    with pytest.raises(InvalidProblem, match="out must be"):
        kernels.attention(q, kv, kv, out=torch.empty(1, 13, 6, 64))
    with pytest.raises(InvalidConfig, match="BLOCK_M=32 exceeds S=13"):
        kernels.attention(q, kv, kv, config={"BLOCK_M": 32})
    cache = torch.zeros(1, 13, 2, 64, dtype=f16)
    with pytest.raises(InvalidProblem, match="seq_lens must be int32"):
        kernels.attention_decode(q[:, 0], cache, cache, torch.tensor([13], dtype=torch.int64))
    with pytest.raises(InvalidProblem, match="q \\[B, H, D\\]"):
        kernels.attention_decode(q, cache, cache, torch.tensor([13], dtype=torch.int32))
    with pytest.raises(InvalidConfig, match="NUM_SPLITS=2 exceeds"):
        kernels.attention_decode(q[:, 0], cache, cache, torch.tensor([13], dtype=torch.int32),
                                 config={"NUM_SPLITS": 2})


def test_lengths_past_the_end_are_clamped(seed):
    """A length beyond S or L must not read out of bounds: it acts as S or L."""
    p = _prefill(B=1, H=2, HKV=1, S=13, D=32, causal=False)
    inputs = PREFILL.make_inputs(p, CPU_DEV, _gen(seed))
    out = kernels.attention(inputs.q, inputs.k, inputs.v, causal=False, seq_lens=torch.tensor([1000], dtype=torch.int32))
    _check(out, PREFILL.reference(inputs), "fp16", f"seed {seed}")
    dec = kernels.attention_decode(inputs.q[:, 12], inputs.k, inputs.v, torch.tensor([99], dtype=torch.int32))
    _check(dec, PREFILL.reference(inputs)[:, 12], "fp16", f"seed {seed}")
