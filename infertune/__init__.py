"""infertune: profile and autotune the Triton kernels of LLM and embedding-model inference.

The public API for Python callers; the CLI (infertune.cli) is a thin layer over it.
"""

from .benchmark import BenchResult, CheckResult, bench, check
from .environment import Environment, collect_environment

__version__ = "0.1.0"

__all__ = ["BenchResult", "CheckResult", "Environment", "bench", "check", "collect_environment", "__version__"]
