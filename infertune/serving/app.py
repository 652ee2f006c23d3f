"""The OpenAI-compatible HTTP app over a ServeTarget: /v1/completions, /v1/chat/completions,
/v1/embeddings, /v1/models, /health, /metrics.

Threading: the engine (or embedder) runs on its own thread, started and stopped with the
app's lifespan; handlers run on the event loop and wait on per-request queues the engine
thread fills (generation.py). Nothing on the loop waits for the model.

Errors are OpenAI's JSON ({"error": {...}}) at every status: 400 for anything malformed (bad
JSON, wrong types, values out of range, a prompt too long), 404 for a model name this server
does not serve, 429 with Retry-After when the queue is full, 503 when the engine is stopped,
500 (one line, no traceback) for a failure of ours. Every response carries
x-infertune-variant, so a load profile can record what it measured.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.engine import ContextTooLong, EngineStopped, QueueFull
from runtime.errors import ModelError
from runtime.generate import Sampling

from .generation import ClientGone, Generation, GenerationFailed, Piece, pieces
from .metrics import ServerMetrics
from .schemas import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    Sampled,
    error_body,
    new_id,
    now,
)
from .text import ByteTokenizer, chat_prompt

log = logging.getLogger("infertune.serve")

VARIANT_HEADER = "x-infertune-variant"
ENDPOINTS = ("/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/models", "/health", "/metrics")
CLIENT_CLOSED = 499  # nginx's code for "the client closed the connection": counted, never sent


class ServeError(Exception):
    """An error response: status, OpenAI error fields, extra headers."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(error_body(self.message, self.kind, self.param, self.code), status_code=self.status,
                            headers=self.headers)


def engine_error(exc: Exception, param: str = "prompt") -> ServeError:
    """The response for what Engine.submit / EmbedBatcher.submit raised."""
    if isinstance(exc, QueueFull):
        wait = max(1, math.ceil(exc.retry_after))
        return ServeError(429, f"{exc} Retry after {wait} s.", "rate_limit_error", None, "queue_full",
                          {"Retry-After": str(wait)})
    if isinstance(exc, EngineStopped):
        return ServeError(503, str(exc), "service_unavailable", None, "engine_stopped")
    if isinstance(exc, ContextTooLong):
        return ServeError(400, str(exc), "invalid_request_error", param, "context_length_exceeded")
    if isinstance(exc, ModelError):
        return ServeError(400, str(exc), "invalid_request_error", param)
    raise exc


class _Frame:
    """Pure ASGI middleware around every request: adds x-infertune-variant, counts
    infertune_requests_total{endpoint,status}, and turns an escaped exception into a one-line
    500 (a streaming response that already started just ends)."""

    def __init__(self, app: Any, variant: str, metrics: ServerMetrics) -> None:
        self.app, self.variant, self.metrics = app, variant.encode(), metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = None

        async def framed(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (VARIANT_HEADER.encode(), self.variant)]}
            await send(message)

        try:
            await self.app(scope, receive, framed)
        except Exception as exc:
            log.exception("request %s %s failed", scope.get("method"), scope.get("path"))
            if status is None:
                body = ServeError(500, f"internal error: {type(exc).__name__}: {exc}".splitlines()[0],
                                  "internal_error", code="internal_error").response()
                await body(scope, receive, framed)
        finally:
            path = scope.get("path", "")
            self.metrics.requests.labels(path if path in ENDPOINTS else "other",
                                         str(status if status is not None else CLIENT_CLOSED)).inc()


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return f"the body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}", None
    where = ".".join(loc)
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
    return (f"{where}: {first.get('msg')}" if where else str(first.get("msg"))) + more, (loc[0] if loc else None)


def create_app(target: Any) -> FastAPI:
    """The app serving `target` (an infertune.serving_setup.ServeTarget). Its engine or embedder
    starts with the app's lifespan and stops with it."""
    engine, embedder = target.engine, target.embedder
    vocab = engine.model.config.vocab if engine is not None else embedder.model.config.vocab
    tokenizer = target.tokenizer if target.tokenizer is not None else ByteTokenizer(vocab)
    created = now()
    embed_tokens = [0]

    def stats() -> dict[str, Any]:
        if engine is not None:
            s = engine.stats()
            return {"queue_depth": s.queue_depth, "running": s.running, "slots": s.slots, "steps": s.steps,
                    "prompt_tokens": s.prompt_tokens_total, "generated_tokens": s.generated_tokens_total}
        s = embedder.stats()
        return {"queue_depth": s["queue_depth"], "running": s["running"], "slots": embedder.max_batch,
                "steps": s.get("batches_total", 0), "prompt_tokens": embed_tokens[0], "generated_tokens": 0}

    metrics = ServerMetrics(stats)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        target.start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, target.stop)

    app = FastAPI(title="infertune", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.target, app.state.metrics = target, metrics
    app.add_middleware(_Frame, variant=str(target.variant), metrics=metrics)

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return ServeError(400, message, param=param).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return ServeError(exc.status_code, str(exc.detail), kind, headers=dict(exc.headers or {})).response()

    def check_model(name: str, want: str) -> None:
        if name != target.name:
            raise ServeError(404, f"The model `{name}` does not exist (this server serves `{target.name}`).",
                             "invalid_request_error", "model", "model_not_found")
        if want == "llama" and engine is None:
            raise ServeError(400, f"{target.name} is an encoder: it serves /v1/embeddings only", param="model")
        if want == "bert" and embedder is None:
            raise ServeError(400, f"{target.name} generates text: it has no embeddings", param="model")

    def sampling_of(body: Sampled) -> Sampling:
        refused = body.unsupported()
        if refused:
            raise ServeError(400, refused[1], param=refused[0])
        top_k = body.top_k if body.top_k is not None and body.top_k > 0 else 0
        try:
            return Sampling(temperature=1.0 if body.temperature is None else body.temperature, top_k=top_k,
                            top_p=1.0 if body.top_p is None else body.top_p, seed=body.seed)
        except ModelError as exc:
            raise ServeError(400, str(exc)) from None

    def submit(prompt: list[int], limit: int | None, body: Sampled, sampling: Sampling, param: str) -> Generation:
        # no limit given: what the context leaves (at least 1, so a full prompt gets the engine's message)
        max_tokens = limit if limit is not None else max(1, target.max_len - len(prompt))
        try:
            return Generation(engine, prompt, max_tokens, sampling, frozenset() if body.ignore_eos else None)
        except ModelError as exc:
            raise engine_error(exc, param) from None

    async def respond(request: Request, gen: Generation, body: Sampled, chunk, final) -> Response:
        """Stream SSE chunks (chunk(piece) -> dict | None) or one JSON object (final(text, piece))."""
        if body.stream:
            return StreamingResponse(_sse(gen, body, chunk), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"}, background=BackgroundTask(gen.cancel))
        texts: list[str] = []
        try:
            async for piece in pieces(gen, tokenizer, body.stops, metrics, request):
                texts.append(piece.text)
                if piece.finish_reason is not None:
                    return JSONResponse(final("".join(texts), piece))
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)
        except GenerationFailed as exc:
            raise _failed(exc) from None
        raise ServeError(500, "the request ended without a result", "internal_error")

    async def _sse(gen: Generation, body: Sampled, chunk) -> AsyncIterator[str]:
        include_usage = body.include_usage
        opening = chunk(None)
        if opening is not None:
            yield _data(opening, include_usage)
        try:
            async for piece in pieces(gen, tokenizer, body.stops, metrics):
                if piece.text or piece.finish_reason is not None:
                    yield _data(chunk(piece), include_usage)
                if piece.finish_reason is not None and include_usage:
                    yield _data({**chunk(Piece("")), "choices": [], "usage": piece.usage}, False)
        except GenerationFailed as exc:
            error = _failed(exc)
            yield _data(error_body(error.message, error.kind, code=error.code), False)
        yield "data: [DONE]\n\n"

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        check_model(body.model, "llama")
        sampling = sampling_of(body)
        prompt = _prompt_ids(body.prompt, tokenizer)
        gen = submit(prompt, body.max_tokens, body, sampling, "prompt")
        rid, stamp = new_id("cmpl"), now()

        def head() -> dict[str, Any]:
            return {"id": rid, "object": "text_completion", "created": stamp, "model": target.name}

        def chunk(piece: Piece | None) -> dict[str, Any] | None:
            if piece is None:
                return None
            return {**head(), "choices": [{"index": 0, "text": piece.text, "finish_reason": piece.finish_reason,
                                           "logprobs": None}]}

        def final(text: str, piece: Piece) -> dict[str, Any]:
            return {**head(), "choices": [{"index": 0, "text": text, "finish_reason": piece.finish_reason,
                                           "logprobs": None}], "usage": piece.usage}

        return await respond(request, gen, body, chunk, final)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request) -> Response:
        check_model(body.model, "llama")
        sampling = sampling_of(body)
        try:
            prompt = chat_prompt(tokenizer, [m.model_dump() for m in body.messages])
        except ValueError as exc:  # a non-text content part; a template's raise_exception
            raise ServeError(400, str(exc).splitlines()[0] if str(exc) else "bad messages", param="messages") from None
        except Exception as exc:  # noqa: BLE001 - jinja2's TemplateError: the template refused these messages
            raise ServeError(400, f"the chat template failed on these messages: {exc}".splitlines()[0],
                             param="messages") from None
        gen = submit(prompt, body.token_limit, body, sampling, "messages")
        rid, stamp = new_id("chatcmpl"), now()

        def head() -> dict[str, Any]:
            return {"id": rid, "object": "chat.completion.chunk", "created": stamp, "model": target.name}

        def chunk(piece: Piece | None) -> dict[str, Any]:
            if piece is None:  # OpenAI's first chunk names the role
                delta, reason = {"role": "assistant", "content": ""}, None
            else:
                delta = {"content": piece.text} if piece.text else {}
                reason = piece.finish_reason
            return {**head(), "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]}

        def final(text: str, piece: Piece) -> dict[str, Any]:
            return {**head(), "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                                 "finish_reason": piece.finish_reason}], "usage": piece.usage}

        return await respond(request, gen, body, chunk, final)

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest) -> Response:
        check_model(body.model, "bert")
        hidden = embedder.model.config.hidden
        if body.dimensions is not None and body.dimensions != hidden:
            raise ServeError(400, f"dimensions must be {hidden} (this model's) or absent; got {body.dimensions}",
                             param="dimensions")
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        try:
            future = embedder.submit(texts)
        except ModelError as exc:
            raise engine_error(exc, "input") from None
        try:
            result = await asyncio.wrap_future(future)
        except EngineStopped as exc:
            raise engine_error(exc) from None
        embed_tokens[0] += result.tokens
        data = [{"object": "embedding", "index": i, "embedding": _encoded(v, body.encoding_format)}
                for i, v in enumerate(result.vectors)]
        return JSONResponse({"object": "list", "data": data, "model": target.name,
                             "usage": {"prompt_tokens": result.tokens, "total_tokens": result.tokens}})

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": target.name, "object": "model", "created": created,
                                            "owned_by": "infertune", "max_model_len": target.max_len,
                                            "variant": str(target.variant)}]}

    @app.get("/health")
    async def health() -> Response:
        if target.alive:
            return JSONResponse({"status": "ok"})
        return ServeError(503, "the engine is not running", "service_unavailable", code="engine_stopped").response()

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app


def _prompt_ids(prompt: Any, tokenizer: Any) -> list[int]:
    """One prompt's token ids: text, ids, or a list of exactly one of those."""
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
        if len(prompt) != 1:
            raise ServeError(400, f"one prompt per request; got a list of {len(prompt)}", param="prompt")
        prompt = prompt[0]
    ids = tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
    if not ids:
        raise ServeError(400, "the prompt is empty: it needs at least one token", param="prompt")
    return ids


def _failed(exc: GenerationFailed) -> ServeError:
    if exc.reason == "cancelled":
        return ServeError(503, f"{exc}", "service_unavailable", code="engine_stopped")
    return ServeError(500, f"generation failed: {exc}", "internal_error", code="internal_error")


def _data(obj: dict[str, Any], include_usage: bool) -> str:
    if include_usage and "usage" not in obj:
        obj = {**obj, "usage": None}  # OpenAI: with include_usage every chunk has a usage field
    return f"data: {json.dumps(obj, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
