"""NVTX ranges for kernel launches and model phases, cheap when no profiler listens.

kernels/ imports nothing of ours, so this is its own small copy of profilers/nvtx.py (same
domain "infertune", same categories and colors; tests/test_nvtx.py holds the two to each
other). The runtime uses it through `kernels.nvtx_range`.

The domain is resolved once, on first use: the `nvtx` package returns a dummy domain when
no tool (Nsight Systems) is attached, and then a range is a shared no-op context manager;
without the `nvtx` package, the same. `detail` is joined to the message only when a range
is really recorded, so a launch does not format its config for nobody.

Two more listeners, checked on the same call so the unprofiled path stays one function
call and three global reads (~0.3 µs, tests/test_kernel_timer.py measures it):
- torch.profiler: while it records, a range is also a `record_function` (a user_annotation
  event in its trace), so `--torch-trace` shows our kernels and model phases, not only aten ops.
- a range listener (`listen(...)`, kernels/kernel_timer.py's KernelTimer): `infertune
  profile model` times each kernel per phase with it, with or without any profiler.
"""

from __future__ import annotations

from torch.autograd import profiler as _torch_profiler

try:
    import nvtx as _nvtx_module
except ImportError:  # pragma: no cover - nvtx is a dependency; ranges become no-ops
    _nvtx_module = None

DOMAIN = "infertune"
# Registered in this order, so the ids are 1, 2, 3 in every process.
CATEGORIES = ("kernel", "trial", "model")
COLORS = {"kernel": 0xFF1F77B4, "trial": 0xFF2CA02C, "model": 0xFF9467BD}  # ARGB: blue, green, purple

_UNRESOLVED = object()
_domain = _UNRESOLVED
_attributes: dict[tuple[str, str], object] = {}
_MAX_CACHED = 4096
_listener = None  # an object with .range(message, category) -> context manager, or None


class _NoRange:
    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


NO_RANGE = _NoRange()


class _Ranges:
    """Several context managers entered in order and left in reverse."""

    __slots__ = ("_parts",)

    def __init__(self, parts) -> None:
        self._parts = parts

    def __enter__(self):
        for part in self._parts:
            part.__enter__()
        return self

    def __exit__(self, *exc):
        for part in reversed(self._parts):
            part.__exit__(*exc)
        return False


class _Range:
    __slots__ = ("_domain", "_attributes")

    def __init__(self, domain, attributes) -> None:
        self._domain = domain
        self._attributes = attributes

    def __enter__(self):
        self._domain.push_range(self._attributes)
        return self

    def __exit__(self, *exc):
        self._domain.pop_range()
        return False


def _resolve():
    global _domain
    domain = None
    if _nvtx_module is not None:
        try:
            candidate = _nvtx_module.get_domain(DOMAIN)
            if hasattr(candidate, "handle"):  # a real Domain; the DummyDomain has no handle
                for name in CATEGORIES:
                    candidate.get_category_id(name)
                domain = candidate
        except Exception:  # noqa: BLE001 - a broken NVTX install must not break a launch
            domain = None
    _domain = domain
    return domain


def active() -> bool:
    """True when ranges are recorded (the nvtx package is here and a tool is attached)."""
    domain = _domain if _domain is not _UNRESOLVED else _resolve()
    return domain is not None


def reset(module=_UNRESOLVED) -> None:
    """Forget the resolved domain (tests: `reset(None)` simulates a missing nvtx package)."""
    global _domain, _nvtx_module
    if module is not _UNRESOLVED:
        _nvtx_module = module
    _domain = _UNRESOLVED
    _attributes.clear()


def listen(listener):
    """Make `listener.range(message, category)` (a context manager) wrap every range from now
    on; None stops. Returns the previous listener. One at a time, process-wide."""
    global _listener
    previous, _listener = _listener, listener
    return previous


def nvtx_range(message: str, category: str = "kernel", detail: object = None):
    """A context manager: an NVTX range `message [detail]` in domain "infertune", category
    `category` ("kernel", "trial" or "model"); also a torch.profiler record_function while
    torch's profiler records, and the listener's range when one listens (`listen`). A no-op
    when nothing records it."""
    domain = _domain if _domain is not _UNRESOLVED else _resolve()
    if domain is None and _listener is None and not _torch_profiler._is_profiler_enabled:
        return NO_RANGE
    parts = []
    full = message if detail is None else f"{message} {detail}"
    if domain is not None:
        parts.append(_nvtx_range(domain, full, category))
    if _torch_profiler._is_profiler_enabled:
        parts.append(_torch_profiler.record_function(full))
    if _listener is not None:  # innermost: the timer times the launch, not the other tools' bookkeeping
        parts.append(_listener.range(message, category))
    return parts[0] if len(parts) == 1 else _Ranges(parts)


def _nvtx_range(domain, message: str, category: str) -> _Range:
    key = (message, category)
    attributes = _attributes.get(key)
    if attributes is None:
        attributes = domain.get_event_attributes(message, COLORS.get(category), category)
        if len(_attributes) < _MAX_CACHED:
            _attributes[key] = attributes
    return _Range(domain, attributes)
