"""The demo's plan (infertune/demo.py): every step is a command the CLI accepts, the CPU
plan keeps its small budgets, and the report is made from the steps' run directories.
(`make demo` itself runs for minutes: it is run by hand, not in CI; see the closing notes.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from infertune import demo
from infertune.errors import UsageError
from infertune.cli import app


@pytest.mark.parametrize("plan", [demo.CPU, demo.GPU])
def test_every_step_is_a_valid_command(plan, tmp_path):
    steps = demo.steps(plan, tmp_path)
    names = [s.name for s in steps]
    assert any("tune" in n for n in names) and any("embedding" in n for n in names)
    assert any("with and without the tuned database" in n for n in names)
    runner = CliRunner()
    for step in steps:
        # --help after the arguments: the parser accepts every option named (an unknown one
        # would be an error before help is printed)
        res = runner.invoke(app, [*step.args, "--help"])
        assert res.exit_code == 0, (step.name, res.output)
    tune = next(s for s in steps if "tune" in s.name)
    assert tune.args[tune.args.index("--batch") + 1] == "1,8"  # the issue: batch 1 and 8
    assert tune.run_dir == tmp_path / "autotune"


def test_cpu_plan_is_small_and_gpu_plan_is_real():
    assert demo.CPU.trials <= 3 and demo.CPU.seq <= 8 and demo.CPU.problem_timeout_s <= 30
    assert demo.GPU.trials >= 30 and demo.GPU.seq >= 128 and "w4g128" in demo.GPU.generate_variants


def test_run_demo_reports_on_the_runs_it_made(tmp_path, monkeypatch):
    calls = []

    class Done:
        returncode = 0

    def fake_run(argv, env=None, check=False, timeout=None):
        calls.append(argv[3:])
        if "--out" in argv and argv[3] != "report":
            out = Path(argv[argv.index("--out") + 1])
            out.mkdir(parents=True, exist_ok=True)
            (out / "run.json").write_text("{}")
        return Done()

    monkeypatch.setattr(demo.subprocess, "run", fake_run)
    steps, report = demo.run_demo(tmp_path, gpu=False, echo=lambda *_: None, present=(True, True))
    assert all(s.returncode == 0 for s in steps) and report == tmp_path / "report.html"
    reports = [c for c in calls if c[0] == "report"]
    assert len(reports) == 2 and reports[0][-1] == str(tmp_path / "report.html")
    assert set(reports[0][1:-2]) == {str(s.run_dir) for s in steps if s.run_dir is not None}


@pytest.mark.parametrize("text,seconds", [("8m", 480), ("90s", 90), ("480", 480), ("1h", 3600), (" 2.5m ", 150)])
def test_budget_durations(text, seconds):
    assert demo.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5m", "8 minutes", "m", "1d"])
def test_bad_budget_is_a_usage_error(text):
    with pytest.raises(UsageError):
        demo.parse_duration(text)


def test_fit_spreads_the_tuning_budget_and_says_what_it_cut():
    counts = {"1,8": 34, "1": 17}
    for budget in (480, 900, 3600, 200):
        plan, notes = demo.fit(demo.GPU, budget, counts.__getitem__)
        problems = counts[plan.batches]
        tune_s = budget - demo.GPU.fixed_s - demo.TUNE_STARTUP_S - demo.REPORT_RESERVE_S
        assert plan.problem_timeout_s <= demo.GPU.problem_timeout_s
        if plan.problem_timeout_s >= demo.MIN_PROBLEM_S:
            assert problems * plan.problem_timeout_s <= tune_s  # the tuning ends inside the budget
        if plan.problem_timeout_s < demo.GPU.problem_timeout_s or plan.batches != demo.GPU.batches:
            assert notes  # anything cut is said
    plan, notes = demo.fit(demo.GPU, 480, counts.__getitem__)
    assert plan.batches == "1,8" and plan.problem_timeout_s == 6 and "34 problems x 6 s" in notes[0]
    plan, notes = demo.fit(demo.GPU, 300, counts.__getitem__)  # 50 s for 34 problems: batch 8 goes
    assert plan.batches == "1" and "batch 8 left out" in notes[0] and "too little" in notes[-1]
    plan, notes = demo.fit(demo.GPU, 10_000, counts.__getitem__)
    assert plan == demo.GPU and not notes


def test_fit_counts_the_models_real_problems():
    one = demo.count_problems(demo.MODEL, demo.GPU, "1")
    both = demo.count_problems(demo.MODEL, demo.GPU, "1,8")
    assert 0 < one < both
    assert demo.count_problems(demo.MODEL_SHAPES, demo.GPU, "1,8") == both  # the stand-in has the same shapes


def test_without_the_model_files_the_demo_runs_the_synthetic_shapes(tmp_path):
    steps = demo.steps(demo.GPU, tmp_path, real_decoder=False, embedder=False)
    names = [s.name for s in steps]
    assert "an embedding job" not in names and not any(n.startswith("generate text") for n in names)
    for step in steps:
        assert "smollm2-135m" not in step.args  # only the stand-in
    tune = next(s for s in steps if "tune" in s.name)
    assert tune.args[tune.args.index("--model") + 1] == demo.MODEL_SHAPES
    gen = next(s for s in steps if "with and without" in s.name)
    assert "--no-quality" in gen.args
    runner = CliRunner()
    for step in steps:
        res = runner.invoke(app, [*step.args, "--help"])
        assert res.exit_code == 0, (step.name, res.output)


def test_the_budget_cuts_a_step_and_skips_the_rest(tmp_path, monkeypatch):
    import subprocess as sp
    calls = []

    now = [0.0]

    def fake_run(argv, env=None, check=False, timeout=None):
        calls.append((argv[3], timeout))
        if argv[3] == "autotune":
            now[0] += timeout  # it ran until the budget's end
            raise sp.TimeoutExpired(argv, timeout)
        if argv[3] == "report":
            return type("R", (), {"returncode": 1})()
        return type("R", (), {"returncode": 0})()

    monkeypatch.setattr(demo.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(demo.subprocess, "run", fake_run)
    monkeypatch.setattr(demo, "count_problems", lambda *_: 34)
    lines = []
    steps, _ = demo.run_demo(tmp_path, gpu=True, echo=lines.append, budget_s=480, present=(True, True))
    tune = next(s for s in steps if "tune" in s.name)
    assert tune.cut and tune.returncode is None
    assert calls[1][0] == "autotune" and calls[1][1] == 480 - demo.REPORT_RESERVE_S  # bounded by what was left
    later = steps[steps.index(tune) + 1:]
    assert later and all(s.cut for s in later)  # the budget was spent: not started
    assert any("budget 480 s" in line for line in lines)
