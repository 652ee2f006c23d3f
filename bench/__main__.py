"""Every headline figure in one run: `python -m bench [--out DIR] [--parts ...]`.

Parts (each also runs alone as `python -m bench.<part>`):

- kernels   kernels vs torch.matmul at LLM shapes (bench/kernels_vs_torch.py)
- tuning    recorded grids, TPE vs random on the replays, tuned vs default vs torch,
            tuning cost per trial (bench/tuning.py)
- runtime   decode / prefill tokens/s vs transformers and the bandwidth roofline; MiniLM
            embeddings/s vs sentence-transformers (bench/runtime.py)
- overheads database lookup and NVTX range costs (bench/overheads.py)
- samplers  lfbo vs TPE vs random on recorded grids and synthetic replays: trials to within
            1/3/5% of the best over 10 seeds (bench/samplers.py; replays, no GPU needed)
- warm_start trials to within 1/3/5% of the best with and without warm start, on replays
            (bench/warm_start.py)

On a GPU every part runs at full size; without one the GPU parts run their `--smoke` sizes
on the CPU (figures labelled CPU / interpreter: they check the machinery, not the speed).
Writes bench/results/bench-<device>-<date>/ (or --out): one folder per part, and
results.json / results.md that gather them, with the device, driver, versions and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import time
from pathlib import Path

PARTS = ("kernels", "tuning", "runtime", "overheads", "samplers", "warm_start", "serving")


def _run_part(part: str, out: Path, gpu: bool) -> int:
    smoke = [] if gpu else ["--smoke"]
    if part == "kernels":
        from bench import kernels_vs_torch

        return kernels_vs_torch.main([*smoke, "--out", str(out)])
    if part == "tuning":
        from bench import tuning

        return tuning.main([*smoke, "--out", str(out)])
    if part == "runtime":
        from bench import runtime

        return runtime.main([*smoke, "--out", str(out)])
    if part == "samplers":
        from bench import samplers

        return samplers.main([*smoke, "--out", str(out)])
    if part == "serving":
        from bench import serving

        return serving.main([*smoke, "--out", str(out)])
    if part == "warm_start":
        from bench import warm_start

        return warm_start.main([*smoke, "--out", str(out)])
    from bench import overheads

    return overheads.main(["--out", str(out)])


def main(argv: list[str] | None = None) -> int:
    import torch

    from infertune.environment import collect_environment

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="default bench/results/bench-<device>-<date>/")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        parser.error(f"unknown part {unknown[0] if unknown else '(none)'}; parts: {', '.join(PARTS)}")
    gpu = torch.cuda.is_available()
    env = collect_environment().to_dict()
    now = dt.datetime.now(dt.timezone.utc)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", env["device"]["name"]).strip("-").lower()
    out = args.out or Path("bench/results") / f"bench-{slug}-{now:%Y-%m-%d}"
    out.mkdir(parents=True, exist_ok=True)
    summary = {"environment": env, "date": now.isoformat(timespec="seconds"), "gpu": gpu, "parts": {}}
    sections = [f"# infertune benchmarks — {env['device']['label']}", "",
                f"Date {now:%Y-%m-%d}; driver {env['driver']}; torch {env['torch']}; triton {env['triton']}.",
                ""]
    if not gpu:
        sections += ["**No GPU: every part ran its small CPU sizes (Triton interpreter where our kernels ran). "
                     "These figures check the benchmark machinery and say nothing about GPU speed.**", ""]
    worst = 0
    for part in parts:
        folder = out / part
        start = time.perf_counter()
        code = _run_part(part, folder, gpu)
        seconds = time.perf_counter() - start
        worst = max(worst, code)
        result_file = folder / "results.json"
        summary["parts"][part] = {"exit": code, "seconds": seconds, "folder": folder.name,
                                  "results": json.loads(result_file.read_text()) if result_file.is_file() else None}
        md = folder / "results.md"
        sections += [f"## {part} (exit {code}, {seconds:.0f} s; [{part}/results.md]({part}/results.md))", ""]
        if md.is_file():
            body = md.read_text().splitlines()
            sections += [re.sub(r"^(#+) ", r"#\1 ", line) for line in body] + [""]
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "results.md").write_text("\n".join(sections))
    print(f"wrote {out / 'results.md'} and {out / 'results.json'}")
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
