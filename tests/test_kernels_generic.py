"""One correctness test for every kernel in the registry, against its torch reference.

On this machine (no GPU) kernels run through the Triton interpreter in fp32/fp16/bf16;
tests marked `gpu` run the same checks in bf16 on a CUDA device. Inputs are fresh random
data every run (the seed is in the failure message); every output buffer is poisoned with
NaN first, so an element the kernel never writes fails the check.

The layout tests pass every tensor input of every kernel, and its output buffer, as a
non-contiguous view (tests/layouts.py: strided, transposed, column slice of a wider
buffer, with poison where the view has gaps) and check the result against the reference
of the same values: a kernel must honour every input's strides or refuse the layout with
InvalidProblem (which fails here too: every registered kernel honours them all).
"""

from __future__ import annotations

import zlib

import pytest
import torch

import kernels
from kernels.accuracy import compare
from kernels.device import DTYPE_NAMES, current_device
from kernels.errors import InvalidProblem
from kernels.launching import run
from kernels.spec import Config, KernelSpec, Problem

from .conftest import generator
from .kernel_cases import LAYOUTS, SHAPES, SWEEP
from .layouts import LAYOUTS as VIEWS
from .layouts import get_at, layouts_for, read_by_reference, replace_at, tensor_paths

SAMPLE_SIZE = 10
HAS_CUDA = torch.cuda.is_available()


def _poisoned_like(ref: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.full(ref.shape, float("nan"), dtype=dtype, device=ref.device)


def inputs_here(spec: KernelSpec, problem: Problem, seed: int):
    """(device, fresh inputs, reference) for `problem` here; skips where the device cannot run it."""
    dev = current_device()
    reason = spec.unsupported_reason(problem, dev)
    if reason:
        pytest.skip(f"{spec.name} not supported on this device: {reason}")
    inputs = spec.make_inputs(problem, dev.torch_device, generator(dev.torch_device, seed))
    return dev, inputs, spec.reference(inputs)


def check(spec: KernelSpec, problem: Problem, config: Config, seed: int) -> None:
    dev, inputs, ref = inputs_here(spec, problem, seed)
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
    missing = [s.name for s in kernels.REGISTRY if s.name not in SHAPES or s.name not in SWEEP or s.name not in LAYOUTS]
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


# -- every input in non-contiguous layouts ----------------------------------------------
def _layout_dtype(spec: KernelSpec) -> str:
    # bf16 on a GPU; fp16 (or fp32) under the interpreter, whose tl.dot is wrong on bf16.
    return "bf16" if HAS_CUDA and "bf16" in spec.dtypes else _cpu_dtypes(spec)[-1]


def _layout_cases():
    """(kernel, input path, layout) for every tensor the reference reads, and ("out",) for
    the output buffer: found from the kernel's own input factory, so a new kernel is covered."""
    for spec in kernels.REGISTRY:
        shape, options = LAYOUTS[spec.name]
        problem = spec.problem(shape, _layout_dtype(spec), options)
        inputs = spec.make_inputs(problem, torch.device("cpu"), generator(torch.device("cpu"), 0))
        ref = spec.reference(inputs)
        targets = [(path, get_at(inputs, path)) for path in tensor_paths(inputs)
                   if read_by_reference(spec.reference, inputs, path)]
        targets.append((("out",), ref))
        for path, tensor in targets:
            for layout in layouts_for(tensor):
                yield pytest.param(spec, problem, path, layout, id=f"{spec.name}-{'.'.join(path)}-{layout}")


LAYOUT_CASES = list(_layout_cases())


def test_layout_cases_cover_every_kernel():
    covered = {p.values[0].name for p in LAYOUT_CASES}
    assert covered == {s.name for s in kernels.REGISTRY}
    # every kernel: its output and at least one input, each in more than one layout
    for spec in kernels.REGISTRY:
        paths = {p.values[2] for p in LAYOUT_CASES if p.values[0] is spec}
        assert ("out",) in paths and len(paths) >= 2, (spec.name, paths)


@pytest.mark.parametrize("spec,problem,path,layout", LAYOUT_CASES)
def test_noncontiguous_input_matches_reference(spec, problem, path, layout, seed):
    dev, inputs, ref = inputs_here(spec, problem, seed)
    config = spec.heuristic(problem, dev)
    make_view = VIEWS[layout][0]
    where = f"{spec.shape_key(problem)} {'.'.join(path)} {layout} config {config} seed {seed}"
    if path == ("out",):
        out_dtype = spec.launch(inputs, config).dtype
        out = make_view(_poisoned_like(ref, out_dtype))
        base = out._base if out._base is not None else out
        untouched = base.isnan().sum() - out.isnan().sum()  # poison outside the view
        result_tensor = run(spec, inputs, config, out=out)  # the public functions' path
        assert result_tensor.data_ptr() == out.data_ptr(), f"{where}: the result is not the given out"
        assert int(base.isnan().sum() - out.isnan().sum()) == int(untouched), f"{where}: wrote outside out"
    else:
        view = make_view(get_at(inputs, path))
        result_tensor = run(spec, replace_at(inputs, path, view), config)
    result = compare(result_tensor.float(), ref, spec.tolerance(problem))
    assert result.ok, f"{where}: {result.summary()}"


@pytest.mark.parametrize("spec", kernels.REGISTRY, ids=lambda s: s.name)
def test_out_with_shared_elements_is_refused(spec):
    """An output buffer whose elements share memory (an expand()ed row) would have programs
    race for one address: every kernel refuses it before launching."""
    shape, options = LAYOUTS[spec.name]
    problem = spec.problem(shape, _layout_dtype(spec), options)
    dev = current_device()
    inputs = spec.make_inputs(problem, dev.torch_device, generator(dev.torch_device, 0))
    ref = spec.reference(inputs)
    out_dtype = DTYPE_NAMES[problem.dtype]
    out = torch.empty(ref.shape[-1], dtype=out_dtype, device=dev.torch_device).expand(ref.shape)
    with pytest.raises(InvalidProblem, match="share memory"):
        spec.launch(inputs, spec.heuristic(problem, dev), out=out)


@pytest.mark.parametrize("spec", kernels.REGISTRY, ids=lambda s: s.name)
def test_input_on_another_device_is_refused(spec):
    """A tensor on another device than the kernels' (here: a "meta" tensor, the one other
    device every machine has) is refused with InvalidProblem, for each input and for out
    (some kernels' own checks name the devices, the common one names the tensor)."""
    shape, options = LAYOUTS[spec.name]
    problem = spec.problem(shape, _layout_dtype(spec), options)
    dev = current_device()
    inputs = spec.make_inputs(problem, dev.torch_device, generator(dev.torch_device, 0))
    for path in tensor_paths(inputs):
        moved = replace_at(inputs, path, get_at(inputs, path).to("meta"))
        with pytest.raises(InvalidProblem, match="meta"):
            run(spec, moved, None)
    out = torch.empty(spec.reference(inputs).shape, device="meta")
    with pytest.raises(InvalidProblem, match="out is on meta"):
        run(spec, inputs, None, out=out)


def _inputs_at(spec: KernelSpec, seed: int):
    shape, options = LAYOUTS[spec.name]
    problem = spec.problem(shape, _layout_dtype(spec), options)
    dev = current_device()
    return problem, spec.make_inputs(problem, dev.torch_device, generator(dev.torch_device, seed))


@pytest.mark.parametrize("spec", kernels.REGISTRY, ids=lambda s: s.name)
def test_out_overlapping_an_input_is_refused(spec):
    """An out that shares memory with an input (one element off) would have programs read
    what others already wrote: refused, for every input of the output's dtype."""
    problem, inputs = _inputs_at(spec, 0)
    ref = spec.reference(inputs)
    out_dtype = DTYPE_NAMES[problem.dtype]
    checked = 0
    for path in tensor_paths(inputs):
        t = get_at(inputs, path)
        if t.dtype != out_dtype:
            continue
        buf = torch.zeros(t.numel() + ref.numel() + 1, dtype=t.dtype, device=t.device)
        t_view = buf[: t.numel()].view(t.shape)
        t_view.copy_(t)
        out = buf[1: 1 + ref.numel()].view(ref.shape)
        with pytest.raises(InvalidProblem, match=f"out shares memory with input {path[-1]}"):
            run(spec, replace_at(inputs, path, t_view), None, out=out)
        checked += 1
    assert checked, f"{spec.name}: no input of the output dtype to overlap"


@pytest.mark.parametrize("spec", [s for s in kernels.REGISTRY if s.out_may_alias], ids=lambda s: s.name)
def test_in_place_on_an_allowed_input_matches_reference(spec, seed):
    """out may be exactly one of `spec.out_may_alias` (the factory's own layout: e.g. swiglu's
    gate half of gate_up, whose up half overlaps its address range)."""
    for field in spec.out_may_alias:
        problem, inputs = _inputs_at(spec, seed)
        ref = spec.reference(inputs)
        target = get_at(inputs, (field,))
        result_tensor = run(spec, inputs, None, out=target)
        assert result_tensor.data_ptr() == target.data_ptr()
        result = compare(result_tensor.float(), ref, spec.tolerance(problem))
        assert result.ok, f"{spec.name} out={field} seed {seed}: {result.summary()}"


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
