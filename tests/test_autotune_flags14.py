"""The flags of issue 14 on `infertune autotune`: each mode refuses what it does not use
(exit 2, one line, nothing written), and the workload flags need their partner."""

from __future__ import annotations

import pytest

from .test_autotune_flags import JOINT, KERNEL, _nothing_written, _refused, runs  # noqa: F401  (fixture)

TRAFFIC = ["--model", "minilm-l6", "--traffic", "t.csv"]
TRANSFERRED = ["--confirm-transferred"]
MODEL = ["--model", "minilm-l6"]


@pytest.mark.parametrize("args, flag", [
    ([*KERNEL, "--buckets", "3"], "--buckets"),
    ([*KERNEL, "--max-batch", "3"], "--max-batch"),
    ([*KERNEL, "--traffic", "t.csv"], "--traffic"),
    ([*KERNEL, "--confirm"], "--confirm"),
    ([*JOINT, "--warm-start", "x"], "--warm-start"),
    ([*JOINT, "--confirm-transferred"], "--confirm-transferred"),
    ([*MODEL, "--buckets", "3"], "--buckets"),
    ([*MODEL, "--max-batch", "3"], "--max-batch"),
    ([*TRAFFIC, "--batch", "2"], "--batch"),
    ([*TRAFFIC, "--prompt-len", "8"], "--prompt-len"),
    ([*TRAFFIC, "--confirm"], "--confirm"),
    ([*TRANSFERRED, "--shape", "4x4"], "--shape"),
    ([*TRANSFERRED, "--warm-start", "x"], "--warm-start"),
    ([*TRANSFERRED, "--model", "minilm-l6"], "--model"),
    ([*TRANSFERRED, "--no-save"], "--no-save"),
    ([*MODEL, "--quant-plan", "--traffic", "t.csv"], "--traffic"),
    ([*MODEL, "--quant-plan", "--confirm"], "--confirm"),
])
def test_modes_refuse_the_new_flags_they_do_not_use(args, flag, tmp_path, runs, capsys):  # noqa: F811
    err = _refused([*args, "--db", str(tmp_path / "t.db")], capsys)
    assert flag in err
    _nothing_written(tmp_path, runs, tmp_path / "t.db")


def test_a_warm_start_source_that_cannot_be_read_is_refused_before_any_trial(tmp_path, runs, capsys):  # noqa: F811
    err = _refused([*KERNEL, "--warm-start", str(tmp_path / "nothing-here.json"), "--db", str(tmp_path / "t.db")],
                   capsys)
    assert "warm-start source" in err and "nothing-here" in err
    _nothing_written(tmp_path, runs, tmp_path / "t.db")


def test_warm_start_enqueues_another_bucket_s_best_config_second(tmp_path, runs, monkeypatch, capsys):  # noqa: F811
    import json
    import random

    import kernels
    from infertune.cli import main
    from kernels.device import current_device
    from tuner.database import key_fields, open_database
    from tuner.record import TuningRecord

    for k, v in {"INFERTUNE_WARMUP_MS": "0", "INFERTUNE_REP_MS": "0", "INFERTUNE_MIN_REPS_CPU": "2"}.items():
        monkeypatch.setenv(k, v)
    spec, device = kernels.get("matmul"), current_device()
    other = spec.problem({"M": 64, "N": 32, "K": 32}, "fp16")   # another bucket of the same family
    asked = spec.problem({"M": 13, "N": 32, "K": 32}, "fp16")
    default = spec.heuristic(asked, device)
    good = [c for c in spec.valid_configs(asked, device) if c != default and spec.reject_reason(c, other, device) is None]
    config = random.Random().choice(good)
    source = tmp_path / "source.db"
    with open_database(str(source)) as db:
        db.put(TuningRecord(**key_fields(spec, other, device), config=dict(config), median_ms=1.0, p10_ms=0.9,
                            p90_ms=1.1, default_ms=2.0, baseline_ms=None, trials=5, created="2026-11-28T10:00:00+00:00"))
    with pytest.raises(SystemExit) as exc:
        main(["autotune", "matmul", "--shape", "13x32x32", "--dtype", "fp16", "--trials", "2", "--retime", "0",
              "--warm-start", str(source), "--db", str(tmp_path / "new.db"), "--json"])
    assert exc.value.code in (0, None)
    data = json.loads(capsys.readouterr().out)
    (result,) = data["results"]
    assert result["warm_started"] == 1 and data["warm_start"]
    trials = sorted(result["history"], key=lambda h: h["trial"])
    assert trials[0]["config"] == dict(default) and trials[1]["config"] == dict(config)
