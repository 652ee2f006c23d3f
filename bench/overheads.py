"""Fixed costs the runtime pays per launch: a tuned-database answer and an NVTX range.

    python -m bench.overheads [--out DIR]

- database lookup: the first lookup of a problem (SQL, then memoized) and a repeated one
  (`DatabaseSource`'s memo: a few dict hits; the issue's goal is under 1 µs);
- LaunchConfigs: what the runtime's kernels ask per launch after `prepare` (one dict hit);
- NVTX: one range enter/exit through `profilers.nvtx` and `kernels.nvtx_range` with no
  profiler attached (goal: about 1 µs), against an empty with-block.

Medians with p10/p90 over 31 batches of calls; the figures are host CPU time, so they hold
on a GPU machine's host too (measured on whatever machine runs this: it is named).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

BATCHES = 31


def _per_call(fn, calls: int) -> dict[str, float]:
    per = []
    for _ in range(BATCHES):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        per.append((time.perf_counter() - start) / calls * 1e9)
    per.sort()
    return {"median_ns": per[len(per) // 2], "p10_ns": per[len(per) // 10], "p90_ns": per[(9 * len(per)) // 10],
            "calls": calls * BATCHES}


def measure() -> dict[str, dict[str, float]]:
    import kernels
    from kernels.config_source import HeuristicSource
    from kernels.device import current_device
    from profilers import nvtx
    from runtime.configs import LaunchConfigs
    from tuner.database import DatabaseSource, open_database
    from tuner.record import TuningRecord  # noqa: F401  (the schema the database holds)

    spec = kernels.get("matmul")
    device = current_device()
    problem = spec.problem({"M": 16, "N": 4096, "K": 4096}, "fp16")
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        with open_database(str(Path(tmp) / "t.db"), create=True) as db:
            first = []
            for i in range(BATCHES):
                source = DatabaseSource(db)
                p = spec.problem({"M": 16 + i, "N": 4096, "K": 4096}, "fp16")
                start = time.perf_counter()
                source.resolve(spec, p, device)
                first.append((time.perf_counter() - start) * 1e9)
            first.sort()
            out["database first lookup"] = {"median_ns": first[len(first) // 2], "p10_ns": first[len(first) // 10],
                                            "p90_ns": first[(9 * len(first)) // 10], "calls": BATCHES}
            source = DatabaseSource(db)
            source.resolve(spec, problem, device)
            out["database repeated lookup (memo)"] = _per_call(lambda: source.resolve(spec, problem, device), 2000)
    table = LaunchConfigs(HeuristicSource(), device)
    table.prepare([("matmul", problem)])
    out["runtime LaunchConfigs answer"] = _per_call(lambda: table.resolve(spec, problem, device), 2000)
    nvtx.reset()  # kernels.nvtx_range resolves its domain once, on its first call (outside the timing)
    _enter_exit(kernels.nvtx_range("matmul", "kernel", "cfg"))
    out["NVTX range (profilers.nvtx), no profiler"] = _per_call(lambda: _enter_exit(nvtx.annotate("x", "trial")), 2000)
    out["NVTX range (kernels.nvtx_range), no profiler"] = _per_call(
        lambda: _enter_exit(kernels.nvtx_range("matmul", "kernel", "cfg")), 2000)
    out["empty with-block (reference)"] = _per_call(lambda: _enter_exit(nvtx.NO_RANGE), 2000)
    return out


def _enter_exit(ctx) -> None:
    with ctx:
        pass


def markdown(figures: dict[str, dict[str, float]], env: dict, when: str) -> str:
    lines = [f"# Per-launch overheads — {env['device']['label']} host", "",
             f"Date {when}; torch {env['torch']}; python {env['python']}. Host CPU time per call: median "
             "(p10-p90) over 31 batches.", "", "| what | median | p10-p90 | goal |", "|---|---:|---:|---|"]
    goals = {"database repeated lookup (memo)": 1000.0, "NVTX range (profilers.nvtx), no profiler": 1000.0,
             "NVTX range (kernels.nvtx_range), no profiler": 1000.0}
    for name, f in figures.items():
        goal = goals.get(name)
        verdict = "" if goal is None else (f"< {goal / 1000:g} µs: " + ("met" if f["median_ns"] < goal else "NOT met"))
        lines.append(f"| {name} | {f['median_ns']:.0f} ns | {f['p10_ns']:.0f}-{f['p90_ns']:.0f} ns | {verdict} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from infertune.environment import collect_environment

    parser = argparse.ArgumentParser(prog="python -m bench.overheads", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    env = collect_environment().to_dict()
    now = dt.datetime.now(dt.timezone.utc)
    figures = measure()
    out = args.out or Path("bench/results") / f"overheads-{env['device']['name'].replace(' ', '-')}-{now:%Y-%m-%d}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"environment": env, "date": now.isoformat(timespec="seconds"),
                                                  "figures": figures}, indent=2, default=str) + "\n")
    (out / "results.md").write_text(markdown(figures, env, f"{now:%Y-%m-%d}"))
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
