"""tuner/transfer.py and `infertune db transfer`: records copied to another GPU are exactly
those its constraints accept (brute force over fresh random configs), marked transferred,
never replace a measured record, are found by lookup (also on a renamed card) with the mark
"transferred"; and `autotune --confirm-transferred` measures and replaces them."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
from typer.testing import CliRunner

import kernels
from infertune.cli import app, main
from kernels.device import current_device
from kernels.spec import Config
from tuner.database import open_database
from tuner.devices import device_for
from tuner.transfer import TransferError, is_transferred, transfer

from .db_records import make_record
from .fake_devices import A100, H100, L4

MATMUL = kernels.get("matmul")
runner = CliRunner()
H100_NAME, L4_NAME = "nvidia-h100-80gb-hbm3", "nvidia-l4"
SHAPES = [{"M": m, "N": n, "K": k} for m in (16, 128) for n, k in ((4096, 4096), (1024, 2048))]


def random_h100_records(rng: random.Random):
    """One record per shape on the H100 with a random valid config: about half of the
    H100's configs at these sizes need more shared memory than an L4's 99 KiB."""
    records = []
    for shape in SHAPES:
        problem = MATMUL.problem(shape, "bf16")
        while True:  # a random config of the space that the H100 accepts (rejection sampling: fast)
            config = Config({p.name: rng.choice(p.values) for p in MATMUL.params})
            if MATMUL.reject_reason(config, problem, H100) is None:
                break
        records.append(make_record(shape=shape, dtype="bf16", device=H100, config=dict(config),
                                   median_ms=rng.uniform(0.01, 1.0)))
    return records


@pytest.fixture
def db(tmp_path):
    with open_database(str(tmp_path / "tuning.db")) as database:
        yield database


def test_transfer_copies_exactly_what_the_target_accepts(db, seed):
    rng = random.Random(seed)
    records = random_h100_records(rng)
    # And one of each for certain: a config only the H100's shared memory holds, one both hold.
    wide = MATMUL.problem({"M": 64, "N": 4096, "K": 4096}, "bf16")
    while True:
        config = Config({p.name: rng.choice(p.values) for p in MATMUL.params})
        if MATMUL.reject_reason(config, wide, H100) is None and "shared memory" in (
                MATMUL.reject_reason(config, wide, L4) or ""):
            break
    records.append(make_record(shape=dict(wide.shape), dtype="bf16", device=H100, config=dict(config)))
    narrow = MATMUL.problem({"M": 64, "N": 1024, "K": 1024}, "bf16")
    records.append(make_record(shape=dict(narrow.shape), dtype="bf16", device=H100,
                               config=dict(MATMUL.heuristic(narrow, L4))))
    stale = make_record(shape={"M": 8, "N": 512, "K": 512}, dtype="bf16", device=H100, source_hash="0" * 64)
    chained = make_record(shape={"M": 8, "N": 256, "K": 256}, dtype="bf16", device=H100,
                          extra={"transferred_from": "nvidia-a100-sxm4-80gb", "transfer": {}})
    # The L4 has measured one of the keys already: kept, not overwritten.
    measured_here = make_record(shape=SHAPES[0], dtype="bf16", device=L4, median_ms=5.0)
    db.put_many([*records, stale, chained, measured_here])
    report = transfer(db, H100_NAME, L4)
    truth_ok, truth_rejected = [], []
    for r in records[1:]:
        problem = MATMUL.problem(r.shape, "bf16")
        reason = MATMUL.reject_reason(Config(r.config), problem, L4)
        (truth_rejected if reason else truth_ok).append(r.problem_key)
    assert sorted(r.problem_key for r in report.copied) == sorted(truth_ok)
    assert sorted(r.problem_key for r, _ in report.rejected) == sorted(truth_rejected)
    assert [r.problem_key for r in report.measured] == [records[0].problem_key]
    assert [r.problem_key for r, _ in report.stale] == [stale.problem_key]
    assert [r.problem_key for r in report.chained] == [chained.problem_key]
    assert wide.shape_text() in " ".join(truth_rejected) and narrow.shape_text() in " ".join(truth_ok)
    assert report.reasons()["shared memory"] >= 1
    on_l4 = {r.problem_key: r for r in db.records() if r.device_name == L4_NAME}
    assert on_l4[records[0].problem_key] == measured_here
    for key in truth_ok:
        copy, original = on_l4[key], next(r for r in records if r.problem_key == key)
        assert is_transferred(copy) and copy.extra["transferred_from"] == H100_NAME
        assert copy.capability == "8.9" and copy.config == original.config and copy.median_ms == original.median_ms
        assert copy.extra["transfer"]["from"] == H100_NAME and copy.extra["transfer"]["capability"] == "9.0"
        assert copy.extra["device"] == {"sm_count": 58, "total_memory": L4.total_memory}
    # A second transfer copies nothing new.
    again = transfer(db, H100_NAME, L4)
    assert not again.copied and len(again.already) == len(truth_ok)


def test_transferred_records_never_replace_measured_ones_and_lookup_marks_them(db):
    record = make_record(shape={"M": 16, "N": 1024, "K": 2048}, dtype="bf16", device=H100, median_ms=0.01)
    db.put(record)
    assert [r.problem_key for r in transfer(db, H100_NAME, L4).copied] == [record.problem_key]
    problem = MATMUL.problem({"M": 16, "N": 1024, "K": 2048}, "bf16")
    answer = db.lookup(MATMUL, problem, L4)
    assert answer.source == "database" and answer.marks == ("transferred",) and answer.config == Config(record.config)
    # An OEM-renamed L4 (same capability, SMs, memory) finds it too, and says how.
    renamed = dataclasses.replace(L4, name="Cloud Inference Card 24GB")
    answer = db.lookup(MATMUL, problem, renamed)
    assert answer.source == "database" and "transferred" in answer.marks and "58" in answer.detail
    # A measured record replaces the transferred one whatever its time; a transfer never
    # replaces the measured one.
    measured = make_record(shape={"M": 16, "N": 1024, "K": 2048}, dtype="bf16", device=L4, median_ms=9.0)
    assert db.put(measured)
    assert not transfer(db, H100_NAME, L4).copied
    (on_l4,) = [r for r in db.records() if r.device_name == L4_NAME]
    assert on_l4 == measured and db.lookup(MATMUL, problem, L4).marks == ()


def test_transfer_refuses_an_empty_source_and_the_target_itself(db):
    db.put(make_record(device=H100))
    with pytest.raises(TransferError, match="no records"):
        transfer(db, "nvidia-a10", L4)
    with pytest.raises(TransferError, match="no records of rmsnorm"):
        transfer(db, H100_NAME, L4, kernel="rmsnorm")
    with pytest.raises(TransferError, match="target device itself"):
        transfer(db, H100_NAME, H100)


# -- the CLI ---------------------------------------------------------------------------------------
@pytest.fixture
def db_path(tmp_path, seed):
    path = str(tmp_path / "cli.db")
    with open_database(path) as database:
        database.put_many(random_h100_records(random.Random(seed)))
    return path


def test_db_transfer_table_json_and_show(db_path):
    result = runner.invoke(app, ["db", "transfer", "--from", "h100", "--to", "NVIDIA L4", "--db", db_path])
    assert result.exit_code == 0, result.output
    assert "copied (marked transferred)" in result.output and "already measured" in result.output
    data = json.loads(runner.invoke(app, ["db", "transfer", "--from", H100_NAME, "--to", "l4", "--json",
                                          "--db", db_path]).output)
    assert data["from"]["device_name"] == H100_NAME and data["to"] == {"device_name": L4_NAME, "capability": "8.9"}
    assert data["counts"]["copied"] == 0 and data["counts"]["already_transferred"] + data["counts"]["rejected"] == 4
    shown = json.loads(runner.invoke(app, ["db", "show", "--json", "--db", db_path]).output)
    copies = [r for r in shown if r["device_name"] == L4_NAME]
    assert len(copies) == data["counts"]["already_transferred"]
    assert all(r["transferred_from"] == H100_NAME for r in copies)
    table = runner.invoke(app, ["db", "show", "--db", db_path], env={"COLUMNS": "250"})
    assert table.exit_code == 0 and "origin" in table.output
    if copies:
        assert "transferred from" in table.output and "58 SMs" in table.output


def test_db_transfer_to_this_machine(db_path):
    """`--to this`: on the CPU test machine, records of class cpu (what --confirm-transferred takes)."""
    result = runner.invoke(app, ["db", "transfer", "--from", "h100", "--to", "this", "--json", "--db", db_path])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    here = current_device()
    assert data["to"]["capability"] == ("cpu" if here.interpreter else f"{here.capability[0]}.{here.capability[1]}")


def run_main(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.mark.parametrize("argv, fragment", [
    (("--from", "h100", "--to", "nvidia-b300"), "known: this, nvidia-h100-80gb-hbm3"),
    (("--from", "nvidia-a10", "--to", "l4"), "no records of device 'nvidia-a10'"),
    (("--from", "h100", "--to", "h100"), "target device itself"),
    (("--from", "h100", "--to", "l4", "--kernel", "nope"), "nope"),
    (("--from", "h100", "--to", "l4", "--kernel", "rmsnorm"), "no records of rmsnorm"),
])
def test_db_transfer_bad_input_is_one_line_and_exit_2(capsys, db_path, argv, fragment):
    code, out, err = run_main(capsys, "db", "transfer", *argv, "--db", db_path)
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1 and fragment in err, err
    assert "Traceback" not in out + err


def test_known_names_include_the_issue_list():
    for name in ("h100", "h100 pcie", "h100 nvl", "h200", "a100-40gb", "a100-80gb", "l40s", "l4", "a10",
                 "rtx 4090"):
        assert device_for(name) is not None, name
    assert A100.capability == device_for("a100").info.capability


# -- autotune --confirm-transferred ----------------------------------------------------------------
TINY = {"M": 5, "N": 33, "K": 17}


def test_confirm_transferred_measures_and_replaces(tmp_path, monkeypatch, capsys):
    """End to end on this machine: an H100 record transferred here (`--to this`), then
    `autotune --confirm-transferred` runs a tiny search seeded with it: the transferred config
    is the trial right after the default, and the measured winner replaces the transferred
    record (lookup no longer marks it)."""
    here = current_device()
    problem = MATMUL.problem(TINY, "fp16")
    default = MATMUL.heuristic(problem, here)
    config = next(c for c in MATMUL.valid_configs(problem, here)
                  if c != default and MATMUL.reject_reason(c, problem, H100) is None)
    path = str(tmp_path / "confirm.db")
    with open_database(path) as database:
        database.put(make_record(shape=TINY, device=H100, config=dict(config), median_ms=0.002))
        assert len(transfer(database, H100_NAME, here).copied) == 1
        assert database.lookup(MATMUL, problem, here).marks == ("transferred",)
    for name, value in (("INFERTUNE_WARMUP_MS", "0"), ("INFERTUNE_REP_MS", "0"), ("INFERTUNE_MIN_REPS_CPU", "2")):
        monkeypatch.setenv(name, value)
    out = tmp_path / "run"
    # --retime 0: the study's timings decide (the re-timing race is tests/test_race.py's).
    code, stdout, err = run_main(capsys, "autotune", "--confirm-transferred", "matmul", "--trials", "3", "--retime",
                                 "0", "--db", path, "--out", str(out), "--json")
    assert code in (0, None), err
    data = json.loads(stdout)
    (row,) = data["rows"]
    assert row["transferred_config"] == dict(config) and row["transferred_ms"] is not None, row
    assert data["records_written"] == 1 and row["verdict"]
    run = json.loads((out / "run.json").read_text())
    history = run["tuning"][-1]["history"]
    assert [h["config"] for h in history[:2]] == [dict(default), dict(config)]
    with open_database(path) as database:
        (stored,) = [r for r in database.records() if r.device_name == device_class_name(here)]
        assert not is_transferred(stored) and stored.extra["replaced_transfer"]["config"] == dict(config)
        assert stored.config == row["chosen_config"]
        assert database.lookup(MATMUL, problem, here).marks == ()
    # Nothing left to confirm: says so, exit 0.
    code, stdout, _ = run_main(capsys, "autotune", "--confirm-transferred", "--db", path, "--json")
    assert code in (0, None) and json.loads(stdout)["rows"] == []


def device_class_name(device) -> str:
    from tuner.keys import device_class  # noqa: PLC0415

    return device_class(device).name


def test_interpreter_records_are_not_transferred_to_a_gpu(tmp_path):
    from tuner.database import open_database
    from tuner.transfer import TransferError, transfer

    from .db_records import make_record
    from .fake_devices import CPU, H100

    with open_database(str(tmp_path / "t.db")) as db:
        db.put(make_record(device=CPU, shape={"M": 13, "N": 256, "K": 128}))
        with pytest.raises(TransferError, match="interpreter"):
            transfer(db, "cpu", H100)
        assert [r.device_name for r in db.records()] == ["cpu"]
