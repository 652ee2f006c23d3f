"""The Llama-family decoder: prefill and decode through an `Ops` backend.

The layout is the one runtime/launches.py lists, so the problems the tuner stores are the
ones this forward launches: fused qkv and gate_up projections, one rope over the q and k
heads of the qkv output, final norm and lm_head on each sequence's last token only (M =
batch), lm_head a float matmul in the activation dtype, and a static KV cache of
prompt + generation positions (runtime/kv_cache.py).

Weights come as a dict of fp32 tensors named `embed`, `layers.{i}.attn_norm`, `.q`, `.k`,
`.v`, `.o`, `.ffn_norm`, `.gate`, `.up`, `.down`, `norm`, and `lm_head` when untied, in
nn.Linear layout [out, in] and Hugging Face's rotate-half q/k convention (what
runtime/gguf_loader.py and runtime/hf_loader.py produce, and `synthetic_weights` makes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

import kernels

from .errors import CorruptModelFile, InvalidModelConfig, InvalidWorkload, PromptTooLong
from .kv_cache import KVCache
from .linear import SCHEMES, LinearWeight, make_linear
from .model_config import ModelConfig
from .ops import Ops, ops_for
from .variant import DTYPES, WEIGHT_SCHEMES, Variant

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
LAYER_LINEARS = ("qkv", "o", "gate_up", "down")  # per layer, as launches.py names them
# The fused projections launches.py lists: one matmul for q, k, v and one for gate, up.
FUSED = {"qkv": ("q", "k", "v"), "gate_up": ("gate", "up")}


def layer_weight(weights: Mapping[str, torch.Tensor], layer: int, role: str) -> torch.Tensor:
    """The [N, K] weight of linear `role` (qkv, o, gate_up, down) of `layer`, fused as the model runs it."""
    parts = [weights[f"layers.{layer}.{part}"] for part in FUSED.get(role, (role,))]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def weight_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a Llama weights dict holds, with its shape."""
    c = config
    shapes: dict[str, tuple[int, ...]] = {"embed": (c.vocab, c.hidden), "norm": (c.hidden,)}
    for i in range(c.layers):
        p = f"layers.{i}."
        shapes.update({
            p + "attn_norm": (c.hidden,), p + "q": (c.q_dim, c.hidden), p + "k": (c.kv_dim, c.hidden),
            p + "v": (c.kv_dim, c.hidden), p + "o": (c.hidden, c.q_dim), p + "ffn_norm": (c.hidden,),
            p + "gate": (c.intermediate, c.hidden), p + "up": (c.intermediate, c.hidden),
            p + "down": (c.hidden, c.intermediate),
        })
    if not c.tied_embeddings:
        shapes["lm_head"] = (c.vocab, c.hidden)
    return shapes


def synthetic_weights(config: ModelConfig, seed: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Seeded random fp32 weights of `config`'s shapes: linear layers and the embedding
    N(0, 0.02^2) (Hugging Face's initializer_range), norm weights 1 + N(0, 0.02^2) so a
    swapped or ignored norm weight still shows. For the shape-only presets (llama-3.2-1b,
    llama-3-8b: 4.9 and 32 GB in fp32; pass device="cuda" to make them there) and tests."""
    gen = torch.Generator(device=device).manual_seed(seed)
    out = {}
    for name, shape in weight_shapes(config).items():
        w = torch.randn(shape, generator=gen, device=device) * 0.02
        out[name] = w + 1.0 if len(shape) == 1 else w
    return out


def rope_tables(config: ModelConfig, positions: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin fp32 [positions, head_dim/2] with the config's rope_scaling applied.

    No scaling: kernels.rope_cache. "linear" and "llama3" scaling change the inverse
    frequencies as Hugging Face's modeling_rope_utils does; they are formed here in fp64
    (HF uses fp32) and the angles rounded once to fp32, as rope_cache does. Other scaling
    types (dynamic NTK, yarn, longrope) are refused: they are not this runtime's Llama."""
    scaling = dict(config.rope_scaling or ())
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    D, theta = config.head_dim, config.rope_theta
    if kind == "default":
        return kernels.rope_cache(positions, D, theta, device=device)
    inv_freq = theta ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    if kind == "linear":
        inv_freq = inv_freq / float(scaling["factor"])
    elif kind == "llama3":
        inv_freq = _llama3_inv_freq(inv_freq, scaling)
    else:
        raise InvalidModelConfig(f"unsupported rope_scaling type {kind!r}; supported: default, linear, llama3")
    angles = torch.outer(torch.arange(positions, dtype=torch.float64), inv_freq)
    return angles.cos().float().to(device), angles.sin().float().to(device)


def _llama3_inv_freq(inv_freq: torch.Tensor, scaling: Mapping) -> torch.Tensor:
    """Llama 3.1's frequency scaling (HF _compute_llama3_parameters): wavelengths above
    original/low_freq_factor are divided by `factor`, those below original/high_freq_factor
    kept, the band between interpolated smoothly."""
    factor, low, high = (float(scaling[k]) for k in ("factor", "low_freq_factor", "high_freq_factor"))
    old = float(scaling["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old / low, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old / high) & (wavelen <= old / low)
    return torch.where(medium, smoothed, scaled)


def _as_variant(variant: Variant | tuple) -> Variant:
    """A Variant, or (dtype, scheme[, backend]) with a kernels scheme name ("int4-g32") or None."""
    if isinstance(variant, Variant):
        return variant
    dtype, scheme, *rest = variant
    if dtype not in DTYPES:
        raise InvalidWorkload(f"unknown dtype {dtype!r}; dtypes: {', '.join(DTYPES)}")
    spelled = {v: k for k, v in WEIGHT_SCHEMES.items()}
    if scheme not in (None, "none") and scheme not in spelled:
        raise InvalidWorkload(f"unknown weight scheme {scheme!r}; schemes: {', '.join(SCHEMES)}")
    weights = None if scheme in (None, "none") else spelled[scheme]
    return Variant(dtype, weights, rest[0] if rest else "torch")


class LlamaModel:
    """A Llama decoder ready to run: weights cast / quantized for `variant`, rope tables,
    and the ops backend. `plan` maps linear-layer names ("layers.3.down", "lm_head") to a
    weight scheme ("none", "int8", "int4-g32", ...) overriding the variant's for that layer
    (or is a runtime.plan.Plan, with patterns).
    `max_positions` sizes the rope tables (default: the model's context)."""

    def __init__(self, config: ModelConfig, weights: Mapping[str, torch.Tensor], variant: Variant | tuple,
                 device: torch.device | str = "cpu", plan=None,
                 max_positions: int | None = None) -> None:
        if config.family != "llama":
            raise InvalidModelConfig(f"LlamaModel runs llama-family configs; got family {config.family!r}")
        if config.attention_bias or config.mlp_bias:
            raise InvalidModelConfig("llama models with attention or MLP biases are not supported")
        if config.act != "silu":
            raise InvalidModelConfig(f"a llama model's MLP is SwiGLU (silu); got activation {config.act!r}")
        self.config = config
        self.variant = _as_variant(variant)
        self.device = torch.device(device)
        self.dtype = TORCH_DTYPES[self.variant.dtype]
        self.ops: Ops = ops_for(self.variant.backend)
        self.max_positions = min(max_positions or config.max_positions, config.max_positions)
        _check_weights(config, weights)
        self.schemes = _layer_schemes(config, self.variant.scheme or "none", plan or {})
        dt, dev, c = self.dtype, self.device, config

        def linear(name: str, w: torch.Tensor) -> LinearWeight:
            return make_linear(w, None, self.schemes[name], dt, dev)

        def vector(name: str) -> torch.Tensor:
            return weights[name].to(device=dev, dtype=dt)

        self.layers = []
        for i in range(c.layers):
            p = f"layers.{i}."
            self.layers.append({
                "attn_norm": vector(p + "attn_norm"),
                "qkv": linear(p + "qkv", layer_weight(weights, i, "qkv")),
                "o": linear(p + "o", layer_weight(weights, i, "o")),
                "ffn_norm": vector(p + "ffn_norm"),
                "gate_up": linear(p + "gate_up", layer_weight(weights, i, "gate_up")),
                "down": linear(p + "down", layer_weight(weights, i, "down")),
            })
        self.norm = vector("norm")
        self.lm_head = linear("lm_head", weights["embed"] if c.tied_embeddings else weights["lm_head"])
        if c.tied_embeddings and self.lm_head.weight is not None:
            self.embed = self.lm_head.weight  # one table for both, as the tied model has
        else:
            self.embed = vector("embed")
        self.cos, self.sin = rope_tables(c, self.max_positions, dev)

    # -- bookkeeping ------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes of every weight held (a shared embedding counted once)."""
        linears = [lw for layer in self.layers for k, lw in layer.items() if k in LAYER_LINEARS] + [self.lm_head]
        vectors = [t for layer in self.layers for k, t in layer.items() if k not in LAYER_LINEARS] + [self.norm]
        total = sum(lw.nbytes for lw in linears) + sum(t.numel() * t.element_size() for t in vectors)
        if self.embed is not self.lm_head.weight:
            total += self.embed.numel() * self.embed.element_size()
        return total

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        if capacity > self.max_positions:
            raise PromptTooLong(f"a KV cache of {capacity} positions exceeds the model's context of "
                                f"{self.max_positions}")
        return KVCache.for_model(self.config, batch, capacity, self.dtype, self.device)

    # -- forward ----------------------------------------------------------------------------
    def prefill(self, tokens: torch.Tensor, lengths: torch.Tensor | list[int], cache: KVCache | None = None,
                *, all_logits: bool = False) -> torch.Tensor:
        """Run right-padded prompts tokens [B, S] of lengths [B] (1..S each); write cache
        positions 0..S-1 (those at or past a sequence's length are masked until decode
        overwrites them) and set cache.lengths. Returns the logits of each sequence's last
        real token, [B, vocab] in the model dtype. Without `cache` one of S positions is
        made (for a logits-only forward). `all_logits`: the logits of every position instead,
        [B, S, vocab] (quality scoring: perplexity, KL against another variant); lm_head then
        runs at M = B * S, a launch generation never makes."""
        ops, c = self.ops, self.config
        B, S = tokens.shape
        host = [int(n) for n in (lengths.tolist() if isinstance(lengths, torch.Tensor) else lengths)]
        if len(host) != B or min(host) < 1 or max(host) > S:
            raise InvalidWorkload(f"prefill lengths must be {B} values in [1, {S}]; got {host}")
        if S > self.max_positions:
            raise PromptTooLong(f"a prompt of {S} tokens exceeds the model's context of {self.max_positions}")
        cache = cache if cache is not None else self.new_cache(B, S)
        if cache.batch != B:
            raise InvalidWorkload(f"prefill of {B} sequences into a KV cache of batch {cache.batch}")
        cache.check_room([S])
        tokens = tokens.to(self.device)
        T, H, HKV, D = B * S, c.heads, c.kv_heads, c.head_dim
        # One sequence of full length: the plain (varlen=0) problem; a batch always passes its
        # lengths (varlen=1), as launches.py lists and the tuner tunes it.
        lens = None if B == 1 and host[0] == S else torch.tensor(host, dtype=torch.int32, device=self.device)
        positions = torch.arange(S, dtype=torch.int32, device=self.device).repeat(B)
        rows = torch.arange(B, device=self.device).repeat_interleave(S)
        with kernels.nvtx_range("prefill", "model", f"B={B} S={S}"):
            x = self.embed[tokens.reshape(T)]
            h = ops.rmsnorm(x, self.layers[0]["attn_norm"], c.norm_eps)
            for i, layer in enumerate(self.layers):
                with kernels.nvtx_range("layer", "model", i):
                    with kernels.nvtx_range("attention", "model"):
                        qkv = ops.linear(h, layer["qkv"])
                        q = ops.rope_kv(qkv.view(T, H + 2 * HKV, D), positions, rows, self.cos, self.sin,
                                        cache.k[i], cache.v[i])
                        k, v = cache.k[i][:, :S], cache.v[i][:, :S]  # [B, S, HKV, D] views of what rope_kv wrote
                        attn = ops.attention(q.view(B, S, H, D), k, v, causal=True, seq_lens=lens)
                        o = ops.linear(attn.reshape(T, c.q_dim), layer["o"])
                        h, x = ops.add_rmsnorm(x, o, layer["ffn_norm"], c.norm_eps)
                    down = self._mlp(h, layer)
                    if i + 1 < len(self.layers):
                        h, x = ops.add_rmsnorm(x, down, self.layers[i + 1]["attn_norm"], c.norm_eps)
            cache.set_lengths(host)
            if all_logits:
                h, _ = ops.add_rmsnorm(x, down, self.norm, c.norm_eps)
                return ops.linear(h, self.lm_head).view(B, S, -1)
            # Only each sequence's last token goes on: a row-wise norm gives the same rows.
            last = (torch.arange(B, device=self.device) * S + torch.tensor(host, device=self.device) - 1)
            h, _ = ops.add_rmsnorm(x[last], down[last], self.norm, c.norm_eps)
            return ops.linear(h, self.lm_head)

    def decode(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One step: token b at position cache.lengths[b]; writes its k/v there, attends to
        positions 0..lengths[b], bumps the lengths. Returns logits [B, vocab]."""
        if max(cache.host_lengths) >= cache.capacity:
            raise PromptTooLong(f"decode past the KV cache's {cache.capacity} positions")
        logits = self.decode_step(tokens.to(self.device), cache)
        cache.advance()
        return logits

    def decode_step(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """The device work of `decode`, with no host sync and no check: what a CUDA graph
        captures (tokens must already be on the device)."""
        ops, c = self.ops, self.config
        B, H, HKV, D = tokens.shape[0], c.heads, c.kv_heads, c.head_dim
        pos = cache.lengths
        with kernels.nvtx_range("decode step", "model", f"B={B}"):
            seq_lens = pos + 1
            x = self.embed[tokens]
            h = ops.rmsnorm(x, self.layers[0]["attn_norm"], c.norm_eps)
            for i, layer in enumerate(self.layers):
                with kernels.nvtx_range("layer", "model", i):
                    with kernels.nvtx_range("attention", "model"):
                        qkv = ops.linear(h, layer["qkv"])
                        q = ops.rope_kv(qkv.view(B, H + 2 * HKV, D), pos, cache.rows, self.cos, self.sin,
                                        cache.k[i], cache.v[i])
                        attn = ops.attention_decode(q, cache.k[i], cache.v[i], seq_lens)
                        o = ops.linear(attn.reshape(B, c.q_dim), layer["o"])
                        h, x = ops.add_rmsnorm(x, o, layer["ffn_norm"], c.norm_eps)
                    down = self._mlp(h, layer)
                    # The residual add and the next norm (the next layer's, or the final one) in one launch.
                    following = self.layers[i + 1]["attn_norm"] if i + 1 < len(self.layers) else self.norm
                    h, x = ops.add_rmsnorm(x, down, following, c.norm_eps)
            cache.lengths.add_(1)
            return ops.linear(h, self.lm_head)

    def _mlp(self, h: torch.Tensor, layer: dict) -> torch.Tensor:
        """The MLP block's output on normalized rows h (the caller adds it to the residual)."""
        ops, n = self.ops, self.config.intermediate
        with kernels.nvtx_range("mlp", "model"):
            gate_up = ops.linear(h, layer["gate_up"])
            return ops.linear(ops.swiglu(gate_up[:, :n], gate_up[:, n:]), layer["down"])


def _check_weights(config: ModelConfig, weights: Mapping[str, torch.Tensor]) -> None:
    for name, shape in weight_shapes(config).items():
        if name not in weights:
            raise CorruptModelFile(f"llama weights lack tensor {name!r}")
        if tuple(weights[name].shape) != shape:
            raise CorruptModelFile(f"llama tensor {name!r} has shape {tuple(weights[name].shape)}; "
                                   f"the config needs {shape}")


def _layer_schemes(config: ModelConfig, scheme: str, plan) -> dict[str, str]:
    """Scheme per linear layer: the variant's for the layers, "none" for lm_head (launches.py:
    lm_head is a float matmul), then the plan's overrides. `plan` is a mapping of exact
    layer names, or a runtime.plan.Plan (patterns; its default and patterns apply to the
    layers, and lm_head changes only when the plan names it exactly)."""
    schemes = {f"layers.{i}.{role}": scheme for i in range(config.layers) for role in LAYER_LINEARS}
    if hasattr(plan, "scheme_for"):
        overrides = {name: plan.scheme_for(name, scheme) for name in schemes}
        if "lm_head" in plan.layers:
            overrides["lm_head"] = plan.layers["lm_head"]
    else:
        overrides = dict(plan)
    schemes["lm_head"] = "none"
    for name, value in overrides.items():
        if name not in schemes:
            raise InvalidWorkload(f"plan names unknown layer {name!r}; layers are layers.N.{{{','.join(LAYER_LINEARS)}}}"
                                  f" for N < {config.layers}, and lm_head")
        if value not in SCHEMES:
            raise InvalidWorkload(f"plan gives {name!r} unknown scheme {value!r}; schemes: {', '.join(SCHEMES)}")
        schemes[name] = value
    return schemes
