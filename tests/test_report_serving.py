"""The report's "Serving load" section (reports/serving_section.py) drawn from the planted
serving runs in tests/fixtures/serving (make_fixtures.py there): the tables carry the
fixture's numbers, the finding names the level of highest throughput and the p99 TTFT at half
of it (recomputed here), the chart specs carry one trace per run / level with the fixture's
values, the comparison's ratios and the p99 interval rule are recomputed independently, and
the HTML, Markdown and 80-column terminal renderings hold it all, escaped."""

from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path

import pytest

from reports import charts, compare, html, markdown, terminal
from reports.document import Chart, Note, Table, build
from reports.formatting import num
from reports.load import Run
from reports.serving_section import at_half_saturation, finding, saturation_index

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "serving"
ALL = ["tuned", "heuristic", "embeddings", "errors"]
HOSTILE_LABEL = "vllm <script>alert(1)</script>"


def data(name: str) -> dict:
    return json.loads((FIXTURES / name / "run.json").read_text())


def runs(*names: str) -> list[Run]:
    """The fixture runs, read as reports.load does (once reports/run_schema.json knows kind
    "profile-serve", test_fixtures_follow_the_schema checks they validate)."""
    return [Run(FIXTURES / n, n, data(n)) for n in names]


def section(doc):
    found = [s for s in doc.sections if s.id == "serving"]
    assert len(found) == 1
    return found[0]


def table(sec, title: str) -> Table:
    found = [b for b in sec.blocks if isinstance(b, Table) and b.title == title]
    assert len(found) == 1, [b.title for b in sec.blocks if isinstance(b, Table)]
    return found[0]


def notes(sec) -> list[str]:
    return [b.text for b in sec.blocks if isinstance(b, Note)]


def chart(sec, kind: str, metric: str | None = None) -> Chart:
    found = [b for b in sec.blocks if isinstance(b, Chart) and b.kind == kind
             and (metric is None or b.args.get("metric") == metric)]
    assert len(found) == 1
    return found[0]


def test_fixtures_follow_the_schema():
    from reports.runfile import schema, validate

    if "profile-serve" not in schema()["properties"]["kind"]["enum"]:
        pytest.skip("reports/run_schema.json does not know kind 'profile-serve' yet (the profiler's part adds it)")
    for name in ALL:
        validate(data(name))


# --------------------------------------------------------------------------- tables


def test_no_serving_run_no_section():
    kernel = json.loads((Path(__file__).resolve().parent / "data" / "runs" / "kernel-a" / "run.json").read_text())
    doc = build([Run(FIXTURES / "k", "k", kernel)])
    assert "serving" not in [s.id for s in doc.sections]


def test_throughput_table_carries_the_fixture_numbers():
    sec = section(build(runs("tuned")))
    s = data("tuned")["serving"]
    t = table(sec, "tuned: throughput per level")
    assert t.columns == ["rate (req/s)", "done / sent", "errors", "req/s", "out tok/s", "goodput (req/s)", "SLO met"]
    assert len(t.rows) == len(s["levels"]) == 5
    for row, lv in zip(t.rows, s["levels"]):
        assert row == [num(lv["rate"]), f"{lv['completed']} / {lv['requests']}", "0", num(lv["request_throughput"]),
                       num(lv["output_token_throughput"]), num(lv["goodput"]), f"{100 * lv['slo_attainment']:.1f}%"]
    assert t.rows[0][0] == "1" and t.rows[3][3] == "5.88"  # spot values, read off the fixture by eye
    assert t.align == ["right", "right", "left", "right", "right", "right", "right"]  # numbers right, errors left


def test_latency_table_carries_the_fixture_numbers():
    sec = section(build(runs("heuristic")))
    lv = data("heuristic")["serving"]["levels"]
    t = table(sec, "heuristic: latency per level (ms)")
    assert t.columns == ["rate (req/s)", "TTFT p50 (ms)", "TTFT p99 (ms)", "ITL p50 (ms)", "ITL p99 (ms)",
                         "TPOT p50 (ms)", "e2e p50 (ms)", "e2e p99 (ms)"]
    for row, level in zip(t.rows, lv):
        assert row == [num(level["rate"]), num(level["ttft_ms"]["p50"]), num(level["ttft_ms"]["p99"]),
                       num(level["itl_ms"]["p50"]), num(level["itl_ms"]["p99"]), num(level["tpot_ms"]["p50"]),
                       num(level["e2e_ms"]["p50"]), num(level["e2e_ms"]["p99"])]


def test_level_figures_are_the_percentiles_of_their_samples():
    """The fixture is self-consistent (so the charts and the tables tell one story)."""
    import numpy as np

    for lv in data("tuned")["serving"]["levels"]:
        for metric in ("ttft_ms", "itl_ms", "e2e_ms"):
            xs = lv["samples"][metric]
            assert lv[metric]["p99"] == pytest.approx(float(np.percentile(xs, 99)), abs=1e-3)


def test_errors_and_a_level_that_completed_nothing():
    sec = section(build(runs("errors")))
    levels = data("errors")["serving"]["levels"]
    t = table(sec, f"{HOSTILE_LABEL}: throughput per level")
    assert t.columns[0] == "concurrency" and t.columns[-2:] == ["goodput (req/s)", "SLO met"]
    assert [r[0] for r in t.rows] == ["1", "4", "16"]
    assert t.rows[1][1:3] == ["37 / 40", "http_5xx 2, disconnected 1"]  # most frequent first
    assert t.rows[2][1:4] == ["0 / 40", "http_429 30, timeout 10", "0"]
    lat = table(sec, f"{HOSTILE_LABEL}: latency per level (ms)")
    assert lat.rows[2] == ["16"] + ["-"] * 7  # every figure null: "-", not a crash
    assert levels[2]["ttft_ms"] is None
    assert f"{HOSTILE_LABEL}: concurrency 16 completed nothing of 40 requests (http_429 30, timeout 10)." in notes(sec)
    assert any(n.startswith(f"{HOSTILE_LABEL} (run errors): chat at http://127.0.0.1:8002") and "SLO TTFT <= 300 ms"
               in n for n in notes(sec))


def test_embeddings_show_e2e_only():
    sec = section(build(runs("embeddings")))
    t = table(sec, "minilm: throughput per level")
    assert t.columns == ["rate (req/s)", "done / sent", "errors", "req/s"]  # no out tok/s, no SLO columns
    lat = table(sec, "minilm: latency per level (ms)")
    assert lat.columns == ["rate (req/s)", "e2e p50 (ms)", "e2e p90 (ms)", "e2e p99 (ms)"]
    assert lat.rows[-1] == ["32", *(num(data("embeddings")["serving"]["levels"][-1]["e2e_ms"][k])
                                    for k in ("p50", "p90", "p99"))]
    kinds = [(b.kind, b.args.get("metric")) for b in sec.blocks if isinstance(b, Chart)]
    assert kinds == [("serving_latency", None), ("serving_distribution", "e2e_ms")]  # no empty TTFT / ITL charts
    assert "no SLO set (goodput not computed)" in " ".join(notes(sec))


# --------------------------------------------------------------------------- the finding


def _half_by_hand(levels: list[dict], sat: int, metric: str) -> float:
    target = levels[sat]["request_throughput"] / 2
    pts = sorted((lv["request_throughput"], lv[metric]["p99"]) for lv in levels[:sat + 1] if lv["completed"])
    below = max(p for p in pts if p[0] <= target)
    above = min(p for p in pts if p[0] >= target)
    return below[1] + (above[1] - below[1]) * (target - below[0]) / (above[0] - below[0])


@pytest.mark.parametrize("name,metric,level_text", [
    ("tuned", "ttft_ms", "rate 8 req/s"), ("heuristic", "ttft_ms", "rate 4 req/s"),
    ("embeddings", "e2e_ms", "rate 32 req/s"), ("errors", "ttft_ms", "concurrency 4"),
])
def test_finding_names_the_saturation_level_and_the_p99_at_half_of_it(name, metric, level_text):
    s = data(name)["serving"]
    levels = s["levels"]
    best = max(range(len(levels)), key=lambda i: levels[i]["request_throughput"])
    assert saturation_index(s) == best
    value, how = at_half_saturation(s, metric)
    assert value == pytest.approx(_half_by_hand(levels, best, metric))
    assert how.startswith("interpolated between")
    text = finding(s["label"], s)
    assert f"saturation {num(levels[best]['request_throughput'])} req/s" in text and f"at {level_text}" in text
    assert f"{num(value)} ms" in text
    assert ("the highest level swept" in text) == (best == len(levels) - 1)
    sec = section(build(runs(name)))
    assert text in notes(sec)


def test_finding_without_a_saturation_block_takes_the_highest_throughput():
    s = copy.deepcopy(data("tuned")["serving"])
    del s["saturation"]
    assert saturation_index(s) == 3
    s["saturation"] = {"level": 99}  # a level that is not there: ignored
    assert saturation_index(s) == 3


def test_finding_takes_the_nearest_level_when_none_brackets_half():
    s = copy.deepcopy(data("tuned")["serving"])
    s["levels"] = s["levels"][2:]  # 3.94, 5.88, 5.76 req/s: half of 5.88 is below every level
    s["saturation"] = {"level": 1}
    value, how = at_half_saturation(s, "ttft_ms")
    assert value == s["levels"][0]["ttft_ms"]["p99"]
    assert how == "the nearest level, rate 4 req/s (3.94 req/s achieved)"


def test_finding_when_nothing_completed():
    s = copy.deepcopy(data("errors")["serving"])
    s["levels"] = s["levels"][2:]
    s.pop("saturation")
    assert saturation_index(s) is None
    assert finding("x", s) == "x: no level completed a request; no saturation throughput."


# --------------------------------------------------------------------------- charts


def test_latency_chart_overlays_one_color_per_run():
    rs = runs("tuned", "heuristic", "embeddings", "errors")
    spec = chart(section(build(rs)), "serving_latency")
    assert spec.args["runs"] == ALL
    fig, why = charts.build(spec, rs)
    assert why is None
    names = [t.name for t in fig.data]
    expected = [f"{n} {m} {k}" for n in ("tuned", "heuristic") for m in ("TTFT", "e2e") for k in ("p50", "p99")]
    expected += ["minilm e2e p50", "minilm e2e p99"]
    expected += [f"{HOSTILE_LABEL} {m} {k}" for m in ("TTFT", "e2e") for k in ("p50", "p99")]
    assert names == expected
    by_name = {t.name: t for t in fig.data}
    levels = data("heuristic")["serving"]["levels"]
    tr = by_name["heuristic TTFT p99"]
    # in sweep order: past saturation (rate 8, 16) throughput dips below rate 4's while TTFT climbs
    assert list(tr.x) == [lv["request_throughput"] for lv in levels]
    assert list(tr.y) == [lv["ttft_ms"]["p99"] for lv in levels]
    assert tr.x[3] < tr.x[2] and tr.y[3] > tr.y[2]
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.dtick == 1  # 24 ms to 4 s
    assert tr.line.dash == "dash" and by_name["heuristic TTFT p50"].line.dash == "solid"
    assert tr.line.color == by_name["heuristic e2e p50"].line.color != by_name["tuned e2e p50"].line.color
    assert by_name["minilm e2e p50"].xaxis == by_name["tuned e2e p50"].xaxis != by_name["tuned TTFT p50"].xaxis
    # the level that completed nothing has no point
    assert len(by_name[f"{HOSTILE_LABEL} TTFT p50"].x) == 2


def test_distribution_chart_is_an_ecdf_per_level():
    rs = runs("tuned")
    sec = section(build(rs))
    fig, why = charts.build(chart(sec, "serving_distribution", "ttft_ms"), rs)
    assert why is None
    levels = data("tuned")["serving"]["levels"]
    assert [t.name for t in fig.data] == [f"rate {num(lv['rate'])} req/s" for lv in levels]
    for tr, lv in zip(fig.data, levels):
        xs = sorted(lv["samples"]["ttft_ms"])
        assert list(tr.x) == xs
        assert list(tr.y) == pytest.approx([(k + 1) / len(xs) for k in range(len(xs))])
    assert fig.layout.xaxis.type == "log"  # 20 ms to 2 s: wider than 20x
    itl, _ = charts.build(chart(sec, "serving_distribution", "itl_ms"), rs)
    assert [len(t.x) for t in itl.data] == [len(lv["samples"]["itl_ms"]) for lv in levels]


def test_distribution_chart_names_the_run_when_comparing_and_skips_empty_levels():
    rs = runs("tuned", "errors")
    sec = section(build(rs))
    spec = chart(sec, "serving_distribution", "itl_ms")
    fig, _ = charts.build(spec, rs)
    names = [t.name for t in fig.data]
    assert names == [f"tuned: rate {r} req/s" for r in ("1", "2", "4", "8", "16")] + [
        f"{HOSTILE_LABEL}: concurrency 1", f"{HOSTILE_LABEL}: concurrency 4"]  # concurrency 16: no samples
    dashes = {t.line.dash for t in fig.data[:5]}, {t.line.dash for t in fig.data[5:]}
    assert dashes == ({"solid"}, {"dash"})


def test_a_chart_with_no_samples_says_why():
    run = data("errors")
    run["serving"]["levels"] = run["serving"]["levels"][2:]
    rs = [Run(FIXTURES / "errors", "errors", run)]
    sec = section(build(rs))
    fig, why = charts.build(chart(sec, "serving_distribution", "ttft_ms"), rs)
    assert fig is None and why == "no level has TTFT samples"
    fig, why = charts.build(chart(sec, "serving_latency"), rs)
    assert fig is None and why == "no level completed a request: no latency to plot"


# --------------------------------------------------------------------------- the comparison


@pytest.mark.parametrize("n", [1, 7, 60, 300, 701, 2000])
def test_quantile_interval_ranks_match_the_exact_binomial(n):
    """Ranks recomputed in exact integers: 100**n * P(Binomial(n, 0.99) <= k) = sum of
    C(n, i) * 99**i over i <= k, compared with 2.5% and 97.5% of 100**n."""
    rng = random.Random(n * 7919 + random.randrange(10**6))
    xs = [rng.expovariate(1.0) for _ in range(n)]
    s = sorted(xs)
    whole, cdf, total = 100**n, [], 0
    for i in range(n + 1):
        total += math.comb(n, i) * 99**i
        cdf.append(total)
    lo = max((r for r in range(1, n + 1) if 40 * cdf[r - 1] <= whole), default=1)
    hi = min((r for r in range(lo, n + 1) if 40 * cdf[r - 1] >= 39 * whole), default=n)
    assert compare.quantile_interval(xs, 0.99) == (s[lo - 1], s[hi - 1])
    assert compare.quantile_interval([], 0.99) is None
    if n == 2000:  # enough samples for bounds on both sides, around rank 1980
        assert 1960 < lo < 1980 < hi < 2000


def test_quantile_interval_covers_the_true_p99():
    """Exponential(1): p99 = ln 100. With 500 samples both bounds exist; the 95% interval must
    hold it in about 95% of fresh draws (300 draws: at least 90%, a 4-sigma margin)."""
    rng = random.Random()
    truth = math.log(100)
    hits = sum(lo <= truth <= hi for lo, hi in
               (compare.quantile_interval([rng.expovariate(1.0) for _ in range(500)], 0.99) for _ in range(300)))
    assert hits >= 270


def test_latency_change_needs_a_real_move_and_disjoint_intervals():
    rng = random.Random()
    a = [rng.lognormvariate(3, 0.3) for _ in range(1000)]
    b = [rng.lognormvariate(3, 0.3) for _ in range(1000)]
    slow = [x * 2 for x in b]
    p99 = lambda xs: sorted(xs)[989]
    assert compare.latency_change(p99(a), p99(slow), a, slow).status == compare.REGRESSION
    assert compare.latency_change(p99(slow), p99(a), slow, a).status == compare.IMPROVEMENT
    assert compare.latency_change(p99(a), p99(b), a, b).status == compare.NOISE  # the same population
    # disjoint tiny intervals but a 5% move: noise
    tight = [100.0 + i * 1e-3 for i in range(1000)]
    assert compare.latency_change(100.0, 105.0, tight, [x * 1.05 for x in tight]).status == compare.NOISE
    # a big move whose intervals overlap (few samples: the upper bound is the max): noise
    few = [10.0] * 50 + [100.0]
    assert compare.latency_change(50.0, 80.0, few, [12.0] * 50 + [90.0]).status == compare.NOISE
    assert compare.latency_change(None, 80.0).status == compare.MISSING
    assert compare.latency_change(50.0, 80.0).status == compare.REGRESSION  # no samples: the threshold alone


def test_comparison_ratios_against_the_first_run():
    rs = runs("tuned", "heuristic")
    sec = section(build(rs))
    t = table(sec, "Serving levels side by side: ratio to tuned (reference)")
    assert t.columns == ["level", "run", "req/s ratio", "TTFT p99 ratio", "ITL p99 ratio"]
    ref, new = (data(n)["serving"]["levels"] for n in ("tuned", "heuristic"))
    assert [r[:2] for r in t.rows] == [[f"rate {num(lv['rate'])} req/s", "heuristic"] for lv in ref]
    for row, flag, a, b in zip(t.rows, t.flags, ref, new):
        ratios = [b["request_throughput"] / a["request_throughput"], b["ttft_ms"]["p99"] / a["ttft_ms"]["p99"],
                  b["itl_ms"]["p99"] / a["itl_ms"]["p99"]]
        assert [c.split()[0] for c in row[2:]] == [f"{x:.2f}x" for x in ratios]
        # throughput: flagged beyond 10% only (rate 1-4 are the same offered load: 1.00x, 0.99x)
        tp_flagged = abs(ratios[0] - 1) > 0.10
        assert row[2].endswith("REGRESSION") == tp_flagged
        assert flag == ("regression" if "REGRESSION" in " ".join(row) else "")
    assert t.rows[3][2] == f"{new[3]['request_throughput'] / ref[3]['request_throughput']:.2f}x REGRESSION"
    # p99 TTFT 2x and more at rates 2..16 with 60 samples each: beyond the intervals
    assert all(r[3].endswith("REGRESSION") for r in t.rows[1:])
    assert any(n.startswith("Rule: serving levels are matched by rate or concurrency") for n in notes(sec))


def test_comparison_flags_nothing_for_a_rerun_of_the_same_server():
    """Two runs of one server (the tuned fixture against itself with freshly drawn samples of
    the same distribution): every ratio near 1 stays within noise."""
    a = data("tuned")
    b = copy.deepcopy(a)
    rng = random.Random()
    for lv in b["serving"]["levels"]:
        for metric in ("ttft_ms", "itl_ms"):
            xs = lv["samples"][metric]
            lv["samples"][metric] = [x * math.exp(rng.gauss(0, 0.02)) for x in xs]
            lv[metric]["p99"] *= math.exp(rng.gauss(0, 0.03))
        lv["request_throughput"] *= 1 + rng.uniform(-0.05, 0.05)
    b["serving"]["label"] = "tuned again"
    rs = [Run(FIXTURES / "tuned", "tuned", a), Run(FIXTURES / "tuned", "tuned-2", b)]
    t = table(section(build(rs)), "Serving levels side by side: ratio to tuned (reference)")
    assert t.flags == [""] * 5 and "REGRESSION" not in str(t.rows) and "IMPROVEMENT" not in str(t.rows)


def test_comparison_groups_by_endpoint_kind_and_says_when_nothing_matches():
    sec = section(build(runs(*ALL)))
    titles = [b.title for b in sec.blocks if isinstance(b, Table) and b.title.startswith("Serving levels")]
    assert titles == ["Serving levels side by side: ratio to tuned (reference)"]  # one embedding run: no pair
    t = table(sec, titles[0])
    assert {r[1] for r in t.rows} == {"heuristic"}  # the concurrency sweep matches no rate
    assert (f"{HOSTILE_LABEL} shares no level with tuned (a concurrency sweep against a rate sweep): nothing to "
            "compare.") in notes(sec)


def test_two_runs_with_one_label_get_told_apart():
    a, b = data("tuned"), data("heuristic")
    b["serving"]["label"] = "tuned"
    rs = [Run(FIXTURES / "x", "x", a), Run(FIXTURES / "y", "y", b)]
    sec = section(build(rs))
    table(sec, "tuned (x): throughput per level")
    table(sec, "tuned (y): throughput per level")
    fig, _ = charts.build(chart(sec, "serving_latency"), rs)
    assert fig.data[0].name == "tuned (x) TTFT p50" and fig.data[4].name == "tuned (y) TTFT p50"


# --------------------------------------------------------------------------- rendering


def test_html_renders_every_serving_chart_and_escapes():
    rs = runs(*ALL)
    page = html.render(build(rs))
    assert '<section id="serving">' in page
    for kind in ("serving_latency", "serving_distribution"):
        assert f'data-chart="{kind}"' in page
    assert page.count('data-chart="serving_distribution"') == 3  # TTFT, ITL, embeddings' e2e
    assert 'class="chart-missing"' not in page
    assert "<script>alert(1)" not in page
    assert "vllm &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "\\u003cscript\\u003ealert(1)" in page  # in the figures' JSON (the trace names)


def test_markdown_has_the_tables_escaped():
    text = markdown.render(build(runs("tuned", "errors")))
    assert "**tuned: latency per level (ms)**" in text
    assert "| 16 | 0 / 40 | http\\_429 30, timeout 10 | 0 | 0 | 0 | 0.0% |" in text
    assert "&lt;script&gt;" in text and "<script>" not in text


def test_terminal_fits_80_columns():
    from rich.console import Console

    console = Console(width=80, record=True, color_system=None)
    terminal.render(build(runs(*ALL)), console)
    out = console.export_text()
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "tuned: throughput per level" in out and "Serving levels side by side" in out
    assert "tuned: saturation 5.88 req/s" in out
