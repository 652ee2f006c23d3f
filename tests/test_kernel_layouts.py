"""The 1-D side tensors of issue 13, passed as strided views: each kernel read them as if
contiguous and returned wrong values with no error (bias[::2] of every matmul, with and
without split-K; the norms' weight and bias; rope's positions; the attention kernels'
seq_lens). Each case runs the public function on a view and on a contiguous copy of the
same values, and checks both against the torch reference.

The generic test (tests/test_kernels_generic.py, test_noncontiguous_input_matches_reference)
covers every input of every kernel in several layouts; these name the reported cases and
the code paths the generic test's default configs do not take (split-K, looping norms,
split-KV decode).
"""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels.accuracy import compare, tolerance_for
from kernels.device import current_device, dtype_unsupported_reason

from .conftest import generator
from .layouts import strided

DEV = current_device()
TORCH_DEV = DEV.torch_device
HAS_CUDA = torch.cuda.is_available()
DTYPE = torch.bfloat16 if HAS_CUDA else torch.float16  # the interpreter's tl.dot is wrong on bf16
DTYPE_NAME = "bf16" if HAS_CUDA else "fp16"


def _randn(gen, *shape, dtype=DTYPE):
    return torch.randn(shape, device=TORCH_DEV, generator=gen).to(dtype)


def _check(out: torch.Tensor, ref: torch.Tensor, what: str, seed: int, tol=None) -> None:
    result = compare(out.float(), ref, tol or tolerance_for(DTYPE_NAME))
    assert result.ok, f"{what} seed {seed}: {result.summary()}"


def _both(fn, view: torch.Tensor):
    """fn on the strided view and on a contiguous copy of it."""
    assert not view.is_contiguous()
    return fn(view), fn(view.contiguous())


# -- matmuls: bias[::2] ----------------------------------------------------------------------
SPLITS = [pytest.param({}, id="default"), pytest.param({"SPLIT_K": 2, "BLOCK_K": 16}, id="splitk")]


@pytest.mark.parametrize("config", SPLITS)
def test_matmul_strided_bias(config, seed):
    gen = generator(TORCH_DEV, seed)
    a, w, bias = _randn(gen, 13, 64), _randn(gen, 37, 64), strided(_randn(gen, 37))
    ref = a.float() @ w.float().t() + bias.float()
    for out in _both(lambda b: kernels.matmul(a, w.t(), b, config=config), bias):
        _check(out, ref, f"matmul bias[::2] {config}", seed)


@pytest.mark.parametrize("config", SPLITS)
def test_matmul_w8a16_strided_bias(config, seed):
    gen = generator(TORCH_DEV, seed)
    x, bias = _randn(gen, 13, 64), strided(_randn(gen, 37))
    qw = kernels.quantize_int8(_randn(gen, 37, 64, dtype=torch.float32))
    ref = x.float() @ qw.dequantize().t() + bias.float()
    for out in _both(lambda b: kernels.matmul_w8a16(x, qw, b, config=config), bias):
        _check(out, ref, f"matmul_w8a16 bias[::2] {config}", seed)


@pytest.mark.parametrize("config", SPLITS)
def test_matmul_w4a16_strided_bias(config, seed):
    gen = generator(TORCH_DEV, seed)
    x, bias = _randn(gen, 13, 64), strided(_randn(gen, 37))
    qw = kernels.quantize_int4(_randn(gen, 37, 64, dtype=torch.float32), group_size=32)
    ref = x.float() @ qw.dequantize().t() + bias.float()
    for out in _both(lambda b: kernels.matmul_w4a16(x, qw, b, config=config), bias):
        _check(out, ref, f"matmul_w4a16 bias[::2] {config}", seed)


@pytest.mark.skipif(dtype_unsupported_reason("fp8", DEV) is not None, reason="fp8 needs a GPU of compute capability >= 8.9")
@pytest.mark.parametrize("config", [pytest.param({}, id="default"), pytest.param({"SPLIT_K": 2, "BLOCK_K": 32}, id="splitk")])
def test_matmul_fp8_strided_bias(config, seed):
    gen = generator(TORCH_DEV, seed)
    x = kernels.quantize_fp8(_randn(gen, 13, 64, dtype=torch.float32))
    w = kernels.quantize_fp8(_randn(gen, 37, 64, dtype=torch.float32))
    bias = strided(_randn(gen, 37))
    ref = x.dequantize() @ w.dequantize().t() + bias.float()
    for out in _both(lambda b: kernels.matmul_fp8(x, w, b, out_dtype=DTYPE, config=config), bias):
        _check(out, ref, f"matmul_fp8 bias[::2] {config}", seed)


# -- norms: weight[::2], bias[::2] -----------------------------------------------------------
NORM_CONFIGS = [pytest.param({}, id="one_tile"), pytest.param({"BLOCK_M": 16, "BLOCK_N": 32, "num_warps": 1}, id="looping")]


@pytest.mark.parametrize("config", NORM_CONFIGS)
def test_rmsnorm_strided_weight(config, seed):
    gen = generator(TORCH_DEV, seed)
    x, weight = _randn(gen, 13, 37), strided(1.0 + 0.5 * _randn(gen, 37))
    xf = x.float()
    ref = xf * torch.rsqrt(xf.pow(2).mean(dim=1, keepdim=True) + 1e-6) * weight.float()
    for out in _both(lambda w: kernels.rmsnorm(x, w, 1e-6, config=config), weight):
        _check(out, ref, f"rmsnorm weight[::2] {config}", seed)


@pytest.mark.parametrize("config", NORM_CONFIGS)
@pytest.mark.parametrize("which", ["weight", "bias"])
def test_layernorm_strided_weight_and_bias(which, config, seed):
    gen = generator(TORCH_DEV, seed)
    x, weight, bias = _randn(gen, 13, 37), 1.0 + 0.5 * _randn(gen, 37), _randn(gen, 37)
    if which == "weight":
        weight = strided(weight)
    else:
        bias = strided(bias)
    ref = torch.nn.functional.layer_norm(x.float(), (37,), weight.float(), bias.float(), 1e-5)

    def run(t):
        return kernels.layernorm(x, t if which == "weight" else weight, t if which == "bias" else bias,
                                 1e-5, config=config)

    for out in _both(run, weight if which == "weight" else bias):
        _check(out, ref, f"layernorm {which}[::2] {config}", seed)


# -- rope: positions[::2] --------------------------------------------------------------------
def test_rope_strided_positions(seed):
    gen = generator(TORCH_DEV, seed)
    T, H, D, P = 13, 3, 16, 50
    x = _randn(gen, T, H, D)
    positions = strided(torch.randint(0, P, (T,), device=TORCH_DEV, generator=gen))
    cos, sin = kernels.rope_cache(P, D, device=TORCH_DEV)
    c, s = cos[positions.long()][:, None, :], sin[positions.long()][:, None, :]
    x1, x2 = x.float()[..., : D // 2], x.float()[..., D // 2:]
    ref = torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)
    for out in _both(lambda p: kernels.rope(x, p, cos, sin), positions):
        _check(out, ref, "rope positions[::2]", seed)


# -- attention: seq_lens[::2] ----------------------------------------------------------------
def _lengths(gen, batch: int, longest: int) -> torch.Tensor:
    lens = torch.randint(1, longest + 1, (batch,), device=TORCH_DEV, generator=gen, dtype=torch.int32)
    lens[0] = longest
    return strided(lens.flip(0).contiguous())  # the longest last: a misread takes another


def test_attention_strided_seq_lens(seed):
    from kernels.attention import AttentionInputs
    gen = generator(TORCH_DEV, seed)
    B, S, H, D = 3, 13, 4, 32
    q, k, v = _randn(gen, B, S, H, D), _randn(gen, B, S, H, D), _randn(gen, B, S, H, D)
    lens = _lengths(gen, B, S)
    spec = kernels.get("attention")
    ref = spec.reference(AttentionInputs(q, k, v, causal=True, seq_lens=lens.contiguous()))
    tol = spec.tolerance(spec.problem_of(AttentionInputs(q, k, v, causal=True, seq_lens=lens)))
    for out in _both(lambda n: kernels.attention(q, k, v, causal=True, seq_lens=n), lens):
        _check(out, ref, "attention seq_lens[::2]", seed, tol)


@pytest.mark.parametrize("splits", [1, 2])
def test_attention_decode_strided_seq_lens(splits, seed):
    from kernels.attention_decode import DecodeInputs
    gen = generator(TORCH_DEV, seed)
    B, L, H, HKV, D = 3, 37, 4, 2, 32
    q, k, v = _randn(gen, B, H, D), _randn(gen, B, L, HKV, D), _randn(gen, B, L, HKV, D)
    lens = _lengths(gen, B, L)
    spec = kernels.get("attention_decode")
    ref = spec.reference(DecodeInputs(q, k, v, lens.contiguous()))
    tol = spec.tolerance(spec.problem_of(DecodeInputs(q, k, v, lens)))
    config = {"NUM_SPLITS": splits, "BLOCK_N": 16}
    for out in _both(lambda n: kernels.attention_decode(q, k, v, n, config=config), lens):
        _check(out, ref, f"attention_decode seq_lens[::2] splits={splits}", seed, tol)


# -- matmul's out: checked like the other kernels' -------------------------------------------
@pytest.mark.parametrize("shape,dtype", [((13, 38), DTYPE), ((13, 37), torch.float32)], ids=["shape", "dtype"])
def test_matmul_refuses_a_mismatched_out(shape, dtype):
    a, w = torch.ones(13, 16, dtype=DTYPE, device=TORCH_DEV), torch.ones(37, 16, dtype=DTYPE, device=TORCH_DEV)
    with pytest.raises(kernels.errors.InvalidProblem, match="out must be"):
        kernels.matmul(a, w.t(), out=torch.empty(shape, dtype=dtype, device=TORCH_DEV))


def test_matmul_writes_a_strided_out():
    a, w = torch.ones(13, 16, dtype=DTYPE, device=TORCH_DEV), torch.ones(37, 16, dtype=DTYPE, device=TORCH_DEV)
    out = strided(torch.zeros(13, 37, dtype=DTYPE, device=TORCH_DEV))
    result = kernels.matmul(a, w.t(), out=out)
    assert result.data_ptr() == out.data_ptr() and bool((out == 16).all())
    assert bool(out._base.isnan().sum() == out._base.numel() - out.numel())  # nothing outside the view
