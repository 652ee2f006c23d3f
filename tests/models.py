"""The real models' files for tests: a path, or a skip with the reason (locally), or a
failure (INFERTUNE_REQUIRE_MODELS=1, as on CI, where `make test` has fetched them).

Files are looked up the way the runtime does (runtime.store: the model cache, then the
current environment), so `make test` (which runs `infertune models fetch`) is all it takes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime import store


def required() -> bool:
    return os.environ.get("INFERTUNE_REQUIRE_MODELS", "") not in ("", "0")


def model_path(name: str) -> Path:
    """The preset's model path (GGUF file or HF directory); skips, or fails when required."""
    path = store.model_path(name)
    if path is None:
        reason = f"model {name} not present (run: infertune models fetch {name}; cache {store.cache_dir()})"
        if required():
            pytest.fail(f"INFERTUNE_REQUIRE_MODELS=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return path


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct's GGUF file (Q4_1)."""
    return model_path("smollm2-135m")


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2's Hugging Face directory (config.json, model.safetensors, tokenizer.json)."""
    return model_path("minilm-l6")
