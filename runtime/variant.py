"""A model variant: one string users type and reports show.

    VARIANT  := DTYPE ("+" WEIGHTS)? ("+cg")? (":" BACKEND)?
    DTYPE    := fp32 | fp16 | bf16                       activations and float weights
    WEIGHTS  := w8 | w4g32 | w4g64 | w4g128 | fp8         weight quantization of the linear layers
                (or the kernels' names of the same schemes: int8 | int4-g32 | int4-g64 |
                int4-g128 | fp8-row; kernels/scheme_names.py; a variant shows the short one)
    BACKEND  := triton | triton-default | torch

`bf16`, `bf16+w4g128` (= `bf16+int4-g128`), `fp16+w8:torch`, `bf16+w8+cg:triton`. `triton` launches our kernels
with configs from the tuned database (nearest bucket, else the heuristic); `triton-default`
launches them with the heuristic configs only (the database off: what tuning is measured
against); `torch` runs reference torch ops on any device (quantized weights dequantized at
each use). `+cg` captures each decode step in a CUDA graph (GPU only). With no backend the
default is `triton` on a GPU and `torch` elsewhere: the CPU interpreter runs our kernels at
seconds a launch, fine for tests at small sizes, not for a 30-layer model.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernels.scheme_names import canonical_scheme, short_scheme

from .errors import InvalidVariant

DTYPES = ("fp32", "fp16", "bf16")
# Variant spelling -> the scheme name the kernels and the launch list use.
WEIGHT_SCHEMES = {"w8": "int8", "w4g32": "int4-g32", "w4g64": "int4-g64", "w4g128": "int4-g128", "fp8": "fp8-row"}
BACKENDS = ("triton", "triton-default", "torch")


@dataclass(frozen=True)
class Variant:
    dtype: str
    weights: str | None = None   # None, or a key of WEIGHT_SCHEMES
    backend: str = "torch"
    cuda_graphs: bool = False

    @property
    def scheme(self) -> str | None:
        """The quantization scheme of the linear layers ("int4-g128"), None for float."""
        return WEIGHT_SCHEMES[self.weights] if self.weights else None

    @property
    def tuned(self) -> bool:
        return self.backend == "triton"

    @property
    def uses_kernels(self) -> bool:
        return self.backend.startswith("triton")

    def __str__(self) -> str:
        text = self.dtype + (f"+{self.weights}" if self.weights else "") + ("+cg" if self.cuda_graphs else "")
        return f"{text}:{self.backend}"


def parse_variant(text: str, *, gpu: bool) -> Variant:
    """Parse a variant string; the backend defaults by `gpu`. Raises InvalidVariant (one line)."""
    spec, _, backend = text.strip().partition(":")
    parts = [p.strip() for p in spec.split("+")]
    form = ("DTYPE[+w8|w4g32|w4g64|w4g128|fp8][+cg][:triton|triton-default|torch], e.g. bf16+w4g128 "
            "(int8, int4-gN and fp8-row name the same schemes)")
    if not parts or parts[0] not in DTYPES:
        raise InvalidVariant(f"malformed variant {text!r}: it starts with a dtype ({', '.join(DTYPES)}); expected {form}")
    weights, graphs = None, False
    for part in parts[1:]:
        short = short_scheme(canonical_scheme(part))  # "int4-g128" and "w4g128" are one scheme
        if short in WEIGHT_SCHEMES and weights is None:
            weights = short
        elif part == "cg" and not graphs:
            graphs = True
        else:
            raise InvalidVariant(f"malformed variant {text!r}: unknown or repeated part {part!r}; expected {form}")
    backend = backend.strip() or ("triton" if gpu else "torch")
    if backend not in BACKENDS:
        raise InvalidVariant(f"malformed variant {text!r}: unknown backend {backend!r} (backends: {', '.join(BACKENDS)})")
    if weights == "fp8" and parts[0] == "fp32":
        raise InvalidVariant(f"variant {text!r}: fp8 weights run with fp16 or bf16 activations, not fp32")
    return Variant(parts[0], weights, backend, graphs)
