"""The report's tuning section (reports/tuning_section.py) on the demo's fixture run
(tests/data/demo-runs/autotune: 34 problems, 1-2 trials each) and on planted histories: one
table of every problem whose figures match the run file, one sorted speedup chart, the
per-problem detail folded, and a chart only where the entry has the trials it needs (else one
line saying why). Also the Folded block in Markdown and in the terminal."""

from __future__ import annotations

import copy
import io
import json
import random
import re
from pathlib import Path

import pytest
from rich.console import Console

from reports import html, markdown, terminal
from reports.document import Chart, Folded, Note, Table, build
from reports.load import load_runs
from reports.tuning_section import (
    CHART_TITLE,
    MIN_FAILURES_CHART,
    MIN_HISTORY_TRIALS,
    MIN_IMPORTANCE_TRIALS,
    MIN_PARALLEL_TRIALS,
    TABLE_TITLE,
)

DATA = Path(__file__).resolve().parent / "data"
DEMO = DATA / "demo-runs" / "autotune"
TUNE = DATA / "runs" / "autotune"


def _tuning(paths):
    doc = build(load_runs([str(p) for p in paths]))
    return next(s for s in doc.sections if s.id == "tuning"), doc


def _entries(path):
    return [t for t in json.loads((path / "run.json").read_text())["tuning"] if "kernel" in t]


def _done(t):
    return sum(1 for h in t.get("history") or [] if h["state"] == "complete" and h.get("median_ms") is not None)


def test_one_table_of_every_problem_matches_the_run_file():
    sec, _ = _tuning([DEMO])
    entries = _entries(DEMO)
    tables = [b for b in sec.blocks if isinstance(b, Table)]
    assert [t.title for t in tables] == [TABLE_TITLE]  # everything else is folded
    table = tables[0]
    col = {c: i for i, c in enumerate(table.columns)}
    assert "run" not in col  # one tuning run: no run column
    assert len(table.rows) == len(entries) == 34
    for row, t in zip(table.rows, entries):
        assert (row[col["kernel"]], row[col["problem"]]) == (t["kernel"], t["problem"])
        sd = t.get("speedup_over_default")
        assert row[col["speedup over default"]] == (f"{sd:.2f}x" if sd else "-")
        assert row[col["trials"]] == f"{t['trials_run']} / {t['trials_total']}"
        failed = sum(1 for h in t["history"] if h["state"] != "complete")
        cell = row[col["failures"]]
        assert (cell == "-") == (failed == 0)
        if failed:
            assert sum(int(part.rsplit(" ", 1)[1]) for part in cell.split(", ")) == failed


def test_the_speedup_chart_has_every_problem_with_a_speedup_sorted():
    sec, _ = _tuning([DEMO])
    charts = [b for b in sec.blocks if isinstance(b, Chart)]
    assert [c.title for c in charts] == [CHART_TITLE]
    points = charts[0].args["points"]
    want = sorted((t["speedup_over_default"] for t in _entries(DEMO) if t.get("speedup_over_default")),
                  reverse=True)
    assert [p["speedup"] for p in points] == pytest.approx(want)
    assert points[0]["label"].startswith("attention B=1,H=9")  # 1.42x: the demo's best
    skipped = len(_entries(DEMO)) - len(want)
    assert skipped == 2 and any(f"{skipped} of 34 problems have no speedup" in b.text
                                for b in sec.blocks if isinstance(b, Note))


def test_every_problem_is_folded_and_charts_only_where_the_trials_suffice():
    sec, _ = _tuning([DEMO])
    folds = [b for b in sec.blocks if isinstance(b, Folded)]
    entries = _entries(DEMO)
    assert len(folds) == len(entries)
    for n, (fold, t) in enumerate(zip(folds, entries), start=1):
        assert fold.summary.startswith(f"{t['kernel']} {t['problem']}:")
        kinds = {b.kind for b in fold.blocks if isinstance(b, Chart)}
        done = _done(t)
        assert ("history" in kinds) == (done >= MIN_HISTORY_TRIALS), (n, done)
        assert "importance" not in kinds and "parallel" not in kinds  # at most 2 trials in the demo
        failed = len(t["history"]) - done
        assert ("failures" in kinds) == (failed >= MIN_FAILURES_CHART)
        notes = " ".join(b.text for b in fold.blocks if isinstance(b, Note))
        assert f"Parameter importances: not drawn, {done} completed trial(s)" in notes
        if done < MIN_HISTORY_TRIALS:
            assert f"Best so far: not drawn, {done} completed trial(s)" in notes
        assert not any(isinstance(b, Folded) for b in fold.blocks)  # one level


def _planted(n_trials: int, n_failed: int, seed: int) -> dict:
    """The fixture's one matmul entry with a fresh random history: `n_trials` completed trials
    over varied configs, `n_failed` failed ones."""
    rng = random.Random(seed)
    run = json.loads((TUNE / "run.json").read_text())
    t = run["tuning"][0]
    hist = []
    for i in range(n_trials + n_failed):
        cfg = {"BLOCK_M": rng.choice([16, 32, 64]), "BLOCK_N": rng.choice([32, 64, 128]),
               "num_warps": rng.choice([2, 4, 8])}
        if i < n_trials:
            hist.append({"trial": i + 1, "config": cfg, "state": "complete", "median_ms": rng.uniform(1, 9),
                         "kind": None, "reason": None})
        else:
            hist.append({"trial": i + 1, "config": cfg, "state": "failed", "median_ms": None,
                         "kind": rng.choice(["compile", "timeout"]), "reason": "planted"})
    rng.shuffle(hist)
    t["history"], t["trials_run"], t["failures"] = hist, len(hist), {}
    return run


def write_planted_run(dest: Path, n_trials: int = 12, n_failed: int = 2, seed: int = 0) -> Path:
    """A run directory at `dest` holding _planted(...): every per-problem chart has enough data."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "run.json").write_text(json.dumps(_planted(n_trials, n_failed, seed)))
    return dest


@pytest.mark.parametrize("n_trials,n_failed", [(0, 3), (1, 1), (2, 0), (3, 2), (9, 0), (10, 1), (14, 2)])
def test_each_chart_needs_its_threshold_of_trials(n_trials, n_failed, tmp_path):
    seed = random.randrange(2**31)
    run = _planted(n_trials, n_failed, seed)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "run.json").write_text(json.dumps(run))
    sec, doc = _tuning([tmp_path / "p"])
    (fold,) = [b for b in sec.blocks if isinstance(b, Folded)]
    kinds = {b.kind for b in fold.blocks if isinstance(b, Chart)}
    varied = len({json.dumps(h["config"], sort_keys=True) for h in run["tuning"][0]["history"]
                  if h["state"] == "complete"}) > 1
    assert ("history" in kinds) == (n_trials >= MIN_HISTORY_TRIALS), seed
    assert ("importance" in kinds) == (n_trials >= MIN_IMPORTANCE_TRIALS and varied), seed
    assert ("parallel" in kinds) == (n_trials >= MIN_PARALLEL_TRIALS and varied), seed
    assert ("failures" in kinds) == (n_failed >= MIN_FAILURES_CHART), seed
    # one problem: no ranking chart, one line instead
    assert not any(isinstance(b, Chart) for b in sec.blocks)
    assert any(b.text.startswith(f"{CHART_TITLE}: not drawn") for b in sec.blocks if isinstance(b, Note))
    # every chart that is placed can be drawn from the run (no "could not draw" line in the page)
    page = html.render(doc)
    assert 'class="chart-missing"' not in page, seed


def test_the_html_folds_each_problem_and_draws_its_charts_when_opened(tmp_path):
    _, doc = _tuning([DEMO])
    page = html.render(doc)
    tuning = page[page.index('<section id="tuning">'):]
    tuning = tuning[:tuning.index("</section>")]
    assert tuning.count('<details class="fold">') == 34 and tuning.count("</details>") == 34
    assert "<details class=\"fold\" open" not in tuning  # closed
    # the speedup chart is before the first fold; every per-problem chart inside one
    first = tuning.index("<details")
    assert tuning.index('data-chart="tuning_speedup"') < first
    per_problem = [m.start() for m in re.finditer(r'data-chart="(?!tuning_speedup)', tuning)]
    assert per_problem and min(per_problem) > first
    assert 'addEventListener("toggle"' in page


def test_markdown_folds_with_an_escaped_summary(tmp_path):
    run = json.loads((DEMO / "run.json").read_text())
    run["tuning"] = [copy.deepcopy(run["tuning"][0]), copy.deepcopy(run["tuning"][3])]
    run["tuning"][0]["problem"] = "M=4</summary><script>x</script>|fp32"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "run.json").write_text(json.dumps(run))
    _, doc = _tuning([tmp_path / "m"])
    text = markdown.render(doc)
    assert text.count("<details>") == 2 and text.count("</details>") == 2
    assert "<script>" not in text and "&lt;/summary&gt;&lt;script&gt;" in text
    assert text.index("**Every tuned problem**") < text.index("<details>")


def test_terminal_prints_one_line_per_problem():
    _, doc = _tuning([DEMO])
    out = io.StringIO()
    terminal.render(doc, Console(file=out, width=80, color_system=None))
    text = out.getvalue()
    tuning = text[text.index("Tuning"):]
    lines = [line for line in tuning.splitlines() if line.startswith("+ ")]
    assert len(lines) == 34
    assert "Parameter importances: not drawn" not in text  # the folded detail is left to the HTML
