"""Bench the matmul kernels against torch.matmul at LLM shapes.

    python -m bench.kernels_vs_torch            # on a GPU: the full table, bf16
    python -m bench.kernels_vs_torch --smoke    # anywhere: tiny shapes (CPU: interpreter)

Untuned (heuristic) configs: the tuner issue adds tuned ones. Writes results.json and
results.md under bench/results/<device>-<date>/ (or --out). Every row names its baseline:
torch.matmul in the same dtype on float weights of the same shape.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import random
import sys
from pathlib import Path

import kernels
from bench.common import slug
from kernels.errors import InvalidConfig
from kernels.spec import Config
from infertune.benchmark import INTERPRETER_NOTE, BenchResult, bench
from infertune.environment import collect_environment
from infertune.errors import KernelFailed
from infertune.jsonio import dumps
from infertune.settings import Settings

KERNELS = ("matmul", "matmul_w8a16", "matmul_w4a16")
M_VALUES = (1, 16, 128, 2048)
NK_VALUES = ((4096, 4096), (14336, 4096), (4096, 14336))
SMOKE_M, SMOKE_NK = (1, 13), ((96, 64),)


def run(kernel_names, m_values, nk_values, dtype, seed, failures: list[dict] | None = None,
        config: Config | None = None) -> list[BenchResult]:
    """Bench every case; a case whose kernel raises goes to `failures` (its one line) and the rest run.
    config: parameters set over each case's heuristic default (e.g. TMA=1), else the default."""
    results = []
    for name in kernel_names:
        spec = kernels.get(name)
        for n, k in nk_values:
            for m in m_values:
                problem = spec.problem({"M": m, "N": n, "K": k}, dtype)
                try:
                    r = bench(spec, problem, config, seed=seed, settings=Settings.from_env())
                except (KernelFailed, InvalidConfig) as exc:
                    print(f"{name:14s} M={m:<5d} N={n:<6d} K={k:<6d} FAILED {exc}", flush=True)
                    if failures is not None:
                        failures.append({"kernel": name, "M": m, "N": n, "K": k, "error": str(exc)})
                    continue
                results.append(r)
                print(f"{name:14s} M={m:<5d} N={n:<6d} K={k:<6d} triton {r.timing.median_ms:9.4f} ms  "
                      f"torch {r.baseline_timing.median_ms:9.4f} ms  x{r.speedup:5.2f}  "
                      f"{'ok' if r.comparison.ok else 'WRONG'}", flush=True)
    return results


def markdown(results: list[BenchResult], env: dict, when: str, failures: list[dict] = (),
             config_text: str | None = None) -> str:
    dev = env["device"]
    lines = [
        f"# matmul kernels vs torch.matmul — {dev['label']}",
        "",
        f"Date {when}; driver {env['driver']}; torch {env['torch']}; triton {env['triton']}; CUDA {env['cuda_runtime']}.",
        "Latency is the median of per-repetition times (p10-p90 in brackets), CUDA events, L2 flushed before every "
        "repetition. Configs are the untuned heuristic defaults"
        + (f", with {config_text} set over them" if config_text else "") + ". speedup = torch median / triton median; the "
        "baseline is torch.matmul in the same dtype on float weights of the same shape.",
        "",
    ]
    if any(r.interpreter for r in results):
        lines += [f"**{INTERPRETER_NOTE}.**", ""]
    lines += ["| kernel | M | N | K | quant | triton ms (p10-p90) | torch ms (p10-p90) | speedup | TFLOP/s | GB/s | correct |",
              "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        t, b = r.timing, r.baseline_timing
        quant = dict(r.problem.options).get("quant", "int8-channel" if r.kernel == "matmul_w8a16" else "-")
        lines.append(
            f"| {r.kernel} | {r.problem['M']} | {r.problem['N']} | {r.problem['K']} | {quant} | "
            f"{t.median_ms:.4f} ({t.p10_ms:.4f}-{t.p90_ms:.4f}) | {b.median_ms:.4f} ({b.p10_ms:.4f}-{b.p90_ms:.4f}) | "
            f"{r.speedup:.2f}x | {r.tflops:.1f} | {r.gbps:.0f} | {'yes' if r.comparison.ok else 'NO'} |")
    if failures:
        lines += ["", f"**{len(failures)} case(s) failed to run:**", ""]
        lines += [f"- {f['kernel']} M={f['M']} N={f['N']} K={f['K']}: {f['error']}" for f in failures]
    by_kernel = {}
    for r in results:
        by_kernel.setdefault(r.kernel, []).append(r.speedup)
    lines += ["", "Geometric-mean speedup over torch.matmul per kernel:", ""]
    for name, speedups in by_kernel.items():
        gm = math.exp(sum(math.log(s) for s in speedups) / len(speedups))
        lines.append(f"- {name}: {gm:.2f}x over {len(speedups)} shapes")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes (checks the script; figures mean nothing)")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--kernels", default=",".join(KERNELS))
    parser.add_argument("--config", default=None,
                        help="parameters set over every case's default, e.g. TMA=1 (the rest from the heuristic)")
    parser.add_argument("--m", default=None, help=f"comma-separated M values (default {','.join(map(str, M_VALUES))})")
    parser.add_argument("--nk", default=None, help="comma-separated NxK weight shapes (default "
                        + ",".join(f"{n}x{k}" for n, k in NK_VALUES) + ")")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default bench/results/<device>-<date>)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    env = collect_environment()
    if env.device.kind != "cuda" and not args.smoke:
        print("this benchmark's figures need a CUDA GPU; on this machine run it with --smoke", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    m_values, nk_values = (SMOKE_M, SMOKE_NK) if args.smoke else (M_VALUES, NK_VALUES)
    if args.m:
        try:
            m_values = tuple(int(v) for v in args.m.split(","))
        except ValueError:
            print(f"--m takes comma-separated integers; got {args.m!r}", file=sys.stderr)
            return 2
    if args.nk:
        try:
            nk_values = tuple(tuple(int(v) for v in item.lower().split("x", 1)) for item in args.nk.split(","))
            if any(len(nk) != 2 or min(nk) < 1 for nk in nk_values):
                raise ValueError
        except ValueError:
            print(f"--nk takes comma-separated NxK pairs of positive integers, e.g. 4096x4096; got {args.nk!r}",
                  file=sys.stderr)
            return 2
    try:
        config = Config.parse(args.config) if args.config else None
    except InvalidConfig as exc:
        print(f"--config: {exc}", file=sys.stderr)
        return 2
    failures: list[dict] = []
    results = run(args.kernels.split(","), m_values, nk_values, args.dtype, seed, failures, config)
    now = dt.datetime.now(dt.timezone.utc)
    out = args.out or Path("bench/results") / f"kernels-vs-torch-{slug(env.device.name)}-{now:%Y-%m-%d}"
    out.mkdir(parents=True, exist_ok=True)
    env_dict = env.to_dict()
    (out / "results.json").write_text(dumps(
        {"benchmark": "kernels_vs_torch", "date": now.isoformat(timespec="seconds"), "seed": seed,
         "config": str(config) if config else None,
         "environment": env_dict, "results": [r.to_dict() for r in results], "failures": failures}))
    (out / "results.md").write_text(markdown(results, env_dict, now.strftime("%Y-%m-%d"), failures,
                                             str(config) if config else None))
    print(f"wrote {out / 'results.md'} and {out / 'results.json'}")
    if failures:
        print(f"{len(failures)} of {len(failures) + len(results)} cases failed to run", file=sys.stderr)
    return 0 if results and not failures and all(r.comparison.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
