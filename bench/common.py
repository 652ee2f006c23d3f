"""Small helpers the benchmark scripts share (pure: no kernels, no torch)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any


def slug(text: str) -> str:
    """A device or benchmark name as a folder-name part: 'NVIDIA H200' -> 'nvidia-h200'."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def geomean(values: list[float]) -> float | None:
    """Geometric mean of the positive values; None when there are none."""
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def write_results(out: Path, data: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> None:
    """Write `data` as out/results.json (non-finite numbers as null) and `markdown` of that
    same JSON as out/results.md, and say where."""
    from infertune.jsonio import dumps

    text = dumps(data)
    (out / "results.json").write_text(text)
    (out / "results.md").write_text(markdown(json.loads(text)))
    print(f"wrote {out / 'results.md'} and {out / 'results.json'}")
