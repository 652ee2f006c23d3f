"""The report's "Where the time goes" section (reports/time_section.py, chart kind
time_by_kernel): planted time_by_kernel on the demo's model run gives the ranking computed here
independently (kernels largest first, the rest outside our kernels, % of the phase), the "tune
next" kernel, the CPU-clock caveat once per run, bars that add up to each phase; runs without
kernel times have no section; and `infertune profile model` on a tiny model records the kernels
the model launches (runtime/launches.py), per phase, inside each phase's time. The Chromium
check draws the section (tests/test_reports_browser.py's driver)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reports import charts, write_report
from reports.document import Chart, Note, Table, build
from reports.load import load_runs

from .test_profile import fast  # noqa: F401 - the fixture: fast CPU timing settings, one thread

DEMO = Path(__file__).resolve().parent / "data" / "demo-runs"
KERNELS = ["matmul", "attention", "rmsnorm", "rope", "swiglu", "attention_decode"]


def plant(tmp_path: Path, seed: int) -> tuple[Path, list[dict]]:
    """The demo's generate run with random kernel times per row (a different set per phase)."""
    rng = random.Random(seed)
    data = json.loads((DEMO / "generate" / "run.json").read_text())
    for row in data["models"]:
        timed = {"clock": "cpu-wall", "phase_ms": {}}
        for phase in ("prefill", "decode"):
            names = rng.sample(KERNELS, rng.randint(2, 5))
            timed[phase] = {k: rng.uniform(0.1, 500.0) for k in names}
            timed["phase_ms"][phase] = sum(timed[phase].values()) + rng.uniform(0.0, 200.0)
        row["time_by_kernel"] = timed
    folder = tmp_path / "generate"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps(data))
    return folder, data["models"]


def section(doc, sid):
    return next((s for s in doc.sections if s.id == sid), None)


def test_planted_times_give_the_ranking_table_and_the_finding(tmp_path):
    folder, rows = plant(tmp_path, random.randrange(2**31))
    doc = build(load_runs([str(folder)]))
    sec = section(doc, "time")
    assert sec is not None and sec.title == "Where the time goes"
    assert [s.id for s in doc.sections].index("time") == [s.id for s in doc.sections].index("models") + 1
    tables = [b for b in sec.blocks if isinstance(b, Table)]
    assert len(tables) == 1
    want, best = [], None
    for row in rows:  # one batch size: the bar is the variant
        t = row["time_by_kernel"]
        for phase in ("prefill", "decode"):
            total = t["phase_ms"][phase]
            ranked = sorted(t[phase].items(), key=lambda kv: kv[1], reverse=True)
            rest = total - sum(t[phase].values())
            for name, value in [*ranked, ("outside our kernels", rest)]:
                want.append((row["variant"], phase, name, f"{100 * value / total:.1f}%"))
            top = ranked[0]
            if best is None or top[1] / total > best[0]:
                best = (top[1] / total, top[0], phase, row["variant"])
    got = [(r[0], r[1], r[2], r[4]) for r in tables[0].rows]
    assert got == want
    notes = [b.text for b in sec.blocks if isinstance(b, Note)]
    assert sum("CPU wall clock" in n for n in notes) == 1
    assert f"tune next: {best[1]}, {100 * best[0]:.0f}% of {best[2]} in {best[3]}." in " ".join(notes)


def test_the_chart_stacks_each_variants_phase_to_its_total(tmp_path):
    folder, rows = plant(tmp_path, random.randrange(2**31))
    runs = load_runs([str(folder)])
    chart = next(b for b in section(build(runs), "time").blocks if isinstance(b, Chart))
    fig, why = charts.build(chart, runs)
    assert why is None
    for panel, phase in (("x", "prefill"), ("x2", "decode")):
        for i, row in enumerate(rows):
            stacked = sum(t.x[i] or 0 for t in fig.data if t.xaxis == panel)
            assert stacked == pytest.approx(row["time_by_kernel"]["phase_ms"][phase])
    names = [t.name for t in fig.data]
    assert names[-1] == "outside our kernels" or "outside our kernels" in names
    assert sum(t.showlegend for t in fig.data) == len(set(names))  # one legend entry per kernel


def test_runs_without_kernel_times_have_no_section():
    doc = build(load_runs([str(DEMO / "generate"), str(DEMO / "embed")]))
    assert section(doc, "time") is None




def test_profile_model_records_the_kernels_the_model_launches(tmp_path, fast):  # noqa: F811 - the fixture
    from infertune.cli import app
    from infertune.rundir import read_run
    from runtime.launches import kernel_launches
    from runtime.model_config import ModelConfig

    from .test_runtime_cli import _tiny_llama_dir

    model_dir = _tiny_llama_dir(tmp_path / "tiny")
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["profile", "model", str(model_dir), "--variants", "fp32,fp32+w8:triton-default",
                                   "--batch", "2", "--prompt-len", "5", "--gen", "3", "--no-quality", "--out", str(out)])
    assert res.exit_code == 0, res.output
    run = read_run(out)  # schema-valid
    torch_row, triton_row = run["models"]
    assert torch_row["time_by_kernel"]["prefill"] == {} and torch_row["time_by_kernel"]["decode"] == {}
    config = ModelConfig.from_hf_config(json.loads((model_dir / "config.json").read_text()))
    launches = kernel_launches(config, batch=2, seq=5, dtype="fp32", quant="int8", gen=3)
    timed = triton_row["time_by_kernel"]
    assert timed["clock"] == "cpu-wall"
    for phase in ("prefill", "decode"):
        assert set(timed[phase]) == {launch.kernel for launch in launches if launch.phase == phase}, phase
        assert all(v > 0 for v in timed[phase].values())
        assert sum(timed[phase].values()) <= timed["phase_ms"][phase]
    # the phases' time is the generation's: within what generate measured around them
    assert timed["phase_ms"]["decode"] <= triton_row["decode_seconds"] * 1e3 * 1.05 + 1.0
    assert timed["phase_ms"]["prefill"] <= triton_row["prefill_seconds"] * 1e3 * 1.05 + 1.0


def test_the_section_draws_in_chromium(tmp_path):
    from .test_reports_browser import opened

    folder, rows = plant(tmp_path, random.randrange(2**31))
    out = write_report([folder], tmp_path / "report.html")
    with opened(out, 2.0) as browser:
        assert browser.errors() == []
        found = browser.evaluate("""(function () {
          var sec = document.getElementById('time'); if (!sec) return null;
          var chart = sec.querySelector('.chart');
          var bars = chart ? Array.from(chart.querySelectorAll('.barlayer .point path')).filter(function (b) {
            return b.getBoundingClientRect().width > 0; }).length : 0;  // a variant without the kernel: no box
          var r = chart ? chart.getBoundingClientRect() : {width: 0, height: 0};
          return {bars: bars, width: r.width, height: r.height, rows: sec.querySelectorAll('tbody tr').length};
        })()""")
        assert found is not None
        segments = sum(len(r["time_by_kernel"][p]) + 1 for r in rows for p in ("prefill", "decode"))
        assert found["bars"] == segments and found["width"] > 300 and found["height"] > 200
        assert found["rows"] == segments
        if __import__("os").environ.get("INFERTUNE_TIME_SCREENSHOT"):
            browser.evaluate("document.getElementById('time').scrollIntoView()")
            Path(__import__("os").environ["INFERTUNE_TIME_SCREENSHOT"]).write_bytes(browser.screenshot())
