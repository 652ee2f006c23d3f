"""Compile what a spec's launcher launches for an H100 (sm_90) on a machine without a GPU.

Test support code for tests/test_sm90_compile.py; nothing in kernels/ or infertune/
imports it. `compile_jobs` runs the work in a child process (`python -m
tests.sm90_compile`) started with TRITON_INTERPRET=0, so that the @triton.jit kernels are
real JITFunctions rather than interpreter stand-ins. In the child:

1. `JITFunction.run` is replaced, for the duration of one `spec.launch`, by a recorder:
   `kernel[grid](*args, **kwargs)` binds its arguments with Triton's own binder for the
   CUDA backend and returns without launching. The binder gives the signature ("*bf16",
   "i32", "fp32", ...), the constexprs and the specialization that a launch on a GPU would
   compile: integer arguments equal to 1 become constexprs, and pointers and integers
   divisible by 16 get a divisibility hint (CPU tensors are 64-byte aligned, like CUDA's).
2. The launcher runs on CPU tensors from `spec.make_inputs`. Its outputs are torch.empty
   buffers that nothing writes; the launchers here do no torch work on them after a
   launch (split-K and split-KV second passes are Triton launches, recorded as well).
3. Each recorded launch is compiled with `triton.compile` for GPUTarget("cuda", 90, 32)
   with the ptxas of the Triton wheel; the compiled metadata gives the shared memory and
   `cuobjdump --dump-resource-usage` the registers and stack (where spills go) of the cubin.
   The SASS (`cuobjdump -sass`) says which instructions sit inside a loop (between a
   backward branch and its target): spill loads and stores there are the costly ones, and
   the opcodes there are what each step of a K loop costs.

Parent and child exchange JSON (stdin, and a result file), nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
TARGET_ARCH = 90  # compute capability 9.0: H100


@dataclass(frozen=True)
class Job:
    """One launcher call to compile: a kernel, a problem and a config (Config text)."""

    kernel: str
    shape: dict[str, int]
    dtype: str
    options: dict[str, str]
    config: str
    label: str = ""  # what the test calls it ("heuristic", "sampled")
    # Environment variables set around the launcher call. INFERTUNE_PDL=1 here also makes
    # kernels.pdl treat the (CPU) tensors' device as PDL-capable: launches as on an H100.
    env: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        shape = ",".join(f"{k}={v}" for k, v in self.shape.items())
        opts = ",".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.kernel}|{shape}|{self.dtype}|{opts}|{self.config}"


@dataclass(frozen=True)
class LaunchResult:
    """One compiled launch: which Triton kernel with which constexprs, and what sm_90 needs.

    error: the compile error (None: compiled). shared: bytes of shared memory per block.
    registers: per thread. stack: bytes of stack frame per thread (Triton kernels keep no
    local arrays, so this is register spills; ptxas -v agrees). loop_spills: spill loads
    and stores (SASS STL/LDL) inside a loop. loop_opcodes: SASS opcode -> how many times it
    appears inside a loop (the K loop of a matmul), to check what each step costs.
    """

    kernel: str
    constexprs: str
    num_warps: int
    num_stages: int
    error: str | None = None
    shared: int | None = None
    registers: int | None = None
    stack: int | None = None
    loop_spills: int | None = None
    pdl: bool | None = None  # the PTX waits on the previous grid (griddepcontrol.wait) and releases the next
    loop_opcodes: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.kernel}[{self.constexprs},num_warps={self.num_warps},num_stages={self.num_stages}]"


@dataclass(frozen=True)
class JobResult:
    """error: why the launcher failed before anything was compiled (None: it ran)."""

    job: Job
    error: str | None
    launches: tuple[LaunchResult, ...] = field(default=())


class Unavailable(Exception):
    """This Triton install cannot compile for sm_90 offline (no NVIDIA backend, ptxas,
    cuobjdump, or a Triton without the binder API used here)."""


# -- parent side ----------------------------------------------------------------------
def compile_jobs(jobs: Sequence[Job], timeout: float) -> list[JobResult]:
    """Compile `jobs` in one child process; results in the order of `jobs`.

    Raises Unavailable (the caller skips), subprocess.TimeoutExpired, or RuntimeError
    with the child's stderr when it fails.
    """
    env = dict(os.environ, TRITON_INTERPRET="0")
    with tempfile.TemporaryDirectory() as tmp:
        out_path = Path(tmp) / "results.json"
        proc = subprocess.run(
            [sys.executable, "-m", "tests.sm90_compile", str(out_path)],
            input=json.dumps([asdict(j) for j in jobs]), capture_output=True, text=True,
            cwd=ROOT, env=env, timeout=timeout,
        )
        if proc.returncode != 0 or not out_path.exists():
            raise RuntimeError(f"sm_90 compile child exited with {proc.returncode}:\n{proc.stderr[-4000:]}")
        answer = json.loads(out_path.read_text())
    if answer.get("unavailable"):
        raise Unavailable(answer["unavailable"])
    return [JobResult(Job(**r["job"]), r["error"], tuple(LaunchResult(**x) for x in r["launches"]))
            for r in answer["results"]]


# -- child side -----------------------------------------------------------------------
def _unavailable_reason() -> str | None:
    """Why this process cannot compile for sm_90 offline, or None."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        return "TRITON_INTERPRET is set: the kernels would be interpreter stand-ins"
    try:
        import triton
        from triton.backends import backends
        from triton.compiler import ASTSource  # noqa: F401
        from triton.runtime.jit import JITFunction, create_function_from_signature  # noqa: F401
    except ImportError as e:
        return f"Triton compile machinery not importable: {e}"
    if "nvidia" not in backends:
        return f"Triton {triton.__version__} has no NVIDIA backend (backends: {', '.join(backends) or 'none'})"
    if not hasattr(JITFunction, "_pack_args"):
        return f"Triton {triton.__version__} lacks JITFunction._pack_args (its binder API changed)"
    from triton import knobs
    from triton.backends.nvidia.compiler import get_ptxas
    try:
        get_ptxas(TARGET_ARCH).path
        knobs.nvidia.cuobjdump.path
    except RuntimeError as e:  # knobs raise "Cannot find <tool>"
        return f"Triton {triton.__version__}: {e}"
    return None


class _Binding(NamedTuple):
    """One recorded launch, bound as JITFunction.run binds it before compiling."""

    fn: Any  # the JITFunction
    signature: dict  # argument name -> "*bf16", "i32", "fp32", "constexpr", ...
    constexprs: dict  # (argument index,) -> value: constexpr params and ints specialized to 1
    attrs: dict  # (argument index,) -> [["tt.divisibility", 16]] or []
    options: Any  # CUDAOptions (num_warps, num_stages, ...)


class _Sm90:
    """The CUDA backend for sm_90, Triton's binder per kernel, and a compile memo."""

    def __init__(self) -> None:
        from triton.backends.compiler import GPUTarget
        from triton.compiler.compiler import make_backend

        self.target = GPUTarget("cuda", TARGET_ARCH, 32)
        self.backend = make_backend(self.target)
        self._binders: dict[int, Any] = {}
        self._compiled: dict[str, LaunchResult] = {}

    def bind(self, fn, args: tuple, kwargs: dict) -> _Binding:
        """`fn[grid](*args, **kwargs)` bound as JITFunction.run binds it for compiling (run
        also passes `debug` and instrumentation options from Triton's knobs; here they keep
        their defaults)."""
        from triton.runtime.jit import create_function_from_signature

        binder = self._binders.get(id(fn))
        if binder is None:
            binder = self._binders[id(fn)] = create_function_from_signature(fn.signature, fn.params, self.backend)
        bound_args, specialization, options = binder(*args, **kwargs)
        options, signature, constexprs, attrs = fn._pack_args(self.backend, kwargs, bound_args, specialization, options)
        return _Binding(fn, signature, constexprs, attrs, options)

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[_Binding]]:
        """Within the block, `kernel[grid](...)` appends its binding and launches nothing."""
        from triton.runtime.jit import JITFunction

        launches: list[_Binding] = []
        original = JITFunction.run

        def record(fn, *args, grid, warmup, **kwargs):
            launches.append(self.bind(fn, args, kwargs))
            return None

        JITFunction.run = record
        try:
            yield launches
        finally:
            JITFunction.run = original

    def compile(self, launch: _Binding) -> LaunchResult:
        """Compile one recorded launch for sm_90; a compile error is part of the result."""
        import triton
        from triton.compiler import ASTSource

        fn, options = launch.fn, launch.options
        src = ASTSource(fn, launch.signature, launch.constexprs, launch.attrs)
        named = ",".join(f"{fn.arg_names[i]}={value}" for (i, *_), value in sorted(launch.constexprs.items())
                         if i in fn.constexprs)  # the kernel's own constexpr params, not specializations
        result = LaunchResult(fn.__name__, named, options.num_warps, options.num_stages)
        memo = src.hash() + repr(options)
        if memo in self._compiled:
            return self._compiled[memo]
        try:
            compiled = triton.compile(src, target=self.target, options=options.__dict__)
        except Exception as e:  # noqa: BLE001 - a compile error is a result, reported with its text
            result = replace(result, error=f"{type(e).__name__}: {str(e)[-2000:]}")
        else:
            cubin = compiled.asm["cubin"]
            registers, stack = _resource_usage(cubin, compiled.metadata.name)
            sass = _sass(cubin)
            ptx = compiled.asm["ptx"]
            result = replace(result, shared=int(compiled.metadata.shared), registers=registers, stack=stack,
                             loop_spills=loop_spills_in(sass), loop_opcodes=loop_opcodes_in(sass),
                             pdl="griddepcontrol.wait" in ptx and "griddepcontrol.launch_dependents" in ptx)
        self._compiled[memo] = result
        return result


_USAGE = re.compile(r"REG:(\d+)\s+STACK:(\d+)")


def _resource_usage(cubin: bytes, name: str) -> tuple[int, int]:
    """(registers per thread, stack bytes per thread) of kernel `name` in `cubin`."""
    from triton import knobs

    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([knobs.nvidia.cuobjdump.path, "--dump-resource-usage", f.name],
                              capture_output=True, text=True, check=True).stdout
    # "Function <name>:" then " REG:40 STACK:0 SHARED:0 LOCAL:0 ..." on the next line.
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == f"Function {name}:" and i + 1 < len(lines):
            match = _USAGE.search(lines[i + 1])
            if match:
                return int(match.group(1)), int(match.group(2))
    raise RuntimeError(f"no resource usage for {name} in cuobjdump output:\n{text}")


# A SASS line: "        /*1e00*/                   @P5 BRA 0x15d0 ;   /* 0x... */"
_SASS = re.compile(r"^\s*/\*([0-9a-f]+)\*/\s+(?:@!?\w+\s+)?([A-Z][\w.]*)([^;]*);")


def _sass(cubin: bytes) -> str:
    """`cuobjdump -sass` of `cubin`."""
    from triton import knobs

    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([knobs.nvidia.cuobjdump.path, "-sass", f.name],
                              capture_output=True, text=True, check=True).stdout


def _instructions(sass: str) -> tuple[list[tuple[int, str]], list[tuple[int, int]]]:
    """(address, opcode) of every instruction of a `cuobjdump -sass` listing, and its loops:
    (target, address) of every backward branch."""
    instructions, loops = [], []
    for line in sass.splitlines():
        match = _SASS.match(line)
        if not match:
            continue
        addr, opcode, operands = int(match.group(1), 16), match.group(2), match.group(3)
        instructions.append((addr, opcode))
        if opcode.startswith("BRA") and (target := re.search(r"0x([0-9a-f]+)\s*$", operands)):
            if int(target.group(1), 16) <= addr:
                loops.append((int(target.group(1), 16), addr))
    return instructions, loops


def loop_spills_in(sass: str) -> int:
    """The STL/LDL instructions of a `cuobjdump -sass` listing inside a loop."""
    return sum(n for opcode, n in loop_opcodes_in(sass).items() if opcode.startswith(("STL", "LDL")))


def loop_opcodes_in(sass: str) -> dict[str, int]:
    """Opcode -> count of the instructions of a `cuobjdump -sass` listing that lie inside a
    loop (between a backward branch and its target); nested loops count an instruction once."""
    instructions, loops = _instructions(sass)
    counts: dict[str, int] = {}
    for addr, opcode in instructions:
        if any(lo <= addr <= hi for lo, hi in loops):
            counts[opcode] = counts.get(opcode, 0) + 1
    return counts


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ with `env` set, and kernels.pdl's device check answering yes where it
    asks for PDL (the child's tensors are on the CPU)."""
    from kernels import pdl

    saved = {name: os.environ.get(name) for name in env}
    supported = pdl.supported
    os.environ.update(env)
    if env.get(pdl.PDL_ENV) == "1":
        pdl.supported = lambda device: True
    try:
        yield
    finally:
        pdl.supported = supported
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run_job(sm90: _Sm90, job: Job, inputs_cache: dict) -> JobResult:
    import torch

    import kernels
    from kernels.spec import Config

    try:
        spec = kernels.get(job.kernel)
        problem = spec.problem(job.shape, job.dtype, job.options)
        key = (job.kernel, spec.shape_key(problem))
        if key not in inputs_cache:
            inputs_cache.clear()  # jobs come grouped by problem: keep one problem's inputs
            inputs_cache[key] = spec.make_inputs(problem, torch.device("cpu"), torch.Generator().manual_seed(0))
        with sm90.recording() as launches, _environment(job.env):
            spec.launch(inputs_cache[key], Config.parse(job.config))
    except Exception as e:  # noqa: BLE001 - reported with its text, the test fails on it
        return JobResult(job, f"{type(e).__name__}: {e}")
    if not launches:
        return JobResult(job, "the launcher launched no Triton kernel")
    return JobResult(job, None, tuple(sm90.compile(launch) for launch in launches))


def main(argv: Sequence[str]) -> int:
    """Child entry: jobs (JSON list of Job) on stdin; results written to argv[0] as JSON."""
    out_path = Path(argv[0])
    reason = _unavailable_reason()
    if reason:
        out_path.write_text(json.dumps({"unavailable": reason}))
        return 0
    jobs = [Job(**j) for j in json.loads(sys.stdin.read())]
    sm90 = _Sm90()
    inputs_cache: dict = {}
    results = [_run_job(sm90, job, inputs_cache) for job in jobs]
    out_path.write_text(json.dumps({"results": [asdict(r) for r in results]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
