"""The CLI through typer's CliRunner (output and exit codes) and through main() (what the
console script does with bad input: one line on stderr, exit code 2, no traceback)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

import kernels
from infertune.cli import app, main
from kernels.device import current_device

runner = CliRunner()


def run_main(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_env_json_describes_this_machine():
    result = runner.invoke(app, ["env", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    dev = current_device()
    assert data["device"]["kind"] == dev.kind and data["device"]["interpreter"] == dev.interpreter
    assert data["torch"] and data["triton"]
    for tool in ("nvml", "nsys", "ncu"):
        assert isinstance(data[tool]["usable"], bool)
        if not data[tool]["usable"]:
            assert data[tool]["detail"]  # says why not


def test_env_table():
    result = runner.invoke(app, ["env"])
    assert result.exit_code == 0 and "compute capability" in result.output and "nvml" in result.output


def test_kernels_json_lists_the_registry_with_space_sizes():
    result = runner.invoke(app, ["kernels", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert [k["name"] for k in data] == list(kernels.names())
    for entry in data:
        assert entry["space_size"] == math.prod(len(v) for v in entry["params"].values())
        assert entry["dims"] and entry["dtypes"]


def test_kernels_table_names_every_kernel():
    result = runner.invoke(app, ["kernels"])
    assert result.exit_code == 0
    for name in kernels.names():
        assert name in result.output


def test_bench_json_reports_accuracy_and_both_timings():
    result = runner.invoke(app, ["bench", "matmul", "--shape", "13x257x129", "--dtype", "fp16", "--json",
                                 "--config", "BLOCK_M=16,BLOCK_N=128,SPLIT_K=2"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["accuracy"]["ok"] and data["accuracy"]["bad_elements"] == 0
    assert data["config"]["BLOCK_N"] == 128 and data["config"]["SPLIT_K"] == 2 and data["config_source"] == "caller"
    assert data["shape"] == {"M": 13, "N": 257, "K": 129}
    assert data["flops"] == 2 * 13 * 257 * 129
    for side in ("triton", "baseline"):
        t = data[side]
        assert 0 < t["p10_ms"] <= t["median_ms"] <= t["p90_ms"]
        assert t["tflops"] == pytest.approx(data["flops"] / (t["median_ms"] * 1e-3) / 1e12)
    assert data["baseline"]["name"] == "torch.matmul"
    assert data["speedup"] == pytest.approx(data["baseline"]["median_ms"] / data["triton"]["median_ms"])
    assert data["interpreter"] == current_device().interpreter
    if data["interpreter"]:
        assert "say nothing about GPU speed" in data["note"]


def test_bench_table_with_default_config_and_named_form_shape():
    result = runner.invoke(app, ["bench", "matmul", "--shape", "M=1,N=64,K=13", "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert "heuristic" in result.output and "torch.matmul" in result.output and "correct" in result.output


def test_check_json_runs_every_kernel():
    result = runner.invoke(app, ["check", "matmul", "--json", "--dtype", "fp32"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [r["kernel"] for r in data["results"]] == ["matmul"]
    assert data["results"][0]["status"] == "ok"


@pytest.mark.parametrize("argv,fragment", [
    (["bench", "matmull", "--shape", "1x2x3"], "unknown kernel 'matmull'; known kernels: matmul"),
    (["bench", "matmul", "--shape", "16x4096"], "malformed shape '16x4096': expected MxNxK"),
    (["bench", "matmul", "--shape", "M=16,N=4096"], "expected MxNxK (e.g. 16x16x16) or M=16,N=16,K=16"),
    (["bench", "matmul", "--shape", "1x2x3", "--dtype", "int3"], "supports dtypes fp32, fp16, bf16"),
    (["bench", "matmul", "--shape", "1x2x3", "--config", "BLOCK_M=48"], "BLOCK_M=48 is not a power of two"),
    (["bench", "matmul", "--shape", "1x2x3", "--config", "BLOCK_Q=16"], "unknown parameter BLOCK_Q"),
    (["bench", "matmul", "--shape", "1x2x3", "--config", "BLOCK_M"], "malformed config entry"),
    (["bench", "matmul", "--shape", "1x2x3", "--opt", "causal=1"], "no option 'causal'"),
    (["bench", "matmul", "--shape", "1x2x3", "--opt", "oops"], "malformed option 'oops'"),
    (["bench", "matmul"], "Missing option '--shape'"),
    (["frobnicate"], "No such command"),
    (["check", "nope"], "unknown kernel 'nope'"),
])
def test_bad_input_is_one_line_and_exit_code_2(capsys, argv, fragment):
    code, out, err = run_main(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert "Traceback" not in err + out


def test_a_dtype_the_device_cannot_run_says_so(capsys):
    dev = current_device()
    if dev.kind == "cuda" and dev.capability >= (8, 9):
        pytest.skip("this GPU runs fp8")
    assert "matmul_fp8" in kernels.names()
    code, out, err = run_main(capsys, "bench", "matmul_fp8", "--shape", "16x64x64")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "not supported on this device" in err and "compute capability >= 8.9" in err


def test_cli_runner_sees_exit_code_2_for_library_errors():
    result = runner.invoke(app, ["bench", "nope", "--shape", "1x2x3"])
    assert result.exit_code == 2 and "unknown kernel" in result.output


def _broken(monkeypatch, name: str = "rmsnorm"):
    """Make `name`'s launcher raise as Triton 3.6's interpreter does under numpy >= 2.4."""
    import dataclasses

    def boom(*_args, **_kwargs):
        raise TypeError("at 12:4:\n    for i in range(n):\n    ^\nonly 0-dimensional arrays can be converted to "
                        "Python scalars")

    broken = dataclasses.replace(kernels.get(name), launch=boom)
    real_get = kernels.get
    monkeypatch.setattr(kernels, "get", lambda n: broken if n == name else real_get(n))
    return broken


def test_a_kernel_that_raises_in_check_is_one_line_and_exit_1(capsys, monkeypatch):
    _broken(monkeypatch)
    code, out, err = run_main(capsys, "check", "rmsnorm", "matmul", "--dtype", "fp32")
    assert code == 1 and "Traceback" not in out + err
    flat = " ".join(w for w in out.split() if w != "│")
    assert "ERROR rmsnorm" in flat and "only 0-dimensional arrays" in flat and "ok SQNR" in flat  # matmul still ran
    code, out, err = run_main(capsys, "check", "rmsnorm", "--dtype", "fp32", "--json")
    assert code == 1 and json.loads(out)["results"][0]["status"] == "error"


def test_a_kernel_that_raises_in_bench_is_one_line_and_exit_1(capsys, monkeypatch):
    _broken(monkeypatch)
    code, out, err = run_main(capsys, "bench", "rmsnorm", "--shape", "13x257", "--dtype", "fp32")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in out + err
    assert lines[0].startswith("error: rmsnorm") and "only 0-dimensional arrays" in lines[0]


def test_benchmark_part_with_failing_cases_exits_nonzero(tmp_path, monkeypatch, capsys):
    from bench import kernels_vs_torch
    _broken(monkeypatch, "matmul_w4a16")
    monkeypatch.setenv("INFERTUNE_REP_MS", "0")
    monkeypatch.setenv("INFERTUNE_WARMUP_MS", "0")
    code = kernels_vs_torch.main(["--smoke", "--out", str(tmp_path), "--kernels", "matmul,matmul_w4a16"])
    data = json.loads((tmp_path / "results.json").read_text())
    assert code == 1 and len(data["failures"]) == 2 and {r["kernel"] for r in data["results"]} == {"matmul"}
    assert "only 0-dimensional arrays" in (tmp_path / "results.md").read_text()


def test_bench_db_times_the_tuned_config(tmp_path, monkeypatch):
    """bench --db: the database's config for this problem is the one checked and timed."""
    from kernels.spec import Config
    from tests.db_records import make_record
    from tuner.database import open_database

    for k, v in {"INFERTUNE_WARMUP_MS": "0", "INFERTUNE_REP_MS": "0", "INFERTUNE_MIN_REPS_CPU": "1"}.items():
        monkeypatch.setenv(k, v)
    device = current_device()
    spec = kernels.get("matmul")
    problem = spec.problem({"M": 13, "N": 37, "K": 29}, "fp32")
    heuristic = dict(spec.heuristic(problem, device))
    stored = next(c for c in ({**heuristic, "BLOCK_N": n, "BLOCK_K": k} for n in (32, 64, 16) for k in (32, 16, 64))
                  if c != heuristic and spec.reject_reason(Config(c), problem, device) is None)
    db = str(tmp_path / "tuned.db")
    with open_database(db) as database:
        database.put(make_record(shape={"M": 13, "N": 37, "K": 29}, dtype="fp32", device=device, config=stored))
    result = runner.invoke(app, ["bench", "matmul", "--shape", "13x37x29", "--dtype", "fp32", "--db", db, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["config"] == stored and data["config_source"] == "database" and data["accuracy"]["ok"]
    plain = json.loads(runner.invoke(app, ["bench", "matmul", "--shape", "13x37x29", "--dtype", "fp32",
                                           "--json"]).output)
    assert plain["config"] == heuristic and plain["config_source"] == "heuristic"


def test_the_seed_defaults_to_0_and_says_so(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # help on one line per option
    result = runner.invoke(app, ["check", "rmsnorm", "--dtype", "fp32", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["seed"] == 0  # was a fresh random seed per run
    for command in (["bench"], ["check"], ["generate"], ["profile", "kernel"]):
        code, out, _ = run_main(capsys, *command, "--help")
        assert code == 0 and "default 0" in out, command


def test_an_error_message_with_line_breaks_is_printed_on_one_line(capsys, monkeypatch):
    from infertune.cli import common
    from infertune.errors import UsageError

    @common.user_errors
    def command():
        raise UsageError("first\nsecond\r\nthird")

    with pytest.raises(common.typer.Exit) as exc:
        command()
    assert exc.value.exit_code == 2
    assert capsys.readouterr().err == "error: first\\nsecond\\nthird\n"


def test_writable_dir_refuses_before_creating_anything(tmp_path):
    from infertune.errors import UsageError
    from infertune.rundir import make_dir, writable_dir, writable_file

    afile = tmp_path / "f"
    afile.write_text("x")
    assert writable_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    for bad, fragment in [(afile, "is a file, not a folder"), (afile / "sub", f"{str(afile)!r} is a file"),
                          (tmp_path / "x\ny" / ".." / "f" / "z", "is a file"), ("", "not a usable path")]:
        with pytest.raises(UsageError, match="--out") as info:
            writable_dir(bad)
        assert fragment in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "x\ny").exists()
    with pytest.raises(UsageError, match="is a folder, not a file"):
        writable_file(tmp_path, "-o")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        writable_file(afile / "report.html", "-o")
    assert make_dir(tmp_path / "a" / "b").is_dir()


def test_demo_json_is_the_only_thing_on_stdout(tmp_path, monkeypatch):
    from pathlib import Path

    from infertune import demo
    from infertune.cli import demo_cmd

    seen = {}

    def fake_run_demo(out, *, gpu, echo, budget_s, child_stdout):
        seen["out"], seen["child_stdout"] = out, child_stdout
        echo("progress goes to stderr")
        step = demo.Step("environment", ["env"], run_dir=None, seconds=1.5, returncode=0)
        made = demo.Step("profile one tuned kernel", ["profile"], run_dir=Path(out) / "kernel", seconds=2.0,
                         returncode=0)
        return [step, made], Path(out) / "report.html"

    monkeypatch.setattr(demo_cmd, "run_demo", fake_run_demo)
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "d"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["report"] == str(tmp_path / "d" / "report.html") and data["failed"] == []
    assert [s["name"] for s in data["steps"]] == ["environment", "profile one tuned kernel"]
    assert data["steps"][1]["run_dir"] == str(tmp_path / "d" / "kernel")
    assert seen["child_stdout"] is not None  # the steps' own output kept off stdout
    assert "progress goes to stderr" in result.stderr


def test_an_allocation_failure_is_a_usage_error():
    import torch

    from infertune.errors import UsageError
    from infertune.problems import allocation_errors

    spec = kernels.get("matmul")
    problem = spec.problem({"M": 13, "N": 37, "K": 29}, "fp32")
    device = current_device()
    for exc in (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB"),
                RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 4e16 bytes"),
                OverflowError("Python int too large"), MemoryError()):
        with pytest.raises(UsageError, match="cannot be allocated") as info, allocation_errors(spec, problem, device):
            raise exc
        assert "\n" not in str(info.value) and "matmul M=13,N=37,K=29 fp32" in str(info.value)
    # not an allocation: not hidden
    with pytest.raises(RuntimeError, match="something else"), allocation_errors(spec, problem, device):
        raise RuntimeError("something else")


def test_an_os_error_on_a_named_file_is_one_line_exit_2(capsys):
    from infertune.cli import common

    @common.user_errors
    def command():
        raise PermissionError(13, "Permission denied", "/some/where\nelse/run.json")

    with pytest.raises(common.typer.Exit) as exc:
        command()
    assert exc.value.exit_code == 2
    assert capsys.readouterr().err == "error: Permission denied: '/some/where\\nelse/run.json'\n"

    @common.user_errors
    def broken():
        raise OSError("no file named: a bug, not bad input")

    with pytest.raises(OSError):  # not turned into a usage error
        broken()


@pytest.mark.parametrize("spelling", ["int4-g32", "w4g32"])
def test_bench_quant_takes_the_variant_spelling_as_an_alias(spelling):
    result = runner.invoke(app, ["bench", "matmul_w4a16", "--shape", "3x64x96", "--dtype", "fp16", "--quant", spelling,
                                 "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["options"]["quant"] == "int4-g32" and data["accuracy"]["ok"]


def test_a_path_with_a_line_break_is_shown_on_one_line(tmp_path, capsys):
    from infertune.cli import main
    from infertune.cli.common import path_text

    assert path_text("runs/demo/report.html") == "runs/demo/report.html"
    assert path_text("a\nb") == "'a\\nb'" and path_text("x\x1b[31my") == "'x\\x1b[31my'"
    run = Path(__file__).parent / "data" / "runs" / "kernel-a"
    out = tmp_path / "two\nlines" / "r.md"
    with pytest.raises(SystemExit) as exc:
        main(["report", str(run), "--out", str(out)])
    assert exc.value.code == 0 and out.is_file()
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and "two\\nlines" in printed
