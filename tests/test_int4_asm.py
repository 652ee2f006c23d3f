"""matmul_w4a16's PTX nibble unpacking, checked without a GPU.

The kernel runs `nibble_asm` on a GPU only (the interpreter cannot run PTX). Here its text
runs through tests/ptx_emulator over every byte in every lane of a packed register, with
Triton's packing of `tl.inline_asm_elementwise(pack=4)`: byte i of $4 is element i, and each
16-bit output takes two registers, element 0 in the low half. The GPU tests compare the
compiled path with the reference.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from . import ptx_emulator as ptx

w4 = importlib.import_module("kernels.matmul_w4a16")  # `kernels.matmul_w4a16` is also the function
FORMATS = {"bf16": (0x4300, torch.bfloat16, 128.0), "fp16": (0x6400, torch.float16, 1024.0)}


def test_emulator_follows_the_isa():
    # lop3's LUT is F(0xF0, 0xCC, 0xAA): these pick a, b, c and compute a ^ b ^ c.
    a, b, c = 0x12345678, 0x9ABCDEF0, 0x0F0F0F0F
    assert (ptx.lop3(a, b, c, 0xF0), ptx.lop3(a, b, c, 0xCC), ptx.lop3(a, b, c, 0xAA)) == (a, b, c)
    assert ptx.lop3(a, b, c, 0x96) == a ^ b ^ c
    assert ptx.lop3(a, b, c, 0xEA) == (a & b) | c
    # prmt: selector nibbles pick bytes of {b, a}; bit 3 replicates the sign.
    assert ptx.prmt(0x44332211, 0x88776655, 0x3210) == 0x44332211
    assert ptx.prmt(0x44332211, 0x88776655, 0x7654) == 0x88776655
    assert ptx.prmt(0x44332211, 0, 0x7170) == 0x00220011
    assert ptx.prmt(0x00007F80, 0, 0x4408) == 0x000080FF  # sign of byte 0 (0x80), then byte 0
    assert ptx.prmt(0x00007F80, 0, 0x4419) == 0x00007F00  # sign of byte 1 (0x7F), then byte 1
    with pytest.raises(ValueError, match="unsupported instruction"):
        ptx.run("add.u32 $0, $1, 1;", {1: 0}, 1)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_nibble_asm_unpacks_every_byte_in_every_lane(fmt):
    magic, dtype, magic_value = FORMATS[fmt]
    asm = w4.nibble_asm(magic)
    got_lo, got_hi, want_lo, want_hi = [], [], [], []
    for lane in range(4):
        for value in range(256):
            packed = [(value + 37 * i) % 256 if i != lane else value for i in range(4)]
            word = sum(byte << (8 * i) for i, byte in enumerate(packed))
            r0, r1, r2, r3 = ptx.run(asm, {4: word}, 4)
            lo = [r0 & 0xFFFF, r0 >> 16, r1 & 0xFFFF, r1 >> 16]
            hi = [r2 & 0xFFFF, r2 >> 16, r3 & 0xFFFF, r3 >> 16]
            got_lo.append(lo[lane])
            got_hi.append(hi[lane])
            want_lo.append(value & 0xF)
            want_hi.append(value >> 4)
    # The bit patterns, read as floats, are MAGIC + nibble exactly: what the kernel subtracts from.
    as_float = lambda bits: torch.tensor(bits, dtype=torch.int32).to(torch.int16).view(dtype).double()  # noqa: E731
    assert torch.equal(as_float(got_lo), torch.tensor(want_lo, dtype=torch.float64) + magic_value)
    assert torch.equal(as_float(got_hi), torch.tensor(want_hi, dtype=torch.float64) + magic_value)


def test_the_kernel_unpacks_with_this_asm():
    # The strings the kernel compiles are the ones tested above.
    assert w4._ASM_BF16.value == w4.nibble_asm(0x4300) and w4._ASM_FP16.value == w4.nibble_asm(0x6400)


def test_dequant_path(monkeypatch):
    monkeypatch.delenv(w4.DEQUANT_ENV, raising=False)
    monkeypatch.setattr(w4, "interpreter_enabled", lambda: False)
    assert [w4.dequant_path(d) for d in (torch.bfloat16, torch.float16, torch.float32)] == ["asm", "asm", "bits"]
    monkeypatch.setenv(w4.DEQUANT_ENV, "bits")
    assert w4.dequant_path(torch.bfloat16) == "bits"
    monkeypatch.setenv(w4.DEQUANT_ENV, "fast")
    with pytest.raises(w4.InvalidProblem, match="INFERTUNE_INT4_DEQUANT must be one of asm, bits; got 'fast'"):
        w4.dequant_path(torch.bfloat16)
    monkeypatch.delenv(w4.DEQUANT_ENV)
    monkeypatch.setattr(w4, "interpreter_enabled", lambda: True)
    assert w4.dequant_path(torch.bfloat16) == "bits"  # the interpreter cannot run PTX


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_gpu_ptx_and_triton_unpacking_agree(dtype, symmetric, monkeypatch, seed):
    """On a GPU both paths feed the dots the same values: the outputs are equal, bit for bit,
    and both match the fp32 reference (odd M, N and K; K padded to whole groups)."""
    from kernels.accuracy import compare, tolerance_for

    gen = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn((13, 301), device="cuda", dtype=dtype, generator=gen)
    w = torch.randn((257, 301), device="cuda", dtype=torch.float32, generator=gen)
    qw = w4.quantize_int4(w, 64, symmetric)
    outs = {}
    for path in w4.DEQUANT_PATHS:
        monkeypatch.setenv(w4.DEQUANT_ENV, path)
        outs[path] = w4.matmul_w4a16(x, qw, config={"BLOCK_K": 64, "SPLIT_K": 1})
    assert torch.equal(outs["asm"], outs["bits"]), f"seed {seed}: the PTX path differs from the Triton one"
    ref = x.float() @ qw.dequantize(torch.float32).t()
    result = compare(outs["asm"].float(), ref, tolerance_for("bf16" if dtype == torch.bfloat16 else "fp16"))
    assert result.ok, f"seed {seed}: {result.summary()}"
