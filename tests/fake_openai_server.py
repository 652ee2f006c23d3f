"""A small fake OpenAI-compatible server for the load profiler's tests: it streams the way
vLLM, SGLang and TensorRT-LLM's server do, and fails on request in the ways real servers fail.

Styles (FakeSettings.style):
- "vllm":   one chunk per token; chat's first chunk is role-only; finish_reason on the last
            token's chunk; with include_usage a last chunk with choices [] and usage; [DONE].
- "sglang": "usage": null in every chunk; the finish_reason in its own empty-text chunk after
            the tokens; then the usage chunk; [DONE].
- "trtllm": no usage at all (include_usage ignored); two tokens per chunk; empty-content
            chunks between them; `: keep-alive` comments; \\r\\n line endings; [DONE].
Every event is written in odd-sized pieces (1..7 bytes) so a client meets split lines.

Faults (FakeSettings.faults: the n-th POST, counted from 0 -> fault): "malformed" (a chunk that
is not JSON after 2 tokens), "drop" (the connection dies after 2 tokens), "nodone" (the stream
ends cleanly after 2 tokens, no finish, no [DONE]), "stream_error" (an error object in the
stream), "429" (queue full, Retry-After), "500", "slow" (sleeps `slow_s` before answering).

Tokens are " t0", " t1", ...; prompt tokens: a list's length, or a text's word count."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class FakeSettings:
    style: str = "vllm"
    models: tuple[str, ...] = ("fake-model",)
    variant: str | None = None            # the x-infertune-variant header, when set
    token_delay: float = 0.0              # seconds between tokens
    faults: dict[int, str] = field(default_factory=dict)
    slow_s: float = 30.0
    natural_len: int = 5                  # tokens before "stop" when ignore_eos is false
    seen: list[dict[str, Any]] = field(default_factory=list)   # the POST bodies received


class Dropped(Exception):
    """Raised inside a streaming body: uvicorn then closes the connection mid-response."""


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}},
                        status_code=status, headers=headers)


def create_fake_app(settings: FakeSettings) -> Starlette:
    counter = {"n": 0}
    lock = threading.Lock()

    def headers() -> dict[str, str]:
        return {"x-infertune-variant": settings.variant} if settings.variant else {}

    async def models(_: Request) -> Response:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in settings.models]
        return JSONResponse({"object": "list", "data": data}, headers=headers())

    async def handle(request: Request, kind: str) -> Response:
        body = await request.json()
        with lock:
            n = counter["n"]
            counter["n"] += 1
            settings.seen.append(body)
        fault = settings.faults.get(n)
        if body.get("model") not in settings.models:
            return _error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        if fault == "429":
            return _error(429, "queue full", "rate_limit_error", {"Retry-After": "1"})
        if fault == "500":
            return _error(500, "internal error", "InternalServerError")
        if fault == "slow":
            await asyncio.sleep(settings.slow_s)
        if kind == "embeddings":
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            used = sum(len(t) if isinstance(t, list) else len(str(t).split()) for t in texts)
            data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3, 0.4]} for i in range(len(texts))]
            return JSONResponse({"object": "list", "data": data, "model": body["model"],
                                 "usage": {"prompt_tokens": used, "total_tokens": used}}, headers=headers())
        prompt = body.get("prompt") if kind == "completions" else " ".join(m["content"] for m in body["messages"])
        prompt_tokens = len(prompt) if isinstance(prompt, list) else len(str(prompt).split())
        n_out = int(body.get("max_tokens", 16))
        if not body.get("ignore_eos"):
            n_out = min(n_out, settings.natural_len)
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if not body.get("stream"):
            text = "".join(f" t{i}" for i in range(n_out))
            choice = {"index": 0, "text": text, "finish_reason": "length"} if kind == "completions" else {
                "index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
            return JSONResponse({"choices": [choice], "usage": {"prompt_tokens": prompt_tokens,
                                 "completion_tokens": n_out, "total_tokens": prompt_tokens + n_out}})
        events = _events(settings.style, kind, body["model"], n_out, prompt_tokens, usage, fault)
        return StreamingResponse(_paced(events, settings.token_delay, settings.style), media_type="text/event-stream",
                                 headers=headers())

    async def completions(request: Request) -> Response:
        return await handle(request, "completions")

    async def chat(request: Request) -> Response:
        return await handle(request, "chat")

    async def embeddings(request: Request) -> Response:
        return await handle(request, "embeddings")

    return Starlette(routes=[Route("/v1/models", models), Route("/v1/completions", completions, methods=["POST"]),
                             Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/v1/embeddings", embeddings, methods=["POST"])])


def _chunk(kind: str, model: str, piece: str | None, finish: str | None, style: str, *, role: bool = False) -> dict:
    if kind == "completions":
        choice: dict[str, Any] = {"index": 0, "text": piece or "", "logprobs": None, "finish_reason": finish}
        obj = "text_completion"
    else:
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else (
            {"content": piece} if piece is not None else {})
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        obj = "chat.completion.chunk"
    out = {"id": "cmpl-fake", "object": obj, "created": int(time.time()), "model": model, "choices": [choice]}
    if style == "sglang":
        out["usage"] = None
    return out


def _events(style: str, kind: str, model: str, n_out: int, prompt_tokens: int, usage: bool, fault: str | None):
    """(payload, is_token) pairs: payload is an SSE data string, a comment, or the Dropped marker."""
    yield_usage = usage and style != "trtllm"
    if kind == "chat":
        yield json.dumps(_chunk(kind, model, None, None, style, role=True)), False
    step = 2 if style == "trtllm" else 1
    for i in range(0, n_out, step):
        if fault and i >= 2:
            if fault == "malformed":
                yield '{"id": "cmpl-fake", "choices": [', False
            elif fault == "drop":
                yield Dropped, False
            elif fault == "stream_error":
                yield json.dumps({"error": {"message": "engine died", "type": "InternalServerError", "code": 500}}), False
            return  # "nodone" too: the stream just ends
        piece = "".join(f" t{j}" for j in range(i, min(i + step, n_out)))
        last = i + step >= n_out
        finish = "length" if last and style != "sglang" else None
        if style == "trtllm":
            yield ": keep-alive", False
            yield json.dumps(_chunk(kind, model, "", None, style)), False
        yield json.dumps(_chunk(kind, model, piece, finish, style)), True
    if style == "sglang":
        yield json.dumps(_chunk(kind, model, "", "length", style)), False
    if yield_usage:
        yield json.dumps({"id": "cmpl-fake", "object": "text_completion", "created": 0, "model": model, "choices": [],
                          "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n_out,
                                    "total_tokens": prompt_tokens + n_out}}), False
    yield "[DONE]", False


async def _paced(events, delay: float, style: str):
    newline = "\r\n" if style == "trtllm" else "\n"
    sizes = (1, 7, 3, 5, 2, 6, 4)
    k = 0
    for payload, is_token in events:
        if payload is Dropped:
            raise Dropped("connection dropped on purpose")
        if is_token and delay:
            await asyncio.sleep(delay)
        line = payload if payload.startswith(":") else f"data: {payload}"
        raw = (line + newline + newline).encode()
        pos = 0
        while pos < len(raw):  # odd-sized pieces: the client must not care where reads split
            size = sizes[k % len(sizes)]
            k += 1
            yield raw[pos:pos + size]
            pos += size


class FakeServer:
    """The fake app under uvicorn in a thread, on 127.0.0.1 and a free port.

        with FakeServer(FakeSettings(style="sglang")) as server:
            server.url   # http://127.0.0.1:PORT
    """

    def __init__(self, settings: FakeSettings | None = None, app=None) -> None:
        self.settings = settings or FakeSettings()
        self.app = app or create_fake_app(self.settings)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="critical", lifespan="off",
                                                    timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                self.__exit__(None, None, None)
                raise RuntimeError("the fake server did not start within 15 s")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
