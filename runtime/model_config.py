"""Model architecture configs: the numbers a Llama or BERT forward pass needs, and nothing else.

The runtime (and the tuner's `autotune --model`) works from a `ModelConfig` rather than a
Hugging Face config dict so that every consumer sees one validated, hashable value with
plain names; `ModelConfig.from_hf_config` is the one place that knows HF's key names and
defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidModelConfig, UnsupportedArchitecture

FAMILIES = ("llama", "bert")
# "gelu" is the exact erf form, "gelu_tanh" the tanh approximation (kernels/gelu.py's
# approximate=none / tanh).
ACTIVATIONS = ("silu", "gelu", "gelu_tanh")

# HF `architectures[0]` -> family. Only architectures whose forward pass the runtime
# implements: a Mistral or Qwen config looks like Llama's but differs (sliding windows,
# qkv biases), so it is refused rather than silently run as Llama.
SUPPORTED_ARCHITECTURES = {"LlamaForCausalLM": "llama", "BertModel": "bert"}
_MODEL_TYPES = {"llama": "LlamaForCausalLM", "bert": "BertModel"}
_HF_ACTIVATIONS = {"silu": "silu", "gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}


@dataclass(frozen=True)
class ModelConfig:
    """One model's architecture. Frozen and hashable, so it can key caches of launch lists.

    family: "llama" (pre-norm RMSNorm decoder, RoPE, GQA, SwiGLU MLP, causal) or "bert"
    (post-norm LayerNorm encoder, learned absolute positions, GELU MLP, bidirectional).
    rope_scaling is HF's `rope_scaling` dict as sorted (key, value) pairs (hashable), or None.
    """

    family: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_positions: int
    norm_eps: float
    act: str
    tied_embeddings: bool = False
    rope_theta: float | None = None
    rope_scaling: tuple[tuple[str, Any], ...] | None = None
    attention_bias: bool = False  # bias on the q/k/v and output projections
    mlp_bias: bool = False  # bias on the MLP projections
    type_vocab: int = 0  # BERT token-type (segment) embeddings; 0 for Llama

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise InvalidModelConfig(f"model family must be one of {', '.join(FAMILIES)}; got {self.family!r}")
        for name in ("hidden", "intermediate", "layers", "heads", "kv_heads", "head_dim", "vocab", "max_positions"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidModelConfig(f"{name} must be a positive integer; got {value!r}")
        if self.heads % self.kv_heads:
            raise InvalidModelConfig(f"heads={self.heads} is not a multiple of kv_heads={self.kv_heads}")
        if self.act not in ACTIVATIONS:
            raise InvalidModelConfig(f"activation must be one of {', '.join(ACTIVATIONS)}; got {self.act!r}")
        if not self.norm_eps > 0:
            raise InvalidModelConfig(f"norm_eps must be positive; got {self.norm_eps!r}")
        if self.family == "llama":
            if self.rope_theta is None or not self.rope_theta > 0:
                raise InvalidModelConfig(f"a llama model needs a positive rope_theta; got {self.rope_theta!r}")
            if self.head_dim % 2:
                raise InvalidModelConfig(f"rotary embeddings need an even head_dim; got {self.head_dim}")
        else:
            if self.kv_heads != self.heads:
                raise InvalidModelConfig(f"a bert model has kv_heads == heads; got {self.kv_heads} and {self.heads}")
            if self.act == "silu":
                raise InvalidModelConfig("a bert model uses a gelu activation, not silu")

    @property
    def causal(self) -> bool:
        return self.family == "llama"

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def qkv_dim(self) -> int:
        """Output width of the fused q/k/v projection (q heads, then k heads, then v heads)."""
        return self.q_dim + 2 * self.kv_dim

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any]) -> ModelConfig:
        """Read a Hugging Face config.json dict (LlamaForCausalLM or BertModel).

        Missing optional keys take the defaults of transformers' LlamaConfig / BertConfig.
        Raises UnsupportedArchitecture (one line naming it and the supported ones) for any
        other architecture, InvalidModelConfig for a missing or bad value.
        """
        if not isinstance(config, Mapping):
            raise InvalidModelConfig(f"a Hugging Face config must be a JSON object; got {type(config).__name__}")
        archs = config.get("architectures") or []
        archs = [archs] if isinstance(archs, str) else list(archs)
        arch = archs[0] if archs else _MODEL_TYPES.get(config.get("model_type", ""), config.get("model_type"))
        supported = ", ".join(SUPPORTED_ARCHITECTURES)
        if arch not in SUPPORTED_ARCHITECTURES:
            raise UnsupportedArchitecture(f"unsupported model architecture {arch!r}; supported: {supported}")
        if SUPPORTED_ARCHITECTURES[arch] == "llama":
            return _llama_from_hf(config)
        return _bert_from_hf(config)


def _need(config: Mapping[str, Any], key: str) -> Any:
    if key not in config:
        raise InvalidModelConfig(f"Hugging Face config has no {key!r}")
    return config[key]


def _activation(config: Mapping[str, Any], default: str) -> str:
    name = config.get("hidden_act", default)
    if name not in _HF_ACTIVATIONS:
        raise InvalidModelConfig(f"unsupported hidden_act {name!r}; supported: {', '.join(_HF_ACTIVATIONS)}")
    return _HF_ACTIVATIONS[name]


def _llama_from_hf(config: Mapping[str, Any]) -> ModelConfig:
    hidden = _need(config, "hidden_size")
    heads = _need(config, "num_attention_heads")
    # transformers < 5 writes rope_theta and rope_scaling; 5 writes rope_parameters (theta and
    # scaling in one dict, rope_type "default" when unscaled). Read both.
    params = config.get("rope_parameters") if isinstance(config.get("rope_parameters"), Mapping) else {}
    scaling = config.get("rope_scaling") or {k: v for k, v in params.items() if k != "rope_theta"}
    if scaling and scaling.get("rope_type", scaling.get("type")) in (None, "default"):
        scaling = None
    theta = config.get("rope_theta", params.get("rope_theta", 10000.0))
    return ModelConfig(
        family="llama",
        hidden=hidden,
        intermediate=_need(config, "intermediate_size"),
        layers=_need(config, "num_hidden_layers"),
        heads=heads,
        kv_heads=config.get("num_key_value_heads") or heads,
        head_dim=config.get("head_dim") or hidden // heads,
        vocab=_need(config, "vocab_size"),
        max_positions=config.get("max_position_embeddings", 2048),
        norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        act=_activation(config, "silu"),
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
        rope_theta=float(theta),
        rope_scaling=tuple(sorted(scaling.items())) if scaling else None,
        attention_bias=bool(config.get("attention_bias", False)),
        mlp_bias=bool(config.get("mlp_bias", False)),
    )


def _bert_from_hf(config: Mapping[str, Any]) -> ModelConfig:
    position = config.get("position_embedding_type", "absolute")
    if position != "absolute":
        raise InvalidModelConfig(f"unsupported BERT position_embedding_type {position!r}; supported: absolute")
    hidden = _need(config, "hidden_size")
    heads = _need(config, "num_attention_heads")
    if hidden % heads:
        raise InvalidModelConfig(f"hidden_size={hidden} is not a multiple of num_attention_heads={heads}")
    return ModelConfig(
        family="bert",
        hidden=hidden,
        intermediate=_need(config, "intermediate_size"),
        layers=_need(config, "num_hidden_layers"),
        heads=heads,
        kv_heads=heads,
        head_dim=hidden // heads,
        vocab=_need(config, "vocab_size"),
        max_positions=config.get("max_position_embeddings", 512),
        norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        act=_activation(config, "gelu"),
        attention_bias=True,
        mlp_bias=True,
        type_vocab=config.get("type_vocab_size", 2),
    )
