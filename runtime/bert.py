"""The BERT-family encoder (bidirectional, post-norm LayerNorm, learned absolute positions,
GELU MLP): last hidden states for a right-padded batch, every op through an `Ops` backend.

Weights use the runtime's naming, the one `runtime.hf_loader.load_hf_dir` returns (float32,
nn.Linear layout [out, in]; a bias is `<name>_bias`):

    embed, pos_embed, type_embed            word / position / token-type tables [n, hidden]
    embed_norm, embed_norm_bias             the embeddings' LayerNorm
    layers.{i}.q / .k / .v / .o (+ _bias)   attention projections
    layers.{i}.attn_norm (+ _bias)          LayerNorm after attention + residual
    layers.{i}.up / .down (+ _bias)         intermediate.dense / output.dense
    layers.{i}.ffn_norm (+ _bias)           LayerNorm after the MLP + residual

`bert_weights_from_hf_state_dict` maps a transformers BertModel state dict to it (same
renaming as the loader, so there is one mapping).

The layout is the one runtime/launches.py lists for a BERT prefill, so what `autotune
--model` tunes is what runs: one fused q/k/v linear per layer (N = 3 hidden, the weights
concatenated q, k, v), non-causal attention, o, LayerNorm, up, GELU, down, LayerNorm, every
linear at M = batch * seq (padding rows included: a rectangle is what the kernels were
tuned on). Embedding lookups and residual adds are torch ops.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

import kernels

from .errors import CorruptModelFile, InvalidWorkload
from .hf_loader import bert_name, expected_names
from .linear import SCHEMES, LinearWeight, make_linear
from .model_config import ModelConfig
from .ops import Ops, ops_for
from .variant import WEIGHT_SCHEMES, Variant, parse_variant

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
LINEAR_ROLES = ("qkv", "o", "up", "down")  # the per-layer linear layers, in forward order


def bert_weights_from_hf_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers BertModel (or BertFor*, `bert.` prefix) state dict -> the runtime's
    names, float32. Unused tensors (pooler, position_ids) are dropped."""
    out = {}
    for hf_name, tensor in state_dict.items():
        name = bert_name(hf_name)
        if name is not None:
            out[name] = tensor.detach().float()
    return out


def _resolve_variant(variant: Variant | tuple | str, device: torch.device) -> Variant:
    """A Variant as is; (dtype, scheme[, backend]) with scheme None / "none" / a linear scheme
    ("int8") or its variant spelling ("w8"); the backend defaults to triton on CUDA only."""
    if isinstance(variant, Variant):
        return variant
    if isinstance(variant, str):
        return parse_variant(variant, gpu=device.type == "cuda")
    dtype, scheme, *rest = variant
    backend = rest[0] if rest else ("triton" if device.type == "cuda" else "torch")
    if dtype not in TORCH_DTYPES:
        raise InvalidWorkload(f"unknown dtype {dtype!r}; dtypes: {', '.join(TORCH_DTYPES)}")
    if scheme in (None, "none"):
        weights = None
    elif scheme in WEIGHT_SCHEMES:
        weights = scheme
    else:
        by_scheme = {v: k for k, v in WEIGHT_SCHEMES.items()}
        if scheme not in by_scheme:
            raise InvalidWorkload(f"unknown weight scheme {scheme!r}; schemes: {', '.join(SCHEMES)}")
        weights = by_scheme[scheme]
    if weights == "fp8" and dtype == "fp32":
        raise InvalidWorkload("fp8 weights run with fp16 or bf16 activations, not fp32")
    return Variant(dtype, weights, backend)


@dataclass(eq=False)
class BertLayer:
    """One encoder layer's weights, in the model dtype (norm parameters included: the
    LayerNorm kernel takes them in x's dtype)."""

    qkv: LinearWeight
    o: LinearWeight
    attn_norm: tuple[torch.Tensor, torch.Tensor]
    up: LinearWeight
    down: LinearWeight
    ffn_norm: tuple[torch.Tensor, torch.Tensor]


class BertModel:
    """An encoder ready to run: weights cast / quantized once, an Ops backend chosen.

    config: a bert-family ModelConfig. weights: float tensors by the runtime's names (see the
    module docstring). variant: a Variant, a variant string, or (dtype, scheme[, backend]).
    plan: optional per-layer schemes overriding the variant's, keyed by linear layer name
    (`layers.{i}.qkv` / `.o` / `.up` / `.down`, as `linear_names()` lists) or by role
    (`qkv`, `o`, `up`, `down`: every layer); a plan from a mixed-precision search.
    """

    def __init__(self, config: ModelConfig, weights: Mapping[str, torch.Tensor],
                 variant: Variant | tuple | str = ("fp32", None), device: torch.device | str = "cpu",
                 plan: Mapping[str, str | None] | None = None) -> None:
        if config.family != "bert":
            raise InvalidWorkload(f"BertModel runs bert-family configs; got family {config.family!r}")
        missing = [n for n in expected_names(config) if n not in weights]
        if missing:
            raise CorruptModelFile(f"BERT weights lack {len(missing)} tensor(s), e.g. {missing[0]}")
        self.config = config
        self.device = torch.device(device)
        self.variant = _resolve_variant(variant, self.device)
        self.dtype = TORCH_DTYPES[self.variant.dtype]
        self.ops: Ops = ops_for(self.variant.backend)
        self.plan = dict(plan or {})
        unknown = [k for k in self.plan if k not in LINEAR_ROLES and k not in self.linear_names()]
        if unknown:
            raise InvalidWorkload(f"plan names {unknown[0]!r}, which is no linear layer of this model "
                                  f"(names: layers.{{i}}.{{{','.join(LINEAR_ROLES)}}} or a role)")
        default = self.variant.scheme or "none"
        cast = self._cast
        self.word = cast(weights["embed"])
        self.position = cast(weights["pos_embed"])
        self.token_type = cast(weights["type_embed"]) if config.type_vocab else None
        self.embed_norm = (cast(weights["embed_norm"]), cast(weights["embed_norm_bias"]))
        self.layers: list[BertLayer] = []
        for i in range(config.layers):
            p = f"layers.{i}."

            def linear(role: str, w: torch.Tensor, b: torch.Tensor) -> LinearWeight:
                scheme = self.plan.get(p + role, self.plan.get(role, default)) or "none"
                return make_linear(w, b, scheme, self.dtype, self.device)

            qkv_w = torch.cat([weights[p + "q"], weights[p + "k"], weights[p + "v"]])
            qkv_b = torch.cat([weights[p + "q_bias"], weights[p + "k_bias"], weights[p + "v_bias"]])
            self.layers.append(BertLayer(
                qkv=linear("qkv", qkv_w, qkv_b),
                o=linear("o", weights[p + "o"], weights[p + "o_bias"]),
                attn_norm=(cast(weights[p + "attn_norm"]), cast(weights[p + "attn_norm_bias"])),
                up=linear("up", weights[p + "up"], weights[p + "up_bias"]),
                down=linear("down", weights[p + "down"], weights[p + "down_bias"]),
                ffn_norm=(cast(weights[p + "ffn_norm"]), cast(weights[p + "ffn_norm_bias"])),
            ))

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(device=self.device, dtype=self.dtype).contiguous()

    def linear_names(self) -> list[str]:
        """Every linear layer's name, in forward order (the keys a plan takes)."""
        return [f"layers.{i}.{role}" for i in range(self.config.layers) for role in LINEAR_ROLES]

    def linears(self) -> dict[str, LinearWeight]:
        return {f"layers.{i}.{role}": getattr(layer, role) for i, layer in enumerate(self.layers)
                for role in LINEAR_ROLES}

    @property
    def linear_nbytes(self) -> int:
        """Bytes of the linear layers' stored weights (what quantization shrinks)."""
        return sum(w.nbytes for w in self.linears().values())

    def embeddings(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        """word + position + token type, summed in fp32 (one rounding to the model dtype, not
        three), then the embeddings' LayerNorm: [B * S, hidden]."""
        B, S = input_ids.shape
        x = self.word[input_ids].float() + self.position[:S].float()[None]
        if self.token_type is not None:
            types = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
            x = x + self.token_type[types].float()
        x = x.to(self.dtype).reshape(B * S, -1)
        return self.ops.layernorm(x, *self.embed_norm, self.config.norm_eps)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Last hidden states [B, S, hidden] in the model dtype for right-padded input_ids
        [B, S] with `lengths` [B] real tokens each (None: all S). Rows at or past a length
        are padding: finite, but meaningless (mean pooling must skip them)."""
        c, ops = self.config, self.ops
        if input_ids.dim() != 2:
            raise InvalidWorkload(f"input_ids must be [batch, seq]; got shape {tuple(input_ids.shape)}")
        B, S = input_ids.shape
        if S > c.max_positions:
            raise InvalidWorkload(f"seq={S} exceeds the model's {c.max_positions} positions")
        input_ids = input_ids.to(self.device)
        if token_type_ids is not None:
            token_type_ids = token_type_ids.to(self.device)
        seq_lens = None
        if lengths is not None:
            lengths = lengths.to(device=self.device, dtype=torch.int32)
            if lengths.shape != (B,) or int(lengths.min()) < 1 or int(lengths.max()) > S:
                raise InvalidWorkload(f"lengths must be [batch] values in 1..{S}; got {lengths.tolist()}")
            # One full-length sequence is the plain (varlen=0) attention problem; a batch
            # always passes its lengths (varlen=1), as launches.py lists and the tuner tunes.
            if B > 1 or int(lengths.min()) < S:
                seq_lens = lengths
        if seq_lens is None and B > 1:
            seq_lens = torch.full((B,), S, dtype=torch.int32, device=self.device)
        # NVTX ranges (category "model"): the encoder pass is the "prefill" phase (no decode).
        with kernels.nvtx_range("prefill", "model", f"B={B} S={S}"):
            x = self.embeddings(input_ids, token_type_ids)
            for i, layer in enumerate(self.layers):
                with kernels.nvtx_range("layer", "model", i):
                    with kernels.nvtx_range("attention", "model"):
                        qkv = ops.linear(x, layer.qkv).view(B, S, 3, c.heads, c.head_dim)
                        attn = ops.attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], causal=False,
                                             seq_lens=seq_lens)
                        h = ops.linear(attn.reshape(B * S, c.q_dim), layer.o)
                        x = ops.layernorm(h + x, *layer.attn_norm, c.norm_eps)
                    with kernels.nvtx_range("mlp", "model"):
                        h = ops.gelu(ops.linear(x, layer.up), "tanh" if c.act == "gelu_tanh" else "none")
                        h = ops.linear(h, layer.down)
                        x = ops.layernorm(h + x, *layer.ffn_norm, c.norm_eps)
            return x.view(B, S, c.hidden)

    __call__ = forward
