"""The tuner's figures in one command: exhaustive grids, search efficiency on their replays,
tuned vs default vs torch, and the tuning cost per trial.

    python -m bench.tuning             # on a GPU: everything below, bf16
    python -m bench.tuning --smoke     # anywhere: tiny shapes and budgets (CPU: interpreter)

1. Grids. `matmul` (bf16) and `matmul_w4a16` (bf16, int4-g128) at three Llama-3-8B linear
   layers (GRID_SHAPES): every valid config measured once (grid sampler, in-memory study, no
   early stop), written as replay files to bench/data/<kernel>-<MxNxK>-<dtype>[-<quant>]-<device>.json
   (what `infertune autotune --sampler grid --record FILE` writes).
2. Search efficiency on those replays: TPE vs random, several seeds, trials needed to come
   within 1/3/5% of the exhaustive best (tuner.replay.compare), also as a fraction of the
   valid configs. Goal: TPE within 3% in at most 10% of the valid configs (median over
   shapes) and ahead of random; reported as met / not met, never asserted.
3. Tuned vs default vs torch: matmul at the kernel benchmark's shapes (bench.kernels_vs_torch:
   M in 1, 16, 128, 2048 x (N, K) in (4096, 4096), (14336, 4096), (4096, 14336)), one TPE
   search of `--trials` configs each (fresh in-memory study: the heuristic default is its
   first trial; the torch baseline is timed in the same worker). Goal: geometric mean of
   tuned vs torch >= 1.0x, no shape below 0.85x.
4. Tuning cost: wall time of each search (worker start, compile, check, time, re-timing of
   the best) divided by the trials it ran, median over the searches of section 3. Goal: < 1.5 s.

Choosing what runs:
  --parts grids,replays,searches   a subset (default all): `grids` records section 1, `replays`
                                   is section 2, `searches` sections 3 and 4. Without `grids`
                                   the recordings are read from --data (a file of another
                                   device is used when this one has none: see --grid-device);
                                   `--skip-grids` means the parts without `grids`. A section
                                   not run is null in results.json and "Not run" in results.md.
  --grid-kernels matmul_w4a16      a subset of the grids' kernels (also under --smoke)
  --grid-shapes 16x4096x4096       a subset of the grids' shapes (under --smoke: instead of
                                   the smoke shapes)
  --compile-workers N              the compile pool's size (default min(8, CPUs) on a GPU;
                                   always 0 under the interpreter, which compiles nothing)
Only `grids` and `searches` need a CUDA GPU: `--parts replays` runs on any machine.

Cost on a GPU: the grids dominate. The M=16 shapes keep about 1,200 valid configs each on an
H100, the M=128 prefill shape about 14,000; at the default timing budget (25 ms warm-up +
100 ms of repetitions per config) all six grids take hours. `INFERTUNE_REP_MS` /
`INFERTUNE_WARMUP_MS` (infertune/settings.py) shorten each measurement. One grid in a short
GPU session, the replays later on any machine:

    INFERTUNE_REP_MS=10 INFERTUNE_WARMUP_MS=3 python -m bench.tuning --parts grids \
        --grid-kernels matmul_w4a16 --grid-shapes 16x4096x4096 --compile-workers 14 --data DIR --out DIR
    python -m bench.tuning --parts replays --grid-kernels matmul_w4a16 --grid-shapes 16x4096x4096 --data DIR

A grid that --grid-timeout cuts short keeps a random subset. `--grid-resume bench/data` (the
GPU kit's grid step does this) finds the same grid's partial recording there, of the same
GPU model, and measures only the configs it lacks; the file written to --data holds both
runs' configs, and `python -m bench.device ingest` puts it back in bench/data. So a grid
too long for one window completes over several.

Replays need no GPU (`infertune tuner compare --replay FILE --trials N` runs anywhere) but
TPE's cost grows with the trials: each replay run gets `--replay-budget` (default 12%, just
above the 10% goal) of the valid configs, about 1,700 trials on the prefill shape, roughly a
minute per seed.

Writes results.json and results.md under bench/results/tuning-<device>-<date>/ (or --out).
Nothing is written to the tuned config database or to a stored study.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import kernels
from bench.common import geomean, slug, write_results
from infertune.autotune import autotune_problem
from infertune.benchmark import INTERPRETER_NOTE
from infertune.environment import collect_environment
from infertune.settings import SettingError, Settings
from tuner.replay import THRESHOLDS, Recording, ReplayError, compare, load
from tuner.search import SearchOptions, TuneResult
from tuner.space import Space

from .kernels_vs_torch import M_VALUES, NK_VALUES

# (M, N, K) of Llama-3-8B linear layers (hidden 4096, MLP 14336; N = output features, K = input):
GRID_SHAPES = (
    (16, 4096, 4096),     # decode, batch 16: attention q/o projection
    (16, 14336, 4096),    # decode, batch 16: MLP gate/up projection
    (128, 4096, 14336),   # prefill chunk of 128 tokens: MLP down projection
)
GRID_KERNELS = (("matmul", {}), ("matmul_w4a16", {"quant": "int4-g128"}))
# Under the interpreter bf16 tl.dot is wrong (the kernels upcast), fp16 is fine; shapes with a
# few dozen valid configs so that the grids run in seconds.
SMOKE_GRID_SHAPES = {"matmul": ((5, 32, 16),), "matmul_w4a16": ((5, 16, 32),)}
SMOKE_GRID_KERNELS = (("matmul", {}), ("matmul_w4a16", {"quant": "int4-g32"}))
SMOKE_SEARCH_SHAPES = ((5, 32, 16), (5, 16, 32))
SAMPLERS = ("tpe", "random")
SMOKE_NOTE = "; smoke run (tiny shapes and budgets: the figures check the script, they mean nothing)"
GOAL_FRACTION = 0.10      # TPE within 3% of the best in at most this fraction of the valid configs
GOAL_THRESHOLD = 0.03
GOAL_TUNED_VS_TORCH = 1.0
GOAL_TUNED_VS_TORCH_WORST = 0.85  # and no shape below this
GOAL_COST_S = 1.5
DATA_DIR = Path("bench/data")
PARTS = ("grids", "replays", "searches")  # searches: sections 3 and 4


class UsageError(Exception):
    """Bad input: main() prints its one line and exits 2."""


def shape_text(shape: tuple[int, int, int]) -> str:
    return "x".join(str(v) for v in shape)


def parse_shape(text: str) -> tuple[int, int, int]:
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"a shape is MxNxK, e.g. 16x4096x4096; got {text!r}")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def recording_stem(kernel: str, shape, dtype: str, options: dict) -> str:
    quant = f"-{options['quant']}" if options.get("quant") else ""
    return f"{kernel}-{shape_text(shape)}-{dtype}{quant}"


def recording_name(kernel: str, shape, dtype: str, options: dict, device_slug: str) -> str:
    return f"{recording_stem(kernel, shape, dtype, options)}-{device_slug}.json"


def find_recording(data_dir: Path, stem: str, device_slug: str, grid_device: str | None) -> Path:
    """The recording to reuse: --grid-device's if given, else this device's, else the only one
    of another device (a GPU session's grid replayed on a CPU). UsageError when none or several."""
    path = data_dir / f"{stem}-{grid_device or device_slug}.json"
    if path.exists() or grid_device:
        if not path.exists():
            raise UsageError(f"no recording {path}; record it with --parts grids first")
        return path
    others = sorted(data_dir.glob(f"{stem}-*.json"))
    if len(others) > 1:
        slugs = ", ".join(o.name[len(stem) + 1:-len(".json")] for o in others)
        raise UsageError(f"several recordings of {stem} in {data_dir} (devices {slugs}); pick one with --grid-device")
    if not others:
        raise UsageError(f"no recording {path} (nor of another device); record it with --parts grids first")
    return others[0]


def compile_workers_for(device, requested: int | None = None) -> tuple[int, str]:
    """`requested` (--compile-workers), else min(8, CPUs), on a GPU; 0 under the interpreter
    whatever was asked (it compiles nothing); 0 when SearchOptions has no pool yet."""
    ignored = "" if requested is None else f"; --compile-workers {requested} ignored"
    if "compile_workers" not in {f.name for f in dataclasses.fields(SearchOptions)}:
        return 0, f"off (this tuner has no compile pool{ignored})"
    if device.interpreter or device.kind != "cuda":
        return 0, f"off (the Triton interpreter compiles nothing{ignored})"
    if requested is None:
        n = min(8, os.cpu_count() or 1)
        return n, f"on, {n} compile workers"
    return requested, f"on, {requested} compile workers (--compile-workers)" if requested else "off (--compile-workers 0)"


def search_options(**kwargs) -> SearchOptions:
    names = {f.name for f in dataclasses.fields(SearchOptions)}
    return SearchOptions(**{k: v for k, v in kwargs.items() if k in names})


def timing_stats(t) -> dict[str, float] | None:
    return None if t is None else {"median_ms": t.median_ms, "p10_ms": t.p10_ms, "p90_ms": t.p90_ms}


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# -- 1. grids -------------------------------------------------------------------------------
def check_holds(path: Path, spec, recording: Recording, problem) -> None:
    """UsageError when the recording read from `path` is of another problem (a renamed file)."""
    if spec.shape_key(recording.problem) != spec.shape_key(problem):
        raise UsageError(f"{path} holds {spec.shape_key(recording.problem)}, not {spec.shape_key(problem)}")


def prior_recording(resume_dir: Path, name: str, shape, dtype: str, options: dict, device_slug: str, spec,
                    problem, device) -> tuple[Path, Recording] | None:
    """The partial recording of this grid in `resume_dir` (same name: same problem, same
    device slug), checked to be of this problem and this GPU model, or None when there is
    none. UsageError (or ReplayError for a malformed file) otherwise."""
    path = resume_dir / recording_name(name, shape, dtype, options, device_slug)
    if not path.exists():
        return None
    _, prior = load(path, kernels.get)
    check_holds(path, spec, prior, problem)
    if (prior.device.name, prior.device.capability) != (device.name, device.capability):
        raise UsageError(f"{path} was recorded on {prior.device.label}, not on {device.label}: a grid is "
                         "completed only on the GPU model that began it")
    return path, prior


def run_grids(grid_kernels, grid_shapes, dtype, device, settings, data_dir: Path, device_slug: str, *, seed: int,
              skip: bool, compile_workers: int, trial_timeout_s: float,
              grid_device: str | None = None, grid_timeout_s: float | None = None,
              resume_dir: Path | None = None) -> list[dict[str, Any]]:
    """Record each grid (or, with `skip`, find its recording in data_dir): one row each.
    resume_dir: where an earlier, partial recording of a grid may be (same file name); its
    configs are kept and not measured again, and the file written holds both runs'.
    UsageError when a recording to reuse is missing or holds another problem."""
    rows = []
    for name, options in grid_kernels:
        spec = kernels.get(name)
        for shape in grid_shapes[name] if isinstance(grid_shapes, dict) else grid_shapes:
            problem = spec.problem(dict(zip("MNK", shape)), dtype, dict(options))
            stem = recording_stem(name, shape, dtype, options)
            path = find_recording(data_dir, stem, device_slug, grid_device) if skip else \
                data_dir / recording_name(name, shape, dtype, options, device_slug)
            row: dict[str, Any] = {"kernel": name, "shape": list(shape), "dtype": dtype, "options": dict(options),
                                   "file": str(path), "reused": skip}
            if not skip:
                space = Space(spec, problem, device)
                valid = len(space)
                found = prior_recording(resume_dir, name, shape, dtype, options, device_slug, spec, problem,
                                        device) if resume_dir is not None else None
                prior = found[1] if found else None
                done = frozenset(c for c in space.valid_configs if prior and c in prior.outcomes)
                if found:
                    row.update(resumed_from=str(found[0]), prior_recorded=len(done))
                print(f"grid {name} {shape_text(shape)} {dtype} {options or ''}: {valid} valid configs"
                      + (f", {len(done)} recorded already ({found[0]})" if found else ""), flush=True)
                started = time.perf_counter()
                if len(done) == valid:  # complete already: copied, nothing measured
                    prior.save(path)
                    row.update(wall_s=0.0, trials_run=0, per_trial_s=None)
                else:
                    result, _ = autotune_problem(
                        spec, problem, device, storage=None, trial_timeout_s=trial_timeout_s, settings=settings,
                        # A timeout ends the grid early but normally: what it measured is saved. The
                        # grid's order is shuffled by the seed, so a partial grid is a random subset,
                        # and a later run with --grid-resume measures the rest.
                        options=search_options(trials=max(spec.space_size, valid), sampler="grid", seed=seed,
                                               retime_top=0, compile_workers=compile_workers,
                                               timeout_s=grid_timeout_s, skip_configs=done),
                        record_to=str(path), record_prior=prior)
                    if result.interrupted:
                        raise KeyboardInterrupt
                    wall = time.perf_counter() - started
                    row.update(wall_s=wall, trials_run=result.trials_run,
                               per_trial_s=wall / result.trials_run if result.trials_run else None)
            _, recording = load(path, kernels.get)
            if skip:
                check_holds(path, spec, recording, problem)
            row.update(describe_recording(spec, recording))
            rows.append(row)
            best = row["best_ms"]
            print(f"  {row['recorded']} recorded, {row['passing']} passing, best "
                  f"{'-' if best is None else f'{best:.4g} ms'}; {path}", flush=True)
    return rows


def describe_recording(spec, recording: Recording) -> dict[str, Any]:
    passing = {c: o for c, o in recording.outcomes.items() if o.ok and o.timing}
    failures: dict[str, int] = {}
    for o in recording.outcomes.values():
        if not o.ok:
            failures[o.kind or o.status] = failures.get(o.kind or o.status, 0) + 1
    best_config = min(passing, key=lambda c: passing[c].timing.median_ms) if passing else None
    default_outcome = recording.outcomes.get(spec.heuristic(recording.problem, recording.device))
    base = recording.baseline.timing if recording.baseline and recording.baseline.ok else None
    best = passing[best_config].timing if best_config is not None else None
    return {
        "problem": spec.shape_key(recording.problem), "recorded_on": recording.device.label,
        "valid_configs": len(Space(spec, recording.problem, recording.device)), "recorded": len(recording.outcomes),
        "passing": len(passing), "failures": failures, "best_ms": recording.best_ms,
        "best": timing_stats(best), "best_config": dict(best_config) if best_config is not None else None,
        "default": timing_stats(default_outcome.timing if default_outcome and default_outcome.ok else None),
        "baseline": timing_stats(base),
    }


# -- 2. search efficiency on the replays ----------------------------------------------------
def run_replays(grid_rows, seeds: list[int], budget_fraction: float) -> dict[str, Any]:
    per_recording = []
    for row in grid_rows:
        spec, recording = load(row["file"], kernels.get)
        valid = row["valid_configs"]
        if recording.best_ms is None:
            per_recording.append({"file": row["file"], "kernel": row["kernel"], "problem": row["problem"],
                                  "error": "no passing config in the recording"})
            continue
        if len(recording.outcomes) < valid:  # stopped by --grid-timeout: its best is not the exhaustive best
            per_recording.append({"file": row["file"], "kernel": row["kernel"], "problem": row["problem"],
                                  "error": f"partial grid: {len(recording.outcomes)} of {valid} valid configs "
                                           "recorded (--grid-timeout); the goal needs the exhaustive best"})
            print(f"replay {row['kernel']} {row['problem']}: {per_recording[-1]['error']}", flush=True)
            continue
        budget = min(valid, max(20, math.ceil(budget_fraction * valid)))
        started = time.perf_counter()
        effs = compare(spec, recording, list(SAMPLERS), seeds, trials=budget)
        medians: dict[str, dict[str, float | None]] = {}
        fractions: dict[str, dict[str, float | None]] = {}
        for s in SAMPLERS:
            medians[s], fractions[s] = {}, {}
            for t in THRESHOLDS:
                # A seed that never got there counts as infinitely many trials in the median.
                counts = [e.to_within[t] if e.to_within[t] is not None else math.inf for e in effs if e.sampler == s]
                m = statistics.median(counts)
                medians[s][f"{t:.0%}"] = None if math.isinf(m) else m
                fractions[s][f"{t:.0%}"] = None if math.isinf(m) else m / valid
        per_recording.append({
            "file": row["file"], "kernel": row["kernel"], "problem": row["problem"], "valid_configs": valid,
            "budget": budget, "best_ms": recording.best_ms, "runs": [e.to_dict() for e in effs],
            "median_trials": medians, "median_fraction": fractions, "wall_s": time.perf_counter() - started})
        print(f"replay {row['kernel']} {row['problem']}: budget {budget} of {valid}; " + "; ".join(
            f"{s} to 3% {medians[s]['3%']}" for s in SAMPLERS), flush=True)
    return {"samplers": list(SAMPLERS), "seeds": seeds, "budget_fraction": budget_fraction,
            "recordings": per_recording, "goal": replay_goal(per_recording)}


def replay_goal(per_recording: list[dict[str, Any]]) -> dict[str, Any]:
    """The search-efficiency verdict from the replays' medians: TPE's median (over shapes) fraction
    of the valid configs needed to come within GOAL_THRESHOLD, at most GOAL_FRACTION and below
    random's. A shape where a sampler never got there counts as infinitely many trials."""
    key = f"{GOAL_THRESHOLD:.0%}"
    ok_rows = [r for r in per_recording if "error" not in r]

    def over_shapes(sampler):
        values = [r["median_fraction"][sampler][key] for r in ok_rows]
        values = [math.inf if v is None else v for v in values]
        m = median_or_none(values)
        return None if m is None or math.isinf(m) else m

    tpe, rnd = over_shapes("tpe"), over_shapes("random")
    within = tpe is not None and tpe <= GOAL_FRACTION
    ahead = tpe is not None and (rnd is None or tpe < rnd)
    return {"text": f"TPE within {GOAL_THRESHOLD:.0%} of the exhaustive best in at most "
                    f"{GOAL_FRACTION:.0%} of the valid configs (median over shapes) and ahead of random",
            "tpe_median_fraction": tpe, "random_median_fraction": rnd,
            "within_budget": within, "ahead_of_random": ahead, "met": within and ahead if ok_rows else None}


# -- 3./4. tuned vs default vs torch, cost per trial ----------------------------------------
def run_searches(shapes, dtype, device, settings, *, trials: int, seed: int, compile_workers: int,
                 trial_timeout_s: float) -> list[dict[str, Any]]:
    spec = kernels.get("matmul")
    rows = []
    for shape in shapes:
        problem = spec.problem(dict(zip("MNK", shape)), dtype)
        started = time.perf_counter()
        result, _ = autotune_problem(spec, problem, device, storage=None, trial_timeout_s=trial_timeout_s,
                                     settings=settings,
                                     options=search_options(trials=trials, sampler="tpe", seed=seed,
                                                            compile_workers=compile_workers))
        if result.interrupted:
            raise KeyboardInterrupt
        wall = time.perf_counter() - started
        rows.append(search_row(result, shape, wall))
        r = rows[-1]
        print(f"search matmul {shape_text(shape)}: default {fmt(r['default'])} tuned {fmt(r['tuned'])} "
              f"torch {fmt(r['torch'])}; {r['trials_run']} trials in {wall:.1f} s", flush=True)
    return rows


def search_row(result: TuneResult, shape, wall: float) -> dict[str, Any]:
    tuned = timing_stats(result.best)
    torch_t = timing_stats(result.baseline)
    return {
        "kernel": result.kernel, "shape": list(shape), "problem": result.problem_key, "dtype": result.problem.dtype,
        "valid_configs": result.valid_configs, "trials_run": result.trials_run, "trials_to_best": result.trials_to_best,
        "default": timing_stats(result.default), "default_failure": result.default_failure, "tuned": tuned,
        "torch": torch_t, "best_config": dict(result.best_config) if result.best_config else None,
        "tuned_over_default": result.speedup_over_default, "tuned_vs_torch": result.speedup_over_baseline,
        "failures": dict(result.failures), "wall_s": wall,
        "per_trial_s": wall / result.trials_run if result.trials_run else None, "interpreter": result.interpreter,
    }


def fmt(t: dict | None) -> str:
    return "-" if t is None else f"{t['median_ms']:.4g} ms"


def fmt_t(t: dict | None) -> str:
    return "-" if t is None else f"{t['median_ms']:.4f} ({t['p10_ms']:.4f}-{t['p90_ms']:.4f})"


def fmt_x(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x" if x >= 0.01 else f"{x:.2g}x"


def cell(text: str) -> str:
    """A table cell: a problem key holds '|'."""
    return text.replace("|", "\\|")


def fmt_n(x) -> str:
    return "-" if x is None else f"{x:g}"


def fmt_frac(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def met(flag: bool | None) -> str:
    return "n/a" if flag is None else ("**met**" if flag else "**not met**")


# -- the report -----------------------------------------------------------------------------
def markdown(data: dict[str, Any]) -> str:
    env = data["environment"]
    dev = env["device"]
    lines = [
        f"# Tuner figures — {dev['label']}",
        "",
        f"Date {data['date'][:10]}; device {dev['label']}; driver {env['driver']}; torch {env['torch']}; "
        f"triton {env['triton']}; CUDA {env['cuda_runtime']}. Seed {data['seed']}"
        f"{SMOKE_NOTE if data['smoke'] else ''}.",
        f"Timing per config: warm-up {data['settings']['warmup_ms']} ms, repetitions {data['settings']['rep_ms']} ms, "
        f"at least {data['settings']['min_reps']} repetitions; latency is the median of per-repetition times "
        "(p10-p90 in brackets). Compile pool: " + data["compile_pool"] + ".",
        "",
    ]
    if data["interpreter"]:
        lines += [f"**{INTERPRETER_NOTE}.**", ""]
    # Sections of the parts not run are null: a heading and one line, no empty table.
    not_run = f"Not run (--parts {','.join(data['parts'])})."
    lines += ["## 1. Exhaustive grids", ""]
    lines += [not_run] if data["grids"] is None else grid_lines(data)
    lines += ["", "## 2. Search efficiency on the replays", ""]
    lines += [not_run] if data["replay"] is None else replay_lines(data["replay"])
    lines += ["", "## 3. Tuned vs default vs torch.matmul", ""]
    lines += [not_run] if data["searches"] is None else search_lines(data["searches"], data["summary"])
    lines += ["", "## 4. Tuning cost per trial", ""]
    lines += [not_run] if data["cost"] is None else cost_lines(data["cost"], data["compile_pool"])
    if data["interpreter"]:
        lines += ["", f"**{INTERPRETER_NOTE}.**"]
    return "\n".join(lines) + "\n"


def grid_lines(data: dict[str, Any]) -> list[str]:
    lines = ["Every valid config measured once (grid sampler, no early stop); the replay files below.", "",
             "| kernel | problem | valid | recorded | passing | best ms (p10-p90) | default ms (p10-p90) | "
             "torch ms (p10-p90) | best / default | wall s | s per config | file |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for g in data["grids"]:
        ratio = g["default"]["median_ms"] / g["best"]["median_ms"] if g["default"] and g["best"] else None
        wall = "reused" if g["reused"] else f"{g['wall_s']:.0f}"
        per = "-" if g.get("per_trial_s") is None else f"{g['per_trial_s']:.2f}"
        lines.append(f"| {g['kernel']} | {cell(g['problem'])} | {g['valid_configs']} | {g['recorded']} | "
                     f"{g['passing']} | "
                     f"{fmt_t(g['best'])} | {fmt_t(g['default'])} | {fmt_t(g['baseline'])} | {fmt_x(ratio)} | {wall} | "
                     f"{per} | `{g['file']}` |")
    return lines


def replay_lines(rep: dict[str, Any]) -> list[str]:
    goal = rep["goal"]
    lines = [f"Per recording, {', '.join(rep['samplers'])} with seeds {rep['seeds']}, each with a budget of "
             f"{rep['budget_fraction']:.0%} of the valid configs (at least 20): the median over seeds of the trials "
             "needed to come within 1%, 3% and 5% of the exhaustive best, and that as a fraction of the valid configs "
             "('-': some seeds did not get there within the budget).", "",
             "| kernel | problem | valid | budget | best ms | sampler | to 1% | to 3% | to 5% | 3% as fraction |",
             "|---|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in rep["recordings"]:
        if "error" in r:
            lines.append(f"| {r['kernel']} | {cell(r['problem'])} | | | | {r['error']} | | | | |")
            continue
        for s in rep["samplers"]:
            m = r["median_trials"][s]
            lines.append(f"| {r['kernel']} | {cell(r['problem'])} | {r['valid_configs']} | {r['budget']} | "
                         f"{r['best_ms']:.4g} | "
                         f"{s} | {fmt_n(m['1%'])} | {fmt_n(m['3%'])} | {fmt_n(m['5%'])} | "
                         f"{fmt_frac(r['median_fraction'][s]['3%'])} |")
    lines += ["", f"Goal: {goal['text']}. TPE median fraction {fmt_frac(goal['tpe_median_fraction'])}, random "
              f"{fmt_frac(goal['random_median_fraction'])}: within {GOAL_FRACTION:.0%} {met(goal['within_budget'])}, "
              f"ahead of random {met(goal['ahead_of_random'])}; overall {met(goal['met'])}."]
    return lines


def search_lines(s: dict[str, Any], summ: dict[str, Any]) -> list[str]:
    lines = [f"matmul {s['dtype']}, one TPE search of {s['trials']} configs per shape (fresh study; the heuristic "
             "default is its first trial; the best 3 re-timed). The baseline is torch.matmul in the same dtype, timed "
             "in the same worker in the same run. tuned / default = default median / tuned median; tuned vs torch = "
             "torch median / "
             "tuned median (> 1: the tuned kernel is faster).", "",
             "| M | N | K | default ms (p10-p90) | tuned ms (p10-p90) | torch ms (p10-p90) | tuned / default | "
             "tuned vs torch | trials | best config |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in s["rows"]:
        cfg = ",".join(f"{k}={v}" for k, v in r["best_config"].items()) if r["best_config"] else "-"
        m, n, k = r["shape"]
        lines.append(f"| {m} | {n} | {k} | {fmt_t(r['default'])} | {fmt_t(r['tuned'])} | {fmt_t(r['torch'])} | "
                     f"{fmt_x(r['tuned_over_default'])} | {fmt_x(r['tuned_vs_torch'])} | {r['trials_run']} | {cfg} |")
    lines += ["", f"Geometric mean over {summ['shapes']} shapes: tuned / default "
              f"{fmt_x(summ['geomean_tuned_over_default'])}, "
              f"tuned vs torch {fmt_x(summ['geomean_tuned_vs_torch'])}. Goal tuned vs torch >= "
              f"{GOAL_TUNED_VS_TORCH:.1f}x, worst {fmt_x(summ.get('worst_tuned_vs_torch'))} (goal >= "
              f"{GOAL_TUNED_VS_TORCH_WORST:.2f}x): {met(summ['tuned_vs_torch_met'])}."]
    return lines


def cost_lines(c: dict[str, Any], compile_pool: str) -> list[str]:
    return ["Wall time of each search of section 3 (worker start, compile, check, time, re-timing of the best 3) "
            "divided "
            f"by the trials it ran. Compile pool: {compile_pool}.", "",
            "| searches | median s per trial | p10 | p90 | goal |", "|---:|---:|---:|---:|---|",
            f"| {c['searches']} | {fmt_n(c['median_s'] and round(c['median_s'], 3))} | "
            f"{fmt_n(c['p10_s'] and round(c['p10_s'], 3))} | {fmt_n(c['p90_s'] and round(c['p90_s'], 3))} | "
            f"< {GOAL_COST_S} s: {met(c['met'])} |"]


def quantiles(values: list[float]) -> tuple[float | None, float | None, float | None]:
    if not values:
        return None, None, None
    from profilers.timing import quantile
    return quantile(values, 0.5), quantile(values, 0.1), quantile(values, 0.9)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Section 3's verdict from the searches' rows: geometric mean of tuned vs torch at least
    GOAL_TUNED_VS_TORCH and no shape below GOAL_TUNED_VS_TORCH_WORST (issue 12's goal)."""
    vs_torch = [r["tuned_vs_torch"] for r in rows if r["tuned_vs_torch"]]
    gm_torch = geomean(vs_torch)
    worst = min(vs_torch) if vs_torch else None
    return {"shapes": len(rows), "geomean_tuned_vs_torch": gm_torch, "worst_tuned_vs_torch": worst,
            "geomean_tuned_over_default": geomean([r["tuned_over_default"] for r in rows if r["tuned_over_default"]]),
            "tuned_vs_torch_goal": GOAL_TUNED_VS_TORCH, "tuned_vs_torch_worst_goal": GOAL_TUNED_VS_TORCH_WORST,
            "tuned_vs_torch_met": None if gm_torch is None else
            gm_torch >= GOAL_TUNED_VS_TORCH and worst >= GOAL_TUNED_VS_TORCH_WORST}


def cost_of(rows: list[dict[str, Any]], *, compile_workers: int, grids: list[dict[str, Any]]) -> dict[str, Any]:
    """Section 4's verdict: the median over the searches of seconds per trial, below GOAL_COST_S."""
    per_trial = [r["per_trial_s"] for r in rows if r["per_trial_s"] is not None]
    med, p10, p90 = quantiles(per_trial)
    return {"searches": len(per_trial), "median_s": med, "p10_s": p10, "p90_s": p90, "goal_s": GOAL_COST_S,
            "met": None if med is None else med < GOAL_COST_S, "compile_workers": compile_workers,
            "grid_per_config_s": [g.get("per_trial_s") for g in grids]}


def names_of(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags, checked: args.parts is a tuple in PARTS order, args.grid_kernels (names) and
    args.grid_shapes (MxNxK tuples) None or the subsets asked for. UsageError on bad input."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes and budgets (checks the script; figures mean nothing)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default bench/results/tuning-<device>-<date>)")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder of the replay files (default bench/data; --smoke: <out>/data)")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help="comma-separated subset of grids,replays,searches (default all); without grids the "
                             "recordings are read from --data")
    parser.add_argument("--skip-grids", action="store_true",
                        help="reuse the replay files of an earlier run (the parts without grids)")
    parser.add_argument("--grid-kernels", default=None,
                        help="comma-separated subset of the grids' kernels: " + ",".join(n for n, _ in GRID_KERNELS))
    parser.add_argument("--grid-shapes", default=None,
                        help="comma-separated MxNxK shapes of the grids (default: the three GRID_SHAPES)")
    parser.add_argument("--grid-device", default=None,
                        help="device part of the recordings' names to reuse (default this device's, else the only "
                             "one in --data)")
    parser.add_argument("--grid-timeout", type=float, default=None,
                        help="seconds each grid may take; a grid stopped by it keeps (and records) the configs it "
                             "measured, a random subset of the valid ones (default: no limit)")
    parser.add_argument("--grid-resume", type=Path, default=None,
                        help="folder of earlier, partial recordings (a grid cut by --grid-timeout): a grid whose "
                             "file is there keeps its configs and measures only the rest (same GPU model)")
    parser.add_argument("--compile-workers", type=int, default=None,
                        help="compile pool size (default min(8, CPUs) on a GPU; always 0 under the interpreter)")
    parser.add_argument("--trials", type=int, default=60, help="configs per TPE search of section 3")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per sampler on the replays (0..N-1)")
    parser.add_argument("--replay-budget", type=float, default=0.12,
                        help="trials per replay run as a fraction of the valid configs (at least 20); just above "
                             "the 10%% goal so that it is decided")
    parser.add_argument("--trial-timeout", type=float, default=120.0, help="seconds one config may take")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    wanted = names_of(args.parts)
    unknown = [w for w in wanted if w not in PARTS]
    if unknown or not wanted:
        what = f"unknown part {unknown[0]!r}" if unknown else "--parts names no part"
        raise UsageError(f"{what}; parts: {','.join(PARTS)}")
    args.parts = tuple(p for p in PARTS if p in wanted and not (args.skip_grids and p == "grids"))
    if not args.parts:
        raise UsageError("--skip-grids leaves no part to run (--parts grids)")
    if args.grid_kernels is not None:
        known = [n for n, _ in GRID_KERNELS]
        args.grid_kernels = names_of(args.grid_kernels)
        unknown = [n for n in args.grid_kernels if n not in known]
        if unknown or not args.grid_kernels:
            what = f"unknown grid kernel {unknown[0]!r}" if unknown else "--grid-kernels names no kernel"
            raise UsageError(f"{what}; kernels: {','.join(known)}")
    if args.grid_shapes is not None:
        try:
            args.grid_shapes = tuple(parse_shape(s) for s in names_of(args.grid_shapes))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if not args.grid_shapes:
            raise UsageError("--grid-shapes names no shape; a shape is MxNxK, e.g. 16x4096x4096")
    if args.grid_device is not None and (not args.grid_device or slug(args.grid_device) != args.grid_device):
        # It becomes part of a file name in --data: a slug such as nvidia-h200, never a path.
        raise UsageError(f"--grid-device is a device slug such as nvidia-h200; got {args.grid_device!r}")
    if args.grid_resume is not None and ("grids" not in args.parts or not args.grid_resume.is_dir()):
        raise UsageError(f"--grid-resume takes a folder of recordings and needs --parts grids; got {args.grid_resume}")
    if args.compile_workers is not None and args.compile_workers < 0:
        raise UsageError(f"--compile-workers must be >= 0; got {args.compile_workers}")
    if args.grid_timeout is not None and not args.grid_timeout > 0:
        raise UsageError(f"--grid-timeout must be a positive number of seconds; got {args.grid_timeout}")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        settings = Settings.from_env()
    except (UsageError, SettingError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    parts = args.parts
    env = collect_environment()
    device = env.device
    if device.kind != "cuda" and not args.smoke and {"grids", "searches"} & set(parts):
        print("this benchmark's grids and searches need a CUDA GPU; on this machine run it with --smoke, "
              "or --parts replays on recorded grids", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    now = dt.datetime.now(dt.timezone.utc)
    device_slug = slug(device.name)
    out = args.out or Path("bench/results") / f"tuning-{device_slug}-{now:%Y-%m-%d}"
    out.mkdir(parents=True, exist_ok=True)
    compile_workers, pool_note = compile_workers_for(device, args.compile_workers)
    if args.smoke:
        settings = dataclasses.replace(settings, warmup_ms=0.0, rep_ms=0.0, min_reps=2, min_reps_cpu=2)
        dtype, grid_kernels, grid_shapes = "fp16", SMOKE_GRID_KERNELS, SMOKE_GRID_SHAPES
        search_shapes, trials, seeds = SMOKE_SEARCH_SHAPES, min(args.trials, 4), list(range(min(args.seeds, 2)))
        data_dir = args.data or out / "data"
    else:
        dtype, grid_kernels, grid_shapes = "bf16", GRID_KERNELS, GRID_SHAPES
        search_shapes = tuple((m, n, k) for n, k in NK_VALUES for m in M_VALUES)
        trials, seeds = args.trials, list(range(args.seeds))
        data_dir = args.data or DATA_DIR
    if args.grid_kernels is not None:
        grid_kernels = tuple((n, o) for n, o in grid_kernels if n in args.grid_kernels)
    grid_shapes = args.grid_shapes or grid_shapes
    min_reps = settings.min_reps if device.kind == "cuda" else settings.min_reps_cpu
    print(f"{device.label}: parts {','.join(parts)}; compile pool {pool_note}; writing to {out}", flush=True)
    grids = replay = rows = summary = cost = None
    try:
        if "grids" in parts or "replays" in parts:
            if "grids" in parts:
                data_dir.mkdir(parents=True, exist_ok=True)
            grids = run_grids(grid_kernels, grid_shapes, dtype, device, settings, data_dir, device_slug, seed=seed,
                              skip="grids" not in parts, compile_workers=compile_workers,
                              trial_timeout_s=args.trial_timeout, grid_device=args.grid_device,
                              grid_timeout_s=args.grid_timeout, resume_dir=args.grid_resume)
    except (UsageError, ReplayError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if "replays" in parts:
        replay = run_replays(grids, seeds, args.replay_budget)
    if "searches" in parts:
        rows = run_searches(search_shapes, dtype, device, settings, trials=trials, seed=seed,
                            compile_workers=compile_workers, trial_timeout_s=args.trial_timeout)
        summary = summarize(rows)
        cost = cost_of(rows, compile_workers=compile_workers, grids=grids or [])
    data = {
        "benchmark": "tuning", "date": now.isoformat(timespec="seconds"), "seed": seed, "smoke": args.smoke,
        "parts": list(parts), "environment": env.to_dict(), "interpreter": device.interpreter,
        "note": INTERPRETER_NOTE if device.interpreter else None,
        "settings": {"warmup_ms": settings.warmup_ms, "rep_ms": settings.rep_ms, "min_reps": min_reps},
        "compile_pool": pool_note, "compile_workers": compile_workers,
        "grids": grids, "replay": replay,
        "searches": None if rows is None else
        {"kernel": "matmul", "dtype": dtype, "sampler": "tpe", "trials": trials, "rows": rows},
        "summary": summary, "cost": cost,
    }
    write_results(out, data, markdown)
    # A part in which nothing passed measured nothing: say so with the exit code (seen under
    # triton 3.6's interpreter with numpy >= 2.4: every trial failed and the run exited 0).
    nothing = [f"grid {g['kernel']} {g['problem']}" for g in grids or [] if not g["passing"]]
    nothing += [f"search {r['problem']}" for r in rows or [] if r["tuned"] is None]
    if nothing:
        print(f"no config passed in: {', '.join(nothing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
