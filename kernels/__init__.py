"""infertune's Triton kernel library.

Each kernel is one module exporting one `SPEC` (see kernels/spec.py) and a public function.
`REGISTRY` lists them explicitly; `get(name)` finds one.

Layouts: every public kernel function reads each tensor input through its strides (any
view: slices, transposes, column slices of a fused projection, stride-0 broadcasts; the
1-D side tensors too: bias, weights, scales, positions, seq_lens) and writes `out`
through its strides. An `out` whose elements share memory is refused with InvalidProblem.
tests/test_kernels_generic.py checks every input of every kernel in such layouts.

Where there is no CUDA device, Triton must run through its CPU interpreter, and Triton
reads TRITON_INTERPRET when a kernel is decorated, so it is set here, before any kernel
module is imported (an explicit TRITON_INTERPRET in the environment is left alone).
"""

from __future__ import annotations

import os as _os

import torch as _torch

if not _torch.cuda.is_available():
    _os.environ.setdefault("TRITON_INTERPRET", "1")

from ._nvtx import nvtx_range  # noqa: E402
from .registry import REGISTRY, get, names  # noqa: E402
from .matmul import matmul  # noqa: E402
from .matmul_w8a16 import Int8Weight, matmul_w8a16, quantize_int8  # noqa: E402
from .matmul_w4a16 import Int4Weight, matmul_w4a16, quantize_int4  # noqa: E402
from .matmul_fp8 import Fp8Tensor, matmul_fp8, quantize_fp8  # noqa: E402
from .rmsnorm import rmsnorm  # noqa: E402
from .add_rmsnorm import add_rmsnorm  # noqa: E402
from .layernorm import layernorm  # noqa: E402
from .rope import rope, rope_cache  # noqa: E402
from .rope_kv import rope_kv  # noqa: E402
from .swiglu import swiglu  # noqa: E402
from .gelu import gelu  # noqa: E402
from .attention import attention  # noqa: E402
from .attention_decode import attention_decode  # noqa: E402

__all__ = ["REGISTRY", "get", "names", "matmul",
           "matmul_w8a16", "quantize_int8", "Int8Weight", "matmul_w4a16", "quantize_int4", "Int4Weight",
           "matmul_fp8", "quantize_fp8", "Fp8Tensor",
           "rmsnorm", "add_rmsnorm", "layernorm", "rope", "rope_kv", "rope_cache", "swiglu", "gelu",
           "attention", "attention_decode", "nvtx_range"]
