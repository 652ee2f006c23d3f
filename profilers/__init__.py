"""Timing and profiler probes. Imports nothing else of infertune's (see docs/ARCHITECTURE.md)."""

from .timing import Timing, measure, quantile

__all__ = ["Timing", "measure", "quantile"]
