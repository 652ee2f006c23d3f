"""Pure key functions of the tuned config database: device names and classes, M buckets,
problem buckets, kernel source hashes and Triton minor versions.

Everything here is a pure function of its arguments (the source hash reads the kernel's
files, never runs them) so that lookups and tests agree on what "the same key" means.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import math
import re
from dataclasses import dataclass
from pathlib import Path

import triton

from kernels.device import DeviceInfo
from kernels.errors import InvalidProblem
from kernels.spec import KernelSpec, Problem

# The token-count dimension of a kernel (rows of a matmul or a norm, tokens of rope): the
# one that changes with batch size at serving time. It is bucketed; every other dim is exact.
BUCKETED_DIMS = ("M", "T")

# Buckets up to 4096: powers of two and the midpoints between them (1, 2, 3, 4, 6, 8, 12, ...),
# as gemlite does; beyond 4096 powers of two only (large-M configs change little).
_MAX_FINE = 4096


def _fine_buckets() -> tuple[int, ...]:
    out = {1, 2}
    p = 2
    while p < _MAX_FINE:
        out.update((p + p // 2, 2 * p))
        p *= 2
    return tuple(sorted(out))


M_BUCKETS = _fine_buckets()

# Words that name the vendor's trademarks rather than the part.
_NOISE = re.compile(r"\((?:tm|r)\)|\b(?:corporation|corp)\b", re.IGNORECASE)


def normalize_device_name(name: str) -> str:
    """A stable device name: lower case, trademark noise dropped, any run of spaces,
    underscores or punctuation as one "-".

    "NVIDIA H100 80GB HBM3" and "NVIDIA_H100_80GB_HBM3" -> "nvidia-h100-80gb-hbm3";
    "NVIDIA H100 PCIe" -> "nvidia-h100-pcie" (variants stay distinct).
    """
    text = _NOISE.sub(" ", name).lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "unknown"


@dataclass(frozen=True)
class DeviceClass:
    """What a record's device must match: compute capability ("9.0"; "cpu" on the
    interpreter) and the normalized name."""

    capability: str
    name: str

    def __str__(self) -> str:
        return self.name if self.capability == "cpu" else f"{self.name} (sm_{self.capability.replace('.', '')})"


CPU_CLASS = DeviceClass("cpu", "cpu")


def device_class(device: DeviceInfo) -> DeviceClass:
    """The device class of `device`. Timings through the Triton interpreter (on the CPU, or
    TRITON_INTERPRET=1 on a GPU) are CPU timings: their class is "cpu"."""
    if device.interpreter or device.kind != "cuda" or device.capability is None:
        return CPU_CLASS
    major, minor = device.capability
    return DeviceClass(f"{major}.{minor}", normalize_device_name(device.name))


# Drivers and torch report a card's memory a few hundred MiB apart (ECC on or off, the
# driver's reserve: an H100 80GB reads 79.1 to 81.0 GiB), so memory matches within 2 %.
MEMORY_TOLERANCE = 0.02


def hardware_of(device: DeviceInfo) -> dict[str, int]:
    """What a record stores of its device's hardware (extra["device"]), for matching a card
    whose name differs: {"sm_count", "total_memory"}."""
    return {"sm_count": device.sm_count, "total_memory": device.total_memory}


def same_hardware(device: DeviceInfo, recorded: object) -> bool:
    """True when `recorded` (a record's extra["device"]) describes `device`'s hardware: the
    same SM count and memory within MEMORY_TOLERANCE. The compute capability is compared by
    the caller (it is a column). False for anything malformed or missing."""
    if not isinstance(recorded, dict):
        return False
    sms, memory = recorded.get("sm_count"), recorded.get("total_memory")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (sms, memory)):
        return False
    return sms == device.sm_count and abs(memory - device.total_memory) <= MEMORY_TOLERANCE * device.total_memory


def hardware_text(capability: str, device: DeviceInfo) -> str:
    """"compute capability 9.0, 132 SMs, 80 GiB": how a renamed card was matched."""
    return f"compute capability {capability}, {device.sm_count} SMs, {device.total_memory / 2**30:.0f} GiB"


def m_bucket(m: int) -> int:
    """The bucket of a token count: the smallest of 1, 2, 3, 4, 6, 8, 12, ..., 3072, 4096
    that is >= m; above 4096 the next power of two. Raises ValueError for m < 1."""
    if m < 1:
        raise ValueError(f"M must be >= 1, got {m}")
    if m <= _MAX_FINE:
        for b in M_BUCKETS:
            if b >= m:
                return b
    return 1 << (m - 1).bit_length()


def bucketed_dim(spec: KernelSpec) -> str | None:
    """The dim `spec` buckets (its token count), or None when every dim is exact."""
    return next((d for d in spec.dims if d in BUCKETED_DIMS), None)


def problem_bucket(spec: KernelSpec, problem: Problem) -> str:
    """The bucketed key: the shape key with the token dim replaced by its bucket, every other
    dim exact, dtype and options kept ("M=16,N=4096,K=4096|bf16|bias=0" for M=13)."""
    dim = bucketed_dim(spec)
    if dim is None:
        return spec.shape_key(problem)
    shape = tuple((d, m_bucket(v) if d == dim else v) for d, v in problem.shape)
    return spec.shape_key(Problem(shape, problem.dtype, problem.options))


def problem_family(spec: KernelSpec, problem: Problem) -> str:
    """The key without the token dim: records of one family differ only in M (nearest lookups
    stay inside a family). "N=4096,K=4096|bf16|bias=0"."""
    dim = bucketed_dim(spec)
    shape = tuple((d, v) for d, v in problem.shape if d != dim)
    return spec.shape_key(Problem(shape, problem.dtype, problem.options))


def quant_of(problem: Problem) -> str:
    """The problem's quantization scheme ("int4-g128"), or "none"."""
    return dict(problem.options).get("quant", "none")


def log_distance(a: int, b: int) -> float:
    """|log2 a - log2 b|: how far two token counts are for a nearest lookup."""
    return abs(math.log2(a) - math.log2(b))


def problem_from_key(spec: KernelSpec, key: str) -> Problem:
    """Inverse of spec.shape_key: "M=16,N=4096,K=4096|bf16|bias=0" -> the validated Problem.
    Raises InvalidProblem."""
    shape_text, _, rest = key.partition("|")
    dtype, *option_texts = rest.split("|") if rest else [""]
    shape: dict[str, int] = {}
    for part in filter(None, shape_text.split(",")):
        name, sep, value = part.partition("=")
        if not sep or not value.isdigit():
            raise InvalidProblem(f"malformed problem key {key!r}")
        shape[name] = int(value)
    options = {}
    for text in option_texts:
        name, sep, value = text.partition("=")
        if not sep:
            raise InvalidProblem(f"malformed problem key {key!r}")
        options[name] = value
    return spec.problem(shape, dtype, options)


def triton_minor(version: str) -> str:
    """"3.9.0" -> "3.9"; "3.10.0+git1234" -> "3.10". Configs are kept per minor version."""
    parts = re.findall(r"\d+", version)[:2]
    if not parts:
        raise ValueError(f"not a version: {version!r}")
    return ".".join(parts) if len(parts) == 2 else f"{parts[0]}.0"


# -- kernel source hash ----------------------------------------------------------------

def _kernels_dir() -> Path:
    found = importlib.util.find_spec("kernels")
    if found is None or not found.submodule_search_locations:
        raise RuntimeError("the kernels package cannot be found")
    return Path(next(iter(found.submodule_search_locations)))


def _local_imports(tree: ast.Module) -> set[str]:
    """Names of kernels/ modules a kernels/ module imports (`from . import gemm`,
    `from .attention import X`, `from kernels import gemm`)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                names.add(node.module.split(".")[0])
            elif node.level == 1 or (node.level == 0 and node.module == "kernels"):
                names.update(alias.name for alias in node.names)
            elif node.level == 0 and node.module and node.module.startswith("kernels."):
                names.add(node.module.split(".")[1])
    return names


def _has_triton_code(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                target = deco.func if isinstance(deco, ast.Call) else deco
                if isinstance(target, ast.Attribute) and target.attr in ("jit", "autotune", "heuristics"):
                    return True
    return False


def kernel_source_files(spec: KernelSpec) -> list[Path]:
    """The files whose text decides what `spec` computes and how fast: its own module and,
    transitively, the kernels/ modules it imports that hold Triton code (gemm.py, splitk.py,
    rowwise.py, attention.py, ...). Infrastructure modules (spec, device, constraints, ...)
    are left out: a change there does not change a compiled kernel, and a stored config that
    they now reject is refused at lookup anyway."""
    root = _kernels_dir()
    module = spec.launch.__module__
    if not module.startswith("kernels."):
        raise RuntimeError(f"{spec.name}: launcher lives outside kernels/ ({module})")
    start = root / f"{module.split('.', 1)[1]}.py"
    files, todo, seen = [start], [start], {start}
    while todo:
        tree = ast.parse(todo.pop().read_text(encoding="utf-8"))
        for name in sorted(_local_imports(tree)):
            path = root / f"{name}.py"
            if path in seen or not path.is_file():
                continue
            seen.add(path)
            if _has_triton_code(ast.parse(path.read_text(encoding="utf-8"))):
                files.append(path)
                todo.append(path)
    return [start] + sorted(files[1:])


def kernel_source_hash(spec: KernelSpec) -> str:
    """sha256 (hex) over the names and bytes of `kernel_source_files(spec)`."""
    digest = hashlib.sha256()
    for path in kernel_source_files(spec):
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


# -- this process's keys (memoized) ----------------------------------------------------

@functools.lru_cache(maxsize=1)
def current_triton_minor() -> str:
    """The Triton minor version of this process ("3.9")."""
    return triton_minor(triton.__version__)


_SOURCE_HASHES: dict[str, str] = {}


def current_source_hash(spec: KernelSpec) -> str:
    """The kernel source hash of `spec` in this process (its files are read once per kernel)."""
    found = _SOURCE_HASHES.get(spec.name)
    if found is None:
        found = _SOURCE_HASHES[spec.name] = kernel_source_hash(spec)
    return found
