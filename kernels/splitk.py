"""The second pass of split-K: sum the fp32 partial tiles, add the bias, cast.

Shared by the matmul kernels. Partials are summed in a fixed order, so results are
deterministic (atomics would make every run round differently)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _splitk_reduce_kernel(
    part_ptr, out_ptr, bias_ptr,
    M, N, stride_ps, stride_pm, stride_pn, stride_om, stride_on, stride_bias,
    SPLIT_K: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr,
):
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
        SPLIT_K=split_k, HAS_BIAS=bias is not None, BLOCK=block,
    )
    return out
