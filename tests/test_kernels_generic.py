"""One correctness test for every kernel in the registry, against its torch reference.

On this machine (no GPU) kernels run through the Triton interpreter in fp32/fp16/bf16;
tests marked `gpu` run the same checks in bf16 on a CUDA device. Inputs are fresh random
data every run (the seed is in the failure message); every output buffer is poisoned with
NaN first, so an element the kernel never writes fails the check.
"""

from __future__ import annotations

import zlib

import pytest
import torch

import kernels
from kernels.accuracy import compare
from kernels.device import current_device
from kernels.spec import Config, KernelSpec, Problem

from .conftest import generator
from .kernel_cases import SHAPES, SWEEP

SAMPLE_SIZE = 10
HAS_CUDA = torch.cuda.is_available()


def _poisoned_like(ref: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.full(ref.shape, float("nan"), dtype=dtype, device=ref.device)


def check(spec: KernelSpec, problem: Problem, config: Config, seed: int) -> None:
    dev = current_device()
    reason = spec.unsupported_reason(problem, dev)
    if reason:
        pytest.skip(f"{spec.name} not supported on this device: {reason}")
    inputs = spec.make_inputs(problem, dev.torch_device, generator(dev.torch_device, seed))
    ref = spec.reference(inputs)
    out_dtype = spec.launch(inputs, config).dtype  # learn the output dtype, then run again poisoned
    out = spec.launch(inputs, config, out=_poisoned_like(ref, out_dtype))
    result = compare(out.float(), ref, spec.tolerance(problem))
    assert result.ok, f"{spec.shape_key(problem)} config {config} seed {seed}: {result.summary()}"


def _cpu_dtypes(spec: KernelSpec) -> list[str]:
    return [d for d in ("fp32", "fp16") if d in spec.dtypes] or [spec.dtypes[0]]


def _default_cases():
    for spec in kernels.REGISTRY:
        for i, (shape, options) in enumerate(SHAPES.get(spec.name, [])):
            dtypes = _cpu_dtypes(spec)
            if i == 1 and "bf16" in spec.dtypes:
                dtypes = dtypes + ["bf16"]  # bf16 on one shape (tl.dot upcast under the interpreter)
            for dtype in dtypes:
                yield pytest.param(spec, shape, options, dtype, id=f"{spec.name}-{'x'.join(map(str, shape.values()))}-{dtype}")


def _sweep_cases(dtype: str, marks=()):
    dev = current_device()
    for spec in kernels.REGISTRY:
        if spec.name not in SWEEP or dtype not in spec.dtypes:
            continue
        shape, options = SWEEP[spec.name]
        problem = spec.problem(shape, dtype, options)
        configs = spec.sample_configs(problem, dev, SAMPLE_SIZE, seed=zlib.crc32(spec.name.encode()))
        for config in configs:
            yield pytest.param(spec, problem, config, id=f"{spec.name}-{config}", marks=marks)


def test_every_kernel_has_cases():
    missing = [s.name for s in kernels.REGISTRY if s.name not in SHAPES or s.name not in SWEEP]
    assert not missing, f"kernels without test cases in tests/kernel_cases.py: {missing}"


@pytest.mark.parametrize("spec", kernels.REGISTRY, ids=lambda s: s.name)
def test_sample_is_large_and_covers_the_space(spec: KernelSpec):
    dev = current_device()
    shape, options = SWEEP[spec.name]
    dtype = "bf16" if HAS_CUDA and "bf16" in spec.dtypes else _cpu_dtypes(spec)[-1]
    problem = spec.problem(shape, dtype, options)
    valid = list(spec.valid_configs(problem, dev))
    sample = spec.sample_configs(problem, dev, SAMPLE_SIZE, seed=1)
    assert len(sample) >= SAMPLE_SIZE and len(set(sample)) == len(sample)
    for param in spec.params:
        used = {c[param.name] for c in valid}
        assert used == {c[param.name] for c in sample if c[param.name] in used}, param.name


@pytest.mark.parametrize("spec,shape,options,dtype", list(_default_cases()))
def test_default_config_matches_reference(spec, shape, options, dtype, seed):
    problem = spec.problem(shape, dtype, options)
    dev = current_device()
    check(spec, problem, spec.heuristic(problem, dev), seed)


@pytest.mark.parametrize("spec,problem,config", list(_sweep_cases("fp16")))
def test_sampled_configs_match_reference(spec, problem, config, seed):
    check(spec, problem, config, seed)


# -- the same checks in bf16 on a GPU ------------------------------------------------------
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")


def _gpu_default_cases():
    for spec in kernels.REGISTRY:
        if "bf16" not in spec.dtypes:
            continue
        for shape, options in SHAPES.get(spec.name, []):
            yield pytest.param(spec, shape, options, id=f"{spec.name}-{'x'.join(map(str, shape.values()))}-bf16")


@gpu
@needs_cuda
@pytest.mark.parametrize("spec,shape,options", list(_gpu_default_cases()) if HAS_CUDA else [])
def test_gpu_default_config_bf16(spec, shape, options, seed):
    problem = spec.problem(shape, "bf16", options)
    check(spec, problem, spec.heuristic(problem, current_device()), seed)


@gpu
@needs_cuda
@pytest.mark.parametrize("spec,problem,config", list(_sweep_cases("bf16")) if HAS_CUDA else [])
def test_gpu_sampled_configs_bf16(spec, problem, config, seed):
    check(spec, problem, config, seed)
