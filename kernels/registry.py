"""The explicit list of kernels. A kernel not listed here does not exist for infertune."""

from __future__ import annotations

from . import matmul
from . import matmul_fp8, matmul_w4a16, matmul_w8a16
from . import add_rmsnorm, gelu, layernorm, rmsnorm, rope, rope_kv, swiglu
from . import attention, attention_decode
from .errors import UnknownKernel
from .spec import KernelSpec

REGISTRY: tuple[KernelSpec, ...] = (
    matmul.SPEC,
    matmul_w8a16.SPEC,
    matmul_w4a16.SPEC,
    matmul_fp8.SPEC,
    rmsnorm.SPEC,
    add_rmsnorm.SPEC,
    layernorm.SPEC,
    rope.SPEC,
    rope_kv.SPEC,
    swiglu.SPEC,
    gelu.SPEC,
    attention.SPEC,
    attention_decode.SPEC,
)

_BY_NAME = {spec.name: spec for spec in REGISTRY}


def names() -> tuple[str, ...]:
    return tuple(_BY_NAME)


def get(name: str) -> KernelSpec:
    """The spec called `name`. Raises UnknownKernel listing the known names."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownKernel(f"unknown kernel {name!r}; known kernels: {', '.join(_BY_NAME)}") from None
