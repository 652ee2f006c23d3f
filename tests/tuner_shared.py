"""A tuner process for the shared-study test: `python -m tests.tuner_shared STORAGE TRIALS SEED`
prints "ready", waits for a line on stdin (so that two tuners start together, past their
imports), searches matmul 16x32x32 with a synthetic evaluator (no kernels; each config takes
a little while, so the two overlap), and prints one JSON line: the configs it ran and its
TuneResult counters."""

from __future__ import annotations

import json
import sys
import time

from tuner.search import SearchOptions, tune

from .fake_devices import CPU
from .test_tuner_samplers import Synthetic
from .tuner_killable import PROBLEM, SPEC


class Paced(Synthetic):
    def evaluate(self, config, stop_above_ms=None, timeout_s=None):
        time.sleep(0.05)
        return super().evaluate(config, stop_above_ms, timeout_s)


def main(storage: str, trials: int, seed: int) -> None:
    print("ready", flush=True)
    sys.stdin.readline()
    evaluator = Paced()
    result = tune(SPEC, PROBLEM, CPU, evaluator, storage=storage,
                  options=SearchOptions(trials=trials, sampler="tpe", seed=seed, retime_top=0))
    print(json.dumps({"evaluated": [dict(c) for c in evaluator.evaluated], "trials_run": result.trials_run,
                      "trials_total": result.trials_total, "taken_elsewhere": result.taken_elsewhere,
                      "answered_from_study": result.answered_from_study}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
