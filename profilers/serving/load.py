"""Running one load level: open loop at a rate, or closed loop with N concurrent workers.

Open loop (rate): request i is sent at its seeded Poisson time whatever the server did with
the ones before (each is its own asyncio task), so queueing in the server shows in TTFT.
Closed loop (concurrency): N workers each send, wait for the response, send the next: the
server never sees more than N at once, the way a fixed pool of users behaves.

Bounded in count and time: a level sends at most `requests` (or, with `duration`, what fits in
it, at most MAX_REQUESTS); each request has its own timeout; and the level has a hard
deadline (the last scheduled send + the timeout + GRACE_S; closed loop: the rounds needed x
the timeout, or duration + timeout), when requests still outstanding are cancelled and
counted as "timeout"."""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from .arrivals import poisson_offsets, poisson_within
from .client import Request, Result, send

MAX_REQUESTS = 100_000   # per level, with --duration: 10 min at 160 req/s
MAX_CONNECTIONS = 1024   # open loop at high rates: more in flight wait in httpx's pool (counted in TTFT)
GRACE_S = 5.0


@dataclass(frozen=True)
class Level:
    rate: float | None = None          # requests/s (inf: all at once); open loop
    concurrency: int | None = None     # workers; closed loop


@dataclass(frozen=True)
class Target:
    url: str                           # server base, no /v1
    model: str
    endpoint: str                      # client.ENDPOINTS
    timeout: float                     # per request, seconds
    ignore_eos: bool = True


def derive(seed: int, *parts: object) -> int:
    """A seed for one part of a run (level, purpose), stable across runs and Python versions."""
    return int.from_bytes(hashlib.sha256(repr((seed, *parts)).encode()).digest()[:8], "little")


def new_client(target: Target) -> httpx.AsyncClient:
    # trust_env=False: a proxy from the environment would sit between the load and the server
    return httpx.AsyncClient(timeout=httpx.Timeout(target.timeout), trust_env=False,
                             limits=httpx.Limits(max_connections=MAX_CONNECTIONS,
                                                 max_keepalive_connections=MAX_CONNECTIONS))


async def run_level(target: Target, level: Level, make_request: Callable[[int], Request], *, seed: int,
                    requests: int | None = None, duration: float | None = None,
                    count_tokens: Callable[[str], int] | None = None,
                    clock: Callable[[], float] = time.perf_counter) -> tuple[list[Result], float, float]:
    """Run one level: `requests` requests, or as many as `duration` seconds admit. Returns
    (results of the requests sent, in index order; the level's start on `clock`; its
    duration: start to the last request's end)."""
    if (requests is None) == (duration is None):
        raise ValueError("give requests or duration")
    async with new_client(target) as client:
        start = clock()
        if level.rate is not None:
            results = await _open_loop(client, target, level.rate, make_request, seed, requests, duration,
                                       count_tokens, clock, start)
        else:
            results = await _closed_loop(client, target, level.concurrency or 1, make_request, requests, duration,
                                         count_tokens, clock, start)
    ends = [r.end for r in results if r.end is not None]
    return results, start, (max(ends) if ends else clock()) - start


async def _open_loop(client, target: Target, rate: float, make_request, seed: int, requests, duration,
                     count_tokens, clock, start: float) -> list[Result]:
    if requests is not None:
        offsets = poisson_offsets(rate, requests, seed)
    else:
        offsets = poisson_within(rate, duration, seed, MAX_REQUESTS)
    deadline = start + (offsets[-1] if offsets else 0.0) + target.timeout + GRACE_S
    results: list[Result] = []
    tasks: list[asyncio.Task] = []
    try:
        for i, offset in enumerate(offsets):
            delay = start + offset - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            result = Result(i)
            results.append(result)
            tasks.append(asyncio.create_task(send(client, target.url, target.model, target.endpoint,
                                                  make_request(i), timeout=target.timeout,
                                                  count_tokens=count_tokens, ignore_eos=target.ignore_eos,
                                                  clock=clock, result=result)))
        await _wait(tasks, deadline, clock)
    finally:
        await _cancel(tasks, results, clock)
    return results


async def _closed_loop(client, target: Target, workers: int, make_request, requests, duration, count_tokens,
                       clock, start: float) -> list[Result]:
    total = requests if requests is not None else MAX_REQUESTS
    stop_sending = start + duration if duration is not None else math.inf
    if duration is not None:
        deadline = stop_sending + target.timeout + GRACE_S
    else:
        deadline = start + math.ceil(total / workers) * (target.timeout + 1) + GRACE_S
    results: list[Result] = []

    async def worker() -> None:
        while len(results) < total and clock() < stop_sending:
            result = Result(len(results))
            results.append(result)
            await send(client, target.url, target.model, target.endpoint, make_request(result.index),
                       timeout=target.timeout, count_tokens=count_tokens, ignore_eos=target.ignore_eos,
                       clock=clock, result=result)

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    try:
        await _wait(tasks, deadline, clock)
    finally:
        await _cancel(tasks, results, clock)
    return results


async def _wait(tasks: list[asyncio.Task], deadline: float, clock) -> None:
    if tasks:
        await asyncio.wait(tasks, timeout=max(deadline - clock(), 0.0))


async def _cancel(tasks: list[asyncio.Task], results: list[Result], clock) -> None:
    """Cancel what is still running; its requests are timeouts (kept: their send time counts)."""
    for task in tasks:
        if not task.done():
            task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    now = clock()
    for r in results:
        if r.error is None and r.end is None:
            r.fail("timeout", "still running at the level's deadline", now)
