"""bench/tuning.py end to end with its smoke shapes: every section written, the replay figures
consistent with the recordings, a grid recorded in one run and replayed in another (--parts),
bad flags refused in one line, and the GPU parts refused without a GPU."""

import dataclasses
import json
import math
from pathlib import Path

import pytest

import kernels
from bench import tuning
from tuner.replay import load

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


@pytest.mark.parametrize("argv", [[], ["--parts", "grids"], ["--parts", "replays,searches"]])
def test_gpu_parts_refuse_without_a_gpu(argv, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the full run would start")
    assert tuning.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "need a CUDA GPU" in err[0]


@pytest.fixture(scope="module")
def parted(tmp_path_factory):
    """A GPU session's recipe at smoke size: `--parts grids` in one run, `--parts replays` on the
    same --data in another; one kernel (--grid-kernels) and one seed keep it quick."""
    root = tmp_path_factory.mktemp("parts")
    runs = {}
    for part in ("grids", "replays"):
        out = root / part
        code = tuning.main(["--smoke", "--parts", part, "--grid-kernels", "matmul", "--compile-workers", "3",
                            "--data", str(root / "data"), "--out", str(out), "--seed", "3", "--seeds", "1"])
        assert code == 0
        runs[part] = json.loads((out / "results.json").read_text()), (out / "results.md").read_text()
    return root / "data", runs


def test_grids_then_replays_in_two_runs(parted):
    data_dir, runs = parted
    grids, grids_md = runs["grids"]
    assert grids["parts"] == ["grids"] and [g["kernel"] for g in grids["grids"]] == ["matmul"]
    assert not grids["grids"][0]["reused"] and Path(grids["grids"][0]["file"]).parent == data_dir
    assert grids["replay"] is grids["searches"] is grids["summary"] is grids["cost"] is None
    assert grids_md.count("Not run (--parts grids).") == 3 and "| sampler |" not in grids_md
    assert "## 2. Search efficiency" in grids_md and "## 4. Tuning cost per trial" in grids_md
    if grids["interpreter"]:  # the interpreter compiles nothing, whatever --compile-workers says
        assert grids["compile_workers"] == 0 and "--compile-workers 3 ignored" in grids["compile_pool"]

    replays, replays_md = runs["replays"]
    assert replays["parts"] == ["replays"]
    assert [g["file"] for g in replays["grids"]] == [g["file"] for g in grids["grids"]]
    assert replays["grids"][0]["reused"] and replays["grids"][0]["best_ms"] == grids["grids"][0]["best_ms"]
    (rec,) = replays["replay"]["recordings"]
    assert "error" not in rec and rec["file"] == grids["grids"][0]["file"] and len(rec["runs"]) == 2
    assert replays["replay"]["goal"] == tuning.replay_goal(replays["replay"]["recordings"])
    assert replays["searches"] is replays["summary"] is replays["cost"] is None
    assert replays_md.count("Not run (--parts replays).") == 2 and "| sampler |" in replays_md
    assert "Geometric mean" not in replays_md


def test_replays_find_another_devices_recording(parted, tmp_path, capsys):
    """The grid recorded on a GPU, replayed on this machine: its file names another device."""
    _, runs = parted
    (recorded,) = (Path(g["file"]) for g in runs["grids"][0]["grids"])
    stem = tuning.recording_stem("matmul", tuning.SMOKE_GRID_SHAPES["matmul"][0], "fp16", {})
    assert recorded.name.startswith(f"{stem}-")
    other = tmp_path / "data"
    other.mkdir()
    (other / f"{stem}-nvidia-h200.json").write_bytes(recorded.read_bytes())
    argv = ["--smoke", "--parts", "replays", "--grid-kernels", "matmul", "--data", str(other), "--seeds", "1"]
    assert tuning.main([*argv, "--out", str(tmp_path / "a")]) == 0
    data = json.loads((tmp_path / "a/results.json").read_text())
    assert data["grids"][0]["file"] == str(other / f"{stem}-nvidia-h200.json")
    (other / f"{stem}-nvidia-h100.json").write_bytes(recorded.read_bytes())
    capsys.readouterr()
    assert tuning.main([*argv, "--out", str(tmp_path / "b")]) == 2  # which one: the user says
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "several recordings" in err[0] and "--grid-device" in err[0]
    assert tuning.main([*argv, "--grid-device", "nvidia-h100", "--out", str(tmp_path / "c")]) == 0


def test_markdown_of_the_searches_alone(smoke):
    _, data, _ = smoke
    md = tuning.markdown(dict(data, parts=["searches"], grids=None, replay=None))
    assert md.count("Not run (--parts searches).") == 2 and "Geometric mean" in md and "| sampler |" not in md


@pytest.mark.parametrize("argv,says", [
    (["--parts", "grids,plots"], "unknown part 'plots'"),
    (["--parts", ","], "--parts names no part"),
    (["--grid-kernels", "matmul,conv"], "unknown grid kernel 'conv'"),
    (["--compile-workers", "-1"], "--compile-workers must be >= 0"),
    (["--grid-timeout", "0"], "--grid-timeout must be a positive number"),
    (["--grid-shapes", "16x4096"], "a shape is MxNxK"),
    (["--grid-device", "../nvidia-h200"], "--grid-device is a device slug"),
    (["--skip-grids", "--parts", "grids"], "--skip-grids leaves no part"),
    (["--parts", "grids", "--grid-resume", "/nonexistent"], "--grid-resume takes a folder"),
])
def test_bad_flags_are_one_line_and_exit_2(argv, says, tmp_path, capsys):
    assert tuning.main(["--smoke", *argv, "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and says in err[0] and "Traceback" not in captured.out + captured.err


@pytest.mark.parametrize("smoke_flag", [["--smoke"], []])  # without --smoke: the replays need no GPU either
def test_replays_without_recordings_is_a_usage_error(smoke_flag, tmp_path, capsys):
    argv = [*smoke_flag, "--parts", "replays", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]
    assert tuning.main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "no recording" in err[0] and "Traceback" not in captured.err
    assert not (tmp_path / "empty").exists()  # a typo in --data leaves no empty folder behind


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


def test_a_grid_stopped_by_its_timeout_keeps_what_it_measured(tmp_path):
    """--grid-timeout ends a grid early but normally: the configs measured are recorded (the
    one the deadline cut is not recorded as a failure of its own), and the replays call the
    recording partial instead of deciding the goal on it."""
    data, shape = tmp_path / "data", "13x64x64"  # 72 valid int4 configs under the interpreter: > 1 s
    common = ["--smoke", "--grid-kernels", "matmul_w4a16", "--grid-shapes", shape, "--data", str(data)]
    assert tuning.main([*common, "--parts", "grids", "--grid-timeout", "1", "--out", str(tmp_path / "g")]) == 0
    grid = json.loads((tmp_path / "g" / "results.json").read_text())["grids"][0]
    assert 1 <= grid["recorded"] < grid["valid_configs"] == 72
    assert grid["failures"] == {} and grid["passing"] == grid["recorded"]
    assert tuning.main([*common, "--parts", "replays", "--out", str(tmp_path / "r")]) == 0
    replay = json.loads((tmp_path / "r" / "results.json").read_text())["replay"]
    assert "partial grid" in replay["recordings"][0]["error"] and replay["goal"]["met"] is None


def test_a_partial_grid_is_completed_by_a_resumed_run(tmp_path, capsys):
    """--grid-resume: a grid cut by --grid-timeout is completed by a later run that measures
    only what it lacks; the file written holds both runs' outcomes, the first run's unchanged,
    and the replays then decide on it. Another GPU model's partial grid is refused."""
    first, second, shape = tmp_path / "first", tmp_path / "second", "13x64x64"
    common = ["--smoke", "--grid-kernels", "matmul_w4a16", "--grid-shapes", shape]
    assert tuning.main([*common, "--parts", "grids", "--grid-timeout", "1", "--data", str(first),
                        "--out", str(tmp_path / "g1")]) == 0
    (partial,) = first.glob("*.json")
    _, before = load(partial, kernels.get)
    assert 1 <= len(before.outcomes) < 72
    assert tuning.main([*common, "--parts", "grids", "--grid-resume", str(first), "--data", str(second),
                        "--out", str(tmp_path / "g2")]) == 0
    grid = json.loads((tmp_path / "g2" / "results.json").read_text())["grids"][0]
    assert grid["resumed_from"] == str(partial) and grid["prior_recorded"] == len(before.outcomes)
    assert grid["recorded"] == grid["valid_configs"] == 72 and grid["trials_run"] == 72 - len(before.outcomes)
    _, after = load(second / partial.name, kernels.get)
    assert all(after.outcomes[c] == o for c, o in before.outcomes.items())  # kept, not measured again
    assert tuning.main([*common, "--parts", "replays", "--data", str(second), "--seeds", "1",
                        "--out", str(tmp_path / "r")]) == 0
    replay = json.loads((tmp_path / "r" / "results.json").read_text())["replay"]
    assert "error" not in replay["recordings"][0]

    other = tmp_path / "other"
    other.mkdir()
    before.device = dataclasses.replace(before.device, name="NVIDIA H100 80GB HBM3")
    before.save(other / partial.name)
    capsys.readouterr()
    assert tuning.main([*common, "--parts", "grids", "--grid-resume", str(other), "--data", str(tmp_path / "x"),
                        "--out", str(tmp_path / "g3")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was recorded on NVIDIA H100 80GB HBM3" in err[0]
