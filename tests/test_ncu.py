"""The Nsight Compute driver without a GPU: the raw-page CSV parser on samples built from the
documented layout (tests/data/ncu/README.md), and the whole driver against fake `ncu`
executables written into tmp_path (absent / refused / failed / success)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from profilers import ncu

DATA = Path(__file__).resolve().parent / "data" / "ncu"

# A fake ncu: profiling (`--export BASE ...`) writes BASE.ncu-rep; `--import REP --page raw
# --csv` prints $FAKE_NCU_RAW. Every argv is appended to $FAKE_NCU_LOG as a JSON line.
FAKE_NCU = """
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_NCU_LOG"], "a") as fh:
    fh.write(json.dumps(args) + "\\n")
if "--import" in args:
    assert args[args.index("--page") + 1] == "raw" and "--csv" in args
    sys.stdout.write(open(os.environ["FAKE_NCU_RAW"]).read())
    sys.exit(0)
print("==PROF== Connected to process 4242")
open(args[args.index("--export") + 1] + ".ncu-rep", "w").write("fake report")
print("==PROF== Report: " + args[args.index("--export") + 1] + ".ncu-rep")
sys.exit(0)
"""


def write_tool(bin_dir: Path, name: str, body: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


# --------------------------------------------------------------------------- commands


def test_command_filters_our_nvtx_domain():
    cmd = ncu.ncu_command(["python", "bench.py"], Path("/out/k"))
    assert cmd[:4] == ["ncu", "--clock-control", "none", "--nvtx"]
    assert cmd[cmd.index("--nvtx-include") + 1] == "regex:infertune@.+/"
    sections = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--section"]
    assert sections == ["SpeedOfLight", "Occupancy", "LaunchStats"]
    assert cmd[cmd.index("--export") + 1] == "/out/k" and "--force-overwrite" in cmd
    assert cmd[-2:] == ["python", "bench.py"]
    assert all(isinstance(a, str) for a in cmd)
    assert ncu.import_command(Path("/out/k.ncu-rep")) == ["ncu", "--import", "/out/k.ncu-rep", "--page", "raw", "--csv"]


def test_named_ranges_are_domain_qualified_push_pop_configs():
    cmd = ncu.ncu_command(["x"], "/o", ["matmul M=16", "attn [causal]", "a/b", "regex:^rope.*/"])
    configs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--nvtx-include"]
    assert configs == ["infertune@matmul M=16/", "infertune@attn \\[causal\\]/", "infertune@a\\/b/", "regex:^rope.*/"]


# --------------------------------------------------------------------------- parser


def test_parse_raw_page():
    first, second = ncu.parse_raw_csv((DATA / "raw.csv").read_text())
    assert (first.id, first.kernel) == (0, "matmul_kernel")
    assert first.duration_ns == pytest.approx(1_234_560)  # "1,234.56" usecond
    assert first.sm_throughput_pct == pytest.approx(45.67)
    assert first.memory_throughput_pct == pytest.approx(81.23)
    assert first.dram_bytes == pytest.approx(34_080_000)  # dram__bytes.sum in Mbyte
    assert first.achieved_occupancy_pct == pytest.approx(12.34)
    assert first.registers_per_thread == 168
    assert (first.grid, first.block) == ((256, 1, 1), (128, 1, 1))
    assert first.cc == "9.0"
    # dram__bytes.sum is n/a here: read (Mbyte) + write (Kbyte)
    assert second.dram_bytes == pytest.approx(1_050_000 + 262_140)
    assert second.duration_ns == pytest.approx(12_480)
    assert second.block == (1024, 1, 1)


def test_parse_raw_page_other_units_and_missing_sections():
    a, b = ncu.parse_raw_csv((DATA / "raw_units.csv").read_text())
    assert a.duration_ns == pytest.approx(2_500_000) and b.duration_ns == pytest.approx(1_500)  # msecond
    assert a.dram_bytes == pytest.approx(1.5e9) and b.dram_bytes == pytest.approx(2.5e8)  # Gbyte
    assert a.sm_throughput_pct is None and a.achieved_occupancy_pct is None
    assert (a.registers_per_thread, b.registers_per_thread) == (255, 96)


def test_grid_from_launch_metrics_when_no_size_columns():
    text = (
        '"ID","Kernel Name","launch__grid_size","launch__block_size","gpu__time_duration.sum"\n'
        '"","","","","nsecond"\n'
        '"0","k","1,024","256","2,048"\n'
    )
    (launch,) = ncu.parse_raw_csv(text)
    assert (launch.grid, launch.block, launch.duration_ns) == ((1024,), (256,), 2048)


def test_scale_unit():
    assert ncu.scale_unit(1.5, "usecond") == 1500
    assert ncu.scale_unit(2, "msecond") == 2_000_000
    assert ncu.scale_unit(3, "Kbyte") == 3000
    assert ncu.scale_unit(1, "Mbyte") == 1_000_000
    assert ncu.scale_unit(42.0, "%") == 42.0
    assert ncu.scale_unit(None, "byte") is None


def test_no_header_no_launches():
    assert ncu.parse_raw_csv("==PROF== No kernels were profiled.\n") == []


# --------------------------------------------------------------------------- the driver


def test_absent_without_ncu_on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = ncu.run_ncu(["python", "-c", "pass"], tmp_path / "out", timeout_s=10)
    assert result.status == "absent" and "ncu" in result.reason


@pytest.mark.parametrize("exit_code", [0, 1])
def test_refused_on_counter_permission(tmp_path, monkeypatch, exit_code):
    # ncu returns the workload's exit code: the marker decides, not the code
    write_tool(
        tmp_path / "bin", "ncu",
        "import sys\nprint('==PROF== Connected to process 4242')\n"
        "print('==ERROR== ERR_NVGPUCTRPERM - The user does not have permission to access NVIDIA GPU Performance "
        f"Counters on the target device 0.')\nsys.exit({exit_code})\n",
    )
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    result = ncu.run_ncu(["python", "-c", "pass"], tmp_path / "out", timeout_s=30)
    assert result.status == "refused"
    assert result.reason.startswith("==ERROR== ERR_NVGPUCTRPERM")


def test_failed_with_its_error_line(tmp_path, monkeypatch):
    write_tool(
        tmp_path / "bin", "ncu",
        "import sys\nprint('==ERROR== Failed to prepare kernel for profiling')\n"
        "print('Traceback: boom', file=sys.stderr)\nsys.exit(9)\n",
    )
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    result = ncu.run_ncu(["python", "-c", "pass"], tmp_path / "out", timeout_s=30)
    assert result.status == "failed"
    assert result.reason == "ncu exited 9: ==ERROR== Failed to prepare kernel for profiling"


def test_no_kernels_profiled_is_ok_and_empty(tmp_path, monkeypatch):
    write_tool(tmp_path / "bin", "ncu", "print('==WARNING== No kernels were profiled.')\n")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    result = ncu.run_ncu(["python", "-c", "pass"], tmp_path / "out", timeout_s=30)
    assert result.status == "ok" and result.launches == [] and "no kernels" in result.reason


def test_end_to_end(tmp_path, monkeypatch):
    write_tool(tmp_path / "bin", "ncu", FAKE_NCU)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("FAKE_NCU_LOG", str(log))
    monkeypatch.setenv("FAKE_NCU_RAW", str(DATA / "raw.csv"))
    workload = [sys.executable, "-c", "pass"]
    result = ncu.run_ncu(workload, tmp_path / "out", nvtx_include=["matmul M=16"], timeout_s=60)
    assert result.status == "ok", result.reason
    assert result.report == tmp_path / "out" / "ncu.ncu-rep"
    assert result.raw_csv.read_text() == (DATA / "raw.csv").read_text()
    assert [launch.kernel for launch in result.launches] == ["matmul_kernel", "rmsnorm_kernel"]
    assert result.reason == "2 launch(es) of 2 kernel(s) profiled"
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls[0][calls[0].index("--nvtx-include") + 1] == "infertune@matmul M=16/"
    assert calls[0][-3:] == workload
    assert calls[1][:2] == ["--import", str(result.report)]
    assert all(isinstance(c, list) for c in result.commands)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["files"] == [str(result.log), str(result.report), str(result.raw_csv)]
