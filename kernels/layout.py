"""Layout checks of a caller's output buffer.

Every kernel reads its inputs through their strides (any view works, including stride 0
broadcasts) and writes its output through the output's strides. A write needs one more
thing: no two output elements at one address, or programs race and the result is
whichever wrote last. Such a buffer is refused with InvalidProblem.
"""

from __future__ import annotations

import torch

from .errors import InvalidProblem


def has_internal_overlap(t: torch.Tensor) -> bool:
    """Whether two elements of `t` may share an address (e.g. an expand()ed view).

    Conservative: dimensions of size > 1 sorted by stride must each step past everything
    the smaller ones span. Every layout torch makes from slicing, transposing and permuting
    a buffer passes; an interleaving the check cannot prove disjoint is reported.
    """
    span = 1  # elements spanned by the dimensions seen so far, plus one
    for stride, size in sorted((st, sz) for st, sz in zip(t.stride(), t.shape) if sz > 1):
        if stride < span:
            return True
        span += stride * (size - 1)
    return False


def check_out_writable(name: str, out: torch.Tensor) -> None:
    """Raise InvalidProblem if `out` has elements that share an address."""
    if has_internal_overlap(out):
        raise InvalidProblem(f"{name} out has elements that share memory (strides {tuple(out.stride())} for "
                             f"shape {tuple(out.shape)}, e.g. an expand()ed view); pass a buffer with one address "
                             f"per element")


# Joint spans up to this many bytes are checked element by element when two tensors'
# address ranges intersect (a byte map of the span); wider ones are refused unproven.
EXACT_OVERLAP_BYTES = 1 << 28


def _byte_range(t: torch.Tensor) -> tuple[int, int]:
    last = sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))
    return t.data_ptr(), t.data_ptr() + (last + 1) * t.element_size()


def _mark(byte_map: torch.Tensor, t: torch.Tensor, lo: int) -> torch.Tensor:
    """The bytes of `t`'s elements in `byte_map`, a uint8 view of the span from address `lo`."""
    es = t.element_size()
    return byte_map.as_strided(tuple(t.shape) + (es,), tuple(s * es for s in t.stride()) + (1,),
                               t.data_ptr() - lo)


def may_overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether some element of `a` and some element of `b` share a byte.

    Disjoint address ranges answer at once (the usual case: separate buffers). Ranges that
    intersect (views of one buffer, e.g. the two halves of gate_up) are checked exactly
    with a byte map of the joint span, up to EXACT_OVERLAP_BYTES; beyond, True."""
    if a.numel() == 0 or b.numel() == 0 or a.device != b.device:
        return False
    (lo_a, hi_a), (lo_b, hi_b) = _byte_range(a), _byte_range(b)
    if hi_a <= lo_b or hi_b <= lo_a:
        return False
    lo, hi = min(lo_a, lo_b), max(hi_a, hi_b)
    if hi - lo > EXACT_OVERLAP_BYTES:
        return True
    byte_map = torch.zeros(hi - lo, dtype=torch.uint8, device=a.device)
    _mark(byte_map, a, lo).fill_(1)
    return bool(_mark(byte_map, b, lo).any())


def same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    """`a` and `b` are the same elements in the same order (an in-place call)."""
    return (a.data_ptr() == b.data_ptr() and a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape)
            and a.stride() == b.stride())


def check_out_disjoint(name: str, out: torch.Tensor, inputs: list[tuple[str, torch.Tensor]],
                       may_alias: tuple[str, ...]) -> None:
    """Raise InvalidProblem if `out` shares memory with an input, unless it is exactly the
    input (same view) and the kernel allows that input to be overwritten (`may_alias`):
    programs would read what others already wrote."""
    for field, t in inputs:
        if field in may_alias and same_view(out, t):
            continue
        if may_overlap(out, t):
            allowed = f" (out may be {' or '.join(may_alias)} itself)" if may_alias else ""
            raise InvalidProblem(f"{name}: out shares memory with input {field}; pass a separate buffer{allowed}")
