"""The default step timer of end-to-end confirmation (infertune/confirm.py): the real model
on the triton backend, one step timed with profilers.timing.measure under a config source.

- decode: one decode step on a KV cache of seq + gen positions holding `seq` tokens; the
  cache lengths are reset to `seq` inside the timed function, so every repetition (and a
  CUDA graph's every replay) runs the same step. On a GPU it is captured in a CUDA graph
  (measure(cuda_graph=True)), as the `+cg` variant serves: launch overhead stays out and the
  kernels' own time decides.
- prefill: `batch` prompts of `seq` seeded random tokens, eager (prefill copies lengths from
  the host, which a graph cannot capture); an encoder's forward the same way.

The L2 cache is not flushed between repetitions: in serving a step follows a step, not a
flush. Configs are resolved when a launch is traced, so a new source means a new capture:
measure captures per call.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels.config_source import ConfigSource, using_config_source
from kernels.device import DeviceInfo
from kernels.scheme_names import canonical_scheme, short_scheme
from profilers.timing import measure
from runtime.variant import WEIGHT_SCHEMES, Variant

from .errors import UsageError
from .settings import Settings


def confirm_variant(dtype: str, quant: str | None, device: DeviceInfo) -> Variant:
    """The variant a confirmation runs: our kernels with the active source (backend
    "triton"), the tuned weight scheme, CUDA graphs on a GPU. Raises UsageError for a scheme
    the runtime's variants do not run (asymmetric int4, per-tensor fp8)."""
    weights = None
    if quant not in (None, "none"):
        weights = short_scheme(canonical_scheme(quant))
        if weights not in WEIGHT_SCHEMES:
            raise UsageError(f"--confirm runs the model, and the runtime has no variant with weights {quant!r} "
                             f"(it runs {', '.join(WEIGHT_SCHEMES.values())})")
    return Variant(dtype, weights, "triton", cuda_graphs=device.kind == "cuda")


class ModelStepTimer:
    """step_timer for confirm_records: loads `model` once (runtime.loading.load_model), makes
    each step's inputs once, and returns the median of measure() for one step in ms."""

    def __init__(self, model: str, device: DeviceInfo, *, dtype: str, quant: str | None, seed: int,
                 settings: Settings) -> None:
        self.model_name, self.device, self.seed, self.settings = model, device, seed, settings
        self.variant = confirm_variant(dtype, quant, device)
        self._loaded: Any = None
        self._work: dict[Any, Any] = {}  # confirm.Step -> its function (confirm imports this module)

    def __call__(self, step: Any, source: ConfigSource) -> float:
        work = self._work.get(step)
        if work is None:
            work = self._work[step] = self._make(step)
        gpu = self.device.kind == "cuda"
        s = self.settings
        with using_config_source(source), torch.inference_mode():
            timing = measure(work, device=self.device.torch_device, warmup_ms=s.warmup_ms, rep_ms=s.rep_ms,
                             min_reps=s.min_reps if gpu else s.min_reps_cpu, flush_l2=False,
                             interpreter=self.device.interpreter, cuda_graph=gpu and step.phase == "decode")
        return timing.median_ms

    def _model(self) -> Any:
        if self._loaded is None:
            from runtime.loading import load_model

            self._loaded = load_model(self.model_name, self.variant, self.device)
        return self._loaded

    def _make(self, step: Any):
        """The function that runs `step` once (inputs made here, seeded)."""
        loaded = self._model()
        model, dev = loaded.model, self.device.torch_device
        gen = torch.Generator().manual_seed(self.seed + step.batch)
        tokens = torch.randint(0, loaded.config.vocab, (step.batch, step.seq), generator=gen)
        lengths = [step.seq] * step.batch
        if step.phase == "forward":
            ids, lens = tokens.to(dev), torch.tensor(lengths, dtype=torch.int32, device=dev)
            return lambda: model.forward(ids, lens)
        cache = model.new_cache(step.batch, step.seq + step.gen)
        if step.phase == "prefill":
            ids = tokens.to(dev)
            return lambda: model.prefill(ids, lengths, cache)
        with torch.inference_mode():
            model.prefill(tokens.to(dev), lengths, cache)  # a written cache, as a real decode step reads
        start = cache.lengths.clone()
        last = tokens[:, -1].to(dev)

        def decode_step():
            cache.lengths.copy_(start)
            return model.decode_step(last, cache)

        return decode_step
