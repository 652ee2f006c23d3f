"""The database's key functions: device names and classes, M buckets, problem buckets,
kernel source hashes, Triton minor versions."""

from __future__ import annotations

import dataclasses

import pytest

import kernels
from kernels.errors import InvalidProblem
from tuner.keys import (CPU_CLASS, M_BUCKETS, device_class, kernel_source_files, kernel_source_hash, m_bucket,
                        normalize_device_name, problem_bucket, problem_family, problem_from_key, triton_minor)

from .fake_devices import A100, CPU, H100


@pytest.mark.parametrize("raw, expected", [
    ("NVIDIA H100 80GB HBM3", "nvidia-h100-80gb-hbm3"),
    ("NVIDIA_H100_80GB_HBM3", "nvidia-h100-80gb-hbm3"),
    ("  nvidia  h100 80gb   hbm3 ", "nvidia-h100-80gb-hbm3"),
    ("NVIDIA H100 PCIe", "nvidia-h100-pcie"),
    ("NVIDIA H200 NVL", "nvidia-h200-nvl"),
    ("NVIDIA A100-SXM4-80GB", "nvidia-a100-sxm4-80gb"),
    ("NVIDIA(R) GeForce RTX(TM) 4090", "nvidia-geforce-rtx-4090"),
    ("", "unknown"),
])
def test_normalize_device_name(raw, expected):
    assert normalize_device_name(raw) == expected


def test_variants_stay_distinct():
    names = ["NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA H20", "NVIDIA H200"]
    assert len({normalize_device_name(n) for n in names}) == len(names)


def test_device_class_is_capability_and_normalized_name():
    assert device_class(H100).capability == "9.0" and device_class(H100).name == "nvidia-h100-80gb-hbm3"
    assert device_class(A100).capability == "8.0"
    assert device_class(CPU) == CPU_CLASS
    # The interpreter on a GPU machine times on the CPU: its class is "cpu" too.
    assert device_class(dataclasses.replace(H100, interpreter=True)) == CPU_CLASS
    assert device_class(dataclasses.replace(H100, name="NVIDIA_H100_80GB_HBM3")) == device_class(H100)


def test_m_buckets_are_powers_of_two_and_midpoints():
    assert M_BUCKETS[:10] == (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
    assert M_BUCKETS[-3:] == (2048, 3072, 4096)


@pytest.mark.parametrize("m, bucket", [(1, 1), (2, 2), (3, 3), (5, 6), (7, 8), (13, 16), (17, 24), (100, 128),
                                       (129, 192), (4095, 4096), (4096, 4096), (4097, 8192), (8192, 8192),
                                       (10000, 16384)])
def test_m_bucket(m, bucket):
    assert m_bucket(m) == bucket


def test_m_bucket_is_monotone_and_covers():
    previous = 0
    for m in range(1, 9000):
        b = m_bucket(m)
        assert b >= m and b >= previous
        previous = b
    with pytest.raises(ValueError):
        m_bucket(0)


def test_problem_bucket_keeps_every_dim_but_m_and_the_options():
    spec = kernels.get("matmul_w4a16")
    p = spec.problem({"M": 13, "N": 4096, "K": 4096}, "bf16", {"quant": "int4-g64"})
    assert problem_bucket(spec, p) == "M=16,N=4096,K=4096|bf16|quant=int4-g64|bias=0"
    assert problem_family(spec, p) == "N=4096,K=4096|bf16|quant=int4-g64|bias=0"
    rope = kernels.get("rope")
    q = rope.problem({"T": 100, "H": 32, "D": 128}, "fp16")
    assert problem_bucket(rope, q) == "T=128,H=32,D=128|fp16"
    att = kernels.get("attention")
    a = att.problem({"B": 2, "H": 9, "HKV": 3, "S": 257, "D": 64}, "fp16")
    assert problem_bucket(att, a) == att.shape_key(a)  # no token dim: exact


def test_problem_from_key_inverts_shape_key():
    for spec in kernels.REGISTRY:
        p = spec.problem(spec.example, spec.dtypes[0])
        assert problem_from_key(spec, spec.shape_key(p)) == p
    with pytest.raises(InvalidProblem):
        problem_from_key(kernels.get("matmul"), "M=x|fp16")


def test_source_hash_covers_the_module_and_its_triton_helpers():
    names = [p.name for p in kernel_source_files(kernels.get("matmul"))]
    assert names[0] == "matmul.py" and {"gemm.py", "splitk.py"} <= set(names)
    assert "spec.py" not in names and "device.py" not in names
    assert [p.name for p in kernel_source_files(kernels.get("rmsnorm"))] == ["rmsnorm.py", "pdl.py", "rowwise.py"]
    assert "attention.py" in [p.name for p in kernel_source_files(kernels.get("attention_decode"))]
    hashes = {spec.name: kernel_source_hash(spec) for spec in kernels.REGISTRY}
    assert len(set(hashes.values())) == len(hashes)
    assert all(len(h) == 64 for h in hashes.values())
    assert kernel_source_hash(kernels.get("matmul")) == hashes["matmul"]  # deterministic


@pytest.mark.parametrize("version, minor", [("3.9.0", "3.9"), ("3.10.1+git1a2b", "3.10"), ("3.2", "3.2"),
                                            ("4", "4.0")])
def test_triton_minor(version, minor):
    assert triton_minor(version) == minor
