"""The figures of one kit run, read from its work folder, against the GPU figures issue's goals.

Reads what the steps wrote (status.json, env.json, calibrate.json, gpu-tests.xml,
kernels/results.json, tune-*.json, runtime/results.json, ncu-*.json); a step that did not run
or failed leaves its figures out and the table says so. Pure reading: nothing is measured here.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from bench.common import geomean
from infertune.benchmark import INTERPRETER_NOTE

# The goals of the GPU figures issue (ratios measured in the same run).
GOAL_MATMUL_GEOMEAN, GOAL_MATMUL_WORST = 1.0, 0.85
GOAL_W8, GOAL_W4 = 1.8, 3.0
GOAL_COST_S = 1.5
QUANT_KERNELS = ("matmul_w8a16", "matmul_w4a16")


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _junit(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    return {**counts, "failed": failed}


def _kernels(data: dict | None) -> dict[str, Any] | None:
    if not data:
        return None
    rows = []
    for r in data["results"]:
        shape = r["shape"]
        rows.append({"kernel": r["kernel"], "M": shape["M"], "N": shape["N"], "K": shape["K"],
                     "quant": r["options"].get("quant"), "ms": r["triton"]["median_ms"],
                     "torch_ms": r["baseline"]["median_ms"], "speedup": r["speedup"],
                     "correct": r["accuracy"]["ok"]})
    per_kernel = {}
    for name in dict.fromkeys(r["kernel"] for r in rows):
        mine = [r for r in rows if r["kernel"] == name]
        small = [r["speedup"] for r in mine if r["M"] <= 16]
        per_kernel[name] = {"geomean": geomean([r["speedup"] for r in mine]),
                            "worst": min(r["speedup"] for r in mine), "shapes": len(mine),
                            "m_le_16_geomean": geomean(small), "m_le_16_best": max(small, default=None),
                            "all_correct": all(r["correct"] for r in mine)}
    return {"rows": rows, "per_kernel": per_kernel}


def _paired(default: dict | None, other: dict | None, kernel: str) -> list[dict[str, Any]]:
    """`kernel`'s rows of the default run (kernels/results.json) beside the same shapes of an
    A/B run (another kernels_vs_torch folder of the same kit run): default_ms, other_ms."""
    if not default or not other:
        return []
    key = lambda r: (r["kernel"], r["M"], r["N"], r["K"], r["quant"])  # noqa: E731
    mine = {key(r): r for r in _kernels(default)["rows"] if r["kernel"] == kernel}
    return [{"M": r["M"], "N": r["N"], "K": r["K"], "quant": r["quant"], "default_ms": mine[key(r)]["ms"],
             "other_ms": r["ms"], "torch_ms": mine[key(r)]["torch_ms"],
             "correct": mine[key(r)]["correct"] and r["correct"]}
            for r in _kernels(other)["rows"] if key(r) in mine]


def _int4_unpacking(asm: dict | None, bits: dict | None) -> dict[str, Any] | None:
    """matmul_w4a16 with the PTX unpacking (kernels/results.json, the default) against Triton's
    (kernels-int4-bits/results.json), same shapes and configs, same kit run: rows and geomean."""
    rows = [{"M": r["M"], "N": r["N"], "K": r["K"], "quant": r["quant"], "ptx_ms": r["default_ms"],
             "triton_ms": r["other_ms"], "ptx_speedup": r["other_ms"] / r["default_ms"], "torch_ms": r["torch_ms"],
             "correct": r["correct"]} for r in _paired(asm, bits, "matmul_w4a16")]
    return {"rows": rows, "geomean": geomean([r["ptx_speedup"] for r in rows])} if rows else None


def _matmul_tma(default: dict | None, tma: dict | None) -> dict[str, Any] | None:
    """The bf16 matmul's default (TMA=0: LDGSTS async copies) against TMA=1 (tensor-descriptor
    loads), same tiles otherwise, same kit run: rows and the geomean of default ms / TMA ms."""
    rows = [{"M": r["M"], "N": r["N"], "K": r["K"], "default_ms": r["default_ms"], "tma_ms": r["other_ms"],
             "tma_speedup": r["default_ms"] / r["other_ms"], "torch_ms": r["torch_ms"], "correct": r["correct"]}
            for r in _paired(default, tma, "matmul")]
    return {"rows": rows, "geomean": geomean([r["tma_speedup"] for r in rows])} if rows else None


def _every_kernel(default: dict | None, other: dict | None, keys: tuple[str, str, str]) -> dict[str, Any] | None:
    """Each matmul kernel's default rows (kernels/results.json) beside the same shapes of an
    A/B run of the same kit: rows with keys (default ms, other ms, other ms / default ms) and
    the geomean of that ratio."""
    mine, theirs, ratio = keys
    rows = [{"kernel": kernel, "M": r["M"], "N": r["N"], "K": r["K"], mine: r["default_ms"], theirs: r["other_ms"],
             ratio: r["other_ms"] / r["default_ms"], "torch_ms": r["torch_ms"], "correct": r["correct"]}
            for kernel in ("matmul", "matmul_w8a16", "matmul_w4a16") for r in _paired(default, other, kernel)]
    return {"rows": rows, "geomean": geomean([r[ratio] for r in rows])} if rows else None


def _split_k(default: dict | None, once: dict | None) -> dict[str, Any] | None:
    """The skinny default's split-K (enough programs per SM for the weight bytes in flight)
    against the first H200 run's rule, one program per SM (kernels-split-once/results.json:
    SPLIT_K=2 on the N=4096 shapes, which that rule gave them): once ms / default ms."""
    return _every_kernel(default, once, ("default_ms", "once_ms", "default_speedup"))


def _splitk_reduce(serial: dict | None, second: dict | None) -> dict[str, Any] | None:
    """Split-K's reduction summed by the last split inside the launch (the default) against
    a second launch (kernels-splitk-kernel/results.json), same configs: second ms / serial ms."""
    return _every_kernel(serial, second, ("serial_ms", "second_ms", "serial_speedup"))


def _tune(work: Path, status: dict | None) -> dict[str, Any] | None:
    seconds = {}
    for step in (status or {}).get("steps", []):
        if step["name"] != "tune":
            continue
        for c in step["commands"]:
            if "autotune" in c["argv"] and c["exit"] == 0:
                seconds[c["argv"][c["argv"].index("autotune") + 1]] = c["seconds"]
    rows, invocations = [], []
    for path in sorted(work.glob("tune-*.json")):
        data = _load(path)
        if not data:
            continue
        kernel_rows = []
        for r in data["results"]:
            def ms(t):
                return t["median_ms"] if t else None
            kernel_rows.append({
                "kernel": r["kernel"], "problem": r["problem"], "M": r["shape"]["M"], "trials": r["trials_run"],
                "valid": r["valid_configs"], "trials_to_best": r["trials_to_best"], "default_ms": ms(r["default"]),
                "tuned_ms": ms(r["best"]), "torch_ms": ms(r["baseline"]),
                "tuned_over_default": r["speedup_over_default"], "tuned_vs_torch": r["speedup_over_baseline"],
                "failures": r["failures"], "best_config": r["best_config"]})
        rows += kernel_rows
        kernel = kernel_rows[0]["kernel"] if kernel_rows else path.stem.removeprefix("tune-")
        trials = sum(r["trials"] for r in kernel_rows)
        wall = seconds.get(kernel)
        invocations.append({"kernel": kernel, "problems": len(kernel_rows), "trials": trials, "wall_s": wall,
                            "s_per_trial": wall / trials if wall and trials else None})
    if not rows:
        return None
    return {"rows": rows, "invocations": invocations}


def _ncu(data: dict | None) -> dict[str, Any] | None:
    if not data:
        return None
    ncu = data.get("profilers", {}).get("ncu") or {}
    by_kernel: dict[str, list[dict]] = {}
    for launch in ncu.get("launches", []):
        by_kernel.setdefault(launch["kernel"], []).append(launch)

    def med(values):
        values = sorted(v for v in values if v is not None)
        return values[len(values) // 2] if values else None

    kernels = [{"kernel": name[:60], "launches": len(ls), "duration_us": med([x["duration_ns"] for x in ls]) / 1e3,
                "memory_pct": med([x["memory_throughput_pct"] for x in ls]),
                "sm_pct": med([x["sm_throughput_pct"] for x in ls]),
                "occupancy_pct": med([x["achieved_occupancy_pct"] for x in ls]),
                "registers": med([x["registers_per_thread"] for x in ls]), "grid": ls[0]["grid"],
                "block": ls[0]["block"]} for name, ls in by_kernel.items()]
    return {"status": ncu.get("status"), "reason": ncu.get("reason"), "kernels": kernels,
            "problem": data["measurements"][0]["problem"] if data.get("measurements") else None}


def _goal(name: str, value: float | None, target: str, met: bool | None, source: str, note: str = "") -> dict:
    return {"figure": name, "value": value, "goal": target, "met": met, "source": source, "note": note}


def goals(figures: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    tune, kern, rt = figures.get("tune"), figures.get("kernels"), figures.get("runtime")
    mm = [r for r in (tune or {}).get("rows", []) if r["kernel"] == "matmul" and r["tuned_vs_torch"]]
    if mm:
        gm, worst = geomean([r["tuned_vs_torch"] for r in mm]), min(r["tuned_vs_torch"] for r in mm)
        out.append(_goal("tuned bf16 matmul vs torch.matmul", gm, f">= {GOAL_MATMUL_GEOMEAN}x geomean, none < "
                         f"{GOAL_MATMUL_WORST}x", gm >= GOAL_MATMUL_GEOMEAN and worst >= GOAL_MATMUL_WORST, "tune",
                         f"worst {worst:.2f}x; {len(mm)} shapes tuned: M in "
                         f"{sorted({r['M'] for r in mm})} only"))
    else:
        out.append(_goal("tuned bf16 matmul vs torch.matmul", None, ">= 1.0x geomean", None, "-", "not measured"))
    for kernel, target in (("matmul_w8a16", GOAL_W8), ("matmul_w4a16", GOAL_W4)):
        tuned = [r["tuned_vs_torch"] for r in (tune or {}).get("rows", []) if r["kernel"] == kernel
                 and r["M"] <= 16 and r["tuned_vs_torch"]]
        default = (kern or {}).get("per_kernel", {}).get(kernel, {}).get("m_le_16_geomean")
        value, source = (geomean(tuned), "tune") if tuned else (default, "kernels (default configs)")
        note = f"default configs at M<=16: {default:.2f}x geomean" if default and tuned else ""
        out.append(_goal(f"{kernel} at M<=16 vs bf16 torch.matmul", value, f">= {target}x",
                         None if value is None else value >= target, source, note))
    rows = (tune or {}).get("rows", [])
    over = [r["tuned_over_default"] for r in rows if r["tuned_over_default"]]
    if over:
        slower = [r["problem"] for r in rows if r["tuned_over_default"] and r["tuned_over_default"] < 1.0]
        out.append(_goal("tuned vs default config (our kernels)", geomean(over), "report; never below 1.0x",
                         not slower, "tune", f"worst {min(over):.2f}x over {len(over)} problems"
                         + (f"; slower: {', '.join(slower)}" if slower else "")))
    out.append(_goal("TPE on recorded grids", None, "within 3% in <= 10% of valid configs", None, "-",
                     "not measured on the GPU: the grid step records one grid (grids/ in kit.tar.gz); replay it "
                     "anywhere with python -m bench.tuning --parts replays --data DIR"))
    inv = [i for i in (tune or {}).get("invocations", []) if i["s_per_trial"]]
    if inv:
        cost = sum(i["wall_s"] for i in inv) / sum(i["trials"] for i in inv)
        out.append(_goal("tuning cost per trial (compile pool)", cost, f"< {GOAL_COST_S} s", cost < GOAL_COST_S,
                         "tune", "whole autotune commands / trials: process and pool start-up included"))
    for g in (rt or {}).get("goals", []):
        # A runtime step cut by its cap wrote what it had measured (bench.runtime marks it).
        note = f"partial run: {rt['pending']}" if rt.get("pending") and g["value"] is None else ""
        out.append(_goal(g["goal"], g["value"], f">= {g['target']}", g["met"], "runtime", note))
    return out


def _warm(data: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """Per problem of the warm-started tune: configs enqueued, the trial that found the best,
    tuned vs default."""
    if not data:
        return None
    rows = []
    for r in data.get("results", []):
        default, best = (r.get("default") or {}).get("median_ms"), (r.get("best") or {}).get("median_ms")
        rows.append({"kernel": r["kernel"], "problem": r["problem"], "warm_started": r.get("warm_started", 0),
                     "trials": r.get("trials_run"), "trials_to_best": r.get("trials_to_best"),
                     "tuned_over_default": default / best if default and best else None})
    return rows


def _confirm(work: Path) -> dict[str, Any]:
    """Per model of the confirm step: verdict counts and the all-records step ratios."""
    out = {}
    for path in sorted(work.glob("confirm-*.json")):
        c = (_load(path) or {}).get("confirmation")
        if c:
            out[path.stem.removeprefix("confirm-")] = {"counts": c["counts"], "steps": c["steps"],
                                                       "rounds": c["rounds"], "interpreter": c["interpreter"]}
    return out


def summarize(work: Path) -> dict[str, Any]:
    """{"data": figures and goals, "markdown": the table} of the kit run in `work`."""
    work = Path(work)
    status = _load(work / "status.json")
    env = _load(work / "env.json")
    if env is None:
        env = ((_load(work / "kernels/results.json") or {}).get("environment"))
    figures: dict[str, Any] = {
        "environment": env, "status": status, "calibrate": (_load(work / "calibrate.json") or {}).get("measured"),
        "gpu_tests": _junit(work / "gpu-tests.xml"), "kernels": _kernels(_load(work / "kernels/results.json")),
        "int4_unpacking": _int4_unpacking(_load(work / "kernels/results.json"),
                                          _load(work / "kernels-int4-bits/results.json")),
        "matmul_tma": _matmul_tma(_load(work / "kernels/results.json"),
                                  _load(work / "kernels-matmul-tma/results.json")),
        "split_k": _split_k(_load(work / "kernels/results.json"), _load(work / "kernels-split-once/results.json")),
        "splitk_reduce": _splitk_reduce(_load(work / "kernels/results.json"),
                                        _load(work / "kernels-splitk-kernel/results.json")),
        "tune": _tune(work, status), "runtime": _load(work / "runtime/results.json"),
        "ncu": {p.stem.removeprefix("ncu-"): _ncu(_load(p)) for p in sorted(work.glob("ncu-*.json"))},
        "warm_start": _warm(_load(work / "tune-warm.json")), "confirm": _confirm(work),
        "serving": _load(work / "serving/results.json"),
    }
    figures["goals"] = goals(figures)
    return {"data": figures, "markdown": markdown(figures)}


def goals_table(goals: list[dict[str, Any]]) -> list[str]:
    """The goals as Markdown table lines (a ratio as 1.23x, a share of the roofline as %, seconds bare)."""
    lines = ["| figure | value | goal | met | from | note |", "|---|---:|---|---|---|---|"]
    for g in goals:
        met = "n/a" if g["met"] is None else ("**met**" if g["met"] else "**not met**")
        v = g["value"]
        value = "-" if v is None else (f"{v:.0%}" if "roofline" in g["figure"] else
                                       f"{v:.2f}" + ("" if "cost" in g["figure"] else "x"))
        lines.append(f"| {g['figure']} | {value} | {g['goal']} | {met} | {g['source']} | {g['note']} |")
    return lines


def _ab_table(title: str, text: str, rows: list[dict[str, Any]], first: tuple[str, str], second: tuple[str, str],
              speedup: tuple[str, str]) -> list[str]:
    """An A/B section: per shape (and kernel, where rows name one) the two sides' ms ((label,
    key) each), the speedup, torch ms."""
    named = any("kernel" in r for r in rows)
    lines = ["", f"## {title}", "", text, "",
             ("| kernel " if named else "")
             + f"| M | N | K | {first[0]} ms | {second[0]} ms | {speedup[0]} speedup | torch ms | correct |",
             ("|---" if named else "") + "|---:|---:|---:|---:|---:|---:|---:|---|"]
    lines += [(f"| {r.get('kernel')} " if named else "") + f"| {r['M']} | {r['N']} | {r['K']} | {r[first[1]]:.4f} | "
              f"{r[second[1]]:.4f} | {r[speedup[1]]:.2f}x | {r['torch_ms']:.4f} | {'yes' if r['correct'] else 'NO'} |"
              for r in rows]
    return lines


def _x(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def markdown(f: dict[str, Any]) -> str:
    env = f.get("environment") or {}
    dev = env.get("device") or {}
    lines = [f"# GPU kit run — {dev.get('label', 'unknown device')}", ""]
    if dev.get("interpreter"):  # a smoke run: the plumbing, not figures
        lines += [f"**{INTERPRETER_NOTE}; this run checks the kit's plumbing.**", ""]
    if env:
        lines += [f"driver {env.get('driver')}; CUDA {env.get('cuda_runtime')}; torch {env.get('torch')}; "
                  f"triton {env.get('triton')}; python {env.get('python')}.", ""]
    status = f.get("status") or {}
    if status:
        lines += [f"Started {status.get('started')}; budget {status.get('budget_s')} s; timing settings "
                  f"{status.get('settings')}.", "", "| step | status | seconds |", "|---|---|---:|"]
        lines += [f"| {s['name']} | {s['status']} | {s['seconds']:.0f} |" for s in status.get("steps", [])]
        lines.append("")
    cal = f.get("calibrate")
    if cal:
        lines += [f"Calibrated: copy {cal['bandwidth_gbps']:.0f} GB/s (read + write); matmul "
                  + ", ".join(f"{k} {v:.0f}" for k, v in cal["tflops"].items()) + f" TFLOP/s at {cal['matmul_size']}^3.",
                  ""]
    t = f.get("gpu_tests")
    if t:
        lines += [f"pytest -m gpu: {t['tests']} tests, {t['failures']} failures, {t['errors']} errors, "
                  f"{t['skipped']} skipped" + (f"; failed: {', '.join(t['failed'])}" if t["failed"] else "") + ".", ""]
    lines += ["## Goals", "", *goals_table(f["goals"])]
    k = f.get("kernels")
    if k:
        lines += ["", "## Kernels vs torch.matmul (default configs)", "",
                  "| kernel | geomean | worst | M<=16 geomean | correct |", "|---|---:|---:|---:|---|"]
        lines += [f"| {name} | {_x(v['geomean'])}x | {_x(v['worst'])}x | {_x(v['m_le_16_geomean'])}x | "
                  f"{'yes' if v['all_correct'] else 'NO'} |" for name, v in k["per_kernel"].items()]
    unpack = f.get("int4_unpacking")
    if unpack:
        lines += _ab_table("matmul_w4a16: nibble unpacking in PTX (default) vs Triton's lowering",
                           f"Default configs, same kit run, two processes. Geomean {unpack['geomean']:.2f}x "
                           "(Triton ms / PTX ms)."
                           + (" Under the interpreter both sides run Triton's path: PTX needs a GPU."
                              if dev.get("interpreter") else ""),
                           unpack["rows"], ("PTX", "ptx_ms"), ("Triton", "triton_ms"), ("PTX", "ptx_speedup"))
    tma = f.get("matmul_tma")
    if tma:
        lines += _ab_table("matmul: TMA tensor-descriptor loads (TMA=1) vs the default async copies",
                           f"Default configs otherwise, same kit run, two processes. Geomean {tma['geomean']:.2f}x "
                           "(default ms / TMA ms).",
                           tma["rows"], ("default", "default_ms"), ("TMA", "tma_ms"), ("TMA", "tma_speedup"))
    split = f.get("split_k")
    if split:
        lines += _ab_table("Skinny split-K: programs per SM for the bytes in flight (default) vs one per SM",
                           f"Default configs but SPLIT_K, same kit run, two processes; only the shapes where the "
                           f"rules differ (on an H100/H200: N = 4096). Geomean {split['geomean']:.2f}x (one-per-SM ms / default ms).",
                           split["rows"], ("default", "default_ms"), ("one per SM", "once_ms"),
                           ("default", "default_speedup"))
    red = f.get("splitk_reduce")
    if red:
        lines += _ab_table("Split-K reduction: the last split sums in the launch (default) vs a second launch",
                           f"Default configs, same kit run, two processes; rows with SPLIT_K = 1 time the same "
                           f"launch twice. Geomean {red['geomean']:.2f}x (second-launch ms / serial ms)."
                           + (" The interpreter's defaults do not split K." if dev.get("interpreter") else ""),
                           red["rows"], ("serial", "serial_ms"), ("second launch", "second_ms"),
                           ("serial", "serial_speedup"))
    pdl = ((f.get("runtime") or {}).get("llama") or {}).get("pdl")
    if pdl:
        lines += ["", "## Programmatic dependent launch (INFERTUNE_PDL=1)", ""]
        lines.append(f"{pdl['variant']} with PDL failed: {pdl['error']}." if "error" in pdl else
                     f"{pdl['variant']} batch-1 decode, runtime step: {pdl['decode_tokens_per_s']:.1f} tok/s with "
                     f"PDL, {pdl['without_pdl']:.1f} without (same run): {pdl['ratio']:.3f}x. If PDL wins, make "
                     "it the default (kernels/pdl.py).")
    tune = f.get("tune")
    if tune:
        lines += ["", "## Short tune", "", "| kernel | problem | trials | to best | default ms | tuned ms | torch ms | "
                  "tuned / default | tuned vs torch |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in tune["rows"]:
            lines.append(f"| {r['kernel']} | {r['problem'].replace('|', ' ')} | {r['trials']} | "
                         f"{r['trials_to_best'] or '-'} | {_x(r['default_ms'], 4)} | {_x(r['tuned_ms'], 4)} | "
                         f"{_x(r['torch_ms'], 4)} | {_x(r['tuned_over_default'])}x | {_x(r['tuned_vs_torch'])}x |")
        lines += ["", "| autotune command | problems | trials | wall s | s per trial |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {i['kernel']} | {i['problems']} | {i['trials']} | {_x(i['wall_s'], 1)} | "
                  f"{_x(i['s_per_trial'])} |" for i in tune["invocations"]]
    warm = f.get("warm_start")
    if warm:
        lines += ["", "## Warm start (from the short tune's export)", "",
                  "| kernel | problem | warm configs | trials | to best | tuned / default |", "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r['kernel']} | {r['problem'].replace('|', ' ')} | {r['warm_started']} | {r['trials']} | "
                  f"{r['trials_to_best'] or '-'} | {_x(r['tuned_over_default'])}x |" for r in warm]
    for name, c in (f.get("confirm") or {}).items():
        counts = ", ".join(f"{n} {v}" for v, n in c["counts"].items())
        lines += ["", f"## End-to-end confirmation: {name}", "", f"{c['rounds']} rounds; records: {counts}.", ""]
        if c["steps"]:
            lines += ["| step | records | old ms | new ms | new / old | 95% interval |", "|---|---:|---:|---:|---:|---|"]
            lines += [f"| {st['name']} | {st['records']} | {_x(st['old_ms'], 4)} | {_x(st['new_ms'], 4)} | "
                      f"{_x(st['ratio'], 3)} | {_x(st['ci'][0], 3)}-{_x(st['ci'][1], 3)} |" for st in c["steps"]]
    serving = f.get("serving")
    if serving:
        lines += ["", f"## Serving load: {serving['model']}", "",
                  "| variant | saturation req/s | output tok/s there | TTFT p99 at half load ms | saturated |",
                  "|---|---:|---:|---:|---|"]
        lines += [f"| {v['variant']} | {_x(v['saturation_request_throughput'])} | "
                  f"{_x(v['saturation_output_token_throughput'], 1)} | {_x(v['ttft_p99_ms_at_half'], 1)} | "
                  f"{'yes' if v['saturated_within_sweep'] else 'no'} |" for v in serving["variants"]]
        if serving.get("tuned_over_heuristic") is not None:
            lines += ["", f"Tuned over heuristic saturation throughput: {serving['tuned_over_heuristic']:.3f}x."]
    for name, n in (f.get("ncu") or {}).items():
        if not n:
            continue
        lines += ["", f"## ncu: {name} {n.get('problem') or ''}".rstrip(), "", f"{n['status']}: {n['reason']}", ""]
        if n["kernels"]:
            lines += ["| kernel | launches | duration us | memory % | SM % | occupancy % | regs | grid x block |",
                      "|---|---:|---:|---:|---:|---:|---:|---|"]
            lines += [f"| {x['kernel']} | {x['launches']} | {_x(x['duration_us'], 1)} | {_x(x['memory_pct'], 0)} | "
                      f"{_x(x['sm_pct'], 0)} | {_x(x['occupancy_pct'], 1)} | {x['registers']} | "
                      f"{x['grid']} x {x['block']} |" for x in n["kernels"]]
    return "\n".join(lines) + "\n"
