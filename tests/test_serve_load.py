"""`infertune serve` under load: 40 concurrent streaming requests against 4 slots and a queue
of 8, some clients leaving mid-stream. Every request gets exactly one outcome (a whole
response, a 429, or the disconnect it chose), none is lost or duplicated or crossed with
another's, the slots are all free at the end, and each completed request's greedy text is
the text it gets alone."""

from __future__ import annotations

import asyncio
import json
import random

import httpx

from .serve_support import NAME, llama_target, serving, tiny_llama

REQUESTS = 40


async def _one(client: httpx.AsyncClient, url: str, index: int, prompt: list[int], max_tokens: int,
               leave: bool) -> dict:
    body = {"model": NAME, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}, "user": f"client-{index}"}
    async with client.stream("POST", url + "/v1/completions", json=body) as r:
        if r.status_code != 200:
            error = json.loads(await r.aread())["error"]
            return {"index": index, "outcome": f"http_{r.status_code}", "retry_after": r.headers.get("retry-after"),
                    "code": error["code"]}
        ids, text, reasons, usage, done = set(), "", [], None, 0
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            payload = line[6:]
            if payload == "[DONE]":
                done += 1
                continue
            chunk = json.loads(payload)
            ids.add(chunk["id"])
            if chunk["choices"]:
                text += chunk["choices"][0]["text"]
                if chunk["choices"][0]["finish_reason"] is not None:
                    reasons.append(chunk["choices"][0]["finish_reason"])
            else:
                usage = chunk["usage"]
            if leave and text:
                return {"index": index, "outcome": "left"}  # closes the connection mid-stream
        return {"index": index, "outcome": "complete", "ids": ids, "text": text, "reasons": reasons,
                "usage": usage, "done": done}


async def _storm(url: str, plan: list[tuple[list[int], int, bool]]) -> list[dict]:
    limits = httpx.Limits(max_connections=REQUESTS + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(60), limits=limits) as client:
        return await asyncio.wait_for(
            asyncio.gather(*(_one(client, url, i, *p) for i, p in enumerate(plan))), timeout=120)


def test_load_with_disconnects_and_a_full_queue_loses_and_duplicates_nothing(seed):
    rng = random.Random(seed)
    target = llama_target(tiny_llama(seed % 1000), max_batch=4, max_queue=8, max_len=128)
    # prompts of mixed lengths; every 5th client leaves after its first text
    plan = [([rng.randrange(300) for _ in range(rng.randrange(1, 24))], rng.randrange(24, 48), i % 5 == 3)
            for i in range(REQUESTS)]
    with serving(target) as srv:
        results = asyncio.run(_storm(srv.url, plan))
        engine = target.engine
        deadline_ok = _settles(engine)
        assert deadline_ok, f"slots not freed: {engine.stats()}"

        assert sorted(r["index"] for r in results) == list(range(REQUESTS))  # one outcome each
        outcomes = {r["outcome"] for r in results}
        assert outcomes <= {"complete", "http_429", "left"}, outcomes
        rejected = [r for r in results if r["outcome"] == "http_429"]
        complete = [r for r in results if r["outcome"] == "complete"]
        assert rejected, "40 requests at once against 4 slots + a queue of 8 should fill the queue"
        assert all(int(r["retry_after"]) >= 1 and r["code"] == "queue_full" for r in rejected)
        assert len(complete) >= 4
        all_ids = [next(iter(r["ids"])) for r in complete]
        assert all(len(r["ids"]) == 1 for r in complete) and len(set(all_ids)) == len(all_ids)
        for r in complete:
            prompt, max_tokens, _ = plan[r["index"]]
            assert r["done"] == 1 and r["reasons"] == ["length"], r
            assert r["usage"] == {"prompt_tokens": len(prompt), "completion_tokens": max_tokens,
                                  "total_tokens": len(prompt) + max_tokens}

        # the same requests one at a time: the batched greedy text is the text alone
        with httpx.Client(timeout=60) as client:
            for r in complete:
                prompt, max_tokens, _ = plan[r["index"]]
                alone = client.post(srv.url + "/v1/completions",
                                    json={"model": NAME, "prompt": prompt, "max_tokens": max_tokens,
                                          "temperature": 0, "ignore_eos": True}).json()
                assert "choices" in alone, (alone, prompt)
                assert alone["choices"][0]["text"] == r["text"], (seed, r["index"])
        stats = engine.stats()
        assert stats.running == 0 and stats.queue_depth == 0
        # every request the engine took ended once: the batch's admitted ones, then the alone runs
        assert stats.requests_total == REQUESTS - len(rejected) + len(complete)


def _settles(engine, timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = engine.stats()
        if s.running == 0 and s.queue_depth == 0:
            return True
        time.sleep(0.02)
    return False
