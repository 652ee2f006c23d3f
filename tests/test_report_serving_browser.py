"""The serving section's charts opened in real headless Chromium (the driver and its skip rule
are tests/test_reports_browser.py's): no console error, each serving chart holds an SVG with
its traces, and the run label with markup in it never runs."""

from __future__ import annotations

from reports import html
from reports.document import build
from tests.test_report_serving import ALL, runs
from tests.test_reports_browser import CHARTS_JS, opened


def test_serving_charts_render_in_chromium(tmp_path):
    out = html.write(build(runs(*ALL)), tmp_path / "serving.html")
    with opened(out, 2.0) as browser:
        assert browser.errors() == [] and browser.dialogs() == []
        found = [c for c in browser.evaluate(CHARTS_JS) if c["kind"].startswith("serving_")]
        assert sorted(c["kind"] for c in found) == ["serving_distribution"] * 3 + ["serving_latency"]
        for c in found:
            assert c["svg"] > 0 and c["traces"] > 0, c
        # 14 latency traces: 4 each for tuned, heuristic and the other engine (TTFT and e2e at p50 and p99), 2 for minilm (e2e)
        latency = browser.evaluate("document.querySelector('[data-chart=serving_latency]').data.length")
        assert latency == 14
        assert browser.evaluate("window.__pwned === undefined")
