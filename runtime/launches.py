"""The kernel launches one model makes: what `infertune autotune --model NAME` tunes.

`kernel_launches(config, batch=, seq=, dtype=)` lists every (kernel, shape, dtype, options)
the runtime launches for a prefill forward of `batch` sequences of `seq` tokens and, for a
decoder, one decode step, each with how many times it runs per forward / per step. Shapes
use the kernel's own dimension names, so `kernels.get(l.kernel).problem(l.shape, l.dtype,
l.options)` is the problem the tuner searches; `kernel_launches` checks exactly that for
every launch, so a model that would launch an invalid problem fails here with the kernel's
one-line reason (e.g. fp8 weights with fp32 activations).

How the runtime lays a forward out (the choices that fix the shapes):
- Linear layers are fused: one q/k/v projection (N = (heads + 2 kv_heads) head_dim) and,
  for Llama, one gate/up projection (N = 2 intermediate) whose halves feed swiglu.
- RoPE and the KV-cache write are one launch per layer (rope_kv) over the fused projection
  viewed as [T, heads + 2 kv_heads, head_dim]: q and k rotated, k and v written into the
  cache at each token's (sequence, position); prefill attention then reads k and v from the
  cache. Its H is the query heads, HKV the kv heads.
- The residual add is fused into the norm after it (add_rmsnorm): a layer's attention
  output is added before the MLP norm, its MLP output before the next layer's attention
  norm, or the final norm. Only layer 0's attention norm is a plain rmsnorm.
- Prefill attention of one sequence is the plain problem (varlen=0); a batch of several
  is launched with per-sequence lengths (varlen=1) whether or not they differ, since
  real batches are ragged: one tuned problem per batch size, hit by every batch.
- Llama prefill keeps only each sequence's last row (residual and MLP output) before the
  final add and norm (a row-wise norm gives the same rows either way), so the final norm
  and lm_head run at M = batch, not batch * seq.
- lm_head is a plain matmul in the activation dtype even with `quant`: with tied
  embeddings its weight is the embedding table, and quantizing the logits' projection
  costs the most accuracy for the least memory.
- A decode step attends over a KV cache allocated for the whole generation, [batch,
  seq + gen, kv_heads, head_dim], with per-sequence lengths masking what is not written
  yet; so attention_decode's L is seq + gen on every step (the kernel's L is the cache's
  length, not the live length) and one tuned problem serves the whole generation.
- Embedding lookups, BERT's residual adds and its mean pooling are torch ops, not kernels,
  and are not listed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import kernels
from kernels.spec import Problem

from .errors import InvalidWorkload
from .model_config import ModelConfig

PHASES = ("prefill", "decode")
DEFAULT_GEN = 128  # decode steps assumed when the caller does not say (sizes the KV cache)


@dataclass(frozen=True)
class KernelLaunch:
    """One problem a model launches and how often: `count` times per prefill forward
    (phase "prefill") or per decode step (phase "decode"). `roles` names the layers that
    launch it ("qkv", "o", "gate_up", "down", "lm_head", "attn_norm", ...), in order."""

    kernel: str
    shape: dict[str, int]
    dtype: str
    options: dict[str, str]
    count: int
    phase: str
    roles: tuple[str, ...] = field(default=())

    def key(self) -> tuple:
        """What makes two launches the same problem in the same phase (count and roles aside)."""
        return (self.phase, self.kernel, tuple(self.shape.items()), self.dtype, tuple(sorted(self.options.items())))

    def problem(self) -> Problem:
        """The kernel's validated Problem (raises the kernel's InvalidProblem if it is not one)."""
        return kernels.get(self.kernel).problem(self.shape, self.dtype, self.options)


def quant_schemes() -> tuple[str, ...]:
    """Every `quant` value kernel_launches takes, read from the quantized matmuls' specs."""
    return ("int8",) + _choices("matmul_w4a16", "quant") + _choices("matmul_fp8", "quant")


def _choices(kernel: str, option: str) -> tuple[str, ...]:
    return next(o.choices for o in kernels.get(kernel).options if o.name == option)


def _linear_kernel(quant: str | None) -> tuple[str, dict[str, str]]:
    """The matmul kernel and its options for the model's linear layers under `quant`."""
    if quant is None:
        return "matmul", {}
    if quant == "int8":
        return "matmul_w8a16", {}
    if quant in _choices("matmul_w4a16", "quant"):
        return "matmul_w4a16", {"quant": quant}
    if quant in _choices("matmul_fp8", "quant"):
        return "matmul_fp8", {"quant": quant}
    raise InvalidWorkload(f"unknown quant {quant!r}; known: {', '.join(quant_schemes())}")


class _Pass:
    """Collects one phase's launches in forward order; `layers` repeats per-layer launches."""

    def __init__(self, config: ModelConfig, dtype: str, quant: str | None, phase: str) -> None:
        self.config, self.dtype, self.phase = config, dtype, phase
        self.linear_kernel, self.linear_options = _linear_kernel(quant)
        self.launches: list[KernelLaunch] = []

    def add(self, role: str, kernel: str, shape: dict[str, int], count: int, **options: str) -> None:
        self.launches.append(KernelLaunch(kernel, shape, self.dtype, options, count, self.phase, (role,)))

    def linear(self, role: str, M: int, N: int, K: int, count: int, bias: bool, quantized: bool = True) -> None:
        kernel, options = (self.linear_kernel, self.linear_options) if quantized else ("matmul", {})
        self.add(role, kernel, {"M": M, "N": N, "K": K}, count, **options, bias="1" if bias else "0")


def _llama_pass(p: _Pass, batch: int, seq: int, gen: int) -> None:
    c, n = p.config, p.config.layers
    M = batch * seq if p.phase == "prefill" else batch
    norm = {"M": M, "N": c.hidden}
    p.add("attn_norm", "rmsnorm", norm, 1)  # layer 0's: nothing to add yet
    p.linear("qkv", M, c.qkv_dim, c.hidden, n, c.attention_bias)
    p.add("rope", "rope_kv", {"T": M, "H": c.heads, "HKV": c.kv_heads, "D": c.head_dim}, n)
    if p.phase == "prefill":
        p.add("attention", "attention", {"B": batch, "H": c.heads, "HKV": c.kv_heads, "S": seq, "D": c.head_dim},
              n, causal="1", varlen="1" if batch > 1 else "0")
    else:
        p.add("attention", "attention_decode",
              {"B": batch, "H": c.heads, "HKV": c.kv_heads, "L": seq + gen, "D": c.head_dim}, n)
    p.linear("o", M, c.hidden, c.q_dim, n, c.attention_bias)
    p.add("mlp_norm", "add_rmsnorm", norm, n)
    p.linear("gate_up", M, 2 * c.intermediate, c.hidden, n, c.mlp_bias)
    p.add("swiglu", "swiglu", {"M": M, "N": c.intermediate}, n)
    p.linear("down", M, c.hidden, c.intermediate, n, c.mlp_bias)
    if n > 1:
        p.add("attn_norm", "add_rmsnorm", norm, n - 1)  # layers 1.. add the MLP's output first
    p.add("final_norm", "add_rmsnorm", {"M": batch, "N": c.hidden}, 1)
    p.linear("lm_head", batch, c.vocab, c.hidden, 1, bias=False, quantized=False)


def _bert_pass(p: _Pass, batch: int, seq: int) -> None:
    c, n, M = p.config, p.config.layers, batch * seq
    approximate = "tanh" if c.act == "gelu_tanh" else "none"
    p.add("embed_norm", "layernorm", {"M": M, "N": c.hidden}, 1)
    p.linear("qkv", M, c.qkv_dim, c.hidden, n, c.attention_bias)
    p.add("attention", "attention", {"B": batch, "H": c.heads, "HKV": c.kv_heads, "S": seq, "D": c.head_dim},
          n, causal="0", varlen="1" if batch > 1 else "0")
    p.linear("o", M, c.hidden, c.q_dim, n, c.attention_bias)
    p.add("attn_norm", "layernorm", {"M": M, "N": c.hidden}, n)
    p.linear("up", M, c.intermediate, c.hidden, n, c.mlp_bias)
    p.add("gelu", "gelu", {"M": M, "N": c.intermediate}, n, approximate=approximate)
    p.linear("down", M, c.hidden, c.intermediate, n, c.mlp_bias)
    p.add("mlp_norm", "layernorm", {"M": M, "N": c.hidden}, n)


def dedupe(launches: Iterable[KernelLaunch]) -> list[KernelLaunch]:
    """Merge launches of the same problem in the same phase: counts add, roles concatenate.
    Order is that of first appearance, so the same model always gives the same list."""
    merged: dict[tuple, KernelLaunch] = {}
    for launch in launches:
        seen = merged.get(launch.key())
        if seen is None:
            merged[launch.key()] = launch
        else:
            merged[launch.key()] = KernelLaunch(seen.kernel, seen.shape, seen.dtype, seen.options,
                                                seen.count + launch.count, seen.phase, seen.roles + launch.roles)
    return list(merged.values())


def _positive(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidWorkload(f"{name} must be a positive integer; got {value!r}")
    return value


def kernel_launches(config: ModelConfig, *, batch: int, seq: int, dtype: str, quant: str | None = None,
                    gen: int = DEFAULT_GEN) -> list[KernelLaunch]:
    """The deduplicated launches of a prefill forward and (decoders, gen > 0) one decode step.

    batch sequences of seq prompt tokens; gen tokens generated after them (it sizes the KV
    cache, hence attention_decode's L = seq + gen; gen = 0 lists prefill only; encoders
    ignore it). dtype: the activation dtype (fp32, fp16, bf16). quant: None (matmul), "int8"
    (matmul_w8a16), "int4-g128" and the other int4 schemes (matmul_w4a16), "fp8-row" /
    "fp8-tensor" (matmul_fp8), for every linear layer but lm_head.
    Raises InvalidWorkload for bad sizes or an unknown quant, the kernel's InvalidProblem for
    a launch the kernel cannot run (e.g. fp8 with fp32 activations).
    """
    _positive("batch", batch)
    _positive("seq", seq)
    if not isinstance(gen, int) or isinstance(gen, bool) or gen < 0:
        raise InvalidWorkload(f"gen must be a non-negative integer; got {gen!r}")
    if config.family == "bert":
        if seq > config.max_positions:
            raise InvalidWorkload(f"seq={seq} exceeds the model's {config.max_positions} positions")
        prefill = _Pass(config, dtype, quant, "prefill")
        _bert_pass(prefill, batch, seq)
        passes = [prefill]
    else:
        if seq + gen > config.max_positions:
            raise InvalidWorkload(f"seq + gen = {seq + gen} exceeds the model's {config.max_positions} positions")
        passes = [_Pass(config, dtype, quant, phase) for phase in (PHASES if gen else PHASES[:1])]
        for p in passes:
            _llama_pass(p, batch, seq, gen)
    launches = dedupe(launch for p in passes for launch in p.launches)
    for launch in launches:
        launch.problem()
    return launches


def unique_problems(launches: Iterable[KernelLaunch]) -> list[tuple[str, Problem]]:
    """(kernel, problem) pairs with phases merged, in first-appearance order: the tuning jobs.
    A prefill and a decode launch of the same problem (seq = 1) are tuned once."""
    seen: dict[tuple[str, Problem], None] = {}
    for launch in launches:
        seen.setdefault((launch.kernel, launch.problem()), None)
    return list(seen)
