"""Public kernel functions ask the active config source when the caller gives no config."""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels.accuracy import compare, tolerance_for
from kernels.config_source import HeuristicSource, Resolution, get_config_source, using_config_source
from kernels.device import current_device
from kernels.errors import InvalidConfig, InvalidProblem
from kernels.matmul import SPEC as MATMUL_SPEC
from kernels.spec import Config

from .conftest import generator


class RecordingSource:
    def __init__(self, config: Config):
        self.config = config
        self.asked = []

    def resolve(self, spec, problem, device):
        self.asked.append((spec.name, spec.shape_key(problem), device.kind))
        return Resolution(self.config, "database", "planted for the test")


def _inputs(seed, M=13, N=257, K=129, dtype=torch.float16):
    g = generator(current_device().torch_device, seed)
    dev = current_device().torch_device
    a = torch.randn(M, K, generator=g, device=dev, dtype=dtype)
    w = torch.randn(N, K, generator=g, device=dev, dtype=dtype)
    return a, w


def test_default_source_is_the_heuristic():
    assert isinstance(get_config_source(), HeuristicSource)


def test_public_matmul_uses_the_active_source(seed):
    a, w = _inputs(seed)
    planted = Config(BLOCK_M=16, BLOCK_N=32, BLOCK_K=32, GROUP_M=1, SPLIT_K=2, num_warps=4, num_stages=2, TMA=0)
    source = RecordingSource(planted)
    with using_config_source(source):
        out = kernels.matmul(a, w.t())
    assert source.asked == [("matmul", "M=13,N=257,K=129|fp16|bias=0", current_device().kind)]
    assert isinstance(get_config_source(), HeuristicSource)  # restored
    assert compare(out.float(), a.float() @ w.float().t(), tolerance_for("fp16")).ok


def test_public_matmul_with_partial_config_and_bias(seed):
    a, w = _inputs(seed, M=1, N=13, K=257)
    bias = torch.randn(13, dtype=torch.float16, device=a.device)
    out = kernels.matmul(a, w.t(), bias, config={"SPLIT_K": 4, "BLOCK_K": 32})
    ref = a.float() @ w.float().t() + bias.float()
    assert compare(out.float(), ref, tolerance_for("fp16")).ok


def test_public_matmul_rejects_bad_calls(seed):
    a, w = _inputs(seed)
    with pytest.raises(InvalidConfig, match="not a power of two"):
        kernels.matmul(a, w.t(), config={"BLOCK_M": 24})
    with pytest.raises(InvalidProblem, match=r"a \[M, K\] and b \[K, N\]"):
        kernels.matmul(a, w)
    with pytest.raises(InvalidProblem, match="one dtype"):
        kernels.matmul(a, w.t().float())
    with pytest.raises(InvalidProblem, match="bias"):
        kernels.matmul(a, w.t(), torch.zeros(3, dtype=a.dtype, device=a.device))


def test_caller_given_output_buffer_is_filled(seed):
    a, w = _inputs(seed, M=5, N=33, K=40)
    out = torch.full((5, 33), float("nan"), dtype=torch.float16, device=a.device)
    got = kernels.matmul(a, w.t(), out=out)
    assert got.data_ptr() == out.data_ptr() and not torch.isnan(out).any()


def test_heuristic_source_memoizes_per_problem_and_device():
    from .fake_devices import A100, H100
    source = HeuristicSource()
    p = MATMUL_SPEC.problem({"M": 1, "N": 4096, "K": 4096}, "bf16")
    first = source.resolve(MATMUL_SPEC, p, H100)
    assert source.resolve(MATMUL_SPEC, p, H100) is first and first.source == "heuristic"
    assert first.config == MATMUL_SPEC.heuristic(p, H100)
    other = source.resolve(MATMUL_SPEC, p, A100)
    assert other.config == MATMUL_SPEC.heuristic(p, A100)
    p2 = MATMUL_SPEC.problem({"M": 2048, "N": 4096, "K": 4096}, "bf16")
    assert source.resolve(MATMUL_SPEC, p2, H100).config != first.config
