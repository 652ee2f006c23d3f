"""Input checks shared by the matmul kernels: the check the quantizers (matmul_w8a16,
matmul_w4a16, matmul_fp8) make of a float tensor, and the check of a caller's `out`
buffer (those three and matmul)."""

from __future__ import annotations

import torch

from .errors import InvalidProblem
from .layout import check_out_writable


def checked_float_matrix(t: torch.Tensor, what: str) -> torch.Tensor:
    """`t` as fp32 (detached) after checking it is a non-empty, finite 2-D float tensor.

    Raises InvalidProblem naming `what` (the quantizer) otherwise: a NaN would otherwise
    turn silently into an arbitrary integer code.
    """
    if t.dim() != 2 or t.numel() == 0 or not t.is_floating_point():
        raise InvalidProblem(f"{what} needs a non-empty 2-D float tensor; got {tuple(t.shape)} {t.dtype}")
    tf = t.detach().float()
    if not bool(torch.isfinite(tf).all()):
        raise InvalidProblem(f"{what}: the tensor has NaN or Inf entries")
    return tf


def output_buffer(out: torch.Tensor | None, shape: tuple[int, int], dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    """`out` if it is a `shape` `dtype` tensor on `device` (any strides), a new one if None.
    Raises InvalidProblem for a mismatched buffer or one whose elements share memory."""
    if out is None:
        return torch.empty(shape, device=device, dtype=dtype)
    if tuple(out.shape) != tuple(shape) or out.dtype != dtype or out.device != device:
        raise InvalidProblem(f"out must be {list(shape)} {dtype} on {device}; got "
                             f"{list(out.shape)} {out.dtype} on {out.device}")
    check_out_writable("the matmul", out)
    return out


def weight_only_float_reference(inputs) -> torch.Tensor:
    """x @ W (+ bias) in fp32 with W as it was before quantization (`weight_f32`, else the
    baseline's `weight`): what a weight-only scheme's error is measured against. Shared by
    matmul_w8a16 and matmul_w4a16, whose inputs carry x, bias, weight and weight_f32."""
    w = inputs.weight_f32 if inputs.weight_f32 is not None else inputs.weight
    if w is None:
        raise ValueError("no unquantized weight kept with these inputs")
    out = inputs.x.float() @ w.float().t()
    return out + inputs.bias.float() if inputs.bias is not None else out
