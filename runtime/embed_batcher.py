"""Dynamic batching of embedding requests: what `infertune serve` runs for an encoder.

Requests (each a list of texts) wait in a queue; the batcher's thread takes the first one,
then keeps taking more until `max_batch` texts are gathered or `max_wait_ms` has passed
since the first arrived, and embeds them in one call of runtime.embed (which sorts by
length, so each forward pads to about its own texts). Each request's future gets its
vectors, in its own order, and its token count. A request larger than max_batch runs alone.

An embedding is per text: mean pooling and normalization see only that text's rows, so a
text's vector does not depend on what it was batched with beyond float rounding of the
padded matmul (the server test holds batched results to the direct call at 1e-5).
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import torch

from kernels.config_source import ConfigSource

from .embed import (
    EmbedSettings,
    _encode_batches,
    tokenize,
    truncate,
)
from .engine import EngineStopped, QueueFull
from .errors import InvalidWorkload
from .worker import Worker


@dataclass(frozen=True)
class EmbedResult:
    vectors: list[list[float]]
    tokens: int  # tokens encoded after truncation, specials included


@dataclass
class _Job:
    seqs: list[list[int]]
    future: Future


class EmbedBatcher(Worker):
    name = "infertune-embedder"

    def __init__(self, model: Any, tokenizer: Any, settings: EmbedSettings | None = None, *, max_batch: int = 32,
                 max_wait_ms: float = 5.0, max_queue: int = 1024, config_source: ConfigSource | None = None) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise InvalidWorkload(f"max_batch must be a positive integer; got {max_batch!r}")
        if not max_wait_ms >= 0:
            raise InvalidWorkload(f"max_wait_ms must be >= 0; got {max_wait_ms!r}")
        super().__init__(config_source)
        self.model, self.tokenizer = model, tokenizer
        self.settings = settings or EmbedSettings()
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000, max_queue
        self.max_length = min(self.settings.max_length, model.config.max_positions)
        self._queue: deque[_Job] = deque()
        self._running = 0
        self._requests = 0
        self._batches = 0

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text after truncation (what submit runs); InvalidWorkload when empty."""
        seqs = [truncate(ids, self.max_length) for ids in tokenize(self.tokenizer, texts)]
        if not seqs or any(not ids for ids in seqs):
            raise InvalidWorkload("each input needs at least one token")
        return seqs

    def submit(self, texts: list[str]) -> Future:
        """Queue texts; a Future of EmbedResult. Raises InvalidWorkload, QueueFull, EngineStopped."""
        seqs = self.tokenize(list(texts))
        future: Future = Future()
        with self._cond:
            if self._stopping:
                raise EngineStopped("the embedding batcher is stopped")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"the queue is full ({self.max_queue} requests waiting)", retry_after=1.0)
            self._queue.append(_Job(seqs, future))
            self._cond.notify()
        return future

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"queue_depth": len(self._queue), "running": self._running, "requests_total": self._requests,
                    "batches_total": self._batches}

    def stop(self, timeout: float = 10.0) -> None:
        self._halt(timeout)
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
        for job in left:
            job.future.set_exception(EngineStopped("the server stopped before this request ran"))

    def _take(self) -> list[_Job] | None:
        """The next batch, or None when stopping. Waits up to max_wait for more texts."""
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait(0.5)
            first = time.perf_counter()
            jobs = [self._queue.popleft()]
            texts = len(jobs[0].seqs)
            while texts < self.max_batch and not self._stopping:
                if self._queue:
                    if texts + len(self._queue[0].seqs) > self.max_batch:
                        break
                    job = self._queue.popleft()
                    jobs.append(job)
                    texts += len(job.seqs)
                    continue
                left = self.max_wait - (time.perf_counter() - first)
                if left <= 0:
                    break
                self._cond.wait(left)
            self._running = len(jobs)
            return jobs

    def _serve(self) -> None:
        while (jobs := self._take()) is not None:
            self._embed(jobs)

    def _embed(self, jobs: list[_Job]) -> None:
        live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        try:
            seqs = [s for j in live for s in j.seqs]
            if seqs:
                with torch.inference_mode():
                    vectors = _encode_batches(self.model, seqs, max(self.max_batch, len(seqs)),
                                              self.settings.normalize)
                start = 0
                for job in live:
                    n = len(job.seqs)
                    job.future.set_result(EmbedResult(vectors[start:start + n].tolist(), sum(map(len, job.seqs))))
                    start += n
        except Exception as error:  # noqa: BLE001 - a failed batch fails its requests, not the server
            for job in live:
                if not job.future.done():
                    job.future.set_exception(error)
        finally:
            with self._cond:
                self._running = 0
                self._requests += len(jobs)
                self._batches += 1
