"""The tuning section of the demo's fixture run (tests/data/demo-runs/autotune) in headless
Chromium: every per-problem chart sits in a closed <details> and is not drawn until it opens,
then is drawn at a real size; no chart is drawn from fewer points than it needs; the speedup
chart has one bar per problem with a speedup. Skipped without Chromium like
tests/test_reports_browser.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reports import write_report
from reports.tuning_section import MIN_HISTORY_TRIALS
from tests.test_reports_browser import opened

DEMO = Path(__file__).resolve().parent / "data" / "demo-runs" / "autotune"

CHARTS_JS = """Array.from(document.querySelectorAll('#tuning .chart')).map(function (c) {
  var fold = c.closest('details'); var r = c.getBoundingClientRect();
  var data = c.data || [];
  return {id: c.id, kind: c.dataset.chart, folded: !!fold, open: fold ? fold.open : null,
          drawn: !!c.querySelector('.main-svg'), width: r.width, height: r.height,
          points: data.map(function (t) { return (t.x || []).length; })};
})"""


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("tuning-browser") / "report.html"
    write_report([DEMO], out)
    with opened(out, 1.5) as browser:
        yield browser


def test_per_problem_charts_are_folded_and_drawn_when_opened(page):
    assert page.errors() == []
    before = page.evaluate(CHARTS_JS)
    entries = json.loads((DEMO / "run.json").read_text())["tuning"]
    folds = page.evaluate("document.querySelectorAll('#tuning details').length")
    assert folds == len(entries) == 34
    assert page.evaluate("Array.from(document.querySelectorAll('#tuning details')).every(function (d) "
                         "{ return !d.open; })")
    top = [c for c in before if not c["folded"]]
    assert [c["kind"] for c in top] == ["tuning_speedup"] and top[0]["drawn"] and top[0]["height"] > 300
    inner = [c for c in before if c["folded"]]
    assert inner and not any(c["drawn"] for c in inner)  # nothing drawn in a closed <details>
    # open one fold: its charts draw at a real size, the others stay undrawn
    page.evaluate("document.getElementById(" + json.dumps(inner[0]["id"]) + ").closest('details').open = true")
    page.drain(1.0)
    after = {c["id"]: c for c in page.evaluate(CHARTS_JS)}
    assert after[inner[0]["id"]]["drawn"] and after[inner[0]["id"]]["width"] > 300
    assert not after[inner[-1]["id"]]["drawn"] or inner[-1]["id"] == inner[0]["id"]


def test_no_chart_is_drawn_from_fewer_points_than_it_needs(page):
    page.evaluate("document.querySelectorAll('#tuning details').forEach(function (d) { d.open = true; })")
    page.drain(1.5)
    charts = page.evaluate(CHARTS_JS)
    assert all(c["drawn"] for c in charts)
    entries = json.loads((DEMO / "run.json").read_text())["tuning"]
    with_speedup = sum(1 for t in entries if t.get("speedup_over_default"))
    for c in charts:
        if c["kind"] == "tuning_speedup":
            assert c["points"] == [with_speedup]
        elif c["kind"] == "history":  # optuna's trace of the completed trials' values
            assert max(c["points"]) >= MIN_HISTORY_TRIALS, c
        else:  # the demo's 1-2 trials are too few for importances, parallel coordinates, failure bars
            pytest.fail(f"unexpected chart {c}")
