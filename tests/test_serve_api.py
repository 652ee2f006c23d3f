"""`infertune serve`'s HTTP API against the real engine (a tiny random Llama) on a real port:
every endpoint streaming and not, the `openai` client, stop strings, sampling seeds, the
error shapes (400 / 404 / 429 / 503), disconnects freeing their slots, /metrics."""

from __future__ import annotations

import random
import threading
import time

import httpx
import pytest

from infertune.serving.text import ByteTokenizer
from runtime.engine import Engine, EngineSettings, GenRequest, Token

from .serve_support import NAME, VARIANT, llama_target, serving, sse_events, tiny_llama

TOK = ByteTokenizer(300)


@pytest.fixture(scope="module")
def model():
    return tiny_llama(seed=random.randrange(1 << 20))


@pytest.fixture(scope="module")
def server(model):
    target = llama_target(model, max_batch=4, max_queue=8, max_len=256)
    with serving(target) as srv:
        srv.target = target
        yield srv


def _wait(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _complete(url: str, **body) -> dict:
    r = httpx.post(url + "/v1/completions", json={"model": NAME, "temperature": 0, **body}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _stream(url: str, path: str, body: dict) -> list:
    with httpx.stream("POST", url + path, json={"model": NAME, "stream": True, **body}, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-infertune-variant"] == VARIANT
        return sse_events(r.iter_lines())


def test_completion_is_the_models_greedy_tokens(server, model):
    prompt = "The cat"
    got = _complete(server.url, prompt=prompt, max_tokens=9)
    assert got["object"] == "text_completion" and got["id"].startswith("cmpl-") and got["model"] == NAME
    (choice,) = got["choices"]
    assert choice["finish_reason"] == "length" and choice["logprobs"] is None
    assert got["usage"] == {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}
    # truth: the engine's own output for the same prompt, decoded by the fallback tokenizer
    engine = Engine(model, EngineSettings(max_batch=4, max_len=256))
    tokens: list[int] = []
    engine.submit(GenRequest(TOK.encode(prompt), 9, on_event=lambda e: tokens.append(e.token)
                             if isinstance(e, Token) else None))
    while engine.step():
        pass
    assert choice["text"] == TOK.decode(tokens)
    # token ids as the prompt give the same
    assert _complete(server.url, prompt=TOK.encode(prompt), max_tokens=9)["choices"][0]["text"] == choice["text"]


def test_streamed_completion_adds_up_to_the_plain_one(server):
    whole = _complete(server.url, prompt="stream me", max_tokens=12)
    events = _stream(server.url, "/v1/completions",
                     {"prompt": "stream me", "max_tokens": 12, "temperature": 0, "stream_options": {"include_usage": True}})
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    chunks, usage_chunk = events[:-2], events[-2]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"] == whole["usage"]
    assert all(c["object"] == "text_completion" and c["id"] == chunks[0]["id"] and c["usage"] is None for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * (len(chunks) - 1) + ["length"]
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]


def test_chat_streamed_and_not(server):
    messages = [{"role": "system", "content": "terse"}, {"role": "user", "content": "hello"}]
    r = httpx.post(server.url + "/v1/chat/completions",
                   json={"model": NAME, "messages": messages, "max_tokens": 8, "temperature": 0}, timeout=30)
    got = r.json()
    assert got["object"] == "chat.completion" and got["id"].startswith("chatcmpl-")
    message = got["choices"][0]["message"]
    assert message["role"] == "assistant" and got["choices"][0]["finish_reason"] == "length"
    prompt = "system: terse\nuser: hello\nassistant:"
    assert got["usage"]["prompt_tokens"] == len(prompt.encode())
    assert message["content"] == _complete(server.url, prompt=prompt, max_tokens=8)["choices"][0]["text"]
    events = _stream(server.url, "/v1/chat/completions", {"messages": messages, "max_tokens": 8, "temperature": 0})
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == message["content"]


@pytest.mark.parametrize("stream", [False, True])
def test_stop_string_cuts_the_text_and_is_left_out(server, stream):
    full = _complete(server.url, prompt="stop here", max_tokens=16)["choices"][0]["text"]
    start = len(full) // 3
    stop = full[start:start + 3]
    want = full[:full.find(stop)]
    body = {"prompt": "stop here", "max_tokens": 16, "temperature": 0, "stop": [stop, "\x00never"]}
    if stream:
        chunks = _stream(server.url, "/v1/completions", body)[:-1]
        text = "".join(c["choices"][0]["text"] for c in chunks)
        reason = chunks[-1]["choices"][0]["finish_reason"]
    else:
        got = _complete(server.url, **body)
        text, reason = got["choices"][0]["text"], got["choices"][0]["finish_reason"]
        assert 1 <= got["usage"]["completion_tokens"] <= 16
    assert (text, reason) == (want, "stop"), (full, stop)
    _wait(lambda: server.target.engine.stats().running == 0)


def test_stop_id_finishes_with_stop_and_shows_no_text(model):
    # the greedy run's 4th token made the engine's eos: it ends there, and its placeholder is not shown
    target = llama_target(model, max_batch=2, max_queue=2)
    with serving(target) as srv:
        ids = _complete(srv.url, prompt=[5, 6, 7], max_tokens=6)
    engine = Engine(model, EngineSettings(max_batch=2, max_len=64))
    tokens: list[int] = []
    engine.submit(GenRequest([5, 6, 7], 6, on_event=lambda e: tokens.append(e.token) if isinstance(e, Token) else None))
    while engine.step():
        pass
    k = next((k for k in range(1, 6) if tokens[k] not in tokens[:k]), None)
    if k is None:
        pytest.skip(f"greedy decoding repeats one token: {tokens}")
    eos = tokens[k]  # the first new token after the first: the run ends there
    target = llama_target(model, max_batch=2, max_queue=2, eos_ids=[eos])
    with serving(target) as srv:
        got = _complete(srv.url, prompt=[5, 6, 7], max_tokens=6)
        assert got["choices"][0]["finish_reason"] == "stop"
        assert got["usage"]["completion_tokens"] == k + 1
        assert got["choices"][0]["text"] == TOK.decode(tokens[:k])
        # ignore_eos runs to max_tokens, the eos id an ordinary token (its text skipped)
        long = _complete(srv.url, prompt=[5, 6, 7], max_tokens=6, ignore_eos=True)
        assert long["usage"]["completion_tokens"] == 6
        assert long["choices"][0]["text"] == TOK.decode([t for t in tokens if t != eos])
    assert ids["choices"][0]["finish_reason"] == "length"


def test_seed_makes_sampling_reproducible(server):
    body = {"prompt": "dice", "max_tokens": 12, "temperature": 1.5, "top_p": 0.95, "seed": 1234}
    first = _complete(server.url, **body)["choices"][0]["text"]
    assert _complete(server.url, **body)["choices"][0]["text"] == first
    # and inside a batch: four at once give the same text
    results: list = [None] * 4

    def one(i):
        results[i] = _complete(server.url, **body)["choices"][0]["text"]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [first] * 4


def test_openai_client_completions_and_chat(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    want = _complete(server.url, prompt="openai", max_tokens=7)["choices"][0]["text"]
    got = client.completions.create(model=NAME, prompt="openai", max_tokens=7, temperature=0)
    assert got.choices[0].text == want and got.usage.completion_tokens == 7
    stream = client.completions.create(model=NAME, prompt="openai", max_tokens=7, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == want
    messages = [{"role": "user", "content": "hi"}]
    chat = client.chat.completions.create(model=NAME, messages=messages, max_tokens=5, temperature=0)
    assert chat.choices[0].message.content == _complete(server.url, prompt="user: hi\nassistant:",
                                                        max_tokens=5)["choices"][0]["text"]
    stream = client.chat.completions.create(model=NAME, messages=messages, max_tokens=5, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    parts = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in parts if c.choices) == chat.choices[0].message.content
    assert parts[-1].usage.completion_tokens == 5
    (model,) = client.models.list().data
    assert model.id == NAME and model.owned_by == "infertune"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt="x", max_tokens=1)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=NAME, prompt="x", max_tokens=10_000)


@pytest.mark.parametrize("body, param", [
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "max_tokens": True}, "max_tokens"),
    ({"prompt": "x", "max_tokens": "4"}, "max_tokens"),
    ({"prompt": "x", "temperature": -1}, "temperature"),
    ({"prompt": "x", "top_p": 0}, "top_p"),
    ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"prompt": "x", "n": 2}, "n"),
    ({"prompt": "x", "logprobs": 2}, "logprobs"),
    ({"prompt": ["a", "b"]}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": [1, 300]}, "prompt"),
    ({"prompt": "x" * 250, "max_tokens": 10}, "prompt"),
    ({}, "prompt"),
])
def test_bad_completion_requests_are_400_with_openai_errors(server, body, param):
    r = httpx.post(server.url + "/v1/completions", json={"model": NAME, **body}, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert "\n" not in error["message"] and "Traceback" not in r.text
    assert r.headers["x-infertune-variant"] == VARIANT


def test_too_long_is_context_length_exceeded_in_openai_words(server):
    r = httpx.post(server.url + "/v1/completions", json={"model": NAME, "prompt": "y" * 250, "max_tokens": 10})
    error = r.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["message"].startswith("This model's maximum context length is 256 tokens. However, you requested 260")


@pytest.mark.parametrize("raw, what", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", ""),
    (b'{"model": "tiny-llama", "messages": []}', "messages"),
    (b'{"model": "tiny-llama", "messages": [{"role": "wizard", "content": "x"}]}', "role"),
    (b'{"model": "tiny-llama", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}', "image_url"),
])
def test_malformed_chat_bodies_are_400(server, raw, what):
    r = httpx.post(server.url + "/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert what in r.json()["error"]["message"]


def test_wrong_model_is_404_and_wrong_route_is_openai_shaped(server):
    r = httpx.post(server.url + "/v1/chat/completions",
                   json={"model": "llama-9000", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found" and "llama-9000" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/v1/embeddings", json={"model": NAME, "input": "x"})
    assert r.status_code == 400 and "no embeddings" in r.json()["error"]["message"]
    r = httpx.get(server.url + "/v2/nothing")
    assert r.status_code == 404 and "error" in r.json()


def test_models_and_health(server):
    r = httpx.get(server.url + "/v1/models")
    (entry,) = r.json()["data"]
    assert entry["id"] == NAME and entry["owned_by"] == "infertune" and entry["max_model_len"] == 256
    assert r.headers["x-infertune-variant"] == VARIANT
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}


def test_full_queue_is_429_with_retry_after_and_stopped_engine_is_503(model):
    # the engine held back: two requests fill the queue, the third is refused
    target = llama_target(model, max_batch=1, max_queue=2, autostart=False)
    with serving(target) as srv:
        assert httpx.get(srv.url + "/health").status_code == 503
        results: list = []

        def one():
            results.append(httpx.post(srv.url + "/v1/completions",
                                      json={"model": NAME, "prompt": "q", "max_tokens": 3, "temperature": 0},
                                      timeout=30).status_code)

        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
        _wait(lambda: target.engine.stats().queue_depth == 2)
        r = httpx.post(srv.url + "/v1/completions", json={"model": NAME, "prompt": "q", "max_tokens": 3})
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1 and r.json()["error"]["code"] == "queue_full"
        target.engine.start()
        for t in threads:
            t.join(30)
        assert results == [200, 200]
        assert httpx.get(srv.url + "/health").status_code == 200
        target.engine.stop()
        r = httpx.post(srv.url + "/v1/completions", json={"model": NAME, "prompt": "q", "max_tokens": 3})
        assert r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable"
        metrics = httpx.get(srv.url + "/metrics").text
        assert 'infertune_requests_total{endpoint="/v1/completions",status="429"} 1.0' in metrics
        assert 'infertune_requests_total{endpoint="/v1/completions",status="503"} 1.0' in metrics


def test_streaming_client_that_disconnects_frees_its_slot(model):
    target = llama_target(model, max_batch=2, max_queue=2, max_len=2048)
    with serving(target) as srv:
        with httpx.stream("POST", srv.url + "/v1/completions",
                          json={"model": NAME, "prompt": [1, 2, 3], "max_tokens": 2000, "ignore_eos": True,
                                "temperature": 0, "stream": True}, timeout=30) as r:
            lines = r.iter_lines()
            assert next(line for line in lines if line.startswith("data: "))
        _wait(lambda: target.engine.stats().running == 0)
        stats = target.engine.stats()
        assert stats.requests_total == 1 and stats.generated_tokens_total < 2000


def test_non_streaming_client_that_leaves_is_cancelled_before_it_runs(model):
    target = llama_target(model, max_batch=1, max_queue=2, autostart=False)
    with serving(target) as srv:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(srv.url + "/v1/completions", json={"model": NAME, "prompt": "x", "max_tokens": 50},
                       timeout=httpx.Timeout(5, read=0.5))
        time.sleep(0.6)  # > the server's 0.25 s disconnect poll
        target.engine.start()
        _wait(lambda: target.engine.stats().requests_total == 1)
        assert target.engine.stats().generated_tokens_total == 0  # cancelled while it waited: never ran


def test_metrics_count_tokens_and_latencies(server):
    before = server.target.engine.stats().generated_tokens_total
    _complete(server.url, prompt="metrics", max_tokens=5)
    text = httpx.get(server.url + "/metrics").text
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values["infertune_generated_tokens_total"] >= before + 5
    for name in ("infertune_queue_depth", "infertune_running_requests", "infertune_prompt_tokens_total",
                 "infertune_time_to_first_token_seconds_count", "infertune_inter_token_latency_seconds_count",
                 "infertune_e2e_request_latency_seconds_count", "infertune_generation_tokens_per_second"):
        assert name in values, name
    assert values["infertune_inter_token_latency_seconds_count"] >= 4
    assert values["infertune_time_to_first_token_seconds_count"] >= 1


class _BrokenTokenizer(ByteTokenizer):
    def encode(self, text, add_special_tokens=True, max_length=None):
        raise RuntimeError("tokenizer exploded\nsecond line")


def test_a_failure_of_ours_is_a_one_line_500_without_traceback(model):
    target = llama_target(model, max_batch=1, max_queue=1)
    target.tokenizer = _BrokenTokenizer(300)
    with serving(target) as srv:
        r = httpx.post(srv.url + "/v1/completions", json={"model": NAME, "prompt": "x"})
        assert r.status_code == 500 and r.headers["x-infertune-variant"] == VARIANT
        assert r.json()["error"]["message"] == "internal error: RuntimeError: tokenizer exploded"
        assert "Traceback" not in r.text
        # the server goes on: token ids need no tokenizer
        assert httpx.post(srv.url + "/v1/completions", json={"model": NAME, "prompt": [1, 2]}).status_code == 200
