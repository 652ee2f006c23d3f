"""The benchmark script runs end to end (smoke shapes) and writes its JSON and Markdown."""

import json

from bench import kernels_vs_torch


def test_smoke_run_writes_results(tmp_path, capsys):
    code = kernels_vs_torch.main(["--smoke", "--dtype", "fp16", "--out", str(tmp_path), "--seed", "3",
                                  "--kernels", "matmul,matmul_w8a16,matmul_w4a16"])
    assert code == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["environment"]["device"]["label"] and data["seed"] == 3
    rows = data["results"]
    assert len(rows) == 3 * len(kernels_vs_torch.SMOKE_M) * len(kernels_vs_torch.SMOKE_NK)
    assert all(r["accuracy"]["ok"] for r in rows)
    md = (tmp_path / "results.md").read_text()
    assert md.count("| matmul_w4a16 |") == len(kernels_vs_torch.SMOKE_M)
    assert "Geometric-mean speedup" in md
    if rows[0]["interpreter"]:
        assert "say nothing about GPU speed" in md


def test_full_run_refuses_without_a_gpu(capsys):
    import torch
    if torch.cuda.is_available():
        return
    assert kernels_vs_torch.main([]) == 2
    assert "need a CUDA GPU" in capsys.readouterr().err


def test_nk_picks_the_weight_shapes(tmp_path):
    code = kernels_vs_torch.main(["--smoke", "--dtype", "fp16", "--out", str(tmp_path), "--kernels", "matmul",
                                  "--m", "3", "--nk", "40x24,13x32"])
    assert code == 0
    rows = json.loads((tmp_path / "results.json").read_text())["results"]
    assert [(r["shape"]["M"], r["shape"]["N"], r["shape"]["K"]) for r in rows] == [(3, 40, 24), (3, 13, 32)]


def test_malformed_nk_is_one_line_and_exit_2(tmp_path, capsys):
    for bad in ("4096", "4096x", "0x64", "axb", "64x64x64"):
        assert kernels_vs_torch.main(["--smoke", "--out", str(tmp_path), "--nk", bad]) == 2
        err = capsys.readouterr().err
        assert "--nk takes" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
