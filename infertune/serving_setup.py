"""From `infertune serve`'s flags to a model ready to serve: loaded for its variant, its kernel
configs decided for every batch the server can form, and a batching engine around it.

Configs: the server's decode step always runs `max_batch` slots of a `max_len` KV cache
(runtime/engine.py), so the decode launches are one set, prepared here before the first
request: after this, the decode path makes only dict hits (LaunchConfigs). Prefill runs one
request at a time at its own length; the launches of a power-of-two ladder of lengths up to
max_len are prepared too, and a length off the ladder is resolved once on first use and
kept (the `unplanned` count of the configs report). An encoder's batches are prepared at
max_batch x the same ladder. The config source is handed to the engine thread, which makes
it active there (kernels.config_source is per thread).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kernels.config_source import HeuristicSource
from kernels.device import DeviceInfo, current_device
from runtime.configs import LaunchConfigs
from runtime.embed_batcher import EmbedBatcher
from runtime.engine import Engine, EngineSettings
from runtime.launches import kernel_launches
from runtime.loading import Loaded, default_variant_text, load_model
from runtime.variant import parse_variant
from tuner.database import runtime_source

from .errors import UsageError

DEFAULT_MAX_LEN = 1024       # positions per slot when --max-len is not given (capped by the model)
DEFAULT_EMBED_BATCH = 32     # texts per encoder forward


@dataclass
class ServeTarget:
    name: str
    family: str                      # "llama" | "bert"
    engine: Engine | None
    embedder: EmbedBatcher | None
    tokenizer: Any | None            # runtime.tokenizer.Tokenizer; None for synthetic presets
    variant: str
    device: str
    max_len: int
    configs: dict[str, Any] = field(default_factory=dict)   # backend, database, warning, LaunchConfigs.summary()
    loaded: Loaded | None = None
    source: LaunchConfigs | None = None
    interpreter: bool = False

    def start(self) -> None:
        for worker in (self.engine, self.embedder):
            if worker is not None:
                worker.start()

    def stop(self) -> None:
        for worker in (self.engine, self.embedder):
            if worker is not None:
                worker.stop()

    @property
    def alive(self) -> bool:
        return all(w.alive for w in (self.engine, self.embedder) if w is not None)

    def config_report(self) -> dict[str, Any]:
        """The configs report, with the launches resolved since start counted as unplanned."""
        report = dict(self.configs)
        if self.source is not None:
            report.update(self.source.summary())
        return report


def length_ladder(limit: int, start: int = 16) -> list[int]:
    """Powers of two from `start` below `limit`, then `limit`: the prefill lengths prepared. Pure."""
    out, n = [], start
    while n < limit:
        out.append(n)
        n *= 2
    return out + [limit]


def _source(loaded: Loaded, device: DeviceInfo, db: str | None) -> tuple[LaunchConfigs | None, dict[str, Any]]:
    variant = loaded.variant
    report: dict[str, Any] = {"backend": variant.backend, "database": None, "warning": None}
    if not variant.uses_kernels:
        return None, report
    if variant.tuned:
        inner, report["warning"] = runtime_source(db)
        report["database"] = db
    else:
        inner = HeuristicSource()
    return LaunchConfigs(inner, device), report


def _prepare(source: LaunchConfigs, loaded: Loaded, *, batch: int, max_len: int) -> None:
    v, config = loaded.variant, loaded.config
    pairs = []
    if loaded.family == "llama":
        # decode: every slot, a cache of max_len positions (seq + gen = max_len)
        pairs += [(lc.kernel, lc.problem()) for lc in kernel_launches(config, batch=batch, seq=1, dtype=v.dtype,
                                                                      quant=v.scheme, gen=max_len - 1)
                  if lc.phase == "decode"]
        for seq in length_ladder(max_len - 1):
            pairs += [(lc.kernel, lc.problem()) for lc in kernel_launches(config, batch=1, seq=seq, dtype=v.dtype,
                                                                          quant=v.scheme, gen=0)]
    else:
        for seq in length_ladder(max_len):
            pairs += [(lc.kernel, lc.problem()) for lc in kernel_launches(config, batch=batch, seq=seq,
                                                                          dtype=v.dtype, quant=v.scheme)]
    source.prepare(pairs)


def open_target(model: str, variant: str | None, db: str | None, *, max_batch: int, max_queue: int,
                max_len: int | None = None, prefill_budget: int | None = None,
                embed_wait_ms: float = 5.0, device: DeviceInfo | None = None) -> ServeTarget:
    """Load `model` for `variant` on this device and build its engine (decoders) or batcher
    (encoders), not started. Raises the runtime's and the CLI's one-line errors."""
    device = device or current_device()
    chosen = parse_variant(variant or default_variant_text(device), gpu=device.kind == "cuda")
    for value, flag in ((max_batch, "--max-batch"), (max_queue, "--max-queue")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{flag} must be a positive integer; got {value!r}")
    loaded = load_model(model, chosen, device)
    context = loaded.config.max_positions
    limit = max_len if max_len is not None else min(DEFAULT_MAX_LEN, context)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 2 <= limit <= context:
        raise UsageError(f"--max-len must be an integer in [2, {context}] (the model's context); got {limit!r}")
    source, report = _source(loaded, device, db)
    if source is not None:
        _prepare(source, loaded, batch=max_batch, max_len=limit)
    engine = embedder = None
    if loaded.family == "llama":
        settings = EngineSettings(max_batch=max_batch, max_len=limit, max_queue=max_queue,
                                  prefill_budget=prefill_budget or EngineSettings.prefill_budget)
        eos = loaded.tokenizer.eos_ids if loaded.tokenizer is not None else ()
        engine = Engine(loaded.model, settings, eos_ids=eos, config_source=source)
    else:
        embedder = EmbedBatcher(loaded.model, loaded.tokenizer, loaded.embed_settings, max_batch=max_batch,
                                max_wait_ms=embed_wait_ms, max_queue=max_queue, config_source=source)
    return ServeTarget(name=loaded.name, family=loaded.family, engine=engine, embedder=embedder,
                       tokenizer=loaded.tokenizer, variant=str(chosen), device=device.label, max_len=limit,
                       configs=report, loaded=loaded, source=source, interpreter=device.interpreter)
