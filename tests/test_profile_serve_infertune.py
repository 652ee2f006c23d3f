"""`infertune profile serve` against `infertune serve` itself (the real app and engine, a tiny
random Llama, on a free port): every request completes with the drawn lengths, the server's
variant becomes the label, and a full queue shows up as http_429, counted, not a crash."""

from __future__ import annotations

import json

import pytest

from infertune.serve_profile import profile_serving, request_factory
from profilers.serving.lengths import parse_length
from reports.runfile import read_run

from .serve_support import NAME, VARIANT, llama_target, serving, tiny_llama


@pytest.fixture(scope="module")
def model():
    return tiny_llama(seed=3)


def test_profile_the_builtin_server(model, tmp_path, seed):
    with serving(llama_target(model, max_batch=4, max_queue=32, max_len=128)) as server:
        path = profile_serving(server.url, NAME, rates="20,80", requests=8, input_len="uniform:4,24",
                               output_len="uniform:2,10", slo="ttft=10s", seed=seed, out=tmp_path / "run", timeout=30)
        chat = profile_serving(server.url, NAME, endpoint="chat", concurrencies=[2], requests=4, input_len="6",
                               output_len="5", seed=seed, out=tmp_path / "chat", timeout=30)
    run = read_run(path)
    s = run["serving"]
    assert s["label"] == VARIANT and s["server"] == {"variant": VARIANT, "owned_by": "infertune"}
    rows = [json.loads(line) for line in (path / "requests.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and all(r["error"] is None and r["status"] == 200 for r in rows)
    for level in s["levels"]:
        assert level["completed"] == 8 and level["errors"] == {} and level["ttft_ms"]["p50"] > 0
        assert level["slo_attainment"] == 1.0
    # the server's usage equals what request i asked for (request i is the same at both levels)
    make = request_factory("completions", parse_length("uniform:4,24"), parse_length("uniform:2,10"), seed)
    for r in rows:
        asked = make(r["index"])
        assert (r["prompt_tokens"], r["completion_tokens"]) == (len(asked.prompt), asked.max_tokens)
        assert 1 <= len(r["token_times_s"]) <= r["completion_tokens"]
    c = read_run(chat)["serving"]["levels"][0]
    assert c["completed"] == 4 and c["tpot_ms"] is not None


def test_a_full_queue_is_counted_as_http_429(model, tmp_path):
    with serving(llama_target(model, max_batch=1, max_queue=1, max_len=128)) as server:
        path = profile_serving(server.url, NAME, concurrencies=[8], requests=16, input_len="8", output_len="24",
                               out=tmp_path / "run", timeout=30)
    level = read_run(path)["serving"]["levels"][0]
    assert level["requests"] == 16 and level["errors"].get("http_429", 0) >= 1
    assert set(level["errors"]) == {"http_429"} and level["completed"] + level["errors"]["http_429"] == 16
