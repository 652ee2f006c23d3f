"""The database side of issue 14: transferred records never replace measured ones, extra
updates, bucket maps (stored, replaced, looked up between exact and nearest), device matching
by compute capability / SM count / memory for a renamed card, and the marks of an answer."""

from __future__ import annotations

import dataclasses
import random
import sqlite3

import pytest

import kernels
from kernels.device import DeviceInfo
from tuner.bucket_map import BucketMap
from tuner.database import Database, DatabaseError, DatabaseSource, current_source_hash, current_triton_minor, \
    open_database
from tuner.keys import hardware_of, problem_family
from tuner.record import InvalidRecord, validate_record

from .db_records import make_record
from .fake_devices import A100, H100

SPEC = kernels.get("matmul")
HW = {"device": hardware_of(H100)}
# The same card under an OEM's name: same capability, SMs and memory (read 0.5 GiB lower).
RENAMED = dataclasses.replace(H100, name="Acme Accel 9000 OEM", total_memory=H100.total_memory - 2**29)


@pytest.fixture
def db(tmp_path) -> Database:
    with open_database(str(tmp_path / "t.db")) as database:
        yield database


def _config(m: int, seed: int) -> dict[str, int]:
    """A config valid for M=m, N=256, K=128 on an H100 other than the heuristic's."""
    problem = SPEC.problem({"M": m, "N": 256, "K": 128}, "fp16")
    valid = [c for c in SPEC.valid_configs(problem, H100) if c != SPEC.heuristic(problem, H100)]
    return dict(random.Random(seed).choice(valid))


def _map(uppers, configs, device_name="nvidia-h100-80gb-hbm3", **extra) -> BucketMap:
    problem = SPEC.problem({"M": 1, "N": 256, "K": 128}, "fp16")
    return BucketMap(kernel="matmul", device_name=device_name, capability="9.0", family=problem_family(SPEC, problem),
                     source_hash=current_source_hash(SPEC), triton_version=f"{current_triton_minor()}.0",
                     uppers=tuple(uppers), configs=tuple(configs), created="2026-11-28T10:00:00+00:00", extra=extra)


def _ask(db, m, device=H100):
    return db.lookup(SPEC, SPEC.problem({"M": m, "N": 256, "K": 128}, "fp16"), device)


def test_transferred_never_replaces_measured_and_measured_always_replaces_transferred(db):
    measured = make_record(median_ms=5.0, extra=HW)
    transferred = make_record(median_ms=0.1, extra={"transferred_from": "nvidia-a100-sxm4-80gb"})
    assert db.put(measured)
    assert not db.put(transferred)  # faster on paper, timed elsewhere
    assert db.records()[0].median_ms == 5.0
    db.delete(measured)
    assert db.put(transferred)
    assert db.put(make_record(median_ms=9.0, extra=HW))  # slower, but measured here
    (only,) = db.records()
    assert only.median_ms == 9.0 and "transferred_from" not in only.extra


def test_set_extra_merges_checks_and_reports_a_missing_row(db):
    record = make_record(extra=HW)
    assert not db.set_extra(record, {"confirmed": True})
    db.put(record)
    assert db.set_extra(record, {"confirmed": False, "confirmation": {"ratio": 0.99}})
    (stored,) = db.records()
    assert stored.extra == {**HW, "confirmed": False, "confirmation": {"ratio": 0.99}}
    with pytest.raises(DatabaseError, match="confirmed"):
        db.set_extra(record, {"confirmed": "yes"})
    assert db.delete(record) and not db.delete(record)


@pytest.mark.parametrize("extra", [{"confirmed": 1}, {"ci_ms": [2.0, 1.0]}, {"ci_ms": [1.0]},
                                   {"transferred_from": "Not Normalized"}, {"device": {"sm_count": 0, "total_memory": 1}},
                                   {"device": {"sm_count": 132}}, {"confirmation": []}])
def test_standard_extra_keys_are_type_checked(extra):
    with pytest.raises(InvalidRecord):
        validate_record(make_record(extra=extra))


def test_lookup_order_exact_then_bucket_then_nearest(db):
    seed = random.randrange(1 << 16)
    c_small, c_large, c_exact, c_near = (_config(16, seed + i) for i in range(4))
    db.put(make_record(shape={"M": 40, "N": 256, "K": 128}, config=c_exact, extra=HW))
    db.put(make_record(shape={"M": 200, "N": 256, "K": 128}, config=c_near, extra=HW))
    got = _ask(db, 13)
    assert (got.source, dict(got.config)) == ("nearest", c_exact)  # no map yet: M=40 is nearest
    db.put_bucket_map(_map([7, 64], [c_small, c_large]))
    for m, want in ((1, c_small), (7, c_small), (8, c_large), (13, c_large), (64, c_large), (257, c_large)):
        got = _ask(db, m)
        assert (got.source, dict(got.config)) == ("bucket", want), m
    assert "M=8..64" in _ask(db, 13).detail and "and above" in _ask(db, 257).detail
    exact = _ask(db, 40)
    assert (exact.source, dict(exact.config)) == ("database", c_exact)
    # replaced, not added
    db.put_bucket_map(_map([100], [c_near]))
    assert len(db.bucket_maps()) == 1 and dict(_ask(db, 7).config) == c_near


def test_a_stale_map_or_a_rejected_bucket_config_falls_through(db):
    seed = random.randrange(1 << 16)
    near = _config(16, seed)
    db.put(make_record(shape={"M": 16, "N": 256, "K": 128}, config=near, extra=HW))
    db.put_bucket_map(dataclasses.replace(_map([64], [_config(16, seed + 1)]), source_hash="0" * 64))
    assert _ask(db, 13).source == "nearest"
    too_big = {**_config(16, seed + 2), "BLOCK_K": 4096}  # over K: rejected for the problem
    db.put_bucket_map(_map([64], [too_big]))
    assert _ask(db, 13).source == "nearest"
    db.delete(make_record(shape={"M": 16, "N": 256, "K": 128}, config=near))
    got = _ask(db, 13)
    assert got.source == "heuristic" and "bucket config" in got.detail and "rejected" in got.detail


def test_a_malformed_map_is_refused_before_writing(db):
    with pytest.raises(DatabaseError, match="increase"):
        db.put_bucket_map(_map([8, 8], [{"BLOCK_M": 16}, {"BLOCK_M": 16}]))
    assert db.bucket_maps() == []


def test_a_renamed_card_matches_by_capability_sms_and_memory(db):
    seed = random.randrange(1 << 16)
    config = _config(16, seed)
    db.put(make_record(config=config, extra=HW))
    got = _ask(db, 16, RENAMED)
    assert (got.source, dict(got.config)) == ("database", config)
    assert "matched nvidia-h100-80gb-hbm3 by compute capability 9.0, 132 SMs, 80 GiB" in got.detail
    other_sms = dataclasses.replace(RENAMED, sm_count=114)
    assert _ask(db, 16, other_sms).source == "heuristic"
    other_memory = dataclasses.replace(RENAMED, total_memory=94 * 2**30)
    assert _ask(db, 16, other_memory).source == "heuristic"
    other_cc = dataclasses.replace(RENAMED, capability=(8, 0), smem_per_block=A100.smem_per_block)
    assert _ask(db, 16, other_cc).source == "heuristic"
    # A card with records of its own name uses those, never another's.
    own = make_record(device=RENAMED, config=_config(16, seed + 1), extra={"device": hardware_of(RENAMED)})
    db.put(own)
    got = _ask(db, 16, RENAMED)
    assert dict(got.config) == own.config and "matched" not in got.detail


def test_marks_come_from_the_record(db):
    db.put(make_record(shape={"M": 16, "N": 256, "K": 128}, extra={**HW, "confirmed": True}))
    db.put(make_record(shape={"M": 64, "N": 256, "K": 128}, extra={**HW, "confirmed": False}))
    db.put(make_record(shape={"M": 512, "N": 256, "K": 128}, extra={"transferred_from": "nvidia-a100-sxm4-80gb"}))
    assert _ask(db, 16).marks == ("confirmed",)
    assert _ask(db, 64).marks == ("unconfirmed",)
    got = _ask(db, 512)
    assert got.marks == ("transferred",) and "transferred from nvidia-a100-sxm4-80gb" in got.detail
    source = DatabaseSource(db)
    problem = SPEC.problem({"M": 64, "N": 256, "K": 128}, "fp16")
    assert source.resolve(SPEC, problem, H100).marks == ("unconfirmed",)


def test_devices_lists_each_stored_device(db):
    db.put(make_record(extra=HW))
    db.put(make_record(shape={"M": 64, "N": 256, "K": 128}, extra={**HW, "transferred_from": "cpu"}))
    db.put(make_record(device=A100, extra={"device": hardware_of(A100)}))
    found = {d["device_name"]: d for d in db.devices()}
    assert found["nvidia-h100-80gb-hbm3"]["records"] == 2 and found["nvidia-h100-80gb-hbm3"]["transferred"] == 1
    assert found["nvidia-h100-80gb-hbm3"]["sm_count"] == 132
    assert found["nvidia-a100-sxm4-80gb"]["records"] == 1


def test_a_file_from_before_bucket_maps_reads_and_upgrades(tmp_path):
    path = tmp_path / "old.db"
    with open_database(str(path)) as database:
        database.put(make_record(extra=HW))
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE bucket_maps")
    with open_database(str(path), create=False) as database:  # the runtime's read-only open
        assert database.bucket_maps() == [] and _ask(database, 16).source == "database"
    with open_database(str(path)) as database:  # a writer adds the table
        database.put_bucket_map(_map([8], [_config(16, 0)]))
        assert len(database.bucket_maps()) == 1


def test_a_renamed_card_finds_a_bucket_map_by_its_hardware(db):
    seed = random.randrange(1 << 16)
    small, large = _config(16, seed), _config(16, seed + 1)
    db.put_bucket_map(_map([8], [small], device=hardware_of(H100)))
    db.put_bucket_map(_map([8], [large], device_name="nvidia-a100-sxm4-80gb", device=hardware_of(A100)))
    got = _ask(db, 5, RENAMED)
    assert (got.source, dict(got.config)) == ("bucket", small)
    assert "matched nvidia-h100-80gb-hbm3" in got.detail
