"""gelu: out = x * Phi(x), exact (erf, as BERT uses) or the tanh form, math in fp32.

approximate="none": 0.5 * x * (1 + erf(x / sqrt(2))), torch's F.gelu default.
approximate="tanh": 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))), computed as
x * sigmoid(2 * inner) (the same function: 0.5 * (1 + tanh(z)) = sigmoid(2z)), which needs
no tanh (absent from tl.math) and, with an overflow-free sigmoid, saturates to 0 and x.
x is [M, N] with any strides; programs tile [BLOCK_M, BLOCK_N] over a 2-D grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from . import constraints as C
from . import rowwise
from .accuracy import tolerance_for
from .device import DTYPE_NAMES, DeviceInfo, dtype_name
from .errors import InvalidProblem
from .launching import run
from .rowwise import stable_sigmoid
from .spec import Config, KernelSpec, Option, Problem


@triton.jit
def _gelu_kernel(
    x_ptr, out_ptr,
    M, N,
    stride_xm, stride_xn, stride_om, stride_on,
    APPROX_TANH: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rows < M)[:, None] & (cols < N)[None, :]
    rows64 = rows.to(tl.int64)[:, None]  # rows * stride may pass 2**31 elements
    x = tl.load(x_ptr + rows64 * stride_xm + cols[None, :] * stride_xn, mask=mask, other=0.0).to(tl.float32)
    if APPROX_TANH:
        inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)  # sqrt(2/pi) * (...)
        y = x * stable_sigmoid(2.0 * inner)
    else:
        y = 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))  # x / sqrt(2)
    tl.store(out_ptr + rows64 * stride_om + cols[None, :] * stride_on, y.to(out_ptr.dtype.element_ty), mask=mask)


@dataclass(frozen=True)
class GeluInputs:
    x: torch.Tensor  # [M, N], any strides
    approximate: str = "none"


def _problem_of(inputs: GeluInputs) -> Problem:
    x = inputs.x
    if x.dim() != 2:
        raise InvalidProblem(f"gelu needs x [M, N]; got {tuple(x.shape)}")
    return SPEC.problem({"M": x.shape[0], "N": x.shape[1]}, dtype_name(x.dtype),
                        {"approximate": inputs.approximate})


def _launch(inputs: GeluInputs, config: Config, out: torch.Tensor | None = None) -> torch.Tensor:
    x = inputs.x
    M, N = x.shape
    if out is None:
        out = torch.empty((M, N), device=x.device, dtype=x.dtype)
    rowwise.check_out("gelu", out, (M, N), x)
    grid = (triton.cdiv(M, config["BLOCK_M"]), triton.cdiv(N, config["BLOCK_N"]))
    _gelu_kernel[grid](
        x, out, M, N,
        x.stride(0), x.stride(1), out.stride(0), out.stride(1),
        APPROX_TANH=inputs.approximate == "tanh",
        **config.kernel_args(), **config.launch_options(),
    )
    return out


def _make_inputs(problem: Problem, device: torch.device, gen: torch.Generator) -> GeluInputs:
    M, N = problem["M"], problem["N"]
    # Spread 3: both tails (where erf and the sigmoid saturate) are exercised.
    x = (3.0 * torch.randn((M, N), device=device, generator=gen)).to(DTYPE_NAMES[problem.dtype])
    return GeluInputs(x, problem.opt("approximate"))


def _reference(inputs: GeluInputs) -> torch.Tensor:
    return F.gelu(inputs.x.float(), approximate=inputs.approximate)


def _baseline(inputs: GeluInputs) -> torch.Tensor:
    return F.gelu(inputs.x, approximate=inputs.approximate)


# Registers per tile element a thread holds (measured: see rowwise.tile_registers_fit).
_REGS_PER_ELEMENT = 2.0


def _heuristic(problem: Problem, device: DeviceInfo) -> Config:
    # As swiglu: 1024-wide column blocks on a GPU, rows packed up to a 4096 tile.
    max_block_n = 1024 if device.kind == "cuda" else 8192
    return rowwise.row_heuristic(SPEC, problem, device, max_block_n=max_block_n, column_blocks=True)


def _flops(problem: Problem) -> int:
    # erf form: x / sqrt2, erf (one), + 1, * x, * 0.5 = 5. tanh form: x^3 (2), * c, + x,
    # * 2 sqrt(2/pi), sigmoid (exp, add, divide), * x = 9. Transcendentals count as one.
    per_element = 9 if problem.opt("approximate") == "tanh" else 5
    return per_element * problem["M"] * problem["N"]


SPEC = KernelSpec(
    name="gelu",
    summary="out = gelu(x), exact erf form or tanh approximation; fp32 math",
    dims=("M", "N"),
    dtypes=("fp32", "fp16", "bf16"),
    options=(Option("approximate", ("none", "tanh"), "none", "none: erf GELU (BERT); tanh: the tanh approximation"),),
    params=(rowwise.BLOCK_M, rowwise.BLOCK_N, rowwise.NUM_WARPS),
    constraints=rowwise.row_constraints(_REGS_PER_ELEMENT),
    heuristic=_heuristic,
    make_inputs=_make_inputs,
    problem_of=_problem_of,
    reference=_reference,
    launch=_launch,
    baseline=_baseline,
    baseline_name="torch.nn.functional.gelu",
    flops=_flops,
    # x read, out written.
    bytes_moved=lambda p: 2 * p["M"] * p["N"] * C.ELEMENT_BYTES[p.dtype],
    tolerance=lambda p: tolerance_for(p.dtype),
    out_may_alias=("x",),
    example={"M": 13, "N": 1536},
)


def gelu(x: torch.Tensor, approximate: str = "none", *, config: Config | dict[str, int] | None = None,
         out: torch.Tensor | None = None) -> torch.Tensor:
    """GELU of x with the Triton kernel.

    Args: x [M, N] (any strides); approximate "none" (erf, torch's default and BERT's) or
        "tanh" (torch's approximate="tanh"). config: BLOCK_M/BLOCK_N/num_warps (missing
        ones from the heuristic); None asks the active config source. out: optional [M, N]
        buffer in x's dtype (may be x itself).
    Returns: out [M, N] in x's dtype.
    Raises: InvalidProblem (also for an unknown approximate), InvalidConfig, UnsupportedOnDevice.
    """
    return run(SPEC, GeluInputs(x, approximate), config, out=out)
