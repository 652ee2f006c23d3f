"""The Summary in real headless Chromium, on the demo's fixture runs: it is the first section on
the page (the first thing below the header), it shows the figures computed here from the
fixture JSON, each finding is a link to a section that is on the page, and the CPU-interpreter
caveat appears once in the whole page. Skipped without Chromium, as tests/test_reports_browser.py."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from reports import write_report
from tests.test_reports_browser import opened

DEMO = Path(__file__).parent / "data" / "demo-runs"
NAMES = ("kernel", "autotune", "generate", "embed")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("summary") / "report.html"
    write_report([DEMO / n for n in NAMES], out)
    with opened(out, 1.0) as browser:
        yield browser


def test_the_first_section_is_the_summary_with_the_figures(page):
    first = page.evaluate("(function () { var s = document.querySelector('main > section');"
                          " var r = s.getBoundingClientRect();"
                          " return {id: s.id, title: s.querySelector('h2').textContent, text: s.innerText,"
                          " top: r.top}; })()")
    assert first["id"] == "summary" and first["title"] == "Summary"
    assert first["top"] < 400  # on the first screen, right below the header
    tuning = json.loads((DEMO / "autotune" / "run.json").read_text())["tuning"]
    speeds = [t["speedup_over_default"] for t in tuning if t.get("speedup_over_default") is not None]
    assert f"{len(tuning)} problems tuned, {sum(s > 1 for s in speeds)} beat their default" in first["text"]
    assert f"geometric mean {statistics.geometric_mean(speeds):.2f}x" in first["text"]
    embed = json.loads((DEMO / "embed" / "run.json").read_text())["models"]
    for m in embed:
        assert f"{m['embeddings_per_s']:.3g} at batch {m['batch']}" in first["text"]


def test_each_finding_links_to_a_section_on_the_page(page):
    links = page.evaluate("Array.from(document.querySelectorAll('#summary a')).map(function (a) {"
                          " var id = a.getAttribute('href').slice(1);"
                          " return {href: a.getAttribute('href'), exists: !!document.getElementById(id),"
                          " text: a.textContent}; })")
    assert len(links) == 4  # one per run: generate has one batch, embed its two batches on one line
    assert all(link["href"].startswith("#") and link["exists"] for link in links), links
    assert {link["text"].split(":")[0] for link in links} == set(NAMES)


def test_the_interpreter_caveat_is_said_once(page):
    count = page.evaluate("document.body.innerText.split('Timings came from the CPU, not a GPU').length - 1")
    assert count == 1
    assert page.evaluate("document.querySelector('#summary .warning') !== null")
