"""Running the built-in runtime with tuned configs: the library behind `infertune generate`
and `infertune embed`.

The config source is chosen by the variant's backend: `triton` asks the tuned database
(`tuner.database.runtime_source`: a missing database is the heuristic, a corrupt one the
heuristic and a warning), `triton-default` the heuristic only; either is wrapped in a
`runtime.configs.LaunchConfigs` prepared with the model's launch list for the batch and
lengths at hand, so every config is decided before the first token and the report says
where each came from. The torch backend launches no kernel of ours.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from kernels.config_source import HeuristicSource, using_config_source
from kernels.device import DeviceInfo
from runtime.configs import LaunchConfigs
from runtime.generate import Generation, Sampling, generate
from runtime.launches import kernel_launches
from runtime.loading import Loaded
from tuner.database import runtime_source


@dataclass
class ConfigReport:
    backend: str
    database: str | None = None
    warning: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "database": self.database, "warning": self.warning, **self.summary}


@contextlib.contextmanager
def launch_configs(loaded: Loaded, device: DeviceInfo, db: str | None, *, batch: int, seq: int,
                   gen: int) -> Iterator[ConfigReport]:
    """Make the configs of every launch of `loaded` at (batch, seq, gen) the active source
    for the block; yields the report, filled when the block ends."""
    variant = loaded.variant
    report = ConfigReport(backend=variant.backend)
    if not variant.uses_kernels:
        yield report
        return
    if variant.tuned:
        inner, report.warning = runtime_source(db)
        report.database = db
    else:
        inner = HeuristicSource()
    source = LaunchConfigs(inner, device)
    launches = kernel_launches(loaded.config, batch=batch, seq=seq, dtype=variant.dtype, quant=variant.scheme,
                               gen=gen if loaded.family == "llama" else 0)
    source.prepare((launch.kernel, launch.problem()) for launch in launches)
    try:
        with using_config_source(source):
            yield report
    finally:
        report.summary = source.summary()


def run_generate(loaded: Loaded, device: DeviceInfo, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
                 sampling: Sampling, db: str | None) -> tuple[Generation, ConfigReport]:
    eos = loaded.tokenizer.eos_ids if loaded.tokenizer is not None else ()
    pad = (loaded.tokenizer.pad_id if loaded.tokenizer is not None else None) or 0
    seq = max(len(p) for p in prompts)
    with launch_configs(loaded, device, db, batch=len(prompts), seq=seq, gen=max_new_tokens) as report:
        result = generate(loaded.model, prompts, max_new_tokens, sampling, eos_ids=eos, pad_id=pad)
    return result, report
