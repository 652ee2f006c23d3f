"""/v1/embeddings of `infertune serve` over a tiny random BERT and the real EmbedBatcher: the
vectors are runtime.embed.embed's (floats and the openai client's base64), in input order,
with the token usage; bad input is a 400."""

from __future__ import annotations

import random

import httpx
import pytest
import torch

from infertune.serving.text import ByteTokenizer
from runtime.bert import BertModel
from runtime.embed import embed
from runtime.embed_batcher import EmbedBatcher

from .serve_support import Target, serving
from .test_bert import _hf_model

NAME = "tiny-bert"


@pytest.fixture(scope="module")
def bert():
    _, config, weights = _hf_model(random.randrange(1 << 30), vocab=300)
    return BertModel(config, weights, ("fp32", None, "torch"))


@pytest.fixture(scope="module")
def server(bert):
    tok = ByteTokenizer(300)
    target = Target(name=NAME, family="bert", engine=None, embedder=EmbedBatcher(bert, tok, max_batch=8, max_wait_ms=5),
                    tokenizer=tok, variant="fp32:torch", device="cpu", max_len=64)
    with serving(target) as srv:
        yield srv


def test_embeddings_are_the_direct_calls(server, bert, seed):
    rng = random.Random(seed)
    texts = ["".join(rng.choice("abcdefgh é") for _ in range(rng.randrange(1, 40))) for _ in range(5)]
    want = embed(bert, ByteTokenizer(300), texts)
    r = httpx.post(server.url + "/v1/embeddings", json={"model": NAME, "input": texts}, timeout=30)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["object"] == "list" and got["model"] == NAME
    assert [d["index"] for d in got["data"]] == list(range(5)) and all(d["object"] == "embedding" for d in got["data"])
    torch.testing.assert_close(torch.tensor([d["embedding"] for d in got["data"]]), want, atol=1e-5, rtol=0)
    tokens = sum(len(t.encode()) for t in texts)
    assert got["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    one = httpx.post(server.url + "/v1/embeddings", json={"model": NAME, "input": texts[2]}).json()
    torch.testing.assert_close(torch.tensor(one["data"][0]["embedding"]), want[2], atol=1e-5, rtol=0)


def test_openai_client_embeddings(server, bert):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    texts = ["hello there", "a much longer sentence to embed"]
    got = client.embeddings.create(model=NAME, input=texts)  # the client asks for base64 and decodes it
    torch.testing.assert_close(torch.tensor([d.embedding for d in got.data]), embed(bert, ByteTokenizer(300), texts),
                               atol=1e-5, rtol=0)
    got = client.embeddings.create(model=NAME, input=texts[0], encoding_format="float")
    assert len(got.data[0].embedding) == bert.config.hidden


@pytest.mark.parametrize("body, status", [
    ({"input": []}, 400),
    ({"input": [1, 2, 3]}, 400),
    ({"input": "x", "encoding_format": "hex"}, 400),
    ({"input": "x", "dimensions": 3}, 400),
    ({"model": "other", "input": "x"}, 404),
])
def test_bad_embedding_requests(server, body, status):
    r = httpx.post(server.url + "/v1/embeddings", json={"model": NAME, **body})
    assert r.status_code == status, r.text
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_an_encoder_has_no_completions(server):
    r = httpx.post(server.url + "/v1/completions", json={"model": NAME, "prompt": "x"})
    assert r.status_code == 400 and "encoder" in r.json()["error"]["message"]
