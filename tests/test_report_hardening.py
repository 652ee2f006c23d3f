"""`infertune report` on hostile input (issue 13): every bad run directory or destination is one
`error:` line and exit 2, never a traceback; artifacts are linked only when they are files inside
their run directory; --out (-o, --output) and --json.

Each case runs through the CLI (infertune.cli.main) on a copy of a committed fixture run
(tests/data/runs) with one field made bad."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import pytest

import reports
from reports.runfile import RunDirError

RUNS = Path(__file__).resolve().parent / "data" / "runs"
MAX_DEPTH = 64  # reports.runfile.MAX_DEPTH


def _main(args, capsys):
    from infertune.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    return exc.value.code, capsys.readouterr()


def one_error_line(code, out) -> str:
    """The run exited 2 with exactly one line on stderr, `error: ...`, and no traceback."""
    assert "Traceback" not in out.err and "Traceback" not in out.out
    lines = out.err.strip().splitlines()
    assert code == 2, (code, out.err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), out.err[-2000:]
    return lines[0]


def copy_run(tmp_path: Path, name: str, dest: str | None = None) -> Path:
    target = tmp_path / (dest or name)
    shutil.copytree(RUNS / name, target)
    return target


def edit_run(run_dir: Path, fn) -> None:
    data = json.loads((run_dir / "run.json").read_text())
    fn(data)
    (run_dir / "run.json").write_text(json.dumps(data))  # NaN / Infinity written as Python's json does


def _set(path: str, value):
    """An edit setting the field at `path` (a/b/0/c) to `value`."""
    def fn(data):
        *parents, last = path.split("/")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value
    return fn


# --------------------------------------------------------------------------- malformed sections

MALFORMED = [
    # (fixture, field, bad value, JSON pointer the message names)
    ("autotune", "tuning", {"matmul": 1}, "/tuning"),
    ("autotune", "tuning/0", "matmul", "/tuning/0"),
    ("autotune", "tuning/0/best", {"median_ms": "fast"}, "/tuning/0/best/median_ms"),
    ("autotune", "tuning/0/failures", {"compile": "many"}, "/tuning/0/failures/compile"),
    ("autotune", "tuning/0/failures", {"compile": math.inf}, "/tuning/0/failures/compile"),
    ("autotune", "tuning/0/history", {"trial": 1}, "/tuning/0/history"),
    ("autotune", "tuning/0/history/0/config", [1, 2], "/tuning/0/history/0/config"),
    ("autotune", "tuning/0/history/0/config", {"BLOCK_M": {"nested": 1}}, "/tuning/0/history/0/config/BLOCK_M"),
    ("autotune", "tuning/0/trials_run", "12", "/tuning/0/trials_run"),
    ("autotune", "tuning/0/best_config", "BLOCK_M=16", "/tuning/0/best_config"),
    ("quant", "tuning/0/quant_search/points", [{"scheme": 3}], "/tuning/0/quant_search/points/0/scheme"),
    ("quant", "tuning/0/quant_search/points/0/latency", [1.0], "/tuning/0/quant_search/points/0/latency"),
    ("quant-plan", "tuning/0/quant_plan/front/0/kl", "small", "/tuning/0/quant_plan/front/0/kl"),
    ("quant-plan", "tuning/0/quant_plan/chosen", ["trial"], "/tuning/0/quant_plan/chosen"),
    ("gpu-synthetic", "telemetry/summary", [1, 2], "/telemetry/summary"),
    ("gpu-synthetic", "telemetry/summary/metrics/sm_clock_mhz", 1980, "/telemetry/summary/metrics/sm_clock_mhz"),
    ("gpu-synthetic", "telemetry/summary/metrics/sm_clock_mhz/min", math.nan,
     "/telemetry/summary/metrics/sm_clock_mhz/min"),
    ("gpu-synthetic", "telemetry/summary/flags", "throttled", "/telemetry/summary/flags"),
    ("gpu-synthetic", "telemetry/samples_file", ["telemetry.csv"], "/telemetry/samples_file"),
    ("gpu-synthetic", "peaks/tflops", {"fp16": "fast"}, "/peaks/tflops/fp16"),
    ("gpu-synthetic", "peaks/bandwidth_gbps", math.nan, "/peaks/bandwidth_gbps"),
    ("gpu-synthetic", "peaks/tflops/fp16", math.inf, "/peaks/tflops/fp16"),
    ("gpu-synthetic", "profilers/ncu/launches", {"id": 0}, "/profilers/ncu/launches"),
    ("gpu-synthetic", "profilers/ncu/launches/0/grid", "8x8x1", "/profilers/ncu/launches/0/grid"),
    ("gpu-synthetic", "profilers/ncu/launches/0/duration_ns", "12 us", "/profilers/ncu/launches/0/duration_ns"),
    ("gpu-synthetic", "profilers/nsys/kernels", [{"name": "k"}], "/profilers/nsys/kernels/0"),
    ("gpu-synthetic", "profilers/nsys/overhead/0/range", 5, "/profilers/nsys/overhead/0/range"),
    ("gpu-synthetic", "profilers/torch_trace", "ok", "/profilers/torch_trace"),
    ("gpu-synthetic", "environment/device", "H100", "/environment/device"),
    ("kernel-a", "measurements/0/timing/median_ms", math.nan, "/measurements/0/timing/median_ms"),
    ("kernel-a", "measurements/0/speedup_vs_baseline", math.inf, "/measurements/0/speedup_vs_baseline"),
    ("kernel-a", "measurements/0/accuracy", "ok", "/measurements/0/accuracy"),
    ("model", "models/0/decode_tokens_per_s", math.inf, "/models/0/decode_tokens_per_s"),
    ("model", "models/0/quality", ["ppl"], "/models/0/quality"),
    ("kernel-a", "artifacts", [{"path": "x"}], "/artifacts/0"),
]


@pytest.mark.parametrize("fixture,field,value,where", MALFORMED,
                         ids=[f"{f}:{p}:{type(v).__name__}" for f, p, v, _ in MALFORMED])
def test_a_malformed_section_is_one_line_naming_the_run_and_the_field(fixture, field, value, where, tmp_path,
                                                                        capsys):
    run = copy_run(tmp_path, fixture)
    edit_run(run, _set(field, value))
    code, out = _main(["report", run, "-o", tmp_path / "r.html"], capsys)
    line = one_error_line(code, out)
    assert str(run / "run.json") in line and f"at {where}:" in line, line
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("levels", [200_000, MAX_DEPTH + 5])
def test_deeply_nested_json_is_one_line(levels, tmp_path, capsys):
    run = copy_run(tmp_path, "kernel-a")
    text = (run / "run.json").read_text()
    deep = "[" * levels + "]" * levels
    (run / "run.json").write_text(text.replace('"artifacts": []', f'"artifacts": {deep}', 1))
    assert deep in (run / "run.json").read_text()
    code, out = _main(["report", run], capsys)
    line = one_error_line(code, out)
    assert f"nests JSON deeper than {MAX_DEPTH} levels" in line


def test_a_whole_file_nested_200000_deep_is_one_line(tmp_path, capsys):
    (tmp_path / "run.json").write_text('{"a":' * 200_000 + "1" + "}" * 200_000)
    code, out = _main(["report", tmp_path, "--json"], capsys)
    assert "nests JSON deeper than" in one_error_line(code, out)


@pytest.mark.parametrize("content", [b"\xff\xfe not utf-8", b"t_s\n" + b'"' + b"x" * 200_000])
def test_a_malformed_telemetry_csv_is_one_line(content, tmp_path, capsys):
    run = copy_run(tmp_path, "gpu-synthetic")
    (run / "telemetry.csv").write_bytes(content)
    code, out = _main(["report", run, "-o", tmp_path / "r.md"], capsys)
    assert "is not readable telemetry CSV" in one_error_line(code, out)


def test_run_json_that_is_not_utf8_or_a_directory_is_one_line(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "run.json").write_bytes(b"\xff\xfe{}")
    code, out = _main(["report", tmp_path / "a"], capsys)
    assert "cannot be read" in one_error_line(code, out)
    (tmp_path / "b" / "run.json").mkdir(parents=True)
    code, out = _main(["report", tmp_path / "b"], capsys)
    assert "is not a run directory" in one_error_line(code, out)


def test_a_path_with_a_newline_stays_on_one_line(tmp_path, capsys):
    run = copy_run(tmp_path, "kernel-a", "bad\nname")
    edit_run(run, _set("tuning", "x"))
    code, out = _main(["report", run], capsys)
    assert "bad\\nname" in one_error_line(code, out)
    code, out = _main(["report", tmp_path / "no\nsuch"], capsys)
    assert "no\\nsuch" in one_error_line(code, out)


def test_a_name_too_long_is_one_line(tmp_path, capsys):
    code, out = _main(["report", tmp_path / ("x" * 5000)], capsys)
    one_error_line(code, out)


# --------------------------------------------------------------------------- any field, any type

HOSTILE_VALUES = [None, "x", [], {"k": {"k": 1}}, 1e308, True]


def _leaves(data, path=()):
    """(path, value) of every field, the first element only of each list."""
    yield path, data
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(data, list) and data:
        yield from _leaves(data[0], (*path, 0))


def _trim(data):
    """`data` with every list cut to its first 2 items (the test's time goes into copying)."""
    if isinstance(data, dict):
        return {k: _trim(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_trim(v) for v in data[:2]]
    return data


@pytest.mark.parametrize("fixture", ["kernel-a", "model", "autotune", "quant", "quant-plan", "gpu-synthetic"])
def test_any_field_of_any_type_is_refused_or_reported(fixture, tmp_path):
    """Every field of a fixture set to each of HOSTILE_VALUES: the report's document is either
    built (and rendered as Markdown) or refused with RunDirError, never another exception (what
    the CLI would show as a traceback). Charts are left out for time: reports.charts.build turns
    a figure that cannot be drawn into a note."""
    from reports import markdown
    from reports.document import build
    from reports.load import load_runs

    original = _trim(json.loads((RUNS / fixture / "run.json").read_text()))
    run = tmp_path / fixture
    shutil.copytree(RUNS / fixture, run)
    refused = built = 0
    paths = [p for p, _ in _leaves(original) if p and p[0] not in ("schema", "kind")]
    for path in paths:
        for value in HOSTILE_VALUES:
            data = json.loads(json.dumps(original))
            _set("/".join(map(str, path)), value)(data)
            (run / "run.json").write_text(json.dumps(data))
            try:
                runs = load_runs([run])
            except RunDirError as exc:
                assert "\n" not in str(exc)
                refused += 1
                continue
            markdown.render(build(runs, link_base=tmp_path))
            built += 1
    assert refused and built


# --------------------------------------------------------------------------- destinations


@pytest.mark.parametrize("dest,message", [
    ("/dev/null/x.html", "'/dev/null' is not a directory"),
    ("/sys/x.html", None),  # sysfs refuses new files, even to root
    ("/sys/no-such-folder/x.md", None),
    ("/proc/no-such-folder/x.html", None),
])
def test_an_unwritable_destination_is_one_line(dest, message, tmp_path, capsys):
    code, out = _main(["report", RUNS / "kernel-a", "-o", dest], capsys)
    line = one_error_line(code, out)
    assert f"cannot write the report to {dest!r}" in line
    assert message is None or message in line, line
    # checked before any run is read: a missing run does not get to speak
    code, out = _main(["report", tmp_path / "no-such-run", "-o", dest], capsys)
    assert f"cannot write the report to {dest!r}" in one_error_line(code, out)


def test_a_directory_as_destination_is_one_line(tmp_path, capsys):
    (tmp_path / "r.html").mkdir()
    code, out = _main(["report", RUNS / "kernel-a", "--out", tmp_path / "r.html"], capsys)
    assert "it is a directory" in one_error_line(code, out)


def test_a_file_as_a_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "plain").write_text("x")
    code, out = _main(["report", RUNS / "kernel-a", "--out", tmp_path / "plain" / "deeper" / "r.md"], capsys)
    assert "is not a directory" in one_error_line(code, out)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_folder_is_one_line(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, out = _main(["report", RUNS / "kernel-a", "-o", folder / "sub" / "r.html"], capsys)
        assert "is not writable" in one_error_line(code, out)
    finally:
        folder.chmod(0o755)


def test_nothing_is_left_behind_when_a_run_is_refused(tmp_path, capsys):
    code, out = _main(["report", tmp_path / "no-such-run", "-o", tmp_path / "new" / "deeper" / "r.html"], capsys)
    assert "is not a run directory" in one_error_line(code, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no folder made, no temp file left


def test_a_missing_folder_is_created(tmp_path, capsys):
    code, _out = _main(["report", RUNS / "kernel-a", "--out", tmp_path / "a" / "b" / "r.md"], capsys)
    assert code == 0 and (tmp_path / "a" / "b" / "r.md").is_file()
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["r.md"]  # no temp file left behind


# --------------------------------------------------------------------------- links

HOSTILE_ARTIFACTS = ["javascript:alert(6)", "../../../../etc/passwd", "/etc/passwd", "data:text/html,x",
                     "https://example.com/x.html", "escape-link", "loop", "sub/../../outside.txt",
                     "[click](javascript:alert(8))"]


@pytest.fixture
def linked_run(tmp_path):
    run = copy_run(tmp_path, "kernel-a", "run")
    (run / "ok file (1).txt").write_text("ok")
    (run / "nested").mkdir()
    (run / "nested" / "trace.json").write_text("{}")
    (run / "javascript:alert(6)").write_text("a file with a scheme-like name is still not linked")
    (tmp_path / "outside.txt").write_text("secret")
    (run / "escape-link").symlink_to(tmp_path / "outside.txt")
    (run / "loop").symlink_to(run / "loop")
    edit_run(run, _set("artifacts", ["ok file (1).txt", "nested/trace.json", "missing.txt", *HOSTILE_ARTIFACTS]))
    return run


def _hrefs(html: str) -> list[str]:
    """Every href of the page's markup but the #section ones (plotly.js, inline, holds its own)."""
    markup = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.DOTALL)
    return [h for h in re.findall(r"""href\s*=\s*["']?([^"' >]*)""", markup) if not h.startswith("#")]


@pytest.mark.parametrize("where", ["beside", "inside"])
def test_html_links_only_files_inside_the_run_directory(linked_run, where, capsys):
    out = (linked_run.parent if where == "beside" else linked_run) / "r.html"
    code, _ = _main(["report", linked_run, "-o", out], capsys)
    assert code == 0
    html = out.read_text()
    prefix = "run/" if where == "beside" else ""
    assert sorted(_hrefs(html)) == sorted([f"{prefix}run.json", f"{prefix}ok%20file%20%281%29.txt",
                                           f"{prefix}nested/trace.json"])
    for name in HOSTILE_ARTIFACTS:
        assert "passwd" not in "".join(_hrefs(html)) and "javascript" not in "".join(_hrefs(html))
    assert "run/javascript:alert(6) (outside the run directory: not linked)" in html
    assert "run/../../../../etc/passwd (outside the run directory: not linked)" in html
    assert "run/escape-link (outside the run directory: not linked)" in html
    assert "run/missing.txt (not in the run directory)" in html


def test_markdown_links_only_files_inside_the_run_directory(linked_run, capsys):
    out = linked_run.parent / "r.md"
    code, _ = _main(["report", linked_run, "--out", out], capsys)
    assert code == 0
    text = out.read_text()
    links = re.findall(r"^- \[[^`]*?\]\(([^)]*)\)$", text, flags=re.MULTILINE)
    assert text.count("](") == len(links) + 1  # the one other: inside the code span of [click](...)
    # the Summary's findings link to sections of the report itself (#id); every other link is a file
    targets = [t for t in links if not t.startswith("#")]
    assert all(re.fullmatch(r"#[a-z0-9-]+", t) for t in links if t.startswith("#"))
    assert sorted(targets) == sorted(["run/run.json", "run/ok%20file%20%281%29.txt", "run/nested/trace.json"])
    assert "- `run/javascript:alert(6)` (outside the run directory: not linked)" in text
    assert "- `run/../../../../etc/passwd` (outside the run directory: not linked)" in text
    assert "- `run/https://example.com/x.html` (outside the run directory: not linked)" in text
    assert "- `run/[click](javascript:alert(8))` (not in the run directory)" in text  # a relative name: no scheme
    assert "- `run/missing.txt` (not in the run directory)" in text


def test_the_hostile_fixture_links_none_of_its_hostile_artifacts(tmp_path):
    html = reports.make_report([RUNS / "hostile"], tmp_path / "r.html").written.read_text()
    assert [h.rsplit("/", 1)[-1] for h in _hrefs(html)] == ["run.json"]
    assert "hostile/javascript:alert(6) (outside the run directory: not linked)" in html


# --------------------------------------------------------------------------- --out and --json


def test_json_summary_of_the_file_written(tmp_path, capsys):
    code, out = _main(["report", RUNS / "kernel-a", RUNS / "kernel-b", "--out", tmp_path / "r.html", "--json"],
                      capsys)
    assert code == 0 and out.err == ""
    summary = json.loads(out.out)
    assert summary["written"] == str(tmp_path / "r.html") and (tmp_path / "r.html").is_file()
    assert summary["format"] == "html"
    assert [r["label"] for r in summary["runs"]] == ["kernel-a", "kernel-b"]
    assert summary["runs"][0]["kind"] == "profile-kernel" and summary["runs"][0]["measurements"] == 3


def test_json_summary_without_a_file(capsys):
    code, out = _main(["report", RUNS / "autotune", "--json"], capsys)
    assert code == 0
    summary = json.loads(out.out)  # only the JSON: no terminal tables
    assert summary["written"] is None and summary["format"] == "terminal"
    assert summary["runs"][0]["tuning"] == 1 and summary["runs"][0]["path"] == str(RUNS / "autotune")


@pytest.mark.parametrize("flag", ["--out", "-o", "--output"])
def test_out_short_form_and_old_spelling(flag, tmp_path, capsys):
    code, out = _main(["report", RUNS / "model", flag, tmp_path / "r.md"], capsys)
    assert code == 0 and (tmp_path / "r.md").read_text().startswith("# infertune report: model")
    assert "report written to" in out.out


def test_the_depth_limit_is_the_library_s():
    from reports.runfile import MAX_DEPTH as LIMIT

    assert LIMIT == MAX_DEPTH


ESCAPES = "\x1b[31mred\x1b]8;;https://example.com\x1b\\link\x07"  # colour, an OSC 8 hyperlink, a bell


def test_control_characters_are_text_in_the_terminal_and_markdown(tmp_path, capsys, monkeypatch):
    from infertune.cli import common

    monkeypatch.setattr(common.console, "_width", 250)
    run = copy_run(tmp_path, "kernel-a", "run")
    edit_run(run, lambda d: (d["artifacts"].append(ESCAPES), d["measurements"][0].update(kernel=ESCAPES)))
    code, out = _main(["report", run], capsys)
    assert code == 0 and "\x1b" not in out.out and "\x07" not in out.out
    assert "\\x1b[31mred\\x1b]8;;https://example.com\\x1b\\link\\x07" in out.out
    code, out = _main(["report", run, "-o", tmp_path / "r.md"], capsys)
    text = (tmp_path / "r.md").read_text()
    assert code == 0 and "\x1b" not in text and "\x07" not in text
    # a name with a backslash is never a path: shown, escaped, not linked
    assert ("- `run/\\x1b[31mred\\x1b]8;;https://example.com\\x1b\\link\\x07` (outside the run directory: not linked)"
            in text)
