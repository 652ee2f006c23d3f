"""Small helpers the benchmark scripts share (pure: no kernels, no torch)."""

from __future__ import annotations

import math
import re


def slug(text: str) -> str:
    """A device or benchmark name as a folder-name part: 'NVIDIA H200' -> 'nvidia-h200'."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def geomean(values: list[float]) -> float | None:
    """Geometric mean of the positive values; None when there are none."""
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None
