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
