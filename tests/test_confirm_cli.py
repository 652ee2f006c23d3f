"""`infertune autotune --model NAME --confirm` through the command line: the lead's wiring
calls confirm_records before saving, stores the marks and prints or embeds the report. The
model's step is planted (the real timer would run a 30-layer model through the interpreter):
the M=1 launch with the config stored in the database before the run (`_bad_config`) costs
2, any other launch 1. So the M=1 record, whatever config the short tune picks, beats what
it replaces end to end (confirmed), and the M=5 one replaces what M=5 got before (the M=1
record as "nearest", or the heuristic) with a config that costs the same (unconfirmed)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import infertune.confirm_timer
import kernels
from infertune.cli import app
from kernels.device import current_device
from kernels.spec import Config
from tuner.database import open_database

from .db_records import make_record

SHAPE = {"M": 1, "N": 576}


def _bad_config() -> Config:
    spec, device = kernels.get("rmsnorm"), current_device()
    problem = spec.problem(SHAPE, "fp16")
    return next(c for c in spec.sample_configs(problem, device, 4, 0) if c != spec.heuristic(problem, device))


class PlantedModelTimer:
    def __init__(self, model, device, **kwargs) -> None:
        self.device, self.bad = device, _bad_config()

    def __call__(self, step, source) -> float:
        total = 0.0
        for (name, problem), count in zip(step.launches, step.counts):
            config = source.resolve(kernels.get(name), problem, self.device).config
            slow = name == "rmsnorm" and problem["M"] == 1 and config == self.bad
            total += count * (2.0 if slow else 1.0)
        return total


def test_autotune_confirm_marks_what_it_saves(tmp_path, monkeypatch):
    for k, v in {"INFERTUNE_WARMUP_MS": "0", "INFERTUNE_REP_MS": "0", "INFERTUNE_MIN_REPS_CPU": "2"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(infertune.confirm_timer, "ModelStepTimer", PlantedModelTimer)
    db = tmp_path / "t.db"
    with open_database(str(db)) as database:  # slow on paper, so the new record replaces it
        database.put(make_record("rmsnorm", SHAPE, "fp16", device=current_device(), config=dict(_bad_config()),
                                 median_ms=1e5))
    args = ["autotune", "rmsnorm", "--model", "smollm2-135m", "--batch", "1", "--prompt-len", "5", "--gen", "4",
            "--dtype", "fp16", "--trials", "3", "--db", str(db), "--confirm", "--out", str(tmp_path / "run")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "end-to-end confirmation" in res.output and "say nothing about GPU speed" in " ".join(res.output.split())
    confirmation = json.loads((tmp_path / "run" / "run.json").read_text())["confirmation"]
    with open_database(str(db)) as database:
        stored = {r.problem_key: r for r in database.records()}
    assert {row["problem"] for row in confirmation["records"]} == set(stored) == {"M=1,N=576|fp16", "M=5,N=576|fp16"}
    verdicts = {row["problem"]: row["verdict"] for row in confirmation["records"]}
    assert verdicts == {"M=1,N=576|fp16": "confirmed", "M=5,N=576|fp16": "unconfirmed"}, confirmation
    for row in confirmation["records"]:
        record = stored[row["problem"]]
        assert record.extra["confirmed"] is (row["verdict"] == "confirmed")
        assert record.extra["confirmation"]["reason"] == row["reason"]
    one = next(r for r in confirmation["records"] if r["problem"] == "M=1,N=576|fp16")
    # 61 of the decode step's 272 launches (and 1 of prefill's 306) at half the cost
    assert one["ratio"] < 1 and one["ci"][1] < 1
