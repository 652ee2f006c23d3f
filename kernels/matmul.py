"""matmul: C = A @ B (+ bias), fp32 accumulation, grouped tile order, split-K for skinny M.

A is [M, K]; B is [K, N] with any strides, so an nn.Linear weight W [N, K] is passed as
W.t() without a copy (the input factory does exactly that: it is the layout the runtime uses).

TMA=1 loads the A and B tiles through tensor descriptors: on sm_90 the tensor memory
accelerator copies each tile into shared memory (`UTMALDG`, completing on an mbarrier)
instead of every thread computing addresses and issuing 16-byte async copies (`LDGSTS`);
out-of-bounds rows and the K tail read as zeros. It needs 16-byte aligned rows (K and N
multiples of 16 bytes), an sm_90+ GPU or the interpreter, which emulates descriptors. A
tensor a descriptor cannot describe (a view with a last-dimension stride, an unaligned
base) runs the TMA=0 path with the same tiles. The default is TMA=0 until a GPU run
measures it (the GPU kit's kernels step benches both at M = 128 and 2048).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from . import constraints as C
from . import gemm, pdl
from .accuracy import tolerance_for
from .device import DTYPE_NAMES, DeviceInfo, dtype_name
from .errors import InvalidProblem
from .launching import needs_dot_upcast, run
from .quant_io import output_buffer
from .spec import Config, KernelSpec, Option, Param, Problem


@triton.jit
def _matmul_kernel(
    a_ptr, b_ptr, c_ptr, bias_ptr,
    M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, part_ptr, lock_ptr, stride_cm, stride_cn, stride_bias,
    HAS_BIAS: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, SPLIT_K: tl.constexpr, SERIAL: tl.constexpr,
    USE_GDC: tl.constexpr,
):
    pdl.wait_for_producer(USE_GDC)  # nothing is read before the previous kernel completes
    pid_m, pid_n = gemm.grouped_tile(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    pid_k = tl.program_id(1)
    k_first, k_last = gemm.split_k_tiles(pid_k, K, BLOCK_K, SPLIT_K)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kt in range(k_first, k_last):
        k = kt * BLOCK_K + offs_k
        a = tl.load(a_ptr + offs_m[:, None] * stride_am + k[None, :] * stride_ak,
                    mask=mask_m[:, None] & (k[None, :] < K), other=0.0)
        b = tl.load(b_ptr + k[:, None] * stride_bk + offs_n[None, :] * stride_bn,
                    mask=(k[:, None] < K) & mask_n[None, :], other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)

    pdl.release_dependents(USE_GDC)  # the next kernel may start while this one's epilogue runs
    gemm.store_tile(acc, c_ptr, part_ptr, lock_ptr, bias_ptr, pid_k, offs_m, offs_n, M, N, stride_cm, stride_cn,
                    stride_bias, HAS_BIAS, SPLIT_K, SERIAL)


@triton.jit
def _matmul_tma_kernel(
    a_desc, b_desc, c_ptr, bias_ptr,
    M, N, K,
    part_ptr, lock_ptr, stride_cm, stride_cn, stride_bias,
    B_KMAJOR: tl.constexpr, HAS_BIAS: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, SPLIT_K: tl.constexpr, SERIAL: tl.constexpr,
    USE_GDC: tl.constexpr,
):
    """The same tiles, loaded through tensor descriptors. B_KMAJOR: b_desc describes the
    weight W [N, K] (B = W.t()), whose [BLOCK_N, BLOCK_K] tile is transposed for the dot;
    else it describes B [K, N]."""
    pdl.wait_for_producer(USE_GDC)  # nothing is read before the previous kernel completes
    pid_m, pid_n = gemm.grouped_tile(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    pid_k = tl.program_id(1)
    k_first, k_last = gemm.split_k_tiles(pid_k, K, BLOCK_K, SPLIT_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kt in range(k_first, k_last):
        a = a_desc.load([pid_m * BLOCK_M, kt * BLOCK_K])
        if B_KMAJOR:
            b = b_desc.load([pid_n * BLOCK_N, kt * BLOCK_K]).T
        else:
            b = b_desc.load([kt * BLOCK_K, pid_n * BLOCK_N])
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    pdl.release_dependents(USE_GDC)  # the next kernel may start while this one's epilogue runs
    gemm.store_tile(acc, c_ptr, part_ptr, lock_ptr, bias_ptr, pid_k, offs_m, offs_n, M, N, stride_cm, stride_cn,
                    stride_bias, HAS_BIAS, SPLIT_K, SERIAL)


def _describable(t: torch.Tensor) -> bool:
    """A 2-D tensor a TMA descriptor can describe: last dimension contiguous, 16-byte aligned
    base and row stride."""
    es = t.element_size()
    return t.stride(1) == 1 and t.data_ptr() % 16 == 0 and (t.stride(0) * es) % 16 == 0 and t.stride(0) >= 1


def _tma_descriptors(a: torch.Tensor, b: torch.Tensor, config: Config) -> tuple | None:
    """(a_desc, b_desc, b_kmajor) for the TMA kernel, or None when a or b cannot be described."""
    bm, bn, bk = config["BLOCK_M"], config["BLOCK_N"], config["BLOCK_K"]
    if not _describable(a):
        return None
    if b.stride(0) == 1 and _describable(b.t()):  # an nn.Linear weight passed as W.t()
        b_desc, b_kmajor = TensorDescriptor.from_tensor(b.t(), [bn, bk]), True
    elif _describable(b):
        b_desc, b_kmajor = TensorDescriptor.from_tensor(b, [bk, bn]), False
    else:
        return None
    return TensorDescriptor.from_tensor(a, [bm, bk]), b_desc, b_kmajor


def tma_supported(config: Config, problem: Problem, device: DeviceInfo) -> str | None:
    """TMA=1 needs an sm_90+ GPU (or the interpreter, which emulates descriptors) and rows of
    whole 16-byte units in A [M, K] and in B either way round (K and N)."""
    if not config["TMA"]:
        return None
    if not device.interpreter and (device.kind != "cuda" or (device.capability or (0, 0)) < (9, 0)):
        return f"TMA=1 needs an sm_90+ GPU (the tensor memory accelerator); {device.label} has none"
    per_16_bytes = 16 // C.ELEMENT_BYTES[problem.dtype]
    if problem["K"] % per_16_bytes or problem["N"] % per_16_bytes:
        return (f"TMA=1 needs K and N multiples of {per_16_bytes} ({problem.dtype}: 16-byte rows); "
                f"got K={problem['K']}, N={problem['N']}")
    return None


@dataclass(frozen=True)
class MatmulInputs:
    a: torch.Tensor  # [M, K]
    b: torch.Tensor  # [K, N], any strides
    bias: torch.Tensor | None = None  # [N]


def _problem_of(inputs: MatmulInputs) -> Problem:
    a, b = inputs.a, inputs.b
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise InvalidProblem(f"matmul needs a [M, K] and b [K, N]; got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise InvalidProblem(f"matmul needs a and b of one dtype; got {a.dtype} and {b.dtype}")
    if inputs.bias is not None and tuple(inputs.bias.shape) != (b.shape[1],):
        raise InvalidProblem(f"matmul bias must be [N]={b.shape[1]}; got {tuple(inputs.bias.shape)}")
    return SPEC.problem({"M": a.shape[0], "N": b.shape[1], "K": a.shape[1]}, dtype_name(a.dtype),
                        {"bias": inputs.bias is not None})


def _launch(inputs: MatmulInputs, config: Config, out: torch.Tensor | None = None) -> torch.Tensor:
    a, b, bias = inputs.a, inputs.b, inputs.bias
    M, K = a.shape
    N = b.shape[1]
    out = output_buffer(out, (M, N), a.dtype, a.device)
    split = gemm.split_k_buffers(out, M, N, config)
    common = dict(
        HAS_BIAS=bias is not None, SERIAL=split.serial,
        UPCAST=needs_dot_upcast(a.dtype),
        # fp32 inputs are multiplied in full fp32, as torch.matmul does by default (not TF32).
        INPUT_PRECISION="ieee" if a.dtype == torch.float32 else "tf32",
        **{k: v for k, v in config.kernel_args().items() if k != "TMA"}, **config.launch_options(),
        **pdl.launch_kwargs(a),
    )
    descriptors = _tma_descriptors(a, b, config) if config["TMA"] else None
    if descriptors is not None:
        a_desc, b_desc, b_kmajor = descriptors
        _matmul_tma_kernel[gemm.grid(M, N, config)](
            a_desc, b_desc, out, bias if bias is not None else a,
            M, N, K, *split.args(out), out.stride(0), out.stride(1), gemm.bias_stride(bias),
            B_KMAJOR=b_kmajor, **common,
        )
        return gemm.finish(split, out, bias)
    _matmul_kernel[gemm.grid(M, N, config)](
        a, b, out, bias if bias is not None else a,
        M, N, K,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), *split.args(out), out.stride(0), out.stride(1),
        gemm.bias_stride(bias), **common,
    )
    return gemm.finish(split, out, bias)


def _make_inputs(problem: Problem, device: torch.device, gen: torch.Generator) -> MatmulInputs:
    M, N, K = problem["M"], problem["N"], problem["K"]
    dtype = DTYPE_NAMES[problem.dtype]
    a = torch.randn((M, K), device=device, dtype=dtype, generator=gen)
    w = torch.randn((N, K), device=device, dtype=dtype, generator=gen)  # nn.Linear layout
    bias = torch.randn((N,), device=device, dtype=dtype, generator=gen) if problem.opt("bias") == "1" else None
    return MatmulInputs(a, w.t(), bias)


def _reference(inputs: MatmulInputs) -> torch.Tensor:
    out = inputs.a.float() @ inputs.b.float()
    return out + inputs.bias.float() if inputs.bias is not None else out


def _baseline(inputs: MatmulInputs) -> torch.Tensor:
    if inputs.bias is not None:
        return torch.addmm(inputs.bias, inputs.a, inputs.b)
    return torch.matmul(inputs.a, inputs.b)


def _smem(config: Config, problem: Problem) -> int:
    # With TMA, an 8-byte mbarrier per stage and load too (sm_90 compile, 128x128x64,
    # 3 stages: 98,328 bytes against 98,304 for the tiles).
    return gemm.shared_memory(config, problem) + (16 * config["num_stages"] if config["TMA"] else 0)


def _heuristic(problem: Problem, device: DeviceInfo) -> Config:
    # fp32 dots run on FMAs: the 128 x 128 x 64 large-M tile (8 warps) spilled in the K loop
    # for sm_90 under triton 3.6 (255 registers; 254 and no spill under 3.9); BLOCK_K 32
    # spills under neither (238 / 252).
    large_k = 32 if device.kind == "cuda" and problem.dtype == "fp32" else 64
    return gemm.heuristic(SPEC, problem, device, smem=_smem, large_block_k=large_k, extra={"TMA": 0})


def _bytes(problem: Problem) -> int:
    M, N, K = problem["M"], problem["N"], problem["K"]
    es = C.ELEMENT_BYTES[problem.dtype]
    return (M * K + K * N + M * N + (N if problem.opt("bias") == "1" else 0)) * es


SPEC = KernelSpec(
    name="matmul",
    summary="C = A @ B (+ bias); fp32 accumulation, grouped tile order, split-K",
    dims=("M", "N", "K"),
    dtypes=("fp32", "fp16", "bf16"),
    options=(Option("bias", ("0", "1"), "0", "add a bias vector of length N"),),
    params=(*gemm.tile_params(), Param("TMA", (0, 1), "load tiles through TMA tensor descriptors (sm_90+)")),
    constraints=gemm.tile_constraints(_smem, gemm.accumulator, tma_supported),
    heuristic=_heuristic,
    make_inputs=_make_inputs,
    problem_of=_problem_of,
    reference=_reference,
    launch=_launch,
    baseline=_baseline,
    baseline_name="torch.matmul",
    flops=lambda p: 2 * p["M"] * p["N"] * p["K"],
    bytes_moved=_bytes,
    tolerance=lambda p: tolerance_for(p.dtype),
    example={"M": 13, "N": 257, "K": 129},
)


def matmul(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None, *,
           config: Config | dict[str, int] | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """C = a @ b (+ bias) with the Triton kernel.

    Args: a [M, K]; b [K, N] (any strides: pass an nn.Linear weight as w.t()); bias [N].
        config: tile config (missing parameters come from the heuristic); None asks the
        active config source (the tuned database once wired in, else the heuristic).
    Returns: C [M, N] in a's dtype.
    Raises: InvalidProblem, InvalidConfig, UnsupportedOnDevice.
    """
    return run(SPEC, MatmulInputs(a, b, bias), config, out=out)
