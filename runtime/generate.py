"""Token generation with a LlamaModel: batched prefill, then one decode step per new token,
greedy or sampled, stopping each sequence at an EOS id or the token limit; timed.

Works on token ids (no tokenizer here). Timing uses time.perf_counter around each phase,
with torch.cuda.synchronize on a GPU so queued kernels are counted where they run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from .errors import InvalidSampling, InvalidWorkload, PromptTooLong
from .kv_cache import KVCache
from .llama import LlamaModel


@dataclass(frozen=True)
class Sampling:
    """temperature 0 is greedy (argmax; top_k / top_p then play no part). Otherwise logits
    are divided by temperature, cut to the top_k largest (0: no cut) and to the smallest set
    whose probability reaches top_p (1: no cut), and a token drawn with a torch.Generator
    seeded by `seed` (None: a fresh random seed)."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise InvalidSampling(f"temperature must be a finite number >= 0 (0 is greedy); got {t!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise InvalidSampling(f"top_k must be an integer >= 0 (0 is off); got {self.top_k!r}")
        p = self.top_p
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
            raise InvalidSampling(f"top_p must be in (0, 1] (1 is off); got {p!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


GREEDY = Sampling()


@dataclass
class Generation:
    """New token ids per sequence (an EOS that stopped one is its last id) and the timings.
    prefill_tokens: prompt tokens run (padding excluded); its seconds include choosing the
    first new token. decode_tokens: tokens decode steps produced for sequences still
    running; decode_seconds excludes a CUDA graph's one-off capture (capture_seconds)."""

    tokens: list[list[int]]
    prefill_seconds: float
    prefill_tokens: int
    decode_seconds: float
    decode_tokens: int
    capture_seconds: float = 0.0

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prefill_tokens / self.prefill_seconds if self.prefill_seconds > 0 else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_tokens / self.decode_seconds if self.decode_seconds > 0 else 0.0


def next_tokens(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> torch.Tensor:
    """int64 [B] token ids from logits [B, V]."""
    if sampling.greedy:
        return logits.argmax(-1)
    scores = logits.float() / sampling.temperature
    if 0 < sampling.top_k < scores.shape[-1]:
        kth = torch.topk(scores, sampling.top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if sampling.top_p < 1:
        ordered, order = scores.sort(dim=-1, descending=True)
        probs = torch.softmax(ordered, dim=-1)
        # drop a token when the tokens before it already reach top_p (the first always stays)
        drop = (probs.cumsum(-1) - probs) >= sampling.top_p
        scores = scores.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
    return torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator).squeeze(-1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _TokenReader:
    """Copies of each step's new tokens to the host without waiting for later steps: on a GPU
    into one of two pinned buffers (a copy queued behind a step, then an event), so reading
    step i's tokens waits for step i only, not for step i+1 queued after it."""

    def __init__(self, device: torch.device, batch: int) -> None:
        self.cuda = device.type == "cuda"
        self.buffers = ([torch.empty(batch, dtype=torch.long, pin_memory=True) for _ in range(2)]
                        if self.cuda else [])
        self.turn = 0

    def start(self, tokens: torch.Tensor):
        if not self.cuda:
            return tokens, None
        host = self.buffers[self.turn]
        self.turn ^= 1
        host.copy_(tokens, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return host, event

    @staticmethod
    def read(pending) -> list[int]:
        host, event = pending
        if event is not None:
            event.synchronize()
        return host.tolist()


class GraphedDecode:
    """A decode step captured in a CUDA graph and replayed: static token, cache and logits
    buffers, so a replay launches the whole step at once. Capture after a warm-up step (the
    kernels compiled and their configs resolved), so nothing compiles while capturing."""

    def __init__(self, model: LlamaModel, cache: KVCache, tokens: torch.Tensor) -> None:
        self.model, self.cache = model, cache
        self.tokens = tokens.clone()
        self.graph = torch.cuda.CUDAGraph()
        # Capture records the step without running it: the cache and lengths are untouched.
        with torch.cuda.graph(self.graph):
            self.logits = model.decode_step(self.tokens, cache)

    def __call__(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        if cache is not self.cache:
            raise InvalidWorkload("a captured decode step replays on the KV cache it was captured with")
        if max(cache.host_lengths) >= cache.capacity:
            raise PromptTooLong(f"decode past the KV cache's {cache.capacity} positions")
        self.tokens.copy_(tokens)
        self.graph.replay()
        cache.advance()
        return self.logits


def generate(model: LlamaModel, prompts: Sequence[Sequence[int]], max_new_tokens: int,
             sampling: Sampling = GREEDY, eos_ids: Iterable[int] = (), pad_id: int = 0) -> Generation:
    """Generate up to max_new_tokens after each prompt (a list of token ids), batched.

    The KV cache holds longest prompt + max_new_tokens positions (launches.py's seq + gen).
    Raises PromptTooLong (one line) when that exceeds the model's context, InvalidWorkload
    for an empty prompt, a bad token id or a bad limit.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise InvalidWorkload(f"max_new_tokens must be a positive integer; got {max_new_tokens!r}")
    prompts = [list(p) for p in prompts]
    if not prompts or any(len(p) == 0 for p in prompts):
        raise InvalidWorkload("generate needs at least one prompt, each of at least one token")
    vocab = model.config.vocab
    if any(not 0 <= t < vocab for p in prompts for t in p):
        raise InvalidWorkload(f"prompt token ids must be in [0, {vocab})")
    lengths = [len(p) for p in prompts]
    B, S = len(prompts), max(lengths)
    if S + max_new_tokens > model.max_positions:
        raise PromptTooLong(f"a prompt of {S} tokens plus {max_new_tokens} new ones exceeds the model's context "
                            f"of {model.max_positions} positions")
    eos = set(eos_ids)
    device = model.device
    cache = model.new_cache(B, S + max_new_tokens)
    tokens = torch.full((B, S), pad_id, dtype=torch.long)
    for b, p in enumerate(prompts):
        tokens[b, :len(p)] = torch.tensor(p, dtype=torch.long)
    generator = None
    if not sampling.greedy:
        generator = torch.Generator(device=device)
        if sampling.seed is None:
            generator.seed()
        else:
            generator.manual_seed(sampling.seed)

    _sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        current = next_tokens(model.prefill(tokens.to(device), lengths, cache), sampling, generator)
    picked = current.tolist()  # waits for the device
    prefill_seconds = time.perf_counter() - start
    out = [[t] for t in picked]
    done = [t in eos for t in picked]

    use_graph = model.variant.cuda_graphs and device.type == "cuda"
    step, graphed, capture_seconds, decode_tokens = model.decode, None, 0.0, 0
    steps, enqueued = max_new_tokens - 1, 0
    reader = _TokenReader(device, B)
    inflight = None  # the host copy of the newest step's tokens, not yet read
    start = time.perf_counter()
    with torch.inference_mode():
        while True:
            # One step ahead: step i+1 is queued before step i's tokens are read, so the
            # device runs it while the host reads and books them (no idle gap per step).
            # What the host knows lags one step: after EOS ends every sequence, one step more
            # may have run; its tokens are dropped, and the tokens are those of a lock-step loop.
            queued = None
            if enqueued < steps and not all(done):
                current = next_tokens(step(current, cache), sampling, generator)
                enqueued += 1
                queued = reader.start(current)
                if use_graph and graphed is None:  # the first step was the warm-up
                    _sync(device)
                    mark = time.perf_counter()
                    graphed = step = GraphedDecode(model, cache, current)
                    _sync(device)
                    capture_seconds = time.perf_counter() - mark
            if inflight is not None:
                for b, t in enumerate(reader.read(inflight)):
                    if not done[b]:
                        out[b].append(t)
                        done[b] = t in eos
                        decode_tokens += 1
            inflight = queued
            if inflight is None:
                break
    _sync(device)
    decode_seconds = time.perf_counter() - start - capture_seconds
    return Generation(out, prefill_seconds, sum(lengths), decode_seconds, decode_tokens, capture_seconds)
