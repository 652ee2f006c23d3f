"""The demo's plan (infertune/demo.py): every step is a command the CLI accepts, the CPU
plan keeps its small budgets, and the report is made from the steps' run directories.
(`make demo` itself runs for minutes: it is run by hand, not in CI; see the closing notes.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from infertune import demo
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

    def fake_run(argv, env=None, check=False):
        calls.append(argv[3:])
        if "--out" in argv and argv[3] != "report":
            out = Path(argv[argv.index("--out") + 1])
            out.mkdir(parents=True, exist_ok=True)
            (out / "run.json").write_text("{}")
        return Done()

    monkeypatch.setattr(demo.subprocess, "run", fake_run)
    steps, report = demo.run_demo(tmp_path, gpu=False, echo=lambda *_: None)
    assert all(s.returncode == 0 for s in steps) and report == tmp_path / "report.html"
    reports = [c for c in calls if c[0] == "report"]
    assert len(reports) == 2 and reports[0][-1] == str(tmp_path / "report.html")
    assert set(reports[0][1:-2]) == {str(s.run_dir) for s in steps if s.run_dir is not None}
