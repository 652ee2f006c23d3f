"""Model-driven tuning: the (kernel, problem) list of a built-in model at the batch sizes and
prompt length a user serves, from the runtime's launch list (runtime/launches.py). The
library behind `infertune autotune --model NAME --batch 1,8,64 --prompt-len 128`."""

from __future__ import annotations

import kernels as kernel_library
from kernels.scheme_names import canonical_scheme
from kernels.spec import KernelSpec, Problem
from runtime import ModelError, get_preset, kernel_launches, unique_problems

from .errors import UsageError


def parse_sizes(text: str, what: str) -> list[int]:
    """"1,8,64" -> [1, 8, 64]; one clear UsageError for anything else."""
    parts = [part.strip() for part in text.split(",")]
    # "1,,2" or a trailing comma is a typo, not a list of two sizes; int() reads '١٢' as 12
    sizes = [int(part) for part in parts] if all(part.isascii() and part.isdigit() for part in parts) else []
    if not sizes or any(s < 1 for s in sizes):
        raise UsageError(f"malformed {what} {text!r}; expected positive integers such as 1,8,64")
    return list(dict.fromkeys(sizes))


def model_problems(model: str, *, batches: list[int], seq: int, gen: int, dtype: str, quant: str | None,
                   kernel: str | None = None) -> list[tuple[KernelSpec, Problem]]:
    """Every distinct (kernel, problem) that `model` launches for prefill of `seq` tokens and
    decode (KV cache of seq + gen) at each batch size, in launch order; `kernel` keeps only
    that kernel's. `quant` may be a scheme's alias ("w4g128" for "int4-g128"). Raises UsageError for an unknown model, a bad size or a kernel the model
    never launches."""
    try:
        config = get_preset(model).config
        quant = canonical_scheme(quant) if quant is not None else None
        jobs: dict[tuple[str, Problem], None] = {}
        for batch in batches:
            launches = kernel_launches(config, batch=batch, seq=seq, dtype=dtype, quant=quant, gen=gen)
            for pair in unique_problems(launches):
                jobs.setdefault(pair, None)
    except ModelError as exc:
        raise UsageError(str(exc)) from None
    found = [(kernel_library.get(name), problem) for name, problem in jobs]
    if kernel is not None:
        launched = sorted({spec.name for spec, _ in found})
        found = [(spec, problem) for spec, problem in found if spec.name == kernel]
        if not found:
            raise UsageError(f"{model} does not launch {kernel}; it launches {', '.join(launched)}")
    return found
