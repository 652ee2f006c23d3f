"""The continuous-batching engine (runtime/engine.py): a request's greedy output is the same
alone as inside any batch, whenever it joins; the engine at one slot reproduces generate();
cancellation, the queue limit, stop ids, the length limit, seeded sampling, the thread."""

from __future__ import annotations

import random
import threading
import time

import pytest
import torch

from runtime.engine import (
    ContextTooLong,
    Engine,
    EngineSettings,
    EngineStopped,
    Finished,
    GenRequest,
    QueueFull,
    Token,
)
from runtime.errors import InvalidWorkload
from runtime.generate import Sampling, generate
from runtime.llama import LlamaModel, synthetic_weights
from runtime.model_config import ModelConfig

CONFIG = ModelConfig(family="llama", hidden=64, intermediate=96, layers=2, heads=4, kv_heads=2, head_dim=16,
                     vocab=257, max_positions=512, norm_eps=1e-6, act="silu", tied_embeddings=False,
                     rope_theta=10000.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: intra-op threads only add waits on a 2-CPU machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model() -> LlamaModel:
    # std 0.1, not 0.02: logits spread enough that greedy is not a coin toss between ties
    weights = {k: (v - 1) * 5 + 1 if v.dim() == 1 else v * 5
               for k, v in synthetic_weights(CONFIG, seed=random.randrange(1 << 30)).items()}
    return LlamaModel(CONFIG, weights, ("fp32", None, "torch"))


class Collect:
    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.finished: list[Finished] = []
        self.indices: list[int] = []

    def __call__(self, event) -> None:
        if isinstance(event, Token):
            assert not self.finished, "a token after Finished"
            self.tokens.append(event.token)
            self.indices.append(event.index)
        else:
            self.finished.append(event)


def _run(engine: Engine, limit: int = 10_000) -> None:
    for _ in range(limit):
        if not engine.step():
            return
    raise AssertionError("the engine did not go idle")


def _alone(model, prompt, max_tokens, settings, **kw) -> list[int]:
    engine = Engine(model, settings, **kw)
    out = Collect()
    engine.submit(GenRequest(prompt, max_tokens, on_event=out))
    _run(engine)
    return out.tokens


def _prompts(rng: random.Random, n: int) -> list[list[int]]:
    lengths = [13, 1, 31, 5, 57, 2, 19, 8, 40, 3][:n]
    return [[rng.randrange(CONFIG.vocab) for _ in range(k)] for k in lengths]


def test_greedy_is_identical_alone_and_in_batches_of_mixed_lengths(model):
    rng = random.Random()
    settings = EngineSettings(max_batch=4, max_len=96, max_queue=32, prefill_budget=48)
    prompts = _prompts(rng, 10)
    max_tokens = [rng.randrange(1, 24) for _ in prompts]
    engine = Engine(model, settings)
    outs = [Collect() for _ in prompts]
    # requests join mid-flight: three at once, then one every other step
    pending = list(range(len(prompts)))
    for i in pending[:3]:
        engine.submit(GenRequest(prompts[i], max_tokens[i], on_event=outs[i]))
    pending = pending[3:]
    steps = 0
    while engine.step() or pending:
        steps += 1
        if pending and steps % 2 == 0:
            i = pending.pop(0)
            engine.submit(GenRequest(prompts[i], max_tokens[i], on_event=outs[i]))
        assert steps < 1000
    batched_steps = engine.stats().steps
    for i, p in enumerate(prompts):
        alone = _alone(model, p, max_tokens[i], settings)
        assert outs[i].tokens == alone, f"request {i} (prompt of {len(p)}) differs in a batch"
        assert len(outs[i].finished) == 1 and outs[i].finished[0].reason == "length"
        assert outs[i].finished[0].completion_tokens == max_tokens[i] == len(alone)
        assert outs[i].indices == list(range(max_tokens[i]))
    # it did batch: far fewer steps than the requests' tokens one after another
    assert batched_steps < sum(max_tokens)
    assert engine.stats().running == 0 and engine.stats().queue_depth == 0


@pytest.mark.parametrize("length", [1, 13, 31])
def test_one_slot_engine_reproduces_generate(model, length):
    rng = random.Random()
    prompt = [rng.randrange(CONFIG.vocab) for _ in range(length)]
    n = 11
    reference = generate(model, [prompt], n).tokens[0]
    # the same shapes as generate's: batch 1, a cache of prompt + n positions
    out = _alone(model, prompt, n, EngineSettings(max_batch=1, max_len=len(prompt) + n))
    assert out == reference


def test_budget_admits_at_least_one_and_stays_within_it(model):
    settings = EngineSettings(max_batch=4, max_len=200, prefill_budget=10)
    engine = Engine(model, settings)
    outs = [Collect() for _ in range(3)]
    for out, k in zip(outs, (30, 4, 4)):  # the first is over the budget alone
        engine.submit(GenRequest([7] * k, 6, on_event=out))
    engine.step()
    assert engine.stats().running == 1 and engine.stats().queue_depth == 2  # only the long one
    engine.step()
    assert engine.stats().running == 3  # both short ones (8 <= 10)
    _run(engine)
    assert all(len(o.tokens) == 6 for o in outs)


def test_cancel_frees_the_slot_and_finishes_once(model):
    # max_len 45: the survivor needs 3 + 40; the cancelled one's row, were it left growing,
    # would pass 45 (20 + 40) and the step would fail
    engine = Engine(model, EngineSettings(max_batch=2, max_len=45))
    outs = [Collect() for _ in range(3)]
    handles = [engine.submit(GenRequest(prompt, n, on_event=o))
               for prompt, n, o in zip(([1] * 20, [1, 2, 3], [1] * 20), (25, 40, 25), outs)]
    engine.step()  # two admitted, one waiting
    handles[0].cancel()
    handles[2].cancel()  # still waiting
    engine.step()
    assert [f.reason for f in outs[0].finished] == ["cancelled"]
    assert [f.reason for f in outs[2].finished] == ["cancelled"] and outs[2].tokens == []
    assert engine.stats().running == 1
    _run(engine)
    assert [f.reason for f in outs[1].finished] == ["length"] and len(outs[1].tokens) == 40
    handles[1].cancel()  # after it finished: nothing more
    _run(engine)
    assert len(outs[1].finished) == 1


def test_queue_full_context_too_long_and_bad_requests(model):
    engine = Engine(model, EngineSettings(max_batch=1, max_len=32, max_queue=2))
    engine.submit(GenRequest([1], 2))
    engine.submit(GenRequest([1], 2))
    with pytest.raises(QueueFull) as full:
        engine.submit(GenRequest([1], 2))
    assert full.value.retry_after >= 1
    with pytest.raises(ContextTooLong, match="maximum context length is 32 tokens.*30 in the prompt, 3 for"):
        engine.submit(GenRequest([1] * 30, 3))
    for bad in (GenRequest([], 2), GenRequest([CONFIG.vocab], 2), GenRequest([1], 0)):
        with pytest.raises(InvalidWorkload):
            engine.submit(bad)
    with pytest.raises(InvalidWorkload):
        EngineSettings(max_batch=0)


def test_stop_ids_end_a_request_with_the_stop_token_emitted(model):
    rng = random.Random()
    prompt = [rng.randrange(CONFIG.vocab) for _ in range(9)]
    settings = EngineSettings(max_batch=2, max_len=64)
    free = _alone(model, prompt, 20, settings)
    stop_at = 4
    engine = Engine(model, settings, eos_ids=[free[stop_at]])
    out = Collect()
    engine.submit(GenRequest(prompt, 20, on_event=out))
    _run(engine)
    first = free.index(free[stop_at])
    assert out.tokens == free[:first + 1] and out.finished[0].reason == "stop"
    # stop_ids=frozenset() overrides the engine's eos ids
    out2 = Collect()
    engine.submit(GenRequest(prompt, 20, stop_ids=frozenset(), on_event=out2))
    _run(engine)
    assert out2.tokens == free


def test_seeded_sampling_is_the_same_alone_and_in_a_batch(model):
    rng = random.Random()
    sampling = Sampling(temperature=0.9, top_p=0.9, seed=rng.randrange(1 << 31))
    prompt = [rng.randrange(CONFIG.vocab) for _ in range(7)]
    settings = EngineSettings(max_batch=3, max_len=64)

    def run(neighbours: int) -> list[int]:
        engine = Engine(model, settings)
        out = Collect()
        for _ in range(neighbours):
            engine.submit(GenRequest([rng.randrange(CONFIG.vocab) for _ in range(5)], 12,
                                     sampling=Sampling(temperature=1.0)))
        engine.submit(GenRequest(prompt, 12, sampling=sampling, on_event=out))
        _run(engine)
        return out.tokens

    alone = run(0)
    assert run(2) == alone
    assert len(alone) == 12


def test_idle_slots_never_fill_the_cache(model):
    # max_len 8: if idle rows kept growing, a few requests in one slot would overflow the others
    engine = Engine(model, EngineSettings(max_batch=3, max_len=8))
    for _ in range(6):
        out = Collect()
        engine.submit(GenRequest([3, 4], 6, on_event=out))
        _run(engine)
        assert len(out.tokens) == 6
    assert max(engine.cache.host_lengths) <= 8


def test_thread_serves_concurrent_submitters_and_stop_cancels_the_rest(model):
    engine = Engine(model, EngineSettings(max_batch=4, max_len=64, max_queue=64))
    engine.start()
    outs = [Collect() for _ in range(12)]
    done = threading.Event()

    def submit(i: int) -> None:
        engine.submit(GenRequest([i + 1, i + 2], 5, on_event=outs[i]))

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    deadline = time.monotonic() + 60
    while not all(o.finished for o in outs) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(len(o.finished) == 1 and len(o.tokens) == 5 for o in outs)
    long = Collect()
    engine.submit(GenRequest([1], 60, on_event=long))
    engine.stop()
    done.set()
    assert [f.reason for f in long.finished] == ["cancelled"]
    assert not engine.alive
    with pytest.raises(EngineStopped):
        engine.submit(GenRequest([1], 2))


def test_a_failed_step_fails_its_requests_and_the_engine_serves_on(model, monkeypatch):
    engine = Engine(model, EngineSettings(max_batch=2, max_len=32))
    engine.start()
    try:
        real = model.decode
        calls = {"n": 0}

        def flaky(tokens, cache):
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("CUDA out of memory (planted)\nsecond line")
            return real(tokens, cache)

        monkeypatch.setattr(model, "decode", flaky)
        first = Collect()
        engine.submit(GenRequest([1, 2], 10, on_event=first))
        deadline = time.monotonic() + 30
        while not first.finished and time.monotonic() < deadline:
            time.sleep(0.01)
        assert first.finished[0].reason == "error"
        assert first.finished[0].error == "RuntimeError: CUDA out of memory (planted)"
        second = Collect()
        engine.submit(GenRequest([1, 2], 4, on_event=second))
        while not second.finished and time.monotonic() < deadline:
            time.sleep(0.01)
        assert second.finished[0].reason == "length" and len(second.tokens) == 4
    finally:
        engine.stop()
