"""Iteration-level (continuous) batching for a LlamaModel: what `infertune serve` runs.

One KV cache of `max_batch` rows ("slots") of `max_len` positions lives as long as the
engine. Each scheduler step
  1. drops cancelled requests (their slots are free from this step on),
  2. admits waiting requests into free slots, first come first served, while the prompt
     tokens admitted this step stay within `prefill_budget` (at least one request a step,
     so a prompt longer than the budget still runs), and prefills each one alone (batch 1,
     its exact length) into its slot, which gives its first token,
  3. runs one decode step over all slots and hands each running request its next token;
     a request leaves at a stop id or its max_tokens, and its slot is reused.

Why every slot decodes every step, and prefill is one request at a time: a row's result
then depends on nothing but its own tokens. A matmul at a fixed M computes each row the
same way wherever it sits (checked on CPU torch: bitwise equal at M = 2..16 for every row
position; Triton tiles rows alike), attention and norms are per row. So a request's greedy
output is bitwise the same alone or beside any other requests: the test of batching.
The cost is that idle slots ride along; decode at M <= 16 is bound by reading the weights
(one pass whatever M), so an idle row costs little there, and the shape is fixed: one set of
tuned configs prepared before the first request, and one CUDA graph (`+cg` variants).

Idle rows keep length 0 (reset before each step), so they attend to one position and never
run out of room. A request's prompt plus max_tokens must fit max_len: checked at submit.

Threading: `submit` and `Handle.cancel` may be called from any thread; `step` runs on one
thread (the engine's own after `start`, or a test's). Events are delivered by calling the
request's `on_event` from the engine thread; it must not block (the server hands them to
its event loop).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

import kernels
from kernels.config_source import ConfigSource

from .errors import InvalidWorkload, ModelError
from .generate import GREEDY, GraphedDecode, Sampling, next_tokens
from .llama import LlamaModel
from .worker import Worker


@dataclass(frozen=True)
class EngineSettings:
    max_batch: int = 8          # decode slots (KV cache rows); decode always runs all of them
    max_len: int = 1024         # positions per slot: prompt + generated tokens
    max_queue: int = 64         # waiting (not yet admitted) requests; beyond it submit raises QueueFull
    prefill_budget: int = 2048  # prompt tokens prefilled between two decode steps (>= 1 request)

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_len", "max_queue", "prefill_budget"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidWorkload(f"{name} must be a positive integer; got {value!r}")
        if self.max_len < 2:
            raise InvalidWorkload(f"max_len must hold a prompt token and a new one (>= 2); got {self.max_len}")


class QueueFull(ModelError):
    """The waiting queue is at max_queue. `retry_after`: seconds, an estimate (>= 1)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ContextTooLong(InvalidWorkload):
    """A prompt plus max_tokens beyond the engine's max_len (one line, OpenAI's wording)."""


class EngineStopped(ModelError):
    """submit after stop()."""


@dataclass(frozen=True)
class Token:
    token: int
    index: int      # 0 for the token the prefill chose
    time: float     # time.perf_counter() when emitted


@dataclass(frozen=True)
class Finished:
    reason: str     # "stop" (a stop id, emitted as the Token before) | "length" | "cancelled" | "error"
    prompt_tokens: int
    completion_tokens: int
    error: str | None
    time: float


Event = Token | Finished


def _ignore(event: Event) -> None:
    pass


@dataclass
class GenRequest:
    prompt: list[int]
    max_tokens: int
    sampling: Sampling = GREEDY
    stop_ids: frozenset[int] | None = None          # None: the engine's eos ids
    on_event: Callable[[Event], None] = _ignore     # called from the engine thread


@dataclass(frozen=True)
class EngineStats:
    queue_depth: int
    running: int
    slots: int
    steps: int
    prompt_tokens_total: int
    generated_tokens_total: int
    requests_total: int


class Handle:
    """What submit returns: the request's id and a way to cancel it."""

    def __init__(self, engine: Engine, seq: _Seq) -> None:
        self._engine, self._seq = engine, seq
        self.id = seq.id

    def cancel(self) -> None:
        """Thread-safe. The slot is freed at the next step, then Finished("cancelled") (unless
        the request finished first)."""
        with self._engine._cond:
            self._seq.cancelled = True
            self._engine._cond.notify()


@dataclass
class _Seq:
    id: int
    request: GenRequest
    stop_ids: frozenset[int]
    generator: torch.Generator | None = None
    slot: int | None = None
    generated: int = 0
    cancelled: bool = False
    done: bool = False
    submitted: float = field(default_factory=time.perf_counter)


class Engine(Worker):
    name = "infertune-engine"

    def __init__(self, model: LlamaModel, settings: EngineSettings = EngineSettings(), *,
                 eos_ids: Iterable[int] = (), config_source: ConfigSource | None = None) -> None:
        super().__init__(config_source)
        if settings.max_len > model.max_positions:
            raise InvalidWorkload(f"max_len {settings.max_len} exceeds the model's context of "
                                  f"{model.max_positions} positions")
        self.model, self.settings = model, settings
        self.eos_ids = frozenset(int(i) for i in eos_ids)
        B = settings.max_batch
        self.cache = model.new_cache(B, settings.max_len)
        self._views = [self.cache.slot(i) for i in range(B)]
        self._slots: list[_Seq | None] = [None] * B
        self._tokens = torch.zeros(B, dtype=torch.long, device=model.device)  # each slot's last token
        self._live = torch.zeros(B, dtype=torch.int32, device=model.device)   # 1 where a slot runs
        self._graph: GraphedDecode | None = None
        self.graph_error: str | None = None   # why a +cg variant decodes without its CUDA graph
        self._decodes = 0
        self._waiting: deque[_Seq] = deque()
        self._ids = itertools.count(1)
        self._stopped = False
        self._steps = self._prompt_total = self._generated_total = self._requests = 0
        self._seconds_per_request = 1.0  # running mean of request latency, for Retry-After

    # -- any thread -----------------------------------------------------------------------
    def submit(self, request: GenRequest) -> Handle:
        """Queue a request. Raises ContextTooLong / InvalidWorkload (bad request), QueueFull,
        EngineStopped. Thread-safe."""
        prompt = [int(t) for t in request.prompt]
        vocab, limit = self.model.config.vocab, self.settings.max_len
        if not prompt:
            raise InvalidWorkload("the prompt is empty: it needs at least one token")
        if any(not 0 <= t < vocab for t in prompt):
            raise InvalidWorkload(f"prompt token ids must be in [0, {vocab})")
        n = request.max_tokens
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidWorkload(f"max_tokens must be a positive integer; got {n!r}")
        if len(prompt) + n > limit:
            raise ContextTooLong(f"This model's maximum context length is {limit} tokens. However, you requested "
                                 f"{len(prompt) + n} tokens ({len(prompt)} in the prompt, {n} for the completion). "
                                 "Please reduce the length of the prompt or completion.")
        request.prompt = prompt
        stop = self.eos_ids if request.stop_ids is None else frozenset(request.stop_ids)
        with self._cond:
            if self._stopped or self._stopping:
                raise EngineStopped("the engine is stopped")
            if len(self._waiting) >= self.settings.max_queue:
                ahead = len(self._waiting) / self.settings.max_batch
                raise QueueFull(f"the queue is full ({self.settings.max_queue} requests waiting)",
                                retry_after=max(1.0, math.ceil(ahead * self._seconds_per_request)))
            seq = _Seq(next(self._ids), request, stop)
            self._waiting.append(seq)
            self._cond.notify()
        return Handle(self, seq)

    def stats(self) -> EngineStats:
        with self._cond:
            return EngineStats(len(self._waiting), sum(s is not None for s in self._slots), self.settings.max_batch,
                               self._steps, self._prompt_total, self._generated_total, self._requests)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread; every request not finished gets Finished("cancelled")."""
        self._halt(timeout)
        with self._cond:
            self._stopped = True
            pending = list(self._waiting)
            self._waiting.clear()
        pending += [s for s in self._slots if s is not None]
        self._slots = [None] * self.settings.max_batch
        for seq in pending:
            self._finish(seq, "cancelled")

    # -- the engine thread ----------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                if not self._waiting and not any(self._slots):
                    self._cond.wait(0.5)
                    continue
            try:
                self.step()
            except Exception as error:  # noqa: BLE001 - a failed step fails its requests, not the server
                self._fail_all(error)

    def step(self) -> bool:
        """One scheduler iteration; False when there was nothing to do."""
        admitted = self._admit()
        running = [s for s in self._slots if s is not None]
        if not admitted and not running:
            return False
        detail = f"running={len(running)} admitted={len(admitted)}"
        with kernels.nvtx_range("scheduler step", "model", detail), torch.inference_mode():
            for seq in admitted:
                self._prefill(seq)
            if any(s is not None for s in self._slots):
                self._decode()
        self._steps += 1
        return True

    def _admit(self) -> list[_Seq]:
        """Drop cancelled requests, move waiting ones into free slots within the budget."""
        cancelled, admitted = [], []
        with self._cond:
            for i, seq in enumerate(self._slots):
                if seq is not None and seq.cancelled:
                    self._slots[i] = None
                    self._live[i] = 0  # else its length keeps growing past max_len
                    cancelled.append(seq)
            kept = deque()
            for seq in self._waiting:
                (cancelled if seq.cancelled else kept).append(seq)
            self._waiting = kept
            free = [i for i, s in enumerate(self._slots) if s is None]
            budget = self.settings.prefill_budget
            while free and self._waiting:
                size = len(self._waiting[0].request.prompt)
                if admitted and size > budget:
                    break
                seq = self._waiting.popleft()
                seq.slot = free.pop(0)
                self._slots[seq.slot] = seq
                budget -= size
                admitted.append(seq)
        for seq in cancelled:
            self._finish(seq, "cancelled")
        return admitted

    def _prefill(self, seq: _Seq) -> None:
        request, slot = seq.request, seq.slot
        if not request.sampling.greedy:
            seq.generator = torch.Generator(device=self.model.device)
            if request.sampling.seed is None:
                seq.generator.seed()
            else:
                seq.generator.manual_seed(request.sampling.seed)
        tokens = torch.tensor([request.prompt], dtype=torch.long)
        logits = self.model.prefill(tokens, [len(request.prompt)], self._views[slot])
        token = int(next_tokens(logits, request.sampling, seq.generator)[0])
        self._prompt_total += len(request.prompt)
        self._tokens[slot] = token
        self._live[slot] = 1
        self._emit(seq, token)

    def _decode(self) -> None:
        cache = self.cache
        # idle rows back to length 0: they attend to one position and never fill up
        cache.lengths.mul_(self._live)
        cache.host_lengths = [n if s is not None else 0 for n, s in zip(cache.host_lengths, self._slots)]
        if self._graph is not None:
            logits = self._graph(self._tokens, cache)
        else:
            logits = self.model.decode(self._tokens, cache)
        self._decodes += 1
        running = [s for s in self._slots if s is not None]
        picked = logits.argmax(-1)
        for seq in running:
            if not seq.request.sampling.greedy:
                row = logits[seq.slot:seq.slot + 1]
                picked[seq.slot] = next_tokens(row, seq.request.sampling, seq.generator)[0]
        self._tokens.copy_(picked)
        values = picked.tolist()  # waits for the device
        for seq in running:
            self._emit(seq, values[seq.slot])
        if (self._graph is None and self._decodes == 1 and self.model.variant.cuda_graphs
                and self.model.device.type == "cuda" and self.graph_error is None):
            # the first step was the warm-up (kernels compiled, configs resolved): capture now.
            # A capture that fails is kept as graph_error and the engine decodes eagerly: retrying
            # it every step would fail every request.
            try:
                self._graph = GraphedDecode(self.model, cache, self._tokens)
            except Exception as error:  # noqa: BLE001
                self.graph_error = f"{type(error).__name__}: {error}".splitlines()[0]

    def _emit(self, seq: _Seq, token: int) -> None:
        index = seq.generated
        seq.generated += 1
        self._generated_total += 1
        self._deliver(seq, Token(token, index, time.perf_counter()))
        if token in seq.stop_ids:
            self._release(seq, "stop")
        elif seq.generated >= seq.request.max_tokens:
            self._release(seq, "length")

    def _release(self, seq: _Seq, reason: str, error: str | None = None) -> None:
        if seq.slot is not None and self._slots[seq.slot] is seq:
            self._slots[seq.slot] = None
            self._live[seq.slot] = 0
        self._finish(seq, reason, error)

    def _finish(self, seq: _Seq, reason: str, error: str | None = None) -> None:
        if seq.done:
            return
        seq.done = True
        now = time.perf_counter()
        self._requests += 1
        # a running mean over the last ~20 requests, for QueueFull's Retry-After
        self._seconds_per_request += (now - seq.submitted - self._seconds_per_request) / 20
        self._deliver(seq, Finished(reason, len(seq.request.prompt), seq.generated, error, now))

    def _deliver(self, seq: _Seq, event: Event) -> None:
        try:
            seq.request.on_event(event)
        except Exception:  # noqa: BLE001 - a broken listener loses its own events, nothing else
            seq.cancelled = True

    def _fail_all(self, error: Exception) -> None:
        """A step raised (out of memory, a kernel error): fail the running requests, reset the
        cache, keep serving the queue."""
        text = f"{type(error).__name__}: {error}".splitlines()[0]
        for seq in [s for s in self._slots if s is not None]:
            self._release(seq, "error", text)
        self.cache.reset()
        self._live.zero_()
        self._graph = None
        self._decodes = 0
