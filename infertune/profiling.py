"""What `infertune profile` measures: kernel variants and model variants, with the derived
figures a reader needs (TFLOP/s, GB/s, % of the device's measured peaks, the bound).

Kernel variants: `torch` (the spec's baseline op, what speedups are measured against),
`default` (the heuristic config), `tuned` (the tuned database's answer: exact, nearest
bucket, or the heuristic when it has nothing, and the run says which), and an explicit
config `BLOCK_M=64,BLOCK_N=128,...` (missing parameters from the heuristic). Every Triton
variant is checked against the reference before it is timed.

Bound classification (pure, `classify`): with the device's peaks known, a kernel reaching
under 20% of both peak FLOP/s and peak bandwidth is `latency` bound (launch and
synchronization dominate: a 16x4096x4096 bf16 matmul moves 32 MB, ~10 µs at 3.3 TB/s);
otherwise `compute` when its arithmetic intensity is at or above the ridge point (peak
FLOP/s / peak bytes/s), else `memory`. Without peaks: `unknown`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from kernels.accuracy import compare
from kernels.config_source import HeuristicSource
from kernels.device import DeviceInfo
from kernels.kernel_timer import KernelTimer
from kernels.spec import Config, KernelSpec, Problem
from profilers.timing import Timing, measure
from tuner.database import runtime_source

from .errors import UsageError
from .settings import Settings

LATENCY_PCT = 0.20
BASELINE = "torch"


@dataclass(frozen=True)
class KernelVariant:
    name: str                  # "torch", "default", "tuned", or the config text
    config: Config | None = None


def parse_kernel_variants(text: str) -> list[KernelVariant]:
    """"torch,default,tuned,BLOCK_M=64,BLOCK_N=128" -> torch, default, tuned and one explicit
    config (consecutive KEY=VALUE items form one config). UsageError for anything else."""
    out: list[KernelVariant] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            config = Config.parse(",".join(pending))
            out.append(KernelVariant(str(config), config))
            pending.clear()

    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if "=" in item:
            pending.append(item)
            continue
        flush()
        if item not in ("torch", "default", "tuned"):
            raise UsageError(f"unknown kernel variant {item!r}; variants: torch, default, tuned, or KEY=VALUE,... configs")
        out.append(KernelVariant(item))
    flush()
    if not out:
        raise UsageError("give at least one variant, e.g. --variants torch,default,tuned")
    names = [v.name for v in out]
    if len(set(names)) != len(names):
        raise UsageError(f"variant given twice in {text!r}")
    return out


def device_peaks(device: DeviceInfo, db: str | None) -> dict[str, Any] | None:
    """The device's measured peaks (`infertune calibrate`, stored beside the database), else
    its datasheet figures (labelled "datasheet"), else None."""
    from profilers import peaks

    try:
        path = peaks.peaks_path_for(db or Settings.from_env().db)
        stored = peaks.Peaks.load(path) if Path(path).is_file() else None
    except (OSError, ValueError, KeyError, TypeError):  # a server database URL has no file beside it
        stored = None
    if stored is not None and stored.device_name == device.name:
        return stored.to_dict()
    sheet = peaks.datasheet_peaks(device.name) if device.kind == "cuda" else None
    return sheet.to_dict() if sheet is not None else None


def peak_values(peaks: dict[str, Any] | None, dtype: str) -> tuple[float | None, float | None]:
    """(peak FLOP/s, peak bytes/s) for `dtype` from a peaks dict (profilers.peaks), or Nones."""
    if not peaks:
        return None, None
    tflops = (peaks.get("tflops") or {}).get(dtype)
    gbps = peaks.get("bandwidth_gbps")
    return (tflops * 1e12 if tflops else None), (gbps * 1e9 if gbps else None)


def classify(flops: int, nbytes: int, seconds: float, peak_flops: float | None,
             peak_bw: float | None) -> tuple[str, float | None, float | None]:
    """(bound, fraction of peak FLOP/s, fraction of peak bandwidth). Pure."""
    if seconds <= 0 or not peak_flops or not peak_bw:
        return "unknown", None, None
    pf = flops / seconds / peak_flops
    pb = nbytes / seconds / peak_bw
    if max(pf, pb) < LATENCY_PCT:
        return "latency", pf, pb
    intensity = flops / nbytes if nbytes else math.inf
    return ("compute" if intensity >= peak_flops / peak_bw else "memory"), pf, pb


def _config_for(variant: KernelVariant, spec: KernelSpec, problem: Problem, device: DeviceInfo,
                db: str | None) -> tuple[Config, str, str | None]:
    """(config, source, warning)."""
    if variant.config is not None:
        return spec.complete(variant.config, problem, device), "caller", None
    if variant.name == "default":
        return HeuristicSource().resolve(spec, problem, device).config, "heuristic", None
    source, warning = runtime_source(db)
    answer = source.resolve(spec, problem, device)
    return answer.config, answer.source, warning


def profile_kernel(spec: KernelSpec, problem: Problem, variants: list[KernelVariant], device: DeviceInfo, *,
                   settings: Settings, seed: int, db: str | None, peaks: dict[str, Any] | None,
                   annotate=None) -> tuple[list[dict[str, Any]], list[str]]:
    """Measure each variant on the same inputs; returns (measurements, notes). `annotate(message)`
    is a context-manager factory (NVTX ranges) wrapped around each variant's timed runs."""
    from .benchmark import make_inputs
    from .benchmark import reference as reference_of

    inputs = make_inputs(spec, problem, device, seed)  # a shape too large for the device: UsageError
    reference = reference_of(spec, problem, device, inputs)
    min_reps = settings.min_reps if device.kind == "cuda" else settings.min_reps_cpu
    timing_args = dict(device=device.torch_device, warmup_ms=settings.warmup_ms, rep_ms=settings.rep_ms,
                       min_reps=min_reps)
    flops, nbytes = spec.flops(problem), spec.bytes_moved(problem)
    peak_flops, peak_bw = peak_values(peaks, problem.dtype)
    rows, notes = [], []
    for v in variants:
        scope = annotate(f"variant {v.name} {spec.name}") if annotate else _null()
        started = time.perf_counter()
        if v.name == BASELINE:
            with scope:
                timing = measure(lambda: spec.baseline(inputs), interpreter=False, **timing_args)
            config, source, accuracy = None, None, None
        else:
            config, source, warning = _config_for(v, spec, problem, device, db)
            if warning and warning not in notes:
                notes.append(warning)
            out = spec.launch(inputs, config)
            comparison = compare(out.float(), reference, spec.tolerance(problem))
            accuracy = {"ok": comparison.ok, "max_abs_err": comparison.max_abs_err,
                        "max_rel_err": comparison.max_rel_err, "sqnr_db": _finite(comparison.sqnr_db)}
            with scope:
                timing = measure(lambda c=config: spec.launch(inputs, c), interpreter=device.interpreter,
                                 **timing_args)
        rows.append(measurement_row(v.name, spec, problem, timing, config, source, accuracy, flops, nbytes, peak_flops, peak_bw))
        rows[-1]["window"] = [started, time.perf_counter()]  # perf_counter; telemetry flags per row
    base = next((r for r in rows if r["variant"] == BASELINE), None)
    for r in rows:
        r["speedup_vs_baseline"] = (base["timing"]["median_ms"] / r["timing"]["median_ms"]
                                    if base and r["timing"]["median_ms"] > 0 else None)
    return rows, notes


def measurement_row(name, spec, problem, timing: Timing, config, source, accuracy, flops, nbytes, peak_flops, peak_bw):
    seconds = timing.median_ms * 1e-3
    bound, pf, pb = classify(flops, nbytes, seconds, peak_flops, peak_bw)
    return {"variant": name, "kernel": spec.name, "problem": spec.shape_key(problem),
            "config": str(config) if config is not None else None, "config_source": source,
            "timing": timing.to_dict(), "flops": int(flops), "bytes": int(nbytes),
            "tflops": flops / seconds / 1e12 if seconds > 0 else 0.0,
            "gbps": nbytes / seconds / 1e9 if seconds > 0 else 0.0,
            "arithmetic_intensity": flops / nbytes if nbytes else 0.0,
            "pct_peak_flops": None if pf is None else 100 * pf, "pct_peak_bandwidth": None if pb is None else 100 * pb,
            "bound": bound, "speedup_vs_baseline": None, "accuracy": accuracy,
            "baseline_name": spec.baseline_name if name == BASELINE else None}


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# -- models --------------------------------------------------------------------------------

def parse_model_variants(text: str, gpu: bool) -> list:
    """"bf16,bf16+w8,bf16+w4g128" -> Variants (runtime.variant). InvalidVariant (one line) otherwise."""
    from runtime.variant import parse_variant

    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UsageError("give at least one model variant, e.g. --variants bf16,bf16+w8")
    return [parse_variant(t, gpu=gpu) for t in items]


def _quality(model, tokens: torch.Tensor, reference: torch.Tensor | None) -> tuple[dict[str, Any], torch.Tensor]:
    """Perplexity of `model` on `tokens` [n, S] and KL against `reference` log-probs."""
    from .quant_plan import kl_divergence, perplexity, sequence_logprobs

    logp = sequence_logprobs(model, tokens)
    kl = kl_divergence(reference, logp) if reference is not None else None
    return {"ppl": perplexity(logp, tokens), "kl_vs_float": kl}, logp


def check_lengths(model: str, config, *, prompt_len: int, gen: int) -> None:
    """Refuse a workload longer than the model's positions: prompt_len for an encoder,
    prompt_len + gen for a decoder (`config` a runtime ModelConfig). Raises UsageError."""
    if config.family == "bert" and prompt_len > config.max_positions:
        raise UsageError(f"--prompt-len {prompt_len} exceeds {model}'s {config.max_positions} positions")
    if config.family != "bert" and prompt_len + gen > config.max_positions:
        raise UsageError(f"--prompt-len {prompt_len} + --gen {gen} = {prompt_len + gen} exceeds {model}'s "
                         f"{config.max_positions} positions")


def check_memory(model: str, config, device: DeviceInfo, *, batch: int, prompt_len: int, gen: int) -> None:
    """Refuse a batch whose smallest state cannot fit the device: a decoder's KV cache at 2
    bytes an element, an encoder's hidden states at 2 bytes. A lower bound, so nothing that
    fits is refused; it stops `--batch 100000000000` before any work. Raises UsageError."""
    if config.family == "bert":
        need = 2 * batch * prompt_len * config.hidden
    else:
        need = 2 * 2 * config.layers * config.kv_heads * config.head_dim * (prompt_len + gen) * batch
    if device.total_memory and need > device.total_memory:
        raise UsageError(f"--batch {batch} with {model} needs at least {need / 2**30:,.1f} GiB "
                         f"(its {'hidden states' if config.family == 'bert' else 'KV cache'}); "
                         f"{device.label} has {device.total_memory / 2**30:,.1f} GiB")


def preset_config(name: str):
    """A built-in model's config without loading anything, or None for a path."""
    from runtime.presets import PRESETS

    return next((p.config for p in PRESETS if p.name == name), None)


def profile_model(name: str, variants: list, device: DeviceInfo, *, batches: list[int], prompt_len: int, gen: int,
                  db: str | None, plan=None, annotate=None, quality: bool = True) -> tuple[list[dict[str, Any]], list[str]]:
    """Prefill and decode throughput per (variant, batch), weights and peak memory, config
    sources, and (decoders with a tokenizer) perplexity and KL against the first float variant
    on the built-in text. Greedy, no EOS stop: every run makes exactly `gen` tokens."""
    import random

    from runtime.generate import generate
    from runtime.loading import load_model
    from runtime.sample_text import SAMPLE_TEXT

    from .inference import launch_configs

    rows, notes = [], []
    reference = None
    for variant in variants:
        if device.kind == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device.torch_device)
        loaded = load_model(name, variant, device, plan=plan)
        check_lengths(loaded.name, loaded.config, prompt_len=prompt_len, gen=gen)
        for batch in batches:
            check_memory(loaded.name, loaded.config, device, batch=batch, prompt_len=prompt_len, gen=gen)
        if loaded.synthetic:
            note = (f"{loaded.name} is synthetic: its shapes with seeded random weights, so its speed figures hold "
                    "and its outputs mean nothing")
            if note not in notes:
                notes.append(note)
        if loaded.family == "bert":
            rows += _profile_encoder(loaded, device, batches=batches, seq=prompt_len, db=db, annotate=annotate,
                                     notes=notes)
            del loaded
            continue
        text_ids = loaded.tokenizer.encode(SAMPLE_TEXT, add_special_tokens=False) if loaded.tokenizer else None
        q = None
        if quality and text_ids is not None and len(text_ids) >= 64:
            tokens = torch.tensor(text_ids[:128], dtype=torch.long).view(1, -1)
            q, logp = _quality(loaded.model, tokens, reference)
            if reference is None and variant.weights is None:
                reference = logp
        for batch in batches:
            rng = random.Random(batch)
            source = text_ids or list(range(loaded.config.vocab))
            prompts = [[source[(rng.randrange(len(source)) + i) % len(source)] for i in range(prompt_len)]
                       for _ in range(batch)]
            scope = annotate(f"model {name} {variant} batch {batch}") if annotate else _null()
            timer = KernelTimer() if device.kind != "cuda" else None
            started = time.perf_counter()
            with launch_configs(loaded, device, db, batch=batch, seq=prompt_len, gen=gen) as report, scope, \
                    (timer or _null()):
                result = generate(loaded.model, prompts, gen, eos_ids=())
            ended = time.perf_counter()
            if report.warning and report.warning not in notes:
                notes.append(report.warning)
            if timer is None:  # GPU: kernel times from a second, untimed run (see _gpu_timer)
                timer = _gpu_timer(partial(generate, loaded.model, prompts, gen, eos_ids=()),
                                   partial(launch_configs, loaded, device, db, batch=batch, seq=prompt_len, gen=gen))
            peak = int(torch.cuda.max_memory_allocated(device.torch_device)) if device.kind == "cuda" else None
            decode = result.decode_tokens_per_s
            rows.append({"variant": str(variant), "model": loaded.name, "batch": batch, "prompt_len": prompt_len,
                         "gen": gen, "prefill_tokens_per_s": result.prefill_tokens_per_s,
                         "decode_tokens_per_s": decode,
                         "ms_per_token": 1000.0 * batch / decode if decode > 0 else None,
                         "prefill_seconds": result.prefill_seconds, "decode_seconds": result.decode_seconds,
                         "weight_bytes": int(loaded.model.nbytes), "peak_memory_bytes": peak,
                         "config_sources": report.summary.get("by_source") if report.summary else None,
                         "config_marks": report.summary.get("marks_by_source") if report.summary else None,
                         "quality": q, "window": [started, ended],
                         "time_by_kernel": time_by_kernel(timer)})
        del loaded
    return rows, notes


def _gpu_timer(run_once, configs) -> KernelTimer:
    """A KernelTimer with CUDA events over one more run of the workload, apart from the timed
    one: recording two events costs the host a few µs a launch, and a decode step launches
    ~270 kernels (30 layers x 9), so in the timed run it would cost ~1 ms a step of the
    figures the report prints."""
    timer = KernelTimer(cuda=True)
    with configs(), timer:
        run_once()
    return timer


def time_by_kernel(timer: KernelTimer) -> dict[str, Any]:
    """run.json's time_by_kernel: per phase (prefill, decode) ms inside each kernel, largest
    first; phase_ms, the ms inside the phase's ranges (the rest of a phase ran outside our
    kernels: torch ops, Python); clock, what measured it."""
    kernels_ms, phase_ms = timer.totals()
    out: dict[str, Any] = {"clock": "cuda-events" if timer.cuda else "cpu-wall", "phase_ms": phase_ms}
    for phase in ("prefill", "decode"):
        if phase in phase_ms:
            out[phase] = kernels_ms.get(phase, {})
    return out


def _profile_encoder(loaded, device: DeviceInfo, *, batches: list[int], seq: int, db: str | None, annotate,
                     notes: list[str]) -> list[dict[str, Any]]:
    """Embeddings/s per batch size: `batch` texts of `seq` tokens each (words of the built-in
    text, cut to seq tokens with [CLS] and [SEP]); prefill_tokens_per_s is real tokens/s."""
    from runtime.embed import EmbedSettings, embed_timed
    from runtime.sample_text import SAMPLE_TEXT

    from .inference import launch_configs

    words = SAMPLE_TEXT.split()
    rows = []
    for batch in batches:
        texts = [" ".join(words[(i * 7) % len(words):][:seq]) or "text" for i in range(batch)]
        settings = EmbedSettings(max_length=seq, normalize=True)
        scope = annotate(f"model {loaded.name} {loaded.variant} batch {batch}") if annotate else _null()
        embed_timed(loaded.model, loaded.tokenizer, texts[:1], 1, settings=settings)  # warm-up
        if device.kind == "cuda":
            torch.cuda.reset_peak_memory_stats(device.torch_device)
        timer = KernelTimer() if device.kind != "cuda" else None
        started = time.perf_counter()
        with launch_configs(loaded, device, db, batch=batch, seq=seq, gen=0) as report, scope, (timer or _null()):
            _, timing = embed_timed(loaded.model, loaded.tokenizer, texts, batch, settings=settings)
        ended = time.perf_counter()
        if report.warning and report.warning not in notes:
            notes.append(report.warning)
        if timer is None:
            timer = _gpu_timer(partial(embed_timed, loaded.model, loaded.tokenizer, texts, batch, settings=settings),
                               partial(launch_configs, loaded, device, db, batch=batch, seq=seq, gen=0))
        peak = int(torch.cuda.max_memory_allocated(device.torch_device)) if device.kind == "cuda" else None
        rows.append({"variant": str(loaded.variant), "model": loaded.name, "batch": batch, "prompt_len": seq, "gen": 0,
                     "prefill_tokens_per_s": timing.tokens / timing.seconds if timing.seconds > 0 else 0.0,
                     "decode_tokens_per_s": 0.0, "ms_per_token": None,
                     "embeddings_per_s": timing.embeddings_per_s, "prefill_seconds": timing.seconds,
                     "weight_bytes": _encoder_bytes(loaded.model),
                     "peak_memory_bytes": peak,
                     "config_sources": report.summary.get("by_source") if report.summary else None,
                     "config_marks": report.summary.get("marks_by_source") if report.summary else None,
                     "quality": None, "window": [started, ended],
                     "time_by_kernel": time_by_kernel(timer)})
    return rows


def _encoder_bytes(model) -> int:
    """Linear weights (quantized ones as stored) plus the tensors the model holds directly
    (embedding tables, norms); biases inside LinearWeights are left out, as LinearWeight.nbytes does."""
    direct = sum(t.numel() * t.element_size() for t in vars(model).values() if isinstance(t, torch.Tensor))
    return int(model.linear_nbytes + direct)
