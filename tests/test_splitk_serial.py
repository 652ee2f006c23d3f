"""Split-K's serial reduction (kernels/splitk.py): the last split of a tile sums the partials
inside the matmul launch. Against the second-pass kernel it must give the same bits, and both
must match a float64 reference; the tile counters must be zero after every launch.

Under the interpreter the programs run one after another, so these check the arithmetic and
the counting, not the memory ordering between SMs: the `-m gpu` tests below do that on a GPU.
"""

from __future__ import annotations

import importlib
import itertools

import pytest
import torch

import kernels
from kernels import splitk
from kernels.accuracy import compare, tolerance_for
from kernels.errors import InvalidProblem
from kernels.matmul_w4a16 import quantize_int4
from kernels.matmul_w8a16 import quantize_int8

SPLITS = (2, 4, 8)
DTYPES = {"fp16": torch.float16, "fp32": torch.float32}


def _launch(kernel, x, w, bias, config):
    """One launch of `kernel` on x [M, K] and the float weight w [N, K] (quantized for the
    weight-only kernels); returns (output, its float64 reference)."""
    if kernel == "matmul":
        out = kernels.matmul(x, w.t(), bias, config={**config, "TMA": 0})
        ref = x.double() @ w.double().t()
    elif kernel == "matmul_w8a16":
        q = quantize_int8(w.float())
        out = kernels.matmul_w8a16(x, q, bias, config=config)
        ref = x.double() @ q.dequantize(torch.float32).double().t()
    else:
        q = quantize_int4(w.float(), 64, symmetric=False)
        out = kernels.matmul_w4a16(x, q, bias, config=config)
        ref = x.double() @ q.dequantize(torch.float32).double().t()
    return out, ref + bias.double() if bias is not None else ref


def _counters_zero(device) -> bool:
    ring = splitk._rings.get(torch.device(device))
    return ring is None or int((ring[0] != 0).sum()) == 0


@pytest.mark.parametrize("kernel", ["matmul", "matmul_w8a16", "matmul_w4a16"])
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_serial_and_second_pass_agree_bit_for_bit(kernel, dtype, monkeypatch, seed):
    gen = torch.Generator().manual_seed(seed)
    M, N, K = 13, 257, 301
    x = torch.randn((M, K), dtype=DTYPES[dtype], generator=gen)
    w = torch.randn((N, K), dtype=DTYPES[dtype], generator=gen)
    for split_k, with_bias in itertools.product(SPLITS, (False, True)):
        bias = torch.randn((N,), dtype=DTYPES[dtype], generator=gen) if with_bias else None
        config = dict(BLOCK_M=16, BLOCK_N=64, BLOCK_K=32, GROUP_M=1, SPLIT_K=split_k, num_warps=4, num_stages=2)
        outs = {}
        for way in splitk.REDUCES:
            monkeypatch.setenv(splitk.REDUCE_ENV, way)
            outs[way], ref = _launch(kernel, x, w, bias, config)
        where = f"seed {seed} SPLIT_K={split_k} bias={with_bias}"
        assert torch.equal(outs["serial"], outs["kernel"]), f"{where}: the serial sum differs from the second pass"
        result = compare(outs["serial"].double(), ref, tolerance_for(dtype))
        assert result.ok, f"{where}: {result.summary()}"
        assert _counters_zero("cpu"), f"{where}: a tile counter was left non-zero"


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_attention_decode_combines_in_its_launch_with_the_same_bits(dtype, monkeypatch, seed):
    """Split-KV's pass 2 the same way: the last split of each (sequence, head block) combines.
    Lengths from 1 to L, so some splits own no tile (lse = -inf, weight 0)."""
    from kernels.attention_decode import SPEC as DECODE
    from kernels.attention_decode import DecodeInputs

    gen = torch.Generator().manual_seed(seed)
    B, H, HKV, L, D = 4, 8, 2, 257, 64
    q, k, v = (torch.randn(shape, dtype=DTYPES[dtype], generator=gen) for shape in
               ((B, H, D), (B, L, HKV, D), (B, L, HKV, D)))
    lens = torch.tensor([L, 1, 13, int(torch.randint(2, L, (1,), generator=gen))], dtype=torch.int32)
    ref = DECODE.reference(DecodeInputs(q, k, v, lens)).double()
    for splits in (2, 4, 16):
        config = dict(BLOCK_N=16, NUM_SPLITS=splits, num_warps=4, num_stages=2)
        outs = {}
        for way in splitk.REDUCES:
            monkeypatch.setenv(splitk.REDUCE_ENV, way)
            outs[way] = kernels.attention_decode(q, k, v, lens, config=config)
        where = f"seed {seed} NUM_SPLITS={splits} lens={lens.tolist()}"
        assert torch.equal(outs["serial"], outs["kernel"]), f"{where}: the serial combine differs"
        result = compare(outs["serial"].double(), ref, tolerance_for(dtype))
        assert result.ok, f"{where}: {result.summary()}"
        assert _counters_zero("cpu"), where


def test_serial_launch_runs_no_second_pass(monkeypatch):
    calls = []
    monkeypatch.setattr(splitk, "reduce_partials", lambda *a: calls.append(a))
    x, w = torch.randn(5, 64), torch.randn(40, 64)
    config = dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=16, GROUP_M=1, SPLIT_K=4, num_warps=4, num_stages=2, TMA=0)
    monkeypatch.setenv(splitk.REDUCE_ENV, "serial")
    kernels.matmul(x, w.t(), config=config)
    assert calls == []
    monkeypatch.setenv(splitk.REDUCE_ENV, "kernel")
    kernels.matmul(x, w.t(), config=config)
    assert len(calls) == 1 and calls[0][0].shape == (4, 5, 40)


def test_strided_out_gets_the_serial_sum(monkeypatch):
    """The last split writes through `out`'s own strides (a column-major view here)."""
    monkeypatch.setenv(splitk.REDUCE_ENV, "serial")
    x, w = torch.randn(7, 96), torch.randn(33, 96)
    out = torch.empty((33, 7)).t()
    config = dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=32, GROUP_M=1, SPLIT_K=2, num_warps=4, num_stages=2, TMA=0)
    got = kernels.matmul(x, w.t(), config=config, out=out)
    assert got.data_ptr() == out.data_ptr()
    assert compare(out.double(), x.double() @ w.double().t(), tolerance_for("fp32")).ok


def test_reduce_way_reads_its_variable(monkeypatch):
    monkeypatch.delenv(splitk.REDUCE_ENV, raising=False)
    assert splitk.reduce_way() == "serial"
    monkeypatch.setenv(splitk.REDUCE_ENV, " Kernel ")
    assert splitk.reduce_way() == "kernel"
    monkeypatch.setenv(splitk.REDUCE_ENV, "atomic")
    with pytest.raises(InvalidProblem, match="INFERTUNE_SPLITK_REDUCE must be one of serial, kernel; got 'atomic'"):
        splitk.reduce_way()


def test_tile_counters_come_from_an_aligned_ring(monkeypatch):
    dev = torch.device("cpu")
    monkeypatch.setattr(splitk, "_rings", {})
    a = splitk.tile_counters(dev, 5)
    b = splitk.tile_counters(dev, 3)
    ring = splitk._rings[dev][0]
    assert a.data_ptr() == ring.data_ptr() and b.data_ptr() == ring.data_ptr() + 8 * 4  # 5 -> the next 16 bytes
    assert a.dtype == torch.int32 and a.shape == (5,) and not a.any()
    splitk._rings[dev][1] = splitk.RING_SLOTS - 2
    wrapped = splitk.tile_counters(dev, 4)  # no room before the end: back to slot 0
    assert wrapped.data_ptr() == ring.data_ptr()
    assert splitk.tile_counters(dev, splitk.RING_SLOTS + 1) is None


def test_no_ring_is_made_inside_a_capture(monkeypatch):
    """Allocating inside a CUDA-graph capture would tie the ring to the graph's pool: the
    launch falls back to the second pass; a ring made before the capture is used."""
    dev = torch.device("cpu")
    monkeypatch.setattr(splitk, "_rings", {})
    monkeypatch.setattr(splitk, "_capturing", lambda device: True)
    assert splitk.tile_counters(dev, 4) is None
    out = torch.empty(3, 8)
    split = splitk.split_k_buffers(out, 2, 1)
    assert split.part.shape == (2, 3, 8) and not split.serial
    monkeypatch.setattr(splitk, "_capturing", lambda device: False)
    assert splitk.tile_counters(dev, 4) is not None
    monkeypatch.setattr(splitk, "_capturing", lambda device: True)
    assert splitk.split_k_buffers(out, 2, 1).serial


def test_no_split_has_no_buffers():
    out = torch.empty(3, 8)
    split = splitk.split_k_buffers(out, 1, 4)
    assert split.part is None and not split.serial and split.args(out) == (out, out)


# -- on a GPU: the memory ordering between the splits' programs --------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kernel", ["matmul", "matmul_w8a16", "matmul_w4a16"])
def test_gpu_serial_sum_matches_the_second_pass_under_load(kernel, monkeypatch, seed):
    """Many launches back to back, splits 2 and 16, a decode and an odd shape: every serial
    output equals the second pass's bit for bit (a split that read a partial before its
    writer had stored it would differ), and every counter is zero at the end. Few configs:
    each compiles twice (serial and not), inside the kit's gpu-tests step of 100 s."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    shapes = ((1, 4096, 4096), (13, 257, 301))
    for (M, N, K), split_k in itertools.product(shapes, (2, 16)):
        x = torch.randn((M, K), device="cuda", dtype=torch.bfloat16, generator=gen)
        w = torch.randn((N, K), device="cuda", dtype=torch.bfloat16, generator=gen)
        bias = torch.randn((N,), device="cuda", dtype=torch.bfloat16, generator=gen)
        config = dict(BLOCK_M=16, BLOCK_N=64, BLOCK_K=64, GROUP_M=1, SPLIT_K=split_k, num_warps=4, num_stages=3)
        if split_k > triton_cdiv(K, 64):
            continue
        monkeypatch.setenv(splitk.REDUCE_ENV, "kernel")
        want, ref = _launch(kernel, x, w, bias, config)
        monkeypatch.setenv(splitk.REDUCE_ENV, "serial")
        for rep in range(20):
            got, _ = _launch(kernel, x, w, bias, config)
            assert torch.equal(got, want), f"seed {seed} {M}x{N}x{K} SPLIT_K={split_k} rep {rep}"
        assert compare(want.double(), ref, tolerance_for("bf16")).ok
    torch.cuda.synchronize()
    assert _counters_zero("cuda:0")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_serial_sum_replays_in_a_cuda_graph(seed):
    """Captured after an eager warm-up (the ring exists), replayed many times: the same bits."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn((1, 4096), device="cuda", dtype=torch.bfloat16, generator=gen)
    w = torch.randn((4096, 4096), device="cuda", dtype=torch.bfloat16, generator=gen)
    config = dict(BLOCK_M=16, BLOCK_N=64, BLOCK_K=128, GROUP_M=1, SPLIT_K=4, num_warps=4, num_stages=4, TMA=0)
    want = kernels.matmul(x, w.t(), config=config)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        kernels.matmul(x, w.t(), config=config)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        got = kernels.matmul(x, w.t(), config=config)
    for _ in range(50):
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(got, want)
    assert _counters_zero("cuda:0")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_attention_decode_serial_combine_under_load(monkeypatch, seed):
    """Llama-3-8B's decode attention (32 heads, 8 KV heads, D 128) at batch 1 and 16, splits
    2..16, repeated: the serial combine matches the combine launch (within fp32 rounding:
    the compiler may contract the two differently) and the bf16 reference."""
    from kernels.attention_decode import SPEC as DECODE
    from kernels.attention_decode import DecodeInputs

    gen = torch.Generator(device="cuda").manual_seed(seed)
    for B, splits in itertools.product((1, 16), (4, 16)):
        L = 1024
        q = torch.randn((B, 32, 128), device="cuda", dtype=torch.bfloat16, generator=gen)
        k = torch.randn((B, L, 8, 128), device="cuda", dtype=torch.bfloat16, generator=gen)
        v = torch.randn((B, L, 8, 128), device="cuda", dtype=torch.bfloat16, generator=gen)
        lens = torch.randint(1, L + 1, (B,), device="cuda", dtype=torch.int32, generator=gen)
        config = dict(BLOCK_N=64, NUM_SPLITS=splits, num_warps=4, num_stages=2)
        monkeypatch.setenv(splitk.REDUCE_ENV, "kernel")
        want = kernels.attention_decode(q, k, v, lens, config=config).float()
        monkeypatch.setenv(splitk.REDUCE_ENV, "serial")
        for rep in range(20):
            got = kernels.attention_decode(q, k, v, lens, config=config).float()
            assert torch.allclose(got, want, rtol=0, atol=1e-2), f"seed {seed} B={B} splits={splits} rep {rep}"
        ref = DECODE.reference(DecodeInputs(q, k, v, lens)).double()
        assert compare(got.double(), ref, tolerance_for("bf16")).ok
    torch.cuda.synchronize()
    assert _counters_zero("cuda:0")


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def test_every_matmul_kernel_takes_the_serial_flag():
    """The four matmul kernels share the epilogue: each passes SERIAL and the partial and
    counter pointers (a kernel left out would not compile)."""
    for name in ("matmul", "matmul_w8a16", "matmul_w4a16", "matmul_fp8"):
        module = importlib.import_module(f"kernels.{name}")
        jitted = [v for v in vars(module).values() if hasattr(v, "arg_names") and "SPLIT_K" in v.arg_names]
        assert jitted, name
        for fn in jitted:
            assert {"SERIAL", "part_ptr", "lock_ptr"} <= set(fn.arg_names), f"{name}.{fn.__name__}"


def test_attention_combines_in_its_launch_only_within_the_register_budget():
    from kernels.attention_decode import combines_in_launch
    from kernels.spec import Config

    four = Config(BLOCK_N=64, NUM_SPLITS=8, num_warps=4, num_stages=3)
    assert combines_in_launch(16, 128, four)  # Llama-3-8B: GQA 4 padded to 16 rows, D 128
    assert not combines_in_launch(64, 128, four.replace(num_warps=8))  # MQA 64: spilled (fp32, sm_90)
    assert combines_in_launch(64, 64, four.replace(num_warps=8))
