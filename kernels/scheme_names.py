"""One spelling per weight-quantization scheme, and the aliases users may type instead.

The kernels' scheme names are canonical (they are in problem keys, hence in the tuned
database): `int8`, `int4-gN` (`int4-gN-asym`), `fp8-row` (`fp8-tensor`). The short model
variant spellings are aliases of them: `w8` = `int8`, `w4gN` = `int4-gN`, `fp8` = `fp8-row`.
Everywhere a scheme is named (`--quant`, a variant string such as `bf16+w4g128`, a plan
file) the name goes through `canonical_scheme`; `short_scheme` gives the variant spelling back.
"""

from __future__ import annotations

import re

_INT4 = re.compile(r"(?:int4-g|w4g)([1-9][0-9]*)(-asym)?")
_FIXED = {"w8": "int8", "fp8": "fp8-row"}


def canonical_scheme(name: str) -> str:
    """The canonical spelling of scheme `name`: "w8" -> "int8", "w4g128" -> "int4-g128",
    "w4g32-asym" -> "int4-g32-asym", "fp8" -> "fp8-row"; a canonical name is returned as it
    is (surrounding blanks dropped). A name that is no scheme is returned unchanged: each
    caller checks the result against the schemes it runs and says which those are. Pure."""
    text = name.strip()
    int4 = _INT4.fullmatch(text)
    if int4:
        return f"int4-g{int4.group(1)}{int4.group(2) or ''}"
    return _FIXED.get(text, text)


def short_scheme(scheme: str) -> str | None:
    """The variant spelling of a scheme ("int4-g128" -> "w4g128", "int8" -> "w8", "fp8-row" ->
    "fp8"), None for a scheme that has none (asymmetric int4, per-tensor fp8, unknown). Pure."""
    canonical = canonical_scheme(scheme)
    int4 = _INT4.fullmatch(canonical)
    if int4:
        return None if int4.group(2) else f"w4g{int4.group(1)}"
    return {v: k for k, v in _FIXED.items()}.get(canonical)
