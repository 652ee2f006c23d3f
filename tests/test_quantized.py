"""The quantized matmul kernels (matmul_w8a16, matmul_w4a16, matmul_fp8) beyond the generic
tests: their quantizers (round-trip SQNR, int4 packing, all-zero rows and groups), their
own constraints and heuristics on fake devices, their public functions, and the fp8
kernel run through the Triton interpreter (the generic tests skip fp8 on the CPU).

Inputs are fresh random data every run (the `seed` fixture); shapes are odd on purpose.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import kernels
from kernels.accuracy import compare, sqnr_db
from kernels.device import DeviceInfo, current_device, dtype_unsupported_reason, interpreter_enabled
from kernels.errors import InvalidConfig, InvalidProblem, UnsupportedOnDevice
from kernels.gemm import MAX_SKINNY_CTAS_PER_SM
from kernels.matmul import SPEC as MATMUL
from kernels.matmul_fp8 import SPEC as FP8
from kernels.matmul_fp8 import Fp8MatmulInputs, quantize_fp8
from kernels.matmul_w4a16 import SCHEMES, W4A16Inputs, block_k_within_group, quantize_int4
from kernels.matmul_w4a16 import SPEC as W4
from kernels.matmul_w8a16 import SPEC as W8
from kernels.matmul_w8a16 import Int8Weight, quantize_int8
from kernels.spec import Config

from .conftest import generator

GiB = 1 << 30
H100 = DeviceInfo(kind="cuda", name="H100", capability=(9, 0), smem_per_block=232448, sm_count=132,
                  total_memory=80 * GiB, interpreter=False)
A100 = DeviceInfo(kind="cuda", name="A100", capability=(8, 0), smem_per_block=166912, sm_count=108,
                  total_memory=40 * GiB, interpreter=False)
L4 = DeviceInfo(kind="cuda", name="L4", capability=(8, 9), smem_per_block=101376, sm_count=58,
                total_memory=24 * GiB, interpreter=False)
CPU = DeviceInfo(kind="cpu", name="cpu", capability=None, smem_per_block=None, sm_count=2,
                 total_memory=8 * GiB, interpreter=True)
DEVICES = [CPU, H100, A100, L4]

# |w - dequant(w)| <= scale / 2, with room for the fp32 rounding of w / scale.
HALF_STEP = 0.5 * (1 + 1e-5)


def _randn(seed: int, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=generator(torch.device("cpu"), seed)) * scale


# -- int8 quantizer ----------------------------------------------------------------------
def test_int8_round_trip(seed):
    w = _randn(seed, 257, 129, scale=0.02)
    qw = quantize_int8(w)
    assert qw.qweight.dtype == torch.int8 and tuple(qw.qweight.shape) == (257, 129)
    assert qw.scale.dtype == torch.float32 and tuple(qw.scale.shape) == (257,)
    assert (qw.qweight.abs().amax(dim=1) == 127).all(), "each row's absmax must map to +-127"
    deq = qw.dequantize()
    assert ((w - deq).abs() <= HALF_STEP * qw.scale[:, None]).all()
    db = sqnr_db(w, deq)
    assert db >= 20, f"seed {seed}: int8 SQNR {db:.1f} dB"
    assert qw.dequantize(torch.float16).dtype == torch.float16


def test_int8_all_zero_rows(seed):
    w = _randn(seed, 13, 64)
    w[0] = 0
    w[7] = 0
    qw = quantize_int8(w)
    assert torch.isfinite(qw.scale).all() and (qw.scale > 0).all()
    deq = qw.dequantize()
    assert (deq[0] == 0).all() and (deq[7] == 0).all()
    assert sqnr_db(w[1:7], deq[1:7]) >= 20


@pytest.mark.parametrize("quantize", [quantize_int8, lambda t: quantize_int4(t, 32), quantize_fp8],
                         ids=["int8", "int4", "fp8"])
def test_quantizers_reject_bad_tensors(quantize):
    with pytest.raises(InvalidProblem, match="NaN or Inf"):
        quantize(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(InvalidProblem, match="2-D"):
        quantize(torch.ones(8))
    with pytest.raises(InvalidProblem, match="2-D"):
        quantize(torch.ones((4, 4), dtype=torch.int32))


# -- int4 quantizer ----------------------------------------------------------------------
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
@pytest.mark.parametrize("group", [32, 64, 128])
def test_int4_round_trip(group, symmetric, seed):
    w = _randn(seed, 64, 257, scale=0.02)  # K = 257 is padded to a multiple of the group
    qw = quantize_int4(w, group, symmetric)
    groups = -(-257 // group)
    assert qw.packed.dtype == torch.uint8 and tuple(qw.packed.shape) == (64, groups * group // 2)
    assert tuple(qw.scale.shape) == (64, groups) and qw.scale.dtype == torch.float32
    assert (qw.zero is None) == symmetric
    assert SCHEMES[qw.scheme] == (group, symmetric)
    deq = qw.dequantize()
    assert tuple(deq.shape) == (64, 257)
    step = qw.scale.repeat_interleave(group, dim=1)[:, :257]
    assert ((w - deq).abs() <= HALF_STEP * step).all()
    db = sqnr_db(w, deq)
    assert db >= 15, f"seed {seed}: {qw.scheme} SQNR {db:.1f} dB"


def test_int4_nibble_order_by_hand():
    # One symmetric group with absmax 7, so scale = 1 and the codes are w + 8.
    w = torch.zeros((1, 32))
    w[0, :4] = torch.tensor([-7.0, 7.0, 0.0, 1.0])
    qw = quantize_int4(w, 32)
    assert qw.scale.item() == 1.0
    # byte 0 = code(k=0) | code(k=1) << 4 = 1 | 15 << 4; byte 1 = 8 | 9 << 4
    assert qw.packed[0, 0].item() == 0xF1 and qw.packed[0, 1].item() == 0x98
    assert (qw.packed[0, 2:] == 0x88).all()  # zeros are code 8 in both nibbles


@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_int4_packing_matches_the_codes(symmetric, seed):
    w = _randn(seed, 5, 13)  # odd K: padded to 32 with zeros
    qw = quantize_int4(w, 32, symmetric)
    assert tuple(qw.packed.shape) == (5, 16)
    scale = qw.scale.repeat_interleave(32, dim=1)
    padded = F.pad(w, (0, 32 - 13))
    if symmetric:
        zero = torch.full_like(scale, 8.0)
        codes = torch.round(padded / scale).clamp(-8, 7) + 8
    else:
        zero = qw.zero.repeat_interleave(32, dim=1)
        codes = (torch.round(padded / scale) + zero).clamp(0, 15)
    low, high = qw.packed & 0xF, qw.packed >> 4
    assert torch.equal(low.float(), codes[:, 0::2]) and torch.equal(high.float(), codes[:, 1::2])
    assert torch.equal(qw.unpack().float(), codes)
    assert torch.equal(codes[:, 13:], zero[:, 13:]), "the padding must hold the zero point"


@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_int4_all_zero_and_one_signed_groups(symmetric, seed):
    w = _randn(seed, 4, 96)
    w[0] = 0  # an all-zero row
    w[2, 32:64] = 0  # an all-zero group
    w[3, 64:96] = w[3, 64:96].abs() + 1  # an all-positive group (asymmetric: 0 stays in range)
    qw = quantize_int4(w, 32, symmetric)
    assert torch.isfinite(qw.scale).all() and (qw.scale > 0).all()
    deq = qw.dequantize()
    assert (deq[0] == 0).all() and (deq[2, 32:64] == 0).all()
    step = qw.scale.repeat_interleave(32, dim=1)
    assert ((w - deq).abs() <= HALF_STEP * step).all()


def test_int4_rejects_bad_group_size():
    with pytest.raises(InvalidProblem, match="group_size"):
        quantize_int4(torch.ones((4, 8)), group_size=7)


# -- fp8 quantizer -----------------------------------------------------------------------
@pytest.mark.parametrize("per_row", [True, False], ids=["row", "tensor"])
def test_fp8_round_trip(per_row, seed):
    t = _randn(seed, 257, 129, scale=3.0)
    q = quantize_fp8(t, per_row)
    assert q.data.dtype == torch.float8_e4m3fn and tuple(q.data.shape) == (257, 129)
    assert tuple(q.scale.shape) == ((257,) if per_row else (1,))
    amax = q.data.float().abs().amax(dim=1) if per_row else q.data.float().abs().amax()
    assert (amax == 448).all(), "the absmax must map to e4m3's largest value"
    db = sqnr_db(t, q.dequantize())
    assert db >= 20, f"seed {seed}: fp8 SQNR {db:.1f} dB"


def test_fp8_all_zero_rows_and_tensor(seed):
    t = _randn(seed, 6, 40)
    t[2] = 0
    q = quantize_fp8(t, per_row=True)
    assert (q.scale > 0).all() and (q.dequantize()[2] == 0).all()
    z = quantize_fp8(torch.zeros((3, 5)), per_row=False)
    assert z.scale.item() == 1.0 and (z.dequantize() == 0).all()


# -- constraints on fake devices ---------------------------------------------------------
def _cfg(**kw: int) -> Config:
    base = dict(BLOCK_M=16, BLOCK_N=64, BLOCK_K=32, GROUP_M=1, SPLIT_K=1, num_warps=4, num_stages=2)
    return Config(base, **kw)


def test_w4_block_k_must_lie_in_one_group():
    g32 = W4.problem({"M": 16, "N": 256, "K": 256}, "fp16", {"quant": "int4-g32"})
    g64 = W4.problem({"M": 16, "N": 256, "K": 256}, "fp16", {"quant": "int4-g64-asym"})
    assert W4.reject_reason(_cfg(BLOCK_K=32), g32, H100) is None
    reason = W4.reject_reason(_cfg(BLOCK_K=64), g32, H100)
    assert reason and "group of 32" in reason
    assert W4.reject_reason(_cfg(BLOCK_K=64), g64, H100) is None
    # A BLOCK_K that is not a divisor is rejected by the group rule itself.
    g128 = W4.problem({"M": 16, "N": 256, "K": 256}, "fp16", {"quant": "int4-g128"})
    assert block_k_within_group(_cfg(BLOCK_K=48), g128, H100)
    with pytest.raises(InvalidConfig, match="group"):
        W4.complete({"BLOCK_K": 128}, g32, H100)


def test_fp8_block_k_at_least_32():
    p = FP8.problem({"M": 16, "N": 256, "K": 256}, "bf16", {})
    assert FP8.reject_reason(_cfg(BLOCK_K=32), p, H100) is None
    reason = FP8.reject_reason(_cfg(BLOCK_K=16), p, H100)
    assert reason and "32" in reason
    # K=13 still has a valid K tile: 32 (padded up to the fp8 minimum), not 64.
    small = FP8.problem({"M": 1, "N": 257, "K": 13}, "fp16", {})
    assert FP8.reject_reason(_cfg(BLOCK_K=32), small, H100) is None
    assert FP8.reject_reason(_cfg(BLOCK_K=64), small, H100)


# (spec, options, config, device): with num_stages=5 over the device's shared memory; with
# 2 stages every constraint passes, so the rejection is the shared-memory estimate's.
SMEM_CASES = [
    (W8, {}, dict(BLOCK_M=128, BLOCK_N=256, BLOCK_K=128, num_warps=8), H100),
    (W4, {"quant": "int4-g128"}, dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=128, num_warps=8), H100),
    (FP8, {}, dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=128, num_warps=8), L4),
]


@pytest.mark.parametrize("spec,options,config,device", SMEM_CASES, ids=[c[0].name for c in SMEM_CASES])
def test_shared_memory_limit(spec, options, config, device):
    p = spec.problem({"M": 4096, "N": 4096, "K": 4096}, "fp16", options)
    deep = _cfg(**config, GROUP_M=8, num_stages=5)
    reason = spec.reject_reason(deep, p, device)
    assert reason and "shared memory" in reason
    assert spec.reject_reason(deep.replace(num_stages=2), p, device) is None
    assert spec.reject_reason(deep, p, CPU) is None  # the interpreter has no such limit


def test_registers_count_the_scaled_tile_product():
    # w4 keeps the tile's dot result apart from the accumulator: 2 * 128 * 256 / 256 threads.
    p = W4.problem({"M": 4096, "N": 4096, "K": 4096}, "fp16", {})
    reason = W4.reject_reason(_cfg(BLOCK_M=128, BLOCK_N=256, BLOCK_K=64, GROUP_M=8, num_warps=8), p, CPU)
    assert reason and "registers" in reason
    assert W8.reject_reason(_cfg(BLOCK_M=128, BLOCK_N=256, BLOCK_K=64, GROUP_M=8, num_warps=8),
                            W8.problem({"M": 4096, "N": 4096, "K": 4096}, "fp16", {}), CPU) is None


# -- heuristics --------------------------------------------------------------------------
HEURISTIC_SHAPES = [(m, n, k) for m in (1, 13, 64, 65, 257, 4096) for n in (1, 13, 257, 4096)
                    for k in (1, 13, 100, 257, 4096)]


def _option_sets(spec):
    quants = next((o.choices for o in spec.options if o.name == "quant"), (None,))
    for quant in quants:
        for bias in ("0", "1"):
            yield {"bias": bias} if quant is None else {"quant": quant, "bias": bias}


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d.name)
@pytest.mark.parametrize("spec", [W8, W4, FP8], ids=lambda s: s.name)
def test_heuristic_is_valid_everywhere(spec, device):
    for options in _option_sets(spec):
        for dtype in spec.dtypes:
            for m, n, k in HEURISTIC_SHAPES:
                p = spec.problem({"M": m, "N": n, "K": k}, dtype, options)
                cfg = spec.heuristic(p, device)
                reason = spec.reject_reason(cfg, p, device)
                assert reason is None, f"{spec.shape_key(p)} on {device.name}: {cfg}: {reason}"


@pytest.mark.parametrize("spec", [W8, W4, FP8], ids=lambda s: s.name)
def test_heuristic_splits_k_for_decode_on_gpu(spec):
    # M=1 with N=1024 makes 16 output tiles of 64 columns: an H100 has 132 SMs to fill, and
    # (tests/test_skinny_split_k.py) a few programs per SM for the weight bytes in flight.
    p = spec.problem({"M": 1, "N": 1024, "K": 4096}, spec.dtypes[-1], {})
    cfg = spec.heuristic(p, H100)
    assert cfg["BLOCK_M"] == 16 and cfg["SPLIT_K"] > 1
    programs = 1024 // cfg["BLOCK_N"] * cfg["SPLIT_K"]
    assert H100.sm_count <= programs <= H100.sm_count * MAX_SKINNY_CTAS_PER_SM
    # The interpreter pays per program: no split, large tiles.
    cpu = spec.heuristic(p, CPU)
    assert cpu["SPLIT_K"] == 1 and cpu["BLOCK_N"] >= 64


def test_quantized_weights_move_fewer_bytes():
    shape = {"M": 16, "N": 4096, "K": 4096}
    dense = MATMUL.bytes_moved(MATMUL.problem(shape, "fp16"))
    int8 = W8.bytes_moved(W8.problem(shape, "fp16"))
    int4 = W4.bytes_moved(W4.problem(shape, "fp16"))
    assert int4 < 0.6 * int8 < 0.6 * 0.6 * dense
    assert W8.flops(W8.problem(shape, "fp16")) == MATMUL.flops(MATMUL.problem(shape, "fp16"))


# -- public functions --------------------------------------------------------------------
def _check(out: torch.Tensor, ref: torch.Tensor, spec, problem, what: str) -> None:
    result = compare(out.float(), ref, spec.tolerance(problem))
    assert result.ok, f"{what}: {result.summary()}"


def test_matmul_w8a16_public_function(seed):
    x = _randn(seed, 13, 129).half()
    w = _randn(seed + 1, 257, 129)
    bias = _randn(seed + 2, 257).half()
    qw = quantize_int8(w)
    ref = x.float() @ qw.dequantize().t() + bias.float()
    problem = W8.problem({"M": 13, "N": 257, "K": 129}, "fp16", {"bias": "1"})
    y = kernels.matmul_w8a16(x, qw, bias)
    assert y.dtype == torch.float16 and tuple(y.shape) == (13, 257)
    _check(y, ref, W8, problem, f"seed {seed}")
    # A transposed (non-contiguous) x, a partial config with split-K, a poisoned out buffer.
    xt = x.t().contiguous().t()
    out = torch.full((13, 257), float("nan"), dtype=torch.float16)
    y2 = kernels.matmul_w8a16(xt, qw, bias, config={"SPLIT_K": 2, "BLOCK_K": 32}, out=out)
    assert y2 is out
    _check(y2, ref, W8, problem, f"seed {seed}, split-K")


def test_matmul_w8a16_rejects_bad_inputs(seed):
    x = _randn(seed, 4, 32).half()
    qw = quantize_int8(_randn(seed, 16, 32))
    with pytest.raises(InvalidProblem, match="K"):
        kernels.matmul_w8a16(_randn(seed, 4, 31).half(), qw)
    with pytest.raises(InvalidProblem, match="int8"):
        kernels.matmul_w8a16(x, Int8Weight(qw.qweight.to(torch.int16), qw.scale))
    with pytest.raises(InvalidProblem, match="bias"):
        kernels.matmul_w8a16(x, qw, torch.zeros(15, dtype=torch.float16))
    with pytest.raises(InvalidProblem, match="out"):
        kernels.matmul_w8a16(x, qw, out=torch.empty((4, 15), dtype=torch.float16))
    with pytest.raises(InvalidConfig):
        kernels.matmul_w8a16(x, qw, config={"BLOCK_M": 64})  # beyond M=4 padded to 16


@pytest.mark.parametrize("quant", ["int4-g32-asym", "int4-g128"])
def test_matmul_w4a16_public_function(quant, seed):
    group, symmetric = SCHEMES[quant]
    x = _randn(seed, 5, 13)  # fp32 activations; K=13 is padded inside the weight
    qw = quantize_int4(_randn(seed + 1, 37, 13), group, symmetric)
    assert W4.problem_of(W4A16Inputs(x, qw)).opt("quant") == quant
    ref = x @ qw.dequantize().t()
    problem = W4.problem({"M": 5, "N": 37, "K": 13}, "fp32", {"quant": quant})
    _check(kernels.matmul_w4a16(x, qw), ref, W4, problem, f"seed {seed}")


def test_matmul_w4a16_rejects_unsupported_group(seed):
    qw = quantize_int4(_randn(seed, 8, 32), group_size=16)
    with pytest.raises(InvalidProblem, match="int4-g16"):
        kernels.matmul_w4a16(_randn(seed, 2, 32), qw)


def test_fp8_problem_names_the_scale_scheme(seed):
    x, w = _randn(seed, 13, 64), _randn(seed + 1, 32, 64)
    row = Fp8MatmulInputs(quantize_fp8(x), quantize_fp8(w), torch.bfloat16)
    tensor = Fp8MatmulInputs(quantize_fp8(x, per_row=False), quantize_fp8(w, per_row=False), torch.float16)
    mixed = Fp8MatmulInputs(quantize_fp8(x), quantize_fp8(w, per_row=False), torch.float16)
    assert FP8.shape_key(FP8.problem_of(row)) == "M=13,N=32,K=64|bf16|quant=fp8-row|bias=0"
    assert FP8.problem_of(tensor).opt("quant") == "fp8-tensor"
    assert FP8.problem_of(mixed).opt("quant") == "fp8-row"
    with pytest.raises(InvalidProblem, match="dtypes"):
        FP8.problem_of(Fp8MatmulInputs(row.x, row.w, torch.float32))
    with pytest.raises(InvalidProblem, match="scale"):
        bad = quantize_fp8(w)
        FP8.problem_of(Fp8MatmulInputs(row.x, type(bad)(bad.data, bad.scale[:5]), torch.float16))


def test_matmul_fp8_public_function(seed):
    xq = quantize_fp8(_randn(seed, 13, 129))
    wq = quantize_fp8(_randn(seed + 1, 257, 129))
    reason = dtype_unsupported_reason("fp8", current_device())
    if reason:
        with pytest.raises(UnsupportedOnDevice, match="fp8"):
            kernels.matmul_fp8(xq, wq)
        return
    y = kernels.matmul_fp8(xq, wq, out_dtype=torch.float16)
    assert y.dtype == torch.float16
    problem = FP8.problem({"M": 13, "N": 257, "K": 129}, "fp16", {})
    _check(y, xq.dequantize() @ wq.dequantize().t(), FP8, problem, f"seed {seed}")


# -- the fp8 kernel under the interpreter ------------------------------------------------
FP8_CASES = [
    ({"M": 1, "N": 257, "K": 13}, {"quant": "fp8-row"}, "fp16"),
    ({"M": 13, "N": 257, "K": 129}, {"quant": "fp8-tensor", "bias": "1"}, "bf16"),
    ({"M": 257, "N": 13, "K": 257}, {"quant": "fp8-row", "bias": "1"}, "fp16"),
    ({"M": 37, "N": 61, "K": 200}, {"quant": "fp8-row", "bias": "1"}, "bf16"),
]
FP8_CONFIGS = [
    _cfg(BLOCK_M=16, BLOCK_N=32, BLOCK_K=32),
    _cfg(BLOCK_M=16, BLOCK_N=16, BLOCK_K=64, SPLIT_K=2, num_warps=2, num_stages=3),
    _cfg(BLOCK_M=16, BLOCK_N=64, BLOCK_K=32, SPLIT_K=4),  # K=129: the last split owns no tile
    _cfg(BLOCK_M=32, BLOCK_N=16, BLOCK_K=32, GROUP_M=4),
    _cfg(BLOCK_M=64, BLOCK_N=64, BLOCK_K=128, num_warps=8),
]
_FP8_RUNNABLE = interpreter_enabled() or dtype_unsupported_reason("fp8", current_device()) is None


@pytest.mark.skipif(not _FP8_RUNNABLE, reason="fp8 needs the Triton interpreter or a GPU of capability >= 8.9")
@pytest.mark.parametrize("shape,options,dtype", FP8_CASES,
                         ids=[f"{'x'.join(map(str, c[0].values()))}-{c[2]}" for c in FP8_CASES])
def test_fp8_kernel_matches_reference(shape, options, dtype, seed):
    # SPEC.launch directly: on the CPU this checks the kernel's logic in emulation, which
    # the generic tests cannot (fp8 is "unsupported" there).
    dev = current_device()
    problem = FP8.problem(shape, dtype, options)
    inputs = FP8.make_inputs(problem, dev.torch_device, generator(dev.torch_device, seed))
    ref = FP8.reference(inputs)
    configs = [FP8.heuristic(problem, dev)]
    configs += [c for c in FP8_CONFIGS if FP8.reject_reason(c, problem, dev) is None and c not in configs]
    assert len(configs) >= 2
    for config in configs:
        out = torch.full(tuple(ref.shape), float("nan"), dtype=inputs.out_dtype, device=ref.device)
        got = FP8.launch(inputs, config, out=out)
        assert got is out
        _check(got, ref, FP8, problem, f"{FP8.shape_key(problem)} {config} seed {seed}")
