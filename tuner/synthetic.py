"""Synthetic replay recordings of a tiled matmul: search strategies compared on a landscape
with the structure of a GPU tuning run, until recorded GPU grids exist (bench/data/).

`matmul_recording(spec, shape, seed=...)` gives every valid config of a tile-parameter
space (BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, SPLIT_K, num_warps, num_stages: kernels/gemm.py)
an outcome on SYNTHETIC_DEVICE, an H100-like device (132 SMs, 227 KiB of shared memory per
block) whose name says it is synthetic. Everything random comes from `random.Random(seed)`:
the same (shape, seed) gives the same recording, byte for byte.

Latency (ms): a roofline per config, then seeded perturbations.
- Work: each of the ceil(M/BM) * ceil(N/BN) * SPLIT_K programs computes a padded BM x BN
  tile over K / SPLIT_K; programs run in waves of 132 SMs x the programs that fit an SM
  (shared memory of the pipeline, at most 4), so a tile count just above a wave costs a whole
  wave (wave quantisation) and padding (BM > M) is wasted work.
- Compute at 990 TFLOP/s scaled by efficiencies that peak in the middle of each axis:
  accumulator values per thread (BM*BN / (32*num_warps): best at 64), BLOCK_K (best at 64),
  num_stages (pipelining: best at 3-4).
- Memory: A is read once per column of tiles and B once per row of tiles at 3.3 TB/s, less
  the L2 reuse of GROUP_M; SPLIT_K > 1 adds an fp32 partial-sum pass; 4 us launch overhead.
- Seeded perturbations: a factor per (parameter, value) (lognormal, sigma 0.06: the
  hardware's quirks, smooth across configs that share a value) and one per config (sigma
  0.02: measurement noise).

Failures, in structured regions as on a GPU (reasons end in "(synthetic)"):
- out-of-resources: shared memory of the pipeline above a seeded 35-55% of the device's
  limit (the spec's own estimate leaves out the epilogue and layout conversions, so Triton
  fails on configs the constraint lets through), or more than 128 accumulator values per
  thread (register allocation fails);
- compile-error: BLOCK_K = 128 with num_warps = 2 and num_stages >= 4;
- wrong-result: SPLIT_K >= 8 with num_stages = 5 (a planted race);
- timeout: a latency above 25x the best config's (the per-trial timeout), and a seeded 1%
  of the rest (a hung launch).
At the Llama-3-8B decode shape 16x4096x4096 about 40% of the valid configs fail.
"""

from __future__ import annotations

import math
import random

from kernels.device import DeviceInfo
from kernels.spec import Config, KernelSpec
from profilers.timing import Timing

from . import outcome as oc
from .outcome import Outcome
from .replay import Recording
from .space import Space

SYNTHETIC_DEVICE = DeviceInfo(kind="cuda", name="synthetic H100-like", capability=(9, 0), smem_per_block=232448,
                              sm_count=132, total_memory=80 * 2**30, interpreter=False)
PEAK_TFLOPS = 990.0
BANDWIDTH_GBS = 3350.0
LAUNCH_MS = 0.004
TIMEOUT_FACTOR = 40.0
HUNG_SHARE = 0.01
# (M, N, K) of Llama-3-8B layers the bench compares samplers on: decode q/o projection, a
# decode MLP up projection at batch 32, a prefill chunk of 64 tokens through the down projection.
SHAPES = ((16, 4096, 4096), (32, 14336, 4096), (64, 4096, 14336))


def _timing(ms: float) -> Timing:
    # median, p10, p90, min, mean, repetitions, method, L2 flushed, interpreter
    return Timing(ms, ms * 0.99, ms * 1.02, ms * 0.98, ms * 1.0, 100, "synthetic", True, False)


def _efficiency(x: float, best: float, width: float) -> float:
    """1 at x == best, falling off in log2 distance (a Gaussian of `width` octaves)."""
    return math.exp(-0.5 * (math.log2(x / best) / width) ** 2)


def model_ms(config: Config, M: int, N: int, K: int, device: DeviceInfo = SYNTHETIC_DEVICE,
             element_bytes: int = 2) -> float:
    """The unperturbed latency of `config` at M x N x K (see the module docstring)."""
    bm, bn, bk = config["BLOCK_M"], config["BLOCK_N"], config["BLOCK_K"]
    split, warps, stages, group = config["SPLIT_K"], config["num_warps"], config["num_stages"], config["GROUP_M"]
    tiles_m, tiles_n = math.ceil(M / bm), math.ceil(N / bn)
    programs = tiles_m * tiles_n * split
    smem = stages * (bm + bn) * bk * element_bytes
    per_sm = max(1, min(4, (device.smem_per_block or smem) // max(smem, 1)))
    waves = math.ceil(programs / (device.sm_count * per_sm))
    k_per = math.ceil(K / split)
    efficiency = (_efficiency(bm * bn / (32 * warps), 64, 1.5) * _efficiency(bk, 64, 1.2)
                  * (0.80, 0.95, 1.0, 0.98)[min(stages, 5) - 2])
    # One wave of full SMs runs sm_count * per_sm tiles at the device's peak shared between them.
    tile_ms = 2 * bm * bn * k_per / (PEAK_TFLOPS * 1e9 / (device.sm_count * per_sm)) / max(efficiency, 1e-3)
    compute_ms = waves * tile_ms
    reuse = min(group, tiles_m) if tiles_m > 1 else 1
    a_bytes = M * K * element_bytes * tiles_n / reuse ** 0.5
    b_bytes = N * K * element_bytes * max(1, tiles_m / reuse)
    c_bytes = M * N * (element_bytes + (8 * split if split > 1 else 0))
    memory_ms = (a_bytes + b_bytes + c_bytes) / (BANDWIDTH_GBS * 1e6) / (0.6 + 0.1 * min(stages, 4))
    return max(compute_ms, memory_ms) + 0.3 * min(compute_ms, memory_ms) + LAUNCH_MS * (2 if split > 1 else 1)


def _failure(config: Config, smem_limit: float, element_bytes: int) -> Outcome | None:
    bm, bn, bk = config["BLOCK_M"], config["BLOCK_N"], config["BLOCK_K"]
    smem = config["num_stages"] * (bm + bn) * bk * element_bytes
    if smem > smem_limit:
        return Outcome.failed(oc.OUT_OF_RESOURCES, f"out of resource: shared memory, required {smem}, hardware "
                                                   f"limit {int(smem_limit)} (synthetic)")
    if bm * bn // (32 * config["num_warps"]) > 128:
        return Outcome.failed(oc.OUT_OF_RESOURCES, "out of resource: registers (synthetic)")
    if bk == 128 and config["num_warps"] == 2 and config["num_stages"] >= 4:
        return Outcome.failed(oc.COMPILE_ERROR, "PassManager::run failed (synthetic)")
    if config["SPLIT_K"] >= 8 and config["num_stages"] == 5:
        return Outcome.failed(oc.WRONG_RESULT, "max abs error 3.1 above tolerance (synthetic)")
    return None


def matmul_recording(spec: KernelSpec, shape: tuple[int, int, int], *, seed: int = 0, dtype: str = "bf16",
                     device: DeviceInfo = SYNTHETIC_DEVICE) -> Recording:
    """A synthetic recording of every valid config of `spec` (a kernel with the tile
    parameters of kernels/gemm.py, e.g. matmul) at M x N x K = `shape` on `device`.

    Raises ValueError when the space has no valid config or lacks a tile parameter.
    """
    M, N, K = shape
    problem = spec.problem({"M": M, "N": N, "K": K}, dtype)
    configs = Space(spec, problem, device).valid_configs
    if not configs:
        raise ValueError(f"{spec.name}: no valid config at {M}x{N}x{K}")
    missing = {"BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M", "SPLIT_K", "num_warps", "num_stages"} - set(configs[0])
    if missing:
        raise ValueError(f"{spec.name} has no tile parameter {min(missing)}")
    rng = random.Random(seed)
    element_bytes = 4 if dtype == "fp32" else 2
    smem_limit = rng.uniform(0.35, 0.55) * (device.smem_per_block or 232448)
    quirk = {(p.name, v): math.exp(rng.gauss(0.0, 0.04)) for p in spec.params for v in p.values}
    latency: dict[Config, float] = {}
    for c in configs:
        ms = model_ms(c, M, N, K, device, element_bytes)
        for name, value in c.items():
            ms *= quirk[(name, value)]
        latency[c] = ms * math.exp(rng.gauss(0.0, 0.01))
    failures = {c: _failure(c, smem_limit, element_bytes) for c in configs}
    passing = [ms for c, ms in latency.items() if failures[c] is None]
    limit = TIMEOUT_FACTOR * min(passing) if passing else math.inf
    outcomes: dict[Config, Outcome] = {}
    for c in configs:
        hung = rng.random() < HUNG_SHARE
        if failures[c] is not None:
            outcomes[c] = failures[c]
        elif latency[c] > limit or hung:
            outcomes[c] = Outcome.failed(oc.TIMEOUT, "ran past the trial timeout (synthetic)")
        else:
            outcomes[c] = Outcome(status=oc.OK, timing=_timing(latency[c]))
    baseline = Outcome(status=oc.OK, timing=_timing(min(passing) * 1.1 if passing else 1.0))
    return Recording(spec.name, problem, device, baseline, outcomes)


def failure_share(recording: Recording) -> float:
    """The share of the recording's configs that failed (any kind)."""
    return sum(o.status == oc.FAILED for o in recording.outcomes.values()) / max(1, len(recording.outcomes))
