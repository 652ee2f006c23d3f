"""bench/serving.py's saturation rule and its Markdown (pure parts; the CPU run itself is the
kit rehearsal's `serving` step and `python -m bench`'s smoke)."""

from __future__ import annotations

import random

from bench.serving import KNEE, SHORT, markdown, saturated


def _level(throughput: float, e2e: float | None, errors: dict | None = None) -> dict:
    return {"request_throughput": throughput, "e2e_p50_ms": e2e, "errors": errors or {}}


def test_saturated_by_errors_latency_knee_or_shortfall():
    rng = random.Random()
    rate = rng.uniform(1, 50)
    light = rng.uniform(10, 500)
    keeping_up = _level(rate * 0.95, light * 1.2)
    assert not saturated(keeping_up, rate, light)
    assert not saturated(keeping_up, rate, None)
    assert saturated(_level(rate, light, {"http_429": 1}), rate, light)
    assert saturated(_level(rate, light * KNEE * 1.01), rate, light)
    assert not saturated(_level(rate, light * KNEE * 0.99), rate, light)
    assert saturated(_level(rate * SHORT * 0.99, light), rate, light)
    assert not saturated(_level(rate * SHORT * 1.01, light), rate, light)
    assert saturated(_level(0.0, None), rate, light)  # nothing completed


def test_markdown_names_the_lower_bound_and_the_ratio():
    level = {"offered": 2.0, "request_throughput": 1.9, "output_token_throughput": 240.0, "ttft_p50_ms": 30.0,
             "ttft_p99_ms": 80.0, "itl_p50_ms": 9.0, "itl_p99_ms": 20.0, "e2e_p50_ms": 1200.0, "errors": {}}
    variant = {"variant": "bf16+cg:triton", "levels": [level], "half_load": None, "saturation_request_throughput": 1.9,
               "saturation_output_token_throughput": 240.0, "ttft_p99_ms_at_half": None,
               "saturated_within_sweep": False, "configs": {"backend": "triton", "by_source": {"database": 3},
                                                             "unplanned": 0}, "graph_error": None}
    data = {"model": "llama-3-8b", "device": "NVIDIA H200", "date": "2026-11-28", "input_len": "fixed:64",
            "output_len": "fixed:8", "requests": 4, "seed": 0, "max_batch": 16, "max_len": 1024,
            "variants": [variant], "tuned_over_heuristic": 1.0421}
    text = markdown(data)
    assert "| bf16+cg:triton | 1.90 | 240.0 | - | no (the saturation figure is a lower bound) |" in text
    assert "1.042x" in text
    assert "| 2.00 | 1.90 | 240.0 | 30.0 | 80.0 | 9.0 | 20.0 | - |" in text
