"""Non-contiguous layouts of kernel inputs, for the layout tests (test support code).

A kernel's inputs are a frozen dataclass (nested for quantized weights: Int8Weight,
Int4Weight, Fp8Tensor). `tensor_paths` finds every tensor in it, `replace_at` swaps one
for another tensor, and `LAYOUTS` make a view with the same shape and values but other
strides:

- "strided": every dimension stepped by 2 inside a buffer twice as large along each one
  (a 1-D tensor is `buf[::2]`);
- "transposed": stored with its dimensions in reverse order (a 2-D tensor is `buf.t()`);
- "column_slice": a column range of a wider row (as q of a fused QKV projection, or the
  gate half of gate_up), at a storage offset.

The elements of a buffer that are not part of the view hold poison: NaN for float
tensors, and for integer tensors (positions, lengths, quantized codes) a value of the
tensor's own range (its minimum), so that a kernel that reads them does not read out of
bounds but computes something else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch

Path = tuple[str, ...]


def tensor_paths(obj: Any, prefix: Path = ()) -> Iterator[Path]:
    """The field paths of every tensor in the dataclass `obj`, nested dataclasses included."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, torch.Tensor):
            yield prefix + (f.name,)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from tensor_paths(value, prefix + (f.name,))


def get_at(obj: Any, path: Path) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


def replace_at(obj: Any, path: Path, value: Any) -> Any:
    """A copy of the dataclass `obj` with the field at `path` replaced by `value`."""
    head, rest = path[0], path[1:]
    new = value if not rest else replace_at(getattr(obj, head), rest, value)
    return dataclasses.replace(obj, **{head: new})


def poison_value(t: torch.Tensor) -> float | int:
    if t.is_floating_point():
        return float("nan")
    return int(t.min()) if t.numel() else 0


def _poisoned(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.full(shape, poison_value(like), dtype=like.dtype, device=like.device)


def strided(t: torch.Tensor) -> torch.Tensor:
    buf = _poisoned(tuple(2 * s for s in t.shape), t)
    view = buf[tuple(slice(None, None, 2) for _ in t.shape)]
    view.copy_(t)
    return view


def transposed(t: torch.Tensor) -> torch.Tensor:
    order = tuple(reversed(range(t.dim())))
    buf = torch.empty(tuple(t.shape[i] for i in order), dtype=t.dtype, device=t.device)
    view = buf.permute(order)  # permute is its own inverse for a reversal
    view.copy_(t)
    return view


COLUMN_PAD = 5


def column_slice(t: torch.Tensor) -> torch.Tensor:
    n = t.shape[-1]
    buf = _poisoned(tuple(t.shape[:-1]) + (n + 2 * COLUMN_PAD,), t)
    view = buf[..., COLUMN_PAD: COLUMN_PAD + n]
    view.copy_(t)
    return view


# name -> (make the view, the least number of dimensions it applies to)
LAYOUTS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], int]] = {
    "strided": (strided, 1),
    "transposed": (transposed, 2),
    "column_slice": (column_slice, 2),
}


def layouts_for(t: torch.Tensor) -> list[str]:
    """The layouts that give `t` strides other than its own (contiguous) ones."""
    names = []
    for name, (make, min_dim) in LAYOUTS.items():
        if t.dim() < min_dim:
            continue
        if make(t).stride() != t.contiguous().stride():
            names.append(name)
    return names


def _perturbed(t: torch.Tensor) -> torch.Tensor:
    return torch.full_like(t, float("nan")) if t.is_floating_point() else torch.zeros_like(t)


def read_by_reference(reference: Callable[[Any], torch.Tensor], inputs: Any, path: Path) -> bool:
    """Whether the reference's result depends on the tensor at `path` (fields that only a
    baseline or a float reference reads, e.g. the unquantized weight, do not)."""
    ref = reference(inputs)
    try:
        changed = reference(replace_at(inputs, path, _perturbed(get_at(inputs, path))))
    except Exception:  # the reference chokes on the perturbed tensor: it reads it
        return True
    return changed.shape != ref.shape or not torch.equal(changed, ref)
