"""A tuner process for the SIGKILL test: `python -m tests.tuner_killable STORAGE` searches
matmul 16x32x32 with a slow synthetic evaluator (no kernels) until it is killed."""

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
    def evaluate(self, config, stop_above_ms=None):
        time.sleep(0.2)
        return super().evaluate(config, stop_above_ms)


if __name__ == "__main__":
    tune(SPEC, PROBLEM, CPU, Slow(), storage=sys.argv[1], options=OPTIONS)
