"""Replay: a recording of every valid config answers trials without running kernels, and
samplers are compared on it (trials to within 1/3/5% of the recorded best)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import kernels
from infertune.cli import app
from kernels.spec import Config
from tuner.replay import (
    Recording,
    RecordingEvaluator,
    ReplayError,
    ReplayEvaluator,
    compare,
    load,
    median_trials,
    trials_to_within,
)
from tuner.space import Space

from .fake_devices import H100
from .test_tuner_samplers import Synthetic

runner = CliRunner()
SPEC = kernels.get("matmul")
PROBLEM = SPEC.problem({"M": 16, "N": 32, "K": 32}, "bf16")


def _recording() -> Recording:
    synthetic = Synthetic()
    outcomes = {c: synthetic.evaluate(c) for c in Space(SPEC, PROBLEM, H100).valid_configs}
    return Recording(SPEC.name, PROBLEM, H100, synthetic.baseline(), outcomes)


def test_trials_to_within():
    assert trials_to_within([5.0, None, 1.04, 1.0], 1.0) == {0.01: 4, 0.03: 4, 0.05: 3}
    assert trials_to_within([2.0], 1.0) == {0.01: None, 0.03: None, 0.05: None}


def test_recording_round_trip_on_the_recorded_device(tmp_path):
    rec = _recording()
    path = tmp_path / "rec.json"
    rec.save(path)
    spec, back = load(path, kernels.get)
    assert spec is SPEC and back.device == H100 and back.problem == PROBLEM
    assert back.outcomes == rec.outcomes and back.best_ms == rec.best_ms


def test_replay_answers_and_stops_early():
    rec = _recording()
    config = next(iter(rec.outcomes))
    replay = ReplayEvaluator(rec)
    assert replay.evaluate(config) == rec.outcomes[config]
    assert replay.evaluate(config, stop_above_ms=0.5).status == "early-stopped"
    assert replay.evaluate(Config(BLOCK_M=1)).kind == "runtime-error"


class _Timeouts:
    """An evaluator whose trials all run out of time, with a per-trial timeout of 10 s."""

    trial_timeout_s = 10.0

    def evaluate(self, config, stop_above_ms=None, timeout_s=None):
        from tuner import outcome as oc
        from tuner.outcome import Outcome

        return Outcome.failed(oc.TIMEOUT, "no result in time")


def test_recording_leaves_out_trials_cut_by_the_run_budget():
    """A trial cut by the run's deadline (below the per-trial timeout) is not the config's
    failure: unrecorded. One that ran into the per-trial timeout itself is recorded."""
    configs = Space(SPEC, PROBLEM, H100).valid_configs[:3]
    recorder = RecordingEvaluator(_Timeouts(), SPEC, PROBLEM, H100)
    assert recorder.evaluate(configs[0], timeout_s=2.5).kind == "timeout"  # the caller still sees it
    recorder.evaluate(configs[1], timeout_s=None)
    recorder.evaluate(configs[2], timeout_s=60.0)
    assert set(recorder.recording.outcomes) == {configs[1], configs[2]}


def test_compare_samplers_on_a_replay():
    rec = _recording()
    rows = compare(SPEC, rec, ["grid", "tpe", "random"], [0, 1])
    assert len(rows) == 6
    for r in rows:  # the budget is the space: every strategy reaches the best
        assert r.to_within[0.01] is not None and r.trials == len(rec.outcomes)
    assert median_trials(rows, "tpe", 0.05) is not None


def test_bad_replay_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{}")
    with pytest.raises(ReplayError, match="not an infertune replay file"):
        load(path, kernels.get)
    result = runner.invoke(app, ["tuner", "compare", "--replay", str(path)])
    assert result.exit_code == 2 and "not an infertune replay file" in result.output


def test_record_then_replay_then_compare_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERTUNE_WARMUP_MS", "0")
    monkeypatch.setenv("INFERTUNE_REP_MS", "0")
    monkeypatch.setenv("INFERTUNE_MIN_REPS_CPU", "2")
    rec_file = tmp_path / "rms.json"
    db = tmp_path / "t.db"
    base = ["autotune", "rmsnorm", "--db", str(db), "--json"]
    bad = runner.invoke(app, base + ["--shape", "4x64", "--record", str(rec_file)])
    assert bad.exit_code == 2 and "--sampler grid" in bad.output
    recorded = runner.invoke(app, base + ["--shape", "4x64", "--dtype", "fp16", "--sampler", "grid", "--record", str(rec_file)])
    assert recorded.exit_code == 0, recorded.output
    data = json.loads(rec_file.read_text())
    assert len(data["configs"]) == 4 and all(c["status"] == "ok" for c in data["configs"])

    replayed = runner.invoke(app, base + ["--replay", str(rec_file), "--trials", "3"])
    assert replayed.exit_code == 0, replayed.output
    out = json.loads(replayed.stdout)
    assert out["records_written"] is None and out["results"][0]["trials_run"] == 3

    compared = runner.invoke(app, ["tuner", "compare", "--replay", str(rec_file), "--seeds", "2", "--json"])
    assert compared.exit_code == 0, compared.output
    summary = json.loads(compared.stdout)
    assert len(summary["runs"]) == 6 and set(summary["median"]) == {"tpe", "random", "qmc"}
