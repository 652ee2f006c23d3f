"""Device peaks: datasheet lookup by any spelling of the name, the JSON round trip, a
measurement on the CPU (positive figures, labelled cpu), and `infertune calibrate --json`
writing the file beside the database."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from profilers.peaks import Peaks, datasheet_peaks, measure_peaks, normalize_name, peaks_path_for


@pytest.mark.parametrize("name, bandwidth, bf16", [
    ("NVIDIA H100 80GB HBM3", 3350.0, 989.4),
    ("NVIDIA_H100_80GB_HBM3", 3350.0, 989.4),
    ("NVIDIA H100 SXM5 80GB", 3350.0, 989.4),
    ("NVIDIA H100 PCIe", 2000.0, 756.5),
    ("NVIDIA H200", 4800.0, 989.4),
    ("NVIDIA A100-SXM4-80GB", 2039.0, 312.0),
    ("NVIDIA A100 80GB PCIe", 1935.0, 312.0),
    ("NVIDIA A100-SXM4-40GB", 1555.0, 312.0),
    ("NVIDIA L4", 300.0, 121.0),
])
def test_datasheet_lookup_by_normalized_name(name, bandwidth, bf16):
    peaks = datasheet_peaks(name)
    assert peaks is not None and peaks.source == "datasheet" and peaks.device_name == name
    assert peaks.bandwidth_gbps == bandwidth and peaks.tflops["bf16"] == bf16
    assert peaks.tflops["fp16"] == bf16 and peaks.tflops["fp32"] < peaks.tflops["tf32"]
    assert "dense" in peaks.note


def test_datasheet_knows_fp8_only_where_the_part_has_it_and_not_unknown_devices():
    assert "fp8" not in datasheet_peaks("NVIDIA A100-SXM4-80GB").tflops
    assert datasheet_peaks("NVIDIA A100-SXM4-80GB").skipped["fp8"]
    assert datasheet_peaks("NVIDIA H100 80GB HBM3").tflops["fp8"] == pytest.approx(1978.9)
    for unknown in ("NVIDIA GeForce RTX 4090", "cpu", "NVIDIA L40S", "NVIDIA H100 NVL", ""):
        assert datasheet_peaks(unknown) is None, unknown
    assert normalize_name("NVIDIA(R) H100_80GB  HBM3") == "nvidia-h100-80gb-hbm3"


def test_save_load_round_trip(tmp_path):
    peaks = Peaks(device_name="NVIDIA H100 80GB HBM3", source="measured", kind="cuda", bandwidth_gbps=2900.5,
                  tflops={"fp32": 50.1, "bf16": 700.25}, skipped={"fp8": "why"}, capability="9.0",
                  matmul_size=8192, copy_bytes=1 << 30, method="cuda-events", created="2026-01-01T00:00:00Z")
    path = peaks.save(tmp_path / "sub" / "t.db.peaks.json")
    assert Peaks.load(path) == peaks
    assert json.loads(path.read_text())["format"] == "infertune-peaks/1"
    assert Peaks.from_dict(peaks.to_dict()) == peaks
    with pytest.raises(ValueError, match="not an infertune peaks file"):
        Peaks.from_dict({**peaks.to_dict(), "format": "something-else"})


def test_peaks_path_sits_beside_the_database(tmp_path):
    assert peaks_path_for(tmp_path / "tuning.db") == tmp_path / "tuning.db.peaks.json"
    assert str(peaks_path_for("rel/t.db")) == "rel/t.db.peaks.json"
    with pytest.raises(ValueError, match="URL"):
        peaks_path_for("postgresql://user@host/db")


def test_measure_on_the_cpu_gives_positive_figures_labelled_cpu():
    peaks = measure_peaks("cpu", matmul_size=64, copy_bytes=4 << 20)
    assert peaks.source == "measured" and peaks.kind == "cpu" and "CPU figures" in peaks.note
    assert peaks.method == "wall-clock" and peaks.bandwidth_gbps > 0
    assert set(peaks.tflops) == {"fp32", "fp16", "bf16"}
    assert all(v > 0 for v in peaks.tflops.values())
    assert set(peaks.skipped) == {"tf32", "fp8"} and "8.9" in peaks.skipped["fp8"]
    assert peaks.matmul_size == 64 and peaks.copy_bytes == 4 << 20
    with pytest.raises(ValueError, match="unknown matmul dtype"):
        measure_peaks("cpu", matmul_size=16, copy_bytes=1 << 10, dtypes=("int3",))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path's small sizes; a GPU measures 8192^3")
def test_calibrate_json_writes_the_file_beside_the_db(tmp_path):
    from infertune.cli import app

    db = tmp_path / "tuned.db"
    result = CliRunner().invoke(app, ["calibrate", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    path = tmp_path / "tuned.db.peaks.json"
    assert data["path"] == str(path) and path.exists()
    stored = Peaks.load(path)
    assert stored.kind == "cpu" and stored.source == "measured" and stored.bandwidth_gbps > 0
    assert data["measured"]["tflops"] == stored.tflops and data["datasheet"] is None


def test_calibrate_table_and_url_refusal(tmp_path):
    from infertune.cli import app

    if not torch.cuda.is_available():
        result = CliRunner().invoke(app, ["calibrate", "--db", str(tmp_path / "t.db")])
        assert result.exit_code == 0, result.output
        assert "CPU figures" in result.output and "t.db.peaks.json" in result.output
    refused = CliRunner().invoke(app, ["calibrate", "--db", "postgresql://u@h/db"])
    assert refused.exit_code == 2 and "URL" in refused.output
