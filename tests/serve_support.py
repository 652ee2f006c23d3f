"""What the `infertune serve` tests share: a tiny decoder behind the real engine, a ServeTarget
around it, the app served on a free 127.0.0.1 port, and SSE parsing."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import torch

from infertune.serving import create_app
from infertune.serving.server import BackgroundServer
from infertune.serving_setup import ServeTarget
from runtime.engine import Engine, EngineSettings
from runtime.llama import LlamaModel, synthetic_weights
from runtime.model_config import ModelConfig

NAME = "tiny-llama"
VARIANT = "fp32:torch"
CONFIG = ModelConfig(family="llama", hidden=64, intermediate=96, layers=2, heads=4, kv_heads=2, head_dim=16,
                     vocab=300, max_positions=2048, norm_eps=1e-6, act="silu", rope_theta=10000.0)


def tiny_llama(seed: int = 0) -> LlamaModel:
    """Linear weights at std 0.1, not synthetic_weights' 0.02: at 0.02 a 2-layer model's logits
    are nearly flat and greedy decoding repeats one token, which would hide a mixed-up batch."""
    weights = {k: (v * 5 if v.dim() == 2 else v) for k, v in synthetic_weights(CONFIG, seed).items()}
    return LlamaModel(CONFIG, weights, ("fp32", None, "torch"))


class Target(ServeTarget):
    """A ServeTarget whose engine the test may hold back: with autostart False the lifespan does
    not start it, so requests stay queued until the test calls engine.start()."""

    autostart = True

    def start(self) -> None:
        if self.autostart:
            super().start()


def llama_target(model: LlamaModel, *, max_batch: int = 4, max_queue: int = 8, max_len: int = 256,
                 eos_ids=(), autostart: bool = True) -> Target:
    engine = Engine(model, EngineSettings(max_batch=max_batch, max_len=max_len, max_queue=max_queue),
                    eos_ids=eos_ids)
    target = Target(name=NAME, family="llama", engine=engine, embedder=None, tokenizer=None, variant=VARIANT,
                    device="cpu", max_len=max_len)
    target.autostart = autostart
    return target


@contextlib.contextmanager
def serving(target: ServeTarget) -> Iterator[BackgroundServer]:
    """The app on a free 127.0.0.1 port; always shut down (the engine stops with the lifespan)."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: intra-op threads only add waits on a shared CPU
    try:
        with BackgroundServer(create_app(target), timeout=20) as server:
            yield server
    finally:
        target.stop()
        torch.set_num_threads(torch_threads)


def sse_events(lines: Iterator[str]) -> list:
    """The JSON objects of an SSE stream, then "[DONE]" as the string itself."""
    out = []
    for line in lines:
        if not line.startswith("data: "):
            assert line == "", f"unexpected SSE line {line!r}"
            continue
        payload = line[len("data: "):]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out
