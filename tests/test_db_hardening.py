"""Bad input to the tuned config database, through the CLI: every cause is exactly one
`error:` line on stderr and exit code 2, never a traceback, and a refused import or merge
leaves the database as it was (issue 13, parts 2 and 6)."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3

import pytest

import kernels
from infertune.cli import main
from kernels.config_source import HeuristicSource
from tuner.database import (DatabaseError, DatabaseSource, check_destination, check_storage, open_database,
                            runtime_source)

from .db_records import make_record
from .fake_devices import H100

MATMUL = kernels.get("matmul")


def run_main(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def assert_one_error(capsys, *argv, fragment: str = "") -> str:
    """Run the CLI; assert exit 2, one `error:` line on stderr holding `fragment`, no traceback."""
    code, out, err = run_main(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err
    assert fragment in lines[0], lines[0]
    return lines[0]


def contents(path) -> list[tuple]:
    """Every row of the records table as stored (no parsing: a corrupt row shows as it is)."""
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT * FROM tuning_records").fetchall(), key=repr)
    finally:
        conn.close()


@pytest.fixture
def db_path(tmp_path):
    """A database with two good records."""
    path = tmp_path / "tuning.db"
    with open_database(str(path)) as db:
        db.put(make_record())
        db.put(make_record(shape={"M": 37, "N": 256, "K": 128}))
    return str(path)


# -- opening a database --------------------------------------------------------------------

def _meta_wrong_columns(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE infertune_meta (k TEXT, v TEXT)")
    conn.commit()
    conn.close()


def _records_wrong_columns(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE infertune_meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO infertune_meta VALUES ('app_id', 'infertune-tuning-db'), ('schema_version', '1')")
    conn.execute("CREATE TABLE tuning_records (id INTEGER PRIMARY KEY, kernel TEXT)")
    conn.execute("INSERT INTO tuning_records VALUES (1, 'matmul')")
    conn.commit()
    conn.close()


def _not_sqlite(path):
    path.write_text("kernel,config\nmatmul,64\n")


@pytest.mark.parametrize("make, fragment", [
    (_meta_wrong_columns, "infertune_meta has columns k, v"),
    (_records_wrong_columns, "tuning_records lacks column(s) source_hash"),
    (_not_sqlite, "not a database (no SQLite header)"),
])
def test_a_file_that_is_not_a_usable_database(capsys, tmp_path, make, fragment):
    path = tmp_path / "x.db"
    make(path)
    before = path.read_bytes()
    export = _export_file(tmp_path, [make_record().to_dict()])
    for argv in (["db", "show"], ["db", "verify"], ["db", "prune", "--stale"], ["db", "export", "--out",
                                                                             str(tmp_path / "out")],
                 ["db", "import", export], ["db", "merge", _good_db(tmp_path)]):
        assert_one_error(capsys, *argv, "--db", str(path), fragment=fragment)
    assert_one_error(capsys, "db", "merge", str(path), "--db", str(tmp_path / "t.db"), fragment=fragment)
    assert path.read_bytes() == before
    source, warning = runtime_source(str(path))  # the runtime runs on, with a warning
    assert isinstance(source, HeuristicSource) and fragment in warning


def _good_db(tmp_path) -> str:
    path = tmp_path / "good.db"
    if not path.exists():
        with open_database(str(path)) as db:
            db.put(make_record())
    return str(path)


def _export_file(tmp_path, records, name="export.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps({"format": "infertune-tuning-export", "schema_version": 1,
                                "device_name": "x", "records": records}))
    return str(path)


@pytest.mark.parametrize("location, fragment", [
    ("/dev/null/x.db", "'/dev/null' is not a directory"),
    ("/sys/x.db", "cannot create the tuning database '/sys/x.db'"),  # unwritable, even for root
    ("foo://x", "unknown database kind 'foo'"),
    ("bogus://x", "unknown database kind 'bogus'"),
    ("postgresql://u@h:port/x", "is not a database URL"),
    ("postgresql+asyncpg://u@h/x", "asyncio driver"),
])
def test_a_destination_that_cannot_be_a_database(capsys, tmp_path, location, fragment):
    export = _export_file(tmp_path, [make_record().to_dict()])
    assert_one_error(capsys, "db", "import", export, "--db", location, fragment=fragment)
    assert_one_error(capsys, "db", "merge", _good_db(tmp_path), "--db", location, fragment=fragment)
    with pytest.raises(DatabaseError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        check_destination(location)


def test_a_directory_is_not_a_database(capsys, tmp_path):
    export = _export_file(tmp_path, [make_record().to_dict()])
    for argv in (["db", "show"], ["db", "import", export]):
        assert_one_error(capsys, *argv, "--db", str(tmp_path), fragment="is a directory")


@pytest.mark.skipif(importlib.util.find_spec("MySQLdb") is not None, reason="MySQLdb is installed here")
def test_a_dialect_whose_driver_is_missing(capsys, tmp_path):
    line = assert_one_error(capsys, "db", "show", "--db", "mysql://u:secret@h/db",
                            fragment="driver 'MySQLdb' is not installed")
    assert "secret" not in line  # a URL's password is never printed


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_folder(capsys, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        export = _export_file(tmp_path, [make_record().to_dict()])
        assert_one_error(capsys, "db", "import", export, "--db", str(folder / "x.db"), fragment="Permission denied")
        assert not (folder / "x.db").exists()
    finally:
        folder.chmod(0o755)


def test_a_path_with_a_newline_stays_on_one_line(capsys, tmp_path):
    weird = tmp_path / "a\nb"
    weird.mkdir()
    assert_one_error(capsys, "db", "show", "--db", str(weird), fragment="is a directory")


def test_check_storage_refuses_in_one_line_and_creates_a_good_one(tmp_path):
    for storage, fragment in [("bogus://x", "unknown database kind"), (str(tmp_path / "s.db"), "not a URL"),
                              ("sqlite:////dev/null/x.db", "not a directory"),
                              (f"sqlite:///{tmp_path}", "is a directory"),
                              ("mysql://u@h/db", "not installed")]:
        with pytest.raises(DatabaseError) as exc:
            check_storage(storage)
        assert fragment in str(exc.value) and "\n" not in str(exc.value)
    check_storage(f"sqlite:///{tmp_path / 'studies.db'}")
    tables = {r[0] for r in sqlite3.connect(tmp_path / "studies.db").execute(
        "SELECT name FROM sqlite_master WHERE type='table'")}
    assert "studies" in tables and "trials" in tables


def test_check_destination_creates_a_good_database(tmp_path):
    where = str(tmp_path / "new" / "tuning.db")
    assert check_destination(where) == where
    with open_database(where, create=False) as db:
        assert db.records() == []


# -- records coming in ---------------------------------------------------------------------

def _bad(**changes) -> dict:
    data = make_record(shape={"M": 13, "N": 256, "K": 128}).to_dict()
    for key, value in changes.items():
        if key == "config_value":
            data["config"] = dict(data["config"], BLOCK_M=value)
        else:
            data[key] = value
    return data


BAD_RECORDS = {
    "trials 10**30": (_bad(trials=10**30), "trials must be an integer"),
    "trials a string": (_bad(trials="10"), "trials must be an integer"),
    "huge M": (_bad(shape={"M": 10**30, "N": 256, "K": 128},
                    problem_key=f"M={10**30},N=256,K=128|fp16|bias=0"), "shape value M="),
    "median 1e400": (None, "median_ms must be a finite time"),  # written as text below
    "median a string": (_bad(median_ms="1.0"), "median_ms must be a finite time"),
    "default_ms a string": (_bad(default_ms="fast"), "default_ms must be a finite time"),
    "config value a string": (_bad(config_value="64"), "config value BLOCK_M='64'"),
    "config value a float": (_bad(config_value=64.5), "config value BLOCK_M=64.5"),
    "config value negative": (_bad(config_value=-16), "config value BLOCK_M=-16"),
    "config a string": (_bad(config="BLOCK_M=64"), "config must be a non-empty object"),
    "config of another kernel": (_bad(config={"BLOCK_T": 4, "num_warps": 4}), "does not name the parameters"),
    "key and shape disagree": (_bad(problem_key="M=14,N=256,K=128|fp16|bias=0"), "does not match shape"),
    "unknown dtype": (_bad(dtype="fp7", problem_key="M=13,N=256,K=128|fp7|bias=0"), "supports dtypes"),
    "kernel a number": (_bad(kernel=7), "kernel must be a non-empty string"),
    "newline in a name": (_bad(device_name="cpu\nx"), "device_name must be one printable line"),
    "a device name that is a path": (_bad(device_name="../../x"), "device_name must be a normalized name"),
    "a capability that is not one": (_bad(capability="sm90"), "capability must be MAJOR.MINOR"),
    "interpreter a string": (_bad(interpreter="yes"), "interpreter must be true or false"),
    "not an object": ([1, 2], "a record must be an object"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_import_of_a_bad_record_stores_nothing(capsys, tmp_path, db_path, case):
    bad, fragment = BAD_RECORDS[case]
    good = make_record(shape={"M": 5, "N": 256, "K": 128}).to_dict()
    export = _export_file(tmp_path, [good, bad if bad is not None else _bad(median_ms=1.25)])
    if bad is None:  # JSON text Python reads as inf
        path = tmp_path / "export.json"
        path.write_text(path.read_text().replace('"median_ms": 1.25', '"median_ms": 1e400'))
    before = contents(db_path)
    line = assert_one_error(capsys, "db", "import", export, "--db", db_path, fragment=fragment)
    assert "record 2" in line and "nothing was imported" in line
    assert contents(db_path) == before
    # Nor is a new database left behind.
    assert_one_error(capsys, "db", "import", export, "--db", str(tmp_path / "new.db"), fragment=fragment)
    assert not (tmp_path / "new.db").exists()


def test_import_of_a_malformed_document(capsys, tmp_path, db_path):
    before = contents(db_path)
    path = tmp_path / "e.json"
    for text, fragment in [('{"format": "infertune-tuning-export", "schema_version": "one", "records": []}',
                            "malformed schema_version"),
                           ('{"format": "infertune-tuning-export", "schema_version": 1, "records": {"a": 1}}',
                            "records must be a list"),
                           ("[" * 100_000, "is not JSON")]:
        path.write_text(text)
        assert_one_error(capsys, "db", "import", str(path), "--db", db_path, fragment=fragment)
    assert contents(db_path) == before


def test_put_refuses_a_bad_record_from_the_tuner(tmp_path):
    with open_database(str(tmp_path / "t.db")) as db:
        with pytest.raises(DatabaseError, match="trials must be an integer") as exc:
            db.put_many([make_record(), make_record(shape={"M": 7, "N": 256, "K": 128}, trials=10**30)])
        assert "record 2" in str(exc.value) and db.records() == []


# -- corrupt rows --------------------------------------------------------------------------

CORRUPTIONS = {
    "config value not a number": ("config_json", json.dumps({"BLOCK_K": 32, "BLOCK_M": "abc", "BLOCK_N": 64,
                                                             "GROUP_M": 8, "SPLIT_K": 1, "num_stages": 3,
                                                             "num_warps": 4})),
    "config JSON that does not parse": ("config_json", "{not json"),
    "shape JSON that does not parse": ("shape_json", "[1,"),
    "a time that is text": ("median_ms", "fast"),
    "m out of step with the key": ("m", 0),
    "trials huge": ("trials", 10**15),
}


def _corrupt(path, column, value) -> int:
    conn = sqlite3.connect(path)
    (row_id,) = conn.execute("SELECT id FROM tuning_records WHERE problem_key LIKE 'M=37,%'").fetchone()
    conn.execute(f"UPDATE tuning_records SET {column} = ? WHERE id = ?", (value, row_id))
    conn.commit()
    conn.close()
    return row_id


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_a_corrupt_row_is_one_line_naming_the_row_and_the_fix(capsys, tmp_path, db_path, case):
    row_id = _corrupt(db_path, *CORRUPTIONS[case])
    for argv in (["db", "show"], ["db", "show", "--json"], ["db", "verify"],
                 ["db", "export", "--out", str(tmp_path / "out")]):
        line = assert_one_error(capsys, *argv, "--db", db_path, fragment=f"row {row_id} (matmul M=37,")
        assert "prune --corrupt" in line
    # A merge of it stores nothing, in a new database or an old one.
    target = _good_db(tmp_path)
    before = contents(target)
    assert_one_error(capsys, "db", "merge", db_path, "--db", target, fragment=f"row {row_id}")
    assert contents(target) == before
    assert_one_error(capsys, "db", "merge", db_path, "--db", str(tmp_path / "new.db"), fragment=f"row {row_id}")
    assert not (tmp_path / "new.db").exists()
    # The runtime's lookup skips the row and says so; the good row is still used.
    with open_database(db_path, create=False) as db:
        source = DatabaseSource(db)
        p37 = MATMUL.problem({"M": 37, "N": 256, "K": 128}, "fp16")
        got = source.resolve(MATMUL, p37, H100)
        assert got.source == "nearest" and "M=16" in got.detail
        p_far = MATMUL.problem({"M": 37, "N": 256, "K": 128}, "fp16", {"bias": 1})
        assert source.resolve(MATMUL, p_far, H100).source == "heuristic"
    # The fix named in the message works.
    code, out, err = run_main(capsys, "db", "prune", "--corrupt", "--json", "--db", db_path)
    assert code == 0 and json.loads(out)["removed"] == {"corrupt": 1}, err
    code, out, _ = run_main(capsys, "db", "show", "--json", "--db", db_path)
    assert code == 0 and [r["problem_key"] for r in json.loads(out)] == ["M=16,N=256,K=128|fp16|bias=0"]


def test_lookup_with_only_a_corrupt_row_falls_back_and_says_so(db_path):
    _corrupt(db_path, "config_json", "{not json")
    conn = sqlite3.connect(db_path)
    conn.execute("DELETE FROM tuning_records WHERE problem_key LIKE 'M=16,%'")
    conn.commit()
    conn.close()
    with open_database(db_path, create=False) as db:
        got = db.lookup(MATMUL, MATMUL.problem({"M": 37, "N": 256, "K": 128}, "fp16"), H100)
    assert got.source == "heuristic" and "1 corrupt record(s) skipped" in got.detail


# -- --json and --out ----------------------------------------------------------------------

def test_json_summaries_of_export_import_merge_prune(capsys, tmp_path, db_path):
    code, out, err = run_main(capsys, "db", "export", "--json", "--out", str(tmp_path / "out"), "--db", db_path)
    assert code == 0, err
    summary = json.loads(out)
    (only,) = summary["files"]
    assert only["records"] == 2 and only["device_name"] == "nvidia-h100-80gb-hbm3"
    code, out, err = run_main(capsys, "db", "import", only["path"], "--json", "--db", str(tmp_path / "c.db"))
    assert code == 0 and json.loads(out) == {"db": str(tmp_path / "c.db"), "file": only["path"], "records": 2,
                                             "written": 2}, err
    code, out, err = run_main(capsys, "db", "merge", db_path, "--json", "--db", str(tmp_path / "c.db"))
    assert code == 0 and json.loads(out)["written"] == 0 and json.loads(out)["records"] == 2, err
    code, out, err = run_main(capsys, "db", "prune", "--stale", "--corrupt", "--json", "--db", db_path)
    assert code == 0 and json.loads(out)["removed"] == {"corrupt": 0, "stale": 0}, err


@pytest.mark.parametrize("out, fragment", [
    ("/dev/null/x", "'/dev/null' is not a directory"),
    ("{file}", "exists and is not a directory"),
    ("/sys/infertune-export", "is not a writable directory"),
])
def test_export_out_is_checked_before_anything_is_written(capsys, tmp_path, db_path, out, fragment):
    a_file = tmp_path / "a-file"
    a_file.write_text("keep")
    out = out.format(file=a_file)
    assert_one_error(capsys, "db", "export", "--out", out, "--db", db_path, fragment=fragment)
    assert a_file.read_text() == "keep" and not os.path.exists("/sys/infertune-export")


@pytest.mark.parametrize("db, fragment", [
    ("/dev/null/x.db", "'/dev/null' is not a directory"),
    ("/sys/x.db", "cannot write the peaks file '/sys/x.db.peaks.json'"),
    ("{dir}", "is a directory"),
])
def test_calibrate_checks_where_the_peaks_go_before_measuring(capsys, monkeypatch, tmp_path, db, fragment):
    from infertune.cli import calibrate_cmd

    def measured(device):
        raise AssertionError("measured before the destination was checked")

    monkeypatch.setattr(calibrate_cmd, "measure_peaks", measured)
    (tmp_path / "x.db.peaks.json").mkdir()
    assert_one_error(capsys, "calibrate", "--db", db.format(dir=tmp_path / "x.db"), fragment=fragment)


def test_stored_text_is_shown_as_text_not_markup(capsys, monkeypatch, tmp_path):
    from infertune.cli import db_cmd

    monkeypatch.setattr(db_cmd.console, "width", 400)  # one line per row
    path = str(tmp_path / "t.db")
    with open_database(path) as db:  # a stale record: its key is only checked for form
        db.put(make_record(source_hash="0" * 64, problem_key="M=16,N=256,K=128|fp16|bias=[/x]"))
    code, out, err = run_main(capsys, "db", "show", "--db", path)
    assert code == 0 and "Traceback" not in err and "bias=[/x]" in out, out + err
