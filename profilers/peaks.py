"""Device peaks: the copy bandwidth and matmul throughput this device reaches, or its datasheet.

`measure_peaks(device)` measures, with `profilers.timing.measure` (CUDA events on a GPU):

- copy bandwidth: one large device-to-device copy (`dst.copy_(src)`, 1 GiB on a GPU), GB/s
  counted as bytes read + bytes written (2 x size) over the median time;
- matmul TFLOP/s (2 N^3 flops, median time) at N = 8192 per dtype: `fp32` (IEEE, TF32 off),
  `tf32` (fp32 inputs, TF32 tensor cores allowed), `fp16`, `bf16`, and `fp8` (e4m3 through
  `torch._scaled_mm`) where the compute capability is >= 8.9 and torch has it; a dtype that
  cannot run is listed under `skipped` with the reason.

On the CPU the same is measured with the wall clock at small sizes (N = 256, 64 MiB copy,
a few seconds in all): `kind == "cpu"`, and the figures are this CPU's, not a GPU's.

`Peaks` is JSON (`to_dict` / `from_dict`, `save` / `load`); its file sits beside the tuned
config database (`peaks_path_for(db)` = `<db>.peaks.json`). `datasheet_peaks(name)` gives
NVIDIA's published dense figures (source "datasheet") for H100 SXM / PCIe, H200, A100 and L4.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .timing import measure

FORMAT = "infertune-peaks/1"
MATMUL_DTYPES = ("fp32", "tf32", "fp16", "bf16", "fp8")
GPU_MATMUL_SIZE = 8192
GPU_COPY_BYTES = 1 << 30
CPU_MATMUL_SIZE = 256
CPU_COPY_BYTES = 64 << 20


@dataclass
class Peaks:
    device_name: str
    source: str  # "measured" or "datasheet"
    kind: str  # "cuda" or "cpu" (measured on the CPU: CPU figures)
    bandwidth_gbps: float | None  # achieved D2D copy, bytes read + written per second, in GB/s
    tflops: dict[str, float] = field(default_factory=dict)  # dtype -> matmul TFLOP/s
    skipped: dict[str, str] = field(default_factory=dict)  # dtype -> why not measured
    capability: str | None = None
    matmul_size: int | None = None
    copy_bytes: int | None = None
    method: str | None = None  # timing method: "cuda-events" / "wall-clock"
    note: str | None = None
    created: str | None = None
    torch_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Peaks:
        if data.get("format", FORMAT) != FORMAT:
            raise ValueError(f"not an infertune peaks file (format {data.get('format')!r}, expected {FORMAT})")
        known = set(cls.__dataclass_fields__)
        fields = {k: v for k, v in data.items() if k in known}
        fields["tflops"] = {str(k): float(v) for k, v in (fields.get("tflops") or {}).items()}
        fields["skipped"] = {str(k): str(v) for k, v in (fields.get("skipped") or {}).items()}
        return cls(**fields)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the JSON file (through a temporary file renamed into place)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Peaks:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def peaks_path_for(db_path: str | os.PathLike) -> Path:
    """`<db>.peaks.json` beside a tuned-database file. A database URL (postgresql://...) has
    no file beside it: ValueError."""
    text = os.fspath(db_path)
    if "://" in text:
        raise ValueError(f"{text} is a database URL, not a file: peaks are stored beside a database file")
    return Path(text + ".peaks.json")


# -- datasheet ---------------------------------------------------------------------------

# NVIDIA's published figures, dense (the datasheets' headline tensor figures are "with
# sparsity": halved here). TB/s -> GB/s x 1000. fp32 is the non-tensor-core FP32 rate.
#   H100 SXM5 80GB (H100 datasheet, 2023): HBM3 3.35 TB/s; FP32 67; TF32 989 sparse;
#     BF16/FP16 1979 sparse; FP8 3958 sparse TFLOPS.
#   H100 PCIe 80GB (same datasheet): HBM2e 2.0 TB/s; FP32 51; TF32 756 sparse; BF16/FP16
#     1513 sparse; FP8 3026 sparse.
#   H200 SXM 141GB (H200 datasheet, 2024): HBM3e 4.8 TB/s; FP32 67; TF32 989 sparse;
#     BF16/FP16 1979 sparse; FP8 3958 sparse.
#   A100 SXM4/PCIe (A100 datasheet, 2021): FP32 19.5; TF32 156 dense; BF16/FP16 312 dense;
#     no FP8. Memory: 80GB SXM 2,039 GB/s, 80GB PCIe 1,935 GB/s, 40GB 1,555 GB/s.
#   L4 (L4 datasheet, 2023): GDDR6 300 GB/s; FP32 30.3; TF32 120 sparse; BF16/FP16 242
#     sparse; FP8 485 sparse.
def _sheet(name: str, gbps: float, fp32: float, tf32: float, half: float, fp8: float | None) -> dict[str, Any]:
    tflops = {"fp32": fp32, "tf32": tf32, "fp16": half, "bf16": half}
    if fp8 is not None:
        tflops["fp8"] = fp8
    return {"name": name, "bandwidth_gbps": gbps, "tflops": tflops}


_DATASHEETS = {
    "h100-sxm": _sheet("NVIDIA H100 SXM5 80GB", 3350.0, 67.0, 494.7, 989.4, 1978.9),
    "h100-pcie": _sheet("NVIDIA H100 PCIe 80GB", 2000.0, 51.0, 378.0, 756.5, 1513.0),
    "h200-sxm": _sheet("NVIDIA H200 SXM 141GB", 4800.0, 67.0, 494.7, 989.4, 1978.9),
    "a100-80gb-sxm": _sheet("NVIDIA A100 SXM4 80GB", 2039.0, 19.5, 156.0, 312.0, None),
    "a100-80gb-pcie": _sheet("NVIDIA A100 PCIe 80GB", 1935.0, 19.5, 156.0, 312.0, None),
    "a100-40gb": _sheet("NVIDIA A100 40GB", 1555.0, 19.5, 156.0, 312.0, None),
    "l4": _sheet("NVIDIA L4", 300.0, 30.3, 60.0, 121.0, 242.5),
}


def normalize_name(name: str) -> str:
    """Lower case, trademark noise dropped, runs of other characters as one "-" (the same
    rule as the tuned database's device names: "NVIDIA_H100_80GB_HBM3" -> "nvidia-h100-80gb-hbm3")."""
    text = re.sub(r"\((?:tm|r)\)|\b(?:corporation|corp)\b", " ", name, flags=re.IGNORECASE).lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def _datasheet_key(name: str) -> str | None:
    tokens = set(normalize_name(name).split("-"))
    if "nvl" in tokens:
        return None  # NVL variants have other clocks and power: not listed
    if "h200" in tokens:
        return "h200-sxm"
    if "h100" in tokens:
        return "h100-pcie" if "pcie" in tokens else "h100-sxm"
    if "a100" in tokens:
        if "80gb" in tokens:
            return "a100-80gb-pcie" if "pcie" in tokens else "a100-80gb-sxm"
        return "a100-40gb"
    if "l4" in tokens:
        return "l4"
    return None


def datasheet_peaks(device_name: str) -> Peaks | None:
    """The datasheet's dense peaks for a known device name (any spelling NVML or torch uses),
    labelled source "datasheet"; None for a device not listed."""
    key = _datasheet_key(device_name)
    if key is None:
        return None
    sheet = _DATASHEETS[key]
    skipped = {} if "fp8" in sheet["tflops"] else {"fp8": "no FP8 tensor cores"}
    return Peaks(device_name=device_name, source="datasheet", kind="cuda",
                 bandwidth_gbps=sheet["bandwidth_gbps"], tflops=dict(sheet["tflops"]), skipped=skipped,
                 note=f"{sheet['name']} datasheet, dense (no sparsity)")


# -- measurement -------------------------------------------------------------------------

_TORCH_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _timing_args(cuda: bool) -> dict[str, Any]:
    if cuda:
        return {"warmup_ms": 25.0, "rep_ms": 200.0, "min_reps": 10, "max_reps": 200, "flush_l2": False}
    return {"warmup_ms": 5.0, "rep_ms": 100.0, "min_reps": 3, "max_reps": 50, "flush_l2": False}


def _fp8_reason(device: torch.device) -> str | None:
    if device.type != "cuda":
        return "fp8 matmul needs a GPU with compute capability >= 8.9"
    cap = torch.cuda.get_device_capability(device)
    if cap < (8, 9):
        return f"fp8 matmul needs compute capability >= 8.9 (this device: {cap[0]}.{cap[1]})"
    if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
        return f"torch {torch.__version__} has no torch._scaled_mm"
    return None


def _matmul_fn(dtype: str, n: int, device: torch.device):
    generator = torch.Generator(device=device).manual_seed(0)
    if dtype == "fp8":
        a = torch.randn(n, n, device=device, generator=generator).to(torch.float8_e4m3fn)
        b = torch.randn(n, n, device=device, generator=generator).to(torch.float8_e4m3fn).t()  # column-major
        one = torch.tensor(1.0, device=device)
        return lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    a = torch.randn(n, n, device=device, generator=generator, dtype=torch.float32).to(_TORCH_DTYPES[dtype])
    b = torch.randn(n, n, device=device, generator=generator, dtype=torch.float32).to(_TORCH_DTYPES[dtype])
    return lambda: torch.matmul(a, b)


def _copy_gbps(nbytes: int, device: torch.device, timing_args: dict[str, Any]) -> tuple[float, str]:
    """Achieved copy bandwidth (bytes read + written per second, GB/s) and the timing method."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    copy = measure(lambda: dst.copy_(src), device=device, **timing_args)
    return 2 * nbytes / (copy.median_ms / 1e3) / 1e9, copy.method


def measure_peaks(device: torch.device | str = "cuda", *, matmul_size: int | None = None,
                  copy_bytes: int | None = None, dtypes: tuple[str, ...] = MATMUL_DTYPES) -> Peaks:
    """Measure copy bandwidth and matmul TFLOP/s per dtype on `device` (see the module doc).
    A dtype that fails to run (out of memory, no kernel for it) is skipped with its error."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    if cuda and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    n = int(matmul_size or (GPU_MATMUL_SIZE if cuda else CPU_MATMUL_SIZE))
    nbytes = int(copy_bytes or (GPU_COPY_BYTES if cuda else CPU_COPY_BYTES))
    timing_args = _timing_args(cuda)

    bandwidth_gbps, method = _copy_gbps(nbytes, device, timing_args)

    tflops: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for dtype in dtypes:
        if dtype not in MATMUL_DTYPES:
            raise ValueError(f"unknown matmul dtype {dtype!r}; expected one of {', '.join(MATMUL_DTYPES)}")
        if dtype == "tf32" and not cuda:
            skipped[dtype] = "TF32 is a GPU tensor-core mode"
            continue
        if dtype == "fp8":
            reason = _fp8_reason(device)
            if reason:
                skipped[dtype] = reason
                continue
        saved = torch.backends.cuda.matmul.allow_tf32
        try:
            torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
            timing = measure(_matmul_fn(dtype, n, device), device=device, **timing_args)
            tflops[dtype] = 2.0 * n**3 / (timing.median_ms / 1e3) / 1e12
        except Exception as exc:  # noqa: BLE001 - a dtype the device or torch cannot run
            lines = str(exc).strip().splitlines()
            skipped[dtype] = f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"
        finally:
            torch.backends.cuda.matmul.allow_tf32 = saved
            if cuda:
                torch.cuda.empty_cache()

    if cuda:
        name = torch.cuda.get_device_name(device)
        major, minor = torch.cuda.get_device_capability(device)
        capability, note = f"{major}.{minor}", None
    else:
        name, capability = "cpu", None
        note = "CPU figures (wall clock, small sizes): this machine's CPU, not a GPU's peaks"
    return Peaks(device_name=name, source="measured", kind="cuda" if cuda else "cpu",
                 bandwidth_gbps=bandwidth_gbps, tflops=tflops, skipped=skipped, capability=capability,
                 matmul_size=n, copy_bytes=nbytes,
                 method=method, note=note, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 torch_version=torch.__version__)


def fraction_of_peak(value: float, peak: float | None) -> float | None:
    """value / peak, or None where there is no peak to compare with."""
    if peak is None or not math.isfinite(peak) or peak <= 0:
        return None
    return value / peak
