"""The steps of the GPU kit, in the order they run, and what each one runs.

Each step is a list of commands (argv lists, no shell) run from the repository root with the
project on PYTHONPATH. `{py}` is this Python, `{work}` the run's work folder, `{models}` the
packed models' folder (bench/device/models.py). A command's own environment variables go
before its program as `env NAME=VALUE ...` (the runner gives every command the same
environment, and env(1) needs no shell). A step stops at
its first failing command; the next step runs anyway. Caps are the most seconds a step may
take on a GPU (the budget left may cut it shorter); on a smoke run every step runs its CPU size.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

# Llama-3-8B linear layers (N = output features, K = input): q/o projection and MLP gate/up.
TUNE_NK = ((4096, 4096), (14336, 4096))
TUNE_M_BF16 = (1, 16, 128)
# The (N, K) the runtime's batch-1 decode of llama-3-8b launches: fused qkv, o, fused gate_up,
# down. Records are looked up by exact N and K, so tuning these is what lets the runtime step's
# decode run tuned configs (run-1's decode ran heuristics in 32 of its 34 launches).
DECODE_NK = ((6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336))
# The grid step's timing per config: ~1,200 configs must fit its cap, so shorter than the
# kit's (run.KIT_ENV); the figure it feeds is a ranking of configs, not a latency.
GRID_ENV = {"INFERTUNE_REP_MS": "10", "INFERTUNE_WARMUP_MS": "3"}
# matmul_w4a16 unpacks nibbles with PTX on a GPU; this selects Triton's lowering instead.
INT4_BITS_ENV = {"INFERTUNE_INT4_DEQUANT": "bits"}
SPLITK_KERNEL_ENV = {"INFERTUNE_SPLITK_REDUCE": "kernel"}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclasses.dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    stdout: str | None = None   # file under {work} that takes stdout (else the step's log)


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    title: str
    cap_s: float
    commands: tuple[Command, ...]


def _cmd(*argv: str, stdout: str | None = None, env: Mapping[str, str] | None = None) -> Command:
    """`env`: variables for this command only, set by env(1) in front of the program."""
    if env:
        bad = [name for name in env if not _ENV_NAME.fullmatch(name)]
        if bad:
            raise ValueError(f"not an environment variable name: {bad[0]!r}")
        argv = ("env", *(f"{name}={value}" for name, value in env.items()), *argv)
    return Command(tuple(argv), stdout)


def _shapes(pairs) -> list[str]:
    out = []
    for m, n, k in pairs:
        out += ["--shape", f"{m}x{n}x{k}"]
    return out


def gpu_steps(trials: int = 12, tune_timeout_s: float = 11.0) -> list[Step]:
    """The full-size steps (a CUDA GPU)."""
    db = "{work}/tuned.db"
    tune_common = ["--dtype", "bf16", "--trials", str(trials), "--timeout", str(tune_timeout_s), "--db", db, "--json"]
    # bf16: the decode shapes at M=1, and M=16 and 128 at 4096x4096; int8 and int4: the decode shapes.
    bf16_shapes = _shapes([(1, n, k) for n, k in DECODE_NK] + [(m, *TUNE_NK[0]) for m in TUNE_M_BF16 if m > 1])
    quant_shapes = _shapes((1, n, k) for n, k in DECODE_NK)
    return [
        Step("env", "environment and calibrate", 60, (
            _cmd("nvidia-smi", stdout="nvidia-smi.txt"),
            _cmd("{py}", "-m", "infertune", "env", "--json", stdout="env.json"),
            _cmd("{py}", "-m", "infertune", "calibrate", "--db", db, "--json", stdout="calibrate.json"),
        )),
        Step("gpu-tests", "pytest -m gpu", 100, (
            _cmd("{py}", "-m", "pytest", "-m", "gpu", "-q", "-n", "8", "-p", "no:cacheprovider",
                 "--junitxml", "{work}/gpu-tests.xml"),
        )),
        Step("kernels", "kernels vs torch.matmul, default configs; A/B: int4 unpacking, matmul TMA, skinny split-K, "
                        "split-K reduction", 150, (
            _cmd("{py}", "-m", "bench.kernels_vs_torch", "--out", "{work}/kernels"),
            # A/Bs for the summary, against the default rows above: the int4 rows at M <= 16
            # with Triton's unpacking instead of the PTX (the default), the bf16 matmul at
            # M = 128 and 2048 with TMA tensor-descriptor loads (TMA=1; the default is 0), and
            # the M <= 16 rows with N = 4096 at the split the first H200 run's rule gave them
            # (2: one program per SM; the default now splits 4 ways there).
            _cmd("{py}", "-m", "bench.kernels_vs_torch", "--kernels", "matmul_w4a16", "--m", "1,16",
                 "--out", "{work}/kernels-int4-bits", env=INT4_BITS_ENV),
            _cmd("{py}", "-m", "bench.kernels_vs_torch", "--kernels", "matmul", "--m", "128,2048", "--config", "TMA=1",
                 "--out", "{work}/kernels-matmul-tma"),
            _cmd("{py}", "-m", "bench.kernels_vs_torch", "--m", "1,16", "--nk", "4096x4096,4096x14336",
                 "--config", "SPLIT_K=2", "--out", "{work}/kernels-split-once"),
            # ...and the M <= 16 rows with split-K's second-pass launch instead of the serial
            # in-kernel sum (the default).
            _cmd("{py}", "-m", "bench.kernels_vs_torch", "--m", "1,16", "--nk", "4096x4096,4096x14336",
                 "--out", "{work}/kernels-splitk-kernel", env=SPLITK_KERNEL_ENV),
        )),
        Step("tune", "short TPE tune with the compile pool: decode shapes (bf16, int8, int4) and bf16 M=16, 128", 200, (
            _cmd("{py}", "-m", "infertune", "autotune", "matmul", *bf16_shapes, *tune_common,
                 "--out", "{work}/runs/tune-matmul", stdout="tune-matmul.json"),
            _cmd("{py}", "-m", "infertune", "autotune", "matmul_w8a16", *quant_shapes, *tune_common,
                 "--out", "{work}/runs/tune-w8a16", stdout="tune-matmul_w8a16.json"),
            _cmd("{py}", "-m", "infertune", "autotune", "matmul_w4a16", *quant_shapes, "--quant", "int4-g128",
                 *tune_common, "--out", "{work}/runs/tune-w4a16", stdout="tune-matmul_w4a16.json"),
            _cmd("{py}", "-m", "infertune", "db", "export", "--db", db, "--format", "json", "--out", "{work}/tuned"),
        )),
        # Run-1's runtime step took 158 s before the PDL A/B and the decode profile were added
        # at its end: 230 s lets a rerun of this step alone (`--steps runtime --budget 240`)
        # reach them.
        Step("runtime", "decode / prefill vs transformers, MiniLM vs sentence-transformers, PDL decode A/B, "
                        "decode kernel profile", 230, (
            _cmd("{py}", "-m", "bench.device.models", "unpack", "{models}"),
            _cmd("{py}", "-m", "bench.runtime", "--db", db, "--out", "{work}/runtime", "--reps", "3"),
        )),
        Step("ncu", "ncu on the tuned bf16 matmul at M=16", 60, (
            _cmd("{py}", "-m", "infertune", "profile", "kernel", "matmul", "--shape", "16x4096x4096",
                 "--dtype", "bf16", "--variants", "torch,default,tuned", "--db", db, "--ncu",
                 "--out", "{work}/runs/ncu-matmul", "--json", stdout="ncu-matmul.json"),
        )),
        Step("ncu-w4", "ncu on matmul_w4a16 int4-g128 at M=1 (the w4 decode figure's kernel)", 60, (
            _cmd("{py}", "-m", "infertune", "profile", "kernel", "matmul_w4a16", "--shape", "1x4096x4096",
                 "--quant", "int4-g128", "--dtype", "bf16", "--variants", "torch,default,tuned", "--db", db, "--ncu",
                 "--out", "{work}/runs/ncu-w4a16", "--json", stdout="ncu-matmul_w4a16.json"),
        )),
        # Issue 14 on the short tune: the M=2048 prefill shapes warm-started from the records
        # above (another bucket, same device: the export folder), then a model tune whose
        # records are confirmed end to end (decode under a CUDA graph, prefill at 128).
        Step("warm-start", "M=2048 tune warm-started from the short tune's export", 90, (
            _cmd("{py}", "-m", "infertune", "autotune", "matmul", *_shapes((2048, n, k) for n, k in TUNE_NK),
                 "--warm-start", "{work}/tuned", *tune_common, "--out", "{work}/runs/tune-warm",
                 stdout="tune-warm.json"),
        )),
        Step("confirm", "model tune confirmed end to end: llama-3.2-1b (synthetic) and MiniLM", 240, (
            _cmd("{py}", "-m", "bench.device.models", "unpack", "{models}"),
            _cmd("{py}", "-m", "infertune", "autotune", "matmul", "--model", "llama-3.2-1b", "--batch", "1",
                 "--prompt-len", "128", "--gen", "32", "--confirm", "--trials", "6", "--timeout", "6", "--db", db,
                 "--json", "--out", "{work}/runs/confirm-llama", stdout="confirm-llama.json"),
            _cmd("{py}", "-m", "infertune", "autotune", "matmul", "--model", "minilm-l6", "--batch", "8",
                 "--prompt-len", "128", "--confirm", "--trials", "6", "--timeout", "6", "--db", db, "--json",
                 "--out", "{work}/runs/confirm-minilm", stdout="confirm-minilm.json"),
        )),
        # Issue 15, when time allows: the built-in server under Poisson load up to saturation,
        # tuned (the short tune's database) vs heuristic configs, llama-3-8b-shaped bf16 + CUDA graphs.
        Step("serving", "server at rates up to saturation: tuned vs heuristic (llama-3-8b synthetic)", 150, (
            _cmd("{py}", "-m", "bench.serving", "--db", db, "--out", "{work}/serving"),
        )),
        # The TPE figure needs exhaustive grids, which take hours: one grid per session, its
        # replays later on any machine (`python -m bench.tuning --parts replays`). A grid cut
        # by its timeout is resumed from bench/data next time (ingest publishes it there).
        Step("grid", "one exhaustive grid for the TPE figure: matmul_w4a16 int4-g128 at 16x4096x4096, short "
                     "timings, resumed from bench/data; replays offline", 200, (
            _cmd("{py}", "-m", "bench.tuning", "--parts", "grids", "--grid-kernels", "matmul_w4a16",
                 "--grid-shapes", "16x4096x4096", "--compile-workers", "14", "--grid-timeout", "170",
                 "--grid-resume", "bench/data", "--data", "{work}/grids", "--out", "{work}/grid", env=GRID_ENV),
        )),
    ]


def smoke_steps() -> list[Step]:
    """The same steps at CPU sizes: they check the plumbing, the figures mean nothing."""
    db = "{work}/tuned.db"
    tune_common = ["--dtype", "fp16", "--trials", "2", "--timeout", "20", "--db", db, "--json"]
    return [
        Step("env", "environment and calibrate", 120, (
            _cmd("{py}", "-m", "infertune", "env", "--json", stdout="env.json"),
            _cmd("{py}", "-m", "infertune", "calibrate", "--db", db, "--json", stdout="calibrate.json"),
        )),
        Step("gpu-tests", "pytest -m gpu (all skip without a GPU)", 240, (
            _cmd("{py}", "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests/test_timing.py",
                 "tests/test_llama.py", "--junitxml", "{work}/gpu-tests.xml"),
        )),
        Step("kernels", "kernels vs torch.matmul, default configs; A/B: int4 unpacking, matmul TMA, skinny split-K, "
                        "split-K reduction", 240, (
            _cmd("{py}", "-m", "bench.kernels_vs_torch", "--smoke", "--out", "{work}/kernels"),
            _cmd("{py}", "-m", "bench.kernels_vs_torch", "--smoke", "--kernels", "matmul_w4a16", "--m", "1",
                 "--out", "{work}/kernels-int4-bits", env=INT4_BITS_ENV),
            _cmd("{py}", "-m", "bench.kernels_vs_torch", "--smoke", "--kernels", "matmul", "--m", "13", "--config",
                 "TMA=1", "--out", "{work}/kernels-matmul-tma"),
            # K = 64 holds two 32-wide K tiles: a split of 2 is valid there.
            _cmd("{py}", "-m", "bench.kernels_vs_torch", "--smoke", "--m", "1", "--nk", "96x64", "--config",
                 "SPLIT_K=2,BLOCK_K=32", "--out", "{work}/kernels-split-once"),
            # The interpreter's defaults do not split K: both sides run the same launch here.
            _cmd("{py}", "-m", "bench.kernels_vs_torch", "--smoke", "--m", "1", "--out", "{work}/kernels-splitk-kernel",
                 env=SPLITK_KERNEL_ENV),
        )),
        Step("tune", "short TPE tune", 300, (
            _cmd("{py}", "-m", "infertune", "autotune", "matmul", "--shape", "5x32x16", *tune_common,
                 "--out", "{work}/runs/tune-matmul", stdout="tune-matmul.json"),
            _cmd("{py}", "-m", "infertune", "autotune", "matmul_w4a16", "--shape", "1x32x64", "--quant", "int4-g32",
                 *tune_common, "--out", "{work}/runs/tune-w4a16", stdout="tune-matmul_w4a16.json"),
            _cmd("{py}", "-m", "infertune", "db", "export", "--db", db, "--format", "json", "--out", "{work}/tuned"),
        )),
        Step("runtime", "decode / prefill vs transformers (tiny, CPU)", 300, (
            _cmd("{py}", "-m", "bench.device.models", "unpack", "{models}"),
            _cmd("{py}", "-m", "bench.runtime", "--smoke", "--out", "{work}/runtime"),
        )),
        Step("ncu", "ncu (absent or refused without a GPU: recorded)", 120, (
            _cmd("{py}", "-m", "infertune", "profile", "kernel", "matmul", "--shape", "5x32x16", "--dtype", "fp16",
                 "--variants", "torch,default", "--ncu", "--out", "{work}/runs/ncu-matmul", "--json",
                 stdout="ncu-matmul.json"),
        )),
        Step("ncu-w4", "ncu on matmul_w4a16 (absent without a GPU: recorded)", 120, (
            _cmd("{py}", "-m", "infertune", "profile", "kernel", "matmul_w4a16", "--shape", "1x32x64",
                 "--quant", "int4-g32", "--dtype", "fp16", "--variants", "torch,default", "--ncu",
                 "--out", "{work}/runs/ncu-w4a16", "--json", stdout="ncu-matmul_w4a16.json"),
        )),
        Step("warm-start", "a tune warm-started from the short tune's export", 120, (
            _cmd("{py}", "-m", "infertune", "autotune", "matmul", "--shape", "9x32x16", "--warm-start",
                 "{work}/tuned", *tune_common, "--out", "{work}/runs/tune-warm", stdout="tune-warm.json"),
        )),
        Step("confirm", "a model tune confirmed end to end (MiniLM, tiny, CPU)", 300, (
            _cmd("{py}", "-m", "bench.device.models", "unpack", "{models}"),
            _cmd("{py}", "-m", "infertune", "autotune", "layernorm", "--model", "minilm-l6", "--batch", "1",
                 "--prompt-len", "8", "--confirm", "--dtype", "fp16", "--trials", "3", "--timeout", "20", "--db", db,
                 "--json", "--out", "{work}/runs/confirm-minilm", stdout="confirm-minilm.json"),
        )),
        Step("serving", "server under load (smollm2-synth, torch backend, CPU)", 300, (
            _cmd("{py}", "-m", "bench.serving", "--smoke", "--out", "{work}/serving"),
        )),
        # The grid at its smoke shape, then the offline half the GPU step leaves for later.
        Step("grid", "one exhaustive grid (matmul_w4a16 at its smoke shape), then its replays", 300, (
            _cmd("{py}", "-m", "bench.tuning", "--smoke", "--parts", "grids", "--grid-kernels", "matmul_w4a16",
                 "--compile-workers", "14", "--grid-resume", "bench/data", "--data", "{work}/grids",
                 "--out", "{work}/grid", env=GRID_ENV),
            _cmd("{py}", "-m", "bench.tuning", "--smoke", "--parts", "replays", "--grid-kernels", "matmul_w4a16",
                 "--data", "{work}/grids", "--out", "{work}/grid-replays"),
        )),
    ]
