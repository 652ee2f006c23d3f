"""matmul: C = A @ B (+ bias), fp32 accumulation, grouped tile order, split-K for skinny M.

A is [M, K]; B is [K, N] with any strides, so an nn.Linear weight W [N, K] is passed as
W.t() without a copy (the input factory does exactly that: it is the layout the runtime uses).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from . import constraints as C
from .accuracy import tolerance_for
from .device import DTYPE_NAMES, DeviceInfo, dtype_name
from .errors import InvalidProblem
from .launching import needs_dot_upcast, run
from .spec import Config, KernelSpec, Option, Param, Problem
from .splitk import reduce_partials


@triton.jit
def _matmul_kernel(
    a_ptr, b_ptr, c_ptr, bias_ptr,
    M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cs, stride_cm, stride_cn,
    HAS_BIAS: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, SPLIT_K: tl.constexpr,
):
    # Grouped ordering: GROUP_M row-blocks walk the N tiles together, so the B tiles they
    # share stay in L2 (Triton tutorial 03).
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N

    # This split's share of the K tiles; a trailing split may own none and stores zeros.
    k_tiles = tl.cdiv(K, BLOCK_K)
    tiles_per_split = tl.cdiv(k_tiles, SPLIT_K)
    k_first = pid_k * tiles_per_split
    k_last = min(k_first + tiles_per_split, k_tiles)

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

    c_mask = mask_m[:, None] & mask_n[None, :]
    c_offs = offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    if SPLIT_K == 1:
        if HAS_BIAS:
            acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
        tl.store(c_ptr + c_offs, acc.to(c_ptr.dtype.element_ty), mask=c_mask)
    else:
        tl.store(c_ptr + pid_k * stride_cs + c_offs, acc, mask=c_mask)


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
    if out is None:
        out = torch.empty((M, N), device=a.device, dtype=a.dtype)
    split_k = config["SPLIT_K"]
    target = out if split_k == 1 else torch.empty((split_k, M, N), device=a.device, dtype=torch.float32)
    stride_cs = 0 if split_k == 1 else target.stride(0)
    stride_cm, stride_cn = target.stride(-2), target.stride(-1)
    grid = (triton.cdiv(M, config["BLOCK_M"]) * triton.cdiv(N, config["BLOCK_N"]), split_k)
    _matmul_kernel[grid](
        a, b, target, bias if bias is not None else a,
        M, N, K,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), stride_cs, stride_cm, stride_cn,
        HAS_BIAS=bias is not None,
        UPCAST=needs_dot_upcast(a.dtype),
        # fp32 inputs are multiplied in full fp32, as torch.matmul does by default (not TF32).
        INPUT_PRECISION="ieee" if a.dtype == torch.float32 else "tf32",
        **config.kernel_args(), **config.launch_options(),
    )
    if split_k > 1:
        reduce_partials(target, out, bias)
    return out


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
    # One A and one B tile per pipeline stage (Triton's software pipeline buffers them).
    es = C.ELEMENT_BYTES[problem.dtype]
    return config["num_stages"] * (config["BLOCK_M"] + config["BLOCK_N"]) * config["BLOCK_K"] * es


def _acc_elements(config: Config, problem: Problem) -> int:
    return config["BLOCK_M"] * config["BLOCK_N"]


def group_m_has_effect(config: Config, problem: Problem, device: DeviceInfo) -> str | None:
    """GROUP_M only reorders tiles across several M blocks; with one it is a duplicate config."""
    if config["GROUP_M"] < 1:
        return f"GROUP_M={config['GROUP_M']} must be >= 1"
    if config["GROUP_M"] > 1 and C.cdiv(problem["M"], config["BLOCK_M"]) == 1:
        return f"GROUP_M={config['GROUP_M']} has no effect with one M block (M={problem['M']}, BLOCK_M={config['BLOCK_M']})"
    return None


def heuristic_split_k(tiles: int, k_tiles: int, device: DeviceInfo) -> int:
    """Split K until the output tiles (times splits) cover the SMs once, at most 16 ways:
    skinny-M problems otherwise leave most of an H100's 132 SMs idle."""
    split = 1
    while tiles * split * 2 <= device.sm_count and split * 2 <= min(16, k_tiles):
        split *= 2
    return split


def _heuristic(problem: Problem, device: DeviceInfo) -> Config:
    M, N, K = problem["M"], problem["N"], problem["K"]
    if device.kind != "cuda":
        # The interpreter pays per program, not per FLOP: the fewest, largest tiles are fastest.
        cfg = Config(BLOCK_M=64, BLOCK_N=64, BLOCK_K=64, GROUP_M=1, SPLIT_K=1, num_warps=4, num_stages=2)
    elif M <= 64:
        cfg = Config(BLOCK_M=C.padded(M), BLOCK_N=64, BLOCK_K=128, GROUP_M=1, SPLIT_K=1, num_warps=4, num_stages=4)
    else:
        cfg = Config(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, SPLIT_K=1, num_warps=8, num_stages=3)
    cfg = cfg.replace(BLOCK_M=min(cfg["BLOCK_M"], C.padded(M)), BLOCK_N=min(cfg["BLOCK_N"], C.padded(N)),
                      BLOCK_K=min(cfg["BLOCK_K"], C.padded(K)))
    if C.cdiv(M, cfg["BLOCK_M"]) == 1:
        cfg = cfg.replace(GROUP_M=1)
    if device.kind == "cuda":
        tiles = C.cdiv(M, cfg["BLOCK_M"]) * C.cdiv(N, cfg["BLOCK_N"])
        cfg = cfg.replace(SPLIT_K=heuristic_split_k(tiles, C.cdiv(K, cfg["BLOCK_K"]), device))
    return C.shrink_to_fit(SPEC, cfg, problem, device, ("num_stages", "BLOCK_K", "BLOCK_N", "BLOCK_M", "SPLIT_K"))


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
    params=(
        Param("BLOCK_M", (16, 32, 64, 128, 256), "rows of C per program"),
        Param("BLOCK_N", (16, 32, 64, 128, 256), "columns of C per program"),
        Param("BLOCK_K", (16, 32, 64, 128), "K step of the inner loop"),
        Param("GROUP_M", (1, 4, 8, 16), "M blocks that share B tiles in L2"),
        Param("SPLIT_K", (1, 2, 4, 8, 16), "programs that share one tile's K range"),
        Param("num_warps", (2, 4, 8)),
        Param("num_stages", (2, 3, 4, 5)),
    ),
    constraints=(
        C.power_of_two("BLOCK_M", "BLOCK_N", "BLOCK_K", "num_warps"),
        C.block_fits("BLOCK_M", "M"),
        C.block_fits("BLOCK_N", "N"),
        C.block_fits("BLOCK_K", "K"),
        C.at_least_one_tile_per_split("SPLIT_K", "BLOCK_K", "K"),
        group_m_has_effect,
        C.shared_memory_fits(_smem),
        C.registers_fit(_acc_elements),
    ),
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
