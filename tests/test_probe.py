import os
import stat

from profilers.probe import driver_version_from_proc, probe_cli_tool, probe_nvml


def _fake_tool(tmp_path, name, script):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_missing_tool_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    status = probe_cli_tool("ncu")
    assert not status.usable and "not found on PATH" in status.detail


def test_failing_tool_is_reported_with_its_message(monkeypatch, tmp_path):
    _fake_tool(tmp_path, "nsys", 'echo "nsys: ERR_NVGPUCTRPERM: no permission" >&2\nexit 3\n')
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ["PATH"])
    status = probe_cli_tool("nsys")
    assert not status.usable and "exited 3" in status.detail and "ERR_NVGPUCTRPERM" in status.detail


def test_working_tool_reports_its_version(monkeypatch, tmp_path):
    _fake_tool(tmp_path, "ncu", 'echo "NVIDIA (R) Nsight Compute Command Line Profiler"\necho "Version 2025.1.0.0 (build 1)"\n')
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ["PATH"])
    status = probe_cli_tool("ncu")
    assert status.usable and status.version == "2025.1.0.0"


def test_hanging_tool_times_out(monkeypatch, tmp_path):
    _fake_tool(tmp_path, "nsys", "sleep 30\n")
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ["PATH"])
    status = probe_cli_tool("nsys", timeout_s=0.5)
    assert not status.usable and "did not answer" in status.detail


def test_nvml_probe_never_raises():
    status = probe_nvml()
    assert status.name == "nvml"
    assert status.usable == (status.version is not None)
    if not status.usable:
        assert status.detail


def test_driver_version_from_proc(tmp_path):
    f = tmp_path / "version"
    f.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n")
    assert driver_version_from_proc(str(f)) == "550.54.15"
    assert driver_version_from_proc(str(tmp_path / "absent")) is None
