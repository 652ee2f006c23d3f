"""One request to an OpenAI-compatible endpoint, timed chunk by chunk.

Completions and chat are streamed (`stream: true`, `stream_options.include_usage: true`) so
the first token and every later chunk get an arrival time; embeddings are one request and one
response. The output length is controlled with `max_tokens` = the drawn length plus
`ignore_eos: true` (a vLLM/SGLang extension; `infertune serve` accepts it too), as serving
benchmarks do: otherwise a model that stops early makes every figure depend on its text.

What the engines send differs, and all of it is read:
- vLLM: usage in a last chunk with `choices: []` (when include_usage), `data: [DONE]`;
  chat's first chunk carries only `{"role": "assistant"}` (no token: not a first token);
- SGLang: `"usage": null` in every chunk, then the usage chunk;
- TensorRT-LLM's server: may ignore include_usage (tokens are then counted with the
  tokenizer handed in, else one per content chunk) and may send empty-content chunks.
A chunk whose content is empty is not a token arrival.

Every failure is a Result with an error kind, never an exception: `http_NNN` (the status),
`connect`, `timeout`, `disconnected` (the stream ended before [DONE] or a finish_reason),
`malformed` (a chunk that is not JSON, not an event stream, or a response over max_bytes),
`stream_error` (an error object inside a 200 stream)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .sse import DONE, SSEError, SSEParser

ENDPOINTS = ("completions", "chat", "embeddings")
PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions", "embeddings": "/v1/embeddings"}
# Bound on one response: 16 MiB is ~50k streamed chunks of vLLM's ~300 bytes.
MAX_BYTES = 16 * 2**20
DETAIL_CHARS = 200


@dataclass(frozen=True)
class Request:
    index: int
    prompt: str | list[int]         # text, or token ids (completions only)
    max_tokens: int                 # output tokens wanted (embeddings: unused)
    prompt_tokens: int              # the intended prompt length, when the server reports none


@dataclass
class Result:
    """What happened to one request; times are the clock's (perf_counter) seconds."""
    index: int
    sent: float | None = None
    first: float | None = None                              # first chunk carrying a token
    token_times: list[float] = field(default_factory=list)  # every chunk carrying tokens (first included)
    end: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    status: int | None = None                               # HTTP status, None when none came
    error: str | None = None                                # kind (module docstring); None: completed
    detail: str | None = None                               # one line for the error
    usage_reported: bool = False                            # the server's usage gave completion_tokens

    @property
    def ok(self) -> bool:
        return self.error is None and self.end is not None

    def fail(self, kind: str, detail: str, now: float) -> None:
        if self.error is None:
            self.error, self.detail = kind, _line(detail)
        if self.end is None:
            self.end = now


def _line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 3] + "..."


def request_body(endpoint: str, model: str, request: Request, *, ignore_eos: bool = True) -> dict[str, Any]:
    """The JSON body for one request (greedy: temperature 0, so runs repeat)."""
    if endpoint == "embeddings":
        return {"model": model, "input": request.prompt if isinstance(request.prompt, str) else [request.prompt],
                "encoding_format": "float"}
    body: dict[str, Any] = {"model": model, "max_tokens": request.max_tokens, "temperature": 0.0, "stream": True,
                            "stream_options": {"include_usage": True}}
    if ignore_eos:
        body["ignore_eos"] = True
    if endpoint == "chat":
        body["messages"] = [{"role": "user", "content": request.prompt}]
    else:
        body["prompt"] = request.prompt
    return body


def _error_text(raw: bytes) -> str:
    try:
        error = json.loads(raw)["error"]
        return str(error.get("message", error)) if isinstance(error, dict) else str(error)
    except (ValueError, KeyError, TypeError):
        return raw[:DETAIL_CHARS].decode("utf-8", "replace")


class _Stream:
    """Reads parsed chunks into a Result."""

    def __init__(self, endpoint: str, result: Result, count_tokens: Callable[[str], int] | None) -> None:
        self.endpoint, self.result, self.count_tokens = endpoint, result, count_tokens
        self.text: list[str] = []
        self.chunks = 0
        self.done = False       # [DONE] seen
        self.finished = False   # a finish_reason seen

    def chunk(self, data: str, now: float) -> bool:
        """Take one event's data; False when the request failed and reading should stop."""
        if data.strip() == DONE:
            self.done = True
            return True
        try:
            obj = json.loads(data)
        except ValueError:
            self.result.fail("malformed", f"a chunk that is not JSON: {data[:80]!r}", now)
            return False
        if not isinstance(obj, dict):
            self.result.fail("malformed", f"a chunk that is not a JSON object: {data[:80]!r}", now)
            return False
        if obj.get("error") is not None:
            self.result.fail("stream_error", _error_text(data.encode()), now)
            return False
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self._usage(usage)
        choices = obj.get("choices") or []
        if not isinstance(choices, list):
            self.result.fail("malformed", "choices is not a list", now)
            return False
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            piece = choice.get("text") if self.endpoint == "completions" else (choice.get("delta") or {}).get("content")
            if isinstance(piece, str) and piece:
                self.text.append(piece)
                self.chunks += 1
                if self.result.first is None:
                    self.result.first = now
                self.result.token_times.append(now)
            if choice.get("finish_reason"):
                self.finished = True
        return True

    def _usage(self, usage: dict[str, Any]) -> None:
        for key in ("prompt_tokens", "completion_tokens"):
            value = usage.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                setattr(self.result, key, value)
                self.result.usage_reported |= key == "completion_tokens"


async def send(client: httpx.AsyncClient, url: str, model: str, endpoint: str, request: Request, *,
               timeout: float, count_tokens: Callable[[str], int] | None = None, ignore_eos: bool = True,
               max_bytes: int = MAX_BYTES, clock: Callable[[], float] = time.perf_counter,
               result: Result | None = None) -> Result:
    """Send `request` to `url` (the server's base, e.g. http://127.0.0.1:8000) and time it.

    `result` (optional) is filled in place, so a caller that cancels the task still holds what
    arrived before; `timeout` bounds the whole request (connect to last byte), after which it is
    an error of kind "timeout". `count_tokens(text)` counts output tokens when the server
    reports no usage (else one token per content chunk). Never raises for a failed request;
    asyncio.CancelledError propagates."""
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; endpoints: {', '.join(ENDPOINTS)}")
    out = result or Result(request.index)
    body = request_body(endpoint, model, request, ignore_eos=ignore_eos)
    target = url.rstrip("/") + PATHS[endpoint]
    out.sent = clock()
    try:
        async with asyncio.timeout(timeout):
            if endpoint == "embeddings":
                await _embeddings(client, target, body, out, max_bytes, clock)
            else:
                await _stream(client, target, body, _Stream(endpoint, out, count_tokens), max_bytes, clock)
    except TimeoutError:
        out.fail("timeout", f"no complete response within {timeout:g} s", clock())
    except httpx.ConnectError as exc:
        out.fail("connect", str(exc) or "connection refused", clock())
    except httpx.TimeoutException as exc:
        out.fail("timeout", str(exc) or type(exc).__name__, clock())
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        out.fail("disconnected", str(exc) or type(exc).__name__, clock())
    except httpx.HTTPError as exc:  # any other transport failure: a closed connection in other words
        out.fail("disconnected", f"{type(exc).__name__}: {exc}", clock())
    if out.ok and out.prompt_tokens is None:
        out.prompt_tokens = (count_tokens(request.prompt) if count_tokens and isinstance(request.prompt, str)
                             else request.prompt_tokens)
    return out


async def _read_error(response: httpx.Response, out: Result, max_bytes: int, clock) -> None:
    raw = bytearray()
    async for part in response.aiter_bytes():
        raw += part
        if len(raw) > min(max_bytes, 65536):
            break
    out.fail(f"http_{response.status_code}", _error_text(bytes(raw)), clock())


async def _embeddings(client, target, body, out: Result, max_bytes: int, clock) -> None:
    async with client.stream("POST", target, json=body) as response:
        out.status = response.status_code
        if response.status_code != 200:
            await _read_error(response, out, max_bytes, clock)
            return
        raw = bytearray()
        async for part in response.aiter_bytes():
            raw += part
            if len(raw) > max_bytes:
                out.fail("malformed", f"a response over {max_bytes} bytes", clock())
                return
        now = clock()
        try:
            obj = json.loads(raw)
            data = obj["data"]
            if not isinstance(data, list) or not data:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            out.fail("malformed", f"not an embeddings response: {bytes(raw[:80])!r}", now)
            return
        usage = obj.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
            out.prompt_tokens = usage["prompt_tokens"]
        out.completion_tokens = 0
        out.end = now


async def _stream(client, target, body, reader: _Stream, max_bytes: int, clock) -> None:
    out = reader.result
    async with client.stream("POST", target, json=body) as response:
        out.status = response.status_code
        if response.status_code != 200:
            await _read_error(response, out, max_bytes, clock)
            return
        if "text/event-stream" not in response.headers.get("content-type", "text/event-stream"):
            await _whole(response, reader, max_bytes, clock)  # a server that ignored stream: true
            return
        parser = SSEParser()
        size = 0
        try:
            async for part in response.aiter_bytes():
                now = clock()
                size += len(part)
                if size > max_bytes:
                    out.fail("malformed", f"a response over {max_bytes} bytes", now)
                    return
                for event in parser.feed(part):
                    if not reader.chunk(event.data, now):
                        return
                    if reader.done:  # [DONE]: whatever follows is not read
                        _finish(reader, out, now)
                        return
            now = clock()
            for event in parser.close():
                if not reader.chunk(event.data, now):
                    return
        except SSEError as exc:
            out.fail("malformed", str(exc), clock())
            return
    _finish(reader, out, clock())


def _finish(reader: _Stream, out: Result, now: float) -> None:
    if out.error is not None:
        return
    if not (reader.done or reader.finished):
        out.fail("disconnected", f"the stream ended after {reader.chunks} chunks, before [DONE]", now)
        return
    out.end = now
    out.completion_tokens = _completion_tokens(reader, out)


def _completion_tokens(reader: _Stream, out: Result) -> int:
    if out.completion_tokens is not None:  # the server's usage
        return out.completion_tokens
    if reader.count_tokens is not None:
        return reader.count_tokens("".join(reader.text))
    return reader.chunks


async def _whole(response: httpx.Response, reader: _Stream, max_bytes: int, clock) -> None:
    raw = bytearray()
    async for part in response.aiter_bytes():
        raw += part
        if len(raw) > max_bytes:
            reader.result.fail("malformed", f"a response over {max_bytes} bytes", clock())
            return
    now = clock()
    try:
        obj = json.loads(raw)
        choice = obj["choices"][0]
        text = choice.get("text") if reader.endpoint == "completions" else choice["message"].get("content")
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        reader.result.fail("malformed", f"not a completion: {bytes(raw[:80])!r}", now)
        return
    if isinstance(obj.get("usage"), dict):
        reader._usage(obj["usage"])
    if text:
        reader.text.append(text)
        reader.chunks += 1
        reader.result.first = now
        reader.result.token_times.append(now)
    reader.finished = True
    _finish(reader, reader.result, now)
