"""A tuner process for the SIGKILL tests: `python -m tests.tuner_killable STORAGE [HANG_AT]`
searches matmul 16x32x32 with a slow synthetic evaluator (no kernels) until it is killed;
with HANG_AT its evaluation number HANG_AT (from 0) never returns, so that a kill lands
mid-trial for sure."""

from __future__ import annotations

import sys
import time

import kernels
from tuner.search import SearchOptions, tune

from .fake_devices import CPU
from .test_tuner_samplers import Synthetic

SPEC = kernels.get("matmul")
PROBLEM = SPEC.problem({"M": 16, "N": 32, "K": 32}, "fp16")
OPTIONS = SearchOptions(trials=60, sampler="tpe", seed=4, retime_top=0)


class Slow(Synthetic):
    def __init__(self, hang_at: int | None = None) -> None:
        super().__init__()
        self.hang_at = hang_at

    def evaluate(self, config, stop_above_ms=None, timeout_s=None):
        if len(self.evaluated) == self.hang_at:
            time.sleep(3600)
        time.sleep(0.2)
        return super().evaluate(config, stop_above_ms, timeout_s)


if __name__ == "__main__":
    hang_at = int(sys.argv[2]) if len(sys.argv) > 2 else None
    tune(SPEC, PROBLEM, CPU, Slow(hang_at), storage=sys.argv[1], options=OPTIONS)
