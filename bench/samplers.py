"""Search strategies compared on replays: lfbo (tuner/lfbo.py), TPE and random search.

    python -m bench.samplers                      # recordings in bench/data/ + synthetic replays
    python -m bench.samplers --smoke              # one small synthetic replay, 2 seeds (seconds)
    python -m bench.samplers --replay FILE ...    # these replay files (with the synthetic ones)

Each replay answers every trial from a recording (tuner/replay.py): nothing runs on a GPU.
Recordings: every replay file in bench/data/ (GPU grids written by `python -m bench.tuning`;
none are committed yet), the files given with --replay, and synthetic matmul replays
(tuner/synthetic.py: a roofline-shaped latency landscape over the tile parameters, seeded,
with a third of the configs failing in structured regions: shared memory or registers out of
resources, compile errors, wrong results, timeouts) at the Llama-3-8B shapes of
tuner.synthetic.SHAPES, landscape seed = the shape's position (0, 1, 2); `--no-synthetic`
leaves them out.

Per recording and sampler, `--seeds` searches (seeds 0..N-1, in-memory studies, the heuristic
default first as in every search, no re-timing) of `--trials` trials each (default 150: a
typical `autotune --trials`; at most the valid configs). A trial is a config that ran, failed
ones included: a failure costs a trial on a GPU too. Reported: the trials needed to come
within 1%, 3% and 5% of the recording's best (tuner.replay.trials_to_within), median and
p10-p90 over the seeds, a seed that never got there counting as more than the budget
('>N'); how many seeds got there; and the share of each search's trials that failed.
Summary: per threshold, lfbo's median trials over TPE's, geometric mean over the recordings
(below 1: lfbo needs fewer).

Writes results.json and results.md under bench/results/samplers-<date>/ (or --out).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import optuna

import kernels
from bench.common import geomean, write_results
from profilers.timing import quantile
from tuner.replay import (
    THRESHOLDS,
    Recording,
    ReplayError,
    ReplayEvaluator,
    load,
    trials_to_within,
)
from tuner.samplers import SAMPLERS as KNOWN
from tuner.search import SearchOptions, tune
from tuner.space import Space
from tuner.synthetic import SHAPES, failure_share, matmul_recording

SAMPLERS = ("lfbo", "tpe", "random")
DATA_DIR = Path("bench/data")
DEFAULT_TRIALS = 150
DEFAULT_SEEDS = 10
SMOKE_SHAPES = ((16, 256, 256),)   # 828 valid configs
SMOKE_TRIALS, SMOKE_SEEDS = 40, 2
SMOKE_NOTE = "smoke run (one small replay, 2 seeds, 40 trials: the figures check the script, they mean nothing)"


def synthetic_recordings(shapes) -> list[tuple[str, Any, Recording]]:
    spec = kernels.get("matmul")
    return [(f"synthetic matmul {'x'.join(map(str, shape))} bf16 (landscape seed {i})", spec,
             matmul_recording(spec, shape, seed=i)) for i, shape in enumerate(shapes)]


def file_recordings(paths: list[Path]) -> list[tuple[str, Any, Recording]]:
    """Raises ReplayError for a file that cannot be read."""
    out = []
    for path in paths:
        spec, recording = load(path, kernels.get)
        out.append((str(path), spec, recording))
    return out


def run_search(spec, recording: Recording, sampler: str, seed: int, trials: int) -> dict[str, Any]:
    """One search on the replay: its trials-to-within per threshold and its failed trials."""
    values: list[float | None] = []
    failed = 0

    def collect(p) -> None:
        nonlocal failed
        # An early-stopped config's replayed time is its time (it was not the best anyway).
        values.append(p.outcome.timing.median_ms if p.outcome.timing and p.outcome.kind is None else None)
        failed += p.outcome.status == "failed"

    tune(spec, recording.problem, recording.device, ReplayEvaluator(recording), storage=None,
         options=SearchOptions(trials=trials, sampler=sampler, seed=seed, retime_top=0), on_trial=collect)
    reached = trials_to_within(values, recording.best_ms)
    return {"sampler": sampler, "seed": seed, "trials": len(values), "failed": failed,
            "to_within": {f"{t:.0%}": reached[t] for t in THRESHOLDS}}


def spread(counts: list[int | None], budget: int) -> dict[str, Any]:
    """Median, p10 and p90 over seeds of the trials needed; a seed that never got there is
    infinitely many (a quantile that lands on one is None: more than the budget)."""
    values = [math.inf if c is None else float(c) for c in counts]

    def q(p: float) -> float | None:
        ordered = sorted(values)
        pos = p * (len(ordered) - 1)
        if math.isinf(ordered[math.ceil(pos)]):
            return None
        return quantile(values, p)

    return {"median": q(0.5), "p10": q(0.1), "p90": q(0.9), "reached": sum(c is not None for c in counts),
            "seeds": len(counts), "budget": budget}


def compare_on(name: str, spec, recording: Recording, samplers, seeds: list[int], trials: int) -> dict[str, Any]:
    if recording.best_ms is None:
        return {"name": name, "error": "no passing config in the recording"}
    valid = len(Space(spec, recording.problem, recording.device))
    budget = min(trials, valid)
    runs, per_sampler = [], {}
    started = time.perf_counter()
    for sampler in samplers:
        t0 = time.perf_counter()
        mine = [run_search(spec, recording, sampler, seed, budget) for seed in seeds]
        runs += mine
        per_sampler[sampler] = {
            "to_within": {f"{t:.0%}": spread([r["to_within"][f"{t:.0%}"] for r in mine], budget) for t in THRESHOLDS},
            "failed_share": statistics.median(r["failed"] / r["trials"] for r in mine if r["trials"]),
            "wall_s": time.perf_counter() - t0,
        }
        m = per_sampler[sampler]["to_within"]["3%"]
        print(f"  {sampler}: to 3% median {fmt(m['median'], budget)} ({m['reached']}/{m['seeds']} seeds), "
              f"failed {per_sampler[sampler]['failed_share']:.0%} of trials", flush=True)
    return {"name": name, "kernel": spec.name, "problem": spec.shape_key(recording.problem),
            "device": recording.device.label, "valid_configs": valid, "recorded": len(recording.outcomes),
            "failing_share": failure_share(recording), "best_ms": recording.best_ms, "budget": budget,
            "samplers": per_sampler, "runs": runs, "wall_s": time.perf_counter() - started}


def summary(rows: list[dict[str, Any]], samplers) -> dict[str, Any]:
    """Per threshold and sampler other than TPE: the geometric mean over recordings of its
    median trials over TPE's (a median beyond the budget counts as the budget: the ratio is
    then a bound)."""
    out: dict[str, Any] = {}
    if "tpe" not in samplers:
        return out
    for s in samplers:
        if s == "tpe":
            continue
        out[s] = {}
        for t in THRESHOLDS:
            key = f"{t:.0%}"
            ratios = []
            for r in rows:
                if "error" in r:
                    continue
                mine, tpe = r["samplers"][s]["to_within"][key], r["samplers"]["tpe"]["to_within"][key]
                ratios.append((mine["median"] or r["budget"]) / (tpe["median"] or r["budget"]))
            out[s][key] = geomean(ratios)
    return out


def fmt(x: float | None, budget: int) -> str:
    return f">{budget}" if x is None else f"{x:g}"


def markdown(data: dict[str, Any]) -> str:
    lines = ["# Samplers on replays: lfbo vs TPE vs random", "",
             f"Date {data['date'][:10]}; seeds {data['seeds'][0]}..{data['seeds'][-1]} per sampler; "
             f"budget {data['trials']} trials per search (at most the valid configs); optuna {data['optuna']}."
             + (f" **{SMOKE_NOTE}.**" if data["smoke"] else ""), "",
             ("Trials to come within 1%, 3% and 5% of the recording's best: median (p10-p90) over the seeds, "
              "'>N' where the seeds at that quantile never got there within the budget N; reached: seeds that "
              "got within 3%; failed: median share of a search's trials that failed (compile, resources, "
              "timeout, wrong result). Every trial that ran counts, failed ones included."), ""]
    for r in data["recordings"]:
        if "error" in r:
            lines += [f"## {r['name']}", "", r["error"], ""]
            continue
        lines += [f"## {r['name']}", "",
                  (f"{r['kernel']} {r['problem'].replace('|', ' ')} on {r['device']}: {r['valid_configs']} valid "
                   f"configs, {r['failing_share']:.0%} of them failing; best {r['best_ms']:.4g} ms; "
                   f"budget {r['budget']}."), "",
                  "| sampler | to 1% | to 3% | to 5% | reached 3% | failed |", "|---|---:|---:|---:|---:|---:|"]
        for s, v in r["samplers"].items():
            cells = []
            for t in THRESHOLDS:
                x = v["to_within"][f"{t:.0%}"]
                cells.append(f"{fmt(x['median'], r['budget'])} ({fmt(x['p10'], r['budget'])}-"
                             f"{fmt(x['p90'], r['budget'])})")
            reach = v["to_within"]["3%"]
            lines.append(f"| {s} | {' | '.join(cells)} | {reach['reached']}/{reach['seeds']} | "
                         f"{v['failed_share']:.0%} |")
        lines.append("")
    if data["summary"]:
        lines += ["## Summary", "", ("Geometric mean over the recordings of a sampler's median trials over "
                                    "TPE's (below 1: fewer trials than TPE; a median past the budget counts as "
                                    "the budget)."), "",
                  "| sampler | to 1% | to 3% | to 5% |", "|---|---:|---:|---:|"]
        for s, v in data["summary"].items():
            lines.append(f"| {s} / tpe | " + " | ".join("-" if v[k] is None else f"{v[k]:.2f}" for k in v) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.samplers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_NOTE)
    parser.add_argument("--seeds", type=int, default=None, help=f"seeds per sampler (default {DEFAULT_SEEDS})")
    parser.add_argument("--trials", type=int, default=None, help=f"budget per search (default {DEFAULT_TRIALS})")
    parser.add_argument("--replay", type=Path, nargs="+", default=[], help="replay files to compare on")
    parser.add_argument("--samplers", default=",".join(SAMPLERS), help=f"comma-separated (default {','.join(SAMPLERS)})")
    parser.add_argument("--no-synthetic", action="store_true", help="leave the synthetic replays out")
    parser.add_argument("--out", type=Path, default=None, help="default bench/results/samplers-<date>/")
    args = parser.parse_args(argv)
    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    bad = [s for s in samplers if s not in KNOWN]
    if bad or not samplers:
        print(f"unknown sampler {bad[0] if bad else '(none)'}; known samplers: {', '.join(KNOWN)}", file=sys.stderr)
        return 2
    for name, value in (("--seeds", args.seeds), ("--trials", args.trials)):
        if value is not None and value < 1:
            print(f"{name} must be at least 1, got {value}", file=sys.stderr)
            return 2
    seeds = list(range(args.seeds or (SMOKE_SEEDS if args.smoke else DEFAULT_SEEDS)))
    trials = args.trials or (SMOKE_TRIALS if args.smoke else DEFAULT_TRIALS)
    files = list(args.replay) + ([] if args.smoke else sorted(DATA_DIR.glob("*.json")))
    try:
        recordings = file_recordings(files)
    except ReplayError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if not args.no_synthetic:
        recordings += synthetic_recordings(SMOKE_SHAPES if args.smoke else SHAPES)
    if not recordings:
        print("no recording to compare on (--no-synthetic and no replay file)", file=sys.stderr)
        return 2
    now = dt.datetime.now(dt.timezone.utc)
    out = args.out or Path("bench/results") / f"samplers-{now:%Y-%m-%d}"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, spec, recording in recordings:
        print(f"{name}:", flush=True)
        rows.append(compare_on(name, spec, recording, samplers, seeds, trials))
    data = {"benchmark": "samplers", "date": now.isoformat(timespec="seconds"), "smoke": args.smoke,
            "samplers": samplers, "seeds": seeds, "trials": trials, "optuna": optuna.__version__,
            "recordings": rows, "summary": summary(rows, samplers)}
    write_results(out, data, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
