"""NVTX annotations: one domain "infertune", categories "kernel", "trial", "model".

`annotate(message, category)` (alias `range`) is a context manager that opens an NVTX range
in Nsight Systems' timeline. The domain is resolved once, on first use; the `nvtx` package
hands back a dummy domain when no tool is attached, and then a range is a shared no-op
context manager (about 0.2 µs an enter/exit pair measured on the CPU CI machine, see
docs/ARCHITECTURE.md "Profilers"). Without the `nvtx` package it is the same no-op.

kernels/ may not import profilers/, so kernels/_nvtx.py is a copy of this for kernel
launches and model phases; both use the same domain, category ids and colors
(tests/test_nvtx.py holds them to each other).
"""

from __future__ import annotations

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


class _NoRange:
    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


NO_RANGE = _NoRange()


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
        except Exception:  # noqa: BLE001 - a broken NVTX install must not break the caller
            domain = None
    _domain = domain
    return domain


def available() -> bool:
    """True when the `nvtx` package imports (ranges can be recorded once a tool attaches)."""
    return _nvtx_module is not None


def active() -> bool:
    """True when ranges are recorded: the nvtx package is here and a tool is attached."""
    domain = _domain if _domain is not _UNRESOLVED else _resolve()
    return domain is not None


def reset(module=_UNRESOLVED) -> None:
    """Forget the resolved domain (tests: `reset(None)` simulates a missing nvtx package)."""
    global _domain, _nvtx_module
    if module is not _UNRESOLVED:
        _nvtx_module = module
    _domain = _UNRESOLVED
    _attributes.clear()


def annotate(message: str, category: str = "model", detail: object = None):
    """A context manager: an NVTX range `message [detail]` in domain "infertune", category
    `category` ("kernel", "trial" or "model"). A no-op when nothing records it; `detail` is
    formatted only when the range is recorded."""
    if category not in COLORS:
        raise ValueError(f"unknown NVTX category {category!r}; expected one of {', '.join(CATEGORIES)}")
    domain = _domain if _domain is not _UNRESOLVED else _resolve()
    if domain is None:
        return NO_RANGE
    if detail is not None:
        message = f"{message} {detail}"
    key = (message, category)
    attributes = _attributes.get(key)
    if attributes is None:
        attributes = domain.get_event_attributes(message, COLORS[category], category)
        if len(_attributes) < _MAX_CACHED:
            _attributes[key] = attributes
    return _Range(domain, attributes)


range = annotate  # noqa: A001 - `profilers.nvtx.range(...)` reads as NVTX's own name
