"""A static key/value cache for decoder generation.

Allocated once for the whole generation, [batch, capacity, kv_heads, head_dim] per layer
for k and v, so a decode step writes in place and allocates nothing, attention_decode's
L is `capacity` on every step (one tuned problem, as runtime/launches.py states), and a
CUDA graph of the step can replay on the same buffers.
"""

from __future__ import annotations

import torch

from .errors import PromptTooLong
from .model_config import ModelConfig


class KVCache:
    """k[i], v[i]: layer i's [B, L, HKV, D] buffers in the model dtype. lengths: int32 [B] on
    the device, how many positions of each sequence are written (what attention may read).
    `host_lengths` mirrors it on the host so capacity checks never sync the GPU."""

    def __init__(self, layers: int, batch: int, capacity: int, kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str) -> None:
        shape = (batch, capacity, kv_heads, head_dim)
        # zeros, not empty: a position no sequence has written is masked anyway, but NaN
        # garbage times a zero probability is still NaN in a matmul.
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.lengths = torch.zeros(batch, dtype=torch.int32, device=device)
        self.host_lengths = [0] * batch
        self.rows = torch.arange(batch, device=device)  # batch indices of the decode write, made once

    @classmethod
    def for_model(cls, config: ModelConfig, batch: int, capacity: int, dtype: torch.dtype,
                  device: torch.device | str) -> KVCache:
        return cls(config.layers, batch, capacity, config.kv_heads, config.head_dim, dtype, device)

    @property
    def batch(self) -> int:
        return self.lengths.shape[0]

    @property
    def capacity(self) -> int:
        return self.k[0].shape[1]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    def reset(self) -> None:
        """Forget every sequence (the buffers are kept; stale entries are masked by lengths)."""
        self.lengths.zero_()
        self.host_lengths = [0] * self.batch

    def set_lengths(self, lengths: list[int]) -> None:
        """After a prefill: sequence b holds positions 0..lengths[b]-1."""
        self.check_room(lengths)
        self.host_lengths = list(lengths)
        self.lengths.copy_(torch.tensor(lengths, dtype=torch.int32))

    def check_room(self, lengths: list[int]) -> None:
        longest = max(lengths)
        if longest > self.capacity:
            raise PromptTooLong(f"{longest} positions do not fit a KV cache of {self.capacity}")

    def advance(self) -> None:
        """Host side of a decode step (the device lengths are bumped by the step itself)."""
        self.host_lengths = [n + 1 for n in self.host_lengths]

    def slot(self, index: int) -> SlotView:
        """Row `index` as a batch-1 cache: a prefill into it writes that row of this cache
        in place (its k/v, its device length and its host length), nothing else."""
        return SlotView(self, index)


class SlotView(KVCache):
    """One row of a KVCache, seen as a cache of batch 1 (views, no copy): what the serving
    engine prefills a newly admitted request into while the other rows keep decoding."""

    def __init__(self, parent: KVCache, index: int) -> None:  # no super().__init__: it allocates
        if not 0 <= index < parent.batch:
            raise IndexError(f"slot {index} of a KV cache of batch {parent.batch}")
        self.parent, self.index = parent, index
        self.k = [t[index:index + 1] for t in parent.k]
        self.v = [t[index:index + 1] for t in parent.v]
        self.lengths = parent.lengths[index:index + 1]
        self.rows = parent.rows[:1]

    @property
    def host_lengths(self) -> list[int]:
        return [self.parent.host_lengths[self.index]]

    @host_lengths.setter
    def host_lengths(self, value: list[int]) -> None:
        self.parent.host_lengths[self.index] = int(value[0])
