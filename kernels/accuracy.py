"""Tolerances and comparisons against a reference. Pure functions, shared by the tests,
`infertune bench` and the tuner's correctness gate."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .spec import Tolerance

# Per output dtype. Inputs are already in that dtype, so the error left is fp32 accumulation
# order plus one rounding of the output: half an ulp is 6e-8 (fp32), 4.9e-4 (fp16),
# 3.9e-3 (bf16) relative; the bounds below leave about 4x headroom over that.
_TOLERANCES = {
    "fp32": Tolerance(rtol=1e-4, atol=1e-4),
    "fp16": Tolerance(rtol=2e-3, atol=2e-3),
    "bf16": Tolerance(rtol=1.6e-2, atol=1.6e-2),
}


def tolerance_for(dtype: str) -> Tolerance:
    return _TOLERANCES[dtype]


@dataclass(frozen=True)
class Comparison:
    ok: bool
    max_abs_err: float
    max_rel_err: float
    sqnr_db: float
    bad_elements: int
    total_elements: int

    def summary(self) -> str:
        state = "ok" if self.ok else f"MISMATCH in {self.bad_elements}/{self.total_elements} elements"
        return f"{state}: max abs err {self.max_abs_err:.3g}, max rel err {self.max_rel_err:.3g}, SQNR {self.sqnr_db:.1f} dB"


def sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio, 20*log10(||ref|| / ||ref - approx||), in dB."""
    ref = reference.double()
    noise = torch.linalg.vector_norm(ref - approx.double()).item()
    signal = torch.linalg.vector_norm(ref).item()
    if noise == 0.0:
        return math.inf
    if signal == 0.0 or math.isnan(noise):
        return -math.inf
    return 20.0 * math.log10(signal / noise)


def compare(out: torch.Tensor, reference: torch.Tensor, tol: Tolerance) -> Comparison:
    """Elementwise check |out - ref| <= atol * rms(ref) + rtol * |ref|. A NaN or Inf in the
    output (e.g. an element the kernel never wrote into a NaN-poisoned buffer) fails."""
    if out.shape != reference.shape:
        raise ValueError(f"output shape {tuple(out.shape)} != reference shape {tuple(reference.shape)}")
    ref = reference.double()
    got = out.double()
    rms = ref.pow(2).mean().sqrt().item() if ref.numel() else 0.0
    bound = tol.atol * max(rms, 1e-30) + tol.rtol * ref.abs()
    err = (got - ref).abs()
    bad = ~(err <= bound)  # NaN compares False, so it counts as bad
    finite_err = torch.where(torch.isfinite(err), err, torch.full_like(err, math.inf))
    max_abs = finite_err.max().item() if err.numel() else 0.0
    max_rel = (finite_err / ref.abs().clamp_min(max(rms, 1e-30))).max().item() if err.numel() else 0.0
    return Comparison(
        ok=not bool(bad.any()),
        max_abs_err=max_abs,
        max_rel_err=max_rel,
        sqnr_db=sqnr_db(ref, got) if torch.isfinite(got).all() else -math.inf,
        bad_elements=int(bad.sum().item()),
        total_elements=err.numel(),
    )
