"""The server's Prometheus metrics, on a registry of its own per app (two apps in one process,
as in tests, do not share or collide).

The engine's own counts (queue, running batch, tokens) are read from Engine.stats() when
/metrics is scraped, so the decode path does no metric work; latencies are observed on the
event loop as each request's events arrive.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# Buckets in seconds. TTFT spans a CPU interpreter's seconds down to a GPU's milliseconds; ITL
# a GPU decode step (~5-20 ms at 8B) up to a CPU's tenths of a second.
TTFT_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
               0.75, 1.0, 2.5)
E2E_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0)
RATE_WINDOW_S = 10.0  # tokens/s is the count of tokens emitted in the last 10 s, over 10 s


class _EngineCollector:
    """Reads the engine's (and embedder's) stats at scrape time."""

    def __init__(self, stats: Callable[[], dict[str, Any]], token_rate: Callable[[], float]) -> None:
        self.stats = stats
        self.token_rate = token_rate

    def collect(self):
        s = self.stats()
        yield GaugeMetricFamily("infertune_queue_depth", "Requests waiting to be admitted.", value=s["queue_depth"])
        yield GaugeMetricFamily("infertune_running_requests", "Requests in the running batch.", value=s["running"])
        yield GaugeMetricFamily("infertune_batch_slots", "Decode slots (the engine's max batch).", value=s["slots"])
        yield CounterMetricFamily("infertune_engine_steps", "Scheduler steps run.", value=s["steps"])
        yield CounterMetricFamily("infertune_prompt_tokens", "Prompt tokens prefilled.", value=s["prompt_tokens"])
        yield CounterMetricFamily("infertune_generated_tokens", "Tokens generated.", value=s["generated_tokens"])
        yield GaugeMetricFamily("infertune_generation_tokens_per_second",
                                f"Tokens generated per second over the last {RATE_WINDOW_S:g} s.",
                                value=self.token_rate())


class ServerMetrics:
    """One app's metrics. `stats` returns queue_depth, running, slots, steps, prompt_tokens,
    generated_tokens (cumulative counts), read at each scrape."""

    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._token_times: deque[float] = deque()
        self.registry.register(_EngineCollector(stats, self.token_rate))
        self.requests = Counter("infertune_requests", "HTTP requests by endpoint and status code.",
                                ["endpoint", "status"], registry=self.registry)
        self.ttft = Histogram("infertune_time_to_first_token_seconds", "Time from a request's arrival to its first "
                              "token.", buckets=TTFT_BUCKETS, registry=self.registry)
        self.itl = Histogram("infertune_inter_token_latency_seconds", "Time between two tokens of one request.",
                             buckets=ITL_BUCKETS, registry=self.registry)
        self.e2e = Histogram("infertune_e2e_request_latency_seconds", "Time from a request's arrival to its end "
                             "(completed requests).", buckets=E2E_BUCKETS, registry=self.registry)

    def token(self, at: float) -> None:
        """A token emitted at perf_counter time `at` (for the tokens/s gauge)."""
        self._token_times.append(at)
        self._prune(at)

    def _prune(self, now: float) -> None:
        times = self._token_times
        while times and times[0] < now - RATE_WINDOW_S:
            times.popleft()

    def token_rate(self) -> float:
        self._prune(time.perf_counter())
        return len(self._token_times) / RATE_WINDOW_S

    def render(self) -> tuple[bytes, str]:
        """(body, content type) of a scrape."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
