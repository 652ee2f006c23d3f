"""JSON output shared by the CLI and the benchmarks."""

from __future__ import annotations

import json
import math
from typing import Any


def clean(value: Any) -> Any:
    """JSON has no Infinity/NaN: a non-finite number is written as null (an exact match has
    infinite SQNR; the "ok" and "bad_elements" fields beside it say which case it is)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def dumps(data: Any) -> str:
    return json.dumps(clean(data), indent=2, allow_nan=False)
