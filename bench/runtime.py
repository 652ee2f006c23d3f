"""The runtime's GPU figures in one command: Llama decode / prefill tokens/s against
transformers and the bandwidth roofline, and MiniLM embeddings/s against sentence-transformers.

    python -m bench.runtime            # on a GPU: the figures below (refuses without one: exit 2)
    python -m bench.runtime --smoke    # anywhere: tiny sizes on the CPU, torch backend (checks the script)

1. Copy bandwidth: a large device-to-device torch copy (`dst.copy_(src)`), bytes read + written
   over the time, median (p10/p90) of the repetitions. The roofline of a variant is this
   bandwidth over its weight bytes per token (`LlamaModel.nbytes`: at batch 1 every weight is
   read once per token; the embedding table, of which a token reads one row, is counted too,
   so the roofline is slightly low).
2. Llama: the Llama-3-8B-shaped synthetic model (preset `llama-3-8b`, seeded fp32 master
   weights made on the GPU) as bf16, bf16+w8 and bf16+w4g128 with tuned configs (`triton`
   backend: the database at --db, else the user's; how many configs came from it vs the
   heuristic is reported, from `infertune.inference.launch_configs`) and CUDA graphs (+cg).
   Per variant and batch size (1, 8): `runtime.generate` greedy over random prompts of
   --prompt-len tokens, --new-tokens new ones; one warm-up, then --reps timed runs. Decode
   tokens/s from the decode phase (graph capture excluded), prefill tokens/s from the prefill
   phase (it includes choosing the first token).
3. transformers: a LlamaForCausalLM built from the same config in bf16 on the GPU, the same
   fp32 master weights copied in (HF's q/k layout is the rotate-half one the runtime uses: no
   permutation), greedy `generate` with the same prompts and new tokens, static cache where
   it runs (transformers then compiles the decode step), else its default cache. It does not
   split prefill from decode, so it is timed twice per repetition: max_new_tokens=1 (prefill
   and the first token: the prefill figure) and max_new_tokens=N; decode tokens/s =
   batch x (N - 1) / (time(N) - median time(1)). Its batch-1 greedy tokens are compared with
   the runtime's float variant (a correctness cross-check; in bf16 they may part after a few
   tokens, in the fp32 smoke run they must be equal).
4. Goals (reported met / not met, never asserted): bf16 batch-1 decode >= 80% of its
   roofline; w8 >= 1.6x bf16; w4g128 >= 2.5x bf16 (batch-1 decode); bf16 batch-1 decode >= 2x
   transformers'; MiniLM >= 1.5x sentence-transformers.
   After the figures are written, the float variant's batch-1 decode runs again with
   programmatic dependent launch (INFERTUNE_PDL=1, kernels/pdl.py) against its figure above
   (--no-pdl leaves it out). Last, the float variant's batch-1 decode step is profiled
   kernel by kernel (CUPTI through torch.profiler, CUDA-graph replays included:
   bench/decode_profile.py): device time per kernel, launches per step, and the share of
   the step outside kernels (--no-decode-profile leaves it out).
5. MiniLM (`minilm-l6`, real weights from runtime.store): embeddings/s at batch 256 x 128
   tokens (texts made of words that are one token each, so each text is exactly 128 tokens
   with [CLS] and [SEP]), bf16 with tuned configs, against sentence-transformers' `encode` of
   the same texts in bf16 (both times include tokenization). Skipped with a note when the
   files are absent (`infertune models fetch minilm-l6`).

Memory: the 8B fp32 master is 32 GB (bf16 copy 16 GB). It is made afresh (same seed, same
weights) for each variant and for the transformers model and freed as soon as that model is
built, so the peak is one master plus one model (about 48 GB), not all of them; the peak of
each phase (torch.cuda.max_memory_allocated) is recorded.

--smoke: a tiny Llama config (hidden 64, 2 layers, vocab 101) in fp32 on the torch backend on
the CPU, as fp32, fp32+w8 and fp32+w4g128, against transformers on the same weights; MiniLM at
batch 4 x 16 tokens if its files are present. Figures labelled CPU; they check the script.

Writes results.json and results.md under bench/results/runtime-<device>-<date>/ (or --out).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import os
import random
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench import decode_profile as dprof
from bench.common import slug, write_results
from infertune.benchmark import INTERPRETER_NOTE
from infertune.environment import collect_environment
from infertune.inference import launch_configs
from kernels.device import DeviceInfo
from kernels.pdl import PDL_ENV
from profilers.timing import quantile
from runtime.generate import generate
from runtime.llama import LlamaModel, synthetic_weights
from runtime.loading import Loaded
from runtime.model_config import ModelConfig
from runtime.presets import get_preset
from runtime.variant import parse_variant

LLAMA_PRESET = "llama-3-8b"
MASTER_SEED = 0
# (role, variant text): the roles are what the goals compare.
GPU_VARIANTS = (("float", "bf16+cg:triton"), ("w8", "bf16+w8+cg:triton"), ("w4g128", "bf16+w4g128+cg:triton"))
SMOKE_VARIANTS = (("float", "fp32:torch"), ("w8", "fp32+w8:torch"), ("w4g128", "fp32+w4g128:torch"))
SMOKE_CONFIG = ModelConfig(family="llama", hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, head_dim=16,
                           vocab=101, max_positions=128, norm_eps=1e-5, act="silu", tied_embeddings=False,
                           rope_theta=10000.0)
BATCHES = (1, 8)
GOAL_ROOFLINE = 0.80
GOAL_W8 = 1.6
GOAL_W4 = 2.5
GOAL_VS_TRANSFORMERS = 2.0
GOAL_MINILM = 1.5
SMOKE_NOTE = "smoke run (tiny sizes on the CPU: the figures check the script, they mean nothing)"


@dataclasses.dataclass(frozen=True)
class Sizes:
    prompt_len: int
    new_tokens: int
    reps: int
    copy_bytes: int
    copy_reps: int
    minilm_batch: int
    minilm_tokens: int
    minilm_texts: int


FULL = Sizes(prompt_len=512, new_tokens=128, reps=5, copy_bytes=2 << 30, copy_reps=20,
             minilm_batch=256, minilm_tokens=128, minilm_texts=1024)
SMOKE = Sizes(prompt_len=16, new_tokens=8, reps=3, copy_bytes=8 << 20, copy_reps=5,
              minilm_batch=4, minilm_tokens=16, minilm_texts=8)


def stats(values: list[float]) -> dict[str, float] | None:
    values = [float(v) for v in values]
    if not values:
        return None
    return {"median": quantile(values, 0.5), "p10": quantile(values, 0.1), "p90": quantile(values, 0.9),
            "n": len(values)}


def ratio(a: dict | None, b: dict | None) -> float | None:
    if not a or not b or not b["median"]:
        return None
    return a["median"] / b["median"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_device_info() -> DeviceInfo:
    import os
    return DeviceInfo(kind="cpu", name="cpu", capability=None, smem_per_block=None, sm_count=os.cpu_count() or 1,
                      total_memory=0, interpreter=True)


# -- memory bookkeeping ---------------------------------------------------------------------
class Memory:
    """Peak memory per phase: torch.cuda.max_memory_allocated on a GPU, else the process's
    peak resident set (ru_maxrss, monotonic over the run)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.phases: list[dict[str, Any]] = []

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def mark(self, phase: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            kind = "cuda max_memory_allocated"
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            kind = "process peak RSS"
        self.phases.append({"phase": phase, "peak_bytes": int(peak), "measure": kind})

    @property
    def peak(self) -> int:
        return max((p["peak_bytes"] for p in self.phases), default=0)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# -- 1. copy bandwidth ----------------------------------------------------------------------
def copy_bandwidth(device: torch.device, nbytes: int, reps: int) -> dict[str, Any]:
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    for _ in range(2):
        dst.copy_(src)
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            dst.copy_(src)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            dst.copy_(src)
            times.append(time.perf_counter() - t0)
    moved = 2 * src.numel() * src.element_size()
    del src, dst
    free(device)
    return {"bytes_per_copy": moved // 2, "bytes_moved": moved, "gb_per_s": stats([moved / t / 1e9 for t in times]),
            "reps": reps, "method": "dst.copy_(src), bytes read + written over the time"}


# -- 2. the runtime's Llama -----------------------------------------------------------------
def make_prompts(vocab: int, batch: int, length: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(vocab) for _ in range(length)] for _ in range(batch)]


def master_weights(config: ModelConfig, device: torch.device) -> dict[str, torch.Tensor]:
    return synthetic_weights(config, MASTER_SEED, device=device)


def config_counts(reports: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in reports:
        for source, n in (r.get("by_source") or {}).items():
            counts[source] = counts.get(source, 0) + n
    return counts


def run_ours(config: ModelConfig, role: str, text: str, *, device: torch.device, devinfo: DeviceInfo, db: str | None,
             prompts: dict[int, list[list[int]]], sizes: Sizes, memory: Memory) -> dict[str, Any]:
    variant = parse_variant(text, gpu=device.type == "cuda")
    memory.start()
    master = master_weights(config, device)
    model = LlamaModel(config, master, variant, device, max_positions=sizes.prompt_len + sizes.new_tokens)
    del master
    free(device)
    memory.mark(f"build {variant} (fp32 master + model)")
    loaded = Loaded(LLAMA_PRESET, config, model, None, variant, True)
    row: dict[str, Any] = {"role": role, "variant": str(variant), "weight_bytes": model.nbytes,
                           "embed_bytes": model.embed.numel() * model.embed.element_size(), "batches": {}}
    print(f"{variant}: {gib(model.nbytes)} of weights", flush=True)
    memory.start()
    for batch, batch_prompts in prompts.items():
        with launch_configs(loaded, devinfo, db, batch=batch, seq=sizes.prompt_len, gen=sizes.new_tokens) as report:
            generate(model, batch_prompts, sizes.new_tokens)  # warm-up: kernels compiled, configs resolved
            runs = [generate(model, batch_prompts, sizes.new_tokens) for _ in range(sizes.reps)]
        decode = stats([g.decode_tokens_per_s for g in runs])
        prefill = stats([g.prefill_tokens_per_s for g in runs])
        row["batches"][str(batch)] = {
            "batch": batch, "decode_tokens_per_s": decode, "prefill_tokens_per_s": prefill,
            "decode_tokens": runs[0].decode_tokens, "prefill_tokens": runs[0].prefill_tokens,
            "capture_seconds": stats([g.capture_seconds for g in runs]),
            "same_tokens_every_rep": all(g.tokens == runs[0].tokens for g in runs),
            "tokens_first_sequence": runs[0].tokens[0], "configs": report.to_dict()}
        print(f"  batch {batch}: decode {decode['median']:.1f} tok/s (p10 {decode['p10']:.1f}, p90 "
              f"{decode['p90']:.1f}), prefill {prefill['median']:.1f} tok/s; configs "
              f"{report.summary.get('by_source', 'none (torch backend)')}", flush=True)
    row["configs_by_source"] = config_counts([b["configs"] for b in row["batches"].values()])
    memory.mark(f"run {variant}")
    del loaded, model
    free(device)
    return row


def run_pdl(config: ModelConfig, text: str, float_row: dict[str, Any], *, device: torch.device,
            devinfo: DeviceInfo, db: str | None, prompts: dict[int, list[list[int]]], sizes: Sizes,
            memory: Memory) -> dict[str, Any]:
    """The float variant's batch-1 decode again with INFERTUNE_PDL=1 (kernels/pdl.py: each
    kernel may start while the previous one finishes), against the same variant's figure
    above, measured in this run without it. Where PDL cannot run (no sm_90, the interpreter,
    the torch backend) both sides run the same launches."""
    print(f"{text} batch-1 decode with programmatic dependent launch (INFERTUNE_PDL=1)", flush=True)
    before = os.environ.get(PDL_ENV)
    os.environ[PDL_ENV] = "1"
    try:
        row = run_ours(config, "float-pdl", text, device=device, devinfo=devinfo, db=db, prompts={1: prompts[1]},
                       sizes=sizes, memory=memory)
    except Exception as exc:  # noqa: BLE001 - an A/B that fails is reported, the figures above stand
        return {"variant": text, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        if before is None:
            os.environ.pop(PDL_ENV, None)
        else:
            os.environ[PDL_ENV] = before
    with_pdl = row["batches"]["1"]["decode_tokens_per_s"]["median"]
    without = float_row["batches"]["1"]["decode_tokens_per_s"]["median"]
    return {"variant": text, "row": row, "decode_tokens_per_s": with_pdl, "without_pdl": without,
            "ratio": with_pdl / without if without else None}


def profile_decode(config: ModelConfig, text: str, *, device: torch.device, devinfo: DeviceInfo, db: str | None,
                   prompts: list[list[int]], sizes: Sizes, decode: dict | None) -> dict[str, Any]:
    """bench/decode_profile.py on variant `text` (rebuilt from the same seeded master) at
    batch 1, with the configs the timed runs had. Run after the figures are written (a
    profiler that hangs on CUDA graphs would otherwise take them with it); a failure is
    recorded, never raised."""
    variant = parse_variant(text, gpu=device.type == "cuda")
    step_ms = 1e3 / decode["median"] if decode and decode["median"] > 0 else None
    try:
        master = master_weights(config, device)
        model = LlamaModel(config, master, variant, device, max_positions=sizes.prompt_len + sizes.new_tokens)
        del master
        free(device)
        loaded = Loaded(LLAMA_PRESET, config, model, None, variant, True)
        with launch_configs(loaded, devinfo, db, batch=1, seq=sizes.prompt_len, gen=sizes.new_tokens):
            generate(model, prompts, sizes.new_tokens)  # warm-up, as the timed runs had
            out = dprof.decode_profile(lambda p, n: generate(model, p, n), prompts, sizes.new_tokens,
                                       cuda=device.type == "cuda", step_ms=step_ms)
        del loaded, model
        free(device)
    except Exception as exc:  # the profile is a diagnostic: say why it is missing
        out = {"error": f"{type(exc).__name__}: {exc}"}
    return {"variant": str(variant), **out}


# -- 3. transformers ------------------------------------------------------------------------
HF_SUB = {"attn_norm": "input_layernorm", "q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
          "o": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm", "gate": "mlp.gate_proj",
          "up": "mlp.up_proj", "down": "mlp.down_proj"}
HF_TOP = {"embed": "model.embed_tokens.weight", "norm": "model.norm.weight", "lm_head": "lm_head.weight"}


def hf_name(name: str) -> str:
    if name.startswith("layers."):
        _, i, part = name.split(".")
        return f"model.layers.{i}.{HF_SUB[part]}.weight"
    return HF_TOP[name]


def build_transformers(config: ModelConfig, dtype: torch.dtype, device: torch.device, memory: Memory):
    import transformers

    hc = transformers.LlamaConfig(
        hidden_size=config.hidden, intermediate_size=config.intermediate, num_hidden_layers=config.layers,
        num_attention_heads=config.heads, num_key_value_heads=config.kv_heads, head_dim=config.head_dim,
        vocab_size=config.vocab, max_position_embeddings=config.max_positions, rms_norm_eps=config.norm_eps,
        rope_theta=config.rope_theta, rope_scaling=dict(config.rope_scaling) if config.rope_scaling else None,
        tie_word_embeddings=config.tied_embeddings, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    memory.start()
    with torch.device(device):
        model = transformers.LlamaForCausalLM._from_config(hc, attn_implementation="sdpa", dtype=dtype)
    model.to(device).eval()  # a no-op where the device context already placed it
    master = master_weights(config, device)
    state = {hf_name(name): tensor for name, tensor in master.items()}
    if config.tied_embeddings:
        state["lm_head.weight"] = master["embed"]
    with torch.no_grad():
        missing, unexpected = model.load_state_dict(state, strict=False)  # copies fp32 into the model's dtype
    del state, master
    free(device)
    memory.mark("build transformers (fp32 master + model)")
    missing = [m for m in missing if "rotary" not in m]
    if missing or unexpected:
        raise RuntimeError(f"transformers weight mapping: missing {missing}, unexpected {unexpected}")
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model, transformers.__version__


def hf_generate(model, ids: torch.Tensor, new_tokens: int, cache: str | None) -> tuple[torch.Tensor, float]:
    kwargs: dict[str, Any] = {"max_new_tokens": new_tokens, "do_sample": False, "pad_token_id": 0,
                              "eos_token_id": None}
    if cache:
        kwargs["cache_implementation"] = cache
    sync(ids.device)
    t0 = time.perf_counter()
    out = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)  # runs under no_grad itself
    sync(ids.device)
    seconds = time.perf_counter() - t0
    if out.shape[1] != ids.shape[1] + new_tokens:
        raise RuntimeError(f"transformers generated {out.shape[1] - ids.shape[1]} tokens, not {new_tokens}")
    return out[:, ids.shape[1]:], seconds


def run_transformers(config: ModelConfig, dtype: torch.dtype, *, device: torch.device,
                     prompts: dict[int, list[list[int]]], sizes: Sizes, memory: Memory) -> dict[str, Any]:
    model, version = build_transformers(config, dtype, device, memory)
    n = sizes.new_tokens
    row: dict[str, Any] = {"version": version, "dtype": str(dtype).removeprefix("torch."), "attn": "sdpa",
                           "cache": "static", "cache_note": None, "batches": {}}
    memory.start()
    for batch, batch_prompts in prompts.items():
        ids = torch.tensor(batch_prompts, device=device)
        try:
            row["batches"][str(batch)] = time_transformers(model, ids, n, sizes, row["cache"])
        except Exception as exc:  # noqa: BLE001 - the static cache (or its compile) failed: the default cache
            if row["cache"] == "default":
                raise
            row["cache"] = "default"
            row["cache_note"] = (f"the static cache failed at batch {batch} ({type(exc).__name__}: "
                                 f"{str(exc)[:200]}), so every batch size ran with the default cache")
            print(f"transformers: {row['cache_note']}", flush=True)
            row["batches"] = {}
            for b, p in prompts.items():
                if b > batch:
                    break
                row["batches"][str(b)] = time_transformers(model, torch.tensor(p, device=device), n, sizes, None)
        b = row["batches"][str(batch)]
        decode, prefill = b["decode_tokens_per_s"], b["prefill_tokens_per_s"]
        print(f"  transformers batch {batch}: decode {decode['median'] if decode else float('nan'):.1f} tok/s, "
              f"prefill {prefill['median']:.1f} tok/s ({row['cache']} cache)", flush=True)
    memory.mark("run transformers")
    del model
    free(device)
    return row


def time_transformers(model, ids: torch.Tensor, n: int, sizes: Sizes, cache: str | None) -> dict[str, Any]:
    cache = None if cache == "default" else cache
    batch = ids.shape[0]
    hf_generate(model, ids, 1, cache)
    hf_generate(model, ids, n, cache)  # warm-up (on a GPU the static cache's decode step compiles here)
    t1, tn, tokens = [], [], None
    for _ in range(sizes.reps):
        t1.append(hf_generate(model, ids, 1, cache)[1])
        out, seconds = hf_generate(model, ids, n, cache)
        tn.append(seconds)
        tokens = out[0].tolist() if tokens is None else tokens
    prefill_s = quantile(t1, 0.5)
    return {"batch": batch, "decode_tokens_per_s": stats([batch * (n - 1) / (t - prefill_s) for t in tn if t > prefill_s]),
            "prefill_tokens_per_s": stats([batch * sizes.prompt_len / t for t in t1]),
            "seconds_1_token": stats(t1), "seconds_n_tokens": stats(tn), "tokens_first_sequence": tokens}


def cross_check(ours: list[int], theirs: list[int] | None) -> dict[str, Any]:
    theirs = theirs or []
    agree = 0
    for a, b in zip(ours, theirs):
        if a != b:
            break
        agree += 1
    return {"equal": ours == theirs, "agreeing_prefix": agree, "tokens": len(ours), "ours": ours,
            "transformers": theirs}


# -- 5. MiniLM ------------------------------------------------------------------------------
def one_token_words(tokenizer) -> list[str]:
    from runtime.sample_text import SAMPLE_TEXT

    words = sorted({w for w in re.findall(r"[a-z]+", SAMPLE_TEXT.lower())})
    return [w for w in words if len(tokenizer.encode(w, add_special_tokens=False)) == 1]


def make_texts(tokenizer, count: int, tokens: int, seed: int) -> list[str]:
    """`count` texts of exactly `tokens` tokens each ([CLS] and [SEP] included)."""
    words = one_token_words(tokenizer)
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        text = " ".join(rng.choice(words) for _ in range(tokens - 2))
        if len(tokenizer.encode(text)) != tokens:
            raise RuntimeError(f"a made text is {len(tokenizer.encode(text))} tokens, not {tokens}")
        texts.append(text)
    return texts


def run_minilm(*, device: torch.device, devinfo: DeviceInfo, db: str | None, sizes: Sizes, seed: int,
               memory: Memory) -> dict[str, Any]:
    from runtime import store
    from runtime.embed import embed_timed
    from runtime.loading import load_model

    if store.model_path("minilm-l6") is None:
        return {"skipped": "minilm-l6's files are absent (fetch them: infertune models fetch minilm-l6)"}
    try:
        import sentence_transformers
    except ImportError:
        return {"skipped": "sentence-transformers is not installed"}
    text = "bf16:triton" if device.type == "cuda" else "fp32:torch"
    variant = parse_variant(text, gpu=device.type == "cuda")
    memory.start()
    loaded = load_model("minilm-l6", variant, devinfo)
    texts = make_texts(loaded.tokenizer, sizes.minilm_texts, sizes.minilm_tokens, seed)
    B = sizes.minilm_batch
    with launch_configs(loaded, devinfo, db, batch=B, seq=sizes.minilm_tokens, gen=0) as report:
        embed_timed(loaded.model, loaded.tokenizer, texts, B, settings=loaded.embed_settings)  # warm-up
        runs = [embed_timed(loaded.model, loaded.tokenizer, texts, B, settings=loaded.embed_settings)
                for _ in range(sizes.reps)]
    ours_vectors = runs[-1][0]
    ours = stats([t.embeddings_per_s for _, t in runs])
    forward_only = stats([t.texts / t.forward_s for _, t in runs if t.forward_s > 0])
    st_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    st = sentence_transformers.SentenceTransformer(str(loaded.path), device=str(device)).to(st_dtype)

    def st_encode(model):
        sync(device)
        t0 = time.perf_counter()
        vectors = model.encode(texts, batch_size=B, convert_to_tensor=True, normalize_embeddings=True,
                            show_progress_bar=False)
        sync(device)
        return vectors, time.perf_counter() - t0

    st_encode(st)  # warm-up
    st_runs = [st_encode(st) for _ in range(sizes.reps)]
    theirs = stats([len(texts) / s for _, s in st_runs])
    cosine = (ours_vectors.float() * torch.nn.functional.normalize(st_runs[-1][0].float().cpu(), dim=1)).sum(1)
    memory.mark("minilm (runtime + sentence-transformers)")
    row = {"variant": str(variant), "texts": len(texts), "batch": B, "tokens_per_text": sizes.minilm_tokens,
           "embeddings_per_s": ours, "forward_only_embeddings_per_s": forward_only,
           "sentence_transformers": {"version": sentence_transformers.__version__,
                                     "dtype": str(st_dtype).removeprefix("torch."), "embeddings_per_s": theirs},
           "speedup": ratio(ours, theirs), "min_cosine_to_sentence_transformers": cosine.min().item(),
           "configs": report.to_dict()}
    print(f"minilm {variant}: {ours['median']:.1f} emb/s vs sentence-transformers {theirs['median']:.1f} emb/s "
          f"(x{row['speedup']:.2f}); min cosine {row['min_cosine_to_sentence_transformers']:.5f}", flush=True)
    del loaded, st
    free(device)
    return row


# -- goals ----------------------------------------------------------------------------------
def goals(llama: dict[str, Any], bandwidth: dict[str, Any], minilm: dict[str, Any]) -> list[dict[str, Any]]:
    by_role = {r["role"]: r for r in llama["variants"]}

    def decode(role: str, batch: int = 1):
        r = by_role.get(role)
        return r["batches"][str(batch)]["decode_tokens_per_s"] if r else None

    float_row = by_role["float"]
    roofline = bandwidth["gb_per_s"]["median"] * 1e9 / float_row["weight_bytes"]
    out = []

    def goal(text: str, value: float | None, target: float) -> None:
        out.append({"goal": text, "value": value, "target": target, "met": None if value is None else value >= target})

    f = decode("float")
    goal(f"{float_row['variant']} batch-1 decode >= {GOAL_ROOFLINE:.0%} of the bandwidth roofline",
         f["median"] / roofline if f else None, GOAL_ROOFLINE)
    goal(f"w8 batch-1 decode >= {GOAL_W8}x {float_row['variant']}", ratio(decode("w8"), f), GOAL_W8)
    goal(f"w4g128 batch-1 decode >= {GOAL_W4}x {float_row['variant']}", ratio(decode("w4g128"), f), GOAL_W4)
    hf = llama["transformers"]["batches"]["1"]["decode_tokens_per_s"] if llama.get("transformers") else None
    goal(f"{float_row['variant']} batch-1 decode >= {GOAL_VS_TRANSFORMERS}x transformers", ratio(f, hf),
         GOAL_VS_TRANSFORMERS)
    goal(f"MiniLM embeddings/s >= {GOAL_MINILM}x sentence-transformers", minilm.get("speedup"), GOAL_MINILM)
    return out


# -- the report -----------------------------------------------------------------------------
def fmt_s(s: dict | None, digits: int = 1) -> str:
    if not s:
        return "-"
    return f"{s['median']:.{digits}f} ({s['p10']:.{digits}f}-{s['p90']:.{digits}f})"


def fmt_x(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def met(flag: bool | None) -> str:
    return "n/a" if flag is None else ("**met**" if flag else "**not met**")


def gib(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"


def configs_line(totals: dict[str, int], db: str | None) -> str:
    if not totals:
        return "Configs: none (the torch backend launches no kernel of ours; no database read)."
    counts = ", ".join(f"{totals.get(k, 0)} {k}" for k in ("database", "nearest", "heuristic"))
    return (f"Configs, counted per batch size over every planned launch: {counts} (`database`: the exact key, "
            f"`nearest`: a neighbouring bucket of the database, `heuristic`: untuned default). Database: {db}.")


def markdown(data: dict[str, Any]) -> str:
    env, run_dev = data["environment"], data["run_device"]
    lines = [
        f"# Runtime figures — {run_dev}",
        "",
        f"Date {data['date'][:10]}; figures measured on {run_dev}; machine device {env['device']['label']}; driver "
        f"{env['driver']}; torch {env['torch']}; triton {env['triton']}; CUDA {env['cuda_runtime']}; transformers "
        f"{(data['llama']['transformers'] or {}).get('version', '(not run)')}. Seed {data['seed']}.",
        "Every figure is the median over repetitions with p10-p90 in brackets; the baselines were measured in the "
        "same run on the same device.",
        "",
    ]
    if data.get("pending"):
        lines += [f"**Partial: {data['pending']}.**", ""]
    if data["smoke"]:
        lines += [f"**{SMOKE_NOTE}.**", ""]
    if data["interpreter"]:
        lines += [f"{INTERPRETER_NOTE} (the smoke run uses the torch backend: no Triton kernel runs).", ""]
    bw = data["bandwidth"]
    lines += ["## 1. Copy bandwidth", "",
              f"`dst.copy_(src)` of {gib(bw['bytes_per_copy'])}, bytes read + written over the time, {bw['reps']} "
              f"repetitions: **{fmt_s(bw['gb_per_s'])} GB/s**.", ""]
    ll = data["llama"]
    s = ll["sizes"]
    lines += ["## 2. Llama decode and prefill", "",
              f"Model: {ll['model']} (hidden {ll['config']['hidden']}, {ll['config']['layers']} layers, vocab "
              f"{ll['config']['vocab']}), synthetic seeded weights. Prompts of {s['prompt_len']} random tokens, "
              f"{s['new_tokens']} new tokens, greedy; one warm-up then {s['reps']} timed runs. Roofline = copy "
              "bandwidth / weight bytes per token (the model's bytes at batch 1, embedding table included).", "",
              "| variant | batch | weights | decode tok/s (p10-p90) | prefill tok/s (p10-p90) | of roofline | "
              "vs transformers | configs (database / nearest / heuristic) |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    hf = ll["transformers"]
    for r in ll["variants"]:
        roof = r["roofline_tokens_per_s"]
        counts = r["configs_by_source"]
        cfg = (f"{counts.get('database', 0)} / {counts.get('nearest', 0)} / {counts.get('heuristic', 0)}"
               if counts else "none (torch backend)")
        for key, b in r["batches"].items():
            d = b["decode_tokens_per_s"]
            frac = f"{d['median'] / roof:.0%}" if key == "1" and roof else "-"
            vs_hf = ratio(d, hf["batches"][key]["decode_tokens_per_s"]) if hf else None
            lines.append(f"| {r['variant']} | {b['batch']} | {gib(r['weight_bytes'])} | {fmt_s(d)} | "
                         f"{fmt_s(b['prefill_tokens_per_s'])} | {frac} | {fmt_x(vs_hf)} | {cfg} |")
    for key, b in (hf or {"batches": {}})["batches"].items():
        lines.append(f"| transformers {hf['dtype']} ({hf['cache']} cache) | {b['batch']} | | "
                     f"{fmt_s(b['decode_tokens_per_s'])} | {fmt_s(b['prefill_tokens_per_s'])} | | 1.00x | |")
    lines += ["", "Roofline (batch 1): " + "; ".join(
        f"{r['variant']} {r['roofline_tokens_per_s']:.1f} tok/s" for r in ll["variants"]) + ".",
        configs_line(ll["configs_total"], data["db"]),
        "",
        ("transformers is timed with max_new_tokens=1 (prefill + first token: its prefill figure) and with "
         f"max_new_tokens={s['new_tokens']}; its decode tok/s = batch x (new tokens - 1) / (time(N) - median "
         "time(1))." + (f" {hf['cache_note']}." if hf["cache_note"] else "")) if hf else
        "transformers: not measured yet (the run stopped before it)."]
    prof = ll.get("decode_profile")
    if prof:
        lines += ["", "### Where a decode step's time goes", ""]
        if "error" in prof:
            lines.append(f"Not profiled: {prof['error']}.")
        elif not prof["kernels"]:
            lines.append("The profiler recorded no kernels in the decode steps (CUPTI records of CUDA-graph "
                         "replays missing on this stack).")
        else:
            lines += dprof.markdown(prof, prof["variant"])
    pdl = ll.get("pdl")
    if pdl:
        lines += ["", "### Programmatic dependent launch (INFERTUNE_PDL=1)", ""]
        if "error" in pdl:
            lines.append(f"{pdl['variant']} with PDL failed: {pdl['error']}.")
        else:
            lines.append(f"{pdl['variant']} batch-1 decode: {pdl['decode_tokens_per_s']:.1f} tok/s with PDL, "
                         f"{pdl['without_pdl']:.1f} without (the figure above, same run): "
                         f"{pdl['ratio']:.3f}x.")
    cc = ll["cross_check"]
    if cc:
        lines += ["", f"Cross-check, batch-1 greedy tokens of {cc['variant']} vs transformers: "
                  f"{'equal' if cc['equal'] else 'different'} (first {cc['agreeing_prefix']} of {cc['tokens']} agree)."]
    m = data["minilm"]
    lines += ["", "## 3. MiniLM embeddings", ""]
    if "skipped" in m:
        lines.append(f"Skipped: {m['skipped']}.")
    elif "pending" in m:
        lines.append(f"Not measured yet: {m['pending']}.")
    else:
        st = m["sentence_transformers"]
        lines += [f"minilm-l6 {m['variant']}, {m['texts']} texts of {m['tokens_per_text']} tokens, batch {m['batch']}"
                  f"; sentence-transformers {st['version']} `encode` in {st['dtype']} on the same texts (both include "
                  "tokenization).", "",
                  "| | embeddings/s (p10-p90) |", "|---|---:|",
                  f"| runtime | {fmt_s(m['embeddings_per_s'])} |",
                  f"| runtime, forward only | {fmt_s(m['forward_only_embeddings_per_s'])} |",
                  f"| sentence-transformers | {fmt_s(st['embeddings_per_s'])} |", "",
                  f"Speedup {fmt_x(m['speedup'])}; lowest cosine between the two embeddings of a text "
                  f"{m['min_cosine_to_sentence_transformers']:.5f}."]
    lines += ["", "## 4. Goals", "", "| goal | value | status |", "|---|---:|---|"]
    for g in data["goals"]:
        value = "-" if g["value"] is None else (f"{g['value']:.0%}" if "roofline" in g["goal"] else
                                                f"{g['value']:.2f}x")
        lines.append(f"| {g['goal']} | {value} | {met(g['met'])} |")
    mem = data["memory"]
    lines += ["", "## 5. Memory", "",
              "The fp32 master weights are made afresh for each model and freed once it is built, so the peak is "
              f"one master plus one model. Peak over the run: **{gib(mem['peak_bytes'])}** ({mem['measure']}).", "",
              "| phase | peak |", "|---|---:|"]
    for p in mem["phases"]:
        lines.append(f"| {p['phase']} | {gib(p['peak_bytes'])} |")
    return "\n".join(lines) + "\n"


# -- main -----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (checks the script)")
    parser.add_argument("--db", default=None, help="tuned config database (default: the user's)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default bench/results/runtime-...)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the prompts and texts")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per figure")
    parser.add_argument("--skip-minilm", action="store_true", help="leave out the MiniLM section")
    parser.add_argument("--no-decode-profile", action="store_true",
                        help="leave out the kernel-by-kernel profile of the float variant's decode step")
    parser.add_argument("--no-pdl", action="store_true",
                        help="leave out the float variant's batch-1 decode with programmatic dependent launch")
    args = parser.parse_args(argv)
    env = collect_environment()
    if env.device.kind != "cuda" and not args.smoke:
        print("this benchmark's figures need a CUDA GPU; on this machine run it with --smoke", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    sizes = SMOKE if args.smoke else FULL
    if args.reps:
        sizes = dataclasses.replace(sizes, reps=args.reps)
    if args.smoke:
        device, devinfo, config, variants, model_name = (torch.device("cpu"), cpu_device_info(), SMOKE_CONFIG,
                                                         SMOKE_VARIANTS, "tiny llama (smoke)")
        run_dev = "CPU"
    else:
        device, devinfo, config, variants = env.device.torch_device, env.device, get_preset(LLAMA_PRESET).config, \
            GPU_VARIANTS
        model_name, run_dev = LLAMA_PRESET, env.device.label
    db = args.db
    if db is None and not args.smoke:
        from infertune.settings import Settings
        db = str(Settings.from_env().db)
    now = dt.datetime.now(dt.timezone.utc)
    default_name = f"runtime-{'smoke-' if args.smoke else ''}{slug(env.device.name)}-{now:%Y-%m-%d}"
    out = args.out or Path("bench/results") / default_name
    out.mkdir(parents=True, exist_ok=True)
    print(f"figures on {run_dev}; writing to {out}", flush=True)
    memory = Memory(device)

    bandwidth = copy_bandwidth(device, sizes.copy_bytes, sizes.copy_reps)
    print(f"copy bandwidth {bandwidth['gb_per_s']['median']:.1f} GB/s", flush=True)
    base = make_prompts(config.vocab, max(BATCHES), sizes.prompt_len, seed)
    prompts = {b: base[:b] for b in BATCHES}
    rows = [run_ours(config, role, text, device=device, devinfo=devinfo, db=db, prompts=prompts, sizes=sizes,
                     memory=memory) for role, text in variants]
    for r in rows:
        r["roofline_tokens_per_s"] = bandwidth["gb_per_s"]["median"] * 1e9 / r["weight_bytes"]
    totals = config_counts([b["configs"] for r in rows for b in r["batches"].values()])
    llama = {"model": model_name, "config": dataclasses.asdict(config), "master_seed": MASTER_SEED,
             "sizes": {"prompt_len": sizes.prompt_len, "new_tokens": sizes.new_tokens, "reps": sizes.reps},
             "variants": rows, "transformers": None, "cross_check": None, "configs_total": totals}
    data = {
        "benchmark": "runtime", "date": now.isoformat(timespec="seconds"), "seed": seed, "smoke": args.smoke,
        "run_device": run_dev, "environment": env.to_dict(), "interpreter": devinfo.interpreter,
        "note": SMOKE_NOTE if args.smoke else None, "db": db, "bandwidth": bandwidth, "llama": llama,
        "minilm": {"pending": "the run stopped before it"},
    }

    def save(pending: str | None) -> None:
        # Written after each section, so that a run cut by its time budget (the GPU kit's
        # steps have caps) keeps what it measured; `pending` says what it had not reached.
        data["pending"] = pending
        data["memory"] = {"peak_bytes": memory.peak, "phases": memory.phases,
                          "measure": memory.phases[0]["measure"] if memory.phases else None}
        data["goals"] = goals(llama, bandwidth, data["minilm"])
        write_results(out, data, markdown)

    save("transformers, the cross-check and MiniLM not measured yet")
    float_dtype = torch.float32 if args.smoke else torch.bfloat16
    hf = run_transformers(config, float_dtype, device=device, prompts=prompts, sizes=sizes, memory=memory)
    float_row = next(r for r in rows if r["role"] == "float")
    check = cross_check(float_row["batches"]["1"]["tokens_first_sequence"], hf["batches"]["1"]["tokens_first_sequence"])
    check["variant"] = float_row["variant"]
    llama.update(transformers=hf, cross_check=check)
    save(None if args.skip_minilm else "MiniLM not measured yet")
    data["minilm"] = {"skipped": "--skip-minilm"} if args.skip_minilm else run_minilm(
        device=device, devinfo=devinfo, db=db, sizes=sizes, seed=seed, memory=memory)
    save(None)
    if not args.no_pdl:
        llama["pdl"] = run_pdl(config, dict(variants)["float"], float_row, device=device, devinfo=devinfo, db=db,
                               prompts=prompts, sizes=sizes, memory=memory)
        save(None)
    if not args.no_decode_profile:
        text = dict(variants)["float"]
        print(f"profiling {text}'s batch-1 decode step kernel by kernel", flush=True)
        llama["decode_profile"] = profile_decode(config, text, device=device, devinfo=devinfo, db=db,
                                                 prompts=prompts[1], sizes=sizes,
                                                 decode=float_row["batches"]["1"]["decode_tokens_per_s"])
        save(None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
