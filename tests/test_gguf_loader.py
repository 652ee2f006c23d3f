"""runtime.gguf_loader on the real SmolLM2-135M GGUF: the config from its metadata, and every
tensor equal to what transformers loads from the same file (names mapped), Q/K un-permuted
included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runtime.errors import CorruptModelFile, ModelFilesMissing, UnsupportedArchitecture
from runtime.gguf_loader import _unpermute, config_from_metadata, load_gguf, our_name
from runtime.hf_loader import expected_names, llama_name
from runtime.presets import get_preset

from .models import smollm2_path


def test_smollm2_gguf_against_transformers():
    """One test on purpose: the 96 MB file is loaded once by us and once by transformers
    (under pytest-xdist a module fixture would be rebuilt in every worker that gets a test)."""
    from transformers import AutoModelForCausalLM

    path = smollm2_path()
    loaded = load_gguf(path)
    config, t = loaded.config, loaded.tensors

    assert config == get_preset("smollm2-135m").config
    assert loaded.metadata["general.architecture"] == "llama"
    assert loaded.metadata["tokenizer.ggml.model"] == "gpt2"

    assert sorted(t) == sorted(expected_names(config))
    assert "lm_head" not in t  # tied: no output.weight in the file
    assert t["embed"].shape == (config.vocab, config.hidden)
    assert t["layers.0.q"].shape == (config.q_dim, config.hidden)
    assert t["layers.0.k"].shape == t["layers.0.v"].shape == (config.kv_dim, config.hidden)
    assert t["layers.0.o"].shape == (config.hidden, config.q_dim)
    assert t["layers.29.gate"].shape == t["layers.29.up"].shape == (config.intermediate, config.hidden)
    assert t["layers.29.down"].shape == (config.hidden, config.intermediate)
    assert t["norm"].shape == t["layers.3.attn_norm"].shape == (config.hidden,)
    assert all(v.dtype == torch.float32 and v.is_contiguous() for v in t.values())

    # transformers dequantizes and un-permutes Q/K too: every tensor must agree.
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    assert model.config.tie_word_embeddings
    compared = set()
    for hf_name, tensor in model.state_dict().items():
        name = llama_name(hf_name)
        if name == "lm_head":
            continue  # the tied copy of embed
        assert name is not None, hf_name
        diff = (t[name] - tensor).abs().max().item()
        assert diff <= 1e-6, f"{name} ({hf_name}) differs by {diff}"
        compared.add(name)
    assert compared == set(t)


def _llamacpp_permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """What llama.cpp's convert_hf_to_gguf.py does to q_proj / k_proj (LlamaModel.permute)."""
    return (weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


@pytest.mark.parametrize("n_head", [1, 3, 9])
def test_unpermute_inverts_the_converter(n_head):
    weight = np.random.default_rng(n_head).standard_normal((n_head * 8, 5)).astype(np.float32)
    assert np.array_equal(_unpermute(_llamacpp_permute(weight, n_head), n_head), weight)
    assert not np.array_equal(_llamacpp_permute(weight, n_head), weight)


def test_gguf_names():
    assert our_name("blk.12.attn_q.weight") == "layers.12.q"
    assert our_name("blk.0.attn_output.weight") == "layers.0.o"
    assert our_name("blk.0.ffn_down.weight") == "layers.0.down"
    assert our_name("token_embd.weight") == "embed"
    assert our_name("output_norm.weight") == "norm"
    assert our_name("output.weight") == "lm_head"
    assert our_name("rope_freqs.weight") is None


def test_bad_files(tmp_path):
    with pytest.raises(ModelFilesMissing):
        load_gguf(tmp_path / "absent.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(CorruptModelFile) as info:
        load_gguf(bad)
    assert "\n" not in str(info.value)


def test_other_architectures_are_refused():
    with pytest.raises(UnsupportedArchitecture, match="'qwen2'"):
        config_from_metadata({"general.architecture": "qwen2"}, set())
    with pytest.raises(CorruptModelFile, match="llama.block_count"):
        config_from_metadata({"general.architecture": "llama", "llama.embedding_length": 8,
                              "llama.attention.head_count": 2, "llama.feed_forward_length": 16,
                              "llama.context_length": 8, "llama.vocab_size": 10,
                              "llama.attention.layer_norm_rms_epsilon": 1e-5}, set())
