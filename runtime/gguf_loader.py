"""Reading a llama.cpp GGUF file: its ModelConfig, its tensors as float32, its tokenizer metadata.

Parsing and dequantization are the `gguf` library's (GGUFReader memory-maps the file;
gguf.quants.dequantize handles Q4_1, Q8_0, K-quants, ...); this module only maps names and
layouts. Every tensor comes back dequantized to a float32 torch tensor: the runtime applies
its own quantization scheme (kernels.quantize_*) afterwards, so the file's quantization is
just how the weights were shipped.

Tensor names (the runtime's naming, shared with hf_loader; weights in nn.Linear layout
[out, in], norms and embeddings as stored):

    embed                       token embeddings [vocab, hidden]
    layers.{i}.attn_norm        RMSNorm before attention [hidden]
    layers.{i}.q / .k / .v      projections [heads*head_dim | kv_heads*head_dim, hidden]
    layers.{i}.o                attention output projection [hidden, heads*head_dim]
    layers.{i}.ffn_norm         RMSNorm before the MLP [hidden]
    layers.{i}.gate / .up       SwiGLU projections [intermediate, hidden]
    layers.{i}.down             [hidden, intermediate]
    norm                        final RMSNorm [hidden]
    lm_head                     [vocab, hidden]; absent when tied to `embed`

Rotary layout: llama.cpp's converter permutes the rows of Q and K so that each head's
rotary pairs are interleaved (GPT-J style, llama.cpp's "normal" rope), while the runtime,
like Hugging Face, rotates halves (rotate_half: pairs (j, j + head_dim/2)). `_unpermute`
undoes the converter's permutation exactly as transformers does when it loads a GGUF
(LlamaTensorProcessor._reverse_permute_weights), so q/k here equal the original HF weights
(up to the file's quantization) and the HF rope convention applies unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CorruptModelFile, ModelFilesMissing, UnsupportedArchitecture
from .hf_loader import LoadedModel, expected_names
from .model_config import ModelConfig

# GGUF per-layer suffix -> ours.
_LAYER_NAMES = {
    "attn_norm": "attn_norm",
    "attn_q": "q",
    "attn_k": "k",
    "attn_v": "v",
    "attn_output": "o",
    "ffn_norm": "ffn_norm",
    "ffn_gate": "gate",
    "ffn_up": "up",
    "ffn_down": "down",
}
_GLOBAL_NAMES = {"token_embd": "embed", "output_norm": "norm", "output": "lm_head"}
_LAYER_RE = re.compile(r"^blk\.(\d+)\.(\w+)\.weight$")


def _reader(path: str | Path):
    from gguf import GGUFReader

    path = Path(path)
    if not path.is_file():
        raise ModelFilesMissing(f"no GGUF file at {str(path)!r}")
    try:
        return GGUFReader(path)
    except Exception as exc:  # the library raises ValueError/struct.error/... on a bad file
        first = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise CorruptModelFile(f"cannot read GGUF file {str(path)!r}: {first}") from None


def read_metadata(path: str | Path, reader=None) -> dict[str, Any]:
    """Every metadata key of the file as a plain Python value (strings, numbers, lists)."""
    reader = reader if reader is not None else _reader(path)
    return {key: field.contents() for key, field in reader.fields.items() if not key.startswith("GGUF.")}


def _f32(value: Any) -> float:
    """A float32 metadata value as the decimal it was written from (9.99999974e-06 -> 1e-05),
    so a config read from GGUF equals the one written from config.json."""
    return float(str(np.float32(value)))


def config_from_metadata(meta: dict[str, Any], tensor_names: set[str]) -> ModelConfig:
    """The ModelConfig a GGUF's llama.* metadata describes. Raises UnsupportedArchitecture
    for another architecture, CorruptModelFile for a missing key."""
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise UnsupportedArchitecture(f"unsupported GGUF architecture {arch!r}; supported: llama")

    def need(key: str) -> Any:
        if f"llama.{key}" not in meta:
            raise CorruptModelFile(f"GGUF metadata has no 'llama.{key}'")
        return meta[f"llama.{key}"]

    scaling = meta.get("llama.rope.scaling.type")
    if scaling not in (None, "none"):
        raise UnsupportedArchitecture(f"unsupported GGUF rope scaling {scaling!r}; supported: none")
    hidden = int(need("embedding_length"))
    heads = int(need("attention.head_count"))
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = len(tokens) if tokens else int(need("vocab_size"))
    return ModelConfig(
        family="llama",
        hidden=hidden,
        intermediate=int(need("feed_forward_length")),
        layers=int(need("block_count")),
        heads=heads,
        kv_heads=int(meta.get("llama.attention.head_count_kv", heads)),
        head_dim=int(meta.get("llama.rope.dimension_count", hidden // heads)),
        vocab=vocab,
        max_positions=int(need("context_length")),
        norm_eps=_f32(need("attention.layer_norm_rms_epsilon")),
        act="silu",
        tied_embeddings="output.weight" not in tensor_names,
        rope_theta=_f32(meta.get("llama.rope.freq_base", 10000.0)),
    )


def _unpermute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation (see the module docstring): within each head,
    rows stored as (half, pair) go back to (pair, half)."""
    dim = weight.shape[0] // n_head // 2
    return weight.reshape(n_head, dim, 2, *weight.shape[1:]).swapaxes(2, 1).reshape(weight.shape)


def our_name(gguf_name: str) -> str | None:
    """`blk.3.attn_q.weight` -> `layers.3.q`; None for a tensor the runtime does not use."""
    match = _LAYER_RE.match(gguf_name)
    if match:
        ours = _LAYER_NAMES.get(match.group(2))
        return f"layers.{match.group(1)}.{ours}" if ours else None
    stem = gguf_name.removesuffix(".weight")
    return _GLOBAL_NAMES.get(stem) if gguf_name.endswith(".weight") else None


def load_gguf(path: str | Path) -> LoadedModel:
    """Config, float32 tensors (our naming) and metadata of a Llama GGUF file."""
    from gguf.quants import dequantize

    reader = _reader(path)
    meta = read_metadata(path, reader)
    names = {t.name for t in reader.tensors}
    config = config_from_metadata(meta, names)
    tensors: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        name = our_name(t.name)
        if name is None:
            continue
        try:
            array = dequantize(t.data, t.tensor_type)
        except Exception as exc:
            raise CorruptModelFile(f"cannot dequantize {t.name} ({t.tensor_type.name}) in {str(path)!r}: {exc}") from None
        # F32 tensors come back as views of the read-only memory map: copy them out.
        array = np.array(array, dtype=np.float32, copy=not (isinstance(array, np.ndarray) and array.flags.writeable))
        if name.endswith(".q"):
            array = _unpermute(array, config.heads)
        elif name.endswith(".k"):
            array = _unpermute(array, config.kv_heads)
        tensors[name] = torch.from_numpy(np.ascontiguousarray(array))
    _check_complete(tensors, config, path)
    return LoadedModel(config=config, tensors=tensors, metadata=meta, path=Path(path))


def _check_complete(tensors: dict[str, torch.Tensor], config: ModelConfig, path: str | Path) -> None:
    missing = [name for name in expected_names(config) if name not in tensors]
    if missing:
        raise CorruptModelFile(f"GGUF file {str(path)!r} lacks {len(missing)} tensor(s), e.g. {missing[0]}")
