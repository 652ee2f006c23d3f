"""Split-K's reduction: the fp32 partial tiles summed, the bias added, the sum cast.

Shared by the matmul kernels. Partials are always summed in a fixed order (split 0, 1, ...),
so results are deterministic (atomics adding into the output would round differently every
run), and the two ways below give the same bits:

- "serial" (the default): inside the matmul launch. Each split stores its partial, then
  counts itself on its tile's counter (one atomic, acquire-release, after a barrier); the
  split that counts last sums the tile's partials, writes the output and zeroes the counter
  for the next launch: the pattern of CUTLASS's serial split-K and of CUDA's
  threadFenceReduction sample. No second launch: on the first H200 run the second pass took
  2.4 us beside the 11.9 us matmul at 16x4096x4096 (ncu), and a decode step of Llama-3-8B
  launches one per split matmul (about 3 a layer).
- "kernel": a second launch, `_splitk_reduce_kernel`, reads the partials back. Used where
  no counters can be had (the first launch on a device inside a CUDA-graph capture) and
  with INFERTUNE_SPLITK_REDUCE=kernel, which the GPU kit measures the serial way against.

attention_decode's split-KV combine (its pass 2) takes its counters from here and follows
the same variable.

Counters: one int32 per output tile, zero between launches, from one ring per device; each
launch takes the next slots (16-byte aligned, so Triton sees one pointer alignment), so two
launches that overlap in time (two streams) only share counters if the ring of 65,536 slots
wraps between them. A CUDA graph keeps the slots it was captured with; later launches on the
same stream run after it and find them zeroed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from . import pdl
from .errors import InvalidProblem

REDUCE_ENV = "INFERTUNE_SPLITK_REDUCE"
REDUCES = ("serial", "kernel")
RING_SLOTS = 1 << 16
_ALIGN_SLOTS = 4  # 16 bytes of int32
_rings: dict[torch.device, list] = {}  # device -> [counters int32 [RING_SLOTS], next slot]


@triton.jit
def last_to_arrive(counter, ARRIVALS: tl.constexpr):
    """Count this program on `counter` (int32); True for the last of ARRIVALS programs, which
    also zeroes the counter for the next launch. Every thread's stores before the call are
    released to that program (bar.sync, then atom.acq_rel.gpu: Triton runs a scalar atomic
    on one thread and hands its result to the others through shared memory, behind another
    barrier); it should read them with .cg loads."""
    tl.debug_barrier()
    last = tl.atomic_add(counter, 1, sem="acq_rel", scope="gpu") == ARRIVALS - 1
    if last:
        tl.store(counter, 0)
    return last


@triton.jit
def store_partial(acc, out_ptr, part_ptr, lock_ptr, bias_ptr, pid_k, offs_m, offs_n, M, N,
                  stride_om, stride_on, stride_bias, HAS_BIAS: tl.constexpr, SPLIT_K: tl.constexpr,
                  SERIAL: tl.constexpr):
    """Store split pid_k's fp32 partial tile into part_ptr ([SPLIT_K, M, N], contiguous);
    with SERIAL, the tile's last split to finish also sums the partials in split order, adds
    the bias and stores the tile into out_ptr (element [m, n] at m * stride_om + n * stride_on),
    and zeroes the tile's counter (lock_ptr + the program's tile index)."""
    mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
    p_offs = offs_m[:, None] * N + offs_n[None, :]
    # int64: S x M x N may pass 2^31. M or N equal to 1 arrives as a constexpr (no .to).
    split_elems = (pid_k.to(tl.int64) * 0 + M) * N
    tl.store(part_ptr + pid_k * split_elems + p_offs, acc, mask=mask)
    if SERIAL:
        if last_to_arrive(lock_ptr + tl.program_id(0), SPLIT_K):
            total = tl.zeros(acc.shape, dtype=tl.float32)
            for s in range(SPLIT_K):
                # .cg: from L2, never a line this SM's L1 kept from before the other splits wrote.
                total += tl.load(part_ptr + s * split_elems + p_offs, mask=mask, other=0.0, cache_modifier=".cg")
            if HAS_BIAS:
                total += tl.load(bias_ptr + offs_n * stride_bias, mask=offs_n < N, other=0.0).to(tl.float32)[None, :]
            c_offs = offs_m[:, None] * stride_om + offs_n[None, :] * stride_on
            tl.store(out_ptr + c_offs, total.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _splitk_reduce_kernel(
    part_ptr, out_ptr, bias_ptr,
    M, N, stride_ps, stride_pm, stride_pn, stride_om, stride_on, stride_bias,
    SPLIT_K: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr, USE_GDC: tl.constexpr,
):
    pdl.start(USE_GDC)  # nothing is read before the previous kernel completes
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < N
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for s in range(SPLIT_K):
        acc += tl.load(part_ptr + s * stride_ps + row * stride_pm + cols * stride_pn, mask=mask, other=0.0)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols * stride_bias, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * stride_om + cols * stride_on, acc.to(out_ptr.dtype.element_ty), mask=mask)


def reduce_partials(partials: torch.Tensor, out: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """out[m, n] = sum_s partials[s, m, n] (+ bias[n]); partials is fp32 [S, M, N]. Every
    tensor's strides are honoured (a bias may be a strided view, out any view)."""
    split_k, m, n = partials.shape
    block = min(1024, triton.next_power_of_2(n))
    grid = (m, triton.cdiv(n, block))
    _splitk_reduce_kernel[grid](
        partials, out, bias if bias is not None else partials,
        m, n, partials.stride(0), partials.stride(1), partials.stride(2), out.stride(0), out.stride(1),
        bias.stride(0) if bias is not None else 0,
        SPLIT_K=split_k, HAS_BIAS=bias is not None, BLOCK=block, **pdl.launch_kwargs(out),
    )
    return out


def reduce_way() -> str:
    """INFERTUNE_SPLITK_REDUCE: "serial" (default) or "kernel"; any other value is refused."""
    wanted = os.environ.get(REDUCE_ENV, "serial").strip().lower() or "serial"
    if wanted not in REDUCES:
        raise InvalidProblem(f"{REDUCE_ENV} must be one of {', '.join(REDUCES)}; got {wanted!r}")
    return wanted


def _capturing(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def tile_counters(device: torch.device, tiles: int) -> torch.Tensor | None:
    """`tiles` zeroed int32 counters on `device` from its ring, or None where there are none
    to give: more tiles than the ring holds, or no ring yet inside a CUDA-graph capture
    (allocating there would tie the ring to the graph's memory pool)."""
    if tiles > RING_SLOTS:
        return None
    ring = _rings.get(device)
    if ring is None:
        if _capturing(device):
            return None
        ring = _rings[device] = [torch.zeros(RING_SLOTS, dtype=torch.int32, device=device), 0]
    counters, at = ring
    if at + tiles > RING_SLOTS:
        at = 0
    ring[1] = -(-(at + tiles) // _ALIGN_SLOTS) * _ALIGN_SLOTS
    return counters[at:at + tiles]


@dataclass(frozen=True)
class SplitK:
    """A launch's split-K buffers. part: fp32 [SPLIT_K, M, N] partials (None without split-K);
    counters: the tiles' counters where the reduction is serial, else None."""

    part: torch.Tensor | None
    counters: torch.Tensor | None

    @property
    def serial(self) -> bool:
        return self.counters is not None

    def args(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The kernel's part_ptr and lock_ptr (`out` stands in for what a launch never reads)."""
        return (self.part if self.part is not None else out, self.counters if self.counters is not None else out)


def split_k_buffers(out: torch.Tensor, split_k: int, tiles: int) -> SplitK:
    """The buffers of a launch of `tiles` output tiles split `split_k` ways into `out`."""
    if split_k == 1:
        return SplitK(None, None)
    M, N = out.shape
    part = torch.empty((split_k, M, N), device=out.device, dtype=torch.float32)
    counters = tile_counters(out.device, tiles) if reduce_way() == "serial" else None
    return SplitK(part, counters)


def finish(split: SplitK, out: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """After the matmul launch: the second pass where the reduction is not serial."""
    if split.part is not None and not split.serial:
        reduce_partials(split.part, out, bias)
    return out
