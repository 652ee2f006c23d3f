"""Reusable constraint builders and the pure size helpers they use.

A constraint is `(config, problem, device) -> reason or None`; a reason rejects the config
before anything is compiled, so the tuner never spends a trial on it.
"""

from __future__ import annotations

from collections.abc import Callable

from .device import DeviceInfo
from .spec import Config, Constraint, Problem

# tl.dot needs at least 16 along each of M, N and K on NVIDIA tensor cores; blocks are
# padded up to this, so a 1-row problem still uses a 16-row tile.
MIN_DOT = 16

ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}

# Registers a thread may hold; an accumulator tile beyond this spills (255 on NVIDIA).
MAX_REGS_PER_THREAD = 255
# 32-bit registers one block may use (every NVIDIA GPU since sm_30): a block of 512 threads
# (16 warps) gets 128 each. Compiled for sm_90 (Triton 3.9, bf16), 16-warp kernels were
# capped at 128 registers, and tiles a 255 bound let through spilled: layernorm at 128
# elements per thread 112-232 bytes of stack (58 spill instructions in its loop), erf-gelu
# at 64 elements 32-80 bytes; the same tiles on 8 warps took 174-192 and 120, no spill.
REGISTERS_PER_BLOCK = 64 * 1024


def max_registers_per_thread(num_warps: int) -> int:
    """Registers one thread of a num_warps block may hold: 255, and 128 at 16 warps."""
    return min(MAX_REGS_PER_THREAD, REGISTERS_PER_BLOCK // (32 * num_warps))


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def padded(n: int, minimum: int = MIN_DOT) -> int:
    """The smallest power-of-two tile that covers n (at least `minimum`)."""
    return max(minimum, next_pow2(n))


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def power_of_two(*params: str) -> Constraint:
    """Triton's tl.arange needs power-of-two extents."""

    def check(config: Config, problem: Problem, device: DeviceInfo) -> str | None:
        for p in params:
            v = config[p]
            if v < 1 or v & (v - 1):
                return f"{p}={v} is not a power of two"
        return None

    return check


def block_fits(param: str, dim: str, minimum: int = MIN_DOT) -> Constraint:
    """Reject a block larger than the problem dimension padded to a power of two: it only
    computes padding (e.g. BLOCK_M=128 for M=16 wastes 7/8 of every tile)."""

    def check(config: Config, problem: Problem, device: DeviceInfo) -> str | None:
        limit = padded(problem[dim], minimum)
        if config[param] > limit:
            return f"{param}={config[param]} exceeds {dim}={problem[dim]} padded to {limit}"
        return None

    return check


def shared_memory_fits(estimate: Callable[[Config, Problem], int]) -> Constraint:
    """Reject configs whose estimated shared memory exceeds the device's opt-in limit
    (Triton would fail with OutOfResources only after compiling)."""

    def check(config: Config, problem: Problem, device: DeviceInfo) -> str | None:
        if device.smem_per_block is None:
            return None
        need = estimate(config, problem)
        if need > device.smem_per_block:
            return f"needs ~{need // 1024} KiB shared memory; {device.name} allows {device.smem_per_block // 1024} KiB"
        return None

    return check


def registers_fit(elements: Callable[[Config, Problem], int]) -> Constraint:
    """Reject configs whose fp32 accumulator needs more registers per thread than exist
    (num_warps * 32 threads share `elements(config)` values). The values must leave the
    thread a register for its indices: at 16 warps, 128 values in 128 registers spilled."""

    def check(config: Config, problem: Problem, device: DeviceInfo) -> str | None:
        threads = 32 * config["num_warps"]
        per_thread = elements(config, problem) // threads
        limit = max_registers_per_thread(config["num_warps"])
        if per_thread >= limit:
            return (f"accumulator needs {per_thread} registers per thread with num_warps={config['num_warps']} "
                    f"(a thread has {limit})")
        return None

    return check


def at_least_one_tile_per_split(split: str, tile: str, dim: str) -> Constraint:
    """A split (split-K, split-KV) that owns no tile only adds launch and reduction work."""

    def check(config: Config, problem: Problem, device: DeviceInfo) -> str | None:
        tiles = cdiv(problem[dim], config[tile])
        if config[split] > tiles:
            return f"{split}={config[split]} exceeds the {tiles} {tile} tiles along {dim}={problem[dim]}"
        return None

    return check


def shrink_to_fit(spec, config: Config, problem: Problem, device: DeviceInfo, order: tuple[str, ...]) -> Config:
    """Halve the parameters in `order` (first to last, each down to its smallest candidate)
    until `config` passes `spec`'s constraints. Heuristics use it to stay valid on any
    device; it raises ValueError if nothing fits, which the heuristic tests would catch."""
    smallest = {p.name: min(p.values) for p in spec.params}
    while spec.reject_reason(config, problem, device) is not None:
        for name in order:
            if config[name] > smallest[name]:
                config = config.replace(**{name: max(smallest[name], config[name] // 2)})
                break
        else:
            raise ValueError(f"{spec.name}: no config fits {spec.shape_key(problem)} on {device.label}: "
                             f"{spec.reject_reason(config, problem, device)}")
    return config
