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
