"""The built-in server under load: saturation throughput and the p99 time to first token at
half of it, tuned configs against the heuristic's, measured in the same run.

    python -m bench.serving            # on a GPU: llama-3-8b-shaped synthetic model, bf16+cg,
                                       # tuned (--db) vs heuristic configs; exit 2 without a GPU
    python -m bench.serving --smoke    # anywhere: smollm2-synth, fp32 on the torch backend, CPU

For each variant: `infertune serve`'s app (infertune.open_target + create_app) on a thread at
127.0.0.1, then `infertune profile serve` (infertune.profile_serving) at offered Poisson rates
r0, 2 r0, 4 r0, ... (each level its own run directory), completions with token-id prompts of
--input-len tokens and --output-len new tokens (ignore_eos, so every request generates
exactly that many). The sweep stops at the first level the server cannot keep up with: any
error, a median end-to-end latency over KNEE (2x) that of the first (lightest) level (the
queue is growing), or achieved request throughput below SHORT (75%) of the offered rate (a
level of N requests over a span of about N / rate seconds ends a request's latency later, so
even an idle server reads a little under the offered rate at small N). The
saturation throughput is the highest achieved request throughput of the sweep; then one more
level at half of it gives the p99 TTFT "at half load" (a latency a user can plan on, where the
queue is short). The ratio of tuned to heuristic saturation throughput is the headline.

On the CPU (--smoke) the torch backend runs (the Triton interpreter's speed says nothing),
so tuned vs heuristic is not compared there: the figures check the script and the plumbing.

Writes results.json and results.md under bench/results/serving-<device>-<date>/ (or --out),
with each level's run directory under runs/ (`infertune report` draws them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import sys
from pathlib import Path
from typing import Any

from bench.common import slug, write_results

KNEE = 2.0    # median e2e over the lightest level's: requests are waiting in a queue
SHORT = 0.75  # achieved / offered below this: the server does not keep up


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, torch backend (checks the script)")
    p.add_argument("--model", default=None, help="default: llama-3-8b on a GPU, smollm2-synth with --smoke")
    p.add_argument("--variants", default=None,
                   help="comma-separated; default: bf16+cg:triton,bf16+cg:triton-default on a GPU, fp32:torch with --smoke")
    p.add_argument("--db", default=None, help="the tuned config database of the triton variant")
    p.add_argument("--rate", type=float, default=None, help="first offered rate, requests/s (default 2 GPU, 0.5 CPU)")
    p.add_argument("--max-levels", type=int, default=None, help="most rates in a sweep (default 7 GPU, 3 CPU)")
    p.add_argument("--requests", type=int, default=None, help="requests per level (default 48 GPU, 6 CPU)")
    p.add_argument("--input-len", default=None, help="default uniform:64,512 GPU, uniform:8,24 CPU")
    p.add_argument("--output-len", default=None, help="default fixed:128 GPU, fixed:6 CPU")
    p.add_argument("--max-batch", type=int, default=None, help="decode slots (default 16 GPU, 4 CPU)")
    p.add_argument("--max-len", type=int, default=None, help="positions per slot (default 1024 GPU, 64 CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def _defaults(args: argparse.Namespace, gpu: bool) -> dict[str, Any]:
    def pick(value, on_gpu, on_cpu):
        return value if value is not None else (on_gpu if gpu else on_cpu)

    return {
        "model": pick(args.model, "llama-3-8b", "smollm2-synth"),
        "variants": [v.strip() for v in pick(args.variants, "bf16+cg:triton,bf16+cg:triton-default",
                                             "fp32:torch").split(",") if v.strip()],
        "rate": pick(args.rate, 2.0, 0.5), "max_levels": pick(args.max_levels, 7, 3),
        "requests": pick(args.requests, 48, 6), "input_len": pick(args.input_len, "uniform:64,512", "uniform:8,24"),
        "output_len": pick(args.output_len, "fixed:128", "fixed:6"), "max_batch": pick(args.max_batch, 16, 4),
        "max_len": pick(args.max_len, 1024, 64),
    }


def level_of(run_dir: Path) -> dict[str, Any]:
    """The one level of a profile-serve run directory."""
    run = json.loads((run_dir / "run.json").read_text())
    return run["serving"]["levels"][0]


def saturated(level: dict[str, Any], offered: float, light_e2e_ms: float | None) -> bool:
    """The server did not keep up at `offered` requests/s: errors, median latency past the knee
    of the lightest level's `light_e2e_ms`, or throughput short of the offered rate. Pure."""
    if sum((level.get("errors") or {}).values()) > 0:
        return True
    e2e = level.get("e2e_p50_ms")
    if light_e2e_ms and e2e is not None and e2e > KNEE * light_e2e_ms:
        return True
    return (level.get("request_throughput") or 0.0) < SHORT * offered


def _p(stats: dict[str, Any] | None, q: str) -> float | None:
    return None if not stats else stats.get(q)


def sweep_variant(variant: str, cfg: dict[str, Any], db: str | None, out: Path, seed: int) -> dict[str, Any]:
    import infertune

    target = infertune.open_target(cfg["model"], variant, db, max_batch=cfg["max_batch"], max_queue=4 * cfg["requests"],
                                   max_len=cfg["max_len"])
    levels, rate = [], cfg["rate"]
    with infertune.BackgroundServer(infertune.create_app(target)) as server:
        def measure(offered: float, tag: str) -> dict[str, Any]:
            path = infertune.profile_serving(
                server.url, target.name, endpoint="completions", rates=[offered], requests=cfg["requests"],
                input_len=cfg["input_len"], output_len=cfg["output_len"], seed=seed, label=variant,
                out=out / "runs" / f"{slug(variant)}-{tag}")
            level = level_of(path)
            row = {"offered": offered, "run": str(path.relative_to(out)) if path.is_relative_to(out) else str(path),
                   "request_throughput": level.get("request_throughput"),
                   "output_token_throughput": level.get("output_token_throughput"),
                   "completed": level.get("completed"), "requests": level.get("requests"),
                   "errors": level.get("errors") or {},
                   "ttft_p50_ms": _p(level.get("ttft_ms"), "p50"), "ttft_p99_ms": _p(level.get("ttft_ms"), "p99"),
                   "itl_p50_ms": _p(level.get("itl_ms"), "p50"), "itl_p99_ms": _p(level.get("itl_ms"), "p99"),
                   "e2e_p50_ms": _p(level.get("e2e_ms"), "p50")}
            print(f"  {variant} at {offered:g} req/s: {row['request_throughput'] or 0:.2f} req/s achieved, "
                  f"TTFT p99 {row['ttft_p99_ms'] or float('nan'):.1f} ms", flush=True)
            return row

        for i in range(cfg["max_levels"]):
            row = measure(rate, f"rate{i}")
            levels.append(row)
            if saturated(row, rate, levels[0]["e2e_p50_ms"] if i else None):
                break
            rate *= 2
        best = max(levels, key=lambda r: r["request_throughput"] or 0.0)
        saturation = best["request_throughput"] or 0.0
        half = measure(saturation / 2, "half") if saturation > 0 else None
    report = target.config_report()
    target.stop()
    return {"variant": variant, "levels": levels, "saturation_request_throughput": saturation,
            "saturation_output_token_throughput": best["output_token_throughput"],
            "saturated_within_sweep": saturated(levels[-1], levels[-1]["offered"],
                                                levels[0]["e2e_p50_ms"] if len(levels) > 1 else None),
            "half_load": half, "ttft_p99_ms_at_half": half["ttft_p99_ms"] if half else None,
            "configs": {k: report.get(k) for k in ("backend", "database", "warning", "by_source", "unplanned")},
            "graph_error": getattr(target.engine, "graph_error", None)}


def markdown(data: dict[str, Any]) -> str:
    setup = (f"{data['date']}; completions, input {data['input_len']} tokens, output {data['output_len']} tokens "
             f"(ignore_eos), {data['requests']} requests per level, Poisson arrivals (seed {data['seed']}), "
             f"{data['max_batch']} decode slots of {data['max_len']} positions.")
    lines = [f"# Serving load: {data['model']} on {data['device']}", "", setup, ""]
    if data.get("note"):
        lines += [data["note"], ""]
    lines += ["| variant | saturation (req/s) | output tok/s there | TTFT p99 at half load (ms) | saturated in sweep |",
              "|---|---:|---:|---:|---|"]
    for v in data["variants"]:
        half = v["ttft_p99_ms_at_half"]
        lines.append(f"| {v['variant']} | {v['saturation_request_throughput']:.2f} | "
                     f"{v['saturation_output_token_throughput'] or 0:.1f} | "
                     f"{'-' if half is None else f'{half:.1f}'} | "
                     f"{'yes' if v['saturated_within_sweep'] else 'no (the saturation figure is a lower bound)'} |")
    if data.get("tuned_over_heuristic") is not None:
        lines += ["", f"Tuned over heuristic saturation throughput: {data['tuned_over_heuristic']:.3f}x (same run)."]
    for v in data["variants"]:
        lines += ["", f"## {v['variant']}", "",
                  "| offered (req/s) | achieved (req/s) | out tok/s | TTFT p50 | TTFT p99 | ITL p50 | ITL p99 | errors |",
                  "|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in v["levels"] + ([v["half_load"]] if v["half_load"] else []):
            def f(x, d=1):
                return "-" if x is None else f"{x:.{d}f}"
            errors = ", ".join(f"{k} {n}" for k, n in r["errors"].items()) or "-"
            lines.append(f"| {f(r['offered'], 2)} | {f(r['request_throughput'], 2)} | {f(r['output_token_throughput'])} | "
                         f"{f(r['ttft_p50_ms'])} | {f(r['ttft_p99_ms'])} | {f(r['itl_p50_ms'])} | {f(r['itl_p99_ms'])} | "
                         f"{errors} |")
        c = v["configs"]
        text = ("none (torch backend)" if c.get("backend") == "torch" else
                f"backend {c.get('backend')}, by source {c.get('by_source')}, resolved after start {c.get('unplanned')}")
        lines += ["", f"kernel configs: {text}" + (f"; CUDA graph not used: {v['graph_error']}" if v.get("graph_error") else "")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    from kernels.device import current_device

    device = current_device()
    gpu = device.kind == "cuda"
    if not gpu and not args.smoke:
        print("bench.serving: no CUDA GPU here; run with --smoke for the CPU-sized check", file=sys.stderr)
        return 2
    cfg = _defaults(args, gpu)
    now = dt.datetime.now()
    out = args.out or Path("bench/results") / f"serving-{slug(device.label)}-{now:%Y-%m-%d}"
    out.mkdir(parents=True, exist_ok=True)
    print(f"bench.serving: {cfg['model']} on {device.label}, variants {', '.join(cfg['variants'])}", flush=True)
    results = []
    for variant in cfg["variants"]:
        results.append(sweep_variant(variant, cfg, args.db, out, args.seed))
        gc.collect()  # the last variant's model (16 GB at llama-3-8b bf16) goes before the next loads
        if gpu:
            import torch

            torch.cuda.empty_cache()
    data: dict[str, Any] = {"device": device.label, "gpu": gpu, "date": now.isoformat(timespec="seconds"),
                            "seed": args.seed, **{k: v for k, v in cfg.items() if k != "variants"}, "variants": results}
    tuned = next((r for r in results if r["variant"].endswith(":triton")), None)
    base = next((r for r in results if r["variant"].endswith(":triton-default")), None)
    if tuned and base and base["saturation_request_throughput"]:
        data["tuned_over_heuristic"] = tuned["saturation_request_throughput"] / base["saturation_request_throughput"]
    if not gpu:
        data["note"] = ("CPU run (torch backend): these figures check the script; they say nothing about GPU "
                        "serving speed.")
    write_results(out, data, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
