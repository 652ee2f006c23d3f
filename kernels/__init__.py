"""infertune's Triton kernel library.

Each kernel is one module exporting one `SPEC` (see kernels/spec.py) and a public function.
`REGISTRY` lists them explicitly; `get(name)` finds one.

Where there is no CUDA device, Triton must run through its CPU interpreter, and Triton
reads TRITON_INTERPRET when a kernel is decorated, so it is set here, before any kernel
module is imported (an explicit TRITON_INTERPRET in the environment is left alone).
"""

from __future__ import annotations

import os as _os

import torch as _torch

if not _torch.cuda.is_available():
    _os.environ.setdefault("TRITON_INTERPRET", "1")

from .registry import REGISTRY, get, names  # noqa: E402
from .matmul import matmul  # noqa: E402

__all__ = ["REGISTRY", "get", "names", "matmul"]
