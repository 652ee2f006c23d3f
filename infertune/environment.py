"""What this machine is: device, versions, and which profiling tools work (and why not)."""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import asdict, dataclass

import torch

from kernels.device import DeviceInfo, current_device
from profilers.probe import ToolStatus, driver_version_from_proc, probe_cli_tool, probe_nvml


@dataclass(frozen=True)
class Environment:
    device: DeviceInfo
    python: str
    torch: str
    triton: str | None
    optuna: str | None
    cuda_runtime: str | None
    driver: str | None
    nvml: ToolStatus
    nsys: ToolStatus
    ncu: ToolStatus

    def to_dict(self) -> dict:
        d = asdict(self)
        d["device"]["label"] = self.device.label
        d["device"]["compute_capability"] = (
            f"{self.device.capability[0]}.{self.device.capability[1]}" if self.device.capability else None
        )
        return d


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect_environment() -> Environment:
    nvml = probe_nvml()
    driver = nvml.version if nvml.usable else driver_version_from_proc()
    return Environment(
        device=current_device(),
        python=platform.python_version(),
        torch=torch.__version__,
        triton=_version("triton"),
        optuna=_version("optuna"),
        cuda_runtime=torch.version.cuda,
        driver=driver,
        nvml=nvml,
        nsys=probe_cli_tool("nsys"),
        ncu=probe_cli_tool("ncu"),
    )
