"""matmul's TMA=1 path (tensor-descriptor loads): against a float64 reference at odd M and
tiles that cut N and K, both layouts of B, bias and split-K; the fallback for tensors a
descriptor cannot describe; and the constraint that keeps TMA=1 off other GPUs and unaligned
rows. Under the interpreter (which emulates descriptors) here; the same on a GPU with -m gpu."""

from __future__ import annotations

import importlib

import pytest
import torch

import kernels
from kernels.accuracy import compare, tolerance_for
from kernels.device import current_device

from .fake_devices import A100, CPU, H100

mm = importlib.import_module("kernels.matmul")  # `kernels.matmul` is also the function
SPEC = kernels.get("matmul")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TILES = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32, "num_warps": 4}


@pytest.fixture
def spy(monkeypatch):
    """The launches that went through descriptors (True) or fell back (False)."""
    taken: list[bool] = []
    original = mm._tma_descriptors

    def recording(a, b, config):
        found = original(a, b, config)
        taken.append(found is not None)
        return found

    monkeypatch.setattr(mm, "_tma_descriptors", recording)
    return taken


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("layout", ["weight", "row-major"])
@pytest.mark.parametrize("split_k", [1, 3])
def test_tma_matches_the_reference(dtype, layout, split_k, seed, spy):
    check_tma(dtype, layout, split_k, seed, spy)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (9, 0),
                    reason="needs an sm_90+ GPU")
@pytest.mark.parametrize("layout", ["weight", "row-major"])
@pytest.mark.parametrize("split_k", [1, 3])
def test_gpu_tma_matches_the_reference_bf16(layout, split_k, seed, spy):
    """On an sm_90 GPU: real TMA copies, bf16 without the interpreter's upcast."""
    check_tma("bf16", layout, split_k, seed, spy)


def check_tma(dtype: str, layout: str, split_k: int, seed: int, spy: list[bool]) -> None:
    device = current_device().torch_device
    gen = torch.Generator(device=device).manual_seed(seed)
    M, N, K = 13, 264, 136  # N and K: whole 16-byte rows, not whole tiles; M not a tile either
    a = torch.randn((M, K), device=device, dtype=DTYPES[dtype], generator=gen)
    if layout == "weight":
        b = torch.randn((N, K), device=device, dtype=DTYPES[dtype], generator=gen).t()  # nn.Linear's W.t()
    else:
        b = torch.randn((K, N), device=device, dtype=DTYPES[dtype], generator=gen)
    bias = torch.randn((N,), device=device, dtype=DTYPES[dtype], generator=gen)
    out = torch.full((M, N), float("nan"), device=device, dtype=DTYPES[dtype])
    got = mm.matmul(a, b, bias, config={**TILES, "TMA": 1, "SPLIT_K": split_k}, out=out)
    ref = a.double() @ b.double() + bias.double()
    result = compare(got.float(), ref.float(), tolerance_for(dtype))
    assert spy == [True] and result.ok, f"seed {seed}: {result.summary()}"


def test_a_tensor_no_descriptor_describes_runs_the_pointer_path(seed, spy):
    device = current_device().torch_device
    gen = torch.Generator(device=device).manual_seed(seed)
    a = torch.randn((136, 13), device=device, generator=gen).t()  # [13, 136] with a last-dim stride of 13
    b = torch.randn((264, 136), device=device, generator=gen).t()
    got = mm.matmul(a, b, config={**TILES, "TMA": 1})
    assert spy == [False]
    assert compare(got, (a.double() @ b.double()).float(), tolerance_for("fp32")).ok


def test_tma_constraint():
    ok = SPEC.problem({"M": 2048, "N": 4096, "K": 4096}, "bf16")
    config = SPEC.complete({"TMA": 1}, ok, H100)
    assert config["TMA"] == 1 and SPEC.reject_reason(config, ok, CPU) is None  # the interpreter emulates TMA
    assert "needs an sm_90+ GPU" in SPEC.reject_reason(config, ok, A100)
    odd = SPEC.problem({"M": 13, "N": 257, "K": 4096}, "bf16")
    assert "TMA=1 needs K and N multiples of 8 (bf16: 16-byte rows)" in SPEC.reject_reason(
        config.replace(BLOCK_N=64, BLOCK_M=16), odd, H100)
    fp32 = SPEC.problem({"M": 13, "N": 260, "K": 4096}, "fp32")
    assert SPEC.reject_reason(SPEC.complete({"TMA": 1}, fp32, H100), fp32, H100) is None  # 4 fp32 = 16 bytes
    # the default stays TMA=0 until a GPU run measures TMA=1
    assert SPEC.heuristic(ok, H100)["TMA"] == 0 and SPEC.heuristic(ok, CPU)["TMA"] == 0
