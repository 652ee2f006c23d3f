"""What one K step of a kernel costs on an H100 (sm_90), read from its SASS, without a GPU.

    .venv/bin/python -m tests.sass_census matmul_w4a16 1x4096x4096 --quant int4-g128
    .venv/bin/python -m tests.sass_census matmul 2048x4096x4096 --config BLOCK_M=128,BLOCK_N=256,...

Compiles the spec's launches for the problem (its heuristic default, or --config) as
`tests/sm90_compile.py` does, and prints per launch the registers, stack, shared memory and
the opcodes inside its loops, most frequent first: sub-word loads, I2F, spills or a long loop
show before any GPU time is spent (the first H200 run's int4 kernel had one LDG.E.U8, one I2F
and one STS.U16 per weight). A development tool, like its neighbour; nothing imports it.
"""

from __future__ import annotations

import argparse
import sys

import kernels
from kernels.spec import Config

from .fake_devices import H100
from .sm90_compile import Job, Unavailable, compile_jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sass_census", description=__doc__.splitlines()[0])
    parser.add_argument("kernel")
    parser.add_argument("shape", help="the spec's dims in order, e.g. 1x4096x4096")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--quant", default=None, help="the quant option, for the quantized kernels")
    parser.add_argument("--config", default=None, help="a config (Config text; missing parameters from the heuristic); default: the heuristic's")
    parser.add_argument("--top", type=int, default=25, help="opcodes to print per launch")
    args = parser.parse_args(argv)
    try:
        spec = kernels.get(args.kernel)
        values = [int(v) for v in args.shape.lower().split("x")]
        if len(values) != len(spec.dims):
            raise ValueError(f"{args.kernel} has dims {'x'.join(spec.dims)}; got {args.shape!r}")
        problem = spec.problem(dict(zip(spec.dims, values)), args.dtype, {"quant": args.quant} if args.quant else {})
        # A partial config is completed from the heuristic and checked against the constraints.
        config = spec.complete(Config.parse(args.config), problem, H100) if args.config else \
            spec.heuristic(problem, H100)
    except (KeyError, ValueError) as exc:  # UnknownKernel, InvalidProblem, InvalidConfig are ValueErrors
        print(f"sass_census: {exc}", file=sys.stderr)
        return 2
    job = Job(spec.name, dict(problem.dims), problem.dtype, dict(problem.options), str(config), "census")
    try:
        (result,) = compile_jobs([job], timeout=600)
    except Unavailable as exc:
        print(f"sass_census: cannot compile for sm_90 here: {exc}", file=sys.stderr)
        return 2
    if result.error:
        print(f"sass_census: the launcher failed: {result.error}", file=sys.stderr)
        return 1
    print(f"{job.key}")
    for launch in result.launches:
        print(f"\n{launch.describe()}")
        if launch.error:
            print(f"  does not compile: {launch.error}")
            continue
        in_loops = sum(launch.loop_opcodes.values())
        print(f"  {launch.registers} registers, {launch.stack} bytes of stack, {launch.shared} bytes of shared "
              f"memory; {in_loops} instructions inside loops, {launch.loop_spills} of them spills")
        for opcode, n in sorted(launch.loop_opcodes.items(), key=lambda kv: (-kv[1], kv[0]))[:args.top]:
            print(f"  {n:6d}  {opcode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
