"""Isolated trial execution: a worker process that checks and times configs, and the timing
evaluator that drives it (`WorkerEvaluator`; the process client: tuner/worker_client.py).

The worker is `python -m tuner.worker`, speaking one JSON object per line: requests on its
stdin, replies on the stdout it had at start (anything a kernel or Triton prints goes to
stderr, which the client keeps in a temporary file for crash reasons). Requests are plain
dicts (a kernel locator, a problem as shape/dtype/options, a config, a seed, timing
bounds); nothing is pickled.

A config that raises (compile error, out of resources) is a failed trial reported by the
worker. A config that hangs past the per-trial timeout, or kills the process (an illegal
memory access poisons the CUDA context; os._exit; a segfault), is a failed trial reported
by the client, which replaces the worker for the next trial. A healthy worker is kept
across trials: starting one (import torch, triton, the kernels) costs about two seconds.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from kernels.spec import Config, KernelSpec, Problem

from . import outcome as oc
from .outcome import Outcome
from .worker_client import STARTUP_TIMEOUT_S, Worker, WorkerLost, problem_to_dict

# Imported from here by the CLI, infertune and the tests.
__all__ = ["STARTUP_TIMEOUT_S", "TimingPolicy", "Worker", "WorkerEvaluator", "WorkerLost", "problem_to_dict",
           "resolve_spec", "serve"]

@dataclass(frozen=True)
class TimingPolicy:
    """Timing bounds sent to the worker (see profilers.timing.measure); `probe_reps` first
    repetitions decide an early stop; `cuda_graph` times CUDA-graph replays (GPU only; the
    torch baseline is timed the same way)."""

    warmup_ms: float = 25.0
    rep_ms: float = 100.0
    min_reps: int = 10
    max_reps: int = 1000
    probe_reps: int = 3
    cuda_graph: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_spec(locator: str) -> KernelSpec:
    """A registered kernel's name ("matmul"), or "package.module:ATTR" naming a KernelSpec
    (tests plant their own specs this way). Raises LookupError."""
    import kernels

    if ":" not in locator:
        return kernels.get(locator)
    module_name, _, attr = locator.partition(":")
    spec = getattr(importlib.import_module(module_name), attr, None)
    if not isinstance(spec, KernelSpec):
        raise LookupError(f"{locator} is not a KernelSpec")
    return spec


# --------------------------------------------------------------------------------------
# The worker process (its client: tuner/worker_client.py)


class _Session:
    """Inputs and references cached per (kernel, problem, seed) inside one worker."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple] = {}

    def prepared(self, request: dict[str, Any]):
        import torch

        from kernels.device import DTYPE_NAMES, current_device

        key = json.dumps([request["kernel"], request["problem"], request["seed"]], sort_keys=True)
        if key not in self._cache:
            spec = resolve_spec(request["kernel"])
            p = request["problem"]
            problem = spec.problem(p["shape"], p["dtype"], p["options"])
            device = current_device()
            generator = torch.Generator(device=device.torch_device).manual_seed(int(request["seed"]))
            inputs = spec.make_inputs(problem, device.torch_device, generator)
            reference = spec.reference(inputs)
            self._cache = {key: (spec, problem, device, inputs, reference, DTYPE_NAMES.get(problem.dtype))}
        return self._cache[key]


def _timing(fn, device, policy: dict[str, Any], probe: bool = False, triton: bool = True):
    from profilers.timing import measure

    interpreter = device.interpreter and triton  # the torch baseline never runs in the interpreter
    cuda_graph = bool(policy.get("cuda_graph", False))
    if probe:
        n = int(policy["probe_reps"])
        return measure(fn, device=device.torch_device, warmup_ms=0.0, rep_ms=0.0, min_reps=n, max_reps=n,
                       interpreter=interpreter, cuda_graph=cuda_graph)
    return measure(fn, device=device.torch_device, warmup_ms=policy["warmup_ms"], rep_ms=policy["rep_ms"],
                   min_reps=int(policy["min_reps"]), max_reps=int(policy["max_reps"]), interpreter=interpreter,
                   cuda_graph=cuda_graph)


def _failure_kind(exc: BaseException) -> str:
    name = type(exc).__name__
    if name in ("OutOfResources", "PTXASError"):
        return oc.OUT_OF_RESOURCES
    if name in ("CompilationError", "CompileTimeAssertionFailure"):
        return oc.COMPILE_ERROR
    return oc.RUNTIME_ERROR


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".strip()[:300]


def _evaluate(session: _Session, request: dict[str, Any]) -> Outcome:
    from profilers.nvtx import annotate

    # One NVTX range per trial, "trial <kernel> <config>" (a no-op without a profiler attached).
    with annotate("trial", "trial", detail=f"{request.get('kernel', '?')} {Config(request['config'])}"):
        return _evaluate_trial(session, request)


def _evaluate_trial(session: _Session, request: dict[str, Any]) -> Outcome:
    import torch

    from kernels.accuracy import compare, sqnr_db

    spec, problem, device, inputs, reference, out_dtype = session.prepared(request)
    config = Config(request["config"])
    if out_dtype is None:  # a dtype torch names differently (fp8): learn the output dtype
        out_dtype = spec.launch(inputs, config).dtype
    # Poisoned with NaN, so an element the kernel never writes fails the comparison.
    out = torch.full(reference.shape, math.nan, dtype=out_dtype, device=device.torch_device)
    out = spec.launch(inputs, config, out=out)
    comparison = compare(out.float(), reference, spec.tolerance(problem))
    if not comparison.ok:
        return Outcome.failed(oc.WRONG_RESULT, f"wrong result: {comparison.summary()}")
    # A quantized kernel's error against the float op it replaces (the joint scheme search's
    # second objective); the check above was against the dequantized operands.
    float_db = sqnr_db(spec.float_reference(inputs), out.float()) if spec.float_reference else None

    def fn():
        return spec.launch(inputs, config, out=out)

    stop_above = request.get("stop_above_ms")
    if stop_above is not None:
        probe = _timing(fn, device, request["timing"], probe=True)
        if probe.median_ms > float(stop_above):
            return Outcome(status=oc.EARLY_STOPPED, timing=probe, sqnr_db=comparison.sqnr_db, float_sqnr_db=float_db,
                           reason=f"first {probe.reps} repetitions {probe.median_ms:.4g} ms > {float(stop_above):.4g} ms")
    return Outcome(status=oc.OK, timing=_timing(fn, device, request["timing"]), sqnr_db=comparison.sqnr_db,
                   float_sqnr_db=float_db)


def _compile(session: _Session, request: dict[str, Any]) -> Outcome:
    """Compile the config's kernels for the problem without timing or checking them: one
    launch into a scratch output JIT-compiles them and fills Triton's on-disk cache
    (TRITON_CACHE_DIR, shared with the timing worker, which then hits it). Under the
    interpreter there is nothing to compile and nothing is launched, unless the request sets
    `force` (tests: a planted config's launch is observable)."""
    spec, _, device, inputs, _, _ = session.prepared(request)
    if device.interpreter and not request.get("force"):
        return Outcome(status=oc.OK, reason="Triton interpreter: nothing to compile")
    spec.launch(inputs, Config(request["config"]))
    if device.kind == "cuda":
        import torch

        torch.cuda.synchronize(device.torch_device)
    return Outcome(status=oc.OK)


def _baseline(session: _Session, request: dict[str, Any]) -> Outcome:
    spec, _, device, inputs, _, _ = session.prepared(request)
    return Outcome(status=oc.OK, timing=_timing(lambda: spec.baseline(inputs), device, request["timing"], triton=False))


def _handle(session: _Session, request: dict[str, Any]) -> dict[str, Any]:
    try:
        if request.get("op") == "evaluate":
            return _evaluate(session, request).to_dict()
        if request.get("op") == "baseline":
            return _baseline(session, request).to_dict()
        if request.get("op") == "compile":
            return _compile(session, request).to_dict()
        return Outcome.failed(oc.RUNTIME_ERROR, f"unknown request {request.get('op')!r}").to_dict()
    except Exception as exc:  # a config that fails is a result, typed and kept with its reason
        return Outcome.failed(_failure_kind(exc), _one_line(exc)).to_dict()


def _exit_with_parent(parent: int) -> None:
    # A tuner killed with SIGKILL closes our stdin, but a config that hangs never reads it.
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(3)


def serve() -> None:
    """The worker's loop: one JSON request per stdin line, one JSON reply per line."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # what kernels or Triton print must not corrupt the replies
    sys.stdout = sys.stderr
    import kernels  # noqa: F401  (sets TRITON_INTERPRET before any kernel is imported)

    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    session = _Session()
    # Imports are done: from here on a request's time is the trial's own.
    protocol.write(json.dumps({"ready": True}) + "\n")
    protocol.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = _handle(session, json.loads(line))
        protocol.write(json.dumps(reply) + "\n")
        protocol.flush()


class WorkerEvaluator:
    """Evaluates configs of one (kernel, problem) in an isolated worker.

    Args:
        locator: what `resolve_spec` finds the kernel by (a registry name or "module:ATTR").
        problem: the problem; sent as a plain dict.
        seed: seed of the inputs (the same inputs for every config).
        policy: timing bounds.
        trial_timeout_s: per-request limit; past it the worker is killed and replaced.
    """

    def __init__(self, locator: str, problem: Problem, *, seed: int, policy: TimingPolicy,
                 trial_timeout_s: float) -> None:
        self._base = {"kernel": locator, "problem": problem_to_dict(problem), "seed": seed,
                      "timing": policy.to_dict()}
        self._locator, self._problem, self._seed = locator, problem, seed
        self._timeout = trial_timeout_s
        self.worker = Worker()

    @property
    def trial_timeout_s(self) -> float:
        """The per-trial timeout: a run budget shorter than it is what cuts a trial instead."""
        return self._timeout

    def evaluate(self, config: Config, stop_above_ms: float | None = None, timeout_s: float | None = None) -> Outcome:
        """Check `config` against the reference, then time it (or stop early above `stop_above_ms`).

        timeout_s: what is left of the run's budget; the request's limit is the smaller of it
        and the per-trial timeout. A trial cut by it is a TIMEOUT failure naming the run budget.
        """
        request = {**self._base, "op": "evaluate", "config": dict(config), "stop_above_ms": stop_above_ms}
        limit, by_budget = self._timeout, False
        if timeout_s is not None and timeout_s < self._timeout:
            limit, by_budget = max(float(timeout_s), 0.0), True
        try:
            return Outcome.from_dict(self.worker.request(request, limit))
        except WorkerLost as lost:
            if by_budget and lost.outcome.kind == oc.TIMEOUT:
                return Outcome.failed(oc.TIMEOUT, f"timeout: cut by the run budget (--timeout) after {limit:.3g} s "
                                                  f"(per-trial timeout {self._timeout:g} s); worker replaced")
            return lost.outcome

    def compile_pool(self, workers: int, *, interpreter: bool, force: bool = False):
        """A tuner.precompile.CompilePool of `workers` extra processes for this kernel and
        problem (same inputs' seed, the per-trial timeout as the compile timeout)."""
        from .precompile import CompilePool

        return CompilePool(self._locator, self._problem, seed=self._seed, workers=workers,
                           timeout_s=self._timeout, interpreter=interpreter, force=force)

    def baseline(self) -> Outcome:
        """Time the torch baseline on the same inputs."""
        try:
            return Outcome.from_dict(self.worker.request({**self._base, "op": "baseline"}, self._timeout))
        except WorkerLost as lost:
            return lost.outcome

    def close(self) -> None:
        self.worker.close()


if __name__ == "__main__":
    serve()
