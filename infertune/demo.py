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

import dataclasses
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError

# The model whose kernels the demo tunes, and its synthetic stand-in (same shapes, random
# weights, no tokenizer) where the real file is absent, e.g. on a GPU machine with no network.
MODEL, MODEL_SHAPES = "smollm2-135m", "smollm2-synth"
EMBED_MODEL = "minilm-l6"
DEFAULT_GPU_BUDGET_S = 480.0
# Once per autotune command: the timing worker and 8 compile processes (~10-15 s on an H200 host).
TUNE_STARTUP_S = 20.0
# Below this a problem's search is mostly its first compile: leave batch sizes out instead.
MIN_PROBLEM_S = 5.0
# The budget's last seconds are the report's.
REPORT_RESERVE_S = 30.0


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
    # Seconds the steps other than tuning take, estimated: under --budget the tuning gets the rest.
    fixed_s: float = 200.0


GPU = Plan(dtype="bf16", batches="1,8", seq=128, gen=128, trials=40, retime=3, problem_timeout_s=120,
           generate_variants="bf16:triton,bf16:triton-default,bf16+w8:triton,bf16+w4g128:triton,bf16:torch",
           embed_variants="bf16:triton,bf16:torch", kernel_shape="8x3072x576",
           profile_flags=("--telemetry", "--torch-trace"),
           # Not measured yet (no demo has run on a GPU): 5 generate variants with quality ~120 s,
           # the embedding job ~30 s, the kernel profile ~20 s, generate ~15 s, the report ~15 s.
           fixed_s=200.0)
# CPU: prompts of 4 tokens, 2 new ones, 2 trials a problem bounded by 15 s, no re-timing,
# fast timing: 34 problems took 377 s with re-timing and 20 s bounds on two cores; one launch
# of SmolLM2's 49152 x 576 lm_head alone takes the interpreter ~10 s.
CPU = Plan(dtype="fp32", batches="1,8", seq=4, gen=2, trials=2, retime=0, problem_timeout_s=15,
           generate_variants="fp32:triton,fp32:triton-default", embed_variants="fp32:torch",
           kernel_shape="8x3072x576", profile_flags=("--telemetry", "--torch-trace"),
           env={"INFERTUNE_WARMUP_MS": "0", "INFERTUNE_REP_MS": "0", "INFERTUNE_MIN_REPS_CPU": "2"},
           # Two cores: the steps after tuning took about 4 minutes of the demo's 10.
           fixed_s=240.0)


@dataclass
class Step:
    name: str
    args: list[str]
    run_dir: Path | None = None
    seconds: float = 0.0
    returncode: int | None = None
    cut: bool = False  # stopped, or never started, because the budget ran out


def parse_duration(text: str) -> float:
    """'8m', '90s', '1h', '480' (seconds) -> seconds. Raises UsageError."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text or "")
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"a budget is a positive duration such as 8m, 90s or 480; got {text!r}")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def count_problems(model: str, plan: Plan, batches: str) -> int:
    """How many (kernel, problem) pairs `autotune --model` tunes at these batch sizes."""
    from .model_autotune import model_problems

    sizes = [int(b) for b in batches.split(",")]
    return len(model_problems(model, batches=sizes, seq=plan.seq, gen=plan.gen, dtype=plan.dtype, quant=None))


def fit(plan: Plan, budget_s: float, count: Callable[[str], int]) -> tuple[Plan, list[str]]:
    """The plan scaled to `budget_s`: the tuning gets what the other steps leave, spread over
    its problems as each problem's --timeout; batch sizes are left out (last first) while a
    problem would get under MIN_PROBLEM_S. Returns the plan and lines saying what was cut."""
    tune_s = budget_s - plan.fixed_s - TUNE_STARTUP_S - REPORT_RESERVE_S
    batches = plan.batches.split(",")
    notes: list[str] = []
    while True:
        problems = count(",".join(batches))
        per = tune_s / problems if problems else 0.0
        if per >= MIN_PROBLEM_S or len(batches) == 1:
            break
        notes.append(f"batch {batches[-1]} left out of tuning: {problems} problems would get {max(per, 0):.1f} s each")
        batches = batches[:-1]
    timeout = int(min(plan.problem_timeout_s, max(1.0, per)))
    if per < MIN_PROBLEM_S:
        notes.append(f"the budget leaves {max(tune_s, 0):.0f} s for tuning: {problems} problems get {timeout} s each, "
                     "too little for most to finish a trial; give more (--budget)")
    elif timeout < plan.problem_timeout_s:
        notes.append(f"tuning: {problems} problems x {timeout} s of search each (unbudgeted: "
                     f"{plan.problem_timeout_s} s), up to {plan.trials} trials each")
    return dataclasses.replace(plan, batches=",".join(batches), problem_timeout_s=timeout), notes


def models_present() -> tuple[bool, bool]:
    """(the decoder's file is here, the embedding model's files are here)."""
    from runtime import store

    return store.model_path(MODEL) is not None, store.model_path(EMBED_MODEL) is not None


def steps(plan: Plan, out: Path, *, real_decoder: bool = True, embedder: bool = True) -> list[Step]:
    db = str(out / "tuning.db")
    model = MODEL if real_decoder else MODEL_SHAPES
    chosen = [
        Step("environment", ["env"]),
        Step("tune the decoder's kernels",
             ["autotune", "--model", model, "--batch", plan.batches, "--prompt-len", str(plan.seq),
              "--gen", str(plan.gen),
              "--dtype", plan.dtype, "--trials", str(plan.trials), "--retime", str(plan.retime),
              "--timeout", str(plan.problem_timeout_s),
              "--db", db, "--out", str(out / "autotune")], out / "autotune"),
        Step("generate with and without the tuned database",
             ["profile", "model", model, "--variants", plan.generate_variants, "--batch", "1",
              "--prompt-len", str(plan.seq), "--gen", str(plan.gen), "--db", db, "--out", str(out / "generate"),
              # Quality (perplexity, KL) on the GPU plan only, and only with real weights and text.
              *(() if plan is GPU and real_decoder else ("--no-quality",)), *plan.profile_flags],
             out / "generate"),
        Step("an embedding job",
             ["profile", "model", "minilm-l6", "--variants", plan.embed_variants, "--batch", "8,32",
              "--prompt-len", "32", "--db", db, "--out", str(out / "embed")], out / "embed"),
        Step("profile one tuned kernel",
             ["profile", "kernel", "matmul", "--shape", plan.kernel_shape, "--dtype", plan.dtype,
              "--variants", "torch,default,tuned", "--db", db, "--out", str(out / "kernel"), *plan.profile_flags],
             out / "kernel"),
        Step("generate text (tuned configs where the backend uses them)",
             ["generate", "--model", model, "--prompt", "What is the capital of France?", "--gen", "12",
              "--db", db]),
    ]
    if not embedder:
        chosen = [s for s in chosen if s.name != "an embedding job"]
    if not real_decoder:  # a synthetic model has no tokenizer: no text to generate
        chosen = [s for s in chosen if not s.name.startswith("generate text")]
    return chosen


def run_demo(out: Path, *, gpu: bool, echo=print, budget_s: float | None = None,
             present: tuple[bool, bool] | None = None, child_stdout=None) -> tuple[list[Step], Path | None]:
    """Run every step (within `budget_s` when given: the plan scaled by `fit`, each step cut
    at the budget's end); then the report over the run directories that were written.
    `child_stdout` is where the steps' standard output goes (subprocess's `stdout`: None is
    ours; `demo --json` sends it to stderr so stdout holds only the JSON)."""
    plan = GPU if gpu else CPU
    real_decoder, embedder = present if present is not None else models_present()
    if not real_decoder:
        echo(f"{MODEL}'s file is absent here: the speed parts run {MODEL_SHAPES} (its shapes, random "
             "weights, no tokenizer), and text generation is left out")
    if not embedder:
        echo(f"{EMBED_MODEL}'s files are absent here: the embedding job is left out")
    if budget_s is not None:
        model = MODEL if real_decoder else MODEL_SHAPES
        plan, notes = fit(plan, budget_s, lambda b: count_problems(model, plan, b))
        echo(f"budget {budget_s:.0f} s: " + ("; ".join(notes) if notes else "the full plan fits"))
    deadline = None if budget_s is None else time.monotonic() + budget_s - REPORT_RESERVE_S
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **plan.env}
    quiet = {} if child_stdout is None else {"stdout": child_stdout}
    done = []
    for step in steps(plan, out, real_decoder=real_decoder, embedder=embedder):
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left < 5:
            echo(f"\n== {step.name}: not run, the budget is spent")
            step.returncode, step.cut = None, True
            done.append(step)
            continue
        echo(f"\n== {step.name}: infertune {' '.join(step.args)}")
        start = time.perf_counter()
        try:
            step.returncode = subprocess.run([sys.executable, "-m", "infertune", *step.args], env=env,
                                             check=False, timeout=left, **quiet).returncode
        except subprocess.TimeoutExpired:
            step.returncode, step.cut = None, True
        step.seconds = time.perf_counter() - start
        echo(f"== {step.name}: " + (f"cut by the budget after {step.seconds:.0f} s" if step.cut else
                                     f"exit {step.returncode} in {step.seconds:.0f} s"))
        done.append(step)
    runs = [str(s.run_dir) for s in done if s.run_dir is not None and (s.run_dir / "run.json").is_file()]
    report = None
    if runs:
        for target in ("report.html", "report.md"):
            code = subprocess.run([sys.executable, "-m", "infertune", "report", *runs, "-o", str(out / target)],
                                  env=env, check=False, **quiet).returncode
            if code == 0 and target == "report.html":
                report = out / target
    return done, report
