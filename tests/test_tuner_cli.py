"""`infertune autotune` through CliRunner: JSON fields, the database and study written, a
rerun that continues the study, and exit code 2 for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infertune.cli import app
from tuner.database import open_database

runner = CliRunner()


@pytest.fixture
def fast_timing(monkeypatch):
    monkeypatch.setenv("INFERTUNE_WARMUP_MS", "0")
    monkeypatch.setenv("INFERTUNE_REP_MS", "0")
    monkeypatch.setenv("INFERTUNE_MIN_REPS_CPU", "2")


def _autotune(*args):
    return runner.invoke(app, ["autotune", "rmsnorm", "--shape", "4x64", "--dtype", "fp16", *args])


def test_autotune_json_writes_the_winner_and_resumes(tmp_path, fast_timing):
    db = tmp_path / "tuning.db"
    first = _autotune("--trials", "3", "--db", str(db), "--json", "--seed", "1")
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    r = data["results"][0]
    assert r["kernel"] == "rmsnorm" and r["problem"].startswith("M=4,N=64|fp16")
    assert r["trials_run"] == 3 and r["trials_total"] == 3 and r["valid_configs"] == 4
    assert r["best_config"] and r["best"]["median_ms"] > 0 and r["default"]["median_ms"] > 0
    assert r["baseline"]["median_ms"] > 0 and r["baseline_name"]
    assert r["interpreter"] is True and data["note"]
    assert data["records_written"] == 1 and data["interrupted"] is False
    assert Path(f"{db}.studies.db").is_file()
    with open_database(str(db), create=False) as database:
        (record,) = database.records("rmsnorm")
    assert record.config == r["best_config"] and record.interpreter and record.trials == 3

    again = _autotune("--trials", "3", "--db", str(db), "--json", "--seed", "1")
    assert again.exit_code == 0, again.output
    r2 = json.loads(again.stdout)["results"][0]
    assert r2["trials_run"] == 1 and r2["trials_total"] == 4  # the one config left; none run twice


def test_autotune_table(tmp_path, fast_timing):
    result = _autotune("--trials", "1", "--db", str(tmp_path / "t.db"), "--sampler", "grid")
    assert result.exit_code == 0, result.output
    assert "tuned" in result.stdout and "vs default" in result.stdout and "interpreter" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--sampler", "annealing"], "unknown sampler"),
    (["--shape", "4x"], "malformed shape"),
    (["--trials", "0"], "--trials"),
    (["--dtype", "int3"], "dtypes"),
])
def test_bad_input_exits_2(tmp_path, args, message):
    result = runner.invoke(app, ["autotune", "rmsnorm", "--shape", "4x64", "--db", str(tmp_path / "t.db"), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_unknown_kernel_exits_2(tmp_path):
    result = runner.invoke(app, ["autotune", "nope", "--shape", "4x64", "--db", str(tmp_path / "t.db")])
    assert result.exit_code == 2 and "unknown kernel" in result.output


def test_studies_live_beside_the_database(tmp_path):
    from infertune.autotune import studies_storage

    assert studies_storage(str(tmp_path / "a" / "t.db")) == f"sqlite:///{tmp_path / 'a' / 't.db'}.studies.db"
    assert (tmp_path / "a").is_dir()
    assert studies_storage("sqlite:////x/t.db") == "sqlite:////x/t.db.studies.db"
    assert studies_storage("postgresql://u@h/db") == "postgresql://u@h/db"
