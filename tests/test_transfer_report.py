"""The report's "Warm start and transfer" section from a run file: warm-started searches and
transferred records measured here; the schema types what it reads."""

from __future__ import annotations

import random

import pytest

from infertune.rundir import skeleton
from reports import document
from reports.load import Run
from reports.runfile import RunDirError, validate

ENV = {"device": {"label": "cpu", "kind": "cpu", "interpreter": True}, "torch": "2"}


def _row(rng: random.Random) -> dict:
    there, here = rng.uniform(0.01, 1), rng.uniform(0.01, 1)
    return {"kernel": "matmul", "problem": f"M={rng.randrange(1, 300)},N=64,K=64|fp16|bias=0",
            "from": "nvidia-h100-80gb-hbm3", "transferred_config": {"BLOCK_M": 16}, "transferred_ms_at_source": there,
            "transferred_ms": here, "default_ms": here * 1.5, "chosen_config": {"BLOCK_M": 32},
            "chosen_ms": here * 0.9, "verdict": "replaced: a searched config beat it"}


def test_warm_started_searches_and_measured_transfers_are_shown(tmp_path):
    rng = random.Random()
    run = skeleton("autotune", "autotune-matmul", ["infertune", "autotune"], ENV)
    warm = rng.randrange(1, 6)
    run["tuning"] = [{"kernel": "matmul", "problem": "M=13,N=32,K=32|fp16|bias=0", "warm_started": warm,
                      "trials_run": 9, "trials_to_best": 2, "best_config": {"BLOCK_M": 16, "BLOCK_N": 32}},
                     {"kernel": "matmul", "problem": "M=7,N=32,K=32|fp16|bias=0", "warm_started": 0}]
    rows = [_row(rng) for _ in range(3)]
    run["confirm_transferred"] = rows
    validate(run)
    doc = document.build([Run(tmp_path / "a", "a", run)])
    (section,) = [s for s in doc.sections if s.id == "transfer"]
    tables = [b for b in section.blocks if isinstance(b, document.Table)]
    assert tables[0].rows == [["a", "matmul", "M=13,N=32,K=32|fp16|bias=0", str(warm), "9", "2",
                               "BLOCK_M=16, BLOCK_N=32"]]  # the search with no warm config is left out
    assert [r[2] for r in tables[1].rows] == [r["problem"] for r in rows]
    assert tables[1].rows[0][4] == f"{rows[0]['transferred_ms_at_source']:.4g} ms"
    with pytest.raises(RunDirError, match="/confirm_transferred/0/transferred_ms"):
        validate(dict(run, confirm_transferred=[{**rows[0], "transferred_ms": -1.0}]))


def test_no_section_without_warm_start_or_transfers(tmp_path):
    run = skeleton("autotune", "autotune-matmul", ["infertune", "autotune"], ENV)
    run["tuning"] = [{"kernel": "matmul", "problem": "M=7,N=32,K=32|fp16|bias=0", "warm_started": 0}]
    doc = document.build([Run(tmp_path / "a", "a", run)])
    assert not [s for s in doc.sections if s.id == "transfer"]
