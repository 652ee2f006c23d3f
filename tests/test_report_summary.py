"""The report's Summary (reports/summary_section.py): the first section, its figures computed
here again straight from the fixture run.json files (the demo's runs, tests/data/runs, the
serving fixtures) and from planted tuning entries, each finding a link to a section that is in
the report, and the device caveats stated once, however many runs share them."""

from __future__ import annotations

import io
import json
import math
import random
import statistics
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console

from reports import markdown, terminal
from reports.document import Links, build
from reports.load import load_runs
from reports.summary_section import (
    INTERPRETER_WARNING,
    model_figures,
    tuning_figures,
    tuning_finding,
)

DATA = Path(__file__).parent / "data"
DEMO = DATA / "demo-runs"
DEMO_RUNS = [DEMO / n for n in ("kernel", "autotune", "generate", "embed")]
RUNS = DATA / "runs"
SERVING = Path(__file__).parent / "fixtures" / "serving"


def _json(path: Path) -> dict:
    return json.loads((path / "run.json").read_text())


def _summary(doc):
    return doc.sections[0]


def _findings(doc) -> list:
    return [item for b in _summary(doc).blocks if isinstance(b, Links) for item in b.items]


def _line(doc, label: str) -> str:
    lines = [f.text for f in _findings(doc) if f.text.startswith(label + ":")]
    assert len(lines) == 1, [f.text for f in _findings(doc)]
    return lines[0]


def test_the_summary_is_the_first_section():
    doc = build(load_runs(DEMO_RUNS))
    assert doc.sections[0].id == "summary" and doc.sections[0].title == "Summary"
    assert [s.id for s in doc.sections].count("summary") == 1


def test_tuning_figures_of_the_demo_run():
    data = _json(DEMO / "autotune")
    entries = data["tuning"]
    speeds = [t["speedup_over_default"] for t in entries if t.get("speedup_over_default") is not None]
    trials = sum(t["trials_run"] for t in entries)
    failed = sum(sum(t["failures"].values()) for t in entries)
    line = _line(build(load_runs(DEMO_RUNS)), "autotune")
    assert f"{len(entries)} problems tuned, {sum(s > 1 for s in speeds)} beat their default" in line
    assert f"geometric mean {statistics.geometric_mean(speeds):.2f}x over {len(speeds)}" in line
    assert f"best {max(speeds):.2f}x" in line and f"worst {min(speeds):.2f}x" in line
    best = max((t for t in entries if t.get("speedup_over_default")), key=lambda t: t["speedup_over_default"])
    assert f"({best['kernel']} {best['problem']})" in line
    assert f"{len(entries) - len(speeds)} without a speedup" in line
    assert f"{trials} trials, {failed} failed (timeout {failed})" in line
    assert "tuning time not recorded" in line
    # what the fixture holds, so a fixture swapped for an empty one cannot pass the lines above
    assert (len(entries), sum(s > 1 for s in speeds), trials, failed) == (34, 3, 66, 12)


def _entry(rng: random.Random, i: int, speed: float | None, failures: dict[str, int]) -> dict:
    return {"kernel": f"k{i}", "problem": f"M={rng.randint(1, 4096)},N={i}|fp16", "speedup_over_default": speed,
            "trials_run": rng.randint(1, 50), "failures": failures, "seconds": rng.uniform(1, 100)}


def test_planted_tuning_entries():
    rng = random.Random()  # fresh inputs each run; the figures are recomputed from them below
    kinds = ["timeout", "compile", "oom", "wrong"]
    entries = [_entry(rng, i, rng.uniform(0.5, 3.0), {rng.choice(kinds): rng.randint(0, 5)})
               for i in range(rng.randint(5, 40))]
    entries[0]["speedup_over_default"] = 0.25  # the worst: named, since tuning lost there
    entries.append(_entry(rng, 999, None, {"timeout": 1}))
    entries.append({"quant_search": {"points": [{"scheme": "w8"}, {"scheme": "w4"}], "chosen": "w8"}})
    f = tuning_figures(entries)
    plain = entries[:-1]
    speeds = [t["speedup_over_default"] for t in plain if t["speedup_over_default"] is not None]
    assert f["problems"] == len(plain) and f["measured"] == len(speeds)
    assert f["beat"] == sum(s > 1 for s in speeds)
    assert math.isclose(f["geomean"], statistics.geometric_mean(speeds), rel_tol=1e-12)
    assert f["best"][0] == max(speeds) and f["worst"][0] == 0.25
    assert f["trials"] == sum(t["trials_run"] for t in plain)
    totals: dict[str, int] = {}
    for t in plain:
        for k, v in t["failures"].items():
            totals[k] = totals.get(k, 0) + v
    assert f["failures"] == totals
    assert math.isclose(f["seconds"], sum(t["seconds"] for t in plain))
    line = tuning_finding("run", entries)
    assert f"worst 0.25x (k0 {entries[0]['problem']})" in line
    assert "quantization search of 2 schemes: chosen w8" in line
    # one entry without its time: the total would be a lie, so none is shown
    del entries[3]["seconds"]
    assert tuning_figures(entries)["seconds"] is None


def test_model_and_embedding_figures():
    doc = build(load_runs(DEMO_RUNS))
    rows = {m["variant"]: m for m in _json(DEMO / "generate")["models"]}
    tuned, heur = rows["fp32:triton"], rows["fp32:triton-default"]
    line = _line(doc, "generate")
    pre = tuned["prefill_tokens_per_s"] / heur["prefill_tokens_per_s"]
    dec = tuned["decode_tokens_per_s"] / heur["decode_tokens_per_s"]
    assert f"fp32: tuned/heuristic {pre:.2f}x prefill, {dec:.2f}x decode" in line
    assert f"fp32:triton {tuned['prefill_tokens_per_s']:.3g} / {tuned['decode_tokens_per_s']:.3g}" in line
    embed = _line(doc, "embed")
    for m in _json(DEMO / "embed")["models"]:
        assert f"{m['embeddings_per_s']:.3g} at batch {m['batch']}" in embed


def test_one_line_per_model_and_batch_without_a_tuned_side():
    doc = build(load_runs([RUNS / "model"]))  # torch variants only: no tuned side, no ratio
    lines = [f.text for f in _findings(doc) if f.text.startswith("model:")]
    models = _json(RUNS / "model")["models"]
    assert len(lines) == len({(m["model"], m["batch"]) for m in models})
    assert not any("tuned/" in line for line in lines)
    for m in models:
        assert any(f"at batch {m['batch']}," in line and f"{m['variant']} {m['prefill_tokens_per_s']:.3g} / "
                   f"{m['decode_tokens_per_s']:.3g}" in line for line in lines)


def test_planted_ratios_pair_the_same_dtype_and_batch():
    rng = random.Random()
    rows = [{"model": "m", "batch": b, "variant": f"{dtype}:{backend}", "prefill_tokens_per_s": rng.uniform(1, 1e4),
             "decode_tokens_per_s": rng.uniform(1, 1e3)}
            for b in (1, 8) for dtype in ("bf16", "bf16+w8") for backend in ("triton", "triton-default", "torch")]
    rows.append({**rows[0], "variant": "bf16", "batch": 1})  # no backend named: no side of any ratio
    figures = model_figures(rows)
    for (model, batch), group in figures.items():
        assert set(group["ratios"]) == {f"{d}: tuned/{o}" for d in ("bf16", "bf16+w8") for o in ("heuristic", "torch")}
        for key, (pre, dec) in group["ratios"].items():
            dtype, other = key.split(": tuned/")
            backend = {"heuristic": "triton-default", "torch": "torch"}[other]
            t = next(r for r in rows if r["batch"] == batch and r["variant"] == f"{dtype}:triton")
            o = next(r for r in rows if r["batch"] == batch and r["variant"] == f"{dtype}:{backend}")
            assert math.isclose(pre, t["prefill_tokens_per_s"] / o["prefill_tokens_per_s"])
            assert math.isclose(dec, t["decode_tokens_per_s"] / o["decode_tokens_per_s"])


def test_kernel_profile_share_of_peak_and_bound():
    data = _json(RUNS / "gpu-synthetic")
    line = _line(build(load_runs([RUNS / "gpu-synthetic"])), "gpu-synthetic")
    for m in data["measurements"]:  # latency-bound: the nearer ceiling, here the bandwidth's
        assert m["bound"] == "latency" and m["pct_peak_bandwidth"] > m["pct_peak_flops"]
        assert f"{m['variant']} " in line and f"({m['pct_peak_bandwidth']:.2g}% of peak bandwidth)" in line
    assert "bound latency" in line


def _p99_at_half(levels: list[dict], metric: str, given: int | None) -> tuple[float, float]:
    done = [lv for lv in levels if lv["completed"] and lv["request_throughput"]]
    sat = levels[given] if given is not None else max(done, key=lambda lv: lv["request_throughput"])
    half = sat["request_throughput"] / 2
    pts = sorted((lv["request_throughput"], lv[metric]["p99"]) for lv in levels[:levels.index(sat) + 1]
                 if lv["completed"] and lv.get(metric))
    for (x0, y0), (x1, y1) in pairwise(pts):
        if x0 <= half <= x1:
            return sat["request_throughput"], y0 + (y1 - y0) * (half - x0) / (x1 - x0)
    return sat["request_throughput"], min(pts, key=lambda p: abs(p[0] - half))[1]


def test_serving_saturation_and_p99_at_half():
    doc = build(load_runs([SERVING / "tuned", SERVING / "embeddings"]))
    for name, metric, label in (("tuned", "ttft_ms", "TTFT"), ("embeddings", "e2e_ms", "e2e")):
        s = _json(SERVING / name)["serving"]
        sat, p99 = _p99_at_half(s["levels"], metric, (s.get("saturation") or {}).get("level"))
        lines = [f.text for f in _findings(doc) if f"saturation {sat:.3g} req/s" in f.text]
        assert len(lines) == 1
        assert f"p99 {label} at half of it ({sat / 2:.3g} req/s): {p99:.3g} ms" in lines[0]


def test_every_finding_links_to_a_section_in_the_report():
    doc = build(load_runs([*DEMO_RUNS, RUNS / "gpu-synthetic", SERVING / "tuned"]))
    ids = {s.id for s in doc.sections}
    found = _findings(doc)
    assert len(found) == 6  # one per run: kernel, autotune, generate (batch 1), embed, gpu-synthetic, tuned
    for f in found:
        assert f.href and f.href.startswith("#") and f.href[1:] in ids, f
    assert {f.href for f in found} == {"#tuning", "#models", "#kernels", "#serving"}
    html = __import__("reports.html", fromlist=["render"]).render(doc)
    assert '<a href="#tuning">autotune: 34 problems tuned' in html


def test_caveats_once_at_the_top():
    runs = load_runs([*DEMO_RUNS, RUNS / "gpu-synthetic"])
    doc = build(runs)
    text = markdown.render(doc)
    assert text.count(INTERPRETER_WARNING[:40]) == 1
    assert "(runs kernel, autotune, generate, embed)" in text  # the interpreter runs, not the GPU one
    assert text.count("No measured peaks") == 1 and "(runs kernel, autotune)" in text
    assert text.count("Peaks are the datasheet's") == 1
    flags = ", ".join(_json(RUNS / "gpu-synthetic")["telemetry"]["summary"]["flags"])
    assert text.count(f"did not hold steady ({flags})") == 1
    summary_notes = [b.text for b in _summary(doc).blocks if hasattr(b, "level")]
    assert len(summary_notes) == 4 and all(n in text.split("## Environment")[0] for n in
                                           ["No measured peaks", "Peaks are the datasheet's"])
    # nothing else in the report repeats the interpreter warning per run
    for s in doc.sections[1:]:
        assert not any(INTERPRETER_WARNING[:40] in getattr(b, "text", "") for b in s.blocks)


def test_no_caveat_for_a_steady_gpu_run(tmp_path):
    data = _json(RUNS / "gpu-synthetic")
    data["telemetry"]["summary"]["flags"] = []
    data["peaks"]["source"] = "measured"
    (tmp_path / "run.json").write_text(json.dumps(data))
    doc = build(load_runs([tmp_path]))
    assert [b for b in _summary(doc).blocks if hasattr(b, "level")] == []


def test_all_runs_named_once():
    run = SimpleNamespace(label="x", interpreter=True, data={"telemetry": {}}, kind="autotune")
    from reports.summary_section import caveats

    assert caveats([run, SimpleNamespace(**{**run.__dict__, "label": "y"})])[0][1].endswith("(all 2 runs)")


def test_terminal_at_80_columns_puts_the_findings_first():
    out = io.StringIO()
    terminal.render(build(load_runs(DEMO_RUNS)), Console(file=out, width=80, color_system=None))
    text = out.getvalue()
    first = text.index("Summary")
    assert first < text.index("problems tuned") < text.index("Environment")
    assert text.count("Timings came from the CPU") == 1
    assert max(len(line) for line in text.splitlines()) <= 80
