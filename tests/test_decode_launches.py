"""What one Llama decode step launches, counted: every Triton kernel the launch list says, as
many times as it says, and outside our kernels only the three torch ops a step needs (the
embedding gather, the sequence lengths + 1 for attention, the lengths bump). A stray torch
op is a kernel launch of its own on a GPU, a few microseconds each in a CUDA graph: the
fused add_rmsnorm and rope_kv removed 4 a layer, and this keeps them out.

Counted with a torch dispatch mode (every torch op) and the kernels' range listener
(kernels/_nvtx.py: each launch through kernels.launching.run opens a "kernel" range); ops
inside a kernel's range are its own (output allocation, the interpreter's work), and ops
that launch nothing on a GPU (views, empty allocations) are not counted."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from kernels import _nvtx
from runtime.launches import kernel_launches
from runtime.llama import LlamaModel, synthetic_weights
from runtime.model_config import ModelConfig

TINY = ModelConfig(family="llama", hidden=32, intermediate=48, layers=3, heads=4, kv_heads=2, head_dim=8,
                   vocab=37, max_positions=64, norm_eps=1e-5, act="silu", rope_theta=10000.0)

# Ops that launch no kernel on a GPU: views and uninitialized allocations.
NO_KERNEL = {"empty", "empty_strided", "view", "_unsafe_view", "reshape", "slice", "select", "t", "transpose",
             "as_strided", "expand", "alias", "detach", "unsqueeze", "squeeze", "permute", "lift_fresh",
             "_reshape_alias", "unbind", "split", "split_with_sizes", "chunk", "narrow"}
STEP_OPS = Counter({"index": 1, "add": 1, "add_": 1})  # embed[tokens], lengths + 1, lengths.add_(1)


class _Flag:
    def __init__(self, census: "Census", attr: str, value) -> None:
        self.census, self.attr, self.value = census, attr, value

    def __enter__(self):
        setattr(self.census, self.attr, self.value)
        return self

    def __exit__(self, *exc):
        setattr(self.census, self.attr, None)
        return False


class Census(TorchDispatchMode):
    """Kernel launches (by kernel name) and kernel-launching torch ops outside them, in decode steps."""

    def __init__(self) -> None:
        super().__init__()
        self.kernels: Counter = Counter()
        self.torch_ops: Counter = Counter()
        self.phase = None
        self.kernel = None

    def range(self, message: str, category: str):  # the kernels' range listener
        if category == "model" and message == "decode step" and self.phase is None:
            return _Flag(self, "phase", message)
        if category == "kernel" and self.phase and self.kernel is None:
            self.kernels[message] += 1
            return _Flag(self, "kernel", message)
        return _nvtx.NO_RANGE

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if self.phase and self.kernel is None and name not in NO_KERNEL:
            self.torch_ops[name] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("batch", [1, 3])
def test_a_decode_step_launches_the_list_and_three_torch_ops(batch, seed):
    model = LlamaModel(TINY, synthetic_weights(TINY, seed=seed), ("fp32", None, "triton"))
    prompt_len, gen = 5, 4
    cache = model.new_cache(batch, prompt_len + gen)
    tokens = torch.randint(0, TINY.vocab, (batch, prompt_len), generator=torch.Generator().manual_seed(seed))
    logits = model.prefill(tokens, [prompt_len] * batch, cache)
    census = Census()
    previous = _nvtx.listen(census)
    try:
        with census:
            model.decode(logits.argmax(-1), cache)
    finally:
        _nvtx.listen(previous)
    listed = Counter()
    for launch in kernel_launches(TINY, batch=batch, seq=prompt_len, dtype="fp32", gen=gen):
        if launch.phase == "decode":
            listed[launch.kernel] += launch.count
    assert census.kernels == listed
    # layer 0's norm, then add_rmsnorm twice a layer (the last one with the final norm)
    assert census.kernels["rmsnorm"] == 1 and census.kernels["add_rmsnorm"] == 2 * TINY.layers
    assert census.kernels["rope_kv"] == TINY.layers and "rope" not in census.kernels
    assert census.torch_ops == STEP_OPS, census.torch_ops
