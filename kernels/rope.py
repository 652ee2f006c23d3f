"""rope: rotary position embedding, Llama / Hugging Face "rotate_half" convention.

Element i of a head is paired with element i + D/2 and the pair is rotated by the angle
pos * base^(-2i/D):  out_i = x_i cos - x_{i+D/2} sin,  out_{i+D/2} = x_{i+D/2} cos + x_i sin.
x is [T, H, D] with any strides (the runtime passes views of [B, S, H, D] projections);
positions [T] are integers; cos and sin come from `rope_cache` (fp32 [P, D/2]). A program
rotates BLOCK_T tokens x BLOCK_H heads, loading each token's cos/sin row once for all
its heads; the output is a new [T, H, D] tensor (or the caller's `out`, which may be x).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from . import constraints as C
from . import rowwise
from .accuracy import tolerance_for
from .device import DTYPE_NAMES, DeviceInfo, dtype_name
from .errors import InvalidProblem
from .launching import run
from .spec import Config, KernelSpec, Param, Problem

# A head is one tile along D (real models use 64 to 256).
MAX_HEAD_DIM = 1024


@triton.jit
def _rope_kernel(
    x_ptr, pos_ptr, cos_ptr, sin_ptr, out_ptr,
    T, H, HALF,
    stride_xt, stride_xh, stride_xd, stride_ot, stride_oh, stride_od,
    stride_cp, stride_cd, stride_sp, stride_sd, stride_pos,
    BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
):
    toks = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    heads = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    dims = tl.arange(0, BLOCK_D)
    mask_t = toks < T
    mask_d = dims < HALF

    # cos/sin rows of these tokens: [BLOCK_T, BLOCK_D], shared by every head.
    pos = tl.load(pos_ptr + toks * stride_pos, mask=mask_t, other=0).to(tl.int64)
    cs_mask = mask_t[:, None] & mask_d[None, :]
    cos = tl.load(cos_ptr + pos[:, None] * stride_cp + dims[None, :] * stride_cd, mask=cs_mask, other=0.0)
    sin = tl.load(sin_ptr + pos[:, None] * stride_sp + dims[None, :] * stride_sd, mask=cs_mask, other=0.0)
    cos = cos.to(tl.float32)[:, None, :]
    sin = sin.to(tl.float32)[:, None, :]

    toks64 = toks.to(tl.int64)[:, None, None]  # toks * stride may pass 2**31 elements
    mask = mask_t[:, None, None] & (heads < H)[None, :, None] & mask_d[None, None, :]
    x_lo = x_ptr + toks64 * stride_xt + heads[None, :, None] * stride_xh + dims[None, None, :] * stride_xd
    o_lo = out_ptr + toks64 * stride_ot + heads[None, :, None] * stride_oh + dims[None, None, :] * stride_od
    x1 = tl.load(x_lo, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x_lo + HALF * stride_xd, mask=mask, other=0.0).to(tl.float32)
    # Both halves are loaded before either is stored, so out may be x (in place).
    o1 = x1 * cos - x2 * sin
    o2 = x2 * cos + x1 * sin
    tl.store(o_lo, o1.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(o_lo + HALF * stride_od, o2.to(out_ptr.dtype.element_ty), mask=mask)


def rope_cache(max_positions: int, head_dim: int, base: float = 10000.0,
               device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The cos and sin tables of rotary embedding for positions 0..max_positions-1.

    Angles pos * base^(-2i/D) are formed in fp64 and rounded once to fp32, so a large
    position keeps its accuracy (Hugging Face forms them in fp32: up to 2e-4 off by pos 4096).
    Args: max_positions (P >= 1); head_dim (D, even); base (theta, e.g. 500000 for Llama 3
        without its frequency scaling); device for the tables (default CPU).
    Returns: (cos, sin), each fp32 [P, D/2].
    Raises: InvalidProblem for a bad size or base.
    """
    if max_positions < 1 or head_dim < 2 or head_dim % 2 or not base > 0:
        raise InvalidProblem(f"rope_cache needs max_positions >= 1, an even head_dim >= 2 and base > 0; "
                             f"got {max_positions}, {head_dim}, {base}")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # [D/2]
    angles = torch.outer(torch.arange(max_positions, dtype=torch.float64), inv_freq)  # [P, D/2]
    return angles.cos().float().to(device), angles.sin().float().to(device)


@dataclass(frozen=True)
class RopeInputs:
    x: torch.Tensor  # [T, H, D], any strides
    positions: torch.Tensor  # [T], int32 or int64, each in [0, P)
    cos: torch.Tensor  # [P, D/2] fp32
    sin: torch.Tensor  # [P, D/2] fp32


def _problem_of(inputs: RopeInputs) -> Problem:
    x, pos, cos, sin = inputs.x, inputs.positions, inputs.cos, inputs.sin
    if x.dim() != 3:
        raise InvalidProblem(f"rope needs x [T, H, D]; got {tuple(x.shape)}")
    T, H, D = x.shape
    if tuple(pos.shape) != (T,) or pos.dtype not in (torch.int32, torch.int64):
        raise InvalidProblem(f"rope positions must be int32/int64 [T]={T}; got {pos.dtype} {tuple(pos.shape)}")
    if cos.dim() != 2 or tuple(cos.shape) != tuple(sin.shape) or cos.shape[1] != D // 2:
        raise InvalidProblem(f"rope cos/sin must be [P, D/2={D // 2}] (rope_cache); "
                             f"got {tuple(cos.shape)} and {tuple(sin.shape)}")
    if cos.dtype != torch.float32 or sin.dtype != torch.float32:
        raise InvalidProblem(f"rope cos/sin must be fp32 (rope_cache); got {cos.dtype} and {sin.dtype}")
    if not (x.device == pos.device == cos.device == sin.device):
        raise InvalidProblem(f"rope tensors on different devices: x {x.device}, positions {pos.device}, "
                             f"cos {cos.device}, sin {sin.device}")
    return SPEC.problem({"T": T, "H": H, "D": D}, dtype_name(x.dtype))


def _check_problem(problem: Problem) -> str | None:
    D = problem["D"]
    if D % 2 or D > MAX_HEAD_DIM:
        return f"head dim D={D} must be even and at most {MAX_HEAD_DIM}"
    return None


def _launch(inputs: RopeInputs, config: Config, out: torch.Tensor | None = None) -> torch.Tensor:
    x, pos, cos, sin = inputs.x, inputs.positions, inputs.cos, inputs.sin
    T, H, D = x.shape
    if out is None:
        out = torch.empty((T, H, D), device=x.device, dtype=x.dtype)
    rowwise.check_out("rope", out, (T, H, D), x)
    grid = (triton.cdiv(T, config["BLOCK_T"]), triton.cdiv(H, config["BLOCK_H"]))
    _rope_kernel[grid](
        x, pos, cos, sin, out, T, H, D // 2,
        x.stride(0), x.stride(1), x.stride(2), out.stride(0), out.stride(1), out.stride(2),
        cos.stride(0), cos.stride(1), sin.stride(0), sin.stride(1), pos.stride(0),
        BLOCK_D=triton.next_power_of_2(D // 2),
        **config.kernel_args(), **config.launch_options(),
    )
    return out


def _make_inputs(problem: Problem, device: torch.device, gen: torch.Generator) -> RopeInputs:
    T, H, D = problem["T"], problem["H"], problem["D"]
    dtype = DTYPE_NAMES[problem.dtype]
    # q as the runtime sees it: a view into a fused projection [T, 2H, D] (q heads, then
    # k heads), so the token stride is 2*H*D, not H*D.
    qk = torch.randn((T, 2 * H, D), device=device, generator=gen).to(dtype)
    P = T + 64
    positions = torch.randint(0, P, (T,), device=device, generator=gen)
    cos, sin = rope_cache(P, D, device=device)
    return RopeInputs(qk[:, :H], positions, cos, sin)


def _halves(inputs: RopeInputs):
    half = inputs.x.shape[-1] // 2
    cos = inputs.cos[inputs.positions.long()][:, None, :]  # [T, 1, D/2]
    sin = inputs.sin[inputs.positions.long()][:, None, :]
    return half, cos, sin


def _reference(inputs: RopeInputs) -> torch.Tensor:
    half, cos, sin = _halves(inputs)
    x = inputs.x.float()
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def _baseline(inputs: RopeInputs) -> torch.Tensor:
    # Hugging Face's apply_rotary_pos_emb in eager torch ops, in x's dtype.
    half, cos, sin = _halves(inputs)
    x = inputs.x
    cos = torch.cat([cos, cos], dim=-1).to(x.dtype)
    sin = torch.cat([sin, sin], dim=-1).to(x.dtype)
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def _pairs(config: Config, problem: Problem) -> int:
    """(x_i, x_{i+D/2}) pairs one program rotates."""
    return config["BLOCK_T"] * config["BLOCK_H"] * C.next_pow2(problem["D"] // 2)


def _x_elements(config: Config, problem: Problem) -> int:
    return 2 * _pairs(config, problem)


def _x_largest(problem: Problem) -> int:
    """The largest x tile the problem and the candidates allow."""
    return (min(C.next_pow2(problem["T"]), max(T_VALUES)) * min(C.next_pow2(problem["H"]), max(H_VALUES))
            * 2 * C.next_pow2(problem["D"] // 2))


# Registers per (x1, x2) pair a thread holds (measured: see rowwise.tile_registers_fit).
REGS_PER_PAIR = 2.0
T_VALUES = (1, 2, 4, 8, 16, 32)
H_VALUES = (1, 2, 4, 8, 16, 32, 64)
WARPS = (1, 2, 4, 8)


def tile_heuristic(spec: KernelSpec, problem: Problem, device: DeviceInfo, T: int, H: int, D: int) -> Config:
    """BLOCK_T / BLOCK_H / num_warps over T tokens of H heads of size D (rope, and rope_kv over
    its q, k and v heads), valid for `spec`."""
    half = C.next_pow2(D // 2)
    target = (rowwise.GPU_TILE if device.kind == "cuda" else rowwise.CPU_TILE) // 2  # pairs
    # All heads of a token first (one cos/sin row serves them), then more tokens.
    block_h = max(1, min(C.next_pow2(H), target // half, max(H_VALUES)))
    block_t = max(1, min(C.next_pow2(T), target // (block_h * half), max(T_VALUES)))
    if device.kind == "cuda":
        # Keep two programs per SM where halving keeps the tile at MIN_TILE or more.
        def short(bt: int, bh: int) -> bool:
            return (bt * bh * half >= rowwise.MIN_TILE  # halved x tile = bt * bh * half
                    and C.cdiv(T, bt) * C.cdiv(H, bh) < 2 * device.sm_count)
        while block_t > 1 and short(block_t, block_h):
            block_t //= 2
        while block_h > 1 and short(block_t, block_h):
            block_h //= 2
    cfg = Config(BLOCK_T=block_t, BLOCK_H=block_h,
                 num_warps=rowwise.warps_for(2 * block_t * block_h * half, max_warps=max(WARPS)))
    return C.shrink_to_fit(spec, cfg, problem, device, ("BLOCK_T", "BLOCK_H", "num_warps"))


def _heuristic(problem: Problem, device: DeviceInfo) -> Config:
    return tile_heuristic(SPEC, problem, device, problem["T"], problem["H"], problem["D"])


def _bytes(problem: Problem) -> int:
    # x read and out written; each token's fp32 cos and sin rows (D/2 each) and its int64
    # position read once.
    T, H, D = problem["T"], problem["H"], problem["D"]
    return 2 * T * H * D * C.ELEMENT_BYTES[problem.dtype] + T * D * 4 + T * 8


SPEC = KernelSpec(
    name="rope",
    summary="rotary embedding (rotate_half pairs i, i+D/2) of x [T, H, D] at integer positions",
    dims=("T", "H", "D"),
    dtypes=("fp32", "fp16", "bf16"),
    params=(
        Param("BLOCK_T", T_VALUES, "tokens per program"),
        Param("BLOCK_H", H_VALUES, "heads per program (share one cos/sin row)"),
        Param("num_warps", WARPS),
    ),
    constraints=(
        C.power_of_two("BLOCK_T", "BLOCK_H", "num_warps"),
        C.block_fits("BLOCK_T", "T", minimum=1),
        C.block_fits("BLOCK_H", "H", minimum=1),
        rowwise.warps_have_work(_pairs),
        rowwise.tile_not_tiny(_x_elements, _x_largest),
        rowwise.tile_registers_fit(REGS_PER_PAIR, _pairs),
    ),
    heuristic=_heuristic,
    make_inputs=_make_inputs,
    problem_of=_problem_of,
    reference=_reference,
    launch=_launch,
    baseline=_baseline,
    baseline_name="eager torch rotate_half (HF apply_rotary_pos_emb)",
    # Per pair 4 multiplies and 2 adds: 3 per element.
    flops=lambda p: 3 * p["T"] * p["H"] * p["D"],
    bytes_moved=_bytes,
    tolerance=lambda p: tolerance_for(p.dtype),
    out_may_alias=("x",),
    example={"T": 13, "H": 32, "D": 128},
    check_problem=_check_problem,
)


def rope(x: torch.Tensor, positions: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *,
         config: Config | dict[str, int] | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """Rotary embedding of x with the Triton kernel (Llama / HF rotate_half convention).

    Args: x [T, H, D] (any strides, e.g. a view of a [B, S, H, D] projection as [B*S, H, D]);
        positions [T] int32/int64, each in [0, P) (not checked: that would sync the GPU);
        cos, sin fp32 [P, D/2] from rope_cache. config: BLOCK_T/BLOCK_H/num_warps (missing
        ones from the heuristic); None asks the active config source. out: optional
        [T, H, D] buffer in x's dtype, any strides (may be x itself).
    Returns: the rotated [T, H, D] tensor in x's dtype.
    Raises: InvalidProblem, InvalidConfig, UnsupportedOnDevice.
    """
    return run(SPEC, RopeInputs(x, positions, cos, sin), config, out=out)
