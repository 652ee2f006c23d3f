"""infertune/serving_setup.py: the serve target's configs are decided before the first request,
so the decode path meets no launch it was not prepared for; the length ladder; bad flags."""

from __future__ import annotations

import random

import pytest

from infertune.errors import UsageError
from infertune.serving_setup import length_ladder, open_target
from kernels.config_source import using_config_source
from runtime.engine import GenRequest
from runtime.launches import kernel_launches

from .test_runtime_cli import _tiny_llama_dir


def test_length_ladder():
    assert length_ladder(16) == [16]
    assert length_ladder(17) == [16, 17]
    assert length_ladder(255) == [16, 32, 64, 128, 255]
    assert length_ladder(256) == [16, 32, 64, 128, 256]
    assert length_ladder(5) == [5]


def test_the_decode_path_meets_only_prepared_launches(tmp_path):
    model_dir = _tiny_llama_dir(tmp_path / "tiny")
    target = open_target(str(model_dir), "fp32:triton-default", None, max_batch=3, max_queue=4, max_len=40)
    assert target.family == "llama" and target.max_len == 40 and target.engine.settings.max_batch == 3
    report = target.config_report()
    assert report["by_source"] == {"heuristic": len(report["launches"])} and report["unplanned"] == 0
    rng = random.Random()
    engine, seen = target.engine, []
    with using_config_source(target.source):
        for length in (16, 7):  # 16 is on the ladder; 7 is not (its prefill is resolved on first use)
            engine.submit(GenRequest([rng.randrange(37) for _ in range(length)], 3, on_event=seen.append))
        while engine.step():
            pass
    unplanned = target.source.unplanned
    assert len(seen) == 2 * 4  # 3 tokens and a Finished each
    # only prefill launches of the off-ladder length 7 were unforeseen, never a decode launch
    loaded = target.loaded
    prefill_7 = {(lc.kernel, lc.problem()) for lc in kernel_launches(loaded.config, batch=1, seq=7, dtype="fp32",
                                                                      gen=0)}
    assert unplanned and set(unplanned) <= prefill_7


def test_bad_flags_are_one_line_errors(tmp_path):
    model_dir = str(_tiny_llama_dir(tmp_path / "tiny"))
    with pytest.raises(UsageError, match=r"--max-len must be an integer in \[2, 64\]"):
        open_target(model_dir, "fp32:torch", None, max_batch=2, max_queue=2, max_len=65)
    with pytest.raises(UsageError, match="--max-batch must be a positive integer"):
        open_target(model_dir, "fp32:torch", None, max_batch=0, max_queue=2)
