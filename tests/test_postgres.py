"""PostgreSQL for real: a throwaway server on loopback (tests/pg_server.py), one per pytest
worker. Two tuner processes share one Optuna study there and measure no config twice; two
processes write tuning records into one PostgreSQL database and lose none; the CLI tunes
with `--storage postgresql://...` (and `--db postgresql://...`).

Without PostgreSQL binaries (or psycopg) these tests skip with the reason; with
INFERTUNE_REQUIRE_POSTGRES=1 (set by .ci/run) they fail instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from kernels.device import current_device
from tuner.database import open_database
from tuner.location import sqlalchemy_url
from tuner.search import measured_trials, study_name

from .fake_devices import CPU
from .pg_server import PgServer, postgres_required, unavailable_reason
from .tuner_killable import PROBLEM, SPEC

ROOT = Path(__file__).resolve().parent.parent


# -- the URL rewrite (no server needed) -----------------------------------------------------

@pytest.mark.parametrize("given, expected", [
    ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
    ("postgres://u:pw@h:5433/db?sslmode=require", "postgresql+psycopg://u:pw@h:5433/db?sslmode=require"),
    ("PostgreSQL://u@h/db", "postgresql+psycopg://u@h/db"),
    ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
    ("sqlite:////x/t.db", "sqlite:////x/t.db"),
    ("/x/postgresql://t.db", "/x/postgresql://t.db"),
    ("mysql://u@h/db", "mysql://u@h/db"),
    ("tuning.db", "tuning.db"),
])
def test_sqlalchemy_url_gives_plain_postgres_urls_the_psycopg_driver(given, expected):
    assert sqlalchemy_url(given) == expected


# -- the server ---------------------------------------------------------------------------

def _unavailable(reason: str):
    if postgres_required():
        pytest.fail(f"PostgreSQL is required here (INFERTUNE_REQUIRE_POSTGRES) but: {reason}")
    pytest.skip(f"no PostgreSQL server to start: {reason}")


@pytest.fixture(scope="session")
def pg_server():
    reason = unavailable_reason()
    if reason is not None:
        _unavailable(reason)
    server = PgServer()
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        server.stop()
        _unavailable(f"the server did not start: {exc}")
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh empty database on the test server, as a plain postgresql:// URL."""
    return pg_server.create_database()


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def _start_together(argvs: list[list[str]]) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-m", *argv], cwd=ROOT, env=_env(), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for argv in argvs]
    try:
        for proc in procs:  # both imported and waiting: start them together
            line = proc.stdout.readline().strip()
            assert line == "ready", proc.stderr.read() if proc.poll() is not None else line
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
    except BaseException:
        for proc in procs:
            proc.kill()
            proc.wait()
        raise
    return procs


def _finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[str]:
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err
            outputs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return outputs


def test_two_tuner_processes_share_one_study_and_measure_nothing_twice(pg_url):
    trials = 10
    # The same seed: both samplers propose the same configs, the worst case for sharing.
    procs = _start_together([["tests.tuner_shared", pg_url, str(trials), "0"] for _ in range(2)])
    reports = [json.loads(out.strip().splitlines()[-1]) for out in _finish(procs)]

    study = optuna.load_study(study_name=study_name(SPEC, PROBLEM, CPU), storage=sqlalchemy_url(pg_url))
    runs = [t for t in study.get_trials() if t.user_attrs.get("source") == "run"]
    run_configs = [json.dumps(t.params, sort_keys=True) for t in runs]
    assert len(set(run_configs)) == len(run_configs), "a config was measured twice"
    for report in reports:
        assert report["trials_run"] == trials == len(report["evaluated"])
    assert len(runs) == sum(r["trials_run"] for r in reports) == 2 * trials
    evaluated = [{json.dumps(c, sort_keys=True) for c in r["evaluated"]} for r in reports]
    assert not evaluated[0] & evaluated[1]
    assert evaluated[0] | evaluated[1] == set(run_configs)  # the study holds the trials of both
    assert len(measured_trials(study)) == 2 * trials
    assert all(t.state.is_finished() for t in study.get_trials())
    # They did run side by side (the test would prove nothing if one ran after the other).
    spans = []
    for configs in evaluated:
        mine = [t for t in runs if json.dumps(t.params, sort_keys=True) in configs]
        spans.append((min(t.datetime_start for t in mine), max(t.datetime_complete for t in mine)))
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], spans


def test_two_writer_processes_fill_one_postgres_database(pg_url):
    count = 25
    # A fresh, empty database: the two writers also race to create the schema.
    procs = _start_together([["tests.db_records", pg_url, str(tag), str(count)] for tag in (0, 1)])
    _finish(procs)
    with open_database(pg_url, create=False) as db:
        records = db.records()
    assert len(records) == 2 * count
    assert {r.shape["N"] for r in records} == {64 + 2 * i + tag for i in range(count) for tag in (0, 1)}


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(_env(), INFERTUNE_WARMUP_MS="0", INFERTUNE_REP_MS="0", INFERTUNE_MIN_REPS_CPU="2")
    entry = Path(sys.executable).parent / "infertune"
    command = [str(entry)] if entry.is_file() else [sys.executable, "-c", "from infertune.cli import main; main()"]
    return subprocess.run([*command, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


AUTOTUNE = ["autotune", "matmul", "--shape", "16x32x32", "--dtype", "fp16", "--trials", "3", "--json"]


def _cli_study(storage_url: str) -> optuna.Study:
    problem = SPEC.problem({"M": 16, "N": 32, "K": 32}, "fp16")
    return optuna.load_study(study_name=study_name(SPEC, problem, current_device()),
                             storage=sqlalchemy_url(storage_url))


def test_cli_autotune_keeps_its_study_in_postgres(pg_url, tmp_path):
    db = tmp_path / "tuning.db"
    done = _cli(*AUTOTUNE, "--storage", pg_url, "--db", str(db))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["results"][0]
    assert result["trials_run"] == 3 and result["best_config"]
    assert len(measured_trials(_cli_study(pg_url))) == 3
    assert not Path(f"{db}.studies.db").exists()  # the study went to the server, not beside the file
    with open_database(str(db), create=False) as database:
        (record,) = database.records("matmul")
    assert record.config == result["best_config"]


def test_cli_autotune_with_a_postgres_database(pg_server, tmp_path):
    db_url, storage_url = pg_server.create_database("db"), pg_server.create_database("studies")
    done = _cli(*AUTOTUNE, "--db", db_url, "--storage", storage_url)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["results"][0]
    assert json.loads(done.stdout)["records_written"] == 1
    assert len(measured_trials(_cli_study(storage_url))) == 3
    with open_database(db_url, create=False) as database:
        (record,) = database.records("matmul")
    assert record.config == result["best_config"]


def test_cli_autotune_with_only_a_postgres_database(pg_url):
    done = _cli(*AUTOTUNE[:-3], "--trials", "1", "--json", "--db", pg_url)
    assert done.returncode == 0, done.stderr
    with open_database(pg_url, create=False) as database:
        assert len(database.records("matmul")) == 1
