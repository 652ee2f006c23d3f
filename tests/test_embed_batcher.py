"""runtime/embed_batcher.py: requests gathered into batches give each request the vectors the
direct call gives, in its own order; the wait bound, the queue bound, stop."""

from __future__ import annotations

import random
import threading
import time

import pytest
import torch

from runtime.bert import BertModel
from runtime.embed import embed
from runtime.embed_batcher import EmbedBatcher
from runtime.engine import EngineStopped, QueueFull
from runtime.errors import InvalidWorkload

from .test_bert import _hf_model


@pytest.fixture(scope="module")
def model() -> BertModel:
    _, config, weights = _hf_model(random.randrange(1 << 30))
    return BertModel(config, weights, ("fp32", None, "torch"))


def _texts(rng: random.Random, n: int, vocab: int = 97) -> list[list[int]]:
    # token id lists stand for texts (tokenizer None): odd lengths, [CLS]-like first id
    return [[1] + [rng.randrange(2, vocab) for _ in range(rng.choice([0, 4, 12, 30, 56]))] for _ in range(n)]


def test_batched_requests_get_the_direct_calls_vectors_in_order(model):
    rng = random.Random()
    batcher = EmbedBatcher(model, None, max_batch=8, max_wait_ms=50)
    batcher.start()
    try:
        requests = [_texts(rng, rng.randrange(1, 5)) for _ in range(12)]
        futures: list = [None] * len(requests)

        def send(i: int) -> None:
            futures[i] = batcher.submit(requests[i])

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        for texts, future in zip(requests, futures):
            got = future.result(timeout=60)
            want = embed(model, None, texts)
            assert torch.allclose(torch.tensor(got.vectors), want, atol=1e-5, rtol=0)
            assert got.tokens == sum(map(len, texts))
        stats = batcher.stats()
        assert stats["requests_total"] == len(requests)
        assert stats["batches_total"] < len(requests)  # 50 ms wait: the threads' requests shared batches
    finally:
        batcher.stop()


def test_a_request_larger_than_max_batch_runs_alone(model):
    rng = random.Random()
    batcher = EmbedBatcher(model, None, max_batch=2, max_wait_ms=0)
    batcher.start()
    try:
        texts = _texts(rng, 5)
        got = batcher.submit(texts).result(timeout=60)
        assert torch.allclose(torch.tensor(got.vectors), embed(model, None, texts), atol=1e-5, rtol=0)
    finally:
        batcher.stop()


def test_queue_bound_bad_input_and_stop(model):
    batcher = EmbedBatcher(model, None, max_batch=2, max_queue=2)  # not started: nothing drains
    batcher.submit([[1, 5]])
    batcher.submit([[1, 6]])
    with pytest.raises(QueueFull):
        batcher.submit([[1, 7]])
    with pytest.raises(InvalidWorkload):
        batcher.submit([[]])
    waiting = batcher._queue[0].future
    batcher.stop()
    with pytest.raises(EngineStopped):
        waiting.result(timeout=1)
    with pytest.raises(EngineStopped):
        batcher.submit([[1, 2]])
    with pytest.raises(InvalidWorkload):
        EmbedBatcher(model, None, max_batch=0)


def test_the_wait_bound_sends_a_lone_request_promptly(model):
    batcher = EmbedBatcher(model, None, max_batch=64, max_wait_ms=20)
    batcher.start()
    try:
        start = time.perf_counter()
        batcher.submit([[1, 2, 3]]).result(timeout=30)
        # it did not wait for 64 texts: the 20 ms bound plus one tiny forward (generous for CI)
        assert time.perf_counter() - start < 5
    finally:
        batcher.stop()
