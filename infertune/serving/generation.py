"""One generation request between the engine thread and the event loop.

The engine calls a request's on_event from its own thread, and must not wait; the callback
hands each event to the request's asyncio queue with loop.call_soon_threadsafe, and the
handler reads the queue on the loop. Text comes out as Pieces: the final text each token
makes (see text.py), and at the end the finish reason and usage.

A request that ends on our side first (a stop string matched, the client went away, the
handler was cancelled) cancels its engine handle, so its slot is free at the next step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from runtime.engine import Engine, Finished, GenRequest, Handle, Token
from runtime.generate import Sampling

from .metrics import ServerMetrics
from .schemas import usage
from .text import Detokenizer, StopStrings

DISCONNECT_POLL_S = 0.25  # how often a non-streaming request checks that its client is still there


class GenerationFailed(Exception):
    """The engine ended the request without a result: `reason` "cancelled" (the engine stopped)
    or "error" (a step failed; `message` says why)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ClientGone(Exception):
    """The client of a non-streaming request disconnected before the result."""


@dataclass(frozen=True)
class Piece:
    text: str
    finish_reason: str | None = None        # "stop" | "length" on the last piece
    usage: dict[str, int] | None = None     # on the last piece


class Generation:
    """Submit one request to the engine and read its events on the running loop."""

    def __init__(self, engine: Engine, prompt: list[int], max_tokens: int, sampling: Sampling,
                 stop_ids: frozenset[int] | None) -> None:
        self.engine = engine
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.arrival = time.perf_counter()
        self.finished = False
        self.prompt_tokens = len(prompt)
        request = GenRequest(prompt=prompt, max_tokens=max_tokens, sampling=sampling, stop_ids=stop_ids,
                             on_event=self._on_event)
        self.handle: Handle = engine.submit(request)  # QueueFull, InvalidWorkload, EngineStopped

    def _on_event(self, event: Any) -> None:  # the engine thread
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the loop is closed (server shut down): nobody is listening
            pass

    def cancel(self) -> None:
        if not self.finished:
            self.finished = True
            self.handle.cancel()

    async def events(self, request: Any = None) -> AsyncIterator[Token | Finished]:
        """Token events, then one Finished. With `request` (a starlette Request), checks every
        DISCONNECT_POLL_S that its client is still connected; raises ClientGone if not."""
        while True:
            if request is None:
                event = await self.queue.get()
            else:
                try:
                    event = await asyncio.wait_for(self.queue.get(), DISCONNECT_POLL_S)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        self.cancel()
                        raise ClientGone() from None
                    continue
            if isinstance(event, Finished):
                self.finished = True
            yield event
            if self.finished:
                return


async def pieces(gen: Generation, tokenizer: Any, stops: list[str], metrics: ServerMetrics,
                 request: Any = None) -> AsyncIterator[Piece]:
    """The request's text as it becomes final; the last Piece has finish_reason and usage.
    Raises GenerationFailed, ClientGone. Cancels the engine request if left early."""
    detok = Detokenizer(tokenizer, skip=_eos_of(gen, tokenizer))
    cut = StopStrings(stops)
    count, last = 0, None
    try:
        async for event in gen.events(request):
            if isinstance(event, Token):
                count += 1
                metrics.token(event.time)
                if last is None:
                    metrics.ttft.observe(event.time - gen.arrival)
                else:
                    metrics.itl.observe(event.time - last)
                last = event.time
                text = cut.add(detok.add(event.token))
                if cut.stopped:  # a stop string: done here; the engine's slot is freed at its next step
                    gen.cancel()
                    metrics.e2e.observe(time.perf_counter() - gen.arrival)
                    yield Piece(text, "stop", usage(gen.prompt_tokens, count))
                    return
                if text:
                    yield Piece(text)
                continue
            if event.reason not in ("stop", "length"):
                raise GenerationFailed(event.reason, event.error or "the server stopped before this request finished")
            text = cut.add(detok.flush())
            reason = "stop" if cut.stopped else event.reason
            text += cut.flush()
            metrics.e2e.observe(event.time - gen.arrival)
            yield Piece(text, reason, usage(event.prompt_tokens, event.completion_tokens))
            return
    finally:
        gen.cancel()


def _eos_of(gen: Generation, tokenizer: Any) -> frozenset[int]:
    """Ids whose text is never shown: the tokenizer's EOS (its decode skips specials anyway) and
    the engine's (a model without a tokenizer would otherwise show its stop id's placeholder)."""
    return frozenset(getattr(tokenizer, "eos_ids", ())) | gen.engine.eos_ids
