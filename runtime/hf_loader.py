"""Reading a Hugging Face model directory: config.json plus *.safetensors (one file or shards).

Weights load from safetensors only (never pickle: a .bin checkpoint is refused). Tensors come
back as float32 torch tensors under the runtime's naming (the Llama names are listed in
gguf_loader's docstring and are the same here); a bias is `<name>_bias`. BERT:

    embed, pos_embed, type_embed            word / position / token-type embeddings [n, hidden]
    embed_norm, embed_norm_bias             the embeddings' LayerNorm
    layers.{i}.q / .k / .v / .o (+ _bias)   attention projections, nn.Linear layout [out, in]
    layers.{i}.attn_norm (+ _bias)          LayerNorm after attention (BERT is post-norm)
    layers.{i}.up / .down (+ _bias)         intermediate.dense / output.dense
    layers.{i}.ffn_norm (+ _bias)           LayerNorm after the MLP

The pooler is not loaded (sentence embeddings mean-pool the last hidden states). A
sentence-transformers directory (modules.json, the model in its root) reads the same way.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import CorruptModelFile, InvalidModelConfig, ModelFilesMissing
from .model_config import ModelConfig


@dataclass
class LoadedModel:
    """What a loader returns: the architecture, the float32 tensors by our names, the file's
    metadata (GGUF keys, or config.json) and where it came from."""

    config: ModelConfig
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


_LLAMA_LAYER = {
    "input_layernorm.weight": "attn_norm",
    "self_attn.q_proj.weight": "q",
    "self_attn.k_proj.weight": "k",
    "self_attn.v_proj.weight": "v",
    "self_attn.o_proj.weight": "o",
    "self_attn.q_proj.bias": "q_bias",
    "self_attn.k_proj.bias": "k_bias",
    "self_attn.v_proj.bias": "v_bias",
    "self_attn.o_proj.bias": "o_bias",
    "post_attention_layernorm.weight": "ffn_norm",
    "mlp.gate_proj.weight": "gate",
    "mlp.up_proj.weight": "up",
    "mlp.down_proj.weight": "down",
    "mlp.gate_proj.bias": "gate_bias",
    "mlp.up_proj.bias": "up_bias",
    "mlp.down_proj.bias": "down_bias",
}
_LLAMA_GLOBAL = {"model.embed_tokens.weight": "embed", "model.norm.weight": "norm", "lm_head.weight": "lm_head"}
_LLAMA_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)$")

_BERT_LAYER = {
    "attention.self.query": "q",
    "attention.self.key": "k",
    "attention.self.value": "v",
    "attention.output.dense": "o",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "up",
    "output.dense": "down",
    "output.LayerNorm": "ffn_norm",
}
_BERT_GLOBAL = {
    "embeddings.word_embeddings": "embed",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.token_type_embeddings": "type_embed",
    "embeddings.LayerNorm": "embed_norm",
}
_BERT_LAYER_RE = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias|gamma|beta)$")
_BERT_GLOBAL_RE = re.compile(r"^(embeddings\.\w+)\.(weight|bias|gamma|beta)$")


def _with_kind(name: str, kind: str) -> str:
    """weight (old checkpoints: gamma) -> name; bias (beta) -> name_bias."""
    return name if kind in ("weight", "gamma") else f"{name}_bias"


def llama_name(hf_name: str) -> str | None:
    """`model.layers.3.self_attn.q_proj.weight` -> `layers.3.q`; None when unused."""
    if hf_name in _LLAMA_GLOBAL:
        return _LLAMA_GLOBAL[hf_name]
    match = _LLAMA_LAYER_RE.match(hf_name)
    if match and match.group(2) in _LLAMA_LAYER:
        return f"layers.{match.group(1)}.{_LLAMA_LAYER[match.group(2)]}"
    return None


def bert_name(hf_name: str) -> str | None:
    """`encoder.layer.0.attention.self.query.bias` -> `layers.0.q_bias`; None when unused
    (the pooler, position_ids). A `bert.` prefix (BertFor* checkpoints) is accepted."""
    hf_name = hf_name.removeprefix("bert.")
    match = _BERT_LAYER_RE.match(hf_name)
    if match and match.group(2) in _BERT_LAYER:
        return f"layers.{match.group(1)}.{_with_kind(_BERT_LAYER[match.group(2)], match.group(3))}"
    match = _BERT_GLOBAL_RE.match(hf_name)
    if match and match.group(1) in _BERT_GLOBAL:
        return _with_kind(_BERT_GLOBAL[match.group(1)], match.group(2))
    return None


def expected_names(config: ModelConfig) -> list[str]:
    """Every tensor name the runtime needs for this config (a loader checks them all present)."""
    if config.family == "llama":
        per_layer = ["attn_norm", "q", "k", "v", "o", "ffn_norm", "gate", "up", "down"]
        if config.attention_bias:
            per_layer += ["q_bias", "k_bias", "v_bias", "o_bias"]
        if config.mlp_bias:
            per_layer += ["gate_bias", "up_bias", "down_bias"]
        globals_ = ["embed", "norm"] + ([] if config.tied_embeddings else ["lm_head"])
    else:
        roles = ("q", "k", "v", "o", "attn_norm", "up", "down", "ffn_norm")
        per_layer = [f"{role}{suffix}" for role in roles for suffix in ("", "_bias")]
        globals_ = ["embed", "pos_embed", "embed_norm", "embed_norm_bias"]
        globals_ += ["type_embed"] if config.type_vocab else []
    return globals_ + [f"layers.{i}.{n}" for i in range(config.layers) for n in per_layer]


def read_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.is_file():
        raise ModelFilesMissing(f"no config.json in {str(directory)!r}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptModelFile(f"cannot read {str(path)!r}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidModelConfig(f"{str(path)!r} is not a JSON object")
    return data


def safetensors_files(directory: Path) -> list[Path]:
    """The weight files: those a model.safetensors.index.json names, else every *.safetensors."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptModelFile(f"cannot read {index}: {exc}") from None
        files = [directory / name for name in sorted(set(weight_map.values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ModelFilesMissing(f"{index.name} names {missing[0]}, which is not in {str(directory)!r}")
        return files
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        pickled = [p.name for p in directory.glob("*.bin")] + [p.name for p in directory.glob("*.pt")]
        why = f" ({pickled[0]} is a pickle checkpoint, which is not loaded)" if pickled else ""
        raise ModelFilesMissing(f"no *.safetensors weights in {str(directory)!r}{why}")
    return files


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptModelFile(f"cannot read safetensors file {str(path)!r}: {first}") from None


def load_hf_dir(path: str | Path) -> LoadedModel:
    """Config and float32 tensors (our naming) of a Hugging Face Llama or BERT directory.

    Raises ModelFilesMissing (no directory, config.json or weights), UnsupportedArchitecture,
    CorruptModelFile (an unreadable file, or a needed tensor missing).
    """
    directory = Path(path)
    if not directory.is_dir():
        raise ModelFilesMissing(f"no model directory at {str(directory)!r}")
    raw_config = read_config(directory)
    config = ModelConfig.from_hf_config(raw_config)
    rename = llama_name if config.family == "llama" else bert_name
    tensors: dict[str, torch.Tensor] = {}
    for file in safetensors_files(directory):
        for hf_name, tensor in _read_safetensors(file).items():
            name = rename(hf_name)
            if name is not None:
                tensors[name] = tensor.float() if tensor.is_floating_point() else tensor
    if config.family == "llama" and config.tied_embeddings:
        tensors.pop("lm_head", None)  # some checkpoints store the tied copy as well
    missing = [name for name in expected_names(config) if name not in tensors]
    if missing:
        raise CorruptModelFile(f"{str(directory)!r} lacks {len(missing)} tensor(s) the model needs, e.g. {missing[0]}")
    return LoadedModel(config=config, tensors=tensors, metadata=raw_config, path=directory)
