"""The tuned config database: upserts, the lookup order (exact, nearest, heuristic), staleness,
invalid stored configs, corrupt and foreign files, two concurrent writers, JSON export and
import, merge, prune, and the speed of a memoized answer."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kernels
from infertune.benchmark import check, resolve
from infertune.settings import Settings
from kernels.config_source import HeuristicSource, using_config_source
from kernels.device import current_device
from tuner.database import (Database, DatabaseError, DatabaseSource, current_source_hash, current_triton_minor,
                            dump_json, key_fields, open_database, runtime_source)
from tuner.db_schema import SCHEMA_VERSION
from tuner.location import default_db_path

from .db_records import make_record
from .fake_devices import A100, CPU, H100

ROOT = Path(__file__).resolve().parent.parent
MATMUL = kernels.get("matmul")


def problem(m: int, n: int = 256, k: int = 128, dtype: str = "fp16", **options):
    return MATMUL.problem({"M": m, "N": n, "K": k}, dtype, options)


def tuned_config(device=H100, **changes):
    """A config that is not the heuristic's (so a test sees which one it got) and is valid for
    every M these tests use (a config tuned for one M may be rejected for another)."""
    base = MATMUL.heuristic(problem(16), device)
    for block_n in (32, 64, 128, 256):
        config = base.replace(BLOCK_N=block_n, **changes)
        if config != base and all(MATMUL.reject_reason(config, problem(m), device) is None
                                  for m in (8, 16, 20, 30, 32, 40, 64, 128)):
            return dict(config)
    raise AssertionError("no alternative config")


@pytest.fixture
def db(tmp_path) -> Database:
    with open_database(str(tmp_path / "tuning.db")) as database:
        yield database


def test_key_fields_name_what_was_tuned_and_where():
    fields = key_fields(MATMUL, problem(13), dataclasses.replace(H100, name="NVIDIA_H100_80GB_HBM3"))
    assert fields["device_name"] == "nvidia-h100-80gb-hbm3" and fields["capability"] == "9.0"
    assert fields["problem_key"] == "M=13,N=256,K=128|fp16|bias=0"
    assert fields["bucket"] == "M=16,N=256,K=128|fp16|bias=0" and fields["quant"] == "none"
    assert fields["source_hash"] == current_source_hash(MATMUL) and fields["shape"] == {"M": 13, "N": 256, "K": 128}


def test_put_keeps_the_faster_record(db):
    assert db.put(make_record(median_ms=1.0))
    assert not db.put(make_record(median_ms=2.0))
    assert db.put(make_record(median_ms=0.5, trials=99))
    (only,) = db.records()
    assert only.median_ms == 0.5 and only.trials == 99
    assert only == make_record(median_ms=0.5, trials=99)  # every field round-trips


def test_put_rejects_a_non_finite_time(db):
    with pytest.raises(DatabaseError, match="finite"):
        db.put(make_record(median_ms=float("inf")))


def test_put_rejects_a_malformed_record_in_one_line(db):
    with pytest.raises(DatabaseError, match="malformed record"):
        db.put(make_record(triton_version="dev"))
    with pytest.raises(DatabaseError, match="device_name must be a non-empty string"):
        db.put(make_record(device_name=None))  # refused before the database sees it
    assert db.records() == []


def test_lookup_exact_key(db):
    config = tuned_config()
    db.put(make_record(config=config))
    got = db.lookup(MATMUL, problem(16), H100)
    assert got.source == "database" and dict(got.config) == config
    assert "M=16,N=256,K=128|fp16|bias=0" in got.detail


def test_lookup_nearest_m_in_log_space(db):
    db.put(make_record(shape={"M": 8, "N": 256, "K": 128}, config=tuned_config()))
    db.put(make_record(shape={"M": 64, "N": 256, "K": 128}, config=tuned_config(BLOCK_K=64)))
    near8 = db.lookup(MATMUL, problem(20), H100)  # log2(20/8)=1.32 < log2(64/20)=1.68
    assert near8.source == "nearest" and dict(near8.config) == tuned_config()
    assert "M=8 (asked M=20)" in near8.detail
    near64 = db.lookup(MATMUL, problem(30), H100)
    assert near64.source == "nearest" and dict(near64.config) == tuned_config(BLOCK_K=64)


def test_lookup_never_crosses_device_class_dtype_options_or_other_dims(db):
    db.put(make_record(config=tuned_config()))
    for spec_problem, device in [(problem(16), A100), (problem(16), CPU), (problem(16, dtype="bf16"), H100),
                                 (problem(16, bias=1), H100), (problem(16, n=512), H100),
                                 (problem(16, k=256), H100)]:
        got = db.lookup(MATMUL, spec_problem, device)
        assert got.source == "heuristic" and got.config == MATMUL.heuristic(spec_problem, device)
        assert "no tuned record" in got.detail
    # Same class under another spelling of the name: found.
    renamed = dataclasses.replace(H100, name="NVIDIA_H100_80GB_HBM3")
    assert db.lookup(MATMUL, problem(16), renamed).source == "database"


@pytest.mark.parametrize("stale_field, text", [
    ({"source_hash": "0" * 64}, "another kernel source hash"),
    ({"triton_version": "3.1.0"}, "Triton 3.1"),
])
def test_stale_records_are_not_used_and_reported(db, stale_field, text):
    db.put(make_record(config=tuned_config(), **stale_field))
    got = db.lookup(MATMUL, problem(16), H100)
    assert got.source == "heuristic" and got.config == MATMUL.heuristic(problem(16), H100)
    assert got.detail.startswith("stale:") and text in got.detail
    # Nor for a nearest lookup.
    assert db.lookup(MATMUL, problem(40), H100).source == "heuristic"
    # A fresh record beside the stale one is used.
    db.put(make_record(shape={"M": 32, "N": 256, "K": 128}, config=tuned_config()))
    assert db.lookup(MATMUL, problem(16), H100).source == "nearest"


def test_a_stored_config_the_device_rejects_falls_back(db):
    bad = dict(MATMUL.heuristic(problem(16), H100), BLOCK_M=48)
    assert MATMUL.reject_reason(kernels.spec.Config(bad), problem(16), H100)
    db.put(make_record(config=bad))
    got = db.lookup(MATMUL, problem(16), H100)
    assert got.source == "heuristic" and "rejected" in got.detail
    # A valid record further away in M is used instead.
    db.put(make_record(shape={"M": 128, "N": 256, "K": 128}, config=tuned_config()))
    assert db.lookup(MATMUL, problem(16), H100).source == "nearest"


def test_nearest_skips_a_config_invalid_for_the_asked_m(db):
    wide = dict(MATMUL.heuristic(problem(128), H100), BLOCK_M=128)  # too tall a tile for M=16
    assert MATMUL.reject_reason(kernels.spec.Config(wide), problem(16), H100)
    db.put(make_record(shape={"M": 128, "N": 256, "K": 128}, config=wide))
    got = db.lookup(MATMUL, problem(16), H100)
    assert got.source == "heuristic" and "rejected" in got.detail
    db.put(make_record(shape={"M": 4, "N": 256, "K": 128}, config=tuned_config()))
    got = db.lookup(MATMUL, problem(16), H100)
    assert got.source == "nearest" and "M=4" in got.detail


def test_database_source_plugs_into_the_kernel_library(db):
    device = current_device()
    config = tuned_config(device=device)
    db.put(make_record(device=device, config=config))
    with using_config_source(DatabaseSource(db)):
        chosen, source, *_ = resolve(MATMUL, problem(16), None, device)
        assert source == "database" and dict(chosen) == config
        result = check(MATMUL, problem(16))  # launches the stored config on this device
    assert result.status == "ok" and result.config == str(kernels.spec.Config(config))


def test_memoized_answer_costs_under_a_microsecond(db):
    db.put(make_record(config=tuned_config()))
    source = DatabaseSource(db)
    p = problem(16)
    first = source.resolve(MATMUL, p, H100)
    calls = 2000
    per_call = []
    for _ in range(31):
        start = time.perf_counter()
        for _ in range(calls):
            source.resolve(MATMUL, p, H100)
        per_call.append((time.perf_counter() - start) / calls)
    assert source.resolve(MATMUL, p, H100) is first
    assert source.resolve(MATMUL, p, dataclasses.replace(H100)) == first  # an equal device: same answer
    assert statistics.median(per_call) < 1e-6, f"median {statistics.median(per_call) * 1e9:.0f} ns per lookup"


# -- files that are not ours -------------------------------------------------------------

def _assert_one_line(exc: pytest.ExceptionInfo, *fragments: str) -> None:
    text = str(exc.value)
    assert "\n" not in text
    for fragment in fragments:
        assert fragment in text


def test_corrupt_file_is_one_clear_error_and_the_runtime_falls_back(tmp_path):
    path = tmp_path / "tuning.db"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(DatabaseError) as exc:
        open_database(str(path))
    _assert_one_line(exc, str(path), "corrupt")
    source, warning = runtime_source(str(path))
    assert isinstance(source, HeuristicSource) and "heuristic" in warning and "corrupt" in warning


def test_sqlite_header_over_garbage_is_corrupt(tmp_path):
    path = tmp_path / "tuning.db"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    with pytest.raises(DatabaseError) as exc:
        open_database(str(path))
    _assert_one_line(exc, "corrupt")


def test_foreign_sqlite_file_is_refused_untouched(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(DatabaseError) as exc:
        open_database(str(path))
    _assert_one_line(exc, "not an infertune tuning database", "customers")
    assert path.read_bytes() == before
    source, warning = runtime_source(str(path))
    assert isinstance(source, HeuristicSource) and "customers" in warning


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "tuning.db"
    open_database(str(path)).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE infertune_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(DatabaseError) as exc:
        open_database(str(path))
    _assert_one_line(exc, "newer")


def test_missing_database_gives_quiet_heuristics_and_is_an_error_when_required(tmp_path):
    source, warning = runtime_source(str(tmp_path / "absent.db"))
    assert isinstance(source, HeuristicSource) and warning is None
    with pytest.raises(DatabaseError, match="no tuning database"):
        open_database(str(tmp_path / "absent.db"), create=False)
    assert not (tmp_path / "absent.db").exists()


def test_url_and_path_are_one_code_path(tmp_path):
    path = tmp_path / "tuning.db"
    with open_database(str(path)) as db:
        db.put(make_record())
    with open_database(f"sqlite:///{path}") as db:
        assert len(db.records()) == 1


def test_default_location_flag_env_then_data_dir(tmp_path):
    assert default_db_path({"INFERTUNE_DB": "/x/y.db", "XDG_DATA_HOME": "/d"}) == "/x/y.db"
    assert default_db_path({"XDG_DATA_HOME": "/d"}) == "/d/infertune/tuning.db"
    assert default_db_path({"HOME": "/home/u"}) == "/home/u/.local/share/infertune/tuning.db"
    assert Settings.from_env({"INFERTUNE_DB": "/x/y.db"}).db == "/x/y.db"
    assert Settings.from_env({"XDG_DATA_HOME": "/d"}).db == "/d/infertune/tuning.db"


def test_two_writer_processes_lose_nothing(tmp_path):
    path = tmp_path / "tuning.db"  # not there yet: the two writers also race to create it
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-m", "tests.db_records", str(path), str(tag), "200"], cwd=ROOT,
                              env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for tag in (0, 1)]
    for proc in procs:  # both imported and waiting: start them together
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    with open_database(str(path)) as db:
        records = db.records()
    assert len(records) == 400
    assert len({r.problem_key for r in records}) == 400


# -- export, import, merge, prune --------------------------------------------------------

def test_export_is_stable_and_round_trips(tmp_path, db):
    db.put(make_record(shape={"M": 64, "N": 256, "K": 128}))
    db.put(make_record(kernel="rmsnorm", shape={"M": 8, "N": 4096}))
    db.put(make_record())
    db.put(make_record(device=A100))
    first = {name: dump_json(doc) for name, doc in db.export_json().items()}
    second = {name: dump_json(doc) for name, doc in db.export_json().items()}
    assert first == second and sorted(first) == ["nvidia-a100-sxm4-80gb", "nvidia-h100-80gb-hbm3"]
    h100 = db.export_json("nvidia-h100-80gb-hbm3")["nvidia-h100-80gb-hbm3"]
    keys = [(r["kernel"], r["problem_key"]) for r in h100["records"]]
    assert keys == sorted(keys) and len(keys) == 3
    with open_database(str(tmp_path / "copy.db")) as copy:
        for doc in db.export_json().values():
            copy.import_json(doc)
        assert copy.records() == db.records()
        assert {n: dump_json(d) for n, d in copy.export_json().items()} == first


def test_import_refuses_what_is_not_an_export(db):
    with pytest.raises(DatabaseError, match="not an infertune tuning export"):
        db.import_json({"records": []})
    with pytest.raises(DatabaseError, match="malformed record"):
        db.import_json({"format": "infertune-tuning-export", "schema_version": 1, "records": [{"kernel": "x"}]})


def test_merge_keeps_the_faster_of_each_key(tmp_path, db):
    db.put(make_record(median_ms=1.0))
    with open_database(str(tmp_path / "other.db")) as other:
        other.put(make_record(median_ms=0.5))
        other.put(make_record(shape={"M": 32, "N": 256, "K": 128}, median_ms=3.0))
        assert db.merge(other) == 2
        assert db.merge(other) == 0
    assert sorted(r.median_ms for r in db.records()) == [0.5, 3.0]


def test_prune_stale_removes_old_hash_old_triton_and_unknown_kernels(db):
    db.put(make_record())
    db.put(make_record(shape={"M": 32, "N": 256, "K": 128}, source_hash="0" * 64))
    db.put(make_record(shape={"M": 64, "N": 256, "K": 128}, triton_version="3.1.0"))
    db.put(make_record(kernel="rmsnorm", shape={"M": 8, "N": 4096}))
    current = {spec.name: current_source_hash(spec) for spec in kernels.REGISTRY if spec.name != "rmsnorm"}
    assert db.prune_stale(current, current_triton_minor()) == 3
    (kept,) = db.records()
    assert kept.problem_key == "M=16,N=256,K=128|fp16|bias=0"
