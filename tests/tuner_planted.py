"""A small planted KernelSpec for the tuner tests (pure torch, no Triton: fast anywhere).

Its space is BLOCK x WARPS with the joint constraint BLOCK * WARPS <= 64. Five configs are
planted: (2, 1) raises as a compile error would, (4, 1) kills its process as an illegal
memory access does, (64, 1) dies of a segfault, (8, 1) hangs, (16, 1) is the fastest but
computes a wrong result. The true best is (32, 2). Importing this module changes nothing.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time

import torch

from kernels.spec import Config, KernelSpec, Param, Problem, Tolerance

RAISES = Config(BLOCK=2, WARPS=1)
CRASHES = Config(BLOCK=4, WARPS=1)
SEGFAULTS = Config(BLOCK=64, WARPS=1)
HANGS = Config(BLOCK=8, WARPS=1)
WRONG = Config(BLOCK=16, WARPS=1)
BEST = Config(BLOCK=32, WARPS=2)
PLANTED = (RAISES, CRASHES, SEGFAULTS, HANGS, WRONG)


def _too_big(config: Config, problem: Problem, device) -> str | None:
    if config["BLOCK"] * config["WARPS"] > 64:
        return f"BLOCK*WARPS={config['BLOCK'] * config['WARPS']} > 64"
    return None


def _launch(x: torch.Tensor, config: Config, out: torch.Tensor | None = None) -> torch.Tensor:
    if _too_big(config, None, None):
        raise AssertionError(f"an invalid config reached the worker: {config}")
    out = torch.empty_like(x) if out is None else out
    if config == RAISES:
        raise RuntimeError("planted compile error")
    if config == CRASHES:
        os._exit(1)
    if config == SEGFAULTS:
        os.kill(os.getpid(), signal.SIGSEGV)
    if config == HANGS:
        time.sleep(3600)
    if config == WRONG:
        out.copy_(x * 2 + 1)
        return out
    # 20x apart: the early stop (3x the best) must fire even when a loaded CI machine
    # stretches the 0.5 ms sleep past 1 ms (seen: 6x apart was not enough there).
    time.sleep(0.0005 if config == BEST else 0.010)
    out.copy_(x * 2)
    return out


SPEC = KernelSpec(
    name="planted",
    summary="x * 2 with planted failures (tests only)",
    dims=("N",),
    dtypes=("fp32",),
    params=(Param("BLOCK", (1, 2, 4, 8, 16, 32, 64)), Param("WARPS", (1, 2, 4))),
    constraints=(_too_big,),
    heuristic=lambda problem, device: Config(BLOCK=1, WARPS=1),
    make_inputs=lambda problem, device, gen: torch.randn(problem["N"], generator=gen, device=device),
    problem_of=lambda x: SPEC.problem({"N": x.shape[0]}, "fp32"),
    reference=lambda x: x.float() * 2,
    launch=_launch,
    baseline=lambda x: x * 2,
    baseline_name="torch x*2",
    flops=lambda problem: problem["N"],
    bytes_moved=lambda problem: 8 * problem["N"],
    tolerance=lambda problem: Tolerance(rtol=1e-6, atol=1e-6),
    example={"N": 64},
)

LOCATOR = "tests.tuner_planted:SPEC"

# The same kernel whose heuristic default is the hanging config: the first trial hangs
# (tests of the run budget).
HANG_FIRST = dataclasses.replace(SPEC, name="planted-hang-first", heuristic=lambda problem, device: HANGS)
HANG_FIRST_LOCATOR = "tests.tuner_planted:HANG_FIRST"
