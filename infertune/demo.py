"""The main job end to end (`make demo`, `infertune demo`): tune the kernels the built-in
decoder launches, run generation with and without the tuned database, an embedding job,
profile a tuned kernel, and write one report.

Each step is our own CLI in a subprocess (`python -m infertune ...`): what the demo does is
exactly what a user can type, and one step's failure is reported without losing the others'
run directories. On a GPU the sizes and budgets are the real ones; without one they shrink
to what the Triton interpreter finishes in minutes (about 30 s per SmolLM2 forward on two
CPU cores), and the report says the timings are CPU figures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Plan:
    """The sizes of one demo."""

    dtype: str
    batches: str
    seq: int
    gen: int
    trials: int
    retime: int
    problem_timeout_s: int
    generate_variants: str
    embed_variants: str
    kernel_shape: str
    profile_flags: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


GPU = Plan(dtype="bf16", batches="1,8", seq=128, gen=128, trials=40, retime=3, problem_timeout_s=120,
           generate_variants="bf16:triton,bf16:triton-default,bf16+w8:triton,bf16+w4g128:triton,bf16:torch",
           embed_variants="bf16:triton,bf16:torch", kernel_shape="8x3072x576",
           profile_flags=("--telemetry", "--torch-trace"))
# CPU: prompts of 4 tokens, 2 new ones, 2 trials a problem bounded by 15 s, no re-timing,
# fast timing: 34 problems took 377 s with re-timing and 20 s bounds on two cores; one launch
# of SmolLM2's 49152 x 576 lm_head alone takes the interpreter ~10 s.
CPU = Plan(dtype="fp32", batches="1,8", seq=4, gen=2, trials=2, retime=0, problem_timeout_s=15,
           generate_variants="fp32:triton,fp32:triton-default", embed_variants="fp32:torch",
           kernel_shape="8x3072x576", profile_flags=("--telemetry", "--torch-trace"),
           env={"INFERTUNE_WARMUP_MS": "0", "INFERTUNE_REP_MS": "0", "INFERTUNE_MIN_REPS_CPU": "2"})


@dataclass
class Step:
    name: str
    args: list[str]
    run_dir: Path | None = None
    seconds: float = 0.0
    returncode: int | None = None


def steps(plan: Plan, out: Path) -> list[Step]:
    db = str(out / "tuning.db")
    model = "smollm2-135m"
    return [
        Step("environment", ["env"]),
        Step("tune the decoder's kernels",
             ["autotune", "--model", model, "--batch", plan.batches, "--seq", str(plan.seq), "--gen", str(plan.gen),
              "--dtype", plan.dtype, "--trials", str(plan.trials), "--retime", str(plan.retime),
              "--timeout", str(plan.problem_timeout_s),
              "--db", db, "--out", str(out / "autotune")], out / "autotune"),
        Step("generate with and without the tuned database",
             ["profile", "model", model, "--variants", plan.generate_variants, "--batch", "1",
              "--prompt-len", str(plan.seq), "--gen", str(plan.gen), "--db", db, "--out", str(out / "generate"),
              *(() if plan is GPU else ("--no-quality",)), *plan.profile_flags], out / "generate"),
        Step("an embedding job",
             ["profile", "model", "minilm-l6", "--variants", plan.embed_variants, "--batch", "8,32",
              "--prompt-len", "32", "--db", db, "--out", str(out / "embed")], out / "embed"),
        Step("profile one tuned kernel",
             ["profile", "kernel", "matmul", "--shape", plan.kernel_shape, "--dtype", plan.dtype,
              "--variants", "torch,default,tuned", "--db", db, "--out", str(out / "kernel"), *plan.profile_flags],
             out / "kernel"),
        Step("generate text (tuned configs where the backend uses them)",
             ["generate", "--model", model, "--prompt", "What is the capital of France?", "--max-new-tokens", "12",
              "--db", db]),
    ]


def run_demo(out: Path, *, gpu: bool, echo=print) -> tuple[list[Step], Path | None]:
    """Run every step; then the report over the run directories that were written."""
    plan = GPU if gpu else CPU
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **plan.env}
    done = []
    for step in steps(plan, out):
        echo(f"\n== {step.name}: infertune {' '.join(step.args)}")
        start = time.perf_counter()
        step.returncode = subprocess.run([sys.executable, "-m", "infertune", *step.args], env=env,
                                         check=False).returncode
        step.seconds = time.perf_counter() - start
        echo(f"== {step.name}: exit {step.returncode} in {step.seconds:.0f} s")
        done.append(step)
    runs = [str(s.run_dir) for s in done if s.run_dir is not None and (s.run_dir / "run.json").is_file()]
    report = None
    if runs:
        for target in ("report.html", "report.md"):
            code = subprocess.run([sys.executable, "-m", "infertune", "report", *runs, "-o", str(out / target)],
                                  env=env, check=False).returncode
            if code == 0 and target == "report.html":
                report = out / target
    return done, report
