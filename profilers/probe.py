"""Whether the profiling tools are usable here, and why not.

Each probe answers with a ToolStatus and never raises: a missing driver, tool or
permission is a fact to report, not a crash.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ToolStatus:
    name: str
    usable: bool
    version: str | None = None
    detail: str | None = None  # why not usable, or where it was found

    def to_dict(self) -> dict:
        return asdict(self)


def probe_cli_tool(name: str, timeout_s: float = 20.0) -> ToolStatus:
    """Find `name` (nsys, ncu) on PATH and ask it for its version."""
    path = shutil.which(name)
    if path is None:
        return ToolStatus(name, False, detail=f"{name} not found on PATH")
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return ToolStatus(name, False, detail=f"{path} --version did not answer within {timeout_s:.0f} s")
    except OSError as exc:
        return ToolStatus(name, False, detail=f"{path} could not run: {exc}")
    text = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        last = text.splitlines()[-1] if text else "no output"
        return ToolStatus(name, False, detail=f"{path} --version exited {proc.returncode}: {last}")
    match = re.search(r"\d+\.\d+(\.\d+)*", text)
    return ToolStatus(name, True, version=match.group(0) if match else text[:40], detail=path)


def probe_nvml() -> ToolStatus:
    """Initialise NVML (nvidia-ml-py) and read the driver version."""
    try:
        import pynvml
    except ImportError:
        return ToolStatus("nvml", False, detail="nvidia-ml-py (module pynvml) is not installed")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return ToolStatus("nvml", False, detail=f"NVML unavailable (no NVIDIA driver?): {exc}")
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        count = pynvml.nvmlDeviceGetCount()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        return ToolStatus("nvml", True, version=driver, detail=f"{count} GPU(s)")
    except pynvml.NVMLError as exc:
        return ToolStatus("nvml", False, detail=f"NVML initialised but failed: {exc}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def driver_version_from_proc(path: str = "/proc/driver/nvidia/version") -> str | None:
    """The kernel driver's version from /proc, where NVML is not available."""
    try:
        with open(path, encoding="utf-8") as fh:
            match = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", fh.read())
    except OSError:
        return None
    return match.group(1) if match else None
