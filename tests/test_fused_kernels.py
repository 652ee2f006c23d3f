"""The second outputs of the two fused decode kernels, which the generic kernel tests (one
output against a reference) do not see: add_rmsnorm's residual and rope_kv's KV-cache
writes. Fresh random inputs at odd sizes, every config of a covering sample."""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels.accuracy import compare
from kernels.add_rmsnorm import SPEC as ADD_RMSNORM
from kernels.add_rmsnorm import residual_reference
from kernels.device import current_device, interpreter_enabled
from kernels.errors import InvalidProblem
from kernels.rope_kv import SPEC as ROPE_KV
from kernels.rope_kv import rotated

from .conftest import generator

DEV = current_device()


def _configs(spec, problem, count=10):
    return [spec.heuristic(problem, DEV)] + spec.sample_configs(problem, DEV, count, seed=3)


# -- add_rmsnorm ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("shape", [{"M": 1, "N": 257}, {"M": 13, "N": 1000}, {"M": 3, "N": 4097}])
def test_add_rmsnorm_residual_is_torch_add_bit_for_bit(shape, dtype, seed):
    """s is what torch's add in the activation dtype gives, exactly, for the default and
    sampled configs (one-tile and looping: N=4097 has both)."""
    problem = ADD_RMSNORM.problem(shape, dtype)
    for config in _configs(ADD_RMSNORM, problem):
        inputs = ADD_RMSNORM.make_inputs(problem, DEV.torch_device, generator(DEV.torch_device, seed))
        inputs.residual_out.fill_(float("nan"))
        y = ADD_RMSNORM.launch(inputs, config)
        want = inputs.x + inputs.delta
        if dtype == "bf16" and interpreter_enabled():
            # The interpreter (Triton 3.9) rounds fp32 -> bf16 toward zero, a GPU to nearest:
            # here within one bf16 ulp (2^-7 relative); bit for bit on a GPU.
            ulp = want.float().abs() * 2.0 ** -7
            assert bool(((inputs.residual_out.float() - want.float()).abs() <= ulp).all()), f"{config} seed {seed}"
        else:
            assert torch.equal(inputs.residual_out, want), f"{config} seed {seed}"
        assert compare(y.float(), ADD_RMSNORM.reference(inputs), ADD_RMSNORM.tolerance(problem)).ok


@pytest.mark.parametrize("block_n", [None, 64])  # one tile; a looping config (rows of 257 in 64 chunks)
def test_add_rmsnorm_in_place_updates_the_residual(block_n, seed):
    """residual_out = x (the runtime's call): x becomes x + delta and y is the norm of that,
    also when the row is walked twice and the second pass must read s, not the old x."""
    gen = generator(DEV.torch_device, seed)
    x = torch.randn(13, 257, generator=gen, device=DEV.torch_device).half()
    delta = torch.randn(13, 257, generator=gen, device=DEV.torch_device).half()
    weight = (1 + 0.5 * torch.randn(257, generator=gen, device=DEV.torch_device)).half()
    want_s = x + delta
    s32 = want_s.float()
    want_y = s32 * torch.rsqrt(s32.pow(2).mean(1, keepdim=True) + 1e-5) * weight.float()
    config = None if block_n is None else {"BLOCK_N": block_n, "BLOCK_M": 16, "num_warps": 2}
    y, s = kernels.add_rmsnorm(x, delta, weight, 1e-5, residual_out=x, config=config)
    assert s.data_ptr() == x.data_ptr() and torch.equal(x, want_s)
    problem = ADD_RMSNORM.problem({"M": 13, "N": 257}, "fp16")
    assert compare(y.float(), want_y, ADD_RMSNORM.tolerance(problem)).ok


def test_add_rmsnorm_writes_a_strided_residual_and_nothing_else(seed):
    gen = generator(DEV.torch_device, seed)
    x, delta = (torch.randn(13, 37, generator=gen, device=DEV.torch_device) for _ in range(2))
    weight = torch.randn(37, generator=gen, device=DEV.torch_device)
    wide = torch.full((37, 40), float("nan"), device=DEV.torch_device)
    residual = wide[:, 2:15].t()  # [13, 37], column-major, inside a wider buffer
    _, s = kernels.add_rmsnorm(x, delta, weight, residual_out=residual)
    assert s is residual and torch.equal(residual, x + delta)
    assert int(wide.isnan().sum()) == 37 * 40 - 13 * 37


def test_add_rmsnorm_refuses_a_residual_overlapping_its_inputs():
    x = torch.randn(4, 32, device=DEV.torch_device)
    buf = torch.randn(4 * 32 + 1, device=DEV.torch_device)
    delta = buf[:-1].view(4, 32)
    weight = torch.ones(32, device=DEV.torch_device)
    with pytest.raises(InvalidProblem, match="residual_out: out shares memory with input delta"):
        kernels.add_rmsnorm(x, delta, weight, residual_out=buf[1:].view(4, 32))
    xbuf = torch.randn(4 * 32 + 1, device=DEV.torch_device)
    with pytest.raises(InvalidProblem, match="shares memory with input x"):  # x, but not the same view
        kernels.add_rmsnorm(xbuf[:-1].view(4, 32), torch.randn(4, 32), weight, residual_out=xbuf[1:].view(4, 32))
    with pytest.raises(InvalidProblem, match="residual_out must be x's shape"):
        kernels.add_rmsnorm(x, x.clone(), weight, residual_out=torch.empty(4, 31))


# -- rope_kv ----------------------------------------------------------------------------
def _poisoned_caches(inputs):
    inputs.k_cache.fill_(float("nan"))
    inputs.v_cache.fill_(float("nan"))


def _check_caches(inputs, problem, where):
    H, HKV = problem["H"], problem["HKV"]
    rows, pos = inputs.rows.long(), inputs.positions.long()
    k_got = inputs.k_cache[rows, pos].float()
    assert compare(k_got, rotated(inputs, H, HKV), ROPE_KV.tolerance(problem)).ok, where
    assert torch.equal(inputs.v_cache[rows, pos], inputs.qkv[:, H + HKV:]), where  # v is copied as is
    written = torch.zeros(inputs.k_cache.shape[:2], dtype=torch.bool, device=rows.device)
    written[rows, pos] = True
    for cache in (inputs.k_cache, inputs.v_cache):
        assert bool(cache[~written].isnan().all()), f"{where}: wrote a slot no token owns"


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("shape", [{"T": 1, "H": 4, "HKV": 1, "D": 64}, {"T": 13, "H": 9, "HKV": 3, "D": 14},
                                   {"T": 257, "H": 4, "HKV": 2, "D": 32}])
def test_rope_kv_writes_k_rotated_and_v_as_is_into_their_slots(shape, dtype, seed):
    problem = ROPE_KV.problem(shape, dtype)
    for config in _configs(ROPE_KV, problem):
        inputs = ROPE_KV.make_inputs(problem, DEV.torch_device, generator(DEV.torch_device, seed))
        _poisoned_caches(inputs)
        q = ROPE_KV.launch(inputs, config)
        where = f"{ROPE_KV.shape_key(problem)} {config} seed {seed}"
        assert compare(q.float(), ROPE_KV.reference(inputs), ROPE_KV.tolerance(problem)).ok, where
        _check_caches(inputs, problem, where)


def test_rope_kv_honours_cache_strides(seed):
    """Caches as views: k a slice of a longer cache, v permuted from [B, HKV, L, D] storage."""
    problem = ROPE_KV.problem({"T": 13, "H": 6, "HKV": 2, "D": 16}, "fp32")
    inputs = ROPE_KV.make_inputs(problem, DEV.torch_device, generator(DEV.torch_device, seed))
    B, L, HKV, D = inputs.k_cache.shape
    k_store = torch.full((B, L + 5, HKV, D), float("nan"), device=DEV.torch_device)
    v_store = torch.full((B, HKV, L, D), float("nan"), device=DEV.torch_device)
    from dataclasses import replace
    inputs = replace(inputs, k_cache=k_store[:, 5:], v_cache=v_store.transpose(1, 2))
    q = kernels.rope_kv(inputs.qkv, inputs.positions, inputs.rows, inputs.cos, inputs.sin,
                        inputs.k_cache, inputs.v_cache)
    assert compare(q, ROPE_KV.reference(inputs), ROPE_KV.tolerance(problem)).ok
    _check_caches(inputs, problem, f"seed {seed}")
    assert bool(k_store[:, :5].isnan().all())


def test_rope_kv_baseline_agrees_with_the_kernel(seed):
    """The baseline (eager rope and two indexed copies: what the runtime ran before) writes
    the same caches, so the two are timed doing the same work."""
    problem = ROPE_KV.problem({"T": 13, "H": 9, "HKV": 3, "D": 64}, "fp32")
    a = ROPE_KV.make_inputs(problem, DEV.torch_device, generator(DEV.torch_device, seed))
    b = ROPE_KV.make_inputs(problem, DEV.torch_device, generator(DEV.torch_device, seed))
    tol = ROPE_KV.tolerance(problem)
    assert compare(ROPE_KV.baseline(a).float(), ROPE_KV.launch(b, ROPE_KV.heuristic(problem, DEV)).float(), tol).ok
    assert compare(a.k_cache.float(), b.k_cache.float(), tol).ok and torch.equal(a.v_cache, b.v_cache)


def test_rope_kv_refuses_overlapping_caches_and_bad_shapes():
    problem = ROPE_KV.problem({"T": 3, "H": 4, "HKV": 2, "D": 8}, "fp32")
    i = ROPE_KV.make_inputs(problem, DEV.torch_device, generator(DEV.torch_device, 0))
    args = (i.qkv, i.positions, i.rows, i.cos, i.sin)
    with pytest.raises(InvalidProblem, match="k_cache shares memory with the other cache"):
        kernels.rope_kv(*args, i.k_cache, i.k_cache)
    inside_k = i.k_cache.reshape(-1)[: i.qkv.numel()].view(i.qkv.shape)
    with pytest.raises(InvalidProblem, match="k_cache shares memory with qkv"):
        kernels.rope_kv(inside_k, *args[1:], i.k_cache, i.v_cache)
    with pytest.raises(InvalidProblem, match="share memory"):
        kernels.rope_kv(*args, i.k_cache[:, :1].expand(i.k_cache.shape), i.v_cache)
    with pytest.raises(InvalidProblem, match="multiple of HKV"):
        kernels.rope_kv(i.qkv[:, :7], i.positions, i.rows, i.cos, i.sin, i.k_cache, i.v_cache)
    with pytest.raises(InvalidProblem, match="rows must be int32/int64"):
        kernels.rope_kv(i.qkv, i.positions, i.rows.float(), i.cos, i.sin, i.k_cache, i.v_cache)
    with pytest.raises(InvalidProblem, match="caches must be in qkv's dtype"):
        kernels.rope_kv(*args, i.k_cache.half(), i.v_cache.half())
