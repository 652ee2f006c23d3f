"""A linear layer's weights as the runtime holds them: float, or quantized by the kernels'
own quantizers (the tuner measured those exact formats).

Layout is nn.Linear's: weight [N, K] (out, in), bias [N]. Quantized from an fp32 master
copy, so that a variant's error is the scheme's alone, not the scheme's on top of bf16's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import kernels
from kernels import Fp8Tensor, Int4Weight, Int8Weight

from .errors import InvalidWorkload

SCHEMES = ("none", "int8", "int4-g32", "int4-g64", "int4-g128", "fp8-row")


@dataclass(frozen=True, eq=False)
class LinearWeight:
    """One layer: exactly one of `weight` (float, in the model dtype) and `quant`."""

    scheme: str
    out_features: int
    in_features: int
    weight: torch.Tensor | None = None
    quant: Int8Weight | Int4Weight | Fp8Tensor | None = None
    bias: torch.Tensor | None = None   # in the model dtype

    @property
    def kernel(self) -> str:
        """The registry kernel that runs this layer with the triton backend."""
        return {"none": "matmul", "int8": "matmul_w8a16", "fp8-row": "matmul_fp8"}.get(self.scheme, "matmul_w4a16")

    @property
    def nbytes(self) -> int:
        """Bytes of the stored weight (and its scales / zero points), bias excluded."""
        if self.weight is not None:
            return self.weight.numel() * self.weight.element_size()
        q = self.quant
        parts = [getattr(q, name, None) for name in ("qweight", "packed", "data", "scale", "zero")]
        return sum(t.numel() * t.element_size() for t in parts if isinstance(t, torch.Tensor))

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        """The [N, K] weight in `dtype` (a float weight is returned as stored)."""
        if self.weight is not None:
            return self.weight if self.weight.dtype == dtype else self.weight.to(dtype)
        return self.quant.dequantize(dtype)


def make_linear(weight: torch.Tensor, bias: torch.Tensor | None, scheme: str, dtype: torch.dtype,
                device: torch.device | str) -> LinearWeight:
    """Quantize (or cast) an fp32 [N, K] weight for the runtime. Raises InvalidWorkload for
    an unknown scheme."""
    if scheme not in SCHEMES:
        raise InvalidWorkload(f"unknown weight scheme {scheme!r}; schemes: {', '.join(SCHEMES)}")
    n, k = weight.shape
    w32 = weight.to(device=device, dtype=torch.float32)
    b = bias.to(device=device, dtype=dtype) if bias is not None else None
    if scheme == "none":
        return LinearWeight(scheme, n, k, weight=w32.to(dtype), bias=b)
    if scheme == "int8":
        return LinearWeight(scheme, n, k, quant=kernels.quantize_int8(w32), bias=b)
    if scheme == "fp8-row":
        return LinearWeight(scheme, n, k, quant=kernels.quantize_fp8(w32, per_row=True), bias=b)
    group = int(scheme.rsplit("g", 1)[1])
    return LinearWeight(scheme, n, k, quant=kernels.quantize_int4(w32, group_size=group), bias=b)
