"""bench/tuning.py end to end with its smoke shapes: every section written, the replay figures
consistent with the recordings, and the full run refused without a GPU."""

import json
import math
from pathlib import Path

import pytest

from bench import tuning

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("tuning")
    data_files_before = sorted((REPO / "bench" / "data").glob("*.json"))
    code = tuning.main(["--smoke", "--out", str(out), "--seed", "3"])
    assert code == 0
    # The smoke run never writes into bench/data.
    assert sorted((REPO / "bench" / "data").glob("*.json")) == data_files_before
    return out, json.loads((out / "results.json").read_text()), (out / "results.md").read_text()


def test_smoke_run_writes_every_section(smoke):
    out, data, md = smoke
    assert data["benchmark"] == "tuning" and data["smoke"] and data["seed"] == 3
    env = data["environment"]
    assert env["device"]["label"] and "torch" in env and "triton" in env and "driver" in env and data["date"]
    kernels_done = {g["kernel"] for g in data["grids"]}
    assert kernels_done == {"matmul", "matmul_w4a16"}
    for g in data["grids"]:
        assert Path(g["file"]).parent == out / "data" and Path(g["file"]).exists()
        assert g["recorded"] == g["valid_configs"] > 0 and g["passing"] > 0 and g["best"] and g["baseline"]
    assert len(data["replay"]["recordings"]) == len(data["grids"])
    assert data["replay"]["seeds"] == [0, 1] and data["replay"]["samplers"] == ["tpe", "random"]
    # The verdict is the one computed from the recorded medians, not a constant.
    assert data["replay"]["goal"] == tuning.replay_goal(data["replay"]["recordings"])
    assert data["replay"]["goal"]["met"] is not None
    rows = data["searches"]["rows"]
    assert len(rows) == len(tuning.SMOKE_SEARCH_SHAPES)
    for r in rows:
        assert r["default"] and r["tuned"] and r["torch"] and r["tuned_vs_torch"] > 0
        assert 0 < r["trials_run"] <= data["searches"]["trials"]
        assert r["tuned"]["p10_ms"] <= r["tuned"]["median_ms"] <= r["tuned"]["p90_ms"]
    assert data["summary"]["geomean_tuned_vs_torch"] > 0 and data["summary"] == tuning.summarize(rows)
    assert data["cost"]["searches"] == len(rows) and data["cost"]["median_s"] > 0
    assert data["cost"]["met"] == (data["cost"]["median_s"] < tuning.GOAL_COST_S)
    for heading in ("## 1. Exhaustive grids", "## 2. Search efficiency", "## 3. Tuned vs default",
                    "## 4. Tuning cost per trial"):
        assert heading in md
    assert env["device"]["label"] in md and "p10-p90" in md and "Geometric mean" in md
    assert md.count("met**") >= 3  # replay goal, tuned vs torch, cost: reported, not asserted
    if data["interpreter"]:
        assert "**Triton ran through its CPU interpreter" in md and "say nothing about GPU speed" in md
        assert data["compile_workers"] == 0


def test_replay_figures_match_the_recordings(smoke):
    _, data, _ = smoke
    by_file = {g["file"]: g for g in data["grids"]}
    for r in data["replay"]["recordings"]:
        recording = json.loads(Path(r["file"]).read_text())
        times = [e["timing"]["median_ms"] for e in recording["configs"] if e["status"] == "ok" and e["timing"]]
        assert r["best_ms"] == pytest.approx(min(times))
        assert by_file[r["file"]]["best_ms"] == pytest.approx(min(times))
        assert by_file[r["file"]]["best"]["median_ms"] == pytest.approx(min(times))
        valid = r["valid_configs"]
        assert len(recording["configs"]) == valid and r["budget"] <= valid
        runs = r["runs"]
        assert len(runs) == 2 * 2  # two samplers, two seeds
        for run in runs:
            assert run["trials"] <= r["budget"]
            counts = [run["to_within"][k] for k in ("1%", "3%", "5%")]
            assert all(c is None or 1 <= c <= run["trials"] <= valid for c in counts)
            # A looser threshold is never reached later than a tighter one.
            reached = [c for c in counts if c is not None]
            assert reached == sorted(reached, reverse=True)
        for sampler in ("tpe", "random"):
            for key, m in r["median_trials"][sampler].items():
                frac = r["median_fraction"][sampler][key]
                assert (m is None) == (frac is None)
                if m is not None:
                    assert m <= valid and frac == pytest.approx(m / valid) and frac <= 1


def test_skip_grids_reuses_the_recordings(smoke, tmp_path):
    out, data, _ = smoke
    code = tuning.main(["--smoke", "--skip-grids", "--data", str(out / "data"), "--out", str(tmp_path),
                        "--seed", "3", "--trials", "2"])
    assert code == 0
    again = json.loads((tmp_path / "results.json").read_text())
    assert [g["file"] for g in again["grids"]] == [g["file"] for g in data["grids"]]
    assert all(g["reused"] for g in again["grids"])
    assert [g["best_ms"] for g in again["grids"]] == [g["best_ms"] for g in data["grids"]]


def test_skip_grids_without_recordings_is_a_usage_error(tmp_path, capsys):
    assert tuning.main(["--smoke", "--skip-grids", "--out", str(tmp_path)]) == 2
    assert "no recording" in capsys.readouterr().err


def test_full_run_refuses_without_a_gpu(capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the full run would start")
    assert tuning.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "need a CUDA GPU" in err[0]


def test_recording_names_and_shapes():
    assert tuning.recording_name("matmul_w4a16", (16, 4096, 4096), "bf16", {"quant": "int4-g128"}, "nvidia-h100") == \
        "matmul_w4a16-16x4096x4096-bf16-int4-g128-nvidia-h100.json"
    assert tuning.parse_shape("128x4096x14336") == (128, 4096, 14336)
    with pytest.raises(ValueError):
        tuning.parse_shape("16x4096")
    assert all(len(s) == 3 for s in tuning.GRID_SHAPES) and len(tuning.GRID_SHAPES) == 3


def _row(vs_torch, per_trial=1.0):
    return {"tuned_vs_torch": vs_torch, "tuned_over_default": 1.0, "per_trial_s": per_trial}


@pytest.mark.parametrize("ratios,met", [
    ([1.2, 1.1, 0.9], True),          # geomean 1.06, worst 0.9
    ([1.5, 1.5, 0.8], False),         # geomean 1.23 but one shape below 0.85
    ([0.95, 0.97, 0.99], False),      # none below 0.85, geomean below 1
])
def test_tuned_vs_torch_verdict_from_measurements(ratios, met):
    summary = tuning.summarize([_row(r) for r in ratios])
    assert summary["tuned_vs_torch_met"] is met
    assert summary["worst_tuned_vs_torch"] == min(ratios)
    assert summary["geomean_tuned_vs_torch"] == pytest.approx(math.prod(ratios) ** (1 / len(ratios)))
    assert tuning.summarize([_row(None)])["tuned_vs_torch_met"] is None


def test_cost_verdict_from_measurements():
    assert tuning.cost_of([_row(1, 1.0), _row(1, 1.4), _row(1, 9.0)], compile_workers=2, grids=[])["met"] is True
    assert tuning.cost_of([_row(1, 1.6), _row(1, 1.4), _row(1, 9.0)], compile_workers=2, grids=[])["met"] is False
    assert tuning.cost_of([], compile_workers=2, grids=[])["met"] is None


def _recording(tpe, rnd):
    return {"median_fraction": {"tpe": {"3%": tpe}, "random": {"3%": rnd}}}


def test_replay_verdict_from_measurements():
    assert tuning.replay_goal([_recording(0.05, 0.2), _recording(0.08, 0.1)])["met"] is True
    late = tuning.replay_goal([_recording(0.15, 0.2), _recording(0.12, 0.3)])
    assert late["met"] is False and late["within_budget"] is False and late["ahead_of_random"] is True
    behind = tuning.replay_goal([_recording(0.05, 0.02), _recording(0.06, 0.03)])
    assert behind["met"] is False and behind["ahead_of_random"] is False
    never = tuning.replay_goal([_recording(None, 0.2)])  # TPE never came within 3%
    assert never["met"] is False and never["tpe_median_fraction"] is None
    assert tuning.replay_goal([{"error": "x"}])["met"] is None
