"""infertune: profile and autotune the Triton kernels of LLM and embedding-model inference.

The public API for Python callers; the CLI (infertune.cli) is a thin layer over it.

Tuning that holds in production (the library behind the `autotune` flags of the same names;
imported on first use, so `import infertune` stays light):

- `read_traffic(path, max_batch=...)`, `traffic_autotune(model, traffic, buckets=..., ...)`:
  traffic-aware M buckets (`--traffic`, `--buckets`), `choose_buckets` the exact optimum;
- `confirm_records(model, records, ...)`: end-to-end confirmation (`--confirm`);
- `open_warm_source(text, db)`: warm start (`--warm-start`); `transfer(database, from, to)`:
  `db transfer`; `device_for(name)`: the known GPUs;
- `make_sampler("lfbo", seed, space)`: the failure-aware sampler (`--sampler lfbo`).

Serving (`infertune serve`, `infertune profile serve`):

- `open_target(model, variant, db, max_batch=..., max_queue=...)`: a model with its batching
  engine and its configs prepared; `create_app(target)`: the OpenAI-compatible FastAPI app;
  `BackgroundServer(app)`: that app on a thread (`with ... as server: server.url`);
- `profile_serving(url, model, ...)`: the load profiler, writing a run directory.
"""

from __future__ import annotations

from typing import Any

from .benchmark import BenchResult, CheckResult, bench, check
from .environment import Environment, collect_environment

__version__ = "0.1.0"

_LAZY = ("read_traffic", "choose_buckets", "traffic_autotune", "confirm_records", "open_warm_source", "transfer",
         "device_for", "make_sampler", "open_target", "create_app", "BackgroundServer", "profile_serving")

__all__ = ["BenchResult", "CheckResult", "Environment", "bench", "check", "collect_environment", "__version__",
           *_LAZY]


def __getattr__(name: str) -> Any:
    # Literal imports (not importlib on a table) so tests/test_layering.py sees what they reach.
    if name == "read_traffic":
        from tuner.traffic_io import read_traffic as found
    elif name == "choose_buckets":
        from tuner.traffic import choose_buckets as found
    elif name == "traffic_autotune":
        from .traffic_tuning import traffic_autotune as found
    elif name == "confirm_records":
        from .confirm import confirm_records as found
    elif name == "open_warm_source":
        from tuner.warm_start import open_warm_source as found
    elif name == "transfer":
        from tuner.transfer import transfer as found
    elif name == "device_for":
        from tuner.devices import device_for as found
    elif name == "make_sampler":
        from tuner.samplers import make_sampler as found
    elif name == "open_target":
        from .serving_setup import open_target as found
    elif name == "create_app":
        from .serving.app import create_app as found
    elif name == "BackgroundServer":
        from .serving.server import BackgroundServer as found
    elif name == "profile_serving":
        from .serve_profile import profile_serving as found
    else:
        raise AttributeError(f"module 'infertune' has no attribute {name!r}")
    return found
