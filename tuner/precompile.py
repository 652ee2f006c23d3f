"""Ahead-of-time compilation of candidate configs in parallel.

On a GPU, compiling a config (Triton's JIT: TTIR -> PTX -> cubin) usually costs more than
timing it. A `CompilePool` holds N extra worker processes (`python -m tuner.worker`, the
same `Worker` client as the timing worker) that each compile one config at a time by
launching it once into a scratch output, without checking or timing it: that fills Triton's
on-disk cache (TRITON_CACHE_DIR, inherited by every worker), which the timing worker then
hits. The search sends a batch of configs to the pool, one thread driving each pool worker,
then times them one by one in its timing worker.

A config whose compile fails (compile error, out of resources, a raise, a crash or a hang
past the timeout) is a failed trial with the kind and reason of the compile step; it never
reaches the timing worker. A pool worker that crashed or hung is replaced on its next use.

Under the Triton interpreter there is nothing to compile: the pool reports itself disabled
(`disabled_reason`) and starts nothing. Tests set `force`: the compile op then launches the
config under the interpreter too, so planted crashing or hanging configs are observable.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from kernels.spec import Config, Problem

from . import outcome as oc
from .outcome import Outcome
from .worker_client import Worker, WorkerLost, problem_to_dict

INTERPRETER_REASON = "Triton interpreter: nothing to compile ahead of time"


class CompilePool:
    """N worker processes that compile configs of one (kernel, problem) in parallel.

    Args:
        locator: what `tuner.worker.resolve_spec` finds the kernel by.
        problem: the problem; sent as a plain dict.
        seed: seed of the inputs (as the timing worker's, so shapes and strides match).
        workers: processes in the pool (0 disables it).
        timeout_s: per-compile limit; past it the pool worker is killed and replaced.
        interpreter: the kernels run in Triton's interpreter (then the pool is disabled).
        force: launch under the interpreter too (tests only).
    """

    def __init__(self, locator: str, problem: Problem, *, seed: int, workers: int, timeout_s: float,
                 interpreter: bool, force: bool = False) -> None:
        self._base = {"op": "compile", "kernel": locator, "problem": problem_to_dict(problem), "seed": seed,
                      "force": bool(force)}
        self._timeout = timeout_s
        self.size = max(0, int(workers))
        self.disabled_reason: str | None = None
        if self.size == 0:
            self.disabled_reason = "no compile workers"
        elif interpreter and not force:
            self.disabled_reason = INTERPRETER_REASON
        self._workers = [Worker() for _ in range(self.size)] if self.disabled_reason is None else []
        self.compiled: list[Config] = []  # every config sent to a pool worker, in completion order
        self._lock = threading.Lock()

    def retarget(self, locator: str, problem: Problem, *, seed: int) -> None:
        """Compile for another (kernel, problem) from now on: the worker processes do not
        depend on the problem, so one pool serves every problem of a run and starts once
        (8 processes importing torch and triton took ~10 s each problem on an H200 host)."""
        self._base = {**self._base, "kernel": locator, "problem": problem_to_dict(problem), "seed": seed}

    def start(self) -> None:
        """Start every worker process now, in parallel (else each starts on first use, inside
        the search's time budget). A worker that cannot start is left to fail its first compile."""
        def one(worker: Worker) -> None:
            try:
                worker.ensure_started()
            except WorkerLost:
                pass

        threads = [threading.Thread(target=one, args=(w,), daemon=True) for w in self._workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    @property
    def enabled(self) -> bool:
        return self.disabled_reason is None

    @property
    def started(self) -> int:
        """Worker processes started so far (replacements included)."""
        return sum(w.started for w in self._workers)

    def _compile_one(self, worker: Worker, config: Config, timeout_s: float | None) -> Outcome:
        limit = self._timeout if timeout_s is None else max(0.0, min(self._timeout, timeout_s))
        try:
            result = Outcome.from_dict(worker.request({**self._base, "config": dict(config)}, limit))
        except WorkerLost as lost:
            result = lost.outcome
        with self._lock:
            self.compiled.append(config)
        if result.status == oc.FAILED:
            return Outcome.failed(result.kind or oc.RUNTIME_ERROR, f"compile: {result.reason}")
        return Outcome(status=oc.OK, reason=result.reason)

    def compile_many(self, configs: Sequence[Config], timeout_s: float | None = None) -> list[Outcome]:
        """Compile `configs` in parallel (config i on pool worker i mod N); returns one
        Outcome per config, in order: OK, or FAILED with the compile's kind and reason.
        `timeout_s` (what is left of the run's budget) lowers the per-compile limit.
        A disabled pool answers OK for every config and runs nothing."""
        if not self.enabled:
            return [Outcome(status=oc.OK, reason=self.disabled_reason) for _ in configs]
        results: list[Outcome | None] = [None] * len(configs)

        def drive(slot: int) -> None:
            for i in range(slot, len(configs), self.size):
                results[i] = self._compile_one(self._workers[slot], configs[i], timeout_s)

        threads = [threading.Thread(target=drive, args=(slot,), daemon=True)
                   for slot in range(min(self.size, len(configs)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [r if r is not None else Outcome.failed(oc.RUNTIME_ERROR, "compile: no result") for r in results]

    def close(self) -> None:
        for worker in self._workers:
            worker.close()

    def __enter__(self) -> CompilePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
