"""Every registered kernel compiles for an H100 (sm_90) at LLM sizes, without a GPU.

For each kernel: its heuristic default on two LLM-sized bf16 problems, and 3 configs of a
covering sample (spec.sample_configs) on each, are launched through the spec's launcher
with launches recorded instead of run, and compiled with Triton's NVIDIA backend for
sm_90 (tests/sm90_compile.py says how). Asserted for every kernel launched: the compile
succeeds and its shared memory fits H100's opt-in limit, i.e. the spec's constraints
rejected over-limit configs before compiling; for the heuristic defaults also that no
register spills inside a loop, in every dtype the kernel runs (fp16 and fp32 defaults too).
A spill outside every loop costs a few stores and loads per program and is let through:
matmul's M=1 default (BLOCK_M=16, BLOCK_N=64, BLOCK_K=128, 4 warps, 4 stages, split K) has
one, measured with Triton 3.9: 64 registers, 8 bytes of stack, one STL before the K loop and
one LDL after it (M=16, not specialized to the constant 1, compiles to the same 64
registers without it).
One child process per kernel, so pytest-xdist spreads them. It runs under this environment's
Triton, and under the GPU image's (triton 3.6) in `make gpu-rehearsal`; with
INFERTUNE_REQUIRE_SM90=1 (CI) an environment that cannot compile offline fails instead of skipping.
Sampled configs use a fixed seed per kernel: the same configs each run, and Triton's
cache makes a rerun fast.
"""

from __future__ import annotations

import importlib
import os
import random
import subprocess
import zlib

import pytest

import kernels
from kernels import constraints as C
from kernels import gemm
from kernels.spec import Config, KernelSpec, Problem

from .fake_devices import H100
from .sm90_compile import Job, JobResult, Unavailable, compile_jobs

DTYPE = "bf16"
SAMPLED = 3
TIMEOUT_S = 600

# LLM-sized problems by the kernel's dimension names: Llama-3-8B-like sizes (hidden 4096,
# MLP 14336, 32 query heads and 8 KV heads of 128) and one unlike it per family (Gemma's
# head dim 256, MQA's single KV head). A kernel whose dimensions are not here fails
# test_every_kernel_has_llm_problems.
LLM_PROBLEMS: dict[tuple[str, ...], tuple[dict[str, int], ...]] = {
    ("M", "N", "K"): ({"M": 1, "N": 4096, "K": 4096}, {"M": 2048, "N": 4096, "K": 4096}),
    # rows of a decode batch at the hidden size; a prefill at the MLP size (norms loop over it)
    ("M", "N"): ({"M": 16, "N": 4096}, {"M": 2048, "N": 14336}),
    ("T", "H", "D"): ({"T": 16, "H": 32, "D": 128}, {"T": 2048, "H": 8, "D": 128}),
    ("T", "H", "HKV", "D"): ({"T": 1, "H": 32, "HKV": 8, "D": 128}, {"T": 2048, "H": 64, "HKV": 1, "D": 128}),
    ("B", "H", "HKV", "S", "D"): ({"B": 1, "H": 32, "HKV": 8, "S": 2048, "D": 128},
                                  {"B": 2, "H": 16, "HKV": 8, "S": 1024, "D": 256}),
    ("B", "H", "HKV", "L", "D"): ({"B": 8, "H": 32, "HKV": 8, "L": 4096, "D": 128},
                                  {"B": 4, "H": 64, "HKV": 1, "L": 8192, "D": 128}),
}


def llm_problems(spec: KernelSpec) -> list[Problem]:
    """The spec's LLM problems: the first with default options, the i-th with each
    option's i-th choice counting the default first (so both choices of a flag are seen)."""
    problems = []
    for i, shape in enumerate(LLM_PROBLEMS[spec.dims]):
        options = {}
        for option in spec.options:
            order = [option.default] + [c for c in option.choices if c != option.default]
            options[option.name] = order[i % len(order)]
        dtype = DTYPE if DTYPE in spec.dtypes else spec.dtypes[-1]
        problems.append(spec.problem(shape, dtype, options))
    return problems


def jobs_for(spec: KernelSpec) -> list[Job]:
    """Heuristic default and SAMPLED sampled configs of each LLM problem, grouped by problem."""
    jobs = []
    for i, problem in enumerate(llm_problems(spec)):
        assert spec.unsupported_reason(problem, H100) is None, spec.unsupported_reason(problem, H100)
        shape, options = problem.dims, dict(problem.options)
        jobs.append(Job(spec.name, shape, problem.dtype, options, str(spec.heuristic(problem, H100)), "heuristic"))
        sample = spec.sample_configs(problem, H100, SAMPLED, seed=zlib.crc32(spec.name.encode()) + i)
        for config in sample[:SAMPLED]:
            jobs.append(Job(spec.name, shape, problem.dtype, options, str(config), "sampled"))
    return jobs


def problems_found(result: JobResult) -> list[str]:
    """What is wrong with one job's compiled launches (empty: nothing)."""
    job = result.job
    where = f"{job.label} {job.key}"
    if result.error:
        return [f"{where}: launcher failed: {result.error}"]
    found = []
    for launch in result.launches:
        if launch.error:
            found.append(f"{where}: {launch.describe()} does not compile for sm_90: {launch.error}")
        elif launch.shared > H100.smem_per_block:
            found.append(f"{where}: {launch.describe()} needs {launch.shared} bytes of shared memory; "
                         f"{H100.name} allows {H100.smem_per_block} (the constraints let it through)")
        elif job.label == "heuristic" and launch.loop_spills:
            found.append(f"{where}: {launch.describe()} spills registers in a loop: {launch.loop_spills} "
                         f"spill loads/stores, {launch.stack} bytes of stack, {launch.registers} registers")
    return found


def test_every_kernel_has_llm_problems():
    missing = [f"{s.name} ({'x'.join(s.dims)})" for s in kernels.REGISTRY if s.dims not in LLM_PROBLEMS]
    assert not missing, f"kernels whose dimensions have no LLM_PROBLEMS entry: {missing}"


def compiled(jobs: list[Job], what: str) -> list[JobResult]:
    """compile_jobs, or skip where this Triton cannot compile for sm_90 offline (a failure
    under INFERTUNE_REQUIRE_SM90=1, as on CI), or fail past TIMEOUT_S."""
    try:
        return compile_jobs(jobs, timeout=TIMEOUT_S)
    except Unavailable as e:
        if os.environ.get("INFERTUNE_REQUIRE_SM90", "") not in ("", "0"):
            pytest.fail(f"INFERTUNE_REQUIRE_SM90=1 but cannot compile for sm_90 offline here: {e}", pytrace=False)
        pytest.skip(f"cannot compile for sm_90 offline here: {e}")
    except subprocess.TimeoutExpired:
        pytest.fail(f"compiling {len(jobs)} {what} launches for sm_90 took over {TIMEOUT_S} s")


@pytest.mark.parametrize("spec", kernels.REGISTRY, ids=lambda s: s.name)
def test_compiles_for_h100(spec: KernelSpec):
    results = compiled(jobs_for(spec), spec.name)
    found = [line for result in results for line in problems_found(result)]
    assert not found, "\n".join(found)


def other_dtype_jobs(spec: KernelSpec) -> list[Job]:
    """The heuristic default of each LLM problem in every dtype but bf16 (which jobs_for covers)."""
    jobs = []
    for problem in llm_problems(spec):
        for dtype in spec.dtypes:
            if dtype == DTYPE:
                continue
            p = spec.problem(problem.dims, dtype, dict(problem.options))
            jobs.append(Job(spec.name, p.dims, dtype, dict(p.options), str(spec.heuristic(p, H100)), "heuristic"))
    return jobs


@pytest.mark.parametrize("spec", [s for s in kernels.REGISTRY if set(s.dtypes) - {DTYPE}], ids=lambda s: s.name)
def test_defaults_of_every_dtype_do_not_spill(spec: KernelSpec):
    """fp16 and fp32 defaults too: fp32 dots run on FMAs, whose operands take far more
    registers than tensor-core ones; the bf16 tiles spilled thousands of registers in
    attention's key loop, attention_decode's with a 64-query group, and matmul_w8a16's K
    loop at M = 2048; matmul's at M = 2048 under triton 3.6 only. The rehearsal runs this
    under 3.6 too, and the two versions differ (kernels/attention.py FP32_GPU_TILE)."""
    results = compiled(other_dtype_jobs(spec), f"{spec.name} fp16/fp32 default")
    found = [line for result in results for line in problems_found(result)]
    assert not found, "\n".join(found)


# -- matmuls: the shared-memory estimates ----------------------------------------------
# The constraints reject a config whose estimate exceeds the device's limit. An estimate
# under what Triton allocates lets through a config that fails at launch; one far over it
# hides configs that fit. Before gemm.shared_memory, the weight-only estimates ran 1.6 to 4x
# over their skinny tiles (the M = 1 int4 default: 64 KiB estimated, 24 KiB compiled) and
# under one int8 tile (65,536 bytes compiled against 53,248), and matmul's under its
# BLOCK_K 16 wgmma tiles (131,072 against 24,576: the epilogue's fp32 layout conversion).
SMEM_CASES = (("matmul", "bf16", None), ("matmul", "fp32", None), ("matmul_w8a16", "bf16", None),
              ("matmul_w8a16", "fp32", None), ("matmul_w4a16", "bf16", "int4-g128"),
              ("matmul_w4a16", "fp32", "int4-g128"), ("matmul_w4a16", "bf16", "int4-g32-asym"))
SMEM_SHAPE = {"M": 2048, "N": 4096, "K": 4096}
# A skinny int4 tile the old estimate rejected (249,856 bytes): 82,944 compiled (triton 3.9).
WIDE_INT4 = Config(BLOCK_M=16, BLOCK_N=256, BLOCK_K=128, GROUP_M=1, SPLIT_K=1, num_warps=4, num_stages=5)


def _estimate(name: str):
    return importlib.import_module(f"kernels.{name}")._smem


def smem_jobs(name: str, dtype: str, quant: str | None) -> list[Job]:
    """In each MMA regime (wgmma, mma.sync or FMA) the 3 valid configs with the largest
    estimates (the nearest the limit) and the 2 with the largest output tile for the least
    pipeline; 2 more at random; at 2048 x 4096 x 4096."""
    spec = kernels.get(name)
    problem = spec.problem(SMEM_SHAPE, dtype, {"quant": quant} if quant else {})
    estimate = _estimate(name)
    valid = [c for c in spec.valid_configs(problem, H100) if c["GROUP_M"] == 1 and c["SPLIT_K"] == 1]
    chosen: list[Config] = []
    for wgmma in (True, False):
        regime = [c for c in valid if gemm.uses_wgmma(c, problem) == wgmma]
        chosen += sorted(regime, key=lambda c: (-estimate(c, problem), str(c)))[:3]
        # ...and the 2 whose output tile is largest beside their K pipeline (the epilogue's share)
        epilogue = sorted((c for c in regime if c not in chosen),
                          key=lambda c: (-c["BLOCK_M"] * c["BLOCK_N"], c["BLOCK_K"] * c["num_stages"], str(c)))
        chosen += epilogue[:2]
    rest = [c for c in valid if c not in chosen]
    chosen += random.Random(zlib.crc32(f"{name}{dtype}{quant}".encode())).sample(rest, 2)
    return [Job(name, SMEM_SHAPE, dtype, dict(problem.options), str(c), "smem") for c in chosen]


def smem_problems(result: JobResult) -> list[str]:
    """Where the main launch allocates more shared memory than its estimate, or than an H100 has."""
    job = result.job
    if result.error:
        return [f"{job.key}: launcher failed: {result.error}"]
    main = result.launches[0]
    if main.error:
        return [f"{job.key}: does not compile for sm_90: {main.error}"]
    spec = kernels.get(job.kernel)
    estimate = _estimate(job.kernel)(Config.parse(job.config), spec.problem(job.shape, job.dtype, job.options))
    if main.shared > estimate or main.shared > H100.smem_per_block:
        return [f"{job.key}: {main.shared} bytes of shared memory, estimated {estimate}"]
    return []


@pytest.mark.parametrize("name,dtype,quant", SMEM_CASES, ids=lambda v: str(v))
def test_matmul_shared_memory_estimates_bound_the_compile(name: str, dtype: str, quant: str | None):
    results = compiled(smem_jobs(name, dtype, quant), f"{name} {dtype} smem")
    found = [line for result in results for line in smem_problems(result)]
    assert not found, "\n".join(found)


def test_wide_skinny_int4_tiles_are_in_the_search_space():
    spec = kernels.get("matmul_w4a16")
    shape = {"M": 1, "N": 4096, "K": 4096}
    problem = spec.problem(shape, DTYPE, {"quant": "int4-g128"})
    assert spec.reject_reason(WIDE_INT4, problem, H100) is None
    (result,) = compiled([Job(spec.name, shape, DTYPE, dict(problem.options), str(WIDE_INT4), "smem")], "wide int4")
    assert not smem_problems(result)
    assert result.launches[0].shared > 64 * 1024  # 5 stages of a wide tile: the estimate is not vacuous


# -- programmatic dependent launch ----------------------------------------------------
# The kernels a decode step launches, at Llama-3-8B's decode sizes (kernels/pdl.py).
DECODE_PATH = (
    ("matmul", {"M": 1, "N": 4096, "K": 4096}, {}),
    ("matmul_w8a16", {"M": 1, "N": 4096, "K": 4096}, {}),
    ("matmul_w4a16", {"M": 1, "N": 4096, "K": 4096}, {"quant": "int4-g128"}),
    ("rmsnorm", {"M": 1, "N": 4096}, {}),
    ("add_rmsnorm", {"M": 1, "N": 4096}, {}),
    ("swiglu", {"M": 1, "N": 14336}, {}),
    ("rope_kv", {"T": 1, "H": 32, "HKV": 8, "D": 128}, {}),
    ("attention_decode", {"B": 1, "H": 32, "HKV": 8, "L": 4096, "D": 128}, {}),
)


def test_decode_path_kernels_wait_for_and_release_the_next_with_pdl():
    """With INFERTUNE_PDL=1 every launch of the decode path (split-K's second pass included)
    compiles with griddepcontrol.wait and .launch_dependents in its PTX; without, neither."""
    jobs = []
    for name, shape, options in DECODE_PATH:
        spec = kernels.get(name)
        problem = spec.problem(shape, DTYPE, options)
        config = str(spec.heuristic(problem, H100))
        for env in ({"INFERTUNE_PDL": "1"}, {"INFERTUNE_PDL": "0"}):
            jobs.append(Job(name, shape, DTYPE, dict(problem.options), config, "pdl", env))
    matmul = kernels.get("matmul")
    split = matmul.problem({"M": 1, "N": 4096, "K": 4096}, DTYPE, {})
    assert matmul.heuristic(split, H100)["SPLIT_K"] > 1
    jobs.append(Job("matmul", dict(split.dims), DTYPE, dict(split.options), str(matmul.heuristic(split, H100)), "pdl",
                    {"INFERTUNE_PDL": "1", "INFERTUNE_SPLITK_REDUCE": "kernel"}))
    found = []
    for result in compiled(jobs, "PDL"):
        want = result.job.env["INFERTUNE_PDL"] == "1"
        if result.error:
            found.append(f"{result.job.key} {result.job.env}: launcher failed: {result.error}")
            continue
        found += [f"{result.job.key} {result.job.env}: {launch.describe()} "
                  + (launch.error or f"griddepcontrol {'missing' if want else 'present'}")
                  for launch in result.launches if launch.error or launch.pdl != want]
        if "SPLITK_REDUCE" in str(result.job.env) and len(result.launches) != 2:
            found.append(f"{result.job.key}: {len(result.launches)} launches, expected the matmul and its second pass")
    assert not found, "\n".join(found)


# -- weight-only matmuls: what one K step costs ----------------------------------------
# At decode sizes (M <= 16) a weight-only matmul is a weight stream, and its K loop is the
# whole cost. The first H200 run (bench/results/2026-11-28-nvidia-h200) measured int4 at
# 0.42x of bf16 cuBLAS: its loop loaded one byte per weight (LDG.E.U8, for each nibble) and
# converted each with I2F, which sm_90 issues at a quarter rate. Checked here for every
# dtype's default and for sampled configs: in the K loop, no sub-word global load, no I2F,
# and no spill.
WEIGHT_ONLY = ("matmul_w8a16", "matmul_w4a16")
NARROW_LOADS = ("LDG.E.U8", "LDG.E.S8", "LDG.E.U16", "LDG.E.S16")
DECODE_SHAPES = ({"M": 1, "N": 4096, "K": 4096}, {"M": 16, "N": 14336, "K": 4096})


def weight_only_jobs(spec: KernelSpec) -> list[Job]:
    """At decode shapes: the defaults of every quant option (bf16) and of every dtype (default
    option), and SAMPLED sampled configs (bf16)."""
    quant = next((o for o in spec.options if o.name == "quant"), None)
    schemes = quant.choices if quant else (None,)
    jobs = []
    for i, shape in enumerate(DECODE_SHAPES):
        for dtype, scheme in [(DTYPE, s) for s in schemes] + [(d, schemes[0]) for d in spec.dtypes if d != DTYPE]:
            problem = spec.problem(shape, dtype, {"quant": scheme} if scheme else {})
            jobs.append(Job(spec.name, shape, dtype, dict(problem.options), str(spec.heuristic(problem, H100)),
                            "heuristic"))
        problem = spec.problem(shape, DTYPE, {})
        sample = spec.sample_configs(problem, H100, SAMPLED, seed=zlib.crc32(spec.name.encode()) + 7 + i)
        jobs += [Job(spec.name, shape, DTYPE, dict(problem.options), str(c), "sampled") for c in sample[:SAMPLED]]
    return jobs


def k_loop_problems(result: JobResult) -> list[str]:
    """What one job's main kernel does per K step that a weight stream cannot afford."""
    job = result.job
    if result.error:
        return [f"{job.key}: launcher failed: {result.error}"]
    main = result.launches[0]  # the matmul; a split-K reduce may follow
    if main.error:
        return [f"{job.key}: does not compile for sm_90: {main.error}"]
    ops = main.loop_opcodes
    found = []
    narrow = {op: n for op, n in ops.items() if op.startswith(NARROW_LOADS)}
    config = Config.parse(job.config)
    weight_bytes = config["BLOCK_K"] * config["BLOCK_N"] // (2 if job.kernel == "matmul_w4a16" else 1)
    x_bytes = config["BLOCK_M"] * config["BLOCK_K"] * C.ELEMENT_BYTES[job.dtype]
    # A smaller tile has < 4 bytes a thread: 16 x 16 bf16 x tiles over 8 warps load 2 bytes each.
    if narrow and min(weight_bytes, x_bytes) >= 4 * 32 * config["num_warps"]:
        found.append(f"sub-word global loads {narrow}")
    converts = {op: n for op, n in ops.items() if op.startswith("I2F")}
    if converts:
        found.append(f"int -> float conversions {converts}")
    if job.label == "heuristic" and main.loop_spills:
        found.append(f"{main.loop_spills} spill loads/stores")
    if not any(op.startswith(("HMMA", "HGMMA", "FFMA")) for op in ops):
        found.append("no multiply-add in any loop (is the K loop still a loop?)")
    return [f"{job.label} {job.key}: {main.describe()} K loop has {', '.join(found)}"] if found else []


@pytest.mark.parametrize("name", WEIGHT_ONLY)
def test_weight_only_k_loop_streams_weights(name: str):
    results = compiled(weight_only_jobs(kernels.get(name)), name)
    found = [line for result in results for line in k_loop_problems(result)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_int4_k_step_unpacks_with_the_ptx(dtype: str):
    """matmul_w4a16 at decode: the nibbles unpack in kernels/matmul_w4a16.nibble_asm. Triton's
    own lowering of the same bit trick took 347 instructions per K step, 128 of them byte
    permutes (2 per weight; triton 3.9, default config, M = 1, 4096 x 4096); with the PTX,
    237 and 48 (16 of them the PTX's, 32 the even/odd split of x). Fails if the launcher
    stops choosing the PTX on a GPU, or the unpacking grows back."""
    spec = kernels.get("matmul_w4a16")
    shape = {"M": 1, "N": 4096, "K": 4096}
    problem = spec.problem(shape, dtype, {"quant": "int4-g128"})
    job = Job(spec.name, shape, dtype, dict(problem.options), str(spec.heuristic(problem, H100)), "heuristic")
    (result,) = compiled([job], "int4 PTX")
    assert not result.error, result.error
    main = result.launches[0]
    assert not main.error, main.error
    assert "ASM_DEQUANT=True" in main.describe()
    ops = main.loop_opcodes
    assert sum(ops.values()) <= 260 and ops.get("PRMT", 0) <= 64, f"{main.describe()}: {ops}"


def test_sass_census_prints_the_k_loop(capsys):
    """The development tool over the same compile: one problem's loop opcodes, and bad input
    in one line with exit 2."""
    from . import sass_census

    assert sass_census.main(["nope", "1x2"]) == 2
    assert sass_census.main(["matmul", "1x2"]) == 2
    assert sass_census.main(["matmul", "1x64x64", "--config", "BLOCK_N=512"]) == 2  # not a candidate
    assert len(capsys.readouterr().err.strip().splitlines()) == 3
    code = sass_census.main(["matmul_w8a16", "1x4096x4096", "--top", "40"])
    out = capsys.readouterr()
    if code == 2 and "cannot compile for sm_90" in out.err:
        pytest.skip(out.err.strip())
    assert code == 0
    assert "_w8a16_kernel[" in out.out and "instructions inside loops" in out.out
    assert "HMMA" in out.out and "I2F" not in out.out
    # a partial config: the rest from the heuristic
    assert sass_census.main(["matmul_w8a16", "1x4096x4096", "--config", "BLOCK_N=32"]) == 0
    assert "BLOCK_N=32," in capsys.readouterr().out
