"""`python -m bench`: every part in one run. Here (no GPU) each part runs its CPU sizes, as
CI does; the gathered results name the device and say the figures are CPU figures."""

from __future__ import annotations

import json

import pytest
import torch

import bench.__main__ as bench_main


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    for k, v in {"INFERTUNE_WARMUP_MS": "0", "INFERTUNE_REP_MS": "0", "INFERTUNE_MIN_REPS_CPU": "2"}.items():
        monkeypatch.setenv(k, v)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_overheads_part_meets_its_goals_and_is_gathered(tmp_path):
    assert bench_main.main(["--parts", "overheads", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    figures = data["parts"]["overheads"]["results"]["figures"]
    assert figures["database repeated lookup (memo)"]["median_ns"] < 5000  # goal 1 µs; generous for CI noise
    assert figures["NVTX range (kernels.nvtx_range), no profiler"]["median_ns"] < 20000
    md = (tmp_path / "results.md").read_text()
    assert "## overheads" in md and data["environment"]["device"]["label"] in md


@pytest.mark.skipif(torch.cuda.is_available(), reason="the full GPU run is not a test")
def test_every_part_runs_at_cpu_sizes(tmp_path):
    code = bench_main.main(["--out", str(tmp_path)])
    data = json.loads((tmp_path / "results.json").read_text())
    assert set(data["parts"]) == set(bench_main.PARTS) and data["gpu"] is False
    for part, result in data["parts"].items():
        assert result["exit"] == 0, part
        assert (tmp_path / part / "results.md").is_file()
    assert code == 0
    assert "say nothing about GPU speed" in (tmp_path / "results.md").read_text()


def test_unknown_part_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        bench_main.main(["--parts", "kernels,gpus"])
    assert exc.value.code == 2 and "unknown part gpus" in capsys.readouterr().err
