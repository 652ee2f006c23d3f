"""`infertune db` through typer's CliRunner, and its bad input through main() (one line on
stderr, exit code 2)."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from typer.testing import CliRunner

from infertune.cli import app, main
from kernels.device import current_device
from tuner.database import open_database

from .db_records import make_record

runner = CliRunner()
SMALL = {"M": 5, "N": 33, "K": 17}


@pytest.fixture
def db_path(tmp_path):
    """A database with two fresh records for this device (small enough for the interpreter),
    one stale record and one fp8 record this CPU cannot run."""
    path = tmp_path / "tuning.db"
    device = current_device()
    with open_database(str(path)) as db:
        db.put(make_record(shape=SMALL, device=device))
        db.put(make_record(shape={**SMALL, "M": 9}, device=device,
                           config={"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 16, "GROUP_M": 1, "SPLIT_K": 2,
                                   "num_warps": 4, "num_stages": 2, "TMA": 0}))
        db.put(make_record(shape={**SMALL, "M": 64}, device=device, source_hash="0" * 64))
        db.put(make_record(kernel="matmul_fp8", shape=SMALL, device=device, config={
            "BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 1, "SPLIT_K": 1, "num_warps": 4,
            "num_stages": 2}))
    return str(path)


def invoke(*argv):
    result = runner.invoke(app, list(argv))
    return result


def test_show_json_marks_stale_records(db_path):
    result = invoke("db", "show", "--json", "--db", db_path)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len(data) == 4
    stale = [r for r in data if r["stale"]]
    assert len(stale) == 1 and stale[0]["problem_key"].startswith("M=64") and "source hash" in stale[0]["stale"]
    only = json.loads(invoke("db", "show", "--json", "--kernel", "matmul_fp8", "--db", db_path).output)
    assert [r["kernel"] for r in only] == ["matmul_fp8"]


def test_show_table_and_the_environment_default(db_path, monkeypatch):
    monkeypatch.setenv("INFERTUNE_DB", db_path)
    result = invoke("db", "show")
    assert result.exit_code == 0, result.output
    assert "4 tuned record(s)" in result.output and "stale" in result.output


def test_export_is_byte_identical_and_imports_back(db_path, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        result = invoke("db", "export", "--format", "json", "--out", str(out), "--db", db_path)
        assert result.exit_code == 0, result.output
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir()) and len(names) == 1  # one device
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes()
    copy = str(tmp_path / "copy.db")
    result = invoke("db", "import", str(first / names[0]), "--db", copy)
    assert result.exit_code == 0 and "imported 4 of 4" in result.output
    assert invoke("db", "show", "--json", "--db", copy).output == invoke("db", "show", "--json", "--db", db_path).output


def test_merge_and_prune(db_path, tmp_path):
    target = str(tmp_path / "target.db")
    result = invoke("db", "merge", db_path, "--db", target)
    assert result.exit_code == 0 and "merged 4 record(s)" in result.output
    result = invoke("db", "prune", "--stale", "--db", target)
    assert result.exit_code == 0 and "removed 1 stale record(s)" in result.output
    assert len(json.loads(invoke("db", "show", "--json", "--db", target).output)) == 3


def test_verify_rechecks_every_record_on_this_device(db_path):
    result = invoke("db", "verify", "--json", "--db", db_path)
    assert result.exit_code == 0, result.output
    by_problem = {(r["kernel"], r["problem"].split("|")[0]): r for r in json.loads(result.output)}
    assert by_problem[("matmul", "M=5,N=33,K=17")]["status"] == "ok"
    assert by_problem[("matmul", "M=9,N=33,K=17")]["status"] == "ok"
    assert by_problem[("matmul", "M=64,N=33,K=17")]["status"] == "stale"
    fp8 = by_problem[("matmul_fp8", "M=5,N=33,K=17")]
    if current_device().kind == "cpu":
        assert fp8["status"] == "unsupported" and "fp8" in fp8["detail"]


def test_verify_exits_1_on_a_wrong_config(db_path, monkeypatch):
    from infertune.cli import db_cmd
    from infertune.benchmark import CheckResult

    monkeypatch.setattr(db_cmd, "check", lambda spec, problem, config: CheckResult(
        spec.name, spec.shape_key(problem), str(config), "mismatch", reason="planted"))
    result = invoke("db", "verify", "--kernel", "matmul", "--db", db_path)
    assert result.exit_code == 1 and "mismatch" in result.output


def run_main(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def _foreign(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    return str(path)


@pytest.mark.parametrize("case, fragment", [
    ("corrupt", "corrupt or not a database"),
    ("foreign", "not an infertune tuning database"),
    ("missing", "no tuning database at"),
])
def test_unusable_database_is_one_line_and_exit_2(capsys, tmp_path, case, fragment):
    path = tmp_path / "tuning.db"
    if case == "corrupt":
        path.write_bytes(os.urandom(2048))
    elif case == "foreign":
        _foreign(path)
    for argv in (["db", "show", "--db", str(path)], ["db", "verify", "--db", str(path)],
                 ["db", "prune", "--stale", "--db", str(path)], ["db", "merge", str(path), "--db",
                                                                  str(tmp_path / "t.db")]):
        code, out, err = run_main(capsys, *argv)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
        assert "Traceback" not in out + err


@pytest.mark.parametrize("argv, fragment", [
    (["db", "show", "--kernel", "nope"], "unknown kernel 'nope'"),
    (["db", "verify", "--kernel", "nope"], "unknown kernel 'nope'"),
    (["db", "import", "/nonexistent/x.json"], "no such file"),
    (["db", "prune"], "--stale"),
    (["db", "export", "--format", "csv"], "unknown export format"),
])
def test_bad_db_input_is_one_line_and_exit_2(capsys, db_path, argv, fragment):
    code, out, err = run_main(capsys, *argv, "--db", db_path)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and fragment in lines[0], err


def test_import_of_a_file_that_is_not_an_export(capsys, tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    code, _, err = run_main(capsys, "db", "import", str(bad), "--db", str(tmp_path / "t.db"))
    assert code == 2 and "is not JSON" in err and len(err.strip().splitlines()) == 1
    bad.write_text('{"records": []}')
    code, _, err = run_main(capsys, "db", "import", str(bad), "--db", str(tmp_path / "t.db"))
    assert code == 2 and "not an infertune tuning export" in err
