"""The spec contract's pure parts: configs, shapes, problems, samples, constraints, heuristics."""

from __future__ import annotations

import itertools

import pytest

import kernels
from kernels import constraints as C
from kernels.device import dtype_unsupported_reason
from kernels.errors import InvalidConfig, InvalidProblem, UnknownKernel
from kernels.gemm import group_m_has_effect, heuristic_split_k
from kernels.matmul import SPEC as MATMUL
from kernels.spec import Config, parse_shape

from .fake_devices import A100, ALL, CPU, H100, L4, T4


def test_config_is_an_immutable_hashable_value():
    a = Config(BLOCK_M=64, num_warps=4)
    b = Config({"num_warps": 4, "BLOCK_M": 64})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert str(a) == "BLOCK_M=64,num_warps=4"
    assert a.kernel_args() == {"BLOCK_M": 64} and a.launch_options() == {"num_warps": 4}
    assert a.replace(BLOCK_M=32)["BLOCK_M"] == 32 and a["BLOCK_M"] == 64
    assert Config.parse(" BLOCK_M=64 , num_warps=4") == a


@pytest.mark.parametrize("text", ["BLOCK_M", "BLOCK_M=", "=4", "BLOCK_M=1.5", "BLOCK_M=x"])
def test_config_parse_rejects_malformed(text):
    with pytest.raises(InvalidConfig, match="malformed"):
        Config.parse(text)


@pytest.mark.parametrize("text,expected", [
    ("16x4096x4096", {"M": 16, "N": 4096, "K": 4096}),
    ("16 X 4096 x 13", {"M": 16, "N": 4096, "K": 13}),
    ("M=16,N=4096,K=4096", {"M": 16, "N": 4096, "K": 4096}),
    ("K=7, M=1, N=257", {"M": 1, "N": 257, "K": 7}),
])
def test_parse_shape_forms(text, expected):
    assert parse_shape(text, ("M", "N", "K")) == expected


@pytest.mark.parametrize("text", ["16x4096", "16x4096x4096x2", "M=16,N=4096", "M=16,N=4,K=4,Z=1", "M=-1,N=4,K=4",
                                  "M=16,M=16,K=4", "16,4096,4096", "", "axbxc",
                                  # non-ASCII digits: int() reads them, a user never means them
                                  "\u0661\u0662x4x4", "M=\u0661\u0662,N=4,K=4", "16x\uff14x4"])
def test_parse_shape_rejects_with_the_expected_form(text):
    with pytest.raises(InvalidProblem, match=r"expected MxNxK .* or M=16,N=16,K=16"):
        parse_shape(text, ("M", "N", "K"))


def test_config_parse_refuses_non_ascii_digits():
    from kernels.spec import Config

    with pytest.raises(InvalidConfig, match="malformed"):
        Config.parse("BLOCK_M=\u0666\u0664")
    assert Config.parse("BLOCK_M=64")["BLOCK_M"] == 64


def test_problem_validation():
    p = MATMUL.problem({"M": 1, "N": 2, "K": 3}, "bf16", {"bias": True})
    assert p["K"] == 3 and p.opt("bias") == "1" and p.dtype == "bf16"
    assert MATMUL.shape_key(p) == "M=1,N=2,K=3|bf16|bias=1"
    with pytest.raises(InvalidProblem, match="dtypes"):
        MATMUL.problem({"M": 1, "N": 2, "K": 3}, "int8")
    with pytest.raises(InvalidProblem, match=">= 1"):
        MATMUL.problem({"M": 0, "N": 2, "K": 3}, "fp16")
    with pytest.raises(InvalidProblem, match="no option"):
        MATMUL.problem({"M": 1, "N": 2, "K": 3}, "fp16", {"causal": "1"})
    with pytest.raises(InvalidProblem, match="one of"):
        MATMUL.problem({"M": 1, "N": 2, "K": 3}, "fp16", {"bias": "2"})


def test_unknown_kernel_lists_the_known_ones():
    with pytest.raises(UnknownKernel) as err:
        kernels.get("matmull")
    for name in kernels.names():
        assert name in str(err.value)


def test_registry_names_are_unique_and_specs_complete():
    assert len(set(kernels.names())) == len(kernels.REGISTRY)
    for spec in kernels.REGISTRY:
        assert spec.dims and spec.dtypes and spec.params and spec.space_size > 1
        assert set(spec.example) == set(spec.dims)


@pytest.mark.parametrize("device,dtype,ok", [
    (H100, "bf16", True), (H100, "fp8", True), (L4, "fp8", True), (A100, "fp8", False),
    (A100, "bf16", True), (T4, "bf16", False), (T4, "fp16", True), (CPU, "bf16", True), (CPU, "fp8", False),
])
def test_dtype_support_by_device(device, dtype, ok):
    reason = dtype_unsupported_reason(dtype, device)
    assert (reason is None) == ok
    if reason:
        assert dtype.replace("fp8", "fp8 e4m3") in reason


def test_size_helpers():
    assert [C.next_pow2(n) for n in (1, 2, 3, 13, 16, 257)] == [1, 2, 4, 16, 16, 512]
    assert [C.padded(n) for n in (1, 13, 17, 257)] == [16, 16, 32, 512]
    assert C.padded(3, minimum=1) == 4 and C.cdiv(257, 16) == 17


def _mm(M, N, K, dtype="bf16"):
    return MATMUL.problem({"M": M, "N": N, "K": K}, dtype)


BASE = Config(BLOCK_M=64, BLOCK_N=64, BLOCK_K=64, GROUP_M=1, SPLIT_K=1, num_warps=4, num_stages=3, TMA=0)


@pytest.mark.parametrize("change,problem,fragment", [
    ({"BLOCK_M": 48}, _mm(64, 64, 64), "BLOCK_M=48 is not a power of two"),
    ({"num_warps": 3}, _mm(64, 64, 64), "num_warps=3 is not a power of two"),
    ({"BLOCK_M": 64}, _mm(13, 64, 64), "BLOCK_M=64 exceeds M=13 padded to 16"),
    ({"BLOCK_N": 128}, _mm(64, 33, 64), "BLOCK_N=128 exceeds N=33 padded to 64"),
    ({"SPLIT_K": 4}, _mm(64, 64, 129), "SPLIT_K=4 exceeds the 3 BLOCK_K tiles along K=129"),
    ({"GROUP_M": 8}, _mm(64, 64, 64), "GROUP_M=8 has no effect with one M block"),
    ({"BLOCK_M": 256, "BLOCK_N": 256, "BLOCK_K": 128, "num_stages": 4}, _mm(4096, 4096, 4096),
     "shared memory"),
    ({"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 16, "num_warps": 2, "num_stages": 2}, _mm(4096, 4096, 4096),
     "registers per thread"),
])
def test_matmul_constraints_reject_with_reason(change, problem, fragment):
    reason = MATMUL.reject_reason(BASE.replace(**change), problem, H100)
    assert reason is not None and fragment in reason


def test_matmul_constraints_accept_a_plain_config():
    assert MATMUL.reject_reason(BASE, _mm(64, 64, 64), H100) is None
    assert MATMUL.reject_reason(BASE.replace(GROUP_M=8), _mm(4096, 64, 64), H100) is None


def test_shared_memory_limit_depends_on_the_device():
    big = BASE.replace(BLOCK_M=128, BLOCK_N=256, BLOCK_K=64, num_stages=4, num_warps=8)
    p = _mm(4096, 4096, 4096)
    # 4 stages * (128 + 256) * 64 * 2 bytes = 192 KiB: fits an H100 (227 KiB), not an A100 (163 KiB).
    assert MATMUL.reject_reason(big, p, H100) is None
    assert "shared memory" in MATMUL.reject_reason(big, p, A100)
    assert MATMUL.reject_reason(big, p, CPU) is None  # the interpreter has no shared memory limit


def test_unknown_and_missing_parameters():
    p = _mm(64, 64, 64)
    assert "unknown parameter FOO" in MATMUL.reject_reason(BASE.replace(FOO=1), p, H100)
    partial = Config({k: v for k, v in BASE.items() if k != "GROUP_M"})
    assert "missing parameter GROUP_M" in MATMUL.reject_reason(partial, p, H100)
    with pytest.raises(InvalidConfig, match="unknown parameter"):
        MATMUL.complete({"FOO": 1}, p, H100)
    filled = MATMUL.complete({"BLOCK_N": 32}, p, H100)
    assert filled["BLOCK_N"] == 32 and MATMUL.reject_reason(filled, p, H100) is None


def test_group_m_constraint_direct():
    assert group_m_has_effect(BASE.replace(GROUP_M=0), _mm(512, 64, 64), H100) is not None
    assert group_m_has_effect(BASE.replace(GROUP_M=4), _mm(512, 64, 64), H100) is None


def test_heuristic_split_k_fills_the_sms_for_skinny_m():
    assert heuristic_split_k(tiles=64, k_tiles=32, device=H100) == 2
    assert heuristic_split_k(tiles=8, k_tiles=32, device=H100) == 16
    assert heuristic_split_k(tiles=8, k_tiles=4, device=H100) == 4
    assert heuristic_split_k(tiles=512, k_tiles=32, device=H100) == 1


SHAPES = list(itertools.product((1, 13, 16, 257, 4096), (1, 13, 257, 4096, 14336), (13, 257, 4096, 14336)))


@pytest.mark.parametrize("spec", kernels.REGISTRY, ids=lambda s: s.name)
def test_every_heuristic_is_valid_on_every_device(spec):
    """The default config passes the spec's own constraints for many shapes on every device."""
    sizes = (1, 13, 64, 257, 4096)
    checked = 0
    for device in ALL:
        for dtype in spec.dtypes:
            for values in itertools.islice(itertools.product(sizes, repeat=len(spec.dims)), 0, None, 7):
                shape = dict(zip(spec.dims, values))
                try:
                    problem = spec.problem(shape, dtype)
                except InvalidProblem:
                    continue  # e.g. H not a multiple of HKV: not a problem the kernel takes
                config = spec.heuristic(problem, device)
                assert spec.reject_reason(config, problem, device) is None, (device.name, spec.shape_key(problem), config)
                checked += 1
    assert checked >= 20


def test_matmul_heuristic_on_h100_llm_shapes():
    decode = MATMUL.heuristic(_mm(1, 4096, 4096), H100)
    assert decode["BLOCK_M"] == 16 and decode["SPLIT_K"] > 1
    prefill = MATMUL.heuristic(_mm(2048, 4096, 4096), H100)
    assert prefill["BLOCK_M"] >= 64 and prefill["SPLIT_K"] == 1 and prefill["GROUP_M"] > 1


def test_sample_configs_cover_every_value_and_are_reproducible():
    p = _mm(264, 264, 264, "fp16")  # every value of every parameter valid somewhere (TMA=1: K, N whole 16 bytes)
    a = MATMUL.sample_configs(p, H100, 10, seed=3)
    b = MATMUL.sample_configs(p, H100, 10, seed=3)
    assert a == b and len(a) >= 10 and len(set(a)) == len(a)
    for param in MATMUL.params:
        assert {c[param.name] for c in a} == set(param.values), param.name
    assert all(MATMUL.reject_reason(c, p, H100) is None for c in a)


def test_valid_configs_are_exactly_those_without_reasons():
    p = _mm(13, 257, 64, "fp16")
    valid = set(MATMUL.valid_configs(p, H100))
    assert 0 < len(valid) < MATMUL.space_size
    for config in MATMUL.all_configs():
        assert (config in valid) == (MATMUL.reject_reason(config, p, H100) is None)


def test_shrink_to_fit_reaches_a_valid_config():
    p = _mm(4096, 4096, 4096)
    too_big = Config(BLOCK_M=256, BLOCK_N=256, BLOCK_K=128, GROUP_M=8, SPLIT_K=1, num_warps=8, num_stages=5,
                     TMA=0)
    fitted = C.shrink_to_fit(MATMUL, too_big, p, T4, ("num_stages", "BLOCK_K", "BLOCK_N", "BLOCK_M"))
    assert MATMUL.reject_reason(fitted, p, T4) is None
    assert fitted["num_stages"] == 2  # stages are shed first
