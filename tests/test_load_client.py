"""profilers/serving client and load levels against the fake server, in vLLM's, SGLang's and
TensorRT-LLM's streaming formats, with malformed chunks, dropped connections and errors."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from profilers.serving import load
from profilers.serving.arrivals import poisson_offsets
from profilers.serving.client import Request, send
from profilers.serving.load import Level, Target, run_level

from .fake_openai_server import FakeServer, FakeSettings

STYLES = ("vllm", "sglang", "trtllm")


def one(url, endpoint, request, **kw):
    async def go():
        async with httpx.AsyncClient(trust_env=False) as client:
            return await send(client, url, "fake-model", endpoint, request, timeout=kw.pop("timeout", 10), **kw)
    return asyncio.run(go())


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_streams_in_each_format(style, endpoint, seed):
    n_out = 5 + seed % 9
    prompt = list(range(20, 33)) if endpoint == "completions" else "one two three four"
    with FakeServer(FakeSettings(style=style)) as server:
        r = one(server.url, endpoint, Request(0, prompt, n_out, 13 if endpoint == "completions" else 4),
                count_tokens=lambda text: len(text.split()))
        bare = one(server.url, endpoint, Request(1, prompt, n_out, 99))
        body = server.settings.seen[0]
    assert r.ok and r.status == 200 and r.error is None
    assert r.completion_tokens == n_out  # usage (vllm, sglang) or the tokenizer handed in (trtllm)
    chunks = n_out if style != "trtllm" else (n_out + 1) // 2   # trtllm: two tokens a chunk
    assert len(r.token_times) == chunks  # empty-content and role-only chunks are not tokens
    assert r.sent < r.first == r.token_times[0] <= r.token_times[-1] <= r.end
    assert r.prompt_tokens == (13 if endpoint == "completions" else 4)
    # without usage and without a tokenizer: one token per content chunk
    assert bare.ok and bare.completion_tokens == (n_out if style != "trtllm" else chunks)
    assert bare.prompt_tokens == (99 if style == "trtllm" else (13 if endpoint == "completions" else 4))
    assert body["max_tokens"] == n_out and body["ignore_eos"] is True and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True} and body["temperature"] == 0
    assert ("prompt" in body) == (endpoint == "completions") and ("messages" in body) == (endpoint == "chat")


def test_role_only_first_chunk_is_not_the_first_token():
    with FakeServer(FakeSettings(style="vllm", token_delay=0.1)) as server:
        r = one(server.url, "chat", Request(0, "hi", 3, 1))
    assert r.ok and r.first - r.sent >= 0.09  # the role chunk came at once; the token 100 ms later
    gaps = [b - a for a, b in zip(r.token_times, r.token_times[1:])]
    assert len(gaps) == 2 and all(g >= 0.09 for g in gaps)


def test_embeddings():
    with FakeServer() as server:
        r = one(server.url, "embeddings", Request(0, "a b c d e", 1, 5))
    assert r.ok and r.prompt_tokens == 5 and r.completion_tokens == 0 and r.first is None and r.token_times == []


@pytest.mark.parametrize("style", STYLES)
def test_faults_are_counted_by_kind_and_the_level_completes(style):
    faults = {1: "malformed", 2: "drop", 3: "nodone", 4: "stream_error", 5: "429", 6: "500", 8: "malformed"}
    with FakeServer(FakeSettings(style=style, faults=faults)) as server:
        target = Target(server.url, "fake-model", "chat", timeout=10)
        results, _, duration = asyncio.run(run_level(
            target, Level(concurrency=1), lambda i: Request(i, "hello there", 6, 2), seed=0, requests=10))
    assert [r.index for r in results] == list(range(10)) and duration > 0
    kinds = {r.index: r.error for r in results}
    # one worker: the n-th request the server sees is request n
    assert kinds == {0: None, 1: "malformed", 2: "disconnected", 3: "disconnected", 4: "stream_error",
                     5: "http_429", 6: "http_500", 7: None, 8: "malformed", 9: None}
    assert all(r.end is not None and r.detail and "\n" not in r.detail for r in results if r.error)


def test_timeout_and_connection_refused():
    with FakeServer(FakeSettings(faults={0: "slow"}, slow_s=5)) as server:
        r = one(server.url, "completions", Request(0, [20], 2, 1), timeout=0.3)
    assert r.error == "timeout" and 0.25 < r.end - r.sent < 3
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = one(f"http://127.0.0.1:{port}", "completions", Request(0, [20], 2, 1))
    assert r.error == "connect" and r.status is None


def _max_in_flight(results):
    events = sorted([(r.sent, 1) for r in results] + [(r.end, -1) for r in results], key=lambda e: (e[0], e[1]))
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def test_open_loop_sends_on_schedule_and_closed_loop_caps_concurrency(seed):
    with FakeServer(FakeSettings(token_delay=0.05)) as server:
        target = Target(server.url, "fake-model", "completions", timeout=10)
        make = lambda i: Request(i, [20, 21], 4, 2)  # ~200 ms per request
        opened, start, _ = asyncio.run(run_level(target, Level(rate=40.0), make, seed=seed, requests=12))
        closed, _, _ = asyncio.run(run_level(target, Level(concurrency=2), make, seed=seed, requests=8))
    offsets = poisson_offsets(40.0, 12, seed)
    # open loop: each request is sent at its time (never early, late only by the event loop's lag)
    for r, offset in zip(opened, offsets):
        assert r.ok and offset - 1e-3 <= r.sent - start < offset + 0.5
    assert _max_in_flight(opened) > 2   # 40/s x 0.2 s: requests overlap; nothing waited for a reply
    assert all(r.ok for r in closed) and len(closed) == 8 and _max_in_flight(closed) <= 2


def test_duration_mode_and_the_level_deadline(monkeypatch, seed):
    with FakeServer(FakeSettings(faults={0: "slow", 1: "slow"}, slow_s=5)) as server:
        target = Target(server.url, "fake-model", "completions", timeout=30)
        make = lambda i: Request(i, [20], 1, 1)
        monkeypatch.setattr(load, "GRACE_S", -29.5)  # deadline: last send + 0.5 s, before the 30 s timeout
        results, start, _ = asyncio.run(run_level(target, Level(rate=20.0), make, seed=seed, duration=0.5))
    assert all(r.sent - start < 0.5 + 0.2 for r in results)
    assert 2 < len(results) < 30  # Poisson(10): 5 sd either side
    slow = [r for r in results if r.error]
    assert len(slow) == 2 and all(r.error == "timeout" and "deadline" in r.detail for r in slow)
