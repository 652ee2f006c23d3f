"""The Nsight Systems driver without a GPU: parsers on sample CSVs built from the documented
report headers (tests/data/nsys/README.md), and the whole driver against fake `nsys`
executables written into tmp_path (absent / refused / failed / timeout / success)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from profilers import nsys

DATA = Path(__file__).resolve().parent / "data" / "nsys"

# A fake nsys: `profile ... -o BASE` writes BASE.nsys-rep; `stats --report NAME --output
# PREFIX` copies $FAKE_NSYS_DATA/NAME.csv to PREFIX_NAME.csv, or fails like an nsys that
# does not know the report. Every argv is appended to $FAKE_NSYS_LOG as a JSON line.
FAKE_NSYS = """
import json, os, shutil, sys
args = sys.argv[1:]
with open(os.environ["FAKE_NSYS_LOG"], "a") as fh:
    fh.write(json.dumps(args) + "\\n")
def value(flag):
    return args[args.index(flag) + 1]
if args[0] == "profile":
    open(value("-o") + ".nsys-rep", "w").write("fake report")
    print("Generating '/tmp/nsys-report-0000.qdstrm'")
    sys.exit(0)
if args[0] == "stats":
    name = value("--report")
    src = os.path.join(os.environ["FAKE_NSYS_DATA"], name + ".csv")
    if not os.path.exists(src):
        print(f"ERROR: Report '{name}' could not be found.", file=sys.stderr)
        sys.exit(1)
    shutil.copyfile(src, value("--output") + "_" + name + ".csv")
    print(f"Processing [{args[-1]}] with [{name}.py]...")
    sys.exit(0)
sys.exit(2)
"""


def write_tool(bin_dir: Path, name: str, body: str) -> Path:
    """An executable Python script named `name` in `bin_dir` (absolute shebang)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_nsys(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    write_tool(bin_dir, "nsys", FAKE_NSYS)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_NSYS_LOG", str(log))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return calls


# --------------------------------------------------------------------------- commands


def test_commands_are_argument_lists():
    cmd = nsys.nsys_command(["python", "-m", "bench", "--shape", "16x4096x4096"], Path("/out/run"))
    assert cmd == [
        "nsys", "profile", "--trace=cuda,nvtx", "--sample=none", "--cpuctxsw=none", "--force-overwrite=true",
        "-o", "/out/run", "python", "-m", "bench", "--shape", "16x4096x4096",
    ]
    stats = nsys.stats_command(Path("/out/run.nsys-rep"), "cuda_gpu_kern_sum", Path("/out/run"))
    assert stats == [
        "nsys", "stats", "--report", "cuda_gpu_kern_sum", "--format", "csv", "--output", "/out/run", "/out/run.nsys-rep",
    ]
    assert all(isinstance(a, str) for a in cmd + stats)
    assert nsys.stats_csv_path("/out/run", "nvtx_sum") == Path("/out/run_nvtx_sum.csv")


def test_new_names_are_tried_before_old_ones():
    assert nsys.KERNEL_REPORTS == ("cuda_gpu_kern_sum", "gpukernsum")
    assert nsys.NVTX_REPORTS[0] == "nvtx_sum" and "nvtxsum" in nsys.NVTX_REPORTS
    assert nsys.NVTX_REPORTS.index("nvtx_pushpop_sum") < nsys.NVTX_REPORTS.index("nvtxsum")
    assert nsys.NVTX_KERNEL_REPORTS[0] == "nvtx_kern_sum"


# --------------------------------------------------------------------------- parsers


def test_parse_cuda_gpu_kern_sum():
    rows = nsys.parse_kernel_sum((DATA / "new" / "cuda_gpu_kern_sum.csv").read_text())
    assert [r.name for r in rows] == ["matmul_kernel", "_attn_fwd", "rmsnorm_kernel", "elementwise_kernel"]
    mm = rows[0]
    assert (mm.instances, mm.total_ns, mm.avg_ns, mm.med_ns, mm.min_ns, mm.max_ns, mm.time_pct) == (
        20, 8_000_000, 400_000, 398_000, 390_000, 420_000, 79.6,
    )


def test_parse_old_gpukernsum():
    rows = nsys.parse_kernel_sum((DATA / "old" / "gpukernsum.csv").read_text())
    assert [(r.name, r.instances, r.total_ns, r.avg_ns, r.min_ns, r.max_ns, r.time_pct) for r in rows] == [
        ("matmul_kernel", 20, 8_000_000, 400_000, 390_000, 420_000, 80.0),
        ("_attn_fwd", 10, 2_000_000, 200_000, 195_000, 206_000, 20.0),
    ]
    assert rows[0].med_ns is None  # no median column before 2022.4


def test_parse_nvtx_sum_splits_our_domain():
    rows = nsys.parse_nvtx_sum((DATA / "new" / "nvtx_sum.csv").read_text())
    by_name = {(r.domain, r.name): r for r in rows}
    mm = by_name[("infertune", "matmul M=16,N=4096,K=4096")]  # a quoted name with commas
    assert (mm.instances, mm.total_ns, mm.avg_ns, mm.med_ns, mm.style) == (20, 9_000_000, 450_000, 449_000, "PushPop")
    assert mm.qualified == "infertune:matmul M=16,N=4096,K=4096"
    assert ("", "warmup") in by_name  # the default domain, printed without a prefix
    old = nsys.parse_nvtx_sum((DATA / "old" / "nvtxsum.csv").read_text())
    assert [(r.domain, r.name, r.instances, r.total_ns) for r in old] == [
        ("infertune", "trial 3", 1, 12_000_000), ("infertune", "attention", 10, 4_000_000),
    ]


def test_parse_nvtx_sum_with_a_domain_column_and_other_units():
    # Defensive: a layout with the domain in its own column and times in microseconds.
    text = (
        "NOTICE: Existing SQLite export found: run.sqlite\n"
        "Time (%),Total Time (us),Instances,Avg (us),Med (us),Min (us),Max (us),StdDev (us),Domain,Range\n"
        "100.0,12.5,5,2.5,2.5,2.0,3.0,0.1,infertune,rope:T=16\n"
    )
    (row,) = nsys.parse_nvtx_sum(text)
    assert (row.domain, row.name, row.instances, row.total_ns, row.avg_ns) == ("infertune", "rope:T=16", 5, 12_500, 2_500)


def test_split_range_name():
    assert nsys.split_range_name("infertune:matmul:M=16") == ("infertune", "matmul:M=16")
    assert nsys.split_range_name(":warmup") == ("", "warmup")
    assert nsys.split_range_name("warmup") == ("", "warmup")
    assert nsys.split_range_name("other:thing") == ("", "other:thing")  # unknown prefix: part of the message
    assert nsys.split_range_name("TensorRT:enqueue", domains=("TensorRT",)) == ("TensorRT", "enqueue")


def test_launch_overhead_from_nvtx_kern_sum():
    ranges = nsys.parse_nvtx_sum((DATA / "new" / "nvtx_sum.csv").read_text())
    kern = nsys.parse_nvtx_kern_sum((DATA / "new" / "nvtx_kern_sum.csv").read_text())
    assert all(k.range for k in kern)  # the row of kernels outside any range is dropped
    proj = nsys.parse_nvtx_gpu_proj_sum((DATA / "new" / "nvtx_gpu_proj_sum.csv").read_text())
    got = {o.range: o for o in nsys.launch_overhead(ranges, kern, proj)}
    # trial 3 contains every kernel launched inside the child ranges
    assert (got["trial 3"].gpu_ns, got["trial 3"].overhead_ns) == (10_000_000, 2_000_000)
    mm = got["matmul M=16,N=4096,K=4096"]
    assert (mm.gpu_ns, mm.overhead_ns, mm.overhead_per_instance_ns, mm.source) == (
        8_000_000, 1_000_000, 50_000, "nvtx_kern_sum",
    )
    assert got["rmsnorm"].overhead_per_instance_ns == 30_000
    assert got["attention"].overhead_ns == -100_000 and "GPU-bound" in got["attention"].note
    assert (got["warmup"].gpu_ns, got["warmup"].overhead_ns) == (0, 500_000)
    assert "no kernel" in got["warmup"].note


def test_launch_overhead_from_projection_or_nothing():
    ranges = nsys.parse_nvtx_sum((DATA / "new" / "nvtx_sum.csv").read_text())
    proj = nsys.parse_nvtx_gpu_proj_sum((DATA / "new" / "nvtx_gpu_proj_sum.csv").read_text())
    got = {o.range: o for o in nsys.launch_overhead(ranges, None, proj)}
    assert (got["rmsnorm"].gpu_ns, got["rmsnorm"].overhead_ns, got["rmsnorm"].source) == (
        420_000, 580_000, "nvtx_gpu_proj_sum",
    )
    assert got["warmup"].overhead_ns is None  # not in the projection
    for o in nsys.launch_overhead(ranges):
        assert o.gpu_ns is None and o.overhead_ns is None and o.source is None
        assert o.note.startswith("not attributable")


def test_number_parsing():
    assert nsys.number("1,234,567") == 1_234_567
    assert nsys.number(" 12.5 ") == 12.5
    assert nsys.number("") is None and nsys.number("n/a") is None and nsys.number("-") is None


# --------------------------------------------------------------------------- the driver


def test_absent_without_nsys_on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = nsys.run_nsys(["python", "-c", "pass"], tmp_path / "out", timeout_s=10)
    assert result.status == "absent" and "nsys" in result.reason
    assert not (tmp_path / "out").exists()


def test_refused_on_counter_permission(tmp_path, monkeypatch):
    write_tool(
        tmp_path / "bin", "nsys",
        "import sys\nprint('==ERROR== ERR_NVGPUCTRPERM - The user does not have permission to access NVIDIA GPU "
        "Performance Counters on the target device 0.', file=sys.stderr)\nsys.exit(1)\n",
    )
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    result = nsys.run_nsys(["python", "-c", "pass"], tmp_path / "out", timeout_s=30)
    assert result.status == "refused"
    assert "ERR_NVGPUCTRPERM" in result.reason and "\n" not in result.reason


def test_refused_on_other_permission_text(tmp_path, monkeypatch):
    write_tool(tmp_path / "bin", "nsys", "import sys\nprint('Permission denied: /dev/nvidia0', file=sys.stderr)\nsys.exit(1)\n")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    result = nsys.run_nsys(["python", "-c", "pass"], tmp_path / "out", timeout_s=30)
    assert result.status == "refused" and "Permission denied" in result.reason


def test_failed_with_last_stderr_line(tmp_path, monkeypatch):
    write_tool(
        tmp_path / "bin", "nsys",
        "import sys\nprint('some progress')\nprint('first', file=sys.stderr)\n"
        "print('Error: the workload crashed', file=sys.stderr)\nsys.exit(3)\n",
    )
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    result = nsys.run_nsys(["python", "-c", "pass"], tmp_path / "out", timeout_s=30)
    assert result.status == "failed"
    assert result.reason == "nsys profile exited 3: Error: the workload crashed"
    assert (tmp_path / "out" / "nsys.profile.log").is_file()


def test_failed_when_no_report_written(tmp_path, monkeypatch):
    write_tool(tmp_path / "bin", "nsys", "print('nothing collected')\n")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    result = nsys.run_nsys(["python", "-c", "pass"], tmp_path / "out", timeout_s=30)
    assert result.status == "failed" and "nsys-rep" in result.reason


def test_failed_on_timeout(tmp_path, monkeypatch):
    write_tool(tmp_path / "bin", "nsys", "import time\ntime.sleep(30)\n")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    result = nsys.run_nsys(["python", "-c", "pass"], tmp_path / "out", timeout_s=1)
    assert result.status == "failed" and "did not finish within 1 s" in result.reason


def test_end_to_end_with_new_report_names(tmp_path, monkeypatch, fake_nsys):
    monkeypatch.setenv("FAKE_NSYS_DATA", str(DATA / "new"))
    workload = [sys.executable, "-c", "print('hi')"]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "nsys.sqlite").write_text("a previous run's export")  # nsys stats would reuse it
    result = nsys.run_nsys(workload, tmp_path / "out", timeout_s=60)
    assert not (tmp_path / "out" / "nsys.sqlite").exists()
    assert result.status == "ok", result.reason
    assert result.report == tmp_path / "out" / "nsys.nsys-rep" and result.report.is_file()
    assert set(result.csvs) == {"cuda_gpu_kern_sum", "nvtx_sum", "nvtx_kern_sum", "nvtx_gpu_proj_sum"}
    assert all(p.is_file() and p.parent == tmp_path / "out" for p in result.csvs.values())
    assert [k.name for k in result.kernels][:2] == ["matmul_kernel", "_attn_fwd"]
    assert len(result.ranges_in("infertune")) == 4
    over = {o.range: o for o in result.overhead}
    assert over["matmul M=16,N=4096,K=4096"].overhead_ns == 1_000_000
    assert over["matmul M=16,N=4096,K=4096"].source == "nvtx_kern_sum"
    calls = fake_nsys()
    assert calls[0][:2] == ["profile", "--trace=cuda,nvtx"] and calls[0][-3:] == workload
    assert [c[2] for c in calls[1:]] == ["cuda_gpu_kern_sum", "nvtx_sum", "nvtx_kern_sum", "nvtx_gpu_proj_sum"]
    data = json.loads(json.dumps(result.to_dict()))  # serializable for run files
    assert set(data["files"]) == {str(result.log), str(result.report), *map(str, result.csvs.values())}


def test_end_to_end_falls_back_to_old_report_names(tmp_path, monkeypatch, fake_nsys):
    monkeypatch.setenv("FAKE_NSYS_DATA", str(DATA / "old"))
    result = nsys.run_nsys([sys.executable, "-c", "pass"], tmp_path / "out", timeout_s=60)
    assert result.status == "ok", result.reason
    assert set(result.csvs) == {"gpukernsum", "nvtxsum"}
    assert [k.name for k in result.kernels] == ["matmul_kernel", "_attn_fwd"]
    assert [r.name for r in result.ranges] == ["trial 3", "attention"]
    assert result.range_kernels is None and result.projections is None
    assert all(o.overhead_ns is None and o.note.startswith("not attributable") for o in result.overhead)
    tried = [c[2] for c in fake_nsys()[1:]]
    assert tried[:2] == ["cuda_gpu_kern_sum", "gpukernsum"]
    assert tried[2:5] == ["nvtx_sum", "nvtx_pushpop_sum", "nvtxsum"]


def test_no_shell_anywhere(tmp_path, monkeypatch, fake_nsys):
    monkeypatch.setenv("FAKE_NSYS_DATA", str(DATA / "new"))
    seen = []
    real = subprocess.Popen

    def spy(argv, *args, **kwargs):
        seen.append((argv, kwargs))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", spy)
    result = nsys.run_nsys([sys.executable, "-c", "pass"], tmp_path / "out", timeout_s=60)
    assert result.status == "ok"
    assert seen and all(isinstance(argv, list) and not kwargs.get("shell") for argv, kwargs in seen)
    assert all(os.path.isabs(argv[0]) for argv, _ in seen)  # the nsys found on PATH, by its path
