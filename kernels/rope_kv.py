"""rope_kv: rotary embedding of q and k from the fused qkv projection, and the KV-cache write.

After the fused projection, a decoder layer rotates q and k and writes k and v into its KV
cache at each token's (sequence, position). As separate launches that is rope, then an
indexed copy for k and one for v: three launches at decode for a few KB each (Llama-3-8B,
batch 1: q 8 KB, k and v 2 KB each), per layer. Here one program per (tokens, heads) tile
reads the heads of qkv once and writes each where it goes:

    heads [0, H)              q: rotated, into the returned [T, H, D] tensor
    heads [H, H + HKV)        k: rotated, into k_cache[rows[t], positions[t]]
    heads [H + HKV, H + 2HKV) v: as is,   into v_cache[rows[t], positions[t]]

qkv is [T, H + 2 HKV, D] with any strides (the runtime views its [T, (H + 2 HKV) D]
projection output so). Rotation is the Hugging Face rotate_half convention of
kernels/rope.py, with fp32 cos/sin tables from `rope_cache`. Positions and rows are not
checked against the cache's size: that would sync the GPU (the caller's KV cache checks
its room on the host).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from . import constraints as C
from . import pdl, rowwise
from .accuracy import tolerance_for
from .device import DTYPE_NAMES, DeviceInfo, dtype_name
from .errors import InvalidProblem
from .launching import run
from .layout import check_out_writable, may_overlap
from .rope import H_VALUES, MAX_HEAD_DIM, REGS_PER_PAIR, T_VALUES, WARPS, rope_cache, tile_heuristic
from .spec import Config, KernelSpec, Param, Problem


@triton.jit
def _rope_kv_kernel(
    x_ptr, pos_ptr, row_ptr, cos_ptr, sin_ptr, q_ptr, k_ptr, v_ptr,
    T, H, HKV, HALF,
    stride_xt, stride_xh, stride_xd, stride_qt, stride_qh, stride_qd,
    stride_kb, stride_kl, stride_kh, stride_kd, stride_vb, stride_vl, stride_vh, stride_vd,
    stride_cp, stride_cd, stride_sp, stride_sd, stride_pos, stride_row,
    BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, USE_GDC: tl.constexpr,
):
    pdl.start(USE_GDC)  # nothing is read before the previous kernel completes
    toks = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    heads = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)  # over q, k and v heads
    dims = tl.arange(0, BLOCK_D)
    mask_t = toks < T
    mask_d = dims < HALF

    pos = tl.load(pos_ptr + toks * stride_pos, mask=mask_t, other=0).to(tl.int64)
    row = tl.load(row_ptr + toks * stride_row, mask=mask_t, other=0).to(tl.int64)
    cs_mask = mask_t[:, None] & mask_d[None, :]
    cos = tl.load(cos_ptr + pos[:, None] * stride_cp + dims[None, :] * stride_cd, mask=cs_mask, other=0.0)
    sin = tl.load(sin_ptr + pos[:, None] * stride_sp + dims[None, :] * stride_sd, mask=cs_mask, other=0.0)
    cos = cos.to(tl.float32)[:, None, :]
    sin = sin.to(tl.float32)[:, None, :]

    toks64 = toks.to(tl.int64)[:, None, None]  # toks * stride may pass 2**31 elements
    mask = mask_t[:, None, None] & (heads < H + 2 * HKV)[None, :, None] & mask_d[None, None, :]
    x_lo = x_ptr + toks64 * stride_xt + heads[None, :, None] * stride_xh + dims[None, None, :] * stride_xd
    x1 = tl.load(x_lo, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x_lo + HALF * stride_xd, mask=mask, other=0.0).to(tl.float32)
    rotate = (heads < H + HKV)[None, :, None]
    o1 = tl.where(rotate, x1 * cos - x2 * sin, x1)
    o2 = tl.where(rotate, x2 * cos + x1 * sin, x2)

    # Each head goes to one of three places; the other two stores are masked off. Head
    # indices are clamped to >= 0 so no masked-off address is computed below a base.
    is_q = (heads < H)[None, :, None]
    is_k = ((heads >= H) & (heads < H + HKV))[None, :, None]
    is_v = (heads >= H + HKV)[None, :, None]
    kh = tl.maximum(heads - H, 0)[None, :, None]
    vh = tl.maximum(heads - H - HKV, 0)[None, :, None]
    d3 = dims[None, None, :]
    q_lo = q_ptr + toks64 * stride_qt + heads[None, :, None] * stride_qh + d3 * stride_qd
    k_lo = k_ptr + row[:, None, None] * stride_kb + pos[:, None, None] * stride_kl + kh * stride_kh + d3 * stride_kd
    v_lo = v_ptr + row[:, None, None] * stride_vb + pos[:, None, None] * stride_vl + vh * stride_vh + d3 * stride_vd
    tl.store(q_lo, o1.to(q_ptr.dtype.element_ty), mask=mask & is_q)
    tl.store(q_lo + HALF * stride_qd, o2.to(q_ptr.dtype.element_ty), mask=mask & is_q)
    tl.store(k_lo, o1.to(k_ptr.dtype.element_ty), mask=mask & is_k)
    tl.store(k_lo + HALF * stride_kd, o2.to(k_ptr.dtype.element_ty), mask=mask & is_k)
    tl.store(v_lo, o1.to(v_ptr.dtype.element_ty), mask=mask & is_v)
    tl.store(v_lo + HALF * stride_vd, o2.to(v_ptr.dtype.element_ty), mask=mask & is_v)


@dataclass(frozen=True)
class RopeKVInputs:
    qkv: torch.Tensor  # [T, H + 2 HKV, D], any strides: q heads, then k heads, then v heads
    positions: torch.Tensor  # [T] int32/int64: each token's position (cache slot and rotation angle)
    rows: torch.Tensor  # [T] int32/int64: each token's sequence (the cache's batch row)
    cos: torch.Tensor  # [P, D/2] fp32
    sin: torch.Tensor  # [P, D/2] fp32
    k_cache: torch.Tensor  # [B, L, HKV, D], written
    v_cache: torch.Tensor  # [B, L, HKV, D], written


def _problem_of(inputs: RopeKVInputs) -> Problem:
    qkv, k, v = inputs.qkv, inputs.k_cache, inputs.v_cache
    if qkv.dim() != 3:
        raise InvalidProblem(f"rope_kv needs qkv [T, H + 2 HKV, D]; got {tuple(qkv.shape)}")
    if k.dim() != 4 or tuple(k.shape) != tuple(v.shape):
        raise InvalidProblem(f"rope_kv needs k_cache and v_cache of one shape [B, L, HKV, D]; got "
                             f"{tuple(k.shape)} and {tuple(v.shape)}")
    T, heads, D = qkv.shape
    HKV = k.shape[2]
    H = heads - 2 * HKV
    if k.shape[3] != D or H < HKV or H % HKV:
        raise InvalidProblem(f"rope_kv: qkv [T, H + 2 HKV, D] = {list(qkv.shape)} does not fit a cache of "
                             f"{HKV} kv heads of size {k.shape[3]} (H must be a multiple of HKV)")
    for name, t in (("positions", inputs.positions), ("rows", inputs.rows)):
        if tuple(t.shape) != (T,) or t.dtype not in (torch.int32, torch.int64):
            raise InvalidProblem(f"rope_kv {name} must be int32/int64 [T]={T}; got {t.dtype} {tuple(t.shape)}")
    cos, sin = inputs.cos, inputs.sin
    if cos.dim() != 2 or tuple(cos.shape) != tuple(sin.shape) or cos.shape[1] != D // 2:
        raise InvalidProblem(f"rope_kv cos/sin must be [P, D/2={D // 2}] (rope_cache); "
                             f"got {tuple(cos.shape)} and {tuple(sin.shape)}")
    if cos.dtype != torch.float32 or sin.dtype != torch.float32:
        raise InvalidProblem(f"rope_kv cos/sin must be fp32 (rope_cache); got {cos.dtype} and {sin.dtype}")
    if k.dtype != qkv.dtype or v.dtype != qkv.dtype:
        raise InvalidProblem(f"rope_kv caches must be in qkv's dtype {qkv.dtype}; got {k.dtype} and {v.dtype}")
    return SPEC.problem({"T": T, "H": H, "HKV": HKV, "D": D}, dtype_name(qkv.dtype))


def _check_problem(problem: Problem) -> str | None:
    D, H, HKV = problem["D"], problem["H"], problem["HKV"]
    if D % 2 or D > MAX_HEAD_DIM:
        return f"head dim D={D} must be even and at most {MAX_HEAD_DIM}"
    if H % HKV:
        return f"H={H} query heads must be a multiple of HKV={HKV} kv heads"
    return None


def _launch(inputs: RopeKVInputs, config: Config, out: torch.Tensor | None = None) -> torch.Tensor:
    x, pos, rows, cos, sin, kc, vc = (inputs.qkv, inputs.positions, inputs.rows, inputs.cos, inputs.sin,
                                      inputs.k_cache, inputs.v_cache)
    T, heads, D = x.shape
    HKV = kc.shape[2]
    H = heads - 2 * HKV
    if out is None:
        out = torch.empty((T, H, D), device=x.device, dtype=x.dtype)
    rowwise.check_out("rope_kv", out, (T, H, D), x)
    # The caches are written too: each with one address per element, apart from the other
    # cache and from everything read (q and out are checked by the common path).
    # The pair of caches is checked once, from k's side.
    for name, cache, other in (("k_cache", kc, vc), ("v_cache", vc, None)):
        check_out_writable(f"rope_kv {name}", cache)
        for what, t in (("qkv", x), ("the other cache", other), ("positions", pos), ("rows", rows),
                        ("cos", cos), ("sin", sin)):
            if t is not None and may_overlap(cache, t):
                raise InvalidProblem(f"rope_kv: {name} shares memory with {what}; pass separate buffers")
    grid = (triton.cdiv(T, config["BLOCK_T"]), triton.cdiv(heads, config["BLOCK_H"]))
    _rope_kv_kernel[grid](
        x, pos, rows, cos, sin, out, kc, vc, T, H, HKV, D // 2,
        x.stride(0), x.stride(1), x.stride(2), out.stride(0), out.stride(1), out.stride(2),
        *kc.stride(), *vc.stride(),
        cos.stride(0), cos.stride(1), sin.stride(0), sin.stride(1), pos.stride(0), rows.stride(0),
        BLOCK_D=triton.next_power_of_2(D // 2),
        **config.kernel_args(), **config.launch_options(), **pdl.launch_kwargs(x),
    )
    return out


def _make_inputs(problem: Problem, device: torch.device, gen: torch.Generator) -> RopeKVInputs:
    """Tokens of B = 3 sequences at scattered positions of a cache of T + 64 slots (one
    slot per token: no two tokens write one cache element), qkv a view of the projection
    output [T, (H + 2 HKV) D] as the runtime makes it."""
    T, H, HKV, D = problem["T"], problem["H"], problem["HKV"], problem["D"]
    dtype = DTYPE_NAMES[problem.dtype]
    qkv = torch.randn((T, (H + 2 * HKV) * D), device=device, generator=gen).to(dtype).view(T, H + 2 * HKV, D)
    B, L = 3, T + 64
    slots = torch.randperm(B * L, device=device, generator=gen)[:T]
    rows, positions = slots // L, slots % L
    cos, sin = rope_cache(L, D, device=device)
    k_cache = torch.zeros((B, L, HKV, D), device=device, dtype=dtype)
    v_cache = torch.zeros((B, L, HKV, D), device=device, dtype=dtype)
    return RopeKVInputs(qkv, positions, rows, cos, sin, k_cache, v_cache)


def rotated(inputs: RopeKVInputs, first: int, count: int) -> torch.Tensor:
    """fp32 reference rotation of qkv heads [first, first + count): [T, count, D]."""
    pos = inputs.positions.long()
    cos = inputs.cos[pos][:, None, :]
    sin = inputs.sin[pos][:, None, :]
    x = inputs.qkv[:, first:first + count].float()
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def _reference(inputs: RopeKVInputs) -> torch.Tensor:
    H = inputs.qkv.shape[1] - 2 * inputs.k_cache.shape[2]
    return rotated(inputs, 0, H)


def _baseline(inputs: RopeKVInputs) -> torch.Tensor:
    # What the runtime ran before: HF's rotate_half in eager torch ops on q and k, then two
    # indexed copies into the caches.
    HKV = inputs.k_cache.shape[2]
    H = inputs.qkv.shape[1] - 2 * HKV
    pos, rows = inputs.positions.long(), inputs.rows.long()
    x = inputs.qkv[:, :H + HKV]
    half = x.shape[-1] // 2
    cos = inputs.cos[pos][:, None, :].repeat(1, 1, 2).to(x.dtype)
    sin = inputs.sin[pos][:, None, :].repeat(1, 1, 2).to(x.dtype)
    qk = x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin
    inputs.k_cache[rows, pos] = qk[:, H:]
    inputs.v_cache[rows, pos] = inputs.qkv[:, H + HKV:]
    return qk[:, :H]


def _heads(problem: Problem) -> int:
    return problem["H"] + 2 * problem["HKV"]


def _pairs(config: Config, problem: Problem) -> int:
    """(x_i, x_{i+D/2}) pairs one program moves."""
    return config["BLOCK_T"] * config["BLOCK_H"] * C.next_pow2(problem["D"] // 2)


def _x_elements(config: Config, problem: Problem) -> int:
    return 2 * _pairs(config, problem)


def _x_largest(problem: Problem) -> int:
    return (min(C.next_pow2(problem["T"]), max(T_VALUES)) * min(C.next_pow2(_heads(problem)), max(H_VALUES))
            * 2 * C.next_pow2(problem["D"] // 2))


def _block_h_fits(config: Config, problem: Problem, device: DeviceInfo) -> str | None:
    limit = C.next_pow2(_heads(problem))
    if config["BLOCK_H"] > limit:
        return f"BLOCK_H={config['BLOCK_H']} exceeds the H + 2 HKV = {_heads(problem)} heads padded to {limit}"
    return None


def _heuristic(problem: Problem, device: DeviceInfo) -> Config:
    return tile_heuristic(SPEC, problem, device, problem["T"], _heads(problem), problem["D"])


def _bytes(problem: Problem) -> int:
    # Every head of qkv read once and written once (q out, k and v into the caches); each
    # token's fp32 cos and sin rows, its position and its row read once.
    T, D = problem["T"], problem["D"]
    return 2 * T * _heads(problem) * D * C.ELEMENT_BYTES[problem.dtype] + T * D * 4 + T * 16


SPEC = KernelSpec(
    name="rope_kv",
    summary="rotary embedding of q and k from fused qkv [T, H + 2 HKV, D], k and v written into the KV cache",
    dims=("T", "H", "HKV", "D"),
    dtypes=("fp32", "fp16", "bf16"),
    params=(
        Param("BLOCK_T", T_VALUES, "tokens per program"),
        Param("BLOCK_H", H_VALUES, "heads per program, over q, k and v (share one cos/sin row)"),
        Param("num_warps", WARPS),
    ),
    constraints=(
        C.power_of_two("BLOCK_T", "BLOCK_H", "num_warps"),
        C.block_fits("BLOCK_T", "T", minimum=1),
        _block_h_fits,
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
    baseline_name="eager torch rotate_half + two indexed cache copies",
    # Per rotated pair 4 multiplies and 2 adds: 3 per q and k element.
    flops=lambda p: 3 * p["T"] * (p["H"] + p["HKV"]) * p["D"],
    bytes_moved=_bytes,
    tolerance=lambda p: tolerance_for(p.dtype),
    example={"T": 13, "H": 32, "HKV": 8, "D": 128},
    check_problem=_check_problem,
)


def rope_kv(qkv: torch.Tensor, positions: torch.Tensor, rows: torch.Tensor, cos: torch.Tensor,
            sin: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, *,
            config: Config | dict[str, int] | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate q and k of a fused projection and write k and v into a KV cache, in one launch.

    Args: qkv [T, H + 2 HKV, D] (any strides): q heads, then k heads, then v heads.
        positions [T] and rows [T] int32/int64: token t's rotation position and cache slot
        k_cache[rows[t], positions[t]] (not checked against the cache: that would sync).
        cos, sin fp32 [P, D/2] from rope_cache. k_cache, v_cache [B, L, HKV, D] in qkv's
        dtype, any strides, written in place. config: BLOCK_T/BLOCK_H/num_warps (missing
        ones from the heuristic); None asks the active config source. out: optional
        [T, H, D] buffer for q.
    Returns: the rotated q [T, H, D] in qkv's dtype.
    Raises: InvalidProblem, InvalidConfig, UnsupportedOnDevice.
    """
    return run(SPEC, RopeKVInputs(qkv, positions, rows, cos, sin, k_cache, v_cache), config, out=out)
