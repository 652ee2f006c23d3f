"""How confirmation shows: autotune's table (80 columns, nothing with --json), the marks in
LaunchConfigs.summary and generate's / profile's "configs: 9 database (7 confirmed, 2
unconfirmed), 8 heuristic", a run file carrying a confirmation, and the report's section."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from infertune.cli import autotune_confirm, generate_cmd
from infertune.confirm import confirm_records
from infertune.inference import ConfigReport
from infertune.rundir import skeleton
from kernels.config_source import Resolution
from kernels.device import current_device
from reports import document
from reports.confirm_section import sources_text as report_sources_text
from reports.load import Run
from reports.runfile import RunDirError, validate
from runtime.configs import LaunchConfigs, sources_text
from runtime.launches import kernel_launches
from runtime.presets import get_preset
from tuner.database import open_database, runtime_source

from .db_records import make_record
from .test_confirm import MODEL, SIZES, Planted, _cases


def _report(seed: int):
    records, factors = _cases(seed)
    return confirm_records(MODEL, records, db=None, device=current_device(), seed=seed, rounds=4,
                           step_timer=Planted(factors, seed), **SIZES)


def _capture(monkeypatch, module, width: int = 80) -> io.StringIO:
    out = io.StringIO()
    monkeypatch.setattr(module, "console", Console(file=out, width=width, highlight=False, color_system=None))
    return out


def test_confirmation_table_fits_80_columns(monkeypatch, seed):
    report = _report(seed)
    out = _capture(monkeypatch, autotune_confirm)
    autotune_confirm.print_confirmation(report, json_output=False)
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    flat = " ".join(text.split())  # rich wraps long lines at 80
    for word in ("confirmed", "unconfirmed", "(slower)", "(same config)", "not exercised", "decode b=1",
                 "say nothing about GPU speed", "1 confirmed, 3 unconfirmed, 1 not exercised"):
        assert word in flat, (word, text)
    improve = report.rows[0]
    assert f"{improve['ratio']:.3f} [{improve['ci'][0]:.3f},{improve['ci'][1]:.3f}]" in text


def test_json_prints_nothing(monkeypatch, capsys, seed):
    out = _capture(monkeypatch, autotune_confirm)
    autotune_confirm.print_confirmation(_report(seed), json_output=True)
    assert out.getvalue() == "" and capsys.readouterr().out == ""


class Marked:
    """A config source whose answers carry marks: by problem index, database + confirmed,
    database + unconfirmed, database unmarked, or heuristic."""

    def __init__(self, plan):
        self.plan = plan

    def resolve(self, spec, problem, device):
        source, marks = self.plan[(spec.name, problem)]
        return Resolution(spec.heuristic(problem, device), source, "", marks)


def test_summary_counts_marks_per_source():
    pairs = list(dict.fromkeys((x.kernel, x.problem()) for x in
                               kernel_launches(get_preset(MODEL).config, batch=1, seq=16, dtype="fp32", gen=8)))
    kinds = [("database", ("confirmed",))] * 7 + [("database", ("unconfirmed",))] * 2 + [("nearest", ("transferred",))]
    plan = {pair: kinds[i] if i < len(kinds) else ("heuristic", ()) for i, pair in enumerate(pairs)}
    table = LaunchConfigs(Marked(plan), current_device())
    table.prepare(pairs)
    summary = table.summary()
    heuristic = len(pairs) - len(kinds)
    assert summary["by_source"] == {"database": 9, "nearest": 1, "heuristic": heuristic}
    assert summary["marks_by_source"] == {"database": {"confirmed": 7, "unconfirmed": 2}, "nearest": {"transferred": 1}}
    line = sources_text(summary["by_source"], summary["marks_by_source"])
    assert line == f"9 database (7 confirmed, 2 unconfirmed), 1 nearest (1 transferred), {heuristic} heuristic"
    assert report_sources_text(summary["by_source"], summary["marks_by_source"]) == line
    assert summary["launches"][0]["marks"] == ["confirmed"] and summary["launches"][-1]["marks"] == []
    assert sources_text({}) == "-" and sources_text({"heuristic": 3}) == "3 heuristic"


def test_generate_shows_confirmed_records(monkeypatch, tmp_path):
    """Records stored with the marks confirmation writes reach generate's line through the
    database lookup."""
    device = current_device()
    path = str(tmp_path / "t.db")
    config = get_preset(MODEL).config
    launches = kernel_launches(config, batch=1, seq=16, dtype="fp32", gen=8)
    pairs = list(dict.fromkeys((x.kernel, x.problem()) for x in launches))
    with open_database(path) as db:
        for i, (name, problem) in enumerate(pairs[:3]):
            db.put(make_record(name, problem.dims, "fp32", dict(problem.options), device=device,
                               extra={"confirmed": i < 2, "confirmation": {"ratio": 0.97}}))
    inner, warning = runtime_source(path)
    assert warning is None
    table = LaunchConfigs(inner, device)
    table.prepare(pairs)
    report = ConfigReport("triton", path, None, table.summary())
    line = generate_cmd.configs_line(report)
    # decode's M=1 problems may take the M=16 records as "nearest", with those records' marks
    assert line.startswith("kernel configs: 3 database (2 confirmed, 1 unconfirmed), ") and " heuristic " in line
    nearest = table.summary()["by_source"].get("nearest", 0)
    assert nearest == 0 or f"{nearest} nearest (" in line
    out = _capture(monkeypatch, generate_cmd, width=250)
    generate_cmd._print_configs(report)
    text = out.getvalue()
    assert "3 database (2 confirmed, 1 unconfirmed)" in text and "database (unconfirmed)" in text


def test_run_file_and_report_section(seed, tmp_path):
    report = _report(seed)
    run = skeleton("autotune", "autotune-smollm2", ["infertune", "autotune"],
                   {"device": {"label": "cpu", "kind": "cpu", "interpreter": True}, "torch": "2"})
    run["confirmation"] = report.to_dict()
    validate(run)  # the schema types what the section reads
    profile = skeleton("profile-model", "profile-smollm2", ["infertune", "profile"],
                       {"device": {"label": "cpu", "kind": "cpu", "interpreter": True}, "torch": "2"})
    profile["models"] = [{"variant": "fp32:triton", "model": MODEL, "batch": 1, "prompt_len": 16, "gen": 8,
                          "prefill_tokens_per_s": 1.0, "decode_tokens_per_s": 1.0, "ms_per_token": 1.0,
                          "weight_bytes": 1, "peak_memory_bytes": None,
                          "config_sources": {"database": 9, "heuristic": 8},
                          "config_marks": {"database": {"confirmed": 7, "unconfirmed": 2}}, "quality": None}]
    validate(profile)
    doc = document.build([Run(tmp_path / "a", "a", run), Run(tmp_path / "b", "b", profile)])
    (section,) = [s for s in doc.sections if s.id == "confirmation"]
    records = section.blocks[0]
    assert len(records.rows) == 5 and [row[5] for row in records.rows] == [
        "confirmed", "unconfirmed", "unconfirmed", "not exercised", "unconfirmed"]
    assert records.flags[:2] == ["improvement", "regression"]
    assert any(isinstance(b, document.Note) and "GPU speed" in b.text for b in section.blocks)
    marks = section.blocks[-1]
    assert marks.rows == [["fp32:triton", "1", "9 database (7 confirmed, 2 unconfirmed), 8 heuristic"]]
    bad = dict(run, confirmation={**run["confirmation"], "records": [{"kernel": "matmul", "problem": "x",
                                                                       "verdict": "maybe"}]})
    with pytest.raises(RunDirError, match="/confirmation/records/0/verdict"):
        validate(bad)
