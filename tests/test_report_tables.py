"""Readable tables (issue 16, part 4): the layout rules of reports.table_layout against planted
truths and fresh random text, and the terminal report of the demo's fixture runs at 80 and 120
columns: no line past the width, no word of any table cell broken across lines."""

from __future__ import annotations

import io
import random
import string
from pathlib import Path

import pytest
from rich.console import Console

from reports import markdown, terminal
from reports.document import Document, Section, Table, build
from reports.load import load_runs
from reports.table_layout import (
    COMPACT_OVER,
    column_groups,
    compact_config,
    fit,
    is_number,
    numeric_columns,
    table_overhead,
    vertical,
    words,
    wrap,
)

DEMO = Path(__file__).resolve().parent / "data" / "demo-runs"
DEMO_RUNS = [DEMO / n for n in ("kernel", "autotune", "generate", "embed")]


def _random_cell(rng: random.Random) -> str:
    """Words of 1-14 characters joined by spaces, `,` or `|` (a problem key, a config, a note)."""
    alphabet = string.ascii_letters + string.digits + "=_.:/()"
    out = []
    for _ in range(rng.randint(1, 8)):
        out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14))))
        out.append(rng.choice([" ", ",", "|", ", "]))
    return "".join(out[:-1])


def test_wrap_breaks_only_at_spaces_and_separators():
    rng = random.Random()
    for _ in range(300):
        text = _random_cell(rng)
        width = rng.randint(max(len(w) for w in words(text)), 40)
        lines = wrap(text, width)
        assert all(len(line) <= width for line in lines), (text, width, lines)
        # every unbreakable run is whole on one line, in order, and nothing is lost
        assert words(" ".join(lines)) == words(text), (text, width, lines)
        for line in lines:
            assert line == line.strip()


def test_wrap_known_key():
    assert wrap("M=8,N=3072,K=576|fp32|bias=0", 12) == ["M=8,N=3072,", "K=576|fp32|", "bias=0"]
    assert wrap("ok (SQNR 132.3 dB)", 9) == ["ok (SQNR", "132.3 dB)"]
    assert wrap("x" * 7, 3) == ["xxx", "xxx", "x"]  # last resort only: a word wider than the column


@pytest.mark.parametrize("text,expected", [
    ("448 µs", True), ("1.00x", True), ("+3.2%", True), ("5.99e-05", True), ("50,224", True), ("0", True),
    ("513.13 MiB", True), ("8x3072x576", False), ("M=4", False), ("unknown", False), ("-", False),
    ("ok (SQNR 132.3 dB)", False), ("M=4,N=576|fp32", False), ("[1.2, 3.4]", False)])
def test_is_number(text, expected):
    assert is_number(text) is expected


def test_numeric_columns_planted():
    rng = random.Random()
    n = rng.randint(3, 20)
    rows = [[rng.choice(["torch", "tuned"]), f"{rng.uniform(0, 1e4):.3g} ms", f"{rng.uniform(0, 3):.2f}x",
             rng.choice(["M=4,N=576|fp32", "B=1,H=9|fp16"]), rng.choice(["-", f"{rng.randint(0, 10**6):,}"])]
            for _ in range(n)]
    rows[0][4] = "-"
    assert numeric_columns(["variant", "p50", "speedup", "problem", "count"], rows) == \
        ["left", "right", "right", "left", "right"]
    assert numeric_columns(["a"], [["-"], ["-"]]) == ["left"]  # nothing filled: not a number column


def test_compact_config():
    full = "BLOCK_K=128,BLOCK_M=16,BLOCK_N=128,GROUP_M=1,SPLIT_K=1,num_stages=2,num_warps=8 (heuristic)"
    assert compact_config(full) == "BK=128,BM=16,BN=128,GM=1,SK=1,ns=2,nw=8 (heuristic)"
    assert compact_config("BLOCK_M=4,BLOCK_N=1024,num_warps=8") is None  # short enough already
    assert len("BLOCK_M=4,BLOCK_N=1024,num_warps=8") <= COMPACT_OVER
    # two knobs that would read alike: left whole
    assert compact_config("BLOCK_M=16,BIG_M=32,num_warps=8,num_stages=2,other_knob=1") is None
    assert compact_config("M=8,N=3072,K=576|fp32|bias=0" * 3) is None  # a problem key is not a config


def test_fit_never_squeezes_a_word():
    rng = random.Random()
    for _ in range(200):
        n = rng.randint(1, 8)
        columns = [_random_cell(rng)[:12] or "c" for _ in range(n)]
        rows = [[_random_cell(rng) for _ in range(n)] for _ in range(rng.randint(1, 6))]
        width = rng.randint(30, 160)
        layout = fit(columns, rows, width)
        least = [max(len(w) for c in [columns[i], *[r[i] for r in rows]] for w in words(c) or [""]) for i in range(n)]
        if layout.layout == "vertical":
            assert sum(max(x, 1) for x in least) + table_overhead(n) > width
            continue
        assert sum(layout.widths) + table_overhead(n) <= width
        assert all(w >= lo for w, lo in zip(layout.widths, least))


def test_vertical_block():
    lines = vertical(["variant", "p50", "config"], ["tuned", "-", "BLOCK_M=16,num_warps=8"], 24)
    assert lines == ["variant: tuned", "  config  BLOCK_M=16,", "          num_warps=8"]


def _terminal(doc: Document, width: int) -> str:
    buf = io.StringIO()
    terminal.render(doc, Console(file=buf, width=width, force_terminal=False, color_system=None))
    return buf.getvalue()


@pytest.fixture(scope="module")
def demo_doc() -> Document:
    return build(load_runs(DEMO_RUNS))


@pytest.mark.parametrize("width", [80, 120])
def test_terminal_report_of_the_demo_reads_cleanly(demo_doc, width):
    out = _terminal(demo_doc, width)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= width
    # every unbreakable run of every table cell stands whole on some line
    text = "\n".join(lines)
    missing = []
    for s in demo_doc.sections:
        for b in s.blocks:
            if isinstance(b, Table):
                for row in b.rows:
                    for cell in row:
                        missing += [w for w in words(str(cell)) if w not in text]
                # a column name, where its column has a value (blocks leave "-" fields out)
                for i, name in enumerate(b.columns):
                    if any(r[i] not in ("", "-") for r in b.rows):
                        missing += [w for w in words(str(name)) if w not in text]
    assert not missing, missing[:10]
    assert "(data base)" not in text and "unkn own" not in text


def test_terminal_table_kept_when_it_fits():
    t = Table("planted", ["variant", "p50", "problem"],
              [["torch", "448 µs", "M=8,N=3072,K=576|fp32"], ["tuned", "1.5 ms", "M=4,N=576|fp32"]])
    out = _terminal(Document("t", [], [Section("s", "S", [t])]), 80)
    row = next(line for line in out.splitlines() if "torch" in line)
    # a table (borders), the number right-aligned in its column: "1.5 ms" ends where "448 µs" ends
    assert "│" in row
    other = next(line for line in out.splitlines() if "tuned" in line)
    assert row.index("448 µs") + len("448 µs") == other.index("1.5 ms") + len("1.5 ms")
    # at 24 columns (20 for words side by side + 10 of borders do not fit) it becomes blocks, words whole
    narrow = _terminal(Document("t", [], [Section("s", "S", [t])]), 24)
    assert "variant: torch" in narrow and "│" not in narrow
    assert all(w in narrow for w in words("M=8,N=3072,K=576|fp32"))


def test_markdown_aligns_number_columns_right():
    t = Table("planted", ["variant", "p50", "problem"],
              [["torch", "448 µs", "M=8,N=3072,K=576|fp32"], ["tuned", "-", "M=4,N=576|fp32"]])
    text = markdown.render(Document("t", [], [Section("s", "S", [t])]))
    assert "|---|---:|---|" in text
    t.align = ["left", "left", "right"]  # a section's own alignment wins
    assert "|---|---|---:|" in markdown.render(Document("t", [], [Section("s", "S", [t])]))


def test_label_tables_fold_into_column_groups():
    rng = random.Random()
    n_runs = rng.randint(3, 6)
    stamp = "2026-11-28T13:48:49+00:00"  # 25 characters, one word: 4 of them do not fit 80 columns
    columns = ["", *[f"run{i}" for i in range(n_runs)]]
    rows = [["created", *[stamp] * n_runs], ["torch", *["2.13.0+cpu"] * n_runs]]
    groups = column_groups(columns, rows, 80)
    assert groups and all(g[0] == 0 for g in groups)
    assert [i for g in groups for i in g[1:]] == list(range(1, n_runs + 1))  # each run once, in order
    assert all(len(g) - 1 <= (80 - 7 - 1) // (25 + 3) for g in groups)  # as many as fit beside "created"
    assert column_groups(["variant", "a", "b"], [["x", stamp, stamp]], 40) is None  # rows not labelled
    out = _terminal(Document("t", [], [Section("s", "S", [Table("Runs", columns, rows)])]), 80)
    assert out.count(stamp) == n_runs and f"Runs (1/{len(groups)})" in out
