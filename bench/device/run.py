"""Run the GPU kit: every step in order, each with its own timeout inside one budget.

    python -m bench.device run [--budget 480] [--steps env,kernels] [--smoke] [--out DIR]

Everything a step makes lands in a work folder (default a fresh temporary one); at the end the
output folder (--out, else $OUT, else bench/device/out) gets `status.json` (each step: ok /
failed / timed out / not run, seconds, the commands' exit codes), `kit.tar.gz` (the work
folder: logs, results, tuned database, run directories), `tuned-configs.json` (the tuned
records, as `infertune db import` takes them) and `results.md` / `results.json` (the figures,
when the summary can be made). A step that fails or times out is recorded and the next one runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from .steps import Step, gpu_steps, smoke_steps

ROOT = Path(__file__).resolve().parents[2]
# Left for packing the results when the budget is spent.
RESERVE_S = 15.0
# Timing budget of each measurement in the kit: a 10 us kernel still gets its 1,000 repetitions.
KIT_ENV = {"INFERTUNE_REP_MS": "50", "INFERTUNE_WARMUP_MS": "10"}


def _kill(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def run_step(step: Step, work: Path, env: dict[str, str], deadline: float, models: Path | None = None) -> dict:
    """Run one step's commands until one fails or the deadline passes."""
    log_path = work / "logs" / f"{step.name}.log"
    started = time.monotonic()
    step_deadline = min(deadline, started + step.cap_s)
    row = {"name": step.name, "title": step.title, "status": "ok", "commands": [], "log": f"logs/{step.name}.log"}
    with log_path.open("w") as log:
        for command in step.commands:
            argv = [a.replace("{py}", sys.executable).replace("{work}", str(work))
                    .replace("{models}", str(models or ROOT / ".kitmodels")) for a in command.argv]
            left = step_deadline - time.monotonic()
            if left < 1:
                row["status"] = "timed out"
                break
            log.write(f"$ {' '.join(argv)}\n")
            log.flush()
            out = (work / command.stdout).open("w") if command.stdout else log
            t0 = time.monotonic()
            try:
                proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=log, start_new_session=True)
            except OSError as exc:  # the program is not installed (nvidia-smi, ncu): recorded, not raised
                log.write(f"could not start: {exc}\n")
                row["commands"].append({"argv": argv, "exit": None, "seconds": 0.0, "error": str(exc)})
                row["status"] = "failed"
                break
            try:
                code = proc.wait(timeout=left)
            except subprocess.TimeoutExpired:
                _kill(proc)
                code = None
            if command.stdout:
                out.close()
            row["commands"].append({"argv": argv, "exit": code, "seconds": round(time.monotonic() - t0, 2)})
            log.write(f"# exit {code} after {time.monotonic() - t0:.1f} s\n")
            log.flush()
            if code is None:
                row["status"] = "timed out"
                break
            if code != 0:
                row["status"] = "failed"
                break
    row["seconds"] = round(time.monotonic() - started, 2)
    return row


def pack(work: Path, dest: Path) -> None:
    with tarfile.open(dest, "w:gz") as tar:
        for path in sorted(work.rglob("*")):
            if path.is_file() and path.stat().st_size <= 8 << 20:
                tar.add(path, arcname=str(path.relative_to(work)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.device run", description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for all steps (default 480)")
    parser.add_argument("--steps", default=None, help="comma-separated subset of the steps, in their order")
    parser.add_argument("--smoke", action="store_true", help="every step at its CPU size (plumbing check)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default $OUT, else bench/device/out)")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default a new temporary folder)")
    parser.add_argument("--models", type=Path, default=ROOT / ".kitmodels",
                        help="packed models to unpack with synthetic weights (default .kitmodels)")
    args = parser.parse_args(argv)
    begun = time.monotonic()
    deadline = begun + args.budget - RESERVE_S
    steps = smoke_steps() if args.smoke else gpu_steps()
    if args.steps:
        wanted = [s.strip() for s in args.steps.split(",") if s.strip()]
        known = [s.name for s in steps]
        unknown = [w for w in wanted if w not in known]
        if unknown:
            print(f"unknown step {unknown[0]!r}; steps: {', '.join(known)}", file=sys.stderr)
            return 2
        steps = [s for s in steps if s.name in wanted]
    out = args.out or Path(os.environ.get("OUT") or ROOT / "bench/device/out")
    out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="infertune-kit-"))
    (work / "logs").mkdir(parents=True, exist_ok=True)
    (work / "runs").mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", INFERTUNE_RUNS=str(work / "runs"),
               INFERTUNE_DB=str(work / "tuned.db"), INFERTUNE_MODELS=str(work / "models"), **KIT_ENV)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(ROOT)) if p)
    status = {"kit": "infertune-gpu-kit/1", "smoke": args.smoke, "budget_s": args.budget,
              "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "settings": KIT_ENV, "steps": []}
    for step in steps:
        if deadline - time.monotonic() < 5:
            status["steps"].append({"name": step.name, "title": step.title, "status": "not run",
                                    "why": "budget spent", "seconds": 0.0, "commands": []})
            continue
        print(f"== {step.name}: {step.title} (cap {step.cap_s:.0f} s, "
              f"{deadline - time.monotonic():.0f} s left)", flush=True)
        row = run_step(step, work, env, deadline, args.models.resolve())
        status["steps"].append(row)
        print(f"   {row['status']} in {row['seconds']:.0f} s", flush=True)
        if row["status"] != "ok":
            tail = (work / row["log"]).read_text(errors="replace").splitlines()[-15:]
            print("\n".join("   | " + line[:200] for line in tail), flush=True)
    status["seconds"] = round(time.monotonic() - begun, 1)
    (work / "status.json").write_text(json.dumps(status, indent=2) + "\n")
    (out / "status.json").write_text(json.dumps(status, indent=2) + "\n")
    try:
        from .summary import summarize
        summary = summarize(work)
        (out / "results.md").write_text(summary["markdown"])
        (out / "results.json").write_text(json.dumps(summary["data"], indent=2, default=str) + "\n")
        print(summary["markdown"])
    except Exception as exc:  # noqa: BLE001 - the raw files still go back; ingest makes the summary there
        print(f"summary failed ({type(exc).__name__}: {exc}); the raw files are in kit.tar.gz", flush=True)
    exports = sorted((work / "tuned").glob("*.json"))
    if exports:  # the tuned records beside the tarball: `infertune db import` takes this file
        shutil.copyfile(exports[0], out / "tuned-configs.json")
    pack(work, out / "kit.tar.gz")
    print(f"wrote {out}/status.json and kit.tar.gz in {time.monotonic() - begun:.0f} s")
    return 0 if all(s["status"] == "ok" for s in status["steps"]) else 1
