"""Regenerate the small fixture runs that tests/test_reports*.py build reports from.

    .venv/bin/python tests/data/runs/make_fixtures.py            # all of them, into tests/data/runs/
    .venv/bin/python tests/data/runs/make_fixtures.py --out DIR  # somewhere else

Real runs, made on this machine's CPU with our own CLI (fast timing settings):

    kernel-a/    infertune profile kernel matmul --shape 13x96x64 --dtype fp16 --variants torch,default,tuned
    kernel-b/    a copy of kernel-a with edited timings: `default` >= 1.6x slower (beyond the noise),
                 `tuned` 1% slower (within the noise) -- the comparison test
    model/       infertune profile model <tiny random llama> --variants fp32,fp32+w8 --batch 1,2
    autotune/    infertune autotune matmul --shape 13x96x64 --dtype fp16 --trials 12
    quant/       infertune autotune matmul --shape 8x64x256 --dtype fp16 --quant int8,int4-g32,int4-g128 --trials 6
    quant-plan/  infertune.quant_plan.search_plan on a tiny synthetic llama (what `autotune --quant-plan` writes)

Synthetic (this machine has no GPU, NVML, nsys or ncu):

    gpu-synthetic/  kernel-a's rows re-labelled as an H100 run with datasheet peaks, telemetry summarized by
                    profilers.nvml.summarize() from fake samples (telemetry.csv beside it), and nsys / ncu results
                    parsed from the documented sample CSVs in tests/data/nsys and tests/data/ncu. Its notes say so.
    hostile/        kernel-a with a kernel and variant named `<script>alert(1)</script>&"'` (the escaping test)
                    and artifacts named `javascript:alert(6)`, `../../../../etc/passwd`, ... (never linked).

Each run.json is validated against reports/run_schema.json when written. After regenerating, update the
Markdown snapshots: UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_reports.py.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
sys.path.insert(0, str(ROOT))

HOSTILE = "<script>alert(1)</script>&\"'"
HOSTILE_ARTIFACTS = ["javascript:alert(6)", "../../../../etc/passwd", "/etc/passwd",
                     "data:text/html,<script>alert(7)</script>", "https://example.com/x.html"]
SYNTHETIC_NOTE = "synthetic fixture: telemetry and Nsight data built from documented samples, not captured on a GPU"
FAST = {"INFERTUNE_WARMUP_MS": "0", "INFERTUNE_REP_MS": "0", "INFERTUNE_MIN_REPS_CPU": "3"}


def cli(*args: str) -> None:
    env = {**os.environ, **FAST}
    subprocess.run([sys.executable, "-m", "infertune", *args], check=True, env=env, cwd=ROOT,
                   stdout=subprocess.DEVNULL)


def load(path: Path) -> dict:
    return json.loads((path / "run.json").read_text())


def save(path: Path, run: dict) -> None:
    from infertune.rundir import write_run

    path.mkdir(parents=True, exist_ok=True)
    write_run(path, run)


def scrub(path: Path, run: dict) -> None:
    """Keep fixtures small and stable: drop local paths from the recorded command."""
    run["command"] = [("<tmp>/" + Path(a).name) if a.startswith(("/", str(ROOT))) else a for a in run["command"]]
    save(path, run)


def tiny_llama(path: Path) -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=37, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                                   rope_theta=10000.0, tie_word_embeddings=False)
    transformers.LlamaForCausalLM(cfg).save_pretrained(path, safe_serialization=True)
    return path


def scale_timing(row: dict, factor: float) -> None:
    t = row["timing"]
    for key in ("median_ms", "p10_ms", "p90_ms", "min_ms", "mean_ms"):
        if key in t:
            t[key] *= factor
    for key in ("tflops", "gbps"):
        if key in row:
            row[key] /= factor


def make_kernel_b(out: Path) -> None:
    run = load(out / "kernel-a")
    run["name"] = "matmul"
    by = {r["variant"]: r for r in run["measurements"]}
    t = by["default"]["timing"]
    scale_timing(by["default"], max(1.6, 1.1 * t["p90_ms"] / t["p10_ms"]))  # clear of the noise, whatever it was
    scale_timing(by["tuned"], 1.01)
    base = by.get("torch")
    for r in run["measurements"]:
        if base and r is not base:
            r["speedup_vs_baseline"] = base["timing"]["median_ms"] / r["timing"]["median_ms"]
    run["notes"].append("fixture: a copy of kernel-a with `default` made >= 1.6x slower and `tuned` 1% slower")
    save(out / "kernel-b", run)


def make_hostile(out: Path) -> None:
    run = load(out / "kernel-a")
    run["name"] = HOSTILE
    run["baseline"] = HOSTILE
    run["variants"] = [HOSTILE if v == "torch" else v for v in run["variants"]]
    for r in run["measurements"]:
        r["kernel"] = HOSTILE
        if r["variant"] == "torch":
            r["variant"] = HOSTILE
            r["baseline_name"] = HOSTILE
        if r.get("config"):
            r["config"] = r["config"] + "," + HOSTILE
    run["notes"].append("fixture: kernel and variant names are a hostile string " + HOSTILE)
    run["artifacts"] += HOSTILE_ARTIFACTS  # none of them may become a link
    save(out / "hostile", run)


def fake_samples():
    from profilers.nvml import Sample, decode_reasons

    samples = []
    for i in range(40):
        t = i * 0.05
        hot = i >= 25
        sm = 1980.0 if not hot else 1755.0
        mask = 0x4 if hot else 0x0  # sw power cap while hot
        reasons = tuple(decode_reasons(mask))
        samples.append(Sample(t, {"sm_clock_mhz": sm, "mem_clock_mhz": 2619.0, "power_w": 310.0 + 8.0 * i,
                                  "energy_mj": 1_000_000 + int(1000 * (310 + 8 * i) * t),
                                  "temperature_c": 52.0 + 0.3 * i, "gpu_util_pct": 97, "mem_util_pct": 41,
                                  "memory_used_mib": 2048.0, "throttle_mask": mask}, reasons))
    return samples


def make_gpu_synthetic(out: Path) -> None:
    from profilers import ncu, nsys
    from profilers.nvml import summarize
    from profilers.peaks import datasheet_peaks

    run = load(out / "kernel-a")
    path = out / "gpu-synthetic"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    run["name"] = "matmul-h100-synthetic"
    run["environment"]["device"] = {"kind": "cuda", "name": "NVIDIA H100 80GB HBM3", "capability": [9, 0],
                                    "smem_per_block": 232448, "sm_count": 132, "total_memory": 85520809984,
                                    "interpreter": False, "label": "NVIDIA H100 80GB HBM3 (sm_90)",
                                    "compute_capability": "9.0"}
    run["environment"]["driver"] = "550.54.15"
    run["environment"]["cuda_runtime"] = "12.4"
    peaks = datasheet_peaks("NVIDIA H100 80GB HBM3")
    run["peaks"] = peaks.to_dict() if hasattr(peaks, "to_dict") else peaks
    # GPU-like timings for the same problem (microseconds, CUDA events).
    fake_ms = {"torch": 0.0061, "default": 0.0074, "tuned": 0.0052}
    for r in run["measurements"]:
        ms = fake_ms[r["variant"]]
        t = r["timing"]
        t.update({"median_ms": ms, "p10_ms": ms * 0.97, "p90_ms": ms * 1.04, "min_ms": ms * 0.95, "mean_ms": ms,
                  "reps": 200, "method": "cuda-events", "l2_flushed": True, "interpreter": False})
        r["tflops"] = r["flops"] / (ms * 1e-3) / 1e12
        r["gbps"] = r["bytes"] / (ms * 1e-3) / 1e9
        bw = run["peaks"]["bandwidth_gbps"]
        tf = (run["peaks"].get("tflops") or {}).get("fp16")
        r["pct_peak_flops"] = 100 * r["tflops"] / tf if tf else None
        r["pct_peak_bandwidth"] = 100 * r["gbps"] / bw if bw else None
        r["bound"] = "latency"
        r["speedup_vs_baseline"] = fake_ms["torch"] / ms
    # telemetry
    samples = fake_samples()
    keys = sorted({k for s in samples for k in s.to_dict()})
    with (path / "telemetry.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for s in samples:
            d = s.to_dict()
            writer.writerow({k: ";".join(d[k]) if isinstance(d.get(k), list) else d.get(k) for k in keys})
    run["telemetry"] = {"available": True, "reason": None, "summary": summarize(samples),
                        "samples_file": "telemetry.csv"}
    # nsys from the documented sample CSVs
    data = ROOT / "tests" / "data"
    new = data / "nsys" / "new"
    kernels_ = nsys.parse_kernel_sum((new / "cuda_gpu_kern_sum.csv").read_text())
    ranges = nsys.parse_nvtx_sum((new / "nvtx_sum.csv").read_text())
    range_kernels = nsys.parse_nvtx_kern_sum((new / "nvtx_kern_sum.csv").read_text())
    projections = nsys.parse_nvtx_gpu_proj_sum((new / "nvtx_gpu_proj_sum.csv").read_text())
    nres = nsys.NsysResult("ok", "", kernels=kernels_, ranges=ranges, range_kernels=range_kernels,
                           projections=projections,
                           overhead=nsys.launch_overhead(ranges, range_kernels, projections),
                           notes=[SYNTHETIC_NOTE])
    run["profilers"]["nsys"] = nres.to_dict()
    cres = ncu.NcuResult("ok", "", launches=ncu.parse_raw_csv((data / "ncu" / "raw.csv").read_text()))
    run["profilers"]["ncu"] = cres.to_dict()
    run["profilers"]["torch_trace"] = {"status": "skipped", "reason": "not requested"}
    run["artifacts"] = ["telemetry.csv"]
    run["notes"] = [SYNTHETIC_NOTE]
    save(path, run)


def make_quant_plan(out: Path) -> None:
    import torch

    from infertune.environment import collect_environment
    from infertune.quant_plan import search_plan
    from infertune.rundir import skeleton
    from runtime.llama import synthetic_weights
    from runtime.model_config import ModelConfig

    tiny = ModelConfig(family="llama", hidden=64, intermediate=96, layers=3, heads=4, kv_heads=2, head_dim=16,
                       vocab=101, max_positions=256, norm_eps=1e-5, act="silu", rope_theta=10000.0)
    torch.set_num_threads(1)
    weights = synthetic_weights(tiny, seed=7)
    tokens = torch.randint(0, tiny.vocab, (2, 64), generator=torch.Generator().manual_seed(7))
    result, _plan = search_plan("tiny", tiny, weights, tokens, dtype="fp32", device=torch.device("cpu"), trials=10,
                                seed=1, max_ppl_increase=0.05, storage=None)
    run = skeleton("autotune", "quant-plan-tiny", ["infertune", "autotune", "--model", "tiny", "--quant-plan",
                                                     "--trials", "10"], collect_environment().to_dict())
    run["tuning"] = [{"quant_plan": result.to_dict()}]
    run["notes"] = ["fixture: the plan search on a tiny synthetic llama (random weights)"]
    save(out / "quant-plan", run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(HERE))
    parser.add_argument("--only", default=None, help="comma-separated fixture names")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None

    def want(name: str) -> bool:
        return only is None or name in only

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        if want("kernel-a"):
            shutil.rmtree(out / "kernel-a", ignore_errors=True)
            cli("profile", "kernel", "matmul", "--shape", "13x96x64", "--dtype", "fp16", "--variants",
                "torch,default,tuned", "--db", str(t / "k.db"), "--out", str(out / "kernel-a"))
            scrub(out / "kernel-a", load(out / "kernel-a"))
        if want("model"):
            shutil.rmtree(out / "model", ignore_errors=True)
            model_dir = tiny_llama(t / "tiny-llama")
            cli("profile", "model", str(model_dir), "--variants", "fp32,fp32+w8", "--batch", "1,2", "--prompt-len",
                "5", "--gen", "3", "--out", str(out / "model"))
            scrub(out / "model", load(out / "model"))
        if want("autotune"):
            shutil.rmtree(out / "autotune", ignore_errors=True)
            cli("autotune", "matmul", "--shape", "13x96x64", "--dtype", "fp16", "--trials", "12", "--db",
                str(t / "a.db"), "--out", str(out / "autotune"))
            scrub(out / "autotune", load(out / "autotune"))
        if want("quant"):
            shutil.rmtree(out / "quant", ignore_errors=True)
            cli("autotune", "matmul", "--shape", "8x64x256", "--dtype", "fp16", "--quant", "int8,int4-g32,int4-g128",
                "--trials", "6", "--db", str(t / "q.db"), "--out", str(out / "quant"))
            scrub(out / "quant", load(out / "quant"))
        if want("quant-plan"):
            shutil.rmtree(out / "quant-plan", ignore_errors=True)
            make_quant_plan(out)
    if want("kernel-b"):
        make_kernel_b(out)
    if want("hostile"):
        make_hostile(out)
    if want("gpu-synthetic"):
        make_gpu_synthetic(out)
    for leftover in out.rglob("trace.json"):
        leftover.unlink()
    print(f"fixture runs written under {out}")


if __name__ == "__main__":
    main()
