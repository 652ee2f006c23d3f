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
