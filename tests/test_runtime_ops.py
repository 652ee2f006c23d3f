"""The runtime's ops contract: the triton backend (our kernels, interpreter here) and the
torch backend agree on every op at odd sizes, in fp32 and fp16, float and quantized linear
layers; and the torch reference ops agree with torch's own formulations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import kernels
from runtime.errors import InvalidVariant
from runtime.linear import make_linear
from runtime.ops import TorchOps, TritonOps
from runtime.variant import parse_variant

TORCH, TRITON = TorchOps(), TritonOps()


@pytest.fixture
def generator(seed):
    return torch.Generator().manual_seed(seed)
DT = {"fp32": torch.float32, "fp16": torch.float16}


def _close(a, b, dtype, scale=1.0):
    tol = (2e-5 if dtype == torch.float32 else 2e-2) * scale
    err = (a.float() - b.float()).abs().max().item()
    ref = b.float().abs().max().item() + 1e-6
    assert err <= tol * max(ref, 1.0), f"max abs err {err} vs ref max {ref}"


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("scheme", ["none", "int8", "int4-g32", "int4-g128"])
def test_linear_backends_agree(dtype, scheme, generator):
    dt = DT[dtype]
    x = torch.randn(13, 96, generator=generator).to(dt)
    w = torch.randn(37, 96, generator=generator) / 10
    b = torch.randn(37, generator=generator)
    layer = make_linear(w, b, scheme, dt, "cpu")
    want = TORCH.linear(x, layer)
    _close(TRITON.linear(x, layer), want, dt)
    if scheme == "none":
        _close(want, x.double() @ w.double().t().to(dt).double() + b.to(dt).double(), dt)
    assert layer.kernel == {"none": "matmul", "int8": "matmul_w8a16"}.get(scheme, "matmul_w4a16")
    assert 0 < layer.nbytes <= 37 * 96 * 4


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_norms_and_activations_agree(dtype, generator):
    dt = DT[dtype]
    x = torch.randn(13, 257, generator=generator).to(dt)
    g = (1 + 0.1 * torch.randn(257, generator=generator)).to(dt)
    b = (0.1 * torch.randn(257, generator=generator)).to(dt)
    _close(TRITON.rmsnorm(x, g, 1e-5), TORCH.rmsnorm(x, g, 1e-5), dt)
    _close(TRITON.layernorm(x, g, b, 1e-12), TORCH.layernorm(x, g, b, 1e-12), dt)
    _close(TORCH.layernorm(x, g, b, 1e-12), F.layer_norm(x.double(), (257,), g.double(), b.double(), 1e-12), dt)
    up = torch.randn(13, 257, generator=generator).to(dt)
    _close(TRITON.swiglu(x, up), TORCH.swiglu(x, up), dt)
    for approx in ("none", "tanh"):
        _close(TRITON.gelu(x, approx), TORCH.gelu(x, approx), dt)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_add_rmsnorm_agrees_and_is_add_then_norm(dtype, generator):
    """Both backends return (norm of the sum, the sum); the triton one updates x in place."""
    dt = DT[dtype]
    x = torch.randn(13, 257, generator=generator).to(dt)
    delta = torch.randn(13, 257, generator=generator).to(dt)
    g = (1 + 0.1 * torch.randn(257, generator=generator)).to(dt)
    want_y, want_s = TORCH.add_rmsnorm(x, delta, g, 1e-5)
    assert torch.equal(want_s, x + delta)
    _close(want_y, TORCH.rmsnorm(x + delta, g, 1e-5), dt)
    y, s = TRITON.add_rmsnorm(x, delta, g, 1e-5)
    assert s is x and torch.equal(x, want_s)
    _close(y, want_y, dt)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_rope_kv_agrees_in_q_and_both_caches(dtype, generator):
    """3 sequences, 11 tokens at scattered (row, position) slots, H=6 query heads over HKV=2."""
    dt = DT[dtype]
    qkv = torch.randn(11, (6 + 2 * 2) * 64, generator=generator).to(dt).view(11, 10, 64)
    slots = torch.randperm(3 * 40, generator=generator)[:11]
    rows, pos = slots // 40, (slots % 40).to(torch.int32)
    cos, sin = kernels.rope_cache(40, 64, 10000.0)
    caches = {name: [torch.zeros(3, 40, 2, 64, dtype=dt) for _ in range(2)] for name in ("torch", "triton")}
    want = TORCH.rope_kv(qkv, pos, rows, cos, sin, *caches["torch"])
    _close(want, TORCH.rope(qkv[:, :6], pos, cos, sin), dt)
    _close(TRITON.rope_kv(qkv, pos, rows, cos, sin, *caches["triton"]), want, dt)
    for ours, theirs in zip(caches["triton"], caches["torch"]):
        _close(ours, theirs, dt)
    assert torch.equal(caches["torch"][1][rows, pos.long()], qkv[:, 8:])
    assert int((caches["triton"][0].abs().sum(-1) > 0).sum()) == 11 * 2  # 11 slots of 2 heads, no more


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_rope_agrees_and_matches_rotate_half(dtype, generator):
    dt = DT[dtype]
    x = torch.randn(11, 5, 64, generator=generator).to(dt)
    pos = torch.randint(0, 300, (11,), generator=generator)
    cos, sin = kernels.rope_cache(512, 64, 10000.0)
    got = TORCH.rope(x, pos, cos, sin)
    _close(TRITON.rope(x, pos, cos, sin), got, dt)
    # Hugging Face's form: x * cos + rotate_half(x) * sin with cos/sin repeated over both halves
    c = torch.cat([cos, cos], -1)[pos][:, None, :].double()
    s = torch.cat([sin, sin], -1)[pos][:, None, :].double()
    xd = x.double()
    rot = torch.cat([-xd[..., 32:], xd[..., :32]], -1)
    _close(got, xd * c + rot * s, dt)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("causal", [True, False])
def test_attention_agrees_with_padding_and_gqa(dtype, causal, generator):
    dt = DT[dtype]
    B, S, H, HKV, D = 3, 13, 6, 2, 32
    q = torch.randn(B, S, H, D, generator=generator).to(dt)
    k = torch.randn(B, S, HKV, D, generator=generator).to(dt)
    v = torch.randn(B, S, HKV, D, generator=generator).to(dt)
    lens = torch.tensor([13, 5, 9], dtype=torch.int32)
    want = TORCH.attention(q, k, v, causal=causal, seq_lens=lens)
    got = TRITON.attention(q, k, v, causal=causal, seq_lens=lens)
    for b, n in enumerate(lens.tolist()):  # rows past a sequence's length are not compared
        _close(got[b, :n], want[b, :n], dt)
        ref = F.scaled_dot_product_attention(q[b:b + 1, :n].transpose(1, 2).double(),
                                             k[b:b + 1, :n].transpose(1, 2).double().repeat_interleave(3, 1),
                                             v[b:b + 1, :n].transpose(1, 2).double().repeat_interleave(3, 1),
                                             is_causal=causal).transpose(1, 2)
        _close(want[b, :n], ref[0], dt)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_attention_decode_agrees(dtype, generator):
    dt = DT[dtype]
    B, L, H, HKV, D = 3, 37, 9, 3, 64
    q = torch.randn(B, H, D, generator=generator).to(dt)
    kc = torch.randn(B, L, HKV, D, generator=generator).to(dt)
    vc = torch.randn(B, L, HKV, D, generator=generator).to(dt)
    lens = torch.tensor([1, 37, 20], dtype=torch.int32)
    want = TORCH.attention_decode(q, kc, vc, lens)
    _close(TRITON.attention_decode(q, kc, vc, lens), want, dt)
    b, n = 2, 20
    scores = (kc[b, :n].double().repeat_interleave(3, 1).transpose(0, 1) @ q[b].double()[:, :, None]).squeeze(-1)
    ref = torch.softmax(scores / math.sqrt(D), -1)[:, None, :] @ vc[b, :n].double().repeat_interleave(3, 1).transpose(0, 1)
    _close(want[b], ref.squeeze(1), dt)


@pytest.mark.parametrize("text, expected", [
    ("bf16", "bf16:torch"), ("bf16+w4g128", "bf16+w4g128:torch"), ("fp16+w8:torch", "fp16+w8:torch"),
    ("bf16+w8+cg:triton", "bf16+w8+cg:triton"), ("fp32:triton-default", "fp32:triton-default"),
])
def test_variant_round_trip(text, expected):
    v = parse_variant(text, gpu=False)
    assert str(v) == expected and str(parse_variant(str(v), gpu=False)) == expected
    assert parse_variant("bf16", gpu=True).backend == "triton"
    assert parse_variant("bf16+w4g64", gpu=True).scheme == "int4-g64"


@pytest.mark.parametrize("text", ["", "int8", "bf16+w3", "bf16+w8+w4g32", "bf16:cuda", "fp32+fp8", "bf16+cg+cg"])
def test_variant_errors_are_one_line(text):
    with pytest.raises(InvalidVariant) as exc:
        parse_variant(text, gpu=False)
    assert "\n" not in str(exc.value) and "variant" in str(exc.value)
